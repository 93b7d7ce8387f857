/* error.c - result codes to text. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sockit/error.h"
#include "sockit/version.h"

const char *sk_strerror(int err) {
  switch (err) {
  case 0: return "Success";
  case SK_EOF: return "End of stream";
  case SK_EAGAIN: return "Operation would block";
  case SK_EBADINPUT: return "Malformed input";
  case SK_ETOOBIG: return "Size limit exceeded";
  case SK_ETIMEDOUT: return "Timed out";
  default: break;
  }
  if (err < 0 && err > -4000)
    return strerror(-err);
  return "Unknown error";
}

int sk_err_set(int err, char *buf, size_t len, const char *fmt, ...) {
  if (!buf || len == 0)
    return err;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < len)
    snprintf(buf + n, len - (size_t)n, ": %s", sk_strerror(err));
  return err;
}

const char *sk_version(void) { return SK_VERSION_STRING; }
