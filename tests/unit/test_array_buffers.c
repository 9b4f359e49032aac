/*
 * ArrayBuffers: stable backing stores, external-memory accounting in
 * iso_memory_usage, detaching, and the free callback of caller-owned
 * memory (exactly once: on death, on detach, or with the isolate).
 */
#include <pthread.h>

#include "helpers.h"

static iso_runtime *rt;

/* test_basics asks for memory that cannot exist and expects an error
 * status; the sanitizers' allocators must return NULL for that rather
 * than stop the program. */
__attribute__((used)) const char *__asan_default_options(void) {
  return "allocator_may_return_null=1";
}
__attribute__((used)) const char *__tsan_default_options(void) {
  return "allocator_may_return_null=1";
}

/* What the free callback saw. */
typedef struct freed {
  int calls;
  void *data;
  size_t length;
  void *ctx;
  pthread_t thread;
} freed;

static void on_free(void *data, size_t length, void *ctx) {
  freed *f = ctx;
  f->calls++;
  f->data = data;
  f->length = length;
  f->ctx = ctx;
  f->thread = pthread_self();
  free(data);
}

static void check_freed(const freed *f, void *data, size_t length) {
  CHECK_EQ(f->calls, 1);
  CHECK(f->data == data);
  CHECK_UEQ(f->length, length);
  CHECK(f->ctx == f);
  CHECK(pthread_equal(f->thread, pthread_self()));
}

static void test_basics(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_handle ab = iso_array_buffer_new(iso, 1000);
  CHECK(ab != NULL);
  CHECK_EQ(iso_kind_of(iso_get(ab)), ISO_KIND_ARRAY_BUFFER);
  CHECK_UEQ(iso_array_buffer_byte_length(iso_get(ab)), 1000);
  CHECK(!iso_array_buffer_is_detached(iso_get(ab)));
  unsigned char *p = iso_array_buffer_data(iso_get(ab));
  CHECK(p != NULL);
  size_t nonzero = 0;
  for (int i = 0; i < 1000; i++) nonzero += p[i] != 0;
  CHECK_UEQ(nonzero, 0);
  for (int i = 0; i < 1000; i++) p[i] = (unsigned char)(i * 7);

  /* The bytes never move, whatever moves the buffer object. */
  for (int round = 0; round < 3; round++) {
    CHECK(iso_string_from_cstr(iso, "churn") != NULL);
    CHECK_OK(iso_gc(iso, round == 1 ? ISO_GC_FULL : ISO_GC_MINOR));
    CHECK(iso_array_buffer_data(iso_get(ab)) == p);
    for (int i = 0; i < 1000; i++) CHECK_EQ(p[i], (unsigned char)(i * 7));
  }

  /* An empty buffer: no bytes, not detached. */
  iso_handle empty = iso_array_buffer_new(iso, 0);
  CHECK(empty != NULL);
  CHECK_UEQ(iso_array_buffer_byte_length(iso_get(empty)), 0);
  CHECK(iso_array_buffer_data(iso_get(empty)) == NULL);
  CHECK(!iso_array_buffer_is_detached(iso_get(empty)));

  /* Wrong kinds. */
  iso_handle s = iso_string_from_cstr(iso, "not a buffer");
  const iso_value bad[] = {iso_get(s), iso_smi(1), ISO_NULL};
  for (size_t i = 0; i < 3; i++) {
    CHECK(iso_array_buffer_data(bad[i]) == NULL);
    CHECK_UEQ(iso_array_buffer_byte_length(bad[i]), 0);
    CHECK(!iso_array_buffer_is_detached(bad[i]));
    CHECK_FAILS_ST(iso_array_buffer_detach(iso, bad[i]), ISO_ERR_TYPE,
                   "buffer");
  }
  CHECK_STRING(iso_get(s), "not a buffer");
  CHECK_FAILS(iso_array_buffer_new(NULL, 8), == NULL, ISO_ERR_ARGUMENT, "");
  /* Memory that cannot exist. */
  iso_clear_error();
  CHECK(iso_array_buffer_new(iso, SIZE_MAX - 4096) == NULL);
  CHECK(iso_last_status() == ISO_ERR_OUT_OF_MEMORY ||
        iso_last_status() == ISO_ERR_RANGE);
  CHECK(iso_last_error()[0] != '\0');
  CHECK_OK(iso_isolate_free(iso));
}

static void test_accounting(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  const size_t len = 3u << 20;
  iso_memory_usage_t u0 = unit_usage(iso);
  CHECK_ULE(u0.array_buffers, u0.external);

  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle a = iso_array_buffer_new(iso, len);
  CHECK(a != NULL);
  iso_memory_usage_t u1 = unit_usage(iso);
  CHECK_UEQ(u1.array_buffers, u0.array_buffers + len);
  CHECK_UEQ(u1.external, u0.external + len);

  /* An external buffer counts the same. */
  freed f = {0};
  void *mem = malloc(len / 3);
  CHECK(mem != NULL);
  iso_handle x = iso_array_buffer_new_external(iso, mem, len / 3, on_free, &f);
  CHECK(x != NULL);
  CHECK(iso_array_buffer_data(iso_get(x)) == mem);
  CHECK_UEQ(iso_array_buffer_byte_length(iso_get(x)), len / 3);
  iso_memory_usage_t u2 = unit_usage(iso);
  CHECK_UEQ(u2.array_buffers, u1.array_buffers + len / 3);
  CHECK_UEQ(u2.external, u1.external + len / 3);

  /* Detach: the memory goes at once. */
  CHECK_OK(iso_array_buffer_detach(iso, iso_get(a)));
  CHECK(iso_array_buffer_is_detached(iso_get(a)));
  CHECK_UEQ(iso_array_buffer_byte_length(iso_get(a)), 0);
  CHECK(iso_array_buffer_data(iso_get(a)) == NULL);
  iso_memory_usage_t u3 = unit_usage(iso);
  CHECK_UEQ(u3.array_buffers, u2.array_buffers - len);
  CHECK_UEQ(u3.external, u2.external - len);

  /* Death: the rest goes once the collector finds the buffer dead. */
  CHECK_OK(iso_scope_close(&sc));
  CHECK_EQ(f.calls, 0);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  check_freed(&f, mem, len / 3);
  iso_memory_usage_t u4 = unit_usage(iso);
  CHECK_UEQ(u4.array_buffers, u0.array_buffers);
  CHECK_UEQ(u4.external, u0.external);

  /* Many small buffers that die young. */
  iso_scope_open(iso, &sc);
  for (int i = 0; i < 1000; i++) {
    iso_handle b = iso_array_buffer_new(iso, 4096);
    CHECK(b != NULL);
    ((char *)iso_array_buffer_data(iso_get(b)))[4095] = 1;
  }
  iso_memory_usage_t u5 = unit_usage(iso);
  CHECK_UEQ(u5.array_buffers, u0.array_buffers + 1000 * 4096);
  CHECK_OK(iso_scope_close(&sc));
  /* In GC stress mode, collections while the scope was open promoted
   * some of them: only a full GC finds those dead. */
  CHECK_OK(iso_gc(iso, UNIT_GC_STRESS ? ISO_GC_FULL : ISO_GC_MINOR));
  iso_memory_usage_t u6 = unit_usage(iso);
  CHECK_UEQ(u6.array_buffers, u0.array_buffers);
  CHECK_UEQ(u6.external, u0.external);

  /* Survivors promoted to the old space stay counted until they die. */
  iso_scope_open(iso, &sc);
  iso_handle keep = iso_array_buffer_new(iso, 12345);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_usage(iso).array_buffers, u0.array_buffers + 12345);
  CHECK_UEQ(iso_array_buffer_byte_length(iso_get(keep)), 12345);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_UEQ(unit_usage(iso).array_buffers, u0.array_buffers);

  iso_heap_statistics_t hs;
  CHECK_OK(iso_heap_statistics(iso, &hs));
  CHECK_UEQ(hs.external_memory, unit_usage(iso).external);
  CHECK_OK(iso_isolate_free(iso));
}

static void test_free_callback(void) {
  iso_isolate *iso = iso_isolate_new(rt, NULL);
  CHECK(iso != NULL);
  iso_scope sc;

  /* Dies young: freed by the scavenge that finds it dead. */
  freed f1 = {0};
  void *m1 = malloc(64);
  iso_scope_open(iso, &sc);
  CHECK(iso_array_buffer_new_external(iso, m1, 64, on_free, &f1) != NULL);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_EQ(f1.calls, 0);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  check_freed(&f1, m1, 64);
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(f1.calls, 1);

  /* Dies old: freed by the full GC, not before. */
  freed f2 = {0};
  void *m2 = malloc(128);
  iso_scope_open(iso, &sc);
  CHECK(iso_array_buffer_new_external(iso, m2, 128, on_free, &f2) != NULL);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(f2.calls, 0);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  check_freed(&f2, m2, 128);

  /* Detached: freed at the detach, never again. */
  freed f3 = {0};
  void *m3 = malloc(256);
  iso_scope_open(iso, &sc);
  iso_handle b3 = iso_array_buffer_new_external(iso, m3, 256, on_free, &f3);
  CHECK_OK(iso_array_buffer_detach(iso, iso_get(b3)));
  check_freed(&f3, m3, 256);
  /* Detaching again frees nothing more (it may or may not be an error). */
  iso_status again = iso_array_buffer_detach(iso, iso_get(b3));
  CHECK(again == ISO_OK || again == ISO_ERR_DETACHED);
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  CHECK_EQ(f3.calls, 1);

  /* Alive when the isolate goes: freed with it. */
  freed f4 = {0}, f5 = {0};
  void *m4 = malloc(32), *m5 = malloc(48);
  CHECK(iso_array_buffer_new_external(iso, m4, 32, on_free, &f4) != NULL);
  CHECK(iso_array_buffer_new_external(iso, m5, 48, on_free, &f5) != NULL);
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  CHECK_OK(iso_gc(iso, ISO_GC_MINOR)); /* m5's buffer old, m4's too */
  freed f6 = {0};
  void *m6 = malloc(16);
  CHECK(iso_array_buffer_new_external(iso, m6, 16, on_free, &f6) != NULL);
  CHECK_EQ(f4.calls + f5.calls + f6.calls, 0);
  CHECK_OK(iso_isolate_free(iso));
  check_freed(&f4, m4, 32);
  check_freed(&f5, m5, 48);
  check_freed(&f6, m6, 16);

  /* Without a callback the caller keeps its memory: a static array the
   * library must never free (the sanitizers would catch it). */
  static char fixed[100];
  iso = iso_isolate_new(rt, NULL);
  iso_scope_open(iso, &sc);
  iso_handle b =
      iso_array_buffer_new_external(iso, fixed, sizeof fixed, NULL, NULL);
  CHECK(b != NULL);
  CHECK(iso_array_buffer_data(iso_get(b)) == fixed);
  ((char *)iso_array_buffer_data(iso_get(b)))[0] = 'x';
  CHECK_EQ(fixed[0], 'x');
  CHECK_OK(iso_scope_close(&sc));
  CHECK_OK(iso_gc(iso, ISO_GC_FULL));
  iso_handle b2 =
      iso_array_buffer_new_external(iso, fixed, sizeof fixed, NULL, NULL);
  CHECK_OK(iso_array_buffer_detach(iso, iso_get(b2)));
  CHECK(iso_array_buffer_new_external(iso, fixed, 10, NULL, NULL) != NULL);
  CHECK_FAILS(iso_array_buffer_new_external(iso, NULL, 10, on_free, &f1),
              == NULL, ISO_ERR_ARGUMENT, "");
  CHECK_OK(iso_isolate_free(iso));
  CHECK_EQ(f1.calls, 1);
}

int main(int argc, char **argv) {
  unit_init(argc, argv);
  unit_clean_env();
  rt = iso_runtime_new(NULL);
  CHECK(rt != NULL);
  RUN(test_basics);
  RUN(test_accounting);
  RUN(test_free_callback);
  CHECK_OK(iso_runtime_free(rt));
  return unit_done();
}
