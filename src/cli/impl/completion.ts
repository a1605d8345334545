// Shell completion. `tarstack completion` prints a bash or zsh function that, at each TAB, runs
// `tarstack __complete WORDS…` (the words after `tarstack`, the last one being completed) and offers
// the lines it prints; nothing printed means the shell completes file names. The words are read
// against the command definitions themselves (their builders run on a recorder, not on yargs), so
// completion knows every command, option and choice help shows, and adds the names of images,
// instances and stackpoints where a positional or option takes one. The store is only read.
import { commands, globalOptions } from '../commands.js';

type Kind = 'image' | 'instance' | 'stackpoint';

/** What a positional or option named so takes; one described as "name of the new …" takes a new name. */
const KIND_OF: Record<string, Kind> = { image: 'image', parent: 'image', names: 'image', instance: 'instance', target: 'instance', sp: 'stackpoint' };

interface Positional {
  key: string;
  variadic: boolean;
  choices?: string[];
  kind?: Kind;
}

interface Option {
  key: string;
  takesValue: boolean;
  choices?: string[];
  kind?: Kind;
}

interface Spec {
  commands: Map<string, Spec>;
  positionals: Positional[];
  options: Map<string, Option>;
}

const newSpec = (positionals: Positional[] = []): Spec => ({ commands: new Map(), positionals, options: new Map() });

interface OptionDef {
  type?: string;
  choices?: readonly string[];
  alias?: string | string[];
  describe?: string;
}

type Builder = (y: never) => unknown;
interface ModuleDef {
  command: string | string[];
  builder?: Builder;
}

/** A yargs-shaped object that records what a builder declares into `spec` (every other call is a no-op). */
function recorder(spec: Spec): unknown {
  const proxy: unknown = new Proxy(
    {},
    {
      get: (_t, method) =>
        (...args: unknown[]) => {
          if (method === 'command') addCommand(spec, args);
          else if (method === 'option') addOption(spec, args[0] as string, (args[1] ?? {}) as OptionDef);
          else if (method === 'positional') describePositional(spec, args[0] as string, (args[1] ?? {}) as OptionDef);
          return proxy;
        },
    },
  );
  return proxy;
}

function addCommand(spec: Spec, args: unknown[]): void {
  const [first, , builder] = args;
  if (Array.isArray(first) && typeof first[0] === 'object') return void first.forEach((m: ModuleDef) => addCommand(spec, [m]));
  const def: ModuleDef = typeof first === 'object' && !Array.isArray(first) ? (first as ModuleDef) : { command: first as string | string[], builder: builder as Builder | undefined };
  const [main, ...aliases] = ([] as string[]).concat(def.command);
  const words = main.split(/\s+/);
  const positionals = words.slice(1).map((w) => ({ key: w.replace(/[<>[\].]/g, ''), variadic: w.includes('..') }));
  const sub = newSpec(positionals);
  if (typeof def.builder === 'function') def.builder(recorder(sub) as never);
  for (const name of [words[0], ...aliases.map((a) => a.split(/\s+/)[0])]) spec.commands.set(name, sub);
}

function addOption(spec: Spec, key: string, def: OptionDef): void {
  const option: Option = { key, takesValue: def.type !== 'boolean', ...(def.choices ? { choices: [...def.choices] } : {}), ...(isNew(def) ? {} : kindOf(key)) };
  for (const name of [key, ...([] as string[]).concat(def.alias ?? [])]) spec.options.set(name, option);
}

function describePositional(spec: Spec, key: string, def: OptionDef): void {
  const p = spec.positionals.find((x) => x.key === key);
  if (!p) return;
  if (def.choices) p.choices = [...def.choices];
  Object.assign(p, isNew(def) ? {} : kindOf(key));
}

const isNew = (def: OptionDef): boolean => /^name of the new\b/.test(def.describe ?? '');
const kindOf = (key: string): { kind?: Kind } => (KIND_OF[key] ? { kind: KIND_OF[key] } : {});

function rootSpec(): Spec {
  const root = newSpec();
  const y = recorder(root) as never;
  globalOptions(y);
  commands(y);
  root.options.set('help', { key: 'help', takesValue: false });
  root.options.set('h', root.options.get('help')!);
  root.options.set('version', { key: 'version', takesValue: false });
  root.options.set('V', root.options.get('version')!);
  return root;
}

const dashed = (name: string): string => (name.length === 1 ? `-${name}` : `--${name}`);

/** The completions of the last word, given the words before it. */
export async function completions(words: string[]): Promise<string[]> {
  const current = words.length ? words[words.length - 1] : '';
  const before = words.slice(0, -1);
  const root = rootSpec();
  const option = (spec: Spec, name: string): Option | undefined => spec.options.get(name) ?? root.options.get(name);
  let spec = root;
  let consumed = 0; // positionals given to the innermost command
  let pending: Option | undefined; // an option whose value comes next
  let store: string | undefined;
  for (const w of before) {
    if (w === '=') continue; // bash splits --opt=value at '='
    if (pending) {
      if (pending.key === 'store') store = w;
      pending = undefined;
    } else if (w.startsWith('-') && w !== '-') {
      const [name, value] = w.replace(/^--?/, '').split(/=(.*)/);
      const o = option(spec, name);
      if (o?.key === 'store' && value !== undefined) store = value;
      if (o?.takesValue && value === undefined) pending = o;
    } else if (consumed === 0 && spec.commands.has(w)) {
      spec = spec.commands.get(w)!;
    } else consumed++;
  }
  const word = current === '=' ? '' : current;
  const matching = (list: Iterable<string>): string[] => [...new Set(list)].filter((c) => c.startsWith(word)).sort();
  if (pending) return matching(pending.choices ?? (pending.kind ? await names(pending.kind, store) : []));
  if (word.startsWith('-')) return matching([...spec.options.values(), ...root.options.values()].filter((o) => o.key.length > 1).map((o) => dashed(o.key)));
  if (consumed === 0 && spec.commands.size) return matching(spec.commands.keys());
  const last = spec.positionals[spec.positionals.length - 1];
  const p = spec.positionals[consumed] ?? (last?.variadic ? last : undefined);
  if (!p) return [];
  return matching(p.choices ?? (p.kind ? await names(p.kind, store) : []));
}

/** Names in the store; a store that is missing or damaged has none (completion never complains). */
async function names(kind: Kind, store: string | undefined): Promise<string[]> {
  try {
    const { storeRoot, StorePaths } = await import('../../store/paths.js');
    const paths = new StorePaths(storeRoot(store));
    if (kind === 'image') return new (await import('../../store/images.js')).Images(paths).list().map((r) => r.name);
    if (kind === 'instance') return new (await import('../../store/instances.js')).Instances(paths).list().map((r) => r.name);
    return new (await import('../../store/stackpoints.js')).Stackpoints(paths).list().map((r) => r.name);
  } catch {
    return [];
  }
}

const BASH = `# bash completion for tarstack: \`source <(tarstack completion bash)\` in ~/.bashrc
_tarstack_complete() {
  local IFS=$'\\n'
  COMPREPLY=($(tarstack __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -o bashdefault -F _tarstack_complete tarstack
`;

const ZSH = `#compdef tarstack
# zsh completion for tarstack: \`source <(tarstack completion zsh)\` in ~/.zshrc (after compinit)
_tarstack() {
  local -a candidates
  candidates=("\${(@f)$(tarstack __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  candidates=(\${candidates:#})
  if (( \${#candidates} )); then compadd -a candidates; else _files; fi
}
compdef _tarstack tarstack
`;

export function printScript(shell: 'bash' | 'zsh' | undefined): void {
  const zsh = shell ? shell === 'zsh' : /zsh/.test(process.env.SHELL ?? '');
  process.stdout.write(zsh ? ZSH : BASH);
}

export async function printCompletions(words: string[]): Promise<void> {
  const list = await completions(words);
  process.stdout.write(list.length ? list.join('\n') + '\n' : '');
}
