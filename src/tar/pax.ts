// PAX extended header records (POSIX.1-2001 pax(1) "pax Extended Header"): "<len> <key>=<value>\n",
// where <len> counts the whole record. Values stay raw bytes: paths are byte strings (latin1) so a
// name round-trips whatever its encoding (hdrcharset=BINARY included).

export type PaxRecords = Array<[key: string, value: Buffer]>;

/** Parse a PAX body; throws on a malformed record so the scanner can report the member. */
export function parsePax(body: Buffer): PaxRecords {
  const out: PaxRecords = [];
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break; // NUL padding after the last record
    let sp = pos;
    let len = 0;
    while (sp < body.length && body[sp] >= 0x30 && body[sp] <= 0x39) len = len * 10 + (body[sp++] - 0x30);
    if (sp === pos || body[sp] !== 0x20 || len <= sp - pos + 1 || pos + len > body.length) {
      throw new Error(`malformed PAX record at byte ${pos}`);
    }
    const end = pos + len; // one past the record's trailing newline
    if (body[end - 1] !== 0x0a) throw new Error(`PAX record at byte ${pos} does not end in a newline`);
    const eq = body.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= end) throw new Error(`PAX record at byte ${pos} has no '='`);
    out.push([body.toString('latin1', sp + 1, eq), body.subarray(eq + 1, end - 1)]);
    pos = end;
  }
  return out;
}

/** A decimal time with an optional fraction ("1700000000.123456789", "-1.5") as exact seconds and nanoseconds. */
export function parsePaxTime(text: string): { sec: number; nsec: number } | undefined {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text.trim());
  if (!m) return undefined;
  let sec = Number(m[2]);
  let nsec = Number(((m[3] ?? '') + '000000000').slice(0, 9));
  if (m[1] === '-') {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return Number.isSafeInteger(sec) ? { sec, nsec } : undefined;
}

/** A non-negative decimal integer record value; undefined when it is not one. */
export function parsePaxInt(text: string): number | undefined {
  if (!/^\s*\d+\s*$/.test(text)) return undefined;
  const v = Number(text);
  return Number.isSafeInteger(v) ? v : undefined;
}

/** LIBARCHIVE.xattr.<name> carries its name %-encoded (RFC 3986) and its value in base64. */
export function decodeLibarchiveXattrName(encoded: string): string {
  return encoded.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
