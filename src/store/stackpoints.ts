// Stackpoints in the store: stackpoints/<id>/stackpoint.json names a mount path and the instance
// mounted there (current), the one before it (previous, for fallback) and every instance it has
// used (so a cutover back to an image reuses its instance, changes and all). The directory also
// holds the lock a command switching the stackpoint holds, and root/, the default mount path.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../util/errors.js';
import { field, META_VERSION, readMeta, writeMeta } from './meta.js';
import { byName, checkName, type StorePaths } from './paths.js';

export interface StackpointRecord {
  version: number;
  id: string;
  name: string;
  /** Mount path given at create; null: root/ in the stackpoint's directory. */
  path: string | null;
  /** Instance ids. */
  current: string;
  previous: string | null;
  instances: string[];
  created: string;
}

const META = 'stackpoint.json';

export class Stackpoints {
  constructor(private readonly paths: StorePaths) {}

  private get dir(): string {
    return join(this.paths.root, 'stackpoints');
  }

  home(r: { id: string }): string {
    return join(this.dir, r.id);
  }

  mountpoint(r: StackpointRecord): string {
    return r.path ?? join(this.home(r), 'root');
  }

  list(): StackpointRecord[] {
    if (!existsSync(this.dir)) return [];
    const out: StackpointRecord[] = [];
    for (const id of readdirSync(this.dir)) {
      if (id.startsWith('.')) continue;
      out.push(
        readMeta<StackpointRecord>(join(this.dir, id, META), 'stackpoint', (o) => {
          field.str(o, 'id');
          field.str(o, 'name');
          field.str(o, 'current');
          field.strOrNull(o, 'previous');
          field.strOrNull(o, 'path');
          if (!Array.isArray(o.instances)) throw '"instances" must be an array';
        }),
      );
    }
    return out.sort(byName);
  }

  find(name: string): StackpointRecord | undefined {
    return this.list().find((r) => r.name === name);
  }

  get(name: string): StackpointRecord {
    const r = this.find(name);
    if (!r) throw new UserError(`no stackpoint named "${name}" (see \`tarstack stackpoint list\`)`);
    return r;
  }

  /** Which stackpoints use an instance (as current, previous, or in their history). */
  using(instanceId: string): StackpointRecord[] {
    return this.list().filter((r) => r.current === instanceId || r.previous === instanceId || r.instances.includes(instanceId));
  }

  /** Make the record (call under the store lock). */
  create(name: string, path: string | null, instanceId: string): StackpointRecord {
    checkName('stackpoint', name);
    if (this.find(name)) throw new UserError(`a stackpoint named "${name}" already exists`);
    const id = randomBytes(8).toString('hex');
    const staging = join(this.dir, `.staging-${id}`);
    mkdirSync(join(staging, 'root'), { recursive: true });
    const r: StackpointRecord = { version: META_VERSION, id, name, path, current: instanceId, previous: null, instances: [instanceId], created: new Date().toISOString() };
    writeMeta(join(staging, META), r);
    renameSync(staging, this.home(r));
    return r;
  }

  /** Rewrite the record atomically (call under the store lock). */
  save(r: StackpointRecord): void {
    writeMeta(join(this.home(r), META), r);
  }

  remove(r: StackpointRecord): void {
    const aside = join(this.dir, `.removing-${r.id}`);
    renameSync(this.home(r), aside);
    rmSync(aside, { recursive: true, force: true });
  }
}
