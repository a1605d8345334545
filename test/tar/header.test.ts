// Golden-block tests of the header codec: numeric encodings, checksums, formats.
import test from 'ava';
import { decodeHeader, parseNumber, BLOCK } from '../../src/tar/header.js';
import { pack } from '../helpers/pack.js';

function block(fields: Record<number, string | number[]>): Buffer {
  const b = Buffer.alloc(BLOCK);
  for (const [off, v] of Object.entries(fields)) {
    if (typeof v === 'string') b.write(v, Number(off), 'latin1');
    else Buffer.from(v).copy(b, Number(off));
  }
  return b;
}

function withChecksum(b: Buffer, signed = false): Buffer {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += signed && x > 127 ? x - 256 : x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

test('octal fields: spaces, NUL terminators, empty fields', (t) => {
  t.is(parseNumber(Buffer.from('0000644\0'), 0, 8), 0o644);
  t.is(parseNumber(Buffer.from('  644 \0\0'), 0, 8), 0o644);
  t.is(parseNumber(Buffer.alloc(8), 0, 8), 0);
  t.is(parseNumber(Buffer.from('12x45670'), 0, 8), undefined);
});

test('base-256 sizes beyond 8 GiB, and negative times', (t) => {
  const big = Buffer.alloc(12);
  big[0] = 0x80;
  big.writeUIntBE(20 * 2 ** 30, 6, 6); // 20 GiB
  t.is(parseNumber(big, 0, 12), 20 * 2 ** 30);
  const neg = Buffer.alloc(12, 0xff); // -1 in two's complement
  t.is(parseNumber(neg, 0, 12), -1);
});

test('ustar header with prefix field joins prefix and name', (t) => {
  const b = withChecksum(block({ 0: 'name.txt', 100: '0000644\0', 108: '0000000\0', 116: '0000000\0', 124: '00000000005\0', 136: '14000000000\0', 156: '0', 257: 'ustar\0', 263: '00', 345: 'some/prefix' }));
  const r = decodeHeader(b);
  t.is(r.kind, 'header');
  if (r.kind !== 'header') return;
  t.is(r.header.name, 'some/prefix/name.txt');
  t.is(r.header.size, 5);
  t.is(r.header.mode, 0o644);
  t.is(r.header.format, 'ustar');
});

test('GNU header does not read the prefix area as a prefix', (t) => {
  const b = withChecksum(block({ 0: 'n', 100: '0000644\0', 124: '00000000000\0', 136: '0\0', 156: '0', 257: 'ustar ', 263: ' \0', 345: [0x31, 0x32] }));
  const r = decodeHeader(b);
  t.is(r.kind === 'header' && r.header.name, 'n');
  t.is(r.kind === 'header' && r.header.format, 'gnu');
});

test('checksum: unsigned and old signed sums accepted, a wrong one rejected', (t) => {
  const fields = { 0: 'caf\xe9', 100: '0000644\0', 124: '00000000000\0', 136: '0\0', 156: '0' };
  t.is(decodeHeader(withChecksum(block(fields))).kind, 'header');
  t.is(decodeHeader(withChecksum(block(fields), true)).kind, 'header');
  const bad = withChecksum(block(fields));
  bad[0] ^= 1;
  const r = decodeHeader(bad);
  t.is(r.kind, 'bad');
  t.is(decodeHeader(Buffer.alloc(BLOCK)).kind, 'zero');
});

test('checksum: the same verdict wherever the block sits (word sums when 4-aligned, bytes else)', (t) => {
  // every byte 0xff outside the checksum field: the largest sum a block can have
  const full = withChecksum(block({ 0: '\xff'.repeat(100), 100: '0000644\0', 124: '00000000000\0', 136: '0\0', 156: '0', 157: '\xff'.repeat(100), 265: '\xff'.repeat(247) }));
  for (const at of [0, 1, 2, 3, 4, 512]) {
    const big = Buffer.alloc(at + BLOCK + 8);
    full.copy(big, at);
    t.is(decodeHeader(big, at).kind, 'header', `at ${at}`);
    big[at + 300] ^= 0x80;
    t.is(decodeHeader(big, at).kind, 'bad', `changed, at ${at}`);
  }
});

test('non-UTF-8 name bytes survive as a byte string', async (t) => {
  const tar = await pack([{ name: 'x', body: 'a' }]);
  const raw = Buffer.from(tar.subarray(0, BLOCK));
  raw[0] = 0xff;
  raw[1] = 0x0a; // a newline inside a name
  const r = decodeHeader(withChecksum(raw));
  t.is(r.kind === 'header' && Buffer.from(r.header.name, 'latin1').toString('hex'), 'ff0a');
});
