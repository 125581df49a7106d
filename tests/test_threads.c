/*
 * test_threads.c - concurrency suite: 8 threads create, fill, freeze, melt,
 * no-access, check and destroy buffers for a few seconds while reading one
 * shared frozen buffer; run under TSan in CI. SECMEM_TEST_SECONDS overrides
 * the duration (default 3).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "secmem.h"

#define THREADS 8

static secmem_buf *shared;
static _Atomic int stop;
static _Atomic long errors;
static _Atomic long cycles;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  unsigned rnd = seed * 7919u + 1;
  while (!atomic_load(&stop)) {
    rnd = rnd * 1103515245u + 12345u;
    size_t len = 1 + (rnd >> 8) % 9000;
    secmem_buf *b = secmem_buf_new(len);
    if (b == NULL) {
      atomic_fetch_add(&errors, 1);
      continue;
    }
    unsigned char *d = secmem_buf_data(b);
    memset(d, (int)(seed & 0xff), len);
    if (secmem_buf_freeze(b) != 0 || d[len - 1] != (seed & 0xff) || secmem_buf_melt(b) != 0) {
      atomic_fetch_add(&errors, 1);
    }
    d[0] ^= 0xff;
    if (secmem_buf_noaccess(b) != 0 || secmem_buf_check(b) != 0 || secmem_buf_freeze(b) != 0 ||
        d[0] != ((seed & 0xff) ^ 0xff)) {
      atomic_fetch_add(&errors, 1);
    }
    if (!secmem_buf_equal(shared, secmem_buf_data(shared), 64)) {
      atomic_fetch_add(&errors, 1);
    }
    const unsigned char *s = secmem_buf_data(shared);
    for (size_t i = 0; i < 64; i++) {
      if (s[i] != gen_byte(99, i)) {
        atomic_fetch_add(&errors, 1);
        break;
      }
    }
    secmem_buf_destroy(b);
    atomic_fetch_add(&cycles, 1);
  }
  return NULL;
}

static void test_eight_threads(void) {
  const char *env = getenv("SECMEM_TEST_SECONDS");
  double seconds = env != NULL ? atof(env) : 3.0;
  secmem_stats before, after;
  shared = secmem_buf_new(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(shared);
  gen_fill(secmem_buf_data(shared), 64, 99);
  CU_ASSERT_EQUAL(secmem_buf_freeze(shared), 0);
  CU_ASSERT_EQUAL(secmem_get_stats(&before), 0);

  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, worker, (void *)(i + 1)), 0);
  }
  double end = now() + seconds;
  long stats_reads = 0;
  while (now() < end) {
    secmem_stats st;
    if (secmem_get_stats(&st) != 0 || st.bytes_unlocked != 0) {
      atomic_fetch_add(&errors, 1);
    }
    stats_reads++;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
  }
  CU_ASSERT_EQUAL(atomic_load(&errors), 0);
  CU_ASSERT_TRUE(atomic_load(&cycles) > THREADS);
  CU_ASSERT_TRUE(stats_reads > 0);
  CU_ASSERT_EQUAL(secmem_get_stats(&after), 0);
  CU_ASSERT_EQUAL(after.buffers_live, before.buffers_live);
  CU_ASSERT_EQUAL(secmem_buf_check(shared), 0);
  printf("\n  %ld buffer cycles in %.1f s across %d threads\n", atomic_load(&cycles), seconds,
         THREADS);
  secmem_buf_destroy(shared);
}

int main(void) {
  static const struct harness_test tests[] = {
      {"8 threads create, freeze, melt, destroy", test_eight_threads},
  };
  return harness_main("threads", tests, sizeof(tests) / sizeof(tests[0]));
}
