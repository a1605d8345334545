// The layers of every image the server has mounted, opened once however many mounts use them: an
// image's index, its open tar and its decoders are shared, and closed with the last mount using
// them (each mount holds a lease; closing the lease is that mount's close). A shared layer is reused
// only while its tar (or directory) is still the file that was indexed; otherwise the next mount
// opens it afresh, which reports the change as a mount alone would, and the mounts already
// serving keep the open file (as a tar unlinked while mounted is still served). A directory layer
// is opened per mount: it reads the live directory, which a mount made later must see as it is then.
import { statSync } from 'node:fs';
import type { Layer } from '../layer/layer.js';
import type { ImageRecord, Images } from '../store/images.js';
import { openLayer } from '../store/open-image.js';
import { forwarding } from '../util/forward.js';

interface Shared {
  layer: Layer;
  leases: number;
}

export class SharedLayers {
  private readonly byImage = new Map<string, Shared>();
  private leases = 0;

  /** One lease per layer of `stack`, topmost first (what openStack returns, shared). */
  open(images: Images, stack: ImageRecord[]): Layer[] {
    const out: Layer[] = [];
    try {
      for (const r of stack) out.push(this.lease(images, r));
      return out;
    } catch (err) {
      for (const l of out) l.close();
      throw err;
    }
  }

  stats(): { layers: number; leases: number } {
    return { layers: this.byImage.size, leases: this.leases };
  }

  private lease(images: Images, r: ImageRecord): Layer {
    if (r.layer.kind === 'dir') return openLayer(images, r, 'sample');
    let s = this.byImage.get(r.id);
    if (s && !unchanged(r)) {
      this.byImage.delete(r.id); // its mounts keep it; the next one gets the check a fresh open makes
      s = undefined;
    }
    if (!s) {
      s = { layer: openLayer(images, r, 'sample'), leases: 0 };
      this.byImage.set(r.id, s);
    }
    const shared = s;
    shared.leases++;
    this.leases++;
    let closed = false;
    return leaseOf(shared.layer, () => {
      if (closed) return;
      closed = true;
      this.leases--;
      if (--shared.leases > 0) return;
      if (this.byImage.get(r.id) === shared) this.byImage.delete(r.id);
      shared.layer.close();
    });
  }
}

/** The tar at the image's path is still the one indexed (one stat, no reading). */
function unchanged(r: ImageRecord): boolean {
  if (r.layer.remote) return true; // a blob named by its digest, every chunk checked as it is read
  const st = statSync(r.layer.tar, { bigint: true, throwIfNoEntry: false });
  if (!st) return false;
  const was = r.layer.identity;
  return Number(st.size) === was.size && st.mtimeNs.toString() === was.mtimeNs && Number(st.ino) === was.ino;
}

/** A layer whose close() is `release`: in every other respect the layer itself. */
export function leaseOf(layer: Layer, release: () => void): Layer {
  return forwarding(layer, { close: release });
}
