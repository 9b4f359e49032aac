/*
 * worker_pool_server: a TCP server on loopback that hands each request to
 * one of N worker isolates by message and sends back the worker's reply,
 * the way a Node.js server hands work to a pool of worker_threads.
 *
 * Usage: worker_pool_server [--workers N] [--heap-mb M] [--leak]
 *                           [--leak-kb K] [PORT]
 *   --workers N   worker isolates in the pool (default 4, at most 64)
 *   --heap-mb M   each worker's old-generation limit, as Node's
 *                 resourceLimits.maxOldGenerationSizeMb (default 16)
 *   --leak        each worker keeps K KiB per request in a cache it never
 *                 trims, so it reaches its heap limit and is replaced
 *   --leak-kb K   default 64
 *   PORT          TCP port on 127.0.0.1; 0 (the default) picks a free one
 * It prints "listening on 127.0.0.1:PORT" once it accepts connections, and
 * runs until SIGINT or SIGTERM.
 *
 * Protocol: one request per line, one reply line per request, in order
 * per connection (a client may send several lines at once).
 *   any text   the worker splits it into words, counts them in a map and
 *              answers "words=W distinct=D top=WORD:COUNT by=NAME", NAME
 *              being the worker's ("w2.1": slot 2, its first replacement)
 *   stats      every worker answers with its iso_memory_usage(); the
 *              reply is one line: "stats workers=N replaced=R rss_kb=..
 *              w0.0: served=.. heap_used_kb=.. heap_total_kb=..
 *              external_kb=..; w1.0: ..."
 *   a line that is not UTF-8 or longer than 64 KiB gets "error: ...".
 *
 * The shape of the server:
 *   - One thread runs an epoll loop over the listening socket, the client
 *     sockets, a signalfd, and each worker's port (iso_port_fd(): readable
 *     while replies are queued or once the worker's side is closed). It
 *     owns an isolate of its own, the "server" isolate, to build request
 *     messages and read replies.
 *   - Each worker blocks in iso_port_receive() on its port to the server
 *     and answers every message it gets.
 *   - Each connection has at most one request in flight; its other lines
 *     wait in its input buffer, which keeps replies in order and bounds
 *     the work in flight by the number of connections.
 *   - A request goes to the worker with the fewest requests in flight.
 *
 * When a worker reaches its heap limit the library terminates it with
 * ISO_EXIT_OUT_OF_MEMORY; the other workers and the server never notice,
 * except that the worker's port closes. The server drains the replies the
 * worker sent before it ended, joins it, starts a replacement in its slot
 * and posts again every request that was in flight to it (a request whose
 * worker dies three times gets an error instead). So --leak shows the
 * library's answer to a process manager's max-memory restart: the pool
 * restarts one isolate, not the process, and drops no request.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <isolate.h>

#define MAX_WORKERS 64
#define MAX_CONNS 1024
#define MAX_LINE (64 * 1024)
#define MAX_ATTEMPTS 3
#define KB 1024u

/* Operations in messages: [id, OP_WORK, text] and [id, OP_STATS] go to a
 * worker, which answers [id, OP_WORK, reply] or [id, OP_STATS, served,
 * rss, heap_total, heap_used, external, array_buffers]. */
enum { OP_WORK = 1, OP_STATS = 2 };
enum { STAT_SERVED, STAT_RSS, STAT_HEAP_TOTAL, STAT_HEAP_USED,
       STAT_EXTERNAL, STAT_ARRAY_BUFFERS, STAT_COUNT };

static const char *prog = "worker_pool_server";

static void die(const char *what) {
  fprintf(stderr, "%s: %s failed: %s (%s)\n", prog, what,
          iso_status_name(iso_last_status()), iso_last_error());
  exit(1);
}

static void die_errno(const char *what) {
  fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
  exit(1);
}

/* ------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------ */

typedef struct pool_config {
  unsigned workers;
  size_t heap_mb;
  bool leak;
  size_t leak_kb;
} pool_config;

/* Counts the words of text in a map (word -> count) and formats the
 * reply. May allocate. */
static iso_status count_words(iso_isolate *iso, const char *text, size_t len,
                              char *reply, size_t cap) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_status st = ISO_OK;
  size_t words = 0;
  iso_handle counts = iso_map_new(iso);
  if (counts == NULL) goto out;
  for (size_t i = 0; i < len;) {
    while (i < len && (text[i] == ' ' || text[i] == '\t')) i++;
    size_t start = i;
    while (i < len && text[i] != ' ' && text[i] != '\t') i++;
    if (i == start) break;
    iso_scope inner;
    iso_scope_open(iso, &inner);
    iso_handle word = iso_string_new(iso, text + start, i - start);
    iso_handle n = word ? iso_map_get(iso, iso_get(counts), iso_get(word))
                        : NULL;
    if (n != NULL) {
      int64_t c = iso_is_smi(iso_get(n)) ? iso_smi_value(iso_get(n)) : 0;
      st = iso_map_set(iso, iso_get(counts), iso_get(word), iso_smi(c + 1));
    } else {
      st = iso_last_status();
    }
    iso_scope_close(&inner);
    if (st != ISO_OK) goto out;
    words++;
  }
  /* The most frequent word; the map keeps first-seen order, so a tie goes
   * to the word seen first. */
  size_t cursor = 0;
  iso_handle key = NULL, value = NULL, top = NULL;
  int64_t top_count = 0;
  while (iso_map_next(iso, iso_get(counts), &cursor, &key, &value)) {
    int64_t c = iso_smi_value(iso_get(value));
    if (c > top_count) {
      top_count = c;
      top = key;
    }
  }
  /* No allocation from here: the string's bytes stay put. */
  snprintf(reply, cap, "words=%zu distinct=%zu top=%s:%" PRId64 " by=%s",
           words, iso_map_size(iso_get(counts)),
           top ? iso_string_data(iso_get(top)) : "-", top_count,
           iso_isolate_name(iso));
out:
  if (counts == NULL) st = iso_last_status();
  iso_scope_close(&scope);
  return st;
}

/* --leak: what a cache that is never trimmed does to a heap. */
static iso_status leak_some(iso_isolate *iso, iso_global *cache,
                            size_t bytes) {
  char filler[4096]; /* per call: workers run this at the same time */
  memset(filler, 'x', sizeof filler);
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_status st = ISO_OK;
  iso_handle list = iso_global_get(iso, cache);
  /* Pieces of 4 KiB stay in the young generation and get promoted, the
   * way a real cache of many small entries fills the old generation. */
  for (size_t done = 0; done < bytes && st == ISO_OK; done += sizeof filler) {
    iso_handle s = iso_string_new(iso, filler, sizeof filler);
    st = s ? iso_array_push(iso, iso_get(list), iso_get(s))
           : iso_last_status();
  }
  iso_scope_close(&scope);
  return st;
}

/* Builds and posts [id, OP_WORK, reply] or the stats answer. */
static iso_status answer(iso_isolate *iso, iso_port *port, iso_value id,
                         int op, const char *reply, const uint64_t *stats) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_status st;
  iso_handle msg = iso_array_new(iso, 0);
  if (msg == NULL) goto fail;
  if ((st = iso_array_push(iso, iso_get(msg), id)) != ISO_OK ||
      (st = iso_array_push(iso, iso_get(msg), iso_smi(op))) != ISO_OK)
    goto done;
  if (op == OP_WORK) {
    iso_handle s = iso_string_from_cstr(iso, reply);
    if (s == NULL) goto fail;
    if ((st = iso_array_push(iso, iso_get(msg), iso_get(s))) != ISO_OK)
      goto done;
  } else {
    for (int i = 0; i < STAT_COUNT; i++) {
      iso_handle n = iso_integer_new(iso, (int64_t)stats[i]);
      if (n == NULL) goto fail;
      if ((st = iso_array_push(iso, iso_get(msg), iso_get(n))) != ISO_OK)
        goto done;
    }
  }
  st = iso_port_post(port, iso, iso_get(msg), NULL, 0);
done:
  iso_scope_close(&scope);
  return st;
fail:
  st = iso_last_status();
  goto done;
}

/* Handles one message from the server. Any failure ends the worker: it
 * is either being terminated (out of memory, or shut down) or its port is
 * gone, and the server retries what it had in flight. */
static iso_status serve(iso_isolate *iso, iso_port *parent,
                        const pool_config *cfg, iso_global *cache,
                        iso_value msg, uint64_t *served) {
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_status st = ISO_ERR_ARGUMENT;
  iso_handle hmsg = iso_handle_new(iso, msg);
  if (iso_kind_of(msg) != ISO_KIND_ARRAY || iso_array_length(msg) < 2)
    goto done;
  iso_handle id = iso_array_get(iso, iso_get(hmsg), 0);
  iso_handle op = iso_array_get(iso, iso_get(hmsg), 1);
  if (id == NULL || op == NULL) goto done;
  if (iso_get(op) == iso_smi(OP_STATS)) {
    iso_memory_usage_t mu;
    if ((st = iso_memory_usage(iso, &mu)) != ISO_OK) goto done;
    uint64_t stats[STAT_COUNT] = {
        [STAT_SERVED] = *served, [STAT_RSS] = mu.rss,
        [STAT_HEAP_TOTAL] = mu.heap_total, [STAT_HEAP_USED] = mu.heap_used,
        [STAT_EXTERNAL] = mu.external,
        [STAT_ARRAY_BUFFERS] = mu.array_buffers};
    st = answer(iso, parent, iso_get(id), OP_STATS, NULL, stats);
    goto done;
  }
  iso_handle text = iso_array_get(iso, iso_get(hmsg), 2);
  if (text == NULL || iso_kind_of(iso_get(text)) != ISO_KIND_STRING)
    goto done;
  /* count_words allocates, so it gets its own copy of the bytes. */
  size_t len = iso_string_length(iso_get(text));
  char *copy = malloc(len + 1);
  if (copy == NULL) {
    st = ISO_ERR_OUT_OF_MEMORY;
    goto done;
  }
  memcpy(copy, iso_string_data(iso_get(text)), len + 1);
  char reply[512];
  st = count_words(iso, copy, len, reply, sizeof reply);
  free(copy);
  if (st == ISO_OK && cfg->leak) st = leak_some(iso, cache, cfg->leak_kb * KB);
  if (st == ISO_OK) st = answer(iso, parent, iso_get(id), OP_WORK, reply, NULL);
  if (st == ISO_OK) (*served)++;
done:
  iso_scope_close(&scope);
  return st;
}

static int pool_worker_main(iso_isolate *iso, iso_port *parent, void *arg) {
  const pool_config *cfg = arg;
  uint64_t served = 0;
  iso_global *cache = NULL;
  int code = 0;
  if (cfg->leak) {
    iso_handle list = iso_array_new(iso, 0);
    cache = list ? iso_global_new(iso, iso_get(list)) : NULL;
    if (cache == NULL) code = 1;
  }
  while (code == 0) {
    iso_scope scope;
    iso_scope_open(iso, &scope);
    iso_handle msg = NULL;
    iso_status st = iso_port_receive(parent, iso, -1, &msg);
    if (st == ISO_OK)
      st = serve(iso, parent, cfg, cache, iso_get(msg), &served);
    iso_scope_close(&scope);
    if (st == ISO_ERR_CLOSED) break; /* the server let us go */
    if (st != ISO_OK) code = 1;      /* the library sets the exit code of a
                                        terminated worker itself */
  }
  if (cache != NULL) iso_global_free(iso, cache);
  /* The server learns that we are gone from this close (the library would
   * close the port when we return anyway). */
  iso_port_close(parent);
  return code;
}

/* ------------------------------------------------------------------------
 * The server: connections, workers, the loop
 * ------------------------------------------------------------------------ */

typedef struct buf {
  char *data;
  size_t len, cap, off; /* off: bytes already consumed from the front */
} buf;

static bool buf_append(buf *b, const char *p, size_t n) {
  if (b->off > 0 && b->len + n > b->cap) {
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) return false;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return true;
}

static void buf_free(buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

typedef struct conn {
  int fd; /* -1: free slot */
  buf in, out;
  bool eof;          /* no more requests: the client closed its side, or
                        sent a line too long to take */
  uint32_t events;   /* the epoll mask registered (conn_watch) */
  /* The request in flight, if busy. */
  bool busy;
  uint64_t serial;   /* unique per request; its messages carry it */
  bool stats;
  int worker;        /* slot it was posted to (work requests) */
  int attempts;
  char *line;        /* the request text (work requests) */
  size_t line_len;
  uint64_t stats_waiting; /* stats: bit k set until slot k answered */
  uint64_t stats_figs[MAX_WORKERS][STAT_COUNT];
} conn;

typedef struct slot {
  iso_worker *worker;
  iso_port *port;
  int fd;
  unsigned generation; /* replacements so far */
  unsigned inflight;
} slot;

typedef struct server {
  pool_config cfg;
  iso_runtime *rt;
  iso_isolate *iso;
  int epfd, listen_fd, sig_fd;
  slot slots[MAX_WORKERS];
  char names[MAX_WORKERS][16];
  conn *conns; /* MAX_CONNS */
  uint64_t next_serial;
  uint64_t requests, replaced, retried;
  unsigned rr; /* round-robin start for ties */
} server;

/* epoll tags: kind in the high half, index in the low half. */
enum { TAG_LISTEN = 1, TAG_SIGNAL, TAG_PORT, TAG_CONN };
static uint64_t tag(uint32_t kind, uint32_t index) {
  return (uint64_t)kind << 32 | index;
}

static void epoll_add(server *s, int fd, uint32_t events, uint64_t t) {
  struct epoll_event ev = {.events = events, .data.u64 = t};
  if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die_errno("epoll_ctl");
}

static void spawn_worker(server *s, unsigned k) {
  slot *w = &s->slots[k];
  snprintf(s->names[k], sizeof s->names[k], "w%u.%u", k, w->generation);
  iso_worker_params p = {
      .struct_size = sizeof p,
      .name = s->names[k],
      .max_old_generation_size = s->cfg.heap_mb << 20,
      /* A small young generation keeps an idle worker small and sends a
       * leak to the old generation, where the limit applies, quickly. */
      .max_young_generation_size = (size_t)2 << 20,
  };
  w->worker = iso_worker_spawn(s->rt, pool_worker_main, &s->cfg, &p,
                               &w->port);
  if (w->worker == NULL) die("iso_worker_spawn");
  w->fd = iso_port_fd(w->port);
  w->inflight = 0;
  epoll_add(s, w->fd, EPOLLIN, tag(TAG_PORT, k));
}

static unsigned pick_worker(server *s) {
  unsigned best = s->rr % s->cfg.workers;
  for (unsigned i = 0; i < s->cfg.workers; i++) {
    unsigned k = (s->rr + i) % s->cfg.workers;
    if (s->slots[k].inflight < s->slots[best].inflight) best = k;
  }
  s->rr++;
  return best;
}

/* Message ids: the request's serial and its connection's slot, so that a
 * reply finds its connection and a reply for a request the connection no
 * longer waits for is recognised. */
static int64_t message_id(uint64_t serial, unsigned c) {
  return (int64_t)(serial * MAX_CONNS + c);
}

/* Posts [id, op, text?] to slot k. A worker that is already gone makes
 * the post fail with ISO_ERR_CLOSED: the request then stays assigned to
 * it and is retried when the server sees the port close. */
static iso_status post_to(server *s, unsigned k, unsigned c, int op) {
  conn *cn = &s->conns[c];
  iso_isolate *iso = s->iso;
  iso_scope scope;
  iso_scope_open(iso, &scope);
  iso_status st;
  iso_handle msg = iso_array_new(iso, 0);
  if (msg == NULL) goto fail;
  if ((st = iso_array_push(iso, iso_get(msg),
                           iso_smi(message_id(cn->serial, c)))) != ISO_OK ||
      (st = iso_array_push(iso, iso_get(msg), iso_smi(op))) != ISO_OK)
    goto done;
  if (op == OP_WORK) {
    iso_handle text = iso_string_new(iso, cn->line, cn->line_len);
    if (text == NULL) goto fail;
    if ((st = iso_array_push(iso, iso_get(msg), iso_get(text))) != ISO_OK)
      goto done;
  }
  st = iso_port_post(s->slots[k].port, iso, iso_get(msg), NULL, 0);
  if (st == ISO_ERR_CLOSED) st = ISO_OK;
done:
  iso_scope_close(&scope);
  return st;
fail:
  st = iso_last_status();
  goto done;
}

static void conn_close(server *s, unsigned c);
static void dispatch_next(server *s, unsigned c);

/* What the loop waits for on a connection: input until EOF while less
 * than two lines' worth is waiting (so a client that pipelines without
 * reading its replies is slowed down, not buffered without bound), and
 * room for output while some is pending. Changes the registration only
 * when the mask changes. */
static void conn_watch(server *s, unsigned c) {
  conn *cn = &s->conns[c];
  if (cn->fd < 0) return;
  uint32_t want = 0;
  if (!cn->eof && cn->in.len - cn->in.off <= 2 * MAX_LINE) want |= EPOLLIN;
  if (cn->out.off < cn->out.len) want |= EPOLLOUT;
  if (want == cn->events) return;
  struct epoll_event ev = {.events = want, .data.u64 = tag(TAG_CONN, c)};
  epoll_ctl(s->epfd, EPOLL_CTL_MOD, cn->fd, &ev);
  cn->events = want;
}

static void conn_flush(server *s, unsigned c) {
  conn *cn = &s->conns[c];
  while (cn->out.off < cn->out.len) {
    ssize_t n = write(cn->fd, cn->out.data + cn->out.off,
                      cn->out.len - cn->out.off);
    if (n > 0) {
      cn->out.off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    conn_close(s, c); /* the client is gone */
    return;
  }
  if (cn->out.off == cn->out.len) cn->out.len = cn->out.off = 0;
  conn_watch(s, c);
}

/* Ends the connection's request with a reply line. The caller then calls
 * dispatch_next (never this function's job: a client that pipelines many
 * bad lines would otherwise recurse once per line). */
static void reply_line(server *s, unsigned c, const char *fmt, ...) {
  conn *cn = &s->conns[c];
  char line[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  if (cn->busy && !cn->stats && cn->worker >= 0 &&
      s->slots[cn->worker].inflight > 0)
    s->slots[cn->worker].inflight--;
  cn->busy = false;
  free(cn->line);
  cn->line = NULL;
  s->requests++;
  if (!buf_append(&cn->out, line, (size_t)n)) {
    conn_close(s, c);
    return;
  }
  conn_flush(s, c);
}

static void start_work(server *s, unsigned c) {
  conn *cn = &s->conns[c];
  unsigned k = pick_worker(s);
  cn->worker = (int)k;
  s->slots[k].inflight++;
  iso_status st = post_to(s, k, c, OP_WORK);
  if (st == ISO_ERR_ARGUMENT)
    reply_line(s, c, "error: the request is not valid UTF-8");
  else if (st != ISO_OK)
    reply_line(s, c, "error: %s", iso_last_error());
}

static void start_stats(server *s, unsigned c) {
  conn *cn = &s->conns[c];
  cn->stats_waiting = 0;
  for (unsigned k = 0; k < s->cfg.workers; k++) {
    cn->stats_waiting |= (uint64_t)1 << k;
    if (post_to(s, k, c, OP_STATS) != ISO_OK) {
      reply_line(s, c, "error: %s", iso_last_error());
      return;
    }
  }
}

/* Takes the next complete line of the connection as its request; closes
 * the connection once it has no more requests and its replies are out. */
static void dispatch_next(server *s, unsigned c) {
  conn *cn = &s->conns[c];
  while (!cn->busy && cn->fd >= 0) {
    char *start = cn->in.data + cn->in.off;
    size_t avail = cn->in.len - cn->in.off;
    char *nl = avail ? memchr(start, '\n', avail) : NULL;
    if (nl == NULL && avail > MAX_LINE && !cn->eof) {
      /* The rest of that line is not a request: answer once, drop the
       * input, and close when the answer is out. */
      cn->in.off = cn->in.len;
      cn->eof = true;
      cn->busy = true;
      cn->stats = false;
      cn->worker = -1;
      reply_line(s, c, "error: line longer than %d bytes", MAX_LINE);
      continue;
    }
    if (nl == NULL) {
      if (cn->eof && cn->out.off == cn->out.len) conn_close(s, c);
      else conn_watch(s, c);
      return;
    }
    size_t len = (size_t)(nl - start);
    cn->in.off += len + 1;
    if (len > 0 && start[len - 1] == '\r') len--;
    cn->busy = true;
    cn->serial = ++s->next_serial;
    cn->attempts = 1;
    cn->worker = -1;
    cn->stats = len == 5 && memcmp(start, "stats", 5) == 0;
    if (len > MAX_LINE) {
      reply_line(s, c, "error: line longer than %d bytes", MAX_LINE);
      continue;
    }
    if (cn->stats) {
      start_stats(s, c); /* busy until every worker answered, or failed */
      continue;
    }
    cn->line = malloc(len + 1);
    if (cn->line == NULL) {
      reply_line(s, c, "error: out of memory");
      continue;
    }
    memcpy(cn->line, start, len);
    cn->line[len] = '\0';
    cn->line_len = len;
    start_work(s, c); /* busy until its reply, or failed at once */
  }
}

static void conn_close(server *s, unsigned c) {
  conn *cn = &s->conns[c];
  if (cn->fd < 0) return;
  epoll_ctl(s->epfd, EPOLL_CTL_DEL, cn->fd, NULL);
  close(cn->fd);
  cn->fd = -1;
  if (cn->busy && !cn->stats && cn->worker >= 0 &&
      s->slots[cn->worker].inflight > 0)
    s->slots[cn->worker].inflight--;
  /* A reply still on its way finds the slot free (or another serial) and
   * is dropped. */
  cn->busy = false;
  free(cn->line);
  cn->line = NULL;
  buf_free(&cn->in);
  buf_free(&cn->out);
}

static void on_accept(server *s) {
  for (;;) {
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        fprintf(stderr, "%s: accept: %s\n", prog, strerror(errno));
      return;
    }
    unsigned c = 0;
    while (c < MAX_CONNS && s->conns[c].fd >= 0) c++;
    if (c == MAX_CONNS) { /* full: refuse rather than queue without bound */
      close(fd);
      continue;
    }
    conn *cn = &s->conns[c];
    memset(cn, 0, sizeof *cn);
    cn->fd = fd;
    cn->events = EPOLLIN;
    epoll_add(s, fd, EPOLLIN, tag(TAG_CONN, c));
  }
}

static void on_conn(server *s, unsigned c, uint32_t events) {
  conn *cn = &s->conns[c];
  if (cn->fd < 0) return;
  if (events & EPOLLOUT) conn_flush(s, c);
  if (cn->fd < 0) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !cn->eof) {
    char tmp[16384];
    for (;;) {
      ssize_t n = read(cn->fd, tmp, sizeof tmp);
      if (n > 0) {
        if (!buf_append(&cn->in, tmp, (size_t)n)) {
          conn_close(s, c);
          return;
        }
        if (cn->in.len - cn->in.off > 2 * MAX_LINE) break; /* see watch */
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) {
        conn_close(s, c);
        return;
      }
      /* EOF: stop watching for input (it would stay readable for good)
       * but answer the requests already read. */
      cn->eof = true;
      break;
    }
  }
  dispatch_next(s, c);
  conn_watch(s, c);
}

/* A reply from slot k: [id, OP_WORK, text] or [id, OP_STATS, figures...]. */
static void on_reply(server *s, unsigned k, iso_value msg) {
  iso_isolate *iso = s->iso;
  if (iso_kind_of(msg) != ISO_KIND_ARRAY || iso_array_length(msg) < 3) return;
  iso_handle hmsg = iso_handle_new(iso, msg);
  iso_handle hid = iso_array_get(iso, iso_get(hmsg), 0);
  iso_handle hop = iso_array_get(iso, iso_get(hmsg), 1);
  if (hid == NULL || hop == NULL || !iso_is_smi(iso_get(hid))) return;
  uint64_t id = (uint64_t)iso_smi_value(iso_get(hid));
  unsigned c = (unsigned)(id % MAX_CONNS);
  conn *cn = &s->conns[c];
  if (cn->fd < 0 || !cn->busy || cn->serial != id / MAX_CONNS) return;
  if (iso_get(hop) == iso_smi(OP_WORK) && !cn->stats) {
    iso_handle text = iso_array_get(iso, iso_get(hmsg), 2);
    if (text == NULL || iso_kind_of(iso_get(text)) != ISO_KIND_STRING) return;
    reply_line(s, c, "%s", iso_string_data(iso_get(text)));
    dispatch_next(s, c);
    return;
  }
  if (iso_get(hop) != iso_smi(OP_STATS) || !cn->stats ||
      !(cn->stats_waiting & ((uint64_t)1 << k)) ||
      iso_array_length(iso_get(hmsg)) != 2 + STAT_COUNT)
    return;
  for (int i = 0; i < STAT_COUNT; i++) {
    iso_handle n = iso_array_get(iso, iso_get(hmsg), 2 + (size_t)i);
    cn->stats_figs[k][i] = n ? (uint64_t)iso_number_value(iso_get(n)) : 0;
  }
  cn->stats_waiting &= ~((uint64_t)1 << k);
  if (cn->stats_waiting != 0) return;
  char line[8192];
  size_t used = (size_t)snprintf(
      line, sizeof line,
      "stats workers=%u replaced=%" PRIu64 " rss_kb=%" PRIu64,
      s->cfg.workers, s->replaced, cn->stats_figs[0][STAT_RSS] / KB);
  for (unsigned w = 0; w < s->cfg.workers && used < sizeof line; w++) {
    const uint64_t *f = cn->stats_figs[w];
    used += (size_t)snprintf(
        line + used, sizeof line - used,
        "%s %s: served=%" PRIu64 " heap_used_kb=%" PRIu64
        " heap_total_kb=%" PRIu64 " external_kb=%" PRIu64,
        w ? ";" : "", s->names[w], f[STAT_SERVED], f[STAT_HEAP_USED] / KB,
        f[STAT_HEAP_TOTAL] / KB, f[STAT_EXTERNAL] / KB);
  }
  reply_line(s, c, "%s", line);
  dispatch_next(s, c);
}

static const char *exit_name(int code) {
  switch (code) {
  case 0: return "exit 0";
  case ISO_EXIT_OUT_OF_MEMORY: return "ISO_EXIT_OUT_OF_MEMORY";
  case ISO_EXIT_TERMINATED: return "ISO_EXIT_TERMINATED";
  default: return "an error";
  }
}

/* Slot k's port closed: its worker ended. Replace it and post again what
 * it had in flight. */
static void on_worker_end(server *s, unsigned k) {
  slot *w = &s->slots[k];
  int code = 0;
  epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, NULL);
  if (iso_worker_join(w->worker, &code) != ISO_OK) die("iso_worker_join");
  iso_port_close(w->port);
  s->replaced++;
  char old_name[16];
  memcpy(old_name, s->names[k], sizeof old_name);
  w->generation++;
  spawn_worker(s, k);
  unsigned retried = 0;
  for (unsigned c = 0; c < MAX_CONNS; c++) {
    conn *cn = &s->conns[c];
    if (cn->fd < 0 || !cn->busy) continue;
    if (cn->stats && (cn->stats_waiting & ((uint64_t)1 << k))) {
      /* Its replacement answers instead. */
      if (post_to(s, k, c, OP_STATS) != ISO_OK) {
        reply_line(s, c, "error: %s", iso_last_error());
        dispatch_next(s, c);
      }
    } else if (!cn->stats && cn->worker == (int)k) {
      retried++;
      if (++cn->attempts > MAX_ATTEMPTS) {
        cn->worker = -1;
        reply_line(s, c, "error: %d workers ended while serving this "
                   "request", MAX_ATTEMPTS);
      } else {
        start_work(s, c);
      }
      dispatch_next(s, c);
    }
  }
  s->retried += retried;
  fprintf(stderr, "%s: worker %s ended (%s); replaced by %s, %u request%s "
          "posted again\n", prog, old_name, exit_name(code), s->names[k],
          retried, retried == 1 ? "" : "s");
}

/* Replies queued on slot k's port, until it is empty or closed. */
static void on_port(server *s, unsigned k) {
  for (;;) {
    iso_scope scope;
    iso_scope_open(s->iso, &scope);
    iso_handle msg = NULL;
    iso_status st = iso_port_receive(s->slots[k].port, s->iso, 0, &msg);
    if (st == ISO_OK) on_reply(s, k, iso_get(msg));
    iso_scope_close(&scope);
    if (st == ISO_ERR_TIMEOUT) return;
    if (st == ISO_ERR_CLOSED) {
      on_worker_end(s, k);
      return;
    }
    if (st != ISO_OK) die("iso_port_receive");
  }
}

static int listen_on(unsigned port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die_errno("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) die_errno("bind");
  if (listen(fd, 512) != 0) die_errno("listen");
  return fd;
}

static unsigned long parse_num(const char *what, const char *arg,
                               unsigned long lo, unsigned long hi) {
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(arg, &end, 10);
  if (errno != 0 || end == arg || *end != '\0' || v < lo || v > hi ||
      arg[0] == '-') {
    fprintf(stderr, "%s: bad %s '%s' (%lu..%lu)\n", prog, what, arg, lo, hi);
    exit(2);
  }
  return v;
}

static void usage(void) {
  fprintf(stderr, "usage: %s [--workers N] [--heap-mb M] [--leak] "
          "[--leak-kb K] [PORT]\n", prog);
  exit(2);
}

int main(int argc, char **argv) {
  server s;
  memset(&s, 0, sizeof s);
  s.cfg = (pool_config){.workers = 4, .heap_mb = 16, .leak_kb = 64};
  unsigned port = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--leak") == 0) {
      s.cfg.leak = true;
    } else if (strcmp(a, "--workers") == 0 && i + 1 < argc) {
      s.cfg.workers = (unsigned)parse_num("workers", argv[++i], 1,
                                          MAX_WORKERS);
    } else if (strcmp(a, "--heap-mb") == 0 && i + 1 < argc) {
      s.cfg.heap_mb = parse_num("heap-mb", argv[++i], 1, 65536);
    } else if (strcmp(a, "--leak-kb") == 0 && i + 1 < argc) {
      s.cfg.leak_kb = parse_num("leak-kb", argv[++i], 4, 1 << 20);
    } else if (a[0] != '-') {
      port = (unsigned)parse_num("port", a, 0, 65535);
    } else {
      usage();
    }
  }

  /* Signals arrive through a descriptor in the loop, not a handler. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  /* Blocked before any worker starts, so every thread inherits it. */
  if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) die_errno("sigmask");
  signal(SIGPIPE, SIG_IGN);
  s.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s.sig_fd < 0) die_errno("signalfd");

  s.conns = calloc(MAX_CONNS, sizeof *s.conns);
  if (s.conns == NULL) die_errno("calloc");
  for (unsigned c = 0; c < MAX_CONNS; c++) s.conns[c].fd = -1;

  s.rt = iso_runtime_new(NULL);
  if (s.rt == NULL) die("iso_runtime_new");
  iso_isolate_params ip = {.struct_size = sizeof ip, .name = "server"};
  s.iso = iso_isolate_new(s.rt, &ip);
  if (s.iso == NULL) die("iso_isolate_new");

  s.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s.epfd < 0) die_errno("epoll_create1");
  s.listen_fd = listen_on(port);
  epoll_add(&s, s.listen_fd, EPOLLIN, tag(TAG_LISTEN, 0));
  epoll_add(&s, s.sig_fd, EPOLLIN, tag(TAG_SIGNAL, 0));
  for (unsigned k = 0; k < s.cfg.workers; k++) spawn_worker(&s, k);

  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  if (getsockname(s.listen_fd, (struct sockaddr *)&a, &alen) != 0)
    die_errno("getsockname");
  printf("listening on 127.0.0.1:%u (%u workers, heap limit %zu MiB%s)\n",
         (unsigned)ntohs(a.sin_port), s.cfg.workers, s.cfg.heap_mb,
         s.cfg.leak ? ", leaking" : "");
  fflush(stdout);

  bool running = true;
  while (running) {
    struct epoll_event evs[64];
    int n = epoll_wait(s.epfd, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die_errno("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32);
      uint32_t index = (uint32_t)evs[i].data.u64;
      switch (kind) {
      case TAG_LISTEN: on_accept(&s); break;
      case TAG_SIGNAL: running = false; break;
      case TAG_PORT: on_port(&s, index); break;
      case TAG_CONN: on_conn(&s, index, evs[i].events); break;
      }
    }
  }

  /* Shut down: closing a worker's port ends its receive with
   * ISO_ERR_CLOSED and so the worker. */
  for (unsigned c = 0; c < MAX_CONNS; c++) conn_close(&s, c);
  int failed = 0;
  for (unsigned k = 0; k < s.cfg.workers; k++) {
    int code = 0;
    iso_port_close(s.slots[k].port);
    if (iso_worker_join(s.slots[k].worker, &code) != ISO_OK)
      die("iso_worker_join");
    if (code != 0) failed++;
  }
  fprintf(stderr, "%s: %" PRIu64 " requests answered, %" PRIu64
          " workers replaced, %" PRIu64 " requests posted again\n",
          prog, s.requests, s.replaced, s.retried);
  close(s.listen_fd);
  close(s.sig_fd);
  close(s.epfd);
  free(s.conns);
  if (iso_isolate_free(s.iso) != ISO_OK) die("iso_isolate_free");
  if (iso_runtime_free(s.rt) != ISO_OK) die("iso_runtime_free");
  return failed ? 1 : 0;
}
