/*
 * Records: slots and raw bytes, the inline constructors and accessors,
 * error paths, big records in the large-object space, and linked
 * structures that survive the collector.
 */
#include "helpers.h"

static iso_runtime *rt;
static iso_isolate *iso;
static iso_type node;    /* slots: next, payload; raw: 16 bytes */
static iso_type bare;    /* nothing at all */
static iso_type rawonly; /* 1 MiB of raw bytes, no slots */
static iso_type wide;    /* 65536 slots */
static iso_type pair;    /* slots: next, payload; no raw bytes */

static void test_new_defaults(void) {
  iso_handle r = iso_record_new(iso, node);
  CHECK(r != NULL);
  iso_value v = iso_get(r);
  CHECK_EQ(iso_kind_of(v), ISO_KIND_RECORD);
  CHECK_EQ(iso_type_of(v), node);
  CHECK_EQ(iso_record_slot_count(v), 2);
  CHECK_UEQ(iso_record_raw_size(v), 16);
  CHECK(iso_record_slot(v, 0) == ISO_UNDEFINED);
  CHECK(iso_record_slot(v, 1) == ISO_UNDEFINED);
  const unsigned char *raw = iso_record_raw(v);
  CHECK(raw != NULL);
  for (int i = 0; i < 16; i++) CHECK_EQ(raw[i], 0);

  iso_handle b = iso_record_new(iso, bare);
  CHECK(b != NULL);
  CHECK_EQ(iso_record_slot_count(iso_get(b)), 0);
  CHECK_UEQ(iso_record_raw_size(iso_get(b)), 0);
  CHECK(iso_record_raw(iso_get(b)) == NULL);
  CHECK_FAILS(iso_record_get(iso, iso_get(b), 0), == NULL, ISO_ERR_RANGE,
              "range|index|slot|bound");

  /* Garbage left in memory by earlier records never shows through. */
  for (int round = 0; round < 3; round++) {
    iso_scope sc;
    iso_scope_open(iso, &sc);
    for (int i = 0; i < 500; i++) {
      iso_handle x = iso_record_new(iso, node);
      memset(iso_record_raw(iso_get(x)), 0xee, 16);
      CHECK_OK(iso_record_set(iso, iso_get(x), 0, iso_smi(99)));
    }
    CHECK_OK(iso_scope_close(&sc));
    CHECK_OK(iso_gc(iso, round == 1 ? ISO_GC_FULL : ISO_GC_MINOR));
    for (int i = 0; i < 500; i++) {
      iso_handle x = iso_record_new_v(iso, node, 0, NULL);
      CHECK(x != NULL);
      CHECK(iso_record_slot(iso_get(x), 0) == ISO_UNDEFINED);
      raw = iso_record_raw(iso_get(x));
      for (int k = 0; k < 16; k++) CHECK_EQ(raw[k], 0);
    }
  }
}

static void test_get_set(void) {
  iso_handle r = iso_record_new(iso, node);
  iso_handle s = iso_string_from_cstr(iso, "payload");
  CHECK_OK(iso_record_set(iso, iso_get(r), 1, iso_get(s)));
  CHECK_OK(iso_record_set(iso, iso_get(r), 0, iso_smi(-5)));
  iso_handle g1 = iso_record_get(iso, iso_get(r), 1);
  CHECK(g1 != NULL);
  CHECK_STRING(iso_get(g1), "payload");
  iso_handle g0 = iso_record_get(iso, iso_get(r), 0);
  CHECK_EQ(iso_smi_value(iso_get(g0)), -5);
  CHECK(iso_record_slot(iso_get(r), 0) == iso_smi(-5));
  CHECK(iso_record_slot(iso_get(r), 1) == iso_get(s));

  /* Out of range and wrong kind. */
  CHECK_FAILS(iso_record_get(iso, iso_get(r), 2), == NULL, ISO_ERR_RANGE,
              "range|index|slot|bound");
  CHECK_FAILS(iso_record_get(iso, iso_get(r), 0xffffffffu), == NULL,
              ISO_ERR_RANGE, "");
  CHECK_FAILS_ST(iso_record_set(iso, iso_get(r), 2, iso_smi(1)), ISO_ERR_RANGE,
                 "range|index|slot|bound");
  iso_handle a = iso_array_new(iso, 3);
  const iso_value bad[] = {iso_get(a), iso_get(s), iso_smi(3), ISO_NULL,
                           ISO_UNDEFINED};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_FAILS(iso_record_get(iso, bad[i], 0), == NULL, ISO_ERR_TYPE,
                "record");
    CHECK_FAILS_ST(iso_record_set(iso, bad[i], 0, iso_smi(1)), ISO_ERR_TYPE,
                   "record");
    CHECK(iso_record_raw(bad[i]) == NULL);
    CHECK_EQ(iso_record_slot_count(bad[i]), 0);
    CHECK_UEQ(iso_record_raw_size(bad[i]), 0);
  }
  /* The array and string were not written through. */
  CHECK(iso_get(iso_array_get(iso, iso_get(a), 0)) == ISO_UNDEFINED);
  CHECK_STRING(iso_get(s), "payload");
}

/* An unusable type id: refused as a bad argument (or a wrong type). */
#define CHECK_BAD_TYPE(call)                               \
  do {                                                     \
    iso_clear_error();                                     \
    CHECK((call) == NULL);                                 \
    CHECK(iso_last_status() == ISO_ERR_ARGUMENT ||         \
          iso_last_status() == ISO_ERR_TYPE);              \
    CHECK(unit_mentions(iso_last_error(), "type|record")); \
  } while (0)

static void test_new_errors(void) {
  CHECK_BAD_TYPE(iso_record_new(iso, 0));
  CHECK_BAD_TYPE(iso_record_new(iso, 50000));
  CHECK_BAD_TYPE(iso_record_new(iso, 0xffffffffu));
  /* A built-in type is not a record type. */
  iso_handle s = iso_string_from_cstr(iso, "x");
  CHECK_BAD_TYPE(iso_record_new(iso, iso_type_of(iso_get(s))));
  CHECK_FAILS(iso_record_new(NULL, node), == NULL, ISO_ERR_ARGUMENT, "");
  /* The inline constructor makes the same checks on its slow path. */
  CHECK_BAD_TYPE(iso_record_new_v(iso, 0, 0, NULL));
  CHECK_BAD_TYPE(iso_record_new_v(iso, 0x10000u + node, 0, NULL));
  iso_value init[3] = {iso_smi(1), iso_smi(2), iso_smi(3)};
  iso_clear_error();
  CHECK(iso_record_new_v(iso, node, 3, init) == NULL);
  CHECK(iso_last_status() == ISO_ERR_RANGE ||
        iso_last_status() == ISO_ERR_ARGUMENT);
  CHECK(iso_last_error()[0] != '\0');
}

static void test_new_v(void) {
  iso_handle s = iso_string_from_cstr(iso, "init");
  iso_value init[2] = {iso_smi(7), iso_get(s)};
  iso_handle r = iso_record_new_v(iso, node, 2, init);
  CHECK(r != NULL);
  CHECK_EQ(iso_smi_value(iso_record_slot(iso_get(r), 0)), 7);
  CHECK_STRING(iso_record_slot(iso_get(r), 1), "init");
  iso_value one[1] = {ISO_TRUE};
  iso_handle r1 = iso_record_new_v(iso, node, 1, one);
  CHECK(iso_record_slot(iso_get(r1), 0) == ISO_TRUE);
  CHECK(iso_record_slot(iso_get(r1), 1) == ISO_UNDEFINED);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_STRING(iso_record_slot(iso_get(r), 1), "init");
  CHECK_EQ(iso_smi_value(iso_record_slot(iso_get(r), 0)), 7);

  /* Many in a row, past the end of the young allocation area (the inline
   * path falls back to the slow path, which may collect and must keep the
   * init values it was given). A linked list, newest first. */
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle list = iso_handle_new(iso, ISO_NULL);
  iso_scope in;
  iso_scope_open(iso, &in);
  for (int i = 0; i < 50000; i++) {
    /* Pairs have no raw bytes and take the inline path; nodes do not. */
    iso_value initv[2] = {iso_get(list), iso_smi(i)};
    iso_handle n = iso_record_new_v(iso, i % 3 ? pair : node, 2, initv);
    CHECK(n != NULL);
    iso_handle_set(list, iso_get(n));
    if (i % 1000 == 999) {
      CHECK_OK(iso_scope_close(&in));
      iso_scope_open(iso, &in);
    }
  }
  CHECK_OK(iso_scope_close(&in));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  int count = 0;
  iso_value cur = iso_get(list);
  int64_t expect = 49999;
  while (cur != ISO_NULL && count <= 50000) {
    CHECK_EQ(iso_type_of(cur), expect % 3 ? pair : node);
    CHECK_EQ(iso_smi_value(iso_record_slot(cur, 1)), expect);
    expect--;
    cur = iso_record_slot(cur, 0);
    count++;
  }
  CHECK_EQ(count, 50000);
  CHECK_OK(iso_scope_close(&sc));
}

static void test_raw_bytes_survive(void) {
  enum { N = 400 };
  iso_scope sc;
  iso_scope_open(iso, &sc);
  static iso_handle rs[N];
  for (int i = 0; i < N; i++) {
    rs[i] = iso_record_new(iso, node);
    uint64_t w[2] = {0x0123456789abcdefull ^ (uint64_t)i,
                     ~(uint64_t)i * 0x9e3779b97f4a7c15ull};
    memcpy(iso_record_raw(iso_get(rs[i])), w, 16);
    CHECK(iso_string_from_cstr(iso, "garbage between records") != NULL);
  }
  for (int round = 0; round < 4; round++) {
    CHECK_OK(iso_gc(iso, round == 2 ? ISO_GC_FULL : ISO_GC_MINOR));
    for (int i = 0; i < N; i++) {
      uint64_t w[2];
      memcpy(w, iso_record_raw(iso_get(rs[i])), 16);
      CHECK_UEQ(w[0], 0x0123456789abcdefull ^ (uint64_t)i);
      CHECK_UEQ(w[1], ~(uint64_t)i * 0x9e3779b97f4a7c15ull);
    }
  }
  CHECK_OK(iso_scope_close(&sc));
}

static void test_big_records(void) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  /* 1 MiB of raw bytes: zeroed, writable, kept through collections. */
  iso_handle big = iso_record_new(iso, rawonly);
  CHECK(big != NULL);
  CHECK_UEQ(iso_record_raw_size(iso_get(big)), 1u << 20);
  unsigned char *raw = iso_record_raw(iso_get(big));
  size_t nonzero = 0;
  for (size_t i = 0; i < (1u << 20); i++) nonzero += raw[i] != 0;
  CHECK_UEQ(nonzero, 0);
  unit_fill((char *)raw, 1u << 20, 42);
  static char want[1 << 20];
  unit_fill(want, sizeof want, 42);

  /* 65536 slots (512 KiB): young values stored in it must be found. */
  iso_handle w = iso_record_new(iso, wide);
  CHECK(w != NULL);
  CHECK_EQ(iso_record_slot_count(iso_get(w)), 65536);
  for (uint32_t i = 0; i < 65536; i += 4096) {
    iso_scope in;
    iso_scope_open(iso, &in);
    char text[16];
    snprintf(text, sizeof text, "w%u", i);
    iso_handle s = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_record_set(iso, iso_get(w), i, iso_get(s)));
    CHECK_OK(iso_scope_close(&in));
  }
  CHECK_OK(iso_record_set(iso, iso_get(w), 65535, iso_get(big)));
  for (int round = 0; round < 3; round++) {
    CHECK_OK(iso_gc(iso, round == 1 ? ISO_GC_FULL : ISO_GC_MINOR));
    CHECK(memcmp(iso_record_raw(iso_get(big)), want, sizeof want) == 0);
    for (uint32_t i = 0; i < 65536; i += 4096) {
      char text[16];
      snprintf(text, sizeof text, "w%u", i);
      CHECK_STRING(iso_record_slot(iso_get(w), i), text);
      CHECK(iso_record_slot(iso_get(w), i + 1) == ISO_UNDEFINED);
    }
    CHECK(iso_record_slot(iso_get(w), 65535) == iso_get(big));
  }
  CHECK_FAILS_ST(iso_record_set(iso, iso_get(w), 65536, ISO_NULL),
                 ISO_ERR_RANGE, "");
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, rawonly), 0);
  CHECK_UEQ(unit_type_count(iso, wide), 0);
}

/* A record promoted to the old space that then points at young objects:
 * those are reachable only through it. */
static void test_old_record_young_values(void) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle r = iso_record_new(iso, node);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  for (int round = 0; round < 6; round++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle inner = iso_record_new(iso, node);
    char text[16];
    snprintf(text, sizeof text, "round %d", round);
    iso_handle s = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_record_set(iso, iso_get(inner), 1, iso_get(s)));
    CHECK_OK(iso_record_set(iso, iso_get(r), 0, iso_get(inner)));
    CHECK_OK(iso_scope_close(&in));
    for (int k = 0; k < 1000; k++) {
      iso_scope g;
      iso_scope_open(iso, &g);
      CHECK(iso_record_new(iso, node) != NULL);
      CHECK_OK(iso_scope_close(&g));
    }
    CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
    CHECK_OK(iso_heap_verify(iso));
    iso_value in2 = iso_record_slot(iso_get(r), 0);
    CHECK_EQ(iso_type_of(in2), node);
    CHECK_STRING(iso_record_slot(in2, 1), text);
  }
  CHECK_OK(iso_scope_close(&sc));
}

/* iso_record_alloc: raw results and no handles; the caller roots what it
 * keeps in handles it reuses. */
static void test_record_alloc(void) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle list = iso_handle_new(iso, ISO_NULL);
  enum { N = 30000 };
  for (int i = 0; i < N; i++) {
    iso_value initv[2] = {iso_get(list), iso_smi(i)};
    iso_value v = iso_record_alloc(iso, pair, 2, initv);
    CHECK(v != 0);
    iso_handle_set(list, v);
  }
  for (int round = 0; round < 3; round++) {
    CHECK_OK(iso_gc(iso, round == 1 ? ISO_GC_FULL : ISO_GC_MINOR));
    iso_value cur = iso_get(list);
    int count = 0;
    while (cur != ISO_NULL && count <= N) {
      CHECK_EQ(iso_type_of(cur), pair);
      CHECK_EQ(iso_smi_value(iso_record_slot(cur, 1)), N - 1 - count);
      cur = iso_record_slot(cur, 0);
      count++;
    }
    CHECK_EQ(count, N);
  }

  /* Fewer initial values than slots; raw bytes (the slow path). */
  iso_value one[1] = {iso_smi(5)};
  iso_value p1 = iso_record_alloc(iso, pair, 1, one);
  CHECK(p1 != 0);
  CHECK_EQ(iso_smi_value(iso_record_slot(p1, 0)), 5);
  CHECK(iso_record_slot(p1, 1) == ISO_UNDEFINED);
  iso_handle s = iso_string_from_cstr(iso, "slow");
  iso_value two[2] = {iso_get(s), iso_smi(6)};
  iso_value n1 = iso_record_alloc(iso, node, 2, two);
  CHECK(n1 != 0);
  CHECK_EQ(iso_type_of(n1), node);
  CHECK_STRING(iso_record_slot(n1, 0), "slow");
  const unsigned char *raw = iso_record_raw(n1);
  for (int i = 0; i < 16; i++) CHECK_EQ(raw[i], 0);
  iso_value w = iso_record_alloc(iso, wide, 1, one);
  CHECK(w != 0);
  CHECK_EQ(iso_record_slot_count(w), 65536);
  CHECK_EQ(iso_smi_value(iso_record_slot(w, 0)), 5);
  CHECK(iso_record_slot(w, 65535) == ISO_UNDEFINED);

  /* Failures: 0 and an error. */
  iso_clear_error();
  CHECK(iso_record_alloc(iso, 0, 0, NULL) == 0);
  CHECK(iso_last_status() == ISO_ERR_ARGUMENT ||
        iso_last_status() == ISO_ERR_TYPE);
  iso_value three[3] = {iso_smi(1), iso_smi(2), iso_smi(3)};
  iso_clear_error();
  CHECK(iso_record_alloc(iso, pair, 3, three) == 0);
  CHECK(iso_last_status() == ISO_ERR_RANGE ||
        iso_last_status() == ISO_ERR_ARGUMENT);
  CHECK(iso_last_error()[0] != '\0');
  CHECK_OK(iso_scope_close(&sc));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  node = unit_register(rt, "Node", 2, 16);
  bare = unit_register(rt, "Bare", 0, 0);
  rawonly = unit_register(rt, "RawOnly", 0, 1u << 20);
  wide = unit_register(rt, "Wide", 65536, 0);
  pair = unit_register(rt, "Pair", 2, 0);
  iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  RUN(test_new_defaults);
  RUN(test_get_set);
  RUN(test_new_errors);
  RUN(test_new_v);
  RUN(test_raw_bytes_survive);
  RUN(test_big_records);
  RUN(test_old_record_young_values);
  RUN(test_record_alloc);
  CHECK_OK(iso_isolate_free(iso));
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
