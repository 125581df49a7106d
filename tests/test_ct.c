/*
 * test_ct.c - unit suite for the constant-time helpers: equal, wipe, copy,
 * move, scramble.
 */
#include <string.h>

#include "harness.h"
#include "secmem.h"

static void test_equal(void) {
  unsigned char a[64], b[64];
  gen_fill(a, 64, 1);
  memcpy(b, a, 64);
  CU_ASSERT_EQUAL(secmem_equal(a, b, 64), 1);
  CU_ASSERT_EQUAL(secmem_equal(a, b, 0), 1);
  CU_ASSERT_EQUAL(secmem_equal(NULL, NULL, 0), 1);
  for (size_t i = 0; i < 64; i++) {
    b[i] ^= 0x40;
    CU_ASSERT_EQUAL(secmem_equal(a, b, 64), 0);
    b[i] ^= 0x40;
  }
  CU_ASSERT_EQUAL(secmem_equal(a, b, 64), 1);
}

static void test_wipe(void) {
  unsigned char a[100];
  memset(a, 0xee, sizeof(a));
  secmem_wipe(a + 10, 80);
  CU_ASSERT_EQUAL(a[9], 0xee);
  CU_ASSERT_EQUAL(a[10], 0);
  CU_ASSERT_EQUAL(a[89], 0);
  CU_ASSERT_EQUAL(a[90], 0xee);
  secmem_wipe(NULL, 10);
  secmem_wipe(a, 0);
  CU_ASSERT_EQUAL(a[0], 0xee);
}

static void test_copy_move(void) {
  unsigned char src[33], dst[33];
  gen_fill(src, 33, 2);
  secmem_copy(dst, src, 33);
  CU_ASSERT_EQUAL(memcmp(dst, src, 33), 0);
  memset(dst, 0, 33);
  secmem_move(dst, src, 33);
  CU_ASSERT_EQUAL(dst[32], gen_byte(2, 32));
  unsigned char zero[33] = {0};
  CU_ASSERT_EQUAL(memcmp(src, zero, 33), 0);
  secmem_copy(dst, NULL, 0);
}

static void test_scramble(void) {
  unsigned char a[64] = {0}, zero[64] = {0}, b[64] = {0};
  secmem_scramble(a, 64);
  secmem_scramble(b, 64);
  CU_ASSERT_NOT_EQUAL(memcmp(a, zero, 64), 0);
  CU_ASSERT_NOT_EQUAL(memcmp(a, b, 64), 0);
  /* Every byte value appears in a large enough sample. */
  unsigned char big[8192];
  secmem_scramble(big, sizeof(big));
  int seen[256] = {0};
  for (size_t i = 0; i < sizeof(big); i++) {
    seen[big[i]] = 1;
  }
  int distinct = 0;
  for (int i = 0; i < 256; i++) {
    distinct += seen[i];
  }
  CU_ASSERT_EQUAL(distinct, 256);
}

int main(void) {
  static const struct harness_test tests[] = {
      {"equal", test_equal},
      {"wipe", test_wipe},
      {"copy and move", test_copy_move},
      {"scramble", test_scramble},
  };
  return harness_main("ct", tests, sizeof(tests) / sizeof(tests[0]));
}
