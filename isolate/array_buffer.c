/*
 * ArrayBuffers: byte storage outside the heap.
 *
 * Layout (GC_TYPE_ARRAY_BUFFER): the header, no slots, then
 * GC_ARRAY_BUFFER_RAW raw bytes holding the buffer's gc_extern pointer.
 *
 * Invariants:
 * - Every buffer handed out has a gc_extern, registered with the heap
 *   before the buffer is returned; the collector frees the store of a dead
 *   buffer and keeps gc_extern.obj pointing at the buffer when it moves.
 *   (A buffer whose registration failed is never handed out; its pointer
 *   stays NULL and every accessor here treats it as detached.)
 * - The bytes never move: data stays put until a detach or the buffer's
 *   death. A detached gc_extern has data NULL and length 0, and stays
 *   attached to its buffer so a second detach is seen as one.
 * - An empty buffer has no store at all (data NULL), whether it was made
 *   empty or detached.
 *
 * Note [Big store reuse]
 * Stores of GC_STORE_MMAP_MIN bytes or more are private mappings, zeroed
 * lazily by the kernel. Mapping and unmapping one per buffer cost more
 * than the buffer's use in a stream of short-lived buffers (a new buffer
 * per message, transferred): each munmap takes the address space lock
 * for writing, against the other threads' faults and mmaps, and for a
 * mapping of several MiB it frees page-table pages, which makes the
 * kernel interrupt every other core; that made a stream of 16 MiB
 * transfers a quarter slower than one of 1 MiB. So a released big store
 * gives its pages back at once (MADV_DONTNEED: the memory is freed and
 * the next touch of each page reads zeros, as in a fresh mapping) but
 * keeps its mapping and page tables in a process-wide cache
 * (isolate/map_cache.c: at most 64 mappings and 1 GiB of address space,
 * of which only each mapping's first page stays resident), and the next
 * buffer of the same page-rounded size takes it instead of calling mmap.
 * Stores travel between threads (a transfer), so the cache is shared,
 * under a mutex taken once per big buffer's birth and death. It is
 * process-wide because a store can outlive its runtime.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "isolate_internal.h"

/* A collection that external growth triggers frees about
 * GC_EXTERNAL_STEP bytes of dead buffers at once: as many 1 MiB stores as
 * there are slots (ISOLATE_MAP_CACHE_SLOTS). The byte bound caps the
 * address space that cached mappings keep, which counts against the
 * commit limit when the system refuses to overcommit. */
static isolate_map_cache store_cache =
    ISOLATE_MAP_CACHE_INIT((size_t)1 << 30);

static void big_store_release(void *data, size_t length, void *ctx) {
  (void)ctx;
  size_t size = isolate_page_round(length);
  size_t first = isolate_page_round(1);
  /* The first page is zeroed by hand and kept: buffers are mostly touched
   * there first, and a page-table page with a page in it stays, where an
   * empty one would be freed and allocated again. */
  memset(data, 0, first);
  if (madvise((char *)data + first, size - first, MADV_DONTNEED) == 0) {
    isolate_map_cache_put(&store_cache, data, size);
  } else {
    munmap(data, size);
  }
}

/* Zero-filled bytes for a buffer of length >= GC_STORE_MMAP_MIN, with the
 * release for gc_extern.free_cb in *free_cb; NULL if the system refuses.
 * Any thread. */
static void *big_store_alloc(size_t length, iso_free_callback *free_cb) {
  size_t size = isolate_page_round(length);
  void *data = isolate_map_cache_take(&store_cache, size);
  if (data == NULL) {
    data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
    if (data == MAP_FAILED) return NULL;
  }
  *free_cb = big_store_release;
  return data;
}

static inline gc_extern *buffer_extern(iso_value ab) {
  gc_extern *e;
  memcpy(&e, gc_slots(ab), sizeof e);
  return e;
}

static inline void buffer_set_extern(iso_value ab, gc_extern *e) {
  memcpy(gc_slots(ab), &e, sizeof e);
}

static bool buffer_check(iso_value ab, const char *fn) {
  if (gc_is_kind(ab, GC_TYPE_ARRAY_BUFFER)) return true;
  isolate_fail(ISO_ERR_TYPE, "%s: expected an array_buffer, got %s", fn,
               iso_kind_name(iso_kind_of(ab)));
  return false;
}

/* A buffer over data; NULL on failure, and then data is still the
 * caller's: the store passes to the heap only on success. May allocate. */
static iso_handle buffer_new(iso_isolate *iso, void *data, size_t length,
                             iso_free_callback free_cb, void *ctx,
                             bool external, const char *fn) {
  iso_value ab = gc_alloc(iso, GC_TYPE_ARRAY_BUFFER, 8 + GC_ARRAY_BUFFER_RAW);
  if (ab == 0) return NULL;
  /* No allocation in the heap from here on, so ab stays valid. The handle
   * comes first so that nothing can fail once the store is tracked. */
  iso_handle h = iso_handle_new(iso, ab);
  if (h == NULL) return NULL;
  gc_extern *e = gc_extern_add(iso, ab, data, length, free_cb, ctx, external);
  if (e == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                             "%s: out of memory tracking the backing store",
                             fn);
  buffer_set_extern(ab, e);
  return h;
}

iso_handle iso_array_buffer_new(iso_isolate *iso, size_t byte_length) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  void *data = NULL;
  iso_free_callback release = NULL;
  if (byte_length != 0) {
    data = byte_length >= GC_STORE_MMAP_MIN
               ? big_store_alloc(byte_length, &release)
               : gc_store_alloc(byte_length, &release);
    if (data == NULL)
      return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                               "iso_array_buffer_new: cannot allocate %zu "
                               "bytes",
                               byte_length);
  }
  iso_handle h = buffer_new(iso, data, byte_length, release, NULL, false,
                            __func__);
  if (h == NULL && data) gc_store_free(data, byte_length, release);
  return h;
}

iso_handle iso_array_buffer_new_external(iso_isolate *iso, void *data,
                                         size_t byte_length,
                                         iso_free_callback free_cb,
                                         void *ctx) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (data == NULL && byte_length != 0)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_array_buffer_new_external: data is NULL "
                             "but byte_length is %zu",
                             byte_length);
  return buffer_new(iso, data, byte_length, free_cb, ctx, true, __func__);
}

void *iso_array_buffer_data(iso_value ab) {
  if (!buffer_check(ab, __func__)) return NULL;
  gc_extern *e = buffer_extern(ab);
  if (e == NULL || e->detached || e->length == 0) return NULL;
  return e->data;
}

size_t iso_array_buffer_byte_length(iso_value ab) {
  if (!buffer_check(ab, __func__)) return 0;
  gc_extern *e = buffer_extern(ab);
  return e != NULL && !e->detached ? e->length : 0;
}

bool iso_array_buffer_is_detached(iso_value ab) {
  if (!buffer_check(ab, __func__)) return false;
  gc_extern *e = buffer_extern(ab);
  return e != NULL && e->detached;
}

iso_status iso_array_buffer_detach(iso_isolate *iso, iso_value ab) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!buffer_check(ab, __func__)) return ISO_ERR_TYPE;
  gc_extern *e = buffer_extern(ab);
  if (e == NULL || e->detached)
    return isolate_fail(ISO_ERR_DETACHED,
                        "iso_array_buffer_detach: the buffer is already "
                        "detached");
  gc_extern_release(iso, e);
  return ISO_OK;
}
