/* tests/fuzz/fuzz_proxy.c - the proxy replies and URLs (sockit/proxy.h) on
 * arbitrary bytes.
 *
 * Input: one selector byte, then what a proxy (or a user) sends. Checked
 * (abort() on a violation):
 *  - a parser that accepts a message reports a length inside the input, and
 *    the same length for every longer input that starts with it (it never
 *    reads past its message: the rest is the tunnel's);
 *  - every shorter prefix of an accepted message is "need more";
 *  - the HTTP reason phrase is NUL-terminated, printable ASCII, and fits;
 *  - a proxy URL either parses to an endpoint with a port and a proxy kind,
 *    or is refused with a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/error.h"
#include "sockit/proxy.h"

static ssize_t parse(int which, const uint8_t *in, size_t len) {
  int v;
  sk_sockaddr_t b;
  char reason[32];
  switch (which) {
  case 0: return sk_socks5_method_parse(in, len, &v);
  case 1: return sk_socks5_auth_reply_parse(in, len, &v);
  case 2: return sk_socks5_reply_parse(in, len, &v, &b);
  default: {
    ssize_t r = sk_http_connect_reply_parse((const char *)in, len, &v, reason, sizeof reason);
    if (r > 0) {
      size_t n = strnlen(reason, sizeof reason);
      if (n == sizeof reason)
        abort();
      for (size_t i = 0; i < n; i++)
        if (reason[i] < 0x20 || reason[i] >= 0x7f)
          abort();
      if (v < 0 || v > 999)
        abort();
    }
    return r;
  }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  int which = data[0] % 5;
  const uint8_t *in = data + 1;
  size_t len = size - 1;
  if (which == 4) {
    char url[512];
    size_t n = len < sizeof url - 1 ? len : sizeof url - 1;
    memcpy(url, in, n);
    url[n] = '\0';
    sk_proxy_t p;
    char err[SK_ERRLEN];
    int r = sk_proxy_parse(&p, url, err, sizeof err);
    if (r == 0 && (p.ep.port == 0 || p.kind == SK_PROXY_NONE || p.ep.kind != SK_EP_TCP))
      abort();
    if (r < 0 && err[0] == '\0')
      abort();
    return 0;
  }
  ssize_t whole = parse(which, in, len);
  if (whole > (ssize_t)len)
    abort();
  if (whole > 0) {
    for (size_t k = 0; k < (size_t)whole; k++)
      if (parse(which, in, k) != SK_EAGAIN)
        abort();
    if (parse(which, in, (size_t)whole) != whole)
      abort();
  }
  return 0;
}
