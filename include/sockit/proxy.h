/* sockit/proxy.h - the proxy protocols a connection can go through: SOCKS5
 * (RFC 1928, with RFC 1929 username/password) and HTTP CONNECT (RFC 9110
 * section 9.3.6).
 *
 * Pure code over the caller's buffers: builders write a message into out
 * and return its length; parsers look at what has arrived, return the bytes
 * one complete message takes, SK_EAGAIN while it is incomplete, or
 * SK_EBADINPUT / SK_ETOOBIG for a message that can never be valid. A parser
 * never reads past the message it parses, so bytes that follow it (the
 * tunnel's first bytes) stay the caller's.
 *
 * A proxy URL is socks5://[USER:PASS@]HOST:PORT, socks5h://... (the same:
 * sockit always lets a SOCKS5 proxy resolve target names), or
 * http://[USER:PASS@]HOST:PORT (CONNECT). The port defaults to 1080 for
 * SOCKS5 and 8080 for HTTP.
 */
#ifndef SOCKIT_PROXY_H
#define SOCKIT_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockit/addr.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_PROXY_CRED_MAX 255   /* RFC 1929: user and password are 1-255 bytes */
#define SK_PROXY_REPLY_MAX 8192 /* the longest proxy reply head we read */
#define SK_SOCKS5_MSG_MAX 600   /* room for any SOCKS5 message */

typedef enum { SK_PROXY_NONE = 0, SK_PROXY_SOCKS5, SK_PROXY_HTTP } sk_proxy_kind_t;

typedef struct {
  sk_proxy_kind_t kind;
  sk_endpoint_t ep; /* the proxy server (tcp) */
  char user[SK_PROXY_CRED_MAX + 1], pass[SK_PROXY_CRED_MAX + 1];
  int has_auth;
} sk_proxy_t;

/* Parses a proxy URL into *p. Returns 0 or -EINVAL with a message in err
 * quoting the URL (credentials masked) and naming the bad part. */
SK_API int sk_proxy_parse(sk_proxy_t *p, const char *url, char *err, size_t errlen);

/* ---- SOCKS5, client side ---- */

#define SK_SOCKS5_NOAUTH 0x00
#define SK_SOCKS5_USERPASS 0x02
#define SK_SOCKS5_NOACCEPTABLE 0xFF
#define SK_SOCKS5_CMD_CONNECT 0x01
#define SK_SOCKS5_CMD_UDP 0x03

/* The greeting: offers no authentication, or username/password only when
 * with_password (a proxy must not pick "none" when we hold credentials the
 * user meant to be used). Returns its length (3). */
SK_API size_t sk_socks5_greeting(uint8_t out[SK_SOCKS5_MSG_MAX], int with_password);
/* The server's method choice: 2 with *method set, SK_EAGAIN, SK_EBADINPUT. */
SK_API ssize_t sk_socks5_method_parse(const uint8_t *in, size_t len, int *method);
/* RFC 1929 request. Returns its length, or -EINVAL when user or pass is
 * empty or longer than 255 bytes. */
SK_API ssize_t sk_socks5_auth_request(uint8_t out[SK_SOCKS5_MSG_MAX], const char *user,
                                      const char *pass);
/* RFC 1929 reply: 2 with *ok (1 = accepted), SK_EAGAIN, SK_EBADINPUT. */
SK_API ssize_t sk_socks5_auth_reply_parse(const uint8_t *in, size_t len, int *ok);
/* A request for cmd to host:port: an IPv4 or IPv6 literal goes as an
 * address, anything else as a domain name for the proxy to resolve.
 * Returns its length or -EINVAL (an empty name, or one over 255 bytes). */
SK_API ssize_t sk_socks5_request(uint8_t out[SK_SOCKS5_MSG_MAX], int cmd, const char *host,
                                 uint16_t port);
/* The reply to a request: its length with *rep (0 = succeeded) and the
 * bound address in *bound (a domain-name reply leaves bound->len 0), or
 * SK_EAGAIN / SK_EBADINPUT. */
SK_API ssize_t sk_socks5_reply_parse(const uint8_t *in, size_t len, int *rep,
                                     sk_sockaddr_t *bound);
/* RFC 1928's words for a reply code: "connection refused", ... */
SK_API const char *sk_socks5_reply_str(int rep);

/* ---- HTTP CONNECT, client side ---- */

/* "CONNECT host:port HTTP/1.1" with Host and, when user is not NULL, a
 * Proxy-Authorization: Basic header. IPv6 hosts are bracketed. Returns the
 * length or SK_ETOOBIG when it does not fit in cap. */
SK_API ssize_t sk_http_connect_request(char *out, size_t cap, const char *host, uint16_t port,
                                       const char *user, const char *pass);
/* The proxy's answer head, through the blank line: its length with
 * *status (200 = tunnel open) and the reason phrase (cleaned of control
 * characters, cut to fit) in reason; SK_EAGAIN; SK_EBADINPUT for what is
 * not an HTTP/1.x status line; SK_ETOOBIG past SK_PROXY_REPLY_MAX. */
SK_API ssize_t sk_http_connect_reply_parse(const char *in, size_t len, int *status, char *reason,
                                           size_t reason_len);

/* Standard base64 of n bytes into out (NUL-terminated). Returns the length
 * written, or SK_ETOOBIG when cap is too small. */
SK_API ssize_t sk_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
