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

/* Note [GC threads and spare cores]
 * A GC thread works for an active isolate only while the active isolates
 * leave it a core of its own: thread i serves them while
 *     i + active isolates < cores
 * (iso_runtime_params.cores, by default the machine's online cores). An
 * isolate is active when it is not parked and its owner took an
 * allocation slow path or a safepoint in the last ACTIVE_MS (the owner
 * stamps isolate.active_ms with a coarse clock): counting every unparked
 * isolate would count one that sits idle, or one of several that a thread
 * takes turns with, and nobody would finish its cycle. Parked and idle
 * isolates are always served: their cycles are joined, finished and swept
 * on their behalf as before. When the GC threads may not serve active
 * isolates, those mark their old spaces themselves, a step of
 * ASSIST_UNHELPED at each safepoint, and sweep lazily
 * (gc_marking_poll reads help_active, which the GC threads keep up to
 * date each time they look for work, at least every WAIT_POLL_NS while
 * a cycle runs). A GC thread that loses its core while it marks or sweeps
 * for an active isolate stops at its next slice.
 *   Why: three threads on two cores (two isolates and a GC thread) made
 * every short pause of an isolate liable to wait out another thread's
 * time slice. old_churn on two isolates and two cores, alternating runs:
 * collector pauses p99 4.0 to 4.2 ms and max 5.5 to 8.1 ms with the GC
 * thread helping; 0.47 to 0.62 ms and 2.5 to 5.3 ms with the isolates
 * marking themselves, peak RSS 1.95 GB instead of 2.3 to 2.45 GB, and a
 * few percent less throughput (the cores were busy either way). One
 * isolate on two cores keeps its GC thread. */
#define ACTIVE_MS 20
struct gc_thread_arg {
  iso_runtime *rt;
  unsigned index;
};

static unsigned env_count(const char *name, unsigned dflt) {
  const char *env = getenv(name);
  if (!env || !*env) return dflt;
  char *end;
  unsigned long v = strtoul(env, &end, 10);
  return *end == 0 && v <= 4096 ? (unsigned)v : dflt;
}

void gc_threads_configure(iso_runtime *rt, unsigned param, unsigned cores) {
  gc_thread_pool *g = &rt->gc;
  pthread_mutex_init(&g->lock, NULL);
  pthread_cond_init(&g->cond, NULL);
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (online < 1) online = 1;
  g->cores = env_count("ISO_GC_CORES", cores ? cores : (unsigned)online);
  if (g->cores == 0) g->cores = (unsigned)online;
  unsigned n = online > 1 ? (unsigned)(online - 1) : 1;
  if (param == ISO_GC_THREADS_NONE) {
    n = 0;
  } else if (param) {
    n = param;
  }
  n = env_count("ISO_GC_THREADS", n);
  g->wanted = n > MAX_GC_THREADS ? MAX_GC_THREADS : n;
  CDS_INIT_LIST_HEAD(&rt->isolates);
}

bool gc_threads_running(iso_runtime *rt) {
  return thr_load_acquire(&rt->gc.running) != 0;
}

bool gc_threads_help(iso_runtime *rt) {
  return gc_threads_running(rt) && thr_load_relaxed(&rt->gc.help_active);
}

static bool isolate_active(iso_isolate *iso, uint64_t now) {
  /* Signed: the owner's stamp may be a tick later than this thread's now. */
  int64_t idle = (int64_t)(now - thr_load_relaxed(&iso->active_ms));
  return thr_load_acquire(&iso->park_state) == ISOLATE_RUNNING &&
         idle < ACTIVE_MS;
}

/* The active isolates; the caller holds the RCU read lock. */
static size_t count_active(iso_runtime *rt, uint64_t now) {
  size_t n = 0;
  iso_isolate *iso;
  cds_list_for_each_entry_rcu(iso, &rt->isolates, rt_node) {
    if (isolate_active(iso, now)) n++;
  }
  return n;
}

bool gc_threads_may_serve(iso_runtime *rt, unsigned index, iso_isolate *iso) {
  uint64_t now = isolate_coarse_ms();
  if (!isolate_active(iso, now)) return true;
  urcu_memb_read_lock();
  size_t active = count_active(rt, now);
  RCU_TSAN_RELEASE();
  urcu_memb_read_unlock();
  return index + active < rt->gc.cores;
}

void gc_threads_notify(iso_runtime *rt) {
  gc_thread_pool *g = &rt->gc;
  /* Not gc_threads_running(): threads being started already look for
   * work, and one that looked before this notification must see it. */
  if (g->wanted == 0) return;
  pthread_mutex_lock(&g->lock);
  g->seq++;
  pthread_cond_broadcast(&g->cond);
  pthread_mutex_unlock(&g->lock);
}

/* An isolate with work for GC thread index, already entered; NULL if
 * none. */
static iso_isolate *find_work(iso_runtime *rt, unsigned index, bool *marking) {
  iso_isolate *found = NULL, *iso;
  *marking = false;
  uint64_t now = isolate_coarse_ms();
  urcu_memb_read_lock();
  size_t active = count_active(rt, now);
  bool help = index + active < rt->gc.cores;
  if (index == 0) thr_store_relaxed(&rt->gc.help_active, (int)help);
  cds_list_for_each_entry_rcu(iso, &rt->isolates, rt_node) {
    if (gc_marking_state(iso) != ISO_GC_CYCLE_IDLE) *marking = true;
    bool serve = help || !isolate_active(iso, now);
    if (gc_background_wanted(iso, serve) && gc_background_enter(iso)) {
      found = iso;
      break;
    }
  }
  RCU_TSAN_RELEASE();
  urcu_memb_read_unlock();
  return found;
}

static void *gc_thread_main(void *arg) {
  const struct gc_thread_arg *a = arg;
  iso_runtime *rt = a->rt;
  unsigned index = a->index;
  gc_thread_pool *g = &rt->gc;
  urcu_memb_register_thread();
  uint64_t seen = 0;
  for (;;) {
    bool marking = false;
    iso_isolate *iso;
    while ((iso = find_work(rt, index, &marking)) != NULL)
      gc_background_work(iso, index, &iso->heap.marking.cancelled_flag);
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
    g->args = calloc(g->wanted, sizeof *g->args);
    for (unsigned i = 0; g->tids && g->args && i < g->wanted; i++) {
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 256u << 10);
      /* Indices in start order: thread i is the i-th to lose its core. */
      g->args[g->count].rt = rt;
      g->args[g->count].index = g->count;
      if (pthread_create(&g->tids[g->count], &attr, gc_thread_main,
                         &g->args[g->count]) == 0)
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
  free(g->args);
  g->tids = NULL;
  g->args = NULL;
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
  /* Without GC threads nobody reads the list without the lock. The pool's
   * lock, not the running flag: gc_threads_start() creates the threads
   * (which walk the list at once) before it sets the flag, holding this
   * lock. Either the threads were created before this point, and the
   * grace period waits for them, or they are created after the unlink and
   * cannot find the isolate. */
  pthread_mutex_lock(&rt->gc.lock);
  bool readers = rt->gc.count != 0;
  pthread_mutex_unlock(&rt->gc.lock);
  if (readers) {
    urcu_memb_synchronize_rcu();
    RCU_TSAN_ACQUIRE();
  }
}
