/* chat.c - `sockit chat serve ENDPOINT...`: the chat server (seed 002, tasks
 * 1 and 4) with its operator console: lines typed on standard input go to
 * everyone, every room event is shown on standard output, SIGHUP reloads
 * the bot's rules. The chat itself is src/services/chat.c. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/chat_client.h"
#include "cli/cli.h"
#include "cli/tlsopt.h"
#include "services/chat.h"
#include "services/chatbot.h"
#include "services/web.h"

#define CHAT_MAX_ENDPOINTS 16
#define CHAT_MONITOR_MAX (1u << 20) /* standard output queue; lines beyond are counted, not shown */
#define CHAT_STOP_CHECK_MS 50       /* at shutdown: how often to look whether all is done */
#define CHAT_STOP_OUTPUT_MS 2000    /* at shutdown: how long standard output may take to drain */

static const char usage[] =
    "Usage: sockit chat serve ENDPOINT... [OPTIONS]\n"
    "       sockit chat ENDPOINT [--nick NAME]   the terminal client\n"
    "\n"
    "A chat server for nc, telnet and any line client: nicknames, rooms, history,\n"
    "private messages and a bot, on every ENDPOINT at once (tcp, unix). The\n"
    "protocol, commands and limits are in docs/chat.md; '/help' in the chat\n"
    "lists the commands.\n"
    "\n"
    "The client: on a terminal, a line editor (arrows, Home/End, ctrl-A/E/U/K/W,\n"
    "up/down history, ctrl-D on an empty line quits) with incoming lines shown\n"
    "above the line being typed, nicks in colour (not with NO_COLOR); piped, one\n"
    "line per event, and /quit at end of input. It reconnects when the server\n"
    "goes away, with the same nick and rooms.\n"
    "\n"
    "Standard input is the operator's console: a line goes to everyone as from\n"
    "@server; /say #room TEXT, /kick NICK [why], /who [#room], /rooms, /reload,\n"
    "/help. Standard output shows every room event, one protocol line each.\n"
    "SIGHUP reloads the bot's rules file; SIGINT/SIGTERM say BYE to everyone\n"
    "and stop. The soft limit on open files is raised to the hard limit.\n"
    "\n"
    "Options:\n"
    "  --room #NAME          the room everyone joins on arrival (default #lobby)\n"
    "  --history N           messages of a room replayed on join (default 20, max 1000)\n"
    "  --no-bot              no bot\n"
    "  --bot-nick NAME       the bot's nick (default bot)\n"
    "  --rules FILE          the bot's rules, 'PATTERN => REPLY' lines (docs/chat.md)\n"
    "  --flood-rate N        lines a second a client may keep up (default 5; 0 = no limit)\n"
    "  --flood-burst N       lines a client may send at once (default 20)\n"
    "  --out-queue BYTES     per-client outbound queue; a client whose queue\n"
    "                        overflows is disconnected (default 131072)\n"
    "  --idle-timeout SECS   disconnect clients that send nothing for SECS\n"
    "  --max-clients N       at most N clients; more wait in the kernel backlog\n"
  "  --max-per-addr N      at most N clients from one address (IPv6: one /64),\n"
  "                        loopback not counted (default 64; 0 = no limit)\n"
  "  --max-per-loopback N  at most N clients from one loopback address (default 0 = no limit)\n"
  "  --max-rooms N         rooms at once, the default room included (default 1000; 0 = no limit)\n"
  "  --max-rooms-per-client N  rooms one client may be in at once (default 8, max 64)\n"
  "  --history-budget BYTES  all rooms' history together (default 8388608, min 16384);\n"
  "                        over it the least recently active rooms lose theirs first\n"
  "  --history-text-max BYTES  a message's text kept in history, cut beyond (default 1024)\n"
    "  --notices-max N       no JOIN/PART/QUIT/NICK lines in rooms of more than N (default 200)\n"
    "  --web ENDPOINT        also serve the chat's web page and its WebSocket (/ws)\n"
    "                        on ENDPOINT (tcp://127.0.0.1:6680); repeatable\n"
    "  --web-origin HOST[:PORT]  a page on this origin may use /ws too (besides\n"
    "                        the listener's own address, and localhost names on\n"
    "                        a loopback listener); '*' lets any; repeatable\n"
    "  --web-ping SECS       ping a quiet browser after SECS, drop it if it does\n"
    "                        not answer within SECS more (default 30)\n"
    "  --web-head-timeout SECS  a browser's request head must arrive within SECS\n"
    "                        (default 10; slow-request defence)\n"
    "  --quiet               do not show room events on standard output\n"
    "  --port-file FILE      write the first endpoint's port to FILE once listening\n"
    "  --grace SECS          at SIGINT/SIGTERM, clients get SECS to leave (default 2)\n"
    "  -v, --verbose         one log line per connection on stderr\n"
    "  -h, --help            this help\n"
    "\n" CLI_TLS_SERVER_HELP
    "The client connects to tls:// with --ca FILE, --pin sha256:HEX or --insecure\n"
    "(and --cert/--key for a client certificate).\n"
    "\n"
    "Examples:\n"
    "  sockit chat serve tcp://:6667\n"
    "  sockit chat serve tcp://127.0.0.1:6667 unix:/tmp/chat.sock --rules bot.rules\n"
    "  sockit chat serve tcp://127.0.0.1:6667 --web tcp://127.0.0.1:6680\n"
    "  nc 127.0.0.1 6667\n"
    "  sockit chat tcp://127.0.0.1:6667 --nick alice\n";

typedef struct {
  chat_t *chat;
  chatbot_t *bot;
  sk_server_t *srv;
  sk_server_t *web_srv;   /* --web: the page and /ws; NULL without */
  web_t *web;
  sk_loop_t *loop;
  cli_tls_t tls;          /* the TLS flags */
  sk_tls_ctx_t *tls_ctx;  /* for tls:// endpoints (chat and --web); NULL without */
  sk_io_t in_io, out_io;
  sk_timer_t stop_timer;
  sk_chat_reader_t op_reader;
  sk_buf_t op_in;         /* the operator's input not yet a whole line */
  sk_buf_t out;           /* standard output, bounded */
  unsigned long dropped;  /* monitor lines that did not fit `out` */
  int quiet, out_broken, stopping;
  uint64_t stop_started;
} chatd_t;

/* ---- standard output: the monitor -------------------------------------------------------- */

/* Queues a line for standard output: operator replies always, room
 * events unless --quiet. */
static void console_line(void *arg, const char *line, size_t len) {
  chatd_t *d = arg;
  if (d->out_broken)
    return;
  if (sk_buf_append(&d->out, line, len) != 0) {
    d->dropped++;
    return;
  }
  if (!(d->out_io.events & SK_WRITABLE))
    sk_io_set(d->loop, &d->out_io, SK_WRITABLE);
}

/* The chat's monitor: room events, unless --quiet. */
static void monitor_line(void *arg, const char *line, size_t len) {
  if (!((chatd_t *)arg)->quiet)
    console_line(arg, line, len);
}

/* Writes queued monitor lines; when stdout fails for good (closed pipe),
 * the monitor stops and the chat goes on. */
static void on_stdout(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  chatd_t *d = io->data;
  (void)ev;
  ssize_t n = sk_buf_write_fd(&d->out, STDOUT_FILENO, 0);
  if (n < 0 && n != SK_EAGAIN) {
    d->out_broken = 1;
    sk_buf_free(&d->out);
    sk_io_stop(loop, io);
    return;
  }
  if (sk_buf_len(&d->out) == 0) {
    if (d->dropped) {
      char line[128];
      int len = snprintf(line, sizeof line,
                         "NOTICE %lu lines not shown: standard output was too slow\n", d->dropped);
      d->dropped = 0;
      sk_buf_append(&d->out, line, (size_t)len);
      return;
    }
    sk_buf_free(&d->out);
    sk_io_set(loop, io, 0);
  }
}

/* The chat's log and the framework's per-connection log: stderr. */
static void log_msg(void *arg, const char *msg) {
  (void)arg;
  cli_error("chat: %s", msg);
}

/* Errors that do not stop the server (accept failures): stderr. */
static void on_server_error(void *ctx, const char *msg) {
  (void)ctx;
  cli_error("chat: %s", msg);
}

/* ---- standard input: the operator ------------------------------------------------------------ */

/* Gives the operator's complete lines to the chat; at EOF the last partial
 * line too, and the console closes (the chat goes on). */
static void on_stdin(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  chatd_t *d = io->data;
  (void)ev;
  ssize_t n = sk_buf_read_fd(&d->op_in, STDIN_FILENO, 0);
  if (n == SK_EAGAIN)
    return;
  int eof = n < 0; /* EOF, or an error: the operator is gone either way */
  const char *p = sk_buf_head(&d->op_in);
  size_t len = sk_buf_len(&d->op_in), off = 0;
  while (off < len) {
    size_t used, ll;
    const char *line;
    int k = sk_chat_read_line(&d->op_reader, p + off, len - off, &used, &line, &ll);
    off += used;
    if (k == SK_CHAT_NEED_MORE)
      break;
    if (k == SK_CHAT_LINE)
      chat_operator_line(d->chat, line, ll);
    else
      cli_error("chat: operator line longer than %d bytes dropped", SK_CHAT_LINE_MAX);
  }
  if (eof && off < len && !d->op_reader.discarding)
    chat_operator_line(d->chat, p + off, len - off);
  sk_buf_consume(&d->op_in, eof ? len : off);
  if (eof) {
    sk_io_stop(loop, io);
    sk_buf_free(&d->op_in);
  }
}

/* ---- signals and stopping ---------------------------------------------------------------------- */

static void on_hup(sk_loop_t *loop, int signo, void *data) {
  chatd_t *d = data;
  (void)loop;
  (void)signo;
  if (d->bot)
    chat_operator_line(d->chat, "/reload", 7);
}

/* Once the server has stopped and standard output is written (or had its
 * time), the last watchers go and the loop ends. */
static void on_stop_check(sk_loop_t *loop, sk_timer_t *t) {
  chatd_t *d = t->data;
  if (!sk_server_stopped(d->srv) || (d->web_srv && !sk_server_stopped(d->web_srv)))
    return;
  if (sk_io_active(&d->out_io) && sk_buf_len(&d->out) &&
      sk_loop_now(loop) - d->stop_started < CHAT_STOP_OUTPUT_MS)
    return;
  sk_io_stop(loop, &d->out_io);
  sk_timer_stop(loop, t);
}

/* SIGINT / SIGTERM: BYE to every client, stop accepting, and let the loop
 * end once the connections are closed and stdout is written. */
static void on_stop_signal(sk_loop_t *loop, int signo, void *data) {
  chatd_t *d = data;
  (void)signo;
  if (d->stopping)
    return;
  d->stopping = 1;
  d->stop_started = sk_loop_now(loop);
  chat_shutdown(d->chat, "the server is shutting down");
  sk_server_stop(d->srv);
  if (d->web_srv)
    sk_server_stop(d->web_srv);
  sk_io_stop(loop, &d->in_io);
  /* A second signal kills at once. */
  sk_loop_signal(loop, SIGINT, NULL, NULL);
  sk_loop_signal(loop, SIGTERM, NULL, NULL);
  sk_loop_signal(loop, SIGHUP, NULL, NULL);
  sk_timer_start(loop, &d->stop_timer, CHAT_STOP_CHECK_MS, CHAT_STOP_CHECK_MS);
}

/* Binds ep on srv: with TLS (the shared context) for a tls:// endpoint,
 * plain otherwise. Returns 0 or a negative errno with the message in err. */
static int listen_endpoint(chatd_t *d, sk_server_t *srv, const sk_endpoint_t *ep,
                           const sk_sockopts_t *lo, char *err, size_t errlen) {
  if ((ep->flags & SK_EP_TLS) && d->tls_ctx)
    return sk_server_listen_tls(srv, ep, lo, d->tls_ctx, err, errlen);
  return sk_server_listen(srv, ep, lo, err, errlen); /* refuses tls:// without a context */
}

/* 10,000 clients need 10,000 descriptors: the soft limit goes up to the
 * hard one (what an unprivileged process may do). */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- the command ----------------------------------------------------------------------------- */

enum {
  OPT_ROOM = 256, OPT_HISTORY, OPT_NO_BOT, OPT_BOT_NICK, OPT_RULES, OPT_FLOOD_RATE,
  OPT_FLOOD_BURST, OPT_OUT_QUEUE, OPT_IDLE, OPT_MAX_CLIENTS, OPT_NOTICES_MAX, OPT_QUIET,
  OPT_PORT_FILE, OPT_GRACE, OPT_WEB, OPT_WEB_ORIGIN, OPT_WEB_PING, OPT_WEB_HEAD, OPT_PER_ADDR,
  OPT_PER_LOOPBACK, OPT_MAX_ROOMS, OPT_ROOMS_PER_CLIENT, OPT_HIST_BUDGET, OPT_HIST_TEXT
};

/* The options that bound what clients make the chat keep (rooms, history,
 * clients per address): sets co from opt's value. Returns 0, or the exit
 * code of a usage error. */
static int memory_option(chat_opts_t *co, int opt, const char *arg) {
  unsigned long v;
  switch (opt) {
  case OPT_PER_ADDR:
  case OPT_PER_LOOPBACK:
    if (cli_parse_uint(arg, 1000000, &v) < 0)
      return cli_usage_error("chat", "bad --max-per-%s '%s': expected 0-1000000",
                             opt == OPT_PER_ADDR ? "addr" : "loopback", arg);
    *(opt == OPT_PER_ADDR ? &co->per_addr : &co->per_loopback) = v;
    return 0;
  case OPT_MAX_ROOMS:
    if (cli_parse_uint(arg, 1000000, &v) < 0)
      return cli_usage_error("chat", "bad --max-rooms '%s': expected 0-1000000", arg);
    co->max_rooms = v;
    return 0;
  case OPT_ROOMS_PER_CLIENT:
    if (cli_parse_uint(arg, CHAT_USER_ROOMS_MAX, &v) < 0 || v == 0)
      return cli_usage_error("chat", "bad --max-rooms-per-client '%s': expected 1-%d", arg,
                             CHAT_USER_ROOMS_MAX);
    co->rooms_per_client = (unsigned)v;
    return 0;
  case OPT_HIST_BUDGET:
    if (cli_parse_uint(arg, 1ul << 30, &v) < 0 || v < CHAT_HISTORY_BUDGET_MIN)
      return cli_usage_error("chat", "bad --history-budget '%s': expected %u-%lu bytes", arg,
                             CHAT_HISTORY_BUDGET_MIN, 1ul << 30);
    co->history_budget = v;
    return 0;
  default: /* OPT_HIST_TEXT */
    if (cli_parse_uint(arg, SK_CHAT_TEXT_MAX, &v) < 0 || v < CHAT_HISTORY_TEXT_MIN)
      return cli_usage_error("chat", "bad --history-text-max '%s': expected %d-%d bytes", arg,
                             CHAT_HISTORY_TEXT_MIN, SK_CHAT_TEXT_MAX);
    co->history_text_max = v;
    return 0;
  }
}

/* `sockit chat serve ENDPOINT... [OPTIONS]` (argv[0] is "serve"). Returns
 * the exit code. */
static int serve(int argc, char **argv) {
  static const struct option longopts[] = {
      {"room", required_argument, 0, OPT_ROOM},
      {"history", required_argument, 0, OPT_HISTORY},
      {"no-bot", no_argument, 0, OPT_NO_BOT},
      {"bot-nick", required_argument, 0, OPT_BOT_NICK},
      {"rules", required_argument, 0, OPT_RULES},
      {"flood-rate", required_argument, 0, OPT_FLOOD_RATE},
      {"flood-burst", required_argument, 0, OPT_FLOOD_BURST},
      {"out-queue", required_argument, 0, OPT_OUT_QUEUE},
      {"idle-timeout", required_argument, 0, OPT_IDLE},
      {"max-clients", required_argument, 0, OPT_MAX_CLIENTS},
      {"notices-max", required_argument, 0, OPT_NOTICES_MAX},
      {"quiet", no_argument, 0, OPT_QUIET},
      {"port-file", required_argument, 0, OPT_PORT_FILE},
      {"grace", required_argument, 0, OPT_GRACE},
      {"web", required_argument, 0, OPT_WEB},
      {"web-origin", required_argument, 0, OPT_WEB_ORIGIN},
      {"web-ping", required_argument, 0, OPT_WEB_PING},
      {"web-head-timeout", required_argument, 0, OPT_WEB_HEAD},
      {"max-per-addr", required_argument, 0, OPT_PER_ADDR},
      {"max-per-loopback", required_argument, 0, OPT_PER_LOOPBACK},
      {"max-rooms", required_argument, 0, OPT_MAX_ROOMS},
      {"max-rooms-per-client", required_argument, 0, OPT_ROOMS_PER_CLIENT},
      {"history-budget", required_argument, 0, OPT_HIST_BUDGET},
      {"history-text-max", required_argument, 0, OPT_HIST_TEXT},
      {"verbose", no_argument, 0, 'v'},
      CLI_TLS_LONGOPTS,
      {0, 0, 0, 0}};
  static chatd_t d;
  memset(&d, 0, sizeof d);
  chat_opts_t co;
  chat_opts_init(&co);
  co.monitor = monitor_line;
  co.console = console_line;
  co.log = log_msg;
  co.arg = &d;
  const char *bot_nick = CHATBOT_NICK, *rules = NULL, *port_file = NULL;
  unsigned long v, out_queue = CHAT_OUT_QUEUE, max_clients = 0;
  uint64_t grace_ms = 0;
  int no_bot = 0, verbose = 0, c;
  const char *eps[CHAT_MAX_ENDPOINTS], *web_eps[CHAT_MAX_ENDPOINTS];
  int neps = 0, nweb = 0;
  web_opts_t wo = {.log = log_msg, .arg = &d};
  opterr = 0;
  optind = 1;
  /* Endpoints and options in any order ("-" would be stdio: refused below). */
  while ((c = getopt_long(argc, argv, "-v", longopts, NULL)) != -1) {
    switch (c) {
    case 1:
      if (neps == CHAT_MAX_ENDPOINTS)
        return cli_usage_error("chat", "more than %d endpoints", CHAT_MAX_ENDPOINTS);
      eps[neps++] = optarg;
      break;
    case OPT_ROOM: co.default_room = optarg; break;
    case OPT_HISTORY:
      if (cli_parse_uint(optarg, CHAT_HISTORY_MAX, &v) < 0)
        return cli_usage_error("chat", "bad --history '%s': expected 0-%d", optarg,
                               CHAT_HISTORY_MAX);
      co.history = (unsigned)v;
      break;
    case OPT_NO_BOT: no_bot = 1; break;
    case OPT_BOT_NICK: bot_nick = optarg; break;
    case OPT_RULES: rules = optarg; break;
    case OPT_FLOOD_RATE:
      if (cli_parse_uint(optarg, 1000000, &v) < 0)
        return cli_usage_error("chat", "bad --flood-rate '%s': expected 0-1000000", optarg);
      co.flood_rate = (unsigned)v;
      break;
    case OPT_FLOOD_BURST:
      if (cli_parse_uint(optarg, 1000000, &v) < 0 || v == 0)
        return cli_usage_error("chat", "bad --flood-burst '%s': expected 1-1000000", optarg);
      co.flood_burst = (unsigned)v;
      break;
    case OPT_OUT_QUEUE:
      if (cli_parse_uint(optarg, 64ul << 20, &out_queue) < 0 || out_queue < 2 * SK_CHAT_OUT_LINE_MAX)
        return cli_usage_error("chat", "bad --out-queue '%s': expected %d-%lu bytes", optarg,
                               2 * SK_CHAT_OUT_LINE_MAX, 64ul << 20);
      break;
    case OPT_IDLE:
      if (cli_parse_seconds(optarg, &co.idle_ms) < 0)
        return cli_usage_error("chat", "bad --idle-timeout '%s': expected seconds", optarg);
      break;
    case OPT_MAX_CLIENTS:
      if (cli_parse_uint(optarg, 1000000, &max_clients) < 0)
        return cli_usage_error("chat", "bad --max-clients '%s'", optarg);
      break;
    case OPT_NOTICES_MAX:
      if (cli_parse_uint(optarg, 1000000000, &v) < 0)
        return cli_usage_error("chat", "bad --notices-max '%s'", optarg);
      co.notices_max = (unsigned)v;
      break;
    case OPT_QUIET: d.quiet = 1; break;
    case OPT_PORT_FILE: port_file = optarg; break;
    case OPT_GRACE:
      if (cli_parse_seconds(optarg, &grace_ms) < 0)
        return cli_usage_error("chat", "bad --grace '%s': expected seconds", optarg);
      if (grace_ms == 0)
        grace_ms = 1;
      break;
    case OPT_WEB:
      if (nweb == CHAT_MAX_ENDPOINTS)
        return cli_usage_error("chat", "more than %d --web endpoints", CHAT_MAX_ENDPOINTS);
      web_eps[nweb++] = optarg;
      break;
    case OPT_WEB_ORIGIN:
      if (wo.norigins == WEB_ORIGINS_MAX)
        return cli_usage_error("chat", "more than %d --web-origin", WEB_ORIGINS_MAX);
      if (!optarg[0] || strpbrk(optarg, "/ \t,"))
        return cli_usage_error("chat", "bad --web-origin '%s': expected HOST[:PORT] or '*'",
                               optarg);
      wo.origins[wo.norigins++] = optarg;
      break;
    case OPT_WEB_PING:
      if (cli_parse_seconds(optarg, &wo.ping_ms) < 0 || wo.ping_ms == 0)
        return cli_usage_error("chat", "bad --web-ping '%s': expected seconds > 0", optarg);
      break;
    case OPT_WEB_HEAD:
      if (cli_parse_seconds(optarg, &wo.head_timeout_ms) < 0 || wo.head_timeout_ms == 0)
        return cli_usage_error("chat", "bad --web-head-timeout '%s': expected seconds > 0",
                               optarg);
      break;
    case 'v': verbose = 1; break;
    case OPT_PER_ADDR:
    case OPT_PER_LOOPBACK:
    case OPT_MAX_ROOMS:
    case OPT_ROOMS_PER_CLIENT:
    case OPT_HIST_BUDGET:
    case OPT_HIST_TEXT:
      if (memory_option(&co, c, optarg) != 0)
        return EXIT_USAGE;
      break;
    default:
      if (c >= CLI_TLS_CA && c <= CLI_TLS_TIMEOUT) {
        if (cli_tls_option(&d.tls, c, optarg, "chat") < 0)
          return EXIT_USAGE;
        break;
      }
      return cli_usage_error("chat", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (neps == 0)
    return cli_usage_error("chat", "chat serve needs at least one ENDPOINT (tcp://:6667, unix:/path)");
  if (co.default_room && !sk_chat_room_valid(co.default_room, strlen(co.default_room)))
    return cli_usage_error("chat", "bad --room '%s': '#' and 1 to %d of A-Z a-z 0-9 _ - .",
                           co.default_room, SK_CHAT_ROOM_MAX - 1);
  if (!sk_chat_nick_valid(bot_nick, strlen(bot_nick)))
    return cli_usage_error("chat", "bad --bot-nick '%s': not a valid nick", bot_nick);
  if (no_bot && rules)
    return cli_usage_error("chat", "--rules needs the bot: drop --no-bot");

  sk_endpoint_t parsed[CHAT_MAX_ENDPOINTS], web_parsed[CHAT_MAX_ENDPOINTS];
  char err[SK_ERRLEN];
  for (int i = 0; i < nweb; i++) {
    if (sk_endpoint_parse(&web_parsed[i], web_eps[i], SK_EP_LISTEN, err, sizeof err) < 0)
      return cli_usage_error("chat", "--web: %s", err);
    if (sk_endpoint_socktype(&web_parsed[i]) != SOCK_STREAM)
      return cli_usage_error("chat", "--web '%s': the page needs a stream endpoint (tcp, unix)",
                             web_eps[i]);
  }
  for (int i = 0; i < neps; i++) {
    if (sk_endpoint_parse(&parsed[i], eps[i], SK_EP_LISTEN, err, sizeof err) < 0)
      return cli_usage_error("chat", "%s", err);
    int type = sk_endpoint_socktype(&parsed[i]);
    if (type != SOCK_STREAM && type != SOCK_SEQPACKET)
      return cli_usage_error("chat", "'%s': a chat needs a stream endpoint (tcp, unix)", eps[i]);
  }
  /* tls:// endpoints, the chat's or --web's, share one TLS context. */
  const char *tls_name = NULL;
  for (int i = nweb - 1; i >= 0; i--)
    if (web_parsed[i].flags & SK_EP_TLS)
      tls_name = web_eps[i];
  for (int i = neps - 1; i >= 0; i--)
    if (parsed[i].flags & SK_EP_TLS)
      tls_name = eps[i];
  if (cli_tls_server_check(&d.tls, tls_name != NULL, "chat") < 0)
    return EXIT_USAGE;

  raise_nofile();
  int code = EXIT_NET, r;
  if (!no_bot && chatbot_new(&d.bot, bot_nick, rules, err, sizeof err) < 0) {
    cli_error("chat: %s", err);
    return EXIT_USAGE;
  }
  co.bot = d.bot;
  if ((r = sk_loop_new(&d.loop)) < 0 || (r = chat_new(&d.chat, &co, d.loop)) < 0) {
    cli_error("chat: %s", sk_strerror(r));
    goto out;
  }
  sk_server_opts_t so = {.handler = &chat_line_handler,
                         .ctx = d.chat,
                         .in_limit = CHAT_IN_LIMIT,
                         .out_limit = out_queue,
                         .max_conns = max_clients,
                         .grace_ms = grace_ms,
                         .on_error = on_server_error,
                         .on_log = verbose ? log_msg : NULL,
                         .tls_timeout_ms = d.tls.handshake_ms};
  if (tls_name && !(d.tls_ctx = cli_tls_context(&d.tls, 1, tls_name)))
    goto out;
  if ((r = sk_server_new(&d.srv, &so)) < 0) {
    cli_error("chat: %s", sk_strerror(r));
    goto out;
  }
  sk_sockopts_t lo = {.nodelay = 1, .backlog = 4096, .sndbuf = CHAT_SOCK_SNDBUF};
  for (int i = 0; i < neps; i++)
    if (listen_endpoint(&d, d.srv, &parsed[i], &lo, err, sizeof err) < 0) {
      cli_error("chat: %s", err);
      goto out;
    }
  if ((r = sk_server_attach(d.srv, d.loop)) < 0) {
    cli_error("chat: %s", sk_strerror(r));
    goto out;
  }
  for (int i = 0; i < neps; i++)
    cli_announce_listener(sk_server_listener(d.srv, i));
  if (nweb) {
    sk_server_opts_t ws = so;
    ws.handler = &web_handler;
    ws.in_limit = WEB_IN_LIMIT;
    ws.out_limit = out_queue > SK_SERVER_OUT_LIMIT ? out_queue : SK_SERVER_OUT_LIMIT;
    if ((r = web_new(&d.web, d.chat, &wo)) < 0) {
      cli_error("chat: %s", sk_strerror(r));
      goto out;
    }
    ws.ctx = d.web;
    if ((r = sk_server_new(&d.web_srv, &ws)) < 0) {
      cli_error("chat: %s", sk_strerror(r));
      goto out;
    }
    for (int i = 0; i < nweb; i++)
      if (listen_endpoint(&d, d.web_srv, &web_parsed[i], &lo, err, sizeof err) < 0) {
        cli_error("chat: --web: %s", err);
        goto out;
      }
    if ((r = sk_server_attach(d.web_srv, d.loop)) < 0) {
      cli_error("chat: %s", sk_strerror(r));
      goto out;
    }
    for (int i = 0; i < nweb; i++) {
      const sk_listener_t *l = sk_server_listener(d.web_srv, i);
      char url[SK_ENDPOINT_STRLEN + 16];
      cli_listener_url(l, url, sizeof url);
      if (url[0])
        cli_error("chat page: %s", url);
      else
        cli_announce_listener(l);
    }
  }
  if (d.bot && rules)
    cli_error("chat: bot '%s': %d rules from %s", bot_nick, chatbot_rule_count(d.bot), rules);
  if (port_file && cli_write_port_file(port_file, sk_server_listener(d.srv, 0)) < 0)
    goto out;

  cli_stdio_nonblock();
  sk_buf_init(&d.op_in, 2 * SK_CHAT_LINE_MAX);
  sk_buf_init(&d.out, CHAT_MONITOR_MAX);
  sk_chat_reader_init(&d.op_reader, SK_CHAT_LINE_MAX);
  d.in_io.cb = on_stdin;
  d.in_io.data = &d;
  d.out_io.cb = on_stdout;
  d.out_io.data = &d;
  sk_timer_init(&d.stop_timer, on_stop_check, &d);
  if (sk_io_start(d.loop, &d.in_io, STDIN_FILENO, SK_READABLE) < 0)
    cli_error("chat: standard input cannot be watched: no operator console");
  if (sk_io_start(d.loop, &d.out_io, STDOUT_FILENO, 0) < 0)
    d.out_broken = 1;
  sk_net_reserve_fd();
  sk_loop_signal(d.loop, SIGINT, on_stop_signal, &d);
  sk_loop_signal(d.loop, SIGTERM, on_stop_signal, &d);
  sk_loop_signal(d.loop, SIGHUP, on_hup, &d);
  fflush(stdout);
  r = sk_loop_run(d.loop);
  code = r < 0 ? EXIT_NET : EXIT_OK;
  if (r < 0)
    cli_error("chat: %s", sk_strerror(r));
out:
  sk_server_free(d.srv); /* the users left still are told nothing */
  sk_server_free(d.web_srv);
  web_free(d.web);
  chat_free(d.chat);
  chatbot_free(d.bot);
  sk_tls_ctx_free(d.tls_ctx); /* after the servers that borrowed it */
  sk_buf_free(&d.op_in);
  sk_buf_free(&d.out);
  if (d.loop)
    sk_loop_free(d.loop);
  return code;
}

/* `sockit chat ...`: serve, or the terminal client. */
static int run(int argc, char **argv) {
  if (argc < 2)
    return cli_usage_error("chat", "expected 'serve ENDPOINT...' or a server's ENDPOINT");
  if (strcmp(argv[1], "serve") == 0)
    return serve(argc - 1, argv + 1);
  return cli_chat_client(argc, argv);
}

const cli_command_t cli_chat = {
    .name = "chat",
    .run = run,
    .summary = "chat server with rooms, history and a bot ('chat serve ENDPOINT')",
    .usage = usage,
};
