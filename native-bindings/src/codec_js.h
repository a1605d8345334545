// What codec.c (the codec handle) shares with codec_ahead_js.c (its decode-ahead calls).
#ifndef TSC_CODEC_JS_H
#define TSC_CODEC_JS_H

#include "tsn.h"
#include "codec.h"

typedef struct ahead_ctx ahead_ctx;

typedef struct {
  tsc_dec *d; // NULL once closed
  int busy;   // an async decode is on the threadpool
  tsc_ahead *ahead; // decoding ahead on its own thread (aheadStart .. aheadStop)
  ahead_ctx *actx;
  struct tsr_stream *stream; // streaming (stream.c): its thread is `ahead`
} handle;

const char *tsc_js_code_name(int code);
napi_value tsc_js_error(napi_env env, const char *code, const char *msg);
napi_value tsc_js_throw(napi_env env, const char *code, const char *msg);
handle *tsc_js_handle(napi_env env, napi_value v, int busy_ok);
napi_value tsc_js_points(napi_env env, const tsc_point *p, size_t n);

void tsc_js_ahead_stop(napi_env env, handle *h);
napi_value tsc_js_ahead_start(napi_env env, napi_callback_info info);
napi_value tsc_js_ahead_push(napi_env env, napi_callback_info info);
napi_value tsc_js_ahead_pop(napi_env env, napi_callback_info info);
napi_value tsc_js_ahead_stop_js(napi_env env, napi_callback_info info);
napi_value tsc_js_crc32(napi_env env, napi_callback_info info);
// Decode-ahead slabs: 8 MiB, reused once the GC has collected the Buffer over one.
#define TSC_SLAB_BYTES ((size_t)8 << 20)
napi_value tsc_js_slab(napi_env env, napi_callback_info info);
napi_value tsc_js_slabs_release(napi_env env, napi_callback_info info);

// stream.c: streamed reads, answered from C slabs (the codec side)
void tsr_handle_stop(handle *h);
napi_value tsr_js_start(napi_env env, napi_callback_info info);
napi_value tsr_js_end(napi_env env, napi_callback_info info);
napi_value tsr_js_abort(napi_env env, napi_callback_info info);
napi_value tsr_js_info(napi_env env, napi_callback_info info);
napi_value tsr_js_copy(napi_env env, napi_callback_info info);

#endif
