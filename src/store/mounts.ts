// Runtime records of live mounts (run/mounts/<id>.json): who serves which mount point. A record
// from another boot, or of a process that is gone with its mount, is stale and is dropped on sight,
// so after a reboot nothing counts as mounted and `mount` simply works again. The process serving
// a mount (the store's server, or a `--foreground` mount's own process) is the only one writing its
// record; the CLI removes records only of mounts whose server is gone. Records are runtime state:
// replaced atomically (a reader never sees half of one) but not fsynced, since a reboot makes them
// stale anyway and a server killed with -9 still leaves them complete.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { field, META_VERSION, readMeta } from './meta.js';
import type { StorePaths } from './paths.js';
import { bootId, pidAlive, pidStartTicks } from '../util/proc.js';
import { listMounts } from '../util/mounts.js';
import { UserError } from '../util/errors.js';

/** How a mount was made, so `mount --all` can make it again after its server died. */
export interface MountOptions {
  backend: string;
  allowOther: boolean;
  /** Mount flags as made (suid/nosuid, dev/nodev, -o flags). */
  flags?: string[];
  owners?: 'stored' | 'mapped';
  tmp?: boolean;
}

export interface MountRecord {
  version: number;
  id: string;
  kind: 'image' | 'instance';
  /** Id of the image or instance served. */
  target: string;
  name: string;
  mountpoint: string;
  /** The serving process: the store's server, or a `--foreground` mount's own process. */
  pid: number;
  /** When `pid` started (clock ticks after boot): a pid reused after a crash is not the server. */
  pidStart?: number;
  bootId: string;
  backend: string;
  started: string;
  log: string;
  /** Served by the store's mount server (one process for many mounts), not a process of its own. */
  server?: boolean;
  options?: MountOptions;
  /** Lazily unmounted: still serving the users inside, but no longer at its mount point. */
  detached?: boolean;
  /** Kernel FUSE features beyond libfuse 3.14's it negotiated (passthrough, max_pages=N). */
  features?: string[];
}

export type MountState = 'serving' | 'dead' | 'gone';

const mountTable = (): Set<string> => new Set(listMounts().map((m) => m.mountpoint));

export class Mounts {
  constructor(private readonly paths: StorePaths) {}

  newId(): string {
    return randomBytes(6).toString('hex');
  }

  save(r: Omit<MountRecord, 'version' | 'bootId'>): MountRecord {
    mkdirSync(this.paths.mounts, { recursive: true, mode: 0o700 });
    const full: MountRecord = { version: META_VERSION, bootId: bootId(), ...r };
    const path = this.path(r.id);
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(full, null, 2) + '\n', { mode: 0o644 });
    renameSync(tmp, path);
    return full;
  }

  drop(id: string): void {
    rmSync(this.path(id), { force: true });
  }

  private path(id: string): string {
    return join(this.paths.mounts, `${id}.json`);
  }

  /** Whether the process serving `r` still runs (the same process: its start time matches too). */
  serverAlive(r: MountRecord): boolean {
    if (r.bootId !== bootId() || !pidAlive(r.pid)) return false;
    return r.pidStart === undefined || pidStartTicks(r.pid) === r.pidStart;
  }

  /**
   * serving: server alive and mounted; dead: mounted but the server is gone (kill -9); gone: neither.
   * `mountpoints`: the mount table's, read once by a caller asking about many records.
   */
  state(r: MountRecord, mountpoints?: Set<string>): MountState {
    const alive = this.serverAlive(r);
    if (r.detached) return alive ? 'serving' : 'gone';
    const mounted = r.bootId === bootId() && (mountpoints ?? mountTable()).has(r.mountpoint);
    if (mounted) return alive ? 'serving' : 'dead';
    return alive ? 'serving' : 'gone';
  }

  /** Live records; stale ones (another boot, or server and mount both gone) are removed. */
  list(): Array<MountRecord & { state: MountState }> {
    let names: string[];
    try {
      names = readdirSync(this.paths.mounts);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return [];
      // Never "nothing mounted" for a store we may not look into (another user's).
      throw new UserError(`cannot read the mount records of store ${this.paths.root}: ${code === 'EACCES' ? 'permission denied (the store belongs to another user)' : code}`);
    }
    const out: Array<MountRecord & { state: MountState }> = [];
    let table: Set<string> | undefined; // read once, and only if there is a record
    for (const f of names) {
      if (!f.endsWith('.json')) continue;
      const r = readMeta<MountRecord>(join(this.paths.mounts, f), 'mount record', (o) => {
        field.str(o, 'mountpoint');
        field.num(o, 'pid');
      });
      const state = this.state(r, (table ??= mountTable()));
      if (state === 'gone') this.drop(r.id);
      else out.push({ ...r, state });
    }
    return out;
  }

  at(mountpoint: string): (MountRecord & { state: MountState }) | undefined {
    return this.list().find((r) => r.mountpoint === mountpoint && !r.detached);
  }

  /**
   * After a lazy unmount of a `--foreground` mount: the record stays (its process serves on) but no
   * longer owns the mount point. (The server marks its own mounts.)
   */
  markDetached(id: string): void {
    const path = this.path(id);
    if (!existsSync(path)) return; // the process already left
    const r = readMeta<MountRecord>(path, 'mount record', () => undefined);
    this.save({ ...r, detached: true });
  }
}
