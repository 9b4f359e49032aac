/*
 * Structured clone against hostile input: every malformed, truncated or
 * adversarial message must fail with ISO_ERR_DATA_CLONE naming a byte
 * offset, never crash, never leak (the sanitizer builds check that), and
 * never leave any of the half-built graph reachable: the caller's scope
 * gains no handle, and a full collection afterwards finds none of the
 * objects the failed message started to build.
 *
 * The inputs: every prefix of a valid message, every single-bit flip of
 * it, a list of hand-made faults (one per check the deserializer makes),
 * and seeded random bytes behind a valid header.
 */
#include "clone_check.h"

static iso_runtime *rt;
static iso_type pair_t; /* 2 slots */
static iso_type blob_t; /* 1 slot, 5 raw bytes */

/* A delegate whose host objects are small records rebuilt from 1 byte. */
static iso_status host_write(void *ctx, iso_isolate *iso, iso_value v,
                             iso_clone_writer *w) {
  (void)ctx;
  (void)iso;
  if (iso_kind_of(v) != ISO_KIND_EXTERNAL) return ISO_ERR_TYPE;
  uint8_t b = (uint8_t)(uintptr_t)iso_external_value(v);
  return iso_clone_write_bytes(w, &b, 1);
}
static iso_handle host_read(void *ctx, iso_isolate *iso, iso_clone_reader *r) {
  (void)ctx;
  uint8_t b;
  if (iso_clone_read_bytes(r, &b, 1) != ISO_OK) return NULL;
  if (b == 0xee) return NULL; /* a byte the host refuses */
  return iso_external_new(iso, (void *)(uintptr_t)b, NULL, NULL);
}
static iso_clone_delegate delegate = {sizeof(iso_clone_delegate), host_write,
                                      host_read, NULL};

/* A valid message of every kind that travels as bytes alone. */
static iso_message *rich_message(iso_isolate *iso) {
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle root = iso_array_new(iso, 0);
  iso_handle m = iso_map_new(iso);
  iso_handle str = iso_string_from_cstr(iso, "k\xc3\xa9y \xf0\x9f\x98\x80");
  char longs[80];
  unit_fill(longs, sizeof longs, 3);
  iso_handle ls = iso_string_new(iso, longs, sizeof longs);
  iso_handle d = iso_number_new(iso, -0.0);
  iso_handle p = iso_record_new(iso, pair_t);
  iso_handle b = iso_record_new(iso, blob_t);
  memcpy(iso_record_raw(iso_get(b)), "blob!", 5);
  iso_handle ab = iso_array_buffer_new(iso, 24);
  unit_fill(iso_array_buffer_data(iso_get(ab)), 24, 4);
  iso_handle v1 = iso_typed_array_new(iso, ISO_TYPED_UINT16, iso_get(ab), 2, 5);
  iso_handle v2 =
      iso_typed_array_new(iso, ISO_TYPED_FLOAT64, iso_get(ab), 8, 2);
  iso_handle ext = iso_external_new(iso, (void *)(uintptr_t)7, NULL, NULL);
  CHECK(root && m && str && ls && d && p && b && ab && v1 && v2 && ext);
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(str), iso_get(ls)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(p), iso_smi(-70000)));
  CHECK_OK(iso_map_set(iso, iso_get(m), iso_get(d), iso_get(root)));
  CHECK_OK(iso_record_set(iso, iso_get(p), 0, iso_get(b)));
  CHECK_OK(iso_record_set(iso, iso_get(p), 1, iso_get(p)));
  iso_handle parts[] = {m, ls, v1, ab, v2, p, ext, str, root};
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
    CHECK_OK(iso_array_push(iso, iso_get(root), iso_get(parts[i])));
  CHECK_OK(iso_array_push(iso, iso_get(root), ISO_TRUE));
  CHECK_OK(iso_array_push(iso, iso_get(root), iso_smi(ISO_SMI_MIN)));
  iso_message *msg = NULL;
  CHECK_OK(iso_serialize(iso, iso_get(root), NULL, 0, &delegate, &msg));
  CHECK_OK(iso_scope_close(&s));
  return msg;
}

/* Deserializes len bytes. Checks the outcome: success (then the graph
 * survives another round trip), or a clean DATA_CLONE failure with an
 * offset and no handle left behind. Returns whether it succeeded. */
static int try_bytes(iso_isolate *iso, const void *bytes, size_t len) {
  iso_message *m = iso_message_from_bytes(bytes, len);
  CHECK(m != NULL);
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_handle before = iso_handle_new(iso, ISO_NULL);
  iso_clear_error();
  iso_handle h = iso_deserialize(iso, m, &delegate);
  if (h == NULL) {
    CHECK_EQ(iso_last_status(), ISO_ERR_DATA_CLONE);
    CHECK(strstr(iso_last_error(), "at byte") != NULL);
    CHECK(iso_handle_new(iso, ISO_NULL) == before + 1);
    iso_message_free(m);
  } else {
    iso_message *again = NULL;
    CHECK_OK(iso_serialize(iso, iso_get(h), NULL, 0, &delegate, &again));
    iso_handle h2 = iso_deserialize(iso, again, &delegate);
    CHECK(h2 != NULL);
    CHECK(clone_same(iso, iso_get(h), iso_get(h2)));
  }
  CHECK_OK(iso_scope_close(&s));
  return h != NULL;
}

/* Expects failure with a message that mentions words. */
static void expect_bad(iso_isolate *iso, const void *bytes, size_t len,
                       const char *words) {
  iso_message *m = iso_message_from_bytes(bytes, len);
  CHECK(m != NULL);
  CHECK_FAILS(iso_deserialize(iso, m, &delegate), == NULL, ISO_ERR_DATA_CLONE,
              words);
  iso_message_free(m);
}

static void test_truncations(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_message *m = rich_message(iso);
  const uint8_t *bytes = iso_message_data(m);
  size_t n = iso_message_size(m);
  CHECK_GT(n, 150);
  CHECK(try_bytes(iso, bytes, n)); /* the whole message is fine */
  for (size_t k = 0; k < n; k++) {
    CHECK(!try_bytes(iso, bytes, k));
    if (k % 64 == 0) CHECK_OK(iso_heap_verify(iso));
  }
  /* Trailing garbage is refused too. */
  uint8_t *more = malloc(n + 1);
  memcpy(more, bytes, n);
  more[n] = 'T';
  expect_bad(iso, more, n + 1, "1 bytes after the value");
  free(more);
  iso_message_free(m);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

static void test_bit_flips(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_message *m = rich_message(iso);
  size_t n = iso_message_size(m);
  uint8_t *bytes = malloc(n);
  memcpy(bytes, iso_message_data(m), n);
  size_t accepted = 0, rejected = 0;
  for (size_t k = 0; k < n; k++) {
    for (int bit = 0; bit < 8; bit++) {
      bytes[k] ^= (uint8_t)(1u << bit);
      if (try_bytes(iso, bytes, n))
        accepted++;
      else
        rejected++;
      bytes[k] ^= (uint8_t)(1u << bit);
    }
    if (k % 32 == 0) CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  }
  /* Most flips break the message; some (in payload bytes) do not. */
  CHECK_GT(rejected, n);
  CHECK_GT(accepted, 0);
  printf("# %zu flips accepted, %zu rejected\n", accepted, rejected);
  free(bytes);
  iso_message_free(m);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

/* A message: the header with an object count, then the body. */
static size_t make(uint8_t *out, uint32_t objects, const char *body,
                   size_t blen) {
  memcpy(out, "ISOC\x01\x00", 6);
  for (int i = 0; i < 4; i++) out[6 + i] = (uint8_t)(objects >> (8 * i));
  memcpy(out + 10, body, blen);
  return 10 + blen;
}
#define BAD(objects, body, words)                                \
  do {                                                           \
    uint8_t buf_[256];                                           \
    size_t n_ = make(buf_, (objects), (body), sizeof(body) - 1); \
    expect_bad(iso, buf_, n_, (words));                          \
  } while (0)
#define GOOD(objects, body)                                      \
  do {                                                           \
    uint8_t buf_[256];                                           \
    size_t n_ = make(buf_, (objects), (body), sizeof(body) - 1); \
    CHECK(try_bytes(iso, buf_, n_));                             \
  } while (0)

static void test_crafted(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  char pair_hdr[8], blob_hdr[8];
  snprintf(pair_hdr, sizeof pair_hdr, "%c", (char)pair_t);
  snprintf(blob_hdr, sizeof blob_hdr, "%c", (char)blob_t);
  CHECK_LT(pair_t, 128);
  CHECK_LT(blob_t, 128);
  CHECK_EQ(pair_t, 32);
  CHECK_EQ(blob_t, 33);

  /* The header. */
  expect_bad(iso, "", 0, "truncated header");
  expect_bad(iso, "ISOC\x01\x00\x00\x00", 8, "truncated header");
  expect_bad(iso, "ISOX\x01\x00\x00\x00\x00\x00T", 11, "magic");
  expect_bad(iso, "ISOC\x02\x00\x00\x00\x00\x00T", 11, "version 2");
  expect_bad(iso, "ISOC\x01\x01\x00\x00\x00\x00T", 11, "flags");
  expect_bad(iso, "ISOC\x01\x00\x00\x00\x00\x00", 10,
             "truncated: a value was expected");
  BAD(5, "T", "5 objects declared in 1 bytes");
  BAD(0, "TT", "1 bytes after the value");
  GOOD(0, "T");
  BAD(0, "\x01", "unknown tag 0x01");
  BAD(0, "\xff", "unknown tag 0xff");

  /* Varints and integers. */
  BAD(0, "I", "truncated varint");
  BAD(0, "I\x80", "truncated varint");
  BAD(0, "I\x80\x00", "shortest form");
  BAD(0, "I\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", "beyond 64 bits");
  BAD(0, "I\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
      "out of the small integer range");
  GOOD(0, "I\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"); /* the largest */
  GOOD(0, "I\x7f");
  BAD(0, "N\x00\x00\x00", "truncated double");
  GOOD(0, "N\x00\x00\x00\x00\x00\x00\xf0\x3f"); /* 1.0 -> an integer */

  /* Strings. */
  BAD(0,
      "S\x05"
      "abc",
      "only 3 left");
  BAD(0,
      "S\x80\x80\x80\x80\x80\x80\x01"
      "x",
      "only 1 left");
  BAD(0, "S\x02\xc3\x28", "invalid UTF-8");
  BAD(0, "S\x03\xed\xa0\x80", "invalid UTF-8");     /* a surrogate */
  BAD(0, "S\x02\xc0\x80", "invalid UTF-8");         /* overlong */
  BAD(0, "S\x04\xf4\x90\x80\x80", "invalid UTF-8"); /* past U+10FFFF */
  BAD(0, "S\x01\x80", "invalid UTF-8");             /* lone continuation */
  BAD(0, "S\x03\xe2\x82", "only 2 left");
  BAD(1, "A\x01S\x02\xe2\x82", "invalid UTF-8"); /* the inline path */
  GOOD(0, "S\x03\xe2\x82\xac");

  /* Containers: counts against the bytes left, and the limits. */
  BAD(1, "A\x05TT", "bytes left");
  BAD(1, "A\x80\x80\x80\x80\x02", "at most 2^28");
  BAD(1, "M\x02TTT", "bytes left");
  BAD(1, "M\x80\x80\x80\x80\x02", "at most 2^28");
  BAD(3,
      "A\x03"
      "A\x03"
      "A\x03"
      "TTTT",
      "bytes left");
  BAD(1, "A\x02T", "bytes left");
  GOOD(1, "M\x02TTTF"); /* a duplicate key: the last one wins */
  GOOD(2,
       "A\x02"
       "A\x00"
       "^\x01");

  /* Back-references. */
  BAD(0, "^\x00", "back-reference to object 0 of 0");
  BAD(1,
      "A\x02"
      "T^\x01",
      "back-reference to object 1 of 1");
  BAD(1, "A\x01^\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "back-reference");
  GOOD(1, "A\x01^\x00");
  BAD(3,
      "A\x01"
      "S\x40"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
      "2 objects, but the header declares 3");
  BAD(0, "A\x00", "more objects than the header declares");

  /* Records. */
  {
    char body[32];
    int k = 0;
    body[k++] = 'R';
    body[k++] = (char)0xe7; /* 999: unregistered */
    body[k++] = 0x07;
    body[k++] = 0;
    body[k++] = 0;
    uint8_t buf[64];
    size_t n = make(buf, 1, body, (size_t)k);
    expect_bad(iso, buf, n, "type id 999 is not a registered record type");
    body[1] = 3; /* the string type: a built-in kind */
    n = make(buf, 1, body, 4);
    expect_bad(iso, buf, n, "type id 3 is not a registered record type");
    body[1] = (char)pair_t; /* registered, but with 3 slots */
    body[2] = 3;
    body[3] = 0;
    n = make(buf, 1, body, 4);
    expect_bad(iso, buf, n, "2 slots and 0 raw bytes, the message says 3");
    body[1] = (char)blob_t; /* 5 raw bytes, only 2 there */
    body[2] = 1;
    body[3] = 5;
    body[4] = 'a';
    body[5] = 'b';
    n = make(buf, 1, body, 6);
    expect_bad(iso, buf, n, "raw bytes");
    memcpy(body + 4, "abcdeT", 6); /* complete: raw, then the slot */
    n = make(buf, 1, body, 10);
    CHECK(try_bytes(iso, buf, n));
    body[1] = (char)0x80; /* a type id beyond 65535 */
    body[2] = (char)0x80;
    body[3] = (char)0x80;
    body[4] = 0x01;
    body[5] = 0;
    body[6] = 0;
    n = make(buf, 1, body, 7);
    expect_bad(iso, buf, n, "not a registered record type");
  }

  /* Buffers and views. */
  BAD(1,
      "B\x09"
      "abc",
      "only 3 left");
  GOOD(1, "B\x00");
  BAD(2,
      "V\x0d\x00\x00"
      "B\x00",
      "13 is not a view type");
  BAD(2,
      "V\x00\x00\x00"
      "B\x00",
      "0 is not a view type");
  BAD(2,
      "V\x06\x01\x01"
      "B\x08"
      "abcdefgh",
      "not a multiple of 4");
  BAD(2,
      "V\x02\x00\x09"
      "B\x08"
      "abcdefgh",
      "does not fit");
  BAD(2,
      "V\x02\x09\x00"
      "B\x08"
      "abcdefgh",
      "does not fit");
  BAD(2,
      "V\x09\x08\x80\x80\x80\x80\x80\x80\x80\x80\x20"
      "B\x08"
      "abcdefgh",
      "does not fit");
  BAD(2,
      "V\x02\x00\x00"
      "T",
      "a view's buffer has tag");
  BAD(2, "V\x02\x00\x00", "no buffer");
  BAD(3,
      "A\x02"
      "A\x00"
      "V\x02\x00\x00^\x01",
      "a view over object 1");
  GOOD(3,
       "A\x02"
       "V\x02\x00\x08"
       "B\x08"
       "abcdefgh"
       "^\x01");
  GOOD(3,
       "A\x02"
       "B\x04"
       "abcd"
       "V\x01\x01\x02^\x01");

  /* Table indexes in a message that has no tables. */
  BAD(1, "b\x00", "transferred buffer 0 of 0");
  /* Out-of-line copies: bytes alone have no copy table. */
  BAD(1, "C\x00", "copied buffer 0 of 0");
  BAD(1, "C\x85\x01", "copied buffer 133 of 0");
  BAD(2,
      "V\x01\x00\x00"
      "C\x00",
      "copied buffer 0 of 0");
  BAD(1, "H\x00", "shared buffer 0 of 0");
  BAD(1, "P\x00", "port 0 of 0");
  BAD(2,
      "V\x02\x00\x00"
      "b\x00",
      "transferred buffer 0 of 0");

  /* Host objects. */
  BAD(1, "X\x01\x00\x00", "truncated host object length");
  BAD(1,
      "X\x05\x00\x00\x00"
      "a",
      "host object of 5 bytes");
  BAD(1, "X\x01\x00\x00\x00\xee", "read_host failed");
  BAD(1, "X\x00\x00\x00\x00", "read_host failed"); /* reads past its bytes */
  GOOD(1, "X\x01\x00\x00\x00\x07");
  GOOD(1, "X\x02\x00\x00\x00\x07\x00"); /* a byte left unread is skipped */
  {
    uint8_t buf[32];
    size_t n = make(buf, 1, "X\x01\x00\x00\x00\x07", 6);
    iso_message *m = iso_message_from_bytes(buf, n);
    CHECK_FAILS(iso_deserialize(iso, m, NULL), == NULL, ISO_ERR_DATA_CLONE,
                "no delegate");
    iso_message_free(m);
  }
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

/* A failure deep in a big message leaves nothing of it alive. */
static void test_nothing_survives(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  iso_handle arr = iso_array_new(iso, 0);
  for (int i = 0; i < 3000; i++) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle p = iso_record_new(iso, pair_t);
    CHECK_OK(iso_record_set(iso, iso_get(p), 0, iso_smi(i)));
    CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(p)));
    CHECK_OK(iso_scope_close(&s));
  }
  iso_handle ab = iso_array_buffer_new(iso, 5000);
  CHECK_OK(iso_array_push(iso, iso_get(arr), iso_get(ab)));
  CHECK_OK(iso_array_push(iso, iso_get(arr), ISO_TRUE));
  iso_message *m;
  CHECK_OK(iso_serialize(iso, iso_get(arr), NULL, 0, NULL, &m));
  size_t n = iso_message_size(m);
  uint8_t *bytes = malloc(n);
  memcpy(bytes, iso_message_data(m), n);
  iso_message_free(m);
  bytes[n - 1] = 0x01; /* the last value: an unknown tag */
  iso_handle_set(arr, ISO_NULL);
  iso_handle_set(ab, ISO_NULL);
  /* Twice: young objects that dead old ones still pointed to (through
   * the remembered set) survive the first full collection. */
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, pair_t), 0);
  iso_memory_usage_t before = unit_usage(iso);
  expect_bad(iso, bytes, n, "unknown tag 0x01");
  /* The failed message did build (then drop) its records and buffer
   * (fewer may be left to count if a collection ran meanwhile). */
  CHECK_UGE(unit_type_count(iso, pair_t), UNIT_GC_STRESS ? 1 : 3000);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_type_count(iso, pair_t), 0);
  iso_memory_usage_t after = unit_usage(iso);
  CHECK_UEQ(after.array_buffers, before.array_buffers);
  free(bytes);
  CHECK_OK(iso_isolate_free(iso));
}

/* Seeded random bodies behind a valid header, biased towards tags. */
static void test_random_bytes(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  static const char tags[] = "_0FTINSAMRBbCHVPX^";
  uint64_t seed = 0x5eed;
  int accepted = 0;
  for (int round = 0; round < 20000; round++) {
    uint8_t buf[80];
    uint64_t st = seed + (uint64_t)round;
    size_t len = 10 + unit_rand(&st) % 60;
    memcpy(buf, "ISOC\x01\x00", 6);
    uint32_t objs = (uint32_t)(unit_rand(&st) % 4);
    for (int i = 0; i < 4; i++) buf[6 + i] = (uint8_t)(objs >> (8 * i));
    for (size_t i = 10; i < len; i++) {
      uint64_t r = unit_rand(&st);
      buf[i] = r % 3 == 0 ? (uint8_t)tags[(r >> 8) % (sizeof tags - 1)]
                          : (uint8_t)(r % 5 == 0 ? r >> 16 : r % 8);
    }
    accepted += try_bytes(iso, buf, len);
    if (round % 1000 == 0) CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  }
  printf("# seed 0x%llx: %d of 20000 random messages accepted\n",
         (unsigned long long)seed, accepted);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

/* Under GC stress: truncations of a message with many objects, so the
 * collector runs while half-built graphs exist. */
static void test_truncations_stress(void) {
  iso_isolate_params p = unit_params();
  p.stress_scavenge_every = 2;
  p.stress_full_every = 29;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  iso_message *m = rich_message(iso);
  const uint8_t *bytes = iso_message_data(m);
  size_t n = iso_message_size(m);
  for (size_t k = 0; k < n; k += 3) CHECK(!try_bytes(iso, bytes, k));
  CHECK(try_bytes(iso, bytes, n));
  iso_message_free(m);
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_isolate_free(iso));
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  pair_t = unit_register(rt, "hostile.pair", 2, 0);
  blob_t = unit_register(rt, "hostile.blob", 1, 5);
  RUN(test_crafted);
  RUN(test_truncations);
  RUN(test_bit_flips);
  RUN(test_nothing_survives);
  RUN(test_random_bytes);
  RUN(test_truncations_stress);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
