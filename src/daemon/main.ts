#!/usr/bin/env node
// Entry point of a detached mount daemon: argv[2] is the JSON DaemonArgs; readiness (or the one-line
// reason it failed) goes to fd 3, which the starting CLI reads; everything else goes to the log.
import { readinessLine, surviveStrayErrors, type DaemonArgs } from './protocol.js';
import { serve } from './serve.js';

const args = JSON.parse(process.argv[2] ?? '{}') as DaemonArgs;
const tell = readinessLine();
surviveStrayErrors('tarstack daemon');

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
