/* connect.c - `sockit connect ENDPOINT`: the netcat client. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "cli/tlsopt.h"

static const char usage[] =
    "Usage: sockit connect [OPTIONS] ENDPOINT\n"
    "\n"
    "Connects to ENDPOINT and copies standard input to it and what it sends to\n"
    "standard output. At end of input the write half is shut down and sockit\n"
    "reads on until the peer closes, so no reply is cut short. On datagram\n"
    "endpoints each input line is one datagram.\n"
    "\n"
    "Options:\n"
    "  --connect-timeout SECS  give up on each address after SECS\n"
    "  --idle-timeout SECS     end (exit 1) after SECS with no data either way\n"
    "  --crlf                  send input LF as CRLF\n"
    "  --source ADDR           local address to bind: host, host:port, [v6]:port, :port\n"
    "  --no-shutdown           keep the write half open at end of input\n"
    "  --chunk                 datagram endpoints: one datagram per read, not per line\n"
    "  -v, --verbose           report the connection on stderr\n"
    "  -h, --help              this help\n"
    "\n" CLI_TLS_HELP "\n"
    "Examples:\n"
    "  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit connect tcp://localhost:80\n"
    "  echo hello | sockit connect udp://127.0.0.1:7\n"
    "  sockit connect unix:/run/app.sock\n";

enum { OPT_CONNECT_TIMEOUT = 256, OPT_IDLE, OPT_CRLF, OPT_SOURCE, OPT_NO_SHUTDOWN, OPT_CHUNK };

static int run(int argc, char **argv) {
  static const struct option longopts[] = {
      {"connect-timeout", required_argument, 0, OPT_CONNECT_TIMEOUT},
      {"idle-timeout", required_argument, 0, OPT_IDLE},
      {"crlf", no_argument, 0, OPT_CRLF},
      {"source", required_argument, 0, OPT_SOURCE},
      {"no-shutdown", no_argument, 0, OPT_NO_SHUTDOWN},
      {"chunk", no_argument, 0, OPT_CHUNK},
      {"verbose", no_argument, 0, 'v'},
      CLI_TLS_LONGOPTS,
      {0, 0, 0, 0}};
  cli_tls_t tls;
  memset(&tls, 0, sizeof tls);
  cli_session_opts_t so;
  memset(&so, 0, sizeof so);
  sk_sockopts_t sock;
  memset(&sock, 0, sizeof sock);
  sock.nodelay = 1;
  uint64_t ms;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_CONNECT_TIMEOUT:
      if (cli_parse_seconds(optarg, &ms) < 0 || ms > 0x7fffffff)
        return cli_usage_error("connect", "bad --connect-timeout '%s': expected seconds", optarg);
      sock.connect_timeout_ms = (int)ms;
      break;
    case OPT_IDLE:
      if (cli_parse_seconds(optarg, &so.idle_timeout_ms) < 0)
        return cli_usage_error("connect", "bad --idle-timeout '%s': expected seconds", optarg);
      break;
    case OPT_CRLF: so.crlf = 1; break;
    case OPT_SOURCE: sock.source = optarg; break;
    case OPT_NO_SHUTDOWN: so.no_shutdown = 1; break;
    case OPT_CHUNK: so.chunk = 1; break;
    case 'v': so.verbose = 1; break;
    default:
      if (c >= CLI_TLS_CA) {
        int r = cli_tls_option(&tls, c, optarg, "connect");
        if (r < 0)
          return EXIT_USAGE;
        if (r > 0)
          break;
      }
      return cli_usage_error("connect", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc - 1)
    return cli_usage_error("connect", optind >= argc ? "missing ENDPOINT"
                                                     : "expected one ENDPOINT, got more");
  char err[SK_ERRLEN];
  sk_endpoint_t ep;
  if (sk_endpoint_parse(&ep, argv[optind], SK_EP_CONNECT, err, sizeof err) < 0)
    return cli_usage_error("connect", "%s", err);
  if (ep.kind == SK_EP_STDIO)
    return cli_usage_error("connect", "connect needs a socket endpoint, not standard input");
  char name[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(&ep, name, sizeof name);

  if (tls.any && !(ep.flags & SK_EP_TLS))
    return cli_usage_error("connect", "TLS options need a tls:// endpoint");
  sk_tls_ctx_t *ctx = NULL;
  if ((ep.flags & SK_EP_TLS) && !(ctx = cli_tls_context(&tls, 0, name)))
    return tls.cfg.pin && tls.cfg.insecure ? EXIT_USAGE : EXIT_NET;
  int fd = sk_net_connect(&ep, &sock, err, sizeof err);
  if (fd < 0) {
    cli_error("%s", err);
    sk_tls_ctx_free(ctx);
    return EXIT_NET;
  }
  sk_tls_t *session_tls = NULL;
  if (ctx && !(session_tls = cli_tls_handshake(&tls, ctx, fd, ep.host, name, so.verbose))) {
    close(fd);
    sk_tls_ctx_free(ctx);
    return EXIT_NET;
  }
  if (so.verbose) {
    sk_sockaddr_t local, peer;
    local.len = peer.len = sizeof local.ss;
    getsockname(fd, (struct sockaddr *)&local.ss, &local.len);
    getpeername(fd, (struct sockaddr *)&peer.ss, &peer.len);
    char l[SK_ENDPOINT_STRLEN], p[SK_ENDPOINT_STRLEN];
    cli_error("connected to %s (%s from %s)", name, sk_sockaddr_format(&peer, p, sizeof p),
              sk_sockaddr_format(&local, l, sizeof l));
  }
  int code = cli_session_run(fd, session_tls, name, &so);
  sk_tls_ctx_free(ctx);
  return code;
}

const cli_command_t cli_connect = {
    .name = "connect",
    .run = run,
    .summary = "connect to an endpoint; stdin to it, it to stdout",
    .usage = usage,
};
