// ChunkCache without a server: chunks are punched out least recently used first, pinned ones kept,
// chunks found on disk at open join as the oldest, and uses of chunks never evicted stay bounded.
import test from 'ava';
import path from 'node:path';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { ChunkCache } from '../src/remote/chunk-cache.js';

const CS = 16384;
const root = makeTestRoot('chunk-cache');
test.after.always(() => removeTestRoot(root));

const held = (p: Uint8Array): number[] => [...p].flatMap((on, k) => (on ? [k] : []));

test('the least recently used chunks not pinned are punched out, one read a use of a run of chunks', (t) => {
  const cache = new ChunkCache(path.join(root, 'lru'), 3 * CS);
  const f = cache.open('aa'.repeat(32), 6 * CS, CS);
  for (let k = 0; k < 3; k++) f.markRange(k, k), cache.touch(f, k);
  cache.touch(f, 0); // order now 1, 2, 0
  f.pins[1]++;
  f.markRange(3, 3);
  cache.touch(f, 3); // over by one: 1 is pinned, so 2 goes
  t.deepEqual(held(f.present), [0, 1, 3]);
  f.pins[1]--;
  cache.evict();
  t.deepEqual(held(f.present), [0, 1, 3], 'within the bound: nothing more goes');
  f.markRange(4, 5);
  cache.touch(f, 4, 5); // order 1, 0, 3, 4, 5: two go
  t.deepEqual(held(f.present), [3, 4, 5]);
  t.is(cache.stats().bytes, 3 * CS);

  // Another process's cache over the same files: the chunks on disk are the oldest.
  const again = new ChunkCache(path.join(root, 'lru'), 3 * CS);
  const g = again.open('aa'.repeat(32), 6 * CS, CS);
  t.is(again.stats().bytes, 3 * CS);
  const h = again.open('bb'.repeat(32), 2 * CS, CS);
  h.markRange(0, 0);
  again.touch(h, 0);
  t.deepEqual(held(g.present), [4, 5]);
  t.deepEqual(held(h.present), [0]);
});

test('chunks used over and over without eviction keep the LRU\'s records bounded', (t) => {
  const cache = new ChunkCache(path.join(root, 'many'), 8 * CS);
  const f = cache.open('cc'.repeat(32), 4 * CS, CS);
  f.markRange(0, 3);
  for (let i = 0; i < 10000; i++) cache.touch(f, i % 4, 3);
  t.true((cache as unknown as { uses: unknown[] }).uses.length <= 2048);
  t.deepEqual(held(f.present), [0, 1, 2, 3]);
  t.is(cache.stats().bytes, 4 * CS);
});
