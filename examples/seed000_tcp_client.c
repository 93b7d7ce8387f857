/* Seed 000's TCP client: connect, send "hello!", print the reply.
 *
 *   seed000_tcp_client [tcp://127.0.0.1:8080]            */
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "tcp://127.0.0.1:8080", SK_EP_CONNECT);
  char err[SK_ERRLEN], buf[1024];
  int fd = sk_net_connect(&ep, NULL, err, sizeof err);   /* sk.connect(...) */
  if (fd < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  sk_net_set_nonblock(fd, 0);                          /* plain blocking calls from here */
  sk_net_send(fd, "hello!", 6);                        /* sk.send(b'hello!') */
  ssize_t n = sk_net_read(fd, buf, sizeof buf);        /* sk.recv(1024) */
  if (n > 0)
    printf("%.*s\n", (int)n, buf);
  close(fd);
  return n > 0 ? 0 : 1;
}
