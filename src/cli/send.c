/* send.c - `sockit send ENDPOINT PATH...`: send files and directories to a
 * `sockit receive`, checked end to end and resumable. The engine is in
 * src/services/xfer_send.c; this file parses options, connects (or, with
 * --listen, waits for the receiver to connect) and shows progress. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/xfer_ui.h"

static const char usage[] =
    "Usage: sockit send [OPTIONS] ENDPOINT PATH...\n"
    "       sockit send [OPTIONS] --listen ENDPOINT PATH...\n"
    "\n"
    "Sends files and whole directories to `sockit receive` at ENDPOINT\n"
    "(tcp://host:port, tls://host:port or unix:/path), each with its name, size, mode\n"
    "and time, checked with SHA-256 at the far end. Run the same command again after\n"
    "an interruption: each file goes on from what the receiver already holds, and\n"
    "files it has are not sent again.\n"
    "With --listen, waits on ENDPOINT for the receiver to connect (`sockit receive\n"
    "--connect`), for when only this side can accept connections.\n"
    "\n"
    "Options:\n"
    "  --listen               listen on ENDPOINT; send to the first receiver that connects\n"
    "  --json                 print a JSON summary on standard output\n"
    "  --port-file FILE       with --listen: write the bound port to FILE\n"
    "  --connect-timeout SECS give up connecting after SECS\n"
    "  --idle-timeout SECS    give up after SECS without progress (default 30)\n"
    "  -q, --quiet            no progress or summary on a terminal (errors still)\n"
    "  --state-dir DIR        where the resume key is kept (a drop box lets only its\n"
    "                         holder resume; default ~/.local/state/sockit)\n"
    "  -h, --help             this help\n"
    "\n"
    "Progress and a summary are shown when standard error is a terminal; otherwise\n"
    "only errors. Exit status: 0 every file stored (or already there), 1 a network or\n"
    "I/O error, the receiver declined, or a file failed, 2 usage error.\n"
    "See docs/xfer.md for the protocol, the receiver's rules and limits.\n"
    "\n" CLI_TLS_HELP
    "With tls://, the side that listens is the TLS server (--self-signed or --cert and\n"
    "--key) and the side that connects verifies it (--pin, --ca or the system's CAs).\n"
    "\n"
    "Examples:\n"
    "  sockit send tcp://friend.example:9000 holiday.mp4 photos/\n"
    "  sockit send --pin sha256:1d9a...7b3b tls://friend.example:9000 holiday.mp4\n"
    "  sockit send --listen tcp://:9000 report.pdf\n";

enum { OPT_LISTEN = 256, OPT_JSON, OPT_PORT_FILE, OPT_CONNECT_TIMEOUT, OPT_IDLE };

/* `sockit send`: returns the exit code. */
static int run(int argc, char **argv) {
  static const struct option longopts[] = {
      {"listen", no_argument, 0, OPT_LISTEN},
      {"json", no_argument, 0, OPT_JSON},
      {"port-file", required_argument, 0, OPT_PORT_FILE},
      {"connect-timeout", required_argument, 0, OPT_CONNECT_TIMEOUT},
      {"idle-timeout", required_argument, 0, OPT_IDLE},
      {"quiet", no_argument, 0, 'q'},
      CLI_TLS_LONGOPTS,
      {0, 0, 0, 0}};
  cli_tls_t tls;
  memset(&tls, 0, sizeof tls);
  int listen_mode = 0, json = 0, quiet = 0, c;
  const char *port_file = NULL, *state_dir = NULL;
  uint64_t connect_ms = 0, idle_ms = XFER_IDLE_MS_DEFAULT;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "q", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_LISTEN: listen_mode = 1; break;
    case OPT_JSON: json = 1; break;
    case OPT_PORT_FILE: port_file = optarg; break;
    case OPT_CONNECT_TIMEOUT:
      if (cli_parse_seconds(optarg, &connect_ms) < 0 || connect_ms > 0x7fffffff)
        return cli_usage_error("send", "bad --connect-timeout '%s': expected seconds", optarg);
      break;
    case OPT_IDLE:
      if (cli_parse_seconds(optarg, &idle_ms) < 0 || idle_ms == 0)
        return cli_usage_error("send", "bad --idle-timeout '%s': expected seconds", optarg);
      break;
    case 'q': quiet = 1; break;
    case CLI_TLS_STATE_DIR: /* also where the resume key is kept, so not TLS-only */
      state_dir = optarg;
      tls.cfg.state_dir = optarg;
      break;
    default:
      if (c >= CLI_TLS_CA) {
        int r = cli_tls_option(&tls, c, optarg, "send");
        if (r < 0)
          return EXIT_USAGE;
        if (r > 0)
          break;
      }
      return cli_usage_error("send", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return cli_usage_error("send", "missing ENDPOINT");
  if (optind + 1 >= argc)
    return cli_usage_error("send", "missing PATH: what to send");
  if (port_file && !listen_mode)
    return cli_usage_error("send", "--port-file goes with --listen");
  sk_endpoint_t ep;
  int code = xui_endpoint("send", argv[optind], listen_mode ? SK_EP_LISTEN : SK_EP_CONNECT, &ep);
  if (code)
    return code;
  if ((ep.flags & SK_EP_TLS) == 0 && tls.any)
    return cli_usage_error("send", "TLS options need a tls:// endpoint");

  xui_t u;
  xfer_ui_t ui;
  xui_init(&u, &ui, "sent");
  u.quiet = quiet;
  u.json = json;
  char err[SK_ERRLEN * 2];
  /* List first: a missing file or a name the receiver would refuse is
   * reported before any connection is made. */
  xfer_manifest_t *m = NULL;
  if (xfer_manifest_build(&m, argv + optind + 1, argc - optind - 1, &ui, err, sizeof err) < 0) {
    cli_error("%s", err);
    xui_free(&u);
    return EXIT_NET;
  }
  /* The resume key for this receiver: a drop box lets only its holder
   * resume a partial file. Without a state directory, none: a cut
   * transfer to a drop box then starts over. */
  char receiver_text[SK_ENDPOINT_STRLEN];
  uint8_t key[SK_XFER_KEY_LEN];
  sk_endpoint_format(&ep, receiver_text, sizeof receiver_text);
  if (xfer_resume_key(state_dir, receiver_text, key, err, sizeof err) == 0)
    xfer_manifest_set_key(m, key);
  /* The TLS context after the listing (its errors come first) and before
   * listening (a server prints its pin for the receiver's --pin). */
  sk_tls_ctx_t *ctx = NULL;
  code = xui_tls_setup("send", &tls, &ep, listen_mode, &ctx);
  if (code) {
    xfer_manifest_free(m);
    xui_free(&u);
    return code;
  }
  int cancel = xui_signal_pipe();
  xfer_conn_t conn = {.fd = -1, .cancel_fd = cancel, .idle_ms = idle_ms};
  code = EXIT_NET;
  if (listen_mode) {
    sk_listener_t l;
    if (xui_listen(&l, &ep, port_file) != 0)
      goto out;
    conn.fd = xui_accept(&l, cancel, conn.peer, sizeof conn.peer);
    sk_listener_close(&l);
    if (conn.fd == -ECANCELED) {
      code = EXIT_OK; /* stopped before anyone came: nothing was interrupted */
      goto out;
    }
  } else {
    sk_sockopts_t so = {.nodelay = 1, .connect_timeout_ms = (int)connect_ms};
    conn.fd = sk_net_connect(&ep, &so, err, sizeof err);
    if (conn.fd < 0) {
      cli_error("%s", err);
      goto out;
    }
    sk_endpoint_format(&ep, conn.peer, sizeof conn.peer);
  }
  if (conn.fd < 0 || xui_tls_start(&conn, ctx, &tls, listen_mode ? NULL : ep.host, 0) < 0)
    goto out;
  xfer_stats_t st;
  int rc = xfer_send(&conn, m, &ui, &st, err, sizeof err);
  xui_finish(&u, rc, err, &st, "send", NULL);
  code = rc == 0 ? EXIT_OK : EXIT_NET;
out:
  xfer_tls_end(&conn);
  if (conn.fd >= 0)
    close(conn.fd);
  sk_tls_ctx_free(ctx);
  xfer_manifest_free(m);
  xui_free(&u);
  return code;
}

const cli_command_t cli_send = {
    .name = "send",
    .run = run,
    .summary = "send files and directories to `sockit receive` (checked, resumable)",
    .usage = usage,
};
