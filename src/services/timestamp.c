/* timestamp.c - the seed 001 timestamp server: every line is answered with
 * "[<ctime>] <line>", and daytime (RFC 867): the date on connect, then close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/services.h"

/* Per connection: the timer that answers a line left unterminated. */
typedef struct {
  sk_timer_t partial;
  sk_conn_t *conn;
} time_conn_t;

/* Answers one line of n bytes (used bytes consumed from in) if the reply
 * fits the output queue whole. Returns 1 if answered, 0 to wait for room. */
static int answer(sk_conn_t *c, sk_buf_t *in, size_t n, size_t used) {
  char stamp[64], head[80];
  svc_ctime(stamp, sizeof stamp);
  int hl = snprintf(head, sizeof head, "[%s] ", stamp);
  if (sk_conn_out_space(c) < (size_t)hl + n + 1)
    return 0;
  sk_conn_send(c, head, (size_t)hl);
  sk_conn_send(c, sk_buf_head(in), n);
  sk_conn_send(c, "\n", 1);
  sk_buf_consume(in, used);
  return 1;
}

/* Answers every complete line; with flush, also what is left of a line
 * without LF (at EOF, or when it has been left unterminated too long). */
static void time_lines(sk_conn_t *c, sk_buf_t *in, int flush) {
  for (;;) {
    size_t n;
    long used = sk_line_next(in, SVC_LINE_MAX, &n);
    if (used == SK_ETOOBIG) {
      static const char msg[] = "error: line longer than 8192 bytes\n";
      sk_buf_consume(in, sk_buf_len(in));
      sk_conn_send(c, msg, sizeof msg - 1);
      sk_conn_close(c);
      return;
    }
    if (used == 0) {
      if (!flush || sk_buf_len(in) == 0)
        return;
      n = sk_buf_len(in);
      used = (long)n;
    }
    if (!answer(c, in, n, (size_t)used))
      return;
  }
}

static void partial_fired(sk_loop_t *loop, sk_timer_t *t) {
  time_conn_t *tc = t->data;
  (void)loop;
  time_lines(tc->conn, sk_conn_input(tc->conn), 1);
}

static int time_open(sk_conn_t *c) {
  time_conn_t *tc = calloc(1, sizeof *tc);
  if (!tc)
    return -1;
  tc->conn = c;
  sk_timer_init(&tc->partial, partial_fired, tc);
  sk_conn_set_data(c, tc);
  return 0;
}

static void time_close(sk_conn_t *c, int reason) {
  time_conn_t *tc = sk_conn_data(c);
  (void)reason;
  sk_timer_stop(sk_conn_loop(c), &tc->partial);
  free(tc);
}

static void time_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  time_conn_t *tc = sk_conn_data(c);
  time_lines(c, in, eof || sk_conn_is_message(c));
  /* The seed's client sends its input without a newline and waits: a line
   * left unterminated for SVC_PARTIAL_LINE_MS is answered as it is. */
  if (sk_buf_len(in) && !eof)
    sk_timer_start(sk_conn_loop(c), &tc->partial, SVC_PARTIAL_LINE_MS, 0);
  else
    sk_timer_stop(sk_conn_loop(c), &tc->partial);
}

static void time_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  char stamp[64], out[SK_MSG_MAX + 80];
  (void)s;
  size_t n = dg->len;
  if (n && dg->data[n - 1] == '\n')
    n--;
  if (n && dg->data[n - 1] == '\r')
    n--;
  svc_ctime(stamp, sizeof stamp);
  int hl = snprintf(out, sizeof out, "[%s] ", stamp);
  if ((size_t)hl + n + 1 > SK_MSG_MAX)
    n = SK_MSG_MAX - (size_t)hl - 1;
  memcpy(out + hl, dg->data, n);
  out[(size_t)hl + n] = '\n';
  sk_server_reply(dg, out, (size_t)hl + n + 1);
}

/* RFC 867 leaves the format open; this is the one it suggests:
 * "Weekday, Month Day, Year HH:MM:SS-ZONE". */
static int daytime_text(char *buf, size_t len) {
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  size_t n = strftime(buf, len, "%A, %B %d, %Y %H:%M:%S-%Z\r\n", &tm);
  return (int)n;
}

static int daytime_open(sk_conn_t *c) {
  char buf[128];
  int n = daytime_text(buf, sizeof buf);
  sk_conn_send(c, buf, (size_t)n);
  sk_conn_close(c);
  return 0;
}

static void daytime_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)c;
  (void)eof;
  sk_buf_consume(in, sk_buf_len(in));
}

static void daytime_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  char buf[128];
  (void)s;
  int n = daytime_text(buf, sizeof buf);
  sk_server_reply(dg, buf, (size_t)n);
}

static const sk_handler_t time_handler = {
    .on_open = time_open, .on_data = time_data, .on_close = time_close, .on_datagram = time_datagram};
static const sk_handler_t daytime_handler = {
    .on_open = daytime_open, .on_data = daytime_data, .on_datagram = daytime_datagram};

const svc_t svc_time = {"time", "seed 001: answers each line with \"[ctime] line\"", &time_handler,
                        SVC_LINE_MAX, {"tcp://127.0.0.1:8009", "udp://127.0.0.1:8009", NULL}};
const svc_t svc_daytime = {"daytime", "RFC 867: the date and time, then close", &daytime_handler,
                           0, {"tcp://127.0.0.1:13013", "udp://127.0.0.1:13013", NULL}};
