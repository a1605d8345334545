// The model-based test of writable instances: random op sequences on a tarstack instance and on
// kernel overlayfs over the same image, compared step by step and as whole trees, then remount
// stability and `diff`. CI: fixed seeds, 6 parts (ava tests, one after another) of 2 runs of up to
// 80 steps: as many ops as the former 25 runs of up to 40, with half the mounts and CLI calls. Its
// work is bounded by counts, never by the clock (no time limit of its own; shrinking bounded by
// candidates), and each part is small beside ava's timeout (which restarts as each test ends), so a
// busy machine makes it slower, never failing. scripts/model-long runs more.
// Replay a failure: TARSTACK_MODEL_SEED (the part's, from the report), TARSTACK_MODEL_PARTS=1,
// _RUNS / _STEPS as it ran, TARSTACK_MODEL_PATH from the report.
import test from 'ava';
import path from 'node:path';
import { InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { buildModelImage, type ModelImage } from './helpers/model-image.js';
import { checkModel, KERNEL_IS_WRONG, type TargetFactory } from './helpers/model-run.js';
import { forceUnmount, makeTestRoot, strayMounts, removeTestRoot } from './helpers/mount.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`instance model suite skipped: ${skipReason}`, () => undefined);

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const SEED = env('TARSTACK_MODEL_SEED', 20240604);
const PARTS = env('TARSTACK_MODEL_PARTS', 6);
const RUNS = env('TARSTACK_MODEL_RUNS', 2); // per part
const STEPS = env('TARSTACK_MODEL_STEPS', 80);
const SHRINK_RUNS = env('TARSTACK_MODEL_SHRINK_RUNS', 40); // each shrink candidate remounts: bound them

const root = skipReason ? '' : makeTestRoot('model');
/** One store (and server) and one image for every part: each part's runs make their own instances. */
let shared: { session: InstanceSession; image: ModelImage } | undefined;
test.after.always(async () => {
  await shared?.session.cleanup();
  removeTestRoot(root);
});

/** Each run: a fresh instance of the image, mounted at runDir/mnt; remount and diff go through the CLI. */
function tarstackTarget(session: InstanceSession, image: string, prefix: string): TargetFactory {
  return async (runDir, run) => {
    const name = `${prefix}run-${run}`;
    const mnt = path.join(runDir, 'mnt');
    await session.create(name, image);
    let mounted = await session.mountInstance(name, mnt);
    const unmount = async () => {
      if (strayMounts(mnt).length) await session.umountInstance(mnt, mnt);
    };
    return {
      label: 'tarstack',
      root: mounted,
      unmount,
      remount: async () => {
        await unmount();
        mounted = await session.mountInstance(name, mnt);
      },
      changes: async () => {
        const [porcelain, json] = await Promise.all([session.ok(['diff', name, '--porcelain']), session.ok(['diff', name, '--json'])]);
        return { porcelain: porcelain.stdout, json: json.stdout };
      },
      dispose: async () => {
        // the instance stays in the store (removed with the test's root): an `rm` per run checks nothing here
        if (strayMounts(mnt).length) {
          await session.cli(['umount', mnt]);
          if (strayMounts(mnt).length) forceUnmount(mnt);
        }
      },
    };
  };
}

for (let part = 0; part < (skipReason ? 0 : PARTS); part++) {
  const seed = SEED + part;
  test.serial(`instances behave as kernel overlayfs (seed ${seed}, ${RUNS} runs of up to ${STEPS} steps)`, async (t) => {
    if (!shared) {
      shared = { session: new InstanceSession(path.join(root, 'tarstack')), image: buildModelImage(path.join(root, 'image')) };
      await shared.session.addImage(shared.image.tar, 'model');
    }
    const { session, image } = shared;
    const allowed = await checkModel({
      image,
      sut: tarstackTarget(session, 'model', `p${part}-`),
      dir: path.join(root, `part-${part}`),
      seed,
      runs: RUNS,
      steps: STEPS,
      ...(process.env.TARSTACK_MODEL_PATH ? { path: process.env.TARSTACK_MODEL_PATH } : {}),
      shrinkRuns: SHRINK_RUNS,
    });
    // where tarstack was right and the kernel was not: named, counted, shown
    for (const a of KERNEL_IS_WRONG) if (allowed.get(a.name)) t.log(`kernel-is-wrong allowance ${a.name} matched ${allowed.get(a.name)} time(s): ${a.reason}`);
    t.pass();
  });
}
