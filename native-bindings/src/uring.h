// FUSE over io_uring, inside native-bindings only: the kernel structs, the ring and its entries as
// uring.c (the ring, requests, replies) and uring_read.c (cold READs read by the ring) share them.
// Kernel structs: include/uapi/linux/fuse.h 7.42, which Debian's 7.38 header lacks.
#ifndef TSN_URING_H
#define TSN_URING_H

#include "tsn.h"

#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/uio.h>

#define K_IO_URING_CMD_REGISTER 1 // enum fuse_uring_cmd
#define K_IO_URING_CMD_COMMIT_AND_FETCH 2

struct k_uring_ent_in_out {
  uint64_t flags, commit_id;
  uint32_t payload_sz, padding;
  uint64_t reserved;
};
struct k_uring_req_header {
  char in_out[128]; // fuse_in_header on fetch, fuse_out_header on commit
  char op_in[128];  // the op's fixed header (in_args[0])
  struct k_uring_ent_in_out ring_ent_in_out;
};
struct k_uring_cmd_req { // in the SQE's 80-byte command area (IORING_SETUP_SQE128)
  uint64_t flags, commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
_Static_assert(sizeof(struct k_uring_req_header) == 288, "fuse_uring_req_header");
_Static_assert(sizeof(struct k_uring_cmd_req) == 24, "fuse_uring_cmd_req");
_Static_assert(sizeof(struct fuse_in_header) <= 128 && sizeof(struct fuse_out_header) <= 128,
               "headers fit in_out");
_Static_assert(offsetof(struct io_uring_sqe, cmd) == 48, "SQE command area");

#define PREFIX 4096 // per entry: its header at 0, the rebuilt request's head just below the payload
#define SQE_SIZE 128

typedef struct ent {
  struct k_uring_req_header *hdr;
  char *payload;
  struct iovec iov[2];
  uint64_t unique; // the request userspace holds in it; 0: the kernel has the entry
  uint16_t qid;
  // A READ read into the payload by the ring (uring_read.c): its ranges (rd_done: bytes of each
  // in), its request, the reads still in flight, the first error; rd_linked: sent as one chain
  // with its commit, whose outcome shows only if it breaks.
  tsn_range *rd;
  size_t *rd_done, nrd, rd_total;
  uint64_t rd_unique;
  unsigned rd_pending;
  int rd_err, rd_linked;
} ent;

#define READ_TAG (1ULL << 63) // user_data of a data read: tag | entry << 20 | range

struct tsn_uring {
  tsn_session *s;
  int fd, efd, dev, active;
  pthread_t loop_thread;
  uv_poll_t poll;
  unsigned char *sq, *cq, *sqes;
  size_t sq_len, cq_len, sqes_len;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *sq_flags, *cq_head, *cq_tail, *cq_mask;
  unsigned sq_entries;
  struct io_uring_cqe *cqes;
  pthread_mutex_t mu; // ents[].unique, done[], closed: touched by workers' replies too
  int closed;
  ent *ents;
  unsigned nents, queues, ndone;
  unsigned *done; // entries answered by a worker, to commit from Node's thread
  char *mem;
  size_t mem_len, payload;
  ent *current; // the entry whose request libfuse is processing (Node's thread)
  double requests, commits, reads, linked, broken;
};

// Node's thread only. The next SQE, zeroed and already counted in the SQ tail: the kernel looks
// at it only at the next io_uring_enter, so the caller fills it before submitting.
static inline struct io_uring_sqe *tsn_uring_sqe(tsn_uring *u) {
  unsigned tail = *u->sq_tail, idx = tail & *u->sq_mask;
  struct io_uring_sqe *sqe = (void *)(u->sqes + (size_t)idx * SQE_SIZE);
  memset(sqe, 0, SQE_SIZE);
  u->sq_array[idx] = idx;
  __atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
  return sqe;
}

// SQEs queued and not yet taken by the kernel.
static inline unsigned tsn_uring_queued(const tsn_uring *u) {
  return *u->sq_tail - __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
}

void tsn_uring_submit(tsn_uring *u);          // every queued SQE, in one io_uring_enter
void tsn_uring_commit(tsn_uring *u, ent *e);  // queues the entry's COMMIT_AND_FETCH and submits
// The reply in the entry's header: `error` (0 or -errno) and `total` bytes of payload.
void tsn_uring_put_reply(ent *e, uint64_t unique, int error, size_t total);

// uring_read.c
void tsn_uring_read_cqe(tsn_uring *u, const struct io_uring_cqe *cqe); // a data read's CQE
void tsn_uring_read_next(ent *e);  // a request came into e: its last READ's chain went through
void tsn_uring_reads_end(tsn_uring *u); // session end: reads finished by Node's thread answer EIO

#endif
