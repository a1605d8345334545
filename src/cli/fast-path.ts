// The commands run most often (`mount`, `image mount`, `umount`, `status`, `list`, `--version`,
// `create`, `image add` of a local tar, `image pull`), parsed by hand
// when their words are plain, so they run without loading yargs (a third of the CLI's start-up).
// Anything unusual (an option not listed here, a value, a repeated flag, --help, too many words)
// is left to the full parser (parser.ts), which has the last word on every command line. The
// table below must say what the yargs definitions say (test/cli-fast-path.test.ts checks both
// routes give the same output); TARSTACK_FULL_PARSE=1 turns the fast path off.
import type { BackendName } from '../daemon/protocol.js';
import type { Args } from './handler.js';

interface Verb {
  /** Positional names, in order; the first `required` must be given (else yargs says what is missing). */
  positionals: string[];
  required?: number;
  /** Boolean options the verb takes, as typed (kebab-case). */
  flags: string[];
  /** Options taking a string (`--name V` or `--name=V`); a value that is empty or starts with '-' goes to yargs. */
  values?: string[];
  /** What yargs fills in for options not given (its `default`s), under both spellings. */
  defaults?: Record<string, unknown>;
  /** Boolean options also said `--flag=true` / `--flag=false` (as `--tls-verify=false`, podman's spelling). */
  boolValues?: string[];
  impl: () => Promise<Record<string, unknown>>;
  name: string;
  /** A mount of this kind by name: asked of a running server as it stands (askedByName). */
  named?: 'image' | 'instance';
}

const mountImpl = (): Promise<Record<string, unknown>> => import('./impl/mount.js');
const instanceImpl = (): Promise<Record<string, unknown>> => import('./impl/instance.js');
const imageImpl = (): Promise<Record<string, unknown>> => import('./impl/image.js');

const VERBS: Record<string, Verb> = {
  'image mount': { positionals: ['image', 'dir'], required: 2, flags: ['nonempty', 'allow-other'], impl: mountImpl, name: 'imageMount', named: 'image' },
  mount: { positionals: ['instance', 'dir'], flags: ['tmp', 'nonempty', 'allow-other', 'all'], impl: mountImpl, name: 'instanceMount', named: 'instance' },
  umount: { positionals: ['target'], flags: ['lazy', 'force', 'all'], impl: mountImpl, name: 'umount' },
  status: { positionals: ['instance'], flags: [], impl: mountImpl, name: 'status' },
  list: { positionals: [], flags: [], impl: instanceImpl, name: 'instanceList' },
  // yargs was 40 % of a create's CPU (scripts and tests make instances by the dozen); --dir, an
  // array option, is left to yargs
  create: { positionals: ['instance', 'image'], required: 2, flags: ['tmp'], values: ['size'], impl: instanceImpl, name: 'instanceCreate' },
  // the first step of every first mount: yargs would be a third of its start-up
  'image add': { positionals: ['tar'], required: 1, flags: ['copy', 'recompress', 'tls-verify'], values: ['name', 'parent'], defaults: { 'tls-verify': true, tlsVerify: true }, impl: imageImpl, name: 'imageAdd' },
  // a pull with the index pushed is mostly start-up too
  'image pull': { positionals: ['ref'], required: 1, flags: ['full', 'tls-verify'], boolValues: ['tls-verify'], values: ['name', 'platform', 'cert-dir'], defaults: { 'tls-verify': true, tlsVerify: true }, impl: () => import('./impl/registry.js'), name: 'imagePull' },
};

/** Global options every command takes (commands.ts): booleans, and --store with its value. */
const GLOBAL_FLAGS = ['json', 'verbose'];

const camel = (s: string): string => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export type FastCommand = { version: true } | { verb: Verb; args: Args };

/** The command `argv` asks for, when it is one the fast path knows and says plainly; else undefined. */
export function fastParse(argv: string[], env: NodeJS.ProcessEnv = process.env): FastCommand | undefined {
  if (env.TARSTACK_FULL_PARSE) return undefined;
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) return { version: true };
  let words = argv[0] === 'instance' ? argv.slice(1) : argv;
  if (argv[0] === 'image') words = [`image ${argv[1] ?? ''}`, ...argv.slice(2)];
  const verb = VERBS[words[0] ?? ''];
  if (!verb) return undefined;
  const args: Args = {};
  const positionals: string[] = [];
  const seen = new Set<string>();
  for (let i = 1; i < words.length; i++) {
    const w = words[i]!;
    if (!w.startsWith('-')) {
      if (w === '') return undefined;
      positionals.push(w);
      continue;
    }
    const valued = /^--([a-z-]+)(?:=(.*))?$/s.exec(w);
    let key: string;
    let value: string | boolean = true;
    if (valued && (valued[1] === 'store' || verb.values?.includes(valued[1]!))) {
      key = valued[1]!;
      const v = valued[2] ?? words[++i];
      if (v === undefined || v === '' || (valued[2] === undefined && v.startsWith('-'))) return undefined;
      value = v;
    } else if (valued && valued[2] !== undefined && verb.boolValues?.includes(valued[1]!) && (valued[2] === 'true' || valued[2] === 'false')) {
      key = valued[1]!;
      value = valued[2] === 'true';
    } else {
      key = w.slice(2);
      if (!w.startsWith('--') || !(verb.flags.includes(key) || GLOBAL_FLAGS.includes(key))) return undefined;
    }
    if (seen.has(key)) return undefined;
    seen.add(key);
    args[key] = value;
    if (key !== camel(key)) args[camel(key)] = value;
  }
  if (positionals.length > verb.positionals.length || positionals.length < (verb.required ?? 0)) return undefined;
  positionals.forEach((p, i) => (args[verb.positionals[i]!] = p));
  for (const [k, v] of Object.entries(verb.defaults ?? {})) if (!(k in args)) args[k] = v;
  return { verb, args };
}

/** Run a parsed fast command as the yargs handler would (handler.ts). */
export async function runFast(c: FastCommand, version: () => string): Promise<void> {
  if ('version' in c) {
    process.stdout.write(version() + '\n');
    return;
  }
  if (c.verb.named && (await askedByName(c.verb.named, c.args))) return;
  const { run } = await import('./handler.js');
  await run(c.verb.impl, c.verb.name as never)(c.args);
}

/**
 * A mount by name, asked of the store's server (started if none runs): it checks the name, the mount
 * point and the options as the CLI would (store/mounting.ts), so this is the whole command, one
 * request, and the CLI loads neither the store nor the implementation. False when the server is one
 * of an older tarstack, which does not know the request: the implementation then checks and asks.
 */
async function askedByName(kind: 'image' | 'instance', a: Args): Promise<boolean> {
  const name = a[kind];
  if (typeof name !== 'string' || a.all) return false;
  const [{ StorePaths, storeRoot }, { askServer }, { resolve }, { isMounted }, { UserError }] = await Promise.all([
    import('../store/paths.js'),
    import('../server/client.js'),
    import('node:path'),
    import('../util/mounts.js'),
    import('../util/errors.js'),
  ]);
  const root = storeRoot(a.store);
  const dir = typeof a.dir === 'string' ? resolve(a.dir) : undefined;
  // allowOther only when given: unset, root's default applies (store/mount-flags.ts).
  const flags = { tmp: a.tmp === true, nonempty: a.nonempty === true, ...(a.allowOther === true ? { allowOther: true } : {}), backend: process.env.TARSTACK_BACKEND as BackendName | undefined };
  let reply;
  try {
    reply = await askServer(new StorePaths(root), { op: 'mount-named', store: root, kind, name, ...(dir ? { dir } : {}), flags }, {
      start: true,
      beforeRetry: () => {
        if (dir && isMounted(dir)) throw new UserError(`the tarstack server ended while mounting at ${dir}: see \`tarstack status\``);
      },
    });
  } catch (err) {
    if (err instanceof Error && /^unknown request /.test(err.message)) return false;
    throw err;
  }
  if (!reply?.record) return false;
  process.stdout.write(reply.record.mountpoint + '\n');
  return true;
}
