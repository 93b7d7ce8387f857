/* tests/unit/test_http.c - the strict HTTP/1.1 request-head parser and its
 * helpers (sockit/http.h).
 *
 * Parser: a table of valid heads (methods, versions 1.0 and 1.1, OWS and
 * HTAB around values, leading empty lines, OPTIONS *), each parsed from a
 * buffer of exactly its size (so ASan sees any read past the end), with
 * every strict prefix "incomplete" and every longer buffer giving the same
 * head; two heads in one buffer; a table of malformed heads (bare LF and
 * CR, obs-fold, a space before the colon, controls, bad methods, targets
 * and versions), each refused with its status and no later than its first
 * bad byte, every prefix either "incomplete" or that status; the limits to
 * the byte (414, 431 for the size and for the field count). Helpers:
 * names, finding fields, token lists, body length, keep-alive, reasons; the
 * Host header taken apart (names, IPv4, IPv6 literals, ports; refusals),
 * and every IPv6 literal of up to 9 characters over ":0f1." checked
 * against inet_pton. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/http.h"

#define LIT(s) s, sizeof s - 1 /* a string literal and its length, NULs included */

/* ---- helpers ------------------------------------------------------------------------ */

/* Writes req as "METHOD TARGET 1.x|name=value|...|". */
static void show(const sk_http_request_t *req, char *out, size_t cap) {
  int n = snprintf(out, cap, "%.*s %.*s 1.%d|", (int)req->method_len, req->method,
                   (int)req->target_len, req->target, req->minor_version);
  for (size_t i = 0; i < req->nheaders && n > 0 && (size_t)n < cap; i++) {
    const sk_http_header_t *h = &req->headers[i];
    n += snprintf(out + n, cap - (size_t)n, "%.*s=%.*s|", (int)h->name_len, h->name,
                  (int)h->value_len, h->value);
  }
}

/* Parses in[0..n) from a copy of exactly n bytes and returns the result;
 * on success checks that every pointer lies in the head and writes the
 * request to shown (else an empty string). */
static int parse_copy(const char *in, size_t n, size_t max, char *shown, size_t cap) {
  char *copy = malloc(n ? n : 1);
  assert_non_null(copy);
  memcpy(copy, in, n);
  sk_http_request_t req;
  int rc = sk_http_parse_request(copy, n, max, &req);
  shown[0] = '\0';
  if (rc > 0) {
    const char *end = copy + rc;
    assert_true((size_t)rc <= n && (size_t)rc <= max);
    assert_true(req.method >= copy && req.method + req.method_len <= end);
    assert_true(req.target >= copy && req.target + req.target_len <= end);
    assert_true(req.nheaders <= SK_HTTP_HEADERS_MAX);
    for (size_t i = 0; i < req.nheaders; i++) {
      const sk_http_header_t *h = &req.headers[i];
      assert_true(h->name >= copy && h->name + h->name_len <= end);
      assert_true(h->value >= copy && h->value + h->value_len <= end);
    }
    show(&req, shown, cap);
  }
  free(copy);
  return rc;
}

/* Parses a valid head from a literal into *req (pointing into the literal). */
static void parse_ok(const char *in, sk_http_request_t *req) {
  int rc = sk_http_parse_request(in, strlen(in), SK_HTTP_HEAD_MAX, req);
  if (rc != (int)strlen(in))
    fail_msg("'%s': %d", in, rc);
}

/* ---- valid heads -------------------------------------------------------------------- */

static const struct {
  const char *in;
  size_t len;
  size_t head; /* the head's length: 0 for all of in */
  const char *want;
} valid[] = {
    {LIT("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), 0, "GET / 1.1|Host=example.com|"},
    {LIT("HEAD /index.html?x=1&y=%20 HTTP/1.0\r\n\r\n"), 0, "HEAD /index.html?x=1&y=%20 1.0|"},
    {LIT("GET /a HTTP/1.1\r\nHost:x\r\nAccept:  \t text/html \t \r\nX-Empty:\r\n"
         "X-Blank: \t \r\nX-Tab:\ta\tb \tc\t\r\n\r\n"),
     0, "GET /a 1.1|Host=x|Accept=text/html|X-Empty=|X-Blank=|X-Tab=a\tb \tc|"},
    {LIT("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0, "GET / 1.1|Host=h|"},
    {LIT("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 0, "OPTIONS * 1.1|Host=h|"},
    {LIT("OPTIONS /x HTTP/1.1\r\n\r\n"), 0, "OPTIONS /x 1.1|"},
    {LIT("GET http://h:80/a?b HTTP/1.1\r\nHost: h\r\n\r\n"), 0, "GET http://h:80/a?b 1.1|Host=h|"},
    {LIT("GET HTTPS://h HTTP/1.1\r\n\r\n"), 0, "GET HTTPS://h 1.1|"},
    {LIT("M-SEARCH! / HTTP/1.1\r\n\r\n"), 0, "M-SEARCH! / 1.1|"},
    {LIT("get / HTTP/1.1\r\n\r\n"), 0, "get / 1.1|"}, /* a token; only GET is GET */
    {LIT("GET /~a/b;c=d/e:f@g!$&'()*+,;= HTTP/1.1\r\n\r\n"), 0,
     "GET /~a/b;c=d/e:f@g!$&'()*+,;= 1.1|"},
    {LIT("GET / HTTP/1.1\r\nHost: example.com:8080\r\nX: a: b\r\n\r\n"), 0,
     "GET / 1.1|Host=example.com:8080|X=a: b|"},
    {LIT("GET / HTTP/1.1\r\nX-a_b.c!#$%&'*+^`|~9: v\r\n\r\n"), 0,
     "GET / 1.1|X-a_b.c!#$%&'*+^`|~9=v|"},
    {LIT("GET / HTTP/1.1\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n"), 0, /* obs-text */
     "GET / 1.1|X=caf\xc3\xa9 \x80\xff|"},
    {LIT("GET / HTTP/1.1\r\nX: \"q\\\"\" (c) {}[]<>\r\n\r\n"), 0,
     "GET / 1.1|X=\"q\\\"\" (c) {}[]<>|"},
    /* what follows a head is not the parser's: a body, or the next request */
    {LIT("POST /f HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), 39,
     "POST /f 1.1|Content-Length=5|"},
    {LIT("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n"), 28,
     "GET /1 1.1|Host=a|"},
    {LIT("GET / HTTP/1.1\r\n\r\n\n\x01garbage"), 18, "GET / 1.1|"},
};

/* Each valid head parses to what the table says, from a buffer of exactly
 * its size and from any longer one; every strict prefix is incomplete. */
static void test_parse_valid_every_prefix(void **state) {
  (void)state;
  char shown[1024], again[1024];
  for (size_t c = 0; c < sizeof valid / sizeof valid[0]; c++) {
    const char *in = valid[c].in;
    size_t n = valid[c].len, head = valid[c].head ? valid[c].head : n;
    int rc = parse_copy(in, n, SK_HTTP_HEAD_MAX, shown, sizeof shown);
    if (rc != (int)head || strcmp(shown, valid[c].want) != 0)
      fail_msg("case %zu: %d '%s', want %zu '%s'", c, rc, shown, head, valid[c].want);
    for (size_t k = 0; k < n; k++) {
      rc = parse_copy(in, k, SK_HTTP_HEAD_MAX, again, sizeof again);
      if (k < head && rc != SK_HTTP_INCOMPLETE)
        fail_msg("case %zu, prefix %zu: %d, want incomplete", c, k, rc);
      if (k >= head && (rc != (int)head || strcmp(again, shown) != 0))
        fail_msg("case %zu, prefix %zu: %d '%s'", c, k, rc, again);
    }
    /* The limit to the byte: a head of exactly max_head bytes fits; a
     * limit past INT_MAX is no limit. */
    assert_int_equal(parse_copy(in, n, SIZE_MAX, again, sizeof again), (int)head);
    assert_int_equal(parse_copy(in, n, head, again, sizeof again), (int)head);
    assert_string_equal(again, shown);
    assert_int_equal(parse_copy(in, n, head - 1, again, sizeof again), SK_HTTP_HEAD_TOO_BIG);
  }
}

/* Two heads in one buffer, as a pipelining client sends them: the caller
 * drops the first and parses the rest. */
static void test_parse_pipelined(void **state) {
  (void)state;
  static const char two[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                            "\r\nHEAD /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET";
  size_t n = sizeof two - 1;
  sk_http_request_t req;
  int first = sk_http_parse_request(two, n, SK_HTTP_HEAD_MAX, &req);
  assert_int_equal(first, 28);
  assert_memory_equal(req.target, "/1", 2);
  int second = sk_http_parse_request(two + first, n - (size_t)first, SK_HTTP_HEAD_MAX, &req);
  assert_int_equal(second, 2 + 18 + 24 + 2);
  assert_int_equal(req.method_len, 4);
  assert_memory_equal(req.method, "HEAD", 4);
  assert_int_equal(req.minor_version, 0);
  assert_int_equal(req.nheaders, 1);
  assert_true(sk_http_keep_alive(&req));
  size_t at = (size_t)first + (size_t)second;
  assert_int_equal(sk_http_parse_request(two + at, n - at, SK_HTTP_HEAD_MAX, &req),
                   SK_HTTP_INCOMPLETE);
}

/* ---- malformed heads ---------------------------------------------------------------- */

static const struct {
  const char *in;
  size_t len;
  int want;
  size_t at; /* the shortest prefix refused (the first bad byte + 1); 0: not checked */
} malformed[] = {
    /* line ends */
    {LIT("GET / HTTP/1.1\nHost: x\n\n"), SK_HTTP_BAD, 15},
    {LIT("GET / HTTP/1.1\r\nHost: x\n\r\n"), SK_HTTP_BAD, 24},
    {LIT("GET / HTTP/1.1\r\nHost: x\r\n\n"), SK_HTTP_BAD, 26},
    {LIT("GET / HTTP/1.1\r\nHost: x\r\r\n\r\n"), SK_HTTP_BAD, 25},
    {LIT("GET / HTTP/1.1\rHost: x\r\n\r\n"), SK_HTTP_BAD, 16},
    {LIT("GET / HTTP/1.1\r\nHost: x\r\n\rX"), SK_HTTP_BAD, 27},
    {LIT("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), SK_HTTP_BAD, 22},
    {LIT("GET / HTTP/1.1\r\nX: a\nb\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("\nGET / HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 1},
    {LIT("\r\r\nGET / HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 2},
    {LIT("\r\n\n"), SK_HTTP_BAD, 3},
    /* obsolete line folding, and whitespace before the first field */
    {LIT("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), SK_HTTP_BAD, 23},
    {LIT("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), SK_HTTP_BAD, 23},
    {LIT("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), SK_HTTP_BAD, 17},
    /* field names */
    {LIT("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("GET / HTTP/1.1\r\n: x\r\n\r\n"), SK_HTTP_BAD, 17},
    {LIT("GET / HTTP/1.1\r\nHost x\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("GET / HTTP/1.1\r\nHost\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("GET / HTTP/1.1\r\nHo\x01st: x\r\n\r\n"), SK_HTTP_BAD, 19},
    {LIT("GET / HTTP/1.1\r\nHo(st: x\r\n\r\n"), SK_HTTP_BAD, 19},
    {LIT("GET / HTTP/1.1\r\nH\xc3\xa9: x\r\n\r\n"), SK_HTTP_BAD, 18},
    {LIT("GET / HTTP/1.1\r\n\0Host: x\r\n\r\n"), SK_HTTP_BAD, 17},
    /* controls in values (HTAB is the one allowed) */
    {LIT("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("GET / HTTP/1.1\r\nX: a\x1b[31m\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), SK_HTTP_BAD, 21},
    {LIT("GET / HTTP/1.1\r\nX: \x0b\r\n\r\n"), SK_HTTP_BAD, 20},
    /* methods */
    {LIT(" GET / HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 1},
    {LIT("G(T / HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 2},
    {LIT("GET\t/ HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 4},
    {LIT("G\xc3\x89T / HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 2},
    {LIT("/ HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 1},
    {LIT("GET\r\n\r\n"), SK_HTTP_BAD, 4},
    {LIT("\0GET / HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 1},
    /* targets */
    {LIT("GET  / HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 5},
    {LIT("GET http:/h/ HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 13},
    {LIT("GET http:/// HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 13},
    {LIT("GET 1http://h/ HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 5},
    {LIT("CONNECT h:443 HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 14},
    {LIT("GET * HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 5},
    {LIT("OPTIONS *x HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 10},
    {LIT("GET /a\tb HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 7},
    {LIT("GET /\x7f HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 6},
    {LIT("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 9},
    {LIT("GET /\0 HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 6},
    {LIT("GET /\r\n\r\n"), SK_HTTP_BAD, 6}, /* HTTP/0.9 */
    {LIT("GET / \r\n\r\n"), SK_HTTP_BAD, 7},
    {LIT("GET /a b HTTP/1.1\r\n\r\n"), SK_HTTP_BAD, 8},
    /* versions: malformed is 400, well-formed but not 1.0 or 1.1 is 505 */
    {LIT("GET / HTTP/1.1 \r\n\r\n"), SK_HTTP_BAD, 15},
    {LIT("GET / HTTP/1.10\r\n\r\n"), SK_HTTP_BAD, 15},
    {LIT("GET / HTTP/1\r\n\r\n"), SK_HTTP_BAD, 13},
    {LIT("GET / HTTP/1.\r\n\r\n"), SK_HTTP_BAD, 14},
    {LIT("GET / http/1.1\r\n\r\n"), SK_HTTP_BAD, 7},
    {LIT("GET / HTTPS/1.1\r\n\r\n"), SK_HTTP_BAD, 11},
    {LIT("GET / HTTP/1.x\r\n\r\n"), SK_HTTP_BAD, 14},
    {LIT("GET / HTTP/11\r\n\r\n"), SK_HTTP_BAD, 13},
    {LIT("GET / HTTP/1.1\r\r\n\r\n"), SK_HTTP_BAD, 16},
    {LIT("GET / HTTP/2.0\r\n\r\n"), SK_HTTP_VERSION, 16},
    {LIT("GET / HTTP/1.2\r\n\r\n"), SK_HTTP_VERSION, 16},
    {LIT("GET / HTTP/0.9\r\nHost: x\r\n\r\n"), SK_HTTP_VERSION, 16},
    {LIT("GET / HTTP/3.0\r\n"), SK_HTTP_VERSION, 16},
    {LIT("GET / HTTP/9.9\r\n\r\n"), SK_HTTP_VERSION, 16},
};

/* Each malformed head is refused with its status, found at its first bad
 * byte: shorter prefixes are incomplete, longer ones give the same status. */
static void test_parse_malformed(void **state) {
  (void)state;
  char shown[1024];
  for (size_t c = 0; c < sizeof malformed / sizeof malformed[0]; c++) {
    const char *in = malformed[c].in;
    size_t n = malformed[c].len;
    int want = malformed[c].want;
    int rc = parse_copy(in, n, SK_HTTP_HEAD_MAX, shown, sizeof shown);
    if (rc != want)
      fail_msg("case %zu ('%.*s'): %d, want %d", c, (int)n, in, rc, want);
    size_t first = 0;
    for (size_t k = 0; k <= n; k++) {
      rc = parse_copy(in, k, SK_HTTP_HEAD_MAX, shown, sizeof shown);
      if (rc == want && !first)
        first = k;
      if (rc != (first ? want : SK_HTTP_INCOMPLETE))
        fail_msg("case %zu, prefix %zu: %d", c, k, rc);
    }
    if (malformed[c].at && first != malformed[c].at)
      fail_msg("case %zu: refused after %zu bytes, want %zu", c, first, malformed[c].at);
  }
}

/* 414 as soon as the target is one byte too long, whether or not the rest
 * has arrived; a target of exactly the limit is fine. */
static void test_parse_target_too_long(void **state) {
  (void)state;
  static char buf[SK_HTTP_TARGET_MAX + 64];
  char shown[SK_HTTP_TARGET_MAX + 64];
  memcpy(buf, "GET /", 5);
  memset(buf + 5, 'a', SK_HTTP_TARGET_MAX - 1);
  size_t n = 4 + SK_HTTP_TARGET_MAX;
  memcpy(buf + n, " HTTP/1.1\r\n\r\n", 13);
  assert_int_equal(parse_copy(buf, n + 13, SK_HTTP_HEAD_MAX, shown, sizeof shown), (int)n + 13);
  buf[n] = 'a'; /* 2049 bytes of target */
  assert_int_equal(parse_copy(buf, n, SK_HTTP_HEAD_MAX, shown, sizeof shown), SK_HTTP_INCOMPLETE);
  assert_int_equal(parse_copy(buf, n + 1, SK_HTTP_HEAD_MAX, shown, sizeof shown),
                   SK_HTTP_URI_TOO_LONG);
  memcpy(buf + n + 1, " HTTP/1.1\r\n\r\n", 13);
  assert_int_equal(parse_copy(buf, n + 14, SK_HTTP_HEAD_MAX, shown, sizeof shown),
                   SK_HTTP_URI_TOO_LONG);
  /* With a head limit below the target limit, the head limit speaks. */
  assert_int_equal(parse_copy(buf, n + 14, 1000, shown, sizeof shown), SK_HTTP_HEAD_TOO_BIG);
}

/* 431 when the head has not ended within max_head bytes: to the byte, for
 * the default limit and a small one; a request line still unfinished and
 * longer than SK_HTTP_TARGET_MAX at the limit is 414. */
static void test_parse_head_too_big(void **state) {
  (void)state;
  static char buf[SK_HTTP_HEAD_MAX + 256];
  char shown[512];
  /* One long field: the head is exactly SK_HTTP_HEAD_MAX bytes. */
  static const char start[] = "GET / HTTP/1.1\r\nX: ";
  size_t s = sizeof start - 1;
  memcpy(buf, start, s);
  memset(buf + s, 'v', SK_HTTP_HEAD_MAX - s - 4);
  memcpy(buf + SK_HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
  assert_int_equal(parse_copy(buf, SK_HTTP_HEAD_MAX, SK_HTTP_HEAD_MAX, shown, 1),
                   SK_HTTP_HEAD_MAX);
  /* One byte more and it is too big, known when SK_HTTP_HEAD_MAX bytes
   * are in and the end is not among them. */
  memset(buf + s, 'v', SK_HTTP_HEAD_MAX - s - 3);
  memcpy(buf + SK_HTTP_HEAD_MAX - 3, "\r\n\r\n", 4);
  assert_int_equal(parse_copy(buf, SK_HTTP_HEAD_MAX - 1, SK_HTTP_HEAD_MAX, shown, 1),
                   SK_HTTP_INCOMPLETE);
  assert_int_equal(parse_copy(buf, SK_HTTP_HEAD_MAX, SK_HTTP_HEAD_MAX, shown, 1),
                   SK_HTTP_HEAD_TOO_BIG);
  assert_int_equal(parse_copy(buf, SK_HTTP_HEAD_MAX + 1, SK_HTTP_HEAD_MAX, shown, 1),
                   SK_HTTP_HEAD_TOO_BIG);
  /* Empty lines count: a peer cannot send CRLFs forever. */
  for (size_t i = 0; i < SK_HTTP_HEAD_MAX; i += 2)
    memcpy(buf + i, "\r\n", 2);
  assert_int_equal(parse_copy(buf, SK_HTTP_HEAD_MAX - 2, SK_HTTP_HEAD_MAX, shown, 1),
                   SK_HTTP_INCOMPLETE);
  assert_int_equal(parse_copy(buf, SK_HTTP_HEAD_MAX, SK_HTTP_HEAD_MAX, shown, 1),
                   SK_HTTP_HEAD_TOO_BIG);
  /* A small limit. */
  static const char small[] = "GET /abc HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t sn = sizeof small - 1;
  assert_int_equal(parse_copy(small, sn, sn, shown, sizeof shown), (int)sn);
  assert_int_equal(parse_copy(small, sn - 1, sn - 1, shown, sizeof shown), SK_HTTP_HEAD_TOO_BIG);
  assert_int_equal(parse_copy(small, 5, 6, shown, sizeof shown), SK_HTTP_INCOMPLETE);
  assert_int_equal(parse_copy(small, 6, 6, shown, sizeof shown), SK_HTTP_HEAD_TOO_BIG);
  assert_int_equal(parse_copy(small, 0, 0, shown, sizeof shown), SK_HTTP_HEAD_TOO_BIG);
  /* An endless method: the request line is over SK_HTTP_TARGET_MAX when
   * the limit is reached, so the answer is 414; with a limit below
   * SK_HTTP_TARGET_MAX it is 431. */
  memset(buf, 'A', SK_HTTP_HEAD_MAX);
  assert_int_equal(parse_copy(buf, SK_HTTP_HEAD_MAX, SK_HTTP_HEAD_MAX, shown, 1),
                   SK_HTTP_URI_TOO_LONG);
  assert_int_equal(parse_copy(buf, 100, 100, shown, 1), SK_HTTP_HEAD_TOO_BIG);
}

/* 32 fields are fine; the 33rd is 431 as soon as its first byte arrives. */
static void test_parse_too_many_headers(void **state) {
  (void)state;
  static char buf[2048];
  char shown[2048];
  size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < SK_HTTP_HEADERS_MAX; i++)
    n += (size_t)sprintf(buf + n, "X-%d: %d\r\n", i, i);
  memcpy(buf + n, "\r\n", 2);
  assert_int_equal(parse_copy(buf, n + 2, SK_HTTP_HEAD_MAX, shown, sizeof shown), (int)n + 2);
  assert_non_null(strstr(shown, "|X-31=31|"));
  memcpy(buf + n, "Y: 1\r\n\r\n", 8);
  assert_int_equal(parse_copy(buf, n, SK_HTTP_HEAD_MAX, shown, sizeof shown), SK_HTTP_INCOMPLETE);
  assert_int_equal(parse_copy(buf, n + 1, SK_HTTP_HEAD_MAX, shown, sizeof shown),
                   SK_HTTP_HEAD_TOO_BIG);
  assert_int_equal(parse_copy(buf, n + 8, SK_HTTP_HEAD_MAX, shown, sizeof shown),
                   SK_HTTP_HEAD_TOO_BIG);
}

/* ---- helpers ------------------------------------------------------------------------ */

static void test_name_eq(void **state) {
  (void)state;
  assert_true(sk_http_name_eq("Host", 4, "host"));
  assert_true(sk_http_name_eq("HOST", 4, "Host"));
  assert_true(sk_http_name_eq("content-LENGTH", 14, "Content-Length"));
  assert_true(sk_http_name_eq("", 0, ""));
  assert_false(sk_http_name_eq("Hos", 3, "Host"));
  assert_false(sk_http_name_eq("Hostx", 5, "Host"));
  assert_false(sk_http_name_eq("Host", 3, "Host"));
  assert_false(sk_http_name_eq("a", 1, ""));
  assert_false(sk_http_name_eq("Hist", 4, "Host"));
  /* only A-Z fold: '[' is not '{', '@' is not '`' */
  assert_false(sk_http_name_eq("[", 1, "{"));
  assert_false(sk_http_name_eq("@", 1, "`"));
  assert_false(sk_http_name_eq("\xc9", 1, "\xe9"));
  assert_false(sk_http_name_eq("Ho\0t", 4, "Ho"));
}

static void test_header_find(void **state) {
  (void)state;
  sk_http_request_t req;
  parse_ok("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nhost: b\r\nHOST: c\r\n\r\n", &req);
  size_t count = 99;
  const sk_http_header_t *h = sk_http_header_find(&req, "Host", &count);
  assert_ptr_equal(h, &req.headers[0]);
  assert_int_equal(count, 3);
  h = sk_http_header_find(&req, "x", &count);
  assert_ptr_equal(h, &req.headers[1]);
  assert_int_equal(count, 1);
  assert_null(sk_http_header_find(&req, "Sec-WebSocket-Key", &count));
  assert_int_equal(count, 0);
  assert_null(sk_http_header_find(&req, "Hos", NULL));
  assert_ptr_equal(sk_http_header_find(&req, "HOST", NULL), &req.headers[0]);
}

static void test_has_token(void **state) {
  (void)state;
  static const struct {
    const char *value, *token;
    int want;
  } cases[] = {
      {"keep-alive, Upgrade", "upgrade", 1},
      {"Upgrade", "upgrade", 1},
      {"  upgrade  ", "upgrade", 1},
      {"keep-alive,upgrade", "upgrade", 1},
      {",, upgrade ,,", "upgrade", 1},
      {"keep-alive, \tUPGRADE\t, close", "upgrade", 1},
      {"keep-alive, \tUPGRADE\t, close", "close", 1},
      {"keep-alive, \tUPGRADE\t, close", "keep-alive", 1},
      {"keep-alive", "upgrade", 0},
      {"upgrade-insecure", "upgrade", 0},
      {"xupgrade", "upgrade", 0},
      {"upgrad", "upgrade", 0},
      {"up grade", "upgrade", 0},
      {"upgrade;q=1", "upgrade", 0},
      {"", "upgrade", 0},
      {",", "upgrade", 0},
      {"websocket", "websocket", 1},
      {"h2c, WebSocket", "websocket", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (sk_http_has_token(cases[i].value, strlen(cases[i].value), cases[i].token) !=
        cases[i].want)
      fail_msg("'%s' holds '%s': want %d", cases[i].value, cases[i].token, cases[i].want);
  /* the length is the end, not a NUL */
  assert_false(sk_http_has_token("close", 4, "close"));
  assert_true(sk_http_has_token("close, x", 5, "close"));
}

static void test_body_length(void **state) {
  (void)state;
  static const struct {
    const char *fields; /* the header fields, each ending in CRLF */
    int want;
    uint64_t len;
  } cases[] = {
      {"", 0, 0},
      {"Host: x\r\n", 0, 0},
      {"Content-Length: 42\r\n", 0, 42},
      {"Content-Length: 0\r\n", 0, 0},
      {"content-length:7\r\n", 0, 7},
      {"Content-Length: 007\r\n", 0, 7},
      {"Content-Length: 5\r\nContent-Length: 5\r\n", 0, 5},
      {"Content-Length: 5\r\nX: y\r\ncontent-length: 5 \r\n", 0, 5},
      {"Content-Length: 18446744073709551615\r\n", 0, UINT64_MAX},
      {"Content-Length: 18446744073709551616\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 99999999999999999999999\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 5\r\nContent-Length: 6\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 5\r\nContent-Length: 05\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 5\r\nContent-Length: \r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 5, 5\r\n", SK_HTTP_BAD, 0},
      {"Content-Length:\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: -1\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: +5\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 0x10\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 1 2\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 12a\r\n", SK_HTTP_BAD, 0},
      {"Transfer-Encoding: chunked\r\n", SK_HTTP_BAD, 0},
      {"transfer-encoding: identity\r\n", SK_HTTP_BAD, 0},
      {"Transfer-Encoding:\r\n", SK_HTTP_BAD, 0},
      {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", SK_HTTP_BAD, 0},
      {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", SK_HTTP_BAD, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char head[256];
    snprintf(head, sizeof head, "POST / HTTP/1.1\r\n%s\r\n", cases[i].fields);
    sk_http_request_t req;
    parse_ok(head, &req);
    uint64_t len = 12345;
    int rc = sk_http_body_length(&req, &len);
    if (rc != cases[i].want || (rc == 0 && len != cases[i].len))
      fail_msg("'%s': %d, %llu", cases[i].fields, rc, (unsigned long long)len);
  }
}

static void test_keep_alive(void **state) {
  (void)state;
  static const struct {
    const char *head;
    int want;
  } cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", 1},
      {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
      {"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", 0},
      {"GET / HTTP/1.1\r\nConnection: Upgrade\r\nConnection: close\r\n\r\n", 0},
      {"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", 1},
      {"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", 1},
      {"GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n", 1},
      {"GET / HTTP/1.0\r\n\r\n", 0},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1},
      {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0},
      {"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_http_request_t req;
    parse_ok(cases[i].head, &req);
    if (sk_http_keep_alive(&req) != cases[i].want)
      fail_msg("'%s': want %d", cases[i].head, cases[i].want);
  }
}

static void test_reason(void **state) {
  (void)state;
  assert_string_equal(sk_http_reason(200), "OK");
  assert_string_equal(sk_http_reason(101), "Switching Protocols");
  assert_string_equal(sk_http_reason(400), "Bad Request");
  assert_string_equal(sk_http_reason(404), "Not Found");
  assert_string_equal(sk_http_reason(414), "URI Too Long");
  assert_string_equal(sk_http_reason(426), "Upgrade Required");
  assert_string_equal(sk_http_reason(431), "Request Header Fields Too Large");
  assert_string_equal(sk_http_reason(505), "HTTP Version Not Supported");
  assert_string_equal(sk_http_reason(-SK_HTTP_URI_TOO_LONG), "URI Too Long");
  assert_string_equal(sk_http_reason(299), "Unknown");
  assert_string_equal(sk_http_reason(0), "Unknown");
  assert_string_equal(sk_http_reason(-404), "Unknown");
}

/* ---- the Host header ------------------------------------------------------------------ */

/* Parses s from a buffer of exactly its length (ASan sees a read past it). */
static int host_parse(const char *s, sk_http_host_t *h) {
  size_t n = strlen(s);
  char *buf = malloc(n ? n : 1);
  assert_non_null(buf);
  memcpy(buf, s, n);
  int r = sk_http_host_parse(buf, n, h);
  if (r == 0) { /* point into s, as buf goes */
    assert_true(h->name >= buf && h->name + h->name_len <= buf + n);
    h->name = s + (h->name - buf);
  }
  free(buf);
  return r;
}

static void test_host_parse(void **state) {
  (void)state;
  static const struct {
    const char *in;
    sk_http_host_kind_t kind;
    const char *name;
    const char *addr; /* inet_pton's text of the address, for the two IP kinds */
    int port;
  } ok[] = {
      {"chat.example:8080", SK_HTTP_HOST_NAME, "chat.example", NULL, 8080},
      {"chat.example", SK_HTTP_HOST_NAME, "chat.example", NULL, -1},
      {"chat.example:", SK_HTTP_HOST_NAME, "chat.example", NULL, -1},
      {"localhost:0", SK_HTTP_HOST_NAME, "localhost", NULL, 0},
      {"a_b~c-d.e:65535", SK_HTTP_HOST_NAME, "a_b~c-d.e", NULL, 65535},
      {"x!$&'()*+,;=y", SK_HTTP_HOST_NAME, "x!$&'()*+,;=y", NULL, -1},
      {"caf%C3%A9.example:00080", SK_HTTP_HOST_NAME, "caf%C3%A9.example", NULL, 80},
      {"", SK_HTTP_HOST_NAME, "", NULL, -1},
      {"01.2.3.4", SK_HTTP_HOST_NAME, "01.2.3.4", NULL, -1},   /* leading zero: a name */
      {"1.2.3.4.5", SK_HTTP_HOST_NAME, "1.2.3.4.5", NULL, -1},
      {"256.1.1.1", SK_HTTP_HOST_NAME, "256.1.1.1", NULL, -1},
      {"10.200.0.1:6680", SK_HTTP_HOST_IPV4, "10.200.0.1", "10.200.0.1", 6680},
      {"0.0.0.0", SK_HTTP_HOST_IPV4, "0.0.0.0", "0.0.0.0", -1},
      {"255.255.255.255:1", SK_HTTP_HOST_IPV4, "255.255.255.255", "255.255.255.255", 1},
      {"[::1]:6680", SK_HTTP_HOST_IPV6, "::1", "::1", 6680},
      {"[::]", SK_HTTP_HOST_IPV6, "::", "::", -1},
      {"[2001:DB8::a:1]:", SK_HTTP_HOST_IPV6, "2001:DB8::a:1", "2001:db8::a:1", -1},
      {"[1:2:3:4:5:6:7:8]", SK_HTTP_HOST_IPV6, "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8", -1},
      {"[1:2:3:4:5:6:7::]", SK_HTTP_HOST_IPV6, "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", -1},
      {"[::2:3:4:5:6:7:8]", SK_HTTP_HOST_IPV6, "::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8", -1},
      {"[1::]:9", SK_HTTP_HOST_IPV6, "1::", "1::", 9},
      {"[::ffff:10.200.0.1]:80", SK_HTTP_HOST_IPV6, "::ffff:10.200.0.1", "::ffff:10.200.0.1", 80},
      {"[1:2:3:4:5:6:1.2.3.4]", SK_HTTP_HOST_IPV6, "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304",
       -1},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    sk_http_host_t h;
    if (host_parse(ok[i].in, &h) != 0)
      fail_msg("'%s' refused", ok[i].in);
    if (h.kind != ok[i].kind || h.port != ok[i].port || h.name_len != strlen(ok[i].name) ||
        memcmp(h.name, ok[i].name, h.name_len) != 0)
      fail_msg("'%s': kind %d name '%.*s' port %d", ok[i].in, (int)h.kind, (int)h.name_len,
               h.name, h.port);
    if (ok[i].addr) {
      uint8_t want[16];
      int v6 = ok[i].kind == SK_HTTP_HOST_IPV6;
      assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, ok[i].addr, want), 1);
      if (memcmp(h.addr, want, v6 ? 16 : 4) != 0)
        fail_msg("'%s': wrong address bytes", ok[i].in);
    }
  }
  static const char *const bad[] = {
      "a b",          "a b:80",        "a\tb",          "user@chat.example", "chat.example/x",
      "chat.example?", "chat.example#", "[::1",          "[::1]x",           "[::1]:80x",
      "::1",          "a:b:c",          "chat:80:80",    "chat:-1",          "chat:65536",
      "chat:99999999999", "chat: 80",   "%4",            "%zz.example",      "%",
      "[]",           "[:]",            "[:::]",         "[1:::2]",          "[1::2::3]",
      "[:1]",         "[1:]",           "[12345::]",     "[1:2:3:4:5:6:7:8:9]",
      "[1:2:3:4:5:6:7:8::]", "[1:2:3:4::5:6:7:8]", "[1:2:3:4:5:6:7:1.2.3.4]",
      "[::1.2.3]",    "[::1.2.3.04]",   "[::256.1.1.1]", "[::1.2.3.4:5]",    "[fe80::1%25eth0]",
      "[v1.x]",       "[g::1]",         "\x80.example",  "caf\xc3\xa9.example",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sk_http_host_t h;
    if (host_parse(bad[i], &h) != SK_HTTP_BAD)
      fail_msg("'%s' accepted", bad[i]);
  }
}

/* Every IP literal of up to 9 characters over ":0f1." compared with
 * inet_pton: our parser takes exactly what it takes, with the same bytes. */
static void test_host_ipv6_against_inet_pton(void **state) {
  (void)state;
  static const char alphabet[] = ":0f1.";
  char text[16], host[20];
  unsigned long tried = 0;
  for (size_t len = 0; len <= 9; len++) {
    size_t combos = 1;
    for (size_t k = 0; k < len; k++)
      combos *= sizeof alphabet - 1;
    for (size_t c = 0; c < combos; c++) {
      size_t x = c;
      for (size_t k = 0; k < len; k++, x /= sizeof alphabet - 1)
        text[k] = alphabet[x % (sizeof alphabet - 1)];
      text[len] = '\0';
      snprintf(host, sizeof host, "[%s]", text);
      uint8_t want[16];
      sk_http_host_t h;
      int theirs = inet_pton(AF_INET6, text, want) == 1;
      int ours = host_parse(host, &h) == 0;
      if (ours != theirs || (ours && memcmp(h.addr, want, 16) != 0))
        fail_msg("'%s': ours %d, inet_pton %d", host, ours, theirs);
      tried++;
    }
  }
  assert_true(tried > 2000000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_valid_every_prefix),
      cmocka_unit_test(test_parse_pipelined),
      cmocka_unit_test(test_parse_malformed),
      cmocka_unit_test(test_parse_target_too_long),
      cmocka_unit_test(test_parse_head_too_big),
      cmocka_unit_test(test_parse_too_many_headers),
      cmocka_unit_test(test_name_eq),
      cmocka_unit_test(test_header_find),
      cmocka_unit_test(test_has_token),
      cmocka_unit_test(test_body_length),
      cmocka_unit_test(test_keep_alive),
      cmocka_unit_test(test_reason),
      cmocka_unit_test(test_host_parse),
      cmocka_unit_test(test_host_ipv6_against_inet_pton),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
