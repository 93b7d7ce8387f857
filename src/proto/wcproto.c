/* wcproto.c - the SKWC/1 protocol of the word-count service: the server's
 * incremental request parser, the client's reply parser, and the writers of
 * both sides' lines. Pure code (sockit/wc.h has the grammar).
 *
 * The parser works like picohttpparser: it is handed every unconsumed byte,
 * returns how many it used (0: need more), and never copies file data: a
 * DATA event points into the caller's buffer. A file's bytes are never
 * held, so a connection costs the same whatever the file size.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sockit/wc.h"

enum { ST_HELLO = 0, ST_IDLE, ST_FILE, ST_DATA };

#define QUOTE_MAX 40 /* bytes of a bad line quoted back in a message */

/* ---- small helpers ---------------------------------------------------------------- */

/* Writes a protocol error message into err (the words a peer is told, so
 * without sk_strerror's suffix) and returns SK_EBADINPUT. */
static int bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return SK_EBADINPUT;
}

/* Copies up to QUOTE_MAX bytes of s[0..n) into out (at least QUOTE_MAX + 4
 * bytes), each byte that is not printable ASCII as '?', with "..." when
 * cut, so a peer's bytes never reach a log or terminal raw. */
static void quote(char *out, const char *s, size_t n) {
  size_t k = n < QUOTE_MAX ? n : QUOTE_MAX, j = 0;
  for (size_t i = 0; i < k; i++)
    out[j++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
  if (k < n) {
    memcpy(out + j, "...", 3);
    j += 3;
  }
  out[j] = '\0';
}

/* Parses a decimal number of n bytes: digits only, no leading zero (but
 * "0"), at most max. Returns 0 with *v set, or -1. */
static int parse_number(const char *s, size_t n, uint64_t max, uint64_t *v) {
  if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
    return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    unsigned d = (unsigned)(s[i] - '0');
    if (x > (UINT64_MAX - d) / 10)
      return -1;
    x = x * 10 + d;
  }
  if (x > max)
    return -1;
  *v = x;
  return 0;
}

/* 1 if line[0..n) is word w, or w followed by a space (then *rest is
 * what follows the space). */
static int word_is(const char *line, size_t n, const char *w, const char **rest, size_t *rest_len) {
  size_t k = strlen(w);
  if (n < k || memcmp(line, w, k) != 0)
    return 0;
  if (n == k) {
    *rest = line + n;
    *rest_len = 0;
    return 1;
  }
  if (line[k] != ' ')
    return 0;
  *rest = line + k + 1;
  *rest_len = n - k - 1;
  return 1;
}

/* Parses "lwmc" letters (any order, each once, at least one) into a mask. */
static int parse_counts(const char *s, size_t n, unsigned *what) {
  unsigned m = 0;
  if (n == 0 || n > 4)
    return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned bit = s[i] == 'l' ? SK_WC_LINES : s[i] == 'w' ? SK_WC_WORDS
                 : s[i] == 'm' ? SK_WC_CHARS : s[i] == 'c' ? SK_WC_BYTES : 0;
    if (!bit || (m & bit))
      return -1;
    m |= bit;
  }
  *what = m;
  return 0;
}

/* ---- the server's parser ------------------------------------------------------------- */

/* Contracts of the sk_wcp_* and sk_wcr_* functions: sockit/wc.h. */
void sk_wcp_server_init(sk_wcp_server_t *p) {
  memset(p, 0, sizeof *p);
  p->state = ST_HELLO;
  p->declared = -1;
}

/* The hello line: "SKWC/1 LOCALE COUNTS". */
static int parse_hello(const char *line, size_t n, sk_wcp_event_t *ev, char *err, size_t errlen) {
  char q[QUOTE_MAX + 4];
  const char *rest;
  size_t rest_len;
  if (!word_is(line, n, "SKWC/1", &rest, &rest_len)) {
    quote(q, line, n);
    if (n > 5 && memcmp(line, "SKWC/", 5) == 0)
      return bad(err, errlen,
                        "unsupported protocol '%s': this server speaks SKWC/1", q);
    return bad(err, errlen,
                      "expected 'SKWC/1 LOCALE COUNTS' first, got '%s'", q);
  }
  const char *sp = memchr(rest, ' ', rest_len);
  size_t loc_len = sp ? (size_t)(sp - rest) : rest_len;
  if (loc_len == 1 && rest[0] == 'C')
    ev->locale = SK_WC_LOCALE_C;
  else if (loc_len == 5 && memcmp(rest, "UTF-8", 5) == 0)
    ev->locale = SK_WC_LOCALE_UTF8;
  else {
    quote(q, rest, loc_len);
    return bad(err, errlen, "unknown locale '%s' (C or UTF-8)", q);
  }
  if (!sp || parse_counts(sp + 1, rest_len - loc_len - 1, &ev->what) < 0) {
    quote(q, sp ? sp + 1 : "", sp ? rest_len - loc_len - 1 : 0);
    return bad(err, errlen,
                      "bad counts '%s': letters of lwmc, each at most once", q);
  }
  ev->kind = SK_WCP_HELLO;
  return 0;
}

/* A line between files: FILE or NOOP. */
static int parse_idle_line(sk_wcp_server_t *p, const char *line, size_t n, sk_wcp_event_t *ev,
                           char *err, size_t errlen) {
  char q[QUOTE_MAX + 4];
  const char *rest;
  size_t rest_len;
  if (word_is(line, n, "FILE", &rest, &rest_len) && rest_len) {
    uint64_t size;
    if (rest_len == 1 && rest[0] == '-') {
      p->declared = -1;
    } else if (parse_number(rest, rest_len, SK_WC_SIZE_MAX, &size) == 0) {
      p->declared = (int64_t)size;
    } else {
      quote(q, rest, rest_len);
      return bad(err, errlen,
                        "bad file size '%s': a number up to %llu or -", q,
                        (unsigned long long)SK_WC_SIZE_MAX);
    }
    p->files++;
    p->received = 0;
    p->error[0] = '\0';
    p->state = ST_FILE;
    ev->kind = SK_WCP_FILE;
    ev->size = p->declared;
    return 0;
  }
  if (n == 4 && memcmp(line, "NOOP", 4) == 0) {
    ev->kind = SK_WCP_NOOP;
    return 0;
  }
  quote(q, line, n);
  return bad(err, errlen, "expected FILE or NOOP, got '%s'", q);
}

/* A line inside a file: DATA, END, ABORT or NOOP. */
static int parse_file_line(sk_wcp_server_t *p, const char *line, size_t n, sk_wcp_event_t *ev,
                           char *err, size_t errlen) {
  char q[QUOTE_MAX + 4];
  const char *rest;
  size_t rest_len;
  if (word_is(line, n, "DATA", &rest, &rest_len) && rest_len) {
    uint64_t len;
    if (parse_number(rest, rest_len, SK_WC_CHUNK_MAX, &len) < 0 || len == 0) {
      quote(q, rest, rest_len);
      return bad(err, errlen, "bad chunk length '%s': 1 to %llu", q,
                        (unsigned long long)SK_WC_CHUNK_MAX);
    }
    /* A size mismatch spoils this file only: its bytes are still read (the
     * framing is intact), not counted, and END gets an error. */
    if (!p->error[0]) {
      uint64_t limit = p->declared >= 0 ? (uint64_t)p->declared : SK_WC_SIZE_MAX;
      if (p->received + len > limit) {
        if (p->declared >= 0)
          snprintf(p->error, sizeof p->error, "size mismatch: more than the %lld bytes declared",
                   (long long)p->declared);
        else
          snprintf(p->error, sizeof p->error, "file larger than %llu bytes",
                   (unsigned long long)SK_WC_SIZE_MAX);
      }
    }
    p->chunk_left = len;
    p->state = ST_DATA;
    ev->kind = SK_WCP_NONE;
    return 0;
  }
  if (n == 3 && memcmp(line, "END", 3) == 0) {
    if (!p->error[0] && p->declared >= 0 && p->received != (uint64_t)p->declared)
      snprintf(p->error, sizeof p->error, "size mismatch: %lld bytes declared, %llu sent",
               (long long)p->declared, (unsigned long long)p->received);
    ev->kind = SK_WCP_END;
    ev->error = p->error[0] ? p->error : NULL;
    p->state = ST_IDLE;
    return 0;
  }
  if (n == 5 && memcmp(line, "ABORT", 5) == 0) {
    ev->kind = SK_WCP_ABORT;
    p->state = ST_IDLE;
    return 0;
  }
  if (n == 4 && memcmp(line, "NOOP", 4) == 0) {
    ev->kind = SK_WCP_NOOP;
    return 0;
  }
  quote(q, line, n);
  return bad(err, errlen, "expected DATA, END, ABORT or NOOP, got '%s'", q);
}

long sk_wcp_server_parse(sk_wcp_server_t *p, const char *in, size_t len, sk_wcp_event_t *ev,
                         char *err, size_t errlen) {
  memset(ev, 0, sizeof *ev);
  if (len == 0)
    return 0;
  if (p->state == ST_DATA) {
    size_t n = len < p->chunk_left ? len : (size_t)p->chunk_left;
    p->chunk_left -= n;
    p->received += n;
    if (p->chunk_left == 0)
      p->state = ST_FILE;
    if (!p->error[0]) {
      ev->kind = SK_WCP_DATA;
      ev->data = in;
      ev->len = n;
    }
    return (long)n;
  }
  size_t scan = len < SK_WC_LINE_MAX ? len : SK_WC_LINE_MAX;
  const char *lf = memchr(in, '\n', scan);
  if (!lf) {
    if (len < SK_WC_LINE_MAX)
      return 0;
    char q[QUOTE_MAX + 4];
    quote(q, in, SK_WC_LINE_MAX);
    return bad(err, errlen, "line longer than %d bytes: '%s'",
                      SK_WC_LINE_MAX, q);
  }
  size_t used = (size_t)(lf - in) + 1, n = used - 1;
  if (n && in[n - 1] == '\r')
    n--;
  int r;
  switch (p->state) {
  case ST_HELLO:
    r = parse_hello(in, n, ev, err, errlen);
    if (r == 0)
      p->state = ST_IDLE;
    break;
  case ST_IDLE: r = parse_idle_line(p, in, n, ev, err, errlen); break;
  default: r = parse_file_line(p, in, n, ev, err, errlen); break;
  }
  return r < 0 ? r : (long)used;
}

/* Between files (or before the hello) with nothing left over is the
 * only clean end; anywhere else the message says where it stopped. */
int sk_wcp_server_eof(const sk_wcp_server_t *p, size_t unconsumed, char *err, size_t errlen) {
  if (p->state == ST_HELLO || p->state == ST_IDLE) {
    if (unconsumed == 0)
      return 0;
    return bad(err, errlen,
                      "connection ended in the middle of a line (%zu bytes)", unconsumed);
  }
  if (p->declared >= 0)
    return bad(err, errlen,
                      "connection ended inside file %llu after %llu of %lld bytes: no count",
                      (unsigned long long)p->files, (unsigned long long)p->received,
                      (long long)p->declared);
  return bad(err, errlen,
                    "connection ended inside file %llu after %llu bytes, before END: no count",
                    (unsigned long long)p->files, (unsigned long long)p->received);
}

/* ---- writing lines --------------------------------------------------------------------- */

/* Finishes an snprintf into buf: the length, or SK_ETOOBIG if cut. */
static long fitted(int n, size_t len) {
  return n < 0 || (size_t)n >= len ? SK_ETOOBIG : (long)n;
}

/* "SKWC/1 LOCALE COUNTS": the letters in wc's column order. */
long sk_wcp_hello(char *buf, size_t len, sk_wc_locale_t loc, unsigned what) {
  char counts[5];
  size_t k = 0;
  if (what & SK_WC_LINES)
    counts[k++] = 'l';
  if (what & SK_WC_WORDS)
    counts[k++] = 'w';
  if (what & SK_WC_CHARS)
    counts[k++] = 'm';
  if (what & SK_WC_BYTES)
    counts[k++] = 'c';
  counts[k] = '\0';
  if (k == 0)
    return SK_EBADINPUT;
  return fitted(snprintf(buf, len, "SKWC/%d %s %s\n", SK_WC_VERSION, sk_wc_locale_name(loc),
                         counts), len);
}

/* "FILE n" or "FILE -"; sizes past SK_WC_SIZE_MAX are refused. */
long sk_wcp_file(char *buf, size_t len, int64_t size) {
  if (size < -1 || (size >= 0 && (uint64_t)size > SK_WC_SIZE_MAX))
    return SK_ETOOBIG;
  if (size < 0)
    return fitted(snprintf(buf, len, "FILE -\n"), len);
  return fitted(snprintf(buf, len, "FILE %lld\n", (long long)size), len);
}

/* "DATA n" for 1 <= n <= SK_WC_CHUNK_MAX. */
long sk_wcp_data(char *buf, size_t len, uint64_t n) {
  if (n == 0 || n > SK_WC_CHUNK_MAX)
    return SK_ETOOBIG;
  return fitted(snprintf(buf, len, "DATA %llu\n", (unsigned long long)n), len);
}

/* "OK l w m c", with "-" in place of the counts not asked for. */
long sk_wcp_counts(char *buf, size_t len, unsigned what, const sk_wc_counts_t *c) {
  const uint64_t v[4] = {c->lines, c->words, c->chars, c->bytes};
  const unsigned bit[4] = {SK_WC_LINES, SK_WC_WORDS, SK_WC_CHARS, SK_WC_BYTES};
  char field[4][24];
  for (int i = 0; i < 4; i++)
    if (what & bit[i])
      snprintf(field[i], sizeof field[i], "%llu", (unsigned long long)v[i]);
    else
      strcpy(field[i], "-");
  return fitted(snprintf(buf, len, "OK %s %s %s %s\n", field[0], field[1], field[2], field[3]),
                len);
}

/* "ERR text" / "FATAL text", cut to SK_WC_REPLY_MAX with its LF. */
long sk_wcp_error(char *buf, size_t len, int fatal, const char *text) {
  const char *tag = fatal ? "FATAL " : "ERR ";
  size_t tl = strlen(tag), room = SK_WC_REPLY_MAX - tl - 1, n = strlen(text);
  if (len < tl + 2)
    return SK_ETOOBIG;
  if (room > len - tl - 1)
    room = len - tl - 1;
  if (n > room)
    n = room;
  memcpy(buf, tag, tl);
  for (size_t i = 0; i < n; i++)
    buf[tl + i] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
  buf[tl + n] = '\n';
  if (tl + n + 1 < len)
    buf[tl + n + 1] = '\0';
  return (long)(tl + n + 1);
}

/* ---- the client's parser ----------------------------------------------------------------- */

/* Parses the four fields of an OK line. */
static int parse_ok(const char *s, size_t n, sk_wcr_reply_t *r) {
  uint64_t *dst[4] = {&r->counts.lines, &r->counts.words, &r->counts.chars, &r->counts.bytes};
  const unsigned bit[4] = {SK_WC_LINES, SK_WC_WORDS, SK_WC_CHARS, SK_WC_BYTES};
  size_t i = 0;
  for (int f = 0; f < 4; f++) {
    size_t j = i;
    while (j < n && s[j] != ' ')
      j++;
    if (j - i == 1 && s[i] == '-') {
      *dst[f] = 0;
    } else if (parse_number(s + i, j - i, UINT64_MAX, dst[f]) == 0) {
      r->what |= bit[f];
    } else {
      return -1;
    }
    if (f < 3 && j == n)
      return -1;
    i = j + 1;
  }
  return i == n + 1 ? 0 : -1;
}

/* One reply line: the hello's answer, counts, ERR or FATAL. */
long sk_wcr_parse(const char *in, size_t len, sk_wcr_reply_t *r, char *err, size_t errlen) {
  char q[QUOTE_MAX + 4];
  memset(r, 0, sizeof *r);
  size_t scan = len < SK_WC_REPLY_MAX ? len : SK_WC_REPLY_MAX;
  const char *lf = memchr(in, '\n', scan);
  if (!lf) {
    if (len < SK_WC_REPLY_MAX)
      return 0;
    quote(q, in, len);
    return bad(err, errlen, "reply longer than %d bytes: '%s'",
                      SK_WC_REPLY_MAX, q);
  }
  size_t used = (size_t)(lf - in) + 1, n = used - 1;
  const char *rest;
  size_t rest_len;
  if (n == 9 && memcmp(in, "SKWC/1 OK", 9) == 0) {
    r->kind = SK_WCR_HELLO;
  } else if (word_is(in, n, "OK", &rest, &rest_len) && parse_ok(rest, rest_len, r) == 0) {
    r->kind = SK_WCR_COUNTS;
  } else if (word_is(in, n, "ERR", &rest, &rest_len) ||
             word_is(in, n, "FATAL", &rest, &rest_len)) {
    r->kind = in[0] == 'E' ? SK_WCR_ERR : SK_WCR_FATAL;
    for (size_t i = 0; i < rest_len; i++)
      r->text[i] = rest[i] >= 0x20 && rest[i] < 0x7f ? rest[i] : '?';
    r->text[rest_len] = '\0';
  } else {
    quote(q, in, n);
    return bad(err, errlen, "not an SKWC/1 reply: '%s'", q);
  }
  return (long)used;
}
