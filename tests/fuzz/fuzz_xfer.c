/* tests/fuzz/fuzz_xfer.c - the SKXF/1 frame parser fed arbitrary bytes in
 * random chunks, and the name rules on arbitrary names.
 *
 * Properties checked (abort() on a violation):
 *  - parse returns a frame length, SK_EAGAIN or SK_EBADINPUT; a length
 *    never passes what it was given or SK_XFER_FRAME_MAX;
 *  - feeding the input in chunks of 1..32 bytes (sizes drawn from the
 *    input, so each input replays the same way) gives exactly the frames,
 *    and the verdict, of parsing it whole: "need more" never hides "bad";
 *  - every frame re-encodes to the very same bytes (one encoding per
 *    message), except a HELLO of another version, which may be longer;
 *  - name check: an accepted name has no control byte, no "." or ".."
 *    component, and does not start with '/'; its escaped form is pure
 *    printable ASCII or UTF-8 and terminated; the partial-file and
 *    --rename names made from its last component are accepted names too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/xfer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "fuzz_xfer: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                   \
    }                                                                            \
  } while (0)

#define MAX_FRAMES 4096

typedef struct {
  size_t off, len;
} span_t;

/* Parses data whole, frame after frame. Returns the number of frames;
 * *verdict is the last result (SK_EAGAIN at a clean end or cut, or
 * SK_EBADINPUT). */
static size_t parse_whole(const uint8_t *data, size_t size, span_t *frames, long *verdict) {
  size_t off = 0, n = 0;
  for (;;) {
    sk_xfer_msg_t m;
    char why[160];
    long r = sk_xfer_parse(data + off, size - off, &m, why, sizeof why);
    CHECK(r > 0 || r == SK_EAGAIN || r == SK_EBADINPUT);
    if (r <= 0) {
      if (r == SK_EBADINPUT)
        CHECK(why[0] != '\0');
      *verdict = r;
      return n;
    }
    CHECK((size_t)r <= size - off && (size_t)r <= SK_XFER_FRAME_MAX && r >= SK_XFER_HDR);
    CHECK(m.type == data[off]);
    /* one encoding per message */
    uint8_t again[SK_XFER_FRAME_MAX];
    long e = sk_xfer_encode(&m, again, sizeof again);
    if (m.type == SK_XFER_HELLO && m.u.hello.version != SK_XFER_VERSION) {
      CHECK(e == SK_XFER_HDR + 8);
    } else {
      CHECK(e == r);
      CHECK(memcmp(again, data + off, (size_t)r) == 0);
    }
    if (n < MAX_FRAMES)
      frames[n] = (span_t){off, (size_t)r};
    n++;
    off += (size_t)r;
  }
}

/* The same bytes arriving in chunks, parsed as a receiver does: append,
 * parse until "need more", keep the rest. */
static void parse_chunked(const uint8_t *data, size_t size, const span_t *frames, size_t nframes,
                          long verdict) {
  static uint8_t acc[SK_XFER_FRAME_MAX * 2 + 64];
  size_t have = 0, pos = 0, k = 0, consumed = 0;
  uint32_t seed = (uint32_t)size * 2654435761u;
  for (size_t i = 0; i < size && i < 16; i++)
    seed = seed * 31 + data[i];
  while (pos < size) {
    seed = seed * 1103515245u + 12345u;
    size_t chunk = 1 + (seed >> 16) % 32;
    if (chunk > size - pos)
      chunk = size - pos;
    CHECK(have + chunk <= sizeof acc);
    memcpy(acc + have, data + pos, chunk);
    have += chunk;
    pos += chunk;
    for (;;) {
      sk_xfer_msg_t m;
      long r = sk_xfer_parse(acc, have, &m, NULL, 0);
      if (r == SK_EBADINPUT) {
        /* the whole-buffer parse found the same bad frame */
        CHECK(verdict == SK_EBADINPUT && k == nframes);
        return;
      }
      if (r == SK_EAGAIN)
        break;
      CHECK(r > 0 && (size_t)r <= have);
      CHECK(k < nframes);
      if (k < MAX_FRAMES)
        CHECK(frames[k].off == consumed && frames[k].len == (size_t)r);
      k++;
      consumed += (size_t)r;
      memmove(acc, acc + r, have - (size_t)r);
      have -= (size_t)r;
    }
    /* never more than one frame held back */
    CHECK(have <= SK_XFER_FRAME_MAX);
  }
  CHECK(k == nframes);
  CHECK(verdict == SK_EAGAIN);
}

static void check_names(const uint8_t *data, size_t size) {
  const char *name = (const char *)data;
  size_t len = size > SK_XFER_PATH_MAX + 8 ? SK_XFER_PATH_MAX + 8 : size;
  char why[200], shown[SK_XFER_PATH_MAX * 4 + 16];
  memset(why, 0, sizeof why);
  int r = sk_xfer_name_check(name, len, why, sizeof why);
  CHECK(r == 0 || (r == SK_EBADINPUT && why[0] != '\0'));
  size_t n = sk_xfer_name_escape(name, len, shown, sizeof shown);
  CHECK(n < sizeof shown && shown[n] == '\0' && strlen(shown) == n);
  for (size_t i = 0; i < n; i++)
    CHECK((unsigned char)shown[i] >= 0x20 && shown[i] != 0x7f);
  if (r != 0)
    return;
  CHECK(len > 0 && name[0] != '/');
  for (size_t i = 0; i < len; i++)
    CHECK((unsigned char)name[i] >= 0x20 && name[i] != 0x7f && name[i] != '\\');
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && name[i] != '/')
      continue;
    size_t c = i - start;
    CHECK(c > 0 && c <= SK_XFER_COMPONENT_MAX);
    CHECK(!(c == 1 && name[start] == '.'));
    CHECK(!(c == 2 && name[start] == '.' && name[start + 1] == '.'));
    start = i + 1;
  }
  /* the receiver's own names for the last component */
  const char *last = name + len;
  while (last > name && last[-1] != '/')
    last--;
  size_t blen = (size_t)(name + len - last);
  char made[SK_XFER_COMPONENT_MAX + 1];
  long p = sk_xfer_part_name(last, blen, made, sizeof made);
  CHECK(p > 0 && p <= SK_XFER_COMPONENT_MAX && sk_xfer_is_part_name(made, (size_t)p));
  for (unsigned k = 1; k < 1000; k *= 7) {
    long q = sk_xfer_rename_name(last, blen, k, made, sizeof made);
    CHECK(q > 0 && q <= SK_XFER_COMPONENT_MAX);
    CHECK(sk_xfer_name_check(made, (size_t)q, NULL, 0) == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static span_t frames[MAX_FRAMES];
  long verdict;
  size_t n = parse_whole(data, size, frames, &verdict);
  parse_chunked(data, size, frames, n, verdict);
  check_names(data, size);
  return 0;
}
