// How the tar reader reports an archive it cannot serve: a TarFormatError with the byte offset of the
// damage, its message one line, with member names made printable.
import { fromByteString } from '../util/latin1.js';

export class TarFormatError extends Error {
  constructor(message: string, readonly offset: number) {
    super(message);
  }
}

/** A name fit for one line of a message: control bytes escaped. */
export function printable(name: string): string {
  return fromByteString(name).replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
