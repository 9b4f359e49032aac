/*
 * What an isolate's heap looks like from outside: memory usage, V8-named
 * heap statistics, pause histograms, objects per type.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gc_internal.h"

/* ---- pause histogram: 32 linear buckets of 1 us, then 16 per octave,
 * so a percentile is within 1/32 of the true value. */

static unsigned hist_bucket(double us) {
  if (us < 32) return us < 0 ? 0 : (unsigned)us;
  int e;
  double m = frexp(us, &e); /* us = m * 2^e, 0.5 <= m < 1 */
  unsigned idx = 32 + (unsigned)(e - 6) * 16 + (unsigned)((m * 2 - 1) * 16);
  return idx < GC_HIST_BUCKETS ? idx : GC_HIST_BUCKETS - 1;
}

static double bucket_mid_us(unsigned b) {
  if (b < 32) return b + 0.5;
  unsigned e = (b - 32) / 16 + 5, m = (b - 32) % 16;
  return ldexp(1.0 + (m + 0.5) / 16.0, (int)e);
}

void gc_pause_hist_add(gc_pause_hist *h, double ms) {
  h->count++;
  h->total_ms += ms;
  if (ms > h->max_ms) h->max_ms = ms;
  h->buckets[hist_bucket(ms * 1000.0)]++;
}

static double hist_quantile(const gc_pause_hist *h, double q) {
  if (!h->count) return 0;
  uint64_t rank = (uint64_t)ceil(q * (double)h->count), seen = 0;
  if (rank == 0) rank = 1;
  for (unsigned b = 0; b < GC_HIST_BUCKETS; b++) {
    seen += h->buckets[b];
    if (seen >= rank) {
      double ms = bucket_mid_us(b) / 1000.0;
      return ms < h->max_ms ? ms : h->max_ms;
    }
  }
  return h->max_ms;
}

void gc_pause_hist_read(const gc_pause_hist *h, iso_pause_stats_t *out) {
  out->count = h->count;
  out->total_ms = h->total_ms;
  out->max_ms = h->max_ms;
  out->p50_ms = hist_quantile(h, 0.50);
  out->p99_ms = hist_quantile(h, 0.99);
}

/* ---- sizes ---- */

/* The free rest of the old space's LAB. The public entries below detach
 * it first (Note [The inline old LAB] in young.c). */
static size_t lab_free(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  return o->lab_top ? (size_t)(o->lab_limit - o->lab_top) : 0;
}

static size_t old_used(iso_isolate *iso) {
  gc_old *o = &iso->heap.old;
  size_t area = o->page_count * GC_PAGE_AREA;
  size_t free_b = o->fl.free_bytes + lab_free(iso);
  return (area > free_b ? area - free_b : 0) + o->large_object_bytes;
}

size_t gc_heap_used(iso_isolate *iso) {
  return gc_young_used(iso) + old_used(iso);
}

size_t gc_heap_total(iso_isolate *iso) {
  return iso->heap.young.page_count * GC_PAGE_SIZE +
         gc_old_committed(&iso->heap);
}

size_t gc_process_rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t malloced(iso_isolate *iso) {
  size_t n = 0;
  for (isolate_handle_block *b = iso->hfirst; b; b = b->next) n += sizeof *b;
  if (iso->hspare) n += sizeof *iso->hspare;
  n += iso->global_count * sizeof(iso_global);
  n += (iso->heap.young_externs.cap + iso->heap.old_externs.cap) *
       sizeof(gc_extern *);
  n += (iso->heap.young_externs.count + iso->heap.old_externs.count) *
       sizeof(gc_extern);
  n += sizeof *iso;
  return n;
}

iso_status iso_memory_usage(iso_isolate *iso, iso_memory_usage_t *out) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  gc_lab_detach(iso); /* its bytes are counted then */
  if (!out) return isolate_fail(ISO_ERR_ARGUMENT, "iso_memory_usage: NULL");
  out->rss = gc_process_rss();
  out->heap_total = gc_heap_total(iso);
  out->heap_used = gc_heap_used(iso);
  out->external = iso->heap.external_bytes;
  out->array_buffers = iso->heap.array_buffer_bytes;
  return ISO_OK;
}

iso_status iso_heap_statistics(iso_isolate *iso, iso_heap_statistics_t *out) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  gc_lab_detach(iso); /* its bytes are counted then */
  if (!out) return isolate_fail(ISO_ERR_ARGUMENT, "iso_heap_statistics: NULL");
  gc_heap *h = &iso->heap;
  memset(out, 0, sizeof *out);
  out->total_heap_size = gc_heap_total(iso);
  out->total_physical_size = out->total_heap_size;
  out->used_heap_size = gc_heap_used(iso);
  size_t young_max = h->young.max_pages * GC_PAGE_SIZE * 2;
  size_t old_limit = h->old.limit;
  if (iso->rt->heap_limit && iso->rt->heap_limit < old_limit)
    old_limit = iso->rt->heap_limit; /* the runtime's, when smaller */
  out->heap_size_limit = old_limit + young_max;
  size_t committed = gc_old_committed(h);
  size_t old_avail = h->old.limit > committed ? h->old.limit - committed : 0;
  iso_runtime *rt = iso->rt;
  if (rt->heap_limit) {
    /* The runtime's limit may leave less (Note [The runtime's heap limit]
     * in gc/old.c). */
    size_t all = thr_load_relaxed(&rt->old_committed);
    size_t rt_avail = rt->heap_limit > all ? rt->heap_limit - all : 0;
    if (rt_avail < old_avail) old_avail = rt_avail;
  }
  size_t young_cap = h->young.capacity_pages * GC_PAGE_AREA;
  size_t young_used = gc_young_used(iso);
  out->total_available_size =
      old_avail + h->old.fl.free_bytes +
      (young_cap > young_used ? young_cap - young_used : 0);
  out->malloced_memory = malloced(iso);
  out->peak_malloced_memory = out->malloced_memory;
  out->external_memory = h->external_bytes;
  out->total_global_handles_size = iso->global_count * sizeof(iso_global);
  out->used_global_handles_size = out->total_global_handles_size;
  out->does_zap_garbage = ISO_DEBUG_CHECKS >= 1;
  return ISO_OK;
}

size_t iso_heap_space_count(void) { return 3; }

iso_status iso_heap_space_statistics(iso_isolate *iso, size_t index,
                                     iso_heap_space_statistics_t *out) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  gc_lab_detach(iso); /* its bytes are counted then */
  if (!out)
    return isolate_fail(ISO_ERR_ARGUMENT, "iso_heap_space_statistics: NULL");
  gc_heap *h = &iso->heap;
  memset(out, 0, sizeof *out);
  switch (index) {
    case 0: {
      out->space_name = "new_space";
      /* Committed pages, so the spaces add up to total_heap_size; pages
       * are taken from the pool as allocation reaches them. */
      out->space_size = h->young.page_count * GC_PAGE_SIZE;
      out->space_used_size = gc_young_used(iso);
      size_t area = h->young.page_count * GC_PAGE_AREA;
      out->space_available_size =
          area > out->space_used_size ? area - out->space_used_size : 0;
      break;
    }
    case 1:
      out->space_name = "old_space";
      out->space_size = h->old.page_count * GC_PAGE_SIZE;
      out->space_used_size = old_used(iso) - h->old.large_object_bytes;
      out->space_available_size = h->old.fl.free_bytes + lab_free(iso);
      break;
    case 2:
      out->space_name = "large_object_space";
      out->space_size = h->old.large_bytes;
      out->space_used_size = h->old.large_object_bytes;
      out->space_available_size = 0;
      break;
    default:
      return isolate_fail(ISO_ERR_RANGE,
                          "iso_heap_space_statistics: index %zu, there are "
                          "%zu spaces",
                          index, iso_heap_space_count());
  }
  out->physical_space_size = out->space_size;
  return ISO_OK;
}

iso_status iso_gc_statistics(iso_isolate *iso, iso_gc_statistics_t *out) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  gc_lab_detach(iso); /* its bytes are counted then */
  if (!out) return isolate_fail(ISO_ERR_ARGUMENT, "iso_gc_statistics: NULL");
  gc_heap *h = &iso->heap;
  gc_pause_hist_read(&h->scavenge_pauses, &out->scavenge);
  gc_pause_hist_read(&h->full_pauses, &out->full);
  gc_pause_hist_read(&h->marking_pauses, &out->marking);
  gc_pause_hist_read(&h->all_pauses, &out->all);
  out->cycles = h->marking.cycles;
  out->background_mark_ms =
      (double)thr_load_relaxed(&h->marking.bg_mark_ns) / 1e6;
  out->background_sweep_ms =
      (double)thr_load_relaxed(&h->marking.bg_sweep_ns) / 1e6;
  out->promoted_bytes = h->promoted_bytes_total;
  out->pretenured_bytes = h->young.pretenured_total;
  size_t used = gc_young_used(iso);
  out->allocated_bytes =
      h->allocated_bytes_total +
      (used > h->young.survived_bytes ? used - h->young.survived_bytes : 0);
  return ISO_OK;
}

/* ---- objects per type ---- */

typedef struct type_tally {
  size_t *count, *bytes;
} type_tally;

static void tally(iso_isolate *iso, iso_value o, void *ctx) {
  (void)iso;
  type_tally *t = ctx;
  uint64_t h = gc_header(o);
  uint32_t ty = gc_hdr_type(h);
  if (ty == GC_TYPE_FILLER) return;
  t->count[ty]++;
  t->bytes[ty] += gc_size_from_header(o, h);
}

static int by_bytes_desc(const void *a, const void *b) {
  const iso_type_statistics_t *x = a, *y = b;
  return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

iso_status iso_heap_object_statistics(iso_isolate *iso,
                                      iso_type_statistics_t *out, size_t cap,
                                      size_t *ntypes) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if ((!out && cap) || !ntypes)
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "iso_heap_object_statistics: NULL output");
  uint32_t n = thr_load_acquire(&iso->rt->type_count);
  type_tally t = {calloc(n, sizeof(size_t)), calloc(n, sizeof(size_t))};
  iso_type_statistics_t *all = calloc(n, sizeof *all);
  if (!t.count || !t.bytes || !all) {
    free(t.count);
    free(t.bytes);
    free(all);
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                        "iso_heap_object_statistics: out of memory");
  }
  gc_walk_heap(iso, tally, &t);
  size_t k = 0;
  for (uint32_t i = 1; i < n; i++)
    if (t.count[i]) {
      all[k].type = i;
      all[k].name = iso->rt->types[i].name;
      all[k].count = t.count[i];
      all[k].bytes = t.bytes[i];
      k++;
    }
  qsort(all, k, sizeof *all, by_bytes_desc);
  if (k && cap) memcpy(out, all, (k < cap ? k : cap) * sizeof *all);
  *ntypes = k;
  free(t.count);
  free(t.bytes);
  free(all);
  return ISO_OK;
}
