/* web.c - the chat's web side: the page over HTTP/1.1 and the chat over
 * WebSocket (services/web.h says what it does; sockit/http.h and
 * sockit/ws.h are the parsers it stands on). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "services/web.h"
#include "services/web_assets.h"
#include "sockit/http.h"
#include "sockit/ws.h"

/* The page's policy: scripts and styles from the page's own files only (no
 * inline script, no eval), the WebSocket to its own host, nothing framed. */
#define WEB_CSP                                                                            \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "       \
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define WEB_SECURITY_HEADERS                                                               \
  "Content-Security-Policy: " WEB_CSP "\r\n"                                               \
  "X-Content-Type-Options: nosniff\r\n"                                                    \
  "X-Frame-Options: DENY\r\n"                                                              \
  "Referrer-Policy: no-referrer\r\n"                                                       \
  "Cross-Origin-Opener-Policy: same-origin\r\n"
#define WEB_RESPONSE_HEAD_MAX 1024

struct web {
  chat_t *ch;
  web_opts_t o;
  char origins[WEB_ORIGINS_MAX][SK_ENDPOINT_STRLEN];
  int any_origin;
};

typedef enum { W_HTTP, W_WS, W_CLOSING } wstate_t;

typedef struct {
  sk_conn_t *conn;
  web_t *web;
  wstate_t state;
  sk_timer_t timer;    /* HTTP: head deadline or keep-alive idle; WebSocket: pings */
  /* HTTP */
  unsigned requests;   /* answered on this connection */
  uint64_t body_left;  /* bytes of a request body still to drop */
  int head_started;    /* bytes of the next request head have arrived */
  int blocked;         /* a whole request waits for room in the output queue */
  /* WebSocket */
  chat_user_t *user;
  sk_ws_decoder_t dec;
  sk_buf_t msg;        /* a fragmented message being put together */
  uint64_t last_rx;    /* when the client last sent anything */
  int ping_out;        /* a keep-alive ping has not been answered */
  int close_sent;
  const char *why;     /* what the user's QUIT line says when the socket goes */
} web_client_t;

/* ---- the web_t ---------------------------------------------------------------------------- */

int web_new(web_t **out, chat_t *ch, const web_opts_t *o) {
  web_t *w = calloc(1, sizeof *w);
  if (!w)
    return -ENOMEM;
  w->ch = ch;
  w->o = *o;
  if (!w->o.ping_ms)
    w->o.ping_ms = WEB_PING_MS;
  if (!w->o.head_timeout_ms)
    w->o.head_timeout_ms = WEB_HEAD_TIMEOUT_MS;
  if (!w->o.keepalive_ms)
    w->o.keepalive_ms = WEB_KEEPALIVE_IDLE_MS;
  if (o->norigins < 0 || o->norigins > WEB_ORIGINS_MAX) {
    free(w);
    return -EINVAL;
  }
  for (int i = 0; i < o->norigins; i++) {
    const char *s = o->origins[i];
    size_t n = strlen(s);
    if (strcmp(s, "*") == 0) {
      w->any_origin = 1;
      continue;
    }
    if (n == 0 || n >= SK_ENDPOINT_STRLEN || strpbrk(s, "/ \t\r\n,")) {
      free(w);
      return -EINVAL;
    }
    memcpy(w->origins[i], s, n + 1);
    w->o.origins[i] = w->origins[i];
  }
  *out = w;
  return 0;
}

void web_free(web_t *w) { free(w); }

static void web_log(const web_client_t *wc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One log line naming the peer, if the owner wants logs. */
static void web_log(const web_client_t *wc, const char *fmt, ...) {
  const web_t *w = wc->web;
  if (!w->o.log)
    return;
  char peer[SK_ENDPOINT_STRLEN], msg[SK_ERRLEN], line[SK_ERRLEN + SK_ENDPOINT_STRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "web %s: %s",
           sk_sockaddr_format(sk_conn_peer(wc->conn), peer, sizeof peer), msg);
  w->o.log(w->o.arg, line);
}

/* ---- HTTP responses ------------------------------------------------------------------------- */

/* The IMF-fixdate of now ("Sun, 22 Nov 2026 10:00:00 GMT"), written
 * without strftime so that the process's locale cannot change it. */
static void http_date(char *buf, size_t len) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
           months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

typedef struct {
  int status;
  const char *type;          /* Content-Type of the body */
  const void *body;
  size_t body_len;
  int head_only;             /* HEAD: headers as for GET, no body */
  int keep;                  /* keep the connection open afterwards */
  const char *cache;         /* Cache-Control */
  const char *etag;          /* NULL = none */
  const char *extra;         /* more header lines, each ending CRLF; NULL = none */
} http_answer_t;

/* Queues an answer. Returns 0, or SK_ETOOBIG when the output queue cannot
 * take it now (nothing queued: try again when on_data is called again). */
static int http_send(web_client_t *wc, const http_answer_t *a) {
  char head[WEB_RESPONSE_HEAD_MAX], date[64];
  http_date(date, sizeof date);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\n"
                   "Date: %s\r\n"
                   "Server: sockit\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %zu\r\n"
                   "Cache-Control: %s\r\n"
                   "%s%s%s"
                   WEB_SECURITY_HEADERS
                   "%s"
                   "Connection: %s\r\n"
                   "\r\n",
                   a->status, sk_http_reason(a->status), date, a->type, a->body_len, a->cache,
                   a->etag ? "ETag: " : "", a->etag ? a->etag : "", a->etag ? "\r\n" : "",
                   a->extra ? a->extra : "", a->keep ? "keep-alive" : "close");
  if (n < 0 || (size_t)n >= sizeof head)
    return SK_ETOOBIG; /* cannot happen with the fixed texts above */
  size_t body = a->head_only ? 0 : a->body_len;
  if ((size_t)n + body > sk_conn_out_space(wc->conn))
    return SK_ETOOBIG;
  sk_conn_send(wc->conn, head, (size_t)n);
  if (body)
    sk_conn_send(wc->conn, a->body, body);
  return 0;
}

/* Answers an error with a one-line text body. Statuses that leave the
 * request stream in doubt close the connection. */
static int http_error(web_client_t *wc, int status, int head_only, int keep, const char *extra) {
  char body[128];
  int n = snprintf(body, sizeof body, "%d %s\n", status, sk_http_reason(status));
  http_answer_t a = {.status = status,
                     .type = "text/plain; charset=utf-8",
                     .body = body,
                     .body_len = (size_t)n,
                     .head_only = head_only,
                     .keep = keep,
                     .cache = "no-store",
                     .extra = extra};
  return http_send(wc, &a);
}

/* ---- timers and closing ---------------------------------------------------------------------- */

static void http_timer(sk_loop_t *loop, sk_timer_t *t);
static void ws_timer(sk_loop_t *loop, sk_timer_t *t);

static void drain_timer(sk_loop_t *loop, sk_timer_t *t) {
  web_client_t *wc = t->data;
  (void)loop;
  web_log(wc, "output not taken within %d ms of closing", WEB_CLOSE_DRAIN_MS);
  sk_conn_abort(wc->conn);
}

/* Closes after the queued output, which has WEB_CLOSE_DRAIN_MS to go: a
 * client that stops reading cannot hold the connection and its queue. May
 * call web_closed_with at once: wc is not to be touched afterwards. */
static void web_close(web_client_t *wc) {
  sk_conn_t *c = wc->conn;
  sk_loop_t *loop = sk_conn_loop(c);
  wc->state = W_CLOSING;
  sk_timer_stop(loop, &wc->timer); /* armed or not: initialised again below */
  sk_timer_init(&wc->timer, drain_timer, wc);
  sk_timer_start(loop, &wc->timer, WEB_CLOSE_DRAIN_MS, 0);
  sk_conn_close(c);
}

/* Waits for the next request: the connection may stay idle for the
 * keep-alive time; once a head has begun it has the head deadline. */
static void http_arm(web_client_t *wc) {
  const web_t *w = wc->web;
  sk_timer_start(sk_conn_loop(wc->conn), &wc->timer,
                 wc->head_started ? w->o.head_timeout_ms : w->o.keepalive_ms, 0);
}

static void http_timer(sk_loop_t *loop, sk_timer_t *t) {
  web_client_t *wc = t->data;
  (void)loop;
  if (wc->state != W_HTTP)
    return;
  if (wc->blocked) {
    /* The request arrived whole; its answer waits for a client that does
     * not read what it asked for. */
    web_log(wc, "answers not read within %llu ms", (unsigned long long)wc->web->o.head_timeout_ms);
    sk_conn_abort(wc->conn);
    return;
  }
  if (!wc->head_started && wc->requests > 0) {
    web_close(wc); /* an idle keep-alive connection: close quietly */
    return;
  }
  web_log(wc, "no complete request head within %llu ms",
          (unsigned long long)wc->web->o.head_timeout_ms);
  http_error(wc, 408, 0, 0, NULL);
  web_close(wc);
}

/* ---- WebSocket: output -------------------------------------------------------------------- */

/* Queues one unmasked frame, all or nothing. Returns 0 or SK_ETOOBIG. A
 * frame of a chat line goes in as one piece (header and payload copied
 * together: one append instead of two on the fan-out path). */
static int ws_frame(web_client_t *wc, unsigned opcode, const void *payload, size_t len) {
  uint8_t frame[SK_WS_HEADER_MAX + SK_CHAT_OUT_LINE_MAX];
  size_t h = sk_ws_header(frame, opcode, 1, len, NULL);
  if (h + len > sk_conn_out_space(wc->conn))
    return SK_ETOOBIG;
  if (len <= SK_CHAT_OUT_LINE_MAX) {
    if (len)
      memcpy(frame + h, payload, len); /* payload may be NULL when len is 0 */
    sk_conn_send(wc->conn, frame, h + len);
  } else {
    sk_conn_send(wc->conn, frame, h);
    sk_conn_send(wc->conn, payload, len);
  }
  return 0;
}

/* Sends a close frame (once) and closes the connection after it: the
 * server closes the TCP connection first (RFC 6455 section 7.1.1). */
static void ws_close_with(web_client_t *wc, unsigned code, const char *reason) {
  sk_conn_t *c = wc->conn;
  if (!wc->close_sent) {
    uint8_t payload[SK_WS_CONTROL_MAX];
    size_t n = sk_ws_close_payload(payload, code, reason, reason ? strlen(reason) : 0);
    wc->close_sent = 1;
    if (ws_frame(wc, SK_WS_OP_CLOSE, payload, n) < 0) {
      sk_conn_abort(c); /* the queue is full: the peer is not reading anyway */
      return;
    }
  }
  web_close(wc); /* may call web_closed_with at once: wc is not touched after */
}

/* A protocol error: the close code the decoder named, and a log line. */
static void ws_fail(web_client_t *wc, unsigned code, const char *reason) {
  web_log(wc, "WebSocket closed with %u: %s", code, reason);
  wc->why = reason;
  ws_close_with(wc, code, reason);
}

/* The chat's sink over WebSocket: each line becomes one text frame. */
static int ws_sink_send(void *sink, const char *data, size_t len) {
  web_client_t *wc = sink;
  if (wc->state != W_WS)
    return 0; /* closing: the chat may still speak to it until it is gone */
  const char *first = memchr(data, '\n', len);
  if (!first || (size_t)(first - data) == len - 1) /* one line: the common case */
    return ws_frame(wc, SK_WS_OP_TEXT, data, first ? len - 1 : len) < 0 ? -1 : 0;
  size_t need = 0;
  for (size_t off = 0; off < len;) {
    const char *lf = memchr(data + off, '\n', len - off);
    size_t n = lf ? (size_t)(lf - (data + off)) : len - off;
    need += (n < 126 ? 2 : 4) + n;
    off += n + (lf != NULL);
  }
  if (need > sk_conn_out_space(wc->conn))
    return -1;
  for (size_t off = 0; off < len;) {
    const char *lf = memchr(data + off, '\n', len - off);
    size_t n = lf ? (size_t)(lf - (data + off)) : len - off;
    ws_frame(wc, SK_WS_OP_TEXT, data + off, n);
    off += n + (lf != NULL);
  }
  return 0;
}

static size_t ws_sink_space(void *sink) {
  size_t s = sk_conn_out_space(((web_client_t *)sink)->conn);
  return s > 64 ? s - 64 : 0; /* room for the frame headers of a few lines */
}

static void ws_sink_close(void *sink, int abort) {
  web_client_t *wc = sink;
  if (abort) {
    sk_conn_abort(wc->conn);
    return;
  }
  if (wc->state == W_CLOSING)
    return; /* closing already, with its deadline */
  ws_close_with(wc, SK_WS_CLOSE_NORMAL, NULL);
}

static void ws_sink_describe(void *sink, char *buf, size_t len) {
  char peer[SK_ENDPOINT_STRLEN];
  snprintf(buf, len, "%s (web)",
           sk_sockaddr_format(sk_conn_peer(((web_client_t *)sink)->conn), peer, sizeof peer));
}

static const chat_sink_ops_t ws_sink_ops = {ws_sink_send, ws_sink_space, ws_sink_close,
                                            ws_sink_describe};

/* ---- WebSocket: input ---------------------------------------------------------------------- */

/* A whole text message: its lines go to the chat as a line client's would.
 * Returns 0, or -1 when the user is gone (wc must not be touched). */
static int ws_message(web_client_t *wc, const char *p, size_t len) {
  chat_t *ch = wc->web->ch;
  size_t off = 0;
  do {
    const char *lf = memchr(p + off, '\n', len - off);
    size_t n = lf ? (size_t)(lf - (p + off)) : len - off;
    size_t ll = n && p[off + n - 1] == '\r' ? n - 1 : n;
    int r = ll + 2 > SK_CHAT_LINE_MAX ? chat_user_too_long(ch, wc->user)
                                      : chat_user_line(ch, wc->user, p + off, ll);
    if (r < 0)
      return -1;
    off += n + (lf != NULL);
  } while (off < len);
  return 0;
}

/* Handles the frame at the front of in. Returns 1 to go on, 0 when more
 * input is needed or the connection is closing (wc may be gone). */
static int ws_step(web_client_t *wc, sk_buf_t *in) {
  size_t len = sk_buf_len(in);
  if (len == 0)
    return 0;
  sk_ws_event_t ev;
  long r = sk_ws_decode(&wc->dec, (uint8_t *)sk_buf_head(in), len, &ev, NULL);
  if (r == 0)
    return 0;
  if (r < 0) {
    static const char *const why[] = {[0] = "protocol error",
                                      [SK_WS_CLOSE_INVALID_DATA - SK_WS_CLOSE_PROTOCOL] =
                                          "invalid UTF-8",
                                      [SK_WS_CLOSE_TOO_BIG - SK_WS_CLOSE_PROTOCOL] =
                                          "message too big"};
    unsigned code = (unsigned)-r;
    sk_buf_consume(in, len);
    ws_fail(wc, code, code >= SK_WS_CLOSE_PROTOCOL && code <= SK_WS_CLOSE_TOO_BIG &&
                              why[code - SK_WS_CLOSE_PROTOCOL]
                          ? why[code - SK_WS_CLOSE_PROTOCOL]
                          : "protocol error");
    return 0;
  }
  wc->last_rx = sk_loop_now(sk_conn_loop(wc->conn));
  wc->ping_out = 0;
  switch (ev.kind) {
  case SK_WS_EV_DATA:
    if (ev.opcode != SK_WS_OP_TEXT) {
      sk_buf_consume(in, len);
      ws_fail(wc, SK_WS_CLOSE_UNSUPPORTED, "binary messages are not part of the chat");
      return 0;
    }
    if (ev.fin && sk_buf_len(&wc->msg) == 0) {
      /* The whole message in one frame: straight from the input. */
      if (ws_message(wc, (const char *)ev.payload, ev.len) < 0) {
        sk_buf_consume(in, len);
        return 0;
      }
      break;
    }
    if (sk_buf_append(&wc->msg, ev.payload, ev.len) < 0) {
      sk_buf_consume(in, len); /* the decoder bounds messages: only -ENOMEM gets here */
      ws_fail(wc, SK_WS_CLOSE_INTERNAL, "out of memory");
      return 0;
    }
    if (ev.fin) {
      int gone = ws_message(wc, sk_buf_head(&wc->msg), sk_buf_len(&wc->msg)) < 0;
      if (gone) {
        sk_buf_consume(in, len);
        return 0;
      }
      sk_buf_free(&wc->msg);
    }
    break;
  case SK_WS_EV_PING:
    if (ws_frame(wc, SK_WS_OP_PONG, ev.payload, ev.len) < 0) {
      /* The queue is full: answer when it has drained. The frame stays in
       * the input to be decoded again, so it gets its mask back (the
       * decoder unmasked it in place; the key sits just before it). */
      sk_ws_mask(ev.payload, ev.len, ev.payload - 4, 0);
      return 0;
    }
    break;
  case SK_WS_EV_PONG: break;
  case SK_WS_EV_CLOSE: {
    /* Echo the peer's code (RFC 6455 section 5.5.1) and close. */
    sk_buf_consume(in, len);
    wc->why = "connection closed";
    if (ev.close_code == SK_WS_CLOSE_NO_STATUS) {
      wc->close_sent = 1;
      if (ws_frame(wc, SK_WS_OP_CLOSE, NULL, 0) < 0) {
        sk_conn_abort(wc->conn);
        return 0;
      }
    }
    ws_close_with(wc, ev.close_code, NULL);
    return 0;
  }
  }
  sk_buf_consume(in, (size_t)r);
  return wc->state == W_WS;
}

/* Every ping_ms: a client quiet that long gets a ping; one that has not
 * answered the last ping within ping_ms is gone (a dead peer or path). */
static void ws_timer(sk_loop_t *loop, sk_timer_t *t) {
  web_client_t *wc = t->data;
  if (wc->state != W_WS)
    return;
  uint64_t quiet = sk_loop_now(loop) - wc->last_rx;
  if (quiet + 5 < wc->web->o.ping_ms)
    return;
  if (wc->ping_out) {
    web_log(wc, "no answer to a ping within %llu ms", (unsigned long long)wc->web->o.ping_ms);
    wc->why = "ping timeout";
    sk_conn_abort(wc->conn);
    return;
  }
  wc->ping_out = 1;
  if (ws_frame(wc, SK_WS_OP_PING, "sockit", 6) < 0) {
    wc->why = "not reading";
    sk_conn_abort(wc->conn);
  }
}

/* ---- HTTP requests ------------------------------------------------------------------------- */

/* 1 if an If-None-Match list holds etag: "*", or the same opaque tag
 * (weak comparison, RFC 9110 section 13.1.2: a W/ prefix is ignored, the
 * tag itself compared byte for byte). */
static int etag_matches(const char *v, size_t len, const char *etag) {
  size_t elen = strlen(etag);
  for (size_t i = 0; i < len;) {
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t start = i;
    while (i < len && v[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
      end--;
    if (end - start >= 2 && v[start] == 'W' && v[start + 1] == '/')
      start += 2;
    if ((end - start == 1 && v[start] == '*') ||
        (end - start == elen && memcmp(v + start, etag, elen) == 0))
      return 1;
  }
  return 0;
}

/* 1 if a is a loopback address: 127.0.0.0/8, ::1, or 127.x mapped into
 * IPv6. */
static int addr_is_loopback(const sk_sockaddr_t *a) {
  if (a->ss.ss_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
  if (a->ss.ss_family != AF_INET6)
    return 0;
  const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
  return IN6_IS_ADDR_LOOPBACK(v6) || (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
}

/* The bytes of an IPv4 or IPv6 address into out; an IPv4-mapped IPv6
 * address (a dual-stack listener's IPv4 peer) gives its 4 IPv4 bytes.
 * Returns 4, 16, or 0 for other families. */
static size_t addr_bytes(int family, const uint8_t *raw, uint8_t out[16]) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == AF_INET) {
    memcpy(out, raw, 4);
    return 4;
  }
  if (family != AF_INET6)
    return 0;
  if (memcmp(raw, mapped, 12) == 0) {
    memcpy(out, raw + 12, 4);
    return 4;
  }
  memcpy(out, raw, 16);
  return 16;
}

/* 1 if a Host names this machine's loopback: "localhost", a name under
 * ".localhost" (RFC 6761: never sent to DNS), or a loopback address. */
static int host_is_loopback_name(const sk_http_host_t *h) {
  const char *v = h->name;
  size_t n = h->name_len;
  uint8_t a[16];
  switch (h->kind) {
  case SK_HTTP_HOST_IPV4: return h->addr[0] == 127;
  case SK_HTTP_HOST_IPV6:
    return addr_bytes(AF_INET6, h->addr, a) == 4 ? a[0] == 127
                                                   : memcmp(h->addr, &in6addr_loopback, 16) == 0;
  case SK_HTTP_HOST_NAME: break;
  }
  return (n == 9 && strncasecmp(v, "localhost", 9) == 0) ||
         (n > 10 && strncasecmp(v + n - 10, ".localhost", 10) == 0);
}

/* 1 if the Host h names the address the connection arrived on: that
 * address as a literal, with its port (no port: the listener is on 80 or
 * 443, the ports a browser leaves out), or, when that address is loopback
 * (or not an IP address: a unix socket behind a local proxy), a loopback
 * name. Names of this machine other than "localhost" are never assumed:
 * a page of evil.example whose name an attacker re-points at this address
 * (DNS rebinding) sends Origin and Host of evil.example, which agree.
 * *why says what failed. */
static int host_is_own(const web_client_t *wc, const sk_http_host_t *h, const char **why) {
  sk_sockaddr_t local;
  *why = "Host is not an address of this listener (DNS rebinding?); allow it with --web-origin";
  if (sk_conn_local(wc->conn, &local) < 0)
    return 0;
  int family = local.ss.ss_family;
  if ((family != AF_INET && family != AF_INET6) || addr_is_loopback(&local)) {
    *why = "Host is not a loopback name on a loopback connection (DNS rebinding?); "
           "allow it with --web-origin";
    return host_is_loopback_name(h);
  }
  if (h->kind == SK_HTTP_HOST_NAME)
    return 0;
  uint8_t mine[16], theirs[16];
  const uint8_t *raw = family == AF_INET
                           ? (const uint8_t *)&((const struct sockaddr_in *)&local.ss)->sin_addr
                           : (const uint8_t *)&((const struct sockaddr_in6 *)&local.ss)->sin6_addr;
  size_t n = addr_bytes(family, raw, mine);
  size_t k = addr_bytes(h->kind == SK_HTTP_HOST_IPV4 ? AF_INET : AF_INET6, h->addr, theirs);
  if (n != k || memcmp(mine, theirs, n) != 0)
    return 0;
  int port = sk_sockaddr_port(&local);
  return h->port >= 0 ? h->port == port : port == 80 || port == 443;
}

/* 1 if the handshake's Origin may use the chat: none given (not a
 * browser), an allowed one (--web-origin), or the page's own host (the
 * Host header) when that Host is an address of this listener
 * (host_is_own). *why says what failed. */
static int origin_ok(const web_client_t *wc, const sk_http_request_t *req, const char **why) {
  const web_t *w = wc->web;
  size_t count;
  const sk_http_header_t *o = sk_http_header_find(req, "Origin", &count);
  *why = "Origin not allowed";
  if (!o)
    return 1;
  if (count != 1)
    return 0;
  if (w->any_origin)
    return 1;
  const char *host;
  size_t hlen;
  if (sk_ws_origin_host(o->value, o->value_len, &host, &hlen) < 0)
    return 0;
  for (int i = 0; i < w->o.norigins; i++)
    if (w->o.origins[i] && strlen(w->o.origins[i]) == hlen &&
        strncasecmp(w->o.origins[i], host, hlen) == 0)
      return 1;
  const sk_http_header_t *h = sk_http_header_find(req, "Host", NULL);
  sk_http_host_t parsed;
  if (!h || h->value_len != hlen || strncasecmp(h->value, host, hlen) != 0 ||
      sk_http_host_parse(h->value, h->value_len, &parsed) < 0)
    return 0;
  return host_is_own(wc, &parsed, why);
}

/* The upgrade of GET /ws: answers 101 and makes the connection a chat
 * user, or answers the error. Returns 0, SK_ETOOBIG (no room to answer
 * yet), or -1 when the connection is closing. */
static int ws_upgrade(web_client_t *wc, const sk_http_request_t *req) {
  char accept[SK_WS_ACCEPT_LEN + 1];
  const char *why = "bad handshake";
  int st = sk_ws_check_upgrade(req, accept, &why);
  if (st == 101 && !origin_ok(wc, req, &why))
    st = 403;
  if (st != 101) {
    int r = http_error(wc, st, 0, 0,
                       st == 426 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n" : NULL);
    if (r < 0)
      return r;
    web_log(wc, "WebSocket handshake refused (%d): %s", st, why);
    web_close(wc);
    return -1;
  }
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n"
                   "\r\n",
                   accept);
  if ((size_t)n > sk_conn_out_space(wc->conn))
    return SK_ETOOBIG;
  sk_conn_send(wc->conn, head, (size_t)n);
  sk_loop_t *loop = sk_conn_loop(wc->conn);
  wc->state = W_WS;
  sk_ws_decoder_init(&wc->dec, 1, WEB_WS_MESSAGE_MAX);
  sk_buf_init(&wc->msg, WEB_WS_MESSAGE_MAX);
  wc->last_rx = sk_loop_now(loop);
  sk_timer_stop(loop, &wc->timer); /* the HTTP deadline: re-initialised below */
  sk_timer_init(&wc->timer, ws_timer, wc);
  sk_timer_start(loop, &wc->timer, wc->web->o.ping_ms, wc->web->o.ping_ms);
  wc->why = "connection closed";
  sk_conn_t *c = wc->conn; /* outlives this round, unlike wc */
  if (chat_user_open_from(wc->web->ch, &ws_sink_ops, wc, sk_conn_peer(c), &wc->user) < 0) {
    wc->user = NULL;
    ws_close_with(wc, SK_WS_CLOSE_INTERNAL, "out of memory");
    return -1;
  }
  /* The welcome may not have fit: the user is dropped at once, and an
   * abort frees wc on the spot (web_closed_with clears the conn's data). */
  return sk_conn_data(c) == wc && wc->state == W_WS ? 0 : -1;
}

/* Answers one parsed request. Returns 0 (answered; keep going if still
 * HTTP), SK_ETOOBIG (no room to answer: nothing done), or -1 (closing). */
static int http_request(web_client_t *wc, const sk_http_request_t *req) {
  int get = sk_http_name_eq(req->method, req->method_len, "GET");
  int head = sk_http_name_eq(req->method, req->method_len, "HEAD");
  /* Methods are case-sensitive: "get" is not GET (RFC 9110 section 9.1). */
  get = get && memcmp(req->method, "GET", 3) == 0;
  head = head && memcmp(req->method, "HEAD", 4) == 0;
  size_t nhost;
  const sk_http_header_t *host = sk_http_header_find(req, "Host", &nhost);
  sk_http_host_t parsed_host;
  uint64_t body = 0;
  int status = 0, keep = sk_http_keep_alive(req) && wc->requests + 1 < WEB_KEEPALIVE_REQUESTS;
  const char *extra = NULL, *why = NULL;
  if (sk_http_header_find(req, "Transfer-Encoding", NULL))
    status = 501;
  else if (sk_http_body_length(req, &body) < 0)
    status = 400, why = "malformed Content-Length";
  else if (body > WEB_BODY_MAX)
    status = 413;
  else if (req->minor_version == 1 ? nhost != 1 : nhost > 1)
    status = 400, why = nhost ? "more than one Host" : "no Host"; /* RFC 9112 section 3.2 */
  else if (host && sk_http_host_parse(host->value, host->value_len, &parsed_host) < 0)
    status = 400, why = "malformed Host"; /* not uri-host [":" port], RFC 9110 section 7.2 */
  else if (req->target[0] == '*' && (get || head))
    status = 400; /* "*" is for OPTIONS only */
  if (status) {
    int r = http_error(wc, status, head, 0, NULL);
    if (r < 0)
      return r;
    web_log(wc, "refused a request: %d %s%s%s", status, sk_http_reason(status), why ? ": " : "",
            why ? why : "");
    web_close(wc);
    return -1;
  }
  /* The path: without the query, and without "scheme://authority" of an
   * absolute-form target (RFC 9112 section 3.2.2). */
  const char *path = req->target, *end = req->target + req->target_len;
  if (path[0] != '/' && path[0] != '*') {
    const char *p = (const char *)memmem(path, req->target_len, "://", 3) + 3; /* checked */
    while (p < end && *p != '/' && *p != '?')
      p++;
    if (p < end && *p == '/') {
      path = p;
    } else {
      path = "/";
      end = path + 1;
    }
  }
  const char *q = memchr(path, '?', (size_t)(end - path));
  size_t plen = q ? (size_t)(q - path) : (size_t)(end - path);
  if (plen == 3 && memcmp(path, "/ws", 3) == 0 && get && body == 0)
    return ws_upgrade(wc, req);
  const web_asset_t *a = web_asset_find(path, plen);
  http_answer_t ans = {.keep = keep, .head_only = head};
  if (!get && !head) {
    status = 405;
    extra = "Allow: GET, HEAD\r\n";
  } else if (!a) {
    status = 404;
  } else {
    const sk_http_header_t *inm = sk_http_header_find(req, "If-None-Match", NULL);
    ans.status = inm && etag_matches(inm->value, inm->value_len, a->etag) ? 304 : 200;
    ans.type = a->content_type;
    ans.body = a->data;
    ans.body_len = a->len;
    ans.head_only = head || ans.status == 304; /* 304: the length, no body */
    ans.cache = "no-cache";
    ans.etag = a->etag;
  }
  int r = status ? http_error(wc, status, head, keep, extra) : http_send(wc, &ans);
  if (r < 0)
    return r;
  wc->body_left = body;
  if (!keep) {
    web_close(wc);
    return -1;
  }
  return 0;
}

/* Handles what input allows in HTTP mode. Returns 1 to go on (maybe in
 * another mode), 0 when more input or output room is needed, or the
 * connection is closing (wc may be gone). */
static int http_step(web_client_t *wc, sk_buf_t *in) {
  if (wc->body_left) {
    size_t n = sk_buf_len(in) < wc->body_left ? sk_buf_len(in) : (size_t)wc->body_left;
    sk_buf_consume(in, n);
    wc->body_left -= n;
    if (wc->body_left)
      return 0;
  }
  size_t len = sk_buf_len(in);
  if (len == 0)
    return 0;
  if (!wc->head_started) {
    wc->head_started = 1;
    http_arm(wc);
  }
  sk_http_request_t req;
  int r = sk_http_parse_request(sk_buf_head(in), len, SK_HTTP_HEAD_MAX, &req);
  if (r == SK_HTTP_INCOMPLETE)
    return 0;
  if (r < 0) {
    if (http_error(wc, -r, 0, 0, NULL) < 0) {
      sk_conn_abort(wc->conn);
      return 0;
    }
    web_log(wc, "malformed request: %d %s", -r, sk_http_reason(-r));
    sk_buf_consume(in, len);
    web_close(wc);
    return 0;
  }
  int a = http_request(wc, &req);
  wc->blocked = a == SK_ETOOBIG;
  if (a == SK_ETOOBIG)
    return 0; /* called again once the output has drained */
  sk_buf_consume(in, (size_t)r);
  if (a < 0)
    return 0;
  wc->requests++;
  if (wc->state == W_HTTP) {
    wc->head_started = 0;
    http_arm(wc);
  }
  return 1;
}

/* ---- the handler ------------------------------------------------------------------------------ */

static int web_open_with(web_t *w, sk_conn_t *c) {
  web_client_t *wc = w ? calloc(1, sizeof *wc) : NULL;
  if (!wc)
    return -1;
  wc->conn = c;
  wc->web = w;
  wc->state = W_HTTP;
  sk_timer_init(&wc->timer, http_timer, wc);
  sk_conn_set_data(c, wc);
  /* The first request's head has the head deadline from the start. */
  wc->head_started = 1;
  sk_timer_start(sk_conn_loop(c), &wc->timer, w->o.head_timeout_ms, 0);
  return 0;
}

static void web_data_with(sk_conn_t *c, sk_buf_t *in, int eof) {
  web_client_t *wc = sk_conn_data(c);
  (void)eof; /* at EOF the framework closes once the output is written */
  if (!wc) {
    sk_buf_consume(in, sk_buf_len(in));
    return;
  }
  for (;;) {
    if (wc->state == W_CLOSING) {
      sk_buf_consume(in, sk_buf_len(in));
      return;
    }
    int go = wc->state == W_HTTP ? http_step(wc, in) : ws_step(wc, in);
    if (!go)
      return;
  }
}

static void web_closed_with(sk_conn_t *c, int reason) {
  web_client_t *wc = sk_conn_data(c);
  if (!wc)
    return;
  sk_conn_set_data(c, NULL);
  sk_timer_stop(sk_conn_loop(c), &wc->timer);
  if (wc->user) {
    const char *why = reason == SK_CLOSE_SHUTDOWN ? "server shutting down"
                      : reason == SK_CLOSE_ERROR  ? "connection error"
                      : reason == SK_CLOSE_IDLE   ? "idle timeout"
                                                  : wc->why;
    chat_user_closed(wc->web->ch, wc->user, why ? why : "connection closed",
                     reason == SK_CLOSE_SHUTDOWN);
  }
  sk_buf_free(&wc->msg);
  free(wc);
}

static int web_open(sk_conn_t *c) { return web_open_with(sk_conn_ctx(c), c); }

const sk_handler_t web_handler = {
    .on_open = web_open, .on_data = web_data_with, .on_close = web_closed_with};

/* ---- the hub's web side ------------------------------------------------------------------------ */

static web_t *hub_web;

static void hub_web_free(void) {
  web_free(hub_web);
  hub_web = NULL;
}

/* The hub's web side, made on the first connection; NULL when out of
 * memory. */
static int hub_open(sk_conn_t *c) {
  if (!hub_web) {
    chat_t *ch = chat_hub(sk_conn_loop(c));
    web_opts_t o = {0};
    if (!ch || web_new(&hub_web, ch, &o) < 0)
      return -1;
    atexit(hub_web_free);
  }
  return web_open_with(hub_web, c);
}

/* No on_datagram: HTTP needs a stream, datagrams are dropped unanswered. */
static const sk_handler_t hub_handler = {
    .on_open = hub_open, .on_data = web_data_with, .on_close = web_closed_with};

const svc_t svc_chat_web = {"web",
                            "seed 002: the chat's web page and WebSocket (docs/chat.md)",
                            &hub_handler, WEB_IN_LIMIT, {"tcp://127.0.0.1:6680", NULL}};
