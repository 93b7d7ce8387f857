/* bench/lg_fanout.c - `loadgen fanout`: chat fan-out. N receivers and one
 * sender connect to a line-broadcast server; the sender sends M numbered
 * lines and every receiver must get every line exactly once, in order.
 * Reports deliveries per second, p50/p99 delivery latency, and counts
 * lost, duplicated, reordered and corrupt lines.
 *
 * It speaks plain lines so it works with any chat-like server:
 *
 *   FANOUT <run> <seq> <padding>\n     (exactly --size bytes)
 *
 * <run> is random per process, <seq> ten digits, the padding a function of
 * <seq>. A receiver looks for "FANOUT <run> " anywhere in a line (servers
 * may prefix a nickname) and checks everything after it byte for byte;
 * lines without it (banners, join notices) are counted and ignored.
 *
 * Before measuring, the sender repeats "FANOUT <run> SYNC" until every
 * receiver has seen one, so no line is sent before the server counts all
 * receivers in. Lines in flight are bounded by --window (the slowest
 * receiver's progress), so a server that queues without bound is measured
 * on delivering, not on buffering.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#define FO_DEFAULT_COUNT 1000
#define FO_DEFAULT_SIZE 64
#define FO_MIN_SIZE 32
#define FO_HEADER_LEN 27           /* "FANOUT xxxxxxxx nnnnnnnnnn " */
#define FO_RX_MAX (64 * 1024)      /* longest line a receiver accepts */
#define FO_TX_MAX (64 * 1024)      /* sender's output buffer */
#define FO_SYNC_EVERY_NS 20000000u /* 20 ms */

typedef enum { FO_SYNC, FO_SEND, FO_DRAIN, FO_DONE } fo_phase_t;

typedef struct {
  int fd;            /* -1 once failed */
  unsigned id;
  bool synced;
  unsigned char *seen;  /* bitmap of delivered sequence numbers */
  uint64_t distinct, duplicated, reordered, corrupt, other_lines;
  int64_t max_seq;      /* highest sequence number delivered, -1 before */
  size_t in_len;
  unsigned char in[FO_RX_MAX];
} fo_receiver_t;

typedef struct {
  const lg_opts_t *o;
  int ep;
  unsigned nrecv;
  fo_receiver_t *recv;
  int sender_fd;
  uint32_t run_id;
  char prefix[32];          /* "FANOUT <run> " */
  size_t prefix_len, size;  /* size: bytes per line, newline included */
  uint64_t lines, next_seq;
  uint64_t *sent_ns;        /* when each line was queued */
  fo_phase_t phase;
  unsigned char out[FO_TX_MAX];
  size_t out_len, out_off;
  bool sender_watch_out;
  uint64_t last_sync_ns, start_ns, last_delivery_ns, drain_start_ns;
  bn_hist_t hist;
  lg_errors_t errs;         /* connection-level failures */
} fo_run_t;

/* Writes line seq (exactly r->size bytes, newline last) into buf. */
static void make_line(const fo_run_t *r, uint64_t seq, unsigned char *buf) {
  char head[FO_HEADER_LEN + 1];
  snprintf(head, sizeof head, "FANOUT %08x %010llu ", (unsigned)r->run_id,
           (unsigned long long)seq);
  memcpy(buf, head, FO_HEADER_LEN);
  for (size_t i = FO_HEADER_LEN; i + 1 < r->size; i++)
    buf[i] = (unsigned char)('a' + (seq * 7 + i * 13) % 26);
  buf[r->size - 1] = '\n';
}

/* Replaces each "%d" in templ by n and appends a newline, into out (at
 * most outlen bytes). Returns the length. */
static size_t expand_hello(const char *templ, unsigned n, char *out, size_t outlen) {
  size_t len = 0;
  for (const char *p = templ; *p && len + 12 < outlen; p++) {
    if (p[0] == '%' && p[1] == 'd') {
      len += (size_t)snprintf(out + len, outlen - len, "%u", n);
      p++;
    } else {
      out[len++] = *p;
    }
  }
  out[len++] = '\n';
  return len;
}

/* ---- receivers ---------------------------------------------------------------- */

/* Marks receiver v failed; the lines it misses from now on count as lost. */
static void receiver_fail(fo_run_t *r, fo_receiver_t *v) {
  close(v->fd);
  v->fd = -1;
}

/* Accounts one complete line (newline and any CR removed) for v. */
static void receiver_line(fo_run_t *r, fo_receiver_t *v, const unsigned char *line, size_t len) {
  const unsigned char *tok = memmem(line, len, r->prefix, r->prefix_len);
  if (!tok) {
    v->other_lines++;
    return;
  }
  size_t rest = len - (size_t)(tok - line);
  if (rest == r->prefix_len + 4 && memcmp(tok + r->prefix_len, "SYNC", 4) == 0) {
    v->synced = true;
    return;
  }
  uint64_t seq = 0;
  bool digits = rest >= FO_HEADER_LEN;
  for (size_t i = r->prefix_len; digits && i < FO_HEADER_LEN - 1; i++) {
    if (tok[i] < '0' || tok[i] > '9')
      digits = false;
    else
      seq = seq * 10 + (uint64_t)(tok[i] - '0');
  }
  if (!digits || seq >= r->lines || rest != r->size - 1) {
    v->corrupt++;
    return;
  }
  unsigned char want[FO_RX_MAX];
  make_line(r, seq, want);
  if (memcmp(tok, want, rest) != 0) {
    v->corrupt++;
    return;
  }
  if (v->seen[seq / 8] & (1u << (seq % 8))) {
    v->duplicated++;
    return;
  }
  v->seen[seq / 8] |= (unsigned char)(1u << (seq % 8));
  v->distinct++;
  if ((int64_t)seq < v->max_seq)
    v->reordered++;
  else
    v->max_seq = (int64_t)seq;
  uint64_t now = bn_now_ns();
  bn_hist_add(&r->hist, now - r->sent_ns[seq]);
  r->last_delivery_ns = now;
}

/* Reads what arrived for v and accounts every complete line. */
static void receiver_read(fo_run_t *r, fo_receiver_t *v) {
  ssize_t n = recv(v->fd, v->in + v->in_len, sizeof v->in - v->in_len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    lg_error(&r->errs, "receiver %u: %s", v->id, n < 0 ? strerror(errno) : "server closed");
    receiver_fail(r, v);
    return;
  }
  v->in_len += (size_t)n;
  size_t start = 0;
  for (;;) {
    unsigned char *nl = memchr(v->in + start, '\n', v->in_len - start);
    if (!nl)
      break;
    size_t len = (size_t)(nl - (v->in + start));
    if (len > 0 && v->in[start + len - 1] == '\r')
      len--;
    receiver_line(r, v, v->in + start, len);
    start = (size_t)(nl - v->in) + 1;
  }
  memmove(v->in, v->in + start, v->in_len - start);
  v->in_len -= start;
  if (v->in_len == sizeof v->in) {
    lg_error(&r->errs, "receiver %u: line longer than %d bytes", v->id, FO_RX_MAX);
    receiver_fail(r, v);
  }
}

/* ---- sender ------------------------------------------------------------------- */

/* True when every live receiver has seen a SYNC line. */
static bool all_synced(const fo_run_t *r) {
  for (unsigned i = 0; i < r->nrecv; i++)
    if (r->recv[i].fd >= 0 && !r->recv[i].synced)
      return false;
  return true;
}

/* Returns the lowest "highest line delivered + 1" over live receivers:
 * how far the slowest one has got. */
static uint64_t slowest_progress(const fo_run_t *r) {
  uint64_t low = r->next_seq;
  for (unsigned i = 0; i < r->nrecv; i++)
    if (r->recv[i].fd >= 0 && (uint64_t)(r->recv[i].max_seq + 1) < low)
      low = (uint64_t)(r->recv[i].max_seq + 1);
  return low;
}

/* Writes the sender's pending output; watches for writability while some
 * is left. */
static void sender_flush(fo_run_t *r) {
  while (r->out_off < r->out_len) {
    ssize_t n = send(r->sender_fd, r->out + r->out_off, r->out_len - r->out_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n < 0) {
      lg_error(&r->errs, "sender: send: %s", strerror(errno));
      r->phase = FO_DONE;
      return;
    }
    r->out_off += (size_t)n;
  }
  if (r->out_off == r->out_len)
    r->out_off = r->out_len = 0;
  bool want = r->out_len > 0;
  if (want != r->sender_watch_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = NULL};
    epoll_ctl(r->ep, EPOLL_CTL_MOD, r->sender_fd, &ev);
    r->sender_watch_out = want;
  }
}

/* Advances the run: sends SYNC lines until all receivers are in, then the
 * numbered lines as the window allows, then waits for the stragglers. */
static void sender_pump(fo_run_t *r) {
  uint64_t now = bn_now_ns();
  if (r->phase == FO_SYNC) {
    if (all_synced(r)) {
      r->phase = FO_SEND;
      r->start_ns = r->last_delivery_ns = now;
    } else if (r->out_len == 0 && now - r->last_sync_ns >= FO_SYNC_EVERY_NS) {
      r->out_len = (size_t)snprintf((char *)r->out, sizeof r->out, "%sSYNC\n", r->prefix);
      r->last_sync_ns = now;
    }
  }
  if (r->phase == FO_SEND) {
    uint64_t low = slowest_progress(r);
    while (r->next_seq < r->lines && r->out_len + r->size <= sizeof r->out &&
           (r->o->window == 0 || r->next_seq - low < r->o->window)) {
      make_line(r, r->next_seq, r->out + r->out_len);
      r->sent_ns[r->next_seq++] = now;
      r->out_len += r->size;
    }
    if (r->next_seq == r->lines && r->out_len == 0) {
      r->phase = FO_DRAIN;
      r->drain_start_ns = now;
    } else if (r->next_seq < r->lines && r->next_seq - low >= r->o->window && r->o->window &&
               now - r->last_delivery_ns >= r->o->drain_ns) {
      /* The window is full and nothing arrives: a receiver was dropped
       * without being closed, or the server stopped. */
      lg_error(&r->errs, "stalled: nothing delivered for %.1f s with %u lines in flight",
               (double)r->o->drain_ns / 1e9, r->o->window);
      r->phase = FO_DONE;
      return;
    }
  }
  if (r->out_len > r->out_off)
    sender_flush(r);
  if (r->phase == FO_DRAIN) {
    bool complete = true;
    for (unsigned i = 0; i < r->nrecv; i++)
      if (r->recv[i].fd >= 0 && r->recv[i].distinct < r->lines)
        complete = false;
    uint64_t quiet_since = r->last_delivery_ns > r->drain_start_ns ? r->last_delivery_ns
                                                                   : r->drain_start_ns;
    if (complete || now - quiet_since >= r->o->drain_ns)
      r->phase = FO_DONE;
  }
}

/* Reads and drops what the server sends the sender (some chat servers echo
 * to everyone); the sender must keep reading or the server may stall. */
static void sender_read(fo_run_t *r) {
  unsigned char buf[16384];
  ssize_t n = recv(r->sender_fd, buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    lg_error(&r->errs, "sender: %s", n < 0 ? strerror(errno) : "server closed");
    r->phase = FO_DONE;
  }
}

/* ---- the run ----------------------------------------------------------------- */

/* Connects one client (and sends its hello). Returns the fd or -1. */
static int fo_connect(fo_run_t *r, const bn_addr_t *addr, unsigned index, uint64_t deadline,
                      void *tag) {
  int fd = bn_connect_wait(addr, deadline);
  if (fd < 0) {
    lg_error(&r->errs, "connect %s: %s", r->o->connect, strerror(-fd));
    return -1;
  }
  bn_set_nodelay(fd);
  if (r->o->hello) {
    char hello[512];
    size_t len = expand_hello(r->o->hello, index, hello, sizeof hello);
    if (send(fd, hello, len, MSG_NOSIGNAL) != (ssize_t)len) {
      lg_error(&r->errs, "client %u: sending hello failed", index);
      close(fd);
      return -1;
    }
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
  epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev);
  return fd;
}

int lg_fanout(const lg_opts_t *o) {
  bn_addr_t addr;
  if (lg_addr(o->connect, "--connect", &addr) < 0)
    return 2;
  fo_run_t *r = calloc(1, sizeof *r);
  if (!r)
    return 1;
  r->o = o;
  r->size = o->size ? (size_t)o->size : FO_DEFAULT_SIZE;
  r->lines = o->count ? o->count : FO_DEFAULT_COUNT;
  if (r->size < FO_MIN_SIZE || r->size > FO_RX_MAX / 2 || r->lines > 9999999999ull) {
    fprintf(stderr, "loadgen: fanout --size must be %d..%d, --count below 10^10\n",
            FO_MIN_SIZE, FO_RX_MAX / 2);
    free(r);
    return 2;
  }
  r->nrecv = o->receivers;
  r->run_id = (uint32_t)(bn_now_ns() ^ ((uint64_t)getpid() << 16));
  r->prefix_len = (size_t)snprintf(r->prefix, sizeof r->prefix, "FANOUT %08x ", (unsigned)r->run_id);
  r->recv = calloc(r->nrecv, sizeof *r->recv);
  r->sent_ns = calloc(r->lines, sizeof *r->sent_ns);
  r->ep = epoll_create1(EPOLL_CLOEXEC);
  r->sender_fd = -1;
  if (!r->recv || !r->sent_ns || r->ep < 0) {
    fprintf(stderr, "loadgen: out of memory or descriptors\n");
    return 1;
  }
  uint64_t deadline = bn_now_ns() + o->timeout_ns;

  for (unsigned i = 0; i < r->nrecv; i++)
    r->recv[i].fd = -1;
  unsigned opened = 0;
  for (; opened < r->nrecv; opened++) {
    fo_receiver_t *v = &r->recv[opened];
    v->id = opened;
    v->max_seq = -1;
    v->seen = calloc(r->lines / 8 + 1, 1);
    v->fd = v->seen ? fo_connect(r, &addr, opened, deadline, v) : -1;
    if (v->fd < 0)
      break;
  }
  if (r->errs.count == 0)
    r->sender_fd = fo_connect(r, &addr, r->nrecv, deadline, NULL);
  r->phase = r->errs.count ? FO_DONE : FO_SYNC;

  struct epoll_event events[256];
  while (r->phase != FO_DONE && bn_now_ns() < deadline) {
    int n = epoll_wait(r->ep, events, 256, bn_ms_until(deadline, 10));
    for (int i = 0; i < n; i++) {
      fo_receiver_t *v = events[i].data.ptr;
      if (v == NULL) {
        if (events[i].events & EPOLLOUT)
          sender_flush(r);
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
          sender_read(r);
      } else if (v->fd >= 0) {
        receiver_read(r, v);
      }
    }
    if (r->phase != FO_DONE)
      sender_pump(r);
  }
  if (r->phase == FO_SYNC)
    lg_error(&r->errs, "timed out before every receiver saw a SYNC line");
  else if (r->phase != FO_DONE)
    lg_error(&r->errs, "timed out after %llu of %llu lines sent", (unsigned long long)r->next_seq,
             (unsigned long long)r->lines);

  /* Tally, and name the first anomaly when nothing failed earlier. */
  uint64_t deliveries = 0, lost = 0, dup = 0, reord = 0, corrupt = 0, other = 0;
  char first[BN_ERRLEN] = "";
  for (unsigned i = 0; i < r->nrecv; i++) {
    fo_receiver_t *v = &r->recv[i];
    uint64_t missing = r->lines - v->distinct;
    if (!first[0] && (missing || v->duplicated || v->reordered || v->corrupt))
      snprintf(first, sizeof first,
               "receiver %u: %llu lost, %llu duplicated, %llu reordered, %llu corrupt", i,
               (unsigned long long)missing, (unsigned long long)v->duplicated,
               (unsigned long long)v->reordered, (unsigned long long)v->corrupt);
    deliveries += v->distinct;
    lost += missing;
    dup += v->duplicated;
    reord += v->reordered;
    corrupt += v->corrupt;
    other += v->other_lines;
  }
  double secs = r->last_delivery_ns > r->start_ns ? (double)(r->last_delivery_ns - r->start_ns) / 1e9 : 0;
  lg_errors_t all = r->errs;
  all.count += lost + dup + reord + corrupt;
  if (!all.first[0])
    snprintf(all.first, sizeof all.first, "%s", first);

  lg_json_begin("fanout");
  lg_json_u64("receivers", r->nrecv);
  lg_json_u64("lines", r->lines);
  lg_json_u64("size", r->size);
  lg_json_u64("sent", r->next_seq);
  lg_json_u64("expected", (uint64_t)r->nrecv * r->lines);
  lg_json_u64("deliveries", deliveries);
  lg_json_u64("lost", lost);
  lg_json_u64("duplicated", dup);
  lg_json_u64("reordered", reord);
  lg_json_u64("corrupt", corrupt);
  lg_json_u64("other_lines", other);
  lg_json_num("seconds", secs);
  lg_json_num("deliveries_per_sec", secs > 0 ? (double)deliveries / secs : 0);
  lg_json_num("p50_us", (double)bn_hist_quantile(&r->hist, 0.50) / 1e3);
  lg_json_num("p99_us", (double)bn_hist_quantile(&r->hist, 0.99) / 1e3);
  int rc = lg_json_errors(&all);
  lg_json_end();

  for (unsigned i = 0; i < r->nrecv; i++) {
    if (r->recv[i].fd >= 0)
      close(r->recv[i].fd);
    free(r->recv[i].seen);
  }
  if (r->sender_fd >= 0)
    close(r->sender_fd);
  close(r->ep);
  free(r->recv);
  free(r->sent_ns);
  free(r);
  return rc;
}
