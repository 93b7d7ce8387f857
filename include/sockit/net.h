/* sockit/net.h - socket hygiene in one place.
 *
 * Every socket libsockit makes is non-blocking and close-on-exec from the
 * moment it exists (SOCK_NONBLOCK | SOCK_CLOEXEC, accept4), retries EINTR,
 * and never raises SIGPIPE (MSG_NOSIGNAL on sends; sk_net_ignore_sigpipe for
 * plain write()s). Listeners get SO_REUSEADDR unless told otherwise.
 */
#ifndef SOCKIT_NET_H
#define SOCKIT_NET_H

#include <stddef.h>
#include <sys/types.h>

#include "sockit/addr.h"
#include "sockit/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_BACKLOG_DEFAULT 511
#define SK_MSG_MAX 65536 /* largest datagram / seqpacket message carried */

/* The largest message that can be sent on socket fd: 65507 for UDP over
 * IPv4, 65527 over IPv6, SK_MSG_MAX otherwise. */
SK_API size_t sk_net_msg_max(int fd);

/* Socket options; zero-initialise and set what you need. */
typedef struct {
  int reuseport;      /* SO_REUSEPORT on listeners (opt-in) */
  int no_reuseaddr;   /* leave SO_REUSEADDR off on listeners */
  int nodelay;        /* TCP_NODELAY */
  int keepalive;      /* SO_KEEPALIVE */
  int rcvbuf, sndbuf; /* SO_RCVBUF / SO_SNDBUF when > 0 */
  int backlog;        /* listen() backlog; 0 = SK_BACKLOG_DEFAULT */
  int v6only;         /* IPV6_V6ONLY on an IPv6 wildcard listener */
  int connect_timeout_ms; /* 0 = the kernel's own */
  const char *source; /* bind before connect: "host", "host:port", "[v6]:port", ":port" */
} sk_sockopts_t;

/* A bound (and for connected kinds listening) socket. */
typedef struct {
  int fd;
  sk_endpoint_t ep;     /* as asked for */
  sk_sockaddr_t bound;  /* as bound (real port when port 0 was asked) */
  /* For a unix path listener: the file's identity, so sk_listener_close
   * removes only the file this listener created. */
  unsigned long long dev, ino;
  int inherited; /* passed by systemd (socket activation), not bound here */
} sk_listener_t;

/* Socket activation: when systemd (or systemd-socket-activate) passed
 * listening sockets (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), the first
 * sk_listener_open reads them, and every sk_listener_open takes a passed
 * socket that matches its endpoint instead of binding one: the same type,
 * listening, the same port and host (or every address) or unix path. Such a
 * listener has inherited set, and its unix socket file is never removed.
 * sk_activation_unclaimed says which passed sockets no endpoint took: up to
 * max descriptors in fds and their LISTEN_FDNAMES names (may be NULL);
 * returns how many there are. */
#define SK_ACTIVATION_MAX 64
#define SK_ACTIVATION_NAME_MAX 255
SK_API int sk_activation_unclaimed(int *fds, char (*names)[SK_ACTIVATION_NAME_MAX + 1], int max);

/* Binds ep (and calls listen() for stream / seqpacket kinds). A tls://
 * endpoint is bound as TCP: TLS is the caller's layer (tls.h). A host name
 * is resolved and every address tried in turn; an empty host means every
 * address: one IPv6 socket with IPV6_V6ONLY off, or IPv4 0.0.0.0 where IPv6
 * is missing. A unix path whose socket file is stale (nothing accepts on it)
 * is removed first; a live one gives -EADDRINUSE. Returns 0 with *l filled,
 * or a negative errno with a message in err. */
SK_API int sk_listener_open(sk_listener_t *l, const sk_endpoint_t *ep,
                            const sk_sockopts_t *o, char *err, size_t errlen);
/* Closes l->fd and removes its unix socket file if it is still ours. */
SK_API void sk_listener_close(sk_listener_t *l);

/* Accepts one connection on a listening fd with accept4 (non-blocking,
 * close-on-exec). Returns the new fd, SK_EAGAIN when none is pending, or a
 * negative errno. Connections that died in the backlog (ECONNABORTED,
 * EPROTO, ...) are skipped. On -EMFILE / -ENFILE the caller decides: see
 * sk_net_shed. peer may be NULL. */
SK_API int sk_net_accept(int lfd, sk_sockaddr_t *peer);

/* Descriptor exhaustion: call sk_net_reserve_fd() once at start-up to keep
 * one descriptor in reserve. When accept fails with EMFILE/ENFILE,
 * sk_net_shed(lfd) spends the reserve to accept the pending connection and
 * close it at once (the client sees a clean close, not a hang), then takes
 * the reserve back. Returns 1 if a connection was shed, 0 if none was
 * pending, negative errno if even that failed. */
SK_API int sk_net_reserve_fd(void);
SK_API int sk_net_shed(int lfd);

#define SK_SHED_PER_CALL 64 /* connections sk_net_accept_or_shed closes at most per call */

/* What every accept loop wants: sk_net_accept, except that when descriptors
 * are exhausted (EMFILE, ENFILE, ENOBUFS, ENOMEM) it sheds pending
 * connections (sk_net_shed, at most SK_SHED_PER_CALL), sets *shed to that
 * error for the caller to log, and returns SK_EAGAIN; the listener becomes
 * ready again once descriptors free up. *shed is 0 otherwise. */
SK_API int sk_net_accept_or_shed(int lfd, sk_sockaddr_t *peer, int *shed);

/* Connects to ep (tcp, udp, unix kinds), trying every resolved address in
 * turn, each bounded by o->connect_timeout_ms. Blocks the caller until
 * connected or failed; returns the non-blocking fd or a negative errno with
 * "connect tcp://host:port: Connection refused" in err. Datagram sockets are
 * connect()ed so only the peer's replies arrive; a unix datagram socket is
 * first bound to an autobind abstract address so the peer can answer. */
SK_API int sk_net_connect(const sk_endpoint_t *ep, const sk_sockopts_t *o,
                          char *err, size_t errlen);

/* Starts a non-blocking connect to one address, for event-driven code.
 * Returns the fd (close-on-exec, non-blocking) with the connect under way or
 * done: watch it for SK_WRITABLE, then sk_net_connect_finish tells the
 * outcome. Returns a negative errno if it failed at once (a full unix
 * backlog gives -EAGAIN). o's per-connection options and source apply; a
 * unix datagram socket is first bound to an autobind abstract address so
 * the peer can answer. */
SK_API int sk_net_connect_start(const sk_sockaddr_t *addr, int socktype, const sk_sockopts_t *o);
/* The outcome of a connect started by sk_net_connect_start: 0 or a
 * negative errno (SO_ERROR). */
SK_API int sk_net_connect_finish(int fd);

/* Resolves ep's host (getaddrinfo) for its socket type. On success *res is
 * a list to free with freeaddrinfo. For unix kinds fills one address. */
struct addrinfo;
SK_API int sk_net_resolve(const sk_endpoint_t *ep, int passive,
                          struct addrinfo **res, char *err, size_t errlen);
/* The addresses to connect to for ep, in the resolver's order: up to max
 * of them in out (one for unix kinds). Returns how many (at least 1) or a
 * negative errno with "resolve tcp://host:port: ..." in err. Resolving a
 * name may wait on the resolver; numeric hosts and unix paths never do. */
SK_API int sk_net_addresses(const sk_endpoint_t *ep, sk_sockaddr_t *out, int max, char *err,
                            size_t errlen);
/* sk_net_addresses without blocking a loop: the lookup runs on a helper
 * thread and done(data, n, addrs, err) is called on loop's thread when it
 * is over, with n addresses (at most SK_RESOLVE_MAX) or a negative errno
 * and the message in err. Unix kinds and numeric hosts need no lookup:
 * they are answered on the next loop round all the same. Returns a handle
 * for sk_net_addresses_cancel, valid until done returns (cancelling from
 * inside done does nothing), or NULL when out of memory or threads.
 * Cancelling means done is never called; a lookup under way finishes on
 * its thread and is thrown away. */
#define SK_RESOLVE_MAX 8
typedef struct sk_resolve sk_resolve_t;
typedef void (*sk_resolve_cb)(void *data, int n, const sk_sockaddr_t *addrs, const char *err);
SK_API sk_resolve_t *sk_net_addresses_async(sk_loop_t *loop, const sk_endpoint_t *ep,
                                            sk_resolve_cb done, void *data);
SK_API void sk_net_addresses_cancel(sk_resolve_t *r);
/* Fills sa with the unix socket address of ep. */
SK_API int sk_net_unix_addr(const sk_endpoint_t *ep, sk_sockaddr_t *sa);

/* Applies the per-connection options of o (nodelay, keepalive, buffers). */
SK_API int sk_net_apply(int fd, int socktype, int family, const sk_sockopts_t *o);

/* fcntl helpers; return 0 or negative errno. */
SK_API int sk_net_set_nonblock(int fd, int on);
SK_API int sk_net_set_cloexec(int fd, int on);

/* Closes a connected socket with a reset (SO_LINGER 0): a TCP peer gets an
 * RST instead of a FIN, and the kernel frees at once what it still held
 * unsent, instead of keeping it in FIN-WAIT for a peer that does not read.
 * For giving up on a peer, never for an orderly end. */
SK_API void sk_net_close_reset(int fd);

/* Sets SIGPIPE to SIG_IGN for the process (writes to closed pipes then
 * return EPIPE). */
SK_API void sk_net_ignore_sigpipe(void);

/* read() and write() that retry EINTR and map "would block" to SK_EAGAIN
 * and a 0-byte read to SK_EOF. Return bytes moved or a negative code.
 * sk_net_send is write() for sockets with MSG_NOSIGNAL (no SIGPIPE). */
SK_API ssize_t sk_net_read(int fd, void *buf, size_t len);
SK_API ssize_t sk_net_write(int fd, const void *buf, size_t len);
SK_API ssize_t sk_net_send(int fd, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
