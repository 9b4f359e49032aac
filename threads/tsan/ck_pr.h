/*
 * ThreadSanitizer shim for concurrencykit's ck_pr.h (TSan builds only:
 * threads/meson.build puts this directory first on the include path).
 *
 * ck 0.7 reads and writes shared words through volatile accesses
 * (ck_pr_md_load_* / ck_pr_md_store_*), which are correct on the machines
 * it supports but invisible to TSan, so every hand-off through a ck_ring
 * looks like a data race. Here the compiler-builtin port is selected, its
 * volatile accessors are renamed out of the way while ck's header is read,
 * and then redefined as __atomic accesses: loads acquire, stores release.
 * On x86 both are plain moves; for TSan they are the edges that ck's
 * fences provide on real hardware (a ring's producer writes a slot, then
 * publishes the tail; a consumer reads the tail, then the slot).
 */
#ifndef ISO_TSAN_CK_PR_H
#define ISO_TSAN_CK_PR_H

#define CK_USE_CC_BUILTINS 1

#define ck_pr_md_load_ptr ck_pr_md_load_ptr_volatile_
#define ck_pr_md_store_ptr ck_pr_md_store_ptr_volatile_
#define ck_pr_md_load_char ck_pr_md_load_char_volatile_
#define ck_pr_md_store_char ck_pr_md_store_char_volatile_
#define ck_pr_md_load_uint ck_pr_md_load_uint_volatile_
#define ck_pr_md_store_uint ck_pr_md_store_uint_volatile_
#define ck_pr_md_load_int ck_pr_md_load_int_volatile_
#define ck_pr_md_store_int ck_pr_md_store_int_volatile_
#define ck_pr_md_load_double ck_pr_md_load_double_volatile_
#define ck_pr_md_store_double ck_pr_md_store_double_volatile_
#define ck_pr_md_load_64 ck_pr_md_load_64_volatile_
#define ck_pr_md_store_64 ck_pr_md_store_64_volatile_
#define ck_pr_md_load_32 ck_pr_md_load_32_volatile_
#define ck_pr_md_store_32 ck_pr_md_store_32_volatile_
#define ck_pr_md_load_16 ck_pr_md_load_16_volatile_
#define ck_pr_md_store_16 ck_pr_md_store_16_volatile_
#define ck_pr_md_load_8 ck_pr_md_load_8_volatile_
#define ck_pr_md_store_8 ck_pr_md_store_8_volatile_

#include_next <ck_pr.h>

#undef ck_pr_md_load_ptr
#undef ck_pr_md_store_ptr
#undef ck_pr_md_load_char
#undef ck_pr_md_store_char
#undef ck_pr_md_load_uint
#undef ck_pr_md_store_uint
#undef ck_pr_md_load_int
#undef ck_pr_md_store_int
#undef ck_pr_md_load_double
#undef ck_pr_md_store_double
#undef ck_pr_md_load_64
#undef ck_pr_md_store_64
#undef ck_pr_md_load_32
#undef ck_pr_md_store_32
#undef ck_pr_md_load_16
#undef ck_pr_md_store_16
#undef ck_pr_md_load_8
#undef ck_pr_md_store_8

#define ISO_TSAN_CK_LOAD(T, p) __atomic_load_n((T const *)(p), __ATOMIC_ACQUIRE)
#define ISO_TSAN_CK_STORE(T, p, v) \
  __atomic_store_n((T *)(p), (T)(v), __ATOMIC_RELEASE)

#define ck_pr_md_load_ptr(p) ((void *)ISO_TSAN_CK_LOAD(void *, (p)))
#define ck_pr_md_store_ptr(p, v) ISO_TSAN_CK_STORE(void *, (p), (v))
#define ck_pr_md_load_char(p) ISO_TSAN_CK_LOAD(char, (p))
#define ck_pr_md_store_char(p, v) ISO_TSAN_CK_STORE(char, (p), (v))
#define ck_pr_md_load_uint(p) ISO_TSAN_CK_LOAD(unsigned int, (p))
#define ck_pr_md_store_uint(p, v) ISO_TSAN_CK_STORE(unsigned int, (p), (v))
#define ck_pr_md_load_int(p) ISO_TSAN_CK_LOAD(int, (p))
#define ck_pr_md_store_int(p, v) ISO_TSAN_CK_STORE(int, (p), (v))
#define ck_pr_md_load_64(p) ISO_TSAN_CK_LOAD(uint64_t, (p))
#define ck_pr_md_store_64(p, v) ISO_TSAN_CK_STORE(uint64_t, (p), (v))
#define ck_pr_md_load_32(p) ISO_TSAN_CK_LOAD(uint32_t, (p))
#define ck_pr_md_store_32(p, v) ISO_TSAN_CK_STORE(uint32_t, (p), (v))
#define ck_pr_md_load_16(p) ISO_TSAN_CK_LOAD(uint16_t, (p))
#define ck_pr_md_store_16(p, v) ISO_TSAN_CK_STORE(uint16_t, (p), (v))
#define ck_pr_md_load_8(p) ISO_TSAN_CK_LOAD(uint8_t, (p))
#define ck_pr_md_store_8(p, v) ISO_TSAN_CK_STORE(uint8_t, (p), (v))

#endif /* ISO_TSAN_CK_PR_H */
