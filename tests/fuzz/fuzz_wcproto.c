/* tests/fuzz/fuzz_wcproto.c - the SKWC/1 codec on arbitrary bytes.
 *
 * Properties (abort() on a violation):
 *  - the server's parser, fed the input whole or in pieces of 1..32 bytes
 *    (held and re-offered as a server does), gives the same events, the
 *    same file bytes, the same error (or none) and the same verdict at end
 *    of stream; it consumes only what it was given, a DATA event points
 *    inside the bytes offered, 0 ("need more") happens only below a line's
 *    limit, and an error leaves a message;
 *  - no END without a mismatch error ever follows a file whose DATA bytes
 *    differ from its declared size;
 *  - the client's reply parser consumes whole lines within its limit, and
 *    what it keeps of ERR / FATAL text is printable;
 *  - a valid request made of the input (hello, the input as one file in
 *    chunks, END) parses back to exactly the input, whose count matches a
 *    direct one; a counts line written by the server parses back equal.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/wc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "fuzz_wcproto: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                       \
    }                                                                                \
  } while (0)

#define HELD_MAX (SK_WC_LINE_MAX + 64) /* a partial line plus one piece */

typedef struct {
  uint64_t log_hash, data_hash, data_len;
  int error, eof_rc;
  char err[SK_ERRLEN];
  sk_wc_counts_t counts; /* of the last file's DATA, UTF-8 */
} outcome_t;

/* FNV-1a over n bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/* Runs the server's parser over in[0..n) in pieces (piece_seed 0: whole). */
static void parse_stream(const uint8_t *in, size_t n, uint32_t piece_seed, outcome_t *o) {
  memset(o, 0, sizeof *o);
  o->log_hash = o->data_hash = 14695981039346656037ull;
  sk_wcp_server_t p;
  sk_wcp_server_init(&p);
  sk_wc_t w;
  sk_wc_init(&w, SK_WC_LOCALE_UTF8, SK_WC_ALL);
  static uint8_t held_big[1 << 16];
  uint8_t held_small[HELD_MAX];
  uint8_t *held = piece_seed ? held_small : held_big;
  size_t cap = piece_seed ? sizeof held_small : sizeof held_big;
  size_t heldlen = 0, fed = 0;
  uint64_t file_bytes = 0;
  int64_t declared = -1;
  for (;;) {
    size_t k = n - fed;
    if (piece_seed) {
      piece_seed = piece_seed * 1103515245u + 12345u;
      size_t want = 1 + (piece_seed >> 16) % 32;
      if (k > want)
        k = want;
    }
    if (k > cap - heldlen)
      k = cap - heldlen;
    memcpy(held + heldlen, in + fed, k);
    heldlen += k;
    fed += k;
    size_t off = 0;
    for (;;) {
      sk_wcp_event_t ev;
      long r = sk_wcp_server_parse(&p, (const char *)held + off, heldlen - off, &ev, o->err,
                                   sizeof o->err);
      if (r < 0) {
        CHECK(r == SK_EBADINPUT);
        CHECK(o->err[0] != '\0' && strlen(o->err) < SK_ERRLEN);
        o->error = 1;
        return;
      }
      CHECK((size_t)r <= heldlen - off);
      if (r == 0) {
        CHECK(heldlen - off < SK_WC_LINE_MAX);
        break;
      }
      /* DATA (and swallowed bytes, NONE) come in as many events as the
       * pieces cut them into: only their bytes count, in data_hash. */
      uint8_t tag = (uint8_t)ev.kind;
      if (ev.kind != SK_WCP_DATA && ev.kind != SK_WCP_NONE)
        o->log_hash = fnv(o->log_hash, &tag, 1);
      switch (ev.kind) {
      case SK_WCP_HELLO:
        o->log_hash = fnv(o->log_hash, &ev.locale, sizeof ev.locale);
        o->log_hash = fnv(o->log_hash, &ev.what, sizeof ev.what);
        break;
      case SK_WCP_FILE:
        o->log_hash = fnv(o->log_hash, &ev.size, sizeof ev.size);
        declared = ev.size;
        file_bytes = 0;
        sk_wc_init(&w, SK_WC_LOCALE_UTF8, SK_WC_ALL);
        break;
      case SK_WCP_DATA:
        CHECK(ev.data >= (const char *)held + off &&
              ev.data + ev.len <= (const char *)held + off + (size_t)r);
        CHECK(ev.len > 0);
        o->data_hash = fnv(o->data_hash, ev.data, ev.len);
        o->data_len += ev.len;
        file_bytes += ev.len;
        sk_wc_feed(&w, ev.data, ev.len);
        break;
      case SK_WCP_END:
        o->log_hash = fnv(o->log_hash, ev.error ? "!" : ".", 1);
        if (!ev.error) {
          CHECK(declared < 0 || (uint64_t)declared == file_bytes);
          sk_wc_result(&w, &o->counts);
          CHECK(o->counts.bytes == file_bytes);
        }
        break;
      default:
        break;
      }
      off += (size_t)r;
    }
    memmove(held, held + off, heldlen - off);
    heldlen -= off;
    if (fed == n) {
      char err[SK_ERRLEN];
      o->eof_rc = sk_wcp_server_eof(&p, heldlen, err, sizeof err);
      return;
    }
  }
}

/* The client's parser over the input as a stream of replies. */
static void parse_replies(const uint8_t *in, size_t n) {
  size_t off = 0;
  while (off < n) {
    sk_wcr_reply_t r;
    char err[SK_ERRLEN];
    long used = sk_wcr_parse((const char *)in + off, n - off, &r, err, sizeof err);
    if (used <= 0) {
      CHECK(used == 0 || used == SK_EBADINPUT);
      if (used == 0)
        CHECK(n - off < SK_WC_REPLY_MAX);
      return;
    }
    CHECK((size_t)used <= n - off && used <= SK_WC_REPLY_MAX);
    CHECK(in[off + (size_t)used - 1] == '\n');
    if (r.kind == SK_WCR_ERR || r.kind == SK_WCR_FATAL)
      for (const char *t = r.text; *t; t++)
        CHECK(*t >= 0x20 && *t < 0x7f);
    off += (size_t)used;
  }
}

/* One input: the properties in the header comment. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  outcome_t whole, pieces;
  parse_stream(data, size, 0, &whole);
  parse_stream(data, size, (uint32_t)size * 2654435761u | 1u, &pieces);
  CHECK(whole.error == pieces.error);
  CHECK(whole.log_hash == pieces.log_hash);
  CHECK(whole.data_hash == pieces.data_hash && whole.data_len == pieces.data_len);
  if (whole.error)
    CHECK(strcmp(whole.err, pieces.err) == 0);
  else
    CHECK(whole.eof_rc == pieces.eof_rc);
  parse_replies(data, size);

  /* The input as one file of a valid request: chunks of 64 bytes or more
   * (the last may be shorter), so their DATA lines fit the buffer. */
  enum { RT_MAX = 16384 };
  static uint8_t req[RT_MAX + (RT_MAX / 64 + 1) * SK_WC_LINE_MAX + 2 * SK_WC_REPLY_MAX];
  if (size > RT_MAX)
    return 0;
  size_t n = 0;
  char line[SK_WC_REPLY_MAX];
  long k = sk_wcp_hello(line, sizeof line, SK_WC_LOCALE_UTF8, SK_WC_ALL);
  CHECK(k > 0);
  memcpy(req + n, line, (size_t)k);
  n += (size_t)k;
  k = sk_wcp_file(line, sizeof line, (int64_t)size);
  memcpy(req + n, line, (size_t)k);
  n += (size_t)k;
  uint32_t seed = (uint32_t)size | 7u;
  for (size_t i = 0; i < size;) {
    seed = seed * 1103515245u + 12345u;
    size_t c = 64 + (seed >> 16) % 700;
    if (c > size - i)
      c = size - i;
    k = sk_wcp_data(line, sizeof line, c);
    CHECK(k > 0);
    memcpy(req + n, line, (size_t)k);
    n += (size_t)k;
    memcpy(req + n, data + i, c);
    n += c;
    i += c;
  }
  memcpy(req + n, "END\n", 4);
  n += 4;
  outcome_t rt;
  parse_stream(req, n, 0, &rt);
  CHECK(!rt.error && rt.eof_rc == 0);
  CHECK(rt.data_len == size && rt.data_hash == fnv(14695981039346656037ull, data, size));
  sk_wc_t w;
  sk_wc_counts_t direct;
  sk_wc_init(&w, SK_WC_LOCALE_UTF8, SK_WC_ALL);
  sk_wc_feed(&w, data, size);
  sk_wc_result(&w, &direct);
  CHECK(memcmp(&direct, &rt.counts, sizeof direct) == 0);

  /* The server's counts line parses back to the same numbers. */
  k = sk_wcp_counts(line, sizeof line, SK_WC_ALL, &direct);
  CHECK(k > 0 && k <= SK_WC_REPLY_MAX);
  sk_wcr_reply_t r;
  char err[SK_ERRLEN];
  CHECK(sk_wcr_parse(line, (size_t)k, &r, err, sizeof err) == k);
  CHECK(r.kind == SK_WCR_COUNTS && r.what == SK_WC_ALL);
  CHECK(memcmp(&r.counts, &direct, sizeof direct) == 0);
  return 0;
}
