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

/** `len` seeded random bytes (four per draw). */
function randomBytes(rand: () => number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let i = 0;
  for (; i + 4 <= len; i += 4) b.writeUInt32LE(rand(), i);
  for (; i < len; i++) b[i] = rand() & 0xff;
  return b;
}

/** A 32-bit draw from the same seeded sequence (mulberry32's whole output). */
const draw32 = (rand: (n: number) => number) => () => rand(4294967296) >>> 0;

/** Runs the ops; resolves to the model (the file's expected content) or rejects at the first
 *  mismatch with the op log's tail and the seed. */
export async function fsx(o: FsxOptions): Promise<Buffer> {
  const rand = prng(o.seed);
  const rand32 = draw32(rand);
  const start = fs.readFileSync(o.file);
  // The model: the file's expected bytes in a buffer as big as it may grow, `size` of them in use; the
  // bytes past `size` stay zero (what a file extended by a write or truncate reads there).
  const model = Buffer.alloc(Math.max(start.length, o.maxSize) + 65_536);
  start.copy(model);
  let size = start.length;
  const resize = (to: number) => {
    if (to < size) model.fill(0, to, size);
    size = to;
  };
  const early = fs.openSync(o.file, 'r'); // opened before anything changes (before copy-up)
  let fd = fs.openSync(o.file, 'r+');
  const mapper = new Mapper();
  // The last ops, for the message of a mismatch (a ring: a long run keeps no more than this).
  const LOG_KEEP = 12;
  const log: string[] = [];
  let done = 0;
  const note = (op: string) => {
    log[done++ % LOG_KEEP] = op;
  };
  const lastOps = () => Array.from({ length: Math.min(done, LOG_KEEP) }, (_, i) => log[(done - Math.min(done, LOG_KEEP) + i) % LOG_KEEP]);
  const fail = (msg: string) => new Error(`fsx seed ${o.seed}, op ${done}: ${msg}\nlast ops:\n  ${lastOps().join('\n  ')}`);
  const check = (what: string, off: number, got: Buffer) => {
    const want = model.subarray(off, off + got.length);
    if (!got.equals(want)) {
      const at = [...got].findIndex((b, i) => b !== want[i]);
      throw fail(`${what} at ${off}: ${got.length} bytes differ from the model first at +${at} (size ${size})`);
    }
  };
  const scratch = Buffer.alloc(model.length + 1);
  const readVia = (f: number, off: number, len: number) => {
    const b = len <= scratch.length ? scratch.subarray(0, len) : Buffer.alloc(len);
    const n = fs.readSync(f, b, 0, len, off);
    const want = Math.max(0, Math.min(len, size - off));
    if (n !== want) throw fail(`read ${len} at ${off} returned ${n} bytes, expected ${want} (size ${size})`);
    return b.subarray(0, n);
  };
  try {
    for (let i = 0; i < o.ops; i++) {
      const kind = rand(100);
      const off = rand(100) < 20 ? Math.max(0, size - rand(4096)) : rand(Math.max(1, Math.min(o.maxSize, size + 65_536)));
      const len = 1 + rand(rand(10) < 8 ? 4096 : 65_536);
      if (kind < 25) {
        note(`read ${off}+${len}`);
        check('read', off, readVia(fd, off, len));
      } else if (kind < 30) {
        note(`read (fd opened first) ${off}+${len}`);
        check('read through the fd opened before any change', off, readVia(early, off, len));
      } else if (kind < 55) {
        const data = randomBytes(rand32, Math.min(len, o.maxSize - off));
        note(`write ${off}+${data.length}`);
        fs.writeSync(fd, data, 0, data.length, off);
        if (off + data.length > size) resize(off + data.length);
        data.copy(model, off);
      } else if (kind < 63) {
        const to = rand(10) < 3 ? rand(4096) : rand(o.maxSize);
        note(`truncate ${to}`);
        fs.ftruncateSync(fd, to);
        resize(to);
      } else if (kind < 93 && size > 0) {
        const moff = Math.min(off, size - 1);
        const mlen = Math.min(len, size - moff);
        if (kind < 78) {
          note(`mapread ${moff}+${mlen}`);
          const r = await mapper.call({ op: 'read', path: o.file, off: moff, len: mlen });
          if (r.error) throw fail(`mapread: ${r.error}`);
          check('mapread', moff, Buffer.from(r.data!, 'base64'));
        } else {
          const data = randomBytes(rand32, mlen);
          note(`mapwrite ${moff}+${mlen}`);
          const r = await mapper.call({ op: 'write', path: o.file, off: moff, data: data.toString('base64') });
          if (r.error) throw fail(`mapwrite: ${r.error}`);
          data.copy(model, moff);
        }
      } else if (kind < 97) {
        note('fsync');
        fs.fsyncSync(fd);
      } else {
        note('close and reopen');
        fs.closeSync(fd);
        fd = fs.openSync(o.file, 'r+');
      }
      const st = fs.fstatSync(fd).size;
      if (st !== size) throw fail(`st_size ${st}, model ${size}`);
    }
    note('read all');
    check('read of the whole file', 0, readVia(fd, 0, size + 1));
    return Buffer.from(model.subarray(0, size));
  } finally {
    fs.closeSync(fd);
    fs.closeSync(early);
    mapper.close();
  }
}
