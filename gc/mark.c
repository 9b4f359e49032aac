/*
 * The marking engine.
 *
 * Invariants:
 * - Only old objects (old and large pages) are marked; young objects are
 *   handled by the scavenge that every full collection starts with (see
 *   Note [Full collection] in collect.c).
 * - A mark bit is set exactly once, by the thread whose atomic OR flipped
 *   it; that thread pushes the object (grey) unless it traces it itself
 *   (black allocation of promoted objects). An object is black once it has
 *   been popped and its slots shaded.
 * - Tracing reads slots with relaxed atomic loads and never writes to the
 *   object, so it can run on any thread while the owner runs; nothing here
 *   assumes the mutator is stopped.
 *
 * The per-object path (gc_mark_trace for an object of a normal page,
 * gc_mark_shade_later, gc_mark_shade) is inline in gc_internal.h, so that
 * drain runs it without a call; this file keeps slices of large objects
 * (a large object is pushed as its first slice) and the flush of the
 * pending queue.
 */
#include "gc_internal.h"

static inline uint64_t *mark_word(iso_value v, uint64_t *mask) {
  gc_page *p = gc_page_of(gc_obj(v));
  size_t i = gc_page_word_index(p, gc_obj(v));
  *mask = 1ull << (i % 64);
  return &p->markbits[i / 64];
}

bool gc_mark_test(iso_value v) {
  uint64_t mask;
  uint64_t *w = mark_word(v, &mask);
  return (thr_load_relaxed(w) & mask) != 0;
}

void gc_mark_set(iso_value v) {
  uint64_t mask;
  uint64_t *w = mark_word(v, &mask);
  thr_fetch_or_relaxed(w, mask);
}

/* Note [Two-stage prefetch]
 * Marking is bound by cache misses, two per object, both anywhere in the
 * heap: the header of a grey object (drain in concurrent.c fetches it
 * MARK_PREFETCH pops ahead) and the mark-bit word of each referent that
 * tracing shades. The second is hidden here: a reference read from a
 * slot has its page flags and bitmap word prefetched and waits in the
 * marker's pending queue; it is shaded GC_SHADE_AHEAD references later,
 * when the line has arrived. The queue is flushed before the marker
 * decides its worklist is empty and whenever it stops. */
void gc_mark_flush(gc_marker *mk) {
  while (mk->count) {
    gc_mark_shade(mk->wl, mk->pending[mk->head]);
    mk->head = (mk->head + 1) % GC_SHADE_AHEAD;
    mk->count--;
  }
}

/* The object of a large page and its slot count. */
static iso_value *large_slots(const gc_type *types, gc_page *p, size_t *n) {
  iso_value o = (iso_value)(uintptr_t)p->area_start;
  uint64_t hdr = thr_load_relaxed(gc_obj(o));
  *n = gc_slots_from_header(types, hdr, gc_size_from_header(o, hdr));
  return gc_slots(o);
}

/* Traces slice k of the object of large page p (gc_mark_slice_entry),
 * its slots [from, n), says so in the page's scan_mark and leaves the
 * next slice in mk->next. The store is a release after the slots' loads:
 * a barrier that sees it (acquire) overwrites a slot only after this
 * marker read it, and the value it read waits in mk->pending or is
 * shaded already (Note [Scanned prefix] in barrier.c). */
static size_t trace_slice(gc_marker *mk, gc_page *p, size_t k,
                          iso_value *slots, size_t n) {
  size_t from = k * GC_MARK_SLICE_SLOTS, to = from + GC_MARK_SLICE_SLOTS;
  bool last = to >= n || k + 1 > GC_MARK_SLICE_MAX;
  if (last) to = n;
  gc_mark_shade_slots(mk, slots + from, slots + to);
  thr_store_release(&p->scan_mark, mk->epoch | (uint64_t)to);
  if (!last) mk->next = gc_mark_slice_entry(p, k + 1);
  return (to - from) * 8;
}

size_t gc_mark_trace_slice(const gc_type *types, gc_marker *mk, iso_value e) {
  gc_page *p = (gc_page *)(uintptr_t)(e & ~(iso_value)(GC_PAGE_SIZE - 1));
  size_t k = (size_t)(e & (GC_PAGE_SIZE - 1)) >> 3, n;
  ISO_DASSERT(p->flags & GC_PAGE_LARGE);
  iso_value *slots = large_slots(types, p, &n);
  size_t traced = trace_slice(mk, p, k, slots, n);
  if (k != 0) return traced;
  /* The first slice stands for the object (gc_mark_shade): an object
   * without slots, or with few, counts its whole size; a long one its
   * header and then its slots, slice by slice. */
  return n > GC_MARK_SLICE_SLOTS ? 8 + traced : p->object_size;
}
