/*
 * guarded.c - owns guarded allocations: their layout, canary, protection
 * state and lifetime; the list of every live one; the cache of wiped regions
 * kept for reuse; and the integrity-failure path that wipes them all.
 *
 * One allocation (page-aligned mapping, never from malloc):
 *
 *   base                inner                       data          data+len
 *   +--------------+--------------------------------+--------------+--------------+
 *   | guard (NONE) | canary pattern ..... canary    | data bytes   | guard (NONE) |
 *   +--------------+--------------------------------+--------------+--------------+
 *                  \___________ inner_len: mlock'ed, MADV_DONTDUMP ______/
 *
 * The data ends exactly at the trailing guard page: reading or writing one
 * byte past it faults. At least SECMEM_CANARY_LEN bytes of canary precede it.
 *
 * Handles (struct secmem_buf) are cut from slabs mapped here and never
 * unmapped, so a stale or double-destroyed handle is always readable and is
 * recognised by its state instead of corrupting memory. Freed handles wait in
 * a FIFO quarantine before reuse to keep that detection effective.
 *
 * Destroyed regions of up to CACHE_MAX_INNER bytes are wiped, made no-access
 * and kept (still locked) for the next allocation of the same size: a reuse
 * costs one mprotect instead of mmap + madvise + mprotect + mlock, and a
 * release one mprotect instead of munmap. A cached region is indistinguishable
 * from a guard page to anyone touching it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"

#define SLAB_LEN (64u * 1024u)
#define MAX_SLABS 4096u
#define HANDLE_QUARANTINE 4096u
#define CACHE_SLOTS 32u
#define CACHE_MAX_INNER (260u * 1024u) /* 256 KiB of data plus its canary page */
#define CACHE_MAX_BYTES (1024u * 1024u)

struct cached_region {
  unsigned char *base;
  size_t total_len;
  size_t inner_len;
  bool locked;
  bool secret;
};

/* Everything below is protected by g_lock, except where marked atomic. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uintptr_t g_owner; /* pthread_self() of the holder, 0 if free */

static unsigned char *_Atomic g_slabs[MAX_SLABS];
static _Atomic size_t g_nslabs;
static size_t g_slab_used; /* handles carved from the newest slab */
static struct secmem_buf *g_free_head, *g_free_tail;
static size_t g_free_count;

static struct secmem_buf *_Atomic g_live; /* walked lock-free by the emergency path */
static struct cached_region g_cache[CACHE_SLOTS];
static size_t g_cache_count;
static size_t g_cache_bytes;

static uint64_t g_serial;
static size_t g_buffers_live, g_bytes_mapped, g_bytes_locked, g_bytes_unlocked,
    g_dontdump_failures, g_bytes_secret;
static _Atomic int g_policy = SECMEM_MLOCK_REQUIRED;
static _Atomic int g_backing = SECMEM_BACKING_AUTO;
static int g_fork_pipe[2] = {-1, -1};
static int g_fork_pipe_error;

/* The canary is SECMEM_CANARY_LEN random bytes repeated from the start of
 * the inner pages; the template holds that pattern for the longest possible
 * canary (a page plus SECMEM_CANARY_LEN - 1 bytes) so filling and checking
 * are plain word-wide copies and compares, both page-aligned. */
static unsigned char *g_canary_tmpl;
static pthread_once_t g_canary_once = PTHREAD_ONCE_INIT;

static void canary_init(void) {
  unsigned char pattern[SECMEM_CANARY_LEN];
  size_t len = 2 * secmem_i_page_size();
  unsigned char *t = secmem_i_page_map_plain(len);
  if (t == NULL) {
    secmem_i_fatal("cannot map the canary template");
  }
  /* secmem_init has run sodium_init before any allocation reaches here. */
  randombytes_buf(pattern, sizeof(pattern));
  for (size_t i = 0; i < len; i++) {
    t[i] = pattern[i % SECMEM_CANARY_LEN];
  }
  secmem_wipe(pattern, sizeof(pattern));
  g_canary_tmpl = t;
}

static void lock(void) {
  pthread_mutex_lock(&g_lock);
  atomic_store_explicit(&g_owner, (uintptr_t)pthread_self(), memory_order_relaxed);
}

static void unlock(void) {
  atomic_store_explicit(&g_owner, 0, memory_order_relaxed);
  pthread_mutex_unlock(&g_lock);
}

/* ---- handles ------------------------------------------------------------ */

static size_t handles_per_slab(void) { return SLAB_LEN / sizeof(struct secmem_buf); }

static struct secmem_buf *handle_alloc(void) {
  struct secmem_buf *h = NULL;
  size_t nslabs = atomic_load(&g_nslabs);
  if (g_free_count > HANDLE_QUARANTINE ||
      (g_free_head != NULL && nslabs == MAX_SLABS && g_slab_used == handles_per_slab())) {
    h = g_free_head;
    g_free_head = h->free_next;
    if (g_free_head == NULL) {
      g_free_tail = NULL;
    }
    g_free_count--;
  } else {
    if (nslabs == 0 || g_slab_used == handles_per_slab()) {
      if (nslabs == MAX_SLABS) {
        return NULL;
      }
      unsigned char *slab = secmem_i_page_map_plain(SLAB_LEN);
      if (slab == NULL) {
        return NULL;
      }
      atomic_store(&g_slabs[nslabs], slab);
      atomic_store(&g_nslabs, nslabs + 1); /* publish after the slot is set */
      nslabs++;
      g_slab_used = 0;
    }
    h = (struct secmem_buf *)(void *)(atomic_load(&g_slabs[nslabs - 1]) +
                                      g_slab_used * sizeof(struct secmem_buf));
    g_slab_used++;
  }
  memset(h, 0, sizeof(*h));
  return h;
}

static void handle_free(struct secmem_buf *h) {
  /* next is left alone: an emergency walk standing on h must still reach the
   * rest of the live list. The free queue has its own link. */
  atomic_store(&h->state, SECMEM_I_DEAD);
  h->data = NULL;
  h->inner = NULL;
  h->base = NULL;
  h->free_next = NULL;
  if (g_free_tail != NULL) {
    g_free_tail->free_next = h;
  } else {
    g_free_head = h;
  }
  g_free_tail = h;
  g_free_count++;
}

/* A handle is ours when it lies on a handle boundary inside one of our slabs
 * and carries the magic. Reads only memory that is never unmapped. */
static bool handle_is_ours(const struct secmem_buf *b) {
  uintptr_t p = (uintptr_t)b;
  size_t n = atomic_load(&g_nslabs);
  for (size_t i = 0; i < n; i++) {
    uintptr_t s = (uintptr_t)atomic_load(&g_slabs[i]);
    if (p >= s && p < s + SLAB_LEN) {
      size_t off = (size_t)(p - s);
      return off % sizeof(struct secmem_buf) == 0 &&
             off / sizeof(struct secmem_buf) < handles_per_slab() &&
             b->magic == SECMEM_I_BUF_MAGIC;
    }
  }
  return false;
}

struct secmem_buf *secmem_i_guarded_validate(const struct secmem_buf *b, const char *who) {
  char msg[160];
  if (!handle_is_ours(b)) {
    snprintf(msg, sizeof(msg), "%s: pointer is not a secmem buffer", who);
    secmem_i_fatal(msg);
  }
  if (atomic_load(&b->state) == SECMEM_I_DEAD) {
    snprintf(msg, sizeof(msg), "%s: buffer was already destroyed (use after destroy)", who);
    secmem_i_fatal(msg);
  }
  return (struct secmem_buf *)b;
}

/* ---- canary ------------------------------------------------------------- */

static void canary_fill(struct secmem_buf *b) {
  memcpy(b->inner, g_canary_tmpl, (size_t)(b->data - b->inner));
}

static bool canary_intact(const struct secmem_buf *b) {
  size_t n = (size_t)(b->data - b->inner);
  const unsigned char *p = b->inner;
  const unsigned char *t = g_canary_tmpl;
  uint64_t diff = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    memcpy(&x, p + i, 8);
    memcpy(&y, t + i, 8);
    diff |= x ^ y;
  }
  for (; i < n; i++) {
    diff |= (uint64_t)(p[i] ^ t[i]);
  }
  return diff == 0;
}

static SECMEM_I_NORETURN void canary_fatal(const struct secmem_buf *b, const char *who) {
  char msg[200];
  snprintf(msg, sizeof(msg),
           "%s: canary of a %zu-byte buffer overwritten (write before the start of its data)", who,
           b->len);
  secmem_i_fatal(msg);
}

/* ---- region cache ------------------------------------------------------- */

static void stats_forget_region(size_t total_len, size_t inner_len, bool locked, bool secret) {
  g_bytes_mapped -= total_len;
  if (locked) {
    g_bytes_locked -= inner_len;
  }
  if (secret) {
    g_bytes_secret -= inner_len;
  }
}

static void cache_drop_all(void) {
  for (size_t i = 0; i < g_cache_count; i++) {
    struct cached_region *c = &g_cache[i];
    (void)secmem_i_page_release(c->base, c->total_len);
    stats_forget_region(c->total_len, c->inner_len, c->locked, c->secret);
  }
  g_cache_count = 0;
  g_cache_bytes = 0;
}

/* Take a cached region of exactly inner_len bytes and the wanted backing,
 * and make it read-write. */
static bool cache_take(size_t inner_len, bool secret, struct cached_region *out) {
  for (size_t i = 0; i < g_cache_count; i++) {
    if (g_cache[i].inner_len != inner_len || g_cache[i].secret != secret) {
      continue;
    }
    struct cached_region c = g_cache[i];
    memmove(&g_cache[i], &g_cache[i + 1], (g_cache_count - i - 1) * sizeof(g_cache[0]));
    g_cache_count--;
    g_cache_bytes -= inner_len;
    if (secmem_i_page_protect(c.base + secmem_i_page_size(), inner_len, SECMEM_I_PROT_RW) != 0) {
      (void)secmem_i_page_release(c.base, c.total_len);
      stats_forget_region(c.total_len, c.inner_len, c.locked, c.secret);
      return false;
    }
    *out = c;
    return true;
  }
  return false;
}

/* Keep a wiped region for reuse (making it no-access) or unmap it. Only
 * locked regions are kept: a reused region must satisfy the policy in force
 * when it is handed out again, and a locked one satisfies both. */
static void cache_put_or_release(unsigned char *base, size_t total_len, size_t inner_len,
                                 bool locked, bool secret) {
  if (locked && inner_len <= CACHE_MAX_INNER && g_cache_bytes + inner_len <= CACHE_MAX_BYTES) {
    if (g_cache_count == CACHE_SLOTS) {
      struct cached_region *old = &g_cache[0];
      (void)secmem_i_page_release(old->base, old->total_len);
      stats_forget_region(old->total_len, old->inner_len, old->locked, old->secret);
      g_cache_bytes -= old->inner_len;
      memmove(&g_cache[0], &g_cache[1], (CACHE_SLOTS - 1) * sizeof(g_cache[0]));
      g_cache_count--;
    }
    if (secmem_i_page_protect(base + secmem_i_page_size(), inner_len, SECMEM_I_PROT_NONE) == 0) {
      g_cache[g_cache_count++] =
          (struct cached_region){base, total_len, inner_len, locked, secret};
      g_cache_bytes += inner_len;
      return;
    }
  }
  (void)secmem_i_page_release(base, total_len);
  stats_forget_region(total_len, inner_len, locked, secret);
}

/* ---- allocation --------------------------------------------------------- */

static int mlock_failed(size_t inner_len, int err) {
  char have[32], need[32], limit[32];
  size_t lim = secmem_i_page_memlock_limit();
  secmem_i_format_size(have, sizeof(have), g_bytes_locked);
  secmem_i_format_size(need, sizeof(need), g_bytes_locked + inner_len);
  if (lim == SIZE_MAX) {
    snprintf(limit, sizeof(limit), "unlimited");
  } else {
    secmem_i_format_size(limit, sizeof(limit), lim);
  }
  return secmem_i_fail(ENOMEM,
                       "mlock failed (%s): RLIMIT_MEMLOCK is %s, %s needed (%s already locked "
                       "by secmem); raise the limit (ulimit -l, LimitMEMLOCK=) or choose "
                       "SECMEM_MLOCK_BEST_EFFORT",
                       strerror(err), limit, need, have);
}

/* Whether new regions should be memfd_secret-backed under the current
 * backing choice. */
static bool want_secret(void) {
  int backing = atomic_load(&g_backing);
  return backing == SECMEM_BACKING_SECRET ||
         (backing == SECMEM_BACKING_AUTO && secmem_i_page_secret_available());
}

/* Map a fresh region: reserve, exclude from dumps, then back the inner pages
 * with a secret file or open and lock anonymous ones. Returns 0 or -1
 * (message set, nothing left mapped). */
static int region_map(size_t total_len, size_t inner_len, bool secret, struct cached_region *out) {
  size_t ps = secmem_i_page_size();
  unsigned char *base = secmem_i_page_reserve(total_len);
  if (base == NULL) {
    return secmem_i_fail(ENOMEM, "mmap of %zu bytes failed: %s", total_len, strerror(errno));
  }
  if (secmem_i_page_dontdump(base, total_len) != 0) {
    g_dontdump_failures++;
  }
  if (secret) {
    bool ok = secmem_i_page_back_secret(base + ps, inner_len) == 0;
    if (!ok && g_cache_count > 0) {
      cache_drop_all(); /* secret pages count against RLIMIT_MEMLOCK too */
      ok = secmem_i_page_back_secret(base + ps, inner_len) == 0;
    }
    if (ok) {
      g_bytes_locked += inner_len; /* the kernel locks secret pages itself */
      g_bytes_secret += inner_len;
      g_bytes_mapped += total_len;
      *out = (struct cached_region){base, total_len, inner_len, true, true};
      return 0;
    }
    int err = errno;
    if (atomic_load(&g_backing) == SECMEM_BACKING_SECRET) {
      (void)secmem_i_page_release(base, total_len);
      if (err == EAGAIN || err == ENOMEM) {
        return mlock_failed(inner_len, err);
      }
      return secmem_i_fail(err, "memfd_secret mapping failed: %s", strerror(err));
    }
    /* AUTO: this allocation falls back to anonymous locked pages. */
  }
  if (secmem_i_page_protect(base + ps, inner_len, SECMEM_I_PROT_RW) != 0) {
    int err = errno;
    (void)secmem_i_page_release(base, total_len);
    return secmem_i_fail(err == ENOMEM ? ENOMEM : err, "mprotect failed: %s", strerror(err));
  }
  bool locked = secmem_i_page_lock(base + ps, inner_len) == 0;
  if (!locked && g_cache_count > 0) {
    cache_drop_all(); /* cached regions hold locked memory we can give back */
    locked = secmem_i_page_lock(base + ps, inner_len) == 0;
  }
  if (!locked) {
    int err = errno;
    if (atomic_load(&g_policy) == SECMEM_MLOCK_REQUIRED) {
      (void)secmem_i_page_release(base, total_len);
      return mlock_failed(inner_len, err);
    }
    g_bytes_unlocked += inner_len;
  } else {
    g_bytes_locked += inner_len;
  }
  g_bytes_mapped += total_len;
  *out = (struct cached_region){base, total_len, inner_len, locked, false};
  return 0;
}

struct secmem_buf *secmem_i_guarded_new(size_t len, int kind, const void *site) {
  size_t ps = secmem_i_page_size();
  size_t guards = 2 * SECMEM_GUARD_PAGES * ps;
  if (len > SIZE_MAX - SECMEM_CANARY_LEN - guards - ps) {
    secmem_i_fail(ENOMEM, "cannot allocate %zu bytes: the size is too large", len);
    return NULL;
  }
  size_t inner_len = (len + SECMEM_CANARY_LEN + ps - 1) / ps * ps;
  size_t total_len = inner_len + guards;
  size_t phys = secmem_i_page_phys_mem();
  if (inner_len > phys / 2) {
    char want[32], have[32];
    secmem_i_format_size(want, sizeof(want), inner_len);
    secmem_i_format_size(have, sizeof(have), phys);
    secmem_i_fail(ENOMEM,
                  "cannot allocate %s: more than half of physical memory (%s) cannot be kept "
                  "locked",
                  want, have);
    return NULL;
  }
  pthread_once(&g_canary_once, canary_init);

  lock();
  struct secmem_buf *b = handle_alloc();
  if (b == NULL) {
    unlock();
    secmem_i_fail(ENOMEM, "cannot allocate a buffer handle: out of memory");
    return NULL;
  }
  struct cached_region r = {0};
  bool secret = want_secret();
  if (!cache_take(inner_len, secret, &r) && region_map(total_len, inner_len, secret, &r) != 0) {
    int err = errno;
    handle_free(b);
    unlock();
    errno = err;
    return NULL;
  }
  b->magic = SECMEM_I_BUF_MAGIC;
  b->kind = kind;
  b->locked = r.locked;
  b->secret = r.secret;
  b->base = r.base;
  b->total_len = r.total_len;
  b->inner = r.base + SECMEM_GUARD_PAGES * ps;
  b->inner_len = inner_len;
  b->len = len;
  b->data = b->inner + inner_len - len;
  b->site = site;
  b->serial = ++g_serial;
  canary_fill(b); /* data is zero: fresh pages, or wiped before caching */
  b->prev = NULL;
  b->next = atomic_load(&g_live);
  if (b->next != NULL) {
    b->next->prev = b;
  }
  atomic_store(&b->state, SECMEM_I_RW);
  atomic_store(&g_live, b); /* publish only a complete handle */
  if (kind == SECMEM_I_KIND_BUF) {
    g_buffers_live++;
  }
  unlock();
  return b;
}

static void live_unlink(struct secmem_buf *b) {
  if (b->prev != NULL) {
    b->prev->next = b->next;
  } else {
    atomic_store(&g_live, b->next);
  }
  if (b->next != NULL) {
    b->next->prev = b->prev;
  }
  /* b->next is left intact so an emergency walk standing on b can go on. */
  if (b->kind == SECMEM_I_KIND_BUF) {
    g_buffers_live--;
  }
}

/* Make the inner pages writable, verify the canary and wipe them. Returns
 * false when the pages could not be opened (they are then discarded, which
 * drops their contents just as surely). */
static bool open_check_wipe(struct secmem_buf *b, const char *who) {
  if (atomic_load(&b->state) != SECMEM_I_RW &&
      secmem_i_page_protect(b->inner, b->inner_len, SECMEM_I_PROT_RW) != 0) {
    (void)secmem_i_page_discard(b->inner, b->inner_len);
    return false;
  }
  if (!canary_intact(b)) {
    canary_fatal(b, who);
  }
  secmem_wipe(b->inner, b->inner_len);
  return true;
}

void secmem_i_guarded_destroy(struct secmem_buf *b, const char *who) {
  lock();
  secmem_i_guarded_validate(b, who);
  if (atomic_load(&b->state) == SECMEM_I_PURGED) {
    /* Pages were wiped and discarded by the purge; give back the addresses. */
    (void)secmem_i_page_release(b->base, b->total_len);
    g_bytes_mapped -= b->total_len;
    handle_free(b);
    unlock();
    return;
  }
  bool reusable = open_check_wipe(b, who);
  live_unlink(b);
  if (reusable) {
    cache_put_or_release(b->base, b->total_len, b->inner_len, b->locked, b->secret);
  } else {
    (void)secmem_i_page_release(b->base, b->total_len);
    stats_forget_region(b->total_len, b->inner_len, b->locked, b->secret);
  }
  if (!b->locked) {
    g_bytes_unlocked -= b->inner_len;
  }
  handle_free(b);
  unlock();
}

static enum secmem_i_prot prot_of(int state) {
  switch (state) {
  case SECMEM_I_RW:
    return SECMEM_I_PROT_RW;
  case SECMEM_I_RO:
    return SECMEM_I_PROT_READ;
  default:
    return SECMEM_I_PROT_NONE;
  }
}

int secmem_i_guarded_set_state(struct secmem_buf *b, int state, const char *who) {
  lock();
  secmem_i_guarded_validate(b, who);
  if (atomic_load(&b->state) == SECMEM_I_PURGED) {
    unlock();
    return secmem_i_fail(EINVAL, "%s: the buffer was purged", who);
  }
  if (secmem_i_page_protect(b->inner, b->inner_len, prot_of(state)) != 0) {
    int err = errno;
    unlock();
    return secmem_i_fail(err, "%s: mprotect failed: %s", who, strerror(err));
  }
  atomic_store(&b->state, state);
  unlock();
  return 0;
}

int secmem_i_guarded_check(const struct secmem_buf *cb, const char *who) {
  lock();
  struct secmem_buf *b = secmem_i_guarded_validate(cb, who);
  int state = atomic_load(&b->state);
  if (state == SECMEM_I_PURGED) {
    unlock();
    return secmem_i_fail(EINVAL, "%s: the buffer was purged", who);
  }
  if (state == SECMEM_I_NOACCESS &&
      secmem_i_page_protect(b->inner, b->inner_len, SECMEM_I_PROT_READ) != 0) {
    int err = errno;
    unlock();
    return secmem_i_fail(err, "%s: mprotect failed: %s", who, strerror(err));
  }
  bool intact = canary_intact(b);
  if (state == SECMEM_I_NOACCESS) {
    (void)secmem_i_page_protect(b->inner, b->inner_len, SECMEM_I_PROT_NONE);
  }
  if (!intact) {
    canary_fatal(b, who);
  }
  unlock();
  return 0;
}

void secmem_i_guarded_purge(int kind) {
  lock();
  struct secmem_buf *b = atomic_load(&g_live);
  while (b != NULL) {
    struct secmem_buf *next = b->next;
    if (kind < 0 || b->kind == kind) {
      (void)open_check_wipe(b, "secmem_purge");
      live_unlink(b);
      /* Drop the (wiped) pages and their lock; keep the addresses reserved
       * and no-access so the old data pointer faults instead of aliasing. */
      (void)secmem_i_page_discard(b->inner, b->inner_len);
      if (b->locked) {
        g_bytes_locked -= b->inner_len;
      } else {
        g_bytes_unlocked -= b->inner_len;
      }
      if (b->secret) {
        g_bytes_secret -= b->inner_len;
      }
      b->secret = false;
      b->len = 0;
      atomic_store(&b->state, SECMEM_I_PURGED);
    }
    b = next;
  }
  cache_drop_all();
  unlock();
}

void secmem_i_guarded_shutdown(void) {
  secmem_i_guarded_purge(-1); /* wipes every live region */
  lock();
  /* Give back every reservation (purged buffers keep theirs until
   * destroyed), then the handle slabs and the canary template. */
  size_t n = atomic_load(&g_nslabs);
  for (size_t i = 0; i < n; i++) {
    unsigned char *slab = atomic_load(&g_slabs[i]);
    for (size_t j = 0; j < handles_per_slab() && (i + 1 < n || j < g_slab_used); j++) {
      struct secmem_buf *h = (struct secmem_buf *)(void *)(slab + j * sizeof(struct secmem_buf));
      if (h->magic == SECMEM_I_BUF_MAGIC && atomic_load(&h->state) == SECMEM_I_PURGED) {
        (void)secmem_i_page_release(h->base, h->total_len);
      }
    }
    (void)secmem_i_page_release(slab, SLAB_LEN);
    atomic_store(&g_slabs[i], NULL);
  }
  atomic_store(&g_nslabs, 0);
  g_slab_used = 0;
  g_free_head = g_free_tail = NULL;
  g_free_count = 0;
  g_bytes_mapped = g_bytes_locked = g_bytes_unlocked = g_bytes_secret = 0;
  if (g_canary_tmpl != NULL) {
    (void)secmem_i_page_release(g_canary_tmpl, 2 * secmem_i_page_size());
  }
  unlock();
}

size_t secmem_i_guarded_report_leaks(void) {
  size_t n = 0;
  lock();
  for (struct secmem_buf *b = atomic_load(&g_live); b != NULL; b = b->next) {
    if (b->kind != SECMEM_I_KIND_BUF) {
      continue;
    }
    char line[320];
    Dl_info info;
    const char *where = "?";
    uintptr_t off = 0;
    if (b->site != NULL && dladdr(b->site, &info) != 0) {
      /* A symbol when there is one; else object+offset, for addr2line -e. */
      if (info.dli_sname != NULL) {
        where = info.dli_sname;
        off = (uintptr_t)b->site - (uintptr_t)info.dli_saddr;
      } else if (info.dli_fname != NULL) {
        const char *slash = strrchr(info.dli_fname, '/');
        where = slash != NULL ? slash + 1 : info.dli_fname;
        off = (uintptr_t)b->site - (uintptr_t)info.dli_fbase;
      }
    }
    snprintf(line, sizeof(line),
             "secmem: leak: buffer #%llu of %zu bytes, allocated from %p (%s+0x%lx), was never "
             "destroyed\n",
             (unsigned long long)b->serial, b->len, b->site, where, (unsigned long)off);
    secmem_i_page_write_stderr(line);
    n++;
  }
  unlock();
  return n;
}

void secmem_i_guarded_stats(secmem_stats *out) {
  lock();
  out->buffers_live = g_buffers_live;
  out->regions_cached = g_cache_count;
  out->bytes_mapped = g_bytes_mapped;
  out->bytes_locked = g_bytes_locked;
  out->bytes_unlocked = g_bytes_unlocked;
  out->dontdump_failures = g_dontdump_failures;
  out->bytes_secret = g_bytes_secret;
  unlock();
}

void secmem_i_guarded_policy_set(int policy) { atomic_store(&g_policy, policy); }

int secmem_i_guarded_policy_get(void) { return atomic_load(&g_policy); }

void secmem_i_guarded_backing_set(int backing) { atomic_store(&g_backing, backing); }

int secmem_i_guarded_backing_get(void) { return atomic_load(&g_backing); }

void secmem_i_guarded_wipe(struct secmem_buf *b, size_t len) {
  lock();
  int state = atomic_load(&b->state);
  len = len < b->len ? len : b->len;
  if (state == SECMEM_I_RW) {
    secmem_wipe(b->data, len);
  } else if (state == SECMEM_I_RO || state == SECMEM_I_NOACCESS) {
    if (secmem_i_page_protect(b->inner, b->inner_len, SECMEM_I_PROT_RW) == 0) {
      secmem_wipe(b->data, len);
      (void)secmem_i_page_protect(b->inner, b->inner_len, prot_of(state));
    } else {
      (void)secmem_i_page_discard(b->inner, b->inner_len); /* contents gone either way */
    }
  }
  unlock();
}

/* ---- fork --------------------------------------------------------------- */

void secmem_i_guarded_fork_prepare(void) {
  lock();
  /* Secret pages are shared with the child until it has copied them: the
   * parent must not change them (nor let its other threads change them
   * through the library) before the child says it is done. */
  g_fork_pipe[0] = g_fork_pipe[1] = -1;
  g_fork_pipe_error = 0;
  if (g_bytes_secret > 0 && secmem_i_page_pipe(g_fork_pipe) != 0) {
    g_fork_pipe_error = errno;
    g_fork_pipe[0] = g_fork_pipe[1] = -1;
  }
}

void secmem_i_guarded_fork_parent(void) {
  secmem_i_page_close(g_fork_pipe[1]);
  if (g_fork_pipe[0] >= 0 && secmem_i_page_wait_fd(g_fork_pipe[0], 10000) != 0) {
    /* The child is stuck (a debugger?). Nothing of ours is at risk; its
     * copy may now see changes made after the fork. Say so. */
    secmem_i_page_write_stderr("secmem: fork: the child did not finish copying its secret "
                               "memory within 10 s; the parent goes on\n");
  }
  g_fork_pipe[0] = g_fork_pipe[1] = -1;
  unlock();
}

/* Drop a child's shared secret region (it must never write the parent's
 * pages) and mark it purged if it is a user buffer. Returns whether it was
 * an internal region, which the child cannot do without. */
static bool child_drop_secret(struct secmem_buf *b) {
  (void)secmem_i_page_discard(b->inner, b->inner_len);
  g_bytes_secret -= b->inner_len;
  g_bytes_locked -= b->inner_len;
  b->secret = false;
  if (b->kind != SECMEM_I_KIND_BUF) {
    atomic_store(&b->state, SECMEM_I_NOACCESS); /* its pages are a reservation now */
    return true;
  }
  b->len = 0;
  live_unlink(b);
  atomic_store(&b->state, SECMEM_I_PURGED);
  return false;
}

void secmem_i_guarded_fork_child(void) {
  /* The child has one thread and inherited the lock held by it. mlock is not
   * inherited across fork: lock every anonymous region again. Secret regions
   * are locked by the kernel but shared with the parent: give the child its
   * own copy, or, if that cannot be done safely (no handshake with the
   * parent, or the copy fails), drop the child's view of them. A child that
   * loses internal regions (the key, heap arenas) cannot go on: it aborts
   * with a message, after every shared page is out of its reach. Cached
   * regions hold nothing; give them back. */
  cache_drop_all();
  bool synced = g_fork_pipe[1] >= 0 || g_bytes_secret == 0;
  bool lost_internal = false, lost_user = false;
  for (struct secmem_buf *b = atomic_load(&g_live); b != NULL;) {
    struct secmem_buf *next = b->next;
    if (b->secret) {
      if (!synced || secmem_i_page_secret_privatize(b->inner, b->inner_len,
                                                    prot_of(atomic_load(&b->state))) != 0) {
        if (child_drop_secret(b)) {
          lost_internal = true;
        } else {
          lost_user = true;
        }
      }
    } else if (b->locked && secmem_i_page_lock(b->inner, b->inner_len) != 0) {
      b->locked = false;
      g_bytes_locked -= b->inner_len;
      g_bytes_unlocked += b->inner_len;
    }
    b = next;
  }
  secmem_i_page_close(g_fork_pipe[0]);
  if (g_fork_pipe[1] >= 0) {
    secmem_i_page_signal_fd(g_fork_pipe[1]);
  }
  g_fork_pipe[0] = g_fork_pipe[1] = -1;
  if (lost_internal) {
    char msg[200];
    snprintf(msg, sizeof(msg),
             "fork: the child could not get its own copy of the library's secret memory (%s)",
             synced ? "memfd_secret copy failed" : strerror(g_fork_pipe_error));
    secmem_i_fatal(msg); /* wipes only what is the child's own now */
  }
  if (lost_user) {
    secmem_i_page_write_stderr("secmem: fork: some secret buffers could not be copied into the "
                               "child and were purged there\n");
  }
  unlock(); /* taken in prepare by this very thread */
}

/* ---- the emergency path ------------------------------------------------- */

/* Take the lock if it can be had within about 200 ms and is not held by the
 * interrupted code of this very thread. */
static bool emergency_lock(void) {
  if (atomic_load(&g_owner) == (uintptr_t)pthread_self()) {
    return false;
  }
  for (int i = 0; i < 2000; i++) {
    if (pthread_mutex_trylock(&g_lock) == 0) {
      atomic_store(&g_owner, (uintptr_t)pthread_self());
      return true;
    }
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  return false;
}

void secmem_i_guarded_emergency_wipe(void) {
  /* With the lock, no other thread can change a region under us; without it
   * the interrupted holder is frozen and the list is still walkable. The lock
   * is kept: the process is about to end, and no thread may unwipe. */
  (void)emergency_lock();
  for (struct secmem_buf *b = atomic_load(&g_live); b != NULL; b = b->next) {
    int state = atomic_load(&b->state);
    if (state == SECMEM_I_DEAD || state == SECMEM_I_PURGED || b->inner == NULL) {
      continue;
    }
    if (state != SECMEM_I_RW &&
        secmem_i_page_protect(b->inner, b->inner_len, SECMEM_I_PROT_RW) != 0) {
      (void)secmem_i_page_discard(b->inner, b->inner_len);
      continue;
    }
    secmem_wipe(b->inner, b->inner_len);
    (void)secmem_i_page_protect(b->inner, b->inner_len, SECMEM_I_PROT_NONE);
    atomic_store(&b->state, SECMEM_I_NOACCESS);
  }
}

void secmem_i_fatal(const char *what) {
  static _Atomic int dying;
  if (atomic_exchange(&dying, 1) == 0) {
    secmem_i_guarded_emergency_wipe();
    secmem_i_page_write_stderr("secmem: ");
    secmem_i_page_write_stderr(what);
    secmem_i_page_write_stderr("; every secret wiped, aborting\n");
    abort();
  }
  for (;;) {
    pause(); /* another thread is already wiping and will abort */
  }
}
