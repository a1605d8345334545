// PAX extended header records (src/tar/pax.ts): "LEN key=value\n" with LEN counting the whole record
// (POSIX.1-2017 pax, "pax Extended Header"); values stay raw bytes; times with exact nanoseconds;
// libarchive's %-encoded xattr names.
import test from 'ava';
import { decodeLibarchiveXattrName, parsePax, parsePaxInt, parsePaxTime } from '../../src/tar/pax.js';

const records = (body: Buffer) => parsePax(body).map(([k, v]) => [k, v.toString('latin1')]);

test('records in order, LEN counting its own digits; NUL padding ends the body', (t) => {
  const body = Buffer.concat([Buffer.from('11 path=ab\n17 uid=123456789\n21 mtime=1.500000000\n', 'latin1'), Buffer.alloc(40)]);
  t.deepEqual(records(body), [['path', 'ab'], ['uid', '123456789'], ['mtime', '1.500000000']]);
  t.deepEqual(records(Buffer.alloc(0)), []);
});

test('a value keeps every byte: "=", newlines, NUL and bytes that are not UTF-8', (t) => {
  const value = Buffer.from([0x61, 0x3d, 0x0a, 0x00, 0xff, 0xe9]);
  const rest = Buffer.concat([Buffer.from(' SCHILY.xattr.user.bin='), value, Buffer.from('\n')]);
  const body = Buffer.concat([Buffer.from(String(rest.length + 2)), rest]);
  const [[key, got]] = parsePax(body);
  t.is(key, 'SCHILY.xattr.user.bin');
  t.true(got.equals(value));
});

test('malformed records are errors that say where', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['path=x\n', /malformed PAX record at byte 0/], // no length
    ['10path=abc\n', /malformed/], // no space after the length
    ['99 path=x\n', /malformed/], // longer than the body
    ['2 p=\n', /malformed/], // no longer than its own length and space
    ['11 path=abc', /malformed|newline/], // cut short
    ['11 path=ab!', /does not end in a newline/],
    ['11 pathxab\n', /has no '='/],
    ['11 path=ab\n9 a=bc\nx', /malformed PAX record at byte 11|does not end/],
  ];
  for (const [body, re] of cases) t.throws(() => parsePax(Buffer.from(body, 'latin1')), { message: re }, JSON.stringify(body));
});

test('times: whole and fractional seconds, nanoseconds exact, negative times rounded down', (t) => {
  t.deepEqual(parsePaxTime('1700000000.123456789'), { sec: 1700000000, nsec: 123456789 });
  t.deepEqual(parsePaxTime('1700000000'), { sec: 1700000000, nsec: 0 });
  t.deepEqual(parsePaxTime('1.5'), { sec: 1, nsec: 500000000 });
  t.deepEqual(parsePaxTime('1.'), { sec: 1, nsec: 0 });
  t.deepEqual(parsePaxTime('1.1234567899'), { sec: 1, nsec: 123456789 }, 'digits past nanoseconds are dropped');
  t.deepEqual(parsePaxTime('-1.5'), { sec: -2, nsec: 500000000 }, 'as stat shows 1.5 s before the epoch');
  t.deepEqual(parsePaxTime('-3'), { sec: -3, nsec: 0 });
  t.deepEqual(parsePaxTime(' 12.25 '), { sec: 12, nsec: 250000000 });
  for (const bad of ['', 'abc', '1e9', '1.2.3', '+5', '99999999999999999999']) t.is(parsePaxTime(bad), undefined, bad);
});

test('integers: non-negative decimal only, within the safe range', (t) => {
  t.is(parsePaxInt('0'), 0);
  t.is(parsePaxInt(' 12345 '), 12345);
  t.is(parsePaxInt('9007199254740991'), Number.MAX_SAFE_INTEGER);
  for (const bad of ['', '-1', '1e3', '0x10', '1.0', '12a', '9007199254740993']) t.is(parsePaxInt(bad), undefined, bad);
});

test('libarchive xattr names are %-decoded (RFC 3986), other characters kept', (t) => {
  t.is(decodeLibarchiveXattrName('user.a%3Db'), 'user.a=b');
  t.is(decodeLibarchiveXattrName('user.%25%2a%2A'), 'user.%**');
  t.is(decodeLibarchiveXattrName('user.100%'), 'user.100%');
  t.is(decodeLibarchiveXattrName('user.%zz'), 'user.%zz');
});
