/* receive.c - `sockit receive ENDPOINT`: receive files from `sockit send`
 * into a directory, after showing what comes and asking. The engine is in
 * src/services/xfer_recv.c; this file parses options, listens (or, with
 * --connect, connects to a listening sender) and shows progress. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/xfer_ui.h"

static const char usage[] =
    "Usage: sockit receive [OPTIONS] ENDPOINT\n"
    "       sockit receive [OPTIONS] --connect ENDPOINT\n"
    "\n"
    "Listens on ENDPOINT (tcp://:port, tls://:port, unix:/path) for `sockit send` and\n"
    "receives its files into the current directory (or --dir). Before anything is\n"
    "written it shows every name and size and asks; without a terminal to ask, it\n"
    "declines unless --yes.\n"
    "Each file is written to .NAME.part, checked against the sender's SHA-256, then\n"
    "renamed into place; an interrupted transfer resumes when the same send is run\n"
    "again. Names are checked: nothing is ever written outside the directory.\n"
    "With --connect, connects to a sender that listens (`sockit send --listen`).\n"
    "\n"
    "Options:\n"
    "  --dir DIR              write into DIR (created if missing; default: .)\n"
    "  -y, --yes              accept without asking\n"
    "  --overwrite            replace existing files of the same name\n"
    "  --rename               store as 'name (1).ext' when the name exists\n"
    "  -k, --keep-open        a drop box: serve senders, several at once, until stopped;\n"
    "                         no sender sees another's files (see docs/xfer.md)\n"
    "  --max-sessions N       --keep-open: senders served at once (default 16)\n"
    "  --max-per-address N    --keep-open: of them from one IP address (default 4)\n"
    "  --min-rate SIZE        --keep-open: bytes/s a sender must keep up (default 4K)\n"
    "  --rate-window SECS     --keep-open: ... in every window this long (default 60)\n"
    "  --connect              ENDPOINT is a listening sender to connect to\n"
    "  --max-files N          refuse more than N files and directories (default 100000)\n"
    "  --max-total SIZE       refuse more than SIZE bytes, e.g. 10G (default 1T)\n"
    "  --json                 print a JSON summary per sender on standard output\n"
    "  --port-file FILE       write the bound port to FILE once listening\n"
    "  --connect-timeout SECS with --connect: give up connecting after SECS\n"
    "  --idle-timeout SECS    give up after SECS without progress (default 30)\n"
    "  -q, --quiet            no progress or summary on a terminal (errors still)\n"
    "  -v, --verbose          say who connects\n"
    "  -h, --help             this help\n"
    "\n"
    "Existing files of the same name are never overwritten unless --overwrite (an\n"
    "identical file is recognised and not sent again). Exit status: 0 every file\n"
    "stored or already there, 1 a network or I/O error, declined, or a file failed,\n"
    "2 usage error. See docs/xfer.md.\n"
    "\n" CLI_TLS_HELP
    "With tls://, the side that listens is the TLS server (--self-signed or --cert and\n"
    "--key; it prints the pin for the sender's --pin) and the side that connects\n"
    "verifies it.\n"
    "\n"
    "Examples:\n"
    "  sockit receive tcp://:9000 --dir incoming\n"
    "  sockit receive --self-signed tls://:9000 --dir incoming\n"
    "  sockit receive --keep-open --yes --rename tcp://127.0.0.1:9000 --dir dropbox\n"
    "  sockit receive --connect tcp://friend.example:9000\n";

enum {
  OPT_DIR = 256, OPT_OVERWRITE, OPT_RENAME, OPT_CONNECT, OPT_MAX_FILES, OPT_MAX_TOTAL, OPT_JSON,
  OPT_PORT_FILE, OPT_CONNECT_TIMEOUT, OPT_IDLE, OPT_MAX_SESSIONS, OPT_MAX_PER_ADDR, OPT_MIN_RATE,
  OPT_RATE_WINDOW
};

/* ---- --keep-open: a drop box, one thread per sender ---------------------------------- */

/* What the senders of a drop box share. */
typedef struct {
  pthread_mutex_t lock; /* the terminal, the counts and the result */
  pthread_mutex_t ask;  /* one question at a time */
  pthread_cond_t changed;
  unsigned active;
  int code, interrupted;
  xfer_guard_t *guard;
  const xfer_recv_opts_t *ro;
  sk_tls_ctx_t *ctx;
  const cli_tls_t *tls;
  int verbose, quiet, json, yes;
  const char *dir;
} keep_t;

/* One sender. */
typedef struct {
  keep_t *k;
  xfer_conn_t conn;
  sk_sockaddr_t addr;
  xui_t u;
  xfer_ui_t ui, inner; /* ours (locking) around the terminal's */
} sender_t;

static void k_progress(void *ctx, const xfer_progress_t *p) {
  sender_t *s = ctx;
  xfer_watch_progress(&s->conn, p->moved);
  if (pthread_mutex_trylock(&s->k->lock) != 0)
    return; /* someone else is printing: skip this redraw */
  if (s->k->active == 1) /* one progress line on a terminal: only for one sender */
    s->inner.progress(s->inner.ctx, p);
  pthread_mutex_unlock(&s->k->lock);
}

static void k_report(void *ctx, const xfer_report_t *r) {
  sender_t *s = ctx;
  pthread_mutex_lock(&s->k->lock);
  s->inner.report(s->inner.ctx, r);
  pthread_mutex_unlock(&s->k->lock);
}

static void k_warn(void *ctx, const char *msg) {
  sender_t *s = ctx;
  pthread_mutex_lock(&s->k->lock);
  s->inner.warn(s->inner.ctx, msg);
  pthread_mutex_unlock(&s->k->lock);
}

static int k_decide(void *ctx, const char *peer, const xfer_listing_t *e, uint32_t n,
                    uint64_t total, uint64_t need) {
  sender_t *s = ctx;
  pthread_mutex_lock(&s->k->ask);
  int yes = s->inner.decide(s->inner.ctx, peer, e, n, total, need);
  pthread_mutex_unlock(&s->k->ask);
  return yes;
}

/* A sender's thread: TLS, the transfer, its summary. */
static void *sender_main(void *arg) {
  sender_t *s = arg;
  keep_t *k = s->k;
  char err[SK_ERRLEN * 2];
  int rc = xui_tls_start(&s->conn, k->ctx, k->tls, NULL, k->verbose);
  if (rc == 0) {
    xfer_stats_t st;
    rc = xfer_receive(&s->conn, k->ro, &s->ui, &st, err, sizeof err);
    xfer_tls_end(&s->conn);
    const char *ended = xfer_watch_reason(&s->conn);
    pthread_mutex_lock(&k->lock);
    xui_finish(&s->u, rc, ended ? ended : err, &st, "receive", k->dir);
    pthread_mutex_unlock(&k->lock);
  }
  close(s->conn.fd);
  xfer_guard_leave(k->guard, &s->addr, &s->conn);
  xui_free(&s->u);
  free(s);
  /* Everything of ours is freed before the count goes down: the process
   * may exit as soon as it is 0. That includes this thread's OpenSSL state
   * (its random generator), which its exit would free too late. */
  OPENSSL_thread_stop();
  pthread_mutex_lock(&k->lock);
  k->active--;
  k->code = rc == 0 ? EXIT_OK : EXIT_NET;
  if (rc == -ECANCELED)
    k->interrupted = 1;
  pthread_cond_broadcast(&k->changed);
  pthread_mutex_unlock(&k->lock);
  return NULL;
}

/* Waits until fewer than max senders are served, or the cancel fd is
 * readable (0 then). 1 when there is room. */
static int wait_for_room(keep_t *k, unsigned max, int cancel) {
  pthread_mutex_lock(&k->lock);
  int room;
  for (;;) {
    room = k->active < max;
    struct pollfd p = {.fd = cancel, .events = POLLIN};
    if (room || (cancel >= 0 && poll(&p, 1, 0) > 0))
      break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L; /* a signal cannot wake a condition variable: look again */
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&k->changed, &k->lock, &ts);
  }
  pthread_mutex_unlock(&k->lock);
  return room;
}

/* Starts a thread for the sender connected on fd, if the guard admits it. */
static void keep_start(keep_t *k, int fd, const char *peer, int cancel, uint64_t idle_ms) {
  sender_t *s = calloc(1, sizeof *s);
  if (!s) {
    cli_error("%s: out of memory", peer);
    close(fd);
    return;
  }
  s->k = k;
  s->conn = (xfer_conn_t){.fd = fd, .cancel_fd = cancel, .idle_ms = idle_ms};
  snprintf(s->conn.peer, sizeof s->conn.peer, "%s", peer);
  s->addr.len = sizeof s->addr.ss;
  if (getpeername(fd, (struct sockaddr *)&s->addr.ss, &s->addr.len) < 0)
    s->addr.ss.ss_family = AF_UNSPEC;
  int r = xfer_guard_enter(k->guard, &s->addr, &s->conn);
  if (r < 0) {
    cli_error("%s: refused: %s", peer,
              r == -EBUSY ? "too many transfers from this address (--max-per-address)"
                          : strerror(-r));
    if (r == -EBUSY && !k->ctx)
      xfer_refuse_busy(k->guard, fd);
    close(fd);
    free(s);
    return;
  }
  xui_init(&s->u, &s->inner, "received");
  s->u.quiet = k->quiet;
  s->u.json = k->json;
  s->u.yes = k->yes;
  s->u.dir = k->dir;
  s->ui = (xfer_ui_t){.ctx = s, .decide = k_decide, .progress = k_progress, .report = k_report,
                      .warn = k_warn};
  pthread_mutex_lock(&k->lock);
  k->active++;
  pthread_mutex_unlock(&k->lock);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, sender_main, s) != 0) {
    cli_error("%s: cannot start a thread for it", peer);
    close(fd);
    xfer_guard_leave(k->guard, &s->addr, &s->conn);
    xui_free(&s->u);
    free(s);
    pthread_mutex_lock(&k->lock);
    k->active--;
    pthread_mutex_unlock(&k->lock);
  }
  pthread_attr_destroy(&attr);
}

/* Serves senders on l until stopped (SIGINT/SIGTERM), each on its own
 * thread; returns the exit code. */
static int keep_serve(keep_t *k, sk_listener_t *l, int cancel, uint64_t idle_ms) {
  unsigned max = xfer_guard_limits(k->guard)->max_sessions;
  int code = EXIT_NET;
  while (wait_for_room(k, max, cancel)) {
    char peer[SK_ENDPOINT_STRLEN];
    int fd = xui_accept(l, cancel, peer, sizeof peer);
    if (fd == -ECANCELED) {
      code = EXIT_OK; /* stopped while waiting */
      break;
    }
    if (fd < 0)
      break;
    if (k->verbose)
      cli_error("connection from %s", peer);
    keep_start(k, fd, peer, cancel, idle_ms);
  }
  if (cancel >= 0 && code == EXIT_NET) {
    struct pollfd p = {.fd = cancel, .events = POLLIN};
    if (poll(&p, 1, 0) > 0)
      code = EXIT_OK;
  }
  sk_listener_close(l);
  pthread_mutex_lock(&k->lock); /* the senders see the cancel fd too */
  while (k->active > 0)
    pthread_cond_wait(&k->changed, &k->lock);
  pthread_mutex_unlock(&k->lock);
  return k->interrupted ? EXIT_NET : code;
}

/* Opens the target directory, making it (one level) if it does not exist. */
static int open_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && mkdir(dir, 0777) == 0)
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    cli_error("%s: %s", dir, strerror(errno));
  return fd;
}

/* `sockit receive`: returns the exit code. */
static int run(int argc, char **argv) {
  static const struct option longopts[] = {
      {"dir", required_argument, 0, OPT_DIR},
      {"yes", no_argument, 0, 'y'},
      {"overwrite", no_argument, 0, OPT_OVERWRITE},
      {"rename", no_argument, 0, OPT_RENAME},
      {"keep-open", no_argument, 0, 'k'},
      {"connect", no_argument, 0, OPT_CONNECT},
      {"max-files", required_argument, 0, OPT_MAX_FILES},
      {"max-total", required_argument, 0, OPT_MAX_TOTAL},
      {"json", no_argument, 0, OPT_JSON},
      {"port-file", required_argument, 0, OPT_PORT_FILE},
      {"connect-timeout", required_argument, 0, OPT_CONNECT_TIMEOUT},
      {"idle-timeout", required_argument, 0, OPT_IDLE},
      {"max-sessions", required_argument, 0, OPT_MAX_SESSIONS},
      {"max-per-address", required_argument, 0, OPT_MAX_PER_ADDR},
      {"min-rate", required_argument, 0, OPT_MIN_RATE},
      {"rate-window", required_argument, 0, OPT_RATE_WINDOW},
      {"quiet", no_argument, 0, 'q'},
      {"verbose", no_argument, 0, 'v'},
      CLI_TLS_LONGOPTS,
      {0, 0, 0, 0}};
  cli_tls_t tls;
  memset(&tls, 0, sizeof tls);
  const char *dir = ".", *port_file = NULL;
  int yes = 0, keep_open = 0, connect_mode = 0, json = 0, quiet = 0, verbose = 0, c;
  int existing = XFER_KEEP;
  unsigned long max_files = XFER_MAX_FILES_DEFAULT;
  uint64_t max_total = XFER_MAX_TOTAL_DEFAULT, connect_ms = 0, idle_ms = XFER_IDLE_MS_DEFAULT;
  xfer_limits_t lim = {0};
  unsigned long n;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "ykqv", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_DIR: dir = optarg; break;
    case 'y': yes = 1; break;
    case OPT_OVERWRITE:
    case OPT_RENAME:
      if (existing != XFER_KEEP)
        return cli_usage_error("receive", "give only one of --overwrite and --rename");
      existing = c == OPT_OVERWRITE ? XFER_OVERWRITE : XFER_RENAME;
      break;
    case 'k': keep_open = 1; break;
    case OPT_CONNECT: connect_mode = 1; break;
    case OPT_MAX_FILES:
      if (cli_parse_uint(optarg, SK_XFER_COUNT_MAX, &max_files) < 0 || max_files == 0)
        return cli_usage_error("receive", "bad --max-files '%s': expected 1-%u", optarg,
                               (unsigned)SK_XFER_COUNT_MAX);
      break;
    case OPT_MAX_TOTAL:
      if (xui_parse_size(optarg, &max_total) < 0)
        return cli_usage_error("receive", "bad --max-total '%s': expected a size like 10G",
                               optarg);
      break;
    case OPT_JSON: json = 1; break;
    case OPT_PORT_FILE: port_file = optarg; break;
    case OPT_CONNECT_TIMEOUT:
      if (cli_parse_seconds(optarg, &connect_ms) < 0 || connect_ms > 0x7fffffff)
        return cli_usage_error("receive", "bad --connect-timeout '%s': expected seconds", optarg);
      break;
    case OPT_IDLE:
      if (cli_parse_seconds(optarg, &idle_ms) < 0 || idle_ms == 0)
        return cli_usage_error("receive", "bad --idle-timeout '%s': expected seconds", optarg);
      break;
    case OPT_MAX_SESSIONS:
    case OPT_MAX_PER_ADDR:
      if (cli_parse_uint(optarg, 100000, &n) < 0 || n == 0)
        return cli_usage_error("receive", "bad %s '%s': expected 1-100000",
                               c == OPT_MAX_SESSIONS ? "--max-sessions" : "--max-per-address",
                               optarg);
      *(c == OPT_MAX_SESSIONS ? &lim.max_sessions : &lim.max_per_addr) = (unsigned)n;
      break;
    case OPT_MIN_RATE:
      if (xui_parse_size(optarg, &lim.min_rate) < 0 || lim.min_rate == 0)
        return cli_usage_error("receive", "bad --min-rate '%s': expected bytes per second, "
                               "like 4K", optarg);
      break;
    case OPT_RATE_WINDOW:
      if (cli_parse_seconds(optarg, &lim.rate_window_ms) < 0 || lim.rate_window_ms == 0)
        return cli_usage_error("receive", "bad --rate-window '%s': expected seconds", optarg);
      break;
    case 'q': quiet = 1; break;
    case 'v': verbose = 1; break;
    default:
      if (c >= CLI_TLS_CA) {
        int r = cli_tls_option(&tls, c, optarg, "receive");
        if (r < 0)
          return EXIT_USAGE;
        if (r > 0)
          break;
      }
      return cli_usage_error("receive", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return cli_usage_error("receive", "missing ENDPOINT");
  if (optind + 1 < argc)
    return cli_usage_error("receive", "expected one ENDPOINT, got more");
  if (connect_mode && (keep_open || port_file))
    return cli_usage_error("receive", "--connect goes with neither --keep-open nor --port-file");
  sk_endpoint_t ep;
  int code = xui_endpoint("receive", argv[optind], connect_mode ? SK_EP_CONNECT : SK_EP_LISTEN, &ep);
  if (code)
    return code;
  if ((ep.flags & SK_EP_TLS) == 0 && tls.any)
    return cli_usage_error("receive", "TLS options need a tls:// endpoint");
  int dirfd = open_dir(dir);
  if (dirfd < 0)
    return EXIT_NET;
  /* Before listening: a server prints its pin for the sender's --pin. */
  sk_tls_ctx_t *ctx = NULL;
  code = xui_tls_setup("receive", &tls, &ep, !connect_mode, &ctx);
  if (code) {
    close(dirfd);
    return code;
  }

  xui_t u;
  xfer_ui_t ui;
  xui_init(&u, &ui, "received");
  u.quiet = quiet;
  u.json = json;
  u.yes = yes;
  u.dir = dir;
  xfer_recv_opts_t ro = {.dirfd = dirfd, .dir_name = dir, .existing = existing,
                         .max_files = (uint32_t)max_files, .max_total = max_total,
                         .shared = keep_open};
  int cancel = xui_signal_pipe();
  char err[SK_ERRLEN * 2];
  sk_listener_t l;
  int listening = 0;
  code = EXIT_NET;
  if (!connect_mode) {
    if (xui_listen(&l, &ep, port_file) != 0)
      goto out;
    listening = 1;
  }
  if (keep_open) {
    keep_t k = {.ro = &ro, .ctx = ctx, .tls = &tls, .verbose = verbose, .quiet = quiet,
                .json = json, .yes = yes, .dir = dir};
    if (xfer_guard_new(&k.guard, &lim, err, sizeof err) < 0) {
      cli_error("%s", err);
      goto out;
    }
    pthread_mutex_init(&k.lock, NULL);
    pthread_mutex_init(&k.ask, NULL);
    pthread_cond_init(&k.changed, NULL);
    code = keep_serve(&k, &l, cancel, idle_ms);
    listening = 0; /* closed by keep_serve */
    xfer_guard_free(k.guard);
    pthread_cond_destroy(&k.changed);
    pthread_mutex_destroy(&k.ask);
    pthread_mutex_destroy(&k.lock);
    goto out;
  }
  for (;;) {
    xfer_conn_t conn = {.fd = -1, .cancel_fd = cancel, .idle_ms = idle_ms};
    if (connect_mode) {
      sk_sockopts_t so = {.nodelay = 1, .connect_timeout_ms = (int)connect_ms};
      conn.fd = sk_net_connect(&ep, &so, err, sizeof err);
      if (conn.fd < 0) {
        cli_error("%s", err);
        break;
      }
      sk_endpoint_format(&ep, conn.peer, sizeof conn.peer);
    } else {
      conn.fd = xui_accept(&l, cancel, conn.peer, sizeof conn.peer);
      if (conn.fd == -ECANCELED) {
        code = EXIT_OK; /* stopped while waiting: nothing was interrupted */
        break;
      }
      if (conn.fd < 0)
        break;
      if (!keep_open) { /* one sender: stop listening at once */
        sk_listener_close(&l);
        listening = 0;
      }
    }
    if (verbose)
      cli_error("connection from %s", conn.peer);
    int hs = xui_tls_start(&conn, ctx, &tls, connect_mode ? ep.host : NULL, verbose);
    if (hs < 0) { /* said why; a drop box waits for the next sender */
      close(conn.fd);
      code = EXIT_NET;
      if (!keep_open || hs == -ECANCELED)
        break;
      continue;
    }
    xfer_stats_t st;
    int rc = xfer_receive(&conn, &ro, &ui, &st, err, sizeof err);
    xfer_tls_end(&conn);
    close(conn.fd);
    xui_finish(&u, rc, err, &st, "receive", dir);
    code = rc == 0 ? EXIT_OK : EXIT_NET;
    if (!keep_open || rc == -ECANCELED)
      break;
  }
out:
  if (listening)
    sk_listener_close(&l);
  sk_tls_ctx_free(ctx);
  close(dirfd);
  xui_free(&u);
  return code;
}

const cli_command_t cli_receive = {
    .name = "receive",
    .run = run,
    .summary = "receive files from `sockit send` into a directory (asks first)",
    .usage = usage,
};
