/*
 * test_heap_death.c - death suite for the secure heap: every misuse of
 * secmem_malloc memory that must kill the process does, in a forked child,
 * with the exact signal and, for integrity failures, the exact one-line
 * "secmem:" message; and the secrets in the heap are wiped on the way out.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "secmem.h"

#define WIPED "; every secret wiped, aborting\n"

static volatile unsigned char sink;

static unsigned char *must_malloc(size_t len) {
  unsigned char *p = secmem_malloc(len);
  if (p == NULL) {
    _exit(4);
  }
  return p;
}

/* ---- the children ------------------------------------------------------------ */

static void overflow_then_free(void) {
  unsigned char *p = must_malloc(64);
  p[64] ^= 1; /* one byte past the slot: the next slot's canary */
  secmem_free(p);
}

static void overflow_neighbour_then_free(void) {
  unsigned char *p = must_malloc(32);
  unsigned char *q = must_malloc(32);
  q[32] ^= 0x80;
  secmem_free(p); /* an untouched neighbour frees fine */
  secmem_free(q);
}

static void underflow_then_free(void) {
  unsigned char *p = must_malloc(64);
  p[-1] ^= 1; /* the slot's own canary */
  secmem_free(p);
}

static void overflow_then_check(void) {
  unsigned char *p = must_malloc(256);
  p[256] ^= 0x40;
  if (secmem_heap_check() == 0) {
    _exit(3);
  }
}

static void underflow_then_check(void) {
  unsigned char *p = must_malloc(16);
  p[-SECMEM_CANARY_LEN] ^= 0x01; /* first byte of the canary */
  if (secmem_heap_check() == 0) {
    _exit(3);
  }
}

static void overflow_of_freed_slot_then_check(void) {
  /* A write through a stale pointer past a freed slot: the check covers the
   * canaries of free slots too. */
  unsigned char *p = must_malloc(128);
  unsigned char *keep = must_malloc(128);
  secmem_free(p);
  p[128] ^= 0x10;
  if (secmem_heap_check() == 0 || keep == NULL) {
    _exit(3);
  }
}

static void double_free(void) {
  unsigned char *p = must_malloc(64);
  unsigned char *keep = must_malloc(64); /* keeps the arena from being released */
  (void)keep;
  secmem_free(p);
  secmem_free(p);
}

static void free_stack_pointer(void) {
  unsigned char on_stack[64];
  unsigned char *keep = must_malloc(64); /* the heap is not empty */
  (void)keep;
  secmem_free(on_stack);
}

static void free_malloc_pointer(void) {
  unsigned char *keep = must_malloc(64);
  (void)keep;
  void *m = malloc(64);
  if (m == NULL) {
    _exit(4);
  }
  secmem_free(m);
}

static void free_middle_of_slot(void) {
  unsigned char *p = must_malloc(64);
  secmem_free(p + 8);
}

static void free_canary_of_slot(void) {
  unsigned char *p = must_malloc(64);
  secmem_free(p - 8);
}

static void double_free_large(void) {
  unsigned char *p = must_malloc(4096);
  secmem_free(p);
  secmem_free(p);
}

static void underflow_large_then_free(void) {
  unsigned char *p = must_malloc(4096);
  p[-1] ^= 1; /* the guarded allocation's canary */
  secmem_free(p);
}

static void overflow_large_write(void) {
  unsigned char *p = must_malloc(4096);
  p[4096] = 1; /* the trailing guard page */
}

static void overflow_large_read(void) {
  unsigned char *p = must_malloc(8192);
  sink = p[8192];
}

static void overflow_large_odd_len(void) {
  /* 3000 bytes are rounded up to 3008 to keep the data 16-byte aligned: the
   * guard page starts right after the rounded end. */
  unsigned char *p = must_malloc(3000);
  p[3008] = 1;
}

static void use_after_free_large(void) {
  unsigned char *p = must_malloc(4096);
  secmem_free(p);
  sink = p[0];
}

/* ---- the assertions ----------------------------------------------------------- */

static void expect_signal(void (*fn)(void), int sig) {
  struct death_result r;
  death_run(fn, &r);
  CU_ASSERT_TRUE(died_by(&r, sig));
}

/* SIGABRT, and stderr is exactly one line: "secmem: " what WIPED. */
static void expect_abort(void (*fn)(void), const char *what) {
  struct death_result r;
  death_run(fn, &r);
  CU_ASSERT_TRUE(died_by(&r, SIGABRT));
  char line[1024];
  snprintf(line, sizeof(line), "secmem: %s%s", what, WIPED);
  if (strcmp(r.stderr, line) != 0) {
    fprintf(stderr, "\n  expected stderr \"%s\", got \"%s\"\n", line, r.stderr);
    CU_FAIL("stderr is not the expected message");
  }
}

static void test_overflow_free(void) {
  expect_abort(overflow_then_free, "secmem_free: canary of a 64-byte heap slot overwritten (heap "
                                   "overflow or underflow)");
}
static void test_overflow_free_neighbour(void) {
  expect_abort(overflow_neighbour_then_free, "secmem_free: canary of a 32-byte heap slot "
                                           "overwritten (heap overflow or underflow)");
}
static void test_underflow_free(void) {
  expect_abort(underflow_then_free, "secmem_free: canary of a 64-byte heap slot overwritten (heap "
                                    "overflow or underflow)");
}
static void test_overflow_check(void) {
  expect_abort(overflow_then_check, "secmem_heap_check: canary of a 256-byte heap slot "
                                    "overwritten (heap overflow or underflow)");
}
static void test_underflow_check(void) {
  expect_abort(underflow_then_check, "secmem_heap_check: canary of a 16-byte heap slot "
                                     "overwritten (heap overflow or underflow)");
}
static void test_free_slot_check(void) {
  expect_abort(overflow_of_freed_slot_then_check, "secmem_heap_check: canary of a 128-byte heap "
                                                  "slot overwritten (heap overflow or underflow)");
}
static void test_double_free(void) {
  expect_abort(double_free, "secmem_free: slot is not allocated (double free)");
}
static void test_free_stack(void) {
  expect_abort(free_stack_pointer, "secmem_free: pointer was not allocated by secmem_malloc, or was already freed");
}
static void test_free_malloc(void) {
  expect_abort(free_malloc_pointer, "secmem_free: pointer was not allocated by secmem_malloc, or was already freed");
}
static void test_free_middle(void) {
  expect_abort(free_middle_of_slot,
               "secmem_free: pointer is inside the secure heap but not the start of a slot");
}
static void test_free_canary(void) {
  expect_abort(free_canary_of_slot,
               "secmem_free: pointer is inside the secure heap but not the start of a slot");
}
static void test_double_free_large(void) {
  /* The heap no longer knows the pointer at all. */
  expect_abort(double_free_large, "secmem_free: pointer was not allocated by secmem_malloc, or was already freed");
}
static void test_underflow_large(void) {
  expect_abort(underflow_large_then_free, "secmem_free: canary of a 4096-byte buffer overwritten "
                                          "(write before the start of its data)");
}
static void test_overflow_large(void) { expect_signal(overflow_large_write, SIGSEGV); }
static void test_overflow_large_read(void) { expect_signal(overflow_large_read, SIGSEGV); }
static void test_use_after_free_large(void) { expect_signal(use_after_free_large, SIGSEGV); }

static void test_overflow_large_odd_len(void) { expect_signal(overflow_large_odd_len, SIGSEGV); }

/* ---- secrets are wiped on the way out ----------------------------------------- */

#define SECRET_SEED 0x4ea9u
#define SECRET_LEN 64

static void child_secret_then_plain_abort(void) {
  unsigned char *s = must_malloc(SECRET_LEN);
  unsigned char *big = must_malloc(5000);
  gen_fill(s, SECRET_LEN, SECRET_SEED);
  gen_fill(big + 1000, SECRET_LEN, SECRET_SEED);
  abort();
}

static void child_secret_then_double_free(void) {
  unsigned char *s = must_malloc(SECRET_LEN);
  unsigned char *big = must_malloc(5000);
  gen_fill(s, SECRET_LEN, SECRET_SEED);
  gen_fill(big + 1000, SECRET_LEN, SECRET_SEED);
  unsigned char *p = must_malloc(32);
  secmem_free(p);
  secmem_free(p);
}

static void tail_overflow_small(void) {
  unsigned char *p = secmem_malloc(60); /* a 64-byte slot: 4 bytes of tail */
  p[60] = 1;
  secmem_free(p);
}

static void tail_overflow_small_check(void) {
  unsigned char *p = secmem_malloc(1);
  p[1] = 1;
  if (secmem_heap_check() == 0) {
    _exit(3);
  }
}

static void tail_overflow_large(void) {
  unsigned char *p = secmem_malloc(3000); /* rounded to 3008 before the guard page */
  p[3000] = 1;
  secmem_free(p);
}

static void write_into_zero_length(void) {
  unsigned char *p = secmem_malloc(0);
  p[0] = 1;
  secmem_free(p);
}

static void test_tail_overflow_small(void) {
  expect_abort(tail_overflow_small, "secmem_free: canary of a 64-byte heap slot overwritten (heap "
                                    "overflow or underflow)");
}

static void test_tail_overflow_small_check(void) {
  expect_abort(tail_overflow_small_check, "secmem_heap_check: canary of a 16-byte heap slot "
                                          "overwritten (heap overflow or underflow)");
}

static void test_tail_overflow_large(void) {
  expect_abort(tail_overflow_large, "secmem_free: canary after a 3000-byte heap allocation "
                                    "overwritten (heap overflow)");
}

static void test_write_into_zero_length(void) {
  expect_abort(write_into_zero_length, "secmem_free: canary of a 16-byte heap slot overwritten "
                                       "(heap overflow or underflow)");
}

static void test_fatal_wipes_heap(void) {
  struct traced_result r;
  traced_run(child_secret_then_plain_abort, 0, SECRET_SEED, SECRET_LEN, &r);
  CU_ASSERT_TRUE(r.signalled && r.sig == SIGABRT);
  CU_ASSERT_TRUE(r.hits_at_exit >= 2); /* control: both copies are seen */
  traced_run(child_secret_then_double_free, 0, SECRET_SEED, SECRET_LEN, &r);
  CU_ASSERT_TRUE(r.signalled && r.sig == SIGABRT);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.stderr, "secmem: secmem_free: slot is not allocated"));
  CU_ASSERT_EQUAL(r.hits_at_exit, 0);
}

int main(void) {
  /* The memory scans here read live secrets as their controls, which
   * memfd_secret pages (the default backing, test_backing's subject) would
   * hide from /proc/self/mem. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"slot overflow by one byte, caught at free", test_overflow_free},
      {"slot overflow caught at the overflowing slot's free", test_overflow_free_neighbour},
      {"slot underflow by one byte, caught at free", test_underflow_free},
      {"slot overflow caught by secmem_heap_check", test_overflow_check},
      {"slot underflow caught by secmem_heap_check", test_underflow_check},
      {"canary next to a free slot caught by secmem_heap_check", test_free_slot_check},
      {"double free", test_double_free},
      {"free of a stack address", test_free_stack},
      {"free of a malloc'd pointer", test_free_malloc},
      {"free of a pointer into the middle of a slot", test_free_middle},
      {"free of a pointer into a slot's canary", test_free_canary},
      {"double free of a large allocation", test_double_free_large},
      {"large allocation underflow caught at free", test_underflow_large},
      {"large allocation overflow by one byte: SIGSEGV", test_overflow_large},
      {"large allocation read past the end: SIGSEGV", test_overflow_large_read},
      {"large allocation touched after free: SIGSEGV", test_use_after_free_large},
      {"large allocation of 3000 bytes: guard page after 3008", test_overflow_large_odd_len},
      {"one byte past a 60-byte request, caught at free", test_tail_overflow_small},
      {"one byte past a 1-byte request, caught by check", test_tail_overflow_small_check},
      {"one byte past a 3000-byte large request, caught at free", test_tail_overflow_large},
      {"a write into a 0-byte allocation, caught at free", test_write_into_zero_length},
      {"integrity failure wipes heap secrets", test_fatal_wipes_heap},
  };
  return harness_main("heap_death", tests, sizeof(tests) / sizeof(tests[0]));
}
