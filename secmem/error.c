/*
 * error.c - owns the thread-local failure message behind secmem_last_error
 * and the helper that sets errno together with it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char last_error[512];

const char *secmem_last_error(void) { return last_error; }

void secmem_i_clear_error(void) { last_error[0] = '\0'; }

int secmem_i_fail(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  (void)vsnprintf(last_error, sizeof(last_error), fmt, ap);
  va_end(ap);
  errno = err;
  return -1;
}

void secmem_i_format_size(char *out, size_t out_len, size_t n) {
  static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  size_t whole = n;
  while (whole >= 1024 && whole % 1024 == 0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
    whole /= 1024;
    unit++;
  }
  (void)snprintf(out, out_len, "%zu %s", whole, units[unit]);
}
