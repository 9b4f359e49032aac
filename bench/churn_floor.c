/*
 * churn_floor: old_churn's memory traffic with no collector and no
 * library at all, the ceiling that any memory manager can reach on this
 * machine for that workload.
 *
 * Usage: churn_floor [--records R] [--seconds S]
 *   defaults: 4000000 records, 4 seconds (half for each placement)
 *
 * Per replacement it does what old_churn's loop cannot avoid: it writes a
 * new 32-byte record and a new 56-byte array of four numbers (the sizes
 * of old_churn's objects, headers included) and stores the record into a
 * random element (xorshift32, as old_churn) of an array of R pointers.
 * Nothing is read back, checked or freed, no barrier runs and no handle
 * is made. Where the new objects go is the one choice, timed separately:
 *
 *   bump   one after another through an arena four times the live set,
 *          wrapping around: what a bump allocator into fresh or evacuated
 *          space writes (old_churn's young generation, or an old space
 *          that compacts);
 *   holes  at a random 88-byte block of an arena twice the live set: what
 *          a non-moving allocator writes once the old space is a field of
 *          scattered dead pairs (old_churn's steady state, although our
 *          sweeper hands holes out in address order, which is kinder).
 *
 * The arenas are touched before the clock starts, so no page fault is
 * timed. The figures are replacements per second for each placement
 * (bump_replacements_per_s, holes_replacements_per_s); compare3.sh prints
 * them beside old_churn's, as cpu_gaps' gaps are printed beside its
 * blocks.
 */
#include "bench.h"

#define PROG "churn_floor"
#define PAIR_WORDS 11 /* a 4-word record and a 7-word array */

/* Writes one pair at o and makes live[index] point to its record. */
static inline void replace(uint64_t **live, uint64_t index, uint64_t *o,
                           uint64_t serial) {
  o[0] = 0x21;            /* the record's header */
  o[1] = serial << 1 | 1; /* a */
  o[2] = index << 1 | 1;  /* b */
  o[3] = (uint64_t)(uintptr_t)(o + 4);
  o[4] = 0x29; /* the array's header, its store, length and elements */
  o[5] = 0x0a;
  o[6] = 4 << 1 | 1;
  for (int k = 0; k < 4; k++) o[7 + k] = (serial + (uint64_t)k) << 1 | 1;
  live[index] = o;
}

/* Replacements per second for S seconds, placing pairs as bump says. */
static double run(uint64_t **live, uint64_t records, uint64_t *arena,
                  uint64_t blocks, bool bump, double seconds, uint32_t *rng,
                  uint64_t *serial) {
  double start = bench_now_s(), now = start;
  uint64_t done = 0, next = 0;
  while (now - start < seconds) {
    for (int k = 0; k < 1024; k++) {
      uint64_t index = bench_xorshift32(rng) % records;
      uint64_t block;
      if (bump) {
        block = next;
        next = next + 1 == blocks ? 0 : next + 1;
      } else {
        block = (bench_xorshift32(rng) * (uint64_t)blocks) >> 32;
      }
      replace(live, index, arena + block * PAIR_WORDS, (*serial)++);
    }
    done += 1024;
    now = bench_now_s();
  }
  return (double)done / (now - start);
}

int main(int argc, char **argv) {
  uint64_t records = 4000000;
  double seconds = 4.0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) goto usage;
    const char *opt = argv[i], *val = argv[++i];
    if (strcmp(opt, "--records") == 0) {
      records = bench_parse_u64(PROG, "records", val, 1, 1u << 26);
    } else if (strcmp(opt, "--seconds") == 0) {
      seconds = (double)bench_parse_u64(PROG, "seconds", val, 1, 3600);
    } else {
      goto usage;
    }
  }
  /* The larger arena serves both placements. */
  uint64_t blocks = 4 * records;
  uint64_t **live = calloc(records, sizeof *live);
  uint64_t *arena = malloc(blocks * PAIR_WORDS * sizeof *arena);
  if (live == NULL || arena == NULL) {
    fprintf(stderr, "%s: out of memory\n", PROG);
    return 1;
  }
  memset(arena, 0, blocks * PAIR_WORDS * sizeof *arena);
  uint32_t rng = 2654435761u;
  uint64_t serial = 0;
  for (uint64_t i = 0; i < records; i++)
    replace(live, i, arena + i * PAIR_WORDS, serial++);

  double bump =
      run(live, records, arena, blocks, true, seconds / 2, &rng, &serial);
  double holes =
      run(live, records, arena, blocks / 2, false, seconds / 2, &rng, &serial);
  /* Something the compiler cannot drop: a sum over the live set. */
  uint64_t sum = 0;
  for (uint64_t i = 0; i < records; i += 4096) sum += live[i][1];
  printf("bump:  %.2f M replacements/s\nholes: %.2f M replacements/s\n",
         bump / 1e6, holes / 1e6);
  bench_json j = {0};
  bench_json_str(&j, "benchmark", "churn_floor");
  bench_json_u64(&j, "records", records);
  bench_json_num(&j, "seconds", seconds, 1);
  bench_json_num(&j, "bump_replacements_per_s", bump, 0);
  bench_json_num(&j, "holes_replacements_per_s", holes, 0);
  bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
  bench_json_u64(&j, "checksum", sum & 0xffff);
  bench_json_end(&j);
  free(arena);
  free(live);
  return 0;
usage:
  fprintf(stderr, "usage: %s [--records R] [--seconds S]\n", PROG);
  return 2;
}
