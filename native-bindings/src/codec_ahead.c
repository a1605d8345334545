// Decode ahead: one thread per decoder that decodes the requests pushed, in order and back to back,
// so decoding overlaps whatever the consumer does with the output before (serving it, scanning tar
// headers) instead of waiting for the consumer to ask for more. Memory is what the consumer
// pushes: it decides how far ahead the thread may run. A failure or the end of the data completes
// every later request the same way (-1 with the error, or 0 bytes).
#include "codec_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct tsc_ahead {
  tsc_dec *d;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t work, done; // a request pushed or stop (the thread waits); a request done (pop waits)
  tsc_areq *head, *tail;     // pushed and not popped, oldest first
  tsc_areq *todo;            // the oldest not yet decoded
  int stop, failed, ended;
  int errcode;
  char err[256];
  void (*ready)(void *);
  void *arg;
};

static void decode_one(tsc_ahead *a, tsc_areq *r) {
  if (a->failed) {
    r->n = -1;
    r->errcode = a->errcode;
    snprintf(r->err, sizeof r->err, "%s", a->err);
    return;
  }
  r->n = a->ended ? 0 : tsc_decode(a->d, r->out, r->len);
  r->in_pos = tsc_in_pos(a->d);
  if (r->n < 0) {
    a->failed = 1;
    a->errcode = r->errcode = tsc_errcode(a->d);
    snprintf(a->err, sizeof a->err, "%s", tsc_error(a->d));
    snprintf(r->err, sizeof r->err, "%s", a->err);
    return;
  }
  if ((size_t)r->n < r->len) a->ended = 1;
  if (a->d->scanning) r->pts = tsc_take_points(a->d, &r->npts);
  r->zends = tsc_take_zends(a->d, &r->nzends);
  // a request asking for them has room for one per piece of `len` (its pusher's promise)
  if (r->crcs) tsc_piece_crcs(r->out, (size_t)r->n, r->piece, r->crcs, (r->len + r->piece - 1) / r->piece);
}

static void *run(void *arg) {
  tsc_ahead *a = arg;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (!a->stop && a->todo == NULL) pthread_cond_wait(&a->work, &a->mu);
    if (a->stop) break;
    tsc_areq *r = a->todo;
    pthread_mutex_unlock(&a->mu);
    decode_one(a, r); // only this thread touches the decoder and a request not yet done
    pthread_mutex_lock(&a->mu);
    r->done = 1;
    a->todo = r->next;
    pthread_cond_broadcast(&a->done);
    if (a->ready) {
      pthread_mutex_unlock(&a->mu);
      a->ready(a->arg);
      pthread_mutex_lock(&a->mu);
    }
  }
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

tsc_ahead *tsc_ahead_new(tsc_dec *d, void (*ready)(void *), void *arg) {
  tsc_ahead *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->d = d;
  a->ready = ready;
  a->arg = arg;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->work, NULL);
  pthread_cond_init(&a->done, NULL);
  if (pthread_create(&a->th, NULL, run, a) != 0) {
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->done);
    pthread_mutex_destroy(&a->mu);
    free(a);
    return NULL;
  }
  return a;
}

void tsc_ahead_push(tsc_ahead *a, tsc_areq *r) {
  r->next = NULL;
  r->done = 0;
  pthread_mutex_lock(&a->mu);
  if (a->tail) a->tail->next = r;
  else a->head = r;
  a->tail = r;
  if (a->todo == NULL) a->todo = r;
  pthread_cond_signal(&a->work);
  pthread_mutex_unlock(&a->mu);
}

tsc_areq *tsc_ahead_pop(tsc_ahead *a, int wait) {
  pthread_mutex_lock(&a->mu);
  while (wait && a->head && !a->head->done) pthread_cond_wait(&a->done, &a->mu);
  tsc_areq *r = a->head && a->head->done ? a->head : NULL;
  if (r) {
    a->head = r->next;
    if (a->head == NULL) a->tail = NULL;
    r->next = NULL;
  }
  pthread_mutex_unlock(&a->mu);
  return r;
}

void tsc_ahead_free(tsc_ahead *a, void (*drop)(tsc_areq *, void *), void *arg) {
  if (a == NULL) return;
  pthread_mutex_lock(&a->mu);
  a->stop = 1;
  pthread_cond_broadcast(&a->work);
  pthread_mutex_unlock(&a->mu);
  pthread_join(a->th, NULL);
  for (tsc_areq *r = a->head, *next; r; r = next) {
    next = r->next;
    if (drop) drop(r, arg);
    tsc_areq_free(r);
  }
  pthread_cond_destroy(&a->work);
  pthread_cond_destroy(&a->done);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

void tsc_areq_free(tsc_areq *r) {
  if (r == NULL) return;
  tsc_points_free(r->pts, r->npts);
  free(r->zends);
  free(r);
}
