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

/* Clear the vector registers. Hash and cipher cores leave state in them
 * (BLAKE2b's digest, Salsa20's key schedule), and any later register spill
 * (the lazy-binding resolver's xsave, a signal frame) would copy it to the
 * stack. x86-64: vzeroall (or SSE pxor), and zmm16-31 when AVX-512 exists. */
static void clear_vector_registers(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx")) {
    __asm__ __volatile__("vzeroall" ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                         "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                         "xmm15", "memory");
  } else {
    __asm__ __volatile__("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
                         "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
                         "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
                         "pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
                         "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\t"
                         "pxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15" ::
                             : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                               "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                               "xmm15", "memory");
  }
  if (__builtin_cpu_supports("avx512f")) {
    /* Code built without -mavx512f never keeps values in zmm16-31. */
    __asm__ __volatile__(
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31" ::
            : "memory");
  }
#endif
}

/* Zero the STACK_SCRUB_LEN bytes of stack below the caller's frame, where
 * the library's callees (libsodium's BLAKE2b, HSalsa20, Salsa20) left their
 * locals: BLAKE2b's final digest block and the ciphers' state words are not
 * wiped by libsodium 1.0.18. Then clear the vector registers, last, so that
 * nothing this wipe itself moved through them survives. noinline keeps the
 * array below the caller's frame. */
#define STACK_SCRUB_LEN 4096
__attribute__((noinline)) void secmem_i_stack_scrub(void) {
  unsigned char area[STACK_SCRUB_LEN];
  sodium_memzero(area, sizeof(area));
  __asm__ __volatile__("" : : "r"(area) : "memory");
  clear_vector_registers();
}

#define PUBLIC_SCRUB_LEN (16 * 1024)
__attribute__((noinline)) void secmem_scrub(void) {
  unsigned char area[PUBLIC_SCRUB_LEN];
  sodium_memzero(area, sizeof(area));
  __asm__ __volatile__("" : : "r"(area) : "memory");
  clear_vector_registers();
}
