// mknod, mkfifo and sockets: each type made and seen with its mode and device numbers, a fifo that
// carries bytes, a socket bound and connected in the mount, and lower devices kept through copy-up.
import path from 'node:path';
import { fs, kind, ls, makeSpecial, python, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFREG, S_IFSOCK, sys, type Case } from '../case.js';

const describe = (p: string): string => {
  const st = fs.lstatSync(p);
  return `${kind(p)} ${(st.mode & 0o7777).toString(8)} ${st.rdev ? `${Math.floor(st.rdev / 256)}:${st.rdev % 256}` : '0'} ${st.size}`;
};

export const special: Record<string, Case> = {
  'special/mkfifo': {
    run(dir, o) {
      const p = path.join(dir, 'fifo');
      o.do('mknod fifo', () => sys.mknod(p, S_IFIFO | 0o640, 0, 0));
      o.see('fifo', describe(p));
      o.do('through the fifo', () => {
        const fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
        fs.writeSync(fd, 'bytes through');
        const b = Buffer.alloc(64);
        const n = fs.readSync(fd, b, 0, 64, null);
        fs.closeSync(fd);
        return b.subarray(0, n).toString();
      });
      o.do('mknod over it', () => sys.mknod(p, S_IFIFO | 0o640, 0, 0));
      o.do('mknod regular file', () => (sys.mknod(path.join(dir, 'reg'), S_IFREG | 0o600, 0, 0), describe(path.join(dir, 'reg'))));
      o.do('mknod directory', () => sys.mknod(path.join(dir, 'dir'), S_IFDIR | 0o755, 0, 0));
      o.do('mknod bad type', () => sys.mknod(path.join(dir, 'bad'), 0o170000 | 0o755, 0, 0));
      o.see('names', ls(dir));
    },
  },
  'special/socket': {
    run(dir, o) {
      o.do('bind, listen, connect, send', () => python(`
import os, socket, sys
p = sys.argv[1]
os.chdir(os.path.dirname(p))
s = socket.socket(socket.AF_UNIX); s.bind(os.path.basename(p)); s.listen(1)
c = socket.socket(socket.AF_UNIX); c.connect(os.path.basename(p))
a, _ = s.accept(); c.sendall(b'over the socket'); print(a.recv(64).decode())
`, path.join(dir, 'sock')));
      o.see('sock', describe(path.join(dir, 'sock')));
      o.do('bind again', () => python(`
import os, socket, sys
os.chdir(os.path.dirname(sys.argv[1]))
try:
    socket.socket(socket.AF_UNIX).bind(os.path.basename(sys.argv[1])); print('ok')
except OSError as e:
    print(__import__('errno').errorcode[e.errno])
`, path.join(dir, 'sock')));
      o.do('mknod socket', () => (sys.mknod(path.join(dir, 's2'), S_IFSOCK | 0o600, 0, 0), describe(path.join(dir, 's2'))));
    },
  },
  'special/devices': {
    needs: 'root',
    run(dir, o) {
      o.do('char 1:3', () => (sys.mknod(path.join(dir, 'c'), S_IFCHR | 0o620, 1, 3), describe(path.join(dir, 'c'))));
      o.do('block 7:1', () => (sys.mknod(path.join(dir, 'b'), S_IFBLK | 0o660, 7, 1), describe(path.join(dir, 'b'))));
      o.do('char 4095:1048575', () => (sys.mknod(path.join(dir, 'big'), S_IFCHR | 0o600, 4095, 0xfffff), fs.lstatSync(path.join(dir, 'big')).rdev));
      o.do('chmod c', () => (fs.chmodSync(path.join(dir, 'c'), 0o600), describe(path.join(dir, 'c'))));
      o.do('rename c d', () => (fs.renameSync(path.join(dir, 'c'), path.join(dir, 'd')), describe(path.join(dir, 'd'))));
      o.do('read /dev/null twin', () => fs.readFileSync(path.join(dir, 'd')).length);
    },
  },
  'special/lower': {
    needs: 'root',
    lower(dir) {
      for (const t of ['p', 'c', 'b'] as const) makeSpecial(path.join(dir, t), t);
    },
    run(dir, o) {
      for (const t of ['p', 'c', 'b']) {
        const p = path.join(dir, t);
        o.see(t, describe(p));
        o.do(`chmod ${t}`, () => (fs.chmodSync(p, 0o600), describe(p)));
        o.do(`chown ${t}`, () => (fs.chownSync(p, 1, 1), fs.lstatSync(p).uid));
      }
      o.see('names', ls(dir));
    },
  },
};
