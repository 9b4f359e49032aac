/*
 * Isolate lifecycle and thread binding.
 *
 * An isolate is used by one thread at a time. Ownership is a token (the
 * address of a thread-local byte, unique among live threads) stored in
 * owner; enter/exit hand it over with a CAS, so two threads can never both
 * believe they own it. Debug builds check the token on every out-of-line
 * API call; the inline fast paths do not check.
 */
#include <stdlib.h>
#include <string.h>

#include "gc_internal.h"

static _Thread_local char thread_token;

static uintptr_t self_token(void) { return (uintptr_t)&thread_token; }

iso_status isolate_check_thread_slow(iso_isolate *iso) {
  uintptr_t owner = thr_load_acquire((uintptr_t *)&iso->owner);
  if (owner == self_token()) return ISO_OK;
  if (owner == 0)
    return isolate_fail(ISO_ERR_THREAD,
                        "isolate '%s' is not entered on this thread "
                        "(call iso_isolate_enter first)",
                        iso->name);
  return isolate_fail(ISO_ERR_THREAD,
                      "isolate '%s' is owned by another thread", iso->name);
}

iso_isolate *iso_isolate_new(iso_runtime *rt, const iso_isolate_params *p) {
  if (!rt) {
    isolate_fail(ISO_ERR_ARGUMENT, "iso_isolate_new: runtime is NULL");
    return NULL;
  }
  iso_isolate_params params;
  memset(&params, 0, sizeof params);
  if (p) {
    if (p->struct_size < sizeof(size_t) || p->struct_size > 4096) {
      isolate_fail(ISO_ERR_ARGUMENT,
                   "iso_isolate_new: params->struct_size is not set");
      return NULL;
    }
    memcpy(&params, p,
           p->struct_size < sizeof params ? p->struct_size : sizeof params);
  }
  iso_isolate *iso = calloc(1, sizeof *iso);
  if (!iso) goto oom;
  iso->rt = rt;
  iso->name = strdup(params.name ? params.name : "isolate");
  if (!iso->name) goto oom;
  iso->inl.types = rt->inl_types;
  iso->wake_fd = -1;
  if (thr_isolate_wake_init(iso) != 0) {
    isolate_fail(ISO_ERR_LIMIT, "iso_isolate_new: no file descriptor left");
    goto fail;
  }
  thr_store_release((uintptr_t *)&iso->owner, self_token());
  iso->hfirst = iso->hcur = malloc(sizeof *iso->hfirst);
  if (!iso->hfirst) goto oom;
  iso->hfirst->prev = iso->hfirst->next = NULL;
  iso->inl.handle_top = iso->hfirst->slots;
  iso->inl.handle_limit = iso->hfirst->slots + ISOLATE_HANDLE_BLOCK_SLOTS;
  iso_scope_open(iso, &iso->root_scope);
  if (gc_heap_init(iso, &params) != ISO_OK) goto fail;
  isolate_stamp_active(iso);
  gc_registry_add(rt, iso);
  thr_fetch_add_acq_rel(&rt->isolate_count, (size_t)1);
  return iso;
oom:
  isolate_fail(ISO_ERR_OUT_OF_MEMORY, "iso_isolate_new: out of memory");
fail:
  if (iso) {
    thr_isolate_wake_destroy(iso);
    free(iso->hfirst);
    free(iso->name);
    free(iso);
  }
  return NULL;
}

iso_status iso_isolate_free(iso_isolate *iso) {
  iso_status st = ISOLATE_CHECK_OWNER(iso);
  if (st != ISO_OK) return st;
  iso_runtime *rt = iso->rt;
  if (thr_load_relaxed(&iso->park_state) != ISOLATE_RUNNING)
    return isolate_fail(ISO_ERR_STATE,
                        "iso_isolate_free: '%s' is parked (unpark it first)",
                        iso->name);
  /* No GC thread works in the isolate from here on, and after the grace
   * period none can find it: its pages go back to the pool at once. */
  gc_marking_cancel(iso);
  gc_registry_remove(rt, iso);
  thr_loop_destroy(iso);
  gc_heap_destroy(iso);
  isolate_handles_free(iso);
  thr_isolate_wake_destroy(iso);
  free(iso->name);
  free(iso);
  /* Last: once the count drops, iso_runtime_free may run on another
   * thread. Pairs with the acquire load there. */
  thr_fetch_add_acq_rel(&rt->isolate_count, (size_t)-1);
  return ISO_OK;
}

iso_status iso_isolate_enter(iso_isolate *iso) {
  if (!iso) return isolate_fail(ISO_ERR_ARGUMENT, "iso_isolate_enter: NULL");
  uintptr_t expected = 0;
  if (thr_cas_acq_rel((uintptr_t *)&iso->owner, &expected, self_token()))
    return ISO_OK;
  if (expected == self_token()) return ISO_OK;
  return isolate_fail(ISO_ERR_THREAD,
                      "iso_isolate_enter: isolate '%s' is owned by another "
                      "thread (it must call iso_isolate_exit first)",
                      iso->name);
}

iso_status iso_isolate_exit(iso_isolate *iso) {
  if (!iso) return isolate_fail(ISO_ERR_ARGUMENT, "iso_isolate_exit: NULL");
  uintptr_t expected = self_token();
  if (thr_cas_acq_rel((uintptr_t *)&iso->owner, &expected, (uintptr_t)0))
    return ISO_OK;
  return isolate_fail(ISO_ERR_THREAD,
                      "iso_isolate_exit: isolate '%s' is not owned by this "
                      "thread",
                      iso->name);
}

iso_runtime *iso_isolate_runtime(iso_isolate *iso) {
  return iso ? iso->rt : NULL;
}

const char *iso_isolate_name(iso_isolate *iso) {
  return iso ? iso->name : NULL;
}

void iso_isolate_set_near_heap_limit_callback(iso_isolate *iso,
                                              iso_near_heap_limit_callback cb,
                                              void *data) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return;
  iso->heap.near_limit_cb = cb;
  iso->heap.near_limit_data = data;
}

iso_status iso_isolate_add_gc_callback(iso_isolate *iso, iso_gc_callback cb,
                                       void *data) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!cb)
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "iso_isolate_add_gc_callback: callback is NULL");
  for (int i = 0; i < GC_MAX_CALLBACKS; i++)
    if (!iso->heap.gc_callbacks[i].cb) {
      iso->heap.gc_callbacks[i].cb = cb;
      iso->heap.gc_callbacks[i].data = data;
      return ISO_OK;
    }
  return isolate_fail(ISO_ERR_LIMIT,
                      "iso_isolate_add_gc_callback: at most %d callbacks",
                      GC_MAX_CALLBACKS);
}

iso_status iso_isolate_remove_gc_callback(iso_isolate *iso,
                                          iso_gc_callback cb, void *data) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  for (int i = 0; i < GC_MAX_CALLBACKS; i++)
    if (iso->heap.gc_callbacks[i].cb == cb &&
        iso->heap.gc_callbacks[i].data == data) {
      iso->heap.gc_callbacks[i].cb = NULL;
      return ISO_OK;
    }
  return isolate_fail(ISO_ERR_ARGUMENT,
                      "iso_isolate_remove_gc_callback: not registered");
}

iso_status iso_safepoint(iso_isolate *iso) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  gc_poll(iso);
  return ISO_OK;
}
