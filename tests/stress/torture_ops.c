/*
 * The operations of the graph torture engine.
 *
 * Each operation changes the heap through the public API and the model in
 * the same way, and checks on the spot what the API promises about its
 * result (a popped element is the last one, a map lookup finds what
 * iteration shows, a new number is boxed exactly when it must be).
 *
 * Rooting discipline, the same a real program follows: every operation
 * but the scope and collection ones runs in a handle scope of its own
 * (torture_step opens it), so the handles it makes die with it, and what
 * it keeps it stores into a root or into an object. Values are read from
 * handles at each call and never held raw across a call that may
 * allocate. The objects that live longest sit in globals, so they get
 * promoted; storing a fresh object into one of them is an old-to-young
 * store that only the remembered set keeps alive across the next
 * scavenge, since the step scope that held the fresh object is gone by
 * then.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture_priv.h"

static bool make_value(torture *t, int depth, tt_val *v, iso_handle *h);
static tt_node *alloc_any(torture *t, int depth, iso_handle *out);

static tt_val ref_to(tt_node *n) {
  tt_val v;
  v.tag = TT_REF;
  v.u.n = n;
  return v;
}

static bool make_imm(torture *t, tt_val *v, iso_handle *h) {
  memset(v, 0, sizeof *v);
  switch (tt_below(t, 10)) {
    case 0:
      v->tag = TT_UNDEF;
      break;
    case 1:
      v->tag = TT_NULL;
      break;
    case 2:
      v->tag = TT_TRUE;
      break;
    case 3:
      v->tag = TT_FALSE;
      break;
    case 4:
      v->tag = TT_INT;
      v->u.i = tt_chance(t, 500) ? ISO_SMI_MAX : ISO_SMI_MIN;
      break;
    default:
      v->tag = TT_INT;
      v->u.i = (int64_t)tt_below(t, 2001) - 1000;
  }
  if (v->tag == TT_INT && tt_chance(t, 500)) {
    *h = tt_hok(t, iso_integer_new(t->iso, v->u.i), "iso_integer_new");
    if (*h && iso_get(*h) != iso_smi(v->u.i)) {
      tt_fail(t, "iso_integer_new(%lld) is not that small integer",
              (long long)v->u.i);
      return false;
    }
    return *h != NULL;
  }
  *h = tt_handle(t, tt_imm_word(v));
  return *h != NULL;
}

/* ---- the model of containers ---- */

static bool arr_resize(torture *t, tt_node *a, size_t len) {
  if (len > a->u.arr.cap) {
    size_t cap = a->u.arr.cap ? a->u.arr.cap * 2 : 8;
    if (cap < len) cap = len;
    tt_val *e = realloc(a->u.arr.e, cap * sizeof *e);
    if (!e) {
      tt_fail(t, "out of memory for the model");
      return false;
    }
    a->u.arr.e = e;
    a->u.arr.cap = cap;
  }
  for (size_t i = a->u.arr.len; i < len; i++)
    memset(&a->u.arr.e[i], 0, sizeof a->u.arr.e[i]); /* undefined */
  a->u.arr.len = len;
  return true;
}

static long map_find(const tt_node *m, const tt_key *k) {
  for (size_t j = 0; j < m->u.map.n; j++)
    if (tt_key_equal(&m->u.map.e[j].key, k)) return (long)j;
  return -1;
}

/* Replacing keeps the entry's place (and its original key object), as
 * JavaScript's Map.set does. */
static bool map_put(torture *t, tt_node *m, const tt_key *k, const tt_val *v) {
  long j = map_find(m, k);
  if (j >= 0) {
    m->u.map.e[j].val = *v;
    return true;
  }
  if (m->u.map.n == m->u.map.cap) {
    size_t cap = m->u.map.cap ? m->u.map.cap * 2 : 4;
    tt_entry *e = realloc(m->u.map.e, cap * sizeof *e);
    if (!e) {
      tt_fail(t, "out of memory for the model");
      return false;
    }
    m->u.map.e = e;
    m->u.map.cap = cap;
  }
  m->u.map.e[m->u.map.n].key = *k;
  m->u.map.e[m->u.map.n].val = *v;
  m->u.map.n++;
  return true;
}

static void map_remove(tt_node *m, size_t j) {
  memmove(&m->u.map.e[j], &m->u.map.e[j + 1],
          (m->u.map.n - j - 1) * sizeof m->u.map.e[0]);
  m->u.map.n--;
}

/* ---- stores, through the API and into the model ---- */

static bool array_store(torture *t, tt_node *a, iso_handle ah, size_t i,
                        const tt_val *v, iso_handle vh) {
  if (!tt_ok(t, iso_array_set(t->iso, iso_get(ah), i, iso_get(vh)),
             "iso_array_set"))
    return false;
  if (i == a->u.arr.len && !arr_resize(t, a, i + 1)) return false;
  a->u.arr.e[i] = *v;
  tt_note_store(t, a, v);
  return true;
}

static bool array_push(torture *t, tt_node *a, iso_handle ah, const tt_val *v,
                       iso_handle vh) {
  if (!tt_ok(t, iso_array_push(t->iso, iso_get(ah), iso_get(vh)),
             "iso_array_push"))
    return false;
  if (!arr_resize(t, a, a->u.arr.len + 1)) return false;
  a->u.arr.e[a->u.arr.len - 1] = *v;
  tt_note_store(t, a, v);
  return true;
}

static bool array_pop(torture *t, tt_node *a, iso_handle ah) {
  size_t len = a->u.arr.len;
  iso_handle last = NULL;
  if (len) {
    last =
        tt_hok(t, iso_array_get(t->iso, iso_get(ah), len - 1), "iso_array_get");
    if (!last) return false;
  }
  iso_handle r = tt_hok(t, iso_array_pop(t->iso, iso_get(ah)), "iso_array_pop");
  if (!r) return false;
  iso_value want = last ? iso_get(last) : ISO_UNDEFINED;
  if (iso_get(r) != want) {
    tt_fail(t,
            "iso_array_pop on array #%u (length %zu) returned 0x%llx, "
            "the last element was 0x%llx",
            a->id, len, (unsigned long long)iso_get(r),
            (unsigned long long)want);
    return false;
  }
  if (len) a->u.arr.len--;
  return true;
}

static bool array_set_length(torture *t, tt_node *a, iso_handle ah,
                             size_t len) {
  if (!tt_ok(t, iso_array_set_length(t->iso, iso_get(ah), len),
             "iso_array_set_length"))
    return false;
  return arr_resize(t, a, len);
}

static bool record_store(torture *t, tt_node *r, iso_handle rh, uint32_t i,
                         const tt_val *v, iso_handle vh) {
  if (!tt_ok(t, iso_record_set(t->iso, iso_get(rh), i, iso_get(vh)),
             "iso_record_set"))
    return false;
  r->u.rec.slot[i] = *v;
  tt_note_store(t, r, v);
  return true;
}

/* ---- map keys ---- */

static iso_handle string_key(torture *t, unsigned k) {
  char text[512];
  size_t len = tt_key_text(k, text, sizeof text);
  return tt_hok(t, iso_string_new(t->iso, text, len), "iso_string_new");
}

/* A number through iso_number_new, checked to be a small integer exactly
 * when it is integral, fits, and is not -0. */
static iso_handle number_handle(torture *t, double d) {
  iso_handle h = tt_hok(t, iso_number_new(t->iso, d), "iso_number_new");
  if (!h) return NULL;
  const double lim = 4611686018427387904.0; /* 2^62 */
  bool smi = isfinite(d) && d == floor(d) && !(d == 0 && signbit(d)) &&
             d >= -lim && d < lim;
  iso_value w = iso_get(h);
  bool ok = smi ? iso_is_smi(w) && iso_smi_value(w) == (int64_t)d
                : iso_kind_of(w) == ISO_KIND_DOUBLE;
  if (!ok) {
    tt_fail(t, "iso_number_new(%g) gave a %s, expected %s", d,
            iso_kind_name(iso_kind_of(w)),
            smi ? "that small integer" : "a boxed double");
    return NULL;
  }
  return h;
}

/* Another number equal to d under SameValueZero: -0 for 0, another NaN. */
static double equal_number(torture *t, double d) {
  if (d == 0) return tt_chance(t, 500) ? -0.0 : 0.0;
  if (isnan(d)) {
    uint64_t b = 0x7ff8000000000000ull | (1 + tt_below(t, 1000));
    memcpy(&d, &b, sizeof d);
  }
  return d;
}

/* A handle to a key equal to the key of entry j: the stored key object
 * itself, or (for strings and numbers) a new equal one. */
static bool entry_key(torture *t, tt_node *m, iso_handle mh, size_t j,
                      iso_handle *kh) {
  const tt_key *k = &m->u.map.e[j].key;
  if (k->tag == TT_KEY_REF || tt_chance(t, 400)) {
    iso_handle vh;
    return tt_map_entry(t, m, mh, j, kh, &vh);
  }
  if (k->tag == TT_KEY_STR) {
    *kh = string_key(t, k->u.str);
  } else {
    *kh = number_handle(t, equal_number(t, k->u.num));
  }
  return *kh != NULL;
}

/* A key to store under in m: usually a new one, sometimes (always when
 * the map is full) the key of an entry. */
static bool pick_key(torture *t, tt_node *m, iso_handle mh, tt_key *k,
                     iso_handle *kh) {
  size_t n = m->u.map.n;
  if (n && (n >= TT_MAP_MAX || tt_chance(t, 300))) {
    size_t j = tt_below(t, n);
    *k = m->u.map.e[j].key;
    return entry_key(t, m, mh, j, kh);
  }
  unsigned r = (unsigned)tt_below(t, 100);
  if (r >= 75) {
    tt_node *o;
    if (tt_nav(t, TT_IDENTITY_KEYS, TT_FROM_ANY, &o, kh)) {
      k->tag = TT_KEY_REF;
      k->u.n = o;
      return true;
    }
    if (t->failed) return false;
    r = 0;
  }
  if (r < 45) {
    k->tag = TT_KEY_STR;
    k->u.str = (unsigned)tt_below(t, TT_STRING_KEYS);
    *kh = string_key(t, k->u.str);
  } else {
    double d = tt_num_key((unsigned)tt_below(t, TT_NUM_KEYS));
    if (d == 0 && tt_chance(t, 300)) d = -0.0;
    k->tag = TT_KEY_NUM;
    k->u.num = d;
    *kh = number_handle(t, d);
  }
  return *kh != NULL;
}

static bool map_set(torture *t, tt_node *m, iso_handle mh, const tt_key *k,
                    iso_handle kh, const tt_val *v, iso_handle vh) {
  if (!tt_ok(t, iso_map_set(t->iso, iso_get(mh), iso_get(kh), iso_get(vh)),
             "iso_map_set"))
    return false;
  if (!map_put(t, m, k, v)) return false;
  tt_note_store(t, m, v);
  if (k->tag == TT_KEY_REF) {
    tt_val kv = ref_to(k->u.n);
    tt_note_store(t, m, &kv);
  }
  return true;
}

static bool map_store(torture *t, tt_node *m, iso_handle mh, const tt_val *v,
                      iso_handle vh) {
  tt_key k;
  iso_handle kh;
  if (!pick_key(t, m, mh, &k, &kh)) return false;
  return map_set(t, m, mh, &k, kh, v, vh);
}

static bool map_delete_entry(torture *t, tt_node *m, iso_handle mh, size_t j) {
  iso_handle kh;
  if (!entry_key(t, m, mh, j, &kh)) return false;
  if (!iso_map_delete(t->iso, iso_get(mh), iso_get(kh))) {
    tt_fail(t, "iso_map_delete on map #%u entry %zu found no such key", m->id,
            j);
    return false;
  }
  map_remove(m, j);
  return true;
}

/* A string key that map m does not hold, or UINT32_MAX. */
static unsigned absent_string_key(torture *t, const tt_node *m) {
  for (int tries = 0; tries < 8; tries++) {
    tt_key k;
    k.tag = TT_KEY_STR;
    k.u.str = (unsigned)tt_below(t, TT_STRING_KEYS);
    if (map_find(m, &k) < 0) return k.u.str;
  }
  return UINT32_MAX;
}

/* Stores v at a random place of container c. */
static bool store_into(torture *t, tt_node *c, iso_handle ch, const tt_val *v,
                       iso_handle vh) {
  switch (c->kind) {
    case TT_ARRAY: {
      size_t len = c->u.arr.len;
      bool room = c->large ? len < TT_LARGE_ARRAY + 4096 : len < TT_SMALL_ARRAY;
      size_t i =
          len == 0 || (room && tt_chance(t, 300)) ? len : tt_below(t, len);
      return array_store(t, c, ch, i, v, vh);
    }
    case TT_RECORD: {
      uint32_t slots = tt_rec_types[c->rtype].slots;
      if (!slots) return true;
      return record_store(t, c, ch, (uint32_t)tt_below(t, slots), v, vh);
    }
    default:
      return map_store(t, c, ch, v, vh);
  }
}

/* ---- roots ---- */

static void store_global(torture *t, const tt_val *v, iso_handle h) {
  tt_global *g = &t->gl[tt_below(t, TT_GLOBALS)];
  if (g->g) {
    iso_global_set(t->iso, g->g, iso_get(h));
  } else {
    g->g = iso_global_new(t->iso, iso_get(h));
    if (!g->g) {
      tt_fail(t, "iso_global_new returned NULL: %s", iso_last_error());
      return;
    }
  }
  g->v = *v;
}

static void store_root(torture *t, const tt_val *v, iso_handle h) {
  if (!t->nlv || tt_chance(t, 400)) {
    store_global(t, v, h);
    return;
  }
  tt_level *lv = &t->lv[tt_below(t, t->nlv)];
  if (lv->nextra && tt_chance(t, 250)) {
    unsigned i = (unsigned)tt_below(t, lv->nextra);
    iso_handle_set(lv->extra[i], iso_get(h));
    lv->ev[i] = *v;
  } else {
    unsigned i = (unsigned)tt_below(t, TT_LEVEL_SLOTS);
    iso_handle_set(lv->slot[i], iso_get(h));
    lv->sv[i] = *v;
  }
}

static bool drop_root(torture *t) {
  tt_root roots[TT_GLOBALS + TT_LEVELS * (TT_LEVEL_SLOTS + TT_LEVEL_EXTRAS)];
  size_t nr = tt_roots(t, roots, sizeof roots / sizeof roots[0], TT_FROM_ANY);
  size_t k = 0;
  for (size_t i = 0; i < nr; i++)
    if (roots[i].v->tag == TT_REF) roots[k++] = roots[i];
  if (!k) return false;
  tt_root *r = &roots[tt_below(t, k)];
  if (r->gl && tt_chance(t, 400)) {
    iso_global_free(t->iso, r->gl->g);
    r->gl->g = NULL;
  } else if (r->gl) {
    iso_global_set(t->iso, r->gl->g, ISO_UNDEFINED);
  } else {
    iso_handle_set(r->h, ISO_UNDEFINED);
  }
  memset(r->v, 0, sizeof *r->v);
  return true;
}

/* ---- allocation ---- */

static void count_large(torture *t, tt_node *n) {
  n->large = true;
  t->nlarge++;
  t->st.large_objects++;
}

static tt_node *alloc_string(torture *t, iso_handle *out) {
  unsigned r = (unsigned)tt_below(t, 1000);
  bool large = r < 4 && t->nlarge < t->max_large;
  size_t len = large     ? 131072 + tt_below(t, 8192)
               : r < 50  ? 600 + tt_below(t, 4400)
               : r < 300 ? 24 + tt_below(t, 576)
                         : tt_below(t, 24);
  uint64_t seed = tt_rnd(t);
  char *buf = malloc(len + 1);
  if (!buf) {
    tt_fail(t, "out of memory for a string");
    return NULL;
  }
  tt_gen_text(seed, buf, len);
  buf[len] = 0;
  iso_handle h;
  if (len && tt_chance(t, 100)) {
    for (size_t i = 0; i < len; i++)
      if (!buf[i]) buf[i] = '0';
    h = tt_hok(t, iso_string_from_cstr(t->iso, buf), "iso_string_from_cstr");
  } else {
    h = tt_hok(t, iso_string_new(t->iso, buf, len), "iso_string_new");
  }
  tt_node *n = h ? tt_node_new(t, TT_STRING) : NULL;
  if (n) {
    n->u.str.seed = seed;
    n->u.str.len = len;
    n->u.str.hash = tt_hash_bytes(TT_HASH0, buf, len);
    n->u.str.fnv = tt_fnv1a32(buf, len);
    uint32_t got = iso_string_hash(iso_get(h));
    if (got != n->u.str.fnv)
      tt_fail(t,
              "iso_string_hash of a new %zu-byte string is 0x%08x; "
              "FNV-1a of its bytes is 0x%08x",
              len, got, n->u.str.fnv);
    if (large) count_large(t, n);
  }
  free(buf);
  *out = h;
  return t->failed ? NULL : n;
}

static tt_node *alloc_double(torture *t, iso_handle *out) {
  double d;
  iso_handle h;
  switch (tt_below(t, 10)) {
    case 0:
      d = -0.0;
      h = number_handle(t, d);
      break;
    case 1:
      d = NAN;
      h = number_handle(t, d);
      break;
    case 2:
      d = tt_chance(t, 500) ? INFINITY : -INFINITY;
      h = number_handle(t, d);
      break;
    case 3: {
      /* Integers past the small-integer range are boxed. */
      int64_t i = tt_chance(t, 500) ? ISO_SMI_MAX + 1 : INT64_MIN;
      d = (double)i;
      h = tt_hok(t, iso_integer_new(t->iso, i), "iso_integer_new");
      if (h && (iso_kind_of(iso_get(h)) != ISO_KIND_DOUBLE ||
                iso_number_value(iso_get(h)) != d)) {
        tt_fail(t,
                "iso_integer_new(%lld) gave a %s, expected the boxed "
                "double %g",
                (long long)i, iso_kind_name(iso_kind_of(iso_get(h))), d);
        return NULL;
      }
      break;
    }
    default:
      /* Never integral: a multiple of 1/1024 plus 1/2048. */
      d = (double)(int64_t)(tt_rnd(t) >> 12) / 1024.0 + 1.0 / 2048;
      if (tt_chance(t, 500)) d = -d;
      h = number_handle(t, d);
  }
  if (!h) return NULL;
  tt_node *n = tt_node_new(t, TT_DOUBLE);
  if (n) n->u.d = d;
  *out = h;
  return n;
}

static tt_node *alloc_buffer(torture *t, iso_handle *out) {
  unsigned r = (unsigned)tt_below(t, 100);
  size_t len = r < 5    ? 0
               : r < 65 ? 1 + tt_below(t, 256)
               : r < 95 ? 257 + tt_below(t, 7936)
                        : 8193 + tt_below(t, 57344);
  uint64_t seed = tt_rnd(t);
  iso_handle h;
  tt_ext *e = NULL;
  uint64_t hash;
  if (len && tt_chance(t, 250)) {
    e = tt_ext_new(t, len);
    if (!e) {
      tt_fail(t, "out of memory for an external buffer");
      return NULL;
    }
    tt_gen_bytes(seed, e->data, len);
    hash = tt_hash_bytes(TT_HASH0, e->data, len);
    h = tt_hok(
        t,
        iso_array_buffer_new_external(t->iso, e->data, len, tt_ext_free_cb, e),
        "iso_array_buffer_new_external");
  } else {
    h = tt_hok(t, iso_array_buffer_new(t->iso, len), "iso_array_buffer_new");
    hash = tt_hash_zeros(len);
    if (h && len && tt_chance(t, 500)) {
      unsigned char *tmp = malloc(len);
      void *d = iso_array_buffer_data(iso_get(h));
      if (!tmp || !d) {
        free(tmp);
        tt_fail(t, "no memory, or no data for a new %zu-byte ArrayBuffer", len);
        return NULL;
      }
      tt_gen_bytes(seed, tmp, len);
      memcpy(d, tmp, len);
      hash = tt_hash_bytes(TT_HASH0, tmp, len);
      free(tmp);
    }
  }
  if (!h) return NULL;
  tt_node *n = tt_node_new(t, TT_BUFFER);
  if (!n) return NULL;
  n->u.buf.len = len;
  n->u.buf.hash = hash;
  n->u.buf.ext = e;
  if (e) e->id = n->id;
  *out = h;
  return n;
}

static bool write_raw(torture *t, tt_node *r, iso_handle rh) {
  uint32_t raw = tt_rec_types[r->rtype].raw;
  unsigned char *buf = malloc(raw);
  if (!buf) {
    tt_fail(t, "out of memory for raw bytes");
    return false;
  }
  tt_gen_bytes(tt_rnd(t), buf, raw);
  /* The raw pointer is valid until the next allocation: take it last. */
  void *p = iso_record_raw(iso_get(rh));
  size_t size = iso_record_raw_size(iso_get(rh));
  if (!p || size != raw) {
    free(buf);
    tt_fail(t,
            "record #%u (%s): iso_record_raw gave %p and %zu bytes, "
            "expected %u bytes",
            r->id, tt_rec_types[r->rtype].name, p, size, raw);
    return false;
  }
  memcpy(p, buf, raw);
  r->u.rec.raw_hash = tt_hash_bytes(TT_HASH0, buf, raw);
  free(buf);
  return true;
}

static tt_node *alloc_record_of(torture *t, int depth, unsigned ti,
                                iso_handle *out) {
  const tt_rec_type *rt = &tt_rec_types[ti];
  tt_val vals[TT_MAX_SLOTS];
  iso_handle vh[TT_MAX_SLOTS];
  unsigned k = depth >= 2 ? 0 : (unsigned)tt_below(t, rt->slots + 1);
  if (k > 8) k = 8;
  for (unsigned i = 0; i < k; i++)
    if (!make_value(t, depth + 1, &vals[i], &vh[i])) return NULL;
  iso_handle h;
  if (tt_chance(t, 500)) {
    /* Raw words read from the handles just before the call: the call
     * must protect them itself if it collects. */
    iso_value init[TT_MAX_SLOTS];
    for (unsigned i = 0; i < k; i++) init[i] = iso_get(vh[i]);
    h = tt_hok(t, iso_record_new_v(t->iso, t->types[ti], k, init),
               "iso_record_new_v");
  } else {
    h = tt_hok(t, iso_record_new(t->iso, t->types[ti]), "iso_record_new");
    for (unsigned i = 0; h && i < k; i++)
      if (!tt_ok(t, iso_record_set(t->iso, iso_get(h), i, iso_get(vh[i])),
                 "iso_record_set"))
        return NULL;
  }
  if (!h) return NULL;
  tt_node *n = tt_node_new(t, TT_RECORD);
  if (!n) return NULL;
  n->rtype = (uint8_t)ti;
  n->u.rec.slot = calloc(rt->slots ? rt->slots : 1, sizeof(tt_val));
  if (!n->u.rec.slot) {
    tt_fail(t, "out of memory for the model");
    return NULL;
  }
  for (unsigned i = 0; i < k; i++) n->u.rec.slot[i] = vals[i];
  n->u.rec.raw_hash = tt_hash_zeros(rt->raw);
  if (rt->large) count_large(t, n);
  if (rt->raw && tt_chance(t, 500) && !write_raw(t, n, h)) return NULL;
  *out = h;
  return n;
}

static tt_node *alloc_record(torture *t, int depth, iso_handle *out) {
  unsigned ti = (unsigned)tt_below(t, TT_REC_TYPES - 1);
  if (t->nlarge < t->max_large && tt_chance(t, 4)) ti = TT_REC_TYPES - 1;
  return alloc_record_of(t, depth, ti, out);
}

static tt_node *alloc_array(torture *t, int depth, iso_handle *out) {
  size_t len = depth >= 2 ? tt_below(t, 4) : tt_below(t, 9);
  iso_handle h = tt_hok(t, iso_array_new(t->iso, len), "iso_array_new");
  if (!h) return NULL;
  tt_node *n = tt_node_new(t, TT_ARRAY);
  if (!n || !arr_resize(t, n, len)) return NULL;
  for (size_t i = 0; i < len; i++) {
    if (!tt_chance(t, 600)) continue;
    tt_val v;
    iso_handle vh;
    bool ok =
        depth >= 2 ? make_imm(t, &v, &vh) : make_value(t, depth + 1, &v, &vh);
    if (!ok || !array_store(t, n, h, i, &v, vh)) return NULL;
  }
  *out = h;
  return n;
}

static tt_node *alloc_map(torture *t, int depth, iso_handle *out) {
  iso_handle h = tt_hok(t, iso_map_new(t->iso), "iso_map_new");
  if (!h) return NULL;
  tt_node *n = tt_node_new(t, TT_MAP);
  if (!n) return NULL;
  unsigned k = depth >= 2 ? 0 : (unsigned)tt_below(t, 6);
  for (unsigned i = 0; i < k; i++) {
    tt_val v;
    iso_handle vh;
    if (!make_value(t, depth + 1, &v, &vh) || !map_store(t, n, h, &v, vh))
      return NULL;
  }
  *out = h;
  return n;
}

static tt_node *alloc_any(torture *t, int depth, iso_handle *out) {
  unsigned r = (unsigned)tt_below(t, 100);
  if (depth >= 2) r = r * 60 / 100; /* leaves only */
  if (r < 22) return alloc_string(t, out);
  if (r < 32) return alloc_double(t, out);
  if (r < 42) return alloc_buffer(t, out);
  if (r < 60) return alloc_record(t, depth, out);
  if (r < 80) return alloc_array(t, depth, out);
  return alloc_map(t, depth, out);
}

/* A value to store: an immediate, an object the roots reach, or (mostly)
 * a fresh object. */
static bool make_value(torture *t, int depth, tt_val *v, iso_handle *h) {
  unsigned r = (unsigned)tt_below(t, 100);
  if (r < 15) return make_imm(t, v, h);
  if (r < 35) {
    tt_node *n;
    if (tt_nav(t, TT_ANY, TT_FROM_ANY, &n, h)) {
      *v = ref_to(n);
      return true;
    }
    if (t->failed) return false;
  }
  tt_node *n = alloc_any(t, depth, h);
  if (!n) return false;
  *v = ref_to(n);
  return true;
}

/* ---- operations ---- */

static void op_alloc_root(torture *t) {
  iso_handle h;
  tt_node *n = alloc_any(t, 0, &h);
  if (!n) return;
  tt_val v = ref_to(n);
  store_root(t, &v, h);
}

/* The remembered-set workout: a fresh object into a container reached,
 * most of the time, from a global (so likely old). */
static void op_alloc_link(torture *t) {
  tt_node *c;
  iso_handle ch;
  int from = tt_chance(t, 700) ? TT_FROM_GLOBALS : TT_FROM_ANY;
  if (!tt_nav(t, TT_CONTAINERS, from, &c, &ch)) {
    if (!t->failed) op_alloc_root(t);
    return;
  }
  iso_handle vh;
  tt_node *n = alloc_any(t, 1, &vh);
  if (!n) return;
  tt_val v = ref_to(n);
  store_into(t, c, ch, &v, vh);
}

/* Sharing and cycles: an object the roots reach, stored once more. */
static void op_link_existing(torture *t) {
  tt_node *c, *o;
  iso_handle ch, oh;
  if (!tt_nav(t, TT_CONTAINERS, TT_FROM_ANY, &c, &ch)) return;
  tt_val v;
  if (tt_nav(t, TT_ANY, TT_FROM_ANY, &o, &oh)) {
    v = ref_to(o);
  } else if (t->failed || !make_imm(t, &v, &oh)) {
    return;
  }
  store_into(t, c, ch, &v, oh);
}

static void op_unlink(torture *t) {
  tt_node *c;
  iso_handle ch, vh;
  tt_val v;
  if (!tt_nav(t, TT_CONTAINERS, TT_FROM_ANY, &c, &ch)) return;
  switch (c->kind) {
    case TT_ARRAY: {
      size_t len = c->u.arr.len;
      if (!len) return;
      unsigned r = (unsigned)tt_below(t, 10);
      if (r < 6) {
        if (make_imm(t, &v, &vh))
          array_store(t, c, ch, tt_below(t, len), &v, vh);
      } else if (r < 8) {
        array_pop(t, c, ch);
      } else {
        array_set_length(t, c, ch, tt_below(t, len));
      }
      return;
    }
    case TT_RECORD: {
      uint32_t slots = tt_rec_types[c->rtype].slots;
      if (slots && make_imm(t, &v, &vh))
        record_store(t, c, ch, (uint32_t)tt_below(t, slots), &v, vh);
      return;
    }
    default: {
      size_t n = c->u.map.n;
      if (!n) return;
      size_t j = tt_below(t, n);
      if (tt_chance(t, 500)) {
        map_delete_entry(t, c, ch, j);
      } else {
        tt_key k = c->u.map.e[j].key;
        iso_handle kh;
        if (make_imm(t, &v, &vh) && entry_key(t, c, ch, j, &kh))
          map_set(t, c, ch, &k, kh, &v, vh);
      }
    }
  }
}

static void op_array_push(torture *t) {
  tt_node *a;
  iso_handle ah, vh;
  tt_val v;
  if (!tt_nav(t, TT_BIT(TT_ARRAY), TT_FROM_ANY, &a, &ah)) return;
  size_t len = a->u.arr.len;
  if (!a->large && len >= TT_SMALL_ARRAY) {
    array_pop(t, a, ah);
    return;
  }
  if (tt_chance(t, 30)) {
    size_t i = len + 1 + tt_below(t, 3);
    iso_status s = iso_array_set(t->iso, iso_get(ah), i, ISO_NULL);
    if (s != ISO_ERR_RANGE)
      tt_fail(t,
              "iso_array_set at %zu on array #%u of length %zu returned "
              "%s, expected ISO_ERR_RANGE",
              i, a->id, len, iso_status_name(s));
    return;
  }
  if (make_value(t, 1, &v, &vh)) array_push(t, a, ah, &v, vh);
}

static void op_array_pop(torture *t) {
  tt_node *a;
  iso_handle ah;
  if (tt_nav(t, TT_BIT(TT_ARRAY), TT_FROM_ANY, &a, &ah)) array_pop(t, a, ah);
}

static void op_array_resize(torture *t) {
  tt_node *a;
  iso_handle ah;
  if (!tt_nav(t, TT_BIT(TT_ARRAY), TT_FROM_ANY, &a, &ah)) return;
  size_t len = a->u.arr.len, nl;
  if (a->large) {
    size_t cut = tt_below(t, 64);
    nl = tt_chance(t, 100) ? tt_below(t, 8) : len - (cut < len ? cut : len);
  } else {
    size_t cap = len + 9 < TT_SMALL_ARRAY ? len + 9 : TT_SMALL_ARRAY;
    nl = tt_below(t, cap);
  }
  array_set_length(t, a, ah, nl);
}

/* An array grown by pushes past the large-object threshold, with a fresh
 * object every 97 elements: old-to-young stores from a large object. */
static void op_array_large(torture *t) {
  if (t->nlarge >= t->max_large) return;
  tt_node *a;
  iso_handle ah;
  if (!tt_nav(t, TT_BIT(TT_ARRAY), TT_FROM_GLOBALS, &a, &ah) || a->large) {
    if (t->failed) return;
    a = alloc_array(t, 1, &ah);
    if (!a) return;
    tt_val v = ref_to(a);
    store_global(t, &v, ah);
    if (t->failed) return;
  }
  count_large(t, a);
  size_t target = TT_LARGE_ARRAY + 64 + tt_below(t, 1500);
  for (size_t i = a->u.arr.len; i < target && !t->failed; i++) {
    iso_scope s;
    iso_scope_open(t->iso, &s);
    tt_val v;
    iso_handle vh;
    if (i % 97 == 0) {
      tt_node *n = alloc_any(t, 2, &vh);
      if (n) v = ref_to(n);
    } else {
      v.tag = TT_INT;
      v.u.i = (int64_t)i;
      vh = tt_handle(t, iso_smi((int64_t)i));
    }
    if (!t->failed) array_push(t, a, ah, &v, vh);
    if (!t->failed) tt_ok(t, iso_scope_close(&s), "iso_scope_close");
  }
}

/* A long chain of pairs (next, payload) in a global: deep graphs for the
 * scavenger's scan and the check, and many old hosts once promoted. */
static void op_build_list(torture *t) {
  size_t n = 20 + tt_below(t, t->p.small ? 80 : 280);
  tt_val hv;
  memset(&hv, 0, sizeof hv);
  hv.tag = TT_NULL;
  iso_handle head = tt_handle(t, ISO_NULL);
  for (size_t i = 0; i < n && head && !t->failed; i++) {
    iso_scope s;
    iso_scope_open(t->iso, &s);
    tt_val pv;
    iso_handle ph;
    tt_node *p = NULL;
    bool ok = tt_chance(t, 500) ? make_imm(t, &pv, &ph)
                                : (p = alloc_any(t, 2, &ph)) != NULL;
    if (p) pv = ref_to(p);
    if (ok) {
      iso_value init[2] = {iso_get(head), iso_get(ph)};
      iso_handle rh = tt_hok(t, iso_record_new_v(t->iso, t->types[0], 2, init),
                             "iso_record_new_v");
      tt_node *r = rh ? tt_node_new(t, TT_RECORD) : NULL;
      if (r && (r->u.rec.slot = calloc(2, sizeof(tt_val))) == NULL)
        tt_fail(t, "out of memory for the model");
      if (r && !t->failed) {
        r->rtype = 0;
        r->u.rec.slot[0] = hv;
        r->u.rec.slot[1] = pv;
        r->u.rec.raw_hash = tt_hash_zeros(0);
        iso_handle_set(head, iso_get(rh));
        hv = ref_to(r);
      }
    }
    if (!t->failed) tt_ok(t, iso_scope_close(&s), "iso_scope_close");
  }
  if (!t->failed && head) store_global(t, &hv, head);
}

static void op_map_set(torture *t) {
  tt_node *m;
  iso_handle mh, vh;
  tt_val v;
  if (!tt_nav(t, TT_BIT(TT_MAP), TT_FROM_ANY, &m, &mh)) return;
  if (make_value(t, 1, &v, &vh)) map_store(t, m, mh, &v, vh);
}

static void op_map_delete(torture *t) {
  tt_node *m;
  iso_handle mh;
  if (!tt_nav(t, TT_BIT(TT_MAP), TT_FROM_ANY, &m, &mh)) return;
  if (m->u.map.n && !tt_chance(t, 100)) {
    map_delete_entry(t, m, mh, tt_below(t, m->u.map.n));
    return;
  }
  unsigned k = absent_string_key(t, m);
  if (k == UINT32_MAX) return;
  iso_handle kh = string_key(t, k);
  if (kh && iso_map_delete(t->iso, iso_get(mh), iso_get(kh)))
    tt_fail(t,
            "iso_map_delete on map #%u removed string key %u, which it "
            "does not hold",
            m->id, k);
}

static void op_map_lookup(torture *t) {
  tt_node *m;
  iso_handle mh;
  if (!tt_nav(t, TT_BIT(TT_MAP), TT_FROM_ANY, &m, &mh)) return;
  size_t n = m->u.map.n;
  if (n && !tt_chance(t, 150)) {
    size_t j = tt_below(t, n);
    iso_handle kh0, vh0, kh;
    if (!tt_map_entry(t, m, mh, j, &kh0, &vh0) || !entry_key(t, m, mh, j, &kh))
      return;
    iso_handle r =
        tt_hok(t, iso_map_get(t->iso, iso_get(mh), iso_get(kh)), "iso_map_get");
    if (!r) return;
    if (iso_get(r) != iso_get(vh0))
      tt_fail(t,
              "map #%u entry %zu: iso_map_get gives 0x%llx, iteration "
              "gives 0x%llx",
              m->id, j, (unsigned long long)iso_get(r),
              (unsigned long long)iso_get(vh0));
    else if (!iso_map_has(t->iso, iso_get(mh), iso_get(kh)))
      tt_fail(t, "map #%u: iso_map_has is false for the key of entry %zu",
              m->id, j);
    return;
  }
  unsigned k = absent_string_key(t, m);
  if (k == UINT32_MAX) return;
  iso_handle kh = string_key(t, k);
  if (!kh) return;
  iso_handle r =
      tt_hok(t, iso_map_get(t->iso, iso_get(mh), iso_get(kh)), "iso_map_get");
  if (r && (iso_get(r) != ISO_UNDEFINED ||
            iso_map_has(t->iso, iso_get(mh), iso_get(kh))))
    tt_fail(t,
            "map #%u: string key %u is absent, but iso_map_get gives "
            "0x%llx or iso_map_has is true",
            m->id, k, (unsigned long long)iso_get(r));
}

static void op_map_clear(torture *t) {
  tt_node *m;
  iso_handle mh;
  if (!tt_nav(t, TT_BIT(TT_MAP), TT_FROM_ANY, &m, &mh)) return;
  if (tt_ok(t, iso_map_clear(t->iso, iso_get(mh)), "iso_map_clear"))
    m->u.map.n = 0;
}

static void op_raw_write(torture *t) {
  tt_node *r;
  iso_handle rh;
  if (tt_nav(t, TT_BIT(TT_RECORD), TT_FROM_ANY, &r, &rh) &&
      tt_rec_types[r->rtype].raw)
    write_raw(t, r, rh);
}

static void op_buffer_write(torture *t) {
  tt_node *b;
  iso_handle bh;
  if (!tt_nav(t, TT_BIT(TT_BUFFER), TT_FROM_ANY, &b, &bh)) return;
  size_t len = b->u.buf.len;
  if (b->u.buf.detached || !len) return;
  unsigned char *tmp = malloc(len);
  if (!tmp) {
    tt_fail(t, "out of memory for buffer bytes");
    return;
  }
  tt_gen_bytes(tt_rnd(t), tmp, len);
  void *d = iso_array_buffer_data(iso_get(bh));
  if (!d) {
    tt_fail(t, "ArrayBuffer #%u (%zu bytes): iso_array_buffer_data is NULL",
            b->id, len);
  } else {
    memcpy(d, tmp, len);
    b->u.buf.hash = tt_hash_bytes(TT_HASH0, tmp, len);
  }
  free(tmp);
}

static void op_buffer_detach(torture *t) {
  tt_node *b;
  iso_handle bh;
  if (!tt_nav(t, TT_BIT(TT_BUFFER), TT_FROM_ANY, &b, &bh) || b->u.buf.detached)
    return;
  if (!tt_ok(t, iso_array_buffer_detach(t->iso, iso_get(bh)),
             "iso_array_buffer_detach"))
    return;
  b->u.buf.detached = true;
  if (b->u.buf.ext && b->u.buf.ext->frees != 1)
    tt_fail(t,
            "detaching external ArrayBuffer #%u ran its free callback "
            "%d times, expected once",
            b->id, b->u.buf.ext->frees);
}

static void op_root_copy(torture *t) {
  tt_node *o;
  iso_handle h;
  tt_val v;
  if (tt_chance(t, 700) && tt_nav(t, TT_ANY, TT_FROM_ANY, &o, &h)) {
    v = ref_to(o);
  } else if (t->failed || !make_imm(t, &v, &h)) {
    return;
  }
  store_root(t, &v, h);
}

static void op_root_drop(torture *t) { drop_root(t); }

static void op_global_free(torture *t) {
  tt_global *g = &t->gl[tt_below(t, TT_GLOBALS)];
  if (!g->g) return;
  iso_global_free(t->iso, g->g);
  g->g = NULL;
  memset(&g->v, 0, sizeof g->v);
}

bool tt_level_open(torture *t) {
  if (t->nlv == TT_LEVELS) return true;
  tt_level *lv = &t->lv[t->nlv];
  memset(lv, 0, sizeof *lv);
  iso_scope_open(t->iso, &lv->scope);
  t->nlv++;
  for (unsigned i = 0; i < TT_LEVEL_SLOTS; i++)
    if (!(lv->slot[i] = tt_handle(t, ISO_UNDEFINED))) return false;
  return true;
}

static void op_scope_open(torture *t) { tt_level_open(t); }

static void op_scope_close(torture *t) {
  if (t->nlv &&
      tt_ok(t, iso_scope_close(&t->lv[t->nlv - 1].scope), "iso_scope_close"))
    t->nlv--;
}

/* Closes the innermost level, keeping one of its handles in the level
 * below. */
static void op_scope_escape(torture *t) {
  if (t->nlv < 2) return;
  tt_level *top = &t->lv[t->nlv - 1], *parent = &t->lv[t->nlv - 2];
  if (parent->nextra == TT_LEVEL_EXTRAS) {
    op_scope_close(t);
    return;
  }
  unsigned k = (unsigned)tt_below(t, TT_LEVEL_SLOTS);
  iso_value w = iso_get(top->slot[k]);
  tt_val v = top->sv[k];
  iso_handle eh = iso_scope_escape(&top->scope, top->slot[k]);
  if (!eh) {
    tt_fail(t, "iso_scope_escape returned NULL: %s", iso_last_error());
    return;
  }
  t->nlv--;
  if (iso_get(eh) != w) {
    tt_fail(t,
            "iso_scope_escape: the new handle holds 0x%llx, the escaped "
            "one held 0x%llx",
            (unsigned long long)iso_get(eh), (unsigned long long)w);
    return;
  }
  parent->extra[parent->nextra] = eh;
  parent->ev[parent->nextra++] = v;
}

static void op_gc_minor(torture *t) {
  uint64_t before = t->gc_total;
  if (tt_ok(t, iso_gc(t->iso, ISO_GC_MINOR), "iso_gc(ISO_GC_MINOR)") &&
      t->gc_total == before)
    tt_fail(t, "iso_gc(ISO_GC_MINOR) ran no collection the GC callback saw");
}

static void op_gc_full(torture *t) {
  uint64_t before = t->fulls;
  if (tt_ok(t, iso_gc(t->iso, ISO_GC_FULL), "iso_gc(ISO_GC_FULL)") &&
      t->fulls == before)
    tt_fail(t,
            "iso_gc(ISO_GC_FULL) ran no full collection the GC callback "
            "saw");
}

static void op_safepoint(torture *t) {
  tt_ok(t, iso_safepoint(t->iso), "iso_safepoint");
}

static void op_check(torture *t) { torture_check(t); }

typedef struct tt_op {
  const char *name;
  unsigned weight;
  void (*fn)(torture *t);
  bool own_scope; /* runs outside the step's handle scope */
} tt_op;

static const tt_op tt_ops[] = {
    {"alloc to root", 50, op_alloc_root, false},
    {"alloc and link", 180, op_alloc_link, false},
    {"link existing", 60, op_link_existing, false},
    {"unlink", 45, op_unlink, false},
    {"array push", 40, op_array_push, false},
    {"array pop", 20, op_array_pop, false},
    {"array resize", 8, op_array_resize, false},
    {"array grow large", 2, op_array_large, false},
    {"build list", 4, op_build_list, false},
    {"map set", 60, op_map_set, false},
    {"map delete", 18, op_map_delete, false},
    {"map lookup", 40, op_map_lookup, false},
    {"map clear", 1, op_map_clear, false},
    {"record raw write", 25, op_raw_write, false},
    {"buffer write", 20, op_buffer_write, false},
    {"buffer detach", 5, op_buffer_detach, false},
    {"root copy", 30, op_root_copy, false},
    {"root drop", 12, op_root_drop, false},
    {"global free", 4, op_global_free, false},
    {"scope open", 15, op_scope_open, true},
    {"scope close", 12, op_scope_close, true},
    {"scope escape", 6, op_scope_escape, true},
    {"gc minor", 3, op_gc_minor, true},
    {"gc full", 2, op_gc_full, true},
    {"safepoint", 5, op_safepoint, true},
    {"check", 3, op_check, true},
};

void tt_populate(torture *t) {
  iso_scope s;
  iso_scope_open(t->iso, &s);
  t->op = "populate";
  for (unsigned g = 0; g < 4 && !t->failed; g++) {
    iso_handle h;
    tt_node *n = g == 1   ? alloc_map(t, 1, &h)
                 : g == 2 ? alloc_record_of(t, 1, 5, &h)
                          : alloc_array(t, 1, &h);
    if (!n) break;
    t->gl[g].g = iso_global_new(t->iso, iso_get(h));
    if (!t->gl[g].g) {
      tt_fail(t, "iso_global_new returned NULL: %s", iso_last_error());
      break;
    }
    t->gl[g].v = ref_to(n);
  }
  if (!t->failed) tt_ok(t, iso_scope_close(&s), "iso_scope_close");
}

/* Over budget: drop roots until the next checks find enough dead. */
static void shed(torture *t) {
  t->op = "shed";
  for (int i = 0; i < 32 && !t->failed; i++) {
    if (t->nnodes <= t->p.max_objects * 3 / 4) return;
    if (!drop_root(t)) return;
    if (i % 4 == 3) torture_check(t);
  }
}

bool torture_step(torture *t) {
  if (t->failed || t->closed) return false;
  t->step++;
  t->st.steps++;
  unsigned total = 0;
  for (size_t i = 0; i < sizeof tt_ops / sizeof tt_ops[0]; i++)
    total += tt_ops[i].weight;
  unsigned r = (unsigned)tt_below(t, total);
  const tt_op *op = tt_ops;
  while (r >= op->weight) r -= op++->weight;
  t->op = op->name;
  if (op->own_scope) {
    op->fn(t);
  } else {
    iso_scope s;
    iso_scope_open(t->iso, &s);
    op->fn(t);
    if (!t->failed) tt_ok(t, iso_scope_close(&s), "iso_scope_close");
  }
  if (!t->failed && (t->gc_total != t->gc_checked || t->step % 256 == 0)) {
    snprintf(t->opbuf, sizeof t->opbuf, "%s after %s",
             t->gc_total != t->gc_checked ? "check" : "periodic check",
             op->name);
    t->op = t->opbuf;
    torture_check(t);
  }
  if (!t->failed && t->nnodes > t->p.max_objects) {
    torture_check(t);
    shed(t);
  }
  return !t->failed;
}
