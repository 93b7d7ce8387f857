/* sockit/server.h - a socketserver for C: write a service as callbacks, run
 * it on any listen endpoint, on one loop or on N worker threads.
 *
 * Stream endpoints (tcp, unix, unix-seqpacket) give a connection object with
 * open / data / close callbacks and per-connection state. Datagram endpoints
 * (udp, unix-dgram) give one call per datagram with the peer and a way to
 * reply. The framework owns the sockets, the bounded buffers, backpressure,
 * limits, timeouts and shutdown; the handler only parses and answers.
 *
 * Backpressure: a connection's input is not read while its output queue is
 * above half its limit, so a client that never reads stalls only itself and
 * memory stays bounded.
 *
 * Memory: an idle connection holds no buffer storage. Input is read into a
 * buffer each loop shares and only what on_data leaves unconsumed is copied
 * to the connection's own buffer; the empty buffers of a connection quiet
 * for a second are freed (a busy one keeps them, to be reused).
 *
 * TLS: a listener bound with sk_server_listen_tls serves TLS with the same
 * handler. Each connection's handshake runs on its loop with a deadline
 * (a client that stalls mid-handshake holds up nobody); on_open comes only
 * once it succeeded, on_data gets decrypted bytes, sk_conn_send's output is
 * encrypted, and a graceful close sends close_notify. A failed handshake is
 * reported through on_error (rate-limited, in tls.h's words) and on_log;
 * the handler never hears of that connection.
 */
#ifndef SOCKIT_SERVER_H
#define SOCKIT_SERVER_H

#include <stdint.h>

#include "sockit/addr.h"
#include "sockit/buf.h"
#include "sockit/loop.h"
#include "sockit/net.h"
#include "sockit/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_server sk_server_t;
typedef struct sk_conn sk_conn_t;

#define SK_SERVER_IN_LIMIT (64u * 1024u)   /* default input buffer per connection */
#define SK_SERVER_OUT_LIMIT (256u * 1024u) /* default output queue per connection */
#define SK_SERVER_GRACE_MS 2000            /* default grace period at shutdown */
/* Datagram listeners: each source address (an IPv4 address, an IPv6 /64)
 * is served at most this many datagrams a second, in bursts of at most
 * SK_SERVER_DGRAM_BURST; the rest are dropped unanswered. */
#define SK_SERVER_DGRAM_RATE 50
#define SK_SERVER_DGRAM_BURST 20
#define SK_SERVER_DGRAM_UNLIMITED (~0u) /* dgram_rate: no per-source budget */

/* Why a connection closed (the `reason` of on_close). */
#define SK_CLOSE_NORMAL 0       /* the handler or the peer ended it cleanly */
#define SK_CLOSE_IDLE 1         /* idle timeout */
#define SK_CLOSE_SHUTDOWN 2     /* the server stopped and the grace period ran out */
#define SK_CLOSE_ERROR 3        /* a read or write failed (reset, ...) */

/* One datagram received by a datagram service. */
typedef struct {
  const char *data;
  size_t len;
  const sk_sockaddr_t *peer;
  int fd;      /* the socket it came on: reply with sk_server_reply */
  void *ctx;   /* sk_server_opts_t.ctx */
} sk_datagram_t;

typedef struct {
  /* Stream kinds. on_open may send a greeting and set per-connection state
   * with sk_conn_set_data; returning < 0 refuses the connection. */
  int (*on_open)(sk_conn_t *c);
  /* New input is in `in` (every byte not yet consumed). Consume what you
   * handled with sk_buf_consume; what you leave is kept and offered again
   * with more. eof = the peer has shut its side: nothing more will come;
   * after on_data returns, the connection is closed once its output is
   * written, unless the handler closed it already. On unix-seqpacket each
   * call holds exactly one packet, and what is left unconsumed is dropped. */
  void (*on_data)(sk_conn_t *c, sk_buf_t *in, int eof);
  /* The connection is gone (reason SK_CLOSE_*); free per-connection state.
   * Called once for every connection on_open was called for (a refused
   * one included); never for a TLS client whose handshake failed. */
  void (*on_close)(sk_conn_t *c, int reason);
  /* Datagram kinds: one call per datagram, except those the framework
   * drops first (opts.dgram_rate: loops and the per-source budget). */
  void (*on_datagram)(sk_server_t *s, const sk_datagram_t *dg);
} sk_handler_t;

typedef struct {
  const sk_handler_t *handler;
  void *ctx;                /* shared handler state, sk_conn_ctx() */
  size_t in_limit;          /* 0 = SK_SERVER_IN_LIMIT */
  size_t out_limit;         /* 0 = SK_SERVER_OUT_LIMIT */
  unsigned long max_conns;  /* per worker; 0 = no limit. At the limit new
                               clients wait in the kernel backlog. */
  uint64_t idle_timeout_ms; /* close connections quiet this long; 0 = never */
  uint64_t grace_ms;        /* at stop, live connections get this long; 0 = default */
  /* verify_request: 0 refuses the peer (closed at once / datagram dropped). */
  int (*verify)(void *ctx, const sk_sockaddr_t *peer);
  /* Errors that do not stop the server (accept failures, descriptor
   * exhaustion); rate-limited to one a second. */
  void (*on_error)(void *ctx, const char *msg);
  /* One line per finished connection, if set: peer, bytes, duration. */
  void (*on_log)(void *ctx, const char *line);
  /* TLS listeners: how long a client has to complete its handshake;
   * 0 = SK_TLS_HANDSHAKE_TIMEOUT_MS. */
  uint64_t tls_timeout_ms;
  /* Datagram listeners (udp): datagrams a second each source address may
   * have served, and the burst; 0 = SK_SERVER_DGRAM_RATE / _BURST, rate
   * SK_SERVER_DGRAM_UNLIMITED = no budget. Whatever the budget, a datagram
   * from the receiving socket's own address and port, from source port 0,
   * or from the port of a service that answers everything (7, 11, 13, 17,
   * 19, 37, 123) never reaches on_datagram: answering it could start a
   * reply loop. Dropped datagrams are counted and reported through
   * on_error, one line a second at most. */
  unsigned dgram_rate, dgram_burst;
} sk_server_opts_t;

/* Creates a server (not listening yet). opts is copied. Returns 0 or -ENOMEM. */
SK_API int sk_server_new(sk_server_t **out, const sk_server_opts_t *opts);
/* Binds one more endpoint (any kind but stdio). Call before attaching. With
 * o->reuseport each worker later gets its own socket on the same address
 * (tcp, udp); otherwise workers share one. Returns 0 or a negative errno
 * with a message in err. */
SK_API int sk_server_listen(sk_server_t *s, const sk_endpoint_t *ep, const sk_sockopts_t *o,
                            char *err, size_t errlen);
/* Binds one more endpoint whose connections speak TLS, like
 * sk_server_listen otherwise: tcp (tls:// or tcp://) or unix stream; a
 * datagram or unix-seqpacket endpoint is refused (-EINVAL, message in err).
 * tls is a server context (sk_tls_ctx_new with server = 1), borrowed: it
 * must stay valid until sk_server_free. Each connection accepted there
 * completes its TLS handshake within opts.tls_timeout_ms before on_open;
 * sk_server_listen refuses a tls:// endpoint, which needs this call. */
SK_API int sk_server_listen_tls(sk_server_t *s, const sk_endpoint_t *ep, const sk_sockopts_t *o,
                                sk_tls_ctx_t *tls, char *err, size_t errlen);
/* The i-th bound listener (as bound: real port), or NULL. */
SK_API const sk_listener_t *sk_server_listener(const sk_server_t *s, int i);

/* Serves on loop (the caller runs the loop). May be called for several
 * loops, one per thread. Returns 0 or a negative errno. */
SK_API int sk_server_attach(sk_server_t *s, sk_loop_t *loop);
/* Serves on `workers` threads (0 = the number of cores), each with its own
 * loop, until sk_server_stop; blocks until every worker is done. */
SK_API int sk_server_run(sk_server_t *s, int workers);
/* Stops accepting at once on every loop; live connections get the grace
 * period, then are closed. Safe from a signal handler, from another thread
 * and from a handler callback (never blocks). Loops the server was attached
 * to stop by themselves when nothing else is registered on them. */
SK_API void sk_server_stop(sk_server_t *s);
/* 1 once every attachment has finished stopping. */
SK_API int sk_server_stopped(const sk_server_t *s);
/* Frees the server: call after the loops it was attached to have ended. */
SK_API void sk_server_free(sk_server_t *s);

/* Reports a problem through opts.on_error, at most one line a second per
 * server (from any thread): for handlers that drop a datagram and want it
 * known without saying so to the sender. */
SK_API void sk_server_report(sk_server_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sends a reply to a datagram's peer (whole, or not at all). Returns 0 or
 * a negative errno (-EAGAIN when the socket buffer is full: dropped). */
SK_API int sk_server_reply(const sk_datagram_t *dg, const void *data, size_t len);

/* ---- connections ------------------------------------------------------------------ */

/* Queues len bytes for the peer, all or nothing. Returns 0, or SK_ETOOBIG
 * when the output queue would pass its limit (send less, or later: on_data
 * is called again when the queue has drained). Inside c's own callbacks the
 * queue is written when the callback returns; from anywhere else on c's
 * loop (another connection's handler broadcasting, a timer) at the end of
 * the loop round, with one write for everything queued in that round. */
SK_API int sk_conn_send(sk_conn_t *c, const void *data, size_t len);
/* Room left in the output queue. */
SK_API size_t sk_conn_out_space(const sk_conn_t *c);
/* Closes after the queued output is written (graceful). */
SK_API void sk_conn_close(sk_conn_t *c);
/* Gives up on the peer now: queued output is dropped. With output still
 * queued, what the kernel holds is dropped too (a stream connection is
 * closed with an RST, sk_net_close_reset), so a peer that stopped reading
 * costs nothing more; with the queue written, the close is an ordinary one
 * and the kernel still delivers what it holds. */
SK_API void sk_conn_abort(sk_conn_t *c);
SK_API void *sk_conn_data(const sk_conn_t *c);
SK_API void sk_conn_set_data(sk_conn_t *c, void *data);
SK_API void *sk_conn_ctx(const sk_conn_t *c);
SK_API const sk_sockaddr_t *sk_conn_peer(const sk_conn_t *c);
/* The address the connection arrived on (getsockname: on a listener bound
 * to a wildcard address, the one the peer connected to) into *out.
 * Returns 0 or a negative errno. */
SK_API int sk_conn_local(const sk_conn_t *c, sk_sockaddr_t *out);
SK_API sk_loop_t *sk_conn_loop(const sk_conn_t *c);
/* The connection's input buffer (what on_data gets), for handlers that act
 * on input outside on_data, from a timer say. */
SK_API sk_buf_t *sk_conn_input(sk_conn_t *c);
/* Bytes of buffer storage the connection holds now, input and output;
 * 0 once it has been idle for a second or two. */
SK_API size_t sk_conn_buffer_bytes(const sk_conn_t *c);
/* 1 on unix-seqpacket connections: each on_data call is one packet. */
SK_API int sk_conn_is_message(const sk_conn_t *c);
/* The TLS session of a connection on a TLS listener (for sk_tls_describe,
 * sk_tls_peer_fingerprint), NULL on a plain one. Borrowed: valid until
 * on_close returns. */
SK_API sk_tls_t *sk_conn_tls(const sk_conn_t *c);

/* Finds the first line in `in`: returns its length including the LF and
 * sets *len_no_eol to the length without LF or CRLF; 0 when no LF has
 * arrived yet; SK_ETOOBIG when max bytes or more are held without an LF. */
SK_API long sk_line_next(const sk_buf_t *in, size_t max, size_t *len_no_eol);

#ifdef __cplusplus
}
#endif
#endif
