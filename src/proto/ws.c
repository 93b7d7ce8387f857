/* ws.c - the WebSocket protocol, RFC 6455 (include/sockit/ws.h): the
 * opening handshake's checks, UTF-8 validation, and the frame decoder and
 * encoder. Pure code over the caller's bytes: no I/O, no allocation of our
 * own (the handshake's SHA-1 is libcrypto's).
 *
 * The decoder judges a frame as its bytes arrive: the first byte's flags
 * and opcode, then the mask bit and length, then the size limit, all before
 * the payload is there. Every check looks only at bytes already read, in a
 * fixed order, so however a stream is split into reads the decoder gives
 * the same frames and the same error, and a hostile length never makes the
 * caller buffer a payload that will be refused anyway. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/sha.h>

#include "sockit/ws.h"

/* ---- base64 and the handshake ------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The value of a base64 digit, or -1. */
static int b64_value(char c) {
  const char *p = c ? strchr(b64, c) : NULL;
  return p ? (int)(p - b64) : -1;
}

/* Writes the padded base64 form of in[0..n) and a NUL to out (4 * ((n + 2)
 * / 3) + 1 bytes). */
static void b64_encode(const uint8_t *in, size_t n, char *out) {
  for (; n >= 3; in += 3, n -= 3) {
    uint32_t v = (uint32_t)in[0] << 16 | (uint32_t)in[1] << 8 | in[2];
    *out++ = b64[v >> 18];
    *out++ = b64[v >> 12 & 63];
    *out++ = b64[v >> 6 & 63];
    *out++ = b64[v & 63];
  }
  if (n) {
    uint32_t v = (uint32_t)in[0] << 16 | (n == 2 ? (uint32_t)in[1] << 8 : 0);
    *out++ = b64[v >> 18];
    *out++ = b64[v >> 12 & 63];
    *out++ = n == 2 ? b64[v >> 6 & 63] : '=';
    *out++ = '=';
  }
  *out = '\0';
}

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 section 1.3 */
#define KEY_LEN 24                                     /* base64 of 16 bytes */

int sk_ws_accept_key(const char *key, size_t len, char accept[SK_WS_ACCEPT_LEN + 1]) {
  accept[0] = '\0';
  /* 16 bytes are 22 digits and "==". The last digit holds 2 bits of the
   * key and 4 padding bits, which must be zero: only the one canonical
   * spelling of each key is base64 of 16 bytes. */
  if (len != KEY_LEN || key[22] != '=' || key[23] != '=')
    return SK_EBADINPUT;
  for (size_t i = 0; i < 22; i++)
    if (b64_value(key[i]) < 0)
      return SK_EBADINPUT;
  if (b64_value(key[21]) & 15)
    return SK_EBADINPUT;
  unsigned char text[KEY_LEN + sizeof WS_GUID - 1], digest[SHA_DIGEST_LENGTH];
  memcpy(text, key, KEY_LEN);
  memcpy(text + KEY_LEN, WS_GUID, sizeof WS_GUID - 1);
  if (!SHA1(text, sizeof text, digest))
    return -ENOMEM; /* libcrypto could not fetch or run SHA-1 */
  b64_encode(digest, sizeof digest, accept);
  return 0;
}

/* 1 if any field named name holds token (a list may span several fields). */
static int any_has_token(const sk_http_request_t *req, const char *name, const char *token) {
  for (size_t i = 0; i < req->nheaders; i++) {
    const sk_http_header_t *h = &req->headers[i];
    if (sk_http_name_eq(h->name, h->name_len, name) &&
        sk_http_has_token(h->value, h->value_len, token))
      return 1;
  }
  return 0;
}

/* Sets *why (when asked) and returns status. */
static int refuse(int status, const char **why, const char *reason) {
  if (why)
    *why = reason;
  return status;
}

int sk_ws_check_upgrade(const sk_http_request_t *req, char accept[SK_WS_ACCEPT_LEN + 1],
                        const char **why) {
  size_t n;
  accept[0] = '\0';
  /* Methods are case-sensitive (RFC 9110 section 9.1). */
  if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
    return refuse(400, why, "method is not GET");
  if (req->minor_version != 1)
    return refuse(400, why, "not HTTP/1.1");
  sk_http_header_find(req, "Host", &n);
  if (n != 1)
    return refuse(400, why, n ? "more than one Host" : "no Host");
  if (!any_has_token(req, "Upgrade", "websocket"))
    return refuse(400, why, "no \"Upgrade: websocket\"");
  if (!any_has_token(req, "Connection", "upgrade"))
    return refuse(400, why, "no \"Connection: upgrade\"");
  /* The version comes before the key: a client of another version is
   * told which one we speak (RFC 6455 section 4.4), whatever its key. */
  const sk_http_header_t *h = sk_http_header_find(req, "Sec-WebSocket-Version", &n);
  if (n != 1 || h->value_len != 2 || memcmp(h->value, "13", 2) != 0)
    return refuse(426, why, n ? "Sec-WebSocket-Version is not 13" : "no Sec-WebSocket-Version");
  h = sk_http_header_find(req, "Sec-WebSocket-Key", &n);
  if (n != 1)
    return refuse(400, why, n ? "more than one Sec-WebSocket-Key" : "no Sec-WebSocket-Key");
  int rc = sk_ws_accept_key(h->value, h->value_len, accept);
  if (rc == SK_EBADINPUT)
    return refuse(400, why, "Sec-WebSocket-Key is not base64 of 16 bytes");
  if (rc < 0)
    return refuse(500, why, "SHA-1 failed (libcrypto)");
  return refuse(101, why, "");
}

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_hex(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

int sk_ws_origin_host(const char *value, size_t len, const char **host, size_t *host_len) {
  /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1) */
  size_t i = 0;
  if (len == 0 || !is_alpha(value[0]))
    return SK_EBADINPUT; /* "null" (an opaque origin) ends up here too */
  while (i < len && (is_alpha(value[i]) || is_digit(value[i]) || value[i] == '+' ||
                     value[i] == '-' || value[i] == '.'))
    i++;
  if (len - i < 3 || memcmp(value + i, "://", 3) != 0)
    return SK_EBADINPUT;
  i += 3;
  size_t start = i;
  /* host: an IP literal in brackets, or a name / IPv4 address; no user
   * info, path, query or spaces: an Origin is only scheme://host[:port]. */
  if (i < len && value[i] == '[') {
    i++;
    while (i < len && (is_hex(value[i]) || value[i] == ':' || value[i] == '.'))
      i++;
    if (i == len || value[i] != ']' || i == start + 1)
      return SK_EBADINPUT;
    i++;
  } else {
    while (i < len && (is_alpha(value[i]) || is_digit(value[i]) || value[i] == '-' ||
                       value[i] == '.' || value[i] == '_' || value[i] == '~'))
      i++;
    if (i == start)
      return SK_EBADINPUT;
  }
  if (i < len && value[i] == ':') {
    size_t port = ++i;
    while (i < len && is_digit(value[i]))
      i++;
    if (i == port || i - port > 5)
      return SK_EBADINPUT;
  }
  if (i != len)
    return SK_EBADINPUT;
  *host = value + start;
  *host_len = len - start;
  return 0;
}

/* ---- UTF-8 ---------------------------------------------------------------------- */

/* Inside a character the state packs what is still to come: the number of
 * continuation bytes missing (bits 16 and up, 1 to 3, so the state is
 * never ACCEPT or REJECT) and the range the next one must lie in (bits
 * 8-15 and 0-7). The lead byte narrows the first continuation's range;
 * that is what rules out overlong forms (E0 80..9F, F0 80..8F),
 * surrogates (ED A0..BF) and code points past U+10FFFF (F4 90..BF). */
#define UTF8_STATE(missing, lo, hi) ((uint32_t)(missing) << 16 | (uint32_t)(lo) << 8 | (hi))

static uint32_t utf8_lead(unsigned b) {
  if (b < 0x80)
    return SK_UTF8_ACCEPT;
  if (b >= 0xC2 && b <= 0xDF)
    return UTF8_STATE(1, 0x80, 0xBF);
  if (b >= 0xE0 && b <= 0xEF)
    return UTF8_STATE(2, b == 0xE0 ? 0xA0 : 0x80, b == 0xED ? 0x9F : 0xBF);
  if (b >= 0xF0 && b <= 0xF4)
    return UTF8_STATE(3, b == 0xF0 ? 0x90 : 0x80, b == 0xF4 ? 0x8F : 0xBF);
  return SK_UTF8_REJECT; /* a continuation byte, C0, C1 or F5..FF */
}

uint32_t sk_utf8_validate(uint32_t state, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n && state != SK_UTF8_REJECT) {
    if (state == SK_UTF8_ACCEPT) {
      /* Text is mostly ASCII: skip it eight bytes at a time. */
      while (n - i >= 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080u)
          break;
        i += 8;
      }
      if (i == n)
        break;
      state = utf8_lead(p[i++]);
      continue;
    }
    unsigned b = p[i++];
    if (b < (state >> 8 & 0xFF) || b > (state & 0xFF))
      return SK_UTF8_REJECT;
    uint32_t missing = (state >> 16) - 1;
    state = missing ? UTF8_STATE(missing, 0x80, 0xBF) : SK_UTF8_ACCEPT;
  }
  return state;
}

/* ---- decoding ---------------------------------------------------------------------- */

static int is_control(unsigned opcode) { return (opcode & 0x8) != 0; }

static int known_opcode(unsigned op) {
  return op <= SK_WS_OP_BINARY || (op >= SK_WS_OP_CLOSE && op <= SK_WS_OP_PONG);
}

void sk_ws_decoder_init(sk_ws_decoder_t *d, int server, uint64_t max_message) {
  memset(d, 0, sizeof *d);
  d->server = server != 0;
  d->max_message = max_message;
  d->utf8 = SK_UTF8_ACCEPT;
}

int sk_ws_close_code_valid(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

long sk_ws_decode(sk_ws_decoder_t *d, uint8_t *data, size_t len, sk_ws_event_t *ev,
                  uint64_t *need) {
  if (need)
    *need = 0;
  if (len < 1)
    return 0;
  /* The first byte: flags and opcode. */
  int fin = data[0] >> 7;
  unsigned op = data[0] & 0x0F;
  if (data[0] & 0x70)
    return -SK_WS_CLOSE_PROTOCOL; /* RSV1-3: no extension was negotiated */
  if (!known_opcode(op))
    return -SK_WS_CLOSE_PROTOCOL;
  if (is_control(op) && !fin)
    return -SK_WS_CLOSE_PROTOCOL;
  if (op == SK_WS_OP_CONT && !d->in_message)
    return -SK_WS_CLOSE_PROTOCOL; /* nothing to continue */
  if ((op == SK_WS_OP_TEXT || op == SK_WS_OP_BINARY) && d->in_message)
    return -SK_WS_CLOSE_PROTOCOL; /* messages do not nest; only control frames interleave */
  if (len < 2)
    return 0;
  /* The second byte: the mask bit and the 7-bit length. */
  int masked = data[1] >> 7;
  unsigned len7 = data[1] & 0x7F;
  if (masked != (d->server != 0))
    return -SK_WS_CLOSE_PROTOCOL; /* clients mask, servers do not (RFC 6455 5.1) */
  size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  size_t hdr = 2 + ext + (masked ? 4 : 0);
  if (len < 2 + ext)
    return 0;
  uint64_t plen = len7;
  if (ext) {
    plen = 0;
    for (size_t i = 0; i < ext; i++)
      plen = plen << 8 | data[2 + i];
    if (plen >> 63)
      return -SK_WS_CLOSE_PROTOCOL;
  }
  /* The real length, not its form, is what counts: 125 written in 16
   * bits is a short control frame. */
  if (is_control(op) && plen > SK_WS_CONTROL_MAX)
    return -SK_WS_CLOSE_PROTOCOL;
  if (op == SK_WS_OP_CLOSE && plen == 1)
    return -SK_WS_CLOSE_PROTOCOL; /* a code is two bytes */
  /* The message limit, from the header alone, written so that no sum can
   * wrap. A frame whose size a long cannot hold is too big for any
   * caller's buffer as well. */
  uint64_t before = op == SK_WS_OP_CONT ? d->msg_len : 0;
  if (!is_control(op) && d->max_message &&
      (before > d->max_message || plen > d->max_message - before))
    return -SK_WS_CLOSE_TOO_BIG;
  if (plen > (uint64_t)LONG_MAX - hdr)
    return -SK_WS_CLOSE_TOO_BIG;
  if (len < hdr)
    return 0;
  uint64_t total = hdr + plen;
  if (need)
    *need = total;
  if (len < total)
    return 0;

  /* The whole frame is here. */
  uint8_t *payload = data + hdr;
  size_t n = (size_t)plen;
  if (masked)
    sk_ws_mask(payload, n, data + hdr - 4, 0);
  memset(ev, 0, sizeof *ev);
  ev->opcode = op;
  ev->fin = 1;
  ev->payload = payload;
  ev->len = n;
  switch (op) {
  case SK_WS_OP_PING:
    ev->kind = SK_WS_EV_PING;
    break;
  case SK_WS_OP_PONG:
    ev->kind = SK_WS_EV_PONG;
    break;
  case SK_WS_OP_CLOSE:
    ev->kind = SK_WS_EV_CLOSE;
    ev->close_code = SK_WS_CLOSE_NO_STATUS;
    ev->reason = (const char *)payload + n;
    if (n == 0)
      break;
    ev->close_code = (unsigned)payload[0] << 8 | payload[1];
    if (!sk_ws_close_code_valid(ev->close_code))
      return -SK_WS_CLOSE_PROTOCOL;
    ev->reason = (const char *)payload + 2;
    ev->reason_len = n - 2;
    if (sk_utf8_validate(SK_UTF8_ACCEPT, payload + 2, n - 2) != SK_UTF8_ACCEPT)
      return -SK_WS_CLOSE_INVALID_DATA;
    break;
  default: { /* TEXT, BINARY, CONT */
    unsigned msg_op = op == SK_WS_OP_CONT ? d->msg_opcode : op;
    uint32_t utf8 = op == SK_WS_OP_CONT ? d->utf8 : SK_UTF8_ACCEPT;
    /* A text message is checked frame by frame, so invalid text is
     * refused in the fragment that holds it, not at the message's end. */
    if (msg_op == SK_WS_OP_TEXT) {
      utf8 = sk_utf8_validate(utf8, payload, n);
      if (utf8 == SK_UTF8_REJECT || (fin && utf8 != SK_UTF8_ACCEPT))
        return -SK_WS_CLOSE_INVALID_DATA;
    }
    ev->kind = SK_WS_EV_DATA;
    ev->opcode = msg_op;
    ev->fin = fin;
    d->in_message = !fin;
    d->msg_opcode = fin ? 0 : msg_op;
    d->msg_len = fin ? 0 : before + plen;
    d->utf8 = fin ? SK_UTF8_ACCEPT : utf8;
    break;
  }
  }
  return (long)total;
}

/* ---- encoding ----------------------------------------------------------------------- */

size_t sk_ws_header(uint8_t *out, unsigned opcode, int fin, uint64_t len, const uint8_t *mask) {
  size_t n = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
  out[1] = mask ? 0x80 : 0;
  if (len < 126) {
    out[1] |= (uint8_t)len;
  } else if (len <= 0xFFFF) {
    out[1] |= 126;
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
  } else {
    out[1] |= 127;
    for (int shift = 56; shift >= 0; shift -= 8)
      out[n++] = (uint8_t)(len >> shift);
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

void sk_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset) {
  /* The key turned so that data[0] meets the key byte of its offset, then
   * repeated to eight bytes: whole words are masked with one XOR. */
  uint8_t key[8];
  for (size_t i = 0; i < 8; i++)
    key[i] = mask[(offset + i) & 3];
  uint64_t k8, w;
  memcpy(&k8, key, 8);
  size_t i = 0;
  for (; len - i >= 8; i += 8) {
    memcpy(&w, data + i, 8);
    w ^= k8;
    memcpy(data + i, &w, 8);
  }
  for (; i < len; i++)
    data[i] ^= key[i & 7];
}

size_t sk_ws_close_payload(uint8_t *out, unsigned code, const char *reason, size_t len) {
  if (code == SK_WS_CLOSE_NO_STATUS)
    return 0;
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  /* The longest prefix of the reason that fits and ends at the end of a
   * valid character: the peer refuses a reason that is not UTF-8. */
  const uint8_t *r = (const uint8_t *)reason;
  size_t max = len < SK_WS_CONTROL_MAX - 2 ? len : SK_WS_CONTROL_MAX - 2, keep = 0;
  uint32_t state = SK_UTF8_ACCEPT;
  for (size_t i = 0; i < max && state != SK_UTF8_REJECT; i++) {
    state = sk_utf8_validate(state, r + i, 1);
    if (state == SK_UTF8_ACCEPT)
      keep = i + 1;
  }
  if (keep)
    memcpy(out + 2, r, keep);
  return 2 + keep;
}
