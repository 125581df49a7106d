/*
 * test_heap.c - unit suite for the secure heap (secmem_malloc, secmem_calloc,
 * secmem_free, secmem_heap_*): sizes and alignment, zero on hand-out and wipe
 * on free, errors, statistics, arena release, the limit, locking and dump
 * exclusion seen from /proc, the 10,000-secret density target, purge, and
 * concurrent use.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "secmem.h"

#define NUM_CLASSES 8 /* 16, 32, ... SECMEM_HEAP_MAX_SLOT */

static size_t page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static secmem_heap_stats heap_stats(void) {
  secmem_heap_stats st;
  memset(&st, 0xa5, sizeof(st));
  CU_ASSERT_EQUAL_FATAL(secmem_heap_get_stats(&st), 0);
  return st;
}

static bool all_zero(const unsigned char *p, size_t len) {
  unsigned char acc = 0;
  for (size_t i = 0; i < len; i++) {
    acc |= p[i];
  }
  return acc == 0;
}

static bool holds_generated(const unsigned char *p, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; i++) {
    if (p[i] != gen_byte(seed, i)) {
      return false;
    }
  }
  return true;
}

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

/* The bytes a request of len may use: len 0 still gets a 16-byte slot. */
static size_t usable(size_t len) { return len; }

/* The library's "64 KiB" style, for checking messages that name a size. */
static void format_size(char *out, size_t out_len, size_t n) {
  static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  while (n >= 1024 && n % 1024 == 0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
    n /= 1024;
    unit++;
  }
  snprintf(out, out_len, "%zu %s", n, units[unit]);
}

/* With nothing allocated since base was taken: no live slot or byte more,
 * and locked memory is exactly the arenas kept (at most one spare per class)
 * plus whatever base already held outside arenas. */
static void assert_back_to(const secmem_heap_stats *base) {
  secmem_heap_stats st = heap_stats();
  CU_ASSERT_EQUAL(st.slots_in_use, base->slots_in_use);
  CU_ASSERT_EQUAL(st.bytes_in_use, base->bytes_in_use);
  CU_ASSERT_TRUE(st.arenas <= base->arenas + NUM_CLASSES);
  CU_ASSERT_EQUAL(st.bytes_locked - st.arenas * SECMEM_HEAP_ARENA_LEN,
                  base->bytes_locked - base->arenas * SECMEM_HEAP_ARENA_LEN);
  CU_ASSERT_TRUE(st.peak_in_use >= base->peak_in_use);
}

/* ---- sizes, alignment, zero, distinctness --------------------------------- */

static void test_sizes(void) {
  size_t sizes[32];
  size_t n = 0;
  sizes[n++] = 0;
  sizes[n++] = 1;
  sizes[n++] = 15;
  for (size_t c = 16; c <= SECMEM_HEAP_MAX_SLOT; c <<= 1) {
    sizes[n++] = c; /* 16 ... 2048 */
    sizes[n++] = c + 1; /* 17 ... 2049 */
  }
  sizes[n++] = 4096;
  sizes[n++] = (size_t)1 << 20;
  CU_ASSERT_EQUAL_FATAL(n, 3 + 2 * NUM_CLASSES + 2);

  secmem_heap_stats base = heap_stats();
  unsigned char *p[32];
  for (size_t i = 0; i < n; i++) {
    p[i] = secmem_malloc(sizes[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
    CU_ASSERT_TRUE(aligned16(p[i]));
    CU_ASSERT_TRUE(all_zero(p[i], usable(sizes[i])));
    gen_fill(p[i], usable(sizes[i]), 100 + (unsigned)i); /* writable over the whole length */
  }
  /* Each holds its own bytes once all are live: no two overlap. */
  for (size_t i = 0; i < n; i++) {
    CU_ASSERT_TRUE(holds_generated(p[i], usable(sizes[i]), 100 + (unsigned)i));
    for (size_t j = 0; j < i; j++) {
      CU_ASSERT_PTR_NOT_EQUAL(p[i], p[j]);
    }
  }
  secmem_heap_stats live = heap_stats();
  CU_ASSERT_EQUAL(live.slots_in_use, base.slots_in_use + n);
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  for (size_t i = 0; i < n; i++) {
    secmem_free(p[i]);
  }
  assert_back_to(&base);
}

static void test_documented_layout(void) {
  /* Slots of one class sit SECMEM_CANARY_LEN + class apart (each behind its
   * own canary); a request of SECMEM_HEAP_MAX_SLOT bytes comes from an arena
   * of SECMEM_HEAP_ARENA_LEN bytes, one byte more gets a mapping of its own. */
  CU_ASSERT_EQUAL(SECMEM_HEAP_MAX_SLOT, 2048);
  CU_ASSERT_EQUAL(SECMEM_HEAP_ARENA_LEN, 64 * 1024);
  for (size_t c = 16; c <= SECMEM_HEAP_MAX_SLOT; c <<= 1) {
    unsigned char *p[8];
    for (size_t i = 0; i < 8; i++) {
      p[i] = secmem_malloc(c);
      CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
    }
    size_t min_gap = SIZE_MAX;
    for (size_t i = 0; i < 8; i++) {
      for (size_t j = 0; j < 8; j++) {
        if (p[j] > p[i] && (size_t)(p[j] - p[i]) < min_gap) {
          min_gap = (size_t)(p[j] - p[i]);
        }
      }
    }
    CU_ASSERT_EQUAL(min_gap, c + SECMEM_CANARY_LEN);
    struct smaps_info s;
    CU_ASSERT_TRUE(smaps_lookup(p[0], &s));
    CU_ASSERT_EQUAL(s.size_kb * 1024, SECMEM_HEAP_ARENA_LEN);
    for (size_t i = 0; i < 8; i++) {
      secmem_free(p[i]);
    }
  }
  unsigned char *big = secmem_malloc(SECMEM_HEAP_MAX_SLOT + 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(big);
  struct smaps_info s;
  CU_ASSERT_TRUE(smaps_lookup(big, &s));
  CU_ASSERT_EQUAL(s.size_kb * 1024, page()); /* 2049 bytes + canary fit one page */
  secmem_free(big);
}

/* ---- zero on hand-out, wipe on free ---------------------------------------- */

static void test_wipe_on_free_seen_from_outside(void) {
  const unsigned seed = 0x5ec7e7u;
  unsigned char *keep = secmem_malloc(64); /* a neighbour stays live meanwhile */
  unsigned char *p = secmem_malloc(64);
  unsigned char *big = secmem_malloc(4096);
  CU_ASSERT_PTR_NOT_NULL_FATAL(keep);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_PTR_NOT_NULL_FATAL(big);
  gen_fill(p, 64, seed);
  gen_fill(big, 4096, seed + 1);
  CU_ASSERT_TRUE(scan_self_for_generated(seed, 64) >= 1); /* control: the scan sees it */
  CU_ASSERT_TRUE(scan_self_for_generated(seed + 1, 64) >= 1);
  secmem_free(p);
  secmem_free(big);
  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 64), 0);
  CU_ASSERT_EQUAL(scan_self_for_generated(seed + 1, 64), 0);
  secmem_free(keep);
}

static void test_reused_memory_is_zero(void) {
  enum { N = 40 };
  for (size_t len = 1; len <= 4096; len = len * 2 + 3) { /* 1, 5, 13, ... 2045, 4093 */
    unsigned char *old[N];
    for (size_t i = 0; i < N; i++) {
      old[i] = secmem_malloc(len);
      CU_ASSERT_PTR_NOT_NULL_FATAL(old[i]);
      gen_fill(old[i], len, 7000 + (unsigned)i);
    }
    for (size_t i = 0; i < N; i++) {
      secmem_free(old[i]);
    }
    size_t reused = 0;
    unsigned char *fresh[N];
    for (size_t i = 0; i < N; i++) {
      fresh[i] = secmem_malloc(len);
      CU_ASSERT_PTR_NOT_NULL_FATAL(fresh[i]);
      CU_ASSERT_TRUE(all_zero(fresh[i], len));
      for (size_t j = 0; j < N; j++) {
        reused += fresh[i] == old[j];
      }
    }
    CU_ASSERT_TRUE(reused > 0); /* the check above really looked at reused memory */
    for (size_t i = 0; i < N; i++) {
      secmem_free(fresh[i]);
    }
  }
}

/* ---- errors ------------------------------------------------------------------ */

static void test_calloc(void) {
  secmem_heap_stats base = heap_stats();
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_calloc(SIZE_MAX / 2, 3));
  CU_ASSERT_EQUAL(errno, ENOMEM);
  CU_ASSERT_PTR_NOT_NULL(strstr(secmem_last_error(), "overflow"));
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_calloc(3, SIZE_MAX / 2));
  CU_ASSERT_EQUAL(errno, ENOMEM);
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_calloc(SIZE_MAX, SIZE_MAX));
  CU_ASSERT_EQUAL(errno, ENOMEM);
  CU_ASSERT_EQUAL(heap_stats().slots_in_use, base.slots_in_use);

  /* Zeroed, also when the memory was used before. */
  for (int round = 0; round < 2; round++) {
    unsigned char *p = secmem_calloc(10, 100);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_TRUE(aligned16(p));
    CU_ASSERT_TRUE(all_zero(p, 1000));
    gen_fill(p, 1000, 31);
    secmem_free(p);
  }
  unsigned char *big = secmem_calloc(3, 3000);
  CU_ASSERT_PTR_NOT_NULL_FATAL(big);
  CU_ASSERT_TRUE(all_zero(big, 9000));
  secmem_free(big);
  void *z1 = secmem_calloc(0, 5);
  void *z2 = secmem_calloc(5, 0);
  CU_ASSERT_PTR_NOT_NULL(z1);
  CU_ASSERT_PTR_NOT_NULL(z2);
  CU_ASSERT_PTR_NOT_EQUAL(z1, z2);
  secmem_free(z1);
  secmem_free(z2);
  assert_back_to(&base);
}

static void test_huge_fails_cleanly(void) {
  unsigned char *keep = secmem_malloc(48);
  CU_ASSERT_PTR_NOT_NULL_FATAL(keep);
  gen_fill(keep, 48, 12);
  secmem_heap_stats base = heap_stats();

  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_malloc(SIZE_MAX));
  CU_ASSERT_EQUAL(errno, ENOMEM);
  CU_ASSERT_PTR_NOT_NULL(strstr(secmem_last_error(), "too large"));
  size_t huge[] = {SIZE_MAX - 1, SIZE_MAX - 64, SIZE_MAX - 4096, SIZE_MAX / 2, (size_t)1 << 46};
  for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
    errno = 0;
    CU_ASSERT_PTR_NULL(secmem_malloc(huge[i]));
    CU_ASSERT_EQUAL(errno, ENOMEM);
    CU_ASSERT_TRUE(strlen(secmem_last_error()) > 0);
  }
  secmem_heap_stats after = heap_stats();
  CU_ASSERT_EQUAL(after.slots_in_use, base.slots_in_use);
  CU_ASSERT_EQUAL(after.bytes_in_use, base.bytes_in_use);
  CU_ASSERT_EQUAL(after.bytes_locked, base.bytes_locked);
  CU_ASSERT_TRUE(holds_generated(keep, 48, 12));
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  secmem_free(keep);
}

static void test_free_null(void) {
  secmem_heap_stats base = heap_stats();
  secmem_free(NULL);
  secmem_heap_stats after = heap_stats();
  CU_ASSERT_EQUAL(memcmp(&base, &after, sizeof(base)), 0);
  errno = 0;
  CU_ASSERT_EQUAL(secmem_heap_get_stats(NULL), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
}

/* ---- check, stats, arenas ------------------------------------------------------ */

static uint32_t xorshift(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static void test_check_many_live(void) {
  enum { N = 3000 };
  static unsigned char *p[N];
  static size_t len[N];
  uint32_t rng = 0x1234567u;
  secmem_heap_stats base = heap_stats();
  for (size_t i = 0; i < N; i++) {
    len[i] = xorshift(&rng) % 3001;
    p[i] = secmem_malloc(len[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
    gen_fill(p[i], len[i], 20000 + (unsigned)i);
  }
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  CU_ASSERT_EQUAL(heap_stats().slots_in_use, base.slots_in_use + N);
  size_t bad = 0;
  for (size_t i = 0; i < N; i += 2) { /* free every other one, check again */
    bad += !holds_generated(p[i], len[i], 20000 + (unsigned)i);
    secmem_free(p[i]);
  }
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  for (size_t i = 1; i < N; i += 2) {
    bad += !holds_generated(p[i], len[i], 20000 + (unsigned)i);
    secmem_free(p[i]);
  }
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  assert_back_to(&base);
}

static void test_stats(void) {
  secmem_heap_stats base = heap_stats();
  CU_ASSERT_EQUAL(base.limit, 0);
  CU_ASSERT_TRUE(base.peak_in_use >= base.bytes_in_use);
  CU_ASSERT_EQUAL(base.bytes_locked % page(), 0);

  /* One small slot: counted at its class size. */
  unsigned char *s = secmem_malloc(100);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  secmem_heap_stats st = heap_stats();
  CU_ASSERT_EQUAL(st.slots_in_use, base.slots_in_use + 1);
  CU_ASSERT_EQUAL(st.bytes_in_use, base.bytes_in_use + 128);
  CU_ASSERT_TRUE(st.peak_in_use >= st.bytes_in_use);
  CU_ASSERT_EQUAL(st.bytes_locked - base.bytes_locked,
                  (st.arenas - base.arenas) * SECMEM_HEAP_ARENA_LEN);

  /* One large allocation: its data and its whole locked inner pages. */
  secmem_heap_stats before_large = st;
  unsigned char *l = secmem_malloc(8192);
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  st = heap_stats();
  CU_ASSERT_EQUAL(st.slots_in_use, before_large.slots_in_use + 1);
  CU_ASSERT_EQUAL(st.bytes_in_use, before_large.bytes_in_use + 8192);
  CU_ASSERT_EQUAL(st.arenas, before_large.arenas);
  CU_ASSERT_EQUAL(st.bytes_locked, before_large.bytes_locked + 3 * page()); /* canary: 1 page */

  /* 32 slots of 2048 bytes need two arenas of that class (31 slots each), so
   * at least one new arena appears and is counted as locked. */
  secmem_heap_stats before_fill = st;
  unsigned char *f[32];
  for (size_t i = 0; i < 32; i++) {
    f[i] = secmem_malloc(2048);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f[i]);
  }
  st = heap_stats();
  CU_ASSERT_EQUAL(st.slots_in_use, before_fill.slots_in_use + 32);
  CU_ASSERT_EQUAL(st.bytes_in_use, before_fill.bytes_in_use + 32 * 2048);
  CU_ASSERT_TRUE(st.arenas >= before_fill.arenas + 1);
  CU_ASSERT_EQUAL(st.bytes_locked - before_fill.bytes_locked,
                  (st.arenas - before_fill.arenas) * SECMEM_HEAP_ARENA_LEN);
  size_t high = st.bytes_in_use;
  CU_ASSERT_TRUE(st.peak_in_use >= high);

  for (size_t i = 0; i < 32; i++) {
    secmem_free(f[i]);
  }
  secmem_free(l);
  secmem_free(s);
  st = heap_stats();
  CU_ASSERT_TRUE(st.peak_in_use >= high); /* the peak stays */
  assert_back_to(&base);
}

static void test_empty_arenas_released(void) {
  /* 64-byte slots: 818 per arena; 3000 need four arenas. */
  enum { N = 3000 };
  static unsigned char *p[N];
  secmem_heap_stats base = heap_stats();
  for (size_t i = 0; i < N; i++) {
    p[i] = secmem_malloc(64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
  }
  secmem_heap_stats full = heap_stats();
  CU_ASSERT_TRUE(full.arenas >= base.arenas + 3);
  for (size_t i = 0; i < N; i++) {
    secmem_free(p[i]);
  }
  secmem_heap_stats st = heap_stats();
  /* At most the one spare arena of the 64-byte class is kept. */
  CU_ASSERT_TRUE(st.arenas <= base.arenas + 1);
  CU_ASSERT_TRUE(full.bytes_locked - st.bytes_locked >= 3 * (size_t)SECMEM_HEAP_ARENA_LEN);
  assert_back_to(&base);
}

/* ---- the limit ------------------------------------------------------------------ */

static void test_limit(void) {
  enum { KEEP = 10 };
  unsigned char *keep[KEEP];
  for (size_t i = 0; i < KEEP; i++) {
    keep[i] = secmem_malloc(i == 0 ? 4096 : 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(keep[i]);
    gen_fill(keep[i], i == 0 ? 4096 : 64, 500 + (unsigned)i);
  }
  secmem_heap_stats base = heap_stats();
  /* The heap holds bytes_locked now (everything is locked): allow one more
   * arena and nothing else. */
  size_t limit = base.bytes_locked + SECMEM_HEAP_ARENA_LEN;
  char limit_text[32];
  format_size(limit_text, sizeof(limit_text), limit);
  CU_ASSERT_EQUAL(secmem_heap_set_limit(limit), 0);
  CU_ASSERT_EQUAL(heap_stats().limit, limit);

  /* Fill 1024-byte slots until the heap refuses: at most the existing room
   * plus one new arena (62 slots per arena). */
  enum { MAX_TRY = 4000 };
  static unsigned char *got[MAX_TRY];
  size_t n = 0;
  errno = 0;
  while (n < MAX_TRY && (got[n] = secmem_malloc(1024)) != NULL) {
    got[n][1023] = 1;
    n++;
  }
  if (n >= MAX_TRY - 200) {
    CU_FAIL("the limit did not stop the heap from growing");
    CU_ASSERT_EQUAL(secmem_heap_set_limit(0), 0); /* spare the tests that follow */
    for (size_t i = 0; i < n; i++) {
      secmem_free(got[i]);
    }
    for (size_t i = 0; i < KEEP; i++) {
      secmem_free(keep[i]);
    }
    return;
  }
  CU_ASSERT_EQUAL(errno, ENOMEM);
  CU_ASSERT_PTR_NOT_NULL(strstr(secmem_last_error(), "limit"));
  CU_ASSERT_PTR_NOT_NULL(strstr(secmem_last_error(), limit_text));
  secmem_heap_stats st = heap_stats();
  CU_ASSERT_TRUE(st.bytes_locked <= limit);
  CU_ASSERT_TRUE(st.arenas <= base.arenas + 1);

  /* A large allocation no longer fits either. */
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_malloc(5000));
  CU_ASSERT_EQUAL(errno, ENOMEM);
  CU_ASSERT_PTR_NOT_NULL(strstr(secmem_last_error(), limit_text));

  /* What was there is intact and usable. */
  for (size_t i = 0; i < KEEP; i++) {
    CU_ASSERT_TRUE(holds_generated(keep[i], i == 0 ? 4096 : 64, 500 + (unsigned)i));
  }
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);

  /* A limit below what is already held refuses growth, harms nothing. */
  CU_ASSERT_EQUAL(secmem_heap_set_limit(SECMEM_HEAP_ARENA_LEN), 0);
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_malloc(3000));
  CU_ASSERT_EQUAL(errno, ENOMEM);
  CU_ASSERT_PTR_NOT_NULL(strstr(secmem_last_error(), "64 KiB"));
  for (size_t i = 0; i < KEEP; i++) {
    CU_ASSERT_TRUE(holds_generated(keep[i], i == 0 ? 4096 : 64, 500 + (unsigned)i));
  }

  /* 0 lifts it. */
  CU_ASSERT_EQUAL(secmem_heap_set_limit(0), 0);
  CU_ASSERT_EQUAL(heap_stats().limit, 0);
  unsigned char *more = secmem_malloc(5000);
  CU_ASSERT_PTR_NOT_NULL(more);
  secmem_free(more);
  for (size_t i = 0; i < 200; i++) { /* several arenas more than the old limit allowed */
    unsigned char *q = secmem_malloc(1024);
    CU_ASSERT_PTR_NOT_NULL(q);
    got[n++] = q;
  }
  CU_ASSERT_TRUE(heap_stats().bytes_locked > limit);
  for (size_t i = 0; i < n; i++) {
    secmem_free(got[i]);
  }
  for (size_t i = 0; i < KEEP; i++) {
    CU_ASSERT_TRUE(holds_generated(keep[i], i == 0 ? 4096 : 64, 500 + (unsigned)i));
    secmem_free(keep[i]);
  }
}

/* ---- locked and dump-excluded, from the outside -------------------------------- */

static void test_smaps(void) {
  unsigned char *s = secmem_malloc(64);
  unsigned char *l = secmem_malloc(8192);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  struct smaps_info in;
  CU_ASSERT_TRUE_FATAL(smaps_lookup(s, &in));
  CU_ASSERT_TRUE(in.lockflag);
  CU_ASSERT_TRUE(in.dontdump);
  CU_ASSERT_TRUE(in.readable && in.writable);
  CU_ASSERT_EQUAL(in.locked_kb * 1024, SECMEM_HEAP_ARENA_LEN);

  CU_ASSERT_TRUE_FATAL(smaps_lookup(l, &in));
  CU_ASSERT_TRUE(in.lockflag);
  CU_ASSERT_TRUE(in.dontdump);
  CU_ASSERT_TRUE(in.readable && in.writable);
  CU_ASSERT_EQUAL(in.locked_kb * 1024, 3 * page());
  /* A large allocation ends on its trailing guard page. */
  struct smaps_info guard;
  CU_ASSERT_EQUAL(((uintptr_t)l + 8192) % page(), 0);
  CU_ASSERT_TRUE_FATAL(smaps_lookup(l + 8192, &guard));
  CU_ASSERT_FALSE(guard.readable || guard.writable);
  CU_ASSERT_TRUE(guard.dontdump);
  secmem_free(s);
  secmem_free(l);
}

/* ---- the target: 10,000 secrets of 64 bytes in at most 1 MiB locked ----------- */

static void test_ten_thousand_secrets(void) {
  enum { N = 10000, LEN = 64 };
  static unsigned char *p[N];
  secmem_heap_stats base = heap_stats();
  long vmlck_before = status_vmlck_kb();
  CU_ASSERT_TRUE_FATAL(vmlck_before >= 0);
  for (size_t i = 0; i < N; i++) {
    p[i] = secmem_malloc(LEN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
    gen_fill(p[i], LEN, (unsigned)i);
  }
  secmem_heap_stats st = heap_stats();
  long vmlck_after = status_vmlck_kb();
  size_t bad = 0, misaligned = 0;
  for (size_t i = 0; i < N; i++) {
    bad += !holds_generated(p[i], LEN, (unsigned)i);
    misaligned += !aligned16(p[i]);
  }
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT_EQUAL(misaligned, 0);
  CU_ASSERT_EQUAL(st.slots_in_use, base.slots_in_use + N);
  CU_ASSERT_EQUAL(st.bytes_in_use, base.bytes_in_use + (size_t)N * LEN);
  CU_ASSERT_TRUE(st.bytes_locked - base.bytes_locked <= (size_t)1 << 20);
  CU_ASSERT_TRUE(vmlck_after - vmlck_before <= 1024);
  /* And not by cheating: at least the secrets themselves are locked. */
  CU_ASSERT_TRUE(st.bytes_locked - base.bytes_locked >= (size_t)N * LEN);
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  for (size_t i = 0; i < N; i++) {
    secmem_free(p[i]);
  }
  assert_back_to(&base);
}

/* ---- purge ------------------------------------------------------------------------- */

static void test_purge_wipes_heap(void) {
  const unsigned seed = 0xbadcafeu;
  size_t lens[] = {0, 16, 64, 100, 2048, 2049, 4096, 70000};
  enum { N = sizeof(lens) / sizeof(lens[0]) };
  unsigned char *p[N];
  for (size_t i = 0; i < N; i++) {
    p[i] = secmem_malloc(lens[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
    gen_fill(p[i], usable(lens[i]), seed + 1 + (unsigned)i);
  }
  unsigned char *secret = secmem_malloc(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(secret);
  gen_fill(secret, 64, seed);
  CU_ASSERT_TRUE(scan_self_for_generated(seed, 64) >= 1); /* control */
  secmem_heap_stats before = heap_stats();

  secmem_purge();

  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 64), 0);
  CU_ASSERT_TRUE(all_zero(secret, 64));
  for (size_t i = 0; i < N; i++) {
    CU_ASSERT_TRUE(all_zero(p[i], usable(lens[i])));
    /* Still valid: writable and readable, then freed normally. */
    gen_fill(p[i], usable(lens[i]), 77);
    CU_ASSERT_TRUE(holds_generated(p[i], usable(lens[i]), 77));
  }
  secmem_heap_stats after = heap_stats();
  CU_ASSERT_EQUAL(after.slots_in_use, before.slots_in_use);
  CU_ASSERT_EQUAL(after.bytes_locked, before.bytes_locked);
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  for (size_t i = 0; i < N; i++) {
    secmem_free(p[i]);
  }
  secmem_free(secret);
  CU_ASSERT_EQUAL(heap_stats().slots_in_use, before.slots_in_use - N - 1);
}

/* ---- the library-wide stats -------------------------------------------------------- */

static void test_not_counted_as_buffers(void) {
  /* secmem_stats.buffers_live counts the caller's buffers, "created and not
   * yet destroyed or purged"; the heap reports its memory through
   * secmem_heap_get_stats, and its allocations survive a purge. */
  secmem_stats s0, s1, s2;
  CU_ASSERT_EQUAL_FATAL(secmem_get_stats(&s0), 0);
  unsigned char *small = secmem_malloc(64);
  unsigned char *large = secmem_malloc(5000);
  CU_ASSERT_PTR_NOT_NULL_FATAL(small);
  CU_ASSERT_PTR_NOT_NULL_FATAL(large);
  CU_ASSERT_EQUAL_FATAL(secmem_get_stats(&s1), 0);
  CU_ASSERT_EQUAL(s1.buffers_live, s0.buffers_live);
  secmem_purge();
  CU_ASSERT_EQUAL_FATAL(secmem_get_stats(&s2), 0);
  CU_ASSERT_EQUAL(s2.buffers_live, 0);
  secmem_free(small);
  secmem_free(large);
}

/* ---- threads ------------------------------------------------------------------------ */

enum { THREADS = 4, CYCLES = 20000, RING = 4 };

static atomic_size_t g_thread_errors;

static void *heap_worker(void *arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  uint32_t rng = 0x9e3779b9u * (t + 1);
  struct {
    unsigned char *p;
    size_t len;
    unsigned seed;
  } ring[RING] = {{NULL, 0, 0}};
  size_t errors = 0;
  for (unsigned i = 0; i < CYCLES; i++) {
    size_t len = xorshift(&rng) % 3001;
    unsigned seed = t * 1000003u + i;
    unsigned char *p = secmem_malloc(len);
    if (p == NULL) {
      errors++;
      continue;
    }
    errors += !aligned16(p) || !all_zero(p, len);
    gen_fill(p, len, seed);
    errors += !holds_generated(p, len, seed);
    /* Keep a few live for a while, so other threads work around them. */
    size_t k = i % RING;
    if (ring[k].p != NULL) {
      errors += !holds_generated(ring[k].p, ring[k].len, ring[k].seed);
      secmem_free(ring[k].p);
    }
    ring[k].p = p;
    ring[k].len = len;
    ring[k].seed = seed;
  }
  for (size_t k = 0; k < RING; k++) {
    if (ring[k].p != NULL) {
      errors += !holds_generated(ring[k].p, ring[k].len, ring[k].seed);
      secmem_free(ring[k].p);
    }
  }
  atomic_fetch_add(&g_thread_errors, errors);
  return NULL;
}

static void test_threads(void) {
  secmem_heap_stats base = heap_stats();
  atomic_store(&g_thread_errors, 0);
  pthread_t th[THREADS];
  for (uintptr_t t = 0; t < THREADS; t++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, heap_worker, (void *)t), 0);
  }
  for (size_t t = 0; t < THREADS; t++) {
    pthread_join(th[t], NULL);
  }
  CU_ASSERT_EQUAL(atomic_load(&g_thread_errors), 0);
  CU_ASSERT_EQUAL(secmem_heap_check(), 0);
  assert_back_to(&base);
}

int main(void) {
  /* The memory scans here read live secrets as their controls, which
   * memfd_secret pages (the default backing, test_backing's subject) would
   * hide from /proc/self/mem. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"sizes 0..1 MiB: aligned, zeroed, writable, distinct", test_sizes},
      {"documented layout: class stride, arena and large mappings", test_documented_layout},
      {"wipe on free, seen by a memory scan", test_wipe_on_free_seen_from_outside},
      {"memory handed out again is zero", test_reused_memory_is_zero},
      {"calloc: overflow refused, memory zeroed", test_calloc},
      {"huge sizes fail with ENOMEM, nothing harmed", test_huge_fails_cleanly},
      {"free(NULL) and stats(NULL)", test_free_null},
      {"heap check with many live allocations", test_check_many_live},
      {"stats follow allocations", test_stats},
      {"empty arenas are released", test_empty_arenas_released},
      {"limit refuses growth, harms nothing, 0 lifts it", test_limit},
      {"heap memory is locked and dump-excluded (smaps)", test_smaps},
      {"10,000 secrets of 64 bytes in at most 1 MiB locked", test_ten_thousand_secrets},
      {"purge zeroes every allocation, which stays valid", test_purge_wipes_heap},
      {"heap memory is not counted in secmem_stats.buffers_live", test_not_counted_as_buffers},
      {"4 threads x 20,000 malloc/fill/verify/free cycles", test_threads},
  };
  return harness_main("heap", tests, sizeof(tests) / sizeof(tests[0]));
}
