/* tests/unit/test_wc.c - the word counter and the SKWC/1 codec.
 *
 * The counter is checked against an oracle: the loops of coreutils 9.1's
 * wc.c transcribed as they are, running on this machine's C library
 * (mbrtowc, iswprint, iswspace in C.UTF-8; isprint, isspace in C). So the
 * generated class table, the UTF-8 decoding and the 64-byte mask arithmetic
 * are all compared with what wc itself computes, over every code point,
 * random inputs, every split point of tricky ones, and byte-at-a-time
 * feeding. The codec is fed whole and byte at a time, and every malformed
 * form gets its own case.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include "sockit/wc.h"

static locale_t loc_c, loc_utf8;

/* ---- the oracle: wc.c's counting loops --------------------------------------------- */

/* coreutils wc.c: U+00A0, U+2007, U+202F, U+2060 separate words too. */
static int iswnbspace(wint_t wc) {
  return wc == 0x00A0 || wc == 0x2007 || wc == 0x202F || wc == 0x2060;
}

/* Counts p[0..n) as `LC_ALL=C wc` or `LC_ALL=C.UTF-8 wc` does (lines,
 * words, chars, bytes), on the whole input at once. */
static void oracle(const void *data, size_t n, int utf8, sk_wc_counts_t *out) {
  const unsigned char *p = data;
  uint64_t lines = 0, words = 0, chars = 0;
  int in_word = 0;
  memset(out, 0, sizeof *out);
  if (!utf8) {
    for (size_t i = 0; i < n; i++) {
      switch (p[i]) {
      case '\n': lines++; /* fall through */
      case '\r': case '\f': case '\t': case ' ': case '\v':
        words += in_word;
        in_word = 0;
        break;
      default:
        if (isprint_l(p[i], loc_c)) {
          if (isspace_l(p[i], loc_c)) {
            words += in_word;
            in_word = 0;
          } else {
            in_word = 1;
          }
        }
      }
    }
    chars = n;
  } else {
    locale_t old = uselocale(loc_utf8);
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t left = n;
    while (left > 0) {
      wchar_t wc;
      size_t r = mbrtowc(&wc, (const char *)p, left, &st);
      if (r == (size_t)-2)
        break; /* incomplete at the end: dropped */
      if (r == (size_t)-1) {
        p++;
        left--;
        continue;
      }
      if (r == 0) {
        wc = 0;
        r = 1;
      }
      switch (wc) {
      case '\n': lines++; /* fall through */
      case '\r': case '\f': case '\t': case ' ': case '\v':
        words += in_word;
        in_word = 0;
        break;
      default:
        if (iswprint((wint_t)wc)) {
          if (iswspace((wint_t)wc) || iswnbspace((wint_t)wc)) {
            words += in_word;
            in_word = 0;
          } else {
            in_word = 1;
          }
        }
      }
      p += r;
      left -= r;
      chars++;
    }
    uselocale(old);
  }
  out->lines = lines;
  out->words = words + (uint64_t)in_word;
  out->chars = chars;
  out->bytes = n;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* The counter's counts of p[0..n) fed at once. */
static void count_whole(const void *p, size_t n, int utf8, sk_wc_counts_t *out) {
  sk_wc_t w;
  sk_wc_init(&w, utf8 ? SK_WC_LOCALE_UTF8 : SK_WC_LOCALE_C, SK_WC_ALL);
  sk_wc_feed(&w, p, n);
  sk_wc_result(&w, out);
}

static void assert_counts(const sk_wc_counts_t *got, const sk_wc_counts_t *want, const void *in,
                          size_t n, int utf8, const char *how) {
  if (memcmp(got, want, sizeof *got) == 0)
    return;
  char hex[400] = "";
  for (size_t i = 0, j = 0; i < n && j + 4 < sizeof hex; i++)
    j += (size_t)snprintf(hex + j, sizeof hex - j, "%02x", ((const unsigned char *)in)[i]);
  fail_msg("%s %s (%zu bytes: %s): got %llu %llu %llu %llu, want %llu %llu %llu %llu", how,
           utf8 ? "C.UTF-8" : "C", n, hex, (unsigned long long)got->lines,
           (unsigned long long)got->words, (unsigned long long)got->chars,
           (unsigned long long)got->bytes, (unsigned long long)want->lines,
           (unsigned long long)want->words, (unsigned long long)want->chars,
           (unsigned long long)want->bytes);
}

/* Checks p[0..n) in both locales: whole against the oracle. */
static void check_vs_oracle(const void *p, size_t n) {
  for (int utf8 = 0; utf8 < 2; utf8++) {
    sk_wc_counts_t got, want;
    oracle(p, n, utf8, &want);
    count_whole(p, n, utf8, &got);
    assert_counts(&got, &want, p, n, utf8, "whole");
  }
}

/* Checks that every split of p[0..n) into two pieces, and feeding it one
 * byte at a time, gives the counts of one feed. */
static void check_splits(const void *data, size_t n) {
  const unsigned char *p = data;
  for (int utf8 = 0; utf8 < 2; utf8++) {
    sk_wc_locale_t loc = utf8 ? SK_WC_LOCALE_UTF8 : SK_WC_LOCALE_C;
    sk_wc_counts_t whole, got;
    count_whole(p, n, utf8, &whole);
    for (size_t k = 0; k <= n; k++) {
      sk_wc_t w;
      sk_wc_init(&w, loc, SK_WC_ALL);
      sk_wc_feed(&w, p, k);
      sk_wc_feed(&w, p + k, n - k);
      sk_wc_result(&w, &got);
      assert_counts(&got, &whole, p, n, utf8, "split");
    }
    sk_wc_t w;
    sk_wc_init(&w, loc, SK_WC_ALL);
    for (size_t i = 0; i < n; i++)
      sk_wc_feed(&w, p + i, 1);
    sk_wc_result(&w, &got);
    assert_counts(&got, &whole, p, n, utf8, "byte at a time");
  }
}

/* Pieces of text that exercise every rule: separators of both kinds,
 * transparent controls, NUL, CR, every UTF-8 length, invalid forms
 * (overlong, surrogate, past U+10FFFF, 5- and 6-byte, stray continuation
 * bytes, FE/FF), and cut sequences. */
static const char *const fragments[] = {
    "a", "word", " ", "\n", "\r\n", "\t", "\v", "\f", "\r", "\x00", "\x01", "\x1c", "\x7f",
    "\xc2\xa0", "\xc2\x85", "\xc2\xad", "\xd0\x96", "\xc3\xa9", "\xe2\x80\x80", "\xe2\x80\x87",
    "\xe2\x80\x8b", "\xe2\x80\xa8", "\xe2\x80\xaf", "\xe2\x81\xa0", "\xe3\x80\x80", "\xe4\xb8\xad",
    "\xe1\x9a\x80", "\xef\xbb\xbf", "\xef\xbf\xbe", "\xf0\x9f\x98\x80", "\xf3\xa0\x80\x81",
    "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf7\xbf\xbf\xbf", "\xf8\x88\x80\x80\x80",
    "\xfc\x84\x80\x80\x80\x80", "\xfd\xbf\xbf\xbf\xbf\xbf", "\xfc\x80\x80\x80\x80\x80",
    "\xf8\x80\x80\x80\x80", "\xed\xa0\x80", "\xed\x9f\xbf", "\xe0\x80\x80", "\xe0\xa0\x80",
    "\xc0\xaf", "\xc1\xbf", "\xf0\x8f\xbf\xbf", "\x80", "\xbf", "\xfe", "\xff", "\xe4\xb8",
    "\xf0\x9f\x98", "\xc3", "\xe2\x80", "\xfc\x84\x80\x80\x80", "hello, world", "Привет",
    "你好，世界", "Ça va ?", "$@`", "~", "!",
};
#define NFRAGMENTS (sizeof fragments / sizeof fragments[0])

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* xorshift64*: a fixed, reproducible stream. */
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* Fills buf (cap bytes) with random fragments, random bytes and cut
 * fragments; returns the length. */
static size_t random_text(unsigned char *buf, size_t cap, size_t parts) {
  size_t n = 0;
  for (size_t i = 0; i < parts; i++) {
    unsigned kind = (unsigned)(rnd() % 10);
    if (kind < 6) {
      const char *f = fragments[rnd() % NFRAGMENTS];
      size_t k = f[0] ? strlen(f) : 1; /* "\x00" is one NUL byte */
      if (n + k > cap)
        break;
      memcpy(buf + n, f, k);
      n += k;
    } else if (kind < 9) {
      if (n + 1 > cap)
        break;
      buf[n++] = (unsigned char)rnd();
    } else {
      const char *f = fragments[rnd() % NFRAGMENTS];
      size_t k = f[0] ? strlen(f) : 1;
      k = 1 + (size_t)(rnd() % k);
      if (n + k > cap)
        break;
      memcpy(buf + n, f, k);
      n += k;
    }
  }
  return n;
}

/* ---- the counter ---------------------------------------------------------------------- */

/* Counts taken from `wc` on this machine (coreutils 9.1). */
static void test_known_counts(void **state) {
  (void)state;
  static const struct {
    const char *in;
    size_t len;
    uint64_t c[4], u[4]; /* lines words chars bytes: LC_ALL=C, LC_ALL=C.UTF-8 */
  } cases[] = {
      {"", 0, {0, 0, 0, 0}, {0, 0, 0, 0}},
      {"hello world\n", 12, {1, 2, 12, 12}, {1, 2, 12, 12}},
      {"no newline", 10, {0, 2, 10, 10}, {0, 2, 10, 10}},
      {"a\x01" "b", 3, {0, 1, 3, 3}, {0, 1, 3, 3}},
      {"\x01", 1, {0, 0, 1, 1}, {0, 0, 1, 1}},
      {"a \x01 b", 5, {0, 2, 5, 5}, {0, 2, 5, 5}},
      {"a\x00 b", 4, {0, 2, 4, 4}, {0, 2, 4, 4}},
      {"a\rb", 3, {0, 2, 3, 3}, {0, 2, 3, 3}},
      {"a\r\nb\r\n", 6, {2, 2, 6, 6}, {2, 2, 6, 6}},
      {"x\xc2\xa0y", 4, {0, 1, 4, 4}, {0, 2, 3, 4}},
      {"x\xe3\x80\x80y", 5, {0, 1, 5, 5}, {0, 2, 3, 5}},
      {"x\xe2\x80\xa8y", 5, {0, 1, 5, 5}, {0, 1, 3, 5}},
      {"x\xe1\x9a\x80y", 5, {0, 1, 5, 5}, {0, 2, 3, 5}},
      {"x\xc2\x85y", 4, {0, 1, 4, 4}, {0, 1, 3, 4}},
      {"\xe4\xb8", 2, {0, 0, 2, 2}, {0, 0, 0, 2}},
      {"\xe4\xb8\xad", 3, {0, 0, 3, 3}, {0, 1, 1, 3}},
      {"ab\xe2", 3, {0, 1, 3, 3}, {0, 1, 2, 3}},
      {"\xed\xa0\x80", 3, {0, 0, 3, 3}, {0, 0, 0, 3}},
      {"\xf4\x90\x80\x80", 4, {0, 0, 4, 4}, {0, 0, 1, 4}},
      {"\xf8\x88\x80\x80\x80", 5, {0, 0, 5, 5}, {0, 0, 1, 5}},
      {"\xf0\x9f\x98\x80", 4, {0, 0, 4, 4}, {0, 1, 1, 4}},
      {"\xe0" "ab", 3, {0, 1, 3, 3}, {0, 1, 2, 3}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int utf8 = 0; utf8 < 2; utf8++) {
      const uint64_t *e = utf8 ? cases[i].u : cases[i].c;
      sk_wc_counts_t want = {e[0], e[1], e[2], e[3]}, got, orc;
      count_whole(cases[i].in, cases[i].len, utf8, &got);
      assert_counts(&got, &want, cases[i].in, cases[i].len, utf8, "known");
      oracle(cases[i].in, cases[i].len, utf8, &orc);
      assert_counts(&orc, &want, cases[i].in, cases[i].len, utf8, "oracle");
    }
  }
}

/* Every code point, alone, between word letters and between spaces:
 * word, separator or transparent, and counted as one character or none,
 * exactly as wc says. Surrogates go through as (invalid) 3-byte forms. */
static void test_every_code_point(void **state) {
  (void)state;
  for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
    unsigned char s[12];
    size_t n = 0;
    s[n++] = 'a';
    if (cp < 0x80) {
      s[n++] = (unsigned char)cp;
    } else if (cp < 0x800) {
      s[n++] = (unsigned char)(0xc0 | cp >> 6);
      s[n++] = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      s[n++] = (unsigned char)(0xe0 | cp >> 12);
      s[n++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
      s[n++] = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
      s[n++] = (unsigned char)(0xf0 | cp >> 18);
      s[n++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
      s[n++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
      s[n++] = (unsigned char)(0x80 | (cp & 0x3f));
    }
    s[n++] = 'a';
    sk_wc_counts_t got, want;
    oracle(s, n, 1, &want); /* between letters: separator or not */
    count_whole(s, n, 1, &got);
    assert_counts(&got, &want, s, n, 1, "code point");
    oracle(s + 1, n - 2, 1, &want); /* alone: a word, or not */
    count_whole(s + 1, n - 2, 1, &got);
    assert_counts(&got, &want, s + 1, n - 2, 1, "code point alone");
  }
}

/* Random mixes of the fragments, whole, against the oracle. */
static void test_random_vs_oracle(void **state) {
  (void)state;
  unsigned char buf[600];
  for (int i = 0; i < 20000; i++) {
    size_t n = random_text(buf, sizeof buf, (size_t)(rnd() % 120));
    check_vs_oracle(buf, n);
  }
}

/* Fully random bytes, and random bytes from the UTF-8 lead and
 * continuation ranges only, which hit the decoder's corners. */
static void test_random_bytes_vs_oracle(void **state) {
  (void)state;
  unsigned char buf[300];
  for (int i = 0; i < 20000; i++) {
    size_t n = (size_t)(rnd() % sizeof buf);
    int high = i % 2;
    for (size_t k = 0; k < n; k++) {
      unsigned b = (unsigned)rnd() & 0xff;
      buf[k] = (unsigned char)(high && b < 0xc0 && (b & 3) ? 0x80 | (b & 0x3f) : b);
    }
    check_vs_oracle(buf, n);
  }
}

/* Every split point and byte-at-a-time feeding of random mixes. */
static void test_every_split_point(void **state) {
  (void)state;
  unsigned char buf[200];
  for (int i = 0; i < 300; i++) {
    size_t n = random_text(buf, sizeof buf, (size_t)(rnd() % 60));
    check_splits(buf, n);
  }
}

/* A multi-byte character (and a cut one) at every position around the
 * 64-byte block edges, whole and split at the edge. */
static void test_block_edges(void **state) {
  (void)state;
  static const char *const seqs[] = {"\xd0\x96", "\xe3\x80\x80", "\xf0\x9f\x98\x80",
                                     "\xfc\x84\x80\x80\x80\x80", "\xe4\xb8", "\xc2\xa0"};
  unsigned char buf[200];
  for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++) {
    for (size_t off = 50; off < 140; off++) {
      memset(buf, 'x', sizeof buf);
      for (size_t k = 3; k < off; k += 7)
        buf[k] = ' ';
      size_t len = strlen(seqs[s]);
      memcpy(buf + off, seqs[s], len);
      size_t n = off + len + 5;
      check_vs_oracle(buf, n);
      check_splits(buf, n);
    }
  }
}

/* Valid UTF-8 dense in 2- and 3-byte characters, so that most blocks take
 * the fast path (one check per block, classes by lead byte), with
 * characters from every "mixed" lead range (no-break space, C1 controls,
 * soft hyphen, Greek and Armenian gaps, Ogham space, general punctuation,
 * ideographic space, fullwidth forms, noncharacters) and, now and then, a
 * 4-byte one that sends a block the long way. Whole and in random pieces,
 * against the oracle. */
static void test_dense_text_fast_path(void **state) {
  (void)state;
  static const char *const chars[] = {
      "\xd0\x96", "\xd1\x8f", "\xe4\xb8\xad", "\xe6\x96\x87", "\xc3\xa9", "\xc2\xa0",
      "\xc2\x85", "\xc2\xad", "\xcd\xb8", "\xce\x86", "\xd4\xb0", "\xd5\x97",
      "\xd7\x90", "\xdc\x8e", "\xdf\xbb", "\xe1\x9a\x80", "\xe1\xa0\x8e", "\xe2\x80\x83",
      "\xe2\x80\x8b", "\xe2\x80\xa8", "\xe2\x81\xa0", "\xe2\x80\x94", "\xe3\x80\x80",
      "\xe3\x80\x81", "\xe3\x81\x82", "\xea\x99\x80", "\xea\xb0\x80", "\xef\xbc\x8c",
      "\xef\xbb\xbf", "\xef\xbf\xbe", "\xee\x80\x80", " ", "\n", "a"};
  size_t cap = 1 << 18;
  unsigned char *buf = malloc(cap);
  assert_non_null(buf);
  for (int round = 0; round < 40; round++) {
    size_t n = 0;
    while (n + 8 < cap) {
      unsigned r = (unsigned)(rnd() % 1000);
      const char *c = r < 2 ? "\xf0\x9f\x98\x80" : r < 500 ? chars[r % 5] : chars[rnd() % 34];
      size_t k = strlen(c);
      memcpy(buf + n, c, k);
      n += k;
      if (round % 2 && n > cap / 2)
        break;
    }
    check_vs_oracle(buf, n);
    sk_wc_counts_t want, got;
    oracle(buf, n, 1, &want);
    sk_wc_t w;
    sk_wc_init(&w, SK_WC_LOCALE_UTF8, SK_WC_ALL);
    for (size_t i = 0; i < n;) {
      size_t k = 1 + (size_t)(rnd() % 200);
      if (k > n - i)
        k = n - i;
      sk_wc_feed(&w, buf + i, k);
      i += k;
    }
    sk_wc_result(&w, &got);
    assert_counts(&got, &want, buf, 64, 1, "dense pieces");
  }
  free(buf);
}

/* A megabyte of text fed in random pieces, against the oracle. */
static void test_large_random_pieces(void **state) {
  (void)state;
  size_t cap = 1 << 20;
  unsigned char *buf = malloc(cap);
  assert_non_null(buf);
  size_t n = random_text(buf, cap, cap / 2);
  for (int utf8 = 0; utf8 < 2; utf8++) {
    sk_wc_counts_t want, got;
    oracle(buf, n, utf8, &want);
    sk_wc_t w;
    sk_wc_init(&w, utf8 ? SK_WC_LOCALE_UTF8 : SK_WC_LOCALE_C, SK_WC_ALL);
    for (size_t i = 0; i < n;) {
      size_t k = 1 + (size_t)(rnd() % 3000);
      if (k > n - i)
        k = n - i;
      sk_wc_feed(&w, buf + i, k);
      i += k;
    }
    sk_wc_result(&w, &got);
    assert_counts(&got, &want, buf, 64, utf8, "pieces");
  }
  free(buf);
}

/* Asking for lines and bytes only takes the LF-only path; chars in C are
 * the bytes; counts not asked for are 0. */
static void test_what_subsets(void **state) {
  (void)state;
  unsigned char buf[5000];
  size_t n = random_text(buf, sizeof buf, 2000);
  for (int utf8 = 0; utf8 < 2; utf8++) {
    sk_wc_counts_t all, got;
    count_whole(buf, n, utf8, &all);
    for (unsigned what = 1; what <= SK_WC_ALL; what++) {
      sk_wc_t w;
      sk_wc_init(&w, utf8 ? SK_WC_LOCALE_UTF8 : SK_WC_LOCALE_C, what);
      sk_wc_feed(&w, buf, n / 3);
      sk_wc_feed(&w, buf + n / 3, n - n / 3);
      sk_wc_result(&w, &got);
      assert_int_equal(got.lines, all.lines);
      assert_int_equal(got.bytes, all.bytes);
      assert_int_equal(got.words, what & SK_WC_WORDS ? all.words : 0);
      assert_int_equal(got.chars, what & SK_WC_CHARS ? all.chars : 0);
    }
  }
}

/* sk_wc_result in the middle changes nothing: feeding goes on. */
static void test_result_midway(void **state) {
  (void)state;
  static const char text[] = "one two\xe4\xb8\xad three\n";
  size_t n = sizeof text - 1;
  for (int utf8 = 0; utf8 < 2; utf8++) {
    sk_wc_counts_t whole, mid, got;
    count_whole(text, n, utf8, &whole);
    sk_wc_t w;
    sk_wc_init(&w, utf8 ? SK_WC_LOCALE_UTF8 : SK_WC_LOCALE_C, SK_WC_ALL);
    sk_wc_feed(&w, text, 9); /* inside the 3-byte character */
    sk_wc_result(&w, &mid);
    assert_int_equal(mid.bytes, 9);
    assert_int_equal(mid.words, 2);
    sk_wc_feed(&w, text + 9, n - 9);
    sk_wc_result(&w, &got);
    assert_counts(&got, &whole, text, n, utf8, "after a result");
  }
  assert_string_equal(sk_wc_locale_name(SK_WC_LOCALE_C), "C");
  assert_string_equal(sk_wc_locale_name(SK_WC_LOCALE_UTF8), "UTF-8");
}

/* ---- the codec: server side --------------------------------------------------------------- */

typedef struct {
  char log[4096]; /* one letter per event, with its numbers */
  size_t loglen;
  char data[4096]; /* DATA bytes, concatenated */
  size_t datalen;
  int error;       /* SK_EBADINPUT seen */
  char err[SK_ERRLEN];
  sk_wcp_server_t p;
} parsed_t;

/* Parses in[0..n) fed in pieces of `piece` bytes (0 = whole), the way a
 * server does: append, parse until "need more", keep the rest. */
static void parse_all(parsed_t *out, const char *in, size_t n, size_t piece) {
  memset(out, 0, sizeof *out);
  sk_wcp_server_init(&out->p);
  char held[8192];
  size_t heldlen = 0, fed = 0;
  while (fed < n || heldlen) {
    size_t k = piece ? piece : n;
    if (k > n - fed)
      k = n - fed;
    memcpy(held + heldlen, in + fed, k);
    heldlen += k;
    fed += k;
    size_t off = 0;
    for (;;) {
      sk_wcp_event_t ev;
      long r = sk_wcp_server_parse(&out->p, held + off, heldlen - off, &ev, out->err,
                                   sizeof out->err);
      if (r < 0) {
        out->error = 1;
        return;
      }
      if (r == 0)
        break;
      off += (size_t)r;
      char *l = out->log + out->loglen;
      size_t room = sizeof out->log - out->loglen;
      switch (ev.kind) {
      case SK_WCP_HELLO: out->loglen += (size_t)snprintf(l, room, "H%d/%u ", ev.locale, ev.what); break;
      case SK_WCP_FILE: out->loglen += (size_t)snprintf(l, room, "F%lld ", (long long)ev.size); break;
      case SK_WCP_DATA:
        assert_true(ev.data >= held + off - (size_t)r && ev.data + ev.len <= held + heldlen);
        memcpy(out->data + out->datalen, ev.data, ev.len);
        out->datalen += ev.len;
        break;
      case SK_WCP_END: out->loglen += (size_t)snprintf(l, room, "E%s ", ev.error ? "!" : ""); break;
      case SK_WCP_ABORT: out->loglen += (size_t)snprintf(l, room, "A "); break;
      case SK_WCP_NOOP: out->loglen += (size_t)snprintf(l, room, "N "); break;
      case SK_WCP_NONE: break;
      }
    }
    memmove(held, held + off, heldlen - off);
    heldlen -= off;
    if (fed == n && off == 0)
      break; /* the rest is an incomplete line or chunk */
  }
}

static const char good_request[] =
    "SKWC/1 UTF-8 lwmc\n"
    "FILE 11\nDATA 5\nhelloDATA 6\n worldEND\n"
    "NOOP\n"
    "FILE -\r\nDATA 3\r\nabcNOOP\nDATA 1\n\nEND\r\n"
    "FILE 0\nEND\n"
    "FILE -\nDATA 4\nxyz\nABORT\n";

/* A valid request with every word of the grammar, fed whole and in
 * pieces of 1 to 7 bytes: the same events and the same file bytes. */
static void test_parse_whole_and_bytewise(void **state) {
  (void)state;
  size_t n = sizeof good_request - 1;
  static const char want_log[] = "H1/15 F11 E N F-1 N E F0 E F-1 A ";
  static const char want_data[] = "hello worldabc\nxyz\n";
  for (size_t piece = 0; piece <= 7; piece++) {
    parsed_t r;
    parse_all(&r, good_request, n, piece);
    assert_false(r.error);
    r.log[r.loglen] = '\0';
    assert_string_equal(r.log, want_log);
    assert_int_equal(r.datalen, sizeof want_data - 1);
    assert_memory_equal(r.data, want_data, r.datalen);
    assert_int_equal(sk_wcp_server_eof(&r.p, 0, r.err, sizeof r.err), 0);
    assert_int_equal(r.p.files, 4);
  }
}

/* The hello's locales and counts letters, in any order, CR LF too. */
static void test_parse_hello_forms(void **state) {
  (void)state;
  static const struct {
    const char *in;
    int locale;
    unsigned what;
  } ok[] = {{"SKWC/1 C l\n", SK_WC_LOCALE_C, SK_WC_LINES},
            {"SKWC/1 C cmwl\n", SK_WC_LOCALE_C, SK_WC_ALL},
            {"SKWC/1 UTF-8 wm\r\n", SK_WC_LOCALE_UTF8, SK_WC_WORDS | SK_WC_CHARS}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    sk_wcp_server_t p;
    sk_wcp_event_t ev;
    char err[SK_ERRLEN];
    sk_wcp_server_init(&p);
    long r = sk_wcp_server_parse(&p, ok[i].in, strlen(ok[i].in), &ev, err, sizeof err);
    assert_int_equal(r, (long)strlen(ok[i].in));
    assert_int_equal(ev.kind, SK_WCP_HELLO);
    assert_int_equal(ev.locale, ok[i].locale);
    assert_int_equal(ev.what, ok[i].what);
  }
}

/* Each malformed stream is refused with a message saying what is wrong. */
static void test_parse_errors(void **state) {
  (void)state;
  static const struct {
    const char *in, *msg;
  } bad[] = {
      {"HELLO\n", "expected 'SKWC/1 LOCALE COUNTS' first, got 'HELLO'"},
      {"SKWC/2 C l\n", "unsupported protocol 'SKWC/2 C l': this server speaks SKWC/1"},
      {"SKWC/1 ru_RU.KOI8-R l\n", "unknown locale 'ru_RU.KOI8-R' (C or UTF-8)"},
      {"SKWC/1 C\n", "bad counts '': letters of lwmc, each at most once"},
      {"SKWC/1 C lx\n", "bad counts 'lx'"},
      {"SKWC/1 C ll\n", "bad counts 'll'"},
      {"SKWC/1 C lwmcl\n", "bad counts 'lwmcl'"},
      {"SKWC/1 C l\nDATA 3\nabc", "expected FILE or NOOP, got 'DATA 3'"},
      {"SKWC/1 C l\nFILE\n", "expected FILE or NOOP, got 'FILE'"},
      {"SKWC/1 C l\nFILE 12x\n", "bad file size '12x'"},
      {"SKWC/1 C l\nFILE 007\n", "bad file size '007'"},
      {"SKWC/1 C l\nFILE -1\n", "bad file size '-1'"},
      {"SKWC/1 C l\nFILE 1125899906842625\n", "bad file size '1125899906842625'"},
      {"SKWC/1 C l\nFILE 99999999999999999999999\n", "bad file size"},
      {"SKWC/1 C l\nFILE 3\nDATA 0\n", "bad chunk length '0': 1 to 1073741824"},
      {"SKWC/1 C l\nFILE -\nDATA 1073741825\n", "bad chunk length '1073741825'"},
      {"SKWC/1 C l\nFILE 3\nDATA  3\n", "bad chunk length ' 3'"},
      {"SKWC/1 C l\nFILE 3\nEND 3\n", "expected DATA, END, ABORT or NOOP, got 'END 3'"},
      {"SKWC/1 C l\nFILE 3\nDATA 3\nabcFILE 1\n", "expected DATA, END, ABORT or NOOP"},
      {"SKWC/1 C l\nFILE 3\nDATA 3\nabcdEND\n", "expected DATA, END, ABORT or NOOP, got 'dEND'"},
      {"SKWC/1 C l\nfile 3\n", "expected FILE or NOOP, got 'file 3'"},
      {"SKWC/1 C l\nFILE \x01\xff\n", "bad file size '?" "?'"},
      {"SKWC/1 C l\nNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOP\n",
       "line longer than 64 bytes: 'NOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOP...'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    for (size_t piece = 0; piece <= 1; piece++) {
      parsed_t r;
      parse_all(&r, bad[i].in, strlen(bad[i].in), piece);
      if (!r.error)
        fail_msg("case %zu accepted: %s", i, bad[i].in);
      if (!strstr(r.err, bad[i].msg))
        fail_msg("case %zu: message '%s' lacks '%s'", i, r.err, bad[i].msg);
    }
  }
}

/* A declared size that does not match spoils that file (END carries the
 * error, its bytes are not handed out) and the next file is fine. */
static void test_size_mismatch(void **state) {
  (void)state;
  static const char in[] = "SKWC/1 C lwc\n"
                           "FILE 5\nDATA 3\nabcEND\n"
                           "FILE 2\nDATA 3\nxyzEND\n"
                           "FILE 2\nDATA 1\npDATA 2\nqrDATA 1\nsEND\n"
                           "FILE 4\nDATA 4\ngoodEND\n";
  parsed_t r;
  parse_all(&r, in, sizeof in - 1, 0);
  assert_false(r.error);
  r.log[r.loglen] = '\0';
  assert_string_equal(r.log, "H0/11 F5 E! F2 E! F2 E! F4 E ");
  /* Bytes before the mismatch are handed out; none after it. */
  assert_int_equal(r.datalen, 3 + 1 + 4);
  assert_memory_equal(r.data, "abcpgood", 8);

  sk_wcp_server_t p;
  sk_wcp_event_t ev;
  char err[SK_ERRLEN];
  sk_wcp_server_init(&p);
  const char *s = "SKWC/1 C l\nFILE 5\nDATA 3\nabcEND\n";
  size_t off = 0;
  for (;;) {
    long k = sk_wcp_server_parse(&p, s + off, strlen(s) - off, &ev, err, sizeof err);
    assert_true(k > 0);
    off += (size_t)k;
    if (ev.kind == SK_WCP_END)
      break;
  }
  assert_string_equal(ev.error, "size mismatch: 5 bytes declared, 3 sent");
  sk_wcp_server_init(&p);
  s = "SKWC/1 C l\nFILE 2\nDATA 3\nxyzEND\n";
  for (off = 0;;) {
    long k = sk_wcp_server_parse(&p, s + off, strlen(s) - off, &ev, err, sizeof err);
    assert_true(k > 0);
    off += (size_t)k;
    if (ev.kind == SK_WCP_END)
      break;
  }
  assert_string_equal(ev.error, "size mismatch: more than the 2 bytes declared");
}

/* Where the stream may end, and what is said when it ends elsewhere. */
static void test_eof(void **state) {
  (void)state;
  static const struct {
    const char *in, *msg; /* msg NULL: a clean end */
  } cases[] = {
      {"", NULL},
      {"SKWC/1 C l\n", NULL},
      {"SKWC/1 C l\nFILE 3\nDATA 3\nabcEND\n", NULL},
      {"SKWC/1 C", "connection ended in the middle of a line (8 bytes)"},
      {"SKWC/1 C l\nFILE 3\n", "connection ended inside file 1 after 0 of 3 bytes: no count"},
      {"SKWC/1 C l\nFILE 10\nDATA 10\nabcd",
       "connection ended inside file 1 after 4 of 10 bytes: no count"},
      {"SKWC/1 C l\nFILE -\nDATA 2\nab", "connection ended inside file 1 after 2 bytes, before END"},
      {"SKWC/1 C l\nFILE 1\nDATA 1\naEND\nFILE 3\nDATA 3\nab",
       "connection ended inside file 2 after 2 of 3 bytes"},
      {"SKWC/1 C l\nFILE -\nDATA 2\nabEN", "connection ended inside file 1 after 2 bytes"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    parsed_t r;
    size_t n = strlen(cases[i].in);
    parse_all(&r, cases[i].in, n, 0);
    assert_false(r.error);
    /* What parse_all could not consume is an incomplete line. */
    size_t left = 0;
    if (cases[i].msg && strstr(cases[i].msg, "middle of a line"))
      left = n;
    int rc = sk_wcp_server_eof(&r.p, left, r.err, sizeof r.err);
    if (!cases[i].msg) {
      assert_int_equal(rc, 0);
    } else {
      assert_int_equal(rc, SK_EBADINPUT);
      if (!strstr(r.err, cases[i].msg))
        fail_msg("case %zu: '%s' lacks '%s'", i, r.err, cases[i].msg);
    }
  }
}

/* ---- the codec: lines written, and the client's parser --------------------------------------- */

/* Every line writer: exact text, limits, sanitising, cutting. */
static void test_writers(void **state) {
  (void)state;
  char buf[SK_WC_REPLY_MAX];
  assert_int_equal(sk_wcp_hello(buf, sizeof buf, SK_WC_LOCALE_UTF8, SK_WC_ALL), 18);
  assert_string_equal(buf, "SKWC/1 UTF-8 lwmc\n");
  assert_int_equal(sk_wcp_hello(buf, sizeof buf, SK_WC_LOCALE_C, SK_WC_BYTES), 11);
  assert_string_equal(buf, "SKWC/1 C c\n");
  assert_int_equal(sk_wcp_hello(buf, sizeof buf, SK_WC_LOCALE_C, 0), SK_EBADINPUT);
  assert_int_equal(sk_wcp_hello(buf, 5, SK_WC_LOCALE_C, SK_WC_ALL), SK_ETOOBIG);
  assert_int_equal(sk_wcp_file(buf, sizeof buf, -1), 7);
  assert_string_equal(buf, "FILE -\n");
  assert_int_equal(sk_wcp_file(buf, sizeof buf, 0), 7);
  assert_string_equal(buf, "FILE 0\n");
  assert_int_equal(sk_wcp_file(buf, sizeof buf, (int64_t)SK_WC_SIZE_MAX), 22);
  assert_int_equal(sk_wcp_file(buf, sizeof buf, (int64_t)SK_WC_SIZE_MAX + 1), SK_ETOOBIG);
  assert_int_equal(sk_wcp_file(buf, sizeof buf, -2), SK_ETOOBIG);
  assert_int_equal(sk_wcp_data(buf, sizeof buf, 4096), 10);
  assert_string_equal(buf, "DATA 4096\n");
  assert_int_equal(sk_wcp_data(buf, sizeof buf, 0), SK_ETOOBIG);
  assert_int_equal(sk_wcp_data(buf, sizeof buf, SK_WC_CHUNK_MAX + 1), SK_ETOOBIG);
  sk_wc_counts_t c = {1, 22, 333, 4444};
  assert_true(sk_wcp_counts(buf, sizeof buf, SK_WC_ALL, &c) > 0);
  assert_string_equal(buf, "OK 1 22 333 4444\n");
  assert_true(sk_wcp_counts(buf, sizeof buf, SK_WC_WORDS | SK_WC_BYTES, &c) > 0);
  assert_string_equal(buf, "OK - 22 - 4444\n");
  sk_wc_counts_t big = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  long n = sk_wcp_counts(buf, sizeof buf, SK_WC_ALL, &big);
  assert_true(n > 0 && n <= SK_WC_REPLY_MAX);
  assert_int_equal(sk_wcp_error(buf, sizeof buf, 0, "bad\nthing\x01"), 15);
  assert_string_equal(buf, "ERR bad?thing?\n");
  char longtext[400];
  memset(longtext, 'x', sizeof longtext - 1);
  longtext[sizeof longtext - 1] = '\0';
  n = sk_wcp_error(buf, sizeof buf, 1, longtext);
  assert_int_equal(n, SK_WC_REPLY_MAX);
  assert_memory_equal(buf, "FATAL xxx", 9);
  assert_int_equal(buf[n - 1], '\n');
}

/* The client's parser: each reply kind, "need more", and refusals. */
static void test_reply_parse(void **state) {
  (void)state;
  sk_wcr_reply_t r;
  char err[SK_ERRLEN];
  assert_int_equal(sk_wcr_parse("SKWC/1 OK\nOK", 12, &r, err, sizeof err), 10);
  assert_int_equal(r.kind, SK_WCR_HELLO);
  assert_int_equal(sk_wcr_parse("OK 1 2 3 4\n", 11, &r, err, sizeof err), 11);
  assert_int_equal(r.kind, SK_WCR_COUNTS);
  assert_int_equal(r.what, SK_WC_ALL);
  assert_int_equal(r.counts.lines, 1);
  assert_int_equal(r.counts.bytes, 4);
  assert_int_equal(sk_wcr_parse("OK - 2 - 18446744073709551615\n", 30, &r, err, sizeof err), 30);
  assert_int_equal(r.what, SK_WC_WORDS | SK_WC_BYTES);
  assert_true(r.counts.bytes == UINT64_MAX);
  assert_int_equal(sk_wcr_parse("ERR size mismatch\n", 18, &r, err, sizeof err), 18);
  assert_int_equal(r.kind, SK_WCR_ERR);
  assert_string_equal(r.text, "size mismatch");
  assert_int_equal(sk_wcr_parse("FATAL no\x01pe\n", 12, &r, err, sizeof err), 12);
  assert_int_equal(r.kind, SK_WCR_FATAL);
  assert_string_equal(r.text, "no?pe");
  /* need more */
  assert_int_equal(sk_wcr_parse("OK 1 2", 6, &r, err, sizeof err), 0);
  assert_int_equal(sk_wcr_parse("", 0, &r, err, sizeof err), 0);
  /* not SKWC/1 */
  static const char *const bad[] = {"hello\n",       "OK 1 2 3\n",     "OK 1 2 3 4 5\n",
                                    "OK 1  2 3 4\n", "OK 1 2 3 x\n",   "OK 01 2 3 4\n",
                                    "OK\n",          "SKWC/2 OK\n",    "OK 1 2 3 18446744073709551616\n",
                                    "ok 1 2 3 4\n",  "OK 1 2 3 4 \n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (sk_wcr_parse(bad[i], strlen(bad[i]), &r, err, sizeof err) != SK_EBADINPUT)
      fail_msg("accepted reply '%s'", bad[i]);
    assert_non_null(strstr(err, "not an SKWC/1 reply"));
  }
  char flood[SK_WC_REPLY_MAX + 10];
  memset(flood, 'E', sizeof flood);
  assert_int_equal(sk_wcr_parse(flood, sizeof flood, &r, err, sizeof err), SK_EBADINPUT);
  assert_non_null(strstr(err, "reply longer than 160 bytes"));
  /* A counts line written by the server parses back to the same numbers. */
  char line[SK_WC_REPLY_MAX];
  sk_wc_counts_t c = {7, 0, 123456789012ull, 5};
  long n = sk_wcp_counts(line, sizeof line, SK_WC_ALL, &c);
  assert_int_equal(sk_wcr_parse(line, (size_t)n, &r, err, sizeof err), n);
  assert_memory_equal(&r.counts, &c, sizeof c);
}

/* The oracle needs the C and C.UTF-8 locales as objects. */
int main(void) {
  loc_c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  loc_utf8 = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
  if (!loc_c || !loc_utf8) {
    fprintf(stderr, "test_wc: the C.UTF-8 locale is missing\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_counts),
      cmocka_unit_test(test_every_code_point),
      cmocka_unit_test(test_random_vs_oracle),
      cmocka_unit_test(test_random_bytes_vs_oracle),
      cmocka_unit_test(test_every_split_point),
      cmocka_unit_test(test_block_edges),
      cmocka_unit_test(test_dense_text_fast_path),
      cmocka_unit_test(test_large_random_pieces),
      cmocka_unit_test(test_what_subsets),
      cmocka_unit_test(test_result_midway),
      cmocka_unit_test(test_parse_whole_and_bytewise),
      cmocka_unit_test(test_parse_hello_forms),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_size_mismatch),
      cmocka_unit_test(test_eof),
      cmocka_unit_test(test_writers),
      cmocka_unit_test(test_reply_parse),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  freelocale(loc_c);
  freelocale(loc_utf8);
  return rc;
}
