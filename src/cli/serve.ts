// `tarstack serve`: the store's mount server, which `mount` starts on first use. Definitions only;
// the handler loads lazily.
import type { Argv, CommandModule } from 'yargs';
import { Context, type GlobalOptions } from './context.js';

type A = GlobalOptions & { foreground?: boolean; stop?: boolean };

export const serveCommand: CommandModule<GlobalOptions, A> = {
  command: 'serve',
  describe: "The store's mount server: started by the first mount; --foreground runs it here (systemd), --stop ends it",
  builder: (y: Argv<GlobalOptions>) =>
    y
      .option('foreground', { type: 'boolean', describe: 'serve in this process until stopped (SIGTERM unmounts everything); with systemd socket activation, until idle' })
      .option('stop', { type: 'boolean', describe: 'unmount every mount of the store (detaching busy ones) and end the server' })
      .conflicts('foreground', 'stop'),
  handler: async (a: A) => (await import('./impl/serve.js')).serve(new Context(a), a),
};
