// Image state shared by the server's mounts (issue 14): a layer is opened once however many mounts
// lease it, its tar closed with the last lease; a tar replaced since indexing is opened afresh (and
// refused) for the next mount while the leases already out keep the file they had; a lease offers
// exactly what its layer offers.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { makeTestRoot, removeTestRoot, tarstackCli, cliAvailable } from './helpers/mount.js';
import { makeTar } from './server-support.js';
import { Images } from '../src/store/images.js';
import { StorePaths } from '../src/store/paths.js';
import { leaseOf, SharedLayers } from '../src/server/shared-layers.js';
import { ABSENT, type Layer } from '../src/layer/layer.js';
import { UserError } from '../src/util/errors.js';

const skip = cliAvailable() ? undefined : 'the CLI is not built';
if (skip) test.skip(skip, () => undefined);
const root = skip ? '' : makeTestRoot('server-layers');
test.after.always(() => removeTestRoot(root));

/** Descriptors of this process open on `file`. */
function openOn(file: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === file) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

async function store(name: string, files: Record<string, string>): Promise<{ images: Images; tar: string }> {
  const home = path.join(root, name, 'store');
  fs.mkdirSync(home, { recursive: true });
  const tar = makeTar(path.join(root, name, 'img.tar'), files);
  const r = await tarstackCli(['image', 'add', tar, '--name', 'img'], { env: { TARSTACK_HOME: home } });
  if (r.code !== 0) throw new Error(r.stderr);
  return { images: new Images(new StorePaths(home)), tar };
}

const nameOf = (L: Layer, path: string): number => path.split('/').reduce((dir, n) => (dir === ABSENT ? ABSENT : L.lookup(dir, n)), 0);

(skip ? test.skip : test.serial)('one open layer for every lease, its tar closed with the last', async (t) => {
  const { images, tar } = await store('shared', { 'a/b': 'bee\n' });
  const shared = new SharedLayers();
  const img = images.get('img');
  const [one] = shared.open(images, images.stack(img)) as [Layer];
  const [two] = shared.open(images, images.stack(img)) as [Layer];
  t.deepEqual(shared.stats(), { layers: 1, leases: 2 });
  t.is(openOn(tar), 1, 'one descriptor for both');
  const buf = Buffer.alloc(4);
  t.is(two.readInto(nameOf(two, 'a/b'), 0, buf, 0, 4), 4);
  t.is(buf.toString(), 'bee\n');
  one.close();
  one.close(); // a second close of the same lease changes nothing
  t.deepEqual(shared.stats(), { layers: 1, leases: 1 });
  t.is(openOn(tar), 1, 'still open for the other lease');
  t.is(nameOf(two, 'a/b') !== ABSENT, true);
  two.close();
  t.deepEqual(shared.stats(), { layers: 0, leases: 0 });
  t.is(openOn(tar), 0, 'closed with the last lease');
});

(skip ? test.skip : test.serial)('a tar replaced since indexing: the next open is refused, leases out keep their file', async (t) => {
  const { images, tar } = await store('replaced', { 'f': 'old\n' });
  const shared = new SharedLayers();
  const img = images.get('img');
  const [held] = shared.open(images, images.stack(img)) as [Layer];
  const fresh = makeTar(`${tar}.new`, { 'f': 'new\n' });
  fs.renameSync(fresh, tar);
  const err = t.throws(() => shared.open(images, images.stack(img)), { instanceOf: UserError });
  t.regex(err!.message, /changed since it was indexed/);
  t.deepEqual(shared.stats(), { layers: 0, leases: 1 }, 'the stale layer is no longer handed out');
  const buf = Buffer.alloc(4);
  held.readInto(nameOf(held, 'f'), 0, buf, 0, 4);
  t.is(buf.toString(), 'old\n', 'the lease out still reads the file it opened');
  held.close();
  t.deepEqual(shared.stats(), { layers: 0, leases: 0 });
});

test('a lease offers what its layer offers, fields read through, optional methods only where the layer has them', (t) => {
  class Base {
    readonly source = 'base';
    nodeCount = 3;
    private readonly secret = 7;
    lookup(dir: number, name: string): number {
      return name === 'x' ? dir + this.secret : ABSENT;
    }
    get storageBytes(): number {
      return this.nodeCount * 100;
    }
    close(): void {
      throw new Error('the layer itself must not be closed through a lease');
    }
  }
  class WithOpen extends Base {
    opened = 0;
    openFile(): void {
      this.opened++;
    }
  }
  const plain = new Base();
  let released = 0;
  const lease = leaseOf(plain as unknown as Layer, () => released++);
  t.is(lease.lookup(1, 'x'), 8, 'methods run on the layer itself');
  t.is(lease.source, 'base');
  plain.nodeCount = 5;
  t.deepEqual([lease.nodeCount, lease.storageBytes], [5, 500], 'fields and getters read through');
  t.is(lease.openFile, undefined, 'no optional method the layer lacks');
  lease.close();
  t.is(released, 1);
  const withOpen = new WithOpen();
  const lease2 = leaseOf(withOpen as unknown as Layer, () => undefined);
  lease2.openFile!(0);
  t.is(withOpen.opened, 1, 'an optional method the layer has is there');
});
