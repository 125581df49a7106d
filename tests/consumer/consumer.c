/*
 * consumer.c - owns the installed-package smoke test's program: it uses only
 * the installed <secmem.h> and library, the way a third-party program would,
 * and exits 0 only if a random buffer can be made, frozen, checked and
 * destroyed and the linked library's version matches the header's.
 */
#include <stdio.h>
#include <string.h>

#include <secmem.h>

static int fail(const char *what) {
  fprintf(stderr, "consumer: %s failed: %s\n", what, secmem_last_error());
  return 1;
}

int main(void) {
  if (strcmp(secmem_version(), SECMEM_VERSION_STRING) != 0) {
    fprintf(stderr, "consumer: header says %s but the linked library is %s\n",
            SECMEM_VERSION_STRING, secmem_version());
    return 1;
  }
  secmem_buf *key = secmem_buf_random(32);
  if (key == NULL) {
    return fail("secmem_buf_random(32)");
  }
  if (secmem_buf_len(key) != 32) {
    secmem_buf_destroy(key);
    fprintf(stderr, "consumer: secmem_buf_len is not 32\n");
    return 1;
  }
  if (secmem_buf_freeze(key) != 0) {
    int rc = fail("secmem_buf_freeze");
    secmem_buf_destroy(key);
    return rc;
  }
  if (secmem_buf_get_state(key) != SECMEM_BUF_READONLY) {
    secmem_buf_destroy(key);
    fprintf(stderr, "consumer: a frozen buffer is not read-only\n");
    return 1;
  }
  if (secmem_buf_check(key) != 0) {
    int rc = fail("secmem_buf_check");
    secmem_buf_destroy(key);
    return rc;
  }
  secmem_buf_destroy(key);
  printf("consumer ok (libsecmem %s)\n", secmem_version());
  return 0;
}
