/* Seed 000's UDP server: print each datagram and answer "Hi" to its
 * sender. Ctrl-C stops it.
 *
 *   seed000_udp_server [udp://127.0.0.1:9000]            */
#include "common.h"

static void on_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  (void)s;
  printf("%.*s\n", (int)dg->len, dg->data);            /* print(msg) */
  fflush(stdout);
  sk_server_reply(dg, "Hi", 2);                        /* sendto(b'Hi', addr) */
}

int main(int argc, char **argv) {
  static const sk_handler_t h = {.on_datagram = on_datagram};
  return example_serve(&h, argc, argv, "udp://127.0.0.1:9000");
}
