/* xfer_ui.c - the terminal side of `sockit send` and `sockit receive`:
 * progress, the yes/no question over a manifest, the summary, --json.
 *
 * On a terminal (stderr) a progress line is redrawn at most ten times a
 * second; when stderr is not a terminal nothing but errors is printed.
 * Every name printed comes from sk_xfer_name_escape, so a name can never
 * move the cursor, change colours or hide what follows. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/xfer_ui.h"

#define DRAW_EVERY_MS 100
#define RATE_WINDOW_MS 500
#define LIST_NAME_MAX 1024 /* bytes of an escaped name in a listing */

/* ---- small helpers ----------------------------------------------------------------- */

/* name (NUL-terminated) made safe to print, in buf. */
static const char *esc(const char *name, char *buf, size_t len) {
  sk_xfer_name_escape(name, strlen(name), buf, len);
  return buf;
}

/* The --json word of a RESULT status. */
static const char *status_word(int status) {
  static const char *const words[] = {"stored", "identical", "bad_hash",
                                      "changed", "exists", "failed"};
  return status >= 0 && status <= SK_XFER_RES_LAST ? words[status] : "?";
}

/* "1:05" or "1:02:03"; "--:--" when unknown (secs < 0) or absurd. */
static void eta_text(double secs, char *buf, size_t len) {
  if (!(secs >= 0) || secs > 359999) {
    snprintf(buf, len, "--:--");
    return;
  }
  unsigned s = (unsigned)(secs + 0.5);
  if (s >= 3600)
    snprintf(buf, len, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, len, "%u:%02u", s / 60, s % 60);
}

/* Columns of the terminal on stderr (80 when unknown). */
static int term_width(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
    return ws.ws_col;
  return 80;
}

/* Wipes the progress line, if one is shown, before other output. */
static void clear_line(xui_t *u) {
  if (u->drawn) {
    fputs("\r\x1b[K", stderr);
    u->drawn = 0;
  }
}

/* Keeps a failure or a rename for --json (copied; dropped if out of memory). */
static void add_item(xui_t *u, const char *name, const char *detail, int status) {
  if (u->nitems == u->cap) {
    size_t cap = u->cap ? u->cap * 2 : 16;
    xui_item_t *grown = realloc(u->items, cap * sizeof *grown);
    if (!grown)
      return;
    u->items = grown;
    u->cap = cap;
  }
  xui_item_t *it = &u->items[u->nitems];
  it->name = strdup(name);
  it->detail = strdup(detail ? detail : "");
  it->status = status;
  if (it->name && it->detail)
    u->nitems++;
  else {
    free(it->name);
    free(it->detail);
  }
}

/* ---- engine callbacks -------------------------------------------------------------- */

/* Engine callback: a warning, on its own line. */
static void on_warn(void *ctx, const char *msg) {
  xui_t *u = ctx;
  clear_line(u);
  cli_error("warning: %s", msg);
}

/* Engine callback: a file's outcome. Failures are errors, printed
 * always; renames are shown on a terminal. */
static void on_report(void *ctx, const xfer_report_t *r) {
  xui_t *u = ctx;
  char a[LIST_NAME_MAX], b[LIST_NAME_MAX];
  if (r->status == SK_XFER_RES_STORED || r->status == SK_XFER_RES_IDENTICAL) {
    if (r->stored_as) {
      add_item(u, r->name, r->stored_as, r->status);
      if (u->tty && !u->quiet) {
        clear_line(u);
        cli_error("'%s' stored as '%s'", esc(r->name, a, sizeof a), esc(r->stored_as, b, sizeof b));
      }
    }
    return;
  }
  add_item(u, r->name, r->reason, r->status);
  clear_line(u);
  cli_error("'%s': %s", esc(r->name, a, sizeof a), r->reason[0] ? r->reason : status_word(r->status));
}

/* Cuts s (UTF-8) to at most cols characters, in place. */
static void fit(char *s, int cols) {
  int n = 0;
  for (char *p = s; *p; p++)
    if (((unsigned char)*p & 0xc0) != 0x80 && ++n > cols) {
      if (cols >= 3) {
        /* leave room for "..." */
        char *q = s;
        int k = 0;
        for (; *q; q++)
          if (((unsigned char)*q & 0xc0) != 0x80 && ++k > cols - 3)
            break;
        strcpy(q, "...");
      } else {
        *p = '\0';
      }
      return;
    }
}

/* Engine callback: redraws the progress line on a terminal, at most every
 * DRAW_EVERY_MS, and always when a file completes. The rate is smoothed
 * over RATE_WINDOW_MS. */
static void on_progress(void *ctx, const xfer_progress_t *p) {
  xui_t *u = ctx;
  if (!u->tty || u->quiet)
    return;
  uint64_t now = xfer_now_ms();
  if (u->rate_at == 0) {
    u->rate_at = now;
    u->rate_moved = p->moved;
  } else if (now - u->rate_at >= RATE_WINDOW_MS) {
    double inst = (double)(p->moved - u->rate_moved) * 1000.0 / (double)(now - u->rate_at);
    u->rate = u->rate > 0 ? 0.5 * u->rate + 0.5 * inst : inst;
    u->rate_at = now;
    u->rate_moved = p->moved;
  }
  if (now - u->last_draw < DRAW_EVERY_MS && p->file_done < p->file_size)
    return;
  double rate = u->rate; /* before the first window has passed: the average so far */
  if (rate <= 0)
    rate = (double)p->moved * 1000.0 / (double)(now > p->started_ms ? now - p->started_ms : 1);
  u->last_draw = now;
  char fd[32], fs[32], rs[32], td[32], ts[32], eta1[16], eta2[16], name[LIST_NAME_MAX];
  double fpct = p->file_size ? 100.0 * (double)p->file_done / (double)p->file_size : 100.0;
  double tpct = p->total_size ? 100.0 * (double)p->total_done / (double)p->total_size : 100.0;
  eta_text(rate > 0 ? (double)(p->file_size - p->file_done) / rate : -1, eta1, sizeof eta1);
  eta_text(rate > 0 ? (double)(p->total_size - p->total_done) / rate : -1, eta2, sizeof eta2);
  char tail[256];
  snprintf(tail, sizeof tail, " %3.0f%% %s/%s %s/s ETA %s | total %3.0f%% %s/%s ETA %s", fpct,
           xfer_human(p->file_done, fd, sizeof fd), xfer_human(p->file_size, fs, sizeof fs),
           xfer_human((uint64_t)rate, rs, sizeof rs),
           eta1, tpct, xfer_human(p->total_done, td, sizeof td),
           xfer_human(p->total_size, ts, sizeof ts), eta2);
  char head[32];
  snprintf(head, sizeof head, "[%u/%u] ", p->files_done + 1 > p->files ? p->files : p->files_done + 1,
           p->files);
  esc(p->name ? p->name : "", name, sizeof name);
  int room = term_width() - 1 - (int)strlen(head) - (int)strlen(tail);
  fit(name, room < 8 ? 8 : room);
  fprintf(stderr, "\r%s%s%s\x1b[K", head, name, tail);
  fflush(stderr);
  u->drawn = 1;
}

/* The receiver's question: the whole manifest, then yes or no. */
static int on_decide(void *ctx, const char *peer, const xfer_listing_t *e, uint32_t n,
                     uint64_t total, uint64_t need) {
  xui_t *u = ctx;
  char h[32], h2[32], name[LIST_NAME_MAX];
  uint32_t files = 0, dirs = 0;
  for (uint32_t i = 0; i < n; i++)
    e[i].is_dir ? dirs++ : files++;
  if (u->yes) {
    if (u->tty && !u->quiet)
      cli_error("receiving %u file%s (%s) from %s into %s", files, files == 1 ? "" : "s",
                xfer_human(total, h, sizeof h), peer, u->dir);
    return 1;
  }
  if (!isatty(STDIN_FILENO)) {
    cli_error("not accepting %u file%s (%s) from %s: standard input is not a terminal, so "
              "nobody can be asked; use --yes to accept without asking",
              files, files == 1 ? "" : "s", xfer_human(total, h, sizeof h), peer);
    return 0;
  }
  clear_line(u);
  fprintf(stderr, "sockit: %s offers %u file%s and %u director%s, %s in all:\n", peer, files,
          files == 1 ? "" : "s", dirs, dirs == 1 ? "y" : "ies", xfer_human(total, h, sizeof h));
  for (uint32_t i = 0; i < n; i++) {
    esc(e[i].name, name, sizeof name);
    if (e[i].is_dir)
      fprintf(stderr, "  %10s  %s/", "", name);
    else
      fprintf(stderr, "  %10s  %s", xfer_human(e[i].size, h, sizeof h), name);
    if (e[i].note && e[i].note[0])
      fprintf(stderr, "   (%s)", e[i].note);
    fputc('\n', stderr);
  }
  fprintf(stderr, "sockit: %s to write into %s\n", xfer_human(need, h2, sizeof h2), u->dir);
  fprintf(stderr, "Accept? [y/N] ");
  fflush(stderr);
  char line[64];
  if (!fgets(line, sizeof line, stdin))
    return 0;
  return line[0] == 'y' || line[0] == 'Y';
}

void xui_init(xui_t *u, xfer_ui_t *ui, const char *verb) {
  memset(u, 0, sizeof *u);
  u->verb = verb;
  u->tty = isatty(STDERR_FILENO);
  memset(ui, 0, sizeof *ui);
  ui->ctx = u;
  ui->warn = on_warn;
  ui->report = on_report;
  ui->progress = on_progress;
  ui->decide = on_decide;
}

/* ---- summary and JSON --------------------------------------------------------------- */

/* Writes s as a JSON string (names are valid UTF-8 by then). */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

void xui_finish(xui_t *u, int rc, const char *err, const xfer_stats_t *st, const char *role,
                const char *dir) {
  clear_line(u);
  double secs = st->ended_ms > st->started_ms ? (double)(st->ended_ms - st->started_ms) / 1000.0 : 0;
  double mibs = secs > 0 ? (double)st->moved / 1048576.0 / secs : 0;
  char h[32], h2[32];
  if (rc != 0 && err && err[0])
    cli_error("%s", err);
  if (u->tty && !u->quiet && (rc == 0 || rc == XFER_EFILES))
    cli_error("%s %u file%s (%s, %s moved) %s %s in %.2f s, %.1f MiB/s; %u stored, %u resumed, "
              "%u identical, %u failed",
              u->verb, st->files, st->files == 1 ? "" : "s", xfer_human(st->bytes, h, sizeof h),
              xfer_human(st->moved, h2, sizeof h2), strcmp(role, "send") == 0 ? "to" : "from",
              st->peer, secs, mibs, st->stored, st->resumed, st->identical, st->failed);
  if (u->json) {
    const char *status = rc == 0 ? "ok" : rc == XFER_EFILES ? "failed" : "error";
    printf("{\"role\":");
    json_str(stdout, role);
    printf(",\"status\":\"%s\",\"peer\":", status);
    json_str(stdout, st->peer);
    if (dir) {
      printf(",\"dir\":");
      json_str(stdout, dir);
    }
    printf(",\"files\":%u,\"dirs\":%u,\"bytes\":%llu,\"moved\":%llu,\"stored\":%u,"
           "\"identical\":%u,\"resumed\":%u,\"failed\":%u,\"seconds\":%.3f,\"mib_per_sec\":%.1f",
           st->files, st->dirs, (unsigned long long)st->bytes, (unsigned long long)st->moved,
           st->stored, st->identical, st->resumed, st->failed, secs, mibs);
    if (rc != 0 && rc != XFER_EFILES) {
      printf(",\"error\":");
      json_str(stdout, err ? err : "");
    }
    printf(",\"failures\":[");
    int first = 1;
    for (size_t i = 0; i < u->nitems; i++) {
      if (u->items[i].status <= SK_XFER_RES_IDENTICAL)
        continue;
      printf("%s{\"name\":", first ? "" : ",");
      json_str(stdout, u->items[i].name);
      printf(",\"status\":\"%s\",\"reason\":", status_word(u->items[i].status));
      json_str(stdout, u->items[i].detail);
      putchar('}');
      first = 0;
    }
    printf("],\"renamed\":[");
    first = 1;
    for (size_t i = 0; i < u->nitems; i++) {
      if (u->items[i].status > SK_XFER_RES_IDENTICAL)
        continue;
      printf("%s{\"name\":", first ? "" : ",");
      json_str(stdout, u->items[i].name);
      printf(",\"stored_as\":");
      json_str(stdout, u->items[i].detail);
      putchar('}');
      first = 0;
    }
    printf("]}\n");
    fflush(stdout);
  }
  for (size_t i = 0; i < u->nitems; i++) {
    free(u->items[i].name);
    free(u->items[i].detail);
  }
  u->nitems = 0;
  u->rate = 0;
  u->rate_at = 0;
  u->last_draw = 0;
}

void xui_free(xui_t *u) {
  for (size_t i = 0; i < u->nitems; i++) {
    free(u->items[i].name);
    free(u->items[i].detail);
  }
  free(u->items);
  memset(u, 0, sizeof *u);
}

/* ---- signals, sizes, endpoints, connections ----------------------------------------- */

static int signal_pipe[2] = {-1, -1};

/* SIGINT/SIGTERM: one byte into the self-pipe (async-signal-safe). */
static void on_signal(int signo) {
  (void)signo;
  int saved = errno;
  ssize_t r = write(signal_pipe[1], "x", 1);
  (void)r;
  errno = saved;
}

int xui_signal_pipe(void) {
  if (signal_pipe[0] >= 0)
    return signal_pipe[0];
  if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
    return -1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  return signal_pipe[0];
}

int xui_parse_size(const char *text, uint64_t *out) {
  char *end;
  errno = 0;
  if (text[0] < '0' || text[0] > '9')
    return -1;
  double v = strtod(text, &end);
  if (errno || end == text)
    return -1;
  double mul = 1;
  switch (*end) {
  case 'k': case 'K': mul = 1024.0; end++; break;
  case 'm': case 'M': mul = 1048576.0; end++; break;
  case 'g': case 'G': mul = 1073741824.0; end++; break;
  case 't': case 'T': mul = 1099511627776.0; end++; break;
  default: break;
  }
  if (*end == 'i' || *end == 'I')
    end++;
  if (*end == 'b' || *end == 'B')
    end++;
  if (*end != '\0' || !(v >= 0) || v * mul > 1.8e19)
    return -1;
  *out = (uint64_t)llround(v * mul);
  return 0;
}

int xui_endpoint(const char *cmd, const char *text, sk_ep_mode_t mode, sk_endpoint_t *ep) {
  char err[SK_ERRLEN];
  if (sk_endpoint_parse(ep, text, mode, err, sizeof err) < 0)
    return cli_usage_error(cmd, "%s", err);
  if (ep->kind == SK_EP_STDIO || sk_endpoint_socktype(ep) != SOCK_STREAM)
    return cli_usage_error(cmd, "'%s': a file transfer needs a stream endpoint (tcp://..., "
                                "tls://... or unix:...)", text);
  return 0;
}

int xui_tls_setup(const char *cmd, cli_tls_t *t, const sk_endpoint_t *ep, int listens,
                  sk_tls_ctx_t **ctx) {
  *ctx = NULL;
  if (!(ep->flags & SK_EP_TLS))
    return t->any ? cli_usage_error(cmd, "TLS options need a tls:// endpoint") : 0;
  if (listens && t->cfg.pin)
    return cli_usage_error(cmd, "--pin is for the side that connects; this side listens (give "
                                "it --self-signed or --cert/--key, and the other side --pin)");
  char name[SK_ENDPOINT_STRLEN];
  sk_endpoint_format(ep, name, sizeof name);
  *ctx = cli_tls_context(t, listens, name);
  if (*ctx)
    return 0;
  return !listens && t->cfg.pin && t->cfg.insecure ? EXIT_USAGE : EXIT_NET;
}

int xui_tls_start(xfer_conn_t *c, sk_tls_ctx_t *ctx, const cli_tls_t *t, const char *peer_name,
                  int verbose) {
  char err[SK_ERRLEN];
  if (!ctx)
    return 0;
  int r = sk_tls_new(&c->tls, ctx, c->fd, peer_name);
  if (r < 0) {
    c->tls = NULL;
    cli_error("tls %s: %s", c->peer, sk_strerror(r));
    return r;
  }
  r = xfer_tls_handshake(c, !peer_name, t->handshake_ms, err, sizeof err);
  if (r == SK_EBADINPUT && !peer_name && strstr(err, "alert")) {
    /* As the server, a client's alert is what its verification said of
     * our certificate: tell this side's user what the peer needs. */
    char fp[SK_TLS_FINGERPRINT_LEN];
    cli_error("tls %s: the peer ended the handshake (%s); if it does not trust this "
              "certificate, it needs --pin %s, or --ca with the CA that signed it",
              c->peer, err, sk_tls_ctx_fingerprint(ctx, fp, sizeof fp));
  } else if (r == SK_EBADINPUT && strncmp(err, "protocol version", 16) == 0) {
    cli_error("tls %s: %s; if the other side is a sockit on a tcp:// endpoint, give it a "
              "tls:// one", c->peer, err);
  } else if (r < 0) {
    cli_error("tls %s: %s", c->peer, err);
  }
  if (r < 0) {
    sk_tls_free(c->tls);
    c->tls = NULL;
    return r;
  }
  if (verbose) {
    char how[96], fp[SK_TLS_FINGERPRINT_LEN];
    cli_error("tls %s: %s, peer certificate %s", c->peer,
              sk_tls_describe(c->tls, how, sizeof how),
              sk_tls_peer_fingerprint(c->tls, fp, sizeof fp)[0] ? fp : "(none)");
  }
  return 0;
}

int xui_listen(sk_listener_t *l, const sk_endpoint_t *ep, const char *port_file) {
  char err[SK_ERRLEN];
  sk_sockopts_t so = {.nodelay = 1};
  if (sk_listener_open(l, ep, &so, err, sizeof err) < 0) {
    cli_error("%s", err);
    return EXIT_NET;
  }
  if (isatty(STDERR_FILENO) || ((ep->kind == SK_EP_TCP) && ep->port == 0))
    cli_announce_listener(l);
  if (port_file && cli_write_port_file(port_file, l) < 0) {
    sk_listener_close(l);
    return EXIT_NET;
  }
  return 0;
}

int xui_accept(const sk_listener_t *l, int cancel_fd, char *peer, size_t peerlen) {
  for (;;) {
    struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN}, {.fd = cancel_fd, .events = POLLIN}};
    int n = poll(p, cancel_fd >= 0 ? 2 : 1, -1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      cli_error("poll: %s", strerror(errno));
      return -errno;
    }
    if (cancel_fd >= 0 && p[1].revents)
      return -ECANCELED;
    sk_sockaddr_t sa;
    int shed, fd = sk_net_accept_or_shed(l->fd, &sa, &shed);
    if (shed)
      cli_error("accept: %s; closing new connections until descriptors are free",
                sk_strerror(shed));
    if (fd == SK_EAGAIN)
      continue;
    if (fd < 0) {
      cli_error("accept: %s", sk_strerror(fd));
      return fd;
    }
    int one = 1;
    if (sa.ss.ss_family == AF_INET || sa.ss.ss_family == AF_INET6)
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (sa.ss.ss_family == AF_UNIX) {
      snprintf(peer, peerlen, "%s", "unix peer");
    } else {
      sk_sockaddr_format(&sa, peer, peerlen);
    }
    return fd;
  }
}
