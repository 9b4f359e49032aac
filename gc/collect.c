/*
 * Collections of one isolate: when they run, what they do, what they
 * report. Also the isolate's heap set-up, allocation entry points and
 * external memory.
 *
 * Note [Full collection]
 * A full collection (iso_gc(FULL), the heap limit, stress mode) is the
 * concurrent cycle of gc/concurrent.c run to its end in one pause of this
 * isolate:
 *   1. A cycle already marking is finished first (its garbage is floating
 *      from an older snapshot), and a pending sweep is completed.
 *   2. The join: a scavenge that evacuates the young generation and, on
 *      the way, shades every old object referenced from a root or from a
 *      surviving young object; promoted objects are black and scanned.
 *   3. Marking drains the segment worklist on this thread (GC threads
 *      help); it traces old objects only (young referents are survivors
 *      already scanned in step 2).
 *   4. The end of marking and the sweep, completed before returning.
 * An isolate's old objects are reachable only from that isolate (there are
 * no cross-isolate references), so one isolate's full collection marks
 * and sweeps just its own pages, pausing nobody else.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gc_internal.h"

#define DEFAULT_MAX_YOUNG (128u << 20)
#define MIN_MAX_YOUNG (512u << 10)
#define DEFAULT_MAX_OLD ((size_t)2 << 30)
#define MIN_MAX_OLD ((size_t)1 << 20)
#define MIN_TRIGGER ((size_t)8 << 20)

/* ---- set-up ---- */

static unsigned env_flag(const char *name) {
  const char *v = getenv(name);
  return v && v[0] && strcmp(v, "0") != 0;
}

static void env_stress(gc_heap *h) {
  const char *v = getenv("ISO_GC_STRESS");
  if (!v) return;
  /* The variable, when set, decides both settings (over -Dgc_stress). */
  h->stress_scavenge_every = h->stress_full_every = 0;
  unsigned long n;
  const char *s = strstr(v, "scavenge=");
  if (s && (n = strtoul(s + 9, NULL, 10)) > 0) h->stress_scavenge_every = (unsigned)n;
  const char *f = strstr(v, "full=");
  if (f && (n = strtoul(f + 5, NULL, 10)) > 0) h->stress_full_every = (unsigned)n;
}

void gc_old_update_trigger(gc_heap *h, size_t used, size_t live,
                           size_t marking_alloc) {
  /* As Go's default pacing: the heap's goal is twice the live size (what
   * the last marking traced; objects allocated during marking were
   * marked without being traced, and in a churning program most are
   * garbage by the next cycle), and the cycle starts early enough that
   * the allocation it sees while marking (as much as the last one saw)
   * ends near the goal. It starts no later than once the live size has
   * been allocated since the sweep, and no sooner than half of it (at
   * least MIN_TRIGGER), so that marking does not run back to back: with
   * a quarter, old_churn's GC thread marked 70% of the time and the
   * program ran 20% slower; with half, 8% slower than with no early
   * start, for a peak RSS of 1.24 to 1.40 GB instead of 1.55 to 1.62.
   *   The least room is MIN_TRIGGER, or twice the young generation's
   * semispace if that is more: one scavenge in fast promotion moves a
   * whole semispace at once, and a small live set (binary-trees' isolate
   * that builds one big tree after another) would otherwise start a cycle
   * after every tree or two, marking the tree in progress each time and
   * making every promotion during the marking black. */
  const gc_young *y = &h->young;
  size_t semi = (y->probing ? y->saved_capacity : y->capacity_pages) *
                (size_t)GC_PAGE_AREA;
  size_t floor = 2 * semi > MIN_TRIGGER ? 2 * semi : MIN_TRIGGER;
  size_t grow = live > floor ? live : floor;
  size_t least = live / 2 > floor ? live / 2 : floor;
  size_t t = used + grow;
  size_t early = 2 * live > marking_alloc ? 2 * live - marking_alloc : 0;
  if (early < t) t = early > used + least ? early : used + least;
  h->old.trigger = t < h->old.limit ? t : h->old.limit;
}

iso_status gc_heap_init(iso_isolate *iso, const iso_isolate_params *p) {
  gc_heap *h = &iso->heap;
  memset(h, 0, sizeof *h);
  size_t young = p->max_young_generation_size ? p->max_young_generation_size
                                              : DEFAULT_MAX_YOUNG;
  size_t old = p->max_old_generation_size ? p->max_old_generation_size
                                          : DEFAULT_MAX_OLD;
  if (young < MIN_MAX_YOUNG || old < MIN_MAX_OLD)
    return isolate_fail(ISO_ERR_RANGE,
                        "iso_isolate_new: max_young_generation_size must be "
                        ">= 512 KiB and max_old_generation_size >= 1 MiB");
  h->flags = p->flags;
  if (env_flag("ISO_TRACE_GC")) h->flags |= ISO_ISOLATE_TRACE_GC;
  if (env_flag("ISO_VERIFY_HEAP")) h->flags |= ISO_ISOLATE_VERIFY_HEAP;
#if ISO_DEBUG_CHECKS >= 2
  h->flags |= ISO_ISOLATE_VERIFY_HEAP;
#endif
  h->debug_flags = p->debug_flags;
  h->stress_scavenge_every = p->stress_scavenge_every;
  h->stress_full_every = p->stress_full_every;
#ifdef ISO_GC_STRESS_DEFAULT
  if (!h->stress_scavenge_every && !h->stress_full_every) {
    h->stress_scavenge_every = 7;
    h->stress_full_every = 101;
  }
#endif
  if (!p->stress_scavenge_every && !p->stress_full_every) env_stress(h);
  if (h->stress_full_every && !h->stress_scavenge_every)
    h->stress_scavenge_every = UINT32_MAX;
  h->trace_cb = p->trace_callback;
  h->trace_data = p->trace_data;
  h->old.limit = h->old.initial_limit = old;
  gc_old_update_trigger(h, 0, 0, 0);
  h->limit_request_seen = thr_load_relaxed(&iso->rt->limit_request);
  h->start_ns = h->last_gc_end_ns = isolate_now_ns();
  h->hash_state = (uint32_t)((uintptr_t)iso >> 4) ^ 0x9e3779b9u;
  gc_young_init(iso, young);
  return gc_marking_init(iso);
}

static void extern_free_store(gc_heap *h, gc_extern *e) {
  if (e->data || e->length) {
    if (e->free_cb) {
      e->free_cb(e->data, e->length, e->ctx);
    } else if (!e->external) {
      free(e->data);
    }
  }
  h->external_bytes -= e->length;
  if (e->counted) h->array_buffer_bytes -= e->length;
  e->data = NULL;
  e->length = 0;
}

static void externs_free_all(gc_heap *h, gc_extern_vec *v) {
  for (size_t i = 0; i < v->count; i++) {
    extern_free_store(h, v->items[i]);
    free(v->items[i]);
  }
  free(v->items);
  memset(v, 0, sizeof *v);
}

void gc_heap_destroy(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_marking_destroy(iso);
  externs_free_all(h, &h->young_externs);
  externs_free_all(h, &h->old_externs);
  externs_free_all(h, &h->dead_externs);
  gc_young_release_all(iso);
  gc_old_release_all(iso);
  free(h->rset_pages);
  h->rset_pages = NULL;
  h->rset_count = h->rset_cap = 0;
}

/* ---- allocation ---- */

void gc_object_init(iso_isolate *iso, void *mem, uint32_t type, size_t bytes) {
  const gc_type *t = &iso->rt->types[type];
  uint64_t *o = mem;
  o[0] = gc_hdr_make(type, bytes / 8);
  size_t words = bytes / 8, slots = 0;
  if (t->layout == GC_LAYOUT_FIXED) slots = t->slot_count;
  if (t->layout == GC_LAYOUT_ALL) slots = words - 1;
  for (size_t i = 1; i <= slots; i++) o[i] = ISO_UNDEFINED;
  if (words > slots + 1) memset(o + 1 + slots, 0, (words - slots - 1) * 8);
}

iso_value gc_alloc(iso_isolate *iso, uint32_t type, size_t bytes) {
  void *mem = gc_alloc_raw(iso, bytes);
  if (!mem) return 0;
  gc_object_init(iso, mem, type, bytes);
  return (iso_value)(uintptr_t)mem;
}

iso_value gc_alloc_old(iso_isolate *iso, uint32_t type, size_t bytes) {
  if (isolate_terminating(iso)) {
    isolate_terminated_error(iso);
    return 0;
  }
  void *mem = gc_old_alloc_collecting(iso, bytes);
  if (!mem) return 0;
  gc_object_init(iso, mem, type, bytes);
  return (iso_value)(uintptr_t)mem;
}

size_t gc_object_size(iso_value v) {
  return gc_size_from_header(v, gc_header(v));
}

size_t gc_object_slot_count(iso_value v) {
  uint64_t h = gc_header(v);
  return gc_slots_from_header(isolate_runtime_of(v)->types, h,
                              gc_size_from_header(v, h));
}

uint32_t gc_identity_hash(iso_isolate *iso, iso_value v) {
  uint64_t h = gc_header(v);
  uint32_t hash = gc_hdr_hash(h);
  if (hash) return hash;
  uint32_t x = iso->heap.hash_state;
  do {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    hash = x & (uint32_t)GC_HDR_HASH_MASK;
  } while (hash == 0);
  iso->heap.hash_state = x;
  thr_store_relaxed(gc_obj(v), h | ((uint64_t)hash << GC_HDR_HASH_SHIFT));
  return hash;
}

/* ---- external memory ---- */

static void store_unmap(void *data, size_t length, void *ctx) {
  (void)ctx;
  munmap(data, length);
}

void *gc_store_alloc(size_t length, iso_free_callback *free_cb) {
  *free_cb = NULL;
  if (length < GC_STORE_MMAP_MIN) return calloc(1, length);
  void *p = mmap(NULL, length, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  *free_cb = store_unmap;
  return p;
}

void gc_store_free(void *data, size_t length, iso_free_callback free_cb) {
  if (free_cb) {
    free_cb(data, length, NULL);
  } else {
    free(data);
  }
}

static bool vec_push(gc_extern_vec *v, gc_extern *e) {
  if (v->count == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 16;
    gc_extern **n = realloc(v->items, cap * sizeof *n);
    if (!n) return false;
    v->items = n;
    v->cap = cap;
  }
  v->items[v->count++] = e;
  return true;
}

gc_extern *gc_extern_add(iso_isolate *iso, iso_value obj, void *data,
                         size_t length, iso_free_callback free_cb, void *ctx,
                         bool external) {
  gc_heap *h = &iso->heap;
  gc_extern *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->data = data;
  e->length = length;
  e->free_cb = free_cb;
  e->ctx = ctx;
  e->obj = obj;
  e->external = external;
  e->counted = true;
  gc_extern_vec *v = gc_is_young_ref(obj) ? &h->young_externs : &h->old_externs;
  if (!vec_push(v, e)) {
    free(e);
    return NULL;
  }
  h->external_bytes += length;
  h->array_buffer_bytes += length;
  h->external_since_gc += length;
  size_t step = h->external_after_gc > GC_EXTERNAL_STEP ? h->external_after_gc
                                                     : GC_EXTERNAL_STEP;
  if (h->external_since_gc > step && !h->external_pressure) {
    h->external_pressure = true;
    gc_young_limit_changed(iso);
  }
  return e;
}

gc_extern *gc_extern_add_opaque(iso_isolate *iso, iso_value obj, void *data,
                                iso_free_callback free_cb, void *ctx) {
  gc_extern *e = gc_extern_add(iso, obj, data, 0, free_cb, ctx, true);
  if (e) e->counted = false;
  return e;
}

void gc_extern_steal(iso_isolate *iso, gc_extern *e, gc_extern *out) {
  gc_heap *h = &iso->heap;
  *out = *e;
  h->external_bytes -= e->length;
  if (e->counted) h->array_buffer_bytes -= e->length;
  e->data = NULL;
  e->length = 0;
  e->detached = true;
}

void gc_extern_release(iso_isolate *iso, gc_extern *e) {
  extern_free_store(&iso->heap, e);
  e->detached = true;
}

void gc_externs_after_scavenge(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  gc_extern_vec *y = &h->young_externs;
  size_t kept = 0;
  for (size_t i = 0; i < y->count; i++) {
    gc_extern *e = y->items[i];
    uint64_t hdr = *gc_obj(e->obj);
    if (!gc_hdr_is_forward(hdr)) {
      extern_free_store(h, e); /* its buffer died young */
      free(e);
      continue;
    }
    e->obj = (iso_value)hdr;
    if (gc_is_young_ref(e->obj)) {
      y->items[kept++] = e;
    } else if (!vec_push(&h->old_externs, e)) {
      y->items[kept++] = e; /* retry the move at the next scavenge */
    }
  }
  y->count = kept;
}

void gc_externs_after_mark(iso_isolate *iso, bool defer) {
  gc_heap *h = &iso->heap;
  gc_extern_vec *o = &h->old_externs;
  size_t kept = 0;
  for (size_t i = 0; i < o->count; i++) {
    gc_extern *e = o->items[i];
    if (!gc_mark_test(e->obj)) {
      /* Free callbacks run on the owner's thread: a GC thread ending the
       * marking of a parked isolate leaves them for its unpark. */
      if (defer && vec_push(&h->dead_externs, e)) continue;
      extern_free_store(h, e);
      free(e);
      continue;
    }
    o->items[kept++] = e;
  }
  o->count = kept;
}

void gc_externs_free_deferred(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  if (h->dead_externs.count) externs_free_all(h, &h->dead_externs);
}

/* ---- tracing and callbacks ---- */

static const char *reason_name(gc_reason r) {
  switch (r) {
    case GC_REASON_ALLOCATION_FAILURE:
      return "allocation failure";
    case GC_REASON_TESTING:
      return "testing";
    case GC_REASON_STRESS:
      return "stress";
    case GC_REASON_LIMIT:
      return "heap limit";
    case GC_REASON_TRIGGER:
      return "old space growth";
    case GC_REASON_EXTERNAL:
      return "external memory pressure";
  }
  return "unknown";
}

static void callbacks(iso_isolate *iso, iso_gc_phase phase, iso_gc_kind k) {
  for (int i = 0; i < GC_MAX_CALLBACKS; i++)
    if (iso->heap.gc_callbacks[i].cb)
      iso->heap.gc_callbacks[i].cb(iso, phase, k,
                                   iso->heap.gc_callbacks[i].data);
}

typedef struct gc_cycle {
  uint64_t start_ns;
  size_t used_before, total_before;
} gc_cycle;

static void cycle_begin(iso_isolate *iso, gc_cycle *c, iso_gc_kind k) {
  gc_lab_detach(iso);
  iso->heap.in_gc = true;
  callbacks(iso, ISO_GC_PROLOGUE, k);
  c->used_before = gc_heap_used(iso);
  c->total_before = gc_heap_total(iso);
  /* Account young allocation since the last scavenge before it is gone. */
  size_t used = gc_young_used(iso);
  if (used > iso->heap.young.survived_bytes)
    iso->heap.allocated_bytes_total += used - iso->heap.young.survived_bytes;
  c->start_ns = isolate_now_ns();
}

void gc_pause_record(iso_isolate *iso, gc_pause_kind k, double ms) {
  gc_heap *h = &iso->heap;
  gc_pause_hist_add(k == GC_PAUSE_FULL       ? &h->full_pauses
                    : k == GC_PAUSE_MARKING ? &h->marking_pauses
                                            : &h->scavenge_pauses,
                    ms);
  gc_pause_hist_add(&h->all_pauses, ms);
  h->pause_ms_total += ms;
}

static void emit_trace(gc_heap *h, const char *line) {
  if (h->trace_cb) {
    h->trace_cb(h->trace_data, line);
  } else {
    fprintf(stderr, "%s\n", line);
  }
}

static void mutator_utilisation(gc_heap *h, uint64_t end, double ms,
                                double *avg, double *cur) {
  double since_last = (double)(end - h->last_gc_end_ns) / 1e6;
  double elapsed = (double)(end - h->start_ns) / 1e6;
  *avg = elapsed > 0 ? 1.0 - h->pause_ms_total / elapsed : 1.0;
  *cur = since_last > 0 ? 1.0 - ms / since_last : 1.0;
  if (*avg < 0) *avg = 0;
  if (*cur < 0) *cur = 0;
}

static double elapsed_ms(gc_heap *h, uint64_t end) {
  return (double)(end - h->start_ns) / 1e6;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static void cycle_end(iso_isolate *iso, gc_cycle *c, gc_pause_kind k,
                      gc_reason reason) {
  gc_heap *h = &iso->heap;
  const char *what = k == GC_PAUSE_FULL       ? "Mark-Sweep"
                     : k == GC_PAUSE_MARKING ? "Scavenge (start of marking)"
                                             : "Scavenge";
  if (h->flags & ISO_ISOLATE_VERIFY_HEAP) {
    if (gc_verify(iso) != ISO_OK) {
      fprintf(stderr, "libisolate: heap verification failed after %s: %s\n",
              what, iso_last_error());
      abort();
    }
  }
  h->over_limit = gc_old_over_limit(iso);
  h->external_pressure = false;
  h->external_since_gc = 0;
  h->external_after_gc = h->external_bytes;
  gc_young_limit_changed(iso);
  uint64_t end = isolate_now_ns();
  double ms = (double)(end - c->start_ns) / 1e6;
  gc_pause_record(iso, k, ms);
  if (h->flags & ISO_ISOLATE_TRACE_GC) {
    char line[320];
    double avg_mu, cur_mu;
    mutator_utilisation(h, end, ms, &avg_mu, &cur_mu);
    snprintf(line, sizeof line,
             "[%d:%p:%s] %8.0f ms: %s %.1f (%.1f) -> %.1f (%.1f) MB, "
             "%.2f / %.2f ms  (average mu = %.3f, current mu = %.3f) %s;",
             (int)getpid(), (void *)iso, iso->name, elapsed_ms(h, end), what,
             mib(c->used_before), mib(c->total_before), mib(gc_heap_used(iso)),
             mib(gc_heap_total(iso)), ms, 0.0, avg_mu, cur_mu,
             reason_name(reason));
    emit_trace(h, line);
  }
  h->last_gc_end_ns = end;
  callbacks(iso, ISO_GC_EPILOGUE,
            k == GC_PAUSE_FULL ? ISO_GC_FULL : ISO_GC_MINOR);
  h->in_gc = false;
}

void gc_cycle_report(iso_isolate *iso, size_t used_before,
                     size_t total_before, double pause_ms, double bg_mark_ms,
                     double bg_sweep_ms, uint64_t start_ns, gc_reason reason) {
  gc_heap *h = &iso->heap;
  if (!(h->flags & ISO_ISOLATE_TRACE_GC)) return;
  uint64_t end = isolate_now_ns();
  char line[400];
  double avg_mu, cur_mu;
  mutator_utilisation(h, end, 0, &avg_mu, &cur_mu);
  snprintf(line, sizeof line,
           "[%d:%p:%s] %8.0f ms: Mark-Sweep (concurrent) %.1f (%.1f) -> "
           "%.1f (%.1f) MB, %.2f / %.2f ms  (+ %.2f ms marking and %.2f ms "
           "sweeping on GC threads, walltime since start of marking %.0f ms) "
           "(average mu = %.3f) %s;",
           (int)getpid(), (void *)iso, iso->name, elapsed_ms(h, end),
           mib(used_before), mib(total_before), mib(gc_heap_used(iso)),
           mib(gc_heap_total(iso)), pause_ms, bg_mark_ms + bg_sweep_ms,
           bg_mark_ms, bg_sweep_ms, (double)(end - start_ns) / 1e6, avg_mu,
           reason_name(reason));
  emit_trace(h, line);
}

/* ---- the collections ---- */

void gc_scavenge(iso_isolate *iso, gc_reason reason) {
  gc_heap *h = &iso->heap;
  if (h->in_gc) return;
  gc_cycle c;
  cycle_begin(iso, &c, ISO_GC_MINOR);
  gc_scavenge_work(iso, NULL);
  cycle_end(iso, &c, GC_PAUSE_SCAVENGE, reason);
}

double gc_scavenge_join(iso_isolate *iso, gc_worklist_local *join) {
  gc_heap *h = &iso->heap;
  if (h->in_gc) {
    gc_scavenge_work(iso, join);
    return 0;
  }
  gc_cycle c;
  cycle_begin(iso, &c, ISO_GC_MINOR);
  gc_scavenge_work(iso, join);
  cycle_end(iso, &c, GC_PAUSE_MARKING, (gc_reason)h->marking.reason);
  return (double)(h->last_gc_end_ns - c.start_ns) / 1e6;
}

/* Note [Full collection] at the top. */
void gc_full(iso_isolate *iso, gc_reason reason) {
  gc_heap *h = &iso->heap;
  if (h->in_gc) return;
  gc_cycle c;
  cycle_begin(iso, &c, ISO_GC_FULL);
  gc_marking_finish_now(iso);
  gc_marking_start(iso, reason);
  gc_marking_finish_now(iso);
  cycle_end(iso, &c, GC_PAUSE_FULL, reason);
}

void gc_cycle_poll(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  if (h->in_gc) return;
  gc_marking_poll(iso);
  if (gc_marking_state(iso) != ISO_GC_CYCLE_IDLE) return;
  if (gc_old_used(h) > h->old.trigger) {
    gc_marking_start(iso, GC_REASON_TRIGGER);
    return;
  }
  /* Note [The runtime's heap limit] in old.c: another isolate asked. */
  uint64_t req = thr_load_relaxed(&iso->rt->limit_request);
  if (req != h->limit_request_seen) {
    h->limit_request_seen = req;
    gc_marking_start(iso, GC_REASON_LIMIT);
  }
}

void gc_poll(iso_isolate *iso) {
  gc_heap *h = &iso->heap;
  if (h->in_gc) return;
  gc_lab_detach(iso);
  isolate_stamp_active(iso);
  if (h->stress_scavenge_every) gc_stress_tick(iso);
  gc_cycle_poll(iso);
}

iso_status iso_gc(iso_isolate *iso, iso_gc_kind kind) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (kind != ISO_GC_MINOR && kind != ISO_GC_FULL)
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "iso_gc: kind must be ISO_GC_MINOR or ISO_GC_FULL");
  if (iso->heap.in_gc)
    return isolate_fail(ISO_ERR_STATE,
                        "iso_gc: called from inside a collection");
  if (kind == ISO_GC_MINOR) {
    gc_scavenge(iso, GC_REASON_TESTING);
  } else {
    gc_full(iso, GC_REASON_TESTING);
  }
  return ISO_OK;
}

/* ---- walking the heap ---- */

void gc_make_iterable(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  gc_lab_detach(iso);
  if (o->lab_top && o->lab_top < o->lab_limit)
    gc_fill(o->lab_top, (size_t)(o->lab_limit - o->lab_top));
}

static void walk_range(iso_isolate *iso, char *from, char *to,
                       gc_object_visitor fn, void *ctx) {
  while (from < to) {
    iso_value o = (iso_value)(uintptr_t)from;
    size_t bytes = gc_hdr_words(*gc_obj(o)) * 8;
    fn(iso, o, ctx);
    if (bytes == 0) return; /* corrupt; the verifier reports it */
    from += bytes;
  }
}

void gc_walk_heap(iso_isolate *iso, gc_object_visitor fn, void *ctx) {
  gc_heap *h = &iso->heap;
  /* Pages being swept on other threads are not walkable. */
  if (gc_marking_state(iso) == ISO_GC_CYCLE_SWEEPING)
    gc_marking_complete_sweep(iso);
  gc_make_iterable(iso);
  for (gc_page *p = h->young.pages; p; p = p->next)
    walk_range(iso, p->area_start,
               p == h->young.last ? iso->inl.alloc_top : p->area_end, fn, ctx);
  for (gc_page *p = h->old.pages; p; p = p->next)
    walk_range(iso, p->area_start, p->area_end, fn, ctx);
  for (gc_page *p = h->old.large; p; p = p->next)
    fn(iso, (iso_value)(uintptr_t)p->area_start, ctx);
}
