/* tls.c - TLS sessions on non-blocking sockets with OpenSSL 3: contexts
 * (trust, pinning, client certificates, self-signed certificates kept in a
 * state directory), handshakes driven by the event loop, reads and writes,
 * and errors said in words a user can act on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/internal.h"
#include "sockit/tls.h"

#define SELF_SIGNED_DAYS 825
#define PIN_MAX 32 /* a SHA-256 */

struct sk_tls_ctx {
  SSL_CTX *ssl;
  int server, insecure, pinned, generated;
  unsigned char pin[PIN_MAX];
};

struct sk_tls {
  sk_tls_ctx_t *ctx;
  SSL *ssl;
  char peer_name[256];
  char last_error[SK_ERRLEN];
  char pin_seen[SK_TLS_FINGERPRINT_LEN]; /* what a pinned peer presented */
};

/* ---- fingerprints ------------------------------------------------------------ */

static char *fingerprint(X509 *x, char *buf, size_t len) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (!x || len < SK_TLS_FINGERPRINT_LEN || !X509_digest(x, EVP_sha256(), md, &mdlen)) {
    if (len)
      buf[0] = '\0';
    return buf;
  }
  size_t used = (size_t)snprintf(buf, len, "sha256:");
  for (unsigned i = 0; i < mdlen && used + 3 <= len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%02x", md[i]);
  return buf;
}

/* Parses "sha256:HEX" (colons between bytes allowed, any case). */
static int parse_pin(const char *text, unsigned char *out) {
  if (strncasecmp(text, "sha256:", 7) != 0)
    return -1;
  const char *p = text + 7;
  int n = 0;
  while (*p) {
    if (*p == ':') {
      p++;
      continue;
    }
    unsigned v;
    if (n == PIN_MAX || sscanf(p, "%2x", &v) != 1 || !p[1] || p[1] == ':')
      return -1;
    out[n++] = (unsigned char)v;
    p += 2;
  }
  return n == PIN_MAX ? 0 : -1;
}

static int ssl_index = -1; /* ex_data slot: SSL -> sk_tls_t */
static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static void index_init(void) { ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/* Verification with a pin: the chain does not matter, only that the leaf
 * is exactly the pinned certificate. */
static int pin_verify(int ok, X509_STORE_CTX *store) {
  (void)ok;
  SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
  sk_tls_t *t = ssl ? SSL_get_ex_data(ssl, ssl_index) : NULL;
  if (!t || X509_STORE_CTX_get_error_depth(store) != 0)
    return 1;
  X509 *leaf = X509_STORE_CTX_get_current_cert(store);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  fingerprint(leaf, t->pin_seen, sizeof t->pin_seen);
  if (X509_digest(leaf, EVP_sha256(), md, &mdlen) && mdlen == PIN_MAX &&
      memcmp(md, t->ctx->pin, PIN_MAX) == 0) {
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
  }
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

/* ---- self-signed certificates ------------------------------------------------ */

static int mkdirs(const char *path) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
    return -ENAMETOOLONG;
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
      return sk__neg_errno();
    *p = '/';
  }
  if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
    return sk__neg_errno();
  return 0;
}

static int state_dir(const sk_tls_config_t *c, char *buf, size_t len) {
  const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
  int n;
  if (c->state_dir)
    n = snprintf(buf, len, "%s", c->state_dir);
  else if (xdg && *xdg)
    n = snprintf(buf, len, "%s/sockit", xdg);
  else if (home && *home)
    n = snprintf(buf, len, "%s/.local/state/sockit", home);
  else
    return -ENOENT;
  return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int add_ext(X509 *x, int nid, const char *value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  if (!e)
    return -1;
  int ok = X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  return ok ? 0 : -1;
}

/* Writes PEM produced by fn(f, obj) to path atomically with mode. */
static int write_pem(const char *path, mode_t mode, int (*fn)(FILE *, void *), void *obj) {
  char tmp[4200];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
    return -ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return sk__neg_errno();
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    unlink(tmp);
    return -ENOMEM;
  }
  int ok = fn(f, obj);
  if (fflush(f) != 0 || fsync(fileno(f)) != 0)
    ok = 0;
  fclose(f);
  if (!ok || rename(tmp, path) < 0) {
    unlink(tmp);
    return -EIO;
  }
  return 0;
}

static int pem_key(FILE *f, void *k) { return PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL); }
static int pem_cert(FILE *f, void *x) { return PEM_write_X509(f, x); }

/* Makes an ECDSA P-256 key and a certificate for this machine's names. */
static int generate(const char *keyp, const char *certp, char *err, size_t errlen) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  int rc = -EIO;
  char host[256] = "localhost", san[600];
  if (!key || !x)
    goto out;
  gethostname(host, sizeof host - 1);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);
  X509_set_version(x, 2);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400L * SELF_SIGNED_DAYS);
  X509_set_pubkey(x, key);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"sockit", -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1, -1, 0);
  X509_set_issuer_name(x, name);
  snprintf(san, sizeof san, "DNS:localhost,DNS:%s,IP:127.0.0.1,IP:::1", host);
  if (add_ext(x, NID_subject_alt_name, san) < 0 ||
      add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
      add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
      add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
      !X509_sign(x, key, EVP_sha256()))
    goto out;
  if ((rc = write_pem(keyp, 0600, pem_key, key)) < 0 ||
      (rc = write_pem(certp, 0644, pem_cert, x)) < 0)
    sk_err_set(rc, err, errlen, "write the self-signed certificate to %s", certp);
out:
  if (rc == -EIO && err && !err[0])
    snprintf(err, errlen, "cannot make a self-signed certificate");
  EVP_PKEY_free(key);
  X509_free(x);
  return rc;
}

/* Loads cert + key into ssl; the message in err names the file. */
static int load_pair(SSL_CTX *ssl, const char *cert, const char *key, char *err, size_t errlen) {
  if (SSL_CTX_use_certificate_chain_file(ssl, cert) != 1)
    return sk_err_set(SK_EBADINPUT, err, errlen, "certificate %s: cannot read a PEM certificate",
                      cert);
  if (SSL_CTX_use_PrivateKey_file(ssl, key ? key : cert, SSL_FILETYPE_PEM) != 1)
    return sk_err_set(SK_EBADINPUT, err, errlen, "key %s: cannot read a PEM private key",
                      key ? key : cert);
  if (SSL_CTX_check_private_key(ssl) != 1)
    return sk_err_set(SK_EBADINPUT, err, errlen, "key %s does not match certificate %s",
                      key ? key : cert, cert);
  return 0;
}

static int self_signed(sk_tls_ctx_t *ctx, const sk_tls_config_t *c, char *err, size_t errlen) {
  char dir[4096], keyp[4200], certp[4200];
  int r = state_dir(c, dir, sizeof dir);
  if (r == 0)
    r = mkdirs(dir);
  if (r < 0)
    return sk_err_set(r, err, errlen, "TLS state directory");
  snprintf(keyp, sizeof keyp, "%s/tls-key.pem", dir);
  snprintf(certp, sizeof certp, "%s/tls-cert.pem", dir);
  /* Reuse a kept certificate while it is valid for another day. */
  if (access(keyp, R_OK) == 0 && access(certp, R_OK) == 0 &&
      load_pair(ctx->ssl, certp, keyp, NULL, 0) == 0) {
    X509 *x = SSL_CTX_get0_certificate(ctx->ssl);
    time_t soon = time(NULL) + 86400;
    if (x && X509_cmp_time(X509_get0_notAfter(x), &soon) > 0)
      return 0;
  }
  if ((r = generate(keyp, certp, err, errlen)) < 0)
    return r;
  ctx->generated = 1;
  return load_pair(ctx->ssl, certp, keyp, err, errlen);
}

/* ---- contexts ------------------------------------------------------------------- */

int sk_tls_ctx_new(sk_tls_ctx_t **out, int server, const sk_tls_config_t *c, char *err,
                   size_t errlen) {
  pthread_once(&index_once, index_init);
  sk_tls_ctx_t *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return -ENOMEM;
  int r = 0;
  ctx->server = server;
  ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx->ssl) {
    free(ctx);
    return sk_err_set(-ENOMEM, err, errlen, "TLS");
  }
  SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* A peer that closes without close_notify ends the stream like a FIN:
   * what netcat-style byte streams do. Renegotiation is refused. */
  SSL_CTX_set_options(ctx->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  if (server) {
    if (c->cert_file)
      r = load_pair(ctx->ssl, c->cert_file, c->key_file, err, errlen);
    else if (c->self_signed)
      r = self_signed(ctx, c, err, errlen);
    else
      r = sk_err_set(-EINVAL, err, errlen,
                     "a TLS server needs --cert FILE --key FILE, or --self-signed");
    if (r == 0 && c->client_ca) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->client_ca);
      if (!names || SSL_CTX_load_verify_locations(ctx->ssl, c->client_ca, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        r = sk_err_set(SK_EBADINPUT, err, errlen, "client CA %s: cannot read PEM certificates",
                       c->client_ca);
      }
      else {
        SSL_CTX_set_client_CA_list(ctx->ssl, names);
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
      }
    }
  } else {
    if (c->pin) {
      if (parse_pin(c->pin, ctx->pin) < 0)
        r = sk_err_set(-EINVAL, err, errlen,
                       "bad pin '%.80s': expected sha256: and 64 hex digits", c->pin);
      ctx->pinned = 1;
      SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, pin_verify);
    } else if (c->insecure) {
      ctx->insecure = 1;
      SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
    } else {
      SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
      if (c->ca_file ? SSL_CTX_load_verify_locations(ctx->ssl, c->ca_file, NULL) != 1
                     : SSL_CTX_set_default_verify_paths(ctx->ssl) != 1)
        r = sk_err_set(SK_EBADINPUT, err, errlen, "CA file %s: cannot read PEM certificates",
                       c->ca_file ? c->ca_file : "(system)");
    }
    if (r == 0 && c->cert_file)
      r = load_pair(ctx->ssl, c->cert_file, c->key_file, err, errlen);
  }
  if (r < 0) {
    sk_tls_ctx_free(ctx);
    ERR_clear_error();
    return r;
  }
  *out = ctx;
  return 0;
}

void sk_tls_ctx_free(sk_tls_ctx_t *ctx) {
  if (!ctx)
    return;
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

char *sk_tls_ctx_fingerprint(const sk_tls_ctx_t *ctx, char *buf, size_t len) {
  return fingerprint(SSL_CTX_get0_certificate(ctx->ssl), buf, len);
}

int sk_tls_ctx_generated(const sk_tls_ctx_t *ctx) { return ctx->generated; }

int sk__tls_ctx_is_server(const sk_tls_ctx_t *ctx) { return ctx->server; }

/* ---- sessions --------------------------------------------------------------------- */

/* OpenSSL's socket BIO writes with write(), which raises SIGPIPE on a
 * closed connection; libsockit promises no SIGPIPE anywhere. This BIO is
 * the socket BIO with writes done by send(MSG_NOSIGNAL). */
static BIO_METHOD *nosig_method;

static int nosig_write(BIO *b, const char *data, int len) {
  int fd = -1;
  BIO_get_fd(b, &fd);
  ssize_t n;
  do
    n = send(fd, data, (size_t)len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  BIO_clear_retry_flags(b);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    BIO_set_retry_write(b);
  return (int)n;
}

static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

/* Makes the method once per process (workers start sessions at once). */
static void nosig_init(void) {
  const BIO_METHOD *sock = BIO_s_socket();
  BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "sockit socket");
  if (!m)
    return;
  BIO_meth_set_write(m, nosig_write);
  BIO_meth_set_read(m, BIO_meth_get_read(sock));
  BIO_meth_set_puts(m, BIO_meth_get_puts(sock));
  BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock));
  BIO_meth_set_create(m, BIO_meth_get_create(sock));
  BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock));
  nosig_method = m;
}

static BIO *nosig_bio(int fd) {
  pthread_once(&nosig_once, nosig_init);
  if (!nosig_method)
    return NULL;
  BIO *b = BIO_new(nosig_method);
  if (b)
    BIO_set_fd(b, fd, BIO_NOCLOSE);
  return b;
}

int sk_tls_new(sk_tls_t **out, sk_tls_ctx_t *ctx, int fd, const char *peer_name) {
  sk_tls_t *t = calloc(1, sizeof *t);
  if (!t)
    return -ENOMEM;
  t->ctx = ctx;
  t->ssl = SSL_new(ctx->ssl);
  BIO *bio = t->ssl ? nosig_bio(fd) : NULL;
  if (!bio) {
    sk_tls_free(t);
    return -ENOMEM;
  }
  SSL_set_bio(t->ssl, bio, bio);
  SSL_set_ex_data(t->ssl, ssl_index, t);
  if (ctx->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (peer_name && *peer_name) {
      snprintf(t->peer_name, sizeof t->peer_name, "%s", peer_name);
      unsigned char ip[16];
      int is_ip = inet_pton(AF_INET, peer_name, ip) == 1 || inet_pton(AF_INET6, peer_name, ip) == 1;
      if (!is_ip)
        SSL_set_tlsext_host_name(t->ssl, peer_name); /* SNI is for names only */
      if (!ctx->pinned && !ctx->insecure) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (is_ip)
          X509_VERIFY_PARAM_set1_ip_asc(vp, peer_name);
        else
          SSL_set1_host(t->ssl, peer_name);
      }
    }
  }
  *out = t;
  return 0;
}

void sk_tls_free(sk_tls_t *t) {
  if (!t)
    return;
  SSL_free(t->ssl);
  free(t);
}

/* Turns a failed handshake into a sentence: the certificate's problem when
 * verification failed, else the TLS error. */
static int handshake_error(sk_tls_t *t, int ssl_err, int saved_errno, char *err, size_t errlen) {
  long v = SSL_get_verify_result(t->ssl);
  unsigned long e = ERR_peek_error();
  int reason = ERR_GET_REASON(e);
  char msg[SK_ERRLEN];
  if (!t->ctx->server && !t->ctx->insecure && v != X509_V_OK) {
    switch (v) {
    case X509_V_ERR_APPLICATION_VERIFICATION:
      snprintf(msg, sizeof msg,
               "fingerprint mismatch: the server presented %s, which is not the pinned one",
               t->pin_seen[0] ? t->pin_seen : "(no certificate)");
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      snprintf(msg, sizeof msg, "certificate has expired");
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      snprintf(msg, sizeof msg, "certificate is not valid yet (check the clocks)");
      break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      snprintf(msg, sizeof msg, "wrong host name: the certificate is not for %.200s", t->peer_name);
      break;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      snprintf(msg, sizeof msg,
               "unknown issuer: the certificate is not signed by a trusted CA (give the CA with "
               "--ca FILE, or trust this one certificate with --pin)");
      break;
    default:
      snprintf(msg, sizeof msg, "certificate rejected: %s", X509_verify_cert_error_string(v));
    }
  } else if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_WRONG_VERSION_NUMBER ||
             reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION || reason == SSL_R_NO_PROTOCOLS_AVAILABLE) {
    snprintf(msg, sizeof msg,
             "protocol version: the peer does not speak TLS 1.2 or later (or not TLS at all)");
  } else if (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST) {
    snprintf(msg, sizeof msg, "plain HTTP on a TLS port: the client should use https://");
  } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ||
             reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) {
    snprintf(msg, sizeof msg, "the peer did not present a client certificate, which is required");
  } else if (e) {
    char text[160];
    ERR_error_string_n(e, text, sizeof text);
    const char *r = ERR_reason_error_string(e);
    snprintf(msg, sizeof msg, "%s", r ? r : text);
  } else if (ssl_err == SSL_ERROR_SYSCALL && saved_errno) {
    snprintf(msg, sizeof msg, "%s", strerror(saved_errno));
  } else {
    snprintf(msg, sizeof msg, "the connection closed during the handshake");
  }
  ERR_clear_error();
  snprintf(t->last_error, sizeof t->last_error, "%s", msg);
  if (err && errlen)
    snprintf(err, errlen, "%s", msg);
  return SK_EBADINPUT;
}

int sk_tls_handshake(sk_tls_t *t, unsigned *want, char *err, size_t errlen) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(t->ssl);
  if (r == 1)
    return 0;
  int saved = errno;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    *want = e == SSL_ERROR_WANT_READ ? SK_READABLE : SK_WRITABLE;
    return SK_EAGAIN;
  }
  return handshake_error(t, e, saved, err, errlen);
}

/* Maps an SSL_read/SSL_write failure. */
static ssize_t io_error(sk_tls_t *t, int ret, unsigned *want) {
  int saved = errno;
  int e = SSL_get_error(t->ssl, ret);
  switch (e) {
  case SSL_ERROR_WANT_READ: *want = SK_READABLE; return SK_EAGAIN;
  case SSL_ERROR_WANT_WRITE: *want = SK_WRITABLE; return SK_EAGAIN;
  case SSL_ERROR_ZERO_RETURN: return SK_EOF;
  case SSL_ERROR_SYSCALL:
    ERR_clear_error();
    if (saved == 0)
      return SK_EOF;
    snprintf(t->last_error, sizeof t->last_error, "%s", strerror(saved));
    return -saved;
  default: {
    unsigned long err = ERR_get_error();
    const char *r = ERR_reason_error_string(err);
    snprintf(t->last_error, sizeof t->last_error, "TLS: %s", r ? r : "protocol error");
    ERR_clear_error();
    return -EPROTO;
  }
  }
}

ssize_t sk_tls_read(sk_tls_t *t, void *buf, size_t len, unsigned *want) {
  size_t got = 0;
  ERR_clear_error();
  errno = 0;
  int r = SSL_read_ex(t->ssl, buf, len, &got);
  if (r == 1)
    return (ssize_t)got;
  return io_error(t, r, want);
}

ssize_t sk_tls_write(sk_tls_t *t, const void *buf, size_t len, unsigned *want) {
  size_t done = 0;
  ERR_clear_error();
  errno = 0;
  int r = SSL_write_ex(t->ssl, buf, len, &done);
  if (r == 1)
    return (ssize_t)done;
  return io_error(t, r, want);
}

size_t sk_tls_pending(const sk_tls_t *t) { return (size_t)SSL_pending(t->ssl); }

void sk__tls_release_buffers(sk_tls_t *t) { SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS); }

void sk_tls_close_notify(sk_tls_t *t) {
  ERR_clear_error();
  if (SSL_shutdown(t->ssl) < 0)
    ERR_clear_error();
}

const char *sk_tls_last_error(const sk_tls_t *t) { return t->last_error; }

char *sk_tls_describe(const sk_tls_t *t, char *buf, size_t len) {
  snprintf(buf, len, "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
  return buf;
}

char *sk_tls_peer_fingerprint(const sk_tls_t *t, char *buf, size_t len) {
  X509 *x = SSL_get1_peer_certificate(t->ssl);
  fingerprint(x, buf, len);
  X509_free(x);
  return buf;
}

/* ---- handshakes on a loop, or blocking --------------------------------------------- */

struct sk_tls_hs {
  sk_loop_t *loop;
  sk_tls_t *tls;
  sk_io_t io;
  sk_timer_t timer;
  sk_tls_hs_cb done;
  void *data;
  int finished, err;
  char msg[SK_ERRLEN];
};

static void hs_free(sk_loop_t *loop, void *p) {
  (void)loop;
  free(p);
}

static void hs_finish(sk_tls_hs_t *hs, int err) {
  hs->finished = 1;
  sk_io_stop(hs->loop, &hs->io);
  sk_timer_stop(hs->loop, &hs->timer);
  hs->done(hs->data, err, hs->msg);
  if (sk_loop_defer(hs->loop, hs_free, hs) < 0)
    free(hs);
}

static void hs_step(sk_tls_hs_t *hs) {
  unsigned want = 0;
  int r = sk_tls_handshake(hs->tls, &want, hs->msg, sizeof hs->msg);
  if (r == SK_EAGAIN) {
    sk_io_set(hs->loop, &hs->io, want);
    return;
  }
  hs_finish(hs, r);
}

static void hs_io(sk_loop_t *loop, sk_io_t *io, unsigned ev) {
  (void)loop;
  (void)ev;
  hs_step(io->data);
}

static void hs_timeout(sk_loop_t *loop, sk_timer_t *t) {
  sk_tls_hs_t *hs = t->data;
  (void)loop;
  snprintf(hs->msg, sizeof hs->msg, "TLS handshake timed out");
  hs_finish(hs, SK_ETIMEDOUT);
}

static void hs_first(sk_loop_t *loop, void *data) {
  sk_tls_hs_t *hs = data;
  (void)loop;
  if (!hs->finished)
    hs_step(hs);
}

sk_tls_hs_t *sk_tls_handshake_async(sk_loop_t *loop, sk_tls_t *t, int fd, uint64_t timeout_ms,
                                    sk_tls_hs_cb done, void *data) {
  sk_tls_hs_t *hs = calloc(1, sizeof *hs);
  if (!hs)
    return NULL;
  hs->loop = loop;
  hs->tls = t;
  hs->done = done;
  hs->data = data;
  hs->io.cb = hs_io;
  hs->io.data = hs;
  sk_timer_init(&hs->timer, hs_timeout, hs);
  if (sk_io_start(loop, &hs->io, fd, 0) < 0 ||
      sk_timer_start(loop, &hs->timer, timeout_ms ? timeout_ms : SK_TLS_HANDSHAKE_TIMEOUT_MS,
                     0) < 0 ||
      sk_loop_defer(loop, hs_first, hs) < 0) {
    sk_io_stop(loop, &hs->io);
    sk_timer_stop(loop, &hs->timer);
    free(hs);
    return NULL;
  }
  return hs;
}

void sk_tls_handshake_cancel(sk_tls_hs_t *hs) {
  if (!hs || hs->finished)
    return;
  hs->finished = 1;
  sk_io_stop(hs->loop, &hs->io);
  sk_timer_stop(hs->loop, &hs->timer);
  if (sk_loop_defer(hs->loop, hs_free, hs) < 0)
    free(hs);
}

int sk_tls_handshake_wait(sk_tls_t *t, int fd, uint64_t timeout_ms, char *err, size_t errlen) {
  uint64_t deadline = sk__now_ms() + (timeout_ms ? timeout_ms : SK_TLS_HANDSHAKE_TIMEOUT_MS);
  for (;;) {
    unsigned want = 0;
    int r = sk_tls_handshake(t, &want, err, errlen);
    if (r != SK_EAGAIN)
      return r;
    uint64_t now = sk__now_ms();
    if (now >= deadline)
      return sk_err_set(SK_ETIMEDOUT, err, errlen, "TLS handshake");
    struct pollfd p = {.fd = fd, .events = want == SK_READABLE ? POLLIN : POLLOUT};
    if (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR)
      return sk_err_set(sk__neg_errno(), err, errlen, "TLS handshake");
  }
}
