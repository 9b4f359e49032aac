/*
 * Arrays: bounds, growth (across the large-object threshold), nesting,
 * and old arrays that receive young elements (the generational barrier).
 */
#include "helpers.h"

static iso_runtime *rt;
static iso_isolate *iso;

static void test_new_and_bounds(void) {
  iso_handle a = iso_array_new(iso, 0);
  CHECK(a != NULL);
  CHECK_EQ(iso_kind_of(iso_get(a)), ISO_KIND_ARRAY);
  CHECK_UEQ(iso_array_length(iso_get(a)), 0);
  CHECK_FAILS(iso_array_get(iso, iso_get(a), 0), == NULL, ISO_ERR_RANGE,
              "range|index|bound|length");

  iso_handle b = iso_array_new(iso, 5);
  CHECK_UEQ(iso_array_length(iso_get(b)), 5);
  for (size_t i = 0; i < 5; i++) {
    iso_handle e = iso_array_get(iso, iso_get(b), i);
    CHECK(e != NULL);
    CHECK(iso_get(e) == ISO_UNDEFINED);
  }
  CHECK_FAILS(iso_array_get(iso, iso_get(b), 5), == NULL, ISO_ERR_RANGE,
              "range|index|bound|length");
  CHECK_FAILS(iso_array_get(iso, iso_get(b), (size_t)-1), == NULL,
              ISO_ERR_RANGE, "");

  /* set: in range replaces, at length appends, beyond is refused. */
  CHECK_OK(iso_array_set(iso, iso_get(b), 2, iso_smi(22)));
  CHECK_OK(iso_array_set(iso, iso_get(b), 5, iso_smi(55)));
  CHECK_UEQ(iso_array_length(iso_get(b)), 6);
  CHECK_FAILS_ST(iso_array_set(iso, iso_get(b), 7, iso_smi(1)), ISO_ERR_RANGE,
                 "range|index|bound|length");
  CHECK_UEQ(iso_array_length(iso_get(b)), 6);
  CHECK_EQ(iso_smi_value(iso_get(iso_array_get(iso, iso_get(b), 2))), 22);
  CHECK_EQ(iso_smi_value(iso_get(iso_array_get(iso, iso_get(b), 5))), 55);
  CHECK(iso_get(iso_array_get(iso, iso_get(b), 4)) == ISO_UNDEFINED);

  /* More than 2^28 elements is a range error, before any allocation. */
  CHECK_FAILS(iso_array_new(iso, ((size_t)1 << 28) + 1), == NULL, ISO_ERR_RANGE,
              "range|length|large|limit|elements|size");
  CHECK_FAILS(iso_array_new(NULL, 1), == NULL, ISO_ERR_ARGUMENT, "");
}

static void test_push_pop(void) {
  iso_handle a = iso_array_new(iso, 0);
  for (int i = 0; i < 10; i++)
    CHECK_OK(iso_array_push(iso, iso_get(a), iso_smi(i * 3)));
  CHECK_UEQ(iso_array_length(iso_get(a)), 10);
  for (int i = 9; i >= 0; i--) {
    iso_handle e = iso_array_pop(iso, iso_get(a));
    CHECK(e != NULL);
    CHECK_EQ(iso_smi_value(iso_get(e)), i * 3);
    CHECK_UEQ(iso_array_length(iso_get(a)), (size_t)i);
  }
  /* Popping an empty array gives undefined, not an error. */
  iso_handle e = iso_array_pop(iso, iso_get(a));
  CHECK(e != NULL);
  CHECK(iso_get(e) == ISO_UNDEFINED);
  CHECK_UEQ(iso_array_length(iso_get(a)), 0);

  /* A popped object is no longer referenced by the array. */
  iso_type t = unit_register(rt, "PopProbe", 0, 8);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle r = iso_record_new(iso, t);
  CHECK(r != NULL);
  CHECK_OK(iso_array_push(iso, iso_get(a), iso_get(r)));
  CHECK(iso_array_pop(iso, iso_get(a)) != NULL);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, t), 0);
}

static void test_set_length(void) {
  iso_handle a = iso_array_new(iso, 0);
  for (int i = 0; i < 8; i++) {
    iso_scope sc;
    iso_scope_open(iso, &sc);
    char text[8];
    snprintf(text, sizeof text, "e%d", i);
    iso_handle s = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_array_push(iso, iso_get(a), iso_get(s)));
    CHECK_OK(iso_scope_close(&sc));
  }
  CHECK_OK(iso_array_set_length(iso, iso_get(a), 3));
  CHECK_UEQ(iso_array_length(iso_get(a)), 3);
  CHECK_FAILS(iso_array_get(iso, iso_get(a), 3), == NULL, ISO_ERR_RANGE, "");
  CHECK_STRING(iso_get(iso_array_get(iso, iso_get(a), 2)), "e2");
  /* Extending fills with undefined: old contents must not reappear. */
  CHECK_OK(iso_array_set_length(iso, iso_get(a), 6));
  CHECK_UEQ(iso_array_length(iso_get(a)), 6);
  for (size_t i = 3; i < 6; i++)
    CHECK(iso_get(iso_array_get(iso, iso_get(a), i)) == ISO_UNDEFINED);
  CHECK_OK(iso_array_set_length(iso, iso_get(a), 20000));
  CHECK_UEQ(iso_array_length(iso_get(a)), 20000);
  CHECK(iso_get(iso_array_get(iso, iso_get(a), 19999)) == ISO_UNDEFINED);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_STRING(iso_get(iso_array_get(iso, iso_get(a), 0)), "e0");
  CHECK_STRING(iso_get(iso_array_get(iso, iso_get(a), 2)), "e2");
  CHECK_OK(iso_array_set_length(iso, iso_get(a), 0));
  CHECK_UEQ(iso_array_length(iso_get(a)), 0);
  CHECK_FAILS_ST(iso_array_set_length(iso, iso_get(a), ((size_t)1 << 28) + 1),
                 ISO_ERR_RANGE, "");
  CHECK_UEQ(iso_array_length(iso_get(a)), 0);
}

static void test_wrong_kind(void) {
  iso_handle s = iso_string_from_cstr(iso, "not an array");
  iso_handle m = iso_map_new(iso);
  const iso_value bad[] = {iso_get(s), iso_get(m), iso_smi(4), ISO_NULL,
                           ISO_UNDEFINED};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    iso_value v = bad[i];
    CHECK_FAILS(iso_array_length(v), == 0, ISO_ERR_TYPE, "array");
    CHECK_FAILS(iso_array_get(iso, v, 0), == NULL, ISO_ERR_TYPE, "array");
    CHECK_FAILS_ST(iso_array_set(iso, v, 0, iso_smi(1)), ISO_ERR_TYPE, "array");
    CHECK_FAILS_ST(iso_array_push(iso, v, iso_smi(1)), ISO_ERR_TYPE, "array");
    CHECK_FAILS(iso_array_pop(iso, v), == NULL, ISO_ERR_TYPE, "array");
    CHECK_FAILS_ST(iso_array_set_length(iso, v, 3), ISO_ERR_TYPE, "array");
  }
  CHECK_STRING(iso_get(s), "not an array");
  CHECK_EQ(iso_map_size(iso_get(m)), 0);
}

/* 100k elements: the backing store outgrows the young generation's
 * object size limit and moves to the large-object space while growing. */
static void test_large_growth(void) {
  enum { N = 100000 };
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle ints = iso_array_new(iso, 0);
  iso_handle strs = iso_array_new(iso, 0);
  for (int i = 0; i < N; i++) {
    CHECK_OK(iso_array_push(iso, iso_get(ints), iso_smi((int64_t)i * 7)));
    if (i % 10 == 0) {
      iso_scope in;
      iso_scope_open(iso, &in);
      char text[24];
      snprintf(text, sizeof text, "s%d", i);
      iso_handle s = iso_string_from_cstr(iso, text);
      CHECK(s != NULL);
      CHECK_OK(iso_array_push(iso, iso_get(strs), iso_get(s)));
      CHECK_OK(iso_scope_close(&in));
    }
  }
  CHECK_UEQ(iso_array_length(iso_get(ints)), N);
  CHECK_UEQ(iso_array_length(iso_get(strs)), N / 10);
  for (int round = 0; round < 3; round++) {
    CHECK_OK(iso_gc(iso, round == 1 ? ISO_GC_FULL : ISO_GC_MINOR));
    for (int i = 0; i < N; i += (round == 2 ? 1 : 97)) {
      iso_scope in;
      iso_scope_open(iso, &in);
      iso_handle e = iso_array_get(iso, iso_get(ints), (size_t)i);
      CHECK(e != NULL);
      CHECK_EQ(iso_smi_value(iso_get(e)), (int64_t)i * 7);
      if (i % 10 == 0) {
        char text[24];
        snprintf(text, sizeof text, "s%d", i);
        CHECK_STRING(iso_get(iso_array_get(iso, iso_get(strs), (size_t)i / 10)),
                     text);
      }
      CHECK_OK(iso_scope_close(&in));
    }
  }
  /* A large array made at once, filled with young strings after it is
   * already old (every store needs the barrier). */
  iso_handle big = iso_array_new(iso, N);
  CHECK(big != NULL);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  for (int i = 0; i < N; i += 1000) {
    iso_scope in;
    iso_scope_open(iso, &in);
    char text[24];
    snprintf(text, sizeof text, "b%d", i);
    iso_handle s = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_array_set(iso, iso_get(big), (size_t)i, iso_get(s)));
    CHECK_OK(iso_scope_close(&in));
  }
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  for (int i = 0; i < N; i += 1000) {
    char text[24];
    snprintf(text, sizeof text, "b%d", i);
    CHECK_STRING(iso_get(iso_array_get(iso, iso_get(big), (size_t)i)), text);
    CHECK(iso_get(iso_array_get(iso, iso_get(big), (size_t)i + 1)) ==
          ISO_UNDEFINED);
  }
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
}

static void test_nested(void) {
  /* a[i] = [ "i", [ i, "i.i" ], <empty array> ] */
  enum { N = 300 };
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle a = iso_array_new(iso, 0);
  for (int i = 0; i < N; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    char t1[16], t2[16];
    snprintf(t1, sizeof t1, "%d", i);
    snprintf(t2, sizeof t2, "%d.%d", i, i);
    /* Every argument is read from a handle only once all allocations
     * for the call are done: a raw value dies at the next allocation. */
    iso_handle row = iso_array_new(iso, 0);
    iso_handle inner = iso_array_new(iso, 2);
    iso_handle s1 = iso_string_from_cstr(iso, t1);
    iso_handle s2 = iso_string_from_cstr(iso, t2);
    iso_handle empty = iso_array_new(iso, 0);
    CHECK(row && inner && s1 && s2 && empty);
    CHECK_OK(iso_array_set(iso, iso_get(inner), 0, iso_smi(i)));
    CHECK_OK(iso_array_set(iso, iso_get(inner), 1, iso_get(s2)));
    CHECK_OK(iso_array_push(iso, iso_get(row), iso_get(s1)));
    CHECK_OK(iso_array_push(iso, iso_get(row), iso_get(inner)));
    CHECK_OK(iso_array_push(iso, iso_get(row), iso_get(empty)));
    CHECK_OK(iso_array_push(iso, iso_get(a), iso_get(row)));
    CHECK_OK(iso_scope_close(&in));
  }
  /* An array that contains itself. */
  CHECK_OK(iso_array_push(iso, iso_get(a), iso_get(a)));
  for (int round = 0; round < 3; round++) {
    CHECK_OK(iso_gc(iso, round == 1 ? ISO_GC_FULL : ISO_GC_MINOR));
    CHECK_UEQ(iso_array_length(iso_get(a)), N + 1);
    CHECK(iso_get(iso_array_get(iso, iso_get(a), N)) == iso_get(a));
    for (int i = 0; i < N; i++) {
      iso_scope in;
      iso_scope_open(iso, &in);
      char t1[16], t2[16];
      snprintf(t1, sizeof t1, "%d", i);
      snprintf(t2, sizeof t2, "%d.%d", i, i);
      iso_handle row = iso_array_get(iso, iso_get(a), (size_t)i);
      CHECK_UEQ(iso_array_length(iso_get(row)), 3);
      CHECK_STRING(iso_get(iso_array_get(iso, iso_get(row), 0)), t1);
      iso_handle inner = iso_array_get(iso, iso_get(row), 1);
      CHECK_EQ(iso_smi_value(iso_get(iso_array_get(iso, iso_get(inner), 0))),
               i);
      CHECK_STRING(iso_get(iso_array_get(iso, iso_get(inner), 1)), t2);
      iso_handle empty = iso_array_get(iso, iso_get(row), 2);
      CHECK_EQ(iso_kind_of(iso_get(empty)), ISO_KIND_ARRAY);
      CHECK_UEQ(iso_array_length(iso_get(empty)), 0);
      CHECK_OK(iso_scope_close(&in));
    }
  }
  CHECK_OK(iso_scope_close(&sc));
}

/* An old array that receives young elements between scavenges: the young
 * objects are reachable only through the old array. */
/* The text of element i in a round of the old-to-young tests. */
static void young_text(char *buf, size_t cap, const char *what, int round,
                       size_t i) {
  snprintf(buf, cap, "%s %d/%zu", what, round, i);
}

/* Stores a new (young) string young_text(what, round, i) at a[i], in a
 * scope of its own, so only the array keeps it. */
static void set_young_string(iso_handle a, size_t i, const char *what,
                             int round) {
  iso_scope in;
  iso_scope_open(iso, &in);
  char text[32];
  young_text(text, sizeof text, what, round, i);
  iso_handle s = iso_string_from_cstr(iso, text);
  CHECK(s != NULL);
  CHECK_OK(iso_array_set(iso, iso_get(a), i, iso_get(s)));
  CHECK_OK(iso_scope_close(&in));
}

static void test_old_to_young(void) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle a = iso_array_new(iso, 4);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL)); /* now certainly old */
  for (int round = 0; round < 5; round++) {
    for (size_t i = 0; i < 4; i++) set_young_string(a, i, "young", round);
    /* Churn, so the young strings have to move. */
    for (int k = 0; k < 2000; k++) {
      iso_scope in;
      iso_scope_open(iso, &in);
      CHECK(iso_array_new(iso, 8) != NULL);
      CHECK_OK(iso_scope_close(&in));
    }
    CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
    CHECK_OK(iso_heap_verify(iso));
    for (size_t i = 0; i < 4; i++) {
      char text[32];
      young_text(text, sizeof text, "young", round, i);
      CHECK_STRING(iso_get(iso_array_get(iso, iso_get(a), i)), text);
    }
  }
  CHECK_OK(iso_scope_close(&sc));
}

/* iso_array_set's inline path, in both layouts: elements inline (an
 * array made with five or fewer) and in a store (once it grew). An old
 * array's store receives young strings there, so the remembered set must
 * hold the store's slots, and the errors still name iso_array_set. */
static void test_set_both_layouts(void) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle a = iso_array_new(iso, 3);
  for (size_t i = 0; i < 3; i++)
    CHECK_OK(iso_array_set(iso, iso_get(a), i, iso_smi((int64_t)i + 10)));
  for (size_t i = 3; i < 8; i++) /* appends: past the inline room */
    CHECK_OK(iso_array_set(iso, iso_get(a), i, iso_smi((int64_t)i + 10)));
  for (size_t i = 0; i < 8; i++)
    CHECK_EQ(iso_smi_value(iso_get(iso_array_get(iso, iso_get(a), i))),
             (int64_t)i + 10);
  CHECK_FAILS_ST(iso_array_set(iso, iso_get(a), 9, iso_smi(1)), ISO_ERR_RANGE,
                 "iso_array_set");
  CHECK_FAILS_ST(iso_array_set(iso, iso_get(a), (size_t)-1, iso_smi(1)),
                 ISO_ERR_RANGE, "iso_array_set");
  CHECK_FAILS_ST(iso_array_set(iso, iso_smi(3), 0, iso_smi(1)), ISO_ERR_TYPE,
                 "iso_array_set");
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL)); /* the array and its store are old */
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < 8; i += 7) set_young_string(a, i, "store", round);
    CHECK_OK(iso_gc(iso, ISO_GC_MINOR)); /* the strings move */
    CHECK_OK(iso_heap_verify(iso));
    for (size_t i = 0; i < 8; i++) {
      iso_value e = iso_get(iso_array_get(iso, iso_get(a), i));
      if (i % 7 == 0) {
        char text[32];
        young_text(text, sizeof text, "store", round, i);
        CHECK_STRING(e, text);
      } else {
        CHECK_EQ(iso_smi_value(e), (int64_t)i + 10);
      }
    }
  }
  CHECK_OK(iso_scope_close(&sc));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  RUN(test_new_and_bounds);
  RUN(test_push_pop);
  RUN(test_set_length);
  RUN(test_wrong_kind);
  RUN(test_large_growth);
  RUN(test_nested);
  RUN(test_old_to_young);
  RUN(test_set_both_layouts);
  CHECK_OK(iso_isolate_free(iso));
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
