// Operations as another user, in a child the permission cases start with that user's uid and gid:
//   node as-other.js 'JSON [[op, path, path2?], …]'   prints a JSON array: "ok" or the errno per op
// Small on purpose (it starts once per batch, on machines that may be busy): fs and the addon only.
import fs from 'node:fs';
import { loadSys, UTIME_NOW } from '../../src/native/sys.js';

function op([name, p, q]: string[]): void {
  const path = p!;
  switch (name) {
    case 'read': return void fs.readFileSync(path);
    case 'write': return void fs.writeFileSync(path, 'other', { flag: 'r+' });
    case 'stat': return void fs.statSync(path);
    case 'readdir': return void fs.readdirSync(path);
    case 'create': return void fs.writeFileSync(path, 'other', { flag: 'wx' });
    case 'unlink': return void fs.unlinkSync(path);
    case 'rename': return void fs.renameSync(path, q!);
    case 'chmod': return void fs.chmodSync(path, 0o777);
    case 'chown': return void fs.chownSync(path, process.getuid!(), process.getgid!());
    case 'utimes-now': return void loadSys().utimens(path, 0, UTIME_NOW, 0, UTIME_NOW); // write permission suffices
    case 'utimes': return void fs.utimesSync(path, 1000, 1000); // explicit times: the owner only
    case 'setxattr': return void loadSys().setxattr(path, 'user.other', Buffer.from('1'), 0);
    default: throw new Error(`no op ${name}`);
  }
}

const out = (JSON.parse(process.argv[2] ?? '[]') as string[][]).map((o) => {
  try {
    op(o);
    return 'ok';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code || !/^E/.test(code)) throw err;
    return code;
  }
});
process.stdout.write(JSON.stringify(out) + '\n');
