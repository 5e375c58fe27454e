import { z } from 'zod';

/** Keyset paging: `cursor` is the last id of the previous page, so a page costs the same on page 1 and 10,000. */
export const pageSchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z
    .string()
    .regex(/^\d{1,18}$/, 'expected the nextCursor of the previous page')
    .optional(),
});
