/*
 * The graph torture engine: one engine per isolate and no global state,
 * so a multi-threaded stress test can run one engine on each thread.
 *
 * An engine owns an isolate and keeps, in plain C memory, a shadow model
 * of every object it can still reach: each object has an id, its content,
 * and the ids of the objects it references (cycles and sharing included).
 * Each step draws one operation from a seeded PRNG (allocate, link,
 * unlink, drop a root, open or close a scope, collect, ...) and applies
 * it to the heap and to the model alike. After every collection, and now
 * and then besides, torture_check() walks the heap from the engine's roots
 * in lockstep with the model and compares every object's content and the
 * identity of everything it references; then it asks iso_heap_verify().
 *
 * A run is replayable: an engine's whole behaviour follows from its seed
 * and parameters (collections in stress mode are counted in allocations,
 * not in time).
 *
 * Threads: an engine is used by one thread at a time, the one that owns
 * its isolate. Register the record types once per runtime, before any
 * engine of that runtime starts (torture_register_types).
 */
#ifndef TORTURE_LIB_H
#define TORTURE_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

typedef struct torture_params {
  uint64_t seed;
  /* Stress mode of the isolate; 0 draws from the seed (scavenge every
   * 1..50 allocations, full collection every 60..1059). */
  unsigned scavenge_every;
  unsigned full_every;
  unsigned debug_flags;  /* ISO_DEBUG_*: break the collector on purpose */
  unsigned verify_every; /* iso_heap_verify() every N checks; 0 never */
  unsigned max_objects;  /* shadow objects before roots are dropped; 0:
                            1500, or 400 when small */
  bool small;            /* smaller graphs, for slow (TSan) builds */
} torture_params;

typedef struct torture_stats {
  uint64_t steps;
  uint64_t checks;
  uint64_t heap_verifies;
  uint64_t objects_checked; /* sum over checks of the objects compared */
  uint64_t scavenges;       /* collections seen by the GC callback */
  uint64_t full_gcs;
  uint64_t allocations;      /* objects the engine created */
  uint64_t old_to_young;     /* stores of a fresh object into an object
                                that has survived two collections (an
                                estimate of remembered-set traffic) */
  uint64_t large_objects;    /* objects of 128 KiB and more */
  uint64_t external_buffers; /* ArrayBuffers over the engine's memory */
  uint64_t max_live;         /* most objects alive in the model */
} torture_stats;

typedef struct torture torture;

/* Registers (or finds) the record types the engine uses. ISO_OK, or the
 * status of the failing iso_type_register(). */
iso_status torture_register_types(iso_runtime *rt);

/* A seed for round `round` of a run with seed `seed`. */
uint64_t torture_round_seed(uint64_t seed, uint64_t round);

/* A new engine with a new isolate bound to the calling thread. NULL on
 * failure, with a message in err. */
torture *torture_new(iso_runtime *rt, const torture_params *p, char *err,
                     size_t errlen);

/* One random operation, then a check if a collection ran. false once the
 * engine has failed (see torture_error). */
bool torture_step(torture *t);

/* Compares the whole heap reachable from the roots with the model, drops
 * dead objects from the model and runs iso_heap_verify() when due. */
bool torture_check(torture *t);

/* Frees the isolate and checks what only shows then (every external
 * ArrayBuffer freed exactly once). Idempotent. */
bool torture_close(torture *t);

/* The engine's isolate (NULL once closed), for drivers that also call
 * into it between steps: what they do must leave the engine's roots and
 * objects alone (collect, step a marking cycle, park). */
iso_isolate *torture_isolate(const torture *t);

/* The first failure, or NULL. */
const char *torture_error(const torture *t);

/* The parameters in use (with the drawn stress settings filled in). */
void torture_get_params(const torture *t, torture_params *out);
void torture_get_stats(const torture *t, torture_stats *out);

/* Closes (if needed) and frees the engine. */
void torture_free(torture *t);

/* ---- command lines of the drivers ---- */

/* A whole unsigned number (decimal, or 0x hex); false if s is not one. */
bool torture_parse_u64(const char *s, uint64_t *out);
/* A whole non-negative number of seconds; false if s is not one. */
bool torture_parse_double(const char *s, double *out);
/* Multiplies *scale by ISO_TEST_SCALE when it is set; false (and a
 * message naming prog) when it is not a positive integer. */
bool torture_env_scale(const char *prog, uint64_t *scale);
/* A seed from the clock and the process id, short enough to type back. */
uint64_t torture_default_seed(void);

/* ---- for the drivers' own choices ---- */

/* xorshift64*: the next number of the sequence in *state (never 0). */
static inline uint64_t torture_rnd(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dull;
}
/* A number below n (0 when n is 0). */
static inline uint64_t torture_below(uint64_t *state, uint64_t n) {
  return n ? torture_rnd(state) % n : 0;
}
/* Seconds on the monotonic clock. */
double torture_now_s(void);

#endif /* TORTURE_LIB_H */
