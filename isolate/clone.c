/*
 * Structured clone: messages, the per-thread scratch state, and the public
 * entry points. The serializer is isolate/clone_write.c, the deserializer
 * isolate/clone_read.c, the format docs/clone-format.md.
 *
 * A message owns its bytes and its tables: stores of transferred
 * ArrayBuffers, one reference per shared store, and transferred ports.
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
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

void isolate_clone_message_release_tables(iso_message *msg) {
  for (uint32_t i = 0; i < msg->nmoved; i++) {
    isolate_clone_moved *mv = &msg->moved[i];
    if (mv->state != CLONE_ENTRY_OWNED) continue;
    gc_extern *e = &mv->store;
    if (e->data != NULL || e->length != 0) {
      if (e->free_cb != NULL)
        e->free_cb(e->data, e->length, e->ctx);
      else if (!e->external)
        free(e->data);
    }
  }
  for (uint32_t i = 0; i < msg->nshared; i++)
    isolate_shared_store_release(msg->shared[i]);
  for (uint32_t i = 0; i < msg->nports; i++)
    if (msg->ports[i].state == CLONE_ENTRY_OWNED)
      iso_port_close(msg->ports[i].port);
  free(msg->moved);
  free(msg->shared);
  free(msg->ports);
  msg->moved = NULL;
  msg->shared = NULL;
  msg->ports = NULL;
  msg->nmoved = msg->nshared = msg->nports = 0;
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
  return msg != NULL ? msg->data : NULL;
}

size_t iso_message_size(const iso_message *msg) {
  return msg != NULL ? msg->size : 0;
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
