/* relay.c - stream and UDP relays: accept, connect to a target without
 * blocking the loop (round-robin, failover), then bridge both ways.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/bridge.h"
#include "sockit/relay.h"
#include "sockit/tls.h"

#define MAX_ADDRS 8 /* resolved addresses kept per target */
#define ACCEPTS_PER_WAKEUP 64
#define DGRAMS_PER_WAKEUP 64
#define UDP_BUCKETS 1024 /* hash buckets for UDP sessions (and their sources), per worker */
#define FD_RETRY_MS 100  /* clients waiting for a descriptor try again this often */

typedef struct instance instance_t;

typedef struct {
  sk_endpoint_t ep;
  char name[SK_ENDPOINT_STRLEN];
  sk_sockaddr_t addrs[MAX_ADDRS];
  int naddrs;
  _Atomic uint64_t down_until; /* monotonic ms; 0 = up */
} target_t;

/* ---- stream sessions ---------------------------------------------------------- */

typedef struct session session_t;
struct session {
  instance_t *inst;
  unsigned long id;
  int cfd, tfd;
  sk_sockaddr_t peer;
  int target, addr_i;
  unsigned tried; /* bit per target tried for this client */
  sk_io_t connect_io;
  sk_timer_t connect_timer;
  sk_bridge_t *br;
  sk_tls_t *ctls, *ttls; /* TLS toward the client / the target, if any */
  sk_tls_hs_t *hs;       /* a handshake under way */
  uint64_t started;
  session_t *prev, *next;
  /* Waiting for a descriptor to connect with (the process is out of them):
   * since when, and the wait queue, oldest first. */
  int parked;
  uint64_t parked_at;
  session_t *wprev, *wnext;
};

/* ---- udp sessions ---------------------------------------------------------------- */

typedef struct usess usess_t;
typedef struct usrc usrc_t;

/* A client address (IPv6: its /64) and its sessions, for the per-source cap. */
struct usrc {
  sk_sockaddr_t key;
  unsigned hash;
  unsigned long n;
  usess_t *head, *tail; /* its sessions, most recently used first */
  usrc_t *hnext;        /* bucket chain */
};

struct usess {
  instance_t *inst;
  sk_sockaddr_t client;
  unsigned hash;
  int ufd, target;
  int answered; /* the target has replied at least once */
  sk_io_t io;
  uint64_t last, started, up, down;
  usess_t *hnext;        /* bucket chain */
  usess_t *prev, *next;  /* in->lru[answered], most recently used first */
  usrc_t *src;
  usess_t *sprev, *snext; /* src's sessions */
};

struct instance {
  sk_relay_t *r;
  sk_loop_t *loop;
  int lfd, own_lfd;
  sk_io_t lio;
  int wake_fd;
  sk_io_t wake_io;
  sk_timer_t grace, sweep;
  int stopping, done, paused;
  session_t *sessions;
  unsigned long nsessions;
  session_t *waiting, *waiting_tail; /* parked sessions, oldest first */
  unsigned long nwaiting;
  sk_timer_t fd_retry;
  /* UDP sessions in two least-recently-used lists: [0] never answered by
   * the target, [1] answered; head = most recent. */
  usess_t *lru[2], *lru_tail[2];
  usess_t **buckets;
  usrc_t **src_buckets;
  char *dgram_buf;
  uint64_t last_error_log;
  instance_t *next;
};

struct sk_relay {
  sk_relay_opts_t o;
  sk_sockopts_t so;
  sk_listener_t l;
  int udp;
  target_t targets[SK_RELAY_MAX_TARGETS];
  int ntargets;
  atomic_uint rr;
  atomic_ulong next_id;
  atomic_int stopping;
  instance_t *instances;
  _Atomic uint64_t st_total, st_active, st_up, st_down, st_fail, st_none, st_evicted;
};

static void instance_maybe_finish(instance_t *in);

static void report(instance_t *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(instance_t *in, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sk__report_limited(&in->last_error_log, sk_loop_now(in->loop), in->r->o.on_error,
                     in->r->o.ctx, fmt, ap);
  va_end(ap);
}

static uint64_t retry_ms(const sk_relay_t *r) { return r->o.retry_ms ? r->o.retry_ms : SK_RELAY_RETRY_MS; }

static void mark_down(instance_t *in, int t) {
  sk_relay_t *r = in->r;
  atomic_store(&r->targets[t].down_until, sk_loop_now(in->loop) + retry_ms(r));
  atomic_fetch_add(&r->st_fail, 1);
}

/* The next target to try: round-robin over those up and not yet tried for
 * this client. Returns its index or -1. */
static int pick_target(instance_t *in, unsigned tried) {
  sk_relay_t *r = in->r;
  unsigned start = atomic_fetch_add(&r->rr, 1);
  uint64_t now = sk_loop_now(in->loop);
  for (int k = 0; k < r->ntargets; k++) {
    int t = (int)((start + (unsigned)k) % (unsigned)r->ntargets);
    if (tried & (1u << t))
      continue;
    if (atomic_load(&r->targets[t].down_until) > now)
      continue;
    return t;
  }
  return -1;
}

static void log_line(instance_t *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(instance_t *in, const char *fmt, ...) {
  sk_relay_t *r = in->r;
  if (!r->o.on_log)
    return;
  char line[SK_ERRLEN * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  r->o.on_log(r->o.ctx, line);
}

/* ---- stream sessions ------------------------------------------------------------- */

/* Errors that say the process (or the system) is short of descriptors or
 * socket memory: our shortage, never the target's fault. */
static int short_of_fds(int err) {
  return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

static void pause_accepting(instance_t *in) {
  if (!in->paused) {
    in->paused = 1;
    sk_io_set(in->loop, &in->lio, 0);
  }
}

static void resume_accepting(instance_t *in) {
  if (in->paused && !in->stopping && in->nwaiting == 0) {
    in->paused = 0;
    sk_io_set(in->loop, &in->lio, SK_READABLE);
  }
}

static void free_later(sk_loop_t *loop, void *p) {
  (void)loop;
  free(p);
}

/* Frees p after this round: it may be the object whose callback runs now. */
static void defer_free(sk_loop_t *loop, void *p) {
  if (sk_loop_defer(loop, free_later, p) < 0)
    free(p); /* cannot defer: nothing touches p after its callback returns */
}

static void unpark(session_t *s) {
  instance_t *in = s->inst;
  if (!s->parked)
    return;
  s->parked = 0;
  if (s->wprev)
    s->wprev->wnext = s->wnext;
  else
    in->waiting = s->wnext;
  if (s->wnext)
    s->wnext->wprev = s->wprev;
  else
    in->waiting_tail = s->wprev;
  s->wprev = s->wnext = NULL;
  in->nwaiting--;
}

/* The process has no descriptor to connect s with: s waits (its client
 * stays connected), accepting pauses so that no more clients come in to
 * wait, and s tries again when a session ends or every FD_RETRY_MS.
 * front: s was at the head of the queue and keeps its place. */
static void park(session_t *s, int err, int front) {
  instance_t *in = s->inst;
  if (!front)
    s->parked_at = sk_loop_now(in->loop);
  s->parked = 1;
  if (front) {
    s->wnext = in->waiting;
    if (in->waiting)
      in->waiting->wprev = s;
    else
      in->waiting_tail = s;
    in->waiting = s;
  } else {
    s->wprev = in->waiting_tail;
    if (in->waiting_tail)
      in->waiting_tail->wnext = s;
    else
      in->waiting = s;
    in->waiting_tail = s;
  }
  in->nwaiting++;
  pause_accepting(in);
  if (!sk_timer_active(&in->fd_retry))
    sk_timer_start(in->loop, &in->fd_retry, FD_RETRY_MS, 0);
  if (!front)
    report(in, "connect: %s; clients wait (and accepting pauses) until descriptors are free",
           sk_strerror(err));
}

/* Ends s: closes what it holds and frees it (after this round). */
static void session_free(session_t *s) {
  instance_t *in = s->inst;
  unpark(s);
  sk_tls_handshake_cancel(s->hs);
  if (!s->br) { /* else the bridge owns them */
    sk_tls_free(s->ctls);
    sk_tls_free(s->ttls);
  }
  sk_io_stop(in->loop, &s->connect_io);
  sk_timer_stop(in->loop, &s->connect_timer);
  if (s->br)
    sk_bridge_free(s->br); /* closes both fds */
  else {
    if (s->cfd >= 0)
      close(s->cfd);
    if (s->tfd >= 0)
      close(s->tfd);
  }
  if (s->prev)
    s->prev->next = s->next;
  else
    in->sessions = s->next;
  if (s->next)
    s->next->prev = s->prev;
  in->nsessions--;
  atomic_fetch_sub(&in->r->st_active, 1);
  defer_free(in->loop, s);
  /* Descriptors were freed: a waiting client goes first, on the next round. */
  if (in->nwaiting && !in->stopping)
    sk_timer_start(in->loop, &in->fd_retry, 0, 0);
  resume_accepting(in);
  instance_maybe_finish(in);
}

static void session_tap(void *data, char from, uint64_t offset, const void *p, size_t n) {
  session_t *s = data;
  sk_relay_t *r = s->inst->r;
  r->o.tap(r->o.ctx, s->id, from == 'a' ? '>' : '<', offset, p, n);
}

static void session_done(sk_bridge_t *br, const sk_bridge_end_t *end, void *data) {
  session_t *s = data;
  instance_t *in = s->inst;
  sk_relay_t *r = in->r;
  uint64_t up = 0, down = 0;
  sk_bridge_counts(br, &up, &down);
  atomic_fetch_add(&r->st_up, up);
  atomic_fetch_add(&r->st_down, down);
  char peer[SK_ENDPOINT_STRLEN], why[96] = "";
  if (end->err == SK_ETIMEDOUT)
    snprintf(why, sizeof why, " (idle timeout)");
  else if (end->err < 0)
    snprintf(why, sizeof why, " (%s %s: %s)", end->op, end->side == 'a' ? "client" : "target",
             sk_strerror(end->err));
  log_line(in, "#%lu %s -> %s up=%llu down=%llu bytes %.3f s%s", s->id,
           sk_sockaddr_format(&s->peer, peer, sizeof peer), r->targets[s->target].name,
           (unsigned long long)up, (unsigned long long)down,
           (double)(sk_loop_now(in->loop) - s->started) / 1000.0, why);
  session_free(s);
}

static void try_connect(session_t *s);

static void connected(session_t *s) {
  instance_t *in = s->inst;
  sk_relay_t *r = in->r;
  sk_io_stop(in->loop, &s->connect_io);
  sk_timer_stop(in->loop, &s->connect_timer);
  sk_net_apply(s->tfd, sk_endpoint_socktype(&r->targets[s->target].ep),
               r->targets[s->target].addrs[s->addr_i].ss.ss_family, &r->so);
  sk_bridge_side_t a = {.rfd = s->cfd, .wfd = s->cfd, .close_fds = 1, .tls = s->ctls};
  sk_bridge_side_t b = {.rfd = s->tfd, .wfd = s->tfd, .close_fds = 1, .tls = s->ttls};
  sk_bridge_opts_t bo = {.limit = r->o.buffer,
                         .idle_timeout_ms = r->o.idle_timeout_ms,
                         .splice = 1,
                         .reset = 1,
                         .tap = r->o.tap ? session_tap : NULL,
                         .tap_data = s};
  int rc = sk_bridge_start(&s->br, in->loop, &a, &b, &bo, session_done, s);
  if (rc < 0) {
    report(in, "session: %s", sk_strerror(rc));
    session_free(s);
    return;
  }
  s->cfd = s->tfd = -1; /* the bridge owns them now */
}

/* This address failed: the next address of the target, else the next target. */
static void connect_failed(session_t *s, int err) {
  instance_t *in = s->inst;
  sk_relay_t *r = in->r;
  sk_io_stop(in->loop, &s->connect_io);
  sk_timer_stop(in->loop, &s->connect_timer);
  sk_tls_free(s->ttls);
  s->ttls = NULL;
  close(s->tfd);
  s->tfd = -1;
  if (short_of_fds(err)) { /* ours, not the target's: try it again later */
    s->tried &= ~(1u << s->target);
    s->target = -1;
    park(s, err, 0);
    return;
  }
  if (s->addr_i + 1 < r->targets[s->target].naddrs) {
    s->addr_i++;
  } else {
    report(in, "connect %s: %s; trying it again in %llu ms", r->targets[s->target].name,
           sk_strerror(err), (unsigned long long)retry_ms(r));
    mark_down(in, s->target);
    s->target = -1;
  }
  try_connect(s);
}

static uint64_t tls_timeout(const sk_relay_t *r) {
  return r->o.tls_timeout_ms ? r->o.tls_timeout_ms : SK_TLS_HANDSHAKE_TIMEOUT_MS;
}

/* The TLS handshake with a tls:// target ended. */
static void target_tls_done(void *data, int err, const char *msg) {
  session_t *s = data;
  instance_t *in = s->inst;
  s->hs = NULL;
  if (err == 0) {
    connected(s);
    return;
  }
  report(in, "tls %s: %s", in->r->targets[s->target].name, msg);
  sk_tls_free(s->ttls);
  s->ttls = NULL;
  /* A target whose certificate is wrong is no better than one that is down. */
  s->addr_i = in->r->targets[s->target].naddrs - 1;
  connect_failed(s, -EPROTO);
}

static void on_connect_ready(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  session_t *s = io->data;
  sk_relay_t *r = s->inst->r;
  (void)ev;
  int rc = sk_net_connect_finish(s->tfd);
  if (rc != 0) {
    connect_failed(s, rc);
    return;
  }
  target_t *t = &r->targets[s->target];
  if (!(t->ep.flags & SK_EP_TLS)) {
    connected(s);
    return;
  }
  sk_io_stop(loop, &s->connect_io);
  sk_timer_stop(loop, &s->connect_timer);
  if (!r->o.tls_client || sk_tls_new(&s->ttls, r->o.tls_client, s->tfd, t->ep.host) < 0 ||
      !(s->hs = sk_tls_handshake_async(loop, s->ttls, s->tfd, tls_timeout(r), target_tls_done,
                                       s))) {
    report(s->inst, "tls %s: cannot start TLS", t->name);
    session_free(s);
  }
}

static void on_connect_timeout(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  connect_failed(t->data, -ETIMEDOUT);
}

/* Starts connecting s to the current target address, choosing a target
 * first if needed; closes the client when no target is left. */
static void try_connect(session_t *s) {
  instance_t *in = s->inst;
  sk_relay_t *r = in->r;
  for (;;) {
    if (s->target < 0) {
      s->target = pick_target(in, s->tried);
      s->addr_i = 0;
      if (s->target < 0) {
        char peer[SK_ENDPOINT_STRLEN];
        atomic_fetch_add(&r->st_none, 1);
        log_line(in, "#%lu %s: no target available (all down or refusing); client closed",
                 s->id, sk_sockaddr_format(&s->peer, peer, sizeof peer));
        s->target = 0;
        session_free(s);
        return;
      }
      s->tried |= 1u << s->target;
    }
    target_t *t = &r->targets[s->target];
    int fd = sk_net_connect_start(&t->addrs[s->addr_i],
                                  sk_endpoint_socktype(&t->ep) == SOCK_SEQPACKET ? SOCK_SEQPACKET
                                                                                 : SOCK_STREAM,
                                  &r->so);
    if (fd >= 0) {
      s->tfd = fd;
      s->connect_io.cb = on_connect_ready;
      s->connect_io.data = s;
      sk_io_start(in->loop, &s->connect_io, fd, SK_WRITABLE);
      sk_timer_start(in->loop, &s->connect_timer,
                     r->o.connect_timeout_ms ? r->o.connect_timeout_ms
                                             : SK_RELAY_CONNECT_TIMEOUT_MS,
                     0);
      return;
    }
    if (short_of_fds(fd)) {
      s->tried &= ~(1u << s->target);
      s->target = -1;
      park(s, fd, 0);
      return;
    }
    if (s->addr_i + 1 < t->naddrs) {
      s->addr_i++;
      continue;
    }
    report(in, "connect %s: %s; trying it again in %llu ms", t->name, sk_strerror(fd),
           (unsigned long long)retry_ms(r));
    mark_down(in, s->target);
    s->target = -1;
  }
}

/* The TLS handshake with a client of a tls:// listener ended. */
static void client_tls_done(void *data, int err, const char *msg) {
  session_t *s = data;
  s->hs = NULL;
  if (err == 0) {
    try_connect(s);
    return;
  }
  char peer[SK_ENDPOINT_STRLEN];
  log_line(s->inst, "#%lu %s: tls: %s; client closed", s->id,
           sk_sockaddr_format(&s->peer, peer, sizeof peer), msg);
  session_free(s);
}

/* Terminates TLS with the client before connecting to a target; the
 * handshake runs on the loop, so a stalled client holds up nobody. */
static void client_tls_start(session_t *s) {
  sk_relay_t *r = s->inst->r;
  if (sk_tls_new(&s->ctls, r->o.tls_server, s->cfd, NULL) < 0 ||
      !(s->hs = sk_tls_handshake_async(s->inst->loop, s->ctls, s->cfd, tls_timeout(r),
                                       client_tls_done, s))) {
    report(s->inst, "tls: cannot start TLS for a client");
    session_free(s);
  }
}

/* Clients waiting for a descriptor: those that waited longer than the
 * connect timeout are closed; the others try again, oldest first, until
 * one finds the process still short. Accepting resumes once none waits. */
static void on_fd_retry(sk_loop_t *loop, sk_timer_t *t) {
  instance_t *in = t->data;
  sk_relay_t *r = in->r;
  uint64_t now = sk_loop_now(loop);
  uint64_t limit = r->o.connect_timeout_ms ? r->o.connect_timeout_ms : SK_RELAY_CONNECT_TIMEOUT_MS;
  while (in->waiting && now - in->waiting->parked_at >= limit) {
    session_t *s = in->waiting;
    char peer[SK_ENDPOINT_STRLEN];
    log_line(in, "#%lu %s: no descriptor free for a connection to a target in %llu ms; client "
                 "closed", s->id, sk_sockaddr_format(&s->peer, peer, sizeof peer),
             (unsigned long long)limit);
    session_free(s);
  }
  while (in->waiting) {
    session_t *s = in->waiting;
    uint64_t since = s->parked_at;
    unpark(s);
    try_connect(s);
    if (s->parked) {
      /* Still short: it went to the back; put it back in front. */
      unpark(s);
      s->parked_at = since;
      park(s, 0, 1);
      break;
    }
  }
  if (in->waiting)
    sk_timer_start(loop, &in->fd_retry, FD_RETRY_MS, 0);
  resume_accepting(in);
}

static void on_accept(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  instance_t *in = io->data;
  sk_relay_t *r = in->r;
  (void)ev;
  (void)io;
  for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
    if ((r->o.max_conns && in->nsessions >= r->o.max_conns) || in->nwaiting) {
      pause_accepting(in);
      return;
    }
    sk_sockaddr_t peer;
    int shed, fd = sk_net_accept_or_shed(in->lfd, &peer, &shed);
    if (shed)
      report(in, "accept: %s; closing new connections until descriptors are free",
             sk_strerror(shed));
    if (fd == SK_EAGAIN)
      return;
    if (fd < 0) {
      report(in, "accept: %s", sk_strerror(fd));
      return;
    }
    if (r->o.verify && !r->o.verify(r->o.ctx, &peer)) {
      close(fd);
      continue;
    }
    session_t *s = calloc(1, sizeof *s);
    if (!s) {
      close(fd);
      report(in, "out of memory: connection dropped");
      continue;
    }
    s->inst = in;
    s->id = atomic_fetch_add(&r->next_id, 1) + 1;
    s->cfd = fd;
    s->tfd = -1;
    s->peer = peer;
    s->target = -1;
    s->started = sk_loop_now(loop);
    sk_timer_init(&s->connect_timer, on_connect_timeout, s);
    s->next = in->sessions;
    if (in->sessions)
      in->sessions->prev = s;
    in->sessions = s;
    in->nsessions++;
    atomic_fetch_add(&r->st_total, 1);
    atomic_fetch_add(&r->st_active, 1);
    if (r->o.tls_server)
      client_tls_start(s);
    else
      try_connect(s);
  }
}

/* ---- udp sessions -------------------------------------------------------------------- */

static unsigned addr_hash(const sk_sockaddr_t *a) {
  const unsigned char *p = (const unsigned char *)&a->ss;
  unsigned h = 2166136261u; /* FNV-1a */
  for (socklen_t i = 0; i < a->len; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static int addr_equal(const sk_sockaddr_t *a, const sk_sockaddr_t *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* ---- udp: recency lists and sources ---- */

static void lru_unlink(instance_t *in, usess_t *u) {
  int l = u->answered;
  if (u->prev)
    u->prev->next = u->next;
  else
    in->lru[l] = u->next;
  if (u->next)
    u->next->prev = u->prev;
  else
    in->lru_tail[l] = u->prev;
  u->prev = u->next = NULL;
}

static void lru_push(instance_t *in, usess_t *u) {
  int l = u->answered;
  u->next = in->lru[l];
  if (in->lru[l])
    in->lru[l]->prev = u;
  else
    in->lru_tail[l] = u;
  in->lru[l] = u;
}

static void src_unlink(usess_t *u) {
  usrc_t *src = u->src;
  if (u->sprev)
    u->sprev->snext = u->snext;
  else
    src->head = u->snext;
  if (u->snext)
    u->snext->sprev = u->sprev;
  else
    src->tail = u->sprev;
  u->sprev = u->snext = NULL;
}

static void src_push(usess_t *u) {
  usrc_t *src = u->src;
  u->snext = src->head;
  if (src->head)
    src->head->sprev = u;
  else
    src->tail = u;
  src->head = u;
}

/* u was just used (a datagram either way): it becomes the most recent. */
static void usess_touch(usess_t *u, uint64_t now) {
  instance_t *in = u->inst;
  u->last = now;
  lru_unlink(in, u);
  lru_push(in, u);
  src_unlink(u);
  src_push(u);
}

/* What the per-source cap counts by: the address without the port; for
 * IPv6 its /64 (one subscriber's usual share), except IPv4-mapped ones. */
static void source_key(const sk_sockaddr_t *a, sk_sockaddr_t *key) {
  memset(key, 0, sizeof *key);
  key->ss.ss_family = a->ss.ss_family;
  if (a->ss.ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->ss;
    ((struct sockaddr_in *)&key->ss)->sin_addr = v4->sin_addr;
    key->len = sizeof(struct sockaddr_in);
  } else if (a->ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a->ss;
    struct in6_addr *k = &((struct sockaddr_in6 *)&key->ss)->sin6_addr;
    memcpy(k, &v6->sin6_addr, IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) ? 16 : 8);
    key->len = sizeof(struct sockaddr_in6);
  } else {
    *key = *a;
  }
}

/* The source record of client's address, or NULL; with create, made when
 * missing (NULL only when out of memory). */
static usrc_t *source_of(instance_t *in, const sk_sockaddr_t *client, int create) {
  sk_sockaddr_t key;
  source_key(client, &key);
  unsigned h = addr_hash(&key);
  usrc_t *src = in->src_buckets[h % UDP_BUCKETS];
  while (src && !addr_equal(&src->key, &key))
    src = src->hnext;
  if (src || !create)
    return src;
  if (!(src = calloc(1, sizeof *src)))
    return NULL;
  src->key = key;
  src->hash = h;
  src->hnext = in->src_buckets[h % UDP_BUCKETS];
  in->src_buckets[h % UDP_BUCKETS] = src;
  return src;
}

static void source_release(instance_t *in, usrc_t *src) {
  if (--src->n > 0)
    return;
  usrc_t **pp = &in->src_buckets[src->hash % UDP_BUCKETS];
  while (*pp != src)
    pp = &(*pp)->hnext;
  *pp = src->hnext;
  free(src);
}

/* The session to give up for a new one: the least recently used of those
 * the target never answered (a flood of new source ports rarely gets
 * answers), else the least recently used of all. */
static usess_t *table_victim(instance_t *in) {
  return in->lru_tail[0] ? in->lru_tail[0] : in->lru_tail[1];
}

static usess_t *source_victim(usrc_t *src) {
  for (usess_t *u = src->tail; u; u = u->sprev)
    if (!u->answered)
      return u;
  return src->tail;
}

/* ---- udp sessions ---- */

/* Ends u. why goes into its log line; NULL: no line (evictions, which a
 * flood makes by the thousand, are counted and reported once a second). */
static void usess_free(usess_t *u, const char *why) {
  instance_t *in = u->inst;
  sk_relay_t *r = in->r;
  usess_t **pp = &in->buckets[u->hash % UDP_BUCKETS];
  while (*pp != u)
    pp = &(*pp)->hnext;
  *pp = u->hnext;
  lru_unlink(in, u);
  src_unlink(u);
  source_release(in, u->src);
  in->nsessions--;
  atomic_fetch_sub(&r->st_active, 1);
  atomic_fetch_add(&r->st_up, u->up);
  atomic_fetch_add(&r->st_down, u->down);
  char peer[SK_ENDPOINT_STRLEN];
  if (why)
    log_line(in, "udp %s -> %s up=%llu down=%llu bytes %.3f s (%s)",
             sk_sockaddr_format(&u->client, peer, sizeof peer), r->targets[u->target].name,
             (unsigned long long)u->up, (unsigned long long)u->down,
             (double)(sk_loop_now(in->loop) - u->started) / 1000.0, why);
  sk_io_stop(in->loop, &u->io);
  close(u->ufd);
  defer_free(in->loop, u);
  instance_maybe_finish(in);
}

static void usess_evict(usess_t *u, const char *why) {
  instance_t *in = u->inst;
  atomic_fetch_add(&in->r->st_evicted, 1);
  report(in, "udp: %s: least recently used sessions evicted", why);
  usess_free(u, NULL);
}

/* Replies from the target go back to the client this session stands for. */
static void on_upstream(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  usess_t *u = io->data;
  instance_t *in = u->inst;
  (void)ev;
  for (int i = 0; i < DGRAMS_PER_WAKEUP; i++) {
    ssize_t n = recv(u->ufd, in->dgram_buf, SK_MSG_MAX, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == ECONNREFUSED) {
        mark_down(in, u->target);
        usess_free(u, "target refused");
      }
      return;
    }
    if (!u->answered) {
      lru_unlink(in, u);
      u->answered = 1;
      lru_push(in, u);
    }
    usess_touch(u, sk_loop_now(loop));
    u->down += (uint64_t)n;
    if (in->r->o.tap)
      in->r->o.tap(in->r->o.ctx, 0, '<', u->down - (uint64_t)n, in->dgram_buf, (size_t)n);
    sendto(in->lfd, in->dgram_buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
           (struct sockaddr *)&u->client.ss, u->client.len);
  }
}

/* An upstream socket to a target for a new session. Returns its fd and
 * target in *t, or -1 (datagram dropped). When the process is out of
 * descriptors, one least recently used session makes room: a shortage of
 * ours never marks a target down. */
static int upstream_open(instance_t *in, int *t) {
  sk_relay_t *r = in->r;
  unsigned tried = 0;
  int evicted = 0;
  for (;;) {
    if ((*t = pick_target(in, tried)) < 0) {
      atomic_fetch_add(&r->st_none, 1);
      report(in, "udp: no target available: datagram dropped");
      return -1;
    }
    int fd = sk_net_connect_start(&r->targets[*t].addrs[0], SOCK_DGRAM, &r->so);
    if (fd >= 0)
      return fd;
    if (short_of_fds(fd)) {
      if (evicted || !table_victim(in)) {
        report(in, "udp: %s: datagram from a new client dropped", sk_strerror(fd));
        return -1;
      }
      usess_evict(table_victim(in), "out of descriptors");
      evicted = 1;
      continue;
    }
    tried |= 1u << *t;
    mark_down(in, *t);
  }
}

/* A session for a new client. A full table, or a source address at its
 * cap, gives up its least recently used session first (one the target
 * never answered, if any), so a flood of new source ports cannot lock
 * real clients out for the idle timeout. */
static usess_t *usess_new(instance_t *in, const sk_sockaddr_t *client, unsigned h) {
  sk_relay_t *r = in->r;
  unsigned long limit = r->o.max_conns ? r->o.max_conns : SK_RELAY_UDP_MAX_SESSIONS;
  unsigned long per_source =
      r->o.max_per_source ? r->o.max_per_source : SK_RELAY_UDP_MAX_PER_SOURCE;
  usrc_t *src = source_of(in, client, 0);
  if (src && src->n >= per_source)
    usess_evict(source_victim(src), "sessions of one address at --max-per-source");
  if (in->nsessions >= limit && table_victim(in))
    usess_evict(table_victim(in), "session table full");
  int t, fd = upstream_open(in, &t);
  if (fd < 0)
    return NULL;
  usess_t *u = calloc(1, sizeof *u);
  if (!u || !(src = source_of(in, client, 1))) {
    free(u);
    close(fd);
    report(in, "udp: out of memory: datagram dropped");
    return NULL;
  }
  u->inst = in;
  u->client = *client;
  u->hash = h;
  u->ufd = fd;
  u->target = t;
  u->src = src;
  src->n++;
  u->started = u->last = sk_loop_now(in->loop);
  u->io.cb = on_upstream;
  u->io.data = u;
  sk_io_start(in->loop, &u->io, fd, SK_READABLE);
  u->hnext = in->buckets[h % UDP_BUCKETS];
  in->buckets[h % UDP_BUCKETS] = u;
  lru_push(in, u);
  src_push(u);
  in->nsessions++;
  atomic_fetch_add(&r->st_total, 1);
  atomic_fetch_add(&r->st_active, 1);
  return u;
}

static void on_client_dgram(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  instance_t *in = io->data;
  sk_relay_t *r = in->r;
  (void)ev;
  for (int i = 0; i < DGRAMS_PER_WAKEUP; i++) {
    sk_sockaddr_t peer;
    peer.len = sizeof peer.ss;
    ssize_t n = recvfrom(in->lfd, in->dgram_buf, SK_MSG_MAX, MSG_DONTWAIT,
                         (struct sockaddr *)&peer.ss, &peer.len);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNREFUSED)
        continue;
      return;
    }
    if (r->o.verify && !r->o.verify(r->o.ctx, &peer))
      continue;
    unsigned h = addr_hash(&peer);
    usess_t *u = in->buckets[h % UDP_BUCKETS];
    while (u && !addr_equal(&u->client, &peer))
      u = u->hnext;
    if (!u && !(u = usess_new(in, &peer, h)))
      continue;
    usess_touch(u, sk_loop_now(loop));
    u->up += (uint64_t)n;
    if (r->o.tap)
      r->o.tap(r->o.ctx, 0, '>', u->up - (uint64_t)n, in->dgram_buf, (size_t)n);
    if (send(u->ufd, in->dgram_buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
        errno == ECONNREFUSED) {
      mark_down(in, u->target);
      usess_free(u, "target refused");
    }
  }
}

static void on_udp_sweep(sk_loop_t *loop, sk_timer_t *t) {
  instance_t *in = t->data;
  sk_relay_t *r = in->r;
  uint64_t timeout = r->o.idle_timeout_ms ? r->o.idle_timeout_ms : SK_RELAY_UDP_TIMEOUT_MS;
  uint64_t now = sk_loop_now(loop);
  /* Oldest first: the walk stops at the first session still in use. */
  for (int l = 0; l < 2; l++)
    while (in->lru_tail[l] && now - in->lru_tail[l]->last >= timeout)
      usess_free(in->lru_tail[l], "expired");
}

/* ---- stop ------------------------------------------------------------------------------ */

static void instance_maybe_finish(instance_t *in) {
  if (!in->stopping || in->done || in->nsessions > 0)
    return;
  in->done = 1;
  sk_timer_stop(in->loop, &in->grace);
  sk_timer_stop(in->loop, &in->sweep);
  sk_timer_stop(in->loop, &in->fd_retry);
  sk_io_stop(in->loop, &in->wake_io);
}

static void on_grace(sk_loop_t *loop, sk_timer_t *t) {
  instance_t *in = t->data;
  (void)loop;
  while (in->sessions)
    session_free(in->sessions);
  for (int l = 0; l < 2; l++)
    while (in->lru[l])
      usess_free(in->lru[l], "relay stopping");
  instance_maybe_finish(in);
}

static void on_wake(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  instance_t *in = io->data;
  uint64_t v;
  ssize_t rd = read(in->wake_fd, &v, sizeof v);
  (void)rd;
  (void)ev;
  if (!atomic_load(&in->r->stopping) || in->stopping)
    return;
  in->stopping = 1;
  sk_io_stop(loop, &in->lio);
  if (in->own_lfd) {
    close(in->lfd);
    in->own_lfd = 0;
  }
  if (in->r->udp) {
    /* UDP sessions have no end of their own: end them now. */
    on_grace(loop, &in->grace);
    return;
  }
  sk_timer_start(loop, &in->grace, in->r->o.grace_ms ? in->r->o.grace_ms : SK_RELAY_GRACE_MS, 0);
  instance_maybe_finish(in);
}

void sk_relay_stop(sk_relay_t *r) {
  atomic_store(&r->stopping, 1);
  for (instance_t *in = r->instances; in; in = in->next) {
    uint64_t one = 1;
    ssize_t w = write(in->wake_fd, &one, sizeof one);
    (void)w;
  }
}

/* ---- life ---------------------------------------------------------------------------------- */

static int resolve_target(target_t *t, int udp, char *err, size_t errlen) {
  sk_endpoint_format(&t->ep, t->name, sizeof t->name);
  if (t->ep.kind == SK_EP_STDIO)
    return sk_err_set(-EINVAL, err, errlen, "target %s: a relay target must be a socket",
                      t->name);
  int is_udp = t->ep.kind == SK_EP_UDP;
  if (udp != is_udp || t->ep.kind == SK_EP_UNIX_DGRAM)
    return sk_err_set(-EINVAL, err, errlen, "target %s: %s", t->name,
                      udp ? "a udp listener needs udp targets"
                          : "a stream listener needs stream targets (tcp, unix, seqpacket)");
  int n = sk_net_addresses(&t->ep, t->addrs, MAX_ADDRS, err, errlen);
  if (n < 0)
    return n;
  t->naddrs = n;
  return 0;
}

int sk_relay_new(sk_relay_t **out, const sk_endpoint_t *listen, const sk_endpoint_t *targets,
                 int ntargets, const sk_sockopts_t *so, const sk_relay_opts_t *o, char *err,
                 size_t errlen) {
  if (ntargets < 1 || ntargets > SK_RELAY_MAX_TARGETS)
    return sk_err_set(-EINVAL, err, errlen, "relay: 1 to %d targets", SK_RELAY_MAX_TARGETS);
  if (listen->kind == SK_EP_UNIX_DGRAM || listen->kind == SK_EP_STDIO)
    return sk_err_set(-EINVAL, err, errlen,
                      "relay: listen on tcp, udp, unix or unix-seqpacket endpoints");
  if ((listen->flags & SK_EP_TLS) && !o->tls_server)
    return sk_err_set(-EINVAL, err, errlen, "relay: a tls:// listener needs a TLS server context");
  for (int i = 0; i < ntargets; i++)
    if ((targets[i].flags & SK_EP_TLS) && !o->tls_client)
      return sk_err_set(-EINVAL, err, errlen, "relay: tls:// targets need a TLS client context");
  sk_relay_t *r = calloc(1, sizeof *r);
  if (!r)
    return -ENOMEM;
  r->o = *o;
  if (so)
    r->so = *so;
  r->udp = listen->kind == SK_EP_UDP;
  r->ntargets = ntargets;
  r->l.fd = -1;
  int rc = 0;
  for (int i = 0; i < ntargets && rc == 0; i++) {
    r->targets[i].ep = targets[i];
    rc = resolve_target(&r->targets[i], r->udp, err, errlen);
  }
  if (rc == 0)
    rc = sk_listener_open(&r->l, listen, so, err, errlen);
  if (rc < 0) {
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

const sk_listener_t *sk_relay_listener(const sk_relay_t *r) { return &r->l; }

int sk_relay_attach(sk_relay_t *r, sk_loop_t *loop) {
  instance_t *in = calloc(1, sizeof *in);
  if (!in)
    return -ENOMEM;
  int rc = 0;
  in->r = r;
  in->loop = loop;
  in->lfd = r->l.fd;
  in->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (in->wake_fd < 0) {
    rc = sk__neg_errno();
    goto fail;
  }
  if (r->instances && r->so.reuseport && !r->l.inherited &&
      (r->l.ep.kind == SK_EP_TCP || r->l.ep.kind == SK_EP_UDP)) {
    sk_endpoint_t ep = r->l.ep;
    ep.port = (uint16_t)sk_sockaddr_port(&r->l.bound);
    sk_listener_t mine;
    if ((rc = sk_listener_open(&mine, &ep, &r->so, NULL, 0)) < 0)
      goto fail;
    in->lfd = mine.fd;
    in->own_lfd = 1;
  }
  if (r->udp) {
    in->buckets = calloc(UDP_BUCKETS, sizeof *in->buckets);
    in->src_buckets = calloc(UDP_BUCKETS, sizeof *in->src_buckets);
    in->dgram_buf = malloc(SK_MSG_MAX);
    if (!in->buckets || !in->src_buckets || !in->dgram_buf) {
      rc = -ENOMEM;
      goto fail;
    }
  }
  in->lio.cb = r->udp ? on_client_dgram : on_accept;
  in->lio.data = in;
  in->wake_io.cb = on_wake;
  in->wake_io.data = in;
  sk_timer_init(&in->grace, on_grace, in);
  sk_timer_init(&in->sweep, on_udp_sweep, in);
  sk_timer_init(&in->fd_retry, on_fd_retry, in);
  if ((rc = sk_io_start(loop, &in->lio, in->lfd, SK_READABLE)) < 0 ||
      (rc = sk_io_start(loop, &in->wake_io, in->wake_fd, SK_READABLE)) < 0)
    goto fail;
  if (r->udp) {
    uint64_t timeout = r->o.idle_timeout_ms ? r->o.idle_timeout_ms : SK_RELAY_UDP_TIMEOUT_MS;
    uint64_t every = timeout < 1000 ? timeout : 1000;
    sk_timer_start(loop, &in->sweep, every, every);
  }
  in->next = r->instances;
  r->instances = in;
  if (atomic_load(&r->stopping))
    sk_relay_stop(r);
  return 0;
fail:
  sk_io_stop(loop, &in->lio);
  sk_io_stop(loop, &in->wake_io);
  if (in->own_lfd)
    close(in->lfd);
  if (in->wake_fd >= 0)
    close(in->wake_fd);
  free(in->buckets);
  free(in->src_buckets);
  free(in->dgram_buf);
  free(in);
  return rc;
}

void sk_relay_stats(const sk_relay_t *r, sk_relay_stats_t *st) {
  sk_relay_t *m = (sk_relay_t *)r;
  st->sessions_total = atomic_load(&m->st_total);
  st->sessions_active = atomic_load(&m->st_active);
  st->bytes_up = atomic_load(&m->st_up);
  st->bytes_down = atomic_load(&m->st_down);
  st->connect_failures = atomic_load(&m->st_fail);
  st->no_target = atomic_load(&m->st_none);
  st->udp_evicted = atomic_load(&m->st_evicted);
}

void sk_relay_targets_text(const sk_relay_t *r, char *buf, size_t len) {
  size_t used = 0;
  uint64_t now = sk__now_ms();
  buf[0] = '\0';
  for (int i = 0; i < r->ntargets && used < len; i++) {
    uint64_t until = atomic_load(&((sk_relay_t *)r)->targets[i].down_until);
    int n = until > now ? snprintf(buf + used, len - used, "target %s: down, retried in %llu ms\n",
                                   r->targets[i].name, (unsigned long long)(until - now))
                        : snprintf(buf + used, len - used, "target %s: up\n", r->targets[i].name);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}

void sk_relay_free(sk_relay_t *r) {
  if (!r)
    return;
  instance_t *next;
  for (instance_t *in = r->instances; in; in = next) {
    next = in->next;
    while (in->sessions) {
      session_t *s = in->sessions;
      in->sessions = s->next;
      if (s->br)
        sk_bridge_free(s->br);
      if (s->cfd >= 0)
        close(s->cfd);
      if (s->tfd >= 0)
        close(s->tfd);
      free(s);
    }
    for (int l = 0; l < 2; l++)
      while (in->lru[l]) {
        usess_t *u = in->lru[l];
        in->lru[l] = u->next;
        close(u->ufd);
        free(u);
      }
    for (int b = 0; in->src_buckets && b < UDP_BUCKETS; b++)
      while (in->src_buckets[b]) {
        usrc_t *src = in->src_buckets[b];
        in->src_buckets[b] = src->hnext;
        free(src);
      }
    free(in->src_buckets);
    if (in->own_lfd)
      close(in->lfd);
    close(in->wake_fd);
    free(in->buckets);
    free(in->dgram_buf);
    free(in);
  }
  sk_listener_close(&r->l);
  free(r);
}
