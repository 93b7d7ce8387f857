/* src/cli/cli.h - what the sockit subcommands share. The CLI is the only
 * place that prints to the user or exits. */
#ifndef SK_CLI_H
#define SK_CLI_H

#include <stdarg.h>
#include <stdint.h>

#include "sockit/sockit.h"

/* Exit codes of every command. */
#define EXIT_OK 0
#define EXIT_NET 1   /* network or I/O error */
#define EXIT_USAGE 2 /* bad option or endpoint */

struct cli_opt;
typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
  const char *usage;         /* full help text; with options: the part above them */
  void (*print_usage)(void); /* or this, when the text is made at run time */
  /* A command on an option table (cli/opts.h): --help is usage, the
   * table's options, then usage_tail (examples). */
  const struct cli_opt *options;
  const char *usage_tail;
} cli_command_t;

extern const cli_command_t cli_connect, cli_listen, cli_serve, cli_relay,
    cli_ping, cli_chat;
extern const cli_command_t cli_wc;

/* File transfer (src/cli/send.c, src/cli/receive.c; docs/xfer.md). */
extern const cli_command_t cli_send, cli_receive;

/* "sockit: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "sockit: <message>" and the hint to see --help; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses seconds ("2", "0.5") into milliseconds; 0 on success, -1 if bad. */
int cli_parse_seconds(const char *text, uint64_t *ms);
/* Parses a non-negative integer up to max; 0 on success, -1 if bad. */
int cli_parse_uint(const char *text, unsigned long max, unsigned long *out);

/* Standard input and output for the copy loops: made non-blocking for the
 * run and restored at exit (they are shared with the parent shell). */
void cli_stdio_nonblock(void);

/* Writes the port of a bound listener to path (atomically, via rename).
 * Returns 0, or prints an error and returns -1. */
int cli_write_port_file(const char *path, const sk_listener_t *l);
/* Prints "sockit: listening on <endpoint>" with the real bound address. */
void cli_announce_listener(const sk_listener_t *l);
/* The URL of a web listener (http://127.0.0.1:6680/), or "" for a unix
 * one; into buf. */
char *cli_listener_url(const sk_listener_t *l, char *buf, size_t len);

/* Warns on stderr about each socket systemd passed (socket activation)
 * that no endpoint of the command took. Call once the listeners are open. */
void cli_activation_report(void);

/* Command-line --allow / --deny lists. */
typedef struct {
  sk_cidr_t *allow, *deny;
  int nallow, ndeny;
} cli_acl_t;
/* Adds one block; returns 0 or prints the parse error and returns -1. */
int cli_acl_add(cli_acl_t *acl, int allow, const char *text);
/* 1 if peer may connect. Non-IP peers (unix) always may. */
int cli_acl_permits(const cli_acl_t *acl, const sk_sockaddr_t *peer);
void cli_acl_free(cli_acl_t *acl);

#endif
