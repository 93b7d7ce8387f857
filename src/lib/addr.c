/* addr.c - the endpoint grammar, socket address formatting, CIDR blocks.
 *
 * Pure code: no I/O, no allocation. Every error message quotes the input and
 * names the part that is wrong, because a person typed it.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sockit/addr.h"

/* ---- endpoint parsing ---------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int bad(char *err, size_t errlen, const char *text,
                                                     const char *fmt, ...) {
  if (err && errlen) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "bad endpoint '%.60s%s': %s", text, strlen(text) > 60 ? "..." : "",
             what);
  }
  return -EINVAL;
}

static const struct {
  const char *prefix;
  sk_ep_kind_t kind;
  unsigned flags;
  int inet; /* host:port after the prefix, else a unix path */
} schemes[] = {
    {"tcp://", SK_EP_TCP, 0, 1},
    {"udp://", SK_EP_UDP, 0, 1},
    {"tls://", SK_EP_TCP, SK_EP_TLS, 1},
    {"unix-seqpacket:", SK_EP_UNIX_SEQPACKET, 0, 0},
    {"unix-dgram:", SK_EP_UNIX_DGRAM, 0, 0},
    {"unix:", SK_EP_UNIX, 0, 0},
};

static int valid_hostname(const char *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
      return 0;
  }
  return 1;
}

/* Parses "host:port", "[v6]:port" or ":port" (listen) into ep. */
static int parse_inet(sk_endpoint_t *ep, const char *text, const char *s, sk_ep_mode_t mode,
                      char *err, size_t errlen) {
  const char *host, *host_end, *p;
  if (*s == '[') {
    host = s + 1;
    host_end = strchr(host, ']');
    if (!host_end)
      return bad(err, errlen, text, "%s", "missing ']' after IPv6 address");
    p = host_end + 1;
    size_t n = (size_t)(host_end - host);
    if (n == 0)
      return bad(err, errlen, text, "%s", "empty IPv6 address in []");
    char lit[INET6_ADDRSTRLEN + 1];
    const char *pct = memchr(host, '%', n);
    size_t addr_n = pct ? (size_t)(pct - host) : n;
    struct in6_addr a6;
    if (addr_n >= sizeof lit)
      return bad(err, errlen, text, "%s", "bad IPv6 address in []");
    memcpy(lit, host, addr_n);
    lit[addr_n] = '\0';
    if (inet_pton(AF_INET6, lit, &a6) != 1)
      return bad(err, errlen, text, "'%s' is not an IPv6 address", lit);
    if (pct && (n - addr_n < 2 || !valid_hostname(pct + 1, n - addr_n - 1)))
      return bad(err, errlen, text, "%s", "bad IPv6 zone after '%'");
    ep->flags |= SK_EP_V6LIT;
  } else {
    host = s;
    host_end = strchr(s, ':');
    if (!host_end) {
      if (*s == '\0')
        return bad(err, errlen, text, "%s", "missing host and port");
      return bad(err, errlen, text, "%s", "missing port (expected host:port)");
    }
    p = host_end;
    size_t n = (size_t)(host_end - host);
    if (strchr(host_end + 1, ':'))
      return bad(err, errlen, text, "%s", "an IPv6 address must be written in [brackets]");
    if (!valid_hostname(host, n))
      return bad(err, errlen, text, "%s", "bad character in host name");
  }
  size_t hn = (size_t)(host_end - host);
  if (hn > SK_HOST_MAX)
    return bad(err, errlen, text, "host name too long (over %s bytes)", "253");
  memcpy(ep->host, host, hn);
  ep->host[hn] = '\0';
  if (hn == 0 && mode == SK_EP_CONNECT)
    return bad(err, errlen, text, "%s", "missing host (only a listen endpoint may omit it)");

  if (*p != ':')
    return bad(err, errlen, text, "%s", "missing port (expected :port after the address)");
  p++;
  if (*p == '\0')
    return bad(err, errlen, text, "%s", "missing port number after ':'");
  size_t digits = strspn(p, "0123456789");
  if (digits == 0) {
    char shown[24];
    snprintf(shown, sizeof shown, "%.20s", p);
    return bad(err, errlen, text, "port '%s' is not a number", shown);
  }
  if (p[digits] != '\0') {
    char shown[24];
    snprintf(shown, sizeof shown, "%.20s", p + digits);
    return bad(err, errlen, text, "junk '%s' after the port", shown);
  }
  char num[24];
  if (digits > 6) {
    snprintf(num, sizeof num, "%.20s", p);
    return bad(err, errlen, text, "port %s out of range 1-65535", num);
  }
  memcpy(num, p, digits);
  num[digits] = '\0';
  long port = strtol(num, NULL, 10);
  if (port > 65535)
    return bad(err, errlen, text, "port %s out of range 1-65535", num);
  if (port == 0 && mode == SK_EP_CONNECT)
    return bad(err, errlen, text, "%s", "port 0 is only for listening (connect needs 1-65535)");
  ep->port = (uint16_t)port;
  return 0;
}

static int parse_unix(sk_endpoint_t *ep, const char *text, const char *s, char *err,
                      size_t errlen) {
  if (*s == '@') {
    ep->flags |= SK_EP_ABSTRACT;
    s++;
    if (*s == '\0')
      return bad(err, errlen, text, "%s", "empty abstract socket name after '@'");
  } else if (*s == '\0') {
    return bad(err, errlen, text, "%s", "missing socket path");
  }
  size_t n = strlen(s);
  if (n > SK_UNIX_PATH_MAX)
    return bad(err, errlen, text, "unix socket path too long (%s bytes at most)", "107");
  memcpy(ep->path, s, n + 1);
  return 0;
}

int sk_endpoint_parse(sk_endpoint_t *ep, const char *text, sk_ep_mode_t mode, char *err,
                      size_t errlen) {
  memset(ep, 0, sizeof *ep);
  if (!text || *text == '\0')
    return bad(err, errlen, text ? text : "", "%s", "empty endpoint");
  if (strcmp(text, "-") == 0 || strcmp(text, "stdio") == 0) {
    ep->kind = SK_EP_STDIO;
    return 0;
  }
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    size_t n = strlen(schemes[i].prefix);
    if (strncmp(text, schemes[i].prefix, n) != 0)
      continue;
    ep->kind = schemes[i].kind;
    ep->flags = schemes[i].flags;
    int r = schemes[i].inet ? parse_inet(ep, text, text + n, mode, err, errlen)
                            : parse_unix(ep, text, text + n, err, errlen);
    if (r < 0)
      memset(ep, 0, sizeof *ep);
    return r;
  }
  const char *colon = strchr(text, ':');
  if (colon) {
    char scheme[32];
    snprintf(scheme, sizeof scheme, "%.*s", (int)(colon - text) > 24 ? 24 : (int)(colon - text),
             text);
    return bad(err, errlen, text,
               "unknown scheme '%s' (expected tcp://, udp://, tls://, unix:, "
               "unix-dgram:, unix-seqpacket: or -)",
               scheme);
  }
  return bad(err, errlen, text, "%s",
             "missing scheme (expected tcp://host:port, udp://host:port, unix:/path or -)");
}

char *sk_endpoint_format(const sk_endpoint_t *ep, char *buf, size_t len) {
  const char *scheme = "?";
  switch (ep->kind) {
  case SK_EP_TCP: scheme = (ep->flags & SK_EP_TLS) ? "tls://" : "tcp://"; break;
  case SK_EP_UDP: scheme = "udp://"; break;
  case SK_EP_UNIX: scheme = "unix:"; break;
  case SK_EP_UNIX_DGRAM: scheme = "unix-dgram:"; break;
  case SK_EP_UNIX_SEQPACKET: scheme = "unix-seqpacket:"; break;
  case SK_EP_STDIO: snprintf(buf, len, "-"); return buf;
  }
  if (ep->kind == SK_EP_TCP || ep->kind == SK_EP_UDP) {
    int v6 = strchr(ep->host, ':') != NULL;
    snprintf(buf, len, "%s%s%s%s:%u", scheme, v6 ? "[" : "", ep->host, v6 ? "]" : "",
             (unsigned)ep->port);
  } else {
    snprintf(buf, len, "%s%s%s", scheme, (ep->flags & SK_EP_ABSTRACT) ? "@" : "", ep->path);
  }
  return buf;
}

int sk_endpoint_socktype(const sk_endpoint_t *ep) {
  switch (ep->kind) {
  case SK_EP_TCP:
  case SK_EP_UNIX: return SOCK_STREAM;
  case SK_EP_UDP:
  case SK_EP_UNIX_DGRAM: return SOCK_DGRAM;
  case SK_EP_UNIX_SEQPACKET: return SOCK_SEQPACKET;
  case SK_EP_STDIO: return 0;
  }
  return 0;
}

int sk_endpoint_is_connected(const sk_endpoint_t *ep) {
  int t = sk_endpoint_socktype(ep);
  return t == SOCK_STREAM || t == SOCK_SEQPACKET;
}

/* ---- socket addresses ---------------------------------------------------- */

/* If sa is an IPv4-mapped IPv6 address, writes the IPv4 form to out and
 * returns out; else returns sa. */
static const sk_sockaddr_t *unmap(const sk_sockaddr_t *sa, sk_sockaddr_t *out) {
  if (sa->ss.ss_family != AF_INET6)
    return sa;
  const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa->ss;
  if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
    return sa;
  struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
  memset(out, 0, sizeof *out);
  s4->sin_family = AF_INET;
  s4->sin_port = s6->sin6_port;
  memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
  out->len = sizeof *s4;
  return out;
}

char *sk_sockaddr_format(const sk_sockaddr_t *in, char *buf, size_t len) {
  sk_sockaddr_t tmp;
  const sk_sockaddr_t *sa = unmap(in, &tmp);
  char host[INET6_ADDRSTRLEN];
  switch (sa->ss.ss_family) {
  case AF_INET: {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa->ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
    snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(s4->sin_port));
    break;
  }
  case AF_INET6: {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa->ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
    snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
    break;
  }
  case AF_UNIX: {
    const struct sockaddr_un *su = (const struct sockaddr_un *)&sa->ss;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = sa->len > off ? sa->len - off : 0;
    if (n == 0) {
      snprintf(buf, len, "(unnamed)");
    } else if (su->sun_path[0] == '\0') {
      snprintf(buf, len, "@%.*s", (int)(n - 1), su->sun_path + 1);
    } else {
      snprintf(buf, len, "%.*s", (int)strnlen(su->sun_path, n), su->sun_path);
    }
    break;
  }
  default: snprintf(buf, len, "(family %d)", (int)sa->ss.ss_family); break;
  }
  return buf;
}

int sk_sockaddr_port(const sk_sockaddr_t *sa) {
  if (sa->ss.ss_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)&sa->ss)->sin_port);
  if (sa->ss.ss_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)&sa->ss)->sin6_port);
  return 0;
}

/* ---- CIDR blocks ---------------------------------------------------------- */

int sk_cidr_parse(sk_cidr_t *c, const char *text, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  char addr[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(text, '/');
  size_t n = slash ? (size_t)(slash - text) : strlen(text);
  if (n == 0 || n >= sizeof addr)
    goto bad_addr;
  memcpy(addr, text, n);
  addr[n] = '\0';
  if (inet_pton(AF_INET, addr, c->addr) == 1) {
    c->family = AF_INET;
    c->prefix = 32;
  } else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
    c->family = AF_INET6;
    c->prefix = 128;
  } else {
    goto bad_addr;
  }
  if (slash) {
    const char *p = slash + 1;
    size_t d = strspn(p, "0123456789");
    if (d == 0 || d > 3 || p[d] != '\0' || (unsigned)atoi(p) > c->prefix) {
      if (err)
        snprintf(err, errlen, "bad address block '%.64s': prefix length must be 0-%u", text,
                 c->prefix);
      return -EINVAL;
    }
    c->prefix = (unsigned)atoi(p);
  }
  return 0;
bad_addr:
  if (err)
    snprintf(err, errlen, "bad address block '%.64s': expected ADDRESS or ADDRESS/BITS", text);
  return -EINVAL;
}

int sk_cidr_match(const sk_cidr_t *c, const sk_sockaddr_t *in) {
  sk_sockaddr_t tmp;
  const sk_sockaddr_t *sa = unmap(in, &tmp);
  const uint8_t *a;
  if (sa->ss.ss_family != c->family)
    return 0;
  if (c->family == AF_INET)
    a = (const uint8_t *)&((const struct sockaddr_in *)&sa->ss)->sin_addr;
  else
    a = ((const struct sockaddr_in6 *)&sa->ss)->sin6_addr.s6_addr;
  unsigned full = c->prefix / 8, rest = c->prefix % 8;
  if (memcmp(a, c->addr, full) != 0)
    return 0;
  if (rest) {
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    if ((a[full] & mask) != (c->addr[full] & mask))
      return 0;
  }
  return 1;
}
