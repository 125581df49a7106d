/*
 * signature.c - owns the signature operations: EdDSA (Ed25519, Ed448:
 * one-shot), ECDSA, and RSA (PKCS#1 v1.5, PSS with every salt-length and
 * MGF1 setting, and no padding; RSA-PSS keys' restrictions), with sign,
 * verify and digest-sign/verify (init/update/final and one-shot).
 *
 * The private-key step is a call into unseal.c; this file prepares and
 * checks what goes in and out (digests, DigestInfo, PSS encoding) and never
 * sees key material. Verification uses the key's public part with the
 * default provider of the private library context.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* RSA_padding_add_PKCS1_PSS_mgf1 on a public RSA */

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "smprov.h"

enum sig_alg { SIG_EDDSA, SIG_ECDSA, SIG_RSA };

struct sigctx {
  struct smprov_ctx *prov;
  enum sig_alg alg;
  struct smprov_key *key;
  bool signing;
  EVP_MD *md;          /* the digest (ECDSA, RSA) */
  EVP_MD_CTX *mdctx;   /* streaming digest-sign/verify */
  bool md_locked;      /* set by digest_sign_init: no changing it midway */
  int pad;             /* RSA_PKCS1_PADDING, RSA_PKCS1_PSS_PADDING, RSA_NO_PADDING */
  int saltlen;         /* RSA_PSS_SALTLEN_* or a length */
  EVP_MD *mgf1;
  int min_saltlen;     /* RSA-PSS key restriction, -1 if none */
  EVP_MD *restrict_md;   /* RSA-PSS key restriction: the only digest, or NULL */
  EVP_MD *restrict_mgf1; /* and the only MGF1 digest */
  char propq[128];
};

static OSSL_FUNC_signature_newctx_fn eddsa_newctx, ecdsa_newctx, rsa_newctx;
static OSSL_FUNC_signature_freectx_fn sig_freectx;
static OSSL_FUNC_signature_dupctx_fn sig_dupctx;
static OSSL_FUNC_signature_sign_init_fn sig_sign_init;
static OSSL_FUNC_signature_sign_fn sig_sign;
static OSSL_FUNC_signature_verify_init_fn sig_verify_init;
static OSSL_FUNC_signature_verify_fn sig_verify;
static OSSL_FUNC_signature_digest_sign_init_fn sig_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_update_fn sig_digest_update;
static OSSL_FUNC_signature_digest_sign_final_fn sig_digest_sign_final;
static OSSL_FUNC_signature_digest_sign_fn sig_digest_sign;
static OSSL_FUNC_signature_digest_verify_init_fn sig_digest_verify_init;
static OSSL_FUNC_signature_digest_verify_final_fn sig_digest_verify_final;
static OSSL_FUNC_signature_digest_verify_fn sig_digest_verify;
static OSSL_FUNC_signature_get_ctx_params_fn sig_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn sig_gettable_ctx_params;
static OSSL_FUNC_signature_set_ctx_params_fn sig_set_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn sig_settable_ctx_params;

static struct sigctx *newctx(void *provctx, enum sig_alg alg, const char *propq) {
  struct sigctx *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    return NULL;
  }
  c->prov = provctx;
  c->alg = alg;
  c->pad = RSA_PKCS1_PADDING;
  c->saltlen = RSA_PSS_SALTLEN_AUTO;
  c->min_saltlen = -1;
  if (propq != NULL) {
    snprintf(c->propq, sizeof(c->propq), "%s", propq);
  }
  return c;
}

static void *eddsa_newctx(void *provctx, const char *propq) { return newctx(provctx, SIG_EDDSA, propq); }
static void *ecdsa_newctx(void *provctx, const char *propq) { return newctx(provctx, SIG_ECDSA, propq); }
static void *rsa_newctx(void *provctx, const char *propq) { return newctx(provctx, SIG_RSA, propq); }

static void sig_freectx(void *vctx) {
  struct sigctx *c = vctx;
  if (c == NULL) {
    return;
  }
  smprov_key_free(c->key);
  EVP_MD_free(c->md);
  EVP_MD_free(c->mgf1);
  EVP_MD_free(c->restrict_md);
  EVP_MD_free(c->restrict_mgf1);
  EVP_MD_CTX_free(c->mdctx);
  free(c);
}

/* OpenSSL 3.0 cannot report a failed dup (EVP_MD_CTX_copy_ex goes on with
 * what it got), so a dup either copies everything or returns NULL having
 * changed nothing; every reference it takes is counted. */
static void *sig_dupctx(void *vctx) {
  const struct sigctx *src = vctx;
  struct sigctx *c = malloc(sizeof(*c));
  if (c == NULL) {
    return NULL;
  }
  *c = *src;
  c->mdctx = NULL;
  if (src->mdctx != NULL) {
    c->mdctx = EVP_MD_CTX_new();
    if (c->mdctx == NULL || EVP_MD_CTX_copy_ex(c->mdctx, src->mdctx) != 1) {
      EVP_MD_CTX_free(c->mdctx);
      free(c);
      return NULL;
    }
  }
  if (c->key != NULL) {
    smprov_key_ref(c->key);
  }
  if (c->md != NULL) {
    EVP_MD_up_ref(c->md);
  }
  if (c->mgf1 != NULL) {
    EVP_MD_up_ref(c->mgf1);
  }
  if (c->restrict_md != NULL) {
    EVP_MD_up_ref(c->restrict_md);
  }
  if (c->restrict_mgf1 != NULL) {
    EVP_MD_up_ref(c->restrict_mgf1);
  }
  return c;
}

/* ---- parameters ---------------------------------------------------------------- */

static int set_md(struct sigctx *c, EVP_MD **slot, const char *name) {
  EVP_MD *md = EVP_MD_fetch(c->prov->priv, name, c->propq[0] != '\0' ? c->propq : NULL);
  if (md == NULL) {
    md = EVP_MD_fetch(c->prov->priv, name, NULL);
  }
  if (md == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "unknown digest \"%s\"", name);
    return 0;
  }
  /* An RSA-PSS key restricted to a digest (and an MGF1 digest) signs with
   * those and no others. */
  const EVP_MD *only = slot == &c->md ? c->restrict_md : slot == &c->mgf1 ? c->restrict_mgf1 : NULL;
  if (only != NULL && !EVP_MD_is_a(md, EVP_MD_get0_name(only))) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "this RSA-PSS key is restricted to %s%s, not %s",
               slot == &c->mgf1 ? "MGF1 with " : "", EVP_MD_get0_name(only), name);
    EVP_MD_free(md);
    return 0;
  }
  EVP_MD_free(*slot);
  *slot = md;
  return 1;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[]) {
  struct sigctx *c = vctx;
  const OSSL_PARAM *p;
  if (params == NULL) {
    return 1;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PROPERTIES)) != NULL) {
    const char *v = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &v)) {
      return 0;
    }
    snprintf(c->propq, sizeof(c->propq), "%s", v);
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
    const char *v = NULL;
    if (c->md_locked || !OSSL_PARAM_get_utf8_string_ptr(p, &v) || !set_md(c, &c->md, v)) {
      if (c->md_locked) {
        SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "the digest cannot change during a digest-sign");
      }
      return 0;
    }
  }
  if (c->alg != SIG_RSA) {
    return 1;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
    int pad = 0;
    const char *v = NULL;
    if (p->data_type == OSSL_PARAM_UTF8_STRING && OSSL_PARAM_get_utf8_string_ptr(p, &v)) {
      pad = strcmp(v, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
            : strcmp(v, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0   ? RSA_PKCS1_PSS_PADDING
            : strcmp(v, OSSL_PKEY_RSA_PAD_MODE_NONE) == 0  ? RSA_NO_PADDING
                                                           : 0;
    } else if (!OSSL_PARAM_get_int(p, &pad)) {
      return 0;
    }
    if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING && pad != RSA_NO_PADDING) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "unsupported RSA signature padding");
      return 0;
    }
    if (c->key != NULL && c->key->type == SMPROV_RSA_PSS && pad != RSA_PKCS1_PSS_PADDING) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "an RSA-PSS key signs with PSS padding only");
      return 0;
    }
    c->pad = pad;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
    int salt = 0;
    const char *v = NULL;
    if (p->data_type == OSSL_PARAM_UTF8_STRING && OSSL_PARAM_get_utf8_string_ptr(p, &v)) {
      salt = strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0 ? RSA_PSS_SALTLEN_DIGEST
             : strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0  ? RSA_PSS_SALTLEN_MAX
             : strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0 ? RSA_PSS_SALTLEN_AUTO
                                                               : atoi(v);
    } else if (!OSSL_PARAM_get_int(p, &salt)) {
      return 0;
    }
    if (salt < RSA_PSS_SALTLEN_MAX) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "invalid PSS salt length %d", salt);
      return 0;
    }
    if (c->min_saltlen >= 0 && salt >= 0 && salt < c->min_saltlen) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "PSS salt length %d is below the key's minimum %d", salt,
                 c->min_saltlen);
      return 0;
    }
    c->saltlen = salt;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
    const char *v = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &v) || !set_md(c, &c->mgf1, v)) {
      return 0;
    }
  }
  return 1;
}

static const OSSL_PARAM *sig_settable_ctx_params(void *vctx, void *provctx) {
  static const OSSL_PARAM rsa[] = {
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
      OSSL_PARAM_END};
  static const OSSL_PARAM other[] = {
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0), OSSL_PARAM_END};
  const struct sigctx *c = vctx;
  (void)provctx;
  return c != NULL && c->alg == SIG_RSA ? rsa : other;
}

/* The salt length a PSS signature by this context uses, in bytes. */
static int pss_salt_bytes(const struct sigctx *c) {
  int hlen = EVP_MD_get_size(c->md);
  int em = (EVP_PKEY_get_bits(c->key->pub) - 1 + 7) / 8; /* emLen of RFC 8017 */
  switch (c->saltlen) {
  case RSA_PSS_SALTLEN_DIGEST:
    return hlen;
  case RSA_PSS_SALTLEN_MAX:
  case RSA_PSS_SALTLEN_AUTO: /* when signing, auto means the maximum */
    return em - hlen - 2;
  default:
    return c->saltlen;
  }
}

/* RSASSA-PSS AlgorithmIdentifier (RFC 4055): the parameters state the
 * digest, MGF1 digest and salt length, each left out when it is the
 * default (SHA-1, SHA-1, 20). */
static int pss_algorithm_id(const struct sigctx *c, unsigned char *out, size_t *len) {
  const EVP_MD *mgf1 = c->mgf1 != NULL ? c->mgf1 : c->md;
  int salt = pss_salt_bytes(c);
  RSA_PSS_PARAMS *pp = RSA_PSS_PARAMS_new();
  X509_ALGOR *mgf1_alg = NULL, *alg = X509_ALGOR_new();
  ASN1_STRING *mgf1_der = NULL, *params = NULL;
  unsigned char *der = NULL;
  int n = -1;
  bool ok = pp != NULL && alg != NULL && salt >= 0;
  if (ok && !EVP_MD_is_a(c->md, "SHA1")) {
    ok = (pp->hashAlgorithm = X509_ALGOR_new()) != NULL &&
         X509_ALGOR_set0(pp->hashAlgorithm, OBJ_nid2obj(EVP_MD_get_type(c->md)), V_ASN1_NULL,
                         NULL) == 1; /* explicit NULL parameters, as OpenSSL writes them */
  }
  if (ok && !EVP_MD_is_a(mgf1, "SHA1")) {
    ok = (mgf1_alg = X509_ALGOR_new()) != NULL && (pp->maskGenAlgorithm = X509_ALGOR_new()) != NULL;
    if (ok) {
      ok = X509_ALGOR_set0(mgf1_alg, OBJ_nid2obj(EVP_MD_get_type(mgf1)), V_ASN1_NULL, NULL) == 1 &&
           (mgf1_der = ASN1_item_pack(mgf1_alg, ASN1_ITEM_rptr(X509_ALGOR), NULL)) != NULL &&
           X509_ALGOR_set0(pp->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1), V_ASN1_SEQUENCE,
                           mgf1_der) == 1;
      if (ok) {
        mgf1_der = NULL;
      }
    }
  }
  if (ok && salt != 20) {
    ok = (pp->saltLength = ASN1_INTEGER_new()) != NULL && ASN1_INTEGER_set(pp->saltLength, salt) == 1;
  }
  ok = ok && (params = ASN1_item_pack(pp, ASN1_ITEM_rptr(RSA_PSS_PARAMS), NULL)) != NULL &&
       X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, params) == 1;
  if (ok) {
    params = NULL;
    n = i2d_X509_ALGOR(alg, &der);
  }
  ok = ok && n > 0 && (size_t)n <= *len;
  if (ok) {
    memcpy(out, der, (size_t)n);
    *len = (size_t)n;
  }
  OPENSSL_free(der);
  ASN1_STRING_free(params);
  ASN1_STRING_free(mgf1_der);
  X509_ALGOR_free(mgf1_alg);
  X509_ALGOR_free(alg);
  RSA_PSS_PARAMS_free(pp);
  return ok;
}

/* The DER AlgorithmIdentifier of this signature. */
static int algorithm_id(const struct sigctx *c, unsigned char *out, size_t *len) {
  int sig_nid = NID_undef;
  if (c->alg == SIG_EDDSA) {
    sig_nid = c->key != NULL && c->key->type == SMPROV_ED448 ? NID_ED448 : NID_ED25519;
  } else if (c->md != NULL && c->alg == SIG_ECDSA) {
    int dig = EVP_MD_get_type(c->md);
    if (OBJ_find_sigid_by_algs(&sig_nid, dig, NID_X9_62_id_ecPublicKey) != 1) {
      return 0;
    }
  } else if (c->md != NULL && c->alg == SIG_RSA && c->pad == RSA_PKCS1_PADDING) {
    if (OBJ_find_sigid_by_algs(&sig_nid, EVP_MD_get_type(c->md), NID_rsaEncryption) != 1) {
      return 0;
    }
  } else if (c->md != NULL && c->alg == SIG_RSA && c->pad == RSA_PKCS1_PSS_PADDING) {
    return pss_algorithm_id(c, out, len);
  } else {
    return 0;
  }
  X509_ALGOR *a = X509_ALGOR_new();
  int ptype = c->alg == SIG_RSA ? V_ASN1_NULL : V_ASN1_UNDEF;
  unsigned char *der = NULL;
  int n = a != NULL && X509_ALGOR_set0(a, OBJ_nid2obj(sig_nid), ptype, NULL) == 1
              ? i2d_X509_ALGOR(a, &der)
              : -1;
  X509_ALGOR_free(a);
  if (n <= 0 || (size_t)n > *len) {
    OPENSSL_free(der);
    return 0;
  }
  memcpy(out, der, (size_t)n);
  *len = (size_t)n;
  OPENSSL_free(der);
  return 1;
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[]) {
  struct sigctx *c = vctx;
  OSSL_PARAM *p;
  if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
    unsigned char der[256];
    size_t len = sizeof(der);
    if (!algorithm_id(c, der, &len) || !OSSL_PARAM_set_octet_string(p, der, len)) {
      return 0;
    }
  }
  if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL && c->md != NULL &&
      !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(c->md))) {
    return 0;
  }
  if (c->alg == SIG_RSA) {
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
      const char *name = c->pad == RSA_PKCS1_PSS_PADDING ? OSSL_PKEY_RSA_PAD_MODE_PSS
                         : c->pad == RSA_NO_PADDING      ? OSSL_PKEY_RSA_PAD_MODE_NONE
                                                         : OSSL_PKEY_RSA_PAD_MODE_PKCSV15;
      if (p->data_type == OSSL_PARAM_UTF8_STRING ? !OSSL_PARAM_set_utf8_string(p, name)
                                                 : !OSSL_PARAM_set_int(p, c->pad)) {
        return 0;
      }
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
      char num[16];
      const char *name = c->saltlen == RSA_PSS_SALTLEN_DIGEST ? OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST
                         : c->saltlen == RSA_PSS_SALTLEN_MAX  ? OSSL_PKEY_RSA_PSS_SALT_LEN_MAX
                         : c->saltlen == RSA_PSS_SALTLEN_AUTO ? OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO
                                                              : NULL;
      if (name == NULL) {
        snprintf(num, sizeof(num), "%d", c->saltlen);
        name = num;
      }
      if (p->data_type == OSSL_PARAM_UTF8_STRING ? !OSSL_PARAM_set_utf8_string(p, name)
                                                 : !OSSL_PARAM_set_int(p, c->saltlen)) {
        return 0;
      }
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL &&
        (c->mgf1 != NULL || c->md != NULL) &&
        !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(c->mgf1 != NULL ? c->mgf1 : c->md))) {
      return 0;
    }
  }
  return 1;
}

static const OSSL_PARAM *sig_gettable_ctx_params(void *vctx, void *provctx) {
  static const OSSL_PARAM gettable[] = {
      OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
      OSSL_PARAM_END};
  (void)vctx;
  (void)provctx;
  return gettable;
}

/* ---- init ------------------------------------------------------------------------ */

static bool key_fits(const struct sigctx *c, const struct smprov_key *k) {
  switch (c->alg) {
  case SIG_EDDSA:
    return k->type == SMPROV_ED25519 || k->type == SMPROV_ED448;
  case SIG_ECDSA:
    return k->type == SMPROV_EC;
  case SIG_RSA:
    return k->type == SMPROV_RSA || k->type == SMPROV_RSA_PSS;
  }
  return false;
}

/* RSA-PSS keys: padding PSS, and the digest, MGF1 digest and minimum salt
 * length they are restricted to. */
static int apply_pss_restrictions(struct sigctx *c) {
  char md[64] = "", mgf1[64] = "";
  int salt = -1;
  c->pad = RSA_PKCS1_PSS_PADDING;
  EVP_MD_free(c->restrict_md);
  EVP_MD_free(c->restrict_mgf1);
  c->restrict_md = c->restrict_mgf1 = NULL;
  c->min_saltlen = -1;
  if (EVP_PKEY_get_utf8_string_param(c->key->pub, OSSL_PKEY_PARAM_RSA_DIGEST, md, sizeof(md),
                                     NULL) != 1 ||
      md[0] == '\0') {
    return 1; /* an unrestricted RSA-PSS key */
  }
  if (EVP_PKEY_get_utf8_string_param(c->key->pub, OSSL_PKEY_PARAM_RSA_MGF1_DIGEST, mgf1,
                                     sizeof(mgf1), NULL) != 1 ||
      mgf1[0] == '\0') {
    snprintf(mgf1, sizeof(mgf1), "SHA1"); /* RFC 4055's default for a restricted key */
  }
  if (!set_md(c, &c->md, md) || !set_md(c, &c->mgf1, mgf1)) {
    return 0;
  }
  EVP_MD_up_ref(c->md);
  EVP_MD_up_ref(c->mgf1);
  c->restrict_md = c->md;
  c->restrict_mgf1 = c->mgf1;
  if (EVP_PKEY_get_int_param(c->key->pub, OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, &salt) == 1) {
    c->min_saltlen = salt;
    c->saltlen = salt;
  }
  return 1;
}

static int init(struct sigctx *c, void *provkey, const OSSL_PARAM params[], bool signing) {
  struct smprov_key *k = provkey;
  if (!smprov_key_ok(k) || k->pub == NULL || !key_fits(c, k)) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "this key cannot be used for this signature");
    return 0;
  }
  if (signing && k->priv == NULL) {
    SMPROV_ERR(SMPROV_R_NO_PRIVATE_KEY, "cannot sign with a public key");
    return 0;
  }
  smprov_key_free(c->key);
  c->key = smprov_key_ref(k);
  c->signing = signing;
  c->md_locked = false;
  if (k->type == SMPROV_RSA_PSS && !apply_pss_restrictions(c)) {
    return 0;
  }
  return sig_set_ctx_params(c, params);
}

static int sig_sign_init(void *vctx, void *provkey, const OSSL_PARAM params[]) {
  return init(vctx, provkey, params, true);
}

static int sig_verify_init(void *vctx, void *provkey, const OSSL_PARAM params[]) {
  return init(vctx, provkey, params, false);
}

/* ---- the private step: sign a digest (or a message for EdDSA) ------------------- */

static size_t max_sig_size(const struct sigctx *c) {
  int n = EVP_PKEY_get_size(c->key->pub);
  return n > 0 ? (size_t)n : 0;
}

/* DigestInfo for PKCS#1 v1.5, except where TLS signs bare hashes (no digest
 * set, or MD5+SHA1). */
static int digest_info(const struct sigctx *c, const unsigned char *dgst, size_t dlen,
                       unsigned char *out, size_t *outlen) {
  if (c->md == NULL || EVP_MD_get_type(c->md) == NID_md5_sha1) {
    if (dlen > *outlen) {
      return 0;
    }
    memcpy(out, dgst, dlen);
    *outlen = dlen;
    return 1;
  }
  if ((size_t)EVP_MD_get_size(c->md) != dlen) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "a %zu-byte digest for %s", dlen, EVP_MD_get0_name(c->md));
    return 0;
  }
  X509_SIG *sig = X509_SIG_new();
  X509_ALGOR *alg = NULL;
  ASN1_OCTET_STRING *os = NULL;
  unsigned char *der = NULL;
  int n = -1;
  if (sig != NULL) {
    X509_SIG_getm(sig, &alg, &os);
    if (X509_ALGOR_set0(alg, OBJ_nid2obj(EVP_MD_get_type(c->md)), V_ASN1_NULL, NULL) == 1 &&
        ASN1_OCTET_STRING_set(os, dgst, (int)dlen) == 1) {
      n = i2d_X509_SIG(sig, &der);
    }
  }
  X509_SIG_free(sig);
  int ok = n > 0 && (size_t)n <= *outlen;
  if (ok) {
    memcpy(out, der, (size_t)n);
    *outlen = (size_t)n;
  }
  OPENSSL_free(der);
  return ok;
}

static int rsa_sign_digest(struct sigctx *c, unsigned char *sig, size_t *siglen,
                           const unsigned char *dgst, size_t dlen) {
  size_t k = max_sig_size(c);
  unsigned char em[1024];
  if (k == 0 || k > sizeof(em)) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "RSA modulus of %zu bytes is not supported", k);
    return 0;
  }
  int ok = 0;
  if (c->pad == RSA_NO_PADDING) {
    if (dlen != k) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "unpadded RSA needs exactly %zu bytes", k);
      return 0;
    }
    memcpy(em, dgst, k);
    ok = 1;
  } else if (c->pad == RSA_PKCS1_PADDING) {
    unsigned char di[256];
    size_t dilen = sizeof(di);
    ok = digest_info(c, dgst, dlen, di, &dilen) &&
         RSA_padding_add_PKCS1_type_1(em, (int)k, di, (int)dilen) == 1;
  } else {
    if (c->md == NULL || (size_t)EVP_MD_get_size(c->md) != dlen) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "PSS signing needs a digest of the digest's size");
      return 0;
    }
    ok = smprov_rsa_pss_encode(c->key, em, dgst, c->md, c->mgf1 != NULL ? c->mgf1 : c->md,
                               c->saltlen);
  }
  if (!ok) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "RSA signature encoding failed");
    return 0;
  }
  ok = smprov_unseal_rsa_private(c->key, sig, em, k);
  *siglen = ok ? k : 0;
  return ok;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen) {
  struct sigctx *c = vctx;
  if (c->key == NULL || !c->signing) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "signing was not initialised");
    return 0;
  }
  size_t need = max_sig_size(c);
  if (sig == NULL) {
    *siglen = need;
    return 1;
  }
  if (sigsize < need) {
    SMPROV_ERR(SMPROV_R_BUFFER_TOO_SMALL, "the signature needs %zu bytes, %zu given", need, sigsize);
    return 0;
  }
  switch (c->alg) {
  case SIG_EDDSA:
    return smprov_unseal_eddsa_sign(c->key, sig, siglen, tbs, tbslen);
  case SIG_ECDSA:
    if (c->md != NULL && (size_t)EVP_MD_get_size(c->md) != tbslen) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "a %zu-byte digest for %s", tbslen, EVP_MD_get0_name(c->md));
      return 0;
    }
    return smprov_unseal_ecdsa_sign(c->key, sig, siglen, sigsize, tbs, tbslen);
  case SIG_RSA:
    return rsa_sign_digest(c, sig, siglen, tbs, tbslen);
  }
  return 0;
}

/* ---- verification: the default provider, on the public part ---------------------- */

static EVP_PKEY_CTX *public_ctx(struct sigctx *c) {
  EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(c->prov->priv, c->key->pub, NULL);
  if (pc == NULL || EVP_PKEY_verify_init(pc) != 1) {
    EVP_PKEY_CTX_free(pc);
    return NULL;
  }
  int ok = 1;
  if (c->md != NULL) {
    ok = EVP_PKEY_CTX_set_signature_md(pc, c->md) == 1;
  }
  if (ok && c->alg == SIG_RSA) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pc, c->pad) == 1;
    if (ok && c->pad == RSA_PKCS1_PSS_PADDING) {
      int salt = c->saltlen == RSA_PSS_SALTLEN_MAX ? RSA_PSS_SALTLEN_AUTO : c->saltlen;
      ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, salt) == 1 &&
           (c->mgf1 == NULL || EVP_PKEY_CTX_set_rsa_mgf1_md(pc, c->mgf1) == 1);
    }
  }
  if (!ok) {
    EVP_PKEY_CTX_free(pc);
    return NULL;
  }
  return pc;
}

static int sig_verify(void *vctx, const unsigned char *sig, size_t siglen,
                      const unsigned char *tbs, size_t tbslen) {
  struct sigctx *c = vctx;
  if (c->key == NULL || c->alg == SIG_EDDSA) {
    return 0;
  }
  EVP_PKEY_CTX *pc = public_ctx(c);
  int ok = pc != NULL && EVP_PKEY_verify(pc, sig, siglen, tbs, tbslen) == 1;
  EVP_PKEY_CTX_free(pc);
  return ok;
}

/* ---- digest-sign and digest-verify -------------------------------------------------- */

static int digest_init(struct sigctx *c, const char *mdname, void *provkey,
                       const OSSL_PARAM params[], bool signing) {
  if (!init(c, provkey, params, signing)) {
    return 0;
  }
  if (c->alg == SIG_EDDSA) {
    if (mdname != NULL && mdname[0] != '\0') {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "EdDSA takes no digest (\"%s\" given)", mdname);
      return 0;
    }
    return 1;
  }
  if (mdname != NULL && mdname[0] != '\0' && !set_md(c, &c->md, mdname)) {
    return 0;
  }
  if (c->md == NULL && !set_md(c, &c->md, "SHA256")) {
    return 0;
  }
  c->md_locked = true;
  EVP_MD_CTX_free(c->mdctx);
  c->mdctx = EVP_MD_CTX_new();
  return c->mdctx != NULL && EVP_DigestInit_ex2(c->mdctx, c->md, NULL) == 1;
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *provkey,
                                const OSSL_PARAM params[]) {
  return digest_init(vctx, mdname, provkey, params, true);
}

static int sig_digest_verify_init(void *vctx, const char *mdname, void *provkey,
                                  const OSSL_PARAM params[]) {
  return digest_init(vctx, mdname, provkey, params, false);
}

static int sig_digest_update(void *vctx, const unsigned char *data, size_t len) {
  struct sigctx *c = vctx;
  if (c->mdctx == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "EdDSA signs in one shot only");
    return 0;
  }
  return EVP_DigestUpdate(c->mdctx, data, len) == 1;
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize) {
  struct sigctx *c = vctx;
  if (c->mdctx == NULL) {
    return 0;
  }
  if (sig == NULL) {
    *siglen = max_sig_size(c);
    return 1;
  }
  unsigned char dgst[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  if (EVP_DigestFinal_ex(c->mdctx, dgst, &dlen) != 1) {
    return 0;
  }
  c->md_locked = false;
  return sig_sign(c, sig, siglen, sigsize, dgst, dlen);
}

static int sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen) {
  struct sigctx *c = vctx;
  unsigned char dgst[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  if (c->mdctx == NULL || EVP_DigestFinal_ex(c->mdctx, dgst, &dlen) != 1) {
    return 0;
  }
  c->md_locked = false;
  return sig_verify(c, sig, siglen, dgst, dlen);
}

static int sig_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                           const unsigned char *tbs, size_t tbslen) {
  struct sigctx *c = vctx;
  if (c->alg == SIG_EDDSA) {
    return sig_sign(c, sig, siglen, sigsize, tbs, tbslen);
  }
  if (sig != NULL && !sig_digest_update(c, tbs, tbslen)) {
    return 0;
  }
  return sig_digest_sign_final(c, sig, siglen, sigsize);
}

static int sig_digest_verify(void *vctx, const unsigned char *sig, size_t siglen,
                             const unsigned char *tbs, size_t tbslen) {
  struct sigctx *c = vctx;
  if (c->alg != SIG_EDDSA) {
    return sig_digest_update(c, tbs, tbslen) && sig_digest_verify_final(c, sig, siglen);
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL &&
           EVP_DigestVerifyInit_ex(md, NULL, NULL, c->prov->priv, NULL, c->key->pub, NULL) == 1 &&
           EVP_DigestVerify(md, sig, siglen, tbs, tbslen) == 1;
  EVP_MD_CTX_free(md);
  return ok;
}

/* ---- dispatch ------------------------------------------------------------------------ */

#define COMMON_ENTRIES                                                                              \
  {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},                                       \
      {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},                                     \
      {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},                 \
      {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))sig_digest_verify_init},             \
      {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params},                     \
      {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params},           \
      {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params},                     \
      {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable_ctx_params}

#define DIGESTED_ENTRIES                                                                            \
  {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init},                                   \
      {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign},                                         \
      {OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))sig_verify_init},                           \
      {OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))sig_verify},                                     \
      {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_update},                  \
      {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final},               \
      {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))sig_digest_update},                \
      {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, (void (*)(void))sig_digest_verify_final}

const OSSL_DISPATCH smprov_signature_eddsa[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))eddsa_newctx},
    COMMON_ENTRIES,
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void))sig_digest_verify},
    {0, NULL}};

const OSSL_DISPATCH smprov_signature_ecdsa[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_newctx}, COMMON_ENTRIES, DIGESTED_ENTRIES,
    {0, NULL}};

const OSSL_DISPATCH smprov_signature_rsa[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_newctx}, COMMON_ENTRIES, DIGESTED_ENTRIES,
    {0, NULL}};
