// The model-based test of writable instances: random op sequences on a tarstack instance and on
// kernel overlayfs over the same image, compared step by step and as whole trees, then remount
// stability and `diff`. CI: fixed seed, 25 runs of up to 40 steps; scripts/model-long runs more.
// Replay a failure: TARSTACK_MODEL_SEED / _RUNS / _STEPS as it ran, TARSTACK_MODEL_PATH from the report.
import test from 'ava';
import path from 'node:path';
import { InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { buildModelImage } from './helpers/model-image.js';
import { checkModel, KERNEL_IS_WRONG, type TargetFactory } from './helpers/model-run.js';
import { forceUnmount, makeTestRoot, strayMounts, removeTestRoot } from './helpers/mount.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`instance model suite skipped: ${skipReason}`, () => undefined);

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const SEED = env('TARSTACK_MODEL_SEED', 20240604);
const RUNS = env('TARSTACK_MODEL_RUNS', 25);
const STEPS = env('TARSTACK_MODEL_STEPS', 40);
const MINUTES = env('TARSTACK_MODEL_MINUTES', 4); // the test's own limit; CI's runs take about 1 min alone
const SHRINK_SECONDS = env('TARSTACK_MODEL_SHRINK_SECONDS', 60); // each shrink step remounts: bound it

const root = skipReason ? '' : makeTestRoot('model');
test.after.always(() => removeTestRoot(root));

/** Each run: a fresh instance of the image, mounted at runDir/mnt; remount and diff go through the CLI. */
function tarstackTarget(session: InstanceSession, image: string): TargetFactory {
  return async (runDir, run) => {
    const name = `run-${run}`;
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
      changes: async () => ({
        porcelain: (await session.ok(['diff', name, '--porcelain'])).stdout,
        json: (await session.ok(['diff', name, '--json'])).stdout,
      }),
      dispose: async () => {
        if (strayMounts(mnt).length) {
          await session.cli(['umount', mnt]);
          if (strayMounts(mnt).length) forceUnmount(mnt);
        }
        await session.cli(['rm', name]);
      },
    };
  };
}

if (!skipReason) test(`instances behave as kernel overlayfs (seed ${SEED}, ${RUNS} runs of up to ${STEPS} steps)`, async (t) => {
  t.timeout(MINUTES * 60_000);
  const session = new InstanceSession(path.join(root, 'tarstack'), t);
  const image = buildModelImage(path.join(root, 'image'));
  await session.addImage(image.tar, 'model');
  const allowed = await checkModel({
    image,
    sut: tarstackTarget(session, 'model'),
    dir: path.join(root, 'runs'),
    seed: SEED,
    runs: RUNS,
    steps: STEPS,
    ...(process.env.TARSTACK_MODEL_PATH ? { path: process.env.TARSTACK_MODEL_PATH } : {}),
    shrinkBudgetMs: SHRINK_SECONDS * 1000,
  });
  // where tarstack was right and the kernel was not: named, counted, shown
  for (const a of KERNEL_IS_WRONG) if (allowed.get(a.name)) t.log(`kernel-is-wrong allowance ${a.name} matched ${allowed.get(a.name)} time(s): ${a.reason}`);
  t.pass();
});
