/* src/lib/internal.h - helpers shared between libsockit's own files. */
#ifndef SK_INTERNAL_H
#define SK_INTERNAL_H

#include <errno.h>
#include <stdint.h>

#include "sk_config.h"

/* The current errno as a negative code, never 0 (callers return it as a failure). */
static inline int sk__neg_errno(void) { return errno ? -errno : -EIO; }

/* Monotonic clock in milliseconds. */
uint64_t sk__now_ms(void);

#endif
