/* chat.c - the chat core (users, rooms, history, flood control, the
 * operator, the bot) and its line transport on the sk_server framework.
 * See chat.h for the design and docs/chat.md for the protocol. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "sk_config.h"
#if SK_HAVE_MALLOC_TRIM
#include <malloc.h>
#endif
#include "services/chat.h"
#include "services/services.h"

/* ---- name tables: chained hash on the folded name ------------------------------- */

typedef struct hnode {
  struct hnode *next;
  const char *key; /* folded, NUL-terminated; owned by the entry */
} hnode_t;

typedef struct {
  hnode_t **b;
  size_t nb, n;
} htable_t;

#define HT_MIN_BUCKETS 64

/* FNV-1a of the NUL-terminated key. */
static size_t hash_key(const char *k) {
  uint32_t h = 2166136261u;
  for (; *k; k++)
    h = (h ^ (unsigned char)*k) * 16777619u;
  return h;
}

/* The entry whose key is key, or NULL. */
static hnode_t *ht_find(const htable_t *t, const char *key) {
  if (!t->nb)
    return NULL;
  for (hnode_t *n = t->b[hash_key(key) & (t->nb - 1)]; n; n = n->next)
    if (strcmp(n->key, key) == 0)
      return n;
  return NULL;
}

/* Adds n (its key not present). Returns 0 or -ENOMEM. */
static int ht_insert(htable_t *t, hnode_t *n) {
  if (t->n >= t->nb) {
    size_t nb = t->nb ? t->nb * 2 : HT_MIN_BUCKETS;
    hnode_t **b = calloc(nb, sizeof *b);
    if (!b) {
      if (!t->nb)
        return -ENOMEM;
    } else {
      for (size_t i = 0; i < t->nb; i++)
        for (hnode_t *e = t->b[i], *next; e; e = next) {
          next = e->next;
          size_t j = hash_key(e->key) & (nb - 1);
          e->next = b[j];
          b[j] = e;
        }
      free(t->b);
      t->b = b;
      t->nb = nb;
    }
  }
  size_t j = hash_key(n->key) & (t->nb - 1);
  n->next = t->b[j];
  t->b[j] = n;
  t->n++;
  return 0;
}

/* Takes n (in t) out of t. */
static void ht_remove(htable_t *t, hnode_t *n) {
  for (hnode_t **p = &t->b[hash_key(n->key) & (t->nb - 1)]; *p; p = &(*p)->next)
    if (*p == n) {
      *p = n->next;
      t->n--;
      return;
    }
}

/* ---- the state ---------------------------------------------------------------------- */

typedef struct room room_t;

typedef struct {
  room_t *room;
  uint32_t index; /* this user's slot in room->members */
} membership_t;

enum { U_ACTIVE, U_DOOMED, U_LEAVING };
enum { DOOM_QUEUE, DOOM_IDLE };

/* Clients from one address (IPv4, or an IPv6 /64), for --max-per-addr. */
typedef struct {
  hnode_t node; /* in ch->addrs; node.key = key */
  unsigned long n;
  char key[INET6_ADDRSTRLEN + 4];
} addr_count_t;

struct chat_user {
  hnode_t node; /* in ch->nicks; node.key = key */
  const chat_sink_ops_t *ops;
  void *sink;
  char nick[SK_CHAT_NICK_MAX + 1];
  char key[SK_CHAT_NICK_MAX + 1];
  char skel[SK_CHAT_NICK_MAX + 1]; /* the nick's skeleton, digits kept: look-alikes */
  membership_t *rooms;  /* o.rooms_per_client slots; the last one used is the current room */
  addr_count_t *addr;   /* its address's count, or NULL when not counted */
  uint8_t nrooms, state, echo, flood_warned, doom_kind;
  uint32_t tokens; /* flood control, in thousandths of a line */
  uint64_t tokens_at, last_line_ms;
  chat_user_t *prev, *next; /* ch->users */
  chat_user_t *doom_next;   /* ch->doomed */
};

typedef struct {
  time_t when;
  size_t len;
  char line[]; /* the event line, without LF */
} hist_t;

struct room {
  hnode_t node; /* in ch->rooms; node.key = key */
  char name[SK_CHAT_ROOM_MAX + 1];
  char key[SK_CHAT_ROOM_MAX + 1];
  chat_user_t **members;
  uint32_t n, cap;
  hist_t **hist; /* ring of o.history entries, allocated on the first message */
  unsigned hist_start, hist_len;
  size_t hist_bytes;             /* what its history is charged (hist_cost, ring_cost) */
  room_t *lru_prev, *lru_next;   /* ch's rooms with history, least recently active first */
  int permanent; /* the default room outlives its last member */
};

struct chat {
  chat_opts_t o;
  char default_room[SK_CHAT_ROOM_MAX + 1];
  sk_loop_t *loop;
  sk_timer_t idle_timer;
  htable_t nicks, rooms;
  chat_user_t *users;
  unsigned long nusers, guest_seq;
  chat_user_t *doomed; /* to drop before the current entry point returns */
  room_t *lobby;
  room_t *lru_head, *lru_tail; /* rooms holding history, least recently active first */
  size_t hist_bytes;           /* all history, against o.history_budget */
  htable_t addrs;              /* addr_count_t by address */
  char reserved[2][SK_CHAT_NICK_MAX + 1]; /* skeletons (digits stripped) of the bot and "server" */
  sk_timer_t trim_timer;       /* gives memory back after the users fell to a quarter */
  unsigned long peak_users;    /* most users since the last trim */
};

/* Where a command's replies go: a user, or the operator's console. */
typedef struct {
  chat_t *ch;
  chat_user_t *u; /* NULL: the operator */
} to_t;

#define HIST_STAMP_LEN 20 /* "2025-01-31T23:59:59Z" */

static int reap_watch(chat_t *ch, const chat_user_t *watch);
static void reap(chat_t *ch) { reap_watch(ch, NULL); }
static void addr_release(chat_t *ch, chat_user_t *u);
static void on_trim(sk_loop_t *loop, sk_timer_t *t);
static void trim_when_quiet(chat_t *ch);

/* Frees a user record (out of every table). */
static void user_free(chat_user_t *u) {
  free(u->rooms);
  free(u);
}

/* ---- output ---------------------------------------------------------------------------- */

static void doom(chat_t *ch, chat_user_t *u, int kind) {
  if (u->state != U_ACTIVE)
    return;
  u->state = U_DOOMED;
  u->doom_kind = (uint8_t)kind;
  u->doom_next = ch->doomed;
  ch->doomed = u;
}

/* Queues one line for u; a queue that cannot take it dooms u (dropped at
 * the end of the entry point, never in the middle of a broadcast). */
static void deliver(chat_t *ch, chat_user_t *u, const char *line, size_t len) {
  if (u->state == U_ACTIVE && u->ops->send(u->sink, line, len) < 0)
    doom(ch, u, DOOM_QUEUE);
}

/* Gives one event line (with LF) to the monitor, if there is one. */
static void monitor(chat_t *ch, const char *line, size_t len) {
  if (ch->o.monitor)
    ch->o.monitor(ch->o.arg, line, len);
}

static void log_line(chat_t *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Formats one log line (no LF) for the log callback, if there is one. */
static void log_line(chat_t *ch, const char *fmt, ...) {
  if (!ch->o.log)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ch->o.log(ch->o.arg, msg);
}

/* Gives a reply line (with LF) to the user it is for, or to the operator's
 * console. */
static void reply(const to_t *to, const char *line, size_t len) {
  if (to->u)
    deliver(to->ch, to->u, line, len);
  else if (to->ch->o.console)
    to->ch->o.console(to->ch->o.arg, line, len);
}

/* Sends "WORD text" (NOTICE, ERR code ..., BYE) to `to`. The text is the
 * server's own; pieces of peer input in it must be sanitized first. */
static void replyf(const to_t *to, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void replyf(const to_t *to, const char *fmt, ...) {
  char line[SK_CHAT_OUT_LINE_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n > sizeof line - 2)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  reply(to, line, (size_t)n);
}

/* Sanitizes peer input for quoting in a reply: at most max bytes of it.
 * out needs 3 * max + 1 bytes; returns out, NUL-terminated. */
static char *quote(const char *s, size_t n, size_t max, char *out) {
  size_t len = sk_chat_sanitize(s, n < max ? n : max, out);
  out[len] = '\0';
  return out;
}

/* The same bytes to every member of r but skip (NULL: everyone). */
static void room_send(chat_t *ch, room_t *r, const char *line, size_t len, const chat_user_t *skip) {
  for (uint32_t i = 0; i < r->n; i++)
    if (r->members[i] != skip)
      deliver(ch, r->members[i], line, len);
}

/* ---- rooms and history ----------------------------------------------------------------- */

static room_t *room_find(chat_t *ch, const char *name, size_t len) {
  char key[SK_CHAT_ROOM_MAX + 1];
  if (len > SK_CHAT_ROOM_MAX)
    return NULL;
  sk_chat_fold(name, len, key);
  key[len] = '\0';
  return (room_t *)ht_find(&ch->rooms, key);
}

/* Makes room `name` (valid, not present). Returns it or NULL. */
static room_t *room_new(chat_t *ch, const char *name, size_t len) {
  room_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  memcpy(r->name, name, len);
  sk_chat_fold(name, len, r->key);
  r->node.key = r->key;
  if (ht_insert(&ch->rooms, &r->node) < 0) {
    free(r);
    return NULL;
  }
  return r;
}

/* What one history entry of len bytes costs, as glibc's malloc counts it
 * (a 16-byte granule and a header word), and what a room's ring costs. */
static size_t hist_cost(size_t len) { return (sizeof(hist_t) + len + 8 + 15) / 16 * 16; }
static size_t ring_cost(const chat_t *ch) {
  return (ch->o.history * sizeof(hist_t *) + 8 + 15) / 16 * 16;
}

/* Takes r out of the list of rooms with history. */
static void lru_unlink(chat_t *ch, room_t *r) {
  if (r->lru_prev)
    r->lru_prev->lru_next = r->lru_next;
  else if (ch->lru_head == r)
    ch->lru_head = r->lru_next;
  if (r->lru_next)
    r->lru_next->lru_prev = r->lru_prev;
  else if (ch->lru_tail == r)
    ch->lru_tail = r->lru_prev;
  r->lru_prev = r->lru_next = NULL;
}

/* Puts r (with history) last: the most recently active room. */
static void lru_touch(chat_t *ch, room_t *r) {
  lru_unlink(ch, r);
  r->lru_prev = ch->lru_tail;
  if (ch->lru_tail)
    ch->lru_tail->lru_next = r;
  else
    ch->lru_head = r;
  ch->lru_tail = r;
}

/* Frees r's oldest history entry (r has one). */
static void history_pop(chat_t *ch, room_t *r) {
  hist_t *h = r->hist[r->hist_start];
  size_t cost = hist_cost(h->len);
  free(h);
  r->hist_start = (r->hist_start + 1) % ch->o.history;
  r->hist_len--;
  r->hist_bytes -= cost;
  ch->hist_bytes -= cost;
}

/* Frees r's oldest history entry; with its last one the ring goes too and
 * r leaves the list. */
static void history_drop_oldest(chat_t *ch, room_t *r) {
  history_pop(ch, r);
  if (!r->hist_len) {
    free(r->hist);
    r->hist = NULL;
    r->hist_start = 0;
    ch->hist_bytes -= r->hist_bytes; /* the ring's cost */
    r->hist_bytes = 0;
    lru_unlink(ch, r);
  }
}

/* Frees r, its history and its member array (r is out of the table). */
static void room_free(chat_t *ch, room_t *r) {
  while (r->hist_len)
    history_drop_oldest(ch, r);
  free(r->hist); /* a ring whose first entry could not be allocated */
  free(r->members);
  free(r);
}

/* A room dies with its last member, unless it is the default room. */
static void room_drop_if_empty(chat_t *ch, room_t *r) {
  if (r->n || r->permanent)
    return;
  ht_remove(&ch->rooms, &r->node);
  room_free(ch, r);
}

/* Keeps line (without LF) as the room's newest history entry, which makes
 * r the most recently active room; then, while all history is over the
 * budget, the least recently active rooms lose their oldest entries (r's
 * own last). Memory trouble only costs the entry. */
static void history_add(chat_t *ch, room_t *r, const char *line, size_t len) {
  unsigned cap = ch->o.history;
  if (!cap)
    return;
  if (!r->hist && !(r->hist = calloc(cap, sizeof *r->hist)))
    return;
  hist_t *h = malloc(sizeof *h + len);
  if (!h)
    return;
  h->when = time(NULL);
  h->len = len;
  memcpy(h->line, line, len);
  if (!r->hist_len) {
    r->hist_bytes = ring_cost(ch);
    ch->hist_bytes += r->hist_bytes;
  }
  if (r->hist_len == cap)
    history_pop(ch, r); /* the ring stays */
  r->hist[(r->hist_start + r->hist_len++) % cap] = h;
  r->hist_bytes += hist_cost(len);
  ch->hist_bytes += hist_cost(len);
  lru_touch(ch, r);
  while (ch->hist_bytes > ch->o.history_budget && ch->lru_head)
    history_drop_oldest(ch, ch->lru_head);
}

/* The stored form of a message's text: at most history_text_max bytes,
 * cut at a character boundary and ended with U+2026 when longer. Returns
 * the length written to out (history_text_max bytes), or tlen when text
 * fits as it is (out unused). */
static size_t history_text(const chat_t *ch, const char *text, size_t tlen, char *out) {
  size_t max = ch->o.history_text_max;
  if (tlen <= max)
    return tlen;
  size_t keep = max - 3;
  while (keep && ((unsigned char)text[keep] & 0xC0) == 0x80)
    keep--; /* text is valid UTF-8: back to the start of a character */
  memcpy(out, text, keep);
  memcpy(out + keep, "\xE2\x80\xA6", 3); /* U+2026 */
  return keep + 3;
}

/* Replays the room's history to u as HIST lines: the newest entries that
 * fit in half of u's free queue, oldest first. */
static void history_replay(chat_t *ch, chat_user_t *u, room_t *r) {
  if (!r->hist_len)
    return;
  size_t budget = u->ops->space(u->sink) / 2, total = 0;
  unsigned count = 0, cap = ch->o.history;
  while (count < r->hist_len) {
    hist_t *h = r->hist[(r->hist_start + r->hist_len - 1 - count) % cap];
    size_t sz = 5 + HIST_STAMP_LEN + 1 + h->len + 1;
    if (total + sz > budget)
      break;
    total += sz;
    count++;
  }
  for (unsigned i = r->hist_len - count; i < r->hist_len; i++) {
    hist_t *h = r->hist[(r->hist_start + i) % cap];
    char line[SK_CHAT_OUT_LINE_MAX + 32];
    struct tm tm;
    gmtime_r(&h->when, &tm);
    size_t n = strftime(line, sizeof line, "HIST %Y-%m-%dT%H:%M:%SZ ", &tm);
    memcpy(line + n, h->line, h->len);
    n += h->len;
    line[n++] = '\n';
    deliver(ch, u, line, n);
  }
}

/* A message in a room: formatted once, kept in the history, given to
 * every member (to `from` only if it asked for echo) and the monitor. */
static void room_message(chat_t *ch, room_t *r, const char *type, const char *sender,
                         const char *text, size_t tlen, const chat_user_t *from) {
  char line[SK_CHAT_OUT_LINE_MAX], cut[SK_CHAT_TEXT_MAX];
  size_t n = sk_chat_format(line, sizeof line, type, r->name, sender, text, tlen);
  if (!n)
    return;
  size_t cl = history_text(ch, text, tlen, cut);
  if (cl == tlen) {
    history_add(ch, r, line, n - 1);
  } else {
    char kept[SK_CHAT_OUT_LINE_MAX];
    size_t kn = sk_chat_format(kept, sizeof kept, type, r->name, sender, cut, cl);
    if (kn)
      history_add(ch, r, kept, kn - 1);
  }
  room_send(ch, r, line, n, from && !from->echo ? from : NULL);
  monitor(ch, line, n);
}

/* Rooms above notices_max members get no presence lines (JOIN, PART,
 * QUIT, NICK): in a room of thousands they would be most of the traffic. */
static int room_announces(const chat_t *ch, const room_t *r) { return r->n <= ch->o.notices_max; }

/* ---- membership ------------------------------------------------------------------------ */

static int member_slot(const chat_user_t *u, const room_t *r) {
  for (int i = 0; i < u->nrooms; i++)
    if (u->rooms[i].room == r)
      return i;
  return -1;
}

/* Makes slot i of u's rooms the current one (the last). */
static void make_current(chat_user_t *u, int i) {
  membership_t m = u->rooms[i];
  memmove(&u->rooms[i], &u->rooms[i + 1], (size_t)(u->nrooms - i - 1) * sizeof m);
  u->rooms[u->nrooms - 1] = m;
}

/* The first other active member of r whose nick looks like u's (the same
 * skeleton), or NULL. */
static const chat_user_t *lookalike(const room_t *r, const chat_user_t *u) {
  for (uint32_t i = 0; i < r->n; i++) {
    const chat_user_t *m = r->members[i];
    if (m != u && m->state == U_ACTIVE && strcmp(m->skel, u->skel) == 0)
      return m;
  }
  return NULL;
}

/* A presence line about u in r ("JOIN #r NICK", or "NICK #r OLD NEW" with
 * sender old and text NEW): to every member where r announces (else to u
 * alone). When another member's nick looks like u's, the others and the
 * monitor get it with the marker word "like:THATNICK" after the text; u
 * gets it without. */
static void presence(chat_t *ch, room_t *r, chat_user_t *u, const char *type, const char *sender,
                     const char *text) {
  char line[SK_CHAT_OUT_LINE_MAX], marked[SK_CHAT_OUT_LINE_MAX];
  size_t n = sk_chat_format(line, sizeof line, type, r->name, sender, text, text ? strlen(text) : 0);
  const chat_user_t *like = room_announces(ch, r) ? lookalike(r, u) : NULL;
  if (!room_announces(ch, r)) {
    deliver(ch, u, line, n);
  } else if (!like) {
    room_send(ch, r, line, n, NULL);
  } else {
    char t[2 * SK_CHAT_NICK_MAX + 8];
    int tl = snprintf(t, sizeof t, "%s%slike:%s", text ? text : "", text ? " " : "", like->nick);
    size_t mn = sk_chat_format(marked, sizeof marked, type, r->name, sender, t, (size_t)tl);
    room_send(ch, r, marked, mn, u);
    deliver(ch, u, line, n);
    monitor(ch, marked, mn);
    return;
  }
  monitor(ch, line, n);
}

/* u joins r (not a member yet, below o.rooms_per_client): JOIN to the room
 * (or to u alone in a large room), then r's history to u. Returns 0 or
 * -ENOMEM. */
static int join(chat_t *ch, chat_user_t *u, room_t *r) {
  if (r->n == r->cap) {
    uint32_t cap = r->cap ? r->cap * 2 : 8;
    chat_user_t **m = realloc(r->members, cap * sizeof *m);
    if (!m)
      return -ENOMEM;
    r->members = m;
    r->cap = cap;
  }
  r->members[r->n] = u;
  u->rooms[u->nrooms++] = (membership_t){r, r->n};
  r->n++;
  presence(ch, r, u, "JOIN", u->nick, NULL);
  history_replay(ch, u, r);
  return 0;
}

/* u leaves the room of slot i: TYPE (PART or QUIT) with the reason to the
 * room (PART to u too), then the membership goes; an emptied room with it. */
static void leave(chat_t *ch, chat_user_t *u, int i, const char *type, const char *reason,
                  int quiet) {
  room_t *r = u->rooms[i].room;
  uint32_t slot = u->rooms[i].index;
  if (!quiet) {
    char line[SK_CHAT_OUT_LINE_MAX];
    size_t n = sk_chat_format(line, sizeof line, type, r->name, u->nick, reason,
                              reason ? strlen(reason) : 0);
    if (room_announces(ch, r))
      room_send(ch, r, line, n, NULL);
    else
      deliver(ch, u, line, n);
    monitor(ch, line, n);
  }
  chat_user_t *last = r->members[--r->n];
  r->members[slot] = last;
  if (last != u)
    last->rooms[member_slot(last, r)].index = slot;
  memmove(&u->rooms[i], &u->rooms[i + 1], (size_t)(u->nrooms - i - 1) * sizeof u->rooms[0]);
  u->nrooms--;
  room_drop_if_empty(ch, r);
}

/* Takes u out of everything (rooms, with QUIT lines unless quiet; the
 * nick table; the user list). u itself stays allocated. */
static void detach(chat_t *ch, chat_user_t *u, const char *reason, int quiet) {
  while (u->nrooms)
    leave(ch, u, u->nrooms - 1, "QUIT", reason, quiet);
  ht_remove(&ch->nicks, &u->node);
  addr_release(ch, u);
  if (u->prev)
    u->prev->next = u->next;
  else
    ch->users = u->next;
  if (u->next)
    u->next->prev = u->prev;
  ch->nusers--;
}

/* The chat ends u's session: BYE (if given) to u, QUIT to its rooms, then
 * the transport is closed (graceful, or at once). u may be freed by the
 * close: nothing touches it afterwards. */
static void drop(chat_t *ch, chat_user_t *u, const char *bye, const char *reason, int abort,
                 int quiet) {
  if (bye) {
    char line[SK_CHAT_OUT_LINE_MAX];
    int n = snprintf(line, sizeof line, "BYE %s\n", bye);
    u->ops->send(u->sink, line, (size_t)n); /* best effort: it is leaving */
  }
  u->state = U_LEAVING;
  detach(ch, u, reason, quiet);
  u->ops->close(u->sink, abort);
}

/* Drops every doomed user. Their QUIT lines may doom more; those go too. */
/* Drops every doomed user. Returns 1 if watch was among them: dropping one
 * user sends QUIT lines that can doom others (a full queue), the caller
 * included, and a transport may free a user at once when it closes, so a
 * caller learns here, not from the user, that it is gone. */
static int reap_watch(chat_t *ch, const chat_user_t *watch) {
  chat_user_t *u;
  int hit = 0;
  while ((u = ch->doomed) != NULL) {
    ch->doomed = u->doom_next;
    hit |= u == watch;
    char peer[SK_ENDPOINT_STRLEN];
    u->ops->describe(u->sink, peer, sizeof peer);
    if (u->doom_kind == DOOM_IDLE) {
      char why[64];
      snprintf(why, sizeof why, "idle for %g s", (double)ch->o.idle_ms / 1000.0);
      log_line(ch, "%s (%s) disconnected: %s", u->nick, peer, why);
      drop(ch, u, why, "idle timeout", 0, 0);
    } else {
      log_line(ch, "%s (%s) disconnected: send queue full", u->nick, peer);
      drop(ch, u, NULL, "send queue full", 1, 0);
    }
  }
  return hit;
}

/* ---- users -------------------------------------------------------------------------- */

static chat_user_t *user_find(chat_t *ch, const char *nick, size_t len) {
  char key[SK_CHAT_NICK_MAX + 1];
  if (len > SK_CHAT_NICK_MAX)
    return NULL;
  sk_chat_fold(nick, len, key);
  key[len] = '\0';
  return (chat_user_t *)ht_find(&ch->nicks, key);
}

/* 1 if nick is the bot's (without regard to case) while the bot runs. */
static int is_bot_nick(const chat_t *ch, const char *nick, size_t len) {
  return ch->o.bot && strlen(chatbot_nick(ch->o.bot)) == len &&
         strncasecmp(chatbot_nick(ch->o.bot), nick, len) == 0;
}

/* The name nick[0..len) looks like when it looks like the bot's nick or
 * the server's (their skeletons with end digits stripped are equal), else
 * NULL. */
static const char *nick_reserved(const chat_t *ch, const char *nick, size_t len) {
  char sk[SK_CHAT_NICK_MAX + 1];
  sk[sk_chat_nick_skeleton(nick, len < SK_CHAT_NICK_MAX ? len : SK_CHAT_NICK_MAX, 1, sk)] = '\0';
  if (ch->o.bot && strcmp(sk, ch->reserved[0]) == 0)
    return chatbot_nick(ch->o.bot);
  return strcmp(sk, ch->reserved[1]) == 0 ? CHAT_SERVER_NICK : NULL;
}

/* u->skel from u->nick: the form look-alikes share (digits kept). */
static void set_skeleton(chat_user_t *u) {
  u->skel[sk_chat_nick_skeleton(u->nick, strlen(u->nick), 0, u->skel)] = '\0';
}

/* ---- clients per address ------------------------------------------------------------------ */

/* The key a peer is counted under: the IPv4 address (IPv4-mapped ones
 * too), or the IPv6 /64 it is in; *loopback says if it is 127.0.0.0/8 or
 * ::1. Returns 0, or -1 for a peer that is not IP (unix). */
static int addr_key(const sk_sockaddr_t *sa, char *key, size_t cap, int *loopback) {
  int fam = sa->ss.ss_family;
  struct in_addr v4;
  if (fam == AF_INET) {
    v4 = ((const struct sockaddr_in *)&sa->ss)->sin_addr;
  } else if (fam == AF_INET6) {
    struct in6_addr x = ((const struct sockaddr_in6 *)&sa->ss)->sin6_addr;
    if (!IN6_IS_ADDR_V4MAPPED(&x)) {
      *loopback = IN6_IS_ADDR_LOOPBACK(&x);
      if (!*loopback)
        memset(x.s6_addr + 8, 0, 8);
      if (!inet_ntop(AF_INET6, &x, key, (socklen_t)(cap - 3)))
        return -1;
      if (!*loopback)
        strcat(key, "/64");
      return 0;
    }
    memcpy(&v4, x.s6_addr + 12, 4);
  } else {
    return -1;
  }
  *loopback = (ntohl(v4.s_addr) >> 24) == 127;
  return inet_ntop(AF_INET, &v4, key, (socklen_t)cap) ? 0 : -1;
}

/* Counts u against its address's limit (--max-per-addr, or
 * --max-per-loopback). Returns 0 when u may stay (counted, or not counted:
 * no limit, not an IP peer, or no memory for the count), or -1 with the
 * reason in why when its address has its limit already. */
static int addr_admit(chat_t *ch, chat_user_t *u, const sk_sockaddr_t *sa, char *why,
                      size_t whylen) {
  char key[sizeof ((addr_count_t *)0)->key];
  int loopback = 0;
  if (!sa || addr_key(sa, key, sizeof key, &loopback) < 0)
    return 0;
  unsigned long limit = loopback ? ch->o.per_loopback : ch->o.per_addr;
  if (!limit)
    return 0;
  addr_count_t *a = (addr_count_t *)ht_find(&ch->addrs, key);
  if (a && a->n >= limit) {
    snprintf(why, whylen, "%lu clients from %s already, the most one address may have", a->n,
             key);
    return -1;
  }
  if (!a) {
    if (!(a = calloc(1, sizeof *a)))
      return 0;
    memcpy(a->key, key, sizeof key);
    a->node.key = a->key;
    if (ht_insert(&ch->addrs, &a->node) < 0) {
      free(a);
      return 0;
    }
  }
  a->n++;
  u->addr = a;
  return 0;
}

/* u no longer counts for its address. */
static void addr_release(chat_t *ch, chat_user_t *u) {
  addr_count_t *a = u->addr;
  u->addr = NULL;
  if (a && --a->n == 0) {
    ht_remove(&ch->addrs, &a->node);
    free(a);
  }
}

/* Flood control: a token bucket of flood_burst lines refilled at
 * flood_rate lines a second. Returns 1 if u may send a line now. */
static int flood_ok(chat_t *ch, chat_user_t *u) {
  if (!ch->o.flood_rate)
    return 1;
  uint64_t now = sk_loop_now(ch->loop), full = (uint64_t)ch->o.flood_burst * 1000;
  uint64_t t = u->tokens + (now - u->tokens_at) * ch->o.flood_rate;
  u->tokens = (uint32_t)(t > full ? full : t);
  u->tokens_at = now;
  if (u->tokens < 1000)
    return 0;
  u->tokens -= 1000;
  return 1;
}

/* For the bot's "who": the nicks of the room, as much as fits. */
static unsigned who_names(void *arg, char *out, size_t cap) {
  room_t *r = arg;
  size_t len = 0;
  unsigned count = 0;
  out[0] = '\0';
  for (uint32_t i = 0; i < r->n; i++) {
    if (r->members[i]->state != U_ACTIVE)
      continue;
    count++;
    const char *nick = r->members[i]->nick;
    size_t nl = strlen(nick);
    if (len + nl + 12 < cap)
      len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "", nick);
    else if (len + 5 < cap && (len < 4 || strcmp(out + len - 4, " ...") != 0))
      len += (size_t)snprintf(out + len, cap - len, " ...");
  }
  return count;
}

/* If text (sanitized, said in r by `from`, or privately when r is NULL)
 * is addressed to the bot, the bot answers: in the room, or privately to
 * `from`. */
static void bot_hear(chat_t *ch, room_t *r, chat_user_t *from, const char *text, size_t tlen,
                     int private_msg) {
  chatbot_t *b = ch->o.bot;
  const char *q = text;
  size_t qlen = tlen;
  if (!b || (!private_msg && !chatbot_addressed(b, text, tlen, &q, &qlen)))
    return;
  chatbot_ask_t ask = {from->nick, r ? r->name : NULL, who_names, r};
  char answer[CHATBOT_REPLY_MAX + 1], clean[3 * CHATBOT_REPLY_MAX];
  size_t n = chatbot_answer(b, &ask, q, qlen, answer, sizeof answer);
  n = sk_chat_sanitize(answer, n, clean);
  if (r) {
    room_message(ch, r, "MSG", chatbot_nick(b), clean, n, NULL);
  } else {
    char line[SK_CHAT_OUT_LINE_MAX];
    size_t len = sk_chat_format(line, sizeof line, "MSG", from->nick, chatbot_nick(b), clean, n);
    if (len)
      deliver(ch, from, line, len);
  }
}

/* ---- commands ------------------------------------------------------------------------------ */

static const char *const user_help[] = {
    "NOTICE commands: a line without '/' is said in your current room",
    "NOTICE /nick NAME          change your nick",
    "NOTICE /join #room         join a room (created if new); it becomes your current room",
    "NOTICE /part [#room] [why] leave a room (default: the current one)",
    "NOTICE /rooms              list the rooms",
    "NOTICE /who [#room]        who is in a room",
    "NOTICE /msg NICK TEXT      private message (/msg #room TEXT: to one of your rooms)",
    "NOTICE /me TEXT            an action",
    "NOTICE /echo on|off        get your own messages back",
    "NOTICE /quit [why]         leave",
    "NOTICE //text              say a line that starts with '/'",
};

static const char *const operator_help[] = {
    "NOTICE operator: a line without '/' goes to everyone as MSG * @server",
    "NOTICE /say #room TEXT     say TEXT in one room",
    "NOTICE /kick NICK [why]    disconnect a client",
    "NOTICE /who [#room]        who is in a room",
    "NOTICE /rooms              list the rooms",
    "NOTICE /reload             read the bot's rules file again (as SIGHUP)",
};

/* Sends n ready-made help lines. */
static void help(const to_t *to, const char *const *lines, size_t n) {
  for (size_t i = 0; i < n; i++)
    replyf(to, "%s", lines[i]);
}

/* /who [#room]: one WHO line for the room named, or the asker's current
 * room (the default room for the operator). */
static void cmd_who(const to_t *to, const sk_chat_cmd_t *cmd) {
  chat_t *ch = to->ch;
  room_t *r;
  char q[3 * SK_CHAT_ROOM_MAX + 1];
  if (cmd->arg_len)
    r = room_find(ch, cmd->arg, cmd->arg_len);
  else if (to->u)
    r = to->u->nrooms ? to->u->rooms[to->u->nrooms - 1].room : NULL;
  else
    r = ch->lobby;
  if (!r) {
    if (cmd->arg_len)
      replyf(to, "ERR no-such-room %s: no such room", quote(cmd->arg, cmd->arg_len, SK_CHAT_ROOM_MAX, q));
    else
      replyf(to, "ERR not-in-room you are in no room: /who #room");
    return;
  }
  char line[SK_CHAT_OUT_LINE_MAX];
  unsigned listed = 0, total = r->n + (ch->o.bot ? 1 : 0);
  int n = snprintf(line, sizeof line, "WHO %s %u", r->name, total);
  for (uint32_t i = 0; i < r->n && listed < CHAT_WHO_MAX; i++, listed++)
    n += snprintf(line + n, sizeof line - (size_t)n, " %s", r->members[i]->nick);
  if (ch->o.bot && listed < CHAT_WHO_MAX)
    n += snprintf(line + n, sizeof line - (size_t)n, " %s", chatbot_nick(ch->o.bot));
  line[n++] = '\n';
  reply(to, line, (size_t)n);
}

/* qsort order of rooms: by folded name. */
static int room_cmp(const void *a, const void *b) {
  return strcmp((*(room_t *const *)a)->key, (*(room_t *const *)b)->key);
}

/* /rooms: a ROOM line per room by name (at most CHAT_LIST_MAX), then the
 * count. */
static void cmd_rooms(const to_t *to) {
  chat_t *ch = to->ch;
  room_t **list = malloc((ch->rooms.n ? ch->rooms.n : 1) * sizeof *list);
  if (!list) {
    replyf(to, "ERR server out of memory");
    return;
  }
  size_t n = 0;
  for (size_t i = 0; i < ch->rooms.nb; i++)
    for (hnode_t *e = ch->rooms.b[i]; e; e = e->next)
      list[n++] = (room_t *)e;
  qsort(list, n, sizeof *list, room_cmp);
  for (size_t i = 0; i < n && i < CHAT_LIST_MAX; i++)
    replyf(to, "ROOM %s %u", list[i]->name, list[i]->n);
  replyf(to, "NOTICE %zu room%s%s", n, n == 1 ? "" : "s",
         n > CHAT_LIST_MAX ? " (the first 100 listed)" : "");
  free(list);
}

/* /nick NAME: validated, unique without regard to case, then NICK lines
 * to every room of u. */
static void cmd_nick(chat_t *ch, chat_user_t *u, const sk_chat_cmd_t *cmd) {
  to_t to = {ch, u};
  char q[3 * 64 + 1];
  if (!cmd->arg_len) {
    replyf(&to, "ERR bad-args usage: /nick NAME");
    return;
  }
  if (!sk_chat_nick_valid(cmd->arg, cmd->arg_len)) {
    replyf(&to, "ERR bad-nick '%s' is not a valid nick: 1 to %d of A-Z a-z 0-9 _ - [ ] { } ^ ` |, "
           "not starting with a digit or '-'", quote(cmd->arg, cmd->arg_len, 64, q),
           SK_CHAT_NICK_MAX);
    return;
  }
  chat_user_t *other = user_find(ch, cmd->arg, cmd->arg_len);
  if ((other && other != u) || is_bot_nick(ch, cmd->arg, cmd->arg_len)) {
    replyf(&to, "ERR nick-taken %.*s is already in use", (int)cmd->arg_len, cmd->arg);
    return;
  }
  const char *kept = nick_reserved(ch, cmd->arg, cmd->arg_len);
  if (kept) {
    replyf(&to, "ERR nick-reserved %.*s looks like %s, a name the server keeps", (int)cmd->arg_len,
           cmd->arg, kept);
    return;
  }
  if (cmd->arg_len == strlen(u->nick) && memcmp(u->nick, cmd->arg, cmd->arg_len) == 0) {
    replyf(&to, "NOTICE you are %s already", u->nick);
    return;
  }
  char old[SK_CHAT_NICK_MAX + 1];
  memcpy(old, u->nick, sizeof old);
  ht_remove(&ch->nicks, &u->node);
  memcpy(u->nick, cmd->arg, cmd->arg_len);
  u->nick[cmd->arg_len] = '\0';
  sk_chat_fold(u->nick, cmd->arg_len + 1, u->key);
  set_skeleton(u);
  ht_insert(&ch->nicks, &u->node); /* cannot fail: the table has buckets already */
  char line[SK_CHAT_OUT_LINE_MAX];
  if (!u->nrooms) {
    size_t n = sk_chat_format(line, sizeof line, "NICK", "*", old, u->nick, cmd->arg_len);
    deliver(ch, u, line, n);
  }
  for (int i = 0; i < u->nrooms; i++)
    presence(ch, u->rooms[i].room, u, "NICK", old, u->nick);
}

/* /join #room: makes the room if new and joins it, or makes it current if
 * u is in it already. */
static void cmd_join(chat_t *ch, chat_user_t *u, const sk_chat_cmd_t *cmd) {
  to_t to = {ch, u};
  char name[SK_CHAT_ROOM_MAX + 2], q[3 * 64 + 1];
  if (!cmd->arg_len) {
    replyf(&to, "ERR bad-args usage: /join #room");
    return;
  }
  /* "/join dev" means #dev */
  size_t len = cmd->arg_len + (cmd->arg[0] != '#');
  if (len <= SK_CHAT_ROOM_MAX)
    snprintf(name, sizeof name, "%s%.*s", cmd->arg[0] == '#' ? "" : "#", (int)cmd->arg_len,
             cmd->arg);
  if (len > SK_CHAT_ROOM_MAX || !sk_chat_room_valid(name, len)) {
    replyf(&to, "ERR bad-room '%s' is not a valid room: '#' and 1 to %d of A-Z a-z 0-9 _ - .",
           quote(cmd->arg, cmd->arg_len, 64, q), SK_CHAT_ROOM_MAX - 1);
    return;
  }
  room_t *r = room_find(ch, name, len);
  int slot = r ? member_slot(u, r) : -1;
  if (slot >= 0) {
    make_current(u, slot);
    replyf(&to, "NOTICE %s is your current room now", r->name);
    return;
  }
  if (u->nrooms >= ch->o.rooms_per_client) {
    replyf(&to, "ERR too-many-rooms you are in %u rooms already, the most one client may be in: "
           "/part one first", ch->o.rooms_per_client);
    return;
  }
  if (!r && ch->o.max_rooms && ch->rooms.n >= ch->o.max_rooms) {
    replyf(&to, "ERR rooms-full the server has %lu rooms, the most it keeps: join one of them "
           "(/rooms)", ch->o.max_rooms);
    return;
  }
  if ((!r && !(r = room_new(ch, name, len))) || join(ch, u, r) < 0) {
    if (r)
      room_drop_if_empty(ch, r);
    replyf(&to, "ERR server out of memory");
  }
}

/* /part [#room] [reason]: leaves the room named or the current one. */
static void cmd_part(chat_t *ch, chat_user_t *u, const sk_chat_cmd_t *cmd) {
  to_t to = {ch, u};
  char reason[3 * CHAT_REASON_MAX + 1];
  if (!u->nrooms) {
    replyf(&to, "ERR not-in-room you are in no room");
    return;
  }
  int slot = u->nrooms - 1;
  const char *why = cmd->args;
  size_t why_len = cmd->args_len;
  if (cmd->arg_len && cmd->arg[0] == '#') {
    room_t *r = room_find(ch, cmd->arg, cmd->arg_len);
    slot = r ? member_slot(u, r) : -1;
    if (slot < 0) {
      char q[3 * 64 + 1];
      replyf(&to, "ERR not-in-room you are not in %s", quote(cmd->arg, cmd->arg_len, 64, q));
      return;
    }
    why = cmd->rest;
    why_len = cmd->rest_len;
  }
  leave(ch, u, slot, "PART", quote(why, why_len, CHAT_REASON_MAX, reason), 0);
  if (u->state != U_ACTIVE)
    return;
  if (u->nrooms)
    replyf(&to, "NOTICE you are talking in %s now", u->rooms[u->nrooms - 1].room->name);
  else
    replyf(&to, "NOTICE you are in no room now: /join #room to talk");
}

/* /msg NICK TEXT (private, or to the bot) and /msg #room TEXT (to one of
 * u's rooms). */
static void cmd_msg(chat_t *ch, chat_user_t *u, const sk_chat_cmd_t *cmd) {
  to_t to = {ch, u};
  char text[SK_CHAT_TEXT_MAX], q[3 * 64 + 1];
  if (!cmd->arg_len || !cmd->rest_len) {
    replyf(&to, "ERR bad-args usage: /msg NICK TEXT or /msg #room TEXT");
    return;
  }
  size_t tl = sk_chat_sanitize(cmd->rest, cmd->rest_len, text);
  if (cmd->arg[0] == '#') {
    room_t *r = room_find(ch, cmd->arg, cmd->arg_len);
    if (!r || member_slot(u, r) < 0) {
      replyf(&to, "ERR not-in-room you are not in %s", quote(cmd->arg, cmd->arg_len, 64, q));
      return;
    }
    room_message(ch, r, "MSG", u->nick, text, tl, u);
    bot_hear(ch, r, u, text, tl, 0);
    return;
  }
  char line[SK_CHAT_OUT_LINE_MAX];
  if (is_bot_nick(ch, cmd->arg, cmd->arg_len)) {
    if (u->echo) {
      size_t n = sk_chat_format(line, sizeof line, "MSG", chatbot_nick(ch->o.bot), u->nick,
                                text, tl);
      deliver(ch, u, line, n);
    }
    bot_hear(ch, NULL, u, text, tl, 1);
    return;
  }
  chat_user_t *t = user_find(ch, cmd->arg, cmd->arg_len);
  if (!t || t->state != U_ACTIVE) {
    replyf(&to, "ERR no-such-nick %s: nobody by that nick", quote(cmd->arg, cmd->arg_len, 64, q));
    return;
  }
  size_t n = sk_chat_format(line, sizeof line, "MSG", t->nick, u->nick, text, tl);
  deliver(ch, t, line, n);
  if (u->echo && t != u)
    deliver(ch, u, line, n);
}

/* Plain text or /me in the current room. */
static void cmd_say(chat_t *ch, chat_user_t *u, const char *type, const char *s, size_t len) {
  to_t to = {ch, u};
  if (!u->nrooms) {
    replyf(&to, "ERR not-in-room you are in no room: /join #room to talk");
    return;
  }
  if (!len) {
    replyf(&to, "ERR bad-args usage: /me TEXT");
    return;
  }
  room_t *r = u->rooms[u->nrooms - 1].room;
  char text[SK_CHAT_TEXT_MAX];
  size_t tl = sk_chat_sanitize(s, len, text);
  room_message(ch, r, type, u->nick, text, tl, u);
  if (type[0] == 'M')
    bot_hear(ch, r, u, text, tl, 0);
}

/* Carries out one command of user u. Returns 1 when u was dropped (it may
 * be freed: the caller must not touch it), else 0. */
static int user_command(chat_t *ch, chat_user_t *u, const sk_chat_cmd_t *cmd) {
  to_t to = {ch, u};
  char q[3 * 64 + 1];
  switch (cmd->id) {
  case SK_CHAT_CMD_EMPTY: break;
  case SK_CHAT_CMD_SAY: cmd_say(ch, u, "MSG", cmd->args, cmd->args_len); break;
  case SK_CHAT_CMD_ME: cmd_say(ch, u, "ACT", cmd->args, cmd->args_len); break;
  case SK_CHAT_CMD_NICK: cmd_nick(ch, u, cmd); break;
  case SK_CHAT_CMD_JOIN: cmd_join(ch, u, cmd); break;
  case SK_CHAT_CMD_PART: cmd_part(ch, u, cmd); break;
  case SK_CHAT_CMD_MSG: cmd_msg(ch, u, cmd); break;
  case SK_CHAT_CMD_WHO: cmd_who(&to, cmd); break;
  case SK_CHAT_CMD_ROOMS: cmd_rooms(&to); break;
  case SK_CHAT_CMD_HELP: help(&to, user_help, sizeof user_help / sizeof user_help[0]); break;
  case SK_CHAT_CMD_ECHO:
    if (cmd->arg_len == 2 && strncasecmp(cmd->arg, "on", 2) == 0)
      u->echo = 1;
    else if (cmd->arg_len == 3 && strncasecmp(cmd->arg, "off", 3) == 0)
      u->echo = 0;
    else {
      replyf(&to, "ERR bad-args usage: /echo on|off");
      break;
    }
    replyf(&to, "NOTICE echo is %s", u->echo ? "on" : "off");
    break;
  case SK_CHAT_CMD_QUIT: {
    char why[3 * CHAT_REASON_MAX + 1];
    quote(cmd->args, cmd->args_len, CHAT_REASON_MAX, why);
    drop(ch, u, "goodbye", why[0] ? why : "quit", 0, 0);
    return 1;
  }
  case SK_CHAT_CMD_OPSAY:
  case SK_CHAT_CMD_KICK:
  case SK_CHAT_CMD_RELOAD:
    replyf(&to, "ERR no-permission /%s is for the server's operator",
           quote(cmd->name, cmd->name_len, 16, q));
    break;
  case SK_CHAT_CMD_UNKNOWN:
    replyf(&to, "ERR unknown-command /%s: try /help", quote(cmd->name, cmd->name_len, 32, q));
    break;
  }
  return 0;
}

/* ---- entry points -------------------------------------------------------------------------- */

/* Refuses u, over its address's limit: ERR and BYE, then the transport is
 * closed; u is in no table and is freed by chat_user_closed. */
static void refuse(chat_user_t *u, const char *why) {
  char line[512];
  int n = snprintf(line, sizeof line,
                   "ERR too-many-clients %s\nBYE too many clients from your address\n", why);
  u->state = U_LEAVING;
  u->ops->send(u->sink, line, (size_t)n); /* best effort: it is leaving */
  u->ops->close(u->sink, 0);
}

int chat_user_open(chat_t *ch, const chat_sink_ops_t *ops, void *sink, chat_user_t **out) {
  return chat_user_open_from(ch, ops, sink, NULL, out);
}

int chat_user_open_from(chat_t *ch, const chat_sink_ops_t *ops, void *sink,
                        const sk_sockaddr_t *peer, chat_user_t **out) {
  chat_user_t *u = calloc(1, sizeof *u);
  if (!u || !(u->rooms = calloc(ch->o.rooms_per_client, sizeof *u->rooms))) {
    free(u);
    return -ENOMEM;
  }
  *out = u;
  u->ops = ops;
  u->sink = sink;
  u->state = U_ACTIVE;
  char why[256];
  if (addr_admit(ch, u, peer, why, sizeof why) < 0) {
    refuse(u, why);
    return 0;
  }
  u->tokens = ch->o.flood_burst * 1000u;
  u->tokens_at = u->last_line_ms = sk_loop_now(ch->loop);
  for (;;) {
    int n = snprintf(u->nick, sizeof u->nick, "guest%lu", ++ch->guest_seq);
    if (!user_find(ch, u->nick, (size_t)n) && !is_bot_nick(ch, u->nick, (size_t)n) &&
        !nick_reserved(ch, u->nick, (size_t)n))
      break;
  }
  sk_chat_fold(u->nick, sizeof u->nick, u->key);
  set_skeleton(u);
  u->node.key = u->key;
  if (ht_insert(&ch->nicks, &u->node) < 0) {
    addr_release(ch, u);
    user_free(u);
    return -ENOMEM;
  }
  u->next = ch->users;
  if (ch->users)
    ch->users->prev = u;
  ch->users = u;
  if (++ch->nusers > ch->peak_users)
    ch->peak_users = ch->nusers;
  char line[SK_CHAT_OUT_LINE_MAX];
  int n = snprintf(line, sizeof line,
                   "HELLO %d %s %s sockit chat: type a line to talk in %s, /help for commands\n",
                   SK_CHAT_PROTOCOL, u->nick, ch->lobby->name, ch->lobby->name);
  deliver(ch, u, line, (size_t)n);
  if (join(ch, u, ch->lobby) < 0) {
    to_t to = {ch, u};
    replyf(&to, "ERR server out of memory: you are in no room");
  }
  reap(ch);
  return 0;
}

int chat_user_line(chat_t *ch, chat_user_t *u, const char *line, size_t len) {
  if (u->state != U_ACTIVE)
    return -1;
  sk_chat_cmd_t cmd;
  sk_chat_parse_command(line, len, &cmd);
  if (cmd.id == SK_CHAT_CMD_EMPTY)
    return 0;
  u->last_line_ms = sk_loop_now(ch->loop);
  if (!flood_ok(ch, u)) {
    if (!u->flood_warned) {
      to_t to = {ch, u};
      u->flood_warned = 1;
      replyf(&to, "ERR flood too many lines: at most %u at once and %u a second; "
             "lines are dropped until you slow down", ch->o.flood_burst, ch->o.flood_rate);
    }
  } else {
    u->flood_warned = 0;
    if (user_command(ch, u, &cmd)) {
      reap(ch);
      return -1;
    }
  }
  int gone = u->state != U_ACTIVE;
  gone |= reap_watch(ch, u); /* u may be freed by now: only compared */
  return gone ? -1 : 0;
}

int chat_user_too_long(chat_t *ch, chat_user_t *u) {
  if (u->state != U_ACTIVE)
    return -1;
  to_t to = {ch, u};
  replyf(&to, "ERR line-too-long lines are limited to %d bytes; that one was dropped",
         SK_CHAT_LINE_MAX);
  int gone = u->state != U_ACTIVE;
  gone |= reap_watch(ch, u); /* u may be freed by now: only compared */
  return gone ? -1 : 0;
}

void chat_user_closed(chat_t *ch, chat_user_t *u, const char *why, int quiet) {
  if (u->state == U_DOOMED) {
    for (chat_user_t **p = &ch->doomed; *p; p = &(*p)->doom_next)
      if (*p == u) {
        *p = u->doom_next;
        break;
      }
    u->state = U_ACTIVE;
  }
  if (u->state == U_ACTIVE) {
    u->state = U_LEAVING;
    detach(ch, u, why, quiet);
  }
  user_free(u);
  reap(ch);
  trim_when_quiet(ch);
}

void chat_operator_line(chat_t *ch, const char *line, size_t len) {
  sk_chat_cmd_t cmd;
  sk_chat_parse_command(line, len, &cmd);
  to_t to = {ch, NULL};
  char text[SK_CHAT_TEXT_MAX], q[3 * 64 + 1], out[SK_CHAT_OUT_LINE_MAX];
  switch (cmd.id) {
  case SK_CHAT_CMD_EMPTY: break;
  case SK_CHAT_CMD_SAY: {
    size_t tl = sk_chat_sanitize(cmd.args, cmd.args_len, text);
    size_t n = sk_chat_format(out, sizeof out, "MSG", "*", CHAT_SERVER_NICK, text, tl);
    for (chat_user_t *u = ch->users; u; u = u->next)
      deliver(ch, u, out, n);
    monitor(ch, out, n);
    break;
  }
  case SK_CHAT_CMD_OPSAY: {
    room_t *r = cmd.arg_len ? room_find(ch, cmd.arg, cmd.arg_len) : NULL;
    if (!cmd.arg_len || !cmd.rest_len)
      replyf(&to, "ERR bad-args usage: /say #room TEXT");
    else if (!r)
      replyf(&to, "ERR no-such-room %s: no such room", quote(cmd.arg, cmd.arg_len, 64, q));
    else
      room_message(ch, r, "MSG", CHAT_SERVER_NICK, text,
                   sk_chat_sanitize(cmd.rest, cmd.rest_len, text), NULL);
    break;
  }
  case SK_CHAT_CMD_KICK: {
    chat_user_t *u = cmd.arg_len ? user_find(ch, cmd.arg, cmd.arg_len) : NULL;
    if (!cmd.arg_len) {
      replyf(&to, "ERR bad-args usage: /kick NICK [reason]");
    } else if (!u || u->state != U_ACTIVE) {
      replyf(&to, "ERR no-such-nick %s: nobody by that nick", quote(cmd.arg, cmd.arg_len, 64, q));
    } else {
      char why[3 * CHAT_REASON_MAX + 64];
      int n = snprintf(why, sizeof why, "kicked by the operator");
      if (cmd.rest_len) {
        char r[3 * CHAT_REASON_MAX + 1];
        snprintf(why + n, sizeof why - (size_t)n, ": %s",
                 quote(cmd.rest, cmd.rest_len, CHAT_REASON_MAX, r));
      }
      replyf(&to, "NOTICE %s kicked", u->nick);
      drop(ch, u, why, why, 0, 0);
    }
    break;
  }
  case SK_CHAT_CMD_WHO: cmd_who(&to, &cmd); break;
  case SK_CHAT_CMD_ROOMS: cmd_rooms(&to); break;
  case SK_CHAT_CMD_RELOAD:
    if (!ch->o.bot) {
      replyf(&to, "ERR bad-args the bot is off");
    } else {
      char err[SK_ERRLEN];
      int r = chatbot_reload(ch->o.bot, err, sizeof err);
      if (r < 0) {
        replyf(&to, "ERR reload %s (the old rules stay)", err);
        log_line(ch, "bot: %s (the old rules stay)", err);
      } else {
        replyf(&to, "NOTICE bot: %d rules loaded", r);
        log_line(ch, "bot: %d rules loaded", r);
      }
    }
    break;
  case SK_CHAT_CMD_HELP: help(&to, operator_help, sizeof operator_help / sizeof operator_help[0]); break;
  default:
    replyf(&to, "ERR unknown-command /%s: try /help", quote(cmd.name, cmd.name_len, 32, q));
    break;
  }
  reap(ch);
}

void chat_shutdown(chat_t *ch, const char *why) {
  if (sk_timer_active(&ch->idle_timer))
    sk_timer_stop(ch->loop, &ch->idle_timer);
  if (sk_timer_active(&ch->trim_timer))
    sk_timer_stop(ch->loop, &ch->trim_timer);
  while (ch->users)
    drop(ch, ch->users, why, NULL, 0, 1);
  reap(ch);
}

unsigned long chat_user_count(const chat_t *ch) { return ch->nusers; }

/* Gives the heap's free pages back to the system, and starts counting the
 * peak again. */
static void on_trim(sk_loop_t *loop, sk_timer_t *t) {
  chat_t *ch = t->data;
  (void)loop;
#if SK_HAVE_MALLOC_TRIM
  malloc_trim(0);
#endif
  ch->peak_users = ch->nusers;
}

/* After the users fell to a quarter of a peak of at least
 * CHAT_TRIM_MIN_PEAK, memory goes back to the system CHAT_TRIM_DELAY_MS
 * later (leaves in between join the same trim): glibc keeps freed memory
 * in its heap, and after a big crowd left that is megabytes. */
static void trim_when_quiet(chat_t *ch) {
  if (!SK_HAVE_MALLOC_TRIM || ch->peak_users < CHAT_TRIM_MIN_PEAK ||
      ch->nusers > ch->peak_users / 4 || sk_timer_active(&ch->trim_timer))
    return;
  if (sk_timer_start(ch->loop, &ch->trim_timer, CHAT_TRIM_DELAY_MS, 0) < 0)
    ch->peak_users = ch->nusers; /* no timer: no trim this time */
}

void chat_opts_init(chat_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->history = CHAT_HISTORY_DEFAULT;
  o->flood_rate = CHAT_FLOOD_RATE;
  o->flood_burst = CHAT_FLOOD_BURST;
  o->notices_max = CHAT_NOTICES_MAX;
  o->history_budget = CHAT_HISTORY_BUDGET;
  o->history_text_max = CHAT_HISTORY_TEXT_MAX;
  o->rooms_per_client = CHAT_USER_ROOMS;
  o->max_rooms = CHAT_ROOMS_DEFAULT;
  o->per_addr = CHAT_PER_ADDR;
}

/* Drops (gracefully, with BYE) users who sent nothing for idle_ms. */
static void idle_sweep(sk_loop_t *loop, sk_timer_t *t) {
  chat_t *ch = t->data;
  uint64_t now = sk_loop_now(loop);
  for (chat_user_t *u = ch->users; u; u = u->next)
    if (u->state == U_ACTIVE && now - u->last_line_ms >= ch->o.idle_ms)
      doom(ch, u, DOOM_IDLE);
  reap(ch);
}

int chat_new(chat_t **out, const chat_opts_t *o, sk_loop_t *loop) {
  chat_t *ch = calloc(1, sizeof *ch);
  if (!ch)
    return -ENOMEM;
  ch->o = *o;
  ch->loop = loop;
  const char *room = o->default_room ? o->default_room : CHAT_DEFAULT_ROOM;
  size_t len = strlen(room);
  if (!sk_chat_room_valid(room, len) || o->history > CHAT_HISTORY_MAX ||
      o->history_budget < CHAT_HISTORY_BUDGET_MIN || o->history_text_max < CHAT_HISTORY_TEXT_MIN ||
      o->history_text_max > SK_CHAT_TEXT_MAX || !o->rooms_per_client ||
      o->rooms_per_client > CHAT_USER_ROOMS_MAX) {
    free(ch);
    return -EINVAL;
  }
  memcpy(ch->default_room, room, len + 1);
  ch->o.default_room = ch->default_room;
  sk_timer_init(&ch->idle_timer, idle_sweep, ch);
  sk_timer_init(&ch->trim_timer, on_trim, ch);
  if (o->bot) {
    const char *b = chatbot_nick(o->bot);
    ch->reserved[0][sk_chat_nick_skeleton(b, strlen(b), 1, ch->reserved[0])] = '\0';
  }
  const char *srv = CHAT_SERVER_NICK + 1; /* "server" */
  ch->reserved[1][sk_chat_nick_skeleton(srv, strlen(srv), 1, ch->reserved[1])] = '\0';
  if (!(ch->lobby = room_new(ch, room, len))) {
    free(ch->rooms.b);
    free(ch);
    return -ENOMEM;
  }
  ch->lobby->permanent = 1;
  if (o->idle_ms) {
    uint64_t every = o->idle_ms < 1000 ? o->idle_ms : 1000;
    if (sk_timer_start(loop, &ch->idle_timer, every, every) < 0) {
      chat_free(ch);
      return -ENOMEM;
    }
  }
  *out = ch;
  return 0;
}

void chat_free(chat_t *ch) {
  if (!ch)
    return;
  if (sk_timer_active(&ch->idle_timer))
    sk_timer_stop(ch->loop, &ch->idle_timer);
  if (sk_timer_active(&ch->trim_timer))
    sk_timer_stop(ch->loop, &ch->trim_timer);
  while (ch->users) {
    chat_user_t *u = ch->users;
    detach(ch, u, NULL, 1);
    user_free(u);
  }
  for (size_t i = 0; i < ch->rooms.nb; i++)
    for (hnode_t *e = ch->rooms.b[i], *next; e; e = next) {
      next = e->next;
      room_free(ch, (room_t *)e);
    }
  free(ch->rooms.b);
  free(ch->nicks.b);
  free(ch->addrs.b); /* its entries went with their users */
  free(ch);
}

/* ---- the line transport ------------------------------------------------------------------ */

/* One line client: its connection, its user, and its framing state. */
typedef struct {
  sk_conn_t *conn;
  chat_user_t *user;
  sk_chat_reader_t reader;
} line_client_t;

/* The line transport's sink: a sk_conn_t behind a line_client_t. */
static int line_send(void *sink, const char *data, size_t len) {
  return sk_conn_send(((line_client_t *)sink)->conn, data, len) == 0 ? 0 : -1;
}

static size_t line_space(void *sink) { return sk_conn_out_space(((line_client_t *)sink)->conn); }

static void line_close(void *sink, int abort) {
  sk_conn_t *c = ((line_client_t *)sink)->conn;
  if (abort)
    sk_conn_abort(c);
  else
    sk_conn_close(c);
}

static void line_describe(void *sink, char *buf, size_t len) {
  sk_sockaddr_format(sk_conn_peer(((line_client_t *)sink)->conn), buf, len);
}

static const chat_sink_ops_t line_ops = {line_send, line_space, line_close, line_describe};

/* A new line client of ch: its framing state and its user. Returns 0, or
 * -1 to refuse the connection (out of memory, or no chat). */
static int line_open_with(chat_t *ch, sk_conn_t *c) {
  line_client_t *lc = calloc(1, sizeof *lc);
  if (!ch || !lc) {
    free(lc);
    return -1;
  }
  lc->conn = c;
  sk_chat_reader_init(&lc->reader, SK_CHAT_LINE_MAX);
  sk_conn_set_data(c, lc);
  if (chat_user_open_from(ch, &line_ops, lc, sk_conn_peer(c), &lc->user) < 0) {
    sk_conn_set_data(c, NULL);
    free(lc);
    return -1;
  }
  return 0; /* lc may be gone already (dropped at once): not touched again */
}

/* Every complete line goes to the chat; a line over SK_CHAT_LINE_MAX gets
 * an error and is skipped; at EOF a last line without LF counts too. */
static void line_data_with(chat_t *ch, sk_conn_t *c, sk_buf_t *in, int eof) {
  line_client_t *lc = sk_conn_data(c);
  const char *p = sk_buf_head(in);
  size_t len = sk_buf_len(in), off = 0;
  while (off < len) {
    size_t used, ll;
    const char *line;
    int k = sk_chat_read_line(&lc->reader, p + off, len - off, &used, &line, &ll);
    off += used;
    if (k == SK_CHAT_NEED_MORE)
      break;
    if ((k == SK_CHAT_TOO_LONG ? chat_user_too_long(ch, lc->user)
                               : chat_user_line(ch, lc->user, line, ll)) < 0) {
      sk_buf_consume(in, len); /* the user is gone: the rest is nobody's */
      return;
    }
  }
  /* At EOF, or at the end of a seqpacket packet, what is left is a line. */
  if ((eof || sk_conn_is_message(c)) && off < len && !lc->reader.discarding) {
    size_t ll = len - off;
    if (ll && p[off + ll - 1] == '\r')
      ll--;
    if (chat_user_line(ch, lc->user, p + off, ll) < 0) {
      sk_buf_consume(in, len);
      return;
    }
    off = len;
  }
  sk_buf_consume(in, off);
}

/* The QUIT reason for a connection closed by the framework. */
static const char *close_reason(int reason) {
  switch (reason) {
  case SK_CLOSE_IDLE: return "idle timeout";
  case SK_CLOSE_SHUTDOWN: return "server shutting down";
  case SK_CLOSE_ERROR: return "connection error";
  default: return "connection closed";
  }
}

/* The connection is gone: its user leaves the chat. */
static void line_close_with(chat_t *ch, sk_conn_t *c, int reason) {
  line_client_t *lc = sk_conn_data(c);
  if (!lc)
    return;
  sk_conn_set_data(c, NULL);
  /* At shutdown the loops may be gone already: leave without a word. */
  chat_user_closed(ch, lc->user, close_reason(reason), reason == SK_CLOSE_SHUTDOWN);
  free(lc);
}

static int line_open(sk_conn_t *c) { return line_open_with(sk_conn_ctx(c), c); }
static void line_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  line_data_with(sk_conn_ctx(c), c, in, eof);
}
static void line_closed(sk_conn_t *c, int reason) { line_close_with(sk_conn_ctx(c), c, reason); }

const sk_handler_t chat_line_handler = {
    .on_open = line_open, .on_data = line_data, .on_close = line_closed};

/* ---- the hub's chat -------------------------------------------------------------------------- */

/* `sockit serve` hosts the chat like any service, on one loop (svc_t
 * single_loop): one chat per process, with the defaults and the bot's
 * built-in behaviours, made on the first connection. No operator console:
 * the hub's standard input is not the chat's. */
static chat_t *hub;
static chatbot_t *hub_bot;

/* At exit: the hub's chat and bot (their connections are gone by then). */
static void hub_free(void) {
  chat_free(hub);
  chatbot_free(hub_bot);
  hub = NULL;
  hub_bot = NULL;
}

chat_t *chat_hub(sk_loop_t *loop) {
  if (!hub) {
    char err[SK_ERRLEN];
    if (!hub_bot && chatbot_new(&hub_bot, CHATBOT_NICK, NULL, err, sizeof err) < 0)
      return NULL;
    chat_opts_t o;
    chat_opts_init(&o);
    o.bot = hub_bot;
    if (chat_new(&hub, &o, loop) < 0)
      return NULL;
    atexit(hub_free);
  }
  return hub;
}

static int hub_open(sk_conn_t *c) { return line_open_with(chat_hub(sk_conn_loop(c)), c); }
static void hub_data(sk_conn_t *c, sk_buf_t *in, int eof) { line_data_with(hub, c, in, eof); }
static void hub_closed(sk_conn_t *c, int reason) {
  if (hub)
    line_close_with(hub, c, reason);
}

/* A datagram endpoint cannot carry a chat. An answer would go to any
 * source, spoofed ones too (a reply loop with a service that answers
 * everything): the datagram is dropped and the operator told, one line a
 * second at most. */
static void hub_datagram(sk_server_t *s, const sk_datagram_t *dg) {
  char from[SK_ENDPOINT_STRLEN];
  sk_server_report(s, "datagram from %s dropped: the chat needs a stream endpoint (tcp or unix)",
                   sk_sockaddr_format(dg->peer, from, sizeof from));
}

static const sk_handler_t hub_handler = {.on_open = hub_open,
                                         .on_data = hub_data,
                                         .on_close = hub_closed,
                                         .on_datagram = hub_datagram};

const svc_t svc_chat = {"chat", "seed 002: chat rooms for nc/telnet users, with a bot (docs/chat.md)",
                        &hub_handler, CHAT_IN_LIMIT, {"tcp://127.0.0.1:6667", NULL}};
