/*
 * Strings: UTF-8 validation, embedded NULs, hashing, equality, and
 * contents that survive the collector (young, old and large strings).
 */
#include <sys/mman.h>

#include "helpers.h"

static iso_runtime *rt;
static iso_isolate *iso;

/* FNV-1a, 32 bits, as the header specifies for iso_string_hash. */
static uint32_t fnv1a(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 16777619u;
  }
  return h;
}

static void test_basics(void) {
  iso_handle s = iso_string_new(iso, "hello", 5);
  CHECK(s != NULL);
  CHECK_EQ(iso_kind_of(iso_get(s)), ISO_KIND_STRING);
  CHECK_UEQ(iso_string_length(iso_get(s)), 5);
  CHECK_STRING(iso_get(s), "hello");

  iso_handle c = iso_string_from_cstr(iso, "hello");
  CHECK(c != NULL);
  CHECK(iso_string_equal(iso_get(s), iso_get(c)));

  iso_handle e = iso_string_new(iso, "", 0);
  CHECK(e != NULL);
  CHECK_UEQ(iso_string_length(iso_get(e)), 0);
  CHECK_STR(iso_string_data(iso_get(e)), "");
  iso_handle e2 = iso_string_from_cstr(iso, "");
  CHECK(iso_string_equal(iso_get(e), iso_get(e2)));

  /* A prefix of a longer buffer: only len bytes are taken. */
  iso_handle p = iso_string_new(iso, "abcdef", 3);
  CHECK_STRING(iso_get(p), "abc");

  /* The bytes are copied. */
  char buf[16] = "mutable";
  iso_handle m = iso_string_new(iso, buf, 7);
  memcpy(buf, "XXXXXXX", 7);
  CHECK_STRING(iso_get(m), "mutable");
}

static void test_embedded_nul(void) {
  static const char bytes[] = {'a', '\0', 'b', '\0', '\0', 'c'};
  iso_handle s = iso_string_new(iso, bytes, sizeof bytes);
  CHECK(s != NULL);
  CHECK_UEQ(iso_string_length(iso_get(s)), sizeof bytes);
  CHECK(unit_str_is(iso_get(s), bytes, sizeof bytes));
  CHECK_EQ(iso_string_hash(iso_get(s)), fnv1a(bytes, sizeof bytes));
  /* Differs from the same text cut at the first NUL. */
  iso_handle a = iso_string_from_cstr(iso, "a");
  CHECK(!iso_string_equal(iso_get(s), iso_get(a)));
  iso_handle t = iso_string_new(iso, bytes, sizeof bytes - 1);
  CHECK(!iso_string_equal(iso_get(s), iso_get(t)));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK(unit_str_is(iso_get(s), bytes, sizeof bytes));
}

static void test_utf8_valid(void) {
  static const char *const ok[] = {
      "plain ascii",
      "\xc3\xa9",         /* U+00E9 */
      "\xc2\x80",         /* U+0080, smallest two-byte */
      "\xdf\xbf",         /* U+07FF */
      "\xe0\xa0\x80",     /* U+0800, smallest three-byte */
      "\xe2\x82\xac",     /* U+20AC */
      "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
      "\xee\x80\x80",     /* U+E000, just above them */
      "\xef\xbf\xbf",     /* U+FFFF */
      "\xf0\x90\x80\x80", /* U+10000, smallest four-byte */
      "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
      "mixed \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 end",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    iso_clear_error();
    iso_handle s = iso_string_from_cstr(iso, ok[i]);
    CHECK(s != NULL);
    CHECK_STRING(iso_get(s), ok[i]);
    iso_handle t = iso_string_new(iso, ok[i], strlen(ok[i]));
    CHECK(t != NULL);
    CHECK(iso_string_equal(iso_get(s), iso_get(t)));
  }
}

static void test_utf8_invalid(void) {
  static const struct {
    const char *bytes;
    size_t len;
    const char *why;
  } bad[] = {
#define B(lit, why) {lit, sizeof(lit) - 1, why}
      B("\x80", "lone continuation byte"),
      B("ab\xbf", "continuation after ASCII"),
      B("\xc0\x80", "overlong NUL"),
      B("\xc1\xbf", "overlong two-byte"),
      B("\xe0\x80\x80", "overlong three-byte"),
      B("\xe0\x9f\xbf", "overlong U+07FF"),
      B("\xf0\x80\x80\x80", "overlong four-byte"),
      B("\xf0\x8f\xbf\xbf", "overlong U+FFFF"),
      B("\xed\xa0\x80", "high surrogate U+D800"),
      B("\xed\xbf\xbf", "low surrogate U+DFFF"),
      B("\xed\xa0\xbd\xed\xb8\x80", "surrogate pair (CESU-8)"),
      B("\xf4\x90\x80\x80", "U+110000"),
      B("\xf5\x80\x80\x80", "lead byte F5"),
      B("\xf7\xbf\xbf\xbf", "lead byte F7"),
      B("\xf8\x88\x80\x80\x80", "five-byte form"),
      B("\xfe", "byte FE"),
      B("\xff", "byte FF"),
      B("\xc3", "truncated two-byte"),
      B("\xe2\x82", "truncated three-byte"),
      B("\xf0\x9f\x98", "truncated four-byte"),
      B("\xe2\x28\xa1", "bad second byte"),
      B("\xe2\x82\x28", "bad third byte"),
      B("ok\xc3\xa9 then \xc3", "valid then truncated at the end"),
      B("\xc3\xa9\x00\xc3", "truncated after an embedded NUL"),
#undef B
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    iso_clear_error();
    iso_handle s = iso_string_new(iso, bad[i].bytes, bad[i].len);
    if (s != NULL) printf("# accepted: %s\n", bad[i].why);
    CHECK(s == NULL);
    CHECK_ERROR(ISO_ERR_ARGUMENT, "utf");
  }
  /* Through the C-string entry point too. */
  CHECK_FAILS(iso_string_from_cstr(iso, "x\xed\xa0\x80y"), == NULL,
              ISO_ERR_ARGUMENT, "utf");
  CHECK_FAILS(iso_string_from_cstr(iso, "\xc0\xaf"), == NULL, ISO_ERR_ARGUMENT,
              "utf");
}

static void test_bad_arguments(void) {
  CHECK_FAILS(iso_string_from_cstr(iso, NULL), == NULL, ISO_ERR_ARGUMENT, "");
  CHECK_FAILS(iso_string_new(iso, NULL, 4), == NULL, ISO_ERR_ARGUMENT, "");
  CHECK_FAILS(iso_string_new(NULL, "x", 1), == NULL, ISO_ERR_ARGUMENT, "");

  /* Longer than 1 GiB: a range error. The bytes are readable zeros (valid
   * UTF-8), so the length is the only thing wrong. */
  size_t len = ((size_t)1 << 30) + 1;
  void *big = mmap(NULL, len, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(big != MAP_FAILED);
  CHECK_FAILS(iso_string_new(iso, big, len), == NULL, ISO_ERR_RANGE,
              "range|large|long|length|1 GiB|limit|size");
  munmap(big, len);

  /* Reading functions on other kinds. */
  iso_handle a = iso_array_new(iso, 1);
  const iso_value others[] = {iso_get(a), iso_smi(3), ISO_NULL, ISO_TRUE};
  for (size_t i = 0; i < 4; i++) {
    CHECK_FAILS(iso_string_length(others[i]), == 0, ISO_ERR_TYPE, "string");
    CHECK_FAILS(iso_string_data(others[i]), == NULL, ISO_ERR_TYPE, "string");
  }
  iso_handle s = iso_string_from_cstr(iso, "s");
  CHECK(!iso_string_equal(iso_get(s), iso_get(a)));
  CHECK(!iso_string_equal(iso_get(a), iso_get(s)));
  CHECK(!iso_string_equal(iso_smi(1), iso_smi(1)));
  CHECK(!iso_string_equal(ISO_NULL, ISO_NULL));
}

static void test_hash_and_equal(void) {
  static const char *const texts[] = {
      "",
      "a",
      "hello",
      "Hello",
      "\xe2\x82\xac",
      "a longer string that spans several words",
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    iso_handle s = iso_string_from_cstr(iso, texts[i]);
    CHECK(s != NULL);
    CHECK_EQ(iso_string_hash(iso_get(s)), fnv1a(texts[i], strlen(texts[i])));
    for (size_t j = 0; j < sizeof texts / sizeof *texts; j++) {
      iso_handle t = iso_string_from_cstr(iso, texts[j]);
      CHECK_EQ(iso_string_equal(iso_get(s), iso_get(t)), i == j);
      CHECK_EQ(iso_string_equal(iso_get(t), iso_get(s)), i == j);
    }
  }
  /* The same hash in another runtime's isolate, and after moves. */
  iso_handle here = iso_string_from_cstr(iso, "portable");
  uint32_t h = iso_string_hash(iso_get(here));
  iso_runtime *rt2 = iso_runtime_new(NULL);
  iso_isolate *other = iso_isolate_new(rt2, NULL);
  CHECK(rt2 && other);
  iso_handle there = iso_string_from_cstr(other, "portable");
  CHECK_EQ(iso_string_hash(iso_get(there)), h);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(iso_string_hash(iso_get(here)), h);
  CHECK_OK(iso_isolate_free(other));
  CHECK_OK(iso_runtime_free(rt2));
}

static void test_survive_gc(void) {
  /* Sizes from tiny to beyond the large-object threshold. */
  static const size_t sizes[] = {1,    7,     8,      9,      63,     100,
                                 4096, 65536, 131072, 200000, 1 << 20};
  enum { N = sizeof sizes / sizeof *sizes };
  iso_handle hs[N];
  char *want[N];
  iso_scope sc;
  iso_scope_open(iso, &sc);
  for (size_t i = 0; i < N; i++) {
    want[i] = malloc(sizes[i]);
    CHECK(want[i] != NULL);
    unit_fill(want[i], sizes[i], i);
    hs[i] = iso_string_new(iso, want[i], sizes[i]);
    CHECK(hs[i] != NULL);
    /* Garbage between the survivors, so the collector has to compact. */
    for (int k = 0; k < 20; k++)
      CHECK(iso_string_new(iso, want[i], sizes[i] < 50 ? sizes[i] : 50));
  }
  for (int round = 0; round < 4; round++) {
    CHECK_OK(iso_gc(iso, round == 2 ? ISO_GC_FULL : ISO_GC_MINOR));
    for (size_t i = 0; i < N; i++) {
      CHECK(unit_str_is(iso_get(hs[i]), want[i], sizes[i]));
      CHECK_EQ(iso_string_hash(iso_get(hs[i])), fnv1a(want[i], sizes[i]));
    }
  }
  CHECK_OK(iso_heap_verify(iso));
  CHECK_OK(iso_scope_close(&sc));
  for (size_t i = 0; i < N; i++) free(want[i]);
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  RUN(test_basics);
  RUN(test_embedded_nul);
  RUN(test_utf8_valid);
  RUN(test_utf8_invalid);
  RUN(test_bad_arguments);
  RUN(test_hash_and_equal);
  RUN(test_survive_gc);
  CHECK_OK(iso_isolate_free(iso));
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
