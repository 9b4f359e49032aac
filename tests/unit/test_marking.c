/*
 * The concurrent marking collector seen from the API: parking, the states
 * of a cycle, what a cycle keeps and what it frees, background threads
 * finishing a cycle for a parked isolate, and a lost-object test aimed at
 * the marking barrier.
 *
 * The lost-object test moves objects the marker has not reached yet into
 * an object it has already scanned, and erases the only other reference.
 * Without a barrier the marker never sees them again: they are swept,
 * their memory is reused, and the checksums they carry show it. Run with
 * --no-barrier (ISO_DEBUG_SKIP_MARKING_BARRIER) the test must fail; meson
 * runs it that way too, as an expected failure, to show the test can see
 * a broken barrier. That run exits 1 only when it found lost objects, and
 * 99 (an error, not the expected failure) when marking ended before
 * anything could be lost.
 *
 * Every test but the background one uses a runtime without GC threads
 * (ISO_GC_THREADS_NONE): marking then advances only through iso_gc_step()
 * on the isolate's own thread, so what the marker has scanned when the
 * program mutates is the same on every run.
 */
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static iso_runtime *rt_none; /* no GC threads: deterministic marking */
static iso_runtime *rt_bg;   /* the default: background GC threads */
static bool no_barrier;      /* --no-barrier: only the lost-object test */

/* Record types, registered in each runtime. */
typedef struct types {
  iso_type holder;  /* slot: the leaf */
  iso_type leaf;    /* slots: index, check; raw: 16 checksum bytes */
  iso_type filler;  /* the leaf's layout, to reuse the leaves' memory */
  iso_type garbage; /* slot: next; counted to see it freed */
  iso_type node;    /* slots: value, next; raw: 8 bytes */
  iso_type pair;    /* slots: value, next; no raw bytes (inline path) */
} types;
static types ty_none, ty_bg;

enum { LEAF_SLOTS = 2, LEAF_RAW = 16 };

static void register_types(iso_runtime *rt, types *t) {
  t->holder = unit_register(rt, "MarkHolder", 1, 0);
  t->leaf = unit_register(rt, "MarkLeaf", LEAF_SLOTS, LEAF_RAW);
  t->filler = unit_register(rt, "MarkFiller", LEAF_SLOTS, LEAF_RAW);
  t->garbage = unit_register(rt, "MarkGarbage", 1, 0);
  t->node = unit_register(rt, "MarkNode", 2, 8);
  t->pair = unit_register(rt, "MarkPair", 2, 0);
}

static iso_isolate *new_isolate_flags(iso_runtime *rt, unsigned debug_flags,
                                      unsigned flags) {
  iso_isolate_params p = unit_params();
  p.name = "marking";
  p.debug_flags = debug_flags;
  p.flags = flags;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  return iso;
}

static iso_isolate *new_isolate(iso_runtime *rt, unsigned debug_flags) {
  return new_isolate_flags(rt, debug_flags, 0);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A cycle needs at most this many steps of 4 KiB in these tests (a few
 * MiB of heap); past it, iso_gc_step is not making progress. */
#define STEP_LIMIT 1000000

/* Steps until no cycle runs: marking ends, then sweeping does. */
static void finish_cycle(iso_isolate *iso) {
  long steps = 0;
  while (iso_gc_cycle(iso) != ISO_GC_CYCLE_IDLE) {
    CHECK_OK(iso_gc_step(iso, 4096));
    CHECK_LT(++steps, STEP_LIMIT);
  }
}

/* Young objects reachable now end up in the old generation: the first
 * scavenge copies them within the young generation, the second promotes
 * them. */
static void promote(iso_isolate *iso) {
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
}

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/* ---- the lost-object test ---- */

/* The check word of leaf i of round r: a small integer the leaf carries
 * in a slot, and (with its complement) in its raw bytes. */
static int64_t leaf_check(size_t i, int round) {
  return (int64_t)(mix(i * 0x9e3779b97f4a7c15ull + (uint64_t)round + 1) >> 4);
}

static iso_value make_leaf(iso_isolate *iso, const types *t, size_t i,
                           int round, iso_handle *out) {
  int64_t c = leaf_check(i, round);
  iso_value init[LEAF_SLOTS] = {iso_smi((int64_t)i), iso_smi(c)};
  iso_handle h = iso_record_new(iso, t->leaf);
  CHECK(h != NULL);
  for (uint32_t k = 0; k < LEAF_SLOTS; k++)
    CHECK_OK(iso_record_set(iso, iso_get(h), k, init[k]));
  uint64_t raw[2] = {(uint64_t)c ^ 0x5bd1e995u, ~(uint64_t)c};
  void *p = iso_record_raw(iso_get(h));
  CHECK(p != NULL);
  memcpy(p, raw, sizeof raw);
  *out = h;
  return iso_get(h);
}

/* Reads what should be leaf `want` (or any leaf when want is SIZE_MAX)
 * through calls that check what they are given, so a reference to freed
 * or reused memory is reported rather than followed. Returns the leaf's
 * index, or SIZE_MAX with what was wrong in why. */
static size_t read_leaf(const types *t, iso_value v, int round, char *why,
                        size_t cap) {
  iso_kind k = iso_kind_of(v);
  if (k != ISO_KIND_RECORD) {
    snprintf(why, cap, "a value of kind %s, not a record", iso_kind_name(k));
    return SIZE_MAX;
  }
  iso_type ty = iso_type_of(v);
  if (ty != t->leaf) {
    snprintf(why, cap, "a %s (type %u), not a MarkLeaf",
             ty == t->filler ? "MarkFiller" : "record", ty);
    return SIZE_MAX;
  }
  if (iso_record_slot_count(v) != LEAF_SLOTS ||
      iso_record_raw_size(v) != LEAF_RAW) {
    snprintf(why, cap, "a MarkLeaf of the wrong shape");
    return SIZE_MAX;
  }
  iso_value iv = iso_record_slot(v, 0), cv = iso_record_slot(v, 1);
  if (!iso_is_smi(iv) || !iso_is_smi(cv)) {
    snprintf(why, cap, "a MarkLeaf whose slots are not integers");
    return SIZE_MAX;
  }
  int64_t i = iso_smi_value(iv);
  if (i < 0 || iso_smi_value(cv) != leaf_check((size_t)i, round)) {
    snprintf(why, cap, "a MarkLeaf with index %lld and a bad check word",
             (long long)i);
    return SIZE_MAX;
  }
  uint64_t raw[2];
  const void *p = iso_record_raw(v);
  if (p == NULL) {
    snprintf(why, cap, "a MarkLeaf without raw bytes");
    return SIZE_MAX;
  }
  memcpy(raw, p, sizeof raw);
  uint64_t c = (uint64_t)iso_smi_value(cv);
  if (raw[0] != (c ^ 0x5bd1e995u) || raw[1] != ~c) {
    snprintf(why, cap, "MarkLeaf %lld with damaged raw bytes", (long long)i);
    return SIZE_MAX;
  }
  return (size_t)i;
}

enum { LOST_N = 2000, LOST_ROUNDS = 4, LOST_REPORT = 8 };

/* Counts a leaf found in a sink or a holder; reports damage. Returns the
 * number of problems (0 or 1). */
static int account_leaf(const types *t, iso_value v, int round,
                        unsigned char *seen, const char *where, size_t at,
                        int *reported) {
  char why[160];
  size_t i = read_leaf(t, v, round, why, sizeof why);
  if (i == SIZE_MAX || i >= LOST_N || seen[i]) {
    if (i != SIZE_MAX)
      snprintf(why, sizeof why, "leaf %zu, %s", i,
               i >= LOST_N ? "out of range" : "a second time");
    if ((*reported)++ < LOST_REPORT)
      printf("# round %d: %s[%zu] holds %s\n", round, where, at, why);
    return 1;
  }
  seen[i] = 1;
  return 0;
}

/* One round: build, mark while moving leaves, sweep, reuse, verify.
 * Returns the moves made while marking. */
static size_t lost_object_round(iso_isolate *iso, const types *t, int round,
                                size_t budget) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  finish_cycle(iso);
  /* Two sinks, rooted by the first and the last handle of the round, and
   * the leaves moved alternately into each from both ends of X: whatever
   * order the collector scans roots and worklists in, some moves take a
   * leaf from a holder it has not scanned into a sink it has. */
  iso_handle sink_a = iso_array_new(iso, LOST_N);
  CHECK(sink_a != NULL);
  /* The leaves first and together, so the ones lost together leave holes
   * large enough for the allocator to reuse. */
  iso_handle leaves = iso_array_new(iso, LOST_N);
  CHECK(leaves != NULL);
  for (size_t i = 0; i < LOST_N; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle leaf;
    make_leaf(iso, t, i, round, &leaf);
    CHECK_OK(iso_array_set(iso, iso_get(leaves), i, iso_get(leaf)));
    CHECK_OK(iso_scope_close(&in));
  }
  iso_handle x = iso_array_new(iso, LOST_N);
  CHECK(x != NULL);
  for (size_t i = 0; i < LOST_N; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle h = iso_record_new(iso, t->holder);
    CHECK(h != NULL);
    iso_handle leaf = iso_array_get(iso, iso_get(leaves), i);
    CHECK(leaf != NULL);
    CHECK_OK(iso_record_set(iso, iso_get(h), 0, iso_get(leaf)));
    CHECK_OK(iso_array_set(iso, iso_get(x), i, iso_get(h)));
    CHECK_OK(iso_scope_close(&in));
  }
  promote(iso);
  /* From here on the holders hold the only references to the leaves. */
  iso_handle_set(leaves, ISO_UNDEFINED);
  iso_handle sink_b = iso_array_new(iso, LOST_N);
  CHECK(sink_b != NULL);
  promote(iso);
  finish_cycle(iso);

  CHECK_OK(iso_gc_start_marking(iso));
  size_t front = 0, back = LOST_N, moves = 0, na = 0, nb = 0;
  long steps = 0;
  iso_gc_cycle_state st;
  while ((st = iso_gc_cycle(iso)) == ISO_GC_CYCLE_MARKING) {
    CHECK_OK(iso_gc_step(iso, budget));
    CHECK_LT(++steps, STEP_LIMIT);
    if (front >= back) continue;
    /* Nothing below allocates: the marker advances only in the step. */
    iso_scope in;
    iso_scope_open(iso, &in);
    size_t i = moves % 2 ? front++ : --back;
    iso_handle h = iso_array_get(iso, iso_get(x), i);
    CHECK(h != NULL);
    iso_value leaf = iso_record_slot(iso_get(h), 0);
    if (moves % 4 < 2) {
      CHECK_OK(iso_array_set(iso, iso_get(sink_a), na++, leaf));
    } else {
      CHECK_OK(iso_array_set(iso, iso_get(sink_b), nb++, leaf));
    }
    CHECK_OK(iso_record_set(iso, iso_get(h), 0, ISO_UNDEFINED));
    moves++;
    CHECK_OK(iso_scope_close(&in));
  }
  finish_cycle(iso);

  /* Allocate the leaves' size over again until the space the sweep freed
   * is taken, so a swept leaf no longer reads as itself. */
  iso_scope in;
  iso_scope_open(iso, &in);
  iso_handle fill = iso_array_new(iso, 2 * LOST_N);
  CHECK(fill != NULL);
  for (size_t i = 0; i < 2 * LOST_N; i++) {
    iso_scope f;
    iso_scope_open(iso, &f);
    iso_handle h = iso_record_new(iso, t->filler);
    CHECK(h != NULL);
    CHECK_OK(iso_record_set(iso, iso_get(h), 0, iso_smi(-1)));
    CHECK_OK(iso_record_set(iso, iso_get(h), 1, iso_smi(-2)));
    memset(iso_record_raw(iso_get(h)), 0xa5, LEAF_RAW);
    CHECK_OK(iso_array_set(iso, iso_get(fill), i, iso_get(h)));
    CHECK_OK(iso_scope_close(&f));
  }
  promote(iso);
  finish_cycle(iso);

  /* Every leaf must be intact and in exactly one place: a sink, or the
   * holder it started in. */
  static unsigned char seen[LOST_N];
  memset(seen, 0, sizeof seen);
  int bad = 0, reported = 0;
  const struct {
    iso_handle h;
    size_t n;
    const char *name;
  } sinks[2] = {{sink_a, na, "sink A"}, {sink_b, nb, "sink B"}};
  for (int s = 0; s < 2; s++) {
    CHECK_UEQ(iso_array_length(iso_get(sinks[s].h)), LOST_N);
    for (size_t k = 0; k < sinks[s].n; k++) {
      iso_scope e;
      iso_scope_open(iso, &e);
      iso_handle v = iso_array_get(iso, iso_get(sinks[s].h), k);
      CHECK(v != NULL);
      bad +=
          account_leaf(t, iso_get(v), round, seen, sinks[s].name, k, &reported);
      CHECK_OK(iso_scope_close(&e));
    }
  }
  for (size_t i = 0; i < LOST_N; i++) {
    iso_scope e;
    iso_scope_open(iso, &e);
    iso_handle h = iso_array_get(iso, iso_get(x), i);
    CHECK(h != NULL);
    CHECK_EQ(iso_type_of(iso_get(h)), t->holder);
    iso_value leaf = iso_record_slot(iso_get(h), 0);
    if (leaf != ISO_UNDEFINED)
      bad += account_leaf(t, leaf, round, seen, "holder", i, &reported);
    CHECK_OK(iso_scope_close(&e));
  }
  for (size_t i = 0; i < LOST_N; i++)
    if (!seen[i] && reported++ < LOST_REPORT)
      printf("# round %d: leaf %zu is nowhere\n", round, i);
  for (size_t i = 0; i < LOST_N; i++) bad += !seen[i];
  iso_status vs = iso_heap_verify(iso);
  if (vs != ISO_OK) {
    printf("# round %d: iso_heap_verify: %s: %s\n", round, iso_status_name(vs),
           iso_last_error());
    bad++;
  }
  printf(
      "# round %d: %ld steps of %zu bytes, %zu leaves moved while "
      "marking, %d problems\n",
      round, steps, budget, moves, bad);
  if (no_barrier && bad > 0) {
    /* What this mode is for: the heap is broken now, so stop here. */
    printf(
        "# lost objects detected with the marking barrier off, as "
        "expected\n");
    fflush(stdout);
    _exit(1);
  }
  CHECK_EQ(bad, 0);
  CHECK_OK(iso_scope_close(&in));
  CHECK_OK(iso_scope_close(&sc));
  return moves;
}

static void test_lost_object(void) {
  if (no_barrier) printf("# the marking barrier is OFF: this run must fail\n");
  iso_isolate *iso =
      new_isolate(rt_none, no_barrier ? ISO_DEBUG_SKIP_MARKING_BARRIER : 0);
  size_t moves = 0;
  for (int r = 0; r < LOST_ROUNDS; r++)
    moves += lost_object_round(iso, &ty_none, r, r % 2 ? 256 : 64);
  /* A cycle that ended before the program could move anything tested
   * nothing: marking must have taken many small steps. Without the
   * barrier that is an error (exit status 99), not the failure the run
   * is expected to end with. */
  if (no_barrier && moves < (size_t)LOST_ROUNDS * 16) {
    printf(
        "# ERROR: only %zu leaves moved while marking: the run could "
        "not lose anything\n",
        moves);
    fflush(stdout);
    _exit(99);
  }
  CHECK_UGE(moves, (size_t)LOST_ROUNDS * 16);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- parking ---- */

static void test_park_states(void) {
  iso_isolate *iso = new_isolate(rt_none, 0);
  CHECK(!iso_isolate_is_parked(iso));
  CHECK_FAILS_ST(iso_isolate_unpark(iso), ISO_ERR_STATE, "park");
  CHECK(!iso_isolate_is_parked(iso));
  CHECK_OK(iso_isolate_park(iso));
  CHECK(iso_isolate_is_parked(iso));
  CHECK_FAILS_ST(iso_isolate_park(iso), ISO_ERR_STATE, "park");
  CHECK(iso_isolate_is_parked(iso));
  CHECK_OK(iso_isolate_unpark(iso));
  CHECK(!iso_isolate_is_parked(iso));
  CHECK_FAILS_ST(iso_isolate_unpark(iso), ISO_ERR_STATE, "park");
  /* Parking again after a failed call works, and so does the heap. */
  CHECK_OK(iso_isolate_park(iso));
  CHECK_OK(iso_isolate_unpark(iso));
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle s = iso_string_from_cstr(iso, "after parking");
  CHECK_STRING(iso_get(s), "after parking");
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_STRING(iso_get(s), "after parking");
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- a graph that must survive cycles ---- */

/* A list of count MarkNodes: node k holds smi(k * 7 + seed) and a string
 * "n<k>" in slot 0 for every third k, the next node in slot 1, and
 * mix(k + seed) in its raw bytes. */
static iso_handle build_list(iso_isolate *iso, const types *t, size_t count,
                             uint64_t seed) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle head = iso_handle_new(iso, ISO_NULL);
  for (size_t k = count; k-- > 0;) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle n = iso_record_new(iso, t->node);
    CHECK(n != NULL);
    if (k % 3 == 0) {
      char text[32];
      snprintf(text, sizeof text, "n%zu", k);
      iso_handle s = iso_string_from_cstr(iso, text);
      CHECK_OK(iso_record_set(iso, iso_get(n), 0, iso_get(s)));
    } else {
      CHECK_OK(
          iso_record_set(iso, iso_get(n), 0, iso_smi((int64_t)(k * 7 + seed))));
    }
    CHECK_OK(iso_record_set(iso, iso_get(n), 1, iso_get(head)));
    uint64_t h = mix(k + seed);
    memcpy(iso_record_raw(iso_get(n)), &h, 8);
    iso_handle_set(head, iso_get(n));
    CHECK_OK(iso_scope_close(&in));
  }
  return iso_scope_escape(&sc, head);
}

static void check_list(const types *t, iso_value v, size_t count,
                       uint64_t seed) {
  for (size_t k = 0; k < count; k++) {
    CHECK_EQ(iso_type_of(v), t->node);
    iso_value s0 = iso_record_slot(v, 0);
    if (k % 3 == 0) {
      char text[32];
      snprintf(text, sizeof text, "n%zu", k);
      CHECK_STRING(s0, text);
    } else {
      CHECK_EQ(s0, iso_smi((int64_t)(k * 7 + seed)));
    }
    uint64_t h;
    memcpy(&h, iso_record_raw(v), 8);
    CHECK_UEQ(h, mix(k + seed));
    v = iso_record_slot(v, 1);
  }
  CHECK_EQ(v, ISO_NULL);
}

static void test_cycle_states(void) {
  iso_isolate *iso = new_isolate(rt_none, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle list = build_list(iso, &ty_none, 5000, 1);
  promote(iso);
  finish_cycle(iso);
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_IDLE);
  uint64_t cycles0 = unit_gc_stats(iso).cycles;

  CHECK_OK(iso_gc_start_marking(iso));
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_MARKING);
  /* No GC thread exists: nothing moves the cycle on but this thread. */
  sleep_ms(20);
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_MARKING);
  /* A second start while marking joins the cycle that runs. */
  CHECK_OK(iso_gc_start_marking(iso));
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_MARKING);

  /* MARKING, then (perhaps) SWEEPING, then IDLE; never back. */
  long steps = 0, marking_steps = 0;
  bool swept = false;
  iso_gc_cycle_state st;
  while ((st = iso_gc_cycle(iso)) != ISO_GC_CYCLE_IDLE) {
    if (st == ISO_GC_CYCLE_MARKING) {
      CHECK(!swept);
      marking_steps++;
    } else {
      CHECK_EQ(st, ISO_GC_CYCLE_SWEEPING);
      swept = true;
    }
    CHECK_OK(iso_gc_step(iso, 256));
    CHECK_LT(++steps, STEP_LIMIT);
  }
  /* 5,000 nodes do not fit in one step of 256 bytes. */
  CHECK_GT(marking_steps, 1);
  iso_gc_statistics_t gs = unit_gc_stats(iso);
  if (UNIT_GC_STRESS) {
    CHECK_UGE(gs.cycles, cycles0 + 1);
  } else {
    CHECK_UEQ(gs.cycles, cycles0 + 1);
  }
  /* Stepping with no cycle is a no-op. */
  CHECK_OK(iso_gc_step(iso, 256));
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_IDLE);
  check_list(&ty_none, iso_get(list), 5000, 1);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* Objects reachable at the start of a cycle, or made and linked during
 * it (young, and promoted while marking), survive it intact. */
typedef struct survive {
  iso_handle a, b, c, d;
} survive;

/* The mutations of test_reachable_survive, one per phase. */
static void survive_mutate(iso_isolate *iso, survive *m, int phase) {
  if (phase == 0) {
    /* New objects during marking, promoted while it runs. */
    m->c = build_list(iso, &ty_none, 300, 4);
    promote(iso);
  } else if (phase == 1) {
    /* Swap the old lists' tails: the only reference to each tail moves
     * into the other list, scanned or not. */
    iso_value ta = iso_record_slot(iso_get(m->a), 1);
    iso_value tb = iso_record_slot(iso_get(m->b), 1);
    CHECK_OK(iso_record_set(iso, iso_get(m->a), 1, tb));
    CHECK_OK(iso_record_set(iso, iso_get(m->b), 1, ta));
  } else {
    /* A young list stored into an old node, whose former tail only a
     * handle holds from now on. */
    m->d = build_list(iso, &ty_none, 100, 5);
    iso_value old_tail = iso_record_slot(iso_get(m->c), 1);
    CHECK_OK(iso_record_set(iso, iso_get(m->c), 1, iso_get(m->d)));
    iso_handle_set(m->d, old_tail);
  }
}

static void test_reachable_survive(void) {
  enum { BIG = 10000 };
  iso_isolate *iso = new_isolate(rt_none, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  survive m = {NULL, NULL, NULL, NULL};
  m.a = build_list(iso, &ty_none, BIG, 2);
  m.b = build_list(iso, &ty_none, BIG, 3);
  promote(iso);
  finish_cycle(iso);
  CHECK_OK(iso_gc_start_marking(iso));
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_MARKING);
  long steps = 0;
  int phase = 0, while_marking = 0;
  while (iso_gc_cycle(iso) != ISO_GC_CYCLE_IDLE) {
    CHECK_OK(iso_gc_step(iso, 512));
    CHECK_LT(++steps, STEP_LIMIT);
    if (phase < 3 && steps % 3 == 0) {
      if (iso_gc_cycle(iso) == ISO_GC_CYCLE_MARKING) while_marking++;
      survive_mutate(iso, &m, phase++);
    }
  }
  /* Allocation may help marking along; whatever did not happen while
   * marking happens now, so the checks below stay the same. */
  while (phase < 3) survive_mutate(iso, &m, phase++);
  printf("# %d of 3 mutations while marking, %ld steps\n", while_marking,
         steps);
  CHECK_GE(while_marking, 1);
  /* Undo the swap to check the lists with their seeds. */
  iso_value ta = iso_record_slot(iso_get(m.a), 1);
  iso_value tb = iso_record_slot(iso_get(m.b), 1);
  CHECK_OK(iso_record_set(iso, iso_get(m.a), 1, tb));
  CHECK_OK(iso_record_set(iso, iso_get(m.b), 1, ta));
  check_list(&ty_none, iso_get(m.a), BIG, 2);
  check_list(&ty_none, iso_get(m.b), BIG, 3);
  check_list(&ty_none, iso_record_slot(iso_get(m.c), 1), 100, 5);
  CHECK_OK(iso_record_set(iso, iso_get(m.c), 1, iso_get(m.d)));
  check_list(&ty_none, iso_get(m.c), 300, 4);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* Swaps elements i and j of arr through the API (the barrier). */
static void swap_elements(iso_isolate *iso, iso_handle arr, size_t i, size_t j,
                          size_t *want) {
  iso_scope in;
  iso_scope_open(iso, &in);
  iso_handle a = iso_array_get(iso, iso_get(arr), i);
  iso_handle b = iso_array_get(iso, iso_get(arr), j);
  CHECK(a != NULL && b != NULL);
  CHECK_OK(iso_array_set(iso, iso_get(arr), i, iso_get(b)));
  CHECK_OK(iso_array_set(iso, iso_get(arr), j, iso_get(a)));
  CHECK_OK(iso_scope_close(&in));
  size_t w = want[i];
  want[i] = want[j];
  want[j] = w;
}

/* An array far longer than a marking slice (GC_MARK_SLICE_SLOTS, 1,024)
 * is traced slice by slice, in order, and every element must survive, in
 * cycles run in small steps. The barrier passes over the slots of the
 * scanned prefix (Note [Scanned prefix] in gc/barrier.c). In the second
 * round, once some
 * slices are scanned, elements on both sides of every slice boundary of
 * the first sixteen (and the last element) are swapped with elements of
 * the first slice: an element moved out of a slot the marker has not
 * read into one it has is lost unless the barrier shades it, so a prefix
 * one slot too long fails here. */
static void test_long_array_slices(void) {
  enum { LONG = 50000, BOUNDARIES = 16 };
  static size_t want[LONG];
  for (size_t i = 0; i < LONG; i++) want[i] = i;
  iso_isolate *iso = new_isolate(rt_none, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle arr = iso_array_new(iso, LONG);
  CHECK(arr != NULL);
  for (size_t i = 0; i < LONG; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle g = iso_record_new(iso, ty_none.garbage);
    CHECK(g != NULL);
    CHECK_OK(iso_record_set(iso, iso_get(g), 0, iso_smi((int64_t)i)));
    CHECK_OK(iso_array_set(iso, iso_get(arr), i, iso_get(g)));
    CHECK_OK(iso_scope_close(&in));
  }
  promote(iso);
  finish_cycle(iso);
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), LONG);
  for (int round = 0; round < 2; round++) {
    CHECK_OK(iso_gc_start_marking(iso));
    long steps = 0;
    bool moved = false;
    while (iso_gc_cycle(iso) != ISO_GC_CYCLE_IDLE) {
      CHECK_OK(iso_gc_step(iso, 4096));
      CHECK_LT(++steps, STEP_LIMIT);
      if (round == 1 && !moved && steps == 8) {
        /* The first slice is traced, the last is not. */
        CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_MARKING);
        swap_elements(iso, arr, 0, LONG - 1, want);
        size_t low = 1;
        for (size_t s = 1; s <= BOUNDARIES; s++)
          for (size_t j = s * 1024 - 1; j <= s * 1024 + 1; j++)
            swap_elements(iso, arr, low++, j, want);
        moved = true;
      }
    }
    printf("# round %d: %ld steps\n", round, steps);
    CHECK_GT(steps, 8);
  }
  /* Every element survived both cycles, where the swaps put it. */
  size_t bad = 0;
  for (size_t i = 0; i < LONG; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle e = iso_array_get(iso, iso_get(arr), i);
    if (!e || iso_type_of(iso_get(e)) != ty_none.garbage ||
        iso_record_slot(iso_get(e), 0) != iso_smi((int64_t)want[i]))
      bad++;
    CHECK_OK(iso_scope_close(&in));
  }
  CHECK_UEQ(bad, 0);
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), LONG);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* Arrays made with up to five elements keep them in the array object
 * (isolate/array.c); growing one moves them to a new store and clears
 * the inline slots through the barrier. Here old arrays that the marker
 * has not scanned (the join only greys the list that holds them) grow
 * while a cycle marks: their elements, reachable only through them, must
 * be shaded by those clearing stores, or the sweep frees them (a store
 * made while marking is black, or young, and is not traced). Fails when
 * the inline slots are cleared without the barrier. */
static void test_inline_array_grows_while_marking(void) {
  enum { ARRAYS = 64 };
  iso_isolate *iso = new_isolate(rt_none, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle list = iso_array_new(iso, 0);
  size_t elements = 0;
  for (size_t k = 0; k < ARRAYS; k++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    size_t n = 1 + k % 5;
    iso_handle a = iso_array_new(iso, n);
    CHECK(a != NULL);
    for (size_t i = 0; i < n; i++) {
      iso_handle g = iso_record_new(iso, ty_none.garbage);
      CHECK(g != NULL);
      CHECK_OK(
          iso_record_set(iso, iso_get(g), 0, iso_smi((int64_t)(k * 8 + i))));
      CHECK_OK(iso_array_set(iso, iso_get(a), i, iso_get(g)));
    }
    CHECK_OK(iso_array_push(iso, iso_get(list), iso_get(a)));
    elements += n;
    CHECK_OK(iso_scope_close(&in));
  }
  promote(iso);
  finish_cycle(iso);
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), elements);
  CHECK_OK(iso_gc_start_marking(iso));
  for (size_t k = 0; k < ARRAYS; k++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle a = iso_array_get(iso, iso_get(list), k);
    CHECK(a != NULL);
    CHECK_OK(iso_array_push(iso, iso_get(a), iso_smi(-1)));
    CHECK_OK(iso_scope_close(&in));
  }
  finish_cycle(iso);
  /* Other records take the space of any that were freed. */
  for (int round = 0; round < 2; round++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    for (size_t i = 0; i < elements * 4; i++) {
      iso_handle f = iso_record_new(iso, ty_none.filler);
      CHECK(f != NULL);
    }
    CHECK_OK(iso_scope_close(&in));
    promote(iso);
    finish_cycle(iso);
  }
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), elements);
  size_t bad = 0;
  for (size_t k = 0; k < ARRAYS; k++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    size_t n = 1 + k % 5;
    iso_value a = iso_get(iso_array_get(iso, iso_get(list), k));
    CHECK_UEQ(iso_array_length(a), n + 1);
    for (size_t i = 0; i < n; i++) {
      iso_handle g = iso_array_get(iso, a, i);
      if (!g || iso_type_of(iso_get(g)) != ty_none.garbage ||
          iso_record_slot(iso_get(g), 0) != iso_smi((int64_t)(k * 8 + i)))
        bad++;
    }
    CHECK(iso_get(iso_array_get(iso, a, n)) == iso_smi(-1));
    CHECK_OK(iso_scope_close(&in));
  }
  CHECK_UEQ(bad, 0);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* A chain of count MarkGarbage records in a new handle. */
static iso_handle build_garbage(iso_isolate *iso, const types *t,
                                size_t count) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle head = iso_handle_new(iso, ISO_NULL);
  for (size_t k = 0; k < count; k++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle g = iso_record_new(iso, t->garbage);
    CHECK(g != NULL);
    CHECK_OK(iso_record_set(iso, iso_get(g), 0, iso_get(head)));
    iso_handle_set(head, iso_get(g));
    CHECK_OK(iso_scope_close(&in));
  }
  return iso_scope_escape(&sc, head);
}

static void run_cycle(iso_isolate *iso, size_t budget) {
  CHECK_OK(iso_gc_start_marking(iso));
  long steps = 0;
  while (iso_gc_cycle(iso) != ISO_GC_CYCLE_IDLE) {
    CHECK_OK(iso_gc_step(iso, budget));
    CHECK_LT(++steps, STEP_LIMIT);
  }
}

/* Old objects unreachable when a cycle starts are freed by it; objects
 * dropped while it marks may float until the next one. */
static void test_unreachable_freed(void) {
  enum { COUNT = 20000, LATE = 5000 };
  iso_isolate *iso = new_isolate(rt_none, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle g = build_garbage(iso, &ty_none, COUNT);
  iso_handle keep = build_list(iso, &ty_none, 1000, 6);
  promote(iso);
  finish_cycle(iso);
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), COUNT);
  iso_heap_statistics_t hs0;
  CHECK_OK(iso_heap_statistics(iso, &hs0));

  iso_handle_set(g, ISO_NULL);
  run_cycle(iso, 1024);
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), 0);
  iso_heap_statistics_t hs1;
  CHECK_OK(iso_heap_statistics(iso, &hs1));
  /* Each MarkGarbage takes two words at least. */
  CHECK_ULE(hs1.used_heap_size + (size_t)COUNT * 16, hs0.used_heap_size);

  /* Dropped in the middle of marking: gone after the next cycle at the
   * latest. */
  iso_handle late = build_garbage(iso, &ty_none, LATE);
  promote(iso);
  finish_cycle(iso);
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), LATE);
  CHECK_OK(iso_gc_start_marking(iso));
  CHECK_OK(iso_gc_step(iso, 512));
  iso_handle_set(late, ISO_NULL);
  long steps = 0;
  while (iso_gc_cycle(iso) != ISO_GC_CYCLE_IDLE) {
    CHECK_OK(iso_gc_step(iso, 512));
    CHECK_LT(++steps, STEP_LIMIT);
  }
  run_cycle(iso, 4096);
  CHECK_UEQ(unit_type_count(iso, ty_none.garbage), 0);
  check_list(&ty_none, iso_get(keep), 1000, 6);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_cycles_counter(void) {
  iso_isolate *iso = new_isolate(rt_none, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle keep = build_list(iso, &ty_none, 2000, 7);
  promote(iso);
  finish_cycle(iso);
  uint64_t c0 = unit_gc_stats(iso).cycles;
  for (int i = 1; i <= 3; i++) {
    run_cycle(iso, 2048);
    uint64_t c = unit_gc_stats(iso).cycles;
    if (UNIT_GC_STRESS) {
      CHECK_UGE(c, c0 + (uint64_t)i);
    } else {
      CHECK_UEQ(c, c0 + (uint64_t)i);
    }
  }
  /* A full GC completes a cycle too. */
  uint64_t before = unit_gc_stats(iso).cycles;
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UGE(unit_gc_stats(iso).cycles, before + 1);
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_IDLE);
  check_list(&ty_none, iso_get(keep), 2000, 7);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* A pretenuring isolate allocates old objects inline, from the old
 * space's linear area lent to the inline paths (Note [The inline old LAB]
 * in gc/young.c); while marking, they must end up black. Here a list of
 * pairs made while a cycle marks, kept only by a handle made after the
 * join (roots are not scanned again), must survive that cycle's sweep and
 * the next full collection. Fails if the LAB's objects are not marked
 * when the LAB comes back (they are swept: the debug zap or reuse shows). */
/* Pushes pairs {kept, null} onto keep, 1,024 at a time, until the isolate
 * pretenures and at least min pairs are kept (objects that all live make
 * it pretenure); returns how many it kept. */
static int keep_pairs_pretenuring(iso_isolate *iso, const types *t,
                                  iso_handle keep, int min) {
  enum { KEEP_LIMIT = 2000000 };
  int kept = 0;
  while (unit_gc_stats(iso).pretenured_bytes == 0 || kept < min) {
    CHECK_LT(kept, KEEP_LIMIT);
    iso_scope in;
    iso_scope_open(iso, &in);
    for (int k = 0; k < 1024; k++, kept++) {
      iso_value init[2] = {iso_smi(kept), ISO_NULL};
      iso_handle h = iso_record_new_v(iso, t->pair, 2, init);
      CHECK(h != NULL);
      CHECK_OK(iso_array_push(iso, iso_get(keep), iso_get(h)));
    }
    CHECK_OK(iso_scope_close(&in));
  }
  return kept;
}

/* Makes pairs {0..pairs-1, the previous pair} inline while a cycle marks,
 * each kept only by *list (a handle made after the join), marking in
 * steps; checks that marking ended while they were being made, that they
 * went to the old space, and, twice (around a full GC), that the list is
 * whole and the heap sound. */
static void pairs_while_marking(iso_isolate *iso, const types *t, int pairs) {
  CHECK_OK(iso_gc_start_marking(iso));
  uint64_t pre = unit_gc_stats(iso).pretenured_bytes;
  iso_handle list = iso_handle_new(iso, ISO_NULL);
  bool ended_meanwhile = false;
  for (int i = 0; i < pairs; i += 64) {
    iso_scope in;
    iso_scope_open(iso, &in);
    for (int k = i; k < i + 64; k++) {
      iso_value init[2] = {iso_smi(k), iso_get(list)};
      iso_handle h = iso_record_new_v(iso, t->pair, 2, init);
      CHECK(h != NULL);
      iso_handle_set(list, iso_get(h));
    }
    CHECK_OK(iso_scope_close(&in));
    /* Marking ends in a step or at a safepoint of the allocation (the
     * runtime has no GC threads: each one marks). */
    if (iso_gc_cycle(iso) == ISO_GC_CYCLE_MARKING)
      CHECK_OK(iso_gc_step(iso, 8192));
    if (!ended_meanwhile && iso_gc_cycle(iso) != ISO_GC_CYCLE_MARKING) {
      ended_meanwhile = true;
      printf("# marking ended after %d pairs\n", i + 64);
    }
  }
  finish_cycle(iso);
  /* Marking ended while pairs were being made, and they went to the old
   * space (a pair is 24 bytes). */
  CHECK(ended_meanwhile);
  CHECK_UGE(unit_gc_stats(iso).pretenured_bytes - pre, (uint64_t)pairs * 24);
  for (int pass = 0; pass < 2; pass++) {
    iso_value v = iso_get(list);
    int bad = 0;
    for (int k = pairs - 1; k >= 0; k--) {
      if (iso_kind_of(v) != ISO_KIND_RECORD || iso_type_of(v) != t->pair ||
          iso_record_slot(v, 0) != iso_smi(k)) {
        printf("# pass %d: pair %d is a %s\n", pass, k,
               iso_kind_name(iso_kind_of(v)));
        bad++;
        break;
      }
      v = iso_record_slot(v, 1);
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(v, ISO_NULL);
    CHECK_OK(iso_heap_verify(iso));
    CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  }
}

static void test_pretenured_black(void) {
  iso_isolate *iso = new_isolate(rt_none, 0);
  const types *t = &ty_none;
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle keep = iso_array_new(iso, 0);
  int kept = keep_pairs_pretenuring(iso, t, keep, 0);
  finish_cycle(iso);
  pairs_while_marking(iso, t, 64000);
  CHECK_UEQ(iso_array_length(iso_get(keep)), (size_t)kept);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

static void old_space(iso_isolate *iso, iso_heap_space_statistics_t *s);

/* Note [The next hole] (gc/young.c): while the isolate pretenures and a
 * cycle marks, the inline LAB moves from hole to hole of a swept old
 * space, and every pair made in a hole must be black. The holes are one
 * pair each (every other kept pair died), so nearly every pair takes the
 * next one; the old space does not grow while they fill. */
static void test_next_hole_black(void) {
  enum { PAIRS = 32768, PAIR = 24 };
  iso_isolate *iso = new_isolate(rt_none, 0);
  const types *t = &ty_none;
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle keep = iso_array_new(iso, 0);
  int kept = keep_pairs_pretenuring(iso, t, keep, 3 * PAIRS);
  for (int i = 1; i < kept; i += 2)
    CHECK_OK(iso_array_set(iso, iso_get(keep), (size_t)i, ISO_NULL));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  finish_cycle(iso);
  iso_heap_space_statistics_t s0, s1;
  old_space(iso, &s0);
  CHECK_UGE(s0.space_available_size, (size_t)PAIRS * PAIR);
  pairs_while_marking(iso, t, PAIRS);
  old_space(iso, &s1);
  /* The pairs filled holes: at most the pages the full GCs' promotions
   * and the handle block's growth take. */
  CHECK_ULE(s1.space_size, s0.space_size + 4 * (size_t)256 * 1024);
  for (int i = 0; i < kept; i += 2) {
    iso_value v = iso_get(iso_array_get(iso, iso_get(keep), (size_t)i));
    CHECK(iso_type_of(v) == t->pair && iso_record_slot(v, 0) == iso_smi(i));
  }
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* n records of type (two slots: base + i, null) in a new array. */
static iso_handle make_records(iso_isolate *iso, iso_type type, size_t n,
                               int64_t base) {
  iso_handle arr = iso_array_new(iso, n);
  CHECK(arr != NULL);
  for (size_t i = 0; i < n; i += 1024) {
    iso_scope in;
    iso_scope_open(iso, &in);
    for (size_t k = i; k < i + 1024 && k < n; k++) {
      iso_value init[2] = {iso_smi(base + (int64_t)k), ISO_NULL};
      iso_handle h = iso_record_new_v(iso, type, 2, init);
      CHECK(h != NULL);
      CHECK_OK(iso_array_set(iso, iso_get(arr), k, iso_get(h)));
    }
    CHECK_OK(iso_scope_close(&in));
  }
  return arr;
}

/* Records whose slot 0 is not base + i, among the non-null ones. */
static size_t bad_records(iso_isolate *iso, iso_handle arr, iso_type type,
                          int64_t base) {
  size_t bad = 0, n = iso_array_length(iso_get(arr));
  for (size_t i = 0; i < n; i++) {
    iso_value v = iso_get(iso_array_get(iso, iso_get(arr), i));
    if (v == ISO_NULL) continue;
    if (iso_kind_of(v) != ISO_KIND_RECORD || iso_type_of(v) != type ||
        iso_record_slot(v, 0) != iso_smi(base + (int64_t)i))
      bad++;
  }
  return bad;
}

static void old_space(iso_isolate *iso, iso_heap_space_statistics_t *s) {
  CHECK_OK(iso_heap_space_statistics(iso, 1, s));
  CHECK(strcmp(s->space_name, "old_space") == 0);
}

/* Note [Allocating in address order] (gc/old.c): a free block too small
 * for the object at hand is passed over, not lost. Old pairs (24 bytes)
 * with a hole of one pair between every two; nodes (32 bytes, too big for
 * any hole) promoted next leave every hole counted as free; pairs promoted
 * after them, as many bytes as are free, fill the holes and the rest of
 * the nodes' new page, and the old space does not grow. */
static void test_free_space_reused(void) {
  enum { COUNT = 65536, PAIR = 24, SLACK = 1024 };
  const types *t = &ty_none;
  iso_isolate *iso = new_isolate_flags(rt_none, 0, ISO_ISOLATE_NO_PRETENURING);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle pairs = make_records(iso, t->pair, COUNT, 0);
  promote(iso);
  for (size_t i = 1; i < COUNT; i += 2)
    CHECK_OK(iso_array_set(iso, iso_get(pairs), i, ISO_NULL));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(iso_gc_cycle(iso), ISO_GC_CYCLE_IDLE);
  iso_heap_space_statistics_t s0, s1, s2;
  old_space(iso, &s0);
  size_t holes = (size_t)COUNT / 2 * PAIR;
  CHECK_UGE(s0.space_available_size, holes);

  iso_handle nodes = make_records(iso, t->node, COUNT / 2, COUNT);
  promote(iso);
  CHECK_UEQ(iso_gc_cycle(iso), ISO_GC_CYCLE_IDLE); /* no sweep since */
  old_space(iso, &s1);
  CHECK_UGT(s1.space_size, s0.space_size); /* the nodes took new pages */
  CHECK_UGE(s1.space_available_size, holes);

  size_t more = s1.space_available_size / PAIR - SLACK;
  iso_handle pairs2 = make_records(iso, t->pair, more, 2 * COUNT);
  promote(iso);
  old_space(iso, &s2);
  CHECK_UEQ(s2.space_size, s1.space_size);
  CHECK_ULE(s2.space_available_size, (size_t)(SLACK + 1) * PAIR + 4096);

  CHECK_UEQ(bad_records(iso, pairs, t->pair, 0), 0);
  CHECK_UEQ(bad_records(iso, nodes, t->node, COUNT), 0);
  CHECK_UEQ(bad_records(iso, pairs2, t->pair, 2 * COUNT), 0);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

/* Note [GC threads and spare cores] (threads/gc_threads.c): a runtime
 * that counts one core leaves its GC thread none while an isolate is
 * active, so the isolate's own safepoints must carry its cycle, even
 * with no allocation that the pacing would ask marking for. A cycle over
 * a list of 20,000 nodes ends while the owner does nothing but call
 * iso_safepoint (the GC thread may serve the isolate only after it has
 * been idle 20 ms, and a loop of safepoints is never idle); an owner that
 * waited for the GC thread would never end it. The bound is a generous
 * wall-clock limit, not a count of safepoints: a GC thread that entered
 * the cycle before it saw the isolate active may hold marking or
 * sweeping work until its next slice, and on a loaded machine it can be
 * off its core for tens of milliseconds, thousands of safepoints (seen:
 * 3,495 to 6,727 safepoints in 40 to 60 ms with three busy loops beside
 * the test; 11 on a quiet machine). The list survives. */
static void test_no_spare_core(void) {
  enum { NODES = 20000, LIMIT_MS = 10000 };
  iso_runtime_params rp;
  memset(&rp, 0, sizeof rp);
  rp.struct_size = sizeof rp;
  rp.cores = 1;
  iso_runtime *rt = iso_runtime_new(&rp);
  CHECK(rt != NULL);
  types t;
  register_types(rt, &t);
  iso_isolate *iso = new_isolate(rt, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle keep = build_list(iso, &t, NODES, 9);
  promote(iso);
  finish_cycle(iso);
  uint64_t cycles = unit_gc_stats(iso).cycles;
  CHECK_OK(iso_gc_start_marking(iso));
  long n = 0;
  double t0 = now_ms(), ms = 0;
  while (iso_gc_cycle(iso) != ISO_GC_CYCLE_IDLE && ms < LIMIT_MS) {
    CHECK_OK(iso_safepoint(iso));
    n++;
    ms = now_ms() - t0;
  }
  printf("# the cycle ended after %ld safepoints, %.1f ms\n", n, ms);
  CHECK_EQ(iso_gc_cycle(iso), ISO_GC_CYCLE_IDLE);
  CHECK_UGT(unit_gc_stats(iso).cycles, cycles);
  check_list(&t, iso_get(keep), NODES, 9);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
  CHECK_OK(iso_runtime_free(rt));
}

/* With GC threads, a cycle finishes while its isolate is parked. This
 * polls iso_gc_cycle() while parked: it reads the cycle's state, not the
 * heap. */
static void test_background_completes_parked(void) {
  iso_isolate *iso = new_isolate(rt_bg, 0);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle keep = build_list(iso, &ty_bg, 20000, 8);
  iso_handle g = build_garbage(iso, &ty_bg, 10000);
  promote(iso);
  finish_cycle(iso);
  iso_handle_set(g, ISO_NULL);
  iso_gc_statistics_t s0 = unit_gc_stats(iso);

  CHECK_OK(iso_gc_start_marking(iso));
  CHECK_OK(iso_isolate_park(iso));
  /* Not a speed requirement: only a hang detector, far beyond what the
   * marking of a few MiB takes on a loaded machine. */
  long waited = 0;
  while (iso_gc_cycle(iso) == ISO_GC_CYCLE_MARKING && waited < 30000) {
    sleep_ms(1);
    waited++;
  }
  iso_gc_cycle_state st = iso_gc_cycle(iso);
  CHECK_OK(iso_isolate_unpark(iso));
  if (st == ISO_GC_CYCLE_MARKING)
    printf("# still marking after %ld ms parked\n", waited);
  CHECK_NE(st, ISO_GC_CYCLE_MARKING);
  finish_cycle(iso);
  iso_gc_statistics_t s1 = unit_gc_stats(iso);
  CHECK_UGE(s1.cycles, s0.cycles + 1);
  CHECK(s1.background_mark_ms > s0.background_mark_ms);
  printf("# marked in the background for %.3f ms (waited %ld ms)\n",
         s1.background_mark_ms - s0.background_mark_ms, waited);
  CHECK_UEQ(unit_type_count(iso, ty_bg.garbage), 0);
  check_list(&ty_bg, iso_get(keep), 20000, 8);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

static void usage(void) {
  fprintf(stderr,
          "usage: test_marking [--api | --lost-object | --no-barrier] "
          "[test]\n"
          "  --api          the API tests only\n"
          "  --lost-object  the lost-object test only\n"
          "  --no-barrier   the lost-object test with the marking barrier\n"
          "                 off: it must fail\n");
}

int main(int argc, char **argv) {
  /* One mode option first, then the usual test-name filter. */
  bool api = true, lost = true;
  if (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
    if (strcmp(argv[1], "--api") == 0) {
      lost = false;
    } else if (strcmp(argv[1], "--lost-object") == 0) {
      api = false;
    } else if (strcmp(argv[1], "--no-barrier") == 0) {
      api = false;
      no_barrier = true;
    } else {
      usage();
      return 2;
    }
    argv[1] = argv[0];
    argc--;
    argv++;
  }
  unit_init(argc, argv);
  unit_clean_env();
  /* Each runtime below chooses its GC threads itself. */
  unsetenv("ISO_GC_THREADS");
  unsetenv("ISO_GC_CORES");
  iso_runtime_params rp;
  memset(&rp, 0, sizeof rp);
  rp.struct_size = sizeof rp;
  rp.gc_threads = ISO_GC_THREADS_NONE;
  rt_none = iso_runtime_new(&rp);
  CHECK(rt_none != NULL);
  rt_bg = iso_runtime_new(NULL);
  CHECK(rt_bg != NULL);
  register_types(rt_none, &ty_none);
  register_types(rt_bg, &ty_bg);
  if (api) {
    RUN(test_park_states);
    RUN(test_cycle_states);
    RUN(test_cycles_counter);
    RUN(test_reachable_survive);
    RUN(test_long_array_slices);
    RUN(test_inline_array_grows_while_marking);
    RUN(test_pretenured_black);
    RUN(test_next_hole_black);
    RUN(test_unreachable_freed);
    RUN(test_free_space_reused);
    RUN(test_background_completes_parked);
    RUN(test_no_spare_core);
  }
  if (lost) RUN(test_lost_object);
  CHECK_OK(iso_runtime_free(rt_none));
  CHECK_OK(iso_runtime_free(rt_bg));
  return unit_done();
}
