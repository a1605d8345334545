#!/usr/bin/env node
// Entry point of a detached mount daemon: argv[2] is the JSON DaemonArgs; readiness (or the one-line
// reason it failed) goes to fd 3, which the starting CLI reads; everything else goes to the log.
import { closeSync, writeSync } from 'node:fs';
import { READY_FD, type DaemonArgs, type Readiness } from './protocol.js';
import { serve } from './serve.js';

const args = JSON.parse(process.argv[2] ?? '{}') as DaemonArgs;
let told = false;
/** One line on fd 3, written synchronously: the daemon may exit right after saying it failed. */
const tell = (r: Readiness): void => {
  if (told) return;
  told = true;
  try {
    writeSync(READY_FD, JSON.stringify(r) + '\n');
    closeSync(READY_FD);
  } catch {
    /* started without the pipe (e.g. by hand): nobody is waiting */
  }
};

// The daemon never dies of a stray error: it is logged, and requests go on being answered.
process.on('uncaughtException', (err) => console.error(`tarstack daemon: uncaught: ${err.stack ?? String(err)}`));
process.on('unhandledRejection', (err) => console.error(`tarstack daemon: unhandled rejection: ${(err as Error)?.stack ?? String(err)}`));

console.error(`tarstack daemon ${process.pid}: serving ${args.mountpoint} (${new Date().toISOString()})`);
serve(args, () => tell({ ok: true, pid: process.pid })).then(
  () => {
    console.error(`tarstack daemon ${process.pid}: ${args.mountpoint} unmounted, exiting`);
    process.exit(0);
  },
  (err: Error) => {
    console.error(`tarstack daemon ${process.pid}: ${err.stack ?? err.message}`);
    tell({ ok: false, error: err.message });
    process.exit(1);
  },
);
