/* src/lib/internal.h - helpers shared between libsockit's own files. */
#ifndef SK_INTERNAL_H
#define SK_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>

#include "sk_config.h"
#include "sockit/buf.h"
#include "sockit/connector.h"
#include "sockit/server.h"
#include "sockit/tls.h"

/* The current errno as a negative code, never 0 (callers return it as a failure). */
static inline int sk__neg_errno(void) { return errno ? -errno : -EIO; }

/* Monotonic clock in milliseconds. */
uint64_t sk__now_ms(void);

/* Error reports of the server framework and the relay: formats the message
 * and passes it to cb(ctx, msg), unless one went out less than a second
 * before `now` (*last, monotonic ms, kept per loop by the caller), so an
 * error storm (EMFILE, a target that keeps failing) costs one line a
 * second, not one per event. cb may be NULL: nothing is formatted. */
void sk__report_limited(uint64_t *last, uint64_t now, void (*cb)(void *ctx, const char *msg),
                        void *ctx, const char *fmt, va_list ap);

/* ---- datagram services: no reply loops, a reply budget per source (dgram_guard.c) ---- */

/* 1 if a datagram from source port `port` must not be answered: 0 (no
 * port) or a service that answers everything (7 echo, 11 systat, 13
 * daytime, 17 qotd, 19 chargen, 37 time, 123 NTP). */
int sk__dgram_loop_port(unsigned port);
/* 1 if a datagram from peer came from our own socket's address and port:
 * own is what getsockname gives for the receiving socket; dst, when known
 * (IP_PKTINFO, for a wildcard bind), the address the datagram was sent to.
 * Our port from a loopback address, from our bound address or from the
 * datagram's own destination counts as ours. 0 for non-IP families. */
int sk__dgram_from_self(const sk_sockaddr_t *own, const sk_sockaddr_t *peer,
                        const sk_sockaddr_t *dst);
/* The budget key of a source: its IPv4 address (as v4-mapped) or its IPv6
 * /64. Returns 1, or 0 for other families (unix sockets: no budget). */
int sk__dgram_source_key(const sk_sockaddr_t *sa, uint8_t key[16]);

/* Per-source reply budget: a token bucket (as GCRA) per source in a table
 * of SK_DGRAM_BUDGET_SLOTS slots, two hashed candidates each with a secret
 * seed. Fixed size whatever the number of sources. */
#define SK_DGRAM_BUDGET_SLOTS 1024
typedef struct sk__dgram_budget sk__dgram_budget_t;
/* rate datagrams a second per source in bursts of up to burst (0 counts as
 * 1). Returns 0 with *out set, or -ENOMEM. */
int sk__dgram_budget_new(sk__dgram_budget_t **out, unsigned rate, unsigned burst);
void sk__dgram_budget_free(sk__dgram_budget_t *b);
/* Charges one datagram to key at now_ms (monotonic): 1 if within budget,
 * 0 if it must be dropped. */
int sk__dgram_budget_take(sk__dgram_budget_t *b, const uint8_t key[16], uint64_t now_ms);

/* Gives an empty buffer without storage a first allocation sized for len
 * bytes (a power of two from 256, within the limit) instead of
 * SK_BUF_MIN_ALLOC: a connection's short reply costs a short allocation.
 * No-op if b has storage. Returns 0 or -ENOMEM. */
int sk__buf_first_alloc(sk_buf_t *b, size_t len);

/* ---- TLS in the server framework ----
 * server.c reaches TLS only through this table, which sk_server_listen_tls
 * (server_tls.c) hands over: a program that never binds a TLS listener
 * links no TLS code, so a static libsockit.a needs no libssl for it. */
typedef struct {
  /* A server session on fd, its record buffers freed while empty. */
  int (*session_new)(sk_tls_t **out, sk_tls_ctx_t *ctx, int fd);
  void (*session_free)(sk_tls_t *t);
  int (*handshake)(sk_tls_t *t, unsigned *want, char *err, size_t errlen);
  ssize_t (*read)(sk_tls_t *t, void *buf, size_t len, unsigned *want);
  ssize_t (*write)(sk_tls_t *t, const void *buf, size_t len, unsigned *want);
  size_t (*pending)(const sk_tls_t *t);
  void (*close_notify)(sk_tls_t *t);
  const char *(*last_error)(const sk_tls_t *t);
} sk__server_tls_t;

/* Binds ep as s's next listener (server.c): TLS with ctx through ops when
 * ctx is not NULL (both borrowed for the server's life), plain otherwise.
 * Returns 0 or a negative errno with a message in err. */
int sk__server_listen(sk_server_t *s, const sk_endpoint_t *ep, const sk_sockopts_t *o,
                      sk_tls_ctx_t *ctx, const sk__server_tls_t *ops, char *err, size_t errlen);

/* tls.c, for server_tls.c: 1 if ctx was made for the server side; and a
 * session that frees its record buffers whenever they are empty, so an
 * idle connection holds no TLS buffer either (SSL_MODE_RELEASE_BUFFERS). */
int sk__tls_ctx_is_server(const sk_tls_ctx_t *ctx);
void sk__tls_release_buffers(sk_tls_t *t);

/* activation.c: takes a socket passed by systemd that matches ep into l
 * (fd, bound, inherited). Returns 1 when it did, 0 when none matches, or a
 * negative errno. */
int sk__activation_take(const sk_endpoint_t *ep, sk_listener_t *l);

/* connector.c, for tests: sk_connect_start for one endpoint whose
 * addresses are given (n of them, in this order before RFC 8305's
 * interleaving) instead of looked up. */
sk_connector_t *sk__connect_start_addrs(sk_loop_t *loop, const sk_endpoint_t *ep,
                                        const sk_sockaddr_t *addrs, int n,
                                        const sk_connect_opts_t *o, sk_connect_cb done,
                                        void *data);

#endif
