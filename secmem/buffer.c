/*
 * buffer.c - owns the public locked-buffer API (memguard's LockedBuffer):
 * creation from nothing, bytes or randomness, state changes, bounded copies,
 * constant-time comparison and destruction, all over guarded.c.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

static secmem_buf *buf_new(size_t len, const void *site) {
  if (secmem_i_ensure_init() != 0) {
    return NULL;
  }
  return secmem_i_guarded_new(len, SECMEM_I_KIND_BUF, site);
}

secmem_buf *secmem_buf_new(size_t len) { return buf_new(len, __builtin_return_address(0)); }

secmem_buf *secmem_buf_from_bytes(void *src, size_t len) {
  if (src == NULL && len > 0) {
    secmem_i_fail(EINVAL, "secmem_buf_from_bytes: source is NULL");
    return NULL;
  }
  secmem_buf *b = buf_new(len, __builtin_return_address(0));
  if (b == NULL) {
    return NULL; /* src untouched: the caller still has its bytes */
  }
  secmem_move(b->data, src, len);
  return b;
}

secmem_buf *secmem_buf_random(size_t len) {
  secmem_buf *b = buf_new(len, __builtin_return_address(0));
  if (b != NULL && len > 0) {
    randombytes_buf(b->data, len);
  }
  return b;
}

void *secmem_buf_data(const secmem_buf *b) {
  return secmem_i_guarded_validate(b, "secmem_buf_data")->data;
}

size_t secmem_buf_len(const secmem_buf *b) {
  return secmem_i_guarded_validate(b, "secmem_buf_len")->len;
}

secmem_buf_state secmem_buf_get_state(const secmem_buf *b) {
  return (secmem_buf_state)atomic_load(&secmem_i_guarded_validate(b, "secmem_buf_get_state")->state);
}

int secmem_buf_freeze(secmem_buf *b) {
  return secmem_i_guarded_set_state(b, SECMEM_I_RO, "secmem_buf_freeze");
}

int secmem_buf_melt(secmem_buf *b) {
  return secmem_i_guarded_set_state(b, SECMEM_I_RW, "secmem_buf_melt");
}

int secmem_buf_noaccess(secmem_buf *b) {
  return secmem_i_guarded_set_state(b, SECMEM_I_NOACCESS, "secmem_buf_noaccess");
}

int secmem_buf_check(const secmem_buf *b) { return secmem_i_guarded_check(b, "secmem_buf_check"); }

void secmem_buf_destroy(secmem_buf *b) {
  if (b != NULL) {
    secmem_i_guarded_destroy(b, "secmem_buf_destroy");
  }
}

void secmem_buf_destroy_ptr(secmem_buf **pb) {
  if (pb != NULL) {
    secmem_buf_destroy(*pb);
    *pb = NULL;
  }
}

/* Validate b for a write of len bytes at off. */
static int writable_range(const secmem_buf *b, size_t off, size_t len, const char *who) {
  secmem_i_guarded_validate(b, who);
  if (atomic_load(&b->state) != SECMEM_I_RW) {
    return secmem_i_fail(EACCES, "%s: the buffer is not read-write (melt it first)", who);
  }
  if (off > b->len || len > b->len - off) {
    return secmem_i_fail(ERANGE, "%s: %zu bytes at offset %zu do not fit in %zu bytes", who, len,
                         off, b->len);
  }
  return 0;
}

int secmem_buf_copy_at(secmem_buf *b, size_t off, const void *src, size_t len) {
  if (writable_range(b, off, len, "secmem_buf_copy_at") != 0) {
    return -1;
  }
  if (src == NULL && len > 0) {
    return secmem_i_fail(EINVAL, "secmem_buf_copy_at: source is NULL");
  }
  secmem_copy(b->data + off, src, len);
  return 0;
}

int secmem_buf_move_at(secmem_buf *b, size_t off, void *src, size_t len) {
  if (secmem_buf_copy_at(b, off, src, len) != 0) {
    return -1;
  }
  secmem_wipe(src, len);
  return 0;
}

int secmem_buf_scramble(secmem_buf *b) {
  if (writable_range(b, 0, 0, "secmem_buf_scramble") != 0) {
    return -1;
  }
  secmem_scramble(b->data, b->len);
  return 0;
}

int secmem_buf_wipe(secmem_buf *b) {
  if (writable_range(b, 0, 0, "secmem_buf_wipe") != 0) {
    return -1;
  }
  secmem_wipe(b->data, b->len);
  return 0;
}

int secmem_buf_equal(const secmem_buf *b, const void *p, size_t len) {
  secmem_i_guarded_validate(b, "secmem_buf_equal");
  int state = atomic_load(&b->state);
  if ((state != SECMEM_I_RW && state != SECMEM_I_RO) || len != b->len) {
    return 0;
  }
  if (p == NULL) {
    return len == 0;
  }
  return secmem_equal(b->data, p, len);
}
