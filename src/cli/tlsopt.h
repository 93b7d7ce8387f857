/* src/cli/tlsopt.h - the TLS options every stream command shares. */
#ifndef SK_CLI_TLSOPT_H
#define SK_CLI_TLSOPT_H

#include <getopt.h>
#include <stdint.h>

#include "cli/opts.h"
#include "sockit/tls.h"

typedef struct {
  sk_tls_config_t cfg;
  uint64_t handshake_ms;
  int any; /* some TLS option was given */
} cli_tls_t;

/* getopt_long codes 600.. and the long options, to splice into a table. */
enum { CLI_TLS_CA = 600, CLI_TLS_PIN, CLI_TLS_INSECURE, CLI_TLS_CERT, CLI_TLS_KEY,
       CLI_TLS_SELF_SIGNED, CLI_TLS_STATE_DIR, CLI_TLS_CLIENT_CA, CLI_TLS_TIMEOUT };

#define CLI_TLS_LONGOPTS                                                                     \
  {"ca", required_argument, 0, CLI_TLS_CA}, {"pin", required_argument, 0, CLI_TLS_PIN},     \
      {"insecure", no_argument, 0, CLI_TLS_INSECURE},                                         \
      {"cert", required_argument, 0, CLI_TLS_CERT}, {"key", required_argument, 0, CLI_TLS_KEY}, \
      {"self-signed", no_argument, 0, CLI_TLS_SELF_SIGNED},                                   \
      {"state-dir", required_argument, 0, CLI_TLS_STATE_DIR},                                 \
      {"client-ca", required_argument, 0, CLI_TLS_CLIENT_CA},                                 \
      {"tls-timeout", required_argument, 0, CLI_TLS_TIMEOUT}

#define CLI_TLS_HELP                                                                          \
  "TLS (tls://host:port endpoints):\n"                                                         \
  "  --ca FILE               trust the CAs in FILE instead of the system's\n"               \
  "  --pin sha256:HEX        trust exactly the certificate with this fingerprint\n"         \
  "  --insecure              do not verify the peer (says so on stderr)\n"                   \
  "  --cert FILE, --key FILE our certificate (a server's, or a client certificate)\n"       \
  "  --self-signed           server: make one (kept in --state-dir) and print its pin\n"    \
  "  --state-dir DIR         where --self-signed keeps it (default ~/.local/state/sockit)\n" \
  "  --client-ca FILE        server: require client certificates signed by FILE's CAs\n"    \
  "  --tls-timeout SECS      handshake deadline (default 10)\n"

/* The same options as tables (cli/opts.h) for commands on option tables:
 * a client's (--ca, --pin, --insecure, --cert, --key, --tls-timeout) and a
 * server's (--cert, --key, --self-signed, --state-dir, --client-ca,
 * --tls-timeout). Offsets are within cli_tls_t; include them with
 * .seen = offsetof(CMD, tls.any) + 1. --pin is checked for its form
 * (sha256: and 64 hex digits) when given. */
extern const cli_opt_t cli_tls_client_opts[], cli_tls_server_opts[];

/* Handles one TLS option: 1 if c was one (applied), 0 if not a TLS option,
 * -1 after printing a usage error. */
int cli_tls_option(cli_tls_t *t, int c, const char *arg, const char *cmd);

/* The server-side TLS flags of a command with tls:// endpoints (serve,
 * chat serve): "  --cert ... --tls-timeout" lines for its help. */
#define CLI_TLS_SERVER_HELP                                                                   \
  "TLS (tls://host:port endpoints):\n"                                                         \
  "  --cert FILE, --key FILE the server's certificate chain and key (PEM)\n"                 \
  "  --self-signed           make one instead (kept in --state-dir) and print its pin\n"    \
  "  --state-dir DIR         where --self-signed keeps it (default ~/.local/state/sockit)\n" \
  "  --client-ca FILE        require client certificates signed by FILE's CAs\n"            \
  "  --tls-timeout SECS      a client's handshake deadline (default 10)\n"

/* Checks the TLS flags of a server command: with tls:// endpoints
 * (has_tls) a certificate is needed (--cert [--key] or --self-signed, not
 * both), and the client-only flags (--ca, --pin, --insecure) are refused;
 * without, any TLS flag is refused. Prints the usage error and returns -1,
 * or returns 0. */
int cli_tls_server_check(const cli_tls_t *t, int has_tls, const char *cmd);

/* Builds the context for an endpoint (server or client); prints the error
 * and returns NULL on failure. A server prints its fingerprint; a client
 * with --insecure prints what it skips. */
sk_tls_ctx_t *cli_tls_context(cli_tls_t *t, int server, const char *name);

/* Client or server handshake on fd, blocking up to the TLS timeout. Prints
 * "tls NAME: <why>" and returns NULL on failure; the session otherwise. */
sk_tls_t *cli_tls_handshake(cli_tls_t *t, sk_tls_ctx_t *ctx, int fd, const char *peer_name,
                            const char *name, int verbose);

#endif
