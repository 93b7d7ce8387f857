/* tests/fuzz/replay_main.c - runs a libFuzzer target over a kept corpus.
 *
 * Without -fsanitize=fuzzer (gcc, or a normal build), each fuzz_*.c is linked
 * with this file into <name>_replay, which ctest runs over
 * tests/fuzz/corpus/<name>/: every input that once mattered is fed to
 * LLVMFuzzerTestOneInput again, under the same sanitizers as the unit tests.
 *
 *   fuzz_endpoint_replay DIR|FILE...
 *
 * Each argument is a directory (every regular file in it, in name order,
 * hidden files skipped) or a single file (to reproduce a crash). Prints
 * "replayed N inputs" and exits 0; exits 1 when an argument cannot be read.
 * A failed check inside the target aborts, which is the failure.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole file into an allocation of exactly its size (so ASan
 * catches a target reading past the input) and runs the target on it.
 * Returns 0, or -1 with a message on stderr. */
static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *data = malloc(cap);
  if (!data) {
    fclose(f);
    fprintf(stderr, "replay: %s: out of memory\n", path);
    return -1;
  }
  for (;;) {
    if (len == cap) {
      uint8_t *bigger = realloc(data, cap * 2);
      if (!bigger) {
        free(data);
        fclose(f);
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return -1;
      }
      data = bigger;
      cap *= 2;
    }
    size_t n = fread(data + len, 1, cap - len, f);
    len += n;
    if (n == 0)
      break;
  }
  int read_failed = ferror(f);
  fclose(f);
  if (read_failed) {
    free(data);
    fprintf(stderr, "replay: %s: read error\n", path);
    return -1;
  }
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) {
    free(data);
    fprintf(stderr, "replay: %s: out of memory\n", path);
    return -1;
  }
  if (len)
    memcpy(exact, data, len);
  free(data);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int skip_hidden(const struct dirent *d) { return d->d_name[0] != '.'; }

/* Replays every regular file of dir; adds to *count. Returns 0 or -1. */
static int replay_dir(const char *dir, unsigned long *count) {
  struct dirent **names;
  int n = scandir(dir, &names, skip_hidden, alphasort);
  if (n < 0) {
    fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < n; i++) {
    size_t plen = strlen(dir) + 1 + strlen(names[i]->d_name) + 1;
    char *path = malloc(plen);
    struct stat st;
    if (!path) {
      rc = -1;
    } else {
      snprintf(path, plen, "%s/%s", dir, names[i]->d_name);
      if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        if (replay_file(path) == 0)
          (*count)++;
        else
          rc = -1;
      }
      free(path);
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  unsigned long count = 0;
  int rc = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
      rc = 1;
    } else if (S_ISDIR(st.st_mode)) {
      if (replay_dir(argv[i], &count) != 0)
        rc = 1;
    } else if (replay_file(argv[i]) == 0) {
      count++;
    } else {
      rc = 1;
    }
  }
  printf("replayed %lu inputs\n", count);
  return rc;
}
