// What an ordinary user is refused when mounting, each as one line that says why: where fusermount3
// refuses the mount point, its own reason (it says it only on stderr, which the server logs);
// what only root may ask for (suid, dev).
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { makeTestRoot, mountAt, removeTestRoot } from './helpers/mounted.js';
import { ordinaryUser, UserSession, type UserIds } from './helpers/ordinary-user.js';
import { pack } from './helpers/pack.js';

const ids = ordinaryUser();
const skip = typeof ids === 'string' ? ids : undefined;
if (skip) test.skip(`ordinary-user refusals skipped: ${skip}`, () => undefined);
const it = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skip || test.serial(title, fn);
const user = ids as UserIds;
const root = skip ? '' : makeTestRoot('rootless-refusals');
if (root) fs.chmodSync(root, 0o711);
test.after.always(() => removeTestRoot(root));

const oneLine = (t: ExecutionContext, r: { code: number; stderr: string }, re: RegExp, what: string) => {
  t.not(r.code, 0, what);
  const lines = r.stderr.split('\n').filter(Boolean);
  t.is(lines.length, 1, `${what}: ${r.stderr}`);
  t.regex(lines[0] ?? '', re, what);
};

it("a mount point fusermount3 refuses: its reason, on one line", async (t) => {
  const s = new UserSession(user, path.join(root, 's1'), t);
  const tar = path.join(s.home, 'img.tar');
  fs.writeFileSync(tar, await pack([{ name: 'f', body: 'x\n' }]));
  fs.chownSync(tar, user.uid, user.gid);
  await s.ok(['image', 'add', tar, '--name', 'img']);
  await s.ok(['create', 'w', 'img']);
  const rootsDir = path.join(s.root, 'roots-dir'); // root's, mode 0755: the user may not mount on it
  fs.mkdirSync(rootsDir, { mode: 0o755 });
  const r = await s.cli(['mount', 'w', rootsDir]);
  oneLine(t, r, new RegExp(`^tarstack: cannot mount at ${rootsDir}: fusermount3: user has no write access to mountpoint ${rootsDir}$`), 'fusermount3 refused');
  t.false(!!mountAt(rootsDir));
  const img = await s.cli(['image', 'mount', 'img', rootsDir]);
  oneLine(t, img, /fusermount3: user has no write access to mountpoint/, 'image mount: the same reason');
  const mine = path.join(s.home, 'mnt');
  fs.mkdirSync(mine);
  fs.chownSync(mine, user.uid, user.gid);
  oneLine(t, await s.cli(['mount', 'w', mine, '-o', 'suid']), /^tarstack: -o suid: only root may mount with suid/, '-o suid');
  oneLine(t, await s.cli(['mount', 'w', mine, '-o', 'dev']), /^tarstack: -o dev: only root/, '-o dev');
  t.false(!!mountAt(mine));
});
