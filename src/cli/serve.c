/* serve.c - `sockit serve`: host services on endpoints; alone, the hub of
 * every service on default localhost endpoints. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

#include "cli/cli.h"
#include "cli/tlsopt.h"
#include "services/services.h"
#include "services/web.h"
#include "sockit/relay.h"
#include "cli/serve_xfer.h"

static const char usage[] =
    "Usage: sockit serve [OPTIONS] [SERVICE ENDPOINT... [SERVICE ENDPOINT...]]\n"
    "       sockit serve [OPTIONS] --config FILE\n"
    "\n"
    "Hosts services on endpoints, all in one process. With no SERVICE, every\n"
    "service on its default localhost endpoints (the hub). Prints a table of\n"
    "what listens where on standard output.\n"
    "\n"
    "Services:\n"
    "%s"
    "\n"
    "Options:\n"
    "  --config FILE         read 'SERVICE ENDPOINT... [--max-conns=N] [--idle-timeout=S]'\n"
    "                        lines from FILE ('#' starts a comment), and relays:\n"
    "                        'relay LISTEN TARGET... [--idle-timeout=S] [--max-conns=N]'\n"
    "                        and file drop boxes: 'xfer LISTEN [--dir=DIR] [--max-files=N]\n"
    "                        [--max-total=SIZE] [--idle-timeout=S]' (docs/xfer.md)\n"
    "  --workers N           N threads, each serving every endpoint (default 1;\n"
    "                        0 = one per core); tcp/udp use SO_REUSEPORT\n"
    "  --max-conns N         at most N connections per service and worker\n"
    "  --idle-timeout SECS   close connections idle this long\n"
    "  --grace SECS          at SIGINT/SIGTERM, live connections get SECS (default 2)\n"
    "  --dgram-rate N        udp: answer each source address at most N datagrams a\n"
    "                        second (default 50; 0 = no limit); the rest are dropped\n"
    "  --dgram-burst N       udp: ... in bursts of at most N (default 20)\n"
    "  -v, --verbose         one log line per connection on stderr\n"
    "  -h, --help            this help\n"
    "\n" CLI_TLS_SERVER_HELP
    "  Any stream service takes tls:// endpoints; one certificate serves them all.\n"
    "\n"
    "Examples:\n"
    "  sockit serve\n"
    "  sockit serve --self-signed echo tls://127.0.0.1:7443 upper tls://127.0.0.1:55443\n"
    "  sockit serve echo tcp://:7 udp://:7 time tcp://127.0.0.1:8009\n";

#define MAX_SERVICES 64

typedef struct {
  const svc_t *svc;
  sk_server_t *srv;
  unsigned long max_conns;
  uint64_t idle_ms;
  int nendpoints;
} hosted_t;

typedef struct {
  hosted_t hosted[MAX_SERVICES];
  int n;
  sk_relay_t *relays[MAX_SERVICES]; /* `relay LISTEN TARGET...` config lines */
  int nrelays;
  unsigned long max_conns;
  uint64_t idle_ms, grace_ms;
  unsigned dgram_rate, dgram_burst; /* 0: the library's defaults */
  int verbose;
  sk_loop_t *main_loop;
  cli_tls_t tls;         /* the TLS flags, for every tls:// endpoint */
  sk_tls_ctx_t *tls_ctx; /* made at the first tls:// endpoint */
} serve_t;

static void print_usage(void) {
  char list[2048] = "";
  size_t used = 0;
  for (int i = 0; svc_all[i]; i++)
    used += (size_t)snprintf(list + used, sizeof list - used, "  %-9s %s\n", svc_all[i]->name,
                             svc_all[i]->summary);
  printf(usage, list);
}

static void log_line(void *ctx, const char *line) {
  cli_error("%s: %s", ((const svc_t *)ctx)->name, line);
}

static void error_line(void *ctx, const char *msg) {
  cli_error("%s: %s", ((const svc_t *)ctx)->name, msg);
}

/* Adds svc to the table (or finds it) and returns its slot, or NULL. */
static hosted_t *host(serve_t *sv, const svc_t *svc) {
  for (int i = 0; i < sv->n; i++)
    if (sv->hosted[i].svc == svc)
      return &sv->hosted[i];
  if (sv->n == MAX_SERVICES)
    return NULL;
  hosted_t *h = &sv->hosted[sv->n++];
  memset(h, 0, sizeof *h);
  h->svc = svc;
  h->max_conns = sv->max_conns;
  h->idle_ms = sv->idle_ms ? sv->idle_ms : svc_idle_default_ms(svc);
  return h;
}

static int ensure_server(serve_t *sv, hosted_t *h) {
  if (h->srv)
    return 0;
  sk_server_opts_t o = {.handler = h->svc->handler,
                        .ctx = (void *)h->svc,
                        .in_limit = h->svc->in_limit,
                        .max_conns = h->max_conns,
                        .idle_timeout_ms = h->idle_ms,
                        .grace_ms = sv->grace_ms,
                        .on_error = error_line,
                        .on_log = sv->verbose ? log_line : NULL,
                        .tls_timeout_ms = sv->tls.handshake_ms,
                        .dgram_rate = sv->dgram_rate,
                        .dgram_burst = sv->dgram_burst};
  int r = sk_server_new(&h->srv, &o);
  if (r < 0)
    cli_error("%s: %s", h->svc->name, sk_strerror(r));
  return r;
}

/* The TLS context every tls:// endpoint shares, made (and its pin
 * printed) at the first; name is that endpoint. Returns EXIT_OK,
 * EXIT_USAGE (no certificate asked for) or EXIT_NET. */
static int need_tls(serve_t *sv, const char *name) {
  if (sv->tls_ctx)
    return EXIT_OK;
  if (cli_tls_server_check(&sv->tls, 1, "serve") < 0)
    return EXIT_USAGE;
  return (sv->tls_ctx = cli_tls_context(&sv->tls, 1, name)) ? EXIT_OK : EXIT_NET;
}

/* Binds one endpoint for a service. Returns EXIT_OK, EXIT_USAGE or EXIT_NET. */
static int add_endpoint(serve_t *sv, hosted_t *h, const char *text, int workers) {
  char err[SK_ERRLEN];
  sk_endpoint_t ep;
  if (sk_endpoint_parse(&ep, text, SK_EP_LISTEN, err, sizeof err) < 0)
    return cli_usage_error("serve", "%s", err);
  if (ep.kind == SK_EP_STDIO)
    return cli_usage_error("serve", "%s: a service needs a socket endpoint", h->svc->name);
  if (ensure_server(sv, h) < 0)
    return EXIT_NET;
  sk_sockopts_t so = {.nodelay = 1, .reuseport = workers != 1 && !svc_single_loop(h->svc)};
  int code = (ep.flags & SK_EP_TLS) ? need_tls(sv, text) : EXIT_OK;
  if (code != EXIT_OK)
    return code;
  if (((ep.flags & SK_EP_TLS) ? sk_server_listen_tls(h->srv, &ep, &so, sv->tls_ctx, err, sizeof err)
                              : sk_server_listen(h->srv, &ep, &so, err, sizeof err)) < 0) {
    cli_error("%s: %s", h->svc->name, err);
    return EXIT_NET;
  }
  h->nendpoints++;
  return EXIT_OK;
}

/* Parses "--max-conns=N" / "--idle-timeout=S" for one config line. */
static int line_option(hosted_t *h, const char *opt, const char *file, int lineno) {
  const char *v = strchr(opt, '=');
  unsigned long n;
  if (v && strncmp(opt, "--max-conns=", 12) == 0 && cli_parse_uint(v + 1, 1000000, &n) == 0) {
    h->max_conns = n;
    return 0;
  }
  if (v && strncmp(opt, "--idle-timeout=", 15) == 0 && cli_parse_seconds(v + 1, &h->idle_ms) == 0)
    return 0;
  cli_error("%s:%d: bad option '%s' (expected --max-conns=N or --idle-timeout=SECS)", file,
            lineno, opt);
  return -1;
}

static void relay_log(void *ctx, const char *line) {
  (void)ctx;
  cli_error("relay: %s", line);
}

/* A config line `relay LISTEN TARGET... [--idle-timeout=S] [--max-conns=N]
 * [--connect-timeout=S]`: the relay joins the hub (it has no default
 * endpoints, so it is there only when configured). */
static int add_relay(serve_t *sv, char **words, int nw, const char *path, int lineno,
                     int workers) {
  sk_relay_opts_t o = {.on_error = relay_log, .on_log = sv->verbose ? relay_log : NULL};
  sk_sockopts_t so = {.nodelay = 1, .reuseport = workers != 1};
  sk_endpoint_t eps[SK_RELAY_MAX_TARGETS + 1];
  int neps = 0;
  char err[SK_ERRLEN];
  for (int i = 0; i < nw; i++) {
    const char *v = strchr(words[i], '=');
    if (strncmp(words[i], "--", 2) == 0) {
      uint64_t ms;
      if (v && strncmp(words[i], "--idle-timeout=", 15) == 0 && cli_parse_seconds(v + 1, &ms) == 0)
        o.idle_timeout_ms = ms;
      else if (v && strncmp(words[i], "--connect-timeout=", 18) == 0 &&
               cli_parse_seconds(v + 1, &ms) == 0 && ms > 0)
        o.connect_timeout_ms = ms;
      else if (!(v && strncmp(words[i], "--max-conns=", 12) == 0 &&
                 cli_parse_uint(v + 1, 1000000, &o.max_conns) == 0)) {
        cli_error("%s:%d: bad relay option '%s'", path, lineno, words[i]);
        return EXIT_USAGE;
      }
      continue;
    }
    if (neps == SK_RELAY_MAX_TARGETS + 1 ||
        sk_endpoint_parse(&eps[neps], words[i], neps ? SK_EP_CONNECT : SK_EP_LISTEN, err,
                          sizeof err) < 0) {
      cli_error("%s:%d: %s", path, lineno, neps == SK_RELAY_MAX_TARGETS + 1 ? "too many targets"
                                                                             : err);
      return EXIT_USAGE;
    }
    neps++;
  }
  if (neps < 2) {
    cli_error("%s:%d: relay needs LISTEN and at least one TARGET", path, lineno);
    return EXIT_USAGE;
  }
  for (int i = 1; i < neps; i++)
    if (eps[i].flags & SK_EP_TLS) {
      cli_error("%s:%d: tls:// targets need a client's trust (--ca, --pin): use 'sockit relay' "
                "for them",
                path, lineno);
      return EXIT_USAGE;
    }
  if (eps[0].flags & SK_EP_TLS) { /* terminates TLS with serve's certificate */
    char name[SK_ENDPOINT_STRLEN];
    int code = need_tls(sv, sk_endpoint_format(&eps[0], name, sizeof name));
    if (code != EXIT_OK)
      return code;
    o.tls_server = sv->tls_ctx;
    o.tls_timeout_ms = sv->tls.handshake_ms;
  }
  if (sv->nrelays == MAX_SERVICES)
    return EXIT_USAGE;
  if (sk_relay_new(&sv->relays[sv->nrelays], &eps[0], eps + 1, neps - 1, &so, &o, err,
                   sizeof err) < 0) {
    cli_error("relay: %s", err);
    return EXIT_NET;
  }
  sv->nrelays++;
  return EXIT_OK;
}

static int read_config(serve_t *sv, const char *path, int workers) {
  FILE *f = fopen(path, "r");
  if (!f) {
    cli_error("open %s: %s", path, strerror(errno));
    return EXIT_USAGE;
  }
  char line[1024];
  int lineno = 0, code = EXIT_OK;
  while (code == EXIT_OK && fgets(line, sizeof line, f)) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash)
      *hash = '\0';
    char *words[34];
    int nw = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok && nw < 34; tok = strtok(NULL, " \t\r\n"))
      words[nw++] = tok;
    if (nw == 0)
      continue;
    if (strcmp(words[0], "xfer") == 0) { /* the file drop box: cli/serve_xfer.c */
      /* A tls:// drop box terminates TLS with the certificate of every
       * other tls:// endpoint (borrowed; freed after serve_xfer_free). */
      for (int i = 1; i < nw && code == EXIT_OK; i++)
        if (strncmp(words[i], "tls://", 6) == 0 && (code = need_tls(sv, words[i])) == EXIT_OK)
          serve_xfer_use_tls(sv->tls_ctx, sv->tls.handshake_ms);
      if (code != EXIT_OK)
        break;
      code = serve_xfer_config(words + 1, nw - 1, path, lineno, sv->verbose);
      continue;
    }
    if (strcmp(words[0], "relay") == 0) {
      code = add_relay(sv, words + 1, nw - 1, path, lineno, workers);
      continue;
    }
    const svc_t *svc = svc_find(words[0]);
    if (!svc) {
      cli_error("%s:%d: unknown service '%s'", path, lineno, words[0]);
      code = EXIT_USAGE;
      break;
    }
    hosted_t *h = host(sv, svc);
    if (!h) {
      code = EXIT_USAGE;
      break;
    }
    for (int i = 1; i < nw && code == EXIT_OK; i++)
      if (strncmp(words[i], "--", 2) == 0 && line_option(h, words[i], path, lineno) < 0)
        code = EXIT_USAGE;
    int eps = 0;
    for (int i = 1; i < nw && code == EXIT_OK; i++)
      if (strncmp(words[i], "--", 2) != 0) {
        code = add_endpoint(sv, h, words[i], workers);
        eps++;
      }
    if (code == EXIT_OK && eps == 0) {
      cli_error("%s:%d: service '%s' needs at least one endpoint", path, lineno, words[0]);
      code = EXIT_USAGE;
    }
  }
  fclose(f);
  return code;
}

static void print_table(const serve_t *sv) {
  printf("%-9s %s\n", "SERVICE", "ENDPOINT");
  for (int i = 0; i < sv->n; i++) {
    for (int j = 0;; j++) {
      const sk_listener_t *l = sk_server_listener(sv->hosted[i].srv, j);
      if (!l)
        break;
      sk_endpoint_t ep = l->ep;
      if (ep.kind == SK_EP_TCP || ep.kind == SK_EP_UDP)
        ep.port = (uint16_t)sk_sockaddr_port(&l->bound);
      char text[SK_ENDPOINT_STRLEN];
      printf("%-9s %s\n", sv->hosted[i].svc->name, sk_endpoint_format(&ep, text, sizeof text));
    }
  }
  for (int i = 0; i < sv->nrelays; i++) {
    const sk_listener_t *l = sk_relay_listener(sv->relays[i]);
    sk_endpoint_t ep = l->ep;
    if (ep.kind == SK_EP_TCP || ep.kind == SK_EP_UDP)
      ep.port = (uint16_t)sk_sockaddr_port(&l->bound);
    char text[SK_ENDPOINT_STRLEN];
    printf("%-9s %s\n", "relay", sk_endpoint_format(&ep, text, sizeof text));
  }
  serve_xfer_table();
  fflush(stdout);
  /* The chat's web side: the address to open in a browser. */
  for (int i = 0; i < sv->n; i++)
    for (int j = 0; sv->hosted[i].svc == &svc_chat_web; j++) {
      const sk_listener_t *l = sk_server_listener(sv->hosted[i].srv, j);
      char url[SK_ENDPOINT_STRLEN + 16];
      if (!l)
        break;
      if (cli_listener_url(l, url, sizeof url)[0])
        cli_error("chat page: %s", url);
    }
}

static void on_stop_signal(sk_loop_t *loop, int signo, void *data) {
  serve_t *sv = data;
  (void)signo;
  for (int i = 0; i < sv->n; i++)
    sk_server_stop(sv->hosted[i].srv);
  for (int i = 0; i < sv->nrelays; i++)
    sk_relay_stop(sv->relays[i]);
  serve_xfer_stop();
  /* Let the loop end once the services have; a second signal kills. */
  sk_loop_signal(loop, SIGINT, NULL, NULL);
  sk_loop_signal(loop, SIGTERM, NULL, NULL);
}

typedef struct {
  sk_loop_t *loop;
  pthread_t thread;
} worker_t;

static void *worker_main(void *arg) {
  sk_loop_run(((worker_t *)arg)->loop);
  return NULL;
}

enum { OPT_CONFIG = 256, OPT_WORKERS, OPT_MAX_CONNS, OPT_IDLE, OPT_GRACE, OPT_DGRAM_RATE,
       OPT_DGRAM_BURST };

static int run(int argc, char **argv) {
  static const struct option longopts[] = {{"config", required_argument, 0, OPT_CONFIG},
                                           {"workers", required_argument, 0, OPT_WORKERS},
                                           {"max-conns", required_argument, 0, OPT_MAX_CONNS},
                                           {"idle-timeout", required_argument, 0, OPT_IDLE},
                                           {"grace", required_argument, 0, OPT_GRACE},
                                           {"dgram-rate", required_argument, 0, OPT_DGRAM_RATE},
                                           {"dgram-burst", required_argument, 0, OPT_DGRAM_BURST},
                                           {"verbose", no_argument, 0, 'v'},
                                           CLI_TLS_LONGOPTS,
                                           {0, 0, 0, 0}};
  static serve_t sv;
  memset(&sv, 0, sizeof sv);
  const char *config = NULL;
  unsigned long workers = 1;
  int c, code = EXIT_USAGE;
  opterr = 0;
  optind = 1;
  /* '+': SERVICE ENDPOINT words keep their order; options come first. */
  while ((c = getopt_long(argc, argv, "+v", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_CONFIG: config = optarg; break;
    case OPT_WORKERS:
      if (cli_parse_uint(optarg, 256, &workers) < 0)
        return cli_usage_error("serve", "bad --workers '%s': expected 0-256", optarg);
      break;
    case OPT_MAX_CONNS:
      if (cli_parse_uint(optarg, 1000000, &sv.max_conns) < 0)
        return cli_usage_error("serve", "bad --max-conns '%s'", optarg);
      break;
    case OPT_IDLE:
      if (cli_parse_seconds(optarg, &sv.idle_ms) < 0)
        return cli_usage_error("serve", "bad --idle-timeout '%s': expected seconds", optarg);
      break;
    case OPT_GRACE:
      if (cli_parse_seconds(optarg, &sv.grace_ms) < 0)
        return cli_usage_error("serve", "bad --grace '%s': expected seconds", optarg);
      if (sv.grace_ms == 0)
        sv.grace_ms = 1;
      break;
    case OPT_DGRAM_RATE:
    case OPT_DGRAM_BURST: {
      unsigned long v;
      if (cli_parse_uint(optarg, 1000000, &v) < 0 || (c == OPT_DGRAM_BURST && v == 0))
        return cli_usage_error("serve", "bad --%s '%s'", c == OPT_DGRAM_RATE ? "dgram-rate"
                               : "dgram-burst", optarg);
      if (c == OPT_DGRAM_BURST)
        sv.dgram_burst = (unsigned)v;
      else
        sv.dgram_rate = v ? (unsigned)v : SK_SERVER_DGRAM_UNLIMITED;
      break;
    }
    case 'v': sv.verbose = 1; break;
    default:
      if (c >= CLI_TLS_CA && c <= CLI_TLS_TIMEOUT) {
        if (cli_tls_option(&sv.tls, c, optarg, "serve") < 0)
          return EXIT_USAGE;
        break;
      }
      return cli_usage_error("serve", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    workers = n > 0 ? (unsigned long)n : 1;
  }
  if (config && optind < argc)
    return cli_usage_error("serve", "give services either on the command line or in --config");
  if (config) {
    code = read_config(&sv, config, (int)workers);
  } else if (optind == argc) {
    code = EXIT_OK;
    for (int i = 0; svc_all[i] && code == EXIT_OK; i++)
      for (int j = 0; svc_all[i]->hub_endpoints[j] && code == EXIT_OK; j++)
        code = add_endpoint(&sv, host(&sv, svc_all[i]), svc_all[i]->hub_endpoints[j],
                            (int)workers);
    if (code == EXIT_OK)
      code = serve_xfer_hub(sv.verbose); /* the file drop box, on its own thread */
  } else {
    hosted_t *h = NULL;
    code = EXIT_OK;
    for (int i = optind; i < argc && code == EXIT_OK; i++) {
      const svc_t *svc = svc_find(argv[i]);
      if (svc) {
        if (h && h->nendpoints == 0)
          code = cli_usage_error("serve", "service '%s' needs at least one endpoint",
                                 h->svc->name);
        h = host(&sv, svc);
        continue;
      }
      if (!h) {
        code = cli_usage_error("serve", "unknown service '%s'", argv[i]);
        break;
      }
      if (!strchr(argv[i], ':') && strcmp(argv[i], "-") != 0) {
        code = cli_usage_error("serve", "unknown service '%s'", argv[i]);
        break;
      }
      code = add_endpoint(&sv, h, argv[i], (int)workers);
    }
    if (code == EXIT_OK && h && h->nendpoints == 0)
      code = cli_usage_error("serve", "service '%s' needs at least one endpoint", h->svc->name);
  }
  /* TLS flags with no tls:// endpoint to use them */
  if (code == EXIT_OK && !sv.tls_ctx && cli_tls_server_check(&sv.tls, 0, "serve") < 0)
    code = EXIT_USAGE;
  worker_t *w = NULL;
  if (code != EXIT_OK)
    goto out;

  code = EXIT_NET;
  w = calloc(workers, sizeof *w);
  if (!w)
    goto out;
  for (unsigned long i = 0; i < workers; i++) {
    int r = sk_loop_new(&w[i].loop);
    for (int j = 0; r == 0 && j < sv.n; j++)
      if (i == 0 || !svc_single_loop(sv.hosted[j].svc)) /* chat state lives on loop 0 only */
        r = sk_server_attach(sv.hosted[j].srv, w[i].loop);
    for (int j = 0; r == 0 && j < sv.nrelays; j++)
      r = sk_relay_attach(sv.relays[j], w[i].loop);
    if (r == 0 && i == 0)
      r = serve_xfer_attach(w[i].loop); /* drop boxes: their own threads, loop 0 waits for them */
    if (r < 0) {
      cli_error("serve: %s", sk_strerror(r));
      goto out;
    }
  }
  sk_net_reserve_fd();
  sk_loop_signal(w[0].loop, SIGINT, on_stop_signal, &sv);
  sk_loop_signal(w[0].loop, SIGTERM, on_stop_signal, &sv);
  print_table(&sv); /* only now: a supervisor may signal once it sees this */
  cli_activation_report();
  unsigned long started = 1;
  for (; started < workers; started++)
    if (pthread_create(&w[started].thread, NULL, worker_main, &w[started]) != 0) {
      cli_error("serve: cannot start worker thread %lu", started);
      for (int j = 0; j < sv.n; j++)
        sk_server_stop(sv.hosted[j].srv);
      break;
    }
  sk_loop_run(w[0].loop);
  for (unsigned long i = 1; i < started; i++)
    pthread_join(w[i].thread, NULL);
  code = EXIT_OK;
out:
  if (w)
    for (unsigned long i = 0; i < workers; i++)
      if (w[i].loop)
        sk_loop_free(w[i].loop);
  free(w);
  for (int i = 0; i < sv.n; i++)
    sk_server_free(sv.hosted[i].srv);
  for (int i = 0; i < sv.nrelays; i++)
    sk_relay_free(sv.relays[i]);
  serve_xfer_free();
  sk_tls_ctx_free(sv.tls_ctx); /* after the servers and relays that borrowed it */
  return code;
}

/* The help text lists the services, so it is made at run time. */
const cli_command_t cli_serve = {
    .name = "serve",
    .run = run,
    .summary = "host services (echo, time, upper, ...); alone: the hub",
    .print_usage = print_usage,
};
