/* src/services/web.h - the chat's web side (seed 002, task 2: the GUI): a
 * small, strict HTTP/1.1 server that hands out the chat page embedded in
 * the binary (web/), and a WebSocket endpoint, /ws, that is one more
 * transport of the chat core (services/chat.h) beside the line transport.
 *
 * On /ws every text message from the server is one chat event line without
 * its LF; every text message from the browser is one or more lines typed by
 * its user, exactly what a line client would send. Browser users, nc users
 * and the terminal client share the same rooms.
 *
 * HTTP: GET and HEAD of the page's files, 404 for anything else, 405 for
 * other methods; 400 for a malformed request, 414/431 for an over-long
 * target or head, 413 for a body over WEB_BODY_MAX, 501 for chunked
 * bodies, 505 for other HTTP versions, 408 when a request head has not
 * arrived within the head deadline (slowloris); keep-alive with at most
 * WEB_KEEPALIVE_REQUESTS requests and WEB_KEEPALIVE_IDLE_MS between them.
 * Every answer carries Content-Type, Cache-Control and security headers
 * (a Content-Security-Policy without inline script, nosniff, no framing).
 *
 * WebSocket: RFC 6455 with no extension. The Origin of a handshake must be
 * one of the allowed origins, or the page's own host (the Host header)
 * when that Host is an address of the listener the connection arrived on
 * (with its port) or, on a loopback listener, a loopback name: a rebound
 * name (DNS rebinding) is refused from any peer. Non-browser clients that
 * send no Origin are let in. A Host that is not uri-host [":" port] is
 * answered 400 on every request. Protocol errors are
 * answered with the close code the decoder names (sockit/ws.h); binary
 * messages with 1003; a quiet client gets a ping after ping_ms and is
 * dropped when it has not answered ping_ms later.
 */
#ifndef SK_SERVICES_WEB_H
#define SK_SERVICES_WEB_H

#include <stdint.h>

#include "services/chat.h"
#include "services/services.h"
#include "sockit/server.h"

#define WEB_HEAD_TIMEOUT_MS 10000      /* a request head must arrive within this */
#define WEB_KEEPALIVE_IDLE_MS 15000    /* an idle keep-alive connection is closed after */
#define WEB_KEEPALIVE_REQUESTS 100     /* requests served on one connection */
#define WEB_BODY_MAX (16u * 1024u)     /* request bodies up to this are read and dropped */
#define WEB_WS_MESSAGE_MAX (16u * 1024u) /* longest WebSocket message from a browser */
#define WEB_PING_MS 30000              /* default keep-alive ping interval */
#define WEB_CLOSE_DRAIN_MS 5000        /* a closing connection's output must be taken within */
#define WEB_ORIGINS_MAX 16
#define WEB_IN_LIMIT (WEB_WS_MESSAGE_MAX + 1024u) /* input buffer: a whole frame or head */

typedef struct web web_t;

typedef struct {
  /* Origins allowed besides the page's own host: "host[:port]" as in the
   * Origin header after the scheme; "*" allows any. Copied. */
  const char *origins[WEB_ORIGINS_MAX];
  int norigins;
  uint64_t ping_ms;         /* 0 = WEB_PING_MS */
  uint64_t head_timeout_ms; /* 0 = WEB_HEAD_TIMEOUT_MS */
  uint64_t keepalive_ms;    /* 0 = WEB_KEEPALIVE_IDLE_MS */
  /* One line per refused request or handshake and per WebSocket closed
   * for a protocol error, without LF; NULL = none. */
  void (*log)(void *arg, const char *msg);
  void *arg;
} web_opts_t;

/* Makes the web side of chat ch (borrowed: it outlives the web_t). o is
 * copied. Returns 0, -ENOMEM, or -EINVAL for a malformed origin. */
int web_new(web_t **out, chat_t *ch, const web_opts_t *o);
void web_free(web_t *w);

/* The sk_server handler; its ctx is a web_t. The server's in_limit must be
 * at least WEB_IN_LIMIT. */
extern const sk_handler_t web_handler;

/* The hub's web side: the page and /ws for the hub's chat (svc_chat). */
extern const svc_t svc_chat_web;

#endif
