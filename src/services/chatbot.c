/* chatbot.c - the chat's server-side bot: a rules file (pattern => reply)
 * and built-in behaviours (greeting, time, help, who, echo, joke, quote).
 * See chatbot.h and docs/chat.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "services/chatbot.h"
#include "services/services.h"
#include "sockit/chat.h"

typedef struct {
  char *pattern; /* one allocation: pattern, NUL, reply, NUL */
  char *reply;
} rule_t;

struct chatbot {
  char nick[SK_CHAT_NICK_MAX + 1];
  char *path; /* rules file, or NULL */
  rule_t *rules;
  int nrules;
  unsigned next_joke, next_quote;
};

/* Network-flavoured jokes and quotes, told in turn. */
static const char *const jokes[] = {
    "I'd tell you a UDP joke, but you might not get it.",
    "Hi, I'd like to hear a TCP joke. - Hello, would you like to hear a TCP joke? - Yes, I'd "
    "like to hear a TCP joke. - OK, I'll tell you a TCP joke.",
    "There are 10 kinds of people: those who understand binary and those who don't.",
    "The best thing about a Boolean is that even when you are wrong, you are only off by a bit.",
    "A SQL query walks into a bar, goes up to two tables and asks: may I join you?",
};
static const char *const quotes[] = {
    "Be conservative in what you send, be liberal in what you accept. - Jon Postel",
    "The network is the computer. - John Gage",
    "Simplicity is prerequisite for reliability. - Edsger W. Dijkstra",
    "Premature optimization is the root of all evil. - Donald Knuth",
    "Talk is cheap. Show me the code. - Linus Torvalds",
};
#define NJOKES (sizeof jokes / sizeof jokes[0])
#define NQUOTES (sizeof quotes / sizeof quotes[0])

/* Greetings the bot recognises as the first word (seed languages too). */
static const char *const greetings[] = {"hello", "hi", "hey", "hallo", "salut", "bonjour",
                                        "hola", "yo", "greetings", "привет", "你好"};

/* ---- rules file ------------------------------------------------------------------ */

static void free_rules(rule_t *rules, int n) {
  for (int i = 0; i < n; i++)
    free(rules[i].pattern);
  free(rules);
}

/* s without leading and trailing spaces and tabs (cut in place). */
static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = '\0';
  return s;
}

/* Reads path into a fresh rule array. Returns the count (*out set), or a
 * negative code with "rules FILE:LINE: what" in err. */
static int load_rules(const char *path, rule_t **out, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f)
    return sk_err_set(-errno, err, errlen, "rules %s", path);
  rule_t *rules = calloc(CHATBOT_RULES_MAX, sizeof *rules);
  if (!rules) {
    fclose(f);
    return sk_err_set(-ENOMEM, err, errlen, "rules %s", path);
  }
  char line[CHATBOT_RULE_LINE_MAX + 2];
  int n = 0, lineno = 0, r = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t len = strlen(line);
    if (len && line[len - 1] == '\n')
      line[--len] = '\0';
    else if (!feof(f)) {
      r = SK_EBADINPUT;
      snprintf(err, errlen, "rules %s:%d: line longer than %d bytes", path, lineno,
               CHATBOT_RULE_LINE_MAX);
      break;
    }
    if (len && line[len - 1] == '\r')
      line[--len] = '\0';
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
      continue;
    char *arrow = strstr(s, "=>");
    if (!arrow) {
      r = SK_EBADINPUT;
      snprintf(err, errlen, "rules %s:%d: expected 'PATTERN => REPLY'", path, lineno);
      break;
    }
    *arrow = '\0';
    char *pat = trim(s), *rep = trim(arrow + 2);
    if (!*pat || !*rep) {
      r = SK_EBADINPUT;
      snprintf(err, errlen, "rules %s:%d: %s is empty", path, lineno, *pat ? "REPLY" : "PATTERN");
      break;
    }
    if (n == CHATBOT_RULES_MAX) {
      r = SK_EBADINPUT;
      snprintf(err, errlen, "rules %s:%d: more than %d rules", path, lineno, CHATBOT_RULES_MAX);
      break;
    }
    size_t pl = strlen(pat), rl = strlen(rep);
    char *mem = malloc(pl + rl + 2);
    if (!mem) {
      r = sk_err_set(-ENOMEM, err, errlen, "rules %s", path);
      break;
    }
    memcpy(mem, pat, pl + 1);
    memcpy(mem + pl + 1, rep, rl + 1);
    rules[n].pattern = mem;
    rules[n].reply = mem + pl + 1;
    n++;
  }
  if (r == 0 && ferror(f))
    r = sk_err_set(-EIO, err, errlen, "rules %s", path);
  fclose(f);
  if (r < 0) {
    free_rules(rules, n);
    return r;
  }
  *out = rules;
  return n;
}

int chatbot_new(chatbot_t **out, const char *nick, const char *rules_path, char *err,
                size_t errlen) {
  chatbot_t *b = calloc(1, sizeof *b);
  if (!b)
    return sk_err_set(-ENOMEM, err, errlen, "bot");
  snprintf(b->nick, sizeof b->nick, "%s", nick);
  if (rules_path && !(b->path = strdup(rules_path))) {
    free(b);
    return sk_err_set(-ENOMEM, err, errlen, "bot");
  }
  int r = chatbot_reload(b, err, errlen);
  if (r < 0) {
    chatbot_free(b);
    return r;
  }
  *out = b;
  return 0;
}

void chatbot_free(chatbot_t *b) {
  if (!b)
    return;
  free_rules(b->rules, b->nrules);
  free(b->path);
  free(b);
}

const char *chatbot_nick(const chatbot_t *b) { return b->nick; }
int chatbot_rule_count(const chatbot_t *b) { return b->nrules; }

int chatbot_reload(chatbot_t *b, char *err, size_t errlen) {
  if (!b->path)
    return 0;
  rule_t *rules = NULL;
  int n = load_rules(b->path, &rules, err, errlen);
  if (n < 0)
    return n;
  free_rules(b->rules, b->nrules);
  b->rules = rules;
  b->nrules = n;
  return n;
}

/* ---- matching ----------------------------------------------------------------------- */

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Bytes of the UTF-8 character starting with byte c (1 for anything odd). */
static size_t char_len(unsigned char c) {
  return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

typedef struct {
  size_t start, len;
} span_t;

/* Matches the glob pat against the whole of t[0..tl), ASCII case folded:
 * '*' any run (captured; each '*' as short as the rest allows, the last
 * one as long as it needs), '?' one UTF-8 character. Linear backtracking
 * to the last '*' only, so no pattern can make it slow. Returns 1 on a
 * match with the captures in caps (*ncaps of them, at most
 * CHATBOT_CAPTURES kept). */
static int glob_match(const char *pat, const char *t, size_t tl, span_t *caps, int *ncaps) {
  size_t pl = strlen(pat), pi = 0, ti = 0, star_pi = 0, star_ti = 0;
  int star = -1, nstars = 0;
  while (ti < tl) {
    if (pi < pl && pat[pi] == '*') {
      if (star >= 0 && star < CHATBOT_CAPTURES)
        caps[star].len = star_ti - caps[star].start;
      star = nstars++;
      if (star < CHATBOT_CAPTURES)
        caps[star].start = ti;
      star_pi = ++pi;
      star_ti = ti;
      continue;
    }
    if (pi < pl && pat[pi] == '?') {
      pi++;
      ti += char_len((unsigned char)t[ti]);
      if (ti > tl)
        ti = tl;
      continue;
    }
    if (pi < pl && lower(pat[pi]) == lower(t[ti])) {
      pi++;
      ti++;
      continue;
    }
    if (star < 0)
      return 0;
    star_ti += char_len((unsigned char)t[star_ti]);
    if (star_ti > tl)
      return 0;
    ti = star_ti;
    pi = star_pi;
    nstars = star + 1;
  }
  if (star >= 0 && star < CHATBOT_CAPTURES)
    caps[star].len = star_ti - caps[star].start;
  while (pi < pl && pat[pi] == '*') {
    if (nstars < CHATBOT_CAPTURES)
      caps[nstars] = (span_t){tl, 0};
    nstars++;
    pi++;
  }
  if (pi != pl)
    return 0;
  *ncaps = nstars < CHATBOT_CAPTURES ? nstars : CHATBOT_CAPTURES;
  for (int i = 0; i < *ncaps; i++) {
    while (caps[i].len && (t[caps[i].start] == ' '))
      caps[i].start++, caps[i].len--;
    while (caps[i].len && t[caps[i].start + caps[i].len - 1] == ' ')
      caps[i].len--;
  }
  return 1;
}

/* ---- answers --------------------------------------------------------------------------- */

/* An answer being written: never past cap - 1, never cutting a character. */
typedef struct {
  char *p;
  size_t len, cap;
} out_t;

/* Appends s[0..n), as much as fits, ending on a character boundary. */
static void put(out_t *o, const char *s, size_t n) {
  size_t room = o->cap - 1 - o->len;
  if (n > room) {
    n = room;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--; /* s[n] continues a character: end before that character */
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

/* The local time ("14:03:07") or date ("2025-05-20"). */
static void put_time(out_t *o, int date) {
  char buf[64];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  if (date ? strftime(buf, sizeof buf, "%Y-%m-%d", &tm) : strftime(buf, sizeof buf, "%H:%M:%S", &tm))
    puts_(o, buf);
}

/* Writes reply with its placeholders filled in. */
static void expand(const chatbot_t *b, const chatbot_ask_t *ask, const char *reply,
                   const char *q, size_t qlen, const span_t *caps, int ncaps, out_t *o) {
  for (const char *p = reply; *p;) {
    const char *close = *p == '{' ? strchr(p, '}') : NULL;
    if (!close) {
      put(o, p, 1);
      p++;
      continue;
    }
    size_t n = (size_t)(close - p - 1);
    const char *name = p + 1;
    if (n == 4 && memcmp(name, "nick", 4) == 0)
      puts_(o, ask->nick);
    else if (n == 4 && memcmp(name, "room", 4) == 0)
      puts_(o, ask->room ? ask->room : "private");
    else if (n == 3 && memcmp(name, "bot", 3) == 0)
      puts_(o, b->nick);
    else if (n == 4 && memcmp(name, "time", 4) == 0)
      put_time(o, 0);
    else if (n == 4 && memcmp(name, "date", 4) == 0)
      put_time(o, 1);
    else if (n == 4 && memcmp(name, "text", 4) == 0)
      put(o, q, qlen);
    else if (n == 1 && name[0] >= '1' && name[0] <= '9') {
      int i = name[0] - '1';
      if (i < ncaps)
        put(o, q + caps[i].start, caps[i].len);
    } else {
      put(o, p, (size_t)(close - p) + 1); /* not a placeholder: as written */
    }
    p = close + 1;
  }
}

/* 1 if word w (lower case) appears in the words of s[0..n). */
static int has_word(const char *s, size_t n, const char *w) {
  size_t wl = strlen(w);
  for (size_t i = 0; i + wl <= n; i++) {
    if ((i == 0 || s[i - 1] == ' ') && memcmp(s + i, w, wl) == 0 &&
        (i + wl == n || s[i + wl] == ' ' || s[i + wl] == '\''))
      return 1;
  }
  return 0;
}

/* The built-in behaviours over the folded question s[0..n) (lower case,
 * trailing punctuation dropped). Returns 1 if one of them answered. */
static int builtin(chatbot_t *b, const chatbot_ask_t *ask, const char *s, size_t n,
                   const char *q, size_t qlen, out_t *o) {
  size_t w = 0;
  while (w < n && s[w] != ' ')
    w++;
  for (size_t i = 0; i < sizeof greetings / sizeof greetings[0]; i++)
    if (strlen(greetings[i]) == w && memcmp(s, greetings[i], w) == 0) {
      puts_(o, "Hello ");
      puts_(o, ask->nick);
      puts_(o, "!");
      if (ask->room) {
        puts_(o, " Welcome to ");
        puts_(o, ask->room);
        puts_(o, ".");
      }
      return 1;
    }
  if ((w == 4 && memcmp(s, "help", 4) == 0) || (n == 1 && s[0] == '?') ||
      has_word(s, n, "commands")) {
    puts_(o, "Ask me: hello, time, who, echo TEXT, joke, quote, help. Talk to me with '");
    puts_(o, b->nick);
    puts_(o, ": ...' in a room or /msg ");
    puts_(o, b->nick);
    puts_(o, " ... in private.");
    return 1;
  }
  if (w == 4 && memcmp(s, "echo", 4) == 0) {
    size_t at = w;
    while (at < qlen && q[at] == ' ')
      at++;
    if (at < qlen)
      put(o, q + at, qlen - at);
    else
      puts_(o, "Echo what? Say 'echo TEXT'.");
    return 1;
  }
  if (has_word(s, n, "time") || has_word(s, n, "date")) {
    char stamp[64];
    svc_ctime(stamp, sizeof stamp);
    puts_(o, "It is ");
    puts_(o, stamp);
    puts_(o, " here.");
    return 1;
  }
  if ((w == 3 && memcmp(s, "who", 3) == 0) || has_word(s, n, "who's")) {
    if (!ask->room || !ask->who) {
      puts_(o, "Ask me that in a room and I will tell you who is there.");
      return 1;
    }
    char names[512];
    unsigned count = ask->who(ask->who_arg, names, sizeof names);
    puts_(o, "In ");
    puts_(o, ask->room);
    puts_(o, ": ");
    puts_(o, names);
    char tail[48];
    snprintf(tail, sizeof tail, " (%u %s, and me).", count, count == 1 ? "person" : "people");
    puts_(o, tail);
    return 1;
  }
  if (has_word(s, n, "joke") || has_word(s, n, "jokes")) {
    puts_(o, jokes[b->next_joke++ % NJOKES]);
    return 1;
  }
  if (has_word(s, n, "quote") || has_word(s, n, "quotes")) {
    puts_(o, quotes[b->next_quote++ % NQUOTES]);
    return 1;
  }
  return 0;
}

int chatbot_addressed(const chatbot_t *b, const char *text, size_t len, const char **q,
                      size_t *qlen) {
  size_t nl = strlen(b->nick), at;
  if (len > nl && text[0] == '@' && strncasecmp(text + 1, b->nick, nl) == 0 &&
      (len == nl + 1 || strchr(" :,", text[nl + 1])))
    at = nl + 1;
  else if (len > nl && strncasecmp(text, b->nick, nl) == 0 && (text[nl] == ':' || text[nl] == ','))
    at = nl;
  else
    return 0;
  while (at < len && strchr(" :,", text[at]))
    at++;
  size_t end = len;
  while (end > at && text[end - 1] == ' ')
    end--;
  *q = text + at;
  *qlen = end - at;
  return 1;
}

size_t chatbot_answer(chatbot_t *b, const chatbot_ask_t *ask, const char *q, size_t qlen,
                      char *out, size_t cap) {
  out_t o = {out, 0, cap};
  out[0] = '\0';
  span_t caps[CHATBOT_CAPTURES];
  int ncaps = 0;
  for (int i = 0; i < b->nrules; i++)
    if (glob_match(b->rules[i].pattern, q, qlen, caps, &ncaps)) {
      expand(b, ask, b->rules[i].reply, q, qlen, caps, ncaps, &o);
      if (o.len)
        return o.len;
    }
  /* Built-ins look at the question in lower case without trailing
   * punctuation: "Hello!", "What TIME is it?" */
  char folded[SK_CHAT_TEXT_MAX];
  size_t n = qlen < sizeof folded ? qlen : sizeof folded;
  sk_chat_fold(q, n, folded);
  while (n && strchr(" ?!.,", folded[n - 1]))
    n--;
  if (builtin(b, ask, folded, n, q, qlen, &o) && o.len)
    return o.len;
  puts_(&o, "Sorry ");
  puts_(&o, ask->nick);
  puts_(&o, ", I don't understand that. Try '");
  puts_(&o, b->nick);
  puts_(&o, ": help'.");
  return o.len;
}
