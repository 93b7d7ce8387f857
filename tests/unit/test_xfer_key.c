/* tests/unit/test_xfer_key.c - the sender's resume key in SKXF/1 HELLO
 * (issue 19, finding 2; include/sockit/xfer.h).
 *
 * A sender's HELLO carries flags 1 and 32 bytes of key (40 bytes of
 * payload): it encodes to exactly those bytes and parses back with the
 * key; every strict prefix is "need more". Flags and length go together
 * (flags 1 with 8 bytes, flags 0 with 40), only a sender sends a key, and
 * other flag bits are reserved: each is refused at the byte that decides
 * it, not one byte earlier. A keyless HELLO is unchanged (8 bytes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sockit/xfer.h"

#define KEYED_LEN (5 + 8 + SK_XFER_KEY_LEN)

/* The frame of a version 1 HELLO with role, flags and payload length plen
 * (the key bytes 0x40, 0x41, ... when plen > 8). */
static size_t hello(uint8_t *out, uint8_t role, uint8_t flags, uint32_t plen) {
  static const uint8_t head[] = {'S', 'K', 'X', 'F', 0, 1};
  out[0] = SK_XFER_HELLO;
  out[1] = out[2] = out[3] = 0;
  out[4] = (uint8_t)plen;
  memcpy(out + 5, head, sizeof head);
  out[11] = role;
  out[12] = flags;
  for (uint32_t i = 8; i < plen; i++)
    out[5 + i] = (uint8_t)(0x40 + i - 8);
  return 5 + plen;
}

static void test_keyed_hello_round_trip(void **state) {
  (void)state;
  uint8_t want[KEYED_LEN], buf[128];
  hello(want, SK_XFER_ROLE_SENDER, SK_XFER_HELLO_KEY, 8 + SK_XFER_KEY_LEN);
  sk_xfer_msg_t m = {.type = SK_XFER_HELLO};
  m.u.hello.version = SK_XFER_VERSION;
  m.u.hello.role = SK_XFER_ROLE_SENDER;
  m.u.hello.has_key = 1;
  for (int i = 0; i < SK_XFER_KEY_LEN; i++)
    m.u.hello.key[i] = (uint8_t)(0x40 + i);
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), KEYED_LEN);
  assert_memory_equal(buf, want, KEYED_LEN);
  sk_xfer_msg_t back;
  char why[160];
  for (size_t n = 0; n < KEYED_LEN; n++)
    assert_int_equal(sk_xfer_parse(want, n, &back, why, sizeof why), SK_EAGAIN);
  assert_int_equal(sk_xfer_parse(want, KEYED_LEN, &back, why, sizeof why), KEYED_LEN);
  assert_int_equal(back.u.hello.role, SK_XFER_ROLE_SENDER);
  assert_int_equal(back.u.hello.has_key, 1);
  assert_memory_equal(back.u.hello.key, m.u.hello.key, SK_XFER_KEY_LEN);
  /* Without a key: the 8 bytes of before, and no key parsed. */
  m.u.hello.has_key = 0;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), 13);
  assert_int_equal(buf[12], 0);
  assert_int_equal(sk_xfer_parse(buf, 13, &back, why, sizeof why), 13);
  assert_int_equal(back.u.hello.has_key, 0);
  /* A receiver cannot encode one. */
  m.u.hello.has_key = 1;
  m.u.hello.role = SK_XFER_ROLE_RECEIVER;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
}

/* Refused exactly once byte `at` (the flags byte, 13 bytes in) is there. */
static void refused_at(const uint8_t *f, size_t len, size_t at, const char *reason) {
  sk_xfer_msg_t m;
  char why[160] = "";
  for (size_t n = 0; n < at && n <= len; n++)
    assert_int_equal(sk_xfer_parse(f, n, &m, why, sizeof why), SK_EAGAIN);
  assert_int_equal(sk_xfer_parse(f, at, &m, why, sizeof why), SK_EBADINPUT);
  if (!strstr(why, reason))
    fail_msg("'%s' does not say '%s'", why, reason);
}

static void test_bad_keyed_hellos(void **state) {
  (void)state;
  uint8_t f[KEYED_LEN];
  size_t n = hello(f, SK_XFER_ROLE_SENDER, SK_XFER_HELLO_KEY, 8);
  refused_at(f, n, 13, "flags 1 with a 8-byte payload");
  n = hello(f, SK_XFER_ROLE_SENDER, 0, 8 + SK_XFER_KEY_LEN);
  refused_at(f, n, 13, "flags 0 with a 40-byte payload");
  n = hello(f, SK_XFER_ROLE_RECEIVER, SK_XFER_HELLO_KEY, 8 + SK_XFER_KEY_LEN);
  refused_at(f, n, 13, "only a sender sends a key");
  n = hello(f, SK_XFER_ROLE_SENDER, 2, 8);
  refused_at(f, n, 13, "reserved flag bits");
  /* A version 1 payload of any other length: at the version's last byte. */
  n = hello(f, SK_XFER_ROLE_SENDER, SK_XFER_HELLO_KEY, 9);
  refused_at(f, n, 11, "8 bytes (40 with a key)");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keyed_hello_round_trip),
      cmocka_unit_test(test_bad_keyed_hellos),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
