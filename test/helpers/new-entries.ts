// Makes many new entries of every type a caller can make (files by open and by mknod, directories,
// symlinks, fifos) in a directory and reports each one whose atime, mtime and ctime are not one time
// or whose owner is not the caller: `node new-entries.js DIR COUNT` prints JSON { made, wrong }.
// Run as the caller (a child started with their uid and gid), in a directory they may write.
import fs from 'node:fs';
import path from 'node:path';
import { loadSys } from '../../src/native/sys.js';
import { S_IFIFO, S_IFREG } from '../../src/vfs/mode.js';

const [dir, countArg] = process.argv.slice(2);
const count = Number(countArg);
const sys = loadSys();
const makers: Record<string, (p: string) => void> = {
  create: (p) => fs.closeSync(fs.openSync(p, 'wx', 0o640)),
  mknod: (p) => sys.mknod(p, S_IFREG | 0o600, 0, 0),
  mkdir: (p) => fs.mkdirSync(p, 0o750),
  symlink: (p) => fs.symlinkSync('target', p),
  mkfifo: (p) => sys.mknod(p, S_IFIFO | 0o644, 0, 0),
};
const uid = process.getuid!();
const gid = process.getgid!();
const wrong: string[] = [];
let made = 0;
for (let i = 0; i < count; i++) {
  for (const [kind, make] of Object.entries(makers)) {
    const p = path.join(dir!, `${kind}-${i}`);
    make(p);
    made++;
    const st = fs.lstatSync(p, { bigint: true });
    if (st.atimeNs !== st.mtimeNs || st.mtimeNs !== st.ctimeNs || st.uid !== BigInt(uid) || st.gid !== BigInt(gid)) {
      wrong.push(`${kind}-${i}: a ${st.atimeNs} m ${st.mtimeNs} c ${st.ctimeNs} owner ${st.uid}:${st.gid}`);
    }
  }
}
process.stdout.write(JSON.stringify({ made, wrong }) + '\n');
