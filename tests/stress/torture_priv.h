/*
 * Inside the graph torture engine: the shadow model, the engine struct and
 * the helpers that torture_lib.c (model, roots, checking) and
 * torture_ops.c (the operations) share.
 *
 * The model mirrors the heap object for object. A tt_node stands for one
 * heap object the engine created; a tt_val stands for one word the heap
 * holds (an immediate, or a reference to a node). Nodes point at nodes
 * directly: a node is freed only when no root and no live node reaches
 * it (torture_check decides that), so no live node ever points at a
 * freed one.
 */
#ifndef TORTURE_PRIV_H
#define TORTURE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"
#include "torture_lib.h"

#define TT_LEVELS 6       /* handle scopes the engine nests */
#define TT_LEVEL_SLOTS 6  /* root handles made when a scope opens */
#define TT_LEVEL_EXTRAS 8 /* handles escaped into a scope */
#define TT_GLOBALS 16
#define TT_SMALL_ARRAY 64 /* pushes stop here, unless growing large */
/* Elements whose backing store (8 bytes each plus a header) no longer
 * fits under the 128 KiB large-object threshold. */
#define TT_LARGE_ARRAY 16384
#define TT_MAP_MAX 48
#define TT_STRING_KEYS 48
#define TT_NUM_KEYS 14
#define TT_REC_TYPES 7
#define TT_MAX_SLOTS 40

enum { TT_UNDEF, TT_NULL, TT_TRUE, TT_FALSE, TT_INT, TT_REF };

typedef struct tt_node tt_node;

typedef struct tt_val {
  int tag;
  union {
    int64_t i;
    tt_node *n;
  } u;
} tt_val;

enum { TT_STRING, TT_DOUBLE, TT_ARRAY, TT_MAP, TT_RECORD, TT_BUFFER, TT_KINDS };
#define TT_BIT(k) (1u << (k))
#define TT_CONTAINERS (TT_BIT(TT_ARRAY) | TT_BIT(TT_MAP) | TT_BIT(TT_RECORD))
#define TT_ANY ((1u << TT_KINDS) - 1)
/* Objects a map compares by identity when they are keys. */
#define TT_IDENTITY_KEYS (TT_CONTAINERS | TT_BIT(TT_BUFFER))

/* Map keys: strings compare by content, numbers by value, the rest by
 * identity. String keys are numbered texts (tt_key_text), number keys
 * come from a fixed table (tt_num_key). */
enum { TT_KEY_STR, TT_KEY_NUM, TT_KEY_REF };
typedef struct tt_key {
  int tag;
  union {
    unsigned str;
    double num;
    tt_node *n;
  } u;
} tt_key;

typedef struct tt_entry {
  tt_key key;
  tt_val val;
} tt_entry;

/* One external ArrayBuffer's memory. Kept until the engine is freed, so
 * a late or second free callback is still caught. */
typedef struct tt_ext {
  void *data;
  size_t len;
  uint32_t id;
  int frees;     /* free callbacks seen; must end at exactly 1 */
  bool bad_args; /* a callback got another pointer or length */
} tt_ext;

struct tt_node {
  uint32_t id;
  uint8_t kind;
  uint8_t rtype;    /* records: index into tt_rec_types */
  bool large;       /* counted in torture.nlarge */
  uint32_t epoch;   /* the check that last reached it */
  size_t index;     /* in torture.nodes */
  iso_value addr;   /* its address during that check */
  uint64_t born_gc; /* collections before it was made */
  uint64_t born_step;
  union {
    struct {
      uint64_t seed;
      size_t len;
      uint64_t hash;
      uint32_t fnv;
    } str;
    double d;
    struct {
      tt_val *e;
      size_t len, cap;
    } arr;
    struct {
      tt_entry *e;
      size_t n, cap;
    } map;
    struct {
      tt_val *slot;
      uint64_t raw_hash;
    } rec;
    struct {
      size_t len;
      uint64_t hash;
      tt_ext *ext; /* NULL: the library's own memory */
      bool detached;
    } buf;
  } u;
};

/* A handle scope the engine keeps open across steps, with its roots. */
typedef struct tt_level {
  iso_scope scope;
  iso_handle slot[TT_LEVEL_SLOTS];
  tt_val sv[TT_LEVEL_SLOTS];
  iso_handle extra[TT_LEVEL_EXTRAS];
  tt_val ev[TT_LEVEL_EXTRAS];
  unsigned nextra;
} tt_level;

typedef struct tt_global {
  iso_global *g; /* NULL: free */
  tt_val v;
} tt_global;

typedef struct tt_rec_type {
  const char *name;
  uint32_t slots, raw;
  bool large; /* its size crosses the large-object threshold */
} tt_rec_type;
extern const tt_rec_type tt_rec_types[TT_REC_TYPES];

typedef struct tt_work {
  tt_node *n;
  iso_value v;
} tt_work;

/* A root: where a value the engine holds lives, in the model and in the
 * isolate. */
typedef struct tt_root {
  tt_val *v;
  iso_handle h;  /* a handle slot, or NULL for a global */
  tt_global *gl; /* or the global */
  const char *what;
  unsigned a, b; /* level and slot, or global index, for messages */
} tt_root;

struct torture {
  torture_params p;
  iso_isolate *iso;
  bool closed;
  iso_type types[TT_REC_TYPES];
  uint64_t rng;
  uint64_t step;
  const char *op; /* the operation running, for messages */
  char opbuf[80];

  tt_level lv[TT_LEVELS];
  unsigned nlv;
  tt_global gl[TT_GLOBALS];

  tt_node **nodes;
  size_t nnodes, capnodes;
  uint32_t next_id;
  unsigned nlarge, max_large;

  /* torture_check: address -> node table of the current epoch, and the
   * work stack of objects still to compare. */
  uint32_t epoch;
  iso_value *akeys;
  tt_node **avals;
  size_t acap;
  tt_work *work;
  size_t nwork, capwork;
  uint64_t checks_since_verify;

  /* Collections, counted by the GC callback. */
  uint64_t minors, fulls, gc_total, gc_checked;
  bool in_check;
  uint64_t gc_in_check;

  tt_ext **exts;
  size_t nexts, capexts;

  torture_stats st;
  bool failed;
  char err[1536];
};

/* ---- random numbers (xorshift64*, seeded through splitmix64) ---- */

uint64_t tt_splitmix(uint64_t *state);
static inline uint64_t tt_rnd(torture *t) { return torture_rnd(&t->rng); }
static inline uint64_t tt_below(torture *t, uint64_t n) {
  return n ? tt_rnd(t) % n : 0;
}
static inline bool tt_chance(torture *t, unsigned per_mille) {
  return tt_below(t, 1000) < per_mille;
}

/* ---- content ---- */

#define TT_HASH0 0x243f6a8885a308d3ull
uint64_t tt_hash_word(uint64_t h, uint64_t w);
uint64_t tt_hash_bytes(uint64_t h, const void *p, size_t n);
uint64_t tt_hash_zeros(size_t n);
uint32_t tt_fnv1a32(const char *p, size_t n);
/* Valid UTF-8 of exactly len bytes (with NULs and multi-byte sequences). */
void tt_gen_text(uint64_t seed, char *buf, size_t len);
void tt_gen_bytes(uint64_t seed, void *buf, size_t len);
/* The text of string key k (< TT_STRING_KEYS); returns its length. */
size_t tt_key_text(unsigned k, char *buf, size_t cap);
double tt_num_key(unsigned k);
bool tt_key_equal(const tt_key *a, const tt_key *b);

/* ---- failures ---- */

void tt_fail(torture *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* false (and the engine fails) unless s is ISO_OK. */
bool tt_ok(torture *t, iso_status s, const char *what);
/* h, or NULL and the engine fails. */
iso_handle tt_hok(torture *t, iso_handle h, const char *what);
iso_handle tt_handle(torture *t, iso_value v);

/* ---- the model ---- */

tt_node *tt_node_new(torture *t, int kind);
iso_kind tt_iso_kind(int kind);
const char *tt_kind_name(int kind);
iso_value tt_imm_word(const tt_val *v);
/* Notes a reference store of v into c (old-to-young estimate). */
void tt_note_store(torture *t, const tt_node *c, const tt_val *v);
tt_ext *tt_ext_new(torture *t, size_t len);
void tt_ext_free_cb(void *data, size_t len, void *ctx);

/* ---- roots and navigation ---- */

enum { TT_FROM_ANY, TT_FROM_GLOBALS, TT_FROM_HANDLES };
/* Every root; returns how many (at most cap). */
size_t tt_roots(torture *t, tt_root *out, size_t cap, int from);
/* Walks from a random root along random references to an object whose
 * kind is in `kinds`. false if none was found (not a failure). */
bool tt_nav(torture *t, unsigned kinds, int from, tt_node **on, iso_handle *oh);
/* Handles to the key and value of the j-th entry of map m. */
bool tt_map_entry(torture *t, tt_node *m, iso_handle mh, size_t j,
                  iso_handle *kh, iso_handle *vh);

/* ---- operations (torture_ops.c) ---- */

/* Opens a handle scope level with fresh root handles. */
bool tt_level_open(torture *t);
/* The first long-lived objects, held by globals. */
void tt_populate(torture *t);

#endif /* TORTURE_PRIV_H */
