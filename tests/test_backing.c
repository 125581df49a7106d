/*
 * test_backing.c - unit suite for memfd_secret backing: the choice and its
 * errors, what secret pages look like from /proc (shared, locked, dump-
 * excluded, unreadable through /proc/self/mem), that every layer (buffers,
 * heap arenas, the enclave key) uses it, and that a forked child gets its
 * own copy: nothing the child writes, destroys or purges reaches the parent.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static bool available;

static void test_choice_and_errors(void) {
  CU_ASSERT_EQUAL(secmem_get_backing(), SECMEM_BACKING_AUTO); /* the default */
  errno = 0;
  CU_ASSERT_EQUAL(secmem_set_backing((secmem_backing)9), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  CU_ASSERT_EQUAL(secmem_secret_backing_available(), available ? 1 : 0);
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_AUTO), 0);
  CU_ASSERT_EQUAL(secmem_get_backing(), SECMEM_BACKING_AUTO);
  if (!available) {
    CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_SECRET), -1);
    CU_ASSERT_EQUAL(errno, ENOSYS);
    CU_ASSERT_TRUE(strstr(secmem_last_error(), "memfd_secret") != NULL);
  }
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
}

static void test_anon_control(void) {
  /* With anonymous pages the scan reads a live secret (the control for the
   * secret-backed tests below). */
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
  secmem_buf *b = secmem_buf_new(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  gen_fill(secmem_buf_data(b), 32, 60);
  CU_ASSERT_EQUAL(scan_self_for_generated(60, 32), 1);
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(secmem_buf_data(b), &s));
  CU_ASSERT_TRUE(s.lockflag && s.dontdump);
  secmem_buf_destroy(b);
}

static void test_secret_buffers(void) {
  if (!available) {
    return;
  }
  CU_ASSERT_EQUAL_FATAL(secmem_set_backing(SECMEM_BACKING_SECRET), 0);
  secmem_stats s0, s1;
  CU_ASSERT_EQUAL(secmem_get_stats(&s0), 0);
  secmem_buf *b = secmem_buf_new(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  unsigned char *d = secmem_buf_data(b);
  gen_fill(d, 32, 61);
  CU_ASSERT_EQUAL(secmem_get_stats(&s1), 0);
  CU_ASSERT_EQUAL(s1.bytes_secret, s0.bytes_secret + secmem_i_page_size());
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(d, &s));
  CU_ASSERT_TRUE(s.lockflag && s.dontdump && s.readable && s.writable);
  /* Not even /proc/self/mem can read it. */
  CU_ASSERT_EQUAL(scan_self_for_generated(61, 32), 0);
  CU_ASSERT_EQUAL(d[31], gen_byte(61, 31));
  /* Protection states work on secret pages, and the guard is still there. */
  CU_ASSERT_EQUAL(secmem_buf_freeze(b), 0);
  CU_ASSERT_TRUE(smaps_lookup(d, &s));
  CU_ASSERT_TRUE(s.readable && !s.writable);
  CU_ASSERT_EQUAL(secmem_buf_noaccess(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_check(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_melt(b), 0);
  CU_ASSERT_TRUE(smaps_lookup(d + 32, &s));
  CU_ASSERT_FALSE(s.readable || s.writable);
  secmem_buf_destroy(b);
  /* A reused secret region is wiped. */
  b = secmem_buf_new(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  unsigned char zero[32] = {0};
  CU_ASSERT_EQUAL(memcmp(secmem_buf_data(b), zero, 32), 0);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
}

static void test_backing_is_not_mixed_by_the_cache(void) {
  if (!available) {
    return;
  }
  /* A region cached under one backing is not handed out under the other. */
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
  secmem_buf_destroy(secmem_buf_new(100));
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_SECRET), 0);
  secmem_buf *b = secmem_buf_new(100);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  gen_fill(secmem_buf_data(b), 32, 62);
  CU_ASSERT_EQUAL(scan_self_for_generated(62, 32), 0); /* secret, not the cached anon */
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
  b = secmem_buf_new(100);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  gen_fill(secmem_buf_data(b), 32, 62);
  CU_ASSERT_EQUAL(scan_self_for_generated(62, 32), 1); /* anonymous again */
  secmem_buf_destroy(b);
}

static secmem_buf *shared_ro, *shared_rw, *shared_na;
static unsigned char *heap_slot;
static secmem_enclave *sealed;

static void child_cannot_reach_parent(void) {
  /* The child sees the parent's secrets... */
  if (((unsigned char *)secmem_buf_data(shared_rw))[0] != gen_byte(63, 0) ||
      ((unsigned char *)secmem_buf_data(shared_ro))[0] != gen_byte(64, 0) ||
      heap_slot[0] != gen_byte(65, 0)) {
    _exit(10);
  }
  secmem_buf *o = secmem_enclave_open(sealed);
  if (o == NULL || ((unsigned char *)secmem_buf_data(o))[5] != gen_byte(66, 5)) {
    _exit(11);
  }
  secmem_buf_destroy(o);
  /* ...in its own secret pages... */
  struct smaps_info s;
  if (!smaps_lookup(secmem_buf_data(shared_rw), &s) || !s.lockflag || !s.dontdump) {
    _exit(12);
  }
  if (secmem_buf_melt(shared_na) != 0 ||
      ((unsigned char *)secmem_buf_data(shared_na))[0] != gen_byte(67, 0)) {
    _exit(13);
  }
  /* ...and everything it does stays in the child. */
  memset(secmem_buf_data(shared_rw), 0, 32);
  memset(heap_slot, 0, 32);
  if (secmem_rekey() != 0) {
    _exit(14);
  }
  secmem_buf_destroy(shared_ro);
  secmem_purge();
  _exit(0);
}

static void test_fork_privatises_secret_pages(void) {
  if (!available) {
    return;
  }
  CU_ASSERT_EQUAL_FATAL(secmem_set_backing(SECMEM_BACKING_SECRET), 0);
  secmem_stats s0;
  CU_ASSERT_EQUAL(secmem_get_stats(&s0), 0);
  shared_rw = secmem_buf_new(32);
  shared_ro = secmem_buf_new(32);
  shared_na = secmem_buf_new(32);
  heap_slot = secmem_malloc(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(shared_rw);
  CU_ASSERT_PTR_NOT_NULL_FATAL(shared_ro);
  CU_ASSERT_PTR_NOT_NULL_FATAL(shared_na);
  CU_ASSERT_PTR_NOT_NULL_FATAL(heap_slot);
  gen_fill(secmem_buf_data(shared_rw), 32, 63);
  gen_fill(secmem_buf_data(shared_ro), 32, 64);
  gen_fill(heap_slot, 32, 65);
  gen_fill(secmem_buf_data(shared_na), 32, 67);
  CU_ASSERT_EQUAL(secmem_buf_freeze(shared_ro), 0);
  CU_ASSERT_EQUAL(secmem_buf_noaccess(shared_na), 0);
  unsigned char plain[32];
  gen_fill(plain, 32, 66);
  sealed = secmem_enclave_new(plain, 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(sealed);
  /* The heap arena is secret-backed too (the heap was first used here). */
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(heap_slot, &s));
  CU_ASSERT_EQUAL(scan_self_for_generated(65, 32), 0);

  struct death_result r;
  death_run(child_cannot_reach_parent, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);

  /* The parent's secrets, heap and key are untouched by the child. */
  for (size_t i = 0; i < 32; i++) {
    CU_ASSERT_EQUAL(((unsigned char *)secmem_buf_data(shared_rw))[i], gen_byte(63, i));
    CU_ASSERT_EQUAL(((unsigned char *)secmem_buf_data(shared_ro))[i], gen_byte(64, i));
    CU_ASSERT_EQUAL(heap_slot[i], gen_byte(65, i));
  }
  secmem_buf *o = secmem_enclave_open(sealed);
  CU_ASSERT_PTR_NOT_NULL(o);
  CU_ASSERT_EQUAL(secmem_buf_check(shared_ro), 0);
  secmem_buf_destroy(o);
  secmem_buf_destroy(shared_rw);
  secmem_buf_destroy(shared_ro);
  secmem_buf_destroy(shared_na);
  secmem_free(heap_slot);
  secmem_enclave_free(sealed);
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
}

static void test_control_raw_fork_shares(void) {
  /* Control: what the fork handler prevents. A raw fork(2), which skips
   * pthread_atfork handlers, leaves the child sharing the parent's secret
   * pages: its write shows up in the parent. */
  if (!available) {
    return;
  }
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_SECRET), 0);
  secmem_buf *b = secmem_buf_new(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  gen_fill(secmem_buf_data(b), 32, 68);
  CU_ASSERT_NOT_EQUAL(gen_byte(68, 0), 0); /* else the check below proves nothing */
  fflush(NULL);
  long pid = syscall(SYS_fork);
  if (pid == 0) {
    memset(secmem_buf_data(b), 0, 32);
    syscall(SYS_exit_group, 0);
  }
  CU_ASSERT_TRUE(pid > 0);
  waitpid((pid_t)pid, NULL, 0);
  CU_ASSERT_EQUAL(((unsigned char *)secmem_buf_data(b))[0], 0);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
}

static void test_purge_drops_secret_pages(void) {
  if (!available) {
    return;
  }
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_SECRET), 0);
  secmem_buf *b = secmem_buf_random(5000);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  secmem_stats s0, s1;
  CU_ASSERT_EQUAL(secmem_get_stats(&s0), 0);
  secmem_purge();
  CU_ASSERT_EQUAL(secmem_get_stats(&s1), 0);
  CU_ASSERT_TRUE(s0.bytes_secret - s1.bytes_secret >= 2 * secmem_i_page_size());
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(secmem_buf_data(b), &s));
  CU_ASSERT_FALSE(s.readable || s.lockflag);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_set_backing(SECMEM_BACKING_ANON), 0);
}

static void child_secret_memlock(void) {
  /* memfd_secret pages count against RLIMIT_MEMLOCK like mlock'ed ones. */
  if (drop_privileges() != 0) {
    _exit(20);
  }
  /* 64 KiB more than the secrets this child inherited from the suite. */
  size_t limit = (size_t)status_vmlck_kb() * 1024 + 64 * 1024;
  struct rlimit rl = {limit, limit};
  if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
    _exit(21);
  }
  fprintf(stderr, "limit %zu KiB\n", limit / 1024);
  if (secmem_set_backing(SECMEM_BACKING_SECRET) != 0) {
    _exit(22);
  }
  secmem_buf *small = secmem_buf_new(100);
  if (small == NULL) {
    _exit(23);
  }
  errno = 0;
  if (secmem_buf_new(256 * 1024) != NULL || errno != ENOMEM) {
    _exit(24);
  }
  fprintf(stderr, "secret: %s\n", secmem_last_error());
  /* AUTO falls back to anonymous pages, which cannot be locked either. */
  if (secmem_set_backing(SECMEM_BACKING_AUTO) != 0) {
    _exit(25);
  }
  errno = 0;
  if (secmem_buf_new(256 * 1024) != NULL || errno != ENOMEM) {
    _exit(26);
  }
  /* Best effort: anonymous and unlocked, counted. */
  if (secmem_set_mlock_policy(SECMEM_MLOCK_BEST_EFFORT) != 0) {
    _exit(27);
  }
  secmem_buf *big = secmem_buf_new(256 * 1024);
  secmem_stats st;
  if (big == NULL || secmem_get_stats(&st) != 0 || st.bytes_unlocked < 256 * 1024) {
    _exit(28); /* a failed secret mapping must leave the range usable for the fallback */
  }
  if (secmem_buf_check(small) != 0) {
    _exit(29);
  }
  /* The fallback pages are still excluded from core dumps. */
  struct smaps_info si;
  if (!smaps_lookup(secmem_buf_data(big), &si) || !si.dontdump) {
    _exit(30);
  }
  _exit(0);
}

static void test_secret_pages_obey_memlock(void) {
  if (!available) {
    return;
  }
  struct death_result r;
  death_run(child_secret_memlock, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  if (r.status != 0) {
    fprintf(stderr, "\n  child status %d: %s\n", r.status, r.stderr);
  }
  CU_ASSERT_TRUE(stderr_has(&r, "secret: mlock failed"));
  size_t kib = 0;
  CU_ASSERT_EQUAL(sscanf(r.stderr, "limit %zu KiB", &kib), 1);
  char want[64];
  snprintf(want, sizeof(want), "RLIMIT_MEMLOCK is %zu KiB", kib);
  CU_ASSERT_TRUE(stderr_has(&r, want));
}

/* Leave exactly `spare` free descriptor numbers below RLIMIT_NOFILE, whatever
 * the process inherited (descriptors at or above the limit stay open and do not
 * count; gaps below it do): fill every free number below a limit a little
 * above the lowest free number, then give back `spare` of the fillers. */
static int leave_spare_fds(int spare) {
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int lowest_free = null < 0 ? -1 : fcntl(null, F_DUPFD_CLOEXEC, 0);
  if (lowest_free < 0) {
    return -1;
  }
  close(lowest_free);
  struct rlimit rl = {(rlim_t)lowest_free + 64, (rlim_t)lowest_free + 64};
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return -1;
  }
  int fillers[128];
  int n = 0;
  for (int fd; n < 128 && (fd = fcntl(null, F_DUPFD_CLOEXEC, 0)) >= 0;) {
    fillers[n++] = fd;
  }
  if (errno != EMFILE || n < spare) {
    return -1;
  }
  for (int i = 0; i < spare; i++) {
    close(fillers[--n]);
  }
  return 0;
}

/* In a scenario process: secret key and heap, then fork with only `spare`
 * descriptors left. The grandchild must abort with the message (it cannot
 * keep the parent's shared pages), and the scenario process must go on. */
static int spare_fds;

static void scenario_fork_without_fds(void) {
  if (secmem_set_backing(SECMEM_BACKING_SECRET) != 0) {
    _exit(20);
  }
  unsigned char plain[32] = {5};
  secmem_enclave *e = secmem_enclave_new(plain, 32);
  unsigned char *slot = secmem_malloc(32);
  if (e == NULL || slot == NULL) {
    _exit(21);
  }
  int errp[2];
  if (pipe(errp) != 0) {
    _exit(23);
  }
  if (leave_spare_fds(spare_fds) != 0) {
    _exit(22);
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(errp[1], STDERR_FILENO);
    /* Only reached if the library let the child keep going: touch it all. */
    if (secmem_enclave_open_into(e, slot, 32) != 0) {
      _exit(2);
    }
    _exit(1);
  }
  close(errp[1]);
  char msg[512] = "";
  ssize_t got = read(errp[0], msg, sizeof(msg) - 1);
  msg[got > 0 ? got : 0] = '\0';
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT) {
    fprintf(stderr, "grandchild: %s %d; %s", WIFSIGNALED(st) ? "signal" : "status",
            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), msg);
    _exit(24);
  }
  fprintf(stderr, "%s", msg);
  /* The parent is untouched and works. */
  unsigned char out[32];
  if (secmem_enclave_open_into(e, out, 32) != 0 || out[0] != 5) {
    _exit(25);
  }
  _exit(0);
}

static void test_fork_without_copy_aborts_child(void) {
  if (!available) {
    return;
  }
  /* 2 spare: the handshake pipe fits, the child's memfd_secret copy does not. */
  spare_fds = 2;
  struct death_result r;
  death_run(scenario_fork_without_fds, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  CU_ASSERT_TRUE(stderr_has(&r, "secmem: fork: the child could not get its own copy of the "
                                "library's secret memory (memfd_secret copy failed)"));
  /* 0 spare: not even the handshake pipe; the child must not copy unsynchronised. */
  spare_fds = 0;
  death_run(scenario_fork_without_fds, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  CU_ASSERT_TRUE(stderr_has(&r, "(Too many open files)"));
}

int main(void) {
  available = secmem_secret_backing_available() == 1;
  if (!available) {
    fprintf(stderr, "memfd_secret is not available here: secret-backed cases check the "
                    "refusal only\n");
  }
  static const struct harness_test tests[] = {
      {"backing choice and errors", test_choice_and_errors},
      {"anonymous pages: the scan sees a live secret", test_anon_control},
      {"secret buffers: locked, dump-excluded, unreadable via /proc", test_secret_buffers},
      {"the reuse cache keeps backings apart", test_backing_is_not_mixed_by_the_cache},
      {"a forked child gets its own copy of secret pages", test_fork_privatises_secret_pages},
      {"control: a raw fork(2) would share them", test_control_raw_fork_shares},
      {"purge drops secret pages", test_purge_drops_secret_pages},
      {"secret pages obey RLIMIT_MEMLOCK; AUTO falls back", test_secret_pages_obey_memlock},
      {"a child that cannot copy secret memory aborts; the parent goes on",
       test_fork_without_copy_aborts_child},
  };
  return harness_main("backing", tests, sizeof(tests) / sizeof(tests[0]));
}
