// Kernel FUSE features beyond libfuse 3.14 (issue 17, native-bindings/src/kext.c), seen from
// outside: a writable instance served by a child process, its requests counted by opcode.
//  - root: FUSE passthrough for upper files; writes and reads of such a file never reach the
//    daemon, yet stat shows their size and mtime, shared mmap sees them, and an inode open through
//    the page cache (a lower file being read while it is copied up) keeps every open on that path.
//  - an ordinary user (fusermount3): passthrough is not negotiated and every byte goes through
//    the daemon, as before.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { delta, servedIn, type Served } from './helpers/instance-served.js';
import { makeTestRoot, mount, mountAt, removeTestRoot } from './helpers/mounted.js';
import { ordinaryUser, type UserIds } from './helpers/ordinary-user.js';
import { fsx } from './helpers/fsx.js';
import { pack } from './helpers/pack.js';

const MiB = 1 << 20;
const root = process.getuid?.() === 0 ? makeTestRoot('kext') : '';
if (root) fs.chmodSync(root, 0o755);
test.after.always(() => root && removeTestRoot(root));

const serve = servedIn(root);
let seq = 0; // other dirs under root (serve's are m1, m2, ...)

function passthroughKernel(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  const [maj, min] = (/^(\d+)\.(\d+)/.exec(fs.readFileSync('/proc/sys/kernel/osrelease', 'latin1')) ?? []).slice(1).map(Number);
  if (!maj || maj < 6 || (maj === 6 && (min ?? 0) < 9)) return 'needs kernel 6.9+';
  return undefined;
}

const noPassthrough = passthroughKernel();
const rootTest = noPassthrough ? test.skip : test.serial;

rootTest('root: writes and reads of an upper file pass through; stat, fstat and mmap see them', async (t) => {
  const m = await serve(t);
  const s0 = await m.stats();
  t.true(s0.passthrough, 'FUSE_PASSTHROUGH negotiated');
  const file = path.join(m.mnt, 'new');
  const data = Buffer.alloc(4 * MiB, 7);
  fs.writeFileSync(file, data);
  const s1 = await m.stats();
  t.is(delta(s0, s1).WRITE, 0, 'no WRITE reached the daemon');
  t.is(delta(s0, s1).CREATE, 1);
  t.is(s1.passthroughOpens - s0.passthroughOpens, 1);
  t.is(fs.statSync(file).size, data.length, 'size after passthrough writes');
  t.true(fs.readFileSync(file).equals(data));
  const s2 = await m.stats();
  t.is(delta(s1, s2).READ, 0, 'no READ reached the daemon');
  t.is(fs.statSync(path.join(m.upper, 'new')).size, data.length, 'the bytes are in the upper file');

  // mtime and size after a write through an open file, seen by stat and fstat.
  fs.utimesSync(file, 1000, 1000);
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, 'tail');
    t.is(fs.fstatSync(fd).size, data.length + 4);
    const st = fs.statSync(file);
    t.is(st.size, data.length + 4);
    t.true(st.mtimeMs > 1000 * 1000, 'mtime moved with the passthrough write');
  } finally {
    fs.closeSync(fd);
  }

  // A shared mapping writes the backing file, and read() sees it.
  const py = spawnSync('python3', ['-c', 'import mmap,os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\nm=mmap.mmap(fd,0,mmap.MAP_SHARED)\nm[0:6]=b"MAPPED"\nm.flush()\nm.close()\nos.close(fd)', file]);
  t.is(py.status, 0, py.stderr.toString());
  t.is(fs.readFileSync(file).subarray(0, 6).toString(), 'MAPPED');
  const s3 = await m.stats();
  t.is(delta(s2, s3).WRITE + delta(s2, s3).READ, 0, 'neither the append nor the mapping reached the daemon');
});

rootTest('root: fsx (reads, writes, truncates, shared mmap, several fds) on a passthrough file', async (t) => {
  const m = await serve(t);
  const file = path.join(m.mnt, 'fsx');
  fs.writeFileSync(file, Buffer.alloc(200_000, 3));
  const s0 = await m.stats();
  const model = await fsx({ file, seed: 17, ops: 1500, maxSize: 2 * MiB });
  const s1 = await m.stats();
  t.true(fs.readFileSync(file).equals(model), 'content equals the model');
  t.is(fs.statSync(file).size, model.length);
  t.true(fs.readFileSync(path.join(m.upper, 'fsx')).equals(model), 'and so does the upper file');
  t.is(delta(s0, s1).WRITE + delta(s0, s1).READ, 0, 'every byte passed through');
  t.true(delta(s0, s1).SETATTR >= 1, 'truncates still reach the daemon');
});

rootTest('root: a lower file read while it is copied up stays on the page-cache path until closed', async (t) => {
  const m = await serve(t);
  const file = path.join(m.mnt, 'd', 'lower');
  const reader = fs.openSync(file, 'r');
  try {
    const before = Buffer.alloc(4);
    fs.readSync(reader, before, 0, 4, 0);
    t.is(before.toString(), 'from');
    const s0 = await m.stats();
    fs.writeFileSync(file, 'CHANGED\n'); // copy-up while open for reading
    const s1 = await m.stats();
    t.true(delta(s0, s1).WRITE >= 1, 'the writer went through the daemon (the inode is open cached)');
    t.is(s1.passthroughOpens, s0.passthroughOpens);
    const after = Buffer.alloc(16);
    const n = fs.readSync(reader, after, 0, 16, 0);
    t.is(after.subarray(0, n).toString(), 'CHANGED\n', 'the reader sees the copied-up file, as on kernel overlayfs');
  } finally {
    fs.closeSync(reader);
  }
  // Once the reader is gone, the next open of the now upper file passes through.
  const s2 = await m.stats();
  t.is(fs.readFileSync(file, 'latin1'), 'CHANGED\n');
  const s3 = await m.stats();
  t.is(s3.passthroughOpens - s2.passthroughOpens, 1);
  t.is(delta(s2, s3).READ, 0);
  // A big lower file copied up lazily is not passed through (its chunks come from the layer).
  const big = path.join(m.mnt, 'd', 'big');
  const fd = fs.openSync(big, 'r+');
  try {
    fs.writeSync(fd, 'X', 0);
  } finally {
    fs.closeSync(fd);
  }
  const s4 = await m.stats();
  const got = fs.readFileSync(big);
  t.is(got.length, 3 * MiB);
  t.is(got[0], 'X'.charCodeAt(0));
  t.is(got[MiB + 1], 5);
  const s5 = await m.stats();
  t.is(s5.passthroughOpens, s4.passthroughOpens, 'a lazily copied file reads through the daemon');
  t.true(delta(s4, s5).READ >= 1);
});

rootTest('root: TARSTACK_PASSTHROUGH=0 is today\'s path', async (t) => {
  const m = await serve(t, undefined, { TARSTACK_PASSTHROUGH: '0' });
  const s0 = await m.stats();
  t.false(s0.passthrough);
  fs.writeFileSync(path.join(m.mnt, 'new'), Buffer.alloc(MiB, 1));
  t.is(fs.readFileSync(path.join(m.mnt, 'new')).length, MiB);
  const s1 = await m.stats();
  t.true(delta(s0, s1).WRITE >= 1);
  t.true(delta(s0, s1).READ >= 1);
  t.is(s1.passthroughOpens, 0);
});

rootTest('root: `status` names the kernel features a CLI mount uses', async (t) => {
  const dir = path.join(root, `cli${++seq}`);
  fs.mkdirSync(dir, { recursive: true });
  const tar = path.join(dir, 'lower.tar');
  fs.writeFileSync(tar, await pack([{ name: 'f', body: 'x\n' }]));
  const m = await mount(t, path.join(dir, 'i'), { kind: 'instance', lowers: [tar] });
  const st = await m.cli(['status', '--json']);
  t.is(st.code, 0, st.stderr);
  const rows = JSON.parse(st.stdout) as Array<{ mountpoint: string; features: string[] }>;
  const limit = maxPagesLimit(); // max_pages is shown where root raised it
  t.deepEqual(rows.find((r) => r.mountpoint === m.root)?.features, ['passthrough', ...(limit > 256 ? [`max_pages=${Math.min(limit, 1024)}`] : [])]);
  const text = await m.cli(['status']);
  t.regex(text.stdout, /kernel FUSE features: passthrough/);
});

const ids = ordinaryUser();
const userTest = typeof ids === 'string' ? test.skip : test.serial;
const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_bind_service=ep

(noPassthrough || typeof ids === 'string' ? test.skip : test.serial)('root: a passthrough write by another user clears suid, sgid and security.capability; root\'s keeps them', async (t) => {
  const user = ids as UserIds;
  const m = await serve(t);
  const file = path.join(m.mnt, 'd', 'setid');
  const capped = path.join(m.mnt, 'd', 'capped');
  for (const f of [file, capped]) {
    fs.writeFileSync(f, 'program\n');
    fs.chmodSync(f, 0o6777);
  }
  const setcap = spawnSync('python3', ['-c', 'import os,sys\nos.setxattr(sys.argv[1], "security.capability", bytes.fromhex(sys.argv[2]))', capped, CAP.toString('hex')]);
  t.is(setcap.status, 0, setcap.stderr.toString());
  const s0 = await m.stats();
  fs.appendFileSync(file, 'by root\n'); // CAP_FSETID: the bits stay
  t.is(fs.statSync(file).mode & 0o7777, 0o6777, 'root keeps suid and sgid');
  for (const f of [file, capped]) {
    const w = spawnSync('sh', ['-c', 'echo by-user >> "$1"', 'sh', f], { uid: user.uid, gid: user.gid });
    t.is(w.status, 0, w.stderr.toString());
    t.is(fs.statSync(f).mode & 0o7777, 0o777, `${path.basename(f)}: suid and sgid cleared by another user's write`);
    t.true(fs.readFileSync(f, 'latin1').endsWith('by-user\n'));
  }
  const cap = spawnSync('python3', ['-c', 'import os,sys\ntry:\n  os.getxattr(sys.argv[1], "security.capability"); print("kept")\nexcept OSError: print("gone")', capped]);
  t.is(cap.stdout.toString().trim(), 'gone', 'security.capability removed by the write');
  const s1 = await m.stats();
  t.is(delta(s0, s1).WRITE, 0, 'the writes passed through');
  t.true(s1.passthroughOpens - s0.passthroughOpens >= 3);
});
/**
 * What other users do to set-id files, on the mount `dir` and the same in a kernel overlayfs over
 * the same start: returns each file's mode and whether it kept security.capability, in both.
 */
const SETID_CASES: Array<{ name: string; mode: number; how: string }> = [
  { name: 'w-suid', mode: 0o6777, how: 'user-append' }, // suid, sgid with g+x: both go
  { name: 'w-sgid-nox', mode: 0o2767, how: 'user-append' }, // sgid without g+x, writer not in the group: goes
  { name: 'w-own-group', mode: 0o2767, how: 'user-append-own-group' }, // writer in the file's group: stays
  { name: 't-suid', mode: 0o6777, how: 'user-truncate' },
  { name: 'o-suid', mode: 0o6777, how: 'user-open-trunc' },
  { name: 'c-suid', mode: 0o6777, how: 'root-chown' }, // chown: suid goes even for root; sgid with g+x too
  { name: 'c-sgid-nox', mode: 0o2767, how: 'root-chown' }, // root's chown keeps sgid without g+x
  { name: 'r-suid', mode: 0o6777, how: 'root-append' }, // CAP_FSETID: stays
  { name: 'cap', mode: 0o777, how: 'root-append-cap' }, // security.capability goes on any write
];

function setidRun(dir: string, user: UserIds): Record<string, string> {
  const out: Record<string, string> = {};
  const as = (uid: number, gid: number, code: string, file: string): void => {
    const r = spawnSync('python3', ['-c', code, file], uid === 0 ? {} : { uid, gid });
    if (r.status !== 0) throw new Error(`${code} ${file}: ${r.stderr.toString()}`);
  };
  for (const c of SETID_CASES) {
    const f = path.join(dir, c.name);
    if (c.how === 'user-append-own-group') fs.chownSync(f, 0, user.gid);
    if (c.how === 'root-append-cap') as(0, 0, `import os,sys\nos.setxattr(sys.argv[1], "security.capability", bytes.fromhex("${CAP.toString('hex')}"))`, f);
    const append = 'import sys\nopen(sys.argv[1], "a").write("more\\n")';
    if (c.how.startsWith('user-append')) as(user.uid, user.gid, append, f);
    if (c.how === 'user-truncate') as(user.uid, user.gid, 'import os,sys\nos.truncate(sys.argv[1], 3)', f);
    if (c.how === 'user-open-trunc') as(user.uid, user.gid, 'import os,sys\nos.close(os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC))', f);
    if (c.how === 'root-chown') fs.chownSync(f, user.uid, user.gid);
    if (c.how.startsWith('root-append')) as(0, 0, append, f);
    const cap = spawnSync('python3', ['-c', 'import os,sys\ntry:\n  os.getxattr(sys.argv[1], "security.capability"); print("cap")\nexcept OSError: print("-")', f]).stdout.toString().trim();
    out[c.name] = `${(fs.statSync(f).mode & 0o7777).toString(8)} ${cap}`;
  }
  return out;
}

function setidStart(dir: string): void {
  for (const c of SETID_CASES) {
    fs.writeFileSync(path.join(dir, c.name), 'program\n');
    fs.chmodSync(path.join(dir, c.name), c.mode);
  }
}

(noPassthrough || typeof ids === 'string' ? test.skip : test.serial)('root, FUSE_HANDLE_KILLPRIV_V2 (no passthrough): set-id bits and security.capability go as on kernel overlayfs; GETXATTR only before an inode\'s first write', async (t) => {
  const user = ids as UserIds;
  // The reference: kernel overlayfs over ext4 (or what the test root is on), in the same run.
  const ref = path.join(root, `ovl${++seq}`);
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => path.join(ref, d)) as [string, string, string, string];
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d, { recursive: true });
  fs.chmodSync(upper, 0o777);
  const ov = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, mnt]);
  t.is(ov.status, 0, ov.stderr.toString());
  t.teardown(() => void (mountAt(mnt) && spawnSync('umount', ['-l', mnt])));
  setidStart(mnt);
  const want = setidRun(mnt, user);

  const m = await serve(t, undefined, { TARSTACK_PASSTHROUGH: '0' });
  const s0 = await m.stats();
  t.true(s0.killpriv, 'FUSE_HANDLE_KILLPRIV_V2 negotiated');
  const dir = path.join(m.mnt, 'd');
  setidStart(dir);
  const got = setidRun(dir, user);
  t.deepEqual(got, want, 'each file as kernel overlayfs left it');
  t.is(want['w-suid'], '777 -'); // the reference itself, so that a change of kernel shows
  t.is(want['r-suid'], '6777 -');
  const s1 = await m.stats();
  t.true(s1.killed - s0.killed >= 5, 'the translator cleared them (the kernel no longer does)');

  // The kernel asks security.capability before an inode's first write only, not before each.
  const file = path.join(dir, 'many');
  fs.writeFileSync(file, '');
  fs.chmodSync(file, 0o666);
  const w = spawnSync('python3', ['-c', 'import os,sys\nfd=os.open(sys.argv[1], os.O_WRONLY)\nfor i in range(50): os.write(fd, b"x")\nos.close(fd)', file], { uid: user.uid, gid: user.gid });
  t.is(w.status, 0, w.stderr.toString());
  const s2 = await m.stats();
  t.is(delta(s1, s2).WRITE, 50);
  t.true(delta(s1, s2).GETXATTR <= 1, `GETXATTR ${delta(s1, s2).GETXATTR} for 50 writes`);
  t.is(fs.readFileSync(file, 'latin1'), 'x'.repeat(50));
});

rootTest('root: TARSTACK_KILLPRIV=0 and passthrough mounts leave set-id clearing to the kernel (a GETXATTR before every write)', async (t) => {
  const envs: Array<Record<string, string>> = [{ TARSTACK_KILLPRIV: '0', TARSTACK_PASSTHROUGH: '0' }, {}];
  for (const env of envs) {
    const m = await serve(t, undefined, env);
    const s0 = await m.stats();
    t.false(s0.killpriv, JSON.stringify(env));
    const file = path.join(m.mnt, 'd', 'many');
    const fd = fs.openSync(file, 'w');
    try {
      for (let i = 0; i < 20; i++) fs.writeSync(fd, 'x');
    } finally {
      fs.closeSync(fd);
    }
    const s1 = await m.stats();
    t.is(delta(s0, s1).GETXATTR, 20, `${JSON.stringify(env)}: one per write(2)`);
    t.is(s1.killed, 0);
  }
});

function maxPagesLimit(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/fs/fuse/max_pages_limit', 'latin1').trim()) || 256;
  } catch {
    return 256;
  }
}

/** READ requests for a cold read of the 3 MiB lower member (dd bs=1M). */
async function coldReads(m: Served): Promise<number> {
  const s0 = await m.stats();
  const r = spawnSync('dd', [`if=${path.join(m.mnt, 'd', 'big')}`, 'of=/dev/null', 'bs=1M', 'status=none']);
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return delta(s0, await m.stats()).READ;
}

rootTest('root: max_pages is what fs.fuse.max_pages_limit allows, TARSTACK_MAX_PAGES is honoured (capped as the kernel caps it), and shown', async (t) => {
  const limit = maxPagesLimit(); // the test never changes it: the sysctl is the machine's
  const dflt = await serve(t);
  t.is((await dflt.stats()).maxPages, limit > 256 ? Math.min(limit, 1024) : 0, `fs.fuse.max_pages_limit ${limit}`);
  const small = await serve(t, undefined, { TARSTACK_MAX_PAGES: '32' });
  t.is((await small.stats()).maxPages, 32);
  // 128 KiB requests at most: the 3 MiB member takes at least 24 READs (4 MiB readahead).
  const n = await coldReads(small);
  t.true(n >= 24, `${n} READs of at most 32 pages`);
  const big = await serve(t, undefined, { TARSTACK_MAX_PAGES: String(limit * 4) });
  t.is((await big.stats()).maxPages, limit, 'asked beyond the limit: the limit is what the kernel uses');
  const nBig = await coldReads(big);
  t.true(nBig < n, `${nBig} READs with ${limit} pages, ${n} with 32`);
  t.true(fs.readFileSync(path.join(big.mnt, 'd', 'big')).equals(Buffer.alloc(3 * MiB, 5)));
});

userTest('an ordinary user: no passthrough, every byte through the daemon', async (t) => {
  const user = ids as UserIds;
  const m = await serve(t, user);
  const s0 = await m.stats();
  t.false(s0.passthrough, 'not negotiated without root');
  t.true(s0.killpriv, 'FUSE_HANDLE_KILLPRIV_V2 is (no passthrough beside it)');
  const file = path.join(m.mnt, 'd', 'mine');
  const w = spawnSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k', 'count=16', 'status=none'], { uid: user.uid, gid: user.gid });
  t.is(w.status, 0, w.stderr.toString());
  const r = spawnSync('cat', [file], { uid: user.uid, gid: user.gid, maxBuffer: 4 * MiB });
  t.is(r.stdout.length, MiB);
  const s1 = await m.stats();
  t.true(delta(s0, s1).WRITE >= 1);
  t.true(delta(s0, s1).READ >= 1);
  t.is(s1.passthroughOpens, 0);
});
