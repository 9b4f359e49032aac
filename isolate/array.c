/*
 * Arrays: growable and dense.
 *
 * Layout: an array object (GC_TYPE_ARRAY) is all slots:
 *   [0] elements: a fixed array (GC_TYPE_FIXED_ARRAY) whose word count is
 *       the capacity, or undefined when the elements are inline;
 *   [1] length: a small integer;
 *   [2..] inline elements: an array made with at most GC_ARRAY_INLINE_MAX
 *       elements has room for them in the object itself (none for one
 *       made empty), so a small array is one object, not two.
 * The elements live inline while [0] is undefined (the capacity is then
 * the inline room) and in the fixed array once one was needed.
 *
 * Invariants:
 * - 0 <= length <= capacity <= ARRAY_MAX.
 * - Every element at an index >= length is undefined, so growing within
 *   the capacity only raises the length, and a truncated tail keeps no
 *   garbage alive; every inline slot is undefined while [0] is a fixed
 *   array.
 * - The elements array belongs to one array; it is replaced, never shared,
 *   when it grows (by half again, so pushes cost O(1) amortised).
 */
#include <string.h>

#include "isolate_internal.h"

#define ARRAY_MAX ((size_t)1 << 28)
#define ARRAY_MIN_CAPACITY 4u

enum { ARRAY_ELEMENTS = 0, ARRAY_LENGTH = 1, ARRAY_INLINE = GC_ARRAY_SLOTS };

static bool array_check(iso_value a, const char *fn) {
  if (gc_is_kind(a, GC_TYPE_ARRAY)) return true;
  isolate_fail(ISO_ERR_TYPE, "%s: expected an array, got %s", fn,
               iso_kind_name(iso_kind_of(a)));
  return false;
}

static inline size_t array_length(iso_value a) {
  return (size_t)iso_smi_value(gc_slot_load(a, ARRAY_LENGTH));
}

static inline iso_value array_elements(iso_value a) {
  return gc_slot_load(a, ARRAY_ELEMENTS);
}

iso_value isolate_array_host(iso_value a, size_t *base) {
  iso_value e = array_elements(a);
  *base = iso_is_ref(e) ? 0 : ARRAY_INLINE;
  return iso_is_ref(e) ? e : a;
}

static inline size_t array_inline_room(iso_value a) {
  return gc_object_size(a) / 8 - 1 - ARRAY_INLINE;
}

static inline size_t array_capacity(iso_value a) {
  iso_value e = array_elements(a);
  return iso_is_ref(e) ? gc_object_size(e) / 8 - 1 : array_inline_room(a);
}


static inline void array_set_length(iso_isolate *iso, iso_value a, size_t n) {
  gc_write(iso, a, ARRAY_LENGTH, iso_smi((int64_t)n));
}

/* Copies n slots from src (from slot base) into dst, a fixed array
 * allocated since the last possible GC. A young dst needs no barrier; an
 * old one (a large object) must remember the young values it receives. */
static void slots_copy_fresh(iso_isolate *iso, iso_value dst, iso_value src,
                             size_t base, size_t n) {
  if (gc_page_of(gc_obj(dst))->flags & GC_PAGE_YOUNG) {
    for (size_t i = 0; i < n; i++)
      gc_slot_init(dst, i, gc_slot_load(src, base + i));
  } else {
    for (size_t i = 0; i < n; i++)
      gc_write(iso, dst, i, gc_slot_load(src, base + i));
  }
}

/* Replaces the elements of the array in ha with a fixed array of
 * capacity cap (>= length), keeping the elements. May allocate. */
static iso_status array_reserve(iso_isolate *iso, iso_handle ha, size_t cap,
                                const char *fn) {
  if (cap > ARRAY_MAX)
    return isolate_fail(ISO_ERR_RANGE,
                        "%s: %zu elements is more than the limit of 2^28", fn,
                        cap);
  iso_value e = gc_alloc(iso, GC_TYPE_FIXED_ARRAY, 8 + 8 * cap);
  if (e == 0) return ISO_ERR_OUT_OF_MEMORY; /* gc_alloc set the message */
  iso_value a = iso_get(ha); /* the allocation may have moved it */
  size_t base, len = array_length(a);
  iso_value old = isolate_array_host(a, &base);
  slots_copy_fresh(iso, e, old, base, len);
  /* Inline slots left behind would keep their values alive; cleared
   * through the barrier, which shades them while a cycle marks. */
  if (old == a)
    for (size_t i = 0; i < len; i++)
      gc_write(iso, a, ARRAY_INLINE + i, ISO_UNDEFINED);
  gc_write(iso, a, ARRAY_ELEMENTS, e);
  return ISO_OK;
}

/* Capacity to grow to when at least need elements must fit. */
static size_t array_grown_capacity(size_t cap, size_t need) {
  size_t grown = cap + cap / 2;
  if (grown < ARRAY_MIN_CAPACITY) grown = ARRAY_MIN_CAPACITY;
  if (grown < need) grown = need;
  if (grown > ARRAY_MAX && need <= ARRAY_MAX) grown = ARRAY_MAX;
  return grown;
}

iso_handle iso_array_new(iso_isolate *iso, size_t length) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (length > ARRAY_MAX)
    return ISOLATE_FAIL_NULL(ISO_ERR_RANGE,
                             "iso_array_new: length %zu is more than the "
                             "limit of 2^28",
                             length);
  if (length != 0 && length <= GC_ARRAY_INLINE_MAX) {
    /* One object, written here whole: the common small array costs a
     * bump of the allocation area and its words, as a record does. */
    size_t words = 1 + ARRAY_INLINE + length;
    uint64_t *o = gc_alloc_raw(iso, 8 * words);
    if (o == NULL) return NULL;
    o[0] = gc_hdr_make(GC_TYPE_ARRAY, words);
    o[1 + ARRAY_ELEMENTS] = ISO_UNDEFINED;
    o[1 + ARRAY_LENGTH] = iso_smi((int64_t)length);
    for (size_t i = 0; i < length; i++) o[1 + ARRAY_INLINE + i] = ISO_UNDEFINED;
    return iso_handle_new(iso, (iso_value)(uintptr_t)o);
  }
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_value a = gc_alloc(iso, GC_TYPE_ARRAY, 8 + 8 * GC_ARRAY_SLOTS);
  if (a == 0) {
    iso_scope_close(&s);
    return NULL;
  }
  gc_slot_init(a, ARRAY_LENGTH, iso_smi(0));
  iso_handle ha = iso_handle_new(iso, a);
  if (ha == NULL) {
    iso_scope_close(&s);
    return NULL;
  }
  if (length != 0) {
    /* Fresh elements are all undefined already: only the length moves. */
    if (array_reserve(iso, ha, length, __func__) != ISO_OK) {
      iso_scope_close(&s);
      return NULL;
    }
    array_set_length(iso, iso_get(ha), length);
  }
  return iso_scope_escape(&s, ha);
}

size_t iso_array_length(iso_value a) {
  if (!array_check(a, __func__)) return 0;
  return array_length(a);
}

iso_handle iso_array_get(iso_isolate *iso, iso_value a, size_t i) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (!array_check(a, __func__)) return NULL;
  size_t len = array_length(a);
  if (i >= len)
    return ISOLATE_FAIL_NULL(ISO_ERR_RANGE,
                             "iso_array_get: index %zu is past the end "
                             "(length %zu)",
                             i, len);
  size_t base;
  iso_value host = isolate_array_host(a, &base);
  return iso_handle_new(iso, gc_slot_load(host, base + i));
}

/* Appends v, growing the elements when full. a has been checked. */
static iso_status array_append(iso_isolate *iso, iso_value a, iso_value v,
                               const char *fn) {
  size_t len = array_length(a);
  size_t cap = array_capacity(a);
  if (len == cap) {
    if (len >= ARRAY_MAX)
      return isolate_fail(ISO_ERR_RANGE,
                          "%s: the array already has the maximum of 2^28 "
                          "elements",
                          fn);
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle ha = iso_handle_new(iso, a);
    iso_handle hv = iso_handle_new(iso, v);
    iso_status st =
        ha && hv
            ? array_reserve(iso, ha, array_grown_capacity(cap, len + 1), fn)
            : ISO_ERR_OUT_OF_MEMORY;
    a = ha ? iso_get(ha) : a;
    v = hv ? iso_get(hv) : v;
    iso_scope_close(&s);
    if (st != ISO_OK) return st;
  }
  size_t base;
  iso_value host = isolate_array_host(a, &base);
  gc_write(iso, host, base + len, v);
  array_set_length(iso, a, len + 1);
  return ISO_OK;
}

/* The inline iso_array_set() lands here for anything its fast check does
 * not accept (appends, errors); a store that is valid after all is done
 * here. */
iso_status iso_inl_array_set_slow(iso_isolate *iso, iso_value a, size_t i,
                                  iso_value v) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!array_check(a, "iso_array_set")) return ISO_ERR_TYPE;
  size_t len = array_length(a);
  if (i < len) {
    size_t base;
    iso_value host = isolate_array_host(a, &base);
    gc_write(iso, host, base + i, v);
    return ISO_OK;
  }
  if (i > len)
    return isolate_fail(ISO_ERR_RANGE,
                        "iso_array_set: index %zu is past the end (length "
                        "%zu; only index == length appends)",
                        i, len);
  return array_append(iso, a, v, "iso_array_set");
}

iso_status iso_array_push(iso_isolate *iso, iso_value a, iso_value v) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!array_check(a, __func__)) return ISO_ERR_TYPE;
  return array_append(iso, a, v, __func__);
}

iso_handle iso_array_pop(iso_isolate *iso, iso_value a) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (!array_check(a, __func__)) return NULL;
  size_t len = array_length(a);
  if (len == 0) return iso_handle_new(iso, ISO_UNDEFINED);
  size_t base;
  iso_value host = isolate_array_host(a, &base);
  iso_value v = gc_slot_load(host, base + len - 1);
  /* Handles never allocate in the heap, so v and a stay valid here. */
  iso_handle h = iso_handle_new(iso, v);
  if (h == NULL) return NULL;
  gc_write(iso, host, base + len - 1, ISO_UNDEFINED);
  array_set_length(iso, a, len - 1);
  return h;
}

iso_status iso_array_set_length(iso_isolate *iso, iso_value a, size_t length) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!array_check(a, __func__)) return ISO_ERR_TYPE;
  if (length > ARRAY_MAX)
    return isolate_fail(ISO_ERR_RANGE,
                        "iso_array_set_length: length %zu is more than the "
                        "limit of 2^28",
                        length);
  size_t len = array_length(a);
  if (length < len) {
    size_t base;
    iso_value host = isolate_array_host(a, &base);
    if (length == 0 && host != a) {
      /* Drop the whole store: an emptied array should cost nothing (its
       * inline slots, undefined, hold the elements again). */
      gc_write(iso, a, ARRAY_ELEMENTS, ISO_UNDEFINED);
    } else {
      for (size_t i = length; i < len; i++)
        gc_write(iso, host, base + i, ISO_UNDEFINED);
    }
  } else if (length > array_capacity(a)) {
    /* Exactly the asked size: a caller that sets a length knows it. */
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle ha = iso_handle_new(iso, a);
    st = ha ? array_reserve(iso, ha, length, __func__) : ISO_ERR_OUT_OF_MEMORY;
    if (ha) a = iso_get(ha);
    iso_scope_close(&s);
    if (st != ISO_OK) return st;
  }
  array_set_length(iso, a, length);
  return ISO_OK;
}
