/* listen.c - `sockit listen ENDPOINT`: the netcat server.
 *
 * Three shapes: one connection bridged to stdio (the default), many stream
 * clients at once on one event loop (--keep-open), and datagram sockets,
 * where every datagram is printed and stdin lines answer the latest peer.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "cli/tlsopt.h"
#include "sockit/tls.h"

static const char usage[] =
    "Usage: sockit listen [OPTIONS] ENDPOINT\n"
    "\n"
    "Listens on ENDPOINT. By default accepts one connection and copies standard\n"
    "input to it and what it sends to standard output, like `nc -l`. Port 0 picks\n"
    "a free port; the address is printed as 'sockit: listening on ...'.\n"
    "\n"
    "Options:\n"
    "  -k, --keep-open         serve many clients at once: each client's data goes\n"
    "                          to stdout, stdin goes to every client\n"
    "  --max-conns N           with --keep-open, at most N clients at once (others\n"
    "                          wait in the backlog)\n"
    "  --allow CIDR            accept only peers in CIDR (repeatable)\n"
    "  --deny CIDR             refuse peers in CIDR (repeatable)\n"
    "  --port-file FILE        write the bound port to FILE once listening\n"
    "  --reuseport             set SO_REUSEPORT\n"
    "  --idle-timeout SECS     close a connection after SECS with no data (exit 1\n"
    "                          in the one-connection mode)\n"
    "  --crlf                  send input LF as CRLF\n"
    "  --no-shutdown           keep write halves open at end of input\n"
    "  --chunk                 datagram endpoints: one datagram per read, not per line\n"
    "  -q, --quiet             do not print the 'listening on' line\n"
    "  -v, --verbose           log connections on stderr\n"
    "  -h, --help              this help\n"
    "\n" CLI_TLS_HELP "\n"
    "Examples:\n"
    "  sockit listen tcp://:9000 > received.bin\n"
    "  sockit listen -k tcp://127.0.0.1:0 --port-file port\n"
    "  sockit listen udp://[::1]:5000\n";

#define READ_CHUNK 16384   /* a client is read only with this much room on stdout */
#define STDOUT_LIMIT (1u << 20)
#define CLIENT_OUT_LIMIT (256u * 1024u)
#define ACCEPTS_PER_WAKEUP 64

typedef struct client client_t;
typedef struct listen_state listen_state_t;

struct client {
  listen_state_t *st;
  sk_io_t io;
  int fd;
  int message; /* seqpacket: keep line = packet boundaries */
  sk_buf_t out;
  int rd_eof, shut, closing;
  sk_tls_t *tls;     /* tls:// listener: the client's session */
  sk_tls_hs_t *hs;   /* its handshake, while under way */
  unsigned rwant, wwant; /* what a TLS read / write waits for */
  uint64_t last_activity;
  sk_sockaddr_t peer;
  client_t *prev, *next;
};

struct listen_state {
  sk_loop_t *loop;
  sk_listener_t l;
  sk_io_t lio;
  char name[SK_ENDPOINT_STRLEN];
  cli_acl_t acl;
  int keep_open, verbose, crlf, no_shutdown, chunk;
  unsigned long max_conns;
  uint64_t idle_ms;
  int exit_code;
  sk_tls_ctx_t *tls_ctx; /* tls:// listener */
  uint64_t tls_timeout_ms;
  int shutting_down; /* the loop is gone: free at once, nothing is deferred */

  /* one-connection mode: the accepted socket */
  int accepted_fd;

  /* --keep-open stream mode */
  client_t *clients;
  unsigned long nclients;
  sk_timer_t sweep;
  uint64_t last_shed_log;

  /* stdout queue (keep-open and datagram modes) */
  sk_buf_t out;
  sk_io_t out_io;
  int out_was_full;

  /* stdin */
  sk_io_t in_io;
  int in_eof;
  sk_buf_t in_buf; /* datagram mode: input waiting to be sent */

  /* datagram mode */
  sk_sockaddr_t last_peer;
  int have_peer;
};

static void update_all(listen_state_t *st);
static void update_stdin(listen_state_t *st);
static void client_update(client_t *c);

static int is_dgram(const listen_state_t *st) {
  return st->l.ep.kind == SK_EP_UDP || st->l.ep.kind == SK_EP_UNIX_DGRAM;
}

/* ---- stdout queue ------------------------------------------------------------ */

static int out_has_room(const listen_state_t *st, size_t need) {
  return sk_buf_space(&st->out) >= need;
}

static void out_update(listen_state_t *st) {
  sk_io_set(st->loop, &st->out_io, sk_buf_len(&st->out) ? SK_WRITABLE : 0);
}

static void on_stdout(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  listen_state_t *st = io->data;
  (void)loop;
  ssize_t n = sk_buf_write_fd(&st->out, STDOUT_FILENO, 0);
  if (n < 0 && n != SK_EAGAIN) {
    if (n != -EPIPE)
      cli_error("write standard output: %s", sk_strerror((int)n));
    st->exit_code = n == -EPIPE ? EXIT_OK : EXIT_NET;
    sk_loop_stop(st->loop);
    return;
  }
  out_update(st);
  /* Room on stdout again: whatever was held back for it may read again
   * (the datagram socket; every client, whatever threshold it waits on). */
  if (is_dgram(st)) {
    if (!sk_buf_len(&st->in_buf) || !st->have_peer)
      sk_io_set(st->loop, &st->lio, out_has_room(st, SK_MSG_MAX) ? SK_READABLE : 0);
  } else {
    for (client_t *c = st->clients; c; c = c->next)
      if (!c->closing)
        client_update(c);
  }
  update_all(st);
}

/* ---- clients (--keep-open) ----------------------------------------------------- */

static void free_client(sk_loop_t *loop, void *data) {
  client_t *c = data;
  (void)loop;
  sk_buf_free(&c->out);
  sk_tls_free(c->tls);
  free(c);
}

/* Closes c now and frees it after this round (we may be in its callback). */
static void close_client(client_t *c, const char *why) {
  listen_state_t *st = c->st;
  if (c->closing)
    return;
  c->closing = 1;
  if (st->verbose) {
    char p[SK_ENDPOINT_STRLEN];
    cli_error("%s: %s", sk_sockaddr_format(&c->peer, p, sizeof p), why);
  }
  sk_io_stop(st->loop, &c->io);
  sk_tls_handshake_cancel(c->hs);
  c->hs = NULL;
  close(c->fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    st->clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  st->nclients--;
  if (st->max_conns && st->nclients < st->max_conns && sk_io_active(&st->lio))
    sk_io_set(st->loop, &st->lio, SK_READABLE);
  if (st->shutting_down || sk_loop_defer(st->loop, free_client, c) < 0)
    free_client(st->loop, c);
  else
    update_all(st);
}

static void client_update(client_t *c) {
  listen_state_t *st = c->st;
  unsigned ev = 0;
  if (c->hs)
    return; /* the handshake watches the socket until it is done */
  if (!c->rd_eof && out_has_room(st, c->message ? SK_MSG_MAX : READ_CHUNK))
    ev |= c->rwant ? c->rwant : SK_READABLE;
  /* A packet client has something to send only once a whole line is there. */
  size_t sendable = c->message ? sk_buf_line_len(&c->out, SK_MSG_MAX, st->in_eof)
                               : sk_buf_len(&c->out);
  if (sendable || (st->in_eof && !c->shut && !st->no_shutdown && !sk_buf_len(&c->out)))
    ev |= c->wwant ? c->wwant : SK_WRITABLE;
  sk_io_set(st->loop, &c->io, ev);
}

static void client_flush(client_t *c) {
  listen_state_t *st = c->st;
  if (c->hs)
    return;
  while (sk_buf_len(&c->out)) {
    ssize_t n;
    if (c->tls) {
      unsigned want = 0;
      n = sk_tls_write(c->tls, sk_buf_head(&c->out), sk_buf_len(&c->out), &want);
      c->wwant = n == SK_EAGAIN ? want : 0;
      if (n > 0)
        sk_buf_consume(&c->out, (size_t)n);
    } else if (c->message) {
      size_t m = sk_buf_line_len(&c->out, SK_MSG_MAX, st->in_eof);
      if (m == 0)
        break;
      n = sk_net_send(c->fd, sk_buf_head(&c->out), m);
      if (n >= 0)
        sk_buf_consume(&c->out, m);
    } else {
      n = sk_buf_write_fd(&c->out, c->fd, 1);
    }
    if (n == SK_EAGAIN)
      return;
    if (n < 0) {
      close_client(c, sk_strerror((int)n));
      return;
    }
    c->last_activity = sk_loop_now(st->loop);
  }
  if (sk_buf_len(&c->out) == 0) {
    if (st->in_eof && !c->shut && !st->no_shutdown) {
      if (c->tls)
        sk_tls_close_notify(c->tls);
      shutdown(c->fd, SHUT_WR);
      c->shut = 1;
    }
    if (c->rd_eof)
      close_client(c, "closed");
  }
}

static void on_client(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  client_t *c = io->data;
  listen_state_t *st = c->st;
  (void)loop;
  if (c->tls) {
    /* Either readiness may be what a TLS read waits for; read until the
     * session is empty (its buffered bytes do not wake the socket). */
    while (!c->rd_eof && out_has_room(st, READ_CHUNK)) {
      size_t got;
      char *p = sk_buf_reserve(&st->out, READ_CHUNK, &got);
      unsigned want = 0;
      ssize_t n = p ? sk_tls_read(c->tls, p, got, &want) : SK_EAGAIN;
      c->rwant = n == SK_EAGAIN ? want : 0;
      if (n > 0) {
        sk_buf_commit(&st->out, (size_t)n);
        c->last_activity = sk_loop_now(st->loop);
        out_update(st);
      } else if (n == SK_EOF) {
        c->rd_eof = 1;
      } else if (n == SK_EAGAIN) {
        break;
      } else {
        close_client(c, sk_tls_last_error(c->tls)[0] ? sk_tls_last_error(c->tls)
                                                     : sk_strerror((int)n));
        return;
      }
    }
    ev |= SK_WRITABLE;
  } else if (ev & (SK_READABLE | SK_HANGUP)) {
    ssize_t n = sk_buf_read_fd(&st->out, c->fd, c->message ? SK_MSG_MAX : READ_CHUNK);
    if (n > 0) {
      c->last_activity = sk_loop_now(st->loop);
      out_update(st);
    } else if (n == SK_EOF) {
      c->rd_eof = 1;
    } else if (n != SK_EAGAIN && n != SK_ETOOBIG) {
      close_client(c, sk_strerror((int)n));
      return;
    }
  }
  int was_full = sk_buf_space(&c->out) < READ_CHUNK;
  if (ev & SK_WRITABLE || c->rd_eof)
    client_flush(c);
  if (c->closing)
    return;
  client_update(c);
  /* This client had held stdin back; now it has room, stdin may go on. */
  if (was_full && sk_buf_space(&c->out) >= READ_CHUNK)
    update_stdin(st);
  /* The shared stdout queue may have just filled: hold every client. */
  int full = !out_has_room(st, READ_CHUNK);
  if (full != st->out_was_full)
    update_all(st);
}

static void shed_log(listen_state_t *st, int err) {
  uint64_t now = sk_loop_now(st->loop);
  if (st->last_shed_log && now - st->last_shed_log < 1000)
    return;
  st->last_shed_log = now;
  cli_error("accept %s: %s; closing new connections until descriptors are free", st->name,
            sk_strerror(err));
}

/* The TLS handshake of a client ended: it joins, or is closed. */
static void client_tls_done(void *data, int err, const char *msg) {
  client_t *c = data;
  c->hs = NULL;
  if (err < 0) {
    char p[SK_ENDPOINT_STRLEN];
    cli_error("tls %s: %s", sk_sockaddr_format(&c->peer, p, sizeof p), msg);
    close_client(c, "TLS handshake failed");
    return;
  }
  client_flush(c);
  if (!c->closing)
    client_update(c);
}

static void add_client(listen_state_t *st, int fd, const sk_sockaddr_t *peer) {
  client_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  c->st = st;
  c->fd = fd;
  c->peer = *peer;
  c->message = st->l.ep.kind == SK_EP_UNIX_SEQPACKET;
  c->last_activity = sk_loop_now(st->loop);
  sk_buf_init(&c->out, CLIENT_OUT_LIMIT);
  c->io.cb = on_client;
  c->io.data = c;
  if (sk_io_start(st->loop, &c->io, fd, 0) < 0) {
    close(fd);
    free(c);
    return;
  }
  c->next = st->clients;
  if (st->clients)
    st->clients->prev = c;
  st->clients = c;
  st->nclients++;
  if (st->verbose) {
    char p[SK_ENDPOINT_STRLEN];
    cli_error("connection from %s", sk_sockaddr_format(peer, p, sizeof p));
  }
  if (st->max_conns && st->nclients >= st->max_conns)
    sk_io_set(st->loop, &st->lio, 0);
  if (st->tls_ctx) {
    /* On the loop: a client stalled mid-handshake holds up nobody. */
    if (sk_tls_new(&c->tls, st->tls_ctx, fd, NULL) < 0 ||
        !(c->hs = sk_tls_handshake_async(st->loop, c->tls, fd, st->tls_timeout_ms,
                                         client_tls_done, c))) {
      close_client(c, "out of memory");
      return;
    }
  }
  if (st->in_eof)
    client_flush(c);
  if (!c->closing)
    client_update(c);
  update_all(st);
}

static void on_accept(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  listen_state_t *st = io->data;
  (void)ev;
  for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
    sk_sockaddr_t peer;
    int shed, fd = sk_net_accept_or_shed(st->l.fd, &peer, &shed);
    if (shed)
      shed_log(st, shed);
    if (fd == SK_EAGAIN)
      return;
    if (fd < 0) {
      cli_error("accept %s: %s", st->name, sk_strerror(fd));
      return;
    }
    if (!cli_acl_permits(&st->acl, &peer)) {
      if (st->verbose) {
        char p[SK_ENDPOINT_STRLEN];
        cli_error("refused %s (--allow/--deny)", sk_sockaddr_format(&peer, p, sizeof p));
      }
      close(fd);
      continue;
    }
    if (!st->keep_open) {
      st->accepted_fd = fd;
      sk_io_stop(loop, io);
      sk_loop_stop(loop);
      return;
    }
    add_client(st, fd, &peer);
    if (st->max_conns && st->nclients >= st->max_conns)
      return;
  }
}

/* Disconnects --keep-open clients idle for longer than --idle-timeout. */
static void on_sweep(sk_loop_t *loop, sk_timer_t *t) {
  listen_state_t *st = t->data;
  uint64_t now = sk_loop_now(loop);
  client_t *next;
  for (client_t *c = st->clients; c; c = next) {
    next = c->next;
    if (now - c->last_activity >= st->idle_ms)
      close_client(c, "idle timeout");
  }
}

/* ---- stdin --------------------------------------------------------------------- */

/* Stream mode: stdin is broadcast to every client. It is read only while
 * somebody is connected and every client's queue has room for a chunk. */
static void on_stdin_broadcast(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  listen_state_t *st = io->data;
  char buf[READ_CHUNK * 2];
  size_t max = st->crlf ? READ_CHUNK / 2 : READ_CHUNK;
  (void)loop;
  (void)ev;
  ssize_t n = sk_net_read(STDIN_FILENO, buf, max);
  if (n == SK_EAGAIN)
    return;
  if (n < 0) {
    if (n != SK_EOF)
      cli_error("read standard input: %s", sk_strerror((int)n));
    st->in_eof = 1;
    sk_io_stop(st->loop, io);
    for (client_t *c = st->clients, *next; c; c = next) {
      next = c->next;
      client_flush(c);
      if (!c->closing)
        client_update(c);
    }
    return;
  }
  if (st->crlf) {
    char conv[READ_CHUNK * 2];
    size_t m = 0;
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
        conv[m++] = '\r';
      conv[m++] = buf[i];
    }
    memcpy(buf, conv, m);
    n = (ssize_t)m;
  }
  for (client_t *c = st->clients, *next; c; c = next) {
    next = c->next;
    sk_buf_append(&c->out, buf, (size_t)n); /* room was checked before reading */
    client_flush(c);
    if (!c->closing)
      client_update(c);
  }
  update_all(st);
}

static int stdin_wanted_stream(const listen_state_t *st) {
  if (st->in_eof || st->nclients == 0)
    return 0;
  for (const client_t *c = st->clients; c; c = c->next)
    if (sk_buf_space(&c->out) < READ_CHUNK)
      return 0;
  return 1;
}

static void update_stdin(listen_state_t *st) {
  if (sk_io_active(&st->in_io)) {
    int want = st->l.ep.kind == SK_EP_UDP || st->l.ep.kind == SK_EP_UNIX_DGRAM
                   ? (st->have_peer && sk_buf_space(&st->in_buf) >= READ_CHUNK * 2 && !st->in_eof)
                   : stdin_wanted_stream(st);
    sk_io_set(st->loop, &st->in_io, want ? SK_READABLE : 0);
  }
}

/* Re-evaluates every watcher after the shared stdout queue or the set of
 * clients changed. */
static void update_all(listen_state_t *st) {
  int full = !out_has_room(st, READ_CHUNK);
  if (full != st->out_was_full) {
    st->out_was_full = full;
    for (client_t *c = st->clients; c; c = c->next)
      if (!c->closing)
        client_update(c);
  }
  update_stdin(st);
}

/* ---- datagram mode ---------------------------------------------------------------- */

/* Sends complete lines of stdin (or chunks) to the latest peer. */
static void dgram_send_pending(listen_state_t *st) {
  while (st->have_peer && sk_buf_len(&st->in_buf)) {
    size_t max = sk_net_msg_max(st->l.fd), held = sk_buf_len(&st->in_buf);
    size_t m = st->chunk ? (held < max ? held : max)
                         : sk_buf_line_len(&st->in_buf, max, st->in_eof);
    if (m == 0)
      break;
    ssize_t n = sendto(st->l.fd, sk_buf_head(&st->in_buf), m, MSG_NOSIGNAL | MSG_DONTWAIT,
                       (struct sockaddr *)&st->last_peer.ss, st->last_peer.len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      sk_io_set(st->loop, &st->lio, SK_READABLE | SK_WRITABLE);
      return;
    }
    if (n < 0) {
      char p[SK_ENDPOINT_STRLEN];
      cli_error("send to %s: %s", sk_sockaddr_format(&st->last_peer, p, sizeof p),
                strerror(errno));
    }
    sk_buf_consume(&st->in_buf, m);
  }
  sk_io_set(st->loop, &st->lio, out_has_room(st, SK_MSG_MAX) ? SK_READABLE : 0);
}

static void on_dgram(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  listen_state_t *st = io->data;
  (void)loop;
  if (ev & SK_READABLE) {
    for (int i = 0; i < 64 && out_has_room(st, SK_MSG_MAX); i++) {
      size_t got;
      char *p = sk_buf_reserve(&st->out, SK_MSG_MAX, &got);
      sk_sockaddr_t peer;
      peer.len = sizeof peer.ss;
      ssize_t n = p ? recvfrom(st->l.fd, p, got, 0, (struct sockaddr *)&peer.ss, &peer.len) : -1;
      if (n < 0)
        break; /* EAGAIN, or an ICMP error from an earlier reply: go on */
      if (!cli_acl_permits(&st->acl, &peer))
        continue;
      sk_buf_commit(&st->out, (size_t)n);
      if (peer.len > sizeof(sa_family_t)) {
        st->last_peer = peer;
        st->have_peer = 1;
      } else if (st->verbose) {
        cli_error("datagram from an unbound unix socket: replies cannot reach it");
      }
    }
    out_update(st);
  }
  dgram_send_pending(st);
  update_all(st);
}

static void on_stdin_dgram(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  listen_state_t *st = io->data;
  (void)loop;
  (void)ev;
  size_t got;
  char *p = sk_buf_reserve(&st->in_buf, READ_CHUNK, &got);
  ssize_t n = p ? sk_net_read(STDIN_FILENO, p, st->crlf ? got / 2 : got) : SK_ETOOBIG;
  if (n > 0) {
    if (st->crlf) {
      /* Expand LF to CRLF in place, from the back. */
      size_t extra = 0;
      for (ssize_t i = 0; i < n; i++)
        extra += p[i] == '\n';
      for (ssize_t i = n - 1, j = n - 1 + (ssize_t)extra; i >= 0; i--) {
        p[j--] = p[i];
        if (p[i] == '\n')
          p[j--] = '\r';
      }
      n += (ssize_t)extra;
    }
    sk_buf_commit(&st->in_buf, (size_t)n);
  } else if (n == SK_EOF || (n < 0 && n != SK_EAGAIN && n != SK_ETOOBIG)) {
    st->in_eof = 1;
    sk_io_stop(st->loop, io);
  }
  dgram_send_pending(st);
  update_all(st);
}

/* ---- the command ------------------------------------------------------------------- */

static void on_stop_signal(sk_loop_t *loop, int signo, void *data) {
  listen_state_t *st = data;
  (void)signo;
  st->exit_code = EXIT_OK;
  sk_loop_stop(loop);
}

enum { OPT_MAX_CONNS = 256, OPT_ALLOW, OPT_DENY, OPT_PORT_FILE, OPT_REUSEPORT, OPT_IDLE, OPT_CRLF,
       OPT_NO_SHUTDOWN, OPT_CHUNK };

static int run(int argc, char **argv) {
  static const struct option longopts[] = {{"keep-open", no_argument, 0, 'k'},
                                           {"max-conns", required_argument, 0, OPT_MAX_CONNS},
                                           {"allow", required_argument, 0, OPT_ALLOW},
                                           {"deny", required_argument, 0, OPT_DENY},
                                           {"port-file", required_argument, 0, OPT_PORT_FILE},
                                           {"reuseport", no_argument, 0, OPT_REUSEPORT},
                                           {"idle-timeout", required_argument, 0, OPT_IDLE},
                                           {"crlf", no_argument, 0, OPT_CRLF},
                                           {"no-shutdown", no_argument, 0, OPT_NO_SHUTDOWN},
                                           {"chunk", no_argument, 0, OPT_CHUNK},
                                           {"quiet", no_argument, 0, 'q'},
                                           {"verbose", no_argument, 0, 'v'},
                                           CLI_TLS_LONGOPTS,
                                           {0, 0, 0, 0}};
  listen_state_t st;
  memset(&st, 0, sizeof st);
  st.accepted_fd = -1;
  st.l.fd = -1;
  sk_sockopts_t sock;
  memset(&sock, 0, sizeof sock);
  sock.nodelay = 1;
  const char *port_file = NULL;
  int quiet = 0, c, code = EXIT_USAGE;
  cli_tls_t tls;
  memset(&tls, 0, sizeof tls);
  sk_tls_ctx_t *ctx = NULL;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "kqv", longopts, NULL)) != -1) {
    switch (c) {
    case 'k': st.keep_open = 1; break;
    case OPT_MAX_CONNS:
      if (cli_parse_uint(optarg, 1000000, &st.max_conns) < 0 || st.max_conns == 0) {
        code = cli_usage_error("listen", "bad --max-conns '%s': expected 1-1000000", optarg);
        goto out;
      }
      break;
    case OPT_ALLOW:
    case OPT_DENY:
      if (cli_acl_add(&st.acl, c == OPT_ALLOW, optarg) < 0)
        goto out;
      break;
    case OPT_PORT_FILE: port_file = optarg; break;
    case OPT_REUSEPORT: sock.reuseport = 1; break;
    case OPT_IDLE:
      if (cli_parse_seconds(optarg, &st.idle_ms) < 0) {
        code = cli_usage_error("listen", "bad --idle-timeout '%s': expected seconds", optarg);
        goto out;
      }
      break;
    case OPT_CRLF: st.crlf = 1; break;
    case OPT_NO_SHUTDOWN: st.no_shutdown = 1; break;
    case OPT_CHUNK: st.chunk = 1; break;
    case 'q': quiet = 1; break;
    case 'v': st.verbose = 1; break;
    default:
      if (c >= CLI_TLS_CA) {
        int r = cli_tls_option(&tls, c, optarg, "listen");
        if (r < 0)
          goto out;
        if (r > 0)
          break;
      }
      code = cli_usage_error("listen", "unknown option '%s'", argv[optind - 1]);
      goto out;
    }
  }
  if (optind != argc - 1) {
    code = cli_usage_error("listen", optind >= argc ? "missing ENDPOINT"
                                                    : "expected one ENDPOINT, got more");
    goto out;
  }
  char err[SK_ERRLEN];
  sk_endpoint_t ep;
  if (sk_endpoint_parse(&ep, argv[optind], SK_EP_LISTEN, err, sizeof err) < 0) {
    code = cli_usage_error("listen", "%s", err);
    goto out;
  }
  if (ep.kind == SK_EP_STDIO) {
    code = cli_usage_error("listen", "listen needs a socket endpoint, not standard input");
    goto out;
  }
  if (tls.any && !(ep.flags & SK_EP_TLS)) {
    code = cli_usage_error("listen", "TLS options need a tls:// endpoint");
    goto out;
  }
  if (st.max_conns && !st.keep_open) {
    code = cli_usage_error("listen", "--max-conns needs --keep-open");
    goto out;
  }
  sk_endpoint_format(&ep, st.name, sizeof st.name);
  code = EXIT_NET;
  if ((ep.flags & SK_EP_TLS) && !(ctx = cli_tls_context(&tls, 1, st.name)))
    goto out;
  if (st.keep_open) {
    st.tls_ctx = ctx;
    st.tls_timeout_ms = tls.handshake_ms;
  }
  if (sk_listener_open(&st.l, &ep, &sock, err, sizeof err) < 0) {
    cli_error("%s", err);
    goto out;
  }
  int r = sk_loop_new(&st.loop);
  if (r < 0) {
    cli_error("event loop: %s", sk_strerror(r));
    goto out;
  }
  sk_net_reserve_fd();
  /* Signals are ours before anyone learns where we listen. */
  sk_loop_signal(st.loop, SIGINT, on_stop_signal, &st);
  sk_loop_signal(st.loop, SIGTERM, on_stop_signal, &st);
  if (!quiet)
    cli_announce_listener(&st.l);
  cli_activation_report();
  if (port_file && cli_write_port_file(port_file, &st.l) < 0)
    goto out;
  int dgram = ep.kind == SK_EP_UDP || ep.kind == SK_EP_UNIX_DGRAM;
  st.lio.data = st.in_io.data = st.out_io.data = &st;
  st.out_io.cb = on_stdout;
  sk_buf_init(&st.out, STDOUT_LIMIT);
  sk_buf_init(&st.in_buf, READ_CHUNK * 4);
  if (dgram || st.keep_open) {
    cli_stdio_nonblock();
    st.in_io.cb = dgram ? on_stdin_dgram : on_stdin_broadcast;
    sk_io_start(st.loop, &st.out_io, STDOUT_FILENO, 0);
    sk_io_start(st.loop, &st.in_io, STDIN_FILENO, 0);
  }
  st.lio.cb = dgram ? on_dgram : on_accept;
  sk_io_start(st.loop, &st.lio, st.l.fd, SK_READABLE);
  if (st.keep_open && st.idle_ms) {
    sk_timer_init(&st.sweep, on_sweep, &st);
    uint64_t every = st.idle_ms < 1000 ? st.idle_ms : 1000;
    sk_timer_start(st.loop, &st.sweep, every ? every : 1, every ? every : 1);
  }
  st.exit_code = EXIT_OK;
  r = sk_loop_run(st.loop);
  code = r < 0 ? EXIT_NET : st.exit_code;

  st.shutting_down = 1;
  while (st.clients)
    close_client(st.clients, "server stopping");
  sk_loop_free(st.loop); /* frees no client: close_client deferred them */
  st.loop = NULL;
  sk_listener_close(&st.l);
  if (st.accepted_fd >= 0) {
    cli_session_opts_t so = {.idle_timeout_ms = st.idle_ms,
                             .crlf = st.crlf,
                             .no_shutdown = st.no_shutdown,
                             .chunk = st.chunk,
                             .verbose = st.verbose};
    sk_tls_t *session_tls = NULL;
    if (ctx && !(session_tls = cli_tls_handshake(&tls, ctx, st.accepted_fd, NULL, st.name,
                                                 st.verbose))) {
      close(st.accepted_fd);
      code = EXIT_NET;
    } else {
      code = cli_session_run(st.accepted_fd, session_tls, st.name, &so);
    }
  }
out:
  sk_tls_ctx_free(ctx);
  sk_buf_free(&st.out);
  sk_buf_free(&st.in_buf);
  cli_acl_free(&st.acl);
  if (st.loop)
    sk_loop_free(st.loop);
  sk_listener_close(&st.l);
  return code;
}

const cli_command_t cli_listen = {
    .name = "listen",
    .run = run,
    .summary = "listen on an endpoint; a peer to stdout, stdin to the peer(s)",
    .usage = usage,
};
