/*
 * The object model: header words, built-in types and the type table.
 *
 * Every heap object starts with one header word:
 *
 *    63            39 38          19 18        3  2   1   0
 *   +----------------+--------------+-----------+---+---+---+
 *   | size in words  | identity hash|  type id  | 0 |age| 1 |
 *   +----------------+--------------+-----------+---+---+---+
 *
 * - bit 0 is 1 in a header and 0 in a forwarding pointer (the scavenger
 *   overwrites the header of a copied object with its new address, which is
 *   8-byte aligned);
 * - age is set on an object that survived one scavenge; the next scavenge
 *   promotes it;
 * - size 0 means "look in the page": only a large object (its own page) can
 *   be bigger than the 25-bit field;
 * - the identity hash is assigned on first use (map keys by identity) and
 *   moves with the object.
 *
 * After the header come the object's tagged slots, then its raw bytes. How
 * many slots an object has depends on its type's layout:
 *   GC_LAYOUT_FIXED  type->slot_count slots (records, arrays, maps, ...)
 *   GC_LAYOUT_ALL    every word after the header (fixed arrays)
 *   GC_LAYOUT_NONE   no slots (strings, doubles, fillers)
 * The collector traces slots only; raw bytes are never looked at.
 */
#ifndef GC_OBJECT_H
#define GC_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "isolate.h"
#include "atomic.h"

#define GC_HDR_TAG 1ull
#define GC_HDR_AGE 2ull
#define GC_HDR_TYPE_SHIFT ISO_INL_HDR_TYPE_SHIFT
#define GC_HDR_TYPE_MASK ((uint64_t)ISO_INL_HDR_TYPE_MASK)
#define GC_HDR_HASH_SHIFT 19
#define GC_HDR_HASH_MASK 0xfffffull
#define GC_HDR_SIZE_SHIFT 39
#define GC_HDR_SIZE_MAX ((1ull << 25) - 1) /* words */

#define GC_MAX_TYPES 65536u

/* Built-in type ids. User records start at GC_TYPE_FIRST_USER. */
enum {
  GC_TYPE_NONE = 0,
  GC_TYPE_FILLER = 1,       /* free space; word 1 links free-list blocks */
  GC_TYPE_DOUBLE = 2,       /* raw: double */
  GC_TYPE_STRING = 3,       /* raw: gc_string_raw then bytes, NUL */
  GC_TYPE_FIXED_ARRAY = 4,  /* every word is a slot */
  GC_TYPE_ARRAY = 5,        /* slots: elements, length, inline elements */
  GC_TYPE_MAP = 6,          /* slots: see isolate/map.c */
  GC_TYPE_ARRAY_BUFFER = 7, /* raw: gc_extern pointer */
  GC_TYPE_TYPED_ARRAY = 8,  /* slot: buffer; raw: gc_typed_array_raw */
  GC_TYPE_SHARED_ARRAY_BUFFER = 9, /* raw: gc_extern pointer */
  GC_TYPE_EXTERNAL = 10,    /* raw: gc_extern pointer (data = host ptr) */
  GC_TYPE_PORT = 11,        /* raw: gc_extern pointer (data = iso_port) */
  GC_TYPE_FIRST_USER = 32
};

/* Layouts of the built-in types (registered by isolate/runtime.c):
 *   FILLER        no slots; size from the header (1 word is allowed)
 *   DOUBLE        no slots; raw 8 bytes: the double
 *   STRING        no slots; raw gc_string_raw, then the bytes and a NUL
 *   FIXED_ARRAY   every word after the header is a slot
 *   ARRAY         every word after the header is a slot: [0] elements (a
 *                 fixed array, or undefined: inline), [1] length (small
 *                 integer), then room for inline elements (isolate/array.c);
 *                 GC_ARRAY_SLOTS counts the first two
 *   MAP           GC_MAP_SLOTS tagged slots, laid out by isolate/map.c
 *   ARRAY_BUFFER  no slots; raw 8 bytes: its gc_extern pointer
 *   TYPED_ARRAY   1 slot: the buffer; raw gc_typed_array_raw
 *   SHARED_ARRAY_BUFFER, EXTERNAL, PORT
 *                 no slots; raw 8 bytes: a gc_extern pointer whose data is
 *                 the shared store, the host pointer, or the iso_port */
#define GC_ARRAY_SLOTS 2u
/* The most elements an array keeps inline, after its GC_ARRAY_SLOTS: a
 * 64-byte object at most. */
#define GC_ARRAY_INLINE_MAX 5u
/* The inline iso_array_set() in isolate.h relies on these. */
_Static_assert(GC_TYPE_ARRAY == ISO_INL_TYPE_ARRAY && GC_HDR_TAG == 1 &&
                   GC_ARRAY_SLOTS == 2,
               "isolate.h's inline array store knows the array layout");
#define GC_MAP_SLOTS 4u
#define GC_ARRAY_BUFFER_RAW 8u
#define GC_EXTERN_RAW 8u

typedef struct gc_typed_array_raw {
  uint32_t type; /* iso_typed_array_type */
  uint32_t reserved;
  uint64_t byte_offset;
  uint64_t length; /* elements */
} gc_typed_array_raw;

typedef enum gc_layout {
  GC_LAYOUT_NONE = 0,
  GC_LAYOUT_FIXED,
  GC_LAYOUT_ALL
} gc_layout;

/* A type descriptor: written once before its id is published, immutable
 * after, read lock-free by every isolate (and by marker threads). */
typedef struct gc_type {
  const char *name;
  iso_kind kind;
  gc_layout layout;
  uint32_t slot_count; /* GC_LAYOUT_FIXED */
  uint32_t raw_size;   /* fixed raw bytes (records) */
} gc_type;

/* Raw part of a string. */
typedef struct gc_string_raw {
  uint64_t length; /* bytes, without the NUL */
  uint32_t hash;
  uint32_t reserved;
} gc_string_raw;

/* ---- header words ---- */

static inline uint64_t gc_hdr_make(uint32_t type, size_t words) {
  uint64_t w = words <= GC_HDR_SIZE_MAX ? (uint64_t)words : 0;
  return (w << GC_HDR_SIZE_SHIFT) | ((uint64_t)type << GC_HDR_TYPE_SHIFT) |
         GC_HDR_TAG;
}
static inline uint32_t gc_hdr_type(uint64_t h) {
  return (uint32_t)((h >> GC_HDR_TYPE_SHIFT) & GC_HDR_TYPE_MASK);
}
static inline size_t gc_hdr_words(uint64_t h) {
  return (size_t)(h >> GC_HDR_SIZE_SHIFT);
}
static inline uint32_t gc_hdr_hash(uint64_t h) {
  return (uint32_t)((h >> GC_HDR_HASH_SHIFT) & GC_HDR_HASH_MASK);
}
static inline int gc_hdr_is_forward(uint64_t h) { return (h & GC_HDR_TAG) == 0; }

/* ---- objects: an iso_value that is a reference is the object's address */

static inline uint64_t *gc_obj(iso_value v) { return (uint64_t *)(uintptr_t)v; }
static inline uint64_t gc_header(iso_value v) {
  return thr_load_relaxed(gc_obj(v));
}
static inline uint32_t gc_type_id(iso_value v) {
  return gc_hdr_type(gc_header(v));
}
static inline iso_value *gc_slots(iso_value v) {
  return (iso_value *)(uintptr_t)v + 1;
}
static inline iso_value gc_slot_load(iso_value v, size_t i) {
  return thr_load_relaxed(gc_slots(v) + i);
}
/* A store that needs no barrier: initialising a fresh object, or a young
 * object (the marking barrier ignores young hosts; see gc/barrier.c). */
static inline void gc_slot_init(iso_value v, size_t i, iso_value x) {
  thr_store_relaxed(gc_slots(v) + i, x);
}
static inline int gc_is_kind(iso_value v, uint32_t type) {
  return iso_is_ref(v) && gc_type_id(v) == type;
}

#endif /* GC_OBJECT_H */
