// The request-handle table: every kernel request JS may answer lives in a slot until its one
// reply. Ids carry a generation, so a second reply (or one after teardown) is refused, and a
// session that ends answers whatever JS never did, so libfuse frees every request.
#include "tsn.h"

#include <errno.h>
#include <stdlib.h>

static int grow(tsn_env *te) {
  uint32_t cap = te->cap ? te->cap * 2 : 256;
  if (cap > TSN_SLOT_MAX) cap = TSN_SLOT_MAX;
  if (cap <= te->cap) return -1;
  tsn_slot *slots = realloc(te->slots, cap * sizeof *slots);
  if (slots == NULL) return -1;
  for (uint32_t i = te->cap; i < cap; i++) {
    slots[i] = (tsn_slot){ .gen = 1, .next_free = i + 1 };
  }
  slots[cap - 1].next_free = TSN_NO_SLOT; // only called when the free list is empty
  te->free_head = te->cap;
  te->slots = slots;
  te->cap = cap;
  return 0;
}

// A fresh id for `req`, or -1 when the table is full (the caller answers ENOMEM).
double tsn_req_put(tsn_session *s, fuse_req_t req, uint32_t size) {
  tsn_env *te = s->te;
  if (te->free_head == TSN_NO_SLOT && grow(te) != 0) return -1;
  uint32_t i = te->free_head;
  tsn_slot *slot = &te->slots[i];
  te->free_head = slot->next_free;
  slot->req = req;
  slot->s = s;
  slot->size = size;
  slot->dirlen = 0;
  slot->dirbuf = NULL;
  slot->ring_ent = tsn_uring_current(s);
  te->nslots++;
  return (double)slot->gen * TSN_SLOT_MAX + i;
}

tsn_slot *tsn_req_find(tsn_env *te, double id) {
  if (!(id >= 0) || id > 9007199254740991.0) return NULL;
  uint64_t v = (uint64_t)id;
  uint32_t i = (uint32_t)(v & (TSN_SLOT_MAX - 1));
  uint64_t gen = v >> TSN_SLOT_BITS;
  if (i >= te->cap) return NULL;
  tsn_slot *slot = &te->slots[i];
  if (slot->req == NULL || slot->gen != gen) return NULL;
  return slot;
}

static fuse_req_t release_slot(tsn_env *te, tsn_slot *slot) {
  fuse_req_t req = slot->req;
  free(slot->dirbuf);
  slot->dirbuf = NULL;
  slot->req = NULL;
  slot->s = NULL;
  // Generations stay below 2^31 so ids stay below 2^53, exact as JS numbers.
  slot->gen = slot->gen >= 0x7fffffffu ? 1 : slot->gen + 1;
  slot->next_free = te->free_head;
  te->free_head = (uint32_t)(slot - te->slots);
  te->nslots--;
  return req;
}

// The request behind `id`, now owned by the caller who must answer it; NULL if already answered.
fuse_req_t tsn_req_take(tsn_env *te, double id) {
  tsn_slot *slot = tsn_req_find(te, id);
  return slot ? release_slot(te, slot) : NULL;
}

// Teardown: answer every request of `s` still waiting for JS, so none leaks inside libfuse.
void tsn_req_fail_session(tsn_env *te, tsn_session *s, int err) {
  for (uint32_t i = 0; i < te->cap && te->nslots > 0; i++) {
    tsn_slot *slot = &te->slots[i];
    if (slot->req != NULL && slot->s == s) fuse_reply_err(release_slot(te, slot), err);
  }
}

void tsn_reqs_free(tsn_env *te) {
  free(te->slots);
  te->slots = NULL;
  te->cap = te->nslots = 0;
  te->free_head = TSN_NO_SLOT;
}
