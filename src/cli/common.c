/* common.c - helpers the subcommands share: messages, numbers, stdio,
 * listener announcements, address lists. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"

void cli_error(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "sockit: %s\n", msg);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "sockit: %s\n", msg);
  fprintf(stderr, "Try 'sockit %s%s--help' for more information.\n", cmd ? cmd : "",
          cmd ? " " : "");
  return EXIT_USAGE;
}

int cli_parse_seconds(const char *text, uint64_t *ms) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end != '\0' || !(v >= 0) || v > 86400.0 * 365)
    return -1;
  *ms = (uint64_t)(v * 1000.0 + 0.5);
  return 0;
}

int cli_parse_uint(const char *text, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  if (text[0] < '0' || text[0] > '9')
    return -1;
  unsigned long v = strtoul(text, &end, 10);
  if (errno || *end != '\0' || v > max)
    return -1;
  *out = v;
  return 0;
}

/* ---- socket activation ------------------------------------------------------ */

void cli_activation_report(void) {
  int fds[8];
  char names[8][SK_ACTIVATION_NAME_MAX + 1];
  int n = sk_activation_unclaimed(fds, names, 8);
  for (int i = 0; i < n && i < 8; i++) {
    sk_sockaddr_t sa;
    char where[SK_ENDPOINT_STRLEN];
    sa.len = sizeof sa.ss;
    if (getsockname(fds[i], (struct sockaddr *)&sa.ss, &sa.len) < 0)
      snprintf(where, sizeof where, "?");
    else
      sk_sockaddr_format(&sa, where, sizeof where);
    cli_error("systemd passed a socket that no endpoint asked for (fd %d, %s%s%s); left unused",
              fds[i], where, names[i][0] ? ", name " : "", names[i]);
  }
}

/* ---- stdio ------------------------------------------------------------------ */

static int saved_flags[2] = {-1, -1};

static void restore_stdio(void) {
  for (int fd = 0; fd < 2; fd++)
    if (saved_flags[fd] >= 0)
      fcntl(fd == 0 ? STDIN_FILENO : STDOUT_FILENO, F_SETFL, saved_flags[fd]);
}

void cli_stdio_nonblock(void) {
  int fds[2] = {STDIN_FILENO, STDOUT_FILENO};
  for (int i = 0; i < 2; i++) {
    int fl = fcntl(fds[i], F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK))
      continue;
    saved_flags[i] = fl;
    fcntl(fds[i], F_SETFL, fl | O_NONBLOCK);
  }
  atexit(restore_stdio);
}

/* ---- listeners ------------------------------------------------------------------ */

/* The URL a browser opens for a web listener: http(s)://HOST:PORT/ with the
 * address really bound ("localhost" for a wildcard, [v6] in brackets);
 * empty for endpoints a browser cannot reach (unix). */
char *cli_listener_url(const sk_listener_t *l, char *buf, size_t len) {
  const sk_endpoint_t *ep = &l->ep;
  if (ep->kind != SK_EP_TCP) {
    if (len)
      buf[0] = '\0';
    return buf;
  }
  char addr[SK_ENDPOINT_STRLEN];
  sk_sockaddr_format(&l->bound, addr, sizeof addr);
  char *colon = strrchr(addr, ':');
  if (colon)
    *colon = '\0';
  const char *host = ep->host[0] ? addr : "localhost";
  snprintf(buf, len, "%s://%s:%d/", ep->flags & SK_EP_TLS ? "https" : "http", host,
           sk_sockaddr_port(&l->bound));
  return buf;
}

void cli_announce_listener(const sk_listener_t *l) {
  sk_endpoint_t ep = l->ep;
  char text[SK_ENDPOINT_STRLEN];
  if (ep.kind == SK_EP_TCP || ep.kind == SK_EP_UDP) {
    ep.port = (uint16_t)sk_sockaddr_port(&l->bound);
    /* Show the address really bound, except the dual-stack wildcard. */
    if (ep.host[0]) {
      char addr[SK_ENDPOINT_STRLEN];
      sk_sockaddr_format(&l->bound, addr, sizeof addr);
      char *colon = strrchr(addr, ':');
      if (colon)
        *colon = '\0';
      const char *h = addr[0] == '[' ? addr + 1 : addr;
      size_t n = strlen(h);
      if (n && h[n - 1] == ']')
        n--;
      snprintf(ep.host, sizeof ep.host, "%.*s", (int)n, h);
    }
  }
  fprintf(stderr, "sockit: listening on %s\n", sk_endpoint_format(&ep, text, sizeof text));
  fflush(stderr);
}

int cli_write_port_file(const char *path, const sk_listener_t *l) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    cli_error("port file name too long: %s", path);
    return -1;
  }
  FILE *f = fopen(tmp, "w");
  if (!f) {
    cli_error("open %s: %s", tmp, strerror(errno));
    return -1;
  }
  if (l->ep.kind == SK_EP_TCP || l->ep.kind == SK_EP_UDP) {
    fprintf(f, "%d\n", sk_sockaddr_port(&l->bound));
  } else {
    char text[SK_ENDPOINT_STRLEN];
    fprintf(f, "%s\n", sk_endpoint_format(&l->ep, text, sizeof text));
  }
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    cli_error("write %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* ---- address lists ----------------------------------------------------------------- */

int cli_acl_add(cli_acl_t *acl, int allow, const char *text) {
  char err[SK_ERRLEN];
  sk_cidr_t c;
  if (sk_cidr_parse(&c, text, err, sizeof err) < 0) {
    cli_error("%s", err);
    return -1;
  }
  sk_cidr_t **list = allow ? &acl->allow : &acl->deny;
  int *n = allow ? &acl->nallow : &acl->ndeny;
  sk_cidr_t *grown = realloc(*list, (size_t)(*n + 1) * sizeof **list);
  if (!grown) {
    cli_error("out of memory");
    return -1;
  }
  grown[(*n)++] = c;
  *list = grown;
  return 0;
}

int cli_acl_permits(const cli_acl_t *acl, const sk_sockaddr_t *peer) {
  int fam = peer->ss.ss_family;
  if (fam != AF_INET && fam != AF_INET6)
    return 1;
  for (int i = 0; i < acl->ndeny; i++)
    if (sk_cidr_match(&acl->deny[i], peer))
      return 0;
  if (acl->nallow == 0)
    return 1;
  for (int i = 0; i < acl->nallow; i++)
    if (sk_cidr_match(&acl->allow[i], peer))
      return 1;
  return 0;
}

void cli_acl_free(cli_acl_t *acl) {
  free(acl->allow);
  free(acl->deny);
  memset(acl, 0, sizeof *acl);
}
