/*
 * loadgen: drives worker_pool_server on loopback and checks every reply.
 *
 * Usage:
 *   loadgen [--seconds S] [--concurrency C] --port P
 *   loadgen [--seconds S] [--concurrency C] --server PATH [-- ARGS...]
 *   loadgen --smoke PATH
 *
 * Load: C connections (default 16), each with one request in flight at a
 * time (a closed loop, so concurrency is bounded and latency is honest),
 * for S seconds (default 5). With --server it starts the server itself
 * (PATH, with ARGS, on a port it picks), and stops it with SIGTERM at the
 * end. Each request is a line of 4 to 15 words drawn from a small
 * vocabulary; the expected reply ("words=W distinct=D top=WORD:N by=...")
 * is computed here and every reply must match it. At the end it prints
 * requests/s and latency percentiles, then the server's "stats" line, and
 * one JSON line of figures. Exit status 1 if any reply was wrong or late.
 *
 * Smoke (a test): starts the server with two workers, checks single,
 * pipelined, empty, invalid and stats requests, and stops it; then starts
 * it with --leak and sends requests until the stats line shows that a
 * worker reached its heap limit and was replaced, and a further round of
 * requests after that, every reply checked; then stops it. The server must
 * exit with status 0 each time.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "loadgen"
#define REPLY_TIMEOUT_MS 10000
#define MAX_CONC 1000

/* The server this program started, killed on any failure so that no
 * test leaves one behind. */
static pid_t child = -1;

static void fail(const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", PROG);
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  if (child > 0) kill(child, SIGKILL);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- requests and their expected replies ---- */

static const char *const vocab[] = {
    "alpha", "bravo", "charlie", "delta", "echo",  "foxtrot", "golf",
    "hotel", "india", "juliet",  "kilo",  "lima",  "mike",    "november",
    "oscar", "papa"};
#define VOCAB (sizeof vocab / sizeof vocab[0])

static uint64_t next_random(uint64_t *state) {
  uint64_t x = *state; /* xorshift64* */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* A request line (with its newline) and the reply's expected prefix: the
 * server's word count, most frequent word (the first seen wins a tie),
 * then " by=" and the worker's name, which is not checked. */
static void make_request(uint64_t *rng, char *line, size_t cap,
                         char *expect, size_t ecap) {
  unsigned n = 4 + (unsigned)(next_random(rng) % 12);
  unsigned count[VOCAB] = {0}, order[VOCAB], distinct = 0;
  size_t used = 0;
  for (unsigned i = 0; i < n; i++) {
    unsigned w = (unsigned)(next_random(rng) % VOCAB);
    if (count[w]++ == 0) order[distinct++] = w;
    used += (size_t)snprintf(line + used, cap - used, "%s%s", i ? " " : "",
                             vocab[w]);
  }
  snprintf(line + used, cap - used, "\n");
  unsigned top = order[0];
  for (unsigned i = 1; i < distinct; i++)
    if (count[order[i]] > count[top]) top = order[i];
  snprintf(expect, ecap, "words=%u distinct=%u top=%s:%u by=", n, distinct,
           vocab[top], count[top]);
}

/* ---- connections ---- */

static int connect_to(unsigned port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket: %s", strerror(errno));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    fail("connect: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) fail("write: %s", strerror(errno));
    p += k;
    n -= (size_t)k;
  }
}

/* One reply line (without its newline) from a blocking socket; leftover
 * bytes stay in the caller's buffer for the next call. */
typedef struct line_reader {
  int fd;
  char buf[16384];
  size_t len;
} line_reader;

static void read_line(line_reader *r, char *out, size_t cap) {
  for (;;) {
    char *nl = memchr(r->buf, '\n', r->len);
    if (nl != NULL) {
      size_t n = (size_t)(nl - r->buf);
      if (n >= cap) n = cap - 1;
      memcpy(out, r->buf, n);
      out[n] = '\0';
      size_t rest = r->len - (size_t)(nl - r->buf) - 1;
      memmove(r->buf, nl + 1, rest);
      r->len = rest;
      return;
    }
    if (r->len == sizeof r->buf) fail("%s", "reply line too long");
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    int k = poll(&p, 1, REPLY_TIMEOUT_MS);
    if (k == 0) fail("%s", "no reply within 10 s");
    if (k < 0 && errno == EINTR) continue;
    ssize_t got = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) fail("%s", "the server closed the connection");
    r->len += (size_t)got;
  }
}

static void request(line_reader *r, const char *line, char *reply,
                    size_t cap) {
  write_all(r->fd, line, strlen(line));
  read_line(r, reply, cap);
}

/* ---- the load loop ---- */

typedef struct client {
  int fd;
  uint64_t rng;
  uint64_t sent_ns;
  bool waiting;
  char expect[128];
  char in[4096];
  size_t in_len;
} client;

typedef struct load_result {
  uint64_t requests, errors;
  double seconds;
  uint64_t *lat_ns;
  size_t nlat, caplat;
} load_result;

static void record(load_result *res, uint64_t ns) {
  if (res->nlat == res->caplat) {
    res->caplat = res->caplat ? res->caplat * 2 : 65536;
    res->lat_ns = realloc(res->lat_ns, res->caplat * sizeof *res->lat_ns);
    if (res->lat_ns == NULL) fail("%s", "out of memory");
  }
  res->lat_ns[res->nlat++] = ns;
}

static bool send_next(client *c, uint64_t *issued) {
  char line[256];
  make_request(&c->rng, line, sizeof line, c->expect, sizeof c->expect);
  c->sent_ns = now_ns();
  size_t n = strlen(line);
  /* A short line on a socket with nothing unread fits its buffer whole. */
  if (write(c->fd, line, n) != (ssize_t)n) return false;
  c->waiting = true;
  (*issued)++;
  return true;
}

/* Runs for seconds, or until max_requests were sent (0: no limit), then
 * waits for the replies still due. */
static void run_load(unsigned port, double seconds, unsigned conc,
                     uint64_t max_requests, uint64_t seed,
                     load_result *res) {
  client *cl = calloc(conc, sizeof *cl);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (cl == NULL || ep < 0) fail("%s", "setup failed");
  uint64_t issued = 0, t0 = now_ns();
  uint64_t end = t0 + (uint64_t)(seconds * 1e9);
  unsigned active = 0;
  for (unsigned i = 0; i < conc; i++) {
    cl[i].fd = connect_to(port);
    cl[i].rng = seed * 1000003u + i + 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &ev);
    if (max_requests == 0 || issued < max_requests) {
      if (!send_next(&cl[i], &issued)) fail("%s", "write failed");
      active++;
    }
  }
  uint64_t last_progress = now_ns();
  while (active > 0) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, 200);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("epoll_wait: %s", strerror(errno));
    uint64_t t = now_ns();
    if (n == 0 && t - last_progress > (uint64_t)REPLY_TIMEOUT_MS * 1000000u) {
      fprintf(stderr, "%s: %u replies late by more than 10 s\n", PROG,
              active);
      res->errors += active;
      break;
    }
    for (int e = 0; e < n; e++) {
      client *c = &cl[evs[e].data.u32];
      ssize_t got = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) fail("%s", "the server closed a connection");
      c->in_len += (size_t)got;
      char *nl;
      while ((nl = memchr(c->in, '\n', c->in_len)) != NULL) {
        *nl = '\0';
        uint64_t done = now_ns();
        last_progress = done;
        if (!c->waiting || strncmp(c->in, c->expect, strlen(c->expect)) != 0) {
          if (res->errors < 5)
            fprintf(stderr, "%s: got '%s', want '%s...'\n", PROG, c->in,
                    c->expect);
          res->errors++;
        }
        record(res, done - c->sent_ns);
        res->requests++;
        c->waiting = false;
        size_t rest = c->in_len - (size_t)(nl - c->in) - 1;
        memmove(c->in, nl + 1, rest);
        c->in_len = rest;
        if (done < end && (max_requests == 0 || issued < max_requests)) {
          if (!send_next(c, &issued)) fail("%s", "write failed");
        } else {
          active--;
        }
      }
      if (c->in_len == sizeof c->in) fail("%s", "reply line too long");
    }
  }
  res->seconds = (double)(now_ns() - t0) / 1e9;
  for (unsigned i = 0; i < conc; i++) close(cl[i].fd);
  close(ep);
  free(cl);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static double pct_ms(const load_result *r, double q) {
  if (r->nlat == 0) return 0;
  size_t i = (size_t)(q * (double)(r->nlat - 1) + 0.5);
  return (double)r->lat_ns[i] / 1e6;
}

/* ---- the server as a child process ---- */

static pid_t start_server(char **argv, unsigned *port) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) fail("pipe: %s", strerror(errno));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) fail("fork: %s", strerror(errno));
  if (pid == 0) {
    /* If this program dies (a test timeout kills it), so does the server. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(p[1], STDOUT_FILENO);
    execv(argv[0], argv);
    fprintf(stderr, "%s: cannot run %s: %s\n", PROG, argv[0],
            strerror(errno));
    _exit(127);
  }
  close(p[1]);
  child = pid;
  char line[256];
  size_t len = 0;
  while (len < sizeof line - 1) {
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    if (poll(&pf, 1, REPLY_TIMEOUT_MS) <= 0) break;
    ssize_t k = read(p[0], line + len, 1);
    if (k <= 0 || line[len] == '\n') break;
    len++;
  }
  line[len] = '\0';
  close(p[0]);
  if (sscanf(line, "listening on 127.0.0.1:%u", port) != 1)
    fail("the server did not start (it printed '%s')", line);
  return pid;
}

/* SIGTERM, then up to 15 s for a clean exit; its status, or -1. */
static int stop_server(pid_t pid) {
  int status = 0;
  kill(pid, SIGTERM);
  for (int i = 0; i < 1500; i++) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      child = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status)
                               : 128 + WTERMSIG(status);
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  child = -1;
  return -1;
}

static void stats_line(unsigned port, char *out, size_t cap) {
  line_reader r = {.fd = connect_to(port)};
  request(&r, "stats\n", out, cap);
  close(r.fd);
}

/* ---- smoke test ---- */

static int smoke_checks = 0;

static void expect_prefix(const char *got, const char *want) {
  smoke_checks++;
  if (strncmp(got, want, strlen(want)) != 0) {
    fprintf(stderr, "%s: smoke: got '%s', want '%s...'\n", PROG, got, want);
    fail("%s", "smoke test failed");
  }
}

static void expect_contains(const char *got, const char *want) {
  smoke_checks++;
  if (strstr(got, want) == NULL) {
    fprintf(stderr, "%s: smoke: '%s' lacks '%s'\n", PROG, got, want);
    fail("%s", "smoke test failed");
  }
}

static unsigned long replaced_of(const char *stats) {
  const char *p = strstr(stats, "replaced=");
  if (p == NULL) fail("smoke: no replaced= in '%s'", stats);
  return strtoul(p + 9, NULL, 10);
}

static int smoke(const char *server) {
  char reply[8192];
  unsigned port = 0;

  /* A normal pool: single, pipelined, empty, invalid and stats requests. */
  char *argv1[] = {(char *)server, "--workers", "2", NULL};
  pid_t pid = start_server(argv1, &port);
  line_reader r = {.fd = connect_to(port)};
  request(&r, "hello world hello\n", reply, sizeof reply);
  expect_prefix(reply, "words=3 distinct=2 top=hello:2 by=w");
  write_all(r.fd, "a b\nc c c\n\n", 11);
  read_line(&r, reply, sizeof reply);
  expect_prefix(reply, "words=2 distinct=2 top=a:1 by=");
  read_line(&r, reply, sizeof reply);
  expect_prefix(reply, "words=3 distinct=1 top=c:3 by=");
  read_line(&r, reply, sizeof reply);
  expect_prefix(reply, "words=0 distinct=0 top=-:0 by=");
  request(&r, "\xff\xfe\n", reply, sizeof reply);
  expect_prefix(reply, "error: the request is not valid UTF-8");
  request(&r, "stats\n", reply, sizeof reply);
  expect_prefix(reply, "stats workers=2 replaced=0 rss_kb=");
  expect_contains(reply, " w0.0: served=");
  expect_contains(reply, "; w1.0: served=");
  close(r.fd);
  load_result res = {0};
  /* Request counts bound these runs; the 120 s is only a backstop for a
   * slow sanitizer build. */
  run_load(port, 120, 4, 400, 1, &res);
  smoke_checks++;
  if (res.errors != 0 || res.requests != 400)
    fail("smoke: %s", "wrong replies under load");
  int st = stop_server(pid);
  if (st != 0) fail("smoke: the server exited with %s", st < 0 ? "a hang"
                                                              : "an error");

  /* A leaking pool: workers reach their 16 MiB limit and are replaced,
   * and every request still gets its right reply. */
  char *argv2[] = {(char *)server, "--workers", "2", "--leak", "--heap-mb",
                   "16", NULL};
  pid = start_server(argv2, &port);
  unsigned long replaced = 0;
  uint64_t requests = 0;
  int rounds_after = 0;
  for (int round = 0; round < 100 && rounds_after < 2; round++) {
    load_result lr = {0};
    run_load(port, 120, 4, 200, 2 + (uint64_t)round, &lr);
    requests += lr.requests;
    if (lr.errors != 0 || lr.requests != 200)
      fail("smoke: %s", "wrong or missing replies while workers leak");
    free(lr.lat_ns);
    stats_line(port, reply, sizeof reply);
    expect_prefix(reply, "stats workers=2 replaced=");
    replaced = replaced_of(reply);
    if (replaced > 0) rounds_after++;
  }
  if (replaced == 0)
    fail("smoke: %s", "no worker reached its heap limit");
  st = stop_server(pid);
  if (st != 0) fail("smoke: the leaking server exited with %s",
                    st < 0 ? "a hang" : "an error");
  printf("smoke: ok (%d checks; %" PRIu64 " requests with --leak, %lu "
         "workers replaced, none dropped)\n", smoke_checks, requests,
         replaced);
  free(res.lat_ns);
  return 0;
}

/* ---- main ---- */

static void usage(void) {
  fprintf(stderr,
          "usage: %s [--seconds S] [--concurrency C] --port P\n"
          "       %s [--seconds S] [--concurrency C] --server PATH "
          "[-- ARGS...]\n"
          "       %s --smoke PATH\n",
          PROG, PROG, PROG);
  exit(2);
}

int main(int argc, char **argv) {
  double seconds = 5;
  unsigned conc = 16, port = 0;
  const char *server = NULL;
  char **server_args = NULL;
  int nserver_args = 0;
  signal(SIGPIPE, SIG_IGN);
  for (int i = 1; i < argc; i += 2) { /* options come in pairs */
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) {
      server_args = argv + i + 1;
      nserver_args = argc - i - 1;
      break;
    }
    if (v == NULL) usage();
    char *end = NULL;
    if (strcmp(a, "--smoke") == 0) return smoke(v);
    if (strcmp(a, "--seconds") == 0) {
      seconds = strtod(v, &end);
      if (*end != '\0' || !(seconds > 0 && seconds <= 3600)) usage();
    } else if (strcmp(a, "--concurrency") == 0) {
      conc = (unsigned)strtoul(v, &end, 10);
      if (*end != '\0' || conc < 1 || conc > MAX_CONC) usage();
    } else if (strcmp(a, "--port") == 0) {
      port = (unsigned)strtoul(v, &end, 10);
      if (*end != '\0' || port < 1 || port > 65535) usage();
    } else if (strcmp(a, "--server") == 0) {
      server = v;
    } else {
      usage();
    }
  }
  if ((port == 0) == (server == NULL)) usage();

  pid_t pid = -1;
  if (server != NULL) {
    char **sargv = calloc((size_t)nserver_args + 2, sizeof *sargv);
    if (sargv == NULL) fail("%s", "out of memory");
    sargv[0] = (char *)server;
    for (int i = 0; i < nserver_args; i++) sargv[1 + i] = server_args[i];
    pid = start_server(sargv, &port);
    free(sargv);
  }

  load_result res = {0};
  run_load(port, seconds, conc, 0, (uint64_t)time(NULL), &res);
  qsort(res.lat_ns, res.nlat, sizeof *res.lat_ns, cmp_u64);
  double rps = (double)res.requests / res.seconds;
  printf("%" PRIu64 " requests in %.2f s over %u connections: %.0f "
         "requests/s, latency p50 %.3f ms, p99 %.3f ms, max %.3f ms, %"
         PRIu64 " wrong\n",
         res.requests, res.seconds, conc, rps, pct_ms(&res, 0.5),
         pct_ms(&res, 0.99), pct_ms(&res, 1.0), res.errors);
  char stats[8192];
  stats_line(port, stats, sizeof stats);
  printf("server: %s\n", stats);
  printf("{\"requests\":%" PRIu64 ",\"seconds\":%.3f,\"concurrency\":%u,"
         "\"requests_per_s\":%.0f,\"latency_p50_ms\":%.3f,"
         "\"latency_p99_ms\":%.3f,\"latency_max_ms\":%.3f,\"errors\":%"
         PRIu64 "}\n",
         res.requests, res.seconds, conc, rps, pct_ms(&res, 0.5),
         pct_ms(&res, 0.99), pct_ms(&res, 1.0), res.errors);
  free(res.lat_ns);
  int status = res.errors ? 1 : 0;
  if (pid > 0 && stop_server(pid) != 0) {
    fprintf(stderr, "%s: the server did not exit cleanly\n", PROG);
    status = 1;
  }
  return status;
}
