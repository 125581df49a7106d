/*
 * heap.c - owns the secure heap: many small secrets in few locked pages.
 *
 * An arena is one guarded allocation (guard pages, locked, dump-excluded,
 * memfd_secret when chosen) of SECMEM_HEAP_ARENA_LEN bytes of inner pages,
 * serving one size class:
 *
 *   | canary | slot 0 data | canary | slot 1 data | ... | slot n-1 | canary |
 *    \____ stride = SECMEM_CANARY_LEN + class ____/                  trailing
 *
 * Every canary is written when the arena is made and never changes, so an
 * overflow from slot i (into canary i+1) and an underflow into canary i are
 * both caught on free and by secmem_heap_check. The unused tail of a slot
 * (a 60-byte request in a 64-byte slot) is filled with the canary pattern
 * too, so an overflow by even one byte is caught. Slot data is 16-byte
 * aligned, zero when handed out (arenas start zeroed; free wipes).
 *
 * Bookkeeping (bitmaps, the sorted arena table, large allocations) lives in
 * ordinary memory outside the arenas: it holds no secret. Larger requests
 * get a guarded allocation each. Arenas come on demand up to the limit; an
 * arena left empty is released, except one spare per class to absorb churn.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

#define NUM_CLASSES 8 /* 16, 32, ... 2048 */
#define MIN_CLASS 16u

struct arena {
  struct secmem_buf *region;
  unsigned char *start; /* first canary */
  size_t cls;           /* class index */
  size_t slot_len;      /* data bytes per slot */
  size_t stride;
  size_t nslots, used;
  size_t hint; /* bitmap word to search first */
  uint64_t *bitmap;
  uint16_t *lens; /* requested length of each used slot */
  struct arena *next; /* in its class */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct arena *g_classes[NUM_CLASSES];
static struct arena **g_sorted; /* by start address, for lookups */
static size_t g_narenas, g_sorted_cap;
static struct secmem_buf **g_large;
static size_t *g_large_len; /* requested lengths, parallel to g_large */
static size_t g_nlarge, g_large_cap;
static size_t g_limit, g_bytes_held, g_bytes_in_use, g_peak, g_slots_in_use;
static unsigned char g_canary[SECMEM_CANARY_LEN];
static bool g_canary_ready;

static size_t class_of(size_t len) {
  size_t cls = 0;
  size_t size = MIN_CLASS;
  while (size < len) {
    size <<= 1;
    cls++;
  }
  return cls;
}

static size_t arena_data_len(void) { return SECMEM_HEAP_ARENA_LEN - SECMEM_CANARY_LEN; }

static unsigned char *slot_data(const struct arena *a, size_t i) {
  return a->start + i * a->stride + SECMEM_CANARY_LEN;
}

static bool canary_ok(const unsigned char *c) {
  return sodium_memcmp(c, g_canary, SECMEM_CANARY_LEN) == 0;
}

/* The tail of an allocation, after the requested bytes, holds the canary
 * pattern (indexed from the tail's start). */
static void tail_fill(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    p[i] = g_canary[i % SECMEM_CANARY_LEN];
  }
}

static bool tail_ok(const unsigned char *p, size_t n) {
  unsigned char diff = 0;
  for (size_t i = 0; i < n; i++) {
    diff |= (unsigned char)(p[i] ^ g_canary[i % SECMEM_CANARY_LEN]);
  }
  return diff == 0;
}

static SECMEM_I_NORETURN void slot_fatal(const struct arena *a, const char *who) {
  char msg[160];
  snprintf(msg, sizeof(msg), "%s: canary of a %zu-byte heap slot overwritten (heap overflow or "
                             "underflow)",
           who, a->slot_len);
  secmem_i_fatal(msg);
}

/* ---- the arena table ---------------------------------------------------- */

static int sorted_insert(struct arena *a) {
  if (g_narenas == g_sorted_cap) {
    size_t cap = g_sorted_cap != 0 ? 2 * g_sorted_cap : 16;
    struct arena **n = realloc(g_sorted, cap * sizeof(*n));
    if (n == NULL) {
      return -1;
    }
    g_sorted = n;
    g_sorted_cap = cap;
  }
  size_t i = g_narenas;
  while (i > 0 && g_sorted[i - 1]->start > a->start) {
    g_sorted[i] = g_sorted[i - 1];
    i--;
  }
  g_sorted[i] = a;
  g_narenas++;
  return 0;
}

static void sorted_remove(struct arena *a) {
  for (size_t i = 0; i < g_narenas; i++) {
    if (g_sorted[i] == a) {
      memmove(&g_sorted[i], &g_sorted[i + 1], (g_narenas - i - 1) * sizeof(g_sorted[0]));
      g_narenas--;
      return;
    }
  }
}

static struct arena *arena_containing(const unsigned char *p) {
  size_t lo = 0, hi = g_narenas;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    struct arena *a = g_sorted[mid];
    if (p < a->start) {
      hi = mid;
    } else if (p >= a->start + arena_data_len()) {
      lo = mid + 1;
    } else {
      return a;
    }
  }
  return NULL;
}

static int over_limit(const char *what) {
  char lim[32];
  secmem_i_format_size(lim, sizeof(lim), g_limit);
  return secmem_i_fail(ENOMEM, "secure heap limit of %s reached: cannot add %s", lim, what);
}

static struct arena *arena_new(size_t cls) {
  if (g_limit != 0 && g_bytes_held + SECMEM_HEAP_ARENA_LEN > g_limit) {
    over_limit("another arena");
    return NULL;
  }
  if (!g_canary_ready) {
    randombytes_buf(g_canary, sizeof(g_canary));
    g_canary_ready = true;
  }
  struct arena *a = calloc(1, sizeof(*a));
  if (a == NULL) {
    secmem_i_fail(ENOMEM, "secure heap: out of memory for bookkeeping");
    return NULL;
  }
  a->cls = cls;
  a->slot_len = (size_t)MIN_CLASS << cls;
  a->stride = a->slot_len + SECMEM_CANARY_LEN;
  a->nslots = (arena_data_len() - SECMEM_CANARY_LEN) / a->stride;
  a->bitmap = calloc((a->nslots + 63) / 64, sizeof(uint64_t));
  a->lens = calloc(a->nslots, sizeof(uint16_t));
  if (a->lens == NULL) {
    free(a->bitmap);
    a->bitmap = NULL;
  }
  a->region = a->bitmap != NULL
                  ? secmem_i_guarded_new(arena_data_len(), SECMEM_I_KIND_INTERNAL, NULL)
                  : NULL;
  if (a->region == NULL) {
    int err = a->bitmap == NULL ? ENOMEM : errno;
    char why[400];
    snprintf(why, sizeof(why), "%s", a->bitmap == NULL ? "out of memory" : secmem_last_error());
    free(a->bitmap);
    free(a->lens);
    free(a);
    secmem_i_fail(err, "secure heap: cannot map an arena: %s", why);
    return NULL;
  }
  a->start = a->region->data;
  if (sorted_insert(a) != 0) {
    secmem_i_guarded_destroy(a->region, "secmem_malloc");
    free(a->bitmap);
    free(a->lens);
    free(a);
    secmem_i_fail(ENOMEM, "secure heap: out of memory for bookkeeping");
    return NULL;
  }
  for (size_t i = 0; i <= a->nslots; i++) {
    memcpy(a->start + i * a->stride, g_canary, SECMEM_CANARY_LEN); /* i == nslots: trailing */
  }
  a->next = g_classes[cls];
  g_classes[cls] = a;
  g_bytes_held += SECMEM_HEAP_ARENA_LEN;
  return a;
}

static void arena_release(struct arena *a) {
  struct arena **pp = &g_classes[a->cls];
  while (*pp != a) {
    pp = &(*pp)->next;
  }
  *pp = a->next;
  sorted_remove(a);
  secmem_i_guarded_destroy(a->region, "secure heap"); /* wipes, checks, releases */
  g_bytes_held -= SECMEM_HEAP_ARENA_LEN;
  free(a->bitmap);
  free(a->lens);
  free(a);
}

/* Take a free slot for len bytes; the arena has one. */
static void *slot_take(struct arena *a, size_t len) {
  size_t words = (a->nslots + 63) / 64;
  for (size_t n = 0; n < words; n++) {
    size_t w = (a->hint + n) % words;
    uint64_t free_bits = ~a->bitmap[w];
    if (w == words - 1 && a->nslots % 64 != 0) {
      free_bits &= ((uint64_t)1 << (a->nslots % 64)) - 1;
    }
    if (free_bits != 0) {
      size_t bit = (size_t)__builtin_ctzll(free_bits);
      a->bitmap[w] |= (uint64_t)1 << bit;
      a->hint = w;
      a->used++;
      size_t i = w * 64 + bit;
      a->lens[i] = (uint16_t)len;
      tail_fill(slot_data(a, i) + len, a->slot_len - len);
      return slot_data(a, i);
    }
  }
  return NULL; /* not reached: callers check a->used < a->nslots */
}

/* ---- large allocations ---------------------------------------------------- */

static void *large_new(size_t len) {
  size_t ps = secmem_i_page_size();
  size_t held = (len + SECMEM_CANARY_LEN + ps - 1) / ps * ps;
  if (g_limit != 0 && (held > g_limit || g_bytes_held + held > g_limit)) {
    over_limit("a large allocation");
    return NULL;
  }
  if (g_nlarge == g_large_cap) {
    size_t cap = g_large_cap != 0 ? 2 * g_large_cap : 16;
    struct secmem_buf **n = realloc(g_large, cap * sizeof(*n));
    if (n != NULL) {
      g_large = n;
    }
    size_t *nl = n != NULL ? realloc(g_large_len, cap * sizeof(*nl)) : NULL;
    if (nl == NULL) {
      secmem_i_fail(ENOMEM, "secure heap: out of memory for bookkeeping");
      return NULL;
    }
    g_large_len = nl;
    g_large_cap = cap;
  }
  /* Round the length up to 16 so the end-aligned data is 16-byte aligned. */
  size_t aligned = (len + 15) & ~(size_t)15;
  struct secmem_buf *b = secmem_i_guarded_new(aligned, SECMEM_I_KIND_INTERNAL, NULL);
  if (b == NULL) {
    return NULL;
  }
  tail_fill(b->data + len, aligned - len);
  g_large_len[g_nlarge] = len;
  g_large[g_nlarge++] = b;
  g_bytes_held += b->inner_len;
  g_bytes_in_use += b->len;
  return b->data;
}

static bool large_free(void *p) {
  for (size_t i = 0; i < g_nlarge; i++) {
    struct secmem_buf *b = g_large[i];
    if (b->data == p) {
      if (!tail_ok(b->data + g_large_len[i], b->len - g_large_len[i])) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "secmem_free: canary after a %zu-byte heap allocation overwritten (heap "
                 "overflow)",
                 g_large_len[i]);
        secmem_i_fatal(msg);
      }
      g_large[i] = g_large[--g_nlarge];
      g_large_len[i] = g_large_len[g_nlarge];
      g_bytes_held -= b->inner_len;
      g_bytes_in_use -= b->len;
      secmem_i_guarded_destroy(b, "secmem_free"); /* wipes and checks its canary */
      return true;
    }
  }
  return false;
}

/* ---- the API ---------------------------------------------------------------- */

void *secmem_malloc(size_t len) {
  if (secmem_i_ensure_init() != 0) {
    return NULL;
  }
  void *p = NULL;
  pthread_mutex_lock(&g_lock);
  if (len > SIZE_MAX / 2) {
    secmem_i_fail(ENOMEM, "secmem_malloc: %zu bytes is too large", len);
  } else if (len > SECMEM_HEAP_MAX_SLOT) {
    p = large_new(len);
  } else {
    size_t cls = class_of(len);
    struct arena *a = g_classes[cls];
    while (a != NULL && a->used == a->nslots) {
      a = a->next;
    }
    if (a == NULL) {
      a = arena_new(cls);
    } else if (a != g_classes[cls]) {
      /* Move the arena with room to the front: the next call finds it first. */
      struct arena **pp = &g_classes[cls];
      while (*pp != a) {
        pp = &(*pp)->next;
      }
      *pp = a->next;
      a->next = g_classes[cls];
      g_classes[cls] = a;
    }
    if (a != NULL) {
      p = slot_take(a, len);
      g_bytes_in_use += a->slot_len;
    }
  }
  if (p != NULL) {
    g_slots_in_use++;
    if (g_bytes_in_use > g_peak) {
      g_peak = g_bytes_in_use;
    }
  }
  pthread_mutex_unlock(&g_lock);
  return p;
}

void *secmem_calloc(size_t n, size_t len) {
  if (len != 0 && n > SIZE_MAX / len) {
    secmem_i_fail(ENOMEM, "secmem_calloc: %zu x %zu bytes overflows", n, len);
    return NULL;
  }
  return secmem_malloc(n * len); /* heap memory is always handed out zeroed */
}

void secmem_free(void *p) {
  if (p == NULL) {
    return;
  }
  unsigned char *u = p;
  pthread_mutex_lock(&g_lock);
  struct arena *a = arena_containing(u);
  if (a == NULL) {
    bool found = large_free(p);
    if (found) {
      g_slots_in_use--;
    }
    pthread_mutex_unlock(&g_lock);
    if (!found) {
      secmem_i_fatal("secmem_free: pointer was not allocated by secmem_malloc, or was already "
                     "freed");
    }
    return;
  }
  size_t off = (size_t)(u - a->start);
  size_t i = off / a->stride;
  if (off % a->stride != SECMEM_CANARY_LEN || i >= a->nslots) {
    secmem_i_fatal("secmem_free: pointer is inside the secure heap but not the start of a slot");
  }
  uint64_t bit = (uint64_t)1 << (i % 64);
  if ((a->bitmap[i / 64] & bit) == 0) {
    secmem_i_fatal("secmem_free: slot is not allocated (double free)");
  }
  if (!canary_ok(u - SECMEM_CANARY_LEN) || !canary_ok(u + a->slot_len) ||
      !tail_ok(u + a->lens[i], a->slot_len - a->lens[i])) {
    slot_fatal(a, "secmem_free");
  }
  secmem_wipe(u, a->slot_len);
  a->bitmap[i / 64] &= ~bit;
  a->used--;
  g_bytes_in_use -= a->slot_len;
  g_slots_in_use--;
  if (a->used == 0) {
    /* Keep one empty arena per class; release any other. */
    size_t empty = 0;
    for (struct arena *o = g_classes[a->cls]; o != NULL; o = o->next) {
      empty += o->used == 0;
    }
    if (empty > 1) {
      arena_release(a);
    }
  }
  pthread_mutex_unlock(&g_lock);
}

int secmem_heap_check(void) {
  pthread_mutex_lock(&g_lock);
  for (size_t k = 0; k < g_narenas; k++) {
    struct arena *a = g_sorted[k];
    for (size_t i = 0; i <= a->nslots; i++) {
      if (!canary_ok(a->start + i * a->stride)) {
        slot_fatal(a, "secmem_heap_check");
      }
      if (i < a->nslots && (a->bitmap[i / 64] & ((uint64_t)1 << (i % 64))) &&
          !tail_ok(slot_data(a, i) + a->lens[i], a->slot_len - a->lens[i])) {
        slot_fatal(a, "secmem_heap_check");
      }
    }
  }
  for (size_t i = 0; i < g_nlarge; i++) {
    (void)secmem_i_guarded_check(g_large[i], "secmem_heap_check");
    if (!tail_ok(g_large[i]->data + g_large_len[i], g_large[i]->len - g_large_len[i])) {
      secmem_i_fatal("secmem_heap_check: canary after a large heap allocation overwritten (heap "
                     "overflow)");
    }
  }
  pthread_mutex_unlock(&g_lock);
  return 0;
}

int secmem_heap_set_limit(size_t max_bytes) {
  pthread_mutex_lock(&g_lock);
  g_limit = max_bytes;
  pthread_mutex_unlock(&g_lock);
  return 0;
}

int secmem_heap_get_stats(secmem_heap_stats *out) {
  if (out == NULL) {
    return secmem_i_fail(EINVAL, "secmem_heap_get_stats: out is NULL");
  }
  pthread_mutex_lock(&g_lock);
  size_t locked = 0;
  for (size_t k = 0; k < g_narenas; k++) {
    locked += g_sorted[k]->region->locked ? g_sorted[k]->region->inner_len : 0;
  }
  for (size_t i = 0; i < g_nlarge; i++) {
    locked += g_large[i]->locked ? g_large[i]->inner_len : 0;
  }
  *out = (secmem_heap_stats){g_narenas, g_slots_in_use, g_bytes_in_use, locked, g_peak, g_limit};
  pthread_mutex_unlock(&g_lock);
  return 0;
}

void secmem_i_heap_wipe_all(void) {
  pthread_mutex_lock(&g_lock);
  for (size_t k = 0; k < g_narenas; k++) {
    struct arena *a = g_sorted[k];
    for (size_t i = 0; i < a->nslots; i++) {
      if (a->bitmap[i / 64] & ((uint64_t)1 << (i % 64))) {
        secmem_wipe(slot_data(a, i), a->lens[i]); /* the tail's canary stays */
      }
    }
  }
  for (size_t i = 0; i < g_nlarge; i++) {
    secmem_i_guarded_wipe(g_large[i], g_large_len[i]);
  }
  pthread_mutex_unlock(&g_lock);
}

void secmem_i_heap_shutdown(void) {
  pthread_mutex_lock(&g_lock);
  while (g_narenas > 0) {
    struct arena *a = g_sorted[g_narenas - 1];
    a->used = 0;
    arena_release(a); /* wipes and unmaps, allocations or not */
  }
  for (size_t i = 0; i < g_nlarge; i++) {
    secmem_i_guarded_destroy(g_large[i], "secure heap (shutdown)");
  }
  free(g_large);
  free(g_large_len);
  free(g_sorted);
  g_large = NULL;
  g_large_len = NULL;
  g_sorted = NULL;
  g_nlarge = g_large_cap = g_sorted_cap = 0;
  g_bytes_held = g_bytes_in_use = g_slots_in_use = 0;
  pthread_mutex_unlock(&g_lock);
}

void secmem_i_heap_fork_prepare(void) { pthread_mutex_lock(&g_lock); }

void secmem_i_heap_fork_parent(void) { pthread_mutex_unlock(&g_lock); }

void secmem_i_heap_fork_child(void) { pthread_mutex_unlock(&g_lock); }
