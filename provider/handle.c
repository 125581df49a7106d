/*
 * handle.c - owns the sealed-key handle: what i2d_PrivateKey (DER,
 * type-specific) gives for a key secmem loaded from a file, and how that
 * handle turns back into the key.
 *
 * Why: some servers re-encode a key they loaded in order to cache it --
 * Apache's mod_ssl does so for every passphrase-protected key, and aborts
 * when the encoding fails. A sealed key cannot be written out in clear, but
 * it can be written out sealed: the handle carries the key's public part
 * and its private part exactly as secmem keeps it at rest (the enclave's
 * sealed form: nonce, MAC, ciphertext under the process's split enclave
 * key). So the server's cache holds ciphertext where it used to hold the
 * key in clear, and d2i_AutoPrivateKey on the handle gives the sealed key
 * back -- in this process and its forked children, until a purge; anywhere
 * else the handle is refused with a clear error.
 *
 * Only keys that came from a key file get a handle (the file is still
 * there; a handle written to disk by mistake loses nothing). A key born in
 * secmem (generated, imported) is never encoded.
 *
 *   SecmemSealedKey ::= SEQUENCE {
 *     id      OBJECT IDENTIFIER 2.25.141060999693335019546123307955686385911,
 *     type    UTF8String,      -- "RSA", "EC", "ED25519", ...
 *     public  OCTET STRING,    -- SubjectPublicKeyInfo
 *     sealed  OCTET STRING }   -- secmem_enclave_export of the private part
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "smprov.h"

static const unsigned char HANDLE_OID[] = {0x69, 0x81, 0xd4, 0x9f, 0xae, 0x8f, 0xd1,
                                           0xd2, 0xda, 0xbd, 0xf5, 0x9c, 0xa0, 0xd4,
                                           0xfc, 0xeb, 0x86, 0xca, 0xd1, 0x77};

#define TAG_SEQ 0x30
#define TAG_OID 0x06
#define TAG_OCTSTR 0x04
#define TAG_UTF8 0x0c

/* ---- DER, just enough ------------------------------------------------------------- */

static size_t tlv_len(size_t n) { return 1 + (n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 4) + n; }

static unsigned char *put_tlv(unsigned char *w, unsigned tag, const void *v, size_t n) {
  *w++ = (unsigned char)tag;
  if (n < 0x80) {
    *w++ = (unsigned char)n;
  } else {
    size_t bytes = n < 0x100 ? 1 : n < 0x10000 ? 2 : 3;
    *w++ = (unsigned char)(0x80 | bytes);
    for (size_t i = bytes; i-- > 0;) {
      *w++ = (unsigned char)(n >> (8 * i));
    }
  }
  if (v != NULL) {
    memcpy(w, v, n);
  }
  return w + n;
}

/* Read one TLV of tag from [*p, end): its value. */
static int get_tlv(const unsigned char **p, const unsigned char *end, unsigned tag,
                   const unsigned char **v, size_t *n) {
  const unsigned char *q = *p;
  if (end - q < 2 || q[0] != tag) {
    return 0;
  }
  size_t len = q[1];
  q += 2;
  if (len & 0x80) {
    size_t bytes = len & 0x7f;
    if (bytes == 0 || bytes > 3 || (size_t)(end - q) < bytes) {
      return 0;
    }
    len = 0;
    for (size_t i = 0; i < bytes; i++) {
      len = (len << 8) | *q++;
    }
  }
  if ((size_t)(end - q) < len) {
    return 0;
  }
  *v = q;
  *n = len;
  *p = q + len;
  return 1;
}

/* ---- the encoder -------------------------------------------------------------------- */

static void *enc_new(void *provctx) { return provctx; }
static void enc_free(void *ctx) { (void)ctx; }

static int enc_does_selection(void *provctx, int selection) {
  (void)provctx;
  return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

static int enc_encode(void *ctx, OSSL_CORE_BIO *out, const void *obj_raw,
                      const OSSL_PARAM obj_abstract[], int selection,
                      OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg) {
  (void)ctx;
  (void)obj_abstract;
  (void)cb;
  (void)cbarg;
  const struct smprov_key *k = obj_raw;
  if (!smprov_key_ok(k) || k->priv == NULL || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) == 0) {
    SMPROV_ERR(SMPROV_R_NO_PRIVATE_KEY, "only a private key can be encoded as a sealed handle");
    return 0;
  }
  if (!k->from_file) {
    SMPROV_ERR(SMPROV_R_EXPORT_REFUSED,
               "the %s key was made inside secmem and export_private is off: it is never "
               "encoded, not even sealed (only keys loaded from a file are)",
               smprov_type_name(k->type));
    return 0;
  }
  int spki_len = i2d_PUBKEY(k->pub, NULL);
  size_t sealed_len = secmem_enclave_export_len(k->priv);
  const char *name = smprov_type_name(k->type);
  if (spki_len <= 0) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "cannot encode the public part of the %s key", name);
    return 0;
  }
  size_t body = tlv_len(sizeof(HANDLE_OID)) + tlv_len(strlen(name)) + tlv_len((size_t)spki_len) +
                tlv_len(sealed_len);
  size_t total = tlv_len(body);
  unsigned char *der = malloc(total); /* ciphertext and public data only */
  if (der == NULL) {
    SMPROV_ERR(SMPROV_R_SECURE_MEMORY, "out of memory for a sealed handle");
    return 0;
  }
  unsigned char *w = put_tlv(der, TAG_SEQ, NULL, body) - body;
  w = put_tlv(w, TAG_OID, HANDLE_OID, sizeof(HANDLE_OID));
  w = put_tlv(w, TAG_UTF8, name, strlen(name));
  unsigned char *spki = put_tlv(w, TAG_OCTSTR, NULL, (size_t)spki_len) - spki_len;
  w = spki;
  i2d_PUBKEY(k->pub, &w);
  w = put_tlv(w, TAG_OCTSTR, NULL, sealed_len) - sealed_len;
  size_t written = 0;
  int ok = secmem_enclave_export(k->priv, w, sealed_len) == 0 &&
           smprov_bio_write_ex(out, der, total, &written) && written == total;
  free(der);
  if (!ok) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "cannot write the sealed handle of the %s key", name);
  }
  return ok;
}

#define ENCODER(name)                                                                      \
  static const OSSL_DISPATCH name##_enc_fns[] = {                                          \
      {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_new},                                 \
      {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_free},                               \
      {OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_selection},              \
      {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))enc_encode},                              \
      {0, NULL}};
ENCODER(handle)

#define HANDLE_PROPS SMPROV_PROPS ",output=der,structure=type-specific"

const OSSL_ALGORITHM smprov_encoders[] = {
    {SMPROV_NAMES_RSA, HANDLE_PROPS, handle_enc_fns, "sealed handle of a loaded key"},
    {SMPROV_NAMES_RSA_PSS, HANDLE_PROPS, handle_enc_fns, NULL},
    {SMPROV_NAMES_EC, HANDLE_PROPS, handle_enc_fns, NULL},
    {SMPROV_NAMES_ED25519, HANDLE_PROPS, handle_enc_fns, NULL},
    {SMPROV_NAMES_X25519, HANDLE_PROPS, handle_enc_fns, NULL},
    {SMPROV_NAMES_ED448, HANDLE_PROPS, handle_enc_fns, NULL},
    {SMPROV_NAMES_X448, HANDLE_PROPS, handle_enc_fns, NULL},
    {NULL, NULL, NULL, NULL}};

/* ---- back to a key ------------------------------------------------------------------ */

int smprov_handle_is(const unsigned char *der, size_t len) {
  const unsigned char *p = der, *end = der + len, *seq, *oid;
  size_t seql, oidl;
  return get_tlv(&p, end, TAG_SEQ, &seq, &seql) &&
         get_tlv(&seq, seq + seql, TAG_OID, &oid, &oidl) && oidl == sizeof(HANDLE_OID) &&
         memcmp(oid, HANDLE_OID, oidl) == 0;
}

struct smprov_key *smprov_handle_to_key(struct smprov_ctx *prov, const unsigned char *der,
                                        size_t len) {
  const unsigned char *p = der, *end = der + len, *seq, *oid, *name, *spki, *sealed;
  size_t seql, oidl, namel, spkil, sealedl;
  if (!get_tlv(&p, end, TAG_SEQ, &seq, &seql) || p != end) {
    goto corrupt;
  }
  end = seq + seql;
  if (!get_tlv(&seq, end, TAG_OID, &oid, &oidl) || !get_tlv(&seq, end, TAG_UTF8, &name, &namel) ||
      !get_tlv(&seq, end, TAG_OCTSTR, &spki, &spkil) ||
      !get_tlv(&seq, end, TAG_OCTSTR, &sealed, &sealedl) || seq != end) {
    goto corrupt;
  }
  enum smprov_type type = SMPROV_RSA;
  bool known = false;
  for (enum smprov_type t = SMPROV_RSA; t <= SMPROV_X448 && !known; t++) {
    const char *n = smprov_type_name(t);
    if (strlen(n) == namel && memcmp(n, name, namel) == 0) {
      type = t;
      known = true;
    }
  }
  EVP_PKEY *pub = known ? d2i_PUBKEY_ex(NULL, &spki, (long)spkil, prov->priv, NULL) : NULL;
  if (pub == NULL || !EVP_PKEY_is_a(pub, smprov_type_name(type))) {
    EVP_PKEY_free(pub);
    ERR_clear_error();
    goto corrupt;
  }
  secmem_enclave *e = secmem_enclave_import(sealed, sealedl);
  struct smprov_key *k = e != NULL ? smprov_key_new(prov, type) : NULL;
  if (k == NULL) {
    secmem_enclave_free(e);
    EVP_PKEY_free(pub);
    goto corrupt;
  }
  k->pub = pub;
  k->priv = e;
  k->from_file = true;
  if (!smprov_unseal_opens(k)) {
    SMPROV_ERR(SMPROV_R_ENCLAVE_AUTH,
               "this sealed %s key handle was made by another process, or before a purge: only "
               "the process that loaded the key (and its forked children) can use it",
               smprov_type_name(type));
    smprov_key_free(k);
    return NULL;
  }
  if (!smprov_unseal_check_private(k)) {
    smprov_key_free(k);
    return NULL;
  }
  return k;
corrupt:
  SMPROV_ERR(SMPROV_R_BAD_KEY, "corrupt sealed key handle");
  return NULL;
}
