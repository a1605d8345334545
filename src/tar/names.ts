// Member-name confinement, as GNU tar 1.34 extracts: leading '/' is stripped (reported once), a
// name with a '..' component is skipped (reported), '.' and empty components vanish. So no member
// path, and no hard-link target, can ever name anything outside the image's tree.

export type NormalisedName =
  | { ok: true; components: string[]; strippedPrefix: string | undefined }
  | { ok: false; reason: string };

/** The longest name component Linux takes (NAME_MAX): longer ones are skipped. */
export const NAME_MAX = 255;

/** A '.' or '..' component anywhere in a name. */
const DOT_COMPONENT = /(?:^|\/)\.\.?(?:\/|$)/;

/** The common name: no leading or doubled '/', no '.' or '..' component; its components are as written. */
export function isPlainName(raw: string): boolean {
  return raw.length > 0 && raw.charCodeAt(0) !== 0x2f && raw.indexOf('//') < 0 && !DOT_COMPONENT.test(raw);
}

/**
 * The last component of `raw` when `raw` names an entry directly in `dir` (a plain name's directory
 * part, as written) and that component is plain, at most NAME_MAX bytes; else undefined.
 */
export function nameIn(dir: string, raw: string): string | undefined {
  const start = dir.length + 1;
  if (raw.length <= start || raw.charCodeAt(dir.length) !== 0x2f || !raw.startsWith(dir)) return undefined;
  const end = raw.charCodeAt(raw.length - 1) === 0x2f ? raw.length - 1 : raw.length; // a directory's trailing '/'
  const slash = raw.indexOf('/', start);
  if (end === start || end - start > NAME_MAX || (slash >= 0 && slash < end)) return undefined;
  if (raw.charCodeAt(start) === 0x2e && (end === start + 1 || (end === start + 2 && raw.charCodeAt(start + 1) === 0x2e))) return undefined; // '.', '..'
  return raw.slice(start, end);
}

export function normaliseName(raw: string): NormalisedName {
  // the common name: split as it is
  if (isPlainName(raw)) {
    const components = raw.split('/');
    if (components[components.length - 1] === '') components.pop(); // a directory's trailing '/'
    return { ok: true, components, strippedPrefix: undefined };
  }
  let start = 0;
  while (start < raw.length && raw.charCodeAt(start) === 0x2f) start++;
  const strippedPrefix = start > 0 ? raw.slice(0, start) : undefined;
  const components: string[] = [];
  for (const part of raw.slice(start).split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return { ok: false, reason: "member name contains '..'" };
    components.push(part);
  }
  return { ok: true, components, strippedPrefix };
}

/**
 * A hard link's target, as GNU tar 1.34 reads it (safer_name_suffix for link targets): leading '/'
 * and everything up to the last '..' component are stripped, so `../outside` links `outside`.
 */
export function normaliseLinkTarget(raw: string): NormalisedName {
  const parts = raw.split('/');
  const lastDotDot = parts.lastIndexOf('..');
  const rest = lastDotDot >= 0 ? parts.slice(lastDotDot + 1).join('/') : raw;
  const norm = normaliseName(rest);
  return norm.ok && lastDotDot >= 0 ? { ...norm, strippedPrefix: parts.slice(0, lastDotDot + 1).join('/') + '/' } : norm;
}

/** OCI layer whiteouts (image-spec layer.md): `.wh.NAME` hides NAME below, `.wh..wh..opq` makes the directory opaque. */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
