// A small fsx: seeded random reads, writes, truncates and shared-mmap reads and writes on one file,
// every read checked against an in-memory copy. Node cannot mmap, so a python3 child (mmap module)
// does the mapped ops on request over a pipe; Node keeps its own fds open across them (coherence).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';

const PY = String.raw`
import base64, json, mmap, os, sys
for line in sys.stdin:
    r = json.loads(line)
    fd = os.open(r['path'], os.O_RDWR)
    try:
        m = mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if r['op'] == 'read':
            out = {'data': base64.b64encode(m[r['off']:r['off'] + r['len']]).decode()}
        else:
            data = base64.b64decode(r['data'])
            m[r['off']:r['off'] + len(data)] = data
            m.flush()
            out = {}
        m.close()
    except Exception as e:
        out = {'error': repr(e)}
    finally:
        os.close(fd)
    print(json.dumps(out), flush=True)
`;

/** The python3 helper: one request at a time. */
class Mapper {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;

  constructor() {
    this.child = spawn('python3', ['-c', PY], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.lines = readline.createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  async call(req: object): Promise<{ data?: string; error?: string }> {
    this.child.stdin.write(JSON.stringify(req) + '\n');
    const next = await this.lines.next();
    if (next.done) throw new Error(`python3 mmap helper exited (${this.child.exitCode})`);
    return JSON.parse(next.value) as { data?: string; error?: string };
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill(); // the one pid this helper started
  }
}

/** mulberry32: a seeded PRNG, so a failing run is replayed by its seed. */
export function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

export interface FsxOptions {
  file: string; // exists; its current content is the starting model
  seed: number;
  ops: number;
  maxSize: number; // writes and truncates stay below this
}

/** Runs the ops; resolves to the model (the file's expected content) or rejects at the first
 *  mismatch with the op log's tail and the seed. */
export async function fsx(o: FsxOptions): Promise<Buffer> {
  const rand = prng(o.seed);
  let model = fs.readFileSync(o.file);
  const early = fs.openSync(o.file, 'r'); // opened before anything changes (before copy-up)
  let fd = fs.openSync(o.file, 'r+');
  const mapper = new Mapper();
  const log: string[] = [];
  const fail = (msg: string) => new Error(`fsx seed ${o.seed}, op ${log.length}: ${msg}\nlast ops:\n  ${log.slice(-12).join('\n  ')}`);
  const check = (what: string, off: number, got: Buffer) => {
    const want = model.subarray(off, off + got.length);
    if (!got.equals(want)) {
      const at = [...got].findIndex((b, i) => b !== want[i]);
      throw fail(`${what} at ${off}: ${got.length} bytes differ from the model first at +${at} (size ${model.length})`);
    }
  };
  const readVia = (f: number, off: number, len: number) => {
    const b = Buffer.alloc(len);
    const n = fs.readSync(f, b, 0, len, off);
    const want = Math.max(0, Math.min(len, model.length - off));
    if (n !== want) throw fail(`read ${len} at ${off} returned ${n} bytes, expected ${want} (size ${model.length})`);
    return b.subarray(0, n);
  };
  try {
    for (let i = 0; i < o.ops; i++) {
      const kind = rand(100);
      const off = rand(100) < 20 ? Math.max(0, model.length - rand(4096)) : rand(Math.max(1, Math.min(o.maxSize, model.length + 65_536)));
      const len = 1 + rand(rand(10) < 8 ? 4096 : 65_536);
      if (kind < 25) {
        log.push(`read ${off}+${len}`);
        check('read', off, readVia(fd, off, len));
      } else if (kind < 30) {
        log.push(`read (fd opened first) ${off}+${len}`);
        check('read through the fd opened before any change', off, readVia(early, off, len));
      } else if (kind < 55) {
        const data = Buffer.from(Array.from({ length: Math.min(len, o.maxSize - off) }, () => rand(256)));
        log.push(`write ${off}+${data.length}`);
        fs.writeSync(fd, data, 0, data.length, off);
        if (off + data.length > model.length) model = Buffer.concat([model, Buffer.alloc(off + data.length - model.length)]);
        data.copy(model, off);
      } else if (kind < 63) {
        const size = rand(10) < 3 ? rand(4096) : rand(o.maxSize);
        log.push(`truncate ${size}`);
        fs.ftruncateSync(fd, size);
        model = size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
      } else if (kind < 93 && model.length > 0) {
        const moff = Math.min(off, model.length - 1);
        const mlen = Math.min(len, model.length - moff);
        if (kind < 78) {
          log.push(`mapread ${moff}+${mlen}`);
          const r = await mapper.call({ op: 'read', path: o.file, off: moff, len: mlen });
          if (r.error) throw fail(`mapread: ${r.error}`);
          check('mapread', moff, Buffer.from(r.data!, 'base64'));
        } else {
          const data = Buffer.from(Array.from({ length: mlen }, () => rand(256)));
          log.push(`mapwrite ${moff}+${mlen}`);
          const r = await mapper.call({ op: 'write', path: o.file, off: moff, data: data.toString('base64') });
          if (r.error) throw fail(`mapwrite: ${r.error}`);
          data.copy(model, moff);
        }
      } else if (kind < 97) {
        log.push('fsync');
        fs.fsyncSync(fd);
      } else {
        log.push('close and reopen');
        fs.closeSync(fd);
        fd = fs.openSync(o.file, 'r+');
      }
      if (fs.fstatSync(fd).size !== model.length) throw fail(`st_size ${fs.fstatSync(fd).size}, model ${model.length}`);
    }
    log.push('read all');
    check('read of the whole file', 0, readVia(fd, 0, model.length + 1));
    return model;
  } finally {
    fs.closeSync(fd);
    fs.closeSync(early);
    mapper.close();
  }
}
