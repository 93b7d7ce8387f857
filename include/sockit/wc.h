/* sockit/wc.h - word count: the counts GNU wc (coreutils 9.1, glibc 2.36)
 * gives for a byte stream, in the C and C.UTF-8 locales, fed in pieces of
 * any size; and the SKWC/1 wire protocol of `sockit serve wc` and
 * `sockit wc`. Pure code over caller buffers: no I/O, no allocation.
 *
 * The counter is an incremental state machine: feeding a stream one byte
 * at a time gives the same counts as feeding it whole (a UTF-8 sequence or
 * a word may straddle any two pieces). The rules, found by comparing with
 * wc on this machine (docs/wc.md has them in full):
 *
 *   lines  the number of LF bytes
 *   bytes  the number of bytes
 *   chars  C: bytes. C.UTF-8: characters glibc's mbrtowc decodes (1- to
 *          6-byte forms up to 0x7FFFFFFF, no overlongs, no surrogates);
 *          a byte that starts no valid character counts as none
 *   words  a word starts at a "word" character that follows a
 *          "separator" (or the start); "transparent" characters (neither
 *          printable nor a separator: controls, NUL, undecodable bytes,
 *          unassigned code points) neither start nor end one. C: separators
 *          are \t \n \v \f \r and space, word bytes 0x21-0x7E, the rest is
 *          transparent. C.UTF-8: the same for ASCII; beyond it iswprint()
 *          and iswspace() of glibc decide, plus U+00A0 U+2007 U+202F U+2060
 *          as separators (wc's own rule).
 */
#ifndef SOCKIT_WC_H
#define SOCKIT_WC_H

#include <stddef.h>
#include <stdint.h>

#include "sockit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the counter ------------------------------------------------------------------ */

/* Which counts are wanted (a mask). Asking for neither words nor chars
 * lets the counter only count LF bytes, at memory speed. */
#define SK_WC_LINES 0x1u
#define SK_WC_WORDS 0x2u
#define SK_WC_CHARS 0x4u
#define SK_WC_BYTES 0x8u
#define SK_WC_ALL 0xfu

typedef enum { SK_WC_LOCALE_C = 0, SK_WC_LOCALE_UTF8 = 1 } sk_wc_locale_t;

#define SK_WC_SEQ_MAX 6 /* longest byte sequence glibc decodes as one character */

typedef struct {
  uint64_t lines, words, chars, bytes;
} sk_wc_counts_t;

/* State of one count. Plain data: copy it, reset it with sk_wc_init. */
typedef struct {
  sk_wc_counts_t n;              /* so far (words: those started) */
  unsigned what;                 /* SK_WC_* asked for */
  uint8_t utf8;                  /* locale is C.UTF-8 */
  uint8_t in_word;               /* the last non-transparent character was a word one */
  uint8_t pend_len;              /* bytes of a character cut by the end of a piece */
  uint8_t pend[SK_WC_SEQ_MAX];
} sk_wc_t;

/* Starts a count in locale loc of the counts in what (SK_WC_*; 0 means
 * SK_WC_ALL). */
SK_API void sk_wc_init(sk_wc_t *w, sk_wc_locale_t loc, unsigned what);
/* Counts len more bytes of the stream (borrowed for the call only). */
SK_API void sk_wc_feed(sk_wc_t *w, const void *data, size_t len);
/* The counts of everything fed so far, as wc reports them at end of input
 * (a word in progress counts; a character cut short by the end counts as
 * none). Does not change w: feeding may go on. Counts not asked for are 0. */
SK_API void sk_wc_result(const sk_wc_t *w, sk_wc_counts_t *out);

/* "C" or "UTF-8". */
SK_API const char *sk_wc_locale_name(sk_wc_locale_t loc);

/* ---- the SKWC/1 protocol -------------------------------------------------------------
 *
 * Client to server, lines of ASCII ending in LF (CR LF accepted), at most
 * SK_WC_LINE_MAX bytes each, then raw file bytes inside DATA chunks:
 *
 *   SKWC/1 <C|UTF-8> <counts>     once, first; counts: letters of "lwmc"
 *   FILE <size>|FILE -            a file begins; its size, or - if unknown
 *   DATA <n>                      then exactly n bytes of it, 1 <= n <= SK_WC_CHUNK_MAX
 *   END                           the file is complete: count it
 *   ABORT                         the client could not read the rest: do not
 *   NOOP                          nothing; keeps an idle connection alive
 *
 * Server to client, one line per request line that asks for an answer:
 *
 *   SKWC/1 OK                     to the hello
 *   OK <lines> <words> <chars> <bytes>   to END; "-" for a count not asked
 *   ERR <text>                    to END or ABORT of a file that gets no
 *                                 count (size mismatch, aborted); go on
 *   FATAL <text>                  a protocol error; the server then closes
 */

#define SK_WC_VERSION 1
#define SK_WC_LINE_MAX 64                       /* a request line, LF included */
#define SK_WC_REPLY_MAX 160                     /* a reply line, LF included */
#define SK_WC_CHUNK_MAX (1ull << 30)            /* bytes in one DATA chunk */
#define SK_WC_SIZE_MAX (1ull << 50)             /* bytes in one file */

typedef enum {
  SK_WCP_NONE = 0, /* bytes consumed, nothing to act on (a DATA header) */
  SK_WCP_HELLO,    /* locale, what */
  SK_WCP_FILE,     /* size (-1: unknown) */
  SK_WCP_DATA,     /* data, len: bytes of the current file, in the input */
  SK_WCP_END,      /* the file is complete; error != NULL: it gets no count */
  SK_WCP_ABORT,    /* the client gave up on the file */
  SK_WCP_NOOP
} sk_wcp_kind_t;

typedef struct {
  sk_wcp_kind_t kind;
  sk_wc_locale_t locale;
  unsigned what;
  int64_t size;
  const char *data;
  size_t len;
  const char *error; /* END: why the file gets no count (points into the parser) */
} sk_wcp_event_t;

/* The server's view of one connection's request stream. */
typedef struct {
  int state;           /* where in the grammar */
  uint64_t files;      /* FILE lines seen */
  int64_t declared;    /* current file's size, -1 unknown */
  uint64_t received;   /* current file's bytes so far */
  uint64_t chunk_left; /* bytes of the current DATA chunk still to come */
  char error[96];      /* current file's size mismatch, if any */
} sk_wcp_server_t;

SK_API void sk_wcp_server_init(sk_wcp_server_t *p);
/* Parses the next event from in[0..len). Returns the bytes it consumed
 * (> 0) with *ev filled, 0 when more input is needed (nothing consumed),
 * or SK_EBADINPUT with a message in err (SK_ERRLEN): the stream is not
 * SKWC/1 and the connection must end. DATA events point into in. */
SK_API long sk_wcp_server_parse(sk_wcp_server_t *p, const char *in, size_t len,
                                sk_wcp_event_t *ev, char *err, size_t errlen);
/* The peer ended its stream with unconsumed bytes left over: 0 if that is
 * a clean end (between files, nothing left), else SK_EBADINPUT with why in
 * err ("connection ended inside file 3 after 100 of 2000 bytes"). */
SK_API int sk_wcp_server_eof(const sk_wcp_server_t *p, size_t unconsumed, char *err,
                             size_t errlen);

/* Request and reply lines, written into buf (a line fits SK_WC_REPLY_MAX).
 * Each returns the length written (LF included), or SK_ETOOBIG. */
SK_API long sk_wcp_hello(char *buf, size_t len, sk_wc_locale_t loc, unsigned what);
SK_API long sk_wcp_file(char *buf, size_t len, int64_t size);       /* size -1: "FILE -" */
SK_API long sk_wcp_data(char *buf, size_t len, uint64_t n);
SK_API long sk_wcp_counts(char *buf, size_t len, unsigned what, const sk_wc_counts_t *c);
/* "ERR text" or "FATAL text"; text is cut to fit one line, and bytes that
 * are not printable ASCII become '?'. */
SK_API long sk_wcp_error(char *buf, size_t len, int fatal, const char *text);

/* One reply line, as the client parses it. */
typedef enum { SK_WCR_HELLO = 1, SK_WCR_COUNTS, SK_WCR_ERR, SK_WCR_FATAL } sk_wcr_kind_t;

typedef struct {
  sk_wcr_kind_t kind;
  unsigned what;          /* COUNTS: which fields were numbers (not "-") */
  sk_wc_counts_t counts;  /* COUNTS */
  char text[SK_WC_REPLY_MAX]; /* ERR, FATAL: the server's words */
} sk_wcr_reply_t;

/* Parses the next reply line of in[0..len). Returns the bytes consumed
 * (> 0), 0 when no complete line is there yet, or SK_EBADINPUT with a
 * message in err: the peer does not speak SKWC/1 (or a line is longer than
 * SK_WC_REPLY_MAX). */
SK_API long sk_wcr_parse(const char *in, size_t len, sk_wcr_reply_t *r, char *err,
                         size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
