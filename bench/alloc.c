/*
 * alloc.c - owns bench_alloc, the allocation benchmark: how many guarded
 * allocation cycles (new + destroy) and protection cycles (freeze + melt) per
 * second libsecmem does, next to libsodium's sodium_malloc + sodium_free and
 * sodium_mprotect_readonly + sodium_mprotect_readwrite at the same sizes.
 *
 * Method: every case runs in a time-bounded loop (0.5 s, or 0.05 s with
 * --quick) timed with CLOCK_MONOTONIC; three rounds interleave the secmem and
 * libsodium runs of each case (alternating which goes first) and the median
 * round is reported. Every cycle writes one byte of the memory it handles, so
 * neither side can skip the work. Output is one header line and a Markdown
 * table, ready for the README.
 *
 * --syscalls-secmem N and --syscalls-sodium N instead run one untimed warm-up
 * cycle and then N 32-byte new + destroy cycles of one library and print
 * nothing: bench/syscalls.sh runs them under strace -c (N = 0 is the
 * baseline) to count system calls per cycle.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include <secmem.h>
#include <sodium.h>

#include "common.h"


/* ---- the cycles ------------------------------------------------------------ */

/* What one measured run works on: the size and, for protection cycles, the
 * buffer kept across cycles. */
struct run {
  size_t size;
  unsigned long counter;
  secmem_buf *buf;
  unsigned char *ptr;
};

static void secmem_alloc_cycle(struct run *r) {
  secmem_buf *b = secmem_buf_new(r->size);
  if (b == NULL) {
    die_secmem("secmem_buf_new");
  }
  ((volatile unsigned char *)secmem_buf_data(b))[0] = (unsigned char)++r->counter;
  secmem_buf_destroy(b);
}

static void sodium_alloc_cycle(struct run *r) {
  unsigned char *p = sodium_malloc(r->size);
  if (p == NULL) {
    die_errno("sodium_malloc");
  }
  ((volatile unsigned char *)p)[0] = (unsigned char)++r->counter;
  sodium_free(p);
}

static void secmem_protect_setup(struct run *r) {
  r->buf = secmem_buf_new(r->size);
  if (r->buf == NULL) {
    die_secmem("secmem_buf_new");
  }
  r->ptr = secmem_buf_data(r->buf);
}

static void secmem_protect_teardown(struct run *r) {
  secmem_buf_destroy(r->buf);
  r->buf = NULL;
  r->ptr = NULL;
}

static void secmem_protect_cycle(struct run *r) {
  if (secmem_buf_freeze(r->buf) != 0) {
    die_secmem("secmem_buf_freeze");
  }
  r->counter += ((volatile unsigned char *)r->ptr)[0];
  if (secmem_buf_melt(r->buf) != 0) {
    die_secmem("secmem_buf_melt");
  }
  ((volatile unsigned char *)r->ptr)[0] = (unsigned char)++r->counter;
}

static void sodium_protect_setup(struct run *r) {
  r->ptr = sodium_malloc(r->size);
  if (r->ptr == NULL) {
    die_errno("sodium_malloc");
  }
}

static void sodium_protect_teardown(struct run *r) {
  sodium_free(r->ptr);
  r->ptr = NULL;
}

static void sodium_protect_cycle(struct run *r) {
  if (sodium_mprotect_readonly(r->ptr) != 0) {
    die_errno("sodium_mprotect_readonly");
  }
  r->counter += ((volatile unsigned char *)r->ptr)[0];
  if (sodium_mprotect_readwrite(r->ptr) != 0) {
    die_errno("sodium_mprotect_readwrite");
  }
  ((volatile unsigned char *)r->ptr)[0] = (unsigned char)++r->counter;
}

/* One library's side of a case. setup and teardown may be NULL. */
struct side {
  void (*setup)(struct run *r);
  void (*cycle)(struct run *r);
  void (*teardown)(struct run *r);
};

struct bench_case {
  const char *operation;
  size_t size;
  struct side secmem;
  struct side sodium;
  double secmem_ops[ROUNDS];
  double sodium_ops[ROUNDS];
};

/* A side's cycle bound to its run, for timed_loop. */
struct bound {
  const struct side *side;
  struct run *run;
};

static void bound_cycle(void *ctx) {
  struct bound *b = ctx;
  b->side->cycle(b->run);
}

/* measure runs side's cycle for about seconds and returns cycles per second. */
static double measure(const struct side *s, size_t size, double seconds) {
  struct run r = {.size = size};
  if (s->setup != NULL) {
    s->setup(&r);
  }
  struct bound b = {s, &r};
  double rate = timed_loop(bound_cycle, &b, seconds);
  if (s->teardown != NULL) {
    s->teardown(&r);
  }
  return rate;
}


/* ---- output ------------------------------------------------------------------ */




static void print_table(const struct bench_case *cases, size_t n) {
  printf("| operation | size | secmem ops/s | libsodium ops/s | ratio |\n");
  printf("|---|---:|---:|---:|---:|\n");
  for (size_t i = 0; i < n; i++) {
    double sm = median3(cases[i].secmem_ops), so = median3(cases[i].sodium_ops);
    char size[32], a[32], b[32];
    format_size(size, sizeof(size), cases[i].size);
    format_count(a, sizeof(a), sm);
    format_count(b, sizeof(b), so);
    printf("| %s | %s | %s | %s | %.2f |\n", cases[i].operation, size, a, b, sm / so);
  }
}

/* ---- modes ------------------------------------------------------------------- */

static int run_syscall_loop(const struct side *s, const char *count) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(count, &end, 10);
  if (errno != 0 || end == count || *end != '\0' || count[0] == '-') {
    fprintf(stderr, "bench_alloc: '%s' is not a cycle count\n", count);
    return 2;
  }
  struct run r = {.size = 32};
  s->cycle(&r); /* first-use costs (handle slab, region cache) go in the baseline */
  for (unsigned long i = 0; i < n; i++) {
    s->cycle(&r);
  }
  return 0;
}

static int usage(const char *argv0, int status) {
  fprintf(status == 0 ? stdout : stderr,
          "usage: %s [--quick]\n"
          "       %s --syscalls-secmem N | --syscalls-sodium N\n"
          "  (no option)         benchmark, 0.5 s per case and round, Markdown table\n"
          "  --quick             the same with 0.05 s per case and round (smoke test)\n"
          "  --syscalls-secmem N one warm-up and N secmem_buf_new+destroy cycles of 32 B\n"
          "  --syscalls-sodium N one warm-up and N sodium_malloc+free cycles of 32 B\n",
          argv0, argv0);
  return status;
}

int main(int argc, char **argv) {
  bench_set_name("bench_alloc");
  /* SECMEM_BENCH_BACKING=anon measures anonymous pages instead of the default. */
  const char *backing = getenv("SECMEM_BENCH_BACKING");
  if (backing != NULL && strcmp(backing, "anon") == 0 &&
      secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 1;
  }
  static const struct side secmem_alloc = {NULL, secmem_alloc_cycle, NULL};
  static const struct side sodium_alloc = {NULL, sodium_alloc_cycle, NULL};
  static const struct side secmem_protect = {secmem_protect_setup, secmem_protect_cycle,
                                             secmem_protect_teardown};
  static const struct side sodium_protect = {sodium_protect_setup, sodium_protect_cycle,
                                             sodium_protect_teardown};
  double seconds = 0.5;

  if (sodium_init() < 0) {
    die("sodium_init", "libsodium could not be initialised");
  }
  if (secmem_init() != 0) {
    die_secmem("secmem_init");
  }

  if (argc == 3 && strcmp(argv[1], "--syscalls-secmem") == 0) {
    return run_syscall_loop(&secmem_alloc, argv[2]);
  }
  if (argc == 3 && strcmp(argv[1], "--syscalls-sodium") == 0) {
    return run_syscall_loop(&sodium_alloc, argv[2]);
  }
  if (argc == 2 && strcmp(argv[1], "--quick") == 0) {
    seconds = 0.05;
  } else if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    return usage(argv[0], 0);
  } else if (argc != 1) {
    return usage(argv[0], 2);
  }

  struct bench_case cases[] = {
      {"new + destroy (sodium_malloc + sodium_free)", 32, secmem_alloc, sodium_alloc, {0}, {0}},
      {"new + destroy (sodium_malloc + sodium_free)", 4096, secmem_alloc, sodium_alloc, {0}, {0}},
      {"freeze + melt (sodium_mprotect_readonly + readwrite)", 32, secmem_protect, sodium_protect,
       {0}, {0}},
      {"freeze + melt (sodium_mprotect_readonly + readwrite)", 4096, secmem_protect,
       sodium_protect, {0}, {0}},
  };
  size_t ncases = sizeof(cases) / sizeof(cases[0]);

  /* Warm up: first-use costs (handle slabs, region cache, page faults of the
   * libraries' own code) stay out of the measured rounds. */
  for (size_t i = 0; i < ncases; i++) {
    (void)measure(&cases[i].secmem, cases[i].size, seconds / 10);
    (void)measure(&cases[i].sodium, cases[i].size, seconds / 10);
  }
  for (int round = 0; round < ROUNDS; round++) {
    for (size_t i = 0; i < ncases; i++) {
      if (round % 2 == 0) {
        cases[i].secmem_ops[round] = measure(&cases[i].secmem, cases[i].size, seconds);
        cases[i].sodium_ops[round] = measure(&cases[i].sodium, cases[i].size, seconds);
      } else {
        cases[i].sodium_ops[round] = measure(&cases[i].sodium, cases[i].size, seconds);
        cases[i].secmem_ops[round] = measure(&cases[i].secmem, cases[i].size, seconds);
      }
    }
  }

  print_header("bench_alloc", NULL, seconds, "; ratio = secmem / libsodium ops/s");
  print_table(cases, ncases);

  secmem_stats st;
  if (secmem_get_stats(&st) != 0) {
    die_secmem("secmem_get_stats");
  }
  if (st.buffers_live != 0) {
    fprintf(stderr, "bench_alloc: %zu secmem buffers still live at the end\n", st.buffers_live);
    return 1;
  }
  return 0;
}
