/*
 * Marking worklists made of segments (DESIGN: "worklists made of
 * segments"). Each marking thread pushes and pops on its own local
 * segments without synchronisation; full segments are published to the
 * shared list under its mutex, and an empty local worklist steals a whole
 * segment from there. Pushing an object twice is harmless: tracing an
 * object is idempotent.
 */
#ifndef GC_WORKLIST_H
#define GC_WORKLIST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "isolate.h"

#define GC_SEGMENT_CAPACITY 254

typedef struct gc_segment {
  struct gc_segment *next;
  size_t count;
  iso_value items[GC_SEGMENT_CAPACITY];
} gc_segment;

typedef struct gc_worklist {
  pthread_mutex_t lock;
  gc_segment *full;  /* published segments, under lock */
  gc_segment *spare; /* empty segments kept for reuse, under lock */
  size_t full_count; /* written under lock; read without it (atomic) */
} gc_worklist;

typedef struct gc_worklist_local {
  gc_worklist *global;
  gc_segment *push_seg; /* owned by one thread */
  gc_segment *pop_seg;
} gc_worklist_local;

void gc_worklist_init(gc_worklist *wl);
void gc_worklist_destroy(gc_worklist *wl);
void gc_worklist_local_init(gc_worklist_local *l, gc_worklist *global);
/* Publishes what is left and releases the local segments. */
void gc_worklist_local_finish(gc_worklist_local *l);
/* No published segment (a hint without the lock; exact when no thread
 * holds a local view of the list). */
static inline bool gc_worklist_is_empty(gc_worklist *wl) {
  return __atomic_load_n(&wl->full_count, __ATOMIC_ACQUIRE) == 0;
}
void gc_worklist_push_slow(gc_worklist_local *l, iso_value v);
iso_value gc_worklist_pop_slow(gc_worklist_local *l);

static inline void gc_worklist_push(gc_worklist_local *l, iso_value v) {
  gc_segment *s = l->push_seg;
  if (s && s->count < GC_SEGMENT_CAPACITY) {
    s->items[s->count++] = v;
    return;
  }
  gc_worklist_push_slow(l, v);
}

/* The next grey object, or 0 when this thread found no work anywhere. */
static inline iso_value gc_worklist_pop(gc_worklist_local *l) {
  gc_segment *s = l->pop_seg;
  if (s && s->count) return s->items[--s->count];
  return gc_worklist_pop_slow(l);
}

#endif /* GC_WORKLIST_H */
