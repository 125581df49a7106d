/*
 * harness.c - owns the shared test helpers declared in harness.h.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

/* AddressSanitizer's, when it is linked in (debugging scan hits). */
void __asan_describe_address(void *addr) __attribute__((weak));

int harness_main(const char *suite, const struct harness_test *tests, size_t n) {
  if (CU_initialize_registry() != CUE_SUCCESS) {
    return 2;
  }
  CU_pSuite s = CU_add_suite(suite, NULL, NULL);
  for (size_t i = 0; i < n; i++) {
    CU_add_test(s, tests[i].name, tests[i].fn);
  }
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  unsigned run = CU_get_number_of_tests_run();
  CU_cleanup_registry();
  if (run != n) {
    fprintf(stderr, "harness: %u of %zu tests ran\n", run, n);
    return 1;
  }
  return failed == 0 ? 0 : 1;
}

void death_run(void (*fn)(void), struct death_result *out) {
  memset(out, 0, sizeof(*out));
  int fds[2];
  if (pipe(fds) != 0) {
    out->status = -1;
    return;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    alarm(10);
    fn();
    _exit(0);
  }
  close(fds[1]);
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fds[0], out->stderr + got, sizeof(out->stderr) - 1 - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      break;
    }
    got += (size_t)r;
    if (got == sizeof(out->stderr) - 1) {
      break;
    }
  }
  out->stderr[got] = '\0';
  close(fds[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(st)) {
    out->signalled = true;
    out->sig = WTERMSIG(st);
  } else {
    out->status = WEXITSTATUS(st);
  }
}

bool died_by(const struct death_result *r, int sig) {
  if (!r->signalled || r->sig != sig) {
    fprintf(stderr, "\n  expected signal %d, child %s %d; stderr: %s\n", sig,
            r->signalled ? "died by signal" : "exited with", r->signalled ? r->sig : r->status,
            r->stderr);
    return false;
  }
  return true;
}

bool stderr_has(const struct death_result *r, const char *text) {
  if (strstr(r->stderr, text) == NULL) {
    fprintf(stderr, "\n  expected stderr to contain \"%s\", got: %s\n", text, r->stderr);
    return false;
  }
  return true;
}

bool smaps_lookup(const void *addr, struct smaps_info *out) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (f == NULL) {
    return false;
  }
  char line[512];
  bool in = false, found = false;
  uintptr_t a = (uintptr_t)addr;
  memset(out, 0, sizeof(*out));
  while (fgets(line, sizeof(line), f) != NULL) {
    unsigned long lo, hi;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 &&
        (isdigit((unsigned char)line[0]) || (line[0] >= 'a' && line[0] <= 'f'))) {
      if (in) {
        break;
      }
      in = a >= lo && a < hi;
      if (in) {
        found = true;
        out->readable = perms[0] == 'r';
        out->writable = perms[1] == 'w';
      }
      continue;
    }
    if (!in) {
      continue;
    }
    size_t kb;
    if (sscanf(line, "Size: %zu kB", &kb) == 1) {
      out->size_kb = kb;
    } else if (sscanf(line, "Locked: %zu kB", &kb) == 1) {
      out->locked_kb = kb;
    } else if (strncmp(line, "VmFlags:", 8) == 0) {
      out->dontdump = strstr(line, " dd") != NULL;
      out->lockflag = strstr(line, " lo") != NULL;
    }
  }
  fclose(f);
  return found;
}

long status_vmlck_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) {
    return -1;
  }
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "VmLck: %ld kB", &kb) == 1) {
      break;
    }
  }
  fclose(f);
  return kb;
}

long status_threads(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) {
    return -1;
  }
  char line[256];
  long n = -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "Threads: %ld", &n) == 1) {
      break;
    }
  }
  fclose(f);
  return n;
}

long status_threads_settled(long expected) {
  /* A joined thread leaves the count a moment after the join returns. */
  long n = status_threads();
  for (int i = 0; i < 1000 && n != expected; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    n = status_threads();
  }
  return n;
}

unsigned char gen_byte(unsigned seed, size_t i) {
  uint32_t x = (uint32_t)(seed * 2654435761u) ^ (uint32_t)(i * 40503u + 0x9e37u);
  x ^= x >> 13;
  x *= 0x5bd1e995u;
  x ^= x >> 15;
  return (unsigned char)(x ^ (x >> 8));
}

void gen_fill(unsigned char *dst, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; i++) {
    dst[i] = gen_byte(seed, i);
  }
}

#define MAX_HIDDEN 64
static struct {
  uintptr_t lo, hi;
} hidden[MAX_HIDDEN];
static size_t nhidden;

void *harness_hidden_alloc(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || nhidden == MAX_HIDDEN) {
    abort();
  }
  hidden[nhidden].lo = (uintptr_t)p;
  hidden[nhidden].hi = (uintptr_t)p + len;
  nhidden++;
  return p;
}

static bool is_hidden(unsigned long lo, unsigned long hi) {
  for (size_t i = 0; i < nhidden; i++) {
    if (lo < hidden[i].hi && hi > hidden[i].lo) {
      return true;
    }
  }
  return false;
}

/* needle != NULL: look for its bytes; else for gen_byte(seed, 0..len-1). */
static size_t scan_pid_matching(pid_t pid, const unsigned char *needle, unsigned seed, size_t len) {
  const size_t chunk = 1 << 20;
  unsigned char *buf = mmap(NULL, chunk + len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED || len == 0) {
    return (size_t)-1;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
  int mem = open(path, O_RDONLY);
  snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
  FILE *maps = fopen(path, "r");
  size_t hits = 0;
  unsigned char first = needle != NULL ? needle[0] : gen_byte(seed, 0);
  char line[512];
  bool self = pid == getpid();
  while (maps != NULL && mem >= 0 && fgets(line, sizeof(line), maps) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) {
      continue;
    }
    /* Sanitizer shadow maps span terabytes of untouched pages: skip any
     * mapping over 4 GiB (no secret under test is that large). */
    /* ThreadSanitizer reserves tens of GiB as no-access mappings below that
     * size: skip no-access mappings over 256 MiB too (ours are far smaller,
     * and no-access ones are still read: purged and frozen-out secrets). */
    char perms[5] = "";
    unsigned long lo2, hi2;
    (void)sscanf(line, "%lx-%lx %4s", &lo2, &hi2, perms);
    if (hi - lo > (4ul << 30) || (strncmp(perms, "---", 3) == 0 && hi - lo > (256ul << 20)) ||
        strstr(line, "[vvar]") != NULL ||
        strstr(line, "[vsyscall]") != NULL ||
        (self && lo < (uintptr_t)buf + chunk + len && hi > (uintptr_t)buf) ||
        (self && is_hidden(lo, hi))) {
      continue;
    }
    for (unsigned long off = lo; off < hi; off += chunk) {
      size_t want = hi - off < chunk + len ? hi - off : chunk + len;
      ssize_t got = pread(mem, buf, want, (off_t)off);
      if (got <= 0) {
        continue;
      }
      size_t limit = (size_t)got < len ? 0 : (size_t)got - len + 1;
      if (limit > chunk) {
        limit = chunk;
      }
      for (size_t j = 0; j < limit; j++) {
        if (buf[j] != first) {
          continue;
        }
        size_t k = 1;
        if (needle != NULL) {
          while (k < len && buf[j + k] == needle[k]) {
            k++;
          }
        } else {
          while (k < len && buf[j + k] == gen_byte(seed, k)) {
            k++;
          }
        }
        if (k == len) {
          hits++;
          if (getenv("HARNESS_SCAN_DEBUG") != NULL) {
            fprintf(stderr, "scan hit at %#lx in %s", off + j, line);
            if (self && __asan_describe_address != NULL) {
              __asan_describe_address((void *)(off + j)); /* who allocated/freed it */
            }
          }
        }
      }
    }
  }
  if (maps != NULL) {
    fclose(maps);
  }
  if (mem >= 0) {
    close(mem);
  }
  explicit_bzero(buf, chunk + len);
  munmap(buf, chunk + len);
  return hits;
}

static size_t scan_pid(pid_t pid, unsigned seed, size_t len) {
  return scan_pid_matching(pid, NULL, seed, len);
}

size_t scan_self_for_bytes(const void *needle, size_t len) {
  return scan_pid_matching(getpid(), needle, 0, len);
}

size_t scan_self_for_generated(unsigned seed, size_t len) { return scan_pid(getpid(), seed, len); }

size_t scan_pid_for_generated(pid_t pid, unsigned seed, size_t len) {
  return scan_pid(pid, seed, len);
}

static int ready_fd = -1;
static volatile int leak_check_off;

/* LeakSanitizer cannot run under ptrace; this documented sanitizer hook turns
 * its exit-time check off in traced children only (the name is LSan's). */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return leak_check_off; }

void harness_ready(void) {
  if (ready_fd >= 0) {
    (void)!write(ready_fd, "r", 1);
    close(ready_fd);
    ready_fd = -1;
  }
}

static size_t drain(int fd, char *out, size_t cap) {
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fd, out + got, cap - 1 - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0 || (got += (size_t)r) == cap - 1) {
      break;
    }
  }
  out[got] = '\0';
  return got;
}

void traced_run(void (*child_fn)(void), int send_sig, unsigned seed, size_t len,
                struct traced_result *out) {
  memset(out, 0, sizeof(*out));
  out->status = -1;
  int errp[2], readyp[2];
  if (pipe(errp) != 0 || pipe(readyp) != 0) {
    return;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(errp[0]);
    close(readyp[0]);
    dup2(errp[1], STDERR_FILENO);
    ready_fd = readyp[1];
    leak_check_off = 1;
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    raise(SIGSTOP);
    alarm(10);
    child_fn();
    exit(0);
  }
  close(errp[1]);
  close(readyp[1]);
  int st;
  waitpid(pid, &st, 0); /* the child's SIGSTOP */
  ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)(PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL));
  ptrace(PTRACE_CONT, pid, NULL, NULL);
  if (send_sig != 0) {
    char c;
    if (read(readyp[0], &c, 1) == 1) {
      kill(pid, send_sig);
    }
  }
  close(readyp[0]);
  for (;;) {
    if (waitpid(pid, &st, 0) < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    if (WIFEXITED(st)) {
      out->status = WEXITSTATUS(st);
      break;
    }
    if (WIFSIGNALED(st)) {
      out->signalled = true;
      out->sig = WTERMSIG(st);
      break;
    }
    if (WIFSTOPPED(st)) {
      if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
        out->hits_at_exit = scan_pid(pid, seed, len);
        ptrace(PTRACE_CONT, pid, NULL, NULL);
      } else {
        ptrace(PTRACE_CONT, pid, NULL, (void *)(long)WSTOPSIG(st)); /* deliver it */
      }
    }
  }
  drain(errp[0], out->stderr, sizeof(out->stderr));
  close(errp[0]);
}

int drop_privileges(void) {
  if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
    return -1;
  }
  return 0;
}
