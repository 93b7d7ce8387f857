/* sockit/ws.h - the WebSocket protocol (RFC 6455): the opening handshake's
 * checks, a frame decoder that enforces the protocol's rules, and a frame
 * encoder. Pure code over the caller's bytes (no I/O, no allocation); the
 * SHA-1 of the handshake comes from libcrypto.
 *
 * The decoder works for either end: a server requires masked frames from
 * its clients, a client requires unmasked frames from its server. It takes
 * whole frames from the caller's buffer, unmasks payloads in place, and
 * reports one event per frame. What it refuses, and the close code the
 * caller sends for it:
 *
 *   1002 protocol error: reserved bits set (no extension is negotiated),
 *        unknown opcodes (3-7, 0xB-0xF), a control frame that is fragmented
 *        or longer than 125 bytes, a continuation with no message begun, a
 *        new data frame inside an unfinished message, wrong masking, a
 *        64-bit length with the top bit set, a close frame with a 1-byte
 *        payload or a code that may not be sent;
 *   1007 invalid data: a text message (checked across fragments, in the
 *        first frame holding a byte that cannot start or continue valid
 *        UTF-8) or a close reason that is not UTF-8;
 *   1009 too big: a message whose fragments add up to more than the limit
 *        (known from the frame header, before the payload arrives), or a
 *        frame whose size does not fit in a long.
 * A length written in more bytes than it needs is accepted: RFC 6455 asks
 * the minimal form of senders only.
 */
#ifndef SOCKIT_WS_H
#define SOCKIT_WS_H

#include <stddef.h>
#include <stdint.h>

#include "sockit/error.h"
#include "sockit/http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opcodes. */
#define SK_WS_OP_CONT 0x0
#define SK_WS_OP_TEXT 0x1
#define SK_WS_OP_BINARY 0x2
#define SK_WS_OP_CLOSE 0x8
#define SK_WS_OP_PING 0x9
#define SK_WS_OP_PONG 0xA

/* Close codes (RFC 6455 section 7.4.1). */
#define SK_WS_CLOSE_NORMAL 1000
#define SK_WS_CLOSE_GOING_AWAY 1001
#define SK_WS_CLOSE_PROTOCOL 1002
#define SK_WS_CLOSE_UNSUPPORTED 1003
#define SK_WS_CLOSE_NO_STATUS 1005 /* never sent: a close frame with no code */
#define SK_WS_CLOSE_INVALID_DATA 1007
#define SK_WS_CLOSE_POLICY 1008
#define SK_WS_CLOSE_TOO_BIG 1009
#define SK_WS_CLOSE_INTERNAL 1011

#define SK_WS_HEADER_MAX 14        /* longest frame header: 2 + 8 + 4 */
#define SK_WS_CONTROL_MAX 125      /* longest control frame payload */
#define SK_WS_ACCEPT_LEN 28        /* length of a Sec-WebSocket-Accept value */

/* ---- the opening handshake ---------------------------------------------------- */

/* Checks that req is a WebSocket opening handshake a server may accept:
 * GET, HTTP/1.1, one Host, "Upgrade: websocket" and a Connection list
 * holding "upgrade" (tokens without regard to case), exactly one
 * Sec-WebSocket-Key that is base64 of 16 bytes, and Sec-WebSocket-Version
 * 13. Returns 101 and writes the Sec-WebSocket-Accept value (28 chars and
 * a NUL) to accept; 426 when the version is missing or not 13 (answer
 * with "Sec-WebSocket-Version: 13"); 400 for anything else (500 if
 * libcrypto cannot compute SHA-1). *why, if not NULL, gets a short reason
 * for the log ("no Sec-WebSocket-Key"). The Origin is the caller's to
 * check (sk_ws_origin_host helps). */
SK_API int sk_ws_check_upgrade(const sk_http_request_t *req, char accept[SK_WS_ACCEPT_LEN + 1],
                               const char **why);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)). Writes 28
 * characters and a NUL. Returns 0, or SK_EBADINPUT when key is not the
 * base64 form of 16 bytes (24 characters ending "==", padding bits zero),
 * or -ENOMEM if libcrypto cannot compute SHA-1. */
SK_API int sk_ws_accept_key(const char *key, size_t len, char accept[SK_WS_ACCEPT_LEN + 1]);

/* The "host[:port]" part of an Origin value ("https://chat.example:8443"
 * gives "chat.example:8443"): sets *host / *host_len into value and
 * returns 0, or SK_EBADINPUT for "null" or anything not scheme://host. */
SK_API int sk_ws_origin_host(const char *value, size_t len, const char **host, size_t *host_len);

/* ---- UTF-8 ---------------------------------------------------------------------- */

#define SK_UTF8_ACCEPT 0 /* between characters: the text so far is valid */
#define SK_UTF8_REJECT 1 /* invalid; stays so */

/* Runs the incremental validator over p[0..n) from state (start with
 * SK_UTF8_ACCEPT) and returns the new state: SK_UTF8_ACCEPT at a character
 * boundary, SK_UTF8_REJECT once a byte cannot be valid UTF-8 (overlong
 * forms, surrogates, above U+10FFFF, stray or missing continuation bytes),
 * any other value inside a character. Splitting the text anywhere gives
 * the same result. */
SK_API uint32_t sk_utf8_validate(uint32_t state, const uint8_t *p, size_t n);

/* ---- decoding ---------------------------------------------------------------------- */

typedef struct {
  /* settings */
  int server;           /* 1: peer frames must be masked; 0: must not be */
  uint64_t max_message; /* longest message, all fragments; 0 = no limit */
  /* state between frames */
  int in_message;       /* a data message has begun and not finished */
  unsigned msg_opcode;  /* its opcode: TEXT or BINARY */
  uint64_t msg_len;     /* its bytes so far */
  uint32_t utf8;        /* validator state of a TEXT message */
} sk_ws_decoder_t;

/* Event kinds of sk_ws_decode. */
#define SK_WS_EV_DATA 1  /* a piece of a TEXT/BINARY message */
#define SK_WS_EV_PING 2
#define SK_WS_EV_PONG 3
#define SK_WS_EV_CLOSE 4

typedef struct {
  int kind;           /* SK_WS_EV_* */
  unsigned opcode;    /* DATA: the message's opcode (TEXT or BINARY) */
  int fin;            /* DATA: this piece ends the message */
  uint8_t *payload;   /* the frame's payload, unmasked, in the caller's buffer */
  size_t len;
  /* CLOSE: the code (SK_WS_CLOSE_NO_STATUS when the frame has none) and
   * the reason (valid UTF-8, checked) */
  unsigned close_code;
  const char *reason;
  size_t reason_len;
} sk_ws_event_t;

/* Initialises d for one connection. */
SK_API void sk_ws_decoder_init(sk_ws_decoder_t *d, int server, uint64_t max_message);

/* Decodes the frame at the start of data[0..len). Returns the frame's size
 * (> 0) with *ev filled in and its payload unmasked in place; 0 when the
 * frame is not complete yet (*need, if not NULL, is set to the total bytes
 * it needs when the header is known, else to 0); or a negative close code
 * (-SK_WS_CLOSE_PROTOCOL, -SK_WS_CLOSE_INVALID_DATA, -SK_WS_CLOSE_TOO_BIG)
 * when the peer broke the protocol: send that close and stop reading. A
 * frame is checked from its header as soon as the header is complete, so a
 * violation is found before a large payload arrives. */
SK_API long sk_ws_decode(sk_ws_decoder_t *d, uint8_t *data, size_t len, sk_ws_event_t *ev,
                         uint64_t *need);

/* 1 if code may appear in a close frame on the wire: 1000-1003, 1007-1011,
 * 3000-4999 (RFC 6455 section 7.4 and the IANA registry's assigned codes
 * 1012-1014 too). */
SK_API int sk_ws_close_code_valid(unsigned code);

/* ---- encoding ----------------------------------------------------------------------- */

/* Writes the header of a frame with payload length len into out
 * (SK_WS_HEADER_MAX bytes of room) and returns its length: the shortest
 * length form; masked with mask if mask is not NULL (a client's frames),
 * the caller then masks the payload with sk_ws_mask. */
SK_API size_t sk_ws_header(uint8_t *out, unsigned opcode, int fin, uint64_t len,
                           const uint8_t *mask);

/* XORs data[0..len) with mask, starting at byte `offset` of the payload
 * (so a payload may be masked in pieces). Masking twice unmasks. */
SK_API void sk_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* Writes a close payload (code, then up to SK_WS_CONTROL_MAX - 2 bytes of
 * reason, cut at a character boundary and before any invalid UTF-8) into
 * out (SK_WS_CONTROL_MAX bytes) and returns its length; 0 (an empty
 * payload) for SK_WS_CLOSE_NO_STATUS. */
SK_API size_t sk_ws_close_payload(uint8_t *out, unsigned code, const char *reason, size_t len);

#ifdef __cplusplus
}
#endif
#endif
