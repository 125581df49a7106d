/*
 * test_fork.c - the pre-forking server case: a process seals secrets, starts
 * the re-key timer, and forks 4 children; then parent and children alike
 * open enclaves, re-key and (children only) purge, concurrently, for a few
 * seconds. Every open must return the right bytes in every process, a
 * child's purge must leave the parent's enclaves openable, and every process
 * keeps its buffers locked. Run with anonymous and with memfd_secret pages.
 * SECMEM_TEST_SECONDS sets the duration per scenario (default 2).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "secmem.h"

#define SECRETS 64
#define CHILDREN 4

static secmem_enclave *sealed[SECRETS];
static secmem_buf *held;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t secret_len(size_t i) { return 16 + (i * 37) % 300; }

static int seal_all(unsigned base) {
  for (size_t i = 0; i < SECRETS; i++) {
    unsigned char tmp[320];
    gen_fill(tmp, secret_len(i), base + (unsigned)i);
    sealed[i] = secmem_enclave_new(tmp, secret_len(i));
    if (sealed[i] == NULL) {
      return -1;
    }
  }
  return 0;
}

/* Open enclave i and compare with the generator. */
static bool open_ok(size_t i, unsigned base) {
  secmem_buf *b = secmem_enclave_open(sealed[i]);
  if (b == NULL) {
    return false;
  }
  const unsigned char *d = secmem_buf_data(b);
  bool ok = secmem_buf_len(b) == secret_len(i);
  for (size_t k = 0; ok && k < secret_len(i); k++) {
    ok = d[k] == gen_byte(base + (unsigned)i, k);
  }
  secmem_buf_destroy(b);
  return ok;
}

static bool still_locked(void) {
  struct smaps_info s;
  return smaps_lookup(secmem_buf_data(held), &s) && s.lockflag && s.dontdump &&
         status_vmlck_kb() > 0 && secmem_buf_check(held) == 0;
}

/* The loop every process runs. Returns an exit status: 0 when all held. */
static int run(bool child, double seconds) {
  double start = now(), end = start + seconds;
  unsigned base = 1000;
  bool purged = false;
  unsigned rnd = (unsigned)getpid();
  long opens = 0;
  while (now() < end) {
    rnd = rnd * 1103515245u + 12345u;
    size_t i = (rnd >> 8) % SECRETS;
    if (!open_ok(i, base)) {
      fprintf(stderr, "%s %d: open %zu failed after %ld opens: %s\n", child ? "child" : "parent",
              (int)getpid(), i, opens, secmem_last_error());
      return 20;
    }
    opens++;
    if (opens % 50 == 0 && secmem_rekey() != 0) {
      return 21;
    }
    if (opens % 200 == 0 && !still_locked()) {
      return 22;
    }
    if (child && !purged && now() > start + seconds / 2) {
      secmem_purge();
      purged = true;
      errno = 0;
      if (secmem_enclave_open(sealed[0]) != NULL || errno != EBADMSG) {
        return 23; /* the purge must have made the old enclaves unopenable */
      }
      for (size_t k = 0; k < SECRETS; k++) {
        secmem_enclave_free(sealed[k]);
      }
      base = 5000 + (unsigned)getpid() % 1000 * 100;
      if (seal_all(base) != 0) {
        return 24;
      }
      held = secmem_buf_random(16 * 1024);
      if (held == NULL) {
        return 25;
      }
    }
  }
  if (child && !purged) {
    return 26;
  }
  return opens > 100 ? 0 : 27;
}

static double seconds(void) {
  const char *env = getenv("SECMEM_TEST_SECONDS");
  return env != NULL ? atof(env) : 2.0;
}

/* The whole scenario, in its own process so its backing choice and key are
 * fresh. Exit status 0 when everything held. */
static void scenario(secmem_backing backing) {
  alarm(60);
  if (secmem_set_backing(backing) != 0) {
    _exit(2);
  }
  if (seal_all(1000) != 0) {
    _exit(3);
  }
  held = secmem_buf_random(16 * 1024);
  if (held == NULL || secmem_rekey_start(1) != 0) {
    _exit(4);
  }
  pid_t kids[CHILDREN];
  for (int c = 0; c < CHILDREN; c++) {
    kids[c] = fork();
    if (kids[c] == 0) {
      _exit(run(true, seconds()));
    }
    if (kids[c] < 0) {
      _exit(5);
    }
  }
  int status = run(false, seconds() + 0.3); /* outlive the children's purges */
  for (int c = 0; c < CHILDREN; c++) {
    int st = 0;
    waitpid(kids[c], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "child %d ended with %s %d\n", c, WIFEXITED(st) ? "status" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
      status = status != 0 ? status : 30 + c;
    }
  }
  /* After all the children's purges, the parent's enclaves still open. */
  for (size_t i = 0; status == 0 && i < SECRETS; i++) {
    if (!open_ok(i, 1000)) {
      status = 40;
    }
  }
  secmem_rekey_stop();
  _exit(status);
}

static void run_scenario(secmem_backing backing) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    scenario(backing);
  }
  int st = 0;
  CU_ASSERT_EQUAL_FATAL(waitpid(pid, &st, 0), pid);
  CU_ASSERT_TRUE(WIFEXITED(st));
  CU_ASSERT_EQUAL(WEXITSTATUS(st), 0);
}

static void test_anon(void) { run_scenario(SECMEM_BACKING_ANON); }

static void test_secret(void) {
  if (secmem_secret_backing_available() != 1) {
    fprintf(stderr, "\n  memfd_secret not offered by this kernel: scenario not applicable\n");
    return;
  }
  run_scenario(SECMEM_BACKING_SECRET);
}

int main(void) {
  static const struct harness_test tests[] = {
      {"pre-forking server, anonymous pages", test_anon},
      {"pre-forking server, memfd_secret pages", test_secret},
  };
  return harness_main("fork", tests, sizeof(tests) / sizeof(tests[0]));
}
