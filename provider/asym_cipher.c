/*
 * asym_cipher.c - owns RSA encryption and decryption: PKCS#1 v1.5 (with the
 * TLS client-version parameters), OAEP (digest, MGF1 digest, label) and no
 * padding. Encryption is public: the default provider does it on the key's
 * public part. Decryption's private step is a call into unseal.c; the
 * decrypted block lands in a secure-heap slot, is checked there in constant
 * time, and is wiped before returning.
 *
 * Bad padding behaves as the default provider of OpenSSL 3.0 does: an error
 * for PKCS#1 v1.5 and OAEP; with RSA_PKCS1_WITH_TLS_PADDING (what libssl
 * sets for TLS RSA key transport) and a TLS client version, no error but 48
 * random bytes in place of the premaster secret (RFC 5246, 7.4.7.1), chosen
 * without a branch on the secret.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* the public RSA padding checks */

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "smprov.h"

#define TLS_PREMASTER_LEN 48

struct ciphctx {
  struct smprov_ctx *prov;
  struct smprov_key *key;
  bool decrypting;
  int pad;
  EVP_MD *oaep_md, *mgf1_md;
  unsigned char *label;
  size_t label_len;
  unsigned int client_version, alt_version;
};

static OSSL_FUNC_asym_cipher_newctx_fn ciph_newctx;
static OSSL_FUNC_asym_cipher_freectx_fn ciph_freectx;
static OSSL_FUNC_asym_cipher_dupctx_fn ciph_dupctx;
static OSSL_FUNC_asym_cipher_encrypt_init_fn ciph_encrypt_init;
static OSSL_FUNC_asym_cipher_encrypt_fn ciph_encrypt;
static OSSL_FUNC_asym_cipher_decrypt_init_fn ciph_decrypt_init;
static OSSL_FUNC_asym_cipher_decrypt_fn ciph_decrypt;
static OSSL_FUNC_asym_cipher_set_ctx_params_fn ciph_set_ctx_params;
static OSSL_FUNC_asym_cipher_settable_ctx_params_fn ciph_settable_ctx_params;
static OSSL_FUNC_asym_cipher_get_ctx_params_fn ciph_get_ctx_params;
static OSSL_FUNC_asym_cipher_gettable_ctx_params_fn ciph_gettable_ctx_params;

static void *ciph_newctx(void *provctx) {
  struct ciphctx *c = calloc(1, sizeof(*c));
  if (c != NULL) {
    c->prov = provctx;
    c->pad = RSA_PKCS1_PADDING;
  }
  return c;
}

static void ciph_freectx(void *vctx) {
  struct ciphctx *c = vctx;
  if (c != NULL) {
    smprov_key_free(c->key);
    EVP_MD_free(c->oaep_md);
    EVP_MD_free(c->mgf1_md);
    OPENSSL_free(c->label);
    free(c);
  }
}

static void *ciph_dupctx(void *vctx) {
  const struct ciphctx *src = vctx;
  struct ciphctx *c = malloc(sizeof(*c));
  if (c == NULL) {
    return NULL;
  }
  *c = *src;
  c->label = NULL;
  if (src->label != NULL && (c->label = OPENSSL_memdup(src->label, src->label_len)) == NULL) {
    free(c);
    return NULL;
  }
  if (c->key != NULL) {
    smprov_key_ref(c->key);
  }
  if (c->oaep_md != NULL) {
    EVP_MD_up_ref(c->oaep_md);
  }
  if (c->mgf1_md != NULL) {
    EVP_MD_up_ref(c->mgf1_md);
  }
  return c;
}

static int fetch_md(struct ciphctx *c, EVP_MD **slot, const char *name) {
  EVP_MD *md = EVP_MD_fetch(c->prov->priv, name, NULL);
  if (md == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "unknown digest \"%s\"", name);
    return 0;
  }
  EVP_MD_free(*slot);
  *slot = md;
  return 1;
}

static int ciph_set_ctx_params(void *vctx, const OSSL_PARAM params[]) {
  struct ciphctx *c = vctx;
  const OSSL_PARAM *p;
  if (params == NULL) {
    return 1;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
    int pad = 0;
    const char *v = NULL;
    if (p->data_type == OSSL_PARAM_UTF8_STRING && OSSL_PARAM_get_utf8_string_ptr(p, &v)) {
      pad = strcmp(v, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
            : strcmp(v, OSSL_PKEY_RSA_PAD_MODE_OAEP) == 0  ? RSA_PKCS1_OAEP_PADDING
            : strcmp(v, OSSL_PKEY_RSA_PAD_MODE_NONE) == 0  ? RSA_NO_PADDING
                                                           : 0;
    } else if (!OSSL_PARAM_get_int(p, &pad)) {
      return 0;
    }
    if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_OAEP_PADDING && pad != RSA_NO_PADDING &&
        pad != RSA_PKCS1_WITH_TLS_PADDING) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "unsupported RSA encryption padding");
      return 0;
    }
    c->pad = pad;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL) {
    const char *v = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &v) || !fetch_md(c, &c->oaep_md, v)) {
      return 0;
    }
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL) {
    const char *v = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &v) || !fetch_md(c, &c->mgf1_md, v)) {
      return 0;
    }
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL) {
    void *label = NULL;
    size_t len = 0;
    if (!OSSL_PARAM_get_octet_string(p, &label, 0, &len)) {
      return 0;
    }
    OPENSSL_free(c->label);
    c->label = label;
    c->label_len = len;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION)) != NULL &&
      !OSSL_PARAM_get_uint(p, &c->client_version)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION)) != NULL &&
      !OSSL_PARAM_get_uint(p, &c->alt_version)) {
    return 0;
  }
  return 1;
}

static const OSSL_PARAM *ciph_settable_ctx_params(void *vctx, void *provctx) {
  static const OSSL_PARAM settable[] = {
      OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
      OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
      OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
      OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
      OSSL_PARAM_END};
  (void)vctx;
  (void)provctx;
  return settable;
}

static int ciph_get_ctx_params(void *vctx, OSSL_PARAM params[]) {
  struct ciphctx *c = vctx;
  OSSL_PARAM *p;
  if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL &&
      !OSSL_PARAM_set_int(p, c->pad)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL &&
      !OSSL_PARAM_set_utf8_string(p, c->oaep_md != NULL ? EVP_MD_get0_name(c->oaep_md) : "SHA1")) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION)) != NULL &&
      !OSSL_PARAM_set_uint(p, c->client_version)) {
    return 0;
  }
  return 1;
}

static const OSSL_PARAM *ciph_gettable_ctx_params(void *vctx, void *provctx) {
  static const OSSL_PARAM gettable[] = {
      OSSL_PARAM_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL),
      OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
      OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL), OSSL_PARAM_END};
  (void)vctx;
  (void)provctx;
  return gettable;
}

static int init(struct ciphctx *c, void *provkey, const OSSL_PARAM params[], bool decrypting) {
  struct smprov_key *k = provkey;
  if (!smprov_key_ok(k) || k->type != SMPROV_RSA || k->pub == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "RSA encryption needs an RSA key");
    return 0;
  }
  if (decrypting && k->priv == NULL) {
    SMPROV_ERR(SMPROV_R_NO_PRIVATE_KEY, "cannot decrypt with a public key");
    return 0;
  }
  smprov_key_free(c->key);
  c->key = smprov_key_ref(k);
  c->decrypting = decrypting;
  return ciph_set_ctx_params(c, params);
}

static int ciph_encrypt_init(void *vctx, void *provkey, const OSSL_PARAM params[]) {
  return init(vctx, provkey, params, false);
}

static int ciph_decrypt_init(void *vctx, void *provkey, const OSSL_PARAM params[]) {
  return init(vctx, provkey, params, true);
}

static int ciph_encrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                        const unsigned char *in, size_t inlen) {
  struct ciphctx *c = vctx;
  EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(c->prov->priv, c->key->pub, NULL);
  int pad = c->pad == RSA_PKCS1_WITH_TLS_PADDING ? RSA_PKCS1_PADDING : c->pad;
  int ok = pc != NULL && EVP_PKEY_encrypt_init(pc) == 1 && EVP_PKEY_CTX_set_rsa_padding(pc, pad) == 1;
  if (ok && c->pad == RSA_PKCS1_OAEP_PADDING) {
    ok = (c->oaep_md == NULL || EVP_PKEY_CTX_set_rsa_oaep_md(pc, c->oaep_md) == 1) &&
         (c->mgf1_md == NULL || EVP_PKEY_CTX_set_rsa_mgf1_md(pc, c->mgf1_md) == 1);
    if (ok && c->label != NULL) {
      unsigned char *copy = OPENSSL_memdup(c->label, c->label_len);
      ok = copy != NULL && EVP_PKEY_CTX_set0_rsa_oaep_label(pc, copy, (int)c->label_len) == 1;
      if (!ok) {
        OPENSSL_free(copy);
      }
    }
  }
  size_t len = outsize;
  ok = ok && EVP_PKEY_encrypt(pc, out, out != NULL ? &len : outlen, in, inlen) == 1;
  if (ok && out != NULL) {
    *outlen = len;
  }
  EVP_PKEY_CTX_free(pc);
  return ok;
}

/* Constant-time helpers: all-ones when true, zero when false. */
static unsigned ct_is_zero(unsigned x) { return 0u - (((~x & (x - 1u)) >> (sizeof(x) * 8 - 1)) & 1u); }
static unsigned ct_eq(unsigned a, unsigned b) { return ct_is_zero(a ^ b); }

/* The TLS RSA premaster check of RFC 5246, 7.4.7.1, without branching on
 * the decrypted block em (k bytes): out gets the 48-byte premaster if the
 * padding and the version are right, 48 random bytes otherwise. Always 48
 * bytes. */
static int tls_premaster(const struct ciphctx *c, const unsigned char *em, size_t k,
                         unsigned char *out) {
  unsigned char rnd[TLS_PREMASTER_LEN]; /* R of RFC 5246: 48 random bytes */
  if (k < TLS_PREMASTER_LEN + 11 ||
      RAND_priv_bytes_ex(c->prov->priv, rnd, sizeof(rnd), 0) != 1) {
    return 0;
  }
  size_t sep = k - TLS_PREMASTER_LEN - 1;
  unsigned good = ct_eq(em[0], 0) & ct_eq(em[1], 2) & ct_eq(em[sep], 0);
  for (size_t i = 2; i < sep; i++) {
    good &= ~ct_is_zero(em[i]); /* non-zero padding up to the separator */
  }
  const unsigned char *pm = em + sep + 1;
  unsigned version = ct_eq(pm[0], (c->client_version >> 8) & 0xff) &
                     ct_eq(pm[1], c->client_version & 0xff);
  if (c->alt_version != 0) {
    version |= ct_eq(pm[0], (c->alt_version >> 8) & 0xff) & ct_eq(pm[1], c->alt_version & 0xff);
  }
  good &= version;
  for (size_t i = 0; i < TLS_PREMASTER_LEN; i++) {
    out[i] = (unsigned char)((pm[i] & good) | (rnd[i] & ~good));
  }
  secmem_wipe(rnd, sizeof(rnd));
  return 1;
}

static int ciph_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                        const unsigned char *in, size_t inlen) {
  struct ciphctx *c = vctx;
  if (c->key == NULL || !c->decrypting) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "decryption was not initialised");
    return 0;
  }
  size_t k = (size_t)EVP_PKEY_get_size(c->key->pub);
  bool tls = c->pad == RSA_PKCS1_WITH_TLS_PADDING;
  if (tls && c->client_version == 0) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "TLS padding needs the TLS client version");
    return 0;
  }
  if (out == NULL) {
    *outlen = tls ? TLS_PREMASTER_LEN : k;
    return 1;
  }
  if (inlen != k) {
    SMPROV_ERR(SMPROV_R_DECRYPT_FAILED, "a %zu-byte ciphertext for a %zu-byte modulus", inlen, k);
    return 0;
  }
  if (tls && outsize < TLS_PREMASTER_LEN) {
    SMPROV_ERR(SMPROV_R_BUFFER_TOO_SMALL, "the premaster secret needs 48 bytes");
    return 0;
  }
  unsigned char *em = secmem_malloc(k); /* the decrypted block: locked, wiped on free */
  if (em == NULL) {
    SMPROV_ERR_SECMEM("memory for the decrypted block");
    return 0;
  }
  int ok = smprov_unseal_rsa_private(c->key, em, in, k);
  int n = -1;
  if (ok && tls) {
    ok = tls_premaster(c, em, k, out);
    n = TLS_PREMASTER_LEN;
  } else if (ok && c->pad == RSA_NO_PADDING) {
    ok = outsize >= k;
    if (ok) {
      memcpy(out, em, k);
      n = (int)k;
    }
  } else if (ok && c->pad == RSA_PKCS1_OAEP_PADDING) {
    n = RSA_padding_check_PKCS1_OAEP_mgf1(out, (int)outsize, em, (int)k, (int)k, c->label,
                                          (int)c->label_len, c->oaep_md, c->mgf1_md);
    ok = n >= 0;
  } else if (ok) {
    n = RSA_padding_check_PKCS1_type_2(out, (int)outsize, em, (int)k, (int)k);
    ok = n >= 0;
  }
  secmem_free(em);
  if (!ok) {
    SMPROV_ERR(SMPROV_R_DECRYPT_FAILED, "RSA decryption failed");
    return 0;
  }
  *outlen = (size_t)n;
  return 1;
}

const OSSL_DISPATCH smprov_asym_cipher_rsa[] = {
    {OSSL_FUNC_ASYM_CIPHER_NEWCTX, (void (*)(void))ciph_newctx},
    {OSSL_FUNC_ASYM_CIPHER_FREECTX, (void (*)(void))ciph_freectx},
    {OSSL_FUNC_ASYM_CIPHER_DUPCTX, (void (*)(void))ciph_dupctx},
    {OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, (void (*)(void))ciph_encrypt_init},
    {OSSL_FUNC_ASYM_CIPHER_ENCRYPT, (void (*)(void))ciph_encrypt},
    {OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (void (*)(void))ciph_decrypt_init},
    {OSSL_FUNC_ASYM_CIPHER_DECRYPT, (void (*)(void))ciph_decrypt},
    {OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, (void (*)(void))ciph_set_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, (void (*)(void))ciph_settable_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, (void (*)(void))ciph_get_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, (void (*)(void))ciph_gettable_ctx_params},
    {0, NULL}};
