/* src/services/xfer.h - the file-transfer engine behind `sockit send`,
 * `sockit receive` and the hub's drop box.
 *
 * The sender and the receiver are plain sequential programs over one
 * connected stream socket, with blocking I/O bounded by deadlines (poll).
 * The wire format is SKXF/1 (include/sockit/xfer.h, docs/xfer.md). Either
 * side may have connected; the protocol does not care.
 *
 * Speed: the sender moves content with sendfile(); the receiver reads it
 * into the hashing thread's buffers and pwrite()s them. Over TLS the
 * bytes must pass through the session: the sender pread()s into those
 * buffers and writes them with SSL, the receiver reads with SSL into them
 * and pwrite()s them. SHA-256 (OpenSSL libcrypto) runs on a second thread
 * on both sides, overlapped with the I/O, so hashing does not halve the
 * rate: over the very buffers received on the receiver, and on the sender
 * over file ranges it pread()s behind sendfile(). No file is ever mapped
 * (a mapping of a file cut short faults). Small files are batched: read
 * whole and framed together on the sender, committed with one syncfs()
 * per batch on the receiver. Memory is constant per transfer
 * (XFER_HASH_SLOTS * XFER_HASH_CHUNK, two XFER_IO_BUF buffers and the
 * manifest), whatever the file sizes.
 *
 * The engine never prints: it reports through xfer_ui_t callbacks, which
 * run on the calling thread.
 */
#ifndef SK_SERVICES_XFER_H
#define SK_SERVICES_XFER_H

#include <stdint.h>
#include <sys/types.h>

#include "sockit/sockit.h"
#include "sockit/tls.h"
#include "sockit/tserver.h"
#include "sockit/xfer.h"

/* ---- limits (defaults; the receiver's options override them) ------------------------ */

#define XFER_MAX_FILES_DEFAULT 100000u          /* entries per manifest (--max-files) */
#define XFER_MAX_TOTAL_DEFAULT (1ull << 40)     /* bytes per manifest, 1 TiB (--max-total) */
#define XFER_IDLE_MS_DEFAULT 30000u             /* no progress either way this long: give up */
#define XFER_DECISION_MS 600000u                /* a sender waits this long for a yes/no */
#define XFER_KEEPALIVE_MS 5000u                 /* while hashing a long prefix, tell the peer */
#define XFER_SPACE_MARGIN (16ull << 20)         /* free space kept beyond what a transfer needs */
#define XFER_HASH_CHUNK (512u * 1024u)          /* one hashing job's buffer; bytes per read */
#define XFER_ALIGN 4096u                        /* buffers are page-aligned; see xhash_slot */
#define XFER_HASH_SLOTS 8                       /* hashing jobs in flight (memory: 4 MiB) */
#define XFER_HASH_FILE_CHUNK (4u << 20)         /* one job hashing a file range (pread) */
#define XFER_IO_BUF (1u << 20)                  /* frame input and output buffers */
#define XFER_FLUSH_AT (256u * 1024u)            /* sender: small files go out in batches this big */
#define XFER_SMALL_FILE (256u * 1024u)          /* at most this: read, hash and send inline */
#define XFER_COMMIT_FILES 64                    /* small files made durable with one syncfs() */
#define XFER_COMMIT_BYTES (8u << 20)            /* ... or this many bytes of them */
#define XFER_RENAME_TRIES 1000                  /* --rename gives up after "name (999)" */
#define XFER_DRAIN_MS 2000u                     /* after sending ERROR, read the peer out */
/* A drop box (shared receiver: the hub's, `receive --keep-open`). */
#define XFER_MAX_SESSIONS_DEFAULT 16u           /* senders served at once (--max-sessions) */
#define XFER_MAX_PER_ADDR_DEFAULT 4u            /* of them from one IP address (--max-per-address) */
#define XFER_MIN_RATE_DEFAULT 4096u             /* bytes/s a sender must keep up (--min-rate) */
#define XFER_RATE_WINDOW_MS_DEFAULT 60000u      /* ... in every window this long (--rate-window) */
#define XFER_KEEPALIVE_GRACE_MS 10000u          /* a sender hashing a prefix may send KEEPALIVE */
#define XFER_KEEPALIVE_HASH_RATE (8ull << 20)   /* ... for GRACE + prefix / this (bytes/s) */

/* Engine results beyond negative errnos. */
#define XFER_EFILES (-4101)   /* the session ended, but some files failed (see the reports) */
#define XFER_EREFUSED (-4102) /* the receiver declined, or the sender was refused */
#define XFER_EPEER (-4103)    /* the peer sent ERROR (its text is in err) */

/* ---- a connection -------------------------------------------------------------------- */

/* One connected stream socket and how to wait on it. `fd` is non-blocking.
 * `stream` is set when the socket belongs to a tserver (the hub's drop
 * box): reads and writes then go through it, so the server's idle timeout
 * and stop reach the engine. `tls` (borrowed; the caller frees it after
 * the engine returns) is set for a tls:// connection: every byte then
 * goes through the session, never the socket directly (no sendfile, no
 * splice), and data the session holds decrypted counts as readable.
 * `stream` and `tls` are not set together. `cancel_fd` (or -1): readable
 * means give up now (a signal's self-pipe, the drop box's stop timer);
 * checked by every wait. */
typedef struct xfer_watch xfer_watch_t;

typedef struct {
  int fd;
  sk_stream_t *stream;
  sk_tls_t *tls;
  int cancel_fd;
  uint64_t idle_ms; /* 0 = XFER_IDLE_MS_DEFAULT */
  char peer[SK_ENDPOINT_STRLEN]; /* for messages */
  xfer_watch_t *watch; /* a drop box's watch over this session (xfer_guard_watch), or NULL */
} xfer_conn_t;

/* ---- what the engines tell their caller ------------------------------------------- */

typedef struct {
  uint32_t file;         /* index of the entry being moved */
  const char *name;      /* its name (validated on the receiver; local on the sender) */
  uint64_t file_size, file_done; /* bytes of this file, and those in place (resumed prefix included) */
  uint64_t total_size, total_done; /* the same over every file of the manifest */
  uint64_t moved;        /* content bytes carried over the wire in this session */
  uint32_t files_done, files;      /* files finished (any outcome) / in the manifest */
  uint64_t started_ms;   /* when the session began (xfer_now_ms), for rates */
} xfer_progress_t;

/* One file's outcome (SK_XFER_RES_*), reported once per file. */
typedef struct {
  uint32_t index;
  const char *name;     /* as sent */
  const char *stored_as; /* the name it was stored under when renamed, else NULL */
  int status;           /* SK_XFER_RES_* */
  const char *reason;   /* text for failures (receiver's words on the sender), else "" */
  int resumed;          /* the transfer continued a partial file */
} xfer_report_t;

/* One entry as the receiver plans it, for the yes/no question. */
typedef struct {
  const char *name;
  uint64_t size;
  int is_dir;
  const char *note; /* "", "resume from 123 bytes", "exists: will be checked", ... */
} xfer_listing_t;

typedef struct {
  void *ctx;
  /* Receiver: the whole manifest, planned; returns 1 to accept, 0 to
   * decline. `peer` names the sender. NULL = accept. */
  int (*decide)(void *ctx, const char *peer, const xfer_listing_t *entries, uint32_t n,
                uint64_t total, uint64_t need);
  /* Progress, called often (the caller throttles its display). */
  void (*progress)(void *ctx, const xfer_progress_t *p);
  /* A file's outcome. */
  void (*report)(void *ctx, const xfer_report_t *r);
  /* Warnings that do not stop anything ("skipping symlink ..."). */
  void (*warn)(void *ctx, const char *msg);
} xfer_ui_t;

/* Totals of a session, for the summary line and --json. */
typedef struct {
  uint32_t files, dirs;      /* entries of the manifest */
  uint64_t bytes;            /* sum of the file sizes */
  uint64_t moved;            /* content bytes carried over the wire */
  uint32_t stored, identical, failed, resumed;
  uint64_t started_ms, ended_ms; /* monotonic */
  char peer[SK_ENDPOINT_STRLEN];
} xfer_stats_t;

/* ---- TLS ------------------------------------------------------------------------------ */

/* Runs the handshake of c->tls (made by the caller with sk_tls_new on
 * c->fd; server: this side accepted the connection) within timeout_ms
 * (0 = SK_TLS_HANDSHAKE_TIMEOUT_MS), watching c->cancel_fd. A server
 * whose client turns out to be a plain sockit answers it with an SKXF
 * ERROR saying to use tls://. Returns 0, or a negative code with err
 * filled: tls.c's words ("fingerprint mismatch: ...", "unknown issuer:
 * ..."), "TLS handshake timed out" (SK_ETIMEDOUT), "interrupted"
 * (-ECANCELED). After a failure on the peer's bytes (SK_EBADINPUT) the
 * socket has been shut and read out (at most XFER_DRAIN_MS), so the peer
 * sees what was said rather than a reset. */
int xfer_tls_handshake(xfer_conn_t *c, int server, uint64_t timeout_ms, char *err,
                       size_t errlen);
/* Ends c's TLS session, if any: close_notify (best effort, never waits),
 * then frees it and clears c->tls. The socket stays open. */
void xfer_tls_end(xfer_conn_t *c);

/* ---- the sender ---------------------------------------------------------------------- */

typedef struct xfer_manifest xfer_manifest_t;

/* Walks paths (files and directories; a directory is sent with its name
 * and everything under it) and lists what to send. Symlinks and special
 * files under a directory are skipped with a warning; a path given on the
 * command line is followed if it is a symlink. Names are checked with
 * sk_xfer_name_check, so nothing the receiver would refuse is sent.
 * Returns 0 with *out (free with xfer_manifest_free), or a negative code
 * with err filled (no such file, two paths with one name, a bad name,
 * over the protocol's limits). */
int xfer_manifest_build(xfer_manifest_t **out, char *const *paths, int npaths,
                        const xfer_ui_t *ui, char *err, size_t errlen);
void xfer_manifest_free(xfer_manifest_t *m);
/* Gives m a resume key, sent in HELLO: a drop box lets only the holder of
 * the key that started a partial file resume it. */
void xfer_manifest_set_key(xfer_manifest_t *m, const uint8_t key[SK_XFER_KEY_LEN]);
/* The resume key for receiver (the endpoint as the user names it):
 * HMAC-SHA256 of "sockit xfer resume key v1" NUL receiver, keyed with the
 * 32 random bytes of STATE_DIR/xfer-resume.key (made, mode 0600, on first
 * use; state_dir NULL = $XDG_STATE_HOME/sockit or ~/.local/state/sockit).
 * Returns 0, or a negative errno with err filled (no state directory). */
int xfer_resume_key(const char *state_dir, const char *receiver, uint8_t key[SK_XFER_KEY_LEN],
                    char *err, size_t errlen);
uint32_t xfer_manifest_count(const xfer_manifest_t *m);
uint64_t xfer_manifest_bytes(const xfer_manifest_t *m);

/* Sends m over c. Returns 0 when every file is stored (or was already
 * there), XFER_EFILES when the session finished with failed files,
 * XFER_EREFUSED / XFER_EPEER when the receiver declined or gave up (its
 * message in err), or a negative errno / SK_ETIMEDOUT / SK_EBADINPUT with
 * err filled. st is filled in every case. */
int xfer_send(xfer_conn_t *c, const xfer_manifest_t *m, const xfer_ui_t *ui, xfer_stats_t *st,
              char *err, size_t errlen);

/* ---- the receiver ---------------------------------------------------------------------- */

enum { XFER_KEEP = 0, XFER_OVERWRITE = 1, XFER_RENAME = 2 }; /* existing names */

typedef struct {
  int dirfd;            /* the target directory, open (O_DIRECTORY); borrowed */
  const char *dir_name; /* for messages */
  int existing;         /* XFER_KEEP, XFER_OVERWRITE or XFER_RENAME */
  uint32_t max_files;   /* 0 = XFER_MAX_FILES_DEFAULT */
  uint64_t max_total;   /* 0 = XFER_MAX_TOTAL_DEFAULT */
  /* A drop box: the directory is shared by senders who do not trust each
   * other. No file a sender did not write is hashed or compared (an
   * existing name is a clash, never HAVE/CHECK); partial files are named
   * from the sender's resume key (HELLO), so only that sender finds and
   * resumes them, and a keyless sender's are removed when it fails. */
  int shared;
} xfer_recv_opts_t;

/* Receives one sender's transfer over c into o->dirfd. Returns as
 * xfer_send does (XFER_EREFUSED: declined, or the manifest was refused
 * for a name or a limit, with the reason in err). */
int xfer_receive(xfer_conn_t *c, const xfer_recv_opts_t *o, const xfer_ui_t *ui,
                 xfer_stats_t *st, char *err, size_t errlen);

/* ---- the drop box (hub) ----------------------------------------------------------------- */

/* A receiver that serves senders one after the other on its own thread
 * (an sk_tserver with one handler slot), accepting every manifest within
 * its limits, renaming on name clashes. It writes into `dir` (created on
 * first use, relative to the working directory when relative). The event
 * loop it is attached to is only told when it has ended, so disk writes
 * and hashing never stall the loop's other services. */
typedef struct svc_dropbox svc_dropbox_t;

typedef struct {
  const char *dir;      /* copied */
  sk_tls_ctx_t *tls;    /* a server context for a tls:// drop box, else NULL; borrowed
                         * (it must outlive the drop box) */
  uint64_t tls_timeout_ms; /* handshake deadline; 0 = SK_TLS_HANDSHAKE_TIMEOUT_MS */
  uint32_t max_files;   /* 0 = default */
  uint64_t max_total;   /* 0 = default */
  uint64_t idle_ms;     /* 0 = XFER_IDLE_MS_DEFAULT */
  uint64_t grace_ms;    /* at stop, a transfer in progress gets this long; 0 = 2000 */
  const struct xfer_limits *limits; /* sessions and rates; NULL = the defaults */
  int verbose;          /* log a line per sender, not only failures */
  void (*log)(void *ctx, const char *line);
  void *log_ctx;
} svc_dropbox_opts_t;

#define SVC_DROPBOX_DIR "sockit-dropbox"
#define SVC_DROPBOX_HUB_ENDPOINT "tcp://127.0.0.1:9003"

/* Binds ep. Returns 0 or a negative errno with err filled. */
int svc_dropbox_new(svc_dropbox_t **out, const sk_endpoint_t *ep, const sk_sockopts_t *so,
                    const svc_dropbox_opts_t *o, char *err, size_t errlen);
const sk_listener_t *svc_dropbox_listener(const svc_dropbox_t *d);
/* Starts serving on its own thread; loop stays alive (an eventfd watcher)
 * until that thread has ended after svc_dropbox_stop. Call once. */
int svc_dropbox_attach(svc_dropbox_t *d, sk_loop_t *loop);
/* Stops accepting; a transfer in progress gets the grace period, then is
 * cut (its partial file stays for a resume). Safe from any thread. */
void svc_dropbox_stop(svc_dropbox_t *d);
/* Frees d; call after the loop it was attached to has ended. */
void svc_dropbox_free(svc_dropbox_t *d);

/* ---- a drop box's guard: how many senders, how slow -------------------------------------- */

/* Zero fields take the XFER_*_DEFAULT values. */
typedef struct xfer_limits {
  unsigned max_sessions;   /* senders served at once */
  unsigned max_per_addr;   /* of them from one IP address (unix peers are not counted) */
  uint64_t min_rate;       /* bytes/s a sender must move while the receiver waits for it */
  uint64_t rate_window_ms; /* measured over each window this long */
} xfer_limits_t;

/* The sessions of one drop box and a watchdog thread over them: a session
 * that moves fewer than min_rate * window bytes in a window while the
 * receiver waits on it (not while the receiver itself hashes, syncs or
 * asks, nor while its sender hashes a prefix under KEEPALIVE) is ended:
 * its socket is shut down, and xfer_watch_reason says why. */
typedef struct xfer_guard xfer_guard_t;

int xfer_guard_new(xfer_guard_t **out, const xfer_limits_t *lim, char *err, size_t errlen);
/* Ends the watchdog; call after every session has left. */
void xfer_guard_free(xfer_guard_t *g);
const xfer_limits_t *xfer_guard_limits(const xfer_guard_t *g);
/* Admits a session from peer into the counts and, when c is given, puts
 * c under watch (c->watch set; c->fd must be its socket). Returns 0, or
 * -EBUSY when peer's address has max_per_addr sessions already (nothing
 * held then). Every 0 needs its xfer_guard_leave. */
int xfer_guard_enter(xfer_guard_t *g, const sk_sockaddr_t *peer, xfer_conn_t *c);
void xfer_guard_leave(xfer_guard_t *g, const sk_sockaddr_t *peer, xfer_conn_t *c);
/* Tells a plain SKXF sender refused with -EBUSY why (HELLO, then ERROR
 * LIMIT "busy: ..."), best effort and without waiting. */
void xfer_refuse_busy(const xfer_guard_t *g, int fd);
/* Sessions admitted now. */
unsigned xfer_guard_sessions(xfer_guard_t *g);
/* Content bytes the session has moved (from the engine's progress). */
void xfer_watch_progress(xfer_conn_t *c, uint64_t moved);
/* Why the watchdog ended c's session, or NULL if it did not. */
const char *xfer_watch_reason(const xfer_conn_t *c);

/* ---- shared by the engines (xfer_io.c) ------------------------------------------------ */

/* Monotonic clock in milliseconds. */
uint64_t xfer_now_ms(void);
/* "1.50 MiB", "12 bytes": sizes for people. Returns buf. */
char *xfer_human(uint64_t bytes, char *buf, size_t len);

#endif
