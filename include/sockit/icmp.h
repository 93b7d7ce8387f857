/* sockit/icmp.h - ICMP and ICMPv6 echo messages: pure code over caller
 * buffers (no I/O, no allocation), for `sockit ping` and its fuzz target. */
#ifndef SOCKIT_ICMP_H
#define SOCKIT_ICMP_H

#include <stddef.h>
#include <stdint.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_ICMP_HDR 8          /* type, code, checksum, id, sequence */
#define SK_ICMP_PAYLOAD_MAX 65000

/* A parsed echo reply. */
typedef struct {
  uint16_t id, seq;
  const uint8_t *payload; /* points into the caller's packet */
  size_t payload_len;
  int ttl;                /* from the IPv4 header when there is one, else -1 */
} sk_icmp_echo_t;

/* The Internet checksum (RFC 1071) of len bytes. */
SK_API uint16_t sk_icmp_checksum(const void *data, size_t len);

/* Writes an echo request (type 8, or 128 for v6) with id, seq and payload
 * into buf. For IPv4 the checksum is filled in; for ICMPv6 the kernel does
 * it (it covers a pseudo-header only the kernel knows). Returns the length,
 * or SK_ETOOBIG if buf is too small. */
SK_API long sk_icmp_echo_build(uint8_t *buf, size_t cap, int v6, uint16_t id, uint16_t seq,
                               const void *payload, size_t payload_len);

/* Parses an echo reply. with_ip4_header: the packet starts with an IPv4
 * header (raw IPv4 sockets); its length is validated and its TTL taken.
 * Returns 1 for a valid echo reply (type 0, or 129 for v6; checksum
 * verified for IPv4), 0 for any other ICMP message, SK_EBADINPUT for a
 * malformed packet. */
SK_API int sk_icmp_echo_parse(const uint8_t *pkt, size_t len, int v6, int with_ip4_header,
                              sk_icmp_echo_t *out);

#ifdef __cplusplus
}
#endif
#endif
