// What the kernel's FUSE offers beyond libfuse 3.14's negotiation (issue 17): passthrough of open
// files to a backing file (kernel 6.9+, CAP_SYS_ADMIN), request sizes above 256 pages, and
// FUSE_HANDLE_KILLPRIV_V2 (the daemon clears suid/sgid itself, see req_kill). libfuse
// 3.14 reads and writes /dev/fuse through hooks once fuse_session_custom_io() is given them; we
// give them after fuse_session_mount() on the fd it opened, so mounting (mount(2) as root,
// fusermount3 otherwise) and every request and reply stay libfuse's. The hooks only
//   - count requests by opcode (sessionInfo().ops), and remember INIT's offer;
//   - edit the INIT reply: FUSE_MAX_PAGES with our max_pages, FUSE_PASSTHROUGH with
//     max_stack_depth 1 (flags2, FUSE_INIT_EXT);
//   - edit an OPEN/CREATE reply that Node's thread marked (thread-local, so replies the read pool
//     sends meanwhile are never touched): FOPEN_PASSTHROUGH and the backing id.
// The structs are the kernel's include/uapi/linux/fuse.h (7.40+, which added backing_id and
// max_stack_depth); Debian 12's /usr/include/linux/fuse.h (7.38) lacks them, so the parts used are
// declared here and checked for size and offsets against it.
#include "tsn.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define K_FUSE_PASSTHROUGH (1ULL << 37) // uapi 7.40
#define K_FUSE_OVER_IO_URING (1ULL << 41) // uapi 7.42, offered only while enable_uring is Y
#define K_DEFAULT_MAX_PAGES 32            // the kernel's pages per request without FUSE_MAX_PAGES
#define K_FOPEN_PASSTHROUGH (1u << 7)
#define K_MAX_STACK_DEPTH 1 // backing files on a plain filesystem (ext4, xfs...), not on a stack

struct k_init_out { // uapi 7.40: max_stack_depth took unused[0]
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write, time_gran;
  uint16_t max_pages, map_alignment;
  uint32_t flags2, max_stack_depth, unused[6];
};
struct k_open_out { // uapi 7.40: backing_id took the padding
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
struct k_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define K_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct k_backing_map)
#define K_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

_Static_assert(sizeof(struct k_init_out) == sizeof(struct fuse_init_out), "fuse_init_out size");
_Static_assert(offsetof(struct k_init_out, flags2) == offsetof(struct fuse_init_out, flags2),
               "fuse_init_out flags2");
_Static_assert(offsetof(struct k_init_out, max_stack_depth) ==
                   offsetof(struct fuse_init_out, unused),
               "max_stack_depth is the first unused word of 7.38");
_Static_assert(sizeof(struct k_open_out) == sizeof(struct fuse_open_out), "fuse_open_out size");
_Static_assert(offsetof(struct k_open_out, backing_id) == offsetof(struct fuse_open_out, padding),
               "backing_id is 7.38's padding");

// Set by Node's thread around one fuse_reply_open/create (0: no edit).
static _Thread_local int32_t open_backing_id;

// With FUSE_HANDLE_KILLPRIV_V2 the kernel no longer clears suid/sgid itself; it marks the requests
// after which the filesystem must (fs/fuse/file.c, dir.c): a WRITE or a truncating SETATTR by a
// caller without CAP_FSETID, a chown of a non-directory by anyone, an O_TRUNC OPEN/CREATE by a
// caller without CAP_FSETID. libfuse 3.14 drops those bits while parsing, so the flag is read here
// and handed to JS with the request (scratch CALLER_KILL): requests are read and processed one at
// a time on Node's thread, so the next request processed is this one.
static int req_kill(const struct fuse_in_header *h, size_t n) {
  const void *in = h + 1;
  size_t len = n - sizeof *h;
  switch (h->opcode) {
  case FUSE_WRITE:
    return len >= sizeof(struct fuse_write_in) &&
           (((const struct fuse_write_in *)in)->write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
  case FUSE_SETATTR:
    return len >= sizeof(struct fuse_setattr_in) &&
           (((const struct fuse_setattr_in *)in)->valid & FATTR_KILL_SUIDGID) != 0;
  case FUSE_OPEN:
    return len >= sizeof(struct fuse_open_in) &&
           (((const struct fuse_open_in *)in)->open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
  case FUSE_CREATE:
    return len >= sizeof(struct fuse_create_in) &&
           (((const struct fuse_create_in *)in)->open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
  default:
    return 0;
  }
}

// Every request read from /dev/fuse or taken from the ring (uring.c), just before libfuse processes it.
void tsn_kext_note_request(tsn_session *s, const void *buf, size_t n) {
  const struct fuse_in_header *h = buf;
  if (h->opcode < TSN_OPCODES) s->ops[h->opcode]++;
  s->ext.req_kill = s->ext.killpriv ? req_kill(h, n) : 0;
}

static ssize_t hook_read(int fd, void *buf, size_t len, void *userdata) {
  tsn_session *s = userdata;
  ssize_t n = read(fd, buf, len);
  if (n < (ssize_t)sizeof(struct fuse_in_header)) return n;
  const struct fuse_in_header *h = buf;
  tsn_kext_note_request(s, buf, (size_t)n);
  if (h->opcode == FUSE_INIT && (size_t)n >= sizeof *h + offsetof(struct fuse_init_in, unused)) {
    const struct fuse_init_in *in = (const void *)(h + 1);
    uint64_t flags = in->flags;
    if (in->major == 7 && in->minor >= 36 && (flags & FUSE_INIT_EXT)) flags |= (uint64_t)in->flags2 << 32;
    s->ext.kernel_flags = flags;
    s->ext.kernel_minor = in->major == 7 ? in->minor : 0;
    s->ext.init_unique = h->unique;
    // Decided now, before libfuse calls the init handler, so that JS sees it there.
    s->ext.passthrough = s->cfg.passthrough && (flags & K_FUSE_PASSTHROUGH) && (flags & FUSE_INIT_EXT);
    s->ext.max_pages = s->cfg.max_pages > 0 && (flags & FUSE_MAX_PAGES) ? s->cfg.max_pages : 0;
    // Not beside passthrough: a passed-through write reaches the daemon as nothing at all (no
    // WRITE to carry the kill bit), and fuse_setattr drops the kernel's own clearing with V2, so
    // another user's write would keep suid. Passthrough mounts keep the kernel's clearing.
    s->ext.killpriv = s->cfg.killpriv && !s->ext.passthrough && (flags & FUSE_HANDLE_KILLPRIV_V2) ? 1 : 0;
  }
  return n;
}

// The INIT reply, as libfuse built it for the kernel's offer, gets what 3.14 cannot ask for.
static void edit_init(tsn_session *s, struct k_init_out *o) {
  if (s->ext.max_pages > 0) {
    o->flags |= FUSE_MAX_PAGES;
    o->max_pages = (uint16_t)s->ext.max_pages;
  }
  if (s->ext.killpriv) { // v1's unconditional contract stays off (op_init drops it)
    o->flags &= ~(uint32_t)FUSE_HANDLE_KILLPRIV;
    o->flags |= FUSE_HANDLE_KILLPRIV_V2;
  }
  if (s->ext.passthrough) { // the kernel refuses it beside writeback caching, which we never ask for
    o->flags &= ~(uint32_t)FUSE_WRITEBACK_CACHE;
    o->flags |= FUSE_INIT_EXT;
    o->flags2 |= (uint32_t)(K_FUSE_PASSTHROUGH >> 32);
    o->max_stack_depth = K_MAX_STACK_DEPTH;
  }
  // io_uring: the ring is made before asking (a connection that negotiated it blocks every request
  // until each queue has an entry), with payloads as big as the kernel's biggest request.
  size_t pages = (o->flags & FUSE_MAX_PAGES) ? o->max_pages : K_DEFAULT_MAX_PAGES;
  size_t payload = pages * 4096 > o->max_write ? pages * 4096 : o->max_write;
  if (s->cfg.uring && (s->ext.kernel_flags & K_FUSE_OVER_IO_URING) &&
      tsn_uring_prepare(s, payload < 8192 ? 8192 : payload) == 0) {
    o->flags |= FUSE_INIT_EXT;
    o->flags2 |= (uint32_t)(K_FUSE_OVER_IO_URING >> 32);
  }
}

static ssize_t hook_writev(int fd, struct iovec *iov, int count, void *userdata) {
  tsn_session *s = userdata;
  if (count >= 2 && iov[0].iov_len == sizeof(struct fuse_out_header)) {
    const struct fuse_out_header *oh = iov[0].iov_base;
    if (oh->error == 0 && s->ext.init_unique != 0 && oh->unique == s->ext.init_unique) {
      s->ext.init_unique = 0;
      if (iov[1].iov_len == sizeof(struct k_init_out) && s->ext.kernel_minor >= 23) {
        edit_init(s, iov[1].iov_base);
      }
      ssize_t res = writev(fd, iov, count);
      if (s->uring != NULL && res > 0) tsn_uring_register(s); // the kernel is initialized now
      return res;
    } else if (oh->error == 0 && open_backing_id > 0 && iov[1].iov_len >= sizeof(struct k_open_out)) {
      // OPEN's reply is a fuse_open_out, CREATE's an entry followed by one: the last 16 bytes.
      struct k_open_out *oo = (void *)((char *)iov[1].iov_base + iov[1].iov_len - sizeof *oo);
      oo->open_flags |= K_FOPEN_PASSTHROUGH;
      oo->open_flags &= ~(uint32_t)FOPEN_DIRECT_IO;
      oo->backing_id = open_backing_id;
      open_backing_id = 0;
    }
  }
  if (s->ext.uring && count >= 1) {
    ssize_t res = tsn_uring_reply(s->uring, iov, count);
    if (res >= 0) return res;
  }
  return writev(fd, iov, count);
}

static const struct fuse_custom_io hooks = { .read = hook_read, .writev = hook_writev };

int tsn_kext_start(tsn_session *s) {
  if (!s->cfg.kernel_ext) return 0;
  // The same fd fuse_session_mount() opened: the session keeps its mountpoint, so unmounting and
  // destroying go as before (custom_io only sets the hooks and the fd).
  int res = fuse_session_custom_io(s->se, &hooks, fuse_session_fd(s->se));
  if (res == 0) s->ext.hooked = 1;
  return res;
}

void tsn_kext_mark_open(int32_t backing_id) {
  open_backing_id = backing_id;
}

void tsn_kext_unmark_open(void) {
  open_backing_id = 0;
}

// backingOpen(session, fd) -> backing id (> 0), or -errno: EPERM without CAP_SYS_ADMIN or when
// passthrough was not negotiated, ELOOP for a backing file on a stacked filesystem.
napi_value tsn_js_backing_open(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  double fd;
  if (tsn_get_args(env, info, 2, argv) != 0 || tsn_num(env, argv[1], &fd) != 0) return NULL;
  tsn_session *s = tsn_handle_session(env, argv[0]);
  int res;
  if (s == NULL || s->state != TSN_LIVE) {
    res = -ENOTCONN;
  } else if (!s->ext.passthrough) {
    res = -EPERM;
  } else {
    struct k_backing_map map = { .fd = (int32_t)fd };
    res = ioctl(fuse_session_fd(s->se), K_DEV_IOC_BACKING_OPEN, &map);
    if (res < 0) res = -errno;
    else if (res == 0) res = -EIO; // ids start at 1: 0 would mean "no backing" in an open reply
  }
  napi_create_int32(env, res, &out);
  return out;
}

// backingClose(session, id) -> 0 or -errno. Files already opened with the id keep their backing file.
napi_value tsn_js_backing_close(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  double id;
  if (tsn_get_args(env, info, 2, argv) != 0 || tsn_num(env, argv[1], &id) != 0) return NULL;
  tsn_session *s = tsn_handle_session(env, argv[0]);
  int res = -ENOTCONN;
  if (s != NULL && s->state == TSN_LIVE) {
    uint32_t bid = (uint32_t)id;
    res = ioctl(fuse_session_fd(s->se), K_DEV_IOC_BACKING_CLOSE, &bid);
    if (res < 0) res = -errno;
  }
  napi_create_int32(env, res, &out);
  return out;
}
