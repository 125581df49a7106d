/*
 * ct.c - owns the constant-time byte helpers: compare, wipe, copy, move and
 * scramble. None of them branches on or indexes by secret data; the wipe is
 * a libsodium call the compiler cannot elide, and is async-signal-safe.
 */
#include <string.h>

#include <sodium.h>

#include "internal.h"

int secmem_equal(const void *a, const void *b, size_t len) {
  if (len == 0) {
    return 1;
  }
  return sodium_memcmp(a, b, len) == 0;
}

void secmem_wipe(void *p, size_t len) {
  if (p != NULL && len > 0) {
    sodium_memzero(p, len);
  }
}

void secmem_copy(void *dst, const void *src, size_t len) {
  /* memcpy's timing depends on len and alignment only, never on the bytes. */
  if (len > 0) {
    memcpy(dst, src, len);
  }
}

void secmem_move(void *dst, void *src, size_t len) {
  secmem_copy(dst, src, len);
  secmem_wipe(src, len);
}

void secmem_scramble(void *p, size_t len) {
  if (len > 0) {
    if (secmem_i_ensure_init() != 0) {
      secmem_i_fatal("secmem_scramble: no random source (sodium_init failed)");
    }
    randombytes_buf(p, len);
  }
}
