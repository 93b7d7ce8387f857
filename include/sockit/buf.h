/* sockit/buf.h - a bounded byte buffer.
 *
 * A buffer holds at most `limit` bytes; nothing makes it grow past that, so
 * a peer that sends faster than its data is consumed meets backpressure (the
 * caller stops reading) instead of growing memory. Storage is allocated on
 * first use and grows by doubling up to the limit; consumed bytes at the
 * front are reclaimed by moving the rest down only when room is needed.
 */
#ifndef SOCKIT_BUF_H
#define SOCKIT_BUF_H

#include <stddef.h>
#include <sys/types.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_BUF_DEFAULT_LIMIT (256u * 1024u) /* per direction of a connection */
#define SK_BUF_MIN_ALLOC 4096u

typedef struct {
  char *data;
  size_t start; /* first unconsumed byte */
  size_t len;   /* bytes held, from start */
  size_t cap;   /* bytes allocated */
  size_t limit; /* most bytes ever held */
} sk_buf_t;

/* Initialises an empty buffer that will hold at most limit bytes (> 0). */
SK_API void sk_buf_init(sk_buf_t *b, size_t limit);
/* Frees the storage; the buffer is empty and reusable afterwards. */
SK_API void sk_buf_free(sk_buf_t *b);

/* Bytes held, and bytes that can still be added before the limit. */
static inline size_t sk_buf_len(const sk_buf_t *b) { return b->len; }
static inline size_t sk_buf_space(const sk_buf_t *b) { return b->limit - b->len; }
/* The held bytes, contiguous, valid until the next call that changes b. */
static inline const char *sk_buf_head(const sk_buf_t *b) { return b->data + b->start; }

/* Appends len bytes, all or nothing. Returns 0, SK_ETOOBIG if they would
 * pass the limit, or -ENOMEM. */
SK_API int sk_buf_append(sk_buf_t *b, const void *p, size_t len);
/* Returns a pointer to contiguous free space of at least min(want, space)
 * bytes (allocating or compacting as needed) and its size in *got; NULL
 * with *got 0 when the buffer is full or memory ran out. Bytes written
 * there count once sk_buf_commit is called. */
SK_API char *sk_buf_reserve(sk_buf_t *b, size_t want, size_t *got);
SK_API void sk_buf_commit(sk_buf_t *b, size_t n);
/* Drops the first n (<= len) bytes. */
SK_API void sk_buf_consume(sk_buf_t *b, size_t n);

/* Length of the first message in b when messages are lines: the first line
 * with its LF if one starts within max bytes; max bytes when the buffer
 * holds max or more with no LF (a line too long for one message is cut);
 * everything held (up to max) when at_eof; else 0: no message complete yet. */
SK_API size_t sk_buf_line_len(const sk_buf_t *b, size_t max, int at_eof);

/* Reads once from fd into free space (at most max bytes; 0 = up to
 * 64 KiB, less if the limit is nearer). Returns bytes read, SK_EOF, SK_EAGAIN, SK_ETOOBIG when the buffer
 * is already full, or a negative errno. */
SK_API ssize_t sk_buf_read_fd(sk_buf_t *b, int fd, size_t max);
/* Writes held bytes to fd once (send with MSG_NOSIGNAL when is_socket) and
 * consumes what was written. Returns bytes written, SK_EAGAIN, or a
 * negative errno. */
SK_API ssize_t sk_buf_write_fd(sk_buf_t *b, int fd, int is_socket);

#ifdef __cplusplus
}
#endif
#endif
