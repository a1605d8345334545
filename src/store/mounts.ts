// Runtime records of live mounts (run/mounts/<id>.json): who serves which mount point. A record
// from another boot, or of a daemon that is gone with its mount, is stale and is dropped on sight,
// so after a reboot nothing counts as mounted and `mount` simply works again.
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { field, META_VERSION, readMeta, writeMeta } from './meta.js';
import type { StorePaths } from './paths.js';
import { bootId, pidAlive } from '../util/proc.js';
import { mountAt } from '../util/mounts.js';

export interface MountRecord {
  version: number;
  id: string;
  kind: 'image' | 'instance';
  /** Id of the image or instance served. */
  target: string;
  name: string;
  mountpoint: string;
  pid: number;
  bootId: string;
  backend: string;
  started: string;
  log: string;
  /** Lazily unmounted: still serving the users inside, but no longer at its mount point. */
  detached?: boolean;
}

export type MountState = 'serving' | 'dead' | 'gone';

export class Mounts {
  constructor(private readonly paths: StorePaths) {}

  newId(): string {
    return randomBytes(6).toString('hex');
  }

  save(r: Omit<MountRecord, 'version' | 'bootId'>): MountRecord {
    mkdirSync(this.paths.mounts, { recursive: true });
    const full: MountRecord = { version: META_VERSION, bootId: bootId(), ...r };
    writeMeta(join(this.paths.mounts, `${r.id}.json`), full);
    return full;
  }

  drop(id: string): void {
    rmSync(join(this.paths.mounts, `${id}.json`), { force: true });
  }

  /** serving: daemon alive and mounted; dead: mounted but the daemon is gone (kill -9); gone: neither. */
  state(r: MountRecord): MountState {
    if (r.detached) return r.bootId === bootId() && pidAlive(r.pid) ? 'serving' : 'gone';
    const mounted = r.bootId === bootId() && mountAt(r.mountpoint) !== undefined;
    const alive = r.bootId === bootId() && pidAlive(r.pid);
    if (mounted) return alive ? 'serving' : 'dead';
    return alive ? 'serving' : 'gone';
  }

  /** Live records; stale ones (another boot, or daemon and mount both gone) are removed. */
  list(): Array<MountRecord & { state: MountState }> {
    if (!existsSync(this.paths.mounts)) return [];
    const out: Array<MountRecord & { state: MountState }> = [];
    for (const f of readdirSync(this.paths.mounts)) {
      if (!f.endsWith('.json')) continue;
      const r = readMeta<MountRecord>(join(this.paths.mounts, f), 'mount record', (o) => {
        field.str(o, 'mountpoint');
        field.num(o, 'pid');
      });
      const state = this.state(r);
      if (state === 'gone') this.drop(r.id);
      else out.push({ ...r, state });
    }
    return out;
  }

  at(mountpoint: string): (MountRecord & { state: MountState }) | undefined {
    return this.list().find((r) => r.mountpoint === mountpoint && !r.detached);
  }

  /** After a lazy unmount: the record stays (its daemon serves on) but no longer owns the mount point. */
  markDetached(id: string): void {
    const path = join(this.paths.mounts, `${id}.json`);
    if (!existsSync(path)) return; // the daemon already left
    const r = readMeta<MountRecord>(path, 'mount record', () => undefined);
    const detached: MountRecord = { ...r, detached: true };
    writeMeta(path, detached);
  }
}
