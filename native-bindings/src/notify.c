// Kernel cache invalidation from JS. A notify write can block in the kernel until a related
// request is answered (inval_entry takes the parent's lock; inval_inode waits for locked pages),
// so it runs on a notifier thread and JS gets a Promise: Node's thread never blocks, and requests
// keep being answered meanwhile. The rule left for JS: never wait for the promise before
// answering a request on the same inode or parent (see native-bindings/README.md).
#include "tsn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum kind { INVAL_INODE, INVAL_ENTRY, DELETE };

typedef struct note {
  struct note *next;
  enum kind kind;
  fuse_ino_t ino, child;
  off_t off, len;
  char *name;
  size_t namelen;
  napi_deferred deferred;
  int result;
} note;

struct tsn_notifier {
  tsn_session *s;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  note *todo, *todo_tail, *done;
  int stopping;
  uv_async_t async;
  void (*closed)(tsn_session *);
};

static int run(struct fuse_session *se, note *x) {
  switch (x->kind) {
  case INVAL_INODE: return fuse_lowlevel_notify_inval_inode(se, x->ino, x->off, x->len);
  case INVAL_ENTRY: return fuse_lowlevel_notify_inval_entry(se, x->ino, x->name, x->namelen);
  case DELETE:
    return fuse_lowlevel_notify_delete(se, x->ino, x->child, x->name, x->namelen);
  }
  return -EINVAL;
}

static void *thread_main(void *arg) {
  tsn_notifier *n = arg;
  pthread_mutex_lock(&n->mu);
  for (;;) {
    while (n->todo == NULL && !n->stopping) pthread_cond_wait(&n->cv, &n->mu);
    note *x = n->todo;
    if (x == NULL) break;
    n->todo = x->next;
    if (n->todo == NULL) n->todo_tail = NULL;
    pthread_mutex_unlock(&n->mu);
    x->result = run(n->s->se, x);
    pthread_mutex_lock(&n->mu);
    x->next = n->done;
    n->done = x;
    uv_async_send(&n->async);
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

// Resolves the promises of finished notes (with 0 or -errno) on Node's thread.
static void settle(tsn_notifier *n, note *list, int call_js) {
  napi_env env = n->s->te->env;
  napi_handle_scope hs = NULL;
  napi_callback_scope cs = NULL;
  napi_value resource = NULL;
  if (call_js && napi_open_handle_scope(env, &hs) == napi_ok &&
      napi_get_reference_value(env, n->s->resource, &resource) == napi_ok) {
    napi_open_callback_scope(env, resource, n->s->actx, &cs); // runs microtasks when closed
  }
  while (list) {
    note *x = list;
    list = x->next;
    napi_value v;
    if (call_js && napi_create_int32(env, x->result, &v) == napi_ok) {
      napi_resolve_deferred(env, x->deferred, v);
    }
    free(x->name);
    free(x);
  }
  if (cs) napi_close_callback_scope(env, cs);
  if (hs) napi_close_handle_scope(env, hs);
}

static void on_async(uv_async_t *a) {
  tsn_notifier *n = a->data;
  pthread_mutex_lock(&n->mu);
  note *list = n->done;
  n->done = NULL;
  pthread_mutex_unlock(&n->mu);
  settle(n, list, 1);
}

tsn_notifier *tsn_notifier_new(tsn_session *s) {
  uv_loop_t *loop = NULL;
  tsn_notifier *n = calloc(1, sizeof *n);
  if (n == NULL) return NULL;
  n->s = s;
  n->async.data = n;
  if (napi_get_uv_event_loop(s->te->env, &loop) != napi_ok ||
      pthread_mutex_init(&n->mu, NULL) != 0) {
    free(n);
    return NULL;
  }
  if (pthread_cond_init(&n->cv, NULL) != 0) goto fail_mu;
  // The thread only signals the async handle after a note arrives, and notes arrive only once
  // this returns, so starting the thread first lets a failed uv_async_init unwind simply.
  if (pthread_create(&n->thread, NULL, thread_main, n) != 0) goto fail_cv;
  if (uv_async_init(loop, &n->async, on_async) != 0) {
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    goto fail_cv;
  }
  return n;
fail_cv:
  pthread_cond_destroy(&n->cv);
fail_mu:
  pthread_mutex_destroy(&n->mu);
  free(n);
  return NULL;
}

// Joins the thread; notes it never ran resolve to -ENOTCONN. call_js = 0 at env teardown.
void tsn_notifier_stop(tsn_notifier *n, int call_js) {
  pthread_mutex_lock(&n->mu);
  n->stopping = 1;
  note *unrun = n->todo;
  n->todo = n->todo_tail = NULL;
  pthread_cond_signal(&n->cv);
  pthread_mutex_unlock(&n->mu);
  pthread_join(n->thread, NULL);
  for (note *x = unrun; x; x = x->next) x->result = -ENOTCONN;
  settle(n, n->done, call_js);
  n->done = NULL;
  settle(n, unrun, call_js);
}

static void on_closed(uv_handle_t *h) {
  tsn_notifier *n = h->data;
  tsn_session *s = n->s;
  void (*closed)(tsn_session *) = n->closed;
  pthread_cond_destroy(&n->cv);
  pthread_mutex_destroy(&n->mu);
  free(n);
  closed(s);
}

void tsn_notifier_close(tsn_notifier *n, void (*closed)(tsn_session *)) {
  n->closed = closed;
  uv_close((uv_handle_t *)&n->async, on_closed);
}

// Common front of the three notify functions: the session, its notifier and a new note.
static napi_value submit(napi_env env, napi_value handle, note *x) {
  tsn_session *s = tsn_handle_session(env, handle);
  napi_value promise = NULL;
  if (s == NULL || s->state != TSN_LIVE) {
    free(x->name);
    free(x);
    bool pending = false;
    napi_is_exception_pending(env, &pending); // a bad handle has thrown already
    return pending ? NULL : tsn_throw(env, "tarstack_native: session has ended");
  }
  if (s->notifier == NULL && (s->notifier = tsn_notifier_new(s)) == NULL) {
    free(x->name);
    free(x);
    napi_throw_error(env, "ENOMEM", "tarstack_native: cannot start the notifier thread");
    return NULL;
  }
  if (napi_create_promise(env, &x->deferred, &promise) != napi_ok) {
    free(x->name);
    free(x);
    return NULL;
  }
  tsn_notifier *n = s->notifier;
  pthread_mutex_lock(&n->mu);
  if (n->todo_tail) {
    n->todo_tail->next = x;
  } else {
    n->todo = x;
  }
  n->todo_tail = x;
  pthread_cond_signal(&n->cv);
  pthread_mutex_unlock(&n->mu);
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
