/*
 * test_buffer.c - unit suite for the public locked-buffer API: creation,
 * sizes around page boundaries, protection states, copies, comparisons,
 * errors, and the layout seen from /proc/self/smaps.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "secmem.h"

static size_t page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static void check_layout(secmem_buf *b, size_t len) {
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(secmem_buf_len(b), len);
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_READWRITE);
  unsigned char *d = secmem_buf_data(b);
  CU_ASSERT_PTR_NOT_NULL(d);
  /* The data ends exactly at a page boundary (the trailing guard page). */
  CU_ASSERT_EQUAL(((uintptr_t)d + len) % page(), 0);
  /* Zero-filled and writable. */
  size_t nonzero = 0;
  for (size_t i = 0; i < len; i++) {
    nonzero += d[i] != 0;
  }
  CU_ASSERT_EQUAL(nonzero, 0);
  if (len > 0) {
    memset(d, 0xab, len);
    CU_ASSERT_EQUAL(d[len - 1], 0xab);
  }
  /* The data's pages are locked and excluded from dumps; the page after it
   * is a no-access guard. */
  struct smaps_info in, guard;
  CU_ASSERT_TRUE(smaps_lookup(len > 0 ? d : d - 1, &in));
  CU_ASSERT_TRUE(in.dontdump);
  CU_ASSERT_TRUE(in.readable && in.writable);
  CU_ASSERT_TRUE(in.locked_kb * 1024 >= (len + SECMEM_CANARY_LEN + page() - 1) / page() * page());
  CU_ASSERT_TRUE(smaps_lookup(d + len, &guard));
  CU_ASSERT_FALSE(guard.readable || guard.writable);
  CU_ASSERT_TRUE(guard.dontdump);
}

static void test_sizes(void) {
  size_t sizes[] = {0, 1, 16, page() - SECMEM_CANARY_LEN, page() - SECMEM_CANARY_LEN + 1,
                    page(), page() + 1, 3 * page(), 1u << 20};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    secmem_buf *b = secmem_buf_new(sizes[i]);
    check_layout(b, sizes[i]);
    CU_ASSERT_EQUAL(secmem_buf_check(b), 0);
    secmem_buf_destroy(b);
  }
}

static void test_canary_is_at_least_documented_len(void) {
  /* page - SECMEM_CANARY_LEN bytes fit one inner page; one more needs two. */
  secmem_stats before, after;
  CU_ASSERT_EQUAL(secmem_get_stats(&before), 0);
  secmem_buf *b = secmem_buf_new(page() - SECMEM_CANARY_LEN);
  CU_ASSERT_EQUAL(secmem_get_stats(&after), 0);
  secmem_buf *c = secmem_buf_new(page() - SECMEM_CANARY_LEN + 1);
  secmem_stats after2;
  CU_ASSERT_EQUAL(secmem_get_stats(&after2), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  struct smaps_info ib, ic;
  CU_ASSERT_TRUE(smaps_lookup(secmem_buf_data(b), &ib));
  CU_ASSERT_TRUE(smaps_lookup(secmem_buf_data(c), &ic));
  CU_ASSERT_EQUAL(ib.size_kb * 1024, page());
  CU_ASSERT_EQUAL(ic.size_kb * 1024, 2 * page());
  CU_ASSERT_EQUAL(SECMEM_GUARD_PAGES, 1);
  secmem_buf_destroy(b);
  secmem_buf_destroy(c);
}

static void test_huge_sizes_fail_cleanly(void) {
  secmem_buf *keep = secmem_buf_random(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(keep);
  unsigned char copy[32];
  memcpy(copy, secmem_buf_data(keep), 32);
  size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX / 2, (size_t)1 << 46};
  for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
    errno = 0;
    secmem_buf *b = secmem_buf_new(huge[i]);
    CU_ASSERT_PTR_NULL(b);
    CU_ASSERT_EQUAL(errno, ENOMEM);
    CU_ASSERT_TRUE(strlen(secmem_last_error()) > 0);
  }
  /* Nothing already held is harmed. */
  CU_ASSERT_TRUE(secmem_buf_equal(keep, copy, 32));
  CU_ASSERT_EQUAL(secmem_buf_check(keep), 0);
  secmem_buf_destroy(keep);
}

static void test_from_bytes_wipes_source(void) {
  unsigned char src[48];
  gen_fill(src, sizeof(src), 7);
  secmem_buf *b = secmem_buf_from_bytes(src, sizeof(src));
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  unsigned char zero[48] = {0};
  CU_ASSERT_EQUAL(memcmp(src, zero, sizeof(src)), 0);
  const unsigned char *d = secmem_buf_data(b);
  for (size_t i = 0; i < sizeof(src); i++) {
    CU_ASSERT_EQUAL(d[i], gen_byte(7, i));
  }
  secmem_buf_destroy(b);

  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_buf_from_bytes(NULL, 4));
  CU_ASSERT_EQUAL(errno, EINVAL);
  b = secmem_buf_from_bytes(NULL, 0);
  CU_ASSERT_PTR_NOT_NULL(b);
  secmem_buf_destroy(b);

  /* A failed allocation leaves the source untouched. */
  gen_fill(src, sizeof(src), 8);
  CU_ASSERT_PTR_NULL(secmem_buf_from_bytes(src, SIZE_MAX));
  CU_ASSERT_EQUAL(src[0], gen_byte(8, 0));
  CU_ASSERT_EQUAL(src[47], gen_byte(8, 47));
}

static void test_random(void) {
  secmem_buf *a = secmem_buf_random(64);
  secmem_buf *b = secmem_buf_random(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_FALSE(secmem_equal(secmem_buf_data(a), secmem_buf_data(b), 64));
  unsigned char zero[64] = {0};
  CU_ASSERT_FALSE(secmem_buf_equal(a, zero, 64));
  secmem_buf_destroy(a);
  secmem_buf_destroy(b);
  a = secmem_buf_random(0);
  CU_ASSERT_PTR_NOT_NULL(a);
  CU_ASSERT_EQUAL(secmem_buf_len(a), 0);
  secmem_buf_destroy(a);
}

static void test_states(void) {
  secmem_buf *b = secmem_buf_new(100);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  unsigned char *d = secmem_buf_data(b);
  struct smaps_info s;

  CU_ASSERT_EQUAL(secmem_buf_freeze(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_READONLY);
  CU_ASSERT_TRUE(smaps_lookup(d, &s));
  CU_ASSERT_TRUE(s.readable && !s.writable);
  CU_ASSERT_TRUE(s.locked_kb > 0);
  CU_ASSERT_EQUAL(d[0], 0);
  errno = 0;
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, 0, "x", 1), -1);
  CU_ASSERT_EQUAL(errno, EACCES);
  CU_ASSERT_EQUAL(secmem_buf_wipe(b), -1);
  CU_ASSERT_EQUAL(secmem_buf_scramble(b), -1);

  CU_ASSERT_EQUAL(secmem_buf_noaccess(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_NOACCESS);
  CU_ASSERT_TRUE(smaps_lookup(d, &s));
  CU_ASSERT_FALSE(s.readable || s.writable);
  CU_ASSERT_TRUE(s.dontdump);
  CU_ASSERT_EQUAL(secmem_buf_check(b), 0); /* works without access */
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_NOACCESS);
  CU_ASSERT_FALSE(secmem_buf_equal(b, d, 0)); /* not readable: never equal */

  CU_ASSERT_EQUAL(secmem_buf_melt(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_READWRITE);
  CU_ASSERT_TRUE(smaps_lookup(d, &s));
  CU_ASSERT_TRUE(s.readable && s.writable);
  d[99] = 5;
  CU_ASSERT_EQUAL(d[99], 5);
  /* Idempotent transitions. */
  CU_ASSERT_EQUAL(secmem_buf_melt(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_freeze(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_freeze(b), 0);
  CU_ASSERT_EQUAL(d[99], 5);
  secmem_buf_destroy(b); /* destroying a frozen buffer works */
}

static void test_copy_move_bounds(void) {
  secmem_buf *b = secmem_buf_new(16);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  unsigned char src[8];
  gen_fill(src, 8, 3);
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, 8, src, 8), 0);
  CU_ASSERT_EQUAL(memcmp((unsigned char *)secmem_buf_data(b) + 8, src, 8), 0);
  errno = 0;
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, 9, src, 8), -1);
  CU_ASSERT_EQUAL(errno, ERANGE);
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, SIZE_MAX, src, 2), -1);
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, 2, src, SIZE_MAX), -1);
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, 16, src, 0), 0);
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, 0, NULL, 1), -1);

  CU_ASSERT_EQUAL(secmem_buf_move_at(b, 0, src, 8), 0);
  unsigned char zero[8] = {0};
  CU_ASSERT_EQUAL(memcmp(src, zero, 8), 0);
  CU_ASSERT_EQUAL(((unsigned char *)secmem_buf_data(b))[0], gen_byte(3, 0));
  /* A failed move leaves the source alone. */
  gen_fill(src, 8, 4);
  CU_ASSERT_EQUAL(secmem_buf_move_at(b, 12, src, 8), -1);
  CU_ASSERT_EQUAL(src[0], gen_byte(4, 0));

  CU_ASSERT_EQUAL(secmem_buf_scramble(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_wipe(b), 0);
  unsigned char zero16[16] = {0};
  CU_ASSERT_TRUE(secmem_buf_equal(b, zero16, 16));
  secmem_buf_destroy(b);
}

static void test_equal(void) {
  unsigned char a[40], c[40];
  gen_fill(a, 40, 9);
  memcpy(c, a, 40);
  secmem_buf *b = secmem_buf_new(40);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(secmem_buf_copy_at(b, 0, a, 40), 0);
  CU_ASSERT_TRUE(secmem_buf_equal(b, c, 40));
  CU_ASSERT_FALSE(secmem_buf_equal(b, c, 39)); /* length differs */
  c[39] ^= 1;
  CU_ASSERT_FALSE(secmem_buf_equal(b, c, 40));
  CU_ASSERT_EQUAL(secmem_buf_freeze(b), 0);
  c[39] ^= 1;
  CU_ASSERT_TRUE(secmem_buf_equal(b, c, 40)); /* readable when frozen */
  secmem_buf_destroy(b);
}

static void test_destroy_null_and_scoped(void) {
  secmem_buf_destroy(NULL);
  secmem_buf_destroy_ptr(NULL);
  secmem_stats st;
  CU_ASSERT_EQUAL(secmem_get_stats(&st), 0);
  size_t live = st.buffers_live;
  {
    SECMEM_BUF_SCOPED secmem_buf *b = secmem_buf_random(32);
    CU_ASSERT_PTR_NOT_NULL(b);
    CU_ASSERT_EQUAL(secmem_get_stats(&st), 0);
    CU_ASSERT_EQUAL(st.buffers_live, live + 1);
  }
  CU_ASSERT_EQUAL(secmem_get_stats(&st), 0);
  CU_ASSERT_EQUAL(st.buffers_live, live);
  secmem_buf *p = secmem_buf_new(1);
  secmem_buf_destroy_ptr(&p);
  CU_ASSERT_PTR_NULL(p);
}

static void test_reuse_is_wiped(void) {
  /* A region given back and handed out again holds zeros, not the old secret. */
  secmem_buf *a = secmem_buf_new(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  gen_fill(secmem_buf_data(a), 64, 11);
  secmem_buf_destroy(a);
  for (int i = 0; i < 4; i++) {
    secmem_buf *b = secmem_buf_new(64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    unsigned char zero[64] = {0};
    CU_ASSERT_EQUAL(memcmp(secmem_buf_data(b), zero, 64), 0);
    CU_ASSERT_EQUAL(secmem_buf_check(b), 0);
    secmem_buf_destroy(b);
  }
  CU_ASSERT_EQUAL(scan_self_for_generated(11, 64), 0);
}

static void test_stats_track_locked_bytes(void) {
  secmem_stats s0, s1, s2;
  CU_ASSERT_EQUAL(secmem_get_stats(&s0), 0);
  secmem_buf *b = secmem_buf_new(5 * page());
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(secmem_get_stats(&s1), 0);
  CU_ASSERT_EQUAL(s1.buffers_live, s0.buffers_live + 1);
  CU_ASSERT_TRUE(s1.bytes_locked >= s0.bytes_locked + 5 * page());
  CU_ASSERT_EQUAL(s1.bytes_unlocked, 0);
  CU_ASSERT_EQUAL(s1.dontdump_failures, 0);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_get_stats(&s2), 0);
  CU_ASSERT_EQUAL(s2.buffers_live, s0.buffers_live);
  CU_ASSERT_EQUAL(secmem_get_stats(NULL), -1);
  /* The whole-process view agrees with ours. */
  CU_ASSERT_TRUE(status_vmlck_kb() * 1024 >= (long)s2.bytes_locked);
}

static void test_init_and_version(void) {
  CU_ASSERT_EQUAL(secmem_init(), 0);
  CU_ASSERT_EQUAL(secmem_init(), 0);
  CU_ASSERT_STRING_EQUAL(secmem_version(), SECMEM_VERSION_STRING);
  CU_ASSERT_EQUAL(secmem_set_mlock_policy((secmem_mlock_policy)7), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  CU_ASSERT_TRUE(strstr(secmem_last_error(), "policy") != NULL);
  CU_ASSERT_EQUAL(secmem_get_mlock_policy(), SECMEM_MLOCK_REQUIRED);
}

int main(void) {
  /* The memory scans here read live secrets as their controls, which
   * memfd_secret pages (the default backing, test_backing's subject) would
   * hide from /proc/self/mem. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"init and version", test_init_and_version},
      {"sizes around page boundaries", test_sizes},
      {"canary length and guard pages as documented", test_canary_is_at_least_documented_len},
      {"huge sizes fail cleanly", test_huge_sizes_fail_cleanly},
      {"from_bytes copies and wipes the source", test_from_bytes_wipes_source},
      {"random buffers", test_random},
      {"freeze, melt, noaccess", test_states},
      {"copy_at, move_at, scramble, wipe", test_copy_move_bounds},
      {"constant-time equal", test_equal},
      {"destroy NULL and scoped cleanup", test_destroy_null_and_scoped},
      {"reused regions are wiped", test_reuse_is_wiped},
      {"stats track locked bytes", test_stats_track_locked_bytes},
  };
  return harness_main("buffer", tests, sizeof(tests) / sizeof(tests[0]));
}
