/* tests/unit/test_bridge.c - the bridge over socketpairs: bytes and EOF
 * carried both ways, and freeing a bridge whose end is still being
 * reported (the deferred done callback must not touch freed memory; ASan
 * catches it if it does). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit/bridge.h"
#include "sockit/loop.h"

static int done_calls;

static void on_done(sk_bridge_t *br, const sk_bridge_end_t *end, void *data) {
  (void)br;
  (void)end;
  (void)data;
  done_calls++;
}

static void pair(int sv[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Both directions carry their bytes, then EOF ends the session once. */
static void test_bytes_and_eof_both_ways(void **state) {
  (void)state;
  sk_loop_t *loop;
  int a[2], b[2];
  pair(a);
  pair(b);
  assert_int_equal(sk_loop_new(&loop), 0);
  sk_bridge_side_t sa = {.rfd = a[0], .wfd = a[0], .close_fds = 1};
  sk_bridge_side_t sb = {.rfd = b[0], .wfd = b[0], .close_fds = 1};
  sk_bridge_t *br;
  done_calls = 0;
  assert_int_equal(sk_bridge_start(&br, loop, &sa, &sb, NULL, on_done, NULL), 0);
  assert_int_equal(write(a[1], "to b", 4), 4);
  assert_int_equal(write(b[1], "to a", 4), 4);
  shutdown(a[1], SHUT_WR);
  shutdown(b[1], SHUT_WR);
  alarm(5);
  assert_int_equal(sk_loop_run(loop), 0); /* ends when nothing is left */
  alarm(0);
  char buf[8];
  assert_int_equal(read(b[1], buf, sizeof buf), 4);
  assert_memory_equal(buf, "to b", 4);
  assert_int_equal(read(a[1], buf, sizeof buf), 4);
  assert_memory_equal(buf, "to a", 4);
  assert_int_equal(read(a[1], buf, sizeof buf), 0); /* EOF forwarded */
  assert_int_equal(done_calls, 1);
  uint64_t ab, ba;
  sk_bridge_counts(br, &ab, &ba);
  assert_int_equal(ab, 4);
  assert_int_equal(ba, 4);
  sk_bridge_free(br);
  sk_loop_free(loop);
  close(a[1]);
  close(b[1]);
}

static sk_bridge_t *doomed;

static void free_it(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  (void)t;
  sk_bridge_free(doomed);
}

/* The session ends during the I/O step of a round and a timer of the same
 * round frees the bridge before its deferred done callback runs: the
 * callback must then neither run done nor read the freed bridge. */
static void test_free_between_finish_and_done(void **state) {
  (void)state;
  sk_loop_t *loop;
  int a[2], b[2];
  pair(a);
  pair(b);
  assert_int_equal(sk_loop_new(&loop), 0);
  sk_bridge_side_t sa = {.rfd = a[0], .wfd = a[0], .close_fds = 1};
  sk_bridge_side_t sb = {.rfd = b[0], .wfd = b[0], .close_fds = 1};
  done_calls = 0;
  assert_int_equal(sk_bridge_start(&doomed, loop, &sa, &sb, NULL, on_done, NULL), 0);
  close(a[1]); /* both peers gone: the first round reads EOF on both */
  close(b[1]);
  sk_timer_t t;
  sk_timer_init(&t, free_it, NULL);
  assert_int_equal(sk_timer_start(loop, &t, 0, 0), 0);
  alarm(5);
  assert_int_equal(sk_loop_run(loop), 0);
  alarm(0);
  assert_int_equal(done_calls, 0); /* freed first: nobody left to tell */
  sk_loop_free(loop);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_and_eof_both_ways),
      cmocka_unit_test(test_free_between_finish_and_done),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
