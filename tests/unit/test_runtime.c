/*
 * Runtimes, isolates, type registration, status names and the per-thread
 * error slot.
 */
#include <pthread.h>

#include "helpers.h"

static void test_version(void) {
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", ISO_VERSION_MAJOR, ISO_VERSION_MINOR,
           ISO_VERSION_PATCH);
  CHECK_STR(iso_version(), want);
}

static void test_status_names(void) {
  static const char *const want[ISO_ERR_COUNT_] = {
      [ISO_OK] = "ISO_OK",
      [ISO_ERR_OUT_OF_MEMORY] = "ISO_ERR_OUT_OF_MEMORY",
      [ISO_ERR_TYPE] = "ISO_ERR_TYPE",
      [ISO_ERR_RANGE] = "ISO_ERR_RANGE",
      [ISO_ERR_ARGUMENT] = "ISO_ERR_ARGUMENT",
      [ISO_ERR_SCOPE] = "ISO_ERR_SCOPE",
      [ISO_ERR_THREAD] = "ISO_ERR_THREAD",
      [ISO_ERR_STATE] = "ISO_ERR_STATE",
      [ISO_ERR_CLOSED] = "ISO_ERR_CLOSED",
      [ISO_ERR_DATA_CLONE] = "ISO_ERR_DATA_CLONE",
      [ISO_ERR_DETACHED] = "ISO_ERR_DETACHED",
      [ISO_ERR_HEAP_CORRUPT] = "ISO_ERR_HEAP_CORRUPT",
      [ISO_ERR_LIMIT] = "ISO_ERR_LIMIT",
      [ISO_ERR_TIMEOUT] = "ISO_ERR_TIMEOUT",
      [ISO_ERR_TERMINATED] = "ISO_ERR_TERMINATED",
  };
  for (int i = 0; i < ISO_ERR_COUNT_; i++) {
    /* A new code in the header needs its line in the table above. */
    if (!want[i]) printf("# status %d is missing from this test\n", i);
    CHECK(want[i] != NULL);
    CHECK_STR(iso_status_name((iso_status)i), want[i]);
  }
  /* Not a status: never a crash, and never the name of a real one. */
  const char *bogus = iso_status_name((iso_status)(ISO_ERR_COUNT_ + 7));
  for (int i = 0; i < ISO_ERR_COUNT_; i++)
    CHECK(bogus == NULL || strcmp(bogus, want[i]) != 0);
}

static void test_kind_names(void) {
  CHECK_STR(iso_kind_name(ISO_KIND_INTEGER), "integer");
  CHECK_STR(iso_kind_name(ISO_KIND_STRING), "string");
  /* Not a kind: never a crash, and at most the name of the invalid kind. */
  const char *bogus = iso_kind_name((iso_kind)(ISO_KIND_COUNT_ + 3));
  for (int i = 1; i < ISO_KIND_COUNT_; i++)
    CHECK(bogus == NULL || strcmp(bogus, iso_kind_name((iso_kind)i)) != 0);
  for (int i = 0; i < ISO_KIND_COUNT_; i++) {
    const char *a = iso_kind_name((iso_kind)i);
    CHECK(a != NULL && a[0] != '\0');
    for (int j = 0; j < i; j++)
      CHECK(strcmp(a, iso_kind_name((iso_kind)j)) != 0);
  }
}

static void *error_thread(void *arg) {
  (void)arg;
  /* A fresh thread starts without an error, whatever main did. */
  CHECK_EQ(iso_last_status(), ISO_OK);
  CHECK_STR(iso_last_error(), "");
  CHECK_FAILS(iso_type_register(NULL, NULL), == 0, ISO_ERR_ARGUMENT, "");
  return NULL;
}

static void test_errors_per_thread(void) {
  CHECK_FAILS_ST(iso_runtime_free(NULL), ISO_ERR_ARGUMENT, "");
  char saved[512];
  snprintf(saved, sizeof saved, "%s", iso_last_error());

  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, error_thread, NULL), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);
  /* The other thread's failure did not touch this thread's error. */
  CHECK_EQ(iso_last_status(), ISO_ERR_ARGUMENT);
  CHECK_STR(iso_last_error(), saved);

  /* A successful call does not clear the error. */
  iso_runtime *rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  CHECK_EQ(iso_last_status(), ISO_ERR_ARGUMENT);
  CHECK_STR(iso_last_error(), saved);
  iso_clear_error();
  CHECK_EQ(iso_last_status(), ISO_OK);
  CHECK_STR(iso_last_error(), "");
  CHECK_OK(iso_runtime_free(rt));
}

static void test_runtime_lifecycle(void) {
  iso_runtime *rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  CHECK_UEQ(iso_runtime_isolate_count(rt), 0);
  CHECK_UEQ(iso_runtime_isolate_count(NULL), 0);

  iso_isolate *a = iso_isolate_new(rt, NULL);
  CHECK(a != NULL);
  CHECK_UEQ(iso_runtime_isolate_count(rt), 1);
  iso_isolate *b = iso_isolate_new(rt, NULL);
  CHECK(b != NULL && b != a);
  CHECK_UEQ(iso_runtime_isolate_count(rt), 2);

  CHECK_FAILS_ST(iso_runtime_free(rt), ISO_ERR_STATE, "isolate|alive|live");
  CHECK_OK(iso_isolate_free(a));
  CHECK_UEQ(iso_runtime_isolate_count(rt), 1);
  CHECK_FAILS_ST(iso_runtime_free(rt), ISO_ERR_STATE, "isolate|alive|live");
  /* The runtime still works after the refused free. */
  iso_handle s = iso_string_from_cstr(b, "still here");
  CHECK(s != NULL);
  CHECK_STRING(iso_get(s), "still here");
  CHECK_OK(iso_isolate_free(b));
  CHECK_UEQ(iso_runtime_isolate_count(rt), 0);
  CHECK_OK(iso_runtime_free(rt));

  /* Parameters with their size set; the retain size is only a hint. */
  iso_runtime_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.page_pool_retain_bytes = 1u << 20;
  rt = iso_runtime_new(&p);
  CHECK(rt != NULL);
  iso_isolate *c = iso_isolate_new(rt, NULL);
  CHECK(c != NULL);
  for (int i = 0; i < 200; i++) {
    iso_scope sc;
    iso_scope_open(c, &sc);
    CHECK(iso_array_new(c, 2000) != NULL);
    CHECK_OK(iso_scope_close(&sc));
  }
  CHECK_OK(iso_gc(c, ISO_GC_FULL));
  CHECK_OK(iso_isolate_free(c));
  CHECK_OK(iso_runtime_free(rt));

  /* A parameter struct whose size was never set is malformed. */
  memset(&p, 0, sizeof p);
  CHECK_FAILS(iso_runtime_new(&p), == NULL, ISO_ERR_ARGUMENT, "size");
  CHECK_FAILS_ST(iso_runtime_free(NULL), ISO_ERR_ARGUMENT, "");
}

static void test_several_runtimes(void) {
  iso_runtime *r1 = iso_runtime_new(NULL);
  iso_runtime *r2 = iso_runtime_new(NULL);
  CHECK(r1 && r2 && r1 != r2);
  /* Runtimes share nothing: the same name means different types. */
  iso_type p1 = unit_register(r1, "Point", 2, 0);
  iso_type p2 = unit_register(r2, "Point", 3, 16);
  iso_type only2 = unit_register(r2, "OnlyInTwo", 1, 0);
  CHECK_EQ(iso_type_find(r1, "Point"), p1);
  CHECK_EQ(iso_type_find(r2, "Point"), p2);
  CHECK_EQ(iso_type_find(r1, "OnlyInTwo"), 0);
  CHECK_EQ(iso_type_find(r2, "OnlyInTwo"), only2);

  iso_isolate *i1 = iso_isolate_new(r1, NULL);
  iso_isolate *i2 = iso_isolate_new(r2, NULL);
  iso_isolate *i3 = iso_isolate_new(r2, NULL);
  CHECK(i1 && i2 && i3);
  CHECK(iso_isolate_runtime(i1) == r1);
  CHECK(iso_isolate_runtime(i2) == r2);
  CHECK(iso_isolate_runtime(i3) == r2);
  CHECK_UEQ(iso_runtime_isolate_count(r1), 1);
  CHECK_UEQ(iso_runtime_isolate_count(r2), 2);

  iso_handle a = iso_record_new(i1, p1);
  iso_handle b = iso_record_new(i2, p2);
  iso_handle c = iso_record_new(i3, p2);
  CHECK(a && b && c);
  CHECK_EQ(iso_record_slot_count(iso_get(a)), 2);
  CHECK_EQ(iso_record_slot_count(iso_get(b)), 3);
  /* The same id in every isolate of a runtime. */
  CHECK_EQ(iso_type_of(iso_get(b)), p2);
  CHECK_EQ(iso_type_of(iso_get(c)), p2);
  CHECK_EQ(iso_type_of(iso_get(a)), p1);

  /* Interleave work in the three isolates; each keeps its own data. */
  iso_isolate *isos[3] = {i1, i2, i3};
  iso_handle recs[3] = {a, b, c};
  for (int round = 0; round < 3; round++) {
    for (int k = 0; k < 3; k++) {
      char text[32];
      snprintf(text, sizeof text, "iso%d-round%d", k, round);
      iso_handle s = iso_string_from_cstr(isos[k], text);
      CHECK(s != NULL);
      CHECK_OK(iso_record_set(isos[k], iso_get(recs[k]), 1, iso_get(s)));
    }
    for (int k = 0; k < 3; k++)
      CHECK_OK(iso_gc(isos[k], round == 1 ? ISO_GC_FULL : ISO_GC_MINOR));
    for (int k = 0; k < 3; k++) {
      char text[32];
      snprintf(text, sizeof text, "iso%d-round%d", k, round);
      CHECK_STRING(iso_record_slot(iso_get(recs[k]), 1), text);
    }
  }

  CHECK_FAILS_ST(iso_runtime_free(r2), ISO_ERR_STATE, "");
  CHECK_OK(iso_isolate_free(i2));
  CHECK_OK(iso_isolate_free(i1));
  CHECK_OK(iso_runtime_free(r1));
  /* i3 is unaffected by the other runtime going away. */
  CHECK_STRING(iso_record_slot(iso_get(c), 1), "iso2-round2");
  CHECK_OK(iso_gc(i3, ISO_GC_FULL));
  CHECK_STRING(iso_record_slot(iso_get(c), 1), "iso2-round2");
  CHECK_OK(iso_isolate_free(i3));
  CHECK_OK(iso_runtime_free(r2));
}

static void test_type_register(void) {
  iso_runtime *rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);

  char name[32] = "Vec3";
  iso_type_desc d = unit_desc(name, 3, 24);
  iso_type vec = iso_type_register(rt, &d);
  CHECK(vec != 0);
  /* The name was copied: changing the caller's buffer changes nothing. */
  memcpy(name, "Junk", 5);
  CHECK_STR(iso_type_name(rt, vec), "Vec3");
  CHECK_EQ(iso_type_find(rt, "Vec3"), vec);
  CHECK_EQ(iso_type_find(rt, "Junk"), 0);

  iso_type other = unit_register(rt, "Other", 0, 0);
  CHECK(other != vec);
  CHECK_STR(iso_type_name(rt, other), "Other");

  /* Duplicate names. */
  d = unit_desc("Vec3", 1, 0);
  CHECK_FAILS(iso_type_register(rt, &d), == 0, ISO_ERR_ARGUMENT,
              "Vec3|duplicate|exist|already");
  CHECK_EQ(iso_type_find(rt, "Vec3"), vec);

  /* Bad descriptors. */
  CHECK_FAILS(iso_type_register(rt, NULL), == 0, ISO_ERR_ARGUMENT, "");
  d = unit_desc("NoRuntime", 1, 0);
  CHECK_FAILS(iso_type_register(NULL, &d), == 0, ISO_ERR_ARGUMENT, "");
  d = unit_desc(NULL, 1, 0);
  CHECK_FAILS(iso_type_register(rt, &d), == 0, ISO_ERR_ARGUMENT, "name");
  d = unit_desc("", 1, 0);
  CHECK_FAILS(iso_type_register(rt, &d), == 0, ISO_ERR_ARGUMENT, "name");
  d = unit_desc("Unsized", 1, 0);
  d.struct_size = 0;
  CHECK_FAILS(iso_type_register(rt, &d), == 0, ISO_ERR_ARGUMENT, "size");
  CHECK_EQ(iso_type_find(rt, "Unsized"), 0);

  /* Size limits: 65536 slots and 1 MiB of raw bytes are the maxima. */
  d = unit_desc("MaxSlots", 65536, 0);
  CHECK(iso_type_register(rt, &d) != 0);
  d = unit_desc("TooManySlots", 65537, 0);
  CHECK_FAILS(iso_type_register(rt, &d), == 0, ISO_ERR_ARGUMENT,
              "slot|65536|limit");
  d = unit_desc("MaxRaw", 0, 1u << 20);
  CHECK(iso_type_register(rt, &d) != 0);
  d = unit_desc("TooMuchRaw", 0, (1u << 20) + 1);
  CHECK_FAILS(iso_type_register(rt, &d), == 0, ISO_ERR_ARGUMENT,
              "raw|1048576|limit|size");
  CHECK_EQ(iso_type_find(rt, "TooManySlots"), 0);
  CHECK_EQ(iso_type_find(rt, "TooMuchRaw"), 0);

  /* Lookups that find nothing. */
  CHECK_EQ(iso_type_find(rt, NULL), 0);
  CHECK_EQ(iso_type_find(NULL, "Vec3"), 0);
  CHECK(iso_type_name(rt, 0) == NULL);
  CHECK(iso_type_name(rt, 60000) == NULL);
  CHECK(iso_type_name(rt, 0xffffffffu) == NULL);
  CHECK(iso_type_name(NULL, vec) == NULL);

  /* Immediates have no type. */
  CHECK_EQ(iso_type_of(iso_smi(5)), 0);
  CHECK_EQ(iso_type_of(ISO_UNDEFINED), 0);
  CHECK_EQ(iso_type_of(ISO_NULL), 0);
  CHECK_EQ(iso_type_of(ISO_TRUE), 0);
  CHECK_OK(iso_runtime_free(rt));
}

static void test_builtin_type_names(void) {
  iso_runtime *rt = iso_runtime_new(NULL);
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(rt && iso);
  iso_handle v[5];
  v[0] = iso_string_from_cstr(iso, "s");
  v[1] = iso_array_new(iso, 1);
  v[2] = iso_map_new(iso);
  v[3] = iso_array_buffer_new(iso, 8);
  v[4] = iso_number_new(iso, 0.5);
  iso_type t[5];
  for (int i = 0; i < 5; i++) {
    CHECK(v[i] != NULL);
    t[i] = iso_type_of(iso_get(v[i]));
    CHECK(t[i] != 0);
    const char *n = iso_type_name(rt, t[i]);
    CHECK(n != NULL && n[0] != '\0');
    for (int j = 0; j < i; j++) CHECK(t[i] != t[j]);
  }
  CHECK_STR(iso_type_name(rt, t[0]), "string");
  /* Two strings share the built-in type. */
  iso_handle s2 = iso_string_from_cstr(iso, "other");
  CHECK_EQ(iso_type_of(iso_get(s2)), t[0]);
  /* A user type gets an id distinct from every built-in. */
  iso_type user = unit_register(rt, "User", 1, 0);
  for (int i = 0; i < 5; i++) CHECK(user != t[i]);
  CHECK_OK(iso_isolate_free(iso));
  CHECK_OK(iso_runtime_free(rt));
}

static void test_isolate_lifecycle(void) {
  iso_runtime *rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  CHECK_FAILS(iso_isolate_new(NULL, NULL), == NULL, ISO_ERR_ARGUMENT,
              "runtime|null");
  iso_isolate_params p = unit_params();
  p.struct_size = 0;
  CHECK_FAILS(iso_isolate_new(rt, &p), == NULL, ISO_ERR_ARGUMENT, "size");
  CHECK_UEQ(iso_runtime_isolate_count(rt), 0);

  char name[32] = "worker-7";
  p = unit_params();
  p.name = name;
  iso_isolate *iso = iso_isolate_new(rt, &p);
  CHECK(iso != NULL);
  memcpy(name, "changed", 8);
  CHECK_STR(iso_isolate_name(iso), "worker-7");
  CHECK(iso_isolate_runtime(iso) == rt);
  /* The outermost scope is open from the start. */
  iso_handle h = iso_string_from_cstr(iso, "no scope opened");
  CHECK(h != NULL);
  CHECK_STRING(iso_get(h), "no scope opened");
  CHECK_OK(iso_safepoint(iso));
  CHECK_STRING(iso_get(h), "no scope opened");
  CHECK_FAILS_ST(iso_safepoint(NULL), ISO_ERR_ARGUMENT, "");
  CHECK(iso_isolate_runtime(NULL) == NULL);
  CHECK(iso_isolate_name(NULL) == NULL);
  CHECK_FAILS_ST(iso_isolate_free(NULL), ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));

  /* Create and destroy many; each leaves nothing behind. */
  for (int i = 0; i < 30; i++) {
    iso_isolate *x = iso_isolate_new(rt, NULL);
    CHECK(x != NULL);
    CHECK_UEQ(iso_runtime_isolate_count(rt), 1);
    iso_handle a = iso_array_new(x, 0);
    for (int k = 0; k < 100; k++) {
      iso_scope sc;
      iso_scope_open(x, &sc);
      iso_handle s = iso_string_from_cstr(x, "payload");
      CHECK_OK(iso_array_push(x, iso_get(a), iso_get(s)));
      CHECK_OK(iso_scope_close(&sc));
    }
    if (i % 3 == 0) CHECK_OK(iso_gc(x, ISO_GC_FULL));
    CHECK_UEQ(iso_array_length(iso_get(a)), 100);
    CHECK_OK(iso_isolate_free(x));
    CHECK_UEQ(iso_runtime_isolate_count(rt), 0);
  }
  CHECK_OK(iso_runtime_free(rt));
}

/* Kilobytes of the process's mappings advised MADV_HUGEPAGE ("hg" among
 * their VmFlags in /proc/self/smaps); with addr non-zero, only of the
 * mapping that holds addr. -1 where that file is missing. */
static long huge_advised_kb(uintptr_t addr) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  long total = 0, size = 0;
  bool inside = addr == 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (addr && sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
      inside = addr >= lo && addr < hi;
    else if (sscanf(line, "Size: %ld kB", &size) == 1)
      continue;
    else if (inside && strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " hg"))
      total += size;
  }
  fclose(f);
  return total;
}

/* Note [Huge pages] (gc/page.c): with huge_pages on, the pool's chunks and
 * objects of 2 MiB and more are advised huge pages, except chunks that
 * pages taken in a pause come from; off (the default), nothing is. The
 * heap works the same either way. */
static void test_huge_pages(void) {
  iso_runtime_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.huge_pages = 7;
  CHECK_FAILS(iso_runtime_new(&p), == NULL, ISO_ERR_ARGUMENT, "huge_pages");
  const char *env = getenv("ISO_GC_HUGE_PAGES");
  enum { BIG = 1 << 20, SMALL = 1 << 15 }; /* 8 MiB and 256 KiB of slots */
  size_t text_len = (size_t)3 << 20;
  char *text = malloc(text_len);
  CHECK(text != NULL);
  memset(text, 'h', text_len);
  for (unsigned mode = ISO_HUGE_PAGES_OFF; mode <= ISO_HUGE_PAGES_ON; mode++) {
    p.huge_pages = mode;
    long before = huge_advised_kb(0);
    iso_runtime *rt = iso_runtime_new(&p);
    CHECK(rt != NULL);
    iso_isolate *iso = iso_isolate_new(rt, NULL);
    CHECK(iso != NULL);
    iso_scope sc;
    iso_scope_open(iso, &sc);
    iso_handle big = iso_array_new(iso, BIG);
    iso_handle small = iso_array_new(iso, SMALL);
    iso_handle str = iso_string_new(iso, text, text_len);
    CHECK(big != NULL && small != NULL && str != NULL);
    for (size_t i = 0; i < BIG; i += 4099)
      CHECK_OK(iso_array_set(iso, iso_get(big), i, iso_smi((int64_t)i)));
    /* Young survivors: the collection below copies them in its pause. */
    iso_handle young = iso_array_new(iso, 0);
    CHECK(young != NULL);
    for (int i = 0; i < 20000; i++) {
      iso_scope in;
      iso_scope_open(iso, &in);
      iso_handle e = iso_array_new(iso, 4); /* may move young */
      CHECK(e != NULL);
      CHECK_OK(iso_array_push(iso, iso_get(young), iso_get(e)));
      CHECK_OK(iso_scope_close(&in));
    }
    CHECK_OK(iso_gc(iso, ISO_GC_FULL));
    CHECK_UEQ(iso_array_length(iso_get(young)), 20000);
    for (size_t i = 0; i < BIG; i++) {
      iso_value v = iso_get(iso_array_get(iso, iso_get(big), i));
      if (i % 4099 == 0)
        CHECK(v == iso_smi((int64_t)i));
      else if (i % 65536 == 1)
        CHECK(iso_is_undefined(v));
    }
    CHECK(iso_string_length(iso_get(str)) == text_len &&
          memcmp(iso_string_data(iso_get(str)), text, text_len) == 0);
    long after = huge_advised_kb(0);
    iso_runtime_statistics_t rs;
    CHECK_OK(iso_runtime_statistics(rt, &rs));
    long mapped_kb = (long)(rs.pool_mapped_size >> 10);
    long in_str = huge_advised_kb((uintptr_t)iso_string_data(iso_get(str)));
    if (before < 0 || env) {
      printf("# huge-page advice not checked (%s)\n",
             env ? "ISO_GC_HUGE_PAGES is set" : "no /proc/self/smaps");
    } else if (mode == ISO_HUGE_PAGES_ON) {
      /* One chunk of 16 MiB (the heap is small), the array's 8 MiB and
       * the string's 3 MiB, not the small array's large page; and the
       * pages the collection took in its pause came from a chunk of
       * their own, not advised. */
      long want = (16 << 10) + (8 << 10) + (3 << 10);
      CHECK_GE(after - before, want);
      CHECK_LT(after - before, want + 128);
      CHECK_GE(mapped_kb - (after - before), 16 << 10);
      CHECK_GE(in_str, 3 << 10);
    } else {
      CHECK_EQ(after, before);
      CHECK_EQ(in_str, 0);
    }
    CHECK_OK(iso_scope_close(&sc));
    CHECK_OK(iso_isolate_free(iso));
    CHECK_OK(iso_runtime_free(rt));
    /* Unmapped with the runtime. */
    if (before >= 0 && !env) CHECK_EQ(huge_advised_kb(0), before);
  }
  free(text);
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  RUN(test_version);
  RUN(test_status_names);
  RUN(test_kind_names);
  RUN(test_errors_per_thread);
  RUN(test_runtime_lifecycle);
  RUN(test_several_runtimes);
  RUN(test_type_register);
  RUN(test_builtin_type_names);
  RUN(test_isolate_lifecycle);
  RUN(test_huge_pages);
  return unit_done();
}
