/* Seed 002's server: every byte a client sends comes back upper-cased
 * (ASCII, as Python's bytes.upper()). Ctrl-C stops it.
 *
 *   seed002_upper_server [tcp://:55000]                  */
#include <signal.h>

#include "common.h"

static void on_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)eof;
  size_t n = sk_buf_len(in), room = sk_conn_out_space(c);
  char *p = (char *)sk_buf_head(in);
  if (n > room)
    n = room;                                          /* the rest when the client reads */
  for (size_t i = 0; i < n; i++)
    if (p[i] >= 'a' && p[i] <= 'z')
      p[i] = (char)(p[i] - 32);
  sk_conn_send(c, p, n);                               /* conn.send(data.upper()) */
  sk_buf_consume(in, n);
}

static sk_server_t *server;
static void on_signal(int sig) { (void)sig; sk_server_stop(server); }

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "tcp://:55000", SK_EP_LISTEN);
  static const sk_handler_t h = {.on_data = on_data};
  sk_server_opts_t o = {.handler = &h};
  char err[SK_ERRLEN];
  sk_server_new(&server, &o);
  if (sk_server_listen(server, &ep, NULL, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  example_announce(sk_server_listener(server, 0));
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int r = sk_server_run(server, 1);
  sk_server_free(server);
  return r < 0;
}
