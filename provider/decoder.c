/*
 * decoder.c - owns transparent loading: the decoders that turn ordinary
 * private key files (PEM or DER; PKCS#8, encrypted PKCS#8, traditional
 * RSA/EC, also with legacy PEM encryption) into sealed secmem keys, for
 * PEM_read_bio_PrivateKey, d2i_AutoPrivateKey, SSL_CTX_use_PrivateKey_file,
 * OSSL_STORE file: URIs and everything else built on OSSL_DECODER.
 *
 * OpenSSL 3.0 tries decoders of one name in provider-store order, secmem's
 * before the default provider's (OPENSSL3-NOTES.md), so ours read the
 * input first:
 *
 *   "DER" from PEM   the input as the chain starts: a private-key PEM block
 *                    (read line by line into locked memory, base64-decoded
 *                    and decrypted there) or a private-key DER
 *   "DER" from DER   a private-key DER, for chains that start at DER
 *                    (d2i_AutoPrivateKey, PKCS#8 conversions)
 *   "DER" from a     a key reference of ours (below)
 *    secmem-reference
 *
 * A private key of a type we seal is sealed on the spot, and what goes back
 * to OpenSSL is a reference to the sealed key, never its DER: OpenSSL's own
 * PEM-to-DER, PKCS#8-decryption and DER-to-key steps free plaintext DER
 * uncleansed, so they must never see it. The reference travels twice in the
 * callback: as OSSL_OBJECT_PARAM_REFERENCE, which the EVP_PKEY constructor
 * hands to our keymgmt's load(), and as data of structure
 * "secmem-reference", with no object type, which an OSSL_STORE loader
 * (OpenSSL's file: store) passes to a fresh decoder chain where our third
 * decoder turns it back into the key. (Marked as a key object, a reference
 * would go to the loader's provider's keymgmt instead, which cannot use it.)
 *
 * Everything else -- certificates, public keys, parameters, key types we do
 * not seal (DSA, DH, SM2) -- is declined: returning 1 without calling back
 * makes the core rewind the input and try the next decoder, OpenSSL's own.
 * A failure once the input is known to be ours (truncated PEM, wrong
 * passphrase, out of locked memory) returns 0 and ends the chain with our
 * error on the queue.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "smprov.h"

#define MAX_PEM_BLOCK (64 * 1024) /* a 16384-bit RSA key is about 13 KiB of PEM */
#define MAX_JUNK (1024 * 1024)    /* text skipped before a BEGIN line */
#define MAX_DER (64 * 1024)
#define REF_STRUCTURE "secmem-reference"

/* A decoder needs nothing of its own: its context is the provider's. */
static void *dec_new(void *provctx) { return provctx; }
static void dec_free(void *vctx) { (void)vctx; }

/* ---- the application's stdio buffer -------------------------------------------------- */

/*
 * A file BIO reads through its FILE, whose buffer (malloc'd by libc, freed
 * uncleansed at fclose) then holds the key file's text. Once a private key
 * has been read through it: fflush() gives the read-ahead back to the file
 * offset (POSIX, for a seekable input stream), so nothing in the buffer is
 * needed any more; wipe it, and make the stream unbuffered -- glibc frees
 * the (wiped) buffer, and a later seek no longer refills a buffer with the
 * file from the start of its 4 KiB block, which would bring the key's text
 * back. Later reads from the same FILE (a certificate after the key) work
 * as before, a byte per read(2). glibc only: its FILE fields are part of
 * its ABI.
 */
static void wipe_stdio_buffer(OSSL_CORE_BIO *in) {
#if defined(__GLIBC__)
  FILE *fp = NULL;
  if (smprov_bio_ctrl(in, BIO_C_GET_FILE_PTR, 0, &fp) <= 0 || fp == NULL) {
    return; /* not a file BIO */
  }
  flockfile(fp); /* recursive: fflush and setvbuf take it again */
  ERR_set_mark();
  int flushed = smprov_bio_ctrl(in, BIO_CTRL_FLUSH, 0, NULL);
  ERR_pop_to_mark();
  if (flushed > 0 && fp->_IO_buf_base != NULL && fp->_IO_buf_base != fp->_shortbuf &&
      fp->_IO_read_ptr == fp->_IO_read_end) {
    /* (Otherwise unbuffered already, or holding unread data: not seekable.) */
    secmem_wipe(fp->_IO_buf_base, (size_t)(fp->_IO_buf_end - fp->_IO_buf_base));
    setvbuf(fp, NULL, _IONBF, 0);
  }
  funlockfile(fp);
#else
  (void)in;
#endif
}

/* What one decode call was given. */
struct call {
  OSSL_CALLBACK *data_cb;
  void *data_cbarg;
  OSSL_PASSPHRASE_CALLBACK *pw_cb;
  void *pw_cbarg;
  bool want_key; /* the caller asked for a private key (or for anything) */
};

/* ---- handing a key back ---------------------------------------------------------------- */

static int emit_key(const struct smprov_key *k, const struct call *c) {
  struct smprov_key_reference ref;
  smprov_key_make_reference((struct smprov_key *)k, &ref);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                       (char *)smprov_type_name(k->type), 0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref)),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, &ref, sizeof(ref)),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE, REF_STRUCTURE, 0),
      OSSL_PARAM_construct_end()};
  return c->data_cb(params, c->data_cbarg); /* whoever keeps the key takes its own reference */
}

/* A private key the caller did not ask for (it wants only parameters or a
 * public key: HAProxy looks for DH parameters this way through the whole
 * certificate file): consumed without being decoded or decrypted, and
 * reported as an object of no use, so that OpenSSL's own decoders, which
 * would decode it in the clear, never see it either. */
static int emit_nothing(const struct call *c) {
  int objtype = OSSL_OBJECT_UNKNOWN;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &objtype),
                         OSSL_PARAM_construct_end()};
  (void)c->data_cb(params, c->data_cbarg); /* nobody can use it: that is the point */
  return 1;
}

/* When sealing fails for a reason OpenSSL itself would not fail on (a key
 * form we refuse, no locked memory), OpenSSL 3.0's PEM reader falls back to
 * its legacy path and loads the key unprotected; say so where an operator
 * will see it. */
static void warn_fallback(void) {
  unsigned long e = ERR_peek_last_error();
  int reason = ERR_GET_REASON(e);
  if (reason == SMPROV_R_UNSUPPORTED_KEY || reason == SMPROV_R_SECURE_MEMORY) {
    const char *data = NULL;
    ERR_peek_last_error_data(&data, NULL);
    fprintf(stderr,
            "secmem: a private key could not be sealed (%s); OpenSSL may load it unprotected\n",
            data != NULL && *data != '\0' ? data : "see the error queue");
  }
}

/* Seal the private-key DER and hand the key back. 1 or 0 (error queued). */
static int seal_and_emit(struct smprov_ctx *prov, OSSL_CORE_BIO *in, const unsigned char *der, size_t len,
                         enum smprov_der_kind kind, const struct call *c) {
  struct smprov_key *k = smprov_der_to_key(prov, der, len, kind);
  wipe_stdio_buffer(in);
  if (k == NULL) {
    warn_fallback();
    return 0;
  }
  k->from_file = true;
  int ok = emit_key(k, c);
  smprov_key_free(k);
  return ok;
}

/* ---- DER --------------------------------------------------------------------------------- */

/* One DER SEQUENCE read from in (its first byte already read when first is
 * 0x30). A private key (first element an INTEGER version 0 or 1:
 * PrivateKeyInfo, RSAPrivateKey, ECPrivateKey) goes into locked memory; a
 * SEQUENCE whose first element is a SEQUENCE (EncryptedPrivateKeyInfo, but
 * also certificates and public keys) or an object identifier (a sealed-key
 * handle) -- nothing secret -- into ordinary memory.
 * Anything else is not read further. */
struct der_in {
  secmem_buf *locked;
  unsigned char *plain;
  const unsigned char *p;
  size_t len;
};

static void der_in_free(struct der_in *d) {
  secmem_buf_destroy(d->locked); /* wipes */
  free(d->plain);
  *d = (struct der_in){0};
}

/* 1 read, 0 not ours (declined), -1 failure (error queued). */
static int read_der(OSSL_CORE_BIO *in, int first, struct der_in *d) {
  unsigned char hdr[8]; /* tag, length, first inner tag, length, value: public */
  size_t got = 0, hl = 0;
  *d = (struct der_in){0};
  if (first >= 0) {
    hdr[hl++] = (unsigned char)first;
  }
  if (!smprov_bio_read_ex(in, hdr + hl, 2 - hl, &got) || got != 2 - hl || hdr[0] != 0x30) {
    return 0;
  }
  hl = 2;
  size_t body = hdr[1];
  if (hdr[1] & 0x80) {
    size_t n = hdr[1] & 0x7f;
    if (n == 0 || n > 3 || !smprov_bio_read_ex(in, hdr + 2, n, &got) || got != n) {
      return 0; /* indefinite length, or longer than any key */
    }
    body = 0;
    for (size_t i = 0; i < n; i++) {
      body = (body << 8) | hdr[2 + i];
    }
    hl += n;
  }
  if (body < 3 || body > MAX_DER || !smprov_bio_read_ex(in, hdr + hl, 3, &got) || got != 3) {
    return 0;
  }
  bool private = hdr[hl] == 0x02 && hdr[hl + 1] == 0x01 && hdr[hl + 2] <= 1;
  if (!private && hdr[hl] != 0x30 && hdr[hl] != 0x06) {
    return 0; /* 0x06: an object identifier first, as in a sealed-key handle */
  }
  size_t total = hl + body;
  unsigned char *p;
  if (private) {
    d->locked = secmem_buf_new(total);
    p = d->locked != NULL ? secmem_buf_data(d->locked) : NULL;
  } else {
    p = d->plain = malloc(total);
  }
  if (p == NULL) {
    SMPROV_ERR_SECMEM("memory for a DER key");
    return -1;
  }
  memcpy(p, hdr, hl + 3);
  size_t have = hl + 3;
  while (have < total) {
    if (!smprov_bio_read_ex(in, p + have, total - have, &got) || got == 0) {
      der_in_free(d);
      return 0; /* shorter than it says: not ours to judge */
    }
    have += got;
  }
  d->p = p;
  d->len = total;
  return 1;
}

/* A private key in DER: an EncryptedPrivateKeyInfo is decrypted in locked
 * memory; PrivateKeyInfo, RSAPrivateKey and ECPrivateKey of a type we seal
 * are sealed. */
static int der_key(struct smprov_ctx *prov, OSSL_CORE_BIO *in, int first, const struct call *c) {
  struct der_in der;
  int r = read_der(in, first, &der);
  if (r <= 0) {
    return r == 0;
  }
  int ok = 1; /* declined unless ours */
  enum smprov_type type;
  if (der.locked != NULL) {
    static const enum smprov_der_kind kinds[] = {SMPROV_DER_PKCS8, SMPROV_DER_RSA, SMPROV_DER_EC};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
      if (smprov_der_type(der.p, der.len, kinds[i], &type)) {
        if (c->want_key) {
          ok = seal_and_emit(prov, in, der.p, der.len, kinds[i], c);
        } else {
          ok = emit_nothing(c);
          wipe_stdio_buffer(in);
        }
        break;
      }
    }
    der_in_free(&der);
    return ok;
  }
  if (smprov_handle_is(der.p, der.len)) {
    struct smprov_key *k = smprov_handle_to_key(prov, der.p, der.len);
    der_in_free(&der);
    if (k == NULL) {
      return 0;
    }
    int emitted = emit_key(k, c);
    smprov_key_free(k);
    return emitted;
  }
  const unsigned char *r8 = der.p;
  ERR_set_mark();
  X509_SIG *sig = d2i_X509_SIG(NULL, &r8, (long)der.len);
  bool is_epki = sig != NULL && r8 == der.p + der.len;
  X509_SIG_free(sig);
  ERR_pop_to_mark();
  if (is_epki && !c->want_key) {
    ok = emit_nothing(c);
  } else if (is_epki) {
    struct smprov_pass pw = {c->pw_cb, c->pw_cbarg, "encrypted private key"};
    size_t plen = 0;
    unsigned char *plain = smprov_decrypt_pkcs8(prov, der.p, der.len, &pw, &plen);
    if (plain == NULL) {
      ok = 0;
    } else if (smprov_der_type(plain, plen, SMPROV_DER_PKCS8, &type)) {
      ok = seal_and_emit(prov, in, plain, plen, SMPROV_DER_PKCS8, c);
    } /* else a type we do not seal: declined (the passphrase is cached) */
    secmem_free(plain);
  }
  der_in_free(&der);
  return ok;
}

/* ---- PEM --------------------------------------------------------------------------------- */

/* Read lines into text[..cap) until one starts with prefix, which then
 * ends text (*len). The line being read begins at *len - pending: its first
 * pending bytes are already there. 1 found, 0 end of input, -1 the buffer
 * filled first. With discard, earlier lines are dropped as they go (the
 * text before a BEGIN line; *skipped counts it). */
static int read_until(OSSL_CORE_BIO *in, char *text, size_t cap, size_t *len, size_t pending,
                      const char *prefix, bool discard, size_t *skipped) {
  size_t plen = strlen(prefix);
  for (;;) {
    size_t line = *len - pending, got = pending;
    pending = 0;
    while ((got == 0 || text[line + got - 1] != '\n') && cap - (line + got) >= 2) {
      int n = smprov_bio_gets(in, text + line + got, (int)(cap - line - got));
      if (n <= 0) {
        break;
      }
      got += (size_t)n;
    }
    if (got == 0) {
      return 0; /* end of input */
    }
    if (got >= plen && memcmp(text + line, prefix, plen) == 0) {
      if (discard && line != 0) {
        memmove(text, text + line, got);
        line = 0;
      }
      *len = line + got;
      return 1;
    }
    if (discard) {
      *skipped += got;
      *len = 0;
      if (*skipped > MAX_JUNK) {
        return 0;
      }
    } else {
      *len = line + got;
      if (text[*len - 1] != '\n' && cap - *len < 2) {
        return -1;
      }
    }
  }
}

/* A PEM block from in, whose first byte (first) is already read. */
static int pem_key(struct smprov_ctx *prov, OSSL_CORE_BIO *in, int first, const struct call *c) {
  secmem_buf *buf = secmem_buf_new(MAX_PEM_BLOCK + 1);
  if (buf == NULL) {
    SMPROV_ERR_SECMEM("memory for a PEM block");
    return 0;
  }
  char *text = secmem_buf_data(buf);
  text[0] = (char)first;
  size_t len = 1, skipped = 0;
  int ok = 1; /* declined unless it turns out to be ours */
  if (read_until(in, text, MAX_PEM_BLOCK + 1, &len, 1, "-----BEGIN ", true, &skipped) != 1) {
    goto done; /* no PEM here */
  }
  char label[64];
  size_t ll = 0;
  while (11 + ll < len && ll + 1 < sizeof(label) && text[11 + ll] != '-') {
    label[ll] = text[11 + ll];
    ll++;
  }
  label[ll] = '\0';
  enum smprov_pem_label kind = smprov_pem_label(label);
  if (kind != SMPROV_PEM_PKCS8 && kind != SMPROV_PEM_ENCRYPTED_PKCS8 && kind != SMPROV_PEM_RSA &&
      kind != SMPROV_PEM_EC) {
    goto done; /* certificates, public keys, DSA keys...: OpenSSL's own path */
  }
  /* From here on the input is a private key: read the block to its end. */
  int r = read_until(in, text, MAX_PEM_BLOCK + 1, &len, 0, "-----END ", false, &skipped);
  if (r <= 0) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "PEM private key: the %s block is %s", label,
               r == 0 ? "truncated (no END line)" : "larger than secmem reads (64 KiB)");
    ok = 0;
    goto wipe;
  }
  if (!c->want_key) {
    ok = emit_nothing(c);
    goto wipe;
  }
  struct smprov_pem_block b;
  size_t pos = 0;
  if (smprov_pem_next((unsigned char *)text, len, &pos, &b) != 1) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "PEM private key: corrupt %s block", label);
    ok = 0;
    goto wipe;
  }
  struct smprov_pass pw = {c->pw_cb, c->pw_cbarg, "PEM private key"};
  enum smprov_der_kind der_kind;
  size_t der_len = 0;
  unsigned char *der = smprov_pem_private_der(prov, &b, &pw, &der_kind, &der_len);
  if (der == NULL) {
    ok = 0;
    goto wipe;
  }
  enum smprov_type type;
  if (!smprov_der_type(der, der_len, der_kind, &type)) {
    /* A key type we do not seal (DSA in PKCS#8, an SM2 curve, ...):
     * declined; OpenSSL's decoders read it again (a passphrase is cached). */
    secmem_free(der);
    goto done;
  }
  ok = seal_and_emit(prov, in, der, der_len, der_kind, c);
  secmem_free(der);
  goto done;
wipe:
  wipe_stdio_buffer(in);
done:
  secmem_buf_destroy(buf); /* wipes */
  return ok;
}

/* ---- the decoders --------------------------------------------------------------------------- */

static struct call call_of(int selection, OSSL_CALLBACK *data_cb, void *data_cbarg,
                           OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  return (struct call){data_cb, data_cbarg, pw_cb, pw_cbarg,
                       selection == 0 || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0};
}

/* The chain's first step: PEM, or DER when the input starts like DER. */
static int any_decode(void *vctx, OSSL_CORE_BIO *in, int selection, OSSL_CALLBACK *data_cb,
                      void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  struct call c = call_of(selection, data_cb, data_cbarg, pw_cb, pw_cbarg);
  unsigned char first;
  size_t got = 0;
  if (!smprov_bio_read_ex(in, &first, 1, &got) || got != 1) {
    return 1;
  }
  return first == 0x30 ? der_key(vctx, in, first, &c) : pem_key(vctx, in, first, &c);
}

static int der_decode(void *vctx, OSSL_CORE_BIO *in, int selection, OSSL_CALLBACK *data_cb,
                      void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  struct call c = call_of(selection, data_cb, data_cbarg, pw_cb, pw_cbarg);
  return der_key(vctx, in, -1, &c);
}

/* A reference of ours coming back through an OSSL_STORE loader. */
static int ref_decode(void *vctx, OSSL_CORE_BIO *in, int selection, OSSL_CALLBACK *data_cb,
                      void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  (void)vctx;
  struct call c = call_of(selection, data_cb, data_cbarg, pw_cb, pw_cbarg);
  unsigned char ref[sizeof(struct smprov_key_reference) + 1];
  size_t got = 0;
  if (!smprov_bio_read_ex(in, ref, sizeof(ref), &got) ||
      got != sizeof(struct smprov_key_reference)) {
    return 1;
  }
  struct smprov_key *k = smprov_key_from_reference(ref, got);
  if (k == NULL) {
    return 0;
  }
  int ok = emit_key(k, &c);
  smprov_key_free(k);
  return ok;
}

#define DECODER(name, decode)                                                                \
  static const OSSL_DISPATCH name##_fns[] = {                                                \
      {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_new},                                   \
      {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_free},                                 \
      {OSSL_FUNC_DECODER_DECODE, (void (*)(void))(decode)},                                  \
      {OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))smprov_km_export_reference},                  \
      {0, NULL}};

DECODER(any, any_decode)
DECODER(der, der_decode)
DECODER(ref, ref_decode)

const OSSL_ALGORITHM smprov_decoders[] = {
    {"DER", SMPROV_PROPS ",input=der,structure=" REF_STRUCTURE, ref_fns,
     "a sealed key's reference, back from an OSSL_STORE loader"},
    {"DER", SMPROV_PROPS ",input=der", der_fns, "private keys from DER, sealed"},
    {"DER", SMPROV_PROPS ",input=pem", any_fns, "private keys from PEM or DER, sealed"},
    {NULL, NULL, NULL, NULL}};
