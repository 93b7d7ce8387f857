/* tserver.c - the blocking, thread-per-connection server. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/tserver.h"

struct sk_tserver {
  sk_listener_t l;
  sk_tserver_opts_t o;
  int stop_fd; /* eventfd, written once at stop and never drained */
  atomic_int stopping;
  atomic_ullong cancel_at; /* monotonic ms after which I/O is cancelled; 0 = not yet */
  pthread_mutex_t lock;
  pthread_cond_t changed; /* a thread ended */
  unsigned threads;
};

struct sk_stream {
  sk_tserver_t *srv;
  int fd;
  sk_sockaddr_t peer;
};

/* Waits for events on c's fd, also woken by stop. Returns 0 when ready,
 * SK_ETIMEDOUT, -ECANCELED, or a negative errno. */
static int wait_ready(sk_stream_t *c, short events, uint64_t timeout_ms) {
  sk_tserver_t *s = c->srv;
  uint64_t deadline = timeout_ms ? sk__now_ms() + timeout_ms : 0;
  for (;;) {
    uint64_t now = sk__now_ms();
    uint64_t cancel = atomic_load(&s->cancel_at);
    if (cancel && now >= cancel)
      return -ECANCELED;
    long wait = -1;
    if (deadline) {
      if (now >= deadline)
        return SK_ETIMEDOUT;
      wait = (long)(deadline - now);
    }
    if (cancel && (wait < 0 || (uint64_t)wait > cancel - now))
      wait = (long)(cancel - now);
    struct pollfd p[2] = {{.fd = c->fd, .events = events}, {.fd = s->stop_fd, .events = POLLIN}};
    /* Once stopping, the stop fd stays readable: only watch the socket. */
    int n = poll(p, cancel ? 1 : 2, (int)wait);
    if (n < 0 && errno != EINTR)
      return sk__neg_errno();
    if (n > 0 && p[0].revents)
      return 0;
  }
}

ssize_t sk_stream_read(sk_stream_t *c, void *buf, size_t len) {
  for (;;) {
    ssize_t n = sk_net_read(c->fd, buf, len);
    if (n != SK_EAGAIN)
      return n;
    int r = wait_ready(c, POLLIN, c->srv->o.idle_timeout_ms);
    if (r < 0)
      return r;
  }
}

int sk_stream_write(sk_stream_t *c, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = sk_net_send(c->fd, p, len);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n != SK_EAGAIN)
      return (int)n;
    int r = wait_ready(c, POLLOUT, 0);
    if (r < 0)
      return r;
  }
  return 0;
}

const sk_sockaddr_t *sk_stream_peer(const sk_stream_t *c) { return &c->peer; }
int sk_stream_fd(const sk_stream_t *c) { return c->fd; }

static void *conn_main(void *arg) {
  sk_stream_t *c = arg;
  sk_tserver_t *s = c->srv;
  s->o.handle(c, s->o.ctx);
  close(c->fd);
  free(c);
  pthread_mutex_lock(&s->lock);
  s->threads--;
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

int sk_tserver_new(sk_tserver_t **out, const sk_endpoint_t *ep, const sk_sockopts_t *so,
                   const sk_tserver_opts_t *o, char *err, size_t errlen) {
  if (sk_endpoint_socktype(ep) == SOCK_DGRAM || ep->kind == SK_EP_STDIO)
    return sk_err_set(-EINVAL, err, errlen, "the blocking server needs a stream endpoint");
  sk_tserver_t *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->o = *o;
  if (!s->o.max_threads)
    s->o.max_threads = SK_TSERVER_MAX_THREADS;
  if (!s->o.grace_ms)
    s->o.grace_ms = 2000;
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->changed, NULL);
  s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int r = s->stop_fd < 0 ? sk__neg_errno() : sk_listener_open(&s->l, ep, so, err, errlen);
  if (r < 0) {
    if (s->stop_fd >= 0)
      close(s->stop_fd);
    free(s);
    return r;
  }
  *out = s;
  return 0;
}

const sk_listener_t *sk_tserver_listener(const sk_tserver_t *s) { return &s->l; }

unsigned sk_tserver_threads(const sk_tserver_t *s) {
  pthread_mutex_lock((pthread_mutex_t *)&s->lock);
  unsigned n = s->threads;
  pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
  return n;
}

void sk_tserver_stop(sk_tserver_t *s) {
  unsigned long long none = 0;
  atomic_compare_exchange_strong(&s->cancel_at, &none, sk__now_ms() + s->o.grace_ms);
  atomic_store(&s->stopping, 1);
  uint64_t one = 1;
  ssize_t r = write(s->stop_fd, &one, sizeof one);
  (void)r;
}

/* Waits until fewer than max threads run or stop; 1 if a slot is free. */
static int wait_for_slot(sk_tserver_t *s) {
  pthread_mutex_lock(&s->lock);
  while (s->threads >= s->o.max_threads && !atomic_load(&s->stopping)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L; /* re-check stop: a signal handler cannot signal a condvar */
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->changed, &s->lock, &ts);
  }
  int ok = !atomic_load(&s->stopping);
  pthread_mutex_unlock(&s->lock);
  return ok;
}

int sk_tserver_run(sk_tserver_t *s) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = 0;
  while (wait_for_slot(s)) {
    struct pollfd p[2] = {{.fd = s->l.fd, .events = POLLIN}, {.fd = s->stop_fd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      rc = sk__neg_errno();
      break;
    }
    if (p[1].revents)
      break;
    sk_sockaddr_t peer;
    int shed, fd = sk_net_accept_or_shed(s->l.fd, &peer, &shed);
    if (fd == SK_EAGAIN)
      continue;
    if (fd < 0)
      continue;
    if (s->o.verify && !s->o.verify(s->o.ctx, &peer)) {
      close(fd);
      continue;
    }
    sk_stream_t *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->srv = s;
    c->fd = fd;
    c->peer = peer;
    pthread_mutex_lock(&s->lock);
    s->threads++;
    pthread_mutex_unlock(&s->lock);
    pthread_t t;
    if (pthread_create(&t, &attr, conn_main, c) != 0) {
      pthread_mutex_lock(&s->lock);
      s->threads--;
      pthread_mutex_unlock(&s->lock);
      close(fd);
      free(c);
    }
  }
  pthread_attr_destroy(&attr);
  /* Stopping: no more accepts; handlers get the grace period, then their
   * blocked I/O is cancelled, and we wait for the last to end. */
  sk_listener_close(&s->l);
  sk_tserver_stop(s); /* also when accepting failed: handlers must end */
  pthread_mutex_lock(&s->lock);
  while (s->threads > 0)
    pthread_cond_wait(&s->changed, &s->lock);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

void sk_tserver_free(sk_tserver_t *s) {
  if (!s)
    return;
  sk_listener_close(&s->l);
  close(s->stop_fd);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->changed);
  free(s);
}
