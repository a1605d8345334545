// Directory trees in a few system calls, relative to directory descriptors: what removing a
// directory on an instance costs is mostly these calls (kernel overlayfs makes them in the kernel).
// - removeTree(path): rm -rf. Each entry is unlinked first and opened as a directory only when that
//   says EISDIR, so nothing is stat'ed; no path grows past one name, so depth is no limit but the
//   bound below. It never crosses into another filesystem (a mount below): it stops with EXDEV.
// - entryKinds(path): a directory's names with their kinds (d_type), where a character device is
//   looked at (fstatat) to tell a whiteout (0/0) from a device: rmdir's emptiness test.
// Paths are Buffers (the bytes as they are); names come back as latin1 byte strings.
#include "tsn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

// Deeper than this, removeTree gives up (ELOOP) and its caller's general path takes over.
#define MAX_DEPTH 128

// The kind entryKinds reports for a whiteout (d_type values are 0..14).
#define KIND_WHITEOUT 255

// A path argument: the Buffer's bytes, NUL-terminated (malloc'ed), or NULL with a JS error thrown.
static char *path_arg(napi_env env, napi_value v) {
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) {
    tsn_throw(env, "tarstack_native: expected a Buffer path");
    return NULL;
  }
  char *p = malloc(len + 1);
  if (p == NULL) {
    tsn_throw(env, "tarstack_native: out of memory");
    return NULL;
  }
  memcpy(p, data, len);
  p[len] = '\0';
  return p;
}

static int is_dot(const char *n) {
  return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

// Remove `name` in directory `dfd` and all below it; 0 or -errno.
static int remove_at(int dfd, const char *name, dev_t dev, int depth) {
  if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR) return -errno;
  if (depth >= MAX_DEPTH) return -ELOOP;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != dev) {
    int err = st.st_dev != dev ? EXDEV : errno;
    close(fd);
    return -err;
  }
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int err = errno;
    close(fd);
    return -err;
  }
  int res = 0;
  for (struct dirent *e; res == 0 && (errno = 0, e = readdir(d)) != NULL;) {
    if (!is_dot(e->d_name)) res = remove_at(fd, e->d_name, dev, depth + 1);
  }
  if (res == 0 && errno != 0) res = -errno;
  closedir(d);
  if (res != 0) return res;
  return unlinkat(dfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -errno;
}

static napi_value js_remove_tree(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  char *path = path_arg(env, argv[0]);
  if (path == NULL) return NULL;
  struct stat st;
  int res = lstat(path, &st) != 0 ? (errno == ENOENT ? 0 : -errno) : remove_at(AT_FDCWD, path, st.st_dev, 0);
  free(path);
  if (res != 0) tsn_throw_errno(env, -res, "removeTree");
  return tsn_undefined(env);
}

static int entry_kind(int fd, const struct dirent *e) {
  if (e->d_type != DT_CHR && e->d_type != DT_UNKNOWN) return e->d_type;
  struct stat st;
  if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) return KIND_WHITEOUT;
  return (int)((st.st_mode & S_IFMT) >> 12); // the d_type of that mode
}

// entryKinds(path): [name, kind, name, kind, ...]; an entry gone meanwhile is left out.
static napi_value js_entry_kinds(napi_env env, napi_value *argv) {
  char *path = path_arg(env, argv[0]);
  if (path == NULL) return NULL;
  DIR *d = opendir(path);
  free(path);
  if (d == NULL) {
    tsn_throw_errno(env, errno, "opendir");
    return NULL;
  }
  napi_value out;
  int err = napi_create_array(env, &out) != napi_ok ? EIO : 0;
  uint32_t i = 0;
  for (struct dirent *e; err == 0 && (errno = 0, e = readdir(d)) != NULL;) {
    if (is_dot(e->d_name)) continue;
    int kind = entry_kind(dirfd(d), e);
    if (kind == -ENOENT) continue;
    if (kind < 0) {
      err = -kind;
      break;
    }
    napi_value n, k;
    if (napi_create_string_latin1(env, e->d_name, NAPI_AUTO_LENGTH, &n) != napi_ok || napi_create_uint32(env, (uint32_t)kind, &k) != napi_ok ||
        napi_set_element(env, out, i++, n) != napi_ok || napi_set_element(env, out, i++, k) != napi_ok) {
      err = EIO;
    }
  }
  if (err == 0 && errno != 0) err = errno;
  closedir(d);
  if (err != 0) {
    tsn_throw_errno(env, err, "readdir");
    return NULL;
  }
  return out;
}

static napi_value js_entry_kinds_cb(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  return tsn_get_args(env, info, 1, argv) != 0 ? NULL : js_entry_kinds(env, argv);
}

int tsn_tree_init(napi_env env, napi_value sys) {
  napi_value fn;
  if (napi_create_function(env, "removeTree", NAPI_AUTO_LENGTH, js_remove_tree, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, sys, "removeTree", fn) != napi_ok ||
      napi_create_function(env, "entryKinds", NAPI_AUTO_LENGTH, js_entry_kinds_cb, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, sys, "entryKinds", fn) != napi_ok) {
    return -1;
  }
  return 0;
}
