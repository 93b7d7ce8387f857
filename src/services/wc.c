/* wc.c - the word-count service (seed 002, task 3): a client sends files,
 * the server counts their lines, words, characters and bytes exactly as
 * GNU wc does, and answers each. SKWC/1 over stream endpoints (tcp, unix);
 * the protocol and the counter are pure code in src/proto (sockit/wc.h),
 * the grammar and limits are in docs/wc.md.
 *
 * A connection holds only its parser and counter state (a few hundred
 * bytes): file data is counted straight out of the input buffer and
 * consumed, so memory stays the same whatever the file size. A count is
 * sent only after END, when every declared byte has arrived; a stream cut
 * short, a malformed line or a size mismatch gets an error, never a count.
 */
#include <stdio.h>
#include <stdlib.h>

#include "services/services.h"
#include "sockit/wc.h"

/* Per connection. */
typedef struct {
  sk_wcp_server_t parser;
  sk_wc_t counter;
  sk_wc_locale_t locale; /* from the hello */
  unsigned what;
} wc_conn_t;

/* Sends "FATAL msg", drops what is left of the input and closes once the
 * queue is written: the stream cannot be followed any further. */
static void fatal(sk_conn_t *c, sk_buf_t *in, const char *msg) {
  char line[SK_WC_REPLY_MAX + 1];
  long n = sk_wcp_error(line, sizeof line, 1, msg);
  if (n > 0)
    sk_conn_send(c, line, (size_t)n); /* a full queue loses it: closing anyway */
  sk_buf_consume(in, sk_buf_len(in));
  sk_conn_close(c);
}

/* Sends one reply line; the caller made sure SK_WC_REPLY_MAX bytes fit. */
static void reply(sk_conn_t *c, const char *line, long n) {
  if (n > 0)
    sk_conn_send(c, line, (size_t)n);
}

/* Acts on one parsed event. */
static void handle(sk_conn_t *c, wc_conn_t *wc, const sk_wcp_event_t *ev) {
  char line[SK_WC_REPLY_MAX + 1];
  sk_wc_counts_t counts;
  switch (ev->kind) {
  case SK_WCP_HELLO:
    wc->locale = ev->locale;
    wc->what = ev->what;
    reply(c, "SKWC/1 OK\n", 10);
    break;
  case SK_WCP_FILE:
    sk_wc_init(&wc->counter, wc->locale, wc->what);
    break;
  case SK_WCP_DATA:
    sk_wc_feed(&wc->counter, ev->data, ev->len);
    break;
  case SK_WCP_END:
    if (ev->error) {
      reply(c, line, sk_wcp_error(line, sizeof line, 0, ev->error));
    } else {
      sk_wc_result(&wc->counter, &counts);
      reply(c, line, sk_wcp_counts(line, sizeof line, wc->what, &counts));
    }
    break;
  case SK_WCP_ABORT:
    reply(c, line, sk_wcp_error(line, sizeof line, 0, "aborted by the client: no count"));
    break;
  case SK_WCP_NOOP:
  case SK_WCP_NONE:
    break;
  }
}

/* Parses and answers everything complete in the input. Stops early while
 * the output queue could not take one more reply: the framework calls
 * again once the client has read its answers (and reads no more input
 * from it meanwhile), so a client that never reads stalls only itself.
 *
 * At the client's end of stream everything left is answered now (the
 * framework closes after this call). Input is only read while at most half
 * the queue is used, and a reply is never longer than what asked for it
 * unless the client aborts or mismatches file after file; such a client
 * may find its last answers missing, never a wrong one. */
static void wc_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  wc_conn_t *wc = sk_conn_data(c);
  char err[SK_ERRLEN];
  if (!wc) { /* refused in wc_open */
    sk_buf_consume(in, sk_buf_len(in));
    return;
  }
  for (;;) {
    if (sk_conn_out_space(c) < SK_WC_REPLY_MAX)
      return; /* called again when the queue drains; at EOF: closed, unanswered */
    if (sk_buf_len(in) == 0)
      break;
    sk_wcp_event_t ev;
    long r = sk_wcp_server_parse(&wc->parser, sk_buf_head(in), sk_buf_len(in), &ev, err,
                                 sizeof err);
    if (r < 0) {
      fatal(c, in, err);
      return;
    }
    if (r == 0)
      break;
    handle(c, wc, &ev);
    sk_buf_consume(in, (size_t)r);
  }
  if (eof && sk_wcp_server_eof(&wc->parser, sk_buf_len(in), err, sizeof err) < 0)
    fatal(c, in, err);
}

/* A new connection: its parser state (a unix-seqpacket one is told why it
 * cannot be served, and closed). Returns -1 only when out of memory. */
static int wc_open(sk_conn_t *c) {
  if (sk_conn_is_message(c)) {
    /* Each seqpacket call is one packet and leftovers are dropped: SKWC/1
     * lines could be cut. Say so and close. */
    static const char msg[] = "FATAL wc needs a byte stream endpoint (tcp or unix), "
                              "not unix-seqpacket\n";
    sk_conn_send(c, msg, sizeof msg - 1);
    sk_conn_close(c);
    return 0;
  }
  wc_conn_t *wc = calloc(1, sizeof *wc);
  if (!wc)
    return -1;
  sk_wcp_server_init(&wc->parser);
  sk_conn_set_data(c, wc);
  return 0;
}

/* The connection is gone: its state with it. */
static void wc_close(sk_conn_t *c, int reason) {
  (void)reason;
  free(sk_conn_data(c));
}

/* Datagram endpoints cannot carry a file stream. A refusal sent back would
 * answer anything, spoofed sources included (a reply loop with another
 * service that answers everything): the datagram is dropped, and the
 * operator told, one line a second at most. */
static void wc_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  char from[SK_ENDPOINT_STRLEN];
  sk_server_report(s, "datagram from %s dropped: wc needs a byte stream endpoint (tcp or unix)",
                   sk_sockaddr_format(dg->peer, from, sizeof from));
}

static const sk_handler_t wc_handler = {
    .on_open = wc_open, .on_data = wc_data, .on_close = wc_close, .on_datagram = wc_datagram};

const svc_t svc_wc = {"wc",
                      "seed 002: counts lines, words, chars, bytes of files (sockit wc), as GNU wc",
                      &wc_handler,
                      0,
                      {"tcp://127.0.0.1:9393", "unix:@sockit-wc", NULL}};
