/*
 * torture: the seeded, replayable graph torture test.
 *
 * Runs rounds of the graph engine (torture_lib.h), each on a fresh
 * isolate in GC stress mode with settings drawn from the round's seed,
 * until the time or step budget is spent. Every collection is followed by
 * a full comparison of the heap with the engine's model and by
 * iso_heap_verify(). The seed is printed first; any failure prints the
 * round, step, object and what differed, and the command that replays it.
 *
 * Exit status: 0 passed, 1 a mismatch or a library error, 2 bad arguments
 * or a test that could not start.
 *
 * --expect-failure turns the test around, to show it can fail: the same
 * run goes to a child process, and the test passes only if the child
 * fails (exits non-zero other than 2, is killed by a signal, or hangs).
 * With --break-remembered-set the child's isolates run with
 * ISO_DEBUG_SKIP_REMEMBERED_SET, a generational barrier that records
 * nothing, so the old-to-young stores the engine makes must be caught.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
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
#define SOAK_SECONDS 3600.0

typedef struct opts {
  uint64_t seed;
  double seconds;               /* 0: no time limit */
  uint64_t iterations;          /* total steps; 0: no limit */
  uint64_t first_round, rounds; /* rounds 0: until the budget is spent */
  uint64_t steps_per_round;
  unsigned scavenge_every, full_every, verify_every;
  bool break_rset, expect_failure, small, verbose;
  char replay[256]; /* the options a replay needs besides seed and round */
} opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: torture [options]\n"
          "  --seed N               seed (default: from the clock)\n"
          "  --seconds S            time budget (default %g; 0: none)\n"
          "  --iterations N         step budget (default: none)\n"
          "  --scale K              multiplies both budgets (so does the\n"
          "                         ISO_TEST_SCALE environment variable)\n"
          "  --soak                 long run: %g s unless --seconds\n"
          "  --round R              start at round R (replay)\n"
          "  --rounds N             run N rounds at most\n"
          "  --steps-per-round N    steps before a new isolate (4000)\n"
          "  --scavenge-every N     stress scavenge period (default: drawn\n"
          "                         per round from 1..50)\n"
          "  --full-every N         stress full-GC period (default: drawn)\n"
          "  --verify-every N       iso_heap_verify every N checks (1)\n"
          "  --no-heap-verify       never call iso_heap_verify\n"
          "  --small                smaller graphs (default under TSan)\n"
          "  --break-remembered-set isolates skip the remembered set\n"
          "  --expect-failure       pass only if the run fails (in a child)\n"
          "  --verbose              a line per round\n",
          DEFAULT_SECONDS, SOAK_SECONDS);
}

/* Appends " name [v]" to the options a replay needs. */
static void add_replay(opts *o, const char *name, bool has_value,
                       unsigned long long v) {
  size_t n = strlen(o->replay);
  if (has_value)
    snprintf(o->replay + n, sizeof o->replay - n, " %s %llu", name, v);
  else
    snprintf(o->replay + n, sizeof o->replay - n, " %s", name);
}

/* false on a bad command line (the message is printed). */
static bool parse(int argc, char **argv, opts *o) {
  bool have_seed = false, have_seconds = false, soak = false;
  bool no_verify = false;
  uint64_t scale = 1, v;
  double d;
  memset(o, 0, sizeof *o);
  o->steps_per_round = 4000;
  o->verify_every = 1;
  o->small = TORTURE_TSAN;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    bool used = true;
#define NUM(name, dst)                                       \
  if (!strcmp(a, name)) {                                    \
    if (!torture_parse_u64(val, &v)) {                       \
      fprintf(stderr, "torture: %s needs a number\n", name); \
      return false;                                          \
    }                                                        \
    dst;                                                     \
    i++;                                                     \
    continue;                                                \
  }
    NUM("--seed", (o->seed = v, have_seed = true))
    NUM("--iterations", o->iterations = v)
    NUM("--scale", scale = v ? v : 1)
    NUM("--round", o->first_round = v)
    NUM("--rounds", o->rounds = v)
    NUM("--steps-per-round", o->steps_per_round = v ? v : 1)
    NUM("--scavenge-every", o->scavenge_every = (unsigned)v)
    NUM("--full-every", o->full_every = (unsigned)v)
    NUM("--verify-every", o->verify_every = (unsigned)v)
#undef NUM
    if (!strcmp(a, "--seconds")) {
      if (!torture_parse_double(val, &d)) {
        fprintf(stderr, "torture: --seconds needs a number\n");
        return false;
      }
      o->seconds = d;
      have_seconds = true;
      i++;
      continue;
    }
    if (!strcmp(a, "--soak")) {
      soak = true;
    } else if (!strcmp(a, "--no-heap-verify")) {
      no_verify = true;
    } else if (!strcmp(a, "--small")) {
      o->small = true;
    } else if (!strcmp(a, "--break-remembered-set")) {
      o->break_rset = true;
    } else if (!strcmp(a, "--expect-failure")) {
      o->expect_failure = true;
    } else if (!strcmp(a, "--verbose")) {
      o->verbose = true;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    } else {
      used = false;
    }
    if (!used) {
      fprintf(stderr, "torture: unknown option %s\n", a);
      usage(stderr);
      return false;
    }
  }
  if (!torture_env_scale("torture", &scale)) return false;
  if (!have_seed) o->seed = torture_default_seed();
  if (!have_seconds)
    o->seconds = soak ? SOAK_SECONDS : o->iterations ? 0 : DEFAULT_SECONDS;
  o->seconds *= (double)scale;
  o->iterations *= scale;
  if (no_verify) o->verify_every = 0;
  if (o->steps_per_round != 4000)
    add_replay(o, "--steps-per-round", true, o->steps_per_round);
  if (o->scavenge_every)
    add_replay(o, "--scavenge-every", true, o->scavenge_every);
  if (o->full_every) add_replay(o, "--full-every", true, o->full_every);
  if (o->verify_every != 1)
    add_replay(o, "--verify-every", true, o->verify_every);
  if (o->small && !TORTURE_TSAN) add_replay(o, "--small", false, 0);
  if (o->break_rset) add_replay(o, "--break-remembered-set", false, 0);
  return true;
}

static void fail_exit(const opts *o, uint64_t round, const char *msg) {
  fflush(stdout);
  fprintf(stderr,
          "torture: FAILED: seed %llu round %llu: %s\n"
          "torture: replay with: torture --seed %llu --round %llu "
          "--rounds 1%s\n",
          (unsigned long long)o->seed, (unsigned long long)round, msg,
          (unsigned long long)o->seed, (unsigned long long)round, o->replay);
  fflush(stderr);
  /* The heap may be corrupt: skip exit handlers (and leak reports). */
  _exit(1);
}

static void add_stats(torture_stats *a, const torture_stats *b) {
  a->steps += b->steps;
  a->checks += b->checks;
  a->heap_verifies += b->heap_verifies;
  a->objects_checked += b->objects_checked;
  a->scavenges += b->scavenges;
  a->full_gcs += b->full_gcs;
  a->allocations += b->allocations;
  a->old_to_young += b->old_to_young;
  a->large_objects += b->large_objects;
  a->external_buffers += b->external_buffers;
  if (b->max_live > a->max_live) a->max_live = b->max_live;
}

static int run(const opts *o) {
  printf("torture: seed %llu (%s%s%s)\n", (unsigned long long)o->seed,
         o->small ? "small graphs" : "full-size graphs",
         o->break_rset ? ", remembered set DISABLED" : "",
         o->verify_every ? "" : ", no iso_heap_verify");
  if (o->seconds > 0) printf("torture: budget %.1f s\n", o->seconds);
  if (o->iterations)
    printf("torture: budget %llu steps\n", (unsigned long long)o->iterations);
  fflush(stdout);
  iso_runtime *rt = iso_runtime_new(NULL);
  if (!rt) {
    fprintf(stderr, "torture: iso_runtime_new: %s\n", iso_last_error());
    return 2;
  }
  iso_status s = torture_register_types(rt);
  if (s != ISO_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "registering the record types: %s: %s",
             iso_status_name(s), iso_last_error());
    fail_exit(o, o->first_round, msg);
  }
  torture_stats total;
  memset(&total, 0, sizeof total);
  double start = torture_now_s();
  uint64_t round = o->first_round, rounds = 0;
  bool stop = false;
  while (!stop) {
    torture_params p;
    memset(&p, 0, sizeof p);
    p.seed = torture_round_seed(o->seed, round);
    p.scavenge_every = o->scavenge_every;
    p.full_every = o->full_every;
    p.verify_every = o->verify_every;
    p.debug_flags = o->break_rset ? ISO_DEBUG_SKIP_REMEMBERED_SET : 0;
    p.small = o->small;
    char err[1600];
    torture *t = torture_new(rt, &p, err, sizeof err);
    if (!t) fail_exit(o, round, err);
    for (uint64_t k = 0; k < o->steps_per_round; k++) {
      if (!torture_step(t)) fail_exit(o, round, torture_error(t));
      if (o->iterations && total.steps + k + 1 >= o->iterations) {
        stop = true;
        break;
      }
      if (k % 32 == 31 && o->seconds > 0 &&
          torture_now_s() - start >= o->seconds) {
        stop = true;
        break;
      }
    }
    if (!torture_check(t) || !torture_close(t))
      fail_exit(o, round, torture_error(t));
    torture_stats st;
    torture_params used;
    torture_get_stats(t, &st);
    torture_get_params(t, &used);
    add_stats(&total, &st);
    if (o->verbose)
      printf(
          "torture: round %llu: scavenge every %u, full every %u: %llu "
          "steps, %llu+%llu collections, %llu checks of %.0f objects\n",
          (unsigned long long)round, used.scavenge_every, used.full_every,
          (unsigned long long)st.steps, (unsigned long long)st.scavenges,
          (unsigned long long)st.full_gcs, (unsigned long long)st.checks,
          st.checks ? (double)st.objects_checked / (double)st.checks : 0.0);
    torture_free(t);
    round++;
    rounds++;
    if (o->rounds && rounds >= o->rounds) stop = true;
    if (o->seconds > 0 && torture_now_s() - start >= o->seconds) stop = true;
  }
  s = iso_runtime_free(rt);
  if (s != ISO_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "iso_runtime_free: %s: %s", iso_status_name(s),
             iso_last_error());
    fail_exit(o, round, msg);
  }
  printf(
      "torture: %llu rounds, %llu steps, %llu scavenges, %llu full GCs, "
      "%llu checks (%llu objects compared), %llu heap verifications\n",
      (unsigned long long)rounds, (unsigned long long)total.steps,
      (unsigned long long)total.scavenges, (unsigned long long)total.full_gcs,
      (unsigned long long)total.checks,
      (unsigned long long)total.objects_checked,
      (unsigned long long)total.heap_verifies);
  printf(
      "torture: %llu objects made, %llu old-to-young stores, %llu large "
      "objects, %llu external buffers, at most %llu alive; %.1f s\n",
      (unsigned long long)total.allocations,
      (unsigned long long)total.old_to_young,
      (unsigned long long)total.large_objects,
      (unsigned long long)total.external_buffers,
      (unsigned long long)total.max_live, torture_now_s() - start);
  /* A run this long that exercised neither the collector nor the
   * remembered set proves nothing: fail it rather than pass it. */
  if (total.steps >= 2000 &&
      (total.scavenges + total.full_gcs == 0 || total.old_to_young == 0))
    fail_exit(o, round,
              "the run made no collection or no old-to-young "
              "store: it tested nothing");
  printf("torture: passed\n");
  return 0;
}

/* The child's budget plus this grace; a child still running then hung. */
#define CHILD_GRACE_SECONDS 30.0

static int expect_failure(const opts *o) {
  opts child = *o;
  child.expect_failure = false;
  printf("torture: expecting the run below to fail (it runs in a child)\n");
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("torture: fork");
    return 2;
  }
  if (pid == 0) {
    /* A crash is one of the expected outcomes: no core file for it. */
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    exit(run(&child));
  }
  double limit = (o->seconds > 0 ? o->seconds : 300.0) + CHILD_GRACE_SECONDS;
  double t0 = torture_now_s();
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {
      perror("torture: waitpid");
      return 2;
    }
    if (torture_now_s() - t0 > limit) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      printf(
          "torture: the child ran %.0f s past its budget and was killed; "
          "a hang is a failure, as expected\n",
          CHILD_GRACE_SECONDS);
      return 0;
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    printf(
        "torture: as expected, the child failed: killed by signal %d "
        "(%s)\n",
        sig, strsignal(sig));
    return 0;
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 0) {
    fprintf(stderr,
            "torture: FAILED: the child passed%s; the test cannot see a "
            "broken collector\n",
            o->break_rset ? " with the remembered set disabled" : "");
    return 1;
  }
  if (code == 2 || code < 0) {
    fprintf(stderr, "torture: FAILED: the child could not run (status %d)\n",
            code);
    return 1;
  }
  printf("torture: as expected, the child failed (exit status %d)\n", code);
  return 0;
}

int main(int argc, char **argv) {
  opts o;
  if (!parse(argc, argv, &o)) return 2;
  return o.expect_failure ? expect_failure(&o) : run(&o);
}
