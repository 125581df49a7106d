/*
 * enclave.c - owns sealed containers: a secret encrypted and authenticated
 * with XSalsa20-Poly1305 under the coffer's key, kept on the ordinary heap.
 *
 *   box:  | nonce (24, random per seal) | MAC (16) | ciphertext (len) |
 *
 *   exported: | "sme1" | epoch (8, little-endian) | box |
 *
 * Opening checks, in order: the handle, the length of the box (truncation),
 * the key epoch (sealed before a purge), then the MAC (any modified byte).
 * Each refusal is EBADMSG with a message; nothing is written to the output
 * unless the MAC verified, and no state is harmed.
 *
 * Opening is built here from libsodium's primitives rather than with
 * crypto_secretbox_open_easy: libsodium 1.0.18 decrypts the first 32 bytes
 * through a stack block it never wipes, which would leave plaintext on the
 * caller's stack. Here the subkey and keystream live in guarded scratch and
 * plaintext is written only to the caller's output.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

static _Atomic uint64_t g_opens, g_failures;

void secmem_i_enclave_counts(uint64_t *opens, uint64_t *failures) {
  *opens = atomic_load(&g_opens);
  *failures = atomic_load(&g_failures);
}

static const struct secmem_enclave *valid(const struct secmem_enclave *e, const char *who) {
  if (e == NULL || e->magic != SECMEM_I_ENCLAVE_MAGIC) {
    char msg[128];
    snprintf(msg, sizeof(msg), "%s: pointer is not a live secmem enclave", who);
    secmem_i_fatal(msg);
  }
  return e;
}

struct secmem_enclave *secmem_i_enclave_seal(const void *src, size_t len) {
  if (src == NULL && len > 0) {
    secmem_i_fail(EINVAL, "cannot seal: source is NULL");
    return NULL;
  }
  if (len > SIZE_MAX - SECMEM_I_NONCE_LEN - SECMEM_I_MAC_LEN) {
    secmem_i_fail(ENOMEM, "cannot seal %zu bytes: the size is too large", len);
    return NULL;
  }
  if (secmem_i_ensure_init() != 0) {
    return NULL;
  }
  size_t box_len = SECMEM_I_NONCE_LEN + SECMEM_I_MAC_LEN + len;
  struct secmem_enclave *e = malloc(sizeof(*e));
  unsigned char *box = e != NULL ? malloc(box_len) : NULL;
  if (box == NULL) {
    free(e);
    secmem_i_fail(ENOMEM, "cannot seal %zu bytes: out of memory", len);
    return NULL;
  }
  unsigned char *key = secmem_i_coffer_scratch();
  uint64_t epoch = 0;
  if (key == NULL || secmem_i_coffer_key(key, &epoch) != 0) {
    free(box);
    free(e);
    return NULL;
  }
  randombytes_buf(box, SECMEM_I_NONCE_LEN);
  crypto_secretbox_easy(box + SECMEM_I_NONCE_LEN, src, len, box, key);
  secmem_wipe(key, SECMEM_I_KEY_LEN);
  secmem_i_stack_scrub();
  *e = (struct secmem_enclave){SECMEM_I_ENCLAVE_MAGIC, len, box_len, epoch, box};
  return e;
}

secmem_enclave *secmem_enclave_new(void *src, size_t len) {
  struct secmem_enclave *e = secmem_i_enclave_seal(src, len);
  if (e != NULL) {
    secmem_wipe(src, len);
  }
  return e;
}

secmem_enclave *secmem_seal(secmem_buf *b) {
  secmem_i_guarded_validate(b, "secmem_seal");
  int state = atomic_load(&b->state);
  if (state == SECMEM_I_PURGED) {
    secmem_i_fail(EINVAL, "secmem_seal: the buffer was purged");
    return NULL;
  }
  if (state == SECMEM_I_NOACCESS && secmem_i_guarded_set_state(b, SECMEM_I_RO, "secmem_seal") != 0) {
    return NULL;
  }
  struct secmem_enclave *e = secmem_i_enclave_seal(b->data, b->len);
  if (e == NULL) {
    if (state == SECMEM_I_NOACCESS) {
      int err = errno;
      (void)secmem_i_guarded_set_state(b, SECMEM_I_NOACCESS, "secmem_seal");
      errno = err;
    }
    return NULL;
  }
  secmem_i_guarded_destroy(b, "secmem_seal");
  return e;
}

/* XSalsa20-Poly1305 open (the crypto_secretbox construction): subkey =
 * HSalsa20(key, nonce[0..16]); Salsa20(subkey, nonce[16..24]) block 0 gives
 * the Poly1305 key (bytes 0..31) and the pad of the first 32 message bytes
 * (32..63); block 1 onwards pads the rest. scratch: subkey(32) | block0(64). */
static int box_open(unsigned char *m, const unsigned char *box, size_t len,
                    const unsigned char *key, unsigned char *scratch) {
  const unsigned char *nonce = box;
  const unsigned char *mac = box + SECMEM_I_NONCE_LEN;
  const unsigned char *c = mac + SECMEM_I_MAC_LEN;
  unsigned char *subkey = scratch;
  unsigned char *block0 = scratch + 32;
  crypto_core_hsalsa20(subkey, nonce, key, NULL);
  crypto_stream_salsa20(block0, 64, nonce + 16, subkey);
  int rc = crypto_onetimeauth_poly1305_verify(mac, c, len, block0);
  if (rc == 0) {
    size_t first = len < 32 ? len : 32;
    for (size_t i = 0; i < first; i++) {
      m[i] = (unsigned char)(c[i] ^ block0[32 + i]);
    }
    if (len > first) {
      crypto_stream_salsa20_xor_ic(m + first, c + first, len - first, nonce + 16, 1, subkey);
    }
  }
  secmem_wipe(scratch, 96);
  return rc;
}

static int refuse(const char *why) {
  atomic_fetch_add(&g_failures, 1);
  return secmem_i_fail(EBADMSG, "enclave cannot be opened: %s", why);
}

int secmem_enclave_open_into(const secmem_enclave *e, void *out, size_t out_len) {
  valid(e, "secmem_enclave_open_into");
  if (out == NULL && e->len > 0) {
    return secmem_i_fail(EINVAL, "secmem_enclave_open_into: output is NULL");
  }
  if (out_len < e->len) {
    return secmem_i_fail(ERANGE, "secmem_enclave_open_into: %zu bytes do not fit in %zu", e->len,
                         out_len);
  }
  if (e->box == NULL || e->box_len != SECMEM_I_NONCE_LEN + SECMEM_I_MAC_LEN + e->len) {
    return refuse("it is truncated or its length was altered");
  }
  unsigned char *key = secmem_i_coffer_scratch();
  uint64_t epoch = 0;
  if (key == NULL || secmem_i_coffer_key(key, &epoch) != 0) {
    return -1;
  }
  if (e->epoch != epoch) { /* the epoch the key was rebuilt under, not a later one */
    secmem_wipe(key, SECMEM_I_KEY_LEN);
    return refuse("it was sealed before secmem_purge replaced the key");
  }
  int rc = box_open(out, e->box, e->len, key, key + SECMEM_I_KEY_LEN);
  secmem_wipe(key, SECMEM_I_KEY_LEN);
  secmem_i_stack_scrub();
  if (rc != 0) {
    return refuse("authentication failed (the ciphertext was modified)");
  }
  atomic_fetch_add(&g_opens, 1);
  return 0;
}

secmem_buf *secmem_enclave_open(const secmem_enclave *e) {
  valid(e, "secmem_enclave_open");
  if (secmem_i_ensure_init() != 0) {
    return NULL;
  }
  struct secmem_buf *b =
      secmem_i_guarded_new(e->len, SECMEM_I_KIND_BUF, __builtin_return_address(0));
  if (b == NULL) {
    return NULL;
  }
  if (secmem_enclave_open_into(e, b->data, b->len) != 0) {
    int err = errno;
    secmem_i_guarded_destroy(b, "secmem_enclave_open");
    errno = err;
    return NULL;
  }
  return b;
}

size_t secmem_enclave_len(const secmem_enclave *e) {
  return valid(e, "secmem_enclave_len")->len;
}

void secmem_enclave_free(secmem_enclave *e) {
  if (e == NULL) {
    return;
  }
  valid(e, "secmem_enclave_free");
  e->magic = 0;
  free(e->box);
  free(e);
}

/* ---- the sealed form as bytes --------------------------------------------- */

static const unsigned char EXPORT_TAG[4] = {'s', 'm', 'e', '1'};
#define EXPORT_HEAD (sizeof(EXPORT_TAG) + 8)

size_t secmem_enclave_export_len(const secmem_enclave *e) {
  return EXPORT_HEAD + valid(e, "secmem_enclave_export_len")->box_len;
}

int secmem_enclave_export(const secmem_enclave *e, void *out, size_t out_len) {
  valid(e, "secmem_enclave_export");
  size_t need = EXPORT_HEAD + e->box_len;
  if (out == NULL) {
    return secmem_i_fail(EINVAL, "secmem_enclave_export: output is NULL");
  }
  if (out_len < need) {
    return secmem_i_fail(ERANGE, "secmem_enclave_export: %zu bytes do not fit in %zu", need,
                         out_len);
  }
  unsigned char *o = out;
  memcpy(o, EXPORT_TAG, sizeof(EXPORT_TAG));
  for (int i = 0; i < 8; i++) {
    o[sizeof(EXPORT_TAG) + (size_t)i] = (unsigned char)(e->epoch >> (8 * i));
  }
  memcpy(o + EXPORT_HEAD, e->box, e->box_len);
  return 0;
}

secmem_enclave *secmem_enclave_import(const void *sealed, size_t len) {
  const unsigned char *s = sealed;
  if (s == NULL || len < EXPORT_HEAD + SECMEM_I_NONCE_LEN + SECMEM_I_MAC_LEN ||
      memcmp(s, EXPORT_TAG, sizeof(EXPORT_TAG)) != 0) {
    secmem_i_fail(EINVAL, "secmem_enclave_import: not the sealed form of an enclave");
    return NULL;
  }
  if (secmem_i_ensure_init() != 0) {
    return NULL;
  }
  size_t box_len = len - EXPORT_HEAD;
  struct secmem_enclave *e = malloc(sizeof(*e));
  unsigned char *box = e != NULL ? malloc(box_len) : NULL;
  if (box == NULL) {
    free(e);
    secmem_i_fail(ENOMEM, "secmem_enclave_import: out of memory");
    return NULL;
  }
  uint64_t epoch = 0;
  for (int i = 7; i >= 0; i--) {
    epoch = (epoch << 8) | s[sizeof(EXPORT_TAG) + (size_t)i];
  }
  memcpy(box, s + EXPORT_HEAD, box_len);
  *e = (struct secmem_enclave){SECMEM_I_ENCLAVE_MAGIC,
                               box_len - SECMEM_I_NONCE_LEN - SECMEM_I_MAC_LEN, box_len, epoch,
                               box};
  return e;
}
