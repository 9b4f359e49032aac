/*
 * Helpers shared by the benchmark programs: a clock, peak RSS, argument
 * parsing, and the JSON line of figures that every program prints last.
 *
 * The JSON line is one flat object. Every key that holds a figure names
 * its unit (wall_s, objects_per_s, peak_rss_mb, scavenge_p99_ms, ...), so
 * scripts can compare runs and the Node.js twins print the same keys.
 */
#ifndef BENCH_H
#define BENCH_H

/* clock_gettime and getrusage under -std=c11; include this header first. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "isolate.h"

static inline double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the process (user + system), every thread: with wall time
 * it shows how much of a run was spent waiting for a busy machine, and
 * how much work helper threads did. */
static inline double bench_cpu_s(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* ru_maxrss is in KiB on Linux. */
static inline double bench_peak_rss_mb(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
  return (double)ru.ru_maxrss / 1024.0;
}

/* A decimal argument in [lo, hi], or exits with a usage message: a
 * benchmark run with a mistyped size should not measure something else. */
static inline uint64_t bench_parse_u64(const char *prog, const char *what,
                                       const char *arg, uint64_t lo,
                                       uint64_t hi) {
  char *end = NULL;
  unsigned long long v;
  errno = 0;
  if (arg[0] < '0' || arg[0] > '9') goto bad;
  v = strtoull(arg, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) goto bad;
  return (uint64_t)v;
bad:
  fprintf(stderr, "%s: bad %s '%s' (%" PRIu64 "..%" PRIu64 ")\n", prog, what,
          arg, lo, hi);
  exit(2);
}

/* The benchmarks' random numbers (old_churn's node twin computes the same
 * sequence): xorshift32, whose state is never 0. */
static inline uint32_t bench_xorshift32(uint32_t *state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  return x;
}

/* Reports a failed library call and exits; benchmarks have no recovery. */
static inline void bench_die(const char *prog, const char *what) {
  fprintf(stderr, "%s: %s failed: %s (%s)\n", prog, what,
          iso_status_name(iso_last_status()), iso_last_error());
  exit(1);
}

/* The JSON line: bench_json_begin, then fields, then bench_json_end. */
typedef struct bench_json {
  int fields;
} bench_json;

static inline void bench_json_key(bench_json *j, const char *key) {
  printf("%s\"%s\":", j->fields++ ? "," : "{", key);
}

static inline void bench_json_str(bench_json *j, const char *key,
                                  const char *v) {
  bench_json_key(j, key);
  printf("\"%s\"", v);
}

static inline void bench_json_u64(bench_json *j, const char *key,
                                  uint64_t v) {
  bench_json_key(j, key);
  printf("%" PRIu64, v);
}

/* digits after the point; JSON has no NaN or infinity, so those are null. */
static inline void bench_json_num(bench_json *j, const char *key, double v,
                                  int digits) {
  bench_json_key(j, key);
  if (v != v || v > 1e300 || v < -1e300)
    printf("null");
  else
    printf("%.*f", digits, v);
}

static inline void bench_json_end(bench_json *j) {
  printf(j->fields ? "}\n" : "{}\n");
  fflush(stdout);
}

/* The collector's pause figures, under the keys the Node.js twins use. */
static inline void bench_json_gc(bench_json *j, iso_isolate *iso) {
  iso_gc_statistics_t st;
  memset(&st, 0, sizeof st);
  if (iso_gc_statistics(iso, &st) != ISO_OK) return;
  bench_json_u64(j, "scavenge_count", st.scavenge.count);
  bench_json_num(j, "scavenge_total_ms", st.scavenge.total_ms, 1);
  bench_json_num(j, "scavenge_p50_ms", st.scavenge.p50_ms, 3);
  bench_json_num(j, "scavenge_p99_ms", st.scavenge.p99_ms, 3);
  bench_json_num(j, "scavenge_max_ms", st.scavenge.max_ms, 3);
  bench_json_u64(j, "full_gc_count", st.full.count);
  bench_json_num(j, "full_gc_total_ms", st.full.total_ms, 1);
  bench_json_num(j, "full_gc_max_ms", st.full.max_ms, 3);
  bench_json_num(j, "promoted_mb", (double)st.promoted_bytes / 1048576.0, 1);
  bench_json_num(j, "allocated_mb", (double)st.allocated_bytes / 1048576.0,
                 1);
}

#endif /* BENCH_H */
