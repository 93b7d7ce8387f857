/* tests/unit/test_xfer.c - the SKXF/1 codec and the name rules of
 * `sockit send` / `sockit receive` (include/sockit/xfer.h).
 *
 * Codec: every message type encodes and parses back; every strict prefix
 * of a frame is "need more", never "bad"; a stream of frames split at
 * every point, and fed one byte at a time, gives the same messages; each
 * class of bad input is refused as soon as the field that breaks the rule
 * is complete, and not one byte earlier; the encoder refuses what the
 * parser would. Names: a table of hostile names (traversal, absolute,
 * controls and escape sequences, invalid and overlong UTF-8, bidi and
 * invisible characters, separator look-alikes) each refused for the right
 * reason, and a table of ordinary names from many scripts accepted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/xfer.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* A frame of type with payload p (n bytes), written into out. */
static size_t frame(uint8_t *out, uint8_t type, const void *p, size_t n) {
  out[0] = type;
  out[1] = (uint8_t)(n >> 24);
  out[2] = (uint8_t)(n >> 16);
  out[3] = (uint8_t)(n >> 8);
  out[4] = (uint8_t)n;
  memcpy(out + 5, p, n);
  return 5 + n;
}

static long parse(const uint8_t *b, size_t n, sk_xfer_msg_t *m) {
  char why[160];
  return sk_xfer_parse(b, n, m, why, sizeof why);
}

/* Every strict prefix is "need more"; the whole parses to its length. */
static void assert_prefixes_need_more(const uint8_t *b, size_t n) {
  sk_xfer_msg_t m;
  for (size_t k = 0; k < n; k++)
    if (parse(b, k, &m) != SK_EAGAIN)
      fail_msg("prefix of %zu of %zu bytes: %ld, expected need-more", k, n, parse(b, k, &m));
  assert_int_equal(parse(b, n, &m), (long)n);
}

#define MAX_SAMPLES 24

/* The valid messages every test below uses, one of each kind and shape. */
static size_t sample_messages(sk_xfer_msg_t *out) {
  size_t n = 0;
  memset(out, 0, MAX_SAMPLES * sizeof *out);
  out[n].type = SK_XFER_HELLO;
  out[n].u.hello.version = SK_XFER_VERSION;
  out[n++].u.hello.role = SK_XFER_ROLE_SENDER;
  out[n].type = SK_XFER_MANIFEST;
  out[n].u.manifest.count = 3;
  out[n].u.manifest.total = 0x0102030405060708ull;
  out[n++].u.manifest.name_bytes = 40;
  out[n].type = SK_XFER_ENTRY;
  out[n].u.entry.kind = SK_XFER_KIND_FILE;
  out[n].u.entry.mode = 0644;
  out[n].u.entry.mtime_sec = -12345; /* before 1970 is allowed */
  out[n].u.entry.mtime_nsec = 999999999;
  out[n].u.entry.size = 1ull << 40;
  out[n].u.entry.name = "d/\xe6\x97\xa5\xe6\x9c\xac.txt";
  out[n++].u.entry.name_len = strlen("d/\xe6\x97\xa5\xe6\x9c\xac.txt");
  out[n].type = SK_XFER_ENTRY;
  out[n].u.entry.kind = SK_XFER_KIND_DIR;
  out[n].u.entry.mode = 07755;
  out[n].u.entry.name = "d";
  out[n++].u.entry.name_len = 1;
  out[n++].type = SK_XFER_ACCEPT;
  out[n].type = SK_XFER_WANT;
  out[n].u.want.index = 2;
  out[n++].u.want.kind = SK_XFER_WANT_FULL;
  out[n].type = SK_XFER_WANT;
  out[n].u.want.index = 0xfffffffe;
  out[n].u.want.kind = SK_XFER_WANT_RESUME;
  out[n].u.want.offset = 4096;
  memset(out[n++].u.want.hash, 0xab, SK_XFER_HASH_LEN);
  out[n].type = SK_XFER_FILE;
  out[n].u.file.index = 7;
  out[n].u.file.status = SK_XFER_FILE_DATA;
  out[n++].u.file.offset = 4096;
  out[n].type = SK_XFER_FILE;
  out[n].u.file.index = 8;
  out[n++].u.file.status = SK_XFER_FILE_SAME;
  out[n].type = SK_XFER_FILE_END;
  out[n].u.end.index = 7;
  out[n].u.end.status = SK_XFER_END_CHANGED;
  memset(out[n++].u.end.hash, 0x5a, SK_XFER_HASH_LEN);
  out[n].type = SK_XFER_RESULT;
  out[n].u.result.index = 7;
  out[n].u.result.status = SK_XFER_RES_STORED;
  out[n].u.result.text = "d/a (1).txt";
  out[n++].u.result.text_len = 11;
  out[n].type = SK_XFER_RESULT;
  out[n].u.result.index = 9;
  out[n++].u.result.status = SK_XFER_RES_IDENTICAL; /* empty text */
  out[n++].type = SK_XFER_DONE;
  out[n++].type = SK_XFER_KEEPALIVE;
  out[n].type = SK_XFER_ERROR;
  out[n].u.error.code = SK_XFER_ERR_SPACE;
  out[n].u.error.text = "not enough space";
  out[n++].u.error.text_len = 16;
  return n;
}

static void assert_same_msg(const sk_xfer_msg_t *a, const sk_xfer_msg_t *b) {
  assert_int_equal(a->type, b->type);
  switch (a->type) {
  case SK_XFER_HELLO:
    assert_int_equal(a->u.hello.version, b->u.hello.version);
    assert_int_equal(a->u.hello.role, b->u.hello.role);
    break;
  case SK_XFER_MANIFEST:
    assert_int_equal(a->u.manifest.count, b->u.manifest.count);
    assert_true(a->u.manifest.total == b->u.manifest.total);
    assert_int_equal(a->u.manifest.name_bytes, b->u.manifest.name_bytes);
    break;
  case SK_XFER_ENTRY:
    assert_int_equal(a->u.entry.kind, b->u.entry.kind);
    assert_int_equal(a->u.entry.mode, b->u.entry.mode);
    assert_true(a->u.entry.mtime_sec == b->u.entry.mtime_sec);
    assert_int_equal(a->u.entry.mtime_nsec, b->u.entry.mtime_nsec);
    assert_true(a->u.entry.size == b->u.entry.size);
    assert_int_equal(a->u.entry.name_len, b->u.entry.name_len);
    assert_memory_equal(a->u.entry.name, b->u.entry.name, a->u.entry.name_len);
    break;
  case SK_XFER_WANT:
    assert_int_equal(a->u.want.index, b->u.want.index);
    assert_int_equal(a->u.want.kind, b->u.want.kind);
    assert_true(a->u.want.offset == b->u.want.offset);
    assert_memory_equal(a->u.want.hash, b->u.want.hash, SK_XFER_HASH_LEN);
    break;
  case SK_XFER_FILE:
    assert_int_equal(a->u.file.index, b->u.file.index);
    assert_int_equal(a->u.file.status, b->u.file.status);
    assert_true(a->u.file.offset == b->u.file.offset);
    break;
  case SK_XFER_FILE_END:
    assert_int_equal(a->u.end.index, b->u.end.index);
    assert_int_equal(a->u.end.status, b->u.end.status);
    assert_memory_equal(a->u.end.hash, b->u.end.hash, SK_XFER_HASH_LEN);
    break;
  case SK_XFER_RESULT:
    assert_int_equal(a->u.result.index, b->u.result.index);
    assert_int_equal(a->u.result.status, b->u.result.status);
    assert_int_equal(a->u.result.text_len, b->u.result.text_len);
    if (a->u.result.text_len)
      assert_memory_equal(a->u.result.text, b->u.result.text, a->u.result.text_len);
    break;
  case SK_XFER_ERROR:
    assert_int_equal(a->u.error.code, b->u.error.code);
    assert_int_equal(a->u.error.text_len, b->u.error.text_len);
    assert_memory_equal(a->u.error.text, b->u.error.text, a->u.error.text_len);
    break;
  default:
    break;
  }
}

/* ---- codec: valid frames ------------------------------------------------------------ */

static void test_roundtrip_every_type(void **state) {
  (void)state;
  sk_xfer_msg_t msgs[MAX_SAMPLES];
  size_t n = sample_messages(msgs);
  int seen[SK_XFER_TYPE_LAST + 1] = {0};
  for (size_t i = 0; i < n; i++) {
    uint8_t buf[SK_XFER_FRAME_MAX], again[SK_XFER_FRAME_MAX];
    long len = sk_xfer_encode(&msgs[i], buf, sizeof buf);
    assert_true(len >= SK_XFER_HDR);
    assert_int_equal(buf[0], msgs[i].type);
    sk_xfer_msg_t m;
    assert_int_equal(parse(buf, (size_t)len, &m), len);
    assert_same_msg(&msgs[i], &m);
    /* one encoding per message: encode(parse(frame)) == frame */
    assert_int_equal(sk_xfer_encode(&m, again, sizeof again), len);
    assert_memory_equal(buf, again, (size_t)len);
    /* parsed pointers point into the input */
    if (m.type == SK_XFER_ENTRY)
      assert_ptr_equal(m.u.entry.name, (const char *)buf + SK_XFER_HDR + SK_XFER_ENTRY_FIXED);
    seen[msgs[i].type] = 1;
  }
  for (int t = SK_XFER_HELLO; t <= SK_XFER_TYPE_LAST; t++)
    if (!seen[t])
      fail_msg("no sample of type %d", t);
}

static void test_known_bytes(void **state) {
  (void)state;
  /* HELLO from a sender, spelled out: the wire format is a contract. */
  static const uint8_t hello[] = {1, 0, 0, 0, 8, 'S', 'K', 'X', 'F', 0, 1, 1, 0};
  sk_xfer_msg_t m = {.type = SK_XFER_HELLO};
  m.u.hello.version = 1;
  m.u.hello.role = SK_XFER_ROLE_SENDER;
  uint8_t buf[64];
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), sizeof hello);
  assert_memory_equal(buf, hello, sizeof hello);
  /* FILE: index 258, DATA, offset 65536 */
  static const uint8_t file[] = {6, 0, 0, 0, 13, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  sk_xfer_msg_t f;
  assert_int_equal(parse(file, sizeof file, &f), sizeof file);
  assert_int_equal(f.type, SK_XFER_FILE);
  assert_int_equal(f.u.file.index, 258);
  assert_int_equal(f.u.file.status, SK_XFER_FILE_DATA);
  assert_true(f.u.file.offset == 65536);
  static const uint8_t accept[] = {4, 0, 0, 0, 0};
  assert_int_equal(parse(accept, sizeof accept, &f), 5);
  assert_int_equal(f.type, SK_XFER_ACCEPT);
}

static void test_every_prefix_needs_more(void **state) {
  (void)state;
  sk_xfer_msg_t msgs[MAX_SAMPLES];
  size_t n = sample_messages(msgs);
  for (size_t i = 0; i < n; i++) {
    uint8_t buf[SK_XFER_FRAME_MAX];
    long len = sk_xfer_encode(&msgs[i], buf, sizeof buf);
    assert_true(len > 0);
    assert_prefixes_need_more(buf, (size_t)len);
  }
}

/* All samples back to back, parsed from a buffer cut at every point: the
 * first part alone gives whole frames and then "need more", never "bad";
 * joined, everything parses. */
static void test_every_split_point(void **state) {
  (void)state;
  sk_xfer_msg_t msgs[MAX_SAMPLES];
  size_t n = sample_messages(msgs);
  static uint8_t stream[MAX_SAMPLES * SK_XFER_FRAME_MAX];
  size_t total = 0, ends[MAX_SAMPLES];
  for (size_t i = 0; i < n; i++) {
    long len = sk_xfer_encode(&msgs[i], stream + total, sizeof stream - total);
    assert_true(len > 0);
    total += (size_t)len;
    ends[i] = total;
  }
  for (size_t cut = 0; cut <= total; cut++) {
    size_t off = 0, k = 0;
    sk_xfer_msg_t m;
    long r;
    while ((r = parse(stream + off, cut - off, &m)) > 0) {
      assert_same_msg(&msgs[k], &m);
      off += (size_t)r;
      assert_int_equal(off, ends[k]);
      k++;
    }
    assert_int_equal(r, SK_EAGAIN);
    while (off < total && (r = parse(stream + off, total - off, &m)) > 0) {
      assert_same_msg(&msgs[k++], &m);
      off += (size_t)r;
    }
    assert_int_equal(off, total);
    assert_int_equal(k, n);
  }
}

/* A receiver's way: one byte arrives at a time into an accumulator. */
static void test_byte_at_a_time(void **state) {
  (void)state;
  sk_xfer_msg_t msgs[MAX_SAMPLES];
  size_t n = sample_messages(msgs);
  static uint8_t stream[MAX_SAMPLES * SK_XFER_FRAME_MAX], acc[SK_XFER_FRAME_MAX];
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += (size_t)sk_xfer_encode(&msgs[i], stream + total, sizeof stream - total);
  size_t have = 0, k = 0;
  for (size_t i = 0; i < total; i++) {
    acc[have++] = stream[i];
    sk_xfer_msg_t m;
    long r = parse(acc, have, &m);
    if (r == SK_EAGAIN)
      continue;
    assert_int_equal(r, (long)have);
    assert_same_msg(&msgs[k++], &m);
    have = 0;
  }
  assert_int_equal(k, n);
  assert_int_equal(have, 0);
}

static void test_limits_exactly(void **state) {
  (void)state;
  uint8_t buf[SK_XFER_FRAME_MAX + 16];
  static char name[SK_XFER_PATH_MAX + 1], text[SK_XFER_TEXT_MAX + 1];
  memset(name, 'n', sizeof name);
  memset(text, 't', sizeof text);
  sk_xfer_msg_t m = {.type = SK_XFER_ENTRY};
  m.u.entry.kind = SK_XFER_KIND_FILE;
  m.u.entry.name = name;
  m.u.entry.name_len = SK_XFER_PATH_MAX;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_XFER_FRAME_MAX);
  sk_xfer_msg_t p;
  assert_int_equal(parse(buf, SK_XFER_FRAME_MAX, &p), SK_XFER_FRAME_MAX);
  m.u.entry.name_len = SK_XFER_PATH_MAX + 1;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  m.u.entry.name_len = 0;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  sk_xfer_msg_t r = {.type = SK_XFER_RESULT};
  r.u.result.text = text;
  r.u.result.text_len = SK_XFER_TEXT_MAX;
  assert_int_equal(sk_xfer_encode(&r, buf, sizeof buf), 5 + 5 + SK_XFER_TEXT_MAX);
  r.u.result.text_len = SK_XFER_TEXT_MAX + 1;
  assert_int_equal(sk_xfer_encode(&r, buf, sizeof buf), SK_EBADINPUT);
  sk_xfer_msg_t e = {.type = SK_XFER_ERROR};
  e.u.error.code = SK_XFER_ERR_IO;
  e.u.error.text = "";
  e.u.error.text_len = 0;
  assert_int_equal(sk_xfer_encode(&e, buf, sizeof buf), SK_EBADINPUT);
  sk_xfer_msg_t mf = {.type = SK_XFER_MANIFEST};
  mf.u.manifest.count = SK_XFER_COUNT_MAX;
  mf.u.manifest.name_bytes = SK_XFER_NAMES_MAX;
  assert_int_equal(sk_xfer_encode(&mf, buf, sizeof buf), 21);
  mf.u.manifest.count = SK_XFER_COUNT_MAX + 1;
  assert_int_equal(sk_xfer_encode(&mf, buf, sizeof buf), SK_EBADINPUT);
  /* a buffer one byte short */
  sk_xfer_msg_t h = {.type = SK_XFER_HELLO};
  h.u.hello.version = 1;
  h.u.hello.role = SK_XFER_ROLE_RECEIVER;
  assert_int_equal(sk_xfer_encode(&h, buf, 12), SK_ETOOBIG);
  assert_int_equal(sk_xfer_encode(&h, buf, 13), 13);
  sk_xfer_msg_t bad = {.type = 0};
  assert_int_equal(sk_xfer_encode(&bad, buf, sizeof buf), SK_EBADINPUT);
  bad.type = 12;
  assert_int_equal(sk_xfer_encode(&bad, buf, sizeof buf), SK_EBADINPUT);
}

/* A later version's HELLO may be longer: it must parse (so the engine can
 * say "version 2"), while a version 1 HELLO has exactly 8 bytes. */
static void test_hello_versions(void **state) {
  (void)state;
  uint8_t p[20] = {'S', 'K', 'X', 'F', 0, 2, 1, 0};
  uint8_t buf[64];
  sk_xfer_msg_t m;
  size_t n = frame(buf, SK_XFER_HELLO, p, sizeof p);
  assert_int_equal(parse(buf, n, &m), (long)n);
  assert_int_equal(m.u.hello.version, 2);
  p[5] = 1;
  n = frame(buf, SK_XFER_HELLO, p, sizeof p);
  assert_int_equal(parse(buf, n, &m), SK_EBADINPUT);
}

/* ---- codec: bad input ----------------------------------------------------------------- */

typedef struct {
  const char *what;
  uint8_t bytes[64];
  size_t len;
  size_t bad_at; /* the shortest prefix that must already be refused */
  const char *why; /* part of the reason */
} bad_case_t;

static size_t build_bad_cases(bad_case_t *c) {
  size_t n = 0;
  uint8_t p[64];
#define CASE(w, t, plen, at, reason)                                                    \
  do {                                                                                  \
    c[n].what = w;                                                                      \
    c[n].len = frame(c[n].bytes, t, p, plen);                                           \
    c[n].bad_at = at;                                                                   \
    c[n].why = reason;                                                                  \
    n++;                                                                                \
  } while (0)
  /* unknown types: refused from the first byte */
  memset(p, 0, sizeof p);
  CASE("type 0", 0, 0, 1, "unknown message type");
  CASE("type 12", 12, 0, 1, "unknown message type");
  CASE("type 255", 255, 8, 1, "unknown message type");
  /* lengths: refused once the length can only end up out of range */
  CASE("ACCEPT with a payload", SK_XFER_ACCEPT, 1, 5, "payload length");
  CASE("DONE with a payload", SK_XFER_DONE, 3, 5, "payload length");
  CASE("KEEPALIVE with a payload", SK_XFER_KEEPALIVE, 1, 5, "payload length");
  CASE("WANT too short", SK_XFER_WANT, 44, 5, "payload length");
  CASE("FILE too long", SK_XFER_FILE, 14, 5, "payload length");
  CASE("MANIFEST too short", SK_XFER_MANIFEST, 15, 5, "payload length");
  CASE("ENTRY without a name", SK_XFER_ENTRY, 25, 5, "payload length");
  CASE("ERROR without text", SK_XFER_ERROR, 2, 5, "payload length");
  CASE("HELLO too short", SK_XFER_HELLO, 7, 5, "payload length");
  /* a huge length is refused from its first byte: nothing is buffered */
  c[n].what = "ENTRY of 16 MiB";
  c[n].len = 5;
  memcpy(c[n].bytes, (uint8_t[]){SK_XFER_ENTRY, 0x01, 0, 0, 0}, 5);
  c[n].bad_at = 2;
  c[n++].why = "payload length";
  c[n].what = "RESULT of 64 KiB";
  c[n].len = 5;
  memcpy(c[n].bytes, (uint8_t[]){SK_XFER_RESULT, 0, 0x01, 0, 0}, 5);
  c[n].bad_at = 3;
  c[n++].why = "payload length";
  /* HELLO fields */
  memcpy(p, "SKXG\0\1\1\0", 8);
  CASE("HELLO bad magic", SK_XFER_HELLO, 8, 9, "magic");
  memcpy(p, "XKXF\0\1\1\0", 8);
  CASE("HELLO bad first magic byte", SK_XFER_HELLO, 8, 6, "magic");
  memcpy(p, "SKXF\0\1\3\0", 8);
  CASE("HELLO bad role", SK_XFER_HELLO, 8, 12, "role");
  memcpy(p, "SKXF\0\1\1\7", 8);
  CASE("HELLO reserved byte", SK_XFER_HELLO, 8, 13, "reserved");
  /* MANIFEST */
  memset(p, 0, sizeof p);
  CASE("MANIFEST of no entries", SK_XFER_MANIFEST, 16, 9, "count");
  memcpy(p, (uint8_t[]){0x00, 0x0f, 0x42, 0x41}, 4); /* 1000001 */
  CASE("MANIFEST of too many entries", SK_XFER_MANIFEST, 16, 9, "count");
  memset(p, 0, sizeof p);
  p[3] = 10;
  p[15] = 9; /* 9 bytes of names for 10 names */
  CASE("MANIFEST names shorter than the count", SK_XFER_MANIFEST, 16, 21, "names");
  p[12] = 0x01; /* 16 MiB + 9 */
  CASE("MANIFEST names over the limit", SK_XFER_MANIFEST, 16, 21, "limit");
  /* ENTRY */
  memset(p, 0, sizeof p);
  p[0] = 3;
  p[25] = 'x';
  CASE("ENTRY bad kind", SK_XFER_ENTRY, 26, 6, "kind");
  p[0] = SK_XFER_KIND_FILE;
  p[3] = 0x10; /* mode 010000 */
  CASE("ENTRY mode with file-type bits", SK_XFER_ENTRY, 26, 10, "mode");
  p[3] = 0;
  memcpy(p + 13, (uint8_t[]){0x3b, 0x9a, 0xca, 0x00}, 4); /* 1e9 */
  CASE("ENTRY nanoseconds = 1e9", SK_XFER_ENTRY, 26, 22, "nanoseconds");
  memset(p + 13, 0, 4);
  p[0] = SK_XFER_KIND_DIR;
  p[24] = 1;
  CASE("ENTRY directory with a size", SK_XFER_ENTRY, 26, 30, "directory");
  /* WANT */
  memset(p, 0, sizeof p);
  p[4] = 4;
  CASE("WANT bad kind", SK_XFER_WANT, 45, 10, "kind");
  p[4] = SK_XFER_WANT_FULL;
  p[12] = 1;
  CASE("WANT FULL with an offset", SK_XFER_WANT, 45, 18, "offset");
  p[12] = 0;
  p[44] = 1;
  CASE("WANT FULL with a hash", SK_XFER_WANT, 45, 50, "hash");
  p[44] = 0;
  p[4] = SK_XFER_WANT_RESUME;
  CASE("WANT RESUME from 0", SK_XFER_WANT, 45, 18, "RESUME");
  /* FILE, FILE_END, RESULT, ERROR */
  memset(p, 0, sizeof p);
  p[4] = 5;
  CASE("FILE bad status", SK_XFER_FILE, 13, 10, "status");
  p[4] = SK_XFER_FILE_SAME;
  p[12] = 9;
  CASE("FILE SAME with an offset", SK_XFER_FILE, 13, 18, "offset");
  memset(p, 0, sizeof p);
  p[4] = 2;
  CASE("FILE_END bad status", SK_XFER_FILE_END, 37, 10, "status");
  p[4] = 6;
  CASE("RESULT bad status", SK_XFER_RESULT, 5, 10, "status");
  memset(p, 0, sizeof p);
  p[2] = 'x';
  CASE("ERROR code 0", SK_XFER_ERROR, 3, 7, "code");
  p[1] = 9;
  CASE("ERROR code 9", SK_XFER_ERROR, 3, 7, "code");
#undef CASE
  return n;
}

static void test_bad_input_classes(void **state) {
  (void)state;
  bad_case_t cases[64];
  size_t n = build_bad_cases(cases);
  assert_true(n > 30);
  for (size_t i = 0; i < n; i++) {
    const bad_case_t *c = &cases[i];
    sk_xfer_msg_t m;
    char why[160];
    for (size_t k = 0; k <= c->len; k++) {
      why[0] = '\0';
      long r = sk_xfer_parse(c->bytes, k, &m, why, sizeof why);
      if (k < c->bad_at && r != SK_EAGAIN)
        fail_msg("%s: prefix %zu gives %ld, expected need-more (%s)", c->what, k, r, why);
      if (k >= c->bad_at && r != SK_EBADINPUT)
        fail_msg("%s: prefix %zu gives %ld, expected bad", c->what, k, r);
      if (k >= c->bad_at && !strstr(why, c->why))
        fail_msg("%s: reason '%s' does not say '%s'", c->what, why, c->why);
    }
  }
}

/* The encoder refuses the same out-of-range fields. */
static void test_encode_refuses_bad_fields(void **state) {
  (void)state;
  uint8_t buf[SK_XFER_FRAME_MAX];
  sk_xfer_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_WANT;
  m.u.want.kind = SK_XFER_WANT_FULL;
  m.u.want.offset = 1;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  m.u.want.kind = SK_XFER_WANT_RESUME;
  m.u.want.offset = 0;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  m.u.want.kind = 9;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_ENTRY;
  m.u.entry.kind = SK_XFER_KIND_DIR;
  m.u.entry.size = 1;
  m.u.entry.name = "d";
  m.u.entry.name_len = 1;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  m.u.entry.size = 0;
  m.u.entry.mode = 010000;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  m.u.entry.mode = 0755;
  m.u.entry.mtime_nsec = 1000000000u;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_HELLO;
  m.u.hello.version = 1;
  m.u.hello.role = 0;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_FILE;
  m.u.file.status = SK_XFER_FILE_CHANGED;
  m.u.file.offset = 5;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
  memset(&m, 0, sizeof m);
  m.type = SK_XFER_MANIFEST;
  m.u.manifest.count = 0;
  assert_int_equal(sk_xfer_encode(&m, buf, sizeof buf), SK_EBADINPUT);
}

static void test_type_names(void **state) {
  (void)state;
  assert_string_equal(sk_xfer_type_name(SK_XFER_WANT), "WANT");
  assert_string_equal(sk_xfer_type_name(SK_XFER_ERROR), "ERROR");
  assert_string_equal(sk_xfer_type_name(SK_XFER_KEEPALIVE), "KEEPALIVE");
  assert_string_equal(sk_xfer_type_name(0), "?");
  assert_string_equal(sk_xfer_type_name(99), "?");
}

/* ---- names ------------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  size_t len;      /* 0: strlen */
  const char *why; /* part of the reason; NULL: accepted */
} name_case_t;

static void check_names(const name_case_t *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char why[200] = "";
    size_t len = t[i].len ? t[i].len : strlen(t[i].name);
    int r = sk_xfer_name_check(t[i].name, len, why, sizeof why);
    char shown[600];
    sk_xfer_name_escape(t[i].name, len, shown, sizeof shown);
    if (!t[i].why && r != 0)
      fail_msg("'%s' (case %zu) refused: %s", shown, i, why);
    if (t[i].why && r != SK_EBADINPUT)
      fail_msg("'%s' (case %zu) accepted, expected '%s'", shown, i, t[i].why);
    if (t[i].why && !strstr(why, t[i].why))
      fail_msg("'%s' (case %zu): reason '%s' does not say '%s'", shown, i, why, t[i].why);
  }
}

static void test_hostile_names(void **state) {
  (void)state;
  static char long_comp[SK_XFER_COMPONENT_MAX + 2], long_path[SK_XFER_PATH_MAX + 2];
  memset(long_comp, 'c', SK_XFER_COMPONENT_MAX + 1);
  for (size_t i = 0; i < SK_XFER_PATH_MAX + 1; i++)
    long_path[i] = i % 2 ? '/' : 'p';
  static const name_case_t t[] = {
      /* structure */
      {"", 0, "empty name"},
      {"/etc/passwd", 0, "absolute"},
      {"//x", 0, "absolute"},
      {"..", 0, "'..' component"},
      {"../x", 0, "'..' component"},
      {"a/../../x", 0, "'..' component"},
      {"a/..", 0, "'..' component"},
      {".", 0, "'.' component"},
      {"./a", 0, "'.' component"},
      {"a/./b", 0, "'.' component"},
      {"a//b", 0, "empty component"},
      {"a/", 0, "empty component"},
      {".x.part", 0, "partial file"},
      {"d/.secret.txt.part", 0, "partial file"},
      {".~0123456789abcdef.part", 0, "partial file"},
      /* bytes */
      {"a\0b", 3, "NUL"},
      {"\0", 1, "NUL"},
      {"a\\b", 0, "backslash"},
      {"..\\..\\windows", 0, "backslash"},
      /* terminal escapes and controls */
      {"a\x1b[31mred", 0, "control character U+001B"},
      {"\x1b]0;title\x07", 0, "control character"},
      {"bell\x07", 0, "control character U+0007"},
      {"new\nline", 0, "control character U+000A"},
      {"cr\r", 0, "control character"},
      {"tab\t", 0, "control character"},
      {"del\x7f", 0, "control character U+007F"},
      {"\xc2\x9b" "31m", 0, "control character U+009B"}, /* C1 CSI */
      {"\xc2\x85", 0, "control character U+0085"},      /* NEL */
      /* invalid UTF-8 */
      {"\xc0\xaf", 0, "invalid UTF-8"},                 /* overlong '/' */
      {"\xc0\xae\xc0\xae/etc", 0, "invalid UTF-8"},     /* overlong ".." */
      {"\xe0\x80\xaf", 0, "invalid UTF-8"},             /* 3-byte overlong '/' */
      {"\xf0\x80\x80\xaf", 0, "invalid UTF-8"},         /* 4-byte overlong '/' */
      {"\xc1\xbf", 0, "invalid UTF-8"},
      {"\xed\xa0\x80", 0, "invalid UTF-8"},             /* surrogate */
      {"\xf4\x90\x80\x80", 0, "invalid UTF-8"},         /* > U+10FFFF */
      {"\xf8\x88\x80\x80\x80", 0, "invalid UTF-8"},     /* 5-byte form */
      {"\xff", 0, "invalid UTF-8"},
      {"a\x80", 0, "invalid UTF-8 (byte 0x80) at byte 1"},
      {"\xe6\x97", 0, "invalid UTF-8"},                 /* cut */
      {"\xe6\x97x", 0, "invalid UTF-8"},
      /* hiding and reordering */
      {"evil\xe2\x80\xae" "gnp.exe", 0, "bidirectional control U+202E"},
      {"\xe2\x80\x8f", 0, "bidirectional"},             /* RLM */
      {"\xe2\x81\xa6x", 0, "bidirectional"},            /* LRI */
      {"\xd8\x9c", 0, "bidirectional"},                 /* arabic letter mark */
      {"a\xe2\x80\x8b" "b", 0, "invisible character U+200B"},
      {"a\xe2\x80\x8d" "b", 0, "invisible"},            /* ZWJ */
      {"\xef\xbb\xbf" "file", 0, "invisible character U+FEFF"},
      {"soft\xc2\xad" "hyphen", 0, "invisible"},
      {"\xe3\x85\xa4", 0, "invisible"},                 /* hangul filler */
      {"\xf3\xa0\x81\x81", 0, "invisible character U+E0041"}, /* tag 'A' */
      {"\xe2\x80\xa8", 0, "line separator"},
      {"\xef\xbf\xbe", 0, "noncharacter"},
      {"\xef\xb7\x90", 0, "noncharacter"},
      {"\xf0\x9f\xbf\xbf", 0, "noncharacter"},          /* U+1FFFF */
      /* what NFKC or Windows best-fit turn into separators or dots */
      {"\xef\xbc\x8f" "etc", 0, "look-alike of '/'"},  /* U+FF0F */
      {"a\xe2\x88\x95" "b", 0, "look-alike of '/'"},   /* U+2215 */
      {"1\xe2\x81\x84" "2", 0, "look-alike of '/'"},   /* U+2044 */
      {"\xef\xbc\x8e\xef\xbc\x8e", 0, "look-alike of '.'"}, /* U+FF0E x2 */
      {"\xe2\x80\xa5", 0, "look-alike of '.'"},        /* U+2025 */
      {"\xef\xb9\x92", 0, "look-alike of '.'"},        /* U+FE52 */
      {"\xef\xbc\xbc", 0, "look-alike of '\\'"},       /* U+FF3C */
      {"\xef\xb9\xa8", 0, "look-alike of '\\'"},       /* U+FE68 */
      /* sizes */
      {long_comp, SK_XFER_COMPONENT_MAX + 1, "longer than 255"},
      {long_path, SK_XFER_PATH_MAX + 1, "longer than 4096"},
  };
  check_names(t, sizeof t / sizeof t[0]);
}

static void test_ordinary_names(void **state) {
  (void)state;
  static char comp255[SK_XFER_COMPONENT_MAX + 1], path4096[SK_XFER_PATH_MAX + 1];
  memset(comp255, 'c', SK_XFER_COMPONENT_MAX);
  for (size_t i = 0; i < SK_XFER_PATH_MAX; i++) /* "pp/p/p/.../p" */
    path4096[i] = i < 2 || i % 2 ? 'p' : '/';
  static const name_case_t t[] = {
      {"a", 0, NULL},
      {"report.pdf", 0, NULL},
      {"dir/sub/file.tar.gz", 0, NULL},
      {".hidden", 0, NULL},
      {"a/.b", 0, NULL},
      {"...", 0, NULL},
      {"..a", 0, NULL},
      {"a..b", 0, NULL},
      {"x.part", 0, NULL},
      {".part", 0, NULL},
      {"-rf", 0, NULL},
      {" spaced  name ", 0, NULL},
      {"C:file", 0, NULL},
      {"\xc3\xbcn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9.txt", 0, NULL}, /* NFC */
      {"e\xcc\x81t\xc3\xa9", 0, NULL},                       /* NFD e + U+0301 */
      {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e/\xe3\x83\x95\xe3\x82\xa1\xe3\x82\xa4\xe3\x83\xab", 0,
       NULL},                                                /* Japanese */
      {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", 0, NULL}, /* Russian */
      {"\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a", 0, NULL},         /* Arabic letters */
      {"\xf0\x9f\x98\x80.png", 0, NULL},                     /* emoji */
      {"\xe2\x9d\xa4\xef\xb8\x8f", 0, NULL},                 /* heart + VS16 */
      {"notes\xe2\x80\xa6", 0, NULL},                        /* ellipsis */
      {"\xef\xbf\xbd", 0, NULL},                             /* replacement character */
      {comp255, SK_XFER_COMPONENT_MAX, NULL},
      {path4096, SK_XFER_PATH_MAX, NULL},
  };
  check_names(t, sizeof t / sizeof t[0]);
}

static void test_escape(void **state) {
  (void)state;
  char out[128];
  struct {
    const char *in;
    size_t len;
    const char *want;
  } t[] = {
      {"plain.txt", 0, "plain.txt"},
      {"a\x1b[31mred", 0, "a\\x1b[31mred"},
      {"bell\x07", 0, "bell\\x07"},
      {"a\\b", 0, "a\\\\b"},
      {"\xc2\x9b", 0, "\\u{009B}"},
      {"x\xe2\x80\xaey", 0, "x\\u{202E}y"},
      {"\xff\xfe", 0, "\\xff\\xfe"},
      {"\xc0\xaf", 0, "\\xc0\\xaf"},
      {"a\0b", 3, "a\\x00b"},
      {"\xe6\x97\xa5\xe6\x9c\xac", 0, "\xe6\x97\xa5\xe6\x9c\xac"},
      {"\xef\xbc\x8f", 0, "\\u{FF0F}"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    size_t len = t[i].len ? t[i].len : strlen(t[i].in);
    size_t n = sk_xfer_name_escape(t[i].in, len, out, sizeof out);
    assert_string_equal(out, t[i].want);
    assert_int_equal(n, strlen(t[i].want));
  }
  /* Nothing printed ever holds a control byte. */
  char all[256];
  for (int b = 0; b < 256; b++)
    all[b] = (char)b;
  char big[4096];
  sk_xfer_name_escape(all, sizeof all, big, sizeof big);
  for (const unsigned char *p = (const unsigned char *)big; *p; p++)
    assert_true(*p >= 0x20 && *p != 0x7f && *p < 0x80);
  /* Cut with "..." when it does not fit; always terminated. */
  char small[12];
  size_t n = sk_xfer_name_escape("abcdefghijklmnop", 16, small, sizeof small);
  assert_string_equal(small, "abcdefgh...");
  assert_int_equal(n, 11);
  n = sk_xfer_name_escape("\x1b\x1b\x1b\x1b", 4, small, sizeof small);
  assert_string_equal(small, "\\x1b\\x1b...");
  n = sk_xfer_name_escape("abc", 3, small, 4);
  assert_string_equal(small, "abc");
  n = sk_xfer_name_escape("abcd", 4, small, 4);
  assert_string_equal(small, "...");
  /* never half a UTF-8 character */
  n = sk_xfer_name_escape("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, small, 8);
  assert_string_equal(small, "\xe6\x97\xa5...");
}

static void test_part_names(void **state) {
  (void)state;
  char out[SK_XFER_COMPONENT_MAX + 1];
  assert_int_equal(sk_xfer_part_name("a.txt", 5, out, sizeof out), 11);
  assert_string_equal(out, ".a.txt.part");
  assert_true(sk_xfer_is_part_name(out, 11));
  static char base[SK_XFER_COMPONENT_MAX];
  memset(base, 'b', sizeof base);
  /* 249 bytes still fit ".NAME.part" in 255 */
  assert_int_equal(sk_xfer_part_name(base, 249, out, sizeof out), 255);
  assert_true(sk_xfer_is_part_name(out, 255));
  /* 250 do not: a hash instead, different for different names */
  long n1 = sk_xfer_part_name(base, 250, out, sizeof out);
  assert_int_equal(n1, 23);
  assert_true(sk_xfer_is_part_name(out, 23));
  char other[SK_XFER_COMPONENT_MAX + 1];
  base[0] = 'c';
  assert_int_equal(sk_xfer_part_name(base, 250, other, sizeof other), 23);
  assert_string_not_equal(out, other);
  assert_int_equal(sk_xfer_part_name("a.txt", 5, out, 11), SK_ETOOBIG);
  assert_false(sk_xfer_is_part_name(".part", 5));
  assert_false(sk_xfer_is_part_name("a.part", 6));
  assert_false(sk_xfer_is_part_name(".a.parts", 8));
}

static void test_rename_names(void **state) {
  (void)state;
  char out[SK_XFER_COMPONENT_MAX + 1];
  struct {
    const char *in;
    unsigned k;
    const char *want;
  } t[] = {
      {"a.txt", 1, "a (1).txt"},
      {"a", 2, "a (2)"},
      {".bashrc", 1, ".bashrc (1)"},
      {".config.json", 3, ".config (3).json"},
      {"a.tar.gz", 3, "a (3).tar.gz"},
      {"archive.tar", 1, "archive (1).tar"},
      {"my.report.pdf", 12, "my.report (12).pdf"},
      {"notes.a-very-long-extension-indeed", 1, "notes.a-very-long-extension-indeed (1)"},
      {"\xe6\x97\xa5\xe6\x9c\xac.txt", 999, "\xe6\x97\xa5\xe6\x9c\xac (999).txt"},
      {"..part", 1, "..part (1)"}, /* not ". (1).part": that is a partial file's name */
      {".a.b.part", 2, ".a.b.part (2)"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    long n = sk_xfer_rename_name(t[i].in, strlen(t[i].in), t[i].k, out, sizeof out);
    assert_int_equal(n, (long)strlen(t[i].want));
    assert_string_equal(out, t[i].want);
    assert_int_equal(sk_xfer_name_check(out, (size_t)n, NULL, 0), 0);
  }
  /* A 255-byte name of 3-byte characters: shortened on a character edge. */
  static char base[SK_XFER_COMPONENT_MAX + 1];
  size_t len = 0;
  while (len + 3 <= 251) {
    memcpy(base + len, "\xe6\x97\xa5", 3);
    len += 3;
  }
  memcpy(base + len, ".txt", 4);
  len += 4;
  long n = sk_xfer_rename_name(base, len, 7, out, sizeof out);
  assert_true(n > 0 && n <= SK_XFER_COMPONENT_MAX);
  assert_int_equal(sk_xfer_name_check(out, (size_t)n, NULL, 0), 0);
  assert_memory_equal(out + n - 8, " (7).txt", 8);
  assert_int_equal(sk_xfer_rename_name("a.txt", 5, 1, out, 9), SK_ETOOBIG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_every_type),
      cmocka_unit_test(test_known_bytes),
      cmocka_unit_test(test_every_prefix_needs_more),
      cmocka_unit_test(test_every_split_point),
      cmocka_unit_test(test_byte_at_a_time),
      cmocka_unit_test(test_limits_exactly),
      cmocka_unit_test(test_hello_versions),
      cmocka_unit_test(test_bad_input_classes),
      cmocka_unit_test(test_encode_refuses_bad_fields),
      cmocka_unit_test(test_type_names),
      cmocka_unit_test(test_hostile_names),
      cmocka_unit_test(test_ordinary_names),
      cmocka_unit_test(test_escape),
      cmocka_unit_test(test_part_names),
      cmocka_unit_test(test_rename_names),
  };
  return cmocka_run_group_tests_name("xfer", tests, NULL, NULL);
}
