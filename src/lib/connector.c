/* connector.c - the one way out (see sockit/connector.h).
 *
 * A connector walks its endpoints in order. For each one:
 *
 *   RESOLVE ──> RACE ──────────────> PROXY ──────────> TLS ──> delivered
 *      │          │ every address     │ SOCKS5 or       │
 *      │          │ failed            │ HTTP CONNECT    │ handshake failed
 *      └──────────┴───────────────────┴─ failed ────────┴──> next endpoint,
 *                                                            else failed
 *
 * RACE is Happy Eyeballs (RFC 8305): addresses interleaved by family, the
 * first tried at once, the next after attempt_delay_ms or as soon as one
 * fails, the first to connect wins and the others are closed. Each address
 * has its own deadline; one overall deadline covers everything. Every
 * callback runs on the loop; done is called once, then the connector is
 * freed, so a cancel from inside done is a no-op by construction. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/connector.h"

#define UNIX_RETRY_MS 20 /* a full unix backlog: try that socket again after this */

typedef struct sk_connector connector_t;

typedef struct {
  connector_t *c;
  int fd; /* -1 when the slot is free, -2 while a unix retry is pending */
  sk_sockaddr_t addr;
  sk_io_t io;
  sk_timer_t timer;    /* this address's deadline, or its unix retry */
  uint64_t started_ms; /* for a unix retry: when the attempt began */
} attempt_t;

typedef enum { ST_RESOLVE, ST_RACE, ST_PROXY, ST_TLS, ST_DONE } state_t;

struct sk_connector {
  sk_loop_t *loop;
  sk_connect_opts_t o;
  sk_endpoint_t eps[SK_CONNECT_EPS_MAX];
  int neps, ep_i;
  sk_connect_cb done;
  void *data;
  state_t state;
  sk_timer_t kick_timer, delay_timer, deadline_timer;
  sk_resolve_t *res;
  /* the race */
  sk_sockaddr_t addrs[SK_RESOLVE_MAX];
  int naddrs, next_addr;
  attempt_t att[SK_RESOLVE_MAX];
  int last_err;
  /* the winner, through the proxy and TLS stages */
  int fd;
  sk_sockaddr_t peer;
  sk_io_t io;
  int proxy_step;
  uint8_t out[SK_PROXY_REPLY_MAX > 1024 ? 1024 : SK_PROXY_REPLY_MAX];
  size_t out_len, out_off;
  sk_tls_t *tls;
  sk_tls_hs_t *hs;
  char errors[SK_ERRLEN]; /* what each failed endpoint said, for the final message */
  sk_sockaddr_t preset[SK_RESOLVE_MAX]; /* tests: addresses given instead of looked up */
  int npreset;
};

static void endpoint_begin(connector_t *c);
static void race_next(connector_t *c);
static void proxy_begin(connector_t *c);

static const sk_endpoint_t *cur_ep(const connector_t *c) { return &c->eps[c->ep_i]; }

/* The endpoint the sockets go to: the proxy when there is one. */
static const sk_endpoint_t *hop_ep(const connector_t *c) {
  return c->o.proxy ? &c->o.proxy->ep : cur_ep(c);
}

/* Frees the slot: its socket, or its pending unix retry (fd -2). */
static void attempt_close(attempt_t *a) {
  if (a->fd == -1)
    return;
  sk_timer_stop(a->c->loop, &a->timer);
  if (a->fd >= 0) {
    sk_io_stop(a->c->loop, &a->io);
    close(a->fd);
  }
  a->fd = -1;
}

/* Closes everything the current endpoint holds. */
static void endpoint_clear(connector_t *c) {
  sk_net_addresses_cancel(c->res);
  c->res = NULL;
  sk_timer_stop(c->loop, &c->delay_timer);
  for (int i = 0; i < SK_RESOLVE_MAX; i++)
    attempt_close(&c->att[i]);
  if (c->hs) {
    sk_tls_handshake_cancel(c->hs);
    c->hs = NULL;
  }
  sk_tls_free(c->tls);
  c->tls = NULL;
  if (c->fd >= 0) {
    sk_io_stop(c->loop, &c->io);
    close(c->fd);
    c->fd = -1;
  }
}

static void connector_free(connector_t *c) {
  endpoint_clear(c);
  sk_timer_stop(c->loop, &c->kick_timer);
  sk_timer_stop(c->loop, &c->deadline_timer);
  free(c);
}

/* The end: hands the connection (err 0) or the failure to the caller. */
static void deliver(connector_t *c, int err, const char *msg) {
  c->state = ST_DONE;
  sk_connected_t conn = {.fd = c->fd, .tls = c->tls, .peer = c->peer, .index = c->ep_i};
  if (err == 0) {
    sk_io_stop(c->loop, &c->io);
    c->fd = -1; /* handed over */
    c->tls = NULL;
  }
  sk_connect_cb done = c->done;
  void *data = c->data;
  char text[SK_ERRLEN];
  snprintf(text, sizeof text, "%s", msg);
  connector_free(c);
  done(data, err, err == 0 ? &conn : NULL, text);
}

/* The current endpoint failed with err and msg: the next one, if any. */
static void endpoint_failed(connector_t *c, int err, const char *msg) {
  endpoint_clear(c);
  size_t used = strlen(c->errors);
  snprintf(c->errors + used, sizeof c->errors - used, "%s%s", used ? "; " : "", msg);
  c->last_err = err;
  if (c->ep_i + 1 < c->neps) {
    c->ep_i++;
    endpoint_begin(c);
    return;
  }
  char text[SK_ERRLEN];
  snprintf(text, sizeof text, "%s", c->errors);
  deliver(c, err, text);
}

static void fail_fmt(connector_t *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_fmt(connector_t *c, int err, const char *fmt, ...) {
  char msg[SK_ERRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  endpoint_failed(c, err, msg);
}

/* ---- TLS -------------------------------------------------------------------------------- */

static void tls_done(void *data, int err, const char *msg) {
  connector_t *c = data;
  c->hs = NULL;
  if (err == 0) {
    deliver(c, 0, "");
    return;
  }
  char name[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(cur_ep(c), name, sizeof name);
  fail_fmt(c, err < 0 ? err : -EPROTO, "tls %s: %s", name, msg);
}

/* The byte stream to the endpoint is open: TLS on top when it asks for it. */
static void stream_ready(connector_t *c) {
  const sk_endpoint_t *ep = cur_ep(c);
  if (!(ep->flags & SK_EP_TLS)) {
    deliver(c, 0, "");
    return;
  }
  c->state = ST_TLS;
  sk_io_stop(c->loop, &c->io);
  const char *name = c->o.tls_name ? c->o.tls_name : ep->host;
  uint64_t ms = c->o.tls_timeout_ms ? c->o.tls_timeout_ms : SK_TLS_HANDSHAKE_TIMEOUT_MS;
  if (sk_tls_new(&c->tls, c->o.tls, c->fd, name) < 0 ||
      !(c->hs = sk_tls_handshake_async(c->loop, c->tls, c->fd, ms, tls_done, c)))
    fail_fmt(c, -ENOMEM, "tls %s: %s", ep->host, "cannot start TLS (out of memory)");

}

/* ---- the proxy hop ---------------------------------------------------------------------- */

enum { PX_GREET, PX_METHOD, PX_AUTH, PX_AUTH_REPLY, PX_REQUEST, PX_REPLY, PX_HTTP, PX_HTTP_REPLY };

static void proxy_fail(connector_t *c, int err, const char *why) {
  char msg[SK_ERRLEN], pname[SK_ENDPOINT_STRLEN];
  const sk_endpoint_t *ep = cur_ep(c);
  snprintf(msg, sizeof msg, "proxy %s %s: %.100s (to %.100s:%u)",
           c->o.proxy->kind == SK_PROXY_HTTP ? "http" : "socks5",
           sk_sockaddr_format(&c->peer, pname, sizeof pname), why, ep->host, ep->port);
  endpoint_failed(c, err, msg);
}

/* Queues the next message of the proxy conversation. */
static int proxy_queue(connector_t *c) {
  const sk_proxy_t *p = c->o.proxy;
  const sk_endpoint_t *ep = cur_ep(c);
  ssize_t n;
  switch (c->proxy_step) {
  case PX_GREET: n = (ssize_t)sk_socks5_greeting(c->out, p->has_auth); break;
  case PX_AUTH: n = sk_socks5_auth_request(c->out, p->user, p->pass); break;
  case PX_REQUEST: n = sk_socks5_request(c->out, SK_SOCKS5_CMD_CONNECT, ep->host, ep->port); break;
  default:
    n = sk_http_connect_request((char *)c->out, sizeof c->out, ep->host, ep->port,
                                p->has_auth ? p->user : NULL, p->pass);
  }
  if (n < 0)
    return (int)n;
  c->out_len = (size_t)n;
  c->out_off = 0;
  return 0;
}

/* Parses what the proxy has sent (peeked, so nothing past the reply is
 * consumed). Returns 1 when the step is complete, 0 for more, or a
 * negative code after reporting. */
static int proxy_parse(connector_t *c, const uint8_t *in, size_t len) {
  ssize_t used;
  int v = 0;
  char why[SK_ERRLEN];
  sk_sockaddr_t bound;
  switch (c->proxy_step) {
  case PX_METHOD: used = sk_socks5_method_parse(in, len, &v); break;
  case PX_AUTH_REPLY: used = sk_socks5_auth_reply_parse(in, len, &v); break;
  case PX_REPLY: used = sk_socks5_reply_parse(in, len, &v, &bound); break;
  default:
    used = sk_http_connect_reply_parse((const char *)in, len, &v, why, 120);
  }
  if (used == SK_EAGAIN)
    return len >= SK_PROXY_REPLY_MAX ? SK_ETOOBIG : 0;
  if (used < 0) {
    proxy_fail(c, -EPROTO, used == SK_ETOOBIG ? "reply too long" : "not a proxy reply");
    return -EPROTO;
  }
  if (recv(c->fd, (void *)in, (size_t)used, 0) != used) { /* consume exactly the reply */
    proxy_fail(c, sk__neg_errno(), "read failed");
    return -EIO;
  }
  switch (c->proxy_step) {
  case PX_METHOD:
    if (v == SK_SOCKS5_NOACCEPTABLE || (v != SK_SOCKS5_NOAUTH && v != SK_SOCKS5_USERPASS) ||
        (v == SK_SOCKS5_USERPASS && !c->o.proxy->has_auth)) {
      proxy_fail(c, -EACCES, c->o.proxy->has_auth ? "no acceptable authentication method"
                                                  : "the proxy wants a username and password");
      return -EACCES;
    }
    c->proxy_step = v == SK_SOCKS5_USERPASS ? PX_AUTH : PX_REQUEST;
    return 1;
  case PX_AUTH_REPLY:
    if (!v) {
      proxy_fail(c, -EACCES, "username or password refused");
      return -EACCES;
    }
    c->proxy_step = PX_REQUEST;
    return 1;
  case PX_REPLY:
    if (v != 0) {
      proxy_fail(c, v == 5 ? -ECONNREFUSED : -EHOSTUNREACH, sk_socks5_reply_str(v));
      return -ECONNREFUSED;
    }
    return 2;
  default:
    if (v != 200) {
      char text[160];
      snprintf(text, sizeof text, "HTTP %d %.120s", v, why);
      proxy_fail(c, v == 407 ? -EACCES : -ECONNREFUSED, text);
      return -ECONNREFUSED;
    }
    return 2;
  }
}

static void on_proxy_io(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  connector_t *c = io->data;
  (void)ev;
  for (;;) {
    if (c->out_off < c->out_len) {
      ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        sk_io_set(loop, io, SK_WRITABLE);
        return;
      }
      if (n < 0) {
        proxy_fail(c, sk__neg_errno(), strerror(errno));
        return;
      }
      c->out_off += (size_t)n;
      if (c->out_off < c->out_len)
        continue;
      c->proxy_step++; /* every sending step is followed by its reply step */
      sk_io_set(loop, io, SK_READABLE);
    }
    uint8_t in[SK_PROXY_REPLY_MAX];
    ssize_t n = recv(c->fd, in, sizeof in, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (n <= 0) {
      proxy_fail(c, n == 0 ? -ECONNRESET : sk__neg_errno(),
                 n == 0 ? "closed the connection" : strerror(errno));
      return;
    }
    int r = proxy_parse(c, in, (size_t)n);
    if (r < 0) {
      if (r == SK_ETOOBIG)
        proxy_fail(c, -EPROTO, "reply too long");
      return;
    }
    if (r == 0)
      return; /* more to come */
    if (r == 2) {
      stream_ready(c);
      return;
    }
    int q = proxy_queue(c);
    if (q < 0) {
      proxy_fail(c, -EINVAL, "user or password over 255 bytes");
      return;
    }
  }
}

static void proxy_begin(connector_t *c) {
  c->state = ST_PROXY;
  c->proxy_step = c->o.proxy->kind == SK_PROXY_HTTP ? PX_HTTP : PX_GREET;
  if (proxy_queue(c) < 0) {
    proxy_fail(c, -EINVAL, "the target name does not fit a proxy request");
    return;
  }
  c->io.cb = on_proxy_io;
  c->io.data = c;
  if (sk_io_start(c->loop, &c->io, c->fd, SK_WRITABLE) < 0)
    proxy_fail(c, -ENOMEM, "out of memory");
}

/* ---- the race (RFC 8305) ---------------------------------------------------------------- */

/* An address connected: it wins, the others are closed. */
static void race_won(connector_t *c, attempt_t *a) {
  sk_io_stop(c->loop, &a->io);
  sk_timer_stop(c->loop, &a->timer);
  c->fd = a->fd;
  c->peer = a->addr;
  a->fd = -1;
  sk_timer_stop(c->loop, &c->delay_timer);
  for (int i = 0; i < SK_RESOLVE_MAX; i++)
    attempt_close(&c->att[i]);
  if (c->o.proxy)
    proxy_begin(c);
  else
    stream_ready(c);
}

static int live_attempts(const connector_t *c) {
  int n = 0;
  for (int i = 0; i < SK_RESOLVE_MAX; i++)
    n += c->att[i].fd != -1;
  return n;
}

/* One address failed with err: the next at once; when none is left and
 * none is under way, the endpoint failed. */
static void attempt_failed(connector_t *c, attempt_t *a, int err) {
  attempt_close(a);
  c->last_err = err;
  if (c->next_addr < c->naddrs) {
    race_next(c);
    return;
  }
  if (live_attempts(c) == 0) {
    char name[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(hop_ep(c), name, sizeof name);
    fail_fmt(c, err, "connect %s: %s", name, sk_strerror(err));
  }
}

static void on_attempt_ready(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  attempt_t *a = io->data;
  (void)loop;
  (void)ev;
  int r = sk_net_connect_finish(a->fd);
  if (r < 0)
    attempt_failed(a->c, a, r);
  else
    race_won(a->c, a);
}

static int attempt_connect(attempt_t *a);

static void on_attempt_timer(sk_loop_t *loop, sk_timer_t *t) {
  attempt_t *a = t->data;
  (void)loop;
  if (a->fd == -2) { /* a unix retry is due */
    a->fd = -1;
    int r = attempt_connect(a);
    if (r < 0)
      attempt_failed(a->c, a, r == -EAGAIN ? -ETIMEDOUT : r);
    return;
  }
  attempt_failed(a->c, a, -ETIMEDOUT);
}

static uint64_t attempt_ms(const connector_t *c) {
  return c->o.attempt_timeout_ms ? c->o.attempt_timeout_ms : SK_CONNECT_ATTEMPT_MS;
}

/* Starts a's connect. Returns 0 when under way (or waiting to retry a full
 * unix backlog), or a negative errno with the slot free. */
static int attempt_connect(attempt_t *a) {
  connector_t *c = a->c;
  int type = sk_endpoint_socktype(hop_ep(c));
  int fd = sk_net_connect_start(&a->addr, type, c->o.so);
  uint64_t now = sk_loop_now(c->loop);
  if (fd == -EAGAIN && a->addr.ss.ss_family == AF_UNIX && now - a->started_ms < attempt_ms(c)) {
    a->fd = -2; /* the slot is held by the retry timer */
    return sk_timer_start(c->loop, &a->timer, UNIX_RETRY_MS, 0) < 0 ? -ENOMEM : 0;
  }
  if (fd < 0)
    return fd;
  a->fd = fd;
  a->io.cb = on_attempt_ready;
  a->io.data = a;
  uint64_t left = attempt_ms(c) - (now - a->started_ms);
  if (sk_io_start(c->loop, &a->io, fd, SK_WRITABLE) < 0 ||
      sk_timer_start(c->loop, &a->timer, left, 0) < 0) {
    attempt_close(a);
    return -ENOMEM;
  }
  return 0;
}

static void on_delay(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  race_next(t->data);
}

/* Starts the next address of the race (failed ones are skipped at once),
 * and arms the delay after which the one after it starts. */
static void race_next(connector_t *c) {
  while (c->next_addr < c->naddrs) {
    attempt_t *a = NULL;
    for (int i = 0; i < SK_RESOLVE_MAX && !a; i++)
      if (c->att[i].fd == -1)
        a = &c->att[i];
    if (!a)
      return; /* every slot busy: a failure frees one */
    a->addr = c->addrs[c->next_addr++];
    a->started_ms = sk_loop_now(c->loop);
    int r = attempt_connect(a);
    if (r < 0) {
      c->last_err = r;
      continue;
    }
    sk_timer_stop(c->loop, &c->delay_timer);
    uint64_t delay = c->o.attempt_delay_ms ? c->o.attempt_delay_ms : SK_CONNECT_DELAY_MS;
    /* Datagram sockets "connect" at once: no race to pace. */
    if (c->next_addr < c->naddrs && sk_endpoint_socktype(hop_ep(c)) != SOCK_DGRAM &&
        sk_timer_start(c->loop, &c->delay_timer, delay, 0) < 0)
      c->last_err = -ENOMEM;
    return;
  }
  if (live_attempts(c) == 0) {
    char name[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(hop_ep(c), name, sizeof name);
    fail_fmt(c, c->last_err, "connect %s: %s", name, sk_strerror(c->last_err));
  }
}

/* RFC 8305 section 4: the resolver's order, families interleaved, starting
 * with the family of the first address; only family when it is set. */
static int order_addresses(connector_t *c, int n, const sk_sockaddr_t *in) {
  int first = -1, k = 0, a = 0, b = 0;
  const sk_sockaddr_t *fa[SK_RESOLVE_MAX], *fb[SK_RESOLVE_MAX];
  for (int i = 0; i < n; i++) {
    int fam = in[i].ss.ss_family;
    if (c->o.family != AF_UNSPEC && fam != AF_UNIX && fam != c->o.family)
      continue;
    if (first < 0)
      first = fam;
    if (fam == first)
      fa[a++] = &in[i];
    else
      fb[b++] = &in[i];
  }
  for (int i = 0; i < a || i < b; i++) {
    if (i < a)
      c->addrs[k++] = *fa[i];
    if (i < b)
      c->addrs[k++] = *fb[i];
  }
  return k;
}

static void on_resolved(void *data, int n, const sk_sockaddr_t *addrs, const char *err) {
  connector_t *c = data;
  c->res = NULL;
  if (n < 0) {
    endpoint_failed(c, n, err);
    return;
  }
  c->naddrs = order_addresses(c, n, addrs);
  c->next_addr = 0;
  if (c->naddrs == 0) {
    char name[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(hop_ep(c), name, sizeof name);
    fail_fmt(c, -EADDRNOTAVAIL, "connect %s: %s", name,
             c->o.family == AF_INET ? "the name has no IPv4 address (-4)"
                                    : "the name has no IPv6 address (-6)");
    return;
  }
  c->state = ST_RACE;
  c->last_err = -EHOSTUNREACH;
  race_next(c);
}

/* ---- endpoints, deadline, start and cancel ---------------------------------------------- */

static void endpoint_begin(connector_t *c) {
  const sk_endpoint_t *ep = cur_ep(c);
  char name[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(ep, name, sizeof name);
  c->state = ST_RESOLVE;
  if (ep->kind == SK_EP_STDIO) {
    fail_fmt(c, -EINVAL, "connect %s: %s", name, "standard input is not a socket");
    return;
  }
  if ((ep->flags & SK_EP_TLS) && !c->o.tls) {
    fail_fmt(c, -EINVAL, "connect %s: %s", name, "a tls:// endpoint needs a TLS context");
    return;
  }
  if (c->o.proxy && ep->kind != SK_EP_TCP) {
    fail_fmt(c, -EINVAL, "connect %s: %s", name, "a proxy carries tcp and tls endpoints only");
    return;
  }
  if (c->npreset) {
    on_resolved(c, c->npreset, c->preset, "");
    return;
  }
  c->res = sk_net_addresses_async(c->loop, hop_ep(c), on_resolved, c);
  if (!c->res)
    fail_fmt(c, -ENOMEM, "resolve %s: %s", name, "no memory or thread for the lookup");
}

static void on_kick(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  endpoint_begin(t->data);
}

static void on_deadline(sk_loop_t *loop, sk_timer_t *t) {
  connector_t *c = t->data;
  char name[SK_ENDPOINT_STRLEN], msg[2 * SK_ERRLEN + SK_ENDPOINT_STRLEN];
  (void)loop;
  sk_endpoint_format(cur_ep(c), name, sizeof name);
  int n = snprintf(msg, sizeof msg, "connect %s: no connection within %llu ms", name,
                   (unsigned long long)c->o.timeout_ms);
  if (c->errors[0] && n > 0)
    snprintf(msg + n, sizeof msg - (size_t)n, " (%s)", c->errors);
  endpoint_clear(c);
  deliver(c, SK_ETIMEDOUT, msg);
}

sk_connector_t *sk_connect_start(sk_loop_t *loop, const sk_endpoint_t *eps, int neps,
                                 const sk_connect_opts_t *o, sk_connect_cb done, void *data) {
  if (neps < 1 || neps > SK_CONNECT_EPS_MAX || !done)
    return NULL;
  connector_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->loop = loop;
  if (o)
    c->o = *o;
  memcpy(c->eps, eps, (size_t)neps * sizeof *eps);
  c->neps = neps;
  c->done = done;
  c->data = data;
  c->fd = -1;
  for (int i = 0; i < SK_RESOLVE_MAX; i++) {
    c->att[i].c = c;
    c->att[i].fd = -1;
    sk_timer_init(&c->att[i].timer, on_attempt_timer, &c->att[i]);
  }
  sk_timer_init(&c->kick_timer, on_kick, c);
  sk_timer_init(&c->delay_timer, on_delay, c);
  sk_timer_init(&c->deadline_timer, on_deadline, c);
  /* done is never called from inside this call: the first step runs on the loop. */
  if (sk_timer_start(loop, &c->kick_timer, 0, 0) < 0 ||
      (c->o.timeout_ms && sk_timer_start(loop, &c->deadline_timer, c->o.timeout_ms, 0) < 0)) {
    connector_free(c);
    return NULL;
  }
  return c;
}

sk_connector_t *sk__connect_start_addrs(sk_loop_t *loop, const sk_endpoint_t *ep,
                                        const sk_sockaddr_t *addrs, int n,
                                        const sk_connect_opts_t *o, sk_connect_cb done,
                                        void *data) {
  if (n < 1 || n > SK_RESOLVE_MAX)
    return NULL;
  sk_connector_t *c = sk_connect_start(loop, ep, 1, o, done, data);
  if (c) {
    memcpy(c->preset, addrs, (size_t)n * sizeof *addrs);
    c->npreset = n;
  }
  return c;
}

void sk_connect_cancel(sk_connector_t *c) {
  if (c && c->state != ST_DONE)
    connector_free(c);
}

/* ---- blocking form ---------------------------------------------------------------------- */

typedef struct {
  int err;
  sk_connected_t conn;
  char *msg;
  size_t msglen;
} wait_result_t;

static void wait_done(void *data, int err, sk_connected_t *conn, const char *msg) {
  wait_result_t *w = data;
  w->err = err;
  if (conn)
    w->conn = *conn;
  if (w->msg && w->msglen)
    snprintf(w->msg, w->msglen, "%s", msg);
}

int sk_connect_wait(const sk_endpoint_t *eps, int neps, const sk_connect_opts_t *o,
                    sk_connected_t *out, char *err, size_t errlen) {
  sk_loop_t *loop;
  int r = sk_loop_new(&loop);
  if (r < 0)
    return sk_err_set(r, err, errlen, "connect: cannot make an event loop");
  wait_result_t w = {.err = -EINTR, .msg = err, .msglen = errlen};
  if (err && errlen)
    err[0] = '\0';
  sk_connector_t *c = sk_connect_start(loop, eps, neps, o, wait_done, &w);
  if (!c) {
    sk_loop_free(loop);
    return sk_err_set(-ENOMEM, err, errlen, "connect: out of memory");
  }
  /* The loop stops itself when nothing is left to watch: done has run. */
  r = sk_loop_run(loop);
  if (w.err == -EINTR)
    sk_connect_cancel(c);
  sk_loop_free(loop);
  if (w.err == -EINTR)
    return sk_err_set(r < 0 ? r : -EINTR, err, errlen, "connect: interrupted");
  if (w.err == 0)
    *out = w.conn;
  return w.err;
}

/* ---- backoff ---------------------------------------------------------------------------- */

void sk_backoff_init(sk_backoff_t *b, uint64_t base_ms, uint64_t max_ms) {
  b->base_ms = base_ms ? base_ms : 1;
  b->max_ms = max_ms < b->base_ms ? b->base_ms : max_ms;
  b->cur_ms = b->base_ms;
}

uint64_t sk_backoff_next(sk_backoff_t *b) {
  uint64_t wait = b->cur_ms;
  b->cur_ms = b->cur_ms * 2 > b->max_ms ? b->max_ms : b->cur_ms * 2;
  uint64_t quarter = wait / 4;
  if (quarter)
    wait -= (uint64_t)random() % (quarter + 1);
  return wait;
}

void sk_backoff_reset(sk_backoff_t *b) { b->cur_ms = b->base_ms; }
