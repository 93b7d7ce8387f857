/* icmp.c - echo request building and echo reply parsing. Pure code. */
#include <string.h>

#include "sockit/icmp.h"

#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define ICMP6_ECHO_REQUEST 128
#define ICMP6_ECHO_REPLY 129

uint16_t sk_icmp_checksum(const void *data, size_t len) {
  const uint8_t *p = data;
  uint32_t sum = 0;
  for (; len > 1; p += 2, len -= 2)
    sum += (uint32_t)(p[0] << 8 | p[1]);
  if (len)
    sum += (uint32_t)p[0] << 8;
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

long sk_icmp_echo_build(uint8_t *buf, size_t cap, int v6, uint16_t id, uint16_t seq,
                        const void *payload, size_t payload_len) {
  if (payload_len > SK_ICMP_PAYLOAD_MAX || cap < SK_ICMP_HDR + payload_len)
    return SK_ETOOBIG;
  buf[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO_REQUEST;
  buf[1] = 0;
  buf[2] = buf[3] = 0;
  buf[4] = (uint8_t)(id >> 8);
  buf[5] = (uint8_t)id;
  buf[6] = (uint8_t)(seq >> 8);
  buf[7] = (uint8_t)seq;
  if (payload_len)
    memcpy(buf + SK_ICMP_HDR, payload, payload_len);
  if (!v6) {
    uint16_t sum = sk_icmp_checksum(buf, SK_ICMP_HDR + payload_len);
    buf[2] = (uint8_t)(sum >> 8);
    buf[3] = (uint8_t)sum;
  }
  return (long)(SK_ICMP_HDR + payload_len);
}

int sk_icmp_echo_parse(const uint8_t *pkt, size_t len, int v6, int with_ip4_header,
                       sk_icmp_echo_t *out) {
  out->ttl = -1;
  if (with_ip4_header) {
    if (len < 20 || (pkt[0] >> 4) != 4)
      return SK_EBADINPUT;
    size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
    size_t total = (size_t)(pkt[2] << 8 | pkt[3]);
    if (ihl < 20 || ihl > len || total < ihl || pkt[9] != 1 /* ICMP */)
      return SK_EBADINPUT;
    if (total < len)
      len = total; /* ignore trailing link padding */
    out->ttl = pkt[8];
    pkt += ihl;
    len -= ihl;
  }
  if (len < SK_ICMP_HDR)
    return SK_EBADINPUT;
  if (pkt[0] != (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHO_REPLY))
    return 0;
  if (pkt[1] != 0)
    return SK_EBADINPUT;
  if (!v6 && sk_icmp_checksum(pkt, len) != 0)
    return SK_EBADINPUT;
  out->id = (uint16_t)(pkt[4] << 8 | pkt[5]);
  out->seq = (uint16_t)(pkt[6] << 8 | pkt[7]);
  out->payload = pkt + SK_ICMP_HDR;
  out->payload_len = len - SK_ICMP_HDR;
  return 1;
}
