// FUSE over io_uring (kernel 6.14+, issue 17), opt-in (session config `uring`, TARSTACK_URING=1).
// After INIT has negotiated FUSE_OVER_IO_URING (kext.c edits the reply), one io_uring on Node's
// thread holds `depth` entries for every CPU queue of the kernel (one queue per possible CPU: a
// request goes to the queue of the CPU its caller runs on). Each entry is a header and a payload
// buffer registered with FUSE_IO_URING_CMD_REGISTER; a completion means a request is in it. It is
// rebuilt in place (in_header + op header copied just before the payload) and handed to
// fuse_session_process_buf like one read from /dev/fuse; libfuse's reply reaches kext.c's writev
// hook, which finds the entry by the request's `unique`, copies the reply in and submits
// FUSE_IO_URING_CMD_COMMIT_AND_FETCH (which also asks for the next request). The ring's eventfd is
// polled by uv_poll on Node's loop. Only Node's thread submits: an io_uring command's completion
// runs as task work of the thread that submitted it, so a read-pool worker that answers parks its
// entry (`done`) and wakes Node's thread through the eventfd. FORGET and INTERRUPT still come
// through /dev/fuse (the kernel sends them there), and so does everything before the ring is up.
// Cold READs of ring requests are read by the ring itself: uring_read.c.
#include "uring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int ring_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}
static int ring_enter(int fd, unsigned submit, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, submit, 0, flags, NULL, 0);
}

// The kernel makes one queue per possible CPU and takes the caller's CPU number as its index:
// "0-1", "0,2-3": the last number is the highest CPU.
static unsigned possible_cpus(void) {
  char buf[256] = "";
  FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
  if (f == NULL) return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  while (n > 0 && (buf[n - 1] < '0' || buf[n - 1] > '9')) buf[--n] = 0;
  while (n > 0 && buf[n - 1] >= '0' && buf[n - 1] <= '9') n--;
  return (unsigned)strtoul(buf + n, NULL, 10) + 1;
}

void tsn_uring_submit(tsn_uring *u) {
  unsigned n = tsn_uring_queued(u);
  while (n > 0 && ring_enter(u->fd, n, 0) < 0 && errno == EINTR) {}
}

static void fill_sqe(tsn_uring *u, const ent *e, uint32_t op) {
  struct io_uring_sqe *sqe = tsn_uring_sqe(u);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = u->dev;
  sqe->cmd_op = op;
  sqe->addr = (uint64_t)(uintptr_t)e->iov;
  sqe->len = 2;
  sqe->user_data = (uint64_t)(e - u->ents);
  struct k_uring_cmd_req *c = (void *)sqe->cmd;
  c->qid = e->qid;
  c->commit_id = e->unique;
}

// Node's thread only: the entry's reply goes back and the entry waits for the next request. Any
// SQEs queued before it (a READ's linked reads, uring_read.c) go in the same submission.
void tsn_uring_commit(tsn_uring *u, ent *e) {
  fill_sqe(u, e, K_IO_URING_CMD_COMMIT_AND_FETCH);
  pthread_mutex_lock(&u->mu);
  e->unique = 0;
  pthread_mutex_unlock(&u->mu);
  u->commits++;
  tsn_uring_submit(u);
}

void tsn_uring_put_reply(ent *e, uint64_t unique, int error, size_t total) {
  struct fuse_out_header *out = (void *)e->hdr->in_out;
  if (error != 0) total = 0;
  *out = (struct fuse_out_header){ .len = (uint32_t)(sizeof *out + total), .error = error, .unique = unique };
  e->hdr->ring_ent_in_out.payload_sz = (uint32_t)total;
}

static void unmap(tsn_uring *u) {
  if (u->sq && u->sq != MAP_FAILED) munmap(u->sq, u->sq_len);
  if (u->cq && u->cq != MAP_FAILED && u->cq != u->sq) munmap(u->cq, u->cq_len);
  if (u->sqes && u->sqes != MAP_FAILED) munmap(u->sqes, u->sqes_len);
  u->sq = u->cq = u->sqes = NULL;
  if (u->fd >= 0) close(u->fd);
  u->fd = -1;
}

void tsn_uring_free(tsn_uring *u) {
  if (u == NULL) return;
  unmap(u);
  for (unsigned i = 0; i < u->nents && u->ents; i++) tsn_uring_read_next(&u->ents[i]);
  if (u->efd >= 0) close(u->efd);
  if (u->mem) munmap(u->mem, u->mem_len);
  pthread_mutex_destroy(&u->mu);
  free(u->ents);
  free(u->done);
  free(u);
}

// Before INIT's reply asks for io_uring: the ring, its eventfd and the entries' memory, so that a
// machine that refuses io_uring (io_uring_disabled, memory) never gets a mount whose requests wait
// for a ring that cannot come. `payload`: the kernel's max(max_write, max_pages pages).
int tsn_uring_prepare(tsn_session *s, size_t payload) {
  tsn_uring *u = calloc(1, sizeof *u);
  if (u == NULL) return -1;
  u->s = s;
  u->fd = u->efd = -1;
  u->dev = fuse_session_fd(s->se);
  u->loop_thread = pthread_self();
  pthread_mutex_init(&u->mu, NULL);
  u->queues = possible_cpus();
  u->nents = u->queues * (unsigned)s->cfg.uring_depth;
  u->payload = (payload + 4095) & ~(size_t)4095;
  u->mem_len = (size_t)u->nents * (PREFIX + u->payload);
  u->ents = calloc(u->nents, sizeof *u->ents);
  u->done = calloc(u->nents, sizeof *u->done);
  // COOP_TASKRUN: a request for an entry is copied in by task work on this thread; the kernel then
  // wakes the thread if it sleeps, but sends no interrupt (an IPI, a VM exit here) while it runs,
  // and TASKRUN_FLAG shows pending work in the SQ ring's flags, so the spin below looks at memory
  // and enters the kernel only when there is something to take.
  struct io_uring_params p = {
    .flags = IORING_SETUP_SQE128 | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
             IORING_SETUP_CQSIZE,
    .cq_entries = 1024, // the entries' commands and the data reads in flight
  };
  unsigned sq = 1;
  while (sq < 2 * u->nents) sq <<= 1;
  if (u->ents == NULL || u->done == NULL || (u->fd = ring_setup(sq, &p)) < 0 ||
      !(p.features & IORING_FEAT_SINGLE_MMAP)) {
    goto fail;
  }
  u->sq_entries = p.sq_entries;
  u->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  u->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (u->cq_len > u->sq_len) u->sq_len = u->cq_len;
  u->sq = mmap(NULL, u->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
               IORING_OFF_SQ_RING);
  u->cq = u->sq;
  u->sqes_len = (size_t)p.sq_entries * SQE_SIZE;
  u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                 IORING_OFF_SQES);
  u->mem = mmap(NULL, u->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (u->sq == MAP_FAILED || u->sqes == MAP_FAILED || u->mem == MAP_FAILED) {
    if (u->mem == MAP_FAILED) u->mem = NULL;
    goto fail;
  }
  u->sq_head = (void *)(u->sq + p.sq_off.head), u->sq_tail = (void *)(u->sq + p.sq_off.tail);
  u->sq_mask = (void *)(u->sq + p.sq_off.ring_mask), u->sq_array = (void *)(u->sq + p.sq_off.array);
  u->sq_flags = (void *)(u->sq + p.sq_off.flags);
  u->cq_head = (void *)(u->cq + p.cq_off.head), u->cq_tail = (void *)(u->cq + p.cq_off.tail);
  u->cq_mask = (void *)(u->cq + p.cq_off.ring_mask);
  u->cqes = (void *)(u->cq + p.cq_off.cqes);
  u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (u->efd < 0 || syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_EVENTFD, &u->efd, 1) != 0) {
    goto fail;
  }
  for (unsigned i = 0; i < u->nents; i++) {
    char *base = u->mem + (size_t)i * (PREFIX + u->payload);
    ent *e = &u->ents[i];
    e->hdr = (void *)base;
    e->payload = base + PREFIX;
    e->iov[0] = (struct iovec){ e->hdr, sizeof *e->hdr };
    e->iov[1] = (struct iovec){ e->payload, u->payload };
    e->qid = (uint16_t)(i / (unsigned)s->cfg.uring_depth);
  }
  s->uring = u;
  return 0;
fail:
  fprintf(stderr, "tarstack_native: FUSE over io_uring unavailable (%s); using /dev/fuse\n",
          strerror(errno));
  tsn_uring_free(u);
  return -1;
}

static void on_uring(uv_poll_t *h, int status, int events);

// After INIT's reply (fc->initialized): every entry is registered in one submission. A failure
// makes the kernel drop io_uring for the connection (requests keep coming through /dev/fuse).
int tsn_uring_register(tsn_session *s) {
  tsn_uring *u = s->uring;
  for (unsigned i = 0; i < u->nents; i++) fill_sqe(u, &u->ents[i], K_IO_URING_CMD_REGISTER);
  int n;
  while ((n = ring_enter(u->fd, u->nents, 0)) < 0 && errno == EINTR) {}
  u->active = n == (int)u->nents;
  // Registrations complete only when a request comes; an error completes at once.
  unsigned head = *u->cq_head, tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
  if (head != tail && u->cqes[head & *u->cq_mask].res < 0) {
    fprintf(stderr, "tarstack_native: FUSE_IO_URING_CMD_REGISTER failed: %s; using /dev/fuse\n",
            strerror(-u->cqes[head & *u->cq_mask].res));
    u->active = 0;
  }
  if (!u->active) return -1;
  if (uv_poll_init(s->poll.loop, &u->poll, u->efd) != 0) return u->active = 0, -1;
  u->poll.data = s;
  s->ext.uring = 1;
  uv_poll_start(&u->poll, UV_READABLE, on_uring);
  return 0;
}

// kext.c's writev hook: a reply to a request taken from the ring goes into its entry. Returns the
// bytes "written", or -1 when `unique` is no ring request (a /dev/fuse one, or a notification).
ssize_t tsn_uring_reply(tsn_uring *u, const struct iovec *iov, int count) {
  const struct fuse_out_header *oh = iov[0].iov_base;
  if (oh->unique == 0 || iov[0].iov_len != sizeof *oh) return -1;
  ent *e = NULL;
  pthread_mutex_lock(&u->mu);
  for (unsigned i = 0; !u->closed && i < u->nents; i++) {
    if (u->ents[i].unique == oh->unique) {
      e = &u->ents[i];
      break;
    }
  }
  pthread_mutex_unlock(&u->mu);
  if (e == NULL) return -1;
  size_t total = 0;
  for (int i = 1; i < count; i++) {
    if (total + iov[i].iov_len > u->payload) break;
    if (iov[i].iov_base != e->payload + total) memcpy(e->payload + total, iov[i].iov_base, iov[i].iov_len);
    total += iov[i].iov_len;
  }
  int error = oh->error;
  if (total + sizeof *oh != oh->len) error = -EIO; // longer than the kernel's own limit: cannot happen
  tsn_uring_put_reply(e, oh->unique, error, total);
  if (pthread_equal(pthread_self(), u->loop_thread)) {
    tsn_uring_commit(u, e);
  } else {
    pthread_mutex_lock(&u->mu);
    if (!u->closed) u->done[u->ndone++] = (unsigned)(e - u->ents);
    pthread_mutex_unlock(&u->mu);
    uint64_t one = 1;
    if (write(u->efd, &one, sizeof one) < 0) { /* the counter is full: a wakeup is pending anyway */ }
  }
  return (ssize_t)oh->len;
}

// One request from a completed entry: rebuilt contiguously just below the payload and processed.
static void take(tsn_uring *u, ent *e) {
  tsn_session *s = u->s;
  const struct fuse_in_header *ih = (const void *)e->hdr->in_out;
  const struct k_uring_ent_in_out *io = &e->hdr->ring_ent_in_out;
  size_t len = ih->len, psz = io->payload_sz;
  size_t oplen = len - sizeof *ih - psz;
  tsn_uring_read_next(e);
  pthread_mutex_lock(&u->mu);
  e->unique = ih->unique;
  pthread_mutex_unlock(&u->mu);
  if (len < sizeof *ih + psz || oplen > sizeof e->hdr->op_in || psz > u->payload) {
    struct fuse_out_header oh = { .len = sizeof oh, .error = -EIO, .unique = ih->unique };
    struct iovec iov = { &oh, sizeof oh };
    tsn_uring_reply(u, &iov, 1);
    return;
  }
  char *start = e->payload - oplen - sizeof *ih;
  memcpy(start, ih, sizeof *ih);
  memcpy(start + sizeof *ih, e->hdr->op_in, oplen);
  tsn_kext_note_request(s, start, len);
  s->requests++;
  u->requests++;
  struct fuse_buf buf = { .size = len, .mem = start };
  u->current = e;
  fuse_session_process_buf(s->se, &buf);
  u->current = NULL;
}

void *tsn_uring_current(tsn_session *s) {
  return s->uring != NULL && s->ext.uring ? s->uring->current : NULL;
}

static int reap(tsn_uring *u, int max) {
  int n = 0;
  for (;;) {
    unsigned done[64], nd = 0;
    pthread_mutex_lock(&u->mu);
    while (u->ndone > 0 && nd < 64) done[nd++] = u->done[--u->ndone];
    pthread_mutex_unlock(&u->mu);
    for (unsigned i = 0; i < nd; i++) tsn_uring_commit(u, &u->ents[done[i]]);
    unsigned head = *u->cq_head, tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
    if (head == tail || n >= max) return n + (int)nd;
    struct io_uring_cqe cqe = u->cqes[head & *u->cq_mask];
    __atomic_store_n(u->cq_head, head + 1, __ATOMIC_RELEASE);
    if (cqe.user_data & READ_TAG) {
      tsn_uring_read_cqe(u, &cqe);
      n++;
      continue;
    }
    if (cqe.user_data >= u->nents) continue;
    if (cqe.res < 0) { // the connection is going (-ENOTCONN) or the entry was refused
      if (cqe.res != -ENOTCONN && cqe.res != -ECANCELED) {
        fprintf(stderr, "tarstack_native: io_uring entry %u: %s\n", (unsigned)cqe.user_data,
                strerror(-cqe.res));
      }
      continue;
    }
    take(u, &u->ents[cqe.user_data]);
    n++;
    if (u->s->state != TSN_LIVE || fuse_session_exited(u->s->se) || u->s->end_requested) return n;
  }
}

// The loop body of a wakeup (session.c opens the scopes): the eventfd is reset first, so a
// completion after the last look wakes the loop again.
static int uring_body(tsn_session *s, int status) {
  tsn_uring *u = s->uring;
  if (status < 0) return 0; // the eventfd never fails; /dev/fuse's poll sees the end
  uint64_t cnt;
  if (read(u->efd, &cnt, sizeof cnt) < 0) { /* EAGAIN: woken by a completion already taken */ }
  int64_t spin_until = -1;
  for (int total = 0; total < 256;) {
    int n = reap(u, 256 - total);
    total += n;
    if (s->state != TSN_LIVE || fuse_session_exited(s->se) || s->end_requested) return 1;
    if (n > 0) {
      spin_until = -1;
      continue;
    }
    // As the /dev/fuse loop does (session.c): a caller's next request often comes a few
    // microseconds after the answer; looking at the completion queue costs no system call.
    if (total == 0 || !tsn_session_may_spin(s)) break;
    if (__atomic_load_n(u->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_TASKRUN) {
      // Runs the task work: a request lands (a CQE), or a linked read completes and its commit
      // goes out with no CQE (uring_read.c). That is an answer too: the spin starts again.
      ring_enter(u->fd, 0, IORING_ENTER_GETEVENTS);
      spin_until = -1;
      continue;
    }
    int64_t now = tsn_now_ns();
    if (spin_until < 0) spin_until = now + (int64_t)s->cfg.spin_us * 1000;
    if (now >= spin_until) break;
  }
  return 0;
}

static void on_uring(uv_poll_t *h, int status, int events) {
  (void)events;
  tsn_session *s = h->data;
  if (s->state == TSN_LIVE && s->uring->active) tsn_session_run(s, uring_body, status);
}

static void on_uring_closed(uv_handle_t *h) {
  tsn_session_unref(h->data);
}

// Session end (Node's thread), before unmounting (tsn_uring_unmount): workers' later replies find no
// entry; the ring goes first so that the kernel cancels its commands and the last close of
// /dev/fuse aborts the connection as without a ring. Returns 1 if a handle must close
// (its callback lets go of one reference to the session), else 0. Memory goes at the session's
// last reference (tsn_uring_free), as a worker may still be copying a reply into an entry.
int tsn_uring_end(tsn_session *s) {
  tsn_uring *u = s->uring;
  if (u == NULL) return 0;
  tsn_uring_reads_end(u);
  pthread_mutex_lock(&u->mu);
  u->closed = 1;
  pthread_mutex_unlock(&u->mu);
  unmap(u);
  if (!s->ext.uring) return 0;
  uv_poll_stop(&u->poll);
  uv_close((uv_handle_t *)&u->poll, on_uring_closed);
  return 1;
}

static void *unmount_thread(void *se) {
  fuse_session_unmount(se);
  return NULL;
}

// fuse_session_unmount from a thread of its own while Node's thread waits in pthread_join. As root
// libfuse calls umount2 itself, and the superblock's end (fuse_conn_destroy: fuse_abort_conn, then
// fuse_wait_aborted until every ring entry is released) runs as task work of the thread that
// dropped the mount, on its way back from umount2, in an uninterruptible wait. A request the
// kernel gave an entry just before (fuse_uring_dispatch_ent) is copied in by task work of Node's
// thread, the ring's submitter; until that runs the entry cannot be released, so if Node's thread
// were the one waiting it would wait for itself. Waiting in a futex instead, Node's thread is woken
// for its task work (TWA_SIGNAL_NO_IPI wakes interruptible sleepers), runs it, and waits again.
void tsn_uring_unmount(struct fuse_session *se) {
  pthread_t t;
  if (pthread_create(&t, NULL, unmount_thread, se) != 0) {
    fuse_session_unmount(se); // no thread: the race stays open for this one unmount
    return;
  }
  pthread_join(t, NULL);
}

void tsn_uring_info(tsn_session *s, double out[6]) {
  tsn_uring *u = s->uring;
  out[0] = u ? u->requests : 0;
  out[1] = u ? u->nents : 0;
  out[2] = u ? u->commits : 0;
  out[3] = u ? u->reads : 0;
  out[4] = u ? u->linked : 0;
  out[5] = u ? u->broken : 0;
}
