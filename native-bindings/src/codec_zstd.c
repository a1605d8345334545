// zstd (RFC 8878): frames are independent, so a frame start is a seek point with nothing to store;
// a multi-frame file (pzstd, t2sz, the seekable format, `image add --recompress`) gets one per
// frame. Skippable frames, including the seekable format's seek table, are skipped by libzstd.
#define ZSTD_STATIC_LINKING_ONLY // ZSTD_d_forceIgnoreChecksum, ZSTD_getFrameHeader (exported by Debian's libzstd)
#include "codec_impl.h"

#include <stdio.h>
#include <stdlib.h>

int tsc_zs_init(tsc_dec *d) {
  d->zs = ZSTD_createDStream();
  if (d->zs == NULL) return -1;
  d->zs_frame_done = 1;
  return 0;
}

void tsc_zs_end(tsc_dec *d) {
  ZSTD_freeDStream(d->zs);
  free(d->zends);
}

// Checksums stay libzstd's unless deferred, and a seek ends deferring (codec_zsum.c).
static int set_defer(tsc_dec *d, int on) {
  size_t r = ZSTD_DCtx_setParameter(d->zs, ZSTD_d_forceIgnoreChecksum, on ? ZSTD_d_ignoreChecksum : ZSTD_d_validateChecksum);
  if (ZSTD_isError(r)) return tsc_fail(d, TSC_ENOMEM, "zstd: %s", ZSTD_getErrorName(r));
  d->zs_defer = on;
  d->nzends = 0;
  return 0;
}

int tsc_zs_defer(tsc_dec *d) {
  if (d->format != TSC_ZSTD || !d->scanning || d->out_total != 0 || !d->zs_frame_done) return 0;
  return set_defer(d, 1) == 0;
}

tsc_zend *tsc_take_zends(tsc_dec *d, size_t *n) {
  *n = 0;
  if (d->format != TSC_ZSTD || d->nzends == 0) return NULL;
  tsc_zend *e = d->zends;
  *n = d->nzends;
  d->zends = NULL;
  d->nzends = d->zcap = 0;
  return e;
}

// A frame starts at the next input byte: does it carry a checksum? (Not a frame: libzstd says so next.)
static int frame_begins(tsc_dec *d, size_t avail) {
  ZSTD_frameHeader h;
  size_t r = ZSTD_getFrameHeader(&h, d->in + d->in_off, avail);
  if (!ZSTD_isError(r) && r > 0) {
    unsigned char b[ZSTD_FRAMEHEADERSIZE_MAX];
    int got = tsc_peek(d, tsc_in_pos(d), b, sizeof b);
    if (got < 0) return -1;
    r = ZSTD_getFrameHeader(&h, b, (size_t)got);
  }
  d->zs_has_sum = r == 0 && h.frameType == ZSTD_frame && h.checksumFlag;
  return 0;
}

// The frame just decoded ended at the last input byte consumed: its checksum (its last 4 bytes) is the consumer's to check.
static int frame_ends(tsc_dec *d) {
  if (tsc_reserve(d, (void **)&d->zends, &d->zcap, d->nzends, sizeof *d->zends, 16, "zstd frame ends") != 0) return -1;
  tsc_zend *e = &d->zends[d->nzends++];
  e->out_end = d->out_total;
  e->in_end = tsc_in_pos(d);
  e->has_sum = d->zs_has_sum;
  e->expected = 0;
  if (e->has_sum) {
    unsigned char b[4];
    int got = tsc_peek(d, e->in_end - 4, b, 4);
    if (got < 0) return -1;
    if (got < 4) return tsc_fail(d, TSC_ETRUNC, "truncated zstd data: no checksum at byte %llu", (unsigned long long)e->in_end);
    e->expected = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  }
  return 0;
}

int tsc_zs_seek(tsc_dec *d, uint64_t pos) {
  size_t r = ZSTD_DCtx_reset(d->zs, ZSTD_reset_session_only);
  if (ZSTD_isError(r)) return tsc_fail(d, TSC_ENOMEM, "zstd: %s", ZSTD_getErrorName(r));
  tsc_set_in(d, pos);
  d->zs_frame_done = 1;
  return d->zs_defer ? set_defer(d, 0) : 0;
}

int64_t tsc_zs_decode(tsc_dec *d, unsigned char *out, size_t len) {
  size_t done = 0;
  while (done < len && !d->ended) {
    ssize_t avail = tsc_fill(d);
    if (avail < 0) return -1;
    if (avail == 0 && d->zs_frame_done) {
      d->ended = 1;
      break;
    }
    if (d->scanning && d->zs_frame_done && (!d->have_point || (double)d->out_total - d->last_out >= (double)d->cheap)) {
      if (tsc_add_point(d, (double)tsc_in_pos(d) * 8, (double)d->out_total, TSC_ZSTD_FRAME, NULL, 0) != 0) return -1;
    }
    if (d->zs_defer && d->zs_frame_done && frame_begins(d, (size_t)avail) != 0) return -1;
    ZSTD_inBuffer ib = { d->in + d->in_off, (size_t)avail, 0 };
    ZSTD_outBuffer ob = { out + done, len - done, 0 };
    size_t r = ZSTD_decompressStream(d->zs, &ob, &ib);
    if (ZSTD_isError(r)) {
      ZSTD_ErrorCode e = ZSTD_getErrorCode(r);
      int code = e == ZSTD_error_memory_allocation ? TSC_ENOMEM : e == ZSTD_error_frameParameter_windowTooLarge ? TSC_EUNSUPPORTED : TSC_ECORRUPT;
      return tsc_fail(d, code, "%s zstd data near compressed byte %llu (%s)", code == TSC_ECORRUPT ? "corrupt" : "unreadable", (unsigned long long)tsc_in_pos(d), ZSTD_getErrorName(r));
    }
    d->in_off += ib.pos;
    done += ob.pos;
    d->out_total += ob.pos;
    // 0: a frame is complete and flushed; the next input byte starts another frame.
    d->zs_frame_done = r == 0;
    if (d->zs_defer && r == 0 && frame_ends(d) != 0) return -1;
    if (avail == 0 && ib.pos == 0 && ob.pos == 0 && r != 0) {
      return tsc_fail(d, TSC_ETRUNC, "truncated zstd data: the compressed stream ends at byte %llu inside a frame", (unsigned long long)tsc_in_pos(d));
    }
  }
  return (int64_t)done;
}

// One frame of a seekable copy (`image add --recompress`): content size and checksum included, so
// any zstd reader verifies it and our scan sees one seek point per frame.
size_t tsc_zstd_frame(const void *src, size_t len, int level, void **dst, char *err, size_t errlen) {
  *dst = NULL;
  ZSTD_CCtx *c = ZSTD_createCCtx();
  size_t bound = ZSTD_compressBound(len);
  void *buf = c ? malloc(bound) : NULL;
  size_t r = 0;
  if (buf == NULL) {
    snprintf(err, errlen, "out of memory");
  } else if (ZSTD_isError(r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
             ZSTD_isError(r = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)) ||
             ZSTD_isError(r = ZSTD_compress2(c, buf, bound, src, len))) {
    snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(r));
    r = 0;
  }
  ZSTD_freeCCtx(c);
  if (r == 0) free(buf);
  else *dst = buf;
  return r;
}
