// The slice of fuse-native 2.2.6's API that src/fuse/fuse-native-backend.ts uses.
declare module 'fuse-native' {
  type Cb = (err: number, ...rest: unknown[]) => void;
  interface FuseOptions {
    fsname?: string;
    kernelCache?: boolean;
    entryTimeout?: number;
    attrTimeout?: number;
    timeout?: number | false;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    debug?: boolean;
  }
  class Fuse {
    constructor(mnt: string, ops: Record<string, (...args: any[]) => void>, opts?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
  }
  export default Fuse;
  export type { Cb };
}
