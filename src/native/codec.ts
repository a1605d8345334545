// Typed access to the gzip/zstd/xz decoders of native-bindings (src/codec*.c). A handle decodes
// one request at a time; `decode` runs on the libuv threadpool, `decodeSync` on the caller's thread.
// Failures are Errors whose `code` is ECORRUPT, ETRUNC, EIO, ENOMEM, EUNSUPPORTED (or EBUSY/EBADF
// for a misused handle).
import { loadAddon } from './addon.js';

export type CodecHandle = { readonly __codec: unique symbol };
export type NativeStreamHandle = { readonly __stream: unique symbol };

export const enum CodecFormat {
  Gzip = 1,
  Zstd = 2,
  Xz = 3,
}

/** What a seek point resumes (codec.h's tsc_kind); xz blocks carry their check type in bits 8-15. */
export const enum PointKind {
  GzipMember = 1,
  GzipRaw = 2,
  ZstdFrame = 3,
  XzBlock = 4,
}

/** A seek point as the scan reports it: the window is raw (uncompressed), gzip mid-member only. */
export type ScanPoint = [inBit: number, out: number, kind: number, window: Buffer | null];

export interface Codec {
  open(format: CodecFormat, fd: number, compressedSize: number): CodecHandle;
  close(h: CodecHandle): void;
  /** Scan mode from the start of the file: points no closer than `spacing` (windowed) or `cheap` output bytes. */
  scanBegin(h: CodecHandle, spacing: number, cheap: number): void;
  takePoints(h: CodecHandle): ScanPoint[];
  inPos(h: CodecHandle): number;
  /** Compressed bytes per read from now on (4 KiB to 128 KiB, the default): a remote blob's decoders read less ahead. */
  setReadSize(h: CodecHandle, bytes: number): void;
  trailingGarbage(h: CodecHandle): boolean;
  /**
   * Seek to a point first unless kind is 0 (the window is the stored, deflated one), then fill `out`;
   * crcs (when given) receive crc32 of each `pieceSize` slice. Returns the bytes decoded, fewer only
   * at the end of the data.
   */
  decodeSync(h: CodecHandle, kind: number, inBit: number, window: Buffer | null, out: Buffer, pieceSize: number, crcs: Uint32Array | null): number;
  decode(h: CodecHandle, kind: number, inBit: number, window: Buffer | null, out: Buffer, pieceSize: number, crcs: Uint32Array | null): Promise<number>;
  /**
   * Decode ahead: the handle's decoder moves to a thread of its own, which decodes the Buffers
   * pushed, in order and back to back. `onReady` (serving) is called on Node's thread when one or
   * more are done; without it (indexing) aheadPop waits. Other calls on the handle throw EBUSY
   * until aheadStop or close; after aheadStop the decoder stands nowhere (seek first).
   */
  aheadStart(h: CodecHandle, onReady: (() => void) | null): void;
  /** Queue `out` (kept alive until popped); crcs as in decode. */
  aheadPush(h: CodecHandle, out: Buffer, pieceSize: number, crcs: Uint32Array | null): void;
  /** The oldest pushed Buffer's result once decoded (bytes, compressed bytes consumed, scan points), else null; throws its failure. */
  aheadPop(h: CodecHandle, wait: boolean): [n: number, inPos: number, points: ScanPoint[]] | null;
  aheadStop(h: CodecHandle): void;
  /** An 8 MiB Buffer for decode-ahead output, its memory reused only once the GC has collected it (no view left). */
  slab(): Buffer;
  /** Frees the slabs kept for reuse (no stream decoding). */
  slabsRelease(): void;
  /**
   * Streamed reads (stream.c): the handle's decoder, standing at piece `base` (decoded byte
   * `baseOff`) of a chunk whose pieces end at `limit` (byte `endOff`), decodes ahead on its own
   * thread into C memory, checking each piece against `crcs` (the chunk's [base, limit)); READs
   * registered with readStreamed are answered from it. The handle is busy until the stream is done;
   * `onDone(position)` tells where the decoder then stands (-1: seek first) when it stops by itself.
   */
  streamStart(h: CodecHandle, base: number, baseOff: number, limit: number, endOff: number, pieceSize: number, crcs: Uint32Array, onDone: (position: number) => void): NativeStreamHandle;
  /** No more decoding past what parked READs wait for: the position once stopped, -2 while they still decode (onDone follows). */
  streamEnd(s: NativeStreamHandle): number;
  /** Stop now; READs waiting get EIO (closing). */
  streamAbort(s: NativeStreamHandle): void;
  /** [pieces pushed up to, READs parked up to, READs answered or parked, the first piece it still serves]; position, reach and low -1 once done. */
  streamInfo(s: NativeStreamHandle): [position: number, reach: number, reads: number, low: number];
  /** A copy of piece `piece` if the stream holds it checked, else null. */
  streamCopy(s: NativeStreamHandle, piece: number): Buffer | null;
  /** zlib.crc32(data, crc), folded with carry-less multiplies where the CPU has them (crc32_fold.c): 2.5-8x as fast. */
  crc32(data: Uint8Array, crc: number): number;
  /** One zstd frame with content size and checksum, compressed on the threadpool. */
  zstdFrame(src: Buffer, level: number): Promise<Buffer>;
}

let codec: Codec | undefined;
export function loadCodec(): Codec {
  codec ??= (loadAddon() as { codec: Codec }).codec;
  return codec;
}

export interface CodecError extends Error {
  code: 'ECORRUPT' | 'ETRUNC' | 'EIO' | 'ENOMEM' | 'EUNSUPPORTED' | 'EBUSY' | 'EBADF' | 'ECANCELED' | 'EINVAL';
}

export function isCodecError(err: unknown): err is CodecError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' && /^E[A-Z]+$/.test((err as CodecError).code);
}
