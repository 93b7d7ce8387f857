/* chat.c - the chat line protocol: framing, command splitting, text
 * sanitizing, name rules and event lines. Pure code over the caller's
 * bytes: no I/O, no allocation. See include/sockit/chat.h and docs/chat.md. */
#include <string.h>

#include "sockit/chat.h"

/* ---- framing ---------------------------------------------------------------- */

void sk_chat_reader_init(sk_chat_reader_t *r, size_t max) {
  r->max = max < 2 ? 2 : max;
  r->discarding = 0;
}

int sk_chat_read_line(sk_chat_reader_t *r, const char *data, size_t len, size_t *used,
                      const char **line, size_t *line_len) {
  size_t start = 0;
  *used = 0;
  if (r->discarding) {
    const char *nl = len ? memchr(data, '\n', len) : NULL;
    if (!nl) {
      *used = len; /* all of it belongs to the line being skipped */
      return SK_CHAT_NEED_MORE;
    }
    start = (size_t)(nl - data) + 1;
    r->discarding = 0;
  }
  size_t avail = len - start;
  size_t scan = avail < r->max ? avail : r->max;
  const char *p = data + start;
  const char *nl = scan ? memchr(p, '\n', scan) : NULL;
  if (nl) {
    size_t n = (size_t)(nl - p);
    *used = start + n + 1;
    if (n > 0 && p[n - 1] == '\r')
      n--;
    *line = p;
    *line_len = n;
    return SK_CHAT_LINE;
  }
  if (avail >= r->max) {
    /* max bytes and no LF: the line is over the limit. Drop what is here
     * and skip the rest of it up to its LF. */
    r->discarding = 1;
    *used = start + r->max;
    return SK_CHAT_TOO_LONG;
  }
  *used = start;
  return SK_CHAT_NEED_MORE;
}

/* ---- commands ----------------------------------------------------------------- */

static const struct {
  const char *name;
  sk_chat_cmd_id_t id;
} commands[] = {
    {"nick", SK_CHAT_CMD_NICK},   {"join", SK_CHAT_CMD_JOIN},   {"part", SK_CHAT_CMD_PART},
    {"rooms", SK_CHAT_CMD_ROOMS}, {"who", SK_CHAT_CMD_WHO},     {"msg", SK_CHAT_CMD_MSG},
    {"me", SK_CHAT_CMD_ME},       {"quit", SK_CHAT_CMD_QUIT},   {"help", SK_CHAT_CMD_HELP},
    {"echo", SK_CHAT_CMD_ECHO},   {"say", SK_CHAT_CMD_OPSAY},   {"kick", SK_CHAT_CMD_KICK},
    {"reload", SK_CHAT_CMD_RELOAD},
};

static int is_space(char c) { return c == ' ' || c == '\t'; }

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Length of the word at p (up to a space or the end). */
static size_t word_len(const char *p, size_t len) {
  size_t n = 0;
  while (n < len && !is_space(p[n]))
    n++;
  return n;
}

/* Number of spaces at p. */
static size_t space_len(const char *p, size_t len) {
  size_t n = 0;
  while (n < len && is_space(p[n]))
    n++;
  return n;
}

/* Sets arg and rest from args. */
static void split_args(sk_chat_cmd_t *out) {
  out->arg = out->args;
  out->arg_len = word_len(out->args, out->args_len);
  size_t after = out->arg_len + space_len(out->args + out->arg_len, out->args_len - out->arg_len);
  out->rest = out->args + after;
  out->rest_len = out->args_len - after;
}

void sk_chat_parse_command(const char *line, size_t len, sk_chat_cmd_t *out) {
  memset(out, 0, sizeof *out);
  out->name = out->args = out->arg = out->rest = line;
  if (space_len(line, len) == len) {
    out->id = SK_CHAT_CMD_EMPTY;
    return;
  }
  if (line[0] != '/' || (len > 1 && line[1] == '/')) {
    out->id = SK_CHAT_CMD_SAY;
    out->args = line[0] == '/' ? line + 1 : line; /* "//text" says "/text" */
    out->args_len = line[0] == '/' ? len - 1 : len;
    split_args(out);
    return;
  }
  out->name = line + 1;
  out->name_len = word_len(line + 1, len - 1);
  size_t at = 1 + out->name_len;
  at += space_len(line + at, len - at);
  out->args = line + at;
  out->args_len = len - at;
  split_args(out);
  out->id = SK_CHAT_CMD_UNKNOWN;
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    const char *n = commands[i].name;
    size_t nl = strlen(n), k = 0;
    if (nl != out->name_len)
      continue;
    while (k < nl && lower(out->name[k]) == n[k])
      k++;
    if (k == nl) {
      out->id = commands[i].id;
      break;
    }
  }
}

/* ---- text ------------------------------------------------------------------------- */

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/* 1 for code points that are valid but unsafe to show: C1 controls, line
 * and paragraph separators, bidirectional overrides and isolates. */
static int unsafe_code_point(unsigned cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t sk_chat_sanitize(const char *in, size_t len, char *out) {
  const unsigned char *s = (const unsigned char *)in;
  size_t i = 0, o = 0;
  while (i < len) {
    unsigned b = s[i];
    if (b < 0x80) {
      if (b == '\t')
        out[o++] = ' ';
      else if (b < 0x20 || b == 0x7F) {
        memcpy(out + o, replacement, 3);
        o += 3;
      } else
        out[o++] = (char)b;
      i++;
      continue;
    }
    /* The first continuation byte's range depends on the lead byte: it
     * rules out overlong forms, surrogates and code points past U+10FFFF. */
    unsigned need, lo = 0x80, hi = 0xBF, cp;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
      cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      cp = b & 0x0F;
      if (b == 0xE0)
        lo = 0xA0;
      else if (b == 0xED)
        hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      cp = b & 0x07;
      if (b == 0xF0)
        lo = 0x90;
      else if (b == 0xF4)
        hi = 0x8F;
    } else {
      memcpy(out + o, replacement, 3); /* stray continuation or never-valid byte */
      o += 3;
      i++;
      continue;
    }
    size_t j = i + 1;
    int ok = 1;
    for (unsigned k = 0; k < need; k++, j++) {
      if (j >= len || s[j] < lo || s[j] > hi) {
        ok = 0; /* the maximal subpart i..j-1 becomes one U+FFFD; s[j] starts afresh */
        break;
      }
      cp = cp << 6 | (s[j] & 0x3Fu);
      lo = 0x80;
      hi = 0xBF;
    }
    if (!ok || unsafe_code_point(cp)) {
      memcpy(out + o, replacement, 3);
      o += 3;
    } else {
      memcpy(out + o, s + i, j - i);
      o += j - i;
    }
    i = j;
  }
  return o;
}

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

int sk_chat_nick_valid(const char *s, size_t len) {
  if (len == 0 || len > SK_CHAT_NICK_MAX || is_digit(s[0]) || s[0] == '-')
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!is_alpha(s[i]) && !is_digit(s[i]) && (s[i] == '\0' || !strchr("_-[]{}^`|", s[i])))
      return 0;
  return 1;
}

int sk_chat_room_valid(const char *s, size_t len) {
  if (len < 2 || len > SK_CHAT_ROOM_MAX || s[0] != '#')
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
      return 0;
  return 1;
}

void sk_chat_fold(const char *s, size_t len, char *out) {
  for (size_t i = 0; i < len; i++)
    out[i] = lower(s[i]);
}

/* 1 for a character dropped at the start (digits: 0) or the end (digits:
 * strip_digits) of a nick's skeleton. */
static int skeleton_edge(char c, int digits) {
  return (c != '\0' && strchr("_-[]{}^`", c)) || (digits && is_digit(c));
}

/* The look-alike of one character, after lower-casing. */
static char skeleton_char(char c) {
  switch (c) {
  case '0': return 'o';
  case '1':
  case 'i':
  case '|': return 'l';
  case '5': return 's';
  default: return c;
  }
}

size_t sk_chat_nick_skeleton(const char *s, size_t len, int strip_digits, char *out) {
  size_t start = 0, end = len, n = 0;
  while (start < end && skeleton_edge(s[start], 0))
    start++;
  while (end > start && skeleton_edge(s[end - 1], strip_digits))
    end--;
  if (start == end) { /* nothing but edge characters: keep them */
    start = 0;
    end = len;
  }
  for (size_t i = start; i < end; i++) {
    char c = skeleton_char(lower(s[i]));
    if (n && ((out[n - 1] == 'r' && c == 'n') || (out[n - 1] == 'v' && c == 'v')))
      out[n - 1] = c == 'n' ? 'm' : 'w';
    else
      out[n++] = c;
  }
  return n;
}

/* ---- server lines -------------------------------------------------------------------- */

size_t sk_chat_format(char *out, size_t cap, const char *type, const char *target,
                      const char *sender, const char *text, size_t text_len) {
  size_t tl = strlen(type), gl = strlen(target), sl = strlen(sender);
  size_t need = tl + 1 + gl + 1 + sl + (text_len ? 1 + text_len : 0) + 1;
  if (need > cap)
    return 0;
  char *p = out;
  memcpy(p, type, tl);
  p += tl;
  *p++ = ' ';
  memcpy(p, target, gl);
  p += gl;
  *p++ = ' ';
  memcpy(p, sender, sl);
  p += sl;
  if (text_len) {
    *p++ = ' ';
    memcpy(p, text, text_len);
    p += text_len;
  }
  *p++ = '\n';
  return need;
}

int sk_chat_event_parse(const char *line, size_t len, sk_chat_event_t *ev) {
  memset(ev, 0, sizeof *ev);
  ev->type = ev->target = ev->sender = ev->text = line + len;
  if (len == 0)
    return SK_EBADINPUT;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)line[i] < 0x20 || line[i] == 0x7F)
      return SK_EBADINPUT;
  const char **field[3] = {&ev->type, &ev->target, &ev->sender};
  size_t *flen[3] = {&ev->type_len, &ev->target_len, &ev->sender_len};
  size_t at = 0;
  for (int f = 0; f < 3; f++) {
    const char *sp = memchr(line + at, ' ', len - at);
    size_t n = sp ? (size_t)(sp - (line + at)) : len - at;
    if (n == 0)
      return SK_EBADINPUT; /* a word field is never empty */
    *field[f] = line + at;
    *flen[f] = n;
    at += n;
    if (at == len)
      return f + 1;
    at++; /* the one space after the word */
    if (at == len)
      return SK_EBADINPUT; /* a trailing separator with nothing after it */
  }
  ev->text = line + at;
  ev->text_len = len - at;
  return 4;
}
