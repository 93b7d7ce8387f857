/* bench/bench_common.c - clock, sockets, pattern and histogram for the
 * benchmark programs (see bench_common.h). */
#include "bench_common.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- clock ----------------------------------------------------------------- */

uint64_t bn_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int bn_ms_until(uint64_t deadline_ns, int cap_ms) {
  uint64_t now = bn_now_ns();
  if (now >= deadline_ns)
    return 0;
  /* Round up so a wait never ends just before the deadline and spins. */
  uint64_t ms = (deadline_ns - now + 999999) / 1000000;
  return ms > (uint64_t)cap_ms ? cap_ms : (int)ms;
}

/* ---- addresses and sockets ------------------------------------------------- */

int bn_addr_parse(const char *text, bn_addr_t *a, char *err, size_t errlen) {
  char host[64];
  const char *port_text;
  memset(a, 0, sizeof *a);

  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof host)
      goto bad;
    memcpy(host, text + 1, (size_t)(close - text - 1));
    host[close - text - 1] = '\0';
    port_text = close + 2;
  } else {
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host)
      goto bad;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    port_text = colon + 1;
  }

  char *end;
  errno = 0;
  long port = strtol(port_text, &end, 10);
  if (errno || *port_text == '\0' || *end != '\0' || port < 0 || port > 65535)
    goto bad;

  struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    a->len = sizeof *v4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    a->len = sizeof *v6;
    return 0;
  }
bad:
  snprintf(err, errlen, "bad address '%s' (want 127.0.0.1:PORT or [::1]:PORT)", text);
  return -1;
}

int bn_local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -1;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

int bn_listen(const bn_addr_t *a, int backlog, char *err, size_t errlen) {
  int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
    snprintf(err, errlen, "bind: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (listen(fd, backlog) < 0) {
    snprintf(err, errlen, "listen: %s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

int bn_connect_start(const bn_addr_t *a) {
  int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
    int saved = errno;
    close(fd);
    return -saved;
  }
  return fd;
}

int bn_connect_result(int fd) {
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
    return -errno;
  return -soerr;
}

int bn_connect_wait(const bn_addr_t *a, uint64_t deadline_ns) {
  int fd = bn_connect_start(a);
  if (fd < 0)
    return fd;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n = poll(&p, 1, bn_ms_until(deadline_ns, 1000));
    if (n < 0 && errno != EINTR) {
      int saved = errno;
      close(fd);
      return -saved;
    }
    if (n > 0)
      break;
    if (bn_now_ns() >= deadline_ns) {
      close(fd);
      return -ETIMEDOUT;
    }
  }
  int rc = bn_connect_result(fd);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

int bn_set_nonblock(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return -errno;
  return 0;
}

void bn_set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- byte pattern ------------------------------------------------------------ */

/* Word i of stream seed: one splitmix64 step from a per-word state. */
static uint64_t pattern_word(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void bn_pattern_fill(uint64_t seed, uint64_t offset, unsigned char *buf, size_t len) {
  uint64_t word = offset / 8;
  size_t skip = (size_t)(offset % 8);
  while (len > 0) {
    uint64_t le = htole64(pattern_word(seed, word++));
    if (skip == 0 && len >= 8) {
      memcpy(buf, &le, 8);
      buf += 8;
      len -= 8;
      continue;
    }
    size_t take = 8 - skip < len ? 8 - skip : len;
    memcpy(buf, (unsigned char *)&le + skip, take);
    buf += take;
    len -= take;
    skip = 0;
  }
}

/* ---- bulk stream ---------------------------------------------------------------- */

int bn_stream_init(bn_stream_t *s, uint64_t seed) {
  s->seed = seed;
  s->bytes = malloc(BN_STREAM_PERIOD + BN_STREAM_WINDOW);
  if (!s->bytes)
    return -1;
  bn_pattern_fill(seed, 0, s->bytes, BN_STREAM_PERIOD);
  /* The tail repeats the head so every window is contiguous. */
  memcpy(s->bytes + BN_STREAM_PERIOD, s->bytes, BN_STREAM_WINDOW);
  return 0;
}

const unsigned char *bn_stream_at(const bn_stream_t *s, uint64_t offset) {
  return s->bytes + (size_t)(offset % BN_STREAM_PERIOD);
}

void bn_stream_free(bn_stream_t *s) {
  free(s->bytes);
  s->bytes = NULL;
}

/* ---- latency histogram -------------------------------------------------------- */

/* Bucket of a value: exact below 64, else (shift, top 6 bits). */
static unsigned hist_index(uint64_t v) {
  if (v < 64)
    return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - 5;
  return shift * 32 + (unsigned)(v >> shift);
}

/* Lowest and highest value that land in bucket idx. */
static void hist_bounds(unsigned idx, uint64_t *lo, uint64_t *hi) {
  if (idx < 64) {
    *lo = *hi = idx;
    return;
  }
  unsigned shift = idx / 32 - 1;
  uint64_t top = idx % 32 + 32;
  *lo = top << shift;
  *hi = ((top + 1) << shift) - 1;
}

void bn_hist_add(bn_hist_t *h, uint64_t ns) {
  unsigned idx = hist_index(ns);
  if (idx >= BN_HIST_BUCKETS)
    idx = BN_HIST_BUCKETS - 1;
  h->counts[idx]++;
  h->total++;
  if (ns > h->max_ns)
    h->max_ns = ns;
}

uint64_t bn_hist_quantile(const bn_hist_t *h, double q) {
  if (h->total == 0)
    return 0;
  /* The rank of the sample we want, 1-based: ceil(q * total), at least 1. */
  uint64_t rank = (uint64_t)(q * (double)h->total);
  if ((double)rank < q * (double)h->total)
    rank++;
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < BN_HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      uint64_t lo, hi;
      hist_bounds(i, &lo, &hi);
      uint64_t mid = lo + (hi - lo) / 2;
      return mid > h->max_ns ? h->max_ns : mid;
    }
  }
  return h->max_ns;
}

/* ---- argument helpers ---------------------------------------------------------- */

int bn_parse_size(const char *text, uint64_t *out) {
  char *end;
  errno = 0;
  if (*text < '0' || *text > '9')
    return -1;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno)
    return -1;
  uint64_t mult = 1;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': mult = 1ull << 10; end++; break;
  case 'm': case 'M': mult = 1ull << 20; end++; break;
  case 'g': case 'G': mult = 1ull << 30; end++; break;
  default: return -1;
  }
  if (*end != '\0' || (mult > 1 && v > UINT64_MAX / mult))
    return -1;
  *out = (uint64_t)v * mult;
  return 0;
}

int bn_parse_seconds(const char *text, uint64_t *out_ns) {
  char *end;
  errno = 0;
  if ((*text < '0' || *text > '9') && *text != '.')
    return -1;
  double s = strtod(text, &end);
  if (errno || *end != '\0' || s < 0 || s > 1e6)
    return -1;
  *out_ns = (uint64_t)(s * 1e9);
  return 0;
}
