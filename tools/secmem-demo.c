/*
 * secmem-demo.c - the quick-start demo: a secret lives in a guarded, locked
 * buffer; the demo shows where it is, proves from /proc/self/smaps that it is
 * locked and excluded from core dumps, freezes it (and lets a child prove a
 * write faults), purges it, and exits cleanly. Exits non-zero if any of that
 * does not hold.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secmem.h"

static int failures;

static void report(bool ok, const char *what) {
  printf("  [%s] %s\n", ok ? " ok " : "FAIL", what);
  if (!ok) {
    failures++;
  }
}

/* Find the mapping holding addr in /proc/self/smaps; print its summary. */
static bool smaps_of(const void *addr, char perms[5], long *locked_kb, bool *dd) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (f == NULL) {
    return false;
  }
  char line[512];
  bool in = false, found = false;
  while (fgets(line, sizeof(line), f) != NULL) {
    unsigned long lo, hi;
    char p[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && line[0] != 'V') {
      if (in) {
        break;
      }
      in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
      if (in) {
        found = true;
        memcpy(perms, p, 5);
        printf("    smaps: %lx-%lx %s\n", lo, hi, p);
      }
    } else if (in && sscanf(line, "Locked: %ld kB", locked_kb) == 1) {
      printf("    smaps: Locked: %ld kB\n", *locked_kb);
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      *dd = strstr(line, " dd") != NULL;
      printf("    smaps: %s", line);
    }
  }
  fclose(f);
  return found;
}

/* Fork a child that writes to p; return the signal that killed it. */
static int child_write_signal(unsigned char *p) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    alarm(5);
    p[0] ^= 1;
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

int main(void) {
  printf("secmem %s demo: one secret in guarded, locked memory\n\n", secmem_version());
  if (secmem_init() != 0) {
    fprintf(stderr, "secmem_init: %s\n", secmem_last_error());
    return 1;
  }

  unsigned char secret[32];
  secmem_scramble(secret, sizeof(secret)); /* stand-in for a key read from somewhere */
  secmem_buf *key = secmem_buf_from_bytes(secret, sizeof(secret));
  if (key == NULL) {
    fprintf(stderr, "secmem_buf_from_bytes: %s\n", secmem_last_error());
    return 1;
  }
  unsigned char zero[32] = {0};
  unsigned char *data = secmem_buf_data(key);
  long page = sysconf(_SC_PAGESIZE);
  printf("1. a 32-byte secret moved into a locked buffer\n");
  printf("    data at %p; its last byte is the last byte of its page: %s\n", (void *)data,
         ((uintptr_t)data + 32) % (uintptr_t)page == 0 ? "yes" : "no");
  report(memcmp(secret, zero, sizeof(secret)) == 0, "the source bytes were wiped");

  char perms[5] = "";
  long locked = 0;
  bool dd = false;
  bool backed = secmem_get_backing() != SECMEM_BACKING_ANON && secmem_secret_backing_available();
  printf("    backing: %s\n", backed ? "memfd_secret (removed from the kernel's direct map; "
                                        "the 's' below is its shared mapping)"
                                      : "anonymous pages");
  printf("2. the data's page, as the kernel sees it\n");
  report(smaps_of(data, perms, &locked, &dd) && locked >= page / 1024, "locked in RAM (never swapped)");
  report(dd, "excluded from core dumps (VmFlags dd)");
  printf("3. the page right after the data\n");
  report(smaps_of(data + 32, perms, &locked, &dd) && strncmp(perms, "---", 3) == 0,
         "is a no-access guard page: one byte of overflow faults");

  printf("4. freeze: the kernel now refuses writes\n");
  report(secmem_buf_freeze(key) == 0, "secmem_buf_freeze");
  report(smaps_of(data, perms, &locked, &dd) && strncmp(perms, "r--", 3) == 0,
         "data page is read-only");
  int sig = child_write_signal(data);
  printf("    a forked child that writes to it dies with signal %d (%s)\n", sig, strsignal(sig));
  report(sig == SIGSEGV, "the write faulted");

  printf("5. purge: every secret wiped and its pages dropped\n");
  secmem_purge();
  report(secmem_buf_get_state(key) == SECMEM_BUF_PURGED, "buffer state is PURGED");
  report(smaps_of(data, perms, &locked, &dd) && strncmp(perms, "---", 3) == 0 && locked == 0,
         "the old address is a no-access reservation, nothing locked");
  secmem_buf_destroy(key);

  printf("6. clean exit\n");
  secmem_stats st;
  report(secmem_get_stats(&st) == 0 && st.buffers_live == 0, "no live buffers remain");
  printf("\n%s\n", failures == 0 ? "demo: all checks held" : "demo: SOME CHECKS FAILED");
  secmem_safe_exit(failures == 0 ? 0 : 1);
}
