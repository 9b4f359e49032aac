/*
 * The event loop and timers: order of timeouts, intervals, clearing
 * (also from inside callbacks, an interval clearing itself included),
 * stopping from a callback and from another thread, message handlers
 * with a fresh scope each, and the loop ending when nothing is left.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static iso_runtime *rt;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A log of which callback ran when. */
typedef struct trace {
  int order[64];
  double at[64];
  int n;
  double start;
} trace;

typedef struct tag {
  trace *t;
  int id;
} tag;

static void record(iso_isolate *iso, void *data) {
  (void)iso;
  tag *g = data;
  CHECK_LT(g->t->n, 64);
  g->t->at[g->t->n] = now_ms() - g->t->start;
  g->t->order[g->t->n++] = g->id;
}

static void test_timer_order(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  trace t = {.start = now_ms()};
  /* Started out of order; two share a deadline, and keep their start
   * order. */
  static const int delays[] = {60, 20, 40, 0, 20, 5};
  tag tags[6];
  for (int i = 0; i < 6; i++) {
    tags[i] = (tag){&t, i};
    CHECK(iso_timer_start(iso, (uint64_t)delays[i], 0, record, &tags[i]) != 0);
  }
  CHECK_OK(iso_loop_run(iso)); /* returns when no timer is left */
  CHECK_EQ(t.n, 6);
  static const int want[] = {3, 5, 1, 4, 2, 0};
  for (int i = 0; i < 6; i++) {
    CHECK_EQ(t.order[i], want[i]);
    /* Never early. */
    CHECK_GE(t.at[i] + 1, delays[t.order[i]]);
  }
  CHECK_LT(t.at[5], 5000);
  /* With nothing registered, run returns at once. */
  double t0 = now_ms();
  CHECK_OK(iso_loop_run(iso));
  CHECK_LT(now_ms() - t0, 1000);
  CHECK_OK(iso_isolate_free(iso));
}

typedef struct ticker {
  iso_timer_id id;
  int count, limit;
  double start, last;
  iso_status clear_status;
} ticker;

static void tick_and_clear(iso_isolate *iso, void *data) {
  ticker *k = data;
  k->last = now_ms();
  if (++k->count == k->limit) k->clear_status = iso_timer_clear(iso, k->id);
}

static void test_interval_clears_itself(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  ticker k = {.limit = 5, .start = now_ms(), .clear_status = ISO_ERR_STATE};
  k.id = iso_timer_start(iso, 10, 10, tick_and_clear, &k);
  CHECK(k.id != 0);
  CHECK_OK(iso_loop_run(iso)); /* ends: the interval cleared itself */
  CHECK_EQ(k.count, 5);
  CHECK_OK(k.clear_status);
  CHECK_GE(k.last - k.start, 49);
  /* Cleared means gone: a second clear is refused. */
  CHECK_FAILS_ST(iso_timer_clear(iso, k.id), ISO_ERR_ARGUMENT, "not pending");
  CHECK_OK(iso_isolate_free(iso));
}

static void count_up(iso_isolate *iso, void *data) {
  (void)iso;
  (*(int *)data)++;
}

typedef struct clearer {
  iso_timer_id victim, self;
  iso_status victim_status, self_status;
} clearer;

static void clear_other(iso_isolate *iso, void *data) {
  clearer *c = data;
  c->victim_status = iso_timer_clear(iso, c->victim);
  /* A one-shot timer has run once its callback starts. */
  c->self_status = iso_timer_clear(iso, c->self);
}

static void test_clear(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  int ran = 0, other = 0;
  /* Cleared before the loop runs: never runs. */
  iso_timer_id a = iso_timer_start(iso, 0, 0, count_up, &ran);
  iso_timer_id b = iso_timer_start(iso, 5, 5, count_up, &ran);
  CHECK(a != 0 && b != 0 && a != b);
  CHECK_OK(iso_timer_clear(iso, a));
  CHECK_OK(iso_timer_clear(iso, b));
  CHECK_FAILS_ST(iso_timer_clear(iso, a), ISO_ERR_ARGUMENT, "");
  CHECK_FAILS_ST(iso_timer_clear(iso, 0), ISO_ERR_ARGUMENT, "");
  CHECK_FAILS_ST(iso_timer_clear(iso, 0xdeadbeefcafeull), ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_loop_run(iso));
  CHECK_EQ(ran, 0);
  /* Cleared by another timer's callback: never runs. */
  clearer c = {0, 0, ISO_ERR_STATE, ISO_OK};
  c.self = iso_timer_start(iso, 10, 0, clear_other, &c);
  c.victim = iso_timer_start(iso, 30, 0, count_up, &ran);
  iso_timer_id late = iso_timer_start(iso, 50, 0, count_up, &other);
  CHECK(c.self && c.victim && late);
  CHECK_OK(iso_loop_run(iso));
  CHECK_OK(c.victim_status);
  CHECK_STATUS(c.self_status, ISO_ERR_ARGUMENT);
  CHECK_EQ(ran, 0);
  CHECK_EQ(other, 1);
  /* A timer that ran cannot be cleared. */
  CHECK_FAILS_ST(iso_timer_clear(iso, late), ISO_ERR_ARGUMENT, "ran");
  /* Slots are reused, ids are not. */
  iso_timer_id again = iso_timer_start(iso, 0, 0, count_up, &other);
  CHECK(again != late && again != c.self && again != c.victim);
  CHECK_FAILS_ST(iso_timer_clear(iso, late), ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_timer_clear(iso, again));
  /* Bad arguments. */
  CHECK_FAILS(iso_timer_start(iso, 1, 0, NULL, NULL), == 0, ISO_ERR_ARGUMENT,
              "NULL");
  CHECK_FAILS(iso_timer_start(iso, UINT64_MAX, 0, count_up, &ran), == 0,
              ISO_ERR_RANGE, "");
  CHECK_OK(iso_isolate_free(iso));
}

/* Many timers with random deadlines run in deadline order (the heap). */
static void test_many_timers(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  enum { N = 300 };
  static int fired[N];
  uint64_t seed = 12345, delays[N];
  iso_timer_id ids[N];
  int n = 0;
  for (int i = 0; i < N; i++) {
    delays[i] = unit_rand(&seed) % 40;
    fired[i] = 0;
    ids[i] = iso_timer_start(iso, delays[i], 0, count_up, &fired[i]);
    CHECK(ids[i] != 0);
  }
  /* Clear every third. */
  for (int i = 0; i < N; i += 3) CHECK_OK(iso_timer_clear(iso, ids[i]));
  CHECK_OK(iso_loop_run(iso));
  for (int i = 0; i < N; i++) {
    CHECK_EQ(fired[i], i % 3 == 0 ? 0 : 1);
    n += fired[i];
  }
  CHECK_EQ(n, N - (N + 2) / 3);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- stopping ---- */

typedef struct stopper {
  int count, stop_at;
} stopper;

static void tick_and_stop(iso_isolate *iso, void *data) {
  stopper *s = data;
  if (++s->count % s->stop_at == 0) iso_loop_stop(iso);
}

static void test_stop_from_callback(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  stopper s = {0, 3};
  iso_timer_id id = iso_timer_start(iso, 1, 1, tick_and_stop, &s);
  CHECK(id != 0);
  CHECK_OK(iso_loop_run(iso));
  CHECK_EQ(s.count, 3);
  /* The interval is still there: running again goes on where it was. */
  CHECK_OK(iso_loop_run(iso));
  CHECK_EQ(s.count, 6);
  CHECK_OK(iso_timer_clear(iso, id));
  CHECK_OK(iso_loop_run(iso));
  CHECK_EQ(s.count, 6);
  /* Stopping an isolate that never ran a loop is harmless. */
  iso_isolate *other = iso_isolate_new(rt, NULL);
  iso_loop_stop(other);
  iso_loop_stop(NULL);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

typedef struct remote_stop {
  iso_isolate *iso;
  int delay_ms;
} remote_stop;

static void *stop_later(void *arg) {
  remote_stop *r = arg;
  usleep((useconds_t)r->delay_ms * 1000);
  iso_loop_stop(r->iso);
  return NULL;
}

static void test_stop_from_other_thread(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  int ran = 0;
  iso_timer_id id = iso_timer_start(iso, 60000, 0, count_up, &ran);
  CHECK(id != 0);
  remote_stop r = {iso, 50};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, stop_later, &r), 0);
  double t0 = now_ms();
  CHECK_OK(iso_loop_run(iso));
  double took = now_ms() - t0;
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_GE(took, 40);
  CHECK_LT(took, 10000);
  CHECK_EQ(ran, 0);
  /* The timer is still pending; freeing the isolate frees it. */
  CHECK_OK(iso_isolate_free(iso));
}

static void run_nested(iso_isolate *iso, void *data) {
  *(iso_status *)data = iso_loop_run(iso);
}

static void test_no_reentry(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_status st = ISO_OK;
  CHECK(iso_timer_start(iso, 0, 0, run_nested, &st) != 0);
  CHECK_OK(iso_loop_run(iso));
  CHECK_STATUS(st, ISO_ERR_STATE);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- messages ---- */

typedef struct inbox {
  int64_t got[128];
  int n;
  int stop_after; /* 0: never */
  iso_handle first_handle;
} inbox;

static void collect(iso_isolate *iso, iso_port *port, iso_value message,
                    void *data) {
  (void)port;
  inbox *b = data;
  CHECK_LT(b->n, 128);
  CHECK_EQ(iso_kind_of(message), ISO_KIND_ARRAY);
  iso_handle m = iso_handle_new(iso, message);
  iso_handle x = iso_array_get(iso, iso_get(m), 0);
  CHECK(x != NULL);
  b->got[b->n++] = iso_smi_value(iso_get(x));
  /* Each message gets a fresh scope: handles made here are released
   * afterwards, so every message's first handle is the same slot. */
  if (b->first_handle == NULL) b->first_handle = m;
  CHECK(m == b->first_handle);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  if (b->stop_after && b->n == b->stop_after) iso_loop_stop(iso);
}

static iso_handle boxed(iso_isolate *iso, int64_t v) {
  iso_handle a = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(a), iso_smi(v)));
  return a;
}

static void test_messages(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  inbox box;
  memset(&box, 0, sizeof box);
  box.stop_after = 100;
  CHECK_OK(iso_loop_on_message(iso, b, collect, &box));
  for (int i = 0; i < 100; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    CHECK_OK(iso_port_post(a, iso, iso_get(boxed(iso, i)), NULL, 0));
    CHECK_OK(iso_scope_close(&s));
  }
  CHECK_OK(iso_loop_run(iso)); /* stopped by the 100th message */
  CHECK_EQ(box.n, 100);
  for (int i = 0; i < 100; i++) CHECK_EQ(box.got[i], i);
  /* Closing the peer ends the loop once the queue is drained. */
  for (int i = 100; i < 110; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    CHECK_OK(iso_port_post(a, iso, iso_get(boxed(iso, i)), NULL, 0));
    CHECK_OK(iso_scope_close(&s));
  }
  iso_port_close(a);
  box.stop_after = 0;
  CHECK_OK(iso_loop_run(iso));
  CHECK_EQ(box.n, 110);
  CHECK_EQ(box.got[109], 109);
  iso_port_close(b);
  CHECK_OK(iso_isolate_free(iso));
}

typedef struct pinger {
  iso_port *out;
  int sent;
} pinger;

static void send_ping(iso_isolate *iso, void *data) {
  pinger *p = data;
  CHECK_OK(iso_port_post(p->out, iso, iso_get(boxed(iso, p->sent)), NULL, 0));
  p->sent++;
}

/* Timers and messages in one loop: a timer posts, a handler receives, and
 * removing the handler (with the timer gone) lets the loop end. */
static void remove_after_three(iso_isolate *iso, iso_port *port,
                               iso_value message, void *data) {
  collect(iso, port, message, data);
  inbox *b = data;
  if (b->n == 3) CHECK_OK(iso_loop_on_message(iso, port, NULL, NULL));
}

static void test_timers_and_messages(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  pinger p = {a, 0};
  inbox box;
  memset(&box, 0, sizeof box);
  iso_timer_id id = iso_timer_start(iso, 5, 5, send_ping, &p);
  CHECK(id != 0);
  CHECK_OK(iso_loop_on_message(iso, b, remove_after_three, &box));
  CHECK_FAILS_ST(iso_loop_on_message(iso, NULL, collect, &box),
                 ISO_ERR_ARGUMENT, "NULL");
  /* The interval would keep the loop alive: the third message stops it. */
  box.stop_after = 3;
  CHECK_OK(iso_loop_run(iso));
  CHECK_EQ(box.n, 3);
  CHECK_EQ(box.got[2], 2);
  CHECK_OK(iso_timer_clear(iso, id));
  /* The handler is gone and no timer is left: the loop returns. */
  CHECK_OK(iso_loop_run(iso));
  CHECK_EQ(box.n, 3);
  CHECK_FAILS_ST(iso_loop_on_message(iso, b, NULL, NULL), ISO_ERR_ARGUMENT,
                 "no handler");
  iso_port_close(a);
  iso_port_close(b);
  /* A closed port cannot get a handler (the value keeps its memory). */
  CHECK_OK(iso_channel_new(&a, &b));
  iso_scope s;
  iso_scope_open(iso, &s);
  CHECK(iso_port_to_value(iso, b) != NULL);
  iso_port_close(b);
  CHECK_FAILS_ST(iso_loop_on_message(iso, b, collect, &box), ISO_ERR_CLOSED,
                 "closed");
  /* One whose peer closed may; the loop drops it once it is drained. */
  CHECK_OK(iso_loop_on_message(iso, a, collect, &box));
  double t0 = now_ms();
  CHECK_OK(iso_loop_run(iso));
  CHECK_LT(now_ms() - t0, 10000);
  CHECK_EQ(box.n, 3);
  CHECK_OK(iso_scope_close(&s));
  iso_port_close(a);
  CHECK_OK(iso_isolate_free(iso));
}

/* A handled port that dies with its value drops out of the loop. */
static void drop_port_value(iso_isolate *iso, void *data) {
  (void)data;
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
}

static void test_port_value_dies(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  inbox box;
  memset(&box, 0, sizeof box);
  {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle v = iso_port_to_value(iso, b);
    CHECK(v != NULL);
    CHECK_OK(iso_loop_on_message(iso, iso_port_from_value(iso_get(v)), collect,
                                 &box));
    CHECK_OK(iso_scope_close(&s));
  }
  CHECK(iso_timer_start(iso, 10, 0, drop_port_value, NULL) != 0);
  double t0 = now_ms();
  CHECK_OK(iso_loop_run(iso)); /* would wait forever on b otherwise */
  CHECK_LT(now_ms() - t0, 10000);
  iso_port_stats_t st;
  CHECK_OK(iso_port_stats(a, &st));
  CHECK(st.closed);
  iso_port_close(a);
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  RUN(test_timer_order);
  RUN(test_interval_clears_itself);
  RUN(test_clear);
  RUN(test_many_timers);
  RUN(test_stop_from_callback);
  RUN(test_stop_from_other_thread);
  RUN(test_no_reentry);
  RUN(test_messages);
  RUN(test_timers_and_messages);
  RUN(test_port_value_dies);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
