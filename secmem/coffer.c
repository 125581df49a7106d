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
 * privatised by guarded.c). Readers take no lock: the halves sit behind a
 * sequence counter (a seqlock), odd while a writer changes them, and a
 * reader copies both halves into its guarded scratch and retries if the
 * counter moved. Writers (re-key, reset) serialise on one mutex; re-keying
 * happens on access when the interval has passed (trylock: never waiting)
 * or from a timer thread the program started.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "internal.h"

#define HALF_LEN SECMEM_I_KEY_LEN

static pthread_mutex_t g_write = PTHREAD_MUTEX_INITIALIZER; /* writers of the halves */
static _Atomic uint64_t g_seq;                                 /* odd while they change */
static pthread_mutex_t g_create = PTHREAD_MUTEX_INITIALIZER;
static struct secmem_buf *_Atomic g_left;
static struct secmem_buf *g_right;
static struct secmem_buf *g_work; /* re-key scratch, used under the write lock */
static _Atomic uint64_t g_epoch = 1;       /* changes when the key is replaced */
static _Atomic uint64_t g_interval_ms = SECMEM_REKEY_INTERVAL_DEFAULT_MS;
static _Atomic uint64_t g_last_rekey_ms;
static _Atomic uint64_t g_rekeys;

/* The timer thread: idle, running, or stopping (being joined). A start
 * waits for a stop in progress to finish; a retune bumps the generation so
 * the running thread recomputes its deadline at once. */
enum timer_state { TIMER_IDLE, TIMER_RUNNING, TIMER_STOPPING };
static pthread_mutex_t g_timer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_timer_cv = PTHREAD_COND_INITIALIZER;   /* wakes the timer */
static pthread_cond_t g_timer_idle = PTHREAD_COND_INITIALIZER; /* a stop finished */
static pthread_t g_timer;
static enum timer_state g_timer_state;
static bool g_timer_stop;
static uint64_t g_timer_interval_ms;
static uint64_t g_timer_gen;
static _Atomic bool g_timer_restart; /* set in a forked child */

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
    struct secmem_buf *w =
        r != NULL ? secmem_i_guarded_new(3 * HALF_LEN, SECMEM_I_KIND_INTERNAL, NULL) : NULL;
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

/* The halves are read and written as 64-bit atomics (relaxed): a reader
 * racing a writer sees a mix, which the sequence counter makes it discard. */
#define HALF_WORDS (HALF_LEN / 8)

static _Atomic uint64_t *words(struct secmem_buf *b) { return (_Atomic uint64_t *)(void *)b->data; }

static void half_load(unsigned char *out, struct secmem_buf *b) {
  for (size_t i = 0; i < HALF_WORDS; i++) {
    uint64_t w = atomic_load_explicit(&words(b)[i], memory_order_relaxed);
    memcpy(out + 8 * i, &w, 8);
  }
}

static void half_store(struct secmem_buf *b, const unsigned char *in) {
  for (size_t i = 0; i < HALF_WORDS; i++) {
    uint64_t w;
    memcpy(&w, in + 8 * i, 8);
    atomic_store_explicit(&words(b)[i], w, memory_order_relaxed);
  }
}

/* Replace both halves (g_write held). work: 2 * HALF_LEN bytes. */
static void halves_publish(const unsigned char *left, const unsigned char *right) {
  uint64_t seq = atomic_load_explicit(&g_seq, memory_order_relaxed);
  atomic_store_explicit(&g_seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  half_store(atomic_load(&g_left), left);
  half_store(g_right, right);
  atomic_store_explicit(&g_seq, seq + 2, memory_order_release);
}

/* Re-key (g_write held): left' random, right' = right ^ H(left) ^ H(left'). */
static void rekey_locked(void) {
  unsigned char *fresh = g_work->data;
  unsigned char *right = fresh + HALF_LEN;
  unsigned char *h = fresh + 2 * HALF_LEN;
  randombytes_buf(fresh, HALF_LEN);
  half_load(right, g_right);
  half_load(h, atomic_load(&g_left));
  hash_half(h, h);
  for (size_t i = 0; i < HALF_LEN; i++) {
    right[i] ^= h[i];
  }
  hash_half(h, fresh);
  for (size_t i = 0; i < HALF_LEN; i++) {
    right[i] ^= h[i];
  }
  halves_publish(fresh, right);
  secmem_wipe(fresh, 3 * HALF_LEN);
  secmem_i_stack_scrub();
  atomic_store(&g_last_rekey_ms, now_ms());
  atomic_fetch_add(&g_rekeys, 1);
}

static int timer_start_locked(uint64_t interval_ms);

static void maybe_restart_timer(void) {
  if (atomic_load_explicit(&g_timer_restart, memory_order_relaxed) &&
      atomic_exchange(&g_timer_restart, false)) {
    pthread_mutex_lock(&g_timer_mu);
    if (g_timer_state == TIMER_IDLE && g_timer_interval_ms > 0) {
      (void)timer_start_locked(g_timer_interval_ms);
    }
    pthread_mutex_unlock(&g_timer_mu);
  }
}

unsigned char *secmem_i_coffer_scratch(void) {
  return secmem_i_scratch(SECMEM_I_SCRATCH_KEY, SECMEM_I_SCRATCH_LEN);
}

int secmem_i_coffer_key(unsigned char out[SECMEM_I_KEY_LEN], uint64_t *out_epoch) {
  if (coffer_create() != 0) {
    return -1;
  }
  unsigned char *work = secmem_i_coffer_scratch();
  if (work == NULL) {
    return -1;
  }
  work += SECMEM_I_SCRATCH_LEN - 2 * HALF_LEN; /* copies of left and right */
  maybe_restart_timer();
  uint64_t interval = atomic_load_explicit(&g_interval_ms, memory_order_relaxed);
  if (interval > 0 && now_ms() - atomic_load(&g_last_rekey_ms) >= interval &&
      pthread_mutex_trylock(&g_write) == 0) {
    if (now_ms() - atomic_load(&g_last_rekey_ms) >= interval) {
      rekey_locked();
    }
    pthread_mutex_unlock(&g_write);
  }
  uint64_t epoch;
  for (;;) {
    uint64_t seq = atomic_load_explicit(&g_seq, memory_order_acquire);
    if (seq & 1) {
      sched_yield();
      continue;
    }
    epoch = atomic_load_explicit(&g_epoch, memory_order_relaxed);
    half_load(work, atomic_load(&g_left));
    half_load(work + HALF_LEN, g_right);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&g_seq, memory_order_relaxed) == seq) {
      break;
    }
  }
  hash_half(out, work);
  for (size_t i = 0; i < HALF_LEN; i++) {
    out[i] ^= work[HALF_LEN + i];
  }
  secmem_wipe(work, 2 * HALF_LEN);
  if (out_epoch != NULL) {
    *out_epoch = epoch;
  }
  secmem_i_stack_scrub();
  return 0;
}

uint64_t secmem_i_coffer_epoch(void) { return atomic_load(&g_epoch); }

void secmem_i_coffer_reset(void) {
  if (atomic_load(&g_left) == NULL) {
    atomic_fetch_add(&g_epoch, 1);
    return;
  }
  pthread_mutex_lock(&g_write);
  unsigned char *fresh = g_work->data;
  randombytes_buf(fresh, 2 * HALF_LEN);
  uint64_t seq = atomic_load_explicit(&g_seq, memory_order_relaxed);
  atomic_store_explicit(&g_seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  half_store(atomic_load(&g_left), fresh);
  half_store(g_right, fresh + HALF_LEN);
  atomic_fetch_add(&g_epoch, 1); /* inside the write: readers see key and epoch together */
  atomic_store_explicit(&g_seq, seq + 2, memory_order_release);
  secmem_wipe(fresh, 2 * HALF_LEN);
  atomic_store(&g_last_rekey_ms, now_ms());
  pthread_mutex_unlock(&g_write);
}

uint64_t secmem_i_coffer_rekeys(void) { return atomic_load(&g_rekeys); }

int secmem_i_coffer_snapshot(unsigned char left[SECMEM_I_KEY_LEN],
                             unsigned char right[SECMEM_I_KEY_LEN]) {
  if (coffer_create() != 0) {
    return -1;
  }
  pthread_mutex_lock(&g_write);
  half_load(left, atomic_load(&g_left));
  half_load(right, g_right);
  pthread_mutex_unlock(&g_write);
  return 0;
}

void secmem_set_rekey_interval(uint64_t interval_ms) {
  atomic_store(&g_interval_ms, interval_ms);
}

uint64_t secmem_get_rekey_interval(void) { return atomic_load(&g_interval_ms); }

int secmem_rekey(void) {
  if (secmem_i_ensure_init() != 0 || coffer_create() != 0) {
    return -1;
  }
  pthread_mutex_lock(&g_write);
  rekey_locked();
  pthread_mutex_unlock(&g_write);
  return 0;
}

/* ---- the timer thread ------------------------------------------------------ */

static void *timer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_timer_mu);
  while (!g_timer_stop) {
    uint64_t gen = g_timer_gen;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t ns = (uint64_t)deadline.tv_nsec + (g_timer_interval_ms % 1000u) * 1000000u;
    deadline.tv_sec += (time_t)(g_timer_interval_ms / 1000u + ns / 1000000000u);
    deadline.tv_nsec = (long)(ns % 1000000000u);
    int rc = 0;
    while (!g_timer_stop && gen == g_timer_gen && rc != ETIMEDOUT) {
      rc = pthread_cond_timedwait(&g_timer_cv, &g_timer_mu, &deadline);
    }
    if (g_timer_stop) {
      break;
    }
    if (gen != g_timer_gen) {
      continue; /* retuned: wait again with the new interval */
    }
    pthread_mutex_unlock(&g_timer_mu);
    pthread_mutex_lock(&g_write);
    rekey_locked();
    pthread_mutex_unlock(&g_write);
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

/* Start the thread (g_timer_mu held, state idle). Returns pthread's error. */
static int timer_start_locked(uint64_t interval_ms) {
  g_timer_interval_ms = interval_ms;
  g_timer_stop = false;
  int err = pthread_create(&g_timer, NULL, timer_main, NULL);
  g_timer_state = err == 0 ? TIMER_RUNNING : TIMER_IDLE;
  return err;
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
  while (g_timer_state == TIMER_STOPPING) {
    pthread_cond_wait(&g_timer_idle, &g_timer_mu);
  }
  int err = 0;
  if (g_timer_state == TIMER_RUNNING) {
    g_timer_interval_ms = interval_ms;
    g_timer_gen++;
    pthread_cond_signal(&g_timer_cv);
  } else {
    err = timer_start_locked(interval_ms);
  }
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
  g_timer_interval_ms = 0;
  if (g_timer_state != TIMER_RUNNING) {
    pthread_mutex_unlock(&g_timer_mu);
    return;
  }
  g_timer_stop = true;
  g_timer_state = TIMER_STOPPING;
  pthread_cond_signal(&g_timer_cv);
  pthread_t t = g_timer;
  pthread_mutex_unlock(&g_timer_mu);
  pthread_join(t, NULL);
  pthread_mutex_lock(&g_timer_mu);
  g_timer_state = TIMER_IDLE;
  pthread_cond_broadcast(&g_timer_idle);
  pthread_mutex_unlock(&g_timer_mu);
}

/* ---- fork ------------------------------------------------------------------- */

void secmem_i_coffer_fork_prepare(void) {
  pthread_mutex_lock(&g_create);
  pthread_mutex_lock(&g_timer_mu);
  pthread_mutex_lock(&g_write); /* no half-written halves cross the fork */
}

void secmem_i_coffer_fork_parent(void) {
  pthread_mutex_unlock(&g_write);
  pthread_mutex_unlock(&g_timer_mu);
  pthread_mutex_unlock(&g_create);
}

static void init_conds(void) {
  pthread_condattr_t a = monotonic_attr();
  pthread_cond_init(&g_timer_cv, &a);
  pthread_condattr_destroy(&a);
  pthread_cond_init(&g_timer_idle, NULL);
}

void secmem_i_coffer_fork_child(void) {
  /* The child's one thread is the one that took these in prepare. The timer
   * thread did not come along (and its condition variables went with it, so
   * they are made anew); it restarts at first use. (Other threads' key
   * scratch, perhaps mid-open, is wiped by scratch.c.) */
  bool was_running = g_timer_state == TIMER_RUNNING;
  pthread_mutex_unlock(&g_write);
  pthread_mutex_unlock(&g_timer_mu);
  pthread_mutex_unlock(&g_create);
  init_conds();
  g_timer_state = TIMER_IDLE;
  g_timer_stop = false;
  atomic_store(&g_timer_restart, was_running && g_timer_interval_ms > 0);
}

void secmem_i_coffer_shutdown(void) {
  secmem_rekey_stop();
  pthread_mutex_lock(&g_create);
  pthread_mutex_lock(&g_write);
  struct secmem_buf *left = atomic_load(&g_left);
  if (left != NULL) {
    secmem_i_guarded_destroy(left, "coffer (shutdown)");
    secmem_i_guarded_destroy(g_right, "coffer (shutdown)");
    secmem_i_guarded_destroy(g_work, "coffer (shutdown)");
    atomic_store(&g_left, NULL);
    g_right = g_work = NULL;
    atomic_fetch_add(&g_epoch, 1); /* enclaves of before can never open */
  }
  pthread_mutex_unlock(&g_write);
  pthread_mutex_unlock(&g_create);
}

void secmem_i_coffer_init(void) {
  pthread_cond_destroy(&g_timer_cv);
  pthread_cond_destroy(&g_timer_idle);
  init_conds();
}
