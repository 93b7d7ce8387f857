/* bench/wc_speed.c - how fast libsockit's word counter (sk_wc_feed) counts,
 * with no network: the file is mapped and fed in 64 KiB pieces, as the
 * server gets it from its socket, and the best of a few rounds is kept.
 *
 *   wc_speed [--locale C|UTF-8] [--rounds N] [--piece BYTES] FILE
 *
 * Prints one JSON line: the counts (so a caller can check them against GNU
 * wc) and the speed in GB/s (10^9 bytes) and MiB/s. Exits 0, or 1 with a
 * message on stderr. Unlike the other bench programs it links libsockit:
 * the counter is what it measures.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sockit/wc.h"

#define ROUNDS_MAX 100
#define PIECE_DEFAULT 65536

/* Seconds of the monotonic clock. */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints the usage line; returns the exit code 1. */
static int usage(void) {
  fprintf(stderr, "usage: wc_speed [--locale C|UTF-8] [--rounds N] [--piece BYTES] FILE\n");
  return 1;
}

/* Maps the file, counts it rounds + 1 times (the first warms up), prints
 * the best. */
int main(int argc, char **argv) {
  sk_wc_locale_t loc = SK_WC_LOCALE_UTF8;
  long rounds = 3, piece = PIECE_DEFAULT;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--locale") == 0 && i + 1 < argc) {
      const char *l = argv[++i];
      if (strcmp(l, "C") == 0)
        loc = SK_WC_LOCALE_C;
      else if (strcmp(l, "UTF-8") == 0 || strcmp(l, "C.UTF-8") == 0)
        loc = SK_WC_LOCALE_UTF8;
      else
        return usage();
    } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
      rounds = strtol(argv[++i], NULL, 10);
      if (rounds < 1 || rounds > ROUNDS_MAX)
        return usage();
    } else if (strcmp(argv[i], "--piece") == 0 && i + 1 < argc) {
      piece = strtol(argv[++i], NULL, 10);
      if (piece < 1)
        return usage();
    } else if (!path && argv[i][0] != '-') {
      path = argv[i];
    } else {
      return usage();
    }
  }
  if (!path)
    return usage();
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    fprintf(stderr, "wc_speed: %s: %s\n", path, strerror(errno));
    return 1;
  }
  size_t size = (size_t)st.st_size;
  const char *data = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0) : "";
  close(fd);
  if (data == MAP_FAILED) {
    fprintf(stderr, "wc_speed: mmap %s: %s\n", path, strerror(errno));
    return 1;
  }
  sk_wc_counts_t c = {0, 0, 0, 0};
  double best = 0;
  for (long r = 0; r <= rounds; r++) { /* round 0 warms the caches up */
    sk_wc_t w;
    sk_wc_init(&w, loc, SK_WC_ALL);
    double t0 = now_s();
    for (size_t off = 0; off < size; off += (size_t)piece)
      sk_wc_feed(&w, data + off, size - off < (size_t)piece ? size - off : (size_t)piece);
    sk_wc_result(&w, &c);
    double t = now_s() - t0;
    if (r > 0 && (best == 0 || t < best))
      best = t;
  }
  if (best <= 0)
    best = 1e-9;
  printf("{\"locale\": \"%s\", \"bytes\": %llu, \"lines\": %llu, \"words\": %llu, "
         "\"chars\": %llu, \"seconds\": %.6f, \"gb_per_sec\": %.3f, \"mib_per_sec\": %.1f}\n",
         sk_wc_locale_name(loc), (unsigned long long)c.bytes, (unsigned long long)c.lines,
         (unsigned long long)c.words, (unsigned long long)c.chars, best,
         (double)size / best / 1e9, (double)size / best / (1024.0 * 1024.0));
  if (size)
    munmap((void *)data, size);
  return 0;
}
