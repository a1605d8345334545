#!/usr/bin/env node
// tarstack's command line: wires the noun modules and funnels every error into one line,
// `tarstack: <message>`, with a non-zero exit; a stack trace only with --verbose (util/error-funnel.ts).
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { errorFunnel } from '../util/error-funnel.js';
import { imageCommand } from './image.js';
import { instanceCommand, instanceVerbs } from './instance.js';
import { stackpointCommand } from './stackpoint.js';
import { stackCommands } from './stack.js';

const argv = hideBin(process.argv);
const { fail, report } = errorFunnel('tarstack', { verbose: argv.includes('--verbose') || !!process.env.TARSTACK_DEBUG, unexpected: 'internal' });

process.on('unhandledRejection', (err) => report(err));

try {
  await yargs(argv)
    .scriptName('tarstack')
    .usage('$0 <command>\n\nWritable copy-on-write views of tar files, served in place through FUSE.')
    .option('store', { type: 'string', global: true, describe: 'store directory (default: $TARSTACK_HOME, /var/lib/tarstack for root, else ~/.local/share/tarstack)' })
    .option('json', { type: 'boolean', global: true, describe: 'machine-readable output' })
    .option('verbose', { type: 'boolean', global: true, describe: 'show stack traces of internal errors' })
    .command(imageCommand)
    .command(instanceCommand)
    .command(instanceVerbs)
    .command(stackpointCommand)
    .command(stackCommands)
    .demandCommand(1, 'name a command (see --help)')
    .strict()
    .help()
    .version()
    .fail((msg, err) => {
      if (err) report(err);
      fail(`${msg} (see --help)`, 2);
    })
    .parseAsync();
} catch (err) {
  report(err);
}
