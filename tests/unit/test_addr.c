/* tests/unit/test_addr.c - endpoints, CIDR blocks and socket-address text.
 *
 * Table-driven: every valid form of the grammar in sockit/addr.h with the
 * fields it must produce, every class of invalid input with the part of the
 * message that must name the fault, every prefix and a sweep of one-byte
 * mutations of each valid input (parse or fail cleanly, never crash), and
 * format(parse(x)) == x for canonical forms.
 *
 * Error messages are checked for what they must say (the input, and the bad
 * part by one of a few words), never for their exact wording.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockit/addr.h"
#include "sockit/net.h"

/* ---- helpers ------------------------------------------------------------- */

enum { M_CONNECT = 1, M_LISTEN = 2, M_BOTH = 3 };

static const char *mode_name(sk_ep_mode_t mode) {
  return mode == SK_EP_LISTEN ? "listen" : "connect";
}

/* 1 if hay contains one of the '|'-separated words of alts, ignoring case. */
static int contains_any(const char *hay, const char *alts) {
  char word[64];
  const char *p = alts;
  while (*p) {
    size_t n = strcspn(p, "|");
    if (n >= sizeof word)
      n = sizeof word - 1;
    memcpy(word, p, n);
    word[n] = '\0';
    if (n > 0 && strcasestr(hay, word))
      return 1;
    p += n;
    if (*p == '|')
      p++;
  }
  return 0;
}

/* A heap copy of text that is exactly strlen+1 bytes long, so that ASan
 * reports any read past the terminating NUL. */
static char *exact_copy(const char *text, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memcpy(s, text, n);
  s[n] = '\0';
  return s;
}

static char *repeat_char(char c, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

/* A valid DNS name of exactly n characters (labels of at most 63). */
static char *dns_name(size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++)
    s[i] = (i % 64 == 63) ? '.' : (char)('a' + i % 26);
  if (n > 0 && s[n - 1] == '.')
    s[n - 1] = 'z';
  s[n] = '\0';
  return s;
}

static char *concat3(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  char *s = malloc(la + lb + lc + 1);
  assert_non_null(s);
  memcpy(s, a, la);
  memcpy(s + la, b, lb);
  memcpy(s + la + lb, c, lc + 1);
  return s;
}

/* Fields that make two endpoints the same endpoint. SK_EP_V6LIT only
 * records how the host was spelled, and format always brackets IPv6, so it
 * is left out. */
static int ep_equal(const sk_endpoint_t *a, const sk_endpoint_t *b) {
  return a->kind == b->kind && (a->flags & ~SK_EP_V6LIT) == (b->flags & ~SK_EP_V6LIT) &&
         a->port == b->port && strcmp(a->host, b->host) == 0 &&
         strcmp(a->path, b->path) == 0;
}

static void ep_describe(const sk_endpoint_t *ep, char *out, size_t len) {
  snprintf(out, len, "{kind %d flags %#x port %u host '%s' path '%s'}",
           (int)ep->kind, ep->flags, (unsigned)ep->port, ep->host, ep->path);
}

/* Parses text (an exact-size heap copy) expecting success. */
static void parse_ok(sk_endpoint_t *ep, const char *text, sk_ep_mode_t mode) {
  char err[SK_ERRLEN];
  char *copy = exact_copy(text, strlen(text));
  memset(ep, 0x5a, sizeof *ep);
  err[0] = '\0';
  int rc = sk_endpoint_parse(ep, copy, mode, err, sizeof err);
  free(copy);
  if (rc != 0)
    fail_msg("parse '%s' (%s): expected 0, got %d (%s)", text, mode_name(mode), rc,
             err);
}

/* Checks the message of a failed parse: NUL-terminated within SK_ERRLEN,
 * quotes the input (or, for long input, its start), names the bad part. */
static void check_message(const char *text, sk_ep_mode_t mode, const char *err,
                          const char *words) {
  size_t elen = strnlen(err, SK_ERRLEN);
  if (elen == SK_ERRLEN)
    fail_msg("parse '%s' (%s): message not NUL-terminated", text, mode_name(mode));
  if (elen == 0)
    fail_msg("parse '%s' (%s): empty message", text, mode_name(mode));
  size_t tlen = strlen(text);
  if (tlen <= 40) {
    if (!strstr(err, text))
      fail_msg("parse '%s' (%s): message does not quote the input: %s", text,
               mode_name(mode), err);
  } else {
    char start[17];
    memcpy(start, text, 16);
    start[16] = '\0';
    if (!strstr(err, start))
      fail_msg("parse '%.40s...' (%s): message does not quote the input's start: %s",
               text, mode_name(mode), err);
  }
  /* The bad part must be named outside the quoted input. */
  char rest[SK_ERRLEN];
  const char *q = tlen ? strstr(err, text) : NULL;
  if (q) {
    size_t before = (size_t)(q - err);
    memcpy(rest, err, before);
    snprintf(rest + before, sizeof rest - before, "%s", q + tlen);
  } else {
    snprintf(rest, sizeof rest, "%s", err);
  }
  if (words && !contains_any(rest, words))
    fail_msg("parse '%.80s' (%s): message names none of [%s]: %s", text,
             mode_name(mode), words, err);
}

/* Parses text expecting -EINVAL with a message naming one of words. */
static void parse_bad(const char *text, sk_ep_mode_t mode, const char *words) {
  char err[SK_ERRLEN];
  sk_endpoint_t ep;
  char *copy = exact_copy(text, strlen(text));
  memset(err, 'X', sizeof err);
  int rc = sk_endpoint_parse(&ep, copy, mode, err, sizeof err);
  free(copy);
  if (rc != -EINVAL) {
    char desc[SK_ENDPOINT_STRLEN + 128];
    ep_describe(&ep, desc, sizeof desc);
    fail_msg("parse '%.80s' (%s): expected -EINVAL, got %d%s%s", text,
             mode_name(mode), rc, rc == 0 ? " with " : "", rc == 0 ? desc : "");
  }
  check_message(text, mode, err, words);
}

/* format -> re-parse gives the same endpoint and the same text again. */
static void check_reformat(const sk_endpoint_t *ep, sk_ep_mode_t mode, const char *origin) {
  char text[SK_ENDPOINT_STRLEN], again[SK_ENDPOINT_STRLEN], err[SK_ERRLEN];
  sk_endpoint_t ep2;
  char *r = sk_endpoint_format(ep, text, sizeof text);
  if (r != text)
    fail_msg("format of '%s' did not return buf", origin);
  if (strnlen(text, sizeof text) == sizeof text)
    fail_msg("format of '%s' not NUL-terminated", origin);
  int rc = sk_endpoint_parse(&ep2, text, mode, err, sizeof err);
  if (rc != 0)
    fail_msg("'%s' formats as '%s', which does not parse (%s): %d %s", origin, text,
             mode_name(mode), rc, err);
  if (!ep_equal(ep, &ep2)) {
    char d1[SK_ENDPOINT_STRLEN + 128], d2[SK_ENDPOINT_STRLEN + 128];
    ep_describe(ep, d1, sizeof d1);
    ep_describe(&ep2, d2, sizeof d2);
    fail_msg("'%s' formats as '%s' which re-parses differently: %s vs %s", origin, text,
             d1, d2);
  }
  sk_endpoint_format(&ep2, again, sizeof again);
  if (strcmp(text, again) != 0)
    fail_msg("'%s': format not a fixed point: '%s' then '%s'", origin, text, again);
}

/* ---- valid endpoints ------------------------------------------------------ */

typedef struct {
  const char *text;
  int modes; /* where it is valid; elsewhere it must fail */
  sk_ep_kind_t kind;
  unsigned flags;
  uint16_t port;
  const char *host;
  const char *path;
  const char *canonical; /* NULL: the text itself */
  const char *connect_words; /* listen-only forms: what the connect error names */
} valid_case_t;

static const valid_case_t valid_cases[] = {
  {"tcp://example.com:80", M_BOTH, SK_EP_TCP, 0, 80, "example.com", "", NULL, NULL},
  {"tcp://127.0.0.1:8080", M_BOTH, SK_EP_TCP, 0, 8080, "127.0.0.1", "", NULL, NULL},
  {"tcp://localhost:1", M_BOTH, SK_EP_TCP, 0, 1, "localhost", "", NULL, NULL},
  {"tcp://h:65535", M_BOTH, SK_EP_TCP, 0, 65535, "h", "", NULL, NULL},
  {"tcp://[::1]:9000", M_BOTH, SK_EP_TCP, SK_EP_V6LIT, 9000, "::1", "", NULL, NULL},
  {"tcp://[2001:db8::1]:443", M_BOTH, SK_EP_TCP, SK_EP_V6LIT, 443, "2001:db8::1", "",
   NULL, NULL},
  {"tcp://[::ffff:1.2.3.4]:7", M_BOTH, SK_EP_TCP, SK_EP_V6LIT, 7, "::ffff:1.2.3.4", "",
   NULL, NULL},
  {"udp://127.0.0.1:53", M_BOTH, SK_EP_UDP, 0, 53, "127.0.0.1", "", NULL, NULL},
  {"udp://[::1]:5353", M_BOTH, SK_EP_UDP, SK_EP_V6LIT, 5353, "::1", "", NULL, NULL},
  {"udp://dns.example:53", M_BOTH, SK_EP_UDP, 0, 53, "dns.example", "", NULL, NULL},
  {"tls://example.com:443", M_BOTH, SK_EP_TCP, SK_EP_TLS, 443, "example.com", "", NULL,
   NULL},
  {"tls://[::1]:8443", M_BOTH, SK_EP_TCP, SK_EP_TLS | SK_EP_V6LIT, 8443, "::1", "", NULL,
   NULL},
  {"unix:/tmp/sockit.sock", M_BOTH, SK_EP_UNIX, 0, 0, "", "/tmp/sockit.sock", NULL, NULL},
  {"unix:rel", M_BOTH, SK_EP_UNIX, 0, 0, "", "rel", NULL, NULL},
  {"unix:./s", M_BOTH, SK_EP_UNIX, 0, 0, "", "./s", NULL, NULL},
  {"unix:dir/sub/s.sock", M_BOTH, SK_EP_UNIX, 0, 0, "", "dir/sub/s.sock", NULL, NULL},
  {"unix:@abstract", M_BOTH, SK_EP_UNIX, SK_EP_ABSTRACT, 0, "", "abstract", NULL, NULL},
  {"unix-dgram:/tmp/d.sock", M_BOTH, SK_EP_UNIX_DGRAM, 0, 0, "", "/tmp/d.sock", NULL,
   NULL},
  {"unix-dgram:@dg", M_BOTH, SK_EP_UNIX_DGRAM, SK_EP_ABSTRACT, 0, "", "dg", NULL, NULL},
  {"unix-seqpacket:/tmp/sp.sock", M_BOTH, SK_EP_UNIX_SEQPACKET, 0, 0, "", "/tmp/sp.sock",
   NULL, NULL},
  {"unix-seqpacket:@sp", M_BOTH, SK_EP_UNIX_SEQPACKET, SK_EP_ABSTRACT, 0, "", "sp", NULL,
   NULL},
  {"-", M_BOTH, SK_EP_STDIO, 0, 0, "", "", "", NULL},
  {"stdio", M_BOTH, SK_EP_STDIO, 0, 0, "", "", "", NULL},
  /* listen forms */
  {"tcp://:8080", M_LISTEN, SK_EP_TCP, 0, 8080, "", "", NULL, "host|address|empty"},
  {"tcp://:0", M_LISTEN, SK_EP_TCP, 0, 0, "", "", NULL, "host|address|empty|port"},
  {"tcp://0.0.0.0:0", M_LISTEN, SK_EP_TCP, 0, 0, "0.0.0.0", "", NULL, "port"},
  {"tcp://127.0.0.1:0", M_LISTEN, SK_EP_TCP, 0, 0, "127.0.0.1", "", NULL, "port"},
  {"tcp://[::]:0", M_LISTEN, SK_EP_TCP, SK_EP_V6LIT, 0, "::", "", NULL, "port"},
  {"tcp://[::1]:0", M_LISTEN, SK_EP_TCP, SK_EP_V6LIT, 0, "::1", "", NULL, "port"},
  {"udp://:5353", M_LISTEN, SK_EP_UDP, 0, 5353, "", "", NULL, "host|address|empty"},
  {"udp://:0", M_LISTEN, SK_EP_UDP, 0, 0, "", "", NULL, "host|address|empty|port"},
  {"tls://:8443", M_LISTEN, SK_EP_TCP, SK_EP_TLS, 8443, "", "", NULL, "host|address|empty"},
};

#define N_VALID (sizeof valid_cases / sizeof valid_cases[0])

static void check_fields(const valid_case_t *c, const sk_endpoint_t *ep, sk_ep_mode_t mode) {
  char desc[SK_ENDPOINT_STRLEN + 128];
  ep_describe(ep, desc, sizeof desc);
  if (ep->kind != c->kind)
    fail_msg("'%s' (%s): kind %d, expected %d: %s", c->text, mode_name(mode),
             (int)ep->kind, (int)c->kind, desc);
  if (ep->flags != c->flags)
    fail_msg("'%s' (%s): flags %#x, expected %#x", c->text, mode_name(mode), ep->flags,
             c->flags);
  if (ep->port != c->port)
    fail_msg("'%s' (%s): port %u, expected %u", c->text, mode_name(mode),
             (unsigned)ep->port, (unsigned)c->port);
  int is_inet = c->kind == SK_EP_TCP || c->kind == SK_EP_UDP;
  int is_unix = c->kind == SK_EP_UNIX || c->kind == SK_EP_UNIX_DGRAM ||
                c->kind == SK_EP_UNIX_SEQPACKET;
  if (is_inet && strcmp(ep->host, c->host) != 0)
    fail_msg("'%s' (%s): host '%s', expected '%s'", c->text, mode_name(mode), ep->host,
             c->host);
  if (is_unix && strcmp(ep->path, c->path) != 0)
    fail_msg("'%s' (%s): path '%s', expected '%s'", c->text, mode_name(mode), ep->path,
             c->path);
}

static void test_valid_forms(void **state) {
  (void)state;
  for (size_t i = 0; i < N_VALID; i++) {
    const valid_case_t *c = &valid_cases[i];
    for (int m = 0; m < 2; m++) {
      sk_ep_mode_t mode = m ? SK_EP_LISTEN : SK_EP_CONNECT;
      int want_ok = (c->modes & (m ? M_LISTEN : M_CONNECT)) != 0;
      if (want_ok) {
        sk_endpoint_t ep;
        parse_ok(&ep, c->text, mode);
        check_fields(c, &ep, mode);
      } else {
        parse_bad(c->text, mode, c->connect_words);
      }
    }
  }
}

/* Every valid form canonical text, through format and back. */
static void test_format_roundtrip(void **state) {
  (void)state;
  for (size_t i = 0; i < N_VALID; i++) {
    const valid_case_t *c = &valid_cases[i];
    sk_ep_mode_t mode = (c->modes & M_CONNECT) ? SK_EP_CONNECT : SK_EP_LISTEN;
    sk_endpoint_t ep;
    char out[SK_ENDPOINT_STRLEN];
    parse_ok(&ep, c->text, mode);
    memset(out, 'X', sizeof out);
    sk_endpoint_format(&ep, out, sizeof out);
    if (c->kind == SK_EP_STDIO) {
      /* Either spelling is canonical; it must be one of them. */
      if (strcmp(out, "-") != 0 && strcmp(out, "stdio") != 0)
        fail_msg("'%s' formats as '%s', expected '-' or 'stdio'", c->text, out);
    } else {
      const char *want = c->canonical ? c->canonical : c->text;
      if (strcmp(out, want) != 0)
        fail_msg("'%s' (%s) formats as '%s', expected '%s'", c->text, mode_name(mode), out,
                 want);
    }
    check_reformat(&ep, mode, c->text);
  }
}

/* IPv6 hosts come out bracketed even when the endpoint was built by hand
 * (no SK_EP_V6LIT), since the text must parse back. */
static void test_format_brackets_v6(void **state) {
  (void)state;
  sk_endpoint_t ep;
  char out[SK_ENDPOINT_STRLEN];
  memset(&ep, 0, sizeof ep);
  ep.kind = SK_EP_TCP;
  ep.port = 80;
  strcpy(ep.host, "2001:db8::2");
  sk_endpoint_format(&ep, out, sizeof out);
  assert_string_equal(out, "tcp://[2001:db8::2]:80");

  ep.kind = SK_EP_UDP;
  ep.flags = SK_EP_V6LIT;
  strcpy(ep.host, "::1");
  ep.port = 53;
  sk_endpoint_format(&ep, out, sizeof out);
  assert_string_equal(out, "udp://[::1]:53");

  memset(&ep, 0, sizeof ep);
  ep.kind = SK_EP_TCP;
  ep.flags = SK_EP_TLS;
  ep.port = 443;
  strcpy(ep.host, "::");
  sk_endpoint_format(&ep, out, sizeof out);
  assert_string_equal(out, "tls://[::]:443");
}

/* The longest endpoints fit SK_ENDPOINT_STRLEN; a short buffer truncates
 * without writing past its end. */
static void test_format_lengths(void **state) {
  (void)state;
  char *host = dns_name(SK_HOST_MAX);
  char *name = repeat_char('n', SK_UNIX_PATH_MAX);
  char *longest[3];
  longest[0] = concat3("tls://", host, ":65535");
  longest[1] = concat3("unix-seqpacket:@", name, "");
  longest[2] = concat3("tcp://[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", ":65535", "");
  for (int i = 0; i < 3; i++) {
    sk_endpoint_t ep;
    char out[SK_ENDPOINT_STRLEN];
    parse_ok(&ep, longest[i], SK_EP_CONNECT);
    sk_endpoint_format(&ep, out, sizeof out);
    assert_string_equal(out, longest[i]);
    check_reformat(&ep, SK_EP_CONNECT, longest[i]);

    /* Exact-size and short heap buffers: ASan catches any overrun. */
    size_t n = strlen(longest[i]);
    char *exact = malloc(n + 1);
    assert_non_null(exact);
    sk_endpoint_format(&ep, exact, n + 1);
    assert_string_equal(exact, longest[i]);
    free(exact);
    size_t short_len = n / 2;
    char *small = malloc(short_len);
    assert_non_null(small);
    sk_endpoint_format(&ep, small, short_len);
    assert_true(strnlen(small, short_len) < short_len);
    assert_memory_equal(small, longest[i], strlen(small));
    free(small);
  }
  for (int i = 0; i < 3; i++)
    free(longest[i]);
  free(host);
  free(name);
}

/* ---- length limits -------------------------------------------------------- */

static void test_unix_path_limits(void **state) {
  (void)state;
  static const struct {
    const char *prefix;
    sk_ep_kind_t kind;
    unsigned flags;
    const char *lead; /* first path byte(s), part of the stored path */
  } kinds[] = {
    {"unix:", SK_EP_UNIX, 0, "/"},
    {"unix:", SK_EP_UNIX, 0, "r"},
    {"unix-dgram:", SK_EP_UNIX_DGRAM, 0, "/"},
    {"unix-seqpacket:", SK_EP_UNIX_SEQPACKET, 0, "/"},
    {"unix:@", SK_EP_UNIX, SK_EP_ABSTRACT, ""},
    {"unix-dgram:@", SK_EP_UNIX_DGRAM, SK_EP_ABSTRACT, ""},
  };
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    size_t lead = strlen(kinds[k].lead);
    for (size_t total = SK_UNIX_PATH_MAX - 1; total <= SK_UNIX_PATH_MAX + 2; total++) {
      char *tail = repeat_char('p', total - lead);
      char *path = concat3(kinds[k].lead, tail, "");
      char *text = concat3(kinds[k].prefix, path, "");
      for (int m = 0; m < 2; m++) {
        sk_ep_mode_t mode = m ? SK_EP_LISTEN : SK_EP_CONNECT;
        if (total <= SK_UNIX_PATH_MAX) {
          sk_endpoint_t ep;
          parse_ok(&ep, text, mode);
          assert_int_equal(ep.kind, kinds[k].kind);
          assert_int_equal(ep.flags, kinds[k].flags);
          assert_string_equal(ep.path, path);
          check_reformat(&ep, mode, text);
        } else {
          parse_bad(text, mode, "too long|long");
        }
      }
      free(text);
      free(path);
      free(tail);
    }
  }
}

static void test_host_limits(void **state) {
  (void)state;
  static const char *const schemes[] = {"tcp://", "udp://", "tls://"};
  for (size_t s = 0; s < 3; s++) {
    for (size_t n = SK_HOST_MAX - 1; n <= SK_HOST_MAX + 3; n++) {
      char *host = dns_name(n);
      char *text = concat3(schemes[s], host, ":80");
      for (int m = 0; m < 2; m++) {
        sk_ep_mode_t mode = m ? SK_EP_LISTEN : SK_EP_CONNECT;
        if (n <= SK_HOST_MAX) {
          sk_endpoint_t ep;
          parse_ok(&ep, text, mode);
          assert_string_equal(ep.host, host);
          assert_int_equal(ep.port, 80);
          check_reformat(&ep, mode, text);
        } else {
          parse_bad(text, mode, "too long|long");
        }
      }
      free(text);
      free(host);
    }
  }
  /* A very long host, far past any buffer. */
  char *host = dns_name(4000);
  char *text = concat3("tcp://", host, ":80");
  parse_bad(text, SK_EP_CONNECT, "too long|long");
  free(text);
  free(host);
}

/* ---- invalid endpoints ---------------------------------------------------- */

typedef struct {
  const char *text;
  int modes;         /* where it must fail */
  const char *words; /* the message names one of these */
} bad_case_t;

#define W_PORT "port"
#define W_JUNK "port|trailing|junk|after|extra|unexpected"
#define W_SCHEME "scheme|unknown|unsupported|type|kind"
#define W_BRACKET "]|bracket|unclosed|unterminated|missing"
#define W_V6 "ipv6|v6"
#define W_PATH "path|empty|name"

static const bad_case_t bad_cases[] = {
  /* empty and unknown schemes */
  {"", M_BOTH, "empty|scheme|missing|endpoint"},
  {"foo://h:80", M_BOTH, W_SCHEME},
  {"http://example.com:80", M_BOTH, W_SCHEME},
  {"sctp://h:80", M_BOTH, W_SCHEME},
  {"tcp6://h:80", M_BOTH, W_SCHEME},
  {"h:80", M_BOTH, W_SCHEME},
  {"example.com", M_BOTH, W_SCHEME},
  {"tcp//h:80", M_BOTH, W_SCHEME},
  {"tcp:h:80", M_BOTH, W_SCHEME "|//|form|expect|syntax"},
  {"unix", M_BOTH, W_SCHEME "|path|expect|missing"},
  {"unixx:/tmp/s", M_BOTH, W_SCHEME},
  {"unix-stream:/tmp/s", M_BOTH, W_SCHEME},
  {"--", M_BOTH, W_SCHEME},
  {"stdio:", M_BOTH, W_SCHEME "|stdio|trailing|junk|after|extra"},
  {"stdiox", M_BOTH, W_SCHEME},
  {"://h:80", M_BOTH, W_SCHEME},
  /* missing port */
  {"tcp://h", M_BOTH, W_PORT},
  {"tcp://h:", M_BOTH, W_PORT},
  {"tcp://127.0.0.1", M_BOTH, W_PORT},
  {"tcp://[::1]", M_BOTH, W_PORT},
  {"tcp://[::1]:", M_BOTH, W_PORT},
  {"udp://h", M_BOTH, W_PORT},
  {"tls://example.com", M_BOTH, W_PORT},
  {"tcp://", M_BOTH, "port|host|empty|missing"},
  {"tcp://:", M_BOTH, "port|host|empty|missing"},
  /* port out of range */
  {"tcp://h:65536", M_BOTH, W_PORT},
  {"tcp://h:99999", M_BOTH, W_PORT},
  {"udp://h:65536", M_BOTH, W_PORT},
  {"tls://h:70000", M_BOTH, W_PORT},
  {"tcp://h:-1", M_BOTH, W_PORT},
  {"tcp://h:-80", M_BOTH, W_PORT},
  {"tcp://h:4294967376", M_BOTH, W_PORT},           /* 2^32 + 80 */
  {"tcp://h:18446744073709551696", M_BOTH, W_PORT}, /* 2^64 + 80 */
  {"tcp://h:99999999999999999999999999999999", M_BOTH, W_PORT},
  {"tcp://[::1]:65536", M_BOTH, W_PORT},
  /* non-numeric port */
  {"tcp://h:abc", M_BOTH, W_PORT},
  {"tcp://h:http", M_BOTH, W_PORT},
  {"tcp://h:8o", M_BOTH, W_JUNK},
  {"tcp://h:0x50", M_BOTH, W_JUNK},
  {"tcp://h:+80", M_BOTH, W_PORT},
  {"tcp://h: 80", M_BOTH, W_PORT},
  {"tcp://h:\t80", M_BOTH, W_PORT},
  /* junk after the port */
  {"tcp://h:80x", M_BOTH, W_JUNK},
  {"tcp://h:80/", M_BOTH, W_JUNK},
  {"tcp://h:80/path", M_BOTH, W_JUNK},
  {"tcp://h:80 ", M_BOTH, W_JUNK},
  {"tcp://h:80\n", M_BOTH, W_JUNK},
  {"tcp://[::1]:80x", M_BOTH, W_JUNK},
  {"tcp://[::1]80", M_BOTH, W_JUNK "|expect"},
  {"tcp://[::1]x:80", M_BOTH, W_JUNK "|expect"},
  {"tcp://h:80:90", M_BOTH, W_JUNK "|host|ipv6|bracket|colon"},
  /* port 0 and empty host only where listening */
  {"tcp://h:0", M_CONNECT, W_PORT},
  {"udp://127.0.0.1:0", M_CONNECT, W_PORT},
  {"tcp://[::1]:0", M_CONNECT, W_PORT},
  {"tcp://:80", M_CONNECT, "host|address|empty"},
  {"udp://:53", M_CONNECT, "host|address|empty"},
  {"tcp://h:00000", M_CONNECT, W_PORT},
  /* brackets */
  {"tcp://[::1:80", M_BOTH, W_BRACKET},
  {"tcp://[::1", M_BOTH, W_BRACKET},
  {"tcp://[", M_BOTH, W_BRACKET},
  {"tcp://[:80", M_BOTH, W_BRACKET},
  {"udp://[2001:db8::1:53", M_BOTH, W_BRACKET},
  {"tcp://[example.com]:80", M_BOTH, W_V6},
  {"tcp://[127.0.0.1]:80", M_BOTH, W_V6},
  {"tcp://[localhost]:80", M_BOTH, W_V6},
  {"tcp://[::1::2]:80", M_BOTH, W_V6},
  {"tcp://[]:80", M_BOTH, W_V6 "|empty|host"},
  {"tcp://[]:0", M_BOTH, W_V6 "|empty|host"},
  /* unix paths */
  {"unix:", M_BOTH, W_PATH},
  {"unix-dgram:", M_BOTH, W_PATH},
  {"unix-seqpacket:", M_BOTH, W_PATH},
  {"unix:@", M_BOTH, W_PATH},
  {"unix-dgram:@", M_BOTH, W_PATH},
};

#define N_BAD (sizeof bad_cases / sizeof bad_cases[0])

static void test_invalid_forms(void **state) {
  (void)state;
  for (size_t i = 0; i < N_BAD; i++) {
    const bad_case_t *c = &bad_cases[i];
    if (c->modes & M_CONNECT)
      parse_bad(c->text, SK_EP_CONNECT, c->words);
    if (c->modes & M_LISTEN)
      parse_bad(c->text, SK_EP_LISTEN, c->words);
  }
}

/* A short error buffer is filled, truncated and terminated, never overrun. */
static void test_short_err_buffer(void **state) {
  (void)state;
  static const char *const bad[] = {"tcp://h:99999", "foo://x:1", "unix:", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    for (size_t len = 1; len <= 12; len += 11) {
      char *err = malloc(len);
      sk_endpoint_t ep;
      assert_non_null(err);
      memset(err, 'X', len);
      assert_int_equal(sk_endpoint_parse(&ep, bad[i], SK_EP_CONNECT, err, len), -EINVAL);
      assert_true(strnlen(err, len) < len);
      free(err);
    }
  }
}

/* An IPv6 address without brackets is ambiguous ("::1:80"); the parser
 * either refuses it or takes the last colon as the port separator, and then
 * formats it back with brackets. */
static void test_unbracketed_v6(void **state) {
  (void)state;
  sk_endpoint_t ep;
  char err[SK_ERRLEN], out[SK_ENDPOINT_STRLEN];
  int rc = sk_endpoint_parse(&ep, "tcp://::1:80", SK_EP_CONNECT, err, sizeof err);
  assert_true(rc == 0 || rc == -EINVAL);
  if (rc == 0) {
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, 80);
    sk_endpoint_format(&ep, out, sizeof out);
    assert_string_equal(out, "tcp://[::1]:80");
  }
}

/* ---- every prefix, and one-byte mutations: parse or fail cleanly ---------- */

static void check_clean(const char *text, size_t n) {
  char *copy = exact_copy(text, n);
  for (int m = 0; m < 2; m++) {
    sk_ep_mode_t mode = m ? SK_EP_LISTEN : SK_EP_CONNECT;
    sk_endpoint_t ep;
    char err[SK_ERRLEN];
    memset(err, 'X', sizeof err);
    int rc = sk_endpoint_parse(&ep, copy, mode, err, sizeof err);
    if (rc == 0) {
      check_reformat(&ep, mode, copy);
    } else if (rc == -EINVAL) {
      size_t elen = strnlen(err, sizeof err);
      if (elen == 0 || elen == sizeof err)
        fail_msg("parse '%s' (%s): -EINVAL with empty or unterminated message", copy,
                 mode_name(mode));
    } else {
      fail_msg("parse '%s' (%s): returned %d, expected 0 or -EINVAL", copy, mode_name(mode),
               rc);
    }
  }
  free(copy);
}

static void test_every_prefix(void **state) {
  (void)state;
  for (size_t i = 0; i < N_VALID; i++) {
    const char *t = valid_cases[i].text;
    for (size_t n = 0; n <= strlen(t); n++)
      check_clean(t, n);
  }
  for (size_t i = 0; i < N_BAD; i++) {
    const char *t = bad_cases[i].text;
    for (size_t n = 0; n <= strlen(t); n++)
      check_clean(t, n);
  }
}

/* Specific prefixes with a known outcome. */
static void test_prefix_outcomes(void **state) {
  (void)state;
  /* "tcp://h:8" is a prefix of "tcp://h:80" and a valid endpoint itself. */
  sk_endpoint_t ep;
  parse_ok(&ep, "tcp://h:8", SK_EP_CONNECT);
  assert_int_equal(ep.port, 8);
  parse_bad("tcp://h:", SK_EP_CONNECT, W_PORT);
  parse_bad("tcp://h", SK_EP_CONNECT, W_PORT);
  parse_bad("tcp:/", SK_EP_CONNECT, NULL);
  parse_bad("tcp:", SK_EP_CONNECT, NULL);
  parse_bad("t", SK_EP_CONNECT, NULL);
  parse_ok(&ep, "unix:/", SK_EP_CONNECT); /* the path "/" is a path */
  assert_string_equal(ep.path, "/");
  parse_ok(&ep, "unix:@a", SK_EP_CONNECT);
  assert_string_equal(ep.path, "a");
  assert_int_equal(ep.flags, SK_EP_ABSTRACT);
}

static void test_mutations(void **state) {
  (void)state;
  static const char subst[] = {':', '[', ']', '@', '/', '9', '0', 'x', ' ', '%',
                               '-', '.', '\xff', '\x01'};
  for (size_t i = 0; i < N_VALID; i++) {
    const char *t = valid_cases[i].text;
    size_t n = strlen(t);
    char *buf = malloc(n + 2);
    assert_non_null(buf);
    for (size_t pos = 0; pos < n; pos++) {
      for (size_t s = 0; s < sizeof subst; s++) {
        memcpy(buf, t, n + 1);
        buf[pos] = subst[s];
        check_clean(buf, n);
      }
      /* drop one byte */
      memcpy(buf, t, pos);
      memcpy(buf + pos, t + pos + 1, n - pos);
      check_clean(buf, n - 1);
    }
    free(buf);
  }
}

/* ---- kinds -------------------------------------------------------------- */

static void test_socktype(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int socktype;
    int connected;
  } cases[] = {
    {"tcp://h:1", SOCK_STREAM, 1},
    {"tls://h:1", SOCK_STREAM, 1},
    {"udp://h:1", SOCK_DGRAM, 0},
    {"unix:/s", SOCK_STREAM, 1},
    {"unix:@s", SOCK_STREAM, 1},
    {"unix-dgram:/s", SOCK_DGRAM, 0},
    {"unix-seqpacket:/s", SOCK_SEQPACKET, 1},
    {"-", 0, 0},
    {"stdio", 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_endpoint_t ep;
    parse_ok(&ep, cases[i].text, SK_EP_CONNECT);
    if (sk_endpoint_socktype(&ep) != cases[i].socktype)
      fail_msg("socktype of '%s': %d, expected %d", cases[i].text,
               sk_endpoint_socktype(&ep), cases[i].socktype);
    if (sk_endpoint_is_connected(&ep) != cases[i].connected)
      fail_msg("is_connected of '%s': %d, expected %d", cases[i].text,
               sk_endpoint_is_connected(&ep), cases[i].connected);
  }
}

/* ---- CIDR ------------------------------------------------------------------ */

static void make_sa(sk_sockaddr_t *sa, const char *ip, uint16_t port) {
  memset(sa, 0, sizeof *sa);
  if (strchr(ip, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa->ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    sa->len = sizeof *s6;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&sa->ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    sa->len = sizeof *s4;
  }
}

static void test_cidr_parse_valid(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int family;
    unsigned prefix;
  } cases[] = {
    {"10.0.0.0/8", AF_INET, 8},       {"192.168.1.0/24", AF_INET, 24},
    {"1.2.3.4", AF_INET, 32},         {"1.2.3.4/32", AF_INET, 32},
    {"0.0.0.0/0", AF_INET, 0},        {"10.0.0.0/9", AF_INET, 9},
    {"::1", AF_INET6, 128},           {"::1/128", AF_INET6, 128},
    {"fe80::/10", AF_INET6, 10},      {"::/0", AF_INET6, 0},
    {"2001:db8::/32", AF_INET6, 32},  {"2001:db8::/127", AF_INET6, 127},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_cidr_t c;
    char err[SK_ERRLEN] = "";
    char *copy = exact_copy(cases[i].text, strlen(cases[i].text));
    int rc = sk_cidr_parse(&c, copy, err, sizeof err);
    free(copy);
    if (rc != 0)
      fail_msg("cidr '%s': expected 0, got %d (%s)", cases[i].text, rc, err);
    if (c.family != cases[i].family || c.prefix != cases[i].prefix)
      fail_msg("cidr '%s': family %d prefix %u, expected %d /%u", cases[i].text, c.family,
               c.prefix, cases[i].family, cases[i].prefix);
  }
}

static void test_cidr_parse_invalid(void **state) {
  (void)state;
  static const char *const cases[] = {
    "",           "abc",          "10.0.0.0/33",   "::/129",        "10.0.0.0/",
    "/8",         "10.0.0.0/8x",  "10.0.0.0/-1",   "10.0.0.0/ 8",   "10.0.0/8",
    "1.2.3.4.5",  "256.0.0.0/8",  "10.0.0.0/8/8",  "10.0.0.0//8",   "::1/",
    "10.0.0.0/4294967304",        "::/18446744073709551744",        "1.2.3.4 ",
    " 1.2.3.4",   "example.com/8", "fe80::/1000",   "10.0.0.0/x",    ":::/8",
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_cidr_t c;
    char err[SK_ERRLEN];
    char *copy = exact_copy(cases[i], strlen(cases[i]));
    memset(err, 'X', sizeof err);
    int rc = sk_cidr_parse(&c, copy, err, sizeof err);
    free(copy);
    if (rc != -EINVAL)
      fail_msg("cidr '%s': expected -EINVAL, got %d (family %d prefix %u)", cases[i], rc,
               rc == 0 ? c.family : 0, rc == 0 ? c.prefix : 0);
    size_t elen = strnlen(err, sizeof err);
    if (elen == 0 || elen == sizeof err)
      fail_msg("cidr '%s': empty or unterminated message", cases[i]);
    if (!strstr(err, cases[i]))
      fail_msg("cidr '%s': message does not quote the input: %s", cases[i], err);
  }
}

static void test_cidr_match(void **state) {
  (void)state;
  static const struct {
    const char *cidr;
    const char *ip;
    int want;
  } cases[] = {
    {"10.0.0.0/8", "10.0.0.1", 1},
    {"10.0.0.0/8", "10.255.255.255", 1},
    {"10.0.0.0/8", "11.0.0.0", 0},
    {"10.0.0.0/8", "9.255.255.255", 0},
    {"10.0.0.0/8", "::ffff:10.1.2.3", 1},
    {"10.0.0.0/8", "::ffff:11.1.2.3", 0},
    {"10.0.0.0/8", "::1", 0},
    {"10.0.0.0/8", "a00::1", 0}, /* same first bytes, other family */
    {"10.0.0.0/9", "10.127.255.255", 1},
    {"10.0.0.0/9", "10.128.0.0", 0},
    {"192.168.1.0/24", "192.168.1.200", 1},
    {"192.168.1.0/24", "192.168.2.1", 0},
    {"192.168.1.0/31", "192.168.1.1", 1},
    {"192.168.1.0/31", "192.168.1.2", 0},
    {"1.2.3.4", "1.2.3.4", 1},
    {"1.2.3.4", "1.2.3.5", 0},
    {"1.2.3.4", "::ffff:1.2.3.4", 1},
    {"0.0.0.0/0", "8.8.8.8", 1},
    {"0.0.0.0/0", "255.255.255.255", 1},
    {"0.0.0.0/0", "::ffff:1.2.3.4", 1},
    {"0.0.0.0/0", "::1", 0},
    {"::1", "::1", 1},
    {"::1", "::2", 0},
    {"::1", "127.0.0.1", 0},
    {"fe80::/10", "fe80::1", 1},
    {"fe80::/10", "febf:ffff::1", 1},
    {"fe80::/10", "fec0::1", 0},
    {"fe80::/10", "fe7f::1", 0},
    {"2001:db8::/32", "2001:db8:ffff::1", 1},
    {"2001:db8::/32", "2001:db9::", 0},
    {"2001:db8::/127", "2001:db8::1", 1},
    {"2001:db8::/127", "2001:db8::2", 0},
    {"::/0", "2001:db8::1", 1},
    {"::/0", "::1", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_cidr_t c;
    sk_sockaddr_t sa;
    char err[SK_ERRLEN] = "";
    int rc = sk_cidr_parse(&c, cases[i].cidr, err, sizeof err);
    if (rc != 0)
      fail_msg("cidr '%s': %d %s", cases[i].cidr, rc, err);
    make_sa(&sa, cases[i].ip, 1234);
    int got = sk_cidr_match(&c, &sa);
    if (got != cases[i].want)
      fail_msg("match %s in %s: got %d, expected %d", cases[i].ip, cases[i].cidr, got,
               cases[i].want);
  }
}

/* A block written with host bits set either is refused or matches by its
 * prefix only; it never matches only the exact address. */
static void test_cidr_host_bits(void **state) {
  (void)state;
  sk_cidr_t c;
  sk_sockaddr_t sa;
  char err[SK_ERRLEN];
  int rc = sk_cidr_parse(&c, "10.1.2.3/8", err, sizeof err);
  assert_true(rc == 0 || rc == -EINVAL);
  if (rc == 0) {
    make_sa(&sa, "10.9.9.9", 1);
    assert_int_equal(sk_cidr_match(&c, &sa), 1);
    make_sa(&sa, "11.1.2.3", 1);
    assert_int_equal(sk_cidr_match(&c, &sa), 0);
  }
}

/* ---- socket addresses ------------------------------------------------------ */

static void test_sockaddr_format_inet(void **state) {
  (void)state;
  static const struct {
    const char *ip;
    uint16_t port;
    const char *want;
  } cases[] = {
    {"127.0.0.1", 80, "127.0.0.1:80"},
    {"0.0.0.0", 0, "0.0.0.0:0"},
    {"255.255.255.255", 65535, "255.255.255.255:65535"},
    {"::1", 80, "[::1]:80"},
    {"::", 0, "[::]:0"},
    {"2001:db8::1", 443, "[2001:db8::1]:443"},
    {"::ffff:1.2.3.4", 5, "1.2.3.4:5"},
    {"::ffff:127.0.0.1", 8080, "127.0.0.1:8080"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_sockaddr_t sa;
    char out[128];
    make_sa(&sa, cases[i].ip, cases[i].port);
    memset(out, 'X', sizeof out);
    char *r = sk_sockaddr_format(&sa, out, sizeof out);
    assert_ptr_equal(r, out);
    if (strcmp(out, cases[i].want) != 0)
      fail_msg("format %s port %u: '%s', expected '%s'", cases[i].ip,
               (unsigned)cases[i].port, out, cases[i].want);
    assert_int_equal(sk_sockaddr_port(&sa), cases[i].port);

    /* a buffer one byte short truncates and terminates, never overruns */
    size_t n = strlen(cases[i].want);
    char *small = malloc(n);
    assert_non_null(small);
    sk_sockaddr_format(&sa, small, n);
    assert_true(strnlen(small, n) < n);
    free(small);
  }
}

static void test_sockaddr_format_unix(void **state) {
  (void)state;
  sk_sockaddr_t sa;
  struct sockaddr_un *un = (struct sockaddr_un *)&sa.ss;
  char out[SK_ENDPOINT_STRLEN];
  size_t base = offsetof(struct sockaddr_un, sun_path);

  /* path, length counting the NUL (as getsockname reports it) */
  memset(&sa, 0, sizeof sa);
  un->sun_family = AF_UNIX;
  memset(un->sun_path, 'Z', sizeof un->sun_path);
  memcpy(un->sun_path, "/tmp/x", 7);
  sa.len = (socklen_t)(base + 7);
  sk_sockaddr_format(&sa, out, sizeof out);
  assert_string_equal(out, "/tmp/x");
  assert_int_equal(sk_sockaddr_port(&sa), 0);

  /* path, length without the NUL: the bytes past len are not the name */
  memset(un->sun_path, 'Z', sizeof un->sun_path);
  memcpy(un->sun_path, "/tmp/y", 6);
  sa.len = (socklen_t)(base + 6);
  sk_sockaddr_format(&sa, out, sizeof out);
  assert_string_equal(out, "/tmp/y");

  /* a full 108-byte path with no NUL inside sun_path */
  memset(un->sun_path, 'q', sizeof un->sun_path);
  sa.len = (socklen_t)(base + sizeof un->sun_path);
  sk_sockaddr_format(&sa, out, sizeof out);
  assert_int_equal(strlen(out), sizeof un->sun_path);

  /* abstract: leading NUL, name by length */
  memset(un->sun_path, 'Z', sizeof un->sun_path);
  un->sun_path[0] = '\0';
  memcpy(un->sun_path + 1, "abc", 3);
  sa.len = (socklen_t)(base + 4);
  sk_sockaddr_format(&sa, out, sizeof out);
  assert_string_equal(out, "@abc");

  /* unnamed */
  sa.len = (socklen_t)sizeof(sa_family_t);
  sk_sockaddr_format(&sa, out, sizeof out);
  assert_string_equal(out, "(unnamed)");
}

/* Real addresses from the kernel: a socketpair is unnamed, a bound
 * loopback socket shows its port. */
static void test_sockaddr_format_kernel(void **state) {
  (void)state;
  int sv[2];
  sk_sockaddr_t sa;
  char out[SK_ENDPOINT_STRLEN];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  sa.len = sizeof sa.ss;
  assert_int_equal(getsockname(sv[0], (struct sockaddr *)&sa.ss, &sa.len), 0);
  sk_sockaddr_format(&sa, out, sizeof out);
  assert_string_equal(out, "(unnamed)");
  close(sv[0]);
  close(sv[1]);

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  sa.len = sizeof sa.ss;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa.ss, &sa.len), 0);
  int port = ntohs(((struct sockaddr_in *)&sa.ss)->sin_port);
  char want[64];
  snprintf(want, sizeof want, "127.0.0.1:%d", port);
  sk_sockaddr_format(&sa, out, sizeof out);
  assert_string_equal(out, want);
  assert_int_equal(sk_sockaddr_port(&sa), port);
  close(fd);
}

/* sk_net_addresses: numeric hosts give their one address with the port,
 * unix kinds their path, at most max; stdio and no room are refused. */
static void test_net_addresses(void **state) {
  (void)state;
  sk_endpoint_t ep;
  sk_sockaddr_t a[4];
  char err[SK_ERRLEN], out[SK_ENDPOINT_STRLEN];
  assert_int_equal(sk_endpoint_parse(&ep, "tcp://127.0.0.1:6667", SK_EP_CONNECT, err, sizeof err), 0);
  assert_int_equal(sk_net_addresses(&ep, a, 4, err, sizeof err), 1);
  sk_sockaddr_format(&a[0], out, sizeof out);
  assert_string_equal(out, "127.0.0.1:6667");
  assert_int_equal(sk_endpoint_parse(&ep, "tcp://[::1]:7", SK_EP_CONNECT, err, sizeof err), 0);
  assert_int_equal(sk_net_addresses(&ep, a, 4, err, sizeof err), 1);
  assert_int_equal(a[0].ss.ss_family, AF_INET6);
  assert_int_equal(sk_sockaddr_port(&a[0]), 7);
  assert_int_equal(sk_endpoint_parse(&ep, "unix:/run/x.sock", SK_EP_CONNECT, err, sizeof err), 0);
  assert_int_equal(sk_net_addresses(&ep, a, 4, err, sizeof err), 1);
  assert_int_equal(a[0].ss.ss_family, AF_UNIX);
  assert_string_equal(((struct sockaddr_un *)&a[0].ss)->sun_path, "/run/x.sock");
  assert_int_equal(sk_endpoint_parse(&ep, "unix:@abs", SK_EP_CONNECT, err, sizeof err), 0);
  assert_int_equal(sk_net_addresses(&ep, a, 1, err, sizeof err), 1);
  assert_int_equal(a[0].len, offsetof(struct sockaddr_un, sun_path) + 4);
  /* a name may give several; never more than max */
  assert_int_equal(sk_endpoint_parse(&ep, "tcp://localhost:1", SK_EP_CONNECT, err, sizeof err), 0);
  int n = sk_net_addresses(&ep, a, 1, err, sizeof err);
  assert_int_equal(n, 1);
  assert_int_equal(sk_sockaddr_port(&a[0]), 1);
  assert_int_equal(sk_net_addresses(&ep, a, 0, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "resolve tcp://localhost:1: not a socket address"));
  assert_int_equal(sk_endpoint_parse(&ep, "-", SK_EP_CONNECT, err, sizeof err), 0);
  assert_int_equal(sk_net_addresses(&ep, a, 4, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "not a socket address"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_valid_forms),
    cmocka_unit_test(test_format_roundtrip),
    cmocka_unit_test(test_format_brackets_v6),
    cmocka_unit_test(test_format_lengths),
    cmocka_unit_test(test_unix_path_limits),
    cmocka_unit_test(test_host_limits),
    cmocka_unit_test(test_invalid_forms),
    cmocka_unit_test(test_short_err_buffer),
    cmocka_unit_test(test_unbracketed_v6),
    cmocka_unit_test(test_every_prefix),
    cmocka_unit_test(test_prefix_outcomes),
    cmocka_unit_test(test_mutations),
    cmocka_unit_test(test_socktype),
    cmocka_unit_test(test_cidr_parse_valid),
    cmocka_unit_test(test_cidr_parse_invalid),
    cmocka_unit_test(test_cidr_match),
    cmocka_unit_test(test_cidr_host_bits),
    cmocka_unit_test(test_sockaddr_format_inet),
    cmocka_unit_test(test_sockaddr_format_unix),
    cmocka_unit_test(test_sockaddr_format_kernel),
    cmocka_unit_test(test_net_addresses),
  };
  return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
