/*
 * The payloads of message_throughput and clone_bench, built from the
 * library's types, and the checks a receiver runs on them. The Node.js
 * twins build the same shapes in node/payloads.js.
 *
 *   a  one user: a record of the registered type "User", five slots
 *      {id: 1234, name: 'user-1234', tags: ['a', 'b', 'c'], score: 1.5,
 *      active: true}; the score is a boxed double.
 *   b  an array of 1,000 users, each with its own name string and tags
 *      array (nothing shared, so a clone copies 1,000 times the work of a,
 *      as node's serializer does; a shared string would be written once
 *      and referenced).
 *   c  a new ArrayBuffer (1 MiB by default) per message, copied.
 *   d  the same, moved through the transfer list.
 *   e  a ring of 1,000 records of the type "RingNode" {next, value}: value
 *      i, next the (i+1)th node, the last one pointing back at the first;
 *      the payload is node 0.
 *
 * A buffer's first four bytes hold the message's sequence number (little
 * endian); the first message's remaining bytes hold a pattern the receiver
 * checks in full.
 */
#ifndef BENCH_PAYLOADS_H
#define BENCH_PAYLOADS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "isolate.h"

#define PAYLOAD_USERS 1000
#define PAYLOAD_RING 1000
#define PAYLOAD_USER_ID 1234
#define PAYLOAD_BUFFER_DEFAULT ((size_t)1 << 20)

typedef struct payload_types {
  iso_type user;      /* 5 slots: id, name, tags, score, active */
  iso_type ring_node; /* 2 slots: next, value */
} payload_types;

enum { USER_ID, USER_NAME, USER_TAGS, USER_SCORE, USER_ACTIVE, USER_SLOTS };
enum { RING_NEXT, RING_VALUE, RING_SLOTS };

/* Registers both types; false (with the library's error) on failure. */
static inline bool payload_register(iso_runtime *rt, payload_types *t) {
  iso_type_desc user = {.struct_size = sizeof user,
                        .name = "User",
                        .slot_count = USER_SLOTS};
  iso_type_desc node = {.struct_size = sizeof node,
                        .name = "RingNode",
                        .slot_count = RING_SLOTS};
  t->user = iso_type_register(rt, &user);
  t->ring_node = iso_type_register(rt, &node);
  return t->user != 0 && t->ring_node != 0;
}

static inline bool payload_kind_valid(char kind) {
  return kind >= 'a' && kind <= 'e';
}

/* One user record; NULL on failure. */
static inline iso_handle payload_user(iso_isolate *iso,
                                      const payload_types *t) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  static const char *const tag_text[3] = {"a", "b", "c"};
  iso_handle name = iso_string_from_cstr(iso, "user-1234");
  iso_handle tags = iso_array_new(iso, 0);
  iso_handle score = iso_number_new(iso, 1.5);
  iso_handle rec = NULL;
  if (name == NULL || tags == NULL || score == NULL) goto out;
  for (int i = 0; i < 3; i++) {
    iso_handle s = iso_string_from_cstr(iso, tag_text[i]);
    if (s == NULL || iso_array_push(iso, iso_get(tags), iso_get(s)) != ISO_OK)
      goto out;
  }
  /* Raw values read after the last allocation above. */
  iso_value init[USER_SLOTS] = {iso_smi(PAYLOAD_USER_ID), iso_get(name),
                                iso_get(tags), iso_get(score), ISO_TRUE};
  rec = iso_record_new_v(iso, t->user, USER_SLOTS, init);
out:
  if (rec == NULL) {
    iso_scope_close(&scope);
    return NULL;
  }
  return iso_scope_escape(&scope, rec);
}

static inline iso_handle payload_users(iso_isolate *iso,
                                       const payload_types *t) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_handle arr = iso_array_new(iso, 0);
  if (arr == NULL) goto fail;
  for (int i = 0; i < PAYLOAD_USERS; i++) {
    iso_scope inner;
    iso_scope_open(iso, &inner);
    iso_handle u = payload_user(iso, t);
    bool ok = u != NULL && iso_array_push(iso, iso_get(arr), iso_get(u)) ==
                               ISO_OK;
    iso_scope_close(&inner);
    if (!ok) goto fail;
  }
  return iso_scope_escape(&scope, arr);
fail:
  iso_scope_close(&scope);
  return NULL;
}

static inline iso_handle payload_ring(iso_isolate *iso,
                                      const payload_types *t) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_value init[RING_SLOTS] = {ISO_NULL, iso_smi(0)};
  iso_handle head = iso_record_new_v(iso, t->ring_node, RING_SLOTS, init);
  iso_handle prev = head ? iso_handle_new(iso, iso_get(head)) : NULL;
  if (prev == NULL) goto fail;
  for (int i = 1; i < PAYLOAD_RING; i++) {
    init[RING_VALUE] = iso_smi(i);
    iso_scope inner;
    iso_scope_open(iso, &inner);
    iso_handle n = iso_record_new_v(iso, t->ring_node, RING_SLOTS, init);
    if (n != NULL) {
      iso_record_set(iso, iso_get(prev), RING_NEXT, iso_get(n));
      iso_handle_set(prev, iso_get(n));
    }
    iso_scope_close(&inner);
    if (n == NULL) goto fail;
  }
  iso_record_set(iso, iso_get(prev), RING_NEXT, iso_get(head));
  return iso_scope_escape(&scope, head);
fail:
  iso_scope_close(&scope);
  return NULL;
}

static inline uint8_t payload_pattern(size_t i) {
  return (uint8_t)(i * 31u + 7u);
}

/* A new zero-filled buffer of size bytes (at least 4) carrying seq; the
 * whole pattern too when full is set. */
static inline iso_handle payload_buffer(iso_isolate *iso, size_t size,
                                        uint32_t seq, bool full) {
  iso_handle ab = iso_array_buffer_new(iso, size);
  if (ab == NULL) return NULL;
  uint8_t *p = iso_array_buffer_data(iso_get(ab));
  if (full)
    for (size_t i = 4; i < size; i++) p[i] = payload_pattern(i);
  uint8_t le[4] = {(uint8_t)seq, (uint8_t)(seq >> 8), (uint8_t)(seq >> 16),
                   (uint8_t)(seq >> 24)};
  memcpy(p, le, 4);
  return ab;
}

/* The payload of a kind (buffers: message seq, full pattern when seq is
 * 0); NULL on failure. */
static inline iso_handle payload_new(iso_isolate *iso, const payload_types *t,
                                     char kind, size_t buffer_size,
                                     uint32_t seq) {
  switch (kind) {
  case 'a': return payload_user(iso, t);
  case 'b': return payload_users(iso, t);
  case 'c':
  case 'd': return payload_buffer(iso, buffer_size, seq, seq == 0);
  case 'e': return payload_ring(iso, t);
  default: return NULL;
  }
}

/* ---- checks: true when v has the payload's exact content ---- */

static inline bool payload_string_is(iso_value s, const char *want) {
  size_t n = strlen(want);
  return iso_kind_of(s) == ISO_KIND_STRING && iso_string_length(s) == n &&
         memcmp(iso_string_data(s), want, n) == 0;
}

/* Reads array elements through handles of a scope of its own. */
static inline bool payload_check_user(iso_isolate *iso,
                                      const payload_types *t, iso_value r) {
  if (iso_kind_of(r) != ISO_KIND_RECORD || iso_type_of(r) != t->user ||
      iso_record_slot_count(r) != USER_SLOTS)
    return false;
  iso_value id = iso_record_slot(r, USER_ID);
  if (!iso_is_smi(id) || iso_smi_value(id) != PAYLOAD_USER_ID) return false;
  if (!payload_string_is(iso_record_slot(r, USER_NAME), "user-1234"))
    return false;
  if (iso_number_value(iso_record_slot(r, USER_SCORE)) != 1.5) return false;
  if (iso_record_slot(r, USER_ACTIVE) != ISO_TRUE) return false;
  iso_value tags = iso_record_slot(r, USER_TAGS);
  if (iso_kind_of(tags) != ISO_KIND_ARRAY || iso_array_length(tags) != 3)
    return false;
  static const char *const tag_text[3] = {"a", "b", "c"};
  bool ok = true;
  iso_scope scope;
  iso_scope_open(iso, &scope);
  for (size_t i = 0; i < 3 && ok; i++) {
    /* iso_array_get makes a handle, never a heap object: tags stays
     * valid. */
    iso_handle e = iso_array_get(iso, tags, i);
    ok = e != NULL && payload_string_is(iso_get(e), tag_text[i]);
  }
  iso_scope_close(&scope);
  return ok;
}

static inline bool payload_check_users(iso_isolate *iso,
                                       const payload_types *t, iso_value a) {
  if (iso_kind_of(a) != ISO_KIND_ARRAY ||
      iso_array_length(a) != PAYLOAD_USERS)
    return false;
  bool ok = true;
  for (size_t i = 0; i < PAYLOAD_USERS && ok; i++) {
    iso_scope scope;
    iso_scope_open(iso, &scope);
    iso_handle u = iso_array_get(iso, a, i);
    ok = u != NULL && payload_check_user(iso, t, iso_get(u));
    iso_scope_close(&scope);
  }
  return ok;
}

static inline bool payload_check_ring(const payload_types *t,
                                      iso_value head) {
  iso_value v = head;
  for (int i = 0; i < PAYLOAD_RING; i++) {
    if (iso_kind_of(v) != ISO_KIND_RECORD || iso_type_of(v) != t->ring_node)
      return false;
    iso_value value = iso_record_slot(v, RING_VALUE);
    if (!iso_is_smi(value) || iso_smi_value(value) != i) return false;
    v = iso_record_slot(v, RING_NEXT);
  }
  return v == head; /* the cycle closes on the very same node */
}

static inline uint32_t payload_buffer_seq(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline bool payload_check_buffer(iso_value ab, size_t size,
                                        uint32_t seq, bool full) {
  if (iso_kind_of(ab) != ISO_KIND_ARRAY_BUFFER ||
      iso_array_buffer_byte_length(ab) != size)
    return false;
  const uint8_t *p = iso_array_buffer_data(ab);
  if (p == NULL || payload_buffer_seq(p) != seq) return false;
  if (full)
    for (size_t i = 4; i < size; i++)
      if (p[i] != payload_pattern(i)) return false;
  return true;
}

/* The full check of a received or cloned payload. */
static inline bool payload_check(iso_isolate *iso, const payload_types *t,
                                 char kind, iso_value v, size_t buffer_size,
                                 uint32_t seq) {
  switch (kind) {
  case 'a': return payload_check_user(iso, t, v);
  case 'b': return payload_check_users(iso, t, v);
  case 'c':
  case 'd': return payload_check_buffer(v, buffer_size, seq, seq == 0);
  case 'e': return payload_check_ring(t, v);
  default: return false;
  }
}

/* What a receiver checks on every message but the first: the kind, and a
 * buffer's sequence number (which shows none was lost or reordered). */
static inline bool payload_check_cheap(char kind, iso_value v,
                                       size_t buffer_size, uint32_t seq) {
  switch (kind) {
  case 'a':
  case 'e': return iso_kind_of(v) == ISO_KIND_RECORD;
  case 'b': return iso_kind_of(v) == ISO_KIND_ARRAY;
  case 'c':
  case 'd': return payload_check_buffer(v, buffer_size, seq, false);
  default: return false;
  }
}

#endif /* BENCH_PAYLOADS_H */
