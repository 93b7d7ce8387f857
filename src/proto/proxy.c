/* proxy.c - SOCKS5 and HTTP CONNECT messages, as pure code (see
 * sockit/proxy.h). No I/O, no allocation: every message fits the caller's
 * buffer, every parser stops at the end of its message. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sockit/error.h"
#include "sockit/proxy.h"

/* ---- proxy URLs ------------------------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Copies s[0..n) into out (cap bytes with the NUL), decoding %XX. Returns
 * the decoded length or -1 when it is malformed, too long, or holds a NUL. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      if (i + 2 >= n)
        return -1;
      int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
      if (hi < 0 || lo < 0)
        return -1;
      c = hi * 16 + lo;
      i += 2;
    }
    if (c == 0 || o + 1 >= cap)
      return -1;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return (int)o;
}

static int url_err(char *err, size_t errlen, const char *scheme, const char *why) {
  return sk_err_set(-EINVAL, err, errlen, "bad proxy '%s://...': %s", scheme, why);
}

int sk_proxy_parse(sk_proxy_t *p, const char *url, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  const char *sep = strstr(url, "://");
  char scheme[16];
  size_t sl = sep ? (size_t)(sep - url) : 0;
  if (!sep || sl == 0 || sl >= sizeof scheme)
    return sk_err_set(-EINVAL, err, errlen,
                      "bad proxy '%.80s': give socks5://HOST:PORT or http://HOST:PORT", url);
  for (size_t i = 0; i < sl; i++)
    scheme[i] = (char)(url[i] >= 'A' && url[i] <= 'Z' ? url[i] + 32 : url[i]);
  scheme[sl] = '\0';
  uint16_t defport;
  if (!strcmp(scheme, "socks5") || !strcmp(scheme, "socks5h")) {
    p->kind = SK_PROXY_SOCKS5;
    defport = 1080;
  } else if (!strcmp(scheme, "http")) {
    p->kind = SK_PROXY_HTTP;
    defport = 8080;
  } else {
    return sk_err_set(-EINVAL, err, errlen,
                      "bad proxy '%s://...': the scheme must be socks5, socks5h or http", scheme);
  }
  const char *rest = sep + 3;
  size_t len = strcspn(rest, "/");
  if (rest[len] == '/' && rest[len + 1] != '\0')
    return url_err(err, errlen, scheme, "a proxy URL has no path");
  const char *at = memchr(rest, '@', len);
  if (at) {
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    if (!colon)
      return url_err(err, errlen, scheme, "credentials are USER:PASS@");
    if (pct_decode(rest, (size_t)(colon - rest), p->user, sizeof p->user) <= 0 ||
        pct_decode(colon + 1, (size_t)(at - colon - 1), p->pass, sizeof p->pass) <= 0)
      return url_err(err, errlen, scheme, "user and password are 1-255 bytes (%XX escapes)");
    p->has_auth = 1;
    len -= (size_t)(at + 1 - rest);
    rest = at + 1;
  }
  char hostport[SK_HOST_MAX + 16];
  if (len == 0 || len >= sizeof hostport)
    return url_err(err, errlen, scheme, "no host");
  memcpy(hostport, rest, len);
  hostport[len] = '\0';
  /* A port is present when the text ends in :DIGITS after any ']'. */
  const char *close = strrchr(hostport, ']');
  const char *colon = strrchr(close ? close : hostport, ':');
  char text[SK_HOST_MAX + 40];
  if (colon && (close || strchr(hostport, ':') == colon))
    snprintf(text, sizeof text, "tcp://%s", hostport);
  else if (!close && strchr(hostport, ':'))
    snprintf(text, sizeof text, "tcp://[%s]:%u", hostport, defport);
  else
    snprintf(text, sizeof text, "tcp://%s:%u", hostport, defport);
  char perr[SK_ERRLEN];
  if (sk_endpoint_parse(&p->ep, text, SK_EP_CONNECT, perr, sizeof perr) < 0)
    return sk_err_set(-EINVAL, err, errlen, "bad proxy '%s://%s': %s", scheme, hostport, perr);
  return 0;
}

/* ---- SOCKS5 ----------------------------------------------------------------------------- */

size_t sk_socks5_greeting(uint8_t out[SK_SOCKS5_MSG_MAX], int with_password) {
  out[0] = 5;
  out[1] = 1;
  out[2] = with_password ? SK_SOCKS5_USERPASS : SK_SOCKS5_NOAUTH;
  return 3;
}

ssize_t sk_socks5_method_parse(const uint8_t *in, size_t len, int *method) {
  if (len >= 1 && in[0] != 5)
    return SK_EBADINPUT;
  if (len < 2)
    return SK_EAGAIN;
  *method = in[1];
  return 2;
}

ssize_t sk_socks5_auth_request(uint8_t out[SK_SOCKS5_MSG_MAX], const char *user,
                               const char *pass) {
  size_t ul = strlen(user), pl = strlen(pass);
  if (ul == 0 || ul > SK_PROXY_CRED_MAX || pl == 0 || pl > SK_PROXY_CRED_MAX)
    return -EINVAL;
  out[0] = 1;
  out[1] = (uint8_t)ul;
  memcpy(out + 2, user, ul);
  out[2 + ul] = (uint8_t)pl;
  memcpy(out + 3 + ul, pass, pl);
  return (ssize_t)(3 + ul + pl);
}

ssize_t sk_socks5_auth_reply_parse(const uint8_t *in, size_t len, int *ok) {
  if (len >= 1 && in[0] != 1)
    return SK_EBADINPUT;
  if (len < 2)
    return SK_EAGAIN;
  *ok = in[1] == 0;
  return 2;
}

ssize_t sk_socks5_request(uint8_t out[SK_SOCKS5_MSG_MAX], int cmd, const char *host,
                          uint16_t port) {
  size_t n = 0;
  out[n++] = 5;
  out[n++] = (uint8_t)cmd;
  out[n++] = 0;
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    out[n++] = 1;
    memcpy(out + n, &a4, 4);
    n += 4;
  } else if (inet_pton(AF_INET6, host, &a6) == 1) {
    out[n++] = 4;
    memcpy(out + n, &a6, 16);
    n += 16;
  } else {
    size_t hl = strlen(host);
    if (hl == 0 || hl > 255)
      return -EINVAL;
    out[n++] = 3;
    out[n++] = (uint8_t)hl;
    memcpy(out + n, host, hl);
    n += hl;
  }
  out[n++] = (uint8_t)(port >> 8);
  out[n++] = (uint8_t)port;
  return (ssize_t)n;
}

ssize_t sk_socks5_reply_parse(const uint8_t *in, size_t len, int *rep, sk_sockaddr_t *bound) {
  if ((len >= 1 && in[0] != 5) || (len >= 3 && in[2] != 0))
    return SK_EBADINPUT;
  if (len < 5)
    return SK_EAGAIN;
  size_t need;
  switch (in[3]) {
  case 1: need = 4 + 4 + 2; break;
  case 4: need = 4 + 16 + 2; break;
  case 3: need = 4 + 1 + (size_t)in[4] + 2; break;
  default: return SK_EBADINPUT;
  }
  if (len < need)
    return SK_EAGAIN;
  *rep = in[1];
  memset(bound, 0, sizeof *bound);
  uint16_t port = (uint16_t)(in[need - 2] << 8 | in[need - 1]);
  if (in[3] == 1) {
    struct sockaddr_in *s = (struct sockaddr_in *)&bound->ss;
    s->sin_family = AF_INET;
    memcpy(&s->sin_addr, in + 4, 4);
    s->sin_port = htons(port);
    bound->len = sizeof *s;
  } else if (in[3] == 4) {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&bound->ss;
    s->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, in + 4, 16);
    s->sin6_port = htons(port);
    bound->len = sizeof *s;
  }
  return (ssize_t)need;
}

const char *sk_socks5_reply_str(int rep) {
  static const char *const words[] = {"succeeded",
                                      "general SOCKS server failure",
                                      "connection not allowed by ruleset",
                                      "network unreachable",
                                      "host unreachable",
                                      "connection refused",
                                      "TTL expired",
                                      "command not supported",
                                      "address type not supported"};
  if (rep >= 0 && rep < (int)(sizeof words / sizeof words[0]))
    return words[rep];
  return "unknown SOCKS5 reply code";
}

/* ---- HTTP CONNECT ----------------------------------------------------------------------- */

ssize_t sk_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t need = (n + 2) / 3 * 4;
  if (need + 1 > cap)
    return SK_ETOOBIG;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n)
      v |= in[i + 2];
    out[o++] = tab[v >> 18 & 63];
    out[o++] = tab[v >> 12 & 63];
    out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? tab[v & 63] : '=';
  }
  out[o] = '\0';
  return (ssize_t)o;
}

ssize_t sk_http_connect_request(char *out, size_t cap, const char *host, uint16_t port,
                                const char *user, const char *pass) {
  int v6 = strchr(host, ':') != NULL;
  char auth[2 * 4 * (SK_PROXY_CRED_MAX + 2) / 3 + 64] = "";
  if (user) {
    uint8_t cred[2 * SK_PROXY_CRED_MAX + 2];
    int cl = snprintf((char *)cred, sizeof cred, "%s:%s", user, pass ? pass : "");
    char b64[sizeof auth - 40];
    if (cl < 0 || (size_t)cl >= sizeof cred ||
        sk_base64_encode(cred, (size_t)cl, b64, sizeof b64) < 0)
      return SK_ETOOBIG;
    snprintf(auth, sizeof auth, "Proxy-Authorization: Basic %s\r\n", b64);
  }
  int n = snprintf(out, cap, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n%s\r\n",
                   v6 ? "[" : "", host, v6 ? "]" : "", port, v6 ? "[" : "", host,
                   v6 ? "]" : "", port, auth);
  if (n < 0 || (size_t)n >= cap)
    return SK_ETOOBIG;
  return n;
}

ssize_t sk_http_connect_reply_parse(const char *in, size_t len, int *status, char *reason,
                                    size_t reason_len) {
  static const char prefix[] = "HTTP/1.";
  size_t cmp = len < 7 ? len : 7;
  if (memcmp(in, prefix, cmp) != 0)
    return SK_EBADINPUT;
  if (len >= 8 && (in[7] != '0' && in[7] != '1'))
    return SK_EBADINPUT;
  if (len >= 9 && in[8] != ' ')
    return SK_EBADINPUT;
  for (size_t i = 9; i < 12 && i < len; i++)
    if (in[i] < '0' || in[i] > '9')
      return SK_EBADINPUT;
  if (len >= 13 && in[12] != ' ' && in[12] != '\r' && in[12] != '\n')
    return SK_EBADINPUT;
  /* The head ends at the first empty line (CRLF CRLF, or bare LFs). */
  size_t end = 0;
  for (size_t i = 0; i < len && !end; i++) {
    if (in[i] != '\n')
      continue;
    if (i + 1 < len && in[i + 1] == '\n')
      end = i + 2;
    else if (i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n')
      end = i + 3;
  }
  if (!end)
    return len >= SK_PROXY_REPLY_MAX ? SK_ETOOBIG : SK_EAGAIN;
  if (end > SK_PROXY_REPLY_MAX)
    return SK_ETOOBIG;
  if (end < 13)
    return SK_EBADINPUT;
  *status = (in[9] - '0') * 100 + (in[10] - '0') * 10 + (in[11] - '0');
  size_t r = 0, i = 13;
  if (in[12] == ' ')
    for (; i < end && in[i] != '\r' && in[i] != '\n'; i++)
      if (reason_len && r + 1 < reason_len)
        reason[r++] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
  if (reason_len)
    reason[r] = '\0';
  return (ssize_t)end;
}
