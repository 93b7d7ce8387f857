/* tests/fuzz/fuzz_ws.c - the WebSocket frame decoder, UTF-8 validator and
 * close-payload encoder (sockit/ws.h) on arbitrary bytes.
 *
 * Input: one settings byte, then the byte stream a peer sends. Settings bit
 * 0 set: decode as a client (frames must be unmasked), else as a server
 * (frames must be masked); bits 1-2: max_message 0 (none), 16, 200 or
 * 70000. Properties checked (abort() on a violation):
 *  - splits: the stream decoded frame by frame from the whole buffer, and
 *    again fed in pieces of 1 to 64 bytes (sizes drawn from a generator
 *    seeded by the input, each call given a buffer of exactly the bytes it
 *    has), gives the same events, the same unmasked bytes and the same end
 *    (error code, or "need more" with the same *need); "need more" changes
 *    neither the bytes nor the decoder;
 *  - every payload and close reason lies inside its frame, the payload
 *    ending the frame;
 *  - no frame that breaks a rule is accepted, judged by plain reference
 *    code from the raw bytes: RSV bits, opcodes, masking, the length and
 *    its forms, control frames (FIN, 125 bytes), continuation order, the
 *    message limit, the unmasked payload, text that is valid UTF-8 when
 *    its message ends and could still become valid after each fragment,
 *    close codes and reasons; an error is one of 1002, 1007, 1009, and
 *    "need more" reports the size the frame header says;
 *  - the UTF-8 validator gives the same state for any split of the
 *    stream, and ACCEPT exactly when the reference decoder accepts it;
 *  - sk_ws_close_payload of the stream as a reason gives a prefix of it
 *    that the reference accepts, at most 123 bytes.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/ws.h"

#include "../utf8_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "fuzz_ws: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                   \
    }                                                                            \
  } while (0)

#define MAX_EVENTS 8192

static uint32_t rng_state;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

/* ---- reference UTF-8 -------------------------------------------------------------- */

/* 1 if s[0..n) is valid, complete UTF-8. */
static int ref_valid(const uint8_t *s, size_t n) { return ref_utf8_valid(s, n); }

/* 1 if s[0..n) is valid UTF-8 or becomes so with up to 3 more bytes; s
 * has 3 bytes of room after n. */
static int ref_viable(uint8_t *s, size_t n) {
  static const uint8_t second[] = {0x80, 0x90, 0xA0};
  if (ref_valid(s, n))
    return 1;
  /* only the last character can be unfinished: test from its start */
  size_t from = n > 3 ? n - 3 : 0;
  while (from < n && (s[from] & 0xC0) == 0x80)
    from++;
  if (!ref_valid(s, from))
    return 0;
  for (size_t add = 1; add <= 3; add++)
    for (size_t w = 0; w < sizeof second; w++) {
      for (size_t k = 0; k < add; k++)
        s[n + k] = k == 0 ? second[w] : 0x80;
      if (ref_valid(s + from, n - from + add))
        return 1;
    }
  return 0;
}

/* ---- decoding ---------------------------------------------------------------------- */

typedef struct {
  int kind, fin;
  unsigned opcode, close_code;
  size_t start, size;  /* the frame in the stream */
  size_t payload, len; /* the payload, offset in the stream */
  size_t reason, reason_len;
} event_t;

typedef struct {
  event_t ev[MAX_EVENTS];
  size_t n;       /* events (may exceed MAX_EVENTS: only the first are kept) */
  size_t used;    /* bytes of whole frames */
  long end;       /* the last result: 0 (need more, or nothing left) or an error */
  uint64_t need;  /* *need of a final "need more" */
} trace_t;

/* Decodes s[0..n) (a copy the decoder may unmask in place) frame by frame,
 * the bytes arriving in pieces (sizes from the generator; piece_seed 0:
 * all at once), each call on a buffer of exactly the bytes it is given. */
static void decode(uint8_t *s, size_t n, int server, uint64_t max, uint32_t piece_seed,
                   trace_t *t) {
  sk_ws_decoder_t d;
  sk_ws_decoder_init(&d, server, max);
  t->n = t->used = 0;
  t->end = 0;
  t->need = 0;
  rng_state = piece_seed;
  size_t avail = 0;
  for (;;) {
    size_t add = piece_seed ? 1 + rng() % 64 : n;
    avail = n - avail < add ? n : avail + add;
    for (;;) {
      size_t len = avail - t->used;
      uint8_t *w = malloc(len ? len : 1);
      CHECK(w);
      if (len)
        memcpy(w, s + t->used, len);
      sk_ws_decoder_t before = d;
      sk_ws_event_t ev;
      uint64_t need = 12345;
      long rc = sk_ws_decode(&d, w, len, &ev, &need);
      if (rc > 0) {
        size_t r = (size_t)rc;
        CHECK(r <= len && ev.len <= r && ev.payload + ev.len == w + r && ev.payload >= w + 2);
        if (ev.kind == SK_WS_EV_CLOSE)
          CHECK((const uint8_t *)ev.reason >= ev.payload &&
                (const uint8_t *)ev.reason + ev.reason_len <= ev.payload + ev.len);
        if (t->n < MAX_EVENTS)
          t->ev[t->n] = (event_t){ev.kind,
                                  ev.fin,
                                  ev.opcode,
                                  ev.close_code,
                                  t->used,
                                  r,
                                  t->used + (size_t)(ev.payload - w),
                                  ev.len,
                                  ev.kind == SK_WS_EV_CLOSE
                                      ? t->used + (size_t)((const uint8_t *)ev.reason - w)
                                      : 0,
                                  ev.reason_len};
        t->n++;
        memcpy(s + t->used, w, r); /* the unmasked frame */
        t->used += r;
        t->need = 0;
      } else if (rc == 0) {
        CHECK(len == 0 || memcmp(w, s + t->used, len) == 0);
        CHECK(memcmp(&d, &before, sizeof d) == 0);
        t->need = len ? need : 0;
      }
      free(w);
      if (rc < 0) {
        CHECK(rc == -SK_WS_CLOSE_PROTOCOL || rc == -SK_WS_CLOSE_INVALID_DATA ||
              rc == -SK_WS_CLOSE_TOO_BIG);
        t->end = rc;
        t->need = 0;
        return;
      }
      if (rc == 0 || t->used == avail)
        break;
    }
    if (avail == n)
      return;
  }
}

static uint64_t be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
    v = v << 8 | p[i];
  return v;
}

/* Judges the decoder's trace against the rules, reading the raw stream. */
static void judge(const uint8_t *raw, const uint8_t *unmasked, size_t n, int server,
                  uint64_t max, const trace_t *t) {
  int open = 0;
  unsigned msg_op = 0;
  uint64_t msg_len = 0;
  uint8_t *text = malloc(n + 4); /* the text message so far */
  size_t text_len = 0;
  CHECK(text);
  for (size_t i = 0; i < t->n && i < MAX_EVENTS; i++) {
    const event_t *e = &t->ev[i];
    const uint8_t *f = raw + e->start;
    int fin = f[0] >> 7, masked = f[1] >> 7;
    unsigned op = f[0] & 15, len7 = f[1] & 127;
    CHECK((f[0] & 0x70) == 0);
    CHECK(op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10);
    CHECK(masked == server);
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0, hdr = 2 + ext + 4 * (size_t)masked;
    uint64_t plen = ext ? be(f + 2, ext) : len7;
    CHECK(plen < (1ull << 63) && hdr + plen == e->size && e->payload == e->start + hdr);
    CHECK(e->len == plen);
    const uint8_t *key = f + hdr - 4;
    for (size_t k = 0; k < plen; k++)
      CHECK(unmasked[e->payload + k] == (raw[e->payload + k] ^ (masked ? key[k & 3] : 0)));
    const uint8_t *p = unmasked + e->payload;
    if (op >= 8) {
      CHECK(fin && plen <= 125);
      CHECK(e->kind == (op == 8 ? SK_WS_EV_CLOSE : op == 9 ? SK_WS_EV_PING : SK_WS_EV_PONG));
      if (op == 8) {
        CHECK(plen != 1);
        if (plen == 0) {
          CHECK(e->close_code == SK_WS_CLOSE_NO_STATUS && e->reason_len == 0);
        } else {
          unsigned code = (unsigned)be(p, 2);
          CHECK(e->close_code == code);
          CHECK((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                (code >= 3000 && code <= 4999));
          CHECK(e->reason == e->payload + 2 && e->reason_len == plen - 2);
          CHECK(ref_valid(p + 2, (size_t)plen - 2));
        }
      }
      continue;
    }
    CHECK(op == 0 ? open : !open);
    if (op != 0) {
      msg_op = op;
      msg_len = 0;
      text_len = 0;
    }
    msg_len += plen;
    CHECK(max == 0 || msg_len <= max);
    CHECK(e->kind == SK_WS_EV_DATA && e->opcode == msg_op && e->fin == fin);
    if (msg_op == SK_WS_OP_TEXT) {
      memcpy(text + text_len, p, (size_t)plen);
      text_len += (size_t)plen;
      CHECK(fin ? ref_valid(text, text_len) : ref_viable(text, text_len));
    }
    open = !fin;
  }
  free(text);
  /* How the trace ended. */
  size_t left = n - t->used;
  const uint8_t *f = raw + t->used;
  if (t->end == 0 && left > 0 && t->need) {
    CHECK(left >= 2);
    size_t len7 = f[1] & 127, ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    size_t hdr = 2 + ext + 4 * (size_t)(f[1] >> 7);
    CHECK(left >= hdr && t->need == hdr + (ext ? be(f + 2, ext) : len7) && t->need > left);
  } else if (t->end == 0 && left >= 2) {
    size_t len7 = f[1] & 127, ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    CHECK(left < 2 + ext + 4 * (size_t)(f[1] >> 7)); /* the header is not all in */
  }
  if (t->end == -SK_WS_CLOSE_TOO_BIG) {
    unsigned op = f[0] & 15;
    CHECK(op <= 2 && left >= 2);
  }
  if (t->end == -SK_WS_CLOSE_INVALID_DATA) {
    unsigned op = f[0] & 15;
    CHECK(op == 8 || op == 1 || (op == 0 && open && msg_op == SK_WS_OP_TEXT));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static trace_t whole, pieces;
  if (size < 1)
    return 0;
  static const uint64_t limits[4] = {0, 16, 200, 70000};
  int server = !(data[0] & 1);
  uint64_t max = limits[data[0] >> 1 & 3];
  const uint8_t *raw = data + 1;
  size_t n = size - 1;
  uint32_t seed = 2166136261u;
  for (size_t i = 0; i < size; i++)
    seed = (seed ^ data[i]) * 16777619u;

  uint8_t *a = malloc(n + 4), *b = malloc(n + 4); /* room for ref_viable */
  CHECK(a && b);
  memcpy(a, raw, n);
  memcpy(b, raw, n);
  decode(a, n, server, max, 0, &whole);
  decode(b, n, server, max, seed | 1u, &pieces);
  CHECK(whole.n == pieces.n && whole.used == pieces.used && whole.end == pieces.end &&
        whole.need == pieces.need);
  for (size_t i = 0; i < whole.n && i < MAX_EVENTS; i++)
    CHECK(memcmp(&whole.ev[i], &pieces.ev[i], sizeof whole.ev[i]) == 0);
  CHECK(memcmp(a, b, whole.used) == 0);
  judge(raw, a, n, server, max, &whole);

  /* UTF-8: the same state for a split anywhere, ACCEPT when valid. */
  uint32_t all = sk_utf8_validate(SK_UTF8_ACCEPT, raw, n);
  size_t cut = n ? seed % (n + 1) : 0;
  CHECK(sk_utf8_validate(sk_utf8_validate(SK_UTF8_ACCEPT, raw, cut), raw + cut, n - cut) == all);
  CHECK((all == SK_UTF8_ACCEPT) == ref_valid(raw, n));
  memcpy(a, raw, n);
  CHECK((all != SK_UTF8_REJECT) == ref_viable(a, n));

  /* A close payload with the stream as its reason. */
  uint8_t out[SK_WS_CONTROL_MAX];
  size_t m = sk_ws_close_payload(out, SK_WS_CLOSE_NORMAL, (const char *)raw, n);
  CHECK(m >= 2 && m <= SK_WS_CONTROL_MAX && be(out, 2) == SK_WS_CLOSE_NORMAL);
  CHECK(memcmp(out + 2, raw, m - 2) == 0 && ref_valid(out + 2, m - 2));
  free(a);
  free(b);
  return 0;
}
