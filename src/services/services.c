/* services.c - the list of services and what they share. */
#include <string.h>
#include <time.h>

#include "services/services.h"
#include "services/web.h"

const svc_t *const svc_all[] = {&svc_echo, &svc_discard, &svc_daytime, &svc_time, &svc_upper,
                                &svc_chat, &svc_chat_web, &svc_wc, NULL};

/* The chat and its web side share the hub's one chat. */
int svc_single_loop(const svc_t *svc) { return svc == &svc_chat || svc == &svc_chat_web; }

uint64_t svc_idle_default_ms(const svc_t *svc) { return svc == &svc_wc ? SVC_WC_IDLE_MS : 0; }

const svc_t *svc_find(const char *name) {
  for (int i = 0; svc_all[i]; i++)
    if (strcmp(svc_all[i]->name, name) == 0)
      return svc_all[i];
  return NULL;
}

void svc_ctime(char *buf, size_t len) {
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  if (strftime(buf, len, "%a %b %e %H:%M:%S %Y", &tm) == 0 && len)
    buf[0] = '\0';
}
