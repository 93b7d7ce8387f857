/* src/services/chatbot.h - the chat's server-side bot (seed 002, task 4).
 *
 * The bot is a member of every room without a connection. It answers a
 * room message addressed to it ("bot: hello", "bot, what time is it",
 * "@bot joke") in that room, and a private message to it privately. It
 * knows a few things by itself (greeting, the time, help, who is here,
 * echo, a joke, a quote) and whatever a rules file teaches it:
 *
 *     # comment
 *     PATTERN => REPLY
 *
 * PATTERN is matched against the whole question without regard to ASCII
 * case: '*' matches any text (captured as {1}..{9}), '?' one character.
 * REPLY may use {nick} {room} {bot} {time} {date} {text} and {1}..{9}.
 * Rules are tried in file order before the built-in behaviours. The file is
 * read at start and again by chatbot_reload (SIGHUP); a file with an error
 * is refused whole and the rules in force stay. See docs/chat.md.
 */
#ifndef SK_CHATBOT_H
#define SK_CHATBOT_H

#include <stddef.h>

#define CHATBOT_NICK "bot"          /* the bot's nick unless told otherwise */
#define CHATBOT_RULES_MAX 256       /* rules in one file */
#define CHATBOT_RULE_LINE_MAX 1024  /* longest line of a rules file */
#define CHATBOT_CAPTURES 9          /* {1}..{9} */
#define CHATBOT_REPLY_MAX 1024      /* longest reply before sanitizing */

typedef struct chatbot chatbot_t;

/* What the bot may know about the message it answers. */
typedef struct {
  const char *nick; /* who asked */
  const char *room; /* where ("#room"); NULL for a private message */
  /* Writes the nicks present in room, "alice, bob", into out (cap bytes,
   * NUL-terminated); returns how many people that is. */
  unsigned (*who)(void *arg, char *out, size_t cap);
  void *who_arg;
} chatbot_ask_t;

/* Makes a bot called nick (a valid nick) with the rules of rules_path, or
 * only the built-in behaviours when rules_path is NULL. Returns 0, or a
 * negative errno / SK_EBADINPUT with "FILE:LINE: what" in err. The path is
 * copied. */
int chatbot_new(chatbot_t **out, const char *nick, const char *rules_path, char *err,
                size_t errlen);
void chatbot_free(chatbot_t *b);
/* The bot's nick (valid while b lives). */
const char *chatbot_nick(const chatbot_t *b);
/* Reads the rules file again. Returns the number of rules now in force,
 * or a negative code with the reason in err, in which case the old rules
 * stay. 0 rules and no error when the bot has no rules file. */
int chatbot_reload(chatbot_t *b, char *err, size_t errlen);
/* Number of rules in force. */
int chatbot_rule_count(const chatbot_t *b);

/* 1 if the room message text[0..len) is addressed to the bot ("NICK: ...",
 * "NICK, ...", "@NICK ..."; the nick without regard to case), with the
 * question (without the address and surrounding spaces) in *q / *qlen. */
int chatbot_addressed(const chatbot_t *b, const char *text, size_t len, const char **q,
                      size_t *qlen);

/* Writes the bot's answer to question q[0..qlen) (sanitized text) into out
 * (cap >= CHATBOT_REPLY_MAX + 1, NUL-terminated) and returns its length
 * (> 0): the first rule that matches, else a built-in behaviour, else a
 * "try help" line. The reply still needs sanitizing (a rules file may hold
 * anything). */
size_t chatbot_answer(chatbot_t *b, const chatbot_ask_t *ask, const char *q, size_t qlen,
                      char *out, size_t cap);

#endif
