// tarstack handles names and paths as "byte strings": each byte one latin1 char, so any byte but '/'
// and NUL round-trips. `b` turns one back into the bytes the kernel wants.
export const b = (s: string): Buffer => Buffer.from(s, 'latin1');
