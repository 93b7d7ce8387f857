/* tests/unit/test_sec_bridge.c - the bridge under the failures of issue 19
 * (findings 8 and 10), over TCP loopback pairs: a reset on one side reaches
 * the other side as a reset after the bytes before it (opts.reset), an
 * orderly end stays an EOF, and a splice pipe that cannot be made leaves
 * the session copying through its buffers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit/bridge.h"
#include "sockit/loop.h"

static sk_bridge_end_t last_end;
static int done_calls;

static void on_done(sk_bridge_t *br, const sk_bridge_end_t *end, void *data) {
  (void)br;
  (void)data;
  last_end = *end;
  done_calls++;
}

/* A connected TCP pair on loopback: p[0] for the bridge (non-blocking),
 * p[1] for the test. */
static void tcp_pair(int p[2]) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(l >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(l, 1), 0);
  assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
  p[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_int_equal(connect(p[1], (struct sockaddr *)&sa, sizeof sa), 0);
  p[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  assert_true(p[0] >= 0);
  close(l);
}

static void reset_close(int fd) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  close(fd);
}

/* Runs a bridge between a[0] and b[0] until it ends (a 5 s alarm bounds it). */
static void run_bridge(int a[2], int b[2], const sk_bridge_opts_t *opts) {
  sk_loop_t *loop;
  assert_int_equal(sk_loop_new(&loop), 0);
  sk_bridge_side_t sa = {.rfd = a[0], .wfd = a[0], .close_fds = 1};
  sk_bridge_side_t sb = {.rfd = b[0], .wfd = b[0], .close_fds = 1};
  sk_bridge_t *br;
  done_calls = 0;
  assert_int_equal(sk_bridge_start(&br, loop, &sa, &sb, opts, on_done, NULL), 0);
  alarm(5);
  assert_int_equal(sk_loop_run(loop), 0);
  alarm(0);
  assert_int_equal(done_calls, 1);
  sk_bridge_free(br);
  sk_loop_free(loop);
}

/* What a[1] reads to the end: the bytes, then 0 (EOF) or -errno. */
static int read_all(int fd, char *buf, size_t cap, size_t *got) {
  *got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + *got, cap - *got);
    if (n > 0) {
      *got += (size_t)n;
      continue;
    }
    return n == 0 ? 0 : -errno;
  }
}

/* b's peer sends, then resets: a's peer reads those bytes, then a reset
 * (splice and copying alike); without opts.reset it would read an EOF. */
static void check_reset_carried(int splice, int reset, int want_end) {
  int a[2], b[2];
  tcp_pair(a);
  tcp_pair(b);
  static char payload[60000], got[sizeof payload + 1];
  for (size_t i = 0; i < sizeof payload; i++)
    payload[i] = (char)(i * 7);
  /* All of it sits in the bridge's socket before the reset follows. */
  assert_int_equal(write(b[1], payload, sizeof payload), (ssize_t)sizeof payload);
  reset_close(b[1]);
  sk_bridge_opts_t o = {.splice = splice, .reset = reset};
  run_bridge(a, b, &o);
  assert_int_equal(last_end.err, -ECONNRESET);
  assert_int_equal(last_end.side, 'b');
  size_t n;
  assert_int_equal(read_all(a[1], got, sizeof got, &n), want_end);
  assert_int_equal(n, sizeof payload);
  assert_memory_equal(got, payload, sizeof payload);
  close(a[1]);
}

static void test_reset_carried_splice(void **state) {
  (void)state;
  check_reset_carried(1, 1, -ECONNRESET);
}

static void test_reset_carried_copying(void **state) {
  (void)state;
  check_reset_carried(0, 1, -ECONNRESET);
}

static void test_without_reset_option_an_eof(void **state) {
  (void)state;
  check_reset_carried(1, 0, 0);
}

/* An orderly end on both sides stays an orderly end under opts.reset. */
static void test_fin_stays_a_fin(void **state) {
  (void)state;
  int a[2], b[2];
  tcp_pair(a);
  tcp_pair(b);
  assert_int_equal(write(b[1], "reply", 5), 5);
  shutdown(b[1], SHUT_WR);
  shutdown(a[1], SHUT_WR);
  sk_bridge_opts_t o = {.splice = 1, .reset = 1};
  run_bridge(a, b, &o);
  assert_int_equal(last_end.err, 0);
  char got[16];
  size_t n;
  assert_int_equal(read_all(a[1], got, sizeof got, &n), 0);
  assert_int_equal(n, 5);
  assert_memory_equal(got, "reply", 5);
  close(a[1]);
  close(b[1]);
}

/* No descriptor left for the splice pipes: both directions copy through
 * their buffers and every byte arrives. */
static void test_no_pipe_falls_back_to_copying(void **state) {
  (void)state;
  int a[2], b[2];
  tcp_pair(a);
  tcp_pair(b);
  sk_loop_t *loop;
  assert_int_equal(sk_loop_new(&loop), 0);
  sk_bridge_side_t sa = {.rfd = a[0], .wfd = a[0], .close_fds = 1};
  sk_bridge_side_t sb = {.rfd = b[0], .wfd = b[0], .close_fds = 1};
  sk_bridge_opts_t o = {.splice = 1};
  sk_bridge_t *br;
  done_calls = 0;
  assert_int_equal(sk_bridge_start(&br, loop, &sa, &sb, &o, on_done, NULL), 0);
  assert_int_equal(write(a[1], "to b", 4), 4);
  assert_int_equal(write(b[1], "to a", 4), 4);
  shutdown(a[1], SHUT_WR);
  shutdown(b[1], SHUT_WR);
  /* The lowest free descriptor becomes the limit: pipe2 gets EMFILE. */
  struct rlimit old, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  int probe = dup(0);
  assert_true(probe >= 0);
  close(probe);
  low.rlim_cur = (rlim_t)probe;
  low.rlim_max = old.rlim_max;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  int fds[2];
  assert_int_equal(pipe(fds), -1);
  assert_int_equal(errno, EMFILE);
  alarm(5);
  int rc = sk_loop_run(loop);
  alarm(0);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  assert_int_equal(rc, 0);
  assert_int_equal(done_calls, 1);
  assert_int_equal(last_end.err, 0);
  uint64_t ab, ba;
  sk_bridge_counts(br, &ab, &ba);
  assert_int_equal(ab, 4);
  assert_int_equal(ba, 4);
  char buf[8];
  assert_int_equal(read(b[1], buf, sizeof buf), 4);
  assert_memory_equal(buf, "to b", 4);
  assert_int_equal(read(a[1], buf, sizeof buf), 4);
  assert_memory_equal(buf, "to a", 4);
  sk_bridge_free(br);
  sk_loop_free(loop);
  close(a[1]);
  close(b[1]);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reset_carried_splice),
      cmocka_unit_test(test_reset_carried_copying),
      cmocka_unit_test(test_without_reset_option_an_eof),
      cmocka_unit_test(test_fin_stays_a_fin),
      cmocka_unit_test(test_no_pipe_falls_back_to_copying),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
