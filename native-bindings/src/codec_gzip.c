// gzip (RFC 1952) with random access, after zlib's examples/zran.c: a seek point inside a member is a
// deflate block boundary (a bit offset) plus the 32 KiB of output before it. Resuming primes the
// partial byte with inflatePrime and the window with inflateSetDictionary; Node's zlib exposes
// neither, which is why this lives here. Members are concatenated (multi-member files, bgzip).
#include "codec_impl.h"

#include <stdlib.h>
#include <string.h>

enum {
  G_BETWEEN, // before a member header (or the end of the data)
  G_MEMBER,  // inside a member started at its header: zlib checks its CRC-32 and length
  G_RAW,     // inside a member resumed at a seek point: raw deflate, trailer skipped unchecked
  G_TRAILER, // skipping the 8-byte trailer of a raw-resumed member
};

int tsc_gz_init(tsc_dec *d) {
  if (inflateInit2(&d->z, 31) != Z_OK) return -1;
  d->z_ready = 1;
  if (inflateInit2(&d->wz, -15) != Z_OK) return -1;
  d->wz_ready = 1;
  d->dict = malloc(TSC_WINDOW);
  if (d->dict == NULL) return -1;
  d->state = G_BETWEEN;
  return 0;
}

void tsc_gz_end(tsc_dec *d) {
  if (d->z_ready) inflateEnd(&d->z);
  if (d->wz_ready) inflateEnd(&d->wz);
  free(d->dict);
}

int tsc_gz_scan(tsc_dec *d) {
  d->state = G_BETWEEN;
  return 0;
}

int tsc_gz_seek(tsc_dec *d, uint32_t kind, double in_bit, const unsigned char *cwin, size_t cwin_len) {
  uint64_t byte = (uint64_t)(in_bit / 8);
  int rem = (int)(in_bit - (double)byte * 8);
  if (kind == TSC_GZIP_MEMBER) {
    if (inflateReset2(&d->z, 31) != Z_OK) return tsc_fail(d, TSC_ENOMEM, "gzip: inflateReset2 failed");
    tsc_set_in(d, byte);
    d->state = G_BETWEEN;
    return 0;
  }
  if (kind != TSC_GZIP_RAW) return tsc_fail(d, TSC_ECORRUPT, "gzip: unknown seek point kind %u", kind);
  if (inflateReset2(&d->z, -15) != Z_OK) return tsc_fail(d, TSC_ENOMEM, "gzip: inflateReset2 failed");
  // The point sits `bits` bits before the byte boundary `in`: those bits come from byte in-1.
  int bits = (8 - rem) % 8;
  uint64_t in = rem ? byte + 1 : byte;
  if (bits) {
    unsigned char ch;
    if (tsc_peek(d, in - 1, &ch, 1) != 1) return d->errcode ? -1 : tsc_fail(d, TSC_ETRUNC, "gzip: compressed data ends before byte %llu", (unsigned long long)in);
    if (inflatePrime(&d->z, bits, ch >> (8 - bits)) != Z_OK) return tsc_fail(d, TSC_ECORRUPT, "gzip: inflatePrime failed");
  }
  // The stored window is raw deflate of up to 32 KiB.
  uInt wlen = 0;
  if (cwin_len > 0) {
    if (inflateReset(&d->wz) != Z_OK) return tsc_fail(d, TSC_ENOMEM, "gzip: inflateReset failed");
    d->wz.next_in = (unsigned char *)cwin;
    d->wz.avail_in = (uInt)cwin_len;
    d->wz.next_out = d->dict;
    d->wz.avail_out = TSC_WINDOW;
    int r = inflate(&d->wz, Z_FINISH);
    if (r != Z_STREAM_END) return tsc_fail(d, TSC_ECORRUPT, "gzip: a stored seek window is damaged (the index)");
    wlen = TSC_WINDOW - d->wz.avail_out;
  }
  if (wlen > 0 && inflateSetDictionary(&d->z, d->dict, wlen) != Z_OK) return tsc_fail(d, TSC_ECORRUPT, "gzip: inflateSetDictionary failed");
  tsc_set_in(d, in);
  d->state = G_RAW;
  return 0;
}

// After a member: another member header, zero padding to the end (tape blocking), or other bytes,
// which gzip(1) ignores with a warning and so do we (scan mode flags them).
static int between(tsc_dec *d) {
  uint64_t pos = tsc_in_pos(d);
  unsigned char magic[2];
  int n = tsc_peek(d, pos, magic, 2);
  if (n < 0) return -1;
  if (n == 0) {
    d->ended = 1;
    return 0;
  }
  if (n == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    if (inflateReset2(&d->z, 31) != Z_OK) return tsc_fail(d, TSC_ENOMEM, "gzip: inflateReset2 failed");
    if (d->scanning && (!d->have_point || (double)d->out_total - d->last_out >= (double)d->cheap)) {
      if (tsc_add_point(d, (double)pos * 8, (double)d->out_total, TSC_GZIP_MEMBER, NULL, 0) != 0) return -1;
    }
    d->state = G_MEMBER;
    return 0;
  }
  if (pos == 0) return tsc_fail(d, TSC_ECORRUPT, "not gzip data (no gzip header at byte 0)");
  if (d->scanning) {
    for (;;) {
      ssize_t a = tsc_fill(d);
      if (a < 0) return -1;
      if (a == 0) break;
      for (ssize_t i = 0; i < a && !d->trailing; i++) d->trailing = d->in[d->in_off + (size_t)i] != 0;
      d->in_off += (size_t)a;
    }
  }
  d->ended = 1;
  return 0;
}

int64_t tsc_gz_decode(tsc_dec *d, unsigned char *out, size_t len) {
  size_t done = 0;
  while (done < len && !d->ended) {
    if (d->state == G_BETWEEN) {
      if (between(d) != 0) return -1;
      continue;
    }
    ssize_t avail = tsc_fill(d);
    if (avail < 0) return -1;
    if (d->state == G_TRAILER) {
      if (avail == 0) return tsc_fail(d, TSC_ETRUNC, "truncated gzip data: a member's trailer is cut short at byte %llu", (unsigned long long)tsc_in_pos(d));
      size_t k = (size_t)avail < d->skip ? (size_t)avail : d->skip;
      d->in_off += k;
      d->skip -= (unsigned)k;
      if (d->skip == 0) d->state = G_BETWEEN;
      continue;
    }
    z_stream *z = &d->z;
    size_t room = len - done;
    z->next_in = d->in + d->in_off;
    z->avail_in = (uInt)avail;
    z->next_out = out + done;
    z->avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
    uInt before_out = z->avail_out;
    // Z_BLOCK stops at each deflate block boundary, where scan mode may place a seek point.
    int r = inflate(z, d->scanning ? Z_BLOCK : Z_NO_FLUSH);
    size_t produced = before_out - z->avail_out;
    size_t consumed = (size_t)avail - z->avail_in;
    d->in_off += consumed;
    done += produced;
    d->out_total += produced;
    if (r == Z_STREAM_END) {
      if (d->state == G_RAW) {
        d->skip = 8;
        d->state = G_TRAILER;
      } else {
        d->state = G_BETWEEN;
      }
      continue;
    }
    if (r == Z_BUF_ERROR || (r == Z_OK && produced == 0 && consumed == 0)) {
      // No progress: at the end of the file that is data cut short; with input left, damage.
      if (avail == 0) return tsc_fail(d, TSC_ETRUNC, "truncated gzip data: the compressed stream ends at byte %llu inside a member", (unsigned long long)tsc_in_pos(d));
      return tsc_fail(d, TSC_ECORRUPT, "corrupt gzip data near compressed byte %llu (inflate stalled)", (unsigned long long)tsc_in_pos(d));
    }
    if (r == Z_MEM_ERROR) return tsc_fail(d, TSC_ENOMEM, "gzip: out of memory");
    if (r != Z_OK) return tsc_fail(d, TSC_ECORRUPT, "corrupt gzip data near compressed byte %llu (%s)", (unsigned long long)tsc_in_pos(d), z->msg ? z->msg : "inflate failed");
    // A block boundary that is not the end of the member's last block.
    if (d->scanning && (z->data_type & 128) && !(z->data_type & 64) &&
        (double)d->out_total - d->last_out >= (double)d->spacing) {
      uInt wlen = 0;
      if (inflateGetDictionary(z, d->dict, &wlen) != Z_OK) return tsc_fail(d, TSC_ECORRUPT, "gzip: inflateGetDictionary failed");
      double in_bit = (double)tsc_in_pos(d) * 8 - (z->data_type & 7);
      if (tsc_add_point(d, in_bit, (double)d->out_total, TSC_GZIP_RAW, d->dict, wlen) != 0) return -1;
    }
  }
  return (int64_t)done;
}
