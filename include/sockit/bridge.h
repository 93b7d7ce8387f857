/* sockit/bridge.h - two bounded one-way pipes between two sides.
 *
 * A bridge copies side A's input to side B's output and B's input to A's
 * output on an event loop. Each direction has a bounded buffer: while it is
 * full the source is not read (backpressure). When a source reaches EOF and
 * its buffer is written out, the other side's write half is shut down
 * (shutdown(SHUT_WR) on a stream or seqpacket socket; nothing can be said to
 * a pipe, a file or a datagram peer), so request-then-EOF protocols work and
 * no byte is lost.
 *
 * With opts.reset, a failure is carried across too: when one side fails
 * (a read error such as a reset, or a write that finds its peer gone),
 * what it sent before is delivered to the other side, which is then reset
 * (SO_LINGER {1, 0}) instead of shut down, so a client of a protocol
 * delimited by close can tell a cut-off reply from a complete one.
 *
 * A side is one socket (rfd == wfd) or a pair such as stdin/stdout. A side
 * in message mode (datagram and seqpacket sockets) is written one message
 * per line of the other side's data (or per read with `chunk`) and read one
 * message at a time.
 */
#ifndef SOCKIT_BRIDGE_H
#define SOCKIT_BRIDGE_H

#include <stdint.h>

#include "sockit/loop.h"
#include "sockit/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_bridge sk_bridge_t;

typedef struct {
  int rfd, wfd;     /* the same descriptor for a socket; -1 = none */
  int message;      /* datagram/seqpacket socket: keep message boundaries */
  int chunk;        /* message side: one message per read, not per line */
  int crlf;         /* data written to this side: LF becomes CRLF */
  int no_shutdown;  /* never shut this side's write half */
  int eof_ends;     /* EOF from this side (once flushed) ends the session */
  /* After EOF from this side, end the session once the other side's input
   * has been idle this long with nothing left to write (0 = wait for its
   * EOF). A peer that hung up usually won't read on; datagram peers never
   * say EOF at all. Input that keeps flowing, or waits on backpressure, is
   * never cut. */
  uint64_t eof_linger_ms;
  int close_fds;    /* close rfd/wfd (and free tls) when the bridge is freed */
  /* A TLS session over this side's socket (rfd == wfd), handshake done:
   * bytes are read and written through it and EOF is sent as close_notify
   * before the FIN. Owned by the bridge when close_fds is set. */
  struct sk_tls *tls;
} sk_bridge_side_t;

/* Sees every byte that passes, in order, before it is written: `from` is
 * the side it came from ('a' or 'b'), offset its position in that
 * direction's stream. For logs and hex dumps; it must not keep p. */
typedef void (*sk_bridge_tap_cb)(void *data, char from, uint64_t offset, const void *p, size_t n);

/* opts.reset: how long the side to be reset may take to acknowledge the
 * bytes already written to it (no progress for this long: reset anyway). */
#define SK_BRIDGE_DRAIN_MS 5000u

typedef struct {
  size_t limit;              /* per-direction buffer; 0 = SK_BUF_DEFAULT_LIMIT */
  uint64_t idle_timeout_ms;  /* end after this long with no data; 0 = never */
  /* Move stream-socket-to-stream-socket bytes with splice() through a pipe
   * per direction (the kernel copies, not us); falls back to read/write
   * where splice is refused. Ignored when tap is set. */
  int splice;
  /* Carry failures across as resets (see above): a session that ends with
   * an error other than the idle timeout leaves both sockets set to close
   * with a reset, after the failed side's bytes have been acknowledged by
   * the other (at most SK_BRIDGE_DRAIN_MS without progress). */
  int reset;
  sk_bridge_tap_cb tap;
  void *tap_data;
} sk_bridge_opts_t;

/* Why a session ended: 0 (both sides done, or eof_ends), SK_ETIMEDOUT
 * (idle timeout), or a negative errno from a read or write with the side
 * ('a' or 'b') and operation ("read"/"write") that failed. */
typedef struct {
  int err;
  char side;
  const char *op;
} sk_bridge_end_t;

typedef void (*sk_bridge_done_cb)(sk_bridge_t *br, const sk_bridge_end_t *end,
                                  void *data);

/* Starts a bridge on loop. The side structs are copied; descriptors marked
 * close_fds are the bridge's from a successful start on (a failed start
 * leaves them to the caller). done is called once, from the loop, when the
 * session ends; the bridge may be freed inside it. Returns 0 or a negative
 * errno. */
SK_API int sk_bridge_start(sk_bridge_t **out, sk_loop_t *loop,
                           const sk_bridge_side_t *a, const sk_bridge_side_t *b,
                           const sk_bridge_opts_t *opts, sk_bridge_done_cb done,
                           void *data);
/* Stops watching and frees the bridge (closing fds where close_fds). */
SK_API void sk_bridge_free(sk_bridge_t *br);
/* Bytes moved so far: A to B, and B to A. */
SK_API void sk_bridge_counts(const sk_bridge_t *br, uint64_t *a_to_b, uint64_t *b_to_a);

#ifdef __cplusplus
}
#endif
#endif
