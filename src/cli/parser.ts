// The full command line parser: yargs over every command definition (commands.ts), with help,
// completion of mistakes into one line each, and strict checks. main.ts loads it for every command
// line the fast path (fast-path.ts) leaves to it.
import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import type { ErrorFunnel } from '../util/error-funnel.js';
import type { GlobalOptions } from './context.js';
import { commands, globalOptions } from './commands.js';

/** The terminal's width for help (COLUMNS when stdout is not a terminal, e.g. piped to a pager), else 80. */
function helpWidth(): number {
  const cols = process.stdout.isTTY ? process.stdout.columns : Number(process.env.COLUMNS);
  return cols > 0 ? cols : 80;
}

export function program(argv: string[], version: string, { fail, report }: ErrorFunnel): Argv<GlobalOptions> {
  // yargs' ESM build lays out help with cliui's stand-in for wrap-ansi, which cuts lines every N
  // characters, mid-word ("served in place t / hrough FUSE"); its CommonJS build wraps at words.
  const yargs = createRequire(import.meta.url)('yargs/yargs') as (args: string[]) => Argv<GlobalOptions>;
  const y: Argv<GlobalOptions> = commands(globalOptions(yargs(argv).scriptName('tarstack').usage('$0 <command>\n\nWritable copy-on-write views of tar files, served in place through FUSE.')))
    .example('$0 image add rootfs.tar', 'index a tar in place as image "rootfs"')
    .example('$0 create work rootfs && cd "$($0 mount work | tail -1)"', 'a writable instance of it, mounted')
    .epilog('Each command has --help with examples; the manual is `man tarstack`.')
    .demandCommand(1, 'name a command')
    .recommendCommands()
    .strict()
    .help()
    .alias('help', 'h')
    .version(version)
    .alias('version', 'V')
    .wrap(helpWidth())
    .fail((msg, err) => {
      if (err) report(err);
      fail(usageMistake(argv, msg, (y as unknown as YargsInternals).getInternalMethods().getContext()), 2);
    });
  return y;
}

interface YargsInternals {
  getInternalMethods(): { getContext(): { commands: string[]; fullCommands: string[] } };
}

/** yargs' complaint as one line that says what was wrong and where the command's help is. */
function usageMistake(argv: string[], msg: string, at: { commands: string[]; fullCommands: string[] }): string {
  const help = `see \`tarstack ${at.commands.map((c) => `${c} `).join('')}--help\``;
  if (/^Not enough non-option arguments/.test(msg)) {
    const last = at.fullCommands[at.fullCommands.length - 1] ?? '';
    if (last.endsWith(' <verb>')) return `name ${/^[aeiou]/.test(last) ? 'an' : 'a'} ${last.split(' ')[0]} verb (${help})`;
    const usage = at.fullCommands.map((c, i) => (i < at.fullCommands.length - 1 ? c.split(' ')[0] : c)).join(' ');
    return `missing arguments: tarstack ${usage} (${help})`;
  }
  const unknown = /^Unknown arguments?: (.*)$/.exec(msg);
  if (unknown) {
    // yargs names an unknown option without its dashes: give them back as they were typed.
    const words = unknown[1].split(', ').map((w) => argv.find((a) => a === `--${w}` || a.startsWith(`--${w}=`) || a === `-${w}`)?.split('=')[0] ?? w);
    return `unknown argument${words.length > 1 ? 's' : ''}: ${words.join(', ')} (${help})`;
  }
  const invalid = [...msg.matchAll(/Argument: (\S+), Given: (.*?), Choices: (.*)/g)];
  if (invalid.length) return `${invalid.map(([, key, given, choices]) => `${key} ${given}: choose ${choices.replace(/, ([^,]*)$/, ' or $1')}`).join('; ')} (${help})`;
  return `${msg.replace(/^[A-Z](?=[a-z])/, (c) => c.toLowerCase()).replace(/\n/g, ' ')} (${help})`;
}
