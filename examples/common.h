/* examples/common.h - two lines every example would otherwise repeat. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include <sockit/sockit.h>

/* Parses argv[1] (or def) as an endpoint in mode, or exits with the message. */
static inline sk_endpoint_t example_endpoint(int argc, char **argv, const char *def,
                                             sk_ep_mode_t mode) {
  sk_endpoint_t ep;
  char err[SK_ERRLEN];
  if (sk_endpoint_parse(&ep, argc > 1 ? argv[1] : def, mode, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    exit(2);
  }
  return ep;
}

/* Prints "listening on tcp://127.0.0.1:PORT" with the real port. */
static inline void example_announce(const sk_listener_t *l) {
  char addr[SK_ENDPOINT_STRLEN];
  printf("listening on %s\n", sk_sockaddr_format(&l->bound, addr, sizeof addr));
  fflush(stdout);
}

#endif
