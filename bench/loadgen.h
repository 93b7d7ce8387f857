/* bench/loadgen.h - the load generator's modes and what they share.
 *
 * loadgen.c parses the command line into an lg_opts_t and calls one mode;
 * each mode (lg_*.c) runs against a server, checks every byte it gets back,
 * and prints one JSON line on stdout. Exit code: 0 when the run had no
 * errors, 1 when it had any (wrong bytes, lost lines, refused, timed out),
 * 2 for a usage error.
 *
 * Adding a mode: write lg_NAME.c with `int lg_NAME(const lg_opts_t *o)`,
 * declare it here and add a row to the mode table in loadgen.c.
 */
#ifndef SOCKIT_BENCH_LOADGEN_H
#define SOCKIT_BENCH_LOADGEN_H

#include <stdbool.h>
#include <stdint.h>

#include "bench_common.h"

/* Command-line options; each mode reads the ones it documents. */
typedef struct {
  const char *connect;  /* --connect HOST:PORT: the server under test */
  const char *listen;   /* --listen HOST:PORT: where receiving modes listen */
  unsigned conns;       /* --conns N: parallel connections */
  unsigned receivers;   /* --receivers N: fanout receivers */
  uint64_t size;        /* --size BYTES: message (or line) size */
  uint64_t count;       /* --count N: round trips / connections / lines */
  uint64_t bytes;       /* --bytes N: bulk volume (K/M/G suffixes) */
  uint64_t duration_ns; /* --duration SECS: start no new work after this */
  uint64_t timeout_ns;  /* --timeout SECS: hard deadline for the whole run */
  uint64_t drain_ns;    /* --drain SECS: fanout waits this long for stragglers */
  uint64_t seed;        /* --seed N: byte pattern */
  unsigned window;      /* --window N: fanout lines in flight */
  bool echo;            /* --echo: bulk send expects its bytes back */
  bool no_wait_eof;     /* --no-wait-eof: bulk send ends after its last byte */
  bool no_verify;       /* --no-verify: bulk sink counts but skips the pattern */
  const char *hello;    /* --hello LINE: fanout, first line on every connection */
  const char *ws;       /* --ws PATH: fanout over WebSocket, upgrading PATH */
  const char *out;      /* --out FILE: genfile */
} lg_opts_t;

/* The first error of a run, in words, and how many there were. */
typedef struct {
  uint64_t count;
  char first[BN_ERRLEN];
} lg_errors_t;

/* Counts one error; keeps the message when it is the first. */
void lg_error(lg_errors_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One JSON object on one line of stdout, built field by field:
 * lg_json_begin("pingpong"); lg_json_u64("errors", 0); ...; lg_json_end(). */
void lg_json_begin(const char *mode);
void lg_json_u64(const char *key, uint64_t v);
void lg_json_num(const char *key, double v);
void lg_json_str(const char *key, const char *v);
void lg_json_end(void);

/* Adds the error fields ("errors", "error") to the open JSON line and
 * returns the exit code they mean (0 or 1). */
int lg_json_errors(const lg_errors_t *e);

/* Parses o->connect (or o->listen) into *a; prints the problem and returns
 * -1 when it is missing or bad. */
int lg_addr(const char *text, const char *option, bn_addr_t *a);

int lg_pingpong(const lg_opts_t *o);
int lg_connrate(const lg_opts_t *o);
int lg_bulk_send(const lg_opts_t *o);
int lg_bulk_recv(const lg_opts_t *o);
int lg_bulk_sink(const lg_opts_t *o);
int lg_genfile(const lg_opts_t *o);
int lg_fanout(const lg_opts_t *o);
int lg_hold(const lg_opts_t *o);

#endif
