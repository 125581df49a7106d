/*
 * common_secmem.c - owns the helpers of the benchmarks that link libsecmem:
 * dying with its last error, and the header line every run starts with.
 */
#include "common.h"

#include <stdio.h>

#include <secmem.h>
#include <sodium.h>

void die_secmem(const char *what) { die(what, secmem_last_error()); }

void print_header(const char *name, const char *extra, double seconds, const char *note) {
  struct run_stamp st;
  run_stamp(&st);
  printf("%s %s: libsecmem %s, libsodium %s, %s%s%s, median of %d rounds x %.2f s per case%s\n\n",
         name, st.date, secmem_version(), sodium_version_string(), extra != NULL ? extra : "",
         extra != NULL ? ", " : "", st.kernel, ROUNDS, seconds, note != NULL ? note : "");
  const char *backing = secmem_get_backing() == SECMEM_BACKING_ANON ? "anonymous pages"
                        : secmem_secret_backing_available()        ? "memfd_secret (default AUTO)"
                                                                   : "anonymous pages (AUTO: no memfd_secret)";
  printf("secmem backing: %s\n\n", backing);
}
