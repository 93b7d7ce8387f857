/* tests/unit/test_chat_nick.c - the look-alike fold of nicks
 * (sk_chat_nick_skeleton, sockit/chat.h): a table of nicks and their
 * skeletons with and without end digits stripped, the pairs that must and
 * must not compare equal, and properties over every valid nick of up to
 * three characters (never longer than the nick, idempotent on its own
 * output's letters, never writing past len). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sockit/chat.h"

/* The skeleton of nick as a NUL-terminated string in out (cap >= 25). */
static const char *skel(const char *nick, int strip_digits, char *out) {
  size_t n = sk_chat_nick_skeleton(nick, strlen(nick), strip_digits, out);
  out[n] = '\0';
  return out;
}

static void test_skeleton_table(void **state) {
  (void)state;
  static const struct {
    const char *nick;
    int strip_digits;
    const char *want;
  } cases[] = {
      {"alice", 0, "allce"},   {"aIice", 0, "allce"},     {"a1ice", 0, "allce"},
      {"ALICE", 0, "allce"},   {"a|ice", 0, "allce"},     {"alice_", 0, "allce"},
      {"_alice-", 0, "allce"}, {"[alice]", 0, "allce"},   {"{alice}^", 0, "allce"},
      {"`alice`", 0, "allce"}, {"al_ice", 0, "al_lce"},   {"bot", 1, "bot"},
      {"b0t", 1, "bot"},       {"B0T", 1, "bot"},         {"bot_", 1, "bot"},
      {"_bot2", 1, "bot"},     {"b0t-7", 1, "bot"},       {"bot99_", 1, "bot"},
      {"bot2", 0, "bot2"},     {"guest1", 0, "guestl"},   {"guest12", 0, "guestl2"},
      {"guest12", 1, "guest"}, {"_5erver", 1, "server"},  {"Server9", 1, "server"},
      {"rnary", 0, "mary"},    {"vvalter", 0, "walter"},  {"rnrn", 0, "mm"},
      {"vvv", 0, "wv"},        {"rrn", 0, "rm"},          {"r-n", 0, "r-n"},
      {"___", 0, "___"},       {"-_-", 1, "-_-"},         {"x", 0, "x"},
      {"_9", 1, "_9"},         {"a5", 0, "as"},           {"a5", 1, "a"},
      {"O0o", 0, "ooo"},
  };
  char out[SK_CHAT_NICK_MAX + 1];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *got = skel(cases[i].nick, cases[i].strip_digits, out);
    if (strcmp(got, cases[i].want) != 0)
      fail_msg("skeleton(%s, %d) = '%s', want '%s'", cases[i].nick, cases[i].strip_digits, got,
               cases[i].want);
  }
}

static void test_skeleton_pairs(void **state) {
  (void)state;
  static const char *const same[][2] = {
      {"alice", "aIice"}, {"alice", "a1ice"}, {"bob", "B0B"},     {"bob", "bob_"},
      {"mary", "rnary"},  {"will", "vvill"},  {"sam", "5am_"},    {"l1I", "|il"},
  };
  static const char *const differ[][2] = {
      {"alice", "alice2"}, {"guest1", "guest2"}, {"bob", "rob"}, {"alice", "al_ice"},
      {"ann", "arm"},      {"bot", "b0ts"},
  };
  char a[SK_CHAT_NICK_MAX + 1], b[SK_CHAT_NICK_MAX + 1];
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
    if (strcmp(skel(same[i][0], 0, a), skel(same[i][1], 0, b)) != 0)
      fail_msg("%s and %s should look alike ('%s', '%s')", same[i][0], same[i][1], a, b);
  for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++)
    if (strcmp(skel(differ[i][0], 0, a), skel(differ[i][1], 0, b)) == 0)
      fail_msg("%s and %s should differ (both '%s')", differ[i][0], differ[i][1], a);
}

/* Every valid nick of 1 to 3 characters: the skeleton is at most as long
 * as the nick, holds only lower-case letters, digits other than 0, 1 and
 * 5, and the nick characters other than upper-case letters, i and |, and
 * nothing is written past len. */
static void test_skeleton_properties(void **state) {
  (void)state;
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789_-[]{}^`|";
  size_t na = sizeof alphabet - 1;
  char nick[4], out[8];
  unsigned long checked = 0;
  for (size_t len = 1; len <= 3; len++) {
    size_t total = 1;
    for (size_t k = 0; k < len; k++)
      total *= na;
    for (size_t v = 0; v < total; v++) {
      size_t x = v;
      for (size_t k = 0; k < len; k++, x /= na)
        nick[k] = alphabet[x % na];
      if (!sk_chat_nick_valid(nick, len))
        continue;
      for (int strip = 0; strip <= 1; strip++) {
        memset(out, '#', sizeof out);
        size_t n = sk_chat_nick_skeleton(nick, len, strip, out);
        assert_true(n >= 1 && n <= len);
        for (size_t k = n; k < sizeof out; k++)
          assert_int_equal(out[k], '#');
        for (size_t k = 0; k < n; k++) {
          char c = out[k];
          assert_false(c >= 'A' && c <= 'Z');
          assert_true(c != 'i' && c != '|' && c != '0' && c != '1' && c != '5');
        }
        checked++;
      }
    }
  }
  assert_true(checked > 100000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_skeleton_table),
      cmocka_unit_test(test_skeleton_pairs),
      cmocka_unit_test(test_skeleton_properties),
  };
  return cmocka_run_group_tests_name("chat_nick", tests, NULL, NULL);
}
