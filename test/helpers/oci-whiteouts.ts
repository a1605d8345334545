// Converts OCI whiteouts in an extracted layer into kernel overlayfs ones, in place:
// `.wh.NAME` → char device 0/0 named NAME; `.wh..wh..opq` → trusted.overlay.opaque=y on its dir.
// Semantics per the OCI image spec, "Whiteouts": they hide lower layers only, never same-layer siblings.
import fs from 'node:fs';
import path from 'node:path';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../../src/tar/names.js';
import { execOk } from './exec.js';


function markOpaque(dir: string): void {
  execOk(['setfattr', '-n', 'trusted.overlay.opaque', '-v', 'y', dir]);
}

/** Sets only the mtime, to the nanosecond (touch reads "@-1.25" as the real number -1.25). */
function setMtimeNs(p: string, ns: bigint): void {
  const abs = ns < 0n ? -ns : ns;
  const stamp = `${ns < 0n ? '-' : ''}${abs / 1_000_000_000n}.${String(abs % 1_000_000_000n).padStart(9, '0')}`;
  execOk(['touch', '-m', '-h', '-d', `@${stamp}`, p]);
}

/** Walks the layer (paths must be valid UTF-8: our layer fixtures are) and rewrites every marker,
 *  keeping each directory's mtime as the tar set it (removing a marker would bump it). */
export function convertOciWhiteouts(layerDir: string): void {
  const mtimeNs = fs.lstatSync(layerDir, { bigint: true }).mtimeNs;
  const names = fs.readdirSync(layerDir);
  let changed = false;
  for (const name of names) {
    const p = path.join(layerDir, name);
    if (name === OPAQUE_MARKER) {
      changed = true;
      fs.unlinkSync(p);
      markOpaque(layerDir);
    } else if (name.startsWith(WHITEOUT_PREFIX)) {
      changed = true;
      fs.unlinkSync(p);
      const hidden = path.join(layerDir, name.slice(WHITEOUT_PREFIX.length));
      const same = fs.lstatSync(hidden, { throwIfNoEntry: false });
      // The same layer also has NAME: it stays; if it is a dir, nothing from below may show through it.
      if (same?.isDirectory()) markOpaque(hidden);
      else if (!same) execOk(['mknod', hidden, 'c', '0', '0']);
    }
  }
  for (const name of fs.readdirSync(layerDir)) {
    const p = path.join(layerDir, name);
    if (fs.lstatSync(p).isDirectory()) convertOciWhiteouts(p);
  }
  if (changed) setMtimeNs(layerDir, mtimeNs);
}
