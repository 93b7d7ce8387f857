/* chat_client.c - `sockit chat ENDPOINT [--nick NAME]`: the terminal client
 * of the chat line protocol (docs/chat.md).
 *
 * One event loop watches the socket, standard input and timers (reconnect
 * backoff, the connect deadline, the bounded wait after /quit). Connecting
 * and the TLS handshake run on the loop too, so typing goes on while a
 * reconnect waits on a server that does not answer. Two modes:
 *   - terminal (stdin and stdout are ttys): raw mode and a small line
 *     editor; a server event clears the prompt line, is printed, and the
 *     prompt comes back with the half-typed line and the cursor as they were;
 *   - plain (anything piped): each input line is sent as it is, each event
 *     is printed as one uncoloured line; at end of input /quit is sent.
 * Standard input and output stay blocking: a tty's stdin and stdout share
 * one open file description, so O_NONBLOCK on one would make terminal
 * writes fail with EAGAIN. stdin is read once per readiness report, which
 * never blocks (level-triggered epoll, VMIN=1). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli/chat_client.h"
#include "cli/cli.h"
#include "cli/tlsopt.h"
#include "sockit/chat.h"

#define CHATC_INPUT_MAX (SK_CHAT_LINE_MAX - 2) /* longest line typed or piped, without CR LF */
#define CHATC_HISTORY_MAX 100                  /* lines kept for up/down */
#define CHATC_SOCK_IN_MAX (2 * SK_CHAT_OUT_LINE_MAX)
#define CHATC_SOCK_OUT_MAX (64u * 1024u) /* lines not yet written to the server */
#define CHATC_STDIN_MAX (2 * SK_CHAT_LINE_MAX)
#define CHATC_RENDER_MAX (4 * SK_CHAT_TEXT_MAX) /* one rendered event, colours included */
#define CHATC_ROOMS_MAX 8                       /* as CHAT_USER_ROOMS on the server */
#define CHATC_BACKOFF_MIN_MS 500
#define CHATC_BACKOFF_MAX_MS 8000
#define CHATC_CONNECT_TIMEOUT_MS 3000 /* per address; the TLS handshake gets as long again */
#define CHATC_QUIT_WAIT_MS 2000 /* after /quit: how long to wait for the server to close */
#define CHATC_ESC_MAX 8         /* longest key escape sequence kept */
#define CHATC_PROMPT_MAX (SK_CHAT_NICK_MAX + SK_CHAT_ROOM_MAX + 32) /* "NICK #ROOM> " */
/* The prompt line drawn: prompt and visible input, each cleaned (at most
 * three bytes per byte), and our own escapes. */
#define CHATC_PROMPT_OUT_MAX (3 * CHATC_PROMPT_MAX + 3 * CHATC_INPUT_MAX + 64)
#define CHATC_BAD_LINE_SHOWN 160 /* bytes of a dropped server line quoted in the note */

/* ---- state ------------------------------------------------------------------------------- */

typedef struct {
  sk_loop_t *loop;
  sk_endpoint_t ep;
  char name[SK_ENDPOINT_STRLEN];
  int fd;      /* -1 while disconnected */
  int greeted; /* HELLO seen on this connection: piped lines may go */
  cli_tls_t tlsopt;       /* --ca, --pin, --insecure, --cert/--key, --tls-timeout */
  sk_tls_ctx_t *tls_ctx;  /* tls:// servers; NULL for plain ones */
  sk_tls_t *tls;          /* this connection's session, if TLS */
  unsigned rwant, wwant;  /* what a TLS read / write waits for; 0 = the usual */
  sk_io_t sock_io, in_io;
  sk_timer_t timer; /* reconnect backoff, or the wait after /quit */
  /* a connection attempt under way (res, pend_fd >= 0 or hs set) */
  sk_resolve_t *res;     /* the name lookup, on its helper thread */
  sk_sockaddr_t addrs[SK_RESOLVE_MAX];
  int naddrs, addr_i, last_err;
  int pend_fd;           /* the socket being connected, -1 otherwise */
  sk_tls_t *pend_tls;    /* its TLS session while the handshake runs */
  sk_tls_hs_t *hs;       /* that handshake */
  sk_timer_t conn_timer; /* the deadline of the connect to one address */
  int first_attempt;     /* no connection yet: a failure ends the client */
  char fatal[SK_ERRLEN]; /* why the first connection failed */
  sk_buf_t sock_in, sock_out, std_in;
  sk_chat_reader_t sock_reader, in_reader;
  uint64_t backoff_ms;
  int tty, color, quitting, kicked, in_eof, exit_code, ever_connected;
  /* who we are and where */
  char nick[SK_CHAT_NICK_MAX + 1];      /* as the server last said */
  char want_nick[SK_CHAT_NICK_MAX + 1]; /* --nick or the last /nick that worked */
  char home[SK_CHAT_ROOM_MAX + 1];      /* the room HELLO put us in */
  char rooms[CHATC_ROOMS_MAX][SK_CHAT_ROOM_MAX + 1]; /* join order; the last is current */
  int nrooms, left_home;
  char last_rename[2 * SK_CHAT_NICK_MAX + 2]; /* "old new" of the last NICK line shown */
  /* the line editor */
  char line[CHATC_INPUT_MAX + 1];
  size_t len, pos; /* bytes; pos is always on a UTF-8 character boundary */
  char esc[CHATC_ESC_MAX];
  size_t esc_len;
  char *history[CHATC_HISTORY_MAX]; /* oldest first */
  int nhistory, hist_pos;           /* hist_pos == nhistory: the line being typed */
  char saved[CHATC_INPUT_MAX + 1];  /* the line being typed while browsing history */
  int cols;
  struct termios saved_tio;
  int raw;
} client_t;

static client_t *g_client; /* for the atexit terminal restore */

/* ---- terminal ------------------------------------------------------------------------------ */

/* Writes all of p to fd, blocking; waits out EAGAIN should a parent have made
 * the descriptor non-blocking. Returns 0 or -1. */
static int write_all(int fd, const char *p, size_t len) {
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      poll(&pfd, 1, 1000);
      continue;
    }
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Puts the terminal back as it was; safe to call twice (atexit too). */
static void tty_restore(void) {
  client_t *c = g_client;
  if (c && c->raw) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &c->saved_tio);
    c->raw = 0;
  }
}

/* Raw input, no echo; signals (ctrl-C, ctrl-Z) and output processing stay
 * as they are, so "\n" still ends a line on screen. Returns 0 or -1. */
static int tty_raw(client_t *c) {
  struct termios t = c->saved_tio;
  t.c_iflag &= (tcflag_t) ~(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
  t.c_cflag |= CS8;
  t.c_lflag &= (tcflag_t) ~(ECHO | ICANON | IEXTEN);
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0)
    return -1;
  c->raw = 1;
  return 0;
}

/* The window width in columns (80 when the terminal does not say). */
static void tty_width(client_t *c) {
  struct winsize ws;
  c->cols = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

/* ---- the prompt line ------------------------------------------------------------------------ */

/* Characters (UTF-8 code points) in s[0..n). Wide characters count one. */
static size_t utf8_chars(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    k += ((unsigned char)s[i] & 0xC0) != 0x80;
  return k;
}

/* Byte offset of the k-th character of s[0..n). */
static size_t utf8_offset(const char *s, size_t n, size_t k) {
  size_t i = 0;
  while (i < n && k) {
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
      i++;
    k--;
  }
  return i;
}

/* Appends the prompt and the visible part of the line being edited to out
 * (cap bytes: CHATC_PROMPT_OUT_MAX is enough) and puts the cursor where it
 * belongs. The line scrolls sideways when longer than the window. Both are
 * cleaned as any text is (sk_chat_sanitize): the nick and room come from
 * the server and are checked when they arrive, and the line holds what was
 * typed or pasted; no byte of either can be a terminal control. */
static size_t draw_prompt(const client_t *c, char *out, size_t cap) {
  char prompt[CHATC_PROMPT_MAX], safe[3 * CHATC_PROMPT_MAX], vis[3 * CHATC_INPUT_MAX];
  const char *room = c->nrooms ? c->rooms[c->nrooms - 1] : "-";
  int plen = c->fd < 0 ? snprintf(prompt, sizeof prompt, "(offline) %s> ", room)
                       : snprintf(prompt, sizeof prompt, "%s %s> ", c->nick[0] ? c->nick : "?", room);
  if (plen < 0)
    return 0;
  size_t pbytes = (size_t)plen < sizeof prompt ? (size_t)plen : sizeof prompt - 1;
  size_t slen = sk_chat_sanitize(prompt, pbytes, safe);
  size_t pcols = utf8_chars(safe, slen);
  size_t avail = (size_t)c->cols > pcols + 2 ? (size_t)c->cols - pcols - 1 : 1;
  size_t cur = utf8_chars(c->line, c->pos);
  size_t first = cur > avail ? cur - avail : 0;
  size_t b0 = utf8_offset(c->line, c->len, first);
  size_t b1 = b0 + utf8_offset(c->line + b0, c->len - b0, avail);
  /* b0 <= pos <= b1; pos starts a character, so cleaning the two halves
   * apart gives what cleaning the whole would, and the cursor's column. */
  size_t before = sk_chat_sanitize(c->line + b0, c->pos - b0, vis);
  size_t vlen = before + sk_chat_sanitize(c->line + c->pos, b1 - c->pos, vis + before);
  int n = snprintf(out, cap, "\r%s%.*s%s%.*s\x1b[K\r", c->color ? "\x1b[1m" : "", (int)slen, safe,
                   c->color ? "\x1b[0m" : "", (int)vlen, vis);
  if (n < 0 || (size_t)n >= cap)
    return 0;
  size_t len = (size_t)n;
  size_t col = pcols + utf8_chars(vis, before);
  if (col) {
    int m = snprintf(out + len, cap - len, "\x1b[%zuC", col);
    if (m > 0 && (size_t)m < cap - len)
      len += (size_t)m;
  }
  return len;
}

/* Draws the prompt line again (after a key, a resize or a state change). */
static void redraw(client_t *c) {
  char out[CHATC_PROMPT_OUT_MAX];
  size_t n = draw_prompt(c, out, sizeof out);
  write_all(STDOUT_FILENO, out, n);
}

/* Shows one line of text (already safe) above the prompt: in terminal mode
 * the prompt line is cleared, the text printed and the prompt redrawn with
 * the line being edited, all in one write. */
static void show(client_t *c, const char *text, size_t len) {
  if (!c->tty) {
    char nl = '\n';
    if (write_all(STDOUT_FILENO, text, len) < 0 || write_all(STDOUT_FILENO, &nl, 1) < 0)
      c->exit_code = EXIT_NET;
    return;
  }
  char out[CHATC_RENDER_MAX + CHATC_PROMPT_OUT_MAX + 8];
  size_t n = 0;
  memcpy(out, "\r\x1b[K", 4);
  n = 4;
  if (len > CHATC_RENDER_MAX)
    len = CHATC_RENDER_MAX;
  memcpy(out + n, text, len);
  n += len;
  out[n++] = '\n';
  n += draw_prompt(c, out + n, sizeof out - n);
  write_all(STDOUT_FILENO, out, n);
}

/* printf-style show() for the client's own notices ("* ..."). The whole
 * text is cleaned: an argument may quote what the server sent. */
__attribute__((format(printf, 2, 3))) static void note(client_t *c, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  char safe[3 * sizeof text];
  size_t len = sk_chat_sanitize(text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1, safe);
  show(c, safe, len);
}

/* ---- rendering server lines ----------------------------------------------------------------- */

/* A bounded output line under construction. */
typedef struct {
  char buf[CHATC_RENDER_MAX];
  size_t len;
} rline_t;

/* Appends text made safe for a terminal (never a raw ESC), cut at the end. */
static void put_text(rline_t *r, const char *s, size_t n) {
  /* Sanitizing may triple the bytes: cut what would not fit. */
  size_t room = (sizeof r->buf - r->len) / 3;
  if (n > room)
    n = room;
  r->len += sk_chat_sanitize(s, n, r->buf + r->len);
}

static void put_str(rline_t *r, const char *s) { put_text(r, s, strlen(s)); }

/* Appends a terminal control sequence: only our own constants. */
static void put_ctl(const client_t *c, rline_t *r, const char *seq) {
  size_t n = strlen(seq);
  if (c->color && r->len + n <= sizeof r->buf) {
    memcpy(r->buf + r->len, seq, n);
    r->len += n;
  }
}

/* A nick in its colour: one of 12 from a hash of its folded form, so the
 * same person keeps the same colour everywhere; '@server' in bold. */
static void put_nick(const client_t *c, rline_t *r, const char *s, size_t n) {
  static const char *const palette[] = {"\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[34m",
                                        "\x1b[35m", "\x1b[36m", "\x1b[91m", "\x1b[92m",
                                        "\x1b[93m", "\x1b[94m", "\x1b[95m", "\x1b[96m"};
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    h = (h ^ (ch >= 'A' && ch <= 'Z' ? ch + 32u : ch)) * 16777619u;
  }
  put_ctl(c, r, n && s[0] == '@' ? "\x1b[1m" : palette[h % (sizeof palette / sizeof *palette)]);
  put_text(r, s, n);
  put_ctl(c, r, "\x1b[0m");
}

/* 1 if the field s[0..n) is exactly word. */
static int field_is(const char *s, size_t n, const char *word) {
  return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* 1 if s[0..n) and name are the same nick or room without regard to
 * ASCII case (as the server compares them). */
static int same_name(const char *s, size_t n, const char *name) {
  if (strlen(name) != n || n > SK_CHAT_ROOM_MAX)
    return 0;
  char a[SK_CHAT_ROOM_MAX], b[SK_CHAT_ROOM_MAX];
  sk_chat_fold(s, n, a);
  sk_chat_fold(name, n, b);
  return memcmp(a, b, n) == 0;
}

/* Copies s[0..n) into dst (cap bytes), cut to fit, NUL-terminated. */
static void copy_name(char *dst, size_t cap, const char *s, size_t n) {
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, s, n);
  dst[n] = '\0';
}

/* The index of room s in our rooms, or -1. */
static int room_index(const client_t *c, const char *s, size_t n) {
  for (int i = 0; i < c->nrooms; i++)
    if (same_name(s, n, c->rooms[i]))
      return i;
  return -1;
}

/* Makes room s the current one (the last), adding it if new. */
static void room_enter(client_t *c, const char *s, size_t n) {
  int i = room_index(c, s, n);
  char name[SK_CHAT_ROOM_MAX + 1];
  copy_name(name, sizeof name, s, n);
  if (i >= 0) {
    memmove(c->rooms[i], c->rooms[i + 1], (size_t)(c->nrooms - i - 1) * sizeof c->rooms[0]);
    c->nrooms--;
  }
  if (c->nrooms == CHATC_ROOMS_MAX)
    return;
  memcpy(c->rooms[c->nrooms++], name, sizeof name);
}

/* Forgets room s (the one joined before it becomes current). */
static void room_leave(client_t *c, const char *s, size_t n) {
  int i = room_index(c, s, n);
  if (i < 0)
    return;
  memmove(c->rooms[i], c->rooms[i + 1], (size_t)(c->nrooms - i - 1) * sizeof c->rooms[0]);
  c->nrooms--;
}

/* Shows the look-alike marker among the words of a JOIN or NICK line's
 * marker text: "like:NICK" as " (looks like NICK)". Other words are for
 * later versions and are not shown. */
static void put_marks(const client_t *c, rline_t *r, const char *s, size_t n) {
  while (n) {
    const char *sp = memchr(s, ' ', n);
    size_t w = sp ? (size_t)(sp - s) : n;
    if (w > 5 && memcmp(s, "like:", 5) == 0 && sk_chat_nick_valid(s + 5, w - 5)) {
      put_str(r, " (looks like ");
      put_nick(c, r, s + 5, w - 5);
      put_str(r, ")");
    }
    s += w + (sp != NULL);
    n -= w + (sp != NULL);
  }
}

/* Renders one server line (without LF) for people into r, and keeps track
 * of our nick and rooms. Returns 0 when nothing is to be shown (a type this
 * client does not know, as the protocol asks, or a repeated rename). */
static int render(client_t *c, const char *line, size_t len, rline_t *r, int hist) {
  sk_chat_event_t ev;
  if (sk_chat_event_parse(line, len, &ev) < 1)
    return 0;
  const char *rest = ev.target; /* everything after TYPE (NOTICE, ERR, BYE) */
  size_t rest_len = ev.target_len ? len - (size_t)(ev.target - line) : 0;
  int is_room = ev.target_len && ev.target[0] == '#';
  int me = !hist && field_is(ev.sender, ev.sender_len, c->nick);
#define T(w) field_is(ev.type, ev.type_len, w)
  if (!T("NICK"))
    c->last_rename[0] = '\0';
  if (T("MSG") || T("ACT")) {
    if (is_room) {
      put_str(r, "[");
      put_text(r, ev.target, ev.target_len);
      put_str(r, "] ");
    } else if (ev.target_len == 1 && ev.target[0] == '*') {
      put_str(r, "[all] ");
    } else if (field_is(ev.target, ev.target_len, c->nick) || hist) {
      put_str(r, "[private] ");
    } else {
      put_str(r, "[private to ");
      put_nick(c, r, ev.target, ev.target_len);
      put_str(r, "] ");
    }
    if (T("ACT"))
      put_str(r, "* ");
    put_nick(c, r, ev.sender, ev.sender_len);
    put_str(r, T("ACT") ? " " : ": ");
    put_text(r, ev.text, ev.text_len);
  } else if (T("HELLO")) {
    /* HELLO 1 NICK #ROOM TEXT: the sender field is our nick; the text
     * starts with the room. */
    copy_name(c->nick, sizeof c->nick, ev.sender, ev.sender_len);
    const char *sp = memchr(ev.text, ' ', ev.text_len);
    size_t rl = sp ? (size_t)(sp - ev.text) : ev.text_len;
    copy_name(c->home, sizeof c->home, ev.text, rl);
    put_str(r, "* ");
    put_text(r, sp ? sp + 1 : "", sp ? ev.text_len - rl - 1 : 0);
  } else if (T("JOIN")) {
    if (me)
      room_enter(c, ev.target, ev.target_len);
    put_str(r, "* ");
    put_nick(c, r, ev.sender, ev.sender_len);
    put_str(r, " joined ");
    put_text(r, ev.target, ev.target_len);
    put_marks(c, r, ev.text, ev.text_len);
  } else if (T("PART") || T("QUIT")) {
    if (me && T("PART")) {
      room_leave(c, ev.target, ev.target_len);
      if (same_name(ev.target, ev.target_len, c->home))
        c->left_home = 1;
    }
    put_str(r, "* ");
    put_nick(c, r, ev.sender, ev.sender_len);
    put_str(r, T("PART") ? " left " : " quit ");
    put_text(r, ev.target, ev.target_len);
    if (ev.text_len) {
      put_str(r, " (");
      put_text(r, ev.text, ev.text_len);
      put_str(r, ")");
    }
  } else if (T("NICK")) {
    /* NICK #room OLD NEW [MARKS]: the new nick is the first word. */
    const char *marks = memchr(ev.text, ' ', ev.text_len);
    size_t marks_len = marks ? ev.text_len - (size_t)(marks - ev.text) : 0;
    ev.text_len -= marks_len;
    char pair[sizeof c->last_rename];
    int pl = snprintf(pair, sizeof pair, "%.*s %.*s", (int)ev.sender_len, ev.sender,
                      (int)ev.text_len, ev.text);
    if (pl > 0 && strcmp(pair, c->last_rename) == 0)
      return 0; /* the same rename, told once per shared room */
    memcpy(c->last_rename, pair, sizeof pair);
    if (me) {
      copy_name(c->nick, sizeof c->nick, ev.text, ev.text_len);
      copy_name(c->want_nick, sizeof c->want_nick, ev.text, ev.text_len);
    }
    put_str(r, "* ");
    put_nick(c, r, ev.sender, ev.sender_len);
    put_str(r, " is now ");
    put_nick(c, r, ev.text, ev.text_len);
    put_marks(c, r, marks, marks_len);
  } else if (T("HIST")) {
    /* HIST TIME LINE: the time, then the old line rendered as it was. */
    const char *t = ev.target;
    size_t tl = ev.target_len;
    if (tl == 20 && t[10] == 'T') { /* 2026-11-22T02:35:11Z: show the time of day */
      t += 11;
      tl = 9;
    }
    put_str(r, "[");
    put_text(r, t, tl);
    put_str(r, "] ");
    const char *inner = ev.sender;
    size_t inner_len = len - (size_t)(ev.sender - line);
    if (!ev.sender_len || !render(c, inner, inner_len, r, 1))
      return 0;
  } else if (T("WHO")) {
    put_str(r, "* in ");
    put_text(r, ev.target, ev.target_len);
    put_str(r, " (");
    put_text(r, ev.sender, ev.sender_len);
    put_str(r, "): ");
    put_text(r, ev.text, ev.text_len);
  } else if (T("ROOM")) {
    put_str(r, "* room ");
    put_text(r, ev.target, ev.target_len);
    put_str(r, " (");
    put_text(r, ev.sender, ev.sender_len);
    put_str(r, ")");
  } else if (T("NOTICE")) {
    put_str(r, "- ");
    put_text(r, rest, rest_len);
  } else if (T("ERR")) {
    put_ctl(c, r, "\x1b[1;31m");
    put_str(r, "! ");
    const char *sp = rest_len ? memchr(rest, ' ', rest_len) : NULL;
    if (sp) {
      put_text(r, sp + 1, rest_len - (size_t)(sp + 1 - rest));
      put_str(r, " (");
      put_text(r, rest, (size_t)(sp - rest));
      put_str(r, ")");
    } else {
      put_text(r, rest, rest_len);
    }
    put_ctl(c, r, "\x1b[0m");
  } else if (T("BYE")) {
    if (rest_len >= 6 && memcmp(rest, "kicked", 6) == 0)
      c->kicked = 1;
    put_str(r, "* the server says goodbye: ");
    put_text(r, rest, rest_len);
  } else {
    return 0;
  }
#undef T
  return 1;
}

/* ---- the connection ---------------------------------------------------------------------------- */

static void start_reconnect(client_t *c);
static int on_sock_lines(client_t *c);
static void set_stdin(client_t *c);
static void plain_drain(client_t *c);

/* Writes queued bytes once, through TLS if the connection has it. Same
 * results as sk_buf_write_fd. */
static ssize_t sock_write(client_t *c) {
  if (!c->tls)
    return sk_buf_write_fd(&c->sock_out, c->fd, 1);
  if (!sk_buf_len(&c->sock_out))
    return 0;
  unsigned want = 0;
  ssize_t n = sk_tls_write(c->tls, sk_buf_head(&c->sock_out), sk_buf_len(&c->sock_out), &want);
  c->wwant = n == SK_EAGAIN ? want : 0;
  if (n > 0)
    sk_buf_consume(&c->sock_out, (size_t)n);
  return n;
}

/* Reads once into sock_in, through TLS if the connection has it. Same
 * results as sk_buf_read_fd. */
static ssize_t sock_read(client_t *c) {
  if (!c->tls)
    return sk_buf_read_fd(&c->sock_in, c->fd, 0);
  size_t got;
  char *p = sk_buf_reserve(&c->sock_in, CHATC_SOCK_IN_MAX, &got);
  if (!p)
    return SK_ETOOBIG;
  unsigned want = 0;
  ssize_t n = sk_tls_read(c->tls, p, got, &want);
  c->rwant = n == SK_EAGAIN ? want : 0;
  if (n > 0)
    sk_buf_commit(&c->sock_in, (size_t)n);
  return n;
}

/* Watches the socket for input always, for output while some is queued
 * (with TLS, for whatever each waits for). */
static void sock_watch(client_t *c) {
  unsigned ev = c->rwant ? c->rwant : SK_READABLE;
  if (sk_buf_len(&c->sock_out))
    ev |= c->wwant ? c->wwant : SK_WRITABLE;
  sk_io_set(c->loop, &c->sock_io, ev);
}

/* Queues bytes for the server; the socket is watched for writability only
 * while something is queued. Returns 0, or -1 when not connected or the
 * queue is full. */
static int sock_send(client_t *c, const char *p, size_t n) {
  if (c->fd < 0 || sk_buf_append(&c->sock_out, p, n) != 0)
    return -1;
  ssize_t w = sock_write(c);
  (void)w; /* errors show up as a hang-up on the next read */
  sock_watch(c);
  return 0;
}

/* Queues s[0..n) and an LF for the server (cut at CHATC_INPUT_MAX).
 * Returns 0, or -1 when offline or the queue is full. */
static int send_line(client_t *c, const char *s, size_t n) {
  char out[SK_CHAT_LINE_MAX];
  if (n > CHATC_INPUT_MAX)
    n = CHATC_INPUT_MAX;
  memcpy(out, s, n);
  out[n] = '\n';
  return sock_send(c, out, n + 1);
}

/* Closes the connection and frees its buffers; rooms and nick wishes stay
 * for the reconnect. Safe when already closed. */
static void drop_connection(client_t *c) {
  if (c->fd < 0)
    return;
  sk_io_stop(c->loop, &c->sock_io);
  sk_tls_free(c->tls);
  c->tls = NULL;
  c->rwant = c->wwant = 0;
  close(c->fd);
  c->fd = -1;
  sk_buf_free(&c->sock_in);
  sk_buf_free(&c->sock_out);
  sk_chat_reader_init(&c->sock_reader, SK_CHAT_OUT_LINE_MAX);
  c->nick[0] = '\0';
  c->greeted = 0;
}

/* After HELLO on a reconnect: the nick and rooms the user had. */
static void restore_session(client_t *c, const char (*rooms)[SK_CHAT_ROOM_MAX + 1], int nrooms,
                            int left_home) {
  char cmd[64];
  if (c->want_nick[0] && strcmp(c->want_nick, c->nick) != 0) {
    int n = snprintf(cmd, sizeof cmd, "/nick %s", c->want_nick);
    send_line(c, cmd, (size_t)n);
  }
  for (int i = 0; i < nrooms; i++)
    if (!same_name(rooms[i], strlen(rooms[i]), c->home) || i == nrooms - 1) {
      int n = snprintf(cmd, sizeof cmd, "/join %s", rooms[i]);
      send_line(c, cmd, (size_t)n);
    }
  if (left_home) {
    int n = snprintf(cmd, sizeof cmd, "/part %s", c->home);
    send_line(c, cmd, (size_t)n);
  }
}

/* ---- what a server line may name ------------------------------------------------------------ */

/* The server's nicks and rooms follow the grammar the server enforces
 * (sk_chat_nick_valid, sk_chat_room_valid): ASCII only. A line that breaks
 * it comes from a server that is not ours, or from someone on a plain-TCP
 * path; its names would go into the prompt, our state and the /nick and
 * /join of a reconnect, so the whole line is dropped with a note. */

/* 1 if s[0..n) is one or more digits. */
static int digits_ok(const char *s, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

/* 1 if s[0..n) is nicks separated by single spaces (none at all is fine). */
static int nick_list_ok(const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    const char *sp = memchr(s + i, ' ', n - i);
    size_t w = sp ? (size_t)(sp - (s + i)) : n - i;
    if (!sk_chat_nick_valid(s + i, w) || (sp && w + 1 == n - i))
      return 0;
    i += w + 1;
  }
  return 1;
}

/* 1 if the server line line[0..len) (without LF) parses as an event and
 * every nick and room in it is valid: what TARGET and SENDER may be per
 * type is in docs/chat.md. HIST carries a MSG or ACT line, checked the
 * same way. Types this client does not know pass (they are not shown), as
 * do the free texts of NOTICE, ERR and BYE (shown cleaned). */
static int event_names_ok(const char *line, size_t len, int in_hist) {
  sk_chat_event_t ev;
  int k = sk_chat_event_parse(line, len, &ev);
  if (k < 1)
    return 0;
  int room = sk_chat_room_valid(ev.target, ev.target_len);
  int everyone = field_is(ev.target, ev.target_len, "*");
  int nick = sk_chat_nick_valid(ev.sender, ev.sender_len);
  int count = digits_ok(ev.sender, ev.sender_len);
#define T(w) field_is(ev.type, ev.type_len, w)
  if (in_hist && !T("MSG") && !T("ACT"))
    return 0;
  if (T("MSG") || T("ACT")) /* TYPE #room|*|NICK NICK|@server TEXT */
    return k >= 3 && (room || everyone || sk_chat_nick_valid(ev.target, ev.target_len)) &&
           (nick || field_is(ev.sender, ev.sender_len, "@server"));
  if (T("HELLO")) { /* HELLO 1 NICK #ROOM TEXT */
    const char *sp = memchr(ev.text, ' ', ev.text_len);
    return k == 4 && nick &&
           sk_chat_room_valid(ev.text, sp ? (size_t)(sp - ev.text) : ev.text_len);
  }
  if (T("JOIN") || T("PART") || T("QUIT")) /* TYPE #room NICK [REASON] */
    return k >= 3 && room && nick;
  if (T("NICK")) { /* NICK #room OLD NEW [like:NICK], NICK * OLD NEW */
    const char *sp = memchr(ev.text, ' ', ev.text_len);
    size_t first = sp ? (size_t)(sp - ev.text) : ev.text_len;
    int mark_ok = !sp || (ev.text_len - first > 6 && memcmp(sp + 1, "like:", 5) == 0 &&
                          sk_chat_nick_valid(sp + 6, ev.text_len - first - 6));
    return k == 4 && (room || everyone) && nick && sk_chat_nick_valid(ev.text, first) &&
           mark_ok;
  }
  if (T("HIST")) /* HIST TIME LINE */
    return k >= 3 && event_names_ok(ev.sender, len - (size_t)(ev.sender - line), 1);
  if (T("WHO")) /* WHO #room COUNT NICK... */
    return k >= 3 && room && count && nick_list_ok(ev.text, ev.text_len);
  if (T("ROOM")) /* ROOM #room COUNT */
    return k == 3 && room && count;
#undef T
  return 1;
}

/* Tells the user a server line was dropped, quoting its start cleaned. */
static void bad_line(client_t *c, const char *line, size_t len) {
  sk_chat_event_t ev;
  int parsed = sk_chat_event_parse(line, len, &ev) >= 1;
  note(c, "! dropped a line from the server with %s: %.*s",
       parsed ? "a bad nick or room" : "control characters or empty fields",
       (int)(len < CHATC_BAD_LINE_SHOWN ? len : CHATC_BAD_LINE_SHOWN), line);
}

/* One line from the server: shown, and on HELLO (a new connection) the
 * backoff is reset and the nick and rooms of before are asked for again. */
static void on_line(client_t *c, const char *line, size_t len) {
  if (!event_names_ok(line, len, 0)) {
    bad_line(c, line, len);
    return;
  }
  int hello = len > 6 && memcmp(line, "HELLO ", 6) == 0;
  char rooms[CHATC_ROOMS_MAX][SK_CHAT_ROOM_MAX + 1];
  int nrooms = c->nrooms, left_home = c->left_home;
  if (hello) { /* the server tells us our rooms afresh */
    memcpy(rooms, c->rooms, sizeof rooms);
    c->nrooms = 0;
    c->left_home = 0;
  }
  static rline_t r;
  r.len = 0;
  if (render(c, line, len, &r, 0))
    show(c, r.buf, r.len);
  if (hello) {
    c->greeted = 1;
    if (c->ever_connected)
      note(c, "* reconnected to %s", c->name);
    c->ever_connected = 1;
    c->backoff_ms = CHATC_BACKOFF_MIN_MS;
    restore_session(c, (const char(*)[SK_CHAT_ROOM_MAX + 1])rooms, nrooms, left_home);
    if (!c->tty)
      plain_drain(c);
  }
}

/* The server closed or failed: the end after /quit or a kick, otherwise
 * the reconnect schedule. */
static void on_lost(client_t *c, ssize_t why) {
  drop_connection(c);
  if (c->quitting || c->kicked) {
    c->exit_code = c->kicked ? EXIT_NET : c->exit_code;
    sk_loop_stop(c->loop);
    return;
  }
  if (why != SK_EOF)
    note(c, "* connection to %s lost: %s", c->name, sk_strerror((int)why));
  start_reconnect(c);
}

/* The socket: writes what is queued, reads and handles whole lines (an
 * over-long one is dropped with a note), notices the end. With TLS either
 * readiness may be what a read or a write waits for, so both are tried,
 * and decrypted bytes the session still holds are read without waiting
 * for the socket (it would not say so). */
static void on_sock(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  client_t *c = io->data;
  int tls = c->tls != NULL;
  (void)loop;
  if (tls ? sk_buf_len(&c->sock_out) > 0 : (events & SK_WRITABLE) != 0) {
    ssize_t w = sock_write(c);
    if (w < 0 && w != SK_EAGAIN) {
      on_lost(c, w);
      return;
    }
    if (!tls && !sk_buf_len(&c->sock_out))
      sk_io_set(c->loop, io, SK_READABLE);
  }
  if (!tls && !(events & (SK_READABLE | SK_HANGUP)))
    return;
  do {
    ssize_t n = sock_read(c);
    if (n == SK_EAGAIN)
      break;
    if (n < 0 && n != SK_ETOOBIG) {
      on_lost(c, n);
      return;
    }
    if (on_sock_lines(c) < 0)
      return;
  } while (tls && sk_tls_pending(c->tls));
  if (tls)
    sock_watch(c);
}

/* Handles the whole lines in sock_in. Returns 0, or -1 once the
 * connection is gone. */
static int on_sock_lines(client_t *c) {
  for (;;) {
    size_t used;
    const char *line;
    size_t line_len;
    int k = sk_chat_read_line(&c->sock_reader, sk_buf_head(&c->sock_in), sk_buf_len(&c->sock_in),
                              &used, &line, &line_len);
    if (k == SK_CHAT_LINE)
      on_line(c, line, line_len);
    else if (k == SK_CHAT_TOO_LONG)
      note(c, "! a line from the server over %d bytes was dropped", SK_CHAT_OUT_LINE_MAX);
    if (c->fd < 0)
      return -1;
    sk_buf_consume(&c->sock_in, used);
    if (k == SK_CHAT_NEED_MORE)
      return 0;
  }
}

/* ---- connecting, without blocking the loop ------------------------------------------------ */

static void attempt_next(client_t *c);

/* Gives up the attempt under way, if any: its socket, session, handshake
 * and deadline. */
static void attempt_abandon(client_t *c) {
  sk_net_addresses_cancel(c->res);
  c->res = NULL;
  sk_timer_stop(c->loop, &c->conn_timer);
  if (c->hs) {
    sk_tls_handshake_cancel(c->hs);
    c->hs = NULL;
  }
  sk_tls_free(c->pend_tls);
  c->pend_tls = NULL;
  if (c->pend_fd >= 0) {
    sk_io_stop(c->loop, &c->sock_io);
    close(c->pend_fd);
    c->pend_fd = -1;
  }
}

/* The attempt failed with err: before any connection that ends the client
 * (exit 1 with err), later the next try comes after twice the wait (at
 * most CHATC_BACKOFF_MAX_MS). */
static void attempt_failed(client_t *c, const char *err) {
  attempt_abandon(c);
  if (c->first_attempt) {
    snprintf(c->fatal, sizeof c->fatal, "%s", err);
    c->exit_code = EXIT_NET;
    sk_loop_stop(c->loop);
    return;
  }
  c->backoff_ms = c->backoff_ms * 2 > CHATC_BACKOFF_MAX_MS ? CHATC_BACKOFF_MAX_MS : c->backoff_ms * 2;
  note(c, "* %s; retrying in %gs", err, (double)c->backoff_ms / 1000.0);
  sk_timer_start(c->loop, &c->timer, c->backoff_ms, 0);
}

/* The attempt succeeded: its socket (and session) become the connection. */
static void attempt_done(client_t *c) {
  c->fd = c->pend_fd;
  c->tls = c->pend_tls;
  c->pend_fd = -1;
  c->pend_tls = NULL;
  c->rwant = c->wwant = 0;
  c->first_attempt = 0;
  sk_buf_init(&c->sock_in, CHATC_SOCK_IN_MAX);
  sk_buf_init(&c->sock_out, CHATC_SOCK_OUT_MAX);
  sk_chat_reader_init(&c->sock_reader, SK_CHAT_OUT_LINE_MAX);
  c->sock_io.cb = on_sock;
  c->sock_io.data = c;
  if (sk_io_start(c->loop, &c->sock_io, c->fd, SK_READABLE) < 0) {
    on_lost(c, -ENOMEM); /* cannot watch it: treated as a lost connection */
    return;
  }
  if (!c->tty)
    plain_drain(c); /* input may have ended during the attempt */
  set_stdin(c);
}

/* The TLS handshake of the attempt ended. */
static void attempt_tls_done(void *data, int err, const char *msg) {
  client_t *c = data;
  c->hs = NULL;
  if (err == 0) {
    attempt_done(c);
    return;
  }
  char why[SK_ERRLEN];
  snprintf(why, sizeof why, "tls %.60s: %.180s", c->name, msg);
  attempt_failed(c, why);
}

/* The socket being connected became writable: connected (then the TLS
 * handshake, for a tls:// server), or refused (the next address). */
static void on_connect_ready(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  client_t *c = io->data;
  (void)events;
  int r = sk_net_connect_finish(c->pend_fd);
  sk_timer_stop(loop, &c->conn_timer);
  sk_io_stop(loop, &c->sock_io);
  if (r < 0) {
    c->last_err = r;
    close(c->pend_fd);
    c->pend_fd = -1;
    attempt_next(c);
    return;
  }
  if (!c->tls_ctx) {
    attempt_done(c);
    return;
  }
  uint64_t ms = c->tlsopt.handshake_ms ? c->tlsopt.handshake_ms : CHATC_CONNECT_TIMEOUT_MS;
  if (sk_tls_new(&c->pend_tls, c->tls_ctx, c->pend_fd, c->ep.host) < 0 ||
      !(c->hs = sk_tls_handshake_async(loop, c->pend_tls, c->pend_fd, ms, attempt_tls_done, c))) {
    char why[SK_ERRLEN];
    snprintf(why, sizeof why, "tls %.60s: out of memory", c->name);
    attempt_failed(c, why);
  }
}

/* No answer from this address in time: the next one. */
static void on_connect_timeout(sk_loop_t *loop, sk_timer_t *t) {
  client_t *c = t->data;
  (void)loop;
  c->last_err = -ETIMEDOUT;
  attempt_abandon(c);
  attempt_next(c);
}

/* Connects to the next address of the attempt; when none is left the
 * attempt failed with the last address's error. */
static void attempt_next(client_t *c) {
  sk_sockopts_t so;
  memset(&so, 0, sizeof so);
  so.nodelay = 1;
  while (c->addr_i < c->naddrs) {
    int fd = sk_net_connect_start(&c->addrs[c->addr_i++], SOCK_STREAM, &so);
    if (fd < 0) {
      c->last_err = fd;
      continue;
    }
    c->pend_fd = fd;
    c->sock_io.cb = on_connect_ready;
    c->sock_io.data = c;
    if (sk_io_start(c->loop, &c->sock_io, fd, SK_WRITABLE) < 0) {
      c->last_err = -ENOMEM;
      close(fd);
      c->pend_fd = -1;
      continue;
    }
    sk_timer_start(c->loop, &c->conn_timer, CHATC_CONNECT_TIMEOUT_MS, 0);
    return;
  }
  char why[SK_ERRLEN];
  snprintf(why, sizeof why, "connect %.180s: %s", c->name, sk_strerror(c->last_err));
  attempt_failed(c, why);
}

/* The server's addresses are known (or not): connect to each in turn. */
static void attempt_resolved(void *data, int n, const sk_sockaddr_t *addrs, const char *err) {
  client_t *c = data;
  c->res = NULL;
  if (n < 0) {
    attempt_failed(c, err);
    return;
  }
  memcpy(c->addrs, addrs, (size_t)n * sizeof *addrs);
  c->naddrs = n;
  c->addr_i = 0;
  c->last_err = -EHOSTUNREACH;
  attempt_next(c);
}

/* Starts a connection attempt: the server's name looked up on a helper
 * thread (an unanswering DNS server holds getaddrinfo for many seconds),
 * then each address tried in turn, each connect bounded by
 * CHATC_CONNECT_TIMEOUT_MS, then for a tls:// server the handshake
 * bounded by --tls-timeout (else the same). */
static void attempt_start(client_t *c) {
  c->res = sk_net_addresses_async(c->loop, &c->ep, attempt_resolved, c);
  if (!c->res) {
    char why[SK_ERRLEN];
    snprintf(why, sizeof why, "resolve %.180s: no memory or thread for the lookup", c->name);
    attempt_failed(c, why);
  }
}

/* The timer: after /quit, the end of the wait; else a reconnect try. */
static void on_timer(sk_loop_t *loop, sk_timer_t *t) {
  client_t *c = t->data;
  if (c->quitting) { /* the server did not close after /quit in time */
    sk_loop_stop(loop);
    return;
  }
  attempt_start(c);
}

/* Tells the user and arms the first reconnect try. */
static void start_reconnect(client_t *c) {
  if (!c->tty && c->in_eof) {
    plain_drain(c); /* input over and nothing waiting: the end, not a reconnect */
    if (c->quitting)
      return;
  }
  set_stdin(c);
  note(c, "* disconnected, reconnecting in %gs", (double)c->backoff_ms / 1000.0);
  sk_timer_start(c->loop, &c->timer, c->backoff_ms, 0);
}

/* Sends /quit (with an optional reason already in the line) and waits a
 * bounded time for the server to close. */
static void quit(client_t *c, const char *line, size_t len) {
  c->quitting = 1;
  if (c->fd < 0 || send_line(c, line, len) < 0) {
    sk_loop_stop(c->loop);
    return;
  }
  sk_timer_start(c->loop, &c->timer, CHATC_QUIT_WAIT_MS, 0);
  set_stdin(c);
}

/* A line the user typed or piped: sent as it is; /quit ends the client,
 * and /join of a room we are in makes it current here too. */
static void user_line(client_t *c, const char *s, size_t n) {
  sk_chat_cmd_t cmd;
  sk_chat_parse_command(s, n, &cmd);
  if (cmd.id == SK_CHAT_CMD_QUIT) {
    quit(c, s, n);
    return;
  }
  if (cmd.id == SK_CHAT_CMD_EMPTY)
    return;
  if (send_line(c, s, n) < 0) {
    note(c, c->fd < 0 ? "! not connected: the line was not sent"
                      : "! the send queue is full: the line was not sent");
    return;
  }
  if (cmd.id == SK_CHAT_CMD_JOIN && cmd.arg_len) {
    char room[SK_CHAT_ROOM_MAX + 1];
    int k = snprintf(room, sizeof room, "%s%.*s", cmd.arg[0] == '#' ? "" : "#", (int)cmd.arg_len,
                     cmd.arg);
    if (k > 0 && (size_t)k < sizeof room && room_index(c, room, (size_t)k) >= 0)
      room_enter(c, room, (size_t)k);
  }
  if (c->tty)
    redraw(c);
}

/* ---- the line editor ----------------------------------------------------------------------- */

/* Keeps a sent line (copied) for up/down, not twice in a row; the oldest
 * goes beyond CHATC_HISTORY_MAX. */
static void history_add(client_t *c, const char *s, size_t n) {
  if (n == 0 || (c->nhistory && strlen(c->history[c->nhistory - 1]) == n &&
                 memcmp(c->history[c->nhistory - 1], s, n) == 0))
    return;
  char *copy = malloc(n + 1);
  if (!copy)
    return;
  memcpy(copy, s, n);
  copy[n] = '\0';
  if (c->nhistory == CHATC_HISTORY_MAX) {
    free(c->history[0]);
    memmove(c->history, c->history + 1, (CHATC_HISTORY_MAX - 1) * sizeof *c->history);
    c->nhistory--;
  }
  c->history[c->nhistory++] = copy;
}

/* Replaces the line being edited; the cursor goes to its end. */
static void set_line(client_t *c, const char *s) {
  size_t n = strlen(s);
  memcpy(c->line, s, n);
  c->len = c->pos = n;
}

/* Up (-1) or down (+1) in the history; below the newest is the line that
 * was being typed, kept while browsing. */
static void history_move(client_t *c, int dir) {
  int to = c->hist_pos + dir;
  if (to < 0 || to > c->nhistory)
    return;
  if (c->hist_pos == c->nhistory) {
    memcpy(c->saved, c->line, c->len);
    c->saved[c->len] = '\0';
  }
  c->hist_pos = to;
  set_line(c, to == c->nhistory ? c->saved : c->history[to]);
}

/* The start of the UTF-8 character before byte i of the line. */
static size_t prev_char(const client_t *c, size_t i) {
  while (i > 0 && ((unsigned char)c->line[--i] & 0xC0) == 0x80)
    ;
  return i;
}

/* The start of the UTF-8 character after the one at byte i. */
static size_t next_char(const client_t *c, size_t i) {
  if (i < c->len)
    i++;
  while (i < c->len && ((unsigned char)c->line[i] & 0xC0) == 0x80)
    i++;
  return i;
}

/* Deletes bytes [from, to) of the line, keeping the cursor on the text. */
static void delete_range(client_t *c, size_t from, size_t to) {
  memmove(c->line + from, c->line + to, c->len - to);
  c->len -= to - from;
  if (c->pos > to)
    c->pos -= to - from;
  else if (c->pos > from)
    c->pos = from;
}

/* Enter: the line goes to history and to the server, and stays on
 * screen; the prompt is empty again. */
static void enter(client_t *c) {
  char copy[CHATC_INPUT_MAX + 1];
  size_t n = c->len;
  memcpy(copy, c->line, n);
  c->len = c->pos = 0;
  history_add(c, copy, n);
  c->hist_pos = c->nhistory;
  /* What was typed stays on screen above the new prompt: a message as the
   * others will see it, a command as typed. */
  sk_chat_cmd_t cmd;
  sk_chat_parse_command(copy, n, &cmd);
  static rline_t r;
  r.len = 0;
  if (cmd.id == SK_CHAT_CMD_SAY && c->fd >= 0 && c->nrooms) {
    put_str(&r, "[");
    put_str(&r, c->rooms[c->nrooms - 1]);
    put_str(&r, "] ");
    put_nick(c, &r, c->nick, strlen(c->nick));
    put_str(&r, ": ");
    put_text(&r, cmd.args, cmd.args_len);
  } else if (cmd.id != SK_CHAT_CMD_EMPTY) {
    put_ctl(c, &r, "\x1b[2m");
    put_str(&r, "> ");
    put_text(&r, copy, n);
    put_ctl(c, &r, "\x1b[0m");
  }
  if (r.len)
    show(c, r.buf, r.len);
  user_line(c, copy, n);
}

/* One key sequence that starts with ESC: arrows, Home/End, Delete. */
static void escape_key(client_t *c, char final, int num) {
  switch (final) {
  case 'A': history_move(c, -1); break;
  case 'B': history_move(c, +1); break;
  case 'C': c->pos = next_char(c, c->pos); break;
  case 'D': c->pos = prev_char(c, c->pos); break;
  case 'H': c->pos = 0; break;
  case 'F': c->pos = c->len; break;
  case '~':
    if (num == 1 || num == 7)
      c->pos = 0;
    else if (num == 4 || num == 8)
      c->pos = c->len;
    else if (num == 3 && c->pos < c->len)
      delete_range(c, c->pos, next_char(c, c->pos));
    break;
  default: break;
  }
}

/* Feeds one byte of an escape sequence; returns 1 while more is needed. */
static int escape_byte(client_t *c, char ch) {
  c->esc[c->esc_len++] = ch;
  if (c->esc_len == 2)
    return ch == '[' || ch == 'O' ? 1 : (c->esc_len = 0, 0); /* Alt-key: dropped */
  if (ch >= 0x40 && ch <= 0x7e) {
    int num = 0;
    if (c->esc[1] == '[' && c->esc_len > 3) { /* ESC [ NUMBER ~ */
      c->esc[c->esc_len - 1] = '\0';
      num = atoi(c->esc + 2);
    }
    escape_key(c, ch, num);
    c->esc_len = 0;
    return 0;
  }
  if (c->esc_len == CHATC_ESC_MAX) /* not a sequence we know */
    c->esc_len = 0;
  return c->esc_len != 0;
}

/* One byte typed. Returns -1 when the user asked to quit. */
static int key(client_t *c, unsigned char ch) {
  if (c->esc_len)
    return escape_byte(c, (char)ch), 0;
  if (ch == '\t')
    ch = ' ';
  switch (ch) {
  case 27: c->esc[0] = 27, c->esc_len = 1; return 0;
  case '\r':
  case '\n': enter(c); return 0;
  case 1: c->pos = 0; break;                       /* ctrl-A */
  case 2: c->pos = prev_char(c, c->pos); break;    /* ctrl-B */
  case 5: c->pos = c->len; break;                  /* ctrl-E */
  case 6: c->pos = next_char(c, c->pos); break;    /* ctrl-F */
  case 4:                                          /* ctrl-D */
    if (c->len == 0)
      return -1;
    if (c->pos < c->len)
      delete_range(c, c->pos, next_char(c, c->pos));
    break;
  case 8:
  case 127:
    if (c->pos)
      delete_range(c, prev_char(c, c->pos), c->pos);
    break;
  case 11: c->len = c->pos; break;                 /* ctrl-K */
  case 21: delete_range(c, 0, c->pos); break;      /* ctrl-U */
  case 23: {                                       /* ctrl-W: the word before the cursor */
    size_t i = c->pos;
    while (i && c->line[i - 1] == ' ')
      i--;
    while (i && c->line[i - 1] != ' ')
      i--;
    delete_range(c, i, c->pos);
    break;
  }
  case 12: write_all(STDOUT_FILENO, "\x1b[H\x1b[2J", 7); break; /* ctrl-L */
  case 14: history_move(c, +1); break;             /* ctrl-N */
  case 16: history_move(c, -1); break;             /* ctrl-P */
  default:
    if (ch < 32 || c->len == CHATC_INPUT_MAX)
      return 0;
    memmove(c->line + c->pos + 1, c->line + c->pos, c->len - c->pos);
    c->line[c->pos++] = (char)ch;
    c->len++;
    break;
  }
  return 0;
}

/* ---- standard input ----------------------------------------------------------------------------- */

/* Standard input is read always on a terminal; piped, once the server said
 * HELLO (so our /nick and /joins go first), and before that until a whole
 * line waits to be sent (the rest stays in the pipe until the connection
 * is back); never after /quit or its end. */
static void set_stdin(client_t *c) {
  if (c->in_eof || !sk_io_active(&c->in_io))
    return;
  int waiting = sk_buf_len(&c->std_in) &&
                memchr(sk_buf_head(&c->std_in), '\n', sk_buf_len(&c->std_in)) != NULL;
  int want = !c->quitting && (c->tty || c->greeted || (!waiting && sk_buf_space(&c->std_in)));
  sk_io_set(c->loop, &c->in_io, want ? SK_READABLE : 0);
}

/* Plain mode: sends the whole lines read from standard input once greeted;
 * at its end, the last partial line and /quit (offline with lines still
 * waiting: once the connection is back; offline with none: exits; before
 * the first connection: once it is made). */
static void plain_drain(client_t *c) {
  while (c->greeted && !c->quitting) {
    size_t used;
    const char *line;
    size_t len;
    int k = sk_chat_read_line(&c->in_reader, sk_buf_head(&c->std_in), sk_buf_len(&c->std_in),
                              &used, &line, &len);
    if (k == SK_CHAT_LINE)
      user_line(c, line, len);
    else if (k == SK_CHAT_TOO_LONG)
      cli_error("chat: an input line over %d bytes was not sent", CHATC_INPUT_MAX);
    sk_buf_consume(&c->std_in, used);
    if (k == SK_CHAT_NEED_MORE)
      break;
  }
  if (c->in_eof && !c->quitting && !c->first_attempt &&
      (c->greeted || !sk_buf_len(&c->std_in))) {
    if (c->greeted && sk_buf_len(&c->std_in)) /* a last line without LF */
      user_line(c, sk_buf_head(&c->std_in), sk_buf_len(&c->std_in));
    sk_buf_consume(&c->std_in, sk_buf_len(&c->std_in));
    if (!c->quitting)
      quit(c, "/quit", 5);
  }
  set_stdin(c);
}

/* Standard input: keys for the editor on a terminal (EOF or ctrl-D: quit),
 * else bytes for plain_drain. One read per wakeup: never blocks. */
static void on_stdin(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  client_t *c = io->data;
  (void)events;
  if (c->tty) {
    char keys[256];
    ssize_t n = read(STDIN_FILENO, keys, sizeof keys);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      return;
    int stop = n <= 0;
    for (ssize_t i = 0; i < n && !stop && !c->quitting; i++)
      stop = key(c, (unsigned char)keys[i]) < 0;
    if (stop && !c->quitting) {
      c->in_eof = n <= 0;
      if (c->in_eof)
        sk_io_stop(loop, io);
      quit(c, "/quit", 5);
    }
    if (!c->quitting)
      redraw(c);
    return;
  }
  ssize_t n = sk_buf_read_fd(&c->std_in, STDIN_FILENO, 0);
  if (n == SK_EAGAIN)
    return;
  if (n < 0 && n != SK_ETOOBIG) {
    if (n != SK_EOF)
      cli_error("chat: read standard input: %s", sk_strerror((int)n));
    c->in_eof = 1;
    sk_io_stop(loop, io);
  }
  plain_drain(c);
}

/* ---- signals ------------------------------------------------------------------------------------ */

/* SIGINT, SIGTERM: /quit and the bounded wait; a second one (or offline)
 * ends at once. The terminal is restored on the way out. */
static void on_stop_signal(sk_loop_t *loop, int signo, void *data) {
  client_t *c = data;
  (void)signo;
  if (c->quitting || c->fd < 0) {
    sk_loop_stop(loop);
    return;
  }
  quit(c, "/quit", 5);
}

/* The window was resized: the prompt line is laid out again. */
static void on_winch(sk_loop_t *loop, int signo, void *data) {
  client_t *c = data;
  (void)loop, (void)signo;
  tty_width(c);
  redraw(c);
}

/* Back from ctrl-Z: the shell may have put the terminal back to cooked. */
static void on_cont(sk_loop_t *loop, int signo, void *data) {
  client_t *c = data;
  (void)loop, (void)signo;
  c->raw = 0;
  if (tty_raw(c) == 0)
    redraw(c);
}

/* ---- the command ----------------------------------------------------------------------------------- */

/* Parses the options, connects (a failure is exit 1), and runs the loop
 * until /quit, end of input, a signal or a kick. */
int cli_chat_client(int argc, char **argv) {
  enum { OPT_NICK = 256 };
  static const struct option longopts[] = {{"nick", required_argument, 0, OPT_NICK},
                                           CLI_TLS_LONGOPTS,
                                           {0, 0, 0, 0}};
  static client_t cl;
  client_t *c = &cl;
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->pend_fd = -1;
  c->first_attempt = 1;
  const char *endpoint = NULL;
  int opt;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "-", longopts, NULL)) != -1) {
    switch (opt) {
    case 1:
      if (endpoint)
        return cli_usage_error("chat", "expected one ENDPOINT, got '%s' too", optarg);
      endpoint = optarg;
      break;
    case OPT_NICK:
      if (!sk_chat_nick_valid(optarg, strlen(optarg)))
        return cli_usage_error("chat", "bad --nick '%s': 1 to %d of A-Z a-z 0-9 _ - [ ] { } ^ ` |, "
                                       "not starting with a digit or '-'",
                               optarg, SK_CHAT_NICK_MAX);
      snprintf(c->want_nick, sizeof c->want_nick, "%s", optarg);
      break;
    default:
      if (opt >= CLI_TLS_CA && opt <= CLI_TLS_TIMEOUT) {
        if (cli_tls_option(&c->tlsopt, opt, optarg, "chat") < 0)
          return EXIT_USAGE;
        break;
      }
      return cli_usage_error("chat", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (!endpoint)
    return cli_usage_error("chat", "missing ENDPOINT");
  char err[SK_ERRLEN];
  if (sk_endpoint_parse(&c->ep, endpoint, SK_EP_CONNECT, err, sizeof err) < 0)
    return cli_usage_error("chat", "%s", err);
  if (c->ep.kind != SK_EP_TCP && c->ep.kind != SK_EP_UNIX)
    return cli_usage_error("chat", "'%s': the chat client needs a tcp:// or unix: endpoint",
                           endpoint);
  if (c->tlsopt.any && !(c->ep.flags & SK_EP_TLS))
    return cli_usage_error("chat", "TLS options need a tls:// endpoint");
  if (c->tlsopt.cfg.self_signed || c->tlsopt.cfg.client_ca || c->tlsopt.cfg.state_dir)
    return cli_usage_error("chat", "--self-signed, --client-ca and --state-dir are for "
                                   "'chat serve'; the client takes --ca, --pin or --insecure");
  sk_endpoint_format(&c->ep, c->name, sizeof c->name);
  if ((c->ep.flags & SK_EP_TLS) && !(c->tls_ctx = cli_tls_context(&c->tlsopt, 0, c->name)))
    return c->tlsopt.cfg.pin && c->tlsopt.cfg.insecure ? EXIT_USAGE : EXIT_NET;

  c->tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  const char *no_color = getenv("NO_COLOR");
  c->color = isatty(STDOUT_FILENO) && !(no_color && no_color[0]);
  c->backoff_ms = CHATC_BACKOFF_MIN_MS;
  sk_net_ignore_sigpipe();
  int r = sk_loop_new(&c->loop);
  if (r < 0) {
    cli_error("event loop: %s", sk_strerror(r));
    sk_tls_ctx_free(c->tls_ctx);
    return EXIT_NET;
  }
  sk_timer_init(&c->timer, on_timer, c);
  sk_timer_init(&c->conn_timer, on_connect_timeout, c);
  sk_buf_init(&c->std_in, CHATC_STDIN_MAX);
  sk_chat_reader_init(&c->in_reader, SK_CHAT_LINE_MAX);
  c->in_io.cb = on_stdin;
  c->in_io.data = c;
  if (c->tty) {
    if (tcgetattr(STDIN_FILENO, &c->saved_tio) < 0) {
      c->tty = 0;
    } else {
      g_client = c;
      atexit(tty_restore);
      tty_width(c);
      if (tty_raw(c) < 0)
        c->tty = 0;
    }
  }
  c->exit_code = EXIT_OK;
  attempt_start(c); /* its outcome comes on the loop */
  if (sk_io_start(c->loop, &c->in_io, STDIN_FILENO, SK_READABLE) < 0)
    cli_error("chat: standard input cannot be watched: only showing what arrives");
  set_stdin(c);
  sk_loop_signal(c->loop, SIGINT, on_stop_signal, c);
  sk_loop_signal(c->loop, SIGTERM, on_stop_signal, c);
  if (c->tty) {
    sk_loop_signal(c->loop, SIGWINCH, on_winch, c);
    sk_loop_signal(c->loop, SIGCONT, on_cont, c);
    redraw(c);
  }
  r = sk_loop_run(c->loop);
  if (r < 0) {
    cli_error("event loop: %s", sk_strerror(r));
    c->exit_code = EXIT_NET;
  }
  if (c->tty)
    write_all(STDOUT_FILENO, "\r\x1b[K", 4);
  tty_restore();
  if (c->fatal[0])
    cli_error("%s", c->fatal);
  attempt_abandon(c);
  drop_connection(c);
  sk_buf_free(&c->std_in);
  for (int i = 0; i < c->nhistory; i++)
    free(c->history[i]);
  sk_loop_free(c->loop);
  sk_tls_ctx_free(c->tls_ctx);
  return c->exit_code;
}
