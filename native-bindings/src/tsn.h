// Shared declarations of tarstack's libfuse3 low-level binding: per-env state, sessions, the
// request-handle table, the worker pools (reads, notifications). Everything runs on Node's thread
// except the pools' workers, which only ever touch what they were handed.
#ifndef TSN_H
#define TSN_H

#define FUSE_USE_VERSION 312 // the 3.12 API: fuse_session_new/mount/fd, readdirplus, expire
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE // preadv2, RWF_NOWAIT, splice
#endif

#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

// The Float64Array shared with JS, so attributes cross without allocating, and the other numbers
// both sides must agree on. Each is named once, here; the addon exports the lists (`layout`) and
// src/fuse/lowlevel.ts refuses to start unless its own names and numbers are the same.
//   OUT  0..13 attr, 14..17 what an entry adds; statfs replies reuse 0..8.
//   IN  20..29 setattr values. CTX 32..36 caller of the current request, written before each
//   handler (stale once it returns).
#define TSN_SLOTS(X)                                                                              \
  X(ATTR_INO, 0) X(ATTR_MODE, 1) X(ATTR_NLINK, 2) X(ATTR_UID, 3) X(ATTR_GID, 4) X(ATTR_RDEV, 5)    \
  X(ATTR_SIZE, 6) X(ATTR_BLOCKS, 7) X(ATTR_ATIME, 8) X(ATTR_ATIME_NSEC, 9) X(ATTR_MTIME, 10)       \
  X(ATTR_MTIME_NSEC, 11) X(ATTR_CTIME, 12) X(ATTR_CTIME_NSEC, 13)                                  \
  X(GENERATION, 14) X(ATTR_TIMEOUT, 15) X(ENTRY_TIMEOUT, 16)                                       \
  X(NODEID, 17) /* the entry's node id; its attr's st_ino (ATTR_INO) may differ */                \
  X(STATFS_BSIZE, 0) X(STATFS_FRSIZE, 1) X(STATFS_BLOCKS, 2) X(STATFS_BFREE, 3)                    \
  X(STATFS_BAVAIL, 4) X(STATFS_FILES, 5) X(STATFS_FFREE, 6) X(STATFS_FAVAIL, 7)                    \
  X(STATFS_NAMEMAX, 8)                                                                             \
  X(SET_MODE, 20) X(SET_UID, 21) X(SET_GID, 22) X(SET_SIZE, 23) X(SET_ATIME, 24)                   \
  X(SET_ATIME_NSEC, 25) X(SET_MTIME, 26) X(SET_MTIME_NSEC, 27) X(SET_CTIME, 28)                    \
  X(SET_CTIME_NSEC, 29)                                                                            \
  X(CALLER_UID, 32) X(CALLER_GID, 33) X(CALLER_PID, 34) X(CALLER_UMASK, 35)                        \
  X(CALLER_KILL, 36) /* 1: the request carried FUSE_HANDLE_KILLPRIV_V2's kill-suid/sgid bit */     \
  X(SCRATCH_LEN, 40)
// replyOpen/replyCreate flag bits.
#define TSN_OPEN_FLAGS(X) X(KEEP_CACHE, 1) X(DIRECT_IO, 2) X(CACHE_READDIR, 4) X(NONSEEKABLE, 8)
// setattr's `toSet` bits are libfuse's own, passed through as they come.
#define TSN_SETATTR_BITS(X)                                                                       \
  X(MODE, FUSE_SET_ATTR_MODE) X(UID, FUSE_SET_ATTR_UID) X(GID, FUSE_SET_ATTR_GID)                  \
  X(SIZE, FUSE_SET_ATTR_SIZE) X(ATIME, FUSE_SET_ATTR_ATIME) X(MTIME, FUSE_SET_ATTR_MTIME)          \
  X(ATIME_NOW, FUSE_SET_ATTR_ATIME_NOW) X(MTIME_NOW, FUSE_SET_ATTR_MTIME_NOW)                      \
  X(CTIME, FUSE_SET_ATTR_CTIME)

#define TSN_ENUM_SLOT(name, value) TSN_##name = value,
#define TSN_ENUM_OPEN(name, value) TSN_OPEN_##name = value,
enum { TSN_SLOTS(TSN_ENUM_SLOT) };
enum { TSN_OPEN_FLAGS(TSN_ENUM_OPEN) };
#undef TSN_ENUM_SLOT
#undef TSN_ENUM_OPEN
_Static_assert(TSN_ATTR_CTIME_NSEC < TSN_GENERATION && TSN_STATFS_NAMEMAX < TSN_GENERATION &&
                   TSN_NODEID < TSN_SET_MODE && TSN_SET_CTIME_NSEC < TSN_CALLER_UID &&
                   TSN_CALLER_KILL < TSN_SCRATCH_LEN,
               "scratch regions overlap");

// JS handlers a session may have; a missing one leaves the op unset so libfuse answers ENOSYS.
enum tsn_op {
  TSN_OP_LOOKUP, TSN_OP_FORGET, TSN_OP_GETATTR, TSN_OP_SETATTR, TSN_OP_READLINK, TSN_OP_MKNOD,
  TSN_OP_MKDIR, TSN_OP_UNLINK, TSN_OP_RMDIR, TSN_OP_SYMLINK, TSN_OP_RENAME, TSN_OP_LINK,
  TSN_OP_OPEN, TSN_OP_READ, TSN_OP_WRITE, TSN_OP_FLUSH, TSN_OP_RELEASE, TSN_OP_FSYNC,
  TSN_OP_OPENDIR, TSN_OP_READDIR, TSN_OP_RELEASEDIR, TSN_OP_FSYNCDIR, TSN_OP_STATFS,
  TSN_OP_SETXATTR, TSN_OP_GETXATTR, TSN_OP_LISTXATTR, TSN_OP_REMOVEXATTR, TSN_OP_ACCESS,
  TSN_OP_CREATE, TSN_OP_FALLOCATE,
  TSN_OP_INIT, TSN_OP_END, // lifecycle callbacks, not requests
  TSN_OP_COUNT
};
extern const char *const tsn_op_names[TSN_OP_COUNT];

struct tsn_session;

// One outstanding kernel request. JS holds it as a number: generation * 2^22 + index, so a
// stale or repeated reply finds a different generation and is refused instead of crashing.
typedef struct tsn_slot {
  fuse_req_t req; // NULL while free
  struct tsn_session *s;
  uint32_t gen;
  uint32_t next_free;
  uint32_t size;   // readdir: buffer size the kernel asked for; read: bytes asked for
  uint32_t dirlen; // readdir: bytes packed so far
  char *dirbuf;    // readdir: packing buffer, allocated on the first entry
  void *ring_ent;  // the io_uring entry the request came in (uring.c), else NULL
} tsn_slot;

#define TSN_SLOT_BITS 22
#define TSN_SLOT_MAX (1u << TSN_SLOT_BITS)
#define TSN_NO_SLOT UINT32_MAX

typedef struct tsn_env {
  napi_env env;
  double *scratch;
  napi_ref scratch_ref;
  tsn_slot *slots;
  uint32_t nslots, cap, free_head;
  struct tsn_session *sessions; // live sessions, for env cleanup
  unsigned nsessions;
  // Every session of the env reads its requests into this one buffer: requests are read and
  // processed one at a time on Node's thread, and nothing keeps a pointer into it afterwards.
  struct fuse_buf recv;
  char *fastbuf; // Node-thread buffer for reads served from the page cache
  size_t fastbuf_cap;
  struct tsn_mailbox *mailbox; // notifications finished on workers, settled on Node's thread
} tsn_env;

typedef struct tsn_range {
  int fd; // -1: zeros
  off_t pos;
  size_t len;
} tsn_range;

// pool.c: worker pools shared by every session of the process, fair between sessions.
typedef struct tsn_worker { // a worker thread's own state, handed to each job it runs
  void *buf;
  size_t cap;
} tsn_worker;

typedef struct tsn_job {
  struct tsn_job *next;
  void (*run)(struct tsn_job *, tsn_worker *); // on a worker; answers, then frees the job
} tsn_job;

// A session's queue in one pool, with its own limit on jobs in flight. Closing it (session end)
// hands back the jobs never started; `drained` runs on a worker once the last started one is done.
typedef struct tsn_lane {
  tsn_job *head, *tail;
  unsigned queued, inflight, limit;
  int in_ring, closed;
  struct tsn_lane *ring_next;
  void (*drained)(struct tsn_lane *);
} tsn_lane;

typedef struct tsn_pool {
  pthread_mutex_t mu;
  pthread_cond_t work, exited;
  tsn_lane *ring_head, *ring_tail; // lanes with a job they may start now, in turn
  unsigned threads, idle, wakeups, running, keep, max;
  int stopping;
  _Atomic unsigned busy; // jobs queued or running
} tsn_pool;

extern tsn_pool tsn_read_pool, tsn_note_pool;
void tsn_lane_init(tsn_lane *l, unsigned limit, void (*drained)(tsn_lane *));
int tsn_pool_submit(tsn_pool *p, tsn_lane *l, tsn_job *j); // -1: the lane is closed
tsn_job *tsn_lane_close(tsn_pool *p, tsn_lane *l, int *busy); // jobs never started; *busy: some run
int tsn_pool_busy(tsn_pool *p);
void tsn_pool_stats(tsn_pool *p, double out[4]); // threads idle running queued
void tsn_pool_quiesce(tsn_pool *p); // no job anywhere: end every thread (at the last env's end)
void *tsn_worker_buf(tsn_worker *w, size_t size);
size_t tsn_huge_len(size_t size); // what tsn_huge_map maps for `size`: whole 2 MiB pages
void *tsn_huge_map(size_t size);
void tsn_huge_unmap(void *p, size_t size);

#define TSN_CONTAINER(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

enum tsn_state { TSN_LIVE, TSN_ENDED };

typedef struct tsn_config {
  int readdirplus;  // 0 no, 1 yes (always plus), 2 auto (kernel picks)
  int nowait;       // try RWF_NOWAIT on Node's thread before handing a read to the pool
  int read_threads; // reads of this session in flight in the read pool at most
  unsigned max_readahead;
  unsigned max_background;
  int auto_inval; // FUSE_CAP_AUTO_INVAL_DATA: check attributes on every cached read
  int spin_us; // after the last queued request, keep reading /dev/fuse this long before sleeping
  int kernel_ext;     // read/write /dev/fuse through kext.c's hooks (0: libfuse's own, as before)
  int passthrough;    // ask for FUSE_PASSTHROUGH (kext.c); backingOpen needs CAP_SYS_ADMIN anyway
  unsigned max_pages; // > 0: FUSE_MAX_PAGES with this (the kernel caps it at fs.fuse.max_pages_limit)
  int killpriv;       // ask for FUSE_HANDLE_KILLPRIV_V2 (kext.c): JS clears set-id bits itself
  int uring;          // ask for FUSE_OVER_IO_URING when the kernel offers it (uring.c)
  int uring_depth;    // ring entries per CPU queue
} tsn_config;

#define TSN_OPCODES 64 // requests counted by opcode below this (FUSE_STATX is 52)

typedef struct tsn_ext { // what kext.c saw and negotiated
  int hooked, passthrough, killpriv;
  int uring; // requests come through io_uring (uring.c): negotiated and every entry registered
  int req_kill; // the request being processed (Node's thread) carried a KILL_SUIDGID bit
  unsigned max_pages; // asked for in INIT's reply (0: libfuse's 256)
  unsigned kernel_minor;
  uint64_t kernel_flags; // INIT's offer, flags2 included
  uint64_t init_unique;  // the INIT request whose reply is still to be edited
} tsn_ext;

typedef struct tsn_uring tsn_uring;

typedef struct tsn_session {
  tsn_env *te;
  struct fuse_session *se;
  uv_poll_t poll;
  // Once ended: the poll handle until closed, and each lane until its started jobs are done.
  // The last to let go destroys the fuse_session (closing /dev/fuse) and frees the struct.
  _Atomic int refs;
  napi_ref handlers[TSN_OP_COUNT];
  napi_async_context actx;
  napi_ref resource;
  struct tsn_handle *handle;
  tsn_config cfg;
  enum tsn_state state;
  int in_poll, end_requested, mounted, env_gone;
  int end_errno; // why the session ended: 0 after a clean unmount
  double requests;
  tsn_ext ext;
  tsn_uring *uring; // prepared when INIT's reply asked for io_uring
  double ops[TSN_OPCODES]; // requests read, by opcode (counted when kext.c's hooks are on)
  double conn_info[8]; // max_read max_write max_readahead capable want max_background time_gran proto_minor
  tsn_lane reads, notes; // its queues in tsn_read_pool and tsn_note_pool
  struct tsn_direct *direct; // files whose READs C answers without JS (readpool.c), or NULL
  size_t direct_cap, direct_used;
  double direct_reads; // READs answered that way
  double streamed_reads; // READs answered (or parked) from a stream's slabs (stream.c)
  struct tsn_session *next;
} tsn_session;

// What JS holds for a session; outlives it, so late calls find s == NULL instead of freed memory.
typedef struct tsn_handle {
  tsn_session *s;
} tsn_handle;

// reqs.c
double tsn_req_put(tsn_session *s, fuse_req_t req, uint32_t size);
tsn_slot *tsn_req_find(tsn_env *te, double id);
fuse_req_t tsn_req_take(tsn_env *te, double id);
void tsn_req_fail_session(tsn_env *te, tsn_session *s, int err);
void tsn_reqs_free(tsn_env *te);

// readpool.c: READs of files registered with readDirect, answered without entering JS
int tsn_read_direct(tsn_session *s, fuse_req_t req, uint64_t ino, size_t size, off_t off);
void tsn_direct_free(tsn_session *s);
napi_value tsn_js_read_direct(napi_env, napi_callback_info);

// stream.c: READs of a member answered from a decoding stream's checked slabs (no JS)
typedef struct tsr_stream tsr_stream;
int tsr_read(tsn_session *s, fuse_req_t req, tsr_stream *st, uint64_t mpos, uint64_t msize, size_t size, off_t off);
tsr_stream *tsr_get(napi_env env, napi_value v);
void tsr_ref(tsr_stream *st);
void tsr_unref(tsr_stream *st);
void tsr_session_end(tsn_session *s);
void tsn_direct_end(tsn_session *s); // readpool.c: the registrations let go of their streams
napi_value tsn_js_read_streamed(napi_env, napi_callback_info);

// ops.c
void tsn_fill_ops(tsn_session *s, struct fuse_lowlevel_ops *ops);

// kext.c
int tsn_kext_start(tsn_session *s); // after fuse_session_mount: hooks on its fd
void tsn_kext_mark_open(int32_t backing_id); // the next OPEN/CREATE reply from this thread
void tsn_kext_unmark_open(void);
void tsn_kext_note_request(tsn_session *s, const void *buf, size_t n); // count it, take its kill bit
napi_value tsn_js_backing_open(napi_env, napi_callback_info);
napi_value tsn_js_backing_close(napi_env, napi_callback_info);

// uring.c
int tsn_uring_prepare(tsn_session *s, size_t payload); // 0: INIT's reply may ask for io_uring
int tsn_uring_register(tsn_session *s);                // after INIT's reply was written
ssize_t tsn_uring_reply(tsn_uring *u, const struct iovec *iov, int count); // -1: not a ring request
int tsn_uring_end(tsn_session *s); // 1: a handle closes and lets go of one session reference
void *tsn_uring_current(tsn_session *s); // the entry of the request being processed, else NULL
// A read of a ring request, straight into its entry with IORING_OP_READ (uring_read.c); -1: not
// taken. Taken, the request is answered (libfuse's req is let go at once).
int tsn_uring_read(tsn_session *s, void *ent, fuse_req_t req, const tsn_range *r, size_t n,
                   size_t total);
void tsn_uring_free(tsn_uring *u);
void tsn_uring_unmount(struct fuse_session *se); // fuse_session_unmount, Node's thread not waiting in it
void tsn_uring_info(tsn_session *s, double out[6]); // requests, entries, commits, reads, linked, broken

// session.c
void tsn_session_end(tsn_session *s, int call_js);
void tsn_session_unref(tsn_session *s);
// Runs body(s, status) on Node's thread with the session's handle and callback scopes open; a
// non-zero return (or an end asked for meanwhile) ends the session.
void tsn_session_run(tsn_session *s, int (*body)(tsn_session *, int), int status);
int tsn_session_may_spin(tsn_session *s);
int64_t tsn_now_ns(void);
napi_value tsn_js_mount(napi_env env, napi_callback_info info);
napi_value tsn_js_unmount(napi_env env, napi_callback_info info);
napi_value tsn_js_session_info(napi_env env, napi_callback_info info);
tsn_session *tsn_handle_session(napi_env env, napi_value v);

// replies.c, dir.c
napi_value tsn_js_reply_err(napi_env, napi_callback_info);
napi_value tsn_js_reply_none(napi_env, napi_callback_info);
napi_value tsn_js_reply_entry(napi_env, napi_callback_info);
napi_value tsn_js_reply_create(napi_env, napi_callback_info);
napi_value tsn_js_reply_attr(napi_env, napi_callback_info);
napi_value tsn_js_reply_readlink(napi_env, napi_callback_info);
napi_value tsn_js_reply_open(napi_env, napi_callback_info);
napi_value tsn_js_reply_write(napi_env, napi_callback_info);
napi_value tsn_js_reply_buf(napi_env, napi_callback_info);
napi_value tsn_js_reply_statfs(napi_env, napi_callback_info);
napi_value tsn_js_reply_xattr_size(napi_env, napi_callback_info);
napi_value tsn_js_reply_xattr(napi_env, napi_callback_info);
napi_value tsn_js_dir_add(napi_env, napi_callback_info);
napi_value tsn_js_dir_add_plus(napi_env, napi_callback_info);
napi_value tsn_js_reply_dir(napi_env, napi_callback_info);
void tsn_fill_stat(const double *a, struct stat *st);

// readpool.c
void tsn_reads_cancel(tsn_job *unrun); // answers EIO to reads a closed lane never started
napi_value tsn_js_reply_ranges(napi_env, napi_callback_info);
napi_value tsn_js_pool_stats(napi_env, napi_callback_info);

// notify.c
void tsn_notes_cancel(tsn_env *te, tsn_job *unrun, int call_js); // resolve to -ENOTCONN
void tsn_mailbox_close(tsn_env *te); // env teardown: late notes are dropped, not settled
napi_value tsn_js_notify_inval_inode(napi_env, napi_callback_info);
napi_value tsn_js_notify_inval_entry(napi_env, napi_callback_info);
napi_value tsn_js_notify_delete(napi_env, napi_callback_info);

// jsutil.c
tsn_env *tsn_env_of(napi_env env);
int tsn_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
int tsn_num(napi_env env, napi_value v, double *out);

// sys.c: the `sys` object of system calls Node lacks.
int tsn_sys_init(napi_env env, napi_value exports);
int tsn_tree_init(napi_env env, napi_value sys); // tree.c: removeTree, entryKinds on the sys object
// Throws an Error with Node's code/errno/syscall for errno `err` (as fs does); returns NULL.
napi_value tsn_throw_errno(napi_env env, int err, const char *syscall);
napi_value tsn_bool(napi_env env, int b);
napi_value tsn_undefined(napi_env env);
napi_value tsn_throw(napi_env env, const char *msg);
char *tsn_latin1(napi_env env, napi_value v, size_t *len); // malloc'ed, NUL-terminated

// codec.c: the `codec` object of gzip/zstd/xz decoders for compressed tars.
int tsn_codec_init(napi_env env, napi_value exports);

// fetch.c: the `fetch` object, range GETs of remote blobs (libcurl) checked and cached on native threads.
int tsn_fetch_init(napi_env env, napi_value exports);
#endif
