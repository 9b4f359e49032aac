/*
 * Maps: SameValueZero keys, insertion order, iteration under mutation,
 * identity keys whose objects the collector moves, and growth.
 */
#include <math.h>

#include "helpers.h"

static iso_runtime *rt;
static iso_isolate *iso;
static iso_type keyrec;

/* m[key] as a string equal to want? */
static int map_has_string(iso_handle m, iso_value key, const char *want) {
  iso_handle v = iso_map_get(iso, iso_get(m), key);
  return v != NULL && unit_str_is(iso_get(v), want, strlen(want));
}

static void set_str(iso_handle m, iso_handle key, const char *text) {
  iso_handle s = iso_string_from_cstr(iso, text);
  CHECK(s != NULL);
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(key), iso_get(s)));
}

static void test_basics(void) {
  iso_handle m = iso_map_new(iso);
  CHECK(m != NULL);
  CHECK_EQ(iso_kind_of(iso_get(m)), ISO_KIND_MAP);
  CHECK_UEQ(iso_map_size(iso_get(m)), 0);

  CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(1), iso_smi(100)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 1);
  CHECK(iso_map_has(iso, iso_get(m), iso_smi(1)));
  CHECK_EQ(iso_smi_value(iso_get(iso_map_get(iso, iso_get(m), iso_smi(1)))),
           100);
  /* Replace. */
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(1), iso_smi(101)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 1);
  CHECK_EQ(iso_smi_value(iso_get(iso_map_get(iso, iso_get(m), iso_smi(1)))),
           101);
  /* Absent keys: undefined, false, false. */
  iso_handle miss = iso_map_get(iso, iso_get(m), iso_smi(2));
  CHECK(miss != NULL && iso_get(miss) == ISO_UNDEFINED);
  CHECK(!iso_map_has(iso, iso_get(m), iso_smi(2)));
  CHECK(!iso_map_delete(iso, iso_get(m), iso_smi(2)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 1);
  /* Delete. */
  CHECK(iso_map_delete(iso, iso_get(m), iso_smi(1)));
  CHECK(!iso_map_has(iso, iso_get(m), iso_smi(1)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 0);
  CHECK(!iso_map_delete(iso, iso_get(m), iso_smi(1)));

  /* Immediates are keys like any other, each distinct. */
  const iso_value imm[] = {ISO_UNDEFINED, ISO_NULL,   ISO_TRUE,
                           ISO_FALSE,     iso_smi(0), iso_smi(-1)};
  for (size_t i = 0; i < 6; i++)
    CHECK_OK(iso_map_set(iso, iso_get(m), imm[i], iso_smi((int64_t)i)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 6);
  for (size_t i = 0; i < 6; i++)
    CHECK_EQ(iso_smi_value(iso_get(iso_map_get(iso, iso_get(m), imm[i]))),
             (int64_t)i);
  /* A value may be undefined and still be present. */
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(9), ISO_UNDEFINED));
  CHECK(iso_map_has(iso, iso_get(m), iso_smi(9)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 7);

  CHECK_OK(iso_map_clear(iso, iso_get(m)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 0);
  for (size_t i = 0; i < 6; i++) CHECK(!iso_map_has(iso, iso_get(m), imm[i]));
  size_t cur = 0;
  iso_handle k, v;
  CHECK(!iso_map_next(iso, iso_get(m), &cur, &k, &v));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(5), iso_smi(6)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 1);
}

static void test_same_value_zero(void) {
  iso_handle m = iso_map_new(iso);

  /* NaN equals NaN, whatever its bits. */
  iso_handle nan1 = iso_number_new(iso, NAN);
  double other_nan;
  uint64_t bits = 0x7ff8000000000123ull;
  memcpy(&other_nan, &bits, sizeof bits);
  iso_handle nan2 = iso_number_new(iso, -other_nan);
  CHECK(isnan(iso_number_value(iso_get(nan2))));
  set_str(m, nan1, "nan");
  CHECK(map_has_string(m, iso_get(nan2), "nan"));
  set_str(m, nan2, "nan again");
  CHECK_UEQ(iso_map_size(iso_get(m)), 1);
  CHECK(map_has_string(m, iso_get(nan1), "nan again"));

  /* -0 equals 0. */
  iso_handle negz = iso_number_new(iso, -0.0);
  CHECK_EQ(iso_kind_of(iso_get(negz)), ISO_KIND_DOUBLE);
  set_str(m, negz, "zero");
  CHECK(map_has_string(m, iso_smi(0), "zero"));
  iso_handle zero = iso_handle_new(iso, iso_smi(0));
  set_str(m, zero, "zero again");
  CHECK_UEQ(iso_map_size(iso_get(m)), 2);
  CHECK(map_has_string(m, iso_get(negz), "zero again"));

  /* Doubles by value, not by box; a boxed integer equals itself too. */
  iso_handle h1 = iso_number_new(iso, 0.25);
  iso_handle h2 = iso_number_new(iso, 0.25);
  CHECK(iso_get(h1) != iso_get(h2));
  set_str(m, h1, "quarter");
  CHECK(map_has_string(m, iso_get(h2), "quarter"));
  iso_handle big1 = iso_integer_new(iso, ISO_SMI_MAX + 1);
  iso_handle big2 = iso_number_new(iso, 4611686018427387904.0);
  set_str(m, big1, "2^62");
  CHECK(map_has_string(m, iso_get(big2), "2^62"));
  CHECK_UEQ(iso_map_size(iso_get(m)), 4);

  /* "1" and 1 are different keys; so are true and 1, null and 0. */
  iso_handle one_str = iso_string_from_cstr(iso, "1");
  iso_handle one = iso_handle_new(iso, iso_smi(1));
  set_str(m, one_str, "string one");
  set_str(m, one, "number one");
  CHECK_UEQ(iso_map_size(iso_get(m)), 6);
  CHECK(map_has_string(m, iso_get(one_str), "string one"));
  CHECK(map_has_string(m, iso_smi(1), "number one"));
  CHECK(!iso_map_has(iso, iso_get(m), ISO_TRUE));
  CHECK(!iso_map_has(iso, iso_get(m), ISO_NULL));
  CHECK(!iso_map_has(iso, iso_get(m), ISO_FALSE));
  iso_handle one_dbl = iso_number_new(iso, 1.0); /* a small integer */
  CHECK(map_has_string(m, iso_get(one_dbl), "number one"));

  /* Strings by content. */
  iso_handle s1 = iso_string_from_cstr(iso, "key");
  iso_handle s2 = iso_string_new(iso, "key!", 3);
  CHECK(iso_get(s1) != iso_get(s2));
  set_str(m, s1, "by content");
  CHECK(map_has_string(m, iso_get(s2), "by content"));
  static const char nul[] = {'k', 'e', 'y', '\0', 'x'};
  iso_handle s3 = iso_string_new(iso, nul, sizeof nul);
  CHECK(!iso_map_has(iso, iso_get(m), iso_get(s3)));
  iso_handle empty = iso_string_new(iso, "", 0);
  CHECK(!iso_map_has(iso, iso_get(m), iso_get(empty)));
  set_str(m, empty, "empty");
  CHECK(map_has_string(m, iso_get(empty), "empty"));

  /* Objects by identity: equal contents are not enough. */
  iso_handle a1 = iso_array_new(iso, 0);
  iso_handle a2 = iso_array_new(iso, 0);
  set_str(m, a1, "first array");
  CHECK(!iso_map_has(iso, iso_get(m), iso_get(a2)));
  CHECK(map_has_string(m, iso_get(a1), "first array"));
  iso_handle a1b = iso_handle_new(iso, iso_get(a1));
  CHECK(map_has_string(m, iso_get(a1b), "first array"));

  /* Everything survives moves. */
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK(map_has_string(m, iso_get(nan2), "nan again"));
  CHECK(map_has_string(m, iso_smi(0), "zero again"));
  CHECK(map_has_string(m, iso_get(h2), "quarter"));
  CHECK(map_has_string(m, iso_get(s2), "by content"));
  CHECK(map_has_string(m, iso_get(a1), "first array"));
  CHECK(!iso_map_has(iso, iso_get(m), iso_get(a2)));
  CHECK_UEQ(iso_map_size(iso_get(m)), 9);
}

static void test_insertion_order(void) {
  iso_handle m = iso_map_new(iso);
  enum { N = 12 };
  char text[16];
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "k%d", i);
    iso_handle k = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(k), iso_smi(i)));
  }
  /* Replacing keeps the position; deleting and re-adding moves to the end. */
  iso_handle k3 = iso_string_from_cstr(iso, "k3");
  iso_handle k5 = iso_string_from_cstr(iso, "k5");
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(k3), iso_smi(333)));
  CHECK(iso_map_delete(iso, iso_get(m), iso_get(k5)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(k5), iso_smi(555)));
  int want_key[N], want_val[N], n = 0;
  for (int i = 0; i < N; i++) {
    if (i == 5) continue;
    want_key[n] = i;
    want_val[n++] = i == 3 ? 333 : i;
  }
  want_key[n] = 5;
  want_val[n++] = 555;

  for (int round = 0; round < 2; round++) {
    size_t cur = 0;
    int seen = 0;
    iso_handle k, v;
    while (iso_map_next(iso, iso_get(m), &cur, &k, &v)) {
      CHECK_LT(seen, N);
      snprintf(text, sizeof text, "k%d", want_key[seen]);
      CHECK_STRING(iso_get(k), text);
      CHECK_EQ(iso_smi_value(iso_get(v)), want_val[seen]);
      seen++;
    }
    CHECK_EQ(seen, N);
    /* The end is sticky. */
    CHECK(!iso_map_next(iso, iso_get(m), &cur, &k, &v));
    CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  }
}

static void test_iterate_while_mutating(void) {
  iso_handle m = iso_map_new(iso);
  for (int i = 0; i < 10; i++)
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(i), iso_smi(i)));
  size_t cur = 0;
  iso_handle k, v;
  int seen[40] = {0};
  int count = 0;
  while (iso_map_next(iso, iso_get(m), &cur, &k, &v)) {
    int64_t key = iso_smi_value(iso_get(k));
    CHECK(key >= 0 && key < 40);
    seen[key]++;
    count++;
    if (key == 2) {
      /* Delete entries not yet visited; add new ones. */
      CHECK(iso_map_delete(iso, iso_get(m), iso_smi(7)));
      CHECK(iso_map_delete(iso, iso_get(m), iso_smi(8)));
      for (int j = 20; j < 30; j++)
        CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(j), iso_smi(j)));
      CHECK_OK(iso_gc(iso, ISO_GC_MINOR)); /* cursors survive moves */
    }
    if (key == 25) CHECK(iso_map_delete(iso, iso_get(m), iso_smi(26)));
    CHECK_LE(count, 40);
  }
  for (int i = 0; i < 40; i++) {
    int want = (i < 10 && i != 7 && i != 8) || (i >= 20 && i < 30 && i != 26);
    CHECK_EQ(seen[i], want);
  }
  CHECK_UEQ(iso_map_size(iso_get(m)), 17);
}

static void test_identity_keys_move(void) {
  enum { N = 600 };
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle m = iso_map_new(iso);
  static iso_handle keys[N];
  for (int i = 0; i < N; i++) {
    keys[i] = iso_record_new(iso, keyrec);
    CHECK(keys[i] != NULL);
    *(int64_t *)iso_record_raw(iso_get(keys[i])) = i;
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(keys[i]), iso_smi(i)));
    /* Interleave garbage so survivors are not laid out in order. */
    CHECK(iso_array_new(iso, (size_t)(i % 13)) != NULL);
  }
  iso_handle stranger = iso_record_new(iso, keyrec);
  for (int round = 0; round < 4; round++) {
    CHECK_OK(iso_gc(iso, round == 2 ? ISO_GC_FULL : ISO_GC_MINOR));
    for (int i = 0; i < N; i++) {
      iso_scope in;
      iso_scope_open(iso, &in);
      CHECK(iso_map_has(iso, iso_get(m), iso_get(keys[i])));
      iso_handle v = iso_map_get(iso, iso_get(m), iso_get(keys[i]));
      CHECK(v != NULL);
      CHECK_EQ(iso_smi_value(iso_get(v)), i);
      CHECK_OK(iso_scope_close(&in));
    }
    CHECK(!iso_map_has(iso, iso_get(m), iso_get(stranger)));
  }
  /* Iteration hands back the very objects. */
  size_t cur = 0;
  iso_handle k, v;
  int i = 0;
  while (iso_map_next(iso, iso_get(m), &cur, &k, &v)) {
    CHECK_LT(i, N);
    CHECK(iso_get(k) == iso_get(keys[i]));
    CHECK_EQ(*(int64_t *)iso_record_raw(iso_get(k)), i);
    i++;
  }
  CHECK_EQ(i, N);
  /* Deleting by identity after the moves. */
  for (int j = 0; j < N; j += 2)
    CHECK(iso_map_delete(iso, iso_get(m), iso_get(keys[j])));
  CHECK_UEQ(iso_map_size(iso_get(m)), N / 2);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  for (int j = 0; j < N; j++)
    CHECK_EQ(iso_map_has(iso, iso_get(m), iso_get(keys[j])), j % 2 == 1);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
}

static void test_map_keeps_alive(void) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle m = iso_map_new(iso);
  for (int i = 0; i < 50; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    iso_handle key = iso_record_new(iso, keyrec);
    *(int64_t *)iso_record_raw(iso_get(key)) = i;
    char text[16];
    snprintf(text, sizeof text, "v%d", i);
    iso_handle val = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(key), iso_get(val)));
    CHECK_OK(iso_scope_close(&in));
  }
  /* Keys and values are reachable only through the map. */
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, keyrec), 50);
  /* iso_map_next makes handles: iterate in a scope of its own, so that
   * afterwards nothing but the map holds the keys. */
  iso_scope it;
  iso_scope_open(iso, &it);
  size_t cur = 0;
  iso_handle k, v;
  int i = 0;
  while (iso_map_next(iso, iso_get(m), &cur, &k, &v)) {
    char text[16];
    snprintf(text, sizeof text, "v%d", i);
    CHECK_EQ(*(int64_t *)iso_record_raw(iso_get(k)), i);
    CHECK_STRING(iso_get(v), text);
    i++;
  }
  CHECK_EQ(i, 50);
  CHECK_OK(iso_scope_close(&it));
  /* Deleted and cleared entries are released. */
  iso_scope_open(iso, &it);
  cur = 0;
  CHECK(iso_map_next(iso, iso_get(m), &cur, &k, &v));
  CHECK(iso_map_delete(iso, iso_get(m), iso_get(k)));
  CHECK_OK(iso_scope_close(&it));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, keyrec), 49);
  CHECK_OK(iso_map_clear(iso, iso_get(m)));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, keyrec), 0);
  CHECK_OK(iso_scope_close(&sc));
}

static void test_growth(void) {
  enum { N = 20000 };
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle m = iso_map_new(iso);
  for (int i = 0; i < N; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    char text[16];
    snprintf(text, sizeof text, "key%d", i);
    iso_handle k = iso_string_from_cstr(iso, text);
    CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(k), iso_smi(i)));
    /* Delete every third key soon after, leaving holes behind. */
    if (i % 3 == 2) {
      snprintf(text, sizeof text, "key%d", i - 1);
      iso_handle d = iso_string_from_cstr(iso, text);
      CHECK(iso_map_delete(iso, iso_get(m), iso_get(d)));
    }
    CHECK_OK(iso_scope_close(&in));
  }
  size_t want = N - N / 3;
  CHECK_UEQ(iso_map_size(iso_get(m)), want);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  for (int i = 0; i < N; i++) {
    iso_scope in;
    iso_scope_open(iso, &in);
    char text[16];
    snprintf(text, sizeof text, "key%d", i);
    iso_handle k = iso_string_from_cstr(iso, text);
    iso_handle v = iso_map_get(iso, iso_get(m), iso_get(k));
    CHECK(v != NULL);
    if (i % 3 == 1 && i + 1 < N)
      CHECK(iso_get(v) == ISO_UNDEFINED);
    else
      CHECK_EQ(iso_smi_value(iso_get(v)), i);
    CHECK_OK(iso_scope_close(&in));
  }
  /* Order is still insertion order. */
  size_t cur = 0, n = 0;
  iso_handle k, v;
  int64_t prev = -1;
  while (iso_map_next(iso, iso_get(m), &cur, &k, &v)) {
    CHECK_GT(iso_smi_value(iso_get(v)), prev);
    prev = iso_smi_value(iso_get(v));
    n++;
  }
  CHECK_UEQ(n, want);
  CHECK_OK(iso_scope_close(&sc));
}

static void test_wrong_kind(void) {
  iso_handle a = iso_array_new(iso, 0);
  const iso_value bad[] = {iso_get(a), iso_smi(1), ISO_NULL};
  for (size_t i = 0; i < 3; i++) {
    iso_value v = bad[i];
    size_t cur = 0;
    iso_handle k, val;
    CHECK_FAILS(iso_map_size(v), == 0, ISO_ERR_TYPE, "map");
    CHECK_FAILS_ST(iso_map_set(iso, v, iso_smi(1), iso_smi(2)), ISO_ERR_TYPE,
                   "map");
    CHECK_FAILS(iso_map_get(iso, v, iso_smi(1)), == NULL, ISO_ERR_TYPE, "map");
    CHECK_FAILS(iso_map_has(iso, v, iso_smi(1)), == false, ISO_ERR_TYPE, "map");
    CHECK_FAILS(iso_map_delete(iso, v, iso_smi(1)), == false, ISO_ERR_TYPE,
                "map");
    CHECK_FAILS_ST(iso_map_clear(iso, v), ISO_ERR_TYPE, "map");
    CHECK_FAILS(iso_map_next(iso, v, &cur, &k, &val), == false, ISO_ERR_TYPE,
                "map");
  }
  CHECK_UEQ(iso_array_length(iso_get(a)), 0);
  CHECK_FAILS(iso_map_new(NULL), == NULL, ISO_ERR_ARGUMENT, "");
  iso_handle m = iso_map_new(iso);
  iso_handle k, val;
  CHECK_FAILS(iso_map_next(iso, iso_get(m), NULL, &k, &val), == false,
              ISO_ERR_ARGUMENT, "");
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  keyrec = unit_register(rt, "Key", 0, 8);
  iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  RUN(test_basics);
  RUN(test_same_value_zero);
  RUN(test_insertion_order);
  RUN(test_iterate_while_mutating);
  RUN(test_identity_keys_move);
  RUN(test_map_keeps_alive);
  RUN(test_growth);
  RUN(test_wrong_kind);
  CHECK_OK(iso_isolate_free(iso));
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
