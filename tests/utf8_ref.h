/* tests/utf8_ref.h - a plain, slow UTF-8 decoder the tests and fuzz targets
 * check the real validators and sanitizers against: it decodes the long
 * way round, one code point at a time, with the rules written out. */
#ifndef SK_TESTS_UTF8_REF_H
#define SK_TESTS_UTF8_REF_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the code point at s[i] (i < n) into *cp and returns its length
 * in bytes, or 0 when the bytes there are not valid, complete UTF-8
 * (a bad lead byte, a missing or bad continuation, an overlong form, a
 * surrogate, or a value above U+10FFFF). */
static inline size_t ref_utf8_next(const uint8_t *s, size_t n, size_t i, unsigned *cp) {
  unsigned c, len;
  if (s[i] < 0x80)
    c = s[i], len = 1;
  else if ((s[i] & 0xE0) == 0xC0)
    c = s[i] & 0x1Fu, len = 2;
  else if ((s[i] & 0xF0) == 0xE0)
    c = s[i] & 0x0Fu, len = 3;
  else if ((s[i] & 0xF8) == 0xF0)
    c = s[i] & 0x07u, len = 4;
  else
    return 0;
  if (i + len > n)
    return 0;
  for (unsigned k = 1; k < len; k++) {
    if ((s[i + k] & 0xC0) != 0x80)
      return 0;
    c = c << 6 | (s[i + k] & 0x3Fu);
  }
  static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  *cp = c;
  return len;
}

/* 1 if s[0..n) is valid, complete UTF-8. */
static inline int ref_utf8_valid(const uint8_t *s, size_t n) {
  unsigned cp;
  for (size_t i = 0, len; i < n; i += len)
    if (!(len = ref_utf8_next(s, n, i, &cp)))
      return 0;
  return 1;
}

#endif
