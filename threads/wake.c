/*
 * Waking an isolate's owner, and termination.
 *
 * Note [Termination]
 * C code cannot be interrupted mid-statement without signals or longjmp,
 * which the library never uses. So terminating an isolate is cooperative
 * but prompt: any thread sets the isolate's terminating flag and writes to
 * its eventfd. From then on the owner sees ISO_ERR_TERMINATED from every
 * API call (checked on entry), from the allocation slow path (so even the
 * inline allocators fail within one page of allocation), and from any
 * blocking call (which polls the eventfd beside what it waits for). The
 * worker's entry function unwinds on those errors and returns; its exit
 * code is the one given with the request, whatever it returns.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "isolate_internal.h"

int thr_isolate_wake_init(iso_isolate *iso) {
  iso->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return iso->wake_fd >= 0 ? 0 : -1;
}

void thr_isolate_wake_destroy(iso_isolate *iso) {
  if (iso->wake_fd >= 0) close(iso->wake_fd);
  iso->wake_fd = -1;
}

void thr_isolate_wake(iso_isolate *iso) {
  uint64_t one = 1;
  /* EAGAIN means the counter is saturated: the owner will wake anyway. */
  while (write(iso->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void thr_isolate_wake_clear(iso_isolate *iso) {
  uint64_t n;
  while (read(iso->wake_fd, &n, sizeof n) < 0 && errno == EINTR) {
  }
}

void isolate_request_terminate(iso_isolate *iso, int code) {
  int expected = 0;
  /* Only the first request sets the code (codes are non-zero). The release
   * store of the flag below publishes it to the owner's acquire load. */
  __atomic_compare_exchange_n(&iso->terminate_code, &expected, code, false,
                              __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  __atomic_store_n(&iso->terminating, 1, __ATOMIC_RELEASE);
  thr_isolate_wake(iso);
}

iso_status isolate_terminated_error(iso_isolate *iso) {
  return isolate_fail(ISO_ERR_TERMINATED, "isolate '%s' is being terminated",
                      iso->name);
}
