/*
 * page.c - owns every conversation with the kernel about memory: mapping
 * pages outside malloc, protection, locking, dump exclusion, and process
 * hardening. It is the only file with per-OS code; porting libsecmem means
 * porting this file (POSIX systems: mmap/mprotect/mlock plus their dump
 * flag, MADV_NOCORE on FreeBSD; Windows: VirtualAlloc/VirtualProtect/
 * VirtualLock and no dump flag).
 */
#if defined(__linux__)
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fcntl.h>
#include <poll.h>

#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#if !defined(SYS_memfd_secret) && (defined(__x86_64__) || defined(__aarch64__) || \
                                    defined(__riscv) || defined(__s390x__))
#define SYS_memfd_secret 447
#endif
#endif

#include "internal.h"

#if defined(_WIN32)
#error "secmem: the Windows page layer (VirtualAlloc/VirtualProtect/VirtualLock) is not written yet"
#endif

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif
#if !defined(MAP_NORESERVE)
#define MAP_NORESERVE 0
#endif

static _Atomic size_t page_size_cache;

size_t secmem_i_page_size(void) {
  size_t ps = atomic_load_explicit(&page_size_cache, memory_order_relaxed);
  if (ps == 0) {
    long v = sysconf(_SC_PAGESIZE);
    ps = v > 0 ? (size_t)v : 4096;
    atomic_store_explicit(&page_size_cache, ps, memory_order_relaxed);
  }
  return ps;
}

void *secmem_i_page_reserve(size_t len) {
  void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *secmem_i_page_map_plain(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static int prot_flags(enum secmem_i_prot prot) {
  switch (prot) {
  case SECMEM_I_PROT_READ:
    return PROT_READ;
  case SECMEM_I_PROT_RW:
    return PROT_READ | PROT_WRITE;
  case SECMEM_I_PROT_NONE:
  default:
    return PROT_NONE;
  }
}

int secmem_i_page_protect(void *p, size_t len, enum secmem_i_prot prot) {
  return mprotect(p, len, prot_flags(prot));
}

/* On Linux mlock goes straight to the kernel: AddressSanitizer replaces the
 * libc wrappers with no-ops, and a sanitizer build must lock what a release
 * build locks or its tests would prove nothing. */
int secmem_i_page_lock(void *p, size_t len) {
#if defined(__linux__)
  return (int)syscall(SYS_mlock, p, len);
#else
  return mlock(p, len);
#endif
}

int secmem_i_page_unlock(void *p, size_t len) {
#if defined(__linux__)
  return (int)syscall(SYS_munlock, p, len);
#else
  return munlock(p, len);
#endif
}

int secmem_i_page_dontdump(void *p, size_t len) {
#if defined(MADV_DONTDUMP)
  return madvise(p, len, MADV_DONTDUMP);
#elif defined(MADV_NOCORE)
  return madvise(p, len, MADV_NOCORE);
#else
  (void)p;
  (void)len;
  errno = ENOSYS;
  return -1;
#endif
}

int secmem_i_page_release(void *p, size_t len) { return munmap(p, len); }

int secmem_i_page_discard(void *p, size_t len) {
  void *q = mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return q == MAP_FAILED ? -1 : 0;
}

size_t secmem_i_page_memlock_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
    return SIZE_MAX;
  }
  return (size_t)rl.rlim_cur;
}

size_t secmem_i_page_phys_mem(void) {
  /* sysconf(_SC_PHYS_PAGES) is a system call in glibc: ask once. */
  static _Atomic size_t phys;
  size_t v = atomic_load_explicit(&phys, memory_order_relaxed);
  if (v == 0) {
    long pages = sysconf(_SC_PHYS_PAGES);
    v = pages > 0 ? (size_t)pages * secmem_i_page_size() : SIZE_MAX;
    atomic_store_explicit(&phys, v, memory_order_relaxed);
  }
  return v;
}

int secmem_i_page_disable_core_dumps(void) {
  struct rlimit rl = {0, 0};
  if (setrlimit(RLIMIT_CORE, &rl) != 0) {
    return -1;
  }
#if defined(__linux__)
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return -1;
  }
#endif
  return 0;
}

void secmem_i_page_write_stderr(const char *s) {
  size_t left = strlen(s);
  while (left > 0) {
    ssize_t n = write(STDERR_FILENO, s, left);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    s += n;
    left -= (size_t)n;
  }
}

/* ---- memfd_secret ---------------------------------------------------------
 * Pages of a memfd_secret file are removed from the kernel's direct map: not
 * even the kernel reads them through /proc/PID/mem or a core dump. They are
 * locked and dump-excluded by the kernel itself, and the mapping must be
 * MAP_SHARED, which a forked child would share with its parent; see
 * secmem_i_page_secret_privatize. */

static int secret_fd(size_t len) {
#if defined(SYS_memfd_secret)
  int fd = (int)syscall(SYS_memfd_secret, O_CLOEXEC);
  if (fd < 0) {
    return -1;
  }
  if (ftruncate(fd, (off_t)len) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
#else
  (void)len;
  errno = ENOSYS;
  return -1;
#endif
}

bool secmem_i_page_secret_available(void) {
  /* 0 unknown, 1 yes, 2 no. Asked once: the answer cannot change. */
  static _Atomic int known;
  int k = atomic_load(&known);
  if (k == 0) {
    int fd = secret_fd(secmem_i_page_size());
    k = fd >= 0 ? 1 : 2;
    if (fd >= 0) {
      close(fd);
    }
    atomic_store(&known, k);
  }
  return k == 1;
}

int secmem_i_page_back_secret(void *p, size_t len) {
  int fd = secret_fd(len);
  if (fd < 0) {
    return -1;
  }
  void *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  int err = errno;
  close(fd);
  if (q == MAP_FAILED) {
    /* A failed MAP_FIXED may already have unmapped the range (the kernel
     * unmaps before it checks the lock limit): reserve it again, so the
     * caller still owns the addresses it asked to back. */
    (void)secmem_i_page_discard(p, len);
    (void)secmem_i_page_dontdump(p, len); /* the new reservation lost the flag */
    errno = err;
    return -1;
  }
  return 0;
}

int secmem_i_page_secret_privatize(void *p, size_t len, enum secmem_i_prot prot) {
  /* In a forked child: copy the shared secret pages into a fresh secret file
   * and map that over the same addresses, so that nothing the child does
   * reaches its parent. The copy never leaves secret memory. */
  int fd = secret_fd(len);
  if (fd < 0) {
    return -1;
  }
  unsigned char *fresh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (fresh == MAP_FAILED) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  int rc = -1;
  if (prot != SECMEM_I_PROT_NONE || mprotect(p, len, PROT_READ) == 0) {
    memcpy(fresh, p, len);
    void *q = mmap(p, len, prot_flags(prot), MAP_SHARED | MAP_FIXED, fd, 0);
    rc = q == MAP_FAILED ? -1 : 0;
  }
  int err = errno;
  munmap(fresh, len);
  close(fd);
  errno = err;
  return rc;
}

/* ---- fork handshake -------------------------------------------------------- */

int secmem_i_page_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

void secmem_i_page_signal_fd(int fd) {
  ssize_t n;
  do {
    n = write(fd, "k", 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
}

int secmem_i_page_wait_fd(int fd, int timeout_ms) {
  struct pollfd pfd = {fd, POLLIN, 0};
  int n;
  do {
    n = poll(&pfd, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  close(fd);
  return n > 0 ? 0 : -1; /* readable (a byte, or the child gone): done */
}

void secmem_i_page_close(int fd) {
  if (fd >= 0) {
    close(fd);
  }
}
