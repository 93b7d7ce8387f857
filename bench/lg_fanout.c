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
 *
 * With --ws PATH every client speaks WebSocket (RFC 6455) instead, as the
 * chat page in a browser does: it opens with an HTTP upgrade of PATH on the
 * --connect address (a fresh random 16-byte key per client; the answer
 * must be 101 with our key's Sec-WebSocket-Accept and no extension), the
 * sender sends each line as one masked text frame without its LF, and
 * every text message from the server is one line. Both transports hand
 * each line to the same receiver_line(), so a WebSocket run is checked
 * exactly as a line run is. Pings are answered; a close frame or a frame
 * that breaks the protocol fails the client. The frame codec is
 * libsockit's (sockit/ws.h, and sockit/http.h's header-name helpers for
 * the answer): pure code with no I/O, the only pieces of the library this
 * program uses, so what is measured is still the server.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"
#include "sockit/http.h"
#include "sockit/ws.h"

#define FO_DEFAULT_COUNT 1000
#define FO_DEFAULT_SIZE 64
#define FO_MIN_SIZE 32
#define FO_HEADER_LEN 27           /* "FANOUT xxxxxxxx nnnnnnnnnn " */
#define FO_RX_MAX (64 * 1024)      /* longest line a receiver accepts */
#define FO_TX_MAX (64 * 1024)      /* sender's output buffer */
#define FO_SYNC_EVERY_NS 20000000u /* 20 ms */
#define FO_CONNECT_RETRY_MS 20     /* a connect not done by then lost its SYN */
#define FO_WS_HEAD_MAX 8192        /* longest answer head to the upgrade */
#define FO_WS_MESSAGE_MAX (FO_RX_MAX - SK_WS_HEADER_MAX) /* a frame always fits in[] */

typedef enum { FO_SYNC, FO_SEND, FO_DRAIN, FO_DONE } fo_phase_t;

/* One client's WebSocket input state. */
typedef struct {
  sk_ws_decoder_t dec;
  unsigned char *msg; /* a fragmented message being put together (made on first use) */
  size_t msg_len;
} fo_ws_t;

typedef struct {
  int fd;            /* -1 once failed */
  unsigned id;
  bool synced;
  unsigned char *seen;  /* bitmap of delivered sequence numbers */
  uint64_t distinct, duplicated, reordered, corrupt, other_lines;
  int64_t max_seq;      /* highest sequence number delivered, -1 before */
  fo_ws_t ws;           /* --ws only */
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
  /* --ws */
  bool ws;
  uint64_t mask_state;      /* splitmix64 state of the frame masks */
  fo_ws_t sender_ws;
  size_t sender_in_len;
  unsigned char sender_in[FO_RX_MAX];
} fo_run_t;

/* Writes line seq (exactly r->size bytes, newline last) into buf. */
static void make_line(const fo_run_t *r, uint64_t seq, unsigned char *buf) {
  char head[48]; /* FO_HEADER_LEN + 1 while seq < 10^10, as lg_fanout checks */
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

/* ---- WebSocket client ------------------------------------------------------- */

/* The next frame mask. RFC 6455 asks browsers for masks an attacker cannot
 * predict (they shield proxies from script-made bytes); a load generator
 * only has to mask, so a splitmix64 stream seeded from getrandom() will do. */
static void next_mask(fo_run_t *r, uint8_t mask[4]) {
  uint64_t z = (r->mask_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  memcpy(mask, &z, 4);
}

/* Writes one masked client frame (opcode, FIN set) holding payload[0..len)
 * into out, which has room for SK_WS_HEADER_MAX + len bytes. Returns the
 * frame's length. */
static size_t ws_client_frame(fo_run_t *r, unsigned opcode, const void *payload, size_t len,
                              unsigned char *out) {
  uint8_t mask[4];
  next_mask(r, mask);
  size_t h = sk_ws_header(out, opcode, 1, len, mask);
  memcpy(out + h, payload, len);
  sk_ws_mask(out + h, len, mask, 0);
  return h + len;
}

/* Base64 of 16 bytes: 24 characters and a NUL (a Sec-WebSocket-Key). */
static void base64_16(const unsigned char in[16], char out[25]) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < 15; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = tab[v >> 18];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = tab[(v >> 6) & 63];
    out[o++] = tab[v & 63];
  }
  out[o++] = tab[in[15] >> 2];
  out[o++] = tab[(in[15] & 3) << 4];
  out[o++] = '=';
  out[o++] = '=';
  out[o] = '\0';
}

/* Sends all of buf on the non-blocking fd, waiting for room until
 * deadline. Returns 0 or -errno (-ETIMEDOUT). */
static int send_all(int fd, const void *buf, size_t len, uint64_t deadline) {
  const unsigned char *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return -errno;
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    if (bn_now_ns() >= deadline)
      return -ETIMEDOUT;
    poll(&pf, 1, bn_ms_until(deadline, 1000));
  }
  return 0;
}

/* Checks the head of the server's answer to our upgrade, head[0..len)
 * (its final empty line included): status 101, "Upgrade: websocket", a
 * Connection list holding "upgrade", exactly one Sec-WebSocket-Accept
 * equal to want, and no extension or subprotocol (we offered none).
 * Returns 0, or -1 with the reason in err. */
static int ws_check_answer(const char *head, size_t len, const char *want, char *err,
                           size_t errlen) {
  const char *eol = memmem(head, len, "\r\n", 2);
  size_t sl = (size_t)(eol - head);
  if (sl < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0 || (sl > 12 && head[12] != ' ')) {
    snprintf(err, errlen, "expected 101, got \"%.*s\"", (int)(sl < 80 ? sl : 80), head);
    return -1;
  }
  bool upgrade = false, connection = false;
  unsigned accepts = 0;
  for (const char *line = eol + 2; line < head + len - 2;) {
    const char *end = memmem(line, (size_t)(head + len - line), "\r\n", 2);
    const char *colon = memchr(line, ':', (size_t)(end - line));
    if (!colon) {
      int shown = end - line < 80 ? (int)(end - line) : 80;
      snprintf(err, errlen, "malformed header line \"%.*s\"", shown, line);
      return -1;
    }
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1, *vend = end;
    while (v < vend && (*v == ' ' || *v == '\t'))
      v++;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
      vend--;
    size_t vlen = (size_t)(vend - v);
    if (sk_http_name_eq(line, nlen, "Upgrade"))
      upgrade = sk_http_name_eq(v, vlen, "websocket");
    else if (sk_http_name_eq(line, nlen, "Connection"))
      connection = connection || sk_http_has_token(v, vlen, "upgrade");
    else if (sk_http_name_eq(line, nlen, "Sec-WebSocket-Accept")) {
      if (vlen != SK_WS_ACCEPT_LEN || memcmp(v, want, SK_WS_ACCEPT_LEN) != 0) {
        snprintf(err, errlen, "Sec-WebSocket-Accept is \"%.*s\", expected \"%s\"",
                 (int)(vlen < 40 ? vlen : 40), v, want);
        return -1;
      }
      accepts++;
    } else if (sk_http_name_eq(line, nlen, "Sec-WebSocket-Extensions") ||
               sk_http_name_eq(line, nlen, "Sec-WebSocket-Protocol")) {
      snprintf(err, errlen, "the server chose %.*s that was not offered", (int)nlen, line);
      return -1;
    }
    line = end + 2;
  }
  if (!upgrade || !connection || accepts != 1) {
    snprintf(err, errlen, "101 without %s", !upgrade ? "\"Upgrade: websocket\""
                                            : !connection ? "\"Connection: upgrade\""
                                                          : "exactly one Sec-WebSocket-Accept");
    return -1;
  }
  return 0;
}

/* Opens the WebSocket on the connected, non-blocking fd: sends the upgrade
 * of --ws PATH with a fresh random key and waits, until deadline, for the
 * server's answer (ws_check_answer). What follows the answer's head (the
 * first frames) is left in in[0..*in_len), in having room for cap bytes.
 * Returns 0, or -1 with the reason in err. */
static int ws_open(fo_run_t *r, int fd, unsigned char *in, size_t cap, size_t *in_len,
                   uint64_t deadline, char *err, size_t errlen) {
  unsigned char raw[16];
  char key[25], want[SK_WS_ACCEPT_LEN + 1], req[1024];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
    snprintf(err, errlen, "getrandom: %s", strerror(errno));
    return -1;
  }
  base64_16(raw, key);
  if (sk_ws_accept_key(key, 24, want) < 0) {
    snprintf(err, errlen, "cannot compute Sec-WebSocket-Accept (SHA-1)");
    return -1;
  }
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "\r\n",
                   r->o->ws, r->o->connect, key);
  if (n < 0 || (size_t)n >= sizeof req) {
    snprintf(err, errlen, "--ws path too long");
    return -1;
  }
  int rc = send_all(fd, req, (size_t)n, deadline);
  if (rc < 0) {
    snprintf(err, errlen, "sending the upgrade: %s", strerror(-rc));
    return -1;
  }
  size_t got = 0, limit = cap < FO_WS_HEAD_MAX ? cap : FO_WS_HEAD_MAX;
  const unsigned char *end = NULL;
  while (!end) {
    if (got == limit) {
      snprintf(err, errlen, "no end of the answer's head within %zu bytes", limit);
      return -1;
    }
    ssize_t k = recv(fd, in + got, limit - got, 0);
    if (k > 0) {
      got += (size_t)k;
      end = memmem(in, got, "\r\n\r\n", 4);
      continue;
    }
    if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
      snprintf(err, errlen, "%s before the answer to the upgrade",
               k == 0 ? "server closed" : strerror(errno));
      return -1;
    }
    if (bn_now_ns() >= deadline) {
      snprintf(err, errlen, "no answer to the upgrade in time");
      return -1;
    }
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    poll(&pf, 1, bn_ms_until(deadline, 1000));
  }
  size_t head = (size_t)(end - in) + 4;
  if (ws_check_answer((const char *)in, head, want, err, errlen) < 0)
    return -1;
  memmove(in, in + head, got - head);
  *in_len = got - head;
  return 0;
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

/* "receiver N" for v, "sender" for NULL, in buf (32 bytes); for messages. */
static const char *client_name(const fo_receiver_t *v, char *buf) {
  if (!v)
    return "sender";
  snprintf(buf, 32, "receiver %u", v->id);
  return buf;
}

/* Decodes the complete frames at in[0..len) of one client: each text
 * message is one line for receiver v (the sender, v == NULL, drops them);
 * pings are answered (a receiver sends its pong at once, the sender queues
 * it behind its whole frames); a close, a binary message or a frame that
 * breaks the protocol fails the client. Returns the bytes used, or -1 when
 * the client failed (the error is counted; a receiver is closed). */
static long ws_receive(fo_run_t *r, fo_ws_t *w, unsigned char *in, size_t len, fo_receiver_t *v) {
  char who[32]; /* named only when something goes wrong: this is the hot path */
  size_t used = 0;
  while (used < len) {
    sk_ws_event_t ev;
    long n = sk_ws_decode(&w->dec, in + used, len - used, &ev, NULL);
    if (n == 0)
      break;
    if (n < 0) {
      lg_error(&r->errs, "%s: the server's frame breaks RFC 6455 (close code %ld)",
               client_name(v, who), -n);
      goto failed;
    }
    used += (size_t)n;
    switch (ev.kind) {
    case SK_WS_EV_DATA:
      if (ev.opcode != SK_WS_OP_TEXT) {
        lg_error(&r->errs, "%s: a binary message from the server", client_name(v, who));
        goto failed;
      }
      if (!v)
        break;
      if (ev.fin && w->msg_len == 0) {
        receiver_line(r, v, ev.payload, ev.len);
        break;
      }
      if (!w->msg && !(w->msg = malloc(FO_WS_MESSAGE_MAX))) {
        lg_error(&r->errs, "%s: out of memory", client_name(v, who));
        goto failed;
      }
      /* The decoder holds messages to FO_WS_MESSAGE_MAX in all. */
      memcpy(w->msg + w->msg_len, ev.payload, ev.len);
      w->msg_len += ev.len;
      if (ev.fin) {
        receiver_line(r, v, w->msg, w->msg_len);
        w->msg_len = 0;
      }
      break;
    case SK_WS_EV_PING: {
      unsigned char pong[SK_WS_HEADER_MAX + SK_WS_CONTROL_MAX];
      size_t plen = ws_client_frame(r, SK_WS_OP_PONG, ev.payload, ev.len, pong);
      if (v ? send(v->fd, pong, plen, MSG_NOSIGNAL) != (ssize_t)plen
            : r->out_len + plen > sizeof r->out) {
        lg_error(&r->errs, "%s: no room to answer a ping", client_name(v, who));
        goto failed;
      }
      if (!v) {
        memcpy(r->out + r->out_len, pong, plen);
        r->out_len += plen;
      }
      break;
    }
    case SK_WS_EV_PONG: break;
    case SK_WS_EV_CLOSE:
      lg_error(&r->errs, "%s: the server closed the WebSocket (%u%s%.*s)", client_name(v, who),
               ev.close_code, ev.reason_len ? ": " : "", (int)ev.reason_len,
               ev.reason_len ? ev.reason : "");
      goto failed;
    }
  }
  return (long)used;
failed:
  if (v)
    receiver_fail(r, v);
  return -1;
}

/* Accounts every complete line at v->in[0..v->in_len). Returns the bytes
 * used. */
static size_t receiver_lines(fo_run_t *r, fo_receiver_t *v) {
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
  return start;
}

/* Accounts every complete line (or, with --ws, every complete frame) in
 * v's input and keeps the incomplete rest. */
static void receiver_consume(fo_run_t *r, fo_receiver_t *v) {
  size_t start;
  if (r->ws) {
    long used = ws_receive(r, &v->ws, v->in, v->in_len, v);
    if (used < 0)
      return; /* v has failed */
    start = (size_t)used;
  } else {
    start = receiver_lines(r, v);
  }
  memmove(v->in, v->in + start, v->in_len - start);
  v->in_len -= start;
  if (v->in_len == sizeof v->in) {
    lg_error(&r->errs, "receiver %u: line longer than %d bytes", v->id, FO_RX_MAX);
    receiver_fail(r, v);
  }
}

/* Reads what arrived for v and accounts it. */
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
  receiver_consume(r, v);
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

/* Room one line may take in the sender's output: make_line() writes
 * r->size bytes, behind a frame header with --ws. */
static size_t line_room(const fo_run_t *r) {
  return r->ws ? SK_WS_HEADER_MAX + r->size : r->size;
}

/* Appends line seq to the sender's output: the line itself, or with --ws
 * one masked text frame holding it without its LF. */
static void queue_line(fo_run_t *r, uint64_t seq) {
  unsigned char *at = r->out + r->out_len;
  if (!r->ws) {
    make_line(r, seq, at);
    r->out_len += r->size;
    return;
  }
  uint8_t mask[4];
  next_mask(r, mask);
  size_t h = sk_ws_header(at, SK_WS_OP_TEXT, 1, r->size - 1, mask);
  make_line(r, seq, at + h); /* its LF, last, is left out of the frame */
  sk_ws_mask(at + h, r->size - 1, mask, 0);
  r->out_len += h + r->size - 1;
}

/* Puts a SYNC line (or its frame) in the empty sender output. */
static void queue_sync(fo_run_t *r) {
  char line[48];
  size_t n = (size_t)snprintf(line, sizeof line, "%sSYNC", r->prefix);
  if (r->ws) {
    r->out_len = ws_client_frame(r, SK_WS_OP_TEXT, line, n, r->out);
  } else {
    memcpy(r->out, line, n);
    r->out[n] = '\n';
    r->out_len = n + 1;
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
      queue_sync(r);
      r->last_sync_ns = now;
    }
  }
  if (r->phase == FO_SEND) {
    uint64_t low = slowest_progress(r);
    while (r->next_seq < r->lines && r->out_len + line_room(r) <= sizeof r->out &&
           (r->o->window == 0 || r->next_seq - low < r->o->window)) {
      r->sent_ns[r->next_seq] = now;
      queue_line(r, r->next_seq++);
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

/* With --ws: decodes the frames in the sender's input (answering pings,
 * noticing a close) and keeps the incomplete rest. */
static void sender_consume(fo_run_t *r) {
  long used = ws_receive(r, &r->sender_ws, r->sender_in, r->sender_in_len, NULL);
  if (used < 0) {
    r->phase = FO_DONE;
    return;
  }
  memmove(r->sender_in, r->sender_in + used, r->sender_in_len - (size_t)used);
  r->sender_in_len -= (size_t)used;
  if (r->sender_in_len == sizeof r->sender_in) {
    lg_error(&r->errs, "sender: a frame longer than %d bytes", FO_RX_MAX);
    r->phase = FO_DONE;
  } else if (r->out_len > r->out_off) {
    sender_flush(r); /* a pong was queued */
  }
}

/* Reads and drops what the server sends the sender (some chat servers echo
 * to everyone); the sender must keep reading or the server may stall. With
 * --ws it decodes the frames, to answer pings and notice a close. */
static void sender_read(fo_run_t *r) {
  unsigned char buf[16384];
  unsigned char *at = r->ws ? r->sender_in + r->sender_in_len : buf;
  size_t room = r->ws ? sizeof r->sender_in - r->sender_in_len : sizeof buf;
  ssize_t n = recv(r->sender_fd, at, room, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    lg_error(&r->errs, "sender: %s", n < 0 ? strerror(errno) : "server closed");
    r->phase = FO_DONE;
    return;
  }
  if (!r->ws)
    return;
  r->sender_in_len += (size_t)n;
  sender_consume(r);
}

/* ---- the run ----------------------------------------------------------------- */

/* Connects to addr like bn_connect_wait, but a connect that has not
 * completed within FO_CONNECT_RETRY_MS is dropped and made again at once.
 * On loopback a connect completes in microseconds unless the server's
 * accept queue was full and its SYN dropped, and then the kernel would
 * retry only after a second: a server with a short listen backlog (ncat
 * listens with 10) that is slow to accept would cost a second per burst of
 * connects, tens of seconds for a few hundred receivers, all before the
 * measurement starts. Returns the fd or -errno (-ETIMEDOUT at deadline). */
static int connect_retrying(const bn_addr_t *addr, uint64_t deadline) {
  for (;;) {
    int fd = bn_connect_start(addr);
    if (fd < 0)
      return fd;
    uint64_t now = bn_now_ns(), retry = now + FO_CONNECT_RETRY_MS * 1000000ull;
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    int n = poll(&pf, 1, bn_ms_until(retry < deadline ? retry : deadline, FO_CONNECT_RETRY_MS));
    if (n > 0) {
      int rc = bn_connect_result(fd);
      if (rc == 0)
        return fd;
      close(fd);
      return rc;
    }
    close(fd);
    if (n < 0 && errno != EINTR)
      return -errno;
    if (bn_now_ns() >= deadline)
      return -ETIMEDOUT;
  }
}

/* Connects one client, opens its WebSocket with --ws (what arrives right
 * after the server's answer goes to in[0..*in_len), in having room for cap
 * bytes), and sends its hello. Returns the fd or -1. */
static int fo_connect(fo_run_t *r, const bn_addr_t *addr, unsigned index, uint64_t deadline,
                      void *tag, unsigned char *in, size_t cap, size_t *in_len) {
  int fd = connect_retrying(addr, deadline);
  if (fd < 0) {
    lg_error(&r->errs, "connect %s: %s", r->o->connect, strerror(-fd));
    return -1;
  }
  bn_set_nodelay(fd);
  if (r->ws) {
    char err[BN_ERRLEN];
    if (ws_open(r, fd, in, cap, in_len, deadline, err, sizeof err) < 0) {
      lg_error(&r->errs, "client %u: WebSocket upgrade of %s on %s: %s", index, r->o->ws,
               r->o->connect, err);
      close(fd);
      return -1;
    }
  }
  if (r->o->hello) {
    char hello[512];
    unsigned char frame[sizeof hello + SK_WS_HEADER_MAX];
    size_t len = expand_hello(r->o->hello, index, hello, sizeof hello);
    const void *msg = hello;
    if (r->ws) {
      len = ws_client_frame(r, SK_WS_OP_TEXT, hello, len - 1, frame); /* no LF */
      msg = frame;
    }
    if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len) {
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
  r->ws = o->ws != NULL;
  if (r->ws && (o->ws[0] != '/' || strpbrk(o->ws, " \t\r\n"))) {
    fprintf(stderr, "loadgen: fanout --ws PATH must start with / and hold no space\n");
    free(r);
    return 2;
  }
  if (r->ws && getrandom(&r->mask_state, sizeof r->mask_state, 0) != sizeof r->mask_state)
    r->mask_state = bn_now_ns();
  sk_ws_decoder_init(&r->sender_ws.dec, 0, FO_WS_MESSAGE_MAX);
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
    sk_ws_decoder_init(&v->ws.dec, 0, FO_WS_MESSAGE_MAX);
    v->fd = v->seen ? fo_connect(r, &addr, opened, deadline, v, v->in, sizeof v->in, &v->in_len)
                    : -1;
    if (v->fd < 0)
      break;
  }
  if (r->errs.count == 0)
    r->sender_fd = fo_connect(r, &addr, r->nrecv, deadline, NULL, r->sender_in,
                              sizeof r->sender_in, &r->sender_in_len);
  /* Frames that came in right behind a server's answer to the upgrade. */
  for (unsigned i = 0; i < r->nrecv; i++)
    if (r->recv[i].fd >= 0 && r->recv[i].in_len)
      receiver_consume(r, &r->recv[i]);
  if (r->sender_fd >= 0 && r->sender_in_len)
    sender_consume(r);
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
  lg_json_str("transport", r->ws ? "websocket" : "lines");
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
  /* The generator's own CPU time (connects included): on a small machine
   * it shares the cores with the server, so its cost is part of the figure. */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  lg_json_num("cpu_seconds", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
  int rc = lg_json_errors(&all);
  lg_json_end();

  for (unsigned i = 0; i < r->nrecv; i++) {
    if (r->recv[i].fd >= 0)
      close(r->recv[i].fd);
    free(r->recv[i].seen);
    free(r->recv[i].ws.msg);
  }
  free(r->sender_ws.msg);
  if (r->sender_fd >= 0)
    close(r->sender_fd);
  close(r->ep);
  free(r->recv);
  free(r->sent_ns);
  free(r);
  return rc;
}
