/*
 * test_death.c - death suite: every misuse that must kill the process does,
 * in a forked child, with the exact signal and, for integrity failures, the
 * exact "secmem:" message on stderr.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "secmem.h"

static volatile unsigned char sink;

static void overflow_one_byte(void) {
  secmem_buf *b = secmem_buf_new(32);
  unsigned char *d = secmem_buf_data(b);
  d[32] = 1; /* one byte past the end: the trailing guard page */
}

static void overflow_read(void) {
  secmem_buf *b = secmem_buf_new(4096);
  const unsigned char *d = secmem_buf_data(b);
  sink = d[4096];
}

static void underflow_past_canary(void) {
  secmem_buf *b = secmem_buf_new(100);
  unsigned char *d = secmem_buf_data(b);
  /* 100 bytes sit at the end of one page: the leading guard page is
   * 4096 - 100 bytes before the data. */
  d[-(long)(sysconf(_SC_PAGESIZE) - 100) - 1] = 1;
}

static void canary_then_destroy(void) {
  secmem_buf *b = secmem_buf_new(32);
  unsigned char *d = secmem_buf_data(b);
  d[-1] ^= 0xff;
  secmem_buf_destroy(b);
}

static void canary_then_check(void) {
  secmem_buf *b = secmem_buf_new(32);
  unsigned char *d = secmem_buf_data(b);
  d[-SECMEM_CANARY_LEN] ^= 0x01;
  if (secmem_buf_check(b) == 0) {
    _exit(3);
  }
}

static void canary_then_check_noaccess(void) {
  secmem_buf *b = secmem_buf_new(32);
  unsigned char *d = secmem_buf_data(b);
  d[-2] ^= 0x80;
  if (secmem_buf_noaccess(b) != 0) {
    _exit(4);
  }
  if (secmem_buf_check(b) == 0) {
    _exit(3);
  }
}

static void write_frozen(void) {
  secmem_buf *b = secmem_buf_random(32);
  if (secmem_buf_freeze(b) != 0) {
    _exit(4);
  }
  ((unsigned char *)secmem_buf_data(b))[0] = 1;
}

static void read_noaccess(void) {
  secmem_buf *b = secmem_buf_random(32);
  if (secmem_buf_noaccess(b) != 0) {
    _exit(4);
  }
  sink = ((unsigned char *)secmem_buf_data(b))[0];
}

static void write_noaccess(void) {
  secmem_buf *b = secmem_buf_random(32);
  if (secmem_buf_noaccess(b) != 0) {
    _exit(4);
  }
  ((unsigned char *)secmem_buf_data(b))[5] = 1;
}

static void use_after_destroy_data(void) {
  secmem_buf *b = secmem_buf_random(32);
  unsigned char *d = secmem_buf_data(b);
  secmem_buf_destroy(b);
  sink = d[0];
}

static void use_after_destroy_big(void) {
  /* Too big for the reuse cache: unmapped outright. */
  secmem_buf *b = secmem_buf_random(1 << 20);
  unsigned char *d = secmem_buf_data(b);
  secmem_buf_destroy(b);
  d[10] = 1;
}

static void use_after_destroy_handle(void) {
  secmem_buf *b = secmem_buf_random(32);
  secmem_buf_destroy(b);
  if (secmem_buf_freeze(b) == 0) {
    _exit(3);
  }
}

static void double_destroy(void) {
  secmem_buf *b = secmem_buf_random(32);
  secmem_buf_destroy(b);
  secmem_buf_destroy(b);
}

static void foreign_pointer(void) {
  static char not_a_buffer[256];
  secmem_buf_destroy((secmem_buf *)(void *)not_a_buffer);
}

static void use_after_purge(void) {
  secmem_buf *b = secmem_buf_random(32);
  unsigned char *d = secmem_buf_data(b);
  secmem_purge();
  sink = d[0];
}

static void panic(void) { secmem_safe_panic("the reactor is melting"); }

static void expect_signal(void (*fn)(void), int sig) {
  struct death_result r;
  death_run(fn, &r);
  CU_ASSERT_TRUE(died_by(&r, sig));
}

static void expect_abort(void (*fn)(void), const char *message) {
  struct death_result r;
  death_run(fn, &r);
  CU_ASSERT_TRUE(died_by(&r, SIGABRT));
  CU_ASSERT_TRUE(stderr_has(&r, message));
  CU_ASSERT_TRUE(strncmp(r.stderr, "secmem: ", 8) == 0);
  /* Exactly one line. */
  CU_ASSERT_PTR_NOT_NULL(strchr(r.stderr, '\n'));
  if (strchr(r.stderr, '\n') != NULL) {
    CU_ASSERT_EQUAL(strchr(r.stderr, '\n')[1], '\0');
  }
}

static void test_overflow(void) { expect_signal(overflow_one_byte, SIGSEGV); }
static void test_overflow_read(void) { expect_signal(overflow_read, SIGSEGV); }
static void test_underflow_guard(void) { expect_signal(underflow_past_canary, SIGSEGV); }
static void test_canary_destroy(void) {
  expect_abort(canary_then_destroy,
               "secmem: secmem_buf_destroy: canary of a 32-byte buffer overwritten");
}
static void test_canary_check(void) {
  expect_abort(canary_then_check, "secmem: secmem_buf_check: canary of a 32-byte buffer overwritten");
}
static void test_canary_check_noaccess(void) {
  expect_abort(canary_then_check_noaccess, "secmem_buf_check: canary of a 32-byte buffer");
}
static void test_write_frozen(void) { expect_signal(write_frozen, SIGSEGV); }
static void test_read_noaccess(void) { expect_signal(read_noaccess, SIGSEGV); }
static void test_write_noaccess(void) { expect_signal(write_noaccess, SIGSEGV); }
static void test_uad_data(void) { expect_signal(use_after_destroy_data, SIGSEGV); }
static void test_uad_big(void) { expect_signal(use_after_destroy_big, SIGSEGV); }
static void test_uad_handle(void) {
  expect_abort(use_after_destroy_handle,
               "secmem: secmem_buf_freeze: buffer was already destroyed (use after destroy)");
}
static void test_double_destroy(void) {
  expect_abort(double_destroy,
               "secmem: secmem_buf_destroy: buffer was already destroyed (use after destroy)");
}
static void test_foreign(void) {
  expect_abort(foreign_pointer, "secmem: secmem_buf_destroy: pointer is not a secmem buffer");
}
static void test_use_after_purge(void) { expect_signal(use_after_purge, SIGSEGV); }
static void test_panic(void) {
  struct death_result r;
  death_run(panic, &r);
  CU_ASSERT_TRUE(died_by(&r, SIGABRT));
  CU_ASSERT_TRUE(stderr_has(&r, "secmem: panic: the reactor is melting\n"));
}

int main(void) {
  static const struct harness_test tests[] = {
      {"one byte past the end: SIGSEGV", test_overflow},
      {"read past the end: SIGSEGV", test_overflow_read},
      {"underflow through the canary into the guard: SIGSEGV", test_underflow_guard},
      {"canary overwrite caught at destroy: SIGABRT", test_canary_destroy},
      {"canary overwrite caught by check: SIGABRT", test_canary_check},
      {"canary overwrite caught by check while no-access", test_canary_check_noaccess},
      {"write to a frozen buffer: SIGSEGV", test_write_frozen},
      {"read of a no-access buffer: SIGSEGV", test_read_noaccess},
      {"write to a no-access buffer: SIGSEGV", test_write_noaccess},
      {"data touched after destroy: SIGSEGV", test_uad_data},
      {"large buffer touched after destroy: SIGSEGV", test_uad_big},
      {"handle used after destroy: SIGABRT", test_uad_handle},
      {"double destroy: SIGABRT", test_double_destroy},
      {"foreign pointer: SIGABRT", test_foreign},
      {"data touched after purge: SIGSEGV", test_use_after_purge},
      {"safe panic: SIGABRT with message", test_panic},
  };
  return harness_main("death", tests, sizeof(tests) / sizeof(tests[0]));
}
