/*
 * The heap verifier (STYLE 8: the expensive tier). Runs after every
 * collection in debug builds (ISO_DEBUG_CHECKS >= 2), with
 * ISO_VERIFY_HEAP=1, or on demand (iso_heap_verify).
 *
 * It checks, for every page of the isolate:
 * - the page is owned by this isolate and flagged as its space says;
 * - objects and fillers tile the page: each header has the tag bit, a
 *   registered type and a size that stays inside the page;
 * - every slot of every object, and every root, holds an immediate, a
 *   small integer, or a reference to the start of a non-filler object in a
 *   live page of this isolate (never from-space, a pooled page, or
 *   another isolate's page);
 * - every old-to-young slot has its remembered-set bit;
 * - the allocation area lies inside the last young page;
 * - outside a collection no mark bit is set.
 * It walks the whole heap, garbage included: dead objects must be as
 * consistent as live ones, since the sweeper and the scavenger read them.
 */
#include <stdlib.h>
#include <string.h>

#include "gc_internal.h"

typedef struct verifier {
  iso_isolate *iso;
  uint32_t type_count;
  gc_page **pages;
  uint64_t **starts; /* per normal page: object-start bits */
  size_t npages;
  iso_status status;
} verifier;

static bool fail(verifier *v, const char *fmt, const void *a, const void *b) {
  if (v->status == ISO_OK)
    v->status = isolate_fail(ISO_ERR_HEAP_CORRUPT, fmt, a, b);
  return false;
}

static bool add_page(verifier *v, gc_page *p) {
  gc_page **np = realloc(v->pages, (v->npages + 1) * sizeof *np);
  uint64_t **ns = realloc(v->starts, (v->npages + 1) * sizeof *ns);
  if (np) v->pages = np;
  if (ns) v->starts = ns;
  if (!np || !ns) return false;
  v->pages[v->npages] = p;
  v->starts[v->npages] = NULL;
  if (!(p->flags & GC_PAGE_LARGE)) {
    v->starts[v->npages] = calloc(GC_BITMAP_WORDS, sizeof(uint64_t));
    if (!v->starts[v->npages]) return false;
  }
  p->scratch = (uint32_t)v->npages++;
  return true;
}

static bool known_page(verifier *v, gc_page *p) {
  return p->owner == v->iso && p->scratch < v->npages &&
         v->pages[p->scratch] == p;
}

/* Pass 1: headers tile the range; record object starts. */
static void tile(verifier *v, gc_page *p, char *from, char *to) {
  uint64_t *starts = v->starts[p->scratch];
  while (from < to && v->status == ISO_OK) {
    uint64_t h = *(uint64_t *)(void *)from;
    size_t bytes = gc_hdr_words(h) * 8;
    uint32_t ty = gc_hdr_type(h);
    if (!(h & GC_HDR_TAG) || ty == 0 || ty >= v->type_count ||
        !v->iso->rt->types[ty].name || bytes == 0 ||
        bytes > (size_t)(to - from)) {
      fail(v, "bad object header at %p (header %p)", from, (void *)h);
      return;
    }
    size_t i = gc_page_word_index(p, from);
    starts[i / 64] |= 1ull << (i % 64);
    from += bytes;
  }
}

static bool check_value(verifier *v, const void *where, iso_value x,
                        bool old_host, gc_page *host, const iso_value *slot) {
  if (!iso_is_ref(x)) {
    if (iso_is_smi(x) || x == ISO_UNDEFINED || x == ISO_NULL ||
        x == ISO_TRUE || x == ISO_FALSE)
      return true;
    return fail(v, "slot in %p holds a word that is no value (%p)", where,
                (void *)x);
  }
  gc_page *p = gc_page_of(gc_obj(x));
  if (!known_page(v, p) ||
      (p->flags & (GC_PAGE_FROM | GC_PAGE_FREE)))
    return fail(v, "slot in %p points to %p, outside this isolate's live "
                "pages (a stale or foreign reference)",
                where, (void *)x);
  if (p->flags & GC_PAGE_LARGE) {
    if ((char *)gc_obj(x) != p->area_start)
      return fail(v, "slot in %p points into the middle of large object %p",
                  where, p->area_start);
  } else {
    size_t i = gc_page_word_index(p, gc_obj(x));
    if (!(v->starts[p->scratch][i / 64] & (1ull << (i % 64))))
      return fail(v, "slot in %p points to %p, which is not an object start",
                  where, (void *)x);
  }
  if (gc_type_id(x) == GC_TYPE_FILLER)
    return fail(v, "slot in %p points to free space at %p", where, (void *)x);
  if (old_host && (p->flags & GC_PAGE_YOUNG)) {
    size_t i = gc_page_word_index(host, slot);
    if (!gc_bit_test(host->rsetbits, i))
      return fail(v, "old object %p holds young %p without a remembered-set "
                  "entry",
                  where, (void *)x);
  }
  return true;
}

static void check_object(verifier *v, iso_value o, gc_page *p) {
  uint64_t h = gc_header(o);
  if (gc_hdr_type(h) == GC_TYPE_FILLER) return;
  size_t n = gc_slots_from_header(v->iso->rt->types, h,
                                  gc_size_from_header(o, h));
  bool old = !(p->flags & GC_PAGE_YOUNG);
  for (size_t i = 0; i < n && v->status == ISO_OK; i++)
    check_value(v, gc_obj(o), gc_slots(o)[i], old, p, gc_slots(o) + i);
}

static void check_range(verifier *v, gc_page *p, char *from, char *to) {
  while (from < to && v->status == ISO_OK) {
    iso_value o = (iso_value)(uintptr_t)from;
    check_object(v, o, p);
    from += gc_hdr_words(*gc_obj(o)) * 8;
  }
}

static void root_check(iso_isolate *iso, iso_value *slot, void *ctx) {
  (void)iso;
  verifier *v = ctx;
  if (v->status == ISO_OK) check_value(v, slot, *slot, false, NULL, slot);
}

static char *young_end(iso_isolate *iso, gc_page *p) {
  return p == iso->heap.young.last ? iso->inl.alloc_top : p->area_end;
}

iso_status gc_verify(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  verifier v = {iso, thr_load_acquire(&iso->rt->type_count), NULL, NULL, 0,
                ISO_OK};
  bool ok = true;
  gc_make_iterable(iso);
  /* The allocation area lies in the last young page, top <= limit. */
  gc_page *last = h->young.last;
  if (iso->inl.alloc_top > iso->inl.alloc_limit ||
      (last && (iso->inl.alloc_top < last->area_start ||
                iso->inl.alloc_top > last->area_end ||
                iso->inl.alloc_limit > last->area_end)))
    fail(&v, "allocation area [%p, %p) is not inside the last young page",
         iso->inl.alloc_top, iso->inl.alloc_limit);
  for (gc_page *p = h->young.pages; p && ok; p = p->next) {
    if (p->owner != iso || (p->flags & ~GC_PAGE_YOUNG) ||
        !(p->flags & GC_PAGE_YOUNG))
      fail(&v, "young page %p has owner %p or bad flags", p, p->owner);
    ok = add_page(&v, p);
  }
  for (gc_page *p = h->old.pages; p && ok; p = p->next) {
    if (p->owner != iso || p->flags != GC_PAGE_OLD)
      fail(&v, "old page %p has owner %p or bad flags", p, p->owner);
    ok = add_page(&v, p);
  }
  for (gc_page *p = h->old.large; p && ok; p = p->next) {
    if (p->owner != iso || p->flags != (GC_PAGE_OLD | GC_PAGE_LARGE))
      fail(&v, "large page %p has owner %p or bad flags", p, p->owner);
    ok = add_page(&v, p);
  }
  if (!ok && v.status == ISO_OK)
    v.status = isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                            "iso_heap_verify: out of memory");
  /* Pass 1: tiling and object starts. */
  for (size_t i = 0; i < v.npages && v.status == ISO_OK; i++) {
    gc_page *p = v.pages[i];
    if (p->flags & GC_PAGE_LARGE) {
      uint64_t hd = *(uint64_t *)(void *)p->area_start;
      size_t words = gc_hdr_words(hd);
      if (!(hd & GC_HDR_TAG) || gc_hdr_type(hd) >= v.type_count ||
          (words && words * 8 != p->object_size))
        fail(&v, "large object %p has a bad header (%p)", p->area_start,
             (void *)hd);
    } else if (p->flags & GC_PAGE_YOUNG) {
      tile(&v, p, p->area_start, young_end(iso, p));
    } else {
      tile(&v, p, p->area_start, p->area_end);
      for (size_t w = 0; w < GC_BITMAP_WORDS && !h->in_gc; w++)
        if (p->markbits[w]) {
          fail(&v, "old page %p has mark bits set outside a collection "
               "(word at %p)", p, &p->markbits[w]);
          break;
        }
    }
  }
  /* Pass 2: every slot and root. */
  for (size_t i = 0; i < v.npages && v.status == ISO_OK; i++) {
    gc_page *p = v.pages[i];
    if (p->flags & GC_PAGE_LARGE) {
      check_object(&v, (iso_value)(uintptr_t)p->area_start, p);
    } else {
      check_range(&v, p, p->area_start,
                  (p->flags & GC_PAGE_YOUNG) ? young_end(iso, p) : p->area_end);
    }
  }
  if (v.status == ISO_OK) isolate_visit_roots(iso, root_check, &v);
  for (size_t i = 0; i < v.npages; i++) free(v.starts[i]);
  free(v.pages);
  free(v.starts);
  return v.status;
}

iso_status iso_heap_verify(iso_isolate *iso) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  return gc_verify(iso);
}
