/* bench/lg_pingpong.c - `loadgen pingpong`: N connections, each sending an
 * S-byte message and waiting for exactly those S bytes back before sending
 * the next. Reports round trips per second and p50/p99 latency.
 *
 * Every message carries its sequence number at its head and tail, and the
 * reply is compared byte for byte with what was sent: a server that answers
 * fast with the wrong bytes (or stale ones) counts errors, not round trips.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#define PP_DEFAULT_SIZE 64
#define PP_DEFAULT_COUNT 10000

typedef struct {
  int fd;             /* -1 once the connection failed */
  unsigned id;
  uint64_t seq;       /* sequence number of the message in flight */
  size_t sent, got;   /* progress of the message in flight */
  uint64_t t_start;   /* when the message in flight was started */
  bool busy;          /* a message is in flight */
  bool want_out;      /* epoll also watches for writability */
  unsigned char *out; /* the message in flight */
  unsigned char *in;  /* the reply so far */
} pp_conn_t;

typedef struct {
  const lg_opts_t *o;
  int ep;
  size_t size;
  uint64_t issued, done, limit; /* limit 0: only the duration bounds the run */
  uint64_t stop_issuing_ns;     /* UINT64_MAX: no duration */
  uint64_t last_done_ns;
  unsigned busy;
  bn_hist_t hist;
  lg_errors_t errs;
} pp_run_t;

/* Writes seq into the first and last 8 bytes of the message (fewer when
 * the message is shorter), so every round trip's bytes differ. */
static void stamp_seq(unsigned char *msg, size_t size, uint64_t seq) {
  size_t n = size < 8 ? size : 8;
  memcpy(msg, &seq, n);
  if (size >= 16)
    memcpy(msg + size - 8, &seq, 8);
}

/* Marks c failed: closes it and takes it out of the run. */
static void conn_fail(pp_run_t *r, pp_conn_t *c) {
  if (c->busy)
    r->busy--;
  c->busy = false;
  close(c->fd);
  c->fd = -1;
}

/* Sets epoll interest for c: always readable, writable while its message
 * is not all sent. Returns 0 or -1 (c failed). */
static int conn_watch(pp_run_t *r, pp_conn_t *c) {
  bool want = c->busy && c->sent < r->size;
  if (want == c->want_out)
    return 0;
  struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
  if (epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
    lg_error(&r->errs, "epoll_ctl: %s", strerror(errno));
    conn_fail(r, c);
    return -1;
  }
  c->want_out = want;
  return 0;
}

/* Sends what the socket takes of c's message. Returns 0 or -1 (c failed). */
static int conn_send(pp_run_t *r, pp_conn_t *c) {
  while (c->sent < r->size) {
    ssize_t n = send(c->fd, c->out + c->sent, r->size - c->sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        break;
      lg_error(&r->errs, "send: %s", strerror(errno));
      conn_fail(r, c);
      return -1;
    }
    c->sent += (size_t)n;
  }
  return conn_watch(r, c);
}

/* Starts c's next round trip if the count and duration allow one.
 * Returns 0 or -1 (c failed). */
static int conn_start(pp_run_t *r, pp_conn_t *c) {
  if ((r->limit && r->issued >= r->limit) || bn_now_ns() >= r->stop_issuing_ns) {
    if (c->busy)
      r->busy--;
    c->busy = false;
    return conn_watch(r, c);
  }
  if (!c->busy)
    r->busy++;
  c->busy = true;
  c->seq = r->issued++;
  c->sent = c->got = 0;
  stamp_seq(c->out, r->size, c->seq);
  c->t_start = bn_now_ns();
  return conn_send(r, c);
}

/* Reads what has arrived of c's reply; on a complete reply checks it,
 * records the round trip and starts the next. */
static void conn_read(pp_run_t *r, pp_conn_t *c) {
  /* Never read past the reply we wait for: extra bytes from the server
   * belong to no message and must fail the next check, not vanish. */
  size_t want = c->busy ? r->size - c->got : 1;
  ssize_t n = recv(c->fd, c->in + (c->busy ? c->got : 0), want, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR)
      return;
    lg_error(&r->errs, "conn %u: recv: %s", c->id, strerror(errno));
    conn_fail(r, c);
    return;
  }
  if (n == 0) {
    lg_error(&r->errs, "conn %u: server closed after %zu of %zu bytes of round trip %llu",
             c->id, c->got, r->size, (unsigned long long)c->seq);
    conn_fail(r, c);
    return;
  }
  if (!c->busy) {
    lg_error(&r->errs, "conn %u: %zd bytes nobody asked for", c->id, n);
    conn_fail(r, c);
    return;
  }
  c->got += (size_t)n;
  if (c->got < r->size)
    return;
  if (memcmp(c->in, c->out, r->size) != 0) {
    size_t i = 0;
    while (c->in[i] == c->out[i])
      i++;
    lg_error(&r->errs, "conn %u: reply of round trip %llu differs at byte %zu",
             c->id, (unsigned long long)c->seq, i);
    conn_fail(r, c);
    return;
  }
  uint64_t now = bn_now_ns();
  bn_hist_add(&r->hist, now - c->t_start);
  r->done++;
  r->last_done_ns = now;
  conn_start(r, c);
}

/* After the run: any byte still arriving on an idle connection is one the
 * server should not have sent. */
static void check_no_extra(pp_run_t *r, pp_conn_t *conns, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    unsigned char b;
    if (conns[i].fd >= 0 && recv(conns[i].fd, &b, 1, MSG_DONTWAIT) > 0)
      lg_error(&r->errs, "conn %u: extra bytes after the last reply", i);
  }
}

int lg_pingpong(const lg_opts_t *o) {
  bn_addr_t addr;
  if (lg_addr(o->connect, "--connect", &addr) < 0)
    return 2;
  pp_run_t r = {.o = o, .size = o->size ? (size_t)o->size : PP_DEFAULT_SIZE};
  r.limit = o->count ? o->count : (o->duration_ns ? 0 : PP_DEFAULT_COUNT);
  uint64_t deadline = bn_now_ns() + o->timeout_ns;
  unsigned nconns = o->conns;

  pp_conn_t *conns = calloc(nconns, sizeof *conns);
  r.ep = epoll_create1(EPOLL_CLOEXEC);
  if (!conns || r.ep < 0) {
    fprintf(stderr, "loadgen: out of memory or descriptors\n");
    return 1;
  }
  for (unsigned i = 0; i < nconns; i++)
    conns[i].fd = -1;
  unsigned opened = 0;
  for (; opened < nconns; opened++) {
    pp_conn_t *c = &conns[opened];
    c->id = opened;
    c->out = malloc(r.size);
    c->in = malloc(r.size);
    c->fd = bn_connect_wait(&addr, deadline);
    if (!c->out || !c->in) {
      lg_error(&r.errs, "out of memory for %u messages of %zu bytes", nconns, r.size);
      break;
    }
    if (c->fd < 0) {
      lg_error(&r.errs, "connect %s: %s", o->connect, strerror(-c->fd));
      break;
    }
    bn_set_nodelay(c->fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(r.ep, EPOLL_CTL_ADD, c->fd, &ev);
    bn_pattern_fill(o->seed + c->id, 0, c->out, r.size);
  }

  uint64_t start = bn_now_ns();
  r.stop_issuing_ns = o->duration_ns ? start + o->duration_ns : UINT64_MAX;
  r.last_done_ns = start;
  if (r.errs.count == 0)
    for (unsigned i = 0; i < nconns; i++)
      conn_start(&r, &conns[i]);

  struct epoll_event events[256];
  while (r.busy > 0 && bn_now_ns() < deadline) {
    int n = epoll_wait(r.ep, events, 256, bn_ms_until(deadline, 1000));
    for (int i = 0; i < n; i++) {
      pp_conn_t *c = events[i].data.ptr;
      if (c->fd < 0)
        continue;
      if (events[i].events & EPOLLOUT)
        if (conn_send(&r, c) < 0)
          continue;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(&r, c);
    }
  }
  if (r.busy > 0)
    lg_error(&r.errs, "timed out with %u round trips unanswered", r.busy);
  check_no_extra(&r, conns, opened);
  if (r.limit && r.done < r.limit && r.errs.count == 0)
    lg_error(&r.errs, "only %llu of %llu round trips", (unsigned long long)r.done,
             (unsigned long long)r.limit);

  double secs = (double)(r.last_done_ns - start) / 1e9;
  lg_json_begin("pingpong");
  lg_json_u64("conns", nconns);
  lg_json_u64("size", r.size);
  lg_json_u64("round_trips", r.done);
  lg_json_num("seconds", secs);
  lg_json_num("round_trips_per_sec", secs > 0 ? (double)r.done / secs : 0);
  lg_json_num("p50_us", (double)bn_hist_quantile(&r.hist, 0.50) / 1e3);
  lg_json_num("p99_us", (double)bn_hist_quantile(&r.hist, 0.99) / 1e3);
  lg_json_num("max_us", (double)r.hist.max_ns / 1e3);
  int rc = lg_json_errors(&r.errs);
  lg_json_end();

  for (unsigned i = 0; i < nconns; i++) {
    if (conns[i].fd >= 0)
      close(conns[i].fd);
    free(conns[i].out);
    free(conns[i].in);
  }
  free(conns);
  close(r.ep);
  return rc;
}
