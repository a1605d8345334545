// Kernel cache invalidation from JS. A notify write can block in the kernel until a related
// request is answered (inval_entry takes the parent's lock; inval_inode waits for locked pages),
// so it runs in the note pool (pool.c) and JS gets a Promise: Node's thread never blocks, and
// requests keep being answered meanwhile. Each session's notes run one at a time, in order, in its
// own lane, so one mount's blocked notification never holds up another's. The rule left for JS:
// never wait for the promise before answering a request on the same inode or parent (see
// native-bindings/README.md).
#include "tsn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum kind { INVAL_INODE, INVAL_ENTRY, DELETE };

typedef struct tsn_mailbox tsn_mailbox;

typedef struct note {
  tsn_job job;
  struct note *next_done;
  tsn_session *s; // alive while the note runs: its lane holds the session
  tsn_mailbox *mb;
  enum kind kind;
  fuse_ino_t ino, child;
  off_t off, len;
  char *name;
  size_t namelen;
  napi_deferred deferred;
  int result;
} note;

// Where workers leave finished notes for Node's thread: one per env, made on its first note. It
// outlives the env while notes it handed out still run (refs), and then drops what they bring.
struct tsn_mailbox {
  pthread_mutex_t mu;
  note *done;
  int refs; // the env's, and one per note not yet freed
  int gone; // the env was torn down
  unsigned pending; // notes whose promise is unsettled (Node's thread only): keep the loop alive
  uv_async_t *async;
  napi_ref resource;
  napi_async_context actx;
};

static void free_note(note *x) {
  free(x->name);
  free(x);
}

static void mailbox_unref(tsn_mailbox *mb) {
  pthread_mutex_lock(&mb->mu);
  int last = --mb->refs == 0;
  pthread_mutex_unlock(&mb->mu);
  if (!last) return;
  pthread_mutex_destroy(&mb->mu);
  free(mb);
}

static int run(struct fuse_session *se, note *x) {
  switch (x->kind) {
  case INVAL_INODE: return fuse_lowlevel_notify_inval_inode(se, x->ino, x->off, x->len);
  case INVAL_ENTRY: return fuse_lowlevel_notify_inval_entry(se, x->ino, x->name, x->namelen);
  case DELETE:
    return fuse_lowlevel_notify_delete(se, x->ino, x->child, x->name, x->namelen);
  }
  return -EINVAL;
}

// On a worker: notify, then post the note to Node's thread (or drop it if the env is gone).
static void run_note(tsn_job *job, tsn_worker *w) {
  (void)w;
  note *x = (note *)job;
  tsn_mailbox *mb = x->mb;
  x->result = run(x->s->se, x);
  pthread_mutex_lock(&mb->mu);
  if (!mb->gone) {
    x->next_done = mb->done;
    mb->done = x;
    uv_async_send(mb->async);
    x = NULL;
  }
  pthread_mutex_unlock(&mb->mu);
  if (x) {
    free_note(x);
    mailbox_unref(mb);
  }
}

// Resolves the promises of finished notes (with 0 or -errno) on Node's thread.
static void settle(napi_env env, tsn_mailbox *mb, note *list, int call_js) {
  napi_handle_scope hs = NULL;
  napi_callback_scope cs = NULL;
  napi_value resource = NULL;
  if (call_js && napi_open_handle_scope(env, &hs) == napi_ok &&
      napi_get_reference_value(env, mb->resource, &resource) == napi_ok) {
    napi_open_callback_scope(env, resource, mb->actx, &cs); // runs microtasks when closed
  }
  while (list) {
    note *x = list;
    list = x->next_done;
    napi_value v;
    if (call_js && napi_create_int32(env, x->result, &v) == napi_ok) {
      napi_resolve_deferred(env, x->deferred, v);
    }
    free_note(x);
    if (call_js && --mb->pending == 0) uv_unref((uv_handle_t *)mb->async);
    mailbox_unref(mb);
  }
  if (cs) napi_close_callback_scope(env, cs);
  if (hs) napi_close_handle_scope(env, hs);
}

static void on_async(uv_async_t *a) {
  tsn_env *te = a->data;
  tsn_mailbox *mb = te->mailbox;
  pthread_mutex_lock(&mb->mu);
  note *list = mb->done;
  mb->done = NULL;
  pthread_mutex_unlock(&mb->mu);
  settle(te->env, mb, list, 1);
}

static tsn_mailbox *mailbox_of(tsn_env *te) {
  if (te->mailbox) return te->mailbox;
  uv_loop_t *loop = NULL;
  napi_value resource, name;
  tsn_mailbox *mb = calloc(1, sizeof *mb);
  if (mb == NULL) return NULL;
  mb->async = calloc(1, sizeof *mb->async);
  if (mb->async == NULL || pthread_mutex_init(&mb->mu, NULL) != 0) goto fail;
  if (napi_get_uv_event_loop(te->env, &loop) != napi_ok ||
      napi_create_object(te->env, &resource) != napi_ok ||
      napi_create_string_utf8(te->env, "tarstack:notify", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(te->env, resource, name, &mb->actx) != napi_ok) {
    goto fail_mu;
  }
  if (napi_create_reference(te->env, resource, 1, &mb->resource) != napi_ok) goto fail_actx;
  mb->async->data = te;
  if (uv_async_init(loop, mb->async, on_async) != 0) goto fail_ref;
  uv_unref((uv_handle_t *)mb->async); // only notes in flight keep the loop alive
  mb->refs = 1;
  return te->mailbox = mb;
fail_ref:
  napi_delete_reference(te->env, mb->resource);
fail_actx:
  napi_async_destroy(te->env, mb->actx);
fail_mu:
  pthread_mutex_destroy(&mb->mu);
fail:
  free(mb->async);
  free(mb);
  return NULL;
}

static void free_async(uv_handle_t *h) {
  free(h);
}

void tsn_mailbox_close(tsn_env *te) {
  tsn_mailbox *mb = te->mailbox;
  if (mb == NULL) return;
  te->mailbox = NULL;
  pthread_mutex_lock(&mb->mu);
  mb->gone = 1;
  note *list = mb->done;
  mb->done = NULL;
  pthread_mutex_unlock(&mb->mu);
  settle(te->env, mb, list, 0);
  uv_close((uv_handle_t *)mb->async, free_async);
  mailbox_unref(mb); // the env's; notes still running hold theirs
}

void tsn_notes_cancel(tsn_env *te, tsn_job *unrun, int call_js) {
  note *list = NULL;
  while (unrun) {
    note *x = (note *)unrun;
    unrun = unrun->next;
    x->result = -ENOTCONN;
    x->next_done = list;
    list = x;
  }
  if (list) settle(te->env, list->mb, list, call_js);
}

// Common front of the three notify functions: the session, the mailbox, a promise, the lane.
static napi_value submit(napi_env env, napi_value handle, note *x) {
  tsn_session *s = tsn_handle_session(env, handle);
  napi_value promise = NULL;
  if (s == NULL || s->state != TSN_LIVE) {
    free_note(x);
    bool pending = false;
    napi_is_exception_pending(env, &pending); // a bad handle has thrown already
    return pending ? NULL : tsn_throw(env, "tarstack_native: session has ended");
  }
  tsn_mailbox *mb = mailbox_of(s->te);
  if (mb == NULL) {
    free_note(x);
    napi_throw_error(env, "ENOMEM", "tarstack_native: cannot set up notifications");
    return NULL;
  }
  if (napi_create_promise(env, &x->deferred, &promise) != napi_ok) {
    free_note(x);
    return NULL;
  }
  x->s = s;
  x->mb = mb;
  x->job.run = run_note;
  pthread_mutex_lock(&mb->mu);
  mb->refs++;
  pthread_mutex_unlock(&mb->mu);
  if (mb->pending++ == 0) uv_ref((uv_handle_t *)mb->async);
  tsn_pool_submit(&tsn_note_pool, &s->notes, &x->job); // the lane is open: the session is live
  return promise;
}

static note *new_note(enum kind kind) {
  note *x = calloc(1, sizeof *x);
  if (x) x->kind = kind;
  return x;
}

// notifyInvalInode(session, ino, off, len) -> Promise<0 | -errno>; off < 0: attributes only.
napi_value tsn_js_notify_inval_inode(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double ino, off, len;
  if (tsn_get_args(env, info, 4, argv) != 0 || tsn_num(env, argv[1], &ino) != 0 ||
      tsn_num(env, argv[2], &off) != 0 || tsn_num(env, argv[3], &len) != 0) {
    return NULL;
  }
  note *x = new_note(INVAL_INODE);
  if (x == NULL) return tsn_throw(env, "tarstack_native: out of memory");
  x->ino = (fuse_ino_t)ino, x->off = (off_t)off, x->len = (off_t)len;
  return submit(env, argv[0], x);
}

static napi_value entry_note(napi_env env, napi_callback_info info, enum kind kind) {
  napi_value argv[4];
  double parent, child = 0;
  size_t want = kind == DELETE ? 4 : 3;
  if (tsn_get_args(env, info, want, argv) != 0 || tsn_num(env, argv[1], &parent) != 0 ||
      (kind == DELETE && tsn_num(env, argv[3], &child) != 0)) {
    return NULL;
  }
  note *x = new_note(kind);
  if (x == NULL) return tsn_throw(env, "tarstack_native: out of memory");
  x->name = tsn_latin1(env, argv[2], &x->namelen);
  if (x->name == NULL) {
    free(x);
    return NULL;
  }
  x->ino = (fuse_ino_t)parent, x->child = (fuse_ino_t)child;
  return submit(env, argv[0], x);
}

// notifyInvalEntry(session, parent, name) -> Promise<0 | -errno>
napi_value tsn_js_notify_inval_entry(napi_env env, napi_callback_info info) {
  return entry_note(env, info, INVAL_ENTRY);
}

// notifyDelete(session, parent, name, child) -> Promise<0 | -errno>; also tells inotify watchers.
napi_value tsn_js_notify_delete(napi_env env, napi_callback_info info) {
  return entry_note(env, info, DELETE);
}
