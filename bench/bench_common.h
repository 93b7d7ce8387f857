/* bench/bench_common.h - helpers shared by the benchmark programs.
 *
 * The load generators and the ceiling server measure libsockit, so they
 * must not use it: this is their own small toolbox (clock, addresses,
 * non-blocking sockets, a deterministic byte pattern, a latency histogram).
 * Every wait here takes an absolute deadline on the monotonic clock.
 */
#ifndef SOCKIT_BENCH_COMMON_H
#define SOCKIT_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define BN_ERRLEN 256

/* ---- clock ----------------------------------------------------------------- */

/* Returns CLOCK_MONOTONIC in nanoseconds (the clock Python's
 * time.monotonic_ns() reads, so the driver can compare timestamps). */
uint64_t bn_now_ns(void);

/* Returns how many milliseconds remain until deadline_ns, clamped to
 * [0, cap_ms]; for epoll_wait's timeout argument. */
int bn_ms_until(uint64_t deadline_ns, int cap_ms);

/* ---- addresses and sockets ------------------------------------------------- */

typedef struct {
  struct sockaddr_storage ss;
  socklen_t len;
} bn_addr_t;

/* Parses a numeric "HOST:PORT" or "[V6]:PORT" into *a. Returns 0, or -1
 * with a message in err. No name resolution: benchmarks use loopback. */
int bn_addr_parse(const char *text, bn_addr_t *a, char *err, size_t errlen);

/* Returns the port of a bound socket, or -1. */
int bn_local_port(int fd);

/* Opens a non-blocking, close-on-exec TCP listener on a with SO_REUSEADDR
 * and the given backlog. Returns the fd, or -1 with a message in err. */
int bn_listen(const bn_addr_t *a, int backlog, char *err, size_t errlen);

/* Starts a non-blocking connect to a. Returns the fd (connected or in
 * progress), or -errno. The caller waits for writability and then calls
 * bn_connect_result. */
int bn_connect_start(const bn_addr_t *a);

/* Returns 0 when the connect on fd succeeded, else the pending -errno. */
int bn_connect_result(int fd);

/* Connects to a and waits until connected or deadline_ns. Returns the
 * non-blocking fd, or -errno (-ETIMEDOUT at the deadline). */
int bn_connect_wait(const bn_addr_t *a, uint64_t deadline_ns);

/* Sets O_NONBLOCK on fd. Returns 0 or -errno. */
int bn_set_nonblock(int fd);

/* Sets TCP_NODELAY on fd (best effort: small messages must not wait for
 * Nagle in latency tests). */
void bn_set_nodelay(int fd);

/* ---- byte pattern ------------------------------------------------------------ */

/* Fills buf with bytes [offset, offset+len) of the endless pseudo-random
 * stream named by seed. Little-endian 64-bit words, word i being
 * splitmix64(seed, i): not periodic, so a dropped, repeated or reordered
 * block anywhere is caught, and cheap (several GB/s). */
void bn_pattern_fill(uint64_t seed, uint64_t offset, unsigned char *buf, size_t len);

/* ---- bulk stream ---------------------------------------------------------------- */

/* The byte stream of the bulk tools: the pattern of a seed repeated with
 * period BN_STREAM_PERIOD (4 MiB + 24 bytes, deliberately no multiple of any
 * buffer or page size). It lives in one buffer, so senders send straight
 * from it and receivers memcmp against it: the pattern costs the benchmark
 * nothing. A whole period dropped or repeated changes the byte count,
 * which the tools check too. */
#define BN_STREAM_PERIOD ((size_t)(4u << 20) + 24u)
#define BN_STREAM_WINDOW ((size_t)256u << 10)

typedef struct {
  unsigned char *bytes; /* BN_STREAM_PERIOD + BN_STREAM_WINDOW bytes */
  uint64_t seed;
} bn_stream_t;

/* Builds the stream of seed. Returns 0, or -1 when out of memory. */
int bn_stream_init(bn_stream_t *s, uint64_t seed);

/* Returns a pointer to stream bytes [offset, offset + BN_STREAM_WINDOW),
 * borrowed from s and valid until bn_stream_free. */
const unsigned char *bn_stream_at(const bn_stream_t *s, uint64_t offset);

/* Frees what bn_stream_init allocated. */
void bn_stream_free(bn_stream_t *s);

/* ---- latency histogram -------------------------------------------------------- */

/* Log-linear buckets: exact below 64 ns, then 32 sub-buckets per power of
 * two (about 3% resolution), up to 2^63 ns. Fixed size, no allocation. */
#define BN_HIST_BUCKETS 2048

typedef struct {
  uint64_t counts[BN_HIST_BUCKETS];
  uint64_t total;
  uint64_t max_ns;
} bn_hist_t;

/* Records one sample of ns nanoseconds. */
void bn_hist_add(bn_hist_t *h, uint64_t ns);

/* Returns the q-quantile (0 <= q <= 1) in nanoseconds, as the middle of its
 * bucket; 0 when the histogram is empty. */
uint64_t bn_hist_quantile(const bn_hist_t *h, double q);

/* ---- argument helpers ---------------------------------------------------------- */

/* Parses a non-negative integer with an optional K/M/G (binary) suffix
 * into *out. Returns 0, or -1 when text is not such a number. */
int bn_parse_size(const char *text, uint64_t *out);

/* Parses a non-negative decimal number of seconds into nanoseconds.
 * Returns 0, or -1 when text is not such a number. */
int bn_parse_seconds(const char *text, uint64_t *out_ns);

#endif
