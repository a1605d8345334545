// PieceDecoder and planJobs (src/tar/piece-decoder.ts): a job decodes a run of pieces from a seek
// point or from where its decoder stands, checks each against the table's crc32, hands kept pieces
// to `keep` and leaves the decoder standing after them; a crc mismatch or an input range that cannot
// be fetched is an EIO and leaves the decoder needing a seek. Which decoder runs which job (the
// cache, prefetch, several decoders) is seekable.test.ts's.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { indexTarFile } from '../../src/tar/indexer.js';
import { JOB_PIECES, NO_SEEK, PieceDecoder, planJobs, type ArchiveInput } from '../../src/tar/piece-decoder.js';
import { SeekIndex, type SeekTable } from '../../src/tar/seek-table.js';
import { FsError } from '../../src/util/errors.js';
import { seededBytes } from '../helpers/bytes.js';
import { compress } from '../helpers/compressed.js';
import { tempDir } from '../helpers/layers.js';

const SEEK = { spacing: 64 * 1024, cheapSpacing: 16 * 1024, pieceSize: 16 * 1024, retain: 64 * 1024 };

const tmp = tempDir();
const src = join(tmp.dir, 'src');
mkdirSync(src);
writeFileSync(join(src, 'big.bin'), Buffer.concat([seededBytes(512 * 1024, 3), Buffer.from('pieces of a tar. '.repeat(20000))]));
const plainTar = join(tmp.dir, 'plain.tar');
execFileSync('tar', ['-cf', plainTar, '--format=gnu', '-C', src, '.']);
const plain = readFileSync(plainTar);
const gz = compress(plainTar, tmp.dir, 'gzip-multi', 100 * 1024);
const table = indexTarFile(gz.path, { seek: SEEK }).data.seek!;
const index = new SeekIndex(table);
const fd = openSync(gz.path, 'r');

test.after.always(() => {
  closeSync(fd);
  tmp.cleanup();
});

function decoder(t: SeekTable = table, input?: ArchiveInput): { d: PieceDecoder; kept: Map<number, Buffer> } {
  const kept = new Map<number, Buffer>();
  return { d: new PieceDecoder(fd, t, new SeekIndex(t), gz.path, input, (piece, b) => kept.set(piece, b)), kept };
}

const bytesOf = (piece: number): Buffer => plain.subarray(index.pieceStart(piece), index.pieceStart(piece) + index.pieceLen(piece));

test('planJobs: pieces before keepFrom and all but the last JOB_PIECES pass through in jobs of JOB_PIECES; the seek goes with the first job', (t) => {
  t.is(JOB_PIECES, 4);
  const seek = { kind: 1, inBit: 800, chunk: 3 };
  const shape = (jobs: ReturnType<typeof planJobs>) => jobs.map((j) => `${j.from}-${j.to}${j.keep ? ' kept' : ''}${j.seek === seek ? ' seek' : ''}`);
  t.deepEqual(shape(planJobs(seek, 0, 9, 9)), ['0-3 seek', '4-7', '8-8', '9-9 kept']);
  t.deepEqual(shape(planJobs(seek, 2, 5, 0)), ['2-5 kept seek'], 'keepFrom at or before the start: one kept job');
  t.deepEqual(shape(planJobs(seek, 0, 20, 0)), ['0-3 seek', '4-7', '8-11', '12-15', '16-16', '17-20 kept'], 'a kept job is at most JOB_PIECES long');
  t.deepEqual(shape(planJobs(NO_SEEK, 5, 10, Infinity)), ['5-8', '9-10'], 'keepFrom past the end: nothing kept');
  t.deepEqual(shape(planJobs(seek, 7, 7, 7)), ['7-7 kept seek']);
});

for (const on of ['sync', 'async'] as const) {
  test(`${on}: a kept job from a seek point returns its pieces checked, keeps them, and leaves the decoder after them`, async (t) => {
    const { d, kept } = decoder();
    const cur = d.open();
    try {
      t.true(table.count > 3, `several seek points (${table.count})`);
      const chunk = 2;
      const first = index.pieceFirst[chunk]!;
      const last = Math.min(first + 2, index.pieceFirst[chunk + 1]! - 1);
      const job = { seek: d.seekOf(chunk), from: first, to: last, keep: true };
      const got = on === 'sync' ? d.run(cur, job, 'sync') : await d.run(cur, job, 'async');
      t.is(got.length, last - first + 1);
      got.forEach((b, i) => t.true(b.equals(bytesOf(first + i)), `piece ${first + i}`));
      t.deepEqual([...kept.keys()], got.map((_, i) => first + i));
      t.is(cur.next, last + 1, 'standing at the next piece');
      // Going on from where it stands: no seek, and a job that only passes through keeps nothing.
      const more = { seek: NO_SEEK, from: last + 1, to: last + 1, keep: false };
      t.deepEqual(on === 'sync' ? d.run(cur, more, 'sync') : await d.run(cur, more, 'async'), []);
      t.is(kept.size, got.length);
      t.is(cur.next, last + 2);
    } finally {
      d.closeDecoder(cur);
      d.close();
    }
  });
}

test('a piece whose bytes do not match its crc32 is an EIO, nothing of the job is kept, and the decoder must seek again', async (t) => {
  const bad: SeekTable = { ...table, pieceCrc: Uint32Array.from(table.pieceCrc) };
  const piece = index.pieceFirst[1]! + 1;
  bad.pieceCrc[piece] = bad.pieceCrc[piece]! ^ 1;
  const { d, kept } = decoder(bad);
  const cur = d.open();
  try {
    const job = { seek: d.seekOf(1), from: index.pieceFirst[1]!, to: piece, keep: true };
    t.throws(() => d.run(cur, job, 'sync'), { instanceOf: FsError, message: /do not match the index; the archive changed since it was indexed/ });
    t.is(cur.next, -1);
    await t.throwsAsync(d.run(cur, job, 'async'), { instanceOf: FsError, message: /do not match the index/ });
    t.is(cur.next, -1);
    t.is(kept.size, 0);
  } finally {
    d.closeDecoder(cur);
    d.close();
  }
});

test('a remote input: the job\'s compressed range is made present while it decodes and released after; a range that cannot be fetched fails the job with an EIO', async (t) => {
  const held: Array<[number, number]> = [];
  let released = 0;
  let fail = false;
  const ensureSync = (start: number, end: number) => {
    if (fail) throw new Error('registry unreachable');
    held.push([start, end]);
    return () => void released++;
  };
  const input: ArchiveInput = { ensureSync, ensure: async (start, end) => ensureSync(start, end) };
  const { d } = decoder(table, input);
  const cur = d.open();
  try {
    const chunk = 1;
    const job = { seek: d.seekOf(chunk), from: index.pieceFirst[chunk]!, to: index.pieceFirst[chunk]!, keep: true };
    t.true(d.run(cur, job, 'sync')[0]!.equals(bytesOf(job.from)));
    t.true((await d.run(cur, job, 'async'))[0]!.equals(bytesOf(job.from)));
    t.is(held.length, 2);
    t.is(released, 2, 'each range released once its job ended');
    for (const [start, end] of held) {
      t.is(start, Math.floor(table.inBit[chunk]! / 8), 'from the seek point');
      t.true(end > Math.ceil(table.inBit[chunk + 1]! / 8), 'past the next point: the codec reads ahead');
    }
    fail = true;
    await t.throwsAsync(d.run(cur, job, 'async'), { instanceOf: FsError, message: /decoding from byte \d+: Error: registry unreachable/ });
    t.is(cur.next, -1);
  } finally {
    d.closeDecoder(cur);
    d.close();
  }
});
