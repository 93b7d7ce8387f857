/* src/services/chat.h - the chat (seed 002, tasks 1 and 4): users, rooms,
 * history, the operator and the bot, independent of any transport.
 *
 * The core knows clients only as sinks: "queue these bytes", "close". A
 * transport turns its input into lines and calls chat_user_line; the core
 * formats each event once and hands the same bytes to every receiver's
 * sink. The line transport (plain TCP / unix streams: nc, telnet, sockit's
 * own client) is chat_line_handler below; a WebSocket front end is another
 * transport over the same core: it frames messages its own way, calls the
 * same entry points and encodes what its sink is given.
 *
 * Single-threaded: one chat lives on one loop, and every entry point must
 * be called from it.
 *
 * Re-entrancy: a sink's close may call chat_user_closed at once (the line
 * transport does). The core calls close last, touching nothing of the user
 * after it, and entry points that are given a user return -1 when that
 * user is gone by the time they return: the caller must not use it again.
 */
#ifndef SK_SERVICES_CHAT_H
#define SK_SERVICES_CHAT_H

#include <stdint.h>

#include "services/chatbot.h"
#include "sockit/chat.h"
#include "sockit/server.h"

#define CHAT_DEFAULT_ROOM "#lobby"
#define CHAT_HISTORY_DEFAULT 20   /* messages of a room replayed on join */
#define CHAT_HISTORY_MAX 1000     /* most --history accepts */
#define CHAT_USER_ROOMS 8         /* rooms one user may be in at once (default) */
#define CHAT_USER_ROOMS_MAX 64    /* most --max-rooms-per-client accepts */
#define CHAT_ROOMS_DEFAULT 1000   /* rooms on the server at once, the default room included */
/* Bytes all rooms' history may hold together (entries and their rings, as
 * malloc counts them); over it the least recently active rooms lose their
 * oldest entries first. */
#define CHAT_HISTORY_BUDGET (8u << 20)
#define CHAT_HISTORY_BUDGET_MIN (16u * 1024u)
/* Bytes of a message's text kept in history: valid UTF-8 input is never
 * longer (a line is at most SK_CHAT_LINE_MAX bytes), so only text that grew
 * when sanitized (an invalid byte becomes the 3-byte U+FFFD) is cut. */
#define CHAT_HISTORY_TEXT_MAX SK_CHAT_LINE_MAX
#define CHAT_HISTORY_TEXT_MIN 64
#define CHAT_PER_ADDR 64          /* clients from one address (IPv6: one /64); loopback not counted */
#define CHAT_TRIM_MIN_PEAK 64     /* users before a fall to a quarter gives memory back */
#define CHAT_TRIM_DELAY_MS 1000   /* and how long after that fall (at most one trim a second) */
#define CHAT_FLOOD_RATE 5         /* lines per second a client may keep up */
#define CHAT_FLOOD_BURST 20       /* lines a client may send at once */
#define CHAT_NOTICES_MAX 200      /* larger rooms get no JOIN/PART/QUIT/NICK lines */
#define CHAT_OUT_QUEUE (128u * 1024u) /* per-client outbound queue */
#define CHAT_IN_LIMIT (16u * 1024u)   /* most bytes read for a client at once */
/* SO_SNDBUF of each client's socket (the kernel doubles it): fixed, so
 * that the kernel's autotuning (up to megabytes on loopback) does not hide
 * a client that stopped reading behind its own buffer. */
#define CHAT_SOCK_SNDBUF (32 * 1024)
#define CHAT_WHO_MAX 100          /* nicks one WHO line lists */
#define CHAT_LIST_MAX 100         /* rooms /rooms lists */
#define CHAT_REASON_MAX 200       /* bytes of a /quit, /part or /kick reason kept */
#define CHAT_SERVER_NICK "@server" /* the sender of the operator's lines */

typedef struct chat chat_t;
typedef struct chat_user chat_user_t;

/* The transport's side of one client. */
typedef struct {
  /* Queues len bytes (whole lines) for the client, all or nothing.
   * Returns 0, or -1 when they do not fit its queue: the chat then drops
   * the client. */
  int (*send)(void *sink, const char *data, size_t len);
  /* Bytes the client's queue can still take. */
  size_t (*space)(void *sink);
  /* Ends the client's transport: after what is queued (abort 0) or at
   * once. The transport then calls chat_user_closed, possibly from inside
   * this call. */
  void (*close)(void *sink, int abort);
  /* The client's address for logs ("127.0.0.1:40112"), into buf. */
  void (*describe)(void *sink, char *buf, size_t len);
} chat_sink_ops_t;

typedef struct {
  const char *default_room; /* joined on arrival; NULL = CHAT_DEFAULT_ROOM */
  unsigned history;         /* messages replayed on join, <= CHAT_HISTORY_MAX */
  unsigned flood_rate;      /* lines per second; 0 = no flood control */
  unsigned flood_burst;     /* lines at once */
  uint64_t idle_ms;         /* drop clients that send nothing this long; 0 = never */
  unsigned notices_max;     /* see CHAT_NOTICES_MAX */
  size_t history_budget;    /* bytes of all history; >= CHAT_HISTORY_BUDGET_MIN */
  size_t history_text_max;  /* bytes of a message's text kept; >= CHAT_HISTORY_TEXT_MIN */
  unsigned rooms_per_client; /* 1 to CHAT_USER_ROOMS_MAX */
  unsigned long max_rooms;  /* rooms at once; 0 = no limit */
  unsigned long per_addr;   /* clients per non-loopback address; 0 = no limit */
  unsigned long per_loopback; /* clients per loopback address; 0 = no limit */
  chatbot_t *bot;           /* borrowed, outlives the chat; NULL = no bot */
  /* Every room event and broadcast (not private messages), one line each
   * with its LF; NULL = none. */
  void (*monitor)(void *arg, const char *line, size_t len);
  /* The replies to operator lines, the same way; NULL = none. */
  void (*console)(void *arg, const char *line, size_t len);
  /* One line, without LF, for each client dropped (queue full, flood
   * kick...) and each bot reload; NULL = none. */
  void (*log)(void *arg, const char *msg);
  void *arg;
} chat_opts_t;

/* Fills o with the defaults (CHAT_*): no bot, no callbacks. */
void chat_opts_init(chat_opts_t *o);

/* Makes a chat with the default room open. o is copied (default_room
 * too); loop runs the idle sweep and the memory trim. Returns 0 or -ENOMEM
 * / -EINVAL (bad default room, a limit out of its range). */
int chat_new(chat_t **out, const chat_opts_t *o, sk_loop_t *loop);
/* Frees the chat and every user still in it (their sinks are not told):
 * call after the transports are gone. */
void chat_free(chat_t *ch);

/* A new client: gets a guest nick, the HELLO line, joins the default room
 * and gets its history. Sets *out at once (before any sink call). Returns
 * 0 if the user was made (it may already be gone again if its queue could
 * not take the welcome: then close was called), or -ENOMEM. */
int chat_user_open(chat_t *ch, const chat_sink_ops_t *ops, void *sink, chat_user_t **out);
/* The same for a client from peer (borrowed for the call; NULL: not
 * counted), which counts toward the limit of clients per address
 * (per_addr, per_loopback). A client over it gets "ERR too-many-clients
 * ..." and "BYE ...", and its transport is closed at once (close, graceful);
 * *out is still set and chat_user_closed must still be called. */
int chat_user_open_from(chat_t *ch, const chat_sink_ops_t *ops, void *sink,
                        const sk_sockaddr_t *peer, chat_user_t **out);
/* One line from the client, without LF or CRLF. Returns 0, or -1 when
 * the user is gone or leaving (quit, dropped): ignore the rest of its
 * input. */
int chat_user_line(chat_t *ch, chat_user_t *u, const char *line, size_t len);
/* The client sent a line over SK_CHAT_LINE_MAX (dropped). Same return. */
int chat_user_too_long(chat_t *ch, chat_user_t *u);
/* The transport is gone (why: "connection closed", ...): the user leaves
 * (QUIT lines unless quiet) and is freed. Called exactly once per user. */
void chat_user_closed(chat_t *ch, chat_user_t *u, const char *why, int quiet);

/* A line typed by the server's operator: text for everyone, or an
 * operator command (/say, /kick, /who, /rooms, /reload, /help). Replies go
 * to the console. */
void chat_operator_line(chat_t *ch, const char *line, size_t len);
/* Says BYE (why) to every client and closes them gracefully. */
void chat_shutdown(chat_t *ch, const char *why);
/* Clients connected now. */
unsigned long chat_user_count(const chat_t *ch);

/* The `sockit serve` hub's one chat, with the defaults and the bot's
 * built-in behaviours, made on first use on loop (the hub's single loop)
 * and freed at exit; its line transport is svc_chat, its web side
 * svc_chat_web. NULL when out of memory. */
chat_t *chat_hub(sk_loop_t *loop);

/* The line transport: sk_server handler whose ctx is a chat_t. */
extern const sk_handler_t chat_line_handler;

#endif
