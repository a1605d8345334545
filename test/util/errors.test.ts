// FsError is an errno as a thrown value: it keeps its code, errno and message, carries no stack
// frames (hot paths throw it on every request of a kind), and leaves other errors their frames.
import test from 'ava';
import { constants } from 'node:os';
import { FsError, errnoOf, fsError } from '../../src/util/errors.js';

test('an FsError carries its errno and message, and no stack frames', (t) => {
  const e = fsError('ENODATA');
  t.true(e instanceof FsError && e instanceof Error);
  t.is(e.code, 'ENODATA');
  t.is(e.errno, constants.errno.ENODATA);
  t.is(errnoOf(e), constants.errno.ENODATA);
  t.is(e.message, 'ENODATA');
  t.is(fsError('EIO', 'the tar changed').message, 'the tar changed');
  t.notRegex(e.stack ?? '', /\n\s+at /);
});

test('other errors keep their stack frames, before and after an FsError', (t) => {
  const limit = Error.stackTraceLimit;
  fsError('ENOENT');
  t.is(Error.stackTraceLimit, limit);
  t.regex(new Error('x').stack ?? '', /\n\s+at /);
});
