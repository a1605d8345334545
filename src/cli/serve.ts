// `tarstack serve`: the store's mount server, which `mount` starts on first use. Definitions only;
// the handler loads lazily.
import type { Argv, CommandModule } from 'yargs';
import type { GlobalOptions } from './context.js';
import { run, type Args } from './handler.js';

export const serveCommand: CommandModule<GlobalOptions, Args> = {
  command: 'serve',
  describe: "The store's mount server: started by the first mount; --foreground runs it here (systemd), --stop ends it",
  builder: (y: Argv<GlobalOptions>) =>
    y
      .option('foreground', { type: 'boolean', describe: 'serve in this process until stopped (SIGTERM unmounts everything); with systemd socket activation, until idle' })
      .option('stop', { type: 'boolean', describe: 'unmount every mount of the store (detaching busy ones) and end the server' })
      .conflicts('foreground', 'stop')
      .example('$0 serve', "start the store's server if needed; say its pid, mounts and memory")
      .example('$0 serve --foreground', 'for a systemd unit (ExecStart=); a tarstack.socket unit may hand it its socket'),
  handler: run(() => import('./impl/serve.js'), 'serve'),
};
