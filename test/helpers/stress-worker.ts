// One of the eight processes of the load test (`node stress-worker.js DIR ID SECONDS SEED OUT`): mixed
// metadata and data operations for SECONDS, in its own directory (every result checked against what
// it expects) and in a shared one (races with the others: only ENOENT/EEXIST/ENOTEMPTY allowed), plus
// changes to its own lower file (copy-up). Writes {ops, errors, files} to OUT: `files` maps each file
// it owns at the end to its sha256, for the check after a remount.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const RACY = new Set(['ENOENT', 'EEXIST', 'ENOTEMPTY', 'ENOTDIR', 'EISDIR']);

function main(): void {
  const [dir, id, seconds, seedText, out] = process.argv.slice(2) as [string, string, string, string, string];
  let x = Number(seedText) >>> 0 || 1;
  const rnd = (n: number): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
  const own = path.join(dir, `w${id}`);
  const shared = path.join(dir, 'shared');
  fs.mkdirSync(own, { recursive: true });
  fs.mkdirSync(shared, { recursive: true });
  const files = new Map<string, Buffer>(); // name in own -> expected content
  const lower = path.join(dir, 'lower', `f${id}`);
  let lowerData = fs.readFileSync(lower);
  const errors: string[] = [];
  let ops = 0;
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = rnd(256);
    return b;
  };
  const check = (what: string, ok: boolean): void => {
    if (!ok) errors.push(`${what}: content differs from what was written`);
  };
  const names = (): string[] => [...files.keys()];
  const until = Date.now() + Number(seconds) * 1000;
  while (Date.now() < until && errors.length < 20) {
    ops++;
    const op = rnd(16);
    const pick = names()[rnd(Math.max(1, files.size))];
    try {
      if (op === 0 || files.size < 3) {
        const name = `f${ops}`;
        const data = bytes(1 + rnd(200_000));
        fs.writeFileSync(path.join(own, name), data);
        files.set(name, data);
      } else if (op === 1 && pick) {
        const p = path.join(own, pick);
        const old = files.get(pick)!;
        const at = rnd(old.length + 1);
        const data = bytes(1 + rnd(70_000));
        const fd = fs.openSync(p, 'r+');
        fs.writeSync(fd, data, 0, data.length, at);
        if (rnd(4) === 0) fs.fdatasyncSync(fd);
        fs.closeSync(fd);
        const next = Buffer.alloc(Math.max(old.length, at + data.length));
        old.copy(next);
        data.copy(next, at);
        files.set(pick, next);
      } else if (op === 2 && pick) {
        check(pick, fs.readFileSync(path.join(own, pick)).equals(files.get(pick)!));
      } else if (op === 3 && pick) {
        const size = rnd(files.get(pick)!.length + 1000);
        fs.truncateSync(path.join(own, pick), size);
        const next = Buffer.alloc(size);
        files.get(pick)!.copy(next, 0, 0, Math.min(size, files.get(pick)!.length));
        files.set(pick, next);
      } else if (op === 4 && pick) {
        const to = `r${ops}`;
        fs.renameSync(path.join(own, pick), path.join(own, to));
        files.set(to, files.get(pick)!);
        files.delete(pick);
      } else if (op === 5 && pick && files.size > 3) {
        fs.unlinkSync(path.join(own, pick));
        files.delete(pick);
      } else if (op === 6 && pick) {
        const l = `l${ops}`;
        fs.linkSync(path.join(own, pick), path.join(own, l));
        fs.appendFileSync(path.join(own, l), 'via link');
        const next = Buffer.concat([files.get(pick)!, Buffer.from('via link')]);
        files.set(pick, next);
        check(`${pick} through its link`, fs.readFileSync(path.join(own, pick)).equals(next));
        fs.unlinkSync(path.join(own, l));
      } else if (op === 7) {
        const d = path.join(own, `d${ops}`);
        fs.mkdirSync(d);
        fs.writeFileSync(path.join(d, 'x'), 'x');
        fs.symlinkSync('x', path.join(d, 's'));
        check('symlink', fs.readlinkSync(path.join(d, 's')) === 'x' && fs.readFileSync(path.join(d, 's'), 'utf8') === 'x');
        fs.rmSync(d, { recursive: true });
      } else if (op === 8 && pick) {
        const p = path.join(own, pick);
        fs.chmodSync(p, 0o600 + rnd(0o100));
        fs.utimesSync(p, 1_000_000 + rnd(1000), 2_000_000 + rnd(1000));
      } else if (op === 9) {
        const listed = new Set(fs.readdirSync(own));
        check('readdir', names().every((n) => listed.has(n)) && [...listed].every((n) => files.has(n)));
      } else if (op === 10) {
        // The shared directory: races with the other workers are expected, other errors are not.
        const n = `s${rnd(20)}`;
        const q = path.join(shared, n);
        const r = rnd(4);
        try {
          if (r === 0) fs.writeFileSync(q, `from ${id}`, { flag: 'wx' });
          else if (r === 1) fs.renameSync(q, path.join(shared, `s${rnd(20)}`));
          else if (r === 2) fs.unlinkSync(q);
          else fs.readdirSync(shared);
        } catch (err) {
          if (!RACY.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
        }
      } else if (op === 11) {
        // Its own file from the image: copied up (lazily: it is 3 MiB) on the first change.
        const at = rnd(lowerData.length);
        const data = bytes(1 + rnd(5000));
        const fd = fs.openSync(lower, 'r+');
        fs.writeSync(fd, data, 0, data.length, at);
        fs.closeSync(fd);
        const next = Buffer.alloc(Math.max(lowerData.length, at + data.length));
        lowerData.copy(next);
        data.copy(next, at);
        lowerData = next;
      } else if (op === 12) {
        check(`lower/f${id}`, fs.readFileSync(lower).equals(lowerData));
      } else if (op === 13 && pick) {
        fs.appendFileSync(path.join(own, pick), 'tail');
        files.set(pick, Buffer.concat([files.get(pick)!, Buffer.from('tail')]));
      } else {
        fs.statSync(path.join(dir, 'lower'));
        fs.readdirSync(path.join(dir, 'lower'));
      }
    } catch (err) {
      errors.push(`op ${op} ${pick ?? ''}: ${(err as Error).message}`);
    }
  }
  const sums: Record<string, string> = {};
  for (const [n, b] of files) sums[`w${id}/${n}`] = createHash('sha256').update(b).digest('hex');
  sums[`lower/f${id}`] = createHash('sha256').update(lowerData).digest('hex');
  fs.writeFileSync(out, JSON.stringify({ ops, errors, files: sums }));
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) main();
