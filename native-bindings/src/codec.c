// The `codec` object: decoders for compressed tars (codec.h) as JS handles, with decoding either
// synchronous (copy-up, indexing) or on the libuv threadpool as a Promise (serving, so Node's
// thread, which answers FUSE requests, never inflates megabytes). A handle is used by one call at a
// time: an async decode marks it busy until it settles, and a second use throws.
#include "codec_js.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const char *tsc_js_code_name(int code) {
  switch (code) {
    case TSC_ETRUNC: return "ETRUNC";
    case TSC_EIO: return "EIO";
    case TSC_ENOMEM: return "ENOMEM";
    case TSC_EUNSUPPORTED: return "EUNSUPPORTED";
    default: return "ECORRUPT";
  }
}

napi_value tsc_js_error(napi_env env, const char *code, const char *msg) {
  napi_value c, m, e = NULL;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) == napi_ok &&
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) == napi_ok) {
    napi_create_error(env, c, m, &e);
  }
  return e;
}

napi_value tsc_js_throw(napi_env env, const char *code, const char *msg) {
  napi_value e = tsc_js_error(env, code, msg);
  if (e) napi_throw(env, e);
  return NULL;
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  handle *h = data;
  tsc_js_ahead_stop(env, h);
  tsc_free(h->d);
  free(h);
}

// The handle in `v`; with `busy_ok` also while it decodes ahead (never while on the threadpool).
handle *tsc_js_handle(napi_env env, napi_value v, int busy_ok) {
  handle *h = NULL;
  if (napi_get_value_external(env, v, (void **)&h) != napi_ok || h == NULL) {
    tsn_throw(env, "tarstack_native: expected a codec handle");
    return NULL;
  }
  if (h->d == NULL) return tsc_js_throw(env, "EBADF", "codec handle is closed"), NULL;
  if (h->busy || (h->ahead && !busy_ok)) return tsc_js_throw(env, "EBUSY", "codec handle is busy"), NULL;
  return h;
}

static handle *get_handle(napi_env env, napi_value v) { return tsc_js_handle(env, v, 0); }

static int get_bytes(napi_env env, napi_value v, unsigned char **data, size_t *len, int nullable) {
  napi_valuetype t;
  if (nullable && napi_typeof(env, v, &t) == napi_ok && (t == napi_null || t == napi_undefined)) {
    *data = NULL;
    *len = 0;
    return 0;
  }
  if (napi_get_buffer_info(env, v, (void **)data, len) != napi_ok) {
    tsn_throw(env, "tarstack_native: expected a Buffer");
    return -1;
  }
  return 0;
}

// open(format, fd, compressedSize) -> handle
static napi_value js_open(napi_env env, napi_callback_info info) {
  napi_value argv[3], out = NULL;
  double format, fd, size;
  if (tsn_get_args(env, info, 3, argv) != 0 || tsn_num(env, argv[0], &format) != 0 ||
      tsn_num(env, argv[1], &fd) != 0 || tsn_num(env, argv[2], &size) != 0) {
    return NULL;
  }
  handle *h = calloc(1, sizeof *h);
  if (h == NULL) return tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  h->d = tsc_new((int)format, (int)fd, (uint64_t)size);
  if (h->d == NULL) {
    int e = errno;
    free(h);
    return tsc_js_throw(env, e == EINVAL ? "EINVAL" : e == EBADF ? "EBADF" : "ENOMEM", "codec: cannot create a decoder");
  }
  if (napi_create_external(env, h, handle_finalize, NULL, &out) != napi_ok) {
    tsc_free(h->d);
    free(h);
    return NULL;
  }
  return out;
}

// close(handle): frees the decoder now rather than at garbage collection.
static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  handle *h = tsc_js_handle(env, argv[0], 1);
  if (h == NULL) return NULL;
  tsc_js_ahead_stop(env, h); // a decode-ahead thread ends first: it owns the decoder
  tsc_free(h->d);
  h->d = NULL;
  return tsn_undefined(env);
}

// scanBegin(handle, spacing, cheapSpacing)
static napi_value js_scan_begin(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double spacing, cheap;
  if (tsn_get_args(env, info, 3, argv) != 0) return NULL;
  handle *h = get_handle(env, argv[0]);
  if (h == NULL || tsn_num(env, argv[1], &spacing) != 0 || tsn_num(env, argv[2], &cheap) != 0) return NULL;
  if (tsc_scan_begin(h->d, (uint64_t)spacing, (uint64_t)cheap) != 0) return tsc_js_throw(env, tsc_js_code_name(tsc_errcode(h->d)), tsc_error(h->d));
  return tsn_undefined(env);
}

// takePoints(handle) -> [inBit, out, kind, window: Buffer | null][] recorded since the last call
static napi_value js_take_points(napi_env env, napi_callback_info info) {
  napi_value argv[1], arr = NULL;
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  handle *h = get_handle(env, argv[0]);
  if (h == NULL) return NULL;
  size_t n;
  tsc_point *p = tsc_take_points(h->d, &n);
  arr = tsc_js_points(env, p, n);
  tsc_points_free(p, n);
  return arr;
}

napi_value tsc_js_points(napi_env env, const tsc_point *p, size_t n) {
  napi_value arr = NULL;
  int ok = napi_create_array_with_length(env, n, &arr) == napi_ok;
  for (size_t i = 0; ok && i < n; i++) {
    napi_value row, v[4];
    ok = napi_create_array_with_length(env, 4, &row) == napi_ok &&
         napi_create_double(env, p[i].in_bit, &v[0]) == napi_ok &&
         napi_create_double(env, p[i].out, &v[1]) == napi_ok &&
         napi_create_uint32(env, p[i].kind, &v[2]) == napi_ok &&
         (p[i].window ? napi_create_buffer_copy(env, p[i].window_len, p[i].window, NULL, &v[3]) : napi_get_null(env, &v[3])) == napi_ok;
    for (uint32_t k = 0; ok && k < 4; k++) ok = napi_set_element(env, row, k, v[k]) == napi_ok;
    if (ok) ok = napi_set_element(env, arr, (uint32_t)i, row) == napi_ok;
  }
  return ok ? arr : NULL;
}

// inPos(handle) -> compressed bytes consumed; trailingGarbage(handle) -> boolean
static napi_value js_in_pos(napi_env env, napi_callback_info info) {
  napi_value argv[1], v = NULL;
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  handle *h = get_handle(env, argv[0]);
  if (h != NULL) napi_create_double(env, (double)tsc_in_pos(h->d), &v);
  return v;
}

// setReadSize(handle, bytes): compressed bytes per read (tsc_set_read_size)
static napi_value js_set_read_size(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (tsn_get_args(env, info, 2, argv) != 0) return NULL;
  handle *h = get_handle(env, argv[0]);
  uint32_t n = 0;
  if (h == NULL || napi_get_value_uint32(env, argv[1], &n) != napi_ok) return NULL;
  tsc_set_read_size(h->d, n);
  return NULL;
}

static napi_value js_trailing(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  handle *h = get_handle(env, argv[0]);
  return h ? tsn_bool(env, tsc_trailing_garbage(h->d)) : NULL;
}

// One decode request: optionally seek, fill `out`, and checksum it piece by piece.
typedef struct {
  handle *h;
  uint32_t kind; // 0: continue where the handle is
  double in_bit;
  unsigned char *cwin, *out;
  size_t cwin_len, len, piece, ncrcs;
  uint32_t *crcs;
  int64_t n;
  int errcode;
  char err[256];
  napi_async_work work;
  napi_deferred deferred;
  napi_ref refs[4]; // handle, out, window, crcs: alive until the worker is done with them
} job;

static void run(job *j) {
  tsc_dec *d = j->h->d;
  j->n = -1;
  if (j->kind != 0 && tsc_seek(d, j->kind, j->in_bit, j->cwin, j->cwin_len) != 0) goto fail;
  j->n = tsc_decode(d, j->out, j->len);
  if (j->n < 0) goto fail;
  if (j->crcs) tsc_piece_crcs(j->out, (size_t)j->n, j->piece, j->crcs, j->ncrcs);
  return;
fail:
  j->errcode = tsc_errcode(d);
  snprintf(j->err, sizeof j->err, "%s", tsc_error(d));
}

// Arguments: handle, kind, inBit, window | null, out, pieceSize, crcs (Uint32Array) | null.
static int parse_job(napi_env env, napi_callback_info info, job *j, napi_value *argv) {
  double kind, piece;
  memset(j, 0, sizeof *j);
  if (tsn_get_args(env, info, 7, argv) != 0) return -1;
  if ((j->h = get_handle(env, argv[0])) == NULL || tsn_num(env, argv[1], &kind) != 0 ||
      tsn_num(env, argv[2], &j->in_bit) != 0 || get_bytes(env, argv[3], &j->cwin, &j->cwin_len, 1) != 0 ||
      get_bytes(env, argv[4], &j->out, &j->len, 0) != 0 || tsn_num(env, argv[5], &piece) != 0) {
    return -1;
  }
  j->kind = (uint32_t)kind;
  j->piece = piece >= 1 ? (size_t)piece : 1;
  napi_valuetype t;
  if (napi_typeof(env, argv[6], &t) != napi_ok) return -1;
  if (t != napi_null && t != napi_undefined) {
    napi_typedarray_type tt;
    void *data;
    if (napi_get_typedarray_info(env, argv[6], &tt, &j->ncrcs, &data, NULL, NULL) != napi_ok || tt != napi_uint32_array) {
      tsn_throw(env, "tarstack_native: expected a Uint32Array of piece checksums");
      return -1;
    }
    if (j->ncrcs < (j->len + j->piece - 1) / j->piece) {
      tsn_throw(env, "tarstack_native: too few piece checksum slots");
      return -1;
    }
    j->crcs = data;
  }
  return 0;
}

// decodeSync(handle, kind, inBit, window, out, pieceSize, crcs) -> bytes decoded
static napi_value js_decode_sync(napi_env env, napi_callback_info info) {
  napi_value argv[7], v = NULL;
  job j;
  if (parse_job(env, info, &j, argv) != 0) return NULL;
  run(&j);
  if (j.n < 0) return tsc_js_throw(env, tsc_js_code_name(j.errcode), j.err);
  napi_create_double(env, (double)j.n, &v);
  return v;
}

static void exec_decode(napi_env env, void *data) {
  (void)env;
  run(data);
}

static void done_decode(napi_env env, napi_status status, void *data) {
  job *j = data;
  j->h->busy = 0;
  for (int i = 0; i < 4; i++) {
    if (j->refs[i]) napi_delete_reference(env, j->refs[i]);
  }
  napi_value v = NULL;
  if (status != napi_ok) {
    napi_reject_deferred(env, j->deferred, tsc_js_error(env, "ECANCELED", "codec: decode cancelled"));
  } else if (j->n < 0) {
    napi_reject_deferred(env, j->deferred, tsc_js_error(env, tsc_js_code_name(j->errcode), j->err));
  } else if (napi_create_double(env, (double)j->n, &v) == napi_ok) {
    napi_resolve_deferred(env, j->deferred, v);
  }
  napi_delete_async_work(env, j->work);
  free(j);
}

// decode(...same as decodeSync) -> Promise<bytes decoded>, decoded on the libuv threadpool.
static napi_value js_decode(napi_env env, napi_callback_info info) {
  napi_value argv[7], promise = NULL, name;
  job *j = malloc(sizeof *j);
  if (j == NULL) return tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  if (parse_job(env, info, j, argv) != 0) {
    free(j);
    return NULL;
  }
  int ok = napi_create_string_utf8(env, "tarstack:decode", NAPI_AUTO_LENGTH, &name) == napi_ok &&
           napi_create_promise(env, &j->deferred, &promise) == napi_ok;
  napi_value keep[4] = { argv[0], argv[4], argv[3], argv[6] };
  for (int i = 0; ok && i < 4; i++) {
    napi_valuetype t;
    ok = napi_typeof(env, keep[i], &t) == napi_ok;
    if (ok && (t == napi_object || t == napi_external)) ok = napi_create_reference(env, keep[i], 1, &j->refs[i]) == napi_ok;
  }
  ok = ok && napi_create_async_work(env, NULL, name, exec_decode, done_decode, j, &j->work) == napi_ok;
  if (ok && napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_async_work(env, j->work);
    ok = 0;
  }
  if (!ok) {
    for (int i = 0; i < 4; i++) {
      if (j->refs[i]) napi_delete_reference(env, j->refs[i]);
    }
    free(j); // a created promise is left pending: the throw below is what the caller sees
    return tsc_js_throw(env, "ENOMEM", "codec: cannot queue a decode");
  }
  j->h->busy = 1;
  return promise;
}

// zstdFrame(src: Buffer, level) -> Promise<Buffer>: one frame of a seekable copy, compressed on the
// threadpool so a recompress keeps both cores busy (JS decodes while workers compress).
typedef struct {
  const void *src;
  size_t len, n;
  int level;
  void *dst;
  char err[160];
  napi_ref src_ref;
  napi_async_work work;
  napi_deferred deferred;
} zjob;

static void exec_zstd(napi_env env, void *data) {
  (void)env;
  zjob *z = data;
  z->n = tsc_zstd_frame(z->src, z->len, z->level, &z->dst, z->err, sizeof z->err);
}

static void done_zstd(napi_env env, napi_status status, void *data) {
  zjob *z = data;
  napi_delete_reference(env, z->src_ref);
  napi_value v = NULL;
  if (status != napi_ok) napi_reject_deferred(env, z->deferred, tsc_js_error(env, "ECANCELED", "codec: compression cancelled"));
  else if (z->n == 0) napi_reject_deferred(env, z->deferred, tsc_js_error(env, "ENOMEM", z->err));
  else if (napi_create_buffer_copy(env, z->n, z->dst, NULL, &v) == napi_ok) napi_resolve_deferred(env, z->deferred, v);
  else napi_reject_deferred(env, z->deferred, tsc_js_error(env, "ENOMEM", "codec: out of memory"));
  free(z->dst);
  napi_delete_async_work(env, z->work);
  free(z);
}

static napi_value js_zstd_frame(napi_env env, napi_callback_info info) {
  napi_value argv[2], promise = NULL, name;
  double level;
  unsigned char *src;
  size_t len;
  if (tsn_get_args(env, info, 2, argv) != 0 || get_bytes(env, argv[0], &src, &len, 0) != 0 || tsn_num(env, argv[1], &level) != 0) return NULL;
  zjob *z = calloc(1, sizeof *z);
  if (z == NULL) return tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  z->src = src;
  z->len = len;
  z->level = (int)level;
  if (napi_create_string_utf8(env, "tarstack:zstd", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_reference(env, argv[0], 1, &z->src_ref) != napi_ok) {
    free(z);
    return NULL;
  }
  if (napi_create_promise(env, &z->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, exec_zstd, done_zstd, z, &z->work) != napi_ok) {
    napi_delete_reference(env, z->src_ref);
    free(z);
    return NULL;
  }
  if (napi_queue_async_work(env, z->work) != napi_ok) {
    napi_delete_async_work(env, z->work);
    napi_delete_reference(env, z->src_ref);
    free(z);
    return NULL;
  }
  return promise;
}

// crc32(data: Uint8Array, crc) -> zlib.crc32(data, crc), folded (crc32_fold.c): indexing's piece
// checksums on Node's thread.
napi_value tsc_js_crc32(napi_env env, napi_callback_info info) {
  napi_value argv[2], v = NULL;
  if (tsn_get_args(env, info, 2, argv) != 0) return NULL;
  napi_typedarray_type tt;
  size_t len = 0;
  void *data = NULL;
  uint32_t crc = 0;
  if (napi_get_typedarray_info(env, argv[0], &tt, &len, &data, NULL, NULL) != napi_ok || tt != napi_uint8_array) return tsn_throw(env, "crc32: expected a Uint8Array");
  if (napi_get_value_uint32(env, argv[1], &crc) != napi_ok) return tsn_throw(env, "crc32: expected a number");
  napi_create_uint32(env, tsc_crc32(crc, data, len), &v);
  return v;
}

int tsn_codec_init(napi_env env, napi_value exports) {
  // Node's zlib (Chromium's) checks the CPU for its SIMD crc32 only on this call or a stream init:
  // without it, a zstd-only process checksums its pieces at a third of the speed.
  crc32(0L, Z_NULL, 0);
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
    { "open", js_open }, { "close", js_close }, { "scanBegin", js_scan_begin },
    { "takePoints", js_take_points }, { "inPos", js_in_pos }, { "setReadSize", js_set_read_size }, { "trailingGarbage", js_trailing },
    { "decodeSync", js_decode_sync }, { "decode", js_decode }, { "zstdFrame", js_zstd_frame },
    { "aheadStart", tsc_js_ahead_start }, { "aheadPush", tsc_js_ahead_push }, { "aheadPop", tsc_js_ahead_pop }, { "aheadStop", tsc_js_ahead_stop_js }, { "crc32", tsc_js_crc32 },
    { "slab", tsc_js_slab }, { "slabsRelease", tsc_js_slabs_release },
    { "streamStart", tsr_js_start }, { "streamEnd", tsr_js_end }, { "streamAbort", tsr_js_abort }, { "streamInfo", tsr_js_info }, { "streamCopy", tsr_js_copy },
  };
  napi_value codec;
  if (napi_create_object(env, &codec) != napi_ok) return -1;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, codec, fns[i].name, fn) != napi_ok) {
      return -1;
    }
  }
  return napi_set_named_property(env, exports, "codec", codec) == napi_ok ? 0 : -1;
}
