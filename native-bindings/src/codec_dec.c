// The format-independent half of the decoders: positional input through one buffer, seek-point
// bookkeeping for scan mode, errors, and dispatch to codec_gzip.c / codec_zstd.c / codec_xz.c.
#include "codec_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

tsc_dec *tsc_new(int format, int fd, uint64_t size) {
  if (format != TSC_GZIP && format != TSC_ZSTD && format != TSC_XZ) {
    errno = EINVAL;
    return NULL;
  }
  tsc_dec *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  d->format = format;
  d->size = size;
  d->fd = -1;
  d->in = malloc(TSC_IN_CAP);
  d->in_cap = TSC_IN_CAP;
  // Our own descriptor: the layer may close its fd while a worker still reads through this one.
  d->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  int ok = d->in != NULL && d->fd >= 0;
  if (ok) ok = (format == TSC_GZIP ? tsc_gz_init(d) : format == TSC_ZSTD ? tsc_zs_init(d) : tsc_xz_init(d)) == 0;
  if (!ok) {
    int e = d->fd < 0 ? errno : ENOMEM;
    tsc_free(d);
    errno = e;
    return NULL;
  }
  return d;
}

void tsc_free(tsc_dec *d) {
  if (d == NULL) return;
  if (d->format == TSC_GZIP) tsc_gz_end(d);
  else if (d->format == TSC_ZSTD) tsc_zs_end(d);
  else tsc_xz_end(d);
  tsc_points_free(d->pts, d->npts);
  if (d->fd >= 0) close(d->fd);
  free(d->in);
  free(d);
}

int tsc_fail(tsc_dec *d, int code, const char *fmt, ...) {
  d->errcode = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, sizeof d->err, fmt, ap);
  va_end(ap);
  return -1;
}

int tsc_errcode(const tsc_dec *d) { return d->errcode; }
const char *tsc_error(const tsc_dec *d) { return d->err; }
void tsc_set_read_size(tsc_dec *d, size_t n) {
  d->in_cap = n < 4096 ? 4096 : n > TSC_IN_CAP ? TSC_IN_CAP : n;
}

uint64_t tsc_in_pos(const tsc_dec *d) { return d->in_base + d->in_off; }
int tsc_trailing_garbage(const tsc_dec *d) { return d->trailing; }

ssize_t tsc_fill(tsc_dec *d) {
  if (d->in_off < d->in_len) return (ssize_t)(d->in_len - d->in_off);
  d->in_base += d->in_len;
  d->in_len = d->in_off = 0;
  if (d->in_base >= d->size) return 0;
  uint64_t left = d->size - d->in_base;
  size_t want = left < d->in_cap ? (size_t)left : d->in_cap;
  ssize_t n;
  do n = pread(d->fd, d->in, want, (off_t)d->in_base);
  while (n < 0 && errno == EINTR);
  if (n < 0) return tsc_fail(d, TSC_EIO, "reading compressed byte %llu: %s", (unsigned long long)d->in_base, strerror(errno));
  d->in_len = (size_t)n; // 0 when the file shrank: the decoder reports the data cut short
  return n;
}

void tsc_set_in(tsc_dec *d, uint64_t pos) {
  if (pos >= d->in_base && pos <= d->in_base + d->in_len) {
    d->in_off = (size_t)(pos - d->in_base);
  } else {
    d->in_base = pos;
    d->in_len = d->in_off = 0;
  }
}

int tsc_peek(tsc_dec *d, uint64_t pos, unsigned char *buf, size_t n) {
  if (pos >= d->in_base && pos + n <= d->in_base + d->in_len) {
    memcpy(buf, d->in + (pos - d->in_base), n);
    return (int)n;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(d->fd, buf + got, n - got, (off_t)(pos + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return tsc_fail(d, TSC_EIO, "reading compressed byte %llu: %s", (unsigned long long)(pos + got), strerror(errno));
    if (r == 0) break;
    got += (size_t)r;
  }
  return (int)got;
}

int tsc_reserve(tsc_dec *d, void **arr, size_t *cap, size_t n, size_t size, size_t first, const char *what) {
  if (n < *cap) return 0;
  size_t c = *cap ? *cap * 2 : first;
  void *p = realloc(*arr, c * size);
  if (p == NULL) return tsc_fail(d, TSC_ENOMEM, "out of memory for %s", what);
  *arr = p;
  *cap = c;
  return 0;
}

// Points are kept strictly increasing in output offset: an empty member or a skippable frame
// adds no new place to start from, and the earlier point decodes through it anyway.
int tsc_add_point(tsc_dec *d, double in_bit, double out, uint32_t kind, const unsigned char *win, uint32_t wlen) {
  if (d->have_point && out <= d->last_out) return 0;
  if (tsc_reserve(d, (void **)&d->pts, &d->cap, d->npts, sizeof *d->pts, 64, "seek points") != 0) return -1;
  tsc_point *pt = &d->pts[d->npts];
  pt->in_bit = in_bit;
  pt->out = out;
  pt->kind = kind;
  pt->window = NULL;
  pt->window_len = 0;
  if (wlen > 0) {
    pt->window = malloc(wlen);
    if (pt->window == NULL) return tsc_fail(d, TSC_ENOMEM, "out of memory for a seek window");
    memcpy(pt->window, win, wlen);
    pt->window_len = wlen;
  }
  d->npts++;
  d->have_point = 1;
  d->last_out = out;
  return 0;
}

tsc_point *tsc_take_points(tsc_dec *d, size_t *n) {
  tsc_point *p = d->pts;
  *n = d->npts;
  d->pts = NULL;
  d->npts = d->cap = 0;
  return p;
}

void tsc_points_free(tsc_point *p, size_t n) {
  for (size_t i = 0; i < n; i++) free(p[i].window);
  free(p);
}

int tsc_scan_begin(tsc_dec *d, uint64_t spacing, uint64_t cheap) {
  d->scanning = 1;
  d->spacing = spacing;
  d->cheap = cheap;
  d->out_total = 0;
  d->ended = 0;
  tsc_set_in(d, 0);
  if (d->format == TSC_GZIP) return tsc_gz_scan(d);
  if (d->format == TSC_ZSTD) return tsc_zs_seek(d, 0);
  return tsc_xz_scan(d);
}

int tsc_seek(tsc_dec *d, uint32_t kind, double in_bit, const unsigned char *cwin, size_t cwin_len) {
  d->errcode = TSC_OK;
  d->ended = 0;
  if (d->format == TSC_GZIP) return tsc_gz_seek(d, kind, in_bit, cwin, cwin_len);
  if (d->format == TSC_ZSTD) return tsc_zs_seek(d, (uint64_t)(in_bit / 8));
  return tsc_xz_seek(d, kind, (uint64_t)(in_bit / 8));
}

int64_t tsc_decode(tsc_dec *d, unsigned char *out, size_t len) {
  if (d->errcode != TSC_OK) return -1; // a failed decoder stays failed until the next seek
  if (d->format == TSC_GZIP) return tsc_gz_decode(d, out, len);
  if (d->format == TSC_ZSTD) return tsc_zs_decode(d, out, len);
  return tsc_xz_decode(d, out, len);
}
