/* sockit/xfer.h - the file-transfer protocol of `sockit send` / `sockit
 * receive` (SKXF version 1), and the rules for the names it carries. Pure
 * code over caller buffers: no I/O, no allocation. docs/xfer.md describes
 * the protocol for people; this header is its reference.
 *
 * Wire format. Every message is a frame:
 *
 *     type u8 | length u32 | payload[length]          (integers big-endian)
 *
 * except the content of a file, which follows a FILE frame with status
 * DATA unframed: exactly size - offset bytes, then a FILE_END frame. Every
 * payload has a fixed size or a bounded one (SK_XFER_FRAME_MAX in all), and
 * every field is checked: a frame that breaks any rule is "bad" as soon as
 * the field holding the wrong byte is complete (a length that cannot fit
 * its type, from its first byte), without waiting for the rest.
 *
 *   HELLO     both, first  magic "SKXF" | version u16 | role u8 | flags u8     8
 *                          [| key[32], a sender's, when flags = 1]          or 40
 *   MANIFEST  sender       count u32 | total u64 | name_bytes u32            16
 *   ENTRY     sender       kind u8 | mode u32 | mtime_sec i64 |
 *                          mtime_nsec u32 | size u64 | name             25 + n
 *   ACCEPT    receiver     (empty)                                            0
 *   WANT      receiver     index u32 | kind u8 | offset u64 | sha256[32]     45
 *   FILE      sender       index u32 | status u8 | offset u64                13
 *   FILE_END  sender       index u32 | status u8 | sha256[32]                37
 *   RESULT    receiver     index u32 | status u8 | text                  5 + n
 *   DONE      receiver     (empty)                                            0
 *   ERROR     both         code u16 | text                               2 + n
 *   KEEPALIVE both         (empty): "still here", while hashing a long prefix 0
 *
 * The codec checks each frame on its own (field ranges, canonical form:
 * reserved values zero, a FULL want carries offset 0 and a zero hash, ...);
 * the order of frames and the meaning of indexes are the engines' business.
 * A valid frame has exactly one encoding, so encode(parse(frame)) == frame.
 */
#ifndef SOCKIT_XFER_H
#define SOCKIT_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_XFER_VERSION 1
#define SK_XFER_MAGIC "SKXF"

/* ---- limits of the protocol itself ------------------------------------------------ */

#define SK_XFER_COMPONENT_MAX 255 /* bytes in one name component (NAME_MAX) */
#define SK_XFER_PATH_MAX 4096     /* bytes in a relative name (PATH_MAX) */
#define SK_XFER_TEXT_MAX 512      /* bytes of an ERROR or RESULT text */
#define SK_XFER_COUNT_MAX 1000000 /* entries in one manifest, hard cap */
#define SK_XFER_NAMES_MAX (16u << 20) /* bytes of all names of a manifest together */
#define SK_XFER_WINDOW 256        /* WANTs a receiver may have outstanding */
#define SK_XFER_HASH_LEN 32       /* SHA-256 */
#define SK_XFER_KEY_LEN 32        /* a sender's resume key (HELLO) */
#define SK_XFER_HDR 5             /* type + length */
#define SK_XFER_ENTRY_FIXED 25    /* ENTRY payload before the name */
#define SK_XFER_FRAME_MAX (SK_XFER_HDR + SK_XFER_ENTRY_FIXED + SK_XFER_PATH_MAX)
#define SK_XFER_MODE_MASK 07777u  /* mode bits carried (permissions, setuid...) */

/* Message types. */
enum {
  SK_XFER_HELLO = 1,
  SK_XFER_MANIFEST = 2,
  SK_XFER_ENTRY = 3,
  SK_XFER_ACCEPT = 4,
  SK_XFER_WANT = 5,
  SK_XFER_FILE = 6,
  SK_XFER_FILE_END = 7,
  SK_XFER_RESULT = 8,
  SK_XFER_DONE = 9,
  SK_XFER_ERROR = 10,
  SK_XFER_KEEPALIVE = 11,
};
#define SK_XFER_TYPE_LAST SK_XFER_KEEPALIVE

/* HELLO role. */
enum { SK_XFER_ROLE_SENDER = 1, SK_XFER_ROLE_RECEIVER = 2 };

/* HELLO flags: KEY = a sender's resume key follows (SK_XFER_KEY_LEN bytes;
 * version 1 only, payload 40 bytes). A shared receiver (a drop box) names
 * its partial files from it, so that only the sender holding the key can
 * resume them (docs/xfer.md). Other bits are reserved (0). */
#define SK_XFER_HELLO_KEY 1

/* ENTRY kind. A directory has size 0. */
enum { SK_XFER_KIND_FILE = 1, SK_XFER_KIND_DIR = 2 };

/* WANT kind: what the receiver holds of file `index`.
 *   FULL    nothing usable: send everything (offset 0, hash zero)
 *   RESUME  a partial file of `offset` (> 0) bytes whose SHA-256 is `hash`:
 *           send from there if the source's first offset bytes hash the same
 *   HAVE    a complete file of `offset` (= size) bytes hashing to `hash`:
 *           answer SAME if the source is identical, else send everything
 *   CHECK   as HAVE, but the receiver may not replace it: answer SAME or
 *           DIFFERENT, never data */
enum { SK_XFER_WANT_FULL = 0, SK_XFER_WANT_RESUME = 1, SK_XFER_WANT_HAVE = 2,
       SK_XFER_WANT_CHECK = 3 };

/* FILE status: DATA is followed by size - offset content bytes and a
 * FILE_END; the others carry no content (offset 0). */
enum { SK_XFER_FILE_DATA = 0, SK_XFER_FILE_SAME = 1, SK_XFER_FILE_DIFFERENT = 2,
       SK_XFER_FILE_CHANGED = 3, SK_XFER_FILE_UNREADABLE = 4 };

/* FILE_END status: CHANGED = the source changed while it was being sent
 * (the receiver drops what it got). */
enum { SK_XFER_END_OK = 0, SK_XFER_END_CHANGED = 1 };

/* RESULT status, one per file entry. The text is the stored name when it
 * differs from the sent one (--rename), else a reason or empty. */
enum {
  SK_XFER_RES_STORED = 0,    /* verified and in place */
  SK_XFER_RES_IDENTICAL = 1, /* the receiver already had exactly this file */
  SK_XFER_RES_BAD_HASH = 2,  /* content did not match its SHA-256: dropped */
  SK_XFER_RES_CHANGED = 3,   /* the sender's file changed or could not be read */
  SK_XFER_RES_EXISTS = 4,    /* a different file has that name: not overwritten */
  SK_XFER_RES_FAILED = 5,    /* the receiver could not store it (text: why) */
};
#define SK_XFER_RES_LAST SK_XFER_RES_FAILED

/* ERROR code: why a side gives up on the whole transfer. */
enum {
  SK_XFER_ERR_PROTOCOL = 1, /* a bad or unexpected message */
  SK_XFER_ERR_VERSION = 2,  /* a protocol version this side does not speak */
  SK_XFER_ERR_REFUSED = 3,  /* the receiver (or its user) declined */
  SK_XFER_ERR_LIMIT = 4,    /* more files or bytes than the receiver accepts */
  SK_XFER_ERR_NAME = 5,     /* a name the receiver does not accept */
  SK_XFER_ERR_SPACE = 6,    /* not enough free space */
  SK_XFER_ERR_IO = 7,       /* a read or write failed (disk full, ...) */
  SK_XFER_ERR_ABORTED = 8,  /* interrupted, timed out, shutting down */
};
#define SK_XFER_ERR_LAST SK_XFER_ERR_ABORTED

/* One parsed (or to-be-encoded) message. Pointers point into the input
 * buffer given to sk_xfer_parse and are valid as long as it is. */
typedef struct {
  uint8_t type;
  union {
    struct {
      uint16_t version;
      uint8_t role;
      uint8_t has_key;                /* a sender's resume key follows */
      uint8_t key[SK_XFER_KEY_LEN];
    } hello;
    struct {
      uint32_t count;      /* entries that follow, 1..SK_XFER_COUNT_MAX */
      uint64_t total;      /* sum of the file sizes */
      uint32_t name_bytes; /* sum of the name lengths, <= SK_XFER_NAMES_MAX */
    } manifest;
    struct {
      uint8_t kind;
      uint32_t mode;       /* <= SK_XFER_MODE_MASK */
      int64_t mtime_sec;
      uint32_t mtime_nsec; /* < 1e9 */
      uint64_t size;       /* 0 for a directory */
      const char *name;    /* not NUL-terminated; 1..SK_XFER_PATH_MAX bytes */
      size_t name_len;
    } entry;
    struct {
      uint32_t index;
      uint8_t kind;
      uint64_t offset;
      uint8_t hash[SK_XFER_HASH_LEN];
    } want;
    struct {
      uint32_t index;
      uint8_t status;
      uint64_t offset;
    } file;
    struct {
      uint32_t index;
      uint8_t status;
      uint8_t hash[SK_XFER_HASH_LEN];
    } end;
    struct {
      uint32_t index;
      uint8_t status;
      const char *text; /* 0..SK_XFER_TEXT_MAX bytes, not NUL-terminated */
      size_t text_len;
    } result;
    struct {
      uint16_t code;    /* 1..SK_XFER_ERR_LAST */
      const char *text; /* 1..SK_XFER_TEXT_MAX bytes, not NUL-terminated */
      size_t text_len;
    } error;
  } u;
} sk_xfer_msg_t;

/* Parses the first frame in buf[0..len). Returns the frame's length (> 0)
 * with *m filled, SK_EAGAIN when buf holds a valid prefix of a frame but
 * not all of it, or SK_EBADINPUT with the reason in why (may be NULL) when
 * no frame can start with these bytes. Never reads past len; never
 * allocates. A bad frame is refused once the field holding its first
 * wrong byte is complete, never earlier. */
SK_API long sk_xfer_parse(const void *buf, size_t len, sk_xfer_msg_t *m, char *why,
                          size_t whylen);

/* Writes the frame of m into buf (cap bytes). Returns its length,
 * SK_ETOOBIG when cap is too small, or SK_EBADINPUT when a field of m is
 * out of range (the same rules sk_xfer_parse enforces). */
SK_API long sk_xfer_encode(const sk_xfer_msg_t *m, void *buf, size_t cap);

/* The name of a message type ("WANT"), or "?" for an unknown one. */
SK_API const char *sk_xfer_type_name(int type);

/* ---- names --------------------------------------------------------------------------- */

/* Checks a relative name from a peer. Returns 0 when a receiver may create
 * it under its directory, else SK_EBADINPUT with the first reason in why
 * ("'..' component", "control character U+001B at byte 4", ...). Refused:
 * empty, absolute, longer than SK_XFER_PATH_MAX, a component empty, ".",
 * ".." or longer than SK_XFER_COMPONENT_MAX, a component that looks like a
 * partial file (".*.part"), NUL, backslash, bytes that are not shortest-form
 * UTF-8 (overlongs, surrogates, > U+10FFFF), C0/C1 controls and DEL,
 * invisible and direction-changing characters (bidi controls, zero-width
 * characters, tag characters, line separators, noncharacters), and
 * look-alikes that compatibility folding (NFKC, Windows best-fit) turns
 * into '/', '\' or dots (U+FF0F, U+2215, U+FF0E, U+2025, ...). */
SK_API int sk_xfer_name_check(const char *name, size_t len, char *why, size_t whylen);

/* Writes a form of name safe to show on a terminal into out (cap >= 8):
 * valid printable UTF-8 as it is; a backslash as "\\"; any other byte that
 * is not (control, invalid UTF-8) as "\xNN"; an invisible or bidi character
 * as "\u{XXXX}". Cut with "..." when it does not fit. Always
 * NUL-terminated; returns the length written. */
SK_API size_t sk_xfer_name_escape(const char *name, size_t len, char *out, size_t cap);

/* Writes the name of the partial file for a final component base (its last
 * component) into out: ".BASE.part", or ".~HHHHHHHHHHHHHHHH.part" (a hash
 * of base) when that would pass SK_XFER_COMPONENT_MAX. Returns the length,
 * or SK_ETOOBIG when cap is too small (cap > SK_XFER_COMPONENT_MAX always
 * suffices). */
SK_API long sk_xfer_part_name(const char *base, size_t len, char *out, size_t cap);

/* 1 if the component looks like a partial file (a leading '.' and a
 * ".part" suffix, at least 7 bytes): reserved for the receiver. */
SK_API int sk_xfer_is_part_name(const char *base, size_t len);

/* Writes the k-th (k >= 1) alternative of a final component for --rename
 * into out: "name (k).ext", the number before the last extension
 * ("a (2).txt"; "a (2).tar.gz" for the double extensions .tar.*; "a (2)"
 * without one; ".bashrc (2)" for a dot file), shortening the stem at a
 * UTF-8 boundary to stay within SK_XFER_COMPONENT_MAX. Returns the length,
 * or SK_ETOOBIG when cap is too small. */
SK_API long sk_xfer_rename_name(const char *base, size_t len, unsigned k, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
