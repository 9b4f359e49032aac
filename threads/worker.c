/*
 * Workers: threads that each run an entry function on a fresh isolate,
 * connected to their parent by a channel (as Node's worker_threads).
 *
 * The isolate is made by iso_worker_spawn on the calling thread, so that
 * a failure (no memory, no file descriptor) is reported by spawn itself
 * and iso->worker is set before the worker's thread exists; spawn then
 * releases the isolate (iso_isolate_exit) and the worker's thread enters
 * it.
 *
 * Note [Worker teardown]
 * iso_worker_terminate may run on any thread at any time until join, also
 * while the worker is freeing its isolate. So w->iso is read and cleared
 * only under w->lock, and terminate asks the isolate to stop while holding
 * the lock: the worker's thread clears w->iso (under the lock) before it
 * frees the isolate, and a terminate either got in first (the isolate was
 * alive throughout) or finds NULL (the worker has finished). The exit code
 * is decided at that same moment: the entry's return value, unless the
 * isolate is being terminated (by a terminate, or by running out of heap),
 * whose code wins. A terminate that comes later does not change it: the
 * worker finished first.
 *
 * The worker holds a reference on its end of the channel until it has
 * freed its isolate, then closes that end if the entry left it with the
 * program (it did not close it, make it a value, or transfer it).
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "isolate_internal.h"
#include "port.h"

#define WORKER_DEFAULT_STACK ((size_t)1 << 20)

struct iso_worker {
  pthread_t thread;
  pthread_mutex_t lock;
  iso_isolate *iso; /* under lock; NULL once the worker has finished */
  iso_port *port;   /* the worker's end; the worker holds a reference */
  iso_worker_main fn;
  void *arg;
  /* Written by the worker's thread before it ends, read after
   * pthread_join (which orders the two). */
  int exit_code;
};

static void *worker_thread(void *arg) {
  iso_worker *w = arg;
  iso_isolate *iso = w->iso; /* set before the thread was created */
  int rc = 0;
  if (iso_isolate_enter(iso) == ISO_OK) {
    iso_scope scope;
    iso_scope_open(iso, &scope);
    rc = w->fn(iso, w->port, w->arg);
    /* An entry that left scopes open gets them closed with the isolate. */
    if (ISO_INL(iso)->scope == &scope) iso_scope_close(&scope);
  } else {
    rc = ISO_EXIT_TERMINATED; /* cannot happen: nobody else owns it */
  }
  thr_loop_destroy(iso);
  pthread_mutex_lock(&w->lock);
  if (isolate_terminating(iso)) rc = thr_load_acquire(&iso->terminate_code);
  w->iso = NULL; /* Note [Worker teardown] */
  pthread_mutex_unlock(&w->lock);
  iso_isolate_free(iso);
  thr_port_close_if_unowned(w->port);
  thr_port_unref(w->port);
  w->exit_code = rc;
  return NULL;
}

/* The isolate's parameters from the worker's. */
static iso_isolate_params isolate_params(const iso_worker_params *wp) {
  iso_isolate_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.max_young_generation_size = wp->max_young_generation_size;
  p.max_old_generation_size = wp->max_old_generation_size;
  p.name = wp->name ? wp->name : "worker";
  p.flags = wp->isolate_flags;
  return p;
}

iso_worker *iso_worker_spawn(iso_runtime *rt, iso_worker_main fn, void *arg,
                             const iso_worker_params *params,
                             iso_port **parent_port) {
  static const char fn_name[] = "iso_worker_spawn";
  if (!rt || !fn || !parent_port) {
    isolate_fail(ISO_ERR_ARGUMENT, "%s: NULL argument", fn_name);
    return NULL;
  }
  iso_worker_params wp;
  memset(&wp, 0, sizeof wp);
  if (params) {
    if (params->struct_size < sizeof(size_t) || params->struct_size > 4096) {
      isolate_fail(ISO_ERR_ARGUMENT, "%s: params->struct_size is not set",
                   fn_name);
      return NULL;
    }
    memcpy(&wp, params,
           params->struct_size < sizeof wp ? params->struct_size : sizeof wp);
  }
  iso_worker *w = calloc(1, sizeof *w);
  if (!w) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn_name);
    return NULL;
  }
  iso_port *mine, *theirs;
  if (iso_channel_new(&mine, &theirs) != ISO_OK) {
    free(w);
    return NULL;
  }
  iso_isolate_params ip = isolate_params(&wp);
  iso_isolate *iso = iso_isolate_new(rt, &ip);
  if (!iso) {
    iso_port_close(mine);
    iso_port_close(theirs);
    free(w);
    return NULL;
  }
  iso->worker = w;
  pthread_mutex_init(&w->lock, NULL);
  w->iso = iso;
  w->port = theirs;
  thr_port_ref(theirs);
  w->fn = fn;
  w->arg = arg;
  iso_isolate_exit(iso);

  pthread_attr_t attr;
  size_t stack = wp.stack_size ? wp.stack_size : WORKER_DEFAULT_STACK;
  if (stack < (size_t)PTHREAD_STACK_MIN) stack = (size_t)PTHREAD_STACK_MIN;
  int err = pthread_attr_init(&attr);
  if (err == 0) {
    err = pthread_attr_setstacksize(&attr, stack);
    if (err == 0) err = pthread_create(&w->thread, &attr, worker_thread, w);
    pthread_attr_destroy(&attr);
  }
  if (err != 0) {
    iso_isolate_enter(iso);
    iso_isolate_free(iso);
    thr_port_unref(theirs);
    iso_port_close(theirs);
    iso_port_close(mine);
    pthread_mutex_destroy(&w->lock);
    free(w);
    isolate_fail(ISO_ERR_LIMIT, "%s: cannot start a thread (%s)", fn_name,
                 strerror(err));
    return NULL;
  }
  *parent_port = mine;
  return w;
}

iso_status iso_worker_terminate(iso_worker *w) {
  if (!w) return isolate_fail(ISO_ERR_ARGUMENT, "iso_worker_terminate: NULL");
  pthread_mutex_lock(&w->lock);
  if (w->iso) isolate_request_terminate(w->iso, ISO_EXIT_TERMINATED);
  pthread_mutex_unlock(&w->lock);
  return ISO_OK;
}

iso_status iso_worker_join(iso_worker *w, int *exit_code) {
  if (!w) return isolate_fail(ISO_ERR_ARGUMENT, "iso_worker_join: NULL");
  int err = pthread_join(w->thread, NULL);
  if (err != 0)
    return isolate_fail(ISO_ERR_STATE,
                        "iso_worker_join: cannot join the worker's thread "
                        "(%s)%s",
                        strerror(err),
                        pthread_equal(w->thread, pthread_self())
                            ? ": a worker cannot join itself"
                            : "");
  if (exit_code) *exit_code = w->exit_code;
  pthread_mutex_destroy(&w->lock);
  free(w);
  return ISO_OK;
}

iso_worker *iso_isolate_worker(iso_isolate *iso) {
  return iso ? iso->worker : NULL;
}
