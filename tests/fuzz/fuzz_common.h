/*
 * What the deserializer fuzz target and its corpus generator agree on:
 * the record types (registered in this order, so their ids match), the
 * host delegate, and the "carrier": a real message whose tables hold two
 * transferred ArrayBuffers, two out-of-line copies of ArrayBuffers, two
 * shared buffers and one port, into which the target puts the fuzzed
 * bytes, so table indexes in the input reach real table entries.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"

/* Buffer sizes in the carrier's tables (table order). */
#define FUZZ_MOVED0 16u
#define FUZZ_MOVED1 64u
#define FUZZ_SHARED0 32u
#define FUZZ_SHARED1 8u
#define FUZZ_COPY0 48u
#define FUZZ_COPY1 100u
/* The fuzz target is built with the out-of-line copy threshold lowered to
 * this (tests/fuzz/meson.build), so that the carrier's buffers of
 * FUZZ_COPY0 and FUZZ_COPY1 bytes, and small buffers in inputs that
 * survive a round trip, travel in the copy table. */
#define FUZZ_COPY_MIN 40u

typedef struct fuzz_types {
  iso_type pair; /* 2 slots */
  iso_type blob; /* 1 slot, 16 raw bytes */
  iso_type leaf; /* nothing */
  iso_type wide; /* 5 slots, 3 raw bytes */
} fuzz_types;

static inline int fuzz_register(iso_runtime *rt, fuzz_types *t) {
  static const struct {
    const char *name;
    uint32_t slots, raw;
  } d[4] = {{"fuzz.pair", 2, 0},
            {"fuzz.blob", 1, 16},
            {"fuzz.leaf", 0, 0},
            {"fuzz.wide", 5, 3}};
  iso_type *out[4] = {&t->pair, &t->blob, &t->leaf, &t->wide};
  for (int i = 0; i < 4; i++) {
    iso_type_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.struct_size = sizeof desc;
    desc.name = d[i].name;
    desc.slot_count = d[i].slots;
    desc.raw_size = d[i].raw;
    *out[i] = iso_type_register(rt, &desc);
    if (!*out[i]) return -1;
  }
  return 0;
}

/* The host delegate: externals travel as their pointer ('E'), blobs
 * (records of type blob) as their raw bytes ('B'). */
typedef struct fuzz_host {
  fuzz_types *types;
} fuzz_host;

static inline iso_status fuzz_write_host(void *ctx, iso_isolate *iso,
                                         iso_value v, iso_clone_writer *w) {
  fuzz_host *h = ctx;
  (void)iso;
  if (iso_kind_of(v) == ISO_KIND_EXTERNAL) {
    void *p = iso_external_value(v);
    iso_status st = iso_clone_write_bytes(w, "E", 1);
    return st != ISO_OK ? st : iso_clone_write_bytes(w, &p, sizeof p);
  }
  if (iso_type_of(v) == h->types->blob && iso_record_slot(v, 0) == ISO_TRUE) {
    iso_status st = iso_clone_write_bytes(w, "B", 1);
    return st != ISO_OK ? st : iso_clone_write_bytes(w, iso_record_raw(v), 16);
  }
  return ISO_ERR_TYPE;
}

static inline iso_handle fuzz_read_host(void *ctx, iso_isolate *iso,
                                        iso_clone_reader *r) {
  fuzz_host *h = ctx;
  char kind;
  if (iso_clone_read_bytes(r, &kind, 1) != ISO_OK) return NULL;
  if (kind == 'E') {
    void *p;
    if (iso_clone_read_bytes(r, &p, sizeof p) != ISO_OK) return NULL;
    return iso_external_new(iso, p, NULL, NULL); /* never dereferenced */
  }
  if (kind == 'B') {
    unsigned char raw[16];
    if (iso_clone_read_bytes(r, raw, sizeof raw) != ISO_OK) return NULL;
    iso_handle b = iso_record_new(iso, h->types->blob);
    if (!b) return NULL;
    memcpy(iso_record_raw(iso_get(b)), raw, sizeof raw);
    iso_record_set(iso, iso_get(b), 0, ISO_TRUE);
    return b;
  }
  return NULL;
}

/* The carrier's value: [moved0, moved1, shared0, shared1, port, copy0,
 * copy1], with moved0, moved1 and the port in the transfer list, copy0
 * and copy1 copied (out of line in the fuzz target). *peer receives the
 * port's peer, kept so the port stays open; the caller closes it. */
static inline iso_message *fuzz_carrier(iso_isolate *iso, iso_port **peer) {
  iso_scope s;
  iso_scope_open(iso, &s);
  iso_message *m = NULL;
  iso_port *p1 = NULL, *p2 = NULL;
  iso_handle arr = iso_array_new(iso, 0);
  iso_handle m0 = iso_array_buffer_new(iso, FUZZ_MOVED0);
  iso_handle m1 = iso_array_buffer_new(iso, FUZZ_MOVED1);
  iso_handle s0 = iso_shared_array_buffer_new(iso, FUZZ_SHARED0);
  iso_handle s1 = iso_shared_array_buffer_new(iso, FUZZ_SHARED1);
  iso_handle c0 = iso_array_buffer_new(iso, FUZZ_COPY0);
  iso_handle c1 = iso_array_buffer_new(iso, FUZZ_COPY1);
  if (!arr || !m0 || !m1 || !s0 || !s1 || !c0 || !c1 ||
      iso_channel_new(&p1, &p2) != ISO_OK)
    goto out;
  iso_handle pv = iso_port_to_value(iso, p1);
  if (!pv) goto out;
  iso_handle parts[7] = {m0, m1, s0, s1, pv, c0, c1};
  for (int i = 0; i < 7; i++)
    if (iso_array_push(iso, iso_get(arr), iso_get(parts[i])) != ISO_OK)
      goto out;
  iso_value tl[3] = {iso_get(m0), iso_get(m1), iso_get(pv)};
  if (iso_serialize(iso, iso_get(arr), tl, 3, NULL, &m) != ISO_OK) m = NULL;
out:
  iso_scope_close(&s);
  if (m == NULL && p2) iso_port_close(p2);
  *peer = m ? p2 : NULL;
  return m;
}

#endif /* FUZZ_COMMON_H */
