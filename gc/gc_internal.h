/*
 * Declarations shared by the files of gc/ and nothing else.
 */
#ifndef GC_INTERNAL_H
#define GC_INTERNAL_H

#include "isolate_internal.h"
#include "worklist.h"

/* ---- object geometry, given the runtime's type table ---- */

static inline size_t gc_size_from_header(iso_value v, uint64_t hdr) {
  size_t w = gc_hdr_words(hdr);
  if (w != 0) return w * 8;
  return gc_page_of(gc_obj(v))->object_size;
}

static inline size_t gc_slots_from_header(const gc_type *types, uint64_t hdr,
                                          size_t size) {
  const gc_type *t = &types[gc_hdr_type(hdr)];
  switch (t->layout) {
    case GC_LAYOUT_FIXED:
      return t->slot_count;
    case GC_LAYOUT_ALL:
      return size / 8 - 1;
    default:
      return 0;
  }
}

/* Fills [start, start+bytes) with one filler object (bytes may be 0). */
static inline void gc_fill(void *start, size_t bytes) {
  if (bytes) *(uint64_t *)start = gc_hdr_make(GC_TYPE_FILLER, bytes / 8);
}

static inline bool gc_is_young_ref(iso_value v) {
  return iso_is_ref(v) && (gc_page_of(gc_obj(v))->flags & GC_PAGE_YOUNG);
}

static inline size_t gc_old_committed(const gc_heap *h) {
  return h->old.page_count * GC_PAGE_SIZE + h->old.large_bytes;
}

/* Bytes of the old space in objects (live or not yet found dead): the
 * committed bytes less the free lists and the rest of the allocation
 * area. Pages still waiting to be swept count as full. What the cycle's
 * trigger and assists measure: allocation, not page growth, so free
 * space left by a sweep is refilled before a new cycle starts. */
static inline size_t gc_old_used(const gc_heap *h) {
  size_t c = gc_old_committed(h);
  size_t f = h->old.fl.free_bytes;
  if (h->old.lab_top) f += (size_t)(h->old.lab_limit - h->old.lab_top);
  return c > f ? c - f : 0;
}

/* ---- old space (old.c) ---- */

/* Bytes in the old space: a bump in the linear allocation area, else a
 * refill from the free list or a new page. check_limit: fail (NULL) rather
 * than grow past the heap limit; promotion passes false. NULL also when the
 * OS refuses a page. Never collects. */
void *gc_old_alloc_raw(iso_isolate *iso, size_t bytes, bool check_limit);
/* A large page for one object; NULL past the limit or if the OS refuses. */
void *gc_large_alloc_raw(iso_isolate *iso, size_t bytes, bool check_limit);
/* Would adding bytes to the old generation exceed its limit, or the
 * runtime's (Note [The runtime's heap limit] in old.c)? The latter also
 * asks every isolate to collect. */
bool gc_old_would_exceed(iso_isolate *iso, size_t bytes);
/* Is the old generation over its limit, or the runtime over its? */
bool gc_old_over_limit(iso_isolate *iso);
/* Would bytes more take the runtime past max_heap_size? Any thread. */
bool gc_runtime_over_limit(iso_runtime *rt, size_t bytes);
/* Asks every isolate of the runtime to start a cycle. Any thread. */
void gc_runtime_request_collections(iso_runtime *rt);
void gc_old_retire_lab(iso_isolate *iso);
void gc_old_release_all(iso_isolate *iso);
/* Counts [from, to) of the LAB, which the inline paths filled, as old
 * allocation; while marking, its objects are to be made black, which may
 * wait for gc_old_black_flush (Note [Black LABs, in batches] in old.c).
 * Owner only. */
void gc_old_lab_used(iso_isolate *iso, char *from, char *to);
/* Makes black every LAB that gc_old_lab_used left waiting. Owner. */
void gc_old_black_flush(iso_isolate *iso);
/* A free block of at least bytes from the adopted pages' chains or the
 * free lists, unlinked (no page is adopted, swept or added); NULL if none
 * is at hand. Owner only. */
uint64_t *gc_old_take_block(iso_isolate *iso, size_t bytes);
/* Gives [start, start + bytes) back to the free lists. Owner only. */
void gc_old_give_block(iso_isolate *iso, char *start, size_t bytes);

/* ---- young generation (young.c) ---- */

void gc_young_init(iso_isolate *iso, size_t max_young);
void gc_young_release_all(iso_isolate *iso);
/* The scavenge proper. With join non-NULL (a full GC), also shades every
 * old object referenced from roots and survivors into that worklist and
 * allocates promoted objects black. */
void gc_scavenge_work(iso_isolate *iso, gc_worklist_local *join);
size_t gc_young_used(iso_isolate *iso);
/* Gives the old LAB back from the inline area to the old space, if the
 * inline paths have it (Note [The inline old LAB] in young.c). Every
 * owner-thread entry that collects, walks the heap, allocates in the old
 * space other than inline, parks or changes the area calls it first. */
void gc_lab_detach(iso_isolate *iso);
/* Re-applies whether the allocation area is hidden from the inline paths
 * (after stress or over_limit changed). */
void gc_young_limit_changed(iso_isolate *iso);
/* Counts one allocation (or safepoint) in GC stress mode and runs the
 * scavenge or full collection that is due. */
void gc_stress_tick(iso_isolate *iso);

/* ---- marking (mark.c) ---- */

static inline iso_value gc_mark_slice_entry(gc_page *p, size_t k);
/* Marks v grey if it is an unmarked old object. Any thread. The one place
 * that puts a new grey object on a worklist: a large object goes there as
 * its first slice (gc_mark_slice_entry), so that tracing tells the two
 * apart without reading the page's flags (gc_mark_trace). */
static inline void gc_mark_shade(gc_worklist_local *wl, iso_value v) {
  gc_page *p = gc_page_of(gc_obj(v));
  uint32_t flags = thr_load_relaxed(&p->flags);
  /* Young (or a young page evacuated while marking, flagged free and
   * quarantined: a reference a marker read just before the scavenge
   * updated the slot). Only old objects are marked. */
  if (!(flags & GC_PAGE_OLD)) return;
  size_t i = gc_page_word_index(p, gc_obj(v));
  if (gc_bit_set_atomic(p->markbits, i))
    gc_worklist_push(wl, ISO_UNLIKELY(flags & GC_PAGE_LARGE)
                             ? gc_mark_slice_entry(p, 0)
                             : v);
}
/* A prefetch for writing. x86 compilers emit PREFETCHW only when told the
 * CPU has it, but every x86-64 CPU executes it (as a hint or, on the
 * oldest, as a no-op), so it is written out. */
static inline void gc_prefetch_write(const void *addr) {
#if defined(__x86_64__)
  __asm__ volatile("prefetchw %0" : : "m"(*(const char *)addr));
#else
  __builtin_prefetch(addr, 1);
#endif
}

/* Fetches the page flags and mark-bit word that gc_mark_shade will read
 * for v, the word for writing (its atomic OR would otherwise wait for
 * the line again, to own it). The address is computed, not loaded: a
 * normal page's mark bits are the first of its inline_bits (for a large
 * page the guess is harmless). */
static inline void gc_mark_prefetch(iso_value v) {
  gc_page *p = gc_page_of(gc_obj(v));
  size_t off =
      (size_t)((const char *)gc_obj(v) - (const char *)p) - GC_PAGE_HEADER_SIZE;
  __builtin_prefetch(p);
  /* A word of 64 bits covers 512 bytes. The mask changes nothing on a
   * normal page (its area has GC_BITMAP_WORDS < 512 of them) and keeps a
   * guess for a large page's object within the header's bitmaps. */
  gc_prefetch_write(&p->inline_bits[(off >> 9) & 511]);
}
/* Marks an object black without pushing it (its slots are handled by the
 * caller). */
void gc_mark_set(iso_value v);
bool gc_mark_test(iso_value v);
/* A marker's view while it traces: its worklist and the references read
 * from traced slots that wait to be shaded, their mark-bit words being
 * fetched meanwhile (Note [Two-stage prefetch] in mark.c). */
#define GC_SHADE_AHEAD 32u
typedef struct gc_marker {
  gc_worklist_local *wl;
  iso_value pending[GC_SHADE_AHEAD];
  unsigned head, count;
  size_t refs;       /* references given to gc_mark_shade_later */
  uint64_t epoch;    /* the marking's epoch << 32, for gc_page.scan_mark */
  iso_value next;    /* the slice to trace next (gc_mark_trace), or 0 */
} gc_marker;

/* Shades the referents of grey object o, or of the slice that o names;
 * returns the bytes traced (o's size for an object). Some referents may
 * wait in mk->pending: gc_mark_flush shades them. A long large object's
 * next slice is left in mk->next, for the caller to trace or push. */
static inline size_t gc_mark_trace(const gc_type *types, gc_marker *mk,
                                   iso_value o);
/* Shades every reference waiting in mk. */
void gc_mark_flush(gc_marker *mk);
/* Shades v once its page flags and mark-bit word have had time to arrive:
 * it waits in mk, and the reference GC_SHADE_AHEAD places before it is
 * shaded now. */
static inline void gc_mark_shade_later(gc_marker *mk, iso_value v) {
  mk->refs++;
  gc_mark_prefetch(v);
  if (mk->count == GC_SHADE_AHEAD) {
    gc_mark_shade(mk->wl, mk->pending[mk->head]);
    mk->pending[mk->head] = v;
    mk->head = (mk->head + 1) % GC_SHADE_AHEAD;
    return;
  }
  mk->pending[(mk->head + mk->count++) % GC_SHADE_AHEAD] = v;
}
/* A worklist entry may also name a slice of a long large object: its page
 * (aligned to GC_PAGE_SIZE) with the slice's number k in the bits below,
 * tagged 1 (references are tagged 0). Tracing it traces slots [k*S,
 * (k+1)*S) for S = GC_MARK_SLICE_SLOTS and leaves slice k+1 in the
 * marker's next; the last number that fits traces all the rest. Only the
 * marker holding slice k+1 traces it, so the slices of an object are
 * traced in order, one at a time, and its scan_mark only grows. */
#define GC_MARK_SLICE_SLOTS 1024u
#define GC_MARK_SLICE_MAX ((GC_PAGE_SIZE >> 3) - 1)
static inline iso_value gc_mark_slice_entry(gc_page *p, size_t k) {
  return (iso_value)(uintptr_t)p | (iso_value)(k << 3) | 1;
}
static inline bool gc_mark_is_slice(iso_value e) { return (e & 7) == 1; }

/* Shades the references in slots [from, to). */
static inline void gc_mark_shade_slots(gc_marker *mk, iso_value *from,
                                       iso_value *to) {
  for (iso_value *s = from; s < to; s++) {
    /* Acquire: pairs with the release store of the barrier (isolate.h),
     * so an object published into a slot is seen initialised. */
    iso_value v = thr_load_acquire(s);
    if (iso_is_ref(v)) gc_mark_shade_later(mk, v);
  }
}

/* gc_mark_trace for a slice of a large object. */
size_t gc_mark_trace_slice(const gc_type *types, gc_marker *mk, iso_value e);
/* Inline, as is all it calls on the way, for the object of a normal page:
 * marking runs this once per object, and its calls had cost a sixth of
 * the marker's instructions. A large object arrives as a slice
 * (gc_mark_shade), so this reads the object and never its page header. */
static inline size_t gc_mark_trace(const gc_type *types, gc_marker *mk,
                                   iso_value o) {
  if (ISO_UNLIKELY(gc_mark_is_slice(o)))
    return gc_mark_trace_slice(types, mk, o);
  ISO_DASSERT(!(gc_page_of(gc_obj(o))->flags & GC_PAGE_LARGE));
  /* The owner may be storing an identity hash into the header. */
  uint64_t hdr = thr_load_relaxed(gc_obj(o));
  size_t size = gc_size_from_header(o, hdr);
  iso_value *slots = gc_slots(o);
  gc_mark_shade_slots(mk, slots,
                      slots + gc_slots_from_header(types, hdr, size));
  return size;
}

/* ---- remembered set (barrier.c) ---- */

void gc_rset_record(gc_page *page, iso_value *slot);
/* Takes a page off its owner's list of remembered pages (it is being
 * freed). Owner, or a GC thread holding the parked isolate. */
void gc_rset_unlist(gc_page *page);

/* ---- external memory (collect.c) ---- */

/* After a scavenge: young stores whose buffer died are freed; survivors
 * follow their object (and move to the old list when promoted). */
void gc_externs_after_scavenge(iso_isolate *iso);
/* After a full mark, before sweeping: frees stores of unmarked buffers
 * (with defer, keeps them for gc_externs_free_deferred on the owner). */
void gc_externs_after_mark(iso_isolate *iso, bool defer);

/* ---- concurrent marking (concurrent.c) ---- */

iso_status gc_marking_init(iso_isolate *iso);
/* Keeps GC threads out of the isolate from now on and waits for those
 * working in it. */
void gc_marking_cancel(iso_isolate *iso);
void gc_marking_destroy(iso_isolate *iso);
iso_gc_cycle_state gc_marking_state(iso_isolate *iso); /* any thread */
/* Is a cycle marking (old allocation black, the barrier on)? Owner. */
bool gc_marking_active(const gc_heap *h);
/* Starts a cycle (the join); inside a full GC it reports nothing itself. */
void gc_marking_start(iso_isolate *iso, gc_reason reason);
/* Owner at a safepoint: assists, ends marking, adopts swept pages. */
void gc_marking_poll(iso_isolate *iso);
/* Owner: a bounded marking step; the bytes traced. */
size_t gc_marking_step(iso_isolate *iso, size_t budget);
/* Owner: marks everything left, ends marking, completes the sweep. */
void gc_marking_finish_now(iso_isolate *iso);
/* Owner: completes the sweep of the last cycle, if one is pending. */
void gc_marking_complete_sweep(iso_isolate *iso);
/* The snapshot barrier's slow part: old, the overwritten value, is to be
 * shaded (Note [Barrier buffer] in concurrent.c). Owner. */
void gc_marking_barrier(iso_isolate *iso, iso_value old);
/* Owner: hands the barrier's buffered entries to the markers. */
void gc_marking_flush_barrier(iso_isolate *iso);
/* An evacuated young page, kept from the pool until marking ends. */
void gc_marking_quarantine(iso_isolate *iso, gc_page *p);
/* GC threads (threads/gc_threads.c). */
bool gc_background_wanted(iso_isolate *iso, bool help);
bool gc_background_enter(iso_isolate *iso);
void gc_background_work(iso_isolate *iso, unsigned index, const int *cancel);

/* ---- sweeping (old.c) ---- */

/* Frees unmarked large objects, clears the marks of the others. */
void gc_large_sweep(iso_isolate *iso);
/* Hands every old page to the sweepers (the end of marking). */
void gc_sweep_begin(iso_isolate *iso);
/* GC thread: sweeps unclaimed pages until none is left. */
void gc_sweep_background(iso_isolate *iso, unsigned index);
/* Have all pages been swept (by anyone)? */
bool gc_sweep_all_swept(iso_isolate *iso);
/* Which pages the owner adopts. */
typedef enum gc_adopt_mode {
  GC_ADOPT_SWEPT, /* swept ones only: GC threads sweep the rest */
  GC_ADOPT_SPACE, /* and sweeps unclaimed ones itself, but not those that
                     marking filled (Note [Sweeping for space] in old.c) */
  GC_ADOPT_ANY,   /* and sweeps any unclaimed one itself; passes over
                     pages being swept */
  GC_ADOPT_WAIT,  /* every page, in order, waiting for GC threads */
} gc_adopt_mode;
/* Owner: adopts up to n pages (0: all) as mode allows; true if that
 * completed the cycle (state IDLE, trigger set). Only GC_ADOPT_WAIT waits
 * for GC threads, to finish a page or to leave the cycle; otherwise the
 * cycle stays open until a later call. */
bool gc_sweep_advance(iso_isolate *iso, size_t n, gc_adopt_mode mode);
/* Owner: makes sure p is swept before its remembered set is used. */
void gc_sweep_ensure(gc_page *p);

/* ---- pauses and reports (collect.c) ---- */

typedef enum gc_pause_kind {
  GC_PAUSE_SCAVENGE,
  GC_PAUSE_MARKING,
  GC_PAUSE_FULL,
} gc_pause_kind;
void gc_pause_record(iso_isolate *iso, gc_pause_kind k, double ms);
/* Owner at a safepoint: the cycle's poll, and a new cycle when the old
 * generation passed its trigger. */
void gc_cycle_poll(iso_isolate *iso);
/* Sets the old-space use that starts the next cycle, from the use after
 * the last sweep and the bytes its marking traced. */
void gc_old_update_trigger(gc_heap *h, size_t used, size_t live,
                           size_t marking_alloc);
/* The join: a scavenge that shades old referents into join; returns its
 * pause in ms (0 inside a full collection, whose pause it is part of). */
double gc_scavenge_join(iso_isolate *iso, gc_worklist_local *join);
/* The trace line and epilogue of a completed concurrent cycle. */
void gc_cycle_report(iso_isolate *iso, size_t used_before,
                     size_t total_before, double pause_ms, double bg_mark_ms,
                     double bg_sweep_ms, uint64_t start_ns, gc_reason reason);
/* Frees the stores that a GC thread found dead (owner). */
void gc_externs_free_deferred(iso_isolate *iso);

/* ---- verification (verify.c) ---- */

/* End of marking: every old object reachable from the roots is marked,
 * and no marked object refers to an unmarked old one. */
iso_status gc_verify_marking(iso_isolate *iso);

/* ISO_OK, or ISO_ERR_HEAP_CORRUPT with the first problem in the thread's
 * error message. */
iso_status gc_verify(iso_isolate *iso);

/* ---- statistics (stats.c) ---- */
size_t gc_heap_used(iso_isolate *iso);
size_t gc_heap_total(iso_isolate *iso);
size_t gc_process_rss(void);

#endif /* GC_INTERNAL_H */
