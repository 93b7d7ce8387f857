/* xfer_name.c - what names a receiver accepts from a sender, how names are
 * shown, and the names the receiver makes itself (partial files, --rename
 * alternatives). Pure code over caller buffers.
 *
 * The rules answer known attacks on file-transfer tools: path traversal
 * through ".." or absolute names (scp CVE-2019-6111, croc 2023), escape
 * sequences in names rewriting the receiver's terminal (croc 2023), names
 * that look like other names (bidi overrides, zero-width characters) so a
 * user approving a manifest does not see what arrives, and characters that
 * other software folds into separators (NFKC, Windows "best fit"). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sockit/xfer.h"
#include "xfer_nfkc_table.h" /* generated at build time (nfkc_lookalike) */

/* ---- UTF-8 ----------------------------------------------------------------------------- */

/* Decodes one shortest-form UTF-8 sequence at s (n bytes available).
 * Returns its length (1-4) with *cp set, or 0 when s does not start a
 * valid one (stray continuation, overlong, surrogate, > U+10FFFF, cut). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    v = c & 0x1f;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    v = c & 0x0f;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    v = c & 0x07;
    min = 0x10000;
  } else {
    return 0; /* 0x80-0xc1 (continuation or overlong lead), 0xf5-0xff */
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    v = v << 6 | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return len;
}

typedef struct {
  uint32_t lo, hi;
  const char *why;
} cp_range_t;

/* Code points a name may not contain, with the reason. Controls come
 * first; the rest are characters that hide themselves or others, change
 * the direction of what follows, or look like '/' and '\' without folding
 * to them (Windows "best fit" maps some to the real ones). What NFKC folds
 * into '/', '\', "." or ".." is in the generated table below. */
static const cp_range_t forbidden[] = {
    {0x0000, 0x001f, "control character"},
    {0x005c, 0x005c, "backslash"},
    {0x007f, 0x009f, "control character"},
    {0x00ad, 0x00ad, "invisible character"},      /* soft hyphen */
    {0x034f, 0x034f, "invisible character"},      /* combining grapheme joiner */
    {0x061c, 0x061c, "bidirectional control"},    /* arabic letter mark */
    {0x115f, 0x1160, "invisible character"},      /* hangul fillers */
    {0x17b4, 0x17b5, "invisible character"},
    {0x180b, 0x180f, "invisible character"},      /* mongolian selectors, separator */
    {0x200b, 0x200d, "invisible character"},      /* zero width space, (non-)joiner */
    {0x200e, 0x200f, "bidirectional control"},    /* LRM, RLM */
    {0x2028, 0x2029, "line separator"},
    {0x202a, 0x202e, "bidirectional control"},    /* embeddings, overrides */
    {0x2044, 0x2044, "look-alike of '/'"},        /* fraction slash */
    {0x2060, 0x2065, "invisible character"},      /* word joiner, invisible operators */
    {0x2066, 0x2069, "bidirectional control"},    /* isolates */
    {0x206a, 0x206f, "invisible character"},      /* deprecated format characters */
    {0x2215, 0x2215, "look-alike of '/'"},        /* division slash */
    {0x2216, 0x2216, "look-alike of '\\'"},       /* set minus */
    {0x2571, 0x2571, "look-alike of '/'"},        /* box drawings diagonal */
    {0x29f5, 0x29f5, "look-alike of '\\'"},
    {0x29f8, 0x29f8, "look-alike of '/'"},        /* big solidus */
    {0x29f9, 0x29f9, "look-alike of '\\'"},       /* big reverse solidus */
    {0x3164, 0x3164, "invisible character"},      /* hangul filler */
    {0xfdd0, 0xfdef, "noncharacter"},
    {0xfeff, 0xfeff, "invisible character"},      /* byte order mark */
    {0xffa0, 0xffa0, "invisible character"},      /* halfwidth hangul filler */
    {0xfff0, 0xfffb, "invisible character"},      /* specials, interlinear annotation */
    {0x1bca0, 0x1bca3, "invisible character"},    /* shorthand format controls */
    {0x1d173, 0x1d17a, "invisible character"},    /* musical format controls */
    {0xe0000, 0xe0fff, "invisible character"},    /* tags, variation selectors supplement */
};

/* The generated table (build/generated/xfer_nfkc_table.h, from Unicode's
 * UnicodeData.txt by cmake/gen_nfkc_table.c): every code point above
 * U+007F whose full compatibility decomposition contains '/' or '\', or
 * is one or two '.' only (U+2024, U+2025, U+FE30, U+FE52, U+FF0E), so that
 * software which folds names (NFKC, NFKD) would see a separator, or a "."
 * or ".." component. Dots beside other characters ("1." U+2488, "a.m."
 * U+33C2) or three of them (U+2026, like ASCII "...") cannot form such a
 * component and pass.
 *
 * What NFKC folds c into among '/', '\' and dots, or 0 (binary search). */
static char nfkc_folds_to(uint32_t c) {
  size_t lo = 0, hi = sizeof nfkc_lookalike / sizeof nfkc_lookalike[0];
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (c < nfkc_lookalike[mid].lo)
      hi = mid;
    else if (c > nfkc_lookalike[mid].hi)
      lo = mid + 1;
    else
      return nfkc_lookalike[mid].to;
  }
  return 0;
}

/* The reason code point c may not appear in a name, or NULL. */
static const char *forbidden_why(uint32_t c) {
  if ((c & 0xfffe) == 0xfffe)
    return "noncharacter";
  switch (c < 0x80 ? 0 : nfkc_folds_to(c)) {
  case '/': return "NFKC look-alike of '/'";
  case '\\': return "NFKC look-alike of '\\'";
  case '.': return "NFKC look-alike of '.'";
  default: break;
  }
  for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
    if (c >= forbidden[i].lo && c <= forbidden[i].hi)
      return forbidden[i].why;
  return NULL;
}

/* ---- checking ----------------------------------------------------------------------------- */

static int refuse(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats the reason into why (when given) and returns SK_EBADINPUT. */
static int refuse(char *why, size_t whylen, const char *fmt, ...) {
  if (why && whylen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
  }
  return SK_EBADINPUT;
}

int sk_xfer_is_part_name(const char *base, size_t len) {
  return len >= 7 && base[0] == '.' && memcmp(base + len - 5, ".part", 5) == 0;
}

int sk_xfer_name_check(const char *name, size_t len, char *why, size_t whylen) {
  const unsigned char *s = (const unsigned char *)name;
  if (len == 0)
    return refuse(why, whylen, "empty name");
  if (len > SK_XFER_PATH_MAX)
    return refuse(why, whylen, "name of %zu bytes is longer than %d", len, SK_XFER_PATH_MAX);
  if (s[0] == '/')
    return refuse(why, whylen, "absolute name");
  /* Characters first: a name with an escape sequence is refused for that,
   * whatever else is wrong with it. */
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t n = utf8_decode(s + i, len - i, &cp);
    if (n == 0)
      return refuse(why, whylen, "invalid UTF-8 (byte 0x%02x) at byte %zu", s[i], i);
    const char *bad = forbidden_why(cp);
    if (bad)
      return refuse(why, whylen, "%s U+%04X at byte %zu", cp == 0 ? "NUL" : bad, (unsigned)cp, i);
    i += n;
  }
  for (size_t start = 0; start <= len;) {
    const unsigned char *slash = memchr(s + start, '/', len - start);
    size_t end = slash ? (size_t)(slash - s) : len;
    size_t clen = end - start;
    const char *c = name + start;
    if (clen == 0)
      return refuse(why, whylen, "empty component at byte %zu", start);
    if (clen == 1 && c[0] == '.')
      return refuse(why, whylen, "'.' component at byte %zu", start);
    if (clen == 2 && c[0] == '.' && c[1] == '.')
      return refuse(why, whylen, "'..' component at byte %zu", start);
    if (clen > SK_XFER_COMPONENT_MAX)
      return refuse(why, whylen, "component of %zu bytes at byte %zu is longer than %d", clen,
                    start, SK_XFER_COMPONENT_MAX);
    if (sk_xfer_is_part_name(c, clen))
      return refuse(why, whylen, "component at byte %zu looks like a partial file (.NAME.part)",
                    start);
    if (!slash)
      break;
    start = end + 1;
  }
  return 0;
}

/* ---- showing ------------------------------------------------------------------------------ */

/* The escaped form of the character at s (n bytes left): writes it to
 * piece (16 bytes) and returns its length; *step is the input it used. */
static size_t escape_one(const unsigned char *s, size_t n, char *piece, size_t *step) {
  uint32_t cp;
  size_t len = utf8_decode(s, n, &cp);
  if (len == 0 || cp < 0x20 || cp == 0x7f) {
    *step = 1;
    return (size_t)snprintf(piece, 16, "\\x%02x", s[0]);
  }
  *step = len;
  if (cp == '\\') {
    memcpy(piece, "\\\\", 2);
    return 2;
  }
  if (forbidden_why(cp))
    return (size_t)snprintf(piece, 16, "\\u{%04X}", (unsigned)cp);
  memcpy(piece, s, len);
  return len;
}

size_t sk_xfer_name_escape(const char *name, size_t len, char *out, size_t cap) {
  const unsigned char *s = (const unsigned char *)name;
  char piece[16];
  size_t step, o = 0, total = 0;
  if (cap == 0)
    return 0;
  /* Will it fit whole? Then no room need be kept for "...". */
  for (size_t i = 0; i < len && total < cap; i += step)
    total += escape_one(s + i, len - i, piece, &step);
  size_t reserve = total < cap ? 1 : 4;
  for (size_t i = 0; i < len; i += step) {
    size_t plen = escape_one(s + i, len - i, piece, &step);
    if (o + plen + reserve > cap) {
      if (o + 4 <= cap) {
        memcpy(out + o, "...", 3);
        o += 3;
      }
      break;
    }
    memcpy(out + o, piece, plen);
    o += plen;
  }
  out[o] = '\0';
  return o;
}

/* ---- names the receiver makes ---------------------------------------------------------- */

long sk_xfer_part_name(const char *base, size_t len, char *out, size_t cap) {
  int n;
  if (1 + len + 5 <= SK_XFER_COMPONENT_MAX) {
    if (cap < 1 + len + 5 + 1)
      return SK_ETOOBIG;
    out[0] = '.';
    memcpy(out + 1, base, len);
    memcpy(out + 1 + len, ".part", 6);
    return (long)(1 + len + 5);
  }
  /* FNV-1a: collisions only cost a resume (the content is hash-checked). */
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)base[i]) * 0x100000001b3ull;
  n = snprintf(out, cap, ".~%016llx.part", (unsigned long long)h);
  return n < 0 || (size_t)n >= cap ? SK_ETOOBIG : n;
}

#define RENAME_EXT_MAX 16 /* a longer "extension" is part of the name */

long sk_xfer_rename_name(const char *base, size_t len, unsigned k, char *out, size_t cap) {
  /* The extension: from the last '.' that is not the first byte, or from
   * ".tar" before it (a.tar.gz -> "a (1).tar.gz"). */
  size_t ext = len;
  for (size_t i = len; i-- > 1;)
    if (base[i] == '.') {
      ext = i;
      break;
    }
  if (ext < len && ext >= 5 && memcmp(base + ext - 4, ".tar", 4) == 0)
    ext -= 4;
  if (len - ext > RENAME_EXT_MAX)
    ext = len;
  /* "..part" would become ". (1).part", a partial file's name: number it at the end. */
  if (ext < len && base[0] == '.' && len - ext == 5 && memcmp(base + ext, ".part", 5) == 0)
    ext = len;
  char suffix[16];
  int slen = snprintf(suffix, sizeof suffix, " (%u)", k);
  size_t stem = ext;
  size_t max = SK_XFER_COMPONENT_MAX - (size_t)slen - (len - ext);
  if (stem > max) {
    stem = max;
    /* Cut at a character boundary: never leave half a UTF-8 sequence. */
    while (stem > 0 && ((unsigned char)base[stem] & 0xc0) == 0x80)
      stem--;
  }
  size_t total = stem + (size_t)slen + (len - ext);
  if (cap < total + 1)
    return SK_ETOOBIG;
  memcpy(out, base, stem);
  memcpy(out + stem, suffix, (size_t)slen);
  memcpy(out + stem + (size_t)slen, base + ext, len - ext);
  out[total] = '\0';
  return (long)total;
}
