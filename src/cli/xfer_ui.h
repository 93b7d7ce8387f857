/* src/cli/xfer_ui.h - what `sockit send` and `sockit receive` share: the
 * progress line, the manifest question, the summary line and --json, the
 * signal self-pipe, and setting up the connection either way round. */
#ifndef SK_CLI_XFER_UI_H
#define SK_CLI_XFER_UI_H

#include <stdio.h>

#include "cli/cli.h"
#include "cli/tlsopt.h"
#include "services/xfer.h"

typedef struct {
  char *name, *detail; /* the detail: a reason, or the stored name */
  int status;
} xui_item_t;

/* The state behind the engine's callbacks (xfer_ui_t.ctx). */
typedef struct {
  const char *verb;  /* "sent" or "received" */
  int tty;           /* stderr is a terminal: progress and summary */
  int quiet;         /* no progress, no summary (errors still) */
  int yes;           /* receiver: accept without asking */
  int json;          /* a JSON summary on stdout */
  const char *dir;   /* receiver: the target directory, for the question */
  /* progress display */
  uint64_t last_draw, rate_at;
  uint64_t rate_moved;
  double rate;       /* bytes/s, smoothed */
  int drawn;         /* a progress line is on the screen */
  /* failures and renames, for --json */
  xui_item_t *items;
  size_t nitems, cap;
} xui_t;

/* Sets up u and the engine callbacks ui for it. */
void xui_init(xui_t *u, xfer_ui_t *ui, const char *verb);
/* Clears the progress line, prints the summary (terminal) and the JSON
 * object (--json) for one session: rc is the engine's result, err its
 * message. Prints err as an error unless rc is 0. Resets the lists. */
void xui_finish(xui_t *u, int rc, const char *err, const xfer_stats_t *st, const char *role,
                const char *dir);
void xui_free(xui_t *u);

/* SIGINT/SIGTERM: the read end of a pipe that becomes readable. Returns
 * the fd, or -1 (then signals just kill). */
int xui_signal_pipe(void);

/* Parses "123", "10K", "1.5G", "2T" (powers of 1024) into bytes. 0 on
 * success, -1 if bad. */
int xui_parse_size(const char *text, uint64_t *out);

/* Parses a transfer endpoint (tcp or unix stream) for mode. Returns 0 or
 * prints a usage error and returns EXIT_USAGE. */
int xui_endpoint(const char *cmd, const char *text, sk_ep_mode_t mode, sk_endpoint_t *ep);

/* Waits for one connection on a listener (or the cancel fd): returns the
 * connected fd, -ECANCELED, or a negative errno (message printed). peer is
 * filled for messages. */
int xui_accept(const sk_listener_t *l, int cancel_fd, char *peer, size_t peerlen);

/* TLS options for a transfer endpoint: a usage error when they are given
 * without tls://; otherwise the context (a server's when this side
 * listens, which prints its pin for the peer's --pin) in *ctx, NULL for a
 * plain endpoint. Returns 0, EXIT_USAGE or EXIT_NET (message printed). */
int xui_tls_setup(const char *cmd, cli_tls_t *t, const sk_endpoint_t *ep, int listens,
                  sk_tls_ctx_t **ctx);

/* Starts TLS on the connected c when ctx is set: a session over c->fd
 * (peer_name: the host name to verify as a client, NULL as a server) and
 * its handshake within the --tls-timeout, interruptible through
 * c->cancel_fd. With verbose, says what was agreed and the peer's pin.
 * Returns 0 (c->tls set, or nothing to do), else the negative code after
 * printing "tls PEER: why". */
int xui_tls_start(xfer_conn_t *c, sk_tls_ctx_t *ctx, const cli_tls_t *t, const char *peer_name,
                  int verbose);

/* Opens a listener for ep, announces it ("listening on", only on a
 * terminal or for port 0) and writes port_file. Returns 0 or EXIT_NET. */
int xui_listen(sk_listener_t *l, const sk_endpoint_t *ep, const char *port_file);

#endif
