/* main.c - `sockit COMMAND ...`: the command table, help and version. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"

static const cli_command_t *const commands[] = {&cli_connect, &cli_listen, &cli_serve, &cli_relay, &cli_ping, &cli_chat, &cli_wc, &cli_send, &cli_receive};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_overview(FILE *out) {
  fprintf(out, "sockit %s - the socket toolkit\n\n"
               "Usage: sockit COMMAND [OPTIONS] ...\n\nCommands:\n",
          sk_version());
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(out, "  %-10s %s\n", "help", "show help for a command");
  fprintf(out, "\nEndpoints: tcp://host:port  tcp://[v6]:port  udp://host:port  tls://host:port\n"
               "           unix:/path  unix:@abstract  unix-dgram:/path  unix-seqpacket:/path\n"
               "           -  (stdio)\n"
               "Listen forms may omit the host (tcp://:8000) and use port 0.\n\n"
               "Exit codes: 0 success, 1 network or I/O error, 2 usage error.\n"
               "Run 'sockit help COMMAND' for a command's options.\n");
}

static void show_usage(const cli_command_t *c) {
  if (c->print_usage) {
    c->print_usage();
    return;
  }
  fputs(c->usage, stdout);
  if (c->options) {
    cli_opts_help(stdout, c->options);
    fputs(c->usage_tail ? c->usage_tail : "", stdout);
  }
}

static const cli_command_t *find(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i]->name, name) == 0)
      return commands[i];
  return NULL;
}

/* `sockit help --markdown|--roff|--words COMMAND` and `help --commands`:
 * the option tables as docs/cli.md, the man page and the completion
 * scripts take them (scripts/gen-docs; tests compare). */
static int help_generate(int argc, char **argv) {
  if (argc == 1 && strcmp(argv[0], "--commands") == 0) {
    for (size_t i = 0; i < NCOMMANDS; i++)
      printf("%s %s\n", commands[i]->name, commands[i]->options ? "table" : "-");
    return EXIT_OK;
  }
  const cli_command_t *c = argc == 2 ? find(argv[1]) : NULL;
  if (!c || !c->options)
    return cli_usage_error("help", "expected --markdown, --roff or --words and a command "
                                   "with an option table, or --commands");
  if (strcmp(argv[0], "--markdown") == 0)
    cli_opts_markdown(stdout, c->options);
  else if (strcmp(argv[0], "--roff") == 0)
    cli_opts_roff(stdout, c->options);
  else if (strcmp(argv[0], "--words") == 0)
    cli_opts_words(stdout, c->options);
  else
    return cli_usage_error("help", "unknown option '%s'", argv[0]);
  return EXIT_OK;
}

int main(int argc, char **argv) {
  sk_net_ignore_sigpipe();
  if (argc < 2) {
    print_overview(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    print_overview(stdout);
    return EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("sockit %s\n", sk_version());
    return EXIT_OK;
  }
  if (strcmp(cmd, "help") == 0) {
    if (argc < 3) {
      print_overview(stdout);
      return EXIT_OK;
    }
    if (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
      printf("Usage: sockit help [COMMAND]\n\nShows the help of COMMAND, or the list of "
             "commands.\n");
      return EXIT_OK;
    }
    if (argv[2][0] == '-')
      return help_generate(argc - 2, argv + 2);
    const cli_command_t *c = find(argv[2]);
    if (!c)
      return cli_usage_error(NULL, "unknown command '%s'", argv[2]);
    show_usage(c);
    return EXIT_OK;
  }
  const cli_command_t *c = find(cmd);
  if (!c)
    return cli_usage_error(NULL, "unknown command '%s'", cmd);
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      break;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      show_usage(c);
      return EXIT_OK;
    }
  }
  return c->run(argc - 1, argv + 1);
}
