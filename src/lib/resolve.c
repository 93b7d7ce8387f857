/* resolve.c - name lookups that do not block an event loop.
 *
 * getaddrinfo has no non-blocking form, and an unanswering DNS server can
 * hold it for the resolver's timeout times its attempts (10 s with glibc's
 * defaults). sk_net_addresses_async runs it on a detached thread and hands
 * the result to the loop through an eventfd. Ownership of a job passes by
 * one atomic exchange: whichever side comes second (the thread finishing,
 * or the loop cancelling or delivering) frees it, so a cancelled lookup
 * never touches a loop that may be gone. */
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

enum { JOB_RUNNING, JOB_FINISHED, JOB_CANCELLED };

struct sk_resolve {
  sk_loop_t *loop;
  sk_endpoint_t ep;
  sk_io_t io;
  int efd;
  atomic_int state;
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

/* The loop's side: the lookup is over; tell the caller, then free. */
static void job_ready(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  sk_resolve_t *r = io->data;
  uint64_t v;
  (void)ev;
  if (read(r->efd, &v, sizeof v) < 0 && errno == EAGAIN)
    return; /* not yet */
  sk_io_stop(loop, io);
  r->done(r->data, r->n, r->n > 0 ? r->addrs : NULL, r->n > 0 ? "" : r->err);
  job_free(r);
}

/* Ends the job's run: the caller is told through the eventfd, unless it
 * cancelled meanwhile (then nobody waits: free here). */
static void job_finish(sk_resolve_t *r) {
  if (atomic_exchange(&r->state, JOB_FINISHED) == JOB_CANCELLED) {
    job_free(r);
    return;
  }
  uint64_t one = 1;
  ssize_t w = write(r->efd, &one, sizeof one);
  (void)w; /* an eventfd write of 1 cannot fail short of overflow */
}

static void *job_run(void *arg) {
  sk_resolve_t *r = arg;
  r->n = sk_net_addresses(&r->ep, r->addrs, SK_RESOLVE_MAX, r->err, sizeof r->err);
  job_finish(r);
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
  atomic_init(&r->state, JOB_RUNNING);
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
  if (!r)
    return;
  sk_io_stop(r->loop, &r->io);
  if (atomic_exchange(&r->state, JOB_CANCELLED) == JOB_FINISHED)
    job_free(r); /* the thread is done with it */
}
