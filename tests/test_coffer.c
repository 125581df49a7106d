/*
 * test_coffer.c - unit suite for the enclave key: never stored whole,
 * re-keyed without changing value (on access, on demand, on a timer), no
 * thread unless asked, lazy timer restart after fork, replaced by purge.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "harness.h"
#include "internal.h"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static unsigned char *key_now(void) {
  static unsigned char *k;
  if (k == NULL) {
    k = harness_hidden_alloc(4096);
  }
  CU_ASSERT_EQUAL(secmem_i_coffer_key(k, NULL), 0);
  return k;
}

static void test_documented_default_interval(void) {
  CU_ASSERT_EQUAL(SECMEM_REKEY_INTERVAL_DEFAULT_MS, 500);
  CU_ASSERT_EQUAL(secmem_get_rekey_interval(), SECMEM_REKEY_INTERVAL_DEFAULT_MS);
  secmem_set_rekey_interval(7);
  CU_ASSERT_EQUAL(secmem_get_rekey_interval(), 7);
  secmem_set_rekey_interval(SECMEM_REKEY_INTERVAL_DEFAULT_MS);
}

static void test_rekey_keeps_value_changes_representation(void) {
  secmem_set_rekey_interval(0);
  unsigned char before[32], after[32], l0[32], r0[32], l1[32], r1[32];
  memcpy(before, key_now(), 32);
  CU_ASSERT_EQUAL(secmem_i_coffer_snapshot(l0, r0), 0);
  uint64_t n0 = secmem_i_coffer_rekeys();
  CU_ASSERT_EQUAL(secmem_rekey(), 0);
  CU_ASSERT_EQUAL(secmem_i_coffer_rekeys(), n0 + 1);
  CU_ASSERT_EQUAL(secmem_i_coffer_snapshot(l1, r1), 0);
  memcpy(after, key_now(), 32);
  CU_ASSERT_EQUAL(memcmp(before, after, 32), 0);
  CU_ASSERT_NOT_EQUAL(memcmp(l0, l1, 32), 0);
  CU_ASSERT_NOT_EQUAL(memcmp(r0, r1, 32), 0);
  /* key = BLAKE2b-256(left) XOR right, as documented. */
  unsigned char h[32];
  crypto_generichash(h, 32, l1, 32, NULL, 0);
  for (int i = 0; i < 32; i++) {
    h[i] ^= r1[i];
  }
  CU_ASSERT_EQUAL(memcmp(h, after, 32), 0);
  secmem_wipe(before, 32);
  secmem_wipe(after, 32);
  secmem_wipe(h, 32);
}

static void test_key_never_stored_whole(void) {
  /* The rebuilt key lives only in hidden test memory: the process holds its
   * halves, never the key itself, while the timer re-keys. */
  CU_ASSERT_EQUAL(secmem_rekey_start(1), 0);
  unsigned char *k = key_now();
  sleep_ms(20);
  CU_ASSERT_EQUAL(scan_self_for_bytes(k, 32), 0);
  secmem_rekey_stop();
}

/* A worker that rebuilds the key, seals and opens, then parks, so that what
 * those calls left on its stack can be scanned. */
static int park_fds[2], go_fds[2];
static void *volatile worker_local;

static void *stack_worker(void *arg) {
  (void)arg;
  unsigned char *k = harness_hidden_alloc(4096);
  for (int i = 0; i < 20; i++) {
    if (secmem_i_coffer_key(k, NULL) != 0) {
      return (void *)1;
    }
  }
  unsigned char plain[32] = {0};
  secmem_enclave *e = secmem_enclave_new(plain, 32);
  unsigned char *slot = secmem_malloc(32);
  if (e == NULL || slot == NULL || secmem_enclave_open_into(e, slot, 32) != 0) {
    return (void *)1;
  }
  secmem_free(slot);
  secmem_enclave_free(e);
  char c;
  worker_local = &c;
  (void)!write(park_fds[1], "p", 1);
  (void)!read(go_fds[0], &c, 1); /* parked until the scan is done */
  return NULL;
}

static void test_no_key_material_on_stacks(void) {
  /* BLAKE2b(left) XOR right is the key: neither it nor the key may be left
   * on a thread's stack by the calls that rebuild it. libsodium 1.0.18's
   * BLAKE2b leaves its digest on the stack; the library scrubs it. */
  secmem_set_rekey_interval(0);
  unsigned char *h = harness_hidden_alloc(4096);
  CU_ASSERT_EQUAL(secmem_i_coffer_snapshot(h, h + 32), 0);
  crypto_generichash(h + 64, 32, h, 32, NULL, 0);
  secmem_i_stack_scrub(); /* our own hash call left it on this stack */
  CU_ASSERT_EQUAL(secmem_i_coffer_key(h + 96, NULL), 0);
  secmem_i_stack_scrub();
  CU_ASSERT_EQUAL_FATAL(pipe(park_fds), 0);
  CU_ASSERT_EQUAL_FATAL(pipe(go_fds), 0);
  pthread_t t;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, stack_worker, NULL), 0);
  char c = 0;
  CU_ASSERT_EQUAL(read(park_fds[0], &c, 1), 1);
  CU_ASSERT_EQUAL(scan_self_for_bytes(h + 64, 32), 0); /* BLAKE2b(left) */
  if (getenv("HARNESS_SCAN_DEBUG") != NULL) {
    fprintf(stderr, "worker local at %p\n", worker_local);
  }
  CU_ASSERT_EQUAL(scan_self_for_bytes(h + 96, 32), 0); /* the key */
  (void)!write(go_fds[1], "g", 1);
  void *rv = NULL;
  pthread_join(t, &rv);
  CU_ASSERT_PTR_NULL(rv);
  close(park_fds[0]);
  close(park_fds[1]);
  close(go_fds[0]);
  close(go_fds[1]);
  secmem_set_rekey_interval(500);
}

static void test_key_scan_control(void) {
  unsigned char l[32], r[32];
  CU_ASSERT_EQUAL(secmem_rekey_start(1), 0);
  CU_ASSERT_EQUAL(secmem_i_coffer_snapshot(l, r), 0);
  secmem_rekey_stop();
  /* Control: the same scan finds a half we copied out (in unhidden memory). */
  CU_ASSERT_TRUE(scan_self_for_bytes(r, 32) >= 1);
  secmem_wipe(l, 32);
  secmem_wipe(r, 32);
}

static void test_rekey_on_access_after_interval(void) {
  secmem_set_rekey_interval(5);
  uint64_t n0 = secmem_i_coffer_rekeys();
  unsigned char a[32];
  memcpy(a, key_now(), 32);
  sleep_ms(12);
  CU_ASSERT_EQUAL(memcmp(a, key_now(), 32), 0);
  CU_ASSERT_TRUE(secmem_i_coffer_rekeys() >= n0 + 1);
  /* Within the interval nothing happens. */
  secmem_set_rekey_interval(100000);
  uint64_t n1 = secmem_i_coffer_rekeys();
  for (int i = 0; i < 100; i++) {
    (void)key_now();
  }
  CU_ASSERT_EQUAL(secmem_i_coffer_rekeys(), n1);
  /* 0 turns it off. */
  secmem_set_rekey_interval(0);
  sleep_ms(3);
  (void)key_now();
  CU_ASSERT_EQUAL(secmem_i_coffer_rekeys(), n1);
  secmem_set_rekey_interval(500);
  secmem_wipe(a, 32);
}

static void test_timer_thread_only_when_asked(void) {
  secmem_set_rekey_interval(0);
  long t0 = status_threads();
  unsigned char plain[16] = {1};
  secmem_enclave *e = secmem_enclave_new(plain, sizeof(plain));
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  secmem_buf *b = secmem_enclave_open(e);
  CU_ASSERT_PTR_NOT_NULL(b);
  CU_ASSERT_EQUAL(status_threads(), t0); /* sealing started no thread */
  uint64_t n0 = secmem_i_coffer_rekeys();
  CU_ASSERT_EQUAL(secmem_rekey_start(2), 0);
  CU_ASSERT_EQUAL(status_threads(), t0 + 1);
  CU_ASSERT_EQUAL(secmem_rekey_start(1), 0); /* retune: still one thread */
  CU_ASSERT_EQUAL(status_threads(), t0 + 1);
  sleep_ms(60);
  uint64_t n1 = secmem_i_coffer_rekeys();
  CU_ASSERT_TRUE(n1 >= n0 + 10);
  secmem_rekey_stop();
  CU_ASSERT_EQUAL(status_threads_settled(t0), t0);
  uint64_t n2 = secmem_i_coffer_rekeys();
  sleep_ms(10);
  CU_ASSERT_EQUAL(secmem_i_coffer_rekeys(), n2);
  secmem_rekey_stop(); /* stopping twice is fine */
  errno = 0;
  CU_ASSERT_EQUAL(secmem_rekey_start(0), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  /* Enclaves sealed before all those re-keys still open. */
  secmem_buf *c = secmem_enclave_open(e);
  CU_ASSERT_PTR_NOT_NULL(c);
  CU_ASSERT_TRUE(secmem_buf_equal(c, secmem_buf_data(b), sizeof(plain)));
  secmem_buf_destroy(b);
  secmem_buf_destroy(c);
  secmem_enclave_free(e);
  secmem_set_rekey_interval(500);
}

static long parent_threads; /* with the timer running, counted before fork */

static void child_timer_restarts(void) {
  /* Counted relative to the child's own start: sanitizer runtimes keep
   * helper threads that a child may or may not have. */
  long t0 = status_threads();
  if (t0 >= parent_threads) {
    _exit(10); /* the timer thread did not come along */
  }
  uint64_t n0 = secmem_i_coffer_rekeys();
  unsigned char k[32];
  if (secmem_i_coffer_key(k, NULL) != 0) {
    _exit(11);
  }
  if (status_threads() != t0 + 1) {
    _exit(12); /* restarted at first use */
  }
  sleep_ms(30);
  if (secmem_i_coffer_rekeys() < n0 + 5) {
    _exit(13);
  }
  secmem_rekey_stop();
  _exit(status_threads_settled(t0) == t0 ? 0 : 14);
}

static void test_timer_restarts_lazily_after_fork(void) {
  CU_ASSERT_EQUAL(secmem_rekey_start(1), 0);
  parent_threads = status_threads();
  struct death_result r;
  death_run(child_timer_restarts, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  if (r.status != 0) {
    fprintf(stderr, "\n  child status %d (parent had %ld threads): %s\n", r.status, parent_threads,
            r.stderr);
  }
  secmem_rekey_stop();
}

static void test_fork_child_keeps_key(void) {
  /* The child rebuilds the same key from its inherited halves. */
  unsigned char *k = key_now();
  int fds[2];
  CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    unsigned char *c = harness_hidden_alloc(4096);
    int ok = secmem_i_coffer_key(c, NULL) == 0 && memcmp(c, k, 32) == 0 && secmem_rekey() == 0 &&
             secmem_i_coffer_key(c, NULL) == 0 && memcmp(c, k, 32) == 0;
    (void)!write(fds[1], ok ? "y" : "n", 1);
    _exit(0);
  }
  char c = 0;
  CU_ASSERT_EQUAL(read(fds[0], &c, 1), 1);
  CU_ASSERT_EQUAL(c, 'y');
  waitpid(pid, NULL, 0);
  close(fds[0]);
  close(fds[1]);
}

static void test_purge_replaces_key(void) {
  unsigned char a[32];
  uint64_t e0 = secmem_i_coffer_epoch();
  memcpy(a, key_now(), 32);
  secmem_purge();
  CU_ASSERT_EQUAL(secmem_i_coffer_epoch(), e0 + 1);
  CU_ASSERT_NOT_EQUAL(memcmp(a, key_now(), 32), 0);
  secmem_wipe(a, 32);
}

/* ---- findings of the security review, each with its regression test ---- */

static _Atomic int opener_stop;

static void *opener(void *arg) {
  secmem_enclave *e = arg;
  unsigned char *slot = secmem_malloc(32);
  while (!atomic_load(&opener_stop)) {
    if (secmem_enclave_open_into(e, slot, 32) != 0) {
      break;
    }
  }
  secmem_free(slot);
  return NULL;
}

static unsigned char *fork_key; /* hidden: the key the children look for */

static void child_scans_for_key(void) {
  secmem_purge(); /* even after a purge, nothing of the old key may remain */
  _exit(scan_self_for_bytes(fork_key, 32) == 0 ? 0 : 10);
}

static void test_fork_wipes_other_threads_scratch(void) {
  /* A thread opening enclaves holds the whole key in its scratch for an
   * instant; a child forked at that instant must not keep it. */
  secmem_set_rekey_interval(0);
  fork_key = harness_hidden_alloc(4096);
  CU_ASSERT_EQUAL_FATAL(secmem_i_coffer_key(fork_key, NULL), 0);
  unsigned char plain[32] = {3};
  secmem_enclave *e = secmem_enclave_new(plain, 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  atomic_store(&opener_stop, 0);
  pthread_t t;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, opener, e), 0);
  int failures = 0;
  for (int i = 0; i < 20; i++) {
    struct death_result r;
    death_run(child_scans_for_key, &r);
    failures += r.signalled || r.status != 0;
  }
  atomic_store(&opener_stop, 1);
  pthread_join(t, NULL);
  CU_ASSERT_EQUAL(failures, 0);
  secmem_enclave_free(e);
  secmem_set_rekey_interval(500);
}

static pthread_key_t late_key;
static secmem_buf *sentinel;
static _Atomic int late_result = -1;

static void late_destructor(void *arg) {
  /* Runs after the library's own thread-exit destructor. */
  unsigned char out[32];
  atomic_store(&late_result, secmem_enclave_open_into(arg, out, 32));
  secmem_wipe(out, sizeof(out));
}

static void *exiting_thread(void *arg) {
  unsigned char out[32];
  if (secmem_enclave_open_into(arg, out, 32) != 0) { /* creates this thread's scratch */
    return NULL;
  }
  (void)pthread_setspecific(late_key, arg);
  return NULL;
}

static void test_open_from_a_late_thread_destructor(void) {
  unsigned char plain[32] = {4};
  secmem_enclave *e = secmem_enclave_new(plain, 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  CU_ASSERT_EQUAL_FATAL(pthread_key_create(&late_key, late_destructor), 0);
  sentinel = secmem_buf_new(128);
  CU_ASSERT_PTR_NOT_NULL_FATAL(sentinel);
  memset(secmem_buf_data(sentinel), 'A', 128);
  pthread_t t;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, exiting_thread, e), 0);
  pthread_join(t, NULL);
  CU_ASSERT_EQUAL(atomic_load(&late_result), 0);
  const unsigned char *d = secmem_buf_data(sentinel);
  CU_ASSERT_TRUE(d[0] == 'A' && d[127] == 'A'); /* not used as someone's scratch */
  secmem_buf_destroy(sentinel);
  pthread_key_delete(late_key);
  secmem_enclave_free(e);
}

static _Atomic int race_stop;

static void *starter(void *arg) {
  (void)arg;
  while (!atomic_load(&race_stop)) {
    if (secmem_rekey_start(1) != 0) {
      return (void *)1;
    }
  }
  return NULL;
}

static void *stopper(void *arg) {
  (void)arg;
  while (!atomic_load(&race_stop)) {
    secmem_rekey_stop();
  }
  return NULL;
}

static void test_start_stop_race(void) {
  /* stop must never hang on a timer thread that a concurrent start revived. */
  long t0 = status_threads();
  pthread_t a, b;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&a, NULL, starter, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(pthread_create(&b, NULL, stopper, NULL), 0);
  sleep_ms(500);
  atomic_store(&race_stop, 1);
  void *ra = NULL;
  pthread_join(a, &ra);
  pthread_join(b, NULL);
  CU_ASSERT_PTR_NULL(ra);
  secmem_rekey_stop();
  CU_ASSERT_EQUAL(status_threads_settled(t0), t0);
}

static void test_retune_takes_effect_at_once(void) {
  CU_ASSERT_EQUAL(secmem_rekey_start(60000), 0);
  sleep_ms(10);
  uint64_t n0 = secmem_i_coffer_rekeys();
  CU_ASSERT_EQUAL(secmem_rekey_start(1), 0);
  sleep_ms(100);
  CU_ASSERT_TRUE(secmem_i_coffer_rekeys() >= n0 + 20);
  secmem_rekey_stop();
}

int main(void) {
  /* The memory scans here read live secrets as their controls, which
   * memfd_secret pages (the default backing, test_backing's subject) would
   * hide from /proc/self/mem. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"the documented default interval", test_documented_default_interval},
      {"re-key keeps the value, changes both halves", test_rekey_keeps_value_changes_representation},
      {"the key is never stored whole", test_key_never_stored_whole},
      {"no key material left on thread stacks", test_no_key_material_on_stacks},
      {"the scan sees a copied half (control)", test_key_scan_control},
      {"re-key on access after the interval", test_rekey_on_access_after_interval},
      {"a timer thread only when asked", test_timer_thread_only_when_asked},
      {"timer restarts lazily in a forked child", test_timer_restarts_lazily_after_fork},
      {"a forked child rebuilds the same key", test_fork_child_keeps_key},
      {"purge replaces the key", test_purge_replaces_key},
      {"fork wipes other threads' key scratch", test_fork_wipes_other_threads_scratch},
      {"open from a late thread-exit destructor", test_open_from_a_late_thread_destructor},
      {"rekey_start and rekey_stop racing", test_start_stop_race},
      {"a retuned timer takes the new interval at once", test_retune_takes_effect_at_once},
  };
  return harness_main("coffer", tests, sizeof(tests) / sizeof(tests[0]));
}
