/*
 * Message throughput, one way: the main thread posts a payload to one
 * worker as fast as a bounded window allows, for a fixed time.
 *
 * Usage: message_throughput [--payload a|b|c|d|e] [--seconds S]
 *                           [--window N] [--ack-every N] [--buffer-kb K]
 *                           [--rss-cap-mb M]
 *   defaults: payload a, 5 seconds, window 64, ack every 16, 1024 KiB,
 *   4096 MB (c and d stop early, and say so, past that peak RSS)
 *
 * Payloads are described in payloads.h (a: one user record, b: 1,000 of
 * them, c: a new buffer per message, copied, d: the same, transferred, e:
 * a ring of 1,000 records). The worker receives (deserializes) every
 * message, checks the first one's whole content and every buffer's
 * sequence number, and posts the number received so far after every
 * ack-every messages; the sender never has more than window messages
 * unacknowledged, so the queue stays bounded and both threads run at
 * once. When the time is up (the clock is read every 16 posts) the sender
 * posts null, and the worker answers with [count, ok]. The clock runs from
 * the first post to that answer.
 *
 * Figures: messages_per_s, and mb_per_s = messages_per_s times
 * message_bytes (the serialized size, iso_message_size, of one message)
 * in units of 10^6 bytes; cpu_us_per_message is the CPU time of both
 * threads per message, which other work on the machine changes much less
 * than it changes the rate. node/message_throughput.js is the twin.
 */
#include "bench.h"

#include "payloads.h"

#define PROG "message_throughput"
#define CLOCK_EVERY 16
/* A receive that waits this long means the other side is stuck. */
#define STUCK_MS 30000

typedef struct mt_config {
  payload_types types;
  char kind;
  size_t buffer_size;
  uint64_t ack_every;
} mt_config;

/* ---- the worker ---- */

static int worker_main(iso_isolate *iso, iso_port *parent, void *arg) {
  const mt_config *cfg = arg;
  uint64_t count = 0;
  bool ok = true;
  if (iso_port_post(parent, iso, iso_smi(0), NULL, 0) != ISO_OK) {
    fprintf(stderr, "%s: worker: ready: %s\n", PROG, iso_last_error());
    return 1;
  }
  for (;;) {
    iso_scope scope;
    iso_scope_open(iso, &scope);
    iso_handle h = NULL;
    iso_status st = iso_port_receive(parent, iso, STUCK_MS, &h);
    if (st != ISO_OK) {
      fprintf(stderr, "%s: worker: receive: %s (%s)\n", PROG,
              iso_status_name(st), iso_last_error());
      iso_scope_close(&scope);
      return 1;
    }
    iso_value v = iso_get(h);
    if (v == ISO_NULL) {
      iso_handle reply = iso_array_new(iso, 0);
      st = reply == NULL ? iso_last_status()
                         : iso_array_push(iso, iso_get(reply),
                                          iso_smi((int64_t)count));
      if (st == ISO_OK)
        st = iso_array_push(iso, iso_get(reply), iso_bool(ok));
      if (st == ISO_OK)
        st = iso_port_post(parent, iso, iso_get(reply), NULL, 0);
      iso_scope_close(&scope);
      if (st != ISO_OK) {
        fprintf(stderr, "%s: worker: final answer: %s\n", PROG,
                iso_last_error());
        return 1;
      }
      return ok ? 0 : 1;
    }
    uint32_t seq = (uint32_t)count;
    bool good = count == 0 ? payload_check(iso, &cfg->types, cfg->kind, v,
                                           cfg->buffer_size, seq)
                           : payload_check_cheap(cfg->kind, v,
                                                 cfg->buffer_size, seq);
    if (!good && ok) {
      fprintf(stderr, "%s: worker: message %" PRIu64 " has the wrong "
              "content\n", PROG, count);
      ok = false;
    }
    count++;
    if (count % cfg->ack_every == 0) {
      st = iso_port_post(parent, iso, iso_smi((int64_t)count), NULL, 0);
      if (st != ISO_OK) {
        fprintf(stderr, "%s: worker: ack: %s\n", PROG, iso_last_error());
        iso_scope_close(&scope);
        return 1;
      }
    }
    iso_scope_close(&scope);
  }
}

/* ---- the sender ---- */

typedef struct reply {
  bool final;
  uint64_t count; /* messages the worker has received */
  bool ok;        /* final only: every check passed */
} reply;

static reply receive_reply(iso_isolate *iso, iso_port *port) {
  reply r = {0};
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_handle h = NULL;
  if (iso_port_receive(port, iso, STUCK_MS, &h) != ISO_OK)
    bench_die(PROG, "iso_port_receive (from the worker)");
  iso_value v = iso_get(h);
  if (iso_is_smi(v)) {
    r.count = (uint64_t)iso_smi_value(v);
  } else if (iso_kind_of(v) == ISO_KIND_ARRAY && iso_array_length(v) == 2) {
    iso_handle n = iso_array_get(iso, v, 0);
    iso_handle ok = iso_array_get(iso, v, 1);
    if (n == NULL || ok == NULL || !iso_is_smi(iso_get(n)))
      bench_die(PROG, "reading the worker's final answer");
    r.final = true;
    r.count = (uint64_t)iso_smi_value(iso_get(n));
    r.ok = iso_get(ok) == ISO_TRUE;
  } else {
    fprintf(stderr, "%s: unexpected %s from the worker\n", PROG,
            iso_kind_name(iso_kind_of(v)));
    exit(1);
  }
  iso_scope_close(&scope);
  return r;
}

/* Serialized size of one message of this kind (for d: without the bytes
 * that move with the transfer). */
static size_t message_bytes(iso_isolate *iso, const mt_config *cfg,
                            iso_value payload) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_handle sample = NULL;
  if (cfg->kind == 'c' || cfg->kind == 'd') {
    sample = payload_new(iso, &cfg->types, cfg->kind, cfg->buffer_size, 0);
    if (sample == NULL) bench_die(PROG, "building a sample buffer");
    payload = iso_get(sample);
  }
  iso_message *msg = NULL;
  iso_value transfer[1] = {payload};
  size_t ntransfer = cfg->kind == 'd' ? 1 : 0;
  if (iso_serialize(iso, payload, transfer, ntransfer, NULL, &msg) != ISO_OK)
    bench_die(PROG, "iso_serialize");
  size_t n = iso_message_size(msg);
  iso_message_free(msg);
  iso_scope_close(&scope);
  return n;
}

static double parse_seconds(const char *arg) {
  char *end = NULL;
  errno = 0;
  double s = strtod(arg, &end);
  if (errno != 0 || end == arg || *end != '\0' || !(s > 0.0 && s <= 3600.0)) {
    fprintf(stderr, "%s: bad seconds '%s' (0..3600)\n", PROG, arg);
    exit(2);
  }
  return s;
}

static void usage(void) {
  fprintf(stderr,
          "usage: %s [--payload a|b|c|d|e] [--seconds S] [--window N]\n"
          "       [--ack-every N] [--buffer-kb K] [--rss-cap-mb M]\n",
          PROG);
  exit(2);
}

int main(int argc, char **argv) {
  mt_config cfg = {.kind = 'a',
                   .buffer_size = PAYLOAD_BUFFER_DEFAULT,
                   .ack_every = 16};
  double seconds = 5.0;
  uint64_t window = 64;
  /* Buffers that died are freed only when their isolate collects, and a
   * collection comes from heap allocation, which c and d hardly do; if the
   * library lets dead stores pile up, the run ends early at this resident
   * size (saying so) rather than exhausting the machine. */
  uint64_t rss_cap_mb = 4096;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (i + 1 >= argc) usage();
    const char *val = argv[++i];
    if (strcmp(opt, "--payload") == 0) {
      if (strlen(val) != 1 || !payload_kind_valid(val[0])) usage();
      cfg.kind = val[0];
    } else if (strcmp(opt, "--seconds") == 0) {
      seconds = parse_seconds(val);
    } else if (strcmp(opt, "--window") == 0) {
      window = bench_parse_u64(PROG, "window", val, 1, 1u << 20);
    } else if (strcmp(opt, "--ack-every") == 0) {
      cfg.ack_every = bench_parse_u64(PROG, "ack-every", val, 1, 1u << 20);
    } else if (strcmp(opt, "--rss-cap-mb") == 0) {
      rss_cap_mb = bench_parse_u64(PROG, "rss-cap-mb", val, 64, 1u << 24);
    } else if (strcmp(opt, "--buffer-kb") == 0) {
      cfg.buffer_size =
          (size_t)bench_parse_u64(PROG, "buffer-kb", val, 1, 1u << 20) * 1024;
    } else {
      usage();
    }
  }
  if (cfg.ack_every > window) {
    /* The sender would wait for an ack the worker never sends. */
    fprintf(stderr, "%s: --ack-every must not exceed --window\n", PROG);
    return 2;
  }

  iso_runtime *rt = iso_runtime_new(NULL);
  if (rt == NULL) bench_die(PROG, "iso_runtime_new");
  if (!payload_register(rt, &cfg.types)) bench_die(PROG, "iso_type_register");
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");

  iso_port *port = NULL;
  iso_worker_params wp = {.struct_size = sizeof wp, .name = "receiver"};
  iso_worker *worker = iso_worker_spawn(rt, worker_main, &cfg, &wp, &port);
  if (worker == NULL) bench_die(PROG, "iso_worker_spawn");
  reply ready = receive_reply(iso, port);
  if (ready.final || ready.count != 0) {
    fprintf(stderr, "%s: the worker did not start cleanly\n", PROG);
    return 1;
  }

  /* a, b and e are built once and posted again and again (each post
   * serializes them anew); c and d need a new buffer per message. */
  bool per_message = cfg.kind == 'c' || cfg.kind == 'd';
  iso_handle payload = NULL;
  if (!per_message) {
    payload = payload_new(iso, &cfg.types, cfg.kind, 0, 0);
    if (payload == NULL) bench_die(PROG, "building the payload");
    if (!payload_check(iso, &cfg.types, cfg.kind, iso_get(payload), 0, 0)) {
      fprintf(stderr, "%s: the payload fails its own check\n", PROG);
      return 1;
    }
  }
  size_t bytes = message_bytes(iso, &cfg, payload ? iso_get(payload) : 0);

  uint64_t sent = 0, acked = 0;
  double t0 = bench_now_s(), cpu0 = bench_cpu_s();
  double deadline = t0 + seconds;
  /* The clock is read once per CLOCK_EVERY posts: reading it costs a
   * noticeable part of posting a small message. */
  bool capped = false;
  while (sent % CLOCK_EVERY != 0 || bench_now_s() < deadline) {
    if (per_message && sent % CLOCK_EVERY == 0 &&
        bench_peak_rss_mb() > (double)rss_cap_mb) {
      capped = true; /* see the note at rss_cap_mb */
      break;
    }
    while (sent - acked >= window) {
      reply r = receive_reply(iso, port);
      if (r.final) {
        fprintf(stderr, "%s: the worker ended early\n", PROG);
        return 1;
      }
      if (r.count > acked) acked = r.count;
    }
    iso_status st;
    if (per_message) {
      iso_scope scope;
      iso_scope_open(iso, &scope);
      iso_handle ab = payload_new(iso, &cfg.types, cfg.kind, cfg.buffer_size,
                                  (uint32_t)sent);
      if (ab == NULL) bench_die(PROG, "iso_array_buffer_new");
      iso_value transfer[1] = {iso_get(ab)};
      st = iso_port_post(port, iso, iso_get(ab), transfer,
                         cfg.kind == 'd' ? 1 : 0);
      iso_scope_close(&scope);
    } else {
      st = iso_port_post(port, iso, iso_get(payload), NULL, 0);
    }
    if (st != ISO_OK) bench_die(PROG, "iso_port_post");
    sent++;
  }
  if (iso_port_post(port, iso, ISO_NULL, NULL, 0) != ISO_OK)
    bench_die(PROG, "iso_port_post (end)");
  reply last;
  do last = receive_reply(iso, port);
  while (!last.final);
  double wall = bench_now_s() - t0, cpu = bench_cpu_s() - cpu0;

  int code = 0;
  if (iso_worker_join(worker, &code) != ISO_OK) bench_die(PROG, "join");
  if (!last.ok || code != 0) {
    fprintf(stderr, "%s: the worker found a wrong message (exit %d)\n", PROG,
            code);
    return 1;
  }
  if (last.count != sent) {
    fprintf(stderr, "%s: sent %" PRIu64 " messages, the worker got %" PRIu64
            "\n", PROG, sent, last.count);
    return 1;
  }
  iso_port_close(port);

  if (capped)
    fprintf(stderr, "%s: stopped after %.2f s of %.2f: peak RSS passed %"
            PRIu64 " MB (dead buffers are not being freed)\n", PROG, wall,
            seconds, rss_cap_mb);
  double mps = (double)sent / wall;
  printf("payload %c: %" PRIu64 " messages of %zu bytes in %.3f s\n",
         cfg.kind, sent, bytes, wall);
  bench_json j = {0};
  bench_json_str(&j, "benchmark", "message_throughput");
  bench_json_str(&j, "impl", "c");
  char kind[2] = {cfg.kind, '\0'};
  bench_json_str(&j, "payload", kind);
  bench_json_u64(&j, "window", window);
  bench_json_u64(&j, "ack_every", cfg.ack_every);
  if (per_message) bench_json_u64(&j, "buffer_kb", cfg.buffer_size / 1024);
  bench_json_u64(&j, "messages", sent);
  bench_json_u64(&j, "message_bytes", bytes);
  bench_json_num(&j, "wall_s", wall, 6);
  bench_json_num(&j, "cpu_s", cpu, 3);
  bench_json_num(&j, "messages_per_s", mps, 0);
  bench_json_num(&j, "mb_per_s", mps * (double)bytes / 1e6, 2);
  bench_json_num(&j, "cpu_us_per_message", cpu * 1e6 / (double)sent, 3);
  bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
  if (per_message) bench_json_u64(&j, "rss_cap_hit", capped);
  bench_json_end(&j);

  iso_isolate_free(iso);
  iso_runtime_free(rt);
  return 0;
}
