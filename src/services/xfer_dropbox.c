/* xfer_dropbox.c - the hub's file drop box: `sockit receive --keep-open
 * --yes --rename` as a service.
 *
 * It runs on its own thread, not on the event loop: a transfer writes to
 * disk, fsyncs and hashes, which would stall every other service of a
 * loop. The thread runs an sk_tserver with one handler slot, so senders are
 * served in turn (the next waits in the listen backlog) and the server's
 * idle timeout and stop reach the transfer's reads and writes. The loop it
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
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "services/xfer_int.h"

struct svc_dropbox {
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

/* One sender, start to end. */
static void serve_sender(svc_dropbox_t *d, sk_stream_t *conn) {
  if (mkdir(d->dir, 0777) < 0 && errno != EEXIST) {
    logf_(d, "cannot make %s: %s", d->dir, strerror(errno));
    return;
  }
  int dirfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    logf_(d, "cannot open %s: %s", d->dir, strerror(errno));
    return;
  }
  xfer_conn_t c = {.fd = sk_stream_fd(conn), .stream = conn, .cancel_fd = -1,
                   .idle_ms = d->o.idle_ms};
  sk_sockaddr_format(sk_stream_peer(conn), c.peer, sizeof c.peer);
  xfer_recv_opts_t ro = {.dirfd = dirfd, .dir_name = d->dir, .existing = XFER_RENAME,
                         .max_files = d->o.max_files, .max_total = d->o.max_total};
  xfer_ui_t ui = {.ctx = d, .warn = on_warn};
  xfer_stats_t st;
  char err[SK_ERRLEN * 2], h[32];
  if (d->o.tls) {
    c.stream = NULL;
    c.cancel_fd = d->stop_timer;
    int r = sk_tls_new(&c.tls, d->o.tls, c.fd, NULL);
    if (r == 0)
      r = xfer_tls_handshake(&c, 1, d->o.tls_timeout_ms, err, sizeof err);
    else
      snprintf(err, sizeof err, "%s", sk_strerror(r));
    if (r < 0) {
      logf_(d, "%s: tls: %s", c.peer, err);
      sk_tls_free(c.tls);
      close(dirfd);
      return;
    }
  }
  int rc = xfer_receive(&c, &ro, &ui, &st, err, sizeof err);
  xfer_tls_end(&c);
  close(dirfd);
  double secs = (double)(st.ended_ms - st.started_ms) / 1000.0;
  if (rc == 0 && !d->o.verbose)
    return;
  if (rc == 0 || rc == XFER_EFILES)
    logf_(d, "%s: %u file%s, %s into %s: %u stored, %u identical, %u failed, %u resumed in %.3f s",
          c.peer, st.files, st.files == 1 ? "" : "s", xfer_human(st.bytes, h, sizeof h), d->dir,
          st.stored, st.identical, st.failed, st.resumed, secs);
  else
    logf_(d, "%s: %s", c.peer, err);
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
  sk_tserver_opts_t to = {.handle = handle,
                          .ctx = d,
                          .max_threads = 1, /* senders take turns */
                          .idle_timeout_ms = o->idle_ms ? o->idle_ms : XFER_IDLE_MS_DEFAULT,
                          .grace_ms = o->grace_ms};
  int r = sk_tserver_new(&d->ts, ep, so, &to, err, errlen);
  if (r < 0) {
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
  if (d->done_fd >= 0)
    close(d->done_fd);
  if (d->stop_timer >= 0)
    close(d->stop_timer);
  free(d->dir);
  free(d);
}
