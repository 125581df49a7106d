/*
 * test_page.c - unit suite for the page layer: reservations, protection,
 * locking, dump exclusion, discard, limits, checked from /proc/self/smaps.
 */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static void test_page_size(void) {
  CU_ASSERT_EQUAL(secmem_i_page_size(), (size_t)sysconf(_SC_PAGESIZE));
  CU_ASSERT_EQUAL(secmem_i_page_size() & (secmem_i_page_size() - 1), 0);
}

static void test_reserve_protect_lock(void) {
  size_t ps = secmem_i_page_size();
  unsigned char *p = secmem_i_page_reserve(4 * ps);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(p, &s));
  CU_ASSERT_FALSE(s.readable || s.writable);
  CU_ASSERT_EQUAL(secmem_i_page_dontdump(p, 4 * ps), 0);
  CU_ASSERT_EQUAL(secmem_i_page_protect(p + ps, 2 * ps, SECMEM_I_PROT_RW), 0);
  CU_ASSERT_EQUAL(secmem_i_page_lock(p + ps, 2 * ps), 0);
  p[ps] = 1;
  p[3 * ps - 1] = 2;
  CU_ASSERT_TRUE(smaps_lookup(p + ps, &s));
  CU_ASSERT_TRUE(s.readable && s.writable && s.dontdump && s.lockflag);
  CU_ASSERT_EQUAL(s.locked_kb * 1024, 2 * ps);
  CU_ASSERT_TRUE(smaps_lookup(p, &s));
  CU_ASSERT_TRUE(s.dontdump && !s.readable);
  CU_ASSERT_TRUE(smaps_lookup(p + 3 * ps, &s));
  CU_ASSERT_TRUE(s.dontdump && !s.readable);

  CU_ASSERT_EQUAL(secmem_i_page_protect(p + ps, 2 * ps, SECMEM_I_PROT_READ), 0);
  CU_ASSERT_TRUE(smaps_lookup(p + ps, &s));
  CU_ASSERT_TRUE(s.readable && !s.writable && s.lockflag);
  CU_ASSERT_EQUAL(p[ps], 1);

  CU_ASSERT_EQUAL(secmem_i_page_unlock(p + ps, 2 * ps), 0);
  CU_ASSERT_TRUE(smaps_lookup(p + ps, &s));
  CU_ASSERT_FALSE(s.lockflag);

  /* Discard drops contents but keeps the range reserved and unusable. */
  CU_ASSERT_EQUAL(secmem_i_page_discard(p + ps, 2 * ps), 0);
  CU_ASSERT_TRUE(smaps_lookup(p + ps, &s));
  CU_ASSERT_FALSE(s.readable || s.writable);
  CU_ASSERT_EQUAL(secmem_i_page_protect(p + ps, ps, SECMEM_I_PROT_READ), 0);
  CU_ASSERT_EQUAL(p[ps], 0);
  CU_ASSERT_EQUAL(secmem_i_page_release(p, 4 * ps), 0);
  CU_ASSERT_FALSE(smaps_lookup(p + ps, &s));
}

static void test_plain_map(void) {
  unsigned char *p = secmem_i_page_map_plain(secmem_i_page_size());
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  p[0] = 1;
  CU_ASSERT_EQUAL(secmem_i_page_release(p, secmem_i_page_size()), 0);
}

static void test_limits(void) {
  struct rlimit rl;
  CU_ASSERT_EQUAL(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
  size_t lim = secmem_i_page_memlock_limit();
  if (rl.rlim_cur == RLIM_INFINITY) {
    CU_ASSERT_EQUAL(lim, SIZE_MAX);
  } else {
    CU_ASSERT_EQUAL(lim, (size_t)rl.rlim_cur);
  }
  size_t phys = secmem_i_page_phys_mem();
  CU_ASSERT_TRUE(phys > (size_t)64 << 20);
  CU_ASSERT_EQUAL(phys % secmem_i_page_size(), 0);
}

static void test_format_size(void) {
  char out[32];
  secmem_i_format_size(out, sizeof(out), 65536);
  CU_ASSERT_STRING_EQUAL(out, "64 KiB");
  secmem_i_format_size(out, sizeof(out), 69632);
  CU_ASSERT_STRING_EQUAL(out, "68 KiB");
  secmem_i_format_size(out, sizeof(out), 1000);
  CU_ASSERT_STRING_EQUAL(out, "1000 bytes");
  secmem_i_format_size(out, sizeof(out), (size_t)3 << 30);
  CU_ASSERT_STRING_EQUAL(out, "3 GiB");
  secmem_i_format_size(out, sizeof(out), 0);
  CU_ASSERT_STRING_EQUAL(out, "0 bytes");
}

static void test_fail_sets_errno_and_message(void) {
  errno = 0;
  CU_ASSERT_EQUAL(secmem_i_fail(ERANGE, "value %d out of range", 42), -1);
  CU_ASSERT_EQUAL(errno, ERANGE);
  CU_ASSERT_STRING_EQUAL(secmem_last_error(), "value 42 out of range");
  secmem_i_clear_error();
  CU_ASSERT_STRING_EQUAL(secmem_last_error(), "");
}

int main(void) {
  static const struct harness_test tests[] = {
      {"page size", test_page_size},
      {"reserve, protect, lock, dontdump, discard", test_reserve_protect_lock},
      {"plain metadata mapping", test_plain_map},
      {"memlock and physical limits", test_limits},
      {"human-readable sizes", test_format_size},
      {"errors set errno and message", test_fail_sets_errno_and_message},
  };
  return harness_main("page", tests, sizeof(tests) / sizeof(tests[0]));
}
