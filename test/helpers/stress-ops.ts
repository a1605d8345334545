// A deterministic multi-op stress run: from a seed, a fixed sequence of creates, writes, appends,
// truncates, links, renames (files and directories), unlinks, mkdirs, rmdirs, symlinks, chmods and
// reads over a working tree (part of which starts in the lower). Every choice is made from sorted
// listings of the tree itself, so the same seed on two filesystems that behave the same makes the
// same calls; each call's outcome (ok, a read's hash, or its errno) goes into a trace. The final
// tree's fingerprint (names, types, modes, sizes, bytes, link targets, which names share an inode)
// is what two runs are compared by.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { prng } from './fsx.js';

/** Every path below root (relative, sorted), directories included, symlinks not followed. */
function walk(root: string): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [''];
  const go = (rel: string) => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      if (fs.lstatSync(path.join(root, r)).isDirectory()) {
        dirs.push(r);
        go(r);
      } else files.push(r);
    }
  };
  go('');
  return { files, dirs };
}

/** The tree's fingerprint: one line per name, plus which names share an inode. */
export function fingerprint(root: string): { hash: string; entries: string[] } {
  const { files, dirs } = walk(root);
  const inodes = new Map<string, string[]>();
  const entries: string[] = [];
  for (const r of [...dirs.slice(1), ...files].sort()) {
    const p = path.join(root, r);
    const st = fs.lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) entries.push(`${r} d ${mode}`);
    else if (st.isSymbolicLink()) entries.push(`${r} l -> ${fs.readlinkSync(p)}`);
    else {
      entries.push(`${r} f ${mode} ${st.size} ${st.nlink} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}`);
      const k = `${st.dev}:${st.ino}`;
      inodes.set(k, [...(inodes.get(k) ?? []), r]);
    }
  }
  for (const names of inodes.values()) if (names.length > 1) entries.push(`linked: ${names.sort().join(' ')}`);
  entries.sort();
  return { hash: createHash('sha256').update(entries.join('\n')).digest('hex'), entries };
}

/** Makes the lower part of the working tree (dir/…): files, a hard-link pair, a symlink, nested dirs. */
export function stressLower(dir: string): void {
  fs.mkdirSync(path.join(dir, 'a/b'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'c'));
  const rand = prng(99);
  for (const [i, d] of ['', 'a', 'a/b', 'c'].entries()) {
    for (let j = 0; j < 5; j++) fs.writeFileSync(path.join(dir, d, `n${i * 5 + j}`), Buffer.from(Array.from({ length: 1 + rand(20_000) }, () => rand(256))));
  }
  fs.linkSync(path.join(dir, 'n0'), path.join(dir, 'c/n19h'));
  fs.symlinkSync('n1', path.join(dir, 'n1s'));
}

export interface StressResult {
  trace: string[];
  traceHash: string;
}

/** Runs `ops` operations from `seed` on root (which holds stressLower's tree, maybe in a lower). */
export function stressRun(root: string, seed: number, ops: number): StressResult {
  const rand = prng(seed);
  const trace: string[] = [];
  const hash = createHash('sha256');
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rand(256)));
  let { files, dirs } = walk(root);
  for (let i = 0; i < ops; i++) {
    if (i % 16 === 0) ({ files, dirs } = walk(root)); // a fresh listing now and then; stale picks make errnos, which are compared too
    const pickFile = () => files[rand(Math.max(1, files.length))] ?? 'none';
    const pickDir = () => dirs[rand(dirs.length)]!;
    const newName = () => path.join(pickDir(), `n${rand(30)}`);
    const at = (r: string) => path.join(root, r);
    const op = rand(14);
    let label = '';
    let out = 'ok';
    try {
      switch (op) {
        case 0: { const r = newName(); label = `create ${r}`; fs.writeFileSync(at(r), bytes(rand(5000))); break; }
        case 1: { const r = pickFile(); const off = rand(30_000); const b = bytes(1 + rand(3000)); label = `write ${r} ${off}`; const fd = fs.openSync(at(r), 'r+'); try { fs.writeSync(fd, b, 0, b.length, off); } finally { fs.closeSync(fd); } break; }
        case 2: { const r = pickFile(); label = `append ${r}`; fs.appendFileSync(at(r), bytes(1 + rand(500))); break; }
        case 3: { const r = pickFile(); const n = rand(25_000); label = `truncate ${r} ${n}`; fs.truncateSync(at(r), n); break; }
        case 4: { const r = pickFile(); const t = newName(); label = `link ${r} ${t}`; fs.linkSync(at(r), at(t)); break; }
        case 5: { const r = pickFile(); const t = newName(); label = `rename ${r} ${t}`; fs.renameSync(at(r), at(t)); break; }
        case 6: { const r = pickDir(); const t = path.join(pickDir(), `d${rand(6)}`); label = `rename dir ${r} ${t}`; fs.renameSync(at(r), at(t)); break; }
        case 7: { const r = pickFile(); label = `unlink ${r}`; fs.unlinkSync(at(r)); break; }
        case 8: { const t = path.join(pickDir(), `d${rand(6)}`); label = `mkdir ${t}`; fs.mkdirSync(at(t)); break; }
        case 9: { const r = pickDir(); label = `rmdir ${r}`; fs.rmdirSync(at(r)); break; }
        case 10: { const r = pickFile(); const t = newName(); label = `symlink ${t}`; fs.symlinkSync(path.basename(r), at(t)); break; }
        case 11: { const r = pickFile(); const m = 0o600 | rand(0o100); label = `chmod ${r} ${m.toString(8)}`; fs.chmodSync(at(r), m); break; }
        default: { const r = pickFile(); label = `read ${r}`; out = createHash('sha256').update(fs.readFileSync(at(r))).digest('hex').slice(0, 12); }
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (!code) throw err;
      out = code;
    }
    const line = `${i} ${label}: ${out}`;
    hash.update(line + '\n');
    if (trace.length < 200_000) trace.push(line);
  }
  return { trace, traceHash: hash.digest('hex') };
}
