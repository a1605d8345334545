// The decoder state shared by codec_dec.c (input, points, errors) and the format files
// (codec_gzip.c, codec_zstd.c, codec_xz.c). Nothing here touches N-API.
#ifndef TSC_CODEC_IMPL_H
#define TSC_CODEC_IMPL_H

#include "codec.h"

#include <lzma.h>
#include <sys/types.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

// 128 KiB of compressed input per pread: large enough to amortise the call, small enough that a
// random read near a seek point reads little it does not need.
#define TSC_IN_CAP (128 * 1024)
#define TSC_WINDOW 32768

struct tsc_dec {
  int format;
  int fd;
  uint64_t size; // compressed bytes

  unsigned char *in; // file bytes [in_base, in_base + in_len); the next unread one is in[in_off]
  size_t in_len, in_off;
  size_t in_cap; // bytes per pread, at most TSC_IN_CAP (tsc_set_read_size)
  uint64_t in_base;

  uint64_t out_total; // uncompressed offset of the next output byte
  int state;          // the format's own state machine
  int ended;          // no more data (end of the last member / frame / stream)

  int scanning;
  uint64_t spacing, cheap;
  int have_point;
  double last_out;
  tsc_point *pts;
  size_t npts, cap;
  int trailing;

  int errcode;
  char err[256];

  // gzip
  z_stream z, wz; // wz inflates stored windows
  int z_ready, wz_ready;
  unsigned skip; // trailer bytes left to skip after a member resumed in raw mode
  unsigned char *dict;
  // zstd
  ZSTD_DStream *zs;
  int zs_frame_done;
  int zs_defer, zs_has_sum; // checksums left to the consumer (tsc_zs_defer); the current frame has one
  tsc_zend *zends;
  size_t nzends, zcap;
  // xz
  lzma_stream lz;
  int lz_ready;
  lzma_block xblock;   // the block decoder keeps a pointer to it until the block ends
};

// codec_dec.c: input and bookkeeping.
ssize_t tsc_fill(tsc_dec *d); // bytes available at in + in_off (reads when empty); 0 at EOF; -1 error
void tsc_set_in(tsc_dec *d, uint64_t pos);
int tsc_peek(tsc_dec *d, uint64_t pos, unsigned char *buf, size_t n); // bytes read (< n at EOF), -1 error
int tsc_fail(tsc_dec *d, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Room for element `n` of a growing array (doubling from `first`): 0, or -1 with ENOMEM set on `d`.
int tsc_reserve(tsc_dec *d, void **arr, size_t *cap, size_t n, size_t size, size_t first, const char *what);
int tsc_add_point(tsc_dec *d, double in_bit, double out, uint32_t kind, const unsigned char *win, uint32_t wlen);

// Format entry points.
int tsc_gz_init(tsc_dec *d);
void tsc_gz_end(tsc_dec *d);
int tsc_gz_scan(tsc_dec *d);
int tsc_gz_seek(tsc_dec *d, uint32_t kind, double in_bit, const unsigned char *cwin, size_t cwin_len);
int64_t tsc_gz_decode(tsc_dec *d, unsigned char *out, size_t len);

int tsc_zs_init(tsc_dec *d);
void tsc_zs_end(tsc_dec *d);
int tsc_zs_seek(tsc_dec *d, uint64_t pos);
int64_t tsc_zs_decode(tsc_dec *d, unsigned char *out, size_t len);

int tsc_xz_init(tsc_dec *d);
void tsc_xz_end(tsc_dec *d);
int tsc_xz_scan(tsc_dec *d);
int tsc_xz_seek(tsc_dec *d, uint32_t kind, uint64_t pos);
int64_t tsc_xz_decode(tsc_dec *d, unsigned char *out, size_t len);

#endif
