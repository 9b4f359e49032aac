/*
 * binary-trees, the Benchmarks Game program, on one isolate.
 *
 * Usage: binary_trees [DEPTH]   (default 21)
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
 */
#include "bench.h"

#define PROG "binary_trees"
#define MIN_DEPTH 4

static iso_type node_type;

/* The shadow stack: one handle per depth, made once. While the right
 * subtree of a node at depth d is built, shadow[d] holds the finished left
 * one; every other reference is a raw value used before the next
 * allocation. This is how a language runtime roots its temporaries, and it
 * costs no handle scope per node. */
static iso_handle shadow[64];

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

int main(int argc, char **argv) {
  int depth_arg = argc > 1 ? (int)bench_parse_u64(PROG, "depth", argv[1], 0,
                                                  30)
                           : 21;
  int max_depth = depth_arg > MIN_DEPTH + 2 ? depth_arg : MIN_DEPTH + 2;
  int stretch_depth = max_depth + 1;
  int64_t nodes = 0;

  iso_runtime *rt = iso_runtime_new(NULL);
  if (rt == NULL) bench_die(PROG, "iso_runtime_new");
  iso_type_desc desc = {
      .struct_size = sizeof desc, .name = "TreeNode", .slot_count = 2};
  node_type = iso_type_register(rt, &desc);
  if (node_type == 0) bench_die(PROG, "iso_type_register");
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");

  for (int i = 0; i < 64; i++) {
    shadow[i] = iso_handle_new(iso, ISO_UNDEFINED);
    if (shadow[i] == NULL) bench_die(PROG, "iso_handle_new");
  }

  double t0 = bench_now_s(), cpu0 = bench_cpu_s();

  printf("stretch tree of depth %d\t check: %" PRId64 "\n", stretch_depth,
         build_and_check(iso, stretch_depth));
  nodes += tree_size(stretch_depth);

  iso_global *long_lived;
  {
    iso_value tree = bottom_up_tree(iso, max_depth);
    if (tree == 0) bench_die(PROG, "building the long-lived tree");
    long_lived = iso_global_new(iso, tree);
    if (long_lived == NULL) bench_die(PROG, "iso_global_new");
  }
  nodes += tree_size(max_depth);

  for (int depth = MIN_DEPTH; depth <= max_depth; depth += 2) {
    int64_t iterations = (int64_t)1 << (max_depth - depth + MIN_DEPTH);
    int64_t check = 0;
    for (int64_t i = 0; i < iterations; i++)
      check += build_and_check(iso, depth);
    nodes += iterations * tree_size(depth);
    printf("%" PRId64 "\t trees of depth %d\t check: %" PRId64 "\n",
           iterations, depth, check);
  }

  printf("long lived tree of depth %d\t check: %" PRId64 "\n", max_depth,
         item_check(iso_global_value(long_lived)));
  double wall = bench_now_s() - t0, cpu = bench_cpu_s() - cpu0;

  bench_json j = {0};
  bench_json_str(&j, "benchmark", "binary_trees");
  bench_json_str(&j, "impl", "c");
  bench_json_u64(&j, "depth", (uint64_t)max_depth);
  bench_json_num(&j, "wall_s", wall, 6);
  bench_json_num(&j, "cpu_s", cpu, 3);
  bench_json_u64(&j, "objects", (uint64_t)nodes);
  bench_json_num(&j, "objects_per_s", (double)nodes / wall, 0);
  bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
  bench_json_gc(&j, iso);
  bench_json_end(&j);

  iso_global_free(iso, long_lived);
  if (iso_isolate_free(iso) != ISO_OK) bench_die(PROG, "iso_isolate_free");
  if (iso_runtime_free(rt) != ISO_OK) bench_die(PROG, "iso_runtime_free");
  return 0;
}
