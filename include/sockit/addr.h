/* sockit/addr.h - endpoints: one grammar, one parser, used by every command.
 *
 * Connect forms                       Listen forms
 *   tcp://host:port                     tcp://:port        (all addresses,
 *   tcp://[v6addr]:port                                     IPv6 + IPv4)
 *   udp://host:port                     tcp://0.0.0.0:port tcp://[::1]:port
 *   unix:/path    unix:@abstract        udp://... as for tcp
 *   unix-dgram:/path                    unix:..., unix-dgram:..., unix-seqpacket:...
 *   unix-seqpacket:/path
 *   -  or  stdio                        (port 0 = an ephemeral port)
 *
 * `tls://host:port` is parsed (a TCP endpoint with SK_EP_TLS set) so the
 * grammar is ready for it; the socket layer refuses it until TLS exists.
 * A relative unix path is allowed ("unix:./s" or "unix:s").
 */
#ifndef SOCKIT_ADDR_H
#define SOCKIT_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_HOST_MAX 253     /* longest DNS name; also holds any IPv6 literal */
#define SK_UNIX_PATH_MAX 107 /* sizeof(sun_path) - 1: room for the NUL / '@' */
#define SK_ENDPOINT_STRLEN 300 /* enough for sk_endpoint_format of any endpoint */

typedef enum {
  SK_EP_TCP = 1,
  SK_EP_UDP,
  SK_EP_UNIX,           /* SOCK_STREAM */
  SK_EP_UNIX_DGRAM,     /* SOCK_DGRAM */
  SK_EP_UNIX_SEQPACKET, /* SOCK_SEQPACKET */
  SK_EP_STDIO
} sk_ep_kind_t;

/* Flags of sk_endpoint_t.flags */
#define SK_EP_TLS 0x1      /* tls:// : TCP with TLS on top */
#define SK_EP_ABSTRACT 0x2 /* unix:@name : Linux abstract namespace */
#define SK_EP_V6LIT 0x4    /* host was written as [v6addr] */

/* Modes of sk_endpoint_parse: a listen endpoint may leave the host empty
 * (every address) and use port 0; a connect endpoint may not. */
typedef enum { SK_EP_CONNECT = 0, SK_EP_LISTEN = 1 } sk_ep_mode_t;

typedef struct {
  sk_ep_kind_t kind;
  unsigned flags;
  uint16_t port;                  /* tcp, udp, tls */
  char host[SK_HOST_MAX + 1];     /* tcp/udp/tls; "" = every address */
  char path[SK_UNIX_PATH_MAX + 1]; /* unix kinds; without the '@' if abstract */
} sk_endpoint_t;

/* Parses text into *ep for the given mode. Returns 0, or -EINVAL with a
 * message in err (SK_ERRLEN) that quotes the input and names the bad part:
 * "bad endpoint 'tcp://h:99999': port 99999 out of range 1-65535". */
SK_API int sk_endpoint_parse(sk_endpoint_t *ep, const char *text,
                             sk_ep_mode_t mode, char *err, size_t errlen);

/* Writes the canonical text of ep into buf (SK_ENDPOINT_STRLEN is enough)
 * and returns buf. IPv6 hosts come out in brackets. */
SK_API char *sk_endpoint_format(const sk_endpoint_t *ep, char *buf, size_t len);

/* 1 if ep carries a byte stream (tcp, tls, unix, unix-seqpacket counts as a
 * connection-oriented kind too), 0 for datagram kinds and stdio. */
SK_API int sk_endpoint_is_connected(const sk_endpoint_t *ep);
/* The socket type (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) of ep, or 0 for stdio. */
SK_API int sk_endpoint_socktype(const sk_endpoint_t *ep);

/* A socket address of any family with its length. */
typedef struct {
  struct sockaddr_storage ss;
  socklen_t len;
} sk_sockaddr_t;

/* Formats a socket address for people and logs: "127.0.0.1:80",
 * "[::1]:80", "/path", "@abstract", "(unnamed)". IPv4-mapped IPv6 addresses
 * are shown as IPv4. Returns buf. */
SK_API char *sk_sockaddr_format(const sk_sockaddr_t *sa, char *buf, size_t len);
/* Port of an AF_INET/AF_INET6 address, or 0. */
SK_API int sk_sockaddr_port(const sk_sockaddr_t *sa);

/* An address block for --allow / --deny: "10.0.0.0/8", "::1", "fe80::/10".
 * A bare address is a /32 or /128. */
typedef struct {
  int family; /* AF_INET or AF_INET6 */
  unsigned prefix;
  uint8_t addr[16];
} sk_cidr_t;

/* Parses text into *c. Returns 0, or -EINVAL with a message in err. */
SK_API int sk_cidr_parse(sk_cidr_t *c, const char *text, char *err, size_t errlen);
/* 1 if sa (AF_INET or AF_INET6; IPv4-mapped IPv6 counts as IPv4) lies in c. */
SK_API int sk_cidr_match(const sk_cidr_t *c, const sk_sockaddr_t *sa);

#ifdef __cplusplus
}
#endif
#endif
