/*
 * registry.c - owns the library's lifecycle: initialisation, purge, safe
 * exit and panic, signal catching, core-dump hardening, and the fork and
 * exit handlers (the C stand-in for memguard's finalizers). It sits on top
 * of every other layer and drives each through its internal interface.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
static int g_init_result = -1;

/* Locks are taken in the order the layers nest (coffer, scratch, heap,
 * guarded) and
 * released in reverse. The guarded layer's parent handler waits for the
 * child to have made its memfd_secret pages its own. */
static void fork_prepare(void) {
  secmem_i_coffer_fork_prepare();
  secmem_i_scratch_fork_prepare();
  secmem_i_heap_fork_prepare();
  secmem_i_guarded_fork_prepare();
}

static void fork_parent(void) {
  secmem_i_guarded_fork_parent();
  secmem_i_heap_fork_parent();
  secmem_i_scratch_fork_parent();
  secmem_i_coffer_fork_parent();
}

static void fork_child(void) {
  secmem_i_guarded_fork_child();
  secmem_i_heap_fork_child();
  secmem_i_scratch_fork_child();
  secmem_i_coffer_fork_child();
}

static void at_exit(void) {
  const char *debug = getenv("SECMEM_DEBUG");
  if (debug != NULL && strstr(debug, "leaks") != NULL) {
    size_t n = secmem_i_guarded_report_leaks();
    if (n > 0) {
      char line[96];
      snprintf(line, sizeof(line), "secmem: %zu buffer%s leaked; wiped at exit\n", n,
               n == 1 ? "" : "s");
      secmem_i_page_write_stderr(line);
    }
  }
  /* Secrets still alive at exit are wiped; handles and heap pointers stay
   * valid so that destructors running after this one may still free them. */
  secmem_purge();
}

static void init_once(void) {
  if (sodium_init() < 0) {
    return;
  }
  secmem_i_coffer_init();
  if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0 || atexit(at_exit) != 0) {
    return;
  }
  g_init_result = 0;
}

int secmem_init(void) {
  pthread_once(&g_init_once, init_once);
  if (g_init_result != 0) {
    return secmem_i_fail(EAGAIN, "secmem_init: libsodium or the fork/exit handlers could not be "
                                 "initialised");
  }
  return 0;
}

int secmem_i_ensure_init(void) { return secmem_init(); }

const char *secmem_version(void) { return SECMEM_VERSION_STRING; }

int secmem_set_mlock_policy(secmem_mlock_policy policy) {
  if (policy != SECMEM_MLOCK_REQUIRED && policy != SECMEM_MLOCK_BEST_EFFORT) {
    return secmem_i_fail(EINVAL, "secmem_set_mlock_policy: unknown policy %d", (int)policy);
  }
  secmem_i_guarded_policy_set(policy);
  return 0;
}

secmem_mlock_policy secmem_get_mlock_policy(void) {
  return (secmem_mlock_policy)secmem_i_guarded_policy_get();
}

int secmem_get_stats(secmem_stats *out_stats) {
  if (out_stats == NULL) {
    return secmem_i_fail(EINVAL, "secmem_get_stats: out_stats is NULL");
  }
  memset(out_stats, 0, sizeof(*out_stats));
  secmem_i_guarded_stats(out_stats);
  out_stats->rekeys = secmem_i_coffer_rekeys();
  secmem_i_enclave_counts(&out_stats->opens, &out_stats->open_failures);
  return 0;
}

int secmem_set_backing(secmem_backing backing) {
  if (backing != SECMEM_BACKING_ANON && backing != SECMEM_BACKING_SECRET &&
      backing != SECMEM_BACKING_AUTO) {
    return secmem_i_fail(EINVAL, "secmem_set_backing: unknown backing %d", (int)backing);
  }
  if (backing == SECMEM_BACKING_SECRET && !secmem_i_page_secret_available()) {
    return secmem_i_fail(ENOSYS, "secmem_set_backing: this kernel does not offer memfd_secret "
                                 "(Linux >= 5.14 with CONFIG_SECRETMEM; before 6.5 also the "
                                 "secretmem.enable=1 boot option)");
  }
  secmem_i_guarded_backing_set(backing);
  return 0;
}

secmem_backing secmem_get_backing(void) { return (secmem_backing)secmem_i_guarded_backing_get(); }

int secmem_secret_backing_available(void) { return secmem_i_page_secret_available() ? 1 : 0; }

void secmem_purge(void) {
  secmem_i_guarded_purge(SECMEM_I_KIND_BUF);
  secmem_i_heap_wipe_all();
  secmem_i_coffer_reset();
}

void secmem_shutdown(void) {
  pthread_once(&g_init_once, init_once);
  secmem_i_coffer_shutdown();
  secmem_i_scratch_shutdown();
  secmem_i_heap_shutdown();
  secmem_i_guarded_shutdown();
}

void secmem_safe_exit(int status) {
  secmem_purge();
  exit(status);
}

void secmem_safe_panic(const char *msg) {
  secmem_purge();
  secmem_i_page_write_stderr("secmem: panic: ");
  secmem_i_page_write_stderr(msg != NULL ? msg : "(no message)");
  secmem_i_page_write_stderr("\n");
  abort();
}

/* ---- signals ------------------------------------------------------------ */

static void (*_Atomic g_hook)(int);
static _Atomic int g_signalled;

static void on_signal(int sig) {
  if (atomic_exchange(&g_signalled, 1) != 0) {
    for (;;) {
      pause(); /* another thread is already wiping and will exit */
    }
  }
  void (*hook)(int) = atomic_load(&g_hook);
  if (hook != NULL) {
    hook(sig);
  }
  secmem_i_guarded_emergency_wipe();
  _exit(128 + sig);
}

int secmem_catch_signals(void (*hook)(int sig), const int *sigs, size_t num_sigs) {
  static const int defaults[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  if (secmem_i_ensure_init() != 0) {
    return -1;
  }
  if (sigs == NULL) {
    sigs = defaults;
    num_sigs = sizeof(defaults) / sizeof(defaults[0]);
  } else if (num_sigs == 0) {
    return secmem_i_fail(EINVAL, "secmem_catch_signals: no signals given");
  }
  for (size_t i = 0; i < num_sigs; i++) {
    if (sigs[i] <= 0 || sigs[i] >= NSIG || sigs[i] == SIGKILL || sigs[i] == SIGSTOP) {
      return secmem_i_fail(EINVAL, "secmem_catch_signals: signal %d cannot be caught", sigs[i]);
    }
  }
  atomic_store(&g_hook, hook);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigfillset(&sa.sa_mask); /* nothing interrupts the wipe */
  for (size_t i = 0; i < num_sigs; i++) {
    if (sigaction(sigs[i], &sa, NULL) != 0) {
      return secmem_i_fail(errno, "secmem_catch_signals: sigaction(%d) failed: %s", sigs[i],
                           strerror(errno));
    }
  }
  return 0;
}

int secmem_disable_core_dumps(void) {
  if (secmem_i_page_disable_core_dumps() != 0) {
    return secmem_i_fail(errno, "secmem_disable_core_dumps: %s", strerror(errno));
  }
  return 0;
}
