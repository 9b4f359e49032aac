/*
 * Structured clone: round trips of every kind and their combinations
 * (after the categories of the HTML structured clone tests, where our
 * value model has the concept), transfer and detach rules, shared
 * buffers, delegates and DataCloneError paths. Ports and messages are in
 * test_clone_messages.c.
 *
 * Every round trip runs both ways a value travels: iso_structured_clone
 * within one isolate, and iso_serialize / iso_deserialize into a second
 * isolate. The _stress variants rerun the round trips with a collection
 * every few allocations and the heap verified after each, so a reference
 * the deserializer forgot to root shows up as a corrupt or wrong graph.
 */
#include <float.h>
#include <math.h>

#include "clone_check.h"
#include "clone_host.h"

static iso_runtime *rt;
static iso_type node_t;  /* 2 slots: value, next */
static iso_type blob_t;  /* 1 slot, 13 raw bytes */
static iso_type empty_t; /* nothing at all */
static int stress;       /* isolates collect every few allocations */

static iso_isolate *new_isolate(void) {
  iso_isolate_params p = unit_params();
  if (stress) {
    p.stress_scavenge_every = 3;
    p.stress_full_every = 41;
    p.flags = ISO_ISOLATE_VERIFY_HEAP;
  }
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  return iso;
}

/* Clones v both ways and checks each copy against v. Returns the
 * in-process copy. */
static iso_handle round_trip(iso_isolate *iso, iso_isolate *other,
                             iso_value v) {
  iso_handle hv = iso_handle_new(iso, v);
  iso_handle c = iso_structured_clone(iso, iso_get(hv), NULL, 0);
  CHECK(c != NULL);
  CHECK(clone_same(iso, iso_get(hv), iso_get(c)));
  iso_message *m = NULL;
  CHECK_OK(iso_serialize(iso, iso_get(hv), NULL, 0, NULL, &m));
  CHECK(m != NULL);
  iso_scope s;
  iso_scope_open(other, &s);
  iso_handle d = iso_deserialize(other, m, NULL);
  CHECK(d != NULL);
  CHECK(clone_same(iso, iso_get(hv), iso_get(d)));
  CHECK_OK(iso_scope_close(&s));
  return c;
}

/* ---- primitives and numbers ---- */

static void test_primitives(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  const iso_value imms[] = {ISO_UNDEFINED,
                            ISO_NULL,
                            ISO_TRUE,
                            ISO_FALSE,
                            iso_smi(0),
                            iso_smi(1),
                            iso_smi(-1),
                            iso_smi(127),
                            iso_smi(-64),
                            iso_smi(1 << 20),
                            iso_smi(ISO_SMI_MAX),
                            iso_smi(ISO_SMI_MIN)};
  for (size_t i = 0; i < sizeof imms / sizeof *imms; i++) {
    iso_handle c = round_trip(iso, other, imms[i]);
    CHECK(iso_get(c) == imms[i]);
  }
  /* Something that is not a value at all. */
  CHECK_FAILS(iso_structured_clone(iso, (iso_value)0x12, NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE, "not a value");
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_doubles(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  const double ds[] = {1.5,
                       -2.25,
                       NAN,
                       -0.0,
                       INFINITY,
                       -INFINITY,
                       DBL_MIN,
                       DBL_MAX,
                       5e-324,
                       4611686018427387904.0,
                       -4611686018427387905.0 * 2,
                       0.1};
  for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle n = iso_number_new(iso, ds[i]);
    CHECK(n != NULL);
    iso_handle c = round_trip(iso, other, iso_get(n));
    double got = iso_number_value(iso_get(c));
    double want = ds[i];
    CHECK(memcmp(&got, &want, sizeof got) == 0 || (isnan(got) && isnan(want)));
    if (want == 0 && signbit(want)) CHECK(signbit(got));
    CHECK_OK(iso_scope_close(&s));
  }
  /* A NaN with a payload keeps its bits. */
  uint64_t bits = 0x7ff8000000abcdefull;
  double pnan;
  memcpy(&pnan, &bits, 8);
  iso_handle n = iso_number_new(iso, pnan);
  iso_handle c = iso_structured_clone(iso, iso_get(n), NULL, 0);
  double got = iso_number_value(iso_get(c));
  CHECK(memcmp(&got, &pnan, 8) == 0);
  /* Integers beyond the small range are boxed doubles and stay exact. */
  iso_handle big = iso_integer_new(iso, (int64_t)1 << 62);
  c = round_trip(iso, other, iso_get(big));
  CHECK(iso_number_value(iso_get(c)) == 4611686018427387904.0);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- strings ---- */

static void test_strings(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  const char *samples[] = {
      "",
      "a",
      "user-1234",
      "caf\xc3\xa9",                  /* 2-byte sequence */
      "\xe2\x82\xac",                 /* a lone 3-byte character */
      "\xf0\x9f\x98\x80 smile",       /* 4-byte sequence */
      "\xef\xbf\xbf\xf4\x8f\xbf\xbf", /* U+FFFF, U+10FFFF */
  };
  for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
    iso_handle s = iso_string_from_cstr(iso, samples[i]);
    CHECK(s != NULL);
    iso_handle c = round_trip(iso, other, iso_get(s));
    CHECK_STRING(iso_get(c), samples[i]);
  }
  /* Embedded NULs. */
  iso_handle z = iso_string_new(iso, "a\0b\0", 4);
  iso_handle c = round_trip(iso, other, iso_get(z));
  CHECK(unit_str_is(iso_get(c), "a\0b\0", 4));
  /* Around the identity threshold, and very long. */
  const size_t lens[] = {63, 64, 65, 4096, (size_t)3 << 20};
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
    char *buf = malloc(lens[i]);
    CHECK(buf != NULL);
    unit_fill(buf, lens[i], i);
    iso_scope sc;
    iso_scope_open(iso, &sc);
    iso_handle s = iso_string_new(iso, buf, lens[i]);
    CHECK(s != NULL);
    c = round_trip(iso, other, iso_get(s));
    CHECK(unit_str_is(iso_get(c), buf, lens[i]));
    CHECK(iso_get(c) != iso_get(s));
    /* The same string twice: long ones stay one object, short ones are
     * copied each time (as JavaScript's primitives). */
    iso_handle a = iso_array_new(iso, 0);
    CHECK_OK(iso_array_push(iso, iso_get(a), iso_get(s)));
    CHECK_OK(iso_array_push(iso, iso_get(a), iso_get(s)));
    iso_handle ca = round_trip(iso, other, iso_get(a));
    iso_handle e0 = iso_array_get(iso, iso_get(ca), 0);
    iso_handle e1 = iso_array_get(iso, iso_get(ca), 1);
    CHECK(unit_str_is(iso_get(e1), buf, lens[i]));
    CHECK_EQ(iso_get(e0) == iso_get(e1), lens[i] >= 64);
    /* The wire form of the shared long string holds its bytes once. */
    iso_message *m;
    CHECK_OK(iso_serialize(iso, iso_get(a), NULL, 0, NULL, &m));
    if (lens[i] >= 64) CHECK_ULE(iso_message_size(m), lens[i] + 32);
    iso_message_free(m);
    CHECK_OK(iso_scope_close(&sc));
    free(buf);
  }
  /* Map lookups by content work on cloned strings (same hash). */
  iso_handle map = iso_map_new(iso);
  iso_handle key = iso_string_from_cstr(iso, "k\xc3\xa9y");
  CHECK_OK(iso_map_set(iso, iso_get(map), iso_get(key), iso_smi(7)));
  iso_handle cm = round_trip(iso, other, iso_get(map));
  iso_handle probe = iso_string_from_cstr(iso, "k\xc3\xa9y");
  CHECK(iso_get(iso_map_get(iso, iso_get(cm), iso_get(probe))) == iso_smi(7));
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- arrays, maps, records ---- */

static void test_arrays(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  /* Empty, and "holes" (undefined elements). */
  iso_handle e = iso_array_new(iso, 0);
  iso_handle c = round_trip(iso, other, iso_get(e));
  CHECK_UEQ(iso_array_length(iso_get(c)), 0);
  iso_handle holes = iso_array_new(iso, 5);
  CHECK_OK(iso_array_set(iso, iso_get(holes), 2, iso_smi(2)));
  c = round_trip(iso, other, iso_get(holes));
  CHECK_UEQ(iso_array_length(iso_get(c)), 5);
  CHECK(iso_get(iso_array_get(iso, iso_get(c), 0)) == ISO_UNDEFINED);
  CHECK(iso_get(iso_array_get(iso, iso_get(c), 2)) == iso_smi(2));
  /* Nested, shared and cyclic. */
  iso_handle inner = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(inner), iso_smi(1)));
  iso_handle outer = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(outer), iso_get(inner)));
  CHECK_OK(iso_array_push(iso, iso_get(outer), iso_get(inner)));
  CHECK_OK(iso_array_push(iso, iso_get(outer), iso_get(outer)));
  c = round_trip(iso, other, iso_get(outer));
  iso_value co = iso_get(c);
  CHECK(iso_get(iso_array_get(iso, co, 0)) ==
        iso_get(iso_array_get(iso, co, 1)));
  CHECK(iso_get(iso_array_get(iso, co, 2)) == co);
  CHECK(iso_get(iso_array_get(iso, co, 0)) != iso_get(inner));
  /* Large. */
  iso_handle big = iso_array_new(iso, 0);
  for (int i = 0; i < 100000; i++)
    CHECK_OK(iso_array_push(iso, iso_get(big), iso_smi(i * 3 - 7)));
  c = round_trip(iso, other, iso_get(big));
  CHECK_UEQ(iso_array_length(iso_get(c)), 100000);
  CHECK(iso_get(iso_array_get(iso, iso_get(c), 99999)) ==
        iso_smi(99999 * 3 - 7));
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_maps(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_handle m = iso_map_new(iso);
  /* Keys of every kind, in an order that is not sorted. */
  iso_handle obj_key = iso_array_new(iso, 1);
  iso_handle rec_key = iso_record_new(iso, node_t);
  iso_handle str_key = iso_string_from_cstr(iso, "zeta");
  iso_handle dbl_key = iso_number_new(iso, 2.5);
  iso_handle nan_key = iso_number_new(iso, NAN);
  iso_handle ab_key = iso_array_buffer_new(iso, 3);
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(str_key), iso_smi(1)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_smi(-5), iso_smi(2)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(obj_key), iso_smi(3)));
  CHECK_OK(iso_map_set(iso, iso_get(m), ISO_TRUE, iso_smi(4)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(dbl_key), iso_smi(5)));
  CHECK_OK(iso_map_set(iso, iso_get(m), ISO_NULL, iso_smi(6)));
  CHECK_OK(iso_map_set(iso, iso_get(m), ISO_UNDEFINED, iso_smi(7)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(nan_key), iso_smi(8)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(rec_key), iso_get(rec_key)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(m), iso_get(m)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(ab_key), iso_get(obj_key)));
  CHECK_OK(iso_map_set(iso, iso_get(m), ISO_FALSE, iso_get(str_key)));
  /* A deleted entry leaves a hole that must not travel. */
  CHECK(iso_map_delete(iso, iso_get(m), iso_smi(-5)));
  iso_handle c = round_trip(iso, other, iso_get(m));
  iso_value cm = iso_get(c);
  CHECK_UEQ(iso_map_size(cm), 11);
  /* Order preserved (clone_same checks it too) and lookups work. */
  size_t cursor = 0;
  iso_handle k, v;
  CHECK(iso_map_next(iso, cm, &cursor, &k, &v));
  CHECK_STRING(iso_get(k), "zeta");
  CHECK(iso_map_next(iso, cm, &cursor, &k, &v));
  CHECK_EQ(iso_kind_of(iso_get(k)), ISO_KIND_ARRAY);
  CHECK(iso_get(k) != iso_get(obj_key));
  CHECK(iso_get(iso_map_get(iso, cm, iso_get(k))) == iso_smi(3));
  CHECK(iso_get(iso_map_get(iso, cm, ISO_TRUE)) == iso_smi(4));
  iso_handle q = iso_number_new(iso, 2.5);
  CHECK(iso_get(iso_map_get(iso, cm, iso_get(q))) == iso_smi(5));
  q = iso_number_new(iso, NAN);
  CHECK(iso_get(iso_map_get(iso, cm, iso_get(q))) == iso_smi(8));
  CHECK(iso_get(iso_map_get(iso, cm, cm)) == cm); /* itself, a key */
  CHECK(!iso_map_has(iso, cm, iso_smi(-5)));
  /* Empty map. */
  iso_handle e = iso_map_new(iso);
  c = round_trip(iso, other, iso_get(e));
  CHECK_UEQ(iso_map_size(iso_get(c)), 0);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_records(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_handle b = iso_record_new(iso, blob_t);
  memcpy(iso_record_raw(iso_get(b)), "raw bytes 123", 13);
  iso_handle s = iso_string_from_cstr(iso, "slot");
  CHECK_OK(iso_record_set(iso, iso_get(b), 0, iso_get(s)));
  iso_handle c = round_trip(iso, other, iso_get(b));
  CHECK_EQ(iso_type_of(iso_get(c)), blob_t);
  CHECK(memcmp(iso_record_raw(iso_get(c)), "raw bytes 123", 13) == 0);
  CHECK_STRING(iso_record_slot(iso_get(c), 0), "slot");
  /* No slots and no raw bytes. */
  iso_handle e = iso_record_new(iso, empty_t);
  c = round_trip(iso, other, iso_get(e));
  CHECK_EQ(iso_type_of(iso_get(c)), empty_t);
  /* The benchmark's small record: {id, name, tags, score, active}. */
  iso_type_desc d = unit_desc("clone.user", 5, 0);
  iso_type user_t = iso_type_find(rt, "clone.user");
  if (!user_t) user_t = iso_type_register(rt, &d);
  CHECK(user_t != 0);
  iso_handle tags = iso_array_new(iso, 0);
  const char *t3[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    iso_handle t = iso_string_from_cstr(iso, t3[i]);
    CHECK_OK(iso_array_push(iso, iso_get(tags), iso_get(t)));
  }
  iso_handle name = iso_string_from_cstr(iso, "user-1234");
  iso_handle score = iso_number_new(iso, 1.5);
  iso_value init[5] = {iso_smi(1234), iso_get(name), iso_get(tags),
                       iso_get(score), ISO_TRUE};
  iso_handle u = iso_record_new_v(iso, user_t, 5, init);
  CHECK(u != NULL);
  c = round_trip(iso, other, iso_get(u));
  CHECK(iso_record_slot(iso_get(c), 0) == iso_smi(1234));
  CHECK_STRING(iso_record_slot(iso_get(c), 1), "user-1234");
  CHECK(iso_number_value(iso_record_slot(iso_get(c), 3)) == 1.5);
  /* A cycle through records: a ring of three. */
  iso_handle r0 = iso_record_new(iso, node_t);
  iso_handle r1 = iso_record_new(iso, node_t);
  iso_handle r2 = iso_record_new(iso, node_t);
  CHECK_OK(iso_record_set(iso, iso_get(r0), 1, iso_get(r1)));
  CHECK_OK(iso_record_set(iso, iso_get(r1), 1, iso_get(r2)));
  CHECK_OK(iso_record_set(iso, iso_get(r2), 1, iso_get(r0)));
  c = round_trip(iso, other, iso_get(r0));
  iso_value x = iso_get(c);
  CHECK(iso_record_slot(iso_record_slot(iso_record_slot(x, 1), 1), 1) == x);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- buffers and views ---- */

static void test_array_buffers(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  const size_t sizes[] = {0, 1, 100, (size_t)1 << 20};
  for (size_t i = 0; i < 4; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle ab = iso_array_buffer_new(iso, sizes[i]);
    if (sizes[i]) unit_fill(iso_array_buffer_data(iso_get(ab)), sizes[i], i);
    iso_handle c = round_trip(iso, other, iso_get(ab));
    CHECK_UEQ(iso_array_buffer_byte_length(iso_get(c)), sizes[i]);
    CHECK(!iso_array_buffer_is_detached(iso_get(ab)));
    if (sizes[i]) {
      /* A copy: its own memory. */
      CHECK(iso_array_buffer_data(iso_get(c)) !=
            iso_array_buffer_data(iso_get(ab)));
      ((char *)iso_array_buffer_data(iso_get(c)))[0] ^= 1;
      CHECK(memcmp(iso_array_buffer_data(iso_get(c)),
                   iso_array_buffer_data(iso_get(ab)), 1) != 0);
    }
    CHECK_OK(iso_scope_close(&s));
  }
  /* A detached buffer cannot be cloned, anywhere in the graph. */
  iso_handle ab = iso_array_buffer_new(iso, 8);
  CHECK_OK(iso_array_buffer_detach(iso, iso_get(ab)));
  CHECK_FAILS(iso_structured_clone(iso, iso_get(ab), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE, "detached");
  iso_handle arr = iso_array_new(iso, 2);
  CHECK_OK(iso_array_set(iso, iso_get(arr), 1, iso_get(ab)));
  iso_message *m = (iso_message *)1;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(arr), NULL, 0, NULL, &m),
                 ISO_ERR_DATA_CLONE, "value[1]: a detached ArrayBuffer");
  CHECK(m == NULL);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

typedef struct freed_count {
  int calls;
  void *data;
} freed_count;

static void count_free(void *data, size_t length, void *ctx) {
  (void)length;
  freed_count *f = ctx;
  f->calls++;
  f->data = data;
  free(data);
}

static void test_transfer(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_handle ab = iso_array_buffer_new(iso, 4096);
  unit_fill(iso_array_buffer_data(iso_get(ab)), 4096, 7);
  char expect[4096];
  memcpy(expect, iso_array_buffer_data(iso_get(ab)), 4096);
  void *bytes = iso_array_buffer_data(iso_get(ab));
  iso_handle view =
      iso_typed_array_new(iso, ISO_TYPED_UINT32, iso_get(ab), 16, 100);
  iso_handle arr = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(ab)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(view)));
  iso_value tl[1] = {iso_get(ab)};
  iso_handle c = iso_structured_clone(iso, iso_get(arr), tl, 1);
  CHECK(c != NULL);
  /* Moved with zero copies; the source is detached, its view empty. */
  CHECK(iso_array_buffer_is_detached(iso_get(ab)));
  CHECK_UEQ(iso_array_buffer_byte_length(iso_get(ab)), 0);
  CHECK_UEQ(iso_typed_array_length(iso_get(view)), 0);
  CHECK(iso_typed_array_data(iso_get(view)) == NULL);
  iso_value cab = iso_get(iso_array_get(iso, iso_get(c), 0));
  iso_value cview = iso_get(iso_array_get(iso, iso_get(c), 1));
  CHECK(iso_array_buffer_data(cab) == bytes);
  CHECK(memcmp(iso_array_buffer_data(cab), expect, 4096) == 0);
  CHECK(iso_get(iso_typed_array_buffer(iso, cview)) == cab);
  CHECK(iso_typed_array_data(cview) == (char *)bytes + 16);
  CHECK_UEQ(iso_typed_array_length(cview), 100);
  /* A detached buffer cannot be sent again, or transferred again. */
  iso_message *m = NULL;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(arr), NULL, 0, NULL, &m),
                 ISO_ERR_DATA_CLONE, "detached");
  CHECK_FAILS_ST(iso_serialize(iso, ISO_NULL, tl, 1, NULL, &m),
                 ISO_ERR_DATA_CLONE, "transfer[0]|detached");

  /* Across isolates, through a message: the external memory's callback
   * moves along and runs once, in the receiver, when its buffer dies. */
  freed_count fc = {0, NULL};
  void *mem = malloc(64);
  memset(mem, 0x5a, 64);
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle ext = iso_array_buffer_new_external(iso, mem, 64, count_free, &fc);
  tl[0] = iso_get(ext);
  CHECK_OK(iso_serialize(iso, iso_get(ext), tl, 1, NULL, &m));
  CHECK(iso_array_buffer_is_detached(iso_get(ext)));
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL)); /* the detached source dies */
  CHECK_EQ(fc.calls, 0);
  iso_scope_open(other, &sc);
  iso_handle got = iso_deserialize(other, m, NULL);
  CHECK(got != NULL);
  CHECK(iso_array_buffer_data(iso_get(got)) == mem);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(other, ISO_GC_FULL));
  CHECK_EQ(fc.calls, 1);
  CHECK(fc.data == mem);

  /* A transferred buffer that the value does not reference still moves
   * (as in HTML); it is freed with the message or the clone. */
  ab = iso_array_buffer_new(iso, 10);
  tl[0] = iso_get(ab);
  c = iso_structured_clone(iso, iso_smi(1), tl, 1);
  CHECK(c != NULL && iso_get(c) == iso_smi(1));
  CHECK(iso_array_buffer_is_detached(iso_get(ab)));

  /* An unreceived message frees what it carries. */
  fc.calls = 0;
  mem = malloc(32);
  ext = iso_array_buffer_new_external(iso, mem, 32, count_free, &fc);
  tl[0] = iso_get(ext);
  CHECK_OK(iso_serialize(iso, iso_get(ext), tl, 1, NULL, &m));
  CHECK_EQ(fc.calls, 0);
  iso_message_free(m);
  CHECK_EQ(fc.calls, 1);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_transfer_errors(void) {
  iso_isolate *iso = new_isolate();
  iso_handle ab = iso_array_buffer_new(iso, 16);
  iso_handle ab2 = iso_array_buffer_new(iso, 16);
  iso_handle sab = iso_shared_array_buffer_new(iso, 16);
  iso_handle str = iso_string_from_cstr(iso, "x");
  iso_handle ext = iso_external_new(iso, (void *)&rt, NULL, NULL);
  iso_message *m = NULL;
  iso_value tl[3];

  tl[0] = iso_get(ab);
  tl[1] = iso_get(ab);
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ab), tl, 2, NULL, &m),
                 ISO_ERR_DATA_CLONE, "transfer[1]: listed twice");
  tl[1] = iso_get(sab);
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ab), tl, 2, NULL, &m),
                 ISO_ERR_DATA_CLONE, "SharedArrayBuffer cannot be transferred");
  tl[1] = iso_get(str);
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ab), tl, 2, NULL, &m),
                 ISO_ERR_DATA_CLONE, "a string cannot be transferred");
  tl[1] = ISO_NULL;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ab), tl, 2, NULL, &m),
                 ISO_ERR_DATA_CLONE, "transfer[1]");
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ab), NULL, 2, NULL, &m),
                 ISO_ERR_ARGUMENT, "transfer");
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ab), NULL, 0, NULL, NULL),
                 ISO_ERR_ARGUMENT, "out");
  /* A valid transfer list, but the value fails: nothing is detached. */
  iso_handle arr = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(ab)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(ext)));
  tl[0] = iso_get(ab);
  tl[1] = iso_get(ab2);
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(arr), tl, 2, NULL, &m),
                 ISO_ERR_DATA_CLONE,
                 "value[1]: an external without a "
                 "delegate");
  CHECK(m == NULL);
  CHECK(!iso_array_buffer_is_detached(iso_get(ab)));
  CHECK(!iso_array_buffer_is_detached(iso_get(ab2)));
  CHECK_FAILS(iso_structured_clone(iso, iso_get(arr), tl, 2), == NULL,
              ISO_ERR_DATA_CLONE, "external");
  CHECK(!iso_array_buffer_is_detached(iso_get(ab)));
  CHECK_UEQ(iso_array_buffer_byte_length(iso_get(ab2)), 16);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_typed_arrays(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_handle ab = iso_array_buffer_new(iso, 64);
  unit_fill(iso_array_buffer_data(iso_get(ab)), 64, 3);
  iso_handle arr = iso_array_new(iso, 0);
  for (int t = ISO_TYPED_INT8; t <= ISO_TYPED_DATA_VIEW; t++) {
    size_t es = t <= ISO_TYPED_UINT8_CLAMPED || t == ISO_TYPED_DATA_VIEW ? 1
                : t <= ISO_TYPED_UINT16                                  ? 2
                : t <= ISO_TYPED_FLOAT32                                 ? 4
                                                                         : 8;
    iso_handle v = iso_typed_array_new(iso, (iso_typed_array_type)t,
                                       iso_get(ab), es * 2, 3);
    CHECK(v != NULL);
    CHECK_EQ(iso_typed_array_type_of(iso_get(v)), t);
    CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(v)));
    /* Misaligned and oversized views are refused. */
    if (es > 1)
      CHECK_FAILS(
          iso_typed_array_new(iso, (iso_typed_array_type)t, iso_get(ab), 1, 1),
          == NULL, ISO_ERR_RANGE, "multiple");
    CHECK_FAILS(iso_typed_array_new(iso, (iso_typed_array_type)t, iso_get(ab),
                                    0, 64 / es + 1),
                == NULL, ISO_ERR_RANGE, "fit");
  }
  /* A whole-buffer view and an empty one at the end. */
  iso_handle whole =
      iso_typed_array_new(iso, ISO_TYPED_UINT8, iso_get(ab), 0, 64);
  iso_handle none =
      iso_typed_array_new(iso, ISO_TYPED_FLOAT64, iso_get(ab), 64, 0);
  CHECK(none != NULL && iso_typed_array_data(iso_get(none)) == NULL);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(whole)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(none)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(whole))); /* again */
  iso_handle c = round_trip(iso, other, iso_get(arr));
  /* All the copies share one cloned buffer, as the originals do. */
  iso_value cb = 0;
  size_t n = iso_array_length(iso_get(c));
  for (size_t i = 0; i < n; i++) {
    iso_value v = iso_get(iso_array_get(iso, iso_get(c), i));
    iso_value b = iso_get(iso_typed_array_buffer(iso, v));
    if (!cb) cb = b;
    CHECK(b == cb);
  }
  CHECK(cb != iso_get(ab));
  iso_value w = iso_get(iso_array_get(iso, iso_get(c), n - 1));
  CHECK(iso_get(iso_array_get(iso, iso_get(c), n - 3)) == w);
  CHECK(memcmp(iso_typed_array_data(w), iso_array_buffer_data(iso_get(ab)),
               64) == 0);
  /* The buffer alone after a view, and a view after its buffer. */
  iso_handle pair = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(pair), iso_get(whole)));
  CHECK_OK(iso_array_push(iso, iso_get(pair), iso_get(ab)));
  round_trip(iso, other, iso_get(pair));
  pair = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(pair), iso_get(ab)));
  CHECK_OK(iso_array_push(iso, iso_get(pair), iso_get(whole)));
  round_trip(iso, other, iso_get(pair));
  /* Wrong arguments. */
  CHECK_FAILS(
      iso_typed_array_new(iso, (iso_typed_array_type)99, iso_get(ab), 0, 1),
      == NULL, ISO_ERR_ARGUMENT, "type");
  CHECK_FAILS(iso_typed_array_new(iso, ISO_TYPED_UINT8, iso_get(arr), 0, 1),
              == NULL, ISO_ERR_TYPE, "array_buffer");
  CHECK_FAILS(iso_typed_array_length(iso_get(arr)), == 0, ISO_ERR_TYPE,
              "typed_array");
  /* A view over a detached buffer. */
  iso_handle gone = iso_array_buffer_new(iso, 8);
  iso_handle gv =
      iso_typed_array_new(iso, ISO_TYPED_UINT8, iso_get(gone), 0, 8);
  CHECK_OK(iso_array_buffer_detach(iso, iso_get(gone)));
  CHECK_UEQ(iso_typed_array_length(iso_get(gv)), 0);
  CHECK_FAILS(iso_structured_clone(iso, iso_get(gv), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE, "detached");
  CHECK_FAILS(iso_typed_array_new(iso, ISO_TYPED_UINT8, iso_get(gone), 0, 0),
              == NULL, ISO_ERR_DETACHED, "detached");
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_shared_array_buffers(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_handle sab = iso_shared_array_buffer_new(iso, 256);
  CHECK(sab != NULL);
  CHECK_EQ(iso_kind_of(iso_get(sab)), ISO_KIND_SHARED_ARRAY_BUFFER);
  unsigned char *bytes = iso_shared_array_buffer_data(iso_get(sab));
  CHECK(bytes != NULL);
  for (int i = 0; i < 256; i++) CHECK_EQ(bytes[i], 0);
  iso_handle view =
      iso_typed_array_new(iso, ISO_TYPED_INT32, iso_get(sab), 8, 4);
  iso_handle arr = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(sab)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(view)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(sab)));
  /* Into another isolate: same bytes, by reference. */
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, NULL, &m));
  iso_handle got = iso_deserialize(other, m, NULL);
  CHECK(got != NULL);
  CHECK(clone_same(iso, iso_get(arr), iso_get(got)));
  iso_value osab = iso_get(iso_array_get(other, iso_get(got), 0));
  CHECK(iso_get(iso_array_get(other, iso_get(got), 2)) == osab);
  CHECK(iso_shared_array_buffer_data(osab) == bytes);
  iso_value oview = iso_get(iso_array_get(other, iso_get(got), 1));
  ((int32_t *)iso_typed_array_data(oview))[1] = 77;
  CHECK_EQ(((int32_t *)iso_typed_array_data(iso_get(view)))[1], 77);
  /* Several messages and clones of it, some never received. */
  iso_message *unread;
  CHECK_OK(iso_serialize(iso, iso_get(sab), NULL, 0, NULL, &unread));
  iso_handle c = iso_structured_clone(iso, iso_get(sab), NULL, 0);
  CHECK(iso_shared_array_buffer_data(iso_get(c)) == bytes);
  iso_message_free(unread);
  /* The sender dies: the bytes live on in the receiver (ASan would see a
   * use after free otherwise, and a leak if the last reference did not
   * free them). */
  CHECK_OK(iso_isolate_free(iso));
  CHECK_EQ(((int32_t *)iso_typed_array_data(oview))[1], 77);
  memset(iso_shared_array_buffer_data(osab), 1, 256);
  iso_memory_usage_t u = unit_usage(other);
  CHECK_UGE(u.array_buffers, 256);
  CHECK_FAILS(iso_shared_array_buffer_data(iso_get(got)), == NULL, ISO_ERR_TYPE,
              "shared_array_buffer");
  /* An empty one. */
  iso_handle e = iso_shared_array_buffer_new(other, 0);
  CHECK_UEQ(iso_shared_array_buffer_byte_length(iso_get(e)), 0);
  CHECK(iso_shared_array_buffer_data(iso_get(e)) == NULL);
  iso_handle ec = iso_structured_clone(other, iso_get(e), NULL, 0);
  CHECK_UEQ(iso_shared_array_buffer_byte_length(iso_get(ec)), 0);
  CHECK_OK(iso_gc(other, ISO_GC_FULL));
  CHECK_OK(iso_heap_verify(other));
  CHECK_OK(iso_isolate_free(other));
}

/* ---- delegates and externals ---- */

static void test_delegates(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  host_log log;
  iso_clone_delegate d = host_delegate(&log);
  int target = 5;
  iso_handle ext = iso_external_new(iso, &target, NULL, NULL);
  CHECK(iso_external_value(iso_get(ext)) == &target);
  iso_handle hr = iso_record_new(iso, host_t);
  memcpy(iso_record_raw(iso_get(hr)), "12345678", 8);
  iso_handle plain = iso_record_new(iso, node_t);
  iso_handle arr = iso_array_new(iso, 0);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(ext)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(hr)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(plain)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(ext))); /* shared */
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, &d, &m));
  CHECK_EQ(log.writes, 3); /* ext once, hr, plain (declined) */
  /* Without a delegate, the host objects cannot be read. */
  CHECK_FAILS(iso_deserialize(other, m, NULL), == NULL, ISO_ERR_DATA_CLONE,
              "no delegate");
  /* A failing reader: the error names the offset and the message stays. */
  log.fail_read = 1;
  CHECK_FAILS(iso_deserialize(other, m, &d), == NULL, ISO_ERR_DATA_CLONE,
              "read_host failed");
  log.fail_read = 0;
  log.overread = 1;
  CHECK_FAILS(iso_deserialize(other, m, &d), == NULL, ISO_ERR_DATA_CLONE,
              "left in the host object");
  log.overread = 0;
  iso_handle got = iso_deserialize(other, m, &d);
  CHECK(got != NULL);
  iso_value g = iso_get(got);
  iso_value g0 = iso_get(iso_array_get(other, g, 0));
  CHECK(iso_external_value(g0) == &target);
  CHECK(iso_get(iso_array_get(other, g, 3)) == g0);
  iso_value g1 = iso_get(iso_array_get(other, g, 1));
  CHECK_EQ(iso_type_of(g1), host_t);
  CHECK(iso_record_slot(g1, 0) == iso_smi(42));
  CHECK(memcmp(iso_record_raw(g1), "12345678", 8) == 0);
  CHECK_EQ(iso_type_of(iso_get(iso_array_get(other, g, 2))), node_t);
  /* In-process clones have no delegate: externals fail there. */
  CHECK_FAILS(iso_structured_clone(iso, iso_get(ext), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE, "value: an external without a delegate");
  /* A failing writer names the value and posts nothing. */
  log.fail_write = 1;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(arr), NULL, 0, &d, &m),
                 ISO_ERR_DATA_CLONE,
                 "value[0]: the delegate's write_host "
                 "failed with ISO_ERR_ARGUMENT");
  log.fail_write = 0;
  /* A writer that allocates (and so may move what is being written) is
   * refused. */
  log.allocate = 1;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ext), NULL, 0, &d, &m),
                 ISO_ERR_DATA_CLONE, "collection");
  log.allocate = 0;
  /* A delegate without its size. */
  iso_clone_delegate bad = d;
  bad.struct_size = 0;
  CHECK_FAILS_ST(iso_serialize(iso, iso_get(ext), NULL, 0, &bad, &m),
                 ISO_ERR_ARGUMENT, "struct_size");
  /* The reader and writer refuse NULL. */
  CHECK_FAILS_ST(iso_clone_write_bytes(NULL, "x", 1), ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS_ST(iso_clone_read_bytes(NULL, &target, 1), ISO_ERR_ARGUMENT,
                 "NULL");
  /* Externals: free callbacks and wrong kinds. */
  CHECK_FAILS(iso_external_new(iso, NULL, count_free, NULL), == NULL,
              ISO_ERR_ARGUMENT, "NULL");
  CHECK_FAILS(iso_external_value(iso_get(arr)), == NULL, ISO_ERR_TYPE,
              "external");
  freed_count fc = {0, NULL};
  void *mem = malloc(8);
  iso_scope s;
  iso_scope_open(iso, &s);
  CHECK(iso_external_new(iso, mem, count_free, &fc) != NULL);
  CHECK_OK(iso_scope_close(&s));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(fc.calls, 1);
  CHECK(fc.data == mem);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* A delegate that clones from inside the clone: an external travels as a
 * whole nested message (the string it points to, serialized), which
 * read_host deserializes. Both halves then run while the outer clone
 * holds the thread's scratch state. */
static iso_status nested_write(void *ctx, iso_isolate *iso, iso_value v,
                               iso_clone_writer *w) {
  (void)ctx;
  if (iso_kind_of(v) != ISO_KIND_EXTERNAL) return ISO_ERR_TYPE;
  iso_global *g = iso_external_value(v);
  iso_message *inner = NULL;
  iso_status st =
      iso_serialize(iso, iso_global_value(g), NULL, 0, NULL, &inner);
  if (st != ISO_OK) return st;
  uint64_t n = iso_message_size(inner);
  st = iso_clone_write_bytes(w, &n, sizeof n);
  if (st == ISO_OK) st = iso_clone_write_bytes(w, iso_message_data(inner), n);
  iso_message_free(inner);
  return st;
}

static iso_handle nested_read(void *ctx, iso_isolate *iso,
                              iso_clone_reader *r) {
  (void)ctx;
  uint64_t n;
  if (iso_clone_read_bytes(r, &n, sizeof n) != ISO_OK || n > 4096) return NULL;
  char buf[4096];
  if (iso_clone_read_bytes(r, buf, n) != ISO_OK) return NULL;
  iso_message *inner = iso_message_from_bytes(buf, n);
  iso_handle h = inner ? iso_deserialize(iso, inner, NULL) : NULL;
  if (!h) iso_message_free(inner);
  return h;
}

static void test_nested_clones(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_clone_delegate d = {sizeof d, nested_write, nested_read, NULL};
  iso_handle arr = iso_array_new(iso, 0);
  iso_global *gs[3];
  for (int i = 0; i < 3; i++) {
    char text[32];
    snprintf(text, sizeof text, "inner value %d", i);
    iso_handle s = iso_string_from_cstr(iso, text);
    gs[i] = iso_global_new(iso, iso_get(s));
    iso_handle e = iso_external_new(iso, gs[i], NULL, NULL);
    CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(e)));
    CHECK_OK(iso_array_push(iso, iso_get(arr), iso_smi(i)));
  }
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, &d, &m));
  iso_handle got = iso_deserialize(other, m, &d);
  CHECK(got != NULL);
  CHECK_UEQ(iso_array_length(iso_get(got)), 6);
  for (int i = 0; i < 3; i++) {
    char text[32];
    snprintf(text, sizeof text, "inner value %d", i);
    CHECK_STRING(iso_get(iso_array_get(other, iso_get(got), 2 * i)), text);
    CHECK(iso_get(iso_array_get(other, iso_get(got), 2 * i + 1)) == iso_smi(i));
    iso_global_free(iso, gs[i]);
  }
  /* The outer scratch state is intact: the next clones work. */
  iso_handle c = iso_structured_clone(other, iso_get(got), NULL, 0);
  CHECK(c != NULL && clone_same(other, iso_get(got), iso_get(c)));
  iso_handle s2 = iso_string_from_cstr(iso, "after");
  round_trip(iso, other, iso_get(s2));
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- DataCloneError paths ---- */

static void test_error_paths(void) {
  iso_isolate *iso = new_isolate();
  iso_handle ext = iso_external_new(iso, &rt, NULL, NULL);
  /* value[3].next.handle in our terms: an array, a record slot, a map
   * value by key. */
  iso_handle holder = iso_map_new(iso);
  iso_handle hkey = iso_string_from_cstr(iso, "handle");
  CHECK_OK(iso_map_set(iso, iso_get(holder), iso_get(hkey), iso_get(ext)));
  iso_handle node = iso_record_new(iso, node_t);
  CHECK_OK(iso_record_set(iso, iso_get(node), 1, iso_get(holder)));
  iso_handle arr = iso_array_new(iso, 4);
  CHECK_OK(iso_array_set(iso, iso_get(arr), 3, iso_get(node)));
  CHECK_FAILS(iso_structured_clone(iso, iso_get(arr), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE,
              "value[3].clone.node#1[\"handle\"]: an external without a "
              "delegate");
  /* As a map key, and with other kinds of keys on the way. */
  iso_handle km = iso_map_new(iso);
  CHECK_OK(iso_map_set(iso, iso_get(km), iso_smi(12), iso_get(holder)));
  CHECK_FAILS(iso_structured_clone(iso, iso_get(km), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE, "value[12][\"handle\"]: an external");
  iso_handle km2 = iso_map_new(iso);
  CHECK_OK(iso_map_set(iso, iso_get(km2), ISO_NULL, iso_smi(1)));
  CHECK_OK(iso_map_set(iso, iso_get(km2), iso_get(ext), iso_smi(2)));
  CHECK_FAILS(iso_structured_clone(iso, iso_get(km2), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE, "value[key #1]: an external");
  /* A deep path keeps its two ends. */
  iso_handle deep = iso_array_new(iso, 1);
  CHECK_OK(iso_array_set(iso, iso_get(deep), 0, iso_get(ext)));
  for (int i = 0; i < 500; i++) {
    iso_handle up = iso_array_new(iso, 1);
    CHECK_OK(iso_array_set(iso, iso_get(up), 0, iso_get(deep)));
    iso_handle_set(deep, iso_get(up));
  }
  CHECK_FAILS(iso_structured_clone(iso, iso_get(deep), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE, "value[0][0][0]");
  CHECK(strstr(iso_last_error(), "more)") != NULL);
  CHECK(strstr(iso_last_error(), "[0]: an external without a delegate"));
  /* A port outside the transfer list. */
  iso_port *p1, *p2;
  CHECK_OK(iso_channel_new(&p1, &p2));
  iso_handle pv = iso_port_to_value(iso, p1);
  CHECK(pv != NULL);
  CHECK_OK(iso_array_set(iso, iso_get(arr), 0, iso_get(pv)));
  CHECK_FAILS(iso_structured_clone(iso, iso_get(arr), NULL, 0), == NULL,
              ISO_ERR_DATA_CLONE,
              "value[0]: a port that is not in the "
              "transfer list");
  iso_port_close(p2);
  CHECK_OK(iso_isolate_free(iso));
}

/* ---- combinations ---- */

/* A graph with every kind, sharing and cycles. */
static iso_handle build_rich(iso_isolate *iso) {
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle root = iso_array_new(iso, 0);
  /* The handle first: making it may move root. */
#define PUSH(h)                                                \
  do {                                                         \
    iso_handle h_ = (h);                                       \
    CHECK(h_ != NULL);                                         \
    CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(h_))); \
  } while (0)
#define PUSHV(v) CHECK_OK(iso_array_push(iso, iso_get(root), (v)))
  PUSHV(ISO_UNDEFINED);
  PUSHV(ISO_NULL);
  PUSHV(ISO_TRUE);
  PUSHV(iso_smi(-123456789));
  PUSH(iso_number_new(iso, -0.0));
  PUSH(iso_number_new(iso, NAN));
  PUSH(iso_string_from_cstr(iso, ""));
  PUSH(iso_string_from_cstr(iso, "\xe6\x97\xa5\xe6\x9c\xac"));
  char longs[100];
  unit_fill(longs, sizeof longs, 9);
  iso_handle ls = iso_string_new(iso, longs, sizeof longs);
  PUSH(ls);
  iso_handle m = iso_map_new(iso);
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(ls), iso_get(root)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(root), iso_get(ls)));
  PUSH(m);
  iso_handle rec = iso_record_new(iso, blob_t);
  memcpy(iso_record_raw(iso_get(rec)), "0123456789abc", 13);
  CHECK_OK(iso_record_set(iso, iso_get(rec), 0, iso_get(m)));
  PUSH(rec);
  iso_handle ab = iso_array_buffer_new(iso, 40);
  unit_fill(iso_array_buffer_data(iso_get(ab)), 40, 1);
  PUSH(iso_typed_array_new(iso, ISO_TYPED_FLOAT64, iso_get(ab), 8, 4));
  PUSH(ab);
  PUSH(iso_typed_array_new(iso, ISO_TYPED_INT16, iso_get(ab), 2, 3));
  iso_handle sab = iso_shared_array_buffer_new(iso, 24);
  PUSH(iso_typed_array_new(iso, ISO_TYPED_UINT8, iso_get(sab), 1, 20));
  PUSH(sab);
  PUSH(root); /* itself */
  PUSH(rec);
  PUSH(iso_array_new(iso, 0));
  PUSH(iso_map_new(iso));
  PUSH(iso_record_new(iso, empty_t));
  PUSH(iso_array_buffer_new(iso, 0));
#undef PUSH
#undef PUSHV
  return iso_scope_escape(&s, root);
}

static void test_rich_graph(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_handle v = build_rich(iso);
  for (int i = 0; i < 3; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    round_trip(iso, other, iso_get(v));
    CHECK_OK(iso_scope_close(&s));
  }
  /* A clone of a clone is a faithful copy too. */
  iso_handle c1 = iso_structured_clone(iso, iso_get(v), NULL, 0);
  iso_handle c2 = iso_structured_clone(iso, iso_get(c1), NULL, 0);
  size_t objects = 0;
  CHECK(clone_same_n(iso, iso_get(v), iso_get(c2), &objects));
  CHECK_UGE(objects, 12);
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* Random graphs: containers with edges anywhere, seeded and printed. */
static iso_handle build_random(iso_isolate *iso, uint64_t seed, int n) {
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle pool = iso_array_new(iso, 0);
  uint64_t st = seed * 2654435761u + 1;
  for (int i = 0; i < n; i++) {
    iso_handle h;
    switch (unit_rand(&st) % 6) {
      case 0:
        h = iso_array_new(iso, unit_rand(&st) % 5);
        break;
      case 1:
        h = iso_map_new(iso);
        break;
      case 2:
        h = iso_record_new(iso, node_t);
        break;
      case 3:
        h = iso_record_new(iso, blob_t);
        break;
      case 4: {
        char b[80];
        size_t len = unit_rand(&st) % sizeof b;
        unit_fill(b, len, unit_rand(&st));
        h = iso_string_new(iso, b, len);
        break;
      }
      default:
        h = iso_number_new(iso, (double)(unit_rand(&st) % 1000) / 7);
    }
    CHECK(h != NULL);
    CHECK_OK(iso_array_push(iso, iso_get(pool), iso_get(h)));
  }
  for (int i = 0; i < n; i++) {
    iso_scope si;
    iso_scope_open(iso, &si);
    /* Handles: each store below may allocate and move all three. */
    iso_handle o = iso_array_get(iso, iso_get(pool), (size_t)i);
    iso_handle t = iso_array_get(iso, iso_get(pool),
                                 (size_t)(unit_rand(&st) % (uint64_t)n));
    iso_handle t2 = iso_array_get(iso, iso_get(pool),
                                  (size_t)(unit_rand(&st) % (uint64_t)n));
    switch (iso_kind_of(iso_get(o))) {
      case ISO_KIND_ARRAY: {
        size_t len = iso_array_length(iso_get(o));
        if (len)
          CHECK_OK(
              iso_array_set(iso, iso_get(o), unit_rand(&st) % len, iso_get(t)));
        CHECK_OK(iso_array_push(iso, iso_get(o), iso_get(t2)));
        break;
      }
      case ISO_KIND_MAP:
        CHECK_OK(iso_map_set(iso, iso_get(o), iso_get(t), iso_get(t2)));
        CHECK_OK(iso_map_set(iso, iso_get(o), iso_smi((int64_t)i), iso_get(t)));
        break;
      case ISO_KIND_RECORD:
        CHECK_OK(iso_record_set(iso, iso_get(o), 0, iso_get(t)));
        if (iso_record_slot_count(iso_get(o)) > 1)
          CHECK_OK(iso_record_set(iso, iso_get(o), 1, iso_get(t2)));
        break;
      default:
        break;
    }
    CHECK_OK(iso_scope_close(&si));
  }
  return iso_scope_escape(&s, pool);
}

static void test_random_graphs(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  int rounds = stress ? 6 : 40;
  for (int r = 0; r < rounds; r++) {
    uint64_t seed = 1000 + (uint64_t)r;
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle g = build_random(iso, seed, stress ? 60 : 300);
    iso_handle c = iso_structured_clone(iso, iso_get(g), NULL, 0);
    if (!c || !clone_same(iso, iso_get(g), iso_get(c)))
      printf("# failing seed %llu\n", (unsigned long long)seed);
    CHECK(c != NULL);
    CHECK(clone_same(iso, iso_get(g), iso_get(c)));
    iso_scope so;
    iso_scope_open(other, &so);
    iso_handle d = clone_via_message(iso, other, iso_get(g));
    CHECK(d != NULL);
    CHECK(clone_same(iso, iso_get(g), iso_get(d)));
    CHECK_OK(iso_scope_close(&so));
    CHECK_OK(iso_scope_close(&s));
  }
  clone_gc_both(iso, other);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* Messages above the pretenuring threshold are rebuilt in the old
 * generation: a scavenge right after promotes (almost) nothing. */
static void test_pretenure(void) {
  iso_isolate *iso = new_isolate(), *other = new_isolate();
  iso_handle arr = iso_array_new(iso, 0);
  for (int i = 0; i < 20000; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_value init[2] = {iso_smi(i), ISO_NULL};
    iso_handle r = iso_record_new_v(iso, node_t, 2, init);
    iso_handle str = iso_string_from_cstr(iso, "twenty bytes of text");
    CHECK_OK(iso_record_set(iso, iso_get(r), 1, iso_get(str)));
    CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(r)));
    CHECK_OK(iso_scope_close(&s));
  }
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, NULL, &m));
  CHECK_UGE(iso_message_size(m), 256 * 1024);
  CHECK_OK(iso_gc(other, ISO_GC_MINOR));
  iso_gc_statistics_t before = unit_gc_stats(other);
  iso_handle got = iso_deserialize(other, m, NULL);
  CHECK(got != NULL);
  CHECK_OK(iso_gc(other, ISO_GC_MINOR));
  CHECK_OK(iso_gc(other, ISO_GC_MINOR));
  iso_gc_statistics_t after = unit_gc_stats(other);
  CHECK_ULE(after.promoted_bytes - before.promoted_bytes, 64 * 1024);
  CHECK(clone_same(iso, iso_get(arr), iso_get(got)));
  CHECK_OK(iso_gc(other, ISO_GC_FULL));
  CHECK_OK(iso_heap_verify(other));
  CHECK(clone_same(iso, iso_get(arr), iso_get(got)));
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_isolate_free(iso));
}

/* Nothing a clone does leaves handles behind in the caller's scope beyond
 * its result. */
static void test_scope_hygiene(void) {
  iso_isolate *iso = new_isolate();
  iso_handle v = build_rich(iso);
  iso_handle a = iso_handle_new(iso, ISO_NULL);
  iso_handle c = iso_structured_clone(iso, iso_get(v), NULL, 0);
  iso_handle b = iso_handle_new(iso, ISO_NULL);
  CHECK(c == a + 1 && b == c + 1);
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(v), NULL, 0, NULL, &m));
  iso_handle e = iso_handle_new(iso, ISO_NULL);
  CHECK(e == b + 1);
  c = iso_deserialize(iso, m, NULL);
  b = iso_handle_new(iso, ISO_NULL);
  CHECK(c == e + 1 && b == c + 1);
  CHECK_OK(iso_isolate_free(iso));
}

#define STRESSED(name)              \
  static void name##_stress(void) { \
    stress = 1;                     \
    name();                         \
    stress = 0;                     \
  }
STRESSED(test_arrays)
STRESSED(test_maps)
STRESSED(test_records)
STRESSED(test_transfer)
STRESSED(test_typed_arrays)
STRESSED(test_delegates)
STRESSED(test_nested_clones)
STRESSED(test_rich_graph)
STRESSED(test_random_graphs)

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  node_t = unit_register(rt, "clone.node", 2, 0);
  blob_t = unit_register(rt, "clone.blob", 1, 13);
  empty_t = unit_register(rt, "clone.empty", 0, 0);
  host_t = unit_register(rt, "clone.host", 1, 8);
  RUN(test_primitives);
  RUN(test_doubles);
  RUN(test_strings);
  RUN(test_arrays);
  RUN(test_maps);
  RUN(test_records);
  RUN(test_array_buffers);
  RUN(test_transfer);
  RUN(test_transfer_errors);
  RUN(test_typed_arrays);
  RUN(test_shared_array_buffers);
  RUN(test_delegates);
  RUN(test_nested_clones);
  RUN(test_error_paths);
  RUN(test_rich_graph);
  RUN(test_random_graphs);
  RUN(test_pretenure);
  RUN(test_scope_hygiene);
  RUN(test_arrays_stress);
  RUN(test_maps_stress);
  RUN(test_records_stress);
  RUN(test_transfer_stress);
  RUN(test_typed_arrays_stress);
  RUN(test_delegates_stress);
  RUN(test_nested_clones_stress);
  RUN(test_rich_graph_stress);
  RUN(test_random_graphs_stress);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
