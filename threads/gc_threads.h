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
  pthread_mutex_t lock; /* guards all but running */
  pthread_cond_t cond;  /* signalled when seq moves or stop is set */
  unsigned wanted;      /* threads to start; 0: none */
  unsigned count;       /* started */
  pthread_t *tids;
  uint64_t seq;         /* notifications so far */
  bool stop;
  int running;          /* atomic: threads were started */
} gc_thread_pool;

struct iso_runtime;
struct iso_isolate;

/* Reads the thread count from the parameters and ISO_GC_THREADS. */
void gc_threads_configure(struct iso_runtime *rt, unsigned param);
/* Starts the threads if they are not running yet (the first cycle of the
 * runtime does). Any thread. */
void gc_threads_start(struct iso_runtime *rt);
/* True once threads run (false with ISO_GC_THREADS_NONE). Any thread. */
bool gc_threads_running(struct iso_runtime *rt);
/* Wakes the threads: some isolate has work for them. Any thread. */
void gc_threads_notify(struct iso_runtime *rt);
/* Stops and joins the threads (runtime teardown). */
void gc_threads_stop(struct iso_runtime *rt);

void gc_registry_add(struct iso_runtime *rt, struct iso_isolate *iso);
/* Removes iso; on return no GC thread reads it any more. */
void gc_registry_remove(struct iso_runtime *rt, struct iso_isolate *iso);

#endif /* THR_GC_THREADS_H */
