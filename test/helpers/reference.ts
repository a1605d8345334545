// Reference trees, made without any tarstack code: extractReference runs GNU tar (kernel overlayfs
// over layers is mounted.ts's `kernel` kind). Tests compare a tarstack mount with these.
import fs from 'node:fs';
import { exec } from './exec.js';
import { snapshotTree, type Snapshot } from './tree.js';

export interface Reference {
  dir: string;
  exitCode: number; // GNU tar: 0 clean, 2 when some members failed
  fatal: boolean; // tar gave up on the archive (not a tar, unexpected EOF)
  skipped: string[]; // member names tar refused or could not create, as tar printed them (unescaped)
  stderr: string[];
}

/** Diagnostics that mean "this member was not created"; anything else is a warning or fatal. */
const SKIP_REASONS = [/^Member name contains '\.\.'$/, /^Cannot hard link to /, /^Cannot open: /, /^Cannot create symlink to /,
  /^Cannot mknod: /, /^Cannot mkdir: /, /^Cannot mkfifo: /];
const FATAL = [/Error is not recoverable/, /This does not look like a tar archive/, /Unexpected EOF in archive/, /Skipping to next header/];

/** GNU tar prints names with C escapes (quotearg "escape"/locale style): undo \n, \t, \\, \ooo. */
function unescapeTarName(s: string): string {
  return s.replace(/\\(\\|n|t|[0-7]{3})/g, (_, e: string) =>
    e === '\\' ? '\\' : e === 'n' ? '\n' : e === 't' ? '\t' : String.fromCharCode(parseInt(e, 8)));
}

/**
 * Extracts `tar` into `dir` (created, mode 0755: the mode tarstack gives an implicit root) as root,
 * preserving owners, modes and all xattrs, with umask 022 so implicit directories get 0755.
 * --delay-directory-restore: without it GNU tar sets a directory's times as soon as a member
 * outside it comes, and a later member inside (bsdtar lists all subdirs before their contents)
 * bumps the mtime again, so the reference would lose the archive's directory mtimes.
 */
export function extractReference(tar: string, dir: string): Reference {
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  const r = exec(['sh', '-c', 'umask 022 && exec tar -x --delay-directory-restore --xattrs --xattrs-include="*" --numeric-owner -p -f "$1" -C "$2"', 'sh', tar, dir]);
  const stderr = r.stderr.split('\n').filter((l) => l !== '');
  const skipped: string[] = [];
  for (const line of stderr) {
    // "tar: NAME: REASON"; NAME itself may hold ": ", so try each split from the right
    const body = line.replace(/^tar: /, '');
    for (let i = body.lastIndexOf(': '); i > 0; i = body.lastIndexOf(': ', i - 1)) {
      if (SKIP_REASONS.some((re) => re.test(body.slice(i + 2)))) {
        skipped.push(unescapeTarName(body.slice(0, i)));
        break;
      }
    }
  }
  return { dir, exitCode: r.code, fatal: (r.code !== 0 && r.code !== 2) || stderr.some((l) => FATAL.some((re) => re.test(l))), skipped, stderr };
}

/** A member name as tarstack must place it: leading "/" and "." components dropped, null for ".." ones. */
export function normalizeMemberName(name: string): string | null {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return parts.includes('..') ? null : parts.join('/');
}

/** Member names as GNU tar lists them (GNU.sparse.name applied), normalized; "" stands for a ./ member. */
export function listMembers(tar: string): Set<string> {
  const r = exec(['tar', '-t', '--quoting-style=escape', '-f', tar]); // exits 2 on what -x would skip too
  const names = new Set<string>();
  for (const line of r.stdout.toString('latin1').split('\n')) {
    if (line === '') continue;
    const n = normalizeMemberName(unescapeTarName(line));
    if (n !== null) names.add(n);
  }
  return names;
}

/** Directories in an extracted tree that no member names: their mtime is the extraction time. */
export function implicitDirs(members: Set<string>, dirsInTree: Iterable<string>): string[] {
  return [...dirsInTree].filter((d) => !members.has(d));
}

/** The GNU tar reference of one tar, and the paths whose mtime is not the archive's (implicit dirs). */
export function gnuReference(tar: string, dir: string): { snap: Snapshot; implicit: string[] } {
  const ref = extractReference(tar, dir);
  if (ref.fatal) throw new Error(`GNU tar failed on ${tar}: ${ref.stderr.join(' | ')}`);
  const snap = snapshotTree(ref.dir);
  return { snap, implicit: implicitDirs(listMembers(tar), snap.records.filter((r) => r.type === 'dir').map((r) => r.path)) };
}
