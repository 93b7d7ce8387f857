/* src/lib/internal.h - helpers shared between libsockit's own files. */
#ifndef SK_INTERNAL_H
#define SK_INTERNAL_H

#include <errno.h>
#include <stdint.h>

#include "sk_config.h"
#include "sockit/buf.h"

/* The current errno as a negative code, never 0 (callers return it as a failure). */
static inline int sk__neg_errno(void) { return errno ? -errno : -EIO; }

/* Monotonic clock in milliseconds. */
uint64_t sk__now_ms(void);

/* Gives an empty buffer without storage a first allocation sized for len
 * bytes (a power of two from 256, within the limit) instead of
 * SK_BUF_MIN_ALLOC: a connection's short reply costs a short allocation.
 * No-op if b has storage. Returns 0 or -ENOMEM. */
int sk__buf_first_alloc(sk_buf_t *b, size_t len);

#endif
