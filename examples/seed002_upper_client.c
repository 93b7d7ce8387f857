/* Seed 002's client: send "Hello, world", print what comes back.
 *
 *   seed002_upper_client [tcp://localhost:55000]         */
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "tcp://localhost:55000", SK_EP_CONNECT);
  char err[SK_ERRLEN], data[1024];
  int fd = sk_net_connect(&ep, NULL, err, sizeof err);  /* sock.connect(('localhost', 55000)) */
  if (fd < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  sk_net_set_nonblock(fd, 0);
  sk_net_send(fd, "Hello, world", 12);
  shutdown(fd, SHUT_WR);                               /* "that is all": read the whole answer */
  size_t got = 0;
  ssize_t n;
  while (got < sizeof data && (n = sk_net_read(fd, data + got, sizeof data - got)) > 0)
    got += (size_t)n;
  close(fd);
  printf("%.*s\n", (int)got, data);                    /* print(data) */
  return got > 0 ? 0 : 1;
}
