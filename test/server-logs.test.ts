// Where the store's servers log, and that their logs do not pile up: each detached server writes its
// own file in run/logs (server.log links to the newest), the last KEEP_LOGS are kept plus any a mount
// record names, and `status` names the log of a mount whose server died.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { alive, serverPid, sessionWithImage, status, waitFor } from './server-support.js';
import { tarstackCli } from './helpers/mount.js';
import { KEEP_LOGS } from '../src/server/files.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`server log suite skipped: ${skipReason}`, () => undefined);
const it = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test(title, fn);
const root = skipReason ? '' : makeTestRoot('server-logs');
test.after.always(() => removeTestRoot(root));

it("one log per server, the last ones kept and a dead mount's too; status names it", async (t) => {
  const s = await sessionWithImage(t, path.join(root, 'logs'), { 'etc/motd': 'hello\n' });
  const logs = path.join(s.home, 'run', 'logs');
  const serverLogs = () => fs.readdirSync(logs).filter((n) => /^server-.*\.log$/.test(n)).sort();
  fs.mkdirSync(logs, { recursive: true });
  for (let i = 0; i < KEEP_LOGS + 2; i++) fs.writeFileSync(path.join(logs, `server-2000-01-01T00-00-${String(i).padStart(2, '0')}-000Z-1.log`), `old ${i}\n`);
  await s.create('a', 'img');
  await s.create('b', 'img');
  const a = await s.mountInstance('a');
  const first = serverLogs();
  t.is(first.length, KEEP_LOGS, 'the oldest logs went when a server started');
  const own = path.join(logs, first[first.length - 1]!);
  t.is(fs.realpathSync(path.join(logs, 'server.log')), own, 'server.log is the newest server\'s log');
  t.regex(fs.readFileSync(own, 'utf8'), /serving store/, "the server's output is in it");

  const pid = serverPid(s)!;
  process.kill(pid, 'SIGKILL');
  await waitFor('the server to die', () => !alive(pid));
  const rows = (await status(s)) as Array<{ state: string; log?: string }>;
  t.deepEqual(rows.map((r) => [r.state, r.log]), [['dead', own]]);
  t.regex((await s.ok(['status'])).stdout, new RegExp(`^${a}: its server's log: ${own}$`, 'm'), "status names the dead mount's log");

  // Newer logs than the dead mount's, then a new server: the dead mount's log stays while its record does.
  const stem = path.basename(own, '.log');
  for (let i = 0; i < KEEP_LOGS; i++) fs.writeFileSync(path.join(logs, `${stem}~${i}.log`), '');
  await s.mountInstance('b');
  t.true(fs.existsSync(own), "the dead mount's log is kept");
  t.is(serverLogs().length, KEEP_LOGS + 1, 'the last ones and the named one');
  t.not(fs.realpathSync(path.join(logs, 'server.log')), own, 'the new server logs elsewhere');
  await s.ok(['umount', a]);
  await s.ok(['umount', 'b']);
});

it("a long-lived server's log is cut past its cap: the lines so far become LOG.1, and it logs on in LOG", async (t) => {
  const s = await sessionWithImage(t, path.join(root, 'cap'), { 'etc/motd': 'hello\n' });
  const MAX = 1500;
  const env = { TARSTACK_HOME: s.home, TARSTACK_SERVER_LOG_MAX: String(MAX) };
  await s.create('a', 'img');
  await s.create('b', 'img');
  const mnt = (n: string) => (fs.mkdirSync(path.join(s.root, `mnt-${n}`), { recursive: true }), path.join(s.root, `mnt-${n}`));
  const ok = async (args: string[]) => t.is((await tarstackCli(args, { env })).code, 0, args.join(' '));
  await ok(['mount', 'b', mnt('b')]); // keeps the one server there throughout
  const pid = serverPid(s)!;
  const own = (await status(s))[0]!.log!;
  for (let i = 0; i < 8; i++) {
    await ok(['mount', 'a', mnt('a')]);
    await ok(['umount', 'a']);
  }
  t.is(serverPid(s), pid, 'one server throughout');
  const before = fs.readFileSync(`${own}.1`, 'utf8');
  const now = fs.readFileSync(own, 'utf8');
  t.regex(now, /^tarstack server \d+: log cut at 1500 bytes; the lines before are in /, 'the new log says where the lines before are');
  t.regex(now, /mounted a at /, 'the server logs on in the new file');
  t.regex(before, /mounted a at /);
  // Each check cuts what grew since the last one (one mount or one end): a few lines over the cap at most.
  for (const [name, size] of [[own, now.length], [`${own}.1`, before.length]] as const) t.true(size < MAX + 2048, `${name}: ${size} bytes`);
  t.is(fs.realpathSync(path.join(s.home, 'run', 'logs', 'server.log')), own, 'server.log still names it');
  await ok(['umount', 'b']);
});
