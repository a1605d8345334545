// tarstack-overlay's command line: both calling conventions, escapes, generic options accepted, and
// every refusal naming the option and listing what is supported.
import test from 'ava';
import { parseArgs, splitLowerdir, UsageError, type MountRequest } from '../../src/mountprog/options.js';

const parse = (argv: string[]): MountRequest => {
  const r = parseArgs(argv);
  if (typeof r === 'string') throw new Error(r);
  return r;
};

test('fuse-overlayfs form: -o lowerdir=A:B:C,upperdir=U,workdir=W MOUNTPOINT', (t) => {
  const r = parse(['-o', 'lowerdir=/a:/b:/c,upperdir=/u,workdir=/w', '/m']);
  t.deepEqual(r.lowers, ['/a', '/b', '/c']);
  t.is(r.upper, '/u');
  t.is(r.work, '/w');
  t.is(r.mountpoint, '/m');
  t.false(r.readOnly);
});

test('mount.fuse form: SOURCE MOUNTPOINT -o OPTIONS, with the generic options mount adds', (t) => {
  const r = parse(['overlay', '/m', '-o', 'rw,nodev,noatime,lowerdir=/a,upperdir=/u,workdir=/w,x-systemd.requires=foo,_netdev,nofail,defaults']);
  t.is(r.source, 'overlay');
  t.is(r.mountpoint, '/m');
  t.true(r.flags.includes('nodev') && r.flags.includes('noatime'));
  t.true(r.ignored.includes('x-systemd.requires=foo'));
  // The same list as `tarstack mount -o` (store/mount-flags.ts): what libfuse hands to the kernel is
  // passed, the kernel's defaults are taken and change nothing, the flags libfuse cannot pass are refused.
  const all = parse(['-o', 'lowerdir=/a,dirsync,noexec,sync,relatime,diratime,symfollow', '/m']);
  for (const f of ['dirsync', 'noexec', 'sync']) t.true(all.flags.includes(f), f);
  t.deepEqual(all.ignored, ['relatime', 'diratime', 'symfollow']);
  for (const f of ['nodiratime', 'lazytime', 'strictatime', 'nosymfollow', 'norelatime']) {
    t.regex(t.throws(() => parseArgs(['-o', `lowerdir=/a,${f}`, '/m']), { instanceOf: UsageError })!.message, new RegExp(`^option ${f} is not supported: libfuse 3 cannot hand ${f} to the kernel`), f);
  }
});

test('escapes: \\: inside a lower path, \\, inside an option value; several -o; lowerdir+=', (t) => {
  t.deepEqual(splitLowerdir('/a\\:b:/c'), ['/a:b', '/c']);
  const r = parse(['-o', 'lowerdir=/x\\:y:/z', '-oupperdir=/u\\,v,workdir=/w', '-o', 'lowerdir+=/last', '/m']);
  t.deepEqual(r.lowers, ['/x:y', '/z', '/last']);
  t.is(r.upper, '/u,v');
});

test("podman's options: supported, accepted, or refused by name", (t) => {
  const r = parse(['-o', 'lowerdir=/a,upperdir=/u,workdir=/w,fsync=0,volatile,static_nlink,noacl,threaded=1,fast_ino=1,writeback=1,squash_to_uid=7,squash_to_gid=8,context="system_u:object_r:container_file_t:s0"', '/m']);
  t.deepEqual(r.squash, { uid: 7, gid: 8 });
  t.deepEqual(parse(['-o', 'lowerdir=/a,squash_to_root', '/m']).squash, { uid: 0, gid: 0 });
  for (const bad of ['uidmapping=0:1000:1', 'gidmapping=0:1000:1', 'plugins=x', 'redirect_dir=off', 'metacopy=on', 'index=on', 'noxattrs=1']) {
    const e = t.throws(() => parseArgs(['-o', `lowerdir=/a,${bad}`, '/m']), { instanceOf: UsageError });
    t.regex(e!.message, new RegExp(`option ${bad.split('=')[0]}`), bad);
    t.regex(e!.message, /supported: lowerdir=, upperdir=, workdir=/, `${bad}: lists what is supported`);
  }
});

test('mistakes: unknown option, no lowerdir, upper without work, no mount point, extra arguments', (t) => {
  t.regex(t.throws(() => parseArgs(['-o', 'lowerdir=/a,frobnicate', '/m']))!.message, /unknown option frobnicate\nsupported:/);
  t.regex(t.throws(() => parseArgs(['-o', 'upperdir=/u,workdir=/w', '/m']))!.message, /no lowerdir/);
  t.regex(t.throws(() => parseArgs(['-o', 'lowerdir=/a,upperdir=/u', '/m']))!.message, /upperdir and workdir go together/);
  t.regex(t.throws(() => parseArgs(['-o', 'lowerdir=/a']))!.message, /no mount point/);
  t.regex(t.throws(() => parseArgs(['a', 'b', 'c']))!.message, /too many arguments/);
  t.true(parse(['-o', 'lowerdir=/a', '/m']).readOnly, 'no upper: read-only');
});
