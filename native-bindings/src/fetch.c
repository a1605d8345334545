// Range GETs of remote blobs with libcurl, each whole chunk's sha256 (libcrypto) checked against
// its digest and pwritten to the blob's cache file, so no byte of a remote read passes through JS.
// Runs on a job's own thread or, for chunksSync, the caller's; fetch_js.c is the `fetch` object
// around it, and src/remote/fetch-thread.ts its JS side, which says what is retried and refused.
#include "fetch.h"

#include <errno.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IDLE_S 5            // no byte for this long: the request is abandoned (retried)
#define BUF_BYTES (512 << 10) // curl's receive buffer: up to 32 chunks hashed and written per call
#define IDLE_EASY 8          // easy handles kept, with their live connections (keep-alive)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256; // fetched once, not looked up at every chunk
atomic_int tsf_running; // fetch.h
static atomic_int stopping; // the process is exiting
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static CURL *idle[IDLE_EASY];
static int nidle;

// At exit (process.exit while fetching): running jobs are told to stop and given a moment to leave
// libcurl and libcrypto before the atexit handlers registered before ours (OpenSSL's) tear them down.
static void stop_at_exit(void) {
  atomic_store(&stopping, 1);
  for (int i = 0; i < 100 && atomic_load(&tsf_running) > 0; i++) {
    struct timespec ts = { 0, 5000000 };
    nanosleep(&ts, NULL);
  }
}

static void init_once(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  atexit(stop_at_exit);
}

void tsf_init(void) {
  pthread_once(&once, init_once);
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

void tsf_job_unref(fjob *j) {
  if (--j->refs > 0) return;
  target_free(&j->t);
  free(j->digests), free(j->out), free(j->challenge), free(j->stage);
  EVP_MD_CTX_free(j->md);
  free(j);
}

// ---- one request ----

// Chunks stored up to k (exclusive): told to JS if a read waits for one of them.
static void stored_to(fjob *j, int64_t k) {
  atomic_store(&j->next, k);
  long long w = atomic_load(&j->want);
  if (w < k && atomic_compare_exchange_strong(&j->want, &w, NEVER)) tsf_post(j, 0);
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

// A refused certificate named as Node names it (its err.code), so messages read as before. curl
// checks the name itself after the handshake, and a mismatch leaves the verify result at the 1 it
// starts from (X509_V_ERR_UNSPECIFIED in 7.88), so its message is what tells that case apart.
static const char *cert_code(CURL *h, const char *errbuf) {
  long v = 0;
  curl_easy_getinfo(h, CURLINFO_SSL_VERIFYRESULT, &v);
  if (strstr(errbuf, "target host name") != NULL) return "ERR_TLS_CERT_ALTNAME_INVALID";
  switch (v) {
  case X509_V_OK: // the chain was fine: the name was refused
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH: return "ERR_TLS_CERT_ALTNAME_INVALID";
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

// host[:port] of the URL the request was at when it ended (as node's URL.host writes it), else `first`.
static void at_host(CURL *h, const char *first, char *out, size_t n) {
  char *url = NULL, *host = NULL, *port = NULL;
  CURLU *u = curl_url();
  snprintf(out, n, "%s", first);
  if (u != NULL && curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url != NULL &&
      curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) snprintf(out, n, "%s:%s", host, port);
    else snprintf(out, n, "%s", host);
  }
  curl_free(host), curl_free(port);
  curl_url_cleanup(u);
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
    char where[256];
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
    at_host(h, j->t.host, where, sizeof where); // the host it failed at: after a redirect, not the first
    if (c == CURLE_OPERATION_TIMEDOUT) return fail(j, 0, 1, "%s: no answer for %d s", where, IDLE_S);
    if (c == CURLE_PARTIAL_FILE || (c == CURLE_RECV_ERROR && oserr == 0)) return fail(j, 0, 1, "%s: the response was cut short", where);
    if (oserr != 0 && (c == CURLE_COULDNT_CONNECT || c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR))
      return fail(j, 0, 1, "%s: %s", where, strerrorname_np((int)oserr));
    if (c == CURLE_PEER_FAILED_VERIFICATION) return fail(j, 0, 0, "%s: %s", where, cert_code(h, errbuf));
    return fail(j, 0, !cert_error(c), "%s: %s", where, errbuf[0] ? errbuf : curl_easy_strerror(c));
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
void tsf_run(fjob *j) {
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
