// A served instance's lazy fills run off Node's thread (issue 14, isolation): a write into chunks
// still in the lower settles later, and whatever reaches the same file meanwhile (another write to
// the same chunk, a truncate, a truncating open, fallocate, a read, the unmount) keeps the meaning it
// has when everything is synchronous. Without a mount: InstanceFs as the server serves it.
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { InstanceFs } from '../src/overlay/instance-fs.js';
import { servedInstance } from '../src/daemon/served-instance.js';
import type { TarLayer } from '../src/layer/tar-layer.js';
import type { ReadReply, WritableFileSystem } from '../src/vfs/api.js';
import { pack } from './helpers/pack.js';
import { layerFromTar, tempDir } from './helpers/layers.js';
import { seededBytes } from './helpers/bytes.js';

const MiB = 1 << 20;
const BIG = seededBytes(5 * MiB + 77, 3);
const me = { uid: 0, gid: 0, pid: 1 };
const O_RDWR = 2;
const O_TRUNC = 0o1000;

async function served(t: ExecutionContext, o: { destroyed?: boolean } = {}): Promise<{ fs: WritableFileSystem; inner: InstanceFs; ino: number }> {
  const tmp = tempDir();
  t.teardown(() => tmp.cleanup());
  const tar = await pack([{ name: 'big', body: BIG }]);
  mkdirSync(join(tmp.dir, 'upper'));
  const inner = new InstanceFs([layerFromTar(tar, tmp.dir, 'image.tar').layer as TarLayer], join(tmp.dir, 'upper'), join(tmp.dir, 'work'), { fillsOffLoop: true });
  const fs = servedInstance(inner);
  t.teardown(() => o.destroyed || fs.destroy());
  return { fs, inner, ino: (await fs.lookup(1, 'big')).ino };
}

/** The bytes a read answers: a served instance may answer in ranges of files, which the backend reads. */
async function bytes(reply: ReadReply | Promise<ReadReply>): Promise<Buffer> {
  const r = await reply;
  if (Buffer.isBuffer(r)) return r;
  return Buffer.concat(r.map((x) => {
    const b = Buffer.alloc(x.len);
    if (x.fd >= 0 && readSync(x.fd, b, 0, x.len, x.pos) !== x.len) throw new Error('short range');
    return b;
  }));
}

async function contents(fs: WritableFileSystem, ino: number): Promise<Buffer> {
  const h = await fs.open(ino, 0);
  const size = (await fs.getattr(ino)).size;
  const got = await bytes(fs.read(ino, h.fh, 0, size + 1));
  await fs.release(ino, h.fh);
  return got;
}

const expect = (edits: Array<[number, string]>, size = BIG.length): Buffer => {
  const b = Buffer.alloc(size);
  BIG.copy(b, 0, 0, Math.min(size, BIG.length));
  for (const [pos, text] of edits) b.write(text, pos, 'latin1');
  return b;
};

test('a write into a lower chunk settles later; reads meanwhile see the old bytes, then the new', async (t) => {
  const { fs, ino } = await served(t);
  const h = await fs.open(ino, O_RDWR);
  const w = fs.write(ino, h.fh, Buffer.from('NEW'), MiB + 10);
  t.true(w instanceof Promise, 'the fill runs off the loop');
  t.true((await bytes(fs.read(ino, h.fh, MiB, 16))).equals(BIG.subarray(MiB, MiB + 16)), 'before it settles: the old bytes');
  t.is(await w, 3);
  t.true((await contents(fs, ino)).equals(expect([[MiB + 10, 'NEW']])));
  t.is(fs.write(ino, h.fh, Buffer.from('again'), MiB + 100), 5, 'a chunk already filled is written at once');
  await fs.release(ino, h.fh);
});

test('writes to the same chunks at once all land, in the order they came', async (t) => {
  const { fs, ino } = await served(t);
  const h = await fs.open(ino, O_RDWR);
  const edits: Array<[number, string]> = [
    [10, 'first'],
    [12, 'SECOND'],
    [MiB - 2, 'across'],
    [3 * MiB + 5, 'third chunk'],
    [11, 'x'],
  ];
  const results = await Promise.all(edits.map(([pos, text]) => fs.write(ino, h.fh, Buffer.from(text), pos)));
  t.deepEqual(results, edits.map(([, text]) => text.length));
  t.true((await contents(fs, ino)).equals(expect(edits)));
  await fs.release(ino, h.fh);
});

test('a truncate, a truncating open and fallocate wait for the fill in flight', async (t) => {
  const { fs, ino } = await served(t);
  const h = await fs.open(ino, O_RDWR);
  const w = fs.write(ino, h.fh, Buffer.from('kept'), 2 * MiB + 3);
  const cut = fs.setattr(ino, { size: 2 * MiB + 5 }, h.fh, me);
  t.true(cut instanceof Promise, 'the truncate waits its turn');
  const w2 = fs.write(ino, h.fh, Buffer.from('after'), 10);
  await Promise.all([w, cut, w2]);
  t.true((await contents(fs, ino)).equals(expect([[2 * MiB + 3, 'ke'], [10, 'after']], 2 * MiB + 5)), 'write, then truncate, then write');

  const w3 = fs.write(ino, h.fh, Buffer.from('gone'), MiB + 1);
  const alloc = fs.fallocate(ino, h.fh, 0, 0, 3 * MiB);
  const trunc = fs.open(ino, O_RDWR | O_TRUNC);
  await Promise.all([w3, alloc]);
  const h2 = await trunc;
  t.is((await fs.getattr(ino)).size, 0, 'the truncating open came last');
  await fs.release(ino, h2.fh);
  await fs.release(ino, h.fh);
});

test('unmounting waits for a fill in flight', async (t) => {
  const state = { destroyed: false };
  const { fs, ino } = await served(t, state);
  const h = await fs.open(ino, O_RDWR);
  let wrote = false;
  const w = Promise.resolve(fs.write(ino, h.fh, Buffer.from('late'), 4 * MiB + 9)).then((n) => ((wrote = true), n));
  state.destroyed = true;
  await fs.destroy();
  t.true(wrote, 'the write settled before destroy did');
  t.is(await w, 4);
});
