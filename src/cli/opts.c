/* opts.c - one option table per command (see cli/opts.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"

#define FLAT_MAX 96 /* options of one command, included tables flattened */

/* Every command takes -h/--help (main.c answers it before the command
 * runs); the documents list it at the end of the first group. */
static const cli_opt_t help_row = {CLI_ROW(CLI_OPT_FLAG, 'h', "help", NULL, "this help", 0)};
#define HELP_COL 24 /* the help text starts after this many columns (+2) */

typedef struct {
  const cli_opt_t *row;
  size_t base; /* offset of the row's struct within the command's */
  size_t seen; /* offset + 1 of the "some option of this group" int, or 0 */
} flat_t;

/* Flattens opts (includes spliced) into out. Returns how many, or -1 when
 * the table is larger than FLAT_MAX (a programming error). */
static int flatten_rows(const cli_opt_t *opts, size_t base, size_t seen, flat_t *out, int n);

/* The whole table for documents: the rows, with the help row placed at
 * the end of the first group. */
static int flatten_doc(const cli_opt_t *opts, flat_t *out) {
  flat_t rows[FLAT_MAX];
  int n = flatten_rows(opts, 0, 0, rows, 0), k = 0, placed = 0;
  if (n < 0 || n + 1 > FLAT_MAX)
    return 0;
  for (int i = 0; i < n; i++) {
    if (!placed && i > 0 && rows[i].row->kind == CLI_OPT_GROUP) {
      out[k++] = (flat_t){&help_row, 0, 0};
      placed = 1;
    }
    out[k++] = rows[i];
  }
  if (!placed)
    out[k++] = (flat_t){&help_row, 0, 0};
  return k;
}

static int flatten_rows(const cli_opt_t *opts, size_t base, size_t seen, flat_t *out, int n) {
  for (const cli_opt_t *o = opts; o->kind != CLI_OPT_END; o++) {
    if (n >= FLAT_MAX)
      return -1;
    if (o->kind == CLI_OPT_INCLUDE) {
      n = flatten_rows(o->sub, base + o->off, o->seen ? base + o->seen : seen, out, n);
      if (n < 0)
        return -1;
      continue;
    }
    out[n].row = o;
    out[n].base = base;
    out[n].seen = seen;
    n++;
  }
  return n;
}

/* "--name" or "-c" for messages. */
static const char *shown(const cli_opt_t *o, char *buf, size_t len) {
  if (o->lng)
    snprintf(buf, len, "--%s", o->lng);
  else
    snprintf(buf, len, "-%c", o->shrt);
  return buf;
}

/* Stores arg per f's kind. Returns 0, or -1 after the usage error. */
static int apply(const char *cmd, const flat_t *f, void *base, const char *arg) {
  const cli_opt_t *o = f->row;
  char *at = (char *)base + f->base + o->off;
  char name[64];
  if (f->seen)
    *(int *)((char *)base + f->seen - 1) = 1;
  switch (o->kind) {
  case CLI_OPT_FLAG: *(int *)at = 1; return 0;
  case CLI_OPT_STRING: *(const char **)at = arg; return 0;
  case CLI_OPT_SECONDS: {
    uint64_t ms;
    if (cli_parse_seconds(arg, &ms) < 0 || (o->max && ms > o->max)) {
      cli_usage_error(cmd, "bad %s '%s': expected seconds", shown(o, name, sizeof name), arg);
      return -1;
    }
    *(uint64_t *)at = ms;
    return 0;
  }
  case CLI_OPT_UINT: {
    unsigned long v;
    if (cli_parse_uint(arg, o->max, &v) < 0) {
      cli_usage_error(cmd, "bad %s '%s': expected a number from 0 to %lu",
                      shown(o, name, sizeof name), arg, o->max);
      return -1;
    }
    *(unsigned long *)at = v;
    return 0;
  }
  case CLI_OPT_FN: return o->fn((char *)base + f->base, arg, cmd);
  default: return 0;
  }
}

int cli_opts_parse(const char *cmd, const cli_opt_t *opts, void *base, int argc, char **argv,
                   int *first) {
  flat_t flat[FLAT_MAX];
  struct option longopts[FLAT_MAX + 1];
  char shorts[2 * FLAT_MAX + 2] = ":";
  int n = flatten_rows(opts, 0, 0, flat, 0), nl = 0;
  size_t ns = 1;
  if (n < 0) {
    cli_error("%s: option table too large", cmd);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    const cli_opt_t *o = flat[i].row;
    if (o->kind == CLI_OPT_GROUP)
      continue;
    if (o->lng)
      longopts[nl++] = (struct option){o->lng, o->arg ? required_argument : no_argument, NULL,
                                       1000 + i};
    if (o->shrt) {
      shorts[ns++] = o->shrt;
      if (o->arg)
        shorts[ns++] = ':';
    }
  }
  longopts[nl] = (struct option){0, 0, 0, 0};
  shorts[ns] = '\0';
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
    if (c == '?' || c == ':') {
      const char *bad = argv[optind - 1];
      if (c == ':')
        return cli_usage_error(cmd, "option '%s' needs an argument", bad), -1;
      if (optopt && optopt < 1000 && bad[0] == '-' && bad[1] != '-')
        return cli_usage_error(cmd, "unknown option '-%c'", optopt), -1;
      return cli_usage_error(cmd, "unknown option '%s'", bad), -1;
    }
    int i = -1;
    if (c >= 1000)
      i = c - 1000;
    else
      for (int k = 0; k < n && i < 0; k++)
        if (flat[k].row->shrt == c && flat[k].row->kind != CLI_OPT_GROUP)
          i = k;
    if (i < 0 || apply(cmd, &flat[i], base, optarg) < 0)
      return -1;
  }
  *first = optind;
  return 0;
}

/* "-v, --verbose", "--connect-timeout SECS" */
static void left_part(const cli_opt_t *o, char *buf, size_t len) {
  int k = 0;
  if (o->shrt && o->lng)
    k = snprintf(buf, len, "-%c, --%s", o->shrt, o->lng);
  else if (o->shrt)
    k = snprintf(buf, len, "-%c", o->shrt);
  else
    k = snprintf(buf, len, "--%s", o->lng);
  if (o->arg && k >= 0 && (size_t)k < len)
    snprintf(buf + k, len - (size_t)k, " %s", o->arg);
}

void cli_opts_help(FILE *out, const cli_opt_t *opts) {
  flat_t flat[FLAT_MAX];
  int n = flatten_doc(opts, flat);
  for (int i = 0; i < n; i++) {
    const cli_opt_t *o = flat[i].row;
    if (o->kind == CLI_OPT_GROUP) {
      fprintf(out, "%s%s\n", i ? "\n" : "", o->help);
      continue;
    }
    char left[96];
    left_part(o, left, sizeof left);
    if (strlen(left) <= HELP_COL)
      fprintf(out, "  %-*s  %s\n", HELP_COL, left, o->help);
    else
      fprintf(out, "  %s\n  %-*s  %s\n", left, HELP_COL, "", o->help);
  }
}

/* Markdown needs | escaped inside table cells. */
static void md_text(FILE *out, const char *s) {
  for (; *s; s++) {
    if (*s == '|')
      fputc('\\', out);
    fputc(*s, out);
  }
}

void cli_opts_markdown(FILE *out, const cli_opt_t *opts) {
  flat_t flat[FLAT_MAX];
  int n = flatten_doc(opts, flat), header = 0;
  for (int i = 0; i < n; i++) {
    const cli_opt_t *o = flat[i].row;
    if (o->kind == CLI_OPT_GROUP) {
      fprintf(out, "%s%s\n\n", i ? "\n" : "", o->help);
      header = 0;
      continue;
    }
    if (!header)
      fputs("| option | meaning |\n| --- | --- |\n", out);
    header = 1;
    char left[96];
    left_part(o, left, sizeof left);
    fputs("| `", out);
    md_text(out, left);
    fputs("` | ", out);
    md_text(out, o->help);
    fputs(" |\n", out);
  }
}

/* roff: a backslash doubled, a minus sign escaped, a leading dot or quote
 * guarded. */
static void roff_text(FILE *out, const char *s) {
  if (*s == '.' || *s == '\'')
    fputs("\\&", out);
  for (; *s; s++) {
    if (*s == '\\')
      fputs("\\e", out);
    else if (*s == '-')
      fputs("\\-", out);
    else
      fputc(*s, out);
  }
}

void cli_opts_roff(FILE *out, const cli_opt_t *opts) {
  flat_t flat[FLAT_MAX];
  int n = flatten_doc(opts, flat);
  for (int i = 0; i < n; i++) {
    const cli_opt_t *o = flat[i].row;
    if (o->kind == CLI_OPT_GROUP) {
      fputs(".PP\n", out);
      roff_text(out, o->help);
      fputc('\n', out);
      continue;
    }
    fputs(".TP\n\\fB", out);
    if (o->shrt)
      fprintf(out, "\\-%c%s", o->shrt, o->lng ? "\\fR, \\fB" : "");
    if (o->lng) {
      fputs("\\-\\-", out);
      roff_text(out, o->lng);
    }
    fputs("\\fR", out);
    if (o->arg) {
      fputs(" \\fI", out);
      roff_text(out, o->arg);
      fputs("\\fR", out);
    }
    fputc('\n', out);
    roff_text(out, o->help);
    fputc('\n', out);
  }
}

void cli_opts_words(FILE *out, const cli_opt_t *opts) {
  flat_t flat[FLAT_MAX];
  int n = flatten_doc(opts, flat);
  for (int i = 0; i < n; i++) {
    const cli_opt_t *o = flat[i].row;
    if (o->kind == CLI_OPT_GROUP)
      continue;
    if (o->lng)
      fprintf(out, "--%s %s %s\n", o->lng, o->arg ? o->arg : "-",
              o->complete ? o->complete : "-");
    if (o->shrt)
      fprintf(out, "-%c %s %s\n", o->shrt, o->arg ? o->arg : "-",
              o->complete ? o->complete : "-");
  }
}
