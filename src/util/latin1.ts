// tarstack handles names and paths as "byte strings": each byte one latin1 char, so any byte but '/'
// and NUL round-trips. `b` turns one back into the bytes the kernel wants.
export const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** A string as Node gives it (a path from argv, a UTF-8 name) as the byte string of its UTF-8 bytes. */
export const toByteString = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');
/** A byte string's bytes read as UTF-8 (for messages and JSON; an invalid sequence becomes U+FFFD). */
export const fromByteString = (s: string): string => Buffer.from(s, 'latin1').toString('utf8');
