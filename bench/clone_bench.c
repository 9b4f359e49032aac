/*
 * In-process structured clone: iso_structured_clone() of one payload,
 * again and again, for a fixed time. The twin is node's structuredClone()
 * (node/clone_bench.js).
 *
 * Usage: clone_bench [--payload a|b|e] [--seconds S]   (default a, 5)
 *
 * The payloads are those of message_throughput (payloads.h): a one user
 * record, b an array of 1,000 of them, e a ring of 1,000 records. Each
 * clone is made in a handle scope that closes right after, so clones die
 * young, as the twin's do. The first clone is checked in full, and every
 * clone must be a new object of the payload's kind. The clock is read once
 * per batch of clones (64 for a, 1 otherwise) so reading it costs little
 * next to a clone.
 *
 * Figures: clones_per_s, and mb_per_s = clones_per_s times clone_bytes
 * (the payload's serialized size) in units of 10^6 bytes.
 */
#include "bench.h"

#include "payloads.h"

#define PROG "clone_bench"

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
  fprintf(stderr, "usage: %s [--payload a|b|e] [--seconds S]\n", PROG);
  exit(2);
}

int main(int argc, char **argv) {
  char kind = 'a';
  double seconds = 5.0;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (i + 1 >= argc) usage();
    const char *val = argv[++i];
    if (strcmp(opt, "--payload") == 0) {
      if (strcmp(val, "a") != 0 && strcmp(val, "b") != 0 &&
          strcmp(val, "e") != 0)
        usage();
      kind = val[0];
    } else if (strcmp(opt, "--seconds") == 0) {
      seconds = parse_seconds(val);
    } else {
      usage();
    }
  }

  iso_runtime *rt = iso_runtime_new(NULL);
  if (rt == NULL) bench_die(PROG, "iso_runtime_new");
  payload_types types;
  if (!payload_register(rt, &types)) bench_die(PROG, "iso_type_register");
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  if (iso == NULL) bench_die(PROG, "iso_isolate_new");

  iso_handle payload = payload_new(iso, &types, kind, 0, 0);
  if (payload == NULL) bench_die(PROG, "building the payload");
  iso_message *msg = NULL;
  if (iso_serialize(iso, iso_get(payload), NULL, 0, NULL, &msg) != ISO_OK)
    bench_die(PROG, "iso_serialize");
  size_t bytes = iso_message_size(msg);
  iso_message_free(msg);

  iso_kind want_kind = iso_kind_of(iso_get(payload));
  unsigned batch = kind == 'a' ? 64 : 1;
  uint64_t clones = 0;
  double t0 = bench_now_s(), cpu0 = bench_cpu_s();
  double deadline = t0 + seconds;
  do {
    for (unsigned k = 0; k < batch; k++) {
      iso_scope scope;
      iso_scope_open(iso, &scope);
      iso_handle c = iso_structured_clone(iso, iso_get(payload), NULL, 0);
      if (ISO_UNLIKELY(c == NULL)) bench_die(PROG, "iso_structured_clone");
      iso_value v = iso_get(c);
      if (ISO_UNLIKELY(v == iso_get(payload) || iso_kind_of(v) != want_kind)) {
        fprintf(stderr, "%s: clone %" PRIu64 " is not a new %s\n", PROG,
                clones, iso_kind_name(want_kind));
        return 1;
      }
      if (ISO_UNLIKELY(clones == 0) &&
          !payload_check(iso, &types, kind, v, 0, 0)) {
        fprintf(stderr, "%s: the clone differs from the payload\n", PROG);
        return 1;
      }
      clones++;
      iso_scope_close(&scope);
    }
  } while (bench_now_s() < deadline);
  double wall = bench_now_s() - t0, cpu = bench_cpu_s() - cpu0;

  double cps = (double)clones / wall;
  printf("payload %c: %" PRIu64 " clones in %.3f s\n", kind, clones, wall);
  bench_json j = {0};
  bench_json_str(&j, "benchmark", "clone_bench");
  bench_json_str(&j, "impl", "c");
  char k[2] = {kind, '\0'};
  bench_json_str(&j, "payload", k);
  bench_json_u64(&j, "clones", clones);
  bench_json_u64(&j, "clone_bytes", bytes);
  bench_json_num(&j, "wall_s", wall, 6);
  bench_json_num(&j, "cpu_s", cpu, 3);
  bench_json_num(&j, "clones_per_s", cps, 0);
  bench_json_num(&j, "mb_per_s", cps * (double)bytes / 1e6, 2);
  bench_json_num(&j, "cpu_us_per_clone", cpu * 1e6 / (double)clones, 3);
  bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
  bench_json_gc(&j, iso);
  bench_json_end(&j);

  iso_isolate_free(iso);
  iso_runtime_free(rt);
  return 0;
}
