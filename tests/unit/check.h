/*
 * The unit tests' harness: checks that stop the program at the first
 * failure, and a runner that prints one TAP line per test.
 *
 * A failing check prints "not ok", the file, the line, the expression and
 * the values it saw, then exits with status 1, so a broken test can never
 * go unnoticed in meson's log. Checks may run on any thread (the count is
 * atomic). A test that ran no check at all counts as a failure: a test
 * that asserts nothing proves nothing.
 *
 * Each program's main() calls unit_init(argc, argv), RUN(test) for each
 * test, then returns unit_done(). Naming a test on the command line runs
 * only that test.
 */
#ifndef UNIT_CHECK_H
#define UNIT_CHECK_H

#include <ctype.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"

static atomic_ulong unit_checks;
static const char *unit_current = "(setup)";
static const char *unit_filter;
static int unit_index;

static inline void unit_fail_header(const char *file, int line) {
  printf("not ok %d - %s\n# %s:%d: ", unit_index + 1, unit_current, file, line);
}

static inline void unit_fail_exit(void) {
  iso_status st = iso_last_status();
  const char *msg = iso_last_error();
  printf("# last error on this thread: %s \"%s\"\n", iso_status_name(st),
         msg ? msg : "(null)");
  fflush(stdout);
  exit(1);
}

#define CHECK(e)                            \
  do {                                      \
    atomic_fetch_add(&unit_checks, 1);      \
    if (!(e)) {                             \
      unit_fail_header(__FILE__, __LINE__); \
      printf("CHECK(%s) failed\n", #e);     \
      unit_fail_exit();                     \
    }                                       \
  } while (0)

/* Integer comparisons. Both sides are converted to intmax_t (signed) or
 * uintmax_t (unsigned, for sizes) once, and both values are printed. */
#define UNIT_CMP_S(a, op, b)                                               \
  do {                                                                     \
    intmax_t unit_a_ = (intmax_t)(a), unit_b_ = (intmax_t)(b);             \
    atomic_fetch_add(&unit_checks, 1);                                     \
    if (!(unit_a_ op unit_b_)) {                                           \
      unit_fail_header(__FILE__, __LINE__);                                \
      printf("CHECK(%s %s %s) failed: %jd vs %jd\n", #a, #op, #b, unit_a_, \
             unit_b_);                                                     \
      unit_fail_exit();                                                    \
    }                                                                      \
  } while (0)
#define UNIT_CMP_U(a, op, b)                                               \
  do {                                                                     \
    uintmax_t unit_a_ = (uintmax_t)(a), unit_b_ = (uintmax_t)(b);          \
    atomic_fetch_add(&unit_checks, 1);                                     \
    if (!(unit_a_ op unit_b_)) {                                           \
      unit_fail_header(__FILE__, __LINE__);                                \
      printf("CHECK(%s %s %s) failed: %ju vs %ju\n", #a, #op, #b, unit_a_, \
             unit_b_);                                                     \
      unit_fail_exit();                                                    \
    }                                                                      \
  } while (0)

#define CHECK_EQ(a, b) UNIT_CMP_S(a, ==, b)
#define CHECK_NE(a, b) UNIT_CMP_S(a, !=, b)
#define CHECK_LT(a, b) UNIT_CMP_S(a, <, b)
#define CHECK_LE(a, b) UNIT_CMP_S(a, <=, b)
#define CHECK_GT(a, b) UNIT_CMP_S(a, >, b)
#define CHECK_GE(a, b) UNIT_CMP_S(a, >=, b)
/* For sizes and 64-bit words that may not fit in intmax_t. */
#define CHECK_UEQ(a, b) UNIT_CMP_U(a, ==, b)
#define CHECK_ULE(a, b) UNIT_CMP_U(a, <=, b)
#define CHECK_UGE(a, b) UNIT_CMP_U(a, >=, b)
#define CHECK_UGT(a, b) UNIT_CMP_U(a, >, b)

#define CHECK_STR(a, b)                                                   \
  do {                                                                    \
    const char *unit_a_ = (a), *unit_b_ = (b);                            \
    atomic_fetch_add(&unit_checks, 1);                                    \
    if (!unit_a_ || !unit_b_ || strcmp(unit_a_, unit_b_) != 0) {          \
      unit_fail_header(__FILE__, __LINE__);                               \
      printf("CHECK_STR(%s, %s) failed: \"%s\" vs \"%s\"\n", #a, #b,      \
             unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)"); \
      unit_fail_exit();                                                   \
    }                                                                     \
  } while (0)

/* A call that must return the status want. */
#define CHECK_STATUS(call, want)                                       \
  do {                                                                 \
    iso_status unit_got_ = (call), unit_want_ = (want);                \
    atomic_fetch_add(&unit_checks, 1);                                 \
    if (unit_got_ != unit_want_) {                                     \
      unit_fail_header(__FILE__, __LINE__);                            \
      printf("%s returned %s, expected %s\n", #call,                   \
             iso_status_name(unit_got_), iso_status_name(unit_want_)); \
      unit_fail_exit();                                                \
    }                                                                  \
  } while (0)
#define CHECK_OK(call) CHECK_STATUS(call, ISO_OK)

/* Case-insensitive: does hay contain one of the '|'-separated words? */
static inline int unit_mentions(const char *hay, const char *words) {
  const char *w = words;
  while (*w) {
    size_t n = strcspn(w, "|");
    for (const char *h = hay; *h; h++) {
      size_t k = 0;
      while (k < n && h[k] &&
             tolower((unsigned char)h[k]) == tolower((unsigned char)w[k]))
        k++;
      if (k == n) return 1;
    }
    w += n;
    if (*w == '|') w++;
  }
  return 0;
}

/* The last failing call on this thread set status want, with a message
 * that names the problem: it mentions one of words ('|'-separated,
 * case-insensitive; NULL or "" asks only for a non-empty message). */
#define CHECK_ERROR(want, words)                                        \
  do {                                                                  \
    iso_status unit_st_ = iso_last_status(), unit_w_ = (want);          \
    const char *unit_msg_ = iso_last_error();                           \
    const char *unit_words_ = (words);                                  \
    atomic_fetch_add(&unit_checks, 1);                                  \
    if (unit_st_ != unit_w_ || !unit_msg_ || !unit_msg_[0] ||           \
        (unit_words_ && unit_words_[0] &&                               \
         !unit_mentions(unit_msg_, unit_words_))) {                     \
      unit_fail_header(__FILE__, __LINE__);                             \
      printf("expected last error %s mentioning \"%s\"\n",              \
             iso_status_name(unit_w_), unit_words_ ? unit_words_ : ""); \
      unit_fail_exit();                                                 \
    }                                                                   \
  } while (0)

/* A failing call: clears the thread's error first, so the error checked
 * afterwards is the one this call set. expr is the condition its return
 * value must meet (e.g. "== NULL"). */
#define CHECK_FAILS(call, cond, want, words) \
  do {                                       \
    iso_clear_error();                       \
    CHECK((call)cond);                       \
    CHECK_ERROR(want, words);                \
  } while (0)

/* The same for a call that returns an iso_status. */
#define CHECK_FAILS_ST(call, want, words) \
  do {                                    \
    iso_clear_error();                    \
    CHECK_STATUS(call, want);             \
    CHECK_ERROR(want, words);             \
  } while (0)

static inline void unit_init(int argc, char **argv) {
  unit_filter = argc > 1 ? argv[1] : NULL;
  setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline void unit_run(const char *name, void (*fn)(void)) {
  if (unit_filter && strcmp(unit_filter, name) != 0) return;
  unit_current = name;
  unsigned long before = atomic_load(&unit_checks);
  iso_clear_error();
  fn();
  unsigned long n = atomic_load(&unit_checks) - before;
  if (n == 0) {
    printf("not ok %d - %s\n# the test made no check\n", unit_index + 1, name);
    exit(1);
  }
  unit_index++;
  printf("ok %d - %s (%lu checks)\n", unit_index, name, n);
}
#define RUN(fn) unit_run(#fn, fn)

static inline int unit_done(void) {
  if (unit_index == 0) {
    printf("not ok 1 - no test matched\n");
    return 1;
  }
  printf("1..%d\n# %lu checks passed\n", unit_index,
         (unsigned long)atomic_load(&unit_checks));
  return 0;
}

#endif /* UNIT_CHECK_H */
