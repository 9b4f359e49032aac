/* Monotonic time for pause statistics and trace lines. */
#include <time.h>

#include "isolate_internal.h"

uint64_t isolate_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
