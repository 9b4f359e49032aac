/*
 * cpu_gaps: how long the machine takes a running thread away from it.
 *
 * Usage: cpu_gaps [--threads N] [--seconds S]
 *   defaults: 2 threads, 5 seconds
 *
 * N threads each read the monotonic clock in a loop for S seconds, and
 * nothing else: no allocation, no system call, no shared memory. Two
 * readings more than GAP_MS apart mean the thread did not run in between:
 * the OS gave its core to another thread, an interrupt took it, or, on a
 * virtual machine, the host did not run the virtual CPU. No library code
 * runs, so the gaps are the floor under every stall the other benchmarks
 * measure: old_churn's worst block, on one isolate, is measured while
 * its GC thread keeps the second core busy, so it cannot be shorter than
 * the worst gap of two busy threads here.
 *
 * Per thread it prints the gaps over 0.5 ms and over 1 ms, their total,
 * the longest, and the involuntary context switches the OS counted (a
 * gap without one is time the thread's CPU did not run at all). The JSON
 * line ends the output: threads, seconds, and over all threads the gap
 * counts, total and max.
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include "bench.h"

#include <pthread.h>

#define PROG "cpu_gaps"
#define GAP_MS 0.5
#define MAX_THREADS 64

typedef struct gap_thread {
  pthread_t thread;
  double seconds;
  uint64_t gaps, gaps_1ms;
  double gap_total_ms, worst_ms;
  long involuntary;
} gap_thread;

static double now_ms(void) { return bench_now_s() * 1e3; }

static void *spin(void *arg) {
  gap_thread *t = arg;
  struct rusage r0, r1;
  getrusage(RUSAGE_THREAD, &r0);
  double start = now_ms(), end = start + t->seconds * 1e3, prev = start;
  for (;;) {
    double now = now_ms();
    double d = now - prev;
    if (d > GAP_MS) {
      t->gaps++;
      if (d > 1.0) t->gaps_1ms++;
      t->gap_total_ms += d;
      if (d > t->worst_ms) t->worst_ms = d;
    }
    prev = now;
    if (now >= end) break;
  }
  getrusage(RUSAGE_THREAD, &r1);
  t->involuntary = r1.ru_nivcsw - r0.ru_nivcsw;
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f, "usage: %s [--threads N] [--seconds S]\n", PROG);
}

int main(int argc, char **argv) {
  unsigned threads = 2;
  double seconds = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = (unsigned)bench_parse_u64(PROG, "thread count", argv[++i], 1,
                                          MAX_THREADS);
    } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      char *end = NULL;
      seconds = strtod(argv[++i], &end);
      if (end == argv[i] || *end || !(seconds > 0 && seconds <= 3600)) {
        fprintf(stderr, "%s: bad seconds '%s' (0..3600)\n", PROG, argv[i]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }

  static gap_thread t[MAX_THREADS];
  for (unsigned i = 0; i < threads; i++) {
    t[i].seconds = seconds;
    if (pthread_create(&t[i].thread, NULL, spin, &t[i]) != 0) {
      fprintf(stderr, "%s: pthread_create failed\n", PROG);
      return 1;
    }
  }
  uint64_t gaps = 0, gaps_1ms = 0;
  double total = 0, worst = 0;
  for (unsigned i = 0; i < threads; i++) {
    pthread_join(t[i].thread, NULL);
    printf("thread %u: %" PRIu64 " gaps > %.1f ms, %" PRIu64
           " > 1 ms, %.1f ms in all, longest %.2f ms, %ld involuntary "
           "context switches\n",
           i, t[i].gaps, GAP_MS, t[i].gaps_1ms, t[i].gap_total_ms,
           t[i].worst_ms, t[i].involuntary);
    gaps += t[i].gaps;
    gaps_1ms += t[i].gaps_1ms;
    total += t[i].gap_total_ms;
    if (t[i].worst_ms > worst) worst = t[i].worst_ms;
  }

  bench_json j = {0};
  bench_json_str(&j, "benchmark", "cpu_gaps");
  bench_json_u64(&j, "threads", threads);
  bench_json_num(&j, "seconds", seconds, 1);
  bench_json_u64(&j, "gaps", gaps);
  bench_json_u64(&j, "gaps_over_1ms", gaps_1ms);
  bench_json_num(&j, "gap_total_ms", total, 1);
  bench_json_num(&j, "max_gap_ms", worst, 3);
  bench_json_end(&j);
  return 0;
}
