/* bench/lg_bulk.c - bulk throughput: the modes that move many bytes.
 *
 *   bulk-send  client: sends N bytes of the pattern stream, shuts down its
 *              write half, waits for EOF (with --echo: for the same N bytes
 *              back, verified).
 *   bulk-recv  server: accepts K connections, reads each to EOF verifying
 *              the pattern, checks that N bytes arrived in all.
 *   bulk-sink  reads standard input (a server's stdout, through a pipe),
 *              verifying the pattern and the count.
 *   genfile    writes N bytes of the pattern to a file, for a sender under
 *              test to read as its standard input.
 *
 * All of them use the same stream (bn_stream_t, seed --seed), so whatever
 * program sits between a sender and a receiver is checked end to end.
 * Timestamps in the JSON are CLOCK_MONOTONIC nanoseconds, which the
 * driver combines across processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#define SENDS_PER_WAKEUP 4
#define READS_PER_WAKEUP 4

/* MiB per second for bytes moved in ns nanoseconds; 0 when ns is 0. */
static double mib_per_sec(uint64_t bytes, uint64_t ns) {
  return ns ? (double)bytes / (1024.0 * 1024.0) / ((double)ns / 1e9) : 0;
}

/* Returns the index of the first byte where a and b differ (n if none). */
static size_t first_difference(const unsigned char *a, const unsigned char *b, size_t n) {
  size_t i = 0;
  while (i < n && a[i] == b[i])
    i++;
  return i;
}

/* Reads up to len bytes into buf. Returns the count, 0 at EOF, -1 when
 * nothing is there yet, or -2 on an error (errno set). */
static ssize_t read_some(int fd, unsigned char *buf, size_t len, bool is_socket) {
  for (;;) {
    ssize_t n = is_socket ? recv(fd, buf, len, 0) : read(fd, buf, len);
    if (n >= 0)
      return n;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN ? -1 : -2;
  }
}

/* ==== bulk-send ================================================================== */

typedef struct {
  int fd;
  unsigned id;
  uint64_t to_send, sent, got;
  bool connecting, shut, eof, finished;
  uint32_t watching; /* current epoll interest */
} bs_conn_t;

typedef struct {
  const lg_opts_t *o;
  bn_stream_t stream;
  int ep;
  unsigned unfinished;
  uint64_t done_ns, bytes_back;
  unsigned char *inbuf;
  lg_errors_t errs;
} bs_run_t;

/* Ends c's part in the run (finished or failed): no more events for it. */
static void bs_finish(bs_run_t *r, bs_conn_t *c) {
  if (c->finished)
    return;
  c->finished = true;
  r->unfinished--;
  r->done_ns = bn_now_ns();
  epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
}

/* Recomputes what c waits for: writability while it has bytes to send,
 * readability until EOF (with --no-wait-eof: only while echoed bytes are
 * due). Shuts down the write half after the last byte, and finishes c when
 * it waits for nothing more. */
static void bs_update(bs_run_t *r, bs_conn_t *c) {
  if (c->sent == c->to_send && !c->shut) {
    shutdown(c->fd, SHUT_WR);
    c->shut = true;
  }
  bool want_in = !c->eof && (r->o->echo ? !(r->o->no_wait_eof && c->got >= c->to_send)
                                        : !r->o->no_wait_eof);
  uint32_t want = (c->sent < c->to_send ? EPOLLOUT : 0) | (want_in ? EPOLLIN : 0);
  if (want == 0) {
    bs_finish(r, c);
    return;
  }
  if (want != c->watching) {
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->watching = want;
  }
}

/* Sends the next pieces of c's share of the stream (bs_update shuts down
 * the write half after the last one). */
static void bs_send(bs_run_t *r, bs_conn_t *c) {
  for (int i = 0; i < SENDS_PER_WAKEUP && c->sent < c->to_send; i++) {
    uint64_t left = c->to_send - c->sent;
    size_t len = left < BN_STREAM_WINDOW ? (size_t)left : BN_STREAM_WINDOW;
    ssize_t n = send(c->fd, bn_stream_at(&r->stream, c->sent), len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return;
      lg_error(&r->errs, "conn %u: send after %llu bytes: %s", c->id,
               (unsigned long long)c->sent, strerror(errno));
      bs_finish(r, c);
      return;
    }
    c->sent += (size_t)n;
  }
}

/* Reads what the server sent back: with --echo it must be our own bytes
 * in order; without, the server should send nothing at all. */
static void bs_read(bs_run_t *r, bs_conn_t *c) {
  for (int i = 0; i < READS_PER_WAKEUP; i++) {
    ssize_t n = read_some(c->fd, r->inbuf, BN_STREAM_WINDOW, true);
    if (n == -1)
      return;
    if (n == -2) {
      lg_error(&r->errs, "conn %u: recv: %s", c->id, strerror(errno));
      bs_finish(r, c);
      return;
    }
    if (n == 0) {
      c->eof = true;
      if (r->o->echo && c->got < c->to_send) {
        lg_error(&r->errs, "conn %u: server closed after echoing %llu of %llu bytes", c->id,
                 (unsigned long long)c->got, (unsigned long long)c->to_send);
        bs_finish(r, c);
      }
      return;
    }
    r->bytes_back += (uint64_t)n;
    if (!r->o->echo) {
      lg_error(&r->errs, "conn %u: server sent %zd bytes back; none expected", c->id, n);
      continue;
    }
    if (c->got + (uint64_t)n > c->to_send) {
      lg_error(&r->errs, "conn %u: server echoed more than the %llu bytes sent", c->id,
               (unsigned long long)c->to_send);
      bs_finish(r, c);
      return;
    }
    const unsigned char *want = bn_stream_at(&r->stream, c->got);
    if (memcmp(r->inbuf, want, (size_t)n) != 0) {
      lg_error(&r->errs, "conn %u: echoed bytes differ from the pattern at offset %llu", c->id,
               (unsigned long long)(c->got + first_difference(r->inbuf, want, (size_t)n)));
      bs_finish(r, c);
      return;
    }
    c->got += (uint64_t)n;
  }
}

int lg_bulk_send(const lg_opts_t *o) {
  bn_addr_t addr;
  if (lg_addr(o->connect, "--connect", &addr) < 0)
    return 2;
  if (o->bytes == 0) {
    fprintf(stderr, "loadgen: bulk-send needs --bytes N\n");
    return 2;
  }
  bs_run_t r = {.o = o};
  /* connected_ns: when the first connection was up; the clock starts there. */
  uint64_t deadline = bn_now_ns() + o->timeout_ns;
  unsigned nconns = o->conns;
  bs_conn_t *conns = calloc(nconns, sizeof *conns);
  r.inbuf = malloc(BN_STREAM_WINDOW);
  r.ep = epoll_create1(EPOLL_CLOEXEC);
  if (!conns || !r.inbuf || r.ep < 0 || bn_stream_init(&r.stream, o->seed) < 0) {
    fprintf(stderr, "loadgen: out of memory or descriptors\n");
    return 1;
  }

  unsigned opened = 0;
  for (; opened < nconns; opened++) {
      bs_conn_t *c = &conns[opened];
    c->id = opened;
    /* Every connection carries the stream from offset 0; the first takes
     * the remainder of an uneven split. */
    c->to_send = o->bytes / nconns + (opened == 0 ? o->bytes % nconns : 0);
    /* Connect without waiting: each connection starts sending as soon as
     * it is up. A server that accepts one client at a time (nc -k) with a
     * short backlog would otherwise never see the first one finish. */
    c->fd = bn_connect_start(&addr);
    if (c->fd < 0) {
      lg_error(&r.errs, "connect %s: %s", o->connect, strerror(-c->fd));
      break;
    }
    c->connecting = true;
    c->watching = EPOLLOUT;
    struct epoll_event ev = {.events = c->watching, .data.ptr = c};
    epoll_ctl(r.ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  uint64_t connected_ns = 0;
  if (r.errs.count == 0)
    r.unfinished = nconns;

  struct epoll_event events[64];
  while (r.unfinished > 0 && bn_now_ns() < deadline) {
    int n = epoll_wait(r.ep, events, 64, bn_ms_until(deadline, 1000));
    for (int i = 0; i < n; i++) {
      bs_conn_t *c = events[i].data.ptr;
      if (c->finished)
        continue;
      if (c->connecting) {
        int rc = bn_connect_result(c->fd);
        if (rc < 0) {
          lg_error(&r.errs, "connect %s: %s", o->connect, strerror(-rc));
          bs_finish(&r, c);
          continue;
        }
        c->connecting = false;
        if (connected_ns == 0)
          connected_ns = bn_now_ns();
      }
      if (events[i].events & EPOLLOUT)
        bs_send(&r, c);
      if (!c->finished && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        bs_read(&r, c);
      if (!c->finished)
        bs_update(&r, c);
    }
  }
  uint64_t sent = 0;
  for (unsigned i = 0; i < opened; i++)
    sent += conns[i].sent;
  if (r.unfinished > 0)
    lg_error(&r.errs, "timed out: %llu of %llu bytes sent, %u connections unfinished",
             (unsigned long long)sent, (unsigned long long)o->bytes, r.unfinished);

  if (connected_ns == 0)
    connected_ns = r.done_ns = bn_now_ns();
  lg_json_begin("bulk-send");
  lg_json_u64("conns", nconns);
  lg_json_u64("bytes", sent);
  lg_json_u64("bytes_back", r.bytes_back);
  uint64_t ns = r.done_ns > connected_ns ? r.done_ns - connected_ns : 0;
  lg_json_num("seconds", (double)ns / 1e9);
  lg_json_num("mib_per_sec", mib_per_sec(sent, ns));
  lg_json_u64("connected_ns", connected_ns);
  lg_json_u64("done_ns", r.done_ns);
  int rc = lg_json_errors(&r.errs);
  lg_json_end();

  for (unsigned i = 0; i < opened; i++)
    close(conns[i].fd);
  free(conns);
  free(r.inbuf);
  bn_stream_free(&r.stream);
  close(r.ep);
  return rc;
}

/* ==== bulk-recv ================================================================== */

typedef struct {
  int fd;
  unsigned id;
  uint64_t got;
} br_conn_t;

typedef struct {
  bn_stream_t stream;
  unsigned char *inbuf;
  uint64_t total;
  lg_errors_t errs;
} br_run_t;

/* Reads from c, verifying against the stream. Returns 1 when c reached
 * EOF or failed (the caller closes it), 0 when it may have more. */
static int br_read(br_run_t *r, br_conn_t *c) {
  for (int i = 0; i < READS_PER_WAKEUP; i++) {
    ssize_t n = read_some(c->fd, r->inbuf, BN_STREAM_WINDOW, true);
    if (n == -1)
      return 0;
    if (n == -2) {
      lg_error(&r->errs, "conn %u: recv after %llu bytes: %s", c->id,
               (unsigned long long)c->got, strerror(errno));
      return 1;
    }
    if (n == 0)
      return 1;
    const unsigned char *want = bn_stream_at(&r->stream, c->got);
    if (memcmp(r->inbuf, want, (size_t)n) != 0) {
      lg_error(&r->errs, "conn %u: bytes differ from the pattern at offset %llu", c->id,
               (unsigned long long)(c->got + first_difference(r->inbuf, want, (size_t)n)));
      return 1;
    }
    c->got += (uint64_t)n;
    r->total += (uint64_t)n;
  }
  return 0;
}

int lg_bulk_recv(const lg_opts_t *o) {
  bn_addr_t addr;
  char err[BN_ERRLEN];
  if (lg_addr(o->listen, "--listen", &addr) < 0)
    return 2;
  if (o->bytes == 0) {
    fprintf(stderr, "loadgen: bulk-recv needs --bytes N\n");
    return 2;
  }
  int lfd = bn_listen(&addr, 128, err, sizeof err);
  if (lfd < 0) {
    fprintf(stderr, "loadgen: listen %s: %s\n", o->listen, err);
    return 1;
  }
  br_run_t r = {.inbuf = malloc(BN_STREAM_WINDOW)};
  unsigned nconns = o->conns;
  br_conn_t *conns = calloc(nconns, sizeof *conns);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (!conns || !r.inbuf || ep < 0 || bn_stream_init(&r.stream, o->seed) < 0) {
    fprintf(stderr, "loadgen: out of memory or descriptors\n");
    return 1;
  }
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  printf("%d\n", bn_local_port(lfd));
  fflush(stdout);

  uint64_t deadline = bn_now_ns() + o->timeout_ns;
  uint64_t first_accept_ns = 0, done_ns = 0;
  unsigned accepted = 0, closed = 0;
  struct epoll_event events[64];
  while (closed < nconns && bn_now_ns() < deadline) {
    int n = epoll_wait(ep, events, 64, bn_ms_until(deadline, 1000));
    for (int i = 0; i < n; i++) {
      br_conn_t *c = events[i].data.ptr;
      if (c == NULL) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
          continue;
        if (accepted == nconns) {
          lg_error(&r.errs, "more than the %u expected connections", nconns);
          close(fd);
          continue;
        }
        if (accepted == 0)
          first_accept_ns = bn_now_ns();
        c = &conns[accepted];
        c->fd = fd;
        c->id = accepted++;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (accepted == nconns)
          epoll_ctl(ep, EPOLL_CTL_DEL, lfd, NULL);
        continue;
      }
      if (br_read(&r, c)) {
        close(c->fd);
        c->fd = -1;
        closed++;
        done_ns = bn_now_ns();
      }
    }
  }
  if (closed < nconns)
    lg_error(&r.errs, "timed out: %u of %u connections finished, %llu bytes", closed, nconns,
             (unsigned long long)r.total);
  else if (r.errs.count == 0 && r.total != o->bytes)
    lg_error(&r.errs, "received %llu bytes, expected %llu", (unsigned long long)r.total,
             (unsigned long long)o->bytes);

  uint64_t ns = done_ns > first_accept_ns ? done_ns - first_accept_ns : 0;
  lg_json_begin("bulk-recv");
  lg_json_u64("conns", nconns);
  lg_json_u64("bytes", r.total);
  lg_json_num("seconds", (double)ns / 1e9);
  lg_json_num("mib_per_sec", mib_per_sec(r.total, ns));
  lg_json_u64("accepted_ns", first_accept_ns);
  lg_json_u64("done_ns", done_ns);
  int rc = lg_json_errors(&r.errs);
  lg_json_end();

  for (unsigned i = 0; i < accepted; i++)
    if (conns[i].fd >= 0)
      close(conns[i].fd);
  free(conns);
  free(r.inbuf);
  bn_stream_free(&r.stream);
  close(ep);
  close(lfd);
  return rc;
}

/* ==== bulk-sink ================================================================== */

int lg_bulk_sink(const lg_opts_t *o) {
  if (o->bytes == 0) {
    fprintf(stderr, "loadgen: bulk-sink needs --bytes N\n");
    return 2;
  }
  bn_stream_t stream = {0};
  unsigned char *buf = malloc(BN_STREAM_WINDOW);
  if (!buf || (!o->no_verify && bn_stream_init(&stream, o->seed) < 0)) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 1;
  }
  /* A bigger pipe means fewer wakeups for both ends; best effort. */
  fcntl(0, F_SETPIPE_SZ, 1 << 20);
  bn_set_nonblock(0);

  lg_errors_t errs = {0};
  uint64_t deadline = bn_now_ns() + o->timeout_ns;
  uint64_t got = 0, first_ns = 0, reached_ns = 0;
  bool eof = false;
  /* After the N-th byte, wait --drain longer (or until EOF) for bytes
   * that should not come. */
  while (!eof) {
    uint64_t until = reached_ns ? reached_ns + o->drain_ns : deadline;
    if (until > deadline)
      until = deadline;
    if (bn_now_ns() >= until)
      break;
    struct pollfd p = {.fd = 0, .events = POLLIN};
    if (poll(&p, 1, bn_ms_until(until, 1000)) <= 0)
      continue;
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
      ssize_t n = read_some(0, buf, BN_STREAM_WINDOW, false);
      if (n == -1)
        break;
      if (n <= 0) {
        if (n == -2)
          lg_error(&errs, "read stdin: %s", strerror(errno));
        eof = true;
        break;
      }
      if (first_ns == 0)
        first_ns = bn_now_ns();
      if (!o->no_verify && got + (uint64_t)n <= o->bytes) {
        const unsigned char *want = bn_stream_at(&stream, got);
        if (memcmp(buf, want, (size_t)n) != 0)
          lg_error(&errs, "bytes differ from the pattern at offset %llu",
                   (unsigned long long)(got + first_difference(buf, want, (size_t)n)));
      }
      got += (uint64_t)n;
      if (got >= o->bytes && reached_ns == 0)
        reached_ns = bn_now_ns();
    }
  }
  if (got != o->bytes)
    lg_error(&errs, "%s: %llu bytes, expected %llu", reached_ns || eof ? "wrong count" : "timed out",
             (unsigned long long)got, (unsigned long long)o->bytes);

  lg_json_begin("bulk-sink");
  lg_json_u64("bytes", got);
  lg_json_u64("first_ns", first_ns);
  lg_json_u64("reached_ns", reached_ns);
  lg_json_num("mib_per_sec", mib_per_sec(got, reached_ns > first_ns ? reached_ns - first_ns : 0));
  int rc = lg_json_errors(&errs);
  lg_json_end();
  free(buf);
  bn_stream_free(&stream);
  return rc;
}

/* ==== genfile ==================================================================== */

int lg_genfile(const lg_opts_t *o) {
  if (!o->out || o->bytes == 0) {
    fprintf(stderr, "loadgen: genfile needs --bytes N --out FILE\n");
    return 2;
  }
  bn_stream_t stream;
  if (bn_stream_init(&stream, o->seed) < 0) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 1;
  }
  lg_errors_t errs = {0};
  int fd = open(o->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    lg_error(&errs, "open %s: %s", o->out, strerror(errno));
  uint64_t written = 0;
  while (fd >= 0 && written < o->bytes) {
    uint64_t left = o->bytes - written;
    size_t len = left < BN_STREAM_WINDOW ? (size_t)left : BN_STREAM_WINDOW;
    ssize_t n = write(fd, bn_stream_at(&stream, written), len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      lg_error(&errs, "write %s: %s", o->out, strerror(errno));
      break;
    }
    written += (uint64_t)n;
  }
  if (fd >= 0 && close(fd) < 0)
    lg_error(&errs, "close %s: %s", o->out, strerror(errno));
  lg_json_begin("genfile");
  lg_json_u64("bytes", written);
  int rc = lg_json_errors(&errs);
  lg_json_end();
  bn_stream_free(&stream);
  return rc;
}
