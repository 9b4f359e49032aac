/*
 * multi_torture: the graph torture engine on many isolates at once, in
 * one runtime, with its background GC threads marking and sweeping them.
 *
 * Each thread owns one engine (torture_lib.h) at a time and, between the
 * engine's steps, drives the concurrent collector the way a program and
 * its allocations do: it starts marking cycles, does small steps of them
 * itself, parks its isolate for up to 2 ms (the GC threads then finish
 * the cycle on its behalf), and now and then frees its isolate and starts
 * the next round on a new one. Full collections are kept rare, so most
 * cycles are concurrent ones. Every collection the engine sees, and every
 * completed cycle (iso_gc_statistics' `cycles`), is followed by a full
 * comparison of the heap with the engine's model and by iso_heap_verify.
 * There are more threads than cores by default, so isolates are
 * preempted in the middle of anything.
 *
 * Seeded: thread T's round R runs the engine with a seed drawn from the
 * run's seed, T and R, and the driver's choices (when to park, step,
 * start a cycle or start a new round) come from the same seed. The
 * interleaving with other threads and with the GC threads is not
 * replayable; a thread's own sequence of calls is. The seed is printed
 * first; a failure prints the thread, round and step, and two commands:
 * the whole run again, and that one round alone on one thread.
 *
 * Exit status: 0 passed, 1 a mismatch or a library error, 2 bad arguments
 * or a test that could not start.
 *
 * --break-marking-barrier runs the isolates with
 * ISO_DEBUG_SKIP_MARKING_BARRIER, to show the test can see a broken
 * barrier: that run must fail. It stops at the first failure and runs
 * for at most 60 s (a scheduling-dependent loss may take a few seconds
 * to show on a loaded machine). When it completed no concurrent cycle
 * it exits 99, an error rather than the failure it is meant to end with.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "isolate.h"
#include "torture_lib.h"

#if defined(__SANITIZE_THREAD__)
#define TORTURE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TORTURE_TSAN 1
#endif
#endif
#ifndef TORTURE_TSAN
#define TORTURE_TSAN 0
#endif

#define DEFAULT_SECONDS 3.0
#define SOAK_SECONDS 1800.0
/* A run with the barrier broken ends at its first failure, which usually
 * comes within 2 s; the budget only bounds a run that never fails. */
#define BREAK_SECONDS 60.0
#define DEFAULT_THREADS 4
#define MAX_THREADS 256

typedef struct opts {
  uint64_t seed;
  double seconds;
  unsigned threads;
  long only_thread; /* -1: all threads; else run only this one */
  uint64_t first_round, rounds;
  unsigned verify_every;
  bool small, verbose, break_barrier;
} opts;

static opts O;
static double start_time;
static atomic_bool stop_all;

/* ---- the driver's random numbers (xorshift64*) ---- */

static uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Thread t's seed; its round r runs on torture_round_seed(that, r). */
static uint64_t thread_seed(uint64_t seed, unsigned t) {
  return torture_round_seed(seed ^ 0x6d756c7469ull, 1000003ull * (t + 1));
}

/* ---- failures ---- */

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail_exit(long thread, uint64_t round, uint64_t step,
                      const char *msg) {
  /* The first failure reports; the other threads may be failing because
   * of it, or be fine: the process ends either way. */
  pthread_mutex_lock(&fail_lock);
  fflush(stdout);
  char where[96] = "";
  if (thread >= 0)
    snprintf(where, sizeof where, " thread %ld round %llu step %llu:", thread,
             (unsigned long long)round, (unsigned long long)step);
  fprintf(stderr, "multi_torture: FAILED: seed %llu%s %s\n",
          (unsigned long long)O.seed, where, msg);
  char extra[128] = "";
  if (O.small && !TORTURE_TSAN) snprintf(extra, sizeof extra, " --small");
  if (O.break_barrier) {
    size_t n = strlen(extra);
    snprintf(extra + n, sizeof extra - n, " --break-marking-barrier");
  }
  if (O.verify_every != 1) {
    size_t n = strlen(extra);
    snprintf(extra + n, sizeof extra - n, " --verify-every %u", O.verify_every);
  }
  fprintf(stderr,
          "multi_torture: replay the run with: multi_torture --seed %llu "
          "--threads %u --seconds %g%s\n",
          (unsigned long long)O.seed, O.threads, O.seconds, extra);
  if (thread >= 0)
    fprintf(stderr,
            "multi_torture: or this round alone with: multi_torture --seed "
            "%llu --threads %u --only-thread %ld --round %llu --rounds 1%s\n",
            (unsigned long long)O.seed, O.threads, thread,
            (unsigned long long)round, extra);
  fflush(stderr);
  /* The heaps may be corrupt: skip exit handlers (and leak reports). */
  _exit(1);
}

/* ---- one thread ---- */

typedef struct worker {
  unsigned index;
  pthread_t tid;
  iso_runtime *rt;
  /* Totals, read by main after the join. */
  uint64_t rounds, steps, checks, heap_verifies, scavenges, full_gcs;
  uint64_t cycles, concurrent_ends, starts, gc_steps, parks;
  uint64_t cycle_checks; /* checks made because a cycle completed */
  uint64_t pretenured_bytes;
  double background_mark_ms, background_sweep_ms, parked_ms;
} worker;

typedef struct round_state {
  worker *w;
  uint64_t round;
  torture *t;
  iso_isolate *iso;
  uint64_t rng;
  uint64_t seen_cycles; /* iso_gc_statistics().cycles at the last check */
  uint64_t seen_gcs;    /* collections the engine had seen then */
} round_state;

static uint64_t engine_step(const round_state *r) {
  torture_stats st;
  torture_get_stats(r->t, &st);
  return st.steps;
}

static void round_fail(const round_state *r, const char *msg) {
  fail_exit((long)r->w->index, r->round, engine_step(r), msg);
}

static void status_fail(const round_state *r, iso_status s, const char *what) {
  char msg[600];
  snprintf(msg, sizeof msg, "%s: %s: %s", what, iso_status_name(s),
           iso_last_error());
  round_fail(r, msg);
}

static void engine_fail(const round_state *r) {
  const char *e = torture_error(r->t);
  round_fail(r, e ? e : "the engine failed without a message");
}

static uint64_t engine_gcs(const torture *t) {
  torture_stats st;
  torture_get_stats(t, &st);
  return st.scavenges + st.full_gcs;
}

/* After a call of the driver's that may collect: compare the heap with
 * the model if a collection ran or a cycle completed meanwhile. */
static void check_after(round_state *r) {
  iso_gc_statistics_t gs;
  memset(&gs, 0, sizeof gs);
  iso_status s = iso_gc_statistics(r->iso, &gs);
  if (s != ISO_OK) status_fail(r, s, "iso_gc_statistics");
  uint64_t gcs = engine_gcs(r->t);
  bool cycle = gs.cycles != r->seen_cycles;
  if (!cycle && gcs == r->seen_gcs) return;
  if (cycle) r->w->cycle_checks++;
  if (!torture_check(r->t)) engine_fail(r);
  r->seen_cycles = gs.cycles;
  r->seen_gcs = engine_gcs(r->t);
}

/* Parks for 0-2 ms: asleep, spinning on the clock, or yielding. The
 * isolate is not touched in between. */
static void park_a_while(round_state *r) {
  iso_status s = iso_isolate_park(r->iso);
  if (s != ISO_OK) status_fail(r, s, "iso_isolate_park");
  if (!iso_isolate_is_parked(r->iso))
    round_fail(r, "iso_isolate_is_parked is false after iso_isolate_park");
  double t0 = torture_now_s();
  long us = (long)torture_below(&r->rng, 2001);
  switch (torture_below(&r->rng, 3)) {
    case 0: {
      struct timespec ts = {0, us * 1000};
      nanosleep(&ts, NULL);
      break;
    }
    case 1:
      while ((torture_now_s() - t0) * 1e6 < (double)us) {
      }
      break;
    default:
      sched_yield();
  }
  s = iso_isolate_unpark(r->iso);
  if (s != ISO_OK) status_fail(r, s, "iso_isolate_unpark");
  r->w->parks++;
  r->w->parked_ms += (torture_now_s() - t0) * 1e3;
}

static bool time_up(void) {
  if (atomic_load_explicit(&stop_all, memory_order_relaxed)) return true;
  if (O.seconds > 0 && torture_now_s() - start_time >= O.seconds) {
    atomic_store_explicit(&stop_all, true, memory_order_relaxed);
    return true;
  }
  return false;
}

/* One round: an engine on a new isolate until the driver decides to
 * start over or the time is up. */
static void run_round(worker *w, uint64_t round) {
  round_state r;
  memset(&r, 0, sizeof r);
  r.w = w;
  r.round = round;
  torture_params p;
  memset(&p, 0, sizeof p);
  p.seed = torture_round_seed(thread_seed(O.seed, w->index), round);
  r.rng = splitmix(p.seed ^ 0x647269766572ull) | 1;
  /* Full collections rarer than in the single-threaded torture (which
   * draws 60..1059): a quarter of the rounds none from stress mode at
   * all, the rest one every few thousand allocations. Cycles come from
   * iso_gc_start_marking and from the old generation's growth. */
  p.full_every = torture_below(&r.rng, 4) == 0
                     ? 1000000000u
                     : 2000u + (unsigned)torture_below(&r.rng, 8000);
  p.verify_every = O.verify_every;
  p.small = O.small;
  p.debug_flags = O.break_barrier ? ISO_DEBUG_SKIP_MARKING_BARRIER : 0;
  char err[1600];
  r.t = torture_new(w->rt, &p, err, sizeof err);
  if (!r.t) fail_exit((long)w->index, round, 0, err);
  r.iso = torture_isolate(r.t);
  /* How this round drives the collector, drawn once per round so that
   * some rounds step and park a lot and others hardly at all. */
  uint64_t steps = 500 + torture_below(&r.rng, O.small ? 3000 : 6000);
  unsigned start_per_mille = 1 + (unsigned)torture_below(&r.rng, 20);
  unsigned step_per_mille = (unsigned)torture_below(&r.rng, 300);
  unsigned park_per_mille = 1 + (unsigned)torture_below(&r.rng, 15);
  static const size_t budgets[] = {64, 256, 1024, 4096};
  iso_gc_statistics_t gs;
  memset(&gs, 0, sizeof gs);
  iso_status s = iso_gc_statistics(r.iso, &gs);
  if (s != ISO_OK) status_fail(&r, s, "iso_gc_statistics");
  r.seen_cycles = gs.cycles;
  r.seen_gcs = engine_gcs(r.t);
  for (uint64_t k = 0; k < steps; k++) {
    if (!torture_step(r.t)) engine_fail(&r);
    /* The engine may have collected and checked by itself. */
    r.seen_gcs = engine_gcs(r.t);
    if (torture_below(&r.rng, 1000) < start_per_mille) {
      s = iso_gc_start_marking(r.iso);
      if (s != ISO_OK) status_fail(&r, s, "iso_gc_start_marking");
      w->starts++;
      check_after(&r);
    }
    if (torture_below(&r.rng, 1000) < step_per_mille &&
        iso_gc_cycle(r.iso) != ISO_GC_CYCLE_IDLE) {
      s = iso_gc_step(r.iso, budgets[torture_below(&r.rng, 4)]);
      if (s != ISO_OK) status_fail(&r, s, "iso_gc_step");
      w->gc_steps++;
      check_after(&r);
    }
    if (torture_below(&r.rng, 1000) < park_per_mille) {
      park_a_while(&r);
      check_after(&r);
    }
    if (k % 32 == 31) {
      check_after(&r);
      if (time_up()) break;
    }
  }
  if (!torture_check(r.t)) engine_fail(&r);
  s = iso_gc_statistics(r.iso, &gs);
  if (s != ISO_OK) status_fail(&r, s, "iso_gc_statistics");
  torture_stats st;
  torture_get_stats(r.t, &st);
  if (!torture_close(r.t)) engine_fail(&r);
  torture_free(r.t);
  w->rounds++;
  w->steps += st.steps;
  w->checks += st.checks;
  w->heap_verifies += st.heap_verifies;
  w->scavenges += st.scavenges;
  w->full_gcs += st.full_gcs;
  w->cycles += gs.cycles;
  w->concurrent_ends += gs.marking.count;
  w->background_mark_ms += gs.background_mark_ms;
  w->background_sweep_ms += gs.background_sweep_ms;
  w->pretenured_bytes += gs.pretenured_bytes;
  if (O.verbose)
    printf(
        "multi_torture: thread %u round %llu: %llu steps, %llu checks, "
        "%llu cycles (%llu concurrent pauses), %llu full GCs\n",
        w->index, (unsigned long long)round, (unsigned long long)st.steps,
        (unsigned long long)st.checks, (unsigned long long)gs.cycles,
        (unsigned long long)gs.marking.count, (unsigned long long)st.full_gcs);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  uint64_t round = O.first_round, n = 0;
  do {
    run_round(w, round++);
    n++;
  } while (!time_up() && !(O.rounds && n >= O.rounds));
  return NULL;
}

/* ---- the command line ---- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: multi_torture [options]\n"
          "  --seed N          seed (default: from the clock)\n"
          "  --seconds S       time budget (default %g)\n"
          "  --scale K         multiplies the budget (so does the\n"
          "                    ISO_TEST_SCALE environment variable)\n"
          "  --soak            long run: %g s unless --seconds\n"
          "  --threads N       threads, one isolate each (default %d)\n"
          "  --only-thread T   run only thread T's rounds (replay)\n"
          "  --round R         start at round R (replay)\n"
          "  --rounds N        at most N rounds per thread\n"
          "  --verify-every N  iso_heap_verify every N checks (1; 0 never)\n"
          "  --small           smaller graphs (default under TSan)\n"
          "  --break-marking-barrier\n"
          "                    isolates skip the marking barrier: the\n"
          "                    run must fail (budget %g s)\n"
          "  --verbose         a line per round\n",
          DEFAULT_SECONDS, SOAK_SECONDS, DEFAULT_THREADS, BREAK_SECONDS);
}

static bool parse(int argc, char **argv, opts *o) {
  bool have_seed = false, have_seconds = false, soak = false;
  uint64_t scale = 1, v;
  memset(o, 0, sizeof *o);
  o->threads = DEFAULT_THREADS;
  o->only_thread = -1;
  o->verify_every = 1;
  o->small = TORTURE_TSAN;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NUM(name, dst)                                             \
  if (!strcmp(a, name)) {                                          \
    if (!torture_parse_u64(val, &v)) {                             \
      fprintf(stderr, "multi_torture: %s needs a number\n", name); \
      return false;                                                \
    }                                                              \
    dst;                                                           \
    i++;                                                           \
    continue;                                                      \
  }
    NUM("--seed", (o->seed = v, have_seed = true))
    NUM("--scale", scale = v ? v : 1)
    NUM("--threads", o->threads = (unsigned)v)
    NUM("--only-thread", o->only_thread = (long)v)
    NUM("--round", o->first_round = v)
    NUM("--rounds", o->rounds = v)
    NUM("--verify-every", o->verify_every = (unsigned)v)
#undef NUM
    if (!strcmp(a, "--seconds")) {
      if (!torture_parse_double(val, &o->seconds)) {
        fprintf(stderr, "multi_torture: --seconds needs a number\n");
        return false;
      }
      have_seconds = true;
      i++;
    } else if (!strcmp(a, "--soak")) {
      soak = true;
    } else if (!strcmp(a, "--small")) {
      o->small = true;
    } else if (!strcmp(a, "--break-marking-barrier")) {
      o->break_barrier = true;
    } else if (!strcmp(a, "--verbose")) {
      o->verbose = true;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    } else {
      fprintf(stderr, "multi_torture: unknown option %s\n", a);
      usage(stderr);
      return false;
    }
  }
  if (o->threads == 0 || o->threads > MAX_THREADS) {
    fprintf(stderr, "multi_torture: --threads must be 1..%d\n", MAX_THREADS);
    return false;
  }
  if (o->only_thread >= (long)o->threads) {
    fprintf(stderr, "multi_torture: --only-thread must be below --threads\n");
    return false;
  }
  if (!torture_env_scale("multi_torture", &scale)) return false;
  if (!have_seed) o->seed = torture_default_seed();
  if (!have_seconds)
    o->seconds = soak               ? SOAK_SECONDS
                 : o->break_barrier ? BREAK_SECONDS
                                    : DEFAULT_SECONDS;
  o->seconds *= (double)scale;
  if (o->seconds == 0 && !o->rounds) {
    fprintf(stderr, "multi_torture: --seconds 0 needs --rounds\n");
    return false;
  }
  return true;
}

int main(int argc, char **argv) {
  if (!parse(argc, argv, &O)) return 2;
  const char *gct = getenv("ISO_GC_THREADS");
  printf(
      "multi_torture: seed %llu, %u threads%s, %s graphs, budget %.1f s%s%s\n",
      (unsigned long long)O.seed, O.threads,
      O.only_thread >= 0 ? " (one replayed)" : "",
      O.small ? "small" : "full-size", O.seconds,
      gct ? ", ISO_GC_THREADS=" : "", gct ? gct : "");
  fflush(stdout);
  iso_runtime *rt = iso_runtime_new(NULL);
  if (!rt) {
    fprintf(stderr, "multi_torture: iso_runtime_new: %s\n", iso_last_error());
    return 2;
  }
  iso_status s = torture_register_types(rt);
  if (s != ISO_OK) {
    fprintf(stderr, "multi_torture: registering the record types: %s: %s\n",
            iso_status_name(s), iso_last_error());
    return 2;
  }
  static worker ws[MAX_THREADS];
  start_time = torture_now_s();
  unsigned first = O.only_thread >= 0 ? (unsigned)O.only_thread : 0;
  unsigned last = O.only_thread >= 0 ? first + 1 : O.threads;
  for (unsigned i = first; i < last; i++) {
    ws[i].index = i;
    ws[i].rt = rt;
    int e = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
    if (e != 0) {
      fprintf(stderr, "multi_torture: pthread_create: %s\n", strerror(e));
      return 2;
    }
  }
  worker total;
  memset(&total, 0, sizeof total);
  for (unsigned i = first; i < last; i++) {
    pthread_join(ws[i].tid, NULL);
    const worker *w = &ws[i];
    total.rounds += w->rounds;
    total.steps += w->steps;
    total.checks += w->checks;
    total.heap_verifies += w->heap_verifies;
    total.scavenges += w->scavenges;
    total.full_gcs += w->full_gcs;
    total.cycles += w->cycles;
    total.concurrent_ends += w->concurrent_ends;
    total.starts += w->starts;
    total.gc_steps += w->gc_steps;
    total.parks += w->parks;
    total.cycle_checks += w->cycle_checks;
    total.background_mark_ms += w->background_mark_ms;
    total.background_sweep_ms += w->background_sweep_ms;
    total.pretenured_bytes += w->pretenured_bytes;
    total.parked_ms += w->parked_ms;
  }
  s = iso_runtime_free(rt);
  if (s != ISO_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "iso_runtime_free: %s: %s", iso_status_name(s),
             iso_last_error());
    fail_exit(-1, 0, 0, msg);
  }
  printf(
      "multi_torture: %llu rounds, %llu steps, %llu checks (%llu after a "
      "completed cycle), %llu heap verifications\n",
      (unsigned long long)total.rounds, (unsigned long long)total.steps,
      (unsigned long long)total.checks, (unsigned long long)total.cycle_checks,
      (unsigned long long)total.heap_verifies);
  printf(
      "multi_torture: %llu scavenges, %llu full GCs, %llu cycles completed "
      "(%llu concurrent-cycle pauses), %llu cycles started, %llu steps of "
      "them\n",
      (unsigned long long)total.scavenges, (unsigned long long)total.full_gcs,
      (unsigned long long)total.cycles,
      (unsigned long long)total.concurrent_ends,
      (unsigned long long)total.starts, (unsigned long long)total.gc_steps);
  printf(
      "multi_torture: %llu parks (%.0f ms parked), background marking "
      "%.1f ms, sweeping %.1f ms; %.1f MB pretenured; %.1f s\n",
      (unsigned long long)total.parks, total.parked_ms,
      total.background_mark_ms, total.background_sweep_ms,
      (double)total.pretenured_bytes / 1e6, torture_now_s() - start_time);
  /* A run this long with no concurrent cycle tested the scavenger and the
   * full collector only, which torture does already: fail it. */
  if (total.steps >= 2000 &&
      (total.cycles <= total.full_gcs || total.concurrent_ends == 0)) {
    /* With the barrier broken on purpose a failure is what the run is
     * for: this one is an error (99) instead, not the failure expected. */
    if (O.break_barrier) {
      fprintf(stderr,
              "multi_torture: ERROR: no concurrent marking cycle "
              "completed\n");
      return 99;
    }
    fail_exit(-1, 0, 0,
              "no concurrent marking cycle completed: the run tested "
              "nothing this test is for");
  }
  printf("multi_torture: passed\n");
  return 0;
}
