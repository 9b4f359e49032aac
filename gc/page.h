/*
 * Heap pages and the runtime-wide page pool.
 *
 * Invariants:
 * - Every heap object lies in a page aligned to GC_PAGE_SIZE; masking an
 *   object's address finds its page header, whose first word is the flags
 *   word the inline barrier reads (ISO_INL_PAGE_*).
 * - A page belongs to one isolate (owner) from gc_pool_take() to
 *   gc_pool_give(). Only the owner allocates in it, sweeps it, or writes
 *   its bitmaps, except mark bits, which are set with atomic OR.
 * - A large page holds exactly one object, at area_start, and may span
 *   many GC_PAGE_SIZE units; only its first unit has a header, so code masks
 *   object addresses, never interior slot addresses.
 * - Pages in the pool have flags GC_PAGE_FREE and no owner. A stale
 *   reference into a returned page therefore fails the verifier at once.
 */
#ifndef GC_PAGE_H
#define GC_PAGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

#define GC_PAGE_SIZE ISO_INL_PAGE_SIZE
#define GC_PAGE_HEADER_SIZE 8192u
#define GC_PAGE_AREA (GC_PAGE_SIZE - GC_PAGE_HEADER_SIZE)
#define GC_PAGE_AREA_WORDS (GC_PAGE_AREA / 8)
#define GC_BITMAP_WORDS ((GC_PAGE_AREA_WORDS + 63) / 64)
/* The remembered set's summary: one bit per word of rsetbits. */
#define GC_RSET_SUMMARY_WORDS ((GC_BITMAP_WORDS + 63) / 64)
/* Objects of this size and above get a large page of their own. */
#define GC_LARGE_OBJECT_SIZE (128u * 1024u)

enum {
  GC_PAGE_YOUNG = ISO_INL_PAGE_YOUNG,
  GC_PAGE_OLD = ISO_INL_PAGE_OLD,
  GC_PAGE_LARGE = ISO_INL_PAGE_LARGE,
  GC_PAGE_FROM = 8,  /* young page being evacuated by a scavenge */
  GC_PAGE_FREE = 16, /* in the pool */
};

typedef struct gc_page {
  uint32_t flags; /* must stay the first word: the inline barrier reads it */
  uint32_t scratch; /* the verifier's page index, owner thread only */
  struct iso_isolate *owner;
  struct gc_page *next; /* in the owner's list, or the pool's free list */
  char *area_start;
  char *area_end;
  size_t mapping_size; /* GC_PAGE_SIZE, or a large page's whole mapping */
  uint64_t *markbits;  /* one bit per word of the area */
  uint64_t *rsetbits;  /* old-to-young slots, one bit per word */
  /* One bit per word of rsetbits that may be non-zero; owner only. */
  uint64_t *rset_summary;
  size_t live_bytes;   /* old pages: bytes of objects after the last sweep */
  struct gc_page *prev; /* old pages: the owner's list is doubly linked */
  /* Sweeping (gc/old.c): the number of the last sweep that touched the
   * page (runtime-wide numbers, rt->sweep_epoch) and GC_SWEEP_BUSY, _SWEPT
   * or _DONE. In the sweep numbered e, a page with an older number is
   * pending until a thread claims it with a CAS to (e, _BUSY); the
   * claimer writes free_chain and free_bytes, then stores (e, _SWEPT)
   * (release); the owner adopts the chain into its free lists and stores
   * (e, _DONE). The word 0 (a new page, or one the pool decommitted)
   * stands for a number no sweep reaches: never pending. */
  uint64_t sweep_state;
  uint32_t vec_index; /* old pages: place in the owner's old.page_vec */
  uint64_t *free_chain; /* free blocks found by the sweep; word 1 links */
  size_t free_bytes;
  struct gc_page *chain_next; /* adopted, chain not used yet (gc/old.c) */
  size_t object_size;  /* large pages: the object's exact size in bytes */
  /* Large pages: how far marking has scanned the object, as (epoch << 32)
   * | slots: in the owner's marking epoch, slots [0, slots) were read by a
   * marker (Note [Scanned prefix] in barrier.c). Markers store it
   * (release), the owner's barrier loads it (acquire). */
  uint64_t scan_mark;
  /* Listed in the owner's heap.rset_pages at rset_index - 1 (some
   * rsetbits may be set); 0: not listed, no bit set. Owner only. */
  uint32_t rset_index;
  /* normal pages: markbits, rsetbits, then rset_summary */
  uint64_t inline_bits[];
} gc_page;

_Static_assert(sizeof(gc_page) +
                       (2 * GC_BITMAP_WORDS + GC_RSET_SUMMARY_WORDS) * 8 <=
                   GC_PAGE_HEADER_SIZE,
               "page header too small");

/* Sweep states (the low two bits of sweep_state); PENDING is never
 * stored: it is what an older sweep number means. */
enum { GC_SWEEP_DONE = 0, GC_SWEEP_PENDING, GC_SWEEP_BUSY, GC_SWEEP_SWEPT };

static inline gc_page *gc_page_of(const void *addr) {
  return (gc_page *)((uintptr_t)addr & ~(GC_PAGE_SIZE - 1));
}
static inline size_t gc_page_word_index(const gc_page *p, const void *addr) {
  return (size_t)((const char *)addr - p->area_start) / 8;
}
static inline bool gc_bit_test(const uint64_t *bits, size_t i) {
  return (__atomic_load_n(&bits[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}
/* Sets bit i; true if this call set it (it was clear). Atomic, so marker
 * threads can race on it. */
static inline bool gc_bit_set_atomic(uint64_t *bits, size_t i) {
  uint64_t m = 1ull << (i % 64);
  if (__atomic_load_n(&bits[i / 64], __ATOMIC_RELAXED) & m) return false;
  return (__atomic_fetch_or(&bits[i / 64], m, __ATOMIC_RELAXED) & m) == 0;
}
static inline void gc_bit_clear(uint64_t *bits, size_t i) {
  __atomic_fetch_and(&bits[i / 64], ~(1ull << (i % 64)), __ATOMIC_RELAXED);
}
/* Clears bits [from, to). */
void gc_bits_clear_range(uint64_t *bits, size_t from, size_t to);

typedef struct gc_pool gc_pool;

/* huge_pages: map chunks and large objects for transparent huge pages
 * (Note [Huge pages] in page.c). */
gc_pool *gc_pool_new(size_t retain_bytes, bool huge_pages);
void gc_pool_free(gc_pool *pool);
/* A page for owner with the given flags, bitmaps clear; NULL if the OS
 * refuses memory. in_pause: the caller is in a pause, so a fresh page
 * must not fault in a huge page (Note [Huge pages] in page.c). Any
 * thread. */
gc_page *gc_pool_take(gc_pool *pool, struct iso_isolate *owner, uint32_t flags,
                      bool in_pause);
/* Returns a page (debug builds zap it). Any thread. */
void gc_pool_give(gc_pool *pool, gc_page *page);
/* A large page for one object of object_bytes; NULL if the OS refuses. */
gc_page *gc_large_page_new(gc_pool *pool, struct iso_isolate *owner,
                           size_t object_bytes);
void gc_large_page_free(gc_pool *pool, gc_page *page);
/* Bytes mapped by the pool (pages in use and free) and free in it. */
void gc_pool_usage(gc_pool *pool, size_t *mapped, size_t *free_bytes);

#endif /* GC_PAGE_H */
