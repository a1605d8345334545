// `tarstack serve`: run the store's server here (--foreground), end it (--stop), or make sure it
// runs and say how it is (the default).
import type { Context } from '../context.js';
import { printJson } from '../output.js';
import { askServer } from '../../server/client.js';
import { ServerFiles } from '../../server/files.js';
import { pidAlive } from '../../util/proc.js';

const STOP_WAIT_MS = 10_000;

export async function serve(ctx: Context, a: { foreground?: boolean; stop?: boolean }): Promise<void> {
  if (a.foreground) {
    const { runServer } = await import('../../server/run.js');
    await runServer(ctx.paths.root, { foreground: true, onReady: (pid) => process.stdout.write(`tarstack server ${pid} serves store ${ctx.paths.root}\n`) });
    process.exit(0); // a FUSE binding may keep handles alive after its sessions ended
  }
  if (a.stop) return stop(ctx);
  const r = await askServer(ctx.paths, { op: 'status' }, { start: true });
  const st = r!.status!;
  if (ctx.opts.json) return printJson(st);
  process.stdout.write(`tarstack server ${st.pid}: ${st.mounts.length} mount(s), ${st.layers} shared layer(s) held ${st.leases} time(s), RSS ${(st.rssBytes / 1048576).toFixed(1)} MiB (JS heap ${(st.heapUsedBytes / 1048576).toFixed(1)} MiB)\n`);
}

async function stop(ctx: Context): Promise<void> {
  const info = new ServerFiles(ctx.paths).readInfo();
  const r = await askServer(ctx.paths, { op: 'stop' }, { start: false });
  if (!r || !info) {
    process.stdout.write(`no tarstack server serves store ${ctx.paths.root}\n`);
    return;
  }
  const deadline = Date.now() + STOP_WAIT_MS;
  while (pidAlive(info.pid) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  if (pidAlive(info.pid)) process.stdout.write(`tarstack server ${info.pid} is stopping: it serves its detached mounts until their last users leave\n`);
  else process.stdout.write(`stopped tarstack server ${info.pid}\n`);
}
