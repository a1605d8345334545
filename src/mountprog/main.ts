#!/usr/bin/env node
// tarstack-overlay: a drop-in mount program with fuse-overlayfs's calling convention (podman's
// mount_program, mount -t fuse.tarstack-overlay, fstab). Returns once the mount serves; the daemon it
// leaves behind exits when the mount point is unmounted (umount, fusermount -u) or on SIGTERM.
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rotateLog, startDetached } from '../daemon/spawn.js';
import { readinessLine, surviveStrayErrors, type Readiness } from '../daemon/protocol.js';
import { errorFunnel } from '../util/error-funnel.js';
import { parseArgs, supportedText, type MountRequest } from './options.js';
import { checkPaths, openMount } from './serve.js';

const SELF = fileURLToPath(import.meta.url);
const SERVE_FLAG = '--serve-detached';
const USAGE = `usage: tarstack-overlay -o lowerdir=A:B:C[,upperdir=U,workdir=W][,OPTIONS] MOUNTPOINT
       tarstack-overlay SOURCE MOUNTPOINT -o OPTIONS   (as mount.fuse calls it)
Lowers (leftmost on top) are directories or tar files; without upperdir the mount is read-only.
Flags: -f foreground, -d debug (foreground), -h help, -V version.`;

const { report } = errorFunnel('tarstack-overlay', { verbose: !!process.env.TARSTACK_DEBUG, unexpected: 'message' });

/** Serve until unmounted; `ready` is told once the mount answers requests. */
async function serve(req: MountRequest, ready: (r: Readiness) => void): Promise<void> {
  const opened = await openMount(req);
  const { mountNative } = await import('../fuse/native-backend.js');
  let mounted;
  try {
    mounted = await mountNative(opened.fs, {
      mountpoint: req.mountpoint,
      fsname: req.source ?? 'tarstack-overlay',
      subtype: 'tarstack-overlay',
      readOnly: req.readOnly,
      allowOther: req.allowOther,
      flags: req.flags,
      debug: req.debug,
    });
  } catch (err) {
    opened.fs.destroy();
    opened.release();
    throw err;
  }
  const stop = (): void =>
    void mounted
      .close()
      .catch(() => mounted.close({ lazy: true }))
      .catch((err: unknown) => console.error(`tarstack-overlay: cannot unmount ${req.mountpoint}: ${String(err)}`));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  ready({ ok: true, pid: process.pid });
  await mounted.unmounted;
  opened.release();
}

/** The detached daemon: readiness (or the one-line reason it failed) goes to fd 3. */
async function daemon(req: MountRequest): Promise<never> {
  const tell = readinessLine();
  surviveStrayErrors('tarstack-overlay daemon');
  console.error(`tarstack-overlay ${process.pid}: serving ${req.mountpoint} (${new Date().toISOString()})`);
  try {
    await serve(req, tell);
    console.error(`tarstack-overlay ${process.pid}: ${req.mountpoint} unmounted, exiting`);
    process.exit(0);
  } catch (err) {
    console.error(`tarstack-overlay ${process.pid}: ${(err as Error).stack ?? String(err)}`);
    tell({ ok: false, error: (err as Error).message });
    process.exit(1);
  }
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === SERVE_FLAG) return void (await daemon(JSON.parse(argv[1]) as MountRequest));
  const parsed = parseArgs(argv);
  if (parsed === 'help') return void process.stdout.write(`${USAGE}\n${supportedText()}\n`);
  if (parsed === 'version') return void process.stdout.write('tarstack-overlay 0.1.0\n');
  const req: MountRequest = { ...parsed, lowers: parsed.lowers.map((l) => resolve(l)), mountpoint: resolve(parsed.mountpoint) };
  if (req.upper !== undefined) req.upper = resolve(req.upper);
  if (req.work !== undefined) req.work = resolve(req.work);
  checkPaths(req);
  if (req.foreground) {
    await serve(req, () => undefined);
    process.exit(0);
  }
  // The daemon's log lives in the workdir (the one place that is ours); a read-only mount keeps none.
  const log = req.work !== undefined ? join(req.work, 'tarstack-overlay.log') : '/dev/null';
  if (req.work !== undefined) rotateLog(log); // one mount after another appends: kept under ~2 MiB
  await startDetached(SELF, [SERVE_FLAG, JSON.stringify(req)], log, { cwd: '/' }); // paths are absolute; hold no cwd busy
}

main(process.argv.slice(2)).catch(report);
