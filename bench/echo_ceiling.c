/* bench/echo_ceiling.c - the ceiling reference: a minimal single-threaded
 * epoll echo server.
 *
 *   echo_ceiling [--listen HOST:PORT] [--lifetime SECS]
 *
 * Listens on HOST:PORT (default 127.0.0.1:0), prints the bound port on a
 * line of its own on stdout, and echoes every byte back to its sender until
 * SIGINT/SIGTERM or until --lifetime has passed. When a client closes its
 * write half the server flushes what it owes and closes the connection.
 *
 * It does the least an echo server can do (one read, one write, no copies
 * beyond the kernel's, level-triggered epoll), so the benchmarks can show
 * how far any server is from what this machine allows. It holds at most
 * ECHO_BUF bytes per client: while a client does not read its echo, the
 * server stops reading from it (backpressure, bounded memory).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

#define ECHO_BUF (64 * 1024)
#define ACCEPTS_PER_WAKEUP 64
#define MAX_EVENTS 256

typedef struct echo_conn {
  int fd;
  size_t len, off;   /* pending echo is buf[off, len) */
  struct echo_conn *prev, *next; /* all open connections, freed at exit */
  unsigned char buf[ECHO_BUF];
} echo_conn_t;

static echo_conn_t *all_conns;

static volatile sig_atomic_t stop_requested;

/* Signal handler: asks the loop to end at its next wakeup. */
static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* Closes and frees c. Called only from c's own event, and epoll reports
 * each fd at most once per wait, so no later event in the batch uses c. */
static void conn_close(echo_conn_t *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    all_conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  close(c->fd);
  free(c);
}

/* Points epoll interest for c at what it needs next: writability while an
 * echo is pending, readability otherwise. Returns 0 or -1. */
static int conn_rearm(int ep, echo_conn_t *c) {
  struct epoll_event ev = {.events = c->off < c->len ? EPOLLOUT : EPOLLIN, .data.ptr = c};
  return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes the pending echo of c. Returns 0 when all of it is written,
 * 1 when the socket is full, -1 when the connection is broken. */
static int conn_flush(echo_conn_t *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN ? 1 : -1;
    }
    c->off += (size_t)n;
  }
  c->off = c->len = 0;
  return 0;
}

/* Handles one readiness event for c: finish the pending echo, or read once
 * and echo what was read. A client's EOF is seen only once it is owed
 * nothing (reads stop while an echo is pending), so EOF means close. */
static void conn_event(int ep, echo_conn_t *c, uint32_t events) {
  (void)events; /* errors and hang-ups show up as failed reads and writes */
  if (c->off < c->len) {
    if (conn_flush(c) < 0) {
      conn_close(c);
      return;
    }
  } else {
    ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (n <= 0) {
      /* EOF with nothing owed (a pending echo would have stopped reads). */
      conn_close(c);
      return;
    }
    c->len = (size_t)n;
    c->off = 0;
    if (conn_flush(c) < 0) {
      conn_close(c);
      return;
    }
  }
  if (conn_rearm(ep, c) < 0)
    conn_close(c);
}

/* Accepts up to ACCEPTS_PER_WAKEUP pending connections on lfd. */
static void accept_some(int ep, int lfd) {
  for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE)
        fprintf(stderr, "echo_ceiling: accept: %s\n", strerror(errno));
      return; /* EAGAIN, or an aborted connection: try again next wakeup */
    }
    bn_set_nodelay(fd);
    echo_conn_t *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->len = c->off = 0;
    c->prev = NULL;
    c->next = all_conns;
    if (all_conns)
      all_conns->prev = c;
    all_conns = c;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
      conn_close(c);
  }
}

/* Prints usage to stderr and returns the usage exit code. */
static int usage(void) {
  fprintf(stderr, "usage: echo_ceiling [--listen HOST:PORT] [--lifetime SECS]\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *listen_text = "127.0.0.1:0";
  uint64_t lifetime_ns = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
      listen_text = argv[++i];
    } else if (strcmp(argv[i], "--lifetime") == 0 && i + 1 < argc) {
      if (bn_parse_seconds(argv[++i], &lifetime_ns) < 0)
        return usage();
    } else {
      return usage();
    }
  }

  char err[BN_ERRLEN];
  bn_addr_t addr;
  if (bn_addr_parse(listen_text, &addr, err, sizeof err) < 0) {
    fprintf(stderr, "echo_ceiling: %s\n", err);
    return 2;
  }
  int lfd = bn_listen(&addr, 4096, err, sizeof err);
  if (lfd < 0) {
    fprintf(stderr, "echo_ceiling: %s %s\n", listen_text, err);
    return 1;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop; /* no SA_RESTART: epoll_wait must return EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
    fprintf(stderr, "echo_ceiling: epoll: %s\n", strerror(errno));
    return 1;
  }

  printf("%d\n", bn_local_port(lfd));
  fflush(stdout);

  uint64_t deadline = lifetime_ns ? bn_now_ns() + lifetime_ns : UINT64_MAX;
  struct epoll_event events[MAX_EVENTS];
  while (!stop_requested && bn_now_ns() < deadline) {
    int n = epoll_wait(ep, events, MAX_EVENTS, bn_ms_until(deadline, 1000));
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == NULL)
        accept_some(ep, lfd);
      else
        conn_event(ep, events[i].data.ptr, events[i].events);
    }
  }
  while (all_conns)
    conn_close(all_conns);
  close(lfd);
  close(ep);
  return 0;
}
