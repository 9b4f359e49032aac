/*
 * The old space of one isolate: its pages of the shared pool, its large
 * objects, its free lists.
 *
 * Invariants:
 * - Every old page is iterable from area_start to area_end: objects and
 *   fillers tile it. Free-list blocks are fillers whose word 1 links the
 *   next block; the linear allocation area (LAB) is made a filler before
 *   anything walks the page (gc_old_retire_lab).
 * - Counting identity, per isolate, after a sweep:
 *     page_count * GC_PAGE_AREA == live bytes + fl.free_bytes + fillers
 *   (fillers too small for a free list, 1 word, are the only loss).
 * - The heap limit counts committed bytes: old pages plus large mappings.
 *   Promotion may cross it (the objects are live already); allocation by
 *   the program may not (gc_old_would_exceed).
 * - A large object has a page of its own, is never moved, and is freed as
 *   a whole mapping when unmarked after a full mark.
 */
#include <string.h>

#include "gc_internal.h"

#define LAB_MIN_WORDS 512 /* prefer free blocks of 4 KiB and more for LABs */

static unsigned bucket_of(size_t words) {
  if (words < GC_FL_EXACT) return (unsigned)words;
  unsigned b = GC_FL_EXACT + (63 - (unsigned)__builtin_clzll(words)) - 6;
  return b < GC_FL_BUCKETS ? b : GC_FL_BUCKETS - 1;
}

static void fl_add(gc_freelist *fl, char *start, size_t bytes) {
  size_t words = bytes / 8;
  if (words == 0) return;
  gc_fill(start, bytes);
  if (words < 2) return; /* a 1-word hole has no room for a link */
  unsigned b = bucket_of(words);
  uint64_t *blk = (uint64_t *)(void *)start;
  blk[1] = (uint64_t)(uintptr_t)fl->heads[b];
  fl->heads[b] = blk;
  fl->nonempty[b / 64] |= 1ull << (b % 64);
  fl->free_bytes += bytes;
}

static void fl_reset(gc_freelist *fl) { memset(fl, 0, sizeof *fl); }

/* A free block of at least words words, unlinked; NULL if none. */
static uint64_t *fl_take(gc_freelist *fl, size_t words) {
  for (unsigned b = bucket_of(words); b < GC_FL_BUCKETS; b++) {
    uint64_t rest = fl->nonempty[b / 64] >> (b % 64);
    if (!rest) {
      b = (b | 63);
      continue;
    }
    b += (unsigned)__builtin_ctzll(rest);
    if (b >= GC_FL_BUCKETS) break;
    uint64_t **pp = &fl->heads[b];
    while (*pp) {
      uint64_t *blk = *pp;
      if (gc_hdr_words(blk[0]) >= words) {
        *pp = (uint64_t *)(uintptr_t)blk[1];
        if (!fl->heads[b]) fl->nonempty[b / 64] &= ~(1ull << (b % 64));
        fl->free_bytes -= gc_hdr_words(blk[0]) * 8;
        return blk;
      }
      pp = (uint64_t **)(void *)&blk[1];
    }
  }
  return NULL;
}

bool gc_old_would_exceed(iso_isolate *iso, size_t bytes) {
  gc_heap *h = &iso->heap;
  if (gc_old_committed(h) + bytes <= h->old.limit) return false;
  if (h->near_limit_cb) {
    size_t n = h->near_limit_cb(h->near_limit_data, h->old.limit,
                                h->old.initial_limit);
    if (n > h->old.limit) h->old.limit = n;
  }
  return gc_old_committed(h) + bytes > h->old.limit;
}

void gc_old_retire_lab(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  if (o->lab_top && o->lab_top < o->lab_limit)
    fl_add(&o->fl, o->lab_top, (size_t)(o->lab_limit - o->lab_top));
  o->lab_top = o->lab_limit = NULL;
}

static bool add_page(iso_isolate *iso, bool check_limit) {
  gc_heap *h = &iso->heap;
  if (check_limit && gc_old_would_exceed(iso, GC_PAGE_SIZE)) return false;
  gc_page *p = gc_pool_take(iso->rt->pool, iso, GC_PAGE_OLD);
  if (!p) return false;
  p->next = h->old.pages;
  h->old.pages = p;
  h->old.page_count++;
  gc_fill(p->area_start, GC_PAGE_AREA);
  gc_old_retire_lab(iso);
  h->old.lab_top = p->area_start;
  h->old.lab_limit = p->area_end;
  if (gc_old_committed(h) > h->old.trigger) h->full_gc_requested = true;
  return true;
}

static bool refill_lab(iso_isolate *iso, size_t bytes, bool check_limit) {
  gc_old *o = &iso->heap.old;
  size_t words = bytes / 8;
  uint64_t *blk = fl_take(&o->fl, words > LAB_MIN_WORDS ? words : LAB_MIN_WORDS);
  if (!blk) blk = fl_take(&o->fl, words);
  if (blk) {
    gc_old_retire_lab(iso);
    o->lab_top = (char *)blk;
    o->lab_limit = (char *)blk + gc_hdr_words(blk[0]) * 8;
    return true;
  }
  return add_page(iso, check_limit);
}

void *gc_old_alloc_raw(iso_isolate *iso, size_t bytes, bool check_limit) {
  gc_old *o = &iso->heap.old;
  if (bytes >= GC_LARGE_OBJECT_SIZE)
    return gc_large_alloc_raw(iso, bytes, check_limit);
  if (!o->lab_top || (size_t)(o->lab_limit - o->lab_top) < bytes) {
    if (!refill_lab(iso, bytes, check_limit)) return NULL;
  }
  char *mem = o->lab_top;
  o->lab_top += bytes;
  iso->heap.allocated_bytes_total += bytes;
  return mem;
}

void *gc_large_alloc_raw(iso_isolate *iso, size_t bytes, bool check_limit) {
  gc_heap *h = &iso->heap;
  size_t mapping = (GC_PAGE_HEADER_SIZE + bytes + 4095) & ~(size_t)4095;
  if (check_limit && gc_old_would_exceed(iso, mapping)) return NULL;
  gc_page *p = gc_large_page_new(iso->rt->pool, iso, bytes);
  if (!p) return NULL;
  p->next = h->old.large;
  h->old.large = p;
  h->old.large_count++;
  h->old.large_bytes += p->mapping_size;
  h->old.large_object_bytes += bytes;
  h->allocated_bytes_total += bytes;
  if (gc_old_committed(h) > h->old.trigger) h->full_gc_requested = true;
  return p->area_start;
}

/* Frees [from, to) of page p: a free-list block (or filler) whose
 * remembered-set bits are cleared. */
static void free_range(gc_freelist *fl, gc_page *p, char *from, char *to) {
  gc_bits_clear_range(p->rsetbits, gc_page_word_index(p, from),
                      gc_page_word_index(p, to));
  fl_add(fl, from, (size_t)(to - from));
}

/* Sweeps one page; returns its live bytes. Only marked objects are
 * visited: the mark bitmap gives their starts, their headers their ends,
 * and every gap between them becomes free space. Dead objects are never
 * read, so sweeping costs the live objects plus the bitmap. A page with
 * nothing live is left untouched for the caller to release. */
static size_t sweep_page(iso_isolate *iso, gc_page *p) {
  gc_freelist *fl = &iso->heap.old.fl;
  char *cursor = p->area_start;
  size_t live = 0;
  for (size_t w = 0; w < GC_BITMAP_WORDS; w++) {
    uint64_t bits = p->markbits[w];
    while (bits) {
      unsigned b = (unsigned)__builtin_ctzll(bits);
      bits &= bits - 1;
      char *obj = p->area_start + (w * 64 + b) * 8;
      size_t bytes = gc_hdr_words(*(uint64_t *)(void *)obj) * 8;
      if (obj > cursor) free_range(fl, p, cursor, obj);
      live += bytes;
      cursor = obj + bytes;
    }
  }
  if (live != 0 && cursor < p->area_end)
    free_range(fl, p, cursor, p->area_end);
  memset(p->markbits, 0, GC_BITMAP_WORDS * sizeof(uint64_t));
  p->live_bytes = live;
  return live;
}

size_t gc_old_sweep(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_old *o = &h->old;
  size_t live = 0;
  o->lab_top = o->lab_limit = NULL; /* already a filler: see collect.c */
  fl_reset(&o->fl);
  gc_page **pp = &o->pages;
  while (*pp) {
    gc_page *p = *pp;
    size_t l = sweep_page(iso, p);
    if (l == 0) {
      /* Nothing live: the page goes back to the pool. Its free-list
       * blocks were not added (sweep_page skips a fully free page). */
      *pp = p->next;
      o->page_count--;
      gc_pool_give(iso->rt->pool, p);
      continue;
    }
    live += l;
    pp = &p->next;
  }
  pp = &o->large;
  while (*pp) {
    gc_page *p = *pp;
    if (!gc_bit_test(p->markbits, 0)) {
      *pp = p->next;
      o->large_count--;
      o->large_bytes -= p->mapping_size;
      o->large_object_bytes -= p->object_size;
      gc_large_page_free(iso->rt->pool, p);
      continue;
    }
    p->markbits[0] = 0;
    live += p->object_size;
    pp = &p->next;
  }
  return live;
}

void gc_old_release_all(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  gc_page *p = o->pages;
  while (p) {
    gc_page *n = p->next;
    gc_pool_give(iso->rt->pool, p);
    p = n;
  }
  p = o->large;
  while (p) {
    gc_page *n = p->next;
    gc_large_page_free(iso->rt->pool, p);
    p = n;
  }
  o->pages = o->large = NULL;
  o->page_count = o->large_count = 0;
  o->large_bytes = o->large_object_bytes = 0;
  o->lab_top = o->lab_limit = NULL;
  fl_reset(&o->fl);
}
