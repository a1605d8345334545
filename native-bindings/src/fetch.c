// The `fetch` object: range GETs of remote blobs with libcurl on native threads, each whole chunk's
// sha256 (libcrypto) checked against its digest and pwritten to the blob's cache file, so no byte of
// a remote read passes through JS (src/remote/fetch-thread.ts is its JS side, and says what is
// retried and refused). A job's news reach JS through a threadsafe function that holds the loop
// only while the job runs.
#include "tsn.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IDLE_S 5            // no byte for this long: the request is abandoned (retried)
#define BUF_BYTES (512 << 10) // curl's receive buffer: up to 32 chunks hashed and written per call
#define IDLE_EASY 8          // easy handles kept, with their live connections (keep-alive)
#define NEVER INT64_MAX

// Where to ask and how (one per job, its own copies).
typedef struct {
  char *url, *host;
  struct curl_slist *headers;
  int verify;
  struct curl_blob ca, cert, key; // PEM; data NULL when absent
  double deadline;                // ms since the epoch
} target;

typedef struct fjob {
  target t;
  // chunk mode: chunks [first, last] of a blob of `size` bytes into fd; else bytes [start, end) into `out`
  int fd;
  int64_t size, cs, first, last;
  unsigned char *digests; // 32 a chunk from `first`, or NULL
  atomic_llong next, want; // first chunk not stored; the chunk a read waits for (NEVER: none)
  unsigned char *out;
  int64_t start, end, got; // byte range of the request; bytes taken (memory mode)
  // one attempt
  int64_t from;    // where it asked from
  int64_t taken;   // bytes this attempt took
  long status;
  char *challenge; // WWW-Authenticate of the last response
  unsigned char *stage;
  int64_t staged;
  // the end
  long err_status;
  int retryable, failed;
  int64_t mismatch; // -1, else the chunk that did not match
  char err[400];
  EVP_MD_CTX *md;
  napi_threadsafe_function tsfn;
  int closing; // the tsfn said napi_closing (its environment is going): never used again
  atomic_int refs; // the thread, and the JS handle
} fjob;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256; // fetched once, not looked up at every chunk
static atomic_int running, stopping; // jobs on threads; the process is exiting
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static CURL *idle[IDLE_EASY];
static int nidle;

// At exit (process.exit while fetching): running jobs are told to stop and given a moment to leave
// libcurl and libcrypto before the atexit handlers registered before ours (OpenSSL's) tear them down.
static void stop_at_exit(void) {
  atomic_store(&stopping, 1);
  for (int i = 0; i < 100 && atomic_load(&running) > 0; i++) {
    struct timespec ts = { 0, 5000000 };
    nanosleep(&ts, NULL);
  }
}

static void init_once(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  atexit(stop_at_exit);
}

static int stopped(void) {
  return atomic_load(&stopping);
}

static CURL *easy_get(void) {
  CURL *h = NULL;
  pthread_mutex_lock(&idle_mu);
  if (nidle > 0) h = idle[--nidle];
  pthread_mutex_unlock(&idle_mu);
  return h ? h : curl_easy_init();
}

static void easy_put(CURL *h) {
  pthread_mutex_lock(&idle_mu);
  if (nidle < IDLE_EASY) idle[nidle++] = h, h = NULL;
  pthread_mutex_unlock(&idle_mu);
  if (h) curl_easy_cleanup(h);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fail(fjob *j, long status, int retryable, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(fjob *j, long status, int retryable, const char *fmt, ...) {
  if (j->failed) return; // the first reason stands
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->err, sizeof j->err, fmt, ap);
  va_end(ap);
  j->failed = 1, j->err_status = status, j->retryable = retryable;
}

static void target_free(target *t) {
  free(t->url), free(t->host), free(t->ca.data), free(t->cert.data), free(t->key.data);
  curl_slist_free_all(t->headers);
}

static void job_unref(fjob *j) {
  if (--j->refs > 0) return;
  target_free(&j->t);
  free(j->digests), free(j->out), free(j->challenge), free(j->stage);
  EVP_MD_CTX_free(j->md);
  free(j);
}

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

static void post(fjob *j, int end) {
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

// ---- one request ----

// Chunks stored up to k (exclusive): told to JS if a read waits for one of them.
static void stored_to(fjob *j, int64_t k) {
  atomic_store(&j->next, k);
  long long w = atomic_load(&j->want);
  if (w < k && atomic_compare_exchange_strong(&j->want, &w, NEVER)) post(j, 0);
}

static int chunk_ok(fjob *j, int64_t k, const unsigned char *p, int64_t len) {
  if (j->digests == NULL) return 1;
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (EVP_DigestInit_ex(j->md, sha256, NULL) != 1 || EVP_DigestUpdate(j->md, p, (size_t)len) != 1 ||
      EVP_DigestFinal_ex(j->md, md, &mdlen) != 1 || mdlen != 32) {
    fail(j, 0, 0, "%s: sha256 failed", j->t.host);
    return 0;
  }
  if (memcmp(md, j->digests + (k - j->first) * 32, 32) == 0) return 1;
  j->mismatch = k;
  fail(j, 0, 0, "chunk %lld does not match its digest", (long long)k);
  return 0;
}

static int write_all(fjob *j, const unsigned char *p, int64_t n, int64_t pos) {
  while (n > 0) {
    ssize_t w = pwrite(j->fd, p, (size_t)n, pos);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      fail(j, 0, 0, "the chunk cache: %s", w < 0 ? strerrorname_np(errno) : "short write");
      return 0;
    }
    p += w, n -= w, pos += w;
  }
  return 1;
}

// Checked whole chunks [*span, at) of b, from blob offset span_pos, written; on a failed write
// *k falls back to the first of them (never told as stored).
static int flush(fjob *j, const unsigned char *b, int64_t *span, int64_t at, int64_t span_pos, int64_t *k) {
  if (*span < 0) return 1;
  int ok = write_all(j, b + *span, at - *span, span_pos);
  if (!ok) *k = span_pos / j->cs;
  *span = -1;
  return ok;
}

// Bytes of chunks next, next+1, ... in order: each whole chunk checked, then written (the whole
// chunks of one piece in one write); 0 on a refusal, when the
// chunks checked before it are still written and told.
static int chunk_sink(fjob *j, const unsigned char *b, int64_t n) {
  int64_t k = atomic_load(&j->next), k0 = k, at = 0, span = -1, span_pos = 0, cs = j->cs;
  while (at < n) {
    int64_t len = j->size - k * cs < cs ? j->size - k * cs : cs;
    if (j->staged == 0 && n - at >= len) {
      if (!chunk_ok(j, k, b + at, len)) break;
      if (span < 0) span = at, span_pos = k * cs;
      at += len, k++;
      if (len < cs && !flush(j, b, &span, at, span_pos, &k)) break; // the blob's short last chunk
      continue;
    }
    if (!flush(j, b, &span, at, span_pos, &k)) break;
    if (j->stage == NULL && (j->stage = malloc((size_t)cs)) == NULL) {
      fail(j, 0, 0, "%s: out of memory", j->t.host);
      break;
    }
    int64_t m = len - j->staged < n - at ? len - j->staged : n - at;
    memcpy(j->stage + j->staged, b + at, (size_t)m);
    j->staged += m, at += m;
    if (j->staged < len) continue;
    if (!chunk_ok(j, k, j->stage, len) || !write_all(j, j->stage, len, k * cs)) break;
    j->staged = 0, k++;
  }
  flush(j, b, &span, at, span_pos, &k);
  if (k > k0) stored_to(j, k);
  return !j->failed;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud) {
  fjob *j = ud;
  int64_t n = (int64_t)(size * nmemb);
  if (stopped()) return 0;
  if (j->status != 206 && !(j->status == 200 && j->from == 0)) return (size_t)n; // an error's body
  if (n > j->end - j->from - j->taken) {
    if (j->status == 206) fail(j, 206, 0, "%s: range %lld-%lld came back with more bytes", j->t.host, (long long)j->from, (long long)(j->end - 1));
    else fail(j, 200, 0, "%s ignores Range requests; tarstack reads remote layers by range", j->t.host);
    return 0;
  }
  j->taken += n;
  if (j->out) {
    memcpy(j->out + (j->from - j->start) + j->taken - n, p, (size_t)n);
    return (size_t)n;
  }
  return chunk_sink(j, (const unsigned char *)p, n) ? (size_t)n : 0;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  fjob *j = ud;
  size_t n = size * nmemb;
  static const char www[] = "www-authenticate:";
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { // a new response (after a redirect or 100)
    free(j->challenge), j->challenge = NULL;
    j->status = 0;
    long st = 0;
    if (sscanf(p, "HTTP/%*s %ld", &st) == 1) j->status = st;
  } else if (n > sizeof www - 1 && strncasecmp(p, www, sizeof www - 1) == 0 && j->challenge == NULL) {
    const char *v = p + sizeof www - 1, *e = p + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
    j->challenge = strndup(v, (size_t)(e - v));
  }
  return n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  return stopped();
}

// A refused certificate named as Node names it (its err.code), so messages read as before.
static const char *cert_code(CURL *h) {
  long v = 0;
  curl_easy_getinfo(h, CURLINFO_SSL_VERIFYRESULT, &v);
  switch (v) {
  case X509_V_OK: return "ERR_TLS_CERT_ALTNAME_INVALID"; // the chain was fine: curl's host check refused it
  case X509_V_ERR_CERT_HAS_EXPIRED: return "CERT_HAS_EXPIRED";
  case X509_V_ERR_CERT_NOT_YET_VALID: return "CERT_NOT_YET_VALID";
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "DEPTH_ZERO_SELF_SIGNED_CERT";
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "SELF_SIGNED_CERT_IN_CHAIN";
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: return "UNABLE_TO_GET_ISSUER_CERT_LOCALLY";
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
  }
  return X509_verify_cert_error_string(v);
}

static int cert_error(CURLcode c) {
  return c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CERTPROBLEM || c == CURLE_SSL_CACERT_BADFILE ||
         c == CURLE_SSL_ISSUER_ERROR || c == CURLE_SSL_CRL_BADFILE || c == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

// One request for [from, end); fails the job (retryable or not) unless it got them all.
static void attempt(fjob *j, CURL *h) {
  char range[64], errbuf[CURL_ERROR_SIZE] = "";
  j->from = j->out ? j->start + j->got : atomic_load(&j->next) * j->cs;
  j->taken = 0, j->staged = 0, j->status = 0;
  free(j->challenge), j->challenge = NULL;
  snprintf(range, sizeof range, "%lld-%lld", (long long)j->from, (long long)(j->end - 1));
  curl_easy_setopt(h, CURLOPT_URL, j->t.url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, j->t.headers);
  curl_easy_setopt(h, CURLOPT_RANGE, range);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L); // Authorization goes to the first host only (no UNRESTRICTED_AUTH)
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*"); // as node:http, which reads no proxy variables
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, IDLE_S * 1000L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)IDLE_S);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)BUF_BYTES);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, j);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, j);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, j);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, (long)j->t.verify);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, j->t.verify ? 2L : 0L);
  curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, j->t.ca.data ? &j->t.ca : NULL);
  curl_easy_setopt(h, CURLOPT_CAPATH, j->t.ca.data ? NULL : "/etc/ssl/certs");
  curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, j->t.cert.data ? &j->t.cert : NULL);
  curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, j->t.key.data ? &j->t.key : NULL);
  CURLcode c = curl_easy_perform(h);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
  if (j->out) j->got += j->taken;
  if (j->failed) return; // a refusal from on_data: its reason stands
  if (stopped()) return fail(j, 0, 0, "%s: abandoned", j->t.host);
  if (c != CURLE_OK) {
    long oserr = 0;
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
    if (c == CURLE_OPERATION_TIMEDOUT) return fail(j, 0, 1, "%s: no answer for %d s", j->t.host, IDLE_S);
    if (c == CURLE_PARTIAL_FILE || (c == CURLE_RECV_ERROR && oserr == 0)) return fail(j, 0, 1, "%s: the response was cut short", j->t.host);
    if (oserr != 0 && (c == CURLE_COULDNT_CONNECT || c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR))
      return fail(j, 0, 1, "%s: %s", j->t.host, strerrorname_np((int)oserr));
    if (c == CURLE_PEER_FAILED_VERIFICATION) return fail(j, 0, 0, "%s: %s", j->t.host, cert_code(h));
    return fail(j, 0, !cert_error(c), "%s: %s", j->t.host, errbuf[0] ? errbuf : curl_easy_strerror(c));
  }
  long st = j->status;
  int64_t want = j->end - j->from;
  if ((st == 206 || (st == 200 && j->from == 0)) && j->taken == want) return;
  if (st == 200 && j->from > 0) return fail(j, 200, 0, "%s ignores Range requests; tarstack reads remote layers by range", j->t.host);
  if (st == 206 || st == 200)
    return fail(j, st, 1, "%s: range %lld-%lld came back with %lld bytes", j->t.host, (long long)j->from, (long long)(j->end - 1), (long long)j->taken);
  fail(j, st, st >= 500 || st == 429, "%s: HTTP %ld for bytes %lld-%lld", j->t.host, st, (long long)j->from, (long long)(j->end - 1));
}

// The job's requests, retried with backoff (50 ms doubling to 1 s) until the deadline.
static void run(fjob *j) {
  CURL *h = easy_get();
  if (h == NULL) return fail(j, 0, 0, "%s: out of memory", j->t.host);
  for (long wait = 50;; wait = wait * 2 < 1000 ? wait * 2 : 1000) {
    attempt(j, h);
    if (!j->failed) break;
    if (!j->retryable || stopped() || now_ms() + wait > j->t.deadline) break;
    struct timespec ts = { wait / 1000, (wait % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    j->failed = 0, j->err_status = 0;
  }
  easy_put(h);
}

static void *thread_main(void *arg) {
  fjob *j = arg;
  pthread_setname_np(pthread_self(), "tarstack:fetch"); // 15 chars at most: its name in top and perf
  run(j);
  post(j, j->failed ? 2 : 1);
  if (!j->closing) napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
  job_unref(j);
  atomic_fetch_sub(&running, 1);
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
  pthread_once(&once, init_once);
  fjob *j = calloc(1, sizeof *j);
  if (j == NULL) return throw_msg(env, "fetch: out of memory"), NULL;
  j->refs = 1;
  j->mismatch = -1;
  j->fd = -1;
  atomic_init(&j->want, NEVER);
  if (read_target(env, tgt, &j->t) != 0 || (j->md = EVP_MD_CTX_new()) == NULL) {
    if (j->md == NULL) napi_throw_error(env, NULL, "fetch: out of memory"); // else already thrown
    job_unref(j);
    return NULL;
  }
  return j;
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  job_unref(data);
}

// The job on a thread of its own, its news to `cb`; returns its handle.
static napi_value start(napi_env env, fjob *j, napi_value cb) {
  napi_value name, ext;
  if (napi_create_string_utf8(env, "tarstack:fetch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, cb, NULL, name, 0, 1, NULL, NULL, NULL, call_js, &j->tsfn) != napi_ok) {
    job_unref(j);
    return throw_msg(env, "fetch: cannot create the news callback");
  }
  if (napi_create_external(env, j, handle_finalize, NULL, &ext) != napi_ok) {
    napi_release_threadsafe_function(j->tsfn, napi_tsfn_abort);
    job_unref(j);
    return throw_msg(env, "fetch: out of memory");
  }
  j->refs++; // the thread's; the handle's is dropped by its finalizer
  atomic_fetch_add(&running, 1);
  pthread_t th;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  int e = pthread_create(&th, &at, thread_main, j);
  pthread_attr_destroy(&at);
  if (e != 0) {
    j->refs--;
    atomic_fetch_sub(&running, 1);
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
  if (copy_buffer(env, argv[6], &j->digests, &dn) != 0) return job_unref(j), NULL;
  if (j->digests && dn < (size_t)(j->last - j->first + 1) * 32) return job_unref(j), tsn_throw(env, "fetch: too few digests"), NULL;
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
  if ((j->out = malloc((size_t)(j->end - j->start))) == NULL) return job_unref(j), throw_msg(env, "fetch: out of memory"), NULL;
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
  run(j);
  if (j->failed) throw_failure(env, j);
  else napi_create_double(env, (double)atomic_load(&j->next), &r);
  job_unref(j);
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
