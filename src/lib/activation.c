/* activation.c - listening sockets handed over by systemd (socket
 * activation: the sd_listen_fds protocol, LISTEN_PID / LISTEN_FDS /
 * LISTEN_FDNAMES, descriptors from 3 on).
 *
 * The environment is read once, the first time a listener is opened, and
 * removed so children (--exec) do not see it. sk_listener_open then takes a
 * passed socket instead of binding whenever one matches the endpoint: the
 * same socket type, a listening state for stream kinds, and the same bound
 * address (the port, and the host when the endpoint names an address or
 * every address; the path for unix kinds). A socket the process never
 * claims stays open and is reported by sk_activation_unclaimed. Our own
 * parser: the protocol is two environment variables and a descriptor range,
 * and libsystemd would be a dependency for that alone. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/net.h"

#define FIRST_FD 3 /* SD_LISTEN_FDS_START */

static struct {
  int fd;
  int claimed;
  char name[SK_ACTIVATION_NAME_MAX + 1];
} passed[SK_ACTIVATION_MAX];
static int npassed;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void read_environment(void) {
  const char *pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");
  const char *names = getenv("LISTEN_FDNAMES");
  char *end;
  if (!pid || !count)
    return;
  long p = strtol(pid, &end, 10);
  if (*end || p != (long)getpid())
    return; /* meant for another process (our parent, say) */
  long n = strtol(count, &end, 10);
  if (*end || n < 0)
    n = 0;
  if (n > SK_ACTIVATION_MAX)
    n = SK_ACTIVATION_MAX;
  for (int i = 0; i < (int)n; i++) {
    int fd = FIRST_FD + i;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
      continue; /* not open after all */
    passed[npassed].fd = fd;
    passed[npassed].claimed = 0;
    passed[npassed].name[0] = '\0';
    if (names) { /* "a:b:c", one name per descriptor */
      size_t len = strcspn(names, ":");
      if (len <= SK_ACTIVATION_NAME_MAX) {
        memcpy(passed[npassed].name, names, len);
        passed[npassed].name[len] = '\0';
      }
      names = names[len] ? names + len + 1 : NULL;
    }
    npassed++;
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

/* 1 if the inet address sa equals addr (IPv4-mapped IPv6 counts as IPv4). */
static int inet_same_host(const struct sockaddr_storage *sa, const struct sockaddr *addr) {
  const void *a = NULL, *b = NULL;
  size_t len = 0;
  struct in_addr a4;
  if (sa->ss_family == AF_INET6 &&
      IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
    memcpy(&a4, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr + 12, 4);
    a = &a4;
    len = 4;
  } else if (sa->ss_family == AF_INET) {
    a = &((const struct sockaddr_in *)sa)->sin_addr;
    len = 4;
  } else {
    a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    len = 16;
  }
  if (addr->sa_family == AF_INET && len == 4)
    b = &((const struct sockaddr_in *)addr)->sin_addr;
  else if (addr->sa_family == AF_INET6 && len == 16)
    b = &((const struct sockaddr_in6 *)addr)->sin6_addr;
  return b && memcmp(a, b, len) == 0;
}

static int inet_is_any(const struct sockaddr_storage *sa) {
  if (sa->ss_family == AF_INET)
    return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
  return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* 1 if the passed socket fd is the one ep asks for. */
static int matches(int fd, const sk_endpoint_t *ep) {
  int type = 0, listening = 0;
  socklen_t sl = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0 || type != sk_endpoint_socktype(ep))
    return 0;
  sl = sizeof listening;
  if (type != SOCK_DGRAM &&
      (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &sl) < 0 || !listening))
    return 0;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return 0;
  if (ep->kind != SK_EP_TCP && ep->kind != SK_EP_UDP) {
    size_t off = offsetof(struct sockaddr_un, sun_path);
    const char *sp = ((const struct sockaddr_un *)&ss)->sun_path;
    size_t plen = len > off ? len - off : 0;
    if (ss.ss_family != AF_UNIX || plen == 0)
      return 0;
    if (ep->flags & SK_EP_ABSTRACT)
      return sp[0] == '\0' && plen - 1 == strlen(ep->path) &&
             memcmp(sp + 1, ep->path, plen - 1) == 0;
    char bound[sizeof((struct sockaddr_un *)0)->sun_path + 1], want[PATH_MAX];
    memcpy(bound, sp, plen);
    bound[plen] = '\0';
    if (strcmp(bound, ep->path) == 0)
      return 1;
    /* A relative endpoint against the absolute path systemd bound. */
    char cwd[PATH_MAX];
    return ep->path[0] != '/' && getcwd(cwd, sizeof cwd) &&
           snprintf(want, sizeof want, "%s/%s", cwd, ep->path) < (int)sizeof want &&
           strcmp(bound, want) == 0;
  }
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
    return 0;
  int port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                           : ((struct sockaddr_in6 *)&ss)->sin6_port);
  if (ep->port && port != ep->port)
    return 0;
  if (ep->host[0] == '\0')
    return inet_is_any(&ss);
  struct addrinfo hints, *res, *ai;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = type;
  hints.ai_flags = AI_PASSIVE;
  if (getaddrinfo(ep->host, NULL, &hints, &res) != 0)
    return 0;
  int same = 0;
  for (ai = res; ai && !same; ai = ai->ai_next)
    same = inet_same_host(&ss, ai->ai_addr);
  freeaddrinfo(res);
  return same;
}

int sk__activation_take(const sk_endpoint_t *ep, sk_listener_t *l) {
  pthread_once(&once, read_environment);
  if (npassed == 0)
    return 0;
  int taken = 0;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < npassed && !taken; i++) {
    if (passed[i].claimed || !matches(passed[i].fd, ep))
      continue;
    passed[i].claimed = 1;
    taken = 1;
    l->fd = passed[i].fd;
  }
  pthread_mutex_unlock(&lock);
  if (!taken)
    return 0;
  if (sk_net_set_nonblock(l->fd, 1) < 0)
    return sk__neg_errno();
  l->inherited = 1;
  l->dev = l->ino = 0; /* the unix socket file belongs to systemd: never removed */
  l->bound.len = sizeof l->bound.ss;
  getsockname(l->fd, (struct sockaddr *)&l->bound.ss, &l->bound.len);
  return 1;
}

int sk_activation_unclaimed(int *fds, char (*names)[SK_ACTIVATION_NAME_MAX + 1], int max) {
  pthread_once(&once, read_environment);
  int n = 0;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < npassed; i++) {
    if (passed[i].claimed)
      continue;
    if (n < max) {
      fds[n] = passed[i].fd;
      if (names)
        memcpy(names[n], passed[i].name, sizeof names[n]);
    }
    n++;
  }
  pthread_mutex_unlock(&lock);
  return n;
}
