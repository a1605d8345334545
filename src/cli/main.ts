#!/usr/bin/env node
// tarstack's command line: wires the noun modules and funnels every error into one line,
// `tarstack: <message>`, with a non-zero exit; a stack trace only with --verbose (util/error-funnel.ts).
// Nothing but yargs and the command definitions loads before a command runs (see handler.ts).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import { errorFunnel } from '../util/error-funnel.js';
import type { GlobalOptions } from './context.js';
import { commands, globalOptions } from './commands.js';

const argv = process.argv.slice(2);
const { fail, report } = errorFunnel('tarstack', { verbose: argv.includes('--verbose') || !!process.env.TARSTACK_DEBUG, unexpected: 'internal' });

process.on('unhandledRejection', (err) => report(err));

/** The terminal's width for help (COLUMNS when stdout is not a terminal, e.g. piped to a pager), else 80. */
function helpWidth(): number {
  const cols = process.stdout.isTTY ? process.stdout.columns : Number(process.env.COLUMNS);
  return cols > 0 ? cols : 80;
}

function program(): Argv<GlobalOptions> {
  // yargs' ESM build lays out help with cliui's stand-in for wrap-ansi, which cuts lines every N
  // characters, mid-word ("served in place t / hrough FUSE"); its CommonJS build wraps at words.
  const yargs = createRequire(import.meta.url)('yargs/yargs') as (args: string[]) => Argv<GlobalOptions>;
  const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
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
      fail(usageMistake(msg, (y as unknown as YargsInternals).getInternalMethods().getContext()), 2);
    });
  return y;
}

interface YargsInternals {
  getInternalMethods(): { getContext(): { commands: string[]; fullCommands: string[] } };
}

/** yargs' complaint as one line that says what was wrong and where the command's help is. */
function usageMistake(msg: string, at: { commands: string[]; fullCommands: string[] }): string {
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

try {
  // The completion script's call at each TAB: answered without yargs (impl/completion.ts).
  if (argv[0] === '__complete') await (await import('./impl/completion.js')).printCompletions(argv.slice(1));
  else await program().parseAsync();
} catch (err) {
  report(err);
}
