// What `tarstack diff` must print, derived from two tree snapshots (the image's and the instance's),
// and parsers for its --porcelain and --json forms. The definition is expectedChanges' doc.
import type { EntryType, Snapshot, TreeRecord } from './tree.js';

export type ChangeKind = 'A' | 'M' | 'D';
export interface Change { path: string; change: ChangeKind; type: EntryType }

const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

function differs(a: TreeRecord, b: TreeRecord): boolean {
  const keys = (x: TreeRecord) => JSON.stringify([x.type, x.mode, x.uid, x.gid, x.type === 'dir' ? '' : x.size, x.mtimeNs, x.target ?? null,
    x.rdev ?? null, x.sha256 ?? null, Object.entries(x.xattrs).sort()]);
  return keys(a) !== keys(b);
}

/**
 * The changes from `image` to `instance`, the definition the suites hold `diff` to:
 * - path by path, every path listed (a deleted subtree lists each entry; nothing is collapsed),
 *   relative to the root, the root itself never listed, sorted by bytes;
 * - A: only in the instance; D: only in the image; M: in both, and type, content (sha256), size,
 *   mode, owner, mtime, symlink target, device numbers or xattrs differ. nlink, inode numbers, atime
 *   and ctime are not part of it (linking a new name to a file does not modify the file);
 * - a directory rename is D for every old path and A for every new one; a directory whose entries
 *   changed is M through its mtime; a type change at one path (file replaced by a dir) is M.
 */
export function expectedChanges(image: Snapshot, instance: Snapshot): Change[] {
  const before = new Map(image.records.map((r) => [r.path, r]));
  const after = new Map(instance.records.map((r) => [r.path, r]));
  const out: Change[] = [];
  for (const r of instance.records) {
    if (r.path === '') continue;
    const old = before.get(r.path);
    if (!old) out.push({ path: r.path, change: 'A', type: r.type });
    else if (differs(old, r)) out.push({ path: r.path, change: 'M', type: r.type });
  }
  for (const r of image.records) if (r.path !== '' && !after.has(r.path)) out.push({ path: r.path, change: 'D', type: r.type });
  return out.sort(byPath);
}

export const porcelainLines = (changes: Change[]): string[] => changes.map((c) => `${c.change} ${c.path}`);

/** `diff --porcelain` stdout as lines, byte strings (latin1) like snapshot paths. */
export function parsePorcelain(stdout: Buffer | string): string[] {
  const text = Buffer.isBuffer(stdout) ? stdout.toString('latin1') : Buffer.from(stdout).toString('latin1');
  return text.split('\n').filter((l) => l !== '');
}

/** `diff --json` checked for shape: an array of {path, change: added|modified|deleted, type}; returns
 *  it as porcelain lines (sorted) so it can be compared with the porcelain form, plus shape errors. */
export function jsonAsPorcelain(stdout: string): { lines: string[]; errors: string[] } {
  const errors: string[] = [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (e) {
    return { lines: [], errors: [`diff --json is not JSON: ${(e as Error).message}`] };
  }
  if (!Array.isArray(parsed)) return { lines: [], errors: ['diff --json is not an array'] };
  const letters: Record<string, ChangeKind> = { added: 'A', modified: 'M', deleted: 'D' };
  const types = new Set(['file', 'dir', 'symlink', 'char', 'block', 'fifo', 'socket']);
  const items: Change[] = [];
  for (const item of parsed as Array<Record<string, unknown>>) {
    const { path, change, type } = item ?? {};
    if (typeof path !== 'string' || typeof change !== 'string' || !letters[change] || typeof type !== 'string' || !types.has(type)) {
      errors.push(`diff --json entry has not {path, change: added|modified|deleted, type: file|dir|symlink|...}: ${JSON.stringify(item)}`);
      continue;
    }
    items.push({ path: Buffer.from(path).toString('latin1'), change: letters[change]!, type: type as EntryType });
  }
  return { lines: porcelainLines(items.sort(byPath)), errors };
}

/** The --json entries' types checked against the expected ones (porcelain has no types). */
export function jsonTypeErrors(stdout: string, expected: Change[]): string[] {
  const want = new Map(expected.map((c) => [c.path, c.type]));
  const errors: string[] = [];
  try {
    for (const item of JSON.parse(stdout) as Array<{ path: string; type: string }>) {
      const p = Buffer.from(item.path).toString('latin1');
      if (want.has(p) && want.get(p) !== item.type) errors.push(`diff --json: ${item.path} has type ${item.type}, expected ${want.get(p)}`);
    }
  } catch {
    // reported by jsonAsPorcelain
  }
  return errors;
}
