/*
 * test_enclave.c - unit suite for sealed enclaves: round trips at many
 * sizes, wiping of sources, the box format, tampering with every byte,
 * truncation, enclaves from before a purge, the plaintext at rest, and the
 * sealed form as bytes (export, import).
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "harness.h"
#include "internal.h"

static void check_roundtrip(size_t len, unsigned seed) {
  unsigned char *src = malloc(len + 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(src);
  gen_fill(src, len, seed);
  secmem_enclave *e = secmem_enclave_new(src, len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  size_t nonzero = 0;
  for (size_t i = 0; i < len; i++) {
    nonzero += src[i] != 0;
  }
  CU_ASSERT_EQUAL(nonzero, 0); /* the source was wiped */
  CU_ASSERT_EQUAL(secmem_enclave_len(e), len);
  CU_ASSERT_EQUAL(e->box_len, SECMEM_I_NONCE_LEN + SECMEM_I_MAC_LEN + len);

  secmem_buf *b = secmem_enclave_open(e);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(secmem_buf_len(b), len);
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_READWRITE);
  const unsigned char *d = secmem_buf_data(b);
  size_t bad = 0;
  for (size_t i = 0; i < len; i++) {
    bad += d[i] != gen_byte(seed, i);
  }
  CU_ASSERT_EQUAL(bad, 0);

  /* open_into a heap slot, and into a larger output. */
  unsigned char *slot = secmem_malloc(len + 7);
  CU_ASSERT_PTR_NOT_NULL_FATAL(slot);
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, slot, len + 7), 0);
  CU_ASSERT_EQUAL(len == 0 || memcmp(slot, d, len) == 0, 1);
  CU_ASSERT_EQUAL(slot[len], 0); /* nothing written past len */
  secmem_free(slot);
  secmem_buf_destroy(b);
  secmem_enclave_free(e);
  free(src);
}

static void test_roundtrip_sizes(void) {
  size_t sizes[] = {0, 1, 16, 31, 32, 33, 4095, 4096, 4097, 65536, 1u << 20};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    check_roundtrip(sizes[i], (unsigned)(100 + i));
  }
}

static void test_fresh_nonce_per_seal(void) {
  unsigned char a[32], b[32];
  gen_fill(a, 32, 5);
  gen_fill(b, 32, 5);
  secmem_enclave *e1 = secmem_enclave_new(a, 32);
  secmem_enclave *e2 = secmem_enclave_new(b, 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e2);
  CU_ASSERT_NOT_EQUAL(memcmp(e1->box, e2->box, SECMEM_I_NONCE_LEN), 0);
  CU_ASSERT_NOT_EQUAL(memcmp(e1->box + 24, e2->box + 24, 16 + 32), 0);
  secmem_enclave_free(e1);
  secmem_enclave_free(e2);
}

static void test_bad_arguments(void) {
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_enclave_new(NULL, 4));
  CU_ASSERT_EQUAL(errno, EINVAL);
  unsigned char src[8];
  gen_fill(src, 8, 6);
  CU_ASSERT_PTR_NULL(secmem_enclave_new(src, SIZE_MAX));
  CU_ASSERT_EQUAL(errno, ENOMEM);
  CU_ASSERT_EQUAL(src[0], gen_byte(6, 0)); /* failure leaves the source */
  secmem_enclave *e = secmem_enclave_new(src, 8);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  unsigned char out[8];
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, 7), -1);
  CU_ASSERT_EQUAL(errno, ERANGE);
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, NULL, 8), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  secmem_enclave_free(e);
  secmem_enclave_free(NULL);
}

static void test_seal_buffer(void) {
  secmem_stats s0, s1;
  secmem_buf *b = secmem_buf_new(40);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  gen_fill(secmem_buf_data(b), 40, 7);
  CU_ASSERT_EQUAL(secmem_buf_noaccess(b), 0); /* sealing works from any state */
  CU_ASSERT_EQUAL(secmem_get_stats(&s0), 0);
  secmem_enclave *e = secmem_seal(b);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  CU_ASSERT_EQUAL(secmem_get_stats(&s1), 0);
  CU_ASSERT_EQUAL(s1.buffers_live, s0.buffers_live - 1); /* b was destroyed */
  secmem_buf *o = secmem_enclave_open(e);
  CU_ASSERT_PTR_NOT_NULL_FATAL(o);
  CU_ASSERT_EQUAL(((unsigned char *)secmem_buf_data(o))[39], gen_byte(7, 39));
  secmem_buf_destroy(o);
  secmem_enclave_free(e);

  secmem_buf *p = secmem_buf_random(8);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  secmem_purge();
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_seal(p)); /* purged: refused, handle kept */
  CU_ASSERT_EQUAL(errno, EINVAL);
  secmem_buf_destroy(p);
}

static void test_tamper_every_byte(void) {
  unsigned char src[32];
  gen_fill(src, 32, 8);
  secmem_enclave *e = secmem_enclave_new(src, 32);
  secmem_enclave *other = secmem_enclave_new((unsigned char[4]){1, 2, 3, 4}, 4);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  CU_ASSERT_PTR_NOT_NULL_FATAL(other);
  secmem_stats s0, s1;
  CU_ASSERT_EQUAL(secmem_get_stats(&s0), 0);
  unsigned char out[32];
  for (size_t i = 0; i < e->box_len; i++) {
    for (unsigned bit = 1; bit < 256; bit <<= 3) {
      e->box[i] ^= (unsigned char)bit;
      memset(out, 0xaa, sizeof(out));
      errno = 0;
      CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, 32), -1);
      CU_ASSERT_EQUAL(errno, EBADMSG);
      CU_ASSERT_EQUAL(out[0], 0xaa); /* nothing written on failure */
      CU_ASSERT_EQUAL(out[31], 0xaa);
      CU_ASSERT_PTR_NULL(secmem_enclave_open(e));
      e->box[i] ^= (unsigned char)bit;
    }
  }
  CU_ASSERT_TRUE(strstr(secmem_last_error(), "authentication failed") != NULL);
  CU_ASSERT_EQUAL(secmem_get_stats(&s1), 0);
  CU_ASSERT_TRUE(s1.open_failures >= s0.open_failures + 2 * e->box_len);
  /* Restored, it opens; the other enclave never noticed. */
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, 32), 0);
  CU_ASSERT_EQUAL(out[17], gen_byte(8, 17));
  secmem_buf *o = secmem_enclave_open(other);
  CU_ASSERT_PTR_NOT_NULL(o);
  secmem_buf_destroy(o);
  secmem_enclave_free(e);
  secmem_enclave_free(other);
}

static void test_truncation(void) {
  unsigned char src[32] = {9};
  secmem_enclave *e = secmem_enclave_new(src, 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  unsigned char out[32];
  e->box_len -= 1;
  errno = 0;
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, 32), -1);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  CU_ASSERT_TRUE(strstr(secmem_last_error(), "truncated") != NULL);
  e->box_len += 1;
  e->len -= 1; /* a shortened plaintext length is truncation too */
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, 32), -1);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  e->len += 1;
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, 32), 0);
  CU_ASSERT_EQUAL(out[0], 9);
  secmem_enclave_free(e);
}

/* The sealed form as bytes: round trip, every byte of it tampered, short
 * or foreign forms, another process's form, a form from before a purge. */
static void test_export_import(void) {
  unsigned char src[100];
  gen_fill(src, sizeof(src), 77);
  secmem_enclave *e = secmem_enclave_new(src, sizeof(src));
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  size_t n = secmem_enclave_export_len(e);
  CU_ASSERT_EQUAL(n, 12 + SECMEM_I_NONCE_LEN + SECMEM_I_MAC_LEN + sizeof(src));
  unsigned char *form = malloc(n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(form);
  CU_ASSERT_EQUAL(secmem_enclave_export(e, form, n - 1), -1); /* too small */
  CU_ASSERT_EQUAL(errno, ERANGE);
  CU_ASSERT_EQUAL(secmem_enclave_export(e, NULL, n), -1);
  CU_ASSERT_EQUAL(secmem_enclave_export(e, form, n), 0);
  /* Nothing of the plaintext in the form. */
  unsigned char plain[100];
  gen_fill(plain, sizeof(plain), 77);
  CU_ASSERT_PTR_NULL(memmem(form, n, plain, 8));
  secmem_enclave *back = secmem_enclave_import(form, n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(back);
  CU_ASSERT_EQUAL(secmem_enclave_len(back), sizeof(src));
  unsigned char out[100];
  CU_ASSERT_EQUAL(secmem_enclave_open_into(back, out, sizeof(out)), 0);
  CU_ASSERT_EQUAL(memcmp(out, plain, sizeof(out)), 0);
  secmem_enclave_free(back);
  /* Every byte after the tag and epoch is authenticated. */
  size_t refused = 0;
  for (size_t i = 12; i < n; i++) {
    form[i] ^= 0x20;
    secmem_enclave *t = secmem_enclave_import(form, n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    refused += secmem_enclave_open_into(t, out, sizeof(out)) == -1 && errno == EBADMSG;
    secmem_enclave_free(t);
    form[i] ^= 0x20;
  }
  CU_ASSERT_EQUAL(refused, n - 12);
  /* Not a sealed form at all. */
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_enclave_import(form, 12 + SECMEM_I_NONCE_LEN + SECMEM_I_MAC_LEN - 1));
  CU_ASSERT_EQUAL(errno, EINVAL);
  CU_ASSERT_PTR_NULL(secmem_enclave_import(NULL, n));
  form[0] ^= 1;
  CU_ASSERT_PTR_NULL(secmem_enclave_import(form, n));
  form[0] ^= 1;
  /* A form made by another process (another enclave key) never opens. */
  unsigned char foreign_key[32], foreign[12 + 24 + 16 + 100];
  randombytes_buf(foreign_key, sizeof(foreign_key));
  memcpy(foreign, form, 12);
  randombytes_buf(foreign + 12, 24);
  crypto_secretbox_easy(foreign + 12 + 24, plain, sizeof(plain), foreign + 12, foreign_key);
  secmem_enclave *f = secmem_enclave_import(foreign, sizeof(foreign));
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  CU_ASSERT_EQUAL(secmem_enclave_open_into(f, out, sizeof(out)), -1);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  secmem_enclave_free(f);
  /* After a purge the form is as dead as the enclave. */
  secmem_purge();
  secmem_enclave *p = secmem_enclave_import(form, n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(secmem_enclave_open_into(p, out, sizeof(out)), -1);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  CU_ASSERT_TRUE(strstr(secmem_last_error(), "before secmem_purge") != NULL);
  secmem_enclave_free(p);
  secmem_enclave_free(e);
  free(form);
}

static void test_open_after_purge_fails_cleanly(void) {
  unsigned char src[32] = {1};
  secmem_enclave *old = secmem_enclave_new(src, 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(old);
  secmem_purge();
  errno = 0;
  CU_ASSERT_PTR_NULL(secmem_enclave_open(old));
  CU_ASSERT_EQUAL(errno, EBADMSG);
  CU_ASSERT_TRUE(strstr(secmem_last_error(), "before secmem_purge") != NULL);
  /* Forging the epoch does not help: the key itself is gone. */
  old->epoch = secmem_i_coffer_epoch();
  unsigned char out[32];
  CU_ASSERT_EQUAL(secmem_enclave_open_into(old, out, 32), -1);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  CU_ASSERT_TRUE(strstr(secmem_last_error(), "authentication failed") != NULL);
  /* New enclaves work. */
  unsigned char again[4] = {4, 3, 2, 1};
  secmem_enclave *e = secmem_enclave_new(again, 4);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, 4), 0);
  CU_ASSERT_EQUAL(out[0], 4);
  secmem_enclave_free(e);
  secmem_enclave_free(old);
}

static void test_plaintext_not_at_rest(void) {
  /* A known 32-byte secret is sealed, every plaintext copy wiped; while the
   * coffer re-keys every millisecond the process memory holds it zero times.
   * Opening it shows the scan does see it (control). */
  CU_ASSERT_EQUAL(secmem_rekey_start(1), 0);
  unsigned char *src = malloc(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(src);
  gen_fill(src, 32, 77);
  secmem_enclave *e = secmem_enclave_new(src, 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  free(src);
  struct timespec ts = {0, 20000000};
  nanosleep(&ts, NULL);
  for (int i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL(scan_self_for_generated(77, 32), 0);
    nanosleep(&ts, NULL);
  }
  secmem_buf *b = secmem_enclave_open(e);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(scan_self_for_generated(77, 32), 1);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(scan_self_for_generated(77, 32), 0);
  unsigned char *slot = secmem_malloc(32);
  CU_ASSERT_EQUAL(secmem_enclave_open_into(e, slot, 32), 0);
  CU_ASSERT_EQUAL(scan_self_for_generated(77, 32), 1);
  secmem_free(slot);
  CU_ASSERT_EQUAL(scan_self_for_generated(77, 32), 0);
  secmem_enclave_free(e);
  secmem_rekey_stop();
}

static void test_format_is_crypto_secretbox(void) {
  /* Our boxes open with libsodium's crypto_secretbox_open_easy under the
   * coffer key, and libsodium's boxes open with ours, at every length
   * around the 32-byte first block. */
  unsigned char *key = harness_hidden_alloc(4096);
  for (size_t len = 0; len < 100; len += (len < 70 ? 1 : 13)) {
    unsigned char src[100], out[100];
    gen_fill(src, len, (unsigned)(200 + len));
    secmem_enclave *e = secmem_enclave_new(src, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL_FATAL(secmem_i_coffer_key(key, NULL), 0);
    CU_ASSERT_EQUAL(crypto_secretbox_open_easy(out, e->box + 24, e->box_len - 24, e->box, key), 0);
    size_t bad = 0;
    for (size_t i = 0; i < len; i++) {
      bad += out[i] != gen_byte(200 + (unsigned)len, i);
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* The other way: libsodium seals, we open. */
    gen_fill(src, len, (unsigned)(300 + len));
    randombytes_buf(e->box, 24);
    crypto_secretbox_easy(e->box + 24, src, len, e->box, key);
    memset(out, 0, sizeof(out));
    CU_ASSERT_EQUAL(secmem_enclave_open_into(e, out, len), 0);
    CU_ASSERT_EQUAL(len == 0 || memcmp(out, src, len) == 0, 1);
    secmem_enclave_free(e);
  }
  secmem_wipe(key, 32);
}

int main(void) {
  /* The memory scans here read live secrets as their controls, which
   * memfd_secret pages (the default backing, test_backing's subject) would
   * hide from /proc/self/mem. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"round trips from 0 bytes to 1 MiB", test_roundtrip_sizes},
      {"a fresh nonce for every seal", test_fresh_nonce_per_seal},
      {"the format is crypto_secretbox, both ways", test_format_is_crypto_secretbox},
      {"bad arguments", test_bad_arguments},
      {"seal a buffer", test_seal_buffer},
      {"tampering with any byte is refused", test_tamper_every_byte},
      {"truncation is refused", test_truncation},
      {"enclaves from before a purge fail cleanly", test_open_after_purge_fails_cleanly},
      {"the sealed form as bytes: export and import", test_export_import},
      {"the plaintext does not rest in memory", test_plaintext_not_at_rest},
  };
  return harness_main("enclave", tests, sizeof(tests) / sizeof(tests[0]));
}
