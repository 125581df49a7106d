/*
 * test_seal_threads.c - concurrency suite for sealing: 8 threads seal, open
 * and open_into (heap slots) while the coffer re-keys every millisecond from
 * the timer thread and on access; every open must return the right bytes.
 * Run under TSan and ASan in CI. SECMEM_TEST_SECONDS overrides the duration
 * (default 3).
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
#define SHARED 16

static secmem_enclave *shared[SHARED]; /* sealed once, opened by everyone */
static _Atomic int stop;
static _Atomic long errors, seals, opens;

static void *worker(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  unsigned rnd = id * 2654435761u;
  unsigned char src[600];
  while (!atomic_load(&stop)) {
    rnd = rnd * 1103515245u + 12345u;
    size_t len = (rnd >> 8) % sizeof(src);
    unsigned seed = id * 100000u + (rnd >> 20);
    gen_fill(src, len, seed);
    secmem_enclave *e = secmem_enclave_new(src, len);
    if (e == NULL) {
      atomic_fetch_add(&errors, 1);
      continue;
    }
    atomic_fetch_add(&seals, 1);
    unsigned char *slot = secmem_malloc(len);
    secmem_buf *b = secmem_enclave_open(e);
    if (slot == NULL || b == NULL || secmem_enclave_open_into(e, slot, len) != 0 ||
        secmem_buf_len(b) != len) {
      atomic_fetch_add(&errors, 1);
    } else {
      const unsigned char *d = secmem_buf_data(b);
      for (size_t k = 0; k < len; k++) {
        if (d[k] != gen_byte(seed, k) || slot[k] != d[k]) {
          atomic_fetch_add(&errors, 1);
          break;
        }
      }
    }
    secmem_buf_destroy(b);
    secmem_free(slot);
    secmem_enclave_free(e);
    size_t s = (rnd >> 4) % SHARED;
    unsigned char out[64];
    if (secmem_enclave_open_into(shared[s], out, sizeof(out)) != 0 || out[0] != gen_byte(7000 + (unsigned)s, 0) ||
        out[63] != gen_byte(7000 + (unsigned)s, 63)) {
      atomic_fetch_add(&errors, 1);
    }
    secmem_wipe(out, sizeof(out));
    atomic_fetch_add(&opens, 3);
  }
  return NULL;
}

static void test_seal_open_while_rekeying(void) {
  const char *env = getenv("SECMEM_TEST_SECONDS");
  double seconds = env != NULL ? atof(env) : 3.0;
  for (size_t s = 0; s < SHARED; s++) {
    unsigned char tmp[64];
    gen_fill(tmp, 64, 7000 + (unsigned)s);
    shared[s] = secmem_enclave_new(tmp, 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(shared[s]);
  }
  secmem_set_rekey_interval(1);
  CU_ASSERT_EQUAL_FATAL(secmem_rekey_start(1), 0);
  secmem_stats st0, st1;
  CU_ASSERT_EQUAL(secmem_get_stats(&st0), 0);
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, worker, (void *)(i + 1)), 0);
  }
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&ts, NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
  }
  secmem_rekey_stop();
  CU_ASSERT_EQUAL(secmem_get_stats(&st1), 0);
  CU_ASSERT_EQUAL(atomic_load(&errors), 0);
  CU_ASSERT_TRUE(atomic_load(&seals) > THREADS);
  CU_ASSERT_TRUE(st1.rekeys >= st0.rekeys + (uint64_t)(seconds * 100)); /* >= 10% of 1/ms */
  CU_ASSERT_EQUAL(st1.open_failures, st0.open_failures);
  printf("\n  %ld seals, %ld opens, %llu re-keys in %.1f s across %d threads\n", atomic_load(&seals),
         atomic_load(&opens), (unsigned long long)(st1.rekeys - st0.rekeys), seconds, THREADS);
  for (size_t s = 0; s < SHARED; s++) {
    secmem_enclave_free(shared[s]);
  }
  secmem_set_rekey_interval(500);
}

int main(void) {
  static const struct harness_test tests[] = {
      {"8 threads seal and open while re-keying every ms", test_seal_open_while_rekeying},
  };
  return harness_main("seal_threads", tests, sizeof(tests) / sizeof(tests[0]));
}
