/*
 * The collector seen from the API: a graph of every kind survives minor
 * and full collections intact; GC callbacks and trace lines; GC stress
 * mode; the heap verifier, healthy and facing a broken barrier;
 * pretenuring switching on and off with the survival of new objects.
 */
#include "helpers.h"

static iso_runtime *rt;
static iso_type blob; /* slots: buffer, number; raw: 32 bytes */
static iso_type cell; /* slot: value */

/* ---- a graph with every kind of value ---- */

enum { ROWS = 60, BIG = 300 * 1024, ABLEN = 777 };
static char big_text[BIG];

static void row_text(char *buf, size_t n, int i, int j) {
  snprintf(buf, n, "row %d col %d", i, j);
}

/* root = [ "root", rows, map, blob, big string, -0.0 ]
 *   rows[i] = [ "row i col 0", ..., "row i col i%5" ]
 *   map: "k<i>" -> cell{i}; i (number) -> "n<i>"; cell -> rows; 2.5 -> 1
 *   blob: slots [ArrayBuffer of ABLEN bytes, 6.25]; raw 0..31 */
static iso_handle build_graph(iso_isolate *iso) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle root = iso_array_new(iso, 0);
  iso_handle s = iso_string_from_cstr(iso, "root");
  CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(s)));

  iso_handle rows = iso_array_new(iso, 0);
  for (int i = 0; i < ROWS; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle row = iso_array_new(iso, 0);
    for (int j = 0; j <= i % 5; j++) {
      char text[32];
      row_text(text, sizeof text, i, j);
      iso_handle t = iso_string_from_cstr(iso, text);
      CHECK_OK(iso_array_push(iso, iso_get(row), iso_get(t)));
    }
    CHECK_OK(iso_array_push(iso, iso_get(rows), iso_get(row)));
    CHECK_OK(iso_scope_close(&in));
  }
  CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(rows)));

  iso_handle m = iso_map_new(iso);
  iso_handle idkey = iso_record_new(iso, cell);
  CHECK_OK(iso_record_set(iso, iso_get(idkey), 0, iso_smi(-1)));
  for (int i = 0; i < ROWS; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    char text[16];
    snprintf(text, sizeof text, "k%d", i);
    iso_handle k = iso_string_from_cstr(iso, text);
    iso_handle c = iso_record_new(iso, cell);
    CHECK_OK(iso_record_set(iso, iso_get(c), 0, iso_smi(i)));
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(k), iso_get(c)));
    snprintf(text, sizeof text, "n%d", i);
    iso_handle v = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(i), iso_get(v)));
    CHECK_OK(iso_scope_close(&in));
  }
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(idkey), iso_get(rows)));
  iso_handle d = iso_number_new(iso, 2.5);
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(d), iso_smi(1)));
  CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(m)));

  iso_handle b = iso_record_new(iso, blob);
  iso_handle ab = iso_array_buffer_new(iso, ABLEN);
  unsigned char *bytes = iso_array_buffer_data(iso_get(ab));
  for (int i = 0; i < ABLEN; i++) bytes[i] = (unsigned char)(i * 13 + 1);
  iso_handle num = iso_number_new(iso, 6.25);
  CHECK_OK(iso_record_set(iso, iso_get(b), 0, iso_get(ab)));
  CHECK_OK(iso_record_set(iso, iso_get(b), 1, iso_get(num)));
  unsigned char *raw = iso_record_raw(iso_get(b));
  for (int i = 0; i < 32; i++) raw[i] = (unsigned char)(255 - i);
  CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(b)));

  iso_handle bs = iso_string_new(iso, big_text, BIG);
  CHECK(bs != NULL);
  CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(bs)));
  iso_handle nz = iso_number_new(iso, -0.0);
  CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(nz)));
  /* The identity key is reachable only as a key of the map. */
  return iso_scope_escape(&sc, root);
}

static iso_value at(iso_isolate *iso, iso_value a, size_t i) {
  iso_handle h = iso_array_get(iso, a, i);
  CHECK(h != NULL);
  return iso_get(h);
}

static void check_graph(iso_isolate *iso, iso_handle root) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_value r = iso_get(root);
  CHECK_UEQ(iso_array_length(r), 6);
  CHECK_STRING(at(iso, r, 0), "root");

  iso_handle rows = iso_handle_new(iso, at(iso, iso_get(root), 1));
  CHECK_UEQ(iso_array_length(iso_get(rows)), ROWS);
  for (int i = 0; i < ROWS; i++) {
    iso_value row = at(iso, iso_get(rows), (size_t)i);
    CHECK_UEQ(iso_array_length(row), (size_t)(i % 5 + 1));
    for (int j = 0; j <= i % 5; j++) {
      char text[32];
      row_text(text, sizeof text, i, j);
      CHECK_STRING(at(iso, row, (size_t)j), text);
    }
  }

  iso_handle m = iso_handle_new(iso, at(iso, iso_get(root), 2));
  CHECK_UEQ(iso_map_size(iso_get(m)), 2 * ROWS + 2);
  size_t cur = 0, n = 0;
  iso_handle k, v;
  iso_handle idkey = NULL;
  while (iso_map_next(iso, iso_get(m), &cur, &k, &v)) {
    /* Insertion order: k0, 0, k1, 1, ..., then the cell, then 2.5. */
    char text[16];
    if (n < 2 * ROWS) {
      int i = (int)(n / 2);
      if (n % 2 == 0) {
        snprintf(text, sizeof text, "k%d", i);
        CHECK_STRING(iso_get(k), text);
        CHECK_EQ(iso_type_of(iso_get(v)), cell);
        CHECK_EQ(iso_smi_value(iso_record_slot(iso_get(v), 0)), i);
      } else {
        CHECK_EQ(iso_smi_value(iso_get(k)), i);
        snprintf(text, sizeof text, "n%d", i);
        CHECK_STRING(iso_get(v), text);
      }
    } else if (n == 2 * ROWS) {
      CHECK_EQ(iso_type_of(iso_get(k)), cell);
      CHECK_EQ(iso_smi_value(iso_record_slot(iso_get(k), 0)), -1);
      CHECK(iso_get(v) == iso_get(rows));
      idkey = k;
    } else {
      CHECK(iso_number_value(iso_get(k)) == 2.5);
      CHECK_EQ(iso_smi_value(iso_get(v)), 1);
    }
    n++;
  }
  CHECK_UEQ(n, 2 * ROWS + 2);
  CHECK(idkey != NULL);
  /* Lookups by content, value and identity. */
  iso_handle key = iso_string_from_cstr(iso, "k17");
  iso_handle got = iso_map_get(iso, iso_get(m), iso_get(key));
  CHECK_EQ(iso_smi_value(iso_record_slot(iso_get(got), 0)), 17);
  CHECK_STRING(iso_get(iso_map_get(iso, iso_get(m), iso_smi(33))), "n33");
  CHECK(iso_get(iso_map_get(iso, iso_get(m), iso_get(idkey))) == iso_get(rows));
  iso_handle d = iso_number_new(iso, 2.5);
  CHECK_EQ(iso_smi_value(iso_get(iso_map_get(iso, iso_get(m), iso_get(d)))), 1);

  iso_value b = at(iso, iso_get(root), 3);
  CHECK_EQ(iso_type_of(b), blob);
  const unsigned char *raw = iso_record_raw(b);
  for (int i = 0; i < 32; i++) CHECK_EQ(raw[i], 255 - i);
  CHECK(iso_number_value(iso_record_slot(b, 1)) == 6.25);
  iso_value ab = iso_record_slot(b, 0);
  CHECK_EQ(iso_kind_of(ab), ISO_KIND_ARRAY_BUFFER);
  CHECK_UEQ(iso_array_buffer_byte_length(ab), ABLEN);
  const unsigned char *bytes = iso_array_buffer_data(ab);
  for (int i = 0; i < ABLEN; i++)
    CHECK_EQ(bytes[i], (unsigned char)(i * 13 + 1));

  CHECK(unit_str_is(at(iso, iso_get(root), 4), big_text, BIG));
  iso_value nz = at(iso, iso_get(root), 5);
  CHECK_EQ(iso_kind_of(nz), ISO_KIND_DOUBLE);
  double z = iso_number_value(nz);
  CHECK(z == 0.0 && 1.0 / z < 0);
  CHECK_OK(iso_scope_close(&sc));
}

static void churn(iso_isolate *iso, int n) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  for (int i = 0; i < n; i++) {
    iso_handle a = iso_array_new(iso, (size_t)(i % 7));
    iso_handle s = iso_string_from_cstr(iso, "garbage");
    CHECK(a && s);
    CHECK_OK(iso_array_set(iso, iso_get(a), 0, iso_get(s)));
  }
  CHECK_OK(iso_scope_close(&sc));
}

static void test_graph_survives(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_handle root = build_graph(iso);
  check_graph(iso, root);
  static const iso_gc_kind seq[] = {ISO_GC_MINOR, ISO_GC_MINOR, ISO_GC_FULL,
                                    ISO_GC_MINOR, ISO_GC_FULL,  ISO_GC_FULL};
  for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
    churn(iso, 3000);
    CHECK_OK(iso_gc(iso, seq[i]));
    check_graph(iso, root);
    CHECK_OK(iso_heap_verify(iso));
  }
  CHECK_OK(iso_isolate_free(iso));
}

static void test_gc_arguments(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_FAILS_ST(iso_gc(iso, (iso_gc_kind)0), ISO_ERR_ARGUMENT, "kind");
  CHECK_FAILS_ST(iso_gc(iso, (iso_gc_kind)3), ISO_ERR_ARGUMENT, "kind");
  CHECK_FAILS_ST(iso_gc(NULL, ISO_GC_FULL), ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- GC callbacks ---- */

typedef struct cb_log {
  iso_isolate *iso;
  int count[3][2]; /* [kind][phase] */
  int open_kind;   /* kind of the prologue not yet closed, 0 if none */
  int errors;
} cb_log;

static void on_gc(iso_isolate *iso, iso_gc_phase phase, iso_gc_kind kind,
                  void *data) {
  cb_log *log = data;
  if (iso != log->iso || (kind != ISO_GC_MINOR && kind != ISO_GC_FULL) ||
      (phase != ISO_GC_PROLOGUE && phase != ISO_GC_EPILOGUE)) {
    log->errors++;
    return;
  }
  if (phase == ISO_GC_PROLOGUE) {
    if (log->open_kind != 0) log->errors++;
    log->open_kind = kind;
  } else {
    if (log->open_kind != (int)kind) log->errors++;
    log->open_kind = 0;
  }
  log->count[kind][phase]++;
}

static void on_gc_other(iso_isolate *iso, iso_gc_phase phase, iso_gc_kind kind,
                        void *data) {
  (void)iso, (void)phase, (void)kind;
  ++*(int *)data;
}

static void test_gc_callbacks(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  cb_log log;
  memset(&log, 0, sizeof log);
  log.iso = iso;
  CHECK_OK(iso_isolate_add_gc_callback(iso, on_gc, &log));
  iso_handle keep = iso_string_from_cstr(iso, "kept across callbacks");
  for (int i = 0; i < 5; i++) CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  for (int i = 0; i < 3; i++) CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(log.errors, 0);
  CHECK_EQ(log.open_kind, 0);
  iso_gc_statistics_t st = unit_gc_stats(iso);
  /* Callbacks and statistics agree, and each call made one collection. */
  CHECK_EQ(log.count[ISO_GC_MINOR][ISO_GC_PROLOGUE],
           log.count[ISO_GC_MINOR][ISO_GC_EPILOGUE]);
  CHECK_EQ(log.count[ISO_GC_FULL][ISO_GC_PROLOGUE],
           log.count[ISO_GC_FULL][ISO_GC_EPILOGUE]);
  CHECK_UEQ(st.scavenge.count, log.count[ISO_GC_MINOR][ISO_GC_PROLOGUE]);
  CHECK_UEQ(st.full.count, log.count[ISO_GC_FULL][ISO_GC_PROLOGUE]);
  CHECK_GE(log.count[ISO_GC_MINOR][ISO_GC_PROLOGUE], 5);
  CHECK_GE(log.count[ISO_GC_FULL][ISO_GC_PROLOGUE], 3);
#if !UNIT_GC_STRESS
  CHECK_EQ(log.count[ISO_GC_MINOR][ISO_GC_PROLOGUE], 5);
  CHECK_EQ(log.count[ISO_GC_FULL][ISO_GC_PROLOGUE], 3);
#endif
  CHECK_STRING(iso_get(keep), "kept across callbacks");

  /* A second registration (another function, or the same with other
   * data) is called too; removal is by (function, data). */
  int other = 0, other2 = 0;
  cb_log log2;
  memset(&log2, 0, sizeof log2);
  log2.iso = iso;
  CHECK_OK(iso_isolate_add_gc_callback(iso, on_gc_other, &other));
  CHECK_OK(iso_isolate_add_gc_callback(iso, on_gc_other, &other2));
  CHECK_OK(iso_isolate_add_gc_callback(iso, on_gc, &log2));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_GE(other, 2);
  CHECK_EQ(other, other2);
  CHECK_EQ(log2.count[ISO_GC_FULL][ISO_GC_EPILOGUE], 1);
  CHECK_OK(iso_isolate_remove_gc_callback(iso, on_gc_other, &other));
  CHECK_OK(iso_isolate_remove_gc_callback(iso, on_gc, &log));
  int before_full = log.count[ISO_GC_FULL][ISO_GC_PROLOGUE];
  int other_before = other, other2_before = other2;
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(log.count[ISO_GC_FULL][ISO_GC_PROLOGUE], before_full);
  CHECK_EQ(other, other_before);
  CHECK_GT(other2, other2_before);
  CHECK_EQ(log2.count[ISO_GC_FULL][ISO_GC_EPILOGUE], 2);
  CHECK_EQ(log2.errors, 0);

  /* Removing what is not registered fails; so does a NULL callback. */
  iso_clear_error();
  CHECK(iso_isolate_remove_gc_callback(iso, on_gc, &log) != ISO_OK);
  CHECK(iso_last_error()[0] != '\0');
  iso_clear_error();
  CHECK(iso_isolate_add_gc_callback(iso, NULL, NULL) != ISO_OK);
  CHECK_EQ(iso_last_status(), ISO_ERR_ARGUMENT);

  /* At most 8. Two are registered now (other2, log2). */
  int extra[8] = {0};
  for (int i = 0; i < 6; i++)
    CHECK_OK(iso_isolate_add_gc_callback(iso, on_gc_other, &extra[i]));
  CHECK_FAILS_ST(iso_isolate_add_gc_callback(iso, on_gc_other, &extra[6]),
                 ISO_ERR_LIMIT, "8|callback|limit|many");
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  for (int i = 0; i < 6; i++) CHECK_GE(extra[i], 2);
  CHECK_EQ(extra[6], 0);
  /* Freeing a slot makes room again. */
  CHECK_OK(iso_isolate_remove_gc_callback(iso, on_gc_other, &extra[0]));
  CHECK_OK(iso_isolate_add_gc_callback(iso, on_gc_other, &extra[7]));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_GE(extra[7], 2);
  CHECK_FAILS_ST(iso_isolate_add_gc_callback(NULL, on_gc, &log),
                 ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- trace lines ---- */

typedef struct trace_log {
  int lines;
  int scavenge, mark_sweep;
  int bad_shape;
  int without_name;
  double last_full_after; /* C of the last Mark-Sweep line, in MB */
  char first_bad[256];
} trace_log;

/* Parses "<kind> A (B) -> C (D) MB, x / y ms" somewhere in line. */
static int trace_shape(const char *line, const char *kind, double *after) {
  const char *p = strstr(line, kind);
  if (!p) return 0;
  double a, b, c, d, x, y;
  int n = -1;
  if (sscanf(p + strlen(kind), " %lf (%lf) -> %lf (%lf) MB, %lf / %lf ms%n", &a,
             &b, &c, &d, &x, &y, &n) != 6 ||
      n < 0)
    return -1;
  if (a < 0 || c < 0 || a > b || c > d || x < 0 || y < 0) return -1;
  *after = c;
  return 1;
}

static void on_trace(void *data, const char *line) {
  trace_log *t = data;
  t->lines++;
  double after = 0;
  int s = trace_shape(line, "Scavenge", &after);
  int m = trace_shape(line, "Mark-Sweep", &after);
  if (s > 0) t->scavenge++;
  if (m > 0) {
    t->mark_sweep++;
    t->last_full_after = after;
  }
  if (s <= 0 && m <= 0) {
    if (!t->bad_shape) snprintf(t->first_bad, sizeof t->first_bad, "%s", line);
    t->bad_shape++;
  }
  if (!strstr(line, "tracer-7")) t->without_name++;
}

static void test_trace(void) {
  trace_log t;
  memset(&t, 0, sizeof t);
  iso_isolate_params p = unit_params();
  p.name = "tracer-7";
  p.flags = ISO_ISOLATE_TRACE_GC;
  p.trace_callback = on_trace;
  p.trace_data = &t;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_GE(t.scavenge, 1);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_GE(t.mark_sweep, 1);
  if (t.bad_shape) printf("# unexpected trace line: %s\n", t.first_bad);
  CHECK_EQ(t.bad_shape, 0);
  CHECK_EQ(t.without_name, 0);

  /* The sizes are the heap's: hold about 4 MiB and collect. */
  iso_scope sc;
  iso_scope_open(iso, &sc);
  for (int i = 0; i < 20; i++)
    CHECK(iso_string_new(iso, big_text, 200 * 1024) != NULL);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK(t.last_full_after >= 3.5);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK(t.last_full_after < 3.0);
  iso_gc_statistics_t st = unit_gc_stats(iso);
  CHECK_UEQ((uint64_t)t.lines, st.all.count);
  CHECK_EQ(t.bad_shape, 0);
  CHECK_OK(iso_isolate_free(iso));

  /* No flag, no lines (the callback alone does not turn tracing on). */
  memset(&t, 0, sizeof t);
  p.flags = 0;
  iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(t.lines, 0);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- stress mode and the verifier ---- */

static void small_workload(iso_isolate *iso, int n) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle list = iso_handle_new(iso, ISO_NULL);
  for (int i = 0; i < n; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    char text[24];
    snprintf(text, sizeof text, "item %d", i);
    iso_handle s = iso_string_from_cstr(iso, text);
    iso_handle a = iso_array_new(iso, 2);
    CHECK_OK(iso_array_set(iso, iso_get(a), 0, iso_get(s)));
    CHECK_OK(iso_array_set(iso, iso_get(a), 1, iso_get(list)));
    iso_handle c = iso_record_new(iso, cell);
    CHECK_OK(iso_record_set(iso, iso_get(c), 0, iso_get(a)));
    iso_handle_set(list, iso_get(c));
    CHECK_OK(iso_scope_close(&in));
  }
  /* Walk: cell -> [ "item i", next cell ]. */
  iso_value cur = iso_get(list);
  for (int i = n - 1; i >= 0; i--) {
    char text[24];
    snprintf(text, sizeof text, "item %d", i);
    CHECK_EQ(iso_type_of(cur), cell);
    iso_value a = iso_record_slot(cur, 0);
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle ah = iso_handle_new(iso, a);
    CHECK_STRING(at(iso, iso_get(ah), 0), text);
    cur = at(iso, iso_get(ah), 1);
    CHECK_OK(iso_scope_close(&in));
  }
  CHECK(cur == ISO_NULL);
  CHECK_OK(iso_scope_close(&sc));
}

static void test_stress_mode(void) {
  iso_isolate_params p = unit_params();
  p.stress_scavenge_every = 1;
  p.stress_full_every = 50;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  small_workload(iso, 300);
  iso_gc_statistics_t st = unit_gc_stats(iso);
  /* At least 3 young allocations per item (string, array, record), each
   * followed by a collection: a scavenge, or every 50th a full GC. */
  CHECK_UGE(st.all.count, 900);
  CHECK_UGE(st.scavenge.count, 900 - 900 / 50);
  CHECK_UGE(st.full.count, 900 / 50);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_verify_heap_flag(void) {
  iso_isolate_params p = unit_params();
  p.flags = ISO_ISOLATE_VERIFY_HEAP;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  iso_handle root = build_graph(iso);
  for (int i = 0; i < 4; i++) {
    small_workload(iso, 200);
    CHECK_OK(iso_gc(iso, i % 2 ? ISO_GC_FULL : ISO_GC_MINOR));
  }
  check_graph(iso, root);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_FAILS_ST(iso_heap_verify(NULL), ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));
}

/* An old object given a young reference with the generational barrier
 * switched off: the verifier must see the missing remembered-set entry.
 * The same steps with the barrier on are the control. */
static void old_points_to_young(unsigned debug_flags, iso_status want) {
  iso_isolate_params p = unit_params();
  p.debug_flags = debug_flags;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  iso_handle r = iso_record_new(iso, cell);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(iso_heap_verify(iso));
  iso_handle s = iso_string_from_cstr(iso, "young");
  CHECK_OK(iso_record_set(iso, iso_get(r), 0, iso_get(s)));
  iso_handle_set(s, ISO_UNDEFINED);
  if (want == ISO_OK) {
    CHECK_OK(iso_heap_verify(iso));
    CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
    CHECK_STRING(iso_record_slot(iso_get(r), 0), "young");
    CHECK_OK(iso_heap_verify(iso));
  } else {
    CHECK_FAILS_ST(iso_heap_verify(iso), want,
                   "remember|young|old|slot|barrier");
  }
  /* Freeing needs no collection, so even the broken heap goes quietly. */
  CHECK_OK(iso_isolate_free(iso));
}

static void test_verify_detects_missing_barrier(void) {
  old_points_to_young(0, ISO_OK);
  old_points_to_young(ISO_DEBUG_SKIP_REMEMBERED_SET, ISO_ERR_HEAP_CORRUPT);
}

static void test_safepoint(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_handle s = iso_string_from_cstr(iso, "across safepoints");
  for (int i = 0; i < 100; i++) CHECK_OK(iso_safepoint(iso));
  CHECK_STRING(iso_get(s), "across safepoints");
  CHECK_OK(iso_isolate_free(iso));

  /* In stress mode a safepoint may collect: handles still hold. */
  iso_isolate_params p = unit_params();
  p.stress_scavenge_every = 1;
  iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  s = iso_string_from_cstr(iso, "stressed");
  for (int i = 0; i < 50; i++) {
    CHECK_OK(iso_safepoint(iso));
    CHECK(iso_string_from_cstr(iso, "garbage") != NULL);
  }
  CHECK_STRING(iso_get(s), "stressed");
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- pretenuring ---- */

enum { KEPT = 400000, GARBAGE_WINDOW = 1000000 };

/* Appends n cells {smi from..from+n-1} to live, which keeps them all. */
static void keep_cells(iso_isolate *iso, iso_handle live, int from, int n) {
  for (int i = from; i < from + n; i++) {
    iso_scope sc;
    iso_scope_open(iso, &sc);
    iso_handle c = iso_record_new(iso, cell);
    CHECK(c != NULL);
    CHECK_OK(iso_record_set(iso, iso_get(c), 0, iso_smi(i)));
    CHECK_OK(iso_array_push(iso, iso_get(live), iso_get(c)));
    CHECK_OK(iso_scope_close(&sc));
  }
}

static void check_cells(iso_isolate *iso, iso_handle live, int n) {
  CHECK_UEQ(iso_array_length(iso_get(live)), (size_t)n);
  int bad = 0;
  for (int base = 0; base < n; base += 1024) {
    iso_scope sc;
    iso_scope_open(iso, &sc);
    for (int i = base; i < n && i < base + 1024; i++) {
      iso_handle c = iso_array_get(iso, iso_get(live), (size_t)i);
      if (!c || iso_type_of(iso_get(c)) != cell ||
          iso_record_slot(iso_get(c), 0) != iso_smi(i))
        bad++;
    }
    CHECK_OK(iso_scope_close(&sc));
  }
  CHECK_EQ(bad, 0);
}

/* n cells that die at once. */
static void drop_cells(iso_isolate *iso, int n) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  for (int i = 0; i < n; i++) {
    iso_value init[1] = {iso_smi(i)};
    CHECK(iso_record_alloc(iso, cell, 1, init) != 0);
  }
  CHECK_OK(iso_scope_close(&sc));
}

/* Allocates cells that die at once until a scavenge has run. */
static void until_scavenge(iso_isolate *iso) {
  uint64_t n = unit_gc_stats(iso).scavenge.count;
  for (int k = 0; k < 1000 && unit_gc_stats(iso).scavenge.count == n; k++)
    drop_cells(iso, 256);
  CHECK_UGT(unit_gc_stats(iso).scavenge.count, n);
}

/* Fast promotion (gc/young.c) starts when a quarter of a full-size
 * semispace survived a second scavenge, not a first: a structure that
 * was only being built when a scavenge came, and dies before the next,
 * is copied once and never promoted. Here each round keeps a list of a
 * third of the semispace across exactly one scavenge and drops it; when
 * one scavenge's survivors alone started fast promotion, every next
 * round's list was promoted (some 300 KiB a round). */
static void test_short_lived_not_promoted(void) {
  enum { NODES = 20000, ROUNDS = 24, WARM = 4 }; /* 16 bytes a node */
  iso_isolate_params p = unit_params();
  p.flags = ISO_ISOLATE_NO_PRETENURING;
  p.max_young_generation_size = (size_t)2 << 20; /* 1 MiB semispaces */
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  uint64_t promoted_at_warm = 0;
  for (int r = 0; r < ROUNDS; r++) {
    if (r == WARM) promoted_at_warm = unit_gc_stats(iso).promoted_bytes;
    iso_scope sc;
    iso_scope_open(iso, &sc);
    iso_handle head = iso_handle_new(iso, ISO_NULL);
    for (int i = 0; i < NODES; i++) {
      iso_value init[1] = {iso_get(head)};
      iso_value c = iso_record_alloc(iso, cell, 1, init);
      CHECK(c != 0);
      iso_handle_set(head, c);
    }
    until_scavenge(iso);
    /* The list survived its scavenge intact. */
    int n = 0;
    for (iso_value v = iso_get(head); v != ISO_NULL;
         v = iso_record_slot(v, 0))
      n++;
    CHECK_EQ(n, NODES);
    CHECK_OK(iso_scope_close(&sc));
  }
  uint64_t promoted = unit_gc_stats(iso).promoted_bytes - promoted_at_warm;
  printf("# %llu bytes promoted in %d rounds\n", (unsigned long long)promoted,
         ROUNDS - WARM);
  if (!UNIT_GC_STRESS) CHECK_ULE(promoted, (uint64_t)NODES * 16 / 4);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

/* An isolate whose new objects all survive allocates them in the old
 * space after a few scavenges; once they die young again, it stops. */
static void test_pretenuring(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle live = iso_array_new(iso, 0);
  keep_cells(iso, live, 0, KEPT);
  iso_gc_statistics_t kept = unit_gc_stats(iso);
  /* 400,000 cells of 16 bytes, 6 MB: nearly all of them pretenured. */
  CHECK_GT(kept.pretenured_bytes, (uint64_t)KEPT * 16 / 2);
  check_cells(iso, live, KEPT);
  CHECK_OK(iso_heap_verify(iso));

  /* Garbage only: a probe finds it dead and the young generation is
   * back; a second window allocates nothing in the old space. */
  drop_cells(iso, GARBAGE_WINDOW);
  iso_gc_statistics_t mid = unit_gc_stats(iso);
  drop_cells(iso, GARBAGE_WINDOW);
  iso_gc_statistics_t end = unit_gc_stats(iso);
  CHECK_UEQ(end.pretenured_bytes, mid.pretenured_bytes);
  CHECK_GT(end.scavenge.count, mid.scavenge.count);
  CHECK_LT(end.promoted_bytes - mid.promoted_bytes, (uint64_t)1 << 20);

  /* And kept objects again: pretenuring resumes. */
  keep_cells(iso, live, KEPT, KEPT);
  iso_gc_statistics_t again = unit_gc_stats(iso);
  CHECK_GT(again.pretenured_bytes - end.pretenured_bytes,
           (uint64_t)KEPT * 16 / 2);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  check_cells(iso, live, 2 * KEPT);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));

  /* Switched off, everything starts young. */
  iso_isolate_params p = unit_params();
  p.flags = ISO_ISOLATE_NO_PRETENURING;
  iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  iso_scope_open(iso, &sc);
  live = iso_array_new(iso, 0);
  keep_cells(iso, live, 0, KEPT);
  iso_gc_statistics_t off = unit_gc_stats(iso);
  CHECK_UEQ(off.pretenured_bytes, 0);
  CHECK_GT(off.promoted_bytes, (uint64_t)KEPT * 16 / 2);
  check_cells(iso, live, KEPT);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  unit_fill(big_text, BIG, 7);
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  blob = unit_register(rt, "Blob", 2, 32);
  cell = unit_register(rt, "Cell", 1, 0);
  RUN(test_gc_arguments);
  RUN(test_graph_survives);
  RUN(test_gc_callbacks);
  RUN(test_trace);
  RUN(test_stress_mode);
  RUN(test_verify_heap_flag);
  RUN(test_verify_detects_missing_barrier);
  RUN(test_safepoint);
  RUN(test_pretenuring);
  RUN(test_short_lived_not_promoted);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
