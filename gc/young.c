/*
 * The young generation: bump allocation and a Cheney scavenger.
 *
 * Invariants:
 * - The young generation is a list of pages flagged GC_PAGE_YOUNG, all
 *   owned by this isolate; no other isolate ever points into them (there
 *   are no cross-isolate references), so a scavenge pauses only this
 *   isolate.
 * - The allocation area is [inl.alloc_top, inl.alloc_limit) in the last
 *   page. Every page before it is iterable up to area_end: the tail of a
 *   page is filled with a filler object when allocation moves on.
 * - Roots of a scavenge: handles, globals and the remembered set (the
 *   old-to-young slots recorded by the barrier, one bit per slot in each
 *   old page's rsetbits). After it, a remembered-set bit is set exactly
 *   for the old slots that still hold a young reference.
 * - An object that survives a scavenge is copied to a fresh page with its
 *   age bit set; an object that already has it is promoted into the old
 *   space. Promotion never fails for the heap limit (the object is live
 *   already); if the OS refuses an old page it stays young instead.
 * - Debug builds (ISO_DEBUG_CHECKS >= 1) zap the evacuated pages, so a
 *   stale raw value fails at its next use.
 *
 * Note [Pretenuring]
 * A program whose new objects nearly all live (a cache or a table being
 * filled, a record replaced in a big live set) gains nothing from a young
 * generation: every scavenge copies all it allocated, and the pause grows
 * with the semispace. So the isolate as a whole is measured, as V8
 * measures an allocation site: a scavenge that keeps at least PRETENURE_SURVIVAL_PERCENT of
 * what it found (and found at least PRETENURE_MIN_USED) makes the next
 * scavenge promote everything; if that one keeps as much too, the young
 * generation is empty and stays so: new objects are allocated straight
 * in the old space (black while marking), through the slow path, whose
 * inline area is hidden (limit_hidden).
 *   Why it needs an empty young generation: objects are initialised
 * without the barrier (record_new's fast path, the clone reader), so a
 * pretenured object holding a young reference would be missing from the
 * remembered set. With no young object anywhere, no such reference can
 * exist. Scavenges while pretenuring (a cycle's join, iso_gc) find the
 * young generation empty and cost only the roots.
 *   Programs change phase, so pretenuring is a bet that is checked: after
 * probe_every pretenured bytes the isolate allocates PROBE_BYTES young
 * (the probe), whose scavenge promotes everything and measures survival. High:
 * pretenuring resumes and the next probe comes twice as late (up to
 * PROBE_EVERY_MAX). Low: the young generation is back, at the size it had.
 * The safepoint work of the slow path (stress, the cycle's assists and
 * end, external pressure, the heap limit, starting a cycle) runs once per
 * PRETENURE_POLL_BYTES, as it runs once per young page otherwise.
 *
 * Note [The inline old LAB]
 * While the isolate pretenures, the inline area [inl.alloc_top,
 * inl.alloc_limit) is the old space's linear allocation area (LAB), so
 * the inline paths (iso_record_new_v, gc_alloc, the clone reader) bump-
 * allocate old objects without a call; the slow path runs once per LAB,
 * not once per object. The young area's top waits in saved_top, and the
 * old space's lab_top/lab_limit are NULL meanwhile (the LAB is lent out).
 *   Two things the per-object path did are owed when the LAB comes back
 * (gc_lab_detach): the bytes are counted as old allocation, and, while
 * the cycle marks, the objects are marked black (gc_old_lab_used; one
 * atomic OR per bitmap word). Until then a marker may find such an object
 * white through a slot and mark and trace it: harmless, the object is
 * complete (it was published by a release store) and black allocation is
 * only an optimisation of what such tracing would conclude.
 *   So that no one sees a half-counted LAB or an unwalkable page, every
 * owner-thread entry that needs the old space's own view detaches first:
 * the slow path, old allocation (promotion, the clone reader), the start
 * of every collection and of marking, safepoints, parking, heap walks and
 * verification, and any change of the area (gc_young_limit_changed). The
 * end of marking detaches too when it runs on the owner; on a GC thread,
 * the isolate is parked (and detached when it parked). Attaching
 * happens only at the end of a pretenured slow-path
 * allocation, under the same conditions as pretenuring itself, and never
 * inside a collection.
 */
#include <stdlib.h>
#include <string.h>

#include "gc_internal.h"

#define PRETENURE_SURVIVAL_PERCENT 80
#define PRETENURE_MIN_USED ((size_t)32 << 10)
#define PROBE_BYTES ((size_t)64 << 10)
#define PRETENURE_POLL_BYTES ((size_t)GC_PAGE_AREA)
#define PROBE_EVERY_MIN ((size_t)4 << 20)
#define PROBE_EVERY_MAX ((size_t)64 << 20)

typedef struct scavenger {
  iso_isolate *iso;
  const gc_type *types;
  gc_worklist_local *join; /* full GC: shade old referents here */
  iso_value *promoted;     /* promoted objects not yet scanned */
  size_t npromoted, cap;
  size_t survived_bytes, promoted_bytes;
  size_t aged_bytes; /* promoted because they had survived a scavenge */
  bool promote_all; /* fast promotion: survivors skip the to-space */
} scavenger;

void gc_young_init(iso_isolate *iso, size_t max_young) {
  gc_young *y = &iso->heap.young;
  size_t max_pages = max_young / 2 / GC_PAGE_SIZE;
  if (max_pages < 1) max_pages = 1;
  y->max_pages = max_pages;
  y->min_pages = max_pages < 4 ? max_pages : 4;
  /* Starting small keeps the first scavenges short when everything
   * survives (pretenuring then takes over); resize() grows it at once
   * when few survive. */
  y->capacity_pages = 1;
  y->pages = y->last = NULL;
  y->page_count = 0;
  iso->inl.alloc_top = iso->inl.alloc_limit = NULL;
  y->real_limit = NULL;
}

static void give_list(iso_isolate *iso, gc_page *p) {
  while (p) {
    gc_page *n = p->next;
    gc_pool_give(iso->rt->pool, p);
    p = n;
  }
}

void gc_young_release_all(iso_isolate *iso) {
  gc_young *y = &iso->heap.young;
  give_list(iso, y->pages);
  give_list(iso, y->spare);
  y->spare = NULL;
  y->spare_count = 0;
  y->pages = y->last = NULL;
  y->page_count = 0;
  iso->inl.alloc_top = iso->inl.alloc_limit = NULL;
}

/* The end of the allocation area. It is hidden from the inline paths
 * (inl.alloc_limit pulled down to alloc_top, so every allocation takes the
 * slow path) in stress mode and while the old generation is over its
 * limit; real_limit always holds the true end. */
static char *area_limit(iso_isolate *iso) { return iso->heap.young.real_limit; }

static bool limit_hidden(iso_isolate *iso) {
  return iso->heap.stress_scavenge_every || iso->heap.over_limit ||
         iso->heap.external_pressure || iso->heap.young.pretenure;
}

/* Keeps inl.alloc_top <= inl.alloc_limit: the inline check computes
 * limit - top unsigned, so a top past the limit would allocate forever. */
static void set_area(iso_isolate *iso, char *top, char *limit) {
  ISO_DASSERT(!iso->heap.young.lab_inline);
  iso->inl.alloc_top = top;
  iso->heap.young.real_limit = limit;
  iso->inl.alloc_limit = limit_hidden(iso) ? top : limit;
}

void gc_young_limit_changed(iso_isolate *iso) {
  gc_lab_detach(iso);
  set_area(iso, iso->inl.alloc_top, iso->heap.young.real_limit);
}

/* Appends a fresh page and makes it the allocation area. */
static bool add_page(iso_isolate *iso) {
  gc_young *y = &iso->heap.young;
  gc_page *p = y->spare;
  if (p) {
    /* A spare is still committed and cache-warm: no page fault. */
    y->spare = p->next;
    y->spare_count--;
    p->next = NULL;
    thr_store_release(&p->flags, (uint32_t)GC_PAGE_YOUNG);
  } else {
    p = gc_pool_take(iso->rt->pool, iso, GC_PAGE_YOUNG, iso->heap.in_gc);
    if (!p) return false;
  }
  if (y->last) {
    gc_fill(iso->inl.alloc_top, (size_t)(y->last->area_end - iso->inl.alloc_top));
    y->last->next = p;
  } else {
    y->pages = p;
  }
  y->last = p;
  y->page_count++;
  set_area(iso, p->area_start, p->area_end);
  return true;
}

size_t gc_young_used(iso_isolate *iso) {
  gc_young *y = &iso->heap.young;
  if (!y->last) return 0;
  char *top = y->lab_inline ? y->saved_top : iso->inl.alloc_top;
  return (y->page_count - 1) * GC_PAGE_AREA +
         (size_t)(top - y->last->area_start);
}

/* ---- Note [The inline old LAB] ---- */

void gc_lab_detach(iso_isolate *iso) {
  gc_young *y = &iso->heap.young;
  if (ISO_LIKELY(!y->lab_inline)) return;
  gc_old *o = &iso->heap.old;
  char *top = iso->inl.alloc_top;
  o->lab_top = top;
  o->lab_limit = iso->inl.alloc_limit;
  y->lab_inline = false;
  size_t used = (size_t)(top - o->lab_start);
  y->pretenured_bytes += used;
  y->pretenured_total += used;
  gc_old_lab_used(iso, o->lab_start, top);
  gc_old_black_flush(iso);
  o->lab_start = NULL;
  set_area(iso, y->saved_top, y->real_limit);
  y->saved_top = NULL;
}

/* Lends the old LAB to the inline paths, if pretenuring allows it now;
 * an empty one too, so that the next allocation takes the next hole
 * (Note [The next hole]) rather than the general slow path. */
static void lab_attach(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_young *y = &h->young;
  gc_old *o = &h->old;
  if (y->lab_inline || !y->pretenure || h->in_gc || h->stress_scavenge_every ||
      h->over_limit || h->external_pressure || isolate_terminating(iso) ||
      !o->lab_top)
    return;
  ISO_DASSERT(gc_young_used(iso) == 0);
  y->saved_top = iso->inl.alloc_top;
  iso->inl.alloc_top = o->lab_top;
  iso->inl.alloc_limit = o->lab_limit;
  o->lab_start = o->lab_top;
  o->lab_top = o->lab_limit = NULL;
  y->lab_inline = true;
}

/* ---- the scavenge ---- */

static void *copy_space(scavenger *s, size_t bytes) {
  iso_isolate *iso = s->iso;
  for (;;) {
    char *top = iso->inl.alloc_top;
    if (top && (size_t)(area_limit(iso) - top) >= bytes) {
      set_area(iso, top + bytes, area_limit(iso));
      return top;
    }
    /* The OS refusing memory in the middle of a scavenge leaves nothing
     * sensible to do: live objects would be lost. */
    ISO_ASSERT(add_page(iso));
  }
}

static void push_promoted(scavenger *s, iso_value v) {
  if (s->npromoted == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    iso_value *n = realloc(s->promoted, cap * sizeof *n);
    ISO_ASSERT(n != NULL);
    s->promoted = n;
    s->cap = cap;
  }
  s->promoted[s->npromoted++] = v;
}

/* Most objects are a few words: a word loop beats a call to memcpy. */
static inline void copy_words(void *dst, const void *src, size_t bytes) {
  if (bytes <= 64) {
    uint64_t *d = dst;
    const uint64_t *q = src;
    for (size_t i = 0; i < bytes / 8; i++) d[i] = q[i];
  } else {
    memcpy(dst, src, bytes);
  }
}

/* Evacuates the from-space object v (or finds its copy); returns the new
 * reference. */
static iso_value evacuate(scavenger *s, iso_value v) {
  uint64_t *o = gc_obj(v);
  uint64_t hdr = *o;
  if (gc_hdr_is_forward(hdr)) return (iso_value)hdr;
  size_t bytes = gc_size_from_header(v, hdr);
  void *dst = NULL;
  bool promote = (hdr & GC_HDR_AGE) != 0 || s->promote_all;
  if (promote) dst = gc_old_alloc_raw(s->iso, bytes, false);
  if (dst) {
    copy_words(dst, o, bytes);
    *(uint64_t *)dst = hdr & ~GC_HDR_AGE;
    s->promoted_bytes += bytes;
    if (hdr & GC_HDR_AGE) s->aged_bytes += bytes;
    push_promoted(s, (iso_value)(uintptr_t)dst);
  } else {
    dst = copy_space(s, bytes);
    copy_words(dst, o, bytes);
    *(uint64_t *)dst = hdr | GC_HDR_AGE;
    s->survived_bytes += bytes;
  }
  *o = (uint64_t)(uintptr_t)dst; /* forwarding pointer */
  return (iso_value)(uintptr_t)dst;
}

/* Updates one slot; returns true if it now holds a young reference. */
static inline bool scavenge_slot(scavenger *s, iso_value *slot) {
  iso_value v = *slot;
  if (!iso_is_ref(v)) return false;
  uint32_t flags = gc_page_of(gc_obj(v))->flags;
  if (flags & GC_PAGE_FROM) {
    *slot = evacuate(s, v);
    return (gc_page_of(gc_obj(*slot))->flags & GC_PAGE_YOUNG) != 0;
  }
  if (flags & GC_PAGE_YOUNG) return true;
  if (s->join) gc_mark_shade(s->join, v);
  return false;
}

/* The same for a slot of an old object, which a GC thread may be reading
 * while it marks: the update is an atomic store (release, as the barrier's,
 * since a promoted object may be what it publishes). */
static inline bool scavenge_old_slot(scavenger *s, iso_value *slot) {
  iso_value v = *slot;
  if (!iso_is_ref(v)) return false;
  uint32_t flags = gc_page_of(gc_obj(v))->flags;
  if (flags & GC_PAGE_FROM) {
    iso_value n = evacuate(s, v);
    thr_store_release(slot, n);
    return (gc_page_of(gc_obj(n))->flags & GC_PAGE_YOUNG) != 0;
  }
  if (flags & GC_PAGE_YOUNG) return true;
  if (s->join) gc_mark_shade(s->join, v);
  return false;
}

static void root_visitor(iso_isolate *iso, iso_value *slot, void *ctx) {
  (void)iso;
  scavenge_slot(ctx, slot);
}

/* Visits the remembered set of one listed old or large page, through its
 * summary; returns whether any slot still holds a young reference. */
static bool scavenge_rset(scavenger *s, gc_page *p) {
  /* Dead objects' bits are cleared by the sweep: finish it first. */
  if (!(p->flags & GC_PAGE_LARGE)) gc_sweep_ensure(p);
  size_t words = (p->flags & GC_PAGE_LARGE) ? (p->object_size + 63 * 8) / (64 * 8)
                                            : GC_BITMAP_WORDS;
  size_t summary_words = (words + 63) / 64;
  bool any = false;
  for (size_t sw = 0; sw < summary_words; sw++) {
    uint64_t sbits = p->rset_summary[sw], skeep = sbits;
    while (sbits) {
      unsigned sb = (unsigned)__builtin_ctzll(sbits);
      sbits &= sbits - 1;
      size_t w = sw * 64 + sb;
      uint64_t bits = p->rsetbits[w], keep = bits;
      while (bits) {
        unsigned b = (unsigned)__builtin_ctzll(bits);
        bits &= bits - 1;
        iso_value *slot =
            (iso_value *)(void *)(p->area_start + (w * 64 + b) * 8);
        if (!scavenge_old_slot(s, slot)) keep &= ~(1ull << b);
      }
      p->rsetbits[w] = keep;
      if (!keep) skeep &= ~(1ull << sb);
    }
    p->rset_summary[sw] = skeep;
    any |= skeep != 0;
  }
  return any;
}

/* Every remembered page. Nothing is recorded meanwhile (promoted objects
 * are scanned later, by process()), so the walk goes down the list and a
 * page left with no young reference is replaced by the last one, which
 * was visited already. */
static void scavenge_rsets(scavenger *s) {
  gc_heap *h = &s->iso->heap;
  for (size_t i = h->rset_count; i-- > 0;) {
    gc_page *p = h->rset_pages[i];
    if (!scavenge_rset(s, p)) gc_rset_unlist(p);
  }
}

static void scan_object(scavenger *s, iso_value o, bool old_host) {
  uint64_t hdr = *gc_obj(o);
  size_t n = gc_slots_from_header(s->types, hdr, gc_size_from_header(o, hdr));
  iso_value *slots = gc_slots(o);
  gc_page *host = old_host ? gc_page_of(gc_obj(o)) : NULL;
  if (!host) {
    for (size_t i = 0; i < n; i++) scavenge_slot(s, &slots[i]);
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (scavenge_old_slot(s, &slots[i])) gc_rset_record(host, &slots[i]);
}

/* Fetches the from-space objects that o's slots refer to: o is next in
 * the scan, so by the time it is scanned they are (closer to) in cache.
 * Evacuation is otherwise bound by the miss on each object's header. */
static inline void prefetch_targets(scavenger *s, iso_value o) {
  uint64_t hdr = *gc_obj(o);
  size_t n = gc_slots_from_header(s->types, hdr, gc_size_from_header(o, hdr));
  iso_value *slots = gc_slots(o);
  if (n > 4) n = 4;
  for (size_t i = 0; i < n; i++)
    if (iso_is_ref(slots[i])) __builtin_prefetch(gc_obj(slots[i]));
}

/* Cheney's scan over the new young pages, interleaved with the stack of
 * promoted objects, until both are exhausted. */
static void process(scavenger *s, gc_page *scan_page, char *scan) {
  gc_young *y = &s->iso->heap.young;
  for (;;) {
    bool progress = false;
    while (scan_page) {
      char *end = scan_page == y->last ? s->iso->inl.alloc_top
                                       : scan_page->area_end;
      if (scan < end) {
        iso_value o = (iso_value)(uintptr_t)scan;
        scan += gc_size_from_header(o, *gc_obj(o));
        if (scan < end) prefetch_targets(s, (iso_value)(uintptr_t)scan);
        scan_object(s, o, false);
        progress = true;
        continue;
      }
      if (scan_page == y->last) break;
      scan_page = scan_page->next;
      scan = scan_page->area_start;
    }
    while (s->npromoted) {
      if (s->npromoted > 1) prefetch_targets(s, s->promoted[s->npromoted - 2]);
      scan_object(s, s->promoted[--s->npromoted], true);
      progress = true;
    }
    if (!progress) break;
  }
}

/* survived counts what the scavenge kept, copied or promoted, of the
 * used bytes it found. Many
 * survivors: a bigger semispace gives objects more time to die before they
 * are copied, and promotes less. Few, for a while: a smaller one stays in
 * cache. Growing is immediate, shrinking waits for eight quiet scavenges in
 * a row, so a program that alternates phases keeps the larger size. */
static void resize(iso_isolate *iso, size_t used, size_t survived) {
  gc_young *y = &iso->heap.young;
  size_t cap = y->capacity_pages * GC_PAGE_AREA;
  /* Nearly all of it kept: a bigger semispace would only make the pause
   * longer (Note [Pretenuring] takes over instead). */
  bool most = used >= PRETENURE_MIN_USED &&
              survived * 100 >= used * PRETENURE_SURVIVAL_PERCENT;
  if (!most && y->capacity_pages < y->min_pages) {
    y->capacity_pages = y->min_pages; /* the start was small for this */
    y->quiet_scavenges = 0;
  } else if (survived > cap / 16 && !most && y->capacity_pages < y->max_pages) {
    y->capacity_pages *= 2;
    if (y->capacity_pages > y->max_pages) y->capacity_pages = y->max_pages;
    y->quiet_scavenges = 0;
  } else if (survived < cap / 64 && y->capacity_pages > y->min_pages) {
    if (++y->quiet_scavenges >= 8) {
      y->capacity_pages /= 2;
      if (y->capacity_pages < y->min_pages) y->capacity_pages = y->min_pages;
      y->quiet_scavenges = 0;
    }
  } else {
    y->quiet_scavenges = 0;
  }
}

/* Note [Pretenuring]: after a scavenge that found used bytes. */
static void start_pretenuring(gc_young *y) {
  y->pretenure = true;
  y->promote_all = false;
  y->high_survival = 0;
  y->pretenured_bytes = 0;
  y->pretenure_poll_at = PRETENURE_POLL_BYTES;
  if (y->probe_every == 0) y->probe_every = PROBE_EVERY_MIN;
}

static void pretenure_policy(gc_heap *h, size_t used, const scavenger *s) {
  gc_young *y = &h->young;
  if (h->flags & ISO_ISOLATE_NO_PRETENURING) return;
  if (y->pretenure || used < PRETENURE_MIN_USED) return; /* no news */
  size_t kept = s->survived_bytes + s->promoted_bytes;
  bool high = kept * 100 >= used * PRETENURE_SURVIVAL_PERCENT;
  /* An object that stayed young (the OS refused an old page) could be
   * referenced by a pretenured one without the barrier's knowledge. */
  bool empty = s->survived_bytes == 0;
  if (y->probing) {
    y->probing = false;
    y->capacity_pages = y->saved_capacity;
    if (high && empty) {
      start_pretenuring(y);
      y->probe_every = y->probe_every * 2 < PROBE_EVERY_MAX
                           ? y->probe_every * 2
                           : PROBE_EVERY_MAX;
    } else {
      y->probe_every = PROBE_EVERY_MIN;
      y->high_survival = 0;
    }
    return;
  }
  if (!high) {
    y->high_survival = 0;
    return;
  }
  if (y->high_survival && s->promote_all && empty) {
    start_pretenuring(y);
    return;
  }
  y->high_survival = 1;
  y->promote_all = true;
}

/* The probe: PROBE_BYTES of young allocation, whose scavenge promotes
 * all it keeps (and pauses for as short as that takes). */
static void start_probe(iso_isolate *iso) {
  gc_young *y = &iso->heap.young;
  y->pretenure = false;
  y->probing = true;
  y->promote_all = true;
  y->pretenured_bytes = 0;
  y->saved_capacity = y->capacity_pages;
  y->capacity_pages = y->page_count ? y->page_count : 1;
  char *top = iso->inl.alloc_top, *limit = y->real_limit;
  if (top && (size_t)(limit - top) > PROBE_BYTES) limit = top + PROBE_BYTES;
  set_area(iso, top, limit);
}

void gc_scavenge_work(iso_isolate *iso, gc_worklist_local *join) {
  gc_heap *h = &iso->heap;
  gc_young *y = &h->young;
  scavenger s = {0};
  s.iso = iso;
  s.types = iso->rt->types;
  s.join = join;
  s.promote_all = y->promote_all;

  size_t used = gc_young_used(iso);
  /* Flip: every current young page becomes from-space. */
  if (y->last)
    gc_fill(iso->inl.alloc_top, (size_t)(area_limit(iso) - iso->inl.alloc_top));
  gc_page *from = y->pages;
  for (gc_page *p = from; p; p = p->next)
    thr_fetch_or_relaxed(&p->flags, (uint32_t)GC_PAGE_FROM);
  y->pages = y->last = NULL;
  y->page_count = 0;
  set_area(iso, NULL, NULL);
  ISO_ASSERT(add_page(iso));
  gc_page *scan_page = y->pages;
  char *scan = scan_page->area_start;

  isolate_visit_roots(iso, root_visitor, &s);
  scavenge_rsets(&s);
  process(&s, scan_page, scan);

  gc_externs_after_scavenge(iso);
  bool probing = y->probing;
  if (!probing) resize(iso, used, s.survived_bytes + s.promoted_bytes);
  /* Fast promotion: when the semispace cannot grow and a quarter of it
   * survived a second scavenge, what survives next time is almost surely
   * long-lived (a structure bigger than the young generation being
   * built); copying it twice would only double the work. It lasts while a
   * quarter survives. Entering it on one scavenge's survivors promoted
   * structures that were only being built when the scavenge came and died
   * soon after: binary-trees on two isolates promoted 226 MB of such
   * trees (one isolate, whose scavenges happened to fall between its
   * trees, 1 MB). */
  size_t quarter = y->capacity_pages * GC_PAGE_AREA / 4;
  y->promote_all = y->capacity_pages == y->max_pages &&
                   (y->promote_all
                        ? s.survived_bytes + s.promoted_bytes > quarter
                        : s.aged_bytes > quarter);
  if (probing && used < PRETENURE_MIN_USED) y->promote_all = true;
  pretenure_policy(h, used, &s);
  /* Evacuated pages become spares, up to the semispace size: the
   * allocation area takes them before the pool (add_page), and so does the
   * next scavenge's to-space. The rest go back to the pool. A spare is
   * flagged free, so a stale reference into it still fails verification.
   * Fast promotion keeps them too: its to-space stays nearly empty, but
   * the program allocates the whole semispace again before the next
   * scavenge, and pages given back to the OS here would each cost 64 page
   * faults a moment later. Only a pretenuring isolate, whose allocation
   * area is in the old space, needs no more than a few. */
  size_t keep = y->pretenure ? 4 : y->capacity_pages;
  while (from) {
    gc_page *n = from->next;
    if (y->spare_count < keep) {
      thr_store_release(&from->flags, (uint32_t)GC_PAGE_FREE);
#if ISO_DEBUG_CHECKS >= 1
      memset(from->area_start, 0xdb, GC_PAGE_AREA);
#endif
      from->next = y->spare;
      y->spare = from;
      y->spare_count++;
    } else if (gc_marking_active(h)) {
      gc_marking_quarantine(iso, from);
    } else {
      gc_pool_give(iso->rt->pool, from);
    }
    from = n;
  }
  free(s.promoted);
  y->survived_bytes = s.survived_bytes;
  h->promoted_bytes_total += s.promoted_bytes;
  gc_young_limit_changed(iso);
}

/* ---- allocation slow path ---- */

void gc_stress_tick(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  h->stress_count++;
  if (h->stress_full_every && h->stress_count % h->stress_full_every == 0)
    gc_full(iso, GC_REASON_STRESS);
  else if (h->stress_count % h->stress_scavenge_every == 0)
    gc_scavenge(iso, GC_REASON_STRESS);
}

/* The program exhausted its heap: fail the call, and a worker stops with
 * the out-of-memory exit code (Note [Termination] in threads/wake.c). */
static void *out_of_memory(iso_isolate *iso, size_t bytes) {
  gc_heap *h = &iso->heap;
  iso_runtime *rt = iso->rt;
  if (gc_old_committed(h) + bytes <= h->old.limit &&
      gc_runtime_over_limit(rt, bytes)) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                 "runtime heap limit reached allocating %zu bytes: the "
                 "runtime's isolates hold %zu bytes of old space of its "
                 "%zu-byte max_heap_size, %zu of them this one's after a "
                 "full GC",
                 bytes, (size_t)thr_load_relaxed(&rt->old_committed),
                 rt->heap_limit, gc_old_committed(h));
  } else {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                 "heap limit reached allocating %zu bytes: the old "
                 "generation holds %zu bytes of a %zu-byte limit after a "
                 "full GC",
                 bytes, gc_old_committed(h), h->old.limit);
  }
  if (iso->worker) isolate_request_terminate(iso, ISO_EXIT_OUT_OF_MEMORY);
  return NULL;
}

void *gc_old_alloc_collecting(iso_isolate *iso, size_t bytes) {
  gc_heap *h = &iso->heap;
  void *mem = gc_old_alloc_raw(iso, bytes, true);
  if (!mem && !h->in_gc) {
    gc_full(iso, GC_REASON_LIMIT);
    mem = gc_old_alloc_raw(iso, bytes, true);
  }
  return mem ? mem : out_of_memory(iso, bytes);
}

/* Note [Pretenuring]: the old-space allocation of the slow path. */
static void *pretenure_alloc(iso_isolate *iso, size_t bytes) {
  void *mem = gc_old_alloc_collecting(iso, bytes);
  if (mem) {
    iso->heap.young.pretenured_bytes += bytes;
    iso->heap.young.pretenured_total += bytes;
    lab_attach(iso);
  }
  return mem;
}

/* Note [The next hole]
 * Once the old space is a field of small holes (old_churn's are one dead
 * record and its array each), the inline LAB is one hole and runs out at
 * every object or two. The general slow path then detached the LAB,
 * asked whether pretenuring still held, allocated the object alone
 * (marking it black on its own), and lent the rest of the hole out
 * again: about a hundred instructions and two calls deep for each hole.
 * Between two safepoints of pretenuring nothing of that changes, so this
 * does the same in one step: it counts (and, while marking, makes black)
 * what the inline paths used of the LAB, gives the rest back to the free
 * lists, and lends out the next free block with the new object at its
 * start, which the next detach counts with the rest. Anything else
 * (a safepoint due, stress, pressure, the limit, termination, no free
 * block at hand) takes the general path. */
static void *lab_next(iso_isolate *iso, size_t bytes) {
  gc_heap *h = &iso->heap;
  gc_young *y = &h->young;
  gc_old *o = &h->old;
  if (!y->lab_inline) return NULL;
  char *top = iso->inl.alloc_top, *limit = iso->inl.alloc_limit;
  size_t used = (size_t)(top - o->lab_start);
  if (y->pretenured_bytes + used + bytes >= y->pretenure_poll_at || h->in_gc ||
      h->stress_scavenge_every || h->over_limit || h->external_pressure ||
      isolate_terminating(iso) || bytes >= GC_LARGE_OBJECT_SIZE)
    return NULL;
  uint64_t *blk = gc_old_take_block(iso, bytes);
  if (!blk) return NULL;
  y->pretenured_bytes += used;
  y->pretenured_total += used;
  gc_old_lab_used(iso, o->lab_start, top);
  if (top < limit) gc_old_give_block(iso, top, (size_t)(limit - top));
  char *mem = (char *)blk;
  o->lab_start = mem;
  iso->inl.alloc_top = mem + bytes;
  iso->inl.alloc_limit = mem + gc_hdr_words(blk[0]) * 8;
  return mem;
}

void *gc_pretenure_try(iso_isolate *iso, size_t bytes) {
  gc_heap *h = &iso->heap;
  gc_young *y = &h->young;
  void *next = lab_next(iso, bytes);
  if (next) return next;
  gc_lab_detach(iso); /* counts what the inline paths allocated */
  /* Note [Pretenuring]: between safepoints, straight to the old space. */
  if (!y->pretenure || y->pretenured_bytes >= y->pretenure_poll_at ||
      bytes >= GC_LARGE_OBJECT_SIZE || h->stress_scavenge_every ||
      h->over_limit || h->external_pressure || isolate_terminating(iso))
    return NULL;
  ISO_DASSERT(gc_young_used(iso) == 0); /* what makes it barrier-free */
  void *mem = gc_old_alloc_raw(iso, bytes, true);
  if (ISO_LIKELY(mem != NULL)) {
    y->pretenured_bytes += bytes;
    y->pretenured_total += bytes;
    lab_attach(iso);
  }
  return mem;
}

void *gc_alloc_young_slow(iso_isolate *iso, size_t bytes) {
  gc_heap *h = &iso->heap;
  void *next = lab_next(iso, bytes);
  if (next) return next;
  gc_lab_detach(iso);
  if (isolate_terminating(iso)) {
    isolate_terminated_error(iso);
    return NULL;
  }
  if (bytes >= GC_LARGE_OBJECT_SIZE) {
    void *mem = gc_large_alloc_raw(iso, bytes, true);
    if (!mem && !h->in_gc) {
      gc_full(iso, GC_REASON_LIMIT);
      mem = gc_large_alloc_raw(iso, bytes, true);
    }
    return mem ? mem : out_of_memory(iso, bytes);
  }
  gc_young *y = &h->young;
  void *fast = gc_pretenure_try(iso, bytes);
  if (fast) return fast;
  isolate_stamp_active(iso);
  if (h->stress_scavenge_every && !h->in_gc) gc_stress_tick(iso);
  /* A safepoint: the concurrent cycle's assists, its end, its sweep. */
  if (!h->in_gc && gc_marking_state(iso) != ISO_GC_CYCLE_IDLE)
    gc_marking_poll(iso);
  if (h->external_pressure && !h->in_gc) {
    /* Most buffers die young: a scavenge frees their stores. If external
     * memory is still well above what the last collection left, the
     * stores belong to old buffers, and only a full collection can tell
     * which of those died. */
    size_t before = h->external_after_gc;
    gc_scavenge(iso, GC_REASON_EXTERNAL);
    if (h->external_bytes > before + GC_EXTERNAL_STEP)
      gc_full(iso, GC_REASON_EXTERNAL);
  }
  if (h->over_limit && !h->in_gc) {
    /* A scavenge (any: stress, iso_gc, this path) promoted past the limit.
     * Collect fully; if the old generation is still over, this call fails
     * and the next allocation tries again. */
    gc_full(iso, GC_REASON_LIMIT);
    if (h->over_limit) {
      if (gc_old_would_exceed(iso, 0)) return out_of_memory(iso, bytes);
      h->over_limit = false; /* the near-heap-limit callback raised it */
      gc_young_limit_changed(iso);
    }
  }
  if (y->pretenure && !h->in_gc) {
    y->pretenure_poll_at = y->pretenured_bytes + PRETENURE_POLL_BYTES;
    gc_cycle_poll(iso);
    if (y->pretenure && y->pretenured_bytes >= y->probe_every)
      start_probe(iso);
  }
  bool collected = false;
  for (;;) {
    /* Checked on every turn: the scavenge below may start pretenuring,
     * and then no young object may be made. */
    if (y->pretenure) return pretenure_alloc(iso, bytes);
    char *top = iso->inl.alloc_top;
    if (top && (size_t)(area_limit(iso) - top) >= bytes) {
      set_area(iso, top + bytes, area_limit(iso));
      return top;
    }
    if (h->young.page_count < h->young.capacity_pages || collected ||
        h->in_gc) {
      if (!add_page(iso)) {
        isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                     "the system refused memory for a young page");
        return NULL;
      }
      continue;
    }
    gc_scavenge(iso, GC_REASON_ALLOCATION_FAILURE);
    collected = true;
    if (h->over_limit) {
      gc_full(iso, GC_REASON_LIMIT);
    } else {
      gc_cycle_poll(iso); /* may start marking: a join scavenge */
    }
    if (h->over_limit) {
      if (gc_old_would_exceed(iso, 0)) return out_of_memory(iso, bytes);
      h->over_limit = false;
      gc_young_limit_changed(iso);
    }
  }
}
