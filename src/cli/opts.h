/* src/cli/opts.h - one option table per command.
 *
 * The same array drives the parser (getopt_long underneath), the options
 * part of `sockit COMMAND --help`, the options sections of docs/cli.md and
 * the man page (`sockit help --markdown COMMAND`, `--roff`), and the shell
 * completions (`--words`), so none of them can drift from the binary.
 *
 * Values land in the command's own options struct: each row names the
 * member by its offset. A row of kind CLI_OPT_INCLUDE splices a shared
 * table (the TLS options, say) whose offsets count from its own base.
 */
#ifndef SK_CLI_OPTS_H
#define SK_CLI_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
  CLI_OPT_END = 0,
  CLI_OPT_GROUP,   /* a heading: help is its text ("TLS (tls:// endpoints):") */
  CLI_OPT_INCLUDE, /* sub's rows, their offsets relative to off */
  CLI_OPT_FLAG,    /* int at off set to 1 */
  CLI_OPT_STRING,  /* const char * at off (the argv string, not copied) */
  CLI_OPT_SECONDS, /* uint64_t milliseconds at off, from "2" or "0.5"; max in ms when set */
  CLI_OPT_UINT,    /* unsigned long at off, 0..max */
  CLI_OPT_FN,      /* fn(base, arg): 0, or -1 after printing a usage error */
} cli_opt_kind_t;

typedef struct cli_opt {
  cli_opt_kind_t kind;
  char shrt;        /* short letter, or 0 */
  const char *lng;  /* long name without "--", or NULL */
  const char *arg;  /* the argument's name in help ("SECS"); NULL = takes none */
  const char *help; /* one line */
  size_t off;       /* where the value goes, from the options struct's start */
  unsigned long max;
  int (*fn)(void *base, const char *arg, const char *cmd);
  const struct cli_opt *sub; /* CLI_OPT_INCLUDE */
  size_t seen;      /* INCLUDE: offset + 1 of an int set when any of sub's options is given */
  const char *complete; /* for completions: "file", "dir", "endpoint", or NULL */
} cli_opt_t;

/* A row: kind, short letter (or 0), long name (or NULL), argument name (or
 * NULL), help line, offset of the value. Add .complete, .max, .fn, .sub
 * after it with designated initialisers where needed. */
#define CLI_ROW(k, s, l, a, h, o) .kind = (k), .shrt = (s), .lng = (l), .arg = (a), .help = (h), .off = (o)

/* Parses argv[1..] against opts into the struct at base. Options and
 * operands may mix; "--" ends options. On success returns 0 and leaves the
 * operands in argv[*first..argc). On an unknown option or a bad value,
 * prints the usage error (exit code 2 material) and returns -1. */
int cli_opts_parse(const char *cmd, const cli_opt_t *opts, void *base, int argc, char **argv,
                   int *first);

/* The options part of --help: one line per option under its group. */
void cli_opts_help(FILE *out, const cli_opt_t *opts);
/* The same as a Markdown table (docs/cli.md) or as man page roff (.TP). */
void cli_opts_markdown(FILE *out, const cli_opt_t *opts);
void cli_opts_roff(FILE *out, const cli_opt_t *opts);
/* One line per option for completion scripts: "--long ARG COMPLETE", "-s". */
void cli_opts_words(FILE *out, const cli_opt_t *opts);

#endif
