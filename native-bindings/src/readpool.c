// Reads answered from file ranges without stalling Node's loop. replyRanges serves data that is
// already in the page cache from Node's thread (no thread hop); anything else goes to a small
// pthread pool that preads and answers the kernel directly.
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
  struct job *next;
  fuse_req_t req;
  size_t n, total;
  tsn_range r[];
} job;

struct tsn_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job *head, *tail;
  int stopping, nthreads;
  pthread_t *threads;
  _Atomic int busy; // jobs queued or being served
};

int tsn_pool_busy(tsn_pool *p) {
  return p != NULL && p->busy > 0;
}

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

static void serve(job *j, char **buf, size_t *cap) {
  if (*cap < j->total) {
    free(*buf);
    *cap = 0;
    if (posix_memalign((void **)buf, 4096, j->total ? j->total : 1) != 0) {
      *buf = NULL;
      fuse_reply_err(j->req, ENOMEM);
      return;
    }
    *cap = j->total;
  }
  int res = fill(j->r, j->n, *buf, 0);
  if (res < 0) {
    fuse_reply_err(j->req, -res);
  } else {
    fuse_reply_buf(j->req, *buf, j->total);
  }
}

static void *worker(void *arg) {
  tsn_pool *p = arg;
  char *buf = NULL;
  size_t cap = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->head == NULL && !p->stopping) pthread_cond_wait(&p->cv, &p->mu);
    job *j = p->head;
    if (j == NULL) break; // stopping, and nothing left to answer
    p->head = j->next;
    if (p->head == NULL) p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    serve(j, &buf, &cap);
    free(j);
    p->busy--;
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  free(buf);
  return NULL;
}

tsn_pool *tsn_pool_new(int threads) {
  tsn_pool *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->threads = calloc((size_t)threads, sizeof *p->threads);
  if (p->threads == NULL || pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p->threads);
    free(p);
    return NULL;
  }
  if (pthread_cond_init(&p->cv, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
    return NULL;
  }
  for (int i = 0; i < threads; i++) {
    if (pthread_create(&p->threads[i], NULL, worker, p) != 0) break;
    p->nthreads++;
  }
  if (p->nthreads == 0) {
    tsn_pool_free(p);
    return NULL;
  }
  return p;
}

void tsn_pool_free(tsn_pool *p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->threads);
  free(p);
}

static void enqueue(tsn_pool *p, job *j) {
  j->next = NULL;
  p->busy++;
  pthread_mutex_lock(&p->mu);
  if (p->tail) {
    p->tail->next = j;
  } else {
    p->head = j;
  }
  p->tail = j;
  pthread_mutex_unlock(&p->mu);
  pthread_cond_signal(&p->cv); // after unlocking: the woken worker need not block on the mutex at once
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

// Node-thread attempt: answers from the page cache, or returns -EAGAIN if anything is cold. The
// read still uses RWF_NOWAIT, so pages evicted since the check cost a hop, never a wait.
static int serve_nowait(tsn_env *te, job *j) {
  const tsn_range *r = j->r;
  size_t n = j->n, total = j->total;
  fuse_req_t req = j->req;
  if (!all_cached(r, n)) return -EAGAIN;
  if (te->fastbuf_cap < total) {
    free(te->fastbuf);
    te->fastbuf_cap = 0;
    if (posix_memalign((void **)&te->fastbuf, 4096, total) != 0) {
      te->fastbuf = NULL;
      return -EAGAIN;
    }
    te->fastbuf_cap = total;
  }
  int res = fill(r, n, te->fastbuf, 1);
  if (res == -EAGAIN || res == -EOPNOTSUPP) return -EAGAIN;
  if (res < 0) return fuse_reply_err(req, -res), 0;
  fuse_reply_buf(req, te->fastbuf, total);
  return 0;
}

// replyRanges(id, ranges: Float64Array of fd,pos,len triples, count): answers a read with the
// concatenation of the ranges (fd -1 = zeros). The request leaves JS's hands at once.
napi_value tsn_js_reply_ranges(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double id, count;
  tsn_env *te = tsn_env_of(env);
  if (te == NULL || tsn_get_args(env, info, 3, argv) != 0 || tsn_num(env, argv[0], &id) != 0 ||
      tsn_num(env, argv[2], &count) != 0) {
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
  tsn_session *s = slot->s;
  j->req = tsn_req_take(te, id);
  j->n = n;
  j->total = total;
  if (s->pool == NULL || (s->cfg.nowait && serve_nowait(te, j) == 0)) {
    if (s->pool == NULL) fuse_reply_err(j->req, EIO);
    free(j);
  } else {
    enqueue(s->pool, j);
  }
  return tsn_bool(env, 1);
}
