/*
 * Runtimes and the type registry.
 *
 * A runtime owns the page pool and the type tables. Type ids are indexes
 * into two flat tables of GC_MAX_TYPES entries (calloc'd, so untouched
 * entries cost no resident memory): gc_type for the collector and
 * iso_inl_type for the inline fast paths. An entry is written under the
 * runtime lock and published by a release store of type_count; any thread
 * that learned an id afterwards (from iso_type_register, iso_type_find, or
 * a header it read) reads the entry without a lock.
 */
#include <stdlib.h>
#include <string.h>

#include "isolate_internal.h"

/* The name index: 2 * GC_MAX_TYPES slots, so it is at most half full. */
#define TYPE_INDEX_SLOTS (2 * GC_MAX_TYPES)

static void set_type(iso_runtime *rt, uint32_t id, const char *name,
                     iso_kind kind, gc_layout layout, uint32_t slots,
                     uint32_t raw) {
  gc_type *t = &rt->types[id];
  iso_inl_type *it = &rt->inl_types[id];
  t->name = name;
  t->kind = kind;
  t->layout = layout;
  t->slot_count = slots;
  t->raw_size = raw;
  it->slot_count = slots;
  if (kind == ISO_KIND_RECORD) {
    size_t bytes = 8 + 8 * (size_t)slots + (((size_t)raw + 7) & ~(size_t)7);
    /* The inline allocator only handles objects that fit in a young page;
     * bigger records take the slow path to the large object space. */
    it->size_bytes = bytes < GC_LARGE_OBJECT_SIZE ? (uint32_t)bytes : 0;
    it->fast_slots_plus1 =
        raw == 0 && it->size_bytes != 0 ? slots + 1 : 0;
    it->header = gc_hdr_make(id, bytes / 8);
  }
}

iso_runtime *iso_runtime_new(const iso_runtime_params *params) {
  iso_runtime_params p = {sizeof p, 128u << 20, 0, 0, 0, ISO_HUGE_PAGES_OFF};
  if (params) {
    if (params->struct_size < sizeof(size_t) ||
        params->struct_size > 4096) {
      isolate_fail(ISO_ERR_ARGUMENT,
                   "iso_runtime_new: params->struct_size is not set");
      return NULL;
    }
    if (params->struct_size >= offsetof(iso_runtime_params,
                                        page_pool_retain_bytes) +
                                   sizeof(size_t) &&
        params->page_pool_retain_bytes)
      p.page_pool_retain_bytes = params->page_pool_retain_bytes;
    if (params->struct_size >= offsetof(iso_runtime_params, gc_threads) +
                                   sizeof(unsigned))
      p.gc_threads = params->gc_threads;
    if (params->struct_size >= offsetof(iso_runtime_params, max_heap_size) +
                                   sizeof(size_t))
      p.max_heap_size = params->max_heap_size;
    if (params->struct_size >= offsetof(iso_runtime_params, cores) +
                                   sizeof(unsigned))
      p.cores = params->cores;
    if (params->struct_size >=
        offsetof(iso_runtime_params, huge_pages) + sizeof(unsigned))
      p.huge_pages = params->huge_pages;
  }
  if (p.huge_pages != ISO_HUGE_PAGES_OFF && p.huge_pages != ISO_HUGE_PAGES_ON) {
    isolate_fail(ISO_ERR_ARGUMENT,
                 "iso_runtime_new: huge_pages is %u, not ISO_HUGE_PAGES_OFF "
                 "or ISO_HUGE_PAGES_ON",
                 p.huge_pages);
    return NULL;
  }
  const char *env = getenv("ISO_GC_HUGE_PAGES");
  if (env && strcmp(env, "1") == 0) p.huge_pages = ISO_HUGE_PAGES_ON;
  if (env && strcmp(env, "0") == 0) p.huge_pages = ISO_HUGE_PAGES_OFF;
  if (p.max_heap_size && p.max_heap_size < ((size_t)1 << 20)) {
    isolate_fail(ISO_ERR_ARGUMENT,
                 "iso_runtime_new: max_heap_size %zu is below the 1 MiB "
                 "minimum", p.max_heap_size);
    return NULL;
  }
  iso_runtime *rt = calloc(1, sizeof *rt);
  if (!rt) goto oom;
  rt->types = calloc(GC_MAX_TYPES, sizeof *rt->types);
  rt->inl_types = calloc(GC_MAX_TYPES, sizeof *rt->inl_types);
  rt->type_index = calloc(TYPE_INDEX_SLOTS, sizeof *rt->type_index);
  rt->pool =
      gc_pool_new(p.page_pool_retain_bytes, p.huge_pages == ISO_HUGE_PAGES_ON);
  if (!rt->types || !rt->inl_types || !rt->type_index || !rt->pool)
    goto oom;
  pthread_mutex_init(&rt->lock, NULL);
  rt->heap_limit = p.max_heap_size;
  gc_threads_configure(rt, p.gc_threads, p.cores);
  set_type(rt, GC_TYPE_FILLER, "(filler)", ISO_KIND_INVALID,
           GC_LAYOUT_NONE, 0, 0);
  set_type(rt, GC_TYPE_DOUBLE, "double", ISO_KIND_DOUBLE, GC_LAYOUT_NONE, 0,
           8);
  set_type(rt, GC_TYPE_STRING, "string", ISO_KIND_STRING, GC_LAYOUT_NONE, 0,
           0);
  set_type(rt, GC_TYPE_FIXED_ARRAY, "(elements)", ISO_KIND_INVALID,
           GC_LAYOUT_ALL, 0, 0);
  set_type(rt, GC_TYPE_ARRAY, "array", ISO_KIND_ARRAY, GC_LAYOUT_ALL, 0, 0);
  set_type(rt, GC_TYPE_MAP, "map", ISO_KIND_MAP, GC_LAYOUT_FIXED,
           GC_MAP_SLOTS, 0);
  set_type(rt, GC_TYPE_ARRAY_BUFFER, "ArrayBuffer", ISO_KIND_ARRAY_BUFFER,
           GC_LAYOUT_NONE, 0, GC_ARRAY_BUFFER_RAW);
  set_type(rt, GC_TYPE_TYPED_ARRAY, "TypedArray", ISO_KIND_TYPED_ARRAY,
           GC_LAYOUT_FIXED, 1, sizeof(gc_typed_array_raw));
  set_type(rt, GC_TYPE_SHARED_ARRAY_BUFFER, "SharedArrayBuffer",
           ISO_KIND_SHARED_ARRAY_BUFFER, GC_LAYOUT_NONE, 0, GC_EXTERN_RAW);
  set_type(rt, GC_TYPE_EXTERNAL, "External", ISO_KIND_EXTERNAL,
           GC_LAYOUT_NONE, 0, GC_EXTERN_RAW);
  set_type(rt, GC_TYPE_PORT, "MessagePort", ISO_KIND_PORT, GC_LAYOUT_NONE, 0,
           GC_EXTERN_RAW);
  thr_store_release(&rt->type_count, (uint32_t)GC_TYPE_FIRST_USER);
  return rt;
oom:
  if (rt) {
    free(rt->types);
    free(rt->inl_types);
    free(rt->type_index);
    if (rt->pool) gc_pool_free(rt->pool);
    free(rt);
  }
  isolate_fail(ISO_ERR_OUT_OF_MEMORY, "iso_runtime_new: out of memory");
  return NULL;
}

iso_status iso_runtime_free(iso_runtime *rt) {
  if (!rt) return isolate_fail(ISO_ERR_ARGUMENT, "iso_runtime_free: NULL");
  size_t n = thr_load_acquire(&rt->isolate_count);
  if (n != 0)
    return isolate_fail(ISO_ERR_STATE,
                        "iso_runtime_free: %zu isolate(s) still alive", n);
  gc_threads_stop(rt);
  uint32_t count = thr_load_acquire(&rt->type_count);
  for (uint32_t i = GC_TYPE_FIRST_USER; i < count; i++)
    free((char *)rt->types[i].name);
  gc_pool_free(rt->pool);
  pthread_mutex_destroy(&rt->lock);
  free(rt->types);
  free(rt->inl_types);
  free(rt->type_index);
  free(rt);
  return ISO_OK;
}

size_t iso_runtime_isolate_count(iso_runtime *rt) {
  return rt ? thr_load_acquire(&rt->isolate_count) : 0;
}

iso_status iso_runtime_statistics(iso_runtime *rt,
                                  iso_runtime_statistics_t *out) {
  if (!rt || !out)
    return isolate_fail(ISO_ERR_ARGUMENT, "iso_runtime_statistics: NULL");
  memset(out, 0, sizeof *out);
  out->isolate_count = thr_load_acquire(&rt->isolate_count);
  out->old_space_size = thr_load_relaxed(&rt->old_committed);
  out->heap_size_limit = rt->heap_limit;
  gc_pool_usage(rt->pool, &out->pool_mapped_size, &out->pool_free_size);
  out->limit_collections = thr_load_relaxed(&rt->limit_request);
  return ISO_OK;
}

const gc_type *isolate_type(const iso_runtime *rt, uint32_t type) {
  if (!rt || type == 0 || type >= GC_MAX_TYPES) return NULL;
  if (type >= thr_load_acquire(&((iso_runtime *)rt)->type_count)) return NULL;
  const gc_type *t = &rt->types[type];
  return t->name ? t : NULL;
}

iso_runtime *isolate_runtime_of(iso_value v) {
  return gc_page_of(gc_obj(v))->owner->rt;
}

const gc_type *isolate_type_of(iso_value v) {
  /* Robust against stale values: a reference into a page that went back
   * to the pool (or was zapped) yields NULL, not a crash. */
  gc_page *p = gc_page_of(gc_obj(v));
  uint32_t flags = thr_load_acquire(&p->flags);
  if ((flags & (GC_PAGE_FREE | GC_PAGE_FROM)) || !p->owner) return NULL;
  return isolate_type(p->owner->rt, gc_type_id(v));
}


static uint32_t name_hash(const char *name) {
  return isolate_fnv1a((const unsigned char *)name, strlen(name));
}

/* The slot of name in the index: holding its id, or 0 (free). */
static uint32_t *index_slot(iso_runtime *rt, const char *name) {
  uint32_t i = name_hash(name) & (TYPE_INDEX_SLOTS - 1);
  for (;;) {
    uint32_t id = rt->type_index[i];
    if (id == 0 || strcmp(rt->types[id].name, name) == 0)
      return &rt->type_index[i];
    i = (i + 1) & (TYPE_INDEX_SLOTS - 1);
  }
}

static uint32_t find_locked(iso_runtime *rt, const char *name) {
  return *index_slot(rt, name);
}

iso_type iso_type_register(iso_runtime *rt, const iso_type_desc *d) {
  if (!rt || !d) {
    isolate_fail(ISO_ERR_ARGUMENT, "iso_type_register: NULL argument");
    return 0;
  }
  if (d->struct_size < offsetof(iso_type_desc, raw_size) + sizeof(uint32_t)) {
    isolate_fail(ISO_ERR_ARGUMENT,
                 "iso_type_register: desc->struct_size is not set");
    return 0;
  }
  if (!d->name || !d->name[0] || strlen(d->name) > 255) {
    isolate_fail(ISO_ERR_ARGUMENT,
                 "iso_type_register: name must be 1 to 255 bytes");
    return 0;
  }
  if (d->slot_count > 65536 || d->raw_size > (1u << 20)) {
    isolate_fail(ISO_ERR_ARGUMENT,
                 "iso_type_register: '%s' has %u slots and %u raw bytes; "
                 "the limits are 65536 and 1048576",
                 d->name, d->slot_count, d->raw_size);
    return 0;
  }
  char *name = strdup(d->name);
  if (!name) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY, "iso_type_register: out of memory");
    return 0;
  }
  pthread_mutex_lock(&rt->lock);
  uint32_t id = 0;
  iso_status st = ISO_OK;
  if (find_locked(rt, name)) {
    st = isolate_fail(ISO_ERR_ARGUMENT,
                      "iso_type_register: a type named '%s' exists", name);
  } else {
    id = thr_load_relaxed(&rt->type_count);
    if (id >= 65000) {
      st = isolate_fail(ISO_ERR_LIMIT,
                        "iso_type_register: too many types (65000)");
      id = 0;
    } else {
      set_type(rt, id, name, ISO_KIND_RECORD, GC_LAYOUT_FIXED, d->slot_count,
               d->raw_size);
      *index_slot(rt, name) = id;
      /* Pairs with the acquire loads of type_count in isolate_type(). */
      thr_store_release(&rt->type_count, id + 1);
    }
  }
  pthread_mutex_unlock(&rt->lock);
  if (st != ISO_OK) free(name);
  return id;
}

iso_type iso_type_find(iso_runtime *rt, const char *name) {
  if (!rt || !name) return 0;
  pthread_mutex_lock(&rt->lock);
  uint32_t id = find_locked(rt, name);
  pthread_mutex_unlock(&rt->lock);
  return id;
}

const char *iso_type_name(iso_runtime *rt, iso_type type) {
  const gc_type *t = isolate_type(rt, type);
  return t ? t->name : NULL;
}
