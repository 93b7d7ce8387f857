/* Seed 001's timestamp server on the event-driven framework: every line is
 * answered "[<ctime>] <line>". Many clients at once on one thread.
 *
 *   seed001_time_server [tcp://127.0.0.1:8009]           */
#include <signal.h>
#include <string.h>
#include <time.h>

#include "common.h"

static void on_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  size_t n;
  long used;
  (void)eof;
  while ((used = sk_line_next(in, 4096, &n)) > 0) {
    char stamp[32], head[48];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%a %b %e %H:%M:%S %Y", localtime(&now));
    int hl = snprintf(head, sizeof head, "[%s] ", stamp);
    if (sk_conn_out_space(c) < (size_t)hl + n + 1)
      return;                                          /* wait for the client to read */
    sk_conn_send(c, head, (size_t)hl);
    sk_conn_send(c, sk_buf_head(in), n);
    sk_conn_send(c, "\n", 1);
    sk_buf_consume(in, (size_t)used);
  }
  if (used == SK_ETOOBIG)
    sk_conn_close(c);                                  /* a line over 4 KiB */
}

static sk_server_t *server;
static void on_signal(int sig) { (void)sig; sk_server_stop(server); }

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "tcp://127.0.0.1:8009", SK_EP_LISTEN);
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
