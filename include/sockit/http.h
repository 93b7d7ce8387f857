/* sockit/http.h - a strict HTTP/1.1 request-head parser: pure code over the
 * caller's bytes (no I/O, no allocation).
 *
 * Enough HTTP for a server that hands out a few files and upgrades to
 * WebSocket, and strict about it: what is not clearly valid is refused with
 * the status a client can act on, never guessed at.
 *
 *   - request line: METHOD SP request-target SP HTTP/1.x CRLF, method a
 *     token, target in origin-form ("/..."), absolute-form
 *     ("http://host/...": the caller takes the path from it), or "*" for
 *     OPTIONS (authority-form, CONNECT's, is refused); no
 *     control characters, no spaces, no bytes above 0x7E in the target;
 *   - header fields: token ":" OWS value OWS CRLF; obsolete line folding,
 *     a space before the colon, bare CR or LF, NUL and other controls
 *     (except HTAB inside values) are refused (RFC 9112 section 5);
 *   - empty lines (CRLF) before the request line are skipped, as RFC 9112
 *     section 2.2 allows; LF alone ends a line nowhere.
 *
 * Every split of a stream into calls gives the same result: call again with
 * the same data and more behind it until the head is complete.
 */
#ifndef SOCKIT_HTTP_H
#define SOCKIT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_HTTP_HEAD_MAX 8192    /* default limit of a request head, CRLFs included */
#define SK_HTTP_TARGET_MAX 2048  /* longest request-target */
#define SK_HTTP_HEADERS_MAX 32   /* most header fields in one request */

/* Results of sk_http_parse_request, besides the head's length (> 0). */
#define SK_HTTP_INCOMPLETE 0     /* no complete head yet: read more */
#define SK_HTTP_BAD (-400)       /* malformed: 400 Bad Request */
#define SK_HTTP_URI_TOO_LONG (-414) /* target over SK_HTTP_TARGET_MAX: 414 */
#define SK_HTTP_HEAD_TOO_BIG (-431) /* head over the limit, or too many fields: 431 */
#define SK_HTTP_VERSION (-505)   /* not HTTP/1.0 or HTTP/1.1: 505 */

typedef struct {
  const char *name; /* as sent (compare without case: sk_http_name_eq) */
  size_t name_len;
  const char *value; /* without leading and trailing spaces and tabs */
  size_t value_len;
} sk_http_header_t;

typedef struct {
  const char *method;
  size_t method_len;
  const char *target; /* path and query as sent, e.g. "/ws?x=1" */
  size_t target_len;
  int minor_version; /* HTTP/1.minor_version: 0 or 1 */
  sk_http_header_t headers[SK_HTTP_HEADERS_MAX];
  size_t nheaders;
} sk_http_request_t;

/* Parses the request head at data[0..len), which may hold less or more
 * than one head (pipelining). Returns the length of the head including its
 * final empty line (> 0), with *req pointing into data; SK_HTTP_INCOMPLETE
 * when more is needed and the head may still fit in max_head bytes; or one
 * of the negative SK_HTTP_* statuses. A head that has not ended within
 * max_head bytes is SK_HTTP_HEAD_TOO_BIG (SK_HTTP_URI_TOO_LONG while its
 * request line is still unfinished and longer than SK_HTTP_TARGET_MAX). */
SK_API int sk_http_parse_request(const char *data, size_t len, size_t max_head,
                                 sk_http_request_t *req);

/* 1 if name[0..len) equals the NUL-terminated lit without regard to ASCII
 * case. */
SK_API int sk_http_name_eq(const char *name, size_t len, const char *lit);

/* The first header named name (ASCII case ignored), or NULL. *count, if not
 * NULL, is set to how many fields have that name (duplicates matter for
 * Host, Content-Length, Sec-WebSocket-Key). */
SK_API const sk_http_header_t *sk_http_header_find(const sk_http_request_t *req,
                                                   const char *name, size_t *count);

/* 1 if the comma-separated list value[0..len) holds token (ASCII case
 * ignored, spaces around elements ignored), e.g. "keep-alive, Upgrade"
 * holds "upgrade". */
SK_API int sk_http_has_token(const char *value, size_t len, const char *token);

/* The request's body length: 0 and *out = 0 when it has none; 0 and *out
 * set from a valid Content-Length (digits only, one value, or repeated
 * identical values); SK_HTTP_BAD for a malformed or conflicting one, or when
 * Transfer-Encoding is present (this server accepts no chunked bodies: the
 * caller answers and closes, RFC 9112 section 6.3). */
SK_API int sk_http_body_length(const sk_http_request_t *req, uint64_t *out);

/* 1 if the connection stays open after this request: HTTP/1.1 unless
 * "Connection: close"; HTTP/1.0 only with "Connection: keep-alive". */
SK_API int sk_http_keep_alive(const sk_http_request_t *req);

/* The Host header's value, taken apart (RFC 9110 section 7.2: uri-host
 * [":" port], uri-host of RFC 3986 section 3.2.2). */
typedef enum {
  SK_HTTP_HOST_NAME, /* a reg-name (may be empty): "chat.example", "localhost" */
  SK_HTTP_HOST_IPV4, /* an IPv4address: four dec-octets without leading zeros */
  SK_HTTP_HOST_IPV6  /* "[" IPv6address "]" */
} sk_http_host_kind_t;

typedef struct {
  sk_http_host_kind_t kind;
  const char *name; /* the host as sent, without brackets; points into the value */
  size_t name_len;
  uint8_t addr[16]; /* the address in network order: 4 bytes for IPv4, 16 for IPv6 */
  int port;         /* 0-65535, or -1 when none was given ("host" or "host:") */
} sk_http_host_t;

/* Takes the Host value value[0..len) apart into *out. Returns 0, or
 * SK_HTTP_BAD when it is not uri-host [":" port]: a byte outside reg-name's
 * characters (unreserved, sub-delims, %XX) such as a space or "@", a
 * malformed IP literal (IPvFuture and zone identifiers are refused too),
 * a port with anything but digits or over 65535. A reg-name is not checked
 * against DNS rules: "a_b", "" and "01.2.3.4" (a name, not an address)
 * pass, as the grammar says. */
SK_API int sk_http_host_parse(const char *value, size_t len, sk_http_host_t *out);

/* The reason phrase of a status code ("Not Found"), "Unknown" for others. */
SK_API const char *sk_http_reason(int status);

#ifdef __cplusplus
}
#endif
#endif
