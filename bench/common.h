/*
 * common.h - what the benchmarks share: the clock, the median of the
 * rounds, number formatting and the header line every run starts with.
 */
#ifndef SECMEM_BENCH_COMMON_H
#define SECMEM_BENCH_COMMON_H

#include <stddef.h>

/* Every case runs ROUNDS times, interleaved with its rivals; the median counts. */
#define ROUNDS 3

/* Monotonic seconds. */
double now_seconds(void);

/* Print "<prog>: <what> failed: <why>" and exit 1 (bench_set_name names prog). */
void bench_set_name(const char *prog);
void die(const char *what, const char *why);
void die_secmem(const char *what);
void die_errno(const char *what);

/* Call cycle(ctx) in batches for about seconds; return calls per second. */
double timed_loop(void (*cycle)(void *ctx), void *ctx, double seconds);

/* The median of ROUNDS measurements. */
double median3(const double v[ROUNDS]);

/* v as an integer with thousands separators ("1,234,567"). */
void format_count(char *out, size_t out_len, double v);

/* The date (UTC) and the kernel ("Linux 6.1.0 x86_64") every header line
 * names; "unknown ..." when they cannot be had. */
struct run_stamp {
  char date[64];
  char kernel[200];
};
void run_stamp(struct run_stamp *s);
/* A size as "32 B" or "4 KiB". */
void format_size(char *out, size_t out_len, size_t size);

/* common_secmem.c, for the benchmarks that link libsecmem: "<name> <date>:
 * libsecmem ..., libsodium ..., <extra>, <kernel>, median of ROUNDS rounds x
 * <seconds> s per case<note>" and the backing in use. */
void print_header(const char *name, const char *extra, double seconds, const char *note);

#endif
