/* receive.c - `sockit receive ENDPOINT`: receive files from `sockit send`
 * into a directory, after showing what comes and asking. The engine is in
 * src/services/xfer_recv.c; this file parses options, listens (or, with
 * --connect, connects to a listening sender) and shows progress. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    "  -k, --keep-open        after a sender, wait for the next (a drop box)\n"
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
  OPT_PORT_FILE, OPT_CONNECT_TIMEOUT, OPT_IDLE
};

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
                         .max_files = (uint32_t)max_files, .max_total = max_total};
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
