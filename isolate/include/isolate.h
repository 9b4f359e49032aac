/*
 * libisolate: garbage-collected heaps for worker-thread isolates.
 *
 * This is the one installed header. Everything under "Inline fast paths"
 * near the end is part of the ABI but not of the API: call the documented
 * functions, never touch the iso_inl_* fields yourself.
 *
 * Conventions (read these once; every function below follows them):
 *
 * - Threads. A runtime may be used from any thread. An isolate is used by
 *   one thread at a time: the thread that created it, or the thread that
 *   last called iso_isolate_enter() on it. Calling into an isolate from
 *   another thread is a contract violation; debug builds report it as
 *   ISO_ERR_THREAD.
 *
 * - Values. An iso_value is one tagged 64-bit word. Small integers, true,
 *   false, null and undefined are immediates; everything else is a
 *   reference to an object in the isolate's heap. The collector moves young
 *   objects, so a raw iso_value that refers to an object is valid only until
 *   the next call that "may allocate" (stated on each function).
 *
 * - Arguments and results. Every function takes its inputs as raw
 *   iso_values: a value read from a handle at the call is always safe to
 *   pass, because a function that allocates protects its own arguments.
 *   References come back as handles (iso_handle): slots in the current
 *   handle scope that the collector updates when it moves an object. Read a
 *   handle with iso_get() whenever you need its value; never keep the raw
 *   value across a call that may allocate.
 *
 * - Defaults. Unless its comment says otherwise, a function that takes an
 *   isolate is called on the isolate's owning thread, never blocks, and
 *   may allocate (so may move young objects) exactly when it returns a
 *   handle or its comment says "May allocate"; a function that takes no
 *   isolate may be called on any thread that may read its arguments.
 *
 * - Errors. Fallible calls return an iso_status, or a NULL handle, and set
 *   a per-thread error (iso_last_status(), iso_last_error()). Nothing a
 *   caller can do with a bad argument aborts the process; heap exhaustion
 *   is an ISO_ERR_OUT_OF_MEMORY from the allocating call, and everything
 *   already stored stays intact.
 */
#ifndef ISOLATE_H
#define ISOLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ISO_API __attribute__((visibility("default")))
#define ISO_INLINE static inline __attribute__((always_inline))
#define ISO_LIKELY(x) __builtin_expect(!!(x), 1)
#define ISO_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ISO_API
#define ISO_INLINE static inline
#define ISO_LIKELY(x) (x)
#define ISO_UNLIKELY(x) (x)
#endif

#define ISO_VERSION_MAJOR 0
#define ISO_VERSION_MINOR 1
#define ISO_VERSION_PATCH 0

/* "0.1.0"; any thread. */
ISO_API const char *iso_version(void);

/* ------------------------------------------------------------------------
 * Status codes and per-thread errors
 * ------------------------------------------------------------------------ */

typedef enum iso_status {
  ISO_OK = 0,
  ISO_ERR_OUT_OF_MEMORY,  /* heap limit reached after a full GC, or malloc */
  ISO_ERR_TYPE,           /* a value of the wrong kind */
  ISO_ERR_RANGE,          /* an index or size out of range */
  ISO_ERR_ARGUMENT,       /* a malformed argument (NULL, bad UTF-8, ...) */
  ISO_ERR_SCOPE,          /* handle scopes closed out of order, escaped twice */
  ISO_ERR_THREAD,         /* isolate used from a thread that does not own it */
  ISO_ERR_STATE,          /* call not valid now (runtime still has isolates) */
  ISO_ERR_CLOSED,         /* the port, worker or isolate is closed */
  ISO_ERR_DATA_CLONE,     /* a value cannot be cloned */
  ISO_ERR_DETACHED,       /* the ArrayBuffer was detached */
  ISO_ERR_HEAP_CORRUPT,   /* iso_heap_verify() found a broken invariant */
  ISO_ERR_LIMIT,          /* a resource limit (not the heap) was reached */
  ISO_ERR_TIMEOUT,        /* a blocking call timed out (nothing received) */
  ISO_ERR_TERMINATED,     /* the isolate's worker is being terminated */
  ISO_ERR_COUNT_          /* number of codes; not a status */
} iso_status;

/* Stable upper-case name of a status ("ISO_ERR_RANGE"); any thread. */
ISO_API const char *iso_status_name(iso_status status);

/* The status and message of the last failed call on this thread. A
 * successful call does not clear them. The message is owned by the thread
 * and valid until its next failing call. Any thread; never allocates. */
ISO_API iso_status iso_last_status(void);
ISO_API const char *iso_last_error(void);
/* Reset this thread's error to ISO_OK / "". */
ISO_API void iso_clear_error(void);

/* ------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------ */

typedef uint64_t iso_value;
typedef iso_value *iso_handle;

/* Tagging: xx1 small integer (62 bits of payload), x10 immediate,
 * 000 (non-zero) reference to a heap object, 8-byte aligned. */
#define ISO_UNDEFINED ((iso_value)0x02)
#define ISO_NULL ((iso_value)0x06)
#define ISO_FALSE ((iso_value)0x0a)
#define ISO_TRUE ((iso_value)0x0e)

#define ISO_SMI_MAX ((int64_t)0x3fffffffffffffffLL)
#define ISO_SMI_MIN (-ISO_SMI_MAX - 1)

ISO_INLINE bool iso_is_smi(iso_value v) { return (v & 1) != 0; }
ISO_INLINE bool iso_is_ref(iso_value v) { return (v & 7) == 0 && v != 0; }
/* Caller guarantees ISO_SMI_MIN <= n <= ISO_SMI_MAX (use
 * iso_integer_new() when unsure). Never allocates. */
ISO_INLINE iso_value iso_smi(int64_t n) {
  return ((uint64_t)n << 1) | 1;
}
ISO_INLINE int64_t iso_smi_value(iso_value v) { return (int64_t)v >> 1; }
ISO_INLINE iso_value iso_bool(bool b) { return b ? ISO_TRUE : ISO_FALSE; }
ISO_INLINE bool iso_is_undefined(iso_value v) { return v == ISO_UNDEFINED; }
ISO_INLINE bool iso_is_null(iso_value v) { return v == ISO_NULL; }
ISO_INLINE bool iso_is_bool(iso_value v) {
  return v == ISO_TRUE || v == ISO_FALSE;
}

typedef enum iso_kind {
  ISO_KIND_INVALID = 0, /* not a value (a stale or corrupt word) */
  ISO_KIND_UNDEFINED,
  ISO_KIND_NULL,
  ISO_KIND_BOOLEAN,
  ISO_KIND_INTEGER, /* small integer, unboxed */
  ISO_KIND_DOUBLE,  /* boxed IEEE double */
  ISO_KIND_STRING,
  ISO_KIND_ARRAY,
  ISO_KIND_MAP,
  ISO_KIND_RECORD,
  ISO_KIND_ARRAY_BUFFER,
  ISO_KIND_TYPED_ARRAY,        /* a view on an ArrayBuffer (Uint8Array, ...) */
  ISO_KIND_SHARED_ARRAY_BUFFER, /* bytes shared by reference across isolates */
  ISO_KIND_EXTERNAL,           /* an opaque host pointer */
  ISO_KIND_PORT,               /* a message port held by the heap */
  ISO_KIND_COUNT_
} iso_kind;

/* Kind of a value; never allocates; any thread that may read the value. */
ISO_API iso_kind iso_kind_of(iso_value v);
/* "integer", "string", ...; any thread. */
ISO_API const char *iso_kind_name(iso_kind kind);

/* ------------------------------------------------------------------------
 * Runtime
 * ------------------------------------------------------------------------ */

typedef struct iso_runtime iso_runtime;
typedef struct iso_isolate iso_isolate;

/* Parameter structs start with their own size so they can grow: set
 * .struct_size = sizeof(the struct). Zero in any other field means the
 * default. A NULL pointer means all defaults. */
typedef struct iso_runtime_params {
  size_t struct_size;
  /* Bytes of free pages the page pool keeps mapped for reuse; pages beyond
   * this are returned to the OS. Default 128 MiB: pages move through the
   * pool all the time (young generations growing and shrinking, sweeps
   * emptying old pages that the next allocation takes again), and every
   * page given back costs 64 page faults when it is taken again. */
  size_t page_pool_retain_bytes;
  /* Background GC threads, shared by every isolate of the runtime, that
   * mark and sweep old generations while the isolates run. 0: the
   * default, one per core but one (at least one); ISO_GC_THREADS_NONE:
   * none, each isolate does its marking and sweeping itself in bounded
   * steps. ISO_GC_THREADS=n in the environment overrides it (n=0: none).
   * The threads start with the runtime's first marking cycle. */
  unsigned gc_threads;
  /* The runtime's heap limit: bytes of old space (old pages and large
   * objects) that all its isolates together may hold, beside each
   * isolate's own max_old_generation_size. 0: none. An allocation that
   * would cross it first collects its isolate fully and asks every other
   * isolate to start a cycle at its next safepoint; if the runtime is
   * still over, the allocation fails with ISO_ERR_OUT_OF_MEMORY (a worker
   * stops with ISO_EXIT_OUT_OF_MEMORY) and the other isolates go on. Past
   * seven eighths of it, every isolate is asked to collect. Minimum 1 MiB. */
  size_t max_heap_size;
  /* The cores the runtime may count on; 0: the machine's online cores.
   * GC threads mark and sweep for an active isolate (not parked, and in
   * an allocation slow path or at a safepoint within the last 20 ms) only
   * while the active isolates leave them a core: GC thread i helps while
   * i + active isolates < cores. Otherwise each active isolate marks and
   * sweeps its own old space in short steps at its safepoints, and none
   * of its pauses waits for a GC thread that the OS ran in its place.
   * Parked and idle isolates are always served. ISO_GC_CORES=n in the
   * environment overrides it. */
  unsigned cores;
  /* Transparent huge pages for the heap: ISO_HUGE_PAGES_OFF (the default,
   * 0) or ISO_HUGE_PAGES_ON. On, the page pool maps its chunks and every
   * large object of 2 MiB and more 2 MiB-aligned and advises
   * MADV_HUGEPAGE; the kernel's setting
   * (/sys/kernel/mm/transparent_hugepage/enabled "madvise" or "always")
   * decides whether it is taken. A big heap then costs far fewer TLB
   * misses to mark and to use (old_churn's 1.3 GB heap: marking 20 to 30%
   * shorter), but each 2 MiB is faulted in whole when the program first
   * touches it while the heap grows (0.25 to 7 ms, by how readily the
   * kernel finds a huge page; pages taken in a pause keep small pages, so
   * pauses never wait for such a fault): for servers that reach their
   * heap size once and run long. ISO_GC_HUGE_PAGES=1 or 0 in the
   * environment overrides it. */
  unsigned huge_pages;
} iso_runtime_params;
#define ISO_GC_THREADS_NONE 0xffffffffu
#define ISO_HUGE_PAGES_OFF 0u
#define ISO_HUGE_PAGES_ON 1u

/* A new runtime, or NULL (ISO_ERR_ARGUMENT, ISO_ERR_OUT_OF_MEMORY). Any
 * thread. Several runtimes may coexist; they share nothing. */
ISO_API iso_runtime *iso_runtime_new(const iso_runtime_params *params);
/* Frees the runtime. Fails with ISO_ERR_STATE while isolates are alive.
 * Any thread, once no other thread uses the runtime. */
ISO_API iso_status iso_runtime_free(iso_runtime *rt);
/* Number of live isolates of the runtime; any thread. */
ISO_API size_t iso_runtime_isolate_count(iso_runtime *rt);

/* The runtime's memory, all isolates together. */
typedef struct iso_runtime_statistics_t {
  size_t isolate_count;
  size_t old_space_size;     /* old pages and large objects in use */
  size_t heap_size_limit;    /* max_heap_size; 0: none */
  size_t pool_mapped_size;   /* pages mapped by the pool, used or free */
  size_t pool_free_size;     /* free pages kept by the pool */
  uint64_t limit_collections; /* times the isolates were asked to collect
                                 because of max_heap_size */
} iso_runtime_statistics_t;
/* Any thread; the figures are read without stopping the isolates. */
ISO_API iso_status iso_runtime_statistics(iso_runtime *rt,
                                          iso_runtime_statistics_t *out);

/* ------------------------------------------------------------------------
 * Types: records are user types registered once per runtime
 * ------------------------------------------------------------------------ */

/* A type id: the same number in every isolate of the runtime. 0 is never a
 * valid type. */
typedef uint32_t iso_type;

typedef struct iso_type_desc {
  size_t struct_size;
  const char *name;    /* required, unique in the runtime; copied */
  uint32_t slot_count; /* tagged slots the collector traces, <= 65536 */
  uint32_t raw_size;   /* raw bytes after the slots, <= 1 MiB, zeroed */
} iso_type_desc;

/* Registers a record type; returns its id, or 0 (ISO_ERR_ARGUMENT for a
 * bad or duplicate name or size, ISO_ERR_LIMIT when 65,000 types exist).
 * Any thread; takes a runtime lock; never allocates in a heap. */
ISO_API iso_type iso_type_register(iso_runtime *rt, const iso_type_desc *d);
/* The id of a registered record type by name, or 0. Any thread. */
ISO_API iso_type iso_type_find(iso_runtime *rt, const char *name);
/* Name of any type id (built-in kinds included), or NULL. Any thread. */
ISO_API const char *iso_type_name(iso_runtime *rt, iso_type type);
/* Type id of a heap value, 0 for immediates. Never allocates. */
ISO_API iso_type iso_type_of(iso_value v);

/* ------------------------------------------------------------------------
 * Isolates
 * ------------------------------------------------------------------------ */

enum {
  ISO_ISOLATE_TRACE_GC = 1u << 0,    /* one line per GC, as --trace-gc */
  ISO_ISOLATE_VERIFY_HEAP = 1u << 1, /* verify the heap after every GC */
  /* New objects always start young, even when nearly all of them survive
   * (by default such an isolate allocates them in the old space; see
   * pretenured_bytes in iso_gc_statistics_t). */
  ISO_ISOLATE_NO_PRETENURING = 1u << 2,
};

/* Debug switches that break the collector on purpose, so tests can show
 * that they detect a broken collector. Never set them in production. */
enum {
  ISO_DEBUG_SKIP_REMEMBERED_SET = 1u << 0, /* generational barrier off */
  ISO_DEBUG_SKIP_MARKING_BARRIER = 1u << 1, /* snapshot barrier off */
};

typedef struct iso_gc_trace_info iso_gc_trace_info;

typedef struct iso_isolate_params {
  size_t struct_size;
  /* Young generation (two semispaces). Default 128 MiB, minimum 512 KiB;
   * the semispace starts at 1 MiB and grows only while many objects
   * survive. */
  size_t max_young_generation_size;
  /* Old generation limit, as --max-old-space-size. Default 2 GiB,
   * minimum 1 MiB. */
  size_t max_old_generation_size;
  const char *name; /* copied; shows in traces */
  unsigned flags;   /* ISO_ISOLATE_*; ISO_TRACE_GC=1 and ISO_VERIFY_HEAP=1
                       in the environment also set them */
  /* GC stress: scavenge every N young allocations and run a full GC every
   * M. 0 means off, unless ISO_GC_STRESS="scavenge=N,full=M" is set in
   * the environment (or the library was built with -Dgc_stress=true). */
  unsigned stress_scavenge_every;
  unsigned stress_full_every;
  unsigned debug_flags; /* ISO_DEBUG_*; tests only */
  /* Where trace lines go; NULL writes them to stderr. Called on the
   * isolate's thread, inside the GC: must not call into the isolate. */
  void (*trace_callback)(void *data, const char *line);
  void *trace_data;
} iso_isolate_params;

/* A new isolate bound to the calling thread, or NULL. Never blocks. */
ISO_API iso_isolate *iso_isolate_new(iso_runtime *rt,
                                     const iso_isolate_params *params);
/* Frees the isolate and returns all its memory to the runtime. All its
 * handles and globals become invalid. Owning thread only. */
ISO_API iso_status iso_isolate_free(iso_isolate *iso);
/* Hand an isolate between threads: the owner calls exit, the next thread
 * calls enter. enter fails with ISO_ERR_THREAD while another thread owns
 * it. Never allocates. */
ISO_API iso_status iso_isolate_enter(iso_isolate *iso);
ISO_API iso_status iso_isolate_exit(iso_isolate *iso);
ISO_API iso_runtime *iso_isolate_runtime(iso_isolate *iso);
ISO_API const char *iso_isolate_name(iso_isolate *iso);

/* Called when the old generation is about to exceed its limit, before the
 * allocation fails: return a larger limit to go on, or the current one to
 * let the allocation fail with ISO_ERR_OUT_OF_MEMORY. As V8's
 * NearHeapLimitCallback. Runs on the isolate's thread inside the
 * allocation; must not call into the isolate. */
typedef size_t (*iso_near_heap_limit_callback)(void *data,
                                               size_t current_limit,
                                               size_t initial_limit);
ISO_API void iso_isolate_set_near_heap_limit_callback(
    iso_isolate *iso, iso_near_heap_limit_callback cb, void *data);

typedef enum iso_gc_kind {
  ISO_GC_MINOR = 1, /* scavenge the young generation */
  ISO_GC_FULL = 2,  /* scavenge, then mark and sweep the old generation */
} iso_gc_kind;

typedef enum iso_gc_phase { ISO_GC_PROLOGUE, ISO_GC_EPILOGUE } iso_gc_phase;
/* GC prologue/epilogue callback; runs on the isolate's thread inside the
 * collection; must not call into the isolate. */
typedef void (*iso_gc_callback)(iso_isolate *iso, iso_gc_phase phase,
                                iso_gc_kind kind, void *data);
/* At most 8 callbacks per isolate (ISO_ERR_LIMIT beyond). */
ISO_API iso_status iso_isolate_add_gc_callback(iso_isolate *iso,
                                               iso_gc_callback cb, void *data);
ISO_API iso_status iso_isolate_remove_gc_callback(iso_isolate *iso,
                                                  iso_gc_callback cb,
                                                  void *data);

/* Polls for pending GC work (stress mode, requests, the end of a marking
 * cycle); call it in long loops that do not allocate. May allocate (runs
 * a GC). */
ISO_API iso_status iso_safepoint(iso_isolate *iso);

/* Parking (see docs/concurrent-marking.md). An isolate whose thread is
 * about to block outside the library (I/O, a lock, a sleep) parks first:
 * while parked it promises not to touch its heap, so the background GC
 * threads finish its marking cycle on its behalf instead of waiting for
 * its next safepoint. Unpark before using the isolate again; it waits
 * while a GC thread is working on the isolate's behalf (briefly: a
 * termination check and the start of sweeping, never a whole cycle).
 * The library's own blocking calls (port receives, the event loop) park
 * by themselves. Owning thread; park never allocates, unpark may run the
 * GC's deferred work (callbacks, freeing dead ArrayBuffer stores).
 * ISO_ERR_STATE when parking a parked isolate or unparking a running
 * one. */
ISO_API iso_status iso_isolate_park(iso_isolate *iso);
ISO_API iso_status iso_isolate_unpark(iso_isolate *iso);
ISO_API bool iso_isolate_is_parked(iso_isolate *iso);

/* The concurrent collector of an isolate's old generation. A cycle starts
 * by itself when the old generation grows past its trigger; these calls
 * let programs (and tests) drive it. */
typedef enum iso_gc_cycle_state {
  ISO_GC_CYCLE_IDLE = 0, /* no cycle: sweeping of the last one is done */
  ISO_GC_CYCLE_MARKING,  /* background threads mark; the barrier is on */
  ISO_GC_CYCLE_SWEEPING, /* marking is over; dead space is being swept */
} iso_gc_cycle_state;
ISO_API iso_gc_cycle_state iso_gc_cycle(iso_isolate *iso);
/* Starts a marking cycle now if none is marking (finishing the sweep of
 * the last one first). Owning thread; may allocate (its first step is a
 * scavenge). */
ISO_API iso_status iso_gc_start_marking(iso_isolate *iso);
/* Does up to max_bytes of the current cycle's marking (or sweeping) on
 * the calling thread, as an allocation does when marking falls behind
 * (marking work counts the bytes traced and 32 for each reference shaded),
 * and ends marking when nothing is left to mark. Owning thread; may
 * allocate. */
ISO_API iso_status iso_gc_step(iso_isolate *iso, size_t max_bytes);

/* ------------------------------------------------------------------------
 * Handles, scopes and globals
 * ------------------------------------------------------------------------ */

typedef struct iso_scope iso_scope;

/* ISO_INLINE iso_value iso_get(iso_handle h);
 * ISO_INLINE void iso_handle_set(iso_handle h, iso_value v);
 * ISO_INLINE iso_handle iso_handle_new(iso_isolate *iso, iso_value v);
 *   A new handle in the current scope. NULL (ISO_ERR_OUT_OF_MEMORY) only
 *   when malloc fails. Never allocates in the heap.
 * ISO_INLINE void iso_scope_open(iso_isolate *iso, iso_scope *scope);
 *   Opens a scope; handles made until its close belong to it. The
 *   iso_scope lives on the caller's stack.
 * ISO_INLINE iso_status iso_scope_close(iso_scope *scope);
 *   Closes the innermost scope (ISO_ERR_SCOPE for any other).
 * ISO_INLINE iso_handle iso_scope_escape(iso_scope *scope, iso_handle h);
 *   Closes the scope and returns a handle to h's value in the enclosing
 *   scope (NULL with ISO_ERR_SCOPE if the scope is not innermost). */

/* A scope must be open for any call that returns a handle; iso_isolate_new
 * opens an outermost scope that lives as long as the isolate. */

typedef struct iso_global iso_global;
/* A handle that outlives scopes; strong. Owning thread; never allocates in
 * the heap. NULL only when malloc fails. */
ISO_API iso_global *iso_global_new(iso_isolate *iso, iso_value v);
ISO_API void iso_global_free(iso_isolate *iso, iso_global *g);
/* The global's value in a new handle of the current scope. */
ISO_API iso_handle iso_global_get(iso_isolate *iso, iso_global *g);
ISO_API iso_value iso_global_value(iso_global *g);
ISO_API void iso_global_set(iso_isolate *iso, iso_global *g, iso_value v);

/* ------------------------------------------------------------------------
 * Numbers and strings
 * ------------------------------------------------------------------------ */

/* A number: a small integer if d is integral and fits (but not -0.0),
 * else a boxed double. May allocate. */
ISO_API iso_handle iso_number_new(iso_isolate *iso, double d);
/* An integer: unboxed if it fits, else a boxed double. May allocate. */
ISO_API iso_handle iso_integer_new(iso_isolate *iso, int64_t n);
ISO_API bool iso_is_number(iso_value v);
/* The value of a small integer or double; NaN and ISO_ERR_TYPE for any
 * other kind. Never allocates. */
ISO_API double iso_number_value(iso_value v);

/* A string from len bytes of UTF-8 (copied; embedded NULs allowed; utf8
 * may point into the heap, e.g. iso_string_data() of another string). Fails
 * with ISO_ERR_ARGUMENT on invalid UTF-8 (overlongs, surrogates, bytes past
 * U+10FFFF) and ISO_ERR_RANGE beyond 1 GiB. May allocate. */
ISO_API iso_handle iso_string_new(iso_isolate *iso, const char *utf8,
                                  size_t len);
ISO_API iso_handle iso_string_from_cstr(iso_isolate *iso, const char *cstr);
/* Byte length; 0 and ISO_ERR_TYPE for a non-string. */
ISO_API size_t iso_string_length(iso_value s);
/* The bytes, NUL-terminated; valid until the next allocation. NULL and
 * ISO_ERR_TYPE for a non-string. */
ISO_API const char *iso_string_data(iso_value s);
/* Content hash, the same in every isolate and process (FNV-1a, 32 bits). */
ISO_API uint32_t iso_string_hash(iso_value s);
/* Same bytes? false for non-strings. */
ISO_API bool iso_string_equal(iso_value a, iso_value b);

/* ------------------------------------------------------------------------
 * Arrays (growable, dense)
 * ------------------------------------------------------------------------ */

/* An array of length elements, all undefined. ISO_ERR_RANGE beyond 2^28
 * elements. May allocate. */
ISO_API iso_handle iso_array_new(iso_isolate *iso, size_t length);
/* Length; 0 and ISO_ERR_TYPE for a non-array. */
ISO_API size_t iso_array_length(iso_value a);
/* Element i in a new handle; NULL and ISO_ERR_RANGE past the end. */
ISO_API iso_handle iso_array_get(iso_isolate *iso, iso_value a, size_t i);
/* ISO_INLINE iso_status iso_array_set(iso_isolate *iso, iso_value a,
 *                                     size_t i, iso_value v);
 *   Sets element i; i == length appends; ISO_ERR_RANGE beyond,
 *   ISO_ERR_TYPE for a non-array. May allocate (only when it appends). A
 *   store below the length is inline (the write barrier's fast check
 *   included), never allocates and, like iso_record_set, does not look
 *   for termination: a terminated isolate fails at its next allocation. */
ISO_API iso_status iso_array_push(iso_isolate *iso, iso_value a, iso_value v);
/* Removes and returns the last element; undefined when empty. */
ISO_API iso_handle iso_array_pop(iso_isolate *iso, iso_value a);
/* Truncates, or extends with undefined. May allocate. */
ISO_API iso_status iso_array_set_length(iso_isolate *iso, iso_value a,
                                        size_t length);

/* ------------------------------------------------------------------------
 * Maps: hash maps that keep insertion order, as JavaScript's Map
 * ------------------------------------------------------------------------ */

/* Keys compare as SameValueZero: strings by content, numbers by value
 * (NaN equals NaN, -0 equals 0), everything else by identity. */
ISO_API iso_handle iso_map_new(iso_isolate *iso);
ISO_API size_t iso_map_size(iso_value m); /* 0 and ISO_ERR_TYPE if not */
/* Inserts or replaces; may allocate. */
ISO_API iso_status iso_map_set(iso_isolate *iso, iso_value m, iso_value key,
                               iso_value value);
/* The value for key in a new handle; undefined if absent. */
ISO_API iso_handle iso_map_get(iso_isolate *iso, iso_value m, iso_value key);
ISO_API bool iso_map_has(iso_isolate *iso, iso_value m, iso_value key);
/* true if the key was present. Never allocates. */
ISO_API bool iso_map_delete(iso_isolate *iso, iso_value m, iso_value key);
ISO_API iso_status iso_map_clear(iso_isolate *iso, iso_value m);
/* Iterates in insertion order: start with *cursor = 0; each call stores
 * the next entry in new handles and returns true, or returns false at the
 * end. Entries added during iteration are visited; deleted ones are not.
 * The cursor is opaque: pass back what the previous call stored; it stays
 * valid across inserts, deletes, rehashes and iso_map_clear. */
ISO_API bool iso_map_next(iso_isolate *iso, iso_value m, size_t *cursor,
                          iso_handle *key, iso_handle *value);

/* ------------------------------------------------------------------------
 * Records: instances of registered types
 * ------------------------------------------------------------------------ */

/* A record: every slot undefined, raw bytes zero. May allocate. */
ISO_API iso_handle iso_record_new(iso_isolate *iso, iso_type type);
/* ISO_INLINE iso_handle iso_record_new_v(iso_isolate *iso, iso_type type,
 *                                        size_t n, const iso_value *init);
 *   A record whose first n slots are init[0..n-1] (n <= slot count), the
 *   rest undefined. Inline bump allocation. May allocate.
 * ISO_INLINE iso_value iso_record_alloc(iso_isolate *iso, iso_type type,
 *                                       size_t n, const iso_value *init);
 *   The same, but the result is a raw value (0 on failure, error set),
 *   valid until the next allocation, and no handle is made: for programs
 *   and runtimes that keep their own roots in handles they reuse (a shadow
 *   stack), so building a structure costs no scope per object. */
/* Slot i in a new handle; NULL with ISO_ERR_TYPE / ISO_ERR_RANGE. */
ISO_API iso_handle iso_record_get(iso_isolate *iso, iso_value r, uint32_t i);
/* ISO_INLINE iso_value iso_record_slot(iso_value r, uint32_t i);
 *   Raw read, no checks in release builds (the caller knows r is a record
 *   and i is in range). Never allocates.
 * ISO_INLINE iso_status iso_record_set(iso_isolate *iso, iso_value r,
 *                                      uint32_t i, iso_value v);
 *   Stores through the write barrier. ISO_ERR_TYPE / ISO_ERR_RANGE. Never
 *   allocates. */
ISO_API uint32_t iso_record_slot_count(iso_value r);
/* The raw bytes; valid until the next allocation. NULL if not a record or
 * it has none. */
ISO_API void *iso_record_raw(iso_value r);
ISO_API size_t iso_record_raw_size(iso_value r);

/* ------------------------------------------------------------------------
 * ArrayBuffers: byte storage outside the heap, counted as external memory
 * ------------------------------------------------------------------------ */

/* A zero-filled buffer; its memory is freed when the buffer dies. May
 * allocate. ISO_ERR_OUT_OF_MEMORY if malloc fails. */
ISO_API iso_handle iso_array_buffer_new(iso_isolate *iso, size_t byte_length);
typedef void (*iso_free_callback)(void *data, size_t length, void *ctx);
/* Wraps caller memory; free_cb (may be NULL) runs on the isolate's thread
 * when the buffer dies, is detached into nothing, or the isolate is freed. */
ISO_API iso_handle iso_array_buffer_new_external(iso_isolate *iso, void *data,
                                                 size_t byte_length,
                                                 iso_free_callback free_cb,
                                                 void *ctx);
/* The bytes: stable (they never move) until the buffer is detached or dies.
 * NULL for a detached or empty buffer. */
ISO_API void *iso_array_buffer_data(iso_value ab);
ISO_API size_t iso_array_buffer_byte_length(iso_value ab);
ISO_API bool iso_array_buffer_is_detached(iso_value ab);
/* Detaches: the buffer becomes empty and its memory is freed. */
ISO_API iso_status iso_array_buffer_detach(iso_isolate *iso, iso_value ab);

/* ------------------------------------------------------------------------
 * Typed arrays, SharedArrayBuffers, externals
 * ------------------------------------------------------------------------ */

typedef enum iso_typed_array_type {
  ISO_TYPED_INT8 = 1,
  ISO_TYPED_UINT8,
  ISO_TYPED_UINT8_CLAMPED,
  ISO_TYPED_INT16,
  ISO_TYPED_UINT16,
  ISO_TYPED_INT32,
  ISO_TYPED_UINT32,
  ISO_TYPED_FLOAT32,
  ISO_TYPED_FLOAT64,
  ISO_TYPED_BIGINT64,
  ISO_TYPED_BIGUINT64,
  ISO_TYPED_DATA_VIEW /* element size 1 */
} iso_typed_array_type;

/* A view of length elements of buffer (an ArrayBuffer or a
 * SharedArrayBuffer) starting at byte_offset. ISO_ERR_RANGE if it does not
 * fit or byte_offset is not a multiple of the element size; ISO_ERR_TYPE
 * if buffer is not a buffer; ISO_ERR_DETACHED for a detached buffer. May
 * allocate. */
ISO_API iso_handle iso_typed_array_new(iso_isolate *iso,
                                       iso_typed_array_type type,
                                       iso_value buffer, size_t byte_offset,
                                       size_t length);
ISO_API iso_typed_array_type iso_typed_array_type_of(iso_value ta);
/* The underlying buffer, in a new handle. */
ISO_API iso_handle iso_typed_array_buffer(iso_isolate *iso, iso_value ta);
ISO_API size_t iso_typed_array_byte_offset(iso_value ta);
/* Elements; 0 once the buffer is detached. */
ISO_API size_t iso_typed_array_length(iso_value ta);
/* The first element's address (stable until the buffer is detached or
 * dies); NULL when detached or empty. */
ISO_API void *iso_typed_array_data(iso_value ta);

/* A SharedArrayBuffer: zero-filled bytes with a reference count; cloning
 * it shares the same bytes with the receiving isolate. Access to the bytes
 * from several threads is the program's to synchronise. May allocate. */
ISO_API iso_handle iso_shared_array_buffer_new(iso_isolate *iso,
                                               size_t byte_length);
ISO_API void *iso_shared_array_buffer_data(iso_value sab);
ISO_API size_t iso_shared_array_buffer_byte_length(iso_value sab);

/* An opaque host pointer; free_cb (may be NULL) runs on the isolate's
 * thread when the object dies or the isolate is freed. A NULL ptr with a
 * free_cb is refused (ISO_ERR_ARGUMENT). Externals clone
 * only through a delegate (iso_clone_delegate). May allocate. */
ISO_API iso_handle iso_external_new(iso_isolate *iso, void *ptr,
                                    iso_free_callback free_cb, void *ctx);
ISO_API void *iso_external_value(iso_value ext);

/* ------------------------------------------------------------------------
 * Structured clone (as HTML's structuredClone and postMessage)
 * ------------------------------------------------------------------------ */

/* A serialized value: bytes in the versioned format of docs/clone-format.md
 * plus what moves with it (transferred ArrayBuffer stores, shared buffers,
 * ports). Owned by the caller; free it with iso_message_free unless it was
 * consumed by iso_deserialize. Any thread may hold or free one. */
typedef struct iso_message iso_message;

typedef struct iso_clone_writer iso_clone_writer;
typedef struct iso_clone_reader iso_clone_reader;
/* Raw bytes a delegate writes or reads for a host object. */
ISO_API iso_status iso_clone_write_bytes(iso_clone_writer *w, const void *p,
                                         size_t n);
ISO_API iso_status iso_clone_read_bytes(iso_clone_reader *r, void *p,
                                        size_t n);

/* Host hooks, as V8's ValueSerializer::Delegate: write_host is called for
 * every external and, when a delegate is given, for every record, and
 * writes what read_host needs to rebuild it in the receiving isolate. For
 * a record, returning ISO_ERR_TYPE having written nothing declines it (it
 * is cloned as a record); any other status but ISO_OK makes the clone fail
 * with ISO_ERR_DATA_CLONE. write_host must not allocate in the heap. */
typedef struct iso_clone_delegate {
  size_t struct_size;
  iso_status (*write_host)(void *ctx, iso_isolate *iso, iso_value v,
                           iso_clone_writer *w);
  iso_handle (*read_host)(void *ctx, iso_isolate *iso, iso_clone_reader *r);
  void *ctx;
} iso_clone_delegate;

/* Serializes v. transfer lists ArrayBuffers (moved with zero copies: the
 * source becomes detached) and ports (moved) -- their ownership passes to
 * the message. ISO_ERR_DATA_CLONE, naming the path to the offending value
 * ("value.items[3].handle: external without a delegate"), for an external
 * without a delegate, a detached buffer, a port that is not in the
 * transfer list, or a transfer list entry that cannot be transferred; on
 * error nothing is detached and *out is NULL. Iterative: graphs of any
 * depth. Owning thread; never allocates in the heap. */
ISO_API iso_status iso_serialize(iso_isolate *iso, iso_value v,
                                 const iso_value *transfer, size_t ntransfer,
                                 const iso_clone_delegate *delegate,
                                 iso_message **out);
/* Rebuilds a message in iso (the message is consumed on success and left
 * to the caller on failure). Hostile input is rejected with
 * ISO_ERR_DATA_CLONE and a message naming the offset; nothing half-built
 * stays reachable. May allocate (large messages go straight to the old
 * generation). */
ISO_API iso_handle iso_deserialize(iso_isolate *iso, iso_message *msg,
                                   const iso_clone_delegate *delegate);
/* A message from raw bytes (copied), e.g. from a file or a socket; it
 * carries no transferred objects. */
ISO_API iso_message *iso_message_from_bytes(const void *data, size_t len);
/* The message's bytes, self-contained (big copied buffers that travel
 * beside the bytes are written inline first); NULL if that needs memory
 * the system refuses. iso_message_size() is the size of those bytes. */
ISO_API const void *iso_message_data(const iso_message *msg);
ISO_API size_t iso_message_size(const iso_message *msg);
/* Frees a message that was not received. The free callbacks of buffer
 * stores transferred into it run here, on the calling thread. */
ISO_API void iso_message_free(iso_message *msg);
/* structuredClone(v, {transfer}) within one isolate. */
ISO_API iso_handle iso_structured_clone(iso_isolate *iso, iso_value v,
                                        const iso_value *transfer,
                                        size_t ntransfer);

/* ------------------------------------------------------------------------
 * Message ports and channels (as MessageChannel / postMessage)
 * ------------------------------------------------------------------------ */

typedef struct iso_port iso_port;

/* Two entangled ports: what one posts, the other receives. Any thread. */
ISO_API iso_status iso_channel_new(iso_port **port1, iso_port **port2);
/* Clones v (see iso_serialize) and queues it for the peer; never blocks
 * (the queue is wait-free for senders). ISO_ERR_CLOSED if either side is
 * closed, ISO_ERR_LIMIT if the peer's queue limit is reached (nothing is
 * queued then). Owning thread of iso. */
ISO_API iso_status iso_port_post(iso_port *port, iso_isolate *iso,
                                 iso_value v, const iso_value *transfer,
                                 size_t ntransfer);
/* Queues an already serialized message (ownership passes on success). Any
 * thread. */
ISO_API iso_status iso_port_post_message(iso_port *port, iso_message *msg);
/* Receives the next message into a handle of iso's current scope, waiting
 * up to timeout_ms (negative: forever; 0: poll, as receiveMessageOnPort).
 * ISO_ERR_TIMEOUT when nothing came, ISO_ERR_CLOSED once the peer closed
 * and the queue is drained, ISO_ERR_TERMINATED if iso's worker is being
 * terminated. Blocks (parks iso while waiting); may allocate. */
ISO_API iso_status iso_port_receive(iso_port *port, iso_isolate *iso,
                                    int64_t timeout_ms, iso_handle *out);
/* The next serialized message, or ISO_ERR_TIMEOUT / ISO_ERR_CLOSED. Any
 * thread (one receiver at a time). */
ISO_API iso_status iso_port_receive_message(iso_port *port,
                                            int64_t timeout_ms,
                                            iso_message **out);
/* A file descriptor that is readable exactly while messages are queued,
 * and for good once either side closed, for epoll/poll/libuv (level
 * triggered). Owned by the port: never read, write or close it. */
ISO_API int iso_port_fd(iso_port *port);
typedef struct iso_port_stats_t {
  size_t queued_messages; /* waiting to be received */
  size_t queued_bytes;
  uint64_t posted, received; /* posts through, receives from, this port */
  bool closed;               /* this port or its peer closed */
} iso_port_stats_t;
ISO_API iso_status iso_port_stats(iso_port *port, iso_port_stats_t *out);
/* Backpressure: posts through this port fail with ISO_ERR_LIMIT (and
 * detach nothing) while the peer's queue holds max_messages messages or
 * already max_bytes bytes (0: no limit). */
ISO_API iso_status iso_port_set_limit(iso_port *port, size_t max_messages,
                                      size_t max_bytes);
/* Closes this side: the peer's receives drain what is queued, then get
 * ISO_ERR_CLOSED; its posts fail. Frees the port once both sides are
 * closed (or the port was transferred). Closing a closed port does
 * nothing. Any thread. */
ISO_API void iso_port_close(iso_port *port);
/* A port as a heap value, for a transfer list or a message; the value
 * owns the port from then on (closing it when the value dies), and the
 * iso_port pointer stays valid only while the value lives and has not
 * been transferred. A port cannot travel through itself or its peer. */
ISO_API iso_handle iso_port_to_value(iso_isolate *iso, iso_port *port);
/* The port a received port value carries (NULL if detached/transferred). */
ISO_API iso_port *iso_port_from_value(iso_value v);

/* ------------------------------------------------------------------------
 * Workers (as worker_threads)
 * ------------------------------------------------------------------------ */

typedef struct iso_worker iso_worker;

/* A worker's entry: runs on the worker's thread with its fresh isolate
 * (entered, a scope open) and the port to its parent. Its return value is
 * the exit code, unless the worker was terminated. When it returns, parent
 * is closed unless it was made a value or transferred (closing it first is
 * allowed). */
typedef int (*iso_worker_main)(iso_isolate *iso, iso_port *parent, void *arg);

#define ISO_EXIT_TERMINATED (-1)    /* iso_worker_terminate stopped it */
#define ISO_EXIT_OUT_OF_MEMORY (-2) /* it exceeded its heap limit */

typedef struct iso_worker_params {
  size_t struct_size;
  const char *name;
  /* resourceLimits */
  size_t max_young_generation_size;
  size_t max_old_generation_size;
  size_t stack_size; /* default 1 MiB */
  unsigned isolate_flags; /* ISO_ISOLATE_* for the worker's isolate */
} iso_worker_params;

/* Starts a worker; *parent_port receives the parent's end of the channel.
 * Any thread; never touches a heap. */
ISO_API iso_worker *iso_worker_spawn(iso_runtime *rt, iso_worker_main fn,
                                     void *arg, const iso_worker_params *p,
                                     iso_port **parent_port);
/* Asks the worker to stop: from its next safepoint on, every call into
 * its isolate fails with ISO_ERR_TERMINATED, a blocked receive or loop
 * wakes up, and the exit code becomes ISO_EXIT_TERMINATED. C code cannot
 * be stopped mid-statement: the worker's function must return when its
 * calls fail. Any thread. */
ISO_API iso_status iso_worker_terminate(iso_worker *w);
/* Waits for the worker to end and frees it; *exit_code gets its code.
 * Blocks. */
ISO_API iso_status iso_worker_join(iso_worker *w, int *exit_code);
/* The worker of an isolate (NULL for isolates made by iso_isolate_new). */
ISO_API iso_worker *iso_isolate_worker(iso_isolate *iso);

/* ------------------------------------------------------------------------
 * Event loop and timers (one loop per isolate)
 * ------------------------------------------------------------------------ */

typedef void (*iso_message_handler)(iso_isolate *iso, iso_port *port,
                                    iso_value message, void *data);
typedef void (*iso_timer_callback)(iso_isolate *iso, void *data);
typedef uint64_t iso_timer_id; /* 0 is never a timer */

/* Dispatches messages arriving on port to handler (with a fresh scope per
 * message) while the loop runs; a NULL handler removes the port. A port
 * drops out of the loop when it is closed, or its peer closed and its
 * queue is drained. Owning thread. */
ISO_API iso_status iso_loop_on_message(iso_isolate *iso, iso_port *port,
                                       iso_message_handler handler,
                                       void *data);
/* setTimeout (repeat_ms 0) and setInterval (repeat_ms > 0). Returns 0 and
 * an error on a bad argument. Owning thread. */
ISO_API iso_timer_id iso_timer_start(iso_isolate *iso, uint64_t delay_ms,
                                     uint64_t repeat_ms,
                                     iso_timer_callback cb, void *data);
/* clearTimeout / clearInterval (also from inside callbacks: an interval
 * may clear itself); clearing a one-shot timer that ran, or a timer that
 * was cleared, is ISO_ERR_ARGUMENT. */
ISO_API iso_status iso_timer_clear(iso_isolate *iso, iso_timer_id id);
/* Runs the loop until iso_loop_stop, until nothing is left to wait for
 * (no timers and no open ports with handlers), or until the worker is
 * terminated (ISO_ERR_TERMINATED). Blocks, parked, between events. */
ISO_API iso_status iso_loop_run(iso_isolate *iso);
/* Makes iso_loop_run return after the current callback. Owning thread, or
 * any thread for an isolate that is running its loop. */
ISO_API void iso_loop_stop(iso_isolate *iso);

/* ------------------------------------------------------------------------
 * Collection, memory usage and statistics (Node.js / V8 names)
 * ------------------------------------------------------------------------ */

/* A manual collection, as global.gc(). Owning thread; moves young objects. */
ISO_API iso_status iso_gc(iso_isolate *iso, iso_gc_kind kind);

typedef struct iso_memory_usage_t {
  size_t rss;           /* process resident set size */
  size_t heap_total;    /* bytes of pages this isolate holds */
  size_t heap_used;     /* bytes of live and not yet collected objects */
  size_t external;      /* off-heap memory held by this isolate's objects */
  size_t array_buffers; /* the part of external in ArrayBuffers */
} iso_memory_usage_t;
/* As process.memoryUsage(), for one isolate. Owning thread. */
ISO_API iso_status iso_memory_usage(iso_isolate *iso, iso_memory_usage_t *out);

/* heap_size_limit is, as in V8, the old generation's limit plus the
 * young generation's maximum (both semispaces). */
typedef struct iso_heap_statistics_t {
  size_t total_heap_size;
  size_t total_heap_size_executable; /* always 0 */
  size_t total_physical_size;
  size_t total_available_size;
  size_t used_heap_size;
  size_t heap_size_limit;
  size_t malloced_memory;
  size_t peak_malloced_memory;
  size_t external_memory;
  size_t total_global_handles_size;
  size_t used_global_handles_size;
  size_t does_zap_garbage;
} iso_heap_statistics_t;
/* As v8.getHeapStatistics(). Owning thread. */
ISO_API iso_status iso_heap_statistics(iso_isolate *iso,
                                       iso_heap_statistics_t *out);

typedef struct iso_heap_space_statistics_t {
  const char *space_name; /* "new_space", "old_space", "large_object_space" */
  size_t space_size;
  size_t space_used_size;
  size_t space_available_size;
  size_t physical_space_size;
} iso_heap_space_statistics_t;
ISO_API size_t iso_heap_space_count(void);
/* As v8.getHeapSpaceStatistics()[index]; ISO_ERR_RANGE past the end. */
ISO_API iso_status iso_heap_space_statistics(iso_isolate *iso, size_t index,
                                             iso_heap_space_statistics_t *out);

typedef struct iso_pause_stats_t {
  uint64_t count;
  double total_ms, p50_ms, p99_ms, max_ms;
} iso_pause_stats_t;
typedef struct iso_gc_statistics_t {
  iso_pause_stats_t scavenge; /* young-generation pauses */
  iso_pause_stats_t full;     /* full-collection pauses */
  iso_pause_stats_t marking;  /* joins, assists and ends of concurrent cycles */
  iso_pause_stats_t all;      /* every pause of this isolate */
  uint64_t promoted_bytes;    /* moved from young to old, in total */
  uint64_t allocated_bytes;   /* allocated, in total (young and old) */
  uint64_t cycles;            /* marking cycles completed (full GCs too) */
  double background_mark_ms;  /* marking done by GC threads for it */
  double background_sweep_ms; /* sweeping done by GC threads for it */
  /* Allocated straight in the old space because nearly every new object
   * survived its first scavenges (pretenuring), in total. */
  uint64_t pretenured_bytes;
} iso_gc_statistics_t;
/* Pause statistics of this isolate since it was created (percentiles from
 * a log-linear histogram, within 3%). Owning thread. */
ISO_API iso_status iso_gc_statistics(iso_isolate *iso,
                                     iso_gc_statistics_t *out);

typedef struct iso_type_statistics_t {
  iso_type type;
  const char *name;
  size_t count; /* objects, live or not yet collected */
  size_t bytes;
} iso_type_statistics_t;
/* Objects per type in the heap (for leak hunting without a snapshot):
 * fills out[0..cap-1] with the types that have objects, largest bytes
 * first, and stores how many types have objects in *ntypes. Owning thread;
 * walks the heap; never allocates in it. */
ISO_API iso_status iso_heap_object_statistics(iso_isolate *iso,
                                              iso_type_statistics_t *out,
                                              size_t cap, size_t *ntypes);

/* Checks every invariant of the heap (headers, types, slots, remembered
 * set); ISO_ERR_HEAP_CORRUPT with a description in iso_last_error(). Owning
 * thread; never allocates. */
ISO_API iso_status iso_heap_verify(iso_isolate *iso);

/* ------------------------------------------------------------------------
 * Inline fast paths (ABI, not API: use the functions above)
 * ------------------------------------------------------------------------ */

/* Page geometry: every heap object lies in a 256 KiB-aligned page whose
 * first word holds the page's flags. */
#define ISO_INL_PAGE_SIZE ((uintptr_t)256 * 1024)
#define ISO_INL_PAGE_YOUNG 1u
#define ISO_INL_PAGE_OLD 2u
#define ISO_INL_PAGE_LARGE 4u

/* Per-type facts the fast paths need; one flat table per runtime. */
typedef struct iso_inl_type {
  uint64_t header;     /* header word of a new object of this type */
  uint32_t size_bytes; /* fixed size (records); 0 for variable size */
  uint32_t slot_count;
  /* slot_count + 1 for a record type with no raw bytes that fits a young
   * page (the inline allocator's case), else 0. */
  uint32_t fast_slots_plus1;
  uint32_t reserved;
} iso_inl_type;

/* The first member of every isolate. Owned by the isolate's thread. */
typedef struct iso_inl_isolate {
  char *alloc_top; /* young linear allocation area [top, limit) */
  char *alloc_limit;
  iso_value *handle_top; /* handle block [top, limit) */
  iso_value *handle_limit;
  iso_scope *scope; /* innermost open scope */
  const iso_inl_type *types;
  unsigned barrier_flags; /* which write barriers are on; see gc/barrier.c */
} iso_inl_isolate;

struct iso_scope {
  iso_isolate *isolate;
  iso_scope *parent;
  iso_value *escape_slot; /* reserved at open; the handle top to restore */
  iso_value *saved_limit; /* identifies the handle block of escape_slot */
};

#define ISO_INL(iso) ((iso_inl_isolate *)(void *)(iso))
#define ISO_INL_HDR_TYPE_SHIFT 3
#define ISO_INL_HDR_TYPE_MASK 0xffffu

ISO_API iso_handle iso_inl_handle_slow(iso_isolate *iso, iso_value v);
ISO_API void iso_inl_scope_close_slow(iso_scope *s);
ISO_API iso_status iso_inl_scope_error(iso_scope *s);
ISO_API iso_handle iso_inl_record_new_slow(iso_isolate *iso, iso_type type,
                                           size_t n, const iso_value *init);
ISO_API iso_value iso_inl_record_alloc_slow(iso_isolate *iso, iso_type type,
                                            size_t n, const iso_value *init);
ISO_API iso_status iso_inl_record_set_slow(iso_isolate *iso, iso_value r,
                                           uint32_t i, iso_value v);
ISO_API iso_status iso_inl_array_set_slow(iso_isolate *iso, iso_value a,
                                          size_t i, iso_value v);
ISO_API void iso_inl_barrier_slow(iso_isolate *iso, iso_value host,
                                  iso_value *slot, iso_value old,
                                  iso_value v);
ISO_API void iso_inl_store_marking(iso_isolate *iso, iso_value host,
                                   iso_value *slot, iso_value v);

ISO_INLINE iso_value iso_get(iso_handle h) { return *h; }
ISO_INLINE void iso_handle_set(iso_handle h, iso_value v) { *h = v; }

ISO_INLINE iso_handle iso_handle_new(iso_isolate *iso, iso_value v) {
  iso_inl_isolate *t = ISO_INL(iso);
  if (ISO_LIKELY(t->handle_top < t->handle_limit)) {
    iso_value *h = t->handle_top++;
    *h = v;
    return h;
  }
  return iso_inl_handle_slow(iso, v);
}

ISO_INLINE void iso_scope_open(iso_isolate *iso, iso_scope *s) {
  iso_inl_isolate *t = ISO_INL(iso);
  s->isolate = iso;
  s->parent = t->scope;
  s->escape_slot = iso_handle_new(iso, ISO_UNDEFINED);
  s->saved_limit = t->handle_limit;
  t->scope = s;
}

ISO_INLINE iso_status iso_scope_close(iso_scope *s) {
  iso_inl_isolate *t = ISO_INL(s->isolate);
  if (ISO_UNLIKELY(t->scope != s || s->escape_slot == NULL))
    return iso_inl_scope_error(s);
  t->scope = s->parent;
  if (ISO_LIKELY(s->saved_limit == t->handle_limit)) {
    t->handle_top = s->escape_slot; /* drop the escape slot too */
  } else {
    iso_inl_scope_close_slow(s);
  }
  return ISO_OK;
}

ISO_INLINE iso_handle iso_scope_escape(iso_scope *s, iso_handle h) {
  iso_value *slot = s->escape_slot;
  iso_value v = h ? *h : ISO_UNDEFINED;
  iso_inl_isolate *t = ISO_INL(s->isolate);
  if (ISO_UNLIKELY(t->scope != s || slot == NULL)) {
    iso_inl_scope_error(s);
    return NULL;
  }
  t->scope = s->parent;
  if (ISO_LIKELY(s->saved_limit == t->handle_limit)) {
    t->handle_top = slot + 1; /* keep the escape slot */
  } else {
    s->escape_slot = slot + 1; /* slow path keeps [.., slot] */
    iso_inl_scope_close_slow(s);
  }
  *slot = v;
  return slot;
}

#define ISO_INL_HDR(v) (*(const uint64_t *)(uintptr_t)(v))
#define ISO_INL_PAGE_FLAGS(addr) \
  (*(const uint32_t *)((uintptr_t)(addr) & ~(ISO_INL_PAGE_SIZE - 1)))

ISO_INLINE iso_value iso_record_slot(iso_value r, uint32_t i) {
  return __atomic_load_n((iso_value *)(uintptr_t)r + 1 + i, __ATOMIC_RELAXED);
}

/* Write barrier, fast check: nothing to do unless a marking barrier is on
 * or an old object receives a young reference (see gc/barrier.c). */
ISO_INLINE void iso_inl_store(iso_isolate *iso, iso_value host,
                              iso_value *slot, iso_value v) {
  if (ISO_UNLIKELY(ISO_INL(iso)->barrier_flags != 0)) {
    /* Marking: the overwritten value is shaded. Only then is it read: a
     * store alone to a slot not in cache does not stall, a load does.
     * A large host goes out of line at once, which may skip the read
     * (Note [Scanned prefix] in gc/barrier.c); a small host's slot shares
     * its lines with the header, and an overwritten number, undefined or
     * other immediate has nothing to shade: the plain store below is
     * the whole barrier then (its generational part included). */
    if ((ISO_INL_PAGE_FLAGS(host) & ISO_INL_PAGE_LARGE) ||
        iso_is_ref(__atomic_load_n(slot, __ATOMIC_RELAXED))) {
      iso_inl_store_marking(iso, host, slot, v);
      return;
    }
  }
  /* Release: a GC thread that reads v (acquire) sees the object's
   * contents. A plain move on x86. */
  __atomic_store_n(slot, v, __ATOMIC_RELEASE);
  if (iso_is_ref(v) && (ISO_INL_PAGE_FLAGS(v) & ISO_INL_PAGE_YOUNG) &&
      !(ISO_INL_PAGE_FLAGS(host) & ISO_INL_PAGE_YOUNG))
    iso_inl_barrier_slow(iso, host, slot, ISO_UNDEFINED, v);
}

ISO_INLINE iso_status iso_record_set(iso_isolate *iso, iso_value r,
                                     uint32_t i, iso_value v) {
  const iso_inl_isolate *t = ISO_INL(iso);
  if (ISO_LIKELY(iso_is_ref(r))) {
    uint64_t hdr = ISO_INL_HDR(r);
    const iso_inl_type *ty =
        &t->types[(hdr >> ISO_INL_HDR_TYPE_SHIFT) & ISO_INL_HDR_TYPE_MASK];
    if (ISO_LIKELY(ty->size_bytes != 0 && i < ty->slot_count && (hdr & 1))) {
      iso_inl_store(iso, r, (iso_value *)(uintptr_t)r + 1 + i, v);
      return ISO_OK;
    }
  }
  return iso_inl_record_set_slow(iso, r, i, v);
}

/* An array's header (tag bit, type ARRAY: gc/object.h) and its slots:
 * [0] a fixed array holding the elements after its header, or undefined
 * when they are inline from [2]; [1] the length (isolate/array.c). */
#define ISO_INL_TYPE_ARRAY 5u
#define ISO_INL_HDR_KIND_BITS \
  (((uint64_t)ISO_INL_HDR_TYPE_MASK << ISO_INL_HDR_TYPE_SHIFT) | 1u)

ISO_INLINE iso_status iso_array_set(iso_isolate *iso, iso_value a, size_t i,
                                    iso_value v) {
  if (ISO_LIKELY(iso_is_ref(a) &&
                 (ISO_INL_HDR(a) & ISO_INL_HDR_KIND_BITS) ==
                     (((uint64_t)ISO_INL_TYPE_ARRAY << ISO_INL_HDR_TYPE_SHIFT) |
                      1u))) {
    iso_value *s = (iso_value *)(uintptr_t)a + 1;
    iso_value len = __atomic_load_n(&s[1], __ATOMIC_RELAXED);
    if (ISO_LIKELY(i < (size_t)iso_smi_value(len))) {
      iso_value e = __atomic_load_n(&s[0], __ATOMIC_RELAXED);
      if (iso_is_ref(e))
        iso_inl_store(iso, e, (iso_value *)(uintptr_t)e + 1 + i, v);
      else
        iso_inl_store(iso, a, s + 2 + i, v);
      return ISO_OK;
    }
  }
  return iso_inl_array_set_slow(iso, a, i, v);
}

ISO_INLINE iso_handle iso_record_new_v(iso_isolate *iso, iso_type type,
                                       size_t n, const iso_value *init) {
  iso_inl_isolate *t = ISO_INL(iso);
  const iso_inl_type *ty = &t->types[type & ISO_INL_HDR_TYPE_MASK];
  char *top = t->alloc_top;
  iso_value *h = t->handle_top;
  size_t size = 8 + 8 * n;
  /* One compare decides the type: fast_slots_plus1 is n + 1 only for a
   * record type of exactly n slots and no raw bytes. */
  if (ISO_LIKELY(type <= ISO_INL_HDR_TYPE_MASK &&
                 n + 1 == ty->fast_slots_plus1 &&
                 (size_t)(t->alloc_limit - top) >= size &&
                 h < t->handle_limit)) {
    iso_value *o = (iso_value *)(void *)top;
    t->alloc_top = top + size;
    o[0] = ty->header;
    for (size_t i = 0; i < n; i++) o[1 + i] = init[i];
    *h = (iso_value)(uintptr_t)o;
    t->handle_top = h + 1;
    return h;
  }
  return iso_inl_record_new_slow(iso, type, n, init);
}

ISO_INLINE iso_value iso_record_alloc(iso_isolate *iso, iso_type type,
                                      size_t n, const iso_value *init) {
  iso_inl_isolate *t = ISO_INL(iso);
  const iso_inl_type *ty = &t->types[type & ISO_INL_HDR_TYPE_MASK];
  char *top = t->alloc_top;
  size_t size = 8 + 8 * n;
  if (ISO_LIKELY(type <= ISO_INL_HDR_TYPE_MASK &&
                 n + 1 == ty->fast_slots_plus1 &&
                 (size_t)(t->alloc_limit - top) >= size)) {
    iso_value *o = (iso_value *)(void *)top;
    t->alloc_top = top + size;
    o[0] = ty->header;
    for (size_t i = 0; i < n; i++) o[1 + i] = init[i];
    return (iso_value)(uintptr_t)o;
  }
  return iso_inl_record_alloc_slow(iso, type, n, init);
}

#ifdef __cplusplus
}
#endif
#endif /* ISOLATE_H */
