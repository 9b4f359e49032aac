/*
 * The page pool: aligned pages for every isolate of a runtime.
 *
 * Normal pages are carved from chunks of GC_CHUNK_PAGES pages reserved with
 * one mmap each (so a multi-gigabyte heap is a few hundred mappings, not
 * thousands). Free pages wait in a list; past retain_bytes of free pages,
 * a returned page's memory goes back to the OS with MADV_DONTNEED (its
 * address range stays reserved and is reused later). Large pages are a
 * mapping each, unmapped when their object dies.
 *
 * The pool is shared by the isolates of a runtime: its lists are guarded
 * by one mutex, taken once per 256 KiB page, so it is never hot.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "isolate_internal.h"

#define GC_CHUNK_PAGES 64
/* The size of a transparent huge page on x86-64 (and of most arm64
 * kernels; elsewhere the advice is merely less effective). */
#define HUGE_PAGE ((size_t)2 << 20)

/* Note [Committed pages first]
 * Past retain_bytes of committed free pages, a page given back to the
 * pool is given back to the OS too (MADV_DONTNEED), and faults in again,
 * 64 faults of 4 KiB, when it is next taken. Both kinds of free page
 * used to share one list, most recently given first, so the page given
 * back to the OS a moment ago was the first taken again while up to
 * retain_bytes of committed pages waited below it: binary-trees, whose
 * young generations grow and shrink all the time, gave 1,124 pages back
 * to the OS on one isolate and faulted 105,500 pages a run (on two
 * isolates each give-back also interrupts the other core to flush its
 * TLB). Committed pages now have a list of their own and are always
 * taken first, so a page is faulted in again only when no committed one
 * waits: 815 pages given back and 85,000 faults (the rest is its peak
 * footprint, touched once). The memory kept is bounded as before. */

/* Note [Huge pages]
 * With iso_runtime_params.huge_pages on, chunks are mapped 2 MiB-aligned
 * and advised MADV_HUGEPAGE, as are large objects of 2 MiB and more, so
 * that the kernel can back the heap with transparent huge pages. Marking
 * a big heap is bound by address translation: every grey object and
 * every referent's mark-bit word lie anywhere in the heap, and with
 * 4 KiB pages nearly each is a TLB miss whose page walk the marker's
 * prefetch must wait for (two-dimensional under a hypervisor). On the
 * project's virtual machine a full collection of old_churn's 1.3 GB heap
 * was 20 to 30% shorter with huge pages, and the program 14% faster.
 *   It is off by default because of where the faults land: a huge page is
 * zeroed whole when first touched, and the first touch of a chunk's next
 * 2 MiB may come in the middle of the program's work: on that machine
 * one such fault took about 0.25 ms when the kernel had huge pages at
 * hand and 3 to 7 ms when it did not. Pauses are kept out of it: a page
 * taken in a pause (a scavenge's to-space or promotion) is carved from a
 * chunk of its own without the advice, whose small pages fault 4 KiB at
 * a time (before this, old_churn's heap growing to 1.3 GB in its first
 * seconds put 3 to 4 ms scavenges into its pause figures). A server
 * whose heap reaches its size once and then runs for hours pays that once;
 * a latency target measured from a cold start does not. (Faulting chunks
 * in ahead on the GC threads was measured too: the time went from
 * marking, cycles ran long and the heap grew past its target.) Pages
 * given back to the OS split their huge page; nothing else changes. */

typedef struct gc_chunk {
  struct gc_chunk *next;
  char *base;
  size_t used_pages;
} gc_chunk;

struct gc_pool {
  pthread_mutex_t lock;
  gc_chunk *chunks;       /* every chunk, for gc_pool_free */
  gc_chunk *carving;      /* the chunk new pages come from */
  gc_chunk *carving_huge; /* the same, outside pauses, with huge pages */
  /* Free pages, in two lists (Note [Committed pages first]): those whose
   * memory is still committed, and those given back to the OS. */
  gc_page *free_pages;
  gc_page *free_decommitted;
  size_t free_count;     /* on both lists */
  size_t committed_free; /* on free_pages */
  size_t retain_pages;
  size_t mapped_bytes;    /* chunks and large pages */
  bool huge_pages;        /* Note [Huge pages] */
};

void gc_bits_clear_range(uint64_t *bits, size_t from, size_t to) {
  if (from >= to) return;
  size_t first = from / 64, last = (to - 1) / 64;
  for (size_t w = first; w <= last; w++) {
    uint64_t m = ~0ull;
    if (w == first) m &= ~0ull << (from % 64);
    if (w == last) m &= ~0ull >> (63 - (to - 1) % 64);
    /* Mostly there is nothing to clear (the sweeper clears the remembered
     * set of every dead gap): a load, not a locked operation per word. */
    if (__atomic_load_n(&bits[w], __ATOMIC_RELAXED) & m)
      __atomic_fetch_and(&bits[w], ~m, __ATOMIC_RELAXED);
  }
}

/* A mapping of size bytes (a multiple of the OS page size), aligned to
 * GC_PAGE_SIZE; with huge, aligned to HUGE_PAGE and advised huge pages
 * (Note [Huge pages]). */
static char *map_aligned(size_t size, bool huge) {
  size_t align = huge ? HUGE_PAGE : GC_PAGE_SIZE;
  size_t total = size + align;
  char *raw = mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
  size_t head = start - (uintptr_t)raw;
  size_t tail = total - head - size;
  if (head) munmap(raw, head);
  if (tail) munmap((char *)start + size, tail);
  /* Advice only: a kernel without transparent huge pages refuses it and
   * nothing changes. */
  if (huge) (void)madvise((char *)start, size, MADV_HUGEPAGE);
  return (char *)start;
}

gc_pool *gc_pool_new(size_t retain_bytes, bool huge_pages) {
  gc_pool *pool = calloc(1, sizeof *pool);
  if (!pool) return NULL;
  pthread_mutex_init(&pool->lock, NULL);
  pool->retain_pages = retain_bytes / GC_PAGE_SIZE;
  pool->huge_pages = huge_pages;
  return pool;
}

void gc_pool_free(gc_pool *pool) {
  gc_chunk *c = pool->chunks;
  while (c) {
    gc_chunk *n = c->next;
    munmap(c->base, (size_t)GC_CHUNK_PAGES * GC_PAGE_SIZE);
    free(c);
    c = n;
  }
  pthread_mutex_destroy(&pool->lock);
  free(pool);
}

static void page_init(gc_page *p, iso_isolate *owner, uint32_t flags,
                      size_t mapping) {
  p->owner = owner;
  p->next = p->prev = NULL;
  thr_store_relaxed(&p->sweep_state, (uint64_t)0); /* never pending */
  p->free_chain = NULL;
  p->free_bytes = 0;
  p->area_start = (char *)p + GC_PAGE_HEADER_SIZE;
  p->area_end = (char *)p + (mapping < GC_PAGE_SIZE ? mapping : GC_PAGE_SIZE);
  p->mapping_size = mapping;
  p->live_bytes = 0;
  p->rset_index = 0;
  p->scratch = 0;
  thr_store_relaxed(&p->scan_mark, (uint64_t)0); /* no epoch is 0 */
  /* Release: a marker thread that masks an address of this page and reads
   * the flags sees the fields above. */
  thr_store_release(&p->flags, flags);
}

gc_page *gc_pool_take(gc_pool *pool, iso_isolate *owner, uint32_t flags,
                      bool in_pause) {
  gc_page *p = NULL;
  pthread_mutex_lock(&pool->lock);
  if (pool->free_pages) {
    p = pool->free_pages;
    pool->free_pages = p->next;
    pool->free_count--;
    pool->committed_free--;
  } else if (pool->free_decommitted) {
    p = pool->free_decommitted;
    pool->free_decommitted = p->next;
    pool->free_count--;
  } else {
    /* Note [Huge pages]: a pause carves from a chunk of small pages. */
    bool huge = pool->huge_pages && !in_pause;
    gc_chunk **carving = huge ? &pool->carving_huge : &pool->carving;
    gc_chunk *c = *carving;
    if (!c || c->used_pages == GC_CHUNK_PAGES) {
      c = malloc(sizeof *c);
      char *base =
          c ? map_aligned((size_t)GC_CHUNK_PAGES * GC_PAGE_SIZE, huge) : NULL;
      if (!base) {
        free(c);
        pthread_mutex_unlock(&pool->lock);
        return NULL;
      }
      c->base = base;
      c->used_pages = 0;
      c->next = pool->chunks;
      pool->chunks = c;
      *carving = c;
      pool->mapped_bytes += (size_t)GC_CHUNK_PAGES * GC_PAGE_SIZE;
    }
    p = (gc_page *)(c->base + c->used_pages++ * GC_PAGE_SIZE);
  }
  pthread_mutex_unlock(&pool->lock);
  p->markbits = p->inline_bits;
  p->rsetbits = p->inline_bits + GC_BITMAP_WORDS;
  p->rset_summary = p->inline_bits + 2 * GC_BITMAP_WORDS;
  memset(p->inline_bits, 0,
         (2 * GC_BITMAP_WORDS + GC_RSET_SUMMARY_WORDS) * sizeof(uint64_t));
  page_init(p, owner, flags, GC_PAGE_SIZE);
  return p;
}

void gc_pool_give(gc_pool *pool, gc_page *p) {
  thr_store_release(&p->flags, (uint32_t)GC_PAGE_FREE);
  p->owner = NULL;
#if ISO_DEBUG_CHECKS >= 1
  /* Zap: a stale reference into this page now reads a header whose type
   * is not registered, and fails fast. */
  memset(p->area_start, 0xdb, GC_PAGE_AREA);
#endif
  pthread_mutex_lock(&pool->lock);
  if (pool->committed_free >= pool->retain_pages) {
    madvise(p, GC_PAGE_SIZE, MADV_DONTNEED);
    /* DONTNEED zeroed the header too (sweep_state 0: never pending, as a
     * GC thread holding a stale sweep-list entry must find it); restore
     * what the list needs. */
    p->flags = GC_PAGE_FREE;
    p->next = pool->free_decommitted;
    pool->free_decommitted = p;
  } else {
    pool->committed_free++;
    p->next = pool->free_pages;
    pool->free_pages = p;
  }
  pool->free_count++;
  pthread_mutex_unlock(&pool->lock);
}

gc_page *gc_large_page_new(gc_pool *pool, iso_isolate *owner,
                           size_t object_bytes) {
  size_t mapping = (GC_PAGE_HEADER_SIZE + object_bytes + 4095) & ~(size_t)4095;
  size_t words = object_bytes / 8;
  uint64_t *mark = calloc(1, sizeof(uint64_t));
  size_t rset_words = (words + 63) / 64;
  uint64_t *rset = calloc(rset_words, sizeof(uint64_t));
  uint64_t *summary = calloc((rset_words + 63) / 64, sizeof(uint64_t));
  char *base =
      mark && rset && summary
          ? map_aligned(mapping, pool->huge_pages && mapping >= HUGE_PAGE)
          : NULL;
  if (!base) {
    free(mark);
    free(rset);
    free(summary);
    return NULL;
  }
  gc_page *p = (gc_page *)base;
  p->markbits = mark;
  p->rsetbits = rset;
  p->rset_summary = summary;
  page_init(p, owner, GC_PAGE_OLD | GC_PAGE_LARGE, mapping);
  p->area_end = base + mapping;
  p->object_size = object_bytes;
  pthread_mutex_lock(&pool->lock);
  pool->mapped_bytes += mapping;
  pthread_mutex_unlock(&pool->lock);
  return p;
}

void gc_large_page_free(gc_pool *pool, gc_page *p) {
  size_t mapping = p->mapping_size;
  free(p->markbits);
  free(p->rsetbits);
  free(p->rset_summary);
  munmap(p, mapping);
  pthread_mutex_lock(&pool->lock);
  pool->mapped_bytes -= mapping;
  pthread_mutex_unlock(&pool->lock);
}

void gc_pool_usage(gc_pool *pool, size_t *mapped, size_t *free_bytes) {
  pthread_mutex_lock(&pool->lock);
  if (mapped) *mapped = pool->mapped_bytes;
  if (free_bytes) *free_bytes = pool->free_count * GC_PAGE_SIZE;
  pthread_mutex_unlock(&pool->lock);
}
