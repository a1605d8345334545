// Builds small tars in memory with tar-stream for unit tests (no mounts, no files).
import tarStream from 'tar-stream';

export interface PackEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  body?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

export async function pack(entries: PackEntry[]): Promise<Buffer> {
  const p = tarStream.pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((res, rej) => {
    p.on('end', () => res());
    p.on('error', rej);
  });
  for (const e of entries) {
    const body = e.body === undefined ? undefined : Buffer.isBuffer(e.body) ? e.body : Buffer.from(e.body);
    const header = {
        name: e.name,
        type: e.type ?? 'file',
        mode: e.mode,
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        mtime: e.mtime ?? new Date(1_700_000_000_000),
        linkname: e.linkname,
        devmajor: e.devmajor,
        devminor: e.devminor,
        pax: e.pax,
        size: body?.length ?? 0,
    };
    p.entry(header, body ?? Buffer.alloc(0));
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}
