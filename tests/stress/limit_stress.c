/*
 * limit_stress: isolates on several threads fill one runtime's shared
 * heap limit (iso_runtime_params.max_heap_size) over and over, while the
 * GC threads mark and sweep them and the isolates park and collect at
 * random, and are recreated now and then once they have reached the
 * limit.
 *
 * Each thread keeps a store: an array of strings (small, medium and large
 * ones, the large on pages of their own) and, in plain C memory, the seed
 * and length of each. It adds strings until the runtime is full. Each
 * failure must be ISO_ERR_OUT_OF_MEMORY with a message naming the heap
 * limit, and must lose nothing: the whole store is compared with the
 * model at once, before the thread drops half of it to make room. What
 * one isolate drops must come back to the others (the failing isolate
 * asks them to collect), so every thread keeps storing. At the end every
 * store is compared again, every heap verified, and once all isolates are
 * freed the runtime's old space must be empty.
 *
 * A run lasts its time budget, or longer (up to ten times it) until some
 * allocation has reached the limit: a slow build must still test that.
 *
 * Seeded: thread T's choices come from the run's seed and T; the
 * interleaving with the other threads is not replayable. Exit status: 0
 * passed, 1 a mismatch, a wrong error or no failure at all (the limit was
 * never reached, so nothing was tested), 2 bad arguments.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "isolate.h"
#include "torture_lib.h"

#define DEFAULT_SECONDS 3.0
#define DEFAULT_THREADS 4
#define MAX_THREADS 64
#define MiB ((size_t)1 << 20)
/* Per thread: small enough that the limit is reached within a second. */
#define LIMIT_PER_THREAD (6 * MiB)
#define MAX_ITEMS 100000
#define LARGE_MAX (600u << 10)

typedef struct opts {
  uint64_t seed;
  double seconds;
  unsigned threads;
} opts;

static opts O;
static atomic_bool failed;
/* Limit failures so far, over all threads: a run goes on past its time
 * (up to ten times it) until there was one, so that a slow build still
 * tests what it is meant to. */
static atomic_ulong total_ooms;

typedef struct item {
  uint64_t seed;
  uint32_t len;
} item;

typedef struct worker {
  unsigned index;
  pthread_t tid;
  iso_runtime *rt;
  double deadline, hard_deadline;
  uint64_t rng;
  item *items;
  size_t count;
  char *buf;
  /* Totals, read by main after the join. */
  uint64_t adds, removes, ooms, drops, parks, recreated, verified;
  uint64_t most_bytes; /* the largest store a thread held at a failure */
  bool waiting;        /* failed, and has stored nothing since */
} worker;

static void fail(const worker *w, const char *fmt, const char *detail) {
  if (atomic_exchange(&failed, true)) return;
  fprintf(stderr, "limit_stress: FAILED: seed %llu thread %u: ",
          (unsigned long long)O.seed, w->index);
  fprintf(stderr, fmt, detail);
  fprintf(stderr,
          "\nlimit_stress: run again with: limit_stress --seed %llu "
          "--threads %u --seconds %g\n",
          (unsigned long long)O.seed, O.threads, O.seconds);
}

/* The content of an item: printable bytes that follow from its seed. */
static void fill(char *buf, uint32_t len, uint64_t seed) {
  uint64_t s = seed | 1;
  for (uint32_t i = 0; i < len; i++) {
    if (i % 8 == 0) torture_rnd(&s);
    buf[i] = (char)(' ' + (s >> (8 * (i % 8))) % 95);
  }
}

static uint32_t draw_length(worker *w) {
  uint64_t k = torture_below(&w->rng, 100);
  if (k < 70) return 16 + (uint32_t)torture_below(&w->rng, 2048);
  if (k < 95) return (4u << 10) + (uint32_t)torture_below(&w->rng, 60u << 10);
  return (128u << 10) +
         (uint32_t)torture_below(&w->rng, LARGE_MAX - (128u << 10));
}

/* Compares the whole store with the model; false (reported) if any item
 * differs. */
static bool verify_store(worker *w, iso_isolate *iso, iso_handle store) {
  w->verified++;
  if (iso_array_length(iso_get(store)) != w->count) {
    char msg[96];
    snprintf(msg, sizeof msg, "%zu items, the model has %zu",
             iso_array_length(iso_get(store)), w->count);
    fail(w, "store length: %s", msg);
    return false;
  }
  for (size_t i = 0; i < w->count; i++) {
    iso_scope sc;
    iso_scope_open(iso, &sc);
    iso_handle h = iso_array_get(iso, iso_get(store), i);
    const item *it = &w->items[i];
    bool ok = h != NULL && iso_kind_of(iso_get(h)) == ISO_KIND_STRING &&
              iso_string_length(iso_get(h)) == it->len;
    if (ok) {
      fill(w->buf, it->len, it->seed);
      ok = memcmp(iso_string_data(iso_get(h)), w->buf, it->len) == 0;
    }
    iso_scope_close(&sc);
    if (!ok) {
      char msg[64];
      snprintf(msg, sizeof msg, "%zu", i);
      fail(w, "item %s differs from the model", msg);
      return false;
    }
  }
  return true;
}

/* Removes item i (the last one takes its place). */
static bool remove_item(worker *w, iso_isolate *iso, iso_handle store,
                        size_t i) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle last = iso_array_pop(iso, iso_get(store));
  bool ok = last != NULL;
  if (ok && i + 1 < w->count)
    ok = iso_array_set(iso, iso_get(store), i, iso_get(last)) == ISO_OK;
  iso_scope_close(&sc);
  if (!ok) {
    fail(w, "removing an item: %s", iso_last_error());
    return false;
  }
  w->items[i] = w->items[--w->count];
  w->removes++;
  return true;
}

/* An allocation failed: it must be the heap limit, and nothing stored
 * may be lost. Then half of the store goes, to make room. */
static bool out_of_memory(worker *w, iso_isolate *iso, iso_handle store) {
  iso_status st = iso_last_status();
  const char *msg = iso_last_error();
  if (st != ISO_ERR_OUT_OF_MEMORY || !msg || !strstr(msg, "heap limit")) {
    char text[400];
    snprintf(text, sizeof text, "%s: %s", iso_status_name(st),
             msg ? msg : "(no message)");
    fail(w, "an allocation failed with %s, not the heap limit", text);
    return false;
  }
  w->ooms++;
  w->waiting = true;
  atomic_fetch_add(&total_ooms, 1);
  uint64_t bytes = 0;
  for (size_t i = 0; i < w->count; i++) bytes += w->items[i].len;
  if (bytes > w->most_bytes) w->most_bytes = bytes;
  if (!verify_store(w, iso, store)) return false;
  for (size_t n = w->count / 2; n > 0 && w->count > 0; n--) {
    if (!remove_item(w, iso, store, torture_below(&w->rng, w->count)))
      return false;
    w->drops++;
  }
  return true;
}

static bool add_item(worker *w, iso_isolate *iso, iso_handle store) {
  if (w->count == MAX_ITEMS) return true;
  item it = {torture_rnd(&w->rng), draw_length(w)};
  fill(w->buf, it.len, it.seed);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_clear_error();
  iso_handle s = iso_string_new(iso, w->buf, it.len);
  iso_status st =
      s ? iso_array_push(iso, iso_get(store), iso_get(s)) : iso_last_status();
  iso_scope_close(&sc);
  if (st == ISO_OK) {
    w->items[w->count++] = it;
    w->adds++;
    w->waiting = false;
    return true;
  }
  return out_of_memory(w, iso, store);
}

static bool park_briefly(worker *w, iso_isolate *iso) {
  if (iso_isolate_park(iso) != ISO_OK) {
    fail(w, "iso_isolate_park: %s", iso_last_error());
    return false;
  }
  struct timespec ts = {0, (long)torture_below(&w->rng, 1000000)};
  nanosleep(&ts, NULL);
  if (iso_isolate_unpark(iso) != ISO_OK) {
    fail(w, "iso_isolate_unpark: %s", iso_last_error());
    return false;
  }
  w->parks++;
  return true;
}

/* One isolate's life: fills and drops until the deadline or, now and
 * then, until the thread starts over on a new isolate. */
static bool one_isolate(worker *w, bool *again) {
  iso_isolate_params ip;
  memset(&ip, 0, sizeof ip);
  ip.struct_size = sizeof ip;
  ip.max_young_generation_size = MiB;
  iso_isolate *iso = iso_isolate_new(w->rt, &ip);
  if (!iso) {
    fail(w, "iso_isolate_new: %s", iso_last_error());
    return false;
  }
  iso_scope outer;
  iso_scope_open(iso, &outer);
  iso_handle store = iso_array_new(iso, 0);
  bool ok = store != NULL;
  if (!ok) fail(w, "iso_array_new: %s", iso_last_error());
  w->count = 0;
  *again = false;
  uint64_t ooms_before = w->ooms;
  for (;;) {
    double now = torture_now_s();
    if (!ok || atomic_load(&failed) || now >= w->hard_deadline) break;
    /* Past the time, a thread that failed last goes on until it stores
     * again: what the isolates drop must come back to it. */
    if (now >= w->deadline && atomic_load(&total_ooms) > 0 && !w->waiting)
      break;
    uint64_t k = torture_below(&w->rng, 1000);
    if (k < 700) {
      ok = add_item(w, iso, store);
    } else if (k < 900) {
      if (w->count)
        ok = remove_item(w, iso, store, torture_below(&w->rng, w->count));
    } else if (k < 950) {
      ok = park_briefly(w, iso);
    } else if (k < 990) {
      ok = iso_safepoint(iso) == ISO_OK;
      if (!ok) fail(w, "iso_safepoint: %s", iso_last_error());
    } else if (k < 996) {
      ok = iso_gc(iso, torture_below(&w->rng, 2) ? ISO_GC_FULL
                                                 : ISO_GC_MINOR) == ISO_OK;
      if (!ok) fail(w, "iso_gc: %s", iso_last_error());
    } else if (k < 999) {
      ok = verify_store(w, iso, store);
    } else if (w->ooms > ooms_before) {
      /* A new isolate once this one has reached the limit. */
      *again = true;
      break;
    }
  }
  if (ok) ok = verify_store(w, iso, store);
  if (ok && iso_heap_verify(iso) != ISO_OK) {
    fail(w, "iso_heap_verify: %s", iso_last_error());
    ok = false;
  }
  iso_scope_close(&outer);
  if (iso_isolate_free(iso) != ISO_OK) {
    fail(w, "iso_isolate_free: %s", iso_last_error());
    ok = false;
  }
  return ok;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  bool again = true;
  while (again && one_isolate(w, &again)) {
    if (again) w->recreated++;
  }
  return NULL;
}

static int usage(FILE *f, int code) {
  fprintf(f,
          "usage: limit_stress [options]\n"
          "  --seed N      seed (default: from the clock)\n"
          "  --seconds S   time budget (default %g)\n"
          "  --scale K     multiplies the time budget (so does the\n"
          "                ISO_TEST_SCALE environment variable)\n"
          "  --threads T   isolates at once (default %d, at most %d); the\n"
          "                runtime's limit is %zu MiB per thread\n",
          DEFAULT_SECONDS, DEFAULT_THREADS, MAX_THREADS,
          LIMIT_PER_THREAD / MiB);
  return code;
}

int main(int argc, char **argv) {
  O.seed = torture_default_seed();
  O.seconds = DEFAULT_SECONDS;
  O.threads = DEFAULT_THREADS;
  uint64_t scale = 1, v;
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help")) return usage(stdout, 0);
    if (!next) return usage(stderr, 2);
    if (!strcmp(a, "--seed") && torture_parse_u64(next, &O.seed)) {
    } else if (!strcmp(a, "--seconds") &&
               torture_parse_double(next, &O.seconds)) {
    } else if (!strcmp(a, "--scale") && torture_parse_u64(next, &v) && v) {
      scale = v;
    } else if (!strcmp(a, "--threads") && torture_parse_u64(next, &v) &&
               v >= 1 && v <= MAX_THREADS) {
      O.threads = (unsigned)v;
    } else {
      fprintf(stderr, "limit_stress: bad option or value: %s %s\n", a, next);
      return usage(stderr, 2);
    }
  }
  if (!torture_env_scale("limit_stress", &scale)) return 2;
  O.seconds *= (double)scale;

  iso_runtime_params rp;
  memset(&rp, 0, sizeof rp);
  rp.struct_size = sizeof rp;
  rp.max_heap_size = LIMIT_PER_THREAD * O.threads;
  iso_runtime *rt = iso_runtime_new(&rp);
  if (!rt) {
    fprintf(stderr, "limit_stress: iso_runtime_new: %s\n", iso_last_error());
    return 2;
  }
  printf("limit_stress: seed %llu, %u threads, runtime limit %zu MiB, %g s\n",
         (unsigned long long)O.seed, O.threads, (size_t)rp.max_heap_size / MiB,
         O.seconds);
  fflush(stdout);

  worker *ws = calloc(O.threads, sizeof *ws);
  if (!ws) return 2;
  double deadline = torture_now_s() + O.seconds;
  for (unsigned t = 0; t < O.threads; t++) {
    worker *w = &ws[t];
    w->index = t;
    w->rt = rt;
    w->deadline = deadline;
    w->hard_deadline = deadline + 9 * O.seconds;
    w->rng = torture_round_seed(O.seed, t + 1) | 1;
    w->items = malloc(MAX_ITEMS * sizeof *w->items);
    w->buf = malloc(LARGE_MAX);
    if (!w->items || !w->buf) return 2;
    if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
      fprintf(stderr, "limit_stress: pthread_create failed\n");
      return 2;
    }
  }
  worker sum = {0};
  for (unsigned t = 0; t < O.threads; t++) {
    worker *w = &ws[t];
    pthread_join(w->tid, NULL);
    sum.adds += w->adds;
    sum.removes += w->removes;
    sum.ooms += w->ooms;
    sum.drops += w->drops;
    sum.parks += w->parks;
    sum.recreated += w->recreated;
    sum.verified += w->verified;
    if (w->most_bytes > sum.most_bytes) sum.most_bytes = w->most_bytes;
    if (w->waiting && !atomic_load(&failed)) {
      fprintf(stderr,
              "limit_stress: FAILED: thread %u stored nothing after its "
              "last limit failure, in ten times the run's time\n",
              t);
      atomic_store(&failed, true);
    }
    free(w->items);
    free(w->buf);
  }
  iso_runtime_statistics_t rs;
  bool ok = !atomic_load(&failed);
  if (ok && iso_runtime_statistics(rt, &rs) != ISO_OK) {
    fprintf(stderr, "limit_stress: iso_runtime_statistics: %s\n",
            iso_last_error());
    ok = false;
  }
  printf(
      "limit_stress: %llu stored, %llu removed, %llu limit failures "
      "(%llu dropped after them), %llu parks, %llu new isolates, %llu "
      "store checks; largest store at a failure %.1f MiB; the isolates "
      "were asked to collect %llu times\n",
      (unsigned long long)sum.adds, (unsigned long long)sum.removes,
      (unsigned long long)sum.ooms, (unsigned long long)sum.drops,
      (unsigned long long)sum.parks, (unsigned long long)sum.recreated,
      (unsigned long long)sum.verified, (double)sum.most_bytes / MiB,
      ok ? (unsigned long long)rs.limit_collections : 0ull);
  if (ok && rs.old_space_size != 0) {
    fprintf(stderr,
            "limit_stress: FAILED: %zu bytes of old space left with no "
            "isolate\n",
            (size_t)rs.old_space_size);
    ok = false;
  }
  if (ok && sum.ooms == 0) {
    fprintf(stderr,
            "limit_stress: FAILED: no allocation reached the "
            "runtime's limit, so the run tested nothing\n");
    ok = false;
  }
  free(ws);
  if (iso_runtime_free(rt) != ISO_OK) ok = false;
  printf("limit_stress: %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}
