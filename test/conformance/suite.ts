// Runs the named cases against configurations and compares each with kernel overlayfs over the same
// layers, run by the same caller: per case, every step's outcome (value or errno) must be the
// kernel's, except where differences.ts says tarstack deliberately differs, and except a defect
// not fixed yet (expected-failures.ts), whose case must still fail. One mount per configuration;
// the cases run in a child process (run-cases.ts), each in a directory of its own.
import type { ExecutionContext, TestFn } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runChild } from '../helpers/children.js';
import { execOk } from '../helpers/exec.js';
import { makeTestRoot, mount, removeTestRoot, type MountConfig, type Mounted } from '../helpers/mounted.js';
import { ordinaryUser, type UserIds } from '../helpers/ordinary-user.js';
import { cases } from './index.js';
import { differenceFor, DIFFERENCES } from './differences.js';
import { expectedFailure } from './expected-failures.js';
import { rotate } from './rotate.js';
import type { Outcome } from './run-cases.js';

const RUNNER = fileURLToPath(new URL('./run-cases.js', import.meta.url));

export type Outcomes = Record<string, Outcome>;

/** The layers every configuration of a test file mounts: the cases' lower fixtures as a directory,
 *  and as a tar (GNU tar, PAX, xattrs) when asked; `owner` makes them another user's (cp -a + chown). */
export function buildLower(dir: string, owner?: UserIds): string {
  const lower = path.join(dir, 'lower');
  for (const [name, c] of Object.entries(cases)) {
    const d = path.join(lower, name);
    fs.mkdirSync(d, { recursive: true });
    c.lower?.(d);
  }
  if (owner) execOk(['chown', '-R', '-h', `${owner.uid}:${owner.gid}`, lower]);
  return lower;
}

export function tarOf(lower: string, out: string): string {
  execOk(['tar', '--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', out, '-C', lower, '.']);
  return out;
}

/** Names of the cases a caller can run (an ordinary user leaves out the ones that need root). */
export const caseNames = (asRoot: boolean): string[] => Object.keys(cases).filter((n) => asRoot || cases[n]!.needs !== 'root');

/** Who runs the cases: root (with another user for the permission cases) or the ordinary user. */
export interface Caller {
  user?: UserIds;
  other?: UserIds;
}

/** run-cases.js MODE ROOT ARG NAME…: ARG is the outcomes' file (run) or the round (rotate). */
async function childRun(m: { root: string }, arg: string, names: string[], caller: Caller, mode: 'run' | 'rotate' = 'run'): Promise<void> {
  const argv = [process.execPath, RUNNER, mode, m.root, arg, ...names];
  const env = caller.other ? { CONFORMANCE_OTHER: `${caller.other.uid}:${caller.other.gid}` } : {};
  const r = caller.user
    ? await runChild(argv, { uid: caller.user.uid, gid: caller.user.gid, cleanEnv: true, env: { PATH: '/usr/bin:/bin', LC_ALL: 'C.UTF-8' }, cwd: '/' })
    : await runChild(argv, { env, cwd: '/' });
  if (r.code !== 0) throw new Error(`run-cases ${mode} exited ${r.code}: ${r.stderr.trim()}`);
}

/** Runs the cases on a mounted configuration; outcomes by case name. */
export async function runCases(m: Mounted | { root: string }, dir: string, caller: Caller, group?: string): Promise<Outcomes> {
  const out = path.join(dir, `outcomes-${group ?? 'all'}.json`);
  fs.writeFileSync(out, '');
  if (caller.user) fs.chownSync(out, caller.user.uid, caller.user.gid);
  await childRun(m, out, caseNames(!caller.user).filter((n) => !group || n.startsWith(`${group}/`)), caller);
  return JSON.parse(fs.readFileSync(out, 'utf8')) as Outcomes;
}

/**
 * Runs the named cases in a child, on a mount at `root` (as root), or with `inProcess` on an InstanceFs
 * over `tar` in the child itself (in-process.ts), its upper and work dirs in `state`, its root standing
 * at `root`. Outcomes by case name.
 */
export async function runNamed(root: string, out: string, names: string[], inProcess?: { tar: string; state: string }): Promise<Outcomes> {
  fs.writeFileSync(out, '');
  const argv = inProcess ? [process.execPath, RUNNER, 'inproc', root, out, inProcess.tar, inProcess.state, ...names] : [process.execPath, RUNNER, 'run', root, out, ...names];
  const r = await runChild(argv, { cwd: '/' });
  if (r.code !== 0) throw new Error(`run-cases ${argv[2]} exited ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(fs.readFileSync(out, 'utf8')) as Outcomes;
}

/**
 * Rotation round `round`'s step (each case's rotate hook, or a copy-up: rotate.ts) through a mount:
 * as root in this process (it serves no mount; a child's start would cost more than the round),
 * as an ordinary user in a child.
 */
export async function rotateCases(m: Mounted, caller: Caller, round: number): Promise<void> {
  if (!caller.user) return rotate(m.root, round, caseNames(true));
  await childRun(m, String(round), caseNames(false), caller, 'rotate');
}

export interface Tally {
  config: string;
  cases: number;
  passes: number;
  differences: string[];
  expectedFailures: string[];
}

const firstLine = (e: string | undefined) => e?.split('\n')[0];

/** Compares each case with the kernel's; fails the test for each unexpected difference. */
export function compare(t: ExecutionContext, config: string, kernel: Outcomes, got: Outcomes): Tally {
  const tally: Tally = { config, cases: 0, passes: 0, differences: [], expectedFailures: [] };
  const problems: string[] = [];
  for (const [name, want] of Object.entries(kernel)) {
    const have = got[name];
    if (!have) continue;
    tally.cases++;
    if (want.error) {
      problems.push(`${name}: the case itself failed on kernel overlayfs: ${want.error}`);
      continue;
    }
    // a step agrees when it gives the kernel's outcome, or the one a listed difference gives
    let at = -1;
    const used: string[] = [];
    for (let k = 0; k < Math.max(have.steps.length, want.steps.length); k++) {
      const [label, ours] = have.steps[k] ?? ['(missing)', undefined];
      const [wantLabel, theirs] = want.steps[k] ?? ['(missing)', undefined];
      if (label === wantLabel && JSON.stringify(ours) === JSON.stringify(theirs)) continue;
      const d = label === wantLabel ? differenceFor(name, label, config) : undefined;
      if (d && (typeof d.tarstack === 'function' ? (d.tarstack as (o: unknown, k: unknown) => boolean)(ours, theirs) : JSON.stringify(ours) === JSON.stringify(d.tarstack))) {
        used.push(`${name}: ${label}`);
        continue;
      }
      at = k;
      break;
    }
    const same = !have.error && at < 0;
    if (same) tally.differences.push(...used);
    const expected = expectedFailure(name, config);
    if (expected) {
      tally.expectedFailures.push(`${name} (defect ${expected.defect}${expected.sometimes ? ', sometimes' : ''}${same ? ': passed this time' : ''})`);
      if (same && !expected.sometimes) problems.push(`${name} passes on ${config} now: defect ${expected.defect} is fixed here, remove its entry from test/conformance/expected-failures.ts`);
      continue;
    }
    if (same) {
      tally.passes++;
      continue;
    }
    problems.push(`${name} on ${config}: ${have.error ? `the case failed: ${firstLine(have.error)} (after ${have.steps.length} steps); ` : ''}` +
      `first difference at step ${at}: kernel ${JSON.stringify(want.steps[at])}, tarstack ${JSON.stringify(have.steps[at])}`);
  }
  tally.differences = [...new Set(tally.differences)];
  const slow = Object.entries(got).sort((a, b) => (b[1].ms ?? 0) - (a[1].ms ?? 0)).slice(0, 4);
  t.log(`${config}: slowest cases ${slow.map(([n, o]) => `${n} ${o.ms} ms`).join(', ')}`);
  t.log(`${config}: ${tally.cases} cases, ${tally.passes} pass, ${tally.differences.length} listed differences, ${tally.expectedFailures.length} expected failures${tally.expectedFailures.length ? `: ${tally.expectedFailures.join(', ')}` : ''}`);
  if (process.env.CONFORMANCE_TALLY) fs.appendFileSync(process.env.CONFORMANCE_TALLY, JSON.stringify(tally) + '\n');
  t.deepEqual(problems, [], `${config}: cases that differ from kernel overlayfs`);
  return tally;
}

/** The groups of cases: the part of a case's name before its '/' (links, rename, open, …). */
export const GROUPS = [...new Set(Object.keys(cases).map((n) => n.split('/')[0]!))];

/** One configuration of a test file: how to mount it, and who runs the cases there. */
export interface ConfigSpec {
  name: string;
  caller: Caller;
  /** Mounts it (in dir, made for it); may mount and unmount before (the rotated configuration). */
  mount: (dir: string) => Promise<Mounted>;
  /** The reference's name in this file: configurations run by the same caller over the same layers share one. */
  reference: string;
}

interface Live {
  mounted: Promise<Mounted>;
  dir: string;
  caller: Caller;
  queue: Promise<unknown>;
  runs: Map<string, Promise<Outcomes>>;
}

/**
 * Registers a test file's tests: for each configuration and each group of cases, one test that runs
 * the group on the configuration's mount and on its kernel reference and compares them. Each mount is
 * made once (on first use) and serves its groups one after another (a queue); results come group by
 * group, so a slow machine never leaves ava waiting long for one. The file's after-hook unmounts all.
 */
export function conformanceFile(test: TestFn, label: string, names: string[], setup: (root: string, other: UserIds) => { configs: ConfigSpec[]; references: Record<string, ConfigSpec> }): void {
  let root = '';
  let other: UserIds | string = 'not made yet';
  let plan: ReturnType<typeof setup> | undefined;
  const live = new Map<string, Live>();
  test.before(() => {
    root = makeTestRoot(`conformance-${label}`);
    fs.chmodSync(root, 0o755);
    other = ordinaryUser();
    if (typeof other !== 'string') plan = setup(root, other);
  });
  test.after.always(async () => {
    // every mount goes, whatever one of them does (unmount() forces a stuck one off, then throws)
    const failures: string[] = [];
    for (const l of live.values()) await l.mounted.then((m) => m.unmount(), () => undefined).catch((err: Error) => failures.push(err.message));
    removeTestRoot(root);
    if (failures.length) throw new Error(failures.join('\n'));
  });
  const use = (spec: ConfigSpec): Live => {
    let l = live.get(spec.name);
    if (!l) {
      const dir = path.join(root, spec.name);
      fs.mkdirSync(dir, { recursive: true });
      fs.chmodSync(dir, 0o755);
      const mounted = spec.mount(dir).then((m) => {
        if (!spec.caller.user && !m.user) fs.chmodSync(m.root, 0o755);
        return m;
      });
      l = { mounted, dir, caller: spec.caller, queue: mounted, runs: new Map() };
      live.set(spec.name, l);
    }
    return l;
  };
  const runGroup = (spec: ConfigSpec, group: string): Promise<Outcomes> => {
    const l = use(spec);
    let r = l.runs.get(group);
    if (!r) {
      r = l.queue.then(async () => runCases(await l.mounted, l.dir, l.caller, group));
      l.queue = r.catch(() => undefined);
      l.runs.set(group, r);
    }
    return r;
  };
  // ava needs the tests now; the configurations (layers, the other user) are made in before(), in
  // the order of `names`.
  for (const [i, name] of names.entries()) {
    for (const group of GROUPS) {
      test(`${name}: ${group}`, async (t) => {
        if (!plan) return t.pass(`skipped: ${String(other)}`);
        const spec = plan.configs[i]!;
        t.is(spec.name, name);
        const ref = plan.references[spec.reference]!;
        const [want, got] = await Promise.all([runGroup(ref, group), runGroup(spec, group)]);
        compare(t, name, want, got);
      });
    }
  }
}

export const kernelSpec = (name: string, lowers: string[], caller: Caller): ConfigSpec => ({
  name, caller, reference: name, mount: (dir) => mount(undefined, dir, { kind: 'kernel', lowers }),
});

export const mountSpec = (name: string, config: MountConfig, caller: Caller, reference: string): ConfigSpec => ({
  name, caller, reference, mount: (dir) => mount(undefined, dir, config),
});

export { DIFFERENCES };
