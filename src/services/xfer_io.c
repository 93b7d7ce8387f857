/* xfer_io.c - waiting on the connection, framed buffers and the hashing
 * thread shared by the file-transfer sender and receiver. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "services/xfer_int.h"

uint64_t xfer_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int xfer_fail(int code, char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

const char *xfer_strerror(int code) {
  switch (code) {
  case SK_EOF: return "connection closed";
  case SK_ETIMEDOUT: return "timed out (no progress)";
  case -ECANCELED: return "interrupted";
  default: return sk_strerror(code);
  }
}

char *xfer_human(uint64_t bytes, char *buf, size_t len) {
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) {
    snprintf(buf, len, "%llu byte%s", (unsigned long long)bytes, bytes == 1 ? "" : "s");
    return buf;
  }
  double v = (double)bytes / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    u++;
  }
  snprintf(buf, len, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

uint64_t xconn_idle(const xfer_conn_t *c) { return c->idle_ms ? c->idle_ms : XFER_IDLE_MS_DEFAULT; }

/* ---- the socket ------------------------------------------------------------------------ */

/* Over TLS, a readable socket is not the only way to have something to
 * read: bytes the session has already decrypted (a record read only in
 * part) sit in the SSL object, and the socket may never become readable
 * for them. Every wait for input asks the session first. */
int xconn_poll(xfer_conn_t *c, short events, uint64_t wait_ms) {
  uint64_t deadline = xfer_now_ms() + wait_ms;
  if ((events & POLLIN) && c->tls && sk_tls_pending(c->tls) > 0)
    return POLLIN;
  for (;;) {
    struct pollfd p[2] = {{.fd = c->fd, .events = events},
                          {.fd = c->cancel_fd, .events = POLLIN}};
    uint64_t now = xfer_now_ms();
    int timeout = now >= deadline ? 0 : (int)(deadline - now > 3600000 ? 3600000 : deadline - now);
    int n = poll(p, c->cancel_fd >= 0 ? 2 : 1, timeout);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (c->cancel_fd >= 0 && p[1].revents)
      return -ECANCELED;
    if (n > 0 && p[0].revents)
      return p[0].revents;
    if (xfer_now_ms() >= deadline)
      return 0;
  }
}

/* What a TLS call that returned SK_EAGAIN waits for, as poll events. */
static short tls_events(unsigned want) { return want == SK_WRITABLE ? POLLOUT : POLLIN; }

/* xconn_read over TLS: the session may need the socket writable to read
 * (a TLS 1.3 key update it must answer). */
static ssize_t tls_read(xfer_conn_t *c, void *buf, size_t len, uint64_t wait_ms) {
  for (;;) {
    unsigned want = 0;
    ssize_t n = sk_tls_read(c->tls, buf, len, &want);
    if (n != SK_EAGAIN)
      return n;
    int r = xconn_poll(c, tls_events(want), wait_ms);
    if (r < 0)
      return r;
    if (r == 0)
      return SK_ETIMEDOUT;
  }
}

ssize_t xconn_read(xfer_conn_t *c, void *buf, size_t len, uint64_t wait_ms) {
  if (c->stream)
    return sk_stream_read(c->stream, buf, len);
  if (c->tls)
    return tls_read(c, buf, len, wait_ms);
  for (;;) {
    ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
    if (n > 0)
      return n;
    if (n == 0)
      return SK_EOF;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -errno;
    int r = xconn_poll(c, POLLIN, wait_ms);
    if (r < 0)
      return r;
    if (r == 0)
      return SK_ETIMEDOUT;
  }
}

/* xconn_write over TLS. A partial write is retried with the rest of the
 * same buffer, as SSL_write requires. While the session waits for the
 * socket, what the peer sends is read into rd, through the session. */
static int tls_write(xfer_conn_t *c, xin_t *rd, const char *p, size_t len) {
  while (len) {
    unsigned want = 0;
    ssize_t n = sk_tls_write(c->tls, p, len, &want);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n == SK_EOF)
      return -EPIPE;
    if (n != SK_EAGAIN)
      return (int)n;
    short ev = tls_events(want);
    if (rd && rd->len < rd->cap)
      ev |= POLLIN;
    int r = xconn_poll(c, ev, xconn_idle(c));
    if (r < 0)
      return r;
    if (r == 0)
      return SK_ETIMEDOUT;
    if ((r & (POLLIN | POLLHUP | POLLERR)) && rd) {
      ssize_t got = xin_read_ready(rd, c);
      if (got < 0 && got != SK_EOF)
        return (int)got;
    }
  }
  return 0;
}

int xconn_write(xfer_conn_t *c, xin_t *rd, const void *data, size_t len) {
  if (c->stream)
    return sk_stream_write(c->stream, data, len);
  if (c->tls)
    return tls_write(c, rd, data, len);
  const char *p = data;
  while (len) {
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return -errno;
    short ev = POLLOUT;
    if (rd && rd->len < rd->cap)
      ev |= POLLIN;
    int r = xconn_poll(c, ev, xconn_idle(c));
    if (r < 0)
      return r;
    if (r == 0)
      return SK_ETIMEDOUT;
    if ((r & (POLLIN | POLLHUP | POLLERR)) && rd) {
      ssize_t got = xin_read_ready(rd, c);
      if (got < 0 && got != SK_EOF)
        return (int)got;
    }
  }
  return 0;
}

/* Shuts fd's write half and reads the peer out (through tls when set:
 * the records must be taken off the socket, or closing it would reset the
 * connection, and what the session already holds decrypted counts as
 * readable) until its end or ms pass. */
static void drain(int fd, sk_tls_t *tls, uint64_t ms) {
  char scrap[65536];
  uint64_t deadline = xfer_now_ms() + ms;
  shutdown(fd, SHUT_WR);
  for (;;) {
    uint64_t now = xfer_now_ms();
    if (now >= deadline)
      return;
    short events = POLLIN;
    if (tls) {
      unsigned want = 0;
      ssize_t got = sk_tls_read(tls, scrap, sizeof scrap, &want);
      if (got > 0)
        continue;
      if (got != SK_EAGAIN)
        return; /* the peer's close_notify or FIN, or an error: done either way */
      events = tls_events(want);
    }
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)(deadline - now));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    if (tls)
      continue;
    ssize_t got = recv(fd, scrap, sizeof scrap, MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
      return;
  }
}

/* Over TLS the write half ends with close_notify before the FIN. */
void xconn_drain(xfer_conn_t *c, uint64_t ms) {
  if (c->tls)
    sk_tls_close_notify(c->tls);
  drain(c->fd, c->tls, ms);
}

void xconn_send_error(xfer_conn_t *c, xout_t *out, int code, const char *text) {
  sk_xfer_msg_t m = {.type = SK_XFER_ERROR};
  size_t n = strlen(text);
  m.u.error.code = (uint16_t)code;
  m.u.error.text = text;
  m.u.error.text_len = n == 0 ? 1 : n > SK_XFER_TEXT_MAX ? SK_XFER_TEXT_MAX : n;
  if (n == 0)
    m.u.error.text = "?";
  char err[SK_ERRLEN];
  if (xout_msg(out, c, NULL, &m, err, sizeof err) == 0)
    xout_flush(out, c, NULL, err, sizeof err);
}

/* ---- TLS ----------------------------------------------------------------------------- */

/* A server's first look at its client, before TLS reads anything: a
 * plain sockit opens with an SKXF HELLO (TLS with a handshake record, 22),
 * and OpenSSL would drop it without a word. It is answered in its own
 * protocol, with an ERROR frame that says what to do. Returns 1 when it
 * was (message in err), 0 to go on with TLS, or a negative code. */
static int plain_peer(xfer_conn_t *c, uint64_t deadline, char *err, size_t errlen) {
  uint64_t now = xfer_now_ms();
  int r = now >= deadline ? 0 : xconn_poll(c, POLLIN, deadline - now);
  if (r == 0)
    return xfer_fail(SK_ETIMEDOUT, err, errlen, "TLS handshake timed out");
  if (r < 0)
    return xfer_fail(r, err, errlen, "%s", xfer_strerror(r));
  unsigned char first;
  if (recv(c->fd, &first, 1, MSG_PEEK | MSG_DONTWAIT) != 1 || first != SK_XFER_HELLO)
    return 0; /* not SKXF (or an error TLS will report): TLS decides */
  static const char text[] = "this side speaks TLS only: connect to its tls:// endpoint "
                             "(trusting it with --pin or --ca)";
  sk_xfer_msg_t m = {.type = SK_XFER_ERROR};
  m.u.error.code = SK_XFER_ERR_PROTOCOL;
  m.u.error.text = text;
  m.u.error.text_len = sizeof text - 1;
  unsigned char frame[SK_XFER_FRAME_MAX];
  long n = sk_xfer_encode(&m, frame, sizeof frame);
  if (n > 0) { /* best effort: if it fails, the peer hears what OpenSSL would have said */
    ssize_t sent = send(c->fd, frame, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)sent;
  }
  drain(c->fd, NULL, XFER_DRAIN_MS);
  xfer_fail(SK_EBADINPUT, err, errlen,
            "the peer speaks plain SKXF, not TLS: it needs a tls:// endpoint too");
  return 1;
}

/* A handshake that failed on what the peer sent (not a timeout) ends with
 * the socket read out, as after an ERROR frame: closing with unread bytes
 * would reset the connection, and the peer would read "connection reset"
 * instead of the TLS alert just sent (or, for a plain sockit, instead of
 * bytes it can recognise as TLS). The session is dead: raw reads. */
int xfer_tls_handshake(xfer_conn_t *c, int server, uint64_t timeout_ms, char *err,
                       size_t errlen) {
  uint64_t deadline = xfer_now_ms() + (timeout_ms ? timeout_ms : SK_TLS_HANDSHAKE_TIMEOUT_MS);
  if (server) {
    int r = plain_peer(c, deadline, err, errlen);
    if (r != 0)
      return r > 0 ? SK_EBADINPUT : r;
  }
  for (;;) {
    unsigned want = 0;
    int r = sk_tls_handshake(c->tls, &want, err, errlen);
    if (r == SK_EBADINPUT)
      drain(c->fd, NULL, XFER_DRAIN_MS);
    if (r != SK_EAGAIN)
      return r;
    uint64_t now = xfer_now_ms();
    r = now >= deadline ? 0 : xconn_poll(c, tls_events(want), deadline - now);
    if (r == 0)
      return xfer_fail(SK_ETIMEDOUT, err, errlen, "TLS handshake timed out");
    if (r < 0)
      return xfer_fail(r, err, errlen, "%s", xfer_strerror(r));
  }
}

void xfer_tls_end(xfer_conn_t *c) {
  if (!c->tls)
    return;
  sk_tls_close_notify(c->tls);
  sk_tls_free(c->tls);
  c->tls = NULL;
}

/* ---- framed input ----------------------------------------------------------------------- */

int xin_init(xin_t *in) {
  memset(in, 0, sizeof *in);
  in->buf = malloc(XFER_IO_BUF);
  if (!in->buf)
    return -ENOMEM;
  in->cap = XFER_IO_BUF;
  return 0;
}

void xin_free(xin_t *in) {
  free(in->buf);
  memset(in, 0, sizeof *in);
}

size_t xin_avail(const xin_t *in) { return in->len - in->off - in->pending; }

void xin_consume(xin_t *in, size_t n) {
  in->off += in->pending + n;
  in->pending = 0;
  if (in->off == in->len)
    in->off = in->len = 0;
}

/* Moves the unconsumed bytes to the front, making room at the end. The
 * last returned frame must have been consumed (its pointers move). */
static void xin_compact(xin_t *in) {
  if (in->off == 0)
    return;
  memmove(in->buf, in->buf + in->off, in->len - in->off);
  in->len -= in->off;
  in->off = 0;
}

/* xin_read_ready over TLS: everything the session can give without
 * waiting (records already on the socket, and what it holds decrypted),
 * up to the free space. Bytes come before an end or an error, which the
 * next call reports again. */
static ssize_t tls_read_ready(xin_t *in, xfer_conn_t *c) {
  ssize_t total = 0;
  while (in->len < in->cap) {
    unsigned want = 0;
    ssize_t n = sk_tls_read(c->tls, in->buf + in->len, in->cap - in->len, &want);
    if (n > 0) {
      in->len += (size_t)n;
      total += n;
      continue;
    }
    if (n == SK_EAGAIN || total > 0)
      break;
    return n;
  }
  return total;
}

ssize_t xin_read_ready(xin_t *in, xfer_conn_t *c) {
  if (in->len == in->cap && in->pending == 0)
    xin_compact(in);
  if (in->len == in->cap)
    return 0;
  if (c->tls)
    return tls_read_ready(in, c);
  for (;;) {
    ssize_t n = recv(c->fd, in->buf + in->len, in->cap - in->len, MSG_DONTWAIT);
    if (n > 0) {
      in->len += (size_t)n;
      return n;
    }
    if (n == 0)
      return SK_EOF;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  }
}

/* 1 if the bytes p[0..n) (n >= 1) can be the start of a TLS record (a
 * handshake or an alert: a ClientHello to a plain receiver, a TLS
 * receiver's alert to a plain sender), which no SKXF frame can be: SKXF
 * types end at 11. */
static int looks_like_tls(const unsigned char *p, size_t n) {
  return n >= 1 && p[0] >= 20 && p[0] <= 23 && (n < 2 || p[1] == 3) && (n < 3 || p[2] <= 4);
}

int xin_next(xin_t *in, xfer_conn_t *c, sk_xfer_msg_t *m, uint64_t wait_ms, char *err,
             size_t errlen) {
  xin_consume(in, 0);
  for (;;) {
    char why[160];
    long r = sk_xfer_parse(in->buf + in->off, in->len - in->off, m, why, sizeof why);
    if (r > 0) {
      in->pending = (size_t)r;
      return 1;
    }
    if (r == SK_EBADINPUT && !c->tls && looks_like_tls(in->buf + in->off, in->len - in->off))
      return xfer_fail(SK_EBADINPUT, err, errlen,
                       "%s speaks TLS, not plain SKXF: give this side a tls:// endpoint too",
                       c->peer);
    if (r == SK_EBADINPUT)
      return xfer_fail(SK_EBADINPUT, err, errlen, "bad message from %s: %s", c->peer, why);
    if (wait_ms == 0)
      return 0;
    xin_compact(in);
    ssize_t n = xconn_read(c, in->buf + in->len, in->cap - in->len, wait_ms);
    if (n == SK_EOF)
      return xfer_fail(SK_EOF, err, errlen, "connection closed by %s%s", c->peer,
                       in->len ? " in the middle of a message" : "");
    if (n < 0)
      return xfer_fail((int)n, err, errlen, "%s: %s", c->peer, xfer_strerror((int)n));
    in->len += (size_t)n;
  }
}

int xin_fill(xin_t *in, xfer_conn_t *c, size_t need) {
  while (xin_avail(in) < need) {
    xin_compact(in);
    ssize_t n = xconn_read(c, in->buf + in->len, in->cap - in->len, xconn_idle(c));
    if (n < 0)
      return (int)n;
    in->len += (size_t)n;
  }
  return 0;
}

/* ---- framed output ------------------------------------------------------------------- */

int xout_init(xout_t *out) {
  memset(out, 0, sizeof *out);
  out->buf = malloc(XFER_IO_BUF);
  if (!out->buf)
    return -ENOMEM;
  out->cap = XFER_IO_BUF;
  return 0;
}

void xout_free(xout_t *out) {
  free(out->buf);
  memset(out, 0, sizeof *out);
}

int xout_flush(xout_t *out, xfer_conn_t *c, xin_t *rd, char *err, size_t errlen) {
  if (out->len == 0)
    return 0;
  int r = xconn_write(c, rd, out->buf, out->len);
  out->len = 0;
  if (r < 0)
    return xfer_fail(r, err, errlen, "send to %s: %s", c->peer, xfer_strerror(r));
  return 0;
}

int xout_msg(xout_t *out, xfer_conn_t *c, xin_t *rd, const sk_xfer_msg_t *m, char *err,
             size_t errlen) {
  if (out->cap - out->len < SK_XFER_FRAME_MAX) {
    int r = xout_flush(out, c, rd, err, errlen);
    if (r < 0)
      return r;
  }
  long n = sk_xfer_encode(m, out->buf + out->len, out->cap - out->len);
  if (n < 0)
    return xfer_fail((int)n, err, errlen, "cannot encode %s: %s", sk_xfer_type_name(m->type),
                     sk_strerror((int)n));
  out->len += (size_t)n;
  return 0;
}

int xout_raw(xout_t *out, xfer_conn_t *c, xin_t *rd, const void *data, size_t len, char *err,
             size_t errlen) {
  const char *p = data;
  while (len) {
    if (out->len == out->cap) {
      int r = xout_flush(out, c, rd, err, errlen);
      if (r < 0)
        return r;
    }
    size_t n = out->cap - out->len < len ? out->cap - out->len : len;
    memcpy(out->buf + out->len, p, n);
    out->len += n;
    p += n;
    len -= n;
  }
  return 0;
}

/* ---- the hashing thread ----------------------------------------------------------------- */

enum { JOB_BUF = 1, JOB_FILE = 2 };

typedef struct {
  int kind;
  EVP_MD_CTX *ctx;
  int fd;
  uint64_t off;
  size_t len;
  size_t skew;        /* JOB_BUF: the bytes start this far into buf */
  unsigned char *buf; /* XFER_HASH_CHUNK bytes of this slot, aligned to XFER_ALIGN */
} job_t;

struct xhash {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t work; /* a job was pushed, or stop */
  pthread_cond_t done; /* a job finished */
  job_t slot[XFER_HASH_SLOTS];
  unsigned pushed, finished; /* counters; slot = counter % XFER_HASH_SLOTS */
  int error;                 /* first read error since the last wait */
  int stop;
  EVP_MD *md;
  unsigned char *storage;
};

/* Runs one job (outside the lock). A file range is read with pread()
 * into the slot's buffer, at most XFER_HASH_CHUNK bytes at a time, each
 * at its offset within a page (xhash_slot says why), and hashed from
 * there while it is in this core's cache. No mapping: hashing a
 * mapping saves that copy, but a file cut short under a mapping faults
 * (SIGBUS), which only a process-wide signal handler can turn into an
 * error. Returns 0, SK_EOF when the file ends before the range does (it
 * shrank), or a negative errno. */
static int run_job(job_t *j) {
  if (j->kind != JOB_FILE) {
    EVP_DigestUpdate(j->ctx, j->buf + j->skew, j->len);
    return 0;
  }
  for (size_t done = 0; done < j->len;) {
    size_t skew = (size_t)((j->off + done) % XFER_ALIGN);
    size_t want = j->len - done < XFER_HASH_CHUNK - skew ? j->len - done : XFER_HASH_CHUNK - skew;
    ssize_t n = pread(j->fd, j->buf + skew, want, (off_t)(j->off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return SK_EOF;
    EVP_DigestUpdate(j->ctx, j->buf + skew, (size_t)n);
    done += (size_t)n;
  }
  return 0;
}

/* The hashing thread: runs the jobs in order until stopped and idle. */
static void *hash_main(void *arg) {
  xhash_t *h = arg;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    while (h->finished == h->pushed && !h->stop)
      pthread_cond_wait(&h->work, &h->mu);
    if (h->finished == h->pushed)
      break;
    job_t *j = &h->slot[h->finished % XFER_HASH_SLOTS];
    pthread_mutex_unlock(&h->mu);
    int r = run_job(j);
    pthread_mutex_lock(&h->mu);
    if (r < 0 && h->error == 0)
      h->error = r;
    h->finished++;
    pthread_cond_signal(&h->done);
  }
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

int xhash_start(xhash_t **out) {
  xhash_t *h = calloc(1, sizeof *h);
  if (!h)
    return -ENOMEM;
  h->storage = aligned_alloc(XFER_ALIGN, (size_t)XFER_HASH_SLOTS * XFER_HASH_CHUNK);
  h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
  if (!h->storage || !h->md) {
    free(h->storage);
    EVP_MD_free(h->md);
    free(h);
    return -ENOMEM;
  }
  for (int i = 0; i < XFER_HASH_SLOTS; i++)
    h->slot[i].buf = h->storage + (size_t)i * XFER_HASH_CHUNK;
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->work, NULL);
  pthread_cond_init(&h->done, NULL);
  int r = pthread_create(&h->thread, NULL, hash_main, h);
  if (r != 0) {
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->work);
    pthread_cond_destroy(&h->done);
    free(h->storage);
    EVP_MD_free(h->md);
    free(h);
    return -r;
  }
  *out = h;
  return 0;
}

void xhash_stop(xhash_t *h) {
  if (!h)
    return;
  pthread_mutex_lock(&h->mu);
  h->stop = 1;
  pthread_cond_signal(&h->work);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->thread, NULL);
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->work);
  pthread_cond_destroy(&h->done);
  free(h->storage);
  EVP_MD_free(h->md);
  free(h);
}

EVP_MD_CTX *xhash_ctx_new(xhash_t *h) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx && EVP_DigestInit_ex(ctx, h->md, NULL) != 1) {
    EVP_MD_CTX_free(ctx);
    ctx = NULL;
  }
  return ctx;
}

void xhash_ctx_reset(xhash_t *h, EVP_MD_CTX *ctx) { EVP_DigestInit_ex(ctx, h->md, NULL); }

void xhash_peek(const EVP_MD_CTX *ctx, uint8_t out[SK_XFER_HASH_LEN]) {
  EVP_MD_CTX *copy = EVP_MD_CTX_new();
  unsigned len = 0;
  memset(out, 0, SK_XFER_HASH_LEN);
  if (copy && EVP_MD_CTX_copy_ex(copy, ctx) == 1)
    EVP_DigestFinal_ex(copy, out, &len);
  EVP_MD_CTX_free(copy);
}

/* Waits for a free slot and returns it (the lock is not held after). */
static job_t *free_slot(xhash_t *h) {
  pthread_mutex_lock(&h->mu);
  while (h->pushed - h->finished >= XFER_HASH_SLOTS)
    pthread_cond_wait(&h->done, &h->mu);
  job_t *j = &h->slot[h->pushed % XFER_HASH_SLOTS];
  pthread_mutex_unlock(&h->mu);
  return j;
}

/* Hands the slot filled since free_slot to the thread. */
static void push(xhash_t *h) {
  pthread_mutex_lock(&h->mu);
  h->pushed++;
  pthread_cond_signal(&h->work);
  pthread_mutex_unlock(&h->mu);
}

unsigned char *xhash_slot(xhash_t *h) { return free_slot(h)->buf; }

void xhash_push(xhash_t *h, EVP_MD_CTX *ctx, size_t skew, size_t len) {
  job_t *j = free_slot(h);
  j->kind = JOB_BUF;
  j->ctx = ctx;
  j->skew = skew;
  j->len = len;
  push(h);
}

void xhash_push_file(xhash_t *h, EVP_MD_CTX *ctx, int fd, uint64_t off, size_t len) {
  job_t *j = free_slot(h);
  j->kind = JOB_FILE;
  j->ctx = ctx;
  j->fd = fd;
  j->off = off;
  j->len = len;
  push(h);
}

int xhash_wait(xhash_t *h) {
  pthread_mutex_lock(&h->mu);
  while (h->finished != h->pushed)
    pthread_cond_wait(&h->done, &h->mu);
  int r = h->error;
  h->error = 0;
  pthread_mutex_unlock(&h->mu);
  return r;
}

int xhash_file_alive(xhash_t *h, EVP_MD_CTX *ctx, int fd, uint64_t off, uint64_t len,
                     xfer_conn_t *c, xout_t *out, xin_t *rd, char *err, size_t errlen) {
  uint64_t alive = xfer_now_ms();
  /* Both sides usually run with the same idle timeout: well within it. */
  uint64_t every = xconn_idle(c) / 3 < XFER_KEEPALIVE_MS ? xconn_idle(c) / 3 : XFER_KEEPALIVE_MS;
  while (len) {
    size_t n = len < XFER_HASH_FILE_CHUNK ? (size_t)len : XFER_HASH_FILE_CHUNK;
    xhash_push_file(h, ctx, fd, off, n); /* waits while the thread is a few chunks behind */
    off += n;
    len -= n;
    if (xfer_now_ms() - alive >= every) {
      sk_xfer_msg_t m = {.type = SK_XFER_KEEPALIVE};
      int r = xout_msg(out, c, rd, &m, err, errlen);
      if (r == 0)
        r = xout_flush(out, c, rd, err, errlen);
      if (r < 0) {
        xhash_wait(h);
        return XFER_ESEND;
      }
      alive = xfer_now_ms();
    }
  }
  return xhash_wait(h);
}

int xhash_file(xhash_t *h, EVP_MD_CTX *ctx, int fd, uint64_t off, uint64_t len) {
  while (len) {
    size_t n = len < XFER_HASH_FILE_CHUNK ? (size_t)len : XFER_HASH_FILE_CHUNK;
    xhash_push_file(h, ctx, fd, off, n);
    off += n;
    len -= n;
  }
  return xhash_wait(h);
}
