/*
 * Typed arrays (views), SharedArrayBuffers and externals.
 *
 * Layouts (registered by isolate/runtime.c, see gc/object.h):
 *   view      one slot, the buffer (an ArrayBuffer or SharedArrayBuffer);
 *             raw gc_typed_array_raw {type, byte_offset, length}.
 *   shared    no slots; raw: its gc_extern, whose data are the store's
 *             bytes and whose ctx is the isolate_shared_store.
 *   external  no slots; raw: its gc_extern, whose data is the host
 *             pointer (opaque: no bytes counted).
 *
 * Invariants:
 * - A view's range [byte_offset, byte_offset + length * element size)
 *   fit its buffer when the view was made, and byte_offset is a multiple
 *   of the element size. Buffers never shrink except by a detach, after
 *   which the view reads as empty (length 0, data NULL), as JavaScript's
 *   views of a detached buffer do.
 * - A shared store holds one reference per SharedArrayBuffer object (in
 *   any isolate) and one per message that carries it. The gc_extern of a
 *   SharedArrayBuffer releases its reference through shared_free when the
 *   object dies or its isolate is freed; the release that drops the count
 *   to zero frees the store, on whichever thread that happens.
 */
#include <stdlib.h>
#include <string.h>

#include "clone.h"

static inline gc_typed_array_raw *view_raw(iso_value ta) {
  return (gc_typed_array_raw *)(void *)(gc_slots(ta) + 1);
}

size_t isolate_typed_array_element_size(uint32_t type) {
  switch (type) {
    case ISO_TYPED_INT8:
    case ISO_TYPED_UINT8:
    case ISO_TYPED_UINT8_CLAMPED:
    case ISO_TYPED_DATA_VIEW:
      return 1;
    case ISO_TYPED_INT16:
    case ISO_TYPED_UINT16:
      return 2;
    case ISO_TYPED_INT32:
    case ISO_TYPED_UINT32:
    case ISO_TYPED_FLOAT32:
      return 4;
    case ISO_TYPED_FLOAT64:
    case ISO_TYPED_BIGINT64:
    case ISO_TYPED_BIGUINT64:
      return 8;
    default:
      return 0;
  }
}

static bool is_buffer(iso_value v) {
  return gc_is_kind(v, GC_TYPE_ARRAY_BUFFER) ||
         gc_is_kind(v, GC_TYPE_SHARED_ARRAY_BUFFER);
}

size_t isolate_buffer_length(iso_value buffer) {
  gc_extern *e = isolate_extern_of(buffer);
  return e != NULL && !e->detached ? e->length : 0;
}

/* The first byte of a buffer's store, NULL when detached or empty. */
static char *buffer_bytes(iso_value buffer) {
  gc_extern *e = isolate_extern_of(buffer);
  if (e == NULL || e->detached || e->length == 0) return NULL;
  return e->data;
}

/* Stores into a fresh object: young hosts need no barrier, old ones (a
 * pretenured or large object) go through it. */
static inline void init_slot(iso_isolate *iso, iso_value host, size_t i,
                             iso_value v) {
  if (gc_page_of(gc_obj(host))->flags & GC_PAGE_YOUNG)
    gc_slot_init(host, i, v);
  else
    gc_write(iso, host, i, v);
}

/* ---- typed arrays ---- */

iso_handle isolate_typed_array_make(iso_isolate *iso, uint32_t type,
                                    iso_value buffer, uint64_t byte_offset,
                                    uint64_t length, bool old) {
  size_t bytes = 8 + 8 + sizeof(gc_typed_array_raw);
  iso_handle hb = iso_handle_new(iso, buffer);
  if (hb == NULL) return NULL;
  iso_value ta = old ? gc_alloc_old(iso, GC_TYPE_TYPED_ARRAY, bytes)
                     : gc_alloc(iso, GC_TYPE_TYPED_ARRAY, bytes);
  if (ta == 0) return NULL;
  gc_typed_array_raw *raw = view_raw(ta);
  raw->type = type;
  raw->byte_offset = byte_offset;
  raw->length = length;
  init_slot(iso, ta, 0, iso_get(hb));
  /* Reuse the buffer's handle for the result: one handle, not two. */
  iso_handle_set(hb, ta);
  return hb;
}

iso_handle iso_typed_array_new(iso_isolate *iso, iso_typed_array_type type,
                               iso_value buffer, size_t byte_offset,
                               size_t length) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  size_t es = isolate_typed_array_element_size((uint32_t)type);
  if (es == 0)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_typed_array_new: %d is not a typed array "
                             "type",
                             (int)type);
  if (!is_buffer(buffer))
    return ISOLATE_FAIL_NULL(ISO_ERR_TYPE,
                             "iso_typed_array_new: expected an array_buffer "
                             "or shared_array_buffer, got %s",
                             iso_kind_name(iso_kind_of(buffer)));
  if (gc_is_kind(buffer, GC_TYPE_ARRAY_BUFFER) &&
      isolate_buffer_detached(buffer))
    return ISOLATE_FAIL_NULL(ISO_ERR_DETACHED,
                             "iso_typed_array_new: the buffer is detached");
  size_t blen = isolate_buffer_length(buffer);
  if (byte_offset % es != 0)
    return ISOLATE_FAIL_NULL(ISO_ERR_RANGE,
                             "iso_typed_array_new: byte_offset %zu is not a "
                             "multiple of the element size %zu",
                             byte_offset, es);
  if (byte_offset > blen || length > (blen - byte_offset) / es)
    return ISOLATE_FAIL_NULL(ISO_ERR_RANGE,
                             "iso_typed_array_new: %zu elements of %zu "
                             "bytes at offset %zu do not fit a buffer of "
                             "%zu bytes",
                             length, es, byte_offset, blen);
  return isolate_typed_array_make(iso, (uint32_t)type, buffer, byte_offset,
                                  length, false);
}

static bool view_check(iso_value ta, const char *fn) {
  if (gc_is_kind(ta, GC_TYPE_TYPED_ARRAY)) return true;
  isolate_fail(ISO_ERR_TYPE, "%s: expected a typed_array, got %s", fn,
               iso_kind_name(iso_kind_of(ta)));
  return false;
}

/* Is the view's buffer detached? Only ArrayBuffers can be. */
static bool view_detached(iso_value ta) {
  iso_value b = gc_slot_load(ta, 0);
  return gc_is_kind(b, GC_TYPE_ARRAY_BUFFER) && isolate_buffer_detached(b);
}

iso_typed_array_type iso_typed_array_type_of(iso_value ta) {
  if (!view_check(ta, __func__)) return (iso_typed_array_type)0;
  return (iso_typed_array_type)view_raw(ta)->type;
}

iso_handle iso_typed_array_buffer(iso_isolate *iso, iso_value ta) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (!view_check(ta, __func__)) return NULL;
  return iso_handle_new(iso, gc_slot_load(ta, 0));
}

size_t iso_typed_array_byte_offset(iso_value ta) {
  if (!view_check(ta, __func__)) return 0;
  return view_detached(ta) ? 0 : (size_t)view_raw(ta)->byte_offset;
}

size_t iso_typed_array_length(iso_value ta) {
  if (!view_check(ta, __func__)) return 0;
  return view_detached(ta) ? 0 : (size_t)view_raw(ta)->length;
}

void *iso_typed_array_data(iso_value ta) {
  if (!view_check(ta, __func__)) return NULL;
  const gc_typed_array_raw *raw = view_raw(ta);
  char *base = buffer_bytes(gc_slot_load(ta, 0));
  if (base == NULL || raw->length == 0) return NULL;
  return base + raw->byte_offset;
}

/* ---- shared stores ---- */

/* Header room before the bytes: keeps them 64-byte aligned when malloc
 * aligns to 64, and always 16-byte aligned. */
#define SHARED_HEADER 64u
_Static_assert(sizeof(isolate_shared_store) <= SHARED_HEADER,
               "shared store header too big");

static isolate_shared_store *shared_store_new(size_t length) {
  if (length > SIZE_MAX - SHARED_HEADER) return NULL;
  /* calloc: big stores come zeroed from fresh pages at no cost. */
  char *mem = calloc(1, SHARED_HEADER + length);
  if (mem == NULL) return NULL;
  isolate_shared_store *s = (isolate_shared_store *)(void *)mem;
  s->refs = 1;
  s->length = length;
  s->data = mem + SHARED_HEADER;
  return s;
}

void isolate_shared_store_retain(isolate_shared_store *s) {
  /* The caller holds a reference, so the count cannot reach zero under
   * us: relaxed is enough, as for any reference count increment. */
  thr_fetch_add_relaxed(&s->refs, (uint64_t)1);
}

void isolate_shared_store_release(isolate_shared_store *s) {
  /* acq_rel: every access to the bytes through this reference happens
   * before the free by whichever thread drops the last one. */
  if (thr_fetch_add_acq_rel(&s->refs, (uint64_t)-1) == 1) free(s);
}

static void shared_free(void *data, size_t length, void *ctx) {
  (void)data;
  (void)length;
  isolate_shared_store_release(ctx);
}

isolate_shared_store *isolate_shared_store_of(iso_value sab) {
  return isolate_extern_of(sab)->ctx;
}

iso_handle isolate_shared_array_buffer_wrap(iso_isolate *iso,
                                            isolate_shared_store *s) {
  iso_value sab = gc_alloc(iso, GC_TYPE_SHARED_ARRAY_BUFFER, 8 + GC_EXTERN_RAW);
  if (sab == 0) return NULL;
  /* The handle first, so nothing fails once the store is tracked. */
  iso_handle h = iso_handle_new(iso, sab);
  if (h == NULL) return NULL;
  gc_extern *e =
      gc_extern_add(iso, sab, s->data, s->length, shared_free, s, true);
  if (e == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                             "out of memory tracking a shared store");
  isolate_extern_set(sab, e);
  return h;
}

iso_handle iso_shared_array_buffer_new(iso_isolate *iso, size_t byte_length) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  isolate_shared_store *s = shared_store_new(byte_length);
  if (s == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                             "iso_shared_array_buffer_new: cannot allocate "
                             "%zu bytes",
                             byte_length);
  iso_handle h = isolate_shared_array_buffer_wrap(iso, s);
  if (h == NULL) isolate_shared_store_release(s);
  return h;
}

static bool shared_check(iso_value sab, const char *fn) {
  if (gc_is_kind(sab, GC_TYPE_SHARED_ARRAY_BUFFER)) return true;
  isolate_fail(ISO_ERR_TYPE, "%s: expected a shared_array_buffer, got %s", fn,
               iso_kind_name(iso_kind_of(sab)));
  return false;
}

void *iso_shared_array_buffer_data(iso_value sab) {
  if (!shared_check(sab, __func__)) return NULL;
  gc_extern *e = isolate_extern_of(sab);
  return e->length != 0 ? e->data : NULL;
}

size_t iso_shared_array_buffer_byte_length(iso_value sab) {
  if (!shared_check(sab, __func__)) return 0;
  return isolate_extern_of(sab)->length;
}

/* ---- ArrayBuffers that adopt a moved store ---- */

iso_handle isolate_array_buffer_adopt(iso_isolate *iso, const gc_extern *s) {
  iso_value ab = gc_alloc(iso, GC_TYPE_ARRAY_BUFFER, 8 + GC_ARRAY_BUFFER_RAW);
  if (ab == 0) return NULL;
  iso_handle h = iso_handle_new(iso, ab);
  if (h == NULL) return NULL;
  gc_extern *e = gc_extern_add(iso, ab, s->data, s->length, s->free_cb, s->ctx,
                               s->external);
  if (e == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                             "out of memory tracking a transferred store");
  isolate_extern_set(ab, e);
  return h;
}

/* ---- externals ---- */

iso_handle iso_external_new(iso_isolate *iso, void *ptr,
                            iso_free_callback free_cb, void *ctx) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  /* The heap runs a store's callback only for a non-NULL pointer; refuse
   * a callback that could never run rather than drop it silently. */
  if (ptr == NULL && free_cb != NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_external_new: ptr is NULL but a free "
                             "callback was given");
  iso_value x = gc_alloc(iso, GC_TYPE_EXTERNAL, 8 + GC_EXTERN_RAW);
  if (x == 0) return NULL;
  iso_handle h = iso_handle_new(iso, x);
  if (h == NULL) return NULL;
  gc_extern *e = gc_extern_add_opaque(iso, x, ptr, free_cb, ctx);
  if (e == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                             "iso_external_new: out of memory");
  isolate_extern_set(x, e);
  return h;
}

void *iso_external_value(iso_value ext) {
  if (!gc_is_kind(ext, GC_TYPE_EXTERNAL)) {
    isolate_fail(ISO_ERR_TYPE,
                 "iso_external_value: expected an external, "
                 "got %s",
                 iso_kind_name(iso_kind_of(ext)));
    return NULL;
  }
  gc_extern *e = isolate_extern_of(ext);
  return e != NULL ? e->data : NULL;
}
