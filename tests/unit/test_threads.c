/*
 * Isolates and threads: ownership errors, hand-over with enter/exit,
 * several isolates and several runtimes used at once from several
 * threads.
 *
 * ISO_ERR_THREAD for plain calls is a debug check (debug_checks >= 1, on
 * by default in debug and debugoptimized builds); refusing
 * iso_isolate_enter while another thread owns the isolate is always on.
 */
#include <pthread.h>

#include "helpers.h"

static iso_runtime *rt;
static iso_type cell;

static void *run_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  void *ret = NULL;
  CHECK_EQ(pthread_create(&t, NULL, fn, arg), 0);
  CHECK_EQ(pthread_join(t, &ret), 0);
  return ret;
}

/* ---- calls from a thread that does not own the isolate ---- */

typedef struct shared {
  iso_isolate *iso;
  iso_global *g; /* the owner's array, read here only to pass it back */
} shared;

static void *intruder(void *arg) {
  shared *sh = arg;
  iso_isolate *iso = sh->iso;
  /* Always refused: the owner has not exited. */
  CHECK_FAILS_ST(iso_isolate_enter(iso), ISO_ERR_THREAD, "thread");
#if UNIT_DEBUG_CHECKS >= 1
  iso_value arr = iso_global_value(sh->g);
  CHECK_FAILS_ST(iso_gc(iso, ISO_GC_MINOR), ISO_ERR_THREAD, "thread");
  CHECK_FAILS_ST(iso_gc(iso, ISO_GC_FULL), ISO_ERR_THREAD, "thread");
  CHECK_FAILS(iso_string_from_cstr(iso, "stolen"), == NULL, ISO_ERR_THREAD,
              "thread");
  CHECK_FAILS(iso_array_new(iso, 1), == NULL, ISO_ERR_THREAD, "thread");
  CHECK_FAILS_ST(iso_array_push(iso, arr, iso_smi(1)), ISO_ERR_THREAD,
                 "thread");
  CHECK_FAILS(iso_global_new(iso, ISO_NULL), == NULL, ISO_ERR_THREAD, "thread");
  iso_memory_usage_t u;
  CHECK_FAILS_ST(iso_memory_usage(iso, &u), ISO_ERR_THREAD, "thread");
  CHECK_FAILS_ST(iso_safepoint(iso), ISO_ERR_THREAD, "thread");
  CHECK_FAILS_ST(iso_isolate_exit(iso), ISO_ERR_THREAD, "thread");
  CHECK_FAILS_ST(iso_isolate_free(iso), ISO_ERR_THREAD, "thread");
  CHECK_FAILS_ST(iso_heap_verify(iso), ISO_ERR_THREAD, "thread");
#endif
  /* The runtime may be used from any thread. */
  CHECK_UEQ(iso_runtime_isolate_count(rt), 1);
  CHECK_FAILS_ST(iso_runtime_free(rt), ISO_ERR_STATE, "");
  iso_type_desc d = unit_desc("RegisteredElsewhere", 1, 0);
  CHECK(iso_type_register(rt, &d) != 0);
  return NULL;
}

static void test_wrong_thread(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_handle arr = iso_array_new(iso, 0);
  iso_handle s = iso_string_from_cstr(iso, "owned");
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(s)));
  shared sh = {iso, iso_global_new(iso, iso_get(arr))};
  CHECK(sh.g != NULL);
  run_thread(intruder, &sh);
  /* Nothing the intruder tried changed anything. */
  CHECK_UEQ(iso_array_length(iso_get(arr)), 1);
  CHECK_STRING(iso_get(iso_array_get(iso, iso_get(arr), 0)), "owned");
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_STRING(iso_get(iso_array_get(iso, iso_get(arr), 0)), "owned");
  CHECK(iso_type_find(rt, "RegisteredElsewhere") != 0);
  iso_global_free(iso, sh.g);
  /* Entering an isolate one already owns is harmless. */
  CHECK_OK(iso_isolate_enter(iso));
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- hand-over, one thread after another ---- */

typedef struct relay {
  iso_isolate *iso;
  iso_global *list; /* an array of strings, one per turn */
  int turn;
  int freed_calls;
  pthread_t freed_on;
} relay;

static void on_free(void *data, size_t length, void *ctx) {
  relay *r = ctx;
  (void)length;
  r->freed_calls++;
  r->freed_on = pthread_self();
  free(data);
}

/* One turn: check every string of earlier turns, add this turn's. */
static void relay_turn(relay *r) {
  iso_isolate *iso = r->iso;
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle list = iso_global_get(iso, r->list);
  CHECK(list != NULL);
  CHECK_UEQ(iso_array_length(iso_get(list)), (size_t)r->turn);
  for (int i = 0; i < r->turn; i++) {
    char text[32];
    snprintf(text, sizeof text, "turn %d", i);
    CHECK_STRING(iso_get(iso_array_get(iso, iso_get(list), (size_t)i)), text);
  }
  char text[32];
  snprintf(text, sizeof text, "turn %d", r->turn);
  iso_handle s = iso_string_from_cstr(iso, text);
  CHECK(s != NULL);
  CHECK_OK(iso_array_push(iso, iso_get(list), iso_get(s)));
  for (int i = 0; i < 50; i++) CHECK(iso_array_new(iso, 10) != NULL);
  CHECK_OK(iso_gc(iso, r->turn % 3 == 2 ? ISO_GC_FULL : ISO_GC_MINOR));
  CHECK_OK(iso_scope_close(&sc));
  r->turn++;
}

static void *relay_create(void *arg) {
  relay *r = arg;
  iso_isolate_params p = unit_params();
  p.name = "relay";
  r->iso = iso_isolate_new(rt, &p);
  CHECK(r->iso != NULL);
  iso_handle list = iso_array_new(r->iso, 0);
  r->list = iso_global_new(r->iso, iso_get(list));
  CHECK(r->list != NULL);
  relay_turn(r);
  /* A buffer that dies here but is collected on another thread. */
  void *mem = malloc(100);
  CHECK(iso_array_buffer_new_external(r->iso, mem, 100, on_free, r) != NULL);
  CHECK_OK(iso_isolate_exit(r->iso));
  return NULL;
}

static void *relay_step(void *arg) {
  relay *r = arg;
  CHECK_OK(iso_isolate_enter(r->iso));
  relay_turn(r);
  CHECK_OK(iso_isolate_exit(r->iso));
  return NULL;
}

static void test_handover_sequential(void) {
  relay r;
  memset(&r, 0, sizeof r);
  run_thread(relay_create, &r);
#if UNIT_DEBUG_CHECKS >= 1
  /* Nobody owns it now: plain calls need an enter first. */
  CHECK_FAILS_ST(iso_gc(r.iso, ISO_GC_MINOR), ISO_ERR_THREAD, "thread");
#endif
  for (int i = 0; i < 8; i++) {
    run_thread(relay_step, &r);
    if (i % 2 == 1) {
      CHECK_OK(iso_isolate_enter(r.iso));
      relay_turn(&r);
      CHECK_OK(iso_isolate_exit(r.iso));
    }
  }
  CHECK_EQ(r.turn, 1 + 8 + 4);
  /* The buffer made on the first thread is held by the outermost scope,
   * which lives as long as the isolate: it is freed with the isolate, on
   * the thread that frees it. */
  CHECK_EQ(r.freed_calls, 0);
  CHECK_OK(iso_isolate_enter(r.iso));
  iso_global_free(r.iso, r.list);
  CHECK_OK(iso_isolate_free(r.iso));
  CHECK_EQ(r.freed_calls, 1);
  CHECK(pthread_equal(r.freed_on, pthread_self()));
}

/* ---- ping-pong between two live threads ---- */

typedef struct pingpong {
  relay r;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int whose; /* 0 or 1: which thread may take the isolate */
  int probe; /* 1: owner waits for the other thread's probe */
  int turns_each;
} pingpong;

typedef struct player {
  pingpong *pp;
  int me;
} player;

static void *play(void *arg) {
  player *pl = arg;
  pingpong *pp = pl->pp;
  for (int t = 0; t < pp->turns_each; t++) {
    pthread_mutex_lock(&pp->mu);
    while (pp->whose != pl->me) pthread_cond_wait(&pp->cv, &pp->mu);
    pthread_mutex_unlock(&pp->mu);

    CHECK_OK(iso_isolate_enter(pp->r.iso));
    relay_turn(&pp->r);
    if (t == 0 && pl->me == 0) {
      /* Hold the isolate while the other thread tries to enter. */
      pthread_mutex_lock(&pp->mu);
      pp->probe = 1;
      pthread_cond_broadcast(&pp->cv);
      while (pp->probe != 2) pthread_cond_wait(&pp->cv, &pp->mu);
      pthread_mutex_unlock(&pp->mu);
    }
    CHECK_OK(iso_isolate_exit(pp->r.iso));

    pthread_mutex_lock(&pp->mu);
    pp->whose = 1 - pl->me;
    pthread_cond_broadcast(&pp->cv);
    pthread_mutex_unlock(&pp->mu);
  }
  return NULL;
}

static void *prober(void *arg) {
  pingpong *pp = arg;
  pthread_mutex_lock(&pp->mu);
  while (pp->probe != 1) pthread_cond_wait(&pp->cv, &pp->mu);
  pthread_mutex_unlock(&pp->mu);
  CHECK_FAILS_ST(iso_isolate_enter(pp->r.iso), ISO_ERR_THREAD, "thread");
  pthread_mutex_lock(&pp->mu);
  pp->probe = 2;
  pthread_cond_broadcast(&pp->cv);
  pthread_mutex_unlock(&pp->mu);
  return NULL;
}

static void test_pingpong(void) {
  static pingpong pp;
  memset(&pp, 0, sizeof pp);
  pthread_mutex_init(&pp.mu, NULL);
  pthread_cond_init(&pp.cv, NULL);
  pp.turns_each = 15;
  pp.r.iso = iso_isolate_new(rt, NULL);
  CHECK(pp.r.iso != NULL);
  iso_handle list = iso_array_new(pp.r.iso, 0);
  pp.r.list = iso_global_new(pp.r.iso, iso_get(list));
  CHECK_OK(iso_isolate_exit(pp.r.iso));

  pthread_t a, b, c;
  player pa = {&pp, 0}, pb = {&pp, 1};
  CHECK_EQ(pthread_create(&a, NULL, play, &pa), 0);
  CHECK_EQ(pthread_create(&b, NULL, play, &pb), 0);
  CHECK_EQ(pthread_create(&c, NULL, prober, &pp), 0);
  CHECK_EQ(pthread_join(a, NULL), 0);
  CHECK_EQ(pthread_join(b, NULL), 0);
  CHECK_EQ(pthread_join(c, NULL), 0);

  CHECK_EQ(pp.r.turn, 30);
  CHECK_OK(iso_isolate_enter(pp.r.iso));
  relay_turn(&pp.r);
  iso_global_free(pp.r.iso, pp.r.list);
  CHECK_OK(iso_isolate_free(pp.r.iso));
  pthread_mutex_destroy(&pp.mu);
  pthread_cond_destroy(&pp.cv);
}

/* The free callback runs on whichever thread owns the isolate when the
 * buffer is found dead. */
static void *make_garbage_buffer(void *arg) {
  relay *r = arg;
  CHECK_OK(iso_isolate_enter(r->iso));
  iso_scope sc;
  iso_scope_open(r->iso, &sc);
  void *mem = malloc(64);
  CHECK(iso_array_buffer_new_external(r->iso, mem, 64, on_free, r) != NULL);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_exit(r->iso));
  return NULL;
}

static void test_free_callback_thread(void) {
  relay r;
  memset(&r, 0, sizeof r);
  r.iso = iso_isolate_new(rt, NULL);
  CHECK(r.iso != NULL);
  CHECK_OK(iso_isolate_exit(r.iso));
  run_thread(make_garbage_buffer, &r);
  CHECK_EQ(r.freed_calls, 0);
  CHECK_OK(iso_isolate_enter(r.iso));
  CHECK_OK(iso_gc(r.iso, ISO_GC_FULL));
  CHECK_EQ(r.freed_calls, 1);
  CHECK(pthread_equal(r.freed_on, pthread_self()));
  CHECK_OK(iso_isolate_free(r.iso));
}

/* ---- several isolates at once ---- */

enum { WORKERS = 4 };

typedef struct worker {
  iso_runtime *rt;
  int id;
  pthread_barrier_t *created, *checked;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  char name[16];
  snprintf(name, sizeof name, "w%d", w->id);
  iso_isolate_params p = unit_params();
  p.name = name;
  iso_isolate *iso = iso_isolate_new(w->rt, &p);
  CHECK(iso != NULL);
  pthread_barrier_wait(w->created);
  pthread_barrier_wait(w->checked);

  iso_type t = iso_type_find(w->rt, "Cell");
  CHECK(t != 0);
  iso_handle m = iso_map_new(iso);
  for (int round = 0; round < 6; round++) {
    for (int i = 0; i < 150; i++) {
      iso_scope sc;
      iso_scope_open(iso, &sc);
      char text[48];
      snprintf(text, sizeof text, "%s:%d:%d", name, round, i);
      iso_handle k = iso_string_from_cstr(iso, text);
      iso_handle c = iso_record_new(iso, t);
      CHECK(k && c);
      CHECK_OK(iso_record_set(iso, iso_get(c), 0, iso_get(k)));
      CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(k), iso_get(c)));
      CHECK_OK(iso_scope_close(&sc));
    }
    CHECK_OK(iso_gc(iso, round % 2 ? ISO_GC_FULL : ISO_GC_MINOR));
    CHECK_UEQ(iso_map_size(iso_get(m)), (size_t)(round + 1) * 150);
    for (int r2 = 0; r2 <= round; r2++)
      for (int i = 0; i < 150; i += 7) {
        iso_scope sc;
        iso_scope_open(iso, &sc);
        char text[48];
        snprintf(text, sizeof text, "%s:%d:%d", name, r2, i);
        iso_handle k = iso_string_from_cstr(iso, text);
        iso_handle c = iso_map_get(iso, iso_get(m), iso_get(k));
        CHECK(c != NULL);
        CHECK_EQ(iso_type_of(iso_get(c)), t);
        CHECK_STRING(iso_record_slot(iso_get(c), 0), text);
        CHECK_OK(iso_scope_close(&sc));
      }
  }
  CHECK_OK(iso_heap_verify(iso));
  CHECK_STR(iso_isolate_name(iso), name);
  CHECK_OK(iso_isolate_free(iso));
  return NULL;
}

static void run_workers(iso_runtime **rts, int nrt) {
  pthread_barrier_t created, checked;
  pthread_barrier_init(&created, NULL, WORKERS + 1);
  pthread_barrier_init(&checked, NULL, WORKERS + 1);
  pthread_t th[WORKERS];
  worker w[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    w[i] = (worker){rts[i % nrt], i, &created, &checked};
    CHECK_EQ(pthread_create(&th[i], NULL, work, &w[i]), 0);
  }
  pthread_barrier_wait(&created);
  size_t total = 0;
  for (int i = 0; i < nrt; i++) total += iso_runtime_isolate_count(rts[i]);
  CHECK_UEQ(total, WORKERS);
  CHECK_UEQ(iso_runtime_isolate_count(rts[0]), (size_t)WORKERS / nrt);
  pthread_barrier_wait(&checked);
  for (int i = 0; i < WORKERS; i++) CHECK_EQ(pthread_join(th[i], NULL), 0);
  for (int i = 0; i < nrt; i++) CHECK_UEQ(iso_runtime_isolate_count(rts[i]), 0);
  pthread_barrier_destroy(&created);
  pthread_barrier_destroy(&checked);
}

static void test_parallel_isolates(void) {
  iso_runtime *rts[1] = {rt};
  run_workers(rts, 1);
}

static void test_parallel_runtimes(void) {
  iso_runtime *rts[2];
  for (int i = 0; i < 2; i++) {
    rts[i] = iso_runtime_new(NULL);
    CHECK(rts[i] != NULL);
    /* Different layouts under one name: the runtimes share nothing. */
    (void)unit_register(rts[i], "Cell", 1 + (uint32_t)i, 8);
  }
  run_workers(rts, 2);
  for (int i = 0; i < 2; i++) CHECK_OK(iso_runtime_free(rts[i]));
}

/* An isolate freed while another isolate's first cycle starts the GC
 * threads: the new threads walk the registry at once, so the freeing
 * thread must wait a grace period for them even though they were not yet
 * reported running when it unlinked its isolate. Without that wait ASan
 * reports the GC thread reading the freed isolate and TSan a race with
 * free(). */
typedef struct {
  iso_runtime *rt;
  pthread_barrier_t *go;
} freer;

/* The process's thread count (Linux); 0 if unknown. */
static int thread_count(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[128];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  fclose(f);
  return n;
}

static void *free_at_go(void *arg) {
  freer *f = arg;
  iso_isolate *iso = iso_isolate_new(f->rt, NULL);
  CHECK(iso != NULL);
  int before = thread_count();
  pthread_barrier_wait(f->go);
  /* Free once the first GC threads run, while the others are still being
   * created (bounded: without /proc, free at once). */
  for (int i = 0; before && i < 200000 && thread_count() <= before + 2; i++)
    ;
  CHECK_OK(iso_isolate_free(iso));
  return NULL;
}

static void test_free_while_gc_threads_start(void) {
  for (int round = 0; round < 40; round++) {
    iso_runtime_params rp;
    memset(&rp, 0, sizeof rp);
    rp.struct_size = sizeof rp;
    rp.gc_threads = 6; /* created one by one: a longer window */
    iso_runtime *r = iso_runtime_new(&rp);
    CHECK(r != NULL);
    iso_isolate *iso = iso_isolate_new(r, NULL);
    CHECK(iso != NULL);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    freer f = {r, &go};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, free_at_go, &f), 0);
    pthread_barrier_wait(&go);
    CHECK_OK(iso_gc(iso, ISO_GC_FULL));
    CHECK_EQ(pthread_join(th, NULL), 0);
    pthread_barrier_destroy(&go);
    CHECK_UEQ(iso_runtime_isolate_count(r), 1);
    CHECK_OK(iso_isolate_free(iso));
    CHECK_OK(iso_runtime_free(r));
  }
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  cell = unit_register(rt, "Cell", 1, 0);
  RUN(test_wrong_thread);
  RUN(test_handover_sequential);
  RUN(test_pingpong);
  RUN(test_free_callback_thread);
  RUN(test_parallel_isolates);
  RUN(test_parallel_runtimes);
  RUN(test_free_while_gc_threads_start);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
