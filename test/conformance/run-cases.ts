// The conformance suite's child program: the cases run here, in a process of their own against the
// mount (never in the process serving it), as whoever the configuration's caller is.
//   node run-cases.js run ROOT OUT [NAME…]   each case in ROOT/NAME; JSON {name: {steps, error?}} to OUT
//   node run-cases.js rotate ROOT [NAME…]    each case's rotate step (default: copy everything up)
import fs from 'node:fs';
import path from 'node:path';
import { cases } from './index.js';
import { Trace, type Step } from './case.js';

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
      fs.mkdirSync(dir, { recursive: true });
      c.run(dir, o);
      results[name] = { steps: o.steps, ms: Date.now() - start };
    } catch (err) {
      results[name] = { steps: o.steps, error: (err as Error).stack ?? String(err), ms: Date.now() - start };
    }
  }
  fs.writeFileSync(out, JSON.stringify(results));
}

/** A no-op chown of every name below dir: each is copied up, keeping what it is. */
function copyUpAll(dir: string): void {
  for (const n of fs.readdirSync(dir)) {
    const p = path.join(dir, n);
    const st = fs.lstatSync(p);
    fs.lchownSync(p, st.uid, st.gid);
    if (st.isDirectory()) copyUpAll(p);
  }
}

function rotate(root: string, names: string[]): void {
  for (const name of names) {
    const dir = path.join(root, name);
    if (!fs.existsSync(dir)) continue;
    const hook = cases[name]?.rotate;
    if (hook) hook(dir);
    else copyUpAll(dir);
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'run') run(rest[0]!, rest[1]!, rest.slice(2));
else if (mode === 'rotate') rotate(rest[0]!, rest.slice(1));
else {
  process.stderr.write('usage: run-cases.js run ROOT OUT [NAME…] | rotate ROOT [NAME…]\n');
  process.exit(2);
}
