/* tests/unit/test_dgram_guard.c - the datagram guard of the server
 * framework (src/lib/dgram_guard.c, issue 19 finding 1): which sources are
 * never answered (our own address and port, port 0, the classic
 * answer-everything ports), the budget keys, and the per-source budget's
 * exact counts: a burst, then one per interval, sources apart, a table
 * full of busy sources that cannot reset a budget. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "lib/internal.h"

static sk_sockaddr_t ip(const char *host, unsigned port) {
  sk_sockaddr_t sa;
  memset(&sa, 0, sizeof sa);
  if (strchr(host, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa.ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
    sa.len = sizeof *s6;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&sa.ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, host, &s4->sin_addr), 1);
    sa.len = sizeof *s4;
  }
  return sa;
}

static void test_loop_ports(void **state) {
  (void)state;
  static const unsigned never[] = {0, 7, 11, 13, 17, 19, 37, 123};
  unsigned n = 0;
  for (unsigned p = 0; p < 65536; p++)
    n += (unsigned)sk__dgram_loop_port(p);
  assert_int_equal(n, sizeof never / sizeof never[0]);
  for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
    assert_int_equal(sk__dgram_loop_port(never[i]), 1);
  assert_int_equal(sk__dgram_loop_port(9), 0); /* discard never answers */
  assert_int_equal(sk__dgram_loop_port(53), 0);
  assert_int_equal(sk__dgram_loop_port(7007), 0);
}

static void test_from_self(void **state) {
  (void)state;
  sk_sockaddr_t own = ip("127.0.0.1", 7007), wild = ip("0.0.0.0", 7007);
  sk_sockaddr_t wild6 = ip("::", 7007), spec = ip("10.1.2.3", 7007), none = {.len = 0};
  sk_sockaddr_t p;
  /* Bound to one address. */
  p = ip("127.0.0.1", 7007);
  assert_int_equal(sk__dgram_from_self(&own, &p, NULL), 1);
  p = ip("127.0.0.1", 7008);
  assert_int_equal(sk__dgram_from_self(&own, &p, NULL), 0);
  p = ip("127.0.0.9", 7007); /* another loopback address, our port: this host */
  assert_int_equal(sk__dgram_from_self(&own, &p, NULL), 1);
  p = ip("10.1.2.3", 7007);
  assert_int_equal(sk__dgram_from_self(&spec, &p, NULL), 1);
  p = ip("10.1.2.4", 7007); /* another host that happens to use our port number */
  assert_int_equal(sk__dgram_from_self(&spec, &p, NULL), 0);
  p = ip("::ffff:10.1.2.3", 7007); /* v4-mapped is the same address */
  assert_int_equal(sk__dgram_from_self(&spec, &p, NULL), 1);
  /* Bound to every address: the datagram's destination tells ours. */
  sk_sockaddr_t dst = ip("10.1.2.3", 0);
  p = ip("10.1.2.3", 7007);
  assert_int_equal(sk__dgram_from_self(&wild, &p, &dst), 1);
  assert_int_equal(sk__dgram_from_self(&wild, &p, &none), 0);
  assert_int_equal(sk__dgram_from_self(&wild, &p, NULL), 0);
  p = ip("10.9.9.9", 7007);
  assert_int_equal(sk__dgram_from_self(&wild, &p, &dst), 0);
  p = ip("::1", 7007);
  assert_int_equal(sk__dgram_from_self(&wild6, &p, NULL), 1);
  sk_sockaddr_t dst6 = ip("2001:db8::5", 0);
  p = ip("2001:db8::5", 7007);
  assert_int_equal(sk__dgram_from_self(&wild6, &p, &dst6), 1);
  p = ip("2001:db8::6", 7007);
  assert_int_equal(sk__dgram_from_self(&wild6, &p, &dst6), 0);
  /* A unix peer is never "ours" by this rule. */
  sk_sockaddr_t un;
  memset(&un, 0, sizeof un);
  un.ss.ss_family = AF_UNIX;
  un.len = sizeof(sa_family_t) + 2;
  assert_int_equal(sk__dgram_from_self(&own, &un, NULL), 0);
}

static void test_source_keys(void **state) {
  (void)state;
  uint8_t a[16], b[16];
  sk_sockaddr_t x = ip("192.0.2.1", 1), y = ip("::ffff:192.0.2.1", 2);
  assert_int_equal(sk__dgram_source_key(&x, a), 1);
  assert_int_equal(sk__dgram_source_key(&y, b), 1);
  assert_memory_equal(a, b, 16); /* ports do not matter; v4-mapped is v4 */
  x = ip("2001:db8:1:2::1", 1), y = ip("2001:db8:1:2:ffff::9", 2);
  sk__dgram_source_key(&x, a);
  sk__dgram_source_key(&y, b);
  assert_memory_equal(a, b, 16); /* one /64, one budget */
  y = ip("2001:db8:1:3::1", 1);
  sk__dgram_source_key(&y, b);
  assert_memory_not_equal(a, b, 16);
  sk_sockaddr_t un;
  memset(&un, 0, sizeof un);
  un.ss.ss_family = AF_UNIX;
  assert_int_equal(sk__dgram_source_key(&un, a), 0);
}

static unsigned take_n(sk__dgram_budget_t *b, const uint8_t key[16], unsigned n, uint64_t now) {
  unsigned ok = 0;
  for (unsigned i = 0; i < n; i++)
    ok += (unsigned)sk__dgram_budget_take(b, key, now);
  return ok;
}

static void test_budget_counts(void **state) {
  (void)state;
  sk__dgram_budget_t *b;
  assert_int_equal(sk__dgram_budget_new(&b, 50, 20), 0);
  uint8_t k1[16] = {1}, k2[16] = {2};
  uint64_t t = 100000;
  assert_int_equal(take_n(b, k1, 1000, t), 20); /* one burst, then nothing */
  assert_int_equal(take_n(b, k1, 10, t + 19), 0); /* 20 ms a reply: not yet */
  assert_int_equal(take_n(b, k1, 10, t + 20), 1);
  assert_int_equal(take_n(b, k1, 1000, t + 1020), 20); /* a second idle: full, never more */
  assert_int_equal(take_n(b, k2, 1000, t + 1020), 20); /* another source: its own */
  assert_int_equal(take_n(b, k1, 1000, t + 60000), 20); /* idle: a full burst again */
  sk__dgram_budget_free(b);
  /* A flood that never pauses gets exactly the rate over time. */
  assert_int_equal(sk__dgram_budget_new(&b, 50, 20), 0);
  unsigned got = 0;
  for (uint64_t ms = 0; ms < 10000; ms++)
    got += take_n(b, k1, 5, t + ms);
  assert_int_equal(got, 20 + 10000 / 20 - 1);
  sk__dgram_budget_free(b);
}

/* Sources that hash to the same slots share a busy budget; they never
 * reset it: 4096 other busy sources cannot give one source more than its
 * burst and rate. */
static void test_budget_cannot_be_reset_by_collisions(void **state) {
  (void)state;
  sk__dgram_budget_t *b;
  assert_int_equal(sk__dgram_budget_new(&b, 50, 20), 0);
  uint8_t victim[16] = {0xaa}, k[16];
  uint64_t t = 5000;
  assert_int_equal(take_n(b, victim, 100, t), 20);
  for (unsigned i = 0; i < 4096; i++) {
    memset(k, 0, sizeof k);
    memcpy(k, &i, sizeof i);
    k[15] = 1;
    take_n(b, k, 100, t);
  }
  assert_int_equal(take_n(b, victim, 100, t), 0);
  sk__dgram_budget_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_ports),
      cmocka_unit_test(test_from_self),
      cmocka_unit_test(test_source_keys),
      cmocka_unit_test(test_budget_counts),
      cmocka_unit_test(test_budget_cannot_be_reset_by_collisions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
