/* buf.c - bounded byte buffers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/internal.h"
#include "sockit/buf.h"
#include "sockit/net.h"

void sk_buf_init(sk_buf_t *b, size_t limit) {
  memset(b, 0, sizeof *b);
  b->limit = limit ? limit : SK_BUF_DEFAULT_LIMIT;
}

void sk_buf_free(sk_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->start = b->len = b->cap = 0;
}

/* Makes at least `need` contiguous free bytes after the held data, moving
 * the data to the front or growing (by doubling, capped at the limit).
 * need <= space is the caller's promise. Returns 0 or -ENOMEM. */
static int make_room(sk_buf_t *b, size_t need) {
  if (b->cap - b->start - b->len >= need)
    return 0;
  if (b->start > 0 && b->cap - b->len >= need) {
    memmove(b->data, b->data + b->start, b->len);
    b->start = 0;
    return 0;
  }
  size_t want = b->len + need;
  size_t cap = b->cap ? b->cap : SK_BUF_MIN_ALLOC;
  while (cap < want)
    cap *= 2;
  if (cap > b->limit)
    cap = b->limit > want ? b->limit : want;
  char *p = malloc(cap);
  if (!p)
    return -ENOMEM;
  if (b->len)
    memcpy(p, b->data + b->start, b->len);
  free(b->data);
  b->data = p;
  b->cap = cap;
  b->start = 0;
  return 0;
}

#define FIRST_ALLOC_MIN 256u

int sk__buf_first_alloc(sk_buf_t *b, size_t len) {
  if (b->data || len == 0 || len > b->limit)
    return 0;
  size_t cap = FIRST_ALLOC_MIN;
  while (cap < len)
    cap *= 2;
  if (cap > b->limit)
    cap = b->limit;
  if (!(b->data = malloc(cap)))
    return -ENOMEM;
  b->cap = cap;
  b->start = b->len = 0;
  return 0;
}

int sk_buf_append(sk_buf_t *b, const void *p, size_t len) {
  if (len > sk_buf_space(b))
    return SK_ETOOBIG;
  if (len == 0)
    return 0;
  if (make_room(b, len) < 0)
    return -ENOMEM;
  memcpy(b->data + b->start + b->len, p, len);
  b->len += len;
  return 0;
}

char *sk_buf_reserve(sk_buf_t *b, size_t want, size_t *got) {
  size_t space = sk_buf_space(b);
  *got = 0;
  if (space == 0)
    return NULL;
  if (want == 0 || want > space)
    want = space;
  /* Use the free tail as it is when it already holds `want`, else make room. */
  if (make_room(b, want) < 0)
    return NULL;
  size_t tail = b->cap - b->start - b->len;
  *got = tail < space ? tail : space;
  return b->data + b->start + b->len;
}

void sk_buf_commit(sk_buf_t *b, size_t n) { b->len += n; }

void sk_buf_consume(sk_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->start = b->len = 0;
    return;
  }
  b->start += n;
  b->len -= n;
}

ssize_t sk_buf_read_fd(sk_buf_t *b, int fd, size_t max) {
  size_t got;
  char *p = sk_buf_reserve(b, max ? max : 65536, &got);
  if (!p)
    return sk_buf_space(b) == 0 ? SK_ETOOBIG : -ENOMEM;
  if (max && got > max)
    got = max;
  ssize_t n = sk_net_read(fd, p, got);
  if (n > 0)
    b->len += (size_t)n;
  return n;
}

ssize_t sk_buf_write_fd(sk_buf_t *b, int fd, int is_socket) {
  if (b->len == 0)
    return 0;
  ssize_t n = is_socket ? sk_net_send(fd, sk_buf_head(b), b->len)
                        : sk_net_write(fd, sk_buf_head(b), b->len);
  if (n > 0)
    sk_buf_consume(b, (size_t)n);
  return n;
}

size_t sk_buf_line_len(const sk_buf_t *b, size_t max, int at_eof) {
  size_t len = b->len;
  if (len == 0)
    return 0;
  size_t cap = len < max ? len : max;
  const char *nl = memchr(sk_buf_head(b), '\n', cap);
  if (nl)
    return (size_t)(nl - sk_buf_head(b)) + 1;
  if (len >= max || at_eof)
    return cap;
  return 0;
}
