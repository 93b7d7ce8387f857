/* xfer_dropbox.c - the hub's file drop box: `sockit receive --keep-open
 * --yes --rename` as a service; and the guard every drop box (this one and
 * `receive --keep-open`) puts over its senders.
 *
 * It runs on its own threads, not on the event loop: a transfer writes to
 * disk, fsyncs and hashes, which would stall every other service of a
 * loop. An sk_tserver runs one handler thread per sender, up to
 * max_sessions at once (more wait in the listen backlog), at most
 * max_per_addr of them from one IP address (more are told so and closed);
 * the server's idle timeout and stop reach the transfer's reads and writes.
 * Senders do not see each other's files (xfer_recv_opts_t.shared). The
 * guard's watchdog ends a session that moves too little (min_rate over a
 * window) while the receiver waits on it. The loop it
 * is attached to holds one eventfd watcher, only so that it keeps running
 * until the drop box has finished; the thread signals it when done.
 *
 * A tls:// drop box runs each sender's handshake and transfer through a
 * TLS session on the handler thread. The tserver's stream helpers cannot
 * carry TLS, so there the engine waits on the socket itself: the idle
 * timeout is the engine's own, and the stop reaches it through a timerfd
 * armed at stop for the grace period, the engine's cancel fd. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received (glibc's lacks it) */
#include <netinet/in.h>

#include <openssl/crypto.h>

#include "services/xfer_int.h"

/* ---- the guard ------------------------------------------------------------------------- */

struct xfer_watch {
  xfer_watch_t *next;
  int fd;
  atomic_int paused, touched, ended;
  atomic_ullong moved;            /* content bytes, from the engine's progress */
  uint64_t window_start, base;    /* the watchdog's: this window, and the count at its start */
  char reason[160];               /* set before ended */
};

typedef struct {
  sk_sockaddr_t addr;
  unsigned n;
} addr_count_t;

struct xfer_guard {
  xfer_limits_t lim;
  pthread_mutex_t lock;
  xfer_watch_t *watches;
  addr_count_t *addrs; /* max_sessions of them */
  unsigned naddrs, sessions;
  int wake; /* eventfd: stop the watchdog */
  pthread_t thread;
};

/* The IP address of a, ports aside (an IPv4-mapped IPv6 address gives its
 * IPv4 one), with its length in *len; NULL for a unix peer (not counted
 * per address). */
static const unsigned char *ip_bytes(const sk_sockaddr_t *a, size_t *len) {
  if (a->ss.ss_family == AF_INET) {
    *len = 4;
    return (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
  }
  if (a->ss.ss_family == AF_INET6) {
    const unsigned char *b = (const unsigned char *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    *len = memcmp(b, mapped, 12) == 0 ? 4 : 16;
    return *len == 4 ? b + 12 : b;
  }
  *len = 0;
  return NULL;
}

/* The count of peer's address, or NULL when it has none. Lock held. */
static addr_count_t *find_addr(xfer_guard_t *g, const sk_sockaddr_t *peer) {
  size_t la, lb;
  const unsigned char *a = ip_bytes(peer, &la);
  for (unsigned i = 0; a && i < g->naddrs; i++) {
    const unsigned char *b = ip_bytes(&g->addrs[i].addr, &lb);
    if (la == lb && memcmp(a, b, la) == 0)
      return &g->addrs[i];
  }
  return NULL;
}

/* Bytes received on fd: the kernel's count for TCP, else 0. */
static uint64_t tcp_received(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  memset(&ti, 0, sizeof ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
      len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
    return 0;
  return ti.tcpi_bytes_received;
}

/* One look at every session: a window that ended with fewer than
 * min_rate * window bytes ends its session. Called with the lock held. */
static void check_sessions(xfer_guard_t *g, uint64_t now) {
  uint64_t w = g->lim.rate_window_ms;
  for (xfer_watch_t *x = g->watches; x; x = x->next) {
    if (atomic_load(&x->ended))
      continue;
    uint64_t moved = atomic_load(&x->moved), tcp = tcp_received(x->fd);
    uint64_t bytes = tcp > moved ? tcp : moved;
    if (atomic_exchange(&x->touched, 0) || atomic_load(&x->paused) || x->window_start == 0) {
      x->window_start = now;
      x->base = bytes;
      continue;
    }
    if (now - x->window_start < w)
      continue;
    uint64_t need = g->lim.min_rate * w / 1000;
    if (bytes - x->base >= need) {
      x->window_start = now;
      x->base = bytes;
      continue;
    }
    char h1[32], h2[32];
    snprintf(x->reason, sizeof x->reason,
             "ended: %s moved in %.1f s, under the minimum of %s (--min-rate %llu bytes/s)",
             xfer_human(bytes - x->base, h1, sizeof h1), (double)w / 1000.0,
             xfer_human(need, h2, sizeof h2), (unsigned long long)g->lim.min_rate);
    atomic_store(&x->ended, 1);
    shutdown(x->fd, SHUT_RDWR); /* every read and write of the session now fails */
  }
}

/* The watchdog thread: checks the sessions a few times a window. */
static void *watchdog(void *arg) {
  xfer_guard_t *g = arg;
  uint64_t tick = g->lim.rate_window_ms / 8;
  if (tick < 50)
    tick = 50;
  if (tick > 1000)
    tick = 1000;
  for (;;) {
    struct pollfd p = {.fd = g->wake, .events = POLLIN};
    int n = poll(&p, 1, (int)tick);
    if (n > 0)
      break;
    pthread_mutex_lock(&g->lock);
    check_sessions(g, xfer_now_ms());
    pthread_mutex_unlock(&g->lock);
  }
  return NULL;
}

int xfer_guard_new(xfer_guard_t **out, const xfer_limits_t *lim, char *err, size_t errlen) {
  xfer_guard_t *g = calloc(1, sizeof *g);
  if (!g)
    return xfer_fail(-ENOMEM, err, errlen, "out of memory");
  if (lim)
    g->lim = *lim;
  if (!g->lim.max_sessions)
    g->lim.max_sessions = XFER_MAX_SESSIONS_DEFAULT;
  if (!g->lim.max_per_addr)
    g->lim.max_per_addr = XFER_MAX_PER_ADDR_DEFAULT;
  if (!g->lim.min_rate)
    g->lim.min_rate = XFER_MIN_RATE_DEFAULT;
  if (!g->lim.rate_window_ms)
    g->lim.rate_window_ms = XFER_RATE_WINDOW_MS_DEFAULT;
  pthread_mutex_init(&g->lock, NULL);
  g->addrs = calloc(g->lim.max_sessions, sizeof *g->addrs);
  g->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int r = !g->addrs ? -ENOMEM : g->wake < 0 ? -errno : -pthread_create(&g->thread, NULL, watchdog, g);
  if (r < 0) {
    if (g->wake >= 0)
      close(g->wake);
    free(g->addrs);
    pthread_mutex_destroy(&g->lock);
    free(g);
    return xfer_fail(r, err, errlen, "drop box guard: %s", strerror(-r));
  }
  *out = g;
  return 0;
}

void xfer_guard_free(xfer_guard_t *g) {
  if (!g)
    return;
  uint64_t one = 1;
  ssize_t n = write(g->wake, &one, sizeof one);
  (void)n;
  pthread_join(g->thread, NULL);
  close(g->wake);
  free(g->addrs);
  pthread_mutex_destroy(&g->lock);
  free(g);
}

const xfer_limits_t *xfer_guard_limits(const xfer_guard_t *g) { return &g->lim; }

unsigned xfer_guard_sessions(xfer_guard_t *g) {
  pthread_mutex_lock(&g->lock);
  unsigned n = g->sessions;
  pthread_mutex_unlock(&g->lock);
  return n;
}

int xfer_guard_enter(xfer_guard_t *g, const sk_sockaddr_t *peer, xfer_conn_t *c) {
  xfer_watch_t *x = NULL;
  if (c && !(x = calloc(1, sizeof *x)))
    return -ENOMEM;
  size_t len;
  int counted = ip_bytes(peer, &len) != NULL, rc = 0;
  pthread_mutex_lock(&g->lock);
  addr_count_t *a = counted ? find_addr(g, peer) : NULL;
  if (g->sessions >= g->lim.max_sessions)
    rc = -EAGAIN;
  else if (a && a->n >= g->lim.max_per_addr)
    rc = -EBUSY;
  else if (counted && !a) {
    a = &g->addrs[g->naddrs++]; /* naddrs <= sessions < max_sessions */
    a->addr = *peer;
    a->n = 0;
  }
  if (rc == 0) {
    g->sessions++;
    if (a)
      a->n++;
    if (x) {
      x->fd = c->fd;
      x->next = g->watches;
      g->watches = x;
      c->watch = x;
    }
  }
  pthread_mutex_unlock(&g->lock);
  if (rc < 0)
    free(x);
  return rc;
}

void xfer_guard_leave(xfer_guard_t *g, const sk_sockaddr_t *peer, xfer_conn_t *c) {
  pthread_mutex_lock(&g->lock);
  addr_count_t *a = find_addr(g, peer);
  if (a && --a->n == 0)
    *a = g->addrs[--g->naddrs];
  g->sessions--;
  if (c && c->watch) {
    for (xfer_watch_t **p = &g->watches; *p; p = &(*p)->next)
      if (*p == c->watch) {
        *p = c->watch->next;
        break;
      }
    free(c->watch);
    c->watch = NULL;
  }
  pthread_mutex_unlock(&g->lock);
}

void xfer_watch_progress(xfer_conn_t *c, uint64_t moved) {
  if (c->watch)
    atomic_store(&c->watch->moved, moved);
}

const char *xfer_watch_reason(const xfer_conn_t *c) {
  return c->watch && atomic_load(&c->watch->ended) ? c->watch->reason : NULL;
}

void xwatch_pause(xfer_conn_t *c, int paused) {
  if (c->watch) {
    atomic_store(&c->watch->paused, paused);
    if (!paused)
      atomic_store(&c->watch->touched, 1); /* a new window from now */
  }
}

void xwatch_touch(xfer_conn_t *c) {
  if (c->watch)
    atomic_store(&c->watch->touched, 1);
}

/* ---- the hub's drop box ------------------------------------------------------------------- */

struct svc_dropbox {
  xfer_guard_t *guard;
  sk_tserver_t *ts;
  svc_dropbox_opts_t o;
  char *dir;
  pthread_t thread;
  int started;
  int done_fd; /* eventfd: the thread has ended */
  int stop_timer; /* timerfd, readable from stop + grace on: cancels TLS transfers */
  atomic_int stopped;
  sk_loop_t *loop;
  sk_io_t io;
};

static void logf_(svc_dropbox_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line to the log callback, if there is one. */
static void logf_(svc_dropbox_t *d, const char *fmt, ...) {
  if (!d->o.log)
    return;
  char line[SK_ERRLEN * 3];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  d->o.log(d->o.log_ctx, line);
}

static void on_warn(void *ctx, const char *msg) { logf_(ctx, "%s", msg); }

/* The engine's progress: only what the watchdog counts. */
typedef struct {
  svc_dropbox_t *d;
  xfer_conn_t *c;
} session_t;

static void on_progress(void *ctx, const xfer_progress_t *p) {
  session_t *s = ctx;
  xfer_watch_progress(s->c, p->moved);
}

static void on_warn_s(void *ctx, const char *msg) { on_warn(((session_t *)ctx)->d, msg); }

void xfer_refuse_busy(const xfer_guard_t *g, int fd) {
  char text[160];
  snprintf(text, sizeof text, "busy: %u transfers from your address already; try again later",
           g->lim.max_per_addr);
  unsigned char buf[16 + sizeof text];
  sk_xfer_msg_t m = {.type = SK_XFER_HELLO};
  m.u.hello.version = SK_XFER_VERSION;
  m.u.hello.role = SK_XFER_ROLE_RECEIVER;
  long a = sk_xfer_encode(&m, buf, sizeof buf);
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_ERROR;
  m.u.error.code = SK_XFER_ERR_LIMIT;
  m.u.error.text = text;
  m.u.error.text_len = strlen(text);
  long b = a > 0 ? sk_xfer_encode(&m, buf + a, sizeof buf - (size_t)a) : -1;
  if (b > 0 && send(fd, buf, (size_t)(a + b), MSG_NOSIGNAL | MSG_DONTWAIT) == a + b)
    shutdown(fd, SHUT_WR);
  /* What the sender sent already, read out so the close is not a reset. */
  char scrap[4096];
  for (int i = 0; i < 16 && recv(fd, scrap, sizeof scrap, MSG_DONTWAIT) > 0; i++)
    continue;
}

/* One admitted sender on c, start to end: the TLS handshake (tls://),
 * the transfer into dirfd, and its log line. */
static void run_session(svc_dropbox_t *d, xfer_conn_t *c, int dirfd) {
  xfer_recv_opts_t ro = {.dirfd = dirfd, .dir_name = d->dir, .existing = XFER_RENAME,
                         .max_files = d->o.max_files, .max_total = d->o.max_total, .shared = 1};
  session_t sess = {d, c};
  xfer_ui_t ui = {.ctx = &sess, .warn = on_warn_s, .progress = on_progress};
  xfer_stats_t st;
  char err[SK_ERRLEN * 2], h[32];
  if (d->o.tls) {
    c->stream = NULL;
    c->cancel_fd = d->stop_timer;
    int r = sk_tls_new(&c->tls, d->o.tls, c->fd, NULL);
    if (r == 0)
      r = xfer_tls_handshake(c, 1, d->o.tls_timeout_ms, err, sizeof err);
    else
      snprintf(err, sizeof err, "%s", sk_strerror(r));
    if (r < 0) {
      const char *ended = xfer_watch_reason(c);
      logf_(d, "%s: tls: %s", c->peer, ended ? ended : err);
      sk_tls_free(c->tls);
      c->tls = NULL;
      return;
    }
  }
  int rc = xfer_receive(c, &ro, &ui, &st, err, sizeof err);
  xfer_tls_end(c);
  double secs = (double)(st.ended_ms - st.started_ms) / 1000.0;
  const char *ended = xfer_watch_reason(c);
  if (rc == 0 && !d->o.verbose)
    return;
  if (rc == 0 || rc == XFER_EFILES)
    logf_(d, "%s: %u file%s, %s into %s: %u stored, %u identical, %u failed, %u resumed in %.3f s",
          c->peer, st.files, st.files == 1 ? "" : "s", xfer_human(st.bytes, h, sizeof h), d->dir,
          st.stored, st.identical, st.failed, st.resumed, secs);
  else
    logf_(d, "%s: %s", c->peer, ended ? ended : err);
}

/* One sender, start to end: admitted by the guard (or told it is one too
 * many from its address), served, and let go. */
static void serve_sender(svc_dropbox_t *d, sk_stream_t *conn) {
  xfer_conn_t c = {.fd = sk_stream_fd(conn), .stream = conn, .cancel_fd = -1,
                   .idle_ms = d->o.idle_ms};
  sk_sockaddr_format(sk_stream_peer(conn), c.peer, sizeof c.peer);
  int r = xfer_guard_enter(d->guard, sk_stream_peer(conn), &c);
  if (r == -EBUSY) {
    logf_(d, "%s: refused: %u transfers from this address already (--max-per-address)", c.peer,
          xfer_guard_limits(d->guard)->max_per_addr);
    if (!d->o.tls)
      xfer_refuse_busy(d->guard, c.fd);
  } else if (r < 0)
    logf_(d, "%s: refused: %s", c.peer, strerror(-r));
  if (r < 0)
    return;
  if (mkdir(d->dir, 0777) < 0 && errno != EEXIST) {
    logf_(d, "cannot make %s: %s", d->dir, strerror(errno));
  } else {
    int dirfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
      logf_(d, "cannot open %s: %s", d->dir, strerror(errno));
    } else {
      run_session(d, &c, dirfd);
      close(dirfd);
    }
  }
  xfer_guard_leave(d->guard, sk_stream_peer(conn), &c);
}

/* The tserver's handler thread. Its OpenSSL state (the per-thread random
 * generators a handshake makes, the error queue) is freed here, before
 * the tserver counts the thread as gone: left to the thread's exit, it
 * could race with the process's own exit and OpenSSL's cleanup. */
static void handle(sk_stream_t *conn, void *ctx) {
  serve_sender(ctx, conn);
  OPENSSL_thread_stop();
}

int svc_dropbox_new(svc_dropbox_t **out, const sk_endpoint_t *ep, const sk_sockopts_t *so,
                    const svc_dropbox_opts_t *o, char *err, size_t errlen) {
  if (sk_endpoint_socktype(ep) != SOCK_STREAM)
    return xfer_fail(-EINVAL, err, errlen, "xfer needs a stream endpoint (tcp or unix)");
  svc_dropbox_t *d = calloc(1, sizeof *d);
  if (!d)
    return xfer_fail(-ENOMEM, err, errlen, "out of memory");
  d->o = *o;
  d->done_fd = -1;
  d->stop_timer = -1;
  if (o->tls && (d->stop_timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0) {
    int e = -errno;
    free(d);
    return xfer_fail(e, err, errlen, "timerfd: %s", strerror(-e));
  }
  d->dir = strdup(o->dir && o->dir[0] ? o->dir : SVC_DROPBOX_DIR);
  if (!d->dir) {
    if (d->stop_timer >= 0)
      close(d->stop_timer);
    free(d);
    return xfer_fail(-ENOMEM, err, errlen, "out of memory");
  }
  d->o.dir = d->dir;
  int r = xfer_guard_new(&d->guard, o->limits, err, errlen);
  sk_tserver_opts_t to = {.handle = handle,
                          .ctx = d,
                          .idle_timeout_ms = o->idle_ms ? o->idle_ms : XFER_IDLE_MS_DEFAULT,
                          .grace_ms = o->grace_ms};
  if (r == 0) {
    to.max_threads = xfer_guard_limits(d->guard)->max_sessions; /* more wait in the backlog */
    r = sk_tserver_new(&d->ts, ep, so, &to, err, errlen);
  }
  if (r < 0) {
    xfer_guard_free(d->guard);
    if (d->stop_timer >= 0)
      close(d->stop_timer);
    free(d->dir);
    free(d);
    return r;
  }
  *out = d;
  return 0;
}

const sk_listener_t *svc_dropbox_listener(const svc_dropbox_t *d) {
  return sk_tserver_listener(d->ts);
}

/* The drop box thread: serves senders until stopped, then tells the loop. */
static void *dropbox_main(void *arg) {
  svc_dropbox_t *d = arg;
  int r = sk_tserver_run(d->ts);
  if (r < 0)
    logf_(d, "stopped: %s", sk_strerror(r));
  uint64_t one = 1;
  ssize_t n = write(d->done_fd, &one, sizeof one);
  (void)n;
  return NULL;
}

/* The thread has ended: join it and let the loop go. */
static void on_done(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  svc_dropbox_t *d = io->data;
  (void)events;
  uint64_t v;
  ssize_t n = read(d->done_fd, &v, sizeof v);
  (void)n;
  pthread_join(d->thread, NULL);
  d->started = 0;
  sk_io_stop(loop, io);
}

int svc_dropbox_attach(svc_dropbox_t *d, sk_loop_t *loop) {
  if (d->loop)
    return -EALREADY;
  d->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (d->done_fd < 0)
    return -errno;
  d->io.cb = on_done;
  d->io.data = d;
  int r = sk_io_start(loop, &d->io, d->done_fd, SK_READABLE);
  if (r < 0)
    return r;
  r = pthread_create(&d->thread, NULL, dropbox_main, d);
  if (r != 0) {
    sk_io_stop(loop, &d->io);
    return -r;
  }
  d->loop = loop;
  d->started = 1;
  return 0;
}

void svc_dropbox_stop(svc_dropbox_t *d) {
  sk_tserver_stop(d->ts);
  /* TLS transfers: cancelled when the grace period ends, like the
   * tserver's own I/O. Armed once: a second stop must not push it back. */
  if (d->stop_timer >= 0 && atomic_exchange(&d->stopped, 1) == 0) {
    uint64_t ms = d->o.grace_ms ? d->o.grace_ms : 2000;
    struct itimerspec when = {.it_value = {.tv_sec = (time_t)(ms / 1000),
                                           .tv_nsec = (long)(ms % 1000) * 1000000L + 1}};
    timerfd_settime(d->stop_timer, 0, &when, NULL);
  }
}

void svc_dropbox_free(svc_dropbox_t *d) {
  if (!d)
    return;
  if (d->started) { /* the loop ended some other way: end the thread here */
    sk_tserver_stop(d->ts);
    pthread_join(d->thread, NULL);
  }
  sk_tserver_free(d->ts);
  xfer_guard_free(d->guard);
  if (d->done_fd >= 0)
    close(d->done_fd);
  if (d->stop_timer >= 0)
    close(d->stop_timer);
  free(d->dir);
  free(d);
}
