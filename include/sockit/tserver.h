/* sockit/tserver.h - the blocking server: one thread per connection running
 * a plain handle(conn) with blocking read and write helpers, like Python's
 * socketserver.ThreadingTCPServer, without its leaks.
 *
 * Threads are bounded (max_threads; at the limit new clients wait in the
 * kernel backlog) and reaped as they finish. Reads wait at most
 * idle_timeout_ms. sk_tserver_stop stops accepting at once, lets handlers
 * finish for the grace period, then makes every blocked read and write
 * fail with -ECANCELED so the threads end; sk_tserver_run returns when the
 * last one has.
 *
 * For stream endpoints (tcp, unix, unix-seqpacket). For event-driven
 * servers and datagrams see server.h.
 */
#ifndef SOCKIT_TSERVER_H
#define SOCKIT_TSERVER_H

#include <sys/types.h>

#include "sockit/addr.h"
#include "sockit/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_tserver sk_tserver_t;
typedef struct sk_stream sk_stream_t;

#define SK_TSERVER_MAX_THREADS 64

typedef struct {
  /* Runs on its own thread for each connection; the connection is closed
   * when it returns. */
  void (*handle)(sk_stream_t *conn, void *ctx);
  void *ctx;
  unsigned max_threads;     /* 0 = SK_TSERVER_MAX_THREADS */
  uint64_t idle_timeout_ms; /* a read waiting longer fails, SK_ETIMEDOUT; 0 = never */
  uint64_t grace_ms;        /* after stop; 0 = 2000 */
  int (*verify)(void *ctx, const sk_sockaddr_t *peer); /* 0 refuses */
} sk_tserver_opts_t;

/* Binds ep (stream kinds). A tls:// endpoint is bound as its TCP address:
 * the blocking server does no TLS itself, the handler runs the handshake
 * on the socket it is given (as the file drop box does). Returns 0 or a
 * negative errno with err filled. */
SK_API int sk_tserver_new(sk_tserver_t **out, const sk_endpoint_t *ep, const sk_sockopts_t *so,
                          const sk_tserver_opts_t *o, char *err, size_t errlen);
SK_API const sk_listener_t *sk_tserver_listener(const sk_tserver_t *s);
/* Accepts and serves until sk_tserver_stop; returns once every handler
 * thread has ended. Returns 0 or a negative errno. */
SK_API int sk_tserver_run(sk_tserver_t *s);
/* Safe from a signal handler, another thread, or a handler itself. */
SK_API void sk_tserver_stop(sk_tserver_t *s);
/* Handler threads alive now (for tests and monitoring). */
SK_API unsigned sk_tserver_threads(const sk_tserver_t *s);
SK_API void sk_tserver_free(sk_tserver_t *s);

/* Reads up to len bytes, blocking: bytes read, SK_EOF, SK_ETIMEDOUT,
 * -ECANCELED (server stopping) or a negative errno. */
SK_API ssize_t sk_stream_read(sk_stream_t *c, void *buf, size_t len);
/* Writes all len bytes, blocking. Returns 0 or a negative errno. */
SK_API int sk_stream_write(sk_stream_t *c, const void *buf, size_t len);
SK_API const sk_sockaddr_t *sk_stream_peer(const sk_stream_t *c);
SK_API int sk_stream_fd(const sk_stream_t *c);

#ifdef __cplusplus
}
#endif
#endif
