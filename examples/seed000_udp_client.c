/* Seed 000's UDP client: send "hello", print the answer and who sent it.
 *
 *   seed000_udp_client [udp://127.0.0.1:9000]            */
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "udp://127.0.0.1:9000", SK_EP_CONNECT);
  sk_sockopts_t so = {.connect_timeout_ms = 2000};
  char err[SK_ERRLEN], buf[1024], from[SK_ENDPOINT_STRLEN];
  int fd = sk_net_connect(&ep, &so, err, sizeof err);
  if (fd < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  sk_net_set_nonblock(fd, 0);
  struct timeval tv = {.tv_sec = 2};                   /* a datagram may never come back */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sk_net_send(fd, "hello", 5);                         /* sendto(b'hello', ip_port) */
  sk_sockaddr_t peer = {.len = sizeof peer.ss};
  ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer.ss, &peer.len);
  if (n < 0) {
    perror("recvfrom");
    return 1;
  }
  printf("%.*s %s\n", (int)n, buf, sk_sockaddr_format(&peer, from, sizeof from));
  close(fd);
  return 0;
}
