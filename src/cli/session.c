/* session.c - the stdin/stdout <-> socket session of connect and listen. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "sockit/tls.h"

typedef struct {
  sk_loop_t *loop;
  const char *name;
  const cli_session_opts_t *o;
  struct sk_tls *tls;
  int exit_code;
  int ended;
} session_t;

static void on_done(sk_bridge_t *br, const sk_bridge_end_t *end, void *data) {
  session_t *s = data;
  (void)br;
  s->ended = 1;
  s->exit_code = EXIT_OK;
  if (end->err == SK_ETIMEDOUT) {
    cli_error("%s: no data for %.3g s (idle timeout)", s->name,
              (double)s->o->idle_timeout_ms / 1000.0);
    s->exit_code = EXIT_NET;
  } else if (end->err == -EPIPE && end->side == 'a') {
    /* Standard output was closed by its reader (`| head`): a normal end. */
  } else if (end->err < 0 && end->side == 'b' && s->tls && sk_tls_last_error(s->tls)[0]) {
    cli_error("%s %s: %s", end->op, s->name, sk_tls_last_error(s->tls));
    s->exit_code = EXIT_NET;
  } else if (end->err < 0) {
    const char *what = end->side == 'a' ? (strcmp(end->op, "read") == 0 ? "standard input"
                                                                          : "standard output")
                                        : s->name;
    cli_error("%s %s: %s", end->op, what, sk_strerror(end->err));
    s->exit_code = EXIT_NET;
  }
  sk_loop_stop(s->loop);
}

static void on_stop_signal(sk_loop_t *loop, int signo, void *data) {
  session_t *s = data;
  (void)signo;
  s->exit_code = EXIT_OK;
  sk_loop_stop(loop);
}

int cli_session_run(int fd, struct sk_tls *tls, const char *name, const cli_session_opts_t *o) {
  session_t s = {.name = name, .o = o, .tls = tls, .exit_code = EXIT_OK};
  int r = sk_loop_new(&s.loop);
  if (r < 0) {
    cli_error("event loop: %s", sk_strerror(r));
    sk_tls_free(tls);
    close(fd);
    return EXIT_NET;
  }
  int type = 0;
  socklen_t tl = sizeof type;
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl);
  cli_stdio_nonblock();
  sk_bridge_side_t a = {.rfd = STDIN_FILENO, .wfd = STDOUT_FILENO};
  sk_bridge_side_t b = {.rfd = fd,
                        .wfd = fd,
                        .crlf = o->crlf,
                        .chunk = o->chunk,
                        .no_shutdown = o->no_shutdown,
                        .tls = tls,
                        /* The peer's EOF ends an interactive session at
                         * once; piped input is still sent in full while it
                         * flows, and the session ends when it pauses. */
                        .eof_ends = isatty(STDIN_FILENO),
                        .eof_linger_ms = CLI_PEER_EOF_LINGER_MS,
                        .close_fds = 1};
  sk_bridge_opts_t bo = {.idle_timeout_ms = o->idle_timeout_ms};
  if (type == SOCK_DGRAM) {
    /* No end-of-stream on datagrams: after the end of input, a quiet
     * --idle-timeout (default CLI_DGRAM_LINGER_MS) ends the session normally. */
    a.eof_linger_ms = o->idle_timeout_ms ? o->idle_timeout_ms : CLI_DGRAM_LINGER_MS;
  }
  sk_bridge_t *br = NULL;
  r = sk_bridge_start(&br, s.loop, &a, &b, &bo, on_done, &s);
  if (r < 0) {
    cli_error("%s: %s", name, sk_strerror(r));
    sk_tls_free(tls);
    close(fd);
    sk_loop_free(s.loop);
    return EXIT_NET;
  }
  sk_loop_signal(s.loop, SIGINT, on_stop_signal, &s);
  sk_loop_signal(s.loop, SIGTERM, on_stop_signal, &s);
  r = sk_loop_run(s.loop);
  if (r < 0) {
    cli_error("event loop: %s", sk_strerror(r));
    s.exit_code = EXIT_NET;
  }
  if (s.o->verbose) {
    uint64_t out, in;
    sk_bridge_counts(br, &out, &in);
    cli_error("%s: %llu bytes sent, %llu received", name, (unsigned long long)out,
              (unsigned long long)in);
  }
  sk_bridge_free(br);
  sk_loop_free(s.loop);
  return s.exit_code;
}
