/* connect.c - `sockit connect ENDPOINT` (or nc's `HOST PORT`): the netcat
 * client, on the library's connector; `-z` scans ports. */
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/session.h"
#include "cli/tlsopt.h"
#include "sockit/connector.h"

#define SCAN_PORTS_MAX 65536
#define SCAN_PARALLEL 64             /* connects a scan keeps in flight */
#define CLI_ATTEMPT_MS_DEFAULT 130000 /* about the kernel's own SYN retries */

typedef struct {
  cli_tls_t tls;
  cli_session_opts_t so;
  uint64_t connect_timeout_ms, wait_ms;
  const char *source, *proxy;
  int ipv4, ipv6, udp, zero;
} connect_opts_t;

static const cli_opt_t options[] = {
    {CLI_OPT_GROUP, .help = "Options:"},
    {CLI_ROW(CLI_OPT_FLAG, '4', NULL, NULL, "use IPv4 addresses only", offsetof(connect_opts_t, ipv4))},
    {CLI_ROW(CLI_OPT_FLAG, '6', NULL, NULL, "use IPv6 addresses only", offsetof(connect_opts_t, ipv6))},
    {CLI_ROW(CLI_OPT_FLAG, 'u', "udp", NULL, "HOST PORT means udp, not tcp", offsetof(connect_opts_t, udp))},
    {CLI_ROW(CLI_OPT_FLAG, 'z', "zero-io", NULL,
     "scan HOST PORT[-PORT]...: connect, close (-v: each port)",
     offsetof(connect_opts_t, zero))},
    {CLI_ROW(CLI_OPT_SECONDS, 'w', "wait", "SECS",
     "connect within SECS; end after SECS idle (nc's -w)",
     offsetof(connect_opts_t, wait_ms))},
    {CLI_ROW(CLI_OPT_SECONDS, 0, "connect-timeout", "SECS", "give up on each address after SECS",
     offsetof(connect_opts_t, connect_timeout_ms))},
    {CLI_ROW(CLI_OPT_SECONDS, 0, "idle-timeout", "SECS", "end (exit 1) after SECS with no data either way",
     offsetof(connect_opts_t, so.idle_timeout_ms))},
    {CLI_ROW(CLI_OPT_STRING, 0, "proxy", "URL",
     "through socks5://[USER:PASS@]HOST:PORT or http://... (CONNECT)",
     offsetof(connect_opts_t, proxy))},
    {CLI_ROW(CLI_OPT_FLAG, 0, "crlf", NULL, "send input LF as CRLF", offsetof(connect_opts_t, so.crlf))},
    {CLI_ROW(CLI_OPT_STRING, 's', "source", "ADDR", "bind to host, host:port, [v6]:port or :port first",
     offsetof(connect_opts_t, source))},
    {CLI_ROW(CLI_OPT_FLAG, 0, "no-shutdown", NULL, "keep the write half open at end of input",
     offsetof(connect_opts_t, so.no_shutdown))},
    {CLI_ROW(CLI_OPT_FLAG, 0, "chunk", NULL, "datagram endpoints: one datagram per read, not per line",
     offsetof(connect_opts_t, so.chunk))},
    {CLI_ROW(CLI_OPT_FLAG, 'v', "verbose", NULL, "report the connection on stderr",
     offsetof(connect_opts_t, so.verbose))},
    {CLI_OPT_INCLUDE, .off = offsetof(connect_opts_t, tls), .sub = cli_tls_client_opts,
     .seen = offsetof(connect_opts_t, tls.any) + 1},
    {CLI_OPT_END}};

/* ---- operands --------------------------------------------------------------------------- */

/* A port as a number or a service name (/etc/services) for proto. Returns
 * 1-65535, or -1. */
static int parse_port(const char *text, const char *proto) {
  unsigned long v;
  if (cli_parse_uint(text, 65535, &v) == 0)
    return v >= 1 ? (int)v : -1;
  struct servent *se = getservbyname(text, proto);
  return se ? ntohs((uint16_t)se->s_port) : -1;
}

/* "tcp://HOST:PORT" from nc's two operands (IPv6 hosts bracketed). */
static int shorthand(sk_endpoint_t *ep, const char *host, int port, int udp, char *err,
                     size_t errlen) {
  char text[SK_HOST_MAX + 40];
  int v6 = strchr(host, ':') != NULL && host[0] != '[';
  snprintf(text, sizeof text, "%s://%s%s%s:%d", udp ? "udp" : "tcp", v6 ? "[" : "", host,
           v6 ? "]" : "", port);
  return sk_endpoint_parse(ep, text, SK_EP_CONNECT, err, errlen);
}

/* ---- -z: the scan ----------------------------------------------------------------------- */

typedef struct {
  sk_loop_t *loop;
  const connect_opts_t *o;
  const sk_connect_opts_t *co;
  sk_endpoint_t base;
  int *ports, nports, next, inflight, open, verbose;
  int *result;   /* per port: 1 open, negative errno */
  int reported;  /* results printed in port order up to here */
} scan_t;

static void scan_more(scan_t *s);

static void scan_report(scan_t *s) {
  while (s->reported < s->nports && s->result[s->reported] != 0) {
    int i = s->reported++;
    if (!s->verbose)
      continue;
    struct servent *se = getservbyport(htons((uint16_t)s->ports[i]), "tcp");
    if (s->result[i] > 0)
      cli_error("connect %s port %d (tcp%s%s) open", s->base.host, s->ports[i],
                se ? "/" : "", se ? se->s_name : "");
    else
      cli_error("connect %s port %d (tcp) failed: %s", s->base.host, s->ports[i],
                sk_strerror(s->result[i]));
  }
}

typedef struct {
  scan_t *s;
  int i;
} scan_job_t;

static void scan_done(void *data, int err, sk_connected_t *conn, const char *msg) {
  scan_job_t *j = data;
  scan_t *s = j->s;
  (void)msg;
  if (conn) {
    sk_tls_free(conn->tls);
    close(conn->fd);
    s->open++;
  }
  s->result[j->i] = err == 0 ? 1 : (err == SK_ETIMEDOUT ? -ETIMEDOUT : err);
  s->inflight--;
  free(j);
  scan_report(s);
  scan_more(s);
}

static void scan_more(scan_t *s) {
  while (s->inflight < SCAN_PARALLEL && s->next < s->nports) {
    int i = s->next++;
    scan_job_t *j = malloc(sizeof *j);
    sk_endpoint_t ep = s->base;
    ep.port = (uint16_t)s->ports[i];
    if (j) {
      j->s = s;
      j->i = i;
    }
    if (!j || !sk_connect_start(s->loop, &ep, 1, s->co, scan_done, j)) {
      free(j);
      s->result[i] = -ENOMEM;
      scan_report(s);
      continue;
    }
    s->inflight++;
  }
}

/* Adds "N" or "N-M" to ports. Returns 0 or -1 (bad, or too many). */
static int add_ports(const char *text, int *ports, int *n) {
  char buf[64];
  snprintf(buf, sizeof buf, "%s", text);
  char *dash = strchr(buf, '-');
  if (dash)
    *dash = '\0';
  int lo = parse_port(buf, "tcp"), hi = dash ? parse_port(dash + 1, "tcp") : lo;
  if (lo < 0 || hi < lo)
    return -1;
  for (int p = lo; p <= hi; p++) {
    if (*n >= SCAN_PORTS_MAX)
      return -1;
    ports[(*n)++] = p;
  }
  return 0;
}

static int scan(const connect_opts_t *o, const sk_connect_opts_t *co, int argc, char **argv) {
  if (argc < 2)
    return cli_usage_error("connect", "-z needs HOST PORT[-PORT]...");
  if (o->udp)
    return cli_usage_error("connect", "-z scans tcp ports; -u does not apply");
  scan_t s = {.o = o, .co = co, .verbose = o->so.verbose};
  s.ports = malloc(SCAN_PORTS_MAX * sizeof *s.ports);
  char err[SK_ERRLEN];
  int code = EXIT_NET;
  if (!s.ports) {
    cli_error("connect: out of memory");
    return EXIT_NET;
  }
  for (int i = 1; i < argc; i++)
    if (add_ports(argv[i], s.ports, &s.nports) < 0) {
      free(s.ports);
      return cli_usage_error("connect", "bad port or range '%s'", argv[i]);
    }
  if (shorthand(&s.base, argv[0], s.ports[0], 0, err, sizeof err) < 0) {
    free(s.ports);
    return cli_usage_error("connect", "%s", err);
  }
  s.result = calloc((size_t)s.nports, sizeof *s.result);
  if (!s.result || sk_loop_new(&s.loop) < 0) {
    cli_error("connect: out of memory");
  } else {
    scan_more(&s);
    sk_loop_run(s.loop);
    sk_loop_free(s.loop);
    code = s.open > 0 ? EXIT_OK : EXIT_NET; /* as nc: success when a port answered */
  }
  free(s.result);
  free(s.ports);
  return code;
}

/* ---- the command ------------------------------------------------------------------------ */

static void report_connected(const char *name, const sk_connected_t *c, const char *proxy,
                             int verbose) {
  if (!verbose)
    return;
  sk_sockaddr_t local;
  local.len = sizeof local.ss;
  getsockname(c->fd, (struct sockaddr *)&local.ss, &local.len);
  char l[SK_ENDPOINT_STRLEN], p[SK_ENDPOINT_STRLEN];
  if (proxy)
    cli_error("connected to %s through proxy %s (from %s)", name,
              sk_sockaddr_format(&c->peer, p, sizeof p), sk_sockaddr_format(&local, l, sizeof l));
  else
    cli_error("connected to %s (%s from %s)", name, sk_sockaddr_format(&c->peer, p, sizeof p),
              sk_sockaddr_format(&local, l, sizeof l));
  if (c->tls) {
    char how[96], fp[SK_TLS_FINGERPRINT_LEN];
    cli_error("tls %s: %s, peer certificate %s", name, sk_tls_describe(c->tls, how, sizeof how),
              sk_tls_peer_fingerprint(c->tls, fp, sizeof fp)[0] ? fp : "(none)");
  }
}

/* Checks the options against each other and the endpoint, fills co.
 * Returns 0 or the usage error's exit code. */
static int settle(connect_opts_t *o, const sk_endpoint_t *ep, sk_connect_opts_t *co,
                  sk_sockopts_t *sock, sk_proxy_t *px) {
  char err[SK_ERRLEN];
  if (o->ipv4 && o->ipv6)
    return cli_usage_error("connect", "-4 and -6 contradict each other: choose one");
  if (o->tls.any && !(ep->flags & SK_EP_TLS))
    return cli_usage_error("connect", "TLS options need a tls:// endpoint");
  if (o->tls.cfg.pin && o->tls.cfg.insecure)
    return cli_usage_error("connect", "--pin and --insecure contradict each other: choose one");
  if (o->proxy) {
    if (sk_proxy_parse(px, o->proxy, err, sizeof err) < 0)
      return cli_usage_error("connect", "%s", err);
    if (ep->kind != SK_EP_TCP)
      return cli_usage_error("connect", "--proxy carries tcp and tls endpoints only");
    co->proxy = px;
  }
  memset(sock, 0, sizeof *sock);
  sock->nodelay = 1;
  sock->source = o->source;
  co->so = sock;
  co->family = o->ipv4 ? AF_INET : o->ipv6 ? AF_INET6 : AF_UNSPEC;
  co->attempt_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms
                           : o->wait_ms          ? o->wait_ms
                                                 : CLI_ATTEMPT_MS_DEFAULT;
  co->timeout_ms = o->wait_ms;
  co->tls_timeout_ms = o->tls.handshake_ms;
  if (o->wait_ms && !o->so.idle_timeout_ms)
    o->so.idle_timeout_ms = o->wait_ms;
  return 0;
}

static int run(int argc, char **argv) {
  connect_opts_t o;
  memset(&o, 0, sizeof o);
  int first;
  if (cli_opts_parse("connect", options, &o, argc, argv, &first) < 0)
    return EXIT_USAGE;
  argv += first;
  argc -= first;
  sk_connect_opts_t co;
  memset(&co, 0, sizeof co);
  sk_sockopts_t sock;
  sk_proxy_t px;
  sk_endpoint_t ep;
  char err[SK_ERRLEN];
  if (o.zero) {
    memset(&ep, 0, sizeof ep);
    ep.kind = SK_EP_TCP;
    int r = settle(&o, &ep, &co, &sock, &px);
    if (r)
      return r;
    if (!o.wait_ms)
      co.attempt_timeout_ms = SK_CONNECT_ATTEMPT_MS;
    return scan(&o, &co, argc, argv);
  }
  if (argc == 2 && !strstr(argv[0], "://")) {
    int port = parse_port(argv[1], o.udp ? "udp" : "tcp");
    if (port < 0)
      return cli_usage_error("connect", "bad port '%s': a number 1-65535 or a service name",
                             argv[1]);
    if (shorthand(&ep, argv[0], port, o.udp, err, sizeof err) < 0)
      return cli_usage_error("connect", "%s", err);
  } else if (argc == 1) {
    if (o.udp)
      return cli_usage_error("connect", "-u is for the HOST PORT form; write udp://HOST:PORT");
    if (sk_endpoint_parse(&ep, argv[0], SK_EP_CONNECT, err, sizeof err) < 0)
      return cli_usage_error("connect", "%s", err);
  } else {
    return cli_usage_error("connect", argc == 0 ? "missing ENDPOINT (or HOST PORT)"
                                                : "expected ENDPOINT or HOST PORT, got more");
  }
  if (ep.kind == SK_EP_STDIO)
    return cli_usage_error("connect", "connect needs a socket endpoint, not standard input");
  int r = settle(&o, &ep, &co, &sock, &px);
  if (r)
    return r;
  char name[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(&ep, name, sizeof name);
  sk_tls_ctx_t *ctx = NULL;
  if ((ep.flags & SK_EP_TLS) && !(ctx = cli_tls_context(&o.tls, 0, name)))
    return EXIT_NET;
  co.tls = ctx;
  sk_connected_t conn;
  if (sk_connect_wait(&ep, 1, &co, &conn, err, sizeof err) < 0) {
    cli_error("%s", err);
    sk_tls_ctx_free(ctx);
    return EXIT_NET;
  }
  report_connected(name, &conn, o.proxy, o.so.verbose);
  int code = cli_session_run(conn.fd, conn.tls, name, &o.so);
  sk_tls_ctx_free(ctx);
  return code;
}

const cli_command_t cli_connect = {
    .name = "connect",
    .run = run,
    .summary = "connect to an endpoint; stdin to it, it to stdout",
    .usage = "Usage: sockit connect [OPTIONS] ENDPOINT\n"
             "       sockit connect [OPTIONS] HOST PORT      (nc style: tcp, or udp with -u)\n"
             "       sockit connect -z [-v] HOST PORT[-PORT]...\n"
             "\n"
             "Connects to ENDPOINT and copies standard input to it and what it sends to\n"
             "standard output. At end of input the write half is shut down and sockit\n"
             "reads on until the peer closes, so no reply is cut short. On datagram\n"
             "endpoints each input line is one datagram. A name's addresses are raced\n"
             "(IPv6 and IPv4 interleaved, a new one every 250 ms) and the first to\n"
             "answer is used. PORT may be a service name (http).\n"
             "\n",
    .options = options,
    .usage_tail = "\nExamples:\n"
                  "  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit connect localhost 80\n"
                  "  echo hello | sockit connect -u 127.0.0.1 7\n"
                  "  sockit connect -zv 127.0.0.1 20-25\n"
                  "  sockit connect --proxy socks5://127.0.0.1:1080 example.org 443\n"
                  "  sockit connect unix:/run/app.sock\n",
};
