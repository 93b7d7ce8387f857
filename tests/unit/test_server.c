/* tests/unit/test_server.c - the server frameworks over loopback: stopping
 * from a handler, another thread and a signal handler (never a hang: an
 * alarm() backstop fails the test), the blocking server's thread limit and
 * cancellation, backpressure bounds, and sk_line_next. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockit/sockit.h"

#define BACKSTOP_S 10

/* ---- helpers ------------------------------------------------------------------ */

static sk_endpoint_t loopback(void) {
  sk_endpoint_t ep;
  char err[SK_ERRLEN];
  assert_int_equal(sk_endpoint_parse(&ep, "tcp://127.0.0.1:0", SK_EP_LISTEN, err, sizeof err), 0);
  return ep;
}

/* A blocking client connected to the listener's bound address. */
static int client_for(const sk_listener_t *l) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  assert_int_equal(connect(fd, (const struct sockaddr *)&l->bound.ss, l->bound.len), 0);
  return fd;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A new server with one tcp listener on 127.0.0.1 (port 0). */
static sk_server_t *listening_server(const sk_server_opts_t *o, const sk_sockopts_t *so) {
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  sk_server_t *s;
  assert_int_equal(sk_server_new(&s, o), 0);
  assert_int_equal(sk_server_listen(s, &ep, so, err, sizeof err), 0);
  return s;
}

/* Runs s on this thread (one worker) while client(arg) runs on another,
 * which must stop s when done; bounded by the backstop alarm. */
static void run_with_client(sk_server_t *s, void *(*client)(void *), void *arg) {
  pthread_t t;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, client, arg);
  assert_int_equal(sk_server_run(s, 1), 0);
  pthread_join(t, NULL);
  alarm(0);
}

/* ---- event server: stop from everywhere --------------------------------------------- */

static sk_server_t *current;
static int data_calls;

static void stop_on_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  if (eof && sk_buf_len(in) == 0)
    return; /* the EOF call: nothing to echo */
  data_calls++;
  sk_conn_send(c, sk_buf_head(in), sk_buf_len(in));
  sk_buf_consume(in, sk_buf_len(in));
  sk_server_stop(current); /* from inside a handler callback */
}

typedef struct {
  const sk_listener_t *l;
  char reply[16];
  ssize_t got;
} client_job_t;

static void *send_ping(void *arg) {
  client_job_t *j = arg;
  int fd = client_for(j->l);
  send(fd, "ping", 4, MSG_NOSIGNAL);
  j->got = recv(fd, j->reply, 4, MSG_WAITALL);
  close(fd);
  return NULL;
}

static void test_stop_from_handler(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = stop_on_data};
  sk_server_opts_t o = {.handler = &h, .grace_ms = 3000};
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  assert_int_equal(sk_server_new(&current, &o), 0);
  assert_int_equal(sk_server_listen(current, &ep, NULL, err, sizeof err), 0);
  client_job_t job = {.l = sk_server_listener(current, 0)};
  pthread_t t;
  data_calls = 0;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, send_ping, &job);
  uint64_t start = now_ms();
  assert_int_equal(sk_server_run(current, 1), 0);
  pthread_join(t, NULL);
  alarm(0);
  /* The reply was written before the connection closed (the peer's close
   * ends it well within the grace period). */
  assert_int_equal(job.got, 4);
  assert_memory_equal(job.reply, "ping", 4);
  assert_int_equal(data_calls, 1);
  assert_true(now_ms() - start < 3000);
  assert_true(sk_server_stopped(current));
  sk_server_free(current);
}

static void *stop_later(void *arg) {
  sleep_ms(50);
  sk_server_stop(arg);
  return NULL;
}

static void test_stop_from_other_thread_with_workers(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = stop_on_data};
  sk_server_opts_t o = {.handler = &h};
  sk_endpoint_t ep = loopback();
  sk_sockopts_t so = {.reuseport = 1};
  char err[SK_ERRLEN];
  sk_server_t *s;
  assert_int_equal(sk_server_new(&s, &o), 0);
  assert_int_equal(sk_server_listen(s, &ep, &so, err, sizeof err), 0);
  pthread_t t;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, stop_later, s);
  uint64_t start = now_ms();
  assert_int_equal(sk_server_run(s, 3), 0); /* no polling interval: ends at once */
  pthread_join(t, NULL);
  alarm(0);
  assert_true(now_ms() - start < 1000);
  sk_server_free(s);
}

static sk_server_t *signal_target;
static void on_usr1(int sig) {
  (void)sig;
  sk_server_stop(signal_target);
}

static void *raise_later(void *arg) {
  (void)arg;
  sleep_ms(50);
  kill(getpid(), SIGUSR1);
  return NULL;
}

static void test_stop_from_signal_handler(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = stop_on_data};
  sk_server_opts_t o = {.handler = &h};
  signal_target = listening_server(&o, NULL);
  signal(SIGUSR1, on_usr1);
  run_with_client(signal_target, raise_later, NULL);
  signal(SIGUSR1, SIG_DFL);
  sk_server_free(signal_target);
}

/* A live, idle connection does not hold the server past its grace period. */
static void nothing(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)c;
  (void)eof;
  sk_buf_consume(in, sk_buf_len(in));
}

static void test_grace_period_bounds_shutdown(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = nothing};
  sk_server_opts_t o = {.handler = &h, .grace_ms = 300};
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  sk_server_t *s;
  assert_int_equal(sk_server_new(&s, &o), 0);
  assert_int_equal(sk_server_listen(s, &ep, NULL, err, sizeof err), 0);
  int fd = client_for(sk_server_listener(s, 0));
  pthread_t t;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, stop_later, s);
  uint64_t start = now_ms();
  assert_int_equal(sk_server_run(s, 1), 0);
  uint64_t took = now_ms() - start;
  pthread_join(t, NULL);
  alarm(0);
  assert_true(took >= 300 && took < 2000);
  char b;
  assert_int_equal(recv(fd, &b, 1, 0), 0); /* closed by the server */
  close(fd);
  sk_server_free(s);
}

/* ---- blocking server ------------------------------------------------------------------ */

static sk_tserver_t *tcurrent;
static volatile int handlers_started;

static void t_stop_handle(sk_stream_t *c, void *ctx) {
  char buf[16];
  (void)ctx;
  ssize_t n = sk_stream_read(c, buf, sizeof buf);
  if (n > 0)
    sk_stream_write(c, buf, (size_t)n);
  sk_tserver_stop(tcurrent); /* from the handler thread: must not deadlock */
}

static void test_tserver_stop_from_handler(void **state) {
  (void)state;
  sk_tserver_opts_t o = {.handle = t_stop_handle};
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  assert_int_equal(sk_tserver_new(&tcurrent, &ep, NULL, &o, err, sizeof err), 0);
  client_job_t job = {.l = sk_tserver_listener(tcurrent)};
  pthread_t t;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, send_ping, &job);
  assert_int_equal(sk_tserver_run(tcurrent), 0);
  pthread_join(t, NULL);
  alarm(0);
  assert_int_equal(job.got, 4);
  assert_int_equal(sk_tserver_threads(tcurrent), 0);
  sk_tserver_free(tcurrent);
}

static void t_block_handle(sk_stream_t *c, void *ctx) {
  char buf[16];
  (void)ctx;
  __atomic_add_fetch(&handlers_started, 1, __ATOMIC_SEQ_CST);
  while (sk_stream_read(c, buf, sizeof buf) > 0) {
  }
}

static void *t_run(void *arg) {
  sk_tserver_run(arg);
  return NULL;
}

/* max_threads bounds the handlers; stop cancels blocked reads after grace. */
static void test_tserver_thread_limit_and_cancel(void **state) {
  (void)state;
  sk_tserver_opts_t o = {.handle = t_block_handle, .max_threads = 2, .grace_ms = 200};
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  sk_tserver_t *s;
  handlers_started = 0;
  assert_int_equal(sk_tserver_new(&s, &ep, NULL, &o, err, sizeof err), 0);
  int fds[3];
  for (int i = 0; i < 3; i++)
    fds[i] = client_for(sk_tserver_listener(s));
  pthread_t t;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, t_run, s);
  uint64_t deadline = now_ms() + 3000;
  while (__atomic_load_n(&handlers_started, __ATOMIC_SEQ_CST) < 2 && now_ms() < deadline)
    sleep_ms(5);
  sleep_ms(100); /* a third handler would have started by now */
  assert_int_equal(handlers_started, 2);
  assert_int_equal(sk_tserver_threads(s), 2);
  uint64_t start = now_ms();
  sk_tserver_stop(s);
  pthread_join(t, NULL);
  alarm(0);
  uint64_t took = now_ms() - start;
  assert_true(took >= 150 && took < 2000);
  assert_int_equal(sk_tserver_threads(s), 0);
  for (int i = 0; i < 3; i++)
    close(fds[i]);
  sk_tserver_free(s);
}

/* ---- backpressure ---------------------------------------------------------------------- */

static void echo_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)eof;
  size_t n = sk_buf_len(in), room = sk_conn_out_space(c);
  if (n > room)
    n = room;
  if (n && sk_conn_send(c, sk_buf_head(in), n) == 0)
    sk_buf_consume(in, n);
}

static void *flood(void *arg) {
  int fd = *(int *)arg;
  static char chunk[65536];
  size_t total = 0;
  /* Non-blocking: stop once the server stops reading (send would block). */
  struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  for (;;) {
    ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    total += (size_t)n;
    if (total > (512u << 20))
      break;
  }
  *(size_t *)arg = total;
  return NULL;
}

static void test_never_reading_client_is_bounded(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = echo_data};
  sk_server_opts_t o = {.handler = &h, .in_limit = 4096, .out_limit = 8192};
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  sk_server_t *s;
  assert_int_equal(sk_server_new(&s, &o), 0);
  assert_int_equal(sk_server_listen(s, &ep, NULL, err, sizeof err), 0);
  int fd = client_for(sk_server_listener(s, 0));
  int rcv = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  union {
    int fd;
    size_t total;
  } arg = {.fd = fd};
  pthread_t t, stopper;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, flood, &arg);
  pthread_join(t, NULL); /* the flood stalls: the server stopped reading */
  pthread_create(&stopper, NULL, stop_later, s);
  assert_int_equal(sk_server_run(s, 1), 0);
  pthread_join(stopper, NULL);
  alarm(0);
  /* Kernel buffers on both sides plus the server's 12 KiB: a few MiB at
   * most, never the 512 MiB the client would have sent. */
  assert_true(arg.total < (32u << 20));
  close(fd);
  sk_server_free(s);
}

/* ---- held input, handed over once the queue drains -------------------------------------- */

/* One 1000-byte answer per input byte; an input byte is held back while the
 * queue has no room for its answer. */
#define ANSWER_LEN 1000
#define ASKED 100
static void answer_each(sk_conn_t *c, sk_buf_t *in, int eof) {
  static char answer[ANSWER_LEN];
  (void)eof;
  memset(answer, 'a', sizeof answer);
  while (sk_buf_len(in) && sk_conn_out_space(c) >= ANSWER_LEN) {
    assert_int_equal(sk_conn_send(c, answer, sizeof answer), 0);
    sk_buf_consume(in, 1);
  }
}

typedef struct {
  sk_server_t *s;
  int fd;
  size_t got;
} asker_t;

/* Asks everything in one write, then only reads (never sends again). */
static void *asker(void *arg) {
  asker_t *a = arg;
  char ask[ASKED], buf[65536];
  memset(ask, 'q', sizeof ask);
  assert_int_equal(send(a->fd, ask, sizeof ask, MSG_NOSIGNAL), (ssize_t)sizeof ask);
  while (a->got < (size_t)ASKED * ANSWER_LEN) {
    ssize_t n = recv(a->fd, buf, sizeof buf, 0);
    if (n <= 0)
      break; /* SO_RCVTIMEO: the server stopped answering */
    a->got += (size_t)n;
  }
  sk_server_stop(a->s);
  return NULL;
}

/* The queue (4 KiB) takes four answers and the handler holds the rest of
 * the input; the kernel, with room for all of it, empties the queue in the
 * flush right after the handler returns. No writable event and no new
 * input follow, yet every answer must come: the framework hands the held
 * input over on the next round. */
static void test_held_input_resumes_after_the_queue_drains(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = answer_each};
  sk_server_opts_t o = {.handler = &h, .out_limit = 4096};
  sk_server_t *s = listening_server(&o, NULL);
  asker_t a = {.s = s, .fd = client_for(sk_server_listener(s, 0))};
  run_with_client(s, asker, &a);
  assert_int_equal(a.got, (size_t)ASKED * ANSWER_LEN);
  close(a.fd);
  sk_server_free(s);
}

/* ---- abort after the queue was written ------------------------------------------------ */

/* The handler answers BIG bytes and closes; 300 ms later, with the queue
 * long written into a roomy socket buffer (the connection lingering), a
 * timer gives up on the peer. Nothing is dropped at that point, so the
 * close must stay an ordinary one: a slow reader still gets every byte,
 * then EOF (an RST would throw away what the kernel still held). */
#define BIG (200 * 1000)
static sk_conn_t *to_abort;
static sk_timer_t abort_timer;

static void abort_fired(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  (void)t;
  if (to_abort)
    sk_conn_abort(to_abort);
  sk_server_stop(current);
}

static void answer_big_and_close(sk_conn_t *c, sk_buf_t *in, int eof) {
  static char big[BIG];
  (void)eof;
  sk_buf_consume(in, sk_buf_len(in));
  if (to_abort)
    return;
  memset(big, 'b', sizeof big);
  assert_int_equal(sk_conn_send(c, big, sizeof big), 0);
  sk_conn_close(c);
  to_abort = c;
  sk_timer_init(&abort_timer, abort_fired, NULL);
  sk_timer_start(sk_conn_loop(c), &abort_timer, 300, 0);
}

static void forget_aborted(sk_conn_t *c, int reason) {
  (void)reason;
  if (c == to_abort)
    to_abort = NULL;
}

typedef struct {
  int fd;
  size_t got;
  int err;
} slow_reader_t;

static void *slow_reader(void *arg) {
  slow_reader_t *r = arg;
  char buf[65536];
  assert_int_equal(send(r->fd, "go", 2, MSG_NOSIGNAL), 2);
  sleep_ms(600); /* not reading while the server gives up */
  for (;;) {
    ssize_t n = recv(r->fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r->err = n < 0 ? errno : 0;
      break;
    }
    r->got += (size_t)n;
  }
  return NULL;
}

static void test_abort_after_the_queue_was_written_keeps_the_data(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = answer_big_and_close, .on_close = forget_aborted};
  sk_server_opts_t o = {.handler = &h, .out_limit = 2 * BIG};
  sk_sockopts_t so = {.sndbuf = 4 * BIG};
  sk_server_t *s = listening_server(&o, &so);
  current = s;
  to_abort = NULL;
  slow_reader_t r = {.fd = client_for(sk_server_listener(s, 0))};
  int rcv = 4096;
  setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  run_with_client(s, slow_reader, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.got, BIG);
  close(r.fd);
  sk_server_free(s);
}

/* ---- buffers released, output to other connections --------------------------------------- */

/* Each on_data call records what the connection held at its start, then
 * echoes every complete line and leaves a partial one. */
#define MEM_CALLS 8
static size_t held_at_entry[MEM_CALLS];
static int input_is_in[MEM_CALLS];
static int mem_calls;

static void line_echo_recording(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)eof;
  if (mem_calls < MEM_CALLS) {
    held_at_entry[mem_calls] = sk_conn_buffer_bytes(c);
    input_is_in[mem_calls] = sk_conn_input(c) == in;
    mem_calls++;
  }
  size_t n;
  long used;
  while ((used = sk_line_next(in, 4096, &n)) > 0) {
    sk_conn_send(c, sk_buf_head(in), (size_t)used);
    sk_buf_consume(in, (size_t)used);
  }
}

/* Sends text, and reads back exactly `reply` (if given). */
static void exchange(int fd, const char *text, const char *reply) {
  assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
  if (!reply)
    return;
  char buf[64] = {0};
  size_t want = strlen(reply);
  assert_int_equal(recv(fd, buf, want, MSG_WAITALL), (ssize_t)want);
  assert_memory_equal(buf, reply, want);
}

typedef struct {
  sk_server_t *s;
  const sk_listener_t *l;
} mem_job_t;

static void *mem_client(void *arg) {
  mem_job_t *j = arg;
  int fd = client_for(j->l);
  exchange(fd, "one\n", "one\n");
  exchange(fd, "two\n", "two\n");
  exchange(fd, "par", NULL);
  sleep_ms(100); /* let "par" arrive on its own: the handler must keep it */
  exchange(fd, "tial\n", "partial\n");
  sleep_ms(2200); /* quiet for longer than the release delay plus a sweep */
  exchange(fd, "three\n", "three\n");
  close(fd);
  sk_server_stop(j->s);
  return NULL;
}

/* Input the handler takes whole is never stored in the connection (it is
 * read into the loop's shared buffer); input it leaves is kept in the
 * connection's own buffer and handed back with what follows; sk_conn_input
 * is the buffer on_data gets. A busy connection keeps its reply queue's
 * storage; one quiet for a while holds no buffer storage at all. */
static void test_idle_connection_holds_no_buffers(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = line_echo_recording};
  sk_server_opts_t o = {.handler = &h};
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  sk_server_t *s;
  assert_int_equal(sk_server_new(&s, &o), 0);
  assert_int_equal(sk_server_listen(s, &ep, NULL, err, sizeof err), 0);
  mem_job_t job = {s, sk_server_listener(s, 0)};
  mem_calls = 0;
  pthread_t t;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, mem_client, &job);
  assert_int_equal(sk_server_run(s, 1), 0);
  pthread_join(t, NULL);
  alarm(0);
  /* calls: one, two, par, partial, three, and the EOF */
  assert_true(mem_calls >= 5);
  assert_int_equal(held_at_entry[0], 0); /* nothing stored yet */
  /* "one"'s reply queue is kept while the connection is busy, and it is
   * a short allocation for a short reply */
  assert_true(held_at_entry[1] > 0 && held_at_entry[1] < SK_BUF_MIN_ALLOC);
  assert_true(held_at_entry[3] > SK_BUF_MIN_ALLOC); /* and "par", kept for "tial" */
  assert_int_equal(held_at_entry[4], 0); /* idle: all released */
  for (int i = 0; i < 5; i++)
    assert_true(input_is_in[i]);
  sk_server_free(s);
}

/* Fan-out: one connection's handler queues output on another connection;
 * it is written at the end of the round. */
static sk_conn_t *listener_conn;

static void relay_to_first(sk_conn_t *c, sk_buf_t *in, int eof) {
  (void)eof;
  if (!listener_conn) {
    listener_conn = c; /* the first connection only listens */
    sk_buf_consume(in, sk_buf_len(in));
    return;
  }
  if (c == listener_conn) {
    sk_buf_consume(in, sk_buf_len(in));
    return;
  }
  assert_int_equal(sk_conn_send(listener_conn, sk_buf_head(in), sk_buf_len(in)), 0);
  sk_buf_consume(in, sk_buf_len(in));
}

static void relay_closed(sk_conn_t *c, int reason) {
  (void)reason;
  if (c == listener_conn)
    listener_conn = NULL;
}

static void *fanout_client(void *arg) {
  mem_job_t *j = arg;
  int first = client_for(j->l);
  exchange(first, "x", NULL);
  sleep_ms(100); /* the first connection must be the first the handler sees */
  int second = client_for(j->l);
  exchange(second, "to the other one", NULL);
  char buf[32] = {0};
  assert_int_equal(recv(first, buf, 16, MSG_WAITALL), 16);
  assert_memory_equal(buf, "to the other one", 16);
  close(second);
  close(first);
  sk_server_stop(j->s);
  return NULL;
}

static void test_send_to_another_connection(void **state) {
  (void)state;
  static const sk_handler_t h = {.on_data = relay_to_first, .on_close = relay_closed};
  sk_server_opts_t o = {.handler = &h};
  sk_endpoint_t ep = loopback();
  char err[SK_ERRLEN];
  sk_server_t *s;
  assert_int_equal(sk_server_new(&s, &o), 0);
  assert_int_equal(sk_server_listen(s, &ep, NULL, err, sizeof err), 0);
  mem_job_t job = {s, sk_server_listener(s, 0)};
  listener_conn = NULL;
  pthread_t t;
  alarm(BACKSTOP_S);
  pthread_create(&t, NULL, fanout_client, &job);
  assert_int_equal(sk_server_run(s, 1), 0);
  pthread_join(t, NULL);
  alarm(0);
  sk_server_free(s);
}

/* ---- sk_line_next ----------------------------------------------------------------------- */

static void test_line_next(void **state) {
  (void)state;
  static const struct {
    const char *in;
    size_t max;
    long used;
    size_t len;
  } cases[] = {
      {"", 16, 0, 0},          {"abc", 16, 0, 0},       {"abc\n", 16, 4, 3},
      {"abc\r\n", 16, 5, 3},   {"\n", 16, 1, 0},        {"\r\n", 16, 2, 0},
      {"ab\ncd\n", 16, 3, 2},  {"abcd", 4, SK_ETOOBIG, 0}, {"abc\n", 4, 4, 3},
      {"abcd\n", 4, SK_ETOOBIG, 0}, {"a\rb\n", 16, 4, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sk_buf_t b;
    sk_buf_init(&b, 64);
    sk_buf_append(&b, cases[i].in, strlen(cases[i].in));
    size_t len = 999;
    long used = sk_line_next(&b, cases[i].max, &len);
    assert_int_equal(used, cases[i].used);
    if (used > 0)
      assert_int_equal(len, cases[i].len);
    sk_buf_free(&b);
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stop_from_handler),
      cmocka_unit_test(test_stop_from_other_thread_with_workers),
      cmocka_unit_test(test_stop_from_signal_handler),
      cmocka_unit_test(test_grace_period_bounds_shutdown),
      cmocka_unit_test(test_tserver_stop_from_handler),
      cmocka_unit_test(test_tserver_thread_limit_and_cancel),
      cmocka_unit_test(test_never_reading_client_is_bounded),
      cmocka_unit_test(test_held_input_resumes_after_the_queue_drains),
      cmocka_unit_test(test_abort_after_the_queue_was_written_keeps_the_data),
      cmocka_unit_test(test_idle_connection_holds_no_buffers),
      cmocka_unit_test(test_send_to_another_connection),
      cmocka_unit_test(test_line_next),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
