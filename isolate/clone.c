/*
 * Structured clone: messages, the per-thread scratch state, and the public
 * entry points. The serializer is isolate/clone_write.c, the deserializer
 * isolate/clone_read.c, the format docs/clone-format.md.
 *
 * A message owns its bytes and its tables: stores of transferred
 * ArrayBuffers, stores of ArrayBuffers copied out of line, one reference
 * per shared store, and transferred ports.
 * Whatever a message still owns when it is freed is released: a store is
 * freed as its buffer would have been, a shared reference dropped, a port
 * closed. Deserializing lends table entries to the graph being built and
 * either gives them away for good (success) or takes them back (failure),
 * so a failed iso_deserialize leaves the message exactly as it was.
 *
 * Scratch (identity table, stacks, byte buffer) is per thread and reused:
 * a steady stream of small clones mallocs only the message itself, and an
 * in-process clone mallocs nothing. Scratch that grew past SCRATCH_KEEP
 * bytes for one big clone is trimmed afterwards, so one huge message does
 * not pin its peak memory on the thread forever.
 *
 * Note [Out-of-line copies]
 * A copied ArrayBuffer of CLONE_COPY_MIN bytes or more is not written
 * into the bytes: the serializer copies it once into a store of its own
 * (the copy table) and writes 'C' and the entry's index; the receiver
 * adopts the store as the new buffer's, with no second copy. That halves
 * the memory traffic of big copied buffers, and the receiver never
 * touches bytes it does not read. The copy table is an in-process
 * detail: iso_message_data() first rewrites such a message into its
 * self-contained form, each 'C' replaced by a 'B' with the bytes inline
 * (flatten), and iso_message_size() always reports that form's size, so
 * bytes written to a file or socket read back the same, and queue limits
 * in bytes count the copies as they did when they were inline.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clone.h"
#include "port.h"

/* Scratch arrays bigger than this are freed after the clone that grew
 * them. */
#define SCRATCH_KEEP ((size_t)1 << 20)
/* Inline message storage: at least this much, at most MSG_INLINE_MAX,
 * sized from the thread's last message. */
#define MSG_INLINE_MIN 128u
#define MSG_INLINE_MAX ((size_t)64 * 1024)

/* ---- growth ---- */

bool isolate_clone_grow(void **array, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t n = *cap ? *cap : 16;
  while (n < need) {
    if (n > SIZE_MAX / 2 / elem) return false;
    n *= 2;
  }
  void *p = realloc(*array, n * elem);
  if (p == NULL) return false;
  *array = p;
  *cap = n;
  return true;
}

bool isolate_clone_writer_grow(iso_clone_writer *w, size_t n) {
  if (w->failed) return false;
  if (n > SIZE_MAX / 2 - w->len) {
    w->failed = true;
    return false;
  }
  size_t cap = w->cap * 2;
  if (cap < w->len + n) cap = w->len + n;
  if (cap < 256) cap = 256;
  uint8_t *p;
  if (w->buf == w->initial) {
    p = malloc(cap);
    if (p != NULL && w->len) memcpy(p, w->buf, w->len);
  } else {
    p = realloc(w->buf, cap);
  }
  if (p == NULL) {
    w->failed = true;
    return false;
  }
  w->buf = p;
  w->cap = cap;
  return true;
}

iso_status iso_clone_write_bytes(iso_clone_writer *w, const void *p, size_t n) {
  if (w == NULL || (p == NULL && n != 0))
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "iso_clone_write_bytes: NULL argument");
  if (!isolate_clone_writer_reserve(w, n))
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                        "iso_clone_write_bytes: out of memory for %zu "
                        "bytes",
                        n);
  if (n) memcpy(w->buf + w->len, p, n);
  w->len += n;
  return ISO_OK;
}

iso_status iso_clone_read_bytes(iso_clone_reader *r, void *p, size_t n) {
  if (r == NULL || (p == NULL && n != 0))
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "iso_clone_read_bytes: NULL argument");
  if ((size_t)(r->end - r->pos) < n) {
    r->overrun = true;
    return isolate_fail(ISO_ERR_DATA_CLONE,
                        "iso_clone_read_bytes: %zu bytes asked, %zu left in "
                        "the host object",
                        n, (size_t)(r->end - r->pos));
  }
  if (n) memcpy(p, r->pos, n);
  r->pos += n;
  return ISO_OK;
}

/* ---- scratch ---- */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local isolate_clone_scratch *scratch_tls;

static void scratch_free(isolate_clone_scratch *s) {
  if (s == NULL) return;
  free(s->table);
  free(s->wstack);
  free(s->shared);
  free(s->buf);
  free(s->copies);
  free(s->rstack);
  free(s->ids);
  free(s);
}

static void scratch_destructor(void *p) { scratch_free(p); }

static void scratch_key_init(void) {
  /* Without a key, scratch of exiting threads leaks; cloning still works. */
  (void)pthread_key_create(&scratch_key, scratch_destructor);
}

isolate_clone_scratch *isolate_clone_scratch_acquire(void) {
  isolate_clone_scratch *s = scratch_tls;
  if (s != NULL && !s->busy) {
    s->busy = true;
    return s;
  }
  isolate_clone_scratch *fresh = calloc(1, sizeof *fresh);
  if (fresh == NULL) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY, "out of memory for clone state");
    return NULL;
  }
  fresh->busy = true;
  if (s == NULL) {
    pthread_once(&scratch_once, scratch_key_init);
    pthread_setspecific(scratch_key, fresh);
    scratch_tls = fresh;
  }
  return fresh;
}

/* Frees *p when its capacity is above the keep limit. */
static void trim(void **p, size_t *cap, size_t elem) {
  if (*cap * elem > SCRATCH_KEEP) {
    free(*p);
    *p = NULL;
    *cap = 0;
  }
}

void isolate_clone_scratch_release(isolate_clone_scratch *s) {
  if (s == NULL) return;
  if (s != scratch_tls) {
    scratch_free(s); /* a nested clone's private scratch */
    return;
  }
  if ((s->table_mask + 1) * sizeof(isolate_clone_slot) > SCRATCH_KEEP) {
    free(s->table);
    s->table = NULL;
    s->table_mask = 0;
    s->table_count = 0;
  }
  trim((void **)&s->wstack, &s->wcap, sizeof *s->wstack);
  trim((void **)&s->shared, &s->shared_cap, sizeof *s->shared);
  trim((void **)&s->buf, &s->buf_cap, 1);
  trim((void **)&s->copies, &s->copies_cap, sizeof *s->copies);
  trim((void **)&s->rstack, &s->rcap, sizeof *s->rstack);
  trim((void **)&s->ids, &s->ids_cap, sizeof *s->ids);
  s->busy = false;
}

/* ---- messages ---- */

static iso_message *message_alloc(size_t inline_cap) {
  iso_message *m = malloc(sizeof *m + inline_cap);
  if (m == NULL) return NULL;
  memset(m, 0, sizeof *m);
  m->data = m->inline_data;
  return m;
}

void isolate_clone_store_free(gc_extern *e) {
  if (e->data != NULL || e->length != 0) {
    if (e->free_cb != NULL)
      e->free_cb(e->data, e->length, e->ctx);
    else if (!e->external)
      free(e->data);
  }
  e->data = NULL;
  e->length = 0;
}

void isolate_clone_message_release_tables(iso_message *msg) {
  for (uint32_t i = 0; i < msg->nmoved; i++)
    if (msg->moved[i].state == CLONE_ENTRY_OWNED)
      isolate_clone_store_free(&msg->moved[i].store);
  for (uint32_t i = 0; i < msg->ncopies; i++)
    if (msg->copies[i].state == CLONE_ENTRY_OWNED)
      isolate_clone_store_free(&msg->copies[i].store);
  for (uint32_t i = 0; i < msg->nshared; i++)
    isolate_shared_store_release(msg->shared[i]);
  for (uint32_t i = 0; i < msg->nports; i++)
    if (msg->ports[i].state == CLONE_ENTRY_OWNED)
      iso_port_close(msg->ports[i].port);
  free(msg->moved);
  free(msg->copies);
  free(msg->shared);
  free(msg->ports);
  msg->moved = NULL;
  msg->copies = NULL;
  msg->shared = NULL;
  msg->ports = NULL;
  msg->nmoved = msg->ncopies = msg->nshared = msg->nports = 0;
}

/* ---- out-of-line copies (Note [Out-of-line copies]) ---- */

/* Note [Copy store cache]
 * A store for an out-of-line copy that comes from a fresh mapping costs a
 * page fault per page when the copy writes it (the kernel allocates,
 * zeroes and charges each page): on the machines measured, that took
 * several times longer than the copy itself. So stores released by their
 * buffers (on the receiver's thread, usually in a burst when its
 * collector frees the buffers that died) are kept in a process-wide
 * cache, mapped and faulted in, and the next copy of the same
 * page-rounded size takes one.
 *
 * The cache (isolate/map_cache.c) is bounded (ISOLATE_MAP_CACHE_SLOTS
 * stores and GC_EXTERNAL_STEP bytes in all); what does not fit is unmapped
 * at once. The byte bound is the
 * external growth that makes a heap collect (GC_EXTERNAL_STEP): that much
 * dead store memory can pile up in a receiver before its collector frees
 * it in one burst, and a cache that held less would miss most of the next
 * burst's worth of copies (with 16 MiB instead of 64, a stream of 1 MiB
 * copies ran about half as fast). The cached stores are memory that the
 * receiver's dead buffers held a moment before, so a steady stream's peak
 * resident size does not grow; a process that stops copying keeps up to
 * that much mapped until it exits.
 *
 * It is process-wide rather than per runtime because a store can outlive
 * the runtime that made it (a message freed later). A mutex guards it,
 * taken once per big copy and once per release, which is noise beside
 * copying 64 KiB or more. Stores below GC_STORE_MMAP_MIN (only in builds
 * that lower CLONE_COPY_MIN, such as the fuzz target) come from malloc,
 * so the leak checker sees them. */
static isolate_map_cache copy_cache = ISOLATE_MAP_CACHE_INIT(GC_EXTERNAL_STEP);

static void copy_store_release(void *data, size_t length, void *ctx) {
  (void)ctx;
  isolate_map_cache_put(&copy_cache, data, isolate_page_round(length));
}

void *isolate_clone_copy_store_alloc(size_t length,
                                     iso_free_callback *free_cb) {
  if (length < GC_STORE_MMAP_MIN) {
    *free_cb = NULL;
    return malloc(length);
  }
  size_t size = isolate_page_round(length);
  void *data = isolate_map_cache_take(&copy_cache, size);
  if (data == NULL) {
    data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
    if (data == MAP_FAILED) return NULL;
  } else if (size > length) {
    /* The copy overwrites [0, length); the rest of the last page still
     * holds an earlier buffer's bytes, which no buffer may show. */
    memset((char *)data + length, 0, size - length);
  }
  *free_cb = copy_store_release;
  return data;
}

/* Maps in the pages of [p, p + n) that were never touched, in one call,
 * before a copy reads them. A buffer from gc_store_alloc is a fresh
 * mapping of which the program may have written only a few pages; a copy
 * that read the rest would take a page fault per page (each mapping the
 * shared zero page), which costs far more than copying them. One page in
 * the middle is probed first, so that a buffer already in memory costs a
 * mincore() rather than a walk of all its pages. Advisory: failures (an
 * old kernel) leave the faults to the copy. */
void isolate_clone_prefault_read(const void *p, size_t n) {
#ifdef MADV_POPULATE_READ
  size_t ps = isolate_page_round(1);
  uintptr_t start = (uintptr_t)p & ~(uintptr_t)(ps - 1);
  uintptr_t end = ((uintptr_t)p + n + ps - 1) & ~(uintptr_t)(ps - 1);
  uintptr_t mid = ((uintptr_t)p + n / 2) & ~(uintptr_t)(ps - 1);
  unsigned char resident = 0;
  if (mincore((void *)mid, ps, &resident) != 0 || (resident & 1)) return;
  (void)madvise((void *)start, end - start, MADV_POPULATE_READ);
#else
  (void)p;
  (void)n;
#endif
}

static size_t varint_size(uint64_t x) {
  size_t n = 1;
  while (x >= 0x80) {
    x >>= 7;
    n++;
  }
  return n;
}

/* The size of msg's self-contained form: each 'C' and its index become
 * a 'B', the length and the bytes. */
static size_t message_flat_size(const iso_message *msg) {
  size_t n = msg->size;
  for (uint32_t i = 0; i < msg->ncopies; i++) {
    size_t len = msg->copies[i].store.length;
    n += varint_size(len) + len - varint_size(i);
  }
  return n;
}

/* Rewrites msg into its self-contained form. The copy table comes only
 * from iso_serialize, so its offsets are trusted. false (error set) when
 * memory runs out; msg is unchanged then. */
static bool message_flatten(iso_message *msg) {
  if (msg->ncopies == 0) return true;
  size_t flat = message_flat_size(msg);
  uint8_t *out = malloc(flat);
  if (out == NULL) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                 "iso_message_data: out of memory for %zu bytes", flat);
    return false;
  }
  size_t from = 0, o = 0;
  for (uint32_t i = 0; i < msg->ncopies; i++) {
    isolate_clone_moved *c = &msg->copies[i];
    size_t len = c->store.length;
    memcpy(out + o, msg->data + from, c->at - from);
    o += c->at - from;
    out[o++] = CLONE_TAG_BUFFER;
    size_t x = len;
    while (x >= 0x80) {
      out[o++] = (uint8_t)(x | 0x80);
      x >>= 7;
    }
    out[o++] = (uint8_t)x;
    memcpy(out + o, c->store.data, len);
    o += len;
    from = c->at + 1 + varint_size(i);
  }
  memcpy(out + o, msg->data + from, msg->size - from);
  for (uint32_t i = 0; i < msg->ncopies; i++)
    isolate_clone_store_free(&msg->copies[i].store);
  free(msg->copies);
  msg->copies = NULL;
  msg->ncopies = 0;
  if (msg->data != msg->inline_data) free(msg->data);
  msg->data = out;
  msg->size = flat;
  return true;
}

void iso_message_free(iso_message *msg) {
  if (msg == NULL) return;
  isolate_clone_message_release_tables(msg);
  if (msg->data != msg->inline_data) free(msg->data);
  free(msg);
}

iso_message *iso_message_from_bytes(const void *data, size_t len) {
  if (data == NULL && len != 0) {
    isolate_fail(ISO_ERR_ARGUMENT,
                 "iso_message_from_bytes: data is NULL but len is %zu", len);
    return NULL;
  }
  bool inl = len <= MSG_INLINE_MAX;
  iso_message *m = message_alloc(inl ? len : 0);
  if (m != NULL && !inl) {
    m->data = malloc(len);
    if (m->data == NULL) {
      free(m);
      m = NULL;
    }
  }
  if (m == NULL) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                 "iso_message_from_bytes: out of memory for %zu bytes", len);
    return NULL;
  }
  if (len) memcpy(m->data, data, len);
  m->size = len;
  return m;
}

const void *iso_message_data(const iso_message *msg) {
  if (msg == NULL) return NULL;
  /* The message is the caller's, so rewriting it in place is allowed;
   * the const only promises that its value (what it deserializes to)
   * does not change. */
  iso_message *m = (iso_message *)msg;
  return message_flatten(m) ? m->data : NULL;
}

size_t iso_message_size(const iso_message *msg) {
  return msg != NULL ? message_flat_size(msg) : 0;
}

/* ---- entry points ---- */

iso_status iso_serialize(iso_isolate *iso, iso_value v,
                         const iso_value *transfer, size_t ntransfer,
                         const iso_clone_delegate *delegate,
                         iso_message **out) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (out == NULL)
    return isolate_fail(ISO_ERR_ARGUMENT, "iso_serialize: out is NULL");
  *out = NULL;
  if (transfer == NULL && ntransfer != 0)
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "iso_serialize: transfer is NULL but ntransfer is "
                        "%zu",
                        ntransfer);
  isolate_clone_scratch *s = isolate_clone_scratch_acquire();
  if (s == NULL) return ISO_ERR_OUT_OF_MEMORY;
  size_t cap = s->size_hint;
  if (cap < MSG_INLINE_MIN) cap = MSG_INLINE_MIN;
  if (cap > MSG_INLINE_MAX) cap = MSG_INLINE_MAX;
  iso_message *msg = message_alloc(cap);
  if (msg == NULL) {
    isolate_clone_scratch_release(s);
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                        "iso_serialize: out of memory for the message");
  }
  iso_clone_writer w = {msg->inline_data, 0, cap, msg->inline_data, false};
  st = isolate_clone_serialize(iso, s, &w, v, transfer, ntransfer, delegate,
                               msg, "iso_serialize");
  if (st == ISO_OK) {
    msg->data = w.buf;
    msg->size = w.len;
    /* Headroom, so that a stream of slightly growing messages does not
     * regrow every time. */
    s->size_hint = w.len + w.len / 4;
    *out = msg;
  } else {
    if (w.buf != w.initial) free(w.buf);
    free(msg);
  }
  isolate_clone_scratch_release(s);
  return st;
}

iso_handle iso_deserialize(iso_isolate *iso, iso_message *msg,
                           const iso_clone_delegate *delegate) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (msg == NULL)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_deserialize: message is NULL");
  isolate_clone_scratch *s = isolate_clone_scratch_acquire();
  if (s == NULL) return NULL;
  iso_handle h =
      isolate_clone_deserialize(iso, s, msg, delegate, "iso_deserialize");
  isolate_clone_scratch_release(s);
  if (h != NULL) iso_message_free(msg); /* consumed */
  return h;
}

iso_handle iso_structured_clone(iso_isolate *iso, iso_value v,
                                const iso_value *transfer, size_t ntransfer) {
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (transfer == NULL && ntransfer != 0)
    return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT,
                             "iso_structured_clone: transfer is NULL but "
                             "ntransfer is %zu",
                             ntransfer);
  isolate_clone_scratch *s = isolate_clone_scratch_acquire();
  if (s == NULL) return NULL;
  /* The bytes never leave the thread: write them into the scratch buffer
   * and read them back from there. The message on the stack only carries
   * the tables. */
  iso_message msg;
  memset(&msg, 0, sizeof msg);
  iso_clone_writer w = {s->buf, 0, s->buf_cap, NULL, false};
  iso_handle h = NULL;
  iso_status st = isolate_clone_serialize(iso, s, &w, v, transfer, ntransfer,
                                          NULL, &msg, "iso_structured_clone");
  s->buf = w.buf;
  s->buf_cap = w.cap;
  if (st == ISO_OK) {
    msg.data = w.buf;
    msg.size = w.len;
    h = isolate_clone_deserialize(iso, s, &msg, NULL, "iso_structured_clone");
    /* On failure (out of memory), transferred stores die with the
     * message, as they would with a message that is never received. */
    isolate_clone_message_release_tables(&msg);
  }
  isolate_clone_scratch_release(s);
  return h;
}
