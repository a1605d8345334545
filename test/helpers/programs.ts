// Real programs in a writable mount of the program image (program-image.ts): git, sqlite3, GNU tar,
// fsx. Each scenario takes a mount from mounted.ts, so the same steps run on a tarstack instance
// and, to check the scenarios themselves, on kernel overlayfs or tarstack-overlay.
import type { ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execOk } from './exec.js';
import { fsx } from './fsx.js';
import { git, GIT_ENV, sqlite } from './program-image.js';
import { compareTrees, snapshotTree } from './tree.js';

/** A writable mount (mounted.ts: any configuration) whose root stays the same across remount. */
type Mounted = Pick<import('./mounted.js').Mounted, 'root' | 'remount'>;

const exists = (p: string) => fs.existsSync(p);

/** Every tracked file's content hashes to the blob the index names (git status trusts stat data). */
function worktreeMatchesIndex(t: ExecutionContext, repo: string, what: string): void {
  const entries = git(repo, 'ls-files', '-s').trim().split('\n').map((l) => /^\d+ ([0-9a-f]+) \d\t(.*)$/.exec(l)!);
  const hashes = execOk(['git', '-C', repo, 'hash-object', '--stdin-paths'], { env: GIT_ENV, input: entries.map((e) => e[2]).join('\n') + '\n' })
    .stdout.toString().trim().split('\n');
  t.deepEqual(hashes, entries.map((e) => e[1]), `${what}: work tree content equals the index`);
  t.is(git(repo, 'status', '--porcelain', '--untracked-files=all'), '', `${what}: git status is clean`);
}

export async function gitScenario(t: ExecutionContext, m: Mounted): Promise<void> {
  const repo = path.join(m.root, 'repo');
  worktreeMatchesIndex(t, repo, 'as the image has it');
  fs.appendFileSync(path.join(repo, 'README'), 'changed in the instance\n');
  fs.mkdirSync(path.join(repo, 'new/deeper'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'new/deeper/file.txt'), 'added in the instance\n');
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'in the instance');
  fs.renameSync(path.join(repo, 'docs'), path.join(repo, 'documentation')); // rename(2) of a directory only the image has
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'rename docs');
  git(repo, 'checkout', '-q', 'moved'); // the branch moves src/lib → lib and docs/guide → manual/guide
  t.true(exists(path.join(repo, 'lib/util/str.c')) && exists(path.join(repo, 'manual/guide/usage.md')), 'checkout moved: new paths exist');
  t.false(exists(path.join(repo, 'src/lib')) || exists(path.join(repo, 'documentation')) || exists(path.join(repo, 'new')), 'checkout moved: old paths gone');
  worktreeMatchesIndex(t, repo, 'after checkout moved');
  git(repo, 'checkout', '-q', 'main');
  t.true(exists(path.join(repo, 'documentation/guide/intro.md')) && exists(path.join(repo, 'new/deeper/file.txt')), 'checkout main: renamed and added paths back');
  worktreeMatchesIndex(t, repo, 'after checkout main');
  git(repo, 'gc', '-q');
  git(repo, 'fsck', '--full', '--strict');
  await m.remount();
  git(repo, 'fsck', '--full', '--strict');
  t.is(git(repo, 'log', '--format=%s', 'main'), 'rename docs\nin the instance\ninitial\n', 'history after remount');
  worktreeMatchesIndex(t, repo, 'after remount');
}

/** The workload both databases get, in the instance and on the host; deterministic. */
const SQL_WORK = `BEGIN;
WITH RECURSIVE n(i) AS (SELECT 2001 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
INSERT INTO t SELECT i, printf('row-%06d', i), zeroblob(i % 1500) FROM n;
COMMIT;
UPDATE t SET body = zeroblob(3000), name = name || '-u' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
CREATE TABLE u AS SELECT id, name FROM t WHERE id % 2 = 0;
BEGIN; DELETE FROM u WHERE id > 100; ROLLBACK;
VACUUM;
PRAGMA integrity_check;`;

/** hostDb: a host copy of the image's db/ dir, where the same workload gives the expected .dump. */
export async function sqliteScenario(t: ExecutionContext, m: Mounted, hostDb: string): Promise<void> {
  for (const name of ['rollback.db', 'wal.db']) {
    const inst = path.join(m.root, 'db', name);
    t.is(sqlite(inst, 'PRAGMA journal_mode;').trim(), name === 'wal.db' ? 'wal' : 'delete', `${name}: journal mode as made`);
    t.is(sqlite(inst, SQL_WORK).trim(), 'ok', `${name}: integrity_check after the workload`);
    t.is(sqlite(path.join(hostDb, name), SQL_WORK).trim(), 'ok');
  }
  await m.remount();
  for (const name of ['rollback.db', 'wal.db']) {
    const inst = path.join(m.root, 'db', name);
    t.is(sqlite(inst, 'PRAGMA integrity_check;').trim(), 'ok', `${name}: integrity_check after remount`);
    const [got, want] = [inst, path.join(hostDb, name)].map((db) => crypto.createHash('sha256').update(sqlite(db, '.dump')).digest('hex'));
    t.is(got, want, `${name}: .dump after remount equals the host's`);
  }
}

/** `tar --full-time -tv` of a tar, sorted (member order follows readdir order). */
const listing = (tar: string) => execOk(['tar', '--full-time', '--numeric-owner', '-tvf', tar]).stdout.toString().split('\n').filter(Boolean).sort();

/** Extracts v2 over the image's tree/ (version 1) and into a new dir; compares with the same done on
 *  the host (work: a host dir holding imageTar's extraction), then tar -c round-trips the times. */
export async function tarScenario(t: ExecutionContext, m: Mounted, imageTar: string, v2Tar: string, work: string): Promise<void> {
  const ref = path.join(work, 'ref');
  fs.mkdirSync(path.join(ref, 'fresh'), { recursive: true });
  execOk(['tar', '-x', '-p', '-f', imageTar, '-C', ref, './tree']);
  fs.mkdirSync(path.join(m.root, 'fresh'));
  for (const dir of ['tree', 'fresh']) {
    execOk(['tar', '-x', '-p', '-f', v2Tar, '-C', path.join(ref, dir)]);
    execOk(['tar', '-x', '-p', '-f', v2Tar, '-C', path.join(m.root, dir)]);
  }
  const refSnap = { tree: snapshotTree(path.join(ref, 'tree')), fresh: snapshotTree(path.join(ref, 'fresh')) };
  for (const dir of ['tree', 'fresh'] as const) {
    t.deepEqual(compareTrees(refSnap[dir], snapshotTree(path.join(m.root, dir))), [], `${dir}: tar -x in the mount equals tar -x on the host`);
    const out = path.join(work, `${dir}-from-mount.tar`);
    const hostOut = path.join(work, `${dir}-from-host.tar`);
    execOk(['tar', '--format=posix', '--numeric-owner', '-cf', out, '-C', path.join(m.root, dir), '.']);
    execOk(['tar', '--format=posix', '--numeric-owner', '-cf', hostOut, '-C', path.join(ref, dir), '.']);
    t.deepEqual(listing(out), listing(hostOut), `${dir}: tar -c listings (nanosecond mtimes) agree`);
    const back = path.join(work, `${dir}-back`);
    fs.mkdirSync(back);
    execOk(['tar', '-x', '-p', '-f', out, '-C', back]);
    t.deepEqual(compareTrees(refSnap[dir], snapshotTree(back)), [], `${dir}: tar -c from the mount, extracted again, equals the original`);
  }
  await m.remount();
  for (const dir of ['tree', 'fresh'] as const) t.deepEqual(compareTrees(refSnap[dir], snapshotTree(path.join(m.root, dir))), [], `${dir}: after remount`);
}

/** fsx on fsx/data, which starts in the image; the result survives a remount. */
export async function fsxScenario(t: ExecutionContext, m: Mounted, seed: number, ops: number): Promise<void> {
  const file = path.join(m.root, 'fsx/data');
  const model = await fsx({ file, seed, ops, maxSize: 3 * 1024 * 1024 });
  await m.remount();
  const after = fs.readFileSync(file);
  t.is(after.length, model.length, 'size after remount');
  t.true(after.equals(model), 'content after remount equals the model');
}
