// crc32 (zlib's: reflected 0xEDB88320) by carry-less multiplication folding: 4 x 512 bits at a
// time with VPCLMULQDQ (AVX-512), else 4 x 128 with PCLMULQDQ, else zlib's crc32. Node's own zlib
// does ~6 GB/s here; folding with VPCLMULQDQ is several times that, which lets the decode-ahead
// thread check each piece right after decoding it (hot in cache) at little cost to its decoding.
// Method and the 128-bit stages: Gopal et al., "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ Instruction" (Intel, 2009), as in the Linux kernel and Chromium's zlib. A fold across
// D bits multiplies a lane's low half by x^(D+32) mod P and its high half by x^(D-32) mod P
// (bit-reflected, shifted left once): D = 2048, 512 and 128 below.
#include "codec.h"

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define FOLD128 __attribute__((target("pclmul,sse4.1")))
#define FOLD512 __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.1")))

static const uint64_t K128[2] __attribute__((aligned(16))) = { 0x1751997d0, 0x0ccaa009e };
static const uint64_t K512[2] __attribute__((aligned(16))) = { 0x154442bd4, 0x1c6e41596 };
static const uint64_t K2048[2] __attribute__((aligned(16))) = { 0x11542778a, 0x1322d1430 };
static const uint64_t K64[2] __attribute__((aligned(16))) = { 0x163cd6124, 0 };
static const uint64_t BARRETT[2] __attribute__((aligned(16))) = { 0x1db710641, 0x1f7011641 };

FOLD128 static inline __m128i fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

// Four 128-bit lanes (in stream order) and the rest (len < 64... any multiple of 16) to a crc.
FOLD128 static uint32_t finish(__m128i x1, __m128i x2, __m128i x3, __m128i x4, const uint8_t *buf, size_t len) {
  __m128i k = _mm_load_si128((const __m128i *)K128);
  x1 = fold(x1, k, x2);
  x1 = fold(x1, k, x3);
  x1 = fold(x1, k, x4);
  for (; len >= 16; buf += 16, len -= 16) x1 = fold(x1, k, _mm_loadu_si128((const __m128i *)buf));
  // 128 bits to 64, then Barrett reduction to 32
  __m128i mask = _mm_setr_epi32(~0, 0, ~0, 0);
  __m128i x2b = _mm_clmulepi64_si128(x1, k, 0x10);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2b);
  k = _mm_loadl_epi64((const __m128i *)K64);
  x2b = _mm_srli_si128(x1, 4);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask), k, 0x00), x2b);
  k = _mm_load_si128((const __m128i *)BARRETT);
  x2b = _mm_clmulepi64_si128(_mm_and_si128(x1, mask), k, 0x10);
  x2b = _mm_clmulepi64_si128(_mm_and_si128(x2b, mask), k, 0x00);
  return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x1, x2b), 1);
}

// len >= 64, a multiple of 16; crc is the running value already inverted.
FOLD128 static uint32_t fold128(const uint8_t *buf, size_t len, uint32_t crc) {
  const __m128i *p = (const __m128i *)buf;
  __m128i x1 = _mm_xor_si128(_mm_loadu_si128(p), _mm_cvtsi32_si128((int)crc));
  __m128i x2 = _mm_loadu_si128(p + 1), x3 = _mm_loadu_si128(p + 2), x4 = _mm_loadu_si128(p + 3);
  __m128i k = _mm_load_si128((const __m128i *)K512);
  for (buf += 64, len -= 64; len >= 64; buf += 64, len -= 64) {
    p = (const __m128i *)buf;
    x1 = fold(x1, k, _mm_loadu_si128(p));
    x2 = fold(x2, k, _mm_loadu_si128(p + 1));
    x3 = fold(x3, k, _mm_loadu_si128(p + 2));
    x4 = fold(x4, k, _mm_loadu_si128(p + 3));
  }
  return finish(x1, x2, x3, x4, buf, len);
}

FOLD512 static inline __m512i fold4(__m512i x, __m512i k, __m512i next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11), next, 0x96);
}

// len >= 256, a multiple of 16; crc already inverted.
FOLD512 static uint32_t fold512(const uint8_t *buf, size_t len, uint32_t crc) {
  __m512i z0 = _mm512_xor_si512(_mm512_loadu_si512(buf), _mm512_castsi128_si512(_mm_cvtsi32_si128((int)crc)));
  __m512i z1 = _mm512_loadu_si512(buf + 64), z2 = _mm512_loadu_si512(buf + 128), z3 = _mm512_loadu_si512(buf + 192);
  __m512i k = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)K2048));
  for (buf += 256, len -= 256; len >= 256; buf += 256, len -= 256) {
    z0 = fold4(z0, k, _mm512_loadu_si512(buf));
    z1 = fold4(z1, k, _mm512_loadu_si512(buf + 64));
    z2 = fold4(z2, k, _mm512_loadu_si512(buf + 128));
    z3 = fold4(z3, k, _mm512_loadu_si512(buf + 192));
  }
  k = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)K512));
  z1 = fold4(z0, k, z1);
  z2 = fold4(z1, k, z2);
  z0 = fold4(z2, k, z3);
  for (; len >= 64; buf += 64, len -= 64) z0 = fold4(z0, k, _mm512_loadu_si512(buf));
  return finish(_mm512_extracti32x4_epi32(z0, 0), _mm512_extracti32x4_epi32(z0, 1), _mm512_extracti32x4_epi32(z0, 2),
                _mm512_extracti32x4_epi32(z0, 3), buf, len);
}

static int level = -1; // 2: VPCLMULQDQ, 1: PCLMULQDQ, 0: zlib's

static int detect(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("vpclmulqdq")) return 2;
  return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") ? 1 : 0;
}

uint32_t tsc_crc32(uint32_t crc, const uint8_t *buf, size_t len) {
  int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
  if (l < 0) __atomic_store_n(&level, l = detect(), __ATOMIC_RELAXED);
  size_t bulk = len & ~(size_t)15;
  if (l == 2 && bulk >= 256) crc = ~fold512(buf, bulk, ~crc);
  else if (l >= 1 && bulk >= 64) crc = ~fold128(buf, bulk, ~crc);
  else bulk = 0;
  return len > bulk ? (uint32_t)crc32(crc, buf + bulk, (uInt)(len - bulk)) : crc;
}

int tsc_crc32_level(void) {
  return level < 0 ? (level = detect()) : level;
}

#else
uint32_t tsc_crc32(uint32_t crc, const uint8_t *buf, size_t len) {
  return (uint32_t)crc32(crc, buf, (uInt)len);
}

int tsc_crc32_level(void) {
  return 0;
}
#endif

void tsc_piece_crcs(const uint8_t *out, size_t n, size_t piece, uint32_t *crcs, size_t ncrcs) {
  for (size_t i = 0; i < ncrcs && i * piece < n; i++) {
    size_t at = i * piece;
    crcs[i] = tsc_crc32(0, out + at, n - at < piece ? n - at : piece);
  }
}
