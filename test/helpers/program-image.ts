// The image real programs run on: a git repository with a branch that moves directories, sqlite
// databases in rollback and WAL mode, a source tree (version 1 of what tar -x later updates) and a
// file for fsx. Everything deterministic, so the same steps on the host give the expected result.
import fs from 'node:fs';
import path from 'node:path';
import { execOk } from './exec.js';
import { pattern } from './model-image.js';

export const GIT_ENV = {
  GIT_AUTHOR_NAME: 'Model Test', GIT_AUTHOR_EMAIL: 'model@test', GIT_COMMITTER_NAME: 'Model Test', GIT_COMMITTER_EMAIL: 'model@test',
  GIT_AUTHOR_DATE: '2020-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2020-01-01T00:00:00Z', GIT_CONFIG_NOSYSTEM: '1', HOME: '/nonexistent',
};
export const git = (repo: string, ...args: string[]) => execOk(['git', '-C', repo, ...args], { env: GIT_ENV }).stdout.toString();

/** repo/ on branch main; branch `moved` renames src/lib → lib and docs/guide → manual/guide. */
function buildRepo(repo: string): void {
  fs.mkdirSync(repo, { recursive: true });
  execOk(['git', 'init', '-q', '-b', 'main', repo], { env: GIT_ENV });
  const files: Record<string, string> = {
    'README': 'a repository inside a tar\n', 'src/main.c': 'int main(void) { return lib(); }\n',
    'src/lib/lib.c': 'int lib(void) { return 0; }\n', 'src/lib/lib.h': 'int lib(void);\n', 'src/lib/util/str.c': '/* strings */\n',
    'docs/guide/intro.md': '# Intro\n', 'docs/guide/usage.md': '# Usage\n', 'docs/index.md': '# Docs\n',
  };
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(repo, rel)), { recursive: true });
    fs.writeFileSync(path.join(repo, rel), text);
  }
  fs.writeFileSync(path.join(repo, 'src/lib/blob.bin'), pattern(200_000, 5));
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'initial');
  git(repo, 'checkout', '-q', '-b', 'moved');
  fs.mkdirSync(path.join(repo, 'manual'));
  git(repo, 'mv', 'src/lib', 'lib');
  git(repo, 'mv', 'docs/guide', 'manual/guide');
  fs.appendFileSync(path.join(repo, 'lib/lib.c'), '/* moved */\n');
  git(repo, 'commit', '-q', '-a', '-m', 'move directories');
  git(repo, 'checkout', '-q', 'main');
  git(repo, 'gc', '-q'); // a pack in the lower too, not only loose objects
}

export const sqlite = (db: string, sql: string) => execOk(['sqlite3', '-bail', db], { input: sql }).stdout.toString();

/** Deterministic rows, so running the same statements on the host gives the expected .dump. */
export const SQL_SEED = `CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB);
CREATE INDEX t_name ON t(name);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO t SELECT i, printf('row-%06d', i), zeroblob(i % 700) FROM n;`;

function buildDatabases(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  sqlite(path.join(dir, 'rollback.db'), `PRAGMA journal_mode=DELETE;\n${SQL_SEED}`);
  sqlite(path.join(dir, 'wal.db'), `PRAGMA journal_mode=WAL;\n${SQL_SEED}`);
}

/** A source tree of `files` files in nested dirs, sizes 0..~20 KiB, nanosecond mtimes, symlinks,
 *  a hard link and a few modes; `version` 2 changes some files and adds others. */
export function buildSourceTree(root: string, version: 1 | 2, files = 300): void {
  const dirs: string[] = [];
  for (let i = 0; i < 30; i++) dirs.push(i < 10 ? `pkg${i}` : `pkg${i % 10}/sub${i}`);
  for (const d of dirs) fs.mkdirSync(path.join(root, d), { recursive: true });
  const count = version === 1 ? files : files + 40;
  for (let i = 0; i < count; i++) {
    const p = path.join(root, dirs[i % dirs.length]!, `f${i}.c`);
    const changed = version === 2 && i % 7 === 0;
    fs.writeFileSync(p, pattern((i * 677) % 20_000, changed ? i + 100 : i));
    fs.chmodSync(p, i % 11 === 0 ? 0o755 : 0o644);
    const ns = String((i * 7_654_321 + (changed ? 3 : 0)) % 1_000_000_000).padStart(9, '0');
    execOk(['touch', '-d', `@${1_600_000_000 + i * 3600 + (changed ? 86_400 : 0)}.${ns}`, p]);
  }
  if (version === 1) {
    fs.symlinkSync('../pkg1/f1.c', path.join(root, 'pkg0/link-to-f1'));
    fs.linkSync(path.join(root, 'pkg2/f2.c'), path.join(root, 'pkg2/hard-f2'));
  }
  // directory times last, deepest first, each with its own nanoseconds
  for (const [i, d] of [...dirs].reverse().entries()) execOk(['touch', '-d', `@${1_650_000_000 + i + version * 1000}.${String(i * 123_457).padStart(9, '0')}`, path.join(root, d)]);
}

export interface ProgramImage {
  tar: string;
  v2Tar: string; // version 2 of the source tree, for tar -x over tree/
}

/** dir/src → dir/programs.tar (repo/, db/, tree/ version 1, fsx/data) and dir/v2.tar. */
export function buildProgramImage(dir: string, fsxSize: number): ProgramImage {
  const src = path.join(dir, 'src');
  buildRepo(path.join(src, 'repo'));
  buildDatabases(path.join(src, 'db'));
  buildSourceTree(path.join(src, 'tree'), 1);
  fs.mkdirSync(path.join(src, 'fsx'));
  fs.writeFileSync(path.join(src, 'fsx/data'), pattern(fsxSize, 11));
  const tar = path.join(dir, 'programs.tar');
  execOk(['tar', '--format=posix', '--xattrs', '--numeric-owner', '-cf', tar, '-C', src, '.']);
  const v2 = path.join(dir, 'v2');
  fs.mkdirSync(v2);
  buildSourceTree(v2, 2);
  const v2Tar = path.join(dir, 'v2.tar');
  execOk(['tar', '--format=posix', '--numeric-owner', '-cf', v2Tar, '-C', v2, '.']);
  return { tar, v2Tar };
}
