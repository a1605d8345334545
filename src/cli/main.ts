#!/usr/bin/env node
// tarstack's command line: wires the noun modules and funnels every error into one line,
// `tarstack: <message>`, with a non-zero exit; a stack trace only with --verbose.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { UserError } from '../util/errors.js';
import { imageCommand } from './image.js';
import { instanceCommand, instanceVerbs } from './instance.js';
import { stackpointCommand } from './stackpoint.js';
import { stackCommands } from './stack.js';
import { serveCommand } from './serve.js';

const argv = hideBin(process.argv);
const verbose = argv.includes('--verbose') || !!process.env.TARSTACK_DEBUG;

function fail(message: string, code: number, stack?: string): never {
  process.stderr.write(`tarstack: ${message}\n`);
  if (verbose && stack) process.stderr.write(stack + '\n');
  process.exit(code);
}

process.on('unhandledRejection', (err) => report(err));

function report(err: unknown): never {
  if (err instanceof UserError) fail(err.message, err.exitCode, err.stack);
  const e = err as NodeJS.ErrnoException;
  if (e?.code && e.syscall) fail(`${e.syscall} ${e.path ?? ''}: ${e.code}`.replace(' :', ':'), 1, e.stack);
  fail(`internal error: ${e?.message ?? String(err)} (run with --verbose for details)`, 70, e?.stack);
}

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
    .command(serveCommand)
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
