// Session lifecycle: fuse_session_new + mount, the non-blocking /dev/fuse fd polled on Node's own
// loop (no thread hop per request: that hop is what made fuse-native cost ~77 us a request here),
// and one teardown path that answers every open request before libfuse frees the session.
#include "tsn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256 // requests per wakeup before other loop work (timers, I/O) gets a turn

// Live mounts of the whole process. process.exit() skips N-API environment teardown but does run
// atexit handlers, so this list is how a daemon that exits while mounted still unmounts.
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;
static struct live {
  struct live *next;
  struct fuse_session *se;
} *live_list;

static void unmount_at_exit(void) {
  pthread_mutex_lock(&live_mu);
  for (struct live *l = live_list; l; l = l->next) tsn_uring_unmount(l->se); // a ring's or not
  pthread_mutex_unlock(&live_mu);
}

static void register_atexit(void) {
  atexit(unmount_at_exit);
}

static int live_add(struct fuse_session *se) {
  struct live *l = malloc(sizeof *l);
  if (l == NULL || pthread_once(&live_once, register_atexit) != 0) {
    free(l);
    return -1;
  }
  l->se = se;
  pthread_mutex_lock(&live_mu);
  l->next = live_list;
  live_list = l;
  pthread_mutex_unlock(&live_mu);
  return 0;
}

static void live_remove(struct fuse_session *se) {
  pthread_mutex_lock(&live_mu);
  for (struct live **p = &live_list; *p; p = &(*p)->next) {
    if ((*p)->se == se) {
      struct live *l = *p;
      *p = l->next;
      free(l);
      break;
    }
  }
  pthread_mutex_unlock(&live_mu);
}

static void end_js(tsn_session *s) {
  napi_env env = s->te->env;
  napi_value fn, undef, args[2];
  if (s->handlers[TSN_OP_END] == NULL ||
      napi_get_reference_value(env, s->handlers[TSN_OP_END], &fn) != napi_ok || fn == NULL ||
      napi_get_undefined(env, &undef) != napi_ok ||
      napi_create_int32(env, s->end_errno, &args[0]) != napi_ok ||
      napi_create_double(env, s->requests, &args[1]) != napi_ok) {
    return;
  }
  // end(errno, requests): errno 0 after an unmount (by anyone) or an abort of the connection.
  if (napi_call_function(env, undef, fn, 2, args, NULL) != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    fprintf(stderr, "tarstack_native: the end handler threw\n");
  }
}

// The N-API side of a session (handler references, async context), released when it ends; left
// alone when the environment itself is going away.
static void release_js(tsn_session *s) {
  tsn_env *te = s->te;
  for (int i = 0; i < TSN_OP_COUNT; i++) {
    if (s->handlers[i]) napi_delete_reference(te->env, s->handlers[i]);
    s->handlers[i] = NULL;
  }
  if (s->resource) napi_delete_reference(te->env, s->resource);
  if (s->actx) napi_async_destroy(te->env, s->actx);
  s->resource = NULL;
  s->actx = NULL;
}

// The last holder of an ended session lets go: the fuse_session goes, then the struct. Runs on
// Node's thread, or on the worker that finished the session's last read or notification (neither
// touches N-API). /dev/fuse was closed at the end already (fuse_session_unmount closes it).
void tsn_session_unref(tsn_session *s) {
  if (--s->refs > 0) return;
  if (s->se) fuse_session_destroy(s->se);
  tsn_uring_free(s->uring);
  tsn_direct_free(s);
  free(s);
}

static void reads_drained(tsn_lane *l) {
  tsn_session_unref(TSN_CONTAINER(l, tsn_session, reads));
}

static void notes_drained(tsn_lane *l) {
  tsn_session_unref(TSN_CONTAINER(l, tsn_session, notes));
}

// The handle is closed a loop turn after the end: only now may the async context the last
// request ran in go (a callback scope may have been open on it while the session ended).
static void on_poll_closed(uv_handle_t *h) {
  tsn_session *s = h->data;
  if (!s->env_gone) release_js(s);
  tsn_session_unref(s);
}

// Ends the session once, without waiting for anything: no more requests are read, reads and
// notifications it queued but never started are answered (EIO, -ENOTCONN), requests JS never
// answered get EIO, and the mount goes (if someone else has not already unmounted it) with its
// /dev/fuse descriptor, which fails whatever the kernel still waits for. Reads or notifications
// already running on a worker (a stuck disk) keep the fuse_session struct until they are done,
// their answers going nowhere; no other session waits for them. call_js = 0 when the JS
// environment itself is going away.
void tsn_session_end(tsn_session *s, int call_js) {
  if (s->state != TSN_LIVE) return;
  s->state = TSN_ENDED;
  s->env_gone = !call_js;
  uv_poll_stop(&s->poll);
  s->refs = 3; // the poll handle, the reads lane, the notes lane (and the ring's handle, below)
  int reads_busy = 0, notes_busy = 0;
  tsn_reads_cancel(tsn_lane_close(&tsn_read_pool, &s->reads, &reads_busy));
  tsn_notes_cancel(s->te, tsn_lane_close(&tsn_note_pool, &s->notes, &notes_busy), call_js);
  tsn_req_fail_session(s->te, s, EIO);
  tsr_session_end(s);
  tsn_direct_end(s);
  s->refs += tsn_uring_end(s);
  // After an external unmount the fd reports POLLERR and this only closes it.
  live_remove(s->se);
  fuse_session_exit(s->se); // late answers from workers then fail quietly (EBADF)
  if (s->mounted && s->uring != NULL) tsn_uring_unmount(s->se);
  else if (s->mounted) fuse_session_unmount(s->se);
  for (tsn_session **p = &s->te->sessions; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      s->te->nsessions--;
      break;
    }
  }
  if (s->handle) s->handle->s = NULL;
  if (call_js) end_js(s);
  if (!reads_busy) tsn_session_unref(s);
  if (!notes_busy) tsn_session_unref(s);
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);
}

int64_t tsn_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Spinning for the next request helps only while nothing else wants the CPU: not while the read
// pool works (its thread needs it; 2 vCPUs here), nor when the env serves other sessions (their
// requests would wait for this one's spin).
int tsn_session_may_spin(tsn_session *s) {
  return s->cfg.spin_us > 0 && s->te->nsessions <= 1 && !tsn_pool_busy(&tsn_read_pool);
}

void tsn_session_run(tsn_session *s, int (*body)(tsn_session *, int), int status) {
  napi_env env = s->te->env;
  napi_handle_scope hs;
  napi_callback_scope cs = NULL;
  napi_value resource;
  if (napi_open_handle_scope(env, &hs) != napi_ok) return;
  // One callback scope per wakeup: promises JS settled while answering run when it closes.
  if (napi_get_reference_value(env, s->resource, &resource) != napi_ok ||
      napi_open_callback_scope(env, resource, s->actx, &cs) != napi_ok) {
    cs = NULL;
  }
  s->in_poll = 1;
  int end = body(s, status);
  s->in_poll = 0;
  if (end || s->end_requested) tsn_session_end(s, 1);
  if (cs) napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

static int poll_body(tsn_session *s, int status) {
  // libuv reports POLLERR as UV_EBADF: the connection is gone (unmounted or aborted), not an error.
  int end = status < 0;
  if (end) s->end_errno = status == UV_EBADF ? 0 : -status;
  int64_t spin_until = -1;
  for (int i = 0; !end && i < BATCH; i++) {
    int res = fuse_session_receive_buf(s->se, &s->te->recv);
    if (res == -EAGAIN) {
      // A program making one call after another sends its next request a few microseconds after
      // our answer; reading again for a moment spares the wakeup of this thread (~25 us on a VM).
      if (i == 0 || !tsn_session_may_spin(s)) break;
      int64_t now = tsn_now_ns();
      if (spin_until < 0) spin_until = now + (int64_t)s->cfg.spin_us * 1000;
      if (now >= spin_until) break;
      i--;
      continue;
    }
    spin_until = -1;
    if (res == -EINTR) continue;
    if (res <= 0) { // 0: unmounted or aborted (the read saw ENODEV); < 0: a broken device
      s->end_errno = -res;
      end = 1;
      break;
    }
    s->requests++;
    fuse_session_process_buf(s->se, &s->te->recv);
    if (fuse_session_exited(s->se) || s->end_requested) end = 1;
  }
  return end;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)events;
  tsn_session *s = h->data;
  if (s->state == TSN_LIVE) tsn_session_run(s, poll_body, status);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  tsn_handle *h = data;
  if (h->s) h->s->handle = NULL;
  free(h);
}

tsn_session *tsn_handle_session(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    tsn_throw(env, "tarstack_native: expected a session handle");
    return NULL;
  }
  return ((tsn_handle *)data)->s;
}

static double cfg_num(napi_env env, napi_value cfg, const char *key, double dflt) {
  napi_value v;
  double d;
  bool has = false;
  if (napi_has_named_property(env, cfg, key, &has) != napi_ok || !has ||
      napi_get_named_property(env, cfg, key, &v) != napi_ok ||
      napi_get_value_double(env, v, &d) != napi_ok) {
    return dflt;
  }
  return d;
}

static int get_handlers(napi_env env, napi_value obj, tsn_session *s) {
  for (int i = 0; i < TSN_OP_COUNT; i++) {
    napi_value fn;
    napi_valuetype t;
    bool has = false;
    if (napi_has_named_property(env, obj, tsn_op_names[i], &has) != napi_ok) return -1;
    if (!has) continue;
    if (napi_get_named_property(env, obj, tsn_op_names[i], &fn) != napi_ok ||
        napi_typeof(env, fn, &t) != napi_ok) {
      return -1;
    }
    if (t != napi_function) continue;
    if (napi_create_reference(env, fn, 1, &s->handlers[i]) != napi_ok) return -1;
  }
  return 0;
}

// fuse_args from a JS string array; the strings stay ours, libfuse copies what it keeps.
static int get_args(napi_env env, napi_value arr, struct fuse_args *args) {
  uint32_t n = 0;
  if (napi_get_array_length(env, arr, &n) != napi_ok || n == 0) return -1;
  char **argv = calloc(n + 1, sizeof *argv);
  if (argv == NULL) return -1;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    if (napi_get_element(env, arr, i, &v) != napi_ok ||
        (argv[i] = tsn_latin1(env, v, NULL)) == NULL) {
      for (uint32_t k = 0; k < i; k++) free(argv[k]);
      free(argv);
      return -1;
    }
  }
  *args = (struct fuse_args)FUSE_ARGS_INIT((int)n, argv);
  return 0;
}

static void free_args(char **argv, int n) {
  for (int i = 0; i < n; i++) free(argv[i]);
  free(argv);
}

// Undoes a mount that never went live (no poll handle, no jobs).
static napi_value fail(napi_env env, tsn_session *s, const char *msg) {
  if (s->se) {
    live_remove(s->se);
    if (s->mounted) fuse_session_unmount(s->se);
  }
  release_js(s);
  s->refs = 1;
  tsn_session_unref(s);
  if (msg) napi_throw_error(env, NULL, msg);
  return NULL;
}

// libfuse and fusermount3 say why a mount failed only on stderr: the log of a detached server, where
// nobody looks. While mounting, stderr goes to a pipe (fusermount3 inherits it and has exited when
// the mount call returns, as libfuse waits for it), so the error can say the same; what was said
// is passed on to the real stderr too.
typedef struct {
  int saved, rd;
} said_t;

static void said_begin(said_t *c) {
  int p[2];
  c->saved = c->rd = -1;
  fflush(stderr);
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return; // non-blocking: a flood is cut, never a hang
  c->saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (c->saved < 0 || dup2(p[1], 2) < 0) {
    if (c->saved >= 0) close(c->saved);
    c->saved = -1;
    close(p[0]);
    close(p[1]);
    return;
  }
  close(p[1]);
  c->rd = p[0];
}

// Restores stderr; `out` (cap bytes) gets the last of what was said.
static void said_end(said_t *c, char *out, size_t cap) {
  size_t n = 0;
  out[0] = 0;
  if (c->saved < 0) return;
  fflush(stderr);
  dup2(c->saved, 2);
  close(c->saved);
  char buf[1024];
  ssize_t r;
  while ((r = read(c->rd, buf, sizeof buf)) > 0) {
    if (write(2, buf, (size_t)r) < 0) { /* the log is gone: the error still says it */ }
    for (ssize_t i = 0; i < r; i++) {
      if (n + 1 >= cap) { // keep the tail: the last lines say why
        memmove(out, out + cap / 2, n - cap / 2);
        n -= cap / 2;
      }
      out[n++] = buf[i];
    }
  }
  close(c->rd);
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) n--;
  out[n] = 0;
}

// What libfuse or fusermount3 said (its lines joined by "; "), else "what failed (nothing said why)".
static void said_message(char *msg, size_t cap, const char *what, const char *said) {
  int n = said[0] ? 0 : snprintf(msg, cap, "%s (nothing said why)", what);
  size_t at = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
  for (const char *p = said; *p && at + 3 < cap; p++) {
    if (*p == '\n') {
      msg[at++] = ';';
      msg[at++] = ' ';
    } else msg[at++] = *p;
  }
  msg[at] = 0;
}

// mount(mountpoint, args: string[], handlers, config) -> session handle. The mount exists when
// this returns; requests (INIT first) are served once control goes back to the loop.
napi_value tsn_js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[4], resource, name, handle;
  uv_loop_t *loop;
  tsn_env *te = tsn_env_of(env);
  if (te == NULL || tsn_get_args(env, info, 4, argv) != 0) return NULL;
  char *mountpoint = tsn_latin1(env, argv[0], NULL);
  if (mountpoint == NULL) return NULL;
  tsn_session *s = calloc(1, sizeof *s);
  if (s == NULL) {
    free(mountpoint);
    return tsn_throw(env, "tarstack_native: out of memory");
  }
  s->te = te;
  s->cfg.readdirplus = (int)cfg_num(env, argv[3], "readdirplus", 1);
  s->cfg.nowait = (int)cfg_num(env, argv[3], "nowait", 1);
  s->cfg.read_threads = (int)cfg_num(env, argv[3], "readThreads", 4);
  s->cfg.max_readahead = (unsigned)cfg_num(env, argv[3], "maxReadahead", 0);
  s->cfg.max_background = (unsigned)cfg_num(env, argv[3], "maxBackground", 0);
  s->cfg.auto_inval = (int)cfg_num(env, argv[3], "autoInvalData", 1);
  s->cfg.spin_us = (int)cfg_num(env, argv[3], "spinMicros", 0);
  if (s->cfg.spin_us < 0 || s->cfg.spin_us > 1000) s->cfg.spin_us = 0;
  if (s->cfg.read_threads < 1 || s->cfg.read_threads > 64) s->cfg.read_threads = 4;
  s->cfg.kernel_ext = (int)cfg_num(env, argv[3], "kernelExt", 1);
  s->cfg.passthrough = (int)cfg_num(env, argv[3], "passthrough", 0);
  s->cfg.killpriv = (int)cfg_num(env, argv[3], "killpriv", 0);
  s->cfg.uring = (int)cfg_num(env, argv[3], "uring", 0);
  s->cfg.uring_depth = (int)cfg_num(env, argv[3], "uringDepth", 8);
  if (s->cfg.uring_depth < 1 || s->cfg.uring_depth > 64) s->cfg.uring_depth = 8;
  double mp = cfg_num(env, argv[3], "maxPages", 0);
  s->cfg.max_pages = mp >= 1 && mp <= 65535 ? (unsigned)mp : 0;
  tsn_lane_init(&s->reads, (unsigned)s->cfg.read_threads, reads_drained);
  tsn_lane_init(&s->notes, 1, notes_drained); // in order, one at a time
  if (get_handlers(env, argv[2], s) != 0 ||
      napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "tarstack:fuse", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &s->actx) != napi_ok ||
      napi_create_reference(env, resource, 1, &s->resource) != napi_ok ||
      napi_get_uv_event_loop(env, &loop) != napi_ok) {
    free(mountpoint);
    return fail(env, s, NULL);
  }
  struct fuse_args args;
  if (get_args(env, argv[1], &args) != 0) {
    free(mountpoint);
    return fail(env, s, "tarstack_native: bad mount arguments");
  }
  char **our_argv = args.argv;
  int our_argc = args.argc;
  struct fuse_lowlevel_ops ops;
  tsn_fill_ops(s, &ops);
  char said[512], msg[640];
  said_t cap;
  said_begin(&cap);
  s->se = fuse_session_new(&args, &ops, sizeof ops, s);
  fuse_opt_free_args(&args); // frees only what libfuse allocated while parsing
  free_args(our_argv, our_argc);
  int res = s->se == NULL ? -1 : fuse_session_mount(s->se, mountpoint);
  said_end(&cap, said, sizeof said);
  free(mountpoint);
  if (s->se == NULL) {
    said_message(msg, sizeof msg, "fuse_session_new failed", said);
    return fail(env, s, msg);
  }
  if (res != 0) {
    said_message(msg, sizeof msg, "fuse_session_mount failed", said);
    return fail(env, s, msg);
  }
  s->mounted = 1;
  if (live_add(s->se) != 0) return fail(env, s, "out of memory");
  if (tsn_kext_start(s) != 0) return fail(env, s, "fuse_session_custom_io failed");
  int fd = fuse_session_fd(s->se);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return fail(env, s, "fcntl O_NONBLOCK");
  if (uv_poll_init(loop, &s->poll, fd) != 0) return fail(env, s, "uv_poll_init failed");
  s->poll.data = s;
  tsn_handle *h = calloc(1, sizeof *h);
  if (h == NULL || uv_poll_start(&s->poll, UV_READABLE, on_poll) != 0 ||
      napi_create_external(env, h, handle_finalize, NULL, &handle) != napi_ok) {
    free(h); // the session is live from here on: end it the normal way
    s->handle = NULL;
    s->next = te->sessions;
    te->sessions = s;
    te->nsessions++;
    tsn_session_end(s, 1);
    napi_throw_error(env, NULL, "tarstack_native: cannot start polling /dev/fuse");
    return NULL;
  }
  h->s = s;
  s->handle = h;
  s->next = te->sessions;
  te->sessions = s;
  te->nsessions++;
  return handle;
}

// unmount(session): ends the session now, unmounting if still mounted (lazily, as libfuse does).
// Inside a handler the end waits until the current request has been processed.
napi_value tsn_js_unmount(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  tsn_session *s = tsn_handle_session(env, argv[0]);
  if (s == NULL || s->state != TSN_LIVE) return tsn_bool(env, 0);
  if (s->in_poll) {
    s->end_requested = 1;
  } else {
    tsn_session_end(s, 1);
  }
  return tsn_bool(env, 1);
}

static int set_num(napi_env env, napi_value obj, const char *key, double d) {
  napi_value v;
  return napi_create_double(env, d, &v) == napi_ok &&
                 napi_set_named_property(env, obj, key, v) == napi_ok
             ? 0
             : -1;
}

// sessionInfo(session) -> { live, requests, and what INIT negotiated }
napi_value tsn_js_session_info(napi_env env, napi_callback_info info) {
  static const char *const keys[8] = { "maxRead", "maxWrite", "maxReadahead", "capable",
                                       "want", "maxBackground", "timeGran", "protoMinor" };
  napi_value argv[1], obj;
  if (tsn_get_args(env, info, 1, argv) != 0) return NULL;
  void *data = NULL;
  if (napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    return tsn_throw(env, "tarstack_native: expected a session handle");
  }
  tsn_session *s = ((tsn_handle *)data)->s;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  set_num(env, obj, "live", s != NULL && s->state == TSN_LIVE);
  if (s == NULL) return obj;
  set_num(env, obj, "requests", s->requests);
  set_num(env, obj, "directReads", s->direct_reads);
  set_num(env, obj, "streamedReads", s->streamed_reads);
  for (int i = 0; i < 8; i++) set_num(env, obj, keys[i], s->conn_info[i]);
  // What kext.c negotiated beyond libfuse, and the requests it counted by opcode.
  set_num(env, obj, "hooked", s->ext.hooked);
  set_num(env, obj, "passthrough", s->ext.passthrough);
  set_num(env, obj, "killpriv", s->ext.killpriv);
  set_num(env, obj, "maxPages", s->ext.max_pages);
  set_num(env, obj, "kernelFlags", (double)s->ext.kernel_flags);
  static const char *const ukeys[6] = { "uringRequests", "uringEntries", "uringCommits", "uringReads", "uringLinked", "uringBroken" };
  double ur[6];
  tsn_uring_info(s, ur);
  set_num(env, obj, "uring", s->ext.uring);
  for (int i = 0; i < 6; i++) set_num(env, obj, ukeys[i], ur[i]);
  napi_value ops;
  if (napi_create_array_with_length(env, TSN_OPCODES, &ops) == napi_ok) {
    for (uint32_t i = 0; i < TSN_OPCODES; i++) {
      napi_value v;
      if (napi_create_double(env, s->ops[i], &v) == napi_ok) napi_set_element(env, ops, i, v);
    }
    napi_set_named_property(env, obj, "ops", ops);
  }
  return obj;
}
