/*
 * Checks for the structured clone tests: is one value graph a faithful
 * copy of another?
 *
 * clone_same(iso, a, b) walks both graphs side by side with an explicit
 * stack (so a million-deep list is fine) and requires: the same kinds,
 * equal numbers (doubles bit for bit), equal string contents, equal record
 * types and raw bytes, equal buffer bytes, views with the same type,
 * offset and length, maps with the same entries in the same order, and
 * the same *shape*: an object with identity reached twice in a is the
 * same object reached twice in b, and two distinct objects in a are two
 * distinct objects in b (a bijection), so sharing and cycles are kept.
 * Strings shorter than the format's identity threshold are compared by
 * content only; doubles too.
 *
 * The walk never allocates in the heap (only handles, in scopes), so the
 * addresses it records stay valid while it runs. a and b may belong to two
 * isolates of the calling thread: the handles made in iso's scopes for
 * b's objects are gone before iso can collect.
 */
#ifndef UNIT_CLONE_CHECK_H
#define UNIT_CLONE_CHECK_H

#include <math.h>

#include "helpers.h"

#define CLONE_CHECK_STRING_ID_MIN 64u

/* A map from object address to object address, open addressing. */
typedef struct addr_map {
  uint64_t *keys, *vals;
  size_t cap, count;
} addr_map;

static inline size_t addr_slot(uint64_t k, size_t cap) {
  return (size_t)((k >> 3) * 0x9e3779b97f4a7c15ull >> 17) & (cap - 1);
}

static inline void addr_map_put(addr_map *m, uint64_t k, uint64_t v);

static inline void addr_map_grow(addr_map *m) {
  addr_map n = {0, 0, m->cap ? m->cap * 2 : 1024, 0};
  n.keys = calloc(n.cap, sizeof *n.keys);
  n.vals = calloc(n.cap, sizeof *n.vals);
  if (!n.keys || !n.vals) {
    printf("# out of memory in addr_map\n");
    exit(1);
  }
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i]) addr_map_put(&n, m->keys[i], m->vals[i]);
  free(m->keys);
  free(m->vals);
  *m = n;
}

static inline void addr_map_put(addr_map *m, uint64_t k, uint64_t v) {
  if ((m->count + 1) * 2 > m->cap) addr_map_grow(m);
  size_t i = addr_slot(k, m->cap);
  while (m->keys[i] && m->keys[i] != k) i = (i + 1) & (m->cap - 1);
  if (!m->keys[i]) m->count++;
  m->keys[i] = k;
  m->vals[i] = v;
}

static inline uint64_t addr_map_get(const addr_map *m, uint64_t k) {
  if (!m->cap) return 0;
  size_t i = addr_slot(k, m->cap);
  while (m->keys[i]) {
    if (m->keys[i] == k) return m->vals[i];
    i = (i + 1) & (m->cap - 1);
  }
  return 0;
}

static inline void addr_map_free(addr_map *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

typedef struct clone_pair {
  iso_value a, b;
  char where[48]; /* for the failure message: kind and index */
} clone_pair;

typedef struct clone_walk {
  clone_pair *stack;
  size_t sp, cap;
  addr_map fwd, back;
  size_t objects; /* distinct objects with identity matched */
} clone_walk;

static inline void clone_walk_push(clone_walk *w, iso_value a, iso_value b,
                                   const char *what, size_t i) {
  if (w->sp == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 256;
    w->stack = realloc(w->stack, w->cap * sizeof *w->stack);
    if (!w->stack) {
      printf("# out of memory in clone_walk\n");
      exit(1);
    }
  }
  clone_pair *p = &w->stack[w->sp++];
  p->a = a;
  p->b = b;
  snprintf(p->where, sizeof p->where, "%s %zu", what, i);
}

static inline int clone_mismatch(const clone_pair *p, const char *why) {
  printf("# clone mismatch at %s: %s (kinds %s / %s)\n", p->where, why,
         iso_kind_name(iso_kind_of(p->a)), iso_kind_name(iso_kind_of(p->b)));
  return 0;
}

static inline int clone_has_identity(iso_value v) {
  iso_kind k = iso_kind_of(v);
  if (k == ISO_KIND_DOUBLE) return 0;
  if (k == ISO_KIND_STRING)
    return iso_string_length(v) >= CLONE_CHECK_STRING_ID_MIN;
  return iso_is_ref(v);
}

/* Compares one pair; pushes the children. 1 if they match so far. */
static inline int clone_step(iso_isolate *iso, clone_walk *w,
                             const clone_pair *p) {
  iso_value a = p->a, b = p->b;
  iso_kind ka = iso_kind_of(a), kb = iso_kind_of(b);
  if (ka != kb) return clone_mismatch(p, "kinds differ");
  if (!iso_is_ref(a)) return a == b ? 1 : clone_mismatch(p, "values differ");
  if (clone_has_identity(a)) {
    uint64_t seen = addr_map_get(&w->fwd, a);
    if (seen) return seen == b ? 1 : clone_mismatch(p, "sharing differs");
    if (addr_map_get(&w->back, b))
      return clone_mismatch(p, "two objects became one");
    addr_map_put(&w->fwd, a, b);
    addr_map_put(&w->back, b, a);
    w->objects++;
  }
  switch (ka) {
    case ISO_KIND_DOUBLE: {
      double x = iso_number_value(a), y = iso_number_value(b);
      return memcmp(&x, &y, sizeof x) == 0
                 ? 1
                 : clone_mismatch(p, "double bits differ");
    }
    case ISO_KIND_STRING: {
      size_t n = iso_string_length(a);
      if (n != iso_string_length(b)) return clone_mismatch(p, "lengths");
      if (memcmp(iso_string_data(a), iso_string_data(b), n) != 0)
        return clone_mismatch(p, "string bytes");
      if (iso_string_hash(a) != iso_string_hash(b))
        return clone_mismatch(p, "string hash");
      return 1;
    }
    case ISO_KIND_ARRAY: {
      size_t n = iso_array_length(a);
      if (n != iso_array_length(b)) return clone_mismatch(p, "array lengths");
      for (size_t i = n; i-- > 0;) {
        iso_scope s;
        iso_scope_open(iso, &s);
        iso_value x = iso_get(iso_array_get(iso, a, i));
        iso_value y = iso_get(iso_array_get(iso, b, i));
        iso_scope_close(&s);
        clone_walk_push(w, x, y, "element", i);
      }
      return 1;
    }
    case ISO_KIND_MAP: {
      if (iso_map_size(a) != iso_map_size(b))
        return clone_mismatch(p, "map sizes");
      size_t ca = 0, cb = 0, i = 0;
      for (;;) {
        iso_scope s;
        iso_scope_open(iso, &s);
        iso_handle ka_, va, kb_, vb;
        bool more_a = iso_map_next(iso, a, &ca, &ka_, &va);
        bool more_b = iso_map_next(iso, b, &cb, &kb_, &vb);
        iso_value xk = 0, xv = 0, yk = 0, yv = 0;
        if (more_a && more_b) {
          xk = iso_get(ka_);
          xv = iso_get(va);
          yk = iso_get(kb_);
          yv = iso_get(vb);
        }
        iso_scope_close(&s);
        if (more_a != more_b) return clone_mismatch(p, "map entry counts");
        if (!more_a) break;
        /* Keys first: a key's identity is fixed before its value's. */
        clone_walk_push(w, xv, yv, "map value", i);
        clone_walk_push(w, xk, yk, "map key", i);
        i++;
      }
      return 1;
    }
    case ISO_KIND_RECORD: {
      if (iso_type_of(a) != iso_type_of(b)) return clone_mismatch(p, "types");
      size_t raw = iso_record_raw_size(a);
      if (raw != iso_record_raw_size(b)) return clone_mismatch(p, "raw size");
      if (raw && memcmp(iso_record_raw(a), iso_record_raw(b), raw) != 0)
        return clone_mismatch(p, "raw bytes");
      uint32_t n = iso_record_slot_count(a);
      for (uint32_t i = n; i-- > 0;)
        clone_walk_push(w, iso_record_slot(a, i), iso_record_slot(b, i), "slot",
                        i);
      return 1;
    }
    case ISO_KIND_ARRAY_BUFFER: {
      size_t n = iso_array_buffer_byte_length(a);
      if (n != iso_array_buffer_byte_length(b))
        return clone_mismatch(p, "buffer lengths");
      if (iso_array_buffer_is_detached(a) != iso_array_buffer_is_detached(b))
        return clone_mismatch(p, "detached state");
      if (n &&
          memcmp(iso_array_buffer_data(a), iso_array_buffer_data(b), n) != 0)
        return clone_mismatch(p, "buffer bytes");
      return 1;
    }
    case ISO_KIND_TYPED_ARRAY: {
      if (iso_typed_array_type_of(a) != iso_typed_array_type_of(b) ||
          iso_typed_array_byte_offset(a) != iso_typed_array_byte_offset(b) ||
          iso_typed_array_length(a) != iso_typed_array_length(b))
        return clone_mismatch(p, "view type, offset or length");
      iso_scope s;
      iso_scope_open(iso, &s);
      iso_value x = iso_get(iso_typed_array_buffer(iso, a));
      iso_value y = iso_get(iso_typed_array_buffer(iso, b));
      iso_scope_close(&s);
      clone_walk_push(w, x, y, "view buffer", 0);
      return 1;
    }
    case ISO_KIND_SHARED_ARRAY_BUFFER:
      if (iso_shared_array_buffer_byte_length(a) !=
              iso_shared_array_buffer_byte_length(b) ||
          iso_shared_array_buffer_data(a) != iso_shared_array_buffer_data(b))
        return clone_mismatch(p, "shared bytes are not the same memory");
      return 1;
    case ISO_KIND_EXTERNAL:
      return iso_external_value(a) == iso_external_value(b)
                 ? 1
                 : clone_mismatch(p, "external pointers");
    case ISO_KIND_PORT:
      return 1;
    default:
      return clone_mismatch(p, "unexpected kind");
  }
}

/* Is b a faithful clone of a? *objects (if not NULL) receives the number
 * of distinct objects with identity. */
static inline int clone_same_n(iso_isolate *iso, iso_value a, iso_value b,
                               size_t *objects) {
  clone_walk w;
  memset(&w, 0, sizeof w);
  clone_walk_push(&w, a, b, "root", 0);
  int ok = 1;
  while (ok && w.sp > 0) {
    clone_pair p = w.stack[--w.sp];
    ok = clone_step(iso, &w, &p);
  }
  if (objects) *objects = w.objects;
  free(w.stack);
  addr_map_free(&w.fwd);
  addr_map_free(&w.back);
  return ok;
}

static inline int clone_same(iso_isolate *iso, iso_value a, iso_value b) {
  return clone_same_n(iso, a, b, NULL);
}

/* Serializes v (no transfer, no delegate), then deserializes the message
 * in dst: the message path, as ports use it. NULL on failure. */
static inline iso_handle clone_via_message(iso_isolate *src, iso_isolate *dst,
                                           iso_value v) {
  iso_message *m = NULL;
  if (iso_serialize(src, v, NULL, 0, NULL, &m) != ISO_OK) return NULL;
  iso_handle h = iso_deserialize(dst, m, NULL);
  if (h == NULL) iso_message_free(m);
  return h;
}

/* Full collections of both isolates, then both heaps verified. */
static inline void clone_gc_both(iso_isolate *a, iso_isolate *b) {
  CHECK_OK(iso_gc(a, ISO_GC_FULL));
  CHECK_OK(iso_gc(b, ISO_GC_FULL));
  CHECK_OK(iso_heap_verify(a));
  CHECK_OK(iso_heap_verify(b));
}

#endif /* UNIT_CLONE_CHECK_H */
