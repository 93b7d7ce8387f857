/* bench/lg_hold.c - `loadgen hold`: many idle clients, for measuring what a
 * server spends on each one.
 *
 * Connects --conns N clients (at most HOLD_INFLIGHT connects pending at a
 * time), sends each the --hello line if given ("%d" becomes its index),
 * and waits until every one has received at least one complete line (the
 * server's greeting: proof the server has set the client up). Then it
 * prints its one JSON line and holds every connection open, sending
 * nothing and reading (and dropping) whatever arrives, until standard
 * input reaches EOF or --duration passes. The driver reads the server's
 * memory while the clients are held, then closes loadgen's standard input.
 *
 * Exit 0 only when all N got in and the server closed none of them while
 * they were held (a late close is reported on stderr, after the JSON line).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#define HOLD_INFLIGHT 256 /* connects pending at once */
#define HOLD_STDIN_TAG ((void *)1)

typedef enum { H_IDLE, H_CONNECTING, H_WAITING, H_HELD, H_CLOSED } h_state_t;

typedef struct {
  int fd;
  unsigned id;
  h_state_t state;
} h_client_t;

/* Replaces each "%d" in templ by n and appends a newline, into out (at
 * most outlen bytes). Returns the length. */
static size_t hello_line(const char *templ, unsigned n, char *out, size_t outlen) {
  size_t len = 0;
  for (const char *p = templ; *p && len + 12 < outlen; p++) {
    if (p[0] == '%' && p[1] == 'd') {
      len += (size_t)snprintf(out + len, outlen - len, "%u", n);
      p++;
    } else {
      out[len++] = *p;
    }
  }
  out[len++] = '\n';
  return len;
}

/* Starts client c's connect and watches it for writability. */
static int start(int ep, const bn_addr_t *addr, h_client_t *c, lg_errors_t *errs) {
  int fd = bn_connect_start(addr);
  if (fd < 0) {
    lg_error(errs, "client %u: connect: %s", c->id, strerror(-fd));
    return -1;
  }
  c->fd = fd;
  c->state = H_CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}

/* Reads what arrived for c. Returns 1 if a newline was among it, 0 if not,
 * -1 when the server closed the connection or it failed. */
static int drain(h_client_t *c) {
  char buf[4096];
  int newline = 0;
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return newline;
    if (n <= 0)
      return -1;
    if (memchr(buf, '\n', (size_t)n))
      newline = 1;
  }
}

int lg_hold(const lg_opts_t *o) {
  bn_addr_t addr;
  if (lg_addr(o->connect, "--connect", &addr) < 0)
    return 2;
  unsigned n = o->conns;
  h_client_t *cl = calloc(n, sizeof *cl);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (!cl || ep < 0) {
    fprintf(stderr, "loadgen: out of memory or descriptors\n");
    return 1;
  }
  lg_errors_t errs = {0};
  uint64_t t0 = bn_now_ns(), deadline = t0 + o->timeout_ns;
  unsigned next = 0, pending = 0, ready = 0;
  for (unsigned i = 0; i < n; i++) {
    cl[i].fd = -1;
    cl[i].id = i;
  }
  struct epoll_event events[256];
  /* Phase 1: everyone in and greeted. */
  while (ready < n && errs.count == 0 && bn_now_ns() < deadline) {
    while (next < n && pending < HOLD_INFLIGHT && errs.count == 0)
      if (start(ep, &addr, &cl[next++], &errs) == 0)
        pending++;
    int k = epoll_wait(ep, events, 256, bn_ms_until(deadline, 100));
    for (int i = 0; i < k; i++) {
      h_client_t *c = events[i].data.ptr;
      if (c->state == H_CONNECTING) {
        int rc = bn_connect_result(c->fd);
        if (rc < 0) {
          lg_error(&errs, "client %u: connect: %s", c->id, strerror(-rc));
          continue;
        }
        pending--;
        if (o->hello) {
          char line[512];
          size_t len = hello_line(o->hello, c->id, line, sizeof line);
          if (send(c->fd, line, len, MSG_NOSIGNAL) != (ssize_t)len)
            lg_error(&errs, "client %u: sending hello failed", c->id);
        }
        c->state = H_WAITING;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
      } else if (c->state == H_WAITING || c->state == H_HELD) {
        int r = drain(c);
        if (r < 0) {
          lg_error(&errs, "client %u: the server closed the connection", c->id);
          c->state = H_CLOSED;
        } else if (r > 0 && c->state == H_WAITING) {
          c->state = H_HELD;
          ready++;
        }
      }
    }
  }
  if (ready < n && errs.count == 0)
    lg_error(&errs, "timed out with %u of %u clients in", ready, n);
  uint64_t held_ns = bn_now_ns();
  lg_json_begin("hold");
  lg_json_u64("conns", n);
  lg_json_u64("held", ready);
  lg_json_num("seconds_to_hold", (double)(held_ns - t0) / 1e9);
  lg_json_u64("held_ns", held_ns);
  int rc = lg_json_errors(&errs);
  lg_json_end();
  fflush(stdout);

  /* Phase 2: hold until stdin ends or the duration passes. */
  if (rc == 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = HOLD_STDIN_TAG};
    int watch_stdin = epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) == 0;
    uint64_t until = o->duration_ns ? held_ns + o->duration_ns : deadline;
    if (until > deadline)
      until = deadline;
    int done = 0;
    while (!done && bn_now_ns() < until) {
      int k = epoll_wait(ep, events, 256, bn_ms_until(until, 100));
      for (int i = 0; i < k; i++) {
        h_client_t *c = events[i].data.ptr;
        if (events[i].data.ptr == HOLD_STDIN_TAG) {
          char buf[256];
          if (read(STDIN_FILENO, buf, sizeof buf) <= 0)
            done = 1;
        } else if (c->state == H_HELD && drain(c) < 0) {
          fprintf(stderr, "loadgen: hold: client %u: the server closed the connection\n", c->id);
          c->state = H_CLOSED;
          rc = 1;
        }
      }
      if (!watch_stdin && !o->duration_ns)
        done = 1;
    }
  }
  for (unsigned i = 0; i < n; i++)
    if (cl[i].fd >= 0)
      close(cl[i].fd);
  close(ep);
  free(cl);
  return rc;
}
