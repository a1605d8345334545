// A new entry's atime, mtime and ctime are one time, and it belongs to its maker, as on kernel
// overlayfs (issue 12's conformance suite, `times/new-file`, found them apart now and then). The
// upper's object must be born right: made with the caller's owner (not chowned after) and in its
// place (not renamed there), since either call moves ctime when the clock ticks between. Many
// entries of every type, by root, by another user through --allow-other and by a user in their own
// instance, so a tick between two calls of the daemon shows (no timing is assumed: a run where the
// clock never ticks at the wrong moment passes either way).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runChild } from '../helpers/children.js';
import { makeTestRoot, MOUNTPROG_MAIN, mount, removeTestRoot, type MountConfig } from '../helpers/mounted.js';
import { ordinaryUser, type UserIds } from '../helpers/ordinary-user.js';
import { pack } from '../helpers/pack.js';

const MAKER = fileURLToPath(new URL('../helpers/new-entries.js', import.meta.url));
const COUNT = 150;
const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root and /dev/fuse' : undefined;
const root = skip ? '' : makeTestRoot('new-entry-times');
if (root) fs.chmodSync(root, 0o755); // other users make entries below
test.after.always(() => removeTestRoot(root));

interface Report {
  made: number;
  wrong: string[];
}

async function makeAs(dir: string, who: UserIds | undefined): Promise<Report> {
  const r = await runChild([process.execPath, MAKER, dir, String(COUNT)], { ...(who ?? {}), cwd: '/' });
  if (r.code !== 0) throw new Error(`new-entries exited ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Report;
}

/** `times: false`: only the owners are checked (the daemon could not be born right, and chowns). */
async function check(t: import('ava').ExecutionContext, name: string, config: MountConfig, callers: (UserIds | undefined)[], times = true): Promise<void> {
  const m = await mount(t, path.join(root, name), config);
  for (const [i, who] of callers.entries()) {
    const dir = path.join(m.root, `by-${i}`);
    if (who && !m.user) {
      fs.mkdirSync(dir);
      fs.chownSync(dir, who.uid, who.gid);
    } else {
      const made = await m.run(['mkdir', dir]);
      t.is(made.code, 0, made.stderr);
    }
    const r = await makeAs(dir, who);
    t.is(r.made, COUNT * 5);
    t.deepEqual(times ? r.wrong : r.wrong.filter((w) => !w.endsWith(` owner ${who?.uid ?? 0}:${who?.gid ?? 0}`)), [], `${name}, made by ${who ? who.uid : 'root'}`);
  }
  await m.unmount();
}

const tar = async (): Promise<string> => {
  const p = path.join(root, 'lower.tar');
  if (!fs.existsSync(p)) fs.writeFileSync(p, await pack([{ name: 'd/', type: 'directory', mode: 0o755 }, { name: 'd/f', body: 'x' }]));
  return p;
};

test('an instance mounted by root with --allow-other: new entries by root and by another user', async (t) => {
  const other = skip ?? ordinaryUser();
  if (typeof other === 'string') return t.pass(other);
  await check(t, 'instance-root', { kind: 'instance', lowers: [await tar()], options: ['--allow-other'] }, [undefined, other]);
});

test('an instance mounted by an ordinary user: new entries by that user', async (t) => {
  const user = skip ?? ordinaryUser();
  if (typeof user === 'string') return t.pass(user);
  const p = path.join(root, 'user-lower.tar');
  fs.copyFileSync(await tar(), p);
  fs.chownSync(p, user.uid, user.gid);
  await check(t, 'instance-user', { kind: 'instance', lowers: [p], user }, [user]);
});

test('tarstack-overlay (allow_other): new entries by root and by another user', async (t) => {
  const other = skip ?? ordinaryUser();
  if (typeof other === 'string') return t.pass(other);
  const lower = path.join(root, 'lower-dir');
  fs.mkdirSync(path.join(lower, 'd'), { recursive: true });
  await check(t, 'overlay', { kind: 'overlay-program', lowers: [lower] }, [undefined, other]);
});

test('tarstack-overlay as root without CAP_SETPCAP (it cannot take another fsuid and keep its capabilities): new entries still belong to their maker', async (t) => {
  const other = skip ?? ordinaryUser();
  if (typeof other === 'string') return t.pass(other);
  if (!fs.existsSync('/usr/sbin/capsh')) return t.pass('needs capsh');
  const lower = path.join(root, 'lower-dir-nocap');
  fs.mkdirSync(path.join(lower, 'd'), { recursive: true });
  const program = path.join(root, 'overlay-without-setpcap');
  fs.writeFileSync(program, `#!/bin/sh\nexec /usr/sbin/capsh --drop=cap_setpcap -- -c 'exec "$0" "$@"' ${process.execPath} ${MOUNTPROG_MAIN} "$@"\n`, { mode: 0o755 });
  await check(t, 'overlay-nocap', { kind: 'overlay-program', lowers: [lower], program }, [undefined, other], false);
});
