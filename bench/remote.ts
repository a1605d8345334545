// The `remote` suite: images served lazily from an OCI registry (issue 15), against copying the
// image whole. A local docker-registry (Debian's distribution registry, started here on 127.0.0.1)
// holds a rootfs-like image (a gzip base layer of real files from /usr, ~200 MB decoded; a small top
// layer): pushed by `tarstack image push` (with tarstack's indexes) and by skopeo (without).
// Peers: `tarstack pull` (fresh store each run) and `skopeo copy + image import` (the whole image
// copied, then imported). Figures: pull + mount seconds; after `ls -R` and 10 files read, bytes over
// the wire as a share of the layer bytes (counted from the registry's access log); without the
// index, pull seconds against downloading and decompressing the layers once (`curl | gzip -dc`, peer "curl + gzip -dc").
// Source `big`: a plain tar layer holding one 1 GiB member (random bytes), pushed with its index; cold
// sequential read of the member (fresh store, page cache dropped, `dd bs=1M`) against `curl -r` of the
// same byte range of the blob (peer "curl -r"); plain, not gzip, so the figure is the remote reading.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeTree } from '../src/util/remove-tree.js';
import { unmount } from '../src/util/unmount.js';
import { startRegistry, type Registry } from '../test/helpers/remote-servers.js';
import type { Case, Ctx, Sample, Suite } from './cases.js';
import type { Mounted, Peer, Source } from './peers.js';
import { shareAtLeast, timesAtMost, valueAtMost, type FigureSpec } from './report.js';
import { cpuSecondsOf, mainThreadCpuSecondsOf, dropCaches, fuseServers, onCleanup, runOk, sh } from './sys.js';

class CommandPeer implements Peer {
  readonly fuse = true;
  writable = false;
  version = '';
  notes: string[] = [];
  constructor(readonly id: string, readonly name: string, private readonly tool: string) {}
  async probe(): Promise<string | undefined> {
    this.version = this.tool;
    return existsSync(this.tool) ? undefined : `${this.tool} is missing (scripts/system-deps)`;
  }
  mount(): Promise<Mounted> {
    return Promise.reject(new Error(`${this.name}: the remote suite's cases mount by themselves`));
  }
  async unmount(): Promise<void> {}
}

const PULL = new CommandPeer('tarstack-pull', 'tarstack pull', '/usr/bin/docker-registry');
const COPY = new CommandPeer('skopeo-import', 'skopeo copy + image import', '/usr/bin/skopeo');
const CURL = new CommandPeer('curl-gunzip', 'curl + gzip -dc', '/usr/bin/curl');
const CURL_RANGE = new CommandPeer('curl-range', 'curl -r', '/usr/bin/curl');

let registry: Registry | undefined;
let layerBytes = 0;
let files: string[] = [];

interface RemoteSource extends Source {
  /** Repository with tarstack's indexes pushed, and one pushed by skopeo only. */
  indexed: string;
  plain: string;
  blobs: string[];
}

async function cli(ctx: { tarstack: string }, home: string, args: string[], timeoutS = 600): Promise<string> {
  return (await runOk(process.execPath, [join(ctx.tarstack, 'dist/src/cli/main.js'), ...args], { env: { ...process.env, TARSTACK_HOME: home }, timeoutS })).stdout;
}

interface BigSource extends Source {
  ref: string;
  /** The blob's URL, and where the member's bytes are in it. */
  blobUrl: string;
  start: number;
  size: number;
}

type Opts = { data: string; run: string; quick: boolean; tarstack: string };

async function started(o: Opts): Promise<Registry> {
  if (registry) return registry;
  const work = join(o.run, 'remote');
  mkdirSync(work, { recursive: true });
  const reg = await startRegistry(join(work, 'registry'));
  registry = reg;
  onCleanup(() => reg.child.kill('SIGKILL'));
  return reg;
}

/** One member of 1 GiB (64 MiB quick) of random bytes, in a plain tar layer pushed with its index. */
async function bigSource(o: Opts, log: (s: string) => void): Promise<{ source: Source; describe: string }> {
  const mib = o.quick ? 64 : 1024;
  const base = join(o.data, 'remote', `big-${mib}`);
  const tar = join(base, 'big.tar');
  if (!existsSync(join(base, '.complete'))) {
    log(`remote: making a tar of one ${mib} MiB member`);
    removeTree(base, { mounts: 'force' });
    mkdirSync(join(base, 'tree'), { recursive: true });
    await runOk('sh', ['-c', 'head -c "$1" /dev/urandom > "$0"/tree/big.bin && tar -cf "$0"/big.tar -C "$0"/tree big.bin && rm "$0"/tree/big.bin', base, `${mib}M`], { timeoutS: 600 });
    writeFileSync(join(base, '.complete'), '');
  }
  const reg = await started(o);
  const maker = join(o.run, 'remote', 'big-maker');
  const ref = `${reg.host}/bench/big:v1`;
  await cli(o, maker, ['image', 'add', tar, '--name', 'big']);
  await cli(o, maker, ['image', 'push', 'big', ref, '--tls-verify=false']);
  const manifest = JSON.parse((await runOk('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])).stdout) as { layers: Array<{ digest: string }> };
  // GNU tar's -R: the block of the member's header; its data is the next block on.
  const block = Number(/^block (\d+):/.exec((await runOk('tar', ['-tvRf', tar])).stdout)![1]);
  const src: BigSource = { name: 'big', ref, blobUrl: `${reg.url}/v2/bench/big/blobs/${manifest.layers[0]!.digest}`, start: (block + 1) * 512, size: mib * 2 ** 20 };
  return { source: src, describe: `one ${mib} MiB member (random bytes) in a plain tar layer, index pushed, in a local docker-registry` };
}

async function source(name: string, o: Opts, log: (s: string) => void): Promise<{ source: Source; describe: string }> {
  if (name === 'big') return bigSource(o, log);
  const base = join(o.data, 'remote', o.quick ? 'quick' : 'full');
  const tar = join(base, 'base.tar.gz');
  const dirs = o.quick ? ['usr/include/linux'] : ['usr/include', 'usr/share/perl', 'usr/share/zoneinfo'];
  if (!existsSync(join(base, '.complete'))) {
    log(`remote: making the base layer from ${dirs.join(', ')}`);
    removeTree(base, { mounts: 'force' });
    mkdirSync(join(base, 'top', 'etc'), { recursive: true });
    await runOk('sh', ['-c', 'tar -cf - -C / "$@" 2>/dev/null | pigz -6 > "$0"; true', tar, ...dirs], { timeoutS: 1800 });
    writeFileSync(join(base, 'top', 'etc', 'motd'), 'a top layer\n');
    await runOk('tar', ['-cf', join(base, 'top.tar'), '-C', join(base, 'top'), 'etc']);
    writeFileSync(join(base, '.complete'), '');
  }
  const work = join(o.run, 'remote');
  const reg = await started(o);
  const maker = join(work, 'maker');
  await cli(o, maker, ['image', 'add', tar, '--name', 'base']);
  await cli(o, maker, ['image', 'add', join(base, 'top.tar'), '--name', 'top', '--parent', 'base']);
  await cli(o, maker, ['image', 'push', 'top', `${reg.host}/bench/indexed:v1`, '--tls-verify=false']);
  await cli(o, maker, ['image', 'export', 'top', '--layers', '-o', join(work, 'stack.oci.tar')]);
  await runOk('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci-archive:${join(work, 'stack.oci.tar')}`, `docker://${reg.host}/bench/plain:v1`], { timeoutS: 600 });
  const manifest = JSON.parse((await runOk('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/bench/plain:v1`])).stdout) as { layers: Array<{ digest: string; size: number }> };
  layerBytes = manifest.layers.reduce((a, l) => a + l.size, 0);
  // 10 files spread over the tree, as a program starting would read some.
  const all = (await runOk('sh', ['-c', 'cd / && find "$@" -type f -size +1k | sort', 'sh', ...dirs])).stdout.split('\n').filter(Boolean);
  files = Array.from({ length: 10 }, (_, i) => all[Math.floor(((i + 0.5) * all.length) / 10)]!);
  const decoded = Number((await runOk('sh', ['-c', 'gzip -dc "$1" | wc -c', 'sh', tar])).stdout.trim());
  const src: RemoteSource = { name: 'rootfs', indexed: `${reg.host}/bench/indexed:v1`, plain: `${reg.host}/bench/plain:v1`, blobs: manifest.layers.map((l) => l.digest) };
  return { source: src, describe: `rootfs-like image: gzip base layer of ${dirs.join(', ')} (${(layerBytes / 2 ** 20).toFixed(0)} MiB of layers, ${(decoded / 2 ** 20).toFixed(0)} MiB decoded, ${all.length} files) + a small top layer, in a local docker-registry` };
}

const fig = (id: string, label: string, unit: FigureSpec['unit'], target?: FigureSpec['target']): FigureSpec => ({ id, label, unit, better: 'lower', ...(target ? { target } : {}) });
const PULL_MOUNT = fig('remote-pull-mount', 'pull + mount, index pushed (s)', 's', valueAtMost(1, 's'));
const WIRE = fig('remote-wire', 'bytes over the wire / layer bytes: pull, mount, ls -R, 10 files read (index pushed)', '%', valueAtMost(5, '%'));
const ALL = fig('remote-total', 'pull, mount, ls -R, 10 files read (s)', 's');
const SEQ: FigureSpec = { id: 'remote-seq-cold', label: 'cold sequential read of a member from the registry (dd bs=1M), vs curl -r of its bytes', unit: 'MiB/s', better: 'higher', target: shareAtLeast(0.7, { peer: CURL_RANGE.name }) };
const STREAM = fig('remote-pull-stream', 'pull without the index: streaming pass (s), vs curl + gzip -dc of the layers', 's', timesAtMost(1.3, { peer: CURL.name }));

const now = (): number => Number(process.hrtime.bigint()) / 1e9;
let runs = 0;

async function lsAndRead(mnt: string): Promise<void> {
  await sh('ls -lR "$1" > /dev/null', { args: [mnt] });
  for (const f of files) readFileSync(join(mnt, f));
}

/** A run's directory, with a store and a mount point in it. */
function runDirs(peer: Peer, ctx: Ctx): { dir: string; home: string; mnt: string } {
  const dir = join(ctx.opts.run, 'remote', `${peer.id}-${++runs}`);
  mkdirSync(join(dir, 'mnt'), { recursive: true });
  return { dir, home: join(dir, 'store'), mnt: join(dir, 'mnt') };
}

async function indexedRun(peer: Peer, s: Source, ctx: Ctx): Promise<Record<string, Sample>> {
  const src = s as RemoteSource;
  const reg = registry!;
  const { dir, home, mnt } = runDirs(peer, ctx);
  await reg.settled();
  const before = reg.blobBytes();
  const t0 = now();
  if (peer === PULL) {
    await cli(ctx.opts, home, ['image', 'pull', src.indexed, '--tls-verify=false', '--name', 'img']);
  } else {
    await runOk('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${src.plain}`, `oci-archive:${join(dir, 'img.oci.tar')}`], { timeoutS: 600 });
    await cli(ctx.opts, home, ['image', 'import', join(dir, 'img.oci.tar'), '--name', 'img']);
  }
  await cli(ctx.opts, home, ['image', 'mount', 'img', mnt]);
  const mounted = now() - t0;
  const untrack = onCleanup(() => unmount(mnt)); // Ctrl-C or a crash of the bench: umount, forced if it must be
  try {
    await lsAndRead(mnt);
  } finally {
    await cli(ctx.opts, home, ['umount', mnt]);
    untrack();
  }
  const total = now() - t0;
  await reg.settled();
  const wire = reg.blobBytes() - before;
  removeTree(dir, { mounts: 'refuse' });
  return { [PULL_MOUNT.id]: { value: mounted }, [WIRE.id]: { value: (100 * wire) / layerBytes, also: { 'MiB over the wire': wire / 2 ** 20 } }, [ALL.id]: { value: total } };
}

async function streamRun(peer: Peer, s: Source, ctx: Ctx): Promise<Record<string, Sample>> {
  const src = s as RemoteSource;
  const reg = registry!;
  const dir = join(ctx.opts.run, 'remote', `${peer.id}-${++runs}`);
  mkdirSync(dir, { recursive: true });
  const t0 = now();
  if (peer === PULL) await cli(ctx.opts, join(dir, 'store'), ['image', 'pull', src.plain, '--tls-verify=false', '--name', 'img']);
  else for (const b of src.blobs) await sh('curl -sf "$1" | gzip -dc > /dev/null 2>&1 || curl -sf "$1" > /dev/null', { args: [`${reg.url}/v2/bench/plain/blobs/${b}`] });
  const value = now() - t0;
  removeTree(dir, { mounts: 'refuse' });
  return { [STREAM.id]: { value } };
}

/** Fresh store, index pulled, mounted, page cache dropped: then the member read once, as dd or curl -r. */
async function seqRun(peer: Peer, s: Source, ctx: Ctx): Promise<Record<string, Sample>> {
  const src = s as BigSource;
  const reg = registry!;
  const { dir, home, mnt } = runDirs(peer, ctx);
  let untrack = (): void => undefined;
  if (peer === PULL) {
    await cli(ctx.opts, home, ['image', 'pull', src.ref, '--tls-verify=false', '--name', 'img']);
    await cli(ctx.opts, home, ['image', 'mount', 'img', mnt]);
    untrack = onCleanup(() => unmount(mnt));
  }
  try {
    await reg.settled();
    const logged = reg.log().length;
    const before = reg.blobBytes();
    dropCaches();
    const server = peer === PULL ? fuseServers(mnt)[0] : undefined;
    const cpu = (): [number, number, number] => [server ? cpuSecondsOf(server) : 0, cpuSecondsOf(reg.child.pid!), server ? mainThreadCpuSecondsOf(server) : 0];
    const cpu0 = cpu();
    const t0 = now();
    if (peer === PULL) await runOk('dd', [`if=${join(mnt, 'big.bin')}`, 'of=/dev/null', 'bs=1M'], { timeoutS: 600 });
    else await runOk('curl', ['-sf', '-r', `${src.start}-${src.start + src.size - 1}`, '-o', '/dev/null', src.blobUrl], { timeoutS: 600 });
    const secs = now() - t0;
    const cpu1 = cpu();
    await reg.settled();
    const requests = reg.log().length - logged - 1; // less the marker
    return { [SEQ.id]: { value: src.size / 2 ** 20 / secs, also: { requests, 'server CPU s': cpu1[0] - cpu0[0], 'its main thread': cpu1[2] - cpu0[2], 'registry CPU s': cpu1[1] - cpu0[1], 'MiB over the wire': (reg.blobBytes() - before) / 2 ** 20 } } };
  } finally {
    if (peer === PULL) {
      await cli(ctx.opts, home, ['umount', mnt]);
      untrack();
    }
    removeTree(dir, { mounts: 'refuse' });
  }
}

const cases: Case[] = [
  { name: 'remote-indexed', source: 'rootfs', figures: [PULL_MOUNT, WIRE, ALL], takes: (p) => p === PULL || p === COPY, run: indexedRun },
  { name: 'remote-stream', source: 'rootfs', figures: [STREAM], takes: (p) => p === PULL || p === CURL, run: streamRun },
  { name: 'remote-seq-cold', source: 'big', figures: [SEQ], takes: (p) => p === PULL || p === CURL_RANGE, run: seqRun },
];

export const remoteSuite: Suite = {
  section: { id: 'remote', title: 'Images pulled from an OCI registry, read lazily', subject: PULL.name, reference: COPY.name },
  peers: () => [PULL, COPY, CURL, CURL_RANGE],
  source,
  cases: () => cases,
};

/** Reading the registry's storage (tests of the bench itself). */
export const registryBlobs = (r: Registry): string[] => readdirSync(join(r.storage, 'docker/registry/v2/blobs/sha256'));
