/* server.c - the socketserver framework: listeners, connections with bounded
 * buffers and backpressure, datagram dispatch, limits, idle timeouts,
 * graceful shutdown, worker threads, TLS.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/internal.h"
#if SK_HAVE_MALLOC_TRIM
#include <malloc.h>
#endif
#include "sockit/server.h"

#define MAX_LISTENERS 32
#define ACCEPTS_PER_WAKEUP 64
#define DGRAMS_PER_WAKEUP 64
#define READ_CHUNK 65536
/* Closing a socket with unread input makes the kernel send RST, which can
 * destroy our last reply (an error line, say) before the peer reads it. So
 * a graceful close shuts our side and drains theirs, for at most this long
 * and this much, before closing (a lingering close). */
#define LINGER_MS 1000
#define LINGER_MAX_BYTES (1u << 20)
/* A connection quiet this long gives back the storage of its empty
 * buffers (checked once a second). Not at once: a busy connection would
 * free and allocate again every round, and glibc would trim and regrow
 * its heap with it. */
#define RELEASE_MS 1000
#define SWEEP_MS 1000
/* When a sweep frees this much, the allocator is asked to give free pages
 * back to the system: freed buffers of thousands of idle connections lie
 * between their live connection structs, where glibc would keep them. */
#define RELEASE_TRIM_BYTES (1u << 20)

typedef struct instance instance_t;

/* What a connection of a TLS listener has besides a plain one (plain
 * connections carry only a NULL pointer to it). */
typedef struct {
  sk_tls_t *tls;
  int handshaking;       /* not open yet: the handler does not know it */
  unsigned rwant, wwant; /* what a read / write waits for; 0 = the usual */
  /* The handshake's deadline; once open, a zero-delay wake-up to read
   * decrypted bytes the session holds (the socket will not say so). */
  sk_timer_t timer;
} conn_tls_t;

struct sk_conn {
  instance_t *inst;
  sk_io_t io;
  int fd;
  int message;
  int opened;             /* on_open was called: on_close will be */
  conn_tls_t *t;          /* TLS connections only */
  sk_buf_t in, out;
  void *data;
  sk_sockaddr_t peer;
  int rd_eof, closing, closed;
  int reset;              /* aborted: closed with an RST (sk_conn_abort) */
  int lingering;          /* our side is shut; draining theirs before close */
  int in_dispatch;        /* inside a handler callback: flush afterwards */
  int resume;             /* the queue drained past half with input held: hand it over */
  int flush_queued;       /* on the instance's end-of-round flush list */
  sk_conn_t *flush_prev, *flush_next;
  size_t lingered;        /* bytes drained while lingering */
  sk_timer_t linger;
  uint64_t started, last_activity, bytes_in, bytes_out;
  sk_conn_t *prev, *next;
};

typedef struct {
  instance_t *inst;
  sk_io_t io;
  int fd;
  int own;   /* this instance's own SO_REUSEPORT socket: close it at stop */
  int dgram;
  sk_sockaddr_t self; /* datagram listeners: the socket's own address (getsockname) */
  int pktinfo;       /* a wildcard datagram socket: destinations come with each datagram */
  int message;      /* unix-seqpacket */
  sk_tls_ctx_t *tls; /* a TLS listener's context (the server's, borrowed) */
} inst_listener_t;

struct instance {
  sk_server_t *srv;
  sk_loop_t *loop;
  inst_listener_t ls[MAX_LISTENERS];
  int nls;
  int wake_fd;
  sk_io_t wake_io;
  sk_conn_t *conns;
  unsigned long nconns;
  int paused; /* accepting paused at max_conns */
  sk_timer_t sweep, grace;
  int stopping, done;
  uint64_t last_error_log;
  char *dgram_buf;
  /* Datagrams dropped unanswered since the last report, and the last
   * source of each kind: reported at most once a second. */
  sk__dgram_budget_t *budget; /* NULL: no per-source budget */
  uint64_t last_drop_log;
  unsigned long drop_loop, drop_budget;
  sk_sockaddr_t drop_loop_from, drop_budget_from;
  /* Input is read here when a connection holds none, so a connection whose
   * handler takes every byte keeps no input storage of its own; only what
   * the handler leaves is copied to the connection's buffer. */
  sk_buf_t shared_in;
  sk_conn_t *shared_owner; /* whose input shared_in holds during on_data */
  /* Connections given output outside their own callbacks (by another
   * connection's handler, a timer): written once at the end of the round. */
  sk_conn_t *flush_head;
  int flush_armed;         /* the end-of-round flush is deferred already */
  instance_t *next;
};

struct sk_server {
  sk_server_opts_t o;
  sk_listener_t ls[MAX_LISTENERS];
  sk_sockopts_t lopts[MAX_LISTENERS];
  sk_tls_ctx_t *ltls[MAX_LISTENERS]; /* per listener: TLS context or NULL */
  const sk__server_tls_t *tls_ops;   /* TLS functions, once a TLS listener is bound */
  int nls;
  instance_t *instances;
  atomic_int stopping;
  atomic_int live;
  _Atomic uint64_t last_report; /* sk_server_report, monotonic ms */
};

static void conn_update(sk_conn_t *c);
static void conn_dispatch(sk_conn_t *c, sk_buf_t *in);
static void instance_finish(instance_t *in);
static void flush_unlink(sk_conn_t *c);

/* ---- errors and logs ------------------------------------------------------------ */

static void report(instance_t *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(instance_t *in, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sk__report_limited(&in->last_error_log, sk_loop_now(in->loop), in->srv->o.on_error,
                     in->srv->o.ctx, fmt, ap);
  va_end(ap);
}

/* ---- connections ------------------------------------------------------------------ */

static void free_conn(sk_loop_t *loop, void *data) {
  sk_conn_t *c = data;
  (void)loop;
  sk_buf_free(&c->in);
  sk_buf_free(&c->out);
  if (c->t) {
    if (c->t->tls)
      c->inst->srv->tls_ops->session_free(c->t->tls);
    free(c->t);
  }
  free(c);
}

static void resume_accepting(instance_t *in) {
  if (!in->paused || in->stopping)
    return;
  in->paused = 0;
  for (int i = 0; i < in->nls; i++)
    if (!in->ls[i].dgram)
      sk_io_set(in->loop, &in->ls[i].io, SK_READABLE);
}

/* Closes c now (its fd, its watcher), tells the handler if it knows c,
 * and frees it after this round: c may be the connection whose callback is
 * running. `why`, if not NULL, replaces the reason's words in the log. */
static void conn_end(sk_conn_t *c, int reason, const char *why_text) {
  if (c->closed)
    return;
  instance_t *in = c->inst;
  sk_server_t *s = in->srv;
  c->closed = 1;
  flush_unlink(c);
  sk_timer_stop(in->loop, &c->linger);
  if (c->t)
    sk_timer_stop(in->loop, &c->t->timer);
  sk_io_stop(in->loop, &c->io);
  if (c->reset)
    sk_net_close_reset(c->fd);
  else
    close(c->fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    in->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  in->nconns--;
  if (c->opened && s->o.handler->on_close)
    s->o.handler->on_close(c, reason);
  if (s->o.on_log) {
    char p[SK_ENDPOINT_STRLEN], line[SK_ERRLEN];
    static const char *const why[] = {"closed", "idle timeout", "shutdown", "error"};
    snprintf(line, sizeof line, "%s in=%llu out=%llu bytes %.3f s %s",
             sk_sockaddr_format(&c->peer, p, sizeof p), (unsigned long long)c->bytes_in,
             (unsigned long long)c->bytes_out,
             (double)(sk_loop_now(in->loop) - c->started) / 1000.0,
             why_text ? why_text : reason >= 0 && reason <= 3 ? why[reason] : "closed");
    s->o.on_log(s->o.ctx, line);
  }
  if (sk_loop_defer(in->loop, free_conn, c) < 0)
    free_conn(in->loop, c); /* cannot defer: nothing touches c after this */
  resume_accepting(in);
  if (in->stopping && in->nconns == 0)
    instance_finish(in);
}

static void conn_close_now(sk_conn_t *c, int reason) {
  const char *why = NULL;
  char text[SK_ERRLEN];
  /* A TLS failure after the handshake: the log says what it was. */
  const sk__server_tls_t *ops = c->inst->srv->tls_ops;
  if (reason == SK_CLOSE_ERROR && c->t && c->t->tls && ops->last_error(c->t->tls)[0]) {
    snprintf(text, sizeof text, "error: %s", ops->last_error(c->t->tls));
    why = text;
  }
  conn_end(c, reason, why);
}

/* Writes held output through c's TLS session. Same results as
 * sk_buf_write_fd. The session may need the socket readable first (wwant):
 * a retry passes the same first bytes, as OpenSSL requires, because the
 * queue only grows at its tail until they are written. */
static ssize_t tls_write(sk_conn_t *c) {
  unsigned want = 0;
  ssize_t n = c->inst->srv->tls_ops->write(c->t->tls, sk_buf_head(&c->out), sk_buf_len(&c->out),
                                          &want);
  c->t->wwant = n == SK_EAGAIN ? want : 0;
  if (n > 0)
    sk_buf_consume(&c->out, (size_t)n);
  return n;
}

/* Writes queued output. When that takes the queue from above half its
 * limit to half or below while the handler holds input back, c->resume is
 * set: the handler gets that input again on the next round (conn_writable;
 * conn_update watches for it), whichever flush drained the queue. Returns
 * 0, or -1 if the connection was closed (or is lingering before its close). */
static int conn_flush(sk_conn_t *c) {
  if (c->closed || c->lingering)
    return -1;
  size_t before = sk_buf_len(&c->out), half = c->out.limit / 2;
  while (sk_buf_len(&c->out)) {
    ssize_t n = c->t ? tls_write(c) : sk_buf_write_fd(&c->out, c->fd, 1);
    if (n == SK_EAGAIN)
      break;
    if (n < 0) {
      conn_close_now(c, SK_CLOSE_ERROR);
      return -1;
    }
    c->bytes_out += (uint64_t)n;
    c->last_activity = sk_loop_now(c->inst->loop);
  }
  if (before > half && sk_buf_len(&c->out) <= half && sk_buf_len(&c->in))
    c->resume = 1;
  if (c->closing && sk_buf_len(&c->out) == 0) {
    if (c->t)
      c->inst->srv->tls_ops->close_notify(c->t->tls); /* a graceful end, said in TLS */
    if (c->rd_eof || c->message) {
      conn_close_now(c, SK_CLOSE_NORMAL);
      return -1;
    }
    if (!c->lingering) {
      c->lingering = 1;
      shutdown(c->fd, SHUT_WR);
      sk_timer_start(c->inst->loop, &c->linger, LINGER_MS, 0);
      sk_io_set(c->inst->loop, &c->io, SK_READABLE);
    }
    return -1;
  }
  return 0;
}

static void linger_fired(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  conn_close_now(t->data, SK_CLOSE_NORMAL);
}

/* Lingering: read and drop what the peer still sends until it closes. */
static void conn_drain(sk_conn_t *c) {
  char sink[16384];
  for (int i = 0; i < 8; i++) {
    ssize_t n = sk_net_read(c->fd, sink, sizeof sink);
    if (n == SK_EAGAIN)
      return;
    if (n < 0 || (c->lingered += (size_t)n) > LINGER_MAX_BYTES) {
      conn_close_now(c, SK_CLOSE_NORMAL);
      return;
    }
  }
}

/* Gives the handler the input held in `in` (the connection's own buffer, or
 * the instance's shared one right after a read); afterwards what the
 * handler left is kept in the connection's own buffer, the connection is
 * flushed, and closed if the handler can no longer make progress. */
static void conn_dispatch(sk_conn_t *c, sk_buf_t *in) {
  instance_t *inst = c->inst;
  sk_server_t *s = inst->srv;
  int shared = in != &c->in;
  if (!c->closed && !c->closing && (sk_buf_len(in) || c->rd_eof)) {
    c->in_dispatch = 1;
    if (shared)
      inst->shared_owner = c;
    s->o.handler->on_data(c, in, c->rd_eof);
    inst->shared_owner = NULL;
    c->in_dispatch = 0;
  }
  if (shared) {
    /* The shared buffer is empty again whatever happened: the next read,
     * for any connection, starts on a clean buffer. */
    if (sk_buf_len(in) && !c->closed && !c->message &&
        sk_buf_append(&c->in, sk_buf_head(in), sk_buf_len(in)) < 0) {
      sk_buf_consume(in, sk_buf_len(in));
      conn_close_now(c, SK_CLOSE_ERROR);
      return;
    }
    sk_buf_consume(in, sk_buf_len(in));
  }
  if (c->closed)
    return;
  if (c->message)
    sk_buf_consume(&c->in, sk_buf_len(&c->in));
  if (c->rd_eof)
    c->closing = 1;
  else if (sk_buf_space(&c->in) == 0 && sk_buf_len(&c->out) == 0)
    /* Full input the handler would not take, and no output pending that
     * could unblock it: nothing can ever change. */
    c->closing = 1;
  if (conn_flush(c) == 0)
    conn_update(c);
}

/* 1 if c may read more input: not at its end, not closing, output below
 * half its limit (backpressure), room in the input buffer. */
static int conn_wants_input(const sk_conn_t *c) {
  return !c->rd_eof && !c->closing && sk_buf_len(&c->out) <= c->out.limit / 2 &&
         sk_buf_space(&c->in) > 0 && (!c->message || sk_buf_len(&c->in) == 0);
}

static void conn_update(sk_conn_t *c) {
  if (c->closed || c->lingering)
    return;
  unsigned ev = 0;
  if (c->t) {
    /* A TLS read or write may wait for the other readiness (a read that
     * must first send, a write that must first receive). */
    if (c->t->handshaking)
      return; /* the handshake watches the socket itself */
    int rd = conn_wants_input(c);
    if (rd)
      ev |= c->t->rwant ? c->t->rwant : SK_READABLE;
    if (sk_buf_len(&c->out))
      ev |= c->t->wwant ? c->t->wwant : SK_WRITABLE;
    if (c->resume)
      ev |= SK_WRITABLE; /* the next round hands the held input over */
    sk_io_set(c->inst->loop, &c->io, ev);
    /* Decrypted bytes held in the session do not make the socket readable. */
    if (rd && c->inst->srv->tls_ops->pending(c->t->tls) && !sk_timer_active(&c->t->timer))
      sk_timer_start(c->inst->loop, &c->t->timer, 0, 0);
    return;
  }
  if (conn_wants_input(c))
    ev |= SK_READABLE;
  if (sk_buf_len(&c->out) || c->resume)
    ev |= SK_WRITABLE;
  sk_io_set(c->inst->loop, &c->io, ev);
}

/* The socket took output: write more, and once the queue drained to half
 * its limit (in this flush or an earlier one: c->resume) let the handler
 * see the input it held back. Returns 0, or -1 if c is closed or lingering. */
static int conn_writable(sk_conn_t *c) {
  if (conn_flush(c) < 0)
    return -1;
  if (c->resume) {
    c->resume = 0;
    if (sk_buf_len(&c->in) && sk_buf_len(&c->out) <= c->out.limit / 2)
      conn_dispatch(c, &c->in);
    else
      conn_update(c); /* nothing to hand over: stop watching for it */
  }
  return c->closed ? -1 : 0;
}

/* ---- TLS connections ------------------------------------------------------------------ */

/* Reads decrypted input (up to READ_CHUNK per wake-up, record after
 * record) and gives it to the handler. What arrived before a failure is
 * still handed over; then the connection closes with the error. */
static void tls_read(sk_conn_t *c) {
  conn_tls_t *t = c->t;
  sk_buf_t *in = sk_buf_len(&c->in) ? &c->in : &c->inst->shared_in;
  size_t total = 0;
  ssize_t n = SK_EAGAIN;
  while (total < READ_CHUNK) {
    size_t got;
    char *p = sk_buf_reserve(in, READ_CHUNK - total, &got);
    if (!p)
      break; /* full: the rest waits in the session */
    if (got > READ_CHUNK - total)
      got = READ_CHUNK - total;
    unsigned want = 0;
    n = c->inst->srv->tls_ops->read(t->tls, p, got, &want);
    t->rwant = n == SK_EAGAIN ? want : 0;
    if (n <= 0)
      break;
    sk_buf_commit(in, (size_t)n);
    total += (size_t)n;
  }
  if (total) {
    c->bytes_in += total;
    c->last_activity = sk_loop_now(c->inst->loop);
  }
  int failed = n < 0 && n != SK_EAGAIN && n != SK_EOF;
  if (n == SK_EOF)
    c->rd_eof = 1;
  if (total || c->rd_eof)
    conn_dispatch(c, in);
  if (failed)
    conn_close_now(c, SK_CLOSE_ERROR);
  else if (!total && !c->rd_eof)
    conn_update(c); /* what the session waits for may have changed */
}

/* Readiness on an open TLS connection: either may serve a read or a
 * write, depending on what each waits for. */
static void tls_io(sk_conn_t *c, unsigned ev) {
  conn_tls_t *t = c->t;
  unsigned rw = t->rwant ? t->rwant : SK_READABLE, ww = t->wwant ? t->wwant : SK_WRITABLE;
  if ((sk_buf_len(&c->out) || c->resume) && (ev & (ww | SK_WRITABLE | SK_HANGUP)) &&
      conn_writable(c) < 0)
    return;
  if ((ev & (rw | SK_HANGUP)) && conn_wants_input(c)) {
    tls_read(c);
    return;
  }
  conn_update(c);
}

/* The zero-delay timer of an open connection: the session holds decrypted
 * bytes; read them if the connection still wants input. */
static void tls_pending_fired(sk_conn_t *c) {
  if (c->closed || c->lingering)
    return;
  if (conn_wants_input(c))
    tls_read(c);
}

static void conn_open(sk_conn_t *c);

/* The handshake failed or timed out: said once (rate-limited) through
 * on_error and in the connection's log line; the handler never knew c. */
static void tls_failed(sk_conn_t *c, const char *msg) {
  char p[SK_ENDPOINT_STRLEN], why[SK_ERRLEN];
  report(c->inst, "tls %s: %s", sk_sockaddr_format(&c->peer, p, sizeof p), msg);
  if (snprintf(why, sizeof why, "tls: %s", msg) >= (int)sizeof why)
    why[sizeof why - 2] = '.'; /* cut: marked, the message stays readable */
  conn_end(c, SK_CLOSE_ERROR, why);
}

/* One step of the server handshake, on readiness. */
static void tls_handshake_step(sk_conn_t *c) {
  conn_tls_t *t = c->t;
  unsigned want = 0;
  char msg[SK_ERRLEN];
  int r = c->inst->srv->tls_ops->handshake(t->tls, &want, msg, sizeof msg);
  if (r == SK_EAGAIN) {
    sk_io_set(c->inst->loop, &c->io, want);
    return;
  }
  sk_timer_stop(c->inst->loop, &t->timer);
  if (r < 0) {
    tls_failed(c, msg);
    return;
  }
  t->handshaking = 0;
  c->last_activity = sk_loop_now(c->inst->loop);
  conn_open(c);
}

static void tls_timer_fired(sk_loop_t *loop, sk_timer_t *tm) {
  sk_conn_t *c = tm->data;
  (void)loop;
  if (c->t->handshaking)
    tls_failed(c, "TLS handshake timed out");
  else
    tls_pending_fired(c);
}

static void on_conn(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  sk_conn_t *c = io->data;
  if (c->lingering) {
    conn_drain(c);
    return;
  }
  if (c->t) {
    if (c->t->handshaking)
      tls_handshake_step(c);
    else
      tls_io(c, ev);
    return;
  }
  if (ev & SK_WRITABLE && conn_writable(c) < 0)
    return;
  if (ev & (SK_READABLE | SK_HANGUP) && !c->rd_eof && !c->closing) {
    /* Input held from before is added to; otherwise read into the shared
     * buffer (seqpacket always: it reads only when nothing is held). */
    sk_buf_t *in = sk_buf_len(&c->in) ? &c->in : &c->inst->shared_in;
    ssize_t n;
    if (c->message) {
      size_t got;
      char *p = sk_buf_reserve(in, in->limit, &got);
      n = p ? recv(c->fd, p, got, 0) : SK_ETOOBIG;
      if (n > 0)
        sk_buf_commit(in, (size_t)n);
      else if (n == 0)
        n = SK_EOF;
      else if (n != SK_ETOOBIG)
        n = errno == EAGAIN || errno == EWOULDBLOCK ? SK_EAGAIN : sk__neg_errno();
    } else {
      n = sk_buf_read_fd(in, c->fd, READ_CHUNK);
    }
    if (n > 0) {
      c->bytes_in += (uint64_t)n;
      c->last_activity = sk_loop_now(loop);
    } else if (n == SK_EOF) {
      c->rd_eof = 1;
    } else if (n != SK_EAGAIN && n != SK_ETOOBIG) {
      conn_close_now(c, SK_CLOSE_ERROR);
      return;
    }
    if (n > 0 || n == SK_EOF)
      conn_dispatch(c, in);
    return;
  }
  conn_update(c);
}

/* Takes c off its instance's end-of-round flush list, if it is on it. */
static void flush_unlink(sk_conn_t *c) {
  if (!c->flush_queued)
    return;
  if (c->flush_prev)
    c->flush_prev->flush_next = c->flush_next;
  else
    c->inst->flush_head = c->flush_next;
  if (c->flush_next)
    c->flush_next->flush_prev = c->flush_prev;
  c->flush_queued = 0;
  c->flush_prev = c->flush_next = NULL;
}

/* End of a loop round: writes every connection that was given output
 * outside its own callbacks, once each, and watches for writability only
 * those whose queue did not drain. */
static void flush_round(sk_loop_t *loop, void *data) {
  instance_t *in = data;
  (void)loop;
  in->flush_armed = 0;
  sk_conn_t *c;
  while ((c = in->flush_head) != NULL) {
    flush_unlink(c);
    if (conn_flush(c) == 0)
      conn_update(c);
  }
}

/* Puts c on the end-of-round flush list (deferring the flush once per
 * round); if deferring fails, falls back to waiting for writability. */
static void flush_later(sk_conn_t *c) {
  instance_t *in = c->inst;
  if (c->flush_queued || c->lingering)
    return;
  if (!in->flush_armed) {
    if (sk_loop_defer(in->loop, flush_round, in) < 0) {
      sk_io_set(in->loop, &c->io, c->io.events | SK_WRITABLE);
      return;
    }
    in->flush_armed = 1;
  }
  c->flush_queued = 1;
  c->flush_prev = NULL;
  c->flush_next = in->flush_head;
  if (in->flush_head)
    in->flush_head->flush_prev = c;
  in->flush_head = c;
}

int sk_conn_send(sk_conn_t *c, const void *data, size_t len) {
  if (c->closed)
    return -EPIPE;
  if (sk__buf_first_alloc(&c->out, len) < 0)
    return -ENOMEM;
  int r = sk_buf_append(&c->out, data, len);
  /* Inside its own callback the framework writes once the callback returns
   * (one write and no epoll change per reply). From elsewhere (another
   * connection's handler broadcasting, a timer) the write happens at the
   * end of the loop round, once for everything queued in that round. */
  if (r == 0 && !c->in_dispatch)
    flush_later(c);
  return r;
}

size_t sk_conn_out_space(const sk_conn_t *c) { return sk_buf_space(&c->out); }

void sk_conn_close(sk_conn_t *c) {
  if (c->closed)
    return;
  c->closing = 1;
  if (conn_flush(c) == 0)
    conn_update(c);
}

void sk_conn_abort(sk_conn_t *c) {
  /* A reset only when output is being dropped anyway: with the queue
   * written (lingering, say) the kernel still delivers it to a slow reader. */
  if (!c->closed && sk_buf_len(&c->out))
    c->reset = 1;
  conn_close_now(c, SK_CLOSE_NORMAL);
}
void *sk_conn_data(const sk_conn_t *c) { return c->data; }
void sk_conn_set_data(sk_conn_t *c, void *data) { c->data = data; }
void *sk_conn_ctx(const sk_conn_t *c) { return c->inst->srv->o.ctx; }
const sk_sockaddr_t *sk_conn_peer(const sk_conn_t *c) { return &c->peer; }
int sk_conn_local(const sk_conn_t *c, sk_sockaddr_t *out) {
  out->len = sizeof out->ss;
  return getsockname(c->fd, (struct sockaddr *)&out->ss, &out->len) < 0 ? -errno : 0;
}
sk_loop_t *sk_conn_loop(const sk_conn_t *c) { return c->inst->loop; }
int sk_conn_is_message(const sk_conn_t *c) { return c->message; }
sk_tls_t *sk_conn_tls(const sk_conn_t *c) { return c->t ? c->t->tls : NULL; }
sk_buf_t *sk_conn_input(sk_conn_t *c) {
  return c->inst->shared_owner == c ? &c->inst->shared_in : &c->in;
}
size_t sk_conn_buffer_bytes(const sk_conn_t *c) { return c->in.cap + c->out.cap; }

long sk_line_next(const sk_buf_t *in, size_t max, size_t *len_no_eol) {
  size_t len = sk_buf_len(in);
  size_t scan = len < max ? len : max;
  const char *p = sk_buf_head(in);
  const char *nl = scan ? memchr(p, '\n', scan) : NULL;
  if (!nl)
    return len >= max ? SK_ETOOBIG : 0;
  size_t n = (size_t)(nl - p);
  *len_no_eol = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
  return (long)n + 1;
}

/* ---- accepting ------------------------------------------------------------------------ */

/* Starts c's TLS session and its handshake deadline; the handshake itself
 * runs on readiness (a server first waits for the ClientHello). Returns 0
 * or -ENOMEM. */
static int tls_start(sk_conn_t *c, sk_tls_ctx_t *ctx) {
  instance_t *in = c->inst;
  sk_server_t *s = in->srv;
  if (!(c->t = calloc(1, sizeof *c->t)))
    return -ENOMEM;
  sk_timer_init(&c->t->timer, tls_timer_fired, c); /* before anything may fail */
  if (s->tls_ops->session_new(&c->t->tls, ctx, c->fd) < 0)
    return -ENOMEM;
  c->t->handshaking = 1;
  return sk_timer_start(in->loop, &c->t->timer,
                        s->o.tls_timeout_ms ? s->o.tls_timeout_ms : SK_TLS_HANDSHAKE_TIMEOUT_MS, 0);
}

static void add_conn(instance_t *in, int fd, const sk_sockaddr_t *peer, int message,
                     sk_tls_ctx_t *tls) {
  sk_server_t *s = in->srv;
  sk_conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    report(in, "out of memory: connection dropped");
    return;
  }
  c->inst = in;
  c->fd = fd;
  c->peer = *peer;
  c->message = message;
  c->started = c->last_activity = sk_loop_now(in->loop);
  sk_buf_init(&c->in, s->o.in_limit ? s->o.in_limit : SK_SERVER_IN_LIMIT);
  sk_buf_init(&c->out, s->o.out_limit ? s->o.out_limit : SK_SERVER_OUT_LIMIT);
  c->io.cb = on_conn;
  c->io.data = c;
  sk_timer_init(&c->linger, linger_fired, c);
  if (sk_io_start(in->loop, &c->io, fd, SK_READABLE) < 0) {
    close(fd);
    free(c);
    return;
  }
  c->next = in->conns;
  if (in->conns)
    in->conns->prev = c;
  in->conns = c;
  in->nconns++;
  if (tls && tls_start(c, tls) < 0) {
    report(in, "out of memory: TLS connection dropped");
    conn_end(c, SK_CLOSE_ERROR, "tls: out of memory");
    return;
  }
  if (!c->t)
    conn_open(c);
}

/* Gives c to the handler: on_open (which may refuse it), then its
 * greeting is written. */
static void conn_open(sk_conn_t *c) {
  sk_server_t *s = c->inst->srv;
  c->opened = 1;
  c->in_dispatch = 1;
  int refused = s->o.handler->on_open && s->o.handler->on_open(c) < 0;
  c->in_dispatch = 0;
  if (refused) {
    c->closing = 1;
    sk_buf_consume(&c->out, sk_buf_len(&c->out));
    conn_close_now(c, SK_CLOSE_NORMAL);
    return;
  }
  if (!c->closed && conn_flush(c) == 0)
    conn_update(c);
}

static void on_accept(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  inst_listener_t *l = io->data;
  instance_t *in = l->inst;
  sk_server_t *s = in->srv;
  (void)loop;
  (void)ev;
  for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
    if (s->o.max_conns && in->nconns >= s->o.max_conns) {
      in->paused = 1;
      for (int j = 0; j < in->nls; j++)
        if (!in->ls[j].dgram)
          sk_io_set(in->loop, &in->ls[j].io, 0);
      return;
    }
    sk_sockaddr_t peer;
    int shed, fd = sk_net_accept_or_shed(l->fd, &peer, &shed);
    if (shed)
      report(in, "accept: %s; closing new connections until descriptors are free",
             sk_strerror(shed));
    if (fd == SK_EAGAIN)
      return;
    if (fd < 0) {
      report(in, "accept: %s", sk_strerror(fd));
      return;
    }
    if (s->o.verify && !s->o.verify(s->o.ctx, &peer)) {
      close(fd);
      continue;
    }
    add_conn(in, fd, &peer, l->message, l->tls);
  }
}

/* ---- datagrams ------------------------------------------------------------------------- */

/* Reports the datagrams dropped since the last report, if any and if the
 * last one went out a second ago or more (force: from the sweep, which
 * runs once a second, so counts never wait for the next drop). */
static void report_drops(instance_t *in, int force) {
  uint64_t now = sk_loop_now(in->loop);
  if (!in->drop_loop && !in->drop_budget)
    return;
  if (!force && in->last_drop_log && now - in->last_drop_log < 1000)
    return;
  sk_server_t *s = in->srv;
  char a[SK_ENDPOINT_STRLEN], b[SK_ENDPOINT_STRLEN];
  in->last_drop_log = now;
  if (s->o.on_error) {
    char msg[SK_ERRLEN];
    unsigned rate = s->o.dgram_rate ? s->o.dgram_rate : SK_SERVER_DGRAM_RATE;
    snprintf(msg, sizeof msg,
             "datagrams dropped unanswered: %lu over the budget of %u a second per source "
             "(last from %s), %lu that could start a reply loop (last from %s)",
             in->drop_budget, rate,
             in->drop_budget ? sk_sockaddr_format(&in->drop_budget_from, a, sizeof a) : "-",
             in->drop_loop, in->drop_loop ? sk_sockaddr_format(&in->drop_loop_from, b, sizeof b)
                                          : "-");
    s->o.on_error(s->o.ctx, msg);
  }
  in->drop_loop = in->drop_budget = 0;
}

/* 1 if the datagram from peer may go to the handler; else counts it. dst
 * is the address it was sent to, when the socket reports it. */
static int dgram_admit(instance_t *in, const inst_listener_t *l, const sk_sockaddr_t *peer,
                       const sk_sockaddr_t *dst) {
  int fam = peer->ss.ss_family;
  if ((fam == AF_INET || fam == AF_INET6) &&
      (sk__dgram_loop_port((unsigned)sk_sockaddr_port(peer)) ||
       sk__dgram_from_self(&l->self, peer, dst))) {
    in->drop_loop++;
    in->drop_loop_from = *peer;
    report_drops(in, 0);
    return 0;
  }
  uint8_t key[16];
  if (in->budget && sk__dgram_source_key(peer, key) &&
      !sk__dgram_budget_take(in->budget, key, sk_loop_now(in->loop))) {
    in->drop_budget++;
    in->drop_budget_from = *peer;
    report_drops(in, 0);
    return 0;
  }
  return 1;
}

/* The destination address of a datagram from its IP_PKTINFO or
 * IPV6_PKTINFO control message into dst (dst->len 0 when there is none). */
static void dgram_destination(struct msghdr *mh, sk_sockaddr_t *dst) {
  dst->len = 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
    if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof pi);
      struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = pi.ipi_addr};
      memcpy(&dst->ss, &sin, dst->len = sizeof sin);
    } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof pi);
      struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = pi.ipi6_addr};
      memcpy(&dst->ss, &sin6, dst->len = sizeof sin6);
    }
  }
}

static void on_dgram(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  inst_listener_t *l = io->data;
  instance_t *in = l->inst;
  sk_server_t *s = in->srv;
  (void)loop;
  (void)ev;
  for (int i = 0; i < DGRAMS_PER_WAKEUP; i++) {
    sk_sockaddr_t peer, dst;
    union {
      char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
      struct cmsghdr align;
    } control;
    struct iovec iov = {in->dgram_buf, SK_MSG_MAX};
    struct msghdr mh = {.msg_name = &peer.ss, .msg_namelen = sizeof peer.ss, .msg_iov = &iov,
                        .msg_iovlen = 1, .msg_control = l->pktinfo ? control.buf : NULL,
                        .msg_controllen = l->pktinfo ? sizeof control.buf : 0};
    ssize_t n = recvmsg(l->fd, &mh, 0);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNREFUSED)
        continue; /* ICMP from an earlier reply; not this socket's fault */
      return;
    }
    peer.len = mh.msg_namelen;
    dst.len = 0;
    if (l->pktinfo)
      dgram_destination(&mh, &dst);
    if (s->o.verify && !s->o.verify(s->o.ctx, &peer))
      continue;
    if (!dgram_admit(in, l, &peer, &dst))
      continue;
    sk_datagram_t dg = {in->dgram_buf, (size_t)n, &peer, l->fd, s->o.ctx};
    if (s->o.handler->on_datagram)
      s->o.handler->on_datagram(s, &dg);
  }
}

/* Prepares datagram listener l: its own address, and for a wildcard IP
 * socket the destination of each datagram (to know our own address). */
static void dgram_listener_init(inst_listener_t *l) {
  l->self.len = sizeof l->self.ss;
  if (getsockname(l->fd, (struct sockaddr *)&l->self.ss, &l->self.len) < 0) {
    l->self.len = 0;
    l->self.ss.ss_family = AF_UNSPEC;
    return;
  }
  int one = 1, fam = l->self.ss.ss_family;
  if (fam == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->self.ss;
    l->pktinfo = sin->sin_addr.s_addr == htonl(INADDR_ANY) &&
                 setsockopt(l->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0;
  } else if (fam == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->self.ss;
    if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) {
      /* Dual stack: IPv4 datagrams report through IP_PKTINFO. */
      int v6 = setsockopt(l->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0;
      int v4 = setsockopt(l->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0;
      l->pktinfo = v6 || v4;
    }
  }
}

/* Readies datagram listener l of instance in: its address, and the
 * instance's per-source budget unless the server has none. Returns 0 or
 * -ENOMEM. */
static int dgram_attach(instance_t *in, inst_listener_t *l) {
  const sk_server_opts_t *o = &in->srv->o;
  unsigned rate = o->dgram_rate ? o->dgram_rate : SK_SERVER_DGRAM_RATE;
  dgram_listener_init(l);
  if (in->budget || rate == SK_SERVER_DGRAM_UNLIMITED)
    return 0;
  return sk__dgram_budget_new(&in->budget, rate,
                              o->dgram_burst ? o->dgram_burst : SK_SERVER_DGRAM_BURST);
}

void sk_server_report(sk_server_t *s, const char *fmt, ...) {
  uint64_t now = sk__now_ms(), last = atomic_load(&s->last_report);
  if (!s->o.on_error || (last && now - last < 1000))
    return;
  if (!atomic_compare_exchange_strong(&s->last_report, &last, now))
    return; /* another thread reports this second */
  char msg[SK_ERRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  s->o.on_error(s->o.ctx, msg);
}

int sk_server_reply(const sk_datagram_t *dg, const void *data, size_t len) {
  if (dg->peer->len <= sizeof(sa_family_t))
    return -EDESTADDRREQ; /* an unbound unix socket has no address to answer */
  ssize_t n;
  do
    n = sendto(dg->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
               (const struct sockaddr *)&dg->peer->ss, dg->peer->len);
  while (n < 0 && errno == EINTR);
  return n < 0 ? sk__neg_errno() : 0;
}

/* ---- timers, stop ------------------------------------------------------------------------ */

/* Once a second (or at the idle timeout's pace): closes connections idle
 * too long, and frees the empty buffers of connections quiet for
 * RELEASE_MS, so an idle connection holds no buffer storage. */
static void on_sweep(sk_loop_t *loop, sk_timer_t *t) {
  instance_t *in = t->data;
  uint64_t now = sk_loop_now(loop), idle = in->srv->o.idle_timeout_ms;
  size_t released = 0;
  sk_conn_t *next;
  for (sk_conn_t *c = in->conns; c; c = next) {
    next = c->next;
    if (c->t && c->t->handshaking)
      continue; /* the handshake has its own deadline */
    uint64_t quiet = now - c->last_activity;
    if (idle && quiet >= idle) {
      conn_close_now(c, SK_CLOSE_IDLE);
      continue;
    }
    if (quiet >= RELEASE_MS) {
      if (c->in.cap && sk_buf_len(&c->in) == 0) {
        released += c->in.cap;
        sk_buf_free(&c->in);
      }
      if (c->out.cap && sk_buf_len(&c->out) == 0) {
        released += c->out.cap;
        sk_buf_free(&c->out);
      }
    }
  }
  report_drops(in, 1);
#if SK_HAVE_MALLOC_TRIM
  if (released >= RELEASE_TRIM_BYTES)
    malloc_trim(0);
#else
  (void)released;
#endif
}

static void instance_finish(instance_t *in) {
  if (in->done)
    return;
  in->done = 1;
  sk_timer_stop(in->loop, &in->grace);
  sk_timer_stop(in->loop, &in->sweep);
  sk_io_stop(in->loop, &in->wake_io);
  atomic_fetch_sub(&in->srv->live, 1);
}

static void on_grace(sk_loop_t *loop, sk_timer_t *t) {
  instance_t *in = t->data;
  (void)loop;
  while (in->conns && !in->done)
    conn_close_now(in->conns, SK_CLOSE_SHUTDOWN);
  instance_finish(in);
}

static void instance_begin_stop(instance_t *in) {
  if (in->stopping)
    return;
  in->stopping = 1;
  for (int i = 0; i < in->nls; i++) {
    sk_io_stop(in->loop, &in->ls[i].io);
    if (in->ls[i].own) {
      close(in->ls[i].fd);
      in->ls[i].own = 0;
    }
  }
  /* Clients still in their TLS handshake have nothing to finish. */
  sk_conn_t *next;
  for (sk_conn_t *c = in->conns; c; c = next) {
    next = c->next;
    if (c->t && c->t->handshaking)
      conn_end(c, SK_CLOSE_SHUTDOWN, "tls: closed during the handshake: shutdown");
  }
  if (in->done)
    return;
  if (in->nconns == 0) {
    instance_finish(in);
    return;
  }
  /* Live connections get the grace period to finish, then are closed. */
  sk_timer_start(in->loop, &in->grace, in->srv->o.grace_ms ? in->srv->o.grace_ms
                                                             : SK_SERVER_GRACE_MS, 0);
}

static void on_wake(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  instance_t *in = io->data;
  uint64_t v;
  ssize_t r = read(in->wake_fd, &v, sizeof v);
  (void)r;
  (void)loop;
  (void)ev;
  if (atomic_load(&in->srv->stopping))
    instance_begin_stop(in);
}

void sk_server_stop(sk_server_t *s) {
  atomic_store(&s->stopping, 1);
  for (instance_t *in = s->instances; in; in = in->next) {
    uint64_t one = 1;
    ssize_t r = write(in->wake_fd, &one, sizeof one);
    (void)r;
  }
}

int sk_server_stopped(const sk_server_t *s) { return atomic_load(&s->live) == 0; }

/* ---- life ----------------------------------------------------------------------------------- */

int sk_server_new(sk_server_t **out, const sk_server_opts_t *opts) {
  sk_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->o = *opts;
  *out = s;
  return 0;
}

int sk__server_listen(sk_server_t *s, const sk_endpoint_t *ep, const sk_sockopts_t *o,
                      sk_tls_ctx_t *tls, const sk__server_tls_t *ops, char *err, size_t errlen) {
  if (s->nls == MAX_LISTENERS)
    return sk_err_set(-ENOSPC, err, errlen, "listen: more than %d endpoints", MAX_LISTENERS);
  sk_sockopts_t opts;
  memset(&opts, 0, sizeof opts);
  if (o)
    opts = *o;
  int r = sk_listener_open(&s->ls[s->nls], ep, &opts, err, errlen);
  if (r < 0)
    return r;
  s->lopts[s->nls] = opts;
  s->ltls[s->nls] = tls;
  if (tls)
    s->tls_ops = ops;
  s->nls++;
  return 0;
}

int sk_server_listen(sk_server_t *s, const sk_endpoint_t *ep, const sk_sockopts_t *o, char *err,
                     size_t errlen) {
  char text[SK_ENDPOINT_STRLEN];
  if (ep->flags & SK_EP_TLS)
    return sk_err_set(-EINVAL, err, errlen,
                      "%s: a tls:// endpoint needs a TLS context (sk_server_listen_tls)",
                      sk_endpoint_format(ep, text, sizeof text));
  return sk__server_listen(s, ep, o, NULL, NULL, err, errlen);
}

/* sk_server_listen_tls is in server_tls.c. */

const sk_listener_t *sk_server_listener(const sk_server_t *s, int i) {
  return i >= 0 && i < s->nls ? &s->ls[i] : NULL;
}

int sk_server_attach(sk_server_t *s, sk_loop_t *loop) {
  instance_t *in = calloc(1, sizeof *in);
  if (!in)
    return -ENOMEM;
  int r = 0;
  in->srv = s;
  in->loop = loop;
  in->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  in->dgram_buf = malloc(SK_MSG_MAX);
  sk_buf_init(&in->shared_in, s->o.in_limit ? s->o.in_limit : SK_SERVER_IN_LIMIT);
  if (in->wake_fd < 0 || !in->dgram_buf) {
    r = in->wake_fd < 0 ? sk__neg_errno() : -ENOMEM;
    goto fail;
  }
  int first = s->instances == NULL;
  for (int i = 0; i < s->nls; i++) {
    inst_listener_t *l = &in->ls[i];
    const sk_listener_t *base = &s->ls[i];
    l->inst = in;
    l->fd = base->fd;
    l->dgram = sk_endpoint_socktype(&base->ep) == SOCK_DGRAM;
    l->message = base->ep.kind == SK_EP_UNIX_SEQPACKET;
    l->tls = s->ltls[i];
    if (!first && s->lopts[i].reuseport && !base->inherited &&
        (base->ep.kind == SK_EP_TCP || base->ep.kind == SK_EP_UDP)) {
      /* Each worker its own socket on the same address: the kernel spreads
       * connections (and datagrams) across them. A socket passed by systemd
       * is shared instead: its address is held without SO_REUSEPORT. */
      sk_endpoint_t ep = base->ep;
      ep.port = (uint16_t)sk_sockaddr_port(&base->bound);
      sk_listener_t mine;
      r = sk_listener_open(&mine, &ep, &s->lopts[i], NULL, 0);
      if (r < 0)
        goto fail;
      l->fd = mine.fd;
      l->own = 1;
    }
    l->io.cb = l->dgram ? on_dgram : on_accept;
    l->io.data = l;
    in->nls++;
    if (l->dgram && (r = dgram_attach(in, l)) < 0)
      goto fail;
    if ((r = sk_io_start(loop, &l->io, l->fd, SK_READABLE)) < 0)
      goto fail;
  }
  in->wake_io.cb = on_wake;
  in->wake_io.data = in;
  if ((r = sk_io_start(loop, &in->wake_io, in->wake_fd, SK_READABLE)) < 0)
    goto fail;
  sk_timer_init(&in->sweep, on_sweep, in);
  sk_timer_init(&in->grace, on_grace, in);
  uint64_t every = s->o.idle_timeout_ms && s->o.idle_timeout_ms < SWEEP_MS ? s->o.idle_timeout_ms
                                                                          : SWEEP_MS;
  sk_timer_start(loop, &in->sweep, every, every);
  in->next = s->instances;
  s->instances = in;
  atomic_fetch_add(&s->live, 1);
  if (atomic_load(&s->stopping))
    sk_server_stop(s);
  return 0;
fail:
  for (int i = 0; i < in->nls; i++) {
    sk_io_stop(loop, &in->ls[i].io);
    if (in->ls[i].own)
      close(in->ls[i].fd);
  }
  if (in->wake_fd >= 0) {
    sk_io_stop(loop, &in->wake_io);
    close(in->wake_fd);
  }
  free(in->dgram_buf);
  sk__dgram_budget_free(in->budget);
  sk_buf_free(&in->shared_in);
  free(in);
  return r;
}

typedef struct {
  sk_loop_t *loop;
  pthread_t thread;
  int rc;
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  w->rc = sk_loop_run(w->loop);
  return NULL;
}

int sk_server_run(sk_server_t *s, int workers) {
  if (workers <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    workers = n > 0 ? (int)n : 1;
  }
  worker_t *w = calloc((size_t)workers, sizeof *w);
  if (!w)
    return -ENOMEM;
  int r = 0, made = 0;
  for (int i = 0; i < workers; i++) {
    if ((r = sk_loop_new(&w[i].loop)) < 0)
      break;
    made++;
    if ((r = sk_server_attach(s, w[i].loop)) < 0)
      break;
  }
  int running = 0;
  if (r == 0) {
    running = 1; /* the caller's thread is worker 0 */
    for (int i = 1; i < workers; i++) {
      if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
        r = -EAGAIN;
        sk_server_stop(s);
        break;
      }
      running++;
    }
    worker_main(&w[0]);
    for (int i = 1; i < running; i++)
      pthread_join(w[i].thread, NULL);
    for (int i = 0; i < running && r == 0; i++)
      r = w[i].rc;
  }
  for (int i = 0; i < made; i++)
    sk_loop_free(w[i].loop);
  free(w);
  return r;
}

void sk_server_free(sk_server_t *s) {
  if (!s)
    return;
  instance_t *next;
  for (instance_t *in = s->instances; in; in = next) {
    next = in->next;
    while (in->conns) {
      sk_conn_t *c = in->conns;
      in->conns = c->next;
      close(c->fd);
      if (c->opened && s->o.handler->on_close)
        s->o.handler->on_close(c, SK_CLOSE_SHUTDOWN);
      free_conn(NULL, c);
    }
    for (int i = 0; i < in->nls; i++)
      if (in->ls[i].own)
        close(in->ls[i].fd);
    close(in->wake_fd);
    free(in->dgram_buf);
    sk__dgram_budget_free(in->budget);
    sk_buf_free(&in->shared_in);
    free(in);
  }
  for (int i = 0; i < s->nls; i++)
    sk_listener_close(&s->ls[i]);
  free(s);
}
