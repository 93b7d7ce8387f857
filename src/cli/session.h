/* src/cli/session.h - one socket bridged to standard input and output. */
#ifndef SK_CLI_SESSION_H
#define SK_CLI_SESSION_H

#include <stdint.h>

typedef struct {
  uint64_t idle_timeout_ms; /* 0 = none */
  int crlf, no_shutdown, chunk, verbose;
} cli_session_opts_t;

/* Bridges the connected socket fd (taken over: closed at the end) with
 * stdin/stdout until both directions have ended, SIGINT or SIGTERM. After
 * the peer's EOF, a terminal session ends at once (nobody types on to a
 * server that hung up); piped input is still sent in full while it flows,
 * and the session ends once it has paused for CLI_PEER_EOF_LINGER_MS. name is the
 * endpoint as shown in messages. Returns the exit code. */
struct sk_tls;
/* tls: a TLS session over fd (handshake done), taken over too; or NULL. */
int cli_session_run(int fd, struct sk_tls *tls, const char *name, const cli_session_opts_t *o);

/* Datagram sockets have no end-of-stream: a session on one ends this long
 * after standard input has ended and nothing more arrived. */
#define CLI_DGRAM_LINGER_MS 1000
#define CLI_PEER_EOF_LINGER_MS 500

#endif
