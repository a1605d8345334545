#!/usr/bin/env node
// tarstack's command line: funnels every error into one line, `tarstack: <message>`, with a
// non-zero exit; a stack trace only with --verbose (util/error-funnel.ts). The hottest commands
// said plainly run without yargs (fast-path.ts); every other command line goes to the full parser
// (parser.ts). Nothing else loads before a command runs (see handler.ts).
import { readFileSync } from 'node:fs';
import { errorFunnel } from '../util/error-funnel.js';
import { fastParse, runFast } from './fast-path.js';

const argv = process.argv.slice(2);
const funnel = errorFunnel('tarstack', { verbose: argv.includes('--verbose') || !!process.env.TARSTACK_DEBUG, unexpected: 'internal' });

process.on('unhandledRejection', (err) => funnel.report(err));

const version = (): string => (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

try {
  const fast = fastParse(argv);
  // The completion script's call at each TAB: answered without yargs (impl/completion.ts).
  if (argv[0] === '__complete') await (await import('./impl/completion.js')).printCompletions(argv.slice(1));
  else if (fast) await runFast(fast, version);
  else await (await import('./parser.js')).program(argv, version(), funnel).parseAsync();
} catch (err) {
  funnel.report(err);
}
