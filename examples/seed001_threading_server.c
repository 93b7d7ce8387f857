/* Seed 001's socketserver.ThreadingTCPServer with a BaseRequestHandler:
 * one thread per client running handle(), which answers each message with
 * "<ctime> <data>". Threads are bounded and reaped; Ctrl-C stops it.
 *
 *   seed001_threading_server [tcp://127.0.0.1:8009]      */
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "common.h"

static void handle(sk_stream_t *conn, void *ctx) {     /* def handle(self): */
  char data[1024], out[1100], addr[SK_ENDPOINT_STRLEN];
  (void)ctx;
  printf("...connected from: %s\n", sk_sockaddr_format(sk_stream_peer(conn), addr, sizeof addr));
  fflush(stdout);
  for (;;) {
    ssize_t n = sk_stream_read(conn, data, sizeof data);   /* self.request.recv(BUF_SIZE) */
    if (n <= 0)
      break;                                               /* if not data: break */
    time_t now = time(NULL);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%a %b %e %H:%M:%S %Y", localtime(&now));
    int m = snprintf(out, sizeof out, "%s %.*s", stamp, (int)n, data);
    if (sk_stream_write(conn, out, (size_t)m) < 0)         /* self.request.send(...) */
      break;
  }
}

static sk_tserver_t *server;
static void on_signal(int sig) { (void)sig; sk_tserver_stop(server); }

int main(int argc, char **argv) {
  sk_endpoint_t ep = example_endpoint(argc, argv, "tcp://127.0.0.1:8009", SK_EP_LISTEN);
  sk_tserver_opts_t o = {.handle = handle, .max_threads = 32, .idle_timeout_ms = 60000};
  char err[SK_ERRLEN];
  if (sk_tserver_new(&server, &ep, NULL, &o, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  example_announce(sk_tserver_listener(server));       /* print("waiting for connection...") */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int r = sk_tserver_run(server);                      /* server.serve_forever() */
  sk_tserver_free(server);
  return r < 0;
}
