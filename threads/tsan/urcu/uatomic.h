/*
 * ThreadSanitizer shim for liburcu's uatomic operations (TSan builds
 * only; see urcu/system.h beside this file).
 *
 * liburcu 0.13's x86 uatomic_* are inline assembly, which TSan does not
 * instrument. This header replaces all of them with __atomic builtins of
 * the same meaning: the operations that return a value (xchg, cmpxchg,
 * add_return, sub_return) are full barriers in liburcu and are sequentially
 * consistent here; the void ones (add, sub, inc, dec, and, or) imply no
 * ordering in liburcu and are relaxed here, with the
 * cmm_smp_mb__{before,after}_uatomic_* fences as explicit seq_cst fences.
 * uatomic_read and uatomic_set keep liburcu's meaning (CMM_LOAD_SHARED and
 * CMM_STORE_SHARED of system.h).
 *
 * The include guard is liburcu's own, so its header is never read.
 */
#ifndef _URCU_UATOMIC_H
#define _URCU_UATOMIC_H

#include <urcu/arch.h>
#include <urcu/compiler.h>
#include <urcu/system.h>

#define UATOMIC_HAS_ATOMIC_BYTE
#define UATOMIC_HAS_ATOMIC_SHORT

#define uatomic_set(addr, v) ((void)CMM_STORE_SHARED(*(addr), (v)))
#define uatomic_read(addr) CMM_LOAD_SHARED(*(addr))

#define uatomic_cmpxchg(addr, old, _new)                             \
  __extension__({                                                    \
    __typeof__(*(addr)) thr_tsan_old_ = (old);                       \
    __atomic_compare_exchange_n((addr), &thr_tsan_old_, (_new), 0,   \
                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
    thr_tsan_old_;                                                   \
  })
#define uatomic_xchg(addr, v) __atomic_exchange_n((addr), (v), __ATOMIC_SEQ_CST)
#define uatomic_add_return(addr, v) \
  __atomic_add_fetch((addr), (v), __ATOMIC_SEQ_CST)
#define uatomic_sub_return(addr, v) \
  __atomic_sub_fetch((addr), (v), __ATOMIC_SEQ_CST)

#define uatomic_add(addr, v) \
  ((void)__atomic_add_fetch((addr), (v), __ATOMIC_RELAXED))
#define uatomic_sub(addr, v) \
  ((void)__atomic_sub_fetch((addr), (v), __ATOMIC_RELAXED))
#define uatomic_inc(addr) uatomic_add((addr), 1)
#define uatomic_dec(addr) uatomic_sub((addr), 1)
#define uatomic_and(addr, v) \
  ((void)__atomic_and_fetch((addr), (v), __ATOMIC_RELAXED))
#define uatomic_or(addr, v) \
  ((void)__atomic_or_fetch((addr), (v), __ATOMIC_RELAXED))

#define thr_tsan_fence_() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define cmm_smp_mb__before_uatomic_add() thr_tsan_fence_()
#define cmm_smp_mb__after_uatomic_add() thr_tsan_fence_()
#define cmm_smp_mb__before_uatomic_sub() thr_tsan_fence_()
#define cmm_smp_mb__after_uatomic_sub() thr_tsan_fence_()
#define cmm_smp_mb__before_uatomic_inc() thr_tsan_fence_()
#define cmm_smp_mb__after_uatomic_inc() thr_tsan_fence_()
#define cmm_smp_mb__before_uatomic_dec() thr_tsan_fence_()
#define cmm_smp_mb__after_uatomic_dec() thr_tsan_fence_()
#define cmm_smp_mb__before_uatomic_and() thr_tsan_fence_()
#define cmm_smp_mb__after_uatomic_and() thr_tsan_fence_()
#define cmm_smp_mb__before_uatomic_or() thr_tsan_fence_()
#define cmm_smp_mb__after_uatomic_or() thr_tsan_fence_()

#endif /* _URCU_UATOMIC_H */
