/* bench/loadgen.c - the benchmark load generator: command line, mode table
 * and the JSON line every mode prints.
 *
 *   loadgen MODE [OPTIONS]
 *
 * MODE is one of the rows of `modes` below; `loadgen --help` lists them
 * with their options. It measures libsockit, so it does not use it for
 * anything the server does: its sockets, event loop and checks are its
 * own. The one exception is fanout --ws, which takes the WebSocket frame
 * codec from libsockit (pure code over buffers, no I/O).
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

/* ---- errors and JSON output --------------------------------------------------- */

void lg_error(lg_errors_t *e, const char *fmt, ...) {
  if (e->count++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->first, sizeof e->first, fmt, ap);
    va_end(ap);
  }
}

static char json_line[4096];
static size_t json_len;

/* Appends formatted text to the JSON line, truncating at its limit (the
 * fields are few and short; truncation would show up as invalid JSON). */
static void json_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void json_add(const char *fmt, ...) {
  if (json_len >= sizeof json_line)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(json_line + json_len, sizeof json_line - json_len, fmt, ap);
  va_end(ap);
  if (n > 0)
    json_len += (size_t)n;
}

/* Appends "key": with the comma that separates it from the previous field. */
static void json_key(const char *key) {
  json_add("%s\"%s\": ", json_len > 1 ? ", " : "", key);
}

void lg_json_begin(const char *mode) {
  json_len = 0;
  json_add("{");
  lg_json_str("mode", mode);
}

void lg_json_u64(const char *key, uint64_t v) {
  json_key(key);
  json_add("%llu", (unsigned long long)v);
}

void lg_json_num(const char *key, double v) {
  json_key(key);
  json_add("%.6g", v);
}

void lg_json_str(const char *key, const char *v) {
  json_key(key);
  json_add("\"");
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if (*p == '"' || *p == '\\')
      json_add("\\%c", *p);
    else if (*p < 0x20)
      json_add("\\u%04x", *p);
    else
      json_add("%c", *p);
  }
  json_add("\"");
}

void lg_json_end(void) {
  json_add("}");
  printf("%s\n", json_line);
  fflush(stdout);
}

int lg_json_errors(const lg_errors_t *e) {
  lg_json_u64("errors", e->count);
  lg_json_str("error", e->first);
  return e->count ? 1 : 0;
}

int lg_addr(const char *text, const char *option, bn_addr_t *a) {
  char err[BN_ERRLEN];
  if (!text) {
    fprintf(stderr, "loadgen: %s HOST:PORT is required\n", option);
    return -1;
  }
  if (bn_addr_parse(text, a, err, sizeof err) < 0) {
    fprintf(stderr, "loadgen: %s: %s\n", option, err);
    return -1;
  }
  return 0;
}

/* ---- modes ---------------------------------------------------------------------- */

typedef struct {
  const char *name;
  int (*run)(const lg_opts_t *o);
  const char *help;
} lg_mode_t;

static const lg_mode_t modes[] = {
  {"pingpong", lg_pingpong,
   "--connect A [--conns N] [--size S] (--count N | --duration SECS)\n"
   "      N connections each send S bytes and wait for the same S bytes back;\n"
   "      round trips per second, p50/p99 latency"},
  {"connrate", lg_connrate,
   "--connect A [--conns N] [--size S] (--count N | --duration SECS)\n"
   "      connect, send S bytes, read them back, close; N in flight;\n"
   "      connections per second, p50/p99 of the whole exchange"},
  {"bulk-send", lg_bulk_send,
   "--connect A --bytes N [--conns K] [--echo] [--no-wait-eof]\n"
   "      send N bytes of the pattern (split over K connections), shut down,\n"
   "      wait for EOF; with --echo verify the same bytes come back; MiB/s"},
  {"bulk-recv", lg_bulk_recv,
   "--listen A --bytes N [--conns K]\n"
   "      print the port, accept K connections, read to EOF verifying the\n"
   "      pattern and that N bytes arrived in all; MiB/s"},
  {"bulk-sink", lg_bulk_sink,
   "--bytes N [--no-verify]\n"
   "      read standard input until N bytes and EOF, verifying the pattern\n"
   "      (for a server's stdout); reports when the N-th byte arrived"},
  {"genfile", lg_genfile,
   "--bytes N --out FILE\n"
   "      write N bytes of the pattern to FILE (a sender's standard input)"},
  {"fanout", lg_fanout,
   "--connect A [--receivers N] [--count M] [--size S] [--window W] [--hello LINE]\n"
   "      [--ws PATH]\n"
   "      N receivers and one sender on a line-broadcast (chat) server; every\n"
   "      receiver must get each of the M lines once and in order; counts\n"
   "      lost, duplicated, reordered, corrupt; deliveries per second.\n"
   "      --ws PATH: every client upgrades PATH to a WebSocket and sends each\n"
   "      line as one masked text frame; each server text message is a line"},
  {"hold", lg_hold,
   "--connect A --conns N [--hello LINE] [--duration SECS]\n"
   "      N idle clients: connect (and say hello), wait until each got a line,\n"
   "      print the JSON line, then hold them open until stdin ends or SECS\n"
   "      pass; fails if the server closes any (for memory per client)"},
};

/* Prints the modes and options to f. */
static void usage(FILE *f) {
  fprintf(f, "usage: loadgen MODE [OPTIONS]   (A is 127.0.0.1:PORT or [::1]:PORT)\n\n");
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    fprintf(f, "  %s %s\n\n", modes[i].name, modes[i].help);
  fprintf(f, "Every mode: --timeout SECS (hard deadline, default 60), --seed N.\n"
             "Output: one JSON line on stdout; exit 0 only when errors is 0.\n");
}

enum {
  OPT_CONNECT = 256, OPT_LISTEN, OPT_CONNS, OPT_RECEIVERS, OPT_SIZE, OPT_COUNT,
  OPT_BYTES, OPT_DURATION, OPT_TIMEOUT, OPT_DRAIN, OPT_SEED, OPT_WINDOW, OPT_ECHO,
  OPT_NO_WAIT_EOF, OPT_NO_VERIFY, OPT_HELLO, OPT_OUT, OPT_WS, OPT_HELP
};

static const struct option long_options[] = {
  {"connect", required_argument, NULL, OPT_CONNECT},
  {"listen", required_argument, NULL, OPT_LISTEN},
  {"conns", required_argument, NULL, OPT_CONNS},
  {"receivers", required_argument, NULL, OPT_RECEIVERS},
  {"size", required_argument, NULL, OPT_SIZE},
  {"count", required_argument, NULL, OPT_COUNT},
  {"bytes", required_argument, NULL, OPT_BYTES},
  {"duration", required_argument, NULL, OPT_DURATION},
  {"timeout", required_argument, NULL, OPT_TIMEOUT},
  {"drain", required_argument, NULL, OPT_DRAIN},
  {"seed", required_argument, NULL, OPT_SEED},
  {"window", required_argument, NULL, OPT_WINDOW},
  {"echo", no_argument, NULL, OPT_ECHO},
  {"no-wait-eof", no_argument, NULL, OPT_NO_WAIT_EOF},
  {"no-verify", no_argument, NULL, OPT_NO_VERIFY},
  {"hello", required_argument, NULL, OPT_HELLO},
  {"out", required_argument, NULL, OPT_OUT},
  {"ws", required_argument, NULL, OPT_WS},
  {"help", no_argument, NULL, OPT_HELP},
  {NULL, 0, NULL, 0},
};

/* Parses a count option value limited to max into *out. Returns 0 or -1. */
static int parse_count(const char *text, uint64_t max, uint64_t *out) {
  uint64_t v;
  if (bn_parse_size(text, &v) < 0 || v > max)
    return -1;
  *out = v;
  return 0;
}

/* Fills o from argv (after the mode word). Returns 0, 1 for --help, or -1
 * after printing what is wrong. */
static int parse_options(int argc, char **argv, lg_opts_t *o) {
  uint64_t v = 0;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    int bad = 0;
    switch (c) {
    case OPT_CONNECT: o->connect = optarg; break;
    case OPT_LISTEN: o->listen = optarg; break;
    case OPT_CONNS:
      bad = parse_count(optarg, 100000, &v) < 0 || v == 0;
      o->conns = (unsigned)v;
      break;
    case OPT_RECEIVERS:
      bad = parse_count(optarg, 100000, &v) < 0 || v == 0;
      o->receivers = (unsigned)v;
      break;
    case OPT_WINDOW:
      bad = parse_count(optarg, 1u << 30, &v) < 0;
      o->window = (unsigned)v;
      break;
    case OPT_SIZE: bad = parse_count(optarg, (uint64_t)1 << 30, &o->size) < 0; break;
    case OPT_COUNT: bad = parse_count(optarg, (uint64_t)1 << 40, &o->count) < 0; break;
    case OPT_BYTES: bad = bn_parse_size(optarg, &o->bytes) < 0; break;
    case OPT_SEED: bad = bn_parse_size(optarg, &o->seed) < 0; break;
    case OPT_DURATION: bad = bn_parse_seconds(optarg, &o->duration_ns) < 0; break;
    case OPT_TIMEOUT: bad = bn_parse_seconds(optarg, &o->timeout_ns) < 0 || o->timeout_ns == 0; break;
    case OPT_DRAIN: bad = bn_parse_seconds(optarg, &o->drain_ns) < 0; break;
    case OPT_ECHO: o->echo = true; break;
    case OPT_NO_WAIT_EOF: o->no_wait_eof = true; break;
    case OPT_NO_VERIFY: o->no_verify = true; break;
    case OPT_HELLO: o->hello = optarg; break;
    case OPT_OUT: o->out = optarg; break;
    case OPT_WS: o->ws = optarg; break;
    case OPT_HELP: return 1;
    default:
      fprintf(stderr, "loadgen: unknown option or missing value: %s\n", argv[optind - 1]);
      return -1;
    }
    if (bad) {
      fprintf(stderr, "loadgen: bad value '%s' for %s\n", optarg, argv[optind - 2]);
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "loadgen: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const lg_mode_t *mode = NULL;
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    if (strcmp(argv[1], modes[i].name) == 0)
      mode = &modes[i];
  if (!mode) {
    fprintf(stderr, "loadgen: unknown mode '%s'\n", argv[1]);
    usage(stderr);
    return 2;
  }

  lg_opts_t o = {
    .conns = 1, .receivers = 4, .timeout_ns = 60000000000ull,
    .drain_ns = 1000000000ull, .seed = 1, .window = 64,
  };
  int rc = parse_options(argc - 1, argv + 1, &o);
  if (rc != 0) {
    if (rc > 0)
      printf("loadgen %s %s\n", mode->name, mode->help);
    return rc > 0 ? 0 : 2;
  }
  /* Writes to a peer that went away must fail with EPIPE, not kill us. */
  signal(SIGPIPE, SIG_IGN);
  return mode->run(&o);
}
