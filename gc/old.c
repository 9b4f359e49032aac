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
 *   a whole mapping when unmarked at the end of marking.
 * - While the isolate's cycle marks, every object allocated here (by the
 *   program or by promotion) is allocated black: its mark bit is set.
 * - Sweeping (concurrent.c has the cycle): at the end of marking every old
 *   page goes on the sweep list, pending because the sweep gets a new
 *   number (page.h), and the free lists and chains start empty. Any
 *   thread may claim a pending page (CAS to _BUSY), sweep it into a chain
 *   of free blocks local to the page, and publish it as _SWEPT; only the
 *   owner adopts a swept page (its chain becomes free space: Note
 *   [Allocating in address order]; an empty page goes back to the pool)
 *   and marks it _DONE. Pages
 *   that the owner allocates in during sweeping are new or adopted, so no
 *   thread ever sweeps a page the owner allocates in, and the owner
 *   touches a page being swept only through its live objects, which the
 *   sweeper only reads.
 */
#include <sched.h>
#include <stdlib.h>
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

/* Note [Allocating in address order]
 * A swept page's free blocks are chained in address order (sweep_page).
 * Adopting the page does not walk the chain: the page joins
 * old.chain_pages, and LABs are cut from its blocks one after another
 * (chain_take), each block's successor prefetched for writing when the
 * block is taken. A block too small for the request at hand goes to the
 * size-class free lists, which serve once the chains are used up and
 * before the next page is adopted. So every free block is read once, when
 * it is about to be written anyway, in the order of memory. Before, the
 * owner walked each chain when it adopted the page (a cache miss per
 * block, the line usually still in the sweeping GC thread's cache) to
 * spread it over the lists, and read each block again when it took it:
 * in old_churn, whose holes are one dead record and its array each,
 * adoption and list taking were 15% of the program's time.
 *   Chains live until the next sweep begins (free_space_reset): their
 * blocks are fillers, so the heap stays iterable, and the sweep finds
 * whatever was not used again from the mark bits. */
static void free_space_reset(gc_old *o) {
  memset(&o->fl, 0, sizeof o->fl);
  o->chain = NULL;
  o->chain_pages = NULL;
}

static void chain_add(gc_old *o, gc_page *p) {
  if (!p->free_chain) return;
  o->fl.free_bytes += p->free_bytes;
  p->chain_next = o->chain_pages;
  o->chain_pages = p;
}

/* The next chained block of at least words words, unlinked; NULL when the
 * chains are used up. Smaller blocks on the way join the free lists. */
static uint64_t *chain_take(gc_old *o, size_t words) {
  for (;;) {
    uint64_t *blk = o->chain;
    if (!blk) {
      gc_page *p = o->chain_pages;
      if (!p) return NULL;
      o->chain_pages = p->chain_next;
      o->chain = p->free_chain;
      p->free_chain = NULL;
      continue;
    }
    uint64_t *next = (uint64_t *)(uintptr_t)blk[1];
    o->chain = next;
    if (next) gc_prefetch_write(next);
    size_t bytes = gc_hdr_words(blk[0]) * 8;
    o->fl.free_bytes -= bytes;
    if (bytes >= words * 8) return blk;
    fl_add(&o->fl, (char *)blk, bytes);
  }
}

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

/* Note [The runtime's heap limit]
 * Besides its own limit, an isolate's old space counts toward the
 * runtime's max_heap_size: rt->old_committed sums every isolate's old
 * pages and large mappings (an atomic counter, changed as pages come and
 * go). Memory of one isolate is freed only by that isolate's cycles (Note
 * [One cycle per isolate] in concurrent.c), so an isolate that finds the
 * runtime full cannot free the others' garbage itself: it bumps
 * rt->limit_request, and every isolate starts a cycle at its next
 * safepoint when it sees the counter move (gc_cycle_poll). The bump also
 * happens when the runtime grows past seven eighths of the limit, so that
 * in a steady state the isolates collect before anybody hits it. The
 * isolate that hits it collects itself fully and retries once, then
 * fails (out_of_memory in young.c); what the others stored is untouched.
 * A parked isolate starts its cycle when it unparks. */

bool gc_runtime_over_limit(iso_runtime *rt, size_t bytes) {
  return rt->heap_limit &&
         thr_load_relaxed(&rt->old_committed) + bytes > rt->heap_limit;
}

void gc_runtime_request_collections(iso_runtime *rt) {
  thr_fetch_add_relaxed(&rt->limit_request, (uint64_t)1);
}

/* Counts old bytes in (add) or out of (sub) the runtime's total. */
static void runtime_account(iso_isolate *iso, size_t add, size_t sub) {
  iso_runtime *rt = iso->rt;
  if (add) {
    size_t before = thr_fetch_add_relaxed(&rt->old_committed, add);
    size_t soft = rt->heap_limit - rt->heap_limit / 8;
    if (rt->heap_limit && before <= soft && before + add > soft)
      gc_runtime_request_collections(rt);
  }
  if (sub) thr_fetch_add_relaxed(&rt->old_committed, (size_t)0 - sub);
}

bool gc_old_over_limit(iso_isolate *iso) {
  return gc_old_committed(&iso->heap) > iso->heap.old.limit ||
         gc_runtime_over_limit(iso->rt, 0);
}

bool gc_old_would_exceed(iso_isolate *iso, size_t bytes) {
  gc_heap *h = &iso->heap;
  if (gc_runtime_over_limit(iso->rt, bytes)) {
    gc_runtime_request_collections(iso->rt);
    return true;
  }
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
  gc_lab_detach(iso);
  if (o->lab_top && o->lab_top < o->lab_limit)
    fl_add(&o->fl, o->lab_top, (size_t)(o->lab_limit - o->lab_top));
  o->lab_top = o->lab_limit = NULL;
}

/* Removes the holes of page_vec, keeping the order (and the place where
 * marking began). */
static void squeeze_page_vec(gc_heap *h) {
  gc_old *o = &h->old;
  size_t n = 0, black = h->marking.black_vec_start, moved = SIZE_MAX;
  for (size_t i = 0; i < o->page_vec_len; i++) {
    if (i == black) moved = n;
    gc_page *p = o->page_vec[i];
    if (!p) continue;
    p->vec_index = (uint32_t)n;
    o->page_vec[n++] = p;
  }
  if (black == o->page_vec_len) moved = n; /* no page linked since */
  h->marking.black_vec_start = moved;
  o->page_vec_len = n;
}

/* Room in page_vec for one more page; false if malloc refuses. */
static bool reserve_page_vec(gc_heap *h) {
  gc_old *o = &h->old;
  if (o->page_vec_len < o->page_vec_cap) return true;
  if (o->page_count < o->page_vec_len / 2) {
    squeeze_page_vec(h);
    return true;
  }
  size_t cap = o->page_vec_cap ? o->page_vec_cap * 2 : 64;
  gc_page **n = realloc(o->page_vec, cap * sizeof *n);
  if (!n) return false;
  o->page_vec = n;
  o->page_vec_cap = cap;
  return true;
}

/* The sweep_state word of (sweep number epoch, state st) and back: the
 * number is stored subtracted from the largest, so that the word 0 means
 * the largest, which no sweep reaches (page.h). */
#define SWEEP_EPOCH_MAX (UINT64_MAX >> 2)
static uint64_t sweep_word(uint64_t epoch, uint32_t st) {
  return (SWEEP_EPOCH_MAX - epoch) << 2 | st;
}
static uint64_t sweep_word_epoch(uint64_t w) { return SWEEP_EPOCH_MAX - (w >> 2); }

/* After reserve_page_vec. */
static void link_page(iso_isolate *iso, gc_page *p) {
  gc_old *o = &iso->heap.old;
  runtime_account(iso, GC_PAGE_SIZE, 0);
  /* Not part of any sweep under way (a sweep of this isolate, or of
   * another from which the page came back through the pool: numbers are
   * runtime-wide): it has nothing to free. */
  thr_store_relaxed(&p->sweep_state,
                    sweep_word(thr_load_relaxed(&iso->rt->sweep_epoch),
                               GC_SWEEP_DONE));
  p->vec_index = (uint32_t)o->page_vec_len;
  o->page_vec[o->page_vec_len++] = p;
  p->prev = NULL;
  p->next = o->pages;
  if (o->pages) o->pages->prev = p;
  o->pages = p;
  o->page_count++;
}

static void unlink_page(iso_isolate *iso, gc_page *p) {
  gc_old *o = &iso->heap.old;
  runtime_account(iso, 0, GC_PAGE_SIZE);
  if (p->prev) {
    p->prev->next = p->next;
  } else {
    o->pages = p->next;
  }
  if (p->next) p->next->prev = p->prev;
  p->next = p->prev = NULL;
  o->page_count--;
  o->page_vec[p->vec_index] = NULL;
}

static bool add_page(iso_isolate *iso, bool check_limit) {
  gc_heap *h = &iso->heap;
  if (check_limit && gc_old_would_exceed(iso, GC_PAGE_SIZE)) return false;
  if (!reserve_page_vec(h)) return false;
  gc_page *p = gc_pool_take(iso->rt->pool, iso, GC_PAGE_OLD, h->in_gc);
  if (!p) return false;
  link_page(iso, p);
  gc_fill(p->area_start, GC_PAGE_AREA);
  gc_old_retire_lab(iso);
  h->old.lab_top = p->area_start;
  h->old.lab_limit = p->area_end;
  return true;
}

static bool adopt_next(iso_isolate *iso, gc_adopt_mode mode);

uint64_t *gc_old_take_block(iso_isolate *iso, size_t bytes) {
  gc_old *o = &iso->heap.old;
  size_t words = bytes / 8;
  uint64_t *blk = chain_take(o, words);
  if (!blk)
    blk = fl_take(&o->fl, words > LAB_MIN_WORDS ? words : LAB_MIN_WORDS);
  if (!blk) blk = fl_take(&o->fl, words);
  return blk;
}

void gc_old_give_block(iso_isolate *iso, char *start, size_t bytes) {
  fl_add(&iso->heap.old.fl, start, bytes);
}

/* A LAB from the free lists, adopting pages that mode allows until one
 * gives a block of bytes, at most max_pages of them (0: no bound). */
static bool lab_from_free_space(iso_isolate *iso, size_t bytes,
                                gc_adopt_mode mode, unsigned max_pages) {
  gc_old *o = &iso->heap.old;
  for (unsigned n = 0;; n++) {
    uint64_t *blk = gc_old_take_block(iso, bytes);
    if (blk) {
      gc_old_retire_lab(iso);
      o->lab_top = (char *)blk;
      o->lab_limit = (char *)blk + gc_hdr_words(blk[0]) * 8;
      return true;
    }
    if (n == max_pages && max_pages) return false;
    if (!adopt_next(iso, mode)) return false;
  }
}

/* Note [Sweeping for space]
 * An owner that needs old space takes it from its free lists, then from
 * pages that GC threads swept, then sweeps pending pages itself (lazy
 * sweeping), and only then grows. It does not sweep, for space, the pages
 * linked while the cycle marked (the sweep list's tail from black_from):
 * everything allocated in them then is black, so they have nothing to
 * give but the ends of retired LABs, and an owner that swept its way
 * through a few hundred of them stalled for tens of milliseconds where a
 * fresh page costs its page faults. GC threads sweep them (the sweep also
 * clears their mark bits), and the owner adopts them swept, or sweeps
 * them itself when it completes the sweep (GC_ADOPT_ANY, _WAIT).
 *   Older pages can be as full (a live set just built), so one refill
 * sweeps at most SWEEP_FOR_SPACE pages itself (a fraction of a
 * millisecond) before it grows instead. When it may not grow, it sweeps
 * whatever is left rather than fail. */
#define SWEEP_FOR_SPACE 8

static bool refill_lab(iso_isolate *iso, size_t bytes, bool check_limit) {
  if (lab_from_free_space(iso, bytes, GC_ADOPT_SWEPT, 0)) return true;
  if (lab_from_free_space(iso, bytes, GC_ADOPT_SPACE, SWEEP_FOR_SPACE))
    return true;
  if (add_page(iso, check_limit)) return true;
  return lab_from_free_space(iso, bytes, GC_ADOPT_ANY, 0) ||
         add_page(iso, check_limit);
}

/* Marks the objects that tile [from, to) of one page, one atomic OR per
 * bitmap word. */
static void mark_range_black(char *from, char *to) {
  gc_page *p = gc_page_of(from);
  size_t word = SIZE_MAX;
  uint64_t mask = 0;
  while (from < to) {
    size_t i = gc_page_word_index(p, from);
    if (i / 64 != word) {
      if (mask) thr_fetch_or_relaxed(&p->markbits[word], mask);
      word = i / 64;
      mask = 0;
    }
    mask |= 1ull << (i % 64);
    size_t words = gc_hdr_words(*(uint64_t *)(void *)from);
    ISO_DASSERT(words != 0);
    from += words * 8;
  }
  if (mask) thr_fetch_or_relaxed(&p->markbits[word], mask);
}

/* Note [Black LABs, in batches]
 * While the isolate's cycle marks, what the inline paths allocated in a
 * LAB is made black when the LAB is given up (gc_old_lab_used), one
 * atomic OR per bitmap word. Once the old space is a field of small holes
 * (old_churn's: one dead record and its array each) that is one OR per
 * hole, on a bitmap word in another page's header that is seldom in
 * cache, and a locked instruction waits for the store buffer to drain as
 * well, so each waited for the misses of the stores that had just filled
 * the hole: 12% of old_churn's program thread sat on those ORs. So the
 * used LABs wait in old.black, their bitmap words fetched for writing
 * (gc_mark_prefetch: computed from the address, not loaded), and
 * are made black GC_BLACK_BATCH at a time, their lines in cache by then.
 *   Objects are white a little longer, as they were already between their
 * allocation and the LAB's end: a marker that meets one meanwhile shades
 * and traces it (its slots are published, so initialised), which is
 * correct and merely unneeded work. What must hold is that they are
 * black before marking ends and the sweep reads the bits: gc_lab_detach
 * runs gc_old_black_flush after counting the LAB, every end of marking
 * detaches first (try_finish in concurrent.c; a parked isolate detached
 * when it parked), and finish_marking flushes again and asserts that
 * nothing waits. */
void gc_old_black_flush(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  for (unsigned i = 0; i < o->black_count; i++)
    mark_range_black(o->black[i].from, o->black[i].to);
  o->black_count = 0;
}

void gc_old_lab_used(iso_isolate *iso, char *from, char *to) {
  gc_heap *h = &iso->heap;
  gc_old *o = &h->old;
  size_t bytes = (size_t)(to - from);
  h->allocated_bytes_total += bytes;
  o->allocated += bytes;
  if (!bytes || !gc_marking_active(h)) return;
  gc_mark_prefetch((iso_value)(uintptr_t)from);
  o->black[o->black_count].from = from;
  o->black[o->black_count].to = to;
  if (++o->black_count == GC_BLACK_BATCH) gc_old_black_flush(iso);
}

void *gc_old_alloc_raw(iso_isolate *iso, size_t bytes, bool check_limit) {
  gc_old *o = &iso->heap.old;
  gc_lab_detach(iso);
  if (bytes >= GC_LARGE_OBJECT_SIZE)
    return gc_large_alloc_raw(iso, bytes, check_limit);
  if (!o->lab_top || (size_t)(o->lab_limit - o->lab_top) < bytes) {
    if (!refill_lab(iso, bytes, check_limit)) return NULL;
  }
  char *mem = o->lab_top;
  o->lab_top += bytes;
  /* Promotion (inside a collection) moves bytes that were counted when
   * they were allocated young. */
  if (!iso->heap.in_gc) iso->heap.allocated_bytes_total += bytes;
  o->allocated += bytes;
  if (gc_marking_active(&iso->heap)) gc_mark_set((iso_value)(uintptr_t)mem);
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
  runtime_account(iso, p->mapping_size, 0);
  h->old.large_object_bytes += bytes;
  h->allocated_bytes_total += bytes;
  h->old.allocated += bytes;
  if (gc_marking_active(h)) gc_mark_set((iso_value)(uintptr_t)p->area_start);
  return p->area_start;
}

/* Frees [from, to) of page p: a filler, chained as a free block when it
 * has room for the link; its remembered-set bits are cleared. */
static void free_range(gc_page *p, uint64_t ***tail, char *from, char *to) {
  size_t bytes = (size_t)(to - from);
  gc_bits_clear_range(p->rsetbits, gc_page_word_index(p, from),
                      gc_page_word_index(p, to));
  gc_fill(from, bytes);
  if (bytes < 16) return; /* a 1-word hole has no room for a link */
  uint64_t *blk = (uint64_t *)(void *)from;
  blk[1] = 0;
  **tail = blk;
  *tail = (uint64_t **)(void *)&blk[1];
  p->free_bytes += bytes;
}

/* Sweeps one claimed page into its free chain. Only marked objects are
 * visited: the mark bitmap gives their starts, their headers their ends,
 * and every gap between them becomes free space. Dead objects are never
 * read, so sweeping costs the live objects plus the bitmap. Publishes the
 * page as swept. Any thread. */
static void sweep_page(gc_page *p) {
  char *cursor = p->area_start;
  size_t live = 0;
  uint64_t *head = NULL;
  uint64_t **tail = &head;
  p->free_bytes = 0;
  for (size_t w = 0; w < GC_BITMAP_WORDS; w++) {
    uint64_t bits = p->markbits[w];
    while (bits) {
      unsigned b = (unsigned)__builtin_ctzll(bits);
      bits &= bits - 1;
      char *obj = p->area_start + (w * 64 + b) * 8;
      /* Atomic: the owner may be storing an identity hash. */
      uint64_t hdr = thr_load_relaxed((uint64_t *)(void *)obj);
      size_t bytes = gc_hdr_words(hdr) * 8;
      if (obj > cursor) free_range(p, &tail, cursor, obj);
      live += bytes;
      cursor = obj + bytes;
    }
  }
  if (live == 0) {
    /* Nothing live: the owner returns the page when it adopts it. */
    gc_fill(p->area_start, GC_PAGE_AREA);
    gc_bits_clear_range(p->rsetbits, 0, GC_PAGE_AREA_WORDS);
    head = NULL;
    p->free_bytes = 0;
  } else if (cursor < p->area_end) {
    free_range(p, &tail, cursor, p->area_end);
  }
  memset(p->markbits, 0, GC_BITMAP_WORDS * sizeof(uint64_t));
  p->live_bytes = live;
  p->free_chain = head;
}

/* p's state in the sweep numbered e (page.h). */
static uint32_t sweep_state_in(gc_page *p, uint64_t e) {
  uint64_t w = thr_load_acquire(&p->sweep_state);
  return sweep_word_epoch(w) < e ? (uint32_t)GC_SWEEP_PENDING
                                 : (uint32_t)(w & 3);
}

/* Claims p for the sweep numbered e and sweeps it; false if it is not
 * pending (another thread has it, or had it). */
static bool claim_and_sweep(gc_page *p, uint64_t e) {
  uint64_t w = thr_load_acquire(&p->sweep_state);
  if (sweep_word_epoch(w) >= e) return false;
  if (!__atomic_compare_exchange_n(&p->sweep_state, &w,
                                   sweep_word(e, GC_SWEEP_BUSY), false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    return false;
  /* A page that left the list's isolate is never pending (page.h). */
  ISO_DASSERT((thr_load_relaxed(&p->flags) & GC_PAGE_OLD) &&
              thr_load_relaxed(&p->owner->heap.marking.sweep_epoch) == e);
  sweep_page(p);
  thr_store_release(&p->sweep_state, sweep_word(e, GC_SWEEP_SWEPT));
  return true;
}

void gc_sweep_ensure(gc_page *p) {
  uint64_t e = p->owner->heap.marking.sweep_epoch;
  for (;;) {
    uint32_t st = sweep_state_in(p, e);
    if (st == GC_SWEEP_DONE || st == GC_SWEEP_SWEPT) return;
    if (st == GC_SWEEP_PENDING && claim_and_sweep(p, e)) return;
    sched_yield(); /* another thread is sweeping it: a page is quick */
  }
}

void gc_large_sweep(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  gc_page **pp = &o->large;
  while (*pp) {
    gc_page *p = *pp;
    if (!gc_bit_test(p->markbits, 0)) {
      *pp = p->next;
      o->large_count--;
      o->large_bytes -= p->mapping_size;
      runtime_account(iso, 0, p->mapping_size);
      o->large_object_bytes -= p->object_size;
      gc_rset_unlist(p);
      gc_large_page_free(iso->rt->pool, p);
      continue;
    }
    thr_store_relaxed(&p->markbits[0], (uint64_t)0);
    pp = &p->next;
  }
}

static void adopt(iso_isolate *iso, gc_page *p);

/* Sweeps and adopts every page now, on this thread: the fallback when the
 * sweep list cannot be allocated. */
static void sweep_all_now(iso_isolate *iso) {
  gc_page *p = iso->heap.old.pages;
  while (p) {
    gc_page *n = p->next;
    adopt(iso, p); /* pending: the sweep's number is new */
    p = n;
  }
}

void gc_sweep_begin(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_marking *m = &h->marking;
  gc_old *o = &h->old;
  o->lab_top = o->lab_limit = NULL; /* a filler already: see concurrent.c */
  free_space_reset(o);
  free(m->sweep_pages);
  m->sweep_pages = malloc((o->page_count ? o->page_count : 1) *
                          sizeof *m->sweep_pages);
  thr_store_release(&m->sweep_count, (size_t)0);
  m->adopt_next = 0;
  m->sweep_alloc_start = h->old.allocated;
  /* A new number makes every old page pending at once, without a write
   * to each page (a cache miss each, half a millisecond of pause for a
   * few thousand pages). */
  thr_store_relaxed(&m->sweep_epoch,
                    thr_fetch_add_relaxed(&iso->rt->sweep_epoch, (uint64_t)1) + 1);
  if (!m->sweep_pages) {
    sweep_all_now(iso);
  } else {
    /* Oldest pages first (page_vec's order): the newest were allocated
     * black during this cycle, so they have little to give, and an owner
     * that needs space should not sweep through them. */
    size_t n = 0;
    m->black_from = SIZE_MAX;
    for (size_t i = 0; i < o->page_vec_len; i++) {
      if (i == m->black_vec_start) m->black_from = n;
      if (o->page_vec[i]) m->sweep_pages[n++] = o->page_vec[i];
    }
    ISO_DASSERT(n == o->page_count);
    thr_store_release(&m->sweep_count, n);
  }
  thr_store_release(&m->sweep_next, (size_t)0);
}

void gc_sweep_background(iso_isolate *iso, unsigned index) {
  gc_marking *m = &iso->heap.marking;
  for (;;) {
    if (!gc_threads_may_serve(iso->rt, index, iso)) return;
    size_t i = __atomic_fetch_add(&m->sweep_next, 1, __ATOMIC_ACQ_REL);
    if (i >= thr_load_acquire(&m->sweep_count)) return;
    /* After sweep_count (acquire): the number of this sweep. */
    uint64_t e = thr_load_relaxed(&m->sweep_epoch);
    /* Atomic: the owner may be swapping entries (adopt_next). */
    gc_page *p = thr_load_relaxed(&m->sweep_pages[i]);
    claim_and_sweep(p, e);
  }
}

bool gc_sweep_all_swept(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  for (size_t i = m->adopt_next; i < m->sweep_count; i++) {
    gc_page *p = thr_load_relaxed(&m->sweep_pages[i]);
    uint32_t st = sweep_state_in(p, m->sweep_epoch);
    if (st != GC_SWEEP_SWEPT && st != GC_SWEEP_DONE) return false;
  }
  return true;
}

/* The owner takes a swept page: its chain of free blocks waits for LABs
 * (Note [Allocating in address order]); an empty page goes back to the
 * pool. */
static void adopt(iso_isolate *iso, gc_page *p) {
  gc_sweep_ensure(p);
  if (p->live_bytes == 0) {
    unlink_page(iso, p);
    gc_rset_unlist(p);
    gc_pool_give(iso->rt->pool, p);
    return;
  }
  chain_add(&iso->heap.old, p);
  thr_store_release(&p->sweep_state,
                    sweep_word(iso->heap.marking.sweep_epoch, GC_SWEEP_DONE));
}

static void sweep_end(iso_isolate *iso);

/* How far adopt_next looks for a page it may take in place of the next. */
#define ADOPT_LOOK_AHEAD 16

/* Adopts the next page of the sweep list that mode allows (gc_adopt_mode);
 * false when none is left, or none that mode allows within
 * ADOPT_LOOK_AHEAD entries. A page taken out of order swaps places with
 * the next one, so the owner never waits for a GC thread that the OS has
 * descheduled in the middle of a page, unless it must finish the sweep
 * now. */
/* May mode adopt a page in state st at place i of the sweep list? */
static bool adoptable(const gc_marking *m, gc_adopt_mode mode, uint32_t st,
                      size_t i) {
  if (st == GC_SWEEP_SWEPT || mode == GC_ADOPT_WAIT) return true;
  if (st != GC_SWEEP_PENDING || mode == GC_ADOPT_SWEPT) return false;
  return mode == GC_ADOPT_ANY || i < m->black_from;
}

static bool adopt_next(iso_isolate *iso, gc_adopt_mode mode) {
  gc_marking *m = &iso->heap.marking;
  size_t i = m->adopt_next;
  if (i >= m->sweep_count) return false;
  gc_page *p = m->sweep_pages[i];
  uint32_t st = sweep_state_in(p, m->sweep_epoch);
  if (!adoptable(m, mode, st, i)) {
    size_t end = m->sweep_count - i > ADOPT_LOOK_AHEAD ? i + ADOPT_LOOK_AHEAD
                                                       : m->sweep_count;
    bool found = false;
    for (size_t j = i + 1; j < end; j++) {
      gc_page *q = m->sweep_pages[j];
      uint32_t qs = sweep_state_in(q, m->sweep_epoch);
      if (!adoptable(m, mode, qs, j)) continue;
      /* Atomic: GC threads read entries past sweep_next; either page
       * found at either place is claimed by CAS, so none is swept twice,
       * and every entry from adopt_next on is adopted in the end. */
      thr_store_relaxed(&m->sweep_pages[j], p);
      thr_store_relaxed(&m->sweep_pages[i], q);
      p = q;
      found = true;
      break;
    }
    if (!found) return false;
  }
  m->adopt_next++;
  adopt(iso, p);
  return true;
}

bool gc_sweep_advance(iso_isolate *iso, size_t n, gc_adopt_mode mode) {
  gc_marking *m = &iso->heap.marking;
  bool wait = mode == GC_ADOPT_WAIT;
  if (thr_load_acquire(&m->state) != ISO_GC_CYCLE_SWEEPING) return false;
  for (size_t i = 0; n == 0 || i < n; i++)
    if (!adopt_next(iso, mode)) break;
  if (m->adopt_next < m->sweep_count) return false;
  /* The cycle ends once no GC thread can still be reading the list. */
  for (;;) {
    pthread_mutex_lock(&m->lock);
    bool idle = m->markers == 0;
    if (idle) thr_store_release(&m->state, (int)ISO_GC_CYCLE_IDLE);
    pthread_mutex_unlock(&m->lock);
    if (idle) break;
    if (!wait) return false; /* the next safepoint tries again */
    sched_yield();
  }
  sweep_end(iso);
  return true;
}

static void sweep_end(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_marking *m = &h->marking;
  free(m->sweep_pages);
  m->sweep_pages = NULL;
  thr_store_release(&m->sweep_count, (size_t)0);
  m->adopt_next = 0;
  thr_store_relaxed(&m->sweep_next, (size_t)0);
  /* The use the trigger grows from: what is in use now less what was
   * allocated since the sweep began (all of it counted as in use, though
   * some died), so that a sweep that the owner finishes late does not
   * raise the trigger. */
  size_t used = gc_old_used(h);
  size_t since = (size_t)(h->old.allocated - m->sweep_alloc_start);
  gc_old_update_trigger(h, used > since ? used - since : 0, m->last_marked,
                        m->last_alloc);
  h->over_limit = gc_old_over_limit(iso);
  gc_young_limit_changed(iso);
}

void gc_old_release_all(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  gc_lab_detach(iso);
  runtime_account(iso, 0, gc_old_committed(&iso->heap));
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
  free(o->page_vec);
  o->page_vec = NULL;
  o->page_vec_len = o->page_vec_cap = 0;
  o->large_bytes = o->large_object_bytes = 0;
  o->lab_top = o->lab_limit = NULL;
  free_space_reset(o);
}
