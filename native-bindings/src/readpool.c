// Reads answered from file ranges without stalling Node's loop. replyRanges serves data that is
// already in the page cache from Node's thread (no thread hop); anything else goes to the read
// pool (pool.c), in the session's own lane, where a worker preads and answers the kernel directly.
#include "tsn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

// cachestat(2), Linux 6.5; one syscall number on every architecture. Older headers lack it.
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct tsn_cachestat_range {
  uint64_t off, len;
};
struct tsn_cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
static int no_cachestat; // the kernel (or valgrind) lacks it: ask mincore instead

typedef struct job {
  tsn_job base;
  fuse_req_t req;
  size_t n, total;
  tsn_range r[];
} job;

// Reads every range completely into buf; -errno on failure. A range that ends early (the backing
// file is shorter than the index says: a truncated tar) is EIO, never silently short data.
static int fill(const tsn_range *r, size_t n, char *buf, int nowait) {
  for (size_t i = 0; i < n; i++) {
    size_t done = 0;
    if (r[i].fd < 0) {
      memset(buf, 0, r[i].len);
      done = r[i].len;
    }
    while (done < r[i].len) {
      struct iovec iov = { buf + done, r[i].len - done };
      ssize_t got = preadv2(r[i].fd, &iov, 1, r[i].pos + (off_t)done, nowait ? RWF_NOWAIT : 0);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return -errno;
      if (got == 0) return nowait ? -EAGAIN : -EIO; // NOWAIT may also stop short at a cold page
      done += (size_t)got;
    }
    buf += r[i].len;
  }
  return 0;
}

// A read-pool job: pread into the worker's own buffer (kept between jobs) and answer.
// j's ranges read into buf (NULL: no memory), waiting if need be, and its request answered.
static void fill_and_reply(job *j, char *buf) {
  int res = buf ? fill(j->r, j->n, buf, 0) : -ENOMEM;
  if (res < 0) {
    fuse_reply_err(j->req, -res);
  } else {
    fuse_reply_buf(j->req, buf, j->total);
  }
}

static void serve(tsn_job *base, tsn_worker *w) {
  job *j = (job *)base;
  fill_and_reply(j, tsn_worker_buf(w, j->total));
  free(j);
}

void tsn_reads_cancel(tsn_job *unrun) {
  while (unrun) {
    job *j = (job *)unrun;
    unrun = unrun->next;
    fuse_reply_err(j->req, EIO);
    free(j);
  }
}

// mincore on a throwaway mapping: the fallback before Linux 6.5. Mapping never reads the file.
static int range_cached_mincore(int fd, off_t pos, size_t len, long page) {
  off_t start = pos - pos % page;
  size_t maplen = (size_t)(pos - start) + len;
  size_t pages = (maplen + (size_t)page - 1) / (size_t)page;
  void *addr = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, start);
  if (addr == MAP_FAILED) return 0;
  unsigned char small[512];
  unsigned char *vec = pages <= sizeof small ? small : malloc(pages);
  int all = vec != NULL && mincore(addr, maplen, vec) == 0;
  for (size_t i = 0; all && i < pages; i++) all = vec[i] & 1;
  if (vec != small) free(vec);
  munmap(addr, maplen);
  return all;
}

// Whether every page of the ranges is in the page cache. Asked with cachestat because a read
// with RWF_NOWAIT, though it never waits, still starts readahead of missing pages on the calling
// thread: page allocation and I/O submission that cost Node's loop milliseconds on cold data.
static int all_cached(const tsn_range *r, size_t n) {
  static long page;
  if (page == 0) page = sysconf(_SC_PAGESIZE);
  for (size_t i = 0; i < n; i++) {
    if (r[i].fd < 0 || r[i].len == 0) continue;
    if (no_cachestat) {
      if (!range_cached_mincore(r[i].fd, r[i].pos, r[i].len, page)) return 0;
      continue;
    }
    struct tsn_cachestat_range range = { (uint64_t)r[i].pos, r[i].len };
    struct tsn_cachestat cs;
    if (syscall(__NR_cachestat, r[i].fd, &range, &cs, 0) != 0) {
      if (errno != ENOSYS) return 0;
      no_cachestat = 1;
      i--; // ask this range again, through mincore
      continue;
    }
    uint64_t first = (uint64_t)r[i].pos / page, last = ((uint64_t)r[i].pos + r[i].len - 1) / page;
    if (cs.nr_cache < last - first + 1) return 0;
  }
  return 1;
}

// Node's thread's read buffer, grown to hold `total` bytes (kept: fresh memory costs page faults).
static char *fastbuf(tsn_env *te, size_t total) {
  if (te->fastbuf_cap < total) {
    tsn_huge_unmap(te->fastbuf, te->fastbuf_cap);
    te->fastbuf_cap = 0;
    if ((te->fastbuf = tsn_huge_map(total)) == NULL) return NULL;
    te->fastbuf_cap = tsn_huge_len(total); // all of it: a bigger READ later fits, not mapped again
  }
  return te->fastbuf;
}

// Node-thread attempt: answers from the page cache, or returns -EAGAIN if anything is cold. The
// read still uses RWF_NOWAIT, so pages evicted since the check cost a hop, never a wait.
static int serve_nowait(tsn_env *te, job *j) {
  if (!all_cached(j->r, j->n)) return -EAGAIN;
  char *buf = fastbuf(te, j->total);
  if (buf == NULL) return -EAGAIN;
  int res = fill(j->r, j->n, buf, 1);
  if (res == -EAGAIN || res == -EOPNOTSUPP) return -EAGAIN;
  if (res < 0) return fuse_reply_err(j->req, -res), 0;
  fuse_reply_buf(j->req, buf, j->total);
  return 0;
}

// Read and answered on Node's thread, waiting if need be: ranges valid only until replyRanges
// returns (a remote blob's chunks, pinned in its cache until then).
static void serve_now(tsn_env *te, job *j) {
  fill_and_reply(j, fastbuf(te, j->total));
}

// Answers j's request from the page cache on Node's thread if it can, else in the read pool.
static void answer(tsn_session *s, job *j, void *ring_ent) {
  j->base.run = serve;
  if (s->cfg.nowait && serve_nowait(s->te, j) == 0) {
    free(j);
  } else if (ring_ent != NULL && tsn_uring_read(s, ring_ent, j->req, j->r, j->n, j->total) == 0) {
    free(j); // read by the ring into the request's own entry: no worker, no copy
  } else if (tsn_pool_submit(&tsn_read_pool, &s->reads, &j->base) != 0) {
    fuse_reply_err(j->req, EIO); // the session is ending
    free(j);
  }
}

// Files whose bytes are one fixed range of an open descriptor (a plain tar's member on an
// immutable mount): ino -> (fd, pos, size), so their READs are answered here without entering JS.
// Open addressing; only Node's thread touches it (op_read and readDirect).
typedef struct tsn_direct {
  uint64_t ino; // 0: empty slot; DIRECT_GONE: removed
  int fd;
  off_t pos; // with a stream: where the file's bytes start in the stream's decoded data
  uint64_t size;
  tsr_stream *stream; // readStreamed: the file's bytes come from this stream (stream.c), else NULL
} tsn_direct;
#define DIRECT_GONE UINT64_MAX

static tsn_direct *direct_find(tsn_session *s, uint64_t ino, int for_insert) {
  if (s->direct_cap == 0) return NULL;
  size_t mask = s->direct_cap - 1, i = (size_t)(ino * 0x9E3779B97F4A7C15ull) & mask;
  tsn_direct *gone = NULL;
  for (size_t n = 0; n < s->direct_cap; n++, i = (i + 1) & mask) {
    tsn_direct *d = &s->direct[i];
    if (d->ino == ino) return d;
    if (d->ino == DIRECT_GONE && gone == NULL) gone = d;
    if (d->ino == 0) return for_insert ? (gone ? gone : d) : NULL;
  }
  return for_insert ? gone : NULL;
}

static int direct_grow(tsn_session *s) {
  size_t cap = s->direct_cap ? s->direct_cap * 2 : 64;
  tsn_direct *old = s->direct, *t = calloc(cap, sizeof *t);
  size_t oldcap = s->direct_cap;
  if (t == NULL) return -1;
  s->direct = t, s->direct_cap = cap, s->direct_used = 0;
  for (size_t i = 0; i < oldcap; i++) {
    if (old[i].ino == 0 || old[i].ino == DIRECT_GONE) continue;
    *direct_find(s, old[i].ino, 1) = old[i];
    s->direct_used++;
  }
  free(old);
  return 0;
}

static void direct_drop(tsn_direct *d) {
  if (d->stream) tsr_unref(d->stream);
  d->stream = NULL;
  d->ino = DIRECT_GONE;
}

// Session end (Node's thread): the registrations let go of their streams.
void tsn_direct_end(tsn_session *s) {
  for (size_t i = 0; i < s->direct_cap; i++) {
    if (s->direct[i].stream) direct_drop(&s->direct[i]);
  }
}

void tsn_direct_free(tsn_session *s) {
  free(s->direct);
  s->direct = NULL;
  s->direct_cap = s->direct_used = 0;
}

// The entry for ino, made if new (an old one's stream let go); NULL: out of memory.
static tsn_direct *direct_put(tsn_session *s, uint64_t ino) {
  if ((s->direct_used + 1) * 2 > s->direct_cap && direct_grow(s) != 0) return NULL;
  tsn_direct *d = direct_find(s, ino, 1);
  if (d->ino != ino) s->direct_used++;
  else if (d->stream) tsr_unref(d->stream);
  d->stream = NULL;
  return d;
}

// op_read's first stop: 1 if the file is registered and the request is answered (or queued).
int tsn_read_direct(tsn_session *s, fuse_req_t req, uint64_t ino, size_t size, off_t off) {
  tsn_direct *d = direct_find(s, ino, 0);
  if (d == NULL) return 0;
  if (d->stream) {
    int r = tsr_read(s, req, d->stream, (uint64_t)d->pos, d->size, size, off);
    if (r < 0) direct_drop(d); // the stream is done: JS answers, and may register a new one
    if (r > 0) s->streamed_reads++;
    return r > 0;
  }
  s->direct_reads++;
  uint64_t end = (uint64_t)off + size;
  if (off < 0 || (uint64_t)off >= d->size || size == 0) return fuse_reply_buf(req, NULL, 0), 1;
  if (end > d->size) end = d->size;
  job *j = malloc(sizeof *j + sizeof(tsn_range));
  if (j == NULL) return fuse_reply_err(req, ENOMEM), 1;
  j->req = req;
  j->n = 1;
  j->total = (size_t)(end - (uint64_t)off);
  j->r[0] = (tsn_range){ .fd = d->fd, .pos = d->pos + off, .len = j->total };
  answer(s, j, tsn_uring_current(s));
  return 1;
}

// readDirect(session, ino, fd, pos, size): from now on READs of ino are bytes [pos, pos+size) of
// fd, answered without JS; fd -1 forgets ino. The caller keeps fd open while the session lives.
// false if the session has ended or memory ran out (reads then keep going through JS).
napi_value tsn_js_read_direct(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  double ino, fd, pos, size;
  if (tsn_get_args(env, info, 5, argv) != 0 || tsn_num(env, argv[1], &ino) != 0 ||
      tsn_num(env, argv[2], &fd) != 0 || tsn_num(env, argv[3], &pos) != 0 ||
      tsn_num(env, argv[4], &size) != 0) {
    return NULL;
  }
  tsn_session *s = tsn_handle_session(env, argv[0]);
  if (s == NULL || s->state != TSN_LIVE || !(ino >= 1) || (double)(uint64_t)ino != ino) {
    return tsn_bool(env, 0);
  }
  if (fd < 0) {
    tsn_direct *d = direct_find(s, (uint64_t)ino, 0);
    if (d != NULL) direct_drop(d);
    return tsn_bool(env, 1);
  }
  if (!(pos >= 0) || !(size >= 0)) return tsn_throw(env, "tarstack_native: readDirect: bad range");
  tsn_direct *d = direct_put(s, (uint64_t)ino);
  if (d == NULL) return tsn_bool(env, 0);
  *d = (tsn_direct){ .ino = (uint64_t)ino, .fd = (int)fd, .pos = (off_t)pos, .size = (uint64_t)size };
  return tsn_bool(env, 1);
}

// readStreamed(id, ino, stream, pos, size, off) -> taken: READs of ino are bytes [pos, pos+size)
// of the stream's decoded data, answered from its slabs while it holds them (stream.c), else by
// JS; so is this one (request `id`, at offset `off`) if it can be. true: it was answered or parked
// (JS must not answer it).
napi_value tsn_js_read_streamed(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  double id, ino, pos, size, off;
  tsn_env *te = tsn_env_of(env);

  if (te == NULL || tsn_get_args(env, info, 6, argv) != 0 || tsn_num(env, argv[0], &id) != 0 || tsn_num(env, argv[1], &ino) != 0 ||
      tsn_num(env, argv[3], &pos) != 0 || tsn_num(env, argv[4], &size) != 0 || tsn_num(env, argv[5], &off) != 0) {
    return NULL;
  }
  tsr_stream *st = tsr_get(env, argv[2]);
  if (st == NULL) return NULL;
  tsn_slot *slot = tsn_req_find(te, id);
  if (slot == NULL || slot->s->state != TSN_LIVE || !(ino >= 1) || !(pos >= 0) || !(size >= 0) || !(off >= 0)) {
    return tsn_bool(env, 0);
  }
  tsn_session *s = slot->s;
  tsn_direct *d = direct_put(s, (uint64_t)ino);
  if (d == NULL) return tsn_bool(env, 0);
  tsr_ref(st);
  *d = (tsn_direct){ .ino = (uint64_t)ino, .fd = -1, .pos = (off_t)pos, .size = (uint64_t)size, .stream = st };
  if (tsr_read(s, slot->req, st, (uint64_t)pos, (uint64_t)size, slot->size, (off_t)off) <= 0) return tsn_bool(env, 0);
  s->streamed_reads++;
  tsn_req_take(te, id); // answered or parked already: the slot only goes
  return tsn_bool(env, 1);
}

// replyRanges(id, ranges: Float64Array of fd,pos,len triples, count, now?): answers a read with the
// concatenation of the ranges (fd -1 = zeros). The request leaves JS's hands at once; with `now`
// the ranges are read before this returns (on Node's thread), so the caller may let them go then.
napi_value tsn_js_reply_ranges(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  size_t argc = 4;
  double id, count;
  bool now = false;
  tsn_env *te = tsn_env_of(env);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) {
    return tsn_throw(env, "tarstack_native: too few arguments");
  }
  if (te == NULL || tsn_num(env, argv[0], &id) != 0 || tsn_num(env, argv[2], &count) != 0 ||
      (argc > 3 && napi_get_value_bool(env, argv[3], &now) != napi_ok)) {
    return NULL;
  }
  napi_typedarray_type type;
  size_t alen = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, argv[1], &type, &alen, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || !(count >= 0) || (size_t)count * 3 > alen) {
    return tsn_throw(env, "tarstack_native: replyRanges expects a Float64Array of triples");
  }
  tsn_slot *slot = tsn_req_find(te, id);
  if (slot == NULL) return tsn_bool(env, 0);
  size_t n = (size_t)count, total = 0;
  job *j = malloc(sizeof *j + n * sizeof(tsn_range));
  if (j == NULL) {
    fuse_reply_err(tsn_req_take(te, id), ENOMEM);
    return tsn_bool(env, 1);
  }
  const double *t = data;
  for (size_t i = 0; i < n; i++) {
    j->r[i] = (tsn_range){ .fd = (int)t[3 * i], .pos = (off_t)t[3 * i + 1],
                           .len = (size_t)t[3 * i + 2] };
    total += j->r[i].len;
  }
  if (total > slot->size) {
    free(j);
    return tsn_throw(env, "tarstack_native: ranges longer than the kernel asked for");
  }
  tsn_session *s = slot->s; // the slot is free once taken
  void *ring_ent = slot->ring_ent;
  j->n = n;
  j->total = total;
  j->req = tsn_req_take(te, id);
  if (now) {
    serve_now(te, j);
    free(j);
  } else {
    answer(s, j, ring_ent);
  }
  return tsn_bool(env, 1);
}

// poolStats() -> { reads, notes }: each { threads, idle, running, queued } of the process.
napi_value tsn_js_pool_stats(napi_env env, napi_callback_info info) {
  static const char *const keys[4] = { "threads", "idle", "running", "queued" };
  tsn_pool *pools[2] = { &tsn_read_pool, &tsn_note_pool };
  static const char *const names[2] = { "reads", "notes" };
  napi_value out, o, v;
  if (napi_create_object(env, &out) != napi_ok) return NULL;
  for (int i = 0; i < 2; i++) {
    double st[4];
    tsn_pool_stats(pools[i], st);
    if (napi_create_object(env, &o) != napi_ok) return NULL;
    for (int k = 0; k < 4; k++) {
      if (napi_create_double(env, st[k], &v) != napi_ok ||
          napi_set_named_property(env, o, keys[k], v) != napi_ok) {
        return NULL;
      }
    }
    if (napi_set_named_property(env, out, names[i], o) != napi_ok) return NULL;
  }
  return out;
}
