/* tests/fuzz/fuzz_http.c - the HTTP request-head parser (sockit/http.h) and
 * the WebSocket handshake checks (sockit/ws.h) on arbitrary bytes.
 *
 * The input is what a client sends on one connection; heads are parsed one
 * after another as a server does with pipelined requests, once with the
 * default limit and once with a small limit drawn from the input.
 * Properties checked (abort() on a violation):
 *  - splits: each prefix of the unparsed bytes, parsed from a buffer of
 *    exactly its size, says "incomplete" or what the whole says, and once
 *    it says something it keeps saying it; a head found in a prefix is the
 *    same head, field for field, as the one found in the whole;
 *  - a parsed head lies inside the buffer and keeps the rules: length at
 *    most the limit, ending in CRLF CRLF, preceded only by empty lines; a
 *    token method, an origin-form target (or "*" for OPTIONS) of at most
 *    SK_HTTP_TARGET_MAX visible ASCII bytes, HTTP/1.0 or 1.1; at most
 *    SK_HTTP_HEADERS_MAX fields, token names, values without controls
 *    other than HTAB and without spaces at either end;
 *  - the helpers agree with plain reference code: field counts, token
 *    lists, the body length, keep-alive; a 101 from sk_ws_check_upgrade
 *    only for a GET over HTTP/1.1 with one Host and one well-formed key;
 *    an Origin host lies inside its value; a Host taken apart
 *    (sk_http_host_parse) lies inside its value, which has no space, tab,
 *    '@' or '/', and its port is in range.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/http.h"
#include "sockit/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz_http: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

#define ALL_PREFIXES_MAX 256 /* longer inputs: a sample of prefixes */
#define SAMPLED_PREFIXES 64

static uint32_t rng_state;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

static int tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static unsigned char fold(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Reference: name[0..len) equals lit, ASCII case ignored. */
static int ref_eq(const char *name, size_t len, const char *lit) {
  if (strlen(lit) != len)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (fold((unsigned char)name[i]) != fold((unsigned char)lit[i]))
      return 0;
  return 1;
}

/* Reference: the comma-separated list v[0..n) holds token. */
static int ref_token(const char *v, size_t n, const char *token) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && v[i] != ',')
      continue;
    size_t a = start, b = i;
    while (a < b && (v[a] == ' ' || v[a] == '\t'))
      a++;
    while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
      b--;
    if (ref_eq(v + a, b - a, token))
      return 1;
    start = i + 1;
  }
  return 0;
}

static int any_token(const sk_http_request_t *r, const char *name, const char *token) {
  for (size_t i = 0; i < r->nheaders; i++)
    if (ref_eq(r->headers[i].name, r->headers[i].name_len, name) &&
        ref_token(r->headers[i].value, r->headers[i].value_len, token))
      return 1;
  return 0;
}

/* 1 if a (pointing into base_a) and b (into base_b) are the same head. */
static int same_head(const sk_http_request_t *a, const char *base_a, const sk_http_request_t *b,
                     const char *base_b) {
  if (a->method - base_a != b->method - base_b || a->method_len != b->method_len ||
      a->target - base_a != b->target - base_b || a->target_len != b->target_len ||
      a->minor_version != b->minor_version || a->nheaders != b->nheaders)
    return 0;
  for (size_t i = 0; i < a->nheaders; i++) {
    const sk_http_header_t *x = &a->headers[i], *y = &b->headers[i];
    if (x->name - base_a != y->name - base_b || x->name_len != y->name_len ||
        x->value - base_a != y->value - base_b || x->value_len != y->value_len)
      return 0;
  }
  return 1;
}

/* The rules a parsed head p[0..rc) keeps (file comment). */
static void check_head(const char *p, int rc, size_t max, const sk_http_request_t *r) {
  const char *end = p + rc;
  CHECK(rc >= 16 && (size_t)rc <= max); /* "X / HTTP/1.1" CRLF CRLF is the shortest */
  CHECK(memcmp(end - 4, "\r\n\r\n", 4) == 0);
  CHECK(r->method >= p && r->method_len >= 1 && r->method + r->method_len < end);
  for (const char *q = p; q < r->method; q += 2)
    CHECK(q[0] == '\r' && q[1] == '\n');
  for (size_t i = 0; i < r->method_len; i++)
    CHECK(tchar((unsigned char)r->method[i]));
  CHECK(r->target == r->method + r->method_len + 1 && r->target[-1] == ' ');
  CHECK(r->target_len >= 1 && r->target_len <= SK_HTTP_TARGET_MAX);
  CHECK(r->target[0] == '/' || (r->target_len == 1 && r->target[0] == '*' &&
                                r->method_len == 7 && memcmp(r->method, "OPTIONS", 7) == 0));
  for (size_t i = 0; i < r->target_len; i++)
    CHECK(r->target[i] > ' ' && r->target[i] < 0x7F);
  CHECK(memcmp(r->target + r->target_len, " HTTP/1.", 8) == 0);
  CHECK(r->minor_version == r->target[r->target_len + 8] - '0');
  CHECK(r->minor_version == 0 || r->minor_version == 1);
  CHECK(r->nheaders <= SK_HTTP_HEADERS_MAX);
  const char *after = r->target + r->target_len + 11; /* " HTTP/1.x\r\n" */
  for (size_t i = 0; i < r->nheaders; i++) {
    const sk_http_header_t *h = &r->headers[i];
    CHECK(h->name == after && h->name_len >= 1);
    CHECK(h->value >= h->name + h->name_len + 1 && h->value + h->value_len + 2 < end);
    CHECK(h->name[h->name_len] == ':');
    for (const char *q = h->name + h->name_len + 1; q < h->value; q++)
      CHECK(*q == ' ' || *q == '\t');
    for (size_t k = 0; k < h->name_len; k++)
      CHECK(tchar((unsigned char)h->name[k]));
    for (size_t k = 0; k < h->value_len; k++) {
      unsigned char c = (unsigned char)h->value[k];
      CHECK(c == '\t' || (c >= ' ' && c != 0x7F));
    }
    if (h->value_len)
      CHECK(h->value[0] != ' ' && h->value[0] != '\t' && h->value[h->value_len - 1] != ' ' &&
            h->value[h->value_len - 1] != '\t');
    const char *q = h->value + h->value_len;
    while (*q == ' ' || *q == '\t')
      q++;
    CHECK(q[0] == '\r' && q[1] == '\n');
    after = q + 2;
  }
  CHECK(after == end - 2);
}

/* The helpers against the references, on a parsed head. */
static void check_helpers(const sk_http_request_t *r) {
  static char name[SK_HTTP_HEAD_MAX + 1];
  for (size_t i = 0; i < r->nheaders; i++) {
    const sk_http_header_t *h = &r->headers[i];
    memcpy(name, h->name, h->name_len);
    name[h->name_len] = '\0';
    size_t count = 0, ref = 0;
    const sk_http_header_t *first = sk_http_header_find(r, name, &count);
    for (size_t k = 0; k < r->nheaders; k++)
      ref += ref_eq(r->headers[k].name, r->headers[k].name_len, name);
    CHECK(count == ref && first && first <= h);
    CHECK(sk_http_name_eq(first->name, first->name_len, name));
    static const char *const tokens[] = {"close", "upgrade", "keep-alive", "websocket"};
    for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
      CHECK(sk_http_has_token(h->value, h->value_len, tokens[t]) ==
            ref_token(h->value, h->value_len, tokens[t]));
    const char *host;
    size_t host_len;
    if (sk_ws_origin_host(h->value, h->value_len, &host, &host_len) == 0) {
      CHECK(host > h->value && host + host_len == h->value + h->value_len && host_len >= 1);
      CHECK(!memchr(host, '/', host_len) && !memchr(host, '@', host_len) &&
            !memchr(host, ' ', host_len) && host[-1] == '/' && host[-2] == '/' && host[-3] == ':');
    }
    sk_http_host_t hp;
    if (sk_http_host_parse(h->value, h->value_len, &hp) == 0) {
      CHECK(hp.name >= h->value && hp.name + hp.name_len <= h->value + h->value_len);
      CHECK(hp.port >= -1 && hp.port <= 65535);
      CHECK(!memchr(h->value, ' ', h->value_len) && !memchr(h->value, '@', h->value_len) &&
            !memchr(h->value, '/', h->value_len) && !memchr(h->value, '\t', h->value_len));
      CHECK(hp.kind != SK_HTTP_HOST_IPV6 ||
            (h->value[0] == '[' && hp.name == h->value + 1 && hp.name[hp.name_len] == ']'));
    }
  }
  /* Body length: no Transfer-Encoding, and every Content-Length the same
   * non-empty string of digits that fits in 64 bits. */
  uint64_t len = 7, want = 0;
  int ok = 1;
  const sk_http_header_t *cl = NULL;
  for (size_t i = 0; i < r->nheaders; i++) {
    const sk_http_header_t *h = &r->headers[i];
    if (ref_eq(h->name, h->name_len, "Transfer-Encoding"))
      ok = 0;
    if (!ref_eq(h->name, h->name_len, "Content-Length"))
      continue;
    if (cl && (cl->value_len != h->value_len || memcmp(cl->value, h->value, h->value_len) != 0))
      ok = 0;
    cl = h;
  }
  if (ok && cl) {
    ok = cl->value_len >= 1;
    for (size_t k = 0; ok && k < cl->value_len; k++) {
      unsigned d = (unsigned char)cl->value[k] - '0';
      ok = d <= 9 && !__builtin_mul_overflow(want, 10, &want) &&
           !__builtin_add_overflow(want, d, &want);
    }
  }
  int rc = sk_http_body_length(r, &len);
  CHECK(rc == (ok ? 0 : SK_HTTP_BAD));
  CHECK(!ok || len == want);
  /* Keep-alive. */
  int close = any_token(r, "Connection", "close");
  int keep = any_token(r, "Connection", "keep-alive");
  CHECK(sk_http_keep_alive(r) == (!close && (r->minor_version == 1 || keep)));
  /* The WebSocket handshake. */
  char accept[SK_WS_ACCEPT_LEN + 1];
  const char *why = NULL;
  int st = sk_ws_check_upgrade(r, accept, &why);
  CHECK(why != NULL);
  CHECK(st == 101 || st == 400 || st == 426);
  if (st == 101) {
    size_t n;
    CHECK(r->method_len == 3 && memcmp(r->method, "GET", 3) == 0 && r->minor_version == 1);
    sk_http_header_find(r, "Host", &n);
    CHECK(n == 1);
    const sk_http_header_t *k = sk_http_header_find(r, "Sec-WebSocket-Key", &n);
    CHECK(n == 1 && k->value_len == 24 && memcmp(k->value + 22, "==", 2) == 0);
    const sk_http_header_t *v = sk_http_header_find(r, "Sec-WebSocket-Version", &n);
    CHECK(n == 1 && v->value_len == 2 && memcmp(v->value, "13", 2) == 0);
    CHECK(any_token(r, "Upgrade", "websocket") && any_token(r, "Connection", "upgrade"));
    CHECK(strlen(accept) == SK_WS_ACCEPT_LEN && accept[SK_WS_ACCEPT_LEN - 1] == '=');
  } else {
    CHECK(accept[0] == '\0');
  }
}

/* Parses p[0..k) from a buffer of exactly k bytes; *same says whether a
 * head found there is `whole` (found in p[0..n)). */
static int parse_prefix(const char *p, size_t k, size_t max, const sk_http_request_t *whole,
                        int *same) {
  char *copy = malloc(k ? k : 1);
  CHECK(copy);
  if (k)
    memcpy(copy, p, k);
  sk_http_request_t r;
  int rc = sk_http_parse_request(copy, k, max, &r);
  *same = rc > 0 && same_head(&r, copy, whole, p);
  free(copy);
  return rc;
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

/* The split property for the head at p[0..n), whose whole result is rc. */
static void check_prefixes(const char *p, size_t n, size_t max, int rc,
                           const sk_http_request_t *whole) {
  static size_t ks[ALL_PREFIXES_MAX + SAMPLED_PREFIXES + 8];
  size_t nk = 0;
  size_t upto = rc > 0 ? (size_t)rc : n; /* past a head's end, all prefixes say the same */
  if (upto <= ALL_PREFIXES_MAX) {
    for (size_t k = 0; k <= upto; k++)
      ks[nk++] = k;
    if (n > upto)
      ks[nk++] = n;
  } else {
    for (size_t i = 0; i < SAMPLED_PREFIXES; i++)
      ks[nk++] = rng() % (n + 1);
    size_t edges[] = {0, n, max - 1, max, max + 1, (size_t)rc - 1, (size_t)rc};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
      if (edges[i] <= n)
        ks[nk++] = edges[i];
    qsort(ks, nk, sizeof ks[0], cmp_size);
  }
  int said = 0;
  for (size_t i = 0; i < nk; i++) {
    int same;
    int r = parse_prefix(p, ks[i], max, whole, &same);
    if (rc > 0) {
      CHECK(ks[i] < (size_t)rc ? r == SK_HTTP_INCOMPLETE : r == rc && same);
    } else if (said) {
      CHECK(r == rc);
    } else {
      CHECK(r == SK_HTTP_INCOMPLETE || r == rc);
      said = r == rc && rc != SK_HTTP_INCOMPLETE;
    }
  }
}

/* Parses the heads of the stream one after the other. */
static void run(const char *data, size_t size, size_t max) {
  size_t off = 0;
  for (int heads = 0; heads < 64; heads++) {
    sk_http_request_t r;
    int rc = sk_http_parse_request(data + off, size - off, max, &r);
    CHECK(rc == SK_HTTP_INCOMPLETE || rc == SK_HTTP_BAD || rc == SK_HTTP_URI_TOO_LONG ||
          rc == SK_HTTP_HEAD_TOO_BIG || rc == SK_HTTP_VERSION ||
          (rc > 0 && (size_t)rc <= size - off));
    if (rc == SK_HTTP_INCOMPLETE)
      CHECK(size - off < max);
    check_prefixes(data + off, size - off, max, rc, &r);
    if (rc <= 0)
      return;
    check_head(data + off, rc, max, &r);
    check_helpers(&r);
    off += (size_t)rc;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; i++)
    h = (h ^ data[i]) * 16777619u;
  rng_state = h;
  run((const char *)data, size, SK_HTTP_HEAD_MAX);
  run((const char *)data, size, 1 + h % 300);
  return 0;
}
