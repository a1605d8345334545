// The decode-ahead calls of the `codec` object (codec_ahead.c as JS sees it). aheadStart gives the
// handle's decoder to a thread of its own; aheadPush queues an output Buffer (kept alive until
// popped or stopped); aheadPop hands back finished ones in push order, waiting if asked (indexing)
// or not (serving, told by `onReady` through a threadsafe function after each one); aheadStop,
// close and garbage collection end the thread, and the handle must seek again. A call to onReady
// may still come after aheadStop (queued before it): the JS side ignores it.
#include "codec_js.h"

#include <pthread.h>
#include <stdlib.h>

// Freed by aheadStop, after the thread that uses it is joined: the threadsafe function's own
// finalizer would run only on a later loop turn, which a process that exits never reaches.
struct ahead_ctx {
  napi_threadsafe_function tsfn; // NULL without onReady
  size_t queued; // pushed and not popped: while any are, the callback keeps Node's loop alive
  int zcheck;    // indexing zstd: the frame checksums are checked here, on pop (codec_zsum.c)
  tsc_zcheck zc;
};

typedef struct {
  napi_ref out, crcs;
} tag;

static void ready(void *arg) {
  ahead_ctx *c = arg;
  napi_call_threadsafe_function(c->tsfn, NULL, napi_tsfn_nonblocking);
}

// Touches nothing of ours: it may run after aheadStop freed the context.
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context, (void)data;
  if (env == NULL) return;
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_call_function(env, undef, cb, 0, NULL, NULL);
}

static void drop_tag(napi_env env, tag *t) {
  if (t == NULL) return;
  if (t->out) napi_delete_reference(env, t->out);
  if (t->crcs) napi_delete_reference(env, t->crcs);
  free(t);
}

static void drop(tsc_areq *r, void *env) { drop_tag(env, r->tag); }

void tsc_js_ahead_stop(napi_env env, handle *h) {
  if (h->stream) return tsr_handle_stop(h); // a stream's thread (stream.c)
  if (h->ahead == NULL) return;
  tsc_ahead_free(h->ahead, drop, env); // joins the thread: nothing decodes into our buffers after this
  h->ahead = NULL;
  ahead_ctx *c = h->actx;
  h->actx = NULL;
  if (c == NULL) return;
  if (c->tsfn) napi_release_threadsafe_function(c->tsfn, napi_tsfn_abort);
  free(c);
}

// aheadStart(handle, onReady: () => void | null)
napi_value tsc_js_ahead_start(napi_env env, napi_callback_info info) {
  napi_value argv[2], name;
  napi_valuetype t;
  if (tsn_get_args(env, info, 2, argv) != 0) return NULL;
  handle *h = tsc_js_handle(env, argv[0], 0);
  if (h == NULL || napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
  ahead_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) return tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  if (t == napi_function) {
    if (napi_create_string_utf8(env, "tarstack:ahead", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &c->tsfn) != napi_ok) {
      free(c);
      return tsc_js_throw(env, "ENOMEM", "codec: cannot create the decode-ahead callback");
    }
    napi_unref_threadsafe_function(env, c->tsfn); // an idle stream does not keep the process alive
  }
  // serving asks for piece checksums, made on the thread (Node's thread has the FUSE replies to
  // make); indexing passes none. Indexing zstd: the thread skips the frame checksums and Node's
  // thread, which mostly waits for it, checks them on pop (codec_zsum.c).
  if (c->tsfn == NULL && tsc_zs_defer(h->d)) {
    c->zcheck = 1;
    tsc_zcheck_init(&c->zc);
  }
  h->ahead = tsc_ahead_new(h->d, c->tsfn ? ready : NULL, c);
  if (h->ahead == NULL) {
    if (c->tsfn) napi_release_threadsafe_function(c->tsfn, napi_tsfn_abort);
    free(c);
    return tsc_js_throw(env, "ENOMEM", "codec: cannot start a decode-ahead thread");
  }
  h->actx = c;
  return tsn_undefined(env);
}

// aheadPush(handle, out: Buffer, pieceSize, crcs: Uint32Array | null)
napi_value tsc_js_ahead_push(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double piece;
  if (tsn_get_args(env, info, 4, argv) != 0) return NULL;
  handle *h = tsc_js_handle(env, argv[0], 1);
  if (h == NULL) return NULL;
  if (h->ahead == NULL || h->stream) return tsc_js_throw(env, "EINVAL", "codec: not decoding ahead");
  tsc_areq *r = calloc(1, sizeof *r);
  tag *tg = calloc(1, sizeof *tg);
  if (r == NULL || tg == NULL) {
    free(r), free(tg);
    return tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  }
  r->tag = tg;
  napi_valuetype t;
  int ok = napi_get_buffer_info(env, argv[1], (void **)&r->out, &r->len) == napi_ok && tsn_num(env, argv[2], &piece) == 0 &&
           napi_typeof(env, argv[3], &t) == napi_ok;
  r->piece = ok && piece >= 1 ? (size_t)piece : 1;
  if (ok && t != napi_null && t != napi_undefined) {
    napi_typedarray_type tt;
    size_t n;
    void *data;
    ok = napi_get_typedarray_info(env, argv[3], &tt, &n, &data, NULL, NULL) == napi_ok && tt == napi_uint32_array &&
         n >= (r->len + r->piece - 1) / r->piece;
    r->crcs = data;
    if (ok) ok = napi_create_reference(env, argv[3], 1, &tg->crcs) == napi_ok;
  }
  if (ok) ok = napi_create_reference(env, argv[1], 1, &tg->out) == napi_ok;
  if (!ok) {
    drop_tag(env, tg);
    free(r);
    return tsc_js_throw(env, "EINVAL", "codec: aheadPush expects a Buffer, a piece size and a Uint32Array of enough piece checksums or null");
  }
  if (h->actx->tsfn && h->actx->queued++ == 0) napi_ref_threadsafe_function(env, h->actx->tsfn);
  tsc_ahead_push(h->ahead, r);
  return tsn_undefined(env);
}

// aheadPop(handle, wait) -> [bytes, inPos, points] for the oldest pushed Buffer once decoded, else null
napi_value tsc_js_ahead_pop(napi_env env, napi_callback_info info) {
  napi_value argv[2], out = NULL, v[3];
  bool wait = false;
  if (tsn_get_args(env, info, 2, argv) != 0) return NULL;
  handle *h = tsc_js_handle(env, argv[0], 1);
  if (h == NULL || napi_get_value_bool(env, argv[1], &wait) != napi_ok) return NULL;
  if (h->stream) return tsc_js_throw(env, "EBUSY", "codec handle is streaming");
  tsc_areq *r = h->ahead ? tsc_ahead_pop(h->ahead, wait) : NULL;
  if (r == NULL) {
    napi_get_null(env, &out);
    return out;
  }
  if (r->n >= 0 && h->actx->zcheck && tsc_zcheck_feed(&h->actx->zc, r->out, (size_t)r->n, r->zends, r->nzends, r->err, sizeof r->err) != 0) {
    r->n = -1;
    r->errcode = TSC_ECORRUPT;
  }
  drop_tag(env, r->tag); // the Buffer is the caller's again
  if (h->actx->tsfn && --h->actx->queued == 0) napi_unref_threadsafe_function(env, h->actx->tsfn);
  if (r->n < 0) {
    tsc_js_throw(env, tsc_js_code_name(r->errcode), r->err);
  } else if (napi_create_double(env, (double)r->n, &v[0]) == napi_ok && napi_create_double(env, (double)r->in_pos, &v[1]) == napi_ok &&
             (v[2] = tsc_js_points(env, r->pts, r->npts)) != NULL && napi_create_array_with_length(env, 3, &out) == napi_ok) {
    for (uint32_t k = 0; out && k < 3; k++) {
      if (napi_set_element(env, out, k, v[k]) != napi_ok) out = NULL;
    }
  }
  tsc_areq_free(r);
  return out;
}

// aheadStop(handle): the thread ends (after the decode it is in), unpopped Buffers are let go.
napi_value tsc_js_ahead_stop_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  handle *h = tsc_js_handle(env, argv[0], 1);
  if (h == NULL) return NULL;
  tsc_js_ahead_stop(env, h);
  return tsn_undefined(env);
}

// Slabs: the memory decode-ahead streams decode into (src/tar/decode-ahead.ts), one size, reused.
// Allocating 8 MiB per 8 MiB decoded cost a page fault per 4 KiB on the decoding thread (glibc
// trims the freed heap and maps it back: ~130k faults per GiB). A slab is handed to JS as an
// external Buffer; only when the GC has collected that Buffer (no view of it is left anywhere) does
// its finalizer put the memory back here, so reuse never changes bytes a view still shows. V8
// counts an external Buffer's size as it does its own Buffers' (telling it again with
// napi_adjust_external_memory made every GC a full mark-compact). At most SLAB_KEEP wait here for
// reuse; slabsRelease frees them (no stream left), and slabs collected after it are freed too
// until slab() is asked again.
#define SLAB_KEEP 8
static pthread_mutex_t slab_mu = PTHREAD_MUTEX_INITIALIZER;
static void *slab_free[SLAB_KEEP];
static size_t slab_nfree;
static int slab_keeping; // between slab() and slabsRelease()

static void slab_back(napi_env env, void *data, void *hint) {
  size_t bytes = (size_t)(uintptr_t)hint;
  pthread_mutex_lock(&slab_mu);
  if (slab_keeping && bytes == TSC_SLAB_BYTES && slab_nfree < SLAB_KEEP) data = (slab_free[slab_nfree++] = data, NULL);
  pthread_mutex_unlock(&slab_mu);
  free(data);
}

// slab() -> a Buffer of TSC_SLAB_BYTES, its contents undefined.
napi_value tsc_js_slab(napi_env env, napi_callback_info info) {
  (void)info;
  void *p = NULL;
  pthread_mutex_lock(&slab_mu);
  slab_keeping = 1;
  if (slab_nfree > 0) p = slab_free[--slab_nfree];
  pthread_mutex_unlock(&slab_mu);
  if (p == NULL) p = malloc(TSC_SLAB_BYTES);
  if (p == NULL) return tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  napi_value buf;
  if (napi_create_external_buffer(env, TSC_SLAB_BYTES, p, slab_back, (void *)(uintptr_t)TSC_SLAB_BYTES, &buf) != napi_ok) {
    free(p);
    return tsc_js_throw(env, "ENOMEM", "codec: cannot make a slab Buffer");
  }
  return buf;
}

// slabsRelease(): the slabs waiting for reuse are freed.
napi_value tsc_js_slabs_release(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&slab_mu);
  slab_keeping = 0;
  while (slab_nfree > 0) free(slab_free[--slab_nfree]);
  pthread_mutex_unlock(&slab_mu);
  return tsn_undefined(env);
}
