// The `fetch` object (src/native/fetch.ts): a remote blob's chunk jobs and range jobs (fetch.c) on
// threads of their own, their news reaching JS through a threadsafe function that holds the loop
// only while the job runs; chunksSync runs a chunk job on the calling thread.
#include "fetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// ---- news to JS ----

typedef struct {
  int64_t next, mismatch;
  int end; // 0 progress, 1 done, 2 failed
  long status;
  char *message, *challenge;
  unsigned char *bytes; // a range job's bytes, done: handed to JS
  size_t len;
} news;

static void news_free(news *n) {
  free(n->message), free(n->challenge), free(n->bytes), free(n);
}

void tsf_post(fjob *j, int end) {
  news *n = j->closing ? NULL : calloc(1, sizeof *n);
  if (n == NULL) return;
  n->next = atomic_load(&j->next), n->end = end, n->mismatch = j->mismatch, n->status = j->err_status;
  if (end == 2) n->message = strdup(j->err), n->challenge = j->challenge ? strdup(j->challenge) : NULL;
  if (end == 1 && j->out) n->bytes = j->out, n->len = (size_t)(j->end - j->start), j->out = NULL;
  napi_status st = napi_call_threadsafe_function(j->tsfn, n, napi_tsfn_blocking);
  if (st != napi_ok) news_free(n);
  if (st == napi_closing) j->closing = 1;
}

static void bytes_finalize(napi_env env, void *data, void *hint) {
  free(data);
}

// onNews(next, end: 0 progress | 1 done | 2 failed, status, message, challenge, mismatch, bytes)
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  news *n = data;
  if (env != NULL) {
    napi_value argv[7], undef;
    napi_get_undefined(env, &undef);
    argv[6] = undef;
    if (n->bytes && napi_create_external_buffer(env, n->len, n->bytes, bytes_finalize, NULL, &argv[6]) == napi_ok)
      n->bytes = NULL; // the Buffer's now
    napi_create_double(env, (double)n->next, &argv[0]);
    napi_create_int32(env, n->end, &argv[1]);
    napi_create_double(env, (double)n->status, &argv[2]);
    argv[3] = argv[4] = undef;
    if (n->message) napi_create_string_utf8(env, n->message, NAPI_AUTO_LENGTH, &argv[3]);
    if (n->challenge) napi_create_string_latin1(env, n->challenge, NAPI_AUTO_LENGTH, &argv[4]);
    napi_create_double(env, (double)n->mismatch, &argv[5]);
    napi_call_function(env, undef, cb, 7, argv, NULL);
  }
  news_free(n);
}

static void *thread_main(void *arg) {
  fjob *j = arg;
  pthread_setname_np(pthread_self(), "tarstack:fetch"); // 15 chars at most: its name in top and perf
  tsf_run(j);
  tsf_post(j, j->failed ? 2 : 1);
  if (!j->closing) napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
  tsf_job_unref(j);
  atomic_fetch_sub(&tsf_running, 1);
  return NULL;
}

// ---- JS ----

static napi_value throw_msg(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

// A Buffer's bytes copied (NULL for null/undefined); -1 on a wrong type (a TypeError is pending).
static int copy_buffer(napi_env env, napi_value v, unsigned char **out, size_t *len) {
  napi_valuetype t;
  *out = NULL, *len = 0;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_null || t == napi_undefined) return 0;
  void *data;
  if (napi_get_buffer_info(env, v, &data, len) != napi_ok) return tsn_throw(env, "fetch: expected a Buffer"), -1;
  if ((*out = malloc(*len ? *len : 1)) == NULL) return throw_msg(env, "fetch: out of memory"), -1;
  memcpy(*out, data, *len);
  return 0;
}

// target: [url, host, headers: string[] ("name: value"), tlsVerify, ca, cert, key (PEM Buffers or null), deadline]
static int read_target(napi_env env, napi_value a, target *t) {
  napi_value v[8];
  for (uint32_t i = 0; i < 8; i++)
    if (napi_get_element(env, a, i, &v[i]) != napi_ok) return tsn_throw(env, "fetch: expected a target"), -1;
  bool verify;
  uint32_t nh = 0;
  size_t n;
  if ((t->url = tsn_latin1(env, v[0], NULL)) == NULL || (t->host = tsn_latin1(env, v[1], NULL)) == NULL ||
      napi_get_array_length(env, v[2], &nh) != napi_ok || napi_get_value_bool(env, v[3], &verify) != napi_ok ||
      tsn_num(env, v[7], &t->deadline) != 0)
    return tsn_throw(env, "fetch: bad target"), -1;
  t->verify = verify;
  if (copy_buffer(env, v[4], (unsigned char **)&t->ca.data, &n) != 0) return -1;
  t->ca.len = n;
  if (copy_buffer(env, v[5], (unsigned char **)&t->cert.data, &n) != 0) return -1;
  t->cert.len = n;
  if (copy_buffer(env, v[6], (unsigned char **)&t->key.data, &n) != 0) return -1;
  t->key.len = n;
  t->ca.flags = t->cert.flags = t->key.flags = CURL_BLOB_NOCOPY;
  for (uint32_t i = 0; i < nh; i++) {
    napi_value hv;
    char *s;
    if (napi_get_element(env, v[2], i, &hv) != napi_ok || (s = tsn_latin1(env, hv, NULL)) == NULL) return -1;
    struct curl_slist *l = curl_slist_append(t->headers, s);
    free(s);
    if (l == NULL) return throw_msg(env, "fetch: out of memory"), -1;
    t->headers = l;
  }
  return 0;
}

static fjob *job_new(napi_env env, napi_value tgt) {
  tsf_init();
  fjob *j = calloc(1, sizeof *j);
  if (j == NULL) return throw_msg(env, "fetch: out of memory"), NULL;
  j->refs = 1;
  j->mismatch = -1;
  j->fd = -1;
  atomic_init(&j->want, NEVER);
  if (read_target(env, tgt, &j->t) != 0 || (j->md = EVP_MD_CTX_new()) == NULL) {
    if (j->md == NULL) napi_throw_error(env, NULL, "fetch: out of memory"); // else already thrown
    tsf_job_unref(j);
    return NULL;
  }
  return j;
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  tsf_job_unref(data);
}

// The job on a thread of its own, its news to `cb`; returns its handle.
static napi_value start(napi_env env, fjob *j, napi_value cb) {
  napi_value name, ext;
  if (napi_create_string_utf8(env, "tarstack:fetch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, cb, NULL, name, 0, 1, NULL, NULL, NULL, call_js, &j->tsfn) != napi_ok) {
    tsf_job_unref(j);
    return throw_msg(env, "fetch: cannot create the news callback");
  }
  if (napi_create_external(env, j, handle_finalize, NULL, &ext) != napi_ok) {
    napi_release_threadsafe_function(j->tsfn, napi_tsfn_abort);
    tsf_job_unref(j);
    return throw_msg(env, "fetch: out of memory");
  }
  j->refs++; // the thread's; the handle's is dropped by its finalizer
  atomic_fetch_add(&tsf_running, 1);
  pthread_t th;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  int e = pthread_create(&th, &at, thread_main, j);
  pthread_attr_destroy(&at);
  if (e != 0) {
    j->refs--;
    atomic_fetch_sub(&tsf_running, 1);
    napi_release_threadsafe_function(j->tsfn, napi_tsfn_abort);
    return tsn_throw_errno(env, e, "pthread_create");
  }
  return ext;
}

// A chunk job from (target, fd, size, chunkSize, first, last, digests | null).
static fjob *chunk_job(napi_env env, napi_value *argv) {
  double fd, size, cs, first, last;
  if (tsn_num(env, argv[1], &fd) || tsn_num(env, argv[2], &size) || tsn_num(env, argv[3], &cs) || tsn_num(env, argv[4], &first) ||
      tsn_num(env, argv[5], &last))
    return NULL;
  if (cs < 1 || first < 0 || last < first || last * cs >= size) return tsn_throw(env, "fetch: bad chunk range"), NULL;
  fjob *j = job_new(env, argv[0]);
  if (j == NULL) return NULL;
  size_t dn;
  j->fd = (int)fd, j->size = (int64_t)size, j->cs = (int64_t)cs, j->first = (int64_t)first, j->last = (int64_t)last;
  j->start = j->first * j->cs, j->end = (j->last + 1) * j->cs < j->size ? (j->last + 1) * j->cs : j->size;
  atomic_init(&j->next, j->first);
  if (copy_buffer(env, argv[6], &j->digests, &dn) != 0) return tsf_job_unref(j), NULL;
  if (j->digests && dn < (size_t)(j->last - j->first + 1) * 32) return tsf_job_unref(j), tsn_throw(env, "fetch: too few digests"), NULL;
  return j;
}

// chunks(target, fd, size, chunkSize, first, last, digests | null, want, onNews) -> handle
static napi_value js_chunks(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  double want;
  fjob *j;
  if (tsn_get_args(env, info, 9, argv) != 0 || tsn_num(env, argv[7], &want) || (j = chunk_job(env, argv)) == NULL) return NULL;
  atomic_init(&j->want, want >= 9e15 ? NEVER : (int64_t)want);
  return start(env, j, argv[8]);
}

// The bytes [start, end) of a target into memory, on a thread of its own (onNews's last argument
// when done).
static fjob *range_job(napi_env env, napi_value *argv) {
  double start, end;
  if (tsn_num(env, argv[1], &start) || tsn_num(env, argv[2], &end)) return NULL;
  if (start < 0 || end <= start) return tsn_throw(env, "fetch: bad range"), NULL;
  fjob *j = job_new(env, argv[0]);
  if (j == NULL) return NULL;
  j->start = (int64_t)start, j->end = (int64_t)end;
  if ((j->out = malloc((size_t)(j->end - j->start))) == NULL) return tsf_job_unref(j), throw_msg(env, "fetch: out of memory"), NULL;
  return j;
}

// range(target, start, end, onNews) -> handle
static napi_value js_range(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  fjob *j;
  if (tsn_get_args(env, info, 4, argv) != 0 || (j = range_job(env, argv)) == NULL) return NULL;
  return start(env, j, argv[3]);
}

static fjob *job_of(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) tsn_throw(env, "fetch: expected a fetch handle");
  return data;
}

// want(handle, k) -> the first chunk not yet stored; if it is <= k, onNews comes once k is stored (or at the end)
static napi_value js_want(napi_env env, napi_callback_info info) {
  napi_value argv[2], r;
  double k;
  if (tsn_get_args(env, info, 2, argv) != 0 || tsn_num(env, argv[1], &k) != 0) return NULL;
  fjob *j = job_of(env, argv[0]);
  if (j == NULL) return NULL;
  long long w = atomic_load(&j->want);
  while ((int64_t)k < w && !atomic_compare_exchange_weak(&j->want, &w, (long long)k)) {
  }
  napi_create_double(env, (double)atomic_load(&j->next), &r); // seen here, or by the thread after its store
  return r;
}

// A failed job thrown as Error(message) with `status`, `mismatch` (the chunk, or -1) and `next`
// (chunks before it were stored).
static void throw_failure(napi_env env, fjob *j) {
  napi_value msg, err, v[3];
  const char *names[3] = { "status", "mismatch", "next" };
  double vals[3] = { (double)j->err_status, (double)j->mismatch, (double)atomic_load(&j->next) };
  if (napi_create_string_utf8(env, j->err, NAPI_AUTO_LENGTH, &msg) != napi_ok || napi_create_error(env, NULL, msg, &err) != napi_ok) return;
  for (int i = 0; i < 3; i++)
    if (napi_create_double(env, vals[i], &v[i]) != napi_ok || napi_set_named_property(env, err, names[i], v[i]) != napi_ok) return;
  napi_throw(env, err);
}

// chunksSync(target, fd, size, chunkSize, first, last, digests | null) -> last + 1, the chunks
// fetched, checked and written on this thread; throws (throw_failure: `next` says what was stored)
static napi_value js_chunks_sync(napi_env env, napi_callback_info info) {
  napi_value argv[7], r = NULL;
  fjob *j;
  if (tsn_get_args(env, info, 7, argv) != 0 || (j = chunk_job(env, argv)) == NULL) return NULL;
  tsf_run(j);
  if (j->failed) throw_failure(env, j);
  else napi_create_double(env, (double)atomic_load(&j->next), &r);
  tsf_job_unref(j);
  return r;
}

int tsn_fetch_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = { { "chunks", js_chunks }, { "want", js_want }, { "range", js_range }, { "chunksSync", js_chunks_sync } };
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) return -1;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, obj, fns[i].name, fn) != napi_ok)
      return -1;
  }
  return napi_set_named_property(env, exports, "fetch", obj) == napi_ok ? 0 : -1;
}
