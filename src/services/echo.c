/* echo.c - RFC 862 echo (what arrives goes back), discard (RFC 863) and
 * upper (seed 002: what arrives goes back in ASCII upper case, as Python's
 * bytes.upper() does). Stream and datagram. */
#include <string.h>

#include "services/services.h"

/* Sends back as much of the input as the output queue takes, transformed in
 * place by fn if given; the rest waits for the queue to drain (the
 * framework calls again), so a client that never reads stalls only itself. */
static void send_back(sk_conn_t *c, sk_buf_t *in, void (*fn)(char *, size_t)) {
  size_t n = sk_buf_len(in), room = sk_conn_out_space(c);
  if (n > room)
    n = room;
  if (n == 0)
    return;
  if (fn)
    fn((char *)sk_buf_head(in), n);
  if (sk_conn_send(c, sk_buf_head(in), n) == 0)
    sk_buf_consume(in, n);
}

static void upcase(char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] >= 'a' && p[i] <= 'z')
      p[i] = (char)(p[i] - 'a' + 'A');
}

static void echo_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)eof;
  send_back(c, in, NULL);
}

static void echo_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  (void)s;
  sk_server_reply(dg, dg->data, dg->len);
}

static void upper_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)eof;
  send_back(c, in, upcase);
}

static void upper_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  char out[SK_MSG_MAX];
  (void)s;
  memcpy(out, dg->data, dg->len);
  upcase(out, dg->len);
  sk_server_reply(dg, out, dg->len);
}

static void discard_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)c;
  (void)eof;
  sk_buf_consume(in, sk_buf_len(in));
}

static void discard_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  (void)s;
  (void)dg;
}

static const sk_handler_t echo_handler = {.on_data = echo_data, .on_datagram = echo_datagram};
static const sk_handler_t upper_handler = {.on_data = upper_data, .on_datagram = upper_datagram};
static const sk_handler_t discard_handler = {.on_data = discard_data,
                                             .on_datagram = discard_datagram};

const svc_t svc_echo = {"echo", "RFC 862: sends back what it receives", &echo_handler, 0,
                        {"tcp://127.0.0.1:7007", "udp://127.0.0.1:7007", NULL}};
const svc_t svc_upper = {"upper", "seed 002: sends back what it receives in upper case (ASCII)",
                         &upper_handler, 0, {"tcp://127.0.0.1:55000", "udp://127.0.0.1:55000", NULL}};
const svc_t svc_discard = {"discard", "RFC 863: reads and drops everything", &discard_handler, 0,
                           {"tcp://127.0.0.1:9009", "udp://127.0.0.1:9009", NULL}};
