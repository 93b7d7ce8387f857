/* bench/lg_connrate.c - `loadgen connrate`: connect, send S bytes, read the
 * same S bytes back, close; N such exchanges in flight at once. Reports
 * completed connections per second and p50/p99 of the whole exchange
 * (connect to verified reply).
 *
 * The client closes first, so its side keeps the TIME_WAIT; Linux reuses
 * those ports for loopback connects (net.ipv4.tcp_tw_reuse = 2, the
 * default), so long runs do not run out of ephemeral ports.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#define CR_DEFAULT_SIZE 32
#define CR_DEFAULT_COUNT 2000

typedef enum { CR_IDLE, CR_CONNECTING, CR_SENDING, CR_RECEIVING } cr_state_t;

typedef struct {
  int fd;
  cr_state_t state;
  uint64_t seq;       /* number of this slot's current exchange */
  uint64_t t_start;   /* when its connect started */
  size_t sent, got;
  unsigned char *out, *in;
} cr_slot_t;

typedef struct {
  const lg_opts_t *o;
  bn_addr_t addr;
  int ep;
  size_t size;
  uint64_t attempts, done, limit; /* limit 0: only the duration bounds the run */
  uint64_t stop_issuing_ns;
  uint64_t last_done_ns;
  unsigned busy;
  bn_hist_t hist;
  lg_errors_t errs;
} cr_run_t;

/* Closes s's connection and marks the slot idle. */
static void slot_end(cr_run_t *r, cr_slot_t *s) {
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  if (s->state != CR_IDLE)
    r->busy--;
  s->state = CR_IDLE;
}

/* Sets s's epoll interest to the one event its state waits for. */
static int slot_watch(cr_run_t *r, cr_slot_t *s, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.ptr = s};
  if (epoll_ctl(r->ep, op, s->fd, &ev) < 0) {
    lg_error(&r->errs, "epoll_ctl: %s", strerror(errno));
    slot_end(r, s);
    return -1;
  }
  return 0;
}

/* Starts exchanges on idle slot s until one is under way or the count or
 * duration is used up. A connect that fails at once (no ports left,
 * refused) counts as an attempt and an error, so a broken server ends the
 * run instead of spinning. */
static void slot_start(cr_run_t *r, cr_slot_t *s) {
  while ((!r->limit || r->attempts < r->limit) && bn_now_ns() < r->stop_issuing_ns) {
    s->seq = r->attempts++;
    s->t_start = bn_now_ns();
    s->sent = s->got = 0;
    s->fd = bn_connect_start(&r->addr);
    if (s->fd < 0) {
      lg_error(&r->errs, "connect %s: %s", r->o->connect, strerror(-s->fd));
      s->fd = -1;
      continue;
    }
    s->state = CR_CONNECTING;
    r->busy++;
    if (slot_watch(r, s, EPOLLOUT, EPOLL_CTL_ADD) == 0)
      return;
  }
}

/* Sends what the socket takes of s's message; moves on to receiving when
 * all of it is out. */
static void slot_send(cr_run_t *r, cr_slot_t *s) {
  while (s->sent < r->size) {
    ssize_t n = send(s->fd, s->out + s->sent, r->size - s->sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return;
      lg_error(&r->errs, "exchange %llu: send: %s", (unsigned long long)s->seq, strerror(errno));
      slot_end(r, s);
      slot_start(r, s);
      return;
    }
    s->sent += (size_t)n;
  }
  s->state = CR_RECEIVING;
  if (slot_watch(r, s, EPOLLIN, EPOLL_CTL_MOD) < 0)
    slot_start(r, s);
}

/* Reads s's reply; when complete, checks it, records the exchange, closes
 * and starts the next one. */
static void slot_read(cr_run_t *r, cr_slot_t *s) {
  ssize_t n = recv(s->fd, s->in + s->got, r->size - s->got, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    lg_error(&r->errs, "exchange %llu: %s after %zu of %zu bytes", (unsigned long long)s->seq,
             n < 0 ? strerror(errno) : "server closed", s->got, r->size);
    slot_end(r, s);
    slot_start(r, s);
    return;
  }
  s->got += (size_t)n;
  if (s->got < r->size)
    return;
  if (memcmp(s->in, s->out, r->size) != 0) {
    lg_error(&r->errs, "exchange %llu: reply differs from what was sent",
             (unsigned long long)s->seq);
  } else {
    uint64_t now = bn_now_ns();
    bn_hist_add(&r->hist, now - s->t_start);
    r->done++;
    r->last_done_ns = now;
  }
  slot_end(r, s);
  slot_start(r, s);
}

/* Handles one readiness event of slot s according to its state. */
static void slot_event(cr_run_t *r, cr_slot_t *s) {
  if (s->state == CR_CONNECTING) {
    int rc = bn_connect_result(s->fd);
    if (rc < 0) {
      lg_error(&r->errs, "connect %s: %s", r->o->connect, strerror(-rc));
      slot_end(r, s);
      slot_start(r, s);
      return;
    }
    bn_set_nodelay(s->fd);
    /* A fresh message per exchange: its number is in the pattern seed. */
    bn_pattern_fill(r->o->seed ^ (s->seq << 16), 0, s->out, r->size);
    s->state = CR_SENDING;
    slot_send(r, s);
  } else if (s->state == CR_SENDING) {
    slot_send(r, s);
  } else if (s->state == CR_RECEIVING) {
    slot_read(r, s);
  }
}

int lg_connrate(const lg_opts_t *o) {
  cr_run_t r = {.o = o, .size = o->size ? (size_t)o->size : CR_DEFAULT_SIZE};
  if (lg_addr(o->connect, "--connect", &r.addr) < 0)
    return 2;
  if (r.size == 0 || r.size > (1u << 20)) {
    fprintf(stderr, "loadgen: connrate --size must be 1..1M\n");
    return 2;
  }
  r.limit = o->count ? o->count : (o->duration_ns ? 0 : CR_DEFAULT_COUNT);
  uint64_t deadline = bn_now_ns() + o->timeout_ns;

  unsigned nslots = o->conns;
  cr_slot_t *slots = calloc(nslots, sizeof *slots);
  r.ep = epoll_create1(EPOLL_CLOEXEC);
  if (!slots || r.ep < 0) {
    fprintf(stderr, "loadgen: out of memory or descriptors\n");
    return 1;
  }
  for (unsigned i = 0; i < nslots; i++) {
    slots[i].fd = -1;
    slots[i].out = malloc(r.size);
    slots[i].in = malloc(r.size);
    if (!slots[i].out || !slots[i].in) {
      fprintf(stderr, "loadgen: out of memory\n");
      return 1;
    }
  }

  uint64_t start = bn_now_ns();
  r.stop_issuing_ns = o->duration_ns ? start + o->duration_ns : UINT64_MAX;
  r.last_done_ns = start;
  for (unsigned i = 0; i < nslots; i++)
    slot_start(&r, &slots[i]);

  struct epoll_event events[256];
  while (r.busy > 0 && bn_now_ns() < deadline) {
    int n = epoll_wait(r.ep, events, 256, bn_ms_until(deadline, 1000));
    for (int i = 0; i < n; i++)
      slot_event(&r, events[i].data.ptr);
  }
  if (r.busy > 0)
    lg_error(&r.errs, "timed out with %u exchanges unfinished", r.busy);
  if (r.limit && r.done < r.limit && r.errs.count == 0)
    lg_error(&r.errs, "only %llu of %llu exchanges", (unsigned long long)r.done,
             (unsigned long long)r.limit);

  double secs = (double)(r.last_done_ns - start) / 1e9;
  lg_json_begin("connrate");
  lg_json_u64("conns", nslots);
  lg_json_u64("size", r.size);
  lg_json_u64("connections", r.done);
  lg_json_u64("attempts", r.attempts);
  lg_json_num("seconds", secs);
  lg_json_num("connections_per_sec", secs > 0 ? (double)r.done / secs : 0);
  lg_json_num("p50_us", (double)bn_hist_quantile(&r.hist, 0.50) / 1e3);
  lg_json_num("p99_us", (double)bn_hist_quantile(&r.hist, 0.99) / 1e3);
  lg_json_num("max_us", (double)r.hist.max_ns / 1e3);
  int rc = lg_json_errors(&r.errs);
  lg_json_end();

  for (unsigned i = 0; i < nslots; i++) {
    if (slots[i].fd >= 0)
      close(slots[i].fd);
    free(slots[i].out);
    free(slots[i].in);
  }
  free(slots);
  close(r.ep);
  return rc;
}
