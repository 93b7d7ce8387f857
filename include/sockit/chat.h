/* sockit/chat.h - the chat line protocol, version 1: pure code over the
 * caller's bytes (no I/O, no allocation).
 *
 * A chat client sends UTF-8 text lines ending in LF or CRLF: a message, or a
 * command starting with '/'. The server sends one event per line:
 *
 *     TYPE TARGET SENDER [TEXT]       MSG #lobby alice hello there
 *
 * TYPE is an upper-case word, TARGET a room (#name), a nick (a private
 * message) or '*' (everyone / no room), SENDER a nick or '@server'. Every
 * field but the last is one word; TEXT is the rest of the line and never
 * holds a control character, an escape sequence or invalid UTF-8 (see
 * sk_chat_sanitize). docs/chat.md lists every line type.
 *
 * What is here:
 *   - line framing with a named limit: a line over the limit is reported
 *     once and skipped up to its LF, the stream goes on (sk_chat_read_line);
 *   - the command splitter (sk_chat_parse_command);
 *   - the sanitizer that makes peer text safe to show on a terminal;
 *   - nick and room name rules, case folding;
 *   - the event formatter and its inverse (sk_chat_format, sk_chat_event_parse).
 */
#ifndef SOCKIT_CHAT_H
#define SOCKIT_CHAT_H

#include <stddef.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_CHAT_PROTOCOL 1           /* version of the line protocol */
#define SK_CHAT_LINE_MAX 1024        /* longest input line, CR LF included */
/* Longest text after sanitizing a line: each input byte becomes at most
 * three output bytes (an invalid byte becomes U+FFFD). */
#define SK_CHAT_TEXT_MAX (3 * SK_CHAT_LINE_MAX)
#define SK_CHAT_OUT_LINE_MAX 4096    /* longest line the server sends, LF included */
#define SK_CHAT_NICK_MAX 24          /* longest nick */
#define SK_CHAT_ROOM_MAX 32          /* longest room name, '#' included */

/* ---- framing ---------------------------------------------------------------- */

/* Results of sk_chat_read_line. */
#define SK_CHAT_NEED_MORE 0 /* no complete line yet */
#define SK_CHAT_LINE 1      /* one line found */
#define SK_CHAT_TOO_LONG 2  /* a line reached max bytes without LF: dropped */

/* Framing state of one input stream: the limit, and whether the rest of an
 * over-long line is being skipped. */
typedef struct {
  size_t max;     /* longest line, LF (and CR) included */
  int discarding; /* skipping up to the next LF */
} sk_chat_reader_t;

/* Initialises r for lines of at most max bytes (max >= 2), LF included. */
SK_API void sk_chat_reader_init(sk_chat_reader_t *r, size_t max);

/* Looks for the next line in data[0..len). Sets *used to the bytes the
 * caller may drop (they are handled: a line, or skipped bytes of an
 * over-long one) and returns:
 *   SK_CHAT_LINE: *line / *line_len is the line without LF or CRLF,
 *     pointing into data;
 *   SK_CHAT_TOO_LONG: max bytes arrived without an LF; they are dropped and
 *     the rest of that line will be skipped (reported once per line);
 *   SK_CHAT_NEED_MORE: no complete line; *used may still be > 0 (skipped
 *     bytes). Keep data[*used..len) and call again with more.
 * Every split of a stream into calls gives the same lines. */
SK_API int sk_chat_read_line(sk_chat_reader_t *r, const char *data, size_t len, size_t *used,
                             const char **line, size_t *line_len);

/* ---- commands ----------------------------------------------------------------- */

typedef enum {
  SK_CHAT_CMD_EMPTY = 0, /* an empty line (or only spaces): ignored */
  SK_CHAT_CMD_SAY,       /* plain text (or "//text", which says "/text") */
  SK_CHAT_CMD_NICK,
  SK_CHAT_CMD_JOIN,
  SK_CHAT_CMD_PART,
  SK_CHAT_CMD_ROOMS,
  SK_CHAT_CMD_WHO,
  SK_CHAT_CMD_MSG,
  SK_CHAT_CMD_ME,
  SK_CHAT_CMD_QUIT,
  SK_CHAT_CMD_HELP,
  SK_CHAT_CMD_ECHO,
  /* operator commands (the server's own console) */
  SK_CHAT_CMD_OPSAY,     /* /say #room text */
  SK_CHAT_CMD_KICK,      /* /kick NICK [reason] */
  SK_CHAT_CMD_RELOAD,    /* /reload: the bot's rules file */
  SK_CHAT_CMD_UNKNOWN    /* '/' and a word no one knows */
} sk_chat_cmd_id_t;

/* A line split into command and arguments; all pointers into the line. */
typedef struct {
  sk_chat_cmd_id_t id;
  const char *name;  /* the command word without '/' (UNKNOWN: what was typed) */
  size_t name_len;
  const char *args;  /* everything after the command word and its spaces; SAY: the text */
  size_t args_len;
  const char *arg;   /* the first word of args */
  size_t arg_len;
  const char *rest;  /* args after the first word and its spaces */
  size_t rest_len;
} sk_chat_cmd_t;

/* Splits a line (without LF) into *out. Command words are matched without
 * regard to ASCII case. Never fails: the id says what it is. */
SK_API void sk_chat_parse_command(const char *line, size_t len, sk_chat_cmd_t *out);

/* ---- text, nicks and rooms ----------------------------------------------------- */

/* Copies len bytes of peer text into out (room for 3 * len bytes) so that
 * they are safe to show on anyone's terminal and returns the bytes
 * written: valid UTF-8 is kept; TAB becomes a space; C0 controls (ESC, CR,
 * NUL, ...), DEL, C1 controls (U+0080-U+009F), the line and paragraph
 * separators U+2028/U+2029 and the bidirectional overrides and isolates
 * (U+202A-U+202E, U+2066-U+2069) become U+FFFD; invalid UTF-8 (stray
 * continuation bytes, truncated, overlong, surrogates, above U+10FFFF)
 * becomes one U+FFFD per maximal invalid subpart, as Unicode recommends. */
SK_API size_t sk_chat_sanitize(const char *in, size_t len, char *out);

/* 1 if s[0..len) is a valid nick: 1 to SK_CHAT_NICK_MAX characters from
 * A-Z a-z 0-9 _ - [ ] { } ^ ` |, not starting with a digit or '-'. */
SK_API int sk_chat_nick_valid(const char *s, size_t len);
/* 1 if s[0..len) is a valid room name: '#' then 1 to SK_CHAT_ROOM_MAX - 1
 * characters from A-Z a-z 0-9 _ - . */
SK_API int sk_chat_room_valid(const char *s, size_t len);
/* Writes the ASCII lower-case form of s[0..len) to out (len bytes, not
 * terminated): nicks and rooms are compared in this form. */
SK_API void sk_chat_fold(const char *s, size_t len, char *out);
/* Writes the skeleton of nick s[0..len) to out (at most len bytes, not
 * terminated) and returns its length: what the nick looks like, so that
 * look-alikes compare equal (docs/chat.md, "Look-alike nicks"):
 *   1. the characters _ - [ ] { } ^ ` at either end are dropped, and with
 *      strip_digits the digits at the end too (a digit at the start, after
 *      a dropped '_', stands for a letter: "_5erver"); a nick made only
 *      of dropped characters is kept whole;
 *   2. ASCII letters are lower-cased;
 *   3. 0 becomes o; 1, i and | become l; 5 becomes s;
 *   4. then rn becomes m and vv becomes w (left to right).
 * "aIice", "a1ice" and "alice" share "allce"; "B0T_" and "bot" share
 * "bot"; with strip_digits "bot2" does too. */
SK_API size_t sk_chat_nick_skeleton(const char *s, size_t len, int strip_digits, char *out);

/* ---- server lines ------------------------------------------------------------------ */

/* Formats "TYPE TARGET SENDER TEXT\n" into out (without " TEXT" when
 * text_len is 0). type, target and sender are NUL-terminated words; text
 * must already be sanitized. Returns the length, or 0 when it would not
 * fit in cap bytes (nothing useful is written then). */
SK_API size_t sk_chat_format(char *out, size_t cap, const char *type, const char *target,
                             const char *sender, const char *text, size_t text_len);

/* A server line split into its fields (pointers into the line). */
typedef struct {
  const char *type, *target, *sender, *text;
  size_t type_len, target_len, sender_len, text_len;
} sk_chat_event_t;

/* Splits a server line (without LF) into TYPE, TARGET, SENDER and TEXT
 * (fields that are absent have length 0). Returns the number of fields
 * present (0 to 4), or SK_EBADINPUT for an empty line or one holding a
 * control character. Fields of a sk_chat_format line come back as given. */
SK_API int sk_chat_event_parse(const char *line, size_t len, sk_chat_event_t *ev);

#ifdef __cplusplus
}
#endif
#endif
