/*
 * Records: instances of the types registered with iso_type_register().
 *
 * Layout (GC_LAYOUT_FIXED): the header, slot_count tagged slots, then
 * raw_size raw bytes padded to a word. The size is fixed by the type, so
 * it matches the inline bump allocation of iso_record_new_v(), which this
 * file backs with its slow path.
 *
 * Invariants:
 * - A record's type is a registered type of kind ISO_KIND_RECORD; ids of
 *   built-in kinds are never records.
 * - Slots hold values (undefined until set); raw bytes start zeroed and
 *   are never traced, so they must not hold references.
 */
#include <stdlib.h>
#include <string.h>

#include "isolate_internal.h"

/* Handles for at most this many init values live on the C stack. */
#define RECORD_INIT_STACK 32

/* The record type of a value, or NULL. */
static const gc_type *record_desc(const iso_runtime *rt, iso_value r) {
  if (!iso_is_ref(r)) return NULL;
  uint32_t id = gc_type_id(r);
  if (id < GC_TYPE_FIRST_USER) return NULL;
  const gc_type *t = rt != NULL ? isolate_type(rt, id) : isolate_type_of(r);
  return t != NULL && t->kind == ISO_KIND_RECORD ? t : NULL;
}

static const gc_type *record_check(const iso_runtime *rt, iso_value r,
                                   const char *fn) {
  const gc_type *t = record_desc(rt, r);
  if (t == NULL)
    isolate_fail(ISO_ERR_TYPE, "%s: expected a record, got %s", fn,
                 iso_kind_name(iso_kind_of(r)));
  return t;
}

static inline size_t record_size(const gc_type *t) {
  return 8 + 8 * (size_t)t->slot_count + (((size_t)t->raw_size + 7) & ~7u);
}

static inline void *record_raw(const gc_type *t, iso_value r) {
  return (char *)gc_slots(r) + 8 * (size_t)t->slot_count;
}

/* A new record of type whose first n slots are init[0..n-1]. fn names
 * the public function for messages. May allocate. */
static iso_handle record_new(iso_isolate *iso, iso_type type, size_t n,
                             const iso_value *init, const char *fn) {
  const gc_type *t =
      type != 0 && type < GC_MAX_TYPES ? isolate_type(iso->rt, type) : NULL;
  if (t == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_TYPE,
                             "%s: %u is not a registered type id", fn, type);
  if (t->kind != ISO_KIND_RECORD)
    return ISOLATE_FAIL_NULL(ISO_ERR_TYPE,
                             "%s: type %u (%s) is a built-in kind, not a "
                             "record type",
                             fn, type, t->name);
  if (n > t->slot_count)
    return ISOLATE_FAIL_NULL(ISO_ERR_RANGE,
                             "%s: %zu initial values for type %s, which has "
                             "%u slots",
                             fn, n, t->name, t->slot_count);
  if (n != 0 && init == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "%s: init is NULL but n is %zu", fn, n);
  size_t bytes = record_size(t);
  ISO_DASSERT(iso->inl.types[type].size_bytes == bytes ||
              iso->inl.types[type].size_bytes == 0); /* large */
  void *mem = gc_pretenure_try(iso, bytes);
  if (mem) {
    /* No collection in between and no young object anywhere: the init
     * values are written as they are (gc_pretenure_try). */
    gc_object_init(iso, mem, type, bytes);
    iso_value r = (iso_value)(uintptr_t)mem;
    for (size_t k = 0; k < n; k++) gc_slot_init(r, k, init[k]);
    return iso_handle_new(iso, r);
  }

  /* The init values may be young objects that the allocation moves: hold
   * them in handles, and remember where those are (a handle scope may
   * span blocks, so the handles need not be contiguous). */
  iso_handle stack_handles[RECORD_INIT_STACK];
  iso_handle *hs = stack_handles;
  if (n > RECORD_INIT_STACK) {
    hs = malloc(n * sizeof *hs);
    if (hs == NULL)
      return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                               "%s: out of memory for %zu initial values", fn,
                               n);
  }
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_value r = 0;
  size_t k;
  for (k = 0; k < n; k++) {
    hs[k] = iso_handle_new(iso, init[k]);
    if (hs[k] == NULL) break;
  }
  if (k == n) r = gc_alloc(iso, type, bytes);
  if (r != 0) {
    if (gc_page_of(gc_obj(r))->flags & GC_PAGE_YOUNG) {
      for (k = 0; k < n; k++) gc_slot_init(r, k, iso_get(hs[k]));
    } else {
      /* A large record lives in the old space: remember young values. */
      for (k = 0; k < n; k++) gc_write(iso, r, k, iso_get(hs[k]));
    }
  }
  iso_scope_close(&s);
  if (hs != stack_handles) free(hs);
  if (r == 0) return NULL; /* gc_alloc or the handles set the error */
  return iso_handle_new(iso, r);
}

iso_handle iso_record_new(iso_isolate *iso, iso_type type) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  return record_new(iso, type, 0, NULL, __func__);
}

iso_handle iso_inl_record_new_slow(iso_isolate *iso, iso_type type, size_t n,
                                   const iso_value *init) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  return record_new(iso, type, n, init, "iso_record_new_v");
}

iso_handle iso_record_get(iso_isolate *iso, iso_value r, uint32_t i) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  const gc_type *t = record_check(iso->rt, r, __func__);
  if (t == NULL) return NULL;
  if (i >= t->slot_count)
    return ISOLATE_FAIL_NULL(ISO_ERR_RANGE,
                             "iso_record_get: slot %u is out of range (type "
                             "%s has %u slots)",
                             i, t->name, t->slot_count);
  return iso_handle_new(iso, gc_slot_load(r, i));
}

/* The inline iso_record_set() lands here for anything its fast check does
 * not accept; a store that is valid after all is done here. */
iso_status iso_inl_record_set_slow(iso_isolate *iso, iso_value r, uint32_t i,
                                   iso_value v) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  const gc_type *t = record_check(iso->rt, r, "iso_record_set");
  if (t == NULL) return ISO_ERR_TYPE;
  if (i >= t->slot_count)
    return isolate_fail(ISO_ERR_RANGE,
                        "iso_record_set: slot %u is out of range (type %s "
                        "has %u slots)",
                        i, t->name, t->slot_count);
  gc_write(iso, r, i, v);
  return ISO_OK;
}

uint32_t iso_record_slot_count(iso_value r) {
  const gc_type *t = record_check(NULL, r, __func__);
  return t != NULL ? t->slot_count : 0;
}

void *iso_record_raw(iso_value r) {
  const gc_type *t = record_check(NULL, r, __func__);
  if (t == NULL || t->raw_size == 0) return NULL;
  return record_raw(t, r);
}

size_t iso_record_raw_size(iso_value r) {
  const gc_type *t = record_check(NULL, r, __func__);
  return t != NULL ? t->raw_size : 0;
}
