/* Seed 001's interactive client: read a line at the ">>> " prompt, send
 * it, print the answer; an empty line is skipped, end of input quits.
 *
 *   seed001_time_client [tcp://127.0.0.1:8009]           */
#include <string.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "tcp://127.0.0.1:8009", SK_EP_CONNECT);
  char err[SK_ERRLEN], line[1024], reply[2048];
  int fd = sk_net_connect(&ep, NULL, err, sizeof err);
  if (fd < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  sk_net_set_nonblock(fd, 0);
  for (;;) {
    printf(">>> ");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))              /* input(">>> ") */
      break;
    if (line[0] == '\n')                               /* if not data: continue */
      continue;
    size_t n = strlen(line);
    if (sk_net_send(fd, line, n) != (ssize_t)n)        /* client.send(...) */
      break;
    ssize_t got = sk_net_read(fd, reply, sizeof reply);/* client.recv(BUF_SIZE) */
    if (got <= 0)
      break;
    printf("%.*s", (int)got, reply);                   /* print(recv_data.decode()) */
  }
  close(fd);
  return 0;
}
