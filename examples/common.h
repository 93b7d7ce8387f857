/* examples/common.h - two lines every example would otherwise repeat. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <signal.h>
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

/* Runs an event-driven server with handler h on argv[1] (or def) on one
 * thread until Ctrl-C or SIGTERM. Returns the exit status for main. */
static sk_server_t *example_server;
static inline void example_on_signal(int sig) {
  (void)sig;
  sk_server_stop(example_server); /* safe in a signal handler */
}

static inline int example_serve(const sk_handler_t *h, int argc, char **argv, const char *def) {
  sk_endpoint_t ep = example_endpoint(argc, argv, def, SK_EP_LISTEN);
  sk_server_opts_t o = {.handler = h};
  char err[SK_ERRLEN];
  sk_server_new(&example_server, &o);
  if (sk_server_listen(example_server, &ep, NULL, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  example_announce(sk_server_listener(example_server, 0));
  signal(SIGINT, example_on_signal);
  signal(SIGTERM, example_on_signal);
  int r = sk_server_run(example_server, 1);
  sk_server_free(example_server);
  return r < 0;
}

#endif
