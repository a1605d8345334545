// A writer to kill the daemon under (run as `node fault-writer.js DIR LOG`): round robin over new
// files and an existing (lower) file, 64 KiB pwrites of a pattern known from (file, block), and after
// each acknowledged write a line "name end" appended to LOG (outside the mount), so the test knows
// which bytes were written before the kill. Runs until the first error (the kill), however slow the
// machine: a new file past NEW_FILE_MAX starts over from block 0 with the same bytes (the disk used
// stays bounded, what was acknowledged stays true), and the lower file is never written past its end.
import fs from 'node:fs';
import path from 'node:path';

export const BLOCK = 64 * 1024;
export const NEW_FILES = ['w0', 'w1', 'w2', 'sub/w3'];
/** A lower file the writer overwrites from its start (copied up lazily, chunk by chunk). */
export const LOWER_FILE = 'big';
const NEW_FILE_MAX = 16 << 20;

/** The bytes the writer puts in block `i` of `name`. */
export function blockOf(name: string, i: number): Buffer {
  const b = Buffer.allocUnsafe(BLOCK);
  let x = (i + 1) * 2654435761 + name.length * 40503 + name.charCodeAt(name.length - 1);
  for (let k = 0; k < BLOCK; k += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    b.writeUInt32LE(x, k);
  }
  return b;
}

function main(): void {
  const [dir, log] = process.argv.slice(2) as [string, string];
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  const names = [...NEW_FILES, LOWER_FILE];
  const fds = names.map((n) => fs.openSync(path.join(dir, n), n === LOWER_FILE ? 'r+' : 'w'));
  const next = names.map(() => 0);
  try {
    for (let round = 0; ; round++) {
      const k = round % names.length;
      const i = next[k]!;
      if (names[k] === LOWER_FILE && (i + 1) * BLOCK > 3 << 20) continue; // stay inside the lower file
      fs.writeSync(fds[k]!, blockOf(names[k]!, i), 0, BLOCK, i * BLOCK);
      next[k] = (i + 1) * BLOCK >= NEW_FILE_MAX ? 0 : i + 1;
      fs.appendFileSync(log, `${names[k]} ${(i + 1) * BLOCK}\n`);
    }
  } catch (err) {
    fs.appendFileSync(log, `error ${(err as NodeJS.ErrnoException).code ?? String(err)}\n`);
  }
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) main();
