/*
 * secmem.h - the public API of libsecmem: secrets kept in guarded, locked,
 * canary-protected memory that is never swapped, never core-dumped and wiped
 * on purge, on exit and on a caught signal.
 *
 * Failure model
 *   A function returning a pointer returns NULL and sets errno on failure.
 *   A function returning int returns 0 (or a documented positive value) on
 *   success and -1 with errno set on failure. In both cases
 *   secmem_last_error() then says, in words, what failed.
 *   An integrity failure (overwritten canary, unknown or destroyed handle,
 *   double destroy or free) is never returned: the library wipes every secret
 *   it holds, writes one line beginning "secmem:" to stderr and aborts.
 *
 * Thread safety
 *   Every function may be called from any thread. One buffer may be read by
 *   many threads at once; changing its state (freeze, melt, noaccess, destroy)
 *   while another thread uses it is the caller's race to avoid.
 */
#ifndef SECMEM_H
#define SECMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SECMEM_API __declspec(dllexport)
#elif defined(__GNUC__)
#define SECMEM_API __attribute__((visibility("default")))
#else
#define SECMEM_API
#endif

#if defined(__GNUC__)
#define SECMEM_MUST_CHECK __attribute__((warn_unused_result))
#define SECMEM_NORETURN __attribute__((noreturn))
#else
#define SECMEM_MUST_CHECK
#define SECMEM_NORETURN
#endif

#define SECMEM_VERSION_MAJOR 0
#define SECMEM_VERSION_MINOR 2
#define SECMEM_VERSION_PATCH 0
#define SECMEM_VERSION_STRING "0.2.0"

/* SECMEM_CANARY_LEN is the minimum number of canary bytes placed in front of
 * every buffer's data; the whole space between the first inner page and the
 * data is canary, so small buffers get more. */
#define SECMEM_CANARY_LEN 16

/* SECMEM_GUARD_PAGES is the number of no-access pages on each side of every
 * buffer's data pages. */
#define SECMEM_GUARD_PAGES 1

/* ------------------------------------------------------------------------ */
/* Library state                                                             */

/* secmem_version returns SECMEM_VERSION_STRING of the library actually linked. */
SECMEM_API const char *secmem_version(void);

/* secmem_init prepares the library: libsodium, the random canary, fork and
 * exit handlers. Idempotent and thread-safe; every other call runs it lazily.
 * Returns 0, or -1 if libsodium cannot be initialised. */
SECMEM_API SECMEM_MUST_CHECK int secmem_init(void);

/* secmem_last_error returns the calling thread's description of its most
 * recent failure ("" if none). The string belongs to the library and stays
 * valid until the thread's next secmem call. It never contains secret bytes. */
SECMEM_API const char *secmem_last_error(void);

typedef enum secmem_mlock_policy {
  /* Allocation fails with ENOMEM and a message naming RLIMIT_MEMLOCK when
   * memory cannot be locked. The default. */
  SECMEM_MLOCK_REQUIRED = 0,
  /* Allocation continues with unlocked (swappable) pages and counts them in
   * secmem_stats.bytes_unlocked. */
  SECMEM_MLOCK_BEST_EFFORT = 1
} secmem_mlock_policy;

/* secmem_set_mlock_policy sets the policy for later allocations and returns
 * 0, or -1 with EINVAL for an unknown value. */
SECMEM_API SECMEM_MUST_CHECK int secmem_set_mlock_policy(secmem_mlock_policy policy);

/* secmem_get_mlock_policy returns the current policy. */
SECMEM_API secmem_mlock_policy secmem_get_mlock_policy(void);

/* secmem_stats is a snapshot of the library's memory use. */
typedef struct secmem_stats {
  size_t buffers_live;      /* buffers created and not yet destroyed or purged */
  size_t regions_cached;    /* wiped, no-access regions kept for reuse */
  size_t bytes_mapped;      /* every page mapped, guard pages included */
  size_t bytes_locked;      /* pages currently held by mlock */
  size_t bytes_unlocked;    /* data pages that could not be locked (best-effort) */
  size_t dontdump_failures; /* regions that could not be excluded from dumps */
} secmem_stats;

/* secmem_get_stats fills *out_stats. Returns 0, or -1 with EINVAL for NULL. */
SECMEM_API SECMEM_MUST_CHECK int secmem_get_stats(secmem_stats *out_stats);

/* ------------------------------------------------------------------------ */
/* Locked buffers                                                            */

/* A secmem_buf is one secret in its own mapping:
 *
 *   | guard page | canary ... data | guard page |
 *                 \_ inner pages _/
 *
 * The data's last byte touches the trailing guard page, so a one-byte
 * overflow faults at once; an underflow lands in the canary and is caught by
 * secmem_buf_check and secmem_buf_destroy. Inner pages are locked (mlock) and
 * excluded from core dumps (MADV_DONTDUMP). Data is not aligned beyond what
 * its length implies (like sodium_malloc). */
typedef struct secmem_buf secmem_buf;

/* secmem_buf_new returns a zero-filled read-write buffer of len bytes
 * (len may be 0: the data pointer then sits on the trailing guard page).
 * The caller owns it and releases it with secmem_buf_destroy. */
SECMEM_API SECMEM_MUST_CHECK secmem_buf *secmem_buf_new(size_t len);

/* secmem_buf_from_bytes returns a read-write buffer holding a copy of the len
 * bytes at src, then wipes src (which must be writable). On failure src is
 * left untouched so the caller loses nothing. */
SECMEM_API SECMEM_MUST_CHECK secmem_buf *secmem_buf_from_bytes(void *src, size_t len);

/* secmem_buf_random returns a read-write buffer of len random bytes. */
SECMEM_API SECMEM_MUST_CHECK secmem_buf *secmem_buf_random(size_t len);

/* secmem_buf_data returns the buffer's data pointer. The pointer is valid
 * until the buffer is destroyed or purged; whether it may be read or written
 * depends on the buffer's state (see freeze/melt/noaccess). */
SECMEM_API void *secmem_buf_data(const secmem_buf *b);

/* secmem_buf_len returns the buffer's length in bytes (0 once purged). */
SECMEM_API size_t secmem_buf_len(const secmem_buf *b);

typedef enum secmem_buf_state {
  SECMEM_BUF_READWRITE = 0,
  SECMEM_BUF_READONLY = 1,
  SECMEM_BUF_NOACCESS = 2,
  SECMEM_BUF_PURGED = 3 /* wiped by secmem_purge; only destroy remains */
} secmem_buf_state;

/* secmem_buf_get_state returns the buffer's protection state. */
SECMEM_API secmem_buf_state secmem_buf_get_state(const secmem_buf *b);

/* secmem_buf_freeze makes the data read-only, enforced by the kernel: a write
 * raises SIGSEGV. Returns 0 or -1 (errno EINVAL for a purged buffer, or the
 * mprotect error). */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_freeze(secmem_buf *b);

/* secmem_buf_melt makes the data read-write again. Returns 0 or -1. */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_melt(secmem_buf *b);

/* secmem_buf_noaccess makes the data unreadable and unwritable until the next
 * freeze or melt. Returns 0 or -1. */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_noaccess(secmem_buf *b);

/* secmem_buf_check verifies the buffer's canary. Returns 0 when intact (and
 * -1 with EINVAL for a purged buffer); an overwritten canary is an integrity
 * failure and does not return. Works in every protection state. */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_check(const secmem_buf *b);

/* secmem_buf_destroy wipes the data, checks the canary and releases the
 * buffer: its pages become no-access (kept wiped for reuse by a later
 * buffer of the same size, or unmapped). NULL is ignored. Destroying a
 * purged buffer just releases its handle. Destroying twice, or a pointer
 * that is not a buffer, is an integrity failure. */
SECMEM_API void secmem_buf_destroy(secmem_buf *b);

/* secmem_buf_destroy_ptr destroys *pb and sets it to NULL; it is the cleanup
 * function behind SECMEM_BUF_SCOPED. */
SECMEM_API void secmem_buf_destroy_ptr(secmem_buf **pb);

#if defined(__GNUC__) || defined(__clang__)
/* SECMEM_BUF_SCOPED declares a buffer variable destroyed when its block ends:
 *   SECMEM_BUF_SCOPED secmem_buf *key = secmem_buf_random(32); */
#define SECMEM_BUF_SCOPED __attribute__((cleanup(secmem_buf_destroy_ptr)))
#endif

/* secmem_buf_copy_at copies len bytes from src into the buffer at offset off.
 * The buffer must be read-write. Returns 0, or -1 with ERANGE when off+len
 * exceeds the buffer, EACCES when it is not read-write. */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_copy_at(secmem_buf *b, size_t off, const void *src,
                                                    size_t len);

/* secmem_buf_move_at is secmem_buf_copy_at followed by a wipe of src (only
 * when the copy succeeded). */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_move_at(secmem_buf *b, size_t off, void *src,
                                                    size_t len);

/* secmem_buf_scramble overwrites the data with random bytes. The buffer must
 * be read-write. Returns 0 or -1. */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_scramble(secmem_buf *b);

/* secmem_buf_wipe overwrites the data with zeros. The buffer must be
 * read-write. Returns 0 or -1. */
SECMEM_API SECMEM_MUST_CHECK int secmem_buf_wipe(secmem_buf *b);

/* secmem_buf_equal compares the buffer with len bytes at p in constant time.
 * Returns 1 if the lengths and bytes are equal, 0 otherwise (also when the
 * buffer is not readable). */
SECMEM_API int secmem_buf_equal(const secmem_buf *b, const void *p, size_t len);

/* ------------------------------------------------------------------------ */
/* Constant-time helpers                                                     */

/* secmem_equal compares len bytes in time that depends only on len.
 * Returns 1 if equal, 0 if not. len 0 compares equal. */
SECMEM_API int secmem_equal(const void *a, const void *b, size_t len);

/* secmem_wipe overwrites len bytes with zeros; the compiler cannot remove it. */
SECMEM_API void secmem_wipe(void *p, size_t len);

/* secmem_copy copies len bytes with no data-dependent branches or lookups
 * (regions must not overlap). */
SECMEM_API void secmem_copy(void *dst, const void *src, size_t len);

/* secmem_move copies len bytes, then wipes src. */
SECMEM_API void secmem_move(void *dst, void *src, size_t len);

/* secmem_scramble fills len bytes with cryptographically random bytes. */
SECMEM_API void secmem_scramble(void *p, size_t len);

/* ------------------------------------------------------------------------ */
/* Lifecycle: purge, exit, signals, core dumps                               */

/* secmem_purge wipes and destroys every live buffer (and, with the sealing
 * layer, every heap slot's contents and the enclave key). Handles stay valid
 * for secmem_buf_destroy only; their data pointers fault on any touch. */
SECMEM_API void secmem_purge(void);

/* secmem_safe_exit purges, then exits with status (running atexit handlers). */
SECMEM_API SECMEM_NORETURN void secmem_safe_exit(int status);

/* secmem_safe_panic purges, writes "secmem: panic: <msg>" to stderr and
 * aborts. */
SECMEM_API SECMEM_NORETURN void secmem_safe_panic(const char *msg);

/* secmem_catch_signals installs handlers for num_sigs signals in sigs (when
 * sigs is NULL: SIGINT, SIGTERM, SIGHUP, SIGQUIT). On delivery the handler
 * calls hook(sig) if hook is not NULL (the hook must be async-signal-safe),
 * wipes every secret with async-signal-safe code only and exits with status
 * 128+sig. Returns 0, or -1 with EINVAL for a signal that cannot be caught. */
SECMEM_API SECMEM_MUST_CHECK int secmem_catch_signals(void (*hook)(int sig), const int *sigs,
                                                      size_t num_sigs);

/* secmem_disable_core_dumps sets RLIMIT_CORE to 0 and, on Linux, marks the
 * process not dumpable (PR_SET_DUMPABLE 0, which also stops ptrace attach by
 * unprivileged peers). Returns 0 or -1. */
SECMEM_API SECMEM_MUST_CHECK int secmem_disable_core_dumps(void);

#ifdef __cplusplus
}
#endif

#endif /* SECMEM_H */
