// The conformance suite's child program: the cases run here, in a process of their own against the
// mount (never in the process serving it), as whoever the configuration's caller is.
//   node run-cases.js run ROOT OUT [NAME…]   each case in ROOT/NAME; JSON {name: {steps, error?}} to OUT
//   node run-cases.js inproc ROOT OUT TAR STATE [NAME…]  the same on an InstanceFs over TAR in this
//                                            process (in-process.ts; upper and work dirs in STATE),
//                                            its root standing at ROOT
//   node run-cases.js rotate ROOT ROUND [NAME…]  each case's rotate step of that round (default: round
//                                            1 copies everything up, each later round a share of it)
import fs from 'node:fs';
import path from 'node:path';
import { cases } from './index.js';
import { io, Trace, type Step } from './case.js';
import { startInProcess } from './in-process.js';
import { rotate } from './rotate.js';

export interface Outcome {
  steps: Step[];
  error?: string;
  /** how long the case took (for finding slow cases; never compared) */
  ms?: number;
}

function run(root: string, out: string, names: string[]): void {
  const results: Record<string, Outcome> = {};
  for (const name of names) {
    const c = cases[name];
    if (!c) throw new Error(`no case named ${name}`);
    const dir = path.join(root, name);
    const o = new Trace();
    const start = Date.now();
    try {
      io.fs.mkdirSync(dir, { recursive: true });
      c.run(dir, o);
      results[name] = { steps: o.steps, ms: Date.now() - start };
    } catch (err) {
      results[name] = { steps: o.steps, error: (err as Error).stack ?? String(err), ms: Date.now() - start };
    }
  }
  fs.writeFileSync(out, JSON.stringify(results)); // the real fs, also in-process (io is switched)
}

/** The cases on an InstanceFs in this process: fs and sys are switched to it while they run. */
async function inProcess(root: string, out: string, tar: string, state: string, names: string[]): Promise<void> {
  const upper = path.join(state, 'upper');
  fs.mkdirSync(upper, { recursive: true });
  const umask = process.umask(0); // the daemon's is 0 (the worker may not set it); the cases' is applied as the kernel does
  const ip = startInProcess({ root, tar, upper, work: path.join(state, 'work'), umask });
  const real = { ...io };
  const { chdir, cwd } = process;
  try {
    Object.assign(io, { fs: ip.fs, sys: ip.sys });
    Object.assign(process, { chdir: ip.chdir, cwd: ip.cwd });
    run(root, out, names);
  } finally {
    Object.assign(io, real);
    Object.assign(process, { chdir, cwd });
    await ip.close();
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'run') run(rest[0]!, rest[1]!, rest.slice(2));
else if (mode === 'inproc') await inProcess(rest[0]!, rest[1]!, rest[2]!, rest[3]!, rest.slice(4));
else if (mode === 'rotate') rotate(rest[0]!, Number(rest[1]), rest.slice(2));
else {
  process.stderr.write('usage: run-cases.js run ROOT OUT [NAME…] | rotate ROOT ROUND [NAME…]\n');
  process.exit(2);
}
