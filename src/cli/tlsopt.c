/* tlsopt.c - TLS options, contexts and handshakes for the commands. */
#include <stddef.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/tlsopt.h"

static int tls_timeout_fn(void *base, const char *arg, const char *cmd) {
  cli_tls_t *t = base;
  if (cli_parse_seconds(arg, &t->handshake_ms) < 0 || t->handshake_ms == 0)
    return cli_usage_error(cmd, "bad --tls-timeout '%s': expected seconds", arg), -1;
  return 0;
}

/* --pin sha256:HEX, refused before any network activity when malformed. */
static int pin_fn(void *base, const char *arg, const char *cmd) {
  cli_tls_t *t = base;
  size_t n = strlen(arg);
  int ok = n == 7 + 64 && strncasecmp(arg, "sha256:", 7) == 0;
  for (size_t i = 7; ok && i < n; i++)
    ok = (arg[i] >= '0' && arg[i] <= '9') || ((arg[i] | 0x20) >= 'a' && (arg[i] | 0x20) <= 'f');
  if (!ok)
    return cli_usage_error(cmd, "bad pin '%.80s': expected sha256: and 64 hex digits", arg), -1;
  t->cfg.pin = arg;
  return 0;
}

const cli_opt_t cli_tls_client_opts[] = {
    {CLI_OPT_GROUP, .help = "TLS (tls://host:port endpoints):"},
    {CLI_ROW(CLI_OPT_STRING, 0, "ca", "FILE", "trust the CAs in FILE instead of the system's",
     offsetof(cli_tls_t, cfg.ca_file)), .complete = "file"},
    {CLI_ROW(CLI_OPT_FN, 0, "pin", "sha256:HEX", "trust exactly the certificate with this fingerprint", 0), .fn = pin_fn},
    {CLI_ROW(CLI_OPT_FLAG, 0, "insecure", NULL, "do not verify the peer (says so on stderr)",
     offsetof(cli_tls_t, cfg.insecure))},
    {CLI_ROW(CLI_OPT_STRING, 0, "cert", "FILE", "a client certificate (PEM), with --key",
     offsetof(cli_tls_t, cfg.cert_file)), .complete = "file"},
    {CLI_ROW(CLI_OPT_STRING, 0, "key", "FILE", "the client certificate's key (PEM)",
     offsetof(cli_tls_t, cfg.key_file)), .complete = "file"},
    {CLI_ROW(CLI_OPT_FN, 0, "tls-timeout", "SECS", "handshake deadline (default 10)", 0), .fn = tls_timeout_fn},
    {CLI_OPT_END}};

const cli_opt_t cli_tls_server_opts[] = {
    {CLI_OPT_GROUP, .help = "TLS (tls://host:port endpoints):"},
    {CLI_ROW(CLI_OPT_STRING, 0, "cert", "FILE", "the server's certificate chain (PEM)",
     offsetof(cli_tls_t, cfg.cert_file)), .complete = "file"},
    {CLI_ROW(CLI_OPT_STRING, 0, "key", "FILE", "its private key (PEM; default: in --cert's file)",
     offsetof(cli_tls_t, cfg.key_file)), .complete = "file"},
    {CLI_ROW(CLI_OPT_FLAG, 0, "self-signed", NULL,
     "make a certificate (kept in --state-dir) and print its pin",
     offsetof(cli_tls_t, cfg.self_signed))},
    {CLI_ROW(CLI_OPT_STRING, 0, "state-dir", "DIR",
     "where --self-signed keeps it (default ~/.local/state/sockit)",
     offsetof(cli_tls_t, cfg.state_dir)), .complete = "dir"},
    {CLI_ROW(CLI_OPT_STRING, 0, "client-ca", "FILE", "require client certificates signed by FILE's CAs",
     offsetof(cli_tls_t, cfg.client_ca)), .complete = "file"},
    {CLI_ROW(CLI_OPT_FN, 0, "tls-timeout", "SECS", "a client's handshake deadline (default 10)", 0), .fn = tls_timeout_fn},
    {CLI_OPT_END}};

int cli_tls_option(cli_tls_t *t, int c, const char *arg, const char *cmd) {
  switch (c) {
  case CLI_TLS_CA: t->cfg.ca_file = arg; break;
  case CLI_TLS_PIN: t->cfg.pin = arg; break;
  case CLI_TLS_INSECURE: t->cfg.insecure = 1; break;
  case CLI_TLS_CERT: t->cfg.cert_file = arg; break;
  case CLI_TLS_KEY: t->cfg.key_file = arg; break;
  case CLI_TLS_SELF_SIGNED: t->cfg.self_signed = 1; break;
  case CLI_TLS_STATE_DIR: t->cfg.state_dir = arg; break;
  case CLI_TLS_CLIENT_CA: t->cfg.client_ca = arg; break;
  case CLI_TLS_TIMEOUT:
    if (cli_parse_seconds(arg, &t->handshake_ms) < 0 || t->handshake_ms == 0) {
      cli_usage_error(cmd, "bad --tls-timeout '%s': expected seconds", arg);
      return -1;
    }
    break;
  default: return 0;
  }
  t->any = 1;
  return 1;
}

int cli_tls_server_check(const cli_tls_t *t, int has_tls, const char *cmd) {
  const sk_tls_config_t *c = &t->cfg;
  if (!has_tls) {
    if (t->any) {
      cli_usage_error(cmd, "TLS options need a tls:// endpoint");
      return -1;
    }
    return 0;
  }
  if (c->ca_file || c->pin || c->insecure) {
    cli_usage_error(cmd, "--ca, --pin and --insecure are for clients; a server takes --cert "
                         "FILE --key FILE or --self-signed (and --client-ca FILE)");
    return -1;
  }
  if (c->cert_file && c->self_signed) {
    cli_usage_error(cmd, "--cert and --self-signed contradict each other: choose one");
    return -1;
  }
  if (c->key_file && !c->cert_file) {
    cli_usage_error(cmd, "--key needs --cert FILE");
    return -1;
  }
  if (!c->cert_file && !c->self_signed) {
    cli_usage_error(cmd, "a tls:// endpoint needs a certificate: --cert FILE --key FILE, or "
                         "--self-signed");
    return -1;
  }
  return 0;
}

sk_tls_ctx_t *cli_tls_context(cli_tls_t *t, int server, const char *name) {
  char err[SK_ERRLEN];
  sk_tls_ctx_t *ctx;
  if (!server && t->cfg.pin && t->cfg.insecure) {
    cli_usage_error(NULL, "--pin and --insecure contradict each other: choose one");
    return NULL;
  }
  if (sk_tls_ctx_new(&ctx, server, &t->cfg, err, sizeof err) < 0) {
    cli_error("tls %s: %s", name, err);
    return NULL;
  }
  if (server) {
    char fp[SK_TLS_FINGERPRINT_LEN];
    sk_tls_ctx_fingerprint(ctx, fp, sizeof fp);
    if (t->cfg.cert_file)
      cli_error("tls %s: certificate %s", name, fp);
    else
      cli_error("tls %s: self-signed certificate %s (%s); clients connect with --pin %s", name,
                fp, sk_tls_ctx_generated(ctx) ? "new" : "reused", fp);
  } else if (t->cfg.insecure) {
    cli_error("tls %s: WARNING: --insecure: the server's certificate is not verified; anyone "
              "on the path can read and change this connection",
              name);
  }
  return ctx;
}

sk_tls_t *cli_tls_handshake(cli_tls_t *t, sk_tls_ctx_t *ctx, int fd, const char *peer_name,
                            const char *name, int verbose) {
  sk_tls_t *tls;
  char err[SK_ERRLEN];
  if (sk_tls_new(&tls, ctx, fd, peer_name) < 0) {
    cli_error("tls %s: out of memory", name);
    return NULL;
  }
  if (sk_tls_handshake_wait(tls, fd, t->handshake_ms, err, sizeof err) < 0) {
    cli_error("tls %s: %s", name, err);
    sk_tls_free(tls);
    return NULL;
  }
  if (verbose) {
    char how[96], fp[SK_TLS_FINGERPRINT_LEN];
    cli_error("tls %s: %s, peer certificate %s", name, sk_tls_describe(tls, how, sizeof how),
              sk_tls_peer_fingerprint(tls, fp, sizeof fp)[0] ? fp : "(none)");
  }
  return tls;
}
