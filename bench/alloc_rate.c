/*
 * Allocation rate of short-lived objects on one isolate.
 *
 * Usage: alloc_rate [COUNT]   (default 200000000)
 *
 * Allocates COUNT records of a two-slot type in batches of BATCH. Each
 * record holds a small integer and the previous record of its batch
 * (undefined for the first), all in one handle scope that closes at the
 * end of the batch, so a batch is a short chain that dies young: this
 * measures the inline bump allocation, the handle fast path and the
 * scavenger on an almost empty young generation. Each new record's
 * predecessor is read back through the link into a checksum that is
 * compared with its closed form, so neither the allocation nor the link
 * can be optimised away or silently broken by a collection. Prints the
 * same figures as node/alloc_rate.js, then the collector's pause figures.
 */
#include "bench.h"

#define PROG "alloc_rate"
#define BATCH 1000

/* The sum, modulo 2^32, of every value but the last of each batch,
 * batch by batch in closed form (products wrap modulo 2^64, which keeps
 * them right modulo 2^32; n * (n - 1) / 2 is small and exact). */
static uint32_t expected_checksum(uint64_t count) {
  uint64_t sum = 0;
  for (uint64_t base = 0; base < count; base += BATCH) {
    uint64_t end = count - base < BATCH ? count : base + BATCH;
    uint64_t n = end - 1 - base; /* base .. end - 2 */
    sum += n * base + n * (n - 1) / 2;
  }
  return (uint32_t)sum;
}

int main(int argc, char **argv) {
  uint64_t count = argc > 1 ? bench_parse_u64(PROG, "count", argv[1], 1,
                                              (uint64_t)1 << 50)
                            : 200000000;

  iso_runtime *rt = iso_runtime_new(NULL);
  if (rt == NULL) bench_die(PROG, "iso_runtime_new");
  iso_type_desc desc = {
      .struct_size = sizeof desc, .name = "Pair", .slot_count = 2};
  iso_type pair = iso_type_register(rt, &desc);
  if (pair == 0) bench_die(PROG, "iso_type_register");
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");

  uint32_t checksum = 0;
  double t0 = bench_now_s(), cpu0 = bench_cpu_s();
  for (uint64_t base = 0; base < count; base += BATCH) {
    uint64_t end = count - base < BATCH ? count : base + BATCH;
    iso_scope scope;
    iso_scope_open(iso, &scope);
    iso_value init[2] = {iso_smi((int64_t)base), ISO_UNDEFINED};
    iso_handle prev = iso_record_new_v(iso, pair, 2, init);
    if (ISO_UNLIKELY(prev == NULL)) bench_die(PROG, "iso_record_new_v");
    for (uint64_t i = base + 1; i < end; i++) {
      init[0] = iso_smi((int64_t)i);
      init[1] = iso_get(prev);
      iso_handle obj = iso_record_new_v(iso, pair, 2, init);
      if (ISO_UNLIKELY(obj == NULL)) bench_die(PROG, "iso_record_new_v");
      iso_value link = iso_record_slot(iso_get(obj), 1);
      checksum += (uint32_t)iso_smi_value(iso_record_slot(link, 0));
      prev = obj;
    }
    iso_scope_close(&scope);
  }
  double wall = bench_now_s() - t0, cpu = bench_cpu_s() - cpu0;

  uint32_t want = expected_checksum(count);
  if (checksum != want) {
    fprintf(stderr, "%s: checksum %" PRIu32 ", want %" PRIu32 "\n", PROG,
            checksum, want);
    return 1;
  }
  printf("%" PRIu64 " objects, checksum %" PRIu32 "\n", count, checksum);

  bench_json j = {0};
  bench_json_str(&j, "benchmark", "alloc_rate");
  bench_json_str(&j, "impl", "c");
  bench_json_u64(&j, "objects", count);
  bench_json_num(&j, "wall_s", wall, 6);
  bench_json_num(&j, "cpu_s", cpu, 3);
  bench_json_num(&j, "objects_per_s", (double)count / wall, 0);
  bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
  bench_json_gc(&j, iso);
  bench_json_end(&j);

  if (iso_isolate_free(iso) != ISO_OK) bench_die(PROG, "iso_isolate_free");
  if (iso_runtime_free(rt) != ISO_OK) bench_die(PROG, "iso_runtime_free");
  return 0;
}
