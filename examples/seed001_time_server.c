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

int main(int argc, char **argv) {
  static const sk_handler_t h = {.on_data = on_data};
  return example_serve(&h, argc, argv, "tcp://127.0.0.1:8009");
}
