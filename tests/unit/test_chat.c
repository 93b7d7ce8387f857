/* tests/unit/test_chat.c - the chat line protocol (sockit/chat.h): framing
 * at every split point of a stream, the limit to the byte, the command
 * splitter, the sanitizer (control characters, escape sequences, invalid
 * UTF-8 replaced per maximal subpart, and properties over random input),
 * nick and room rules, and the formatter / parser round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/chat.h"

#define FFFD "\xEF\xBF\xBD"

/* ---- framing ------------------------------------------------------------------ */

/* Feeds stream[0..n) to a fresh reader (lines of at most max bytes) in
 * pieces ending at cuts[0] < cuts[1] < ... (then the rest), as a caller
 * would: append, take lines until "need more", drop what was used. Writes
 * the events to log: "L<line>|" per line, "T|" per over-long line. Checks
 * the reader's promises on the way. */
static void feed(const char *stream, size_t n, const size_t *cuts, size_t ncuts, size_t max,
                 char *log, size_t logcap) {
  sk_chat_reader_t r;
  sk_chat_reader_init(&r, max);
  char *held = malloc(n + 1);
  size_t hlen = 0, from = 0, loglen = 0;
  log[0] = '\0';
  for (size_t c = 0; c <= ncuts; c++) {
    size_t to = c < ncuts ? cuts[c] : n;
    memcpy(held + hlen, stream + from, to - from);
    hlen += to - from;
    from = to;
    for (;;) {
      size_t used = 999999, ll = 0;
      const char *line = NULL;
      int k = sk_chat_read_line(&r, held, hlen, &used, &line, &ll);
      assert_true(used <= hlen);
      if (k == SK_CHAT_LINE) {
        assert_true(line >= held && line + ll <= held + hlen);
        assert_true(ll < max);
        assert_null(memchr(line, '\n', ll));
        loglen += (size_t)snprintf(log + loglen, logcap - loglen, "L%.*s|", (int)ll, line);
      } else if (k == SK_CHAT_TOO_LONG) {
        loglen += (size_t)snprintf(log + loglen, logcap - loglen, "T|");
      } else {
        assert_int_equal(k, SK_CHAT_NEED_MORE);
        /* What is kept is never a whole line, and never max bytes or more. */
        if (!r.discarding) {
          assert_null(memchr(held + used, '\n', hlen - used));
          assert_true(hlen - used < max);
        } else {
          assert_int_equal(used, hlen);
        }
      }
      memmove(held, held + used, hlen - used);
      hlen -= used;
      if (k == SK_CHAT_NEED_MORE)
        break;
    }
  }
  free(held);
}

static void test_read_line_table(void **state) {
  (void)state;
  static const struct {
    const char *in;
    size_t max;
    const char *log;
  } cases[] = {
      {"", 16, ""},
      {"abc", 16, ""},
      {"abc\n", 16, "Labc|"},
      {"abc\r\n", 16, "Labc|"},
      {"a\rb\n", 16, "La\rb|"},
      {"\n\r\n", 16, "L|L|"},
      {"one\ntwo\nthr", 16, "Lone|Ltwo|"},
      /* max 8: a line of 8 bytes with its LF fits, 9 does not */
      {"1234567\n", 8, "L1234567|"},
      {"123456\r\n", 8, "L123456|"},
      {"12345678\nok\n", 8, "T|Lok|"},
      {"1234567\r\nok\n", 8, "T|Lok|"},
      {"123456789012345678901234\nok\n", 8, "T|Lok|"},
      {"12345678", 8, "T|"},
      {"aaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbbbbbb\nc\n", 8, "T|T|Lc|"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char log[512];
    feed(cases[i].in, strlen(cases[i].in), NULL, 0, cases[i].max, log, sizeof log);
    if (strcmp(log, cases[i].log) != 0)
      fail_msg("case %zu '%s': got '%s', want '%s'", i, cases[i].in, log, cases[i].log);
  }
}

/* Every way of cutting a stream into two or three pieces, and one byte at
 * a time, gives the lines the whole stream gives. */
static void test_read_line_every_split(void **state) {
  (void)state;
  static const char stream[] = "hi\r\nsecond line\nthis one is far too long\nok\n\nlast";
  const size_t n = sizeof stream - 1, max = 16;
  char whole[512], got[512];
  feed(stream, n, NULL, 0, max, whole, sizeof whole);
  assert_string_equal(whole, "Lhi|Lsecond line|T|Lok|L|");
  for (size_t i = 1; i < n; i++) {
    size_t one[1] = {i};
    feed(stream, n, one, 1, max, got, sizeof got);
    if (strcmp(got, whole) != 0)
      fail_msg("cut at %zu: '%s'", i, got);
    for (size_t j = i + 1; j < n; j++) {
      size_t two[2] = {i, j};
      feed(stream, n, two, 2, max, got, sizeof got);
      if (strcmp(got, whole) != 0)
        fail_msg("cuts at %zu, %zu: '%s'", i, j, got);
    }
  }
  size_t bytes[sizeof stream];
  for (size_t i = 0; i < n - 1; i++)
    bytes[i] = i + 1;
  feed(stream, n, bytes, n - 1, max, got, sizeof got);
  assert_string_equal(got, whole);
}

/* An over-long line arriving in many pieces is reported once. */
static void test_read_line_too_long_once(void **state) {
  (void)state;
  char stream[5000];
  memset(stream, 'x', 4000);
  memcpy(stream + 4000, "\nafter\n", 8);
  size_t cuts[40];
  for (size_t i = 0; i < 40; i++)
    cuts[i] = (i + 1) * 100;
  char log[128];
  feed(stream, strlen(stream), cuts, 40, SK_CHAT_LINE_MAX, log, sizeof log);
  assert_string_equal(log, "T|Lafter|");
}

/* ---- commands ------------------------------------------------------------------- */

static void test_parse_command(void **state) {
  (void)state;
  static const struct {
    const char *in;
    sk_chat_cmd_id_t id;
    const char *name, *args, *arg, *rest;
  } cases[] = {
      {"", SK_CHAT_CMD_EMPTY, "", "", "", ""},
      {"  \t ", SK_CHAT_CMD_EMPTY, "", "", "", ""},
      {"hello world", SK_CHAT_CMD_SAY, "", "hello world", "hello", "world"},
      {" /nick x", SK_CHAT_CMD_SAY, "", " /nick x", "", "/nick x"},
      {"//etc/passwd", SK_CHAT_CMD_SAY, "", "/etc/passwd", "/etc/passwd", ""},
      {"/nick bob", SK_CHAT_CMD_NICK, "nick", "bob", "bob", ""},
      {"/NICK  Bob  ", SK_CHAT_CMD_NICK, "NICK", "Bob  ", "Bob", ""},
      {"/Join\t#dev", SK_CHAT_CMD_JOIN, "Join", "#dev", "#dev", ""},
      {"/part #dev bye now", SK_CHAT_CMD_PART, "part", "#dev bye now", "#dev", "bye now"},
      {"/msg alice hi  there", SK_CHAT_CMD_MSG, "msg", "alice hi  there", "alice", "hi  there"},
      {"/me waves", SK_CHAT_CMD_ME, "me", "waves", "waves", ""},
      {"/quit", SK_CHAT_CMD_QUIT, "quit", "", "", ""},
      {"/who", SK_CHAT_CMD_WHO, "who", "", "", ""},
      {"/rooms", SK_CHAT_CMD_ROOMS, "rooms", "", "", ""},
      {"/help", SK_CHAT_CMD_HELP, "help", "", "", ""},
      {"/echo on", SK_CHAT_CMD_ECHO, "echo", "on", "on", ""},
      {"/say #a hi", SK_CHAT_CMD_OPSAY, "say", "#a hi", "#a", "hi"},
      {"/kick bob flooding", SK_CHAT_CMD_KICK, "kick", "bob flooding", "bob", "flooding"},
      {"/reload", SK_CHAT_CMD_RELOAD, "reload", "", "", ""},
      {"/frobnicate x", SK_CHAT_CMD_UNKNOWN, "frobnicate", "x", "x", ""},
      {"/nicks", SK_CHAT_CMD_UNKNOWN, "nicks", "", "", ""},
      {"/", SK_CHAT_CMD_UNKNOWN, "", "", "", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_chat_cmd_t c;
    const char *in = cases[i].in;
    sk_chat_parse_command(in, strlen(in), &c);
    if (c.id != cases[i].id)
      fail_msg("'%s': id %d, want %d", in, c.id, cases[i].id);
    if (c.id == SK_CHAT_CMD_EMPTY)
      continue;
    char got[4][128];
    snprintf(got[0], 128, "%.*s", (int)c.name_len, c.name);
    snprintf(got[1], 128, "%.*s", (int)c.args_len, c.args);
    snprintf(got[2], 128, "%.*s", (int)c.arg_len, c.arg);
    snprintf(got[3], 128, "%.*s", (int)c.rest_len, c.rest);
    const char *want[4] = {cases[i].name, cases[i].args, cases[i].arg, cases[i].rest};
    for (int f = 0; f < 4; f++)
      if ((f > 0 || c.id != SK_CHAT_CMD_SAY) && strcmp(got[f], want[f]) != 0)
        fail_msg("'%s': field %d is '%s', want '%s'", in, f, got[f], want[f]);
  }
}

/* ---- sanitizer ---------------------------------------------------------------------- */

static void check_sanitize(const char *in, size_t len, const char *want) {
  char out[3 * 64];
  assert_true(len <= 64);
  size_t n = sk_chat_sanitize(in, len, out);
  if (n != strlen(want) || memcmp(out, want, n) != 0)
    fail_msg("sanitize of %zu bytes: got '%.*s' (%zu bytes), want '%s'", len, (int)n, out, n, want);
}
#define SANITIZE(lit, want) check_sanitize(lit, sizeof lit - 1, want)

static void test_sanitize_table(void **state) {
  (void)state;
  SANITIZE("plain text 123", "plain text 123");
  SANITIZE("", "");
  SANITIZE("a\tb", "a b");
  /* terminal escapes: ESC, CSI, OSC, BEL, CR, backspace, NUL, DEL */
  SANITIZE("\x1b[31mred\x1b[0m", FFFD "[31mred" FFFD "[0m");
  SANITIZE("\x1b]0;pwned\x07", FFFD "]0;pwned" FFFD);
  SANITIZE("over\rwrite", "over" FFFD "write");
  SANITIZE("back\bspace", "back" FFFD "space");
  SANITIZE("nul\0byte", "nul" FFFD "byte");
  SANITIZE("del\x7f", "del" FFFD);
  /* C1 controls, in their UTF-8 form: CSI U+009B, NEL U+0085 */
  SANITIZE("\xc2\x9b" "2J", FFFD "2J");
  SANITIZE("\xc2\x85", FFFD);
  /* display tricks: line separator, bidi override and isolate */
  SANITIZE("a\xe2\x80\xa8" "b", "a" FFFD "b");
  SANITIZE("\xe2\x80\xae" "txt.exe", FFFD "txt.exe");
  SANITIZE("\xe2\x81\xa6x\xe2\x81\xa9", FFFD "x" FFFD);
  /* valid UTF-8 is kept: Latin, Cyrillic, CJK, emoji, U+00A0, U+FFFD itself */
  SANITIZE("caf\xc3\xa9 \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xbd\xa0\xe5\xa5\xbd",
           "caf\xc3\xa9 \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xbd\xa0\xe5\xa5\xbd");
  SANITIZE("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");
  SANITIZE("\xc2\xa0", "\xc2\xa0");
  SANITIZE(FFFD, FFFD);
  SANITIZE("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"); /* U+10FFFF, the last code point */
  /* invalid UTF-8: one U+FFFD per maximal subpart */
  SANITIZE("\xff", FFFD);
  SANITIZE("\x80x", FFFD "x");
  SANITIZE("\xc0\xaf", FFFD FFFD);                 /* overlong '/' */
  SANITIZE("\xe0\x80\x80", FFFD FFFD FFFD);        /* overlong NUL */
  SANITIZE("\xed\xa0\x80", FFFD FFFD FFFD);        /* surrogate U+D800 */
  SANITIZE("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* above U+10FFFF */
  SANITIZE("\xf5\x80", FFFD FFFD);
  SANITIZE("\xe6\x97", FFFD);                      /* truncated at the end */
  SANITIZE("\xe6\x97" "a", FFFD "a");              /* truncated, then ASCII */
  SANITIZE("\xf0\x9f\x98" "\xf0\x9f\x98\x80", FFFD "\xf0\x9f\x98\x80");
  SANITIZE("\xc3" "\xc3\xa9", FFFD "\xc3\xa9");
}

/* A reference UTF-8 decoder: returns 1 if s[0..n) is valid UTF-8 and
 * holds no code point a terminal would act on (C0, DEL, C1, U+2028/9,
 * bidi overrides and isolates). */
static int safe_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned cp, len;
    if (s[i] < 0x80) {
      cp = s[i];
      len = 1;
    } else if ((s[i] & 0xE0) == 0xC0) {
      cp = s[i] & 0x1Fu;
      len = 2;
    } else if ((s[i] & 0xF0) == 0xE0) {
      cp = s[i] & 0x0Fu;
      len = 3;
    } else if ((s[i] & 0xF8) == 0xF0) {
      cp = s[i] & 0x07u;
      len = 4;
    } else {
      return 0;
    }
    if (i + len > n)
      return 0;
    for (unsigned k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return 0;
      cp = cp << 6 | (s[i + k] & 0x3Fu);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
        (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
      return 0;
    i += len;
  }
  return 1;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Over random input (mostly high bytes and controls, where the trouble
 * is): the output is safe UTF-8, at most 3x the input, valid input other
 * than controls comes out unchanged, and sanitizing twice changes nothing. */
static void test_sanitize_properties(void **state) {
  (void)state;
  static const unsigned char alphabet[] = {0x00, 0x07, 0x09, 0x0a, 0x0d, 0x1b, 0x20, 0x41, 0x7f,
                                           0x80, 0x85, 0x9b, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0,
                                           0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
  unsigned char in[64];
  char out[3 * 64], again[3 * 3 * 64];
  for (int iter = 0; iter < 20000; iter++) {
    size_t n = rng() % sizeof in;
    for (size_t i = 0; i < n; i++)
      in[i] = rng() % 3 ? alphabet[rng() % sizeof alphabet] : (unsigned char)rng();
    size_t m = sk_chat_sanitize((const char *)in, n, out);
    assert_true(m <= 3 * n);
    if (!safe_utf8((const unsigned char *)out, m))
      fail_msg("iteration %d: unsafe output", iter);
    size_t m2 = sk_chat_sanitize(out, m, again);
    assert_int_equal(m2, m);
    assert_memory_equal(again, out, m);
    if (safe_utf8(in, n)) {
      int tabs = memchr(in, '\t', n) != NULL;
      if (!tabs) {
        assert_int_equal(m, n);
        assert_memory_equal(out, in, n);
      }
    }
  }
}

/* ---- names ------------------------------------------------------------------------- */

static void test_nick_valid(void **state) {
  (void)state;
  static const char *const good[] = {"a", "alice", "Bob_42", "x-y", "[away]", "{w}", "a^b",
                                     "`q", "pipe|", "_", "abcdefghijklmnopqrstuvwx"};
  static const char *const bad[] = {"", "1abc", "-dash", "has space", "a.b", "é", "a#b",
                                    "@server", "abcdefghijklmnopqrstuvwxy", "a\x1b", "a:b",
                                    "a,b", "*"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!sk_chat_nick_valid(good[i], strlen(good[i])))
      fail_msg("'%s' should be a valid nick", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (sk_chat_nick_valid(bad[i], strlen(bad[i])))
      fail_msg("'%s' should not be a valid nick", bad[i]);
  assert_false(sk_chat_nick_valid("ab\0cd", 5)); /* an embedded NUL */
}

static void test_room_valid(void **state) {
  (void)state;
  static const char *const good[] = {"#a", "#lobby", "#Dev-2.0_x", "#1",
                                     "#abcdefghijklmnopqrstuvwxyz01234"};
  static const char *const bad[] = {"", "#", "lobby", "##", "#a b", "#é", "#a,b",
                                    "#abcdefghijklmnopqrstuvwxyz012345", "#a\x07"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!sk_chat_room_valid(good[i], strlen(good[i])))
      fail_msg("'%s' should be a valid room", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (sk_chat_room_valid(bad[i], strlen(bad[i])))
      fail_msg("'%s' should not be a valid room", bad[i]);
}

static void test_fold(void **state) {
  (void)state;
  char out[16];
  sk_chat_fold("AbC[]_Z9", 8, out);
  assert_memory_equal(out, "abc[]_z9", 8);
}

/* ---- server lines --------------------------------------------------------------------- */

static void test_format_and_parse(void **state) {
  (void)state;
  char line[128];
  size_t n = sk_chat_format(line, sizeof line, "MSG", "#lobby", "alice", "hi  there ", 10);
  assert_int_equal(n, strlen("MSG #lobby alice hi  there \n"));
  assert_memory_equal(line, "MSG #lobby alice hi  there \n", n);
  sk_chat_event_t ev;
  assert_int_equal(sk_chat_event_parse(line, n - 1, &ev), 4);
  assert_int_equal(ev.type_len, 3);
  assert_memory_equal(ev.type, "MSG", 3);
  assert_memory_equal(ev.target, "#lobby", ev.target_len);
  assert_memory_equal(ev.sender, "alice", ev.sender_len);
  assert_int_equal(ev.text_len, 10);
  assert_memory_equal(ev.text, "hi  there ", 10);

  n = sk_chat_format(line, sizeof line, "JOIN", "#lobby", "bob", NULL, 0);
  assert_memory_equal(line, "JOIN #lobby bob\n", n);
  assert_int_equal(sk_chat_event_parse(line, n - 1, &ev), 3);
  assert_int_equal(ev.text_len, 0);
  /* a text of one space survives the round trip */
  n = sk_chat_format(line, sizeof line, "MSG", "*", "@server", " ", 1);
  assert_int_equal(sk_chat_event_parse(line, n - 1, &ev), 4);
  assert_int_equal(ev.text_len, 1);
  assert_int_equal(ev.text[0], ' ');
  /* it does not fit: 0, never a cut line */
  assert_int_equal(sk_chat_format(line, 16, "MSG", "#lobby", "alice", "hello", 5), 0);
  assert_int_equal(sk_chat_format(line, 22, "MSG", "#lobby", "alice", "hello", 5), 0);
  assert_int_equal(sk_chat_format(line, 23, "MSG", "#lobby", "alice", "hello", 5), 23);
}

static void test_event_parse_rejects(void **state) {
  (void)state;
  sk_chat_event_t ev;
  assert_int_equal(sk_chat_event_parse("", 0, &ev), SK_EBADINPUT);
  assert_int_equal(sk_chat_event_parse("MSG #a b \x1b", 10, &ev), SK_EBADINPUT);
  assert_int_equal(sk_chat_event_parse("MSG  x", 6, &ev), SK_EBADINPUT);
  assert_int_equal(sk_chat_event_parse(" MSG", 4, &ev), SK_EBADINPUT);
  assert_int_equal(sk_chat_event_parse("MSG ", 4, &ev), SK_EBADINPUT);
  assert_int_equal(sk_chat_event_parse("BYE", 3, &ev), 1);
  assert_int_equal(sk_chat_event_parse("ERR flood", 9, &ev), 2);
  assert_int_equal(sk_chat_event_parse("WHO #a 3 x y z", 14, &ev), 4);
  assert_memory_equal(ev.text, "x y z", 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read_line_table),
      cmocka_unit_test(test_read_line_every_split),
      cmocka_unit_test(test_read_line_too_long_once),
      cmocka_unit_test(test_parse_command),
      cmocka_unit_test(test_sanitize_table),
      cmocka_unit_test(test_sanitize_properties),
      cmocka_unit_test(test_nick_valid),
      cmocka_unit_test(test_room_valid),
      cmocka_unit_test(test_fold),
      cmocka_unit_test(test_format_and_parse),
      cmocka_unit_test(test_event_parse_rejects),
  };
  return cmocka_run_group_tests_name("chat", tests, NULL, NULL);
}
