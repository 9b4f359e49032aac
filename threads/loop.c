/*
 * The event loop and timers: one loop per isolate, its state in
 * iso->loop, created on first use and freed with the isolate
 * (thr_loop_destroy).
 *
 * One turn of the loop: drop handlers whose port is closed or finished;
 * stop if nothing is left to wait for; run the timers that are due; run up
 * to LOOP_BATCH messages per handled port; then block in one poll() on
 * every handled port's descriptor and the isolate's wake_fd, for as long
 * as the earliest timer allows. Every callback runs in its own handle
 * scope, and after each one the loop checks whether it was stopped or the
 * isolate is being terminated.
 *
 * Timers (setTimeout/setInterval) sit in a binary min-heap ordered by
 * (deadline, seq) on CLOCK_MONOTONIC nanoseconds; seq is the order of
 * (re)scheduling, so timers due at the same time run in the order they
 * were started, as in Node. A timer started by a callback never runs in
 * the same turn (only timers with seq below the turn's first new seq do),
 * which is what keeps an interval of 0 from starving messages. An
 * interval's next deadline is its previous one plus the period, or now
 * plus the period when it fell behind: no bursts to catch up.
 *
 * Timer ids are generational handles: the low 32 bits index a slot, the
 * high 32 bits are the slot's generation, bumped whenever the slot is
 * released. So clearing a timer that ran or was cleared finds a stale
 * generation and is refused in O(1), and ids are never 0.
 *
 * Who touches what: everything belongs to the isolate's owner, except
 * stop and running, which iso_loop_stop may set from any thread (atomics),
 * and the loop pointer itself, published with a release store so that
 * such a thread sees an initialised struct.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isolate_internal.h"
#include "port.h"

#define LOOP_BATCH 64 /* messages per port per turn, for fairness */
#define LOOP_MAX_MS ((uint64_t)1 << 40) /* 34 years: keeps ns in range */

typedef struct loop_timer {
  iso_timer_id id;
  uint64_t deadline; /* ns */
  uint64_t seq;
  uint64_t repeat; /* ns; 0 for a one-shot timer */
  iso_timer_callback cb;
  void *data;
  size_t heap_index;
} loop_timer;

typedef struct loop_slot {
  loop_timer *timer; /* NULL when free */
  uint32_t gen;      /* never 0 */
} loop_slot;

typedef struct loop_handler {
  iso_port *port; /* the loop holds a reference */
  iso_message_handler fn;
  void *data;
  bool dead; /* removed, closed or finished; dropped at the next prune */
} loop_handler;

typedef struct thr_loop {
  loop_timer **heap;
  size_t nheap, heap_cap;
  loop_slot *slots;
  uint32_t *free_slots;
  size_t nslots, nfree, slots_cap;
  uint64_t next_seq;
  /* The interval whose callback is running; clearing it from inside sets
   * this to NULL so that it is not rescheduled. */
  loop_timer *running_timer;
  loop_handler *handlers;
  size_t nhandlers, handlers_cap;
  struct pollfd *pfds;
  size_t pfds_cap;
  int stop;    /* atomic; any thread */
  int running; /* atomic; written by the owner */
} thr_loop;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t n = *cap ? *cap * 2 : 8;
  while (n < need) n *= 2;
  void *q = realloc(*p, n * elem);
  if (!q) return false;
  *p = q;
  *cap = n;
  return true;
}

static thr_loop *loop_get(iso_isolate *iso) {
  thr_loop *L = iso->loop;
  if (L) return L;
  L = calloc(1, sizeof *L);
  if (!L) {
    isolate_fail(ISO_ERR_OUT_OF_MEMORY, "out of memory for the event loop");
    return NULL;
  }
  L->next_seq = 1;
  /* Pairs with the acquire load in iso_loop_stop. */
  thr_store_release(&iso->loop, (void *)L);
  return L;
}

static inline bool should_return(iso_isolate *iso, thr_loop *L) {
  return thr_load_acquire(&L->stop) != 0 || isolate_terminating(iso);
}

/* ---- the timer heap ---- */

static inline bool earlier(const loop_timer *a, const loop_timer *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_place(thr_loop *L, size_t i, loop_timer *t) {
  L->heap[i] = t;
  t->heap_index = i;
}

static void sift_up(thr_loop *L, size_t i) {
  loop_timer *t = L->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(t, L->heap[parent])) break;
    heap_place(L, i, L->heap[parent]);
    i = parent;
  }
  heap_place(L, i, t);
}

static void sift_down(thr_loop *L, size_t i) {
  loop_timer *t = L->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= L->nheap) break;
    if (c + 1 < L->nheap && earlier(L->heap[c + 1], L->heap[c])) c++;
    if (!earlier(L->heap[c], t)) break;
    heap_place(L, i, L->heap[c]);
    i = c;
  }
  heap_place(L, i, t);
}

/* The caller has reserved room (heap_cap > nheap). */
static void heap_push(thr_loop *L, loop_timer *t) {
  t->seq = L->next_seq++;
  L->heap[L->nheap++] = t;
  sift_up(L, L->nheap - 1);
}

static void heap_remove(thr_loop *L, size_t i) {
  loop_timer *last = L->heap[--L->nheap];
  if (i == L->nheap) return;
  heap_place(L, i, last);
  sift_down(L, i);
  sift_up(L, last->heap_index);
}

/* ---- timer ids ---- */

static loop_timer *timer_lookup(thr_loop *L, iso_timer_id id) {
  uint32_t slot = (uint32_t)id;
  uint32_t gen = (uint32_t)(id >> 32);
  if (!L || slot >= L->nslots || L->slots[slot].gen != gen) return NULL;
  return L->slots[slot].timer;
}

static void slot_release(thr_loop *L, iso_timer_id id) {
  loop_slot *s = &L->slots[(uint32_t)id];
  s->timer = NULL;
  if (++s->gen == 0) s->gen = 1;
  L->free_slots[L->nfree++] = (uint32_t)id;
}

iso_timer_id iso_timer_start(iso_isolate *iso, uint64_t delay_ms,
                             uint64_t repeat_ms, iso_timer_callback cb,
                             void *data) {
  static const char fn[] = "iso_timer_start";
  if (ISOLATE_CHECK(iso) != ISO_OK) return 0;
  if (!cb) return isolate_fail(ISO_ERR_ARGUMENT, "%s: cb is NULL", fn), 0;
  if (delay_ms > LOOP_MAX_MS || repeat_ms > LOOP_MAX_MS)
    return isolate_fail(ISO_ERR_RANGE, "%s: delay or period above %llu ms", fn,
                        (unsigned long long)LOOP_MAX_MS),
           0;
  thr_loop *L = loop_get(iso);
  if (!L) return 0;
  loop_timer *t = malloc(sizeof *t);
  if (!t ||
      !grow((void **)&L->heap, &L->heap_cap, L->nheap + 1, sizeof *L->heap)) {
    free(t);
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn), 0;
  }
  if (L->nfree == 0) {
    if (L->nslots == UINT32_MAX) {
      free(t);
      return isolate_fail(ISO_ERR_LIMIT, "%s: too many timers", fn), 0;
    }
    size_t cap = L->slots_cap;
    if (!grow((void **)&L->slots, &cap, L->nslots + 1, sizeof *L->slots) ||
        !grow((void **)&L->free_slots, &L->slots_cap, L->nslots + 1,
              sizeof *L->free_slots)) {
      free(t);
      return isolate_fail(ISO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn), 0;
    }
    L->slots[L->nslots].timer = NULL;
    L->slots[L->nslots].gen = 1;
    L->free_slots[L->nfree++] = (uint32_t)L->nslots++;
  }
  uint32_t slot = L->free_slots[--L->nfree];
  L->slots[slot].timer = t;
  t->id = ((uint64_t)L->slots[slot].gen << 32) | slot;
  t->deadline = isolate_now_ns() + delay_ms * 1000000u;
  t->repeat = repeat_ms * 1000000u;
  t->cb = cb;
  t->data = data;
  heap_push(L, t);
  return t->id;
}

iso_status iso_timer_clear(iso_isolate *iso, iso_timer_id id) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  thr_loop *L = iso->loop;
  loop_timer *t = timer_lookup(L, id);
  if (!t)
    return isolate_fail(ISO_ERR_ARGUMENT,
                        "iso_timer_clear: timer %llu is not pending (it "
                        "ran, was cleared, or never existed)",
                        (unsigned long long)id);
  slot_release(L, id);
  if (t == L->running_timer) {
    L->running_timer = NULL; /* freed once its callback returns */
  } else {
    heap_remove(L, t->heap_index);
    free(t);
  }
  return ISO_OK;
}

/* Runs cb in a fresh scope. ISO_ERR_SCOPE when the callback left a scope
 * of its own open. */
static iso_status call_timer(iso_isolate *iso, iso_timer_callback cb,
                             void *data) {
  iso_scope s;
  iso_scope_open(iso, &s);
  cb(iso, data);
  return iso_scope_close(&s);
}

static iso_status run_timers(iso_isolate *iso, thr_loop *L) {
  uint64_t now = isolate_now_ns();
  uint64_t seq_limit = L->next_seq;
  while (L->nheap > 0) {
    loop_timer *t = L->heap[0];
    if (t->deadline > now || t->seq >= seq_limit) break;
    heap_remove(L, 0);
    iso_status st;
    if (t->repeat == 0) {
      /* A one-shot timer has run once its callback starts: clearing it
       * from inside is refused, as for any timer that ran. */
      iso_timer_callback cb = t->cb;
      void *data = t->data;
      slot_release(L, t->id);
      free(t);
      st = call_timer(iso, cb, data);
    } else {
      L->running_timer = t;
      st = call_timer(iso, t->cb, t->data);
      loop_timer *running = L->running_timer;
      L->running_timer = NULL;
      if (t != running) {
        free(t); /* cleared by its own callback */
      } else if (!grow((void **)&L->heap, &L->heap_cap, L->nheap + 1,
                       sizeof *L->heap)) {
        slot_release(L, t->id);
        free(t);
        if (st == ISO_OK)
          st = isolate_fail(ISO_ERR_OUT_OF_MEMORY,
                            "iso_loop_run: out of memory rescheduling an "
                            "interval; it was cleared");
      } else {
        uint64_t after = isolate_now_ns();
        t->deadline += t->repeat;
        if (t->deadline <= after) t->deadline = after + t->repeat;
        heap_push(L, t);
      }
    }
    if (st != ISO_OK) return st;
    if (should_return(iso, L)) break;
  }
  return ISO_OK;
}

/* ---- message handlers ---- */

static loop_handler *find_handler(thr_loop *L, iso_port *port) {
  for (size_t i = 0; i < L->nhandlers; i++)
    if (L->handlers[i].port == port && !L->handlers[i].dead)
      return &L->handlers[i];
  return NULL;
}

/* Drops dead handlers and those whose port was closed, releasing the
 * loop's references. Never while messages are being dispatched. */
static void prune(thr_loop *L) {
  size_t k = 0;
  for (size_t i = 0; i < L->nhandlers; i++) {
    loop_handler *h = &L->handlers[i];
    if (h->dead || thr_port_closed(h->port)) {
      thr_port_unref(h->port);
    } else {
      L->handlers[k++] = *h;
    }
  }
  L->nhandlers = k;
}

iso_status iso_loop_on_message(iso_isolate *iso, iso_port *port,
                               iso_message_handler handler, void *data) {
  static const char fn[] = "iso_loop_on_message";
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  if (!port) return isolate_fail(ISO_ERR_ARGUMENT, "%s: port is NULL", fn);
  thr_loop *L = loop_get(iso);
  if (!L) return iso_last_status();
  loop_handler *h = find_handler(L, port);
  if (!handler) {
    if (!h)
      return isolate_fail(ISO_ERR_ARGUMENT,
                          "%s: the port has no handler to remove", fn);
    h->dead = true;
    if (!thr_load_relaxed(&L->running)) prune(L);
    return ISO_OK;
  }
  if (thr_port_closed(port))
    return isolate_fail(ISO_ERR_CLOSED, "%s: the port is closed", fn);
  if (h) {
    h->fn = handler;
    h->data = data;
    return ISO_OK;
  }
  if (!grow((void **)&L->handlers, &L->handlers_cap, L->nhandlers + 1,
            sizeof *L->handlers))
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
  thr_port_ref(port);
  L->handlers[L->nhandlers++] =
      (loop_handler){.port = port, .fn = handler, .data = data};
  return ISO_OK;
}

void thr_loop_forget_port(iso_isolate *iso, iso_port *port) {
  thr_loop *L = iso->loop;
  loop_handler *h = L ? find_handler(L, port) : NULL;
  if (h) h->dead = true;
}

/* Runs up to LOOP_BATCH messages per handled port; *more is set when a
 * port may hold more. Handlers added by a callback wait for the next
 * turn; the array may move under a callback, so entries are read by
 * index each time. */
static iso_status dispatch(iso_isolate *iso, thr_loop *L, bool *more) {
  size_t n = L->nhandlers;
  for (size_t i = 0; i < n; i++) {
    for (int k = 0; k < LOOP_BATCH; k++) {
      loop_handler *h = &L->handlers[i];
      if (h->dead) break;
      iso_message *msg;
      iso_status st = thr_port_try_receive(h->port, &msg);
      if (st == ISO_ERR_TIMEOUT) break;
      if (st != ISO_OK) { /* closed, or the peer closed and it is drained */
        h->dead = true;
        break;
      }
      iso_port *port = h->port; /* referenced until the next prune */
      iso_message_handler fn = h->fn;
      void *data = h->data;
      iso_scope s;
      iso_scope_open(iso, &s);
      iso_handle v = iso_deserialize(iso, msg, NULL);
      if (!v) {
        st = iso_last_status();
        iso_message_free(msg);
        iso_scope_close(&s);
        return st;
      }
      fn(iso, port, iso_get(v), data);
      st = iso_scope_close(&s);
      if (st != ISO_OK) return st;
      if (should_return(iso, L)) return ISO_OK;
      if (k == LOOP_BATCH - 1) *more = true;
    }
  }
  return ISO_OK;
}

/* ---- running ---- */

static bool loop_idle(thr_loop *L) {
  if (L->nheap > 0) return false;
  for (size_t i = 0; i < L->nhandlers; i++)
    if (!L->handlers[i].dead) return false;
  return true;
}

/* Blocks until a handled port is readable, the isolate is woken, or the
 * next timer is due (at once when more is set). */
static iso_status wait_events(iso_isolate *iso, thr_loop *L, bool more) {
  if (!grow((void **)&L->pfds, &L->pfds_cap, L->nhandlers + 1, sizeof *L->pfds))
    return isolate_fail(ISO_ERR_OUT_OF_MEMORY, "iso_loop_run: out of memory");
  unsigned n = 0;
  for (size_t i = 0; i < L->nhandlers; i++)
    if (!L->handlers[i].dead)
      L->pfds[n++] = (struct pollfd){.fd = iso_port_fd(L->handlers[i].port),
                                     .events = POLLIN};
  L->pfds[n++] = (struct pollfd){.fd = iso->wake_fd, .events = POLLIN};
  int64_t timeout = -1;
  if (more) {
    timeout = 0;
  } else if (L->nheap > 0) {
    uint64_t now = isolate_now_ns(), due = L->heap[0]->deadline;
    timeout = due > now ? (int64_t)((due - now + 999999u) / 1000000u) : 0;
  }
  thr_block_poll(iso, L->pfds, n, timeout);
  /* A waker set a flag before writing (terminate, stop); the next turn
   * looks at the flags. */
  if (L->pfds[n - 1].revents & POLLIN) thr_isolate_wake_clear(iso);
  return ISO_OK;
}

iso_status iso_loop_run(iso_isolate *iso) {
  iso_status st = ISOLATE_CHECK(iso);
  if (st != ISO_OK) return st;
  thr_loop *L = loop_get(iso);
  if (!L) return iso_last_status();
  if (thr_load_relaxed(&L->running))
    return isolate_fail(ISO_ERR_STATE,
                        "iso_loop_run: the loop is already running (called "
                        "from one of its callbacks)");
  thr_store_release(&L->stop, 0);
  thr_store_release(&L->running, 1);
  for (;;) {
    if (isolate_terminating(iso)) {
      st = isolate_terminated_error(iso);
      break;
    }
    if (thr_load_acquire(&L->stop)) break;
    prune(L);
    if (loop_idle(L)) break;
    st = run_timers(iso, L);
    if (st != ISO_OK) break;
    if (should_return(iso, L)) continue;
    bool more = false;
    st = dispatch(iso, L, &more);
    if (st != ISO_OK) break;
    if (should_return(iso, L) || loop_idle(L)) continue;
    st = wait_events(iso, L, more);
    if (st != ISO_OK) break;
  }
  thr_store_release(&L->running, 0);
  return st;
}

void iso_loop_stop(iso_isolate *iso) {
  if (!iso) return;
  thr_loop *L = thr_load_acquire(&iso->loop);
  if (!L) return; /* no loop has ever run */
  thr_store_release(&L->stop, 1);
  thr_isolate_wake(iso);
}

void thr_loop_destroy(iso_isolate *iso) {
  thr_loop *L = iso->loop;
  if (!L) return;
  for (size_t i = 0; i < L->nheap; i++) free(L->heap[i]);
  for (size_t i = 0; i < L->nhandlers; i++) thr_port_unref(L->handlers[i].port);
  free(L->heap);
  free(L->slots);
  free(L->free_slots);
  free(L->handlers);
  free(L->pfds);
  free(L);
  thr_store_release(&iso->loop, (void *)NULL);
}
