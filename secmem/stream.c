/*
 * stream.c - owns sealed streams (memguard's Stream): a FIFO of enclaves of
 * at most chunk_len bytes each, for secrets too large to hold in one buffer.
 * Only the chunk being read is ever open, and only in guarded memory or the
 * caller's output. Every operation either completes or leaves the stream as
 * it was.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define STREAM_MAGIC 0x5353544du /* "SSTM" */

struct chunk {
  struct secmem_enclave *e;
  struct chunk *next;
};

struct secmem_stream {
  uint32_t magic;
  size_t chunk_len;
  size_t size;
  struct chunk *head, *tail;
  pthread_mutex_t mu;
};

static struct secmem_stream *valid(const struct secmem_stream *s, const char *who) {
  if (s == NULL || s->magic != STREAM_MAGIC) {
    char msg[128];
    snprintf(msg, sizeof(msg), "%s: pointer is not a live secmem stream", who);
    secmem_i_fatal(msg);
  }
  return (struct secmem_stream *)s;
}

static void chunks_free(struct chunk *c) {
  while (c != NULL) {
    struct chunk *next = c->next;
    secmem_enclave_free(c->e);
    free(c);
    c = next;
  }
}

secmem_stream *secmem_stream_new(size_t chunk_len) {
  if (secmem_i_ensure_init() != 0) {
    return NULL;
  }
  struct secmem_stream *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    secmem_i_fail(ENOMEM, "secmem_stream_new: out of memory");
    return NULL;
  }
  s->magic = STREAM_MAGIC;
  s->chunk_len = chunk_len != 0 ? chunk_len : SECMEM_STREAM_DEFAULT_CHUNK;
  pthread_mutex_init(&s->mu, NULL);
  return s;
}

int secmem_stream_write(secmem_stream *s, void *src, size_t len) {
  valid(s, "secmem_stream_write");
  if (src == NULL && len > 0) {
    return secmem_i_fail(EINVAL, "secmem_stream_write: source is NULL");
  }
  /* Seal everything first, so a failure appends nothing. */
  struct chunk *first = NULL, *last = NULL;
  for (size_t off = 0; off < len;) {
    size_t n = len - off < s->chunk_len ? len - off : s->chunk_len;
    struct chunk *c = malloc(sizeof(*c));
    struct secmem_enclave *e = c != NULL ? secmem_i_enclave_seal((unsigned char *)src + off, n) : NULL;
    if (e == NULL) {
      bool oom = c == NULL;
      int err = errno;
      free(c);
      chunks_free(first);
      if (oom) {
        return secmem_i_fail(ENOMEM, "secmem_stream_write: out of memory");
      }
      errno = err;
      return -1;
    }
    c->e = e;
    c->next = NULL;
    if (last != NULL) {
      last->next = c;
    } else {
      first = c;
    }
    last = c;
    off += n;
  }
  pthread_mutex_lock(&s->mu);
  if (first != NULL) {
    if (s->tail != NULL) {
      s->tail->next = first;
    } else {
      s->head = first;
    }
    s->tail = last;
    s->size += len;
  }
  pthread_mutex_unlock(&s->mu);
  secmem_wipe(src, len);
  return 0;
}

/* Remove the head chunk (the stream's lock is held). */
static void pop_head(struct secmem_stream *s) {
  struct chunk *c = s->head;
  s->head = c->next;
  if (s->head == NULL) {
    s->tail = NULL;
  }
  s->size -= c->e->len;
  secmem_enclave_free(c->e);
  free(c);
}

int secmem_stream_read(secmem_stream *s, void *out, size_t out_len, size_t *out_read) {
  valid(s, "secmem_stream_read");
  if (out_read == NULL || (out == NULL && out_len > 0)) {
    return secmem_i_fail(EINVAL, "secmem_stream_read: output is NULL");
  }
  *out_read = 0;
  unsigned char *dst = out;
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  while (*out_read < out_len && s->head != NULL) {
    struct secmem_enclave *e = s->head->e;
    size_t want = out_len - *out_read;
    if (e->len <= want) {
      if (secmem_enclave_open_into(e, dst + *out_read, want) != 0) {
        rc = -1;
        break;
      }
      *out_read += e->len;
      pop_head(s);
      continue;
    }
    /* Partial chunk: open it into guarded memory, seal the rest again, and
     * only then hand out the front. */
    secmem_buf *plain = secmem_enclave_open(e);
    if (plain == NULL) {
      rc = -1;
      break;
    }
    struct secmem_enclave *rest = secmem_i_enclave_seal(plain->data + want, e->len - want);
    if (rest == NULL) {
      secmem_buf_destroy(plain);
      rc = -1;
      break;
    }
    memcpy(dst + *out_read, plain->data, want);
    secmem_buf_destroy(plain);
    *out_read += want;
    s->size -= want;
    secmem_enclave_free(e);
    s->head->e = rest;
  }
  pthread_mutex_unlock(&s->mu);
  /* Like read(2): bytes already moved are reported as a success, and the
   * chunk that failed stays at the front to fail the next call. */
  return *out_read > 0 ? 0 : rc;
}

secmem_buf *secmem_stream_next(secmem_stream *s) {
  valid(s, "secmem_stream_next");
  pthread_mutex_lock(&s->mu);
  if (s->head == NULL) {
    pthread_mutex_unlock(&s->mu);
    secmem_i_fail(ENODATA, "secmem_stream_next: the stream is empty");
    return NULL;
  }
  secmem_buf *b = secmem_enclave_open(s->head->e);
  if (b != NULL) {
    pop_head(s);
  }
  pthread_mutex_unlock(&s->mu);
  return b;
}

secmem_buf *secmem_stream_flush(secmem_stream *s) {
  valid(s, "secmem_stream_flush");
  pthread_mutex_lock(&s->mu);
  struct secmem_buf *b =
      secmem_i_guarded_new(s->size, SECMEM_I_KIND_BUF, __builtin_return_address(0));
  if (b == NULL) {
    pthread_mutex_unlock(&s->mu);
    return NULL;
  }
  size_t off = 0;
  for (struct chunk *c = s->head; c != NULL; c = c->next) {
    if (secmem_enclave_open_into(c->e, b->data + off, b->len - off) != 0) {
      int err = errno;
      pthread_mutex_unlock(&s->mu);
      secmem_i_guarded_destroy(b, "secmem_stream_flush");
      errno = err;
      return NULL;
    }
    off += c->e->len;
  }
  chunks_free(s->head);
  s->head = s->tail = NULL;
  s->size = 0;
  pthread_mutex_unlock(&s->mu);
  return b;
}

size_t secmem_stream_size(const secmem_stream *s) {
  struct secmem_stream *m = valid(s, "secmem_stream_size");
  pthread_mutex_lock(&m->mu);
  size_t n = m->size;
  pthread_mutex_unlock(&m->mu);
  return n;
}

void secmem_stream_free(secmem_stream *s) {
  if (s == NULL) {
    return;
  }
  valid(s, "secmem_stream_free");
  chunks_free(s->head);
  s->magic = 0;
  pthread_mutex_destroy(&s->mu);
  free(s);
}
