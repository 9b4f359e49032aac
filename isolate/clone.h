/*
 * Structured clone, internal view: the message, the wire tags, the
 * buffers that move or are shared with a message, and the per-thread
 * scratch state that makes cloning allocation-free in the steady state.
 * Shared by isolate/clone*.c, isolate/typed_array.c and threads/port.c.
 * Never installed.
 *
 * The format itself is specified in docs/clone-format.md; Note [Clone
 * format] in isolate/clone_write.c explains the choices behind it.
 */
#ifndef ISOLATE_CLONE_H
#define ISOLATE_CLONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate_internal.h"

/* ---- the wire format (docs/clone-format.md) ---- */

#define CLONE_MAGIC0 'I'
#define CLONE_MAGIC1 'S'
#define CLONE_MAGIC2 'O'
#define CLONE_MAGIC3 'C'
#define CLONE_VERSION 1u

/* One byte per value; printable so that a hex dump reads. */
enum {
  CLONE_TAG_UNDEFINED = '_',
  CLONE_TAG_NULL = '0',
  CLONE_TAG_FALSE = 'F',
  CLONE_TAG_TRUE = 'T',
  CLONE_TAG_INT = 'I',      /* zigzag varint */
  CLONE_TAG_DOUBLE = 'N',   /* 8 bytes, little-endian IEEE 754 */
  CLONE_TAG_STRING = 'S',   /* varint length, UTF-8 bytes */
  CLONE_TAG_ARRAY = 'A',    /* varint length, elements */
  CLONE_TAG_MAP = 'M',      /* varint size, key/value pairs */
  CLONE_TAG_RECORD = 'R',   /* type, slots, raw size, raw, slot values */
  CLONE_TAG_BUFFER = 'B',   /* varint length, bytes (a copy) */
  CLONE_TAG_TRANSFER = 'b', /* varint index in the transfer table */
  CLONE_TAG_COPY = 'C',     /* varint index in the copy table */
  CLONE_TAG_SHARED = 'H',   /* varint index in the shared table */
  CLONE_TAG_VIEW = 'V',     /* type, offset, length, then its buffer */
  CLONE_TAG_PORT = 'P',     /* varint index in the port table */
  CLONE_TAG_HOST = 'X',     /* 4-byte length, the delegate's bytes */
  CLONE_TAG_BACKREF = '^',  /* varint object id */
};

/* Strings of this many bytes or more get an object id (so a long string
 * referenced twice is written once); shorter ones are written each time,
 * as JavaScript does with every string. */
#define CLONE_STRING_ID_MIN 64u

/* ArrayBuffers of this many bytes or more are copied out of line: once,
 * into a store of their own that travels in the message's copy table and
 * that the receiver adopts, instead of into the bytes and out again. (The
 * fuzz target lowers it, to reach that path with small inputs.) */
#ifndef CLONE_COPY_MIN
#define CLONE_COPY_MIN ((size_t)GC_STORE_MMAP_MIN)
#endif

/* Limits the deserializer enforces beside the message's own length. */
#define CLONE_STRING_MAX ((uint64_t)1 << 30)
#define CLONE_ELEMENTS_MAX ((uint64_t)1 << 28) /* array and map entries */
#define CLONE_RECORD_SLOTS_MAX 65536u
#define CLONE_RECORD_RAW_MAX (1u << 20)
/* Object ids and table indexes fit in 30 bits (see clone_write.c). */
#define CLONE_OBJECTS_MAX ((uint64_t)1 << 30)

/* Messages of this many bytes or more are rebuilt straight in the old
 * generation: their objects would survive a scavenge or two anyway. (The
 * fuzz target lowers it, to reach that path with small inputs.) */
#ifndef CLONE_PRETENURE_BYTES
#define CLONE_PRETENURE_BYTES ((size_t)256 * 1024)
#endif

/* ---- shared stores (SharedArrayBuffer bytes) ---- */

/* The bytes of a SharedArrayBuffer and their reference count. Each
 * SharedArrayBuffer object in any isolate holds one reference, and so does
 * each message that carries it; the last release frees the store. refs is
 * atomic; length and data never change after creation. */
typedef struct isolate_shared_store {
  uint64_t refs;
  size_t length;
  void *data; /* never NULL, even when length is 0 */
} isolate_shared_store;

void isolate_shared_store_retain(isolate_shared_store *s);
/* Any thread. Frees the store with the last reference. */
void isolate_shared_store_release(isolate_shared_store *s);
/* The store of a SharedArrayBuffer value (checked by the caller). */
isolate_shared_store *isolate_shared_store_of(iso_value sab);
/* A SharedArrayBuffer object over s, which takes over one reference
 * (given back to the caller on failure). May allocate. */
iso_handle isolate_shared_array_buffer_wrap(iso_isolate *iso,
                                            isolate_shared_store *s);

/* ---- the gc_extern of buffer-like objects ---- */

/* ArrayBuffer, SharedArrayBuffer, external and port objects keep their
 * gc_extern pointer in their first raw word (gc/object.h). */
static inline gc_extern *isolate_extern_of(iso_value v) {
  gc_extern *e;
  __builtin_memcpy(&e, gc_slots(v), sizeof e);
  return e;
}
static inline void isolate_extern_set(iso_value v, gc_extern *e) {
  __builtin_memcpy(gc_slots(v), &e, sizeof e);
}
/* Is the ArrayBuffer ab detached (or, impossibly, without a store)? */
static inline bool isolate_buffer_detached(iso_value ab) {
  gc_extern *e = isolate_extern_of(ab);
  return e == NULL || e->detached;
}

/* An ArrayBuffer that adopts a store: one moved out of another buffer
 * (gc_extern_steal), or malloc'd bytes (free_cb NULL and not external:
 * the heap frees them with free()). NULL on failure; then the store is
 * still the caller's. May allocate. */
iso_handle isolate_array_buffer_adopt(iso_isolate *iso, const gc_extern *s);

/* A view over buffer (an ArrayBuffer or SharedArrayBuffer) that the caller
 * has checked: the type is valid and the range fits. old: allocate in
 * the old generation. May allocate. */
iso_handle isolate_typed_array_make(iso_isolate *iso, uint32_t type,
                                    iso_value buffer, uint64_t byte_offset,
                                    uint64_t length, bool old);
/* Element size of a view type, 0 for an invalid type. */
size_t isolate_typed_array_element_size(uint32_t type);
/* Byte length of any buffer value (0 for a detached one). */
size_t isolate_buffer_length(iso_value buffer);

/* ---- messages ---- */

/* An ArrayBuffer store moved into a message by a transfer, or a store
 * made for an out-of-line copy. */
typedef struct isolate_clone_moved {
  gc_extern store; /* data, length, free_cb, ctx, external */
  iso_handle lent; /* deserializing: the buffer now holding the store */
  size_t at;       /* copies: byte offset of the 'C' that refers to it */
  uint8_t state;   /* CLONE_ENTRY_* */
} isolate_clone_moved;

typedef struct isolate_clone_port_entry {
  iso_port *port;
  iso_handle lent; /* deserializing: the port value now owning it */
  uint8_t state;
} isolate_clone_port_entry;

enum {
  CLONE_ENTRY_OWNED = 0, /* the message owns it; freed with the message */
  CLONE_ENTRY_LENT,      /* a half-built graph holds it; taken back on error */
  CLONE_ENTRY_GONE,      /* a deserialized graph owns it */
};

/* A serialized value and what travels with it. Any thread may hold or
 * free one; one thread at a time uses it. */
struct iso_message {
  uint8_t *data;
  size_t size;
  isolate_clone_moved *moved; /* transferred ArrayBuffer stores */
  uint32_t nmoved;
  uint32_t ncopies;
  isolate_clone_moved *copies; /* out-of-line copies, in stream order */
  uint32_t nshared;
  isolate_shared_store **shared; /* one reference each */
  isolate_clone_port_entry *ports;
  uint32_t nports;
  /* Room for the port queue's link while the message is queued
   * (threads/port.c); clone code never touches it. */
  void *queue_link[2];
  uint8_t inline_data[]; /* small messages keep their bytes here */
};

/* ---- writer and reader ---- */

/* A growing byte buffer. The bytes start in storage the writer does not
 * own (a message's inline area, or the thread's scratch buffer) and move
 * to malloc'd memory when they outgrow it. */
struct iso_clone_writer {
  uint8_t *buf;
  size_t len, cap;
  uint8_t *initial; /* storage to leave alone when growing */
  bool failed;      /* a growth failed: the bytes are incomplete */
};

/* The bytes a delegate's read_host may read: [pos, end). */
struct iso_clone_reader {
  const uint8_t *pos, *end;
  bool overrun;
};

/* Makes room for n more bytes; false (and failed set) when malloc fails. */
bool isolate_clone_writer_grow(iso_clone_writer *w, size_t n);
static inline bool isolate_clone_writer_reserve(iso_clone_writer *w, size_t n) {
  return w->cap - w->len >= n || isolate_clone_writer_grow(w, n);
}

/* ---- per-thread scratch ---- */

/* An identity table entry: key an object address, val an object id or a
 * pending transfer (see clone_write.c), gen the clone it belongs to. */
typedef struct isolate_clone_slot {
  uint64_t key;
  uint32_t val;
  uint32_t gen;
} isolate_clone_slot;

/* A container the serializer is writing: children [i, n) are to come.
 * Maps count keys and values (n = 2 * size); for them cursor is the
 * iso_map_next cursor, and key/pend the entry in progress (its value is
 * written after its key). */
typedef struct isolate_clone_wframe {
  iso_value obj;
  uint64_t i, n;
  size_t cursor;
  iso_value key, pend;
} isolate_clone_wframe;

/* A container the deserializer is filling: children [i, n) are to come.
 * obj is a handle (the container's id handle); key roots a map's pending
 * key. kind is a GC_TYPE_*. */
typedef struct isolate_clone_rframe {
  iso_handle obj;
  iso_handle key;
  uint64_t i, n;
  uint32_t kind;
} isolate_clone_rframe;

/* Reused from clone to clone on one thread, so cloning a small value
 * mallocs nothing. A clone that finds the thread's scratch busy (a
 * delegate cloning from inside a clone) gets a private one. */
typedef struct isolate_clone_scratch {
  bool busy;
  /* serializer */
  isolate_clone_slot *table;
  size_t table_mask; /* capacity - 1; capacity a power of two */
  size_t table_count;
  uint32_t gen;
  isolate_clone_wframe *wstack;
  size_t wcap;
  isolate_shared_store **shared;
  size_t nshared, shared_cap;
  uint8_t *buf; /* bytes of an in-process clone */
  size_t buf_cap;
  isolate_clone_moved *copies; /* this clone's out-of-line copies so far */
  size_t ncopies, copies_cap;
  /* deserializer */
  isolate_clone_rframe *rstack;
  size_t rcap;
  iso_handle *ids;
  size_t ids_cap;
  size_t size_hint; /* size of this thread's last message */
} isolate_clone_scratch;

isolate_clone_scratch *isolate_clone_scratch_acquire(void);
void isolate_clone_scratch_release(isolate_clone_scratch *s);
/* Grows an array of elements of size elem to hold at least need; false
 * on malloc failure (the array is unchanged). */
bool isolate_clone_grow(void **array, size_t *cap, size_t need, size_t elem);

/* ---- the two halves ---- */

/* Serializes v into w and fills msg's tables; on error nothing was
 * detached and msg's tables are empty. fn names the public function for
 * error messages. */
iso_status isolate_clone_serialize(iso_isolate *iso, isolate_clone_scratch *s,
                                   iso_clone_writer *w, iso_value v,
                                   const iso_value *transfer, size_t ntransfer,
                                   const iso_clone_delegate *delegate,
                                   iso_message *msg, const char *fn);
/* Rebuilds msg in iso; on error the message is as it was. */
iso_handle isolate_clone_deserialize(iso_isolate *iso, isolate_clone_scratch *s,
                                     iso_message *msg,
                                     const iso_clone_delegate *delegate,
                                     const char *fn);
/* Releases everything msg's tables still own and empties them. */
void isolate_clone_message_release_tables(iso_message *msg);
/* Frees a store of a copy or transfer table entry, as its buffer would. */
void isolate_clone_store_free(gc_extern *e);

/* A store for an out-of-line copy of length bytes (at least
 * CLONE_COPY_MIN), its contents undefined; *free_cb receives the release
 * that gc_extern.free_cb must call. NULL if the system refuses. Any
 * thread. */
void *isolate_clone_copy_store_alloc(size_t length, iso_free_callback *free_cb);
/* Before copying n bytes from p: maps in, in one call, pages of a big
 * buffer that were never touched (they would fault one by one). */
void isolate_clone_prefault_read(const void *p, size_t n);

#endif /* ISOLATE_CLONE_H */
