/*
 * The graph torture engine: its lifecycle, the shadow model, the roots,
 * and the check that compares the heap with the model.
 *
 * How the check works. The heap and the model are walked together from
 * the roots. An object is reached through a word of the heap (a root, an
 * element, a slot, a map key or value) at a place where the model expects
 * node n. The first time n is reached in a check, the address found there
 * becomes n's address for the rest of the check (no call made during a
 * check allocates, so nothing moves); every later place that expects n
 * must hold that same address, and an address already taken by another
 * node is a mismatch. So a lost object, a stale pointer, two copies of one
 * object, or a slot pointing at the wrong object all show as a mismatch
 * at the first place they are seen, reported with the object's id, the
 * place, what was expected and what was found, and a checksum of the
 * object's content and the ids it references, expected and actual.
 *
 * Nodes that no check reaches are dead: the engine can no longer name
 * them, so the model drops them at the end of the check.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "torture_priv.h"

/* Raw sizes are chosen to cover: none, word multiples, an odd size that
 * needs rounding, many slots, and a record of the large-object space. */
const tt_rec_type tt_rec_types[TT_REC_TYPES] = {
    {"torture.pair", 2, 0, false},     {"torture.node", 4, 24, false},
    {"torture.blob", 1, 200, false},   {"torture.leaf", 0, 16, false},
    {"torture.odd", 3, 13, false},     {"torture.wide", TT_MAX_SLOTS, 8, false},
    {"torture.huge", 2, 140000, true},
};

/* ---- random numbers ---- */

uint64_t tt_splitmix(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t torture_round_seed(uint64_t seed, uint64_t round) {
  uint64_t s = seed ^ (round * 0xd1342543de82ef95ull);
  tt_splitmix(&s);
  return tt_splitmix(&s);
}

/* ---- content ---- */

uint64_t tt_hash_word(uint64_t h, uint64_t w) {
  h = (h ^ w) * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  return h ^ (h >> 29);
}

uint64_t tt_hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h = tt_hash_word(h, w);
  }
  uint64_t w = 0;
  if (n > i) memcpy(&w, b + i, n - i);
  return tt_hash_word(tt_hash_word(h, w), n);
}

/* The same as tt_hash_bytes over n zero bytes, without the bytes. */
uint64_t tt_hash_zeros(size_t n) {
  uint64_t h = TT_HASH0;
  for (size_t i = 0; i + 8 <= n; i += 8) h = tt_hash_word(h, 0);
  return tt_hash_word(tt_hash_word(h, 0), n);
}

uint32_t tt_fnv1a32(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 16777619u;
  }
  return h;
}

void tt_gen_text(uint64_t seed, char *buf, size_t len) {
  uint64_t s = seed;
  size_t i = 0;
  while (i < len) {
    uint64_t r = tt_splitmix(&s);
    for (int k = 0; k < 4 && i < len; k++, r >>= 16) {
      unsigned pick = r & 31, arg = (unsigned)(r >> 5) & 127;
      if (pick == 0 && len - i >= 2) { /* U+00C0..U+00FF */
        buf[i++] = (char)0xc3;
        buf[i++] = (char)(0x80 | (arg & 63));
      } else if (pick == 1 && len - i >= 3) { /* U+20AC */
        buf[i++] = (char)0xe2;
        buf[i++] = (char)0x82;
        buf[i++] = (char)0xac;
      } else if (pick == 2 && len - i >= 4) { /* U+1F600..U+1F60F */
        buf[i++] = (char)0xf0;
        buf[i++] = (char)0x9f;
        buf[i++] = (char)0x98;
        buf[i++] = (char)(0x80 | (arg & 15));
      } else if (pick == 3) {
        buf[i++] = 0;
      } else {
        buf[i++] = (char)(' ' + arg % 95);
      }
    }
  }
}

void tt_gen_bytes(uint64_t seed, void *buf, size_t len) {
  unsigned char *b = buf;
  uint64_t s = seed;
  for (size_t i = 0; i < len; i += 8) {
    uint64_t w = tt_splitmix(&s);
    memcpy(b + i, &w, len - i < 8 ? len - i : 8);
  }
}

size_t tt_key_text(unsigned k, char *buf, size_t cap) {
  int n;
  if (k < 40) {
    n = snprintf(buf, cap, "key-%u", k);
  } else {
    /* A few long keys, so hashing and comparing go past the first words. */
    n = snprintf(buf, cap, "long-key-%u/", k);
    size_t want = 100 + 13 * (size_t)(k - 40);
    while ((size_t)n < want && (size_t)n + 1 < cap) {
      buf[n] = (char)('a' + (n * 7 + (int)k) % 26);
      n++;
    }
    buf[n] = 0;
  }
  return (size_t)n;
}

double tt_num_key(unsigned k) {
  static const double keys[TT_NUM_KEYS] = {
      0.0,
      1.0,
      -1.0,
      2.5,
      -7.25,
      0.1,
      1e300,
      -1e-300,
      1099511627776.0,       /* 2^40: a small integer */
      4611686018427387904.0, /* 2^62: just past the small integers */
      INFINITY,
      -INFINITY,
      NAN,
      3.0,
  };
  return keys[k % TT_NUM_KEYS];
}

bool tt_key_equal(const tt_key *a, const tt_key *b) {
  if (a->tag != b->tag) return false;
  switch (a->tag) {
    case TT_KEY_STR:
      return a->u.str == b->u.str;
    case TT_KEY_NUM:
      return (isnan(a->u.num) && isnan(b->u.num)) || a->u.num == b->u.num;
    default:
      return a->u.n == b->u.n;
  }
}

/* ---- failures ---- */

void tt_fail(torture *t, const char *fmt, ...) {
  if (t->failed) return;
  t->failed = true;
  int n = snprintf(t->err, sizeof t->err,
                   "step %llu (%s): ", (unsigned long long)t->step,
                   t->op ? t->op : "setup");
  if (n < 0 || (size_t)n >= sizeof t->err) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->err + n, sizeof t->err - (size_t)n, fmt, ap);
  va_end(ap);
}

bool tt_ok(torture *t, iso_status s, const char *what) {
  if (s == ISO_OK) return true;
  tt_fail(t, "%s failed: %s: %s", what, iso_status_name(s), iso_last_error());
  return false;
}

iso_handle tt_hok(torture *t, iso_handle h, const char *what) {
  if (!h)
    tt_fail(t, "%s returned NULL: %s: %s", what,
            iso_status_name(iso_last_status()), iso_last_error());
  return h;
}

iso_handle tt_handle(torture *t, iso_value v) {
  return tt_hok(t, iso_handle_new(t->iso, v), "iso_handle_new");
}

/* ---- the model ---- */

iso_kind tt_iso_kind(int kind) {
  static const iso_kind map[TT_KINDS] = {
      ISO_KIND_STRING, ISO_KIND_DOUBLE, ISO_KIND_ARRAY,
      ISO_KIND_MAP,    ISO_KIND_RECORD, ISO_KIND_ARRAY_BUFFER,
  };
  return map[kind];
}

const char *tt_kind_name(int kind) { return iso_kind_name(tt_iso_kind(kind)); }

tt_node *tt_node_new(torture *t, int kind) {
  if (t->nnodes == t->capnodes) {
    size_t cap = t->capnodes ? t->capnodes * 2 : 256;
    tt_node **nn = realloc(t->nodes, cap * sizeof *nn);
    if (!nn) {
      tt_fail(t, "out of memory for the model");
      return NULL;
    }
    t->nodes = nn;
    t->capnodes = cap;
  }
  tt_node *n = calloc(1, sizeof *n);
  if (!n) {
    tt_fail(t, "out of memory for the model");
    return NULL;
  }
  n->id = ++t->next_id;
  n->kind = (uint8_t)kind;
  n->index = t->nnodes;
  n->born_gc = t->gc_total;
  n->born_step = t->step;
  t->nodes[t->nnodes++] = n;
  t->st.allocations++;
  if (t->nnodes > t->st.max_live) t->st.max_live = t->nnodes;
  return n;
}

static void node_free(torture *t, tt_node *n) {
  tt_node *last = t->nodes[--t->nnodes];
  t->nodes[n->index] = last;
  last->index = n->index;
  if (n->large) t->nlarge--;
  switch (n->kind) {
    case TT_ARRAY:
      free(n->u.arr.e);
      break;
    case TT_MAP:
      free(n->u.map.e);
      break;
    case TT_RECORD:
      free(n->u.rec.slot);
      break;
    default:
      break;
  }
  free(n);
}

iso_value tt_imm_word(const tt_val *v) {
  switch (v->tag) {
    case TT_NULL:
      return ISO_NULL;
    case TT_TRUE:
      return ISO_TRUE;
    case TT_FALSE:
      return ISO_FALSE;
    case TT_INT:
      return iso_smi(v->u.i);
    default:
      return ISO_UNDEFINED;
  }
}

void tt_note_store(torture *t, const tt_node *c, const tt_val *v) {
  if (v->tag != TT_REF) return;
  /* The fresh object has seen no collection; the host has survived two,
   * so the library has promoted it (or it never was young). */
  if (v->u.n->born_gc == t->gc_total &&
      (c->large || t->gc_total - c->born_gc >= 2))
    t->st.old_to_young++;
}

tt_ext *tt_ext_new(torture *t, size_t len) {
  if (t->nexts == t->capexts) {
    size_t cap = t->capexts ? t->capexts * 2 : 64;
    tt_ext **ne = realloc(t->exts, cap * sizeof *ne);
    if (!ne) return NULL;
    t->exts = ne;
    t->capexts = cap;
  }
  tt_ext *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->data = malloc(len ? len : 1);
  if (!e->data) {
    free(e);
    return NULL;
  }
  e->len = len;
  t->exts[t->nexts++] = e;
  t->st.external_buffers++;
  return e;
}

/* Runs inside the library (a collection, a detach, or iso_isolate_free):
 * touches only the record, never the isolate. A second call must not
 * free the memory twice; torture_close reports it. */
void tt_ext_free_cb(void *data, size_t len, void *ctx) {
  tt_ext *e = ctx;
  e->frees++;
  if (data != e->data || len != e->len) e->bad_args = true;
  if (e->frees == 1) free(e->data);
}

/* ---- roots ---- */

size_t tt_roots(torture *t, tt_root *out, size_t cap, int from) {
  size_t n = 0;
  if (from != TT_FROM_HANDLES) {
    for (unsigned g = 0; g < TT_GLOBALS && n < cap; g++)
      if (t->gl[g].g)
        out[n++] = (tt_root){&t->gl[g].v, NULL, &t->gl[g], "global", g, 0};
  }
  if (from != TT_FROM_GLOBALS) {
    for (unsigned l = 0; l < t->nlv; l++) {
      tt_level *lv = &t->lv[l];
      for (unsigned i = 0; i < TT_LEVEL_SLOTS && n < cap; i++)
        out[n++] = (tt_root){&lv->sv[i], lv->slot[i], NULL, "handle", l, i};
      for (unsigned i = 0; i < lv->nextra && n < cap; i++)
        out[n++] =
            (tt_root){&lv->ev[i], lv->extra[i], NULL, "escaped handle", l, i};
    }
  }
  return n;
}

/* A handle (in the current scope) to the value of a root. */
static iso_handle root_get(torture *t, const tt_root *r) {
  if (r->gl)
    return tt_hok(t, iso_global_get(t->iso, r->gl->g), "iso_global_get");
  return tt_handle(t, iso_get(r->h));
}

/* ---- navigation ---- */

/* Whether the handle holds the kind of object node n is; if not, the
 * engine fails with a message that says where the handle came from. */
static bool kind_matches(torture *t, const tt_node *n, iso_handle h,
                         const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool kind_matches(torture *t, const tt_node *n, iso_handle h,
                         const char *fmt, ...) {
  iso_kind k = iso_kind_of(iso_get(h));
  if (k == tt_iso_kind(n->kind)) return true;
  char how[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(how, sizeof how, fmt, ap);
  va_end(ap);
  tt_fail(t, "%s: expected #%u (kind %s), found kind %s (word 0x%llx)", how,
          n->id, tt_kind_name(n->kind), iso_kind_name(k),
          (unsigned long long)iso_get(h));
  return false;
}

bool tt_map_entry(torture *t, tt_node *m, iso_handle mh, size_t j,
                  iso_handle *kh, iso_handle *vh) {
  size_t cursor = 0;
  for (size_t i = 0; i <= j; i++) {
    if (!iso_map_next(t->iso, iso_get(mh), &cursor, kh, vh)) {
      tt_fail(t,
              "map #%u: iteration ended after %zu entries, the model "
              "has %zu",
              m->id, i, m->u.map.n);
      return false;
    }
  }
  return true;
}

/* A random reference held by n, as a node and a handle. */
static bool child_of(torture *t, tt_node *n, iso_handle h, tt_node **cn,
                     iso_handle *ch) {
  size_t pick[2 * TT_MAP_MAX + TT_SMALL_ARRAY + TT_MAX_SLOTS];
  size_t np = 0, idx;
  switch (n->kind) {
    case TT_ARRAY: {
      size_t len = n->u.arr.len;
      if (len <= TT_SMALL_ARRAY) {
        for (size_t i = 0; i < len; i++)
          if (n->u.arr.e[i].tag == TT_REF) pick[np++] = i;
      } else {
        for (int probe = 0; probe < 24 && !np; probe++) {
          size_t i = tt_below(t, len);
          if (n->u.arr.e[i].tag == TT_REF) pick[np++] = i;
        }
      }
      if (!np) return false;
      idx = pick[tt_below(t, np)];
      *cn = n->u.arr.e[idx].u.n;
      *ch = tt_hok(t, iso_array_get(t->iso, iso_get(h), idx), "iso_array_get");
      return *ch && kind_matches(t, *cn, *ch, "from array #%u element %zu",
                                 n->id, idx);
    }
    case TT_RECORD: {
      uint32_t slots = tt_rec_types[n->rtype].slots;
      for (uint32_t i = 0; i < slots; i++)
        if (n->u.rec.slot[i].tag == TT_REF) pick[np++] = i;
      if (!np) return false;
      idx = pick[tt_below(t, np)];
      *cn = n->u.rec.slot[idx].u.n;
      *ch = tt_hok(t, iso_record_get(t->iso, iso_get(h), (uint32_t)idx),
                   "iso_record_get");
      return *ch &&
             kind_matches(t, *cn, *ch, "from record #%u slot %zu", n->id, idx);
    }
    case TT_MAP: {
      for (size_t j = 0; j < n->u.map.n; j++) {
        if (n->u.map.e[j].key.tag == TT_KEY_REF) pick[np++] = 2 * j;
        if (n->u.map.e[j].val.tag == TT_REF) pick[np++] = 2 * j + 1;
      }
      if (!np) return false;
      idx = pick[tt_below(t, np)];
      iso_handle kh = NULL, vh = NULL;
      if (!tt_map_entry(t, n, h, idx / 2, &kh, &vh)) return false;
      const tt_entry *e = &n->u.map.e[idx / 2];
      *cn = idx % 2 ? e->val.u.n : e->key.u.n;
      *ch = idx % 2 ? vh : kh;
      return *ch && kind_matches(t, *cn, *ch, "from map #%u %s of entry %zu",
                                 n->id, idx % 2 ? "value" : "key", idx / 2);
    }
    default:
      return false;
  }
}

bool tt_nav(torture *t, unsigned kinds, int from, tt_node **on,
            iso_handle *oh) {
  tt_root roots[TT_GLOBALS + TT_LEVELS * (TT_LEVEL_SLOTS + TT_LEVEL_EXTRAS)];
  size_t nr = tt_roots(t, roots, sizeof roots / sizeof roots[0], from), k = 0;
  for (size_t i = 0; i < nr; i++)
    if (roots[i].v->tag == TT_REF) roots[k++] = roots[i];
  if (!k) return false;
  for (int attempt = 0; attempt < 6 && !t->failed; attempt++) {
    tt_root *r = &roots[tt_below(t, k)];
    tt_node *n = r->v->u.n;
    iso_handle h = root_get(t, r);
    if (!h || !kind_matches(t, n, h, "%s %u/%u", r->what, r->a, r->b))
      return false;
    unsigned depth = (unsigned)tt_below(t, 5);
    for (unsigned d = 0;; d++) {
      bool fits = (kinds & TT_BIT(n->kind)) != 0;
      if (fits && d >= depth) break;
      tt_node *cn;
      iso_handle ch;
      if (d >= depth + 4 || !child_of(t, n, h, &cn, &ch)) {
        if (t->failed) return false;
        if (fits) break;
        n = NULL;
        break;
      }
      n = cn;
      h = ch;
    }
    if (n) {
      *on = n;
      *oh = h;
      return true;
    }
  }
  return false;
}

/* ---- the check ---- */

static bool addr_reset(torture *t) {
  size_t want = 64;
  while (want < 2 * t->nnodes + 64) want *= 2;
  if (want > t->acap) {
    free(t->akeys);
    free(t->avals);
    t->akeys = calloc(want, sizeof *t->akeys);
    t->avals = calloc(want, sizeof *t->avals);
    t->acap = t->akeys && t->avals ? want : 0;
    if (!t->acap) {
      tt_fail(t, "out of memory for the check");
      return false;
    }
  } else {
    memset(t->akeys, 0, t->acap * sizeof *t->akeys);
  }
  return true;
}

static size_t addr_slot(const torture *t, iso_value a) {
  return (size_t)(((a >> 3) * 0x9e3779b97f4a7c15ull) >> 20) & (t->acap - 1);
}

static tt_node *addr_find(const torture *t, iso_value a) {
  for (size_t i = addr_slot(t, a);; i = (i + 1) & (t->acap - 1)) {
    if (t->akeys[i] == a) return t->avals[i];
    if (t->akeys[i] == 0) return NULL;
  }
}

/* The table holds at most the nodes (it was sized for twice as many), so
 * it never fills. */
static void addr_put(torture *t, iso_value a, tt_node *n) {
  size_t i = addr_slot(t, a);
  while (t->akeys[i] != 0) i = (i + 1) & (t->acap - 1);
  t->akeys[i] = a;
  t->avals[i] = n;
}

static void work_push(torture *t, tt_node *n, iso_value v) {
  if (t->nwork == t->capwork) {
    size_t cap = t->capwork ? t->capwork * 2 : 256;
    tt_work *w = realloc(t->work, cap * sizeof *w);
    if (!w) {
      tt_fail(t, "out of memory for the check");
      return;
    }
    t->work = w;
    t->capwork = cap;
  }
  t->work[t->nwork++] = (tt_work){n, v};
}

enum { E_UNDEF = 1, E_NULL, E_TRUE, E_FALSE, E_INT, E_REF, E_OBJ, E_BAD };

static void enc_expected(const tt_val *v, uint64_t *a, uint64_t *b) {
  *b = 0;
  switch (v->tag) {
    case TT_NULL:
      *a = E_NULL;
      break;
    case TT_TRUE:
      *a = E_TRUE;
      break;
    case TT_FALSE:
      *a = E_FALSE;
      break;
    case TT_INT:
      *a = E_INT;
      *b = (uint64_t)v->u.i;
      break;
    case TT_REF:
      *a = E_REF;
      *b = v->u.n->id;
      break;
    default:
      *a = E_UNDEF;
  }
}

/* Encodes a word found in the heap. A reference to an address no node
 * has taken yet in this check becomes the expected node (if a node is
 * expected and is still unplaced), which then waits on the work stack to
 * have its own content compared. */
static void enc_actual(torture *t, const tt_val *exp, iso_value w, uint64_t *a,
                       uint64_t *b) {
  *b = 0;
  if (w == ISO_UNDEFINED) {
    *a = E_UNDEF;
  } else if (w == ISO_NULL) {
    *a = E_NULL;
  } else if (w == ISO_TRUE) {
    *a = E_TRUE;
  } else if (w == ISO_FALSE) {
    *a = E_FALSE;
  } else if (iso_is_smi(w)) {
    *a = E_INT;
    *b = (uint64_t)iso_smi_value(w);
  } else if (iso_is_ref(w)) {
    tt_node *m = addr_find(t, w);
    if (!m && exp->tag == TT_REF && exp->u.n->epoch != t->epoch) {
      m = exp->u.n;
      m->epoch = t->epoch;
      m->addr = w;
      addr_put(t, w, m);
      work_push(t, m, w);
    }
    *a = m ? E_REF : E_OBJ;
    *b = m ? m->id : w;
  } else {
    *a = E_BAD;
    *b = w;
  }
}

static void desc_expected(const tt_val *v, char *buf, size_t cap) {
  switch (v->tag) {
    case TT_NULL:
      snprintf(buf, cap, "null");
      break;
    case TT_TRUE:
      snprintf(buf, cap, "true");
      break;
    case TT_FALSE:
      snprintf(buf, cap, "false");
      break;
    case TT_INT:
      snprintf(buf, cap, "integer %lld", (long long)v->u.i);
      break;
    case TT_REF:
      snprintf(buf, cap, "#%u (%s)", v->u.n->id, tt_kind_name(v->u.n->kind));
      break;
    default:
      snprintf(buf, cap, "undefined");
  }
}

static void desc_actual(torture *t, iso_value w, char *buf, size_t cap) {
  if (w == ISO_UNDEFINED || w == ISO_NULL || w == ISO_TRUE || w == ISO_FALSE) {
    snprintf(buf, cap, "%s", iso_kind_name(iso_kind_of(w)));
    if (w == ISO_TRUE || w == ISO_FALSE)
      snprintf(buf, cap, "%s", w == ISO_TRUE ? "true" : "false");
  } else if (iso_is_smi(w)) {
    snprintf(buf, cap, "integer %lld", (long long)iso_smi_value(w));
  } else if (iso_is_ref(w)) {
    tt_node *m = addr_find(t, w);
    if (m)
      snprintf(buf, cap, "#%u (%s, at 0x%llx)", m->id, tt_kind_name(m->kind),
               (unsigned long long)w);
    else
      snprintf(buf, cap, "a reference 0x%llx (kind %s) to no expected object",
               (unsigned long long)w, iso_kind_name(iso_kind_of(w)));
  } else {
    snprintf(buf, cap, "invalid word 0x%llx", (unsigned long long)w);
  }
}

/* One object's comparison: checksums of the expected and the actual
 * content (with the ids of referenced objects), and the first place they
 * differ. */
typedef struct tt_cmp {
  torture *t;
  uint64_t he, ha;
  bool bad;
  char what[400];
} tt_cmp;

static void cmp_init(tt_cmp *c, torture *t) {
  c->t = t;
  c->he = c->ha = TT_HASH0;
  c->bad = false;
  c->what[0] = 0;
}

static void cmp_scalar(tt_cmp *c, const char *what, uint64_t e, uint64_t a) {
  c->he = tt_hash_word(c->he, e);
  c->ha = tt_hash_word(c->ha, a);
  if (e != a && !c->bad) {
    c->bad = true;
    snprintf(c->what, sizeof c->what,
             "%s: expected %llu (0x%llx), actual %llu (0x%llx)", what,
             (unsigned long long)e, (unsigned long long)e,
             (unsigned long long)a, (unsigned long long)a);
  }
}

static void cmp_edge(tt_cmp *c, const char *where, size_t idx, const tt_val *e,
                     iso_value w) {
  uint64_t e0, e1, a0, a1;
  enc_expected(e, &e0, &e1);
  enc_actual(c->t, e, w, &a0, &a1);
  c->he = tt_hash_word(tt_hash_word(c->he, e0), e1);
  c->ha = tt_hash_word(tt_hash_word(c->ha, a0), a1);
  if ((e0 != a0 || e1 != a1) && !c->bad) {
    char de[96], da[160];
    desc_expected(e, de, sizeof de);
    desc_actual(c->t, w, da, sizeof da);
    c->bad = true;
    snprintf(c->what, sizeof c->what, "%s %zu: expected %s, actual %s", where,
             idx, de, da);
  }
}

static uint64_t num_bits(double d, bool zero_is_zero) {
  uint64_t b;
  if (isnan(d)) return 0x7ff8000000000000ull; /* every NaN is the same */
  if (zero_is_zero && d == 0) d = 0.0;
  memcpy(&b, &d, 8);
  return b;
}

static void check_string(tt_cmp *c, const tt_node *n, iso_value v) {
  size_t len = iso_string_length(v);
  const char *d = iso_string_data(v);
  cmp_scalar(c, "byte length", n->u.str.len, len);
  cmp_scalar(c, "content hash", n->u.str.hash,
             d ? tt_hash_bytes(TT_HASH0, d, len) : 0);
  cmp_scalar(c, "terminating NUL", 0, d ? (unsigned char)d[len] : 1);
  cmp_scalar(c, "iso_string_hash", n->u.str.fnv, iso_string_hash(v));
}

static void check_array(tt_cmp *c, const tt_node *n, iso_value v) {
  torture *t = c->t;
  size_t len = iso_array_length(v);
  cmp_scalar(c, "array length", n->u.arr.len, len);
  if (len > n->u.arr.len) len = n->u.arr.len;
  /* Element handles pile up in the scope; a scope per run of them keeps
   * the handle blocks small on large arrays. */
  iso_scope s;
  iso_scope_open(t->iso, &s);
  for (size_t i = 0; i < len && !t->failed; i++) {
    if (i % 512 == 511) {
      if (!tt_ok(t, iso_scope_close(&s), "iso_scope_close")) return;
      iso_scope_open(t->iso, &s);
    }
    iso_handle h = iso_array_get(t->iso, v, i);
    if (!h) {
      cmp_scalar(c, "iso_array_get succeeds at element", i, ~(uint64_t)0);
      break;
    }
    cmp_edge(c, "element", i, &n->u.arr.e[i], iso_get(h));
  }
  tt_ok(t, iso_scope_close(&s), "iso_scope_close");
}

static void check_key(tt_cmp *c, size_t j, const tt_key *k, iso_value w) {
  char what[96], text[512];
  switch (k->tag) {
    case TT_KEY_STR: {
      size_t len = tt_key_text(k->u.str, text, sizeof text);
      uint64_t a = 0;
      if (iso_kind_of(w) == ISO_KIND_STRING) {
        const char *d = iso_string_data(w);
        a = d ? tt_hash_bytes(TT_HASH0, d, iso_string_length(w)) : 1;
      }
      snprintf(what, sizeof what, "key of entry %zu (string key %u) hash", j,
               k->u.str);
      cmp_scalar(c, what, tt_hash_bytes(TT_HASH0, text, len), a);
      break;
    }
    case TT_KEY_NUM: {
      uint64_t a = iso_is_number(w) ? num_bits(iso_number_value(w), true)
                                    : 0xfff0dead0000beefull;
      snprintf(what, sizeof what, "key of entry %zu (number %g) bits", j,
               k->u.num);
      cmp_scalar(c, what, num_bits(k->u.num, true), a);
      break;
    }
    default: {
      tt_val e = {TT_REF, {.n = k->u.n}};
      cmp_edge(c, "key of entry", j, &e, w);
    }
  }
}

static void check_map(tt_cmp *c, const tt_node *n, iso_value v) {
  torture *t = c->t;
  cmp_scalar(c, "map size", n->u.map.n, iso_map_size(v));
  iso_scope s;
  iso_scope_open(t->iso, &s);
  size_t cursor = 0, j = 0;
  iso_handle kh, vh;
  while (j < n->u.map.n && iso_map_next(t->iso, v, &cursor, &kh, &vh)) {
    check_key(c, j, &n->u.map.e[j].key, iso_get(kh));
    cmp_edge(c, "value of entry", j, &n->u.map.e[j].val, iso_get(vh));
    j++;
  }
  cmp_scalar(c, "entries iterated", n->u.map.n, j);
  tt_ok(t, iso_scope_close(&s), "iso_scope_close");
}

static void check_record(tt_cmp *c, const tt_node *n, iso_value v) {
  const tt_rec_type *rt = &tt_rec_types[n->rtype];
  cmp_scalar(c, "type", c->t->types[n->rtype], iso_type_of(v));
  uint32_t slots = iso_record_slot_count(v);
  cmp_scalar(c, "slot count", rt->slots, slots);
  if (slots == rt->slots)
    for (uint32_t i = 0; i < slots; i++)
      cmp_edge(c, "slot", i, &n->u.rec.slot[i], iso_record_slot(v, i));
  size_t raw = iso_record_raw_size(v);
  cmp_scalar(c, "raw size", rt->raw, raw);
  if (rt->raw && raw == rt->raw) {
    const void *p = iso_record_raw(v);
    cmp_scalar(c, "raw bytes hash", n->u.rec.raw_hash,
               p ? tt_hash_bytes(TT_HASH0, p, raw) : 0);
  }
}

static void check_buffer(tt_cmp *c, const tt_node *n, iso_value v) {
  size_t want = n->u.buf.detached ? 0 : n->u.buf.len;
  size_t len = iso_array_buffer_byte_length(v);
  const void *d = iso_array_buffer_data(v);
  cmp_scalar(c, "detached", n->u.buf.detached, iso_array_buffer_is_detached(v));
  cmp_scalar(c, "byte length", want, len);
  if (want == 0) {
    cmp_scalar(c, "data pointer of an empty buffer", 0, (uintptr_t)d);
  } else if (len == want) {
    cmp_scalar(c, "content hash", n->u.buf.hash,
               d ? tt_hash_bytes(TT_HASH0, d, len) : 0);
  }
  const tt_ext *e = n->u.buf.ext;
  if (e && !n->u.buf.detached) {
    cmp_scalar(c, "external data pointer", (uintptr_t)e->data, (uintptr_t)d);
    cmp_scalar(c, "free callbacks run while alive", 0, (uint64_t)e->frees);
  }
}

static void check_double(tt_cmp *c, const tt_node *n, iso_value v) {
  cmp_scalar(c, "bits", num_bits(n->u.d, false),
             num_bits(iso_number_value(v), false));
}

static void check_node(torture *t, tt_node *n, iso_value v) {
  iso_kind k = iso_kind_of(v);
  if (k != tt_iso_kind(n->kind)) {
    tt_fail(t,
            "object #%u (made at step %llu): expected kind %s, found "
            "kind %s (word 0x%llx)",
            n->id, (unsigned long long)n->born_step, tt_kind_name(n->kind),
            iso_kind_name(k), (unsigned long long)v);
    return;
  }
  tt_cmp c;
  cmp_init(&c, t);
  switch (n->kind) {
    case TT_STRING:
      check_string(&c, n, v);
      break;
    case TT_DOUBLE:
      check_double(&c, n, v);
      break;
    case TT_ARRAY:
      check_array(&c, n, v);
      break;
    case TT_MAP:
      check_map(&c, n, v);
      break;
    case TT_RECORD:
      check_record(&c, n, v);
      break;
    default:
      check_buffer(&c, n, v);
  }
  t->st.objects_checked++;
  if (c.bad)
    tt_fail(t,
            "object #%u (%s%s%s, made at step %llu): %s; checksum "
            "expected %016llx, actual %016llx",
            n->id, tt_kind_name(n->kind), n->kind == TT_RECORD ? " " : "",
            n->kind == TT_RECORD ? tt_rec_types[n->rtype].name : "",
            (unsigned long long)n->born_step, c.what, (unsigned long long)c.he,
            (unsigned long long)c.ha);
}

static void check_roots(torture *t) {
  tt_root roots[TT_GLOBALS + TT_LEVELS * (TT_LEVEL_SLOTS + TT_LEVEL_EXTRAS)];
  size_t nr = tt_roots(t, roots, sizeof roots / sizeof roots[0], TT_FROM_ANY);
  for (size_t i = 0; i < nr && !t->failed; i++) {
    tt_root *r = &roots[i];
    iso_value w = r->gl ? iso_global_value(r->gl->g) : iso_get(r->h);
    tt_cmp c;
    cmp_init(&c, t);
    cmp_edge(&c, "value", 0, r->v, w);
    if (c.bad) tt_fail(t, "root %s %u/%u: %s", r->what, r->a, r->b, c.what);
  }
}

/* Buffers the model holds must be counted by the library, whatever it
 * has not freed yet. */
static void check_accounting(torture *t) {
  size_t live = 0;
  for (size_t i = 0; i < t->nnodes; i++) {
    const tt_node *n = t->nodes[i];
    if (n->kind == TT_BUFFER && !n->u.buf.detached) live += n->u.buf.len;
  }
  iso_memory_usage_t mu;
  if (!tt_ok(t, iso_memory_usage(t->iso, &mu), "iso_memory_usage")) return;
  if (mu.array_buffers < live || mu.external < mu.array_buffers)
    tt_fail(t,
            "iso_memory_usage: array_buffers %zu, external %zu, but the "
            "live ArrayBuffers hold %zu bytes",
            mu.array_buffers, mu.external, live);
}

bool torture_check(torture *t) {
  if (t->failed) return false;
  if (t->closed) return true;
  uint64_t gc0 = t->gc_total;
  t->st.checks++;
  t->in_check = true;
  t->epoch++;
  t->nwork = 0;
  if (!addr_reset(t)) return false;
  iso_scope s;
  iso_scope_open(t->iso, &s);
  check_roots(t);
  while (t->nwork && !t->failed) {
    tt_work w = t->work[--t->nwork];
    check_node(t, w.n, w.v);
  }
  if (!t->failed) tt_ok(t, iso_scope_close(&s), "iso_scope_close");
  t->in_check = false;
  if (!t->failed && t->gc_total != gc0)
    tt_fail(t,
            "a collection ran during the check, inside calls that never "
            "allocate");
  if (t->failed) return false;
  for (size_t i = 0; i < t->nnodes;) {
    if (t->nodes[i]->epoch != t->epoch) {
      node_free(t, t->nodes[i]);
    } else {
      i++;
    }
  }
  check_accounting(t);
  if (!t->failed && t->p.verify_every &&
      ++t->checks_since_verify >= t->p.verify_every) {
    t->checks_since_verify = 0;
    t->st.heap_verifies++;
    iso_status vs = iso_heap_verify(t->iso);
    if (vs != ISO_OK)
      tt_fail(t, "iso_heap_verify: %s: %s", iso_status_name(vs),
              iso_last_error());
  }
  t->gc_checked = t->gc_total;
  return !t->failed;
}

/* ---- lifecycle ---- */

static void on_gc(iso_isolate *iso, iso_gc_phase phase, iso_gc_kind kind,
                  void *data) {
  torture *t = data;
  (void)iso;
  if (phase != ISO_GC_EPILOGUE) return;
  if (kind == ISO_GC_FULL) {
    t->fulls++;
  } else {
    t->minors++;
  }
  t->gc_total++;
}

iso_status torture_register_types(iso_runtime *rt) {
  for (int i = 0; i < TT_REC_TYPES; i++) {
    const tt_rec_type *r = &tt_rec_types[i];
    if (iso_type_find(rt, r->name)) continue;
    iso_type_desc d = {sizeof d, r->name, r->slots, r->raw};
    /* Another thread may have registered it meanwhile. */
    if (!iso_type_register(rt, &d) && !iso_type_find(rt, r->name))
      return iso_last_status();
  }
  return ISO_OK;
}

torture *torture_new(iso_runtime *rt, const torture_params *p, char *err,
                     size_t errlen) {
  torture *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  t->p = *p;
  uint64_t s = p->seed;
  t->rng = tt_splitmix(&s) | 1;
  if (!t->p.scavenge_every) t->p.scavenge_every = 1 + (unsigned)tt_below(t, 50);
  if (!t->p.full_every) t->p.full_every = 60 + (unsigned)tt_below(t, 1000);
  if (!t->p.max_objects) t->p.max_objects = p->small ? 400 : 1500;
  t->max_large = p->small ? 1 : 2;
  for (int i = 0; i < TT_REC_TYPES; i++) {
    t->types[i] = iso_type_find(rt, tt_rec_types[i].name);
    if (!t->types[i]) {
      snprintf(err, errlen, "record type %s is not registered",
               tt_rec_types[i].name);
      free(t);
      return NULL;
    }
  }
  static const size_t young[] = {0, 512u << 10, 1u << 20, 4u << 20};
  iso_isolate_params ip;
  memset(&ip, 0, sizeof ip);
  ip.struct_size = sizeof ip;
  ip.name = "torture";
  ip.max_young_generation_size = young[tt_below(t, 4)];
  ip.max_old_generation_size = (size_t)256 << 20;
  ip.stress_scavenge_every = t->p.scavenge_every;
  ip.stress_full_every = t->p.full_every;
  ip.debug_flags = t->p.debug_flags;
  t->iso = iso_isolate_new(rt, &ip);
  if (!t->iso) {
    snprintf(err, errlen, "iso_isolate_new: %s: %s",
             iso_status_name(iso_last_status()), iso_last_error());
    free(t);
    return NULL;
  }
  iso_status st = iso_isolate_add_gc_callback(t->iso, on_gc, t);
  if (st != ISO_OK) {
    snprintf(err, errlen, "iso_isolate_add_gc_callback: %s: %s",
             iso_status_name(st), iso_last_error());
    iso_isolate_free(t->iso);
    free(t);
    return NULL;
  }
  if (tt_level_open(t)) tt_populate(t);
  if (!t->failed) torture_check(t);
  if (t->failed) {
    snprintf(err, errlen, "%s", t->err);
    torture_free(t);
    return NULL;
  }
  return t;
}

bool torture_close(torture *t) {
  if (t->closed) return !t->failed;
  t->closed = true;
  t->op = "close";
  /* A failed engine's heap may be corrupt: leave it alone. */
  if (t->failed) return false;
  /* Half the time tidy up first; otherwise iso_isolate_free must release
   * open scopes and globals itself. */
  if (tt_chance(t, 500)) {
    while (t->nlv && tt_ok(t, iso_scope_close(&t->lv[t->nlv - 1].scope),
                           "iso_scope_close"))
      t->nlv--;
    for (unsigned g = 0; g < TT_GLOBALS; g++)
      if (t->gl[g].g) iso_global_free(t->iso, t->gl[g].g);
  }
  memset(t->gl, 0, sizeof t->gl);
  t->nlv = 0;
  iso_status s = iso_isolate_free(t->iso);
  t->iso = NULL;
  tt_ok(t, s, "iso_isolate_free");
  for (size_t i = 0; i < t->nexts && !t->failed; i++) {
    const tt_ext *e = t->exts[i];
    if (e->frees != 1 || e->bad_args)
      tt_fail(t,
              "external ArrayBuffer #%u (%zu bytes): its free callback "
              "ran %d times%s (expected exactly once)",
              e->id, e->len, e->frees,
              e->bad_args ? " with the wrong pointer or length" : "");
  }
  /* Stress mode counts allocations; if it ran no collection at all, this
   * engine tested nothing. */
  if (!t->failed && t->st.allocations > 16ull * t->p.scavenge_every &&
      t->gc_total == 0)
    tt_fail(t,
            "no collection ran in %llu allocations with "
            "stress_scavenge_every = %u",
            (unsigned long long)t->st.allocations, t->p.scavenge_every);
  return !t->failed;
}

iso_isolate *torture_isolate(const torture *t) { return t->iso; }

const char *torture_error(const torture *t) {
  return t->failed ? t->err : NULL;
}

void torture_get_params(const torture *t, torture_params *out) { *out = t->p; }

void torture_get_stats(const torture *t, torture_stats *out) {
  *out = t->st;
  out->scavenges = t->minors;
  out->full_gcs = t->fulls;
}

void torture_free(torture *t) {
  if (!t) return;
  bool freed = true;
  if (!t->closed) torture_close(t);
  /* After a failure the isolate was left alone and may still call the
   * free callbacks: keep their records then. */
  if (t->iso) freed = false;
  while (t->nnodes) node_free(t, t->nodes[t->nnodes - 1]);
  free(t->nodes);
  if (freed) {
    for (size_t i = 0; i < t->nexts; i++) {
      if (t->exts[i]->frees == 0) free(t->exts[i]->data);
      free(t->exts[i]);
    }
    free(t->exts);
  }
  free(t->akeys);
  free(t->avals);
  free(t->work);
  if (freed) free(t);
}

/* ---- command lines of the drivers ---- */

bool torture_parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s || *s == '-') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || *end) return false;
  *out = v;
  return true;
}

bool torture_parse_double(const char *s, double *out) {
  if (!s || !*s) return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !(v >= 0)) return false;
  *out = v;
  return true;
}

bool torture_env_scale(const char *prog, uint64_t *scale) {
  const char *env = getenv("ISO_TEST_SCALE");
  if (!env || !*env) return true;
  uint64_t v;
  if (!torture_parse_u64(env, &v) || v == 0) {
    fprintf(stderr, "%s: ISO_TEST_SCALE must be a positive integer\n", prog);
    return false;
  }
  *scale *= v;
  return true;
}

double torture_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t torture_default_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^
                  ((uint64_t)getpid() << 32);
  return seed % 1000000000000ull;
}
