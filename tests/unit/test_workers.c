/*
 * Workers: exit codes, parameters, messaging with the parent,
 * termination while blocked in a receive, while busy in a loop of
 * safepoints and while running an event loop, out-of-memory isolation,
 * and thousands of short-lived workers in a row.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#if defined(__SANITIZE_THREAD__)
#define UNIT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNIT_TSAN 1
#endif
#endif
#ifndef UNIT_TSAN
#define UNIT_TSAN 0
#endif

static iso_runtime *rt;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static iso_worker_params wparams(const char *name) {
  iso_worker_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.name = name;
  return p;
}

/* Receives one small integer from port, or fails the test. */
static int64_t receive_int(iso_isolate *iso, iso_port *port) {
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle h = NULL;
  CHECK_OK(iso_port_receive(port, iso, 20000, &h));
  CHECK(iso_is_smi(iso_get(h)));
  int64_t v = iso_smi_value(iso_get(h));
  CHECK_OK(iso_scope_close(&s));
  return v;
}

/* ---- exit codes and parameters ---- */

typedef struct facts {
  bool has_worker;
  bool name_ok;
  size_t stack_size;
  bool scope_open;
} facts;

static int report_facts(iso_isolate *iso, iso_port *parent, void *arg) {
  facts *f = arg;
  f->has_worker = iso_isolate_worker(iso) != NULL;
  const char *name = iso_isolate_name(iso);
  f->name_ok = name && strcmp(name, "fact-finder") == 0;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstacksize(&attr, &f->stack_size);
    pthread_attr_destroy(&attr);
  }
  /* A scope is open: a handle can be made without opening one. */
  f->scope_open = iso_string_from_cstr(iso, "in scope") != NULL;
  (void)parent;
  return 42;
}

static void test_exit_code_and_params(void) {
  facts f;
  memset(&f, 0, sizeof f);
  iso_worker_params p = wparams("fact-finder");
  p.stack_size = (size_t)3 << 20;
  iso_port *port = NULL;
  iso_worker *w = iso_worker_spawn(rt, report_facts, &f, &p, &port);
  CHECK(w != NULL);
  CHECK(port != NULL);
  int code = -100;
  CHECK_OK(iso_worker_join(w, &code));
  CHECK_EQ(code, 42);
  CHECK(f.has_worker);
  CHECK(f.name_ok);
  CHECK(f.scope_open);
  CHECK_UGE(f.stack_size, (size_t)3 << 20);
  /* The worker ended, so its end of the channel is closed. */
  iso_port_stats_t st;
  CHECK_OK(iso_port_stats(port, &st));
  CHECK(st.closed);
  iso_port_close(port);
  /* A plain isolate has no worker. */
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso_isolate_worker(iso) == NULL);
  CHECK_OK(iso_isolate_free(iso));
}

static int return_arg(iso_isolate *iso, iso_port *parent, void *arg) {
  (void)iso;
  (void)parent;
  return (int)(intptr_t)arg;
}

static void test_bad_spawn(void) {
  iso_port *port = NULL;
  CHECK_FAILS(iso_worker_spawn(NULL, return_arg, NULL, NULL, &port), == NULL,
              ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS(iso_worker_spawn(rt, NULL, NULL, NULL, &port), == NULL,
              ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS(iso_worker_spawn(rt, return_arg, NULL, NULL, NULL), == NULL,
              ISO_ERR_ARGUMENT, "NULL");
  iso_worker_params p;
  memset(&p, 0, sizeof p); /* struct_size not set */
  CHECK_FAILS(iso_worker_spawn(rt, return_arg, NULL, &p, &port), == NULL,
              ISO_ERR_ARGUMENT, "struct_size");
  CHECK_FAILS_ST(iso_worker_terminate(NULL), ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS_ST(iso_worker_join(NULL, NULL), ISO_ERR_ARGUMENT, "NULL");
  CHECK_UEQ(iso_runtime_isolate_count(rt), 0);
}

/* ---- messaging ---- */

static int echo_worker(iso_isolate *iso, iso_port *parent, void *arg) {
  (void)arg;
  int n = 0;
  for (;;) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle h = NULL;
    iso_status st = iso_port_receive(parent, iso, -1, &h);
    if (st != ISO_OK) {
      iso_scope_close(&s);
      return st == ISO_ERR_CLOSED ? n : 1000 + (int)st;
    }
    CHECK_OK(iso_port_post(parent, iso, iso_get(h), NULL, 0));
    n++;
    CHECK_OK(iso_scope_close(&s));
  }
}

static void test_echo(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *port;
  iso_worker_params p = wparams("echo");
  iso_worker *w = iso_worker_spawn(rt, echo_worker, NULL, &p, &port);
  CHECK(w != NULL);
  for (int i = 0; i < 200; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    char buf[40];
    snprintf(buf, sizeof buf, "message %d", i);
    iso_handle str = iso_string_from_cstr(iso, buf);
    CHECK_OK(iso_port_post(port, iso, iso_get(str), NULL, 0));
    iso_handle h = NULL;
    CHECK_OK(iso_port_receive(port, iso, 20000, &h));
    CHECK_STRING(iso_get(h), buf);
    CHECK_OK(iso_scope_close(&s));
  }
  iso_port_close(port); /* the worker's receive sees ISO_ERR_CLOSED */
  int code = -100;
  CHECK_OK(iso_worker_join(w, &code));
  CHECK_EQ(code, 200);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- termination ---- */

typedef struct blocked {
  iso_status status; /* what the blocking call returned */
  iso_status after;  /* what a later call returned */
} blocked;

static int block_in_receive(iso_isolate *iso, iso_port *parent, void *arg) {
  blocked *b = arg;
  CHECK_OK(iso_port_post(parent, iso, iso_smi(1), NULL, 0)); /* ready */
  iso_handle h = NULL;
  b->status = iso_port_receive(parent, iso, -1, &h);
  b->after = iso_array_new(iso, 1) ? ISO_OK : iso_last_status();
  return 0; /* overridden by the termination */
}

static void test_terminate_blocked(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  blocked b = {ISO_OK, ISO_OK};
  iso_port *port;
  iso_worker *w = iso_worker_spawn(rt, block_in_receive, &b, NULL, &port);
  CHECK(w != NULL);
  CHECK_EQ(receive_int(iso, port), 1);
  usleep(20000); /* let it block */
  double t0 = now_ms();
  CHECK_OK(iso_worker_terminate(w));
  CHECK_OK(iso_worker_terminate(w)); /* twice is fine */
  int code = 0;
  CHECK_OK(iso_worker_join(w, &code));
  CHECK_LT(now_ms() - t0, 5000);
  CHECK_EQ(code, ISO_EXIT_TERMINATED);
  CHECK_STATUS(b.status, ISO_ERR_TERMINATED);
  CHECK_STATUS(b.after, ISO_ERR_TERMINATED);
  iso_port_close(port);
  CHECK_OK(iso_isolate_free(iso));
}

static int busy_loop(iso_isolate *iso, iso_port *parent, void *arg) {
  uint64_t *iterations = arg;
  CHECK_OK(iso_port_post(parent, iso, iso_smi(2), NULL, 0)); /* ready */
  for (;;) {
    iso_status st = iso_safepoint(iso);
    if (st != ISO_OK) return st == ISO_ERR_TERMINATED ? 0 : 1000 + (int)st;
    __atomic_fetch_add(iterations, 1, __ATOMIC_RELAXED);
  }
}

static void test_terminate_busy(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  uint64_t iterations = 0;
  iso_port *port;
  iso_worker *w = iso_worker_spawn(rt, busy_loop, &iterations, NULL, &port);
  CHECK(w != NULL);
  CHECK_EQ(receive_int(iso, port), 2);
  while (__atomic_load_n(&iterations, __ATOMIC_RELAXED) < 1000) usleep(1000);
  CHECK_OK(iso_worker_terminate(w));
  int code = 0;
  CHECK_OK(iso_worker_join(w, &code));
  CHECK_EQ(code, ISO_EXIT_TERMINATED);
  iso_port_close(port);
  CHECK_OK(iso_isolate_free(iso));
}

static void on_message_echo(iso_isolate *iso, iso_port *port, iso_value message,
                            void *data) {
  (void)data;
  CHECK_OK(iso_port_post(port, iso, message, NULL, 0));
}

static int loop_worker(iso_isolate *iso, iso_port *parent, void *arg) {
  iso_status *st = arg;
  CHECK_OK(iso_loop_on_message(iso, parent, on_message_echo, NULL));
  *st = iso_loop_run(iso);
  return 0;
}

static void test_terminate_loop(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_status st = ISO_OK;
  iso_port *port;
  iso_worker *w = iso_worker_spawn(rt, loop_worker, &st, NULL, &port);
  CHECK(w != NULL);
  for (int i = 0; i < 10; i++) {
    CHECK_OK(iso_port_post(port, iso, iso_smi(i), NULL, 0));
    CHECK_EQ(receive_int(iso, port), i);
  }
  CHECK_OK(iso_worker_terminate(w));
  int code = 0;
  CHECK_OK(iso_worker_join(w, &code));
  CHECK_EQ(code, ISO_EXIT_TERMINATED);
  CHECK_STATUS(st, ISO_ERR_TERMINATED);
  iso_port_close(port);
  CHECK_OK(iso_isolate_free(iso));
}

/* A worker that ends on its own before the terminate comes keeps its
 * code; terminating it then (or during its teardown) is harmless. */
static void test_terminate_after_exit(void) {
  for (int i = 0; i < 50; i++) {
    iso_port *port;
    iso_worker *w =
        iso_worker_spawn(rt, return_arg, (void *)(intptr_t)7, NULL, &port);
    CHECK(w != NULL);
    if (i % 2) usleep(200);
    CHECK_OK(iso_worker_terminate(w));
    int code = 0;
    CHECK_OK(iso_worker_join(w, &code));
    /* Either it returned first, or the terminate got in first. */
    CHECK(code == 7 || code == ISO_EXIT_TERMINATED);
    iso_port_close(port);
  }
  /* One that has certainly finished: */
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *port;
  iso_worker *w =
      iso_worker_spawn(rt, return_arg, (void *)(intptr_t)9, NULL, &port);
  iso_handle h;
  CHECK_STATUS(iso_port_receive(port, iso, 20000, &h), ISO_ERR_CLOSED);
  usleep(10000);
  CHECK_OK(iso_worker_terminate(w));
  int code = 0;
  CHECK_OK(iso_worker_join(w, &code));
  CHECK_EQ(code, 9);
  iso_port_close(port);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- out of memory ---- */

static int hog(iso_isolate *iso, iso_port *parent, void *arg) {
  iso_status *last = arg;
  CHECK_OK(iso_port_post(parent, iso, iso_smi(3), NULL, 0)); /* started */
  iso_handle keep = iso_array_new(iso, 0);
  CHECK(keep != NULL);
  for (;;) {
    iso_handle a = iso_array_new(iso, 1000);
    if (!a) break;
    if (iso_array_push(iso, iso_get(keep), iso_get(a)) != ISO_OK) break;
  }
  *last = iso_last_status();
  return 0; /* the out-of-memory exit code wins */
}

static void test_out_of_memory_isolation(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_status last = ISO_OK;
  iso_port *hog_port, *echo_port;
  iso_worker_params hp = wparams("hog");
  hp.max_old_generation_size = (size_t)4 << 20;
  hp.max_young_generation_size = (size_t)1 << 20;
  iso_worker *echo = iso_worker_spawn(rt, echo_worker, NULL, NULL, &echo_port);
  CHECK(echo != NULL);
  iso_worker *h = iso_worker_spawn(rt, hog, &last, &hp, &hog_port);
  CHECK(h != NULL);
  CHECK_EQ(receive_int(iso, hog_port), 3);
  /* While the hog fills its heap, the parent and the other worker work. */
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle kept = iso_array_new(iso, 0);
  for (int i = 0; i < 300; i++) {
    iso_handle a = iso_array_new(iso, 100);
    CHECK(a != NULL);
    CHECK_OK(iso_array_set(iso, iso_get(a), 0, iso_smi(i)));
    CHECK_OK(iso_array_push(iso, iso_get(kept), iso_get(a)));
    CHECK_OK(iso_port_post(echo_port, iso, iso_smi(i), NULL, 0));
    CHECK_EQ(receive_int(iso, echo_port), i);
  }
  int code = 0;
  CHECK_OK(iso_worker_join(h, &code));
  CHECK_EQ(code, ISO_EXIT_OUT_OF_MEMORY);
  CHECK(last == ISO_ERR_OUT_OF_MEMORY || last == ISO_ERR_TERMINATED);
  /* Everyone else is fine afterwards. */
  for (int i = 0; i < 20; i++) {
    CHECK_OK(iso_port_post(echo_port, iso, iso_smi(-i), NULL, 0));
    CHECK_EQ(receive_int(iso, echo_port), -i);
  }
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(iso_array_length(iso_get(kept)), 300);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&s));
  iso_port_close(echo_port);
  CHECK_OK(iso_worker_join(echo, &code));
  CHECK_EQ(code, 320);
  iso_port_close(hog_port);
  CHECK_OK(iso_isolate_free(iso));
  CHECK_UEQ(iso_runtime_isolate_count(rt), 0);
}

/* ---- many short-lived workers ---- */

static int post_index(iso_isolate *iso, iso_port *parent, void *arg) {
  int i = (int)(intptr_t)arg;
  iso_handle a = iso_array_new(iso, 8); /* touch the heap */
  CHECK(a != NULL);
  CHECK_OK(iso_port_post(parent, iso, iso_smi(i), NULL, 0));
  return i % 100;
}

static void test_spawn_join_cycles(void) {
  int cycles = 2000;
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  double t0 = now_ms();
  for (int i = 0; i < cycles; i++) {
    iso_port *port;
    iso_worker *w =
        iso_worker_spawn(rt, post_index, (void *)(intptr_t)i, NULL, &port);
    CHECK(w != NULL);
    CHECK_EQ(receive_int(iso, port), i);
    int code = -100;
    CHECK_OK(iso_worker_join(w, &code));
    CHECK_EQ(code, i % 100);
    iso_port_close(port);
    CHECK_UEQ(iso_runtime_isolate_count(rt), 1);
  }
  printf("# %d spawn/message/join cycles in %.0f ms%s\n", cycles, now_ms() - t0,
         UNIT_TSAN ? " (TSan)" : "");
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  RUN(test_exit_code_and_params);
  RUN(test_bad_spawn);
  RUN(test_echo);
  RUN(test_terminate_blocked);
  RUN(test_terminate_busy);
  RUN(test_terminate_loop);
  RUN(test_terminate_after_exit);
  RUN(test_out_of_memory_isolation);
  RUN(test_spawn_join_cycles);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
