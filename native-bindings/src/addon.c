// Module entry of tarstack_native.node: per-environment state (request table, shared scratch
// array, the receive buffer all its sessions share), the exported functions, and teardown that
// ends every session if the environment goes away while mounted (no JS is called then).
#include "tsn.h"

#include <stdlib.h>

static _Atomic int live_envs; // environments (main thread, workers) with the addon loaded

static void env_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  tsn_env *te = data;
  while (te->sessions) tsn_session_end(te->sessions, 0);
  tsn_mailbox_close(te);
  tsn_reqs_free(te);
  free(te->recv.mem);
  tsn_huge_unmap(te->fastbuf, te->fastbuf_cap);
  free(te);
  if (--live_envs == 0) { // the last user: let idle pool threads go (never waits for a running job)
    tsn_pool_quiesce(&tsn_read_pool);
    tsn_pool_quiesce(&tsn_note_pool);
  }
}

static int export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) != napi_ok) return -1;
  return napi_set_named_property(env, exports, name, fn) == napi_ok ? 0 : -1;
}

// One object of name -> number pairs, e.g. { ATTR_INO: 0, ... }.
static napi_value number_table(napi_env env, const char *const *names, const double *values,
                               size_t n) {
  napi_value obj, v;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (napi_create_double(env, values[i], &v) != napi_ok ||
        napi_set_named_property(env, obj, names[i], v) != napi_ok) {
      return NULL;
    }
  }
  return obj;
}

// layout: { slots, openFlags, setattrBits }, the lists of tsn.h, for lowlevel.ts to check its own
// copy against before it uses the scratch array.
static int export_layout(napi_env env, napi_value exports) {
#define NAME(name, value) #name,
#define VALUE(name, value) (double)(value),
  static const char *const slot_names[] = { TSN_SLOTS(NAME) };
  static const double slot_values[] = { TSN_SLOTS(VALUE) };
  static const char *const open_names[] = { TSN_OPEN_FLAGS(NAME) };
  static const double open_values[] = { TSN_OPEN_FLAGS(VALUE) };
  static const char *const setattr_names[] = { TSN_SETATTR_BITS(NAME) };
  static const double setattr_values[] = { TSN_SETATTR_BITS(VALUE) };
#undef NAME
#undef VALUE
#define TABLE(n, v) number_table(env, n, v, sizeof v / sizeof v[0])
  napi_value layout, slots = TABLE(slot_names, slot_values), open = TABLE(open_names, open_values),
                     setattr = TABLE(setattr_names, setattr_values);
#undef TABLE
  return slots && open && setattr && napi_create_object(env, &layout) == napi_ok &&
                 napi_set_named_property(env, layout, "slots", slots) == napi_ok &&
                 napi_set_named_property(env, layout, "openFlags", open) == napi_ok &&
                 napi_set_named_property(env, layout, "setattrBits", setattr) == napi_ok &&
                 napi_set_named_property(env, exports, "layout", layout) == napi_ok
             ? 0
             : -1;
}

static napi_value init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
    { "mount", tsn_js_mount },
    { "unmount", tsn_js_unmount },
    { "sessionInfo", tsn_js_session_info },
    { "backingOpen", tsn_js_backing_open },
    { "backingClose", tsn_js_backing_close },
    { "poolStats", tsn_js_pool_stats },
    { "replyErr", tsn_js_reply_err },
    { "replyNone", tsn_js_reply_none },
    { "replyEntry", tsn_js_reply_entry },
    { "replyCreate", tsn_js_reply_create },
    { "replyAttr", tsn_js_reply_attr },
    { "replyReadlink", tsn_js_reply_readlink },
    { "replyOpen", tsn_js_reply_open },
    { "replyWrite", tsn_js_reply_write },
    { "replyBuf", tsn_js_reply_buf },
    { "replyStatfs", tsn_js_reply_statfs },
    { "replyXattrSize", tsn_js_reply_xattr_size },
    { "replyXattr", tsn_js_reply_xattr },
    { "replyRanges", tsn_js_reply_ranges },
    { "readDirect", tsn_js_read_direct }, { "readStreamed", tsn_js_read_streamed },
    { "dirAdd", tsn_js_dir_add },
    { "dirAddPlus", tsn_js_dir_add_plus },
    { "replyDir", tsn_js_reply_dir },
    { "notifyInvalInode", tsn_js_notify_inval_inode },
    { "notifyInvalEntry", tsn_js_notify_inval_entry },
    { "notifyDelete", tsn_js_notify_delete },
  };
  tsn_env *te = calloc(1, sizeof *te);
  if (te == NULL) return NULL;
  te->env = env;
  te->free_head = TSN_NO_SLOT;
  if (napi_set_instance_data(env, te, env_finalize, NULL) != napi_ok) {
    free(te);
    return NULL;
  }
  live_envs++;
  napi_value ab, scratch;
  void *mem = NULL;
  if (napi_create_arraybuffer(env, TSN_SCRATCH_LEN * sizeof(double), &mem, &ab) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, TSN_SCRATCH_LEN, ab, 0, &scratch) !=
          napi_ok ||
      napi_create_reference(env, ab, 1, &te->scratch_ref) != napi_ok ||
      napi_set_named_property(env, exports, "scratch", scratch) != napi_ok) {
    return NULL;
  }
  te->scratch = mem; // V8 never moves an ArrayBuffer's backing store, and the ref pins it
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    if (export_fn(env, exports, fns[i].name, fns[i].cb) != 0) return NULL;
  }
  if (export_layout(env, exports) != 0) return NULL;
  if (tsn_sys_init(env, exports) != 0) return NULL;
  if (tsn_codec_init(env, exports) != 0) return NULL;
  if (tsn_fetch_init(env, exports) != 0) return NULL;
  napi_value v;
  if (napi_create_uint32(env, FUSE_VERSION, &v) != napi_ok ||
      napi_set_named_property(env, exports, "fuseVersion", v) != napi_ok) {
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
