/* src/cli/session.h - one socket bridged to standard input and output. */
#ifndef SK_CLI_SESSION_H
#define SK_CLI_SESSION_H

#include <stdint.h>

typedef struct {
  uint64_t idle_timeout_ms; /* 0 = none */
  int crlf, no_shutdown, chunk, verbose;
} cli_session_opts_t;

/* Bridges the connected socket fd (taken over: closed at the end) with
 * stdin/stdout until both directions have ended, SIGINT or SIGTERM. When
 * stdin is a terminal, the peer's EOF alone ends the session (nobody types
 * on to a server that has hung up); piped input is still sent in full. name is the
 * endpoint as shown in messages. Returns the exit code. */
int cli_session_run(int fd, const char *name, const cli_session_opts_t *o);

/* Datagram sockets have no end-of-stream: a session on one ends this long
 * after standard input has ended and nothing more arrived. */
#define CLI_DGRAM_LINGER_MS 1000

#endif
