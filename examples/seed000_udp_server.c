/* Seed 000's UDP server: print each datagram and answer "Hi" to its
 * sender. Ctrl-C stops it.
 *
 *   seed000_udp_server [udp://127.0.0.1:9000]            */
#include <signal.h>

#include "common.h"

static void on_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  (void)s;
  printf("%.*s\n", (int)dg->len, dg->data);            /* print(msg) */
  fflush(stdout);
  sk_server_reply(dg, "Hi", 2);                        /* sendto(b'Hi', addr) */
}

static sk_server_t *server;
static void on_signal(int sig) { (void)sig; sk_server_stop(server); }

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "udp://127.0.0.1:9000", SK_EP_LISTEN);
  static const sk_handler_t h = {.on_datagram = on_datagram};
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
