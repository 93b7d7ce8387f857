/* xfer_send.c - the sending side of a file transfer: list what to send,
 * offer it, and answer the receiver's WANTs in order, one file at a time.
 *
 * Content goes out with sendfile() (no copy through user space) while the
 * hashing thread reads the same range behind it with pread() and hashes
 * it, at most XFER_HASH_SLOTS chunks behind. Small files are read once,
 * hashed inline and batched into the output buffer with their frames, so
 * ten thousand small files cost few system calls. While this side waits
 * to write, it reads what the receiver sends into its input buffer, so the
 * two sides can never block each other. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "services/xfer_int.h"

#define SENDFILE_MAX (16u << 20) /* bytes per sendfile() call */

/* ---- the manifest ------------------------------------------------------------------------ */

typedef struct {
  uint8_t kind;
  uint32_t mode;
  int64_t mtime_sec;
  uint32_t mtime_nsec;
  uint64_t size;
  uint64_t dev, ino;
  uint32_t name_off;  /* wire name in names (NUL-terminated) */
  uint32_t name_len;
  uint32_t root;      /* index of the command-line path it came from */
  uint32_t root_len;  /* bytes of the wire name that name the root itself */
} sent_entry_t;

struct xfer_manifest {
  sent_entry_t *e;
  uint32_t n, cap;
  char *names;
  size_t names_len, names_cap;
  char **roots; /* the command-line paths, as given */
  int nroots;
  uint32_t nfiles, ndirs;
  uint64_t bytes;
  uint64_t name_bytes; /* without the NULs, as MANIFEST announces */
  int has_key;         /* a resume key goes in HELLO */
  uint8_t key[SK_XFER_KEY_LEN];
};

uint32_t xfer_manifest_count(const xfer_manifest_t *m) { return m->n; }
uint64_t xfer_manifest_bytes(const xfer_manifest_t *m) { return m->bytes; }

void xfer_manifest_free(xfer_manifest_t *m) {
  if (!m)
    return;
  free(m->e);
  free(m->names);
  free(m->roots);
  OPENSSL_cleanse(m->key, sizeof m->key);
  free(m);
}

void xfer_manifest_set_key(xfer_manifest_t *m, const uint8_t key[SK_XFER_KEY_LEN]) {
  memcpy(m->key, key, SK_XFER_KEY_LEN);
  m->has_key = 1;
}

/* Reads the 32-byte secret at path, making it first (random, 0600,
 * written whole under a temporary name and linked into place, so two
 * senders starting at once end up with one secret). 0 or -errno. */
static int load_secret(const char *path, uint8_t secret[SK_XFER_KEY_LEN]) {
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = read(fd, secret, SK_XFER_KEY_LEN);
      int e = n < 0 ? errno : EINVAL;
      close(fd);
      return n == SK_XFER_KEY_LEN ? 0 : -e;
    }
    if (errno != ENOENT)
      return -errno;
    char tmp[PATH_MAX + 32];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp)
      return -ENAMETOOLONG;
    uint8_t fresh[SK_XFER_KEY_LEN];
    if (getrandom(fresh, sizeof fresh, 0) != (ssize_t)sizeof fresh)
      return -EIO;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      return -errno;
    int ok = write(fd, fresh, sizeof fresh) == (ssize_t)sizeof fresh && fsync(fd) == 0;
    close(fd);
    OPENSSL_cleanse(fresh, sizeof fresh);
    int linked = ok && link(tmp, path) == 0;
    int e = errno;
    unlink(tmp);
    if (!ok)
      return -EIO;
    if (!linked && e != EEXIST)
      return -e;
  }
  return -EAGAIN;
}

int xfer_resume_key(const char *state_dir, const char *receiver, uint8_t key[SK_XFER_KEY_LEN],
                    char *err, size_t errlen) {
  const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
  char dir[PATH_MAX], path[PATH_MAX + 32];
  int n;
  if (state_dir)
    n = snprintf(dir, sizeof dir, "%s", state_dir);
  else if (xdg && *xdg)
    n = snprintf(dir, sizeof dir, "%s/sockit", xdg);
  else if (home && *home)
    n = snprintf(dir, sizeof dir, "%s/.local/state/sockit", home);
  else
    return xfer_fail(-ENOENT, err, errlen, "no state directory (--state-dir, or set HOME)");
  if (n < 0 || (size_t)n >= sizeof dir)
    return xfer_fail(-ENAMETOOLONG, err, errlen, "state directory name too long");
  /* Its parents as needed (one at a time, mode 0700). */
  for (char *p = dir + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return xfer_fail(-errno, err, errlen, "%s: %s", dir, strerror(errno));
      *p = '/';
    }
  if (mkdir(dir, 0700) < 0 && errno != EEXIST)
    return xfer_fail(-errno, err, errlen, "%s: %s", dir, strerror(errno));
  snprintf(path, sizeof path, "%s/xfer-resume.key", dir);
  uint8_t secret[SK_XFER_KEY_LEN];
  int r = load_secret(path, secret);
  if (r < 0)
    return xfer_fail(r, err, errlen, "%s: %s", path, strerror(-r));
  static const char label[] = "sockit xfer resume key v1"; /* the NUL is part of it */
  unsigned char msg[sizeof label + SK_ENDPOINT_STRLEN + 1024];
  size_t rlen = strlen(receiver);
  if (rlen > sizeof msg - sizeof label)
    rlen = sizeof msg - sizeof label;
  memcpy(msg, label, sizeof label);
  memcpy(msg + sizeof label, receiver, rlen);
  unsigned out = 0;
  unsigned char *h = HMAC(EVP_sha256(), secret, sizeof secret, msg, sizeof label + rlen, key, &out);
  OPENSSL_cleanse(secret, sizeof secret);
  if (!h || out != SK_XFER_KEY_LEN)
    return xfer_fail(-EIO, err, errlen, "HMAC failed");
  return 0;
}

/* The wire name of e (NUL-terminated, owned by m). */
static const char *ename(const xfer_manifest_t *m, const sent_entry_t *e) {
  return m->names + e->name_off;
}

static void warnf(const xfer_ui_t *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Passes one formatted warning to the UI, if it wants them. */
static void warnf(const xfer_ui_t *ui, const char *fmt, ...) {
  if (!ui || !ui->warn)
    return;
  char msg[SK_ERRLEN * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ui->warn(ui->ctx, msg);
}

/* Appends one entry named name (len bytes, checked here). Returns 0 or a
 * negative code with err filled. */
static int add_entry(xfer_manifest_t *m, const struct stat *st, const char *name, size_t len,
                     uint32_t root, uint32_t root_len, char *err, size_t errlen) {
  char why[160], shown[256];
  if (sk_xfer_name_check(name, len, why, sizeof why) < 0) {
    sk_xfer_name_escape(name, len, shown, sizeof shown);
    return xfer_fail(SK_EBADINPUT, err, errlen,
                     "'%s': a receiver would refuse this name (%s); rename it or leave it out",
                     shown, why);
  }
  if (m->n == SK_XFER_COUNT_MAX)
    return xfer_fail(SK_ETOOBIG, err, errlen, "more than %u files and directories to send",
                     (unsigned)SK_XFER_COUNT_MAX);
  if (m->name_bytes + len > SK_XFER_NAMES_MAX)
    return xfer_fail(SK_ETOOBIG, err, errlen, "the names to send add up to more than %u bytes",
                     (unsigned)SK_XFER_NAMES_MAX);
  if (S_ISREG(st->st_mode) && m->bytes + (uint64_t)st->st_size < m->bytes)
    return xfer_fail(SK_ETOOBIG, err, errlen, "too many bytes to send");
  if (m->n == m->cap) {
    uint32_t cap = m->cap ? m->cap * 2 : 64;
    sent_entry_t *grown = realloc(m->e, (size_t)cap * sizeof *grown);
    if (!grown)
      return xfer_fail(-ENOMEM, err, errlen, "out of memory");
    m->e = grown;
    m->cap = cap;
  }
  if (m->names_len + len + 1 > m->names_cap) {
    size_t cap = m->names_cap ? m->names_cap * 2 : 4096;
    while (cap < m->names_len + len + 1)
      cap *= 2;
    char *grown = realloc(m->names, cap);
    if (!grown)
      return xfer_fail(-ENOMEM, err, errlen, "out of memory");
    m->names = grown;
    m->names_cap = cap;
  }
  sent_entry_t *e = &m->e[m->n++];
  memset(e, 0, sizeof *e);
  e->kind = S_ISDIR(st->st_mode) ? SK_XFER_KIND_DIR : SK_XFER_KIND_FILE;
  e->mode = (uint32_t)st->st_mode & SK_XFER_MODE_MASK;
  e->mtime_sec = (int64_t)st->st_mtim.tv_sec;
  e->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
  e->size = e->kind == SK_XFER_KIND_FILE ? (uint64_t)st->st_size : 0;
  e->dev = (uint64_t)st->st_dev;
  e->ino = (uint64_t)st->st_ino;
  e->name_off = (uint32_t)m->names_len;
  e->name_len = (uint32_t)len;
  e->root = root;
  e->root_len = root_len;
  memcpy(m->names + m->names_len, name, len);
  m->names[m->names_len + len] = '\0';
  m->names_len += len + 1;
  m->name_bytes += len;
  if (e->kind == SK_XFER_KIND_FILE) {
    m->nfiles++;
    m->bytes += e->size;
  } else {
    m->ndirs++;
  }
  return 0;
}

/* qsort order of directory entries: by bytes, like `ls` in the C locale. */
static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists directory dfd (wire name prefix/len) into m, sorted by name, and
 * recurses into subdirectories. Returns 0 or a negative code. */
static int walk_dir(xfer_manifest_t *m, int dfd, char *prefix, size_t plen, uint32_t root,
                    uint32_t root_len, const xfer_ui_t *ui, char *err, size_t errlen) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return xfer_fail(-e, err, errlen, "open directory %s: %s", prefix, strerror(e));
  }
  /* Read every name first: sorted order, and no directory left open while
   * we descend (deep trees would run out of descriptors). */
  char **list = NULL, *store = NULL;
  size_t n = 0, cap = 0, used = 0, store_cap = 0;
  int r = 0;
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    size_t len = strlen(de->d_name) + 1;
    if (used + len > store_cap) {
      size_t c = store_cap ? store_cap * 2 : 4096;
      while (c < used + len)
        c *= 2;
      char *grown = realloc(store, c);
      if (!grown) {
        r = xfer_fail(-ENOMEM, err, errlen, "out of memory");
        break;
      }
      store = grown;
      store_cap = c;
    }
    if (n == cap) {
      size_t c = cap ? cap * 2 : 64;
      char **grown = realloc(list, c * sizeof *grown);
      if (!grown) {
        r = xfer_fail(-ENOMEM, err, errlen, "out of memory");
        break;
      }
      list = grown;
      cap = c;
    }
    memcpy(store + used, de->d_name, len);
    list[n++] = (char *)(uintptr_t)used; /* an offset until store stops moving */
    used += len;
  }
  if (r == 0 && errno != 0)
    r = xfer_fail(-errno, err, errlen, "read directory %s: %s", prefix, strerror(errno));
  for (size_t i = 0; i < n; i++)
    list[i] = store + (uintptr_t)list[i];
  if (r == 0 && n > 1)
    qsort(list, n, sizeof *list, cmp_names);
  int fd = dirfd(d);
  for (size_t i = 0; r == 0 && i < n; i++) {
    const char *base = list[i];
    size_t blen = strlen(base);
    if (plen + 1 + blen > SK_XFER_PATH_MAX) {
      r = xfer_fail(SK_ETOOBIG, err, errlen, "%s/%s: path longer than %d bytes", prefix, base,
                    SK_XFER_PATH_MAX);
      break;
    }
    prefix[plen] = '/';
    memcpy(prefix + plen + 1, base, blen + 1);
    size_t len = plen + 1 + blen;
    char shown[512];
    struct stat st;
    if (fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      r = xfer_fail(-errno, err, errlen, "%s: %s", prefix, strerror(errno));
    } else if (S_ISLNK(st.st_mode)) {
      sk_xfer_name_escape(prefix, len, shown, sizeof shown);
      warnf(ui, "skipping symlink '%s' (symlinks are not sent)", shown);
    } else if (S_ISREG(st.st_mode) && sk_xfer_is_part_name(base, blen)) {
      sk_xfer_name_escape(prefix, len, shown, sizeof shown);
      warnf(ui, "skipping '%s' (a partial file of an unfinished transfer)", shown);
    } else if (S_ISREG(st.st_mode)) {
      r = add_entry(m, &st, prefix, len, root, root_len, err, errlen);
    } else if (S_ISDIR(st.st_mode)) {
      r = add_entry(m, &st, prefix, len, root, root_len, err, errlen);
      if (r == 0) {
        int sub = openat(fd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
          r = xfer_fail(-errno, err, errlen, "open directory %s: %s", prefix, strerror(errno));
        else
          r = walk_dir(m, sub, prefix, len, root, root_len, ui, err, errlen);
      }
    } else {
      sk_xfer_name_escape(prefix, len, shown, sizeof shown);
      warnf(ui, "skipping '%s' (not a regular file or directory)", shown);
    }
  }
  prefix[plen] = '\0';
  free(list);
  free(store);
  closedir(d);
  return r;
}

/* The wire name of a command-line path: its last component ("." and paths
 * ending in "/" resolved to the real directory's name). */
static int root_name(const char *path, char *out, size_t cap, char *err, size_t errlen) {
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/')
    len--;
  const char *base = path;
  for (size_t i = 0; i < len; i++)
    if (path[i] == '/' && i + 1 < len)
      base = path + i + 1;
  size_t blen = len - (size_t)(base - path);
  if ((blen == 1 && base[0] == '.') || (blen == 2 && base[0] == '.' && base[1] == '.') ||
      (blen == 1 && base[0] == '/')) {
    char *real = realpath(path, NULL);
    if (!real)
      return xfer_fail(-errno, err, errlen, "%s: %s", path, strerror(errno));
    const char *slash = strrchr(real, '/');
    int n = snprintf(out, cap, "%s", slash ? slash + 1 : real);
    free(real);
    if (n <= 0)
      return xfer_fail(-EINVAL, err, errlen, "%s: cannot send the root directory", path);
    return (size_t)n < cap ? 0 : xfer_fail(SK_ETOOBIG, err, errlen, "%s: name too long", path);
  }
  if (blen + 1 > cap)
    return xfer_fail(SK_ETOOBIG, err, errlen, "%s: name too long", path);
  memcpy(out, base, blen);
  out[blen] = '\0';
  return 0;
}

int xfer_manifest_build(xfer_manifest_t **out, char *const *paths, int npaths,
                        const xfer_ui_t *ui, char *err, size_t errlen) {
  xfer_manifest_t *m = calloc(1, sizeof *m);
  char *prefix = malloc(SK_XFER_PATH_MAX + 2);
  if (!m || !prefix || !(m->roots = calloc((size_t)npaths, sizeof *m->roots))) {
    free(prefix);
    xfer_manifest_free(m);
    return xfer_fail(-ENOMEM, err, errlen, "out of memory");
  }
  int r = 0;
  for (int i = 0; r == 0 && i < npaths; i++) {
    m->roots[m->nroots++] = paths[i];
    struct stat st;
    if (stat(paths[i], &st) < 0) {
      r = xfer_fail(-errno, err, errlen, "%s: %s", paths[i], strerror(errno));
      break;
    }
    r = root_name(paths[i], prefix, SK_XFER_PATH_MAX + 1, err, errlen);
    if (r < 0)
      break;
    size_t len = strlen(prefix);
    for (uint32_t j = 0; j < m->n; j++)
      if (m->e[j].root_len == m->e[j].name_len && m->e[j].name_len == len &&
          memcmp(ename(m, &m->e[j]), prefix, len) == 0) {
        r = xfer_fail(-EINVAL, err, errlen, "two paths to send are both named '%s'", prefix);
        break;
      }
    if (r < 0)
      break;
    if (S_ISREG(st.st_mode)) {
      r = add_entry(m, &st, prefix, len, (uint32_t)i, (uint32_t)len, err, errlen);
    } else if (S_ISDIR(st.st_mode)) {
      r = add_entry(m, &st, prefix, len, (uint32_t)i, (uint32_t)len, err, errlen);
      if (r == 0) {
        int fd = open(paths[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
          r = xfer_fail(-errno, err, errlen, "%s: %s", paths[i], strerror(errno));
        else
          r = walk_dir(m, fd, prefix, len, (uint32_t)i, (uint32_t)len, ui, err, errlen);
      }
    } else {
      r = xfer_fail(-EINVAL, err, errlen, "%s: not a regular file or directory", paths[i]);
    }
  }
  free(prefix);
  if (r < 0) {
    xfer_manifest_free(m);
    return r;
  }
  *out = m;
  return 0;
}

/* ---- the session ---------------------------------------------------------------------- */

typedef struct {
  uint32_t index;
  uint8_t kind;
  uint64_t offset;
  uint8_t hash[SK_XFER_HASH_LEN];
} want_t;

typedef struct {
  xfer_conn_t *c;
  const xfer_manifest_t *m;
  const xfer_ui_t *ui;
  xfer_stats_t *st;
  xin_t in;
  xout_t out;
  xhash_t *hash;
  EVP_MD_CTX *ctx;
  unsigned char *scratch; /* XFER_SMALL_FILE bytes: small files are read whole */
  want_t wants[SK_XFER_WINDOW];
  unsigned want_head, want_count;
  int64_t last_want;      /* index of the last WANT received, -1 before */
  uint8_t *reported;      /* per entry: a RESULT arrived */
  uint8_t *resumed;       /* per entry: sent from a verified offset */
  char **local_why;       /* per entry: why this side could not send it (or NULL) */
  uint32_t results;       /* RESULTs received */
  int done;               /* DONE received */
  xfer_progress_t prog;
  int *root_fd;           /* per command-line directory, opened on first use (or -1) */
  char *err;
  size_t errlen;
} sender_t;

/* Opens the source of entry e: the command-line path itself (followed if a
 * symlink), or a name under it, never through a symlink at its end (the
 * caller compares device and inode with the listing anyway). Returns the
 * fd or a negative errno. */
static int open_source(sender_t *s, const sent_entry_t *e) {
  const char *root = s->m->roots[e->root];
  if (e->name_len == e->root_len) {
    int fd = open(root, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    return fd < 0 ? -errno : fd;
  }
  if (s->root_fd[e->root] < 0) {
    s->root_fd[e->root] = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->root_fd[e->root] < 0)
      return -errno;
  }
  int fd = openat(s->root_fd[e->root], ename(s->m, e) + e->root_len + 1,
                  O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  return fd < 0 ? -errno : fd;
}

/* Tells the UI where we are. */
static void progress(sender_t *s) {
  if (s->ui && s->ui->progress)
    s->ui->progress(s->ui->ctx, &s->prog);
}

/* Handles one frame from the receiver during the file phase. Returns 0,
 * or a negative code with s->err filled (ERROR from the receiver, a
 * protocol violation). */
static int on_frame(sender_t *s, const sk_xfer_msg_t *m) {
  const xfer_manifest_t *mf = s->m;
  char text[SK_XFER_TEXT_MAX * 4 + 8];
  switch (m->type) {
  case SK_XFER_WANT: {
    uint32_t i = m->u.want.index;
    if (i >= mf->n || mf->e[i].kind != SK_XFER_KIND_FILE || (int64_t)i <= s->last_want ||
        s->reported[i])
      return xfer_fail(SK_EBADINPUT, s->err, s->errlen,
                       "bad message from %s: WANT for entry %u out of order", s->c->peer, i);
    if (s->want_count == SK_XFER_WINDOW)
      return xfer_fail(SK_EBADINPUT, s->err, s->errlen,
                       "bad message from %s: more than %d WANTs outstanding", s->c->peer,
                       SK_XFER_WINDOW);
    want_t *w = &s->wants[(s->want_head + s->want_count++) % SK_XFER_WINDOW];
    w->index = i;
    w->kind = m->u.want.kind;
    w->offset = m->u.want.offset;
    memcpy(w->hash, m->u.want.hash, SK_XFER_HASH_LEN);
    s->last_want = i;
    return 0;
  }
  case SK_XFER_RESULT: {
    uint32_t i = m->u.result.index;
    if (i >= mf->n || mf->e[i].kind != SK_XFER_KIND_FILE || s->reported[i])
      return xfer_fail(SK_EBADINPUT, s->err, s->errlen,
                       "bad message from %s: RESULT for entry %u", s->c->peer, i);
    /* A result for a file still waiting in the queue would leave its WANT dangling. */
    for (unsigned k = 0; k < s->want_count; k++)
      if (s->wants[(s->want_head + k) % SK_XFER_WINDOW].index == i)
        return xfer_fail(SK_EBADINPUT, s->err, s->errlen,
                         "bad message from %s: RESULT for entry %u before it was sent",
                         s->c->peer, i);
    s->reported[i] = 1;
    s->results++;
    sk_xfer_name_escape(m->u.result.text, m->u.result.text_len, text, sizeof text);
    int status = m->u.result.status;
    switch (status) {
    case SK_XFER_RES_STORED: s->st->stored++; break;
    case SK_XFER_RES_IDENTICAL: s->st->identical++; break;
    default: s->st->failed++; break;
    }
    if (s->resumed[i])
      s->st->resumed++;
    if (s->ui && s->ui->report) {
      xfer_report_t r = {.index = i,
                         .name = ename(mf, &mf->e[i]),
                         .status = status,
                         .resumed = s->resumed[i],
                         .reason = s->local_why[i] ? s->local_why[i] : text,
                         .stored_as = status == SK_XFER_RES_STORED && text[0] ? text : NULL};
      if (status == SK_XFER_RES_STORED)
        r.reason = "";
      s->ui->report(s->ui->ctx, &r);
    }
    s->prog.files_done++;
    return 0;
  }
  case SK_XFER_DONE:
    s->done = 1;
    return 0;
  case SK_XFER_KEEPALIVE: /* the receiver is hashing a long partial file */
    return 0;
  case SK_XFER_ERROR:
    sk_xfer_name_escape(m->u.error.text, m->u.error.text_len, text, sizeof text);
    return xfer_fail(m->u.error.code == SK_XFER_ERR_REFUSED ? XFER_EREFUSED : XFER_EPEER, s->err,
                     s->errlen, "%s: %s", s->c->peer, text);
  default:
    return xfer_fail(SK_EBADINPUT, s->err, s->errlen, "bad message from %s: unexpected %s",
                     s->c->peer, sk_xfer_type_name(m->type));
  }
}

/* Handles every complete frame already buffered, without waiting. */
static int pump(sender_t *s) {
  for (;;) {
    sk_xfer_msg_t m;
    int r = xin_next(&s->in, s->c, &m, 0, s->err, s->errlen);
    if (r <= 0)
      return r;
    r = on_frame(s, &m);
    xin_consume(&s->in, 0);
    if (r < 0)
      return r;
  }
}

/* After a send failed (reset, broken pipe): the receiver may have said why
 * first. Returns XFER_EPEER/XFER_EREFUSED with its words, or code with
 * the local message already in s->err. */
static int explain_failure(sender_t *s, int code) {
  char saved[SK_ERRLEN * 2];
  snprintf(saved, sizeof saved, "%s", s->err);
  while (xin_read_ready(&s->in, s->c) > 0)
    ;
  for (;;) {
    sk_xfer_msg_t m;
    char scrap[SK_ERRLEN];
    if (xin_next(&s->in, s->c, &m, 0, scrap, sizeof scrap) <= 0)
      break;
    if (m.type == SK_XFER_ERROR)
      return on_frame(s, &m);
    xin_consume(&s->in, 0);
  }
  snprintf(s->err, s->errlen, "%s", saved);
  return code;
}

/* Queues one frame (written when the buffer fills or on flush). Returns
 * 0 or a negative code with s->err filled (the receiver's words if it
 * said why). */
static int send_msg(sender_t *s, const sk_xfer_msg_t *m) {
  int r = xout_msg(&s->out, s->c, &s->in, m, s->err, s->errlen);
  return r < 0 ? explain_failure(s, r) : 0;
}

/* Writes what is queued, then handles whatever the receiver sent meanwhile. */
static int flush(sender_t *s) {
  int r = xout_flush(&s->out, s->c, &s->in, s->err, s->errlen);
  if (r < 0)
    return explain_failure(s, r);
  return pump(s);
}

/* Waits for the next frame and handles it (output is flushed first). */
static int wait_frame(sender_t *s, uint64_t wait_ms) {
  int r = flush(s);
  if (r < 0 || s->want_count || s->done) /* flushing may have read what we wait for */
    return r;
  sk_xfer_msg_t m;
  r = xin_next(&s->in, s->c, &m, wait_ms, s->err, s->errlen);
  if (r < 0)
    return r;
  r = on_frame(s, &m);
  xin_consume(&s->in, 0);
  return r < 0 ? r : pump(s);
}

/* Notes why entry i could not be sent (shown when its RESULT arrives). */
static void set_local_why(sender_t *s, uint32_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_local_why(sender_t *s, uint32_t i, const char *fmt, ...) {
  char msg[SK_ERRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  free(s->local_why[i]);
  s->local_why[i] = strdup(msg);
}

/* After the content ended early at pos: zeros up to size, so the stream
 * stays in step (the receiver expects size - off bytes and throws them
 * away on FILE_END CHANGED). */
static int send_padding(sender_t *s, uint64_t pos, uint64_t size) {
  memset(s->scratch, 0, XFER_SMALL_FILE);
  while (pos < size) {
    size_t n = size - pos < XFER_SMALL_FILE ? (size_t)(size - pos) : XFER_SMALL_FILE;
    int r = xconn_write(s->c, &s->in, s->scratch, n);
    if (r < 0) {
      xfer_fail(r, s->err, s->errlen, "send to %s: %s", s->c->peer, xfer_strerror(r));
      return explain_failure(s, r);
    }
    pos += n;
  }
  return 0;
}

/* send_big over TLS, where sendfile() cannot be used: the bytes must be
 * encrypted by the session. Each chunk is pread() into the hashing
 * thread's next slot, written through the session, then handed to the
 * thread: the hash covers exactly the bytes sent, with no extra copy.
 * Between chunks, whatever the receiver sent (read while writing waited)
 * is handled. */
static int send_big_tls(sender_t *s, int fd, uint64_t off, uint64_t size, int *changed) {
  uint64_t pos = off;
  int r = flush(s);
  if (r < 0)
    return r;
  while (pos < size) {
    size_t skew = (size_t)(pos % XFER_ALIGN); /* see xhash_slot */
    unsigned char *buf = xhash_slot(s->hash) + skew;
    size_t room = XFER_HASH_CHUNK - skew;
    size_t want = size - pos < room ? (size_t)(size - pos) : room;
    ssize_t n = pread(fd, buf, want, (off_t)pos);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) { /* it shrank while we sent it, or cannot be read any more */
      *changed = 1;
      break;
    }
    r = xconn_write(s->c, &s->in, buf, (size_t)n);
    if (r < 0) {
      xfer_fail(r, s->err, s->errlen, "send to %s: %s", s->c->peer, xfer_strerror(r));
      return explain_failure(s, r);
    }
    xhash_push(s->hash, s->ctx, skew, (size_t)n);
    pos += (uint64_t)n;
    s->prog.file_done += (uint64_t)n;
    s->prog.total_done += (uint64_t)n;
    s->prog.moved += (uint64_t)n;
    s->st->moved += (uint64_t)n;
    progress(s);
    r = pump(s);
    if (r < 0)
      return r;
  }
  r = pos < size ? send_padding(s, pos, size) : 0;
  if (xhash_wait(s->hash) != 0)
    *changed = 1;
  return r;
}

/* Sends file content [off, size) of fd with sendfile, the hashing thread
 * following. Sets *changed when the file turned out shorter. */
static int send_big(sender_t *s, int fd, uint64_t off, uint64_t size, int *changed) {
  if (s->c->tls)
    return send_big_tls(s, fd, off, size, changed);
  uint64_t pos = off, hashed = off;
  int r = flush(s);
  if (r < 0)
    return r;
  while (pos < size) {
    off_t o = (off_t)pos;
    uint64_t want = size - pos < SENDFILE_MAX ? size - pos : SENDFILE_MAX;
    ssize_t n = sendfile(s->c->fd, fd, &o, (size_t)want);
    if (n > 0) {
      pos += (uint64_t)n;
      s->prog.file_done += (uint64_t)n;
      s->prog.total_done += (uint64_t)n;
      s->prog.moved += (uint64_t)n;
      s->st->moved += (uint64_t)n;
      while (pos - hashed >= XFER_HASH_FILE_CHUNK) {
        xhash_push_file(s->hash, s->ctx, fd, hashed, XFER_HASH_FILE_CHUNK);
        hashed += XFER_HASH_FILE_CHUNK;
      }
      progress(s);
      continue;
    }
    if (n == 0) { /* the file ended early: it shrank while we sent it */
      *changed = 1;
      break;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN) {
      int e = -errno;
      if (e == -EINVAL || e == -ENOSYS)
        return xfer_fail(e, s->err, s->errlen, "sendfile: %s", strerror(-e));
      xfer_fail(e, s->err, s->errlen, "send to %s: %s", s->c->peer, strerror(-e));
      return explain_failure(s, e);
    }
    short ev = POLLOUT | (s->in.len < s->in.cap ? POLLIN : 0);
    r = xconn_poll(s->c, ev, xconn_idle(s->c));
    if (r < 0)
      return xfer_fail(r, s->err, s->errlen, "send to %s: %s", s->c->peer, xfer_strerror(r));
    if (r == 0)
      return xfer_fail(SK_ETIMEDOUT, s->err, s->errlen, "send to %s: %s", s->c->peer,
                       xfer_strerror(SK_ETIMEDOUT));
    if (r & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t got = xin_read_ready(&s->in, s->c);
      if (got < 0 && got != SK_EOF)
        return xfer_fail((int)got, s->err, s->errlen, "%s: %s", s->c->peer,
                         xfer_strerror((int)got));
      r = pump(s);
      if (r < 0)
        return r;
    }
  }
  if (pos < size && (r = send_padding(s, pos, size)) < 0)
    return r;
  if (hashed < pos)
    xhash_push_file(s->hash, s->ctx, fd, hashed, (size_t)(pos - hashed));
  if (xhash_wait(s->hash) != 0)
    *changed = 1;
  return 0;
}

/* Sends a small file's content (from 0) through the output buffer. */
static int send_small(sender_t *s, int fd, uint64_t size, int *changed) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = pread(fd, s->scratch + got, (size_t)size - got, (off_t)got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  if (got < size) {
    *changed = 1;
    memset(s->scratch + got, 0, (size_t)size - got);
  }
  EVP_DigestUpdate(s->ctx, s->scratch, got);
  s->prog.file_done += size;
  s->prog.total_done += size;
  s->prog.moved += size;
  s->st->moved += size;
  int r = xout_raw(&s->out, s->c, &s->in, s->scratch, (size_t)size, s->err, s->errlen);
  return r < 0 ? explain_failure(s, r) : 0;
}

/* Answers one WANT: FILE (with content and FILE_END when there is data). */
static int answer(sender_t *s, const want_t *w) {
  const sent_entry_t *e = &s->m->e[w->index];
  sk_xfer_msg_t msg = {.type = SK_XFER_FILE};
  msg.u.file.index = w->index;
  s->prog.file = w->index;
  s->prog.name = ename(s->m, e);
  s->prog.file_size = e->size;
  s->prog.file_done = 0;

  int fd = open_source(s, e);
  struct stat st;
  if (fd < 0) {
    set_local_why(s, w->index, "cannot open: %s", strerror(-fd));
    msg.u.file.status = SK_XFER_FILE_UNREADABLE;
  } else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != e->dev ||
             (uint64_t)st.st_ino != e->ino || (uint64_t)st.st_size != e->size ||
             st.st_mtim.tv_sec != e->mtime_sec || (uint32_t)st.st_mtim.tv_nsec != e->mtime_nsec) {
    set_local_why(s, w->index, "changed after it was listed (size, time or identity)");
    msg.u.file.status = SK_XFER_FILE_CHANGED;
  }
  if (msg.u.file.status != SK_XFER_FILE_DATA) {
    if (fd >= 0)
      close(fd);
    s->prog.total_done += e->size;
    return send_msg(s, &msg);
  }

  /* What the receiver holds: check it against our first bytes. */
  uint64_t off = 0;
  xhash_ctx_reset(s->hash, s->ctx);
  if (w->kind != SK_XFER_WANT_FULL && w->offset <= e->size &&
      (w->kind == SK_XFER_WANT_RESUME || w->offset == e->size)) {
    uint8_t mine[SK_XFER_HASH_LEN];
    int r = xhash_file_alive(s->hash, s->ctx, fd, 0, w->offset, s->c, &s->out, &s->in, s->err,
                             s->errlen);
    if (r == XFER_ESEND) {
      close(fd);
      return explain_failure(s, r);
    }
    xhash_peek(s->ctx, mine);
    if (r != 0) {
      close(fd);
      set_local_why(s, w->index, "read failed or the file shrank while it was hashed");
      msg.u.file.status = SK_XFER_FILE_CHANGED;
      s->prog.total_done += e->size;
      return send_msg(s, &msg);
    }
    if (memcmp(mine, w->hash, SK_XFER_HASH_LEN) == 0) {
      if (w->kind != SK_XFER_WANT_RESUME) {
        close(fd);
        msg.u.file.status = SK_XFER_FILE_SAME;
        s->prog.total_done += e->size;
        return send_msg(s, &msg);
      }
      off = w->offset;
    } else {
      xhash_ctx_reset(s->hash, s->ctx);
    }
  }
  if (w->kind == SK_XFER_WANT_CHECK) {
    close(fd);
    msg.u.file.status = SK_XFER_FILE_DIFFERENT;
    s->prog.total_done += e->size;
    return send_msg(s, &msg);
  }
  s->resumed[w->index] = off > 0;
  msg.u.file.offset = off;
  s->prog.file_done = off;
  s->prog.total_done += off;
  int r = send_msg(s, &msg);
  int changed = 0;
  int small = e->size - off <= XFER_SMALL_FILE && off == 0;
  if (r == 0)
    r = small ? send_small(s, fd, e->size, &changed) : send_big(s, fd, off, e->size, &changed);
  xhash_wait(s->hash); /* however that ended, the thread is done with fd before we close it */
  if (r == 0 && !changed &&
      (fstat(fd, &st) < 0 || (uint64_t)st.st_size != e->size ||
       st.st_mtim.tv_sec != e->mtime_sec || (uint32_t)st.st_mtim.tv_nsec != e->mtime_nsec))
    changed = 1;
  close(fd);
  if (r < 0)
    return r;
  sk_xfer_msg_t end = {.type = SK_XFER_FILE_END};
  end.u.end.index = w->index;
  end.u.end.status = changed ? SK_XFER_END_CHANGED : SK_XFER_END_OK;
  unsigned len = 0;
  EVP_DigestFinal_ex(s->ctx, end.u.end.hash, &len);
  if (changed)
    set_local_why(s, w->index, "changed while it was being sent");
  progress(s);
  r = send_msg(s, &end);
  /* Small files: out in batches, early enough for the receiver to work
   * on one while we fill the next. */
  if (r == 0 && s->out.len >= XFER_FLUSH_AT)
    r = flush(s);
  return r;
}

/* The opening: HELLO, the manifest, and the receiver's HELLO and answer. */
static int offer(sender_t *s) {
  const xfer_manifest_t *mf = s->m;
  sk_xfer_msg_t m = {.type = SK_XFER_HELLO};
  m.u.hello.version = SK_XFER_VERSION;
  m.u.hello.role = SK_XFER_ROLE_SENDER;
  m.u.hello.has_key = (uint8_t)mf->has_key;
  memcpy(m.u.hello.key, mf->key, SK_XFER_KEY_LEN);
  int r = send_msg(s, &m);
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_MANIFEST;
  m.u.manifest.count = mf->n;
  m.u.manifest.total = mf->bytes;
  m.u.manifest.name_bytes = (uint32_t)mf->name_bytes;
  if (r == 0)
    r = send_msg(s, &m);
  for (uint32_t i = 0; r == 0 && i < mf->n; i++) {
    const sent_entry_t *e = &mf->e[i];
    memset(&m, 0, sizeof m);
    m.type = SK_XFER_ENTRY;
    m.u.entry.kind = e->kind;
    m.u.entry.mode = e->mode;
    m.u.entry.mtime_sec = e->mtime_sec;
    m.u.entry.mtime_nsec = e->mtime_nsec;
    m.u.entry.size = e->size;
    m.u.entry.name = ename(mf, e);
    m.u.entry.name_len = e->name_len;
    r = send_msg(s, &m);
  }
  if (r == 0)
    r = flush(s);
  if (r < 0)
    return r;
  /* The receiver's HELLO, then ACCEPT or ERROR (a person may be deciding). */
  for (int step = 0; step < 2; step++) {
    r = xin_next(&s->in, s->c, &m, step == 0 ? xconn_idle(s->c) : XFER_DECISION_MS, s->err,
                 s->errlen);
    if (r < 0)
      return r;
    if (m.type == SK_XFER_ERROR) {
      r = on_frame(s, &m);
      xin_consume(&s->in, 0);
      return r;
    }
    if (step == 0 && m.type == SK_XFER_HELLO) {
      if (m.u.hello.role != SK_XFER_ROLE_RECEIVER) {
        xin_consume(&s->in, 0);
        return xfer_fail(SK_EBADINPUT, s->err, s->errlen,
                         "%s is a sender too: connect a sender to a receiver", s->c->peer);
      }
      if (m.u.hello.version != SK_XFER_VERSION) {
        char text[96];
        snprintf(text, sizeof text, "this sender speaks SKXF version %d, the receiver %u",
                 SK_XFER_VERSION, (unsigned)m.u.hello.version);
        xin_consume(&s->in, 0);
        xconn_send_error(s->c, &s->out, SK_XFER_ERR_VERSION, text);
        return xfer_fail(SK_EBADINPUT, s->err, s->errlen, "%s: %s", s->c->peer, text);
      }
    } else if (!(step == 1 && m.type == SK_XFER_ACCEPT)) {
      xin_consume(&s->in, 0);
      return xfer_fail(SK_EBADINPUT, s->err, s->errlen, "bad message from %s: unexpected %s",
                       s->c->peer, sk_xfer_type_name(m.type));
    }
    xin_consume(&s->in, 0);
  }
  return 0;
}

int xfer_send(xfer_conn_t *c, const xfer_manifest_t *mf, const xfer_ui_t *ui, xfer_stats_t *st,
              char *err, size_t errlen) {
  sender_t s;
  memset(&s, 0, sizeof s);
  memset(st, 0, sizeof *st);
  st->files = mf->nfiles;
  st->dirs = mf->ndirs;
  st->bytes = mf->bytes;
  st->started_ms = xfer_now_ms();
  snprintf(st->peer, sizeof st->peer, "%s", c->peer);
  s.c = c;
  s.m = mf;
  s.ui = ui;
  s.st = st;
  s.err = err;
  s.errlen = errlen;
  s.last_want = -1;
  s.prog.files = mf->nfiles;
  s.prog.total_size = mf->bytes;
  s.prog.started_ms = st->started_ms;
  int r = -ENOMEM;
  if (xin_init(&s.in) < 0 || xout_init(&s.out) < 0 || xhash_start(&s.hash) < 0 ||
      !(s.ctx = xhash_ctx_new(s.hash)) || !(s.scratch = malloc(XFER_SMALL_FILE)) ||
      !(s.reported = calloc(mf->n, 1)) || !(s.resumed = calloc(mf->n, 1)) ||
      !(s.local_why = calloc(mf->n, sizeof *s.local_why)) ||
      !(s.root_fd = calloc((size_t)mf->nroots + 1, sizeof *s.root_fd))) {
    xfer_fail(r, err, errlen, "out of memory");
    goto out;
  }
  for (int i = 0; i < mf->nroots; i++)
    s.root_fd[i] = -1;
  r = offer(&s);
  while (r == 0 && !s.done) {
    if (s.want_count == 0) {
      r = wait_frame(&s, xconn_idle(c));
      continue;
    }
    want_t w = s.wants[s.want_head];
    s.want_head = (s.want_head + 1) % SK_XFER_WINDOW;
    s.want_count--;
    r = answer(&s, &w);
    if (r == 0)
      r = pump(&s);
  }
  if (r == 0 && s.results != mf->nfiles)
    r = xfer_fail(SK_EBADINPUT, err, errlen, "%s said DONE with %u of %u files answered",
                  c->peer, s.results, mf->nfiles);
  if (r == 0 && st->failed)
    r = xfer_fail(XFER_EFILES, err, errlen, "%u of %u files failed", st->failed, mf->nfiles);
out:
  st->ended_ms = xfer_now_ms();
  if (s.local_why)
    for (uint32_t i = 0; i < mf->n; i++)
      free(s.local_why[i]);
  free(s.local_why);
  if (s.root_fd)
    for (int i = 0; i < mf->nroots; i++)
      if (s.root_fd[i] >= 0)
        close(s.root_fd[i]);
  free(s.root_fd);
  free(s.reported);
  free(s.resumed);
  free(s.scratch);
  xhash_stop(s.hash); /* first: the thread may still be hashing into ctx */
  EVP_MD_CTX_free(s.ctx);
  xout_free(&s.out);
  xin_free(&s.in);
  return r;
}
