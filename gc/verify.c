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
 * - outside a collection and a marking cycle no mark bit is set.
 * gc_verify_marking (at the end of marking, below) checks the marks.
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
    if (!gc_bit_test(host->rset_summary, i / 64) || host->rset_index == 0 ||
        host->rset_index > v->iso->heap.rset_count ||
        v->iso->heap.rset_pages[host->rset_index - 1] != host)
      return fail(v, "old object %p holds young %p: its remembered-set bit "
                  "is set but the page is not summarised or not listed",
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
  gc_lab_detach(iso);
  /* Pages that GC threads are sweeping are not walkable: finish first. */
  if (gc_marking_state(iso) == ISO_GC_CYCLE_SWEEPING)
    gc_marking_complete_sweep(iso);
  bool marking = gc_marking_state(iso) != ISO_GC_CYCLE_IDLE;
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
      for (size_t w = 0; w < GC_BITMAP_WORDS && !h->in_gc && !marking; w++)
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

/* ---- the end of marking ---- */

typedef struct mark_checker {
  iso_value *stack; /* young objects to scan */
  size_t n, cap;
  iso_value *seen; /* open addressing set of young objects pushed */
  size_t seen_cap, seen_n;
  iso_status status;
} mark_checker;

static bool seen_add(mark_checker *c, iso_value v) {
  if (c->seen_n * 2 >= c->seen_cap) {
    size_t cap = c->seen_cap ? c->seen_cap * 2 : 4096;
    iso_value *n = calloc(cap, sizeof *n);
    if (!n) return false;
    for (size_t i = 0; i < c->seen_cap; i++) {
      iso_value x = c->seen[i];
      if (!x) continue;
      size_t j = (size_t)(x >> 3) * 0x9e3779b97f4a7c15ull & (cap - 1);
      while (n[j]) j = (j + 1) & (cap - 1);
      n[j] = x;
    }
    free(c->seen);
    c->seen = n;
    c->seen_cap = cap;
  }
  size_t j = (size_t)(v >> 3) * 0x9e3779b97f4a7c15ull & (c->seen_cap - 1);
  while (c->seen[j]) {
    if (c->seen[j] == v) return false;
    j = (j + 1) & (c->seen_cap - 1);
  }
  c->seen[j] = v;
  c->seen_n++;
  return true;
}

/* A reference found in a root, a reachable young object, or a marked old
 * object: an old referent must be marked; a young one is scanned. */
static void mark_check_ref(mark_checker *c, const void *where, iso_value v) {
  if (!iso_is_ref(v) || c->status != ISO_OK) return;
  gc_page *p = gc_page_of(gc_obj(v));
  if (p->flags & GC_PAGE_OLD) {
    if (!gc_mark_test(v))
      c->status = isolate_fail(ISO_ERR_HEAP_CORRUPT,
                               "end of marking: reachable old object %p "
                               "(referred to from %p) is not marked",
                               (void *)(uintptr_t)v, where);
    return;
  }
  if (!(p->flags & GC_PAGE_YOUNG) || !seen_add(c, v)) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 1024;
    iso_value *n = realloc(c->stack, cap * sizeof *n);
    if (!n) return;
    c->stack = n;
    c->cap = cap;
  }
  c->stack[c->n++] = v;
}

static void mark_check_slots(mark_checker *c, const gc_type *types,
                             iso_value o) {
  uint64_t hdr = gc_header(o);
  size_t n = gc_slots_from_header(types, hdr, gc_size_from_header(o, hdr));
  iso_value *slots = gc_slots(o);
  for (size_t i = 0; i < n && c->status == ISO_OK; i++)
    mark_check_ref(c, (void *)(uintptr_t)o, thr_load_relaxed(&slots[i]));
}

static void mark_root(iso_isolate *iso, iso_value *slot, void *ctx) {
  (void)iso;
  mark_check_ref(ctx, slot, *slot);
}

iso_status gc_verify_marking(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  const gc_type *types = iso->rt->types;
  mark_checker c = {0};
  c.status = ISO_OK;
  gc_make_iterable(iso);
  /* Marked old objects refer only to marked old objects. (Their young
   * referents are reachable: they are scanned below.) */
  for (gc_page *p = h->old.pages; p && c.status == ISO_OK; p = p->next)
    for (size_t w = 0; w < GC_BITMAP_WORDS; w++) {
      uint64_t bits = p->markbits[w];
      while (bits && c.status == ISO_OK) {
        unsigned b = (unsigned)__builtin_ctzll(bits);
        bits &= bits - 1;
        mark_check_slots(&c, types,
                         (iso_value)(uintptr_t)(p->area_start + (w * 64 + b) * 8));
      }
    }
  for (gc_page *p = h->old.large; p && c.status == ISO_OK; p = p->next)
    if (gc_bit_test(p->markbits, 0))
      mark_check_slots(&c, types, (iso_value)(uintptr_t)p->area_start);
  /* The roots, and the young objects they reach. */
  isolate_visit_roots(iso, mark_root, &c);
  while (c.n && c.status == ISO_OK) mark_check_slots(&c, types, c.stack[--c.n]);
  free(c.stack);
  free(c.seen);
  return c.status;
}
