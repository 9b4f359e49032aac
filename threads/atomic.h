/*
 * Atomics named by their memory order, over C11 <stdatomic.h> builtins.
 *
 * Every shared word of the library is read and written through these, so
 * the order of each access is visible where it is made. Object slots are
 * plain uint64_t words (the public header must stay free of _Atomic), so
 * the wrappers take plain pointers and use the GCC/Clang __atomic builtins,
 * which ThreadSanitizer understands.
 */
#ifndef THR_ATOMIC_H
#define THR_ATOMIC_H

#include <stdbool.h>
#include <stdint.h>

#define thr_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define thr_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define thr_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define thr_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define thr_fetch_add_relaxed(p, v) \
  __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define thr_fetch_sub_relaxed(p, v) \
  __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)
#define thr_fetch_add_acq_rel(p, v) \
  __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#define thr_fetch_or_relaxed(p, v) __atomic_fetch_or((p), (v), __ATOMIC_RELAXED)
#define thr_fetch_or_acq_rel(p, v) __atomic_fetch_or((p), (v), __ATOMIC_ACQ_REL)
#define thr_fetch_and_relaxed(p, v) \
  __atomic_fetch_and((p), (v), __ATOMIC_RELAXED)
#define thr_exchange_acq_rel(p, v) \
  __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)
/* Strong CAS; on failure *expected receives the current value. */
#define thr_cas_acq_rel(p, expected, desired)                          \
  __atomic_compare_exchange_n((p), (expected), (desired), false,      \
                              __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)

#endif /* THR_ATOMIC_H */
