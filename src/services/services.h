/* src/services/services.h - the services `sockit serve` hosts. Each is a
 * libsockit handler plus its defaults; adding one touches its own file, this
 * list and services.c. */
#ifndef SK_SERVICES_H
#define SK_SERVICES_H

#include "sockit/server.h"

/* Longest line the line services (time) accept, LF included. A longer line
 * gets an error line and the connection is closed; others are unaffected. */
#define SVC_LINE_MAX 8192
/* A line left without its LF this long is answered as it is (the seed 001
 * client sends input() without a newline and waits for the answer). */
#define SVC_PARTIAL_LINE_MS 200

typedef struct {
  const char *name;
  const char *summary;
  const sk_handler_t *handler;
  size_t in_limit;              /* per-connection input buffer */
  const char *hub_endpoints[3]; /* where `sockit serve` alone puts it */
} svc_t;

extern const svc_t svc_echo, svc_discard, svc_daytime, svc_time, svc_upper, svc_chat;
extern const svc_t svc_wc;

/* Every service, in hub order; NULL-terminated. */
extern const svc_t *const svc_all[];
const svc_t *svc_find(const char *name);
/* 1 for a service whose connections share state (the chat): it is served
 * by one loop only, whatever --workers says. */
int svc_single_loop(const svc_t *svc);
/* The idle timeout a service gets when `serve` is given none (0: none):
 * wc drops a client that stopped sending in the middle of a file. */
#define SVC_WC_IDLE_MS 60000
uint64_t svc_idle_default_ms(const svc_t *svc);

/* Formats the seed-001 time stamp "Thu Sep 15 22:29:12 2016" (ctime without
 * its newline) for the local time zone into buf (>= 32 bytes). */
void svc_ctime(char *buf, size_t len);

#endif
