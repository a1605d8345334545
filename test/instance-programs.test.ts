// Real programs in tarstack instances: git (commit, a lower directory renamed, checkout of a branch
// that moves directories, fsck), sqlite3 in rollback and WAL mode, tar -x / tar -c round-tripping
// nanosecond mtimes, and fsx with mmap on a file that starts in the image; each survives a remount.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { exec, execOk } from './helpers/exec.js';
import { instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, mount, removeTestRoot, type Mounted } from './helpers/mounted.js';
import { buildProgramImage, type ProgramImage } from './helpers/program-image.js';
import { fsxScenario, gitScenario, sqliteScenario, tarScenario } from './helpers/programs.js';

/** Debian packages of the programs run here (python3 for fsx's mmap helper). */
const TOOLS: Record<string, string> = { git: 'git', sqlite3: 'sqlite3', python3: 'python3' };
const missing = Object.keys(TOOLS).filter((cmd) => exec(['sh', '-c', `command -v ${cmd}`]).code !== 0);
const skipReason = (await instanceSkipReason())
  ?? (missing.length ? `needs ${missing.join(', ')} (apt-get install -y ${missing.map((m) => TOOLS[m]).join(' ')})` : undefined);
if (skipReason) test.skip(`instance programs suite skipped: ${skipReason}`, () => undefined);
/** Registers nothing when skipping: the one skip line above says why. */
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void> | void) => skipReason || test.serial(title, fn);

const FSX_SEED = Number(process.env.TARSTACK_FSX_SEED ?? 7);
const FSX_OPS = Number(process.env.TARSTACK_FSX_OPS ?? 1500);

const root = skipReason ? '' : makeTestRoot('programs');
let image: ProgramImage;
let imageSha = '';
const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test.before(() => {
  if (skipReason) return;
  image = buildProgramImage(path.join(root, 'image'), 1_500_000);
  imageSha = sha(image.tar);
});

test.after.always(() => removeTestRoot(root));

/** A fresh instance of the program image, mounted; unmounted (and its daemon ended) when the test ends. */
function instance(t: ExecutionContext, name: string): Promise<Mounted> {
  return mount(t, path.join(root, name), { kind: 'instance', lowers: [image.tar] });
}

serial('git: commit, rename a lower directory, checkout a branch that moves directories, fsck', async (t) => {
  await gitScenario(t, await instance(t, 'git'));
});

serial('sqlite3: rollback and WAL databases from the image, integrity_check ok after remount', async (t) => {
  const hostDb = path.join(root, 'host-db');
  execOk(['cp', '-a', path.join(root, 'image/src/db'), hostDb]);
  await sqliteScenario(t, await instance(t, 'sqlite'), hostDb);
});

serial('tar: -x of a source tree over the image\'s copy and into a new dir, -c round-trips nanosecond mtimes', async (t) => {
  const work = path.join(root, 'tar-work');
  fs.mkdirSync(work);
  await tarScenario(t, await instance(t, 'tar'), image.tar, image.v2Tar, work);
});

serial(`fsx: reads, writes, truncates and shared mmap on a file from the image (seed ${FSX_SEED}, ${FSX_OPS} ops)`, async (t) => {
  await fsxScenario(t, await instance(t, 'fsx'), FSX_SEED, FSX_OPS);
});

serial('the image tar is never written', (t) => {
  t.is(sha(image.tar), imageSha);
});
