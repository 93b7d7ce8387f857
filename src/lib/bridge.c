/* bridge.c - two bounded one-way pipes between two sides, with backpressure
 * and end-of-stream forwarding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/bridge.h"
#include "sockit/buf.h"
#include "sockit/net.h"
#include "sockit/tls.h"

#define READS_PER_WAKEUP 16  /* cap the work one ready source may do per round */
#define WRITES_PER_WAKEUP 64
#define DRAIN_POLL_MS 10     /* how often a side to be reset is checked for unacked bytes */

typedef struct side side_t;

typedef struct {
  sk_buf_t buf;
  side_t *src, *dst;
  int src_eof;  /* the source has said EOF (or has no input) */
  int done;     /* EOF forwarded to dst after the buffer was flushed */
  uint64_t count;
  uint64_t last_read; /* when the source last gave data */
  uint64_t offset;    /* bytes read from the source so far (for the tap) */
  size_t tapped_upto; /* buffered bytes already shown to the tap (crlf mode) */
  /* splice mode: bytes wait in a pipe instead of buf */
  int spliced;
  int pipe_r, pipe_w; /* -1 until the first read */
  size_t pipe_len, pipe_cap;
  int short_ok; /* the last splice filled the pipe: more may be waiting */
  int pipe_full; /* the pipe took no more (its slots are used up by small
                    pieces even when pipe_len < pipe_cap): wait for splice_out */
  int read_err; /* the source failed (reset...): end with this once flushed */
  int write_err; /* the destination socket's peer is gone (EPIPE, reset) */
} dir_t;

struct side {
  sk_bridge_side_t cfg;
  char name; /* 'a' or 'b' */
  sk_io_t rio, wio; /* wio only when wfd != rfd */
  int rsock, wsock; /* the descriptor is a socket */
  int rtype, wtype; /* SOCK_STREAM / SOCK_DGRAM / SOCK_SEQPACKET, 0 if not a socket */
  unsigned tls_rwant, tls_wwant; /* what a TLS read / write waits for, 0 = none */
  size_t msg_max; /* message side: the largest message its socket can send */
  int tcp;        /* a TCP socket: it can be reset, and says what it has not got acked */
};

struct sk_bridge {
  sk_loop_t *loop;
  side_t a, b;
  dir_t ab, ba;
  sk_bridge_opts_t opts;
  sk_timer_t idle_timer, linger_timer, drain_timer;
  dir_t *lingering; /* the direction the linger timer waits on */
  uint64_t linger_ms;
  uint64_t last_activity;
  sk_bridge_done_cb done;
  void *data;
  sk_bridge_end_t end;
  int finished;
  /* opts.reset: the side to be reset once its peer has acknowledged what
   * was written to it (NULL = none), and its progress. */
  side_t *draining;
  int drain_left;
  uint64_t drain_progress;
  int done_pending; /* finished_cb is deferred and has not run yet */
  int freed;        /* sk_bridge_free ran while done_pending: finished_cb frees */
};

/* ---- helpers ----------------------------------------------------------------- */

static int sock_type(int fd) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
    return 0;
  int t = 0;
  socklen_t l = sizeof t;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l) < 0 ? 0 : t;
}

static void finished_cb(sk_loop_t *loop, void *data) {
  sk_bridge_t *br = data;
  (void)loop;
  br->done_pending = 0;
  if (br->freed) {
    free(br); /* freed by its owner before this ran: nothing to tell */
    return;
  }
  br->done(br, &br->end, br->data);
}

/* Makes closing s's socket send a reset (SO_LINGER {1, 0}) instead of a
 * FIN; unix sockets have no reset and ignore it. */
static void arm_reset(const side_t *s) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  int fd = s->cfg.wfd >= 0 ? s->cfg.wfd : s->cfg.rfd;
  if ((s->wsock || s->rsock) && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
    (void)0; /* then it closes with a FIN: nothing better is left to do */
}

/* Ends the session once: stops every watcher and timer and schedules the
 * done callback for after this round, so the caller may free the bridge.
 * With opts.reset, a session that ends with an error (not the idle
 * timeout) leaves both sockets set to close with a reset. */
static void finish(sk_bridge_t *br, int err, char side, const char *op) {
  if (br->finished)
    return;
  br->finished = 1;
  br->end.err = err;
  br->end.side = side;
  br->end.op = op;
  if (br->opts.reset && err < 0 && err != SK_ETIMEDOUT) {
    arm_reset(&br->a);
    arm_reset(&br->b);
  }
  sk_io_stop(br->loop, &br->a.rio);
  sk_io_stop(br->loop, &br->a.wio);
  sk_io_stop(br->loop, &br->b.rio);
  sk_io_stop(br->loop, &br->b.wio);
  sk_timer_stop(br->loop, &br->idle_timer);
  sk_timer_stop(br->loop, &br->linger_timer);
  sk_timer_stop(br->loop, &br->drain_timer);
  if (sk_loop_defer(br->loop, finished_cb, br) == 0)
    br->done_pending = 1;
  else
    br->done(br, &br->end, br->data);
}

/* Length of the next message to send from d's buffer, or 0 if none is
 * ready yet: a line (with its LF), a chunk, or the tail at EOF. */
static size_t next_message(const dir_t *d) {
  size_t len = sk_buf_len(&d->buf), max = d->dst->msg_max;
  if (d->dst->cfg.chunk)
    return len < max ? len : max;
  return sk_buf_line_len(&d->buf, max, d->src_eof);
}

static int dst_message(const dir_t *d) { return d->dst->cfg.message; }

/* Bytes read from the source and not yet written to the destination. */
static size_t pending(const dir_t *d) { return d->spliced ? d->pipe_len : sk_buf_len(&d->buf); }

static int want_read(const sk_bridge_t *br, const dir_t *d) {
  if (br->finished || br->draining || d->src_eof || d->src->cfg.rfd < 0)
    return 0;
  if (d->spliced)
    return d->pipe_r < 0 || (!d->pipe_full && d->pipe_len < d->pipe_cap);
  size_t need = d->src->cfg.message ? SK_MSG_MAX : 1;
  if (d->dst->cfg.crlf)
    need *= 2;
  return sk_buf_space(&d->buf) >= need;
}

static int want_write(const sk_bridge_t *br, const dir_t *d) {
  if (br->finished || br->draining || d->done || d->dst->cfg.wfd < 0)
    return 0;
  if (dst_message(d))
    return next_message(d) > 0 || (d->src_eof && sk_buf_len(&d->buf) == 0);
  /* Also wake for the EOF to forward once everything is written. */
  return pending(d) > 0 || d->src_eof;
}

static void update_side(sk_bridge_t *br, side_t *s, dir_t *from, dir_t *to) {
  unsigned r = want_read(br, from) ? SK_READABLE : 0;
  unsigned w = want_write(br, to) ? SK_WRITABLE : 0;
  /* TLS may need the other readiness for an operation (a read that must
   * first write a key update, a write waiting on a read). */
  if (s->cfg.tls) {
    if (r && s->tls_rwant)
      r = s->tls_rwant;
    if (w && s->tls_wwant)
      w = s->tls_wwant;
  }
  if (s->cfg.rfd == s->cfg.wfd) {
    if (sk_io_active(&s->rio))
      sk_io_set(br->loop, &s->rio, r | w);
    return;
  }
  if (sk_io_active(&s->rio))
    sk_io_set(br->loop, &s->rio, r);
  if (sk_io_active(&s->wio))
    sk_io_set(br->loop, &s->wio, w);
}

static void update(sk_bridge_t *br) {
  if (br->finished)
    return;
  update_side(br, &br->a, &br->ab, &br->ba);
  update_side(br, &br->b, &br->ba, &br->ab);
}

/* ---- moving bytes ------------------------------------------------------------------ */

/* Appends n bytes read from the source to d's buffer, turning LF into CRLF
 * when the destination asks for it (want_read left room for that). */
static void append_converted(dir_t *d, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\n' && (i == 0 ? 1 : p[i - 1] != '\r'))
      sk_buf_append(&d->buf, "\r", 1);
    sk_buf_append(&d->buf, p + i, 1);
  }
}

/* A read failed (a reset, say). What arrived before it is still delivered:
 * the direction ends like at EOF, and the session ends with the error once
 * that is written out (check_done). */
static void read_failed(sk_bridge_t *br, dir_t *d, int err) {
  (void)br;
  d->read_err = err;
  d->src_eof = 1;
}

/* ---- splice mode ------------------------------------------------------------------ */

/* Makes d's pipe, sized to the bridge's limit where the system allows.
 * Returns 0 or a negative errno. */
static int splice_pipe(sk_bridge_t *br, dir_t *d) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
    return sk__neg_errno();
  d->pipe_r = p[0];
  d->pipe_w = p[1];
  int want = (int)d->buf.limit;
  if (fcntl(p[1], F_SETPIPE_SZ, want) < 0)
    (void)0; /* pipe-max-size is lower: keep what the kernel gave */
  int cap = fcntl(p[1], F_GETPIPE_SZ);
  d->pipe_cap = cap > 0 ? (size_t)cap : 65536;
  (void)br;
  return 0;
}

/* Falls back to read/write for d (splice refused for this pair of fds). */
static void unsplice(dir_t *d) {
  d->spliced = 0;
  if (d->pipe_r >= 0) {
    close(d->pipe_r);
    close(d->pipe_w);
  }
  d->pipe_r = d->pipe_w = -1;
}

/* Source to pipe (made by the caller). Returns bytes moved, 0 for "try
 * later", SK_EOF, or a negative errno. */
static ssize_t splice_in(dir_t *d) {
  size_t room = d->pipe_cap - d->pipe_len;
  if (room == 0)
    return 0;
  ssize_t n;
  do
    n = splice(d->src->cfg.rfd, NULL, d->pipe_w, NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    d->pipe_len += (size_t)n;
    d->short_ok = (size_t)n == room;
    return n;
  }
  if (n == 0)
    return SK_EOF;
  if (errno == EAGAIN) {
    /* With bytes in the pipe, EAGAIN may be the pipe, not the source: a
     * pipe counts slots, and many small pieces fill it early. Stop reading
     * until splice_out makes room, or the readable source would spin. */
    if (d->pipe_len > 0)
      d->pipe_full = 1;
    return 0;
  }
  return sk__neg_errno();
}

/* Pipe to destination. Returns bytes moved, 0 for "try later", or a
 * negative errno. */
static ssize_t splice_out(dir_t *d) {
  ssize_t n;
  do
    n = splice(d->pipe_r, NULL, d->dst->cfg.wfd, NULL, d->pipe_len,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    d->pipe_len -= (size_t)n;
    d->pipe_full = 0;
    return n;
  }
  if (n < 0 && errno == EAGAIN)
    return 0;
  return n < 0 ? sk__neg_errno() : 0;
}

/* Reads decrypted bytes until the session has none (not just one record:
 * what the session holds does not make the socket readable again). */
static void do_read_tls(sk_bridge_t *br, dir_t *d) {
  side_t *s = d->src;
  while (want_read(br, d)) {
    size_t got;
    char *p = sk_buf_reserve(&d->buf, 0, &got);
    if (!p)
      return;
    unsigned want = 0;
    ssize_t n = sk_tls_read(s->cfg.tls, p, got, &want);
    if (n > 0) {
      sk_buf_commit(&d->buf, (size_t)n);
      s->tls_rwant = 0;
      if (br->opts.tap)
        br->opts.tap(br->opts.tap_data, s->name, d->offset, p, (size_t)n);
      d->offset += (uint64_t)n;
      br->last_activity = d->last_read = sk_loop_now(br->loop);
      continue;
    }
    if (n == SK_EAGAIN) {
      s->tls_rwant = want;
      return;
    }
    if (n == SK_EOF) {
      d->src_eof = 1;
      return;
    }
    read_failed(br, d, (int)n);
    return;
  }
}

static void do_read(sk_bridge_t *br, dir_t *d) {
  side_t *s = d->src;
  if (s->cfg.tls) {
    do_read_tls(br, d);
    return;
  }
  /* No pipe to be had (descriptors or pipe memory are short): this
   * direction copies through its buffer instead, for the rest of the
   * session. The shortage is the process's, not the peer's. */
  if (d->spliced && d->pipe_r < 0 && splice_pipe(br, d) < 0)
    unsplice(d);
  if (d->spliced) {
    for (int i = 0; i < READS_PER_WAKEUP && want_read(br, d); i++) {
      ssize_t n = splice_in(d);
      if (n == -EINVAL && d->pipe_len == 0 && d->offset == 0) {
        unsplice(d); /* this pair of descriptors cannot splice */
        break;
      }
      if (n > 0) {
        d->offset += (uint64_t)n;
        br->last_activity = d->last_read = sk_loop_now(br->loop);
        /* Less than there was room for: the socket is drained. Asking again
         * would only hear EAGAIN; the level-triggered loop says when more
         * arrives. */
        if (d->pipe_len < d->pipe_cap && !d->short_ok)
          return;
        continue;
      }
      if (n == 0)
        return;
      if (n == SK_EOF) {
        d->src_eof = 1;
        return;
      }
      read_failed(br, d, (int)n);
      return;
    }
    if (d->spliced)
      return;
  }
  for (int i = 0; i < READS_PER_WAKEUP && want_read(br, d); i++) {
    ssize_t n;
    if (d->dst->cfg.crlf) {
      char tmp[16384];
      size_t max = sk_buf_space(&d->buf) / 2;
      n = s->rsock ? recv(s->cfg.rfd, tmp, max < sizeof tmp ? max : sizeof tmp, 0)
                   : read(s->cfg.rfd, tmp, max < sizeof tmp ? max : sizeof tmp);
      if (n > 0)
        append_converted(d, tmp, (size_t)n);
      else if (n == 0)
        n = s->rtype == SOCK_DGRAM ? 0 : SK_EOF;
      else
        n = errno == EAGAIN || errno == EWOULDBLOCK ? SK_EAGAIN
            : errno == EINTR                       ? 0
                                                   : sk__neg_errno();
    } else if (s->rtype == SOCK_DGRAM) {
      size_t got;
      char *p = sk_buf_reserve(&d->buf, SK_MSG_MAX, &got);
      n = p ? recv(s->cfg.rfd, p, got, 0) : SK_ETOOBIG;
      if (n > 0)
        sk_buf_commit(&d->buf, (size_t)n);
      else if (n < 0 && n != SK_ETOOBIG)
        n = errno == EAGAIN || errno == EWOULDBLOCK ? SK_EAGAIN
            : errno == EINTR                       ? 0
                                                   : sk__neg_errno();
    } else {
      n = sk_buf_read_fd(&d->buf, s->cfg.rfd, s->cfg.message ? SK_MSG_MAX : 0);
    }
    if (n > 0) {
      if (br->opts.tap) {
        size_t held = sk_buf_len(&d->buf), got = (size_t)n;
        if (d->dst->cfg.crlf)
          got = held - d->tapped_upto; /* conversion may have grown it */
        br->opts.tap(br->opts.tap_data, s->name, d->offset,
                     sk_buf_head(&d->buf) + held - got, got);
        d->offset += got;
        d->tapped_upto = held;
      } else {
        d->offset += (uint64_t)n;
      }
      br->last_activity = d->last_read = sk_loop_now(br->loop);
      continue;
    }
    if (n == 0 || n == SK_EAGAIN)
      break;
    if (n == SK_EOF) {
      d->src_eof = 1;
      break;
    }
    read_failed(br, d, (int)n);
    return;
  }
}

static dir_t *other_dir(sk_bridge_t *br, const dir_t *d) {
  return d == &br->ab ? &br->ba : &br->ab;
}

/* d's source failed: a read from it gave an error, or a write to it found
 * its peer gone (which it tells once: its reads then say EOF). */
static int src_failed(sk_bridge_t *br, const dir_t *d) {
  return d->read_err != 0 || other_dir(br, d)->write_err != 0;
}

/* Shuts the destination's write half once the source's EOF has been
 * flushed: the peer reads EOF, as if it were talking to the source. With
 * opts.reset, a source that failed is not passed on as an EOF: the
 * destination is reset instead (check_done, finish), not shut down first,
 * since a peer that has read a FIN takes a reset as EPIPE, not a reset. */
static void forward_eof(sk_bridge_t *br, dir_t *d) {
  side_t *s = d->dst;
  d->done = 1;
  if (br->opts.reset && src_failed(br, d))
    return;
  if (s->cfg.no_shutdown || !s->wsock || s->wtype == SOCK_DGRAM)
    return;
  if (s->cfg.tls)
    sk_tls_close_notify(s->cfg.tls);
  shutdown(s->cfg.wfd, SHUT_WR);
}

static void do_write(sk_bridge_t *br, dir_t *d) {
  side_t *s = d->dst;
  for (int i = 0; i < WRITES_PER_WAKEUP && !d->done; i++) {
    ssize_t n;
    if (s->cfg.tls) {
      if (sk_buf_len(&d->buf) == 0)
        goto check_eof;
      unsigned want = 0;
      n = sk_tls_write(s->cfg.tls, sk_buf_head(&d->buf), sk_buf_len(&d->buf), &want);
      if (n > 0) {
        sk_buf_consume(&d->buf, (size_t)n);
        s->tls_wwant = 0;
      } else if (n == SK_EAGAIN) {
        s->tls_wwant = want;
      }
    } else if (d->spliced) {
      if (d->pipe_len == 0)
        goto check_eof;
      n = splice_out(d);
    } else if (dst_message(d)) {
      size_t m = next_message(d);
      if (m == 0)
        goto check_eof;
      n = sk_net_send(s->cfg.wfd, sk_buf_head(&d->buf), m);
      if (n >= 0) {
        n = (ssize_t)m; /* a datagram goes whole or not at all */
        sk_buf_consume(&d->buf, m);
      }
    } else {
      if (sk_buf_len(&d->buf) == 0)
        goto check_eof;
      n = sk_buf_write_fd(&d->buf, s->cfg.wfd, s->wsock);
    }
    if (n > 0) {
      d->count += (uint64_t)n;
      d->tapped_upto = d->tapped_upto > (size_t)n ? d->tapped_upto - (size_t)n : 0;
      br->last_activity = sk_loop_now(br->loop);
      continue;
    }
    if (n == SK_EAGAIN || n == 0)
      return;
    if (n == -ECONNREFUSED && s->wtype == SOCK_DGRAM) {
      /* An ICMP error from an earlier datagram surfaced on this send. */
      finish(br, (int)n, s->name, "send");
      return;
    }
    if ((n == -EPIPE || n == -ECONNRESET) && s->wsock && s->wtype != SOCK_DGRAM) {
      /* The peer is gone. What it sent before going is still to be
       * delivered the other way, and its read will tell why it went:
       * stop this direction and let check_done end the session. */
      d->write_err = (int)n;
      d->done = 1;
      sk_buf_consume(&d->buf, sk_buf_len(&d->buf));
      return;
    }
    finish(br, (int)n, s->name, "write");
    return;
  }
  return;
check_eof:
  if (d->src_eof && pending(d) == 0)
    forward_eof(br, d);
}

/* ---- completion ------------------------------------------------------------------------- */

/* The other direction of a side that said EOF: end once its source has
 * been idle for the linger time with nothing left to write. */
static void linger_fired(sk_loop_t *loop, sk_timer_t *t) {
  sk_bridge_t *br = t->data;
  dir_t *d = br->lingering;
  if (br->draining)
    return; /* ending already, once the reset side has its bytes */
  uint64_t quiet = sk_loop_now(loop) - d->last_read;
  if (d->done || (pending(d) == 0 && quiet >= br->linger_ms)) {
    finish(br, 0, 0, NULL);
    return;
  }
  sk_timer_start(loop, t, quiet < br->linger_ms ? br->linger_ms - quiet : br->linger_ms, 0);
}

/* Bytes written to s that its peer has not acknowledged yet (0 when it
 * cannot tell). */
static int unacked(const side_t *s) {
  int n = 0;
  if (!s->tcp || ioctl(s->cfg.wfd, SIOCOUTQ, &n) < 0)
    return 0;
  return n;
}

/* Ends the session with an error once `peer` (the side about to be reset)
 * has acknowledged what was written to it: a reset throws away what the
 * kernel still holds unsent. Bounded: SK_BRIDGE_DRAIN_MS without progress
 * and it is reset all the same. */
static void end_after_drain(sk_bridge_t *br, side_t *peer, int err, char side, const char *op) {
  int left = br->opts.reset ? unacked(peer) : 0;
  uint64_t now = sk_loop_now(br->loop);
  if (!br->draining) {
    br->draining = peer;
    br->drain_left = left;
    br->drain_progress = now;
    br->end.err = err;
    br->end.side = side;
    br->end.op = op;
  } else if (left < br->drain_left) {
    br->drain_left = left;
    br->drain_progress = now;
  }
  if (left == 0 || now - br->drain_progress >= SK_BRIDGE_DRAIN_MS) {
    finish(br, err, side, op);
    return;
  }
  if (!sk_timer_active(&br->drain_timer))
    sk_timer_start(br->loop, &br->drain_timer, DRAIN_POLL_MS, DRAIN_POLL_MS);
}

static void drain_fired(sk_loop_t *loop, sk_timer_t *t) {
  sk_bridge_t *br = t->data;
  (void)loop;
  end_after_drain(br, br->draining, br->end.err, br->end.side, br->end.op);
}

static void check_done(sk_bridge_t *br) {
  if (br->finished || br->draining)
    return;
  dir_t *failed = br->ab.read_err && br->ab.done   ? &br->ab
                  : br->ba.read_err && br->ba.done ? &br->ba
                                                   : NULL;
  if (failed) {
    end_after_drain(br, failed->dst, failed->read_err, failed->src->name, "read");
    return;
  }
  /* A write found the peer gone: once the other direction (from that same
   * peer) has delivered all it got, end with the write's error. */
  dir_t *broken = br->ab.write_err ? &br->ab : br->ba.write_err ? &br->ba : NULL;
  if (broken && other_dir(br, broken)->done) {
    end_after_drain(br, broken->src, broken->write_err, broken->dst->name, "write");
    return;
  }
  if (br->ab.done && br->ba.done) {
    finish(br, 0, 0, NULL);
    return;
  }
  if ((br->a.cfg.eof_ends && br->ab.done) || (br->b.cfg.eof_ends && br->ba.done)) {
    finish(br, 0, 0, NULL);
    return;
  }
  if (br->lingering)
    return;
  dir_t *ended = br->ab.done ? &br->ab : br->ba.done ? &br->ba : NULL;
  if (ended && ended->src->cfg.eof_linger_ms) {
    br->lingering = ended == &br->ab ? &br->ba : &br->ab;
    br->linger_ms = ended->src->cfg.eof_linger_ms;
    sk_timer_start(br->loop, &br->linger_timer, br->linger_ms, 0);
  }
}

static void idle_fired(sk_loop_t *loop, sk_timer_t *t) {
  sk_bridge_t *br = t->data;
  uint64_t quiet = sk_loop_now(loop) - br->last_activity;
  if (br->draining)
    return; /* ending already; the drain has its own bound */
  if (quiet >= br->opts.idle_timeout_ms) {
    /* Lingering after one direction ended is a normal way to end, unless
     * bytes are still stuck on their way out: that is a dead peer. */
    int lingering = br->lingering != NULL && pending(br->lingering) == 0;
    finish(br, lingering ? 0 : SK_ETIMEDOUT, 0, lingering ? NULL : "idle");
    return;
  }
  sk_timer_start(loop, t, br->opts.idle_timeout_ms - quiet, 0);
}

/* One callback for every watcher: the side is known from the watcher. */
static void on_io(sk_loop_t *loop, sk_io_t *io, unsigned events) {
  sk_bridge_t *br = io->data;
  side_t *s = (io == &br->a.rio || io == &br->a.wio) ? &br->a : &br->b;
  dir_t *from = s == &br->a ? &br->ab : &br->ba;
  dir_t *to = s == &br->a ? &br->ba : &br->ab;
  (void)loop;
  int is_r = io == &s->rio, is_w = io == &s->wio || s->cfg.rfd == s->cfg.wfd;
  /* A TLS operation may be waiting for either readiness: try both. */
  int tls = s->cfg.tls != NULL;
  if (is_r && (tls || (events & (SK_READABLE | SK_HANGUP))))
    do_read(br, from);
  if (is_w && (tls || (events & SK_WRITABLE)) && !br->finished)
    do_write(br, to);
  /* Reading may have made data for the other side, and writing made room:
   * try the other direction's write at once rather than wait a round. */
  if (!br->finished) {
    dir_t *other = from;
    if (want_write(br, other))
      do_write(br, other);
  }
  if (!br->finished && to->src_eof && !to->done && pending(to) == 0 && !dst_message(to))
    forward_eof(br, to);
  /* Decrypted bytes left in a TLS session because the buffer was full:
   * the socket will not say so, so read them now if there is room. */
  dir_t *dirs[2] = {&br->ab, &br->ba};
  for (int i = 0; i < 2 && !br->finished; i++)
    if (dirs[i]->src->cfg.tls && sk_tls_pending(dirs[i]->src->cfg.tls) && want_read(br, dirs[i])) {
      do_read(br, dirs[i]);
      if (!br->finished && want_write(br, dirs[i]))
        do_write(br, dirs[i]);
    }
  check_done(br);
  update(br);
}

/* ---- life ------------------------------------------------------------------------------------ */

static void side_init(sk_bridge_t *br, side_t *s, const sk_bridge_side_t *cfg, char name) {
  memset(s, 0, sizeof *s);
  s->cfg = *cfg;
  s->name = name;
  s->rtype = sock_type(cfg->rfd);
  s->wtype = cfg->wfd == cfg->rfd ? s->rtype : sock_type(cfg->wfd);
  s->rsock = s->rtype != 0;
  s->wsock = s->wtype != 0;
  if (s->rtype == SOCK_DGRAM || s->rtype == SOCK_SEQPACKET)
    s->cfg.message = 1;
  s->msg_max = s->wsock ? sk_net_msg_max(cfg->wfd) : SK_MSG_MAX;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  s->tcp = s->wtype == SOCK_STREAM && getsockname(cfg->wfd, (struct sockaddr *)&ss, &sl) == 0 &&
           (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
  s->rio.cb = s->wio.cb = on_io;
  s->rio.data = s->wio.data = br;
}

static int side_start(sk_bridge_t *br, side_t *s) {
  int r = 0;
  if (s->cfg.rfd >= 0)
    r = sk_io_start(br->loop, &s->rio, s->cfg.rfd, 0);
  if (r == 0 && s->cfg.wfd >= 0 && s->cfg.wfd != s->cfg.rfd)
    r = sk_io_start(br->loop, &s->wio, s->cfg.wfd, 0);
  return r;
}

int sk_bridge_start(sk_bridge_t **out, sk_loop_t *loop, const sk_bridge_side_t *a,
                    const sk_bridge_side_t *b, const sk_bridge_opts_t *opts,
                    sk_bridge_done_cb done, void *data) {
  sk_bridge_t *br = calloc(1, sizeof *br);
  if (!br)
    return -ENOMEM;
  br->loop = loop;
  if (opts)
    br->opts = *opts;
  size_t limit = br->opts.limit ? br->opts.limit : SK_BUF_DEFAULT_LIMIT;
  if (limit < 2 * SK_MSG_MAX + 2)
    limit = 2 * SK_MSG_MAX + 2; /* room for one message, doubled by --crlf */
  br->done = done;
  br->data = data;
  side_init(br, &br->a, a, 'a');
  side_init(br, &br->b, b, 'b');
  br->ab.src = &br->a;
  br->ab.dst = &br->b;
  br->ba.src = &br->b;
  br->ba.dst = &br->a;
  sk_buf_init(&br->ab.buf, limit);
  sk_buf_init(&br->ba.buf, limit);
  br->ab.src_eof = a->rfd < 0;
  br->ba.src_eof = b->rfd < 0;
  br->ab.pipe_r = br->ab.pipe_w = br->ba.pipe_r = br->ba.pipe_w = -1;
  if (br->opts.splice && !br->opts.tap) {
    dir_t *dirs[2] = {&br->ab, &br->ba};
    for (int i = 0; i < 2; i++)
      dirs[i]->spliced = dirs[i]->src->rtype == SOCK_STREAM &&
                         dirs[i]->dst->wtype == SOCK_STREAM && !dirs[i]->dst->cfg.crlf &&
                         !dirs[i]->src->cfg.tls && !dirs[i]->dst->cfg.tls;
  }
  sk_timer_init(&br->idle_timer, idle_fired, br);
  sk_timer_init(&br->linger_timer, linger_fired, br);
  sk_timer_init(&br->drain_timer, drain_fired, br);
  br->last_activity = br->ab.last_read = br->ba.last_read = sk_loop_now(loop);
  int r = side_start(br, &br->a);
  if (r == 0)
    r = side_start(br, &br->b);
  if (r == 0 && br->opts.idle_timeout_ms)
    r = sk_timer_start(loop, &br->idle_timer, br->opts.idle_timeout_ms, 0);
  if (r < 0) {
    br->finished = 1;
    br->a.cfg.close_fds = br->b.cfg.close_fds = 0; /* still the caller's */
    sk_bridge_free(br);
    return r;
  }
  update(br);
  *out = br;
  return 0;
}

void sk_bridge_free(sk_bridge_t *br) {
  if (!br)
    return;
  side_t *sides[2] = {&br->a, &br->b};
  for (int i = 0; i < 2; i++) {
    side_t *s = sides[i];
    sk_io_stop(br->loop, &s->rio);
    sk_io_stop(br->loop, &s->wio);
    if (s->cfg.close_fds) {
      sk_tls_free(s->cfg.tls);
      if (s->cfg.rfd >= 0)
        close(s->cfg.rfd);
      if (s->cfg.wfd >= 0 && s->cfg.wfd != s->cfg.rfd)
        close(s->cfg.wfd);
    }
  }
  sk_timer_stop(br->loop, &br->idle_timer);
  sk_timer_stop(br->loop, &br->linger_timer);
  sk_timer_stop(br->loop, &br->drain_timer);
  unsplice(&br->ab);
  unsplice(&br->ba);
  sk_buf_free(&br->ab.buf);
  sk_buf_free(&br->ba.buf);
  if (br->done_pending)
    br->freed = 1; /* the deferred finished_cb still points here: it frees */
  else
    free(br);
}

void sk_bridge_counts(const sk_bridge_t *br, uint64_t *a_to_b, uint64_t *b_to_a) {
  if (a_to_b)
    *a_to_b = br->ab.count;
  if (b_to_a)
    *b_to_a = br->ba.count;
}
