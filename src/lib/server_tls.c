/* server_tls.c - TLS listeners for sk_server. The framework (server.c)
 * calls TLS only through the table this file hands over with the first
 * TLS listener, so a program that never calls sk_server_listen_tls links
 * none of it: a static libsockit.a then needs no libssl for sk_server.
 */
#include <errno.h>
#include <sys/socket.h>

#include "lib/internal.h"
#include "sockit/server.h"
#include "sockit/tls.h"

/* A server session whose record buffers are freed while empty: an idle
 * connection then holds no TLS buffer either. */
static int session_new(sk_tls_t **out, sk_tls_ctx_t *ctx, int fd) {
  int r = sk_tls_new(out, ctx, fd, NULL);
  if (r == 0)
    sk__tls_release_buffers(*out);
  return r;
}

static const sk__server_tls_t tls_ops = {
    .session_new = session_new,
    .session_free = sk_tls_free,
    .handshake = sk_tls_handshake,
    .read = sk_tls_read,
    .write = sk_tls_write,
    .pending = sk_tls_pending,
    .close_notify = sk_tls_close_notify,
    .last_error = sk_tls_last_error,
};

int sk_server_listen_tls(sk_server_t *s, const sk_endpoint_t *ep, const sk_sockopts_t *o,
                         sk_tls_ctx_t *tls, char *err, size_t errlen) {
  char text[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(ep, text, sizeof text);
  if (sk_endpoint_socktype(ep) != SOCK_STREAM || ep->kind == SK_EP_STDIO)
    return sk_err_set(-EINVAL, err, errlen,
                      "%s: TLS needs a byte-stream endpoint (tcp or unix), not datagrams or "
                      "packets",
                      text);
  if (!tls || !sk__tls_ctx_is_server(tls))
    return sk_err_set(-EINVAL, err, errlen, "%s: TLS needs a server context (certificate and key)",
                      text);
  return sk__server_listen(s, ep, o, tls, &tls_ops, err, errlen);
}
