/* src/cli/serve_xfer.h - the file drop box in `sockit serve`: hub default,
 * `xfer LISTEN ...` config lines, and its life next to the event loops.
 * serve.c calls these; the drop boxes themselves are in
 * src/services/xfer_dropbox.c. */
#ifndef SK_CLI_SERVE_XFER_H
#define SK_CLI_SERVE_XFER_H

#include "sockit/sockit.h"
#include "sockit/tls.h"

/* The hub's TLS server context (from sockit serve --cert/--key or
 * --self-signed) and --tls-timeout, for the `xfer tls://...` lines read
 * after this call. Borrowed: it must outlive serve_xfer_free. Without it
 * a tls:// drop box is refused with a message saying so. */
void serve_xfer_use_tls(sk_tls_ctx_t *ctx, uint64_t handshake_ms);
/* A config line `xfer LISTEN [--dir=DIR] [--max-files=N] [--max-total=SIZE]
 * [--idle-timeout=S]` (words after "xfer"); LISTEN may be tls:// (see
 * serve_xfer_use_tls). Returns EXIT_OK, EXIT_USAGE or EXIT_NET, with the
 * error printed. */
int serve_xfer_config(char **words, int nw, const char *path, int lineno, int verbose);
/* The hub's drop box: SVC_DROPBOX_HUB_ENDPOINT into ./SVC_DROPBOX_DIR. */
int serve_xfer_hub(int verbose);
/* Rows "xfer      ENDPOINT" of the table of what listens where. */
void serve_xfer_table(void);
/* Starts every drop box; each keeps loop alive until it has stopped. */
int serve_xfer_attach(sk_loop_t *loop);
/* Stops every drop box (from the loop's signal callback). */
void serve_xfer_stop(void);
/* Frees them, after the loop has ended. */
void serve_xfer_free(void);

#endif
