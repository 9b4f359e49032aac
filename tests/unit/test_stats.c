/*
 * Statistics: memory usage, heap and per-space statistics, pause
 * statistics and per-type object counts, checked for consistency with
 * each other and with what the test allocated.
 */
#include "helpers.h"

#define MiB ((size_t)1 << 20)

static iso_runtime *rt;
static iso_type leak;

static void read_spaces(iso_isolate *iso, iso_heap_space_statistics_t *sp,
                        size_t *total, size_t *used) {
  size_t n = iso_heap_space_count();
  *total = *used = 0;
  for (size_t i = 0; i < n; i++) {
    memset(&sp[i], 0, sizeof sp[i]);
    CHECK_OK(iso_heap_space_statistics(iso, i, &sp[i]));
    CHECK(sp[i].space_name != NULL);
    CHECK_ULE(sp[i].space_used_size, sp[i].space_size);
    *total += sp[i].space_size;
    *used += sp[i].space_used_size;
  }
}

static size_t space_index(const iso_heap_space_statistics_t *sp,
                          const char *name) {
  for (size_t i = 0; i < iso_heap_space_count(); i++)
    if (strcmp(sp[i].space_name, name) == 0) return i;
  CHECK(!"space not found");
  return 0;
}

static void check_heap_consistent(iso_isolate *iso, size_t limit) {
  iso_heap_statistics_t hs;
  memset(&hs, 0xa5, sizeof hs);
  CHECK_OK(iso_heap_statistics(iso, &hs));
  CHECK_ULE(hs.used_heap_size, hs.total_heap_size);
  CHECK_UEQ(hs.total_heap_size_executable, 0);
  CHECK_UEQ(hs.heap_size_limit, limit);
  CHECK_ULE(hs.malloced_memory, hs.peak_malloced_memory);
  CHECK_ULE(hs.used_global_handles_size, hs.total_global_handles_size);
  CHECK(hs.does_zap_garbage == 0 || hs.does_zap_garbage == 1);
  CHECK_ULE(hs.total_available_size, limit);

  iso_heap_space_statistics_t sp[8];
  size_t total, used;
  CHECK_ULE(iso_heap_space_count(), 8);
  read_spaces(iso, sp, &total, &used);
  CHECK_UEQ(total, hs.total_heap_size);
  CHECK_UEQ(used, hs.used_heap_size);

  iso_memory_usage_t u = unit_usage(iso);
  CHECK_UEQ(u.heap_total, hs.total_heap_size);
  CHECK_UEQ(u.heap_used, hs.used_heap_size);
  CHECK_UEQ(u.external, hs.external_memory);
  CHECK_ULE(u.array_buffers, u.external);
  CHECK_ULE(u.heap_used, u.heap_total);
  CHECK_UGE(u.rss, 1);
}

static void test_spaces(void) {
  const size_t default_limit =
      UNIT_HEAP_SIZE_LIMIT(UNIT_DEFAULT_OLD_LIMIT, UNIT_DEFAULT_YOUNG_SIZE);
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  CHECK_UEQ(iso_heap_space_count(), 3);
  iso_heap_space_statistics_t sp[3];
  size_t total, used;
  read_spaces(iso, sp, &total, &used);
  /* Each of V8's names exactly once. */
  static const char *const names[3] = {"new_space", "old_space",
                                       "large_object_space"};
  for (int i = 0; i < 3; i++) {
    int found = 0;
    for (int j = 0; j < 3; j++)
      found += strcmp(sp[j].space_name, names[i]) == 0;
    CHECK_EQ(found, 1);
  }
  iso_heap_space_statistics_t out;
  CHECK_FAILS_ST(iso_heap_space_statistics(iso, 3, &out), ISO_ERR_RANGE,
                 "range|index|space");
  CHECK_FAILS_ST(iso_heap_space_statistics(iso, (size_t)-1, &out),
                 ISO_ERR_RANGE, "");
  CHECK_FAILS_ST(iso_heap_space_statistics(iso, 0, NULL), ISO_ERR_ARGUMENT, "");
  CHECK_FAILS_ST(iso_heap_space_statistics(NULL, 0, &out), ISO_ERR_ARGUMENT,
                 "");
  size_t inew = space_index(sp, "new_space");
  size_t iold = space_index(sp, "old_space");
  size_t ilarge = space_index(sp, "large_object_space");

  /* Small objects appear in new_space (in GC stress mode, some may be
   * promoted already)... */
  iso_scope sc;
  iso_scope_open(iso, &sc);
  size_t new_before = sp[inew].space_used_size;
  size_t old_before = sp[iold].space_used_size;
  for (int i = 0; i < 1000; i++) CHECK(iso_array_new(iso, 30) != NULL);
  read_spaces(iso, sp, &total, &used);
  CHECK_UGE(sp[inew].space_used_size + sp[iold].space_used_size,
            new_before + old_before + 1000 * 30 * 8);
#if !UNIT_GC_STRESS
  CHECK_UGE(sp[inew].space_used_size, new_before + 1000 * 30 * 8);
#endif
  /* ...then in old_space once promoted... */
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  read_spaces(iso, sp, &total, &used);
  CHECK_UGE(sp[iold].space_used_size, old_before + 1000 * 30 * 8);
  /* ...and big ones in large_object_space straight away. */
  size_t large_before = sp[ilarge].space_used_size;
  iso_handle big = iso_array_new(iso, 100000);
  CHECK(big != NULL);
  read_spaces(iso, sp, &total, &used);
  CHECK_UGE(sp[ilarge].space_used_size, large_before + 100000 * 8);
  CHECK_UGE(sp[ilarge].space_size, sp[ilarge].space_used_size);
  check_heap_consistent(iso, default_limit);
  CHECK_OK(iso_scope_close(&sc));

  /* All of it goes after a full GC. */
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  read_spaces(iso, sp, &total, &used);
  CHECK_ULE(sp[ilarge].space_used_size, large_before);
  CHECK_ULE(sp[iold].space_used_size + sp[inew].space_used_size,
            old_before + new_before + 64 * 1024);
  check_heap_consistent(iso, default_limit);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_heap_statistics(void) {
  iso_isolate_params p = unit_params();
  p.max_old_generation_size = 48 * MiB;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  const size_t limit48 =
      UNIT_HEAP_SIZE_LIMIT(48 * MiB, UNIT_DEFAULT_YOUNG_SIZE);
  check_heap_consistent(iso, limit48);

  iso_heap_statistics_t h0, h1, h2;
  CHECK_OK(iso_heap_statistics(iso, &h0));
  /* 2 MiB of live strings raise the used size by at least that much. */
  iso_scope sc;
  iso_scope_open(iso, &sc);
  static char text[2048];
  unit_fill(text, sizeof text, 3);
  for (int i = 0; i < 1024; i++)
    CHECK(iso_string_new(iso, text, sizeof text) != NULL);
  CHECK_OK(iso_heap_statistics(iso, &h1));
  CHECK_UGE(h1.used_heap_size, h0.used_heap_size + 2 * MiB);
  CHECK_UGE(h1.total_heap_size, h1.used_heap_size);
  check_heap_consistent(iso, limit48);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(iso_heap_statistics(iso, &h2));
  CHECK_UGE(h2.used_heap_size, h0.used_heap_size + 2 * MiB);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(iso_heap_statistics(iso, &h2));
  CHECK_ULE(h2.used_heap_size, h0.used_heap_size + 256 * 1024);
  check_heap_consistent(iso, limit48);

  /* Global handles are counted. */
  iso_global *g[100];
  for (int i = 0; i < 100; i++) g[i] = iso_global_new(iso, iso_smi(i));
  CHECK_OK(iso_heap_statistics(iso, &h1));
  CHECK_UGE(h1.used_global_handles_size,
            h2.used_global_handles_size + 100 * sizeof(iso_value));
  for (int i = 0; i < 100; i++) iso_global_free(iso, g[i]);
  CHECK_OK(iso_heap_statistics(iso, &h1));
  CHECK_UEQ(h1.used_global_handles_size, h2.used_global_handles_size);

  /* External memory. */
  iso_handle ab = iso_array_buffer_new(iso, MiB);
  CHECK_OK(iso_heap_statistics(iso, &h1));
  CHECK_UEQ(h1.external_memory, h2.external_memory + MiB);
  CHECK_OK(iso_array_buffer_detach(iso, iso_get(ab)));
  CHECK_OK(iso_heap_statistics(iso, &h1));
  CHECK_UEQ(h1.external_memory, h2.external_memory);

  iso_memory_usage_t u;
  CHECK_FAILS_ST(iso_heap_statistics(iso, NULL), ISO_ERR_ARGUMENT, "");
  CHECK_FAILS_ST(iso_heap_statistics(NULL, &h1), ISO_ERR_ARGUMENT, "");
  CHECK_FAILS_ST(iso_memory_usage(iso, NULL), ISO_ERR_ARGUMENT, "");
  CHECK_FAILS_ST(iso_memory_usage(NULL, &u), ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));
}

static void test_memory_usage(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_memory_usage_t u0 = unit_usage(iso);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  static char text[1000];
  unit_fill(text, sizeof text, 9);
  for (int i = 0; i < 3000; i++)
    CHECK(iso_string_new(iso, text, sizeof text) != NULL);
  iso_memory_usage_t u1 = unit_usage(iso);
  CHECK_UGE(u1.heap_used, u0.heap_used + 3000 * 1000);
  CHECK_UGE(u1.heap_total, u1.heap_used);
  CHECK_UGE(u1.rss, u1.heap_used / 2); /* pages are touched, so resident */
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  iso_memory_usage_t u2 = unit_usage(iso);
  CHECK_ULE(u2.heap_used, u0.heap_used + 256 * 1024);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_gc_statistics(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_gc_statistics_t s0 = unit_gc_stats(iso);
#if !UNIT_GC_STRESS
  CHECK_UEQ(s0.all.count, 0);
  CHECK_UEQ(s0.scavenge.count, 0);
  CHECK_UEQ(s0.full.count, 0);
  CHECK(s0.all.total_ms == 0 && s0.all.max_ms == 0);
#endif

  /* Survivors of two scavenges are promoted (or, once the isolate sees
   * that nearly all of them survive, allocated old to begin with);
   * allocation is counted. */
  iso_scope sc;
  iso_scope_open(iso, &sc);
  static char text[500];
  unit_fill(text, sizeof text, 1);
  for (int i = 0; i < 2000; i++)
    CHECK(iso_string_new(iso, text, sizeof text) != NULL);
  /* The allocation above may have collected on its own (the young
   * generation starts small); from here on, only the calls below do. */
  iso_gc_statistics_t s1 = unit_gc_stats(iso);
  for (int i = 0; i < 7; i++) CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  for (int i = 0; i < 4; i++) CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  iso_gc_statistics_t s = unit_gc_stats(iso);
  CHECK_UGE(s.allocated_bytes, s0.allocated_bytes + 2000 * 500);
  /* Each string counted once (about 530 bytes), not again when it is
   * promoted. */
  printf("# allocated %llu bytes for 2000 strings of 500 bytes\n",
         (unsigned long long)(s.allocated_bytes - s0.allocated_bytes));
  CHECK_ULE(s.allocated_bytes - s0.allocated_bytes, (uint64_t)2000 * 600);
  CHECK_UGE(s.promoted_bytes + s.pretenured_bytes,
            s0.promoted_bytes + s0.pretenured_bytes + 2000 * 500);
  CHECK_ULE(s.pretenured_bytes, s.allocated_bytes);
  CHECK_ULE(s.promoted_bytes, s.allocated_bytes);
  CHECK_UGE(s.scavenge.count, s1.scavenge.count + 7);
  CHECK_UGE(s.full.count, s1.full.count + 4);
#if !UNIT_GC_STRESS
  CHECK_UEQ(s.scavenge.count, s1.scavenge.count + 7);
  CHECK_UEQ(s.full.count, s1.full.count + 4);
#endif
  CHECK_UEQ(s.all.count, s.scavenge.count + s.full.count);
  const iso_pause_stats_t *ps[3] = {&s.scavenge, &s.full, &s.all};
  for (int i = 0; i < 3; i++) {
    CHECK(ps[i]->p50_ms >= 0);
    CHECK(ps[i]->p50_ms <= ps[i]->p99_ms);
    /* Percentiles come from a histogram, within 3%. */
    CHECK(ps[i]->p99_ms <= ps[i]->max_ms * 1.03 + 1e-9);
    CHECK(ps[i]->max_ms <= ps[i]->total_ms + 1e-9);
    CHECK(ps[i]->total_ms <= ps[i]->max_ms * (double)ps[i]->count + 1e-9);
  }
  CHECK(s.all.total_ms >= s.scavenge.total_ms + s.full.total_ms - 1e-6);
  CHECK(s.all.total_ms <= s.scavenge.total_ms + s.full.total_ms + 1e-6);
  CHECK(s.all.max_ms >= s.scavenge.max_ms && s.all.max_ms >= s.full.max_ms);
  CHECK(s.full.max_ms > 0);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_FAILS_ST(iso_gc_statistics(iso, NULL), ISO_ERR_ARGUMENT, "");
  CHECK_FAILS_ST(iso_gc_statistics(NULL, &s), ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));
}

static void test_object_statistics(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  CHECK_UEQ(unit_type_count(iso, leak), 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  for (int i = 0; i < 37; i++) CHECK(iso_record_new(iso, leak) != NULL);
  iso_handle s = iso_string_from_cstr(iso, "a string");
  CHECK(s != NULL);

  iso_type_statistics_t st[64];
  size_t n = 0;
  CHECK_OK(iso_heap_object_statistics(iso, st, 64, &n));
  CHECK_GE(n, 2);
  CHECK_ULE(n, 64);
  int seen_leak = 0, seen_string = 0;
  for (size_t i = 0; i < n; i++) {
    CHECK(st[i].type != 0);
    CHECK(st[i].name != NULL);
    CHECK_STR(st[i].name, iso_type_name(rt, st[i].type));
    CHECK_UGE(st[i].count, 1);
    CHECK_UGE(st[i].bytes, st[i].count * 8);
    if (i > 0) CHECK_ULE(st[i].bytes, st[i - 1].bytes); /* largest first */
    if (st[i].type == leak) {
      seen_leak++;
      CHECK_UEQ(st[i].count, 37);
      CHECK_STR(st[i].name, "Leak");
      /* Header, 3 slots and 24 raw bytes each, at least. */
      CHECK_UGE(st[i].bytes, 37 * (8 + 3 * 8 + 24));
    }
    if (st[i].type == iso_type_of(iso_get(s))) {
      seen_string++;
      CHECK_STR(st[i].name, "string");
    }
  }
  CHECK_EQ(seen_leak, 1);
  CHECK_EQ(seen_string, 1);

  /* A short buffer gets the largest types and the full count. */
  iso_type_statistics_t one;
  size_t n1 = 0;
  CHECK_OK(iso_heap_object_statistics(iso, &one, 1, &n1));
  CHECK_UEQ(n1, n);
  CHECK_UEQ(one.type, st[0].type);
  CHECK_UEQ(one.bytes, st[0].bytes);
  n1 = 0;
  CHECK_OK(iso_heap_object_statistics(iso, NULL, 0, &n1));
  CHECK_UEQ(n1, n);
  CHECK_FAILS_ST(iso_heap_object_statistics(NULL, st, 64, &n1),
                 ISO_ERR_ARGUMENT, "");

  /* Dead records are gone from the counts after a full GC. */
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, leak), 0);
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  leak = unit_register(rt, "Leak", 3, 24);
  RUN(test_spaces);
  RUN(test_heap_statistics);
  RUN(test_memory_usage);
  RUN(test_gc_statistics);
  RUN(test_object_statistics);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
