/*
 * Message ports and channels: round trips, blocking and polling receives,
 * closing, backpressure limits, the pollable descriptor's level semantics,
 * raw messages, ports as heap values, and a port transferred to a worker
 * that then talks to the original peer.
 */
#include <poll.h>
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

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Is fd readable right now? */
static bool readable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r = poll(&p, 1, 0);
  CHECK(r >= 0);
  return r == 1 && (p.revents & POLLIN);
}

static iso_port_stats_t stats(iso_port *p) {
  iso_port_stats_t s;
  memset(&s, 0xa5, sizeof s);
  CHECK_OK(iso_port_stats(p, &s));
  return s;
}

/* [n, "item-n"] */
static iso_handle make_item(iso_isolate *iso, int n) {
  char buf[32];
  snprintf(buf, sizeof buf, "item-%d", n);
  iso_handle a = iso_array_new(iso, 0);
  CHECK(a != NULL);
  iso_handle s = iso_string_from_cstr(iso, buf);
  CHECK(s != NULL);
  CHECK_OK(iso_array_push(iso, iso_get(a), iso_smi(n)));
  CHECK_OK(iso_array_push(iso, iso_get(a), iso_get(s)));
  return a;
}

static void check_item(iso_isolate *iso, iso_value v, int n) {
  char buf[32];
  snprintf(buf, sizeof buf, "item-%d", n);
  CHECK_EQ(iso_kind_of(v), ISO_KIND_ARRAY);
  CHECK_UEQ(iso_array_length(v), 2);
  iso_handle a = iso_handle_new(iso, v);
  iso_handle x = iso_array_get(iso, iso_get(a), 0);
  CHECK(x != NULL);
  CHECK_EQ(iso_smi_value(iso_get(x)), n);
  iso_handle s = iso_array_get(iso, iso_get(a), 1);
  CHECK(s != NULL);
  CHECK_STRING(iso_get(s), buf);
}

/* ---- round trips ---- */

static void test_round_trip(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  CHECK(a != b);
  iso_scope s;
  iso_scope_open(iso, &s);
  for (int i = 0; i < 10; i++)
    CHECK_OK(iso_port_post(a, iso, iso_get(make_item(iso, i)), NULL, 0));
  iso_port_stats_t sa = stats(a), sb = stats(b);
  CHECK_UEQ(sa.posted, 10);
  CHECK_UEQ(sa.queued_messages, 0); /* a's own queue is empty */
  CHECK_UEQ(sb.queued_messages, 10);
  CHECK_UGE(sb.queued_bytes, 10 * 6); /* at least the strings */
  CHECK_UEQ(sb.received, 0);
  CHECK(!sa.closed && !sb.closed);
  /* In order, each into the current scope. */
  for (int i = 0; i < 10; i++) {
    iso_handle h = NULL;
    CHECK_OK(iso_port_receive(b, iso, 0, &h));
    CHECK(h != NULL);
    CHECK_OK(iso_gc(iso, ISO_GC_FULL)); /* the handle is a root */
    check_item(iso, iso_get(h), i);
  }
  sb = stats(b);
  CHECK_UEQ(sb.received, 10);
  CHECK_UEQ(sb.queued_messages, 0);
  CHECK_UEQ(sb.queued_bytes, 0);
  /* And the other way. */
  CHECK_OK(iso_port_post(b, iso, iso_smi(-7), NULL, 0));
  iso_handle h = NULL;
  CHECK_OK(iso_port_receive(a, iso, 0, &h));
  CHECK_EQ(iso_smi_value(iso_get(h)), -7);
  CHECK_OK(iso_scope_close(&s));
  iso_port_close(a);
  iso_port_close(b);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_bad_arguments(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_FAILS_ST(iso_channel_new(NULL, &b), ISO_ERR_ARGUMENT, "NULL");
  CHECK_OK(iso_channel_new(&a, &b));
  CHECK_FAILS_ST(iso_port_post(NULL, iso, iso_smi(1), NULL, 0),
                 ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS_ST(iso_port_post(a, iso, iso_smi(1), NULL, 2), ISO_ERR_ARGUMENT,
                 "transfer");
  iso_handle h;
  CHECK_FAILS_ST(iso_port_receive(b, iso, 0, NULL), ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS_ST(iso_port_receive(NULL, iso, 0, &h), ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS_ST(iso_port_stats(NULL, NULL), ISO_ERR_ARGUMENT, "NULL");
  CHECK_EQ(iso_port_fd(NULL), -1);
  CHECK_FAILS(iso_port_from_value(iso_smi(3)), == NULL, ISO_ERR_TYPE, "port");
  CHECK_FAILS(iso_port_to_value(iso, NULL), == NULL, ISO_ERR_ARGUMENT, "NULL");
  /* A value that cannot be cloned posts nothing. */
  iso_handle ext = iso_external_new(iso, &rt, NULL, NULL);
  if (ext) {
    CHECK_FAILS_ST(iso_port_post(a, iso, iso_get(ext), NULL, 0),
                   ISO_ERR_DATA_CLONE, "");
    CHECK_UEQ(stats(b).queued_messages, 0);
    CHECK(!readable(iso_port_fd(b)));
  }
  iso_port_close(NULL); /* harmless */
  iso_port_close(a);
  iso_port_close(b);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- blocking, polling, timeouts ---- */

typedef struct delayed_post {
  iso_port *port;
  int delay_ms;
  int value;
} delayed_post;

static void *post_later(void *arg) {
  delayed_post *d = arg;
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  sleep_ms(d->delay_ms);
  CHECK_OK(iso_port_post(d->port, iso, iso_smi(d->value), NULL, 0));
  CHECK_OK(iso_isolate_free(iso));
  return NULL;
}

static void test_poll_and_timeout(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  iso_handle h = NULL;
  /* 0 polls: an empty queue answers at once. */
  double t0 = now_ms();
  CHECK_FAILS_ST(iso_port_receive(b, iso, 0, &h), ISO_ERR_TIMEOUT, "");
  CHECK_LT(now_ms() - t0, 250); /* no waiting (with room for a busy box) */
  /* A timeout waits that long, no less. */
  t0 = now_ms();
  CHECK_FAILS_ST(iso_port_receive(b, iso, 60, &h), ISO_ERR_TIMEOUT, "60");
  double waited = now_ms() - t0;
  CHECK_GE(waited, 59);
  CHECK_LT(waited, 5000);
  /* Forever ends when a message comes from another thread. */
  delayed_post d = {a, 40, 1234};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, post_later, &d), 0);
  t0 = now_ms();
  CHECK_OK(iso_port_receive(b, iso, -1, &h));
  CHECK_GE(now_ms() - t0, 30);
  CHECK_EQ(iso_smi_value(iso_get(h)), 1234);
  CHECK_EQ(pthread_join(t, NULL), 0);
  /* So does a long timeout, well before it runs out. */
  d.value = 99;
  CHECK_EQ(pthread_create(&t, NULL, post_later, &d), 0);
  t0 = now_ms();
  CHECK_OK(iso_port_receive(b, iso, 20000, &h));
  CHECK_LT(now_ms() - t0, 10000);
  CHECK_EQ(iso_smi_value(iso_get(h)), 99);
  CHECK_EQ(pthread_join(t, NULL), 0);
  iso_port_close(a);
  iso_port_close(b);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- closing ---- */

static void test_close_seen_by_peer(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  CHECK_OK(iso_port_post(a, iso, iso_smi(1), NULL, 0));
  CHECK_OK(iso_port_post(a, iso, iso_smi(2), NULL, 0));
  CHECK(!readable(iso_port_fd(a)));
  iso_port_close(a);
  /* The peer drains what was posted, then sees the close; its descriptor
   * stays readable so an epoll loop notices. */
  iso_port_stats_t sb = stats(b);
  CHECK(sb.closed);
  CHECK_UEQ(sb.queued_messages, 2);
  iso_handle h = NULL;
  CHECK_OK(iso_port_receive(b, iso, -1, &h));
  CHECK_EQ(iso_smi_value(iso_get(h)), 1);
  CHECK_OK(iso_port_receive(b, iso, -1, &h));
  CHECK_EQ(iso_smi_value(iso_get(h)), 2);
  CHECK(readable(iso_port_fd(b)));
  CHECK_FAILS_ST(iso_port_receive(b, iso, -1, &h), ISO_ERR_CLOSED, "closed");
  CHECK_FAILS_ST(iso_port_receive(b, iso, 0, &h), ISO_ERR_CLOSED, "closed");
  CHECK(readable(iso_port_fd(b)));
  /* Posting to a closed peer fails and queues nothing. */
  CHECK_FAILS_ST(iso_port_post(b, iso, iso_smi(3), NULL, 0), ISO_ERR_CLOSED,
                 "closed");
  iso_message *raw = iso_message_from_bytes("x", 1);
  CHECK_FAILS_ST(iso_port_post_message(b, raw), ISO_ERR_CLOSED, "closed");
  iso_message_free(raw); /* still ours after a failed post */
  CHECK_UEQ(stats(b).posted, 0);
  iso_port_close(b);
  CHECK_OK(iso_isolate_free(iso));
}

/* Messages still queued when both sides close are freed (ASan and
 * valgrind builds see a leak otherwise). */
static void test_close_with_queued_messages(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  for (int i = 0; i < 100; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    CHECK_OK(iso_port_post(a, iso, iso_get(make_item(iso, i)), NULL, 0));
    CHECK_OK(iso_port_post(b, iso, iso_get(make_item(iso, i)), NULL, 0));
    CHECK_OK(iso_scope_close(&s));
  }
  CHECK_UEQ(stats(b).queued_messages, 100);
  iso_port_close(b); /* drops b's queue now */
  CHECK_UEQ(stats(a).queued_messages, 100);
  iso_port_close(a);
  CHECK_OK(iso_isolate_free(iso));
}

typedef struct blocked_receiver {
  iso_port *port;
  iso_status status;
  volatile int started;
} blocked_receiver;

static void *receive_forever(void *arg) {
  blocked_receiver *r = arg;
  iso_message *m = NULL;
  __atomic_store_n(&r->started, 1, __ATOMIC_RELEASE);
  r->status = iso_port_receive_message(r->port, -1, &m);
  if (m) iso_message_free(m);
  return NULL;
}

/* Closing a port from another thread wakes a receive blocked on it. */
static void test_close_wakes_receiver(void) {
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  blocked_receiver r = {b, ISO_OK, 0};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, receive_forever, &r), 0);
  while (!__atomic_load_n(&r.started, __ATOMIC_ACQUIRE)) sleep_ms(1);
  sleep_ms(20);
  iso_port_close(b);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_STATUS(r.status, ISO_ERR_CLOSED);
  iso_port_close(a);
  /* And the peer closing wakes it too. */
  CHECK_OK(iso_channel_new(&a, &b));
  r = (blocked_receiver){b, ISO_OK, 0};
  CHECK_EQ(pthread_create(&t, NULL, receive_forever, &r), 0);
  while (!__atomic_load_n(&r.started, __ATOMIC_ACQUIRE)) sleep_ms(1);
  sleep_ms(20);
  iso_port_close(a);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_STATUS(r.status, ISO_ERR_CLOSED);
  iso_port_close(b);
}

/* ---- limits ---- */

static void test_limits(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  CHECK_FAILS_ST(iso_port_set_limit(NULL, 1, 1), ISO_ERR_ARGUMENT, "NULL");
  CHECK_OK(iso_port_set_limit(a, 2, 0));
  CHECK_OK(iso_port_post(a, iso, iso_smi(1), NULL, 0));
  CHECK_OK(iso_port_post(a, iso, iso_smi(2), NULL, 0));
  CHECK_FAILS_ST(iso_port_post(a, iso, iso_smi(3), NULL, 0), ISO_ERR_LIMIT,
                 "2 messages");
  iso_message *raw = iso_message_from_bytes("xyz", 3);
  CHECK_FAILS_ST(iso_port_post_message(a, raw), ISO_ERR_LIMIT, "limit");
  /* Nothing was queued by the refused posts. */
  iso_port_stats_t sb = stats(b);
  CHECK_UEQ(sb.queued_messages, 2);
  CHECK_UEQ(stats(a).posted, 2);
  /* The limit applies to a's posts only: b posts freely. */
  for (int i = 0; i < 5; i++)
    CHECK_OK(iso_port_post(b, iso, iso_smi(i), NULL, 0));
  /* Room again once the peer receives. */
  iso_handle h;
  CHECK_OK(iso_port_receive(b, iso, 0, &h));
  CHECK_EQ(iso_smi_value(iso_get(h)), 1);
  CHECK_OK(iso_port_post_message(a, raw));
  CHECK_FAILS_ST(iso_port_post(a, iso, iso_smi(4), NULL, 0), ISO_ERR_LIMIT, "");
  CHECK_OK(iso_port_receive(b, iso, 0, &h));
  CHECK_EQ(iso_smi_value(iso_get(h)), 2);
  iso_message *got = NULL;
  CHECK_OK(iso_port_receive_message(b, 0, &got));
  CHECK_UEQ(iso_message_size(got), 3);
  CHECK(memcmp(iso_message_data(got), "xyz", 3) == 0);
  iso_message_free(got);
  CHECK_UEQ(stats(b).queued_messages, 0);

  /* A byte limit: refused while the peer's queue holds that many bytes. */
  CHECK_OK(iso_port_set_limit(a, 0, 100));
  iso_scope s;
  iso_scope_open(iso, &s);
  char big[300];
  memset(big, 'q', sizeof big);
  iso_handle str = iso_string_new(iso, big, sizeof big);
  CHECK_OK(iso_port_post(a, iso, iso_get(str), NULL, 0));
  sb = stats(b);
  CHECK_UGE(sb.queued_bytes, 300);
  CHECK_FAILS_ST(iso_port_post(a, iso, iso_smi(5), NULL, 0), ISO_ERR_LIMIT,
                 "bytes");
  CHECK_UEQ(stats(b).queued_messages, 1);

  /* A refused post detaches nothing it would have transferred. */
  iso_port *c, *d;
  CHECK_OK(iso_channel_new(&c, &d));
  iso_handle pv = iso_port_to_value(iso, c);
  CHECK(pv != NULL);
  iso_value tr[1] = {iso_get(pv)};
  CHECK_FAILS_ST(iso_port_post(a, iso, tr[0], tr, 1), ISO_ERR_LIMIT, "");
  CHECK(iso_port_from_value(iso_get(pv)) == c);
  /* Lifting the limit lets it through. */
  CHECK_OK(iso_port_set_limit(a, 0, 0));
  CHECK_OK(iso_port_post(a, iso, tr[0], tr, 1));
  CHECK(iso_port_from_value(iso_get(pv)) == NULL);
  CHECK_OK(iso_scope_close(&s));
  iso_port_close(d);
  iso_port_close(a);
  iso_port_close(b); /* frees the queued port c with its message */
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- the descriptor ---- */

static void test_fd_level(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  int fa = iso_port_fd(a), fb = iso_port_fd(b);
  CHECK_GE(fa, 0);
  CHECK_GE(fb, 0);
  CHECK_NE(fa, fb);
  CHECK(!readable(fa));
  CHECK(!readable(fb));
  CHECK_OK(iso_port_post(a, iso, iso_smi(1), NULL, 0));
  CHECK(readable(fb));
  CHECK(readable(fb)); /* level: polling does not consume it */
  CHECK(!readable(fa));
  CHECK_OK(iso_port_post(a, iso, iso_smi(2), NULL, 0));
  CHECK_OK(iso_port_post(a, iso, iso_smi(3), NULL, 0));
  iso_handle h;
  for (int i = 1; i <= 3; i++) {
    CHECK(readable(fb));
    CHECK_OK(iso_port_receive(b, iso, 0, &h));
    CHECK_EQ(iso_smi_value(iso_get(h)), i);
  }
  CHECK(!readable(fb));
  /* Over many transitions the level keeps following the queue. */
  for (int round = 0; round < 50; round++) {
    int n = 1 + round % 4;
    for (int i = 0; i < n; i++)
      CHECK_OK(iso_port_post(a, iso, iso_smi(i), NULL, 0));
    for (int i = 0; i < n; i++) {
      CHECK(readable(fb));
      CHECK_OK(iso_port_receive(b, iso, 0, &h));
    }
    CHECK(!readable(fb));
  }
  /* A failed receive does not disturb it either. */
  CHECK_STATUS(iso_port_receive(b, iso, 0, &h), ISO_ERR_TIMEOUT);
  CHECK(!readable(fb));
  /* The peer's close makes it readable for good. */
  iso_port_close(a);
  CHECK(readable(fb));
  CHECK_STATUS(iso_port_receive(b, iso, 0, &h), ISO_ERR_CLOSED);
  CHECK(readable(fb));
  iso_port_close(b);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- raw messages ---- */

static void *raw_echo(void *arg) {
  iso_port *p = arg;
  iso_message *m = NULL;
  while (iso_port_receive_message(p, 5000, &m) == ISO_OK)
    CHECK_OK(iso_port_post_message(p, m));
  return NULL;
}

static void test_raw_messages(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, raw_echo, b), 0);
  for (int i = 0; i < 20; i++) {
    char buf[64];
    int n = snprintf(buf, sizeof buf, "raw message %d", i);
    CHECK_OK(iso_port_post_message(a, iso_message_from_bytes(buf, (size_t)n)));
    iso_message *m = NULL;
    CHECK_OK(iso_port_receive_message(a, 5000, &m));
    CHECK_UEQ(iso_message_size(m), (size_t)n);
    CHECK(memcmp(iso_message_data(m), buf, (size_t)n) == 0);
    iso_message_free(m);
  }
  /* Bytes that are not a valid message fail to deserialize: the receive
   * reports it, and the message is gone. */
  CHECK_OK(iso_port_post_message(a, iso_message_from_bytes("\xff\x01", 2)));
  iso_handle h = NULL;
  CHECK_FAILS_ST(iso_port_receive(a, iso, 5000, &h), ISO_ERR_DATA_CLONE, "");
  CHECK_UEQ(stats(a).queued_messages, 0);
  iso_port_close(a); /* the echo thread sees the close and ends */
  CHECK_EQ(pthread_join(t, NULL), 0);
  iso_port_close(b);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- ports as values ---- */

static void test_port_values(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *a, *b;
  CHECK_OK(iso_channel_new(&a, &b));
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle v = iso_port_to_value(iso, a);
  CHECK(v != NULL);
  CHECK_EQ(iso_kind_of(iso_get(v)), ISO_KIND_PORT);
  CHECK(iso_port_from_value(iso_get(v)) == a);
  CHECK_FAILS(iso_port_to_value(iso, a), == NULL, ISO_ERR_ARGUMENT, "already");
  /* The value keeps the port open across collections... */
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(
      iso_port_post(iso_port_from_value(iso_get(v)), iso, iso_smi(5), NULL, 0));
  iso_handle h;
  CHECK_OK(iso_port_receive(b, iso, 0, &h));
  CHECK_EQ(iso_smi_value(iso_get(h)), 5);
  /* ...and a port cannot carry itself or its peer. */
  iso_value tr[1] = {iso_get(v)};
  CHECK_FAILS_ST(iso_port_post(a, iso, tr[0], tr, 1), ISO_ERR_DATA_CLONE,
                 "itself");
  iso_handle bv = iso_port_to_value(iso, b);
  CHECK(bv != NULL);
  tr[0] = iso_get(bv);
  CHECK_FAILS_ST(iso_port_post(a, iso, tr[0], tr, 1), ISO_ERR_DATA_CLONE,
                 "peer");
  CHECK(iso_port_from_value(iso_get(bv)) == b); /* not detached */
  /* When the value dies, the port closes and the peer sees it. */
  iso_handle keep_b = bv;
  CHECK_OK(iso_scope_close(&s));
  (void)keep_b;
  iso_scope_open(iso, &s);
  iso_port *c, *d;
  CHECK_OK(iso_channel_new(&c, &d));
  {
    iso_scope inner;
    iso_scope_open(iso, &inner);
    CHECK(iso_port_to_value(iso, c) != NULL);
    CHECK_OK(iso_scope_close(&inner));
  }
  CHECK(!stats(d).closed);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK(stats(d).closed);
  CHECK(readable(iso_port_fd(d)));
  CHECK_FAILS_ST(iso_port_receive(d, iso, 0, &h), ISO_ERR_CLOSED, "closed");
  iso_port_close(d);
  /* Closing the raw pointer of a port a value holds is allowed; the value
   * dying later is then harmless. */
  CHECK_OK(iso_channel_new(&c, &d));
  {
    iso_scope inner;
    iso_scope_open(iso, &inner);
    CHECK(iso_port_to_value(iso, c) != NULL);
    iso_port_close(c);
    CHECK(stats(d).closed);
    CHECK_OK(iso_scope_close(&inner));
  }
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  iso_port_close(d);
  CHECK_OK(iso_scope_close(&s));
  /* a and b were held by values that are now garbage: freeing the isolate
   * closes them. */
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- a port transferred to a worker ---- */

static int transfer_worker(iso_isolate *iso, iso_port *parent, void *arg) {
  (void)arg;
  iso_handle h = NULL;
  /* The first message is the transferred port, alone. */
  CHECK_OK(iso_port_receive(parent, iso, 10000, &h));
  CHECK_EQ(iso_kind_of(iso_get(h)), ISO_KIND_PORT);
  iso_port *p = iso_port_from_value(iso_get(h));
  CHECK(p != NULL);
  /* Messages queued on it before the move are still there. */
  iso_handle m = NULL;
  CHECK_OK(iso_port_receive(p, iso, 10000, &m));
  check_item(iso, iso_get(m), 100);
  CHECK_OK(iso_port_post(p, iso, iso_get(make_item(iso, 200)), NULL, 0));
  /* Echo +1 until the original peer closes. */
  int echoed = 0;
  for (;;) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_status st = iso_port_receive(p, iso, 10000, &m);
    if (st == ISO_ERR_CLOSED) {
      CHECK_OK(iso_scope_close(&s));
      break;
    }
    CHECK_OK(st);
    CHECK_OK(
        iso_port_post(p, iso, iso_smi(iso_smi_value(iso_get(m)) + 1), NULL, 0));
    echoed++;
    CHECK_OK(iso_scope_close(&s));
  }
  return echoed;
}

static void test_transfer_to_worker(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_port *to_worker;
  iso_worker *w = iso_worker_spawn(rt, transfer_worker, NULL, NULL, &to_worker);
  CHECK(w != NULL);
  iso_port *mine, *moving;
  CHECK_OK(iso_channel_new(&mine, &moving));
  iso_scope s;
  iso_scope_open(iso, &s);
  /* Something waits on the port before it moves. */
  CHECK_OK(iso_port_post(mine, iso, iso_get(make_item(iso, 100)), NULL, 0));
  iso_handle pv = iso_port_to_value(iso, moving);
  CHECK(pv != NULL);
  iso_value tr[1] = {iso_get(pv)};
  CHECK_OK(iso_port_post(to_worker, iso, tr[0], tr, 1));
  /* The value here is detached now; posting it again fails. */
  CHECK(iso_port_from_value(iso_get(pv)) == NULL);
  tr[0] = iso_get(pv);
  CHECK_FAILS_ST(iso_port_post(to_worker, iso, tr[0], tr, 1),
                 ISO_ERR_DATA_CLONE, "");
  /* The worker talks through the moved port to us. */
  iso_handle h = NULL;
  CHECK_OK(iso_port_receive(mine, iso, 10000, &h));
  check_item(iso, iso_get(h), 200);
  for (int i = 0; i < 25; i++) {
    CHECK_OK(iso_port_post(mine, iso, iso_smi(i * 10), NULL, 0));
    CHECK_OK(iso_port_receive(mine, iso, 10000, &h));
    CHECK_EQ(iso_smi_value(iso_get(h)), i * 10 + 1);
  }
  iso_port_close(mine);
  int code = -100;
  CHECK_OK(iso_worker_join(w, &code));
  CHECK_EQ(code, 25);
  /* The worker's isolate is gone, and with it the moved port: its
   * channel is freed (leak-checked builds would see it otherwise). */
  CHECK_OK(iso_scope_close(&s));
  iso_port_close(to_worker);
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  RUN(test_round_trip);
  RUN(test_bad_arguments);
  RUN(test_poll_and_timeout);
  RUN(test_close_seen_by_peer);
  RUN(test_close_with_queued_messages);
  RUN(test_close_wakes_receiver);
  RUN(test_limits);
  RUN(test_fd_level);
  RUN(test_raw_messages);
  RUN(test_port_values);
  RUN(test_transfer_to_worker);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
