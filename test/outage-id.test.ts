import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatOutageId, outageIdSchema, parseOutageId } from '../src/domain/outage-id';

test('an outage id is the customer and the first 8 hex digits of its first run, and reads back as both', () => {
  const id = formatOutageId('harborview-law', '1a2b3c4d-5e6f-4a0b-8c9d-0e1f2a3b4c5d');
  assert.equal(id, 'harborview-law.1a2b3c4d');
  assert.deepEqual(parseOutageId(id), { customerId: 'harborview-law', runPrefix: '1a2b3c4d' });
  assert.ok(outageIdSchema.safeParse(id).success);
  // A bare customer id names that customer's latest outage: not an outage id, but no error either.
  for (const text of [
    'harborview-law',
    'harborview-law.1A2B3C4D',
    'harborview-law.1a2b3c',
    'a.b.1a2b3c4d',
    '',
  ]) {
    assert.equal(parseOutageId(text), undefined, text);
    assert.ok(!outageIdSchema.safeParse(text).success, text);
  }
});
