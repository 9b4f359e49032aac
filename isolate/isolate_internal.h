/*
 * Internal view of runtimes and isolates, shared by isolate/, gc/ and
 * threads/. Never installed.
 */
#ifndef ISOLATE_INTERNAL_H
#define ISOLATE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"
#include "heap.h"
#include "object.h"
#include "page.h"
#include "gc_threads.h"

#ifndef ISO_DEBUG_CHECKS
#define ISO_DEBUG_CHECKS 0
#endif

/* ---- the runtime ---- */

struct iso_runtime {
  gc_pool *pool;
  pthread_mutex_t lock; /* guards type registration and the isolate list */
  /* The type tables: GC_MAX_TYPES entries each. An entry is written under
   * lock before type_count is raised past it (release); readers hold an
   * id they got after that, so they see the entry without a lock. */
  iso_inl_type *inl_types;
  gc_type *types;
  uint32_t type_count; /* next id; atomic */
  uint32_t *type_index; /* open addressing, name hash -> id; under lock */
  size_t isolate_count; /* atomic */
  /* The registry: every live isolate. Changed under lock, read by the GC
   * threads under RCU (threads/gc_threads.c). */
  struct cds_list_head isolates;
  gc_thread_pool gc;
  /* The runtime's heap limit (gc/old.c): max_heap_size (0: none), the old
   * bytes of every isolate (atomic), and a counter that an isolate bumps
   * to ask all of them to collect (atomic; each compares it with the
   * value it saw last, gc_heap.limit_request_seen). */
  size_t heap_limit;
  size_t old_committed;
  uint64_t limit_request;
  /* The number of the last sweep any isolate began (gc/page.h); atomic. */
  uint64_t sweep_epoch;
};

/* The descriptor of a type id, or NULL. Lock-free. */
const gc_type *isolate_type(const iso_runtime *rt, uint32_t type);
/* The descriptor of an object's type, or NULL for a stale reference (into
 * a page that was evacuated or returned) or an unregistered type.
 * Lock-free. */
const gc_type *isolate_type_of(iso_value v);
/* The runtime that owns the type table holding this object's type. Every
 * page knows its owner isolate. */
iso_runtime *isolate_runtime_of(iso_value v);

/* ---- handles ---- */

#define ISOLATE_HANDLE_BLOCK_SLOTS 1020
typedef struct isolate_handle_block {
  struct isolate_handle_block *prev, *next;
  iso_value slots[ISOLATE_HANDLE_BLOCK_SLOTS];
} isolate_handle_block;

struct iso_global {
  iso_value value;
  struct iso_global *prev, *next;
};

/* ---- the isolate ---- */

struct iso_isolate {
  iso_inl_isolate inl; /* must be first: the public inline paths use it */
  iso_runtime *rt;
  char *name;
  struct cds_list_head rt_node; /* in rt->isolates */
  /* Thread binding: the owning thread's token, 0 when no thread has
   * entered. Changed only by CAS in enter/exit (isolate/isolate.c). */
  uintptr_t owner;
  isolate_handle_block *hfirst, *hcur, *hspare;
  iso_scope root_scope;
  iso_global *globals;
  size_t global_count;
  gc_heap heap;
  /* Termination (Note [Termination] in threads/wake.c). terminate_code is
   * written before terminating is set (release); both are set once, by
   * any thread. The owner polls terminating (acquire). */
  int terminating;
  int terminate_code;
  struct iso_worker *worker; /* set before the worker's thread starts */
  void *loop;                /* event-loop state (threads/loop.c); owner */
  int wake_fd;               /* eventfd: readable once woken; any thread
                                writes, the owner reads */
  /* Parking (gc/concurrent.c): the owner moves RUNNING <-> PARKED; a GC
   * thread moves PARKED -> PARKED_BUSY -> PARKED while it works on the
   * isolate's behalf, and unparking waits for that. Atomic. */
  int park_state;
  /* isolate_coarse_ms() when the owner last took an allocation slow path
   * or a safepoint: GC threads count the isolates that are active against
   * the cores (Note [GC threads and spare cores], threads/gc_threads.c).
   * Written by the owner, read by GC threads; atomic. */
  uint64_t active_ms;
};
enum { ISOLATE_RUNNING = 0, ISOLATE_PARKED, ISOLATE_PARKED_BUSY };
/* Parks / unparks the owner's isolate around a blocking wait (unpark
 * waits for a GC thread working on its behalf). gc/concurrent.c. */
void gc_park(iso_isolate *iso);
void gc_unpark(iso_isolate *iso);

/* Asks iso to stop at its next safepoint with exit code code (first call
 * wins) and wakes it if it is blocked. Any thread. */
void isolate_request_terminate(iso_isolate *iso, int code);
static inline bool isolate_terminating(iso_isolate *iso) {
  return __atomic_load_n(&iso->terminating, __ATOMIC_ACQUIRE) != 0;
}
/* Wakes the owner of iso out of a poll on wake_fd. Any thread. */
void thr_isolate_wake(iso_isolate *iso);
/* Drains wake_fd after a wake-up was seen. Owner. */
void thr_isolate_wake_clear(iso_isolate *iso);
int thr_isolate_wake_init(iso_isolate *iso);
/* Frees the isolate's event-loop state (threads/loop.c); idempotent. */
void thr_loop_destroy(iso_isolate *iso);
void thr_isolate_wake_destroy(iso_isolate *iso);

/* The object that holds array a's elements (its store, or a itself when
 * they are inline), and in *base the slot of element 0 there; the
 * elements follow (isolate/array.c). Valid until the next allocation. */
iso_value isolate_array_host(iso_value a, size_t *base);

/* Visits every root slot (handles and globals). */
typedef void (*isolate_root_visitor)(iso_isolate *iso, iso_value *slot,
                                     void *ctx);
void isolate_visit_roots(iso_isolate *iso, isolate_root_visitor fn,
                         void *ctx);
size_t isolate_handle_count(iso_isolate *iso);
void isolate_handles_free(iso_isolate *iso);

/* ---- errors ---- */

/* Sets this thread's error and returns status. */
iso_status isolate_fail(iso_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same, for functions that return a handle. */
#define ISOLATE_FAIL_NULL(...) (isolate_fail(__VA_ARGS__), (iso_handle)NULL)

/* Debug-build check that the calling thread owns iso. Evaluates to a
 * failing status, or ISO_OK. */
iso_status isolate_check_thread_slow(iso_isolate *iso);
iso_status isolate_terminated_error(iso_isolate *iso);
#if ISO_DEBUG_CHECKS >= 1
#define ISOLATE_CHECK_OWNER(iso)                                       \
  ((iso) == NULL ? isolate_fail(ISO_ERR_ARGUMENT, "isolate is NULL")   \
                 : isolate_check_thread_slow(iso))
#else
#define ISOLATE_CHECK_OWNER(iso) \
  ((iso) == NULL ? isolate_fail(ISO_ERR_ARGUMENT, "isolate is NULL") : ISO_OK)
#endif
/* Owner check, then: a terminating isolate refuses every call. */
#define ISOLATE_CHECK(iso)                                              \
  (ISOLATE_CHECK_OWNER(iso) != ISO_OK ? iso_last_status()               \
   : isolate_terminating(iso)         ? isolate_terminated_error(iso)   \
                                      : ISO_OK)

/* Assertions by tier (STYLE: cheap always-on, debug, expensive). */
void isolate_assert_fail(const char *expr, const char *file, int line);
#define ISO_ASSERT(e) \
  ((e) ? (void)0 : isolate_assert_fail(#e, __FILE__, __LINE__))
#if ISO_DEBUG_CHECKS >= 1
#define ISO_DASSERT(e) ISO_ASSERT(e)
#else
#define ISO_DASSERT(e) ((void)0)
#endif

uint64_t isolate_now_ns(void);
/* Monotonic milliseconds at the kernel tick's resolution; cheap. */
uint64_t isolate_coarse_ms(void);
/* The owner marks its isolate active (allocation slow paths, safepoints). */
static inline void isolate_stamp_active(iso_isolate *iso) {
  thr_store_relaxed(&iso->active_ms, isolate_coarse_ms());
}

/* n rounded up to the OS page size. */
size_t isolate_page_round(size_t n);

/* A process-wide cache of anonymous mappings by page-rounded size
 * (isolate/map_cache.c): at most ISOLATE_MAP_CACHE_SLOTS of them and
 * max_bytes in all. Initialise statically with ISOLATE_MAP_CACHE_INIT. */
#define ISOLATE_MAP_CACHE_SLOTS 64
typedef struct isolate_map_cache_entry {
  void *data;
  size_t size;
} isolate_map_cache_entry;
typedef struct isolate_map_cache {
  pthread_mutex_t lock;
  size_t max_bytes;
  isolate_map_cache_entry entries[ISOLATE_MAP_CACHE_SLOTS]; /* lock */
  size_t count, bytes;                                      /* lock */
} isolate_map_cache;
#define ISOLATE_MAP_CACHE_INIT(max) {PTHREAD_MUTEX_INITIALIZER, (max), {{0, 0}}, 0, 0}
/* A cached mapping of exactly size bytes, or NULL. Any thread. */
void *isolate_map_cache_take(isolate_map_cache *c, size_t size);
/* Keeps the mapping [data, data + size) if it fits the bounds, else
 * unmaps it. Any thread. */
void isolate_map_cache_put(isolate_map_cache *c, void *data, size_t size);

/* FNV-1a over s[0..len): the strings' content hash, which map lookups
 * compare, so every maker of strings uses this one; type names too. */
static inline uint32_t isolate_fnv1a(const unsigned char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ s[i]) * 16777619u;
  return h;
}

/* Checks that s[0..len) is UTF-8 as RFC 3629 defines it (shortest form,
 * no surrogates, nothing past U+10FFFF): NULL when valid, else a
 * description of the first fault, with its offset in *at. */
const char *isolate_utf8_check(const unsigned char *s, size_t len,
                               size_t *at);

#endif /* ISOLATE_INTERNAL_H */
