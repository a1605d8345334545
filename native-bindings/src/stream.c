// Streamed reads (issue 17): a member read sequentially from a local compressed archive is decoded
// ahead by the codec handle's decode-ahead thread (codec_ahead.c) into slabs of C memory, each
// piece checked against its crc32 from the seek table, and the session's READs of that member are
// answered here from the checked bytes: no JS per READ and no JS Buffer per slab (nothing for the
// GC). Only the decoding runs off Node's thread: READs are parked and answered, jobs pushed and
// slabs chosen on Node's thread, so a slab is rewritten only when no pushed job writes to it, no
// parked READ needs it and it lies behind the reader. JS starts a stream on a decoder standing at
// a piece (streamStart), registers members on it (readStreamed) and ends it to get the decoder back.
#include "codec_js.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define SP 16     // pieces per slab (4 MiB of 256 KiB pieces)
#define NSLAB 10  // slabs at most; a sequential reader uses 3-4 (1 MiB READs) or 6-7 (4 MiB READs)
#define JOB 4     // pieces per decode job
#define WINDOW 16 // pieces pushed past the furthest READ (decode-ahead.ts's WINDOW), at least
#define BEHIND 8  // pieces kept behind it for the kernel's READs out of order, at least
#define SPAN (SP + 1) // the widest READ the two above grow with: max_pages=1024's 4 MiB of 256 KiB pieces
#define QUEUED (4 * SP) // pieces pushed past the last checked one at most
#define MAGIC 0x7a537472u

enum { RUN, ENDING, DONE };

typedef struct park {
  fuse_req_t req;
  tsn_session *s;
  uint64_t a, b; // decoded bytes [a, b)
  struct park *next;
} park;

typedef struct {
  tsc_areq r; // first: tsc_areq_free frees the job
  uint32_t crcs[JOB];
  int64_t first;
} job;

struct tsr_stream {
  uint32_t magic;
  int refs, state, failed;
  handle *h;
  tsc_ahead *ahead;
  napi_threadsafe_function tsfn;
  int64_t base, limit; // pieces [base, limit) of one chunk; piece base starts at base_off
  uint64_t base_off, end_off;
  size_t piece;
  uint32_t *crcs; // expected, of pieces [base, limit)
  int64_t pushed, checked, last; // pushed up to, checked up to, furthest piece a READ wanted
  int64_t span; // pieces the widest READ so far touched (at most SPAN): the window and what stays behind grow with it
  unsigned char *slab[NSLAB];
  int64_t slab_first[NSLAB]; // -1: free
  park *parked;
  double reads; // READs answered or parked: JS ends a stream no READ came to for a while
  struct tsr_stream *next; // live streams (session end looks for its parked READs)
};

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static tsr_stream *live;

static uint64_t off_of(const tsr_stream *st, int64_t k) {
  return k >= st->limit ? st->end_off : st->base_off + (uint64_t)(k - st->base) * st->piece;
}

static int64_t piece_at(const tsr_stream *st, uint64_t off) { return st->base + (int64_t)((off - st->base_off) / st->piece); }

static int slab_of(const tsr_stream *st, int64_t k) {
  for (int i = 0; i < NSLAB; i++) {
    if (st->slab_first[i] >= 0 && k >= st->slab_first[i] && k < st->slab_first[i] + SP) return i;
  }
  return -1;
}

// Decoded ahead of the furthest READ, and kept behind it: two and one of the widest READs (the
// kernel's readahead asks that far ahead, and its READs may come a READ out of order), at least
// WINDOW and BEHIND.
static int64_t window_of(const tsr_stream *st) { return 2 * st->span > WINDOW ? 2 * st->span : WINDOW; }
static int64_t behind_of(const tsr_stream *st) { return st->span > BEHIND ? st->span : BEHIND; }

// How far READs may get parked: twice the window past the furthest READ or push.
static int64_t reach_of(const tsr_stream *st) { return (st->last > st->pushed ? st->last : st->pushed) + 2 * window_of(st); }

static void unref(tsr_stream *st) {
  if (--st->refs > 0) return;
  free(st->crcs);
  free(st);
}

// Answers [a, b), checked and in slabs, with the slabs' bytes themselves (writev copies them).
static void reply(tsr_stream *st, fuse_req_t req, uint64_t a, uint64_t b) {
  struct iovec iov[NSLAB];
  int n = 0;
  while (a < b && n < NSLAB) {
    int64_t k = piece_at(st, a);
    int i = slab_of(st, k);
    if (i < 0) break;
    uint64_t start = off_of(st, st->slab_first[i]), end = off_of(st, st->slab_first[i] + SP);
    size_t len = (size_t)((b < end ? b : end) - a);
    iov[n++] = (struct iovec){ st->slab[i] + (a - start), len };
    a += len;
  }
  if (a < b) fuse_reply_err(req, EIO); // cannot happen: callers checked every piece is held
  else fuse_reply_iov(req, iov, n);
}

// Whether every piece of [ka, kb] is held in a slab (pushed or checked).
static int held(const tsr_stream *st, int64_t ka, int64_t kb) {
  for (int64_t k = ka; k <= kb; k += SP - (k - st->base) % SP) {
    if (slab_of(st, k) < 0) return 0;
  }
  return 1;
}

// A slab nothing needs any more: all checked, behind the reader, under no parked READ.
static int recyclable(const tsr_stream *st, int i) {
  if (st->slab_first[i] < 0) return 1;
  int64_t end = st->slab_first[i] + SP;
  if (end > st->checked || end > st->last - behind_of(st)) return 0;
  for (park *p = st->parked; p; p = p->next) {
    if (piece_at(st, p->a) < end) return 0;
  }
  return 1;
}

static void ready(void *arg) {
  tsr_stream *st = arg;
  napi_call_threadsafe_function(st->tsfn, NULL, napi_tsfn_nonblocking);
}

// Push jobs up to the window (window_of) past the furthest READ (and past every parked one), bounded.
static void fill(tsr_stream *st) {
  if (st->failed || st->state == DONE) return;
  int64_t want = st->state == RUN ? st->last + window_of(st) : 0;
  for (park *p = st->parked; p; p = p->next) {
    int64_t kb = piece_at(st, p->b - 1) + 1;
    if (kb > want) want = kb;
  }
  while (st->pushed < st->limit && st->pushed < want && st->pushed < st->checked + QUEUED) {
    int i = slab_of(st, st->pushed);
    if (i < 0) {
      for (i = 0; i < NSLAB && !recyclable(st, i); i++) {
      }
      if (i == NSLAB) return; // the reader has to move on first
      if (st->slab[i] == NULL && (st->slab[i] = tsn_huge_map(SP * st->piece)) == NULL) return;
      st->slab_first[i] = st->pushed;
    }
    int64_t to = st->pushed + JOB;
    int64_t slab_end = st->slab_first[i] + SP;
    if (to > slab_end) to = slab_end;
    if (to > st->limit) to = st->limit;
    job *j = calloc(1, sizeof *j);
    if (j == NULL) return;
    j->first = st->pushed;
    j->r.out = st->slab[i] + (off_of(st, st->pushed) - off_of(st, st->slab_first[i]));
    j->r.len = (size_t)(off_of(st, to) - off_of(st, st->pushed));
    j->r.piece = st->piece;
    j->r.crcs = j->crcs;
    tsc_ahead_push(st->ahead, &j->r);
    st->pushed = to;
  }
}

// Stops the thread (after the decode it is in) and lets the slabs go; parked READs get EIO.
// Returns where the decoder stands: the piece after the last pushed one, or -1 (seek first).
static int64_t stop(tsr_stream *st) {
  if (st->state == DONE) return -1;
  tsc_ahead_free(st->ahead, NULL, NULL);
  st->ahead = NULL;
  int64_t at = !st->failed && st->checked == st->pushed ? st->pushed : -1;
  st->state = DONE;
  if (st->h) st->h->ahead = NULL, st->h->stream = NULL;
  st->h = NULL;
  for (park *p = st->parked, *next; p; p = next) {
    next = p->next;
    fuse_reply_err(p->req, EIO);
    free(p);
  }
  st->parked = NULL;
  for (int i = 0; i < NSLAB; i++) tsn_huge_unmap(st->slab[i], SP * st->piece), st->slab[i] = NULL, st->slab_first[i] = -1;
  pthread_mutex_lock(&live_mu);
  for (tsr_stream **q = &live; *q; q = &(*q)->next) {
    if (*q == st) {
      *q = st->next;
      break;
    }
  }
  pthread_mutex_unlock(&live_mu);
  napi_release_threadsafe_function(st->tsfn, napi_tsfn_abort); // its finalizer lets go of st
  return at;
}

// Node's thread, after jobs were decoded: check them in order, answer the READs they complete.
static int progress(tsr_stream *st) {
  tsc_areq *r;
  while (st->ahead && (r = tsc_ahead_pop(st->ahead, 0)) != NULL) {
    job *j = (job *)r;
    for (int64_t k = j->first; !st->failed && k < j->first + JOB && k < st->limit && (size_t)r->n == r->len; k++) {
      if (off_of(st, k) >= off_of(st, j->first) + r->len) break;
      if (j->crcs[k - j->first] != st->crcs[k - st->base]) st->failed = 1;
      else st->checked = k + 1;
    }
    if ((size_t)r->n != r->len) st->failed = 1; // a decode error, or the data ends early
    tsc_areq_free(r);
  }
  uint64_t ok = off_of(st, st->checked);
  for (park **q = &st->parked; *q;) {
    park *p = *q;
    if (p->b > ok && !st->failed) {
      q = &p->next;
      continue;
    }
    *q = p->next;
    if (p->b <= ok) reply(st, p->req, p->a, p->b);
    else fuse_reply_err(p->req, EIO); // the archive changed since it was indexed: JS would say EIO too
    free(p);
  }
  fill(st);
  return st->failed || (st->state == ENDING && st->checked == st->pushed && st->parked == NULL);
}

// Node's thread (the threadsafe function): progress, and onDone(position) once the stream stopped.
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)data;
  tsr_stream *st = context;
  if (env == NULL || st->state == DONE || !progress(st)) return;
  napi_value undef, at;
  int64_t pos = stop(st);
  if (napi_get_undefined(env, &undef) == napi_ok && napi_create_double(env, (double)pos, &at) == napi_ok) {
    napi_call_function(env, undef, cb, 1, &at, NULL);
  }
}

static void tsfn_done(napi_env env, void *data, void *hint) { unref(hint); }

static void ext_done(napi_env env, void *data, void *hint) {
  tsr_stream *st = data;
  stop(st);
  unref(st);
}

void tsr_handle_stop(handle *h) {
  if (h->stream) stop(h->stream);
}

static tsr_stream *get_stream(napi_env env, napi_value v) {
  tsr_stream *st = NULL;
  if (napi_get_value_external(env, v, (void **)&st) != napi_ok || st == NULL || st->magic != MAGIC) {
    tsn_throw(env, "tarstack_native: expected a stream");
    return NULL;
  }
  return st;
}

// streamStart(handle, base, baseOff, limit, endOff, pieceSize, crcs: Uint32Array of [base, limit),
// onDone(position)) -> stream: the handle's decoder, standing at piece base (decoded byte baseOff),
// decodes on its own thread; other calls on the handle throw EBUSY until the stream is done.
napi_value tsr_js_start(napi_env env, napi_callback_info info) {
  napi_value argv[8], name, ext;
  double base, base_off, limit, end_off, piece;
  if (tsn_get_args(env, info, 8, argv) != 0) return NULL;
  handle *h = tsc_js_handle(env, argv[0], 0);
  if (h == NULL) return NULL;
  napi_typedarray_type tt;
  size_t n = 0;
  void *crcs = NULL;
  if (tsn_num(env, argv[1], &base) != 0 || tsn_num(env, argv[2], &base_off) != 0 || tsn_num(env, argv[3], &limit) != 0 ||
      tsn_num(env, argv[4], &end_off) != 0 || tsn_num(env, argv[5], &piece) != 0 ||
      napi_get_typedarray_info(env, argv[6], &tt, &n, &crcs, NULL, NULL) != napi_ok || tt != napi_uint32_array ||
      !(base >= 0) || !(limit > base) || !(piece >= 4096) || piece > (64 << 20) || n != (size_t)(limit - base) ||
      !(end_off > base_off) || end_off - base_off > (limit - base) * piece || end_off - base_off <= (limit - base - 1) * piece) {
    return tsc_js_throw(env, "EINVAL", "codec: streamStart expects a chunk's pieces, their offsets and crc32s");
  }
  tsr_stream *st = calloc(1, sizeof *st);
  if (st == NULL || (st->crcs = malloc(n * sizeof *st->crcs)) == NULL) return free(st), tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  memcpy(st->crcs, crcs, n * sizeof *st->crcs);
  st->magic = MAGIC;
  st->base = st->pushed = st->checked = (int64_t)base;
  st->last = st->base - 1;
  st->limit = (int64_t)limit;
  st->base_off = (uint64_t)base_off;
  st->end_off = (uint64_t)end_off;
  st->piece = (size_t)piece;
  for (int i = 0; i < NSLAB; i++) st->slab_first[i] = -1;
  if (napi_create_string_utf8(env, "tarstack:stream", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[7], NULL, name, 0, 1, st, tsfn_done, st, call_js, &st->tsfn) != napi_ok) {
    unref(st);
    return tsc_js_throw(env, "ENOMEM", "codec: cannot create the stream's callback");
  }
  st->refs = 2; // the threadsafe function, the JS external
  napi_unref_threadsafe_function(env, st->tsfn);
  if ((st->ahead = tsc_ahead_new(h->d, ready, st)) == NULL) {
    st->state = DONE;
    napi_release_threadsafe_function(st->tsfn, napi_tsfn_abort);
    unref(st);
    return tsc_js_throw(env, "ENOMEM", "codec: cannot start a decode-ahead thread");
  }
  if (napi_create_external(env, st, ext_done, NULL, &ext) != napi_ok) {
    stop(st);
    unref(st);
    return tsc_js_throw(env, "ENOMEM", "codec: out of memory");
  }
  st->h = h;
  h->ahead = st->ahead; // the handle is busy
  h->stream = st;
  pthread_mutex_lock(&live_mu);
  st->next = live, live = st;
  pthread_mutex_unlock(&live_mu);
  fill(st); // WINDOW pieces from where the decoder stands, before any READ
  return ext;
}

// streamEnd(stream) -> position: no more pushes past what READs wait for; -2 while that is still
// decoding (onDone tells the position later), else where the decoder stands (-1: seek first).
napi_value tsr_js_end(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  tsr_stream *st = get_stream(env, argv[0]);
  if (st == NULL) return NULL;
  double pos = -1;
  if (st->state != DONE) {
    st->state = ENDING;
    pos = progress(st) ? (double)stop(st) : -2;
  }
  return napi_create_double(env, pos, &out) == napi_ok ? out : NULL;
}

// streamAbort(stream): stops now; parked READs get EIO (the layer is closing).
napi_value tsr_js_abort(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  tsr_stream *st = get_stream(env, argv[0]);
  if (st == NULL) return NULL;
  stop(st);
  return tsn_undefined(env);
}

// The first piece of the held run that ends at the last checked one: a READ from there on is
// answered or parked; one before it (the slabs were reused) is not this stream's any more.
static int64_t low_of(const tsr_stream *st) {
  int64_t k = st->checked;
  for (int i; k > st->base && (i = slab_of(st, k - 1)) >= 0;) k = st->slab_first[i];
  return k;
}

// streamInfo(stream) -> [pushed, reach, reads, low]: pieces pushed up to, how far READs may get
// parked, READs answered or parked so far, the first piece it still serves (low_of).
napi_value tsr_js_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  tsr_stream *st = get_stream(env, argv[0]);
  if (st == NULL || napi_create_array_with_length(env, 4, &out) != napi_ok) return NULL;
  double reach = (double)(st->state == RUN ? reach_of(st) : st->pushed);
  int done = st->state == DONE;
  double vals[4] = { done ? -1 : (double)st->pushed, done ? -1 : reach, st->reads, done ? -1 : (double)low_of(st) };
  for (uint32_t i = 0; i < 4; i++) {
    if (napi_create_double(env, vals[i], &v) != napi_ok || napi_set_element(env, out, i, v) != napi_ok) return NULL;
  }
  return out;
}

// streamCopy(stream, piece) -> a Buffer with a copy of the piece if it is checked and held, else
// null (a piece ahead is then wanted, as a READ of it would be): what a stream ending while idle
// hands to the piece cache, and what JS answers a READ with that the stream could not take.
napi_value tsr_js_copy(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  double piece;
  if (tsn_get_args(env, info, 2, argv) != 0) return NULL;
  tsr_stream *st = get_stream(env, argv[0]);
  if (st == NULL || tsn_num(env, argv[1], &piece) != 0) return NULL;
  int64_t k = (int64_t)piece;
  int i = st->state == DONE || st->failed || !(piece >= 0) || k < st->base || k >= st->checked ? -1 : slab_of(st, k);
  if (i < 0 && st->state == RUN && !st->failed && k > st->last && k < st->limit) st->last = k, fill(st);
  if (i < 0) return napi_get_null(env, &out) == napi_ok ? out : NULL;
  uint64_t at = off_of(st, k) - off_of(st, st->slab_first[i]);
  size_t len = (size_t)(off_of(st, k + 1) - off_of(st, k));
  void *data;
  if (napi_create_buffer_copy(env, len, st->slab[i] + at, &data, &out) != napi_ok) return NULL;
  return out;
}

// ---- the session's side --------------------------------------------------------------------

// A READ of bytes [off, off+size) of a member whose bytes are [mpos, mpos+msize) of the stream's
// decoded data. 1: answered or parked; 0: JS answers it; -1: the stream is done (JS answers it,
// and the registration goes).
int tsr_read(tsn_session *s, fuse_req_t req, tsr_stream *st, uint64_t mpos, uint64_t msize, size_t size, off_t off) {
  if (st->state == DONE || st->failed) return -1;
  if (off < 0 || (uint64_t)off >= msize || size == 0) return fuse_reply_buf(req, NULL, 0), 1;
  uint64_t a = mpos + (uint64_t)off, b = mpos + ((uint64_t)off + size < msize ? (uint64_t)off + size : msize);
  if (a < st->base_off || b > st->end_off) return 0;
  int64_t ka = piece_at(st, a), kb = piece_at(st, b - 1);
  if (ka < st->checked && !held(st, ka, kb < st->checked ? kb : st->checked - 1)) return 0; // behind the slabs
  if (kb - ka + 1 > st->span) st->span = kb - ka + 1 < SPAN ? kb - ka + 1 : SPAN;
  // Answered or parked before the stream moves on: moving on may recycle slabs behind the new
  // furthest piece, and only a parked READ keeps its own first pieces from that.
  if (kb < st->checked) {
    reply(st, req, a, b);
  } else {
    if (st->state != RUN || kb >= reach_of(st) || kb >= st->checked + QUEUED) return 0;
    park *p = malloc(sizeof *p);
    if (p == NULL) return 0;
    *p = (park){ req, s, a, b, NULL };
    park **q = &st->parked;
    while (*q) q = &(*q)->next;
    *q = p;
  }
  st->reads++;
  if (st->state == RUN && kb > st->last) st->last = kb;
  fill(st);
  return 1;
}

void tsr_ref(tsr_stream *st) { st->refs++; }
void tsr_unref(tsr_stream *st) { unref(st); }

tsr_stream *tsr_get(napi_env env, napi_value v) { return get_stream(env, v); }

// Session end: its parked READs get EIO now (the session's memory goes later, maybe on a worker).
void tsr_session_end(tsn_session *s) {
  pthread_mutex_lock(&live_mu);
  for (tsr_stream *st = live; st; st = st->next) {
    for (park **q = &st->parked; *q;) {
      park *p = *q;
      if (p->s != s) {
        q = &p->next;
        continue;
      }
      *q = p->next;
      fuse_reply_err(p->req, EIO);
      free(p);
    }
  }
  pthread_mutex_unlock(&live_mu);
}
