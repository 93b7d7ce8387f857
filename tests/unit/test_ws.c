/* tests/unit/test_ws.c - the WebSocket protocol (sockit/ws.h).
 *
 * Handshake: the accept key of RFC 6455 section 1.3, keys that are not
 * base64 of 16 bytes, a table of upgrade requests (good ones, and each way
 * of being wrong with its status), Origin values. UTF-8: a table of valid
 * and invalid sequences split at every byte, and every 1-, 2- and 3-byte
 * string checked against a plain reference decoder. Decoder: every stream
 * below is decoded whole and again fed in small pieces, from buffers of
 * exactly the bytes given (so ASan sees any read past them), and must give
 * the same events; the RFC's examples, masking in both modes, the three
 * length forms, each rule of the protocol with its close code, found from
 * the header before the payload, and every prefix of a frame with the
 * *need it reports. Encoder: the header forms byte for byte, round trips
 * through the decoder in both directions, masking in pieces, close
 * payloads cut at a character boundary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/ws.h"

#include "../utf8_ref.h"

#define LIT(s) s, sizeof s - 1
#define FIN 0x80

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d}; /* the RFC's examples' key */

/* ---- the opening handshake ---------------------------------------------------------- */

/* RFC 6455 section 1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" gives the
 * SHA-1 b37a4f2c...59 45 b2 be c4 ea, so "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=". */
static void test_accept_key(void **state) {
  (void)state;
  char accept[SK_WS_ACCEPT_LEN + 1];
  assert_int_equal(sk_ws_accept_key(LIT("dGhlIHNhbXBsZSBub25jZQ=="), accept), 0);
  assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert_int_equal(sk_ws_accept_key(LIT("wDqumtseNBJdhkihL6PW7w=="), accept), 0);
  assert_string_equal(accept, "0FFP+2nmNIf/h+4BP36k9uzrYGk=");
  assert_int_equal(sk_ws_accept_key(LIT("AAAAAAAAAAAAAAAAAAAAAA=="), accept), 0);
  assert_string_equal(accept, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
  assert_int_equal(sk_ws_accept_key(LIT("/+/+/+/+/+/+/+/+/+/+/w=="), accept), 0);
  static const char *const bad[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
      "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
      "dGhlIHNhbXBsZSBub25jZQAA",  /* no padding */
      "dGhlIHNhbXBsZSBub25jZ===",  /* 15 bytes and a bit */
      "dGhlIHNhbXBsZSBub25jZR==",  /* padding bits not zero */
      "dGhlIHNhbXBsZSBub25jZf==",
      "dGhlIHNhbXBs ZSBub25jZ==",  /* a space */
      "dGhlIHNhbXBsZSBub25jZ-==",  /* base64url */
      "dGhlIHNhbXBsZSBub25=ZQ==",
      "dGhlIHNhbXBsZSBub25jZQ\r\n",
      "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    strcpy(accept, "junk");
    if (sk_ws_accept_key(bad[i], strlen(bad[i]), accept) != SK_EBADINPUT)
      fail_msg("'%s' accepted", bad[i]);
    assert_string_equal(accept, "");
  }
  assert_int_equal(sk_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ\0=", 24, accept), SK_EBADINPUT);
}

#define HOST "Host: server.example.com\r\n"
#define UPG "Upgrade: websocket\r\n"
#define CONN "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"
#define GET "GET /chat HTTP/1.1\r\n"

static void test_check_upgrade(void **state) {
  (void)state;
  static const struct {
    const char *head;
    int want;
    const char *why;
  } cases[] = {
      {GET HOST UPG CONN KEY "Origin: http://example.com\r\n" VER "\r\n", 101, ""},
      {GET HOST "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" KEY VER "\r\n", 101,
       ""},
      {GET HOST "upgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: "
                "dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
       101, ""},
      {GET HOST UPG "Connection: keep-alive\r\nConnection: upgrade\r\n" KEY VER "\r\n", 101, ""},
      {GET HOST "Upgrade: h2c\r\nUpgrade: websocket\r\n" CONN KEY VER "\r\n", 101, ""},
      /* the version: 426 */
      {GET HOST UPG CONN KEY "Sec-WebSocket-Version: 8\r\n\r\n", 426, "not 13"},
      {GET HOST UPG CONN KEY "\r\n", 426, "no Sec-WebSocket-Version"},
      {GET HOST UPG CONN KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n", 426, "not 13"},
      {GET HOST UPG CONN KEY VER VER "\r\n", 426, "not 13"},
      {GET HOST UPG CONN KEY "Sec-WebSocket-Version: 013\r\n\r\n", 426, "not 13"},
      {GET HOST UPG CONN "Sec-WebSocket-Version: 8\r\n\r\n", 426, "not 13"},
      /* the key */
      {GET HOST UPG CONN VER "\r\n", 400, "no Sec-WebSocket-Key"},
      {GET HOST UPG CONN KEY KEY VER "\r\n", 400, "more than one Sec-WebSocket-Key"},
      {GET HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" VER "\r\n", 400,
       "not base64"},
      {GET HOST UPG CONN "Sec-WebSocket-Key: \r\n" VER "\r\n", 400, "not base64"},
      /* the upgrade itself */
      {GET HOST CONN KEY VER "\r\n", 400, "Upgrade: websocket"},
      {GET HOST "Upgrade: h2c\r\n" CONN KEY VER "\r\n", 400, "Upgrade: websocket"},
      {GET HOST "Upgrade: websockets\r\n" CONN KEY VER "\r\n", 400, "Upgrade: websocket"},
      {GET HOST UPG KEY VER "\r\n", 400, "Connection: upgrade"},
      {GET HOST UPG "Connection: keep-alive\r\n" KEY VER "\r\n", 400, "Connection: upgrade"},
      {GET HOST UPG "Connection: upgrades\r\n" KEY VER "\r\n", 400, "Connection: upgrade"},
      /* the request line and Host */
      {"POST /chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 400, "not GET"},
      {"get /chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 400, "not GET"},
      {"GET /chat HTTP/1.0\r\n" HOST UPG CONN KEY VER "\r\n", 400, "HTTP/1.1"},
      {GET UPG CONN KEY VER "\r\n", 400, "no Host"},
      {GET HOST HOST UPG CONN KEY VER "\r\n", 400, "more than one Host"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_http_request_t req;
    const char *head = cases[i].head;
    assert_int_equal(sk_http_parse_request(head, strlen(head), SK_HTTP_HEAD_MAX, &req),
                     (int)strlen(head));
    char accept[SK_WS_ACCEPT_LEN + 1];
    const char *why = NULL;
    int rc = sk_ws_check_upgrade(&req, accept, &why);
    if (rc != cases[i].want || !why || !strstr(why, cases[i].why))
      fail_msg("case %zu: %d '%s', want %d '%s'", i, rc, why ? why : "(null)", cases[i].want,
               cases[i].why);
    if (rc == 101)
      assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    else
      assert_string_equal(accept, "");
    assert_int_equal(sk_ws_check_upgrade(&req, accept, NULL), rc);
  }
}

static void test_origin_host(void **state) {
  (void)state;
  static const struct {
    const char *value, *host; /* host NULL: refused */
  } cases[] = {
      {"https://chat.example:8443", "chat.example:8443"},
      {"http://example.com", "example.com"},
      {"http://127.0.0.1:8080", "127.0.0.1:8080"},
      {"https://[::1]:8080", "[::1]:8080"},
      {"https://[2001:db8::ffff:1.2.3.4]", "[2001:db8::ffff:1.2.3.4]"},
      {"chrome-extension://abcdefgh", "abcdefgh"},
      {"HTTP://EXAMPLE.COM", "EXAMPLE.COM"},
      {"null", NULL},
      {"", NULL},
      {"example.com", NULL},
      {"//example.com", NULL},
      {"https://", NULL},
      {"https:/example.com", NULL},
      {"https://example.com/", NULL},
      {"https://example.com/path", NULL},
      {"https://example.com?q", NULL},
      {"https://user@example.com", NULL},
      {"https://example.com:", NULL},
      {"https://example.com:123456", NULL},
      {"https://example.com:80x", NULL},
      {"https://:80", NULL},
      {"https://[::1", NULL},
      {"https://[]", NULL},
      {"https://[::g]", NULL},
      {"https://exa mple.com", NULL},
      {"https://example.com ", NULL},
      {"1http://example.com", NULL},
      {"ht tp://example.com", NULL},
      {"https://example.com, https://other.com", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *v = cases[i].value, *host = NULL;
    size_t len = 0;
    int rc = sk_ws_origin_host(v, strlen(v), &host, &len);
    if (!cases[i].host) {
      if (rc != SK_EBADINPUT)
        fail_msg("'%s' accepted", v);
      continue;
    }
    if (rc != 0 || len != strlen(cases[i].host) || memcmp(host, cases[i].host, len) != 0)
      fail_msg("'%s': %d", v, rc);
    assert_true(host >= v && host + len == v + strlen(v));
  }
}

/* ---- UTF-8 -------------------------------------------------------------------------- */

enum { ACC, REJ, MID }; /* what a validator says at the end of a string */

static int verdict(uint32_t s) {
  return s == SK_UTF8_ACCEPT ? ACC : s == SK_UTF8_REJECT ? REJ : MID;
}

/* The validator over p[0..n), pieces ending at the given cuts. */
static uint32_t validate_cut(const uint8_t *p, size_t n, const size_t *cuts, size_t ncuts) {
  uint32_t s = SK_UTF8_ACCEPT;
  size_t from = 0;
  for (size_t c = 0; c <= ncuts; c++) {
    size_t to = c < ncuts ? cuts[c] : n;
    uint8_t *copy = malloc(to - from + 1); /* exactly the piece */
    memcpy(copy, p + from, to - from);
    s = sk_utf8_validate(s, copy, to - from);
    free(copy);
    from = to;
  }
  return s;
}

static void test_utf8_table(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t n;
    int want;
  } cases[] = {
      {LIT(""), ACC},
      {LIT("a"), ACC},
      {LIT("\0\x7f"), ACC},
      {LIT("\xc2\x80"), ACC},         /* U+0080 */
      {LIT("\xdf\xbf"), ACC},         /* U+07FF */
      {LIT("\xe0\xa0\x80"), ACC},     /* U+0800 */
      {LIT("\xed\x9f\xbf"), ACC},     /* U+D7FF */
      {LIT("\xee\x80\x80"), ACC},     /* U+E000 */
      {LIT("\xef\xbf\xbf"), ACC},     /* U+FFFF */
      {LIT("\xf0\x90\x80\x80"), ACC}, /* U+10000 */
      {LIT("\xf4\x8f\xbf\xbf"), ACC}, /* U+10FFFF */
      {LIT("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), ACC}, /* kosme */
      {LIT("0123456789abcdef0123456789\xf0\x9f\x98\x80xyz0123456789abcdefg"), ACC},
      {LIT("\x80"), REJ}, /* a stray continuation byte */
      {LIT("a\xbf"), REJ},
      {LIT("\xc0\x80"), REJ}, /* overlong NUL */
      {LIT("\xc1\xbf"), REJ},
      {LIT("\xe0\x80\x80"), REJ}, /* overlong 3-byte forms */
      {LIT("\xe0\x9f\xbf"), REJ},
      {LIT("\xf0\x80\x80\x80"), REJ}, /* overlong 4-byte forms */
      {LIT("\xf0\x8f\xbf\xbf"), REJ},
      {LIT("\xed\xa0\x80"), REJ}, /* U+D800 */
      {LIT("\xed\xbf\xbf"), REJ}, /* U+DFFF */
      {LIT("\xed\xa0\x80\xed\xb0\x80"), REJ}, /* a surrogate pair, CESU-8 */
      {LIT("\xf4\x90\x80\x80"), REJ}, /* U+110000 */
      {LIT("\xf7\xbf\xbf\xbf"), REJ},
      {LIT("\xf5\x80\x80\x80"), REJ},
      {LIT("\xf8\x88\x80\x80\x80"), REJ}, /* old 5-byte form */
      {LIT("\xfe"), REJ},
      {LIT("\xff"), REJ},
      {LIT("\xc2\x41"), REJ},      /* missing continuation */
      {LIT("\xe2\x28\xa1"), REJ},
      {LIT("\xe2\x82\x28"), REJ},
      {LIT("\xf0\x9f\x98\x41"), REJ},
      {LIT("abcdefghijklmnop\xff"), REJ},
      {LIT("\xff" "abcdefghijklmnop"), REJ}, /* and it stays rejected */
      {LIT("\xc2"), MID},            /* truncated */
      {LIT("\xe2\x82"), MID},
      {LIT("\xf0\x9f\x98"), MID},
      {LIT("abcdefghij\xf4\x8f"), MID},
      {LIT("\xed"), MID},
      {LIT("\xed\x9f"), MID},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const uint8_t *p = (const uint8_t *)cases[i].s;
    size_t n = cases[i].n;
    uint32_t whole = validate_cut(p, n, NULL, 0);
    if (verdict(whole) != cases[i].want)
      fail_msg("case %zu: verdict %d, want %d", i, verdict(whole), cases[i].want);
    for (size_t a = 0; a <= n; a++) {
      size_t one[1] = {a};
      assert_int_equal(validate_cut(p, n, one, 1), whole);
      for (size_t b = a; b <= n; b++) {
        size_t two[2] = {a, b};
        assert_int_equal(validate_cut(p, n, two, 2), whole);
      }
    }
    size_t bytes[64];
    for (size_t k = 0; k + 1 < n; k++)
      bytes[k] = k + 1;
    assert_int_equal(validate_cut(p, n, bytes, n ? n - 1 : 0), whole);
  }
}

/* A plain reference: 1 if s[0..n) is valid, complete UTF-8. */
static int ref_valid(const uint8_t *s, size_t n) { return ref_utf8_valid(s, n); }

/* 1 if s[0..n) is valid or can be made valid by appending bytes. */
static int ref_viable(const uint8_t *s, size_t n) {
  static const uint8_t second[] = {0x80, 0x90, 0xA0};
  uint8_t t[8];
  memcpy(t, s, n);
  if (ref_valid(t, n))
    return 1;
  for (size_t add = 1; add <= 3; add++)
    for (size_t w = 0; w < sizeof second; w++) {
      for (size_t k = 0; k < add; k++)
        t[n + k] = k == 0 ? second[w] : 0x80;
      if (ref_valid(t, n + add))
        return 1;
    }
  return 0;
}

/* Every string of one and two bytes: ACCEPT exactly when valid, REJECT
 * exactly when no continuation could make it valid. Every string of three
 * bytes, and 4-byte strings around the edges: ACCEPT exactly when valid. */
static void test_utf8_exhaustive(void **state) {
  (void)state;
  uint8_t s[4];
  for (unsigned v = 0; v < 256 + 65536; v++) {
    size_t n = v < 256 ? 1 : 2;
    s[0] = (uint8_t)(v < 256 ? v : (v - 256) >> 8);
    s[1] = (uint8_t)(v - 256);
    uint32_t st = sk_utf8_validate(SK_UTF8_ACCEPT, s, n);
    if ((st == SK_UTF8_ACCEPT) != ref_valid(s, n) || (st != SK_UTF8_REJECT) != ref_viable(s, n))
      fail_msg("%02x %02x (%zu): state %u", s[0], s[1], n, (unsigned)st);
  }
  for (uint32_t v = 0; v < 1u << 24; v++) {
    s[0] = (uint8_t)(v >> 16);
    s[1] = (uint8_t)(v >> 8);
    s[2] = (uint8_t)v;
    if ((sk_utf8_validate(SK_UTF8_ACCEPT, s, 3) == SK_UTF8_ACCEPT) != ref_valid(s, 3))
      fail_msg("%02x %02x %02x", s[0], s[1], s[2]);
  }
  static const uint8_t leads[] = {0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7, 0xFF};
  static const uint8_t tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0};
  for (size_t a = 0; a < sizeof leads; a++)
    for (unsigned b = 0; b < 256; b++)
      for (size_t c = 0; c < sizeof tails; c++)
        for (size_t d = 0; d < sizeof tails; d++) {
          s[0] = leads[a], s[1] = (uint8_t)b, s[2] = tails[c], s[3] = tails[d];
          if ((sk_utf8_validate(SK_UTF8_ACCEPT, s, 4) == SK_UTF8_ACCEPT) != ref_valid(s, 4))
            fail_msg("%02x %02x %02x %02x", s[0], s[1], s[2], s[3]);
        }
}

/* ---- decoding: helpers ------------------------------------------------------------- */

typedef struct {
  uint8_t b[200000];
  size_t n;
} stream_t;

static stream_t st; /* the stream the current test builds */

static void reset(void) { st.n = 0; }

static void raw(const void *p, size_t n) {
  memcpy(st.b + st.n, p, n);
  st.n += n;
}

/* Appends a frame with first byte b0 (FIN, RSV bits and opcode as given)
 * and payload p[0..n), masked with key when mask is set; the length in
 * form 0 (shortest), 2 (16 bits) or 8 (64 bits). Returns its size. */
static size_t put(unsigned b0, const void *p, size_t n, int mask, int form) {
  size_t at = st.n;
  uint8_t *o = st.b + st.n;
  size_t h = 2;
  o[0] = (uint8_t)b0;
  o[1] = mask ? 0x80 : 0;
  if (form == 0 && n < 126) {
    o[1] |= (uint8_t)n;
  } else if ((form == 0 && n <= 0xFFFF) || form == 2) {
    o[1] |= 126;
    o[h++] = (uint8_t)(n >> 8);
    o[h++] = (uint8_t)n;
  } else {
    o[1] |= 127;
    for (int s = 56; s >= 0; s -= 8)
      o[h++] = (uint8_t)((uint64_t)n >> s);
  }
  if (mask) {
    memcpy(o + h, key, 4);
    h += 4;
  }
  if (n)
    memcpy(o + h, p, n);
  for (size_t i = 0; mask && i < n; i++)
    o[h + i] ^= key[i & 3];
  st.n += h + n;
  return st.n - at;
}

/* Client frames (masked, for a server) and server frames (unmasked). */
#define CPUT(b0, lit) put(b0, lit, sizeof lit - 1, 1, 0)
#define SPUT(b0, lit) put(b0, lit, sizeof lit - 1, 0, 0)

static char logbuf[4096];
static size_t loglen;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(logbuf + loglen, sizeof logbuf - loglen, fmt, ap);
  va_end(ap);
  if (n > 0)
    loglen += (size_t)n < sizeof logbuf - loglen ? (size_t)n : sizeof logbuf - loglen - 1;
}

/* Payloads up to 40 bytes appear as they are, longer ones as <n>. */
static void log_bytes(const void *p, size_t n) {
  if (n > 40)
    logf_("<%zu>", n);
  else
    logf_("%.*s", (int)n, (const char *)p);
}

/* Logs one event: "T+Hel|" (text, more to come), "B.xyz|" (binary,
 * final), "ping:x|", "pong:x|", "close 1000:bye|". */
static void log_event(const sk_ws_event_t *ev) {
  switch (ev->kind) {
  case SK_WS_EV_DATA:
    logf_("%c%c", ev->opcode == SK_WS_OP_TEXT ? 'T' : 'B', ev->fin ? '.' : '+');
    break;
  case SK_WS_EV_PING: logf_("ping:"); break;
  case SK_WS_EV_PONG: logf_("pong:"); break;
  case SK_WS_EV_CLOSE:
    logf_("close %u:", ev->close_code);
    log_bytes(ev->reason, ev->reason_len);
    logf_("|");
    return;
  default: fail_msg("event kind %d", ev->kind);
  }
  log_bytes(ev->payload, ev->len);
  logf_("|");
}

/* Decodes st.b[0..st.n) with a fresh decoder, frame after frame, as a
 * caller does, the bytes arriving in pieces of at most `piece` bytes (0:
 * all at once); each call sees a buffer of exactly the bytes it is given.
 * Logs the events, then "E<code>" for an error or "more <need>" when the
 * stream ends inside a frame, copies the decoded frames to unmasked and
 * returns their length. Checks on the way that a frame's payload is its
 * last bytes and that "need more" leaves bytes and state alone. */
static size_t decode_log(int server, uint64_t max, size_t piece, uint8_t *unmasked) {
  sk_ws_decoder_t d;
  sk_ws_decoder_init(&d, server, max);
  loglen = 0;
  logbuf[0] = '\0';
  size_t off = 0, avail = 0;
  for (;;) {
    size_t add = piece ? piece : st.n;
    avail = st.n - avail < add ? st.n : avail + add;
    for (;;) {
      size_t n = avail - off;
      uint8_t *w = malloc(n ? n : 1);
      memcpy(w, st.b + off, n);
      sk_ws_decoder_t before = d;
      sk_ws_event_t ev;
      uint64_t need = 12345;
      long rc = sk_ws_decode(&d, w, n, &ev, &need);
      if (rc > 0) {
        assert_true((size_t)rc <= n);
        assert_true(ev.payload >= w + 2 && ev.payload + ev.len == w + rc);
        if (ev.kind == SK_WS_EV_CLOSE && ev.len)
          assert_true(ev.reason == (const char *)ev.payload + 2 && ev.reason_len == ev.len - 2);
        log_event(&ev);
        memcpy(unmasked + off, w, (size_t)rc);
        off += (size_t)rc;
      } else if (rc == 0) {
        assert_memory_equal(w, st.b + off, n);
        assert_memory_equal(&d, &before, sizeof d);
        if (avail == st.n && off < st.n)
          logf_("more %llu", (unsigned long long)need);
      } else {
        logf_("E%ld", -rc);
      }
      free(w);
      if (rc < 0)
        return off;
      if (rc == 0 || off == avail)
        break;
    }
    if (avail == st.n)
      return off;
  }
}

/* The events of the stream, the same whole and in pieces of every size
 * from 1 to 7 bytes (or 509 for long streams). */
static const char *run(int server, uint64_t max) {
  static char whole[sizeof logbuf];
  static uint8_t unmasked[sizeof st.b], again[sizeof st.b];
  size_t used = decode_log(server, max, 0, unmasked);
  strcpy(whole, logbuf);
  for (size_t piece = 1; piece <= 7; piece++) {
    size_t n = st.n > 4096 ? 509 * piece : piece;
    if (decode_log(server, max, n, again) != used || strcmp(logbuf, whole) != 0)
      fail_msg("in pieces of %zu: '%s', whole: '%s'", n, logbuf, whole);
    if (used)
      assert_memory_equal(again, unmasked, used);
  }
  return whole;
}

/* ---- decoding: frames ------------------------------------------------------------- */

/* The examples of RFC 6455 section 5.7. */
static void test_decode_rfc_examples(void **state) {
  (void)state;
  reset();
  raw(LIT("\x81\x05" "Hello"));
  assert_string_equal(run(0, 0), "T.Hello|");
  reset();
  raw(LIT("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"));
  assert_string_equal(run(1, 0), "T.Hello|");
  reset();
  raw(LIT("\x01\x03" "Hel" "\x80\x02" "lo"));
  assert_string_equal(run(0, 0), "T+Hel|T.lo|");
  reset();
  raw(LIT("\x89\x05" "Hello"));
  assert_string_equal(run(0, 0), "ping:Hello|");
  reset();
  raw(LIT("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"));
  assert_string_equal(run(1, 0), "pong:Hello|");
  static uint8_t big[65536];
  memset(big, 'x', sizeof big);
  reset();
  raw(LIT("\x82\x7e\x01\x00"));
  raw(big, 256);
  assert_string_equal(run(0, 0), "B.<256>|");
  reset();
  raw(LIT("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"));
  raw(big, 65536);
  assert_string_equal(run(0, 0), "B.<65536>|");
}

/* A server takes only masked frames, a client only unmasked ones. */
static void test_decode_masking(void **state) {
  (void)state;
  reset();
  SPUT(FIN | SK_WS_OP_TEXT, "hi");
  assert_string_equal(run(1, 0), "E1002");
  assert_string_equal(run(0, 0), "T.hi|");
  reset();
  CPUT(FIN | SK_WS_OP_TEXT, "hi");
  assert_string_equal(run(0, 0), "E1002");
  assert_string_equal(run(1, 0), "T.hi|");
  reset();
  SPUT(FIN | SK_WS_OP_PING, "");
  assert_string_equal(run(1, 0), "E1002");
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03\xe8");
  assert_string_equal(run(0, 0), "E1002");
  /* found from the second byte alone */
  sk_ws_decoder_t d;
  sk_ws_event_t ev;
  sk_ws_decoder_init(&d, 1, 0);
  uint8_t two[2] = {0x81, 0x7d};
  assert_int_equal(sk_ws_decode(&d, two, 2, &ev, NULL), -SK_WS_CLOSE_PROTOCOL);
}

/* The three length forms, the limits of each, and longer forms than needed. */
static void test_decode_lengths(void **state) {
  (void)state;
  static uint8_t payload[70000];
  for (size_t i = 0; i < sizeof payload; i++)
    payload[i] = (uint8_t)(i * 7 + 1);
  static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    size_t hdr = 2 + (n < 126 ? 0 : n <= 0xFFFF ? 2 : 8) + 4;
    reset();
    assert_int_equal(put(FIN | SK_WS_OP_BINARY, payload, n, 1, 0), hdr + n);
    char want[64];
    if (n > 40)
      snprintf(want, sizeof want, "B.<%zu>|", n);
    else
      snprintf(want, sizeof want, "B.%.*s|", (int)n, (const char *)payload);
    assert_string_equal(run(1, 0), want);
    sk_ws_decoder_t d;
    sk_ws_event_t ev;
    sk_ws_decoder_init(&d, 1, 0);
    assert_int_equal(sk_ws_decode(&d, st.b, st.n, &ev, NULL), (long)(hdr + n));
    assert_int_equal(ev.len, n);
    assert_memory_equal(ev.payload, payload, n);
  }
  /* lengths in more bytes than they need are accepted */
  reset();
  put(FIN | SK_WS_OP_TEXT, "abcde", 5, 1, 2);
  put(FIN | SK_WS_OP_TEXT, "fghij", 5, 1, 8);
  put(FIN | SK_WS_OP_BINARY, payload, 300, 1, 8);
  put(FIN | SK_WS_OP_PING, "p", 1, 1, 8);
  put(FIN | SK_WS_OP_CLOSE, "\x03\xe8" "bye", 5, 1, 2);
  assert_string_equal(run(1, 0), "T.abcde|T.fghij|B.<300>|ping:p|close 1000:bye|");
  /* a 64-bit length with the top bit set: refused from the header */
  reset();
  raw(LIT("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00"));
  assert_string_equal(run(1, 0), "E1002");
  reset();
  raw(LIT("\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff"));
  assert_string_equal(run(1, 0), "E1002");
  /* with no limit, a huge frame is waited for, its size told... */
  reset();
  raw(LIT("\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00\x37\xfa\x21\x3d"));
  raw(LIT("abc"));
  char want[64];
  snprintf(want, sizeof want, "more %llu", (unsigned long long)((1ull << 62) + 14));
  assert_string_equal(run(1, 0), want);
  /* ...unless its size does not fit in a long */
  reset();
  raw(LIT("\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff"));
  assert_string_equal(run(1, 0), "E1009");
  reset();
  raw(LIT("\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xf6")); /* LONG_MAX - 9 */
  assert_string_equal(run(0, 0), "E1009");
  reset();
  raw(LIT("\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xf5"));
  snprintf(want, sizeof want, "more %llu", (unsigned long long)INT64_MAX);
  assert_string_equal(run(0, 0), want);
}

/* The rules of the first byte, each refused from that byte alone. */
static void test_decode_header_rules(void **state) {
  (void)state;
  static const uint8_t refused[] = {
      0xC1, 0xA1, 0x91, 0xF1, 0xC9, 0x92,                   /* RSV bits */
      0x83, 0x84, 0x85, 0x86, 0x87, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, /* reserved opcodes */
      0x03, 0x07, 0x0B, 0x0F,
      0x08, 0x09, 0x0A,                                     /* fragmented control */
      0x80, 0x00,                                           /* continuation, no message */
  };
  for (size_t i = 0; i < sizeof refused; i++) {
    sk_ws_decoder_t d;
    sk_ws_event_t ev;
    uint64_t need = 7;
    sk_ws_decoder_init(&d, 1, 0);
    uint8_t one = refused[i];
    if (sk_ws_decode(&d, &one, 1, &ev, &need) != -SK_WS_CLOSE_PROTOCOL)
      fail_msg("first byte %02x not refused", refused[i]);
    reset();
    put(refused[i], "x", 1, 1, 0);
    assert_string_equal(run(1, 0), "E1002");
  }
  /* control frames: 125 bytes at most, whatever the length form */
  static uint8_t p[200];
  memset(p, 'p', sizeof p);
  reset();
  put(FIN | SK_WS_OP_PING, p, 125, 1, 0);
  put(FIN | SK_WS_OP_PONG, p, 125, 1, 2);
  assert_string_equal(run(1, 0), "ping:<125>|pong:<125>|");
  reset();
  put(FIN | SK_WS_OP_PING, p, 126, 1, 0);
  assert_string_equal(run(1, 0), "E1002");
  reset();
  put(FIN | SK_WS_OP_PONG, p, 126, 1, 8);
  assert_string_equal(run(1, 0), "E1002");
  reset();
  put(FIN | SK_WS_OP_CLOSE, p, 126, 1, 0);
  st.n = 4; /* the header's length bytes are enough */
  assert_string_equal(run(1, 0), "E1002");
}

/* Fragments: continuations only inside a message, no message inside
 * another, control frames between fragments. */
static void test_decode_fragments(void **state) {
  (void)state;
  reset();
  CPUT(SK_WS_OP_TEXT, "Hel");
  CPUT(FIN | SK_WS_OP_PING, "p");
  CPUT(SK_WS_OP_CONT, "l");
  CPUT(FIN | SK_WS_OP_PONG, "");
  CPUT(FIN | SK_WS_OP_CONT, "o");
  CPUT(FIN | SK_WS_OP_BINARY, "b");
  assert_string_equal(run(1, 0), "T+Hel|ping:p|T+l|pong:|T.o|B.b|");
  reset();
  CPUT(SK_WS_OP_BINARY, "ab");
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03\xe8");
  CPUT(FIN | SK_WS_OP_CONT, "c");
  assert_string_equal(run(1, 0), "B+ab|close 1000:|B.c|");
  reset();
  CPUT(SK_WS_OP_TEXT, "");
  CPUT(SK_WS_OP_CONT, "");
  CPUT(FIN | SK_WS_OP_CONT, "");
  CPUT(SK_WS_OP_BINARY, "x");
  CPUT(FIN | SK_WS_OP_CONT, "y");
  assert_string_equal(run(1, 0), "T+|T+|T.|B+x|B.y|");
  /* a continuation with no message begun, or after it ended */
  reset();
  CPUT(FIN | SK_WS_OP_CONT, "x");
  assert_string_equal(run(1, 0), "E1002");
  reset();
  CPUT(SK_WS_OP_TEXT, "a");
  CPUT(FIN | SK_WS_OP_CONT, "b");
  CPUT(FIN | SK_WS_OP_CONT, "c");
  assert_string_equal(run(1, 0), "T+a|T.b|E1002");
  /* a new data frame inside an unfinished message */
  static const unsigned second[] = {FIN | SK_WS_OP_TEXT, SK_WS_OP_TEXT, FIN | SK_WS_OP_BINARY,
                                    SK_WS_OP_BINARY};
  for (size_t i = 0; i < 4; i++) {
    reset();
    CPUT(SK_WS_OP_TEXT, "a");
    CPUT(FIN | SK_WS_OP_PING, "");
    put(second[i], "b", 1, 1, 0);
    assert_string_equal(run(1, 0), "T+a|ping:|E1002");
    reset();
    CPUT(SK_WS_OP_BINARY, "a");
    put(second[i], "b", 1, 1, 0);
    assert_string_equal(run(1, 0), "B+a|E1002");
  }
  /* client mode, the same rules */
  reset();
  SPUT(SK_WS_OP_TEXT, "a");
  SPUT(FIN | SK_WS_OP_PING, "");
  SPUT(FIN | SK_WS_OP_CONT, "b");
  SPUT(FIN | SK_WS_OP_CONT, "c");
  assert_string_equal(run(0, 0), "T+a|ping:|T.b|E1002");
}

/* Text is UTF-8 across fragments, checked in the fragment that breaks it. */
static void test_decode_text_utf8(void **state) {
  (void)state;
  reset(); /* kosme, split inside its characters */
  CPUT(SK_WS_OP_TEXT, "\xce");
  CPUT(SK_WS_OP_CONT, "\xba\xe1\xbd");
  CPUT(FIN | SK_WS_OP_PING, "\xff");
  CPUT(FIN | SK_WS_OP_CONT, "\xb9\xcf\x83\xce\xbc\xce\xb5");
  assert_string_equal(run(1, 0), "T+\xce|T+\xba\xe1\xbd|ping:\xff|T.\xb9\xcf\x83\xce\xbc\xce\xb5|");
  /* fail fast: the middle fragment is refused, the last never needed */
  reset();
  CPUT(SK_WS_OP_TEXT, "abc");
  CPUT(SK_WS_OP_CONT, "d\xed\xa0\x80");
  assert_string_equal(run(1, 0), "T+abc|E1007");
  reset();
  CPUT(SK_WS_OP_TEXT, "\xce");
  CPUT(SK_WS_OP_CONT, "A");
  assert_string_equal(run(1, 0), "T+\xce|E1007");
  reset();
  CPUT(SK_WS_OP_TEXT, "\xf4");
  CPUT(FIN | SK_WS_OP_CONT, "\x90\x80\x80");
  assert_string_equal(run(1, 0), "T+\xf4|E1007");
  /* the message ends inside a character */
  reset();
  CPUT(FIN | SK_WS_OP_TEXT, "\xce");
  assert_string_equal(run(1, 0), "E1007");
  reset();
  CPUT(SK_WS_OP_TEXT, "a\xe2\x82");
  CPUT(FIN | SK_WS_OP_CONT, "");
  assert_string_equal(run(1, 0), "T+a\xe2\x82|E1007");
  reset();
  CPUT(FIN | SK_WS_OP_TEXT, "\xc0\xaf");
  assert_string_equal(run(1, 0), "E1007");
  /* binary is not text; and each message starts afresh */
  reset();
  CPUT(FIN | SK_WS_OP_BINARY, "\xff\xce");
  CPUT(SK_WS_OP_TEXT, "\xce");
  CPUT(FIN | SK_WS_OP_CONT, "\xba");
  CPUT(FIN | SK_WS_OP_TEXT, "x");
  CPUT(SK_WS_OP_BINARY, "\xce");
  CPUT(FIN | SK_WS_OP_CONT, "A");
  CPUT(FIN | SK_WS_OP_TEXT, "y");
  assert_string_equal(run(1, 0), "B.\xff\xce|T+\xce|T.\xba|T.x|B+\xce|B.A|T.y|");
}

/* max_message: the fragments' sum, refused from the header. */
static void test_decode_max_message(void **state) {
  (void)state;
  reset();
  CPUT(FIN | SK_WS_OP_TEXT, "0123456789");
  CPUT(SK_WS_OP_BINARY, "012345");
  CPUT(FIN | SK_WS_OP_PING, "a ping may be longer than the limit");
  CPUT(FIN | SK_WS_OP_CONT, "6789");
  CPUT(FIN | SK_WS_OP_BINARY, "0123456789");
  assert_string_equal(run(1, 10), "T.0123456789|B+012345|ping:a ping may be longer than the limit|"
                                  "B.6789|B.0123456789|");
  reset();
  CPUT(FIN | SK_WS_OP_TEXT, "0123456789x");
  st.n = 2; /* the header's first two bytes say it */
  assert_string_equal(run(1, 10), "E1009");
  reset();
  CPUT(SK_WS_OP_TEXT, "012345");
  CPUT(FIN | SK_WS_OP_CONT, "67890");
  st.n -= 5 + 4; /* no mask key, no payload */
  assert_string_equal(run(1, 10), "T+012345|E1009");
  reset();
  CPUT(SK_WS_OP_TEXT, "0123456789");
  CPUT(SK_WS_OP_CONT, "");
  CPUT(FIN | SK_WS_OP_CONT, "x");
  assert_string_equal(run(1, 10), "T+0123456789|T+|E1009");
  reset();
  raw(LIT("\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00"));
  assert_string_equal(run(1, 1 << 20), "E1009");
  reset();
  raw(LIT("\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff"));
  assert_string_equal(run(1, 10), "E1002"); /* the top bit is checked first */
  /* a limit lowered under a message in progress does not wrap around */
  sk_ws_decoder_t d;
  sk_ws_event_t ev;
  sk_ws_decoder_init(&d, 1, 100);
  reset();
  CPUT(SK_WS_OP_BINARY, "0123456789");
  CPUT(FIN | SK_WS_OP_CONT, "x");
  assert_int_equal(sk_ws_decode(&d, st.b, st.n, &ev, NULL), 16);
  d.max_message = 5;
  assert_int_equal(sk_ws_decode(&d, st.b + 16, st.n - 16, &ev, NULL), -SK_WS_CLOSE_TOO_BIG);
}

/* Close frames: no payload, or a code that may be sent and a UTF-8 reason. */
static void test_decode_close(void **state) {
  (void)state;
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "");
  assert_string_equal(run(1, 0), "close 1005:|");
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03");
  assert_string_equal(run(1, 0), "E1002");
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03");
  st.n = 2;
  assert_string_equal(run(1, 0), "E1002");
  static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
    reset();
    put(FIN | SK_WS_OP_CLOSE, p, 2, 1, 0);
    if (strcmp(run(1, 0), "E1002") != 0)
      fail_msg("close code %u accepted", bad[i]);
    assert_false(sk_ws_close_code_valid(bad[i]));
  }
  static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    uint8_t p[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
    reset();
    put(FIN | SK_WS_OP_CLOSE, p, 2, 1, 0);
    char want[32];
    snprintf(want, sizeof want, "close %u:|", good[i]);
    assert_string_equal(run(1, 0), want);
    assert_true(sk_ws_close_code_valid(good[i]));
  }
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03\xe8" "bye");
  CPUT(FIN | SK_WS_OP_CLOSE, "\x0f\xa0\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
  assert_string_equal(run(1, 0),
                      "close 1000:bye|close 4000:\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5|");
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03\xe8" "\xff");
  assert_string_equal(run(1, 0), "E1007");
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03\xe8" "ok\xce");
  assert_string_equal(run(1, 0), "E1007");
  reset();
  CPUT(FIN | SK_WS_OP_CLOSE, "\x03\xe8" "\xed\xa0\x80");
  assert_string_equal(run(1, 0), "E1007");
  /* the longest reason: 123 bytes */
  static uint8_t p[126];
  p[0] = 0x03, p[1] = 0xe9;
  memset(p + 2, 'r', sizeof p - 2);
  reset();
  put(FIN | SK_WS_OP_CLOSE, p, 125, 1, 0);
  assert_string_equal(run(1, 0), "close 1001:<123>|");
  reset();
  put(FIN | SK_WS_OP_CLOSE, p, 126, 1, 0);
  assert_string_equal(run(1, 0), "E1002");
  /* client mode: the server's close */
  reset();
  SPUT(FIN | SK_WS_OP_CLOSE, "\x03\xe8" "done");
  assert_string_equal(run(0, 0), "close 1000:done|");
}

/* Checks every strict prefix of the frame at st.b[0..st.n) for decoder
 * state d: "need more", with *need 0 until the header is in and the
 * frame's size after; then the whole frame decodes. */
static void check_prefixes(const sk_ws_decoder_t *d0, size_t hdr) {
  size_t n = st.n;
  for (size_t k = 0; k < n; k++) {
    if (k > hdr + 300 && k % 997 != 0 && k != n - 1)
      continue;
    sk_ws_decoder_t d = *d0;
    uint8_t *w = malloc(k ? k : 1);
    memcpy(w, st.b, k);
    sk_ws_event_t ev;
    uint64_t need = 999;
    long rc = sk_ws_decode(&d, w, k, &ev, &need);
    if (rc != 0 || need != (k >= hdr ? n : 0))
      fail_msg("prefix %zu of %zu (header %zu): %ld, need %llu", k, n, hdr, rc,
               (unsigned long long)need);
    assert_memory_equal(w, st.b, k);
    assert_memory_equal(&d, d0, sizeof d);
    free(w);
  }
  sk_ws_decoder_t d = *d0;
  sk_ws_event_t ev;
  uint64_t need = 0;
  assert_int_equal(sk_ws_decode(&d, st.b, n, &ev, &need), (long)n);
  assert_int_equal(need, n);
}

static void test_decode_every_prefix(void **state) {
  (void)state;
  static uint8_t p[70000];
  memset(p, 'z', sizeof p);
  static sk_ws_decoder_t server, client, inside;
  sk_ws_decoder_init(&server, 1, 0);
  sk_ws_decoder_init(&client, 0, 1 << 20);
  sk_ws_decoder_init(&inside, 1, 0);
  inside.in_message = 1;
  inside.msg_opcode = SK_WS_OP_TEXT;
  inside.msg_len = 5;
  static const struct {
    const sk_ws_decoder_t *d;
    unsigned b0;
    size_t n;
    int mask, form;
    size_t hdr;
  } cases[] = {
      {&server, FIN | SK_WS_OP_TEXT, 5, 1, 0, 6},
      {&server, FIN | SK_WS_OP_TEXT, 0, 1, 0, 6},
      {&server, FIN | SK_WS_OP_BINARY, 300, 1, 0, 8},
      {&server, FIN | SK_WS_OP_BINARY, 300, 1, 8, 14},
      {&server, FIN | SK_WS_OP_BINARY, 70000, 1, 0, 14},
      {&server, FIN | SK_WS_OP_PING, 125, 1, 0, 6},
      {&server, FIN | SK_WS_OP_CLOSE, 0, 1, 0, 6},
      {&server, FIN | SK_WS_OP_CLOSE, 2, 1, 2, 8},
      {&inside, FIN | SK_WS_OP_CONT, 7, 1, 0, 6},
      {&client, SK_WS_OP_TEXT, 5, 0, 0, 2},
      {&client, FIN | SK_WS_OP_BINARY, 1000, 0, 0, 4},
      {&client, FIN | SK_WS_OP_BINARY, 1000, 0, 8, 10},
      {&client, FIN | SK_WS_OP_PONG, 0, 0, 0, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    reset();
    const uint8_t *payload = p;
    if (cases[i].b0 == (FIN | SK_WS_OP_CLOSE))
      payload = (const uint8_t *)"\x03\xe8"; /* a close needs a valid code */
    put(cases[i].b0, payload, cases[i].n, cases[i].mask, cases[i].form);
    check_prefixes(cases[i].d, cases[i].hdr);
  }
}

/* ---- encoding --------------------------------------------------------------------- */

static void test_header_forms(void **state) {
  (void)state;
  static const struct {
    unsigned opcode;
    int fin;
    uint64_t len;
    int mask;
    const char *want;
    size_t want_len;
  } cases[] = {
      {SK_WS_OP_TEXT, 1, 0, 0, LIT("\x81\x00")},
      {SK_WS_OP_TEXT, 1, 5, 0, LIT("\x81\x05")},
      {SK_WS_OP_BINARY, 0, 125, 0, LIT("\x02\x7d")},
      {SK_WS_OP_BINARY, 1, 126, 0, LIT("\x82\x7e\x00\x7e")},
      {SK_WS_OP_BINARY, 1, 65535, 0, LIT("\x82\x7e\xff\xff")},
      {SK_WS_OP_BINARY, 1, 65536, 0, LIT("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00")},
      {SK_WS_OP_BINARY, 1, 1ull << 32, 0, LIT("\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00")},
      {SK_WS_OP_BINARY, 1, INT64_MAX, 0, LIT("\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff")},
      {SK_WS_OP_CONT, 0, 3, 0, LIT("\x00\x03")},
      {SK_WS_OP_PING, 1, 0, 0, LIT("\x89\x00")},
      {SK_WS_OP_CLOSE, 1, 2, 0, LIT("\x88\x02")},
      {SK_WS_OP_TEXT, 1, 5, 1, LIT("\x81\x85\x37\xfa\x21\x3d")},
      {SK_WS_OP_PONG, 1, 126, 1, LIT("\x8a\xfe\x00\x7e\x37\xfa\x21\x3d")},
      {SK_WS_OP_BINARY, 1, 65536, 1,
       LIT("\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x37\xfa\x21\x3d")},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t out[SK_WS_HEADER_MAX + 1];
    memset(out, 0xAA, sizeof out);
    size_t n = sk_ws_header(out, cases[i].opcode, cases[i].fin, cases[i].len,
                            cases[i].mask ? key : NULL);
    if (n != cases[i].want_len || memcmp(out, cases[i].want, n) != 0)
      fail_msg("case %zu: %zu bytes", i, n);
    assert_int_equal(out[SK_WS_HEADER_MAX], 0xAA);
  }
}

/* What one end encodes, the other decodes: a client's masked frames in
 * server mode, a server's plain frames in client mode. */
static void test_round_trip(void **state) {
  (void)state;
  static uint8_t payload[70000], frame[70000 + SK_WS_HEADER_MAX];
  for (size_t i = 0; i < sizeof payload; i++)
    payload[i] = (uint8_t)('a' + i % 26);
  static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 125, 126, 1000, 65535, 65536, 70000};
  static const unsigned ops[] = {SK_WS_OP_TEXT, SK_WS_OP_BINARY, SK_WS_OP_PING, SK_WS_OP_PONG,
                                 SK_WS_OP_CLOSE};
  const uint8_t mask[4] = {0x01, 0x80, 0xfe, 0x7f};
  for (int client = 0; client <= 1; client++)
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
      for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        unsigned op = ops[o];
        if (op >= SK_WS_OP_CLOSE && n > SK_WS_CONTROL_MAX)
          continue;
        uint8_t body[SK_WS_CONTROL_MAX];
        const uint8_t *p = payload;
        if (op == SK_WS_OP_CLOSE) {
          if (n == 1)
            continue;
          n = n ? sk_ws_close_payload(body, 1000, (const char *)payload, n - 2) : 0;
          p = body;
        }
        size_t h = sk_ws_header(frame, op, 1, n, client ? mask : NULL);
        memcpy(frame + h, p, n);
        if (client)
          sk_ws_mask(frame + h, n, mask, 0);
        sk_ws_decoder_t d;
        sk_ws_event_t ev;
        sk_ws_decoder_init(&d, client, 0);
        long rc = sk_ws_decode(&d, frame, h + n, &ev, NULL);
        if (rc != (long)(h + n))
          fail_msg("client %d op %u len %zu: %ld", client, op, n, rc);
        assert_int_equal(ev.len, n);
        assert_memory_equal(ev.payload, p, n);
        if (op < SK_WS_OP_CLOSE)
          assert_int_equal(ev.opcode, op);
        assert_true(ev.fin);
      }
  /* A fragmented message. */
  for (int client = 0; client <= 1; client++) {
    size_t at = 0;
    at += sk_ws_header(frame + at, SK_WS_OP_TEXT, 0, 3, client ? mask : NULL);
    memcpy(frame + at, "abc", 3);
    if (client)
      sk_ws_mask(frame + at, 3, mask, 0);
    at += 3;
    at += sk_ws_header(frame + at, SK_WS_OP_CONT, 1, 200, client ? mask : NULL);
    memcpy(frame + at, payload, 200);
    if (client)
      sk_ws_mask(frame + at, 200, mask, 0);
    at += 200;
    reset();
    raw(frame, at);
    assert_string_equal(run(client, 203), "T+abc|T.<200>|");
    assert_string_equal(run(client, 202), "T+abc|E1009");
  }
}

static void test_mask_pieces(void **state) {
  (void)state;
  static uint8_t data[1001], whole[1001], piece[1001];
  const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 31 + 7);
  for (size_t i = 0; i < sizeof data; i++)
    whole[i] = data[i] ^ mask[i & 3];
  memcpy(piece, data, sizeof data);
  sk_ws_mask(piece, sizeof piece, mask, 0);
  assert_memory_equal(piece, whole, sizeof whole);
  sk_ws_mask(piece, sizeof piece, mask, 0); /* twice unmasks */
  assert_memory_equal(piece, data, sizeof data);
  /* two pieces split anywhere, and three at odd places */
  for (size_t cut = 0; cut <= sizeof data; cut++) {
    memcpy(piece, data, sizeof data);
    sk_ws_mask(piece, cut, mask, 0);
    sk_ws_mask(piece + cut, sizeof data - cut, mask, cut);
    if (memcmp(piece, whole, sizeof whole) != 0)
      fail_msg("cut at %zu", cut);
  }
  for (size_t a = 0; a < 20; a++)
    for (size_t b = a; b < 40; b++) {
      memcpy(piece, data, sizeof data);
      sk_ws_mask(piece, a, mask, 0);
      sk_ws_mask(piece + a, b - a, mask, a);
      sk_ws_mask(piece + b, sizeof data - b, mask, b);
      assert_memory_equal(piece, whole, sizeof whole);
    }
  /* the offset counts modulo 4, even past 32 bits */
  memcpy(piece, data, sizeof data);
  sk_ws_mask(piece + 3, 100, mask, (1ull << 40) + 3);
  assert_memory_equal(piece + 3, whole + 3, 100);
  sk_ws_mask(piece, 0, mask, 0);
}

static void test_close_payload(void **state) {
  (void)state;
  uint8_t out[SK_WS_CONTROL_MAX];
  char reason[300];
  assert_int_equal(sk_ws_close_payload(out, SK_WS_CLOSE_NO_STATUS, "ignored", 7), 0);
  assert_int_equal(sk_ws_close_payload(out, SK_WS_CLOSE_NORMAL, NULL, 0), 2);
  assert_memory_equal(out, "\x03\xe8", 2);
  assert_int_equal(sk_ws_close_payload(out, SK_WS_CLOSE_TOO_BIG, "too big", 7), 9);
  assert_memory_equal(out, "\x03\xf1too big", 9);
  /* ASCII: 123 bytes of reason at most */
  memset(reason, 'a', sizeof reason);
  assert_int_equal(sk_ws_close_payload(out, 1000, reason, 123), 125);
  assert_int_equal(sk_ws_close_payload(out, 1000, reason, 300), 125);
  /* 2-, 3- and 4-byte characters cut before the one that would straddle
   * the limit: 61 x U+00E9 (122 bytes), 41 x U+20AC (123), "a" and 41 x
   * U+20AC (121 of 124), 30 x U+1F600 (120) */
  static const struct {
    const char *ch;
    size_t pre, count, want;
  } cases[] = {
      {"\xc3\xa9", 0, 62, 122}, {"\xe2\x82\xac", 0, 41, 123}, {"\xe2\x82\xac", 1, 41, 121},
      {"\xf0\x9f\x98\x80", 0, 31, 120}, {"\xf0\x9f\x98\x80", 2, 31, 122},
      {"\xf0\x9f\x98\x80", 3, 31, 123},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = cases[i].pre, cl = strlen(cases[i].ch);
    memset(reason, 'a', n);
    for (size_t k = 0; k < cases[i].count; k++, n += cl)
      memcpy(reason + n, cases[i].ch, cl);
    size_t got = sk_ws_close_payload(out, 1000, reason, n);
    if (got != 2 + cases[i].want || memcmp(out + 2, reason, got - 2) != 0)
      fail_msg("case %zu: %zu", i, got);
    /* what comes out is a close frame a peer accepts */
    reset();
    put(FIN | SK_WS_OP_CLOSE, out, got, 1, 0);
    assert_int_equal(strncmp(run(1, 0), "close 1000:", 11), 0);
  }
  /* invalid UTF-8 is cut off where it starts */
  assert_int_equal(sk_ws_close_payload(out, 1000, "ab\xff" "cd", 5), 4);
  assert_int_equal(sk_ws_close_payload(out, 1000, "ab\xce", 3), 4);
  assert_int_equal(sk_ws_close_payload(out, 1000, "\xed\xa0\x80x", 4), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_key),
      cmocka_unit_test(test_check_upgrade),
      cmocka_unit_test(test_origin_host),
      cmocka_unit_test(test_utf8_table),
      cmocka_unit_test(test_utf8_exhaustive),
      cmocka_unit_test(test_decode_rfc_examples),
      cmocka_unit_test(test_decode_masking),
      cmocka_unit_test(test_decode_lengths),
      cmocka_unit_test(test_decode_header_rules),
      cmocka_unit_test(test_decode_fragments),
      cmocka_unit_test(test_decode_text_utf8),
      cmocka_unit_test(test_decode_max_message),
      cmocka_unit_test(test_decode_close),
      cmocka_unit_test(test_decode_every_prefix),
      cmocka_unit_test(test_header_forms),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_mask_pieces),
      cmocka_unit_test(test_close_payload),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
