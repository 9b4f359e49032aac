/*
 * Small helpers the unit tests share: parameter structs with their size
 * set, content checks for strings, and readers for the statistics that
 * tests use to observe the collector (object counts per type, memory
 * usage, pause counts).
 */
#ifndef UNIT_HELPERS_H
#define UNIT_HELPERS_H

#include "check.h"

/* Set by meson from the build's options; the defaults match a plain
 * debugoptimized build. */
#ifndef UNIT_DEBUG_CHECKS
#define UNIT_DEBUG_CHECKS 1
#endif
#ifndef UNIT_GC_STRESS
#define UNIT_GC_STRESS 0
#endif

/* The header's defaults for the generation sizes. */
#define UNIT_DEFAULT_OLD_LIMIT ((size_t)2 << 30)
#define UNIT_DEFAULT_YOUNG_SIZE ((size_t)128 << 20)

/* heap_size_limit as V8 reports it: the old generation's limit plus the
 * young generation's maximum (its two semispaces). */
#define UNIT_HEAP_SIZE_LIMIT(old, young) ((size_t)(old) + (size_t)(young))

static inline iso_isolate_params unit_params(void) {
  iso_isolate_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  return p;
}

static inline iso_type_desc unit_desc(const char *name, uint32_t slots,
                                      uint32_t raw) {
  iso_type_desc d;
  memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  d.name = name;
  d.slot_count = slots;
  d.raw_size = raw;
  return d;
}

static inline iso_type unit_register(iso_runtime *rt, const char *name,
                                     uint32_t slots, uint32_t raw) {
  iso_type_desc d = unit_desc(name, slots, raw);
  iso_type t = iso_type_register(rt, &d);
  CHECK(t != 0);
  return t;
}

/* Is s a string of exactly the n bytes at want (and NUL-terminated)? */
static inline int unit_str_is(iso_value s, const char *want, size_t n) {
  if (iso_kind_of(s) != ISO_KIND_STRING) return 0;
  if (iso_string_length(s) != n) return 0;
  const char *d = iso_string_data(s);
  return d && memcmp(d, want, n) == 0 && d[n] == '\0';
}
#define CHECK_STRING(v, cstr) CHECK(unit_str_is((v), (cstr), strlen(cstr)))

/* Objects of type t in the heap (live or not yet collected). */
static inline size_t unit_type_count(iso_isolate *iso, iso_type t) {
  enum { CAP = 512 };
  static iso_type_statistics_t st[CAP];
  size_t n = 0;
  CHECK_OK(iso_heap_object_statistics(iso, st, CAP, &n));
  CHECK(n <= CAP);
  for (size_t i = 0; i < n; i++)
    if (st[i].type == t) return st[i].count;
  return 0;
}

static inline iso_memory_usage_t unit_usage(iso_isolate *iso) {
  iso_memory_usage_t u;
  memset(&u, 0xa5, sizeof u);
  CHECK_OK(iso_memory_usage(iso, &u));
  return u;
}

static inline iso_gc_statistics_t unit_gc_stats(iso_isolate *iso) {
  iso_gc_statistics_t s;
  memset(&s, 0xa5, sizeof s);
  CHECK_OK(iso_gc_statistics(iso, &s));
  return s;
}

/* A reproducible generator for test payloads (xorshift64*). */
static inline uint64_t unit_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dull;
}

/* Fills buf[0..n-1] with bytes that depend on seed, printable ASCII. */
static inline void unit_fill(char *buf, size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1, x = 0;
  for (size_t i = 0; i < n; i++) {
    if (i % 8 == 0) x = unit_rand(&s);
    buf[i] = (char)('!' + (x & 0xff) % 90);
    x >>= 8;
  }
}

/* Keeps ISO_GC_STRESS and ISO_TRACE_GC from a developer's shell out of
 * tests that count collections or trace lines. */
static inline void unit_clean_env(void) {
  unsetenv("ISO_GC_STRESS");
  unsetenv("ISO_TRACE_GC");
  unsetenv("ISO_VERIFY_HEAP");
}

#endif /* UNIT_HELPERS_H */
