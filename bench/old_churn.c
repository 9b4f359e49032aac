/*
 * Old-space churn: a large live set of small objects in which a random
 * object is replaced again and again, on one or more isolates.
 *
 * Usage: old_churn [--isolates N] [--records R] [--seconds S] [--seed X]
 *   defaults: 1 isolate, 4000000 records, 10 seconds, seed 1
 *
 * Each isolate runs on a thread of its own (all share one runtime) and
 * first builds its live set: R records of a registered type Churn with
 * three slots, {a, b, arr}, held in one array of R elements rooted by a
 * handle. a and b are small integers (a serial number and the record's
 * index in the array; unboxed, as V8 keeps them in the twin), arr is a
 * new array of four small integers [a, a+1, a+2, a+3]. Then, for S
 * seconds, it replaces the record at a random index (xorshift32, a seed
 * per isolate derived from X) with a new record and a new array. Every
 * replaced record and array has usually been promoted by then, so the
 * old generation fills with garbage at the rate of the loop, and only
 * collecting the old generation gives the memory back: this is the
 * workload concurrent marking is for. At the end each isolate checks its
 * whole live set (the program fails if a record or array lost a value).
 *
 * Replacements run in blocks of 1,024, one handle scope per block. The
 * wall time of each block is the mutator's view of GC stalls: a block
 * that contains a pause takes that much longer. Block times go into an
 * array allocated before the clock starts.
 *
 * Figures (last line, JSON): replacements_per_s (total over isolates),
 * peak_rss_mb (VmHWM from /proc/self/status: the whole process, live sets
 * included), batch_ms {count, p50, p99, max} over the blocks of every
 * isolate, and pause_ms {count, p50, p99, max} from iso_gc_statistics'
 * `all` pauses. Each block's CPU time on its thread is kept too:
 * worst_block_cpu_ms is the CPU time of the block with the longest wall
 * time (the rest of that block is time the thread did not run), and
 * block_cpu_ms {p50, p99, max} their distribution. scavenge_max_ms and
 * marking_pause_max_ms split pause_ms.max by kind (the largest over the
 * isolates). node/old_churn.js is the twin (it reports wall times only).
 */
#include "bench.h"

#include <pthread.h>
#include <time.h>

#define PROG "old_churn"
#define BLOCK 1024
/* Block times are kept for at most this many replacements per second per
 * isolate, well above what one core can do; a faster run stops early
 * (and says so) rather than allocate in the timed loop. */
#define MAX_RATE_PER_ISOLATE 64e6

typedef struct churn_config {
  iso_runtime *rt;
  iso_type type;
  uint64_t records;
  double seconds;
  uint32_t seed;
  /* All isolates start churning together, after every live set is built,
   * and the main thread reads the CPU clock between the two barriers. */
  pthread_barrier_t start, end;
} churn_config;

typedef struct churn_thread {
  churn_config *cfg;
  unsigned index;
  pthread_t thread;
  uint32_t seed;
  double *block_ms;     /* preallocated, block_cap entries */
  double *block_cpu_ms; /* the thread's CPU time in each block */
  size_t block_cap;
  size_t blocks;
  uint64_t replacements;
  double churn_s; /* from the start barrier to the last block's end */
  double build_s;
  bool truncated; /* block_cap reached before the time was up */
  iso_gc_statistics_t gc;
} churn_thread;

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A seed per isolate: the same X gives every isolate a different stream,
 * and the twin derives the same ones (a multiplicative hash, never 0,
 * which xorshift would never leave). */
static uint32_t isolate_seed(uint32_t seed, unsigned index) {
  uint32_t s = (seed + index) * 2654435761u;
  return s ? s : 1;
}

/* Stores a new record {a, index, [a, a+1, a+2, a+3]} at live[index]. May
 * allocate: live is read from its handle after each allocation. */
static void store_record(iso_isolate *iso, iso_type type, iso_handle live,
                         uint64_t index, int64_t a) {
  iso_handle arr = iso_array_new(iso, 4);
  if (ISO_UNLIKELY(arr == NULL)) bench_die(PROG, "iso_array_new");
  for (size_t k = 0; k < 4; k++) {
    /* Stores into an existing element never allocate. */
    if (ISO_UNLIKELY(iso_array_set(iso, iso_get(arr), k,
                                   iso_smi(a + (int64_t)k)) != ISO_OK))
      bench_die(PROG, "iso_array_set");
  }
  iso_value init[3] = {iso_smi(a), iso_smi((int64_t)index), iso_get(arr)};
  iso_handle rec = iso_record_new_v(iso, type, 3, init);
  if (ISO_UNLIKELY(rec == NULL)) bench_die(PROG, "iso_record_new_v");
  if (ISO_UNLIKELY(iso_array_set(iso, iso_get(live), index, iso_get(rec)) !=
                   ISO_OK))
    bench_die(PROG, "iso_array_set");
}

/* Every record still has its own index and an array of four values that
 * follow from its serial number; returns the number of bad records. */
static uint64_t check_live_set(iso_isolate *iso, iso_type type, iso_handle live,
                               uint64_t records) {
  uint64_t bad = 0;
  if (iso_array_length(iso_get(live)) != records) return records;
  for (uint64_t base = 0; base < records; base += BLOCK) {
    uint64_t end = records - base < BLOCK ? records : base + BLOCK;
    iso_scope scope;
    iso_scope_open(iso, &scope);
    for (uint64_t i = base; i < end; i++) {
      iso_handle rec = iso_array_get(iso, iso_get(live), i);
      if (rec == NULL || iso_type_of(iso_get(rec)) != type) {
        bad++;
        continue;
      }
      /* Nothing below allocates in the heap (handles only), so the raw
       * slots stay valid. */
      iso_value a = iso_record_slot(iso_get(rec), 0);
      iso_value b = iso_record_slot(iso_get(rec), 1);
      iso_value arr = iso_record_slot(iso_get(rec), 2);
      bool ok = iso_is_smi(a) && b == iso_smi((int64_t)i) &&
                iso_kind_of(arr) == ISO_KIND_ARRAY &&
                iso_array_length(arr) == 4;
      for (size_t k = 0; ok && k < 4; k++) {
        iso_handle e = iso_array_get(iso, arr, k);
        ok = e != NULL && iso_get(e) == iso_smi(iso_smi_value(a) + (int64_t)k);
      }
      if (!ok) bad++;
    }
    iso_scope_close(&scope);
  }
  return bad;
}

static void *churn_main(void *arg) {
  churn_thread *t = arg;
  churn_config *cfg = t->cfg;
  /* Created on its own thread, which it is bound to. */
  iso_isolate *iso = iso_isolate_new(cfg->rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");

  iso_scope outer;
  iso_scope_open(iso, &outer);
  double t0 = bench_now_s();
  iso_handle live = iso_array_new(iso, (size_t)cfg->records);
  if (live == NULL) bench_die(PROG, "iso_array_new (live set)");
  int64_t serial = 0;
  for (uint64_t base = 0; base < cfg->records; base += BLOCK) {
    uint64_t end = cfg->records - base < BLOCK ? cfg->records : base + BLOCK;
    iso_scope scope;
    iso_scope_open(iso, &scope);
    for (uint64_t i = base; i < end; i++)
      store_record(iso, cfg->type, live, i, serial++);
    iso_scope_close(&scope);
  }
  t->build_s = bench_now_s() - t0;

  /* Waiting for the other threads is blocking outside the library:
   * parked, the isolate lets the GC threads finish a marking cycle for
   * it meanwhile. */
  if (iso_isolate_park(iso) != ISO_OK) bench_die(PROG, "iso_isolate_park");
  pthread_barrier_wait(&cfg->start);
  if (iso_isolate_unpark(iso) != ISO_OK) bench_die(PROG, "iso_isolate_unpark");

  uint32_t rng = t->seed;
  uint64_t records = cfg->records;
  double start = bench_now_s(), deadline = start + cfg->seconds;
  double prev = start, now = start, cpu_prev = thread_cpu_s();
  while (t->blocks < t->block_cap) {
    iso_scope scope;
    iso_scope_open(iso, &scope);
    for (int k = 0; k < BLOCK; k++) {
      uint64_t index = bench_xorshift32(&rng) % records;
      store_record(iso, cfg->type, live, index, serial++);
    }
    iso_scope_close(&scope);
    /* The loop allocates all the time, so the collector gets its
     * safepoints anyway; one per block makes sure a marking cycle whose
     * background work is done is finished within a block. */
    if (ISO_UNLIKELY(iso_safepoint(iso) != ISO_OK))
      bench_die(PROG, "iso_safepoint");
    now = bench_now_s();
    double cpu = thread_cpu_s();
    t->block_cpu_ms[t->blocks] = (cpu - cpu_prev) * 1e3;
    t->block_ms[t->blocks++] = (now - prev) * 1e3;
    prev = now;
    cpu_prev = cpu;
    if (now >= deadline) break;
  }
  t->truncated = now < deadline;
  t->churn_s = now - start;
  t->replacements = (uint64_t)t->blocks * BLOCK;

  if (iso_isolate_park(iso) != ISO_OK) bench_die(PROG, "iso_isolate_park");
  pthread_barrier_wait(&cfg->end);
  if (iso_isolate_unpark(iso) != ISO_OK) bench_die(PROG, "iso_isolate_unpark");

  uint64_t bad = check_live_set(iso, cfg->type, live, records);
  if (bad != 0) {
    fprintf(stderr,
            "%s: isolate %u: %" PRIu64 " of %" PRIu64 " records are wrong\n",
            PROG, t->index, bad, records);
    exit(1);
  }
  memset(&t->gc, 0, sizeof t->gc);
  if (iso_gc_statistics(iso, &t->gc) != ISO_OK)
    bench_die(PROG, "iso_gc_statistics");
  iso_scope_close(&outer);
  if (iso_isolate_free(iso) != ISO_OK) bench_die(PROG, "iso_isolate_free");
  return NULL;
}

/* Peak resident set of the process in MB, from the kernel's high-water
 * mark (VmHWM, in kB), as the twin reads it. */
static double peak_rss_mb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1.0;
  char line[256];
  double mb = -1.0;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long long kb;
    if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) {
      mb = (double)kb / 1024.0;
      break;
    }
  }
  fclose(f);
  return mb;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The same rank the twin uses: the element at floor(q * n), sorted. */
static double quantile(const double *sorted, size_t n, double q) {
  if (n == 0) return 0.0;
  size_t i = (size_t)(q * (double)n);
  return sorted[i < n ? i : n - 1];
}

static void json_dist(bench_json *j, const char *key, uint64_t count,
                      double p50, double p99, double max) {
  bench_json_key(j, key);
  printf("{\"count\":%" PRIu64 ",\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
         count, p50, p99, max);
}

static double parse_seconds(const char *arg) {
  char *end = NULL;
  errno = 0;
  double s = strtod(arg, &end);
  if (errno != 0 || end == arg || *end != '\0' || !(s > 0.0 && s <= 3600.0)) {
    fprintf(stderr, "%s: bad seconds '%s' (0..3600)\n", PROG, arg);
    exit(2);
  }
  return s;
}

static void usage(void) {
  fprintf(stderr,
          "usage: %s [--isolates N] [--records R] [--seconds S] [--seed X]\n",
          PROG);
  exit(2);
}

int main(int argc, char **argv) {
  unsigned isolates = 1;
  churn_config cfg = {.records = 4000000, .seconds = 10.0, .seed = 1};
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (i + 1 >= argc) usage();
    const char *val = argv[++i];
    if (strcmp(opt, "--isolates") == 0)
      isolates = (unsigned)bench_parse_u64(PROG, "isolates", val, 1, 64);
    else if (strcmp(opt, "--records") == 0)
      cfg.records = bench_parse_u64(PROG, "records", val, 1, 1u << 28);
    else if (strcmp(opt, "--seconds") == 0)
      cfg.seconds = parse_seconds(val);
    else if (strcmp(opt, "--seed") == 0)
      cfg.seed = (uint32_t)bench_parse_u64(PROG, "seed", val, 0, UINT32_MAX);
    else
      usage();
  }

  cfg.rt = iso_runtime_new(NULL);
  if (cfg.rt == NULL) bench_die(PROG, "iso_runtime_new");
  iso_type_desc desc = {
      .struct_size = sizeof desc, .name = "Churn", .slot_count = 3};
  cfg.type = iso_type_register(cfg.rt, &desc);
  if (cfg.type == 0) bench_die(PROG, "iso_type_register");
  if (pthread_barrier_init(&cfg.start, NULL, isolates + 1) != 0 ||
      pthread_barrier_init(&cfg.end, NULL, isolates + 1) != 0) {
    fprintf(stderr, "%s: pthread_barrier_init failed\n", PROG);
    return 1;
  }

  churn_thread *threads = calloc(isolates, sizeof *threads);
  if (threads == NULL) bench_die(PROG, "calloc");
  size_t cap = (size_t)(cfg.seconds * MAX_RATE_PER_ISOLATE / BLOCK) + 16;
  for (unsigned i = 0; i < isolates; i++) {
    churn_thread *t = &threads[i];
    t->cfg = &cfg;
    t->index = i;
    t->seed = isolate_seed(cfg.seed, i);
    t->block_cap = cap;
    t->block_ms = malloc(cap * sizeof *t->block_ms);
    t->block_cpu_ms = malloc(cap * sizeof *t->block_cpu_ms);
    if (t->block_ms == NULL || t->block_cpu_ms == NULL)
      bench_die(PROG, "malloc");
  }
  printf("old_churn: %u isolate%s, %" PRIu64
         " records each, %.3g s, seed %" PRIu32 "\n",
         isolates, isolates == 1 ? "" : "s", cfg.records, cfg.seconds,
         cfg.seed);
  fflush(stdout);
  for (unsigned i = 0; i < isolates; i++) {
    if (pthread_create(&threads[i].thread, NULL, churn_main, &threads[i]) !=
        0) {
      fprintf(stderr, "%s: pthread_create failed\n", PROG);
      return 1;
    }
  }
  pthread_barrier_wait(&cfg.start);
  double cpu0 = bench_cpu_s();
  pthread_barrier_wait(&cfg.end);
  double cpu = bench_cpu_s() - cpu0;
  for (unsigned i = 0; i < isolates; i++) pthread_join(threads[i].thread, NULL);

  /* Merged over isolates: every block of every isolate in one
   * distribution. The collector's pauses come as per-isolate summaries,
   * which cannot be merged exactly: the count is the sum, the max the
   * max, and p50 and p99 are the largest of the isolates' own (an upper
   * bound of the merged percentile). */
  size_t nblocks = 0;
  for (unsigned i = 0; i < isolates; i++) nblocks += threads[i].blocks;
  double *all = malloc((nblocks ? nblocks : 1) * sizeof *all);
  double *all_cpu = malloc((nblocks ? nblocks : 1) * sizeof *all_cpu);
  if (all == NULL || all_cpu == NULL) bench_die(PROG, "malloc");
  size_t at = 0;
  double worst_wall = -1.0, worst_cpu = 0.0;
  uint64_t replacements = 0;
  double rate = 0.0, wall = 0.0, build = 0.0;
  iso_pause_stats_t pause = {0};
  uint64_t scavenges = 0, fulls = 0, markings = 0, cycles = 0;
  double bg_mark = 0.0, bg_sweep = 0.0, scavenge_max = 0.0, marking_max = 0.0;
  for (unsigned i = 0; i < isolates; i++) {
    const churn_thread *t = &threads[i];
    memcpy(all + at, t->block_ms, t->blocks * sizeof *all);
    memcpy(all_cpu + at, t->block_cpu_ms, t->blocks * sizeof *all_cpu);
    at += t->blocks;
    for (size_t b = 0; b < t->blocks; b++) {
      if (t->block_ms[b] > worst_wall) {
        worst_wall = t->block_ms[b];
        worst_cpu = t->block_cpu_ms[b];
      }
    }
    replacements += t->replacements;
    /* Each isolate's rate over its own clock: they start together, but a
     * slower one may end a block later. */
    if (t->churn_s > 0) rate += (double)t->replacements / t->churn_s;
    if (t->churn_s > wall) wall = t->churn_s;
    if (t->build_s > build) build = t->build_s;
    if (t->truncated)
      fprintf(stderr, "%s: isolate %u stopped early: block log full\n", PROG,
              i);
    const iso_pause_stats_t *p = &t->gc.all;
    pause.count += p->count;
    pause.total_ms += p->total_ms;
    if (p->p50_ms > pause.p50_ms) pause.p50_ms = p->p50_ms;
    if (p->p99_ms > pause.p99_ms) pause.p99_ms = p->p99_ms;
    if (p->max_ms > pause.max_ms) pause.max_ms = p->max_ms;
    scavenges += t->gc.scavenge.count;
    if (t->gc.scavenge.max_ms > scavenge_max)
      scavenge_max = t->gc.scavenge.max_ms;
    if (t->gc.marking.max_ms > marking_max) marking_max = t->gc.marking.max_ms;
    fulls += t->gc.full.count;
    markings += t->gc.marking.count;
    cycles += t->gc.cycles;
    bg_mark += t->gc.background_mark_ms;
    bg_sweep += t->gc.background_sweep_ms;
  }
  qsort(all, nblocks, sizeof *all, cmp_double);
  qsort(all_cpu, nblocks, sizeof *all_cpu, cmp_double);

  printf("%" PRIu64 " replacements in %.2f s, live sets checked\n",
         replacements, wall);

  bench_json j = {0};
  bench_json_str(&j, "benchmark", "old_churn");
  bench_json_str(&j, "impl", "c");
  bench_json_u64(&j, "isolates", isolates);
  bench_json_u64(&j, "records", cfg.records);
  bench_json_u64(&j, "seed", cfg.seed);
  bench_json_num(&j, "build_s", build, 3);
  bench_json_num(&j, "wall_s", wall, 3);
  bench_json_num(&j, "cpu_s", cpu, 3);
  bench_json_u64(&j, "replacements", replacements);
  bench_json_num(&j, "replacements_per_s", rate, 0);
  bench_json_num(&j, "peak_rss_mb", peak_rss_mb(), 1);
  json_dist(&j, "batch_ms", nblocks, quantile(all, nblocks, 0.5),
            quantile(all, nblocks, 0.99), nblocks ? all[nblocks - 1] : 0.0);
  json_dist(&j, "pause_ms", pause.count, pause.p50_ms, pause.p99_ms,
            pause.max_ms);
  bench_json_num(&j, "worst_block_cpu_ms", worst_cpu, 3);
  json_dist(&j, "block_cpu_ms", nblocks, quantile(all_cpu, nblocks, 0.5),
            quantile(all_cpu, nblocks, 0.99),
            nblocks ? all_cpu[nblocks - 1] : 0.0);
  bench_json_num(&j, "pause_total_ms", pause.total_ms, 1);
  bench_json_u64(&j, "scavenge_count", scavenges);
  bench_json_num(&j, "scavenge_max_ms", scavenge_max, 3);
  bench_json_u64(&j, "full_gc_count", fulls);
  bench_json_u64(&j, "marking_pause_count", markings);
  bench_json_num(&j, "marking_pause_max_ms", marking_max, 3);
  bench_json_u64(&j, "gc_cycles", cycles);
  bench_json_num(&j, "background_mark_ms", bg_mark, 1);
  bench_json_num(&j, "background_sweep_ms", bg_sweep, 1);
  bench_json_end(&j);

  free(all);
  free(all_cpu);
  for (unsigned i = 0; i < isolates; i++) {
    free(threads[i].block_ms);
    free(threads[i].block_cpu_ms);
  }
  free(threads);
  pthread_barrier_destroy(&cfg.start);
  pthread_barrier_destroy(&cfg.end);
  if (iso_runtime_free(cfg.rt) != ISO_OK) bench_die(PROG, "iso_runtime_free");
  return 0;
}
