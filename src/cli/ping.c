/* ping.c - `sockit ping HOST`: ICMP echo over an unprivileged ICMP datagram
 * socket, or a raw socket where that is not allowed, IPv4 and IPv6, with
 * the output and statistics of iputils ping. */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "sockit/icmp.h"

#define RING 4096 /* send times kept for the last RING sequence numbers */

typedef struct {
  sk_loop_t *loop;
  int fd, family, raw;
  uint16_t id;
  sk_sockaddr_t dst;
  char dst_text[SK_ENDPOINT_STRLEN];
  unsigned long count, sent, received, dups, errors;
  uint64_t interval_ms, wait_ms;
  size_t size;
  uint64_t send_ns[RING];
  uint16_t send_seq[RING];
  unsigned char got[RING];
  double rtt_min, rtt_max, rtt_sum, rtt_sum2;
  uint64_t start_ns, last_ns;
  sk_timer_t tick, deadline;
  sk_io_t io;
  uint8_t *pkt;
  const char *host;    /* as the user wrote it */
  int host_is_name;    /* not an address literal: replies say "from NAME (ADDR)" */
  int quiet, numeric;
} ping_t;

/* The command line, filled by the option table. */
typedef struct {
  unsigned long count;
  uint64_t interval_ms, wait_ms;
  unsigned long size;
  int ipv4, ipv6, quiet, numeric;
} ping_opts_t;

static int count_fn(void *base, const char *arg, const char *cmd) {
  ping_opts_t *o = base;
  if (cli_parse_uint(arg, 1000000000, &o->count) < 0 || o->count == 0)
    return cli_usage_error(cmd, "bad -c '%s': expected a count of 1 or more", arg), -1;
  return 0;
}

static int interval_fn(void *base, const char *arg, const char *cmd) {
  ping_opts_t *o = base;
  if (cli_parse_seconds(arg, &o->interval_ms) < 0 || o->interval_ms < 10)
    return cli_usage_error(cmd, "bad -i '%s': expected seconds, at least 0.01", arg), -1;
  return 0;
}

static int size_fn(void *base, const char *arg, const char *cmd) {
  ping_opts_t *o = base;
  if (cli_parse_uint(arg, SK_ICMP_PAYLOAD_MAX, &o->size) < 0 || o->size < 8)
    return cli_usage_error(cmd, "bad -s '%s': expected 8-65000 bytes", arg), -1;
  return 0;
}

static const cli_opt_t options[] = {
    {CLI_OPT_GROUP, .help = "Options:"},
    {CLI_ROW(CLI_OPT_FN, 'c', NULL, "COUNT", "stop after COUNT requests (and their replies)", 0),
     .fn = count_fn},
    {CLI_ROW(CLI_OPT_FN, 'i', NULL, "SECS", "seconds between requests (default 1, at least 0.01)",
             0),
     .fn = interval_fn},
    {CLI_ROW(CLI_OPT_SECONDS, 'W', NULL, "SECS",
             "after the last request, wait this long for replies (default 10)",
             offsetof(ping_opts_t, wait_ms))},
    {CLI_ROW(CLI_OPT_FN, 's', NULL, "SIZE", "payload bytes (default 56, 8-65000)", 0),
     .fn = size_fn},
    {CLI_ROW(CLI_OPT_FLAG, '4', NULL, NULL, "use IPv4 only", offsetof(ping_opts_t, ipv4))},
    {CLI_ROW(CLI_OPT_FLAG, '6', NULL, NULL, "use IPv6 only", offsetof(ping_opts_t, ipv6))},
    {CLI_ROW(CLI_OPT_FLAG, 'q', NULL, NULL, "quiet: only the first line and the statistics",
             offsetof(ping_opts_t, quiet))},
    {CLI_ROW(CLI_OPT_FLAG, 'n', NULL, NULL, "numeric: replies show the address only",
             offsetof(ping_opts_t, numeric))},
    {CLI_OPT_END}};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The payload of request seq: its send time, then a byte pattern. */
static void fill_payload(uint8_t *p, size_t n, uint64_t t) {
  for (size_t i = 0; i < n; i++)
    p[i] = i < 8 ? (uint8_t)(t >> (8 * i)) : (uint8_t)i;
}

static void finish(ping_t *pg) { sk_loop_stop(pg->loop); }

/* An address as ping shows it: no port, no brackets. */
static void bare_address(const sk_sockaddr_t *sa, char *out, size_t len) {
  char text[SK_ENDPOINT_STRLEN];
  sk_sockaddr_format(sa, text, sizeof text);
  char *colon = strrchr(text, ':'); /* the address without ":0" */
  if (colon)
    *colon = '\0';
  const char *shown = text[0] == '[' ? text + 1 : text;
  size_t sl = strlen(shown);
  snprintf(out, len, "%.*s", (int)(sl && shown[sl - 1] == ']' ? sl - 1 : sl), shown);
}

/* "64 bytes from localhost (127.0.0.1): icmp_seq=1 ttl=64 time=0.031 ms",
 * as iputils prints it: the name the user gave when the reply comes from
 * the address it resolved to (-n: the address alone). */
static void print_reply(const ping_t *pg, const sk_sockaddr_t *from, const sk_icmp_echo_t *e,
                        int ttl, double ms, int dup) {
  char addr[SK_ENDPOINT_STRLEN];
  bare_address(from, addr, sizeof addr);
  if (pg->host_is_name && !pg->numeric && strcmp(addr, pg->dst_text) == 0)
    printf("%zu bytes from %s (%s): icmp_seq=%u", e->payload_len + SK_ICMP_HDR, pg->host, addr,
           (unsigned)e->seq);
  else
    printf("%zu bytes from %s: icmp_seq=%u", e->payload_len + SK_ICMP_HDR, addr, (unsigned)e->seq);
  if (ttl >= 0)
    printf(" ttl=%d", ttl);
  printf(" time=%.*f ms%s\n", ms < 1 ? 3 : ms < 10 ? 2 : ms < 100 ? 1 : 0, ms,
         dup ? " (DUP!)" : "");
  fflush(stdout);
}

static void send_one(ping_t *pg) {
  uint16_t seq = (uint16_t)(pg->sent + 1);
  uint8_t payload[SK_ICMP_PAYLOAD_MAX];
  uint64_t t = now_ns();
  fill_payload(payload, pg->size, t);
  long n = sk_icmp_echo_build(pg->pkt, SK_ICMP_HDR + pg->size, pg->family == AF_INET6, pg->id,
                              seq, payload, pg->size);
  pg->send_ns[seq % RING] = t;
  pg->send_seq[seq % RING] = seq;
  pg->got[seq % RING] = 0;
  if (pg->sent == 0)
    pg->start_ns = t;
  pg->last_ns = t;
  pg->sent++;
  ssize_t r;
  do
    r = sendto(pg->fd, pg->pkt, (size_t)n, 0, (struct sockaddr *)&pg->dst.ss, pg->dst.len);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    pg->errors++;
    cli_error("ping: send to %s: %s", pg->dst_text, strerror(errno));
  }
}

static void on_deadline(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  finish(t->data);
}

static void on_tick(sk_loop_t *loop, sk_timer_t *t) {
  ping_t *pg = t->data;
  send_one(pg);
  if (pg->count && pg->sent >= pg->count) {
    sk_timer_stop(loop, t);
    sk_timer_start(loop, &pg->deadline, pg->wait_ms, 0);
  }
}

/* Reads replies; prints each one for us (by id on raw sockets, by
 * sequence always). */
static void on_readable(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  ping_t *pg = io->data;
  (void)loop;
  (void)ev;
  for (;;) {
    uint8_t buf[SK_ICMP_PAYLOAD_MAX + 128];
    char ctrl[256];
    sk_sockaddr_t from;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr m = {.msg_name = &from.ss, .msg_namelen = sizeof from.ss, .msg_iov = &iov,
                       .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    ssize_t n = recvmsg(pg->fd, &m, MSG_DONTWAIT);
    if (n < 0)
      return; /* EAGAIN; or an ICMP error queued for the socket: nothing to print */
    uint64_t t = now_ns();
    from.len = m.msg_namelen;
    sk_icmp_echo_t e;
    int v6 = pg->family == AF_INET6;
    if (sk_icmp_echo_parse(buf, (size_t)n, v6, pg->raw && !v6, &e) != 1)
      continue;
    if (pg->raw && e.id != pg->id)
      continue; /* another ping's reply */
    int ttl = e.ttl;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
          (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT))
        memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
    unsigned slot = e.seq % RING;
    if (pg->send_seq[slot] != e.seq || e.seq == 0 || e.seq > pg->sent)
      continue; /* not one we sent (or too old to know) */
    double ms = (double)(t - pg->send_ns[slot]) / 1e6;
    int dup = pg->got[slot];
    if (!pg->quiet)
      print_reply(pg, &from, &e, ttl, ms, dup);
    if (dup) {
      pg->dups++;
      continue;
    }
    pg->got[slot] = 1;
    pg->received++;
    if (pg->received == 1 || ms < pg->rtt_min)
      pg->rtt_min = ms;
    if (ms > pg->rtt_max)
      pg->rtt_max = ms;
    pg->rtt_sum += ms;
    pg->rtt_sum2 += ms * ms;
    if (pg->count && pg->received >= pg->count)
      finish(pg);
  }
}

static void on_signal(sk_loop_t *loop, int signo, void *data) {
  (void)signo;
  (void)loop;
  finish(data);
}

static void print_stats(const ping_t *pg, const char *host) {
  printf("\n--- %s ping statistics ---\n", host);
  double loss = pg->sent ? 100.0 * (double)(pg->sent - pg->received) / (double)pg->sent : 0;
  printf("%lu packets transmitted, %lu received,", pg->sent, pg->received);
  if (pg->dups)
    printf(" +%lu duplicates,", pg->dups);
  if (pg->errors)
    printf(" +%lu errors,", pg->errors);
  printf(" %g%% packet loss, time %llums\n", loss,
         (unsigned long long)((pg->last_ns - pg->start_ns) / 1000000u));
  if (pg->received) {
    double avg = pg->rtt_sum / (double)pg->received;
    double var = pg->rtt_sum2 / (double)pg->received - avg * avg;
    printf("rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", pg->rtt_min, avg, pg->rtt_max,
           sqrt(var > 0 ? var : 0));
  }
  fflush(stdout);
}

/* Opens the ICMP socket: unprivileged datagram first, then raw. */
static int open_socket(ping_t *pg, char *why, size_t whylen) {
  int proto = pg->family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  int fd = socket(pg->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  int dgram_err = errno;
  if (fd < 0) {
    fd = socket(pg->family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0) {
      snprintf(why, whylen,
               "cannot open an ICMP socket: unprivileged ICMP is not allowed for this group "
               "(%s; see sysctl net.ipv4.ping_group_range) and a raw socket needs CAP_NET_RAW "
               "(%s)",
               strerror(dgram_err), strerror(errno));
      return -1;
    }
    pg->raw = 1;
  }
  int on = 1;
  if (pg->family == AF_INET) {
    setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &on, sizeof on);
  } else {
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on);
  }
  return fd;
}

static int run(int argc, char **argv) {
  static ping_t pg;
  memset(&pg, 0, sizeof pg);
  ping_opts_t o = {.interval_ms = 1000, .wait_ms = 10000, .size = 56};
  int first;
  if (cli_opts_parse("ping", options, &o, argc, argv, &first) < 0)
    return EXIT_USAGE;
  if (o.ipv4 && o.ipv6)
    return cli_usage_error("ping", "-4 and -6 contradict each other: choose one");
  if (first != argc - 1)
    return cli_usage_error("ping", first >= argc ? "missing HOST" : "expected one HOST");
  pg.count = o.count;
  pg.interval_ms = o.interval_ms;
  pg.wait_ms = o.wait_ms;
  pg.size = o.size;
  pg.quiet = o.quiet;
  pg.numeric = o.numeric;
  int want_family = o.ipv4 ? AF_INET : o.ipv6 ? AF_INET6 : AF_UNSPEC;
  const char *host = argv[first];
  pg.host = host;
  struct addrinfo hints = {.ai_family = want_family, .ai_socktype = SOCK_RAW}, *res;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0) {
    cli_error("ping %s: %s", host, gai_strerror(rc));
    return EXIT_NET;
  }
  pg.family = res->ai_family;
  memcpy(&pg.dst.ss, res->ai_addr, res->ai_addrlen);
  pg.dst.len = res->ai_addrlen;
  freeaddrinfo(res);
  bare_address(&pg.dst, pg.dst_text, sizeof pg.dst_text);
  pg.host_is_name = strcmp(host, pg.dst_text) != 0;

  char why[512];
  pg.fd = open_socket(&pg, why, sizeof why);
  if (pg.fd < 0) {
    cli_error("ping: %s", why);
    return EXIT_NET;
  }
  pg.id = (uint16_t)getpid();
  pg.pkt = malloc(SK_ICMP_HDR + pg.size);
  int r = pg.pkt ? sk_loop_new(&pg.loop) : -ENOMEM;
  if (r < 0) {
    cli_error("ping: %s", sk_strerror(r));
    close(pg.fd);
    free(pg.pkt);
    return EXIT_NET;
  }
  if (pg.family == AF_INET)
    printf("PING %s (%s) %zu(%zu) bytes of data.\n", host, pg.dst_text, pg.size, pg.size + 28);
  else
    printf("PING %s (%s) %zu data bytes\n", host, pg.dst_text, pg.size);
  fflush(stdout);
  pg.io.cb = on_readable;
  pg.io.data = &pg;
  sk_io_start(pg.loop, &pg.io, pg.fd, SK_READABLE);
  sk_timer_init(&pg.tick, on_tick, &pg);
  sk_timer_init(&pg.deadline, on_deadline, &pg);
  sk_loop_signal(pg.loop, SIGINT, on_signal, &pg);
  sk_loop_signal(pg.loop, SIGTERM, on_signal, &pg);
  send_one(&pg);
  if (pg.count && pg.sent >= pg.count)
    sk_timer_start(pg.loop, &pg.deadline, pg.wait_ms, 0);
  else
    sk_timer_start(pg.loop, &pg.tick, pg.interval_ms, pg.interval_ms);
  sk_loop_run(pg.loop);
  print_stats(&pg, host);
  sk_io_stop(pg.loop, &pg.io);
  sk_loop_free(pg.loop);
  close(pg.fd);
  free(pg.pkt);
  return pg.received ? EXIT_OK : EXIT_NET;
}

const cli_command_t cli_ping = {
    .name = "ping",
    .run = run,
    .summary = "ICMP echo to a host (unprivileged ICMP socket, or raw)",
    .usage = "Usage: sockit ping [OPTIONS] HOST\n"
             "\n"
             "Sends ICMP echo requests to HOST and reports each reply and, at the end\n"
             "(after COUNT, or Ctrl-C), the statistics, in the layout of iputils ping.\n"
             "Uses an unprivileged ICMP socket (net.ipv4.ping_group_range), or a raw\n"
             "socket when that is not allowed and CAP_NET_RAW is held.\n"
             "\n",
    .options = options,
    .usage_tail = "\nExit: 0 if any reply came, 1 if none (or a network error), 2 usage error.\n",
};
