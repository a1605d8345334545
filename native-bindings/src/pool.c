// Worker pools shared by every session of the process, fair between sessions. Each session owns a
// lane per pool: its own FIFO queue with a limit on jobs in flight. Lanes with runnable work take
// turns (round robin), so a mount whose jobs are slow or stuck (a hung disk) holds at most its
// limit of threads, and the pool starts another thread for the next lane instead of queueing it
// behind them, up to a bound. Threads start on demand; ones above `keep` leave after idling.
// Nothing here touches N-API: jobs answer the kernel themselves (fuse_reply_* is thread-safe).
#include "tsn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define IDLE_SECONDS 10 // a thread above `keep` with nothing to do for this long exits

tsn_pool tsn_read_pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .keep = 4, .max = 64 };
tsn_pool tsn_note_pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .keep = 0, .max = 64 };

static pthread_once_t conds_once = PTHREAD_ONCE_INIT;

// Condition variables on CLOCK_MONOTONIC, so the idle timeout ignores changes of the wall clock.
static void init_conds(void) {
  tsn_pool *pools[] = { &tsn_read_pool, &tsn_note_pool };
  for (size_t i = 0; i < 2; i++) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&pools[i]->work, &a);
    pthread_cond_init(&pools[i]->exited, &a);
    pthread_condattr_destroy(&a);
  }
}

static void ring_push(tsn_pool *p, tsn_lane *l) {
  l->in_ring = 1;
  l->ring_next = NULL;
  if (p->ring_tail) {
    p->ring_tail->ring_next = l;
  } else {
    p->ring_head = l;
  }
  p->ring_tail = l;
}

static void ring_remove(tsn_pool *p, tsn_lane *l) {
  if (!l->in_ring) return;
  tsn_lane *prev = NULL;
  for (tsn_lane *x = p->ring_head; x; prev = x, x = x->ring_next) {
    if (x != l) continue;
    if (prev) {
      prev->ring_next = l->ring_next;
    } else {
      p->ring_head = l->ring_next;
    }
    if (p->ring_tail == l) p->ring_tail = prev;
    break;
  }
  l->in_ring = 0;
}

// A job was queued on `l`: if the lane has room for it in flight, make sure a worker comes for it
// (wake an idle one, or ask the caller to start a thread: 1). Called with the pool locked.
static int want_worker(tsn_pool *p, tsn_lane *l) {
  if (l->inflight + l->queued > l->limit) return 0; // at its limit: it waits for its own jobs
  if (!l->in_ring) ring_push(p, l);
  if (p->idle > p->wakeups) {
    p->wakeups++;
    pthread_cond_signal(&p->work);
    return 0;
  }
  if (p->threads >= p->max) return 0; // every thread busy: the lane waits its turn
  p->threads++;
  return 1;
}

static void *worker(void *arg);

// Starts a thread counted in p->threads already; undoes the count if that fails.
static void start_thread(tsn_pool *p) {
  pthread_t t;
  pthread_attr_t a;
  int ok = pthread_attr_init(&a) == 0;
  if (ok) {
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024); // jobs are a pread and a reply: little stack
    ok = pthread_create(&t, &a, worker, p) == 0;
    pthread_attr_destroy(&a);
  }
  if (ok) return;
  pthread_mutex_lock(&p->mu);
  p->threads--; // the job stays queued: a running worker (or the next one started) takes it
  pthread_mutex_unlock(&p->mu);
  fprintf(stderr, "tarstack_native: cannot start a worker thread\n");
}

static void *worker(void *arg) {
  tsn_pool *p = arg;
  tsn_worker w = { 0 };
  pthread_mutex_lock(&p->mu);
  for (;;) {
    tsn_lane *l = p->ring_head;
    if (l == NULL) {
      if (p->stopping) break;
      p->idle++;
      int timed_out = 0;
      while (p->wakeups == 0 && p->ring_head == NULL && !p->stopping && !timed_out) {
        if (p->threads <= p->keep) {
          pthread_cond_wait(&p->work, &p->mu);
          continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += IDLE_SECONDS;
        timed_out = pthread_cond_timedwait(&p->work, &p->mu, &until) == ETIMEDOUT;
      }
      if (p->wakeups > 0) p->wakeups--;
      p->idle--;
      if (p->wakeups > p->idle) p->wakeups = p->idle; // woken by work, not by a signal
      if (timed_out && p->ring_head == NULL && p->threads > p->keep) break;
      continue;
    }
    p->ring_head = l->ring_next;
    if (p->ring_head == NULL) p->ring_tail = NULL;
    l->in_ring = 0;
    tsn_job *j = l->head;
    l->head = j->next;
    if (l->head == NULL) l->tail = NULL;
    l->queued--;
    l->inflight++;
    p->running++;
    if (l->head && l->inflight < l->limit) ring_push(p, l); // back of the line: others go first
    pthread_mutex_unlock(&p->mu);
    j->run(j, &w);
    pthread_mutex_lock(&p->mu);
    p->running--;
    p->busy--;
    l->inflight--;
    if (l->closed) {
      if (l->inflight == 0) {
        void (*drained)(tsn_lane *) = l->drained;
        pthread_mutex_unlock(&p->mu);
        drained(l); // may free the lane's owner
        pthread_mutex_lock(&p->mu);
      }
    } else if (l->head && !l->in_ring && l->inflight < l->limit) {
      ring_push(p, l); // it was at its limit and can run again; this thread takes the head
    }
  }
  p->threads--;
  pthread_cond_broadcast(&p->exited);
  pthread_mutex_unlock(&p->mu);
  tsn_huge_unmap(w.buf, w.cap);
  return NULL;
}

void tsn_lane_init(tsn_lane *l, unsigned limit, void (*drained)(tsn_lane *)) {
  *l = (tsn_lane){ .limit = limit ? limit : 1, .drained = drained };
}

int tsn_pool_submit(tsn_pool *p, tsn_lane *l, tsn_job *j) {
  pthread_once(&conds_once, init_conds);
  j->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (l->closed) {
    pthread_mutex_unlock(&p->mu);
    return -1;
  }
  if (l->tail) {
    l->tail->next = j;
  } else {
    l->head = j;
  }
  l->tail = j;
  l->queued++;
  p->busy++;
  int start = want_worker(p, l);
  pthread_mutex_unlock(&p->mu);
  if (start) start_thread(p); // after unlocking: creating a thread takes a while
  return 0;
}

tsn_job *tsn_lane_close(tsn_pool *p, tsn_lane *l, int *busy) {
  pthread_mutex_lock(&p->mu);
  l->closed = 1;
  ring_remove(p, l);
  tsn_job *unrun = l->head;
  l->head = l->tail = NULL;
  p->busy -= l->queued;
  l->queued = 0;
  *busy = l->inflight > 0;
  pthread_mutex_unlock(&p->mu);
  return unrun;
}

int tsn_pool_busy(tsn_pool *p) {
  return p->busy > 0;
}

void tsn_pool_stats(tsn_pool *p, double out[4]) {
  pthread_mutex_lock(&p->mu);
  out[0] = p->threads, out[1] = p->idle, out[2] = p->running, out[3] = p->busy - p->running;
  pthread_mutex_unlock(&p->mu);
}

void tsn_pool_quiesce(tsn_pool *p) {
  pthread_once(&conds_once, init_conds);
  pthread_mutex_lock(&p->mu);
  if (p->ring_head == NULL && p->running == 0) {
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    while (p->threads > 0) pthread_cond_wait(&p->exited, &p->mu);
    p->stopping = 0;
    p->wakeups = 0;
  }
  pthread_mutex_unlock(&p->mu);
}

// Memory that FUSE replies are written from: in 2 MiB huge pages where the kernel gives them
// (transparent_hugepage "madvise" or "always"). Each reply's write(2) to /dev/fuse pins the user
// pages it copies from (gup): a 1 MiB reply from 4 KiB pages is 256 of them, from a huge page one
// mapping. Sizes are rounded up to whole huge pages; unmapped with the size asked for.
#define HUGE ((size_t)2 << 20)
size_t tsn_huge_len(size_t size) { return size == 0 ? HUGE : (size + HUGE - 1) & ~(HUGE - 1); }

void *tsn_huge_map(size_t size) {
  size_t len = tsn_huge_len(size);
  char *p = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  size_t head = (HUGE - ((uintptr_t)p & (HUGE - 1))) & (HUGE - 1);
  if (head) munmap(p, head);
  munmap(p + head + len, HUGE - head);
  madvise(p + head, len, MADV_HUGEPAGE); // advice: where it is refused, 4 KiB pages serve as before
  return p + head;
}

void tsn_huge_unmap(void *p, size_t size) {
  if (p) munmap(p, tsn_huge_len(size));
}

void *tsn_worker_buf(tsn_worker *w, size_t size) {
  if (w->cap >= size) return w->buf;
  tsn_huge_unmap(w->buf, w->cap);
  w->cap = 0;
  // mapped, not malloc'ed: a 1 MiB block freed to malloc raises glibc's mmap threshold, and later
  // blocks of that size then stay in the heap for good instead of going back to the system.
  if ((w->buf = tsn_huge_map(size)) != NULL) w->cap = tsn_huge_len(size);
  return w->buf;
}
