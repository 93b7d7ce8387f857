/* http.c - a strict HTTP/1.1 request-head parser (include/sockit/http.h).
 * Pure code over the caller's bytes: no I/O, no allocation.
 *
 * The parser is one pass of a byte-at-a-time state machine (the shape of
 * nginx's request-line parser). Each byte is judged when it is reached,
 * using only the bytes before it, and the first byte that breaks a rule
 * ends the parse. So a prefix of a stream can only say "need more" or
 * give the answer the whole stream gives: the split of a stream into
 * reads never changes the result, and a bad request is refused at its
 * first bad byte, not when (or if) its head ends. */
#include <limits.h>
#include <string.h>

#include "sockit/http.h"

/* ---- characters --------------------------------------------------------------------- */

/* tchar of RFC 9110 section 5.6.2: the characters of methods and field names. */
static int is_tchar(unsigned c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  switch (c) {
  case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
  case '-': case '.': case '^': case '_': case '`': case '|': case '~':
    return 1;
  default:
    return 0;
  }
}

static unsigned lower(unsigned c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

static int is_ows(unsigned c) { return c == ' ' || c == '\t'; }

/* ---- the request head --------------------------------------------------------------- */

enum {
  S_EMPTY,       /* before the request line: an empty line or the method */
  S_EMPTY_LF,    /* the LF of an empty line */
  S_METHOD,
  S_TARGET0,     /* the target's first byte */
  S_TARGET,
  S_STAR,        /* after the "*" of OPTIONS * */
  S_VERSION,     /* "HTTP/" DIGIT "." DIGIT CR */
  S_LINE_LF,     /* the LF of the request line */
  S_FIELD,       /* a field line's first byte, or the CR of the final empty line */
  S_NAME,
  S_OWS,         /* spaces after the colon */
  S_VALUE,
  S_FIELD_LF,
  S_END_LF       /* the LF of the final empty line */
};

/* 1 if t[0..n) is an absolute-form target: scheme "://" and a non-empty
 * authority (RFC 9112 section 3.2.2 asks servers to accept it). */
static int absolute_form(const char *t, size_t n) {
  size_t i = 0;
  while (i < n && (((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z') ||
                   (i > 0 && ((t[i] >= '0' && t[i] <= '9') || t[i] == '+' || t[i] == '-' ||
                              t[i] == '.'))))
    i++;
  return i > 0 && n - i > 3 && memcmp(t + i, "://", 3) == 0 && t[i + 3] != '/';
}

int sk_http_parse_request(const char *data, size_t len, size_t max_head,
                          sk_http_request_t *req) {
  const unsigned char *s = (const unsigned char *)data;
  /* Only the first max_head bytes are looked at: a head that has not ended
   * there is too big whatever follows. */
  if (max_head > INT_MAX)
    max_head = INT_MAX; /* the head's length must fit the int returned */
  size_t lim = len < max_head ? len : max_head;
  size_t line = 0;      /* where the request line starts */
  size_t mark = 0;      /* where the current method, target, version, name or value starts */
  size_t value_end = 0; /* end of the value without trailing spaces */
  int state = S_EMPTY;
  req->nheaders = 0;
  for (size_t i = 0; i < lim; i++) {
    unsigned c = s[i];
    sk_http_header_t *h = &req->headers[req->nheaders];
    switch (state) {
    case S_EMPTY:
      if (c == '\r') {
        state = S_EMPTY_LF;
        break;
      }
      line = mark = i;
      state = S_METHOD;
      /* fall through */
    case S_METHOD:
      if (is_tchar(c))
        break;
      if (c != ' ' || i == mark)
        return SK_HTTP_BAD;
      req->method = data + mark;
      req->method_len = i - mark;
      state = S_TARGET0;
      break;
    case S_EMPTY_LF:
      if (c != '\n')
        return SK_HTTP_BAD;
      state = S_EMPTY;
      break;
    case S_TARGET0:
      mark = i;
      if (c == '/' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        state = S_TARGET; /* origin-form, or absolute-form (checked at its end) */
      else if (c == '*' && req->method_len == 7 && memcmp(req->method, "OPTIONS", 7) == 0)
        state = S_STAR;
      else
        return SK_HTTP_BAD; /* "*" for other methods, a second SP, ... */
      break;
    case S_TARGET:
      if (c == ' ') {
        if (data[mark] != '/' && !absolute_form(data + mark, i - mark))
          return SK_HTTP_BAD; /* authority-form (CONNECT) or nonsense */
        req->target = data + mark;
        req->target_len = i - mark;
        mark = i + 1;
        state = S_VERSION;
      } else if (c <= ' ' || c >= 0x7F) {
        return SK_HTTP_BAD;
      } else if (i - mark >= SK_HTTP_TARGET_MAX) {
        return SK_HTTP_URI_TOO_LONG;
      }
      break;
    case S_STAR:
      if (c != ' ')
        return SK_HTTP_BAD;
      req->target = data + mark;
      req->target_len = 1;
      mark = i + 1;
      state = S_VERSION;
      break;
    case S_VERSION: {
      /* The syntax is HTTP-name "/" DIGIT "." DIGIT (RFC 9112 section 2.3),
       * a '9' in form standing for any digit; a well-formed version other
       * than 1.0 or 1.1 is 505, not 400. */
      static const char form[] = "HTTP/9.9\r";
      size_t k = i - mark;
      int ok = form[k] == '9' ? c >= '0' && c <= '9' : c == (unsigned char)form[k];
      if (!ok)
        return SK_HTTP_BAD;
      if (k == sizeof form - 2)
        state = S_LINE_LF;
      break;
    }
    case S_LINE_LF:
      if (c != '\n')
        return SK_HTTP_BAD;
      if (s[mark + 5] != '1' || s[mark + 7] > '1')
        return SK_HTTP_VERSION;
      req->minor_version = s[mark + 7] - '0';
      state = S_FIELD;
      break;
    case S_FIELD:
      if (c == '\r') {
        state = S_END_LF;
        break;
      }
      if (req->nheaders == SK_HTTP_HEADERS_MAX)
        return SK_HTTP_HEAD_TOO_BIG;
      if (!is_tchar(c))
        return SK_HTTP_BAD; /* obs-fold (SP or HTAB first), bare LF, empty name, controls */
      mark = i;
      state = S_NAME;
      break;
    case S_NAME:
      if (is_tchar(c))
        break;
      if (c != ':')
        return SK_HTTP_BAD; /* a space before the colon, a control, no colon */
      h->name = data + mark;
      h->name_len = i - mark;
      state = S_OWS;
      break;
    case S_OWS:
      if (is_ows(c))
        break;
      mark = value_end = i;
      state = S_VALUE;
      /* fall through */
    case S_VALUE:
      if (c == '\r') {
        h->value = data + mark;
        h->value_len = value_end - mark;
        req->nheaders++;
        state = S_FIELD_LF;
      } else if ((c < ' ' && c != '\t') || c == 0x7F) {
        return SK_HTTP_BAD; /* NUL, bare LF and other controls */
      } else if (!is_ows(c)) {
        value_end = i + 1; /* obs-text (0x80-0xFF) is allowed in values */
      }
      break;
    case S_FIELD_LF:
      if (c != '\n')
        return SK_HTTP_BAD;
      state = S_FIELD;
      break;
    case S_END_LF:
      if (c != '\n')
        return SK_HTTP_BAD;
      return (int)(i + 1);
    }
  }
  if (len < max_head)
    return SK_HTTP_INCOMPLETE;
  if (state >= S_METHOD && state <= S_LINE_LF && lim - line > SK_HTTP_TARGET_MAX)
    return SK_HTTP_URI_TOO_LONG;
  return SK_HTTP_HEAD_TOO_BIG;
}

/* ---- header fields ------------------------------------------------------------------- */

int sk_http_name_eq(const char *name, size_t len, const char *lit) {
  for (size_t i = 0; i < len; i++)
    if (lit[i] == '\0' || lower((unsigned char)name[i]) != lower((unsigned char)lit[i]))
      return 0;
  return lit[len] == '\0';
}

const sk_http_header_t *sk_http_header_find(const sk_http_request_t *req, const char *name,
                                            size_t *count) {
  const sk_http_header_t *first = NULL;
  size_t n = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    if (!sk_http_name_eq(req->headers[i].name, req->headers[i].name_len, name))
      continue;
    if (!first)
      first = &req->headers[i];
    n++;
  }
  if (count)
    *count = n;
  return first;
}

int sk_http_has_token(const char *value, size_t len, const char *token) {
  size_t i = 0;
  while (i < len) {
    size_t start, end;
    while (i < len && is_ows((unsigned char)value[i]))
      i++;
    start = i;
    while (i < len && value[i] != ',')
      i++;
    end = i;
    while (end > start && is_ows((unsigned char)value[end - 1]))
      end--;
    if (sk_http_name_eq(value + start, end - start, token))
      return 1;
    i++; /* the comma */
  }
  return 0;
}

/* 1 if any field named name holds token: a list may be split over several
 * fields of the same name (RFC 9110 section 5.3). */
static int any_has_token(const sk_http_request_t *req, const char *name, const char *token) {
  for (size_t i = 0; i < req->nheaders; i++) {
    const sk_http_header_t *h = &req->headers[i];
    if (sk_http_name_eq(h->name, h->name_len, name) &&
        sk_http_has_token(h->value, h->value_len, token))
      return 1;
  }
  return 0;
}

int sk_http_body_length(const sk_http_request_t *req, uint64_t *out) {
  const sk_http_header_t *first = NULL;
  *out = 0;
  if (sk_http_header_find(req, "Transfer-Encoding", NULL))
    return SK_HTTP_BAD;
  /* Every Content-Length must be the same string of digits: a request
   * whose framing two parsers could read differently is refused, which is
   * what closes the door on request smuggling. */
  for (size_t i = 0; i < req->nheaders; i++) {
    const sk_http_header_t *h = &req->headers[i];
    if (!sk_http_name_eq(h->name, h->name_len, "Content-Length"))
      continue;
    if (first) {
      if (h->value_len != first->value_len || memcmp(h->value, first->value, h->value_len) != 0)
        return SK_HTTP_BAD;
      continue;
    }
    if (h->value_len == 0)
      return SK_HTTP_BAD;
    uint64_t v = 0;
    for (size_t k = 0; k < h->value_len; k++) {
      unsigned d = (unsigned char)h->value[k] - '0';
      if (d > 9 || v > (UINT64_MAX - d) / 10)
        return SK_HTTP_BAD;
      v = v * 10 + d;
    }
    first = h;
    *out = v;
  }
  return 0;
}

/* ---- the Host header ------------------------------------------------------------------- */

static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }

static int hex_value(unsigned c) {
  if (is_digit(c))
    return (int)(c - '0');
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : -1;
}

/* reg-name's characters other than %XX (RFC 3986 section 3.2.2):
 * unreserved and sub-delims. */
static int is_reg_name_char(unsigned c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c))
    return 1;
  return c != '\0' && strchr("-._~!$&'()*+,;=", (int)c) != NULL;
}

/* 1 if s[0..n) is an IPv4address (dec-octet "." x 4, no leading zeros),
 * with its bytes in out. */
static int parse_ipv4(const char *s, size_t n, uint8_t out[4]) {
  size_t i = 0;
  for (int k = 0; k < 4; k++) {
    if (k && (i == n || s[i++] != '.'))
      return 0;
    size_t start = i;
    unsigned v = 0;
    while (i < n && is_digit((unsigned char)s[i]) && i - start < 3)
      v = v * 10 + (unsigned)(s[i++] - '0');
    if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
      return 0;
    out[k] = (uint8_t)v;
  }
  return i == n;
}

/* 1 if s[0..n) is an IPv6address of RFC 3986 (eight h16, or fewer around
 * one "::", the last 32 bits maybe as an IPv4address), with its bytes in
 * out. */
static int parse_ipv6(const char *s, size_t n, uint8_t out[16]) {
  unsigned g[8];
  int ng = 0, gap = -1;
  size_t i = 0;
  if (n >= 2 && s[0] == ':' && s[1] == ':') {
    gap = 0;
    i = 2;
  }
  while (i < n) {
    size_t j = i;
    unsigned v = 0;
    while (j < n && j - i < 5 && hex_value((unsigned char)s[j]) >= 0)
      v = v * 16 + (unsigned)hex_value((unsigned char)s[j++]);
    if (j < n && s[j] == '.') { /* the IPv4 tail: the last two groups */
      uint8_t v4[4];
      if (ng > 6 || !parse_ipv4(s + i, n - i, v4))
        return 0;
      g[ng++] = (unsigned)v4[0] << 8 | v4[1];
      g[ng++] = (unsigned)v4[2] << 8 | v4[3];
      break;
    }
    if (j == i || j - i > 4 || ng == 8)
      return 0;
    g[ng++] = v;
    if (j == n)
      break;
    if (s[j++] != ':' || j == n)
      return 0; /* not a separator, or a single ':' at the end */
    if (s[j] == ':') {
      if (gap >= 0)
        return 0; /* a second "::" */
      gap = ng;
      j++;
    }
    i = j;
  }
  if (gap < 0 ? ng != 8 : ng > 7)
    return 0;
  memset(out, 0, 16);
  int tail = gap < 0 ? 0 : ng - gap; /* the groups after "::" go to the end */
  for (int k = 0; k < ng; k++) {
    int at = k < ng - tail ? k : 8 - (ng - k);
    out[2 * at] = (uint8_t)(g[k] >> 8);
    out[2 * at + 1] = (uint8_t)g[k];
  }
  return 1;
}

int sk_http_host_parse(const char *value, size_t len, sk_http_host_t *out) {
  memset(out, 0, sizeof *out);
  out->port = -1;
  size_t i = 0;
  if (len && value[0] == '[') {
    const char *end = memchr(value, ']', len);
    if (!end || !parse_ipv6(value + 1, (size_t)(end - value) - 1, out->addr))
      return SK_HTTP_BAD;
    out->kind = SK_HTTP_HOST_IPV6;
    out->name = value + 1;
    out->name_len = (size_t)(end - value) - 1;
    i = out->name_len + 2;
  } else {
    while (i < len && value[i] != ':') {
      if (value[i] == '%') {
        if (len - i < 3 || hex_value((unsigned char)value[i + 1]) < 0 ||
            hex_value((unsigned char)value[i + 2]) < 0)
          return SK_HTTP_BAD;
        i += 3;
      } else if (is_reg_name_char((unsigned char)value[i])) {
        i++;
      } else {
        return SK_HTTP_BAD;
      }
    }
    out->name = value;
    out->name_len = i;
    out->kind = parse_ipv4(value, i, out->addr) ? SK_HTTP_HOST_IPV4 : SK_HTTP_HOST_NAME;
  }
  if (i == len)
    return 0;
  if (value[i++] != ':')
    return SK_HTTP_BAD;
  long port = i < len ? 0 : -1; /* "host:" is a host without a port */
  for (; i < len; i++) {
    if (!is_digit((unsigned char)value[i]) || (port = port * 10 + (value[i] - '0')) > 65535)
      return SK_HTTP_BAD;
  }
  out->port = (int)port;
  return 0;
}

int sk_http_keep_alive(const sk_http_request_t *req) {
  if (any_has_token(req, "Connection", "close"))
    return 0;
  return req->minor_version >= 1 || any_has_token(req, "Connection", "keep-alive");
}

const char *sk_http_reason(int status) {
  static const struct {
    int status;
    const char *reason;
  } reasons[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {201, "Created"},
      {204, "No Content"},
      {206, "Partial Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {410, "Gone"},
      {411, "Length Required"},
      {412, "Precondition Failed"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {415, "Unsupported Media Type"},
      {416, "Range Not Satisfiable"},
      {417, "Expectation Failed"},
      {426, "Upgrade Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
  };
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
    if (reasons[i].status == status)
      return reasons[i].reason;
  return "Unknown";
}
