/* sockit/tls.h - TLS over any stream socket, secure by default (OpenSSL 3).
 *
 * A context holds the configuration (trust, certificates, pin); a session
 * wraps one connected, non-blocking socket. Every call is non-blocking:
 * SK_EAGAIN comes with what the session waits for (SK_READABLE or
 * SK_WRITABLE on its socket), so an event loop can drive many handshakes
 * at once. TLS 1.2 is the minimum.
 *
 * A client verifies the server by default: the chain against the system
 * trust store (or ca_file), and the host name or IP address against the
 * certificate. pin replaces all of that with one certificate fingerprint
 * ("sha256:HEX", as sockit prints it). insecure skips verification.
 */
#ifndef SOCKIT_TLS_H
#define SOCKIT_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockit/error.h"
#include "sockit/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_TLS_HANDSHAKE_TIMEOUT_MS 10000u
#define SK_TLS_FINGERPRINT_LEN 72 /* "sha256:" + 64 hex + NUL */

typedef struct {
  /* client */
  const char *ca_file;  /* trusted CAs (PEM); NULL = the system trust store */
  const char *pin;      /* "sha256:HEX": trust exactly this certificate */
  int insecure;         /* verify nothing (the CLI says so loudly) */
  /* both: our certificate (a server's, or a client certificate) */
  const char *cert_file, *key_file;
  /* server */
  int self_signed;       /* no cert_file: make (or reuse) one in state_dir */
  const char *state_dir; /* NULL = $XDG_STATE_HOME/sockit or ~/.local/state/sockit */
  const char *client_ca; /* require client certificates signed by this CA */
} sk_tls_config_t;

typedef struct sk_tls_ctx sk_tls_ctx_t;
typedef struct sk_tls sk_tls_t;

/* Makes a client or server context. The files are read now. A server
 * needs cert_file + key_file or self_signed. Returns 0 or a negative
 * errno / SK_EBADINPUT with a message a user can act on in err. */
SK_API int sk_tls_ctx_new(sk_tls_ctx_t **out, int server, const sk_tls_config_t *c, char *err,
                          size_t errlen);
SK_API void sk_tls_ctx_free(sk_tls_ctx_t *ctx);
/* The fingerprint of the context's own certificate ("sha256:HEX"), or ""
 * when it has none. Returns buf. */
SK_API char *sk_tls_ctx_fingerprint(const sk_tls_ctx_t *ctx, char *buf, size_t len);
/* 1 if the certificate was made by self_signed this run, 0 if reused/given. */
SK_API int sk_tls_ctx_generated(const sk_tls_ctx_t *ctx);

/* Starts a session on the connected socket fd (not taken over: the caller
 * closes it after sk_tls_free). peer_name: a client's idea of the server
 * (host name or IP literal) for SNI and verification; NULL for a server. */
SK_API int sk_tls_new(sk_tls_t **out, sk_tls_ctx_t *ctx, int fd, const char *peer_name);
SK_API void sk_tls_free(sk_tls_t *t);

/* One step of the handshake: 0 when done, SK_EAGAIN with *want set, or a
 * negative code with a message in err: "certificate has expired",
 * "certificate is not for host example.org", "unknown issuer",
 * "fingerprint mismatch", "protocol version", ... */
SK_API int sk_tls_handshake(sk_tls_t *t, unsigned *want, char *err, size_t errlen);
/* Decrypted bytes read (up to len), SK_EOF at the peer's close, SK_EAGAIN
 * with *want, or a negative code. */
SK_API ssize_t sk_tls_read(sk_tls_t *t, void *buf, size_t len, unsigned *want);
/* Bytes written (a partial write is possible), SK_EAGAIN with *want, or a
 * negative code. The buffer may move between retries. */
SK_API ssize_t sk_tls_write(sk_tls_t *t, const void *buf, size_t len, unsigned *want);
/* Decrypted bytes held inside the session: readable without the socket
 * becoming readable. */
SK_API size_t sk_tls_pending(const sk_tls_t *t);
/* Sends close_notify (best effort, never blocks). */
SK_API void sk_tls_close_notify(sk_tls_t *t);
/* The last error in words (after a negative result). */
SK_API const char *sk_tls_last_error(const sk_tls_t *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs. Returns buf. */
SK_API char *sk_tls_describe(const sk_tls_t *t, char *buf, size_t len);
/* The peer certificate's fingerprint, or "". Returns buf. */
SK_API char *sk_tls_peer_fingerprint(const sk_tls_t *t, char *buf, size_t len);

/* Drives a handshake on loop without blocking it: calls done(data, err,
 * msg) once, with err 0 or negative (SK_ETIMEDOUT after timeout_ms).
 * Returns a handle to cancel with sk_tls_handshake_cancel (which does not
 * call done), or NULL if out of memory. */
typedef struct sk_tls_hs sk_tls_hs_t;
typedef void (*sk_tls_hs_cb)(void *data, int err, const char *msg);
SK_API sk_tls_hs_t *sk_tls_handshake_async(sk_loop_t *loop, sk_tls_t *t, int fd,
                                           uint64_t timeout_ms, sk_tls_hs_cb done, void *data);
SK_API void sk_tls_handshake_cancel(sk_tls_hs_t *hs);
/* The same, blocking the caller (for one-connection commands). Returns 0
 * or a negative code with the message in err. */
SK_API int sk_tls_handshake_wait(sk_tls_t *t, int fd, uint64_t timeout_ms, char *err,
                                 size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
