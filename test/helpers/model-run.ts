// Runs one op sequence on a system under test and on kernel overlayfs over the same image, compares
// every step's result and then the whole trees (stat, xattrs, link targets, contents, hard-link
// classes, which image entry each inode came from), and checks remount stability and `diff`.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { expectedChanges, jsonAsPorcelain, jsonTypeErrors, parsePorcelain, porcelainLines } from './changes.js';
import { exec, execOk } from './exec.js';
import type { ModelImage } from './model-image.js';
import { applyOp, closeAll, describeOp, opsArb, type Op, type RootState } from './model-ops.js';
import { forceUnmount, strayMounts } from './mount.js';
import { compareTrees, showPath, snapshotTree, type Snapshot } from './tree.js';

export interface ModelTarget {
  label: string;
  root: string; // where ops apply
  remount?(): Promise<void>; // unmount and mount again, same changes
  unmount(): Promise<void>; // end of the run
  changes?(): Promise<{ porcelain: string; json: string }>; // `diff --porcelain` and `--json` stdout, unmounted
  dispose(): Promise<void>; // idempotent, forces; always called
}
export type TargetFactory = (runDir: string, run: number) => Promise<ModelTarget>;

/**
 * Kernel overlayfs as the reference. redirect_dir=on: renaming a lower directory works (otherwise
 * EXDEV). index=on: hard links stay one inode through copy-up (otherwise copying up one name splits
 * the class). metacopy=off: plain full copy-up; visible results are the same and it is the most
 * exercised path. Lower and upper on one filesystem: st_ino is the lower's and survives copy-up and
 * rename (origin xattrs), so inode identity is a meaningful reference. Root, so trusted.overlay.*
 * (not userxattr) and user.* xattrs pass through untouched.
 */
export const KERNEL_OVERLAY_OPTIONS = 'redirect_dir=on,index=on,metacopy=off';

/** The merged root shows the upper dir's own metadata: give it the image root's, so that a fresh
 *  overlay shows the image as tarstack does (mode, owner, mtime; the model image's root has no xattrs). */
export function copyRootMetadata(from: string, to: string): void {
  const st = fs.statSync(from, { bigint: true });
  fs.chownSync(to, Number(st.uid), Number(st.gid));
  fs.chmodSync(to, Number(st.mode & 0o7777n));
  execOk(['touch', '-d', `@${st.mtimeNs / 1_000_000_000n}.${String(st.mtimeNs % 1_000_000_000n).padStart(9, '0')}`, to]);
}

export function kernelOverlay(lower: string, runDir: string): ModelTarget {
  const [upper, work, mnt] = ['upper', 'work', 'kernel'].map((d) => path.join(runDir, d)) as [string, string, string];
  for (const d of [upper, work, mnt]) fs.mkdirSync(d, { recursive: true });
  copyRootMetadata(lower, upper);
  execOk(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},${KERNEL_OVERLAY_OPTIONS}`, mnt]);
  const unmount = async () => {
    if (strayMounts(mnt).length && exec(['umount', mnt]).code !== 0) forceUnmount(mnt);
  };
  return { label: 'kernel', root: mnt, unmount, dispose: unmount };
}

/**
 * A step where the two disagree and tarstack is right. Each is named, says why, and brings the
 * reference to tarstack's state so the run goes on; the paths it returns lost their inode identity
 * in the reference. Matches are counted and reported, never silent.
 */
export interface Allowance {
  name: string;
  reason: string;
  matches(op: Op, sut: string, kernel: string): boolean;
  reconcile(kernelRoot: string, op: Op): string[];
}

export const KERNEL_IS_WRONG: Allowance[] = [
  {
    name: 'kernel-exdev-on-directory-rename',
    reason: 'kernel overlayfs answers EXDEV for a directory rename it cannot record as a redirect (redirect_dir off, or a '
      + 'lower it cannot redirect); tarstack renames any directory in O(1). The reference catches up with mv (copy, then remove).',
    matches: (op, sut, kernel) => op.op === 'rename' && kernel === 'EXDEV' && sut === 'ok',
    reconcile: (root, op) => {
      const o = op as Extract<Op, { op: 'rename' }>;
      execOk(['mv', '-T', `${root}/${o.from}`, `${root}/${o.to}`]);
      return [o.to];
    },
  },
];

export interface RunResult {
  failures: string[]; // empty when the run passed
  allowed: string[]; // allowance names that matched, one per step
}

/** mtimes the system set during the run (not ops, whose times are all far from now) read as "now". */
export function normalizeNow(s: Snapshot, sinceNs: bigint): Snapshot {
  return { errors: s.errors, records: s.records.map((r) => (BigInt(r.mtimeNs) >= sinceNs ? { ...r, mtimeNs: 'now' } : r)) };
}

/** ino → the image paths that had it, from a snapshot of the untouched mount. */
const originsOf = (s: Snapshot) => {
  const m = new Map<string, string[]>();
  for (const r of s.records) m.set(r.ino, [...(m.get(r.ino) ?? []), r.path]);
  return m;
};

/** For every entry whose inode the kernel traces to an image entry, the SUT must trace it to the same. */
function identityDiffs(ref: Snapshot, refPristine: Snapshot, sut: Snapshot, sutPristine: Snapshot, lost: string[]): string[] {
  const refOrigins = originsOf(refPristine);
  const sutOrigins = originsOf(sutPristine);
  const sutByPath = new Map(sut.records.map((r) => [r.path, r]));
  const out: string[] = [];
  for (const r of ref.records) {
    const want = refOrigins.get(r.ino);
    const s = sutByPath.get(r.path);
    if (!want || !s || lost.some((l) => r.path === l || r.path.startsWith(`${l}/`))) continue;
    const got = sutOrigins.get(s.ino) ?? [];
    if (got.join('\0') !== want.join('\0')) {
      out.push(`${showPath(r.path)}: st_ino is that of [${got.map(showPath).join(' ')}] in the image, kernel keeps [${want.map(showPath).join(' ')}]'s`);
    }
  }
  return out;
}

/** The same snapshot after a remount: every field, inode numbers and exact mtimes included. */
function remountDiffs(before: Snapshot, after: Snapshot): string[] {
  const diffs = compareTrees(before, after);
  const a = new Map(after.records.map((r) => [r.path, r]));
  for (const r of before.records) {
    const x = a.get(r.path);
    if (x && x.ino !== r.ino) diffs.push(`${showPath(r.path)}: st_ino ${r.ino} became ${x.ino} across the remount`);
  }
  return diffs.map((d) => `after remount (reference: before it): ${d}`);
}

/** `diff` checked against the changes between the SUT's own trees before and after the run. */
export function changesDiffs(out: { porcelain: string; json: string }, expected: ReturnType<typeof expectedChanges>): string[] {
  const want = porcelainLines(expected);
  const got = parsePorcelain(out.porcelain);
  const show = (l: string[]) => l.map((x) => showPath(x).slice(1)).join(' | ') || '(nothing)';
  const diffs: string[] = [];
  if (got.join('\n') !== want.join('\n')) diffs.push(`diff --porcelain:\n    got:  ${show(got)}\n    want: ${show(want)}`);
  const json = jsonAsPorcelain(out.json);
  diffs.push(...json.errors, ...jsonTypeErrors(out.json, expected));
  if (!json.errors.length && json.lines.join('\n') !== got.join('\n')) diffs.push(`diff --json names other changes than --porcelain: ${show(json.lines)}`);
  return diffs;
}

/** One sequence, start to end. Every mount it makes is gone when it returns. */
export async function runSequence(ops: Op[], image: ModelImage, sutFactory: TargetFactory, runDir: string, run: number): Promise<RunResult> {
  fs.mkdirSync(runDir, { recursive: true });
  const failures: string[] = [];
  const allowed: string[] = [];
  const log: string[] = [];
  const lost: string[] = [];
  const sinceNs = BigInt(Date.now() - 2000) * 1_000_000n;
  let sut: ModelTarget | undefined;
  let ref: ModelTarget | undefined;
  let sutState: RootState | undefined;
  let refState: RootState | undefined;
  try {
    ref = kernelOverlay(image.lower, path.join(runDir, 'ref'));
    sut = await sutFactory(path.join(runDir, 'sut'), run);
    const sutPristine = snapshotTree(sut.root);
    const refPristine = snapshotTree(ref.root);
    for (const [label, s] of [['kernel', refPristine], [sut.label, sutPristine]] as const) {
      const start = compareTrees(image.pristine, s);
      if (start.length) failures.push(`${label} does not show the image before any op:`, ...start);
    }
    sutState = { root: sut.root, fds: new Map(), sinceNs };
    refState = { root: ref.root, fds: new Map(), sinceNs };
    for (const [i, op] of (failures.length ? [] : ops).entries()) {
      const got = applyOp(sutState, op);
      const want = applyOp(refState, op);
      const step = `${String(i + 1).padStart(3)}. ${describeOp(op)}`;
      if (got === want) {
        log.push(`${step}  → ${got}`);
        continue;
      }
      const allowance = KERNEL_IS_WRONG.find((a) => a.matches(op, got, want));
      if (allowance) {
        allowed.push(allowance.name);
        lost.push(...allowance.reconcile(ref.root, op));
        log.push(`${step}  → ${sut.label} ${got}, kernel ${want} (allowed: ${allowance.name})`);
        continue;
      }
      log.push(`${step}  → ${sut.label} ${got}, kernel ${want}   <== differs`);
      failures.push(`step ${i + 1} of ${ops.length} differs: ${describeOp(op)}: ${sut.label} ${got}, kernel ${want}`);
      break;
    }
    closeAll(sutState);
    closeAll(refState);
    if (!failures.length) {
      const label = sut.label;
      const sutFinal = snapshotTree(sut.root);
      const refFinal = snapshotTree(ref.root);
      failures.push(...compareTrees(normalizeNow(refFinal, sinceNs), normalizeNow(sutFinal, sinceNs), { limit: 30 }).map((d) => `final tree, ${label} vs kernel: ${d}`));
      failures.push(...identityDiffs(refFinal, refPristine, sutFinal, sutPristine, lost).map((d) => `final tree, ${label} vs kernel: ${d}`));
      if (sut.remount) {
        await sut.remount();
        failures.push(...remountDiffs(sutFinal, snapshotTree(sut.root)));
      }
      await sut.unmount();
      if (sut.changes) {
        failures.push(...changesDiffs(await sut.changes(), expectedChanges(sutPristine, sutFinal)));
      }
    }
  } finally {
    if (sutState) closeAll(sutState);
    if (refState) closeAll(refState);
    await sut?.dispose();
    await ref?.dispose();
    if (strayMounts(runDir).length) failures.push(`left mounted: ${strayMounts(runDir).map((m) => m.mountPoint).join(', ')}`);
    for (const m of strayMounts(runDir).reverse()) forceUnmount(m.mountPoint);
  }
  if (failures.length) failures.push('steps:', ...log);
  else fs.rmSync(runDir, { recursive: true, force: true });
  return { failures, allowed };
}

export interface ModelCheckOptions {
  image: ModelImage;
  sut: TargetFactory;
  dir: string; // runs go in dir/run-N
  seed: number;
  runs: number;
  steps: number; // the longest sequence
  path?: string; // fast-check's replay path, printed with a failure
  shrinkRuns: number; // shrinking remounts for every candidate: after this many, the smallest so far is reported
}

/** fast-check over op sequences; resolves to how often each allowance matched, rejects with the
 *  (shrunk) failing sequence's report and the seed/path that replays it. */
export async function checkModel(o: ModelCheckOptions): Promise<Map<string, number>> {
  const allowed = new Map<string, number>();
  let run = 0;
  let shrinking = -1; // candidates run since the first failure
  const property = fc.asyncProperty(opsArb(o.steps), async (ops) => {
    if (shrinking >= 0 && ++shrinking > o.shrinkRuns) return true; // stop shrinking: a count, never the clock
    const r = await runSequence(ops, o.image, o.sut, path.join(o.dir, `run-${++run}`), run);
    for (const name of r.allowed) allowed.set(name, (allowed.get(name) ?? 0) + 1);
    if (r.failures.length) {
      if (shrinking < 0) shrinking = 0;
      throw new Error(r.failures.join('\n'));
    }
    return true;
  });
  await fc.assert(property, { seed: o.seed, numRuns: o.runs, ...(o.path ? { path: o.path } : {}) });
  return allowed;
}
