/* Seed 000's TCP server: accept one client, print what it sends, answer
 * "Hi", close. SO_REUSEADDR (the seed's fix for "address already in use")
 * is what every libsockit listener does by default.
 *
 *   seed000_tcp_server [tcp://127.0.0.1:8080]            */
#include "common.h"

static sk_tserver_t *server;

static void handle(sk_stream_t *conn, void *ctx) {
  char buf[1024];
  (void)ctx;
  ssize_t n = sk_stream_read(conn, buf, sizeof buf);   /* conn.recv(1024) */
  if (n > 0)
    printf("%.*s\n", (int)n, buf);                      /* print(ret) */
  sk_stream_write(conn, "Hi", 2);                       /* conn.send(b'Hi') */
  sk_tserver_stop(server);                              /* one client, like the seed */
}

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "tcp://127.0.0.1:8080", SK_EP_LISTEN);
  sk_tserver_opts_t o = {.handle = handle};
  char err[SK_ERRLEN];
  if (sk_tserver_new(&server, &ep, NULL, &o, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  example_announce(sk_tserver_listener(server));
  int r = sk_tserver_run(server);
  sk_tserver_free(server);
  return r < 0;
}
