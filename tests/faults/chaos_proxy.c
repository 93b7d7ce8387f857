/*
 * chaos_proxy: a TCP relay for fault tests.
 *
 * It listens (default 127.0.0.1:0), prints the bound port on standard
 * output, and relays every accepted connection to --target.  Each direction
 * ("up" is client -> target, "down" is target -> client) can independently:
 *
 *   --DIR-delay MS         hold every chunk read for MS milliseconds before
 *                          forwarding it (a latency, not a rate cap: reading
 *                          goes on while chunks wait, bounded by a queue)
 *   --DIR-split N          forward in write()s of a random 1..N bytes each
 *                          (TCP_NODELAY is on, so the receiver sees short reads)
 *   --DIR-stall-after B    after exactly B bytes forwarded, stop forwarding
 *   --DIR-stall-ms T       ... for T milliseconds (once)
 *   --DIR-cut-at B         after exactly B bytes forwarded, cut the stream:
 *   --DIR-cut rst|fin      rst (default): once the receiver's kernel has
 *                          acknowledged the B bytes (bounded wait), abort both
 *                          sockets with SO_LINGER {1,0}: both peers get a
 *                          reset.  fin: shut down the write half towards the
 *                          receiver (it reads EOF after byte B) and silently
 *                          discard the rest the sender sends that way.
 *
 * Resets are propagated: when one side resets or fails, the other side is
 * reset too.  A clean EOF is forwarded as a FIN (shutdown SHUT_WR) once the
 * queue of that direction has drained.
 *
 * Every connection gets its own thread running one poll() loop over its two
 * non-blocking sockets; a cut therefore never races another thread.  The
 * random split sizes come from --seed (printed on stderr), so a failing run
 * can be replayed.  This is a test tool: it favours being obviously correct
 * over being fast, and it is built with the tree so that it cannot rot.
 *
 * Standalone build:  cc -std=c11 -O2 -pthread chaos_proxy.c -o chaos_proxy
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_MAX (64 * 1024)       /* largest single read from a source */
#define QUEUE_MAX (4 * 1024 * 1024) /* bytes held per direction (backpressure) */
#define CONNECT_TIMEOUT_MS 5000
#define DRAIN_MAX_MS 2000 /* longest wait for the bytes before a cut to be acked */

enum { DIR_UP = 0, DIR_DOWN = 1 };
enum cut_kind { CUT_RST, CUT_FIN };

/* ---- configuration ------------------------------------------------------ */

struct dir_opts {
  uint64_t delay_ms;
  size_t split;         /* 0: forward whole chunks */
  uint64_t stall_after; /* UINT64_MAX: never */
  uint64_t stall_ms;
  uint64_t cut_at; /* UINT64_MAX: never */
  enum cut_kind cut;
};

struct opts {
  const char *listen_host;
  const char *listen_port;
  const char *target_host;
  const char *target_port;
  const char *port_file;
  int once;
  uint64_t seed;
  struct dir_opts dir[2];
};

static struct opts g_opts;
static struct addrinfo *g_target;
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const dir_name[2] = {"up", "down"};

/* Prints one line on stderr, prefixed with the program name.  Lines from
 * different connection threads never interleave. */
static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&g_log_lock);
  fputs("chaos_proxy: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  pthread_mutex_unlock(&g_log_lock);
}

static void usage(FILE *to) {
  fputs("usage: chaos_proxy --target HOST:PORT [options]\n"
        "  --listen HOST:PORT      where to listen (default 127.0.0.1:0)\n"
        "  --port-file FILE        write the bound port to FILE once listening\n"
        "  --once                  relay one connection, then exit\n"
        "  --seed N                seed for the random split sizes\n"
        "per direction (DIR is up = client->target, down = target->client):\n"
        "  --DIR-delay MS          hold each chunk MS milliseconds before forwarding\n"
        "  --DIR-split N           forward in random 1..N byte writes\n"
        "  --DIR-stall-after B     after B bytes forwarded, stall ...\n"
        "  --DIR-stall-ms T        ... for T milliseconds\n"
        "  --DIR-cut-at B          after B bytes forwarded, cut the stream\n"
        "  --DIR-cut rst|fin       how to cut (default rst)\n"
        "The bound port is printed on standard output.\n",
        to);
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  unsigned long long v;
  if (s == NULL || *s == '\0' || *s == '-')
    return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return -1;
  *out = (uint64_t)v;
  return 0;
}

/* Splits "host:port" or "[v6]:port" in place.  Returns 0, or -1 when the
 * text has no port. */
static int split_hostport(char *s, const char **host, const char **port) {
  char *colon;
  if (s[0] == '[') {
    char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':')
      return -1;
    *close = '\0';
    *host = s + 1;
    *port = close + 2;
    return 0;
  }
  colon = strrchr(s, ':');
  if (colon == NULL)
    return -1;
  *colon = '\0';
  *host = s;
  *port = colon + 1;
  return 0;
}

static void die_usage(const char *what, const char *arg) {
  fprintf(stderr, "chaos_proxy: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
  usage(stderr);
  exit(2);
}

/* Handles one --up-X / --down-X option.  Returns 0 when it was one. */
static int parse_dir_opt(const char *name, const char *val) {
  int d;
  uint64_t v = 0;
  struct dir_opts *o;

  if (strncmp(name, "--up-", 5) == 0) {
    d = DIR_UP;
    name += 5;
  } else if (strncmp(name, "--down-", 7) == 0) {
    d = DIR_DOWN;
    name += 7;
  } else {
    return -1;
  }
  o = &g_opts.dir[d];
  if (val == NULL)
    die_usage("option needs a value", name);
  if (strcmp(name, "cut") == 0) {
    if (strcmp(val, "rst") == 0)
      o->cut = CUT_RST;
    else if (strcmp(val, "fin") == 0)
      o->cut = CUT_FIN;
    else
      die_usage("--DIR-cut takes rst or fin", val);
    return 0;
  }
  if (parse_u64(val, &v) != 0)
    die_usage("bad number", val);
  if (strcmp(name, "delay") == 0)
    o->delay_ms = v;
  else if (strcmp(name, "split") == 0)
    o->split = (size_t)v;
  else if (strcmp(name, "stall-after") == 0)
    o->stall_after = v;
  else if (strcmp(name, "stall-ms") == 0)
    o->stall_ms = v;
  else if (strcmp(name, "cut-at") == 0)
    o->cut_at = v;
  else
    die_usage("unknown option", name - (d == DIR_UP ? 5 : 7));
  return 0;
}

static void parse_args(int argc, char **argv) {
  static char listen_buf[256] = "127.0.0.1:0";
  static char target_buf[256];
  int have_target = 0;
  int seeded = 0;

  for (int d = 0; d < 2; d++) {
    g_opts.dir[d].stall_after = UINT64_MAX;
    g_opts.dir[d].cut_at = UINT64_MAX;
    g_opts.dir[d].cut = CUT_RST;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;

    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(a, "--once") == 0) {
      g_opts.once = 1;
      continue;
    } else if (strcmp(a, "--target") == 0 || strcmp(a, "--listen") == 0) {
      char *buf = a[2] == 't' ? target_buf : listen_buf;
      if (val == NULL || strlen(val) >= sizeof target_buf)
        die_usage("bad address", val);
      memcpy(buf, val, strlen(val) + 1);
      if (a[2] == 't')
        have_target = 1;
    } else if (strcmp(a, "--port-file") == 0) {
      if (val == NULL)
        die_usage("option needs a value", a);
      g_opts.port_file = val;
    } else if (strcmp(a, "--seed") == 0) {
      if (parse_u64(val, &g_opts.seed) != 0)
        die_usage("bad seed", val);
      seeded = 1;
    } else if (parse_dir_opt(a, val) != 0) {
      die_usage("unknown option", a);
    }
    i++; /* every option but --once and --help takes a value */
  }
  if (!have_target)
    die_usage("--target is required", NULL);
  if (split_hostport(target_buf, &g_opts.target_host, &g_opts.target_port) != 0)
    die_usage("bad --target (want HOST:PORT)", target_buf);
  if (split_hostport(listen_buf, &g_opts.listen_host, &g_opts.listen_port) != 0)
    die_usage("bad --listen (want HOST:PORT)", listen_buf);
  if (!seeded) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g_opts.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
  }
  for (int d = 0; d < 2; d++) {
    const struct dir_opts *o = &g_opts.dir[d];
    if (o->cut_at != UINT64_MAX && o->stall_after != UINT64_MAX && o->stall_after > o->cut_at)
      logf_("warning: %s stall-after is past cut-at; the stall never happens", dir_name[d]);
  }
}

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* xorshift64*: small, seedable, and good enough for picking write sizes. */
static uint64_t rng_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * UINT64_C(2685821657736338717);
}

static int set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return -1;
  return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Arms SO_LINGER {1,0} so that the next close() sends a reset. */
static void arm_reset(int fd) {
  struct linger lg = {1, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Connects to the first target address that answers within the timeout.
 * Returns a connected, non-blocking socket, or -1 with errno set. */
static int connect_target(void) {
  int saved = ECONNREFUSED;
  for (struct addrinfo *ai = g_target; ai != NULL; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    if (set_nonblock(fd) == 0) {
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
      if (errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof err;
        int r = poll(&p, 1, CONNECT_TIMEOUT_MS);
        if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
          return fd;
        saved = r == 0 ? ETIMEDOUT : (err != 0 ? err : errno);
      } else {
        saved = errno;
      }
    } else {
      saved = errno;
    }
    close(fd);
  }
  errno = saved;
  return -1;
}

/* ---- one direction of one connection ------------------------------------ */

struct chunk {
  struct chunk *next;
  uint64_t due_ms; /* forward no earlier than this */
  size_t len, off;
  unsigned char data[];
};

struct dir {
  const struct dir_opts *o;
  const char *name;
  int src, dst;
  struct chunk *head, *tail;
  size_t queued;        /* bytes in the queue not yet forwarded */
  uint64_t in_bytes;    /* read from src */
  uint64_t out_bytes;   /* written to dst */
  uint64_t dropped;     /* read after a fin cut, thrown away */
  uint64_t writes;      /* send() calls that moved bytes */
  uint64_t stall_until; /* 0: not stalling */
  int stalled_once;
  int src_eof;
  int dst_shut; /* FIN sent towards dst */
  int cut_fin;  /* stream was cut with a FIN */
  int want_out; /* last write hit EAGAIN */
  uint64_t rng;
};

static void dir_free(struct dir *d) {
  while (d->head != NULL) {
    struct chunk *c = d->head;
    d->head = c->next;
    free(c);
  }
  d->tail = NULL;
  d->queued = 0;
}

/* Done: nothing more will ever be forwarded in this direction. */
static int dir_done(const struct dir *d) {
  return d->src_eof && (d->dst_shut || d->cut_fin) && d->head == NULL;
}

/* Reads one chunk from the source into the queue (or drops it after a fin
 * cut).  Returns 0, or -1 with errno set when the source failed. */
static int dir_read(struct dir *d, uint64_t now) {
  size_t room = QUEUE_MAX - d->queued;
  size_t want = room < CHUNK_MAX ? room : CHUNK_MAX;
  struct chunk *c;
  ssize_t n;

  if (d->cut_fin) {
    unsigned char sink[CHUNK_MAX];
    n = recv(d->src, sink, sizeof sink, 0);
    if (n > 0)
      d->dropped += (uint64_t)n;
  } else {
    c = malloc(sizeof *c + want);
    if (c == NULL)
      return -1;
    n = recv(d->src, c->data, want, 0);
    if (n > 0) {
      c->next = NULL;
      c->len = (size_t)n;
      c->off = 0;
      c->due_ms = now + d->o->delay_ms;
      if (d->tail != NULL)
        d->tail->next = c;
      else
        d->head = c;
      d->tail = c;
      d->queued += (size_t)n;
      d->in_bytes += (uint64_t)n;
    } else {
      free(c);
    }
  }
  if (n == 0) {
    d->src_eof = 1;
    return 0;
  }
  if (n < 0)
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
  return 0;
}

/* Result of dir_write. */
enum { FWD_OK = 0, FWD_CUT_RST = 1, FWD_ERR = -1 };

/* Waits, at most max_ms, until the peer has acknowledged everything written
 * to fd.  An abortive close discards what is still in the send queue, so
 * without this the receiver of a "cut at B with rst" could get fewer than
 * B bytes (autocorking holds small writes back, for one). */
static void wait_acked(int fd, int max_ms) {
  for (int waited = 0; waited < max_ms; waited++) {
    int unacked = 0;
    if (ioctl(fd, SIOCOUTQ, &unacked) != 0 || unacked == 0)
      return;
    poll(NULL, 0, 1);
  }
}

/* Cuts the stream when exactly cut_at bytes have been forwarded.  Returns
 * FWD_CUT_RST when the whole connection must be aborted, else FWD_OK. */
static int dir_check_cut(struct dir *d) {
  if (d->cut_fin || d->out_bytes != d->o->cut_at)
    return FWD_OK;
  if (d->o->cut == CUT_RST) {
    wait_acked(d->dst, DRAIN_MAX_MS);
    logf_("%s: cut (rst) after %" PRIu64 " bytes", d->name, d->out_bytes);
    return FWD_CUT_RST;
  }
  logf_("%s: cut (fin) after %" PRIu64 " bytes", d->name, d->out_bytes);
  (void)shutdown(d->dst, SHUT_WR);
  d->dst_shut = 1;
  d->cut_fin = 1;
  d->dropped += d->queued;
  dir_free(d);
  return FWD_OK;
}

/* Forwards what is due, honouring split, stall and cut.  Returns FWD_OK,
 * FWD_CUT_RST when the connection must be aborted by a cut, or FWD_ERR with
 * errno set when the destination failed. */
static int dir_write(struct dir *d, uint64_t now) {
  const struct dir_opts *o = d->o;

  d->want_out = 0;
  if (dir_check_cut(d) != FWD_OK)
    return FWD_CUT_RST;
  while (d->head != NULL && d->head->due_ms <= now && !d->cut_fin) {
    struct chunk *c = d->head;
    size_t piece = c->len - c->off;
    ssize_t n;

    if (d->stall_until != 0) {
      if (now < d->stall_until)
        return FWD_OK;
      d->stall_until = 0;
      logf_("%s: stall over after %" PRIu64 " bytes", d->name, d->out_bytes);
    }
    /* Stop exactly at the stall and cut points. */
    if (o->cut_at != UINT64_MAX && o->cut_at - d->out_bytes < piece)
      piece = (size_t)(o->cut_at - d->out_bytes);
    if (!d->stalled_once && o->stall_after != UINT64_MAX && o->stall_after - d->out_bytes < piece)
      piece = (size_t)(o->stall_after - d->out_bytes);
    if (o->split > 0 && piece > 0) {
      size_t r = 1 + (size_t)(rng_next(&d->rng) % o->split);
      if (r < piece)
        piece = r;
    }
    if (piece > 0) {
      n = send(d->dst, c->data + c->off, piece, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          d->want_out = 1;
          return FWD_OK;
        }
        if (errno == EINTR)
          continue;
        return FWD_ERR;
      }
      c->off += (size_t)n;
      d->writes++;
      d->queued -= (size_t)n;
      d->out_bytes += (uint64_t)n;
      if (c->off == c->len) {
        d->head = c->next;
        if (d->head == NULL)
          d->tail = NULL;
        free(c);
      }
    }
    if (!d->stalled_once && d->out_bytes == o->stall_after) {
      d->stalled_once = 1;
      if (o->stall_ms > 0) {
        d->stall_until = now + o->stall_ms;
        logf_("%s: stalling %" PRIu64 " ms after %" PRIu64 " bytes", d->name, o->stall_ms,
              d->out_bytes);
      }
    }
    if (dir_check_cut(d) != FWD_OK)
      return FWD_CUT_RST;
  }
  if (d->src_eof && d->head == NULL && !d->dst_shut) {
    (void)shutdown(d->dst, SHUT_WR);
    d->dst_shut = 1;
  }
  return FWD_OK;
}

/* ---- one connection ----------------------------------------------------- */

struct conn {
  unsigned id;
  int client;
};

/* Relays one connection until both directions are done or it is aborted.
 * Takes over c (and its client socket) and frees it. */
static void *conn_main(void *arg) {
  struct conn *c = arg;
  struct dir dirs[2];
  const char *end = "eof";
  int saved = 0;
  int one = 1;
  int server = connect_target();

  if (server < 0) {
    logf_("conn %u: connect %s:%s: %s", c->id, g_opts.target_host, g_opts.target_port,
          strerror(errno));
    arm_reset(c->client);
    close(c->client);
    free(c);
    return NULL;
  }
  (void)set_nonblock(c->client);
  (void)setsockopt(c->client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  (void)setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  memset(dirs, 0, sizeof dirs);
  for (int i = 0; i < 2; i++) {
    dirs[i].o = &g_opts.dir[i];
    dirs[i].name = dir_name[i];
    dirs[i].rng = g_opts.seed * 2 + (uint64_t)i + (uint64_t)c->id * 1000003u;
    if (dirs[i].rng == 0)
      dirs[i].rng = 0x9e3779b97f4a7c15u;
  }
  dirs[DIR_UP].src = c->client;
  dirs[DIR_UP].dst = server;
  dirs[DIR_DOWN].src = server;
  dirs[DIR_DOWN].dst = c->client;

  for (;;) {
    struct pollfd pfd[2] = {{c->client, 0, 0}, {server, 0, 0}};
    uint64_t now = now_ms();
    uint64_t wake = UINT64_MAX;
    int timeout, r, abort_conn = 0;

    for (int i = 0; i < 2; i++) {
      int w = dir_write(&dirs[i], now);
      if (w == FWD_CUT_RST) {
        end = "cut-rst";
        abort_conn = 1;
      } else if (w == FWD_ERR) {
        saved = errno;
        end = "error";
        abort_conn = 1;
      }
      if (abort_conn)
        break;
    }
    if (abort_conn)
      break;
    if (dir_done(&dirs[DIR_UP]) && dir_done(&dirs[DIR_DOWN]))
      break;

    for (int i = 0; i < 2; i++) {
      struct dir *d = &dirs[i];
      struct pollfd *src = d->src == c->client ? &pfd[0] : &pfd[1];
      struct pollfd *dst = d->dst == c->client ? &pfd[0] : &pfd[1];
      if (!d->src_eof && (d->cut_fin || d->queued < QUEUE_MAX))
        src->events |= POLLIN;
      if (d->want_out)
        dst->events |= POLLOUT;
      if (d->stall_until != 0 && d->stall_until < wake)
        wake = d->stall_until;
      else if (d->stall_until == 0 && !d->want_out && d->head != NULL && d->head->due_ms > now &&
               d->head->due_ms < wake)
        wake = d->head->due_ms;
    }
    /* A socket with no interest is left out: poll() would report its
     * POLLHUP over and over. */
    for (int i = 0; i < 2; i++)
      if (pfd[i].events == 0)
        pfd[i].fd = -1;
    timeout = wake == UINT64_MAX ? -1 : (int)(wake > now ? wake - now : 0);
    r = poll(pfd, 2, timeout);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      saved = errno;
      end = "error";
      break;
    }
    now = now_ms();
    for (int i = 0; i < 2 && !abort_conn; i++) {
      struct dir *d = &dirs[i];
      struct pollfd *src = d->src == c->client ? &pfd[0] : &pfd[1];
      if (!d->src_eof && (src->revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        if (dir_read(d, now) != 0) {
          saved = errno;
          end = "error";
          abort_conn = 1;
        }
      }
    }
    if (abort_conn)
      break;
  }

  if (strcmp(end, "eof") != 0) {
    /* A cut or a failure on one side: reset both peers. */
    arm_reset(c->client);
    arm_reset(server);
  }
  for (int i = 0; i < 2; i++)
    logf_("conn %u: %s: %" PRIu64 " bytes in, %" PRIu64 " out in %" PRIu64 " writes, %" PRIu64
          " dropped",
          c->id, dirs[i].name, dirs[i].in_bytes, dirs[i].out_bytes, dirs[i].writes,
          dirs[i].dropped);
  logf_("conn %u: end: %s%s%s", c->id, end, saved ? ": " : "", saved ? strerror(saved) : "");
  dir_free(&dirs[DIR_UP]);
  dir_free(&dirs[DIR_DOWN]);
  close(server);
  close(c->client);
  free(c);
  return NULL;
}

/* ---- listener ----------------------------------------------------------- */

/* Binds and listens on --listen.  Returns the socket; exits on failure. */
static int open_listener(unsigned *port_out) {
  struct addrinfo hints, *res = NULL;
  int fd = -1, one = 1, rc, saved = 0;

  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  rc = getaddrinfo(*g_opts.listen_host ? g_opts.listen_host : NULL, g_opts.listen_port, &hints,
                   &res);
  if (rc != 0) {
    fprintf(stderr, "chaos_proxy: listen %s:%s: %s\n", g_opts.listen_host, g_opts.listen_port,
            gai_strerror(rc));
    exit(1);
  }
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
      break;
    saved = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    fprintf(stderr, "chaos_proxy: listen %s:%s: %s\n", g_opts.listen_host, g_opts.listen_port,
            strerror(saved));
    exit(1);
  }
  {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
      perror("chaos_proxy: getsockname");
      exit(1);
    }
    if (ss.ss_family == AF_INET)
      *port_out = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else
      *port_out = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  return fd;
}

/* Writes the port to FILE through a temporary name and rename(), so that a
 * reader never sees a half-written number. */
static void write_port_file(const char *path, unsigned port) {
  char tmp[PATH_MAX];
  FILE *f;
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    fprintf(stderr, "chaos_proxy: port file name too long\n");
    exit(1);
  }
  f = fopen(tmp, "w");
  if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
    fprintf(stderr, "chaos_proxy: write %s: %s\n", path, strerror(errno));
    exit(1);
  }
}

int main(int argc, char **argv) {
  struct addrinfo hints;
  unsigned port = 0, next_id = 1;
  int lfd, rc;

  parse_args(argc, argv);

  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  rc = getaddrinfo(g_opts.target_host, g_opts.target_port, &hints, &g_target);
  if (rc != 0) {
    fprintf(stderr, "chaos_proxy: target %s:%s: %s\n", g_opts.target_host, g_opts.target_port,
            gai_strerror(rc));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  lfd = open_listener(&port);
  logf_("seed %" PRIu64 ", relaying port %u to %s:%s", g_opts.seed, port, g_opts.target_host,
        g_opts.target_port);
  if (g_opts.port_file != NULL)
    write_port_file(g_opts.port_file, port);
  printf("%u\n", port);
  fflush(stdout);

  for (;;) {
    struct conn *c;
    pthread_t tid;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        logf_("accept: %s; retrying in 100 ms", strerror(errno));
        poll(NULL, 0, 100);
        continue;
      }
      logf_("accept: %s", strerror(errno));
      return 1;
    }
    c = malloc(sizeof *c);
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->id = next_id++;
    c->client = fd;
    if (g_opts.once) {
      close(lfd);
      conn_main(c);
      return 0;
    }
    if (pthread_create(&tid, NULL, conn_main, c) != 0) {
      logf_("conn %u: cannot start a thread", c->id);
      arm_reset(fd);
      close(fd);
      free(c);
      continue;
    }
    pthread_detach(tid);
  }
}
