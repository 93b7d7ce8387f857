/* Seed 002's server: every byte a client sends comes back upper-cased
 * (ASCII, as Python's bytes.upper()). Ctrl-C stops it.
 *
 *   seed002_upper_server [tcp://:55000]                  */
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

int main(int argc, char **argv) {
  static const sk_handler_t h = {.on_data = on_data};
  return example_serve(&h, argc, argv, "tcp://:55000");
}
