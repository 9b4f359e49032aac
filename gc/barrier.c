/*
 * The write barrier.
 *
 * Invariant (generational): after every reference store, an old or large
 * object that holds a young reference has that slot's bit set in its
 * page's rsetbits. The scavenger treats exactly those slots as roots
 * besides handles and globals (see young.c), so a young object reachable
 * only from the old space survives.
 *
 * The inline fast check in isolate.h (iso_inl_store) falls through to
 * iso_inl_barrier_slow when an old host receives a young reference, or
 * when inl.barrier_flags is non-zero. Full collections in this version mark
 * while the isolate is stopped (Note [Full collection] in collect.c), so no
 * marking barrier is on and barrier_flags stays 0; the flag word is where
 * the snapshot-at-the-beginning barrier of concurrent marking will hook in,
 * without changing the inline code that programs have compiled.
 *
 * Stores into young hosts need nothing: the scavenger reaches every young
 * object it keeps from a root, the remembered set, or another survivor.
 */
#include "gc_internal.h"

void gc_rset_record(gc_page *page, iso_value *slot) {
  size_t i = gc_page_word_index(page, slot);
  uint64_t m = 1ull << (i % 64);
  if (!(thr_load_relaxed(&page->rsetbits[i / 64]) & m))
    thr_fetch_or_relaxed(&page->rsetbits[i / 64], m);
  page->has_rset = true;
}

void iso_inl_barrier_slow(iso_isolate *iso, iso_value host, iso_value *slot,
                          iso_value old, iso_value v) {
  (void)old;
  gc_page *hp = gc_page_of(gc_obj(host));
  if (iso_is_ref(v) && !(hp->flags & GC_PAGE_YOUNG) &&
      (gc_page_of(gc_obj(v))->flags & GC_PAGE_YOUNG)) {
    if (!(iso->heap.debug_flags & ISO_DEBUG_SKIP_REMEMBERED_SET))
      gc_rset_record(hp, slot);
  }
}
