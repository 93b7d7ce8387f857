/* gen_nfkc_table.c - writes the table of code points that compatibility
 * folding (NFKC, NFKD) turns into a path separator or into dots, for the
 * file-name checks of src/proto/xfer_name.c. Run at build time:
 *
 *   gen_nfkc_table UnicodeData.txt OUT.h
 *
 * From field 5 of UnicodeData.txt (the decomposition: canonical, or
 * compatibility when tagged "<...>"), every mapping is applied again to
 * its result until nothing changes (the full NFKD). A code point above
 * U+007F is listed when its full decomposition
 *   - contains '/' (U+2100 ACCOUNT OF -> "a/c") or '\' (U+FF3C), anywhere:
 *     after folding, the name would hold a separator; or
 *   - is one or two '.' and nothing else (U+2024 ".", U+2025 and U+FE30
 *     ".."): a component made of such characters folds to "." or "..".
 * A decomposition with dots next to other characters (U+2488 "1.", U+33C2
 * "a.m.") or of three dots (U+2026 "...", which ASCII names may contain
 * too) cannot make a "." or ".." component, so it is not listed.
 * Composition (the C of NFKC) cannot add or remove these ASCII characters:
 * none of them is part of a canonical composition.
 *
 * OUT is a sorted array of ranges {lo, hi, what} ('.', '/' or '\\'), merged
 * where neighbours fold to the same character, for a binary search; it is
 * rewritten only when its text changes. C only, so the build needs no
 * scripting language. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CP_COUNT 0x110000u
#define POOL_MAX 65536u    /* code points of all decompositions (about 9,000 in 15.0) */
#define EXPAND_MAX 256     /* longest full decomposition (U+FDFA: 18) */
#define OUT_MAX (1u << 20) /* the generated header's text */

static uint32_t map_at[CP_COUNT]; /* offset in pool + 1; 0 = no decomposition */
static uint8_t map_len[CP_COUNT];
static uint32_t pool[POOL_MAX];
static size_t pool_used;
static char text[OUT_MAX], old_text[OUT_MAX];

/* Parses one line of UnicodeData.txt; returns 0, or -1 when malformed. */
static int parse_line(char *line) {
  char *field[6];
  char *p = line;
  for (int i = 0; i < 6; i++) {
    field[i] = p;
    p = strchr(p, ';');
    if (!p)
      return -1;
    *p++ = '\0';
  }
  char *end;
  unsigned long cp = strtoul(field[0], &end, 16);
  if (*end || cp >= CP_COUNT)
    return -1;
  char *d = field[5];
  if (*d == '<') { /* a compatibility tag: applied like a canonical mapping */
    d = strchr(d, '>');
    if (!d)
      return -1;
    d++;
  }
  size_t start = pool_used;
  for (;;) {
    while (*d == ' ')
      d++;
    if (!*d)
      break;
    unsigned long v = strtoul(d, &end, 16);
    if (end == d || v >= CP_COUNT || pool_used == POOL_MAX)
      return -1;
    pool[pool_used++] = (uint32_t)v;
    d = end;
  }
  if (pool_used - start > 255)
    return -1;
  if (pool_used > start) {
    map_at[cp] = (uint32_t)start + 1;
    map_len[cp] = (uint8_t)(pool_used - start);
  }
  return 0;
}

/* Appends the full decomposition of cp to out (n used of EXPAND_MAX).
 * Returns the new count, or 0 when it would not fit. */
static size_t expand(uint32_t cp, uint32_t *out, size_t n, int depth) {
  if (!map_at[cp] || depth > 32) {
    if (n == EXPAND_MAX)
      return 0;
    out[n] = cp;
    return n + 1;
  }
  for (size_t i = 0; i < map_len[cp]; i++) {
    n = expand(pool[map_at[cp] - 1 + i], out, n, depth + 1);
    if (n == 0)
      return 0;
  }
  return n;
}

/* What cp folds to that a name may not hold: '/', '\\', '.', or 0. */
static char folds_to(uint32_t cp) {
  uint32_t full[EXPAND_MAX];
  if (cp < 0x80 || !map_at[cp])
    return 0;
  size_t n = expand(cp, full, 0, 0), dots = 0;
  if (n == 0) {
    fprintf(stderr, "gen_nfkc_table: U+%04X: decomposition too long\n", (unsigned)cp);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    if (full[i] == '/' || full[i] == '\\')
      return (char)full[i];
    dots += full[i] == '.';
  }
  return dots == n && n <= 2 ? '.' : 0;
}

static size_t put(size_t used, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t put(size_t used, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text + used, OUT_MAX - used, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= OUT_MAX - used) {
    fprintf(stderr, "gen_nfkc_table: output too large\n");
    exit(1);
  }
  return used + (size_t)n;
}

/* Formats the header into text; returns its length. */
static size_t format_table(void) {
  size_t used = put(0, "%s",
                    "/* Generated at build time by cmake/gen_nfkc_table.c from UnicodeData.txt:\n"
                    " * do not edit. Code points above U+007F whose full compatibility\n"
                    " * decomposition (NFKD) contains '/' or '\\\\', or is one or two '.' only;\n"
                    " * sorted ranges of one folded character each. */\n"
                    "#ifndef SK_XFER_NFKC_TABLE_H\n#define SK_XFER_NFKC_TABLE_H\n\n"
                    "static const struct {\n  uint32_t lo, hi;\n  char to;\n"
                    "} nfkc_lookalike[] = {\n");
  unsigned ranges = 0, points = 0;
  for (uint32_t cp = 0x80; cp < CP_COUNT;) {
    char to = folds_to(cp);
    if (!to) {
      cp++;
      continue;
    }
    uint32_t hi = cp;
    while (hi + 1 < CP_COUNT && folds_to(hi + 1) == to)
      hi++;
    used = put(used, "    {0x%04X, 0x%04X, '%s'},\n", (unsigned)cp, (unsigned)hi,
               to == '\\' ? "\\\\" : to == '/' ? "/" : ".");
    ranges++;
    points += hi - cp + 1;
    cp = hi + 1;
  }
  return put(used, "};\n\n#define NFKC_LOOKALIKE_RANGES %u\n#define NFKC_LOOKALIKE_CODE_POINTS %u\n"
                   "\n#endif\n", ranges, points);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: gen_nfkc_table UnicodeData.txt OUT.h\n");
    return 2;
  }
  FILE *in = fopen(argv[1], "r");
  if (!in) {
    fprintf(stderr, "gen_nfkc_table: %s: %s (Debian package unicode-data)\n", argv[1],
            strerror(errno));
    return 1;
  }
  char line[1024];
  unsigned lineno = 0;
  while (fgets(line, sizeof line, in)) {
    lineno++;
    if (parse_line(line) < 0) {
      fprintf(stderr, "gen_nfkc_table: %s:%u: malformed line\n", argv[1], lineno);
      return 1;
    }
  }
  fclose(in);
  if (lineno < 1000) {
    fprintf(stderr, "gen_nfkc_table: %s: only %u lines\n", argv[1], lineno);
    return 1;
  }
  size_t len = format_table();
  FILE *old = fopen(argv[2], "r");
  if (old) {
    size_t olen = fread(old_text, 1, OUT_MAX, old);
    fclose(old);
    if (olen == len && memcmp(old_text, text, len) == 0)
      return 0; /* unchanged: keep its time, rebuild nothing */
  }
  FILE *out = fopen(argv[2], "w");
  if (!out || fwrite(text, 1, len, out) != len || fclose(out) != 0) {
    fprintf(stderr, "gen_nfkc_table: %s: %s\n", argv[2], strerror(errno));
    return 1;
  }
  return 0;
}
