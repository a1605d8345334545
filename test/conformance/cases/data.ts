// File bytes: truncate up and down, holes, fallocate's modes, writes past the end, for new files and
// lower files (copy-up), and shared-mmap coherence with read/write through a python3 child.
import path from 'node:path';
import { fs, python, read, sys, type Case } from '../case.js';

const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;
const FALLOC_FL_ZERO_RANGE = 0x10;

const pattern = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));
const digest = (b: Buffer): string => `${b.length}:${b.reduce((h, x) => (h * 33 + x) >>> 0, 5381)}`;

const MMAP = String.raw`
import mmap, os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
out = []
m[10:15] = b'MAPPD'
out.append(os.pread(fd, 20, 0).decode('latin1'))
os.pwrite(fd, b'WRITE', 30)
out.append(m[25:40].decode('latin1'))
m.flush()
fd2 = os.open(p, os.O_RDONLY)
out.append(os.pread(fd2, 40, 0).decode('latin1'))
os.close(fd2)
m.close(); os.close(fd)
print('|'.join(out))
`;

export const data: Record<string, Case> = {
  'data/truncate': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), pattern(100_000, 1)),
    run(dir, o) {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, pattern(5000, 2));
      for (const p of [f, path.join(dir, 'low')]) {
        o.do('truncate 3000', () => (fs.truncateSync(p, 3000), digest(fs.readFileSync(p))));
        o.do('truncate 70000 (zeros)', () => (fs.truncateSync(p, 70_000), digest(fs.readFileSync(p))));
        o.do('write at 100000', () => {
          const fd = fs.openSync(p, 'r+');
          fs.writeSync(fd, pattern(10, 3), 0, 10, 100_000);
          fs.closeSync(fd);
          return digest(fs.readFileSync(p));
        });
        o.do('truncate 0', () => (fs.truncateSync(p, 0), fs.statSync(p).size));
        o.do('truncate -1', () => fs.truncateSync(p, -1));
      }
      o.do('truncate a dir', () => fs.truncateSync(dir, 0));
    },
  },
  'data/holes': {
    run(dir, o) {
      const f = path.join(dir, 'f');
      const fd = fs.openSync(f, 'w+');
      fs.writeSync(fd, pattern(4096, 5), 0, 4096, 8 << 20);
      fs.fsyncSync(fd);
      o.see('size', fs.fstatSync(fd).size);
      o.see('sparse (blocks below size)', fs.fstatSync(fd).blocks * 512 < 1 << 20);
      o.see('zeros before the data', fs.readFileSync(f).subarray(0, 8 << 20).every((b) => b === 0));
      o.do('SEEK_DATA 0, SEEK_HOLE 0', () => python(`
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.lseek(fd, 0, os.SEEK_DATA) >= 4 << 20, os.lseek(fd, 0, os.SEEK_HOLE))
`, f));
      fs.closeSync(fd);
    },
  },
  'data/fallocate': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), pattern(20_000, 6)),
    run(dir, o) {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, pattern(20_000, 7));
      for (const p of [f, path.join(dir, 'low')]) {
        const fd = fs.openSync(p, 'r+');
        o.do('allocate past the end', () => (sys.fallocate(fd, 0, 10_000, 30_000), fs.fstatSync(fd).size));
        o.do('keep size', () => (sys.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 100_000), fs.fstatSync(fd).size));
        o.do('punch a hole', () => (sys.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192), digest(fs.readFileSync(p))));
        o.do('zero range', () => (sys.fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 100), digest(fs.readFileSync(p))));
        o.do('punch without keep size', () => sys.fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10));
        o.do('negative length', () => sys.fallocate(fd, 0, 0, -1));
        fs.closeSync(fd);
      }
      const ro = fs.openSync(f, 'r');
      o.do('on a read-only fd', () => sys.fallocate(ro, 0, 0, 10));
      fs.closeSync(ro);
    },
  },
  'data/mmap': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'l'.repeat(4096)),
    run(dir, o) {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, 'n'.repeat(4096));
      for (const p of [f, path.join(dir, 'low')]) {
        o.do('map, write through both, read through both', () => python(MMAP, p));
        o.do('read after unmap', () => read(p).slice(0, 40));
        o.do('write then map-read', () => {
          fs.writeFileSync(p, 'z'.repeat(50), { flag: 'r+' });
          return python('import mmap,os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nm=mmap.mmap(fd,0,mmap.MAP_SHARED,mmap.PROT_READ)\nprint(m[45:55].decode())', p);
        });
      }
    },
  },
};
