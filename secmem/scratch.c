/*
 * scratch.c - owns per-thread scratch areas: guarded, locked, dump-excluded
 * pages a thread reuses for the instant a secret is in use (the rebuilt
 * enclave key, an opened private key), so that no operation needs a lock or
 * a fresh mapping. Each thread has two: one for the library's own key work,
 * one handed out by secmem_scratch.
 *
 * Every area is listed: a forked child wipes and frees the areas of the
 * threads that did not come along (one of them may have been in the middle
 * of an operation), and a thread's areas are wiped and freed when it ends.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

struct thread_scratch {
  struct secmem_buf *slot[SECMEM_I_SCRATCH_SLOTS];
};

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local struct thread_scratch t_areas;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct secmem_buf **g_all;
static size_t g_count, g_cap;

static void forget(struct secmem_buf *b) {
  for (size_t i = 0; i < g_count; i++) {
    if (g_all[i] == b) {
      g_all[i] = g_all[--g_count];
      return;
    }
  }
}

static bool remember(struct secmem_buf *b) {
  if (g_count == g_cap) {
    size_t cap = g_cap != 0 ? 2 * g_cap : 16;
    struct secmem_buf **n = realloc(g_all, cap * sizeof(*n));
    if (n == NULL) {
      return false;
    }
    g_all = n;
    g_cap = cap;
  }
  g_all[g_count++] = b;
  return true;
}

static void release(struct secmem_buf *b) {
  pthread_mutex_lock(&g_mu);
  forget(b);
  pthread_mutex_unlock(&g_mu);
  secmem_i_guarded_destroy(b, "scratch");
}

/* Thread exit. A later destructor of this thread that needs scratch gets a
 * fresh area (and this destructor runs again for it). */
static void thread_end(void *p) {
  struct thread_scratch *ts = p;
  for (int s = 0; s < SECMEM_I_SCRATCH_SLOTS; s++) {
    if (ts->slot[s] != NULL) {
      struct secmem_buf *b = ts->slot[s];
      ts->slot[s] = NULL;
      release(b);
    }
  }
}

static bool g_key_made;

static void make_key(void) { g_key_made = pthread_key_create(&g_key, thread_end) == 0; }

unsigned char *secmem_i_scratch(int slot, size_t len) {
  struct secmem_buf *b = t_areas.slot[slot];
  if (b != NULL && b->len >= len) {
    return b->data;
  }
  pthread_once(&g_once, make_key);
  size_t want = len < 256 ? 256 : (len + 63) & ~(size_t)63; /* 64-byte aligned data */
  if (want < len) {
    secmem_i_fail(ENOMEM, "scratch of %zu bytes is too large", len);
    return NULL;
  }
  struct secmem_buf *fresh = secmem_i_guarded_new(want, SECMEM_I_KIND_INTERNAL, NULL);
  if (fresh == NULL) {
    return NULL; /* errno and message set */
  }
  pthread_mutex_lock(&g_mu);
  bool listed = remember(fresh);
  pthread_mutex_unlock(&g_mu);
  if (!listed || pthread_setspecific(g_key, &t_areas) != 0) {
    release(fresh);
    secmem_i_fail(ENOMEM, "cannot register a scratch area: out of memory");
    return NULL;
  }
  if (b != NULL) {
    release(b); /* wipes the smaller area it replaces */
  }
  t_areas.slot[slot] = fresh;
  return fresh->data;
}

void *secmem_scratch(size_t len) {
  if (secmem_i_ensure_init() != 0) {
    return NULL;
  }
  return secmem_i_scratch(SECMEM_I_SCRATCH_USER, len);
}

void secmem_scratch_wipe(void) {
  struct secmem_buf *b = t_areas.slot[SECMEM_I_SCRATCH_USER];
  if (b != NULL) {
    secmem_wipe(b->data, b->len);
  }
}

void secmem_i_scratch_shutdown(void) {
  /* No thread-exit hook may point into code that is about to go away. */
  if (g_key_made) {
    pthread_key_delete(g_key);
  }
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < g_count; i++) {
    secmem_i_guarded_destroy(g_all[i], "scratch (shutdown)");
  }
  g_count = 0;
  free(g_all);
  g_all = NULL;
  g_cap = 0;
  pthread_mutex_unlock(&g_mu);
  for (int s = 0; s < SECMEM_I_SCRATCH_SLOTS; s++) {
    t_areas.slot[s] = NULL;
  }
}

void secmem_i_scratch_fork_prepare(void) { pthread_mutex_lock(&g_mu); }

void secmem_i_scratch_fork_parent(void) { pthread_mutex_unlock(&g_mu); }

void secmem_i_scratch_fork_child(void) {
  /* Runs after the guarded layer's child handler, so destroying is allowed. */
  size_t kept = 0;
  for (size_t i = 0; i < g_count; i++) {
    bool ours = false;
    for (int s = 0; s < SECMEM_I_SCRATCH_SLOTS; s++) {
      ours = ours || g_all[i] == t_areas.slot[s];
    }
    if (ours) {
      g_all[kept++] = g_all[i];
    } else {
      secmem_i_guarded_destroy(g_all[i], "scratch (fork)");
    }
  }
  g_count = kept;
  pthread_mutex_unlock(&g_mu);
}
