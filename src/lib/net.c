/* net.c - socket hygiene: create, bind, listen, accept, connect, options.
 *
 * Every descriptor made here is non-blocking and close-on-exec from birth,
 * every call retries EINTR, and nothing here can raise SIGPIPE.
 */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/net.h"

/* ---- descriptors and plain I/O ------------------------------------------- */

int sk_net_set_nonblock(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return sk__neg_errno();
  int want = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (want != fl && fcntl(fd, F_SETFL, want) < 0)
    return sk__neg_errno();
  return 0;
}

int sk_net_set_cloexec(int fd, int on) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0)
    return sk__neg_errno();
  int want = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
  if (want != fl && fcntl(fd, F_SETFD, want) < 0)
    return sk__neg_errno();
  return 0;
}

void sk_net_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

void sk_net_close_reset(int fd) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* unix sockets ignore it */
  close(fd);
}

size_t sk_net_msg_max(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int type = 0;
  socklen_t tl = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_DGRAM ||
      getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return SK_MSG_MAX;
  if (ss.ss_family == AF_INET)
    return 65507; /* 65535 - 20 (IPv4 header) - 8 (UDP header) */
  if (ss.ss_family == AF_INET6)
    return 65527; /* 65535 - 8: the IPv6 header is outside the payload length */
  return SK_MSG_MAX;
}

static ssize_t io_result(ssize_t n) {
  if (n >= 0)
    return n;
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return SK_EAGAIN;
  return sk__neg_errno();
}

ssize_t sk_net_read(int fd, void *buf, size_t len) {
  ssize_t n;
  do
    n = read(fd, buf, len);
  while (n < 0 && errno == EINTR);
  if (n == 0 && len > 0)
    return SK_EOF;
  return io_result(n);
}

ssize_t sk_net_write(int fd, const void *buf, size_t len) {
  ssize_t n;
  do
    n = write(fd, buf, len);
  while (n < 0 && errno == EINTR);
  return io_result(n);
}

ssize_t sk_net_send(int fd, const void *buf, size_t len) {
  ssize_t n;
  do
    n = send(fd, buf, len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return io_result(n);
}

/* ---- options -------------------------------------------------------------- */

static int set_int(int fd, int level, int name, int v) {
  return setsockopt(fd, level, name, &v, sizeof v) < 0 ? sk__neg_errno() : 0;
}

int sk_net_apply(int fd, int socktype, int family, const sk_sockopts_t *o) {
  if (!o)
    return 0;
  int inet = family == AF_INET || family == AF_INET6;
  if (inet && socktype == SOCK_STREAM && o->nodelay && set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1) < 0)
    return sk__neg_errno();
  if (o->keepalive && socktype != SOCK_DGRAM && set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) < 0)
    return sk__neg_errno();
  if (o->rcvbuf > 0 && set_int(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf) < 0)
    return sk__neg_errno();
  if (o->sndbuf > 0 && set_int(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf) < 0)
    return sk__neg_errno();
  return 0;
}

/* ---- addresses -------------------------------------------------------------- */

int sk_net_unix_addr(const sk_endpoint_t *ep, sk_sockaddr_t *sa) {
  struct sockaddr_un *su = (struct sockaddr_un *)&sa->ss;
  memset(sa, 0, sizeof *sa);
  su->sun_family = AF_UNIX;
  size_t n = strlen(ep->path);
  if (n > SK_UNIX_PATH_MAX)
    return -ENAMETOOLONG;
  if (ep->flags & SK_EP_ABSTRACT) {
    memcpy(su->sun_path + 1, ep->path, n);
    sa->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  } else {
    memcpy(su->sun_path, ep->path, n + 1);
    sa->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  }
  return 0;
}

static int gai_to_errno(int rc) {
  switch (rc) {
  case EAI_NONAME:
#ifdef EAI_NODATA
  case EAI_NODATA:
#endif
    return -EHOSTUNREACH;
  case EAI_AGAIN: return -EAGAIN;
  case EAI_MEMORY: return -ENOMEM;
  case EAI_SYSTEM: return sk__neg_errno();
  default: return -EINVAL;
  }
}

int sk_net_resolve(const sk_endpoint_t *ep, int passive, struct addrinfo **res, char *err,
                   size_t errlen) {
  char name[SK_ENDPOINT_STRLEN];
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = sk_endpoint_socktype(ep);
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  char port[8];
  snprintf(port, sizeof port, "%u", (unsigned)ep->port);
  int rc = getaddrinfo(ep->host[0] ? ep->host : NULL, port, &hints, res);
  if (rc != 0) {
    if (err)
      snprintf(err, errlen, "resolve %s: %s", sk_endpoint_format(ep, name, sizeof name),
               gai_strerror(rc));
    return gai_to_errno(rc);
  }
  return 0;
}

int sk_net_addresses(const sk_endpoint_t *ep, sk_sockaddr_t *out, int max, char *err,
                     size_t errlen) {
  char name[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(ep, name, sizeof name);
  if (max < 1 || ep->kind == SK_EP_STDIO) {
    if (err && errlen)
      snprintf(err, errlen, "resolve %s: not a socket address", name);
    return -EINVAL;
  }
  if (ep->kind != SK_EP_TCP && ep->kind != SK_EP_UDP) {
    int r = sk_net_unix_addr(ep, &out[0]);
    return r < 0 ? sk_err_set(r, err, errlen, "%s", name) : 1;
  }
  struct addrinfo *res, *ai;
  int r = sk_net_resolve(ep, 0, &res, err, errlen);
  if (r < 0)
    return r;
  int n = 0;
  for (ai = res; ai && n < max; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof out[n].ss)
      continue;
    memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
    out[n].len = ai->ai_addrlen;
    n++;
  }
  freeaddrinfo(res);
  if (n == 0 && err && errlen)
    snprintf(err, errlen, "resolve %s: no usable address", name);
  return n ? n : -EHOSTUNREACH;
}

/* ---- listeners ------------------------------------------------------------- */

static int new_socket(int family, int type) {
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd < 0 ? sk__neg_errno() : fd;
}

/* 1 if something accepts connections on the unix socket address sa. */
static int unix_socket_alive(const sk_sockaddr_t *sa, int type) {
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 1; /* cannot tell: assume alive, never remove */
  int r = connect(fd, (const struct sockaddr *)&sa->ss, sa->len);
  int e = errno;
  close(fd);
  return !(r < 0 && e == ECONNREFUSED);
}

static int open_unix_listener(sk_listener_t *l, const sk_endpoint_t *ep, const sk_sockopts_t *o,
                              const char *name, char *err, size_t errlen) {
  int type = sk_endpoint_socktype(ep);
  sk_sockaddr_t sa;
  int r = sk_net_unix_addr(ep, &sa);
  if (r < 0)
    return sk_err_set(r, err, errlen, "listen %s", name);
  int fd = new_socket(AF_UNIX, type);
  if (fd < 0)
    return sk_err_set(fd, err, errlen, "socket %s", name);
  r = bind(fd, (struct sockaddr *)&sa.ss, sa.len);
  if (r < 0 && errno == EADDRINUSE && !(ep->flags & SK_EP_ABSTRACT)) {
    /* A socket file left by a process that died: remove it only if it is a
     * socket and nothing answers on it. */
    struct stat st;
    if (lstat(ep->path, &st) == 0 && S_ISSOCK(st.st_mode) && !unix_socket_alive(&sa, type)) {
      unlink(ep->path);
      r = bind(fd, (struct sockaddr *)&sa.ss, sa.len);
    } else {
      errno = EADDRINUSE;
    }
  }
  if (r < 0) {
    r = sk__neg_errno();
    close(fd);
    return sk_err_set(r, err, errlen, "bind %s", name);
  }
  if (!(ep->flags & SK_EP_ABSTRACT)) {
    struct stat st;
    if (stat(ep->path, &st) == 0) {
      l->dev = (unsigned long long)st.st_dev;
      l->ino = (unsigned long long)st.st_ino;
    }
  }
  if (type != SOCK_DGRAM && listen(fd, o && o->backlog ? o->backlog : SK_BACKLOG_DEFAULT) < 0) {
    r = sk__neg_errno();
    l->fd = fd;
    sk_listener_close(l);
    return sk_err_set(r, err, errlen, "listen %s", name);
  }
  (void)sk_net_apply(fd, type, AF_UNIX, o);
  l->fd = fd;
  l->bound = sa;
  return 0;
}

/* Binds (and listens on) one resolved address. Returns fd or negative errno. */
static int bind_inet(const struct sockaddr *addr, socklen_t len, int type, int wildcard6,
                     const sk_sockopts_t *o) {
  int fd = new_socket(addr->sa_family, type);
  if (fd < 0)
    return fd;
  int r = 0;
  if (!(o && o->no_reuseaddr))
    r = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (r == 0 && o && o->reuseport)
    r = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (r == 0 && addr->sa_family == AF_INET6 && wildcard6)
    r = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, o && o->v6only ? 1 : 0);
  if (r == 0)
    r = sk_net_apply(fd, type, addr->sa_family, o);
  if (r == 0 && bind(fd, addr, len) < 0)
    r = sk__neg_errno();
  if (r == 0 && type == SOCK_STREAM &&
      listen(fd, o && o->backlog ? o->backlog : SK_BACKLOG_DEFAULT) < 0)
    r = sk__neg_errno();
  if (r < 0) {
    close(fd);
    return r;
  }
  return fd;
}

int sk_listener_open(sk_listener_t *l, const sk_endpoint_t *ep, const sk_sockopts_t *o, char *err,
                     size_t errlen) {
  char name[SK_ENDPOINT_STRLEN];
  memset(l, 0, sizeof *l);
  l->fd = -1;
  l->ep = *ep;
  sk_endpoint_format(ep, name, sizeof name);
  if (ep->kind == SK_EP_STDIO)
    return sk_err_set(-EINVAL, err, errlen, "listen %s: standard input is not a socket", name);
  int taken = sk__activation_take(ep, l);
  if (taken < 0)
    return sk_err_set(taken, err, errlen, "listen %s (socket from systemd)", name);
  if (taken)
    return 0;
  if (ep->kind != SK_EP_TCP && ep->kind != SK_EP_UDP)
    return open_unix_listener(l, ep, o, name, err, errlen);

  int type = sk_endpoint_socktype(ep);
  int fd = -EAFNOSUPPORT;
  if (ep->host[0] == '\0') {
    /* Every address: one dual-stack IPv6 socket, or IPv4 where IPv6 is off. */
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_addr = in6addr_any;
    s6.sin6_port = htons(ep->port);
    fd = bind_inet((struct sockaddr *)&s6, sizeof s6, type, 1, o);
    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
      struct sockaddr_in s4;
      memset(&s4, 0, sizeof s4);
      s4.sin_family = AF_INET;
      s4.sin_addr.s_addr = htonl(INADDR_ANY);
      s4.sin_port = htons(ep->port);
      fd = bind_inet((struct sockaddr *)&s4, sizeof s4, type, 0, o);
    }
  } else {
    struct addrinfo *res, *ai;
    int r = sk_net_resolve(ep, 1, &res, err, errlen);
    if (r < 0)
      return r;
    for (ai = res; ai; ai = ai->ai_next) {
      fd = bind_inet(ai->ai_addr, ai->ai_addrlen, type, 0, o);
      if (fd >= 0)
        break;
    }
    freeaddrinfo(res);
  }
  if (fd < 0)
    return sk_err_set(fd, err, errlen, "listen %s", name);
  l->fd = fd;
  l->bound.len = sizeof l->bound.ss;
  getsockname(fd, (struct sockaddr *)&l->bound.ss, &l->bound.len);
  return 0;
}

void sk_listener_close(sk_listener_t *l) {
  if (l->fd < 0)
    return;
  close(l->fd);
  l->fd = -1;
  int unix_kind = l->ep.kind == SK_EP_UNIX || l->ep.kind == SK_EP_UNIX_DGRAM ||
                  l->ep.kind == SK_EP_UNIX_SEQPACKET;
  if (unix_kind && !(l->ep.flags & SK_EP_ABSTRACT) && l->ino) {
    struct stat st;
    if (lstat(l->ep.path, &st) == 0 && (unsigned long long)st.st_dev == l->dev &&
        (unsigned long long)st.st_ino == l->ino)
      unlink(l->ep.path);
  }
}

/* ---- accept ------------------------------------------------------------------ */

int sk_net_accept(int lfd, sk_sockaddr_t *peer) {
  for (;;) {
    sk_sockaddr_t tmp;
    sk_sockaddr_t *p = peer ? peer : &tmp;
    p->len = sizeof p->ss;
    int fd = accept4(lfd, (struct sockaddr *)&p->ss, &p->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
      return fd;
    switch (errno) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EPERM: /* a firewall said no to this one; others may pass */
      continue;
    case EAGAIN:
#if EAGAIN != EWOULDBLOCK
    case EWOULDBLOCK:
#endif
      return SK_EAGAIN;
    default: return sk__neg_errno();
    }
  }
}

/* One descriptor held back for the day accept() hits EMFILE. Threads take it
 * with an atomic exchange, so two cannot spend it at once. */
static atomic_int reserve_fd = -1;

int sk_net_reserve_fd(void) {
  if (atomic_load(&reserve_fd) >= 0)
    return 0;
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return sk__neg_errno();
  int expect = -1;
  if (!atomic_compare_exchange_strong(&reserve_fd, &expect, fd))
    close(fd);
  return 0;
}

int sk_net_shed(int lfd) {
  int fd = atomic_exchange(&reserve_fd, -1);
  if (fd < 0)
    return -EMFILE;
  close(fd);
  int shed = 0, r = 0;
  int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (c >= 0) {
    close(c);
    shed = 1;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    r = sk__neg_errno();
  }
  sk_net_reserve_fd();
  return r < 0 ? r : shed;
}

int sk_net_accept_or_shed(int lfd, sk_sockaddr_t *peer, int *shed) {
  *shed = 0;
  int fd = sk_net_accept(lfd, peer);
  if (fd != -EMFILE && fd != -ENFILE && fd != -ENOBUFS && fd != -ENOMEM)
    return fd;
  *shed = fd;
  for (int i = 0; i < SK_SHED_PER_CALL && sk_net_shed(lfd) > 0; i++) {
  }
  return SK_EAGAIN;
}

/* ---- connect ---------------------------------------------------------------- */

/* Parses a --source address ("host", "host:port", "[v6]:port", ":port") and
 * resolves it for family. Returns 0 with *out filled, or a negative errno. */
static int resolve_source(const char *src, int family, int type, sk_sockaddr_t *out, char *err,
                          size_t errlen) {
  char host[SK_HOST_MAX + 1] = "", port[8] = "0";
  const char *colon;
  if (src[0] == '[') {
    const char *end = strchr(src, ']');
    if (!end || (size_t)(end - src - 1) > SK_HOST_MAX)
      goto bad;
    memcpy(host, src + 1, (size_t)(end - src - 1));
    host[end - src - 1] = '\0';
    colon = end[1] == ':' ? end + 1 : NULL;
    if (!colon && end[1] != '\0')
      goto bad;
  } else {
    colon = strrchr(src, ':');
    size_t n = colon ? (size_t)(colon - src) : strlen(src);
    if (n > SK_HOST_MAX || (colon && memchr(src, ':', n)))
      goto bad;
    memcpy(host, src, n);
    host[n] = '\0';
  }
  if (colon) {
    size_t d = strspn(colon + 1, "0123456789");
    if (d == 0 || d > 5 || colon[1 + d] != '\0' || atoi(colon + 1) > 65535)
      goto bad;
    memcpy(port, colon + 1, d + 1);
  }
  struct addrinfo hints, *res;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = type;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
  if (rc != 0) {
    if (err)
      snprintf(err, errlen, "source address '%s': %s", src, gai_strerror(rc));
    return rc == EAI_ADDRFAMILY || rc == EAI_NONAME ? -EAFNOSUPPORT : gai_to_errno(rc);
  }
  memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
  out->len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
bad:
  if (err)
    snprintf(err, errlen, "bad source address '%s': expected host, host:port, [v6]:port or :port",
             src);
  return -EINVAL;
}

/* Waits until a non-blocking connect on fd finishes or timeout_ms (<= 0:
 * no limit) passes. Returns 0 or a negative errno. */
static int finish_connect(int fd, int timeout_ms) {
  struct pollfd pfd = {.fd = fd, .events = POLLOUT};
  uint64_t deadline = timeout_ms > 0 ? sk__now_ms() + (uint64_t)timeout_ms : 0;
  for (;;) {
    int wait = -1;
    if (deadline) {
      uint64_t now = sk__now_ms();
      if (now >= deadline)
        return -ETIMEDOUT;
      wait = (int)(deadline - now);
    }
    int n = poll(&pfd, 1, wait);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return sk__neg_errno();
    if (n == 0)
      return -ETIMEDOUT;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
      return sk__neg_errno();
    return soerr ? -soerr : 0;
  }
}

/* Makes one socket for addr and connects it. Returns fd or negative errno. */
static int connect_one(const struct sockaddr *addr, socklen_t len, int type,
                       const sk_sockopts_t *o, char *err, size_t errlen) {
  int family = addr->sa_family;
  int fd = new_socket(family, type);
  if (fd < 0)
    return fd;
  int r = sk_net_apply(fd, type, family, o);
  if (r == 0 && o && o->source && family != AF_UNIX) {
    sk_sockaddr_t src;
    r = resolve_source(o->source, family, type, &src, err, errlen);
    if (r == 0) {
      set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      if (bind(fd, (struct sockaddr *)&src.ss, src.len) < 0) {
        r = sk__neg_errno();
        sk_err_set(r, err, errlen, "bind source %s", o->source);
      }
    }
  }
  if (r == 0 && family == AF_UNIX && type == SOCK_DGRAM) {
    /* Autobind to a unique abstract address so the peer can reply. */
    sa_family_t fam = AF_UNIX;
    if (bind(fd, (struct sockaddr *)&fam, sizeof fam) < 0)
      r = sk__neg_errno();
  }
  int timeout = o ? o->connect_timeout_ms : 0;
  if (r == 0 && family == AF_UNIX && type != SOCK_DGRAM) {
    /* A full unix backlog answers a non-blocking connect with EAGAIN rather
     * than completing later, so connect in blocking mode bounded by
     * SO_SNDTIMEO (the timeout unix connect honours). */
    struct timeval tv = {.tv_sec = timeout / 1000, .tv_usec = (timeout % 1000) * 1000};
    struct timeval zero = {0, 0};
    sk_net_set_nonblock(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    do
      r = connect(fd, addr, len);
    while (r < 0 && errno == EINTR);
    if (r < 0)
      r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : sk__neg_errno();
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
    sk_net_set_nonblock(fd, 1);
  } else if (r == 0) {
    if (connect(fd, addr, len) < 0) {
      r = errno == EINPROGRESS || errno == EINTR ? finish_connect(fd, timeout) : sk__neg_errno();
    }
  }
  if (r < 0) {
    close(fd);
    return r;
  }
  return fd;
}

int sk_net_connect_start(const sk_sockaddr_t *addr, int socktype, const sk_sockopts_t *o) {
  int family = addr->ss.ss_family;
  int fd = new_socket(family, socktype);
  if (fd < 0)
    return fd;
  int r = sk_net_apply(fd, socktype, family, o);
  if (r == 0 && o && o->source && family != AF_UNIX) {
    sk_sockaddr_t src;
    r = resolve_source(o->source, family, socktype, &src, NULL, 0);
    if (r == 0 && bind(fd, (struct sockaddr *)&src.ss, src.len) < 0)
      r = sk__neg_errno();
  }
  if (r == 0 && family == AF_UNIX && socktype == SOCK_DGRAM) {
    /* Autobind to a unique abstract address so the peer can reply. */
    sa_family_t fam = AF_UNIX;
    if (bind(fd, (struct sockaddr *)&fam, sizeof fam) < 0)
      r = sk__neg_errno();
  }
  if (r == 0 && connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 &&
      errno != EINPROGRESS && errno != EINTR)
    r = sk__neg_errno();
  if (r < 0) {
    close(fd);
    return r;
  }
  return fd;
}

int sk_net_connect_finish(int fd) {
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
    return sk__neg_errno();
  return soerr ? -soerr : 0;
}

int sk_net_connect(const sk_endpoint_t *ep, const sk_sockopts_t *o, char *err, size_t errlen) {
  char name[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(ep, name, sizeof name);
  if (err && errlen)
    err[0] = '\0';
  if (ep->kind == SK_EP_STDIO)
    return sk_err_set(-EINVAL, err, errlen, "connect %s: standard input is not a socket", name);
  int type = sk_endpoint_socktype(ep);
  if (ep->kind != SK_EP_TCP && ep->kind != SK_EP_UDP) {
    sk_sockaddr_t sa;
    int r = sk_net_unix_addr(ep, &sa);
    if (r == 0)
      r = connect_one((struct sockaddr *)&sa.ss, sa.len, type, o, err, errlen);
    if (r < 0)
      return sk_err_set(r, err, errlen, "connect %s", name);
    return r;
  }
  struct addrinfo *res, *ai;
  int r = sk_net_resolve(ep, 0, &res, err, errlen);
  if (r < 0)
    return r;
  int fd = -EHOSTUNREACH;
  char src_err[SK_ERRLEN] = "";
  for (ai = res; ai; ai = ai->ai_next) {
    fd = connect_one(ai->ai_addr, ai->ai_addrlen, type, o, src_err, sizeof src_err);
    if (fd >= 0)
      break;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    if (src_err[0] && err) {
      snprintf(err, errlen, "connect %s: %s", name, src_err);
      return fd;
    }
    return sk_err_set(fd, err, errlen, "connect %s", name);
  }
  return fd;
}
