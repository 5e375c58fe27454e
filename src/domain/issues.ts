import type { z } from 'zod';

/** A zod error as one line a person can act on: "field.path: problem; other.field: problem". */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}
