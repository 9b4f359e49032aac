/*
 * The write barrier.
 *
 * Invariant (generational): after every reference store, an old or large
 * object that holds a young reference has that slot's bit set in its
 * page's rsetbits. The scavenger treats exactly those slots as roots
 * besides handles and globals (see young.c), so a young object reachable
 * only from the old space survives.
 *
 * Invariant (snapshot at the beginning, while an isolate's cycle marks;
 * Note [One cycle per isolate] in concurrent.c): every old object that was
 * reachable when the cycle's join began is marked by the end of marking.
 * It holds because
 *   - the join shaded every old object referred to by a root or by a young
 *     object (the whole young generation, after a scavenge, is what the
 *     roots reach);
 *   - a store that overwrites a reference in an old object first has the
 *     overwritten value shaded (below): a path from the snapshot can only
 *     be cut by such a store, so every snapshot object stays reachable from
 *     a grey object, a ring entry, or an object already marked;
 *   - objects created after the join are not in the snapshot and need no
 *     marking to survive: old-space allocation and promotion are black
 *     (old.c), and young objects are kept by scavenges.
 * Stores into young objects need no marking barrier: the join scanned the
 * young generation, and whatever a young object refers to later was
 * reachable (so in the snapshot, or new) when it was stored.
 * In tri-colour terms this is the weak invariant: a white snapshot object
 * referred to by a black object is also reachable from a grey one.
 *
 * The inline fast check in isolate.h (iso_inl_store) falls through to
 * iso_inl_barrier_slow when an old host receives a young reference, and
 * to iso_inl_store_marking when inl.barrier_flags is non-zero
 * (GC_BARRIER_MARKING while marking) and the host is large or the slot
 * holds a reference (an overwritten immediate has nothing to shade, so
 * the inline check reads a small host's slot and stores plainly when it
 * holds none); that function stores and then shades the
 * overwritten value: the owner cannot reach a safepoint, where marking
 * may end, between the store and the shading. The overwritten value is
 * read only while marking, and not in a large object's scanned prefix
 * (Note [Scanned prefix] below): otherwise the store is a plain store,
 * which does not wait for a cache miss on the slot (a random store into
 * a big array costs a miss otherwise).
 *
 * Stores into young hosts need nothing: the scavenger reaches every young
 * object it keeps from a root, the remembered set, or another survivor.
 */
#include <stdlib.h>

#include "gc_internal.h"

static void rset_list(gc_page *page) {
  gc_heap *h = &page->owner->heap;
  if (h->rset_count == h->rset_cap) {
    size_t cap = h->rset_cap ? h->rset_cap * 2 : 64;
    gc_page **n = realloc(h->rset_pages, cap * sizeof *n);
    /* A slot left unrecorded would be a dangling reference later. */
    ISO_ASSERT(n != NULL);
    h->rset_pages = n;
    h->rset_cap = cap;
  }
  h->rset_pages[h->rset_count++] = page;
  page->rset_index = (uint32_t)h->rset_count;
}

void gc_rset_record(gc_page *page, iso_value *slot) {
  size_t i = gc_page_word_index(page, slot);
  uint64_t m = 1ull << (i % 64);
  if (!(thr_load_relaxed(&page->rsetbits[i / 64]) & m))
    thr_fetch_or_relaxed(&page->rsetbits[i / 64], m);
  size_t w = i / 64;
  page->rset_summary[w / 64] |= 1ull << (w % 64);
  if (!page->rset_index) rset_list(page);
}

void gc_rset_unlist(gc_page *page) {
  if (!page->rset_index) return;
  gc_heap *h = &page->owner->heap;
  size_t i = page->rset_index - 1;
  gc_page *last = h->rset_pages[--h->rset_count];
  h->rset_pages[i] = last;
  last->rset_index = (uint32_t)(i + 1);
  page->rset_index = 0;
}

static inline void barrier(iso_isolate *iso, gc_page *hp, iso_value *slot,
                           iso_value old, iso_value v) {
  if (hp->flags & GC_PAGE_YOUNG) return;
  if (iso_is_ref(v) && (gc_page_of(gc_obj(v))->flags & GC_PAGE_YOUNG)) {
    if (!(iso->heap.debug_flags & ISO_DEBUG_SKIP_REMEMBERED_SET))
      gc_rset_record(hp, slot);
  }
  if ((iso->inl.barrier_flags & GC_BARRIER_MARKING) && iso_is_ref(old))
    gc_marking_barrier(iso, old);
}

void iso_inl_barrier_slow(iso_isolate *iso, iso_value host, iso_value *slot,
                          iso_value old, iso_value v) {
  barrier(iso, gc_page_of(gc_obj(host)), slot, old, v);
}

/* Note [Scanned prefix]
 * Only a store into an object that a marker has not scanned yet can cut
 * a path from the snapshot: once a marker has read every slot of an
 * object this cycle, what they held then is shaded (or waits in that
 * marker's pending queue, which is flushed before marking can end), and
 * what was stored before that had its overwritten value shaded by this
 * barrier. A later value is new (black) or was reachable when it was
 * stored, so in the snapshot and kept by another path. The barrier may
 * then leave the overwritten value alone, and need not read it: the read
 * is the cache miss of a random store into a big array, which stalls the
 * program where a store alone would not.
 *   Markers record it for large objects only, whose slots they trace in
 * slices in order: gc_page.scan_mark says how many leading slots were
 * read in which marking (mark.c, trace_slice). A marker stores it with
 * release after its loads of the slots, and the barrier loads it with
 * acquire before its store, so a skipped slot was read before it was
 * overwritten. The epoch is the owner's marking number, so an older
 * scan says nothing; a large page is new (scan_mark 0) when allocated.
 *   The slices of a long large object are traced one after another, not
 * depth first (drain in concurrent.c), while the published worklist holds
 * fewer than slice_first_segments segments (a sixteenth of the old space
 * in use): old_churn's 4,000,000-element array is then scanned in the
 * first part of a marking, and its stores skip the read for the rest. */
void iso_inl_store_marking(iso_isolate *iso, iso_value host, iso_value *slot,
                           iso_value v) {
  gc_page *hp = gc_page_of(gc_obj(host));
  iso_value old = ISO_UNDEFINED;
  uint64_t sm = (hp->flags & GC_PAGE_LARGE) ? thr_load_acquire(&hp->scan_mark)
                                            : 0;
  if ((uint32_t)(sm >> 32) != iso->heap.marking.epoch ||
      (size_t)(slot - gc_slots(host)) >= (uint32_t)sm)
    old = thr_load_relaxed(slot);
  thr_store_release(slot, v);
  barrier(iso, hp, slot, old, v);
}
