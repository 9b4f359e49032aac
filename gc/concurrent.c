/*
 * Concurrent, incremental marking and concurrent sweeping of an isolate's
 * old generation, and the parked/running protocol that lets the GC threads
 * finish a cycle for an isolate that is blocked.
 *
 * Note [One cycle per isolate]
 * Isolates share no objects, so the old objects of an isolate are reachable
 * only from that isolate's roots and young generation. A marking cycle
 * therefore covers one isolate's part of the shared old space, and every
 * isolate has its own cycles, started by its own trigger; the GC threads
 * of the runtime are shared by all of them and work on every isolate that
 * has a cycle running (docs/concurrent-marking.md says why this beats one
 * runtime-wide cycle: no isolate ever waits for another's safepoint).
 *
 *   IDLE --(owner, at a safepoint: the join)--> MARKING
 *   MARKING --(no grey object left; owner at a safepoint, or a GC thread
 *             holding the parked isolate)--> FINISHING --> SWEEPING
 *   SWEEPING --(every swept page adopted by the owner)--> IDLE
 *
 * 1. Join. The owner scavenges; the scavenge shades every old object that
 *    a root or a surviving young object refers to, and promotes black.
 *    From then on the snapshot barrier is on (gc/barrier.c) and objects
 *    allocated in the old space are black (gc/old.c).
 * 2. Marking. GC threads trace grey objects from the isolate's worklist
 *    and the entries its barrier leaves in its ring. The owner helps in
 *    bounded steps (assists) when it allocates in the old space faster than
 *    the markers trace, or always when the runtime has no GC threads.
 * 3. Termination. Marking is over when the worklist and the ring are
 *    empty, no GC thread is tracing for the isolate, and the isolate is at
 *    a safepoint (so no barrier is half done). Only the isolate itself
 *    mutates its objects, so this check, made under the cycle's lock by the
 *    owner at a safepoint or by a GC thread that holds the parked isolate,
 *    is the whole handshake: it needs no other isolate.
 * 4. Sweeping. The finishing thread frees dead large objects and hands
 *    every old page to the sweepers; GC threads sweep pages into per-page
 *    free chains, the owner adopts swept pages as it needs space (sweeping
 *    a page itself if no GC thread has), and the cycle is over once every
 *    page is adopted. A new cycle first completes the sweep of the last.
 *
 * Who touches what. state, markers and cancelled: under m->lock (state is
 * also read without it). The worklist: any thread, through its own local
 * view. The ring: the owner enqueues; markers (and the owner) dequeue.
 * Everything else of the heap: the owner, or a GC thread while it holds
 * the isolate parked (park_state ISOLATE_PARKED_BUSY).
 *
 * Young pages evacuated while marking are quarantined (kept from the pool)
 * until marking ends: a marker may have read a young reference from an old
 * slot just before the scavenge updated the slot, and must not find the
 * page reused as an old page, where the reference would look like an old
 * object to mark.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gc_internal.h"
#include "gc_threads.h"

/* Internal state between MARKING and SWEEPING: marking is over, the
 * sweeping is being set up; nobody may join as a marker. */
#define GC_CYCLE_FINISHING 3

/* Marking work per step when the isolate marks alone (no GC threads),
 * and per assist (Note [Pacing]). */
#define ASSIST_BYTES ((size_t)512 << 10)
#define ASSIST_UNHELPED ((size_t)192 << 10) /* when GC threads may not help */
#define BG_SLICE ((size_t)1 << 20) /* a GC thread's marking between checks */
#define ASSIST_STEP ((size_t)32 << 10)
/* The least old allocation a cycle's marking may take before assists. */
#define MIN_ALLOWANCE ((size_t)8 << 20)
/* A marker reports progress, takes barrier entries and checks for
 * cancellation every this much work (drain's units: about 1,000 small
 * objects, or two slices of a long array). Counted in objects, a marker
 * tracing an array's slices back to back (each one "object") left the
 * ring alone for a million slots, the ring filled, and the owner marked
 * the overflow itself in the middle of its stores. */
#define CHECK_WORK ((size_t)64 << 10)

static int load_state(gc_marking *m) { return thr_load_acquire(&m->state); }

static void set_state(gc_marking *m, int st) { thr_store_release(&m->state, st); }

iso_status gc_marking_init(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  pthread_mutex_init(&m->lock, NULL);
  gc_worklist_init(&m->wl);
  m->ring_buf = calloc(GC_RING_SIZE, sizeof *m->ring_buf);
  if (!m->ring_buf)
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY, "iso_isolate_new: out of memory");
  ck_ring_init(&m->ring, GC_RING_SIZE);
  gc_worklist_local_init(&m->local, &m->wl);
  return ISO_OK;
}

static void release_quarantine(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  gc_page *p = m->quarantine;
  while (p) {
    gc_page *n = p->next;
    gc_pool_give(iso->rt->pool, p);
    p = n;
  }
  m->quarantine = NULL;
  m->quarantine_count = 0;
}

void gc_marking_quarantine(iso_isolate *iso, gc_page *p) {
  gc_marking *m = &iso->heap.marking;
  thr_store_release(&p->flags, (uint32_t)GC_PAGE_FREE);
  p->next = m->quarantine;
  m->quarantine = p;
  m->quarantine_count++;
}

/* Waits until no GC thread works for the isolate, new ones being kept out
 * by cancelled or by the state. */
static void wait_markers_gone(gc_marking *m) {
  for (;;) {
    pthread_mutex_lock(&m->lock);
    int n = m->markers;
    pthread_mutex_unlock(&m->lock);
    if (n == 0) return;
    sched_yield();
  }
}

void gc_marking_cancel(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  pthread_mutex_lock(&m->lock);
  m->cancelled = true;
  thr_store_relaxed(&m->cancelled_flag, 1);
  pthread_mutex_unlock(&m->lock);
  wait_markers_gone(m);
}

void gc_marking_destroy(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  /* Pages of the sweep list are still on the old list: released there. */
  free(m->sweep_pages);
  m->sweep_pages = NULL;
  gc_worklist_local_finish(&m->local);
  gc_worklist_destroy(&m->wl);
  free(m->ring_buf);
  m->ring_buf = NULL;
  release_quarantine(iso);
  pthread_mutex_destroy(&m->lock);
}

iso_gc_cycle_state gc_marking_state(iso_isolate *iso) {
  int st = load_state(&iso->heap.marking);
  return st == GC_CYCLE_FINISHING ? ISO_GC_CYCLE_SWEEPING
                                  : (iso_gc_cycle_state)st;
}

bool gc_marking_active(const gc_heap *h) {
  return thr_load_relaxed(&h->marking.state) == ISO_GC_CYCLE_MARKING;
}

/* ---- marking work ---- */

/* Moves up to RING_TAKE barrier entries from the ring to the marker. An
 * entry may still be white (the barrier only tests its bit) or grey by
 * now: shading pushes it only if no other thread did. The entries were
 * filtered on the owner's core, so their flags and mark bits are not in
 * this one's cache: they wait in the marker's pending queue while those
 * lines arrive (Note [Two-stage prefetch] in mark.c). Shaded one after
 * another, a full ring cost up to a millisecond of misses in a step that
 * was meant to trace 32 KiB; RING_TAKE bounds what one call takes. */
#define RING_TAKE 1024

static size_t take_ring(gc_marking *m, gc_marker *mk) {
  size_t n = 0;
  void *e;
  while (n < RING_TAKE && ck_ring_dequeue_spmc(&m->ring, m->ring_buf, &e)) {
    gc_mark_shade_later(mk, (iso_value)(uintptr_t)e);
    n++;
  }
  return n;
}

/* Traces grey objects until budget units of work are done or nothing is
 * left (in l, the shared worklist and the ring). Returns the work done,
 * less than budget only when nothing was left.
 *
 * Work counts the bytes traced and SHADE_WORK for each reference
 * shaded: the cost of marking is its cache misses, one for the header of
 * each grey object and one for the mark bit of each reference, and a slice
 * of a long array of references is 8 bytes traced per miss where a small
 * object is 32 or more. Counted in bytes alone, a 128 KiB assist that met
 * slices of old_churn's 4,000,000-element array shaded some 16,000
 * references anywhere in the heap and lasted 1 to 2.5 ms instead of a
 * fraction of one. The pacing counts work too (marked_work): the slices
 * of a long array, traced first (Note [Scanned prefix] in barrier.c),
 * shade much and trace few bytes, and counted in bytes they looked like
 * a marking falling behind (2,800 assists in five seconds of old_churn).
 *
 * Marking is bound by cache misses on the headers of grey objects, which
 * lie anywhere in the heap: popped objects wait in a small FIFO, their
 * headers prefetched, and are traced MARK_PREFETCH pops later, so that
 * many misses are in flight at once. */
#define MARK_PREFETCH 16
#define SHADE_WORK 32

/* Adds what a drain traced since its last report to the cycle's bytes
 * (the live-size estimate) and work (Note [Pacing]). */
static void report_progress(gc_marking *m, size_t bytes, size_t refs,
                            size_t *reported, size_t *reported_refs) {
  thr_fetch_add_relaxed(&m->marked_bytes, bytes - *reported);
  thr_fetch_add_relaxed(&m->marked_work, bytes - *reported +
                                             (refs - *reported_refs) *
                                                 SHADE_WORK);
  *reported = bytes;
  *reported_refs = refs;
}

static size_t drain(iso_isolate *iso, gc_worklist_local *l, size_t budget,
                    const int *cancel) {
  gc_marking *m = &iso->heap.marking;
  const gc_type *types = iso->rt->types;
  size_t bytes = 0, reported = 0, reported_refs = 0, next_check = CHECK_WORK;
  iso_value fifo[MARK_PREFETCH];
  unsigned head = 0, count = 0;
  gc_marker mk;
  mk.wl = l;
  mk.head = mk.count = 0;
  mk.refs = 0;
  mk.epoch = (uint64_t)thr_load_relaxed(&m->epoch) << 32;
  mk.next = 0;
  size_t slice_first = thr_load_relaxed(&m->slice_first_segments);
  for (;;) {
    /* Note [Scanned prefix] in barrier.c: a long large object's slices
     * are traced one after another while the worklist has room for what
     * they shade. */
    iso_value o = mk.next;
    mk.next = 0;
    if (o && thr_load_relaxed(&m->wl.full_count) >= slice_first) {
      gc_worklist_push(l, o);
      o = 0;
    }
    while (!o && count < MARK_PREFETCH) {
      iso_value g = gc_worklist_pop(l);
      if (!g) break;
      __builtin_prefetch((void *)(uintptr_t)(g & ~(iso_value)7));
      fifo[(head + count++) % MARK_PREFETCH] = g;
    }
    if (!o) {
      if (count == 0) {
        /* Note [Two-stage prefetch] in mark.c: the waiting references
         * may be grey objects yet. */
        if (mk.count) {
          gc_mark_flush(&mk);
          continue;
        }
        if (take_ring(m, &mk) == 0) break;
        continue;
      }
      o = fifo[head];
      head = (head + 1) % MARK_PREFETCH;
      count--;
    }
    bytes += gc_mark_trace(types, &mk, o);
    if (bytes + mk.refs * SHADE_WORK >= next_check) {
      next_check = bytes + mk.refs * SHADE_WORK + CHECK_WORK;
      /* Progress shows as it is made: the owner's pacing reads it. */
      report_progress(m, bytes, mk.refs, &reported, &reported_refs);
      if (cancel && thr_load_relaxed(cancel)) break;
      take_ring(m, &mk);
    }
    if (bytes + mk.refs * SHADE_WORK >= budget) break;
  }
  /* Grey objects still waiting go back to the worklist, after the
   * references waiting to be shaded. */
  if (mk.next) gc_worklist_push(l, mk.next);
  gc_mark_flush(&mk);
  while (count) {
    gc_worklist_push(l, fifo[head]);
    head = (head + 1) % MARK_PREFETCH;
    count--;
  }
  report_progress(m, bytes, mk.refs, &reported, &reported_refs);
  return bytes + mk.refs * SHADE_WORK;
}

/* Wakes the GC threads for work of iso's, unless none of them may help a
 * running isolate now (Note [GC threads and spare cores] in
 * threads/gc_threads.c): the owner does that work itself then. */
static void notify_helpers(iso_isolate *iso) {
  if (thr_load_acquire(&iso->park_state) != ISOLATE_RUNNING ||
      gc_threads_help(iso->rt))
    gc_threads_notify(iso->rt);
}

/* Note [Barrier buffer]
 * The barrier itself only appends the overwritten value to a buffer of
 * GC_BARRIER_BUF entries; nothing about the value is loaded. Filtering
 * one entry costs two cache misses (its page's flags and its mark-bit
 * word, anywhere in the heap), and made in the middle of the program's
 * store they stalled it: a random store into a big array cost three
 * misses instead of one. The flush (gc_marking_flush_barrier) filters a
 * whole buffer with its misses in flight together: it prefetches every
 * entry's flags and bitmap word, then keeps the unmarked old objects and
 * puts them in the ring. It only tests the bit; the marker that takes the
 * entry sets it (take_ring), so an object overwritten twice before a
 * marker gets to it is queued twice and shaded once.
 *   Entries may be young objects, or stale: a scavenge may move a young
 * object while its address waits here. Its page is then quarantined
 * (flagged free) until marking ends, or young, and the filter drops both,
 * as it drops young values, which need no marking (gc/barrier.c).
 *   The buffer is the owner's; it is flushed when full, at every
 * safepoint while marking, before the owner checks whether marking is
 * over (try_finish), and when the isolate parks, so a GC thread that
 * ends marking on a parked isolate's behalf never misses an entry. */
void gc_marking_barrier(iso_isolate *iso, iso_value old) {
  gc_marking *m = &iso->heap.marking;
  m->barrier_buf[m->barrier_count++] = old;
  if (ISO_UNLIKELY(m->barrier_count == GC_BARRIER_BUF))
    gc_marking_flush_barrier(iso);
}

void gc_marking_flush_barrier(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  unsigned n = m->barrier_count;
  if (n == 0) return;
  m->barrier_count = 0;
  for (unsigned i = 0; i < n; i++) gc_mark_prefetch(m->barrier_buf[i]);
  bool overflow = false;
  for (unsigned i = 0; i < n; i++) {
    iso_value v = m->barrier_buf[i];
    gc_page *p = gc_page_of(gc_obj(v));
    if (!(thr_load_relaxed(&p->flags) & GC_PAGE_OLD)) continue;
    if (gc_bit_test(p->markbits, gc_page_word_index(p, gc_obj(v))))
      continue; /* grey or black already */
    if (ck_ring_enqueue_spmc(&m->ring, m->ring_buf, (void *)(uintptr_t)v))
      continue;
    /* The ring is full: the markers are behind. The owner shades the
     * rest itself. */
    gc_mark_shade(&m->local, v);
    overflow = true;
  }
  if (overflow) {
    /* Marks a bounded amount of it, and leaves the rest to the markers:
     * an assist, counted as a marking pause. */
    uint64_t t0 = isolate_now_ns();
    drain(iso, &m->local, ASSIST_BYTES / 4, NULL);
    gc_worklist_local_finish(&m->local);
    notify_helpers(iso);
    if (!iso->heap.in_gc) {
      double ms = (double)(isolate_now_ns() - t0) / 1e6;
      gc_pause_record(iso, GC_PAUSE_MARKING, ms);
      m->cycle_pause_ms += ms;
    }
  } else if (ck_ring_size(&m->ring) >= GC_RING_SIZE / 4) {
    /* A quarter full: wake the markers rather than let it overflow. */
    notify_helpers(iso);
  }
}

static bool nothing_grey(gc_marking *m) {
  return ck_ring_size(&m->ring) == 0 && gc_worklist_is_empty(&m->wl);
}

/* ---- the end of marking ---- */

static void finish_marking(iso_isolate *iso, bool on_owner);

/* Ends marking if nothing is left to mark. The caller is the owner at a
 * safepoint, or a GC thread holding the parked isolate. */
static bool try_finish(iso_isolate *iso, bool on_owner) {
  gc_marking *m = &iso->heap.marking;
  /* Note [The inline old LAB]: its objects are made black while the state
   * still says marking; Note [Barrier buffer]: its entries reach the ring.
   * A parked isolate did both when it parked. */
  if (on_owner) {
    gc_lab_detach(iso);
    gc_marking_flush_barrier(iso);
  }
  gc_worklist_local_finish(&m->local);
  pthread_mutex_lock(&m->lock);
  bool done = m->state == ISO_GC_CYCLE_MARKING && !m->cancelled &&
              m->markers == 0 && nothing_grey(m);
  if (done) set_state(m, GC_CYCLE_FINISHING);
  pthread_mutex_unlock(&m->lock);
  if (done) finish_marking(iso, on_owner);
  return done;
}

static void finish_marking(iso_isolate *iso, bool on_owner) {
  gc_heap *h = &iso->heap;
  gc_marking *m = &h->marking;
  uint64_t t0 = isolate_now_ns();
  ISO_DASSERT(!h->young.lab_inline && m->barrier_count == 0); /* try_finish */
  /* Note [Black LABs, in batches] in old.c: the detach flushed them. */
  ISO_DASSERT(h->old.black_count == 0);
  gc_old_black_flush(iso);
  iso->inl.barrier_flags &= ~GC_BARRIER_MARKING;
  if (h->flags & ISO_ISOLATE_VERIFY_HEAP) {
    if (gc_verify_marking(iso) != ISO_OK) {
      fprintf(stderr, "libisolate: marking verification failed: %s\n",
              iso_last_error());
      abort();
    }
  }
  gc_old_retire_lab(iso);
  gc_externs_after_mark(iso, !on_owner);
  gc_large_sweep(iso);
  release_quarantine(iso);
  gc_sweep_begin(iso);
  uint64_t t1 = isolate_now_ns();
  m->cycles++;
  m->last_marked = thr_load_relaxed(&m->marked_bytes);
  m->last_work = thr_load_relaxed(&m->marked_work);
  m->last_alloc = (size_t)(h->old.allocated - m->alloc_at_start);
  if (on_owner && !h->in_gc) {
    gc_pause_record(iso, GC_PAUSE_MARKING, (double)(t1 - t0) / 1e6);
    m->cycle_pause_ms += (double)(t1 - t0) / 1e6;
  }
  pthread_mutex_lock(&m->lock);
  set_state(m, ISO_GC_CYCLE_SWEEPING);
  pthread_mutex_unlock(&m->lock);
  notify_helpers(iso);
}

/* ---- starting a cycle ---- */

void gc_marking_start(iso_isolate *iso, gc_reason reason) {
  gc_heap *h = &iso->heap;
  gc_marking *m = &h->marking;
  if (load_state(m) == ISO_GC_CYCLE_MARKING) return;
  gc_lab_detach(iso); /* its objects predate the snapshot: not black */
  gc_marking_complete_sweep(iso);
  gc_threads_start(iso->rt);
  /* A full collection (in_gc) reports itself: no cycle line. */
  m->reason = h->in_gc ? -1 : (int)reason;
  m->start_ns = isolate_now_ns();
  m->used_before = gc_heap_used(iso);
  m->total_before = gc_heap_total(iso);
  m->cycle_pause_ms = 0;
  m->black_vec_start = h->old.page_vec_len;
  m->cycle_bg_mark_ns = thr_load_relaxed(&m->bg_mark_ns);
  m->cycle_bg_sweep_ns = thr_load_relaxed(&m->bg_sweep_ns);
  thr_store_relaxed(&m->marked_bytes, (size_t)0);
  thr_store_relaxed(&m->marked_work, (size_t)0);
  /* Note [Scanned prefix] in barrier.c. 0 is no epoch (a new page). */
  thr_store_relaxed(&m->epoch, m->epoch + 1 ? m->epoch + 1 : 1u);
  size_t segs = gc_old_used(h) / 16 / sizeof(gc_segment);
  thr_store_relaxed(&m->slice_first_segments, segs > 64 ? segs : 64);
  pthread_mutex_lock(&m->lock);
  set_state(m, ISO_GC_CYCLE_MARKING);
  pthread_mutex_unlock(&m->lock);
  if (!(h->debug_flags & ISO_DEBUG_SKIP_MARKING_BARRIER))
    iso->inl.barrier_flags |= GC_BARRIER_MARKING;
  /* The join: a scavenge that shades what roots and survivors refer to. */
  double ms = gc_scavenge_join(iso, &m->local);
  gc_worklist_local_finish(&m->local);
  m->cycle_pause_ms += ms;
  /* Note [Pacing]: the work is what the last marking traced (before the
   * first, all that is in use). */
  m->alloc_at_start = h->old.allocated;
  size_t live = m->last_marked ? m->last_marked : gc_old_used(h);
  m->expected_work = m->last_work ? m->last_work : live;
  m->allowance = live > MIN_ALLOWANCE ? live : MIN_ALLOWANCE;
  notify_helpers(iso);
}

/* ---- the owner's part: assists, polling, reports ---- */

static void report(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_marking *m = &h->marking;
  gc_externs_free_deferred(iso);
  double bg_mark =
      (double)(thr_load_relaxed(&m->bg_mark_ns) - m->cycle_bg_mark_ns) / 1e6;
  double bg_sweep =
      (double)(thr_load_relaxed(&m->bg_sweep_ns) - m->cycle_bg_sweep_ns) / 1e6;
  gc_cycle_report(iso, m->used_before, m->total_before, m->cycle_pause_ms,
                  bg_mark, bg_sweep, m->start_ns, (gc_reason)m->reason);
}

/* A cycle that a GC thread completed for the parked isolate is reported
 * by the owner. */
static void report_elsewhere(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  if (m->finished_elsewhere && load_state(m) == ISO_GC_CYCLE_IDLE) {
    m->finished_elsewhere = false;
    report(iso);
  }
}

/* Owner: adopts up to n swept pages (0: all; wait: and completes the
 * cycle, waiting for GC threads) and reports the cycle if that
 * completed it. */
static void advance_sweep(iso_isolate *iso, size_t n, bool wait) {
  /* At a safepoint the owner takes what GC threads swept; it sweeps pages
   * itself when it needs space (gc/old.c) or when there are no GC
   * threads. */
  gc_adopt_mode mode = wait                         ? GC_ADOPT_WAIT
                       : gc_threads_help(iso->rt) ? GC_ADOPT_SWEPT
                                                     : GC_ADOPT_ANY;
  if (gc_sweep_advance(iso, n, mode) && iso->heap.marking.reason >= 0)
    report(iso);
}

void gc_marking_complete_sweep(iso_isolate *iso) {
  if (load_state(&iso->heap.marking) != ISO_GC_CYCLE_IDLE)
    advance_sweep(iso, 0, true);
}

size_t gc_marking_step(iso_isolate *iso, size_t budget) {
  gc_marking *m = &iso->heap.marking;
  if (load_state(m) != ISO_GC_CYCLE_MARKING) return 0;
  uint64_t t0 = isolate_now_ns();
  size_t done = drain(iso, &m->local, budget, NULL);
  if (done < budget) {
    try_finish(iso, true);
  } else {
    gc_worklist_local_finish(&m->local);
  }
  double ms = (double)(isolate_now_ns() - t0) / 1e6;
  gc_pause_record(iso, GC_PAUSE_MARKING, ms);
  m->cycle_pause_ms += ms;
  return done;
}

/* Note [Pacing]
 * A cycle starts when the old space has grown past its trigger (set at
 * the end of the last sweep: gc_old_update_trigger in collect.c), and
 * its marking may then take `allowance` bytes of old allocation (as much
 * as it expects to trace, the last cycle's marked bytes; at least
 * MIN_ALLOWANCE) before it must be done. GC threads do the marking; the
 * owner only checks, at each safepoint, that they keep that pace: when
 * the work done (marked_work, in drain's units) lags behind
 *     allocated since the start * expected_work / allowance
 * where expected_work is the last marking's work, it assists with a step
 * of ASSIST_STEP units of work (a fraction of a millisecond), and again at the next safepoint if it still lags. So an
 * isolate whose GC threads keep up never pauses to mark, and one that
 * allocates faster than they trace is slowed to their pace in short
 * steps, never in one long one. Without GC threads every safepoint marks
 * ASSIST_BYTES: the isolate does all the work. When GC threads exist but
 * may not help active isolates (Note [GC threads and spare cores] in
 * threads/gc_threads.c), every safepoint marks ASSIST_UNHELPED and the
 * owner sweeps what it needs. */
static bool marking_behind(gc_heap *h) {
  gc_marking *m = &h->marking;
  uint64_t alloc = h->old.allocated - m->alloc_at_start;
  double due = (double)alloc * (double)m->expected_work / (double)m->allowance;
  return (double)thr_load_relaxed(&m->marked_work) < due;
}

void gc_marking_poll(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_marking *m = &h->marking;
  isolate_stamp_active(iso);
  int st = load_state(m);
  if (st == ISO_GC_CYCLE_MARKING) {
    gc_marking_flush_barrier(iso);
    if (!gc_threads_running(iso->rt)) {
      gc_marking_step(iso, ASSIST_BYTES);
    } else if (!gc_threads_help(iso->rt)) {
      /* Note [GC threads and spare cores] in threads/gc_threads.c: no GC
       * thread may help, so every safepoint marks a step, shorter than
       * ASSIST_BYTES since the safepoints of a busy isolate come often.
       * Marking only as fast as the pacing asks let the cycles last as
       * long as the allowance (two isolates of old_churn: 2.8 GB peak RSS
       * against 1.95 GB this way). The step's size trades pauses for
       * memory: on two isolates of old_churn, 128 KiB of work gave pauses
       * p99 0.24-0.36 ms and 2.7 GB peak RSS, 192 KiB 0.31-0.50 ms and
       * 2.2 GB (each isolate about one isolate's alone), 256 KiB
       * 0.38-0.62 ms and 1.94 GB. */
      gc_marking_step(iso, ASSIST_UNHELPED);
    } else if (marking_behind(h)) {
      gc_marking_step(iso, ASSIST_STEP);
    } else if (nothing_grey(m)) {
      try_finish(iso, true);
    }
  } else if (st == ISO_GC_CYCLE_SWEEPING) {
    advance_sweep(iso, 2, false);
  }
  report_elsewhere(iso);
}

void gc_marking_finish_now(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  while (load_state(m) == ISO_GC_CYCLE_MARKING) {
    drain(iso, &m->local, SIZE_MAX, NULL);
    if (try_finish(iso, true)) break;
    /* A GC thread still traces: its leftovers come back to the shared
     * worklist when it leaves. */
    sched_yield();
  }
  gc_marking_complete_sweep(iso);
}

/* ---- GC threads ---- */

bool gc_background_wanted(iso_isolate *iso, bool help) {
  gc_marking *m = &iso->heap.marking;
  bool parked = thr_load_acquire(&iso->park_state) == ISOLATE_PARKED;
  if (!help && !parked) return false;
  int st = load_state(m);
  if (st == ISO_GC_CYCLE_MARKING) return !nothing_grey(m) || parked;
  if (st == ISO_GC_CYCLE_SWEEPING)
    return thr_load_relaxed(&m->sweep_next) <
               thr_load_acquire(&m->sweep_count) ||
           parked;
  return false;
}


bool gc_background_enter(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  pthread_mutex_lock(&m->lock);
  bool ok = !m->cancelled && (m->state == ISO_GC_CYCLE_MARKING ||
                              m->state == ISO_GC_CYCLE_SWEEPING);
  if (ok) m->markers++;
  pthread_mutex_unlock(&m->lock);
  return ok;
}

/* Takes the parked isolate for GC work on its behalf. */
static bool hold_parked(iso_isolate *iso) {
  int expected = ISOLATE_PARKED;
  return thr_cas_acq_rel(&iso->park_state, &expected, ISOLATE_PARKED_BUSY);
}

static void release_parked(iso_isolate *iso) {
  thr_store_release(&iso->park_state, ISOLATE_PARKED);
}

void gc_background_work(iso_isolate *iso, unsigned index, const int *cancel) {
  gc_marking *m = &iso->heap.marking;
  int st = load_state(m);
  uint64_t t0 = isolate_now_ns();
  if (st == ISO_GC_CYCLE_MARKING) {
    gc_worklist_local l;
    gc_worklist_local_init(&l, &m->wl);
    /* In slices, so that a thread whose core the isolates took back
     * (Note [GC threads and spare cores]) stops soon. */
    while (drain(iso, &l, BG_SLICE, cancel) >= BG_SLICE &&
           !thr_load_relaxed(cancel) && gc_threads_may_serve(iso->rt, index, iso))
      ;
    gc_worklist_local_finish(&l);
    thr_fetch_add_relaxed(&m->bg_mark_ns, isolate_now_ns() - t0);
  } else if (st == ISO_GC_CYCLE_SWEEPING) {
    gc_sweep_background(iso, index);
    thr_fetch_add_relaxed(&m->bg_sweep_ns, isolate_now_ns() - t0);
  }
  pthread_mutex_lock(&m->lock);
  m->markers--;
  bool cancelled = m->cancelled;
  pthread_mutex_unlock(&m->lock);
  if (cancelled || !hold_parked(iso)) return;
  /* The isolate is parked and cannot reach a safepoint: end its marking,
   * or adopt its swept pages, on its behalf. */
  st = load_state(m);
  if (st == ISO_GC_CYCLE_MARKING) {
    if (try_finish(iso, false)) st = load_state(m);
  }
  if (st == ISO_GC_CYCLE_SWEEPING && gc_sweep_all_swept(iso)) {
    if (gc_sweep_advance(iso, 0, GC_ADOPT_WAIT)) m->finished_elsewhere = true;
  }
  release_parked(iso);
}

/* ---- parking ---- */

void gc_park(iso_isolate *iso) {
  gc_marking *m = &iso->heap.marking;
  /* A GC thread may end marking on its behalf: Note [The inline old LAB],
   * Note [Barrier buffer]. */
  gc_lab_detach(iso);
  gc_marking_flush_barrier(iso);
  gc_worklist_local_finish(&m->local);
  thr_store_release(&iso->park_state, ISOLATE_PARKED);
  if (load_state(m) != ISO_GC_CYCLE_IDLE) gc_threads_notify(iso->rt);
}

void gc_unpark(iso_isolate *iso) {
  for (unsigned spins = 0;; spins++) {
    int expected = ISOLATE_PARKED;
    if (thr_cas_acq_rel(&iso->park_state, &expected, ISOLATE_RUNNING)) {
      isolate_stamp_active(iso);
      break;
    }
    /* A GC thread works on the isolate's behalf: a termination check or
     * the adoption of swept pages, both short. */
    if (spins < 64) {
      sched_yield();
    } else {
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
    }
  }
  gc_marking_poll(iso);
}

/* ---- public API ---- */

iso_status iso_isolate_park(iso_isolate *iso) {
  iso_status st = ISOLATE_CHECK_OWNER(iso);
  if (st != ISO_OK) return st;
  if (thr_load_relaxed(&iso->park_state) != ISOLATE_RUNNING)
    return isolate_fail(ISO_ERR_STATE, "iso_isolate_park: '%s' is parked already",
                        iso->name);
  if (iso->heap.in_gc)
    return isolate_fail(ISO_ERR_STATE,
                        "iso_isolate_park: called from inside a collection");
  gc_park(iso);
  return ISO_OK;
}

iso_status iso_isolate_unpark(iso_isolate *iso) {
  iso_status st = ISOLATE_CHECK_OWNER(iso);
  if (st != ISO_OK) return st;
  if (thr_load_relaxed(&iso->park_state) == ISOLATE_RUNNING)
    return isolate_fail(ISO_ERR_STATE, "iso_isolate_unpark: '%s' is not parked",
                        iso->name);
  gc_unpark(iso);
  return ISO_OK;
}

bool iso_isolate_is_parked(iso_isolate *iso) {
  return iso && thr_load_acquire(&iso->park_state) != ISOLATE_RUNNING;
}

iso_gc_cycle_state iso_gc_cycle(iso_isolate *iso) {
  return iso ? gc_marking_state(iso) : ISO_GC_CYCLE_IDLE;
}

iso_status iso_gc_start_marking(iso_isolate *iso) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (iso->heap.in_gc)
    return isolate_fail(ISO_ERR_STATE,
                        "iso_gc_start_marking: called from inside a collection");
  gc_marking_start(iso, GC_REASON_TESTING);
  return ISO_OK;
}

iso_status iso_gc_step(iso_isolate *iso, size_t max_bytes) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (iso->heap.in_gc)
    return isolate_fail(ISO_ERR_STATE,
                        "iso_gc_step: called from inside a collection");
  gc_marking *m = &iso->heap.marking;
  int s = load_state(m);
  if (s == ISO_GC_CYCLE_MARKING) {
    gc_marking_step(iso, max_bytes ? max_bytes : 1);
  } else if (s == ISO_GC_CYCLE_SWEEPING) {
    advance_sweep(iso, max_bytes / GC_PAGE_SIZE + 1, false);
  }
  report_elsewhere(iso);
  return ISO_OK;
}
