// Instances in the store: instances/<id>/ holds instance.json, upper/ (every change), work/ (copy-up
// temp files, the hard-link index, and the lock a mount holds) and root/ (the default mount point).
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../util/errors.js';
import { removeTree } from '../util/remove-tree.js';
import { field, META_VERSION, readMeta, writeMeta } from './meta.js';
import { byName, checkName, type StorePaths } from './paths.js';

export interface InstanceRecord {
  version: number;
  id: string;
  name: string;
  /** Image id it is a view of. */
  image: string;
  created: string;
  /** Changes live only while mounted (`create --tmp`). */
  tmp?: boolean;
  /** Bytes of file data the upper may hold (`create --size`). */
  sizeLimit?: number;
}

const META = 'instance.json';

function checkInstance(o: Record<string, unknown>): void {
  field.str(o, 'id');
  field.str(o, 'name');
  field.str(o, 'image');
}

export class Instances {
  constructor(private readonly paths: StorePaths) {}

  private get dir(): string {
    return join(this.paths.root, 'instances');
  }

  home(id: string): string {
    return join(this.dir, id);
  }

  upper(r: InstanceRecord): string {
    return join(this.home(r.id), 'upper');
  }

  work(r: InstanceRecord): string {
    return join(this.home(r.id), 'work');
  }

  /** Where the throwaway uppers of `--tmp` mounts live while mounted. */
  tmpSessions(r: InstanceRecord): string {
    return join(this.home(r.id), 'tmp-sessions');
  }

  /** The throwaway upper and work dir a `--tmp` mount serves instead of the instance's own (daemon/tmp-upper.ts makes them). */
  tmpSession(r: InstanceRecord, mountId: string): { upper: string; work: string } {
    const root = join(this.tmpSessions(r), mountId);
    return { upper: join(root, 'upper'), work: join(root, 'work') };
  }

  defaultMountpoint(r: InstanceRecord): string {
    return join(this.home(r.id), 'root');
  }

  list(): InstanceRecord[] {
    if (!existsSync(this.dir)) return [];
    const out: InstanceRecord[] = [];
    for (const id of readdirSync(this.dir)) {
      if (id.startsWith('.')) continue;
      out.push(readMeta<InstanceRecord>(join(this.home(id), META), 'instance', checkInstance));
    }
    return out.sort(byName);
  }

  find(name: string): InstanceRecord | undefined {
    return this.list().find((r) => r.name === name);
  }

  get(name: string): InstanceRecord {
    const r = this.find(name);
    if (!r) throw new UserError(`no instance named "${name}" (see \`tarstack list\`)`);
    return r;
  }

  /** One record read (the server looks instances up by id on every mount: never the whole list). */
  byId(id: string): InstanceRecord {
    const file = join(this.home(id), META);
    if (!/^[0-9a-f]{1,64}$/.test(id) || !existsSync(file)) throw new UserError(`the store refers to instance id ${id}, which is missing`);
    return readMeta<InstanceRecord>(file, 'instance', checkInstance);
  }

  /** Make the directories and record (call under the store lock); `prepareUpper` fills upper/. */
  create(name: string, imageId: string, prepareUpper: (upper: string) => void, extra: Pick<InstanceRecord, 'tmp' | 'sizeLimit'> = {}): InstanceRecord {
    checkName('instance', name);
    if (this.find(name)) throw new UserError(`an instance named "${name}" already exists`);
    const id = randomBytes(8).toString('hex');
    const staging = join(this.dir, `.staging-${id}`);
    mkdirSync(join(staging, 'work'), { recursive: true });
    mkdirSync(join(staging, 'root'));
    const r: InstanceRecord = { version: META_VERSION, id, name, image: imageId, created: new Date().toISOString(), ...extra };
    try {
      prepareUpper(join(staging, 'upper'));
      writeMeta(join(staging, META), r);
      renameSync(staging, this.home(id));
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      throw err;
    }
    return r;
  }

  rename(r: InstanceRecord, to: string): void {
    checkName('instance', to);
    if (this.find(to)) throw new UserError(`an instance named "${to}" already exists`);
    const renamed: InstanceRecord = { ...r, name: to };
    writeMeta(join(this.home(r.id), META), renamed);
  }

  /** Back to pristine: the upper is swapped for a fresh one, then the old one removed. */
  reset(r: InstanceRecord, prepareUpper: (upper: string) => void): void {
    const fresh = join(this.home(r.id), '.upper-new');
    const old = join(this.home(r.id), '.upper-old');
    removeTree(fresh);
    prepareUpper(fresh);
    renameSync(this.upper(r), old);
    renameSync(fresh, this.upper(r));
    removeTree(old); // any depth: a tar may nest 10,000 directories
    for (const sub of ['index', 'tmp', 'meta']) rmSync(join(this.work(r), sub), { recursive: true, force: true });
  }

  remove(r: InstanceRecord): void {
    const aside = join(this.dir, `.removing-${r.id}`);
    renameSync(this.home(r.id), aside);
    removeTree(aside);
  }
}
