import { type Config, parseConfig } from '../../src/config';

// Tests run inside the stack that scripts/test.ts starts; its addresses arrive in the environment.
export function testConfig(overrides: Record<string, string> = {}): Config {
  if (!process.env.TEST_STACK_TMP)
    throw new Error('run the tests with `npm test`, which starts Temporal, MinIO and PostgreSQL');
  return parseConfig({ ...process.env, ...overrides });
}

export const testTmp = () => process.env.TEST_STACK_TMP!;
