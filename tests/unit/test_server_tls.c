/* tests/unit/test_server_tls.c - sk_server with TLS listeners over loopback:
 * an echo handler served to many clients at once (on worker threads too),
 * a stalled handshake that holds up nobody and is closed at the deadline,
 * a client that sends and closes, several MiB byte-exact both ways, a
 * client that never reads (bounded memory), plain text on the TLS port,
 * idle timeout, max_conns, shutdown, and what is refused. Every wait is
 * bounded; an alarm() backstop fails a test that would hang. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockit/sockit.h"
#include "sockit/tls.h"

#define BACKSTOP_S 30
#define WAIT_MS 5000

/* ---- helpers ------------------------------------------------------------------ */

static char state_dir[64];
static sk_tls_ctx_t *server_ctx, *client_ctx;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static sk_endpoint_t endpoint(const char *text) {
  sk_endpoint_t ep;
  char err[SK_ERRLEN];
  assert_int_equal(sk_endpoint_parse(&ep, text, SK_EP_LISTEN, err, sizeof err), 0);
  return ep;
}

/* A self-signed server context (in a private state directory) and a client
 * context pinned to its certificate, made once for every test. */
static int setup_ctx(void **state) {
  (void)state;
  char err[SK_ERRLEN], fp[SK_TLS_FINGERPRINT_LEN];
  snprintf(state_dir, sizeof state_dir, "/tmp/sk-tls-test-XXXXXX");
  if (!mkdtemp(state_dir))
    return -1;
  sk_tls_config_t sc = {.self_signed = 1, .state_dir = state_dir};
  if (sk_tls_ctx_new(&server_ctx, 1, &sc, err, sizeof err) < 0) {
    fprintf(stderr, "server context: %s\n", err);
    return -1;
  }
  sk_tls_ctx_fingerprint(server_ctx, fp, sizeof fp);
  sk_tls_config_t cc = {.pin = fp};
  if (sk_tls_ctx_new(&client_ctx, 0, &cc, err, sizeof err) < 0) {
    fprintf(stderr, "client context: %s\n", err);
    return -1;
  }
  return 0;
}

static int teardown_ctx(void **state) {
  (void)state;
  char path[128];
  sk_tls_ctx_free(server_ctx);
  sk_tls_ctx_free(client_ctx);
  snprintf(path, sizeof path, "%s/tls-key.pem", state_dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/tls-cert.pem", state_dir);
  unlink(path);
  rmdir(state_dir);
  return 0;
}

/* A plain TCP connection to the listener (non-blocking once connected). */
static int tcp_to(const sk_listener_t *l) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect(fd, (const struct sockaddr *)&l->bound.ss, l->bound.len) < 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

typedef struct {
  int fd;
  sk_tls_t *tls;
} tclient_t;

/* Connects and completes a TLS handshake (pinned). Returns 0 or -1. */
static int tc_open(tclient_t *tc, const sk_listener_t *l) {
  char err[SK_ERRLEN];
  tc->tls = NULL;
  if ((tc->fd = tcp_to(l)) < 0)
    return -1;
  if (sk_tls_new(&tc->tls, client_ctx, tc->fd, "127.0.0.1") < 0 ||
      sk_tls_handshake_wait(tc->tls, tc->fd, WAIT_MS, err, sizeof err) < 0)
    return -1;
  return 0;
}

static void tc_close(tclient_t *tc) {
  sk_tls_free(tc->tls);
  tc->tls = NULL;
  if (tc->fd >= 0)
    close(tc->fd);
  tc->fd = -1;
}

/* Full duplex over a client session: writes out[0..outlen) while reading
 * up to inlen bytes into in, until both are done, the peer's EOF, an error
 * or the deadline. With shut, sends close_notify and shuts the write side
 * once everything is written. Returns the bytes read, or -1 on an error or
 * if the writing did not finish. *eof tells whether the peer ended. */
static ssize_t tc_pump(tclient_t *tc, const char *out, size_t outlen, char *in, size_t inlen,
                       int shut, int *eof, int timeout_ms) {
  size_t sent = 0, got = 0;
  unsigned rwant = SK_READABLE, wwant = SK_WRITABLE;
  int at_eof = 0, shut_done = 0;
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    int progress = 0;
    if (sent < outlen) {
      unsigned want = 0;
      size_t n = outlen - sent < 65536 ? outlen - sent : 65536;
      ssize_t w = sk_tls_write(tc->tls, out + sent, n, &want);
      if (w > 0) {
        sent += (size_t)w;
        progress = 1;
      } else if (w == SK_EAGAIN) {
        wwant = want;
      } else {
        return -1;
      }
    } else if (shut && !shut_done) {
      sk_tls_close_notify(tc->tls);
      shutdown(tc->fd, SHUT_WR);
      shut_done = 1;
    }
    if (got < inlen && !at_eof) {
      unsigned want = 0;
      ssize_t r = sk_tls_read(tc->tls, in + got, inlen - got, &want);
      if (r > 0) {
        got += (size_t)r;
        progress = 1;
      } else if (r == SK_EOF) {
        at_eof = 1;
      } else if (r == SK_EAGAIN) {
        rwant = want;
      } else {
        if (eof)
          *eof = 1;
        return sent < outlen ? -1 : (ssize_t)got;
      }
    }
    int writing = sent < outlen, reading = got < inlen && !at_eof;
    if (!writing && !reading)
      break;
    if (progress)
      continue;
    uint64_t now = now_ms();
    if (now >= deadline)
      break;
    short ev = 0;
    unsigned want = (writing ? wwant : 0) | (reading ? rwant : 0);
    if (want & SK_READABLE)
      ev |= POLLIN;
    if (want & SK_WRITABLE)
      ev |= POLLOUT;
    struct pollfd p = {.fd = tc->fd, .events = ev};
    poll(&p, 1, (int)(deadline - now));
  }
  if (eof)
    *eof = at_eof;
  return sent < outlen ? -1 : (ssize_t)got;
}

/* Reads until the peer closes (EOF or reset) within timeout_ms; returns the
 * bytes seen, or -1 if it stayed open. */
static ssize_t raw_wait_closed(int fd, int timeout_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  ssize_t total = 0;
  for (;;) {
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
      return total;
    if (n > 0) {
      total += n;
      continue;
    }
    uint64_t now = now_ms();
    if (now >= deadline)
      return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    poll(&p, 1, (int)(deadline - now));
  }
}

/* ---- the handler: echo, with counts ---------------------------------------------- */

static atomic_int opens, closes, closes_idle, tls_seen;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char errors[4096];

static void reset_counts(void) {
  atomic_store(&opens, 0);
  atomic_store(&closes, 0);
  atomic_store(&closes_idle, 0);
  atomic_store(&tls_seen, 0);
  pthread_mutex_lock(&log_lock);
  errors[0] = '\0';
  pthread_mutex_unlock(&log_lock);
}

static int echo_open(sk_conn_t *c) {
  atomic_fetch_add(&opens, 1);
  char how[96];
  /* Opened only after the handshake: the session is there and describes
   * a negotiated protocol. */
  if (sk_conn_tls(c) && strncmp(sk_tls_describe(sk_conn_tls(c), how, sizeof how), "TLS", 3) == 0)
    atomic_fetch_add(&tls_seen, 1);
  return 0;
}

static void echo_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)eof;
  size_t n = sk_buf_len(in), room = sk_conn_out_space(c);
  if (n > room)
    n = room;
  if (n && sk_conn_send(c, sk_buf_head(in), n) == 0)
    sk_buf_consume(in, n);
}

static void echo_close(sk_conn_t *c, int reason) {
  (void)c;
  atomic_fetch_add(&closes, 1);
  if (reason == SK_CLOSE_IDLE)
    atomic_fetch_add(&closes_idle, 1);
}

static void on_error(void *ctx, const char *msg) {
  (void)ctx;
  pthread_mutex_lock(&log_lock);
  size_t used = strlen(errors);
  snprintf(errors + used, sizeof errors - used, "%s\n", msg);
  pthread_mutex_unlock(&log_lock);
}

static int errors_contain(const char *what) {
  pthread_mutex_lock(&log_lock);
  int found = strstr(errors, what) != NULL;
  pthread_mutex_unlock(&log_lock);
  return found;
}

static const sk_handler_t echo = {.on_open = echo_open, .on_data = echo_data,
                                  .on_close = echo_close};

/* A server running on its own thread while the test drives clients. */
typedef struct {
  sk_server_t *s;
  int workers, rc;
  pthread_t thread;
} running_t;

static void *serve_main(void *arg) {
  running_t *r = arg;
  r->rc = sk_server_run(r->s, r->workers);
  return NULL;
}

static sk_server_t *tls_server(const sk_server_opts_t *o, int reuseport) {
  sk_server_t *s;
  char err[SK_ERRLEN];
  sk_endpoint_t ep = endpoint("tls://127.0.0.1:0");
  sk_sockopts_t so = {.reuseport = reuseport};
  assert_int_equal(sk_server_new(&s, o), 0);
  int r = sk_server_listen_tls(s, &ep, &so, server_ctx, err, sizeof err);
  if (r < 0)
    fail_msg("listen: %s", err);
  return s;
}

static void start(running_t *r, sk_server_t *s, int workers) {
  r->s = s;
  r->workers = workers;
  r->rc = -1;
  assert_int_equal(pthread_create(&r->thread, NULL, serve_main, r), 0);
}

static void stop(running_t *r) {
  sk_server_stop(r->s);
  pthread_join(r->thread, NULL);
  assert_int_equal(r->rc, 0);
  sk_server_free(r->s);
}

/* Waits (bounded) until counter reaches n. */
static void wait_count(atomic_int *counter, int n) {
  uint64_t deadline = now_ms() + WAIT_MS;
  while (atomic_load(counter) < n && now_ms() < deadline)
    sleep_ms(5);
  assert_int_equal(atomic_load(counter), n);
}

static void fill_pattern(char *p, size_t n, unsigned seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = (char)(x >> 24);
  }
}

/* ---- tests ------------------------------------------------------------------------- */

/* Many clients at once on two worker loops, each echoing 256 KiB byte-exact
 * while the others do the same. */
#define MANY 24
#define MANY_BYTES (256u * 1024u)

typedef struct {
  const sk_listener_t *l;
  unsigned seed;
  int ok;
} many_job_t;

static void *many_client(void *arg) {
  many_job_t *j = arg;
  char *out = malloc(MANY_BYTES), *back = malloc(MANY_BYTES);
  tclient_t tc;
  int eof = 0;
  j->ok = 0;
  if (out && back && tc_open(&tc, j->l) == 0) {
    fill_pattern(out, MANY_BYTES, j->seed);
    ssize_t got = tc_pump(&tc, out, MANY_BYTES, back, MANY_BYTES, 1, &eof, 20000);
    char extra;
    /* After our close_notify the server echoes the rest and closes. */
    ssize_t after = tc_pump(&tc, NULL, 0, &extra, 1, 0, &eof, WAIT_MS);
    j->ok = got == (ssize_t)MANY_BYTES && memcmp(out, back, MANY_BYTES) == 0 && after == 0 && eof;
  }
  tc_close(&tc);
  free(out);
  free(back);
  return NULL;
}

static void test_many_clients_on_workers(void **state) {
  (void)state;
  reset_counts();
  sk_server_opts_t o = {.handler = &echo, .on_error = on_error};
  running_t r;
  alarm(BACKSTOP_S);
  start(&r, tls_server(&o, 1), 2);
  many_job_t jobs[MANY];
  pthread_t t[MANY];
  for (int i = 0; i < MANY; i++) {
    jobs[i] = (many_job_t){.l = sk_server_listener(r.s, 0), .seed = (unsigned)i + 1};
    pthread_create(&t[i], NULL, many_client, &jobs[i]);
  }
  for (int i = 0; i < MANY; i++)
    pthread_join(t[i], NULL);
  for (int i = 0; i < MANY; i++)
    assert_true(jobs[i].ok);
  wait_count(&closes, MANY);
  assert_int_equal(atomic_load(&opens), MANY);
  assert_int_equal(atomic_load(&tls_seen), MANY);
  stop(&r);
  alarm(0);
}

/* Clients that connect and say nothing, or half a ClientHello, hold up no
 * one: another client completes at once; the deadline closes them, said
 * through on_error, and the handler never hears of them. */
static void test_stalled_handshake_holds_up_nobody(void **state) {
  (void)state;
  reset_counts();
  sk_server_opts_t o = {.handler = &echo, .on_error = on_error, .tls_timeout_ms = 700};
  running_t r;
  alarm(BACKSTOP_S);
  start(&r, tls_server(&o, 0), 1);
  const sk_listener_t *l = sk_server_listener(r.s, 0);
  int silent = tcp_to(l), half = tcp_to(l);
  assert_true(silent >= 0 && half >= 0);
  assert_int_equal(send(half, "\x16\x03\x01\x02\x00\x01", 6, MSG_NOSIGNAL), 6);
  uint64_t t0 = now_ms();
  tclient_t tc;
  assert_int_equal(tc_open(&tc, l), 0);
  char back[6];
  int eof = 0;
  assert_int_equal(tc_pump(&tc, "hello\n", 6, back, 6, 0, &eof, WAIT_MS), 6);
  assert_memory_equal(back, "hello\n", 6);
  assert_true(now_ms() - t0 < 500); /* not after the stallers' deadline */
  assert_true(raw_wait_closed(silent, WAIT_MS) >= 0);
  assert_true(raw_wait_closed(half, WAIT_MS) >= 0);
  assert_true(now_ms() - t0 >= 600); /* closed by the deadline, not before */
  assert_true(errors_contain("TLS handshake timed out"));
  assert_int_equal(atomic_load(&opens), 1); /* the stallers never opened */
  tc_close(&tc);
  close(silent);
  close(half);
  wait_count(&closes, 1);
  stop(&r);
  alarm(0);
}

/* A client that sends and closes at once gets everything echoed back
 * before the server's close_notify; one that sends and vanishes without
 * reading costs nothing, and the server goes on. */
static void test_send_then_close(void **state) {
  (void)state;
  reset_counts();
  sk_server_opts_t o = {.handler = &echo, .on_error = on_error};
  running_t r;
  alarm(BACKSTOP_S);
  start(&r, tls_server(&o, 0), 1);
  const sk_listener_t *l = sk_server_listener(r.s, 0);
  tclient_t tc;
  char back[64];
  int eof = 0;
  assert_int_equal(tc_open(&tc, l), 0);
  assert_int_equal(tc_pump(&tc, "last words\n", 11, back, sizeof back, 1, &eof, WAIT_MS), 11);
  assert_true(eof); /* the server's close_notify, after the echo */
  assert_memory_equal(back, "last words\n", 11);
  tc_close(&tc);
  assert_int_equal(tc_open(&tc, l), 0);
  assert_int_equal(tc_pump(&tc, "gone\n", 5, NULL, 0, 0, NULL, WAIT_MS), 0);
  tc_close(&tc); /* closed with the echo unread: a reset, maybe */
  assert_int_equal(tc_open(&tc, l), 0);
  assert_int_equal(tc_pump(&tc, "still here\n", 11, back, 11, 0, &eof, WAIT_MS), 11);
  assert_memory_equal(back, "still here\n", 11);
  tc_close(&tc);
  wait_count(&closes, 3);
  stop(&r);
  alarm(0);
}

/* 8 MiB each way at once through a small output queue: reads wait on the
 * queue (backpressure), the queue on the client, and decrypted bytes left
 * in the session are taken without the socket saying so. */
#define BIG (8u << 20)

static void test_large_transfer_byte_exact(void **state) {
  (void)state;
  reset_counts();
  sk_server_opts_t o = {.handler = &echo, .on_error = on_error, .in_limit = 3000,
                        .out_limit = 20000};
  running_t r;
  alarm(BACKSTOP_S);
  start(&r, tls_server(&o, 0), 1);
  char *out = malloc(BIG), *back = malloc(BIG);
  assert_non_null(out);
  assert_non_null(back);
  fill_pattern(out, BIG, 7);
  tclient_t tc;
  int eof = 0;
  assert_int_equal(tc_open(&tc, sk_server_listener(r.s, 0)), 0);
  assert_int_equal(tc_pump(&tc, out, BIG, back, BIG, 1, &eof, 25000), (ssize_t)BIG);
  assert_memory_equal(out, back, BIG);
  tc_close(&tc);
  free(out);
  free(back);
  wait_count(&closes, 1);
  stop(&r);
  alarm(0);
}

/* A client that sends without ever reading: the server stops reading it
 * once its queue is half full, so memory stays bounded; shutdown with a
 * grace period still ends it. */
static void test_client_that_never_reads_is_bounded(void **state) {
  (void)state;
  reset_counts();
  sk_server_opts_t o = {.handler = &echo, .on_error = on_error, .in_limit = 4096,
                        .out_limit = 8192, .grace_ms = 300};
  running_t r;
  alarm(BACKSTOP_S);
  start(&r, tls_server(&o, 0), 1);
  tclient_t tc;
  assert_int_equal(tc_open(&tc, sk_server_listener(r.s, 0)), 0);
  int rcv = 4096;
  setsockopt(tc.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  static char chunk[65536];
  size_t total = 0;
  for (;;) { /* until a write has waited 300 ms: the server stopped reading */
    ssize_t n = tc_pump(&tc, chunk, sizeof chunk, NULL, 0, 0, NULL, 300);
    if (n < 0 || total > (512u << 20))
      break;
    total += sizeof chunk;
  }
  assert_true(total < (32u << 20));
  wait_count(&opens, 1);
  uint64_t t0 = now_ms();
  stop(&r); /* the stuck connection gets its grace period, then is closed */
  assert_true(now_ms() - t0 >= 250);
  assert_int_equal(atomic_load(&closes), 1);
  tc_close(&tc);
  alarm(0);
}

/* Plain text to the TLS port is a failed handshake, said in words a user
 * can act on; the server goes on serving TLS clients. */
static void test_plain_text_on_tls_port(void **state) {
  (void)state;
  reset_counts();
  sk_server_opts_t o = {.handler = &echo, .on_error = on_error};
  running_t r;
  alarm(BACKSTOP_S);
  start(&r, tls_server(&o, 0), 1);
  const sk_listener_t *l = sk_server_listener(r.s, 0);
  int fd = tcp_to(l);
  assert_true(fd >= 0);
  assert_int_equal(send(fd, "hello there, plain text\n", 24, MSG_NOSIGNAL), 24);
  assert_true(raw_wait_closed(fd, WAIT_MS) >= 0);
  close(fd);
  uint64_t deadline = now_ms() + WAIT_MS;
  while (!errors_contain("protocol version") && now_ms() < deadline)
    sleep_ms(5);
  assert_true(errors_contain("tls 127.0.0.1:"));
  assert_true(errors_contain("protocol version: the peer does not speak TLS"));
  tclient_t tc;
  char back[3];
  int eof = 0;
  assert_int_equal(tc_open(&tc, l), 0);
  assert_int_equal(tc_pump(&tc, "ok\n", 3, back, 3, 0, &eof, WAIT_MS), 3);
  tc_close(&tc);
  wait_count(&closes, 1);
  assert_int_equal(atomic_load(&opens), 1);
  stop(&r);
  alarm(0);
}

/* Idle timeout closes an open TLS connection; max_conns counts a client
 * in its handshake, so the next waits until that one's deadline frees the
 * slot; shutdown closes a handshaking client at once. */
static void test_idle_and_max_conns(void **state) {
  (void)state;
  reset_counts();
  sk_server_opts_t o = {.handler = &echo, .on_error = on_error, .idle_timeout_ms = 300,
                        .tls_timeout_ms = 600, .max_conns = 1};
  running_t r;
  alarm(BACKSTOP_S);
  start(&r, tls_server(&o, 0), 1);
  const sk_listener_t *l = sk_server_listener(r.s, 0);
  tclient_t tc;
  assert_int_equal(tc_open(&tc, l), 0);
  char b;
  int eof = 0;
  uint64_t t0 = now_ms();
  assert_int_equal(tc_pump(&tc, NULL, 0, &b, 1, 0, &eof, WAIT_MS), 0);
  assert_true(eof); /* closed by the idle timeout */
  assert_true(now_ms() - t0 >= 250);
  wait_count(&closes_idle, 1);
  tc_close(&tc);
  int staller = tcp_to(l); /* takes the only slot, in its handshake */
  assert_true(staller >= 0);
  sleep_ms(50);
  t0 = now_ms();
  assert_int_equal(tc_open(&tc, l), 0); /* waits in the backlog */
  assert_true(now_ms() - t0 >= 400);
  tc_close(&tc);
  close(staller);
  staller = tcp_to(l);
  wait_count(&closes, 2);
  sleep_ms(50);
  t0 = now_ms();
  stop(&r); /* nothing to wait for: the handshaking client is closed at once */
  assert_true(now_ms() - t0 < 500);
  assert_true(raw_wait_closed(staller, WAIT_MS) >= 0);
  close(staller);
  alarm(0);
}

/* What is refused, with a message saying why. */
static void test_refused_endpoints(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = echo_data};
  sk_server_opts_t o = {.handler = &h};
  sk_server_t *s;
  char err[SK_ERRLEN];
  assert_int_equal(sk_server_new(&s, &o), 0);
  sk_endpoint_t udp = endpoint("udp://127.0.0.1:0");
  assert_int_equal(sk_server_listen_tls(s, &udp, NULL, server_ctx, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "udp://127.0.0.1:0: TLS needs a byte-stream endpoint"));
  sk_endpoint_t seq = endpoint("unix-seqpacket:@sk-tls-test-refused");
  assert_int_equal(sk_server_listen_tls(s, &seq, NULL, server_ctx, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "TLS needs a byte-stream endpoint"));
  sk_endpoint_t tls = endpoint("tls://127.0.0.1:0");
  assert_int_equal(sk_server_listen(s, &tls, NULL, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "a tls:// endpoint needs a TLS context"));
  assert_int_equal(sk_server_listen_tls(s, &tls, NULL, client_ctx, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "TLS needs a server context"));
  assert_null(sk_server_listener(s, 0)); /* nothing was bound */
  /* A unix stream endpoint may carry TLS too. */
  sk_endpoint_t un = endpoint("unix:@sk-tls-test-unix");
  assert_int_equal(sk_server_listen_tls(s, &un, NULL, server_ctx, err, sizeof err), 0);
  sk_server_free(s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_clients_on_workers),
      cmocka_unit_test(test_stalled_handshake_holds_up_nobody),
      cmocka_unit_test(test_send_then_close),
      cmocka_unit_test(test_large_transfer_byte_exact),
      cmocka_unit_test(test_client_that_never_reads_is_bounded),
      cmocka_unit_test(test_plain_text_on_tls_port),
      cmocka_unit_test(test_idle_and_max_conns),
      cmocka_unit_test(test_refused_endpoints),
  };
  return cmocka_run_group_tests(tests, setup_ctx, teardown_ctx);
}
