// Where the store's servers log, and that their logs do not pile up: each detached server writes its
// own file in run/logs (server.log links to the newest), the last KEEP_LOGS are kept plus any a mount
// record names, and `status` names the log of a mount whose server died.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { alive, serverPid, sessionWithImage, status, waitFor } from './server-support.js';
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
