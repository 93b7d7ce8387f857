/* sockit/relay.h - make a remote or Unix-socket service appear local.
 *
 * A relay accepts on a listen endpoint and connects each client to one of
 * its targets, then copies both ways through a bridge (bridge.h): splice()
 * between stream sockets, bounded in-flight bytes per direction, FIN
 * forwarded each way, and the session over when both directions are done.
 * Targets are tried round-robin; one that refuses or times out is skipped
 * for retry_ms and tried again after. Connecting never blocks the loop.
 *
 * UDP: one upstream socket per client address, replies mapped back to that
 * client, sessions expired after idle_timeout_ms of silence. A full session
 * table, or a client address with max_per_source sessions, gives up its
 * least recently used session for a new one, those the target never
 * answered first.
 *
 * The process's own shortage of descriptors (EMFILE, ENFILE, ENOBUFS) never
 * counts against a target: a stream client waits for a descriptor (and
 * accepting pauses), a session whose splice pipe cannot be made copies
 * through its buffers, a new UDP client evicts the least recently used
 * session. A failure on one side of a stream session (a reset, an abort,
 * a TLS error) reaches the other side as a reset, after what came before
 * it (sk_bridge_opts_t.reset).
 */
#ifndef SOCKIT_RELAY_H
#define SOCKIT_RELAY_H

#include <stdint.h>

#include "sockit/addr.h"
#include "sockit/loop.h"
#include "sockit/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_relay sk_relay_t;

#define SK_RELAY_MAX_TARGETS 16
#define SK_RELAY_CONNECT_TIMEOUT_MS 5000u /* per target address */
#define SK_RELAY_RETRY_MS 2000u           /* a failed target is skipped this long */
#define SK_RELAY_UDP_TIMEOUT_MS 60000u    /* a quiet UDP session expires */
#define SK_RELAY_UDP_MAX_SESSIONS 4096u   /* per worker, when max_conns is 0 */
#define SK_RELAY_UDP_MAX_PER_SOURCE 256u  /* udp sessions per client address, per worker */
#define SK_RELAY_GRACE_MS 2000u           /* at stop, live sessions get this long */

typedef struct {
  uint64_t connect_timeout_ms; /* 0 = SK_RELAY_CONNECT_TIMEOUT_MS */
  uint64_t idle_timeout_ms;    /* stream: 0 = none; udp: 0 = SK_RELAY_UDP_TIMEOUT_MS */
  uint64_t retry_ms;           /* 0 = SK_RELAY_RETRY_MS */
  uint64_t grace_ms;           /* 0 = SK_RELAY_GRACE_MS */
  unsigned long max_conns;     /* per worker; at the limit new clients wait in the backlog
                                (udp: the session table; full, it evicts, see above) */
  unsigned long max_per_source; /* udp sessions per client address (IPv6: per /64) per
                                   worker; 0 = SK_RELAY_UDP_MAX_PER_SOURCE */
  size_t buffer;               /* in-flight bytes per direction; 0 = SK_BUF_DEFAULT_LIMIT */
  void *ctx;
  int (*verify)(void *ctx, const sk_sockaddr_t *peer); /* 0 refuses */
  /* One line per finished session: peer, target, bytes each way, time. */
  void (*on_log)(void *ctx, const char *line);
  /* Errors that do not stop the relay (rate-limited to one a second). */
  void (*on_error)(void *ctx, const char *msg);
  /* Every byte relayed (turns splice off): session id, '>' client to
   * target or '<' back, offset in that direction, the bytes. */
  void (*tap)(void *ctx, unsigned long session, char dir, uint64_t offset, const void *p,
              size_t n);
  /* TLS (tls.h): a tls:// listener terminates TLS with tls_server; tls://
   * targets are reached with tls_client (verified against the target's
   * host name). Borrowed; must outlive the relay. */
  struct sk_tls_ctx *tls_server, *tls_client;
  uint64_t tls_timeout_ms; /* handshake deadline; 0 = SK_TLS_HANDSHAKE_TIMEOUT_MS */
} sk_relay_opts_t;

typedef struct {
  uint64_t sessions_total, sessions_active;
  uint64_t bytes_up, bytes_down; /* client to target, target to client (finished sessions) */
  uint64_t connect_failures, no_target;
  uint64_t udp_evicted; /* udp sessions given up to make room for new clients */
} sk_relay_stats_t;

/* Binds listen and resolves every target (stream targets for a stream
 * listener, udp for udp). so applies to the listener and to target
 * connections. Returns 0 or a negative errno with a message in err. */
SK_API int sk_relay_new(sk_relay_t **out, const sk_endpoint_t *listen, const sk_endpoint_t *targets,
                        int ntargets, const sk_sockopts_t *so, const sk_relay_opts_t *o,
                        char *err, size_t errlen);
SK_API const sk_listener_t *sk_relay_listener(const sk_relay_t *r);
/* Serves on loop; may be called for several loops (one per thread): tcp and
 * udp listeners opened with so->reuseport get a socket per loop. */
SK_API int sk_relay_attach(sk_relay_t *r, sk_loop_t *loop);
/* Stops accepting; live sessions get the grace period. Signal- and
 * thread-safe. Loops end by themselves once nothing else is on them. */
SK_API void sk_relay_stop(sk_relay_t *r);
SK_API void sk_relay_stats(const sk_relay_t *r, sk_relay_stats_t *st);
/* "target: up" / "down for N ms" per target, one line each, into buf. */
SK_API void sk_relay_targets_text(const sk_relay_t *r, char *buf, size_t len);
/* Frees the relay, after its loops have ended. */
SK_API void sk_relay_free(sk_relay_t *r);

#ifdef __cplusplus
}
#endif
#endif
