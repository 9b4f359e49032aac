/*
 * The heap limit: filling an isolate whose old generation may hold 8 MiB
 * must end in ISO_ERR_OUT_OF_MEMORY from an allocating call, never a
 * crash, with everything stored before intact; the near-heap-limit
 * callback is consulted first and may raise the limit.
 */
#include "helpers.h"

#define MiB ((size_t)1 << 20)
/* Fills stop at twice the limit they test: a limit that does not hold
 * fails the test without a long run. */
#define CAP(bytes) ((bytes)*2 / PIECE)

static iso_runtime *rt;
enum { PIECE = 4096 };

static iso_isolate *limited(size_t old_limit) {
  iso_isolate_params p = unit_params();
  p.max_old_generation_size = old_limit;
  p.max_young_generation_size = MiB; /* promote early; keeps runs short */
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  return iso;
}

/* Pushes pieces of `piece` bytes (contents from their index, counted
 * from start) into the array at arr until a call fails or the index
 * reaches max. Returns the next index; *st gets the failing status. */
static size_t fill(iso_isolate *iso, iso_handle arr, size_t piece, size_t start,
                   size_t max, iso_status *st) {
  char *buf = malloc(piece);
  CHECK(buf != NULL);
  size_t n = start;
  *st = ISO_OK;
  iso_clear_error();
  while (n < max) {
    iso_scope sc;
    iso_scope_open(iso, &sc);
    unit_fill(buf, piece, n);
    iso_handle s = iso_string_new(iso, buf, piece);
    if (s == NULL) {
      *st = iso_last_status();
    } else {
      *st = iso_array_push(iso, iso_get(arr), iso_get(s));
    }
    CHECK_OK(iso_scope_close(&sc));
    if (*st != ISO_OK) break;
    n++;
  }
  free(buf);
  return n;
}

static void check_pieces(iso_isolate *iso, iso_handle arr, size_t n,
                         size_t piece) {
  char *buf = malloc(piece);
  CHECK(buf != NULL);
  CHECK_UEQ(iso_array_length(iso_get(arr)), n);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    iso_scope sc;
    iso_scope_open(iso, &sc);
    unit_fill(buf, piece, i);
    iso_handle e = iso_array_get(iso, iso_get(arr), i);
    if (!e || !unit_str_is(iso_get(e), buf, piece)) bad++;
    CHECK_OK(iso_scope_close(&sc));
  }
  CHECK_UEQ(bad, 0);
  free(buf);
}

static void test_out_of_memory(void) {
  iso_isolate *iso = limited(8 * MiB);
  iso_heap_statistics_t hs;
  CHECK_OK(iso_heap_statistics(iso, &hs));
  CHECK_UEQ(hs.heap_size_limit, UNIT_HEAP_SIZE_LIMIT(8 * MiB, MiB));

  iso_handle arr = iso_array_new(iso, 0);
  iso_status st;
  size_t n = fill(iso, arr, PIECE, 0, CAP(8 * MiB), &st);
  iso_gc_statistics_t gs = unit_gc_stats(iso);
  printf(
      "# stored %zu pieces of %d bytes before %s (%ju scavenges, %ju "
      "full GCs, %.1f ms)\n",
      n, PIECE, iso_status_name(st), (uintmax_t)gs.scavenge.count,
      (uintmax_t)gs.full.count, gs.all.total_ms);
  CHECK_EQ(st, ISO_ERR_OUT_OF_MEMORY);
  CHECK_ERROR(ISO_ERR_OUT_OF_MEMORY, "memory|heap|limit");
  /* The limit is neither ignored nor far too strict: the old generation
   * holds between half its limit and its limit (plus what the young
   * generation still held). */
  CHECK_UGE(n * PIECE, 4 * MiB);
  CHECK_ULE(n * PIECE, 9 * MiB);
  check_pieces(iso, arr, n, PIECE);
  CHECK_OK(iso_heap_verify(iso));

  /* The isolate is still usable: collections work, small allocations
   * may fail but never crash, and everything stays intact. */
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  check_pieces(iso, arr, n, PIECE);

  /* Dropping the array frees the space for new work. */
  iso_handle_set(arr, ISO_UNDEFINED);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  iso_handle arr2 = iso_array_new(iso, 0);
  CHECK(arr2 != NULL);
  size_t m = fill(iso, arr2, PIECE, 0, 1000, &st);
  CHECK_EQ(st, ISO_OK);
  CHECK_UEQ(m, 1000);
  check_pieces(iso, arr2, m, PIECE);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  check_pieces(iso, arr2, m, PIECE);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_out_of_memory_large_objects(void) {
  /* Pieces above the large-object threshold count against the limit. */
  iso_isolate *iso = limited(8 * MiB);
  iso_handle arr = iso_array_new(iso, 0);
  iso_status st;
  const size_t piece = 300 * 1024;
  size_t n = fill(iso, arr, piece, 0, 2 * 8 * MiB / piece, &st);
  CHECK_EQ(st, ISO_ERR_OUT_OF_MEMORY);
  CHECK_UGE(n * piece, 4 * MiB);
  CHECK_ULE(n * piece, 8 * MiB);
  check_pieces(iso, arr, n, piece);
  /* Another isolate of the runtime is not affected by this one's limit. */
  iso_isolate *other = iso_isolate_new(rt, NULL);
  CHECK(other != NULL);
  iso_handle arr2 = iso_array_new(other, 0);
  size_t m = fill(other, arr2, piece, 0, 40, &st); /* 12 MiB */
  CHECK_EQ(st, ISO_OK);
  CHECK_UEQ(m, 40);
  CHECK_OK(iso_isolate_free(other));
  check_pieces(iso, arr, n, piece);
  CHECK_OK(iso_isolate_free(iso));
}

/* Scavenges that happen before the young generation is full (GC stress
 * mode, or a program calling iso_gc(ISO_GC_MINOR) often) promote into the
 * old generation as any other: the limit must hold all the same. */
static void test_limit_with_frequent_scavenges(void) {
  size_t n[2];
  iso_status st[2];
  for (int variant = 0; variant < 2; variant++) {
    iso_isolate_params p = unit_params();
    p.max_old_generation_size = 8 * MiB;
    p.max_young_generation_size = MiB;
    if (variant == 0) p.stress_scavenge_every = 7;
    iso_isolate *iso = iso_isolate_new(rt, &p);
    CHECK(iso != NULL);
    iso_handle arr = iso_array_new(iso, 0);
    n[variant] = 0;
    st[variant] = ISO_OK;
    while (n[variant] < CAP(8 * MiB) && st[variant] == ISO_OK) {
      n[variant] =
          fill(iso, arr, PIECE, n[variant], n[variant] + 20, &st[variant]);
      if (st[variant] == ISO_OK && variant == 1)
        st[variant] = iso_gc(iso, ISO_GC_MINOR);
    }
    iso_gc_statistics_t gs = unit_gc_stats(iso);
    iso_heap_statistics_t hs;
    CHECK_OK(iso_heap_statistics(iso, &hs));
    printf(
        "# %s: stored %zu pieces before %s (%ju scavenges, heap %zu "
        "bytes)\n",
        variant ? "iso_gc(MINOR) every 20 pushes" : "stress_scavenge_every=7",
        n[variant], iso_status_name(st[variant]), (uintmax_t)gs.scavenge.count,
        hs.total_heap_size);
    check_pieces(iso, arr, n[variant], PIECE);
    CHECK_OK(iso_isolate_free(iso));
  }
  for (int variant = 0; variant < 2; variant++) {
    CHECK_EQ(st[variant], ISO_ERR_OUT_OF_MEMORY);
    CHECK_ULE(n[variant] * PIECE, 9 * MiB);
  }
}

typedef struct limit_log {
  int calls;
  size_t first_current, first_initial;
  size_t last_current, last_initial;
  int raises_left;
  size_t raise_by;
} limit_log;

static size_t on_near_limit(void *data, size_t current, size_t initial) {
  limit_log *log = data;
  if (log->calls++ == 0) {
    log->first_current = current;
    log->first_initial = initial;
  }
  log->last_current = current;
  log->last_initial = initial;
  if (log->raises_left > 0) {
    log->raises_left--;
    return current + log->raise_by;
  }
  return current;
}

static void test_near_heap_limit_raise(void) {
  iso_isolate *iso = limited(8 * MiB);
  limit_log log;
  memset(&log, 0, sizeof log);
  log.raises_left = 1;
  log.raise_by = 8 * MiB;
  iso_isolate_set_near_heap_limit_callback(iso, on_near_limit, &log);
  iso_handle arr = iso_array_new(iso, 0);
  iso_status st;
  size_t n = fill(iso, arr, PIECE, 0, CAP(16 * MiB), &st);
  printf("# stored %zu pieces with one raise, %d callback calls\n", n,
         log.calls);
  /* Called before the first failure, and let allocation go on past the
   * first limit (beyond what 8 MiB plus the young generation can hold). */
  CHECK_GE(log.calls, 2);
  CHECK_UEQ(log.first_current, 8 * MiB);
  CHECK_UEQ(log.first_initial, 8 * MiB);
  CHECK_UEQ(log.last_current, 16 * MiB);
  CHECK_UEQ(log.last_initial, 8 * MiB);
  CHECK_UGE(n * PIECE, 9 * MiB + MiB / 2);
  CHECK_ULE(n * PIECE, 17 * MiB);
  CHECK_EQ(st, ISO_ERR_OUT_OF_MEMORY);
  iso_heap_statistics_t hs;
  CHECK_OK(iso_heap_statistics(iso, &hs));
  CHECK_UEQ(hs.heap_size_limit, UNIT_HEAP_SIZE_LIMIT(16 * MiB, MiB));
  check_pieces(iso, arr, n, PIECE);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_near_heap_limit_decline(void) {
  iso_isolate *iso = limited(8 * MiB);
  limit_log log;
  memset(&log, 0, sizeof log);
  iso_isolate_set_near_heap_limit_callback(iso, on_near_limit, &log);
  iso_handle arr = iso_array_new(iso, 0);
  iso_status st;
  size_t n = fill(iso, arr, PIECE, 0, CAP(8 * MiB), &st);
  CHECK_EQ(st, ISO_ERR_OUT_OF_MEMORY);
  CHECK_GE(log.calls, 1);
  CHECK_UEQ(log.first_current, 8 * MiB);
  CHECK_UEQ(log.last_current, 8 * MiB);
  CHECK_ULE(n * PIECE, 9 * MiB);
  check_pieces(iso, arr, n, PIECE);

  iso_clear_error();
  iso_isolate_set_near_heap_limit_callback(NULL, on_near_limit, &log);
  CHECK_ERROR(ISO_ERR_ARGUMENT, "");

  /* Unregistered: no more calls. */
  iso_isolate_set_near_heap_limit_callback(iso, NULL, NULL);
  int calls = log.calls;
  iso_handle arr2 = iso_array_new(iso, 0);
  size_t m = fill(iso, arr2, PIECE, 0, CAP(8 * MiB), &st);
  CHECK_EQ(st, ISO_ERR_OUT_OF_MEMORY);
  CHECK_LT(m, CAP(8 * MiB));
  CHECK_EQ(log.calls, calls);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_default_limit(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_heap_statistics_t hs;
  CHECK_OK(iso_heap_statistics(iso, &hs));
  CHECK_UEQ(hs.heap_size_limit, UNIT_HEAP_SIZE_LIMIT(UNIT_DEFAULT_OLD_LIMIT,
                                                     UNIT_DEFAULT_YOUNG_SIZE));
  CHECK_OK(iso_isolate_free(iso));
  iso = limited(64 * MiB);
  CHECK_OK(iso_heap_statistics(iso, &hs));
  CHECK_UEQ(hs.heap_size_limit, UNIT_HEAP_SIZE_LIMIT(64 * MiB, MiB));
  CHECK_OK(iso_isolate_free(iso));
}

/* The runtime's max_heap_size bounds the isolates together: one isolate
 * holding part of it leaves the rest to the others, whose allocation then
 * fails cleanly while the first isolate's data stays intact; the failing
 * isolate asks the others to collect, and what they free serves it. */
static void test_runtime_limit(void) {
  iso_runtime_params rp;
  memset(&rp, 0, sizeof rp);
  rp.struct_size = sizeof rp;
  rp.max_heap_size = 1000;
  CHECK(iso_runtime_new(&rp) == NULL);
  CHECK_ERROR(ISO_ERR_ARGUMENT, "max_heap_size");

  rp.max_heap_size = 32 * MiB;
  iso_runtime *r = iso_runtime_new(&rp);
  CHECK(r != NULL);
  iso_isolate_params ip = unit_params();
  ip.max_young_generation_size = MiB;
  iso_isolate *a = iso_isolate_new(r, &ip);
  iso_isolate *b = iso_isolate_new(r, &ip);
  CHECK(a != NULL && b != NULL);
  iso_heap_statistics_t hs;
  CHECK_OK(iso_heap_statistics(a, &hs));
  CHECK_UEQ(hs.heap_size_limit, UNIT_HEAP_SIZE_LIMIT(32 * MiB, MiB));

  /* a keeps 12 MiB; b fills what is left. */
  iso_scope sa;
  iso_scope_open(a, &sa);
  iso_handle arr_a = iso_array_new(a, 0);
  iso_status st;
  size_t na = fill(a, arr_a, PIECE, 0, 12 * MiB / PIECE, &st);
  CHECK_EQ(st, ISO_OK);
  iso_handle arr_b = iso_array_new(b, 0);
  size_t nb = fill(b, arr_b, PIECE, 0, CAP(32 * MiB), &st);
  CHECK_EQ(st, ISO_ERR_OUT_OF_MEMORY);
  CHECK_ERROR(ISO_ERR_OUT_OF_MEMORY, "runtime heap limit");
  printf("# b stored %zu pieces beside a's %zu\n", nb, na);
  /* b got most of the rest, and the two stay within the limit (plus what
   * a scavenge may promote past it: a young generation's worth). */
  CHECK_UGE(nb * PIECE, 10 * MiB);
  CHECK_ULE((na + nb) * PIECE, 32 * MiB);
  iso_runtime_statistics_t rs;
  CHECK_OK(iso_runtime_statistics(r, &rs));
  CHECK_UEQ(rs.isolate_count, 2);
  CHECK_UEQ(rs.heap_size_limit, 32 * MiB);
  CHECK_ULE(rs.old_space_size, 32 * MiB + 2 * MiB);
  CHECK_UGE(rs.limit_collections, 1);
  CHECK_OK(iso_heap_statistics(b, &hs));
  CHECK_ULE(hs.total_available_size, 4 * MiB);
  check_pieces(a, arr_a, na, PIECE);
  check_pieces(b, arr_b, nb, PIECE);
  CHECK_OK(iso_heap_verify(a));
  CHECK_OK(iso_heap_verify(b));

  /* a drops its data. b's failure asked it to collect: its next safepoint
   * starts a cycle, and once that is done b can use the space. */
  CHECK_OK(iso_scope_close(&sa));
  CHECK_EQ(iso_gc_cycle(a), ISO_GC_CYCLE_IDLE);
  CHECK_OK(iso_safepoint(a));
  CHECK(iso_gc_cycle(a) != ISO_GC_CYCLE_IDLE);
  while (iso_gc_cycle(a) != ISO_GC_CYCLE_IDLE) CHECK_OK(iso_gc_step(a, 0));
  CHECK_OK(iso_runtime_statistics(r, &rs));
  CHECK_ULE(rs.old_space_size, nb * PIECE + 8 * MiB);
  size_t nb2 = fill(b, arr_b, PIECE, nb, nb + 8 * MiB / PIECE, &st);
  CHECK_EQ(st, ISO_OK);
  check_pieces(b, arr_b, nb2, PIECE);
  CHECK_OK(iso_isolate_free(a));
  CHECK_OK(iso_isolate_free(b));
  CHECK_OK(iso_runtime_statistics(r, &rs));
  CHECK_UEQ(rs.old_space_size, 0);
  CHECK_OK(iso_runtime_free(r));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  RUN(test_default_limit);
  RUN(test_out_of_memory);
  RUN(test_out_of_memory_large_objects);
  RUN(test_limit_with_frequent_scavenges);
  RUN(test_near_heap_limit_raise);
  RUN(test_near_heap_limit_decline);
  RUN(test_runtime_limit);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
