// The rotated configuration's rounds (rotated.test.ts): what each mount before the last does to the
// cases' files before its upper becomes a lower. Round 1 runs each case's rotate hook, or copies every
// name of the case up (a no-op chown); each later round a share of the names, each name in its own
// round, unless the case's hook does that round's work.
import fs from 'node:fs';
import path from 'node:path';
import { cases } from './index.js';

/** A no-op chown of every name below dir: each is copied up, keeping what it is. */
function copyUpAll(dir: string): void {
  for (const n of fs.readdirSync(dir)) {
    const p = path.join(dir, n);
    const st = fs.lstatSync(p);
    fs.lchownSync(p, st.uid, st.gid);
    if (st.isDirectory()) copyUpAll(p);
  }
}

/** The names below dir a later round copies up: about one in ROUNDS_SHARE of them (by a hash of the
 *  path in the case's directory), each in its own round, so a merged directory spans many layers. */
function copyUpShare(dir: string, rel: string, round: number): void {
  for (const n of fs.readdirSync(dir)) {
    const p = path.join(dir, n);
    const r = rel ? `${rel}/${n}` : n;
    const st = fs.lstatSync(p);
    if (hash(r) % ROUNDS_SHARE === round % ROUNDS_SHARE) fs.lchownSync(p, st.uid, st.gid);
    if (st.isDirectory()) copyUpShare(p, r, round);
  }
}

const ROUNDS_SHARE = 8;
const hash = (s: string): number => [...s].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);

/** Round `round` of the rotated configuration (rotated.test.ts) for the named cases below root. */
export function rotate(root: string, round: number, names: string[]): void {
  for (const name of names) {
    const dir = path.join(root, name);
    if (!fs.existsSync(dir)) continue;
    const hook = cases[name]?.rotate;
    if (hook?.(dir, round)) continue;
    if (round === 1) copyUpAll(dir);
    else copyUpShare(dir, '', round);
  }
}

