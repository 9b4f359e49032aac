/*
 * Background GC threads and the isolate registry; see gc_threads.h.
 *
 * A GC thread sleeps until notified (a cycle started, marking ended, an
 * isolate parked, a barrier ring filled up), then walks the registry under
 * RCU for an isolate that wants work (gc_background_wanted), takes a marker
 * slot in it (gc_background_enter, which fails once the isolate is being
 * freed), leaves the read-side section and works (gc_background_work), and
 * starts over from the head. While some isolate is marking, idle threads
 * also wake every WAIT_POLL_NS to look for barrier entries nobody announced.
 *
 * Freeing an isolate: gc_marking_cancel() keeps new markers out and waits
 * for the ones inside; gc_registry_remove() unlinks it and waits for a
 * grace period, after which no thread still walking the list can reach it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>
#include <urcu/rculist.h>

#include "isolate_internal.h"
#include "gc_internal.h"

#define WAIT_POLL_NS 2000000L /* 2 ms */
#define MAX_GC_THREADS 64

/* ThreadSanitizer cannot see RCU's grace periods (they are built from
 * memory barriers and the membarrier system call), so it would take a
 * reader's last access and the remover's free for a race. Each read-side
 * section releases a token and each grace period acquires it: exactly the
 * ordering a grace period guarantees. */
#if defined(ISO_TSAN)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char rcu_token;
#define RCU_TSAN_RELEASE() __tsan_release(&rcu_token)
#define RCU_TSAN_ACQUIRE() __tsan_acquire(&rcu_token)
#else
#define RCU_TSAN_RELEASE() ((void)0)
#define RCU_TSAN_ACQUIRE() ((void)0)
#endif

void gc_threads_configure(iso_runtime *rt, unsigned param) {
  gc_thread_pool *g = &rt->gc;
  pthread_mutex_init(&g->lock, NULL);
  pthread_cond_init(&g->cond, NULL);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned n = cores > 1 ? (unsigned)(cores - 1) : 1;
  if (param == ISO_GC_THREADS_NONE) {
    n = 0;
  } else if (param) {
    n = param;
  }
  const char *env = getenv("ISO_GC_THREADS");
  if (env && *env) {
    char *end;
    unsigned long v = strtoul(env, &end, 10);
    if (*end == 0) n = (unsigned)v;
  }
  g->wanted = n > MAX_GC_THREADS ? MAX_GC_THREADS : n;
  CDS_INIT_LIST_HEAD(&rt->isolates);
}

bool gc_threads_running(iso_runtime *rt) {
  return thr_load_acquire(&rt->gc.running) != 0;
}

void gc_threads_notify(iso_runtime *rt) {
  gc_thread_pool *g = &rt->gc;
  if (!gc_threads_running(rt)) return;
  pthread_mutex_lock(&g->lock);
  g->seq++;
  pthread_cond_broadcast(&g->cond);
  pthread_mutex_unlock(&g->lock);
}

/* An isolate with work for a GC thread, already entered; NULL if none. */
static iso_isolate *find_work(iso_runtime *rt, bool *marking) {
  iso_isolate *found = NULL, *iso;
  *marking = false;
  urcu_memb_read_lock();
  cds_list_for_each_entry_rcu(iso, &rt->isolates, rt_node) {
    if (gc_marking_state(iso) != ISO_GC_CYCLE_IDLE) *marking = true;
    if (gc_background_wanted(iso) && gc_background_enter(iso)) {
      found = iso;
      break;
    }
  }
  RCU_TSAN_RELEASE();
  urcu_memb_read_unlock();
  return found;
}

static void *gc_thread_main(void *arg) {
  iso_runtime *rt = arg;
  gc_thread_pool *g = &rt->gc;
  urcu_memb_register_thread();
  uint64_t seen = 0;
  for (;;) {
    bool marking = false;
    iso_isolate *iso;
    while ((iso = find_work(rt, &marking)) != NULL)
      gc_background_work(iso, &iso->heap.marking.cancelled_flag);
    pthread_mutex_lock(&g->lock);
    if (!g->stop && g->seq == seen) {
      if (marking) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WAIT_POLL_NS;
        if (ts.tv_nsec >= 1000000000L) {
          ts.tv_sec++;
          ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cond, &g->lock, &ts);
      } else {
        pthread_cond_wait(&g->cond, &g->lock);
      }
    }
    seen = g->seq;
    bool stop = g->stop;
    pthread_mutex_unlock(&g->lock);
    if (stop) break;
  }
  urcu_memb_unregister_thread();
  return NULL;
}

void gc_threads_start(iso_runtime *rt) {
  gc_thread_pool *g = &rt->gc;
  if (gc_threads_running(rt) || g->wanted == 0) return;
  pthread_mutex_lock(&g->lock);
  if (!g->running && !g->stop) {
    g->tids = calloc(g->wanted, sizeof *g->tids);
    for (unsigned i = 0; g->tids && i < g->wanted; i++) {
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 256u << 10);
      if (pthread_create(&g->tids[i], &attr, gc_thread_main, rt) == 0)
        g->count++;
      pthread_attr_destroy(&attr);
    }
    /* No thread at all (the system refused): the isolates mark by
     * themselves, as with ISO_GC_THREADS_NONE. */
    if (g->count) thr_store_release(&g->running, 1);
  }
  pthread_mutex_unlock(&g->lock);
}

void gc_threads_stop(iso_runtime *rt) {
  gc_thread_pool *g = &rt->gc;
  pthread_mutex_lock(&g->lock);
  g->stop = true;
  pthread_cond_broadcast(&g->cond);
  pthread_mutex_unlock(&g->lock);
  for (unsigned i = 0; i < g->count; i++) pthread_join(g->tids[i], NULL);
  free(g->tids);
  g->tids = NULL;
  g->count = 0;
  pthread_cond_destroy(&g->cond);
  pthread_mutex_destroy(&g->lock);
}

void gc_registry_add(iso_runtime *rt, iso_isolate *iso) {
  pthread_mutex_lock(&rt->lock);
  cds_list_add_rcu(&iso->rt_node, &rt->isolates);
  pthread_mutex_unlock(&rt->lock);
}

void gc_registry_remove(iso_runtime *rt, iso_isolate *iso) {
  pthread_mutex_lock(&rt->lock);
  cds_list_del_rcu(&iso->rt_node);
  pthread_mutex_unlock(&rt->lock);
  /* Without GC threads nobody reads the list without the lock. */
  if (gc_threads_running(rt)) {
    urcu_memb_synchronize_rcu();
    RCU_TSAN_ACQUIRE();
  }
}
