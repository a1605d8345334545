// System calls Node's fs lacks, which writable instances need: extended attributes, mknod (the
// kernel's whiteout is a 0/0 character device), utimensat with nanoseconds and UTIME_OMIT (one time
// alone), renameat2 flags, fallocate, flock and dup2 (and posix_fadvise, for indexing); and making new objects with another owner
// (setfsuid, setfsgid: each new object is born with its maker's owner, as kernel overlayfs makes it,
// instead of being chowned after, which moves its ctime). Paths are latin1 byte strings, so any name byte but
// NUL passes; failures throw an Error carrying Node's `code`/`errno`/`syscall`, as fs does.
#include "tsn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <linux/securebits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

napi_value tsn_throw_errno(napi_env env, int err, const char *syscall) {
  const char *code = strerrorname_np(err);
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value e, c, n, s, m;
  if (napi_create_string_utf8(env, code ? code : "EIO", NAPI_AUTO_LENGTH, &c) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok ||
      napi_create_error(env, c, m, &e) != napi_ok || napi_create_int32(env, -err, &n) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s) != napi_ok) {
    return NULL;
  }
  napi_set_named_property(env, e, "errno", n);
  napi_set_named_property(env, e, "syscall", s);
  napi_throw(env, e);
  return NULL;
}

static int get_int(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (tsn_num(env, v, &d) != 0) return -1;
  *out = (int64_t)d;
  return 0;
}

static int get_buf(napi_env env, napi_value v, void **data, size_t *len) {
  if (napi_get_buffer_info(env, v, data, len) != napi_ok) {
    tsn_throw(env, "tarstack_native: expected a Buffer");
    return -1;
  }
  return 0;
}

// Either a path (string) or a file descriptor (number) as the first argument.
typedef struct {
  char *path;
  int fd;
} target;

static int get_target(napi_env env, napi_value v, target *t) {
  napi_valuetype type;
  t->path = NULL;
  t->fd = -1;
  if (napi_typeof(env, v, &type) != napi_ok) return -1;
  if (type == napi_number) {
    int64_t fd;
    if (get_int(env, v, &fd) != 0) return -1;
    t->fd = (int)fd;
    return 0;
  }
  size_t n;
  t->path = tsn_latin1(env, v, &n);
  return t->path ? 0 : -1;
}

// getxattr(pathOrFd, name) -> Buffer, or null when unset (ENODATA). Symlinks are not followed.
static napi_value js_getxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2], out = NULL;
  target t;
  if (tsn_get_args(env, info, 2, argv) != 0 || get_target(env, argv[0], &t) != 0) return NULL;
  size_t nl;
  char *name = tsn_latin1(env, argv[1], &nl);
  if (name == NULL) goto done;
  for (;;) {
    ssize_t n = t.path ? lgetxattr(t.path, name, NULL, 0) : fgetxattr(t.fd, name, NULL, 0);
    if (n < 0) {
      if (errno == ENODATA) napi_get_null(env, &out);
      else tsn_throw_errno(env, errno, "getxattr");
      break;
    }
    void *data;
    napi_value buf;
    if (napi_create_buffer(env, (size_t)n, &data, &buf) != napi_ok) break;
    ssize_t m = t.path ? lgetxattr(t.path, name, data, (size_t)n) : fgetxattr(t.fd, name, data, (size_t)n);
    if (m < 0 && errno == ERANGE) continue; // it grew meanwhile
    if (m < 0) {
      tsn_throw_errno(env, errno, "getxattr");
      break;
    }
    if (m == n) {
      out = buf;
    } else if (napi_create_buffer_copy(env, (size_t)m, data, NULL, &out) != napi_ok) {
      out = NULL;
    }
    break;
  }
done:
  free(t.path);
  free(name);
  return out;
}

// setxattr(pathOrFd, name, value, flags): flags are XATTR_CREATE (1) / XATTR_REPLACE (2).
static napi_value js_setxattr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  target t;
  if (tsn_get_args(env, info, 4, argv) != 0 || get_target(env, argv[0], &t) != 0) return NULL;
  size_t nl, len;
  void *data;
  int64_t flags;
  char *name = tsn_latin1(env, argv[1], &nl);
  if (name != NULL && get_buf(env, argv[2], &data, &len) == 0 && get_int(env, argv[3], &flags) == 0) {
    int r = t.path ? lsetxattr(t.path, name, data, len, (int)flags) : fsetxattr(t.fd, name, data, len, (int)flags);
    if (r != 0) tsn_throw_errno(env, errno, "setxattr");
  }
  free(t.path);
  free(name);
  return tsn_undefined(env);
}

static napi_value js_removexattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  target t;
  if (tsn_get_args(env, info, 2, argv) != 0 || get_target(env, argv[0], &t) != 0) return NULL;
  size_t nl;
  char *name = tsn_latin1(env, argv[1], &nl);
  if (name != NULL) {
    int r = t.path ? lremovexattr(t.path, name) : fremovexattr(t.fd, name);
    if (r != 0) tsn_throw_errno(env, errno, "removexattr");
  }
  free(t.path);
  free(name);
  return tsn_undefined(env);
}

// listxattr(pathOrFd) -> array of names (latin1).
static napi_value js_listxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1], out = NULL;
  target t;
  if (tsn_get_args(env, info, 1, argv) != 0 || get_target(env, argv[0], &t) != 0) return NULL;
  char *list = NULL;
  for (;;) {
    ssize_t n = t.path ? llistxattr(t.path, NULL, 0) : flistxattr(t.fd, NULL, 0);
    if (n < 0) {
      tsn_throw_errno(env, errno, "listxattr");
      break;
    }
    free(list);
    list = malloc((size_t)n + 1);
    if (list == NULL) {
      tsn_throw_errno(env, ENOMEM, "listxattr");
      break;
    }
    ssize_t m = n == 0 ? 0 : t.path ? llistxattr(t.path, list, (size_t)n) : flistxattr(t.fd, list, (size_t)n);
    if (m < 0 && errno == ERANGE) continue;
    if (m < 0) {
      tsn_throw_errno(env, errno, "listxattr");
      break;
    }
    if (napi_create_array(env, &out) != napi_ok) break;
    uint32_t i = 0;
    for (ssize_t p = 0; p < m;) {
      size_t len = strnlen(list + p, (size_t)(m - p));
      napi_value s;
      if (len > 0) {
        if (napi_create_string_latin1(env, list + p, len, &s) != napi_ok || napi_set_element(env, out, i++, s) != napi_ok) {
          out = NULL;
          break;
        }
      }
      p += (ssize_t)len + 1;
    }
    break;
  }
  free(list);
  free(t.path);
  return out;
}

// ---- making as another owner ----------------------------------------------------------------
// setfsuid and setfsgid change the calling thread's filesystem ids only (glibc does not pass them on
// to other threads, as it does setuid's): the ids are taken and given back around the one call that
// makes the object, on the thread that makes it. The thread keeps its capabilities meanwhile
// (SECBIT_NO_SETUID_FIXUP, per thread too, put back after): the object is made in a directory only
// the daemon may write (the work dir) and may be a device (CAP_MKNOD), as kernel overlayfs makes it
// with the mounter's capabilities and the caller's fsuid and fsgid.
typedef struct {
  int switched;
  int secbits;
  uid_t uid;
  gid_t gid;
} fs_ids;

static void give_back(fs_ids *s) {
  if (!s->switched) return;
  setfsuid(s->uid);
  setfsgid(s->gid);
  prctl(PR_SET_SECUREBITS, (unsigned long)s->secbits, 0, 0, 0);
  s->switched = 0;
}

// Takes fsuid `uid` and fsgid `gid` (both -1: stays as it is); 0, or the errno (EPERM when the ids
// would not take, or the thread may not keep its capabilities). Callers report it as setfsuid's, so
// it is never taken for the answer of the call that makes the object.
static int take_ids(fs_ids *s, int64_t uid, int64_t gid) {
  s->switched = 0;
  if (uid < 0 && gid < 0) return 0;
  if (uid < 0 || gid < 0) return EINVAL;
  s->secbits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
  if (s->secbits < 0) return errno;
  if (!(s->secbits & SECBIT_NO_SETUID_FIXUP) && prctl(PR_SET_SECUREBITS, (unsigned long)(s->secbits | SECBIT_NO_SETUID_FIXUP), 0, 0, 0) != 0) return errno;
  s->switched = 1;
  s->gid = (gid_t)setfsgid((gid_t)gid);
  s->uid = (uid_t)setfsuid((uid_t)uid);
  // both calls answer the previous id whatever happened; an invalid id (-1) asks for the current one
  if ((gid_t)setfsgid((gid_t)-1) != (gid_t)gid || (uid_t)setfsuid((uid_t)-1) != (uid_t)uid) {
    give_back(s);
    return EPERM;
  }
  return 0;
}

// Before a creating call made as uid/gid: 0, or -1 with the error thrown (the thread's ids unchanged).
static int begin_as(napi_env env, fs_ids *s, int64_t uid, int64_t gid) {
  int err = take_ids(s, uid, gid);
  if (err != 0) tsn_throw_errno(env, err, "setfsuid");
  return err != 0 ? -1 : 0;
}

// After it (r: the call's result, read before anything else can change errno): the thread's ids
// back; a negative r throws the call's errno as `what`'s. Returns r.
static int end_as(napi_env env, fs_ids *s, int r, const char *what) {
  int err = r < 0 ? errno : 0;
  give_back(s);
  if (err != 0) tsn_throw_errno(env, err, what);
  return r;
}

// The owner arguments at argv[i], argv[i + 1]: uid and gid, or -1 and -1.
static int get_ids(napi_env env, napi_value *argv, int64_t *uid, int64_t *gid) {
  return get_int(env, argv[0], uid) != 0 || get_int(env, argv[1], gid) != 0 ? -1 : 0;
}

// openAs(path, flags, mode, uid, gid) -> fd: open(2) (O_CREAT) as fsuid/fsgid uid, gid (-1, -1: as this thread is).
static napi_value js_open_as(napi_env env, napi_callback_info info) {
  napi_value argv[5], out = NULL;
  int64_t flags, mode, uid, gid;
  if (tsn_get_args(env, info, 5, argv) != 0 || get_int(env, argv[1], &flags) != 0 || get_int(env, argv[2], &mode) != 0 || get_ids(env, argv + 3, &uid, &gid) != 0) return NULL;
  size_t n;
  char *path = tsn_latin1(env, argv[0], &n);
  if (path == NULL) return NULL;
  fs_ids s;
  if (begin_as(env, &s, uid, gid) == 0) {
    int fd = end_as(env, &s, open(path, (int)flags | O_CLOEXEC, (mode_t)mode), "open");
    if (fd >= 0) napi_create_int32(env, fd, &out);
  }
  free(path);
  return out;
}

// mkdirAs(path, mode, uid, gid)
static napi_value js_mkdir_as(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t mode, uid, gid;
  if (tsn_get_args(env, info, 4, argv) != 0 || get_int(env, argv[1], &mode) != 0 || get_ids(env, argv + 2, &uid, &gid) != 0) return NULL;
  size_t n;
  char *path = tsn_latin1(env, argv[0], &n);
  if (path == NULL) return NULL;
  fs_ids s;
  if (begin_as(env, &s, uid, gid) == 0) end_as(env, &s, mkdir(path, (mode_t)mode), "mkdir");
  free(path);
  return tsn_undefined(env);
}

// symlinkAs(target, path, uid, gid)
static napi_value js_symlink_as(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t uid, gid;
  if (tsn_get_args(env, info, 4, argv) != 0 || get_ids(env, argv + 2, &uid, &gid) != 0) return NULL;
  size_t n;
  char *target = tsn_latin1(env, argv[0], &n);
  char *path = target ? tsn_latin1(env, argv[1], &n) : NULL;
  if (path != NULL) {
    fs_ids s;
    if (begin_as(env, &s, uid, gid) == 0) end_as(env, &s, symlink(target, path), "symlink");
  }
  free(target);
  free(path);
  return tsn_undefined(env);
}

// mknod(path, mode, major, minor[, uid, gid])
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int64_t mode, major, minor, uid = -1, gid = -1;
  size_t argc = 6;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 4) {
    tsn_throw(env, "tarstack_native: too few arguments");
    return NULL;
  }
  if (get_int(env, argv[1], &mode) != 0 || get_int(env, argv[2], &major) != 0 || get_int(env, argv[3], &minor) != 0) return NULL;
  if (argc >= 6 && get_ids(env, argv + 4, &uid, &gid) != 0) return NULL;
  size_t n;
  char *path = tsn_latin1(env, argv[0], &n);
  if (path == NULL) return NULL;
  fs_ids s;
  if (begin_as(env, &s, uid, gid) == 0) end_as(env, &s, mknod(path, (mode_t)mode, makedev((unsigned)major, (unsigned)minor)), "mknod");
  free(path);
  return tsn_undefined(env);
}

// A time from (sec, nsec), where nsec -1 leaves it alone (UTIME_OMIT) and -2 means now (UTIME_NOW).
static void to_timespec(int64_t sec, int64_t nsec, struct timespec *ts) {
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = nsec == -1 ? UTIME_OMIT : nsec == -2 ? UTIME_NOW : (long)nsec;
}

// utimens(pathOrFd, atimeSec, atimeNsec, mtimeSec, mtimeNsec); paths are not followed.
static napi_value js_utimens(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  target t;
  int64_t v[4];
  if (tsn_get_args(env, info, 5, argv) != 0 || get_target(env, argv[0], &t) != 0) return NULL;
  for (int i = 0; i < 4; i++) {
    if (get_int(env, argv[i + 1], &v[i]) != 0) {
      free(t.path);
      return NULL;
    }
  }
  struct timespec ts[2];
  to_timespec(v[0], v[1], &ts[0]);
  to_timespec(v[2], v[3], &ts[1]);
  int r = t.path ? utimensat(AT_FDCWD, t.path, ts, AT_SYMLINK_NOFOLLOW) : futimens(t.fd, ts);
  if (r != 0) tsn_throw_errno(env, errno, "utimensat");
  free(t.path);
  return tsn_undefined(env);
}

// rename2(from, to, flags): RENAME_NOREPLACE (1), RENAME_EXCHANGE (2), RENAME_WHITEOUT (4).
static napi_value js_rename2(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t flags;
  if (tsn_get_args(env, info, 3, argv) != 0 || get_int(env, argv[2], &flags) != 0) return NULL;
  size_t n;
  char *from = tsn_latin1(env, argv[0], &n);
  char *to = from ? tsn_latin1(env, argv[1], &n) : NULL;
  if (from && to && renameat2(AT_FDCWD, from, AT_FDCWD, to, (unsigned)flags) != 0) tsn_throw_errno(env, errno, "renameat2");
  free(from);
  free(to);
  return tsn_undefined(env);
}

// fallocate(fd, mode, offset, length)
static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t fd, mode, off, len;
  if (tsn_get_args(env, info, 4, argv) != 0 || get_int(env, argv[0], &fd) != 0 || get_int(env, argv[1], &mode) != 0 || get_int(env, argv[2], &off) != 0 || get_int(env, argv[3], &len) != 0) return NULL;
  if (fallocate((int)fd, (int)mode, (off_t)off, (off_t)len) != 0) tsn_throw_errno(env, errno, "fallocate");
  return tsn_undefined(env);
}

// fadvise(fd, offset, length, advice): posix_fadvise, which returns its error instead of setting
// errno. Indexing a tar asks POSIX_FADV_SEQUENTIAL (2), which doubles the kernel's readahead window
// for that open file: a cold scan of a tar of small files reads the whole tar, and read 2-3x faster so.
static napi_value js_fadvise(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t fd, off, len, advice;
  if (tsn_get_args(env, info, 4, argv) != 0 || get_int(env, argv[0], &fd) != 0 || get_int(env, argv[1], &off) != 0 || get_int(env, argv[2], &len) != 0 || get_int(env, argv[3], &advice) != 0) return NULL;
  int err = posix_fadvise((int)fd, (off_t)off, (off_t)len, (int)advice);
  if (err != 0) tsn_throw_errno(env, err, "posix_fadvise");
  return tsn_undefined(env);
}

// flock(fd, operation): LOCK_SH 1, LOCK_EX 2, LOCK_NB 4, LOCK_UN 8. Held until the fd closes,
// and released by the kernel even when the process is killed.
static napi_value js_flock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t fd, op;
  if (tsn_get_args(env, info, 2, argv) != 0 || get_int(env, argv[0], &fd) != 0 || get_int(env, argv[1], &op) != 0) return NULL;
  if (flock((int)fd, (int)op) != 0) tsn_throw_errno(env, errno, "flock");
  return tsn_undefined(env);
}

// dup2(oldfd, newfd): a server moving its standard output and error to a new log file.
static napi_value js_dup2(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t from, to;
  if (tsn_get_args(env, info, 2, argv) != 0 || get_int(env, argv[0], &from) != 0 || get_int(env, argv[1], &to) != 0) return NULL;
  int r;
  do r = dup2((int)from, (int)to);
  while (r < 0 && errno == EINTR);
  if (r < 0) tsn_throw_errno(env, errno, "dup2");
  return tsn_undefined(env);
}

int tsn_sys_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
    { "getxattr", js_getxattr }, { "setxattr", js_setxattr }, { "removexattr", js_removexattr },
    { "listxattr", js_listxattr }, { "mknod", js_mknod }, { "utimens", js_utimens },
    { "rename2", js_rename2 }, { "fallocate", js_fallocate }, { "fadvise", js_fadvise }, { "flock", js_flock },
    { "dup2", js_dup2 },
    { "openAs", js_open_as }, { "mkdirAs", js_mkdir_as }, { "symlinkAs", js_symlink_as },
  };
  napi_value sys;
  if (napi_create_object(env, &sys) != napi_ok) return -1;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, sys, fns[i].name, fn) != napi_ok) {
      return -1;
    }
  }
  if (tsn_tree_init(env, sys) != 0) return -1;
  return napi_set_named_property(env, exports, "sys", sys) == napi_ok ? 0 : -1;
}
