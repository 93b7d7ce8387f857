/* serve_xfer.c - the file drop box as a member of `sockit serve`.
 *
 * A drop box is not an event-loop service: it runs its transfers on its own
 * thread (see src/services/xfer_dropbox.c), so a disk write or a hash never
 * stalls the services on the loop. Here it is only configured, listed,
 * attached to loop 0 (which it keeps alive until it has finished), stopped
 * and freed, the way serve.c handles relays.
 *
 * A tls:// LISTEN terminates TLS in the drop box's thread with the hub's
 * certificate: the context serve.c makes from its --cert/--key or
 * --self-signed for every tls:// endpoint, handed over with
 * serve_xfer_use_tls (borrowed: serve.c frees it after serve_xfer_free). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/serve_xfer.h"
#include "cli/xfer_ui.h"
#include "services/xfer.h"

#define MAX_DROPBOXES 16

static svc_dropbox_t *boxes[MAX_DROPBOXES];
static int nboxes;
static sk_tls_ctx_t *hub_tls;      /* the hub's server context, or NULL */
static uint64_t hub_tls_timeout_ms; /* and its --tls-timeout */

void serve_xfer_use_tls(sk_tls_ctx_t *ctx, uint64_t handshake_ms) {
  hub_tls = ctx;
  hub_tls_timeout_ms = handshake_ms;
}

/* A drop box's log line, on stderr with its prefix. */
static void box_log(void *ctx, const char *line) {
  (void)ctx;
  cli_error("xfer: %s", line);
}

/* Binds one drop box (a tls:// one with the hub's context). Returns
 * EXIT_OK or EXIT_NET / EXIT_USAGE. */
static int add(const char *endpoint, svc_dropbox_opts_t *o) {
  char err[SK_ERRLEN];
  sk_endpoint_t ep;
  if (nboxes == MAX_DROPBOXES) {
    cli_error("xfer: at most %d drop boxes", MAX_DROPBOXES);
    return EXIT_USAGE;
  }
  if (sk_endpoint_parse(&ep, endpoint, SK_EP_LISTEN, err, sizeof err) < 0) {
    cli_error("xfer: %s", err);
    return EXIT_USAGE;
  }
  if (ep.flags & SK_EP_TLS) {
    if (!hub_tls) {
      cli_error("xfer %s: a tls:// drop box needs the hub's certificate: sockit serve --cert "
                "FILE --key FILE, or --self-signed", endpoint);
      return EXIT_USAGE;
    }
    o->tls = hub_tls;
    o->tls_timeout_ms = hub_tls_timeout_ms;
  }
  o->log = box_log;
  sk_sockopts_t so = {.nodelay = 1};
  if (svc_dropbox_new(&boxes[nboxes], &ep, &so, o, err, sizeof err) < 0) {
    cli_error("xfer: %s", err);
    return EXIT_NET;
  }
  nboxes++;
  return EXIT_OK;
}

/* Sets a limit from "--max-sessions=N" and the like; 1 if w was one, -1
 * if it was one with a bad value, 0 if not one of them. */
static int limit_option(const char *w, xfer_limits_t *lim) {
  const char *v = strchr(w, '=');
  unsigned long n;
  if (!v || !v[1])
    return 0;
  size_t klen = (size_t)(v - w);
  v++;
  if (klen == 14 && strncmp(w, "--max-sessions", klen) == 0)
    return cli_parse_uint(v, 100000, &n) == 0 && n > 0 ? (lim->max_sessions = (unsigned)n, 1) : -1;
  if (klen == 17 && strncmp(w, "--max-per-address", klen) == 0)
    return cli_parse_uint(v, 100000, &n) == 0 && n > 0 ? (lim->max_per_addr = (unsigned)n, 1) : -1;
  if (klen == 10 && strncmp(w, "--min-rate", klen) == 0)
    return xui_parse_size(v, &lim->min_rate) == 0 && lim->min_rate > 0 ? 1 : -1;
  if (klen == 13 && strncmp(w, "--rate-window", klen) == 0)
    return cli_parse_seconds(v, &lim->rate_window_ms) == 0 && lim->rate_window_ms > 0 ? 1 : -1;
  return 0;
}

int serve_xfer_config(char **words, int nw, const char *path, int lineno, int verbose) {
  xfer_limits_t lim = {0};
  svc_dropbox_opts_t o = {.dir = SVC_DROPBOX_DIR, .verbose = verbose, .limits = &lim};
  const char *endpoint = NULL;
  for (int i = 0; i < nw; i++) {
    const char *w = words[i], *v = strchr(w, '=');
    unsigned long n;
    if (strncmp(w, "--", 2) != 0) {
      if (endpoint) {
        cli_error("%s:%d: xfer takes one LISTEN endpoint", path, lineno);
        return EXIT_USAGE;
      }
      endpoint = w;
    } else if (v && strncmp(w, "--dir=", 6) == 0 && v[1]) {
      o.dir = v + 1;
    } else if (v && strncmp(w, "--max-files=", 12) == 0 &&
               cli_parse_uint(v + 1, SK_XFER_COUNT_MAX, &n) == 0 && n > 0) {
      o.max_files = (uint32_t)n;
    } else if (v && strncmp(w, "--max-total=", 12) == 0 && xui_parse_size(v + 1, &o.max_total) == 0) {
      continue;
    } else if (limit_option(w, &lim) > 0) {
      continue;
    } else if (!(v && strncmp(w, "--idle-timeout=", 15) == 0 &&
                 cli_parse_seconds(v + 1, &o.idle_ms) == 0 && o.idle_ms > 0)) {
      cli_error("%s:%d: bad xfer option '%s' (expected --dir=DIR, --max-files=N, "
                "--max-total=SIZE, --idle-timeout=SECS, --max-sessions=N, --max-per-address=N, "
                "--min-rate=SIZE or --rate-window=SECS)", path, lineno, w);
      return EXIT_USAGE;
    }
  }
  if (!endpoint) {
    cli_error("%s:%d: xfer needs a LISTEN endpoint", path, lineno);
    return EXIT_USAGE;
  }
  return add(endpoint, &o);
}

int serve_xfer_hub(int verbose) {
  svc_dropbox_opts_t o = {.dir = SVC_DROPBOX_DIR, .verbose = verbose};
  return add(SVC_DROPBOX_HUB_ENDPOINT, &o);
}

void serve_xfer_table(void) {
  for (int i = 0; i < nboxes; i++) {
    const sk_listener_t *l = svc_dropbox_listener(boxes[i]);
    sk_endpoint_t ep = l->ep;
    if (ep.kind == SK_EP_TCP)
      ep.port = (uint16_t)sk_sockaddr_port(&l->bound);
    char text[SK_ENDPOINT_STRLEN];
    printf("%-9s %s\n", "xfer", sk_endpoint_format(&ep, text, sizeof text));
  }
}

int serve_xfer_attach(sk_loop_t *loop) {
  for (int i = 0; i < nboxes; i++) {
    int r = svc_dropbox_attach(boxes[i], loop);
    if (r < 0)
      return r;
  }
  return 0;
}

void serve_xfer_stop(void) {
  for (int i = 0; i < nboxes; i++)
    svc_dropbox_stop(boxes[i]);
}

void serve_xfer_free(void) {
  for (int i = 0; i < nboxes; i++)
    svc_dropbox_free(boxes[i]);
  nboxes = 0;
  hub_tls = NULL;
}
