/* tests/fuzz/fuzz_chat.c - the chat line protocol (sockit/chat.h) on
 * arbitrary bytes.
 *
 * The input is a client's byte stream. Properties checked (abort() on a
 * violation):
 *  - framing: the stream fed in random pieces of 1..32 bytes (the sizes
 *    drawn from a generator seeded by the input) gives exactly the lines
 *    and over-long reports of the stream fed whole; every line lies inside
 *    the caller's buffer, holds no LF and is shorter than the limit;
 *  - the command splitter's fields lie inside the line, in order;
 *  - the sanitizer's output is valid UTF-8 without C0, DEL, C1, line
 *    separators or bidi controls, at most 3x the input, and sanitizing it
 *    again changes nothing;
 *  - a MSG line made from a sanitized line parses back to the same fields;
 *  - nick and room checks agree with a plain reading of the rules.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/chat.h"

#include "../utf8_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz_chat: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

#define FUZZ_LINE_MAX 64 /* small, so over-long lines are common */
#define MAX_EVENTS 4096

typedef struct {
  int kind;     /* SK_CHAT_LINE or SK_CHAT_TOO_LONG */
  size_t start; /* offset of the line in the stream (LINE) */
  size_t len;
} event_t;

/* Feeds data in pieces (sizes from seed; seed 0: whole) and records the
 * events. Returns how many. */
static size_t frame(const uint8_t *data, size_t size, uint32_t seed, event_t *ev) {
  sk_chat_reader_t r;
  sk_chat_reader_init(&r, FUZZ_LINE_MAX);
  size_t held_from = 0, held_len = 0, fed = 0, n = 0;
  while (fed < size || held_len) {
    size_t piece = size - fed;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      size_t want = 1 + (seed >> 16) % 32;
      if (piece > want)
        piece = want;
    }
    /* The held bytes and the new piece are contiguous in data: the
     * "caller's buffer" is data itself, from held_from. */
    held_len += piece;
    fed += piece;
    for (;;) {
      size_t used, ll;
      const char *line;
      const char *buf = (const char *)data + held_from;
      int k = sk_chat_read_line(&r, buf, held_len, &used, &line, &ll);
      CHECK(used <= held_len);
      if (k == SK_CHAT_LINE) {
        CHECK(line >= buf && line + ll <= buf + held_len);
        CHECK(ll < FUZZ_LINE_MAX && !memchr(line, '\n', ll));
        if (n < MAX_EVENTS)
          ev[n] = (event_t){k, (size_t)(line - (const char *)data), ll};
        n++;
      } else if (k == SK_CHAT_TOO_LONG) {
        if (n < MAX_EVENTS)
          ev[n] = (event_t){k, 0, 0};
        n++;
      } else {
        CHECK(k == SK_CHAT_NEED_MORE);
      }
      held_from += used;
      held_len -= used;
      if (k == SK_CHAT_NEED_MORE)
        break;
    }
    if (fed == size)
      break;
  }
  return n;
}

/* 1 if s is valid UTF-8 holding no code point a terminal acts on. */
static int safe_utf8(const unsigned char *s, size_t n) {
  unsigned cp;
  for (size_t i = 0, len; i < n; i += len) {
    if (!(len = ref_utf8_next(s, n, i, &cp)))
      return 0;
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
        (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
      return 0;
  }
  return 1;
}

/* The per-line properties of the file comment. */
static void check_line(const char *line, size_t len) {
  sk_chat_cmd_t c;
  sk_chat_parse_command(line, len, &c);
  const char *end = line + len;
  CHECK(c.id >= SK_CHAT_CMD_EMPTY && c.id <= SK_CHAT_CMD_UNKNOWN);
  if (c.id != SK_CHAT_CMD_EMPTY) {
    CHECK(c.args >= line && c.args + c.args_len <= end);
    CHECK(c.arg == c.args && c.arg_len <= c.args_len);
    CHECK(c.rest >= c.arg + c.arg_len && c.rest + c.rest_len == c.args + c.args_len);
    CHECK(!memchr(c.arg, ' ', c.arg_len));
  }
  if (c.id != SK_CHAT_CMD_EMPTY && c.id != SK_CHAT_CMD_SAY)
    CHECK(c.name == line + 1 && c.name + c.name_len <= end);

  static char clean[3 * FUZZ_LINE_MAX], again[3 * 3 * FUZZ_LINE_MAX];
  size_t n = sk_chat_sanitize(line, len, clean);
  CHECK(n <= 3 * len);
  CHECK(safe_utf8((const unsigned char *)clean, n));
  CHECK(sk_chat_sanitize(clean, n, again) == n && memcmp(again, clean, n) == 0);

  char out[SK_CHAT_OUT_LINE_MAX];
  size_t m = sk_chat_format(out, sizeof out, "MSG", "#room", "nick", clean, n);
  CHECK(m == 15 + n + (n ? 1 : 0)); /* "MSG #room nick" [" " text] LF */
  CHECK(out[m - 1] == '\n' && !memchr(out, '\n', m - 1));
  sk_chat_event_t ev;
  CHECK(sk_chat_event_parse(out, m - 1, &ev) == (n ? 4 : 3));
  CHECK(ev.type_len == 3 && memcmp(ev.type, "MSG", 3) == 0);
  CHECK(ev.target_len == 5 && memcmp(ev.target, "#room", 5) == 0);
  CHECK(ev.sender_len == 4 && memcmp(ev.sender, "nick", 4) == 0);
  CHECK(ev.text_len == n && (n == 0 || memcmp(ev.text, clean, n) == 0));

  int nick = len >= 1 && len <= SK_CHAT_NICK_MAX && !(line[0] >= '0' && line[0] <= '9') &&
             line[0] != '-';
  for (size_t i = 0; nick && i < len; i++) {
    char ch = line[i];
    nick = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("_-[]{}^`|", ch));
  }
  CHECK(sk_chat_nick_valid(line, len) == nick);
  int room = len >= 2 && len <= SK_CHAT_ROOM_MAX && line[0] == '#';
  for (size_t i = 1; room && i < len; i++) {
    char ch = line[i];
    room = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.';
  }
  CHECK(sk_chat_room_valid(line, len) == room);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static event_t whole[MAX_EVENTS], pieces[MAX_EVENTS];
  uint32_t seed = 2166136261u;
  for (size_t i = 0; i < size; i++)
    seed = (seed ^ data[i]) * 16777619u;
  size_t n = frame(data, size, 0, whole);
  size_t m = frame(data, size, seed | 1u, pieces);
  CHECK(n == m);
  for (size_t i = 0; i < n && i < MAX_EVENTS; i++) {
    CHECK(whole[i].kind == pieces[i].kind);
    CHECK(whole[i].start == pieces[i].start && whole[i].len == pieces[i].len);
    if (whole[i].kind == SK_CHAT_LINE)
      check_line((const char *)data + whole[i].start, whole[i].len);
  }
  return 0;
}
