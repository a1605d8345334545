// A remote blob's fetch job, shared by fetch.c (its requests: libcurl, each chunk checked and
// written) and fetch_js.c (the `fetch` object: arguments, threads, news to JS).
#ifndef TSN_FETCH_H
#define TSN_FETCH_H

#include "tsn.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdint.h>

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

extern atomic_int tsf_running; // jobs on threads (the exit hook waits for them)

void tsf_init(void);              // once per process: libcurl, sha256, the exit hook
void tsf_run(fjob *j);            // the job's requests, retried with backoff until its deadline
void tsf_job_unref(fjob *j);
void tsf_post(fjob *j, int end);  // fetch_js.c: news to JS (0 progress, 1 done, 2 failed)

#endif
