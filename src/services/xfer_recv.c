/* xfer_recv.c - the receiving side of a file transfer.
 *
 * The receiver trusts nothing it is sent. The manifest is read whole and
 * checked before anything is written: every name (sk_xfer_name_check),
 * the number of entries and bytes against the limits, sizes that add up
 * (overflow-checked) to what was announced, no duplicate names, no file
 * used as a directory. Then it is planned against what the directory
 * holds (partial files to resume, files that exist), checked against the
 * free space, shown and accepted.
 *
 * Every path is resolved one component at a time from the target
 * directory with openat(O_NOFOLLOW | O_DIRECTORY): a symlink anywhere in
 * DIR is never followed, so nothing lands outside it. Content goes to
 * DIR/.../.NAME.part; only when its SHA-256 matches the sender's is it
 * fsynced and renamed into place (renameat2 RENAME_NOREPLACE unless
 * --overwrite), and its directory fsynced. A file that fails its check
 * loses only its own partial file. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "services/xfer_int.h"

enum { PLAN_FRESH, PLAN_RESUME, PLAN_HAVE, PLAN_CONFLICT, PLAN_BLOCKED };

typedef struct {
  uint8_t kind, plan, created, exists;
  uint32_t mode;
  int64_t mtime_sec;
  uint32_t mtime_nsec;
  uint64_t size;
  uint32_t name_off, name_len; /* in names, NUL-terminated */
  uint64_t part_size;          /* PLAN_RESUME: bytes of the partial file */
  char *why;                   /* PLAN_BLOCKED: the reason */
} rentry_t;

typedef struct {
  uint32_t index;
  uint8_t kind;
  uint64_t offset;
  EVP_MD_CTX *ctx; /* RESUME: the hash of the partial file's bytes, to go on from */
} slot_t;

/* A verified small file waiting for its batch to be committed. */
typedef struct {
  uint32_t index;
  int fd;
  int resumed;
} pending_t;

typedef struct {
  xfer_conn_t *c;
  const xfer_recv_opts_t *o;
  const xfer_ui_t *ui;
  xfer_stats_t *st;
  xin_t in;
  xout_t out;
  xhash_t *hash;
  EVP_MD_CTX *ctx;
  rentry_t *e;
  uint32_t n;
  char *names;
  uint64_t total;
  mode_t umask;
  /* The directory of the last entry, kept open: entries come in tree order. */
  char parent[SK_XFER_PATH_MAX + 1];
  size_t parent_len;
  int parent_fd;   /* -1: none cached */
  int parent_dirty; /* a rename happened in it: fsync before letting go */
  int root_dirty;
  slot_t slots[SK_XFER_WINDOW];
  unsigned head, count; /* outstanding WANTs */
  unsigned unsent;      /* of which still in the output buffer */
  pending_t pending[XFER_COMMIT_FILES];
  unsigned npending;
  uint64_t pending_bytes;
  xfer_progress_t prog;
  char *err;
  size_t errlen;
  /* A drop box (o->shared): partial files are named from this key, the
   * sender's (keyed) or a random one for this session only. */
  uint8_t key[SK_XFER_KEY_LEN];
  int keyed;
  uint64_t head_since; /* when the oldest outstanding WANT became the oldest */
} receiver_t;

static const char *rname(const receiver_t *r, const rentry_t *e) { return r->names + e->name_off; }

/* The name of entry e, safe to print. */
static const char *shown(const receiver_t *r, const rentry_t *e, char *buf, size_t len) {
  sk_xfer_name_escape(rname(r, e), e->name_len, buf, len);
  return buf;
}

/* Writes the name of e's partial file (in its directory; its last
 * component starts at leaf) into out: ".NAME.part" (sk_xfer_part_name),
 * or in a drop box ".~H.part", H the first 128 bits of SHA-256(key NUL
 * name) in hex, so that only the sender holding the key finds it again.
 * Returns the length or a negative code. */
static long part_name(const receiver_t *r, const rentry_t *e, size_t leaf, char *out, size_t cap) {
  const char *name = rname(r, e);
  if (!r->o->shared)
    return sk_xfer_part_name(name + leaf, e->name_len - leaf, out, cap);
  unsigned char msg[SK_XFER_KEY_LEN + 1 + SK_XFER_PATH_MAX], h[EVP_MAX_MD_SIZE];
  unsigned hlen = 0;
  memcpy(msg, r->key, SK_XFER_KEY_LEN);
  msg[SK_XFER_KEY_LEN] = 0;
  memcpy(msg + SK_XFER_KEY_LEN + 1, name, e->name_len);
  if (!EVP_Digest(msg, SK_XFER_KEY_LEN + 1 + e->name_len, h, &hlen, EVP_sha256(), NULL) ||
      cap < 40)
    return SK_ETOOBIG;
  memcpy(out, ".~", 2);
  for (int i = 0; i < 16; i++)
    snprintf(out + 2 + 2 * i, 3, "%02x", h[i]);
  memcpy(out + 34, ".part", 6);
  return 39;
}

/* In a drop box, a file a keyed sender stored carries this attribute:
 * SHA-256("owner" NUL key NUL name), so that the same sender (and only
 * it) may later be offered HAVE for it, not a second copy. */
#define OWNER_XATTR "user.sockit.owner"

static void owner_tag(const receiver_t *r, const rentry_t *e, uint8_t tag[SK_XFER_HASH_LEN]) {
  unsigned char msg[6 + SK_XFER_KEY_LEN + 1 + SK_XFER_PATH_MAX];
  unsigned hlen = 0;
  memcpy(msg, "owner", 6);
  memcpy(msg + 6, r->key, SK_XFER_KEY_LEN);
  msg[6 + SK_XFER_KEY_LEN] = 0;
  memcpy(msg + 7 + SK_XFER_KEY_LEN, rname(r, e), e->name_len);
  if (!EVP_Digest(msg, 7 + SK_XFER_KEY_LEN + e->name_len, tag, &hlen, EVP_sha256(), NULL))
    RAND_bytes(tag, SK_XFER_HASH_LEN); /* matches nothing */
}

/* 1 if the file base (in pfd) was stored by this session's keyed sender. */
static int owned(const receiver_t *r, const rentry_t *e, int pfd, const char *base) {
  if (!r->keyed)
    return 0;
  int fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    return 0;
  uint8_t want[SK_XFER_HASH_LEN], have[SK_XFER_HASH_LEN];
  ssize_t n = fgetxattr(fd, OWNER_XATTR, have, sizeof have);
  close(fd);
  owner_tag(r, e, want);
  return n == (ssize_t)sizeof have && CRYPTO_memcmp(want, have, sizeof have) == 0;
}

/* The process umask, without changing it (other threads may create files). */
static mode_t read_umask(void) {
  FILE *f = fopen("/proc/self/status", "re");
  unsigned v = 022;
  char line[128];
  if (f) {
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "Umask: %o", &v) == 1)
        break;
    fclose(f);
  }
  return (mode_t)(v & 0777);
}

/* Sends ERROR, reads the sender out so it sees it, and returns code with
 * the same words in r->err. */
static int give_up(receiver_t *r, int code, int wire, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int give_up(receiver_t *r, int code, int wire, const char *fmt, ...) {
  char msg[SK_ERRLEN * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(r->err, r->errlen, "%s", msg);
  xconn_send_error(r->c, &r->out, wire, msg);
  xconn_drain(r->c, XFER_DRAIN_MS);
  return code;
}

/* ---- directories ------------------------------------------------------------------------- */

/* Lets go of the cached directory, fsyncing it first if a file was
 * renamed into it (the rename itself must be durable). */
static void release_parent(receiver_t *r) {
  if (r->parent_fd >= 0) {
    if (r->parent_dirty)
      fsync(r->parent_fd);
    close(r->parent_fd);
  }
  r->parent_fd = -1;
  r->parent_len = 0;
  r->parent_dirty = 0;
}

/* Returns a descriptor of the directory holding name's last component
 * (borrowed: the cache or the root owns it) and sets *leaf to where that
 * component starts. Walks one component at a time with O_NOFOLLOW from
 * the root; with create, makes missing directories (mode 0777 less the
 * umask). Returns -ENOENT (quietly) when one is missing and !create, else a
 * negative errno with the reason in why. */
static int parent_fd(receiver_t *r, const char *name, size_t len, int create, size_t *leaf,
                     char *why, size_t whylen) {
  const char *slash = NULL;
  for (size_t i = len; i-- > 0;)
    if (name[i] == '/') {
      slash = name + i;
      break;
    }
  if (!slash) {
    *leaf = 0;
    return r->o->dirfd;
  }
  size_t plen = (size_t)(slash - name);
  *leaf = plen + 1;
  if (r->parent_fd >= 0 && r->parent_len == plen && memcmp(r->parent, name, plen) == 0)
    return r->parent_fd;
  release_parent(r);
  int fd = r->o->dirfd;
  for (size_t start = 0; start < plen;) {
    const char *end = memchr(name + start, '/', plen - start);
    size_t clen = (end ? (size_t)(end - name) : plen) - start;
    char comp[SK_XFER_COMPONENT_MAX + 1];
    memcpy(comp, name + start, clen);
    comp[clen] = '\0';
    int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create) {
      if (mkdirat(fd, comp, 0777) == 0)
        fsync(fd); /* the new directory's entry, before files appear in it */
      next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    int e = errno;
    struct stat st;
    /* O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR: say what it is. */
    if (next < 0 && e == ENOTDIR && fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
      e = ELOOP;
    if (fd != r->o->dirfd)
      close(fd);
    if (next < 0) {
      char path[512];
      sk_xfer_name_escape(name, start + clen, path, sizeof path);
      if (e == ELOOP || e == EMLINK)
        snprintf(why, whylen, "'%.240s' is a symlink (not followed)", path);
      else if (e == ENOTDIR)
        snprintf(why, whylen, "'%.240s' is not a directory", path);
      else
        snprintf(why, whylen, "'%.240s': %s", path, strerror(e));
      return -e;
    }
    fd = next;
    start += clen + 1;
  }
  memcpy(r->parent, name, plen);
  r->parent_len = plen;
  r->parent_fd = fd;
  return fd;
}

/* Notes that a name changed in directory pfd (the root or the cached one). */
static void mark_dirty(receiver_t *r, int pfd) {
  if (pfd == r->o->dirfd)
    r->root_dirty = 1;
  else
    r->parent_dirty = 1;
}

/* ---- the manifest ------------------------------------------------------------------------ */

typedef struct {
  const rentry_t *e;
  const char *names;
} sort_ctx_t;

/* qsort_r order of entry indexes by name. */
static int cmp_index(const void *a, const void *b, void *arg) {
  const sort_ctx_t *s = arg;
  const rentry_t *x = &s->e[*(const uint32_t *)a], *y = &s->e[*(const uint32_t *)b];
  return strcmp(s->names + x->name_off, s->names + y->name_off);
}

/* Finds the entry named name (len bytes) in the sorted index; -1 if none. */
static int64_t find_name(const receiver_t *r, const uint32_t *sorted, const char *name,
                         size_t len) {
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const rentry_t *e = &r->e[sorted[mid]];
    size_t n = e->name_len < len ? e->name_len : len;
    int c = memcmp(rname(r, e), name, n);
    if (c == 0)
      c = e->name_len < len ? -1 : e->name_len > len ? 1 : 0;
    if (c == 0)
      return sorted[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

/* No two entries with one name; nothing under a name that is a file. */
static int check_tree(receiver_t *r) {
  uint32_t *sorted = malloc((size_t)r->n * sizeof *sorted);
  if (!sorted)
    return give_up(r, -ENOMEM, SK_XFER_ERR_LIMIT, "out of memory for %u entries", r->n);
  for (uint32_t i = 0; i < r->n; i++)
    sorted[i] = i;
  sort_ctx_t sc = {r->e, r->names};
  qsort_r(sorted, r->n, sizeof *sorted, cmp_index, &sc);
  char a[256], b[256];
  int rc = 0;
  for (uint32_t i = 1; i < r->n && rc == 0; i++)
    if (strcmp(rname(r, &r->e[sorted[i - 1]]), rname(r, &r->e[sorted[i]])) == 0)
      rc = give_up(r, XFER_EREFUSED, SK_XFER_ERR_NAME, "refused: the name '%s' appears twice",
                   shown(r, &r->e[sorted[i]], a, sizeof a));
  for (uint32_t i = 0; i < r->n && rc == 0; i++) {
    const rentry_t *e = &r->e[i];
    const char *name = rname(r, e);
    for (uint32_t k = 0; k < e->name_len && rc == 0; k++) {
      if (name[k] != '/')
        continue;
      int64_t j = find_name(r, sorted, name, k);
      if (j >= 0 && r->e[j].kind == SK_XFER_KIND_FILE)
        rc = give_up(r, XFER_EREFUSED, SK_XFER_ERR_NAME,
                     "refused: '%s' is a file, yet '%s' is listed under it",
                     shown(r, &r->e[j], a, sizeof a), shown(r, e, b, sizeof b));
    }
  }
  free(sorted);
  return rc;
}

/* Reads the sender's HELLO and the whole manifest, checking everything.
 * Returns 0, or a code with the reason sent to the sender and in err. */
static int read_manifest(receiver_t *r) {
  sk_xfer_msg_t m;
  uint64_t idle = xconn_idle(r->c);
  int rc = xin_next(&r->in, r->c, &m, idle, r->err, r->errlen);
  if (rc == SK_EBADINPUT)
    return give_up(r, rc, SK_XFER_ERR_PROTOCOL, "%s", r->err);
  if (rc < 0)
    return rc;
  if (m.type == SK_XFER_ERROR) { /* a sender refusing us at once (a TLS-only one, say) */
    char text[SK_XFER_TEXT_MAX * 4 + 8];
    sk_xfer_name_escape(m.u.error.text, m.u.error.text_len, text, sizeof text);
    return xfer_fail(XFER_EPEER, r->err, r->errlen, "%s: %s", r->c->peer, text);
  }
  if (m.type != SK_XFER_HELLO || m.u.hello.role != SK_XFER_ROLE_SENDER)
    return give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL,
                   "%s is not a sockit sender (first message %s)", r->c->peer,
                   m.type == SK_XFER_HELLO ? "HELLO from a receiver" : sk_xfer_type_name(m.type));
  if (m.u.hello.version != SK_XFER_VERSION)
    return give_up(r, SK_EBADINPUT, SK_XFER_ERR_VERSION,
                   "this receiver speaks SKXF version %d, the sender %u", SK_XFER_VERSION,
                   (unsigned)m.u.hello.version);
  r->keyed = r->o->shared && m.u.hello.has_key;
  if (r->keyed)
    memcpy(r->key, m.u.hello.key, SK_XFER_KEY_LEN);
  else if (r->o->shared && RAND_bytes(r->key, SK_XFER_KEY_LEN) != 1)
    return give_up(r, -EIO, SK_XFER_ERR_IO, "no random bytes for this session's partial files");
  rc = xin_next(&r->in, r->c, &m, idle, r->err, r->errlen);
  if (rc == SK_EBADINPUT)
    return give_up(r, rc, SK_XFER_ERR_PROTOCOL, "%s", r->err);
  if (rc < 0)
    return rc;
  if (m.type != SK_XFER_MANIFEST)
    return give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL, "expected MANIFEST from %s, got %s",
                   r->c->peer, sk_xfer_type_name(m.type));
  uint32_t max_files = r->o->max_files ? r->o->max_files : XFER_MAX_FILES_DEFAULT;
  uint64_t max_total = r->o->max_total ? r->o->max_total : XFER_MAX_TOTAL_DEFAULT;
  char h1[32], h2[32];
  if (m.u.manifest.count > max_files)
    return give_up(r, XFER_EREFUSED, SK_XFER_ERR_LIMIT,
                   "refused: %u files and directories is over this receiver's limit of %u "
                   "(--max-files)", m.u.manifest.count, max_files);
  if (m.u.manifest.total > max_total)
    return give_up(r, XFER_EREFUSED, SK_XFER_ERR_LIMIT,
                   "refused: %s (%llu bytes) is over this receiver's limit of %s (%llu bytes; "
                   "--max-total)", xfer_human(m.u.manifest.total, h1, sizeof h1),
                   (unsigned long long)m.u.manifest.total, xfer_human(max_total, h2, sizeof h2),
                   (unsigned long long)max_total);
  uint32_t count = m.u.manifest.count, name_bytes = m.u.manifest.name_bytes;
  r->total = m.u.manifest.total;
  r->e = calloc(count, sizeof *r->e);
  r->names = malloc((size_t)name_bytes + count);
  if (!r->e || !r->names)
    return give_up(r, -ENOMEM, SK_XFER_ERR_LIMIT, "out of memory for %u entries", count);
  uint64_t sum = 0;
  size_t used = 0;
  for (uint32_t i = 0; i < count; i++) {
    rc = xin_next(&r->in, r->c, &m, idle, r->err, r->errlen);
    if (rc == SK_EBADINPUT)
      return give_up(r, rc, SK_XFER_ERR_PROTOCOL, "%s", r->err);
    if (rc < 0)
      return rc;
    if (m.type != SK_XFER_ENTRY)
      return give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL,
                     "expected entry %u of %u from %s, got %s", i + 1, count, r->c->peer,
                     sk_xfer_type_name(m.type));
    char why[160], name[512];
    if (sk_xfer_name_check(m.u.entry.name, m.u.entry.name_len, why, sizeof why) < 0) {
      sk_xfer_name_escape(m.u.entry.name, m.u.entry.name_len, name, sizeof name);
      return give_up(r, XFER_EREFUSED, SK_XFER_ERR_NAME, "refused: name '%s': %s", name, why);
    }
    if (used + m.u.entry.name_len > name_bytes)
      return give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL,
                     "refused: the names are longer than the %u bytes announced", name_bytes);
    if (m.u.entry.size > r->total - sum) /* sum <= total holds: no overflow */
      return give_up(r, XFER_EREFUSED, SK_XFER_ERR_LIMIT,
                     "refused: the sizes add up to more than the %s announced",
                     xfer_human(r->total, h1, sizeof h1));
    sum += m.u.entry.size;
    rentry_t *e = &r->e[r->n++];
    e->kind = m.u.entry.kind;
    e->mode = m.u.entry.mode;
    e->mtime_sec = m.u.entry.mtime_sec;
    e->mtime_nsec = m.u.entry.mtime_nsec;
    e->size = m.u.entry.size;
    e->name_off = (uint32_t)(used + i);
    e->name_len = (uint32_t)m.u.entry.name_len;
    memcpy(r->names + e->name_off, m.u.entry.name, m.u.entry.name_len);
    r->names[e->name_off + e->name_len] = '\0';
    used += m.u.entry.name_len;
    if (e->kind == SK_XFER_KIND_FILE)
      r->st->files++;
    else
      r->st->dirs++;
  }
  xin_consume(&r->in, 0);
  if (sum != r->total)
    return give_up(r, XFER_EREFUSED, SK_XFER_ERR_LIMIT,
                   "refused: the sizes add up to %s, not the %s announced",
                   xfer_human(sum, h1, sizeof h1), xfer_human(r->total, h2, sizeof h2));
  if (used != name_bytes)
    return give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL,
                   "refused: the names hold %zu bytes, not the %u announced", used, name_bytes);
  r->st->bytes = sum;
  return check_tree(r);
}

/* ---- planning ----------------------------------------------------------------------------- */

/* Marks e as not storable, for the reason why (copied). */
static void block(rentry_t *e, const char *why) {
  e->plan = PLAN_BLOCKED;
  free(e->why);
  e->why = strdup(why);
}

/* Looks at what DIR holds for each entry (nothing is created). */
static void plan(receiver_t *r) {
  const char *missing = NULL; /* a parent directory that does not exist */
  size_t missing_len = 0;
  for (uint32_t i = 0; i < r->n; i++) {
    rentry_t *e = &r->e[i];
    const char *name = rname(r, e);
    char why[SK_ERRLEN + 64];
    size_t leaf;
    e->plan = PLAN_FRESH;
    /* Under a directory found missing just before: nothing there either. */
    if (missing_len && e->name_len > missing_len && name[missing_len] == '/' &&
        memcmp(name, missing, missing_len) == 0)
      continue;
    int pfd = parent_fd(r, name, e->name_len, 0, &leaf, why, sizeof why);
    if (pfd == -ENOENT) {
      missing = name;
      missing_len = leaf ? leaf - 1 : 0;
      continue;
    }
    if (pfd < 0) {
      block(e, why);
      continue;
    }
    struct stat st;
    if (fstatat(pfd, name + leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      e->exists = 1;
      if (e->kind == SK_XFER_KIND_DIR) {
        if (!S_ISDIR(st.st_mode)) {
          snprintf(why, sizeof why, "'%.200s' exists and is not a directory%s", name,
                   S_ISLNK(st.st_mode) ? " (a symlink, not followed)" : "");
          block(e, why);
        }
        continue;
      }
      /* A drop box never compares with what another sender may have written. */
      e->plan = S_ISREG(st.st_mode) && (uint64_t)st.st_size == e->size &&
                        (!r->o->shared || owned(r, e, pfd, name + leaf))
                    ? PLAN_HAVE : PLAN_CONFLICT;
    }
    if (e->kind == SK_XFER_KIND_DIR || e->plan == PLAN_HAVE)
      continue;
    char part[SK_XFER_COMPONENT_MAX + 1];
    if (part_name(r, e, leaf, part, sizeof part) < 0)
      continue;
    if (fstatat(pfd, part, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISREG(st.st_mode)) {
        snprintf(why, sizeof why, "its partial file '%.300s' is not a regular file (left alone)",
                 part);
        block(e, why);
      } else if (st.st_nlink == 1 && st.st_size > 0 && (uint64_t)st.st_size <= e->size &&
                 (e->plan == PLAN_FRESH || r->o->existing != XFER_KEEP)) {
        e->plan = PLAN_RESUME;
        e->part_size = (uint64_t)st.st_size;
      }
    }
  }
  release_parent(r);
}

/* Bytes the plan may still write. */
static uint64_t plan_need(const receiver_t *r) {
  uint64_t need = 0;
  for (uint32_t i = 0; i < r->n; i++) {
    const rentry_t *e = &r->e[i];
    if (e->kind != SK_XFER_KIND_FILE || e->plan == PLAN_BLOCKED)
      continue;
    if (e->plan == PLAN_RESUME)
      need += e->size - e->part_size;
    else if ((e->plan != PLAN_HAVE && e->plan != PLAN_CONFLICT) || r->o->existing != XFER_KEEP)
      need += e->size;
  }
  return need;
}

/* Shows the plan (through ui->decide) after checking free space. Returns
 * 0 to go on, or a code with the reason sent and in err. */
static int decide(receiver_t *r) {
  uint64_t need = plan_need(r);
  struct statvfs vfs;
  char h1[32], h2[32];
  if (need > 0 && fstatvfs(r->o->dirfd, &vfs) == 0) {
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (need + XFER_SPACE_MARGIN > avail || need + XFER_SPACE_MARGIN < need)
      return give_up(r, XFER_EREFUSED, SK_XFER_ERR_SPACE,
                     "refused: not enough free space in %s: %s needed, %s available "
                     "(16 MiB are kept free)", r->o->dir_name, xfer_human(need, h1, sizeof h1),
                     xfer_human(avail, h2, sizeof h2));
    if (vfs.f_files > 0 && (uint64_t)vfs.f_favail < (uint64_t)r->n + 16)
      return give_up(r, XFER_EREFUSED, SK_XFER_ERR_SPACE,
                     "refused: %s has room for %llu more files, %u needed", r->o->dir_name,
                     (unsigned long long)vfs.f_favail, r->n);
  }
  if (!r->ui || !r->ui->decide)
    return 0;
  xfer_listing_t *list = calloc(r->n ? r->n : 1, sizeof *list);
  char **notes = calloc(r->n ? r->n : 1, sizeof *notes);
  if (!list || !notes) {
    free(list);
    free(notes);
    return give_up(r, -ENOMEM, SK_XFER_ERR_LIMIT, "out of memory");
  }
  static const char *const conflict[] = {"exists: will not be overwritten",
                                         "exists: will be overwritten",
                                         "exists: will be stored under a new name"};
  for (uint32_t i = 0; i < r->n; i++) {
    const rentry_t *e = &r->e[i];
    list[i].name = rname(r, e);
    list[i].size = e->size;
    list[i].is_dir = e->kind == SK_XFER_KIND_DIR;
    list[i].note = "";
    if (e->plan == PLAN_BLOCKED) {
      list[i].note = e->why;
    } else if (e->kind == SK_XFER_KIND_DIR) {
      list[i].note = e->exists ? "exists" : "";
    } else if (e->plan == PLAN_RESUME) {
      if (asprintf(&notes[i], "resume after %s here%s", xfer_human(e->part_size, h1, sizeof h1),
                   e->exists ? (r->o->existing == XFER_OVERWRITE ? "; exists: will be overwritten"
                                                                 : "; exists: new name")
                             : "") > 0)
        list[i].note = notes[i];
    } else if (e->plan == PLAN_HAVE) {
      list[i].note = r->o->existing == XFER_KEEP ? "exists, same size: checked, kept"
                                                 : "exists, same size: checked";
    } else if (e->plan == PLAN_CONFLICT) {
      list[i].note = conflict[r->o->existing];
    }
  }
  int yes = r->ui->decide(r->ui->ctx, r->c->peer, list, r->n, r->total, need);
  for (uint32_t i = 0; i < r->n; i++)
    free(notes[i]);
  free(notes);
  free(list);
  if (!yes) {
    give_up(r, XFER_EREFUSED, SK_XFER_ERR_REFUSED, "declined by the receiver");
    return xfer_fail(XFER_EREFUSED, r->err, r->errlen, "not accepted: nothing was written");
  }
  return 0;
}

/* Creates the directory entries (mode from the sender, less the umask,
 * always writable by us), and notes which are new. */
static void make_dirs(receiver_t *r) {
  for (uint32_t i = 0; i < r->n; i++) {
    rentry_t *e = &r->e[i];
    if (e->kind != SK_XFER_KIND_DIR || e->plan == PLAN_BLOCKED)
      continue;
    char why[SK_ERRLEN + 64], nm[512];
    size_t leaf;
    int pfd = parent_fd(r, rname(r, e), e->name_len, 1, &leaf, why, sizeof why);
    if (pfd >= 0 && mkdirat(pfd, rname(r, e) + leaf, (e->mode & 0777) | 0700) == 0) {
      e->created = 1;
      mark_dirty(r, pfd);
      continue;
    }
    struct stat st;
    if (pfd >= 0 && errno == EEXIST && fstatat(pfd, rname(r, e) + leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(st.st_mode))
      continue;
    if (pfd >= 0)
      snprintf(why, sizeof why, "'%.240s': %s", shown(r, e, nm, sizeof nm),
               errno == EEXIST ? "exists and is not a directory" : strerror(errno));
    block(e, why);
    if (r->ui && r->ui->warn)
      r->ui->warn(r->ui->ctx, why);
  }
}

/* ---- files --------------------------------------------------------------------------------- */

static void report(receiver_t *r, uint32_t i, int status, const char *stored_as,
                   const char *reason, int resumed) {
  rentry_t *e = &r->e[i];
  switch (status) {
  case SK_XFER_RES_STORED: r->st->stored++; break;
  case SK_XFER_RES_IDENTICAL: r->st->identical++; break;
  default: r->st->failed++; break;
  }
  if (resumed)
    r->st->resumed++;
  r->prog.files_done++;
  if (r->ui && r->ui->report) {
    xfer_report_t rep = {.index = i, .name = rname(r, e), .stored_as = stored_as,
                         .status = status, .reason = reason ? reason : "", .resumed = resumed};
    r->ui->report(r->ui->ctx, &rep);
  }
}

/* Sends RESULT for entry i and reports it locally. */
static int result(receiver_t *r, uint32_t i, int status, const char *text, const char *stored_as,
                  int resumed) {
  report(r, i, status, stored_as, text, resumed);
  sk_xfer_msg_t m = {.type = SK_XFER_RESULT};
  const char *t = stored_as ? stored_as : text ? text : "";
  size_t len = strlen(t);
  m.u.result.index = i;
  m.u.result.status = (uint8_t)status;
  m.u.result.text = t;
  m.u.result.text_len = len > SK_XFER_TEXT_MAX ? SK_XFER_TEXT_MAX : len;
  return xout_msg(&r->out, r->c, NULL, &m, r->err, r->errlen);
}

/* Hashes the first len bytes of name (relative to pfd) into ctx, checking
 * it is a regular file of exactly that size and not a link to elsewhere. */
static int hash_existing(receiver_t *r, int pfd, const char *name, uint64_t len, EVP_MD_CTX *ctx,
                         int single_link) {
  int fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    return -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0)
    rc = -errno;
  else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != len ||
           (single_link && st.st_nlink != 1))
    rc = -ESTALE;
  else
    rc = xhash_file_alive(r->hash, ctx, fd, 0, len, r->c, &r->out, NULL, r->err, r->errlen);
  close(fd);
  return rc;
}

/* Sends the WANT for file entry i, or its RESULT when nothing is wanted.
 * Returns 1 when a WANT went out, 0 when not, or a negative code. */
static int want(receiver_t *r, uint32_t i) {
  rentry_t *e = &r->e[i];
  if (e->plan == PLAN_BLOCKED)
    return result(r, i, SK_XFER_RES_FAILED, e->why, NULL, 0);
  if (e->plan == PLAN_CONFLICT && r->o->existing == XFER_KEEP)
    return result(r, i, SK_XFER_RES_EXISTS,
                  "a different file has this name: not overwritten (--overwrite, --rename)", NULL, 0);
  slot_t *s = &r->slots[(r->head + r->count) % SK_XFER_WINDOW];
  memset(s, 0, sizeof *s);
  s->index = i;
  sk_xfer_msg_t m = {.type = SK_XFER_WANT};
  m.u.want.index = i;
  const char *name = rname(r, e);
  char why[SK_ERRLEN];
  size_t leaf;
  int pfd = -ENOENT;
  if (e->plan == PLAN_HAVE || e->plan == PLAN_RESUME)
    pfd = parent_fd(r, name, e->name_len, 0, &leaf, why, sizeof why);
  if (pfd >= 0 && e->plan == PLAN_HAVE) {
    xhash_ctx_reset(r->hash, r->ctx);
    if (hash_existing(r, pfd, name + leaf, e->size, r->ctx, 0) == 0) {
      m.u.want.kind = r->o->existing == XFER_KEEP ? SK_XFER_WANT_CHECK : SK_XFER_WANT_HAVE;
      m.u.want.offset = e->size;
      xhash_peek(r->ctx, m.u.want.hash);
    } else if (r->o->existing == XFER_KEEP) {
      return result(r, i, SK_XFER_RES_EXISTS, "a file with this name appeared: not overwritten",
                    NULL, 0);
    }
  } else if (pfd >= 0 && e->plan == PLAN_RESUME) {
    char part[SK_XFER_COMPONENT_MAX + 1];
    xwatch_pause(r->c, 1); /* this side is busy, not the sender */
    int ok = part_name(r, e, leaf, part, sizeof part) > 0 &&
             (s->ctx = xhash_ctx_new(r->hash)) != NULL &&
             hash_existing(r, pfd, part, e->part_size, s->ctx, 1) == 0;
    xwatch_pause(r->c, 0);
    if (ok) {
      m.u.want.kind = SK_XFER_WANT_RESUME;
      m.u.want.offset = e->part_size;
      xhash_peek(s->ctx, m.u.want.hash);
    } else {
      EVP_MD_CTX_free(s->ctx);
      s->ctx = NULL;
    }
  }
  s->kind = m.u.want.kind;
  s->offset = m.u.want.offset;
  r->count++;
  r->unsent++;
  int rc = xout_msg(&r->out, r->c, NULL, &m, r->err, r->errlen);
  return rc < 0 ? rc : 1;
}

/* pwrite() until all of buf is written; 0 or a negative errno (ENOSPC...). */
static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off) {
  const char *p = buf;
  while (len) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

/* Opens the partial file part (in pfd) for writing from offset, which is
 * 0 (start over: created, or truncated) or the verified prefix length. A
 * new partial file is made with O_EXCL and mode (permissions, less the
 * umask), and *fresh set: nothing else can be behind that name. Returns
 * the fd or a negative errno with why filled. */
static int open_part(int pfd, const char *part, uint64_t offset, mode_t mode, int *fresh,
                     char *why, size_t whylen) {
  const int flags = O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  struct stat st;
  int fd, e = 0;
  *fresh = 0;
  if (offset == 0) {
    fd = openat(pfd, part, flags | O_CREAT | O_EXCL, mode);
    if (fd >= 0) {
      if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        *fresh = 1;
        return fd;
      }
      e = errno;
      close(fd);
      snprintf(why, whylen, "partial file '%.300s': %s", part, strerror(e));
      return -e;
    }
    if (errno != EEXIST) {
      e = errno;
      snprintf(why, whylen, "partial file '%.300s': %s", part, strerror(e));
      return -e;
    }
    /* One is there already (left by an earlier run): look before using it. */
    if (fstatat(pfd, part, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (!S_ISREG(st.st_mode) || st.st_nlink != 1)) {
      if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "its partial file '%.300s' is not a regular file (left alone)", part);
        return -EEXIST;
      }
      unlinkat(pfd, part, 0); /* a hard link to elsewhere: never write through it */
    }
  }
  fd = openat(pfd, part, flags | (offset ? 0 : O_CREAT), mode);
  if (fd < 0) {
    e = errno;
    snprintf(why, whylen, "partial file '%.300s': %s", part, strerror(e));
    return -e;
  }
  if (fstat(fd, &st) < 0)
    e = errno;
  else if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || (uint64_t)st.st_size < offset)
    e = ESTALE;
  else if (flock(fd, LOCK_EX | LOCK_NB) < 0)
    e = errno == EWOULDBLOCK ? EBUSY : errno;
  else if (ftruncate(fd, (off_t)offset) < 0)
    e = errno;
  if (e) {
    close(fd);
    snprintf(why, whylen, "partial file '%.300s': %s", part,
             e == EBUSY ? "another receiver is writing it" : e == ESTALE ? "changed under us" : strerror(e));
    return -e;
  }
  return fd;
}

/* Gives the verified partial file fd its mode (permissions only: setuid,
 * setgid and sticky are dropped; the umask applies), unless mode_set (it
 * was made with it), and its time. Returns 0, or SK_XFER_RES_FAILED with
 * why filled. */
static int prepare(receiver_t *r, const rentry_t *e, int fd, int mode_set, char *why,
                   size_t whylen) {
  struct timespec times[2] = {{.tv_nsec = UTIME_OMIT},
                              {.tv_sec = (time_t)e->mtime_sec, .tv_nsec = (long)e->mtime_nsec}};
  if ((!mode_set && fchmod(fd, (mode_t)(e->mode & 0777) & ~r->umask) < 0) ||
      futimens(fd, times) < 0) {
    snprintf(why, whylen, "set mode and time: %s", strerror(errno));
    return SK_XFER_RES_FAILED;
  }
  if (r->o->shared && r->keyed) { /* best effort: without it, a re-send is a new copy */
    uint8_t tag[SK_XFER_HASH_LEN];
    owner_tag(r, e, tag);
    if (fsetxattr(fd, OWNER_XATTR, tag, sizeof tag, 0) < 0)
      errno = 0;
  }
  return 0;
}

/* Renames the verified, synced partial file part (in pfd) to its name, or
 * with --rename to the first free "name (k).ext". Returns 0 with stored
 * (the relative name used) filled, or a RESULT status (> 0) with why
 * filled; the partial file is removed then. */
static int place(receiver_t *r, const rentry_t *e, int pfd, size_t leaf, const char *part,
                 char *stored, size_t cap, char *why, size_t whylen) {
  const char *name = rname(r, e);
  snprintf(stored, cap, "%s", name);
  const char *base = name + leaf;
  int rc = renameat2(pfd, part, pfd, base, r->o->existing == XFER_OVERWRITE ? 0 : RENAME_NOREPLACE);
  if (rc < 0 && (errno == EINVAL || errno == ENOSYS) && r->o->existing != XFER_OVERWRITE) {
    /* A filesystem without RENAME_NOREPLACE: link() never replaces either. */
    rc = linkat(pfd, part, pfd, base, 0);
    if (rc == 0)
      unlinkat(pfd, part, 0);
  }
  for (unsigned k = 1; rc < 0 && errno == EEXIST && r->o->existing == XFER_RENAME &&
                       k < XFER_RENAME_TRIES;
       k++) {
    char alt[SK_XFER_COMPONENT_MAX + 1];
    if (sk_xfer_rename_name(base, e->name_len - leaf, k, alt, sizeof alt) < 0)
      break;
    rc = renameat2(pfd, part, pfd, alt, RENAME_NOREPLACE);
    if (rc == 0)
      snprintf(stored, cap, "%.*s%s", (int)leaf, name, alt);
  }
  if (rc < 0) {
    int err = errno;
    unlinkat(pfd, part, 0);
    if (err == EEXIST || err == ENOTEMPTY || err == EISDIR) {
      snprintf(why, whylen, err == EEXIST ? "a file with this name appeared: not overwritten"
                                          : "a directory has this name: not replaced");
      return SK_XFER_RES_EXISTS;
    }
    snprintf(why, whylen, "rename into place: %s", strerror(err));
    return SK_XFER_RES_FAILED;
  }
  mark_dirty(r, pfd);
  return 0;
}

/* Sends the RESULT of a placed file (status from place()). */
static int placed(receiver_t *r, uint32_t i, int status, const char *stored, const char *why,
                  int resumed) {
  if (status > 0)
    return result(r, i, status, why, NULL, resumed);
  int renamed = strcmp(stored, rname(r, &r->e[i])) != 0;
  return result(r, i, SK_XFER_RES_STORED, "", renamed ? stored : NULL, resumed);
}

/* Commits the batch of verified small files: one syncfs() makes all their
 * data durable at once (a journal commit per file is what makes many small
 * files slow on a disk; when syncfs fails each is fsynced instead), then
 * each is renamed into place and its RESULT goes out. quiet: the session has failed already,
 * only put what is verified in place. Returns 0 or a fatal negative code
 * (with ERROR sent unless quiet). */
static int commit_batch(receiver_t *r, int quiet) {
  if (r->npending == 0)
    return 0;
  xwatch_pause(r->c, 1);
  int synced = syncfs(r->o->dirfd) == 0, rc = 0;
  xwatch_pause(r->c, 0);
  char nm[512] = "";
  for (unsigned k = 0; k < r->npending; k++) {
    pending_t *p = &r->pending[k];
    rentry_t *e = &r->e[p->index];
    char why[SK_ERRLEN + 64], stored[SK_XFER_PATH_MAX + 1], part[SK_XFER_COMPONENT_MAX + 1];
    /* syncfs() wrote and flushed every one of them; without it, one by one. */
    if (rc == 0 && !synced && fsync(p->fd) < 0) {
      rc = -errno;
      shown(r, e, nm, sizeof nm);
    }
    close(p->fd);
    if (rc < 0)
      continue; /* not durable: it stays a partial file, for a resume */
    size_t leaf;
    int pfd = parent_fd(r, rname(r, e), e->name_len, 0, &leaf, why, sizeof why);
    int st = SK_XFER_RES_FAILED;
    if (pfd >= 0 && part_name(r, e, leaf, part, sizeof part) > 0)
      st = place(r, e, pfd, leaf, part, stored, sizeof stored, why, sizeof why);
    int w = placed(r, p->index, st, stored, why, p->resumed);
    if (w < 0 && !quiet)
      rc = w;
  }
  r->npending = 0;
  r->pending_bytes = 0;
  if (rc < 0 && !quiet && rc != SK_EOF)
    return give_up(r, rc, SK_XFER_ERR_IO, "fsync%s%s%s: %s", nm[0] ? " '" : "", nm,
                   nm[0] ? "'" : "", strerror(-rc));
  return rc;
}

/* Counts n content bytes as in place. */
static void took(receiver_t *r, uint64_t n) {
  r->prog.file_done += n;
  r->prog.total_done += n;
  r->prog.moved += n;
  r->st->moved += n;
}

/* Receives the next content bytes, up to left and to the end of the
 * hashing thread's next slot, into that slot at pos's offset within a
 * page (xhash_slot says why; what the frame reader holds first, then
 * from the connection), writes them to fd at pos (unless fd < 0) and
 * hands them to the thread, which hashes them into ctx. Whatever arrived
 * is written even when the connection then fails. Sets *got to the bytes
 * taken. Returns 0, or a negative code: the connection's (SK_EOF,
 * SK_ETIMEDOUT, -ECANCELED, -errno) with *disk 0, or the write's errno
 * with *disk 1. */
static int take_chunk(receiver_t *r, int fd, EVP_MD_CTX *ctx, uint64_t pos, uint64_t left,
                      size_t *got, int *disk) {
  size_t skew = (size_t)(pos % XFER_ALIGN);
  unsigned char *buf = xhash_slot(r->hash) + skew;
  size_t want = left < XFER_HASH_CHUNK - skew ? (size_t)left : XFER_HASH_CHUNK - skew;
  size_t n = xin_avail(&r->in) < want ? xin_avail(&r->in) : want;
  int rc = 0;
  memcpy(buf, r->in.buf + r->in.off, n);
  xin_consume(&r->in, n);
  while (n < want && rc == 0) {
    ssize_t k = xconn_read(r->c, buf + n, want - n, xconn_idle(r->c));
    if (k < 0)
      rc = (int)k;
    else
      n += (size_t)k;
  }
  *got = n;
  *disk = 0;
  if (fd >= 0 && n) {
    int w = pwrite_all(fd, buf, n, pos);
    if (w < 0) {
      *disk = 1;
      return w;
    }
    xhash_push(r->hash, ctx, skew, n);
  }
  return rc;
}

/* Receives the content of entry e (after its FILE frame, which the caller
 * has consumed): size - offset bytes into fd (or thrown away when fd < 0),
 * hashed into ctx. A small file is taken whole from the frame buffer and
 * hashed here; a larger one goes through the hashing thread's slots
 * (take_chunk): received into a buffer, written with pwrite() and hashed
 * on the other core from that buffer, so the bytes are copied once from
 * the socket and once into the file and never read back. Every byte that
 * arrives is written before anything can fail, so a cut connection
 * leaves the longest partial file possible. Returns 0, or a negative
 * code with r->err filled and *wire set to the SKXF error the sender must
 * be told (SK_XFER_ERR_IO for a failed write; 0 when the connection
 * failed and there is no one to tell). */
static int take_content(receiver_t *r, rentry_t *e, uint64_t offset, int fd, EVP_MD_CTX *ctx,
                        int *wire) {
  uint64_t pos = offset;
  char nm[512], h1[32], h2[32];
  int rc = 0, disk = 0;
  *wire = 0;
  r->prog.file_done = offset;
  if (e->size - offset <= XFER_SMALL_FILE) {
    size_t n = (size_t)(e->size - offset);
    rc = xin_fill(&r->in, r->c, n); /* nothing of a small file is written before it is whole */
    if (rc == 0 && fd >= 0) {
      rc = pwrite_all(fd, r->in.buf + r->in.off, n, pos);
      disk = rc < 0;
      if (rc == 0)
        EVP_DigestUpdate(ctx, r->in.buf + r->in.off, n);
    }
    if (rc == 0) {
      xin_consume(&r->in, n);
      pos += n;
      took(r, n);
    }
  }
  while (pos < e->size && rc == 0) {
    size_t got = 0;
    rc = take_chunk(r, fd, ctx, pos, e->size - pos, &got, &disk);
    if (!disk) {
      pos += got;
      took(r, got);
    }
    if (rc == 0 && r->ui && r->ui->progress)
      r->ui->progress(r->ui->ctx, &r->prog);
  }
  xhash_wait(r->hash); /* buffer jobs cannot fail; the thread is done with ctx */
  if (rc == 0)
    return 0;
  if (disk) {
    *wire = SK_XFER_ERR_IO;
    return xfer_fail(rc, r->err, r->errlen,
                     "'%s': write: %s; the partial file is kept for a resume",
                     shown(r, e, nm, sizeof nm), strerror(-rc));
  }
  return xfer_fail(rc, r->err, r->errlen, "'%s': %s after %s of %s%s",
                   shown(r, e, nm, sizeof nm),
                   rc == SK_EOF ? "connection closed" : xfer_strerror(rc),
                   xfer_human(pos, h1, sizeof h1), xfer_human(e->size, h2, sizeof h2),
                   fd >= 0 && pos > 0 ? "; the partial file is kept for a resume" : "");
}

/* Handles the FILE frame m for the oldest outstanding WANT. */
static int take_file(receiver_t *r, const sk_xfer_msg_t *m) {
  slot_t *s = &r->slots[r->head];
  rentry_t *e = &r->e[s->index];
  char nm[512], why[SK_ERRLEN + 64];
  uint32_t i = s->index;
  int status = m->u.file.status;
  uint64_t offset = m->u.file.offset;
  int ok = m->u.file.index == i;
  if (status == SK_XFER_FILE_DATA)
    ok = ok && s->kind != SK_XFER_WANT_CHECK &&
         (offset == 0 || (s->kind == SK_XFER_WANT_RESUME && offset == s->offset));
  else if (status == SK_XFER_FILE_SAME)
    ok = ok && (s->kind == SK_XFER_WANT_HAVE || s->kind == SK_XFER_WANT_CHECK);
  else if (status == SK_XFER_FILE_DIFFERENT)
    ok = ok && s->kind == SK_XFER_WANT_CHECK;
  if (!ok)
    return give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL,
                   "bad message from %s: FILE %u (status %d, offset %llu) does not answer "
                   "WANT %u", r->c->peer, m->u.file.index, status,
                   (unsigned long long)offset, i);
  xin_consume(&r->in, 0);
  r->head = (r->head + 1) % SK_XFER_WINDOW;
  r->count--;
  r->prog.file = i;
  r->prog.name = rname(r, e);
  r->prog.file_size = e->size;
  r->prog.file_done = 0;
  EVP_MD_CTX *ctx = s->ctx;
  s->ctx = NULL;
  int rc;
  switch (status) {
  case SK_XFER_FILE_SAME:
    r->prog.total_done += e->size;
    EVP_MD_CTX_free(ctx);
    return result(r, i, SK_XFER_RES_IDENTICAL, "", NULL, 0);
  case SK_XFER_FILE_DIFFERENT:
    r->prog.total_done += e->size;
    EVP_MD_CTX_free(ctx);
    return result(r, i, SK_XFER_RES_EXISTS,
                  "a different file has this name: not overwritten (--overwrite, --rename)", NULL, 0);
  case SK_XFER_FILE_CHANGED:
  case SK_XFER_FILE_UNREADABLE:
    r->prog.total_done += e->size;
    EVP_MD_CTX_free(ctx);
    return result(r, i, SK_XFER_RES_CHANGED,
                  status == SK_XFER_FILE_CHANGED ? "the sender's file changed; not sent"
                                                 : "the sender could not read it", NULL, 0);
  default:
    break;
  }
  /* DATA: from the verified prefix, or from the start. */
  if (offset == 0 || !ctx) {
    EVP_MD_CTX_free(ctx);
    ctx = NULL;
  }
  if (!ctx) {
    ctx = r->ctx;
    xhash_ctx_reset(r->hash, ctx);
  }
  int resumed = offset > 0;
  r->prog.total_done += offset;
  const char *name = rname(r, e);
  size_t leaf;
  char part[SK_XFER_COMPONENT_MAX + 1];
  why[0] = '\0';
  int pfd = parent_fd(r, name, e->name_len, 1, &leaf, why, sizeof why);
  int fd = -1, fresh = 0;
  /* Made with its final permissions when they leave us read and write
   * (a resume must reopen it); else 0600 now and chmod at the end. */
  mode_t final = (mode_t)(e->mode & 0777) & ~r->umask;
  mode_t mode = (final & 0600) == 0600 ? final : 0600;
  if (pfd >= 0 && part_name(r, e, leaf, part, sizeof part) > 0)
    fd = open_part(pfd, part, offset, mode, &fresh, why, sizeof why);
  int wire = 0;
  rc = take_content(r, e, offset, fd, ctx, &wire);
  if (rc < 0 && wire) /* the sender is told why, then the session ends */
    rc = give_up(r, rc, wire, "%s", r->err);
  if (rc < 0)
    goto out;
  /* FILE_END: the sender's hash of what it sent. */
  sk_xfer_msg_t end;
  rc = xin_next(&r->in, r->c, &end, xconn_idle(r->c), r->err, r->errlen);
  if (rc == SK_EBADINPUT || (rc > 0 && (end.type != SK_XFER_FILE_END || end.u.end.index != i))) {
    rc = give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL,
                 "'%s': after its %llu bytes %s sent %s, not FILE_END (more bytes than declared?)",
                 shown(r, e, nm, sizeof nm), (unsigned long long)e->size, r->c->peer,
                 rc > 0 ? sk_xfer_type_name(end.type) : "garbage");
    goto out;
  }
  if (rc < 0)
    goto out;
  uint8_t mine[SK_XFER_HASH_LEN];
  unsigned hlen = 0;
  EVP_DigestFinal_ex(ctx, mine, &hlen);
  int changed = end.u.end.status == SK_XFER_END_CHANGED;
  xin_consume(&r->in, 0);
  if (fd < 0) {
    rc = result(r, i, SK_XFER_RES_FAILED, why[0] ? why : "cannot store it", NULL, resumed);
  } else if (changed || memcmp(mine, end.u.end.hash, SK_XFER_HASH_LEN) != 0) {
    close(fd);
    fd = -1;
    unlinkat(pfd, part, 0);
    rc = changed ? result(r, i, SK_XFER_RES_CHANGED,
                          "the sender's file changed while it was sent; dropped", NULL, resumed)
                 : result(r, i, SK_XFER_RES_BAD_HASH,
                          "content does not match the sender's SHA-256; dropped", NULL, resumed);
  } else if ((rc = prepare(r, e, fd, fresh && mode == final, why, sizeof why)) > 0) {
    close(fd);
    fd = -1;
    unlinkat(pfd, part, 0);
    rc = result(r, i, rc, why, NULL, resumed);
  } else if (e->size <= XFER_SMALL_FILE) {
    /* Small: into the batch, committed together (commit_batch). */
    pending_t *p = &r->pending[r->npending++];
    p->index = i;
    p->fd = fd;
    p->resumed = resumed;
    fd = -1;
    r->pending_bytes += e->size;
    if (r->npending == XFER_COMMIT_FILES || r->pending_bytes >= XFER_COMMIT_BYTES)
      rc = commit_batch(r, 0);
  } else {
    char stored[SK_XFER_PATH_MAX + 1];
    rc = commit_batch(r, 0); /* what came before goes in first */
    xwatch_pause(r->c, 1);
    if (rc == 0 && fsync(fd) < 0)
      rc = give_up(r, -errno, SK_XFER_ERR_IO, "'%s': fsync: %s", shown(r, e, nm, sizeof nm),
                   strerror(errno));
    xwatch_pause(r->c, 0);
    close(fd);
    fd = -1;
    if (rc == 0) {
      pfd = parent_fd(r, name, e->name_len, 0, &leaf, why, sizeof why); /* the batch moved the cache */
      int st = pfd >= 0 ? place(r, e, pfd, leaf, part, stored, sizeof stored, why, sizeof why)
                        : SK_XFER_RES_FAILED;
      rc = placed(r, i, st, stored, why, resumed);
    }
  }
out:
  if (fd >= 0) {
    close(fd);
    if (rc < 0 && r->o->shared && !r->keyed) /* nobody could resume it */
      unlinkat(pfd, part, 0);
  }
  if (ctx != r->ctx)
    EVP_MD_CTX_free(ctx);
  if (r->ui && r->ui->progress)
    r->ui->progress(r->ui->ctx, &r->prog);
  return rc;
}

/* A KEEPALIVE from the sender, in a drop box: accepted only while it has
 * a prefix to hash for the oldest outstanding WANT (RESUME, HAVE, CHECK),
 * and for at most XFER_KEEPALIVE_GRACE_MS + offset / XFER_KEEPALIVE_HASH_RATE
 * since that WANT became the oldest. Returns 0, or the code after ERROR. */
static int keepalive(receiver_t *r) {
  xin_consume(&r->in, 0);
  const slot_t *s = &r->slots[r->head];
  if (r->count == 0 || s->kind == SK_XFER_WANT_FULL)
    return give_up(r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL,
                   "%s sent KEEPALIVE with no prefix to hash (only a sender hashing for a "
                   "RESUME or HAVE may)", r->c->peer);
  uint64_t allowed = XFER_KEEPALIVE_GRACE_MS + s->offset / (XFER_KEEPALIVE_HASH_RATE / 1000);
  uint64_t spent = xfer_now_ms() - r->head_since;
  if (spent > allowed)
    return give_up(r, SK_ETIMEDOUT, SK_XFER_ERR_ABORTED,
                   "%s sent KEEPALIVE for %.1f s: hashing %llu bytes takes at most %.1f s here",
                   r->c->peer, (double)spent / 1000.0, (unsigned long long)s->offset,
                   (double)allowed / 1000.0);
  xwatch_touch(r->c);
  return 0;
}

/* Sets the time of the directories this transfer created, deepest first
 * (creating files in them changed it). */
static void finish_dirs(receiver_t *r) {
  for (uint32_t i = r->n; i-- > 0;) {
    rentry_t *e = &r->e[i];
    if (e->kind != SK_XFER_KIND_DIR || !e->created)
      continue;
    char why[SK_ERRLEN];
    size_t leaf;
    int pfd = parent_fd(r, rname(r, e), e->name_len, 0, &leaf, why, sizeof why);
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT},
                                {.tv_sec = (time_t)e->mtime_sec, .tv_nsec = (long)e->mtime_nsec}};
    if (pfd >= 0)
      utimensat(pfd, rname(r, e) + leaf, times, AT_SYMLINK_NOFOLLOW);
  }
  release_parent(r);
  if (r->root_dirty)
    fsync(r->o->dirfd);
}

int xfer_receive(xfer_conn_t *c, const xfer_recv_opts_t *o, const xfer_ui_t *ui,
                 xfer_stats_t *st, char *err, size_t errlen) {
  receiver_t r;
  memset(&r, 0, sizeof r);
  memset(st, 0, sizeof *st);
  st->started_ms = xfer_now_ms();
  snprintf(st->peer, sizeof st->peer, "%s", c->peer);
  r.c = c;
  r.o = o;
  r.ui = ui;
  r.st = st;
  r.err = err;
  r.errlen = errlen;
  r.parent_fd = -1;
  r.umask = read_umask();
  int rc = -ENOMEM;
  if (xin_init(&r.in) < 0 || xout_init(&r.out) < 0 || xhash_start(&r.hash) < 0 ||
      !(r.ctx = xhash_ctx_new(r.hash))) {
    xfer_fail(rc, err, errlen, "out of memory");
    goto out;
  }
  sk_xfer_msg_t m = {.type = SK_XFER_HELLO};
  m.u.hello.version = SK_XFER_VERSION;
  m.u.hello.role = SK_XFER_ROLE_RECEIVER;
  rc = xout_msg(&r.out, c, NULL, &m, err, errlen);
  if (rc == 0)
    rc = xout_flush(&r.out, c, NULL, err, errlen);
  if (rc == 0)
    rc = read_manifest(&r);
  if (rc < 0)
    goto out;
  xwatch_pause(c, 1); /* planning and asking: nothing is wanted from the sender */
  plan(&r);
  rc = decide(&r);
  xwatch_pause(c, 0);
  if (rc < 0)
    goto out;
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_ACCEPT;
  rc = xout_msg(&r.out, c, NULL, &m, err, errlen);
  if (rc < 0)
    goto out;
  xwatch_pause(c, 1); /* making (and syncing) directories: this side is busy */
  make_dirs(&r);
  xwatch_pause(c, 0);
  r.prog.files = st->files;
  r.prog.total_size = st->bytes;
  r.prog.started_ms = xfer_now_ms(); /* accepted: the content starts moving */
  r.head_since = r.prog.started_ms;
  uint32_t scan = 0;
  for (;;) {
    while (rc == 0 && r.count < SK_XFER_WINDOW && scan < r.n) {
      uint32_t i = scan++;
      if (r.e[i].kind != SK_XFER_KIND_FILE)
        continue;
      rc = want(&r, i);
      if (rc == 0) /* answered at once: nothing to move */
        r.prog.total_done += r.e[i].size;
      if (rc > 0)
        rc = 0;
    }
    if (rc < 0 || r.count == 0)
      break;
    /* Keep the sender busy: when it knows of fewer than half a window of
     * WANTs, send the new ones now rather than when we run dry. */
    if (r.unsent && r.count - r.unsent < SK_XFER_WINDOW / 2) {
      rc = xout_flush(&r.out, c, NULL, err, errlen);
      r.unsent = 0;
      if (rc < 0)
        break;
    }
    rc = xin_next(&r.in, c, &m, 0, err, errlen);
    if (rc == 0) {
      rc = xout_flush(&r.out, c, NULL, err, errlen);
      r.unsent = 0;
      if (rc == 0)
        rc = xin_next(&r.in, c, &m, xconn_idle(c), err, errlen);
    }
    if (rc == SK_EBADINPUT) {
      rc = give_up(&r, rc, SK_XFER_ERR_PROTOCOL, "%s", err);
      break;
    }
    if (rc < 0)
      break;
    if (m.type == SK_XFER_KEEPALIVE) { /* the sender is hashing a long prefix */
      if (o->shared && (rc = keepalive(&r)) < 0)
        break;
      continue;
    }
    if (m.type == SK_XFER_ERROR) {
      char text[SK_XFER_TEXT_MAX * 4 + 8];
      sk_xfer_name_escape(m.u.error.text, m.u.error.text_len, text, sizeof text);
      rc = xfer_fail(XFER_EPEER, err, errlen, "%s: %s", c->peer, text);
      break;
    }
    if (m.type != SK_XFER_FILE) {
      rc = give_up(&r, SK_EBADINPUT, SK_XFER_ERR_PROTOCOL, "bad message from %s: unexpected %s",
                   c->peer, sk_xfer_type_name(m.type));
      break;
    }
    rc = take_file(&r, &m);
    r.head_since = xfer_now_ms();
  }
  if (rc == 0)
    rc = commit_batch(&r, 0);
  if (rc == 0) {
    xwatch_pause(c, 1);
    finish_dirs(&r);
    xwatch_pause(c, 0);
    memset(&m, 0, sizeof m);
    m.type = SK_XFER_DONE;
    rc = xout_msg(&r.out, c, NULL, &m, err, errlen);
    if (rc == 0)
      rc = xout_flush(&r.out, c, NULL, err, errlen);
    if (rc == 0)
      xconn_drain(c, XFER_DRAIN_MS); /* the sender closes once it has read DONE */
    if (rc == 0 && st->failed)
      rc = xfer_fail(XFER_EFILES, err, errlen, "%u of %u files failed", st->failed, st->files);
  }
out:
  commit_batch(&r, 1); /* verified files go in place even when the session failed */
  xhash_stop(r.hash); /* first: the thread may still be hashing into a ctx */
  release_parent(&r);
  for (unsigned k = 0; k < r.count; k++)
    EVP_MD_CTX_free(r.slots[(r.head + k) % SK_XFER_WINDOW].ctx);
  if (r.e)
    for (uint32_t i = 0; i < r.n; i++)
      free(r.e[i].why);
  free(r.e);
  free(r.names);
  EVP_MD_CTX_free(r.ctx);
  xout_free(&r.out);
  xin_free(&r.in);
  st->ended_ms = xfer_now_ms();
  return rc;
}
