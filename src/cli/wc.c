/* wc.c - `sockit wc ENDPOINT [FILE...]`: GNU wc, with the counting done by
 * a `sockit serve wc` server (seed 002, task 3: "an application that asks
 * the user for a file name and sends the file's content to the server; the
 * server counts the words and returns the answer").
 *
 * Every file goes over one connection in SKWC/1 (sockit/wc.h, docs/wc.md),
 * one after another, while the answers come back; they are printed in
 * order, in wc's format and column widths. Regular files go with sendfile()
 * in DATA chunks of their size; anything else (stdin, pipes, /proc files)
 * is read and sent as it comes. Memory stays the same whatever the sizes:
 * one read buffer and a little state per FILE argument.
 */
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <wctype.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "sockit/connector.h"
#include "sockit/wc.h"

#define WC_READ_BUF (256u * 1024u)      /* what is read from a stream at once */
#define WC_SENDFILE_CHUNK (4u << 20)    /* DATA chunk of a regular file */
#define WC_OUT_HDR 256                  /* request lines waiting to be sent */
#define WC_REPLY_BUF (4 * SK_WC_REPLY_MAX)
#define WC_KEEPALIVE_MS 500             /* NOOP when a stream has been quiet this long */
#define WC_NAME_MAX 4096                /* a file name typed at the prompt */
#define WC_ZERO_BUF 65536               /* padding of a chunk whose file shrank */
/* A flag of count_files' what: the names came from a --files0-from that is
 * not a regular file, which GNU wc reads one by one: its columns are then
 * 1 wide (it cannot stat the files beforehand). */
#define SK_WC_STREAMED_NAMES 0x100u

/* ---- one FILE argument -------------------------------------------------------------- */

enum { JOB_WAITING = 0, JOB_SENDING, JOB_SENT, JOB_DONE };

typedef struct {
  const char *name;   /* as given; NULL: standard input, unnamed (no FILE) */
  int state;          /* JOB_* */
  int sent_file;      /* its FILE line went out: one reply will come */
  int local_errno;    /* it could not be opened or read here */
  int shrank;         /* a regular file ended before its size: not counted */
  int zero_line;      /* wc prints zero counts too (read failed before any byte) */
  int ok;             /* counts hold the server's answer */
  sk_wc_counts_t counts;
  char server_error[SK_WC_REPLY_MAX];
} job_t;

/* ---- the connection ------------------------------------------------------------------- */

enum { BODY_NONE = 0, BODY_SENDFILE, BODY_BUF, BODY_ZERO };

typedef struct {
  int sock;
  const char *endpoint;
  sk_wc_locale_t loc;
  unsigned what;
  int width;
  job_t *jobs;
  size_t njobs, next_start, next_reply, next_print;
  /* the file being sent */
  job_t *cur;
  int fd, own_fd, regular, input_ready, read_mode;
  uint64_t file_left;  /* regular: bytes not yet put in a chunk */
  uint64_t chunk_left; /* bytes of the current DATA chunk not yet sent */
  int body;            /* BODY_* */
  char *buf;           /* WC_READ_BUF bytes */
  size_t buf_len, buf_off;
  char hdr[WC_OUT_HDR];
  size_t hdr_len, hdr_off;
  int shut;           /* our write side is shut: every file went out */
  int hello_ok;
  char rbuf[WC_REPLY_BUF];
  size_t rlen;
  int failed;         /* some file got no count: exit 1 */
  int send_errno;     /* why the last send failed */
  int fatal_seen;     /* the server said FATAL (printed) */
  uint64_t last_sent_ms, last_progress_ms, idle_ms;
  sk_wc_counts_t total;
} session_t;

/* Milliseconds of the monotonic clock. */
static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- printing as wc prints -------------------------------------------------------------- */

/* Appends one character of a file name to out in gnulib's shell-escape
 * quoting, which wc uses for names holding a newline: printable text
 * inside '...', the rest as $'\n' or $'\ooo'. *in_dollar tracks whether
 * we are inside a $'...' part. */
static void quote_bytes(FILE *out, const char *p, size_t n, int printable, int *in_dollar) {
  if (printable) {
    if (*in_dollar) {
      fputs("''", out);
      *in_dollar = 0;
    }
    for (size_t i = 0; i < n; i++) {
      if (p[i] == '\'')
        fputs("'\\''", out);
      else
        fputc(p[i], out);
    }
    return;
  }
  if (!*in_dollar) {
    fputs("'$'", out);
    *in_dollar = 1;
  }
  static const char esc_from[] = "\a\b\f\n\r\t\v", esc_to[] = "abfnrtv";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    const char *e = c ? strchr(esc_from, c) : NULL;
    if (e)
      fprintf(out, "\\%c", esc_to[e - esc_from]);
    else
      fprintf(out, "\\%03o", c);
  }
}

/* 1 if name holds a byte or character that is not printable in the
 * counting locale (a control character, an invalid sequence). */
static int needs_quoting(const char *name) {
  size_t len = strlen(name);
  mbstate_t st;
  memset(&st, 0, sizeof st);
  for (size_t i = 0; i < len;) {
    wchar_t wc;
    size_t n = mbrtowc(&wc, name + i, len - i, &st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0 || !iswprint((wint_t)wc))
      return 1;
    i += n;
  }
  return 0;
}

/* Prints a file name: as it is, or quoted in the shell-escape style of
 * gnulib's quotef ('a'$'\033''[Ab') when it holds anything that is not
 * printable in the counting locale, so a name can never write escape
 * sequences to the terminal (GNU wc 9.1 quotes only names with a newline;
 * newer coreutils quote these too). */
static void print_name(FILE *out, const char *name, sk_wc_locale_t loc) {
  locale_t lc = newlocale(LC_CTYPE_MASK, loc == SK_WC_LOCALE_UTF8 ? "C.UTF-8" : "C", (locale_t)0);
  locale_t old = lc ? uselocale(lc) : (locale_t)0;
  if (!needs_quoting(name)) {
    fputs(name, out);
    if (old)
      uselocale(old);
    if (lc)
      freelocale(lc);
    return;
  }
  int in_dollar = 0;
  size_t len = strlen(name);
  mbstate_t st;
  memset(&st, 0, sizeof st);
  fputc('\'', out);
  for (size_t i = 0; i < len;) {
    wchar_t wc;
    size_t n = mbrtowc(&wc, name + i, len - i, &st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
      memset(&st, 0, sizeof st);
      quote_bytes(out, name + i, 1, 0, &in_dollar);
      i++;
      continue;
    }
    quote_bytes(out, name + i, n, iswprint((wint_t)wc) != 0, &in_dollar);
    i += n;
  }
  fputc('\'', out);
  if (old)
    uselocale(old);
  if (lc)
    freelocale(lc);
}

/* One line of counts: the chosen columns in wc's order, each right-aligned
 * to width, one space apart, then the name if there is one. */
static void print_counts(const session_t *s, const sk_wc_counts_t *c, const char *name) {
  const uint64_t v[4] = {c->lines, c->words, c->chars, c->bytes};
  const unsigned bit[4] = {SK_WC_LINES, SK_WC_WORDS, SK_WC_CHARS, SK_WC_BYTES};
  int first = 1;
  for (int i = 0; i < 4; i++) {
    if (!(s->what & bit[i]))
      continue;
    printf(first ? "%*llu" : " %*llu", s->width, (unsigned long long)v[i]);
    first = 0;
  }
  if (name) {
    putchar(' ');
    print_name(stdout, name, s->loc);
  }
  putchar('\n');
}

/* Adds one file's counts to the total line. */
static void add_total(sk_wc_counts_t *t, const sk_wc_counts_t *c) {
  t->lines += c->lines;
  t->words += c->words;
  t->chars += c->chars;
  t->bytes += c->bytes;
}

/* The column width wc uses (compute_number_width): 1 for a single column of
 * a single input; otherwise the digits of the sum of the regular files'
 * sizes, at least 7 when an input is not a regular file. */
static int number_width(const job_t *jobs, size_t n, unsigned what) {
  if (n == 1 && __builtin_popcount(what) == 1)
    return 1;
  uint64_t total = 0;
  int width = 1, min_width = 1;
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    int r = !jobs[i].name || strcmp(jobs[i].name, "-") == 0 ? fstat(STDIN_FILENO, &st)
                                                          : stat(jobs[i].name, &st);
    if (r < 0)
      continue;
    if (S_ISREG(st.st_mode))
      total += (uint64_t)st.st_size;
    else
      min_width = 7;
  }
  for (; total >= 10; total /= 10)
    width++;
  return width < min_width ? min_width : width;
}

/* Prints every job whose outcome is known, in order. */
static void print_ready(session_t *s) {
  while (s->next_print < s->njobs) {
    job_t *j = &s->jobs[s->next_print];
    if (j->state != JOB_DONE)
      return;
    const char *shown = j->name ? j->name : "-";
    if (j->ok) {
      print_counts(s, &j->counts, j->name);
      add_total(&s->total, &j->counts);
    } else {
      fflush(stdout);
      if (j->shrank)
        cli_error("%s: file shrank while being sent: not counted", shown);
      else if (j->local_errno)
        cli_error("%s: %s", shown, strerror(j->local_errno));
      else
        cli_error("%s: server: %s", shown, j->server_error);
      if (j->zero_line) {
        sk_wc_counts_t zero = {0, 0, 0, 0};
        print_counts(s, &zero, j->name);
      }
      s->failed = 1;
    }
    s->next_print++;
  }
}

/* ---- sending ------------------------------------------------------------------------------- */

/* Queues a request line (the header buffer always has room: it holds at
 * most a few short lines). */
static void queue_line(session_t *s, const char *line, long n) {
  if (n > 0 && s->hdr_len + (size_t)n <= sizeof s->hdr) {
    memcpy(s->hdr + s->hdr_len, line, (size_t)n);
    s->hdr_len += (size_t)n;
  }
}

/* Queues "DATA n" and makes n the bytes of the chunk still to send. */
static void queue_data(session_t *s, uint64_t n) {
  char line[SK_WC_LINE_MAX];
  queue_line(s, line, sk_wcp_data(line, sizeof line, n));
  s->chunk_left = n;
}

/* The current file is finished on our side: its FILE..END/ABORT is queued
 * (or nothing was sent at all). */
static void finish_file(session_t *s) {
  job_t *j = s->cur;
  if (s->own_fd)
    close(s->fd);
  s->fd = -1;
  s->own_fd = 0;
  s->body = BODY_NONE;
  j->state = j->sent_file ? JOB_SENT : JOB_DONE;
  s->cur = NULL;
  s->next_start++;
}

/* Starts the next file: opens it and queues its FILE line (a regular file
 * with a known size: also its first DATA line). */
static void start_file(session_t *s) {
  job_t *j = &s->jobs[s->next_start];
  s->cur = j;
  j->state = JOB_SENDING;
  s->read_mode = 0;
  s->regular = 0;
  s->input_ready = 0;
  if (!j->name || strcmp(j->name, "-") == 0) {
    s->fd = STDIN_FILENO;
    s->own_fd = 0;
  } else {
    s->fd = open(j->name, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
      j->local_errno = errno;
      finish_file(s);
      return;
    }
    s->own_fd = 1;
  }
  struct stat st;
  off_t pos = 0;
  if (fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode) &&
      (pos = lseek(s->fd, 0, SEEK_CUR)) >= 0 && st.st_size > pos &&
      (uint64_t)(st.st_size - pos) <= SK_WC_SIZE_MAX) {
    /* The bytes there now are what is counted; a file that shrinks
     * meanwhile is padded and aborted (file_failed), never miscounted. */
    char line[SK_WC_LINE_MAX];
    s->regular = 1;
    s->file_left = (uint64_t)(st.st_size - pos);
    queue_line(s, line, sk_wcp_file(line, sizeof line, (int64_t)s->file_left));
    j->sent_file = 1;
    uint64_t n = s->file_left < WC_SENDFILE_CHUNK ? s->file_left : WC_SENDFILE_CHUNK;
    queue_data(s, n);
    s->file_left -= n;
    s->body = BODY_SENDFILE;
  }
  /* Otherwise a stream: its FILE line goes out with its first read, so a
   * file that cannot be read at all (a directory) costs the server nothing. */
}

/* Reading the current regular file failed with err (0: it ended before
 * its size) in the middle of a chunk: the rest of the chunk is sent as
 * zeros to keep the framing, then ABORT (chunk_done), so the server
 * counts nothing. */
static void file_failed(session_t *s, int err) {
  if (err)
    s->cur->local_errno = err;
  else
    s->cur->shrank = 1;
  s->body = BODY_ZERO;
}

/* The current chunk has gone out: queue what follows it. */
static void chunk_done(session_t *s) {
  s->body = BODY_NONE;
  if (!s->regular)
    return; /* a stream: the next read decides */
  if (s->cur->local_errno || s->cur->shrank) {
    queue_line(s, "ABORT\n", 6);
    finish_file(s);
  } else if (s->file_left == 0) {
    queue_line(s, "END\n", 4);
    finish_file(s);
  } else {
    uint64_t n = s->file_left < WC_SENDFILE_CHUNK ? s->file_left : WC_SENDFILE_CHUNK;
    queue_data(s, n);
    s->file_left -= n;
    s->body = BODY_SENDFILE;
  }
}

/* Reads the next piece of a stream file (the caller saw it readable). */
static void read_stream(session_t *s) {
  char line[SK_WC_LINE_MAX];
  job_t *j = s->cur;
  s->input_ready = 0;
  ssize_t n = read(s->fd, s->buf, WC_READ_BUF);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  s->last_progress_ms = now_ms();
  if (n < 0) {
    j->local_errno = errno;
    if (j->sent_file) {
      queue_line(s, "ABORT\n", 6);
    } else {
      j->zero_line = 1; /* wc prints the error, then zero counts */
    }
    finish_file(s);
    return;
  }
  if (!j->sent_file) {
    queue_line(s, line, sk_wcp_file(line, sizeof line, -1));
    j->sent_file = 1;
  }
  if (n == 0) {
    queue_line(s, "END\n", 4);
    finish_file(s);
    return;
  }
  queue_data(s, (uint64_t)n);
  s->buf_len = (size_t)n;
  s->buf_off = 0;
  s->body = BODY_BUF;
}

/* For a regular file that sendfile() cannot read (some special file
 * systems): the rest of the chunk by read(). */
static void refill_from_file(session_t *s) {
  size_t want = s->chunk_left < WC_READ_BUF ? (size_t)s->chunk_left : WC_READ_BUF;
  ssize_t n;
  do
    n = read(s->fd, s->buf, want);
  while (n < 0 && errno == EINTR);
  if (n <= 0) {
    file_failed(s, n == 0 ? 0 : errno);
    return;
  }
  s->buf_len = (size_t)n;
  s->buf_off = 0;
  s->body = BODY_BUF;
}

enum { PUMP_WAIT = 0, PUMP_ERROR = -1 };

/* A send failed: a peer that closed (it may have said why first: the
 * caller reads that before blaming the send) or another error. Returns
 * PUMP_ERROR. */
static int send_failed(session_t *s, int err) {
  s->send_errno = err;
  if (err != EPIPE && err != ECONNRESET)
    cli_error("send to %s: %s", s->endpoint, strerror(err));
  return PUMP_ERROR;
}

/* Sends as much as the socket takes without blocking. Sets *want_write
 * when the socket is full, *want_input when a stream file must be waited
 * for. Returns PUMP_WAIT, or PUMP_ERROR (the message printed, unless the
 * peer closed: send_failed). */
static int pump(session_t *s, int *want_write, int *want_input) {
  static const char zeros[WC_ZERO_BUF];
  for (;;) {
    if (s->hdr_off < s->hdr_len) {
      int more = s->body != BODY_NONE ? MSG_MORE : 0;
      ssize_t n = send(s->sock, s->hdr + s->hdr_off, s->hdr_len - s->hdr_off, MSG_NOSIGNAL | more);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          *want_write = 1;
          return PUMP_WAIT;
        }
        return send_failed(s, errno);
      }
      s->hdr_off += (size_t)n;
      s->last_sent_ms = s->last_progress_ms = now_ms();
      continue;
    }
    s->hdr_off = s->hdr_len = 0;
    if (s->body != BODY_NONE) {
      ssize_t n;
      if (s->body == BODY_SENDFILE) {
        n = sendfile(s->sock, s->fd, NULL, (size_t)s->chunk_left);
        if (n == 0) {
          file_failed(s, 0); /* the file ended early: it shrank */
          continue;
        }
        if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
          s->read_mode = 1;
          refill_from_file(s);
          continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
            errno != EPIPE && errno != ECONNRESET && errno != ENOTCONN) {
          file_failed(s, errno); /* reading the file failed */
          continue;
        }
      } else if (s->body == BODY_BUF) {
        n = send(s->sock, s->buf + s->buf_off, s->buf_len - s->buf_off, MSG_NOSIGNAL);
      } else {
        size_t k = s->chunk_left < sizeof zeros ? (size_t)s->chunk_left : sizeof zeros;
        n = send(s->sock, zeros, k, MSG_NOSIGNAL);
      }
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          *want_write = 1;
          return PUMP_WAIT;
        }
        return send_failed(s, errno);
      }
      s->chunk_left -= (uint64_t)n;
      s->last_sent_ms = s->last_progress_ms = now_ms();
      if (s->body == BODY_BUF) {
        s->buf_off += (size_t)n;
        if (s->buf_off < s->buf_len)
          continue;
        if (s->chunk_left && s->read_mode) {
          refill_from_file(s);
          continue;
        }
      }
      if (s->chunk_left == 0)
        chunk_done(s);
      continue;
    }
    if (s->cur) {
      /* A regular file always has a chunk going until finish_file; here
       * the current file is a stream waiting for its next read. */
      if (!s->input_ready) {
        *want_input = 1;
        return PUMP_WAIT;
      }
      read_stream(s);
      continue;
    }
    if (s->next_start < s->njobs) {
      start_file(s);
      print_ready(s);
      continue;
    }
    if (!s->shut) {
      shutdown(s->sock, SHUT_WR); /* every file is out: the server sees the end */
      s->shut = 1;
    }
    return PUMP_WAIT;
  }
}

/* ---- receiving ------------------------------------------------------------------------------ */

/* Takes one reply line. Returns 0, or -1 with the message printed. */
static int take_reply(session_t *s, const sk_wcr_reply_t *r) {
  if (r->kind == SK_WCR_FATAL) {
    print_ready(s);
    fflush(stdout);
    cli_error("%s: server: %s", s->endpoint, r->text);
    s->fatal_seen = 1;
    return -1;
  }
  if (!s->hello_ok) {
    if (r->kind != SK_WCR_HELLO) {
      cli_error("%s: the server did not accept SKWC/1", s->endpoint);
      return -1;
    }
    s->hello_ok = 1;
    return 0;
  }
  while (s->next_reply < s->next_start && !s->jobs[s->next_reply].sent_file)
    s->next_reply++;
  job_t *j = s->next_reply < s->njobs ? &s->jobs[s->next_reply] : NULL;
  if (!j || !j->sent_file || j->state != JOB_SENT || r->kind == SK_WCR_HELLO ||
      (r->kind == SK_WCR_COUNTS && (j->local_errno || j->shrank || r->what != s->what))) {
    cli_error("%s: unexpected reply from the server", s->endpoint);
    return -1;
  }
  if (r->kind == SK_WCR_COUNTS) {
    j->counts = r->counts;
    j->ok = 1;
  } else {
    /* A file aborted here keeps its own reason; the server's ERR only
     * confirms it got no count. */
    snprintf(j->server_error, sizeof j->server_error, "%s", r->text);
  }
  j->state = JOB_DONE;
  s->next_reply++;
  print_ready(s);
  return 0;
}

enum { RECV_AGAIN = 0, RECV_EOF = 1, RECV_ERROR = -1 };
#define RECV_ROUNDS 32 /* reads per wakeup, so sending gets its turn */

/* Reads what the server sent (until the socket is empty, at most
 * RECV_ROUNDS reads) and takes every complete reply. Returns RECV_AGAIN,
 * RECV_EOF at the server's end of stream, or RECV_ERROR with the message
 * printed. */
static int receive(session_t *s) {
  for (int round = 0; round < RECV_ROUNDS; round++) {
    ssize_t n = recv(s->sock, s->rbuf + s->rlen, sizeof s->rbuf - s->rlen, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return RECV_AGAIN;
      cli_error("receive from %s: %s", s->endpoint, strerror(errno));
      return RECV_ERROR;
    }
    if (n == 0)
      return RECV_EOF;
    s->rlen += (size_t)n;
    s->last_progress_ms = now_ms();
    size_t off = 0;
    for (;;) {
      sk_wcr_reply_t r;
      char err[SK_ERRLEN];
      long used = sk_wcr_parse(s->rbuf + off, s->rlen - off, &r, err, sizeof err);
      if (used < 0) {
        cli_error("%s: %s", s->endpoint, err);
        return RECV_ERROR;
      }
      if (used == 0)
        break;
      off += (size_t)used;
      if (take_reply(s, &r) < 0)
        return RECV_ERROR;
    }
    memmove(s->rbuf, s->rbuf + off, s->rlen - off);
    s->rlen -= off;
  }
  return RECV_AGAIN;
}

/* The server is gone or going (a send failed): says why, from its last
 * words if it sent a FATAL line (a version it does not speak, say), else
 * from the failed send. */
static void explain_send_failure(session_t *s) {
  struct pollfd pfd = {s->sock, POLLIN, 0};
  int said = 0; /* receive printed why */
  for (int i = 0; i < RECV_ROUNDS; i++) {
    if (poll(&pfd, 1, 0) <= 0)
      break;
    int got = receive(s);
    if (got == RECV_ERROR)
      said = 1;
    if (got != RECV_AGAIN)
      break;
  }
  print_ready(s);
  if (!said && (s->send_errno == EPIPE || s->send_errno == ECONNRESET)) {
    fflush(stdout);
    cli_error("send to %s: %s", s->endpoint, strerror(s->send_errno));
  }
}

/* ---- a whole run -------------------------------------------------------------------------------- */

/* Counts the jobs over one connection and prints the results. Returns the
 * exit code. */
static int run_session(session_t *s, const sk_endpoint_t *ep, const sk_connect_opts_t *co) {
  char err[SK_ERRLEN], line[SK_WC_LINE_MAX];
  sk_connected_t conn;
  if (sk_connect_wait(ep, 1, co, &conn, err, sizeof err) < 0) {
    cli_error("%s", err);
    return EXIT_NET;
  }
  s->sock = conn.fd;
  s->fd = -1;
  s->last_sent_ms = s->last_progress_ms = now_ms();
  queue_line(s, line, sk_wcp_hello(line, sizeof line, s->loc, s->what));
  int code = EXIT_OK;
  while (s->next_print < s->njobs) {
    int want_write = 0, want_input = 0;
    if (pump(s, &want_write, &want_input) == PUMP_ERROR) {
      explain_send_failure(s);
      code = EXIT_NET;
      break;
    }
    print_ready(s);
    if (s->next_print == s->njobs)
      break;
    uint64_t now = now_ms();
    int timeout = -1;
    if (want_input && s->hdr_len == 0) {
      /* Waiting on a quiet stream: keep the server's idle timer from
       * dropping us. */
      if (now - s->last_sent_ms >= WC_KEEPALIVE_MS) {
        queue_line(s, "NOOP\n", 5);
        continue;
      }
      timeout = (int)(WC_KEEPALIVE_MS - (now - s->last_sent_ms));
    }
    if (s->idle_ms) {
      if (now - s->last_progress_ms >= s->idle_ms) {
        cli_error("%s: no progress for %.1f s: giving up", s->endpoint, (double)s->idle_ms / 1000);
        code = EXIT_NET;
        break;
      }
      int left = (int)(s->idle_ms - (now - s->last_progress_ms));
      if (timeout < 0 || left < timeout)
        timeout = left;
    }
    struct pollfd pfd[2] = {{s->sock, (short)(POLLIN | (want_write ? POLLOUT : 0)), 0},
                            {want_input ? s->fd : -1, POLLIN, 0}};
    int r = poll(pfd, 2, timeout);
    if (r < 0 && errno != EINTR) {
      cli_error("poll: %s", strerror(errno));
      code = EXIT_NET;
      break;
    }
    if (r <= 0)
      continue;
    if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
      s->input_ready = 1;
    if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      int got = receive(s);
      if (got == RECV_ERROR) {
        code = EXIT_NET;
        break;
      }
      if (got == RECV_EOF) {
        print_ready(s);
        if (s->next_print < s->njobs) {
          const job_t *j = &s->jobs[s->next_print];
          fflush(stdout);
          cli_error("%s: the server closed the connection before answering for %s",
                    s->endpoint, j->name ? j->name : "-");
          code = EXIT_NET;
        }
        break;
      }
    }
  }
  if (s->cur && s->own_fd)
    close(s->fd);
  close(s->sock);
  if (code == EXIT_OK && s->njobs > 1)
    print_counts(s, &s->total, "total");
  fflush(stdout);
  if (code == EXIT_OK && s->failed)
    code = EXIT_NET;
  return code;
}

/* Counts names[0..n) (NULL names: unnamed standard input). */
static int count_files(const char *endpoint, const sk_endpoint_t *ep, const sk_connect_opts_t *so,
                       sk_wc_locale_t loc, unsigned what, uint64_t idle_ms, char **names,
                       size_t n) {
  session_t *s = calloc(1, sizeof *s);
  job_t *jobs = calloc(n, sizeof *jobs);
  char *buf = malloc(WC_READ_BUF);
  int code = EXIT_NET;
  if (!s || !jobs || !buf) {
    cli_error("out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    jobs[i].name = names[i];
  s->endpoint = endpoint;
  s->loc = loc;
  s->what = what;
  s->jobs = jobs;
  s->njobs = n;
  s->buf = buf;
  s->idle_ms = idle_ms;
  s->width = what & SK_WC_STREAMED_NAMES ? 1 : number_width(jobs, n, what);
  s->what = what & ~SK_WC_STREAMED_NAMES;
  code = run_session(s, ep, so);
out:
  free(buf);
  free(jobs);
  free(s);
  return code;
}

/* ---- the locale ------------------------------------------------------------------------------- */

/* Parses --locale. Returns 0, or -1. */
static int parse_locale(const char *text, sk_wc_locale_t *loc) {
  static const char *const utf8[] = {"C.UTF-8", "C.utf8", "UTF-8", "utf8", "C.UTF8"};
  if (strcmp(text, "C") == 0 || strcmp(text, "POSIX") == 0) {
    *loc = SK_WC_LOCALE_C;
    return 0;
  }
  for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++)
    if (strcmp(text, utf8[i]) == 0) {
      *loc = SK_WC_LOCALE_UTF8;
      return 0;
    }
  return -1;
}

/* The locale wc would count in, from the environment: setlocale(LC_ALL,
 * "") as wc calls it (a locale that is not installed leaves C), then the
 * character set of LC_CTYPE. Returns 0, or -1 for a character set other
 * than ASCII and UTF-8 (the service counts those two only). */
static int env_locale(sk_wc_locale_t *loc, char *name, size_t len) {
  int r = 0;
  *loc = SK_WC_LOCALE_C;
  if (setlocale(LC_ALL, "")) {
    const char *cs = nl_langinfo(CODESET);
    snprintf(name, len, "%s (%s)", setlocale(LC_CTYPE, NULL), cs);
    if (strcmp(cs, "UTF-8") == 0)
      *loc = SK_WC_LOCALE_UTF8;
    else if (strcmp(cs, "ANSI_X3.4-1968") != 0)
      r = -1;
  }
  setlocale(LC_ALL, "C");
  return r;
}

/* ---- the command -------------------------------------------------------------------------------- */

/* Asks for file names on a terminal, one at a time, and counts each over
 * its own connection (a person may think for a while between two). */
static int interactive(const char *endpoint, const sk_endpoint_t *ep, const sk_connect_opts_t *so,
                       sk_wc_locale_t loc, unsigned what, uint64_t idle_ms) {
  char name[WC_NAME_MAX];
  int code = EXIT_OK;
  for (;;) {
    fputs("file name (empty line or Ctrl-D to end): ", stderr);
    fflush(stderr);
    if (!fgets(name, sizeof name, stdin)) {
      fputc('\n', stderr);
      break;
    }
    size_t n = strlen(name);
    if (n && name[n - 1] == '\n')
      name[--n] = '\0';
    else if (n == sizeof name - 1) {
      cli_error("file name longer than %d bytes", WC_NAME_MAX - 2);
      int c;
      while ((c = getchar()) != EOF && c != '\n')
        ;
      code = EXIT_NET;
      continue;
    }
    if (n == 0)
      break;
    char *names[1] = {name};
    int r = count_files(endpoint, ep, so, loc, what, idle_ms, names, 1);
    if (r != EXIT_OK)
      code = r;
  }
  return code;
}

/* The command line, filled by the option table. */
typedef struct {
  int lines, words, chars, bytes, version;
  const char *locale, *files0_from;
  uint64_t connect_timeout_ms, idle_ms;
} wc_opts_t;

static const cli_opt_t options[] = {
    {CLI_OPT_GROUP, .help = "Options:"},
    {CLI_ROW(CLI_OPT_FLAG, 'l', "lines", NULL, "print the newline counts",
             offsetof(wc_opts_t, lines))},
    {CLI_ROW(CLI_OPT_FLAG, 'w', "words", NULL, "print the word counts", offsetof(wc_opts_t, words))},
    {CLI_ROW(CLI_OPT_FLAG, 'm', "chars", NULL, "print the character counts",
             offsetof(wc_opts_t, chars))},
    {CLI_ROW(CLI_OPT_FLAG, 'c', "bytes", NULL, "print the byte counts", offsetof(wc_opts_t, bytes))},
    {CLI_ROW(CLI_OPT_STRING, 0, "files0-from", "F",
             "count the files named in F, each name ended by a NUL (- : stdin)",
             offsetof(wc_opts_t, files0_from)),
     .complete = "file"},
    {CLI_ROW(CLI_OPT_STRING, 0, "locale", "LOC",
             "count as wc in C or C.UTF-8 (default: LC_ALL/LC_CTYPE/LANG)",
             offsetof(wc_opts_t, locale))},
    {CLI_ROW(CLI_OPT_SECONDS, 0, "connect-timeout", "SECS", "give up connecting after SECS",
             offsetof(wc_opts_t, connect_timeout_ms))},
    {CLI_ROW(CLI_OPT_SECONDS, 0, "idle-timeout", "SECS",
             "give up (exit 1) after SECS without progress", offsetof(wc_opts_t, idle_ms))},
    {CLI_ROW(CLI_OPT_FLAG, 0, "version", NULL, "print sockit's version and exit",
             offsetof(wc_opts_t, version))},
    {CLI_OPT_END}};

#define WC_FILES0_MAX (64u << 20) /* the most --files0-from reads */

/* Reads the NUL-separated names of path ("-": standard input) into a list
 * (*buf owns the bytes; *names points into it). Returns how many, or -1
 * after printing why. A zero-length name is reported and counted in *bad,
 * as GNU wc does. */
static long read_files0(const char *path, char **buf, char ***names, int *bad) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) {
    cli_error("cannot open '%s' for reading: %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 65536, len = 0;
  char *b = malloc(cap + 1);
  long n = -1;
  while (b) {
    if (len == cap) {
      char *nb = cap < WC_FILES0_MAX ? realloc(b, cap * 2 + 1) : NULL;
      if (!nb) {
        cli_error("%s: more than %u MiB of names", path, WC_FILES0_MAX >> 20);
        break;
      }
      b = nb;
      cap *= 2;
    }
    size_t got = fread(b + len, 1, cap - len, f);
    len += got;
    if (got == 0) {
      if (ferror(f))
        cli_error("%s: read error", path);
      else
        n = 0;
      break;
    }
  }
  if (f != stdin)
    fclose(f);
  if (n < 0) {
    free(b);
    return -1;
  }
  if (len && b[len - 1] != '\0')
    b[len++] = '\0'; /* the last name may lack its NUL */
  size_t count = 0;
  for (size_t i = 0; i < len; i++)
    count += b[i] == '\0';
  char **list = calloc(count ? count : 1, sizeof *list);
  if (!list) {
    free(b);
    cli_error("out of memory");
    return -1;
  }
  size_t k = 0;
  for (size_t i = 0, start = 0; i < len; i++) {
    if (b[i] != '\0')
      continue;
    k++;
    if (i == start) /* as GNU wc: said, skipped, and the exit code is 1 */
      cli_error("%s:%zu: invalid zero-length file name", path, k), (*bad)++;
    else
      list[n++] = b + start;
    start = i + 1;
  }
  *buf = b;
  *names = list;
  return n;
}

/* `sockit wc`: options, locale, endpoint, then the files (or the prompt).
 * Returns the exit code. */
static int run(int argc, char **argv) {
  wc_opts_t o;
  memset(&o, 0, sizeof o);
  int first;
  if (cli_opts_parse("wc", options, &o, argc, argv, &first) < 0)
    return EXIT_USAGE;
  if (o.version) {
    printf("sockit wc %s\n", sk_version());
    return EXIT_OK;
  }
  unsigned what = (o.lines ? SK_WC_LINES : 0) | (o.words ? SK_WC_WORDS : 0) |
                  (o.chars ? SK_WC_CHARS : 0) | (o.bytes ? SK_WC_BYTES : 0);
  if (what == 0)
    what = SK_WC_LINES | SK_WC_WORDS | SK_WC_BYTES;
  if (first >= argc)
    return cli_usage_error("wc", "missing ENDPOINT");
  if (o.files0_from && first + 1 < argc)
    return cli_usage_error("wc", "extra operand '%s': file operands cannot be combined with "
                                 "--files0-from", argv[first + 1]);
  sk_wc_locale_t loc;
  if (o.locale) {
    if (parse_locale(o.locale, &loc) < 0)
      return cli_usage_error("wc", "bad --locale '%s': C or C.UTF-8", o.locale);
  } else {
    char name[256] = "";
    if (env_locale(&loc, name, sizeof name) < 0)
      return cli_usage_error("wc", "the locale %s is not one the service counts in: "
                                   "use --locale C or --locale C.UTF-8", name);
  }
  char err[SK_ERRLEN], shown[SK_ENDPOINT_STRLEN];
  sk_endpoint_t ep;
  if (sk_endpoint_parse(&ep, argv[first], SK_EP_CONNECT, err, sizeof err) < 0)
    return cli_usage_error("wc", "%s", err);
  if (!sk_endpoint_is_connected(&ep) || ep.kind == SK_EP_UNIX_SEQPACKET)
    return cli_usage_error("wc", "wc needs a stream endpoint (tcp or unix), not '%s'",
                           argv[first]);
  sk_endpoint_format(&ep, shown, sizeof shown);
  sk_sockopts_t so;
  memset(&so, 0, sizeof so);
  so.nodelay = 1;
  sk_connect_opts_t co;
  memset(&co, 0, sizeof co);
  co.so = &so;
  co.attempt_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : 130000;
  co.timeout_ms = o.connect_timeout_ms;
  first++;
  if (o.files0_from) {
    char *buf = NULL, **names = NULL;
    int bad = 0;
    long n = read_files0(o.files0_from, &buf, &names, &bad);
    if (n < 0)
      return EXIT_NET;
    struct stat st;
    int regular = strcmp(o.files0_from, "-") != 0 && stat(o.files0_from, &st) == 0 &&
                  S_ISREG(st.st_mode);
    unsigned how = what | (regular ? 0 : SK_WC_STREAMED_NAMES);
    int code = n == 0 ? EXIT_OK
                      : count_files(shown, &ep, &co, loc, how, o.idle_ms, names, (size_t)n);
    if (bad && code == EXIT_OK)
      code = EXIT_NET;
    free(names);
    free(buf);
    return code;
  }
  if (first == argc && isatty(STDIN_FILENO))
    return interactive(shown, &ep, &co, loc, what, o.idle_ms);
  if (first == argc) {
    char *unnamed[1] = {NULL};
    return count_files(shown, &ep, &co, loc, what, o.idle_ms, unnamed, 1);
  }
  return count_files(shown, &ep, &co, loc, what, o.idle_ms, argv + first, (size_t)(argc - first));
}

const cli_command_t cli_wc = {
    .name = "wc",
    .run = run,
    .summary = "count lines, words, chars of files on a `serve wc` server, as GNU wc",
    .usage = "Usage: sockit wc [OPTIONS] ENDPOINT [FILE...]\n"
             "       sockit wc [OPTIONS] --files0-from=F ENDPOINT\n"
             "\n"
             "Prints newline, word and byte counts for each FILE, and a total line if\n"
             "more than one FILE is given, exactly as GNU wc does; the counting is done\n"
             "by the `sockit serve wc` server at ENDPOINT (tcp or unix). With no FILE,\n"
             "or when FILE is -, reads standard input; with no FILE and a terminal on\n"
             "standard input, asks for file names, one at a time (an empty line or\n"
             "Ctrl-D ends). A name holding a control character is printed quoted\n"
             "('a'$'\\033''[Ab'), never raw.\n"
             "\n",
    .options = options,
    .usage_tail = "\n"
                  "Exit status: 0 when every file was counted, 1 when one could not be\n"
                  "(missing, unreadable, or the server refused it) or on a network error,\n"
                  "2 on a usage error.\n"
                  "\n"
                  "Examples:\n"
                  "  sockit serve wc tcp://127.0.0.1:9393 &\n"
                  "  sockit wc tcp://127.0.0.1:9393 README.md docs/*.md\n"
                  "  cat big.log | sockit wc -l unix:/run/wc.sock\n"
                  "  find . -name '*.c' -print0 | sockit wc --files0-from=- tcp://127.0.0.1:9393\n",
};
