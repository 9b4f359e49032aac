/*
 * ThreadSanitizer shim for liburcu's shared-memory accessors (TSan builds
 * only: threads/meson.build puts this directory first on the include path
 * when b_sanitize contains "thread"; normal builds use liburcu's own
 * header).
 *
 * liburcu 0.13 implements CMM_LOAD_SHARED and CMM_STORE_SHARED as volatile
 * accesses plus compiler barriers, which are correct on the machines it
 * supports but invisible to TSan, so every handoff through a cds_wfcq
 * queue looks like a data race. Here they become __atomic accesses that
 * TSan understands. Loads are acquire and stores release: on x86 both are
 * plain moves, and they give TSan the edges liburcu gets from its
 * dependency ordering (a dequeuer reads node->next, then the node; the
 * enqueuer wrote the node, then node->next). The underscore variants are
 * the "caller provides the ordering" forms and stay relaxed.
 *
 * The include guard is liburcu's own, so its header is never read once
 * this one has been.
 */
#ifndef _URCU_SYSTEM_H
#define _URCU_SYSTEM_H

#include <urcu/compiler.h>
#include <urcu/arch.h>

#define _CMM_LOAD_SHARED(p) __atomic_load_n(&(p), __ATOMIC_RELAXED)
#define CMM_LOAD_SHARED(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)

#define _CMM_STORE_SHARED(x, v)                            \
  __extension__({                                          \
    __typeof__(x) thr_tsan_v_ = (v);                       \
    __atomic_store_n(&(x), thr_tsan_v_, __ATOMIC_RELAXED); \
    thr_tsan_v_;                                           \
  })
#define CMM_STORE_SHARED(x, v)                             \
  __extension__({                                          \
    __typeof__(x) thr_tsan_v_ = (v);                       \
    __atomic_store_n(&(x), thr_tsan_v_, __ATOMIC_RELEASE); \
    thr_tsan_v_;                                           \
  })

#endif /* _URCU_SYSTEM_H */
