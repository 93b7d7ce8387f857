/* tests/fuzz/fuzz_icmp.c - sk_icmp_echo_parse on arbitrary packets, in all
 * four shapes (IPv4 raw with its header, IPv4 datagram, ICMPv6), and the
 * build/parse round trip.
 *
 * Properties (abort() on a violation): parse returns 1, 0 or SK_EBADINPUT;
 * on 1 the payload lies inside the input; a request built from the input's
 * bytes has a valid checksum. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/icmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "fuzz_icmp: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                  \
    }                                                                           \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int shape = 0; shape < 3; shape++) {
    sk_icmp_echo_t e;
    int v6 = shape == 2, ip4 = shape == 0;
    int r = sk_icmp_echo_parse(data, size, v6, ip4, &e);
    CHECK(r == 1 || r == 0 || r == SK_EBADINPUT);
    if (r == 1) {
      CHECK(e.payload >= data && e.payload + e.payload_len <= data + size);
      CHECK(ip4 ? (e.ttl >= 0 && e.ttl <= 255) : e.ttl == -1);
    }
  }
  /* Build a request around the input and check its checksum folds to 0. */
  static uint8_t pkt[SK_ICMP_HDR + 4096];
  size_t n = size > 4096 ? 4096 : size;
  uint16_t id = size > 1 ? (uint16_t)(data[0] << 8 | data[1]) : 7;
  long len = sk_icmp_echo_build(pkt, sizeof pkt, 0, id, (uint16_t)size, data, n);
  CHECK(len == (long)(SK_ICMP_HDR + n));
  CHECK(sk_icmp_checksum(pkt, (size_t)len) == 0);
  /* Turned into a reply (type 0, checksum fixed up), it parses back. */
  pkt[0] = 0;
  pkt[2] = pkt[3] = 0;
  uint16_t sum = sk_icmp_checksum(pkt, (size_t)len);
  pkt[2] = (uint8_t)(sum >> 8);
  pkt[3] = (uint8_t)sum;
  sk_icmp_echo_t e;
  CHECK(sk_icmp_echo_parse(pkt, (size_t)len, 0, 0, &e) == 1);
  CHECK(e.id == id && e.seq == (uint16_t)size && e.payload_len == n);
  CHECK(n == 0 || memcmp(e.payload, data, n) == 0);
  return 0;
}
