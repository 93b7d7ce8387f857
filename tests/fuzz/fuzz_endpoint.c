/* tests/fuzz/fuzz_endpoint.c - sk_endpoint_parse, sk_endpoint_format and
 * sk_cidr_parse on arbitrary bytes.
 *
 * Properties checked (abort() on a violation, so libFuzzer and the replay
 * driver both report it):
 *  - parse returns 0 or -EINVAL, and on -EINVAL leaves a non-empty,
 *    NUL-terminated message in err;
 *  - a parsed endpoint formats to text that fits SK_ENDPOINT_STRLEN and
 *    parses again, in the same mode, to an equal endpoint whose text is the
 *    same again (format is a fixed point);
 *  - what a listen endpoint may lack (host, port), a connect endpoint has;
 *  - a parsed CIDR block has a sane family and prefix, matches its own
 *    network address, and matching any address does not crash.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "fuzz_endpoint: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

/* SK_EP_V6LIT records how the host was spelled; format brackets every IPv6
 * host, so the flag may appear on re-parse. Everything else must match. */
static int ep_equal(const sk_endpoint_t *a, const sk_endpoint_t *b) {
  return a->kind == b->kind && (a->flags & ~SK_EP_V6LIT) == (b->flags & ~SK_EP_V6LIT) &&
         a->port == b->port && strcmp(a->host, b->host) == 0 &&
         strcmp(a->path, b->path) == 0;
}

static int is_unix_kind(sk_ep_kind_t k) {
  return k == SK_EP_UNIX || k == SK_EP_UNIX_DGRAM || k == SK_EP_UNIX_SEQPACKET;
}

static void check_message(const char *err) {
  size_t n = strnlen(err, SK_ERRLEN);
  CHECK(n > 0);
  CHECK(n < SK_ERRLEN);
}

static void fuzz_endpoint_mode(const char *text, sk_ep_mode_t mode) {
  sk_endpoint_t ep, ep2;
  char err[SK_ERRLEN], out[SK_ENDPOINT_STRLEN], out2[SK_ENDPOINT_STRLEN];

  memset(err, 'X', sizeof err);
  int rc = sk_endpoint_parse(&ep, text, mode, err, sizeof err);
  if (rc != 0) {
    CHECK(rc == -EINVAL);
    check_message(err);
    return;
  }

  CHECK(ep.kind >= SK_EP_TCP && ep.kind <= SK_EP_STDIO);
  CHECK(strnlen(ep.host, sizeof ep.host) < sizeof ep.host);
  CHECK(strnlen(ep.path, sizeof ep.path) < sizeof ep.path);
  if (ep.kind == SK_EP_TCP || ep.kind == SK_EP_UDP) {
    if (mode == SK_EP_CONNECT) {
      CHECK(ep.host[0] != '\0');
      CHECK(ep.port != 0);
    }
  } else {
    CHECK((ep.flags & SK_EP_TLS) == 0);
  }
  if (is_unix_kind(ep.kind))
    CHECK(ep.path[0] != '\0');
  else
    CHECK((ep.flags & SK_EP_ABSTRACT) == 0);

  memset(out, 'X', sizeof out);
  CHECK(sk_endpoint_format(&ep, out, sizeof out) == out);
  CHECK(strnlen(out, sizeof out) < sizeof out);

  memset(err, 'X', sizeof err);
  rc = sk_endpoint_parse(&ep2, out, mode, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "fuzz_endpoint: '%s' formats as '%s', which fails to parse: %s\n", text,
            out, err);
    abort();
  }
  if (!ep_equal(&ep, &ep2)) {
    fprintf(stderr, "fuzz_endpoint: '%s' formats as '%s', which parses differently\n", text,
            out);
    abort();
  }
  sk_endpoint_format(&ep2, out2, sizeof out2);
  if (strcmp(out, out2) != 0) {
    fprintf(stderr, "fuzz_endpoint: format not a fixed point: '%s' -> '%s' -> '%s'\n", text,
            out, out2);
    abort();
  }
  int st = sk_endpoint_socktype(&ep);
  CHECK(st == 0 || st == SOCK_STREAM || st == SOCK_DGRAM || st == SOCK_SEQPACKET);
  CHECK((st == 0) == (ep.kind == SK_EP_STDIO));
}

static void make_sa(sk_sockaddr_t *sa, int family, const uint8_t *addr) {
  memset(sa, 0, sizeof *sa);
  if (family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&sa->ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(1);
    memcpy(&s4->sin_addr, addr, 4);
    sa->len = sizeof *s4;
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa->ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(1);
    memcpy(&s6->sin6_addr, addr, 16);
    sa->len = sizeof *s6;
  }
}

static void fuzz_cidr(const char *text, const uint8_t *data, size_t size) {
  sk_cidr_t c;
  char err[SK_ERRLEN];
  memset(err, 'X', sizeof err);
  int rc = sk_cidr_parse(&c, text, err, sizeof err);
  if (rc != 0) {
    CHECK(rc == -EINVAL);
    check_message(err);
    return;
  }
  CHECK(c.family == AF_INET || c.family == AF_INET6);
  CHECK(c.prefix <= (c.family == AF_INET ? 32u : 128u));

  /* The address a block was written with lies in it: parse the text's
   * address part ourselves and check. */
  char addr_text[64];
  const char *slash = strchr(text, '/');
  size_t alen = slash ? (size_t)(slash - text) : strlen(text);
  if (alen < sizeof addr_text) {
    union {
      uint8_t bytes[16];
      struct in6_addr a6;
    } addr;
    memcpy(addr_text, text, alen);
    addr_text[alen] = '\0';
    /* (An IPv4-mapped IPv6 address counts as IPv4, so it lies in no IPv6
     * block, not even its own: skip those.) */
    if (inet_pton(c.family, addr_text, addr.bytes) == 1 &&
        !(c.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&addr.a6))) {
      sk_sockaddr_t sa;
      make_sa(&sa, c.family, addr.bytes);
      CHECK(sk_cidr_match(&c, &sa) == 1);
    }
  }

  /* Matching arbitrary addresses of both families must not crash. */
  uint8_t raw[16] = {0};
  memcpy(raw, data, size < sizeof raw ? size : sizeof raw);
  sk_sockaddr_t sa;
  make_sa(&sa, AF_INET, raw);
  int m = sk_cidr_match(&c, &sa);
  CHECK(m == 0 || m == 1);
  make_sa(&sa, AF_INET6, raw);
  m = sk_cidr_match(&c, &sa);
  CHECK(m == 0 || m == 1);
  if (c.prefix == 0 && c.family == AF_INET) {
    make_sa(&sa, AF_INET, raw);
    CHECK(sk_cidr_match(&c, &sa) == 1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Endpoints are command-line words: a few hundred bytes is plenty to
   * reach every limit (host 253, path 107) and keeps each run fast. */
  if (size > 4096)
    return 0;
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  fuzz_endpoint_mode(text, SK_EP_CONNECT);
  fuzz_endpoint_mode(text, SK_EP_LISTEN);
  fuzz_cidr(text, data, size);
  free(text);
  return 0;
}
