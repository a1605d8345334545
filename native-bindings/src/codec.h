// Decoders for compressed tars served in place (gzip, zstd, xz), apart from N-API so they can be
// driven from a worker thread: each reads its input with pread on its own dup of the archive fd,
// starts at a seek point, and in scan mode records the seek points of one sequential pass.
#ifndef TSC_CODEC_H
#define TSC_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum tsc_format { TSC_GZIP = 1, TSC_ZSTD = 2, TSC_XZ = 3 };

// What a seek point resumes. `in_bit` is a bit offset in the compressed file for gzip mid-member
// points (a deflate block boundary), else a byte offset * 8.
enum tsc_kind {
  TSC_GZIP_MEMBER = 1, // a gzip member header: no window needed
  TSC_GZIP_RAW = 2,    // inside a member at a deflate block boundary: needs the 32 KiB window
  TSC_ZSTD_FRAME = 3,  // a zstd frame (or skippable frame) header
  TSC_XZ_BLOCK = 4,    // an xz block header; bits 8..15 carry the stream's check type
};

// Error classes, mapped to JS error codes by codec.c.
enum tsc_err { TSC_OK = 0, TSC_ECORRUPT, TSC_ETRUNC, TSC_EIO, TSC_ENOMEM, TSC_EUNSUPPORTED };

// crc32 as zlib's crc32(crc, buf, len), several times faster where the CPU folds (crc32_fold.c).
uint32_t tsc_crc32(uint32_t crc, const uint8_t *buf, size_t len);
// Which way it runs: 2 VPCLMULQDQ (AVX-512), 1 PCLMULQDQ, 0 zlib's crc32.
int tsc_crc32_level(void);
// The crc32 of each `piece`-byte slice of out[0, n) (the last may be shorter), at most `ncrcs` of them.
void tsc_piece_crcs(const uint8_t *out, size_t n, size_t piece, uint32_t *crcs, size_t ncrcs);

typedef struct {
  double in_bit;
  double out;
  uint32_t kind;
  unsigned char *window; // gzip RAW points only: the uncompressed window (malloc'ed), else NULL
  uint32_t window_len;
} tsc_point;

typedef struct tsc_dec tsc_dec;

// A decoder over `fd` (dup'ed; the caller keeps its own) of `size` compressed bytes. NULL: ENOMEM
// or a bad fd (errno set).
tsc_dec *tsc_new(int format, int fd, uint64_t size);
void tsc_free(tsc_dec *d);

// Scan mode: decode from the start of the file and record seek points no closer than `spacing`
// output bytes where a window is needed (gzip inside a member), `cheap` where none is (member,
// frame and block starts; every xz block is a point). Call before any decode.
int tsc_scan_begin(tsc_dec *d, uint64_t spacing, uint64_t cheap);
// Points recorded so far and not yet taken: ownership of the array and windows passes to the caller.
tsc_point *tsc_take_points(tsc_dec *d, size_t *n);
void tsc_points_free(tsc_point *p, size_t n);

// Position at a seek point. `cwin` is the window as stored (raw deflate), for TSC_GZIP_RAW.
int tsc_seek(tsc_dec *d, uint32_t kind, double in_bit, const unsigned char *cwin, size_t cwin_len);

// Decode up to `len` bytes into `out`. Returns the count, fewer than `len` only at the end of the
// compressed data; -1 on error (tsc_error says what).
int64_t tsc_decode(tsc_dec *d, unsigned char *out, size_t len);

int tsc_errcode(const tsc_dec *d);
const char *tsc_error(const tsc_dec *d);
// Compressed bytes consumed so far (absolute file offset of the next unread input byte).
uint64_t tsc_in_pos(const tsc_dec *d);
// Compressed bytes read per pread from now on (4 KiB to 128 KiB; default 128 KiB): a remote blob's
// decoder reads little past what it decodes, since every byte it reads must be fetched first.
void tsc_set_read_size(tsc_dec *d, size_t n);
// Scan mode: set when non-zero bytes follow the last gzip member (gzip itself ignores them too).
int tsc_trailing_garbage(const tsc_dec *d);

// Compress one zstd frame (content size and checksum included). Returns the frame length, or 0 on
// error with `err` filled.
size_t tsc_zstd_frame(const void *src, size_t len, int level, void **dst, char *err, size_t errlen);

// zstd frame checksums checked by the consumer (codec_zsum.c): where a frame ended in the output,
// at which compressed byte, and the checksum it carries (has_sum 0: none, a skippable frame).
typedef struct {
  uint64_t out_end, in_end;
  uint32_t expected;
  int has_sum;
} tsc_zend;
#define XXH_STATIC_LINKING_ONLY // XXH64_state_t by value, in tsc_zcheck
#include <xxhash.h>
typedef struct {
  uint64_t pos;     // output bytes fed so far
  XXH64_state_t h;  // of the current frame's bytes (libxxhash)
} tsc_zcheck;
void tsc_zcheck_init(tsc_zcheck *c);
// The next `n` output bytes and the frame ends among them (in order): 0, or -1 with `err` on a mismatch.
int tsc_zcheck_feed(tsc_zcheck *c, const unsigned char *out, size_t n, const tsc_zend *e, size_t ne, char *err, size_t errlen);
// A zstd decoder in scan mode leaves its frame checksums to the consumer from now on: it records
// frame ends (tsc_take_zends) instead of checking. 0 (and nothing changes) for other decoders.
int tsc_zs_defer(tsc_dec *d);
tsc_zend *tsc_take_zends(tsc_dec *d, size_t *n);

// Decode ahead (codec_ahead.c): the decoder runs on a thread of its own, decoding the requests
// pushed (an output buffer each) in order, back to back, while the consumer uses the ones before.
// The decoder belongs to that thread until tsc_ahead_free; afterwards it must seek before decoding.
typedef struct tsc_areq {
  unsigned char *out; // filled by the thread
  size_t len, piece;
  uint32_t *crcs; // crc32 of each `piece` slice of the output, when not NULL
  void *tag;      // the caller's
  // results, once popped
  int64_t n; // bytes decoded (fewer than len only at the end); -1: failed (errcode, err)
  uint64_t in_pos;
  tsc_point *pts; // scan mode: points recorded while decoding this request (freed with the request)
  size_t npts;
  tsc_zend *zends; // zstd frame ends in this request's output when checksums are deferred
  size_t nzends;
  int errcode;
  char err[256];
  int done;
  struct tsc_areq *next;
} tsc_areq;
typedef struct tsc_ahead tsc_ahead;

// `ready(arg)` is called on the decoding thread after each request is done (may be NULL).
// Each request's piece checksums (when it asks for them) are made on the thread, right after its
// decode while the bytes are hot in cache (tsc_crc32 folds at tens of GB/s: a few % of decoding).
tsc_ahead *tsc_ahead_new(tsc_dec *d, void (*ready)(void *), void *arg);
void tsc_ahead_push(tsc_ahead *a, tsc_areq *r);
// The oldest pushed request once done (NULL: none done; with `wait`, waits unless nothing is pushed).
tsc_areq *tsc_ahead_pop(tsc_ahead *a, int wait);
// Stops the thread (it finishes the request it is decoding) and frees the requests not popped,
// calling `drop` on each first.
void tsc_ahead_free(tsc_ahead *a, void (*drop)(tsc_areq *, void *), void *arg);
void tsc_areq_free(tsc_areq *r);

#endif
