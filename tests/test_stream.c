/*
 * test_stream.c - unit suite for sealed streams: the default chunk size,
 * sizes from 0 bytes to 16 MiB, wiping of sources, reads in odd pieces,
 * FIFO order of chunks, interleaved use, streams across secmem_purge, the
 * plaintext never resting in memory, and concurrent writers and readers
 * (for 1 s; SECMEM_TEST_SECONDS overrides).
 *
 * Stream contents are generated (gen_byte) and checked in place: byte i of
 * a stream written with seed s is gen_byte(s, i), so no test keeps a second
 * copy of what it wrote.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "internal.h"
#include "secmem.h"

/* Mismatches between len bytes at p and gen_byte(seed, off + i). */
static size_t mismatches(const unsigned char *p, size_t len, unsigned seed, size_t off) {
  size_t bad = 0;
  for (size_t i = 0; i < len; i++) {
    bad += p[i] != gen_byte(seed, off + i);
  }
  return bad;
}

static size_t nonzero(const unsigned char *p, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    n += p[i] != 0;
  }
  return n;
}

/* Append bytes off .. off+len-1 of seed's sequence to s from a heap source,
 * asserting the write succeeds, wipes its source and grows the size by len. */
static void write_gen(secmem_stream *s, size_t len, unsigned seed, size_t off) {
  unsigned char *src = malloc(len > 0 ? len : 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(src);
  for (size_t i = 0; i < len; i++) {
    src[i] = gen_byte(seed, off + i);
  }
  size_t before = secmem_stream_size(s);
  CU_ASSERT_EQUAL(secmem_stream_write(s, src, len), 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), before + len);
  CU_ASSERT_EQUAL(nonzero(src, len), 0);
  free(src);
}

/* A buffer handed out by next or flush: read-write, locked, intact, of len
 * bytes equal to seed's sequence from off. */
static void check_out_buf(secmem_buf *b, size_t len, unsigned seed, size_t off) {
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(secmem_buf_len(b), len);
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_READWRITE);
  CU_ASSERT_EQUAL(secmem_buf_check(b), 0);
  if (secmem_buf_len(b) != len) {
    return;
  }
  unsigned char *d = secmem_buf_data(b);
  CU_ASSERT_EQUAL(mismatches(d, len, seed, off), 0);
  if (len > 0) {
    struct smaps_info in;
    CU_ASSERT_TRUE(smaps_lookup(d, &in));
    CU_ASSERT_TRUE(in.readable && in.writable);
    CU_ASSERT_TRUE(in.dontdump);
    CU_ASSERT_TRUE(in.locked_kb * 1024 >= len);
    /* Writable as promised. */
    d[len - 1] ^= 0xff;
    d[len - 1] ^= 0xff;
  }
}

static void check_empty(secmem_stream *s) {
  CU_ASSERT_EQUAL(secmem_stream_size(s), 0);
  errno = 0;
  secmem_buf *b = secmem_stream_next(s);
  CU_ASSERT_PTR_NULL(b);
  CU_ASSERT_EQUAL(errno, ENODATA);
  CU_ASSERT_TRUE(strlen(secmem_last_error()) > 0);
  secmem_buf_destroy(b);
  unsigned char out[8];
  size_t n = 99;
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, sizeof(out), &n), 0);
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 0);
}

static size_t live_buffers(void) {
  secmem_stats st;
  CU_ASSERT_EQUAL(secmem_get_stats(&st), 0);
  return st.buffers_live;
}

/* ---- chunk size ---------------------------------------------------------- */

static void test_default_chunk(void) {
  CU_ASSERT_EQUAL(SECMEM_STREAM_DEFAULT_CHUNK, 16u * 1024u);
  const size_t def = SECMEM_STREAM_DEFAULT_CHUNK;
  secmem_stream *s = secmem_stream_new(0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 0);
  write_gen(s, def + 1, 21, 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), def + 1);

  secmem_buf *b = secmem_stream_next(s);
  check_out_buf(b, def, 21, 0);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 1);

  b = secmem_stream_next(s);
  check_out_buf(b, 1, 21, def);
  secmem_buf_destroy(b);

  check_empty(s);
  secmem_stream_free(s);
}

static void test_explicit_chunk(void) {
  /* Asking for the default explicitly, or for another size, splits there. */
  size_t sizes[] = {SECMEM_STREAM_DEFAULT_CHUNK, 1, 7, 4096};
  for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
    size_t c = sizes[k];
    secmem_stream *s = secmem_stream_new(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    write_gen(s, 2 * c + 1, 22, 0);
    size_t off = 0;
    size_t expect[] = {c, c, 1};
    for (size_t i = 0; i < 3; i++) {
      secmem_buf *b = secmem_stream_next(s);
      check_out_buf(b, expect[i], 22, off);
      secmem_buf_destroy(b);
      off += expect[i];
      CU_ASSERT_EQUAL(secmem_stream_size(s), 2 * c + 1 - off);
    }
    check_empty(s);
    secmem_stream_free(s);
  }
}

/* ---- sizes ---------------------------------------------------------------- */

enum drain { DRAIN_READ, DRAIN_NEXT, DRAIN_FLUSH };

/* Write len bytes in one write to a stream of chunk c and take them out
 * again with the given method, checking content and size at every step. */
static void roundtrip(size_t c, size_t len, enum drain how, unsigned seed) {
  secmem_stream *s = secmem_stream_new(c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  write_gen(s, len, seed, 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), len);
  if (how == DRAIN_READ) {
    unsigned char *out = malloc(len + 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    size_t n = 12345;
    CU_ASSERT_EQUAL(secmem_stream_read(s, out, len + 10, &n), 0);
    CU_ASSERT_EQUAL(n, len);
    CU_ASSERT_EQUAL(mismatches(out, n <= len ? n : len, seed, 0), 0);
    secmem_wipe(out, len + 10);
    free(out);
  } else if (how == DRAIN_NEXT) {
    size_t off = 0, chunks = 0;
    while (off < len) {
      secmem_buf *b = secmem_stream_next(s);
      size_t want = len - off < c ? len - off : c;
      check_out_buf(b, want, seed, off);
      secmem_buf_destroy(b);
      if (b == NULL) {
        break;
      }
      off += want;
      chunks++;
      CU_ASSERT_EQUAL(secmem_stream_size(s), len - off);
    }
    CU_ASSERT_EQUAL(chunks, (len + c - 1) / c);
  } else {
    secmem_buf *b = secmem_stream_flush(s);
    check_out_buf(b, len, seed, 0);
    secmem_buf_destroy(b);
  }
  check_empty(s);
  secmem_stream_free(s);
}

static void test_sizes(void) {
  const size_t c = 100;
  size_t lens[] = {0, 1, c - 1, c, c + 1, 2 * c + 7, 100 * c};
  size_t live = live_buffers();
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    roundtrip(c, lens[i], DRAIN_READ, 100 + (unsigned)i);
    roundtrip(c, lens[i], DRAIN_NEXT, 200 + (unsigned)i);
    roundtrip(c, lens[i], DRAIN_FLUSH, 300 + (unsigned)i);
  }
  CU_ASSERT_EQUAL(live_buffers(), live);
}

static void test_zero_bytes(void) {
  secmem_stream *s = secmem_stream_new(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  unsigned char src[4] = {1, 2, 3, 4};
  CU_ASSERT_EQUAL(secmem_stream_write(s, src, 0), 0);
  CU_ASSERT_EQUAL(secmem_stream_write(s, NULL, 0), 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 0);
  /* Nothing was wiped beyond the 0 bytes asked for. */
  CU_ASSERT_EQUAL(src[0], 1);
  CU_ASSERT_EQUAL(src[3], 4);
  check_empty(s);

  secmem_buf *b = secmem_stream_flush(s);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(secmem_buf_len(b), 0);
  CU_ASSERT_EQUAL(secmem_buf_get_state(b), SECMEM_BUF_READWRITE);
  CU_ASSERT_EQUAL(secmem_buf_check(b), 0);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 0);

  /* A 0-byte write between real ones adds no empty chunk. */
  write_gen(s, 10, 31, 0);
  CU_ASSERT_EQUAL(secmem_stream_write(s, src, 0), 0);
  write_gen(s, 5, 31, 10);
  b = secmem_stream_next(s);
  check_out_buf(b, 10, 31, 0);
  secmem_buf_destroy(b);
  b = secmem_stream_next(s);
  check_out_buf(b, 5, 31, 10);
  secmem_buf_destroy(b);
  check_empty(s);
  secmem_stream_free(s);
}

static void test_16mib(void) {
  const size_t total = 16u << 20;
  const unsigned seed = 1616;
  unsigned char *src = malloc(total);
  CU_ASSERT_PTR_NOT_NULL_FATAL(src);
  gen_fill(src, total, seed);
  secmem_stream *s = secmem_stream_new(0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  size_t pieces[] = {1, (5u << 20) + 3, (7u << 20) - 1001, 12345, 0};
  pieces[4] = total - pieces[0] - pieces[1] - pieces[2] - pieces[3];
  size_t off = 0;
  for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
    CU_ASSERT_EQUAL(secmem_stream_write(s, src + off, pieces[i]), 0);
    off += pieces[i];
    CU_ASSERT_EQUAL(secmem_stream_size(s), off);
  }
  CU_ASSERT_EQUAL(off, total);
  CU_ASSERT_EQUAL(nonzero(src, total), 0);
  free(src);

  secmem_buf *b = secmem_stream_flush(s);
  check_out_buf(b, total, seed, 0);
  secmem_buf_destroy(b);
  check_empty(s);
  secmem_stream_free(s);
}

/* ---- writes --------------------------------------------------------------- */

static void test_write_wipes_and_failure_appends_nothing(void) {
  secmem_stream *s = secmem_stream_new(16);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  unsigned char src[40];
  gen_fill(src, sizeof(src), 41);
  CU_ASSERT_EQUAL(secmem_stream_write(s, src, sizeof(src)), 0);
  CU_ASSERT_EQUAL(nonzero(src, sizeof(src)), 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 40);

  errno = 0;
  CU_ASSERT_EQUAL(secmem_stream_write(s, NULL, 5), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  CU_ASSERT_TRUE(strlen(secmem_last_error()) > 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 40);

  /* The stream holds exactly what the good write put there. */
  secmem_buf *b = secmem_stream_flush(s);
  check_out_buf(b, 40, 41, 0);
  secmem_buf_destroy(b);
  check_empty(s);
  secmem_stream_free(s);
}

/* ---- reads ---------------------------------------------------------------- */

static void test_read_odd_pieces(void) {
  const size_t c = 64;
  const size_t total = 50 * c + 13;
  const unsigned seed = 51;
  secmem_stream *s = secmem_stream_new(c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  /* Several writes, so chunk boundaries fall in odd places too. */
  size_t w[] = {1000, 1, 63, 65, 0};
  w[4] = total - w[0] - w[1] - w[2] - w[3];
  size_t off = 0;
  for (size_t i = 0; i < 5; i++) {
    write_gen(s, w[i], seed, off);
    off += w[i];
  }
  size_t live = live_buffers();
  size_t pieces[] = {7, 1, 1000, c + 3, c - 1, c, 2, 129, 1, 300};
  unsigned char out[1000];
  size_t got = 0;
  for (size_t i = 0; got < total && i < 1000; i++) {
    size_t want = pieces[i % (sizeof(pieces) / sizeof(pieces[0]))];
    size_t n = 0;
    memset(out, 0, sizeof(out));
    CU_ASSERT_EQUAL_FATAL(secmem_stream_read(s, out, want, &n), 0);
    size_t expect = total - got < want ? total - got : want;
    CU_ASSERT_EQUAL(n, expect);
    CU_ASSERT_EQUAL(mismatches(out, n, seed, got), 0);
    /* Nothing beyond n was written. */
    CU_ASSERT_EQUAL(nonzero(out + n, sizeof(out) - n), 0);
    got += n;
    CU_ASSERT_EQUAL(secmem_stream_size(s), total - got);
    if (n == 0) {
      break;
    }
  }
  CU_ASSERT_EQUAL(got, total);
  secmem_wipe(out, sizeof(out));
  /* Partial reads open chunks into buffers of their own and destroy them. */
  CU_ASSERT_EQUAL(live_buffers(), live);
  check_empty(s);
  secmem_stream_free(s);
}

static void test_partial_chunk_leaves_rest(void) {
  secmem_stream *s = secmem_stream_new(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  write_gen(s, 100, 52, 0); /* chunks of 64 and 36 */
  unsigned char out[10];
  size_t n = 0;
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, sizeof(out), &n), 0);
  CU_ASSERT_EQUAL(n, 10);
  CU_ASSERT_EQUAL(mismatches(out, 10, 52, 0), 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 90);
  /* The rest of the first chunk is the next chunk. */
  secmem_buf *b = secmem_stream_next(s);
  check_out_buf(b, 54, 52, 10);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 36);
  /* A partly read chunk stays readable by read and flush too. */
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, 1, &n), 0);
  CU_ASSERT_EQUAL(n, 1);
  CU_ASSERT_EQUAL(out[0], gen_byte(52, 64));
  CU_ASSERT_EQUAL(secmem_stream_size(s), 35);
  b = secmem_stream_flush(s);
  check_out_buf(b, 35, 52, 65);
  secmem_buf_destroy(b);
  check_empty(s);
  secmem_wipe(out, sizeof(out));
  secmem_stream_free(s);
}

static void test_read_edge_arguments(void) {
  secmem_stream *s = secmem_stream_new(32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  write_gen(s, 50, 53, 0);
  unsigned char out[64];
  size_t n = 77;
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, 0, &n), 0);
  CU_ASSERT_EQUAL(n, 0);
  n = 77;
  CU_ASSERT_EQUAL(secmem_stream_read(s, NULL, 0, &n), 0);
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 50);

  errno = 0;
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, sizeof(out), NULL), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  CU_ASSERT_TRUE(strlen(secmem_last_error()) > 0);
  errno = 0;
  CU_ASSERT_EQUAL(secmem_stream_read(s, NULL, 5, &n), -1);
  CU_ASSERT_EQUAL(errno, EINVAL);
  CU_ASSERT_EQUAL(secmem_stream_size(s), 50);

  /* The failed reads consumed nothing. */
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, sizeof(out), &n), 0);
  CU_ASSERT_EQUAL(n, 50);
  CU_ASSERT_EQUAL(mismatches(out, 50, 53, 0), 0);
  secmem_wipe(out, sizeof(out));
  check_empty(s);
  secmem_stream_free(s);
}

/* ---- order ---------------------------------------------------------------- */

static void test_next_fifo(void) {
  const size_t c = 32;
  secmem_stream *s = secmem_stream_new(c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  /* Each write is cut on its own: writes never share a chunk. */
  size_t w[] = {10, 32, 40, 1, 64};
  size_t expect[] = {10, 32, 32, 8, 1, 32, 32};
  size_t off = 0;
  for (size_t i = 0; i < 5; i++) {
    write_gen(s, w[i], 61, off);
    off += w[i];
  }
  size_t total = off;
  off = 0;
  for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
    secmem_buf *b = secmem_stream_next(s);
    check_out_buf(b, expect[i], 61, off);
    secmem_buf_destroy(b);
    off += expect[i];
    CU_ASSERT_EQUAL(secmem_stream_size(s), total - off);
  }
  CU_ASSERT_EQUAL(off, total);
  check_empty(s);

  /* Chunks outlive each other independently: hold several at once. */
  write_gen(s, 3 * c, 62, 0);
  secmem_buf *a = secmem_stream_next(s);
  secmem_buf *b = secmem_stream_next(s);
  secmem_buf *d = secmem_stream_next(s);
  check_out_buf(a, c, 62, 0);
  check_out_buf(b, c, 62, c);
  check_out_buf(d, c, 62, 2 * c);
  CU_ASSERT_PTR_NOT_EQUAL(secmem_buf_data(a), secmem_buf_data(b));
  secmem_buf_destroy(b);
  secmem_buf_destroy(a);
  secmem_buf_destroy(d);
  check_empty(s);
  secmem_stream_free(s);
}

static void test_interleaved(void) {
  const unsigned seed = 71;
  secmem_stream *s = secmem_stream_new(50);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  unsigned rnd = 12345;
  size_t written = 0, taken = 0;
  unsigned char out[300];
  for (int i = 0; i < 300; i++) {
    rnd = rnd * 1103515245u + 12345u;
    size_t wl = (rnd >> 8) % 300;
    write_gen(s, wl, seed, written);
    written += wl;
    rnd = rnd * 1103515245u + 12345u;
    size_t rl = 1 + (rnd >> 8) % 300;
    size_t n = 0;
    int how = (int)((rnd >> 20) % 4);
    if (how == 0 && taken < written) {
      /* Sometimes take a chunk instead of bytes. */
      secmem_buf *b = secmem_stream_next(s);
      CU_ASSERT_PTR_NOT_NULL_FATAL(b);
      n = secmem_buf_len(b);
      CU_ASSERT_TRUE(n > 0 && n <= 50);
      CU_ASSERT_EQUAL(mismatches(secmem_buf_data(b), n, seed, taken), 0);
      secmem_buf_destroy(b);
    } else {
      CU_ASSERT_EQUAL_FATAL(secmem_stream_read(s, out, rl, &n), 0);
      size_t avail = written - taken;
      CU_ASSERT_EQUAL(n, avail < rl ? avail : rl);
      CU_ASSERT_EQUAL(mismatches(out, n, seed, taken), 0);
    }
    taken += n;
    CU_ASSERT_EQUAL_FATAL(secmem_stream_size(s), written - taken);
  }
  secmem_buf *b = secmem_stream_flush(s);
  check_out_buf(b, written - taken, seed, taken);
  secmem_buf_destroy(b);
  check_empty(s);
  secmem_wipe(out, sizeof(out));
  secmem_stream_free(s);
}

/* ---- purge ---------------------------------------------------------------- */

static void test_purge_makes_old_chunks_unreadable(void) {
  /* Hold no buffer across the purge: it would be wiped. */
  secmem_stream *old = secmem_stream_new(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(old);
  write_gen(old, 150, 81, 0);
  secmem_stats before, after;
  CU_ASSERT_EQUAL(secmem_get_stats(&before), 0);

  secmem_purge();

  unsigned char out[200];
  memset(out, 0xaa, sizeof(out));
  size_t n = 0;
  /* Whole-chunk reads open straight into out; partial ones go through a
   * buffer. Both refuse, consume nothing and leave out alone. */
  size_t wants[] = {200, 64, 10, 1};
  for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
    errno = 0;
    CU_ASSERT_EQUAL(secmem_stream_read(old, out, wants[i], &n), -1);
    CU_ASSERT_EQUAL(errno, EBADMSG);
    CU_ASSERT_EQUAL(secmem_stream_size(old), 150);
  }
  size_t untouched = 0;
  for (size_t i = 0; i < sizeof(out); i++) {
    untouched += out[i] == 0xaa;
  }
  CU_ASSERT_EQUAL(untouched, sizeof(out));

  errno = 0;
  secmem_buf *b = secmem_stream_next(old);
  CU_ASSERT_PTR_NULL(b);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_stream_size(old), 150);

  errno = 0;
  b = secmem_stream_flush(old);
  CU_ASSERT_PTR_NULL(b);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  CU_ASSERT_TRUE(strlen(secmem_last_error()) > 0);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(secmem_stream_size(old), 150);

  /* Refusals leave no buffer behind and are counted. */
  CU_ASSERT_EQUAL(secmem_get_stats(&after), 0);
  CU_ASSERT_EQUAL(after.buffers_live, before.buffers_live);
  CU_ASSERT_TRUE(after.open_failures >= before.open_failures + 6);

  /* A stream written after the purge works in full. */
  secmem_stream *fresh = secmem_stream_new(64);
  CU_ASSERT_PTR_NOT_NULL_FATAL(fresh);
  write_gen(fresh, 150, 82, 0);
  CU_ASSERT_EQUAL(secmem_stream_read(fresh, out, 10, &n), 0);
  CU_ASSERT_EQUAL(n, 10);
  CU_ASSERT_EQUAL(mismatches(out, 10, 82, 0), 0);
  b = secmem_stream_next(fresh);
  check_out_buf(b, 54, 82, 10);
  secmem_buf_destroy(b);
  b = secmem_stream_flush(fresh);
  check_out_buf(b, 86, 82, 64);
  secmem_buf_destroy(b);
  check_empty(fresh);
  secmem_stream_free(fresh);

  /* The old stream still takes writes; its stale head still blocks it. */
  write_gen(old, 20, 83, 0);
  CU_ASSERT_EQUAL(secmem_stream_size(old), 170);
  CU_ASSERT_EQUAL(secmem_stream_read(old, out, sizeof(out), &n), -1);
  CU_ASSERT_EQUAL(errno, EBADMSG);
  CU_ASSERT_EQUAL(secmem_stream_size(old), 170);
  secmem_wipe(out, sizeof(out));
  secmem_stream_free(old); /* frees stale chunks without opening them */
}

/* ---- sealed at rest ------------------------------------------------------- */

static void test_plaintext_not_at_rest(void) {
  const unsigned seed = 0x5eed5;
  const size_t len = 4096;
  secmem_stream *s = secmem_stream_new(0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  unsigned char *src = malloc(len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(src);
  gen_fill(src, len, seed);
  CU_ASSERT_EQUAL(secmem_stream_write(s, src, len), 0);
  CU_ASSERT_EQUAL(nonzero(src, len), 0);
  free(src);

  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 32), 0);
  secmem_buf *b = secmem_stream_flush(s);
  check_out_buf(b, len, seed, 0);
  /* Control: the scan does find the secret where it now is. */
  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 32), 1);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 32), 0);
  secmem_stream_free(s);
}

static void test_partial_read_leaves_no_plaintext(void) {
  /* Reading the front of a chunk re-seals the rest: the rest's bytes must
   * not stay behind in the clear. */
  const unsigned seed = 0x5eed6;
  const size_t len = 4096;
  secmem_stream *s = secmem_stream_new(0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  unsigned char *src = malloc(len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(src);
  /* Bytes 0..99 are filler; the generated sequence starts at byte 100. */
  memset(src, 0x11, 100);
  gen_fill(src + 100, len - 100, seed);
  CU_ASSERT_EQUAL(secmem_stream_write(s, src, len), 0);
  free(src);
  unsigned char out[100];
  size_t n = 0;
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, sizeof(out), &n), 0);
  CU_ASSERT_EQUAL(n, 100);
  CU_ASSERT_EQUAL(nonzero(out, 100), 100);
  CU_ASSERT_EQUAL(secmem_stream_size(s), len - 100);
  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 32), 0);
  secmem_buf *b = secmem_stream_next(s);
  check_out_buf(b, len - 100, seed, 0);
  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 32), 1);
  secmem_buf_destroy(b);
  CU_ASSERT_EQUAL(scan_self_for_generated(seed, 32), 0);
  secmem_stream_free(s);
}

/* ---- threads -------------------------------------------------------------- */

#define WRITERS 4
#define READERS 4
#define RECORD 64
#define MAX_RECORDS (1u << 18) /* per writer */

struct th_shared {
  secmem_stream *s;
  _Atomic int stop;
  _Atomic unsigned long written_bytes;
  _Atomic unsigned long read_bytes;
  _Atomic long errors;
  _Atomic long torn;
  _Atomic long dups;
  _Atomic long out_of_order;
  _Atomic unsigned records[WRITERS]; /* records written per writer */
  _Atomic unsigned char *seen[WRITERS];
};

static struct th_shared th;

static unsigned char record_byte(unsigned id, uint32_t counter, size_t i) {
  return (unsigned char)(id * 37u + counter * 11u + (unsigned)i * 3u + (counter >> 8));
}

static void record_make(unsigned char rec[RECORD], unsigned id, uint32_t counter) {
  rec[0] = (unsigned char)id;
  memcpy(rec + 1, &counter, sizeof(counter));
  for (size_t i = 5; i < RECORD; i++) {
    rec[i] = record_byte(id, counter, i);
  }
}

/* Check a record read back; returns its writer (0-based) and counter. */
static bool record_parse(const unsigned char rec[RECORD], unsigned *out_w, uint32_t *out_c) {
  unsigned id = rec[0];
  uint32_t counter;
  memcpy(&counter, rec + 1, sizeof(counter));
  if (id < 1 || id > WRITERS || counter >= MAX_RECORDS) {
    return false;
  }
  for (size_t i = 5; i < RECORD; i++) {
    if (rec[i] != record_byte(id, counter, i)) {
      return false;
    }
  }
  *out_w = id - 1;
  *out_c = counter;
  return true;
}

static void record_account(const unsigned char rec[RECORD], int64_t last[WRITERS]) {
  unsigned w;
  uint32_t c;
  if (!record_parse(rec, &w, &c)) {
    atomic_fetch_add(&th.torn, 1);
    return;
  }
  if (atomic_fetch_add(&th.seen[w][c], 1) != 0) {
    atomic_fetch_add(&th.dups, 1);
  }
  /* One reader takes a writer's records in the order they were written. */
  if ((int64_t)c <= last[w]) {
    atomic_fetch_add(&th.out_of_order, 1);
  }
  last[w] = c;
}

static void *writer(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  unsigned char rec[RECORD];
  for (uint32_t c = 0; c < MAX_RECORDS && !atomic_load(&th.stop); c++) {
    /* Keep the backlog bounded so readers stay busy and memory small. */
    while (secmem_stream_size(th.s) > 512 * RECORD && !atomic_load(&th.stop)) {
      sched_yield();
    }
    record_make(rec, id, c);
    if (secmem_stream_write(th.s, rec, RECORD) != 0) {
      atomic_fetch_add(&th.errors, 1);
      break;
    }
    if (rec[0] != 0 || rec[RECORD - 1] != 0) {
      atomic_fetch_add(&th.errors, 1); /* source not wiped */
    }
    atomic_fetch_add(&th.written_bytes, RECORD);
    atomic_fetch_add(&th.records[id - 1], 1);
  }
  return NULL;
}

static void *reader(void *arg) {
  (void)arg;
  unsigned char rec[RECORD];
  int64_t last[WRITERS];
  for (int i = 0; i < WRITERS; i++) {
    last[i] = -1;
  }
  while (!atomic_load(&th.stop)) {
    size_t n = 0;
    if (secmem_stream_read(th.s, rec, RECORD, &n) != 0) {
      atomic_fetch_add(&th.errors, 1);
      break;
    }
    if (n == 0) {
      sched_yield();
      continue;
    }
    atomic_fetch_add(&th.read_bytes, n);
    if (n != RECORD) {
      atomic_fetch_add(&th.torn, 1); /* a short read split a record */
      continue;
    }
    record_account(rec, last);
  }
  secmem_wipe(rec, sizeof(rec));
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_threads(void) {
  memset(&th, 0, sizeof(th));
  th.s = secmem_stream_new(RECORD);
  CU_ASSERT_PTR_NOT_NULL_FATAL(th.s);
  for (int w = 0; w < WRITERS; w++) {
    th.seen[w] = calloc(MAX_RECORDS, sizeof(th.seen[w][0]));
    CU_ASSERT_PTR_NOT_NULL_FATAL(th.seen[w]);
  }
  size_t live = live_buffers();
  pthread_t tw[WRITERS], tr[READERS];
  for (uintptr_t i = 0; i < WRITERS; i++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tw[i], NULL, writer, (void *)(i + 1)), 0);
  }
  for (uintptr_t i = 0; i < READERS; i++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tr[i], NULL, reader, NULL), 0);
  }
  const char *env = getenv("SECMEM_TEST_SECONDS");
  double seconds = env != NULL ? atof(env) : 1.0;
  double end = now() + seconds;
  while (now() < end) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&th.stop, 1);
  for (int i = 0; i < WRITERS; i++) {
    pthread_join(tw[i], NULL);
  }
  for (int i = 0; i < READERS; i++) {
    pthread_join(tr[i], NULL);
  }

  unsigned long written = atomic_load(&th.written_bytes);
  unsigned long was_read = atomic_load(&th.read_bytes);
  size_t remaining = secmem_stream_size(th.s);
  CU_ASSERT_EQUAL(was_read + remaining, written);

  /* Drain what is left and account for it too. */
  int64_t last[WRITERS];
  for (int i = 0; i < WRITERS; i++) {
    last[i] = -1;
  }
  unsigned char rec[RECORD];
  size_t drained = 0, n = 0;
  while (secmem_stream_read(th.s, rec, RECORD, &n) == 0 && n > 0) {
    drained += n;
    if (n != RECORD) {
      atomic_fetch_add(&th.torn, 1);
      continue;
    }
    record_account(rec, last);
  }
  CU_ASSERT_EQUAL(drained, remaining);
  CU_ASSERT_EQUAL(secmem_stream_size(th.s), 0);

  /* Every record written was read exactly once. */
  size_t missing = 0, records = 0;
  for (int w = 0; w < WRITERS; w++) {
    unsigned count = atomic_load(&th.records[w]);
    records += count;
    for (unsigned c = 0; c < count; c++) {
      missing += atomic_load(&th.seen[w][c]) != 1;
    }
    for (unsigned c = count; c < MAX_RECORDS; c++) {
      missing += atomic_load(&th.seen[w][c]) != 0;
    }
    free((void *)th.seen[w]);
  }
  CU_ASSERT_EQUAL(records * RECORD, written);
  CU_ASSERT_EQUAL(atomic_load(&th.errors), 0);
  CU_ASSERT_EQUAL(atomic_load(&th.torn), 0);
  CU_ASSERT_EQUAL(atomic_load(&th.dups), 0);
  CU_ASSERT_EQUAL(atomic_load(&th.out_of_order), 0);
  CU_ASSERT_EQUAL(missing, 0);
  CU_ASSERT_TRUE(records > WRITERS);
  CU_ASSERT_TRUE(was_read > 0);
  CU_ASSERT_EQUAL(live_buffers(), live);
  printf("\n  %zu records written, %lu bytes read concurrently, %zu drained\n", records,
         was_read, drained);
  secmem_stream_free(th.s);
  th.s = NULL;
}

/* ---- free ----------------------------------------------------------------- */

static void test_free(void) {
  secmem_stream_free(NULL);
  size_t live = live_buffers();
  /* Pending chunks, a partly read chunk and an empty stream are all freed
   * (ASan's leak check sees any that are not). */
  secmem_stream *s = secmem_stream_new(16);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  write_gen(s, 10 * 16 + 5, 91, 0);
  unsigned char out[3];
  size_t n = 0;
  CU_ASSERT_EQUAL(secmem_stream_read(s, out, sizeof(out), &n), 0);
  CU_ASSERT_EQUAL(n, 3);
  secmem_wipe(out, sizeof(out));
  secmem_stream_free(s);
  secmem_stream_free(secmem_stream_new(0));
  CU_ASSERT_EQUAL(live_buffers(), live);
}

int main(void) {
  /* The memory scans here read live secrets as their controls, which
   * memfd_secret pages (the default backing, test_backing's subject) would
   * hide from /proc/self/mem. */
  if (secmem_set_backing(SECMEM_BACKING_ANON) != 0) {
    return 2;
  }
  static const struct harness_test tests[] = {
      {"new(0) uses SECMEM_STREAM_DEFAULT_CHUNK", test_default_chunk},
      {"explicit chunk sizes split there", test_explicit_chunk},
      {"sizes 0 .. 100 chunks through read, next, flush", test_sizes},
      {"zero-byte writes, empty flush and read", test_zero_bytes},
      {"16 MiB in uneven writes, one flush", test_16mib},
      {"write wipes; failed write appends nothing", test_write_wipes_and_failure_appends_nothing},
      {"reads in odd pieces across chunk boundaries", test_read_odd_pieces},
      {"partial chunk read leaves the rest", test_partial_chunk_leaves_rest},
      {"read: empty output, NULL arguments", test_read_edge_arguments},
      {"next returns chunks in FIFO order", test_next_fifo},
      {"interleaved writes and reads", test_interleaved},
      {"purge makes old chunks unreadable, stream intact", test_purge_makes_old_chunks_unreadable},
      {"plaintext does not rest in memory", test_plaintext_not_at_rest},
      {"partial read leaves no plaintext behind", test_partial_read_leaves_no_plaintext},
      {"4 writers and 4 readers on one stream", test_threads},
      {"free NULL and streams with pending chunks", test_free},
  };
  return harness_main("stream", tests, sizeof(tests) / sizeof(tests[0]));
}
