/*
 * The value model: immediates, small integers, boxed doubles, kinds.
 */
#include <math.h>

#include "helpers.h"

static iso_runtime *rt;

static void test_immediates(void) {
  CHECK_EQ(iso_kind_of(ISO_UNDEFINED), ISO_KIND_UNDEFINED);
  CHECK_EQ(iso_kind_of(ISO_NULL), ISO_KIND_NULL);
  CHECK_EQ(iso_kind_of(ISO_TRUE), ISO_KIND_BOOLEAN);
  CHECK_EQ(iso_kind_of(ISO_FALSE), ISO_KIND_BOOLEAN);
  CHECK_EQ(iso_kind_of(iso_smi(0)), ISO_KIND_INTEGER);
  /* Zero is not a value (its tag says reference, but it is null). */
  CHECK_EQ(iso_kind_of((iso_value)0), ISO_KIND_INVALID);

  CHECK(iso_is_undefined(ISO_UNDEFINED) && !iso_is_undefined(ISO_NULL));
  CHECK(iso_is_null(ISO_NULL) && !iso_is_null(ISO_UNDEFINED));
  CHECK(iso_is_bool(ISO_TRUE) && iso_is_bool(ISO_FALSE));
  CHECK(!iso_is_bool(ISO_NULL) && !iso_is_bool(iso_smi(1)));
  CHECK(iso_bool(true) == ISO_TRUE && iso_bool(false) == ISO_FALSE);
  const iso_value imm[] = {ISO_UNDEFINED, ISO_NULL, ISO_TRUE, ISO_FALSE};
  for (size_t i = 0; i < 4; i++) {
    CHECK(!iso_is_smi(imm[i]));
    CHECK(!iso_is_ref(imm[i]));
    CHECK(!iso_is_number(imm[i]));
    for (size_t j = 0; j < i; j++) CHECK(imm[i] != imm[j]);
  }
  CHECK(!iso_is_ref((iso_value)0));
}

static void test_small_integers(void) {
  const int64_t cases[] = {0,
                           1,
                           -1,
                           42,
                           -123456789,
                           1ll << 40,
                           -(1ll << 40),
                           ISO_SMI_MAX,
                           ISO_SMI_MIN,
                           ISO_SMI_MAX - 1,
                           ISO_SMI_MIN + 1};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    iso_value v = iso_smi(cases[i]);
    CHECK(iso_is_smi(v));
    CHECK(!iso_is_ref(v));
    CHECK_EQ(iso_smi_value(v), cases[i]);
    CHECK_EQ(iso_kind_of(v), ISO_KIND_INTEGER);
    CHECK(iso_is_number(v));
    CHECK(iso_number_value(v) == (double)cases[i]);
  }
  CHECK_EQ(ISO_SMI_MAX, (int64_t)((1ull << 62) - 1));
  CHECK_EQ(ISO_SMI_MIN, -(int64_t)(1ull << 62));
}

static void test_number_new(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);

  /* Integral values that fit are small integers. */
  const double ints[] = {0.0, 1.0, -1.0, 1e15, -4096.0, -4611686018427387904.0};
  for (size_t i = 0; i < 6; i++) {
    iso_handle h = iso_number_new(iso, ints[i]);
    CHECK(h != NULL);
    CHECK(iso_is_smi(iso_get(h)));
    CHECK(iso_number_value(iso_get(h)) == ints[i]);
  }

  /* Everything else is a boxed double with the exact bits. */
  const double dbl[] = {0.5,       -0.0,     1e300,
                        -2.5e-310, INFINITY, -INFINITY,
                        9.3e18,    -9.3e18,  4611686018427387904.0,
                        0.1};
  iso_handle hd[10];
  for (size_t i = 0; i < 10; i++) {
    hd[i] = iso_number_new(iso, dbl[i]);
    CHECK(hd[i] != NULL);
    iso_value v = iso_get(hd[i]);
    CHECK(iso_is_ref(v));
    CHECK_EQ(iso_kind_of(v), ISO_KIND_DOUBLE);
    CHECK(iso_is_number(v));
    double back = iso_number_value(v);
    CHECK(memcmp(&back, &dbl[i], sizeof back) == 0);
  }
  /* -0.0 keeps its sign. */
  CHECK(signbit(iso_number_value(iso_get(hd[1]))));
  iso_handle nan = iso_number_new(iso, NAN);
  CHECK(nan != NULL);
  CHECK_EQ(iso_kind_of(iso_get(nan)), ISO_KIND_DOUBLE);
  CHECK(isnan(iso_number_value(iso_get(nan))));

  /* Boxed doubles survive being moved and promoted, bit for bit. */
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  for (size_t i = 0; i < 10; i++) {
    double back = iso_number_value(iso_get(hd[i]));
    CHECK(memcmp(&back, &dbl[i], sizeof back) == 0);
  }
  CHECK(isnan(iso_number_value(iso_get(nan))));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_integer_new(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  const int64_t fit[] = {0, -7, ISO_SMI_MAX, ISO_SMI_MIN, 1ll << 53};
  for (size_t i = 0; i < 5; i++) {
    iso_handle h = iso_integer_new(iso, fit[i]);
    CHECK(h != NULL);
    CHECK(iso_is_smi(iso_get(h)));
    CHECK_EQ(iso_smi_value(iso_get(h)), fit[i]);
  }
  /* Outside the small-integer range: a boxed double of the nearest value. */
  const int64_t big[] = {ISO_SMI_MAX + 1, ISO_SMI_MIN - 1, INT64_MAX,
                         INT64_MIN};
  for (size_t i = 0; i < 4; i++) {
    iso_handle h = iso_integer_new(iso, big[i]);
    CHECK(h != NULL);
    CHECK_EQ(iso_kind_of(iso_get(h)), ISO_KIND_DOUBLE);
    CHECK(iso_number_value(iso_get(h)) == (double)big[i]);
  }
  CHECK_OK(iso_isolate_free(iso));
}

static void test_number_errors(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_handle s = iso_string_from_cstr(iso, "12");
  iso_handle a = iso_array_new(iso, 0);
  CHECK(!iso_is_number(iso_get(s)));
  CHECK(!iso_is_number(iso_get(a)));
  iso_clear_error();
  CHECK(isnan(iso_number_value(iso_get(s))));
  CHECK_ERROR(ISO_ERR_TYPE, "number|not a|type|kind");
  iso_clear_error();
  CHECK(isnan(iso_number_value(ISO_NULL)));
  CHECK_ERROR(ISO_ERR_TYPE, "number|not a|type|kind");
  iso_clear_error();
  CHECK(isnan(iso_number_value(ISO_TRUE)));
  CHECK_ERROR(ISO_ERR_TYPE, "");
  CHECK_FAILS(iso_number_new(NULL, 1.5), == NULL, ISO_ERR_ARGUMENT, "");
  CHECK_FAILS(iso_integer_new(NULL, 1), == NULL, ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));
}

static void test_kinds_of_objects(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_type t = unit_register(rt, "KindProbe", 1, 0);
  struct {
    iso_handle h;
    iso_kind kind;
  } c[] = {
      {iso_string_from_cstr(iso, "x"), ISO_KIND_STRING},
      {iso_array_new(iso, 3), ISO_KIND_ARRAY},
      {iso_map_new(iso), ISO_KIND_MAP},
      {iso_record_new(iso, t), ISO_KIND_RECORD},
      {iso_array_buffer_new(iso, 16), ISO_KIND_ARRAY_BUFFER},
      {iso_number_new(iso, 2.25), ISO_KIND_DOUBLE},
  };
  for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
    CHECK(c[i].h != NULL);
    CHECK(iso_is_ref(iso_get(c[i].h)));
    CHECK(!iso_is_smi(iso_get(c[i].h)));
    CHECK_EQ(iso_kind_of(iso_get(c[i].h)), c[i].kind);
  }
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  for (size_t i = 0; i < sizeof c / sizeof *c; i++)
    CHECK_EQ(iso_kind_of(iso_get(c[i].h)), c[i].kind);
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  RUN(test_immediates);
  RUN(test_small_integers);
  RUN(test_number_new);
  RUN(test_integer_new);
  RUN(test_number_errors);
  RUN(test_kinds_of_objects);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
