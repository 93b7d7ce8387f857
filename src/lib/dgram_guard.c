/* dgram_guard.c - what keeps a datagram service from answering forever: the
 * datagrams never to answer (our own address, ports of services that answer
 * everything) and a reply budget per source address. Pure code: server.c
 * asks before it hands a datagram to the handler.
 *
 * Why: a UDP service that answers every datagram, given one datagram whose
 * source is spoofed to be itself or another such service, answers itself or
 * that service, which answers back, for ever (the classic echo/chargen loop,
 * CERT CA-1996-01). Refusing our own address and the classic ports ends the
 * known loops at once; the per-source budget ends every other one (two of
 * our own services pointed at each other, a service on an unusual port):
 * a loop is one datagram going back and forth, so the first one dropped
 * ends it, after at most a burst of replies. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/internal.h"

/* Source ports of services that answer any datagram they get, so that a
 * reply to them is answered again: echo (RFC 862), systat (RFC 866),
 * daytime (RFC 867), qotd (RFC 865), chargen (RFC 864), time (RFC 868),
 * and NTP, whose older servers answered even error responses (CVE-2009-3563,
 * the ntpd mode 7 loop). Port 0 is no port: nothing can be answered there.
 * Discard (9) is not listed: it never answers, so a reply to it is lost,
 * not returned. */
int sk__dgram_loop_port(unsigned port) {
  switch (port) {
  case 0:
  case 7:
  case 11:
  case 13:
  case 17:
  case 19:
  case 37:
  case 123:
    return 1;
  default:
    return 0;
  }
}

/* The IPv4 address of sa (AF_INET, or AF_INET6 holding a v4-mapped one)
 * into *v4: returns 1, else 0. */
static int as_v4(const sk_sockaddr_t *sa, uint32_t *v4) {
  if (sa->ss.ss_family == AF_INET) {
    *v4 = ((const struct sockaddr_in *)&sa->ss)->sin_addr.s_addr;
    return 1;
  }
  if (sa->ss.ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)&sa->ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
      memcpy(v4, a->s6_addr + 12, 4);
      return 1;
    }
  }
  return 0;
}

/* 1 if a and b hold the same IP address (v4-mapped and plain IPv4 alike). */
static int same_ip(const sk_sockaddr_t *a, const sk_sockaddr_t *b) {
  uint32_t x = 0, y = 0;
  int a4 = as_v4(a, &x), b4 = as_v4(b, &y);
  if (a4 || b4)
    return a4 && b4 && x == y;
  if (a->ss.ss_family != AF_INET6 || b->ss.ss_family != AF_INET6)
    return 0;
  return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, 16) == 0;
}

/* 1 for 127.0.0.0/8, ::1 and v4-mapped 127/8; 2 for a wildcard address
 * (0.0.0.0, ::); 0 otherwise. */
static int ip_kind(const sk_sockaddr_t *sa) {
  uint32_t v4 = 0;
  if (as_v4(sa, &v4))
    return (ntohl(v4) >> 24) == 127 ? 1 : v4 == 0 ? 2 : 0;
  if (sa->ss.ss_family != AF_INET6)
    return 0;
  const struct in6_addr *a = &((const struct sockaddr_in6 *)&sa->ss)->sin6_addr;
  return IN6_IS_ADDR_LOOPBACK(a) ? 1 : IN6_IS_ADDR_UNSPECIFIED(a) ? 2 : 0;
}

int sk__dgram_from_self(const sk_sockaddr_t *own, const sk_sockaddr_t *peer,
                        const sk_sockaddr_t *dst) {
  if (peer->ss.ss_family != AF_INET && peer->ss.ss_family != AF_INET6)
    return 0;
  if (sk_sockaddr_port(peer) != sk_sockaddr_port(own))
    return 0;
  /* Our port from this host: our own socket, another worker's socket on
   * the same port (SO_REUSEPORT), or our address spoofed from a raw socket.
   * Other hosts cannot send from a loopback address. */
  if (ip_kind(peer) == 1)
    return 1;
  if (ip_kind(own) != 2 && same_ip(peer, own))
    return 1;
  /* A wildcard socket: the address the datagram was sent to is ours. */
  return dst && dst->len && same_ip(peer, dst);
}

/* ---- the reply budget ------------------------------------------------------------- */

int sk__dgram_source_key(const sk_sockaddr_t *sa, uint8_t key[16]) {
  uint32_t v4 = 0;
  memset(key, 0, 16);
  if (as_v4(sa, &v4)) {
    key[10] = key[11] = 0xff; /* v4-mapped: one key for both families */
    memcpy(key + 12, &v4, 4);
    return 1;
  }
  if (sa->ss.ss_family != AF_INET6)
    return 0;
  /* An IPv6 host usually owns a whole /64: one budget for the prefix. */
  memcpy(key, &((const struct sockaddr_in6 *)&sa->ss)->sin6_addr, 8);
  return 1;
}

typedef struct {
  uint8_t key[16];
  uint64_t tat; /* GCRA's theoretical arrival time, us; 0 = empty slot */
} budget_slot_t;

struct sk__dgram_budget {
  uint64_t seed;
  uint64_t interval_us; /* one reply's worth of time: 1 s / rate */
  uint64_t tolerance_us; /* how far ahead of now tat may run: (burst - 1) intervals */
  budget_slot_t slot[SK_DGRAM_BUDGET_SLOTS];
};

int sk__dgram_budget_new(sk__dgram_budget_t **out, unsigned rate, unsigned burst) {
  sk__dgram_budget_t *b = calloc(1, sizeof *b);
  if (!b)
    return -ENOMEM;
  if (rate == 0)
    rate = 1;
  if (burst == 0)
    burst = 1;
  b->interval_us = 1000000u / rate ? 1000000u / rate : 1;
  b->tolerance_us = b->interval_us * (burst - 1);
  /* A secret seed: a sender cannot pick sources that share a victim's slots. */
  if (getrandom(&b->seed, sizeof b->seed, GRND_NONBLOCK) != (ssize_t)sizeof b->seed)
    b->seed = (uint64_t)(uintptr_t)b ^ sk__now_ms() * 0x9e3779b97f4a7c15ull;
  *out = b;
  return 0;
}

void sk__dgram_budget_free(sk__dgram_budget_t *b) { free(b); }

static uint64_t key_hash(uint64_t seed, const uint8_t key[16]) {
  uint64_t w0, w1;
  memcpy(&w0, key, 8);
  memcpy(&w1, key + 8, 8);
  uint64_t h = (w0 ^ seed) * 0xff51afd7ed558ccdull;
  h = (h ^ (h >> 29) ^ w1) * 0xc4ceb9fe1a85ec53ull;
  h ^= seed >> 17;
  h *= 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 31);
}

/* Each source has two candidate slots (two hashes). It uses the one that
 * holds its key; else takes one that is empty or idle (a full bucket, so
 * taking it over changes nothing for its owner); else, with both held by
 * busy sources, it is charged to the less busy one without taking it: a
 * sender cycling through sources cannot reset anyone's budget. */
int sk__dgram_budget_take(sk__dgram_budget_t *b, const uint8_t key[16], uint64_t now_ms) {
  uint64_t h = key_hash(b->seed, key), now = now_ms * 1000 + 1; /* never 0: 0 is empty */
  budget_slot_t *s1 = &b->slot[h % SK_DGRAM_BUDGET_SLOTS];
  budget_slot_t *s2 = &b->slot[(h >> 32) % SK_DGRAM_BUDGET_SLOTS];
  budget_slot_t *s;
  if (s1->tat && memcmp(s1->key, key, 16) == 0)
    s = s1;
  else if (s2->tat && memcmp(s2->key, key, 16) == 0)
    s = s2;
  else if (s1->tat <= now || s2->tat <= now) {
    s = s1->tat <= now ? s1 : s2;
    memcpy(s->key, key, 16);
    s->tat = now;
  } else {
    s = s1->tat <= s2->tat ? s1 : s2;
  }
  uint64_t tat = s->tat > now ? s->tat : now;
  if (tat - now > b->tolerance_us)
    return 0;
  s->tat = tat + b->interval_us;
  return 1;
}
