/* tests/unit/test_buf.c - the bounded byte buffer.
 *
 * The limit is the point of sk_buf_t: appends are all or nothing, reserve
 * never offers room past the limit, a full buffer refuses to read. Content
 * must survive growth and compaction, which a model (a plain array) checks
 * over a long run of mixed operations. The fd half uses pipes and
 * socketpairs, non-blocking, so no test can hang.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit/buf.h"

/* ---- helpers ------------------------------------------------------------- */

static unsigned char pattern_byte(size_t i) { return (unsigned char)((i * 7u + 3u) % 251u); }

static void fill_pattern(unsigned char *p, size_t from, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = pattern_byte(from + i);
}

static void assert_head(const sk_buf_t *b, const void *want, size_t n) {
  assert_int_equal(sk_buf_len(b), n);
  if (n)
    assert_memory_equal(sk_buf_head(b), want, n);
}

static void assert_head_pattern(const sk_buf_t *b, size_t from, size_t n) {
  assert_int_equal(sk_buf_len(b), n);
  const unsigned char *h = (const unsigned char *)sk_buf_head(b);
  for (size_t i = 0; i < n; i++)
    if (h[i] != pattern_byte(from + i))
      fail_msg("byte %zu: %u, expected %u", i, h[i], pattern_byte(from + i));
}

static void make_pipe(int fds[2]) {
  assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void make_socketpair(int sv[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* ---- limit ---------------------------------------------------------------- */

static void test_init_empty(void **state) {
  (void)state;
  sk_buf_t b;
  sk_buf_init(&b, 100);
  assert_int_equal(sk_buf_len(&b), 0);
  assert_int_equal(sk_buf_space(&b), 100);
  sk_buf_free(&b);
  assert_int_equal(sk_buf_len(&b), 0);
}

static void test_append_all_or_nothing(void **state) {
  (void)state;
  sk_buf_t b;
  sk_buf_init(&b, 10);
  assert_int_equal(sk_buf_append(&b, "hello", 5), 0);
  assert_head(&b, "hello", 5);
  assert_int_equal(sk_buf_space(&b), 5);
  /* 6 bytes would pass the limit: nothing is added */
  assert_int_equal(sk_buf_append(&b, "world!", 6), SK_ETOOBIG);
  assert_head(&b, "hello", 5);
  assert_int_equal(sk_buf_space(&b), 5);
  /* exactly to the limit is fine */
  assert_int_equal(sk_buf_append(&b, "world", 5), 0);
  assert_head(&b, "helloworld", 10);
  assert_int_equal(sk_buf_space(&b), 0);
  assert_int_equal(sk_buf_append(&b, "x", 1), SK_ETOOBIG);
  assert_int_equal(sk_buf_append(&b, "", 0), 0);
  assert_head(&b, "helloworld", 10);
  /* room made by consuming can be used again, up to the limit only */
  sk_buf_consume(&b, 3);
  assert_int_equal(sk_buf_append(&b, "abcd", 4), SK_ETOOBIG);
  assert_head(&b, "loworld", 7);
  assert_int_equal(sk_buf_append(&b, "abc", 3), 0);
  assert_head(&b, "loworldabc", 10);
  sk_buf_free(&b);
}

/* A limit past the first allocation: growth must not change the rule. */
static void test_append_limit_large(void **state) {
  (void)state;
  const size_t limit = 3 * SK_BUF_MIN_ALLOC + 17;
  unsigned char *src = malloc(limit + 1);
  assert_non_null(src);
  fill_pattern(src, 0, limit + 1);
  sk_buf_t b;
  sk_buf_init(&b, limit);
  /* one append bigger than the limit into an empty buffer */
  assert_int_equal(sk_buf_append(&b, src, limit + 1), SK_ETOOBIG);
  assert_int_equal(sk_buf_len(&b), 0);
  assert_int_equal(sk_buf_append(&b, src, limit - 1), 0);
  assert_int_equal(sk_buf_append(&b, src + limit - 1, 2), SK_ETOOBIG);
  assert_head_pattern(&b, 0, limit - 1);
  assert_int_equal(sk_buf_append(&b, src + limit - 1, 1), 0);
  assert_head_pattern(&b, 0, limit);
  assert_int_equal(sk_buf_space(&b), 0);
  sk_buf_free(&b);
  free(src);
}

static void test_byte_at_a_time(void **state) {
  (void)state;
  const size_t limit = 2 * SK_BUF_MIN_ALLOC + 5; /* crosses two growths */
  sk_buf_t b;
  sk_buf_init(&b, limit);
  for (size_t i = 0; i < limit; i++) {
    unsigned char c = pattern_byte(i);
    int rc = sk_buf_append(&b, &c, 1);
    if (rc != 0)
      fail_msg("append of byte %zu (limit %zu): %d", i, limit, rc);
    assert_int_equal(sk_buf_len(&b), i + 1);
    assert_int_equal(sk_buf_space(&b), limit - i - 1);
  }
  unsigned char c = 0;
  assert_int_equal(sk_buf_append(&b, &c, 1), SK_ETOOBIG);
  assert_head_pattern(&b, 0, limit);
  assert_true(b.cap <= limit);

  /* byte in, byte out, many times around: content and limit hold */
  sk_buf_consume(&b, limit);
  assert_int_equal(sk_buf_len(&b), 0);
  size_t next_in = 0, next_out = 0;
  for (size_t i = 0; i < 5 * limit; i++) {
    c = pattern_byte(next_in);
    assert_int_equal(sk_buf_append(&b, &c, 1), 0);
    next_in++;
    if (sk_buf_len(&b) == 100) {
      assert_int_equal((unsigned char)sk_buf_head(&b)[0], pattern_byte(next_out));
      sk_buf_consume(&b, 1);
      next_out++;
    }
  }
  assert_head_pattern(&b, next_out, next_in - next_out);
  sk_buf_free(&b);
}

/* ---- reserve / commit / consume --------------------------------------------- */

/* Memory is bounded by the limit, also for limits below the first
 * allocation size. */
static void test_storage_bounded(void **state) {
  (void)state;
  const size_t limits[] = {1, 10, SK_BUF_MIN_ALLOC - 1, SK_BUF_MIN_ALLOC + 1, 3 * SK_BUF_MIN_ALLOC};
  for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
    sk_buf_t b;
    size_t got;
    sk_buf_init(&b, limits[k]);
    char *p = sk_buf_reserve(&b, 0, &got);
    assert_non_null(p);
    assert_int_equal(got, limits[k]);
    memset(p, 'a', got);
    sk_buf_commit(&b, got);
    assert_int_equal(sk_buf_len(&b), limits[k]);
    if (b.cap > limits[k])
      fail_msg("limit %zu: %zu bytes allocated", limits[k], b.cap);
    sk_buf_free(&b);
  }
}

static void test_reserve_commit(void **state) {
  (void)state;
  sk_buf_t b;
  size_t got = 12345;
  sk_buf_init(&b, 100);
  char *p = sk_buf_reserve(&b, 10, &got);
  assert_non_null(p);
  assert_true(got >= 10);
  assert_true(got <= sk_buf_space(&b)); /* never room past the limit */
  memcpy(p, "abcdefghij", 10);
  /* nothing counts before commit */
  assert_int_equal(sk_buf_len(&b), 0);
  sk_buf_commit(&b, 10);
  assert_head(&b, "abcdefghij", 10);

  /* asking for more than is left offers exactly what is left */
  p = sk_buf_reserve(&b, 1000, &got);
  assert_non_null(p);
  assert_int_equal(got, 90);
  memset(p, 'z', 3);
  sk_buf_commit(&b, 3); /* commit less than reserved */
  assert_head(&b, "abcdefghijzzz", 13);

  p = sk_buf_reserve(&b, 87, &got);
  assert_non_null(p);
  assert_int_equal(got, 87);
  memset(p, 'y', 87);
  sk_buf_commit(&b, 87);
  assert_int_equal(sk_buf_len(&b), 100);

  /* full: NULL and 0 */
  got = 777;
  assert_null(sk_buf_reserve(&b, 1, &got));
  assert_int_equal(got, 0);
  assert_int_equal(sk_buf_len(&b), 100);
  assert_memory_equal(sk_buf_head(&b), "abcdefghijzzzyyy", 16);
  sk_buf_free(&b);
}

static void test_consume(void **state) {
  (void)state;
  sk_buf_t b;
  sk_buf_init(&b, 64);
  assert_int_equal(sk_buf_append(&b, "abcdef", 6), 0);
  sk_buf_consume(&b, 0);
  assert_head(&b, "abcdef", 6);
  sk_buf_consume(&b, 2);
  assert_head(&b, "cdef", 4);
  assert_int_equal(sk_buf_space(&b), 60);
  sk_buf_consume(&b, 4);
  assert_int_equal(sk_buf_len(&b), 0);
  assert_int_equal(sk_buf_space(&b), 64);
  assert_int_equal(sk_buf_append(&b, "gh", 2), 0);
  assert_head(&b, "gh", 2);
  sk_buf_free(&b);
}

/* Consumed room at the front is reused by moving the rest down; the bytes
 * still held must come through unchanged. */
static void test_compaction(void **state) {
  (void)state;
  const size_t limits[] = {64, SK_BUF_MIN_ALLOC, SK_BUF_MIN_ALLOC * 4 + 3};
  for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
    size_t limit = limits[k];
    unsigned char *src = malloc(2 * limit);
    assert_non_null(src);
    fill_pattern(src, 0, 2 * limit);
    sk_buf_t b;
    sk_buf_init(&b, limit);
    assert_int_equal(sk_buf_append(&b, src, limit), 0);
    sk_buf_consume(&b, limit - 10);
    assert_head_pattern(&b, limit - 10, 10);
    /* needs the consumed room */
    assert_int_equal(sk_buf_append(&b, src + limit, limit - 11), 0);
    assert_head_pattern(&b, limit - 10, limit - 1);
    /* reserve after consume: the whole free space, contiguous */
    sk_buf_consume(&b, limit / 2);
    size_t got = 0;
    size_t space = sk_buf_space(&b);
    unsigned char *p = (unsigned char *)sk_buf_reserve(&b, space, &got);
    assert_non_null(p);
    assert_int_equal(got, space);
    size_t from = limit - 10 + limit / 2 + sk_buf_len(&b);
    fill_pattern(p, from, got);
    sk_buf_commit(&b, got);
    assert_head_pattern(&b, limit - 10 + limit / 2, limit);
    sk_buf_free(&b);
    free(src);
  }
}

/* A long random run against a model: append, consume, reserve+commit. */
static void test_model(void **state) {
  (void)state;
  const size_t limit = 5000;
  unsigned char *model = malloc(limit);
  unsigned char tmp[700];
  assert_non_null(model);
  size_t mlen = 0, stream = 0; /* stream: pattern index of the next byte in */
  uint32_t seed = 12345;
  sk_buf_t b;
  sk_buf_init(&b, limit);
  for (int op = 0; op < 30000; op++) {
    seed = seed * 1103515245u + 12345u;
    unsigned r = (seed >> 8) & 0xffff;
    size_t n = r % 700;
    switch (r % 3) {
    case 0: { /* append */
      fill_pattern(tmp, stream, n);
      int rc = sk_buf_append(&b, tmp, n);
      if (mlen + n <= limit) {
        if (rc != 0)
          fail_msg("op %d: append %zu with %zu held: %d", op, n, mlen, rc);
        memcpy(model + mlen, tmp, n);
        mlen += n;
        stream += n;
      } else if (rc != SK_ETOOBIG) {
        fail_msg("op %d: append %zu with %zu held (limit %zu): %d, expected SK_ETOOBIG", op,
                 n, mlen, limit, rc);
      }
      break;
    }
    case 1: /* consume */
      if (n > mlen)
        n = mlen;
      sk_buf_consume(&b, n);
      memmove(model, model + n, mlen - n);
      mlen -= n;
      break;
    default: { /* reserve, write part, commit */
      size_t got = 0;
      char *p = sk_buf_reserve(&b, n, &got);
      size_t space = limit - mlen;
      if (space == 0) {
        assert_null(p);
        assert_int_equal(got, 0);
        break;
      }
      size_t want_min = n < space ? n : space;
      if (n == 0 && p == NULL)
        break;
      assert_non_null(p);
      if (got < want_min || got > space)
        fail_msg("op %d: reserve %zu with space %zu gave %zu", op, n, space, got);
      size_t use = got / 2 + (got & 1);
      fill_pattern((unsigned char *)p, stream, use);
      sk_buf_commit(&b, use);
      fill_pattern(model + mlen, stream, use);
      mlen += use;
      stream += use;
      break;
    }
    }
    assert_int_equal(sk_buf_len(&b), mlen);
    assert_int_equal(sk_buf_space(&b), limit - mlen);
    assert_true(b.cap <= limit); /* storage grows up to the limit, no further */
    if (mlen && memcmp(sk_buf_head(&b), model, mlen) != 0)
      fail_msg("op %d: content differs from the model (%zu bytes)", op, mlen);
  }
  sk_buf_free(&b);
  free(model);
}

static void test_free_reuse(void **state) {
  (void)state;
  sk_buf_t b;
  sk_buf_init(&b, 8);
  assert_int_equal(sk_buf_append(&b, "12345678", 8), 0);
  sk_buf_free(&b);
  assert_int_equal(sk_buf_len(&b), 0);
  assert_int_equal(sk_buf_space(&b), 8);
  assert_int_equal(sk_buf_append(&b, "abcdefgh", 8), 0);
  assert_int_equal(sk_buf_append(&b, "i", 1), SK_ETOOBIG);
  assert_head(&b, "abcdefgh", 8);
  sk_buf_free(&b);
  sk_buf_free(&b); /* twice is harmless */
}

/* ---- read_fd -------------------------------------------------------------- */

static void test_read_fd_pipe(void **state) {
  (void)state;
  int fds[2];
  sk_buf_t b;
  make_pipe(fds);
  sk_buf_init(&b, 1024);
  /* empty non-blocking pipe */
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), SK_EAGAIN);
  assert_int_equal(sk_buf_len(&b), 0);
  assert_int_equal(write(fds[1], "hello", 5), 5);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), 5);
  assert_head(&b, "hello", 5);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), SK_EAGAIN);
  assert_int_equal(write(fds[1], " world", 6), 6);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), 6);
  assert_head(&b, "hello world", 11);
  /* write end closed: EOF, content kept */
  close(fds[1]);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), SK_EOF);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), SK_EOF);
  assert_head(&b, "hello world", 11);
  close(fds[0]);
  sk_buf_free(&b);
}

static void test_read_fd_max(void **state) {
  (void)state;
  int fds[2];
  sk_buf_t b;
  make_pipe(fds);
  sk_buf_init(&b, 1024);
  assert_int_equal(write(fds[1], "0123456789", 10), 10);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 3), 3);
  assert_head(&b, "012", 3);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 1), 1);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), 6);
  assert_head(&b, "0123456789", 10);
  close(fds[0]);
  close(fds[1]);
  sk_buf_free(&b);
}

/* A read never passes the limit; a full buffer refuses to read at all and
 * leaves the data in the pipe. */
static void test_read_fd_full(void **state) {
  (void)state;
  int fds[2];
  sk_buf_t b;
  make_pipe(fds);
  sk_buf_init(&b, 8);
  assert_int_equal(write(fds[1], "abcdefghijklmnopqrst", 20), 20);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), 8);
  assert_head(&b, "abcdefgh", 8);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), SK_ETOOBIG);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 5), SK_ETOOBIG);
  assert_head(&b, "abcdefgh", 8);
  sk_buf_consume(&b, 4);
  /* max larger than the space left: only what fits */
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 100), 4);
  assert_head(&b, "efghijkl", 8);
  sk_buf_consume(&b, 8);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), 8);
  assert_head(&b, "mnopqrst", 8);
  close(fds[1]);
  sk_buf_consume(&b, 1);
  assert_int_equal(sk_buf_read_fd(&b, fds[0], 0), SK_EOF);
  close(fds[0]);
  sk_buf_free(&b);
}

static void test_read_fd_socketpair(void **state) {
  (void)state;
  int sv[2];
  sk_buf_t b;
  make_socketpair(sv);
  sk_buf_init(&b, 64);
  assert_int_equal(sk_buf_read_fd(&b, sv[0], 0), SK_EAGAIN);
  assert_int_equal(send(sv[1], "ping", 4, 0), 4);
  assert_int_equal(sk_buf_read_fd(&b, sv[0], 0), 4);
  assert_head(&b, "ping", 4);
  assert_int_equal(sk_buf_read_fd(&b, sv[0], 0), SK_EAGAIN);
  assert_int_equal(send(sv[1], "pong", 4, 0), 4);
  assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
  /* the data first, then EOF */
  assert_int_equal(sk_buf_read_fd(&b, sv[0], 0), 4);
  assert_head(&b, "pingpong", 8);
  assert_int_equal(sk_buf_read_fd(&b, sv[0], 0), SK_EOF);
  close(sv[0]);
  close(sv[1]);
  sk_buf_free(&b);
}

static void test_read_fd_errors(void **state) {
  (void)state;
  sk_buf_t b;
  sk_buf_init(&b, 64);
  assert_int_equal(sk_buf_read_fd(&b, -1, 0), -EBADF);
  assert_int_equal(sk_buf_len(&b), 0);
  int sv[2];
  make_socketpair(sv);
  /* a reset connection: the peer closes with unread data */
  assert_int_equal(send(sv[0], "x", 1, 0), 1);
  close(sv[1]);
  ssize_t rc = sk_buf_read_fd(&b, sv[0], 0);
  assert_true(rc == SK_EOF || rc == -ECONNRESET);
  close(sv[0]);
  sk_buf_free(&b);
}

/* ---- write_fd ------------------------------------------------------------- */

static void test_write_fd_pipe(void **state) {
  (void)state;
  int fds[2];
  char got[16];
  sk_buf_t b;
  make_pipe(fds);
  sk_buf_init(&b, 64);
  assert_int_equal(sk_buf_append(&b, "data", 4), 0);
  assert_int_equal(sk_buf_write_fd(&b, fds[1], 0), 4);
  assert_int_equal(sk_buf_len(&b), 0);
  assert_int_equal(read(fds[0], got, sizeof got), 4);
  assert_memory_equal(got, "data", 4);
  close(fds[0]);
  close(fds[1]);
  sk_buf_free(&b);
}

static void test_write_fd_socket(void **state) {
  (void)state;
  int sv[2];
  char got[64];
  sk_buf_t b;
  make_socketpair(sv);
  sk_buf_init(&b, 64);
  assert_int_equal(sk_buf_append(&b, "hello, ", 7), 0);
  sk_buf_consume(&b, 2); /* written from the head, not the allocation */
  assert_int_equal(sk_buf_append(&b, "peer", 4), 0);
  assert_int_equal(sk_buf_write_fd(&b, sv[0], 1), 9);
  assert_int_equal(sk_buf_len(&b), 0);
  assert_int_equal(recv(sv[1], got, sizeof got, 0), 9);
  assert_memory_equal(got, "llo, peer", 9);
  close(sv[0]);
  close(sv[1]);
  sk_buf_free(&b);
}

/* A socket that takes only part: what was written is consumed, the rest
 * stays in order; a socket that takes nothing gives SK_EAGAIN. */
static void test_write_fd_partial(void **state) {
  (void)state;
  const size_t total = 4u * 1024u * 1024u;
  int sv[2];
  int small = 4096;
  sk_buf_t b;
  make_socketpair(sv);
  assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  unsigned char *src = malloc(total);
  unsigned char *dst = malloc(total);
  assert_non_null(src);
  assert_non_null(dst);
  fill_pattern(src, 0, total);
  sk_buf_init(&b, total);
  assert_int_equal(sk_buf_append(&b, src, total), 0);

  ssize_t n = sk_buf_write_fd(&b, sv[0], 1);
  assert_true(n > 0);
  assert_true((size_t)n < total);
  assert_head_pattern(&b, (size_t)n, total - (size_t)n);
  size_t written = (size_t)n;
  assert_int_equal(sk_buf_write_fd(&b, sv[0], 1), SK_EAGAIN);
  assert_int_equal(sk_buf_len(&b), total - written);

  /* drain and write alternately until everything arrived */
  size_t received = 0;
  int rounds = 0;
  while (received < total) {
    assert_true(++rounds < 10000000);
    ssize_t r = recv(sv[1], dst + received, total - received, 0);
    if (r > 0)
      received += (size_t)r;
    else
      assert_true(r < 0 && errno == EAGAIN);
    if (sk_buf_len(&b) > 0) {
      n = sk_buf_write_fd(&b, sv[0], 1);
      assert_true(n > 0 || n == SK_EAGAIN);
      if (n > 0)
        written += (size_t)n;
    }
    assert_int_equal(sk_buf_len(&b), total - written);
  }
  assert_int_equal(written, total);
  assert_memory_equal(dst, src, total);
  close(sv[0]);
  close(sv[1]);
  sk_buf_free(&b);
  free(src);
  free(dst);
}

/* Writing to a socket whose peer is gone gives -EPIPE, not SIGPIPE (which
 * would kill this test process). */
static void test_write_fd_epipe(void **state) {
  (void)state;
  int sv[2];
  sk_buf_t b;
  make_socketpair(sv);
  close(sv[1]);
  sk_buf_init(&b, 64);
  assert_int_equal(sk_buf_append(&b, "lost", 4), 0);
  assert_int_equal(sk_buf_write_fd(&b, sv[0], 1), -EPIPE);
  assert_head(&b, "lost", 4);
  close(sv[0]);
  sk_buf_free(&b);
}

static void test_write_fd_badfd(void **state) {
  (void)state;
  sk_buf_t b;
  sk_buf_init(&b, 64);
  assert_int_equal(sk_buf_append(&b, "x", 1), 0);
  assert_int_equal(sk_buf_write_fd(&b, -1, 0), -EBADF);
  assert_head(&b, "x", 1);
  sk_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_init_empty),
    cmocka_unit_test(test_append_all_or_nothing),
    cmocka_unit_test(test_append_limit_large),
    cmocka_unit_test(test_byte_at_a_time),
    cmocka_unit_test(test_storage_bounded),
    cmocka_unit_test(test_reserve_commit),
    cmocka_unit_test(test_consume),
    cmocka_unit_test(test_compaction),
    cmocka_unit_test(test_model),
    cmocka_unit_test(test_free_reuse),
    cmocka_unit_test(test_read_fd_pipe),
    cmocka_unit_test(test_read_fd_max),
    cmocka_unit_test(test_read_fd_full),
    cmocka_unit_test(test_read_fd_socketpair),
    cmocka_unit_test(test_read_fd_errors),
    cmocka_unit_test(test_write_fd_pipe),
    cmocka_unit_test(test_write_fd_socket),
    cmocka_unit_test(test_write_fd_partial),
    cmocka_unit_test(test_write_fd_epipe),
    cmocka_unit_test(test_write_fd_badfd),
  };
  return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
