// The layer part of an image record for an indexed tar: its counts and compression, from the index.
// Apart from image-layers.ts so that a command that only records a fetched index (image pull) loads
// no indexer.
import { NodeFlag, type IndexData } from '../tar/index-data.js';
import { accessNote, SeekIndex } from '../tar/seek-table.js';
import type { ImageRecord, LayerCompression } from './images.js';

/** The layer part of an image record for a tar indexed as `data`, stored at `tar`. */
export function tarLayerRecord(data: IndexData, tar: string, copied: boolean, recompressedFrom?: string): ImageRecord['layer'] {
  const compression = compressionOf(data, recompressedFrom);
  return { tar, copied, identity: data.source, nodes: data.nodeCount, ...countNames(data), members: data.members.count, warnings: data.warnings.length, ...(compression ? { compression } : {}) };
}

/** The names below the root, whiteouts apart; nodes that are no name (hard-link data a later member replaced) are not counted. */
function countNames(d: IndexData): { entries: number; whiteouts: number } {
  let entries = 0;
  let whiteouts = 0;
  for (let id = 1; id < d.nodeCount; id++) {
    if (d.flags[id] & NodeFlag.Whiteout) whiteouts++;
    else if (!(d.flags[id] & NodeFlag.Detached)) entries++;
  }
  return { entries, whiteouts };
}

function compressionOf(d: IndexData, recompressedFrom: string | undefined): LayerCompression | undefined {
  if (!d.seek) return undefined;
  const { randomAccess, note } = accessNote(d.seek, new SeekIndex(d.seek).maxChunk());
  return { format: d.seek.format, decodedBytes: d.seek.size, seekPoints: d.seek.count, randomAccess, note, ...(recompressedFrom ? { recompressedFrom } : {}) };
}
