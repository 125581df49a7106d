/*
 * test_registry.c - unit suite for the lifecycle layer: purge, safe exit,
 * signal catching, the exit-time wipe and leak report, fork re-locking, the
 * mlock policy under a real RLIMIT_MEMLOCK, and core-dump hardening. Memory
 * is inspected from outside: /proc/self/smaps and status, and a ptrace'd scan
 * of a child's memory at the moment it exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"
#include "secmem.h"

#define SECRET_LEN 32

static secmem_buf *secret_buf(unsigned seed) {
  secmem_buf *b = secmem_buf_new(SECRET_LEN);
  if (b != NULL) {
    gen_fill(secmem_buf_data(b), SECRET_LEN, seed);
  }
  return b;
}

/* ---- purge -------------------------------------------------------------- */

static void test_purge_wipes_everything(void) {
  secmem_buf *rw = secret_buf(31), *ro = secret_buf(32), *na = secret_buf(33);
  CU_ASSERT_PTR_NOT_NULL_FATAL(rw);
  CU_ASSERT_PTR_NOT_NULL_FATAL(ro);
  CU_ASSERT_PTR_NOT_NULL_FATAL(na);
  CU_ASSERT_EQUAL(secmem_buf_freeze(ro), 0);
  CU_ASSERT_EQUAL(secmem_buf_noaccess(na), 0);
  /* Control: the scan sees each secret while it lives. */
  CU_ASSERT_EQUAL(scan_self_for_generated(31, SECRET_LEN), 1);
  CU_ASSERT_EQUAL(scan_self_for_generated(32, SECRET_LEN), 1);
  CU_ASSERT_EQUAL(scan_self_for_generated(33, SECRET_LEN), 1);
  secmem_stats before, after;
  CU_ASSERT_EQUAL(secmem_get_stats(&before), 0);

  secmem_purge();

  CU_ASSERT_EQUAL(scan_self_for_generated(31, SECRET_LEN), 0);
  CU_ASSERT_EQUAL(scan_self_for_generated(32, SECRET_LEN), 0);
  CU_ASSERT_EQUAL(scan_self_for_generated(33, SECRET_LEN), 0);
  CU_ASSERT_EQUAL(secmem_get_stats(&after), 0);
  CU_ASSERT_EQUAL(after.buffers_live, 0);
  CU_ASSERT_TRUE(after.bytes_locked < before.bytes_locked);
  CU_ASSERT_EQUAL(secmem_buf_get_state(rw), SECMEM_BUF_PURGED);
  CU_ASSERT_EQUAL(secmem_buf_len(rw), 0);
  /* The old data pointer's pages are no-access reservations now. */
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(secmem_buf_data(rw), &s));
  CU_ASSERT_FALSE(s.readable || s.writable);
  CU_ASSERT_EQUAL(s.locked_kb, 0);
  errno = 0;
  CU_ASSERT_EQUAL(secmem_buf_freeze(rw), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  CU_ASSERT_EQUAL(secmem_buf_check(ro), -1);
  CU_ASSERT_TRUE(strstr(secmem_last_error(), "purged") != NULL);
  unsigned char zero[SECRET_LEN] = {0};
  CU_ASSERT_FALSE(secmem_buf_equal(na, zero, SECRET_LEN));
  /* Destroying purged handles is allowed and releases them. */
  secmem_buf_destroy(rw);
  secmem_buf_destroy(ro);
  secmem_buf_destroy(na);
  /* The library keeps working after a purge. */
  secmem_buf *again = secret_buf(34);
  CU_ASSERT_PTR_NOT_NULL_FATAL(again);
  CU_ASSERT_EQUAL(secmem_buf_check(again), 0);
  secmem_buf_destroy(again);
  CU_ASSERT_EQUAL(scan_self_for_generated(34, SECRET_LEN), 0);
}

/* ---- exits and signals, scanned at the child's last moment --------------- */

static void child_exit_normally(void) {
  secmem_buf *b = secret_buf(41);
  (void)b; /* never destroyed: the exit handler must wipe it */
}

static unsigned char *unprotected; /* reachable, so LeakSanitizer stays quiet */

static void child_exit_unprotected(void) {
  unprotected = malloc(SECRET_LEN);
  gen_fill(unprotected, SECRET_LEN, 41);
}

static void test_exit_wipes_live_buffers(void) {
  struct traced_result r;
  traced_run(child_exit_unprotected, 0, 41, SECRET_LEN, &r);
  CU_ASSERT_EQUAL(r.status, 0);
  CU_ASSERT_TRUE(r.hits_at_exit >= 1); /* control: the scan finds a live secret */
  traced_run(child_exit_normally, 0, 41, SECRET_LEN, &r);
  if (r.status != 0) {
    fprintf(stderr, "\n  child status %d: %s\n", r.status, r.stderr);
  }
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  CU_ASSERT_EQUAL(r.hits_at_exit, 0);
}

static void child_safe_exit(void) {
  secmem_buf *b = secret_buf(42);
  if (b == NULL || secmem_buf_freeze(b) != 0) {
    _exit(90);
  }
  secmem_safe_exit(7);
}

static void test_safe_exit(void) {
  struct traced_result r;
  traced_run(child_safe_exit, 0, 42, SECRET_LEN, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 7);
  CU_ASSERT_EQUAL(r.hits_at_exit, 0);
}

static void hook(int sig) {
  char msg[] = "hook ran: 00\n";
  msg[10] = (char)('0' + sig / 10);
  msg[11] = (char)('0' + sig % 10);
  (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
}

static void child_wait_for_signal(void) {
  secmem_buf *b = secret_buf(43);
  secmem_buf *c = secret_buf(43);
  if (b == NULL || c == NULL || secmem_buf_noaccess(c) != 0 ||
      secmem_catch_signals(hook, NULL, 0) != 0) {
    _exit(90);
  }
  harness_ready();
  for (;;) {
    pause();
  }
}

static void child_wait_unprotected(void) {
  secmem_buf *b = secret_buf(43);
  if (b == NULL) {
    _exit(90);
  }
  harness_ready();
  for (;;) {
    pause();
  }
}

static void test_sigterm_runs_hook_and_wipes(void) {
  struct traced_result r;
  traced_run(child_wait_unprotected, SIGTERM, 43, SECRET_LEN, &r);
  CU_ASSERT_TRUE(r.signalled && r.sig == SIGTERM);
  CU_ASSERT_TRUE(r.hits_at_exit >= 1); /* control: killed without the handler */

  traced_run(child_wait_for_signal, SIGTERM, 43, SECRET_LEN, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 128 + SIGTERM);
  CU_ASSERT_STRING_EQUAL(r.stderr, "hook ran: 15\n");
  CU_ASSERT_EQUAL(r.hits_at_exit, 0);
}

static void test_default_signal_set(void) {
  static const int defaults[] = {SIGINT, SIGHUP, SIGQUIT};
  for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
    struct traced_result r;
    traced_run(child_wait_for_signal, defaults[i], 43, SECRET_LEN, &r);
    CU_ASSERT_FALSE(r.signalled);
    CU_ASSERT_EQUAL(r.status, 128 + defaults[i]);
    CU_ASSERT_EQUAL(r.hits_at_exit, 0);
  }
}

static void child_usr1_no_hook(void) {
  static const int sigs[] = {SIGUSR1};
  secmem_buf *b = secret_buf(44);
  if (b == NULL || secmem_catch_signals(NULL, sigs, 1) != 0) {
    _exit(90);
  }
  harness_ready();
  for (;;) {
    pause();
  }
}

static void test_custom_signal_without_hook(void) {
  struct traced_result r;
  traced_run(child_usr1_no_hook, SIGUSR1, 44, SECRET_LEN, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 128 + SIGUSR1);
  CU_ASSERT_STRING_EQUAL(r.stderr, "");
  CU_ASSERT_EQUAL(r.hits_at_exit, 0);
}

static void test_catch_signals_rejects_bad_input(void) {
  static const int bad[][1] = {{SIGKILL}, {SIGSTOP}, {0}, {-3}, {4096}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    errno = 0;
    CU_ASSERT_EQUAL(secmem_catch_signals(NULL, bad[i], 1), -1);
    CU_ASSERT_EQUAL(errno, EINVAL);
  }
  static const int ok[] = {SIGUSR2};
  CU_ASSERT_EQUAL(secmem_catch_signals(NULL, ok, 0), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
}

static void child_canary_fatal(void) {
  secmem_buf *other = secret_buf(45);
  secmem_buf *victim = secret_buf(45);
  if (other == NULL || victim == NULL || secmem_buf_freeze(other) != 0) {
    _exit(90);
  }
  ((unsigned char *)secmem_buf_data(victim))[-1] ^= 1;
  secmem_buf_destroy(victim);
}

static void test_integrity_failure_wipes_everything(void) {
  struct traced_result r;
  traced_run(child_canary_fatal, 0, 45, SECRET_LEN, &r);
  CU_ASSERT_TRUE(r.signalled && r.sig == SIGABRT);
  CU_ASSERT_TRUE(strstr(r.stderr, "secmem: secmem_buf_destroy: canary") == r.stderr);
  CU_ASSERT_EQUAL(r.hits_at_exit, 0);
}

/* ---- leak report ---------------------------------------------------------- */

static void child_leaks(void) {
  setenv("SECMEM_DEBUG", "leaks", 1);
  secmem_buf *kept = secmem_buf_new(24);
  secmem_buf *freed = secmem_buf_new(25);
  if (kept == NULL || freed == NULL) {
    _exit(90);
  }
  secmem_buf_destroy(freed);
  exit(0);
}

static void child_no_leaks(void) {
  setenv("SECMEM_DEBUG", "leaks", 1);
  secmem_buf_destroy(secmem_buf_new(24));
  exit(0);
}

static void test_leak_report(void) {
  struct death_result r;
  death_run(child_leaks, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  CU_ASSERT_TRUE(stderr_has(&r, "secmem: leak: buffer #"));
  CU_ASSERT_TRUE(stderr_has(&r, " of 24 bytes, allocated from "));
  /* The site names the executable (no -rdynamic) and an offset for addr2line. */
  CU_ASSERT_TRUE(stderr_has(&r, "(test_registry+0x"));
  CU_ASSERT_TRUE(strstr(r.stderr, "25 bytes") == NULL);
  CU_ASSERT_TRUE(stderr_has(&r, "secmem: 1 buffer leaked; wiped at exit\n"));
  death_run(child_no_leaks, &r);
  CU_ASSERT_EQUAL(r.status, 0);
  CU_ASSERT_STRING_EQUAL(r.stderr, "");
}

/* ---- fork ------------------------------------------------------------------ */

static secmem_buf *fork_buf;

static void child_after_fork(void) {
  /* mlock is not inherited: the library must have locked our copy again. */
  struct smaps_info s;
  if (!smaps_lookup(secmem_buf_data(fork_buf), &s)) {
    _exit(10);
  }
  /* Frozen pages stay shared with the parent, so smaps' proportional
   * Locked: shows about half; the VMA's lock flag and VmLck are exact. */
  if (!s.lockflag || s.locked_kb == 0 || !s.dontdump) {
    fprintf(stderr, "locked %zu kB dd %d\n", s.locked_kb, s.dontdump);
    _exit(11);
  }
  if (status_vmlck_kb() < 68) {
    _exit(12);
  }
  const unsigned char *d = secmem_buf_data(fork_buf);
  for (size_t i = 0; i < 64 * 1024; i++) {
    if (d[i] != gen_byte(46, i)) {
      _exit(13);
    }
  }
  if (secmem_buf_check(fork_buf) != 0) {
    _exit(14);
  }
  /* The guard pages came along too. */
  if (!smaps_lookup(d + 64 * 1024, &s) || s.readable) {
    _exit(15);
  }
  secmem_buf_destroy(fork_buf);
  _exit(0);
}

static void test_fork_relocks(void) {
  fork_buf = secmem_buf_new(64 * 1024);
  CU_ASSERT_PTR_NOT_NULL_FATAL(fork_buf);
  gen_fill(secmem_buf_data(fork_buf), 64 * 1024, 46);
  CU_ASSERT_EQUAL(secmem_buf_freeze(fork_buf), 0);
  struct death_result r;
  death_run(child_after_fork, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  if (r.status != 0) {
    fprintf(stderr, "\n  child status %d: %s\n", r.status, r.stderr);
  }
  /* The parent's copy is untouched by the child's destroy. */
  CU_ASSERT_EQUAL(((unsigned char *)secmem_buf_data(fork_buf))[100], gen_byte(46, 100));
  secmem_buf_destroy(fork_buf);
}

/* ---- mlock policy under a real limit --------------------------------------- */

static void child_memlock_limit(void) {
  if (drop_privileges() != 0) {
    _exit(20);
  }
  struct rlimit rl = {64 * 1024, 64 * 1024};
  if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
    _exit(21);
  }
  secmem_buf *small = secret_buf(47);
  if (small == NULL) {
    fprintf(stderr, "small: %s\n", secmem_last_error());
    _exit(22);
  }
  errno = 0;
  secmem_buf *big = secmem_buf_new(256 * 1024);
  if (big != NULL || errno != ENOMEM) {
    _exit(23);
  }
  fprintf(stderr, "strict: %s\n", secmem_last_error());
  if (secmem_buf_check(small) != 0 || !secmem_buf_equal(small, secmem_buf_data(small), 32)) {
    _exit(24);
  }
  for (size_t i = 0; i < SECRET_LEN; i++) {
    if (((unsigned char *)secmem_buf_data(small))[i] != gen_byte(47, i)) {
      _exit(25);
    }
  }
  if (secmem_set_mlock_policy(SECMEM_MLOCK_BEST_EFFORT) != 0) {
    _exit(26);
  }
  big = secmem_buf_new(256 * 1024);
  if (big == NULL) {
    _exit(27);
  }
  memset(secmem_buf_data(big), 0x5a, 256 * 1024);
  secmem_stats st;
  if (secmem_get_stats(&st) != 0 || st.bytes_unlocked < 256 * 1024) {
    _exit(28);
  }
  fprintf(stderr, "best-effort unlocked=%zu\n", st.bytes_unlocked);
  secmem_buf_destroy(big);
  if (secmem_get_stats(&st) != 0 || st.bytes_unlocked != 0) {
    _exit(29);
  }
  /* Regression: an unlocked region small enough for the reuse cache must not
   * be handed out again once the policy is strict. */
  secmem_buf *unlocked = secmem_buf_new(62 * 1024);
  if (unlocked == NULL || secmem_get_stats(&st) != 0 || st.bytes_unlocked != 64 * 1024) {
    _exit(40);
  }
  secmem_buf_destroy(unlocked);
  if (secmem_set_mlock_policy(SECMEM_MLOCK_REQUIRED) != 0) {
    _exit(41);
  }
  errno = 0;
  if (secmem_buf_new(62 * 1024) != NULL || errno != ENOMEM) {
    _exit(42);
  }
  if (secmem_get_stats(&st) != 0 || st.bytes_unlocked != 0) {
    _exit(43);
  }
  secmem_buf_destroy(small);
  _exit(0);
}

static void test_memlock_limit_policies(void) {
  struct death_result r;
  death_run(child_memlock_limit, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  if (r.status != 0) {
    fprintf(stderr, "\n  child status %d: %s\n", r.status, r.stderr);
  }
  CU_ASSERT_TRUE(stderr_has(&r, "strict: mlock failed"));
  CU_ASSERT_TRUE(stderr_has(&r, "RLIMIT_MEMLOCK is 64 KiB"));
  CU_ASSERT_TRUE(stderr_has(&r, "needed"));
  CU_ASSERT_TRUE(stderr_has(&r, "best-effort unlocked="));
}

/* ---- core dumps ------------------------------------------------------------ */

static void child_core_dumps(void) {
  if (secmem_disable_core_dumps() != 0) {
    _exit(30);
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0) {
    _exit(31);
  }
  if (prctl(PR_GET_DUMPABLE) != 0) {
    _exit(32);
  }
  _exit(0);
}

static void test_disable_core_dumps(void) {
  struct death_result r;
  death_run(child_core_dumps, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
}

int main(void) {
  /* The memory scans here read live secrets as their controls, which
   * memfd_secret pages (the default backing, test_backing's subject) would
   * hide from /proc/self/mem. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"purge wipes every buffer", test_purge_wipes_everything},
      {"normal exit wipes live buffers", test_exit_wipes_live_buffers},
      {"safe exit purges then exits", test_safe_exit},
      {"SIGTERM runs the hook, wipes, exits 128+15", test_sigterm_runs_hook_and_wipes},
      {"default set: SIGINT, SIGHUP, SIGQUIT", test_default_signal_set},
      {"custom signal list without hook", test_custom_signal_without_hook},
      {"catch_signals rejects bad input", test_catch_signals_rejects_bad_input},
      {"integrity failure wipes everything", test_integrity_failure_wipes_everything},
      {"SECMEM_DEBUG=leaks reports undestroyed buffers", test_leak_report},
      {"a forked child re-locks its buffers", test_fork_relocks},
      {"RLIMIT_MEMLOCK: strict fails cleanly, best-effort continues",
       test_memlock_limit_policies},
      {"disable core dumps", test_disable_core_dumps},
  };
  return harness_main("registry", tests, sizeof(tests) / sizeof(tests[0]));
}
