/* src/cli/chat_client.h - the terminal chat client (`sockit chat ENDPOINT`). */
#ifndef SK_CLI_CHAT_CLIENT_H
#define SK_CLI_CHAT_CLIENT_H

/* Runs `sockit chat ENDPOINT [--nick NAME]` with argv[0] the word before
 * ENDPOINT; returns the exit code. docs/chat.md, "The terminal client". */
int cli_chat_client(int argc, char **argv);

#endif
