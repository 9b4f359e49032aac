/*
 * Caches of anonymous mappings, keyed by page-rounded size: the stores of
 * big ArrayBuffers (array_buffer.c) and of out-of-line copies (clone.c)
 * keep the mappings of dead buffers here, so that the next buffer of the
 * same size skips mmap and, depending on the user's policy, the page
 * faults. What a mapping holds when it goes in (zeroed, decommitted, or
 * as the last buffer left it) is the user's business; the cache only
 * bounds how many mappings and how many bytes it keeps.
 *
 * A cache is process-wide (a store can outlive its runtime) and guarded
 * by its mutex, taken once per big buffer's birth and death.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "isolate_internal.h"

size_t isolate_page_round(size_t n) {
  long p = sysconf(_SC_PAGESIZE); /* a load in glibc, no syscall */
  size_t ps = p > 0 ? (size_t)p : 4096;
  return (n + ps - 1) & ~(ps - 1);
}

void *isolate_map_cache_take(isolate_map_cache *c, size_t size) {
  void *data = NULL;
  pthread_mutex_lock(&c->lock);
  /* The most recently put first: its pages are the likeliest to be in the
   * CPU's cache. */
  for (size_t i = c->count; i-- > 0;) {
    if (c->entries[i].size != size) continue;
    data = c->entries[i].data;
    c->bytes -= size;
    memmove(&c->entries[i], &c->entries[i + 1],
            (c->count - i - 1) * sizeof c->entries[0]);
    c->count--;
    break;
  }
  pthread_mutex_unlock(&c->lock);
  return data;
}

void isolate_map_cache_put(isolate_map_cache *c, void *data, size_t size) {
  pthread_mutex_lock(&c->lock);
  if (c->count < ISOLATE_MAP_CACHE_SLOTS && size <= c->max_bytes - c->bytes) {
    c->entries[c->count++] = (isolate_map_cache_entry){data, size};
    c->bytes += size;
    data = NULL;
  }
  pthread_mutex_unlock(&c->lock);
  if (data != NULL) munmap(data, size);
}
