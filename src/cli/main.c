/* main.c - `sockit COMMAND ...`: the command table, help and version. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const cli_command_t *const commands[] = {&cli_connect, &cli_listen, &cli_serve, &cli_relay, &cli_ping, &cli_chat, &cli_wc, &cli_send, &cli_receive};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_overview(FILE *out) {
  fprintf(out, "sockit %s - the socket toolkit\n\n"
               "Usage: sockit COMMAND [OPTIONS] ...\n\nCommands:\n",
          sk_version());
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(out, "  %-10s %s\n", "help", "show help for a command");
  fprintf(out, "\nEndpoints: tcp://host:port  tcp://[v6]:port  udp://host:port  unix:/path\n"
               "           unix:@abstract  unix-dgram:/path  unix-seqpacket:/path  -  (stdio)\n"
               "Listen forms may omit the host (tcp://:8000) and use port 0.\n\n"
               "Exit codes: 0 success, 1 network or I/O error, 2 usage error.\n"
               "Run 'sockit help COMMAND' for a command's options.\n");
}

static void show_usage(const cli_command_t *c) {
  if (c->print_usage)
    c->print_usage();
  else
    fputs(c->usage, stdout);
}

static const cli_command_t *find(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i]->name, name) == 0)
      return commands[i];
  return NULL;
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
