/*
 * common.c - owns the helpers every benchmark shares (see common.h): the
 * clock, the timed loop, the median, number formatting, dying. It depends
 * on nothing but libc, so a benchmark that loads libsecmem only inside the
 * provider module can use it too.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>


double now_seconds(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
    perror("clock_gettime(CLOCK_MONOTONIC)");
    exit(1);
  }
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *g_prog = "bench";

void bench_set_name(const char *prog) { g_prog = prog; }

void die(const char *what, const char *why) {
  fprintf(stderr, "%s: %s failed: %s\n", g_prog, what, why);
  exit(1);
}


void die_errno(const char *what) { die(what, strerror(errno)); }

#define BATCH 16 /* calls between two clock reads */

double timed_loop(void (*cycle)(void *ctx), void *ctx, double seconds) {
  unsigned long calls = 0;
  double start = now_seconds();
  double elapsed;
  do {
    for (int i = 0; i < BATCH; i++) {
      cycle(ctx);
    }
    calls += BATCH;
    elapsed = now_seconds() - start;
  } while (elapsed < seconds);
  return (double)calls / elapsed;
}

double median3(const double v[ROUNDS]) {
  double a = v[0], b = v[1], c = v[2];
  if ((a <= b && b <= c) || (c <= b && b <= a)) {
    return b;
  }
  if ((b <= a && a <= c) || (c <= a && a <= b)) {
    return a;
  }
  return c;
}

void format_count(char *out, size_t out_len, double v) {
  char digits[32];
  snprintf(digits, sizeof(digits), "%.0f", v);
  size_t n = strlen(digits), o = 0;
  for (size_t i = 0; i < n && o + 2 < out_len; i++) {
    if (i > 0 && (n - i) % 3 == 0) {
      out[o++] = ',';
    }
    out[o++] = digits[i];
  }
  out[o] = '\0';
}

void format_size(char *out, size_t out_len, size_t size) {
  if (size >= 1024 && size % 1024 == 0) {
    snprintf(out, out_len, "%zu KiB", size / 1024);
  } else {
    snprintf(out, out_len, "%zu B", size);
  }
}

void run_stamp(struct run_stamp *s) {
  snprintf(s->date, sizeof(s->date), "unknown date");
  snprintf(s->kernel, sizeof(s->kernel), "unknown kernel");
  time_t t = time(NULL);
  struct tm tm;
  if (gmtime_r(&t, &tm) != NULL) {
    strftime(s->date, sizeof(s->date), "%Y-%m-%d %H:%M UTC", &tm);
  }
  struct utsname u;
  if (uname(&u) == 0) {
    snprintf(s->kernel, sizeof(s->kernel), "%s %s %s", u.sysname, u.release, u.machine);
  }
}
