// Directory listing: JS offers entries one at a time and C packs them into the buffer the kernel
// asked for, answering false once one does not fit. JS then knows exactly which readdirplus
// entries the kernel will count as lookups: the packed ones, except `.` and `..`.
#include "tsn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

// The readdir slot `idv` names, with its buffer allocated; NULL for a stale id or no memory.
static tsn_slot *dir_slot(napi_env env, napi_value idv, tsn_env **te_out) {
  double id;
  tsn_env *te = tsn_env_of(env);
  if (te == NULL || tsn_num(env, idv, &id) != 0) return NULL;
  tsn_slot *slot = tsn_req_find(te, id);
  if (slot == NULL) {
    *te_out = te; // a stale id, not an error
    return NULL;
  }
  if (slot->dirbuf == NULL) {
    slot->dirbuf = malloc(slot->size > 0 ? slot->size : 1);
    if (slot->dirbuf == NULL) {
      napi_throw_error(env, "ENOMEM", "tarstack_native: out of memory");
      return NULL;
    }
  }
  *te_out = te;
  return slot;
}

// dirAdd(id, name, ino, mode, next) -> packed?
napi_value tsn_js_dir_add(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  double ino, mode, next;
  if (tsn_get_args(env, info, 5, argv) != 0 || tsn_num(env, argv[2], &ino) != 0 ||
      tsn_num(env, argv[3], &mode) != 0 || tsn_num(env, argv[4], &next) != 0) {
    return NULL;
  }
  tsn_env *te = NULL;
  tsn_slot *slot = dir_slot(env, argv[0], &te);
  if (slot == NULL) return te ? tsn_bool(env, 0) : NULL;
  char name[1024]; // NAME_MAX is 255; longer names cannot be listed by the kernel anyway
  size_t len = 0;
  if (napi_get_value_string_latin1(env, argv[1], name, sizeof name, &len) != napi_ok) {
    return tsn_throw(env, "tarstack_native: dirAdd expects a name");
  }
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_ino = (ino_t)ino;
  st.st_mode = (mode_t)mode;
  size_t room = slot->size - slot->dirlen;
  size_t need = fuse_add_direntry(slot->req, slot->dirbuf + slot->dirlen, room, name, &st,
                                  (off_t)next);
  if (need > room) return tsn_bool(env, 0);
  slot->dirlen += (uint32_t)need;
  return tsn_bool(env, 1);
}

// dirAddPlus(id, name, next, nodeid) -> packed?  Attributes and timeouts are in scratch
// (ATTR_*, GENERATION, ATTR_TIMEOUT, ENTRY_TIMEOUT).
// nodeid 0 (what `.` and `..` get) lists the entry without giving the kernel a reference.
napi_value tsn_js_dir_add_plus(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double next, nodeid;
  if (tsn_get_args(env, info, 4, argv) != 0 || tsn_num(env, argv[2], &next) != 0 ||
      tsn_num(env, argv[3], &nodeid) != 0) {
    return NULL;
  }
  tsn_env *te = NULL;
  tsn_slot *slot = dir_slot(env, argv[0], &te);
  if (slot == NULL) return te ? tsn_bool(env, 0) : NULL;
  char name[1024];
  size_t len = 0;
  if (napi_get_value_string_latin1(env, argv[1], name, sizeof name, &len) != napi_ok) {
    return tsn_throw(env, "tarstack_native: dirAddPlus expects a name");
  }
  const double *a = te->scratch;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = (fuse_ino_t)nodeid;
  e.generation = (uint64_t)a[TSN_GENERATION];
  e.attr_timeout = a[TSN_ATTR_TIMEOUT];
  e.entry_timeout = a[TSN_ENTRY_TIMEOUT];
  tsn_fill_stat(a, &e.attr);
  size_t room = slot->size - slot->dirlen;
  size_t need = fuse_add_direntry_plus(slot->req, slot->dirbuf + slot->dirlen, room, name, &e,
                                       (off_t)next);
  if (need > room) return tsn_bool(env, 0);
  slot->dirlen += (uint32_t)need;
  return tsn_bool(env, 1);
}

// replyDir(id): sends what was packed; an empty reply tells the kernel the listing ended.
napi_value tsn_js_reply_dir(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  double id;
  tsn_env *te = tsn_env_of(env);
  if (te == NULL || tsn_get_args(env, info, 1, argv) != 0 || tsn_num(env, argv[0], &id) != 0) {
    return NULL;
  }
  tsn_slot *slot = tsn_req_find(te, id);
  if (slot == NULL) return tsn_bool(env, 0);
  char *buf = slot->dirbuf;
  size_t len = slot->dirlen;
  slot->dirbuf = NULL; // keep it from being freed with the slot until it is sent
  fuse_req_t req = tsn_req_take(te, id);
  fuse_reply_buf(req, buf, len);
  free(buf);
  return tsn_bool(env, 1);
}
