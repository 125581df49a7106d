/*
 * test_scratch.c - unit suite for per-thread scratch: guarded, locked,
 * aligned memory reused without locks; growth wipes the old area; a thread's
 * areas go when it ends; a forked child wipes the areas of threads that did
 * not come along.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "secmem.h"

static void test_basic(void) {
  unsigned char *a = secmem_scratch(100);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_EQUAL((uintptr_t)a % 64, 0);
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(a, &s));
  CU_ASSERT_TRUE(s.lockflag && s.dontdump && s.readable && s.writable);
  memset(a, 0x5a, 100);
  CU_ASSERT_PTR_EQUAL(secmem_scratch(50), a); /* reused, no new mapping */
  CU_ASSERT_PTR_EQUAL(secmem_scratch(256), a);
  secmem_scratch_wipe();
  CU_ASSERT_EQUAL(a[0], 0);
  CU_ASSERT_EQUAL(a[99], 0);
}

static void test_growth_wipes_old_area(void) {
  unsigned char *a = secmem_scratch(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  gen_fill(a, 32, 91);
  CU_ASSERT_EQUAL(scan_self_for_generated(91, 32), 1);
  unsigned char *b = secmem_scratch(10000);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_PTR_NOT_EQUAL(a, b);
  CU_ASSERT_EQUAL((uintptr_t)b % 64, 0);
  b[9999] = 1;
  CU_ASSERT_EQUAL(scan_self_for_generated(91, 32), 0); /* the old area was wiped */
  secmem_scratch_wipe();
}

static unsigned char *_Atomic left_behind;

static void *use_and_leave(void *arg) {
  (void)arg;
  unsigned char *p = secmem_scratch(5000);
  if (p == NULL) {
    return (void *)1;
  }
  gen_fill(p, 32, 92);
  atomic_store(&left_behind, p);
  return NULL; /* not wiped: the thread's end must do it */
}

static void test_thread_end_frees(void) {
  secmem_stats s0, s1;
  CU_ASSERT_EQUAL(secmem_get_stats(&s0), 0);
  pthread_t t;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, use_and_leave, NULL), 0);
  void *rv = NULL;
  pthread_join(t, &rv);
  CU_ASSERT_PTR_NULL(rv);
  CU_ASSERT_EQUAL(scan_self_for_generated(92, 32), 0);
  /* The area is released: no-access (kept for reuse) or unmapped. */
  struct smaps_info si;
  CU_ASSERT_FALSE(smaps_lookup(atomic_load(&left_behind), &si) && (si.readable || si.writable));
  CU_ASSERT_EQUAL(secmem_get_stats(&s1), 0);
  CU_ASSERT_TRUE(s1.bytes_locked <= s0.bytes_locked + 16384); /* at most the cached region */
}

static int park[2], go[2];

static void *hold_secret(void *arg) {
  (void)arg;
  unsigned char *p = secmem_scratch(64);
  if (p != NULL) {
    gen_fill(p, 32, 93); /* mid-operation when the fork happens */
  }
  char c;
  (void)!write(park[1], "p", 1);
  (void)!read(go[0], &c, 1);
  secmem_scratch_wipe();
  return NULL;
}

static void child_scan(void) { _exit(scan_self_for_generated(93, 32) == 0 ? 0 : 10); }

static void test_fork_wipes_other_threads(void) {
  CU_ASSERT_EQUAL_FATAL(pipe(park), 0);
  CU_ASSERT_EQUAL_FATAL(pipe(go), 0);
  pthread_t t;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, hold_secret, NULL), 0);
  char c;
  CU_ASSERT_EQUAL(read(park[0], &c, 1), 1);
  CU_ASSERT_EQUAL(scan_self_for_generated(93, 32), 1); /* control: the parent has it */
  struct death_result r;
  death_run(child_scan, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  (void)!write(go[1], "g", 1);
  pthread_join(t, NULL);
  close(park[0]);
  close(park[1]);
  close(go[0]);
  close(go[1]);
}

int main(void) {
  /* Scans read the areas as their control: pin anonymous pages. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"guarded, locked, aligned, reused, wiped", test_basic},
      {"growth replaces and wipes the old area", test_growth_wipes_old_area},
      {"a thread's end wipes and frees its areas", test_thread_end_frees},
      {"a forked child wipes other threads' areas", test_fork_wipes_other_threads},
  };
  return harness_main("scratch", tests, sizeof(tests) / sizeof(tests[0]));
}
