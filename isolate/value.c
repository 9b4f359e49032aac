/*
 * Kinds of values, numbers and strings.
 *
 * Layouts (no tagged slots in either, so the collector never looks inside):
 *   double   header, then the IEEE double in 8 raw bytes.
 *   string   header, then gc_string_raw {length, hash}, then length bytes
 *            of UTF-8 and a NUL, padded to a word.
 *
 * Invariants:
 * - A number that is integral, fits a small integer and is not -0.0 is
 *   always a small integer, never a boxed double, so numbers made here
 *   compare equal by value as map keys without unboxing.
 * - A string's bytes are valid UTF-8 (checked at creation) and never
 *   change; its hash is FNV-1a over those bytes, computed once at creation,
 *   so it is the same in every isolate and process and a structured clone
 *   can carry it over unchanged.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "isolate_internal.h"

/* Strings longer than this are refused (ISO_ERR_RANGE). */
#define VALUE_STRING_MAX ((size_t)1 << 30)


/* ---- kinds ---- */

iso_kind iso_kind_of(iso_value v) {
  if (iso_is_smi(v)) return ISO_KIND_INTEGER;
  switch (v) {
  case ISO_UNDEFINED: return ISO_KIND_UNDEFINED;
  case ISO_NULL: return ISO_KIND_NULL;
  case ISO_TRUE:
  case ISO_FALSE: return ISO_KIND_BOOLEAN;
  default: break;
  }
  if (!iso_is_ref(v)) return ISO_KIND_INVALID;
  /* A stale reference: into a page that was evacuated (spare or pooled
   * pages are flagged free), or to an object that has been moved. */
  if (thr_load_relaxed(&gc_page_of(gc_obj(v))->flags) & GC_PAGE_FREE)
    return ISO_KIND_INVALID;
  uint64_t hdr = gc_header(v);
  if (gc_hdr_is_forward(hdr)) return ISO_KIND_INVALID;
  switch (gc_hdr_type(hdr)) {
  case GC_TYPE_DOUBLE: return ISO_KIND_DOUBLE;
  case GC_TYPE_STRING: return ISO_KIND_STRING;
  case GC_TYPE_ARRAY: return ISO_KIND_ARRAY;
  case GC_TYPE_MAP: return ISO_KIND_MAP;
  case GC_TYPE_ARRAY_BUFFER: return ISO_KIND_ARRAY_BUFFER;
  case GC_TYPE_TYPED_ARRAY: return ISO_KIND_TYPED_ARRAY;
  case GC_TYPE_SHARED_ARRAY_BUFFER: return ISO_KIND_SHARED_ARRAY_BUFFER;
  case GC_TYPE_EXTERNAL: return ISO_KIND_EXTERNAL;
  case GC_TYPE_PORT: return ISO_KIND_PORT;
  case GC_TYPE_NONE:
  case GC_TYPE_FILLER:
  case GC_TYPE_FIXED_ARRAY: return ISO_KIND_INVALID; /* never handed out */
  default: break;
  }
  /* Records and any later built-in type: ask the type's descriptor. */
  const gc_type *t = isolate_type_of(v);
  return t != NULL ? t->kind : ISO_KIND_INVALID;
}

const char *iso_kind_name(iso_kind kind) {
  /* No default: the compiler names any kind added without a name here. */
  switch (kind) {
  case ISO_KIND_INVALID: return "invalid";
  case ISO_KIND_UNDEFINED: return "undefined";
  case ISO_KIND_NULL: return "null";
  case ISO_KIND_BOOLEAN: return "boolean";
  case ISO_KIND_INTEGER: return "integer";
  case ISO_KIND_DOUBLE: return "double";
  case ISO_KIND_STRING: return "string";
  case ISO_KIND_ARRAY: return "array";
  case ISO_KIND_MAP: return "map";
  case ISO_KIND_RECORD: return "record";
  case ISO_KIND_ARRAY_BUFFER: return "array_buffer";
  case ISO_KIND_TYPED_ARRAY: return "typed_array";
  case ISO_KIND_SHARED_ARRAY_BUFFER: return "shared_array_buffer";
  case ISO_KIND_EXTERNAL: return "external";
  case ISO_KIND_PORT: return "port";
  case ISO_KIND_COUNT_: break;
  }
  return "invalid";
}

iso_type iso_type_of(iso_value v) {
  if (!iso_is_ref(v)) return 0;
  uint64_t hdr = gc_header(v);
  return gc_hdr_is_forward(hdr) ? 0 : gc_hdr_type(hdr);
}

/* ---- numbers ---- */

/* The raw bytes of a double or string start right after the header: both
 * types have no tagged slots. */
static inline void *value_raw(iso_value v) { return gc_slots(v); }

static double double_load(iso_value v) {
  double d;
  memcpy(&d, value_raw(v), sizeof d);
  return d;
}

/* The small integer d is equal to, if there is one. -0.0 has none: it
 * must stay distinguishable from 0 as a value (it is only equal as a map
 * key, which map.c normalises). */
static bool double_to_smi(double d, int64_t *out) {
  /* 2^62 bounds the small integers exactly: [-2^62, 2^62). The compares
   * are false for NaN, so NaN falls through. */
  if (!(d >= -4611686018427387904.0 && d < 4611686018427387904.0))
    return false;
  int64_t n = (int64_t)d;
  if ((double)n != d) return false;
  if (n == 0 && signbit(d)) return false;
  *out = n;
  return true;
}

static iso_handle double_new(iso_isolate *iso, double d) {
  iso_value v = gc_alloc(iso, GC_TYPE_DOUBLE, 16);
  if (v == 0) return NULL;
  memcpy(value_raw(v), &d, sizeof d);
  return iso_handle_new(iso, v);
}

iso_handle iso_number_new(iso_isolate *iso, double d) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  int64_t n;
  if (double_to_smi(d, &n)) return iso_handle_new(iso, iso_smi(n));
  return double_new(iso, d);
}

iso_handle iso_integer_new(iso_isolate *iso, int64_t n) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (n >= ISO_SMI_MIN && n <= ISO_SMI_MAX)
    return iso_handle_new(iso, iso_smi(n));
  return double_new(iso, (double)n);
}

bool iso_is_number(iso_value v) {
  return iso_is_smi(v) || gc_is_kind(v, GC_TYPE_DOUBLE);
}

double iso_number_value(iso_value v) {
  if (iso_is_smi(v)) return (double)iso_smi_value(v);
  if (gc_is_kind(v, GC_TYPE_DOUBLE)) return double_load(v);
  isolate_fail(ISO_ERR_TYPE, "iso_number_value: expected a number, got %s",
               iso_kind_name(iso_kind_of(v)));
  return NAN;
}

/* ---- strings ---- */

static inline gc_string_raw *string_raw(iso_value s) {
  return (gc_string_raw *)value_raw(s);
}
static inline char *string_bytes(iso_value s) {
  return (char *)value_raw(s) + sizeof(gc_string_raw);
}

/* Checks that s[0..len) is UTF-8 as RFC 3629 defines it: shortest form
 * only, no surrogates, nothing past U+10FFFF. Returns NULL when valid, or
 * a description of the first fault with its offset in *at. */
const char *isolate_utf8_check(const unsigned char *s, size_t len,
                               size_t *at) {
  size_t i = 0;
  while (i < len) {
    /* Most text is ASCII: skip it a word at a time. */
    while (i + 8 <= len) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= len) break;
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    *at = i;
    size_t need;
    /* The bounds of the second byte carry every rule of RFC 3629 table 3:
     * E0 and F0 exclude overlongs, ED excludes surrogates, F4 stops at
     * U+10FFFF. */
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0xc0) return "stray continuation byte";
    if (c < 0xc2) return "overlong encoding";
    if (c < 0xe0) {
      need = 1;
    } else if (c < 0xf0) {
      need = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c < 0xf5) {
      need = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return "code point beyond U+10FFFF";
    }
    if (len - i - 1 < need) return "truncated sequence";
    unsigned char c1 = s[i + 1];
    if (c1 < 0x80 || c1 > 0xbf) return "truncated sequence";
    if (c1 < lo) return "overlong encoding";
    if (c1 > hi)
      return c == 0xed ? "surrogate code point" : "code point beyond U+10FFFF";
    for (size_t k = 2; k <= need; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return "truncated sequence";
    }
    i += need + 1;
  }
  return NULL;
}

/* Is p inside a young page of iso? Only pages there move in a GC. */
static bool in_young_space(iso_isolate *iso, const void *p) {
  const char *c = p;
  for (const gc_page *pg = iso->heap.young.pages; pg != NULL; pg = pg->next)
    if (c >= pg->area_start && c < pg->area_end) return true;
  return false;
}

iso_handle iso_string_new(iso_isolate *iso, const char *utf8, size_t len) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (utf8 == NULL && len != 0)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_string_new: utf8 is NULL but len is %zu",
                             len);
  if (len > VALUE_STRING_MAX)
    return ISOLATE_FAIL_NULL(ISO_ERR_RANGE,
                             "iso_string_new: %zu bytes is more than the "
                             "limit of 1 GiB",
                             len);
  const unsigned char *src = (const unsigned char *)utf8;
  size_t at = 0;
  const char *fault = isolate_utf8_check(src, len, &at);
  if (fault != NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_string_new: invalid UTF-8 at byte %zu "
                             "(0x%02x): %s",
                             at, src[at], fault);
  uint32_t hash = isolate_fnv1a(src, len);
  size_t bytes = 8 + sizeof(gc_string_raw) + len + 1;
  bytes = (bytes + 7) & ~(size_t)7;

  /* The bytes may be another young object's (iso_string_data() of a
   * string being concatenated, a record's raw bytes), which a GC in the
   * allocation would move. Only an allocation that does not fit the
   * linear area can collect, so only then is the source looked up, and
   * copied aside if it is young; a young object is smaller than
   * GC_LARGE_OBJECT_SIZE, so a longer source cannot be one. (Old objects
   * never move: the old space does not compact.) */
  unsigned char small[256];
  unsigned char *copy = NULL;
  if (len != 0 && len < GC_LARGE_OBJECT_SIZE &&
      (size_t)(iso->inl.alloc_limit - iso->inl.alloc_top) < bytes &&
      in_young_space(iso, src)) {
    copy = len <= sizeof small ? small : malloc(len);
    if (copy == NULL)
      return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                               "iso_string_new: out of memory copying %zu "
                               "bytes",
                               len);
    memcpy(copy, src, len);
    src = copy;
  }
  iso_value s = gc_alloc(iso, GC_TYPE_STRING, bytes);
  if (s != 0) {
    gc_string_raw *raw = string_raw(s);
    raw->length = len;
    raw->hash = hash;
    if (len != 0) memcpy(string_bytes(s), src, len);
    string_bytes(s)[len] = '\0'; /* gc_alloc zeroed it; be explicit */
  }
  if (copy != NULL && copy != small) free(copy);
  return s != 0 ? iso_handle_new(iso, s) : NULL;
}

iso_handle iso_string_from_cstr(iso_isolate *iso, const char *cstr) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (cstr == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_string_from_cstr: cstr is NULL");
  return iso_string_new(iso, cstr, strlen(cstr));
}

static bool string_check(iso_value s, const char *fn) {
  if (gc_is_kind(s, GC_TYPE_STRING)) return true;
  isolate_fail(ISO_ERR_TYPE, "%s: expected a string, got %s", fn,
               iso_kind_name(iso_kind_of(s)));
  return false;
}

size_t iso_string_length(iso_value s) {
  if (!string_check(s, __func__)) return 0;
  return (size_t)string_raw(s)->length;
}

const char *iso_string_data(iso_value s) {
  if (!string_check(s, __func__)) return NULL;
  return string_bytes(s);
}

uint32_t iso_string_hash(iso_value s) {
  if (!string_check(s, __func__)) return 0;
  return string_raw(s)->hash;
}

bool iso_string_equal(iso_value a, iso_value b) {
  if (!gc_is_kind(a, GC_TYPE_STRING) || !gc_is_kind(b, GC_TYPE_STRING))
    return false;
  if (a == b) return true;
  const gc_string_raw *ra = string_raw(a), *rb = string_raw(b);
  if (ra->length != rb->length || ra->hash != rb->hash) return false;
  return memcmp(string_bytes(a), string_bytes(b), (size_t)ra->length) == 0;
}
