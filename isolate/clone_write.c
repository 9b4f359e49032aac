/*
 * The serializer: a value graph to the bytes of docs/clone-format.md.
 *
 * Note [Clone format]
 * The format is a preorder walk of the graph. Every value starts with a
 * one-byte tag; numbers and lengths are LEB128 varints, so small values
 * (the common case) cost one byte; strings and buffer bytes are copied
 * with memcpy. Objects with identity (containers, buffers, views, ports,
 * host objects, and strings of CLONE_STRING_ID_MIN bytes or more) are
 * numbered in the order their tags appear, on both sides, without writing
 * the number: a later occurrence of the same object is a back-reference
 * to its number. That keeps sharing and cycles, and costs nothing for
 * objects that occur once. Shorter strings and doubles have no identity
 * (as in JavaScript, where they are primitives), so they are written
 * wherever they occur and the reader roots nothing for them.
 *
 * A container's id is taken when its tag is written, before its
 * children, so a child can refer back to an ancestor (a cycle). A view
 * is the exception: its buffer (a leaf) is written first and numbered
 * first, and the view takes the next number, because the reader cannot
 * make a view before its buffer.
 *
 * What is not bytes travels in the message's tables: the stores of
 * transferred ArrayBuffers, stores of big ArrayBuffers copied out of line
 * (Note [Out-of-line copies] in clone.c), references to shared stores,
 * and transferred ports. The bytes name them by index, so a message from
 * bytes (iso_message_from_bytes), whose tables are empty, can never
 * conjure a store or a port out of a forged index.
 *
 * The walk is iterative over an explicit stack (the scratch's wstack), so
 * a graph of any depth is written without recursion. Nothing here
 * allocates in the heap, so raw values stay valid throughout; the one
 * exception would be a delegate that allocates, which is detected (the
 * collection count moves) and refused.
 *
 * Nothing is detached or taken until the whole graph has been written:
 * the transfer list is checked first, the walk records what it will need,
 * and only then, in commit(), are stores stolen and ports taken, in steps
 * that cannot fail. An error leaves every buffer and port as it was (the
 * out-of-line copies the walk made are freed).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clone.h"
#include "port.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the clone format stores doubles in host order: little-endian only"
#endif

/* Values of the identity table: an object id, or (before the object is
 * reached) a pending transfer of an ArrayBuffer or a port, with its index
 * in the message's table. */
#define VAL_TAG_MASK 0xc0000000u
#define VAL_ID 0u
#define VAL_MOVE 0x40000000u
#define VAL_PORT 0x80000000u
#define VAL_INDEX_MASK 0x3fffffffu

#define TABLE_MIN_CAPACITY 1024u

/* The longest path an error message shows. */
#define PATH_MAX_CHARS 300

typedef struct wstate {
  iso_isolate *iso;
  isolate_clone_scratch *s;
  iso_clone_writer *w;
  const iso_clone_delegate *delegate;
  const gc_type *types;
  const char *fn;
  const iso_value *transfer;
  size_t ntransfer;
  uint32_t next_id;
  uint32_t nmoved, nports;
  size_t sp; /* frames in s->wstack */
} wstate;

/* ---- errors with a path ---- */

/* Appends a printable rendering of a map key. */
static int key_repr(char *out, size_t cap, iso_value k) {
  if (iso_is_smi(k))
    return snprintf(out, cap, "%lld", (long long)iso_smi_value(k));
  switch (k) {
    case ISO_UNDEFINED:
      return snprintf(out, cap, "undefined");
    case ISO_NULL:
      return snprintf(out, cap, "null");
    case ISO_TRUE:
      return snprintf(out, cap, "true");
    case ISO_FALSE:
      return snprintf(out, cap, "false");
    default:
      break;
  }
  if (gc_is_kind(k, GC_TYPE_DOUBLE))
    return snprintf(out, cap, "%g", iso_number_value(k));
  if (gc_is_kind(k, GC_TYPE_STRING)) {
    const char *d = iso_string_data(k);
    size_t n = iso_string_length(k), i, o = 0;
    char tmp[40];
    for (i = 0; i < n && o < 24; i++) {
      unsigned char c = (unsigned char)d[i];
      tmp[o++] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
    }
    tmp[o] = '\0';
    return snprintf(out, cap, "\"%s%s\"", tmp, i < n ? "..." : "");
  }
  return snprintf(out, cap, "<%s>", iso_kind_name(iso_kind_of(k)));
}

/* The part of the path that frame f adds: which child is being written. */
static int frame_step(const wstate *st, const isolate_clone_wframe *f,
                      char *out, size_t cap) {
  uint64_t k = f->i - 1;
  uint32_t t = gc_type_id(f->obj);
  if (t == GC_TYPE_ARRAY)
    return snprintf(out, cap, "[%llu]", (unsigned long long)k);
  if (t == GC_TYPE_MAP) {
    if ((k & 1) == 0)
      return snprintf(out, cap, "[key #%llu]", (unsigned long long)(k / 2));
    char key[64];
    key_repr(key, sizeof key, f->key);
    return snprintf(out, cap, "[%s]", key);
  }
  return snprintf(out, cap, ".%.32s#%llu", st->types[t].name,
                  (unsigned long long)k);
}

/* Writes "value[3].Node#0..." for the value being written now. Deep
 * paths keep their first and last steps. */
static void build_path(const wstate *st, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "value");
  const isolate_clone_wframe *fr = st->s->wstack;
  size_t sp = st->sp, head = sp, tail_from = sp;
  if (sp > 20) {
    head = 8;
    tail_from = sp - 10;
  }
  for (size_t j = 0; j < sp && n < cap; j++) {
    if (j == head && j < tail_from) {
      n += (size_t)snprintf(out + n, cap - n, "...(%zu more)...",
                            tail_from - head);
      j = tail_from - 1;
      continue;
    }
    n += (size_t)frame_step(st, &fr[j], out + n, cap - n);
  }
  if (n >= cap && cap > 4) memcpy(out + cap - 4, "...", 4);
}

static iso_status fail(const wstate *st, iso_status status, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));
static iso_status fail(const wstate *st, iso_status status, const char *fmt,
                       ...) {
  char reason[200], path[PATH_MAX_CHARS];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  build_path(st, path, sizeof path);
  return isolate_fail(status, "%s: %s: %s", st->fn, path, reason);
}

static iso_status oom(const wstate *st) {
  return isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                      "%s: out of memory writing the message", st->fn);
}

/* ---- the identity table ---- */

static inline size_t slot_index(uint64_t key, size_t mask) {
  return (size_t)(((key >> 3) * 0x9e3779b97f4a7c15ull) >> 32) & mask;
}

/* Starts a clone: an empty table, by moving to a new generation. */
static bool table_begin(isolate_clone_scratch *s) {
  if (s->table == NULL) {
    s->table = calloc(TABLE_MIN_CAPACITY, sizeof *s->table);
    if (s->table == NULL) return false;
    s->table_mask = TABLE_MIN_CAPACITY - 1;
    s->gen = 0;
  }
  if (++s->gen == 0) {
    memset(s->table, 0, (s->table_mask + 1) * sizeof *s->table);
    s->gen = 1;
  }
  s->table_count = 0;
  return true;
}

static bool table_grow(isolate_clone_scratch *s) {
  size_t cap = (s->table_mask + 1) * 2;
  isolate_clone_slot *t = calloc(cap, sizeof *t);
  if (t == NULL) return false;
  for (size_t i = 0; i <= s->table_mask; i++) {
    isolate_clone_slot *o = &s->table[i];
    if (o->gen != s->gen) continue;
    size_t j = slot_index(o->key, cap - 1);
    while (t[j].gen != 0) j = (j + 1) & (cap - 1);
    t[j] = (isolate_clone_slot){o->key, o->val, 1};
  }
  free(s->table);
  s->table = t;
  s->table_mask = cap - 1;
  s->gen = 1;
  return true;
}

/* The entry of object v: *found says whether it was there; a new entry
 * has val 0 for the caller to fill. NULL when the table cannot grow. */
static inline isolate_clone_slot *table_find(isolate_clone_scratch *s,
                                             iso_value v, bool *found) {
  if (ISO_UNLIKELY((s->table_count + 1) * 2 > s->table_mask + 1) &&
      !table_grow(s))
    return NULL;
  size_t mask = s->table_mask, j = slot_index(v, mask);
  uint32_t gen = s->gen;
  for (;;) {
    isolate_clone_slot *e = &s->table[j];
    if (e->gen != gen) {
      e->key = v;
      e->val = 0;
      e->gen = gen;
      s->table_count++;
      *found = false;
      return e;
    }
    if (e->key == v) {
      *found = true;
      return e;
    }
    j = (j + 1) & mask;
  }
}

/* Looks v up without inserting. */
static bool table_has(const isolate_clone_scratch *s, iso_value v,
                      uint32_t *val) {
  size_t mask = s->table_mask, j = slot_index(v, mask);
  for (;;) {
    const isolate_clone_slot *e = &s->table[j];
    if (e->gen != s->gen) return false;
    if (e->key == v) {
      *val = e->val;
      return true;
    }
    j = (j + 1) & mask;
  }
}

/* ---- bytes ---- */

static inline uint8_t *put_varint(uint8_t *p, uint64_t x) {
  while (x >= 0x80) {
    *p++ = (uint8_t)(x | 0x80);
    x >>= 7;
  }
  *p++ = (uint8_t)x;
  return p;
}

/* A tag and a varint; the caller reserved 11 bytes. */
static inline void put_tag_varint(iso_clone_writer *w, uint8_t tag,
                                  uint64_t x) {
  uint8_t *p = w->buf + w->len;
  *p++ = tag;
  p = put_varint(p, x);
  w->len = (size_t)(p - w->buf);
}

/* ---- values ---- */

static inline bool push(wstate *st, iso_value obj, uint64_t n) {
  isolate_clone_scratch *s = st->s;
  if (ISO_UNLIKELY(st->sp == s->wcap) &&
      !isolate_clone_grow((void **)&s->wstack, &s->wcap, st->sp + 1,
                          sizeof *s->wstack))
    return false;
  isolate_clone_wframe *f = &s->wstack[st->sp++];
  f->obj = obj;
  f->i = 0;
  f->n = n;
  f->cursor = 0;
  f->key = ISO_UNDEFINED;
  f->pend = ISO_UNDEFINED;
  return true;
}

/* Handles the identity of object v: if it was written before, writes a
 * back-reference and returns 1; otherwise numbers it and returns 0, with
 * *val the pending transfer mark if v is in the transfer list (else 0).
 * -1: out of memory; -2: too many objects. */
static inline int identity(wstate *st, iso_value v, uint32_t *val) {
  bool found;
  isolate_clone_slot *e = table_find(st->s, v, &found);
  if (e == NULL) return -1;
  *val = 0;
  if (found) {
    if ((e->val & VAL_TAG_MASK) == VAL_ID) {
      put_tag_varint(st->w, CLONE_TAG_BACKREF, e->val);
      return 1;
    }
    *val = e->val; /* a transfer, reached for the first time */
  }
  if (st->next_id >= CLONE_OBJECTS_MAX) return -2;
  e->val = st->next_id++;
  return 0;
}

/* Calls the delegate for a host object. Returns ISO_OK, ISO_ERR_TYPE
 * when a record turned out not to be the delegate's (nothing written), or
 * an error already reported. */
static iso_status write_host(wstate *st, iso_value v, bool record) {
  iso_clone_writer *w = st->w;
  const iso_clone_delegate *d = st->delegate;
  size_t mark = w->len;
  /* Tag and a 4-byte length, patched once the delegate is done. */
  w->buf[w->len++] = CLONE_TAG_HOST;
  w->len += 4;
  uint64_t gcs = st->iso->heap.all_pauses.count;
  iso_clear_error();
  iso_status r = d->write_host(d->ctx, st->iso, v, w);
  if (st->iso->heap.all_pauses.count != gcs)
    return fail(st, ISO_ERR_DATA_CLONE,
                "the delegate's write_host ran a collection (it must not "
                "allocate in the heap)");
  if (w->failed) return oom(st);
  if (r == ISO_OK) {
    size_t n = w->len - mark - 5;
    if (n > UINT32_MAX)
      return fail(st, ISO_ERR_DATA_CLONE,
                  "the delegate wrote %zu bytes (at most 4 GiB)", n);
    uint8_t *p = w->buf + mark + 1;
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(n >> (8 * k));
    return ISO_OK;
  }
  if (record && r == ISO_ERR_TYPE && w->len == mark + 5) {
    w->len = mark;
    return ISO_ERR_TYPE;
  }
  return fail(st, ISO_ERR_DATA_CLONE,
              "the delegate's write_host failed "
              "with %s%s%s",
              iso_status_name(r), iso_last_error()[0] ? ": " : "",
              iso_last_error());
}

static iso_status write_value(wstate *st, iso_value v);

/* A big ArrayBuffer's bytes, copied once into a store of the copy table
 * and referred to by index; the caller reserved 11 bytes. */
static iso_status write_copy(wstate *st, const gc_extern *e) {
  isolate_clone_scratch *s = st->s;
  if (s->ncopies >= CLONE_OBJECTS_MAX)
    return fail(st, ISO_ERR_DATA_CLONE, "more than 2^30 objects");
  if (!isolate_clone_grow((void **)&s->copies, &s->copies_cap, s->ncopies + 1,
                          sizeof *s->copies))
    return oom(st);
  iso_free_callback release = NULL;
  void *data = isolate_clone_copy_store_alloc(e->length, &release);
  if (data == NULL)
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                        "%s: out of memory for a copy of an ArrayBuffer of "
                        "%zu bytes",
                        st->fn, e->length);
  isolate_clone_prefault_read(e->data, e->length);
  memcpy(data, e->data, e->length);
  isolate_clone_moved *c = &s->copies[s->ncopies];
  memset(c, 0, sizeof *c);
  c->store.data = data;
  c->store.length = e->length;
  c->store.free_cb = release;
  c->at = st->w->len;
  put_tag_varint(st->w, CLONE_TAG_COPY, s->ncopies++);
  return ISO_OK;
}

/* A view: its header, its buffer (numbered first), then its own number. */
static iso_status write_view(wstate *st, iso_value v) {
  uint32_t val;
  if (table_has(st->s, v, &val)) {
    put_tag_varint(st->w, CLONE_TAG_BACKREF, val);
    return ISO_OK;
  }
  iso_value buf = gc_slot_load(v, 0);
  if (gc_is_kind(buf, GC_TYPE_ARRAY_BUFFER) && isolate_buffer_detached(buf))
    return fail(st, ISO_ERR_DATA_CLONE,
                "a typed_array over a detached ArrayBuffer");
  const gc_typed_array_raw *raw =
      (const gc_typed_array_raw *)(const void *)(gc_slots(v) + 1);
  iso_clone_writer *w = st->w;
  if (!isolate_clone_writer_reserve(w, 31)) return oom(st);
  uint8_t *p = w->buf + w->len;
  *p++ = CLONE_TAG_VIEW;
  p = put_varint(p, raw->type);
  p = put_varint(p, raw->byte_offset);
  p = put_varint(p, raw->length);
  w->len = (size_t)(p - w->buf);
  iso_status r = write_value(st, buf);
  if (r != ISO_OK) return r;
  bool found;
  isolate_clone_slot *e = table_find(st->s, v, &found);
  if (e == NULL) return oom(st);
  if (st->next_id >= CLONE_OBJECTS_MAX)
    return fail(st, ISO_ERR_DATA_CLONE, "more than 2^30 objects");
  e->val = st->next_id++;
  return ISO_OK;
}

static iso_status write_record(wstate *st, iso_value v, uint32_t t) {
  const gc_type *ty = &st->types[t];
  if (ty->kind != ISO_KIND_RECORD)
    return fail(st, ISO_ERR_DATA_CLONE, "a %s (%s) cannot be cloned",
                iso_kind_name(ty->kind), ty->name ? ty->name : "?");
  uint32_t val;
  int id = identity(st, v, &val);
  if (id != 0)
    return id > 0     ? ISO_OK
           : id == -1 ? oom(st)
                      : fail(st, ISO_ERR_DATA_CLONE, "more than 2^30 objects");
  if (st->delegate != NULL && st->delegate->write_host != NULL) {
    iso_status r = write_host(st, v, true);
    if (r == ISO_OK) return ISO_OK;
    if (r != ISO_ERR_TYPE) return r;
  }
  iso_clone_writer *w = st->w;
  size_t raw = ty->raw_size;
  if (!isolate_clone_writer_reserve(w, 31 + raw)) return oom(st);
  uint8_t *p = w->buf + w->len;
  *p++ = CLONE_TAG_RECORD;
  p = put_varint(p, t);
  p = put_varint(p, ty->slot_count);
  p = put_varint(p, raw);
  if (raw) {
    memcpy(p, (const char *)gc_slots(v) + 8 * (size_t)ty->slot_count, raw);
    p += raw;
  }
  w->len = (size_t)(p - w->buf);
  if (ty->slot_count == 0) return ISO_OK;
  return push(st, v, ty->slot_count) ? ISO_OK : oom(st);
}

/* Writes v, or (for a container with children) its header, pushing a
 * frame for the children; ISO_OK or a reported error. */
static iso_status write_value(wstate *st, iso_value v) {
  iso_clone_writer *w = st->w;
  if (!isolate_clone_writer_reserve(w, 16)) return oom(st);
  if (iso_is_smi(v)) {
    int64_t n = iso_smi_value(v);
    put_tag_varint(w, CLONE_TAG_INT, ((uint64_t)n << 1) ^ (uint64_t)(n >> 63));
    return ISO_OK;
  }
  if (!iso_is_ref(v)) {
    uint8_t tag;
    switch (v) {
      case ISO_UNDEFINED:
        tag = CLONE_TAG_UNDEFINED;
        break;
      case ISO_NULL:
        tag = CLONE_TAG_NULL;
        break;
      case ISO_FALSE:
        tag = CLONE_TAG_FALSE;
        break;
      case ISO_TRUE:
        tag = CLONE_TAG_TRUE;
        break;
      default:
        return fail(st, ISO_ERR_DATA_CLONE, "0x%llx is not a value",
                    (unsigned long long)v);
    }
    w->buf[w->len++] = tag;
    return ISO_OK;
  }
  uint64_t hdr = gc_header(v);
  if (ISO_UNLIKELY(gc_hdr_is_forward(hdr)))
    return fail(st, ISO_ERR_DATA_CLONE,
                "a stale reference (the object "
                "moved)");
  uint32_t t = gc_hdr_type(hdr), val;
  int id;
  switch (t) {
    case GC_TYPE_DOUBLE:
      w->buf[w->len++] = CLONE_TAG_DOUBLE;
      memcpy(w->buf + w->len, gc_slots(v), 8); /* little-endian hosts */
      w->len += 8;
      return ISO_OK;

    case GC_TYPE_STRING: {
      const gc_string_raw *raw =
          (const gc_string_raw *)(const void *)gc_slots(v);
      size_t n = (size_t)raw->length;
      if (n >= CLONE_STRING_ID_MIN) {
        id = identity(st, v, &val);
        if (id > 0) return ISO_OK;
        if (id < 0)
          return id == -1
                     ? oom(st)
                     : fail(st, ISO_ERR_DATA_CLONE, "more than 2^30 objects");
      }
      if (!isolate_clone_writer_reserve(w, 11 + n)) return oom(st);
      put_tag_varint(w, CLONE_TAG_STRING, n);
      memcpy(w->buf + w->len, raw + 1, n);
      w->len += n;
      return ISO_OK;
    }

    case GC_TYPE_ARRAY: {
      id = identity(st, v, &val);
      if (id != 0) break;
      uint64_t n = (uint64_t)iso_smi_value(gc_slot_load(v, 1));
      put_tag_varint(w, CLONE_TAG_ARRAY, n);
      if (n == 0) return ISO_OK;
      return push(st, v, n) ? ISO_OK : oom(st);
    }

    case GC_TYPE_MAP: {
      id = identity(st, v, &val);
      if (id != 0) break;
      uint64_t n = (uint64_t)iso_map_size(v);
      put_tag_varint(w, CLONE_TAG_MAP, n);
      if (n == 0) return ISO_OK;
      return push(st, v, 2 * n) ? ISO_OK : oom(st);
    }

    case GC_TYPE_ARRAY_BUFFER: {
      id = identity(st, v, &val);
      if (id != 0) break;
      if ((val & VAL_TAG_MASK) == VAL_MOVE) {
        put_tag_varint(w, CLONE_TAG_TRANSFER, val & VAL_INDEX_MASK);
        return ISO_OK;
      }
      if (isolate_buffer_detached(v))
        return fail(st, ISO_ERR_DATA_CLONE, "a detached ArrayBuffer");
      gc_extern *e = isolate_extern_of(v);
      size_t n = e->length;
      if (n >= CLONE_COPY_MIN) return write_copy(st, e);
      if (!isolate_clone_writer_reserve(w, 11 + n)) return oom(st);
      put_tag_varint(w, CLONE_TAG_BUFFER, n);
      if (n) memcpy(w->buf + w->len, e->data, n);
      w->len += n;
      return ISO_OK;
    }

    case GC_TYPE_TYPED_ARRAY:
      return write_view(st, v);

    case GC_TYPE_SHARED_ARRAY_BUFFER: {
      id = identity(st, v, &val);
      if (id != 0) break;
      isolate_clone_scratch *s = st->s;
      if (s->nshared >= CLONE_OBJECTS_MAX ||
          !isolate_clone_grow((void **)&s->shared, &s->shared_cap,
                              s->nshared + 1, sizeof *s->shared))
        return oom(st);
      s->shared[s->nshared] = isolate_shared_store_of(v);
      put_tag_varint(w, CLONE_TAG_SHARED, s->nshared++);
      return ISO_OK;
    }

    case GC_TYPE_EXTERNAL:
      if (st->delegate == NULL || st->delegate->write_host == NULL)
        return fail(st, ISO_ERR_DATA_CLONE, "an external without a delegate");
      id = identity(st, v, &val);
      if (id != 0) break;
      return write_host(st, v, false);

    case GC_TYPE_PORT:
      id = identity(st, v, &val);
      if (id != 0) break;
      if ((val & VAL_TAG_MASK) != VAL_PORT)
        return fail(st, ISO_ERR_DATA_CLONE,
                    "a port that is not in the transfer list");
      put_tag_varint(w, CLONE_TAG_PORT, val & VAL_INDEX_MASK);
      return ISO_OK;

    default:
      if (t >= GC_TYPE_FIRST_USER) return write_record(st, v, t);
      return fail(st, ISO_ERR_DATA_CLONE, "a %s cannot be cloned",
                  iso_kind_name(iso_kind_of(v)));
  }
  /* identity() found a back-reference (written) or failed. */
  if (id > 0) return ISO_OK;
  return id == -1 ? oom(st)
                  : fail(st, ISO_ERR_DATA_CLONE, "more than 2^30 objects");
}

/* ---- the walk ---- */

/* The next entry of a map, through iso_map_next (which makes handles:
 * a scope keeps them from piling up). */
static bool map_entry(iso_isolate *iso, iso_value m, size_t *cursor,
                      iso_value *k, iso_value *v) {
  iso_scope sc;
  iso_scope_open(iso, &sc);
  iso_handle hk = NULL, hv = NULL;
  bool ok = iso_map_next(iso, m, cursor, &hk, &hv);
  if (ok) {
    *k = iso_get(hk);
    *v = iso_get(hv);
  }
  iso_scope_close(&sc);
  return ok;
}

/* Writes v if it is a leaf without identity (small integer, immediate,
 * double, short string): the bulk of most graphs, so this path is kept
 * small and inline. false for anything else. The caller reserved
 * LEAF_RESERVE bytes. */
#define LEAF_RESERVE (16 + CLONE_STRING_ID_MIN)
static inline bool write_leaf(iso_clone_writer *w, iso_value v) {
  uint8_t *p = w->buf + w->len;
  if (iso_is_smi(v)) {
    int64_t n = iso_smi_value(v);
    *p++ = CLONE_TAG_INT;
    p = put_varint(p, ((uint64_t)n << 1) ^ (uint64_t)(n >> 63));
  } else if (!iso_is_ref(v)) {
    switch (v) {
      case ISO_UNDEFINED:
        *p++ = CLONE_TAG_UNDEFINED;
        break;
      case ISO_NULL:
        *p++ = CLONE_TAG_NULL;
        break;
      case ISO_FALSE:
        *p++ = CLONE_TAG_FALSE;
        break;
      case ISO_TRUE:
        *p++ = CLONE_TAG_TRUE;
        break;
      default:
        return false;
    }
  } else {
    uint64_t hdr = gc_header(v);
    if (ISO_UNLIKELY(gc_hdr_is_forward(hdr))) return false;
    uint32_t t = gc_hdr_type(hdr);
    if (t == GC_TYPE_STRING) {
      const gc_string_raw *raw =
          (const gc_string_raw *)(const void *)gc_slots(v);
      size_t n = (size_t)raw->length;
      if (n >= CLONE_STRING_ID_MIN) return false;
      *p++ = CLONE_TAG_STRING;
      *p++ = (uint8_t)n; /* < 128: a one-byte varint */
      memcpy(p, raw + 1, n);
      p += n;
    } else if (t == GC_TYPE_DOUBLE) {
      *p++ = CLONE_TAG_DOUBLE;
      memcpy(p, gc_slots(v), 8);
      p += 8;
    } else {
      return false;
    }
  }
  w->len = (size_t)(p - w->buf);
  return true;
}

/* Where the children of an array or record are: consecutive slots from
 * *base, of which *avail exist now (an array may have been shortened by a
 * delegate; missing elements are written as undefined). */
static inline void child_slots(iso_value obj, uint32_t t, uint64_t n,
                               iso_value **base, uint64_t *avail) {
  if (t == GC_TYPE_ARRAY) {
    uint64_t len = (uint64_t)iso_smi_value(gc_slot_load(obj, 1));
    size_t first;
    iso_value host = isolate_array_host(obj, &first);
    *base = gc_slots(host) + first;
    *avail = len < n ? len : n;
  } else {
    *base = gc_slots(obj);
    *avail = n;
  }
}

static iso_status walk(wstate *st, iso_value root) {
  iso_status r = write_value(st, root);
  if (r != ISO_OK) return r;
  isolate_clone_scratch *s = st->s;
  iso_clone_writer *w = st->w;
  while (st->sp > 0) {
    size_t top = st->sp - 1;
    isolate_clone_wframe *f = &s->wstack[top];
    iso_value obj = f->obj, child;
    uint32_t t = gc_type_id(obj);
    if (t == GC_TYPE_MAP) {
      if (f->i == f->n) {
        st->sp--;
        continue;
      }
      if (f->i & 1) {
        child = f->pend;
      } else {
        iso_value k = ISO_UNDEFINED, v = ISO_UNDEFINED;
        map_entry(st->iso, obj, &f->cursor, &k, &v);
        f->key = k;
        f->pend = v;
        child = k;
      }
      f->i++;
      r = write_value(st, child);
      if (r != ISO_OK) return r;
      continue;
    }
    /* An array or a record: run through its slots, leaving the frame
     * only to descend into a container. */
    iso_value *base;
    uint64_t i = f->i, n = f->n, avail;
    child_slots(obj, t, n, &base, &avail);
    for (;;) {
      if (i == n) {
        st->sp--;
        break;
      }
      child = i < avail ? thr_load_relaxed(&base[i]) : ISO_UNDEFINED;
      i++;
      if (!isolate_clone_writer_reserve(w, LEAF_RESERVE)) return oom(st);
      if (write_leaf(w, child)) continue;
      f->i = i;
      r = write_value(st, child);
      if (r != ISO_OK) return r;
      if (st->sp != top + 1) break; /* descend */
      /* A delegate may have run: look at the slots afresh. */
      f = &s->wstack[top];
      child_slots(obj, t, n, &base, &avail);
    }
  }
  return ISO_OK;
}

/* ---- transfer list and commit ---- */

static iso_status check_transfer(wstate *st) {
  for (size_t j = 0; j < st->ntransfer; j++) {
    iso_value v = st->transfer[j];
    iso_kind k = iso_kind_of(v);
    uint32_t mark;
    if (k == ISO_KIND_ARRAY_BUFFER) {
      if (isolate_buffer_detached(v))
        return isolate_fail(ISO_ERR_DATA_CLONE,
                            "%s: transfer[%zu]: the ArrayBuffer is already "
                            "detached",
                            st->fn, j);
      mark = VAL_MOVE | st->nmoved++;
    } else if (k == ISO_KIND_PORT) {
      if (!thr_port_can_transfer(v))
        return isolate_fail(ISO_ERR_DATA_CLONE,
                            "%s: transfer[%zu]: the port was already "
                            "transferred or closed",
                            st->fn, j);
      mark = VAL_PORT | st->nports++;
    } else if (k == ISO_KIND_SHARED_ARRAY_BUFFER) {
      return isolate_fail(ISO_ERR_DATA_CLONE,
                          "%s: transfer[%zu]: a SharedArrayBuffer cannot be "
                          "transferred (it is shared by reference)",
                          st->fn, j);
    } else {
      return isolate_fail(ISO_ERR_DATA_CLONE,
                          "%s: transfer[%zu]: a %s cannot be transferred "
                          "(only ArrayBuffers and ports can)",
                          st->fn, j, iso_kind_name(k));
    }
    if (st->nmoved > VAL_INDEX_MASK || st->nports > VAL_INDEX_MASK)
      return isolate_fail(ISO_ERR_DATA_CLONE, "%s: transfer list too long",
                          st->fn);
    bool found;
    isolate_clone_slot *e = table_find(st->s, v, &found);
    if (e == NULL) return oom(st);
    if (found)
      return isolate_fail(ISO_ERR_DATA_CLONE, "%s: transfer[%zu]: listed twice",
                          st->fn, j);
    e->val = mark;
  }
  return ISO_OK;
}

/* Takes what the message carries. Allocation first; then steps that
 * cannot fail, so an error leaves everything untouched. */
static iso_status commit(wstate *st, iso_message *msg) {
  isolate_clone_scratch *s = st->s;
  isolate_clone_moved *moved = NULL, *copies = NULL;
  isolate_clone_port_entry *ports = NULL;
  isolate_shared_store **shared = NULL;
  if (st->nmoved) moved = calloc(st->nmoved, sizeof *moved);
  if (s->ncopies) copies = malloc(s->ncopies * sizeof *copies);
  if (st->nports) ports = calloc(st->nports, sizeof *ports);
  if (s->nshared) shared = malloc(s->nshared * sizeof *shared);
  if ((st->nmoved && !moved) || (s->ncopies && !copies) ||
      (st->nports && !ports) || (s->nshared && !shared)) {
    free(moved);
    free(copies);
    free(ports);
    free(shared);
    return oom(st);
  }
  if (s->ncopies) memcpy(copies, s->copies, s->ncopies * sizeof *copies);
  for (size_t i = 0; i < s->nshared; i++) {
    isolate_shared_store_retain(s->shared[i]);
    shared[i] = s->shared[i];
  }
  uint32_t km = 0, kp = 0;
  for (size_t j = 0; j < st->ntransfer; j++) {
    iso_value v = st->transfer[j];
    if (gc_is_kind(v, GC_TYPE_ARRAY_BUFFER)) {
      gc_extern_steal(st->iso, isolate_extern_of(v), &moved[km++].store);
    } else {
      /* Checked by thr_port_can_transfer and nothing ran since: this
       * cannot fail. A NULL would only make the index read as closed. */
      ports[kp++].port = thr_port_take_from_value(st->iso, v);
    }
  }
  msg->moved = moved;
  msg->nmoved = st->nmoved;
  msg->copies = copies;
  msg->ncopies = (uint32_t)s->ncopies;
  s->ncopies = 0; /* the message owns the stores now */
  msg->ports = ports;
  msg->nports = st->nports;
  msg->shared = shared;
  msg->nshared = (uint32_t)s->nshared;
  return ISO_OK;
}

iso_status isolate_clone_serialize(iso_isolate *iso, isolate_clone_scratch *s,
                                   iso_clone_writer *w, iso_value v,
                                   const iso_value *transfer, size_t ntransfer,
                                   const iso_clone_delegate *delegate,
                                   iso_message *msg, const char *fn) {
  wstate st = {iso, s, w, delegate, iso->rt->types, fn, transfer, ntransfer,
               0,   0, 0, 0};
  if (delegate != NULL && delegate->struct_size < sizeof(size_t))
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "%s: delegate->struct_size is not set", fn);
  s->nshared = 0;
  s->ncopies = 0;
  if (!table_begin(s) || !isolate_clone_writer_reserve(w, 10)) return oom(&st);
  uint8_t *p = w->buf + w->len;
  p[0] = CLONE_MAGIC0;
  p[1] = CLONE_MAGIC1;
  p[2] = CLONE_MAGIC2;
  p[3] = CLONE_MAGIC3;
  p[4] = CLONE_VERSION;
  p[5] = 0; /* flags */
  size_t count_at = w->len + 6;
  w->len += 10;
  iso_status r = check_transfer(&st);
  if (r == ISO_OK) r = walk(&st, v);
  if (r == ISO_OK && isolate_terminating(iso))
    r = isolate_terminated_error(iso);
  if (r == ISO_OK) r = commit(&st, msg);
  if (r != ISO_OK) {
    for (size_t i = 0; i < s->ncopies; i++)
      isolate_clone_store_free(&s->copies[i].store);
    s->ncopies = 0;
    return r;
  }
  p = w->buf + count_at;
  for (int k = 0; k < 4; k++) p[k] = (uint8_t)(st.next_id >> (8 * k));
  return ISO_OK;
}
