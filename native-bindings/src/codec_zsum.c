// zstd frame checksums (RFC 8878 3.1.1: the low 32 bits of XXH64 of the frame's content, seed 0)
// checked on the consumer's thread instead of the decoder's. Indexing decodes on a thread of its own
// while Node's thread waits for it most of the time; libzstd's own check was a fifth of that
// thread's time (1 GiB single-frame tar: 0.17 s decoding without it, 0.22 s with), so in scan mode
// with decode-ahead the decoder records where each frame ends and what it expects (tsc_zs_defer),
// and the consumer hashes the output it pops and compares (tsc_zcheck_feed): the same check on
// the same bytes, and a mismatch is the same ECORRUPT failure, one pop later at most.
// XXH64 as specified in xxHash's doc/xxhash_spec.md.
#include "codec_impl.h"

#include <stdio.h>
#include <string.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t rd64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v; // little-endian hosts only (x86-64, arm64)
}
static inline uint32_t rd32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline uint64_t round64(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }
static inline uint64_t merge(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * P1 + P4; }

void tsc_xxh64_reset(tsc_xxh64 *s) {
  memset(s, 0, sizeof *s);
  s->v[0] = P1 + P2;
  s->v[1] = P2;
  s->v[2] = 0;
  s->v[3] = -P1;
}

void tsc_xxh64_update(tsc_xxh64 *s, const unsigned char *p, size_t n) {
  s->total += n;
  if (s->memsize + n < 32) {
    memcpy(s->mem + s->memsize, p, n);
    s->memsize += (unsigned)n;
    return;
  }
  if (s->memsize) {
    size_t k = 32 - s->memsize;
    memcpy(s->mem + s->memsize, p, k);
    for (int i = 0; i < 4; i++) s->v[i] = round64(s->v[i], rd64(s->mem + 8 * i));
    p += k, n -= k;
    s->memsize = 0;
  }
  uint64_t v0 = s->v[0], v1 = s->v[1], v2 = s->v[2], v3 = s->v[3];
  for (; n >= 32; p += 32, n -= 32) {
    v0 = round64(v0, rd64(p));
    v1 = round64(v1, rd64(p + 8));
    v2 = round64(v2, rd64(p + 16));
    v3 = round64(v3, rd64(p + 24));
  }
  s->v[0] = v0, s->v[1] = v1, s->v[2] = v2, s->v[3] = v3;
  memcpy(s->mem, p, n);
  s->memsize = (unsigned)n;
}

uint64_t tsc_xxh64_digest(const tsc_xxh64 *s) {
  uint64_t h;
  if (s->total >= 32) {
    h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
    for (int i = 0; i < 4; i++) h = merge(h, s->v[i]);
  } else {
    h = P5;
  }
  h += s->total;
  const unsigned char *p = s->mem;
  size_t n = s->memsize;
  for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ round64(0, rd64(p)), 27) * P1 + P4;
  if (n >= 4) {
    h = rotl(h ^ (uint64_t)rd32(p) * P1, 23) * P2 + P3;
    p += 4, n -= 4;
  }
  for (; n > 0; p++, n--) h = rotl(h ^ *p * P5, 11) * P1;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  return h ^ (h >> 32);
}

void tsc_zcheck_init(tsc_zcheck *c) {
  c->pos = 0;
  tsc_xxh64_reset(&c->h);
}

int tsc_zcheck_feed(tsc_zcheck *c, const unsigned char *out, size_t n, const tsc_zend *e, size_t ne, char *err, size_t errlen) {
  uint64_t end = c->pos + n;
  for (size_t i = 0; i <= ne; i++) {
    uint64_t stop = i < ne ? e[i].out_end : end;
    if (stop < c->pos || stop > end) {
      snprintf(err, errlen, "zstd: a frame's end (byte %llu) outside the output checked", (unsigned long long)stop);
      return -1;
    }
    tsc_xxh64_update(&c->h, out + (c->pos + n - end), (size_t)(stop - c->pos));
    c->pos = stop;
    if (i == ne) break;
    if (e[i].has_sum && (uint32_t)tsc_xxh64_digest(&c->h) != e[i].expected) {
      snprintf(err, errlen, "corrupt zstd data: the frame ending at compressed byte %llu does not match its checksum", (unsigned long long)e[i].in_end);
      return -1;
    }
    tsc_xxh64_reset(&c->h);
  }
  return 0;
}
