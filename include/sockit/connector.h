/* sockit/connector.h - the one way out: every outgoing connection of
 * sockit (connect, send, the chat and wc clients, the relay's targets) goes
 * through here.
 *
 *   endpoints ──> lookup ──> Happy Eyeballs ──> [proxy hop] ──> [TLS] ──> done
 *   (failover:    (helper    (RFC 8305: families   (SOCKS5 or    (verify,
 *    next one      thread)    interleaved, a new    HTTP          SNI)
 *    on failure)              try every 250 ms)     CONNECT)
 *
 * One deadline (timeout_ms) bounds the whole way, each address has its own
 * (attempt_timeout_ms), and one error story comes back: "connect
 * tcp://h:1: Connection refused", "proxy socks5 127.0.0.1:1080: connection
 * refused (to h:1)", "tls h: certificate has expired".
 */
#ifndef SOCKIT_CONNECTOR_H
#define SOCKIT_CONNECTOR_H

#include <stdint.h>

#include "sockit/addr.h"
#include "sockit/loop.h"
#include "sockit/net.h"
#include "sockit/proxy.h"
#include "sockit/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_CONNECT_ATTEMPT_MS 10000u /* default bound of one address's connect */
#define SK_CONNECT_DELAY_MS 250u     /* RFC 8305's recommended connection attempt delay */
#define SK_CONNECT_EPS_MAX 16        /* endpoints one connector fails over across */

typedef struct {
  const sk_sockopts_t *so;     /* per-connection options and source address; NULL = none */
  int family;                  /* AF_UNSPEC (any), AF_INET or AF_INET6 (-4 / -6) */
  uint64_t attempt_timeout_ms; /* one address; 0 = SK_CONNECT_ATTEMPT_MS */
  uint64_t attempt_delay_ms;   /* start the next address after this; 0 = SK_CONNECT_DELAY_MS */
  uint64_t timeout_ms;         /* the whole way, lookup to TLS; 0 = no overall bound */
  sk_tls_ctx_t *tls;           /* client context for tls:// endpoints (needed for them) */
  const char *tls_name;        /* the name verified and sent as SNI; NULL = the endpoint's */
  uint64_t tls_timeout_ms;     /* 0 = SK_TLS_HANDSHAKE_TIMEOUT_MS */
  const sk_proxy_t *proxy;     /* go through this proxy (tcp and tls endpoints); NULL = direct */
} sk_connect_opts_t;

/* A connection made. The caller owns fd and tls from the moment it is
 * handed over (sk_tls_free, then close). */
typedef struct {
  int fd;             /* connected, non-blocking, close-on-exec */
  sk_tls_t *tls;      /* the session on fd for a tls:// endpoint, else NULL */
  sk_sockaddr_t peer; /* the address connected to (the proxy's when proxied) */
  int index;          /* which endpoint of the list */
} sk_connected_t;

/* err is 0 with conn filled (handed over), or a negative code with conn
 * NULL and msg in words. */
typedef void (*sk_connect_cb)(void *data, int err, sk_connected_t *conn, const char *msg);
typedef struct sk_connector sk_connector_t;

/* Connects to the first of eps[0..neps) that works, on loop, calling done
 * once from the loop (never from inside this call). eps is copied; o and
 * what it points to are borrowed until done. Returns a handle for
 * sk_connect_cancel, valid until done is called, or NULL when out of
 * memory or neps is out of range. */
SK_API sk_connector_t *sk_connect_start(sk_loop_t *loop, const sk_endpoint_t *eps, int neps,
                                        const sk_connect_opts_t *o, sk_connect_cb done,
                                        void *data);
/* Stops a connect under way: every socket closed, done never called. */
SK_API void sk_connect_cancel(sk_connector_t *c);

/* The same, blocking the caller on a private loop (for one-connection
 * commands). Returns 0 with *out filled, or a negative code with the
 * message in err. */
SK_API int sk_connect_wait(const sk_endpoint_t *eps, int neps, const sk_connect_opts_t *o,
                           sk_connected_t *out, char *err, size_t errlen);

/* Retry pacing for reconnecting clients: base, twice that, ... up to max,
 * each with up to a quarter taken off at random so many clients cut off at
 * once do not come back in step. */
typedef struct {
  uint64_t base_ms, max_ms, cur_ms;
} sk_backoff_t;
SK_API void sk_backoff_init(sk_backoff_t *b, uint64_t base_ms, uint64_t max_ms);
/* The wait before the next try; the one after it doubles. */
SK_API uint64_t sk_backoff_next(sk_backoff_t *b);
/* Back to base, after a success. */
SK_API void sk_backoff_reset(sk_backoff_t *b);

#ifdef __cplusplus
}
#endif
#endif
