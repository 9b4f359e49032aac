/*
 * The runtime's background GC threads and its registry of isolates.
 *
 * The registry is an RCU list (liburcu, memb flavour): isolates are added
 * and removed under the runtime lock, and GC threads walk it without any
 * lock, taking a marker slot in an isolate (gc_background_enter) before
 * they leave the read-side section, so the isolate outlives their work.
 */
#ifndef THR_GC_THREADS_H
#define THR_GC_THREADS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <urcu/list.h>

typedef struct gc_thread_pool {
  /* Guards count, tids, args, seq and stop. wanted and cores are set by
   * gc_threads_configure and only read after; running and help_active
   * are atomics read without it. */
  pthread_mutex_t lock;
  pthread_cond_t cond;  /* signalled when seq moves or stop is set */
  unsigned wanted;      /* threads to start; 0: none */
  /* Threads started. gc_threads_start creates them holding the lock,
   * before it sets running, and they walk the registry at once, so
   * gc_registry_remove asks count (under the lock), not running, whether
   * a grace period is needed. */
  unsigned count;
  pthread_t *tids;
  uint64_t seq;         /* notifications so far */
  bool stop;
  int running;          /* atomic: threads were started */
  unsigned cores;       /* iso_runtime_params.cores */
  /* Whether GC threads may work for active isolates, as GC thread 0 last
   * found it when looking for work (the only writer); the owners read it
   * at safepoints. Atomic (Note [GC threads and spare cores]). */
  int help_active;
  struct gc_thread_arg *args; /* one per thread: its index */
} gc_thread_pool;

struct iso_runtime;
struct iso_isolate;

/* Reads the thread count from the parameters and ISO_GC_THREADS, and the
 * cores from the parameters and ISO_GC_CORES. */
void gc_threads_configure(struct iso_runtime *rt, unsigned param,
                          unsigned cores);
/* Starts the threads if they are not running yet (the first cycle of the
 * runtime does). Any thread. */
void gc_threads_start(struct iso_runtime *rt);
/* True once threads run (false with ISO_GC_THREADS_NONE). Any thread. */
bool gc_threads_running(struct iso_runtime *rt);
/* May any GC thread work for an active isolate now (Note [GC threads and
 * spare cores])? The owner's question, answered from what the GC threads
 * last found. Any thread. */
bool gc_threads_help(struct iso_runtime *rt);
/* The GC thread's own question, counted afresh: may thread index go on
 * working for iso? GC threads only. */
bool gc_threads_may_serve(struct iso_runtime *rt, unsigned index,
                          struct iso_isolate *iso);
/* Wakes the threads: some isolate has work for them. Any thread. */
void gc_threads_notify(struct iso_runtime *rt);
/* Stops and joins the threads (runtime teardown). */
void gc_threads_stop(struct iso_runtime *rt);

void gc_registry_add(struct iso_runtime *rt, struct iso_isolate *iso);
/* Removes iso; on return no GC thread reads it any more. */
void gc_registry_remove(struct iso_runtime *rt, struct iso_isolate *iso);

#endif /* THR_GC_THREADS_H */
