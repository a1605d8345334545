#!/usr/bin/env node
// Entry point of the detached mount server the CLI starts (`main.js --store ROOT`): readiness (or
// the one-line reason it cannot serve) goes to fd 3, which the starting CLI reads; everything else
// goes to the log it is told (--log: run/logs/server-*.log, which the CLI made its stdout and stderr).
import { readinessLine, surviveStrayErrors } from '../daemon/protocol.js';
import { runServer } from './run.js';

const at = process.argv.indexOf('--store');
const root = at >= 0 ? process.argv[at + 1] : undefined;
const logAt = process.argv.indexOf('--log');
const log = logAt >= 0 ? process.argv[logAt + 1] : undefined;
const tell = readinessLine();
surviveStrayErrors('tarstack server');

if (!root) {
  tell({ ok: false, error: 'the server needs --store ROOT' });
  process.exit(2);
}
runServer(root, { foreground: false, ...(log ? { log } : {}), onReady: (pid) => tell({ ok: true, pid }) }).then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`tarstack server ${process.pid}: ${err.stack ?? err.message}`);
    tell({ ok: false, error: err.message });
    process.exit(1);
  },
);
