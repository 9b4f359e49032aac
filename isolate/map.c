/*
 * Maps: hash maps that keep insertion order, as JavaScript's Map.
 *
 * Layout: a map object (GC_TYPE_MAP) has GC_MAP_SLOTS slots, counters held
 * as small integers:
 *   [0] table: a fixed array, or undefined while the map has none;
 *   [1] size: live entries;
 *   [2] used: entries appended to the table, live or deleted;
 *   [3] next ordinal: the ordinal the next new entry gets.
 * The table is one fixed array of nb buckets then nb entries (nb a power
 * of two; one entry per bucket keeps chains short, about 1.5 probes for a
 * hit at the fullest):
 *   bucket b             index of the first entry of its chain, or -1
 *   entry i (4 words)    key, value, next (index in the chain, -1 at the
 *                        end, MAP_HOLE once deleted), ordinal
 * Every word is a small integer or a value, so the table needs nothing
 * special from the collector.
 *
 * Invariants:
 * - Entries [0, used) are in insertion order; live ones are linked in the
 *   chain of their key's bucket, deleted ones are holes (key and value
 *   undefined, next MAP_HOLE, ordinal kept) that iteration skips.
 * - Ordinals grow strictly with the entry index and are never reused, not
 *   even by iso_map_clear(). A cursor of iso_map_next() is the ordinal
 *   after the last entry it visited, so it stays valid however the table is
 *   rehashed: rehashing drops holes but keeps every ordinal, and the next
 *   entry is the first with an ordinal >= the cursor. Entries added during
 *   an iteration get larger ordinals, so they are visited.
 * - Keys are stored normalised: a double that equals a small integer
 *   (-0.0 included) is stored as that integer, so numbers compare by value
 *   and hash the same whichever way they were made.
 * - Key hashes depend only on content (string hash, number bits) or on the
 *   identity hash that moves with an object, so a GC never invalidates the
 *   table and the same key hashes the same in every isolate.
 */
#include <math.h>
#include <string.h>

#include "isolate_internal.h"

enum { MAP_TABLE = 0, MAP_SIZE = 1, MAP_USED = 2, MAP_ORDINAL = 3 };
enum { ENTRY_KEY = 0, ENTRY_VALUE = 1, ENTRY_NEXT = 2, ENTRY_ORDINAL = 3 };

#define ENTRY_WORDS 4u
#define ENTRIES_PER_BUCKET 1u
#define MAP_MIN_BUCKETS 2u
#define MAP_MAX_ENTRIES ((size_t)1 << 28)
#define CHAIN_END (-1)
#define MAP_HOLE (-2)

static bool map_check(iso_value m, const char *fn) {
  if (gc_is_kind(m, GC_TYPE_MAP)) return true;
  isolate_fail(ISO_ERR_TYPE, "%s: expected a map, got %s", fn,
               iso_kind_name(iso_kind_of(m)));
  return false;
}

/* ---- small accessors ---- */

static inline int64_t smi_slot(iso_value obj, size_t i) {
  return iso_smi_value(gc_slot_load(obj, i));
}
static inline size_t map_count(iso_value m, size_t i) {
  return (size_t)smi_slot(m, i);
}
static inline void map_set_count(iso_isolate *iso, iso_value m, size_t i,
                                 size_t n) {
  gc_write(iso, m, i, iso_smi((int64_t)n));
}
static inline size_t table_buckets(iso_value t) {
  return (gc_object_size(t) / 8 - 1) / (1 + ENTRIES_PER_BUCKET * ENTRY_WORDS);
}
static inline size_t entry_slot(size_t nb, size_t i, size_t field) {
  return nb + i * ENTRY_WORDS + field;
}

/* ---- keys: SameValueZero ---- */

static double double_load(iso_value v) {
  double d;
  memcpy(&d, gc_slots(v), sizeof d);
  return d;
}

/* A double key that some small integer equals becomes that integer; -0.0
 * becomes 0. Never allocates. */
static iso_value key_normalise(iso_value k) {
  if (!gc_is_kind(k, GC_TYPE_DOUBLE)) return k;
  double d = double_load(k);
  if (d >= -4611686018427387904.0 && d < 4611686018427387904.0) {
    int64_t n = (int64_t)d;
    if ((double)n == d) return iso_smi(n); /* -0.0 == 0 lands here too */
  }
  return k;
}

static uint32_t mix64(uint64_t x) {
  /* A 64-bit finaliser: every input bit reaches the low bits the bucket
   * mask keeps. */
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return (uint32_t)x;
}

/* The hash of a normalised key. With lookup_only, an object that was
 * never hashed sets *absent instead of getting a hash: it cannot be a key
 * of any map, so a lookup can stop there and leave its header alone. */
static uint32_t key_hash(iso_isolate *iso, iso_value k, bool lookup_only,
                         bool *absent) {
  *absent = false;
  if (!iso_is_ref(k)) return mix64(k); /* small integers and immediates */
  switch (gc_type_id(k)) {
  case GC_TYPE_STRING: return mix64(iso_string_hash(k));
  case GC_TYPE_DOUBLE: {
    double d = double_load(k);
    uint64_t bits = 0x7ff8000000000000ull; /* every NaN is one key */
    if (!isnan(d)) memcpy(&bits, &d, sizeof bits);
    return mix64(bits ^ 0x9e3779b97f4a7c15ull);
  }
  default:
    if (lookup_only && gc_hdr_hash(gc_header(k)) == 0) {
      *absent = true;
      return 0;
    }
    return mix64(gc_identity_hash(iso, k));
  }
}

static bool key_equal(iso_value a, iso_value b) {
  if (a == b) return true;
  if (!iso_is_ref(a) || !iso_is_ref(b)) return false;
  uint32_t ta = gc_type_id(a);
  if (ta != gc_type_id(b)) return false;
  if (ta == GC_TYPE_STRING) return iso_string_equal(a, b);
  if (ta == GC_TYPE_DOUBLE) {
    double x = double_load(a), y = double_load(b);
    return x == y || (isnan(x) && isnan(y));
  }
  return false;
}

/* ---- lookup ---- */

typedef struct map_pos {
  iso_value table;
  size_t nb;
  int64_t index; /* entry, or -1 if absent */
  int64_t prev;  /* entry before it in the chain, or -1 if first */
  size_t bucket;
} map_pos;

/* Finds the normalised key k with hash h. Never allocates. */
static map_pos map_find(iso_value m, iso_value k, uint32_t h) {
  map_pos p = {ISO_UNDEFINED, 0, -1, -1, 0};
  p.table = gc_slot_load(m, MAP_TABLE);
  if (!iso_is_ref(p.table)) return p;
  p.nb = table_buckets(p.table);
  p.bucket = h & (p.nb - 1);
  int64_t i = smi_slot(p.table, p.bucket);
  while (i >= 0) {
    iso_value key = gc_slot_load(p.table, entry_slot(p.nb, (size_t)i,
                                                     ENTRY_KEY));
    if (key_equal(key, k)) {
      p.index = i;
      return p;
    }
    p.prev = i;
    i = smi_slot(p.table, entry_slot(p.nb, (size_t)i, ENTRY_NEXT));
  }
  p.prev = -1;
  return p;
}

/* Looks up key in m (both checked); index -1 when absent. */
static map_pos map_lookup(iso_isolate *iso, iso_value m, iso_value key) {
  bool absent;
  key = key_normalise(key);
  uint32_t h = key_hash(iso, key, true, &absent);
  if (absent) return (map_pos){ISO_UNDEFINED, 0, -1, -1, 0};
  return map_find(m, key, h);
}

/* ---- growth ---- */

/* Stores v in slot i of t, a table allocated since the last possible GC:
 * a young table needs no barrier, an old one (a large object) does. */
static inline void table_init(iso_isolate *iso, iso_value t, bool young,
                              size_t i, iso_value v) {
  if (young)
    gc_slot_init(t, i, v);
  else
    gc_write(iso, t, i, v);
}

/* Moves the live entries of the map in hm into a new table with room for
 * at least need entries and a half again, dropping holes. May allocate. */
static iso_status map_rehash(iso_isolate *iso, iso_handle hm, size_t need,
                             const char *fn) {
  size_t nb = MAP_MIN_BUCKETS;
  if (need > MAP_MAX_ENTRIES)
    return isolate_fail(ISO_ERR_RANGE,
                        "%s: a map cannot hold more than 2^28 entries", fn);
  while (nb * ENTRIES_PER_BUCKET < need + need / 2 &&
         nb * ENTRIES_PER_BUCKET < MAP_MAX_ENTRIES)
    nb *= 2;
  size_t words = nb * (1 + ENTRIES_PER_BUCKET * ENTRY_WORDS);
  iso_value t = gc_alloc(iso, GC_TYPE_FIXED_ARRAY, 8 + 8 * words);
  if (t == 0) return ISO_ERR_OUT_OF_MEMORY; /* gc_alloc set the message */
  iso_value m = iso_get(hm); /* the allocation may have moved it */
  bool young = (gc_page_of(gc_obj(t))->flags & GC_PAGE_YOUNG) != 0;
  for (size_t b = 0; b < nb; b++)
    table_init(iso, t, young, b, iso_smi(CHAIN_END));

  iso_value old = gc_slot_load(m, MAP_TABLE);
  size_t used = map_count(m, MAP_USED), n = 0;
  size_t onb = iso_is_ref(old) ? table_buckets(old) : 0;
  for (size_t i = 0; i < used; i++) {
    size_t os = entry_slot(onb, i, 0);
    if (smi_slot(old, os + ENTRY_NEXT) == MAP_HOLE) continue;
    iso_value key = gc_slot_load(old, os + ENTRY_KEY);
    bool absent;
    size_t b = key_hash(iso, key, false, &absent) & (nb - 1);
    size_t ns = entry_slot(nb, n, 0);
    table_init(iso, t, young, ns + ENTRY_KEY, key);
    table_init(iso, t, young, ns + ENTRY_VALUE,
               gc_slot_load(old, os + ENTRY_VALUE));
    table_init(iso, t, young, ns + ENTRY_NEXT, gc_slot_load(t, b));
    table_init(iso, t, young, ns + ENTRY_ORDINAL,
               gc_slot_load(old, os + ENTRY_ORDINAL));
    table_init(iso, t, young, b, iso_smi((int64_t)n));
    n++;
  }
  ISO_ASSERT(n == map_count(m, MAP_SIZE));
  gc_write(iso, m, MAP_TABLE, t);
  map_set_count(iso, m, MAP_USED, n);
  return ISO_OK;
}

/* ---- the API ---- */

iso_handle iso_map_new(iso_isolate *iso) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  /* The table comes with the first entry: empty maps stay small. */
  iso_value m = gc_alloc(iso, GC_TYPE_MAP, 8 + 8 * GC_MAP_SLOTS);
  if (m == 0) return NULL;
  gc_slot_init(m, MAP_SIZE, iso_smi(0));
  gc_slot_init(m, MAP_USED, iso_smi(0));
  gc_slot_init(m, MAP_ORDINAL, iso_smi(0));
  return iso_handle_new(iso, m);
}

size_t iso_map_size(iso_value m) {
  if (!map_check(m, __func__)) return 0;
  return map_count(m, MAP_SIZE);
}

iso_status iso_map_set(iso_isolate *iso, iso_value m, iso_value key,
                       iso_value value) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!map_check(m, __func__)) return ISO_ERR_TYPE;
  key = key_normalise(key);
  bool absent;
  /* Hashing assigns an identity hash now; it survives the rehash below. */
  uint32_t h = key_hash(iso, key, false, &absent);
  map_pos p = map_find(m, key, h);
  if (p.index >= 0) {
    gc_write(iso, p.table,
             entry_slot(p.nb, (size_t)p.index, ENTRY_VALUE), value);
    return ISO_OK;
  }
  size_t size = map_count(m, MAP_SIZE), used = map_count(m, MAP_USED);
  if (!iso_is_ref(p.table) || used == ENTRIES_PER_BUCKET * p.nb) {
    iso_scope s;
    iso_scope_open(iso, &s);
    iso_handle hm = iso_handle_new(iso, m);
    iso_handle hk = iso_handle_new(iso, key);
    iso_handle hv = iso_handle_new(iso, value);
    st = hm && hk && hv ? map_rehash(iso, hm, size + 1, __func__)
                        : ISO_ERR_OUT_OF_MEMORY;
    if (st == ISO_OK) {
      m = iso_get(hm);
      key = iso_get(hk);
      value = iso_get(hv);
    }
    iso_scope_close(&s);
    if (st != ISO_OK) return st;
    used = map_count(m, MAP_USED);
    p.table = gc_slot_load(m, MAP_TABLE);
    p.nb = table_buckets(p.table);
    p.bucket = h & (p.nb - 1);
  }
  size_t es = entry_slot(p.nb, used, 0);
  int64_t ordinal = smi_slot(m, MAP_ORDINAL);
  gc_write(iso, p.table, es + ENTRY_KEY, key);
  gc_write(iso, p.table, es + ENTRY_VALUE, value);
  gc_write(iso, p.table, es + ENTRY_NEXT, gc_slot_load(p.table, p.bucket));
  gc_write(iso, p.table, es + ENTRY_ORDINAL, iso_smi(ordinal));
  gc_write(iso, p.table, p.bucket, iso_smi((int64_t)used));
  map_set_count(iso, m, MAP_USED, used + 1);
  map_set_count(iso, m, MAP_SIZE, size + 1);
  gc_write(iso, m, MAP_ORDINAL, iso_smi(ordinal + 1));
  return ISO_OK;
}

iso_handle iso_map_get(iso_isolate *iso, iso_value m, iso_value key) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (!map_check(m, __func__)) return NULL;
  map_pos p = map_lookup(iso, m, key);
  if (p.index < 0) return iso_handle_new(iso, ISO_UNDEFINED);
  return iso_handle_new(iso, gc_slot_load(p.table,
                                          entry_slot(p.nb, (size_t)p.index,
                                                     ENTRY_VALUE)));
}

bool iso_map_has(iso_isolate *iso, iso_value m, iso_value key) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return false;
  if (!map_check(m, __func__)) return false;
  return map_lookup(iso, m, key).index >= 0;
}

bool iso_map_delete(iso_isolate *iso, iso_value m, iso_value key) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return false;
  if (!map_check(m, __func__)) return false;
  map_pos p = map_lookup(iso, m, key);
  if (p.index < 0) return false;
  size_t es = entry_slot(p.nb, (size_t)p.index, 0);
  iso_value next = gc_slot_load(p.table, es + ENTRY_NEXT);
  size_t link = p.prev < 0 ? p.bucket
                           : entry_slot(p.nb, (size_t)p.prev, ENTRY_NEXT);
  gc_write(iso, p.table, link, next);
  /* A hole keeps its ordinal (cursors order by it) and nothing else. */
  gc_write(iso, p.table, es + ENTRY_KEY, ISO_UNDEFINED);
  gc_write(iso, p.table, es + ENTRY_VALUE, ISO_UNDEFINED);
  gc_write(iso, p.table, es + ENTRY_NEXT, iso_smi(MAP_HOLE));
  map_set_count(iso, m, MAP_SIZE, map_count(m, MAP_SIZE) - 1);
  return true;
}

iso_status iso_map_clear(iso_isolate *iso, iso_value m) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!map_check(m, __func__)) return ISO_ERR_TYPE;
  /* The ordinal counter stays: open cursors resume at entries added after
   * the clear, as JavaScript's iterators do. */
  gc_write(iso, m, MAP_TABLE, ISO_UNDEFINED);
  map_set_count(iso, m, MAP_SIZE, 0);
  map_set_count(iso, m, MAP_USED, 0);
  return ISO_OK;
}

/* The first entry index in [0, used) whose ordinal is >= c, or used. */
static size_t table_seek(iso_value t, size_t nb, size_t used, uint64_t c) {
  if (used == 0) return 0;
  uint64_t first = (uint64_t)smi_slot(t, entry_slot(nb, 0, ENTRY_ORDINAL));
  if (c <= first) return 0;
  /* Ordinals grow by at least one per entry, so the entry sits at or
   * before c - first; exactly there unless a rehash dropped holes before
   * it, which the binary search below handles. */
  uint64_t guess = c - first;
  if (guess < used &&
      (uint64_t)smi_slot(t, entry_slot(nb, guess, ENTRY_ORDINAL)) == c)
    return guess;
  size_t lo = 0, hi = guess < used ? (size_t)guess + 1 : used;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uint64_t)smi_slot(t, entry_slot(nb, mid, ENTRY_ORDINAL)) < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

bool iso_map_next(iso_isolate *iso, iso_value m, size_t *cursor,
                  iso_handle *key, iso_handle *value) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return false;
  if (!map_check(m, __func__)) return false;
  if (cursor == NULL) {
    isolate_fail(ISO_ERR_ARGUMENT, "iso_map_next: cursor is NULL");
    return false;
  }
  iso_value t = gc_slot_load(m, MAP_TABLE);
  if (!iso_is_ref(t)) return false;
  size_t nb = table_buckets(t), used = map_count(m, MAP_USED);
  size_t i = table_seek(t, nb, used, (uint64_t)*cursor);
  while (i < used &&
         smi_slot(t, entry_slot(nb, i, ENTRY_NEXT)) == MAP_HOLE)
    i++;
  if (i == used) return false;
  size_t es = entry_slot(nb, i, 0);
  /* Handles never allocate in the heap, so t stays valid here. */
  if (key != NULL) {
    *key = iso_handle_new(iso, gc_slot_load(t, es + ENTRY_KEY));
    if (*key == NULL) return false;
  }
  if (value != NULL) {
    *value = iso_handle_new(iso, gc_slot_load(t, es + ENTRY_VALUE));
    if (*value == NULL) return false;
  }
  *cursor = (size_t)smi_slot(t, es + ENTRY_ORDINAL) + 1;
  return true;
}
