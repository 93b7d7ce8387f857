/* src/services/xfer_int.h - what the sender, the receiver and the drop box
 * share: waiting on the connection, framed input and output buffers, and
 * the hashing thread. Internal to src/services/xfer*.c. */
#ifndef SK_SERVICES_XFER_INT_H
#define SK_SERVICES_XFER_INT_H

#include <openssl/evp.h>
#include <stdarg.h>

#include "services/xfer.h"

/* Formats "fmt..." into err (errlen bytes) and returns code. */
int xfer_fail(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- the connection -------------------------------------------------------------- */

/* Framed input: bytes read from the connection and not yet used. The
 * message xin_next returned stays valid (its pointers point into buf)
 * until the next call that reads or consumes. */
typedef struct {
  unsigned char *buf;
  size_t cap;
  size_t off, len;  /* unconsumed bytes are buf[off..len) */
  size_t pending;   /* length of the frame last returned, consumed lazily */
} xin_t;

/* Framed output, written when full or flushed. */
typedef struct {
  unsigned char *buf;
  size_t cap, len;
} xout_t;

int xin_init(xin_t *in);
void xin_free(xin_t *in);
/* Bytes buffered beyond the last returned frame. */
size_t xin_avail(const xin_t *in);
/* Consumes the last returned frame (if any) and n raw bytes after it. */
void xin_consume(xin_t *in, size_t n);
/* Reads what the connection has without waiting (into free space; the
 * sender does this while it writes so neither side can block the other).
 * Returns bytes read, 0 when nothing was waiting or there is no room,
 * SK_EOF, or a negative errno. */
ssize_t xin_read_ready(xin_t *in, xfer_conn_t *c);
/* Returns the next frame: 1 with *m filled, 0 when none is complete and
 * wait_ms is 0, or a negative code with err filled: SK_EOF (the peer
 * closed, "connection closed by PEER"), SK_ETIMEDOUT, SK_EBADINPUT (a bad
 * frame, with the codec's reason), -ECANCELED, a negative errno. wait_ms
 * bounds the wait for more bytes (0: do not wait). */
int xin_next(xin_t *in, xfer_conn_t *c, sk_xfer_msg_t *m, uint64_t wait_ms, char *err,
             size_t errlen);

/* Reads until at least need (<= XFER_IO_BUF / 2) bytes beyond the last
 * frame are buffered; that frame must have been consumed. Returns 0 or a
 * negative code (SK_EOF, SK_ETIMEDOUT, -ECANCELED, -errno). */
int xin_fill(xin_t *in, xfer_conn_t *c, size_t need);

int xout_init(xout_t *out);
void xout_free(xout_t *out);
/* Appends one frame, flushing first when it does not fit. rd (may be
 * NULL) takes what the peer sends while this side waits to write.
 * Returns 0 or a negative code with err filled. */
int xout_msg(xout_t *out, xfer_conn_t *c, xin_t *rd, const sk_xfer_msg_t *m, char *err,
             size_t errlen);
/* Appends raw bytes (content of a small file), flushing as needed. */
int xout_raw(xout_t *out, xfer_conn_t *c, xin_t *rd, const void *data, size_t len, char *err,
             size_t errlen);
/* Writes everything buffered. */
int xout_flush(xout_t *out, xfer_conn_t *c, xin_t *rd, char *err, size_t errlen);

/* Writes all of data to the connection, reading into rd (may be NULL)
 * whenever the peer has something while this side waits. Returns 0 or a
 * negative code: SK_ETIMEDOUT after the idle time without progress,
 * -ECANCELED, -EPIPE/-ECONNRESET, ... */
int xconn_write(xfer_conn_t *c, xin_t *rd, const void *data, size_t len);
/* Reads up to len bytes (at least 1), waiting at most wait_ms. Returns the
 * count, SK_EOF, SK_ETIMEDOUT, -ECANCELED or a negative errno. */
ssize_t xconn_read(xfer_conn_t *c, void *buf, size_t len, uint64_t wait_ms);
/* Waits for events on the socket (and the cancel fd). Returns the revents
 * (> 0), 0 on timeout, -ECANCELED, or a negative errno. */
int xconn_poll(xfer_conn_t *c, short events, uint64_t wait_ms);
/* After sending ERROR: shuts the write half and reads the peer out until
 * EOF or ms pass, so the peer sees the ERROR and not a reset. */
void xconn_drain(xfer_conn_t *c, uint64_t ms);
/* Sends ERROR (best effort, no waiting beyond the idle time). */
void xconn_send_error(xfer_conn_t *c, xout_t *out, int code, const char *text);
/* The idle time of c in ms. */
uint64_t xconn_idle(const xfer_conn_t *c);

/* A drop box's watch (no-ops when c->watch is NULL): paused while this
 * side is busy (hashing, syncing, asking) rather than waiting on the
 * peer; touched when the peer says it is busy itself (an allowed
 * KEEPALIVE), which starts a new rate window. */
void xwatch_pause(xfer_conn_t *c, int paused);
void xwatch_touch(xfer_conn_t *c);

/* Text for a result code. */
const char *xfer_strerror(int code);

/* ---- hashing on a second thread ------------------------------------------------------ */

typedef struct xhash xhash_t;

/* Starts the hashing thread with XFER_HASH_SLOTS buffers. Returns 0 or a
 * negative errno. */
int xhash_start(xhash_t **out);
/* Waits for outstanding work, ends the thread and frees everything. */
void xhash_stop(xhash_t *h);
/* A SHA-256 context, started. NULL when out of memory. */
EVP_MD_CTX *xhash_ctx_new(xhash_t *h);
void xhash_ctx_reset(xhash_t *h, EVP_MD_CTX *ctx);
/* The digest of everything hashed into ctx so far; ctx goes on (copy). */
void xhash_peek(const EVP_MD_CTX *ctx, uint8_t out[SK_XFER_HASH_LEN]);
/* Buffer mode: the storage of the next free slot (XFER_HASH_CHUNK bytes,
 * aligned to XFER_ALIGN), waiting for the thread to free one. Bytes of
 * file offset `at` belong at skew = at % XFER_ALIGN in it (so at most
 * XFER_HASH_CHUNK - skew of them): a copy between the page cache and a
 * buffer then has its source and destination at the same offset within a
 * page. Copying with a short distance between the two (16 bytes, as
 * malloc's header made it) ran at a third of the speed on the benchmark
 * machine (AMD EPYC, the kernel's rep movsb), for every byte received
 * and every byte the sender hashed. */
unsigned char *xhash_slot(xhash_t *h);
/* Hands the slot from xhash_slot, holding len bytes from skew on, to the
 * thread, which adds them to ctx. */
void xhash_push(xhash_t *h, EVP_MD_CTX *ctx, size_t skew, size_t len);
/* File mode: the thread adds len (<= XFER_HASH_FILE_CHUNK) bytes of fd at
 * off to ctx, read with pread() into the slot's buffer a piece at a time.
 * A file shorter than that (or cut short meanwhile) or a read error is
 * kept for xhash_wait. */
void xhash_push_file(xhash_t *h, EVP_MD_CTX *ctx, int fd, uint64_t off, size_t len);
/* Waits until every pushed job is done. Returns 0, SK_EOF (a file was
 * shorter than asked), or the first read error since the last wait. */
int xhash_wait(xhash_t *h);
/* Hashes len bytes of fd from off into ctx on the thread, and waits. */
int xhash_file(xhash_t *h, EVP_MD_CTX *ctx, int fd, uint64_t off, uint64_t len);
/* The same for a prefix that may take long to hash (a partial file of many
 * GiB): every XFER_KEEPALIVE_MS (or a third of c's idle timeout, if less) a
 * KEEPALIVE frame goes to the peer, so its idle timeout does not end the
 * session meanwhile. Returns as xhash_file,
 * or XFER_ESEND when sending failed (the reason in err). */
#define XFER_ESEND (-4104)
int xhash_file_alive(xhash_t *h, EVP_MD_CTX *ctx, int fd, uint64_t off, uint64_t len,
                     xfer_conn_t *c, xout_t *out, xin_t *rd, char *err, size_t errlen);

#endif
