/*
 * Per-thread errors. Every failing call stores its status and a message in
 * thread-local storage; nothing a caller does wrong aborts the process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate_internal.h"

static _Thread_local iso_status last_status = ISO_OK;
static _Thread_local char last_message[512];

static const char *const status_names[ISO_ERR_COUNT_] = {
    [ISO_OK] = "ISO_OK",
    [ISO_ERR_OUT_OF_MEMORY] = "ISO_ERR_OUT_OF_MEMORY",
    [ISO_ERR_TYPE] = "ISO_ERR_TYPE",
    [ISO_ERR_RANGE] = "ISO_ERR_RANGE",
    [ISO_ERR_ARGUMENT] = "ISO_ERR_ARGUMENT",
    [ISO_ERR_SCOPE] = "ISO_ERR_SCOPE",
    [ISO_ERR_THREAD] = "ISO_ERR_THREAD",
    [ISO_ERR_STATE] = "ISO_ERR_STATE",
    [ISO_ERR_CLOSED] = "ISO_ERR_CLOSED",
    [ISO_ERR_DATA_CLONE] = "ISO_ERR_DATA_CLONE",
    [ISO_ERR_DETACHED] = "ISO_ERR_DETACHED",
    [ISO_ERR_HEAP_CORRUPT] = "ISO_ERR_HEAP_CORRUPT",
    [ISO_ERR_LIMIT] = "ISO_ERR_LIMIT",
    [ISO_ERR_TIMEOUT] = "ISO_ERR_TIMEOUT",
    [ISO_ERR_TERMINATED] = "ISO_ERR_TERMINATED",
};

const char *iso_version(void) { return "0.1.0"; }

const char *iso_status_name(iso_status status) {
  if ((unsigned)status >= ISO_ERR_COUNT_) return "ISO_ERR_UNKNOWN";
  return status_names[status];
}

iso_status iso_last_status(void) { return last_status; }
const char *iso_last_error(void) { return last_message; }

void iso_clear_error(void) {
  last_status = ISO_OK;
  last_message[0] = '\0';
}

iso_status isolate_fail(iso_status status, const char *fmt, ...) {
  va_list ap;
  last_status = status;
  va_start(ap, fmt);
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  va_end(ap);
  return status;
}

void isolate_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "libisolate: internal assertion failed: %s (%s:%d)\n",
          expr, file, line);
  abort();
}
