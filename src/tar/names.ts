// Member-name confinement, as GNU tar 1.34 extracts: leading '/' is stripped (reported once), a
// name with a '..' component is skipped (reported), '.' and empty components vanish. So no member
// path, and no hard-link target, can ever name anything outside the image's tree.

export type NormalisedName =
  | { ok: true; components: string[]; strippedPrefix: string | undefined }
  | { ok: false; reason: string };

export function normaliseName(raw: string): NormalisedName {
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

/** OCI layer whiteouts (image-spec layer.md): `.wh.NAME` hides NAME below, `.wh..wh..opq` makes the directory opaque. */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
