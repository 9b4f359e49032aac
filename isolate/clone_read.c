/*
 * The deserializer: bytes of docs/clone-format.md back to a value graph.
 *
 * Its input is hostile (Note [Clone format] in clone_write.c says what
 * the bytes mean). Every read is checked against the end of the message,
 * every varint for length and canonical form, every count against what
 * the rest of the message can hold, every back-reference against the ids
 * given so far, every type id against the runtime's registry (same slot
 * count and raw size), every table index against the message's tables
 * (the copy table's included: a message from bytes has none).
 *
 * Bounded work. A container's children each take at least one byte, so
 * the deserializer keeps the number of children declared and not yet
 * read (pending) and refuses a header that would make it exceed the bytes
 * left. Every allocation, frame and id is therefore paid for by bytes of
 * the message: a short message can never make the reader allocate much.
 *
 * Rooting. Everything is built inside one handle scope. Each object with
 * an id lives in a handle (the ids table holds handle pointers, since a
 * back-reference may name any of them after the collector moved it), and
 * each object is stored into its parent as soon as it exists, so a
 * container is complete except for its not-yet-read children. On error
 * the scope is closed and the half-built graph is garbage: no reference
 * to it ever left the scope. Table entries that it borrowed from the
 * message (moved and copied stores, ports) are taken back first, so the
 * message is intact.
 *
 * The walk is iterative over an explicit stack (rstack), like the
 * serializer's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clone.h"
#include "port.h"

typedef struct rstate {
  iso_isolate *iso;
  isolate_clone_scratch *s;
  iso_message *msg;
  const iso_clone_delegate *delegate;
  const char *fn;
  const uint8_t *base, *pos, *end;
  uint64_t pending; /* children declared and not yet started */
  size_t sp;        /* frames in s->rstack */
  size_t nids, declared_ids;
  iso_handle root;
  uint64_t last_type; /* the record type looked up last (0: none) */
  const gc_type *last_desc;
  bool old; /* pretenure */
} rstate;

/* ---- errors ---- */

static bool bad(const rstate *st, const uint8_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool bad(const rstate *st, const uint8_t *at, const char *fmt, ...) {
  char reason[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  isolate_fail(ISO_ERR_DATA_CLONE, "%s: malformed message at byte %zu: %s",
               st->fn, (size_t)(at - st->base), reason);
  return false;
}

static bool oom(const rstate *st) {
  isolate_fail(ISO_ERR_OUT_OF_MEMORY, "%s: out of memory", st->fn);
  return false;
}

/* ---- primitives ---- */

static inline size_t left(const rstate *st) {
  return (size_t)(st->end - st->pos);
}

/* Can n more children (and the ones already declared) still come, at a
 * byte each at least? pending and n are far below 2^63: no overflow. */
static inline bool fits(const rstate *st, uint64_t n) {
  return st->pending + n <= left(st);
}

static bool varint_slow(rstate *st, uint64_t *out) {
  const uint8_t *p = st->pos;
  uint64_t x = 0;
  for (int k = 0; k < 10; k++) {
    if (p == st->end) return bad(st, st->pos, "truncated varint");
    uint8_t b = *p++;
    if (k == 9 && b > 1) return bad(st, st->pos, "varint beyond 64 bits");
    x |= (uint64_t)(b & 0x7f) << (7 * k);
    if ((b & 0x80) == 0) {
      if (b == 0 && k > 0)
        return bad(st, st->pos, "varint not in its shortest form");
      st->pos = p;
      *out = x;
      return true;
    }
  }
  return bad(st, st->pos, "varint beyond 64 bits"); /* not reached */
}

static inline bool varint(rstate *st, uint64_t *out) {
  if (ISO_LIKELY(st->pos < st->end && *st->pos < 0x80)) {
    *out = *st->pos++;
    return true;
  }
  return varint_slow(st, out);
}

/* 0 when s[0..n) is valid UTF-8 (the rules iso_string_new applies), else
 * 1 + the offset of the first bad sequence. */
static size_t utf8_fault(const uint8_t *s, size_t n) {
  size_t at = 0;
  return isolate_utf8_check(s, n, &at) ? at + 1 : 0;
}

/* Is s[0..n) valid UTF-8? Inline for the common case of short ASCII. */
static inline bool utf8_ok(const uint8_t *s, size_t n) {
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    acc |= w;
  }
  for (; i < n; i++) acc |= s[i];
  return (acc & 0x8080808080808080ull) == 0 || utf8_fault(s, n) == 0;
}


/* ---- building ---- */

/* A new object of type and bytes with its header written. Its body is
 * the caller's to initialise completely before the next allocation (the
 * heap must stay iterable). Young objects are bump-allocated here, as
 * gc_alloc does, without its generic initialisation: the callers write
 * every word once. Pretenured ones come from gc_alloc_old, initialised,
 * and are overwritten. 0 (error set) on failure; may run a GC. */
static inline iso_value new_object(rstate *st, uint32_t type, size_t bytes) {
  if (ISO_UNLIKELY(st->old)) return gc_alloc_old(st->iso, type, bytes);
  iso_inl_isolate *t = ISO_INL(st->iso);
  char *top = t->alloc_top;
  void *mem;
  if (ISO_LIKELY(top != NULL && bytes < GC_LARGE_OBJECT_SIZE &&
                 (size_t)(t->alloc_limit - top) >= bytes)) {
    t->alloc_top = top + bytes;
    mem = top;
  } else {
    mem = gc_alloc_young_slow(st->iso, bytes);
    if (mem == NULL) return 0;
  }
  *(uint64_t *)mem = gc_hdr_make(type, bytes / 8);
  return (iso_value)(uintptr_t)mem;
}

/* A string of the n valid UTF-8 bytes at src. */
static inline iso_value new_string(rstate *st, const uint8_t *src, size_t n) {
  size_t bytes = (8 + sizeof(gc_string_raw) + n + 1 + 7) & ~(size_t)7;
  iso_value v = new_object(st, GC_TYPE_STRING, bytes);
  if (v == 0) return 0;
  uint64_t *o = gc_obj(v);
  o[bytes / 8 - 1] = 0; /* the NUL and the padding */
  gc_string_raw *raw = (gc_string_raw *)(void *)(o + 1);
  raw->length = n;
  raw->hash = isolate_fnv1a(src, n);
  raw->reserved = 0;
  memcpy(raw + 1, src, n);
  return v;
}

/* Sets words [from, to) of a new object to undefined. */
static inline void fill_undefined(iso_value v, size_t from, size_t to) {
  uint64_t *o = gc_obj(v);
  for (size_t i = from; i < to; i++) o[i] = ISO_UNDEFINED;
}

/* A store into an object made during this clone: young hosts need no
 * barrier (gc/object.h), old ones (pretenured, large) go through it. */
static inline void store(iso_isolate *iso, iso_value host, size_t i,
                         iso_value v) {
  if (gc_page_of(gc_obj(host))->flags & GC_PAGE_YOUNG)
    gc_slot_init(host, i, v);
  else
    gc_write(iso, host, i, v);
}

/* Gives the next id to the object in h (a handle of this clone's scope). */
static inline bool id_handle(rstate *st, iso_handle h, const uint8_t *at) {
  isolate_clone_scratch *s = st->s;
  if (ISO_UNLIKELY(st->nids >= st->declared_ids))
    return bad(st, at, "more objects than the header declares (%zu)",
               st->declared_ids);
  if (ISO_UNLIKELY(st->nids == s->ids_cap) &&
      !isolate_clone_grow((void **)&s->ids, &s->ids_cap, st->nids + 1,
                          sizeof *s->ids))
    return oom(st);
  s->ids[st->nids++] = h;
  return true;
}

static inline bool id_value(rstate *st, iso_value v, const uint8_t *at) {
  iso_handle h = iso_handle_new(st->iso, v);
  return h != NULL && id_handle(st, h, at);
}

/* Where the children of an array or record frame go, from slot *base of
 * the result: the record itself, or an array's elements (its store, or
 * the array when they are inline: isolate/array.c). Re-read after
 * anything that may have collected. */
static inline iso_value frame_host(const isolate_clone_rframe *f,
                                   size_t *base) {
  iso_value obj = iso_get(f->obj);
  if (f->kind == GC_TYPE_ARRAY) return isolate_array_host(obj, base);
  *base = 0;
  return obj;
}

/* Stores v, the value just read, where it belongs: the root, or the next
 * child of the innermost container. */
static inline bool deliver(rstate *st, iso_value v) {
  if (st->sp == 0) {
    iso_handle_set(st->root, v);
    return true;
  }
  isolate_clone_rframe *f = &st->s->rstack[st->sp - 1];
  uint64_t i = f->i++;
  switch (f->kind) {
    case GC_TYPE_ARRAY: {
      size_t base;
      iso_value host = frame_host(f, &base);
      store(st->iso, host, base + i, v);
      return true;
    }
    case GC_TYPE_MAP:
      if ((i & 1) == 0) {
        iso_handle_set(f->key, v);
        return true;
      }
      /* iso_map_set keeps its arguments alive across its allocation. */
      return iso_map_set(st->iso, iso_get(f->obj), iso_get(f->key), v) ==
             ISO_OK;
    default:
      store(st->iso, iso_get(f->obj), i, v);
      return true;
  }
}

/* Declares n more children (n already checked to fit the limits of its
 * kind) and pushes their frame. */
static inline bool push(rstate *st, iso_handle obj, uint32_t kind, uint64_t n,
                        const uint8_t *at) {
  if (!fits(st, n))
    return bad(st, at,
               "%llu children declared, but only %zu bytes left for %llu "
               "children",
               (unsigned long long)n, left(st),
               (unsigned long long)(st->pending + n));
  st->pending += n;
  isolate_clone_scratch *s = st->s;
  if (ISO_UNLIKELY(st->sp == s->rcap) &&
      !isolate_clone_grow((void **)&s->rstack, &s->rcap, st->sp + 1,
                          sizeof *s->rstack))
    return oom(st);
  iso_handle key = NULL;
  if (kind == GC_TYPE_MAP) {
    key = iso_handle_new(st->iso, ISO_UNDEFINED);
    if (key == NULL) return false;
  }
  s->rstack[st->sp++] = (isolate_clone_rframe){obj, key, 0, n, kind};
  return true;
}

/* ---- values ---- */

static bool read_string(rstate *st, const uint8_t *at) {
  uint64_t n;
  if (!varint(st, &n)) return false;
  if (n > left(st))
    return bad(st, at, "a string of %llu bytes, but only %zu left",
               (unsigned long long)n, left(st));
  if (n > CLONE_STRING_MAX)
    return bad(st, at, "a string of %llu bytes (at most 2^30)",
               (unsigned long long)n);
  const uint8_t *src = st->pos;
  size_t fault = utf8_fault(src, (size_t)n);
  if (fault) return bad(st, src + fault - 1, "invalid UTF-8 in a string");
  iso_value v = new_string(st, src, (size_t)n);
  if (v == 0) return false;
  st->pos += n;
  if (n >= CLONE_STRING_ID_MIN && !id_value(st, v, at)) return false;
  return deliver(st, v);
}

/* The number d: a small integer when one can hold it (the invariant of
 * isolate/value.c, whatever the sender wrote), else a new double. 0 on
 * failure. May allocate. */
static inline iso_value make_number(rstate *st, double d) {
  if (d >= -4611686018427387904.0 && d < 4611686018427387904.0) {
    int64_t n = (int64_t)d;
    if ((double)n == d && !(n == 0 && __builtin_signbit(d))) return iso_smi(n);
  }
  iso_value v = new_object(st, GC_TYPE_DOUBLE, 16);
  if (v != 0) memcpy(gc_slots(v), &d, 8);
  return v;
}

static bool read_double(rstate *st, const uint8_t *at) {
  if (left(st) < 8) return bad(st, at, "truncated double");
  double d;
  memcpy(&d, st->pos, 8);
  st->pos += 8;
  iso_value v = make_number(st, d);
  return v != 0 && deliver(st, v);
}

static bool read_array(rstate *st, const uint8_t *at) {
  uint64_t n;
  if (!varint(st, &n)) return false;
  if (n > CLONE_ELEMENTS_MAX)
    return bad(st, at, "an array of %llu elements (at most 2^28)",
               (unsigned long long)n);
  if (!fits(st, n))
    return bad(st, at, "an array of %llu elements, but only %zu bytes left",
               (unsigned long long)n, left(st));
  /* Up to GC_ARRAY_INLINE_MAX elements live in the array itself, as
   * iso_array_new makes them (isolate/array.c). */
  bool inl = n <= GC_ARRAY_INLINE_MAX;
  size_t words = GC_ARRAY_SLOTS + (inl ? (size_t)n : 0);
  iso_value a = new_object(st, GC_TYPE_ARRAY, 8 + 8 * words);
  if (a == 0) return false;
  fill_undefined(a, 1, 1 + words);
  /* A valid array of undefined elements, or empty until they exist. */
  gc_slot_init(a, 1, iso_smi(inl ? (int64_t)n : 0));
  iso_handle h = iso_handle_new(st->iso, a);
  if (h == NULL || !id_handle(st, h, at)) return false;
  if (n != 0 && !inl) {
    iso_value e = new_object(st, GC_TYPE_FIXED_ARRAY, 8 + 8 * (size_t)n);
    if (e == 0) return false;
    fill_undefined(e, 1, 1 + (size_t)n);
    a = iso_get(h);
    store(st->iso, a, 0, e);
    store(st->iso, a, 1, iso_smi((int64_t)n));
  }
  if (!deliver(st, iso_get(h))) return false;
  return n == 0 || push(st, h, GC_TYPE_ARRAY, n, at);
}

static bool read_map(rstate *st, const uint8_t *at) {
  uint64_t n;
  if (!varint(st, &n)) return false;
  if (n > CLONE_ELEMENTS_MAX)
    return bad(st, at, "a map of %llu entries (at most 2^28)",
               (unsigned long long)n);
  iso_handle h = iso_map_new(st->iso);
  if (h == NULL || !id_handle(st, h, at)) return false;
  if (!deliver(st, iso_get(h))) return false;
  return n == 0 || push(st, h, GC_TYPE_MAP, 2 * n, at);
}

static bool read_record(rstate *st, const uint8_t *at) {
  uint64_t type, slots, raw;
  if (!varint(st, &type) || !varint(st, &slots) || !varint(st, &raw))
    return false;
  /* Records of one type tend to come in runs: remember the last one. */
  const gc_type *ty = st->last_desc;
  if (type != st->last_type) {
    ty = type >= GC_TYPE_FIRST_USER && type < GC_MAX_TYPES
             ? isolate_type(st->iso->rt, (uint32_t)type)
             : NULL;
    if (ty != NULL && ty->kind == ISO_KIND_RECORD) {
      st->last_type = type;
      st->last_desc = ty;
    }
  }
  if (ty == NULL || ty->kind != ISO_KIND_RECORD)
    return bad(st, at, "type id %llu is not a registered record type",
               (unsigned long long)type);
  if (ty->slot_count != slots || ty->raw_size != raw)
    return bad(st, at,
               "type %.64s has %u slots and %u raw bytes, the message "
               "says %llu and %llu",
               ty->name, ty->slot_count, ty->raw_size,
               (unsigned long long)slots, (unsigned long long)raw);
  if (!fits(st, raw + slots))
    return bad(st, at,
               "%llu raw bytes and %llu slots, but only %zu bytes "
               "left",
               (unsigned long long)raw, (unsigned long long)slots, left(st));
  size_t bytes = 8 + 8 * (size_t)slots + (((size_t)raw + 7) & ~(size_t)7);
  iso_value r = new_object(st, (uint32_t)type, bytes);
  if (r == 0) return false;
  fill_undefined(r, 1, 1 + (size_t)slots);
  if (raw) {
    gc_obj(r)[bytes / 8 - 1] = 0; /* padding */
    memcpy((char *)gc_slots(r) + 8 * (size_t)slots, st->pos, raw);
  }
  st->pos += raw;
  iso_handle h = iso_handle_new(st->iso, r);
  if (h == NULL || !id_handle(st, h, at)) return false;
  if (!deliver(st, r)) return false;
  return slots == 0 || push(st, h, (uint32_t)type, slots, at);
}

/* Lends the store of a copy or transfer table entry to a new buffer. */
static bool lend_store(rstate *st, isolate_clone_moved *mv, const char *what,
                       uint64_t n, uint32_t count, const uint8_t *at,
                       iso_handle *h) {
  if (mv == NULL)
    return bad(st, at, "%s buffer %llu of %u", what, (unsigned long long)n,
               count);
  if (mv->state != CLONE_ENTRY_OWNED)
    return bad(st, at, "%s buffer %llu used twice", what,
               (unsigned long long)n);
  *h = isolate_array_buffer_adopt(st->iso, &mv->store);
  if (*h == NULL) return false;
  mv->state = CLONE_ENTRY_LENT;
  mv->lent = *h;
  return true;
}

/* A buffer: a copy (inline or out of line), a moved store, a shared
 * store, or a back-reference to a buffer. *out receives it (numbered,
 * rooted by its id handle). */
static bool read_buffer(rstate *st, uint8_t tag, const uint8_t *at,
                        iso_value *out) {
  iso_message *msg = st->msg;
  uint64_t n;
  iso_handle h = NULL; /* every case sets it or returns */
  if (!varint(st, &n)) return false;
  switch (tag) {
    case CLONE_TAG_BUFFER:
      if (n > left(st))
        return bad(st, at, "an ArrayBuffer of %llu bytes, but only %zu left",
                   (unsigned long long)n, left(st));
      {
        /* malloc, not calloc: every byte is written at once. The heap frees
         * a store without callback that is not external with free(). */
        gc_extern store = {0};
        if (n != 0) {
          store.data = malloc((size_t)n);
          if (store.data == NULL) {
            isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for an ArrayBuffer of %llu bytes",
                         st->fn, (unsigned long long)n);
            return false;
          }
          memcpy(store.data, st->pos, (size_t)n);
          store.length = (size_t)n;
        }
        h = isolate_array_buffer_adopt(st->iso, &store);
        if (h == NULL) {
          free(store.data);
          return false;
        }
        st->pos += n;
        break;
      }
    case CLONE_TAG_TRANSFER:
      if (!lend_store(st, n < msg->nmoved ? &msg->moved[n] : NULL,
                      "transferred", n, msg->nmoved, at, &h))
        return false;
      break;
    case CLONE_TAG_COPY:
      if (!lend_store(st, n < msg->ncopies ? &msg->copies[n] : NULL, "copied",
                      n, msg->ncopies, at, &h))
        return false;
      break;
    case CLONE_TAG_SHARED: {
      if (n >= msg->nshared)
        return bad(st, at, "shared buffer %llu of %u", (unsigned long long)n,
                   msg->nshared);
      isolate_shared_store *s = msg->shared[n];
      isolate_shared_store_retain(s); /* the new object's reference */
      h = isolate_shared_array_buffer_wrap(st->iso, s);
      if (h == NULL) {
        isolate_shared_store_release(s);
        return false;
      }
      break;
    }
    default: /* CLONE_TAG_BACKREF */
      if (n >= st->nids)
        return bad(st, at, "back-reference to object %llu of %zu",
                   (unsigned long long)n, st->nids);
      *out = iso_get(st->s->ids[n]);
      if (!gc_is_kind(*out, GC_TYPE_ARRAY_BUFFER) &&
          !gc_is_kind(*out, GC_TYPE_SHARED_ARRAY_BUFFER))
        return bad(st, at, "a view over object %llu, a %s",
                   (unsigned long long)n, iso_kind_name(iso_kind_of(*out)));
      return true;
  }
  if (!id_handle(st, h, at)) return false;
  *out = iso_get(h);
  return true;
}

static bool read_view(rstate *st, const uint8_t *at) {
  uint64_t type, offset, length;
  if (!varint(st, &type) || !varint(st, &offset) || !varint(st, &length))
    return false;
  size_t es =
      type <= 0xff ? isolate_typed_array_element_size((uint32_t)type) : 0;
  if (es == 0)
    return bad(st, at, "%llu is not a view type", (unsigned long long)type);
  const uint8_t *bat = st->pos;
  if (bat == st->end) return bad(st, bat, "truncated view: no buffer");
  uint8_t tag = *st->pos++;
  if (tag != CLONE_TAG_BUFFER && tag != CLONE_TAG_TRANSFER &&
      tag != CLONE_TAG_COPY && tag != CLONE_TAG_SHARED &&
      tag != CLONE_TAG_BACKREF)
    return bad(st, bat, "a view's buffer has tag 0x%02x", tag);
  iso_value buf;
  if (!read_buffer(st, tag, bat, &buf)) return false;
  uint64_t blen = isolate_buffer_length(buf);
  if (offset % es != 0)
    return bad(st, at, "view offset %llu is not a multiple of %zu",
               (unsigned long long)offset, es);
  if (offset > blen || length > (blen - offset) / es)
    return bad(st, at,
               "a view of %llu elements of %zu bytes at offset %llu does "
               "not fit its buffer of %llu bytes",
               (unsigned long long)length, es, (unsigned long long)offset,
               (unsigned long long)blen);
  iso_handle h = isolate_typed_array_make(st->iso, (uint32_t)type, buf, offset,
                                          length, st->old);
  if (h == NULL || !id_handle(st, h, at)) return false;
  return deliver(st, iso_get(h));
}

static bool read_port(rstate *st, const uint8_t *at) {
  iso_message *msg = st->msg;
  uint64_t n;
  if (!varint(st, &n)) return false;
  if (n >= msg->nports)
    return bad(st, at, "port %llu of %u", (unsigned long long)n, msg->nports);
  isolate_clone_port_entry *pe = &msg->ports[n];
  if (pe->state != CLONE_ENTRY_OWNED || pe->port == NULL)
    return bad(st, at, "port %llu used twice", (unsigned long long)n);
  iso_handle h = iso_port_to_value(st->iso, pe->port);
  if (h == NULL) return false;
  pe->state = CLONE_ENTRY_LENT;
  pe->lent = h;
  if (!id_handle(st, h, at)) return false;
  return deliver(st, iso_get(h));
}

static bool read_host(rstate *st, const uint8_t *at) {
  if (left(st) < 4) return bad(st, at, "truncated host object length");
  const uint8_t *p = st->pos;
  uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
               (uint32_t)p[3] << 24;
  st->pos += 4;
  if (n > left(st))
    return bad(st, at, "a host object of %u bytes, but only %zu left", n,
               left(st));
  const iso_clone_delegate *d = st->delegate;
  if (d == NULL || d->read_host == NULL)
    return bad(st, at, "a host object, but no delegate reads them");
  iso_clone_reader r = {st->pos, st->pos + n, false};
  st->pos += n;
  iso_clear_error();
  iso_handle h = d->read_host(d->ctx, st->iso, &r);
  if (h == NULL || r.overrun) {
    char why[240];
    snprintf(why, sizeof why, "%s", iso_last_error());
    return bad(st, at, "the delegate's read_host failed%s%s",
               why[0] ? ": " : "", why);
  }
  if (!id_value(st, iso_get(h), at)) return false;
  return deliver(st, iso_get(h));
}

static bool read_value(rstate *st) {
  const uint8_t *at = st->pos;
  st->pending--;
  if (ISO_UNLIKELY(at == st->end))
    return bad(st, at, "truncated: a value was expected");
  uint8_t tag = *st->pos++;
  uint64_t n;
  iso_value v;
  switch (tag) {
    case CLONE_TAG_UNDEFINED:
      return deliver(st, ISO_UNDEFINED);
    case CLONE_TAG_NULL:
      return deliver(st, ISO_NULL);
    case CLONE_TAG_FALSE:
      return deliver(st, ISO_FALSE);
    case CLONE_TAG_TRUE:
      return deliver(st, ISO_TRUE);
    case CLONE_TAG_INT: {
      if (!varint(st, &n)) return false;
      int64_t x = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
      if (x < ISO_SMI_MIN || x > ISO_SMI_MAX)
        return bad(st, at, "integer %lld is out of the small integer range",
                   (long long)x);
      return deliver(st, iso_smi(x));
    }
    case CLONE_TAG_DOUBLE:
      return read_double(st, at);
    case CLONE_TAG_STRING:
      return read_string(st, at);
    case CLONE_TAG_ARRAY:
      return read_array(st, at);
    case CLONE_TAG_MAP:
      return read_map(st, at);
    case CLONE_TAG_RECORD:
      return read_record(st, at);
    case CLONE_TAG_BUFFER:
    case CLONE_TAG_TRANSFER:
    case CLONE_TAG_COPY:
    case CLONE_TAG_SHARED:
      return read_buffer(st, tag, at, &v) && deliver(st, v);
    case CLONE_TAG_VIEW:
      return read_view(st, at);
    case CLONE_TAG_PORT:
      return read_port(st, at);
    case CLONE_TAG_HOST:
      return read_host(st, at);
    case CLONE_TAG_BACKREF:
      if (!varint(st, &n)) return false;
      if (n >= st->nids)
        return bad(st, at, "back-reference to object %llu of %zu",
                   (unsigned long long)n, st->nids);
      return deliver(st, iso_get(st->s->ids[n]));
    default:
      return bad(st, at, "unknown tag 0x%02x", tag);
  }
}

static bool read_all(rstate *st) {
  if (!read_value(st)) return false;
  isolate_clone_scratch *s = st->s;
  iso_isolate *iso = st->iso;
  while (st->sp > 0) {
    size_t top = st->sp - 1;
    isolate_clone_rframe *f = &s->rstack[top];
    if (f->i == f->n) {
      st->sp--;
      continue;
    }
    if (f->kind == GC_TYPE_MAP) {
      if (!read_value(st)) return false;
      continue;
    }
    /* An array or a record: read its children in a row, the common
     * leaves inline, leaving the frame only to descend. */
    size_t base;
    iso_value host = frame_host(f, &base);
    bool young = (gc_page_of(gc_obj(host))->flags & GC_PAGE_YOUNG) != 0;
    uint64_t i = f->i, n = f->n;
    while (i < n) {
      const uint8_t *p = st->pos;
      iso_value v;
      if (ISO_UNLIKELY(p == st->end)) goto general; /* reports it */
      switch (*p) {
        case CLONE_TAG_UNDEFINED:
          v = ISO_UNDEFINED;
          goto leaf1;
        case CLONE_TAG_NULL:
          v = ISO_NULL;
          goto leaf1;
        case CLONE_TAG_FALSE:
          v = ISO_FALSE;
          goto leaf1;
        case CLONE_TAG_TRUE:
          v = ISO_TRUE;
          goto leaf1;
        case CLONE_TAG_INT: {
          uint64_t z;
          st->pos = p + 1;
          if (!varint(st, &z)) return false;
          int64_t x = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
          if (x < ISO_SMI_MIN || x > ISO_SMI_MAX) {
            st->pos = p; /* the general path reports it */
            goto general;
          }
          v = iso_smi(x);
          goto store;
        }
        case CLONE_TAG_DOUBLE: {
          double d;
          if (st->end - p < 9) goto general;
          memcpy(&d, p + 1, 8);
          st->pos = p + 9;
          v = make_number(st, d);
          if (v == 0) return false;
          if (iso_is_ref(v)) { /* allocated: the host may have moved */
            host = frame_host(f, &base);
            young = (gc_page_of(gc_obj(host))->flags & GC_PAGE_YOUNG) != 0;
          }
          goto store;
        }
        case CLONE_TAG_STRING: {
          size_t len;
          if (st->end - p < 2 || (len = p[1]) >= CLONE_STRING_ID_MIN ||
              (size_t)(st->end - p - 2) < len || !utf8_ok(p + 2, len))
            goto general;
          v = new_string(st, p + 2, len);
          if (v == 0) return false;
          st->pos = p + 2 + len;
          host = frame_host(f, &base); /* the allocation may have moved it */
          young = (gc_page_of(gc_obj(host))->flags & GC_PAGE_YOUNG) != 0;
          goto store;
        }
        default:
          goto general;
      }
    leaf1:
      st->pos = p + 1;
    store:
      st->pending--;
      if (young)
        gc_slot_init(host, base + i, v);
      else
        gc_write(iso, host, base + i, v);
      i++;
      continue;
    general:
      f->i = i;
      if (!read_value(st)) return false;
      if (st->sp != top + 1) goto next; /* it pushed: descend */
      f = &s->rstack[top];
      i = f->i;
      host = frame_host(f, &base);
      young = (gc_page_of(gc_obj(host))->flags & GC_PAGE_YOUNG) != 0;
    }
    f->i = i;
  next:;
  }
  return true;
}

/* ---- lending and taking back ---- */

/* Detaches the buffers that borrowed stores of a table, giving the
 * stores back to it. */
static void take_back_stores(rstate *st, isolate_clone_moved *t, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    isolate_clone_moved *mv = &t[i];
    if (mv->state != CLONE_ENTRY_LENT) continue;
    gc_extern *e = isolate_extern_of(iso_get(mv->lent));
    gc_extern back;
    gc_extern_steal(st->iso, e, &back);
    mv->store = back;
    mv->state = CLONE_ENTRY_OWNED;
    mv->lent = NULL;
  }
}

static void give_away_stores(isolate_clone_moved *t, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    if (t[i].state == CLONE_ENTRY_LENT) {
      t[i].state = CLONE_ENTRY_GONE;
      t[i].lent = NULL;
    }
}

static void take_back(rstate *st) {
  iso_message *msg = st->msg;
  take_back_stores(st, msg->moved, msg->nmoved);
  take_back_stores(st, msg->copies, msg->ncopies);
  for (uint32_t i = 0; i < msg->nports; i++) {
    isolate_clone_port_entry *pe = &msg->ports[i];
    if (pe->state != CLONE_ENTRY_LENT) continue;
    iso_port *p = thr_port_take_from_value(st->iso, iso_get(pe->lent));
    /* Should the value refuse (nothing but this clone can touch it, so
     * it cannot), it keeps the port and closes it when it dies. */
    pe->state = p != NULL ? CLONE_ENTRY_OWNED : CLONE_ENTRY_GONE;
    pe->lent = NULL;
  }
}

static void give_away(iso_message *msg) {
  give_away_stores(msg->moved, msg->nmoved);
  give_away_stores(msg->copies, msg->ncopies);
  for (uint32_t i = 0; i < msg->nports; i++)
    if (msg->ports[i].state == CLONE_ENTRY_LENT) {
      msg->ports[i].state = CLONE_ENTRY_GONE;
      msg->ports[i].lent = NULL;
    }
}

iso_handle isolate_clone_deserialize(iso_isolate *iso, isolate_clone_scratch *s,
                                     iso_message *msg,
                                     const iso_clone_delegate *delegate,
                                     const char *fn) {
  rstate st;
  memset(&st, 0, sizeof st);
  st.iso = iso;
  st.s = s;
  st.msg = msg;
  st.delegate = delegate;
  st.fn = fn;
  st.base = st.pos = msg->data;
  st.end = msg->data + msg->size;
  if (delegate != NULL && delegate->struct_size < sizeof(size_t))
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "%s: delegate->struct_size is not set", fn);
  if (msg->size < 10) {
    bad(&st, st.end, "truncated header (%zu bytes)", msg->size);
    return NULL;
  }
  const uint8_t *p = msg->data;
  if (p[0] != CLONE_MAGIC0 || p[1] != CLONE_MAGIC1 || p[2] != CLONE_MAGIC2 ||
      p[3] != CLONE_MAGIC3) {
    bad(&st, p, "not a clone message (bad magic)");
    return NULL;
  }
  if (p[4] != CLONE_VERSION) {
    bad(&st, p + 4,
        "format version %u is not supported (this reader "
        "knows version %u)",
        p[4], CLONE_VERSION);
    return NULL;
  }
  if (p[5] != 0) {
    bad(&st, p + 5, "unknown flags 0x%02x", p[5]);
    return NULL;
  }
  st.declared_ids = (size_t)p[6] | (size_t)p[7] << 8 | (size_t)p[8] << 16 |
                    (size_t)p[9] << 24;
  st.pos = p + 10;
  if (st.declared_ids > left(&st)) {
    bad(&st, p + 6, "%zu objects declared in %zu bytes", st.declared_ids,
        left(&st));
    return NULL;
  }
  st.old = msg->size >= CLONE_PRETENURE_BYTES;
  st.pending = 1;

  iso_scope scope;
  iso_scope_open(iso, &scope);
  st.root = iso_handle_new(iso, ISO_UNDEFINED);
  bool ok = st.root != NULL && read_all(&st);
  if (ok && st.pos != st.end)
    ok = bad(&st, st.pos, "%zu bytes after the value", left(&st));
  if (ok && st.nids != st.declared_ids)
    ok = bad(&st, st.end, "%zu objects, but the header declares %zu", st.nids,
             st.declared_ids);
  if (ok) {
    give_away(msg);
    return iso_scope_escape(&scope, st.root);
  }
  /* Keep the error that stopped us: taking entries back may set others. */
  iso_status status = iso_last_status();
  char why[512];
  snprintf(why, sizeof why, "%s", iso_last_error());
  take_back(&st);
  iso_scope_close(&scope);
  isolate_fail(status, "%s", why);
  return NULL;
}
