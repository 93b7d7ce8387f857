/* tests/fuzz/fuzz_wc.c - the word counter on arbitrary bytes, fed whole,
 * in random pieces and a byte at a time.
 *
 * The first input byte picks the locale (bit 0), the counts asked for
 * (bits 1-4; 0 = all) and, with the second, the seed of the piece sizes;
 * the rest is the text. Properties (abort() on a violation):
 *  - pieces of 1..32 bytes and single bytes give exactly the counts of one
 *    feed (a UTF-8 sequence, a word or a CR LF may straddle any two);
 *  - a result taken midway changes nothing;
 *  - lines and bytes are the same whatever counts are asked for, and the
 *    counts asked for match those of a count of everything;
 *  - bytes = input length, lines <= bytes, chars <= bytes, words <= chars
 *    (C.UTF-8) or words <= bytes (C); in C, chars = bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/wc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "fuzz_wc: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                  \
    }                                                                           \
  } while (0)

/* 1 if the four counts are equal. */
static int same(const sk_wc_counts_t *a, const sk_wc_counts_t *b) {
  return a->lines == b->lines && a->words == b->words && a->chars == b->chars &&
         a->bytes == b->bytes;
}

/* One input: the properties in the header comment. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  sk_wc_locale_t loc = data[0] & 1 ? SK_WC_LOCALE_UTF8 : SK_WC_LOCALE_C;
  unsigned what = (data[0] >> 1) & SK_WC_ALL;
  uint32_t seed = (uint32_t)data[0] << 8 | data[1] | 1u;
  const uint8_t *text = data + 2;
  size_t n = size - 2;

  sk_wc_t w;
  sk_wc_counts_t all, whole, got;
  sk_wc_init(&w, loc, SK_WC_ALL);
  sk_wc_feed(&w, text, n);
  sk_wc_result(&w, &all);
  CHECK(all.bytes == n);
  CHECK(all.lines <= n && all.chars <= n);
  CHECK(loc == SK_WC_LOCALE_UTF8 ? all.words <= all.chars : all.words <= n);
  if (loc == SK_WC_LOCALE_C)
    CHECK(all.chars == n);

  sk_wc_init(&w, loc, what);
  sk_wc_feed(&w, text, n);
  sk_wc_result(&w, &whole);
  unsigned asked = what ? what : SK_WC_ALL;
  CHECK(whole.lines == all.lines && whole.bytes == all.bytes);
  CHECK(whole.words == (asked & SK_WC_WORDS ? all.words : 0));
  CHECK(whole.chars == (asked & SK_WC_CHARS ? all.chars : 0));

  /* Random pieces, with a result taken (and ignored) after each. */
  sk_wc_init(&w, loc, what);
  for (size_t i = 0; i < n;) {
    seed = seed * 1103515245u + 12345u;
    size_t k = 1 + (seed >> 16) % 32;
    if (k > n - i)
      k = n - i;
    sk_wc_feed(&w, text + i, k);
    sk_wc_result(&w, &got);
    i += k;
  }
  sk_wc_result(&w, &got);
  CHECK(same(&got, &whole));

  sk_wc_init(&w, loc, what);
  for (size_t i = 0; i < n; i++)
    sk_wc_feed(&w, text + i, 1);
  sk_wc_result(&w, &got);
  CHECK(same(&got, &whole));
  return 0;
}
