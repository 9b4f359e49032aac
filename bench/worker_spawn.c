/*
 * What a worker costs: time from spawn to its first message, and resident
 * memory per idle worker. The twin is node/worker_spawn.js.
 *
 * Usage: worker_spawn [--spawns N] [--idle N]   (default 50 and 50)
 *
 * Idle memory comes first, in a runtime of its own, so that nothing a
 * previous worker left behind (pooled pages, malloc arenas) is reused and
 * flatters the figure: the resident set size (from /proc/self/statm, not
 * the peak) is read once the runtime and the main isolate exist, then
 * --idle workers are spawned; each posts one message and blocks in a
 * receive. Once every one of them has posted, the resident set is read
 * again; the growth divided by the number of workers is the cost of one
 * idle worker. Closing their ports ends them.
 *
 * Then, in a new runtime, --spawns workers in a row: the clock starts
 * before iso_worker_spawn() and stops when the main thread has received
 * the worker's first message (a small integer it posts as soon as it
 * runs); the worker is then ended and joined, off the clock. The figure is
 * the median.
 */
#include "bench.h"

#include <unistd.h>

#define PROG "worker_spawn"
#define STUCK_MS 30000

/* Posts one message, then waits until the parent closes its port. */
static int idle_main(iso_isolate *iso, iso_port *parent, void *arg) {
  (void)arg;
  if (iso_port_post(parent, iso, iso_smi(1), NULL, 0) != ISO_OK) return 1;
  iso_handle h = NULL;
  iso_status st = iso_port_receive(parent, iso, -1, &h);
  return st == ISO_ERR_CLOSED ? 0 : 2;
}

static double rss_now_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f == NULL) return -1.0;
  int n = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  if (n != 2) return -1.0;
  return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1024.0;
}

/* The worker's first message: it must be the 1 it posts. */
static void receive_first(iso_isolate *iso, iso_port *port) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_handle h = NULL;
  if (iso_port_receive(port, iso, STUCK_MS, &h) != ISO_OK)
    bench_die(PROG, "iso_port_receive");
  if (iso_get(h) != iso_smi(1)) {
    fprintf(stderr, "%s: unexpected first message\n", PROG);
    exit(1);
  }
  iso_scope_close(&scope);
}

static void end_worker(iso_worker *w, iso_port *port) {
  int code = -100;
  iso_port_close(port);
  if (iso_worker_join(w, &code) != ISO_OK) bench_die(PROG, "iso_worker_join");
  if (code != 0) {
    fprintf(stderr, "%s: a worker exited with %d\n", PROG, code);
    exit(1);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  uint64_t spawns = 50, idle = 50;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) goto usage;
    if (strcmp(argv[i], "--spawns") == 0)
      spawns = bench_parse_u64(PROG, "spawns", argv[++i], 1, 100000);
    else if (strcmp(argv[i], "--idle") == 0)
      idle = bench_parse_u64(PROG, "idle", argv[++i], 1, 10000);
    else
      goto usage;
  }

  iso_worker_params wp = {.struct_size = sizeof wp, .name = "idle"};
  double t_start = bench_now_s(), cpu0 = bench_cpu_s();

  /* ---- idle workers ---- */
  iso_runtime *rt = iso_runtime_new(NULL);
  if (rt == NULL) bench_die(PROG, "iso_runtime_new");
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");
  iso_worker **workers = calloc(idle, sizeof *workers);
  iso_port **ports = calloc(idle, sizeof *ports);
  if (workers == NULL || ports == NULL) return 1;
  double rss0 = rss_now_kb();
  for (uint64_t i = 0; i < idle; i++) {
    workers[i] = iso_worker_spawn(rt, idle_main, NULL, &wp, &ports[i]);
    if (workers[i] == NULL) bench_die(PROG, "iso_worker_spawn");
  }
  for (uint64_t i = 0; i < idle; i++) receive_first(iso, ports[i]);
  double rss1 = rss_now_kb();
  for (uint64_t i = 0; i < idle; i++) end_worker(workers[i], ports[i]);
  free(workers);
  free(ports);
  if (iso_isolate_free(iso) != ISO_OK) bench_die(PROG, "iso_isolate_free");
  if (iso_runtime_free(rt) != ISO_OK) bench_die(PROG, "iso_runtime_free");
  if (rss0 < 0 || rss1 < 0) {
    fprintf(stderr, "%s: cannot read /proc/self/statm\n", PROG);
    return 1;
  }
  double per_worker_kb = (rss1 - rss0) / (double)idle;

  /* ---- spawn to first message ---- */
  rt = iso_runtime_new(NULL);
  if (rt == NULL) bench_die(PROG, "iso_runtime_new");
  iso = iso_isolate_new(rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");
  double *us = calloc(spawns, sizeof *us);
  if (us == NULL) return 1;
  for (uint64_t i = 0; i < spawns; i++) {
    iso_port *port = NULL;
    double t0 = bench_now_s();
    iso_worker *w = iso_worker_spawn(rt, idle_main, NULL, &wp, &port);
    if (w == NULL) bench_die(PROG, "iso_worker_spawn");
    receive_first(iso, port);
    us[i] = (bench_now_s() - t0) * 1e6;
    end_worker(w, port);
  }
  if (iso_isolate_free(iso) != ISO_OK) bench_die(PROG, "iso_isolate_free");
  if (iso_runtime_free(rt) != ISO_OK) bench_die(PROG, "iso_runtime_free");
  double wall = bench_now_s() - t_start, cpu = bench_cpu_s() - cpu0;

  qsort(us, spawns, sizeof *us, cmp_double);
  double p50 = spawns % 2 ? us[spawns / 2]
                          : (us[spawns / 2 - 1] + us[spawns / 2]) / 2;
  double p90 = us[(size_t)((double)(spawns - 1) * 0.9)];
  printf("%" PRIu64 " idle workers: +%.0f KiB resident, %.1f KiB each\n",
         idle, rss1 - rss0, per_worker_kb);
  printf("%" PRIu64 " spawns: first message after %.1f us (median), "
         "%.1f us (min), %.1f us (max)\n",
         spawns, p50, us[0], us[spawns - 1]);
  bench_json j = {0};
  bench_json_str(&j, "benchmark", "worker_spawn");
  bench_json_str(&j, "impl", "c");
  bench_json_u64(&j, "spawns", spawns);
  bench_json_num(&j, "spawn_to_first_message_us_p50", p50, 1);
  bench_json_num(&j, "spawn_to_first_message_us_min", us[0], 1);
  bench_json_num(&j, "spawn_to_first_message_us_p90", p90, 1);
  bench_json_num(&j, "spawn_to_first_message_us_max", us[spawns - 1], 1);
  bench_json_u64(&j, "idle_workers", idle);
  bench_json_num(&j, "rss_idle_growth_mb", (rss1 - rss0) / 1024.0, 2);
  bench_json_num(&j, "rss_per_idle_worker_kb", per_worker_kb, 1);
  bench_json_num(&j, "wall_s", wall, 3);
  bench_json_num(&j, "cpu_s", cpu, 3);
  bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
  bench_json_end(&j);
  free(us);
  return 0;

usage:
  fprintf(stderr, "usage: %s [--spawns N] [--idle N]\n", PROG);
  return 2;
}
