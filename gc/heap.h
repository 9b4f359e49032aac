/*
 * An isolate's heap: its young generation, its share of the old space, its
 * external memory, and the collections that run on its thread.
 *
 * Every field of gc_heap is owned by the isolate's thread and is touched
 * only by it (the isolate is used by one thread at a time), unless a field
 * says otherwise.
 *
 * This header is the internal allocation interface that the value kinds in
 * isolate/ build on:
 *   gc_alloc()      a young (or, when big, large) object, fully initialised
 *                   (slots undefined, raw bytes zero); may run a GC, so the
 *                   caller must hold every reference it still needs in a
 *                   handle; returns 0 with the thread's error set on OOM.
 *   gc_write()      a reference store into an object, through the barrier.
 */
#ifndef GC_HEAP_H
#define GC_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_ring.h>

#include "isolate.h"
#include "object.h"
#include "page.h"
#include "worklist.h"

struct iso_isolate;
typedef struct iso_isolate iso_isolate;

/* ---- external memory (ArrayBuffer backing stores) ---- */

typedef struct gc_extern {
  void *data;
  size_t length;
  iso_free_callback free_cb; /* NULL: data came from calloc, free() it */
  void *ctx;
  iso_value obj; /* the owning ArrayBuffer; updated when it moves */
  bool external; /* memory supplied by the caller */
  bool detached; /* released by a detach; data NULL, length 0 */
  bool counted;  /* length counts as array_buffers (ArrayBuffer, SAB) */
} gc_extern;

typedef struct gc_extern_vec {
  gc_extern **items;
  size_t count, cap;
} gc_extern_vec;

/* ---- pause statistics: a log-linear histogram of pause durations ---- */

#define GC_HIST_BUCKETS 512
typedef struct gc_pause_hist {
  uint64_t count;
  double total_ms, max_ms;
  uint32_t buckets[GC_HIST_BUCKETS];
} gc_pause_hist;
void gc_pause_hist_add(gc_pause_hist *h, double ms);
void gc_pause_hist_read(const gc_pause_hist *h, iso_pause_stats_t *out);

/* ---- free lists of the old space ---- */

#define GC_FL_EXACT 64 /* buckets 0..63: blocks of exactly k words */
#define GC_FL_BUCKETS (GC_FL_EXACT + 16) /* then one per power of two */
typedef struct gc_freelist {
  uint64_t *heads[GC_FL_BUCKETS]; /* blocks are fillers; word 1 links */
  uint64_t nonempty[(GC_FL_BUCKETS + 63) / 64];
  size_t free_bytes;
} gc_freelist;

typedef struct gc_young {
  gc_page *pages; /* allocation order */
  gc_page *last;  /* page being allocated in */
  size_t page_count;
  size_t capacity_pages; /* the semispace size now, in pages */
  size_t min_pages, max_pages;
  char *real_limit; /* end of the allocation area when stress hides it */
  gc_page *spare;   /* evacuated pages kept for the next to-space */
  size_t spare_count;
  size_t survived_bytes;
  unsigned quiet_scavenges; /* in a row with few survivors (resize) */
  bool promote_all;         /* next scavenge promotes every survivor */
  /* Pretenuring (Note [Pretenuring] in gc/young.c). */
  bool pretenure;           /* new objects go to the old space */
  bool probing;             /* a one-page young window measures survival */
  unsigned high_survival;   /* 1: the last scavenge kept most bytes */
  size_t saved_capacity;    /* capacity_pages before the probe */
  size_t pretenured_bytes;  /* since pretenuring began or the last probe */
  size_t pretenure_poll_at; /* pretenured_bytes of the next safepoint */
  size_t probe_every;       /* pretenured bytes between probes */
  uint64_t pretenured_total;
  /* The inline area is the old space's LAB (Note [The inline old LAB] in
   * gc/young.c); the young area's top waits in saved_top meanwhile. */
  bool lab_inline;
  char *saved_top;
} gc_young;

/* LABs whose black marking waits to be done together. */
#define GC_BLACK_BATCH 32

typedef struct gc_old {
  gc_page *pages;
  size_t page_count;
  /* The same pages in an array, oldest first, with NULL where a page left
   * (squeezed out when half are holes): the sweep list is a copy. */
  gc_page **page_vec;
  size_t page_vec_len, page_vec_cap;
  char *lab_top, *lab_limit; /* linear allocation area in an old page */
  char *lab_start; /* where the inline paths began using the LAB */
  gc_freelist fl;
  /* Note [Allocating in address order] (gc/old.c): the free blocks of
   * adopted pages, in address order; fl.free_bytes counts them too. */
  uint64_t *chain;        /* the next block of the page in use */
  gc_page *chain_pages;   /* adopted pages whose chains wait, chain_next */
  gc_page *large;
  size_t large_count;
  size_t large_bytes;          /* mapped bytes of large pages */
  size_t large_object_bytes;   /* bytes of the objects in them */
  size_t limit;                /* max_old_generation_size now */
  size_t initial_limit;
  size_t trigger;              /* gc_old_used() that starts a cycle */
  uint64_t allocated;          /* bytes ever allocated here (promotion too) */
  /* Note [Black LABs, in batches] (gc/old.c): LABs used while marking
   * whose objects are still to be made black. */
  struct {
    char *from, *to;
  } black[GC_BLACK_BATCH];
  unsigned black_count;
} gc_old;

#define GC_MAX_CALLBACKS 8

/* ---- the concurrent marking cycle of one isolate (gc/concurrent.c) ---- */

/* inl.barrier_flags: the snapshot barrier is on (marking). */
#define GC_BARRIER_MARKING 1u
/* Barrier entries in flight from an isolate to the markers. */
#define GC_RING_SIZE 4096u
/* Overwritten values the barrier collects before it filters them. */
#define GC_BARRIER_BUF 256u

typedef struct gc_marking {
  /* Shared with the GC threads. */
  pthread_mutex_t lock; /* state changes, markers, cancelled */
  int state;            /* iso_gc_cycle_state; written under lock, read
                           atomically without it */
  int markers;          /* GC threads working for this isolate; under lock */
  bool cancelled;       /* the isolate is being freed; under lock */
  int cancelled_flag;   /* atomic copy of cancelled, polled by markers */
  gc_worklist wl;       /* grey objects of this isolate's old space */
  ck_ring_t ring;       /* barrier: owner enqueues, markers dequeue */
  ck_ring_buffer_t *ring_buf;
  size_t marked_bytes;  /* atomic: bytes traced this cycle */
  size_t marked_work;   /* atomic: work done this cycle (drain) */
  uint64_t bg_mark_ns, bg_sweep_ns; /* atomic: GC-thread time, in total */
  /* Sweeping: the pages to sweep, fixed when marking ends. GC threads
   * claim indexes with sweep_next; each page's sweep_state says who has
   * it (gc/old.c). */
  gc_page **sweep_pages;
  size_t sweep_count;
  uint64_t sweep_epoch; /* the sweep's number (page.h); atomic */
  size_t sweep_next;  /* atomic */
  /* Owner (or a GC thread holding the parked isolate: "Who touches what"
   * at the top of gc/concurrent.c). */
  gc_worklist_local local; /* the owner's grey objects: barrier overflow,
                              assists, the join */
  iso_value barrier_buf[GC_BARRIER_BUF]; /* gc_marking_barrier */
  unsigned barrier_count;
  size_t adopt_next;       /* sweep_pages[adopt_next..] not yet adopted */
  /* Note [Sweeping for space] in old.c: page_vec's length when marking
   * began, and the sweep list's first page linked since. */
  size_t black_vec_start, black_from;
  uint64_t sweep_alloc_start; /* old.allocated when sweeping began */
  gc_page *quarantine;     /* young pages evacuated while marking */
  size_t quarantine_count;
  uint64_t start_ns;
  /* Assists (Note [Pacing] in concurrent.c): old.allocated when marking
   * began, the marking work expected, and the old allocation it may take. */
  uint64_t alloc_at_start;
  size_t expected_work, allowance;
  size_t last_marked;      /* marked_bytes of the last completed marking */
  size_t last_work;        /* marked_work of the last completed marking */
  size_t last_alloc;       /* old allocation during the last marking */
  double cycle_pause_ms;   /* this cycle's pauses, for the trace line */
  uint64_t cycle_bg_mark_ns, cycle_bg_sweep_ns;
  size_t used_before, total_before;
  int reason;              /* gc_reason that started the cycle */
  bool finished_elsewhere; /* marking ended on a GC thread: the owner
                              reports it at its next safepoint */
  uint64_t cycles;         /* completed */
  /* The marking's number for gc_page.scan_mark: written by the owner
   * before the state says marking, read by markers; never 0. */
  uint32_t epoch;
  /* Published worklist segments below which a marker scans a long large
   * object's slices one after another (Note [Scanned prefix]). */
  size_t slice_first_segments;
} gc_marking;

typedef struct gc_heap {
  gc_young young;
  gc_old old;
  /* Old and large pages with remembered-set bits (gc_page.rset_index),
   * so a scavenge visits those, not the whole old space. */
  gc_page **rset_pages;
  size_t rset_count, rset_cap;
  gc_extern_vec young_externs, old_externs;
  gc_extern_vec dead_externs; /* found dead on a GC thread; owner frees */
  size_t external_bytes;      /* all of this isolate's gc_extern lengths */
  size_t array_buffer_bytes;  /* the part owned by ArrayBuffers */
  unsigned flags;             /* ISO_ISOLATE_* */
  unsigned debug_flags;       /* ISO_DEBUG_* */
  unsigned stress_scavenge_every, stress_full_every;
  uint64_t stress_count;
  bool in_gc;
  /* The old generation ended a collection over its limit: the next young
   * allocation takes the slow path, collects fully, and fails if it is
   * still over (gc/young.c). */
  bool over_limit;
  /* External memory (ArrayBuffer stores) grew by external_since_gc since
   * the last collection; past a step it sets external_pressure, which
   * sends the next young allocation to the slow path to collect, so dead
   * buffers' stores are freed even by programs that allocate little in
   * the heap itself (gc/collect.c). */
  bool external_pressure;
  size_t external_since_gc;
  size_t external_after_gc;
  /* rt->limit_request when this isolate last looked (gc_cycle_poll). */
  uint64_t limit_request_seen;
  /* statistics */
  gc_pause_hist scavenge_pauses, full_pauses, marking_pauses, all_pauses;
  gc_marking marking;
  uint64_t promoted_bytes_total;
  uint64_t allocated_bytes_total;
  uint64_t start_ns, last_gc_end_ns;
  double pause_ms_total;
  /* callbacks */
  iso_near_heap_limit_callback near_limit_cb;
  void *near_limit_data;
  struct {
    iso_gc_callback cb;
    void *data;
  } gc_callbacks[GC_MAX_CALLBACKS];
  void (*trace_cb)(void *data, const char *line);
  void *trace_data;
  uint32_t hash_state; /* identity-hash generator */
} gc_heap;

/* ---- lifecycle ---- */
iso_status gc_heap_init(iso_isolate *iso, const iso_isolate_params *p);
void gc_heap_destroy(iso_isolate *iso);

/* ---- allocation ---- */

/* A new object of type (a built-in or record type) and size bytes (a
 * multiple of 8, header included). Young unless big; see the top. */
iso_value gc_alloc(iso_isolate *iso, uint32_t type, size_t bytes);
/* The same, straight into the old space (pretenuring). */
iso_value gc_alloc_old(iso_isolate *iso, uint32_t type, size_t bytes);
/* A raw old block of bytes (< GC_LARGE_OBJECT_SIZE: or a large page); at
 * the heap limit, one full collection and a retry, then NULL with the
 * out-of-memory error set (a worker is told to stop). */
void *gc_old_alloc_collecting(iso_isolate *iso, size_t bytes);
/* While the isolate pretenures (Note [Pretenuring] in gc/young.c), a raw
 * old block of bytes between two safepoints; NULL when the slow path must
 * run instead. Never collects, so the caller's raw values stay valid, and
 * the young generation is empty, so a new object holding them needs no
 * barrier to be initialised. */
void *gc_pretenure_try(iso_isolate *iso, size_t bytes);
/* Slow path of the inline young allocation: a raw young (or large) block
 * of bytes, header and contents unset; 0 on OOM. May run a GC. */
void *gc_alloc_young_slow(iso_isolate *iso, size_t bytes);
/* A raw block of bytes as gc_alloc() takes it: a bump of the inline area
 * (young, or the old LAB while pretenuring), else the slow path; header
 * and contents unset, NULL on OOM. May run a GC. */
static inline void *gc_alloc_raw(iso_isolate *iso, size_t bytes) {
  iso_inl_isolate *t = ISO_INL(iso);
  char *top = t->alloc_top;
  if (bytes < GC_LARGE_OBJECT_SIZE && top &&
      (size_t)(t->alloc_limit - top) >= bytes) {
    t->alloc_top = top + bytes;
    return top;
  }
  return gc_alloc_young_slow(iso, bytes); /* sets the error on failure */
}
/* Fills a new object's header and body as gc_alloc() does. */
void gc_object_init(iso_isolate *iso, void *mem, uint32_t type, size_t bytes);

/* ---- object facts ---- */

/* Size of an object in bytes, header included. */
size_t gc_object_size(iso_value v);
/* Number of tagged slots of an object. */
size_t gc_object_slot_count(iso_value v);
/* The object's identity hash (20 bits, non-zero), assigned on first use. */
uint32_t gc_identity_hash(iso_isolate *iso, iso_value v);

/* A reference store into an object, through the write barrier. */
static inline void gc_write(iso_isolate *iso, iso_value host, size_t i,
                            iso_value v) {
  iso_inl_store(iso, host, gc_slots(host) + i, v);
}

/* ---- external memory ---- */

/* Zero-filled bytes for a backing store: from GC_STORE_MMAP_MIN bytes on,
 * a private mapping (zeroed lazily by the OS, so creating a big buffer
 * costs no zero-fill, and unmapped when freed), below it calloc. *free_cb
 * receives the matching release (NULL means free()). NULL if the system
 * refuses. Any thread. */
#define GC_STORE_MMAP_MIN (64u * 1024u)
/* External growth that puts a heap under external_pressure. */
#define GC_EXTERNAL_STEP ((size_t)64 << 20)
void *gc_store_alloc(size_t length, iso_free_callback *free_cb);
void gc_store_free(void *data, size_t length, iso_free_callback free_cb);

/* Tracks a backing store owned by obj (an ArrayBuffer just allocated); 0
 * on malloc failure. The store's length counts as external memory. */
gc_extern *gc_extern_add(iso_isolate *iso, iso_value obj, void *data,
                         size_t length, iso_free_callback free_cb, void *ctx,
                         bool external);
/* Frees the store now (detach); the gc_extern stays tracked, empty. */
void gc_extern_release(iso_isolate *iso, gc_extern *e);
/* Takes the store away without freeing it (a zero-copy transfer): *out
 * receives it (free_cb, ctx, external included) and e becomes detached. */
void gc_extern_steal(iso_isolate *iso, gc_extern *e, gc_extern *out);
/* Tracks a host pointer or port (no bytes counted) owned by obj. */
gc_extern *gc_extern_add_opaque(iso_isolate *iso, iso_value obj, void *data,
                                iso_free_callback free_cb, void *ctx);

/* ---- collection ---- */

typedef enum gc_reason {
  GC_REASON_ALLOCATION_FAILURE,
  GC_REASON_TESTING, /* iso_gc() */
  GC_REASON_STRESS,
  GC_REASON_LIMIT,   /* near the heap limit */
  GC_REASON_TRIGGER, /* old space grew past its trigger */
  GC_REASON_EXTERNAL, /* external memory grew */
} gc_reason;

void gc_scavenge(iso_isolate *iso, gc_reason reason);
void gc_full(iso_isolate *iso, gc_reason reason);
/* Runs a GC now if stress mode or a request asks for one. */
void gc_poll(iso_isolate *iso);

/* ---- heap walking (the heap is iterable: every gap is a filler) ---- */

typedef void (*gc_object_visitor)(iso_isolate *iso, iso_value obj, void *ctx);
/* Visits every object, fillers included, in young, old and large pages. */
void gc_walk_heap(iso_isolate *iso, gc_object_visitor fn, void *ctx);
/* Makes the allocation areas iterable (fills their unused tails). */
void gc_make_iterable(iso_isolate *iso);

#endif /* GC_HEAP_H */
