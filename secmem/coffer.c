/*
 * coffer.c - owns the enclave key: never stored whole, rebuilt only into
 * per-thread guarded scratch for the instant of a seal or open, and
 * re-randomised (re-keyed) without changing its value.
 *
 *   left  (32 bytes, guarded)     right (32 bytes, guarded)
 *       \                           |
 *        BLAKE2b-256(left)  XOR  right  =  key
 *
 * Re-keying draws a new left' and sets right' = right ^ H(left) ^ H(left'),
 * so H(left') ^ right' = H(left) ^ right: the key survives, every stored bit
 * of its representation changes. A cold-boot or memory-disclosure reader
 * must catch both halves from the same instant.
 *
 * The halves are guarded allocations like any buffer (locked, dump-excluded,
 * memfd_secret when chosen), inherited by forked children (re-locked or
 * privatised by guarded.c). Readers share a rwlock; re-keying takes it
 * exclusively, on access when the interval has passed (trylock: never
 * blocking a reader on it) or from a timer thread the program started.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "internal.h"

#define HALF_LEN SECMEM_I_KEY_LEN

static pthread_rwlock_t g_rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t g_create = PTHREAD_MUTEX_INITIALIZER;
static struct secmem_buf *_Atomic g_left;
static struct secmem_buf *g_right;
static struct secmem_buf *g_work; /* re-key scratch, used under the write lock */
static _Atomic uint64_t g_epoch = 1;       /* changes when the key is replaced */
static _Atomic uint64_t g_interval_ms = 500;
static _Atomic uint64_t g_last_rekey_ms;
static _Atomic uint64_t g_rekeys;

/* The timer thread. */
static pthread_mutex_t g_timer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_timer_cv = PTHREAD_COND_INITIALIZER;
static pthread_t g_timer;
static bool g_timer_running;
static bool g_timer_stop;
static uint64_t g_timer_interval_ms;
static _Atomic bool g_timer_restart; /* set in a forked child */

/* Per-thread scratch for the rebuilt key. */
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local struct secmem_buf *t_scratch;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void hash_half(unsigned char out[HALF_LEN], const unsigned char *in) {
  crypto_generichash(out, HALF_LEN, in, HALF_LEN, NULL, 0);
}

/* Create the halves on first use. Retried on failure (an mlock limit may be
 * raised later), so no pthread_once. */
static int coffer_create(void) {
  if (atomic_load_explicit(&g_left, memory_order_acquire) != NULL) {
    return 0;
  }
  pthread_mutex_lock(&g_create);
  int rc = 0;
  if (atomic_load(&g_left) == NULL) {
    struct secmem_buf *l = secmem_i_guarded_new(HALF_LEN, SECMEM_I_KIND_INTERNAL, NULL);
    struct secmem_buf *r = l != NULL ? secmem_i_guarded_new(HALF_LEN, SECMEM_I_KIND_INTERNAL, NULL) : NULL;
    struct secmem_buf *w = r != NULL ? secmem_i_guarded_new(3 * HALF_LEN, SECMEM_I_KIND_INTERNAL, NULL) : NULL;
    if (w == NULL) {
      int err = errno;
      char msg[600];
      snprintf(msg, sizeof(msg), "cannot create the enclave key: %s", secmem_last_error());
      if (l != NULL) {
        secmem_i_guarded_destroy(l, "coffer");
      }
      if (r != NULL) {
        secmem_i_guarded_destroy(r, "coffer");
      }
      rc = secmem_i_fail(err, "%s", msg);
    } else {
      randombytes_buf(l->data, HALF_LEN);
      randombytes_buf(r->data, HALF_LEN);
      g_right = r;
      g_work = w;
      atomic_store(&g_last_rekey_ms, now_ms());
      atomic_store_explicit(&g_left, l, memory_order_release);
    }
  }
  pthread_mutex_unlock(&g_create);
  return rc;
}

/* Re-key under the write lock. */
static void rekey_locked(void) {
  struct secmem_buf *left = atomic_load(&g_left);
  unsigned char *fresh = g_work->data;
  unsigned char *h_old = fresh + HALF_LEN;
  unsigned char *h_new = fresh + 2 * HALF_LEN;
  randombytes_buf(fresh, HALF_LEN);
  hash_half(h_old, left->data);
  hash_half(h_new, fresh);
  for (size_t i = 0; i < HALF_LEN; i++) {
    g_right->data[i] ^= (unsigned char)(h_old[i] ^ h_new[i]);
  }
  memcpy(left->data, fresh, HALF_LEN);
  secmem_wipe(fresh, 3 * HALF_LEN);
  secmem_i_stack_scrub();
  atomic_store(&g_last_rekey_ms, now_ms());
  atomic_fetch_add(&g_rekeys, 1);
}

static void timer_start_locked(uint64_t interval_ms);

static void maybe_restart_timer(void) {
  if (atomic_load_explicit(&g_timer_restart, memory_order_relaxed) &&
      atomic_exchange(&g_timer_restart, false)) {
    pthread_mutex_lock(&g_timer_mu);
    if (!g_timer_running && g_timer_interval_ms > 0) {
      timer_start_locked(g_timer_interval_ms);
    }
    pthread_mutex_unlock(&g_timer_mu);
  }
}

static void scratch_release(void *p) {
  secmem_i_guarded_destroy(p, "coffer scratch");
}

static void scratch_once(void) { (void)pthread_key_create(&g_scratch_key, scratch_release); }

unsigned char *secmem_i_coffer_scratch(void) {
  if (t_scratch == NULL) {
    pthread_once(&g_scratch_once, scratch_once);
    struct secmem_buf *b =
        secmem_i_guarded_new(SECMEM_I_SCRATCH_LEN, SECMEM_I_KIND_INTERNAL, NULL);
    if (b == NULL) {
      return NULL;
    }
    (void)pthread_setspecific(g_scratch_key, b);
    t_scratch = b;
  }
  return t_scratch->data;
}

int secmem_i_coffer_key(unsigned char out[SECMEM_I_KEY_LEN], uint64_t *out_epoch) {
  if (coffer_create() != 0) {
    return -1;
  }
  maybe_restart_timer();
  uint64_t interval = atomic_load_explicit(&g_interval_ms, memory_order_relaxed);
  if (interval > 0 && now_ms() - atomic_load(&g_last_rekey_ms) >= interval &&
      pthread_rwlock_trywrlock(&g_rw) == 0) {
    if (now_ms() - atomic_load(&g_last_rekey_ms) >= interval) {
      rekey_locked();
    }
    pthread_rwlock_unlock(&g_rw);
  }
  pthread_rwlock_rdlock(&g_rw);
  hash_half(out, atomic_load(&g_left)->data);
  for (size_t i = 0; i < HALF_LEN; i++) {
    out[i] ^= g_right->data[i];
  }
  if (out_epoch != NULL) {
    *out_epoch = atomic_load(&g_epoch);
  }
  pthread_rwlock_unlock(&g_rw);
  secmem_i_stack_scrub();
  return 0;
}

uint64_t secmem_i_coffer_epoch(void) { return atomic_load(&g_epoch); }

void secmem_i_coffer_reset(void) {
  if (atomic_load(&g_left) == NULL) {
    atomic_fetch_add(&g_epoch, 1);
    return;
  }
  pthread_rwlock_wrlock(&g_rw);
  randombytes_buf(atomic_load(&g_left)->data, HALF_LEN);
  randombytes_buf(g_right->data, HALF_LEN);
  atomic_fetch_add(&g_epoch, 1);
  atomic_store(&g_last_rekey_ms, now_ms());
  pthread_rwlock_unlock(&g_rw);
}

uint64_t secmem_i_coffer_rekeys(void) { return atomic_load(&g_rekeys); }

int secmem_i_coffer_snapshot(unsigned char left[SECMEM_I_KEY_LEN],
                             unsigned char right[SECMEM_I_KEY_LEN]) {
  if (coffer_create() != 0) {
    return -1;
  }
  pthread_rwlock_rdlock(&g_rw);
  memcpy(left, atomic_load(&g_left)->data, HALF_LEN);
  memcpy(right, g_right->data, HALF_LEN);
  pthread_rwlock_unlock(&g_rw);
  return 0;
}

void secmem_set_rekey_interval(uint64_t interval_ms) {
  atomic_store(&g_interval_ms, interval_ms);
}

int secmem_rekey(void) {
  if (secmem_i_ensure_init() != 0 || coffer_create() != 0) {
    return -1;
  }
  pthread_rwlock_wrlock(&g_rw);
  rekey_locked();
  pthread_rwlock_unlock(&g_rw);
  return 0;
}

/* ---- the timer thread ------------------------------------------------------ */

static void *timer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_timer_mu);
  while (!g_timer_stop) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t ns = (uint64_t)deadline.tv_nsec + (g_timer_interval_ms % 1000u) * 1000000u;
    deadline.tv_sec += (time_t)(g_timer_interval_ms / 1000u + ns / 1000000000u);
    deadline.tv_nsec = (long)(ns % 1000000000u);
    int rc = 0;
    while (!g_timer_stop && rc != ETIMEDOUT) {
      rc = pthread_cond_timedwait(&g_timer_cv, &g_timer_mu, &deadline);
    }
    if (g_timer_stop) {
      break;
    }
    pthread_mutex_unlock(&g_timer_mu);
    pthread_rwlock_wrlock(&g_rw);
    rekey_locked();
    pthread_rwlock_unlock(&g_rw);
    pthread_mutex_lock(&g_timer_mu);
  }
  pthread_mutex_unlock(&g_timer_mu);
  return NULL;
}

static pthread_condattr_t monotonic_attr(void) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  return a;
}

static int g_timer_start_error;

static void timer_start_locked(uint64_t interval_ms) {
  g_timer_interval_ms = interval_ms;
  g_timer_stop = false;
  g_timer_start_error = pthread_create(&g_timer, NULL, timer_main, NULL);
  g_timer_running = g_timer_start_error == 0;
}

int secmem_rekey_start(uint64_t interval_ms) {
  if (interval_ms == 0) {
    return secmem_i_fail(EINVAL, "secmem_rekey_start: the interval must be at least 1 ms");
  }
  if (secmem_i_ensure_init() != 0 || coffer_create() != 0) {
    return -1;
  }
  atomic_store(&g_timer_restart, false);
  pthread_mutex_lock(&g_timer_mu);
  if (g_timer_running) {
    g_timer_interval_ms = interval_ms;
    pthread_cond_signal(&g_timer_cv);
    pthread_mutex_unlock(&g_timer_mu);
    return 0;
  }
  timer_start_locked(interval_ms);
  int err = g_timer_start_error;
  pthread_mutex_unlock(&g_timer_mu);
  if (err != 0) {
    return secmem_i_fail(err, "secmem_rekey_start: cannot start the timer thread: %s",
                         strerror(err));
  }
  return 0;
}

void secmem_rekey_stop(void) {
  atomic_store(&g_timer_restart, false);
  pthread_mutex_lock(&g_timer_mu);
  if (!g_timer_running) {
    g_timer_interval_ms = 0;
    pthread_mutex_unlock(&g_timer_mu);
    return;
  }
  g_timer_stop = true;
  pthread_cond_signal(&g_timer_cv);
  pthread_t t = g_timer;
  g_timer_running = false;
  g_timer_interval_ms = 0;
  pthread_mutex_unlock(&g_timer_mu);
  pthread_join(t, NULL);
}

/* ---- fork ------------------------------------------------------------------- */

void secmem_i_coffer_fork_prepare(void) {
  pthread_mutex_lock(&g_create);
  pthread_mutex_lock(&g_timer_mu);
  pthread_rwlock_wrlock(&g_rw);
}

void secmem_i_coffer_fork_parent(void) {
  pthread_rwlock_unlock(&g_rw);
  pthread_mutex_unlock(&g_timer_mu);
  pthread_mutex_unlock(&g_create);
}

void secmem_i_coffer_fork_child(void) {
  /* The timer thread did not come along; restart it at first use. */
  bool was_running = g_timer_running;
  pthread_rwlock_init(&g_rw, NULL);
  pthread_mutex_init(&g_timer_mu, NULL);
  pthread_mutex_init(&g_create, NULL);
  pthread_condattr_t a = monotonic_attr();
  pthread_cond_init(&g_timer_cv, &a);
  pthread_condattr_destroy(&a);
  g_timer_running = false;
  g_timer_stop = false;
  atomic_store(&g_timer_restart, was_running);
}

void secmem_i_coffer_init(void) {
  pthread_condattr_t a = monotonic_attr();
  pthread_cond_destroy(&g_timer_cv);
  pthread_cond_init(&g_timer_cv, &a);
  pthread_condattr_destroy(&a);
}
