// Cold READs of ring requests (readpool.c's answer()), read by the ring straight into the request's
// own entry. Normally as one chain: a READ SQE per range of the file (IOSQE_IO_LINK), then the
// entry's COMMIT_AND_FETCH, its reply header written beforehand for the full length, so the kernel
// commits as soon as the last read is in, without Node's thread running for it. The reads carry
// IOSQE_CQE_SKIP_SUCCESS: a chain that goes through posts nothing until the commit's fetch brings
// the entry's next request. A read that fails or comes back short (io_uring fails a link on a short
// read) breaks the chain: its own CQE is posted, and the cancelled commit posts none
// (REQ_F_SKIP_LINK_CQES, io_uring/timeout.c io_fail_links). Node's thread then finishes the request
// as the unlinked path does: the rest read range by range, EIO if a range ends early (a tar
// truncated after indexing: the ranges are clamped to the file's size, so no short read is
// legitimate), then the reply committed. A READ of more ranges than the SQ ring holds at once
// takes that unlinked path from the start.
#include "uring.h"

#include <errno.h>
#include <stdlib.h>

// One SQE reading what is left of range i of the entry's read (at payload offset off).
static void read_sqe(tsn_uring *u, ent *e, size_t i, size_t off, int link) {
  const tsn_range *r = &e->rd[i];
  struct io_uring_sqe *sqe = tsn_uring_sqe(u);
  sqe->opcode = IORING_OP_READ;
  sqe->flags = link ? IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS : 0;
  sqe->fd = r->fd;
  sqe->off = (uint64_t)r->pos + e->rd_done[i];
  sqe->addr = (uint64_t)(uintptr_t)(e->payload + off + e->rd_done[i]);
  sqe->len = (uint32_t)(r->len - e->rd_done[i]);
  sqe->user_data = READ_TAG | (uint64_t)(e - u->ents) << 20 | i;
  e->rd_pending++;
}

// Unlinked: what is missing of ranges [from, to), submitted together (the SQ ring whenever it is
// full, so any number of ranges fits).
static void read_rest(tsn_uring *u, ent *e, size_t from, size_t to) {
  size_t off = 0;
  for (size_t i = 0; i < to; i++) {
    if (i >= from && e->rd[i].fd >= 0 && e->rd_done[i] < e->rd[i].len) {
      if (tsn_uring_queued(u) >= u->sq_entries) tsn_uring_submit(u);
      if (tsn_uring_queued(u) >= u->sq_entries) { // the kernel took none (no memory): give up
        if (!e->rd_err) e->rd_err = EIO;
        break;
      }
      read_sqe(u, e, i, off, 0);
    }
    off += e->rd[i].len;
  }
  tsn_uring_submit(u);
}

// The entry's READ is over (its chain went through, or Node's thread finished it): its ranges go.
void tsn_uring_read_next(ent *e) {
  free(e->rd);
  e->rd = NULL, e->rd_done = NULL, e->nrd = 0, e->rd_linked = 0, e->rd_pending = 0;
}

// Node's thread finished the entry's read: the reply (the bytes, or the first error) committed.
static void read_done(tsn_uring *u, ent *e) {
  int err = e->rd_err;
  size_t total = e->rd_total;
  uint64_t unique = e->rd_unique;
  tsn_uring_read_next(e);
  tsn_uring_put_reply(e, unique, -err, total);
  tsn_uring_commit(u, e);
}

int tsn_uring_read(tsn_session *s, void *entp, fuse_req_t req, const tsn_range *r, size_t n,
                   size_t total) {
  tsn_uring *u = s->uring;
  ent *e = entp;
  if (u == NULL || !s->ext.uring || u->closed || e->rd != NULL || e->unique == 0 ||
      total > u->payload || n >= (1u << 20)) {
    return -1;
  }
  // One allocation: the ranges, then the bytes of each already in.
  e->rd = malloc(n * (sizeof *e->rd + sizeof *e->rd_done) + 1);
  if (e->rd == NULL) return -1;
  e->rd_done = (size_t *)(e->rd + n);
  memcpy(e->rd, r, n * sizeof *r);
  e->nrd = n, e->rd_total = total, e->rd_err = 0, e->rd_pending = 0, e->rd_unique = e->unique;
  size_t reads = 0, off = 0;
  for (size_t i = 0; i < n; i++) {
    e->rd_done[i] = 0;
    if (r[i].fd < 0) memset(e->payload + off, 0, r[i].len);
    else if (r[i].len > 0) reads++;
    off += r[i].len;
  }
  fuse_reply_none(req); // libfuse lets go of the request; its reply is written into the entry
  u->reads++;
  if (reads == 0) { // zeros only
    read_done(u, e);
  } else if (reads + 1 <= u->sq_entries - tsn_uring_queued(u)) {
    e->rd_linked = 1;
    u->linked++;
    off = 0;
    for (size_t i = 0; i < n; off += r[i].len, i++) {
      if (r[i].fd >= 0 && r[i].len > 0) read_sqe(u, e, i, off, 1);
    }
    tsn_uring_put_reply(e, e->rd_unique, 0, total);
    tsn_uring_commit(u, e); // the chain's last link, submitted with the reads
  } else {
    read_rest(u, e, 0, n);
    if (e->rd_pending == 0) read_done(u, e);
  }
  return 0;
}

void tsn_uring_read_cqe(tsn_uring *u, const struct io_uring_cqe *cqe) {
  unsigned idx = (unsigned)((cqe->user_data & ~READ_TAG) >> 20);
  size_t i = (size_t)(cqe->user_data & ((1u << 20) - 1));
  if (idx >= u->nents) return;
  ent *e = &u->ents[idx];
  if (e->rd == NULL || i >= e->nrd) return;
  int broke = e->rd_linked;
  if (broke) { // the chain broke at range i: the ranges before it are in, the later ones and the
               // commit were cancelled, the entry still holds the request
    e->rd_linked = 0;
    u->broken++;
    for (size_t k = 0; k < i; k++) e->rd_done[k] = e->rd[k].len;
    e->rd_pending = 1;
    pthread_mutex_lock(&u->mu);
    e->unique = e->rd_unique;
    pthread_mutex_unlock(&u->mu);
  }
  e->rd_pending--;
  if (cqe->res < 0) {
    if (!e->rd_err) e->rd_err = -cqe->res;
  } else if (cqe->res == 0) {
    if (!e->rd_err) e->rd_err = EIO; // shorter than the index says: a truncated tar
  } else {
    e->rd_done[i] += (size_t)cqe->res;
  }
  // After a break nothing is in flight: every range from i on is read now; else only range i's rest.
  if (!e->rd_err && !u->closed) read_rest(u, e, i, broke ? e->nrd : i + 1);
  if (e->rd_pending == 0) read_done(u, e);
}

// Session end, before the ring closes: reads Node's thread is finishing are answered EIO now. A
// chain still in the kernel is not: its commit either goes through or is cancelled with the ring,
// and the connection's abort then ends the request.
void tsn_uring_reads_end(tsn_uring *u) {
  for (unsigned i = 0; i < u->nents; i++) {
    ent *e = &u->ents[i];
    if (e->rd != NULL && !e->rd_linked && e->rd_pending > 0) {
      e->rd_err = EIO;
      read_done(u, e);
    }
  }
}
