/*
 * binary-trees, the Benchmarks Game program, on one isolate or several.
 *
 * Usage: binary_trees [DEPTH] [--isolates N]   (default 21, 1 isolate)
 *
 * Builds complete binary trees bottom-up, counts their nodes, and lets them
 * die; one long-lived tree stays reachable (from a global) the whole time,
 * so the young generation's survivors are promoted and the old space sees
 * a steady state. The report is byte for byte the reference program's (and
 * node/binary_trees.js's); the last line is a JSON object of figures.
 *
 * Tree nodes are records of a registered type with two slots; a leaf has
 * null children. Building roots unfinished subtrees in a shadow stack of
 * handles and allocates with the inline bump allocator; checking reads
 * slots raw, since it never allocates.
 *
 * With --isolates N, N threads each run an isolate of one runtime and do
 * a contiguous 1/N of the iterations of every depth; the stretch tree is
 * built by the first isolate and the long-lived tree kept by the second
 * (the first too when N is 1), so neither adds to one thread's share
 * twice. Each depth's check is the sum of the isolates' parts, so the
 * report is the same for every N. One isolate runs on the main thread,
 * as the program always did.
 */
#include "bench.h"

#include <pthread.h>

#define PROG "binary_trees"
#define MIN_DEPTH 4
#define MAX_DEPTH 30

static iso_type node_type;

/* The shadow stack: one handle per depth, made once. While the right
 * subtree of a node at depth d is built, shadow[d] holds the finished left
 * one; every other reference is a raw value used before the next
 * allocation. This is how a language runtime roots its temporaries, and it
 * costs no handle scope per node. One per thread: each isolate roots its
 * own temporaries. */
static _Thread_local iso_handle shadow[64];

/* A tree of the given depth as a raw value (valid until the next
 * allocation), or 0 when the heap is exhausted. */
static iso_value bottom_up_tree(iso_isolate *iso, int depth) {
  if (depth == 0) {
    static const iso_value leaf[2] = {ISO_NULL, ISO_NULL};
    return iso_record_alloc(iso, node_type, 2, leaf);
  }
  iso_value left = bottom_up_tree(iso, depth - 1);
  if (ISO_UNLIKELY(left == 0)) return 0;
  iso_handle_set(shadow[depth], left);
  iso_value right = bottom_up_tree(iso, depth - 1);
  if (ISO_UNLIKELY(right == 0)) return 0;
  /* Raw values read at the call: the allocator protects its inputs. */
  iso_value kids[2] = {iso_get(shadow[depth]), right};
  /* Let go of the subtree, or it would outlive the tree it belongs to. */
  iso_handle_set(shadow[depth], ISO_UNDEFINED);
  return iso_record_alloc(iso, node_type, 2, kids);
}

/* Nodes in the tree; never allocates, so raw values stay valid. */
static int64_t item_check(iso_value node) {
  iso_value left = iso_record_slot(node, 0);
  if (left == ISO_NULL) return 1;
  return 1 + item_check(left) + item_check(iso_record_slot(node, 1));
}

static int64_t tree_size(int depth) { return ((int64_t)2 << depth) - 1; }

/* Builds a tree, checks it and drops it. item_check never allocates, so
 * the raw tree stays valid while it runs. */
static int64_t build_and_check(iso_isolate *iso, int depth) {
  iso_value tree = bottom_up_tree(iso, depth);
  if (tree == 0) bench_die(PROG, "building a tree");
  return item_check(tree);
}

/* One isolate's part of the run, and what it found. */
typedef struct bt_share {
  iso_runtime *rt;
  pthread_barrier_t *start, *end; /* NULL for a single isolate */
  unsigned index, isolates;
  int max_depth;
  bool stretch, long_lived; /* whether this isolate builds them */
  pthread_t thread;
  int64_t stretch_check, long_lived_check;
  int64_t check[MAX_DEPTH + 1]; /* its part of each depth's check */
  double t0, t1, cpu0, cpu1;    /* its clock, set-up and tear-down aside */
  iso_gc_statistics_t gc;
} bt_share;

/* Blocks outside the library with the isolate parked, so the collector
 * need not wait for it. */
static void wait_parked(iso_isolate *iso, pthread_barrier_t *b) {
  if (iso_isolate_park(iso) != ISO_OK) bench_die(PROG, "iso_isolate_park");
  pthread_barrier_wait(b);
  if (iso_isolate_unpark(iso) != ISO_OK) bench_die(PROG, "iso_isolate_unpark");
}

static void *run_share(void *arg) {
  bt_share *s = arg;
  int max_depth = s->max_depth;
  iso_isolate *iso = iso_isolate_new(s->rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");

  for (int i = 0; i < 64; i++) {
    shadow[i] = iso_handle_new(iso, ISO_UNDEFINED);
    if (shadow[i] == NULL) bench_die(PROG, "iso_handle_new");
  }

  if (s->start != NULL) wait_parked(iso, s->start);
  s->t0 = bench_now_s();
  s->cpu0 = bench_cpu_s();

  if (s->stretch) s->stretch_check = build_and_check(iso, max_depth + 1);

  iso_global *long_lived = NULL;
  if (s->long_lived) {
    iso_value tree = bottom_up_tree(iso, max_depth);
    if (tree == 0) bench_die(PROG, "building the long-lived tree");
    long_lived = iso_global_new(iso, tree);
    if (long_lived == NULL) bench_die(PROG, "iso_global_new");
  }

  for (int depth = MIN_DEPTH; depth <= max_depth; depth += 2) {
    int64_t iterations = (int64_t)1 << (max_depth - depth + MIN_DEPTH);
    int64_t lo = iterations * s->index / s->isolates;
    int64_t hi = iterations * (s->index + 1) / s->isolates;
    int64_t check = 0;
    for (int64_t i = lo; i < hi; i++) check += build_and_check(iso, depth);
    s->check[depth] = check;
  }

  if (long_lived != NULL)
    s->long_lived_check = item_check(iso_global_value(long_lived));
  s->t1 = bench_now_s();
  s->cpu1 = bench_cpu_s();
  /* The CPU clock counts every thread: read it once all have finished. */
  if (s->end != NULL) {
    wait_parked(iso, s->end);
    s->cpu1 = bench_cpu_s();
  }

  memset(&s->gc, 0, sizeof s->gc);
  if (iso_gc_statistics(iso, &s->gc) != ISO_OK)
    bench_die(PROG, "iso_gc_statistics");
  if (long_lived != NULL) iso_global_free(iso, long_lived);
  if (iso_isolate_free(iso) != ISO_OK) bench_die(PROG, "iso_isolate_free");
  return NULL;
}

/* The collector's pause figures under bench_json_gc's keys, over every
 * isolate: counts, totals and bytes add up, maxima are the largest; the
 * percentiles of separate histograms cannot be merged, so p50 and p99 are
 * the largest of the isolates' own. For one isolate this prints exactly
 * what bench_json_gc does. */
static void json_gc_merged(bench_json *j, const bt_share *shares, unsigned n) {
  iso_gc_statistics_t m;
  memset(&m, 0, sizeof m);
  for (unsigned i = 0; i < n; i++) {
    const iso_gc_statistics_t *g = &shares[i].gc;
    m.scavenge.count += g->scavenge.count;
    m.scavenge.total_ms += g->scavenge.total_ms;
    if (g->scavenge.p50_ms > m.scavenge.p50_ms)
      m.scavenge.p50_ms = g->scavenge.p50_ms;
    if (g->scavenge.p99_ms > m.scavenge.p99_ms)
      m.scavenge.p99_ms = g->scavenge.p99_ms;
    if (g->scavenge.max_ms > m.scavenge.max_ms)
      m.scavenge.max_ms = g->scavenge.max_ms;
    m.full.count += g->full.count;
    m.full.total_ms += g->full.total_ms;
    if (g->full.max_ms > m.full.max_ms) m.full.max_ms = g->full.max_ms;
    m.promoted_bytes += g->promoted_bytes;
    m.allocated_bytes += g->allocated_bytes;
  }
  bench_json_u64(j, "scavenge_count", m.scavenge.count);
  bench_json_num(j, "scavenge_total_ms", m.scavenge.total_ms, 1);
  bench_json_num(j, "scavenge_p50_ms", m.scavenge.p50_ms, 3);
  bench_json_num(j, "scavenge_p99_ms", m.scavenge.p99_ms, 3);
  bench_json_num(j, "scavenge_max_ms", m.scavenge.max_ms, 3);
  bench_json_u64(j, "full_gc_count", m.full.count);
  bench_json_num(j, "full_gc_total_ms", m.full.total_ms, 1);
  bench_json_num(j, "full_gc_max_ms", m.full.max_ms, 3);
  bench_json_num(j, "promoted_mb", (double)m.promoted_bytes / 1048576.0, 1);
  bench_json_num(j, "allocated_mb", (double)m.allocated_bytes / 1048576.0, 1);
}

static void usage(void) {
  fprintf(stderr, "usage: %s [DEPTH] [--isolates N]\n", PROG);
  exit(2);
}

int main(int argc, char **argv) {
  int depth_arg = 21;
  unsigned isolates = 1;
  bool have_depth = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--isolates") == 0) {
      if (i + 1 >= argc) usage();
      isolates = (unsigned)bench_parse_u64(PROG, "isolates", argv[++i], 1, 64);
    } else if (!have_depth && argv[i][0] != '-') {
      depth_arg = (int)bench_parse_u64(PROG, "depth", argv[i], 0, MAX_DEPTH);
      have_depth = true;
    } else {
      usage();
    }
  }
  int max_depth = depth_arg > MIN_DEPTH + 2 ? depth_arg : MIN_DEPTH + 2;
  int stretch_depth = max_depth + 1;
  int64_t nodes = 0;

  iso_runtime *rt = iso_runtime_new(NULL);
  if (rt == NULL) bench_die(PROG, "iso_runtime_new");
  iso_type_desc desc = {
      .struct_size = sizeof desc, .name = "TreeNode", .slot_count = 2};
  node_type = iso_type_register(rt, &desc);
  if (node_type == 0) bench_die(PROG, "iso_type_register");

  bt_share *shares = calloc(isolates, sizeof *shares);
  if (shares == NULL) bench_die(PROG, "calloc");
  pthread_barrier_t start, end;
  if (isolates > 1 && (pthread_barrier_init(&start, NULL, isolates) != 0 ||
                       pthread_barrier_init(&end, NULL, isolates) != 0)) {
    fprintf(stderr, "%s: pthread_barrier_init failed\n", PROG);
    return 1;
  }
  for (unsigned i = 0; i < isolates; i++) {
    bt_share *s = &shares[i];
    s->rt = rt;
    s->start = isolates > 1 ? &start : NULL;
    s->end = isolates > 1 ? &end : NULL;
    s->index = i;
    s->isolates = isolates;
    s->max_depth = max_depth;
    s->stretch = i == 0;
    s->long_lived = i == 1 % isolates;
  }
  if (isolates == 1) {
    run_share(&shares[0]);
  } else {
    for (unsigned i = 0; i < isolates; i++) {
      if (pthread_create(&shares[i].thread, NULL, run_share, &shares[i]) != 0) {
        fprintf(stderr, "%s: pthread_create failed\n", PROG);
        return 1;
      }
    }
    for (unsigned i = 0; i < isolates; i++)
      pthread_join(shares[i].thread, NULL);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&end);
  }

  /* The run lasts from the first isolate's start to the last one's end;
   * the threads leave the start barrier together. */
  double t0 = shares[0].t0, t1 = shares[0].t1;
  double cpu0 = shares[0].cpu0, cpu1 = shares[0].cpu1;
  int64_t stretch_check = 0, long_lived_check = 0;
  for (unsigned i = 0; i < isolates; i++) {
    const bt_share *s = &shares[i];
    if (s->t0 < t0) t0 = s->t0;
    if (s->t1 > t1) t1 = s->t1;
    if (s->cpu0 < cpu0) cpu0 = s->cpu0;
    if (s->cpu1 > cpu1) cpu1 = s->cpu1;
    if (s->stretch) stretch_check = s->stretch_check;
    if (s->long_lived) long_lived_check = s->long_lived_check;
  }
  double wall = t1 - t0, cpu = cpu1 - cpu0;

  printf("stretch tree of depth %d\t check: %" PRId64 "\n", stretch_depth,
         stretch_check);
  nodes += tree_size(stretch_depth);
  nodes += tree_size(max_depth);
  for (int depth = MIN_DEPTH; depth <= max_depth; depth += 2) {
    int64_t iterations = (int64_t)1 << (max_depth - depth + MIN_DEPTH);
    int64_t check = 0;
    for (unsigned i = 0; i < isolates; i++) check += shares[i].check[depth];
    nodes += iterations * tree_size(depth);
    printf("%" PRId64 "\t trees of depth %d\t check: %" PRId64 "\n", iterations,
           depth, check);
  }
  printf("long lived tree of depth %d\t check: %" PRId64 "\n", max_depth,
         long_lived_check);

  bench_json j = {0};
  bench_json_str(&j, "benchmark", "binary_trees");
  bench_json_str(&j, "impl", "c");
  bench_json_u64(&j, "depth", (uint64_t)max_depth);
  bench_json_u64(&j, "isolates", isolates);
  bench_json_num(&j, "wall_s", wall, 6);
  bench_json_num(&j, "cpu_s", cpu, 3);
  bench_json_u64(&j, "objects", (uint64_t)nodes);
  bench_json_num(&j, "objects_per_s", (double)nodes / wall, 0);
  bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
  json_gc_merged(&j, shares, isolates);
  bench_json_end(&j);

  free(shares);
  if (iso_runtime_free(rt) != ISO_OK) bench_die(PROG, "iso_runtime_free");
  return 0;
}
