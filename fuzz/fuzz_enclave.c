/*
 * fuzz_enclave.c - libFuzzer harness for libsecmem's sealed form: the bytes
 * secmem_enclave_export writes and secmem_enclave_import takes back.
 *
 * Each input is used twice:
 *   - as a sealed form of its own: import may refuse it (EINVAL), and
 *     whatever it accepts must then refuse to open (EBADMSG), since no one
 *     but the library can produce an authentic one;
 *   - as a difference XORed into the export of a genuine enclave: the
 *     result opens (to the very secret) exactly when the difference is all
 *     zero, and is refused otherwise, whichever byte was changed.
 * Either way the genuine enclave keeps opening.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secmem.h"

#define SECRET_LEN 48

static secmem_enclave *genuine;
static unsigned char *sealed; /* its export */
static size_t sealed_len;
static unsigned char secret[SECRET_LEN];
static unsigned char *slot; /* a locked heap slot to open into */

static void fail(const char *what) {
  fprintf(stderr, "fuzz_enclave: %s (%s)\n", what, secmem_last_error());
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  for (size_t i = 0; i < SECRET_LEN; i++) {
    secret[i] = (unsigned char)(0xa5 ^ (i * 7));
  }
  unsigned char copy[SECRET_LEN];
  memcpy(copy, secret, SECRET_LEN);
  genuine = secmem_enclave_new(copy, SECRET_LEN);
  slot = secmem_malloc(SECRET_LEN);
  sealed_len = genuine != NULL ? secmem_enclave_export_len(genuine) : 0;
  sealed = sealed_len > 0 ? malloc(sealed_len) : NULL;
  if (slot == NULL || sealed == NULL || secmem_enclave_export(genuine, sealed, sealed_len) != 0) {
    fail("set-up");
  }
  return 0;
}

/* Open e into the slot: 1 if it opened to the secret, 0 if refused. */
static int opens(const secmem_enclave *e) {
  errno = 0;
  if (secmem_enclave_open_into(e, slot, SECRET_LEN) != 0) {
    if (errno != EBADMSG && errno != EINVAL) {
      fail("open refused with an unexpected errno");
    }
    return 0;
  }
  if (memcmp(slot, secret, SECRET_LEN) != 0) {
    fail("an enclave opened to something other than what was sealed");
  }
  secmem_wipe(slot, SECRET_LEN);
  return 1;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len) {
  /* 1. The input as a sealed form. */
  secmem_enclave *e = secmem_enclave_import(data, len);
  if (e != NULL) {
    if (secmem_enclave_len(e) == SECRET_LEN && opens(e)) {
      fail("an input that is not the genuine export opened");
    }
    unsigned char out[64];
    if (secmem_enclave_len(e) <= sizeof(out) &&
        secmem_enclave_open_into(e, out, secmem_enclave_len(e)) == 0) {
      fail("a forged sealed form opened");
    }
    secmem_enclave_free(e);
  } else if (errno != EINVAL) {
    fail("import refused with an unexpected errno");
  }

  /* 2. The input as a difference to the genuine export. */
  unsigned char *m = malloc(sealed_len);
  if (m == NULL) {
    return 0;
  }
  int changed = 0;
  for (size_t i = 0; i < sealed_len; i++) {
    unsigned char d = i < len ? data[i] : 0;
    m[i] = sealed[i] ^ d;
    changed |= d;
  }
  e = secmem_enclave_import(m, sealed_len);
  free(m);
  if (e != NULL) {
    int ok = opens(e);
    if (ok != !changed) {
      fail(changed ? "a changed export opened" : "the genuine export did not open");
    }
    secmem_enclave_free(e);
  } else if (!changed) {
    fail("the genuine export was not imported");
  }
  if (!opens(genuine)) {
    fail("the genuine enclave no longer opens");
  }
  return 0;
}
