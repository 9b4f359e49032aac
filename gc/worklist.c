/*
 * Segment worklists; see worklist.h. The mutex guards only whole-segment
 * moves (one lock per GC_SEGMENT_CAPACITY objects), so it is never hot.
 */
#include <stdlib.h>

#include "isolate_internal.h"
#include "worklist.h"

void gc_worklist_init(gc_worklist *wl) {
  pthread_mutex_init(&wl->lock, NULL);
  wl->full = wl->spare = NULL;
  wl->full_count = 0;
}

static void free_list(gc_segment *s) {
  while (s) {
    gc_segment *n = s->next;
    free(s);
    s = n;
  }
}

void gc_worklist_destroy(gc_worklist *wl) {
  free_list(wl->full);
  free_list(wl->spare);
  pthread_mutex_destroy(&wl->lock);
}

void gc_worklist_local_init(gc_worklist_local *l, gc_worklist *global) {
  l->global = global;
  l->push_seg = l->pop_seg = NULL;
}

static gc_segment *new_segment(gc_worklist *g) {
  pthread_mutex_lock(&g->lock);
  gc_segment *s = g->spare;
  if (s) g->spare = s->next;
  pthread_mutex_unlock(&g->lock);
  if (!s) {
    s = malloc(sizeof *s);
    /* The collector cannot make progress without worklist memory; this is
     * the machine running out of memory, not the heap limit. */
    ISO_ASSERT(s != NULL);
  }
  s->count = 0;
  s->next = NULL;
  return s;
}

static void publish(gc_worklist *g, gc_segment *s) {
  pthread_mutex_lock(&g->lock);
  if (s->count) {
    s->next = g->full;
    g->full = s;
    thr_store_release(&g->full_count, g->full_count + 1);
  } else {
    s->next = g->spare;
    g->spare = s;
  }
  pthread_mutex_unlock(&g->lock);
}

void gc_worklist_local_finish(gc_worklist_local *l) {
  if (l->push_seg) publish(l->global, l->push_seg);
  if (l->pop_seg) publish(l->global, l->pop_seg);
  l->push_seg = l->pop_seg = NULL;
}

void gc_worklist_push_slow(gc_worklist_local *l, iso_value v) {
  if (l->push_seg) publish(l->global, l->push_seg);
  l->push_seg = new_segment(l->global);
  l->push_seg->items[l->push_seg->count++] = v;
}

iso_value gc_worklist_pop_slow(gc_worklist_local *l) {
  /* Local push segment first: cheapest, and keeps depth-first locality. */
  gc_segment *s = l->push_seg;
  if (s && s->count) {
    l->push_seg = l->pop_seg;
    l->pop_seg = s;
    return s->items[--s->count];
  }
  gc_worklist *g = l->global;
  pthread_mutex_lock(&g->lock);
  s = g->full;
  if (s) {
    g->full = s->next;
    thr_store_release(&g->full_count, g->full_count - 1);
  }
  pthread_mutex_unlock(&g->lock);
  if (!s) return 0;
  if (l->pop_seg) publish(g, l->pop_seg);
  l->pop_seg = s;
  return s->items[--s->count];
}
