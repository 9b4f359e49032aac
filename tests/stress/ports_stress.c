/*
 * ports_stress: many workers (more than cores) post checksummed payloads
 * to one port at once; the receiver checks every checksum and that each
 * sender's messages arrive exactly once and in order (per-sender sequence
 * numbers), so a lost, duplicated, reordered or corrupted message fails.
 *
 * Each round is a fresh channel and a fresh set of workers, torn down at
 * its end, with settings drawn from the round's seed:
 *   - how many messages each worker posts, and their payloads: strings
 *     and ArrayBuffers of random sizes, some buffers transferred;
 *   - a backpressure limit on the shared port (messages or bytes), under
 *     which workers retry refused posts;
 *   - how the receiver waits: blocking receives, the event loop with a
 *     message handler, or poll() on the port's descriptor;
 *   - sometimes one worker is terminated half-way: what it managed to
 *     post must still arrive, exactly once.
 * The receiver keeps a window of payloads alive across collections and
 * re-checks them after every GC.
 *
 * The seed is printed first; a failure prints the round and the command
 * that replays its settings (thread interleavings differ from run to
 * run). Exit status: 0 passed, 1 failed, 2 bad arguments.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "isolate.h"

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#endif
#ifndef STRESS_TSAN
#define STRESS_TSAN 0
#endif

#define MAX_WORKERS 64
#define KEEP 64        /* payloads the receiver keeps alive across GCs */
#define STALL_MS 60000 /* no message for this long: something hangs */

typedef struct opts {
  uint64_t seed;
  double seconds;
  uint64_t first_round, rounds; /* rounds 0: until the time is spent */
  unsigned workers;
  unsigned messages; /* per worker, at most */
  bool verbose;
} opts;

static opts o;
static uint64_t cur_round;

__attribute__((noreturn, format(printf, 1, 2))) static void fail(
    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ports_stress: FAILED: seed %llu round %llu: ",
          (unsigned long long)o.seed, (unsigned long long)cur_round);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr,
          "\nports_stress: last library error: %s \"%s\"\n"
          "ports_stress: replay with: ports_stress --seed %llu --round %llu "
          "--workers %u --messages %u\n",
          iso_status_name(iso_last_status()), iso_last_error(),
          (unsigned long long)o.seed, (unsigned long long)cur_round, o.workers,
          o.messages);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- randomness and checksums ---- */

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static uint64_t rnd(uint64_t *s) {
  *s = mix(*s);
  return *s;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

/* The checksum of one payload, 62 bits so that it is a small integer. */
static uint64_t checksum(uint64_t sender, uint64_t seq, const void *body,
                         size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv(h, &sender, sizeof sender);
  h = fnv(h, &seq, sizeof seq);
  h = fnv(h, body, n);
  return h & (uint64_t)ISO_SMI_MAX;
}

/* ---- a round ---- */

typedef struct round_cfg {
  unsigned workers;
  unsigned counts[MAX_WORKERS];
  size_t limit_messages, limit_bytes;
  int mode;   /* 0 blocking receive, 1 event loop, 2 poll on the fd */
  int victim; /* worker to terminate half-way, or -1 */
  uint64_t seed;
} round_cfg;

typedef struct sender {
  iso_port *shared; /* the port every worker posts through */
  unsigned id, count;
  uint64_t seed;
  atomic_uint posted;  /* posts that returned ISO_OK */
  atomic_uint retries; /* posts refused for the limit */
  atomic_bool done;
  iso_status last; /* why it stopped early, if it did */
} sender;

typedef struct receiver {
  iso_isolate *iso;
  round_cfg *cfg;
  sender *senders;
  iso_worker **workers;
  unsigned next_seq[MAX_WORKERS];
  uint64_t received, bytes;
  bool victim_terminated;
  iso_global *kept; /* array of KEEP payloads */
  unsigned kept_next;
  double last_progress;
  iso_port *rx;
} receiver;

static round_cfg make_round(uint64_t round) {
  round_cfg c;
  memset(&c, 0, sizeof c);
  c.seed = mix(o.seed ^ mix(round + 1));
  uint64_t s = c.seed;
  c.workers = o.workers;
  for (unsigned i = 0; i < c.workers; i++)
    c.counts[i] = 1 + (unsigned)(rnd(&s) % o.messages);
  switch (rnd(&s) % 4) {
    case 0:
      break; /* no limit */
    case 1:
      c.limit_messages = 1 + rnd(&s) % 32;
      break;
    case 2:
      c.limit_bytes = 256 + rnd(&s) % 65536;
      break;
    default:
      c.limit_messages = 1 + rnd(&s) % 256;
      c.limit_bytes = 1024 + rnd(&s) % 262144;
  }
  c.mode = (int)(round % 3);
  c.victim = rnd(&s) % 3 == 0 ? (int)(rnd(&s) % c.workers) : -1;
  return c;
}

/* One payload: [sender, seq, checksum, body], body a string or an
 * ArrayBuffer of bytes drawn from s; *transfer set when the buffer should
 * move rather than be copied. */
static iso_handle make_payload(iso_isolate *iso, unsigned id, unsigned seq,
                               uint64_t *s, bool *transfer) {
  static __thread char bytes[16384];
  uint64_t r = rnd(s);
  size_t n = r % 16 == 0 ? rnd(s) % sizeof bytes : rnd(s) % 256;
  bool as_buffer = (r >> 8) % 3 == 0;
  *transfer = as_buffer && (r >> 16) % 2 == 0;
  for (size_t i = 0; i < n; i++)
    bytes[i] = as_buffer ? (char)rnd(s) : (char)(' ' + rnd(s) % 95);
  iso_handle body;
  if (as_buffer) {
    body = iso_array_buffer_new(iso, n);
    if (body && n) memcpy(iso_array_buffer_data(iso_get(body)), bytes, n);
  } else {
    body = iso_string_new(iso, bytes, n);
  }
  if (!body) return NULL;
  iso_handle a = iso_array_new(iso, 0);
  if (!a) return NULL;
  uint64_t sum = checksum(id, seq, bytes, n);
  if (iso_array_push(iso, iso_get(a), iso_smi(id)) != ISO_OK ||
      iso_array_push(iso, iso_get(a), iso_smi(seq)) != ISO_OK ||
      iso_array_push(iso, iso_get(a), iso_smi((int64_t)sum)) != ISO_OK ||
      iso_array_push(iso, iso_get(a), iso_get(body)) != ISO_OK)
    return NULL;
  return a;
}

static int sender_main(iso_isolate *iso, iso_port *parent, void *arg) {
  sender *sd = arg;
  (void)parent;
  uint64_t s = sd->seed;
  for (unsigned seq = 0; seq < sd->count; seq++) {
    iso_scope scope;
    iso_scope_open(iso, &scope);
    bool transfer;
    iso_handle p = make_payload(iso, sd->id, seq, &s, &transfer);
    if (!p) {
      sd->last = iso_last_status();
      iso_scope_close(&scope);
      break;
    }
    iso_handle body = iso_array_get(iso, iso_get(p), 3);
    iso_status st;
    for (;;) {
      iso_value tr[1] = {body ? iso_get(body) : ISO_UNDEFINED};
      st = iso_port_post(sd->shared, iso, iso_get(p), tr,
                         transfer && body ? 1 : 0);
      if (st != ISO_ERR_LIMIT) break;
      atomic_fetch_add(&sd->retries, 1);
      /* Backpressure: let the receiver catch up. */
      if (iso_safepoint(iso) != ISO_OK) {
        st = iso_last_status();
        break;
      }
      sched_yield();
    }
    iso_scope_close(&scope);
    if (st != ISO_OK) {
      sd->last = st;
      break;
    }
    atomic_store(&sd->posted, seq + 1);
    if (seq % 16 == 0 && iso_safepoint(iso) != ISO_OK) {
      sd->last = iso_last_status();
      break;
    }
  }
  atomic_store(&sd->done, true);
  return 0;
}

/* Checks payload v (array [sender, seq, checksum, body]); returns the
 * sender. seq_check: also check and advance the sender's sequence. */
static unsigned check_payload(receiver *r, iso_value v, bool seq_check) {
  iso_isolate *iso = r->iso;
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle a = iso_handle_new(iso, v);
  if (iso_kind_of(v) != ISO_KIND_ARRAY || iso_array_length(v) != 4)
    fail("a payload is a %s of length %zu", iso_kind_name(iso_kind_of(v)),
         iso_array_length(v));
  iso_handle hid = iso_array_get(iso, iso_get(a), 0);
  iso_handle hseq = iso_array_get(iso, iso_get(a), 1);
  iso_handle hsum = iso_array_get(iso, iso_get(a), 2);
  iso_handle body = iso_array_get(iso, iso_get(a), 3);
  if (!hid || !hseq || !hsum || !body) fail("cannot read a payload");
  int64_t id = iso_smi_value(iso_get(hid));
  int64_t seq = iso_smi_value(iso_get(hseq));
  uint64_t sum = (uint64_t)iso_smi_value(iso_get(hsum));
  if (id < 0 || id >= (int64_t)r->cfg->workers)
    fail("bad sender %lld", (long long)id);
  const void *data;
  size_t n;
  if (iso_kind_of(iso_get(body)) == ISO_KIND_STRING) {
    data = iso_string_data(iso_get(body));
    n = iso_string_length(iso_get(body));
  } else if (iso_kind_of(iso_get(body)) == ISO_KIND_ARRAY_BUFFER) {
    data = iso_array_buffer_data(iso_get(body));
    n = iso_array_buffer_byte_length(iso_get(body));
    if (iso_array_buffer_is_detached(iso_get(body)))
      fail("sender %lld seq %lld: a received buffer is detached", (long long)id,
           (long long)seq);
  } else {
    fail("sender %lld seq %lld: body is a %s", (long long)id, (long long)seq,
         iso_kind_name(iso_kind_of(iso_get(body))));
  }
  if (n && !data) fail("a body of %zu bytes has no data", n);
  if (checksum((uint64_t)id, (uint64_t)seq, data, n) != sum)
    fail("sender %lld seq %lld: checksum mismatch (%zu bytes)", (long long)id,
         (long long)seq, n);
  if (seq_check) {
    if ((unsigned)seq != r->next_seq[id])
      fail("sender %lld: got seq %lld, expected %u (%s)", (long long)id,
           (long long)seq, r->next_seq[id],
           (unsigned)seq < r->next_seq[id] ? "duplicate or reordered"
                                           : "a message was lost");
    r->next_seq[id]++;
    r->bytes += n;
  }
  iso_scope_close(&s);
  return (unsigned)id;
}

static void recheck_kept(receiver *r) {
  iso_isolate *iso = r->iso;
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle kept = iso_global_get(iso, r->kept);
  for (size_t i = 0; i < iso_array_length(iso_get(kept)); i++) {
    iso_handle v = iso_array_get(iso, iso_get(kept), i);
    if (v && !iso_is_undefined(iso_get(v))) check_payload(r, iso_get(v), false);
  }
  iso_scope_close(&s);
}

/* Everything a received message goes through. */
static void on_payload(receiver *r, iso_value v) {
  iso_isolate *iso = r->iso;
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle h = iso_handle_new(iso, v);
  unsigned id = check_payload(r, iso_get(h), true);
  r->received++;
  r->last_progress = now_s();
  iso_handle kept = iso_global_get(iso, r->kept);
  if (iso_array_set(iso, iso_get(kept), r->kept_next++ % KEEP, iso_get(h)) !=
      ISO_OK)
    fail("cannot keep a payload");
  if (r->received % 97 == 0) {
    if (iso_gc(iso, r->received % 3 == 0 ? ISO_GC_FULL : ISO_GC_MINOR) !=
        ISO_OK)
      fail("gc failed");
    recheck_kept(r);
  }
  /* Terminate the victim half-way through what it has to send. */
  int victim = r->cfg->victim;
  if (victim >= 0 && !r->victim_terminated && (int)id == victim &&
      r->next_seq[id] >= r->cfg->counts[id] / 2) {
    if (iso_worker_terminate(r->workers[victim]) != ISO_OK)
      fail("terminate failed");
    r->victim_terminated = true;
  }
  iso_scope_close(&s);
}

static bool all_done(receiver *r) {
  for (unsigned i = 0; i < r->cfg->workers; i++)
    if (!atomic_load(&r->senders[i].done)) return false;
  return true;
}

static void check_stall(receiver *r) {
  if ((now_s() - r->last_progress) * 1000 > STALL_MS)
    fail("no message for %d s (received %llu)", STALL_MS / 1000,
         (unsigned long long)r->received);
}

/* Receiving, three ways. Each returns once every worker is done and the
 * queue is empty. */

static void receive_blocking(receiver *r) {
  for (;;) {
    iso_scope s;
    iso_scope_open(r->iso, &s);
    iso_handle h = NULL;
    iso_status st = iso_port_receive(r->rx, r->iso, 5, &h);
    if (st == ISO_ERR_TIMEOUT) {
      check_stall(r);
      /* done is set after a worker's last post returned: if the queue is
       * empty after that, everything was received. */
      if (all_done(r)) st = iso_port_receive(r->rx, r->iso, 0, &h);
      if (st == ISO_ERR_TIMEOUT && all_done(r)) {
        iso_scope_close(&s);
        return;
      }
    }
    if (st == ISO_OK) {
      on_payload(r, iso_get(h));
    } else if (st != ISO_ERR_TIMEOUT) {
      fail("receive: %s", iso_status_name(st));
    }
    iso_scope_close(&s);
  }
}

static void loop_handler(iso_isolate *iso, iso_port *port, iso_value message,
                         void *data) {
  (void)iso;
  (void)port;
  on_payload(data, message);
}

static void loop_check(iso_isolate *iso, void *data) {
  receiver *r = data;
  check_stall(r);
  /* Done first, then the queue: a worker's last posts are queued before
   * it says it is done, so an empty queue seen after that is final. (The
   * other order let a worker post and finish between the two reads, and
   * the loop stopped with its messages queued.) */
  bool done = all_done(r);
  iso_port_stats_t st;
  if (iso_port_stats(r->rx, &st) != ISO_OK) fail("stats");
  if (done && st.queued_messages == 0) iso_loop_stop(iso);
}

static void receive_loop(receiver *r) {
  if (iso_loop_on_message(r->iso, r->rx, loop_handler, r) != ISO_OK)
    fail("iso_loop_on_message");
  iso_timer_id t = iso_timer_start(r->iso, 5, 5, loop_check, r);
  if (!t) fail("iso_timer_start");
  if (iso_loop_run(r->iso) != ISO_OK) fail("iso_loop_run");
  if (iso_timer_clear(r->iso, t) != ISO_OK) fail("iso_timer_clear");
  if (iso_loop_on_message(r->iso, r->rx, NULL, NULL) != ISO_OK)
    fail("removing the handler");
}

static void receive_polling(receiver *r) {
  int fd = iso_port_fd(r->rx);
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, 5);
    if (n < 0 && errno != EINTR) fail("poll: %s", strerror(errno));
    if (n == 0) {
      check_stall(r);
      /* Level semantics: not readable means nothing is queued. Done is
       * read first, as in loop_check. */
      bool done = all_done(r);
      iso_port_stats_t st;
      if (iso_port_stats(r->rx, &st) != ISO_OK) fail("stats");
      if (done && st.queued_messages == 0) {
        struct pollfd q = {.fd = fd, .events = POLLIN};
        if (poll(&q, 1, 0) == 0) return;
      }
      continue;
    }
    /* Readable: at least one message is there. */
    unsigned got = 0;
    for (;;) {
      iso_scope s;
      iso_scope_open(r->iso, &s);
      iso_handle h = NULL;
      iso_status st = iso_port_receive(r->rx, r->iso, 0, &h);
      if (st == ISO_OK) on_payload(r, iso_get(h));
      iso_scope_close(&s);
      if (st == ISO_ERR_TIMEOUT) break;
      if (st != ISO_OK) fail("receive: %s", iso_status_name(st));
      got++;
    }
    if (got == 0) {
      /* A poster may be between its enqueue and its write; the level is
       * exact once it is done. Give it a moment, then insist. */
      usleep(1000);
      struct pollfd q = {.fd = fd, .events = POLLIN};
      iso_port_stats_t st;
      if (iso_port_stats(r->rx, &st) != ISO_OK) fail("stats");
      if (poll(&q, 1, 0) == 1 && st.queued_messages == 0 && all_done(r))
        fail("the descriptor is readable with an empty queue");
    }
  }
}

static void run_round(iso_runtime *rt, uint64_t round, uint64_t *messages,
                      uint64_t *bytes) {
  cur_round = round;
  round_cfg cfg = make_round(round);
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  if (!iso) fail("iso_isolate_new");
  iso_port *rx, *tx;
  if (iso_channel_new(&rx, &tx) != ISO_OK) fail("iso_channel_new");
  if (iso_port_set_limit(tx, cfg.limit_messages, cfg.limit_bytes) != ISO_OK)
    fail("iso_port_set_limit");
  static sender senders[MAX_WORKERS];
  static iso_worker *workers[MAX_WORKERS];
  static iso_port *ports[MAX_WORKERS];
  uint64_t total = 0;
  for (unsigned i = 0; i < cfg.workers; i++) {
    sender *sd = &senders[i];
    sd->shared = tx;
    sd->id = i;
    sd->count = cfg.counts[i];
    sd->seed = mix(cfg.seed + i + 1);
    atomic_store(&sd->posted, 0);
    atomic_store(&sd->retries, 0);
    atomic_store(&sd->done, false);
    sd->last = ISO_OK;
    total += sd->count;
  }
  if (o.verbose)
    printf(
        "ports_stress: round %llu: %u workers, %llu messages, limit %zu "
        "messages / %zu bytes, mode %d, victim %d\n",
        (unsigned long long)round, cfg.workers, (unsigned long long)total,
        cfg.limit_messages, cfg.limit_bytes, cfg.mode, cfg.victim);
  receiver r;
  memset(&r, 0, sizeof r);
  r.iso = iso;
  r.cfg = &cfg;
  r.senders = senders;
  r.workers = workers;
  r.rx = rx;
  r.last_progress = now_s();
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle kept = iso_array_new(iso, KEEP);
  if (!kept) fail("iso_array_new");
  r.kept = iso_global_new(iso, iso_get(kept));
  iso_scope_close(&s);
  for (unsigned i = 0; i < cfg.workers; i++) {
    iso_worker_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.name = "sender";
    p.max_young_generation_size = (size_t)1 << 20;
    p.stack_size = (size_t)256 << 10;
    workers[i] = iso_worker_spawn(rt, sender_main, &senders[i], &p, &ports[i]);
    if (!workers[i]) fail("iso_worker_spawn %u", i);
  }
  switch (cfg.mode) {
    case 0:
      receive_blocking(&r);
      break;
    case 1:
      receive_loop(&r);
      break;
    default:
      receive_polling(&r);
  }
  for (unsigned i = 0; i < cfg.workers; i++) {
    int code = 1;
    if (iso_worker_join(workers[i], &code) != ISO_OK) fail("join %u", i);
    iso_port_close(ports[i]);
    bool victim = (int)i == cfg.victim;
    unsigned posted = atomic_load(&senders[i].posted);
    if (victim) {
      if (code != ISO_EXIT_TERMINATED && code != 0)
        fail("the terminated worker %u exited with %d", i, code);
      if (code == ISO_EXIT_TERMINATED &&
          senders[i].last != ISO_ERR_TERMINATED && posted != cfg.counts[i])
        fail("worker %u stopped with %s", i, iso_status_name(senders[i].last));
    } else {
      if (code != 0) fail("worker %u exited with %d", i, code);
      if (posted != cfg.counts[i])
        fail("worker %u posted %u of %u (%s)", i, posted, cfg.counts[i],
             iso_status_name(senders[i].last));
    }
    if (r.next_seq[i] != posted)
      fail("worker %u: %u messages posted, %u received", i, posted,
           r.next_seq[i]);
  }
  /* Nothing is left behind, and the counters agree. */
  iso_port_stats_t st;
  if (iso_port_stats(rx, &st) != ISO_OK) fail("stats");
  if (st.queued_messages != 0 || st.queued_bytes != 0)
    fail("%zu messages (%zu bytes) left in the queue", st.queued_messages,
         st.queued_bytes);
  if (st.received != r.received)
    fail("stats say %llu received, the receiver counted %llu",
         (unsigned long long)st.received, (unsigned long long)r.received);
  iso_port_stats_t sx;
  if (iso_port_stats(tx, &sx) != ISO_OK) fail("stats");
  if (sx.posted != r.received)
    fail("stats say %llu posted, %llu were received",
         (unsigned long long)sx.posted, (unsigned long long)r.received);
  recheck_kept(&r);
  iso_global_free(iso, r.kept);
  iso_port_close(rx);
  iso_port_close(tx);
  if (iso_isolate_free(iso) != ISO_OK) fail("iso_isolate_free");
  if (iso_runtime_isolate_count(rt) != 0) fail("isolates left behind");
  *messages += r.received;
  *bytes += r.bytes;
}

static void usage(void) {
  fprintf(stderr,
          "usage: ports_stress [options]\n"
          "  --seed N        seed (default: from the clock)\n"
          "  --seconds S     time budget (default 3; %s)\n"
          "  --scale K       multiplies the time budget (so does the\n"
          "                  ISO_TEST_SCALE environment variable)\n"
          "  --round R       run only round R (replay)\n"
          "  --rounds N      run N rounds from --round, whatever the time\n"
          "  --workers W     workers per round (default: 3 per core, at "
          "least 8; at most %d)\n"
          "  --messages M    at most M messages per worker and round\n"
          "  --verbose       print each round's settings\n",
          STRESS_TSAN ? "smaller rounds under TSan" : "", MAX_WORKERS);
  exit(2);
}

static uint64_t parse_u64(const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || end == s) usage();
  return v;
}

int main(int argc, char **argv) {
  uint64_t scale = 1;
  bool have_seed = false, one_round = false;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  o.seconds = 3;
  o.workers = (unsigned)(cores > 0 ? 3 * cores : 8);
  if (o.workers < 8) o.workers = 8;
  if (o.workers > MAX_WORKERS) o.workers = MAX_WORKERS;
  /* Smaller rounds under TSan, not fewer threads. */
  o.messages = STRESS_TSAN ? 60 : 400;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--verbose")) {
      o.verbose = true;
      continue;
    }
    if (!v) usage();
    i++;
    if (!strcmp(a, "--seed")) {
      o.seed = parse_u64(v);
      have_seed = true;
    } else if (!strcmp(a, "--seconds")) {
      o.seconds = atof(v);
      if (o.seconds <= 0) usage();
    } else if (!strcmp(a, "--scale")) {
      scale = parse_u64(v);
      if (scale == 0) scale = 1;
    } else if (!strcmp(a, "--round")) {
      o.first_round = parse_u64(v);
      one_round = true;
    } else if (!strcmp(a, "--rounds")) {
      o.rounds = parse_u64(v);
    } else if (!strcmp(a, "--workers")) {
      o.workers = (unsigned)parse_u64(v);
      if (o.workers == 0 || o.workers > MAX_WORKERS) usage();
    } else if (!strcmp(a, "--messages")) {
      o.messages = (unsigned)parse_u64(v);
      if (o.messages == 0) usage();
    } else {
      usage();
    }
  }
  const char *env = getenv("ISO_TEST_SCALE");
  if (env && *env) {
    uint64_t k = parse_u64(env);
    if (k) scale *= k;
  }
  o.seconds *= (double)scale;
  if (one_round && o.rounds == 0) o.rounds = 1;
  if (!have_seed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o.seed = mix((uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^
                 (uint64_t)getpid()) %
             1000000000000ull;
  }
  printf(
      "ports_stress: seed %llu, %u workers (%ld cores), up to %u "
      "messages each per round, %.1f s%s\n",
      (unsigned long long)o.seed, o.workers, cores, o.messages, o.seconds,
      STRESS_TSAN ? " (TSan)" : "");
  fflush(stdout);
  iso_runtime *rt = iso_runtime_new(NULL);
  if (!rt) fail("iso_runtime_new");
  double start = now_s();
  uint64_t messages = 0, bytes = 0, rounds = 0;
  for (uint64_t round = o.first_round;; round++) {
    if (o.rounds ? rounds >= o.rounds
                 : rounds >= 3 && now_s() - start >= o.seconds)
      break;
    run_round(rt, round, &messages, &bytes);
    rounds++;
  }
  if (iso_runtime_free(rt) != ISO_OK) fail("iso_runtime_free");
  double took = now_s() - start;
  printf(
      "ports_stress: passed: %llu rounds, %llu messages, %.1f MB of "
      "payload in %.1f s (%.0f messages/s)\n",
      (unsigned long long)rounds, (unsigned long long)messages,
      (double)bytes / 1e6, took, (double)messages / took);
  return 0;
}
