/* sockit/error.h - error conventions of libsockit.
 *
 * Every library call returns 0 (or a byte count / descriptor) on success and
 * a negative errno value on failure (-ECONNREFUSED). sockit's own conditions
 * sit below -4000, outside errno's range. Functions that can say more fill a
 * caller buffer of SK_ERRLEN bytes with a message naming the syscall and the
 * thing: "connect tcp://127.0.0.1:9: Connection refused". The library never
 * prints and never exits.
 */
#ifndef SOCKIT_ERROR_H
#define SOCKIT_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SK_API __attribute__((visibility("default")))

/* Size of every error-message buffer the library fills. */
#define SK_ERRLEN 256

/* sockit's own result codes, outside errno's range. */
#define SK_EOF       (-4001) /* the peer closed its write side */
#define SK_EAGAIN    (-4002) /* would block / need more input */
#define SK_EBADINPUT (-4003) /* malformed input from a peer or a user */
#define SK_ETOOBIG   (-4004) /* a named size limit was exceeded */
#define SK_ETIMEDOUT (-4005) /* a sockit deadline (not the kernel's) passed */

/* Returns a static description of err (a negative errno or an SK_* code). */
SK_API const char *sk_strerror(int err);

/* Formats "<fmt...>: <sk_strerror(err)>" into buf (SK_ERRLEN bytes is
 * enough for every message the library makes) and returns err unchanged, so
 * error paths can read `return sk_err_set(err, buf, len, "connect %s", name);`.
 * buf may be NULL, then nothing is written. */
SK_API int sk_err_set(int err, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
