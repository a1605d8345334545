// Reply functions JS calls with a request id. Each returns true when it answered the request and
// false when the id was already answered (or its session ended): a double reply is refused, never
// a crash. Attributes come from the shared scratch array (layout in tsn.h).
#include "tsn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

void tsn_fill_stat(const double *a, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)a[TSN_ATTR_INO];
  st->st_mode = (mode_t)a[TSN_ATTR_MODE];
  st->st_nlink = (nlink_t)a[TSN_ATTR_NLINK];
  st->st_uid = (uid_t)a[TSN_ATTR_UID];
  st->st_gid = (gid_t)a[TSN_ATTR_GID];
  st->st_rdev = (dev_t)a[TSN_ATTR_RDEV];
  st->st_size = (off_t)a[TSN_ATTR_SIZE];
  st->st_blocks = (blkcnt_t)a[TSN_ATTR_BLOCKS];
  st->st_atim.tv_sec = (time_t)a[TSN_ATTR_ATIME];
  st->st_atim.tv_nsec = (long)a[TSN_ATTR_ATIME_NSEC];
  st->st_mtim.tv_sec = (time_t)a[TSN_ATTR_MTIME];
  st->st_mtim.tv_nsec = (long)a[TSN_ATTR_MTIME_NSEC];
  st->st_ctim.tv_sec = (time_t)a[TSN_ATTR_CTIME];
  st->st_ctim.tv_nsec = (long)a[TSN_ATTR_CTIME_NSEC];
}

static void fill_entry(const double *a, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  e->ino = (fuse_ino_t)a[TSN_NODEID];
  e->generation = (uint64_t)a[TSN_GENERATION];
  e->attr_timeout = a[TSN_ATTR_TIMEOUT];
  e->entry_timeout = a[TSN_ENTRY_TIMEOUT];
  tsn_fill_stat(a, &e->attr);
}

// Takes the request named by id value `idv` out of its slot; NULL when it was already answered
// (or its session ended), or with a pending TypeError when `idv` is no number.
static fuse_req_t take(napi_env env, napi_value idv, tsn_env **te_out) {
  double id;
  tsn_env *te = tsn_env_of(env);
  if (te == NULL || tsn_num(env, idv, &id) != 0) return NULL;
  if (te_out) *te_out = te;
  return tsn_req_take(te, id);
}

// Fetches `n` arguments of which the first is the request id, then takes that request.
static fuse_req_t args_take(napi_env env, napi_callback_info info, size_t n, napi_value *argv,
                            tsn_env **te_out) {
  if (tsn_get_args(env, info, n, argv) != 0) return NULL;
  return take(env, argv[0], te_out);
}

#define ANSWERED(expr) \
  do {                 \
    (void)(expr);      \
    return tsn_bool(env, 1); \
  } while (0)

// replyErr(id, errno): errno 0 is the plain success reply of unlink, release, flush and the like.
napi_value tsn_js_reply_err(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double err;
  if (tsn_get_args(env, info, 2, argv) != 0 || tsn_num(env, argv[1], &err) != 0) return NULL;
  fuse_req_t req = take(env, argv[0], NULL);
  if (req == NULL) return tsn_bool(env, 0);
  ANSWERED(fuse_reply_err(req, (int)err));
}

napi_value tsn_js_reply_none(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  fuse_req_t req = args_take(env, info, 1, argv, NULL);
  if (req == NULL) return tsn_bool(env, 0);
  fuse_reply_none(req);
  return tsn_bool(env, 1);
}

// replyEntry(id): the entry in scratch (ATTR_*, GENERATION, timeouts, NODEID); NODEID 0 makes a
// cacheable negative entry.
napi_value tsn_js_reply_entry(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  tsn_env *te = NULL;
  fuse_req_t req = args_take(env, info, 1, argv, &te);
  if (req == NULL) return tsn_bool(env, 0);
  struct fuse_entry_param e;
  fill_entry(te->scratch, &e);
  ANSWERED(fuse_reply_entry(req, &e));
}

static void fill_open(double fh, double flags, struct fuse_file_info *fi) {
  unsigned f = (unsigned)flags;
  memset(fi, 0, sizeof *fi);
  fi->fh = (uint64_t)fh;
  fi->keep_cache = (f & TSN_OPEN_KEEP_CACHE) != 0;
  fi->direct_io = (f & TSN_OPEN_DIRECT_IO) != 0;
  fi->cache_readdir = (f & TSN_OPEN_CACHE_READDIR) != 0;
  fi->nonseekable = (f & TSN_OPEN_NONSEEKABLE) != 0;
}

// An optional last argument: the backing id (kext.c) the kernel reads and writes this open file
// through (passthrough); absent, undefined or 0: none.
static int32_t backing_arg(napi_env env, napi_callback_info info, size_t at) {
  napi_value argv[4];
  size_t argc = 4;
  double id = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc <= at) return 0;
  if (napi_get_value_double(env, argv[at], &id) != napi_ok || !(id > 0 && id < 2147483648.0)) return 0;
  return (int32_t)id;
}

// replyCreate(id, fh, openFlags, backingId?): the entry in scratch as for replyEntry, flags as for replyOpen.
napi_value tsn_js_reply_create(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double fh, flags;
  if (tsn_get_args(env, info, 3, argv) != 0 || tsn_num(env, argv[1], &fh) != 0 ||
      tsn_num(env, argv[2], &flags) != 0) {
    return NULL;
  }
  int32_t backing = backing_arg(env, info, 3);
  tsn_env *te = NULL;
  fuse_req_t req = take(env, argv[0], &te);
  if (req == NULL) return tsn_bool(env, 0);
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  fill_entry(te->scratch, &e);
  fill_open(fh, flags, &fi);
  tsn_kext_mark_open(backing);
  fuse_reply_create(req, &e, &fi);
  tsn_kext_unmark_open();
  return tsn_bool(env, 1);
}

// replyAttr(id): attributes (ATTR_*) and ATTR_TIMEOUT in scratch.
napi_value tsn_js_reply_attr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  tsn_env *te = NULL;
  fuse_req_t req = args_take(env, info, 1, argv, &te);
  if (req == NULL) return tsn_bool(env, 0);
  struct stat st;
  tsn_fill_stat(te->scratch, &st);
  ANSWERED(fuse_reply_attr(req, &st, te->scratch[TSN_ATTR_TIMEOUT]));
}

// replyReadlink(id, target): target as a latin1 byte string.
napi_value tsn_js_reply_readlink(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (tsn_get_args(env, info, 2, argv) != 0) return NULL;
  char *target = tsn_latin1(env, argv[1], NULL);
  if (target == NULL) return NULL;
  fuse_req_t req = take(env, argv[0], NULL);
  if (req != NULL) fuse_reply_readlink(req, target);
  free(target);
  return tsn_bool(env, req != NULL);
}

// replyOpen(id, fh, flags, backingId?): TSN_OPEN_* bits (keep_cache, direct_io, cache_readdir,
// nonseekable); a backing id makes it a passthrough open.
napi_value tsn_js_reply_open(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double fh, flags;
  if (tsn_get_args(env, info, 3, argv) != 0 || tsn_num(env, argv[1], &fh) != 0 ||
      tsn_num(env, argv[2], &flags) != 0) {
    return NULL;
  }
  int32_t backing = backing_arg(env, info, 3);
  fuse_req_t req = take(env, argv[0], NULL);
  if (req == NULL) return tsn_bool(env, 0);
  struct fuse_file_info fi;
  fill_open(fh, flags, &fi);
  tsn_kext_mark_open(backing);
  fuse_reply_open(req, &fi);
  tsn_kext_unmark_open();
  return tsn_bool(env, 1);
}

napi_value tsn_js_reply_write(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double count;
  if (tsn_get_args(env, info, 2, argv) != 0 || tsn_num(env, argv[1], &count) != 0) return NULL;
  fuse_req_t req = take(env, argv[0], NULL);
  if (req == NULL) return tsn_bool(env, 0);
  ANSWERED(fuse_reply_write(req, (size_t)count));
}

// replyBuf(id, buffer): the bytes of a read, a getxattr value or a listxattr name list. The kernel
// copies them during the call, so JS may reuse the Buffer at once.
napi_value tsn_js_reply_buf(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *data = NULL;
  size_t len = 0;
  if (tsn_get_args(env, info, 2, argv) != 0) return NULL;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    return tsn_throw(env, "tarstack_native: replyBuf expects a Buffer");
  }
  tsn_env *te = tsn_env_of(env);
  double id;
  if (tsn_num(env, argv[0], &id) != 0) return NULL;
  tsn_slot *slot = tsn_req_find(te, id);
  if (slot == NULL) return tsn_bool(env, 0);
  if (slot->size > 0 && len > slot->size) {
    return tsn_throw(env, "tarstack_native: reply larger than the kernel asked for");
  }
  ANSWERED(fuse_reply_buf(tsn_req_take(te, id), data, len));
}

// replyStatfs(id): the STATFS_* slots of scratch.
napi_value tsn_js_reply_statfs(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  tsn_env *te = NULL;
  fuse_req_t req = args_take(env, info, 1, argv, &te);
  if (req == NULL) return tsn_bool(env, 0);
  const double *a = te->scratch;
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = (unsigned long)a[TSN_STATFS_BSIZE];
  sv.f_frsize = (unsigned long)a[TSN_STATFS_FRSIZE];
  sv.f_blocks = (fsblkcnt_t)a[TSN_STATFS_BLOCKS];
  sv.f_bfree = (fsblkcnt_t)a[TSN_STATFS_BFREE];
  sv.f_bavail = (fsblkcnt_t)a[TSN_STATFS_BAVAIL];
  sv.f_files = (fsfilcnt_t)a[TSN_STATFS_FILES];
  sv.f_ffree = (fsfilcnt_t)a[TSN_STATFS_FFREE];
  sv.f_favail = (fsfilcnt_t)a[TSN_STATFS_FAVAIL];
  sv.f_namemax = (unsigned long)a[TSN_STATFS_NAMEMAX];
  ANSWERED(fuse_reply_statfs(req, &sv));
}

// replyXattrSize(id, size): the answer to a size-0 probe of getxattr or listxattr.
napi_value tsn_js_reply_xattr_size(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double size;
  if (tsn_get_args(env, info, 2, argv) != 0 || tsn_num(env, argv[1], &size) != 0) return NULL;
  fuse_req_t req = take(env, argv[0], NULL);
  if (req == NULL) return tsn_bool(env, 0);
  ANSWERED(fuse_reply_xattr(req, (size_t)size));
}

// replyXattr(id, value): the whole getxattr/listxattr protocol in one call: the length for a
// size-0 probe, ERANGE when the caller's buffer is too small, else the bytes.
napi_value tsn_js_reply_xattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *data = NULL;
  size_t len = 0;
  double id;
  tsn_env *te = tsn_env_of(env);
  if (te == NULL || tsn_get_args(env, info, 2, argv) != 0 || tsn_num(env, argv[0], &id) != 0) {
    return NULL;
  }
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    return tsn_throw(env, "tarstack_native: replyXattr expects a Buffer");
  }
  tsn_slot *slot = tsn_req_find(te, id);
  if (slot == NULL) return tsn_bool(env, 0);
  uint32_t size = slot->size;
  fuse_req_t req = tsn_req_take(te, id);
  if (size == 0) {
    fuse_reply_xattr(req, len);
  } else if (len > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, data, len);
  }
  return tsn_bool(env, 1);
}
