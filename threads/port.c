/*
 * Message ports and channels (as MessageChannel / postMessage).
 *
 * A channel is one allocation holding two entangled ports. What one side
 * posts lands in the other side's incoming queue: a liburcu wfcqueue of
 * serialized messages (iso_message, linked through their queue_link
 * words, so queueing mallocs nothing). Enqueueing is wait-free: an
 * exchange on the tail and a store. Dequeueing takes the queue's head
 * lock, because a receiver and a closer that drains the queue may run on
 * different threads.
 *
 * Who touches what, per port (the incoming side of the queue it owns):
 *   head, received                 the receiver (one at a time) and the
 *                                  closer, under head.lock
 *   tail, queued_messages/bytes    posters (any thread, atomics) and the
 *                                  receiver (atomic decrements)
 *   posted, max_messages/bytes     relaxed atomics; statistics and limits
 *   closed, owner, refs            atomics (see the Notes below)
 *   fd, peer, channel              immutable until the channel is freed
 *
 * Counting identity, once no post or receive is in flight:
 *   queued_messages == messages in the queue
 *   queued_bytes    == sum of their iso_message_size()
 * A poster raises the counters before it enqueues and the receiver lowers
 * them after it dequeues, so in flight they only ever overstate the queue.
 *
 * Note [Port descriptor]
 * iso_port_fd() is an eventfd in semaphore mode that is readable exactly
 * while the port has queued messages or a side of the channel is closed:
 * level semantics, as epoll and libuv expect, with no read needed by the
 * program (it must never read or write the descriptor itself). Syscalls
 * happen only on transitions, not per message:
 *   - a poster whose increment takes queued_messages from 0 to 1 (an "up")
 *     writes 1 to the descriptor after its enqueue;
 *   - whoever takes queued_messages from 1 to 0 (a "down": the receiver
 *     after a dequeue, or a poster undoing a reservation) reads 1 from it;
 *   - closing either side writes one permanent 1 to both descriptors.
 * Ups and downs alternate in the counter's modification order, so once the
 * writes and reads in flight complete, the descriptor's counter is
 * (ups - downs) + closes = (queued_messages > 0) + closes. A down's read
 * may run before the matching up's write has landed (the poster is
 * between its enqueue and its write); the reader then waits for it, which
 * is a matter of instructions, since a write is owed for every down. The
 * receiver never reads the descriptor except for a down, so a program
 * that polls it sees it readable until the queue is empty.
 *
 * Note [Port ownership]
 * Each side has one owner at a time (threads/port.h lists them) and the
 * owner holds the side's "owner reference", released by the first
 * iso_port_close of that side (closing is idempotent, by an exchange on
 * closed). Other holders take their own references: a port value (so the
 * C program may still close the raw pointer it kept), a worker for its
 * parent port, an event loop for each port it handles, and every receive
 * or post for its duration (so a close from another thread cannot free
 * the port under a blocked receiver). refs counts them per port; when a
 * port's count reaches 0 the port is closed and unused, and the channel's
 * memory goes when both ports are at 0 (channel.sides). Messages still
 * queued then are freed with iso_message_free, which closes the ports
 * they carry.
 */
#define _LGPL_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <urcu/wfcqueue.h>

#include "clone.h"
#include "isolate_internal.h"
#include "port.h"

/* Who owns a side (Note [Port ownership]). */
enum {
  PORT_OWNER_PROGRAM = 0,
  PORT_OWNER_VALUE = 1,
  PORT_OWNER_MESSAGE = 2,
};

typedef struct thr_channel thr_channel;

struct iso_port {
  /* The receiving side: this port's own queue. */
  struct cds_wfcq_head head;
  uint64_t received; /* messages received from this port */
  /* Written by every poster to this port (its peer's posts). */
  _Alignas(64) struct cds_wfcq_tail tail;
  size_t queued_messages;
  size_t queued_bytes;
  /* Written by posts through this port, and by references. */
  _Alignas(64) uint64_t posted; /* messages posted through this port */
  /* Posts through this port fail with ISO_ERR_LIMIT while the peer's
   * queue holds this many messages or bytes (0: no limit). */
  size_t max_messages, max_bytes;
  int closed;
  int owner; /* PORT_OWNER_* */
  size_t refs;
  int fd;
  iso_port *peer;
  thr_channel *channel;
};

struct thr_channel {
  iso_port ports[2];
  size_t sides; /* ports whose refs have not reached 0 */
};

_Static_assert(sizeof(struct cds_wfcq_node) <=
                   sizeof(((iso_message *)0)->queue_link),
               "a queue node must fit in iso_message.queue_link");

static inline struct cds_wfcq_node *msg_node(iso_message *m) {
  return (struct cds_wfcq_node *)(void *)m->queue_link;
}
static inline iso_message *node_msg(struct cds_wfcq_node *n) {
  return (iso_message *)(void *)((char *)n - offsetof(iso_message, queue_link));
}

/* ---- the descriptor (Note [Port descriptor]) ---- */

static void fd_signal(iso_port *p) {
  uint64_t one = 1;
  while (write(p->fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

/* Takes the 1 a down owes. The write it pairs with is at most a few
 * instructions away (or preempted); a program that broke the contract by
 * reading the descriptor itself would make us wait forever, so after a
 * few seconds the counter is left as it is. */
static void fd_consume(iso_port *p) {
  uint64_t n;
  for (int tries = 0; tries < 500; tries++) {
    if (read(p->fd, &n, sizeof n) == (ssize_t)sizeof n) return;
    if (errno == EINTR) continue;
    struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
    (void)poll(&pfd, 1, 10);
  }
}

static inline bool side_closed(const iso_port *p) {
  return thr_load_acquire(&p->closed) != 0;
}

/* ---- channels and references ---- */

/* Empties a queue, lowering its counters, and frees the messages (which
 * closes the ports they carry). Outside the head lock: freeing a message
 * may close other ports. */
static void port_drain(iso_port *p, bool locked) {
  struct cds_wfcq_node *first = NULL, **link = &first, *n;
  if (locked) cds_wfcq_dequeue_lock(&p->head, &p->tail);
  while ((n = __cds_wfcq_dequeue_blocking(&p->head, &p->tail)) != NULL) {
    *link = n;
    link = &n->next;
  }
  *link = NULL;
  if (locked) cds_wfcq_dequeue_unlock(&p->head, &p->tail);
  while ((n = first) != NULL) {
    first = n->next;
    iso_message *m = node_msg(n);
    thr_fetch_sub_relaxed(&p->queued_bytes, iso_message_size(m));
    thr_fetch_sub_relaxed(&p->queued_messages, (size_t)1);
    iso_message_free(m);
  }
}

static void channel_free(thr_channel *ch) {
  /* Every reference is gone: no thread can post or receive any more. */
  for (int i = 0; i < 2; i++) {
    iso_port *p = &ch->ports[i];
    port_drain(p, false);
    cds_wfcq_destroy(&p->head, &p->tail);
    if (p->fd >= 0) close(p->fd);
  }
  free(ch);
}

void thr_port_ref(iso_port *port) {
  thr_fetch_add_relaxed(&port->refs, (size_t)1);
}

void thr_port_unref(iso_port *port) {
  /* acq_rel: every use of the port by this holder happens before the
   * free that the last release performs. */
  if (thr_fetch_add_acq_rel(&port->refs, (size_t)-1) != 1) return;
  thr_channel *ch = port->channel;
  if (thr_fetch_add_acq_rel(&ch->sides, (size_t)-1) != 1) return;
  channel_free(ch);
}

iso_status iso_channel_new(iso_port **port1, iso_port **port2) {
  if (!port1 || !port2)
    return isolate_fail(ISO_ERR_ARGUMENT, "iso_channel_new: NULL argument");
  size_t size = (sizeof(thr_channel) + 63) & ~(size_t)63;
  thr_channel *ch = aligned_alloc(64, size);
  if (!ch)
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                        "iso_channel_new: out of memory");
  memset(ch, 0, size);
  for (int i = 0; i < 2; i++) {
    iso_port *p = &ch->ports[i];
    cds_wfcq_init(&p->head, &p->tail);
    p->refs = 1; /* the owner's */
    p->peer = &ch->ports[1 - i];
    p->channel = ch;
    p->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
  }
  ch->sides = 2;
  if (ch->ports[0].fd < 0 || ch->ports[1].fd < 0) {
    int err = errno;
    channel_free(ch);
    return isolate_fail(ISO_ERR_LIMIT,
                        "iso_channel_new: cannot create an eventfd (%s)",
                        strerror(err));
  }
  *port1 = &ch->ports[0];
  *port2 = &ch->ports[1];
  return ISO_OK;
}

void iso_port_close(iso_port *port) {
  if (!port) return;
  if (thr_exchange_acq_rel(&port->closed, 1) != 0) return;
  /* Wake this side's blocked receivers and tell the peer. */
  fd_signal(port);
  fd_signal(port->peer);
  /* Nobody can receive what is queued here any more. (The descriptor's
   * counter no longer matters: the close made it readable for good.) */
  port_drain(port, true);
  thr_port_unref(port); /* the owner's reference */
}

void thr_port_close_if_unowned(iso_port *port) {
  if (thr_load_acquire(&port->owner) == PORT_OWNER_PROGRAM)
    iso_port_close(port);
}

bool thr_port_closed(iso_port *port) { return side_closed(port); }

/* ---- posting ---- */

/* Reserves room in to's queue for one message posted through from,
 * under from's limit; *up tells whether this reservation made the queue
 * non-empty. Wait-free without a limit, lock-free with one. */
static iso_status reserve(iso_port *from, iso_port *to, bool *up,
                          const char *fn) {
  size_t max_messages = thr_load_relaxed(&from->max_messages);
  size_t max_bytes = thr_load_relaxed(&from->max_bytes);
  if (max_bytes != 0) {
    size_t bytes = thr_load_relaxed(&to->queued_bytes);
    if (bytes >= max_bytes)
      return isolate_fail(ISO_ERR_LIMIT,
                          "%s: the peer's queue holds %zu bytes (limit %zu)",
                          fn, bytes, max_bytes);
  }
  size_t n;
  if (max_messages == 0) {
    n = thr_fetch_add_relaxed(&to->queued_messages, (size_t)1);
  } else {
    n = thr_load_relaxed(&to->queued_messages);
    do {
      if (n >= max_messages)
        return isolate_fail(ISO_ERR_LIMIT,
                            "%s: the peer's queue holds %zu messages "
                            "(limit %zu)",
                            fn, n, max_messages);
    } while (!thr_cas_acq_rel(&to->queued_messages, &n, n + 1));
  }
  *up = n == 0;
  return ISO_OK;
}

/* Gives back a reservation that was not used. An up still owes its write
 * and a down its read (Note [Port descriptor]). */
static void unreserve(iso_port *to, bool up) {
  if (up) fd_signal(to);
  if (thr_fetch_sub_relaxed(&to->queued_messages, (size_t)1) == 1)
    fd_consume(to);
}

static void enqueue(iso_port *to, iso_message *msg, bool up) {
  thr_fetch_add_relaxed(&to->queued_bytes, iso_message_size(msg));
  cds_wfcq_node_init(msg_node(msg));
  /* The exchange inside publishes the message (seq_cst): the receiver's
   * load of the link is ordered after it. */
  cds_wfcq_enqueue(&to->head, &to->tail, msg_node(msg));
  if (up) fd_signal(to);
}

static iso_status closed_error(iso_port *port, const char *fn) {
  if (side_closed(port))
    return isolate_fail(ISO_ERR_CLOSED, "%s: the port is closed", fn);
  return isolate_fail(ISO_ERR_CLOSED, "%s: the peer port is closed", fn);
}

/* The port a port value holds, NULL for anything else. Sets no error. */
static iso_port *value_port(iso_value v) {
  if (!gc_is_kind(v, GC_TYPE_PORT)) return NULL;
  gc_extern *e = isolate_extern_of(v);
  if (!e || e->detached) return NULL;
  return e->data;
}

/* Posts msg (serialized by the caller when serialize is false, or from v
 * here) to port's peer. The post holds a reference, so a close of either
 * side from another thread cannot free the channel under it. */
static iso_status post(iso_port *port, iso_isolate *iso, iso_value v,
                       const iso_value *transfer, size_t ntransfer,
                       iso_message *msg, const char *fn) {
  iso_port *to = port->peer;
  thr_port_ref(port);
  if (side_closed(port) || side_closed(to)) {
    iso_status st = closed_error(port, fn);
    thr_port_unref(port);
    return st;
  }
  /* Room first: a post refused for the limit must not detach anything
   * that the transfer list would move. */
  bool up = false;
  iso_status st = reserve(port, to, &up, fn);
  if (st == ISO_OK && !msg) {
    st = iso_serialize(iso, v, transfer, ntransfer, NULL, &msg);
    if (st != ISO_OK) unreserve(to, up);
  }
  if (st == ISO_OK) {
    enqueue(to, msg, up);
    thr_fetch_add_relaxed(&port->posted, (uint64_t)1);
  }
  thr_port_unref(port);
  return st;
}

iso_status iso_port_post(iso_port *port, iso_isolate *iso, iso_value v,
                         const iso_value *transfer, size_t ntransfer) {
  static const char fn[] = "iso_port_post";
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!port) return isolate_fail(ISO_ERR_ARGUMENT, "%s: port is NULL", fn);
  if (ntransfer && !transfer)
    return isolate_fail(ISO_ERR_ARGUMENT, "%s: transfer is NULL", fn);
  for (size_t i = 0; i < ntransfer; i++) {
    iso_port *t = value_port(transfer[i]);
    if (t && (t == port || t == port->peer))
      return isolate_fail(ISO_ERR_DATA_CLONE,
                          "%s: transfer[%zu] is the port being posted "
                          "through%s; a port cannot carry itself or its "
                          "peer",
                          fn, i, t == port ? "" : "'s peer");
  }
  return post(port, iso, v, transfer, ntransfer, NULL, fn);
}

iso_status iso_port_post_message(iso_port *port, iso_message *msg) {
  static const char fn[] = "iso_port_post_message";
  if (!port || !msg)
    return isolate_fail(ISO_ERR_ARGUMENT, "%s: NULL argument", fn);
  return post(port, NULL, ISO_UNDEFINED, NULL, 0, msg, fn);
}

/* ---- receiving ---- */

/* The next message, or NULL when the queue is empty. Receiver only. */
static iso_message *dequeue(iso_port *p) {
  struct cds_wfcq_node *n;
  cds_wfcq_dequeue_lock(&p->head, &p->tail);
  /* WOULDBLOCK: a poster has swung the tail but not yet linked its node;
   * it is a store away from done. */
  while ((n = __cds_wfcq_dequeue_nonblocking(&p->head, &p->tail)) ==
         CDS_WFCQ_WOULDBLOCK)
    sched_yield();
  if (n) p->received++;
  cds_wfcq_dequeue_unlock(&p->head, &p->tail);
  if (!n) return NULL;
  iso_message *m = node_msg(n);
  thr_fetch_sub_relaxed(&p->queued_bytes, iso_message_size(m));
  if (thr_fetch_sub_relaxed(&p->queued_messages, (size_t)1) == 1) fd_consume(p);
  return m;
}

iso_status thr_port_try_receive(iso_port *port, iso_message **out) {
  if (side_closed(port)) return ISO_ERR_CLOSED;
  if ((*out = dequeue(port)) != NULL) return ISO_OK;
  if (!side_closed(port->peer)) return ISO_ERR_TIMEOUT;
  /* The peer closed: what it posted before closing is in the queue by
   * now (its enqueues happen before its close's release store). */
  if ((*out = dequeue(port)) != NULL) return ISO_OK;
  return ISO_ERR_CLOSED;
}

static int block_poll(struct pollfd *fds, unsigned n, int64_t timeout_ms);

int thr_block_poll(iso_isolate *iso, struct pollfd *fds, unsigned n,
                   int64_t timeout_ms) {
  /* A blocked isolate is parked, so the GC threads finish its marking
   * cycle instead of waiting for its next safepoint (gc/concurrent.c).
   * Not when polling, nor when the caller parked it already. */
  bool park = iso && timeout_ms != 0 &&
              thr_load_relaxed(&iso->park_state) == ISOLATE_RUNNING;
  if (park) gc_park(iso);
  int r = block_poll(fds, n, timeout_ms);
  if (park) gc_unpark(iso);
  return r;
}

static int block_poll(struct pollfd *fds, unsigned n, int64_t timeout_ms) {
  uint64_t deadline =
      timeout_ms > 0 ? isolate_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
  for (;;) {
    int wait_ms;
    if (timeout_ms < 0) {
      wait_ms = -1;
    } else if (timeout_ms == 0) {
      wait_ms = 0;
    } else {
      uint64_t now = isolate_now_ns();
      uint64_t left = deadline > now ? deadline - now : 0;
      uint64_t ms = (left + 999999u) / 1000000u;
      wait_ms = ms > INT_MAX ? INT_MAX : (int)ms;
    }
    int r = poll(fds, n, wait_ms);
    if (r >= 0 || errno != EINTR) return r;
  }
}

/* Something for a receiver to look at: a message, a close, or (with iso)
 * a termination. A hint read without locks; the caller re-checks. */
static bool receive_ready(iso_port *port, iso_isolate *iso) {
  return thr_load_relaxed(&port->queued_messages) != 0 || side_closed(port) ||
         side_closed(port->peer) || (iso && isolate_terminating(iso));
}

/* Before sleeping in poll(), a receiver spins this many rounds (about
 * 10-20 microseconds) in case a message is on its way: a poster on
 * another core usually is, in a busy exchange, and a wake-up from poll()
 * costs a context switch on each side. */
#define RECEIVE_SPIN 200

/* Waits for a message on port, and for iso's wake-ups when iso is not
 * NULL. Sets the thread's error on failure. */
static iso_status port_receive(iso_port *port, iso_isolate *iso,
                               int64_t timeout_ms, iso_message **out,
                               const char *fn) {
  iso_status st;
  uint64_t start = 0;
  bool spun = false;
  thr_port_ref(port); /* a concurrent close must not free it under us */
  for (;;) {
    st = thr_port_try_receive(port, out);
    if (st != ISO_ERR_TIMEOUT) break;
    if (iso && isolate_terminating(iso)) {
      st = ISO_ERR_TERMINATED;
      break;
    }
    if (timeout_ms == 0) break;
    if (!spun) {
      spun = true;
      start = isolate_now_ns();
      for (int i = 0; i < RECEIVE_SPIN && !receive_ready(port, iso); i++) {
        if (i % 32 == 31) {
          sched_yield();
        } else {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        }
      }
      continue;
    }
    int64_t left = timeout_ms;
    if (timeout_ms > 0) {
      uint64_t waited_ms = (isolate_now_ns() - start) / 1000000u;
      if (waited_ms >= (uint64_t)timeout_ms) break;
      left = timeout_ms - (int64_t)waited_ms;
    }
    struct pollfd fds[2] = {{.fd = port->fd, .events = POLLIN},
                            {.fd = iso ? iso->wake_fd : -1, .events = POLLIN}};
    if (thr_block_poll(iso, fds, iso ? 2 : 1, left) < 0) {
      int err = errno;
      thr_port_unref(port);
      return isolate_fail(ISO_ERR_STATE, "%s: poll failed (%s)", fn,
                          strerror(err));
    }
    /* Whoever wrote wake_fd (a terminate, a loop stop from another
     * thread) also set a flag that the caller checks; clear it so the
     * next wait blocks. */
    if (iso && (fds[1].revents & POLLIN)) thr_isolate_wake_clear(iso);
  }
  thr_port_unref(port);
  switch (st) {
    case ISO_OK:
      return ISO_OK;
    case ISO_ERR_TIMEOUT:
      return isolate_fail(st, "%s: no message within %lld ms", fn,
                          (long long)timeout_ms);
    case ISO_ERR_CLOSED:
      if (side_closed(port))
        return isolate_fail(st, "%s: the port is closed", fn);
      return isolate_fail(st,
                          "%s: the peer port is closed and every message "
                          "has been received",
                          fn);
    default:
      return isolate_terminated_error(iso);
  }
}

iso_status iso_port_receive(iso_port *port, iso_isolate *iso,
                            int64_t timeout_ms, iso_handle *out) {
  static const char fn[] = "iso_port_receive";
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!port || !out)
    return isolate_fail(ISO_ERR_ARGUMENT, "%s: NULL argument", fn);
  iso_message *msg;
  st = port_receive(port, iso, timeout_ms, &msg, fn);
  if (st != ISO_OK) return st;
  iso_handle h = iso_deserialize(iso, msg, NULL);
  if (!h) {
    /* The message was received, and is lost: it cannot be rebuilt. */
    st = iso_last_status();
    iso_message_free(msg);
    return st;
  }
  *out = h;
  return ISO_OK;
}

iso_status iso_port_receive_message(iso_port *port, int64_t timeout_ms,
                                    iso_message **out) {
  static const char fn[] = "iso_port_receive_message";
  if (!port || !out)
    return isolate_fail(ISO_ERR_ARGUMENT, "%s: NULL argument", fn);
  return port_receive(port, NULL, timeout_ms, out, fn);
}

/* ---- observing and limiting ---- */

int iso_port_fd(iso_port *port) { return port ? port->fd : -1; }

iso_status iso_port_stats(iso_port *port, iso_port_stats_t *out) {
  if (!port || !out)
    return isolate_fail(ISO_ERR_ARGUMENT, "iso_port_stats: NULL argument");
  memset(out, 0, sizeof *out);
  out->queued_messages = thr_load_relaxed(&port->queued_messages);
  out->queued_bytes = thr_load_relaxed(&port->queued_bytes);
  out->posted = thr_load_relaxed(&port->posted);
  cds_wfcq_dequeue_lock(&port->head, &port->tail);
  out->received = port->received;
  cds_wfcq_dequeue_unlock(&port->head, &port->tail);
  out->closed = side_closed(port) || side_closed(port->peer);
  return ISO_OK;
}

iso_status iso_port_set_limit(iso_port *port, size_t max_messages,
                              size_t max_bytes) {
  if (!port)
    return isolate_fail(ISO_ERR_ARGUMENT, "iso_port_set_limit: port is NULL");
  thr_store_relaxed(&port->max_messages, max_messages);
  thr_store_relaxed(&port->max_bytes, max_bytes);
  return ISO_OK;
}

/* ---- ports as heap values ---- */

/* A port value died (or its isolate was freed): close the port and drop
 * the value's reference. Runs on the isolate's thread inside the GC. */
static void port_value_free(void *data, size_t length, void *ctx) {
  (void)length;
  (void)ctx;
  iso_port *port = data;
  iso_port_close(port);
  thr_port_unref(port);
}

iso_handle iso_port_to_value(iso_isolate *iso, iso_port *port) {
  static const char fn[] = "iso_port_to_value";
  if (ISOLATE_CHECK(iso) != ISO_OK) return NULL;
  if (!port) return ISOLATE_FAIL_NULL(ISO_ERR_ARGUMENT, "%s: port is NULL", fn);
  if (thr_load_acquire(&port->owner) == PORT_OWNER_VALUE)
    return ISOLATE_FAIL_NULL(
        ISO_ERR_ARGUMENT, "%s: the port already belongs to a port value", fn);
  if (side_closed(port))
    return ISOLATE_FAIL_NULL(ISO_ERR_CLOSED, "%s: the port is closed", fn);
  iso_value obj = gc_alloc(iso, GC_TYPE_PORT, 8 + GC_EXTERN_RAW);
  if (obj == 0) return NULL;
  /* No heap allocation from here on: obj stays where it is. */
  iso_handle h = iso_handle_new(iso, obj);
  if (!h) return NULL;
  gc_extern *e = gc_extern_add_opaque(iso, obj, port, port_value_free, NULL);
  if (!e)
    return ISOLATE_FAIL_NULL(ISO_ERR_OUT_OF_MEMORY,
                             "%s: out of memory tracking the port", fn);
  thr_port_ref(port);
  isolate_extern_set(obj, e);
  thr_store_release(&port->owner, PORT_OWNER_VALUE);
  return h;
}

iso_port *iso_port_from_value(iso_value v) {
  if (!gc_is_kind(v, GC_TYPE_PORT)) {
    isolate_fail(ISO_ERR_TYPE, "iso_port_from_value: expected a port, got %s",
                 iso_kind_name(iso_kind_of(v)));
    return NULL;
  }
  iso_port *port = value_port(v);
  if (!port)
    isolate_fail(ISO_ERR_DETACHED,
                 "iso_port_from_value: the port was transferred");
  return port;
}

bool thr_port_can_transfer(iso_value v) {
  iso_port *port = value_port(v);
  return port != NULL && !side_closed(port);
}

iso_port *thr_port_take_from_value(iso_isolate *iso, iso_value v) {
  if (!gc_is_kind(v, GC_TYPE_PORT)) {
    isolate_fail(ISO_ERR_DATA_CLONE, "expected a port, got %s",
                 iso_kind_name(iso_kind_of(v)));
    return NULL;
  }
  gc_extern *e = isolate_extern_of(v);
  iso_port *port = value_port(v);
  if (!port) {
    isolate_fail(ISO_ERR_DATA_CLONE, "the port was already transferred");
    return NULL;
  }
  if (side_closed(port)) {
    isolate_fail(ISO_ERR_DATA_CLONE, "the port is closed");
    return NULL;
  }
  gc_extern moved;
  gc_extern_steal(iso, e, &moved); /* the value is detached now */
  thr_loop_forget_port(iso, port);
  thr_store_release(&port->owner, PORT_OWNER_MESSAGE);
  /* The value's reference goes; the owner's stays with the message. */
  thr_port_unref(port);
  return port;
}
