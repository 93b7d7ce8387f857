/* xfer.c - the SKXF/1 frame codec (include/sockit/xfer.h). Pure code:
 * bytes in, a parsed message out; no I/O, no allocation.
 *
 * The parser validates what it has as it arrives: the type byte at once,
 * the length from whatever of its four bytes are there (a length that can
 * only end up out of range is refused before the rest of it arrives), and
 * each payload field as soon as all of its bytes are in. So a hostile peer
 * never makes a receiver wait for, or buffer, a frame that cannot be good. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sockit/xfer.h"

/* ---- byte order -------------------------------------------------------------------- */

/* Big-endian loads and stores; the put* return the byte after. */
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static uint8_t *put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
  return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
  return p + 4;
}

static uint8_t *put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  return put32(p + 4, (uint32_t)v);
}

/* ---- per-type payload sizes -------------------------------------------------------- */

#define HELLO_LEN 8
#define HELLO_KEY_LEN (HELLO_LEN + SK_XFER_KEY_LEN) /* a version 1 sender's HELLO with a key */
#define HELLO_LEN_MAX 64 /* later versions may say more; version 1 says 8, or 40 with a key */
#define MANIFEST_LEN 16
#define WANT_LEN (4 + 1 + 8 + SK_XFER_HASH_LEN)
#define FILE_LEN (4 + 1 + 8)
#define END_LEN (4 + 1 + SK_XFER_HASH_LEN)
#define RESULT_FIXED 5
#define ERROR_FIXED 2
#define NSEC_PER_SEC 1000000000u

const char *sk_xfer_type_name(int type) {
  static const char *const names[] = {"?",      "HELLO",    "MANIFEST", "ENTRY",
                                      "ACCEPT", "WANT",     "FILE",     "FILE_END",
                                      "RESULT", "DONE",     "ERROR",    "KEEPALIVE"};
  return type >= 1 && type <= SK_XFER_TYPE_LAST ? names[type] : "?";
}

/* Smallest and largest payload length a frame of this type may have. */
static void length_range(int type, uint32_t *lo, uint32_t *hi) {
  switch (type) {
  case SK_XFER_HELLO: *lo = HELLO_LEN; *hi = HELLO_LEN_MAX; break;
  case SK_XFER_MANIFEST: *lo = *hi = MANIFEST_LEN; break;
  case SK_XFER_ENTRY: *lo = SK_XFER_ENTRY_FIXED + 1; *hi = SK_XFER_ENTRY_FIXED + SK_XFER_PATH_MAX; break;
  case SK_XFER_WANT: *lo = *hi = WANT_LEN; break;
  case SK_XFER_FILE: *lo = *hi = FILE_LEN; break;
  case SK_XFER_FILE_END: *lo = *hi = END_LEN; break;
  case SK_XFER_RESULT: *lo = RESULT_FIXED; *hi = RESULT_FIXED + SK_XFER_TEXT_MAX; break;
  case SK_XFER_ERROR: *lo = ERROR_FIXED + 1; *hi = ERROR_FIXED + SK_XFER_TEXT_MAX; break;
  default: *lo = *hi = 0; break; /* ACCEPT, DONE, KEEPALIVE */
  }
}

static long bad(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats the reason into why (when given) and returns SK_EBADINPUT. */
static long bad(char *why, size_t whylen, const char *fmt, ...) {
  if (why && whylen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
  }
  return SK_EBADINPUT;
}

/* 1 if the n bytes at p are all zero. */
static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

/* Checks the payload fields of a frame of `type` that lie wholly inside
 * the first `have` bytes of payload p (plen is the declared length).
 * Returns 0 or SK_EBADINPUT with why filled. */
static long check_fields(int type, const uint8_t *p, size_t have, uint32_t plen, char *why,
                         size_t whylen) {
  const char *t = sk_xfer_type_name(type);
  switch (type) {
  case SK_XFER_HELLO:
    for (size_t i = 0; i < 4 && i < have; i++)
      if (p[i] != (uint8_t)SK_XFER_MAGIC[i])
        return bad(why, whylen, "%s: bad magic byte %zu (not a sockit send/receive peer)", t, i);
    if (have >= 6 && get16(p + 4) == SK_XFER_VERSION && plen != HELLO_LEN && plen != HELLO_KEY_LEN)
      return bad(why, whylen, "%s: version 1 payload must be 8 bytes (40 with a key), not %u", t,
                 (unsigned)plen);
    if (have >= 7 && p[6] != SK_XFER_ROLE_SENDER && p[6] != SK_XFER_ROLE_RECEIVER)
      return bad(why, whylen, "%s: bad role %u", t, p[6]);
    if (have >= 8 && (p[7] & ~SK_XFER_HELLO_KEY) != 0)
      return bad(why, whylen, "%s: reserved flag bits in %u, not 0", t, p[7]);
    if (have >= 8 && p[7] == SK_XFER_HELLO_KEY && p[6] != SK_XFER_ROLE_SENDER)
      return bad(why, whylen, "%s: only a sender sends a key", t);
    if (have >= 8 && get16(p + 4) == SK_XFER_VERSION &&
        (p[7] == SK_XFER_HELLO_KEY) != (plen == HELLO_KEY_LEN))
      return bad(why, whylen, "%s: flags %u with a %u-byte payload", t, p[7], (unsigned)plen);
    return 0;
  case SK_XFER_MANIFEST:
    if (have >= 4 && (get32(p) == 0 || get32(p) > SK_XFER_COUNT_MAX))
      return bad(why, whylen, "%s: entry count %u out of range 1-%u", t, (unsigned)get32(p),
                 (unsigned)SK_XFER_COUNT_MAX);
    if (have >= 16) {
      uint32_t names = get32(p + 12);
      if (names > SK_XFER_NAMES_MAX)
        return bad(why, whylen, "%s: %u bytes of names is over the limit", t, (unsigned)names);
      if (names < get32(p) || (uint64_t)names > (uint64_t)get32(p) * SK_XFER_PATH_MAX)
        return bad(why, whylen, "%s: %u bytes of names do not fit %u names", t, (unsigned)names,
                   (unsigned)get32(p));
    }
    return 0;
  case SK_XFER_ENTRY:
    if (have >= 1 && p[0] != SK_XFER_KIND_FILE && p[0] != SK_XFER_KIND_DIR)
      return bad(why, whylen, "%s: bad kind %u", t, p[0]);
    if (have >= 5 && get32(p + 1) > SK_XFER_MODE_MASK)
      return bad(why, whylen, "%s: bad mode %o", t, (unsigned)get32(p + 1));
    if (have >= 17 && get32(p + 13) >= NSEC_PER_SEC)
      return bad(why, whylen, "%s: mtime nanoseconds %u out of range", t, (unsigned)get32(p + 13));
    if (have >= 25 && p[0] == SK_XFER_KIND_DIR && get64(p + 17) != 0)
      return bad(why, whylen, "%s: a directory with size %llu", t,
                 (unsigned long long)get64(p + 17));
    return 0;
  case SK_XFER_WANT:
    if (have >= 5 && p[4] > SK_XFER_WANT_CHECK)
      return bad(why, whylen, "%s: bad kind %u", t, p[4]);
    if (have >= 13 && p[4] == SK_XFER_WANT_FULL && get64(p + 5) != 0)
      return bad(why, whylen, "%s: FULL with offset %llu", t, (unsigned long long)get64(p + 5));
    if (have >= 13 && p[4] == SK_XFER_WANT_RESUME && get64(p + 5) == 0)
      return bad(why, whylen, "%s: RESUME from offset 0", t);
    if (have >= WANT_LEN && p[4] == SK_XFER_WANT_FULL && !all_zero(p + 13, SK_XFER_HASH_LEN))
      return bad(why, whylen, "%s: FULL with a hash", t);
    return 0;
  case SK_XFER_FILE:
    if (have >= 5 && p[4] > SK_XFER_FILE_UNREADABLE)
      return bad(why, whylen, "%s: bad status %u", t, p[4]);
    if (have >= 13 && p[4] != SK_XFER_FILE_DATA && get64(p + 5) != 0)
      return bad(why, whylen, "%s: no data but offset %llu", t, (unsigned long long)get64(p + 5));
    return 0;
  case SK_XFER_FILE_END:
    if (have >= 5 && p[4] > SK_XFER_END_CHANGED)
      return bad(why, whylen, "%s: bad status %u", t, p[4]);
    return 0;
  case SK_XFER_RESULT:
    if (have >= 5 && p[4] > SK_XFER_RES_LAST)
      return bad(why, whylen, "%s: bad status %u", t, p[4]);
    return 0;
  case SK_XFER_ERROR:
    if (have >= 2 && (get16(p) == 0 || get16(p) > SK_XFER_ERR_LAST))
      return bad(why, whylen, "%s: bad code %u", t, get16(p));
    return 0;
  default:
    return 0;
  }
}

long sk_xfer_parse(const void *buf, size_t len, sk_xfer_msg_t *m, char *why, size_t whylen) {
  const uint8_t *b = buf;
  if (len == 0)
    return SK_EAGAIN;
  int type = b[0];
  if (type < SK_XFER_HELLO || type > SK_XFER_TYPE_LAST)
    return bad(why, whylen, "unknown message type %d", type);
  uint32_t lo, hi;
  length_range(type, &lo, &hi);
  /* The length so far bounds its final value: the bytes still missing are
   * somewhere between all zeros and all ones. */
  size_t got = len - 1 < 4 ? len - 1 : 4;
  uint64_t min = 0, max = 0;
  for (size_t i = 0; i < 4; i++) {
    min = min << 8 | (i < got ? b[1 + i] : 0x00);
    max = max << 8 | (i < got ? b[1 + i] : 0xff);
  }
  if (min > hi || max < lo)
    return bad(why, whylen, "%s: payload length %llu out of range %u-%u", sk_xfer_type_name(type),
               (unsigned long long)min, (unsigned)lo, (unsigned)hi);
  if (got < 4)
    return SK_EAGAIN;
  uint32_t plen = (uint32_t)min;
  const uint8_t *p = b + SK_XFER_HDR;
  size_t have = len - SK_XFER_HDR < plen ? len - SK_XFER_HDR : plen;
  long r = check_fields(type, p, have, plen, why, whylen);
  if (r < 0)
    return r;
  if (have < plen)
    return SK_EAGAIN;

  memset(m, 0, sizeof *m);
  m->type = (uint8_t)type;
  switch (type) {
  case SK_XFER_HELLO:
    m->u.hello.version = get16(p + 4);
    m->u.hello.role = p[6];
    if (p[7] == SK_XFER_HELLO_KEY && m->u.hello.version == SK_XFER_VERSION) {
      m->u.hello.has_key = 1;
      memcpy(m->u.hello.key, p + HELLO_LEN, SK_XFER_KEY_LEN);
    }
    break;
  case SK_XFER_MANIFEST:
    m->u.manifest.count = get32(p);
    m->u.manifest.total = get64(p + 4);
    m->u.manifest.name_bytes = get32(p + 12);
    break;
  case SK_XFER_ENTRY:
    m->u.entry.kind = p[0];
    m->u.entry.mode = get32(p + 1);
    m->u.entry.mtime_sec = (int64_t)get64(p + 5);
    m->u.entry.mtime_nsec = get32(p + 13);
    m->u.entry.size = get64(p + 17);
    m->u.entry.name = (const char *)p + SK_XFER_ENTRY_FIXED;
    m->u.entry.name_len = plen - SK_XFER_ENTRY_FIXED;
    break;
  case SK_XFER_WANT:
    m->u.want.index = get32(p);
    m->u.want.kind = p[4];
    m->u.want.offset = get64(p + 5);
    memcpy(m->u.want.hash, p + 13, SK_XFER_HASH_LEN);
    break;
  case SK_XFER_FILE:
    m->u.file.index = get32(p);
    m->u.file.status = p[4];
    m->u.file.offset = get64(p + 5);
    break;
  case SK_XFER_FILE_END:
    m->u.end.index = get32(p);
    m->u.end.status = p[4];
    memcpy(m->u.end.hash, p + 5, SK_XFER_HASH_LEN);
    break;
  case SK_XFER_RESULT:
    m->u.result.index = get32(p);
    m->u.result.status = p[4];
    m->u.result.text = (const char *)p + RESULT_FIXED;
    m->u.result.text_len = plen - RESULT_FIXED;
    break;
  case SK_XFER_ERROR:
    m->u.error.code = get16(p);
    m->u.error.text = (const char *)p + ERROR_FIXED;
    m->u.error.text_len = plen - ERROR_FIXED;
    break;
  default:
    break;
  }
  return (long)(SK_XFER_HDR + plen);
}

/* ---- encoding ----------------------------------------------------------------------- */

long sk_xfer_encode(const sk_xfer_msg_t *m, void *buf, size_t cap) {
  uint8_t pay[SK_XFER_FRAME_MAX];
  uint8_t *p = pay;
  switch (m->type) {
  case SK_XFER_HELLO:
    memcpy(p, SK_XFER_MAGIC, 4);
    p = put16(p + 4, m->u.hello.version);
    *p++ = m->u.hello.role;
    *p++ = m->u.hello.has_key ? SK_XFER_HELLO_KEY : 0;
    if (m->u.hello.has_key) {
      memcpy(p, m->u.hello.key, SK_XFER_KEY_LEN);
      p += SK_XFER_KEY_LEN;
    }
    break;
  case SK_XFER_MANIFEST:
    p = put32(p, m->u.manifest.count);
    p = put64(p, m->u.manifest.total);
    p = put32(p, m->u.manifest.name_bytes);
    break;
  case SK_XFER_ENTRY:
    if (m->u.entry.name_len == 0 || m->u.entry.name_len > SK_XFER_PATH_MAX || !m->u.entry.name)
      return SK_EBADINPUT;
    *p++ = m->u.entry.kind;
    p = put32(p, m->u.entry.mode);
    p = put64(p, (uint64_t)m->u.entry.mtime_sec);
    p = put32(p, m->u.entry.mtime_nsec);
    p = put64(p, m->u.entry.size);
    memcpy(p, m->u.entry.name, m->u.entry.name_len);
    p += m->u.entry.name_len;
    break;
  case SK_XFER_ACCEPT:
  case SK_XFER_DONE:
  case SK_XFER_KEEPALIVE:
    break;
  case SK_XFER_WANT:
    p = put32(p, m->u.want.index);
    *p++ = m->u.want.kind;
    p = put64(p, m->u.want.offset);
    memcpy(p, m->u.want.hash, SK_XFER_HASH_LEN);
    p += SK_XFER_HASH_LEN;
    break;
  case SK_XFER_FILE:
    p = put32(p, m->u.file.index);
    *p++ = m->u.file.status;
    p = put64(p, m->u.file.offset);
    break;
  case SK_XFER_FILE_END:
    p = put32(p, m->u.end.index);
    *p++ = m->u.end.status;
    memcpy(p, m->u.end.hash, SK_XFER_HASH_LEN);
    p += SK_XFER_HASH_LEN;
    break;
  case SK_XFER_RESULT:
    if (m->u.result.text_len > SK_XFER_TEXT_MAX || (m->u.result.text_len && !m->u.result.text))
      return SK_EBADINPUT;
    p = put32(p, m->u.result.index);
    *p++ = m->u.result.status;
    if (m->u.result.text_len)
      memcpy(p, m->u.result.text, m->u.result.text_len);
    p += m->u.result.text_len;
    break;
  case SK_XFER_ERROR:
    if (m->u.error.text_len == 0 || m->u.error.text_len > SK_XFER_TEXT_MAX || !m->u.error.text)
      return SK_EBADINPUT;
    p = put16(p, m->u.error.code);
    memcpy(p, m->u.error.text, m->u.error.text_len);
    p += m->u.error.text_len;
    break;
  default:
    return SK_EBADINPUT;
  }
  size_t plen = (size_t)(p - pay);
  uint32_t lo, hi;
  length_range(m->type, &lo, &hi);
  if (plen < lo || plen > hi || check_fields(m->type, pay, plen, (uint32_t)plen, NULL, 0) < 0)
    return SK_EBADINPUT;
  if (cap < SK_XFER_HDR + plen)
    return SK_ETOOBIG;
  uint8_t *out = buf;
  out[0] = m->type;
  put32(out + 1, (uint32_t)plen);
  memcpy(out + SK_XFER_HDR, pay, plen);
  return (long)(SK_XFER_HDR + plen);
}
