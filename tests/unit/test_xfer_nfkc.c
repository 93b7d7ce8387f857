/* tests/unit/test_xfer_nfkc.c - file names that compatibility folding
 * turns into separators or dots (issue 19, finding 6), over every code
 * point U+0000..U+10FFFF.
 *
 * The expected answer is computed here, independently of the generated
 * table: this test reads UnicodeData.txt itself (SK_UNICODE_DATA, the file
 * the build used), applies every decomposition mapping, canonical or
 * compatibility, until nothing changes, and expects sk_xfer_name_check to
 * refuse, with "NFKC look-alike of 'C'", exactly the code points above
 * U+007F whose full decomposition contains '/' or '\' (C is that) or is
 * one or two '.' and nothing else (C is '.'); every other code point is
 * either accepted or refused for another reason. Each is tried alone and
 * between letters ("aXb"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/xfer.h"

#ifndef SK_UNICODE_DATA
#error "SK_UNICODE_DATA (the path of UnicodeData.txt) must be defined by the build"
#endif

/* One mapping of field 5, tag dropped. */
typedef struct {
  uint32_t cp;
  uint32_t to[20]; /* the longest in Unicode 15 is 18 (U+FDFA) */
  unsigned n;
} mapping_t;

static mapping_t *maps;
static size_t nmaps;

static int by_cp(const void *a, const void *b) {
  uint32_t x = ((const mapping_t *)a)->cp, y = ((const mapping_t *)b)->cp;
  return x < y ? -1 : x > y;
}

static const mapping_t *mapping_of(uint32_t cp) {
  mapping_t key = {.cp = cp};
  return bsearch(&key, maps, nmaps, sizeof *maps, by_cp);
}

/* Reads every decomposition of UnicodeData.txt into maps, sorted. */
static int load(void **state) {
  (void)state;
  FILE *f = fopen(SK_UNICODE_DATA, "r");
  if (!f) {
    fprintf(stderr, "cannot open %s (package unicode-data)\n", SK_UNICODE_DATA);
    return -1;
  }
  size_t cap = 16384;
  maps = calloc(cap, sizeof *maps);
  char line[1024];
  while (maps && fgets(line, sizeof line, f)) {
    /* code;name;gc;ccc;bidi;decomposition;... */
    char *semi[6], *p = line;
    int k = 0;
    for (; k < 6 && (p = strchr(p, ';')); k++, p++)
      semi[k] = p;
    if (k < 6 || semi[5] == semi[4] + 1)
      continue; /* no decomposition */
    mapping_t m = {.cp = (uint32_t)strtoul(line, NULL, 16)};
    const char *d = semi[4] + 1;
    if (*d == '<')
      d = strchr(d, '>') + 1;
    while (d < semi[5]) {
      char *end;
      unsigned long v = strtoul(d, &end, 16);
      if (end == d)
        break;
      if (m.n == sizeof m.to / sizeof m.to[0]) {
        fclose(f);
        return -1;
      }
      m.to[m.n++] = (uint32_t)v;
      d = end;
    }
    if (nmaps == cap) {
      fclose(f);
      return -1;
    }
    maps[nmaps++] = m;
  }
  fclose(f);
  if (!maps || nmaps < 5000)
    return -1;
  qsort(maps, nmaps, sizeof *maps, by_cp); /* the file is sorted; do not rely on it */
  return 0;
}

static int unload(void **state) {
  (void)state;
  free(maps);
  return 0;
}

/* Counts of what cp's full decomposition holds: all, dots, '/', '\'. */
typedef struct {
  unsigned all, dots, slash, backslash;
} folded_t;

static void fold(uint32_t cp, folded_t *f, int depth) {
  const mapping_t *m = depth < 40 ? mapping_of(cp) : NULL;
  if (!m) {
    f->all++;
    f->dots += cp == '.';
    f->slash += cp == '/';
    f->backslash += cp == '\\';
    return;
  }
  for (unsigned i = 0; i < m->n; i++)
    fold(m->to[i], f, depth + 1);
}

/* What the name check must call cp: '/', '\\', '.', or 0 (nothing NFKC). */
static char expected(uint32_t cp) {
  if (cp < 0x80)
    return 0;
  folded_t f = {0};
  fold(cp, &f, 0);
  if (f.slash)
    return '/';
  if (f.backslash)
    return '\\';
  return f.dots == f.all && f.all <= 2 ? '.' : 0;
}

static size_t utf8(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Checks one name holding cp; returns 1 if refused as an NFKC look-alike. */
static int check_one(uint32_t cp, const char *name, size_t len, char want) {
  char why[256] = "", text[64];
  int r = sk_xfer_name_check(name, len, why, sizeof why);
  int nfkc = r == SK_EBADINPUT && strstr(why, "NFKC") != NULL;
  if (want) {
    snprintf(text, sizeof text, "NFKC look-alike of '%c' U+%04X", want, (unsigned)cp);
    if (r != SK_EBADINPUT || !strstr(why, text))
      fail_msg("U+%04X (folds to '%c'): got %d '%s', expected '%s'", (unsigned)cp, want, r, why,
               text);
  } else if (nfkc) {
    fail_msg("U+%04X refused as an NFKC look-alike, but its decomposition holds no '/', '\\' "
             "and is not one or two dots: '%s'", (unsigned)cp, why);
  }
  return nfkc;
}

static void test_every_code_point(void **state) {
  (void)state;
  unsigned refused = 0, want_refused = 0;
  for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff)
      continue; /* surrogates: no UTF-8 form (refused as invalid UTF-8) */
    char name[8], between[10];
    size_t n = utf8(cp, name);
    between[0] = 'a';
    memcpy(between + 1, name, n);
    between[n + 1] = 'b';
    char want = expected(cp);
    want_refused += want != 0;
    refused += (unsigned)check_one(cp, name, n, want);
    check_one(cp, between, n + 2, want);
  }
  assert_int_equal(refused, want_refused);
  /* Unicode 15: the rule's 12 (U+2024 U+2025 U+2100 U+2101 U+2105 U+2106
   * U+FE30 U+FE52 U+FE68 U+FF0E U+FF0F U+FF3C); at least those. */
  assert_true(want_refused >= 12);
}

static void test_named_cases(void **state) {
  (void)state;
  static const struct {
    const char *name;
    const char *why; /* NULL: accepted */
  } t[] = {
      {"\xef\xb8\xb0", "NFKC look-alike of '.' U+FE30"},         /* "..", vertical */
      {"\xef\xb8\xb0/x", "NFKC look-alike of '.' U+FE30"},       /* the directory */
      {"\xe2\x84\x80", "NFKC look-alike of '/' U+2100"},         /* a/c */
      {"x\xe2\x84\x81", "NFKC look-alike of '/' U+2101"},        /* a/s */
      {"\xe2\x84\x85.txt", "NFKC look-alike of '/' U+2105"},     /* c/o */
      {"\xe2\x84\x86", "NFKC look-alike of '/' U+2106"},         /* c/u */
      {"\xef\xbc\x8e\xef\xbc\x8e", "NFKC look-alike of '.' U+FF0E"},
      {"\xef\xbc\x8e", "NFKC look-alike of '.' U+FF0E"},
      {"\xe2\x80\xa4", "NFKC look-alike of '.' U+2024"},         /* one dot leader */
      {".\xe2\x80\xa4", "NFKC look-alike of '.' U+2024"},        /* ".." once folded */
      {"\xe2\x80\xa5", "NFKC look-alike of '.' U+2025"},         /* two dot leader */
      {"\xef\xbc\x8f" "etc", "NFKC look-alike of '/' U+FF0F"},
      {"\xef\xbc\xbc", "NFKC look-alike of '\\' U+FF3C"},
      {"\xef\xb9\xa8", "NFKC look-alike of '\\' U+FE68"},
      {"\xef\xb9\x92", "NFKC look-alike of '.' U+FE52"},
      /* look-alikes that do not fold (Windows best fit): still refused */
      {"a\xe2\x88\x95" "b", "look-alike of '/' U+2215"},
      /* dots next to other characters, or three: no "." or ".." component */
      {"notes\xe2\x80\xa6", NULL},                              /* U+2026 "..." */
      {"\xe2\x92\x88", NULL},                                   /* U+2488 "1." */
      {"\xe3\x8f\x82", NULL},                                   /* U+33C2 "a.m." */
      {"\xc2\xbd", NULL},                                       /* U+00BD: 1 U+2044 2 */
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char why[256] = "";
    int r = sk_xfer_name_check(t[i].name, strlen(t[i].name), why, sizeof why);
    if (!t[i].why && r != 0)
      fail_msg("case %zu refused: %s", i, why);
    if (t[i].why && (r != SK_EBADINPUT || !strstr(why, t[i].why)))
      fail_msg("case %zu: got %d '%s', expected '%s'", i, r, why, t[i].why);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_named_cases),
      cmocka_unit_test(test_every_code_point),
  };
  return cmocka_run_group_tests(tests, load, unload);
}
