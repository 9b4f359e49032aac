/*
 * The host's clone delegate shared by the structured clone tests: it
 * writes externals and records of the type host_t its own way (a tag,
 * then the pointer or the record's 8 raw bytes) and reads them back,
 * marking the records it rebuilds (slot 0 = 42). host_log counts the
 * calls and makes them fail, overread or allocate on demand. Each test
 * program registers host_t ("clone.host": 1 slot, 8 raw bytes) itself.
 */
#ifndef UNIT_CLONE_HOST_H
#define UNIT_CLONE_HOST_H

#include "clone_check.h"

static iso_type host_t; /* 1 slot, 8 raw bytes: marked by the delegate */

typedef struct host_log {
  int writes, reads;
  int fail_write, fail_read, overread, allocate;
} host_log;

static iso_status host_write(void *ctx, iso_isolate *iso, iso_value v,
                             iso_clone_writer *w) {
  host_log *log = ctx;
  log->writes++;
  if (log->fail_write) return iso_clear_error(), ISO_ERR_ARGUMENT;
  if (log->allocate) {
    /* Enough garbage to fill the young generation would do the same. */
    CHECK(iso_string_from_cstr(iso, "garbage") != NULL);
    CHECK_OK(iso_gc(iso, ISO_GC_MINOR));
  }
  if (iso_kind_of(v) == ISO_KIND_EXTERNAL) {
    uint8_t tag = 'E';
    void *p = iso_external_value(v);
    CHECK_OK(iso_clone_write_bytes(w, &tag, 1));
    return iso_clone_write_bytes(w, &p, sizeof p);
  }
  if (iso_type_of(v) == host_t) {
    uint8_t tag = 'R';
    CHECK_OK(iso_clone_write_bytes(w, &tag, 1));
    return iso_clone_write_bytes(w, iso_record_raw(v), 8);
  }
  return ISO_ERR_TYPE; /* not ours: clone it as a record */
}

static iso_handle host_read(void *ctx, iso_isolate *iso, iso_clone_reader *r) {
  host_log *log = ctx;
  log->reads++;
  if (log->fail_read) return NULL;
  uint8_t tag;
  if (iso_clone_read_bytes(r, &tag, 1) != ISO_OK) return NULL;
  if (log->overread) {
    char big[64];
    if (iso_clone_read_bytes(r, big, sizeof big) != ISO_OK) return NULL;
  }
  if (tag == 'E') {
    void *p;
    if (iso_clone_read_bytes(r, &p, sizeof p) != ISO_OK) return NULL;
    return iso_external_new(iso, p, NULL, NULL);
  }
  iso_handle rec = iso_record_new(iso, host_t);
  if (!rec) return NULL;
  if (iso_clone_read_bytes(r, iso_record_raw(iso_get(rec)), 8) != ISO_OK)
    return NULL;
  /* Marked: the host rebuilds it its own way. */
  CHECK_OK(iso_record_set(iso, iso_get(rec), 0, iso_smi(42)));
  return rec;
}

/* The host's delegate, logging into *log (cleared). */
static inline iso_clone_delegate host_delegate(host_log *log) {
  memset(log, 0, sizeof *log);
  iso_clone_delegate d = {sizeof d, host_write, host_read, log};
  return d;
}

#endif /* UNIT_CLONE_HOST_H */
