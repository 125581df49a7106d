/*
 * internal.h - declarations shared between libsecmem's files; nothing here is
 * exported. Layers, bottom up (each uses only those below it):
 *
 *   error    thread-local messages and errno
 *   page     the only code that talks to the kernel about memory
 *   guarded  one guarded allocation, the list of live ones, the fatal path
 *   buffer   the public secmem_buf API over guarded allocations
 *   registry init, purge, safe exit, signals, fork and exit handlers
 */
#ifndef SECMEM_INTERNAL_H
#define SECMEM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secmem.h"

#define SECMEM_I_NORETURN __attribute__((noreturn))
#define SECMEM_I_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ---- error.c ------------------------------------------------------------ */

/* secmem_i_fail records a message for secmem_last_error, sets errno to err
 * and returns -1 so callers can write `return secmem_i_fail(...)`. */
int secmem_i_fail(int err, const char *fmt, ...) SECMEM_I_PRINTF(2, 3);

/* secmem_i_clear_error empties the calling thread's message. */
void secmem_i_clear_error(void);

/* secmem_i_format_size writes "64 KiB" style text for n bytes into out. */
void secmem_i_format_size(char *out, size_t out_len, size_t n);

/* ---- page.c ------------------------------------------------------------- */

enum secmem_i_prot { SECMEM_I_PROT_NONE, SECMEM_I_PROT_READ, SECMEM_I_PROT_RW };

size_t secmem_i_page_size(void);
/* Reserve len bytes (a page multiple) of fresh, zeroed, no-access address
 * space outside malloc. NULL + errno on failure. */
void *secmem_i_page_reserve(size_t len);
/* Map len bytes of ordinary read-write memory for non-secret metadata. */
void *secmem_i_page_map_plain(size_t len);
int secmem_i_page_protect(void *p, size_t len, enum secmem_i_prot prot);
int secmem_i_page_lock(void *p, size_t len);
int secmem_i_page_unlock(void *p, size_t len);
int secmem_i_page_dontdump(void *p, size_t len);
int secmem_i_page_release(void *p, size_t len);
/* Replace len bytes at p with a fresh no-access reservation: drops the pages
 * (and their lock) while keeping the addresses unusable by anyone else. */
int secmem_i_page_discard(void *p, size_t len);
/* RLIMIT_MEMLOCK's soft limit, SIZE_MAX when unlimited. */
size_t secmem_i_page_memlock_limit(void);
/* memfd_secret: whether the kernel offers it; back len bytes at p (inside a
 * reservation) with a fresh secret file, read-write; and, in a forked child,
 * replace a shared secret mapping with a private copy in the given prot. */
bool secmem_i_page_secret_available(void);
int secmem_i_page_back_secret(void *p, size_t len);
int secmem_i_page_secret_privatize(void *p, size_t len, enum secmem_i_prot prot);
/* The fork handshake: a close-on-exec pipe; the child signals one end once
 * its memory is its own, the parent waits on the other (bounded). */
int secmem_i_page_pipe(int fds[2]);
void secmem_i_page_signal_fd(int fd);
int secmem_i_page_wait_fd(int fd, int timeout_ms); /* 0 done, -1 timed out */
void secmem_i_page_close(int fd);
/* Physical memory in bytes, SIZE_MAX when unknown. */
size_t secmem_i_page_phys_mem(void);
int secmem_i_page_disable_core_dumps(void);
/* Async-signal-safe write of a whole string to stderr. */
void secmem_i_page_write_stderr(const char *s);

/* ---- guarded.c ------------------------------------------------------------ */

#define SECMEM_I_BUF_MAGIC 0x53424d47u /* "SBMG" */

enum secmem_i_state {
  SECMEM_I_RW = SECMEM_BUF_READWRITE,
  SECMEM_I_RO = SECMEM_BUF_READONLY,
  SECMEM_I_NOACCESS = SECMEM_BUF_NOACCESS,
  SECMEM_I_PURGED = SECMEM_BUF_PURGED,
  SECMEM_I_DEAD = 4 /* destroyed; handle awaits reuse */
};

/* What a guarded allocation is for: user buffers are listed as leaks. */
enum secmem_i_kind { SECMEM_I_KIND_BUF, SECMEM_I_KIND_INTERNAL };

/*
 * One guarded allocation. Handles live in slabs the library maps itself and
 * never unmaps, so a stale handle can always be read and recognised.
 *
 *   base                 inner                      data         data+len
 *   | guard page(s) |  canary ........ canary | data ........... | guard page(s) |
 *                    \______________ inner_len _________________/
 */
struct secmem_buf {
  uint32_t magic;
  _Atomic int state;       /* enum secmem_i_state */
  int kind;                /* enum secmem_i_kind */
  bool locked;             /* inner pages are mlock'ed */
  bool secret;             /* inner pages are a memfd_secret mapping */
  unsigned char *base;     /* start of the mapping */
  size_t total_len;        /* whole mapping, guards included */
  unsigned char *inner;    /* first page after the leading guard */
  size_t inner_len;        /* canary + data, whole pages */
  unsigned char *data;     /* end-aligned against the trailing guard */
  size_t len;              /* data length as requested */
  const void *site;        /* caller that allocated it (leak report) */
  uint64_t serial;         /* allocation number (leak report) */
  struct secmem_buf *next; /* live list (kept intact after unlinking) */
  struct secmem_buf *prev;
  struct secmem_buf *free_next; /* free-handle queue */
};

/* Create a guarded allocation of len bytes, read-write and zero-filled. */
struct secmem_buf *secmem_i_guarded_new(size_t len, int kind, const void *site);
/* Wipe, check the canary, release. Integrity failures do not return. */
void secmem_i_guarded_destroy(struct secmem_buf *b, const char *who);
/* Change protection: SECMEM_I_RW / _RO / _NOACCESS. */
int secmem_i_guarded_set_state(struct secmem_buf *b, int state, const char *who);
/* Verify the canary in any state: 0 when intact, -1 (EINVAL) when purged; a
 * bad canary does not return. */
int secmem_i_guarded_check(const struct secmem_buf *b, const char *who);
/* Return b if it is a live or purged handle; anything else is fatal. */
struct secmem_buf *secmem_i_guarded_validate(const struct secmem_buf *b, const char *who);
/* Wipe and release the pages of every live allocation of the given kind
 * (-1: all); handles become PURGED. */
void secmem_i_guarded_purge(int kind);
/* Report user buffers never destroyed to stderr; returns how many. */
size_t secmem_i_guarded_report_leaks(void);
/* Wipe and unmap everything, handle slabs included. */
void secmem_i_guarded_shutdown(void);
void secmem_i_guarded_stats(secmem_stats *out);
void secmem_i_guarded_policy_set(int policy);
int secmem_i_guarded_policy_get(void);
void secmem_i_guarded_backing_set(int backing);
int secmem_i_guarded_backing_get(void);
/* Wipe the first len data bytes of a live allocation in place, whatever its
 * state (the state is kept). Used by the heap's purge. */
void secmem_i_guarded_wipe(struct secmem_buf *b, size_t len);
/* Fork handlers: hold the lock across fork, then re-lock pages in the child. */
void secmem_i_guarded_fork_prepare(void);
void secmem_i_guarded_fork_parent(void);
void secmem_i_guarded_fork_child(void);
/* Wipe every secret with async-signal-safe code, taking the lock only if it
 * can be had. */
void secmem_i_guarded_emergency_wipe(void);
/* The integrity-failure path: wipe every secret, one "secmem: <what>" line on
 * stderr, abort. Takes no lock that may be held. */
SECMEM_I_NORETURN void secmem_i_fatal(const char *what);

/* ---- ct.c ----------------------------------------------------------------- */

/* Zero the stack below the caller's frame that callees (libsodium's hash and
 * cipher cores) used and left unwiped. Call right after such a call returns,
 * from the same function. */
void secmem_i_stack_scrub(void);

/* ---- scratch.c ----------------------------------------------------------- */

#define SECMEM_I_SCRATCH_KEY 0  /* the library's key work */
#define SECMEM_I_SCRATCH_USER 1 /* handed out by secmem_scratch */
#define SECMEM_I_SCRATCH_SLOTS 2

/* The calling thread's scratch area in slot, at least len bytes, read-write,
 * or NULL with a message. A larger len replaces (and wipes) the area. */
unsigned char *secmem_i_scratch(int slot, size_t len);
void secmem_i_scratch_shutdown(void);
void secmem_i_scratch_fork_prepare(void);
void secmem_i_scratch_fork_parent(void);
void secmem_i_scratch_fork_child(void);

/* ---- coffer.c ------------------------------------------------------------ */

#define SECMEM_I_KEY_LEN 32
#define SECMEM_I_SCRATCH_LEN 128 /* key(32) | subkey(32) | keystream block 0 (64) */

/* Rebuild the enclave key into out (guarded scratch) and report the key's
 * epoch (which changes when a purge replaces the key). Re-keys first when
 * the interval has passed. Returns 0 or -1 (message set). */
int secmem_i_coffer_key(unsigned char out[SECMEM_I_KEY_LEN], uint64_t *out_epoch);
/* The calling thread's key scratch of SECMEM_I_SCRATCH_LEN bytes (read-
 * write, wiped after every use), or NULL with a message. */
unsigned char *secmem_i_coffer_scratch(void);
uint64_t secmem_i_coffer_epoch(void);
/* Replace the key with a fresh random one (purge). */
void secmem_i_coffer_reset(void);
uint64_t secmem_i_coffer_rekeys(void);
/* Copy the two halves out (for the coffer's own tests only). */
int secmem_i_coffer_snapshot(unsigned char left[SECMEM_I_KEY_LEN],
                             unsigned char right[SECMEM_I_KEY_LEN]);
void secmem_i_coffer_init(void);
void secmem_i_coffer_shutdown(void);
void secmem_i_coffer_fork_prepare(void);
void secmem_i_coffer_fork_parent(void);
void secmem_i_coffer_fork_child(void);

/* ---- enclave.c ------------------------------------------------------------ */

#define SECMEM_I_ENCLAVE_MAGIC 0x53454e43u /* "SENC" */
#define SECMEM_I_NONCE_LEN 24
#define SECMEM_I_MAC_LEN 16

/* nonce(24) || MAC(16) || ciphertext(len), on the ordinary heap. */
struct secmem_enclave {
  uint32_t magic;
  size_t len;         /* plaintext length */
  size_t box_len;     /* bytes at box */
  uint64_t epoch;     /* coffer epoch at sealing */
  unsigned char *box;
};

/* Seal len bytes at src into a new enclave (src is not wiped). */
struct secmem_enclave *secmem_i_enclave_seal(const void *src, size_t len);
void secmem_i_enclave_counts(uint64_t *opens, uint64_t *failures);

/* ---- heap.c --------------------------------------------------------------- */

/* Wipe every allocation's contents (purge); allocations stay valid. */
void secmem_i_heap_wipe_all(void);
void secmem_i_heap_shutdown(void);
void secmem_i_heap_fork_prepare(void);
void secmem_i_heap_fork_parent(void);
void secmem_i_heap_fork_child(void);

/* ---- registry.c ----------------------------------------------------------- */

/* secmem_i_ensure_init runs secmem_init and records a message on failure. */
int secmem_i_ensure_init(void);

#endif /* SECMEM_INTERNAL_H */
