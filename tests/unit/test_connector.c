/* tests/unit/test_connector.c - the one way out: connect, failover, the
 * Happy Eyeballs race and its deadlines, cancel, the proxy hop against
 * scripted SOCKS5 and HTTP CONNECT peers on loopback (a tunnel's first
 * bytes must stay unread), and the proxy codec byte by byte. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/connector.h"
#include "sockit/proxy.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A listener on addr (an IPv4 or IPv6 literal) port 0 with this backlog;
 * its bound address in *sa. */
static int listener(const char *addr, int backlog, sk_sockaddr_t *sa) {
  memset(sa, 0, sizeof *sa);
  int v6 = strchr(addr, ':') != NULL;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  if (v6) {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&sa->ss;
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, addr, &s->sin6_addr), 1);
  } else {
    struct sockaddr_in *s = (struct sockaddr_in *)&sa->ss;
    s->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, &s->sin_addr), 1);
  }
  sa->len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa->ss, sa->len), 0);
  assert_int_equal(listen(fd, backlog), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa->ss, &sa->len), 0);
  return fd;
}

/* A listener that answers no SYN: backlog 0 with its one queue slot taken
 * by *filler, so the kernel drops further SYNs and a connect hangs. */
static int blackhole(const char *addr, sk_sockaddr_t *sa, int *filler) {
  int fd = listener(addr, 0, sa);
  *filler = socket(sa->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_int_equal(connect(*filler, (struct sockaddr *)&sa->ss, sa->len), 0);
  return fd;
}

/* A port on 127.0.0.1 where nothing listens (bound, not listening, so no
 * one else takes it while the test runs). */
static int refusing(sk_sockaddr_t *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in *s = (struct sockaddr_in *)&sa->ss;
  memset(sa, 0, sizeof *sa);
  s->sin_family = AF_INET;
  s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa->len = sizeof *s;
  assert_int_equal(bind(fd, (struct sockaddr *)s, sa->len), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa->ss, &sa->len), 0);
  return fd;
}

static sk_endpoint_t ep_of(const char *fmt, ...) {
  char text[300], err[SK_ERRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  sk_endpoint_t ep;
  assert_int_equal(sk_endpoint_parse(&ep, text, SK_EP_CONNECT, err, sizeof err), 0);
  return ep;
}

typedef struct {
  int calls, err, fd;
  sk_sockaddr_t peer;
  int index;
  char msg[SK_ERRLEN];
} result_t;

static void on_done(void *data, int err, sk_connected_t *conn, const char *msg) {
  result_t *r = data;
  r->calls++;
  r->err = err;
  snprintf(r->msg, sizeof r->msg, "%s", msg);
  if (conn) {
    r->fd = conn->fd;
    r->peer = conn->peer;
    r->index = conn->index;
    assert_null(conn->tls);
  }
}

static int family_of(const sk_sockaddr_t *sa) { return sa->ss.ss_family; }

/* Runs the race over the given addresses and returns the result. */
static result_t race(const sk_sockaddr_t *addrs, int n, const sk_connect_opts_t *o) {
  sk_loop_t *loop;
  assert_int_equal(sk_loop_new(&loop), 0);
  result_t r = {.fd = -1};
  sk_endpoint_t ep = ep_of("tcp://race.invalid:1");
  assert_non_null(sk__connect_start_addrs(loop, &ep, addrs, n, o, on_done, &r));
  alarm(10);
  assert_int_equal(sk_loop_run(loop), 0);
  alarm(0);
  sk_loop_free(loop);
  assert_int_equal(r.calls, 1);
  return r;
}

/* ---- direct connections ------------------------------------------------------------------- */

static void test_connects_and_hands_over(void **state) {
  (void)state;
  sk_sockaddr_t sa;
  int l = listener("127.0.0.1", 8, &sa);
  sk_endpoint_t ep = ep_of("tcp://127.0.0.1:%d", sk_sockaddr_port(&sa));
  sk_connected_t conn;
  char err[SK_ERRLEN];
  assert_int_equal(sk_connect_wait(&ep, 1, NULL, &conn, err, sizeof err), 0);
  assert_int_equal(conn.index, 0);
  assert_null(conn.tls);
  assert_int_equal(sk_sockaddr_port(&conn.peer), sk_sockaddr_port(&sa));
  int a = accept(l, NULL, NULL);
  assert_true(a >= 0);
  assert_int_equal(send(conn.fd, "hi", 2, 0), 2);
  char buf[4];
  assert_int_equal(recv(a, buf, sizeof buf, 0), 2);
  close(a);
  close(conn.fd);
  close(l);
}

static void test_refused_names_the_endpoint(void **state) {
  (void)state;
  sk_sockaddr_t sa;
  int hold = refusing(&sa);
  sk_endpoint_t ep = ep_of("tcp://127.0.0.1:%d", sk_sockaddr_port(&sa));
  sk_connected_t conn;
  char err[SK_ERRLEN], want[SK_ERRLEN];
  assert_int_equal(sk_connect_wait(&ep, 1, NULL, &conn, err, sizeof err), -ECONNREFUSED);
  snprintf(want, sizeof want, "connect tcp://127.0.0.1:%d: Connection refused",
           sk_sockaddr_port(&sa));
  assert_string_equal(err, want);
  close(hold);
}

static void test_fails_over_to_the_next_endpoint(void **state) {
  (void)state;
  sk_sockaddr_t bad, good;
  int hold = refusing(&bad);
  int l = listener("127.0.0.1", 8, &good);
  sk_endpoint_t eps[2] = {ep_of("tcp://127.0.0.1:%d", sk_sockaddr_port(&bad)),
                          ep_of("tcp://127.0.0.1:%d", sk_sockaddr_port(&good))};
  sk_connected_t conn;
  char err[SK_ERRLEN];
  assert_int_equal(sk_connect_wait(eps, 2, NULL, &conn, err, sizeof err), 0);
  assert_int_equal(conn.index, 1);
  close(conn.fd);
  /* Both refusing: both reasons in the message. */
  eps[1] = eps[0];
  assert_int_equal(sk_connect_wait(eps, 2, NULL, &conn, err, sizeof err), -ECONNREFUSED);
  assert_non_null(strstr(err, "Connection refused; connect tcp://"));
  close(l);
  close(hold);
}

static void test_unix_and_bad_endpoints(void **state) {
  (void)state;
  sk_connected_t conn;
  char err[SK_ERRLEN];
  sk_endpoint_t ep = ep_of("unix:@sockit-test-connector-nobody-%d", (int)getpid());
  assert_int_equal(sk_connect_wait(&ep, 1, NULL, &conn, err, sizeof err), -ECONNREFUSED);
  ep = ep_of("tls://127.0.0.1:1");
  assert_int_equal(sk_connect_wait(&ep, 1, NULL, &conn, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "needs a TLS context"));
  sk_proxy_t px;
  assert_int_equal(sk_proxy_parse(&px, "socks5://127.0.0.1:1", err, sizeof err), 0);
  sk_connect_opts_t o = {.proxy = &px};
  ep = ep_of("udp://127.0.0.1:1");
  assert_int_equal(sk_connect_wait(&ep, 1, &o, &conn, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "a proxy carries tcp and tls endpoints only"));
}

/* ---- the race ----------------------------------------------------------------------------- */

/* IPv6 first in the resolver's order but silent: after the attempt delay
 * the IPv4 address is tried alongside and wins, while the IPv6 connect is
 * still hanging (its own bound is far away). */
static void test_happy_eyeballs_second_family_wins(void **state) {
  (void)state;
  sk_sockaddr_t addrs[3];
  int f6a, f6b;
  int h6a = blackhole("::1", &addrs[0], &f6a);
  int h6b = blackhole("::1", &addrs[1], &f6b);
  int l4 = listener("127.0.0.1", 8, &addrs[2]);
  sk_connect_opts_t o = {.attempt_delay_ms = 50, .attempt_timeout_ms = 60000};
  result_t r = race(addrs, 3, &o);
  assert_int_equal(r.err, 0);
  assert_int_equal(family_of(&r.peer), AF_INET);
  close(r.fd);
  /* -6 keeps to IPv6: the same race times out on its attempts instead. */
  o.family = AF_INET6;
  o.attempt_timeout_ms = 100;
  r = race(addrs, 3, &o);
  assert_int_equal(r.err, -ETIMEDOUT);
  assert_string_equal(r.msg, "connect tcp://race.invalid:1: Connection timed out");
  /* -4 with only IPv6 addresses: said in words. */
  o.family = AF_INET;
  r = race(addrs, 2, &o);
  assert_int_equal(r.err, -EADDRNOTAVAIL);
  assert_non_null(strstr(r.msg, "no IPv4 address (-4)"));
  close(h6a), close(h6b), close(f6a), close(f6b), close(l4);
}

/* With a long attempt delay, the next address starts only when the first
 * one's own deadline passes. */
static void test_attempt_deadline_moves_on(void **state) {
  (void)state;
  sk_sockaddr_t addrs[2];
  int filler;
  int h = blackhole("127.0.0.1", &addrs[0], &filler);
  int l = listener("127.0.0.1", 8, &addrs[1]);
  sk_connect_opts_t o = {.attempt_delay_ms = 60000, .attempt_timeout_ms = 100};
  result_t r = race(addrs, 2, &o);
  assert_int_equal(r.err, 0);
  assert_int_equal(sk_sockaddr_port(&r.peer), sk_sockaddr_port(&addrs[1]));
  close(r.fd), close(h), close(filler), close(l);
}

/* The overall deadline ends everything, whatever the attempts' own. */
static void test_overall_deadline(void **state) {
  (void)state;
  sk_sockaddr_t addrs[1];
  int filler;
  int h = blackhole("127.0.0.1", &addrs[0], &filler);
  sk_connect_opts_t o = {.timeout_ms = 150, .attempt_timeout_ms = 60000};
  result_t r = race(addrs, 1, &o);
  assert_int_equal(r.err, SK_ETIMEDOUT);
  assert_string_equal(r.msg, "connect tcp://race.invalid:1: no connection within 150 ms");
  close(h), close(filler);
}

static void cancel_now(sk_loop_t *loop, sk_timer_t *t) {
  (void)loop;
  sk_connect_cancel(t->data);
}

/* Cancelled before its first step, and in the middle of a race: done is
 * never called, every socket is closed (the loop ends: nothing is left to
 * watch), and ASan sees no leak. */
static void test_cancel(void **state) {
  (void)state;
  sk_loop_t *loop;
  assert_int_equal(sk_loop_new(&loop), 0);
  result_t r = {.fd = -1};
  sk_sockaddr_t addrs[1];
  int filler;
  int h = blackhole("127.0.0.1", &addrs[0], &filler);
  sk_endpoint_t ep = ep_of("tcp://127.0.0.1:%d", sk_sockaddr_port(&addrs[0]));
  sk_connect_cancel(sk_connect_start(loop, &ep, 1, NULL, on_done, &r));
  sk_connector_t *c = sk__connect_start_addrs(loop, &ep, addrs, 1, NULL, on_done, &r);
  sk_timer_t t;
  sk_timer_init(&t, cancel_now, c);
  assert_int_equal(sk_timer_start(loop, &t, 50, 0), 0);
  alarm(10);
  assert_int_equal(sk_loop_run(loop), 0);
  alarm(0);
  assert_int_equal(r.calls, 0);
  sk_loop_free(loop);
  close(h), close(filler);
}

/* ---- the proxy hop, against scripted peers ------------------------------------------------ */

/* A peer script: alternate "expect these bytes" and "send these bytes". */
typedef struct {
  int lfd;
  const char *steps[8]; /* "<" expected, ">" sent; lengths in lens */
  size_t lens[8];
  int nsteps;
  int ok; /* every expectation met */
} script_t;

static void *script_run(void *arg) {
  script_t *s = arg;
  int fd = accept(s->lfd, NULL, NULL);
  s->ok = fd >= 0;
  for (int i = 0; s->ok && i < s->nsteps; i++) {
    const char *step = s->steps[i];
    size_t len = s->lens[i];
    if (step[0] == '>') {
      s->ok = send(fd, step + 1, len, MSG_NOSIGNAL) == (ssize_t)len;
      continue;
    }
    char buf[600];
    size_t got = 0;
    while (got < len) {
      ssize_t n = recv(fd, buf + got, len - got, 0);
      if (n <= 0)
        break;
      got += (size_t)n;
    }
    s->ok = got == len && memcmp(buf, step + 1, len) == 0;
  }
  if (fd >= 0) {
    char buf[64];
    while (recv(fd, buf, sizeof buf, 0) > 0) /* until the client is done */
      ;
    close(fd);
  }
  return NULL;
}

#define STEP(s, text) ((s)->steps[(s)->nsteps] = (text), (s)->lens[(s)->nsteps++] = sizeof(text) - 2)

/* Connects to tcp://example.test:80 through the scripted proxy; returns
 * the result and, when connected, what the tunnel delivered first. */
static int through_proxy(script_t *s, const char *scheme, char *err, char *first) {
  sk_sockaddr_t sa;
  s->lfd = listener("127.0.0.1", 8, &sa);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, script_run, s), 0);
  char url[128];
  snprintf(url, sizeof url, "%s127.0.0.1:%d", scheme, sk_sockaddr_port(&sa));
  sk_proxy_t px;
  assert_int_equal(sk_proxy_parse(&px, url, err, SK_ERRLEN), 0);
  sk_connect_opts_t o = {.proxy = &px, .timeout_ms = 5000};
  sk_endpoint_t ep = ep_of("tcp://example.test:80");
  sk_connected_t conn;
  int r = sk_connect_wait(&ep, 1, &o, &conn, err, SK_ERRLEN);
  if (r == 0) {
    assert_int_equal(sk_net_set_nonblock(conn.fd, 0), 0);
    ssize_t n = recv(conn.fd, first, 5, MSG_WAITALL);
    first[n > 0 ? n : 0] = '\0';
    close(conn.fd);
  }
  pthread_join(th, NULL);
  close(s->lfd);
  return r;
}

static void test_socks5_no_auth_keeps_tunnel_bytes(void **state) {
  (void)state;
  script_t s = {0};
  STEP(&s, "<\x05\x01\x00");
  STEP(&s, ">\x05\x00");
  STEP(&s, "<\x05\x01\x00\x03\x0c" "example.test\x00\x50");
  /* The reply and the tunnel's first bytes in one segment. */
  STEP(&s, ">\x05\x00\x00\x01\x7f\x00\x00\x01\x12\x34HELLO");
  char err[SK_ERRLEN], first[8];
  assert_int_equal(through_proxy(&s, "socks5://", err, first), 0);
  assert_true(s.ok);
  assert_string_equal(first, "HELLO");
}

static void test_socks5_password_and_refusal(void **state) {
  (void)state;
  script_t s = {0};
  STEP(&s, "<\x05\x01\x02");
  STEP(&s, ">\x05\x02");
  STEP(&s, "<\x01\x04user\x06s3cr:t");
  STEP(&s, ">\x01\x00");
  STEP(&s, "<\x05\x01\x00\x03\x0c" "example.test\x00\x50");
  STEP(&s, ">\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00");
  char err[SK_ERRLEN], first[8];
  assert_int_equal(through_proxy(&s, "socks5h://user:s3cr%3At@", err, first), -ECONNREFUSED);
  assert_true(s.ok);
  assert_non_null(strstr(err, ": connection refused (to example.test:80)"));
  assert_non_null(strstr(err, "proxy socks5 127.0.0.1:"));
  /* A refused password. */
  script_t t = {0};
  STEP(&t, "<\x05\x01\x02");
  STEP(&t, ">\x05\x02");
  STEP(&t, "<\x01\x01u\x01p");
  STEP(&t, ">\x01\x01");
  assert_int_equal(through_proxy(&t, "socks5://u:p@", err, first), -EACCES);
  assert_non_null(strstr(err, "username or password refused"));
  /* A proxy that wants a password we do not have. */
  script_t u = {0};
  STEP(&u, "<\x05\x01\x00");
  STEP(&u, ">\x05\xff");
  assert_int_equal(through_proxy(&u, "socks5://", err, first), -EACCES);
  assert_non_null(strstr(err, "wants a username and password"));
}

static void test_http_connect(void **state) {
  (void)state;
  script_t s = {0};
  STEP(&s, "<CONNECT example.test:80 HTTP/1.1\r\nHost: example.test:80\r\n"
           "Proxy-Authorization: Basic dTpw\r\n\r\n");
  STEP(&s, ">HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nHELLO");
  char err[SK_ERRLEN], first[8];
  assert_int_equal(through_proxy(&s, "http://u:p@", err, first), 0);
  assert_true(s.ok);
  assert_string_equal(first, "HELLO");
  script_t t = {0};
  STEP(&t, "<CONNECT example.test:80 HTTP/1.1\r\nHost: example.test:80\r\n\r\n");
  STEP(&t, ">HTTP/1.0 407 Proxy Authentication Required\r\n\r\n");
  assert_int_equal(through_proxy(&t, "http://", err, first), -EACCES);
  assert_non_null(strstr(err, "HTTP 407 Proxy Authentication Required (to example.test:80)"));
  script_t u = {0};
  STEP(&u, "<CONNECT example.test:80 HTTP/1.1\r\nHost: example.test:80\r\n\r\n");
  STEP(&u, ">SSH-2.0-OpenSSH\r\n");
  assert_int_equal(through_proxy(&u, "http://", err, first), -EPROTO);
  assert_non_null(strstr(err, "not a proxy reply"));
}

/* ---- the codec ---------------------------------------------------------------------------- */

static void test_proxy_urls(void **state) {
  (void)state;
  sk_proxy_t p;
  char err[SK_ERRLEN];
  assert_int_equal(sk_proxy_parse(&p, "SOCKS5://h.example", err, sizeof err), 0);
  assert_int_equal(p.kind, SK_PROXY_SOCKS5);
  assert_int_equal(p.ep.port, 1080);
  assert_string_equal(p.ep.host, "h.example");
  assert_int_equal(sk_proxy_parse(&p, "http://a%40b:p%25@[::1]:3128/", err, sizeof err), 0);
  assert_int_equal(p.kind, SK_PROXY_HTTP);
  assert_string_equal(p.user, "a@b");
  assert_string_equal(p.pass, "p%");
  assert_string_equal(p.ep.host, "::1");
  assert_int_equal(p.ep.port, 3128);
  assert_int_equal(sk_proxy_parse(&p, "http://::1", err, sizeof err), 0);
  assert_int_equal(p.ep.port, 8080);
  const char *bad[] = {"ftp://h:1", "h:1", "socks5://", "socks5://u@h:1", "socks5://:p@h:1",
                       "socks5://u:%zz@h:1", "http://h:1/path", "socks5://h:99999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(sk_proxy_parse(&p, bad[i], err, sizeof err), -EINVAL);
}

/* Every prefix of a reply is "need more"; the whole is its exact length. */
static void test_replies_every_prefix(void **state) {
  (void)state;
  static const uint8_t r6[] = {5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
  static const uint8_t rd[] = {5, 1, 0, 3, 3, 'a', 'b', 'c', 0, 80, 'x'};
  int rep;
  sk_sockaddr_t b;
  for (size_t n = 0; n < sizeof r6; n++)
    assert_int_equal(sk_socks5_reply_parse(r6, n, &rep, &b), SK_EAGAIN);
  assert_int_equal(sk_socks5_reply_parse(r6, sizeof r6, &rep, &b), sizeof r6);
  assert_int_equal(rep, 0);
  assert_int_equal(family_of(&b), AF_INET6);
  assert_int_equal(sk_sockaddr_port(&b), 80);
  assert_int_equal(sk_socks5_reply_parse(rd, sizeof rd, &rep, &b), 10);
  assert_int_equal(rep, 1);
  assert_int_equal(b.len, 0);
  static const uint8_t badv[] = {4, 0}, badatyp[] = {5, 0, 0, 9, 0};
  assert_int_equal(sk_socks5_reply_parse(badv, 1, &rep, &b), SK_EBADINPUT);
  assert_int_equal(sk_socks5_reply_parse(badatyp, 5, &rep, &b), SK_EBADINPUT);
  assert_string_equal(sk_socks5_reply_str(5), "connection refused");
  assert_string_equal(sk_socks5_reply_str(99), "unknown SOCKS5 reply code");

  const char head[] = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
  int status;
  char reason[16];
  for (size_t n = 0; n < sizeof head - 1; n++)
    assert_int_equal(sk_http_connect_reply_parse(head, n, &status, reason, sizeof reason),
                     SK_EAGAIN);
  assert_int_equal(sk_http_connect_reply_parse(head, sizeof head - 1, &status, reason,
                                               sizeof reason),
                   sizeof head - 1);
  assert_int_equal(status, 200);
  assert_string_equal(reason, "OK");
  assert_int_equal(sk_http_connect_reply_parse("HTTP/1.1 200\n\nX", 15, &status, reason,
                                               sizeof reason),
                   14);
  assert_int_equal(sk_http_connect_reply_parse("HTTP/2 200", 10, &status, reason, 16),
                   SK_EBADINPUT);
  static char big[SK_PROXY_REPLY_MAX + 16];
  memset(big, 'a', sizeof big);
  memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
  assert_int_equal(sk_http_connect_reply_parse(big, sizeof big, &status, reason, 16),
                   SK_ETOOBIG);
}

static void test_messages(void **state) {
  (void)state;
  uint8_t out[SK_SOCKS5_MSG_MAX];
  assert_int_equal(sk_socks5_request(out, SK_SOCKS5_CMD_CONNECT, "10.1.2.3", 443), 10);
  assert_memory_equal(out, "\x05\x01\x00\x01\x0a\x01\x02\x03\x01\xbb", 10);
  assert_int_equal(sk_socks5_request(out, SK_SOCKS5_CMD_CONNECT, "::1", 1), 22);
  assert_int_equal(out[3], 4);
  char name[300];
  memset(name, 'a', 256);
  name[256] = '\0';
  assert_int_equal(sk_socks5_request(out, 1, name, 1), -EINVAL);
  assert_int_equal(sk_socks5_auth_request(out, "", "p"), -EINVAL);
  static const char *const b64[][2] = {{"", ""},        {"f", "Zg=="},     {"fo", "Zm8="},
                                       {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
  for (size_t i = 0; i < sizeof b64 / sizeof b64[0]; i++) {
    char enc[16];
    assert_int_equal(sk_base64_encode((const uint8_t *)b64[i][0], strlen(b64[i][0]), enc,
                                      sizeof enc),
                     (ssize_t)strlen(b64[i][1]));
    assert_string_equal(enc, b64[i][1]);
  }
  char req[128];
  assert_int_equal(sk_http_connect_request(req, 20, "example.test", 80, NULL, NULL),
                   SK_ETOOBIG);
  assert_true(sk_http_connect_request(req, sizeof req, "::1", 80, NULL, NULL) > 0);
  assert_string_equal(req, "CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
}

static void test_backoff(void **state) {
  (void)state;
  sk_backoff_t b;
  sk_backoff_init(&b, 100, 1000);
  uint64_t expect[] = {100, 200, 400, 800, 1000, 1000};
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    uint64_t w = sk_backoff_next(&b);
    assert_true(w <= expect[i] && w >= expect[i] - expect[i] / 4);
  }
  sk_backoff_reset(&b);
  assert_true(sk_backoff_next(&b) <= 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connects_and_hands_over),
      cmocka_unit_test(test_refused_names_the_endpoint),
      cmocka_unit_test(test_fails_over_to_the_next_endpoint),
      cmocka_unit_test(test_unix_and_bad_endpoints),
      cmocka_unit_test(test_happy_eyeballs_second_family_wins),
      cmocka_unit_test(test_attempt_deadline_moves_on),
      cmocka_unit_test(test_overall_deadline),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_socks5_no_auth_keeps_tunnel_bytes),
      cmocka_unit_test(test_socks5_password_and_refusal),
      cmocka_unit_test(test_http_connect),
      cmocka_unit_test(test_proxy_urls),
      cmocka_unit_test(test_replies_every_prefix),
      cmocka_unit_test(test_messages),
      cmocka_unit_test(test_backoff),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
