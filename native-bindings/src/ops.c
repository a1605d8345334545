// libfuse low-level op trampolines: each runs on Node's thread (inside fuse_session_process_buf,
// called from the uv_poll callback), parks the request in a slot and calls its JS handler
// synchronously. JS answers at once or later through the reply functions; if the handler throws,
// the request is answered EIO here so the kernel never waits forever.
#include "tsn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *const tsn_op_names[TSN_OP_COUNT] = {
  "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
  "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync", "opendir",
  "readdir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr",
  "removexattr", "access", "create", "fallocate", "init", "end",
};

typedef struct call {
  tsn_session *s;
  napi_env env;
  napi_handle_scope scope;
  fuse_req_t req;
  double id;
  size_t argc;
  int ok;
  napi_value argv[8];
} call;

// Each helper creates one argument; a failure marks the call so it is answered EIO, not made.
static void push(call *c, napi_status st, napi_value v) {
  if (st != napi_ok) c->ok = 0;
  c->argv[c->argc++] = v;
}
static void num(call *c, double d) {
  napi_value v = NULL;
  napi_status st = napi_create_double(c->env, d, &v);
  push(c, st, v);
}
static void str(call *c, const char *p) {
  napi_value v = NULL;
  napi_status st = napi_create_string_latin1(c->env, p, NAPI_AUTO_LENGTH, &v);
  push(c, st, v);
}
static void bytes(call *c, const void *p, size_t n) {
  napi_value v = NULL;
  napi_status st = napi_create_buffer_copy(c->env, n, p, NULL, &v);
  push(c, st, v);
}
static double fh_of(const struct fuse_file_info *fi) {
  return fi ? (double)fi->fh : -1;
}

static void log_exception(napi_env env, const char *op) {
  napi_value exc = NULL, text = NULL;
  char msg[512] = "(unprintable)";
  if (napi_get_and_clear_last_exception(env, &exc) == napi_ok &&
      napi_coerce_to_string(env, exc, &text) == napi_ok) {
    napi_get_value_string_utf8(env, text, msg, sizeof msg, NULL);
  }
  fprintf(stderr, "tarstack_native: %s handler threw: %s\n", op, msg);
}

// Calls handler `op` with the arguments gathered so far; 0 when it returned normally.
static int invoke(tsn_session *s, napi_env env, enum tsn_op op, size_t argc, napi_value *argv) {
  napi_value fn = NULL, undef = NULL;
  if (napi_get_reference_value(env, s->handlers[op], &fn) != napi_ok || fn == NULL ||
      napi_get_undefined(env, &undef) != napi_ok) {
    return -1;
  }
  if (napi_call_function(env, undef, fn, argc, argv, NULL) != napi_ok) {
    log_exception(env, tsn_op_names[op]);
    return -1;
  }
  return 0;
}

static int begin(call *c, fuse_req_t req, uint32_t size) {
  c->s = fuse_req_userdata(req);
  c->env = c->s->te->env;
  c->req = req;
  c->argc = 0;
  c->ok = 1;
  if (napi_open_handle_scope(c->env, &c->scope) != napi_ok) {
    fuse_reply_err(req, EIO);
    return -1;
  }
  c->id = tsn_req_put(c->s, req, size);
  if (c->id < 0) {
    napi_close_handle_scope(c->env, c->scope);
    fuse_reply_err(req, ENOMEM);
    return -1;
  }
  // The caller, for permission checks and the owner of new files; stale after the handler returns.
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  double *x = c->s->te->scratch;
  x[TSN_CALLER_UID] = ctx->uid, x[TSN_CALLER_GID] = ctx->gid;
  x[TSN_CALLER_PID] = ctx->pid, x[TSN_CALLER_UMASK] = ctx->umask;
  x[TSN_CALLER_KILL] = c->s->ext.req_kill;
  num(c, c->id);
  return 0;
}

static void finish(call *c, enum tsn_op op) {
  if (!c->ok || invoke(c->s, c->env, op, c->argc, c->argv) != 0) {
    fuse_req_t req = tsn_req_take(c->s->te, c->id); // NULL if JS answered before failing
    if (req != NULL) fuse_reply_err(req, EIO);
  }
  napi_close_handle_scope(c->env, c->scope);
}

#define BEGIN(size)                         \
  call c;                                   \
  if (begin(&c, req, (size)) != 0) return;

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(0) num(&c, parent), str(&c, name), finish(&c, TSN_OP_LOOKUP);
}

static void forget_one(tsn_session *s, fuse_ino_t ino, uint64_t n) {
  napi_value argv[2];
  if (napi_create_double(s->te->env, (double)ino, &argv[0]) == napi_ok &&
      napi_create_double(s->te->env, (double)n, &argv[1]) == napi_ok) {
    invoke(s, s->te->env, TSN_OP_FORGET, 2, argv);
  }
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  tsn_session *s = fuse_req_userdata(req);
  napi_handle_scope scope;
  if (napi_open_handle_scope(s->te->env, &scope) == napi_ok) {
    forget_one(s, ino, nlookup);
    napi_close_handle_scope(s->te->env, scope);
  }
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f) {
  tsn_session *s = fuse_req_userdata(req);
  napi_handle_scope scope;
  if (napi_open_handle_scope(s->te->env, &scope) == napi_ok) {
    for (size_t i = 0; i < count; i++) forget_one(s, f[i].ino, f[i].nlookup);
    napi_close_handle_scope(s->te->env, scope);
  }
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), finish(&c, TSN_OP_GETATTR);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int to_set,
                       struct fuse_file_info *fi) {
  BEGIN(0)
  double *x = c.s->te->scratch;
  x[TSN_SET_MODE] = a->st_mode, x[TSN_SET_UID] = a->st_uid, x[TSN_SET_GID] = a->st_gid;
  x[TSN_SET_SIZE] = (double)a->st_size;
  x[TSN_SET_ATIME] = (double)a->st_atim.tv_sec, x[TSN_SET_ATIME_NSEC] = (double)a->st_atim.tv_nsec;
  x[TSN_SET_MTIME] = (double)a->st_mtim.tv_sec, x[TSN_SET_MTIME_NSEC] = (double)a->st_mtim.tv_nsec;
  x[TSN_SET_CTIME] = (double)a->st_ctim.tv_sec, x[TSN_SET_CTIME_NSEC] = (double)a->st_ctim.tv_nsec;
  num(&c, ino), num(&c, to_set), num(&c, fh_of(fi)), finish(&c, TSN_OP_SETATTR);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  BEGIN(0) num(&c, ino), finish(&c, TSN_OP_READLINK);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev) {
  BEGIN(0) num(&c, parent), str(&c, name), num(&c, mode), num(&c, (double)rdev);
  finish(&c, TSN_OP_MKNOD);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  BEGIN(0) num(&c, parent), str(&c, name), num(&c, mode), finish(&c, TSN_OP_MKDIR);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(0) num(&c, parent), str(&c, name), finish(&c, TSN_OP_UNLINK);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  BEGIN(0) num(&c, parent), str(&c, name), finish(&c, TSN_OP_RMDIR);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  BEGIN(0) str(&c, link), num(&c, parent), str(&c, name), finish(&c, TSN_OP_SYMLINK);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  BEGIN(0) num(&c, parent), str(&c, name), num(&c, newparent), str(&c, newname), num(&c, flags);
  finish(&c, TSN_OP_RENAME);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  BEGIN(0) num(&c, ino), num(&c, newparent), str(&c, newname), finish(&c, TSN_OP_LINK);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fi->flags), finish(&c, TSN_OP_OPEN);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  if (tsn_read_direct(fuse_req_userdata(req), req, ino, size, off)) return;
  BEGIN((uint32_t)size) num(&c, ino), num(&c, fh_of(fi)), num(&c, (double)off), num(&c, size);
  finish(&c, TSN_OP_READ);
}

// Data is copied into a Buffer: the receive buffer is reused as soon as this returns.
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), bytes(&c, buf, size), num(&c, (double)off);
  num(&c, fi->flags), finish(&c, TSN_OP_WRITE);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), finish(&c, TSN_OP_FLUSH);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), num(&c, fi->flags), finish(&c, TSN_OP_RELEASE);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), num(&c, datasync), finish(&c, TSN_OP_FSYNC);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fi->flags), finish(&c, TSN_OP_OPENDIR);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi, int plus) {
  BEGIN((uint32_t)size) num(&c, ino), num(&c, fh_of(fi)), num(&c, (double)off), num(&c, size);
  num(&c, plus), finish(&c, TSN_OP_READDIR);
}
static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  readdir_common(req, ino, size, off, fi, 0);
}
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi) {
  readdir_common(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), finish(&c, TSN_OP_RELEASEDIR);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), num(&c, datasync), finish(&c, TSN_OP_FSYNCDIR);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  BEGIN(0) num(&c, ino), finish(&c, TSN_OP_STATFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags) {
  BEGIN(0) num(&c, ino), str(&c, name), bytes(&c, value, size), num(&c, flags);
  finish(&c, TSN_OP_SETXATTR);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  BEGIN((uint32_t)size) num(&c, ino), str(&c, name), num(&c, size), finish(&c, TSN_OP_GETXATTR);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  BEGIN((uint32_t)size) num(&c, ino), num(&c, size), finish(&c, TSN_OP_LISTXATTR);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  BEGIN(0) num(&c, ino), str(&c, name), finish(&c, TSN_OP_REMOVEXATTR);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  BEGIN(0) num(&c, ino), num(&c, mask), finish(&c, TSN_OP_ACCESS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  BEGIN(0) num(&c, parent), str(&c, name), num(&c, mode), num(&c, fi->flags);
  finish(&c, TSN_OP_CREATE);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi) {
  BEGIN(0) num(&c, ino), num(&c, fh_of(fi)), num(&c, mode), num(&c, (double)off);
  num(&c, (double)len), finish(&c, TSN_OP_FALLOCATE);
}

// Negotiation. libfuse has already put its defaults in conn->want; we adjust them to what the
// measurements favour (see native-bindings/README.md) and what the session was configured with.
static void op_init(void *userdata, struct fuse_conn_info *conn) {
  tsn_session *s = userdata;
  unsigned want = conn->want;
  want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_SPLICE_READ |
            FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_HANDLE_KILLPRIV |
            FUSE_CAP_AUTO_INVAL_DATA);
  if (s->cfg.auto_inval) want |= FUSE_CAP_AUTO_INVAL_DATA;
  if (s->cfg.readdirplus >= 1) want |= FUSE_CAP_READDIRPLUS;
  if (s->cfg.readdirplus == 2) want |= FUSE_CAP_READDIRPLUS_AUTO;
  want |= FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS;
  conn->want = want & conn->capable;
  if (s->cfg.max_readahead > 0 && s->cfg.max_readahead < conn->max_readahead) {
    conn->max_readahead = s->cfg.max_readahead;
  }
  if (s->cfg.max_background > 0) {
    conn->max_background = s->cfg.max_background;
    conn->congestion_threshold = s->cfg.max_background * 3 / 4;
  }
  conn->time_gran = 1;
  double *ci = s->conn_info;
  ci[0] = conn->max_read, ci[1] = conn->max_write, ci[2] = conn->max_readahead;
  ci[3] = conn->capable, ci[4] = conn->want, ci[5] = conn->max_background;
  ci[6] = conn->time_gran, ci[7] = conn->proto_minor;
  napi_handle_scope scope;
  if (s->handlers[TSN_OP_INIT] && napi_open_handle_scope(s->te->env, &scope) == napi_ok) {
    invoke(s, s->te->env, TSN_OP_INIT, 0, NULL);
    napi_close_handle_scope(s->te->env, scope);
  }
}

void tsn_fill_ops(tsn_session *s, struct fuse_lowlevel_ops *o) {
  memset(o, 0, sizeof *o);
  o->init = op_init;
#define SET(op, field, fn) \
  if (s->handlers[op]) o->field = fn;
  SET(TSN_OP_LOOKUP, lookup, op_lookup)
  SET(TSN_OP_FORGET, forget, op_forget)
  SET(TSN_OP_FORGET, forget_multi, op_forget_multi)
  SET(TSN_OP_GETATTR, getattr, op_getattr)
  SET(TSN_OP_SETATTR, setattr, op_setattr)
  SET(TSN_OP_READLINK, readlink, op_readlink)
  SET(TSN_OP_MKNOD, mknod, op_mknod)
  SET(TSN_OP_MKDIR, mkdir, op_mkdir)
  SET(TSN_OP_UNLINK, unlink, op_unlink)
  SET(TSN_OP_RMDIR, rmdir, op_rmdir)
  SET(TSN_OP_SYMLINK, symlink, op_symlink)
  SET(TSN_OP_RENAME, rename, op_rename)
  SET(TSN_OP_LINK, link, op_link)
  SET(TSN_OP_OPEN, open, op_open)
  SET(TSN_OP_READ, read, op_read)
  SET(TSN_OP_WRITE, write, op_write)
  SET(TSN_OP_FLUSH, flush, op_flush)
  SET(TSN_OP_RELEASE, release, op_release)
  SET(TSN_OP_FSYNC, fsync, op_fsync)
  SET(TSN_OP_OPENDIR, opendir, op_opendir)
  SET(TSN_OP_READDIR, readdir, op_readdir)
  SET(TSN_OP_READDIR, readdirplus, op_readdirplus)
  SET(TSN_OP_RELEASEDIR, releasedir, op_releasedir)
  SET(TSN_OP_FSYNCDIR, fsyncdir, op_fsyncdir)
  SET(TSN_OP_STATFS, statfs, op_statfs)
  SET(TSN_OP_SETXATTR, setxattr, op_setxattr)
  SET(TSN_OP_GETXATTR, getxattr, op_getxattr)
  SET(TSN_OP_LISTXATTR, listxattr, op_listxattr)
  SET(TSN_OP_REMOVEXATTR, removexattr, op_removexattr)
  SET(TSN_OP_ACCESS, access, op_access)
  SET(TSN_OP_CREATE, create, op_create)
  SET(TSN_OP_FALLOCATE, fallocate, op_fallocate)
#undef SET
}
