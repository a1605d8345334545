// `tarstack completion [shell]`: definition only. The script it prints calls back
// `tarstack __complete WORDS…` at each TAB (main.ts routes that before yargs; impl/completion.ts).
import type { Argv, CommandModule } from 'yargs';
import type { GlobalOptions } from './context.js';
import type { Args } from './handler.js';

export const completionCommand: CommandModule<GlobalOptions, Args> = {
  command: 'completion [shell]',
  describe: 'Print a bash or zsh completion script',
  builder: (y: Argv<GlobalOptions>) =>
    y
      .positional('shell', { choices: ['bash', 'zsh'] as const, describe: 'the shell (default: the one $SHELL names)' })
      .example('source <($0 completion)', 'in ~/.bashrc or ~/.zshrc: complete commands, options and names at TAB')
      .example('$0 completion bash > /etc/bash_completion.d/tarstack', 'for every user'),
  handler: async (a: Args) => (await import('./impl/completion.js')).printScript(a.shell as 'bash' | 'zsh' | undefined),
};
