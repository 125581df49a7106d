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

typedef enum secmem_backing {
  /* Anonymous private pages, mlock'ed and MADV_DONTDUMP. */
  SECMEM_BACKING_ANON = 0,
  /* memfd_secret pages: also removed from the kernel's direct map, so not
   * readable through /proc/PID/mem, ptrace or kernel bugs that read the
   * direct map. Fails when the kernel does not offer it. A forked child
   * gets its own copy (the shared mapping never reaches it). */
  SECMEM_BACKING_SECRET = 1,
  /* memfd_secret where the kernel offers it (and the mapping succeeds),
   * anonymous pages otherwise. The default. */
  SECMEM_BACKING_AUTO = 2
} secmem_backing;

/* secmem_set_backing chooses how later allocations (buffers, heap arenas, the
 * enclave key) are backed. Returns 0; -1 with EINVAL for an unknown value,
 * ENOSYS for SECMEM_BACKING_SECRET on a kernel without memfd_secret. */
SECMEM_API SECMEM_MUST_CHECK int secmem_set_backing(secmem_backing backing);

/* secmem_get_backing returns the current choice. */
SECMEM_API secmem_backing secmem_get_backing(void);

/* secmem_secret_backing_available returns 1 if this kernel offers
 * memfd_secret, 0 if not. */
SECMEM_API int secmem_secret_backing_available(void);

/* secmem_stats is a snapshot of the library's memory use. */
typedef struct secmem_stats {
  size_t buffers_live;      /* buffers created and not yet destroyed or purged */
  size_t regions_cached;    /* wiped, no-access regions kept for reuse */
  size_t bytes_mapped;      /* every page mapped, guard pages included */
  size_t bytes_locked;      /* pages currently held by mlock (or secret) */
  size_t bytes_unlocked;    /* data pages that could not be locked (best-effort) */
  size_t dontdump_failures; /* regions that could not be excluded from dumps */
  size_t bytes_secret;      /* pages backed by memfd_secret (part of bytes_locked) */
  uint64_t rekeys;          /* times the enclave key was re-randomised */
  uint64_t opens;           /* enclave opens that succeeded */
  uint64_t open_failures;   /* enclave opens refused: tampered, truncated, stale */
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
 * that is not a buffer, is an integrity failure (a destroyed handle is
 * recognised until 4096 other buffers have been destroyed after it). */
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
/* Enclaves: secrets sealed at rest                                          */

/* A secmem_enclave holds a secret encrypted and authenticated with
 * XSalsa20-Poly1305 (libsodium's crypto_secretbox) under the process's
 * enclave key: nonce(24) || MAC(16) || ciphertext, on the ordinary heap. The
 * key is never stored whole (see secmem_rekey_start). Enclaves are valid only
 * inside the process (and its forked children) that sealed them, until the
 * next secmem_purge. */
typedef struct secmem_enclave secmem_enclave;

/* secmem_enclave_new seals a copy of the len bytes at src, then wipes src
 * (left intact on failure). Returns the enclave, owned by the caller. */
SECMEM_API SECMEM_MUST_CHECK secmem_enclave *secmem_enclave_new(void *src, size_t len);

/* secmem_seal seals the buffer's data and destroys b. On failure b is left
 * as it was. */
SECMEM_API SECMEM_MUST_CHECK secmem_enclave *secmem_seal(secmem_buf *b);

/* secmem_enclave_open returns a new read-write locked buffer holding the
 * plaintext; the caller destroys it. NULL with EBADMSG when the enclave was
 * tampered with, truncated or sealed before a purge. */
SECMEM_API SECMEM_MUST_CHECK secmem_buf *secmem_enclave_open(const secmem_enclave *e);

/* secmem_enclave_open_into decrypts into out, which must hold at least
 * secmem_enclave_len(e) bytes (ERANGE otherwise) and should be memory the
 * caller protects (a secmem_malloc slot, a buffer). No mapping is created.
 * On failure out is not written. Returns 0 or -1 (EBADMSG as above). */
SECMEM_API SECMEM_MUST_CHECK int secmem_enclave_open_into(const secmem_enclave *e, void *out,
                                                          size_t out_len);

/* secmem_enclave_len returns the plaintext length. */
SECMEM_API size_t secmem_enclave_len(const secmem_enclave *e);

/* secmem_enclave_free frees the ciphertext (NULL is ignored). */
SECMEM_API void secmem_enclave_free(secmem_enclave *e);

/* An enclave's sealed form as bytes, for keeping it somewhere else in the
 * same process (a cache, another structure): a version tag, the key epoch,
 * nonce, MAC and ciphertext -- nothing in clear. It opens only where the
 * enclave itself would: in this process and its forked children, until the
 * next secmem_purge; anywhere else, opening fails with EBADMSG.
 *
 * secmem_enclave_export_len returns the size of the sealed form.
 * secmem_enclave_export writes it to out (ERANGE when out_len is short).
 * Returns 0 or -1. */
SECMEM_API size_t secmem_enclave_export_len(const secmem_enclave *e);
SECMEM_API SECMEM_MUST_CHECK int secmem_enclave_export(const secmem_enclave *e, void *out,
                                                       size_t out_len);

/* secmem_enclave_import makes a new enclave from a sealed form (copied).
 * It checks the form's shape only (EINVAL for anything that is not one);
 * whether it is authentic is decided, as for every enclave, when it is
 * opened. */
SECMEM_API SECMEM_MUST_CHECK secmem_enclave *secmem_enclave_import(const void *sealed, size_t len);

/* The enclave key is BLAKE2b(left) XOR right over two guarded buffers and is
 * rebuilt only inside seal and open, in per-thread guarded scratch that is
 * wiped at once. Re-keying re-randomises left and right and keeps the key.
 *
 * secmem_set_rekey_interval re-keys at the next seal or open once interval_ms
 * have passed since the last re-key (default 500; 0 turns it off). */
SECMEM_API void secmem_set_rekey_interval(uint64_t interval_ms);

/* SECMEM_REKEY_INTERVAL_DEFAULT_MS is the on-access interval at start. */
#define SECMEM_REKEY_INTERVAL_DEFAULT_MS 500

/* secmem_get_rekey_interval returns the current on-access interval in ms. */
SECMEM_API uint64_t secmem_get_rekey_interval(void);

/* secmem_rekey re-keys now. Returns 0 or -1 (the key could not be created). */
SECMEM_API SECMEM_MUST_CHECK int secmem_rekey(void);

/* secmem_rekey_start starts (or retunes) a timer thread that re-keys every
 * interval_ms (>= 1). The library never starts a thread on its own. After
 * fork, the child restarts it lazily at its first seal or open. Returns 0 or
 * -1 (EINVAL for 0, or pthread_create's error). */
SECMEM_API SECMEM_MUST_CHECK int secmem_rekey_start(uint64_t interval_ms);

/* secmem_rekey_stop stops the timer thread, if any, and waits for it. */
SECMEM_API void secmem_rekey_stop(void);

/* ------------------------------------------------------------------------ */
/* Per-thread scratch                                                        */

/* secmem_scratch returns the calling thread's scratch area of at least len
 * bytes: guarded, locked, dump-excluded, read-write, 64-byte aligned, and
 * needing no lock to use. It stays valid until this thread asks for a larger
 * one (which replaces and wipes it) or ends (which wipes and frees it). Put
 * a secret there for the instant it is in use, then secmem_scratch_wipe: the
 * area is the thread's, reused by its next operation. A forked child wipes
 * the areas of the threads that did not come along with it. NULL with errno
 * on failure. */
SECMEM_API SECMEM_MUST_CHECK void *secmem_scratch(size_t len);

/* secmem_scratch_wipe wipes the whole of the calling thread's scratch area. */
SECMEM_API void secmem_scratch_wipe(void);

/* ------------------------------------------------------------------------ */
/* Streams: secrets too large for one buffer                                 */

/* A secmem_stream is a FIFO of sealed chunks (memguard's Stream): writes are
 * sealed chunk by chunk as they arrive, reads open one chunk at a time. */
typedef struct secmem_stream secmem_stream;

/* SECMEM_STREAM_DEFAULT_CHUNK is the chunk size used when 0 is asked for. */
#define SECMEM_STREAM_DEFAULT_CHUNK (16u * 1024u)

/* secmem_stream_new returns an empty stream sealing chunks of chunk_len bytes
 * (0: SECMEM_STREAM_DEFAULT_CHUNK). */
SECMEM_API SECMEM_MUST_CHECK secmem_stream *secmem_stream_new(size_t chunk_len);

/* secmem_stream_write seals len bytes from src onto the end of the stream,
 * then wipes src. On failure nothing is appended and src is untouched.
 * Returns 0 or -1. */
SECMEM_API SECMEM_MUST_CHECK int secmem_stream_write(secmem_stream *s, void *src, size_t len);

/* secmem_stream_read moves up to out_len bytes from the front of the stream
 * into out and stores the count in *out_read (0 at the end of the stream).
 * A partly read chunk is sealed again. Returns 0 or -1. Like read(2), when a
 * chunk cannot be opened after some bytes were moved, those bytes are
 * reported with 0 and the failing chunk stays first, failing the next call
 * (-1, EBADMSG); nothing is ever lost or read twice. */
SECMEM_API SECMEM_MUST_CHECK int secmem_stream_read(secmem_stream *s, void *out, size_t out_len,
                                                    size_t *out_read);

/* secmem_stream_next removes the next chunk and returns it as a locked
 * buffer. NULL with errno ENODATA when the stream is empty. */
SECMEM_API SECMEM_MUST_CHECK secmem_buf *secmem_stream_next(secmem_stream *s);

/* secmem_stream_flush removes everything left and returns it in one locked
 * buffer (of length 0 when the stream is empty). On failure the stream is
 * left as it was. */
SECMEM_API SECMEM_MUST_CHECK secmem_buf *secmem_stream_flush(secmem_stream *s);

/* secmem_stream_size returns the number of bytes in the stream. */
SECMEM_API size_t secmem_stream_size(const secmem_stream *s);

/* secmem_stream_free frees the stream and every chunk in it (NULL is
 * ignored). */
SECMEM_API void secmem_stream_free(secmem_stream *s);

/* ------------------------------------------------------------------------ */
/* Secure heap: many small secrets in few locked pages                       */

/* Requests of up to SECMEM_HEAP_MAX_SLOT bytes are served from guarded,
 * locked, dump-excluded arenas of SECMEM_HEAP_ARENA_LEN bytes cut into size
 * classes of 16, 32, ... 2048 bytes, each slot preceded by its own
 * SECMEM_CANARY_LEN-byte canary; bookkeeping lives outside the arenas.
 * Larger requests get a guarded buffer of their own. Memory comes back
 * zero-filled and is wiped on free. */
#define SECMEM_HEAP_MAX_SLOT 2048u
#define SECMEM_HEAP_ARENA_LEN (64u * 1024u)

/* secmem_malloc returns len bytes of zeroed secure memory, 16-byte aligned,
 * or NULL with errno (ENOMEM, with a message naming the heap limit or
 * RLIMIT_MEMLOCK). The bytes after len up to the end of the slot hold a
 * canary: writing even one byte past len is caught at free and by
 * secmem_heap_check. len 0 returns a unique pointer to no usable bytes. */
SECMEM_API SECMEM_MUST_CHECK void *secmem_malloc(size_t len);

/* secmem_calloc is secmem_malloc(n * len) with the multiplication checked
 * (ENOMEM on overflow). */
SECMEM_API SECMEM_MUST_CHECK void *secmem_calloc(size_t n, size_t len);

/* secmem_free wipes and releases p (NULL is ignored). A pointer the heap did
 * not hand out, or one freed twice, is an integrity failure. */
SECMEM_API void secmem_free(void *p);

/* secmem_heap_check verifies the canary of every slot, used or free.
 * Returns 0; a bad canary is an integrity failure. */
SECMEM_API SECMEM_MUST_CHECK int secmem_heap_check(void);

/* secmem_heap_set_limit caps the bytes of arenas and large allocations the
 * heap may hold (0: no cap, the default). Returns 0. */
SECMEM_API int secmem_heap_set_limit(size_t max_bytes);

typedef struct secmem_heap_stats {
  size_t arenas;        /* arenas mapped */
  size_t slots_in_use;  /* live allocations (arena slots and large ones) */
  size_t bytes_in_use;  /* bytes of the slots and large buffers handed out */
  size_t bytes_locked;  /* locked bytes held by the heap (arenas + large) */
  size_t peak_in_use;   /* highest bytes_in_use seen */
  size_t limit;         /* the cap, 0 if none */
} secmem_heap_stats;

/* secmem_heap_get_stats fills *out. Returns 0, or -1 with EINVAL for NULL. */
SECMEM_API SECMEM_MUST_CHECK int secmem_heap_get_stats(secmem_heap_stats *out);

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

/* secmem_scrub zeroes the 16 KiB of stack below the caller's frame and, on
 * x86-64, clears the vector registers: call it right after a cryptographic
 * library has worked on a secret, from the same function, because such
 * libraries leave intermediate values on the stack and in registers
 * (libsodium 1.0.18's BLAKE2b digest, for one). */
SECMEM_API void secmem_scrub(void);

/* secmem_scramble fills len bytes with cryptographically random bytes. */
SECMEM_API void secmem_scramble(void *p, size_t len);

/* ------------------------------------------------------------------------ */
/* Lifecycle: purge, exit, signals, core dumps                               */

/* secmem_purge wipes and destroys every live buffer, wipes the contents of
 * every secure-heap allocation (which stay allocated, zero-filled), and
 * replaces the enclave key, so that every enclave sealed before the purge
 * can no longer be opened. Buffer handles stay valid for secmem_buf_destroy
 * only; their data pointers fault on any touch. */
SECMEM_API void secmem_purge(void);

/* secmem_shutdown is for code about to be unloaded (the secmem provider
 * calls it from its module destructor): it stops the re-key timer, removes
 * the library's thread-exit hook, wipes every secret and unmaps every page
 * the library mapped. Every buffer, enclave and heap pointer becomes
 * invalid, and no secmem call may follow. */
SECMEM_API void secmem_shutdown(void);

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
