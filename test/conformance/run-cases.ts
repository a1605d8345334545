// The conformance suite's child program: the cases run here, in a process of their own against the
// mount (never in the process serving it), as whoever the configuration's caller is.
//   node run-cases.js run ROOT OUT [NAME…]   each case in ROOT/NAME; JSON {name: {steps, error?}} to OUT
//   node run-cases.js rotate ROOT ROUND [NAME…]  each case's rotate step of that round (default: round
//                                            1 copies everything up, each later round a share of it)
import fs from 'node:fs';
import path from 'node:path';
import { cases } from './index.js';
import { Trace, type Step } from './case.js';
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
      fs.mkdirSync(dir, { recursive: true });
      c.run(dir, o);
      results[name] = { steps: o.steps, ms: Date.now() - start };
    } catch (err) {
      results[name] = { steps: o.steps, error: (err as Error).stack ?? String(err), ms: Date.now() - start };
    }
  }
  fs.writeFileSync(out, JSON.stringify(results));
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'run') run(rest[0]!, rest[1]!, rest.slice(2));
else if (mode === 'rotate') rotate(rest[0]!, Number(rest[1]), rest.slice(2));
else {
  process.stderr.write('usage: run-cases.js run ROOT OUT [NAME…] | rotate ROOT ROUND [NAME…]\n');
  process.exit(2);
}
