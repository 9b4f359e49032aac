/*
 * memory_monitor: watch two isolates' memory the way Node's
 * process.memoryUsage(), v8.getHeapStatistics() and --trace-gc let you
 * watch a Node process.
 *
 * Two workloads run at the same time, each on its own thread with its own
 * isolate, both promoting into the runtime's shared old space:
 *
 *   "cache" (main thread)   a FIFO cache of user sessions: records holding a
 *                           key, a profile string, an array of tags and
 *                           sometimes an ArrayBuffer; lookups that miss
 *                           insert, inserts past capacity evict the oldest.
 *   "logs"  (a pthread)     a log aggregator: a stream of log lines, most of
 *                           which die young, folded into per-endpoint
 *                           statistics records that keep the latest lines.
 *
 * Each thread writes its report into a memory buffer, so the two reports
 * print one after the other once both threads are done.
 *
 * Usage: memory_monitor [-v] [operations]
 *   -v          print every GC trace line, not just the first few
 *   operations  per workload, default 200000
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <isolate.h>

#define MB (1024.0 * 1024.0)
/* Trace lines shown per isolate before the rest are only counted; the
 * lines of the manual collections at the end are always shown. */
#define TRACE_LINES_SHOWN 8

/* ---- fail fast: a demo has no way to recover from a broken call ---- */

static void die(const char *what) {
  fprintf(stderr, "memory_monitor: %s failed: %s (%s)\n", what,
          iso_last_error(), iso_status_name(iso_last_status()));
  exit(1);
}

static iso_handle must(iso_handle h, const char *what) {
  if (h == NULL) die(what);
  return h;
}

static void must_ok(iso_status s, const char *what) {
  if (s != ISO_OK) die(what);
}

/* xorshift64*: each workload has its own fixed seed, so runs repeat. */
static uint64_t next_random(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dULL;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- one job: a thread, an isolate, a workload and its report ---- */

typedef struct job job;
typedef void (*workload_fn)(job *j, iso_isolate *iso);

struct job {
  const char *name;
  iso_runtime *rt;
  workload_fn run;
  size_t operations;
  bool verbose;
  iso_type entry_type; /* "CacheEntry" */
  iso_type stats_type; /* "EndpointStats" */
  /* The report, built on the job's thread and printed by main. */
  FILE *out;
  char *text;
  size_t text_len;
  /* Trace lines seen; set to show the manual collections in full. */
  size_t trace_lines;
  size_t trace_hidden;
  bool show_all_trace;
};

static void on_trace(void *data, const char *line) {
  job *j = data;
  j->trace_lines++;
  if (!j->verbose && !j->show_all_trace && j->trace_lines > TRACE_LINES_SHOWN) {
    j->trace_hidden++;
    return;
  }
  /* Drop the "[pid:address:name]" prefix: the report's heading already
   * names the isolate, and the lines fit a terminal better without it. */
  if (line[0] == '[' && strchr(line, ']') != NULL) {
    line = strchr(line, ']') + 1;
    while (*line == ' ') line++;
  }
  size_t len = strlen(line);
  while (len > 0 && line[len - 1] == '\n') len--;
  /* Right-align the leading "N ms:" so that the lines stay in columns. */
  char *rest;
  long ms = strtol(line, &rest, 10);
  if (rest != line && strncmp(rest, " ms:", 4) == 0) {
    len -= (size_t)(rest - line);
    fprintf(j->out, "  gc| %6ld%.*s\n", ms, (int)len, rest);
  } else {
    fprintf(j->out, "  gc| %.*s\n", (int)len, line);
  }
}

static void flush_hidden_trace(job *j) {
  if (j->trace_hidden == 0) return;
  fprintf(j->out, "  gc| ... %zu more trace lines (run with -v to see all)\n",
          j->trace_hidden);
  j->trace_hidden = 0;
}

/* ---- the report ---- */

static void usage_header(job *j) {
  fprintf(j->out, "  %-30s %9s %10s %10s %10s %13s\n", "memoryUsage()", "rss",
          "heapTotal", "heapUsed", "external", "arrayBuffers");
}

static void usage_row(job *j, iso_isolate *iso, const char *when) {
  iso_memory_usage_t u;
  must_ok(iso_memory_usage(iso, &u), "iso_memory_usage");
  fprintf(j->out, "  %-30s %6.1f MB %7.1f MB %7.1f MB %7.1f MB %10.1f MB\n",
          when, u.rss / MB, u.heap_total / MB, u.heap_used / MB,
          u.external / MB, u.array_buffers / MB);
}

static void print_heap_statistics(job *j, iso_isolate *iso) {
  iso_heap_statistics_t h;
  must_ok(iso_heap_statistics(iso, &h), "iso_heap_statistics");
  fprintf(j->out, "\n  getHeapStatistics()\n");
  fprintf(j->out, "    %-26s %10.2f MB\n", "total_heap_size",
          h.total_heap_size / MB);
  fprintf(j->out, "    %-26s %10.2f MB\n", "total_physical_size",
          h.total_physical_size / MB);
  fprintf(j->out, "    %-26s %10.2f MB\n", "used_heap_size",
          h.used_heap_size / MB);
  fprintf(j->out, "    %-26s %10.2f MB\n", "total_available_size",
          h.total_available_size / MB);
  fprintf(j->out, "    %-26s %10.2f MB\n", "heap_size_limit",
          h.heap_size_limit / MB);
  fprintf(j->out, "    %-26s %10.2f MB\n", "malloced_memory",
          h.malloced_memory / MB);
  fprintf(j->out, "    %-26s %10.2f MB\n", "peak_malloced_memory",
          h.peak_malloced_memory / MB);
  fprintf(j->out, "    %-26s %10.2f MB\n", "external_memory",
          h.external_memory / MB);
  fprintf(j->out, "    %-26s %10zu B\n", "used_global_handles_size",
          h.used_global_handles_size);
  fprintf(j->out, "    %-26s %10zu\n", "does_zap_garbage", h.does_zap_garbage);
}

static void print_space_statistics(job *j, iso_isolate *iso) {
  size_t n = iso_heap_space_count();
  fprintf(j->out, "\n  getHeapSpaceStatistics()\n");
  fprintf(j->out, "    %-20s %11s %11s %11s %11s\n", "space", "size", "used",
          "available", "physical");
  for (size_t i = 0; i < n; i++) {
    iso_heap_space_statistics_t s;
    must_ok(iso_heap_space_statistics(iso, i, &s), "iso_heap_space_statistics");
    fprintf(j->out, "    %-20s %8.2f MB %8.2f MB %8.2f MB %8.2f MB\n",
            s.space_name, s.space_size / MB, s.space_used_size / MB,
            s.space_available_size / MB, s.physical_space_size / MB);
  }
}

static void print_type_statistics(job *j, iso_isolate *iso) {
  iso_type_statistics_t top[64];
  size_t ntypes = 0, shown, total = 0;
  must_ok(iso_heap_object_statistics(iso, top, 64, &ntypes),
          "iso_heap_object_statistics");
  for (size_t i = 0; i < ntypes && i < 64; i++) total += top[i].bytes;
  shown = ntypes < 8 ? ntypes : 8;
  fprintf(j->out, "\n  objects by type (top %zu of %zu types)\n", shown,
          ntypes);
  fprintf(j->out, "    %-20s %10s %11s %7s\n", "type", "count", "bytes",
          "share");
  for (size_t i = 0; i < shown; i++) {
    fprintf(j->out, "    %-20s %10zu %8.2f MB %6.1f%%\n",
            top[i].name ? top[i].name : "?", top[i].count, top[i].bytes / MB,
            total ? 100.0 * (double)top[i].bytes / (double)total : 0.0);
  }
}

static void pause_row(job *j, const char *what, const iso_pause_stats_t *p) {
  fprintf(j->out,
          "    %-9s %6" PRIu64
          " pauses  p50 %7.3f ms  p99 %7.3f ms  "
          "max %7.3f ms  total %8.2f ms\n",
          what, p->count, p->p50_ms, p->p99_ms, p->max_ms, p->total_ms);
}

static void print_gc_statistics(job *j, iso_isolate *iso) {
  iso_gc_statistics_t g;
  must_ok(iso_gc_statistics(iso, &g), "iso_gc_statistics");
  fprintf(j->out, "\n  GC pauses\n");
  pause_row(j, "scavenge", &g.scavenge);
  pause_row(j, "full", &g.full);
  pause_row(j, "all", &g.all);
  fprintf(j->out,
          "    allocated %.1f MB in total, promoted %.1f MB to the "
          "old space\n",
          g.allocated_bytes / MB, g.promoted_bytes / MB);
}

/* ---- workload 1: a FIFO cache of sessions ---- */

enum { ENTRY_KEY, ENTRY_PROFILE, ENTRY_TAGS, ENTRY_BLOB, ENTRY_SLOTS };
typedef struct entry_raw {
  uint64_t hits;
  uint64_t created; /* operation number */
} entry_raw;

static const char *const tag_names[] = {"admin", "beta",  "mobile", "eu",
                                        "us",    "trial", "paying", "api"};

/* Builds one cache entry for key k and returns it in the caller's scope. */
static iso_handle make_entry(job *j, iso_isolate *iso, iso_value k, uint64_t op,
                             uint64_t *rng) {
  char text[96];
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle key = iso_handle_new(iso, k);
  iso_handle rec = must(iso_record_new(iso, j->entry_type), "record_new");
  snprintf(text, sizeof text, "profile of %s: plan=%s, visits=%" PRIu64,
           iso_string_data(iso_get(key)), tag_names[next_random(rng) % 8],
           op % 977);
  iso_handle profile = must(iso_string_from_cstr(iso, text), "string");
  iso_handle tags = must(iso_array_new(iso, 0), "array_new");
  unsigned ntags = 1 + (unsigned)(next_random(rng) % 4);
  for (unsigned t = 0; t < ntags; t++) {
    iso_handle tag =
        must(iso_string_from_cstr(iso, tag_names[next_random(rng) % 8]), "tag");
    must_ok(iso_array_push(iso, iso_get(tags), iso_get(tag)), "array_push");
  }
  iso_record_set(iso, iso_get(rec), ENTRY_KEY, iso_get(key));
  iso_record_set(iso, iso_get(rec), ENTRY_PROFILE, iso_get(profile));
  iso_record_set(iso, iso_get(rec), ENTRY_TAGS, iso_get(tags));
  /* One session in four carries an upload: off-heap bytes that show up as
   * external and arrayBuffers memory. */
  if (next_random(rng) % 4 == 0) {
    size_t len = 512 + (size_t)(next_random(rng) % 3584);
    iso_handle blob = must(iso_array_buffer_new(iso, len), "buffer");
    memset(iso_array_buffer_data(iso_get(blob)), (int)(op & 0xff), len);
    iso_record_set(iso, iso_get(rec), ENTRY_BLOB, iso_get(blob));
  }
  entry_raw raw = {0, op};
  memcpy(iso_record_raw(iso_get(rec)), &raw, sizeof raw);
  return iso_scope_escape(&s, rec);
}

static void cache_workload(job *j, iso_isolate *iso) {
  const size_t capacity = j->operations / 10 + 1;
  const uint64_t keyspace = (uint64_t)capacity * 4;
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  size_t hits = 0, next_evict = 0;
  char key[32];

  iso_handle cache = must(iso_map_new(iso), "map_new");
  /* Keys in insertion order, so the oldest entry is found in O(1). */
  iso_handle order = must(iso_array_new(iso, capacity), "array_new");

  fprintf(j->out,
          "  workload: %zu lookups on a cache of %zu sessions "
          "(keyspace %" PRIu64 ")\n\n",
          j->operations, capacity, keyspace);
  double t0 = now_ms();
  for (size_t op = 0; op < j->operations; op++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    snprintf(key, sizeof key, "user:%06" PRIu64, next_random(&rng) % keyspace);
    iso_handle k = must(iso_string_from_cstr(iso, key), "string");
    iso_handle found =
        must(iso_map_get(iso, iso_get(cache), iso_get(k)), "map_get");
    if (iso_kind_of(iso_get(found)) == ISO_KIND_RECORD) {
      entry_raw raw;
      void *p = iso_record_raw(iso_get(found));
      memcpy(&raw, p, sizeof raw);
      raw.hits++;
      memcpy(p, &raw, sizeof raw);
      hits++;
    } else {
      iso_handle rec = make_entry(j, iso, iso_get(k), op, &rng);
      must_ok(iso_map_set(iso, iso_get(cache), iso_get(k), iso_get(rec)),
              "map_set");
      iso_handle oldest =
          must(iso_array_get(iso, iso_get(order), next_evict), "array_get");
      if (iso_kind_of(iso_get(oldest)) == ISO_KIND_STRING)
        iso_map_delete(iso, iso_get(cache), iso_get(oldest));
      must_ok(iso_array_set(iso, iso_get(order), next_evict, iso_get(k)),
              "array_set");
      next_evict = (next_evict + 1) % capacity;
    }
    must_ok(iso_scope_close(&s), "scope_close");
  }
  double t1 = now_ms();
  flush_hidden_trace(j);
  fprintf(j->out,
          "\n  done in %.0f ms: %zu hits, %zu misses, %zu entries "
          "cached\n\n",
          t1 - t0, hits, j->operations - hits, iso_map_size(iso_get(cache)));

  usage_header(j);
  usage_row(j, iso, "after the workload");
  j->show_all_trace = true;
  must_ok(iso_gc(iso, ISO_GC_MINOR), "iso_gc(minor)");
  usage_row(j, iso, "after iso_gc(ISO_GC_MINOR)");
  must_ok(iso_gc(iso, ISO_GC_FULL), "iso_gc(full)");
  usage_row(j, iso, "after iso_gc(ISO_GC_FULL)");
  print_heap_statistics(j, iso);
  print_space_statistics(j, iso);
  print_type_statistics(j, iso);

  /* Drop the cache: everything it held becomes garbage for the next full
   * collection, and the uploads' off-heap bytes are freed with it. */
  must_ok(iso_map_clear(iso, iso_get(cache)), "map_clear");
  must_ok(iso_array_set_length(iso, iso_get(order), 0), "set_length");
  must_ok(iso_gc(iso, ISO_GC_FULL), "iso_gc(full)");
  fprintf(j->out, "\n");
  usage_header(j);
  usage_row(j, iso, "cache cleared, full GC");
  j->show_all_trace = false;
}

/* ---- workload 2: a log aggregator ---- */

enum { STATS_NAME, STATS_RECENT, STATS_SLOTS };
#define RECENT_LINES 32
typedef struct stats_raw {
  uint64_t count;
  uint64_t errors;
  double total_ms;
  double max_ms;
} stats_raw;

static const char *const methods[] = {"GET",  "GET", "GET",
                                      "POST", "PUT", "DELETE"};
static const char *const resources[] = {"users",  "orders", "items",
                                        "carts",  "search", "login",
                                        "health", "reports"};
/* Typical latency of each resource, in ms; a few requests take far longer. */
static const double resource_ms[] = {12, 35, 8, 20, 90, 45, 1, 250};

static void logs_workload(job *j, iso_isolate *iso) {
  uint64_t rng = 0xd1b54a32d192ed03ULL;
  char line[160], endpoint[48];

  iso_handle by_endpoint = must(iso_map_new(iso), "map_new");
  fprintf(j->out,
          "  workload: %zu log lines folded into per-endpoint "
          "statistics\n\n",
          j->operations);
  double t0 = now_ms();
  for (size_t op = 0; op < j->operations; op++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    const char *method = methods[next_random(&rng) % 6];
    unsigned r = (unsigned)(next_random(&rng) % 8);
    const char *resource = resources[r];
    unsigned status = next_random(&rng) % 50 == 0 ? 500 : 200;
    double u = (double)(next_random(&rng) % 1000) / 1000.0;
    double ms = resource_ms[r] * (0.5 + u);
    if (next_random(&rng) % 200 == 0) ms *= 10 + 20 * u;
    snprintf(endpoint, sizeof endpoint, "%s /api/%s", method, resource);
    snprintf(line, sizeof line,
             "ts=%zu method=%s path=/api/%s/%" PRIu64
             " status=%u "
             "duration=%.1fms",
             op, method, resource, next_random(&rng) % 100000, status, ms);

    /* Most lines die young: only the last RECENT_LINES per endpoint are
     * kept, so the scavenger reclaims the rest without promoting them. */
    iso_handle text = must(iso_string_from_cstr(iso, line), "string");
    iso_handle name = must(iso_string_from_cstr(iso, endpoint), "string");
    iso_handle st =
        must(iso_map_get(iso, iso_get(by_endpoint), iso_get(name)), "map_get");
    if (iso_kind_of(iso_get(st)) != ISO_KIND_RECORD) {
      iso_handle recent = must(iso_array_new(iso, RECENT_LINES), "array");
      st = must(iso_record_new(iso, j->stats_type), "record_new");
      iso_record_set(iso, iso_get(st), STATS_NAME, iso_get(name));
      iso_record_set(iso, iso_get(st), STATS_RECENT, iso_get(recent));
      must_ok(
          iso_map_set(iso, iso_get(by_endpoint), iso_get(name), iso_get(st)),
          "map_set");
    }
    stats_raw raw;
    void *p = iso_record_raw(iso_get(st));
    memcpy(&raw, p, sizeof raw);
    /* An old array receiving a young string: the write barrier records
     * the slot so the next scavenge finds it. */
    must_ok(iso_array_set(iso, iso_record_slot(iso_get(st), STATS_RECENT),
                          raw.count % RECENT_LINES, iso_get(text)),
            "array_set");
    raw.count++;
    raw.errors += status >= 500;
    raw.total_ms += ms;
    if (ms > raw.max_ms) raw.max_ms = ms;
    memcpy(iso_record_raw(iso_get(st)), &raw, sizeof raw);
    must_ok(iso_scope_close(&s), "scope_close");
  }
  double t1 = now_ms();
  flush_hidden_trace(j);
  fprintf(j->out, "\n  done in %.0f ms: %zu endpoints\n", t1 - t0,
          iso_map_size(iso_get(by_endpoint)));

  /* The three busiest endpoints, read back from the records. */
  struct {
    char name[48];
    stats_raw raw;
  } top[3] = {{"", {0, 0, 0, 0}}};
  {
    iso_scope s;
    iso_scope_open(iso, &s);
    size_t cursor = 0;
    iso_handle k, v;
    while (iso_map_next(iso, iso_get(by_endpoint), &cursor, &k, &v)) {
      stats_raw raw;
      memcpy(&raw, iso_record_raw(iso_get(v)), sizeof raw);
      int at = 3;
      while (at > 0 && raw.count > top[at - 1].raw.count) at--;
      if (at == 3) continue;
      memmove(&top[at + 1], &top[at], (size_t)(2 - at) * sizeof top[0]);
      snprintf(top[at].name, sizeof top[at].name, "%s",
               iso_string_data(iso_get(k)));
      top[at].raw = raw;
    }
    must_ok(iso_scope_close(&s), "scope_close");
  }
  for (int i = 0; i < 3 && top[i].raw.count > 0; i++) {
    const stats_raw *r = &top[i].raw;
    fprintf(j->out,
            "    %-20s %6" PRIu64 " requests  %4" PRIu64
            " errors  avg %6.1f ms  max %8.1f ms\n",
            top[i].name, r->count, r->errors, r->total_ms / (double)r->count,
            r->max_ms);
  }
  fprintf(j->out, "\n");

  usage_header(j);
  usage_row(j, iso, "after the workload");
  j->show_all_trace = true;
  must_ok(iso_gc(iso, ISO_GC_MINOR), "iso_gc(minor)");
  usage_row(j, iso, "after iso_gc(ISO_GC_MINOR)");
  must_ok(iso_gc(iso, ISO_GC_FULL), "iso_gc(full)");
  usage_row(j, iso, "after iso_gc(ISO_GC_FULL)");
  j->show_all_trace = false;
  print_heap_statistics(j, iso);
  print_space_statistics(j, iso);
  print_type_statistics(j, iso);
}

/* ---- running a job on a thread ---- */

static void *run_job(void *arg) {
  job *j = arg;
  j->out = open_memstream(&j->text, &j->text_len);
  if (j->out == NULL) {
    perror("open_memstream");
    exit(1);
  }
  iso_isolate_params p = {0};
  p.struct_size = sizeof p;
  p.name = j->name;
  p.flags = ISO_ISOLATE_TRACE_GC;
  /* A small young generation, so that the workload scavenges often enough
   * for the trace to be worth reading. */
  p.max_young_generation_size = 2u << 20;
  p.trace_callback = on_trace;
  p.trace_data = j;
  iso_isolate *iso = iso_isolate_new(j->rt, &p);
  if (iso == NULL) die("iso_isolate_new");

  j->run(j, iso);
  print_gc_statistics(j, iso);
  must_ok(iso_isolate_free(iso), "iso_isolate_free");
  fclose(j->out);
  return NULL;
}

int main(int argc, char **argv) {
  size_t operations = 200000;
  bool verbose = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-v") == 0) {
      verbose = true;
    } else {
      char *end;
      unsigned long long n = strtoull(argv[i], &end, 10);
      if (*end != '\0' || n == 0 || n > 100000000ULL) {
        fprintf(stderr, "usage: %s [-v] [operations]\n", argv[0]);
        return 2;
      }
      operations = (size_t)n;
    }
  }

  iso_runtime *rt = iso_runtime_new(NULL);
  if (rt == NULL) die("iso_runtime_new");

  /* Types belong to the runtime: registered once, the same id in every
   * isolate. */
  iso_type_desc entry = {sizeof entry, "CacheEntry", ENTRY_SLOTS,
                         sizeof(entry_raw)};
  iso_type_desc stats = {sizeof stats, "EndpointStats", STATS_SLOTS,
                         sizeof(stats_raw)};
  iso_type entry_type = iso_type_register(rt, &entry);
  iso_type stats_type = iso_type_register(rt, &stats);
  if (entry_type == 0 || stats_type == 0) die("iso_type_register");

  job jobs[2] = {
      {.name = "cache", .run = cache_workload},
      {.name = "logs", .run = logs_workload},
  };
  for (int i = 0; i < 2; i++) {
    jobs[i].rt = rt;
    jobs[i].operations = operations;
    jobs[i].verbose = verbose;
    jobs[i].entry_type = entry_type;
    jobs[i].stats_type = stats_type;
  }

  printf(
      "libisolate %s memory monitor: 2 isolates on 2 threads, "
      "one shared old space\n",
      iso_version());
  pthread_t logs_thread;
  if (pthread_create(&logs_thread, NULL, run_job, &jobs[1]) != 0) {
    perror("pthread_create");
    return 1;
  }
  run_job(&jobs[0]);
  pthread_join(logs_thread, NULL);

  for (int i = 0; i < 2; i++) {
    printf("\n=== isolate \"%s\" ===\n", jobs[i].name);
    fwrite(jobs[i].text, 1, jobs[i].text_len, stdout);
    free(jobs[i].text);
  }

  printf("\nisolates still alive: %zu\n", iso_runtime_isolate_count(rt));
  must_ok(iso_runtime_free(rt), "iso_runtime_free");
  return 0;
}
