/* resolve.c - name lookups that do not block an event loop.
 *
 * getaddrinfo has no non-blocking form, and an unanswering DNS server can
 * hold it for the resolver's timeout times its attempts (10 s with glibc's
 * defaults). sk_net_addresses_async runs it on a detached thread and hands
 * the result to the loop through an eventfd. A job has two owners, the
 * thread until it has written the eventfd and the loop until it has
 * delivered or cancelled; whichever lets go last frees it (and closes the
 * eventfd), so neither side ever touches freed memory or a closed fd, and
 * a cancelled lookup never touches a loop that may be gone. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/net.h"

struct sk_resolve {
  sk_loop_t *loop;
  sk_endpoint_t ep;
  sk_io_t io;
  int efd;
  atomic_int owners; /* 2: the thread and the loop; the last to let go frees */
  atomic_int ready;  /* the result is written (set before the eventfd is) */
  int delivered;     /* done is being or was called: cancel does nothing */
  sk_resolve_cb done;
  void *data;
  int n; /* addresses, or a negative errno */
  sk_sockaddr_t addrs[SK_RESOLVE_MAX];
  char err[SK_ERRLEN];
};

static void job_free(sk_resolve_t *r) {
  close(r->efd);
  free(r);
}

static void job_let_go(sk_resolve_t *r) {
  if (atomic_fetch_sub_explicit(&r->owners, 1, memory_order_acq_rel) == 1)
    job_free(r);
}

/* The loop's side: the lookup is over; tell the caller, then free. */
static void job_ready(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  sk_resolve_t *r = io->data;
  uint64_t v;
  (void)ev;
  if ((read(r->efd, &v, sizeof v) < 0 && errno == EAGAIN) ||
      !atomic_load_explicit(&r->ready, memory_order_acquire))
    return; /* not yet */
  sk_io_stop(loop, io);
  r->delivered = 1; /* done may cancel r: a no-op from here on */
  r->done(r->data, r->n, r->n > 0 ? r->addrs : NULL, r->n > 0 ? "" : r->err);
  job_let_go(r);
}

/* The lookup, on the helper thread (or the caller's, with nothing to look
 * up): the result, then the eventfd, then the thread lets go. */
static void *job_run(void *arg) {
  sk_resolve_t *r = arg;
  r->n = sk_net_addresses(&r->ep, r->addrs, SK_RESOLVE_MAX, r->err, sizeof r->err);
  atomic_store_explicit(&r->ready, 1, memory_order_release);
  uint64_t one = 1;
  ssize_t w = write(r->efd, &one, sizeof one);
  (void)w; /* an eventfd write of 1 cannot fail short of overflow */
  job_let_go(r);
  return NULL;
}

sk_resolve_t *sk_net_addresses_async(sk_loop_t *loop, const sk_endpoint_t *ep,
                                     sk_resolve_cb done, void *data) {
  sk_resolve_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->loop = loop;
  r->ep = *ep;
  r->done = done;
  r->data = data;
  atomic_init(&r->owners, 2);
  atomic_init(&r->ready, 0);
  r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->efd < 0) {
    free(r);
    return NULL;
  }
  r->io.cb = job_ready;
  r->io.data = r;
  if (sk_io_start(loop, &r->io, r->efd, SK_READABLE) < 0) {
    job_free(r);
    return NULL;
  }
  /* Nothing to look up: answered at once, delivered on the next round. */
  int numeric = ep->kind != SK_EP_TCP && ep->kind != SK_EP_UDP;
  if (!numeric) {
    unsigned char buf[sizeof(struct in6_addr)];
    numeric = !ep->host[0] || inet_pton(AF_INET, ep->host, buf) == 1 ||
              inet_pton(AF_INET6, ep->host, buf) == 1;
  }
  if (numeric) {
    job_run(r);
    return r;
  }
  pthread_attr_t attr;
  pthread_t t;
  int rc = pthread_attr_init(&attr);
  if (rc == 0) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, job_run, r);
    pthread_attr_destroy(&attr);
  }
  if (rc != 0) {
    sk_io_stop(loop, &r->io);
    job_free(r);
    return NULL;
  }
  return r;
}

void sk_net_addresses_cancel(sk_resolve_t *r) {
  if (!r || r->delivered)
    return;
  sk_io_stop(r->loop, &r->io);
  job_let_go(r); /* a lookup still running frees the job when it ends */
}
