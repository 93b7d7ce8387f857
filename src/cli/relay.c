/* relay.c - `sockit relay LISTEN TARGET...`: make a remote or Unix-socket
 * service appear local; `sockit relay --connect A B`: one session between
 * two endpoints. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/tlsopt.h"
#include "sockit/relay.h"

static const char usage[] =
    "Usage: sockit relay [OPTIONS] LISTEN TARGET [TARGET...]\n"
    "       sockit relay [OPTIONS] --connect A B\n"
    "\n"
    "Accepts on LISTEN and connects each client to a TARGET, then copies both\n"
    "ways (splice between sockets; end-of-stream carried across each way). With\n"
    "several TARGETs, clients go round-robin; a target that refuses or times out\n"
    "is skipped and tried again later. udp://LISTEN udp://TARGET keeps one\n"
    "upstream socket per client address. With --connect (or when A is '-'),\n"
    "connects to both A and B and relays that one session.\n"
    "\n"
    "Options:\n"
    "  --connect-timeout SECS  per target address (default 5)\n"
    "  --idle-timeout SECS     end a session after SECS with no data (udp: expire\n"
    "                          a client's session; default 60 for udp)\n"
    "  --retry SECS            skip a failed target this long (default 2)\n"
    "  --max-conns N           at most N sessions per worker (others wait in the backlog;\n"
    "                          udp: the session table, default 4096)\n"
    "  --max-per-source N      udp: at most N sessions per client address (default 256)\n"
    "  --allow CIDR, --deny CIDR  which clients may connect (repeatable)\n"
    "  --workers N             N threads (tcp/udp use SO_REUSEPORT; 0 = one per core)\n"
    "  --buffer BYTES          in-flight bytes per direction (default 262144)\n"
    "  --hexdump               dump all traffic on stderr ('>' client to target,\n"
    "                          '<' back) with session, offset and time\n"
    "  --port-file FILE        write the bound port to FILE once listening\n"
    "  -q, --quiet             no per-session log line\n"
    "  -h, --help              this help\n"
    "\n"
    "SIGUSR1 prints statistics on stderr; SIGINT/SIGTERM stop (live sessions get 2 s).\n"
    "\n" CLI_TLS_HELP
    "  A tls:// LISTEN terminates TLS (--cert/--key or --self-signed, --client-ca);\n"
    "  tls:// TARGETs originate it (--ca, --pin or --insecure; --cert/--key as a client\n"
    "  certificate when LISTEN is not tls://).\n"
    "\n"
    "Examples:\n"
    "  sockit relay tcp://127.0.0.1:6379 unix:/run/redis/redis.sock\n"
    "  sockit relay tcp://:8080 tcp://10.0.0.5:80 tcp://10.0.0.6:80\n"
    "  sockit relay udp://127.0.0.1:5353 udp://192.0.2.53:53\n"
    "  sockit relay --connect - unix:/run/app.sock\n";

typedef struct {
  sk_relay_t *relay;
  cli_acl_t acl;
  sk_loop_t *main_loop;
} relay_cli_t;

static void log_line(void *ctx, const char *line) {
  (void)ctx;
  cli_error("relay: %s", line);
}

static void error_line(void *ctx, const char *msg) {
  (void)ctx;
  cli_error("relay: %s", msg);
}

static int verify(void *ctx, const sk_sockaddr_t *peer) {
  return cli_acl_permits(&((relay_cli_t *)ctx)->acl, peer);
}

/* Appends printf output to out (cap bytes) at *used, never past cap. */
static void put(char *out, size_t cap, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *out, size_t cap, size_t *used, const char *fmt, ...) {
  if (*used >= cap)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + *used, cap - *used, fmt, ap);
  va_end(ap);
  if (n > 0)
    *used = *used + (size_t)n < cap ? *used + (size_t)n : cap - 1;
}

#define HEX_LINE_MAX 100 /* "  " + 16 offset digits + 16 * 3 + "  |" + 16 + "|\n" */

/* --hexdump: a header line per chunk, then offset, 16 bytes in hex and as
 * text. One write per chunk, so lines from workers never interleave. */
static void hexdump(void *ctx, unsigned long session, char dir, uint64_t offset, const void *p,
                    size_t n) {
  (void)ctx;
  const unsigned char *b = p;
  size_t cap = 200 + (n / 16 + 1) * HEX_LINE_MAX, used = 0;
  char *out = malloc(cap);
  if (!out)
    return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  put(out, cap, &used, "%c #%lu %s offset=%llu length=%zu %02d:%02d:%02d.%06ld\n", dir, session,
      dir == '>' ? "client->target" : "target->client", (unsigned long long)offset, n, tm.tm_hour,
      tm.tm_min, tm.tm_sec, (long)tv.tv_usec);
  for (size_t i = 0; i < n; i += 16) {
    put(out, cap, &used, "  %08llx ", (unsigned long long)(offset + i));
    for (size_t j = 0; j < 16; j++) {
      if (i + j < n)
        put(out, cap, &used, " %02x", b[i + j]);
      else
        put(out, cap, &used, "   ");
    }
    put(out, cap, &used, "  |");
    for (size_t j = 0; j < 16 && i + j < n; j++)
      put(out, cap, &used, "%c", b[i + j] >= 0x20 && b[i + j] < 0x7f ? b[i + j] : '.');
    put(out, cap, &used, "|\n");
  }
  ssize_t w = write(STDERR_FILENO, out, used);
  (void)w;
  free(out);
}

static void print_stats(relay_cli_t *rc) {
  sk_relay_stats_t st;
  char targets[2048];
  sk_relay_stats(rc->relay, &st);
  sk_relay_targets_text(rc->relay, targets, sizeof targets);
  fprintf(stderr,
          "sockit: relay: sessions %llu active, %llu total; bytes up %llu, down %llu "
          "(finished sessions); connect failures %llu; clients with no target %llu; udp "
          "sessions evicted %llu\n%s",
          (unsigned long long)st.sessions_active, (unsigned long long)st.sessions_total,
          (unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down,
          (unsigned long long)st.connect_failures, (unsigned long long)st.no_target,
          (unsigned long long)st.udp_evicted, targets);
  fflush(stderr);
}

static void on_signal(sk_loop_t *loop, int signo, void *data) {
  relay_cli_t *rc = data;
  if (signo == SIGUSR1) {
    print_stats(rc);
    return;
  }
  sk_relay_stop(rc->relay);
  /* Let the loop end once the sessions have; a second signal kills. */
  sk_loop_signal(loop, SIGINT, NULL, NULL);
  sk_loop_signal(loop, SIGTERM, NULL, NULL);
  sk_loop_signal(loop, SIGUSR1, NULL, NULL);
}

static void *worker_main(void *arg) {
  sk_loop_run(arg);
  return NULL;
}

/* Descriptors: two sockets and two pipes per session; lift the soft limit. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- one session: --connect A B ------------------------------------------------ */

typedef struct {
  sk_loop_t *loop;
  int code;
} one_t;

static void one_done(sk_bridge_t *br, const sk_bridge_end_t *end, void *data) {
  one_t *o = data;
  (void)br;
  o->code = EXIT_OK;
  if (end->err == SK_ETIMEDOUT) {
    cli_error("relay: idle timeout");
    o->code = EXIT_NET;
  } else if (end->err < 0 && end->err != -EPIPE) {
    cli_error("relay: %s %s: %s", end->op, end->side == 'a' ? "A" : "B", sk_strerror(end->err));
    o->code = EXIT_NET;
  }
  sk_loop_stop(o->loop);
}

static void one_signal(sk_loop_t *loop, int signo, void *data) {
  (void)signo;
  (void)data;
  sk_loop_stop(loop);
}

/* Connects a (stdio allowed) and b, and bridges them until both are done. */
static int run_one(const sk_endpoint_t *a, const sk_endpoint_t *b, const sk_sockopts_t *so,
                   uint64_t idle_ms, size_t buffer) {
  char err[SK_ERRLEN];
  int afd = -1, bfd;
  if (a->kind != SK_EP_STDIO && (afd = sk_net_connect(a, so, err, sizeof err)) < 0) {
    cli_error("%s", err);
    return EXIT_NET;
  }
  if ((bfd = sk_net_connect(b, so, err, sizeof err)) < 0) {
    cli_error("%s", err);
    if (afd >= 0)
      close(afd);
    return EXIT_NET;
  }
  one_t one = {.code = EXIT_OK};
  int r = sk_loop_new(&one.loop);
  if (r < 0) {
    cli_error("event loop: %s", sk_strerror(r));
    return EXIT_NET;
  }
  if (afd < 0)
    cli_stdio_nonblock();
  sk_bridge_side_t sa = {.rfd = afd >= 0 ? afd : STDIN_FILENO,
                         .wfd = afd >= 0 ? afd : STDOUT_FILENO,
                         .close_fds = afd >= 0};
  sk_bridge_side_t sb = {.rfd = bfd, .wfd = bfd, .close_fds = 1};
  sk_bridge_opts_t bo = {.limit = buffer, .idle_timeout_ms = idle_ms, .splice = 1,
                         .reset = 1};
  sk_bridge_t *br = NULL;
  r = sk_bridge_start(&br, one.loop, &sa, &sb, &bo, one_done, &one);
  if (r < 0) {
    cli_error("relay: %s", sk_strerror(r));
    if (afd >= 0)
      close(afd);
    close(bfd);
    sk_loop_free(one.loop);
    return EXIT_NET;
  }
  sk_loop_signal(one.loop, SIGINT, one_signal, NULL);
  sk_loop_signal(one.loop, SIGTERM, one_signal, NULL);
  sk_loop_run(one.loop);
  sk_bridge_free(br);
  sk_loop_free(one.loop);
  return one.code;
}

/* ---- the command ------------------------------------------------------------------- */

enum { OPT_CONNECT = 256, OPT_CONNECT_TIMEOUT, OPT_IDLE, OPT_RETRY, OPT_MAX_CONNS, OPT_ALLOW,
       OPT_DENY, OPT_WORKERS, OPT_BUFFER, OPT_HEXDUMP, OPT_PORT_FILE, OPT_MAX_PER_SOURCE };

static int run(int argc, char **argv) {
  static const struct option longopts[] = {
      {"connect", no_argument, 0, OPT_CONNECT},
      {"connect-timeout", required_argument, 0, OPT_CONNECT_TIMEOUT},
      {"idle-timeout", required_argument, 0, OPT_IDLE},
      {"retry", required_argument, 0, OPT_RETRY},
      {"max-conns", required_argument, 0, OPT_MAX_CONNS},
      {"max-per-source", required_argument, 0, OPT_MAX_PER_SOURCE},
      {"allow", required_argument, 0, OPT_ALLOW},
      {"deny", required_argument, 0, OPT_DENY},
      {"workers", required_argument, 0, OPT_WORKERS},
      {"buffer", required_argument, 0, OPT_BUFFER},
      {"hexdump", no_argument, 0, OPT_HEXDUMP},
      {"port-file", required_argument, 0, OPT_PORT_FILE},
      {"quiet", no_argument, 0, 'q'},
      CLI_TLS_LONGOPTS,
      {0, 0, 0, 0}};
  cli_tls_t tls;
  memset(&tls, 0, sizeof tls);
  static relay_cli_t rc;
  memset(&rc, 0, sizeof rc);
  sk_relay_opts_t o = {.ctx = &rc, .on_log = log_line, .on_error = error_line};
  sk_sockopts_t so = {.nodelay = 1};
  unsigned long workers = 1, ul;
  uint64_t ms;
  int one = 0, hex = 0, c, code = EXIT_USAGE;
  const char *port_file = NULL;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "q", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_CONNECT: one = 1; break;
    case OPT_CONNECT_TIMEOUT:
      if (cli_parse_seconds(optarg, &o.connect_timeout_ms) < 0 || o.connect_timeout_ms == 0 ||
          o.connect_timeout_ms > 0x7fffffff)
        return cli_usage_error("relay", "bad --connect-timeout '%s': expected seconds", optarg);
      so.connect_timeout_ms = (int)o.connect_timeout_ms;
      break;
    case OPT_IDLE:
      if (cli_parse_seconds(optarg, &o.idle_timeout_ms) < 0)
        return cli_usage_error("relay", "bad --idle-timeout '%s': expected seconds", optarg);
      break;
    case OPT_RETRY:
      if (cli_parse_seconds(optarg, &ms) < 0 || ms == 0)
        return cli_usage_error("relay", "bad --retry '%s': expected seconds", optarg);
      o.retry_ms = ms;
      break;
    case OPT_MAX_CONNS:
      if (cli_parse_uint(optarg, 1000000, &o.max_conns) < 0 || o.max_conns == 0)
        return cli_usage_error("relay", "bad --max-conns '%s': expected 1-1000000", optarg);
      break;
    case OPT_MAX_PER_SOURCE:
      if (cli_parse_uint(optarg, 1000000, &o.max_per_source) < 0 || o.max_per_source == 0)
        return cli_usage_error("relay", "bad --max-per-source '%s': expected 1-1000000", optarg);
      break;
    case OPT_ALLOW:
    case OPT_DENY:
      if (cli_acl_add(&rc.acl, c == OPT_ALLOW, optarg) < 0)
        goto out;
      o.verify = verify;
      break;
    case OPT_WORKERS:
      if (cli_parse_uint(optarg, 256, &workers) < 0)
        return cli_usage_error("relay", "bad --workers '%s': expected 0-256", optarg);
      break;
    case OPT_BUFFER:
      if (cli_parse_uint(optarg, 64ul << 20, &ul) < 0 || ul < 4096)
        return cli_usage_error("relay", "bad --buffer '%s': expected 4096-67108864 bytes",
                               optarg);
      o.buffer = ul;
      break;
    case OPT_HEXDUMP: hex = 1; break;
    case OPT_PORT_FILE: port_file = optarg; break;
    case 'q': o.on_log = NULL; break;
    default:
      if (c >= CLI_TLS_CA) {
        int r = cli_tls_option(&tls, c, optarg, "relay");
        if (r < 0)
          return EXIT_USAGE;
        if (r > 0)
          break;
      }
      return cli_usage_error("relay", "unknown option '%s'", argv[optind - 1]);
    }
  }
  int nargs = argc - optind;
  if (nargs < 2) {
    code = cli_usage_error("relay", "expected LISTEN and at least one TARGET");
    goto out;
  }
  char err[SK_ERRLEN];
  sk_endpoint_t first;
  one = one || strcmp(argv[optind], "-") == 0 || strcmp(argv[optind], "stdio") == 0;
  if (sk_endpoint_parse(&first, argv[optind], one ? SK_EP_CONNECT : SK_EP_LISTEN, err,
                        sizeof err) < 0) {
    code = cli_usage_error("relay", "%s", err);
    goto out;
  }
  sk_endpoint_t targets[SK_RELAY_MAX_TARGETS];
  if (nargs - 1 > SK_RELAY_MAX_TARGETS || (one && nargs != 2)) {
    code = cli_usage_error("relay", one ? "--connect relays exactly two endpoints, A and B"
                                        : "at most 16 targets");
    goto out;
  }
  for (int i = 1; i < nargs; i++) {
    if (sk_endpoint_parse(&targets[i - 1], argv[optind + i], SK_EP_CONNECT, err, sizeof err) <
        0) {
      code = cli_usage_error("relay", "%s", err);
      goto out;
    }
  }
  raise_nofile();
  if (one && ((first.flags | targets[0].flags) & SK_EP_TLS)) {
    code = cli_usage_error("relay", "--connect does not do tls:// yet; use `sockit connect "
                                    "tls://...` for one TLS session");
    goto out;
  }
  if (one) {
    if (hex)
      cli_error("relay: --hexdump applies to LISTEN mode only; ignored with --connect");
    code = run_one(&first, &targets[0], &so, o.idle_timeout_ms, o.buffer);
    goto out;
  }
  if (hex)
    o.tap = hexdump;
  int any_tls_target = 0;
  for (int i = 0; i < nargs - 1; i++)
    any_tls_target |= (targets[i].flags & SK_EP_TLS) != 0;
  if (tls.any && !any_tls_target && !(first.flags & SK_EP_TLS)) {
    code = cli_usage_error("relay", "TLS options need a tls:// endpoint");
    goto out;
  }
  code = EXIT_NET;
  char lname[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(&first, lname, sizeof lname);
  if ((first.flags & SK_EP_TLS) && !(o.tls_server = cli_tls_context(&tls, 1, lname)))
    goto out;
  if (any_tls_target) {
    cli_tls_t client = tls;
    if (first.flags & SK_EP_TLS)
      client.cfg.cert_file = client.cfg.key_file = NULL; /* those were the server's */
    if (!(o.tls_client = cli_tls_context(&client, 0, "targets")))
      goto out;
  }
  o.tls_timeout_ms = tls.handshake_ms;
  if (workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    workers = n > 0 ? (unsigned long)n : 1;
  }
  so.reuseport = workers > 1;
  code = EXIT_NET;
  if (sk_relay_new(&rc.relay, &first, targets, nargs - 1, &so, &o, err, sizeof err) < 0) {
    cli_error("%s", err);
    goto out;
  }
  sk_loop_t *loops[256] = {0};
  pthread_t threads[256];
  unsigned long started = 1;
  for (unsigned long i = 0; i < workers; i++) {
    int r = sk_loop_new(&loops[i]);
    if (r == 0)
      r = sk_relay_attach(rc.relay, loops[i]);
    if (r < 0) {
      cli_error("relay: %s", sk_strerror(r));
      goto free_loops;
    }
  }
  sk_net_reserve_fd();
  sk_loop_signal(loops[0], SIGINT, on_signal, &rc);
  sk_loop_signal(loops[0], SIGTERM, on_signal, &rc);
  sk_loop_signal(loops[0], SIGUSR1, on_signal, &rc);
  cli_announce_listener(sk_relay_listener(rc.relay));
  if (port_file && cli_write_port_file(port_file, sk_relay_listener(rc.relay)) < 0) {
    sk_relay_stop(rc.relay);
    code = EXIT_NET;
  } else {
    code = EXIT_OK;
  }
  for (; started < workers; started++)
    if (pthread_create(&threads[started], NULL, worker_main, loops[started]) != 0) {
      cli_error("relay: cannot start worker thread %lu", started);
      sk_relay_stop(rc.relay);
      break;
    }
  sk_loop_run(loops[0]);
  for (unsigned long i = 1; i < started; i++)
    pthread_join(threads[i], NULL);
free_loops:
  for (unsigned long i = 0; i < workers; i++)
    if (loops[i])
      sk_loop_free(loops[i]);
  sk_relay_free(rc.relay);
out:
  sk_tls_ctx_free(o.tls_server);
  sk_tls_ctx_free(o.tls_client);
  cli_acl_free(&rc.acl);
  return code;
}

const cli_command_t cli_relay = {
    .name = "relay",
    .run = run,
    .summary = "make a remote or unix-socket service appear local",
    .usage = usage,
};
