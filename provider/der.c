/*
 * der.c - owns turning private-key DER that sits in locked memory into a
 * sealed key, without handing the private fields to OpenSSL's ASN.1
 * decoders (which free them uncleansed). Reads PKCS#8 PrivateKeyInfo,
 * traditional RSAPrivateKey and ECPrivateKey, for rsaEncryption, RSASSA-PSS,
 * id-ecPublicKey, Ed25519, X25519, Ed448 and X448.
 *
 * How: a small DER walker finds the fields in place. The public part goes
 * to OpenSSL as a SubjectPublicKeyInfo built from the public fields (that
 * yields the curve, or an RSA-PSS key's restrictions); the private numbers
 * are laid out natively in this thread's guarded scratch and given to
 * EVP_PKEY_fromdata by pointer; the resulting key is sealed and freed.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "smprov.h"

/* ---- the walker ------------------------------------------------------------- */

struct der {
  const unsigned char *p, *end;
};

/* Read one TLV; 1 with tag, value and the whole element's start/length. */
static int der_tlv(struct der *d, unsigned *tag, const unsigned char **val, size_t *len,
                   const unsigned char **elem, size_t *elem_len) {
  const unsigned char *start = d->p;
  if (d->end - d->p < 2) {
    return 0;
  }
  *tag = d->p[0];
  size_t l = d->p[1];
  d->p += 2;
  if (l & 0x80) {
    size_t n = l & 0x7f;
    if (n == 0 || n > 4 || (size_t)(d->end - d->p) < n) {
      return 0; /* indefinite or absurd lengths are not DER */
    }
    l = 0;
    for (size_t i = 0; i < n; i++) {
      l = (l << 8) | *d->p++;
    }
  }
  if ((size_t)(d->end - d->p) < l) {
    return 0;
  }
  *val = d->p;
  *len = l;
  d->p += l;
  if (elem != NULL) {
    *elem = start;
    *elem_len = (size_t)(d->p - start);
  }
  return 1;
}

/* Read a TLV that must carry tag. */
static int der_expect(struct der *d, unsigned tag, const unsigned char **val, size_t *len) {
  unsigned t;
  return der_tlv(d, &t, val, len, NULL, NULL) && t == tag;
}

static int der_expect_elem(struct der *d, unsigned tag, const unsigned char **val, size_t *len,
                           const unsigned char **elem, size_t *elem_len) {
  unsigned t;
  return der_tlv(d, &t, val, len, elem, elem_len) && t == tag;
}

/* Read a TLV that must carry tag, and walk into its contents with inner. */
static int der_enter(struct der *d, unsigned tag, struct der *inner) {
  const unsigned char *v;
  size_t l;
  if (!der_expect(d, tag, &v, &l)) {
    return 0;
  }
  *inner = (struct der){v, v + l};
  return 1;
}

/* Peek at the next tag (0 at the end). */
static unsigned der_peek(const struct der *d) { return d->p < d->end ? d->p[0] : 0; }

#define TAG_INT 0x02
#define TAG_BITSTR 0x03
#define TAG_OCTSTR 0x04
#define TAG_OID 0x06
#define TAG_SEQ 0x30
#define TAG_CTX0 0xa0
#define TAG_CTX1 0xa1

/* ---- output helpers ---------------------------------------------------------- */

/* Write the DER length of n at *w. */
static unsigned char *put_len(unsigned char *w, size_t n) {
  if (n < 0x80) {
    *w++ = (unsigned char)n;
  } else if (n < 0x100) {
    *w++ = 0x81;
    *w++ = (unsigned char)n;
  } else if (n < 0x10000) {
    *w++ = 0x82;
    *w++ = (unsigned char)(n >> 8);
    *w++ = (unsigned char)n;
  } else {
    *w++ = 0x83;
    *w++ = (unsigned char)(n >> 16);
    *w++ = (unsigned char)(n >> 8);
    *w++ = (unsigned char)n;
  }
  return w;
}

static size_t len_len(size_t n) { return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 4; }

/* A public key from SubjectPublicKeyInfo { alg, BIT STRING { 0, key } },
 * decoded by OpenSSL in the private library context: public data only. */
static EVP_PKEY *public_from_spki(struct smprov_ctx *prov, const unsigned char *alg, size_t alg_len,
                                  const unsigned char *key, size_t key_len) {
  size_t bits_len = key_len + 1;
  size_t inner = alg_len + 1 + len_len(bits_len) + bits_len;
  size_t total = 1 + len_len(inner) + inner;
  unsigned char *spki = OPENSSL_malloc(total);
  if (spki == NULL) {
    return NULL;
  }
  unsigned char *w = spki;
  *w++ = TAG_SEQ;
  w = put_len(w, inner);
  memcpy(w, alg, alg_len);
  w += alg_len;
  *w++ = TAG_BITSTR;
  w = put_len(w, bits_len);
  *w++ = 0; /* no unused bits */
  memcpy(w, key, key_len);
  const unsigned char *r = spki;
  EVP_PKEY *pub = d2i_PUBKEY_ex(NULL, &r, (long)total, prov->priv, NULL);
  OPENSSL_free(spki);
  return pub;
}

/* Big-endian INTEGER contents to a native-endian unsigned number at out;
 * returns its length (0 for a negative or empty number). */
static size_t native_uint(const unsigned char *v, size_t len, unsigned char *out) {
  if (len == 0 || (v[0] & 0x80)) {
    return 0;
  }
  while (len > 1 && v[0] == 0) {
    v++;
    len--;
  }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (size_t i = 0; i < len; i++) {
    out[i] = v[len - 1 - i];
  }
#else
  memcpy(out, v, len);
#endif
  return len;
}

/* The public part of a key being sealed: its parameters, given directly
 * (the cheap way, for RSA and EC) or as a key decoded from a
 * SubjectPublicKeyInfo (RSA-PSS, for its restrictions), or nothing (the ECX
 * types, whose public key OpenSSL computes from the private one). */
struct public_part {
  EVP_PKEY *pkey;
  OSSL_PARAM params[2];
  size_t nparams;
};

/* Build the full key of type name from the public part plus the private
 * params (pointing into scratch), seal it into a new key of ours. */
static struct smprov_key *seal_full(struct smprov_ctx *prov, const struct public_part *pub,
                                    const char *name, const OSSL_PARAM *priv, size_t npriv) {
  OSSL_PARAM *pubp = NULL;
  size_t n = 0;
  if (pub->pkey != NULL) {
    if (EVP_PKEY_todata(pub->pkey, EVP_PKEY_PUBLIC_KEY, &pubp) != 1) {
      return NULL;
    }
    while (pubp[n].key != NULL) {
      n++;
    }
  }
  OSSL_PARAM all[48];
  if (n + pub->nparams + npriv + 1 > sizeof(all) / sizeof(all[0])) {
    OSSL_PARAM_free(pubp);
    return NULL;
  }
  if (n > 0) {
    memcpy(all, pubp, n * sizeof(OSSL_PARAM));
  }
  for (size_t i = 0; i < pub->nparams; i++) {
    all[n++] = pub->params[i];
  }
  memcpy(all + n, priv, npriv * sizeof(OSSL_PARAM));
  all[n + npriv] = OSSL_PARAM_construct_end();
  EVP_PKEY *full = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(prov->priv, name, NULL);
  int ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
           EVP_PKEY_fromdata(ctx, &full, EVP_PKEY_KEYPAIR, all) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(pubp);
  struct smprov_key *k = NULL;
  if (ok) {
    enum smprov_type t = strcmp(name, "RSA") == 0       ? SMPROV_RSA
                         : strcmp(name, "RSA-PSS") == 0 ? SMPROV_RSA_PSS
                         : strcmp(name, "EC") == 0      ? SMPROV_EC
                         : strcmp(name, "ED25519") == 0 ? SMPROV_ED25519
                         : strcmp(name, "X25519") == 0  ? SMPROV_X25519
                         : strcmp(name, "ED448") == 0   ? SMPROV_ED448
                                                        : SMPROV_X448;
    k = smprov_key_new(prov, t);
    if (k != NULL && !smprov_seal_from_pkey(k, full)) {
      smprov_key_free(k);
      k = NULL;
    }
  }
  EVP_PKEY_free(full); /* clears its private part */
  return k;
}

/* ---- the key structures ---------------------------------------------------------- */

/* RSAPrivateKey { version, n, e, d, p, q, dp, dq, qinv }. alg is the
 * AlgorithmIdentifier to describe the public key (rsaEncryption or
 * RSASSA-PSS with its parameters). */
static struct smprov_key *rsa_key(struct smprov_ctx *prov, const unsigned char *der, size_t len,
                                  const unsigned char *alg, size_t alg_len, const char *name) {
  struct der outer = {der, der + len}, d;
  const unsigned char *v;
  size_t vl;
  if (!der_enter(&outer, TAG_SEQ, &d)) {
    return NULL;
  }
  if (!der_expect(&d, TAG_INT, &v, &vl) || vl != 1 || v[0] != 0) {
    SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, "multi-prime RSA keys are not supported");
    return NULL;
  }
  const unsigned char *field[8], *elem_n = NULL, *elem_e = NULL;
  size_t field_len[8], elem_n_len = 0, elem_e_len = 0;
  for (int i = 0; i < 8; i++) {
    const unsigned char *el;
    size_t ell;
    if (!der_expect_elem(&d, TAG_INT, &field[i], &field_len[i], &el, &ell)) {
      return NULL;
    }
    if (i == 0) {
      elem_n = el;
      elem_n_len = ell;
    } else if (i == 1) {
      elem_e = el;
      elem_e_len = ell;
    }
  }
  /* The public key, n and e: as parameters for RSA; for RSA-PSS, whose
   * AlgorithmIdentifier carries restrictions, an RSAPublicKey { n, e } in a
   * SubjectPublicKeyInfo decoded by OpenSSL. */
  size_t rpk_inner = elem_n_len + elem_e_len;
  unsigned char rpk[1100], n_native[1100], e_native[1100];
  if (1 + len_len(rpk_inner) + rpk_inner > sizeof(rpk)) {
    SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, "RSA keys over 8192 bits are not supported");
    return NULL;
  }
  struct public_part pub = {0};
  if (strcmp(name, "RSA") == 0) {
    size_t nl = native_uint(field[0], field_len[0], n_native);
    size_t el = native_uint(field[1], field_len[1], e_native);
    if (nl == 0 || el == 0) {
      return NULL;
    }
    pub.params[0] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, n_native, nl);
    pub.params[1] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, e_native, el);
    pub.nparams = 2;
  } else {
    unsigned char *w = rpk;
    *w++ = TAG_SEQ;
    w = put_len(w, rpk_inner);
    memcpy(w, elem_n, elem_n_len);
    memcpy(w + elem_n_len, elem_e, elem_e_len);
    pub.pkey = public_from_spki(prov, alg, alg_len, rpk, (size_t)(w + rpk_inner - rpk));
    if (pub.pkey == NULL) {
      return NULL;
    }
  }
  /* The private numbers, native-endian, in guarded scratch. */
  static const char *const names[6] = {
      OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,  OSSL_PKEY_PARAM_RSA_FACTOR2,
      OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
  unsigned char *s = secmem_scratch(len);
  struct smprov_key *k = NULL;
  if (s != NULL) {
    OSSL_PARAM priv[6];
    unsigned char *o = s;
    bool ok = true;
    for (int i = 0; i < 6 && ok; i++) {
      size_t n = native_uint(field[i + 2], field_len[i + 2], o);
      ok = n > 0;
      priv[i] = OSSL_PARAM_construct_BN(names[i], o, n);
      o += n;
    }
    k = ok ? seal_full(prov, &pub, name, priv, 6) : NULL;
    secmem_scratch_wipe();
  }
  EVP_PKEY_free(pub.pkey);
  return k;
}

#define EXPLICIT_CURVE                                                                           \
  "EC keys with explicit or unknown curve parameters are not supported (save the key with a "     \
  "named curve)"

/* The named curve of an EC AlgorithmIdentifier { id-ecPublicKey, namedCurve
 * OID }: its NID, and its name into name; NID_undef for explicit parameters
 * or a curve OpenSSL has no name for. */
static int ec_group_name(const unsigned char *alg, size_t alg_len, char *name, size_t name_len) {
  struct der a = {alg, alg + alg_len}, ai;
  const unsigned char *v, *el;
  size_t vl, ell;
  if (!der_enter(&a, TAG_SEQ, &ai) || !der_expect(&ai, TAG_OID, &v, &vl) ||
      !der_expect_elem(&ai, TAG_OID, &v, &vl, &el, &ell)) {
    return NID_undef;
  }
  ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &el, (long)ell);
  int nid = obj != NULL ? OBJ_obj2nid(obj) : NID_undef;
  ASN1_OBJECT_free(obj);
  const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
  if (sn == NULL || strlen(sn) >= name_len) {
    return NID_undef;
  }
  memcpy(name, sn, strlen(sn) + 1);
  return nid;
}

/* ECPrivateKey { 1, privateKey, [0] parameters, [1] publicKey }. alg is an
 * AlgorithmIdentifier giving the curve when the structure itself does not. */
static struct smprov_key *ec_key(struct smprov_ctx *prov, const unsigned char *der, size_t len,
                                 const unsigned char *alg, size_t alg_len) {
  struct der outer = {der, der + len}, d;
  const unsigned char *v, *priv, *params = NULL, *pubbits = NULL;
  size_t vl, privl, params_len = 0, pubbits_len = 0;
  if (!der_enter(&outer, TAG_SEQ, &d)) {
    return NULL;
  }
  if (!der_expect(&d, TAG_INT, &v, &vl) || vl != 1 || v[0] != 1 ||
      !der_expect(&d, TAG_OCTSTR, &priv, &privl) || privl == 0 || privl > 66) {
    return NULL;
  }
  if (der_peek(&d) == TAG_CTX0 && !der_expect(&d, TAG_CTX0, &params, &params_len)) {
    return NULL;
  }
  if (params != NULL && (params_len == 0 || params[0] != TAG_OID)) {
    SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, EXPLICIT_CURVE);
    return NULL;
  }
  if (der_peek(&d) == TAG_CTX1) {
    struct der inner;
    if (!der_enter(&d, TAG_CTX1, &inner)) {
      return NULL;
    }
    if (!der_expect(&inner, TAG_BITSTR, &pubbits, &pubbits_len) || pubbits_len < 2 ||
        pubbits[0] != 0) {
      return NULL;
    }
    pubbits++; /* skip the unused-bits octet */
    pubbits_len--;
  }
  /* The AlgorithmIdentifier: the one given, or id-ecPublicKey + the curve
   * from [0]. */
  unsigned char algbuf[256];
  if (alg == NULL) {
    static const unsigned char ec_oid[] = {TAG_OID, 7, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
    if (params == NULL || sizeof(ec_oid) + params_len + 4 > sizeof(algbuf)) {
      return NULL;
    }
    unsigned char *w = algbuf;
    *w++ = TAG_SEQ;
    w = put_len(w, sizeof(ec_oid) + params_len);
    memcpy(w, ec_oid, sizeof(ec_oid));
    memcpy(w + sizeof(ec_oid), params, params_len);
    alg = algbuf;
    alg_len = (size_t)(w + sizeof(ec_oid) + params_len - algbuf);
  }
  /* The public key: the curve's name and the point. */
  char group[64];
  int nid = ec_group_name(alg, alg_len, group, sizeof(group));
  if (nid == NID_undef) {
    SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, EXPLICIT_CURVE);
    return NULL;
  }
  /* A key saved without its public key (RFC 5915 makes it optional, and
   * `openssl ec -no_public` writes one): compute it from the scalar. */
  unsigned char pointbuf[1 + 2 * 66]; /* uncompressed, up to P-521 */
  if (pubbits == NULL) {
    pubbits_len =
        smprov_ec_public_from_scalar(prov, nid, priv, privl, pointbuf, sizeof(pointbuf));
    if (pubbits_len == 0) {
      return NULL;
    }
    pubbits = pointbuf;
  }
  struct public_part pub = {0};
  pub.params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
  pub.params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pubbits,
                                                    pubbits_len);
  pub.nparams = 2;
  unsigned char *s = secmem_scratch(privl);
  struct smprov_key *k = NULL;
  if (s != NULL) {
    /* The scalar is an unsigned big-endian octet string. */
    for (size_t i = 0; i < privl; i++) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      s[i] = priv[privl - 1 - i];
#else
      s[i] = priv[i];
#endif
    }
    OSSL_PARAM p[1] = {OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, s, privl)};
    k = seal_full(prov, &pub, "EC", p, 1);
    secmem_scratch_wipe();
  }
  EVP_PKEY_free(pub.pkey);
  return k;
}

/* The ECX keys: privateKey is an OCTET STRING holding the raw key. */
static struct smprov_key *ecx_key(struct smprov_ctx *prov, const unsigned char *der, size_t len,
                                  const char *name, size_t want) {
  struct der d = {der, der + len};
  const unsigned char *raw;
  size_t rawl;
  if (!der_expect(&d, TAG_OCTSTR, &raw, &rawl) || rawl != want) {
    return NULL;
  }
  OSSL_PARAM p[1] = {
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, (void *)raw, rawl)};
  static const struct public_part none = {0};
  return seal_full(prov, &none, name, p, 1);
}

/* ---- PKCS#8 and the entry point -------------------------------------------------- */

static const unsigned char OID_RSA[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
static const unsigned char OID_RSA_PSS[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a};
static const unsigned char OID_EC[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
static const unsigned char OID_X25519[] = {0x2b, 0x65, 0x6e};
static const unsigned char OID_X448[] = {0x2b, 0x65, 0x6f};
static const unsigned char OID_ED25519[] = {0x2b, 0x65, 0x70};
static const unsigned char OID_ED448[] = {0x2b, 0x65, 0x71};

#define OID_IS(v, l, oid) ((l) == sizeof(oid) && memcmp((v), (oid), sizeof(oid)) == 0)

static struct smprov_key *pkcs8_key(struct smprov_ctx *prov, const unsigned char *der, size_t len) {
  struct der outer = {der, der + len}, d, a;
  const unsigned char *v, *alg, *algel, *oid, *key;
  size_t vl, algl, algel_len, oidl, keyl;
  if (!der_enter(&outer, TAG_SEQ, &d)) {
    return NULL;
  }
  if (!der_expect(&d, TAG_INT, &v, &vl) || vl != 1 || v[0] > 1 ||
      !der_expect_elem(&d, TAG_SEQ, &alg, &algl, &algel, &algel_len) ||
      !der_expect(&d, TAG_OCTSTR, &key, &keyl)) {
    return NULL;
  }
  a = (struct der){alg, alg + algl};
  if (!der_expect(&a, TAG_OID, &oid, &oidl)) {
    return NULL;
  }
  if (OID_IS(oid, oidl, OID_RSA)) {
    return rsa_key(prov, key, keyl, algel, algel_len, "RSA");
  }
  if (OID_IS(oid, oidl, OID_RSA_PSS)) {
    return rsa_key(prov, key, keyl, algel, algel_len, "RSA-PSS");
  }
  if (OID_IS(oid, oidl, OID_EC)) {
    return ec_key(prov, key, keyl, algel, algel_len);
  }
  if (OID_IS(oid, oidl, OID_ED25519)) {
    return ecx_key(prov, key, keyl, "ED25519", 32);
  }
  if (OID_IS(oid, oidl, OID_X25519)) {
    return ecx_key(prov, key, keyl, "X25519", 32);
  }
  if (OID_IS(oid, oidl, OID_ED448)) {
    return ecx_key(prov, key, keyl, "ED448", 57);
  }
  if (OID_IS(oid, oidl, OID_X448)) {
    return ecx_key(prov, key, keyl, "X448", 56);
  }
  SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, "the key file holds a key type secmem does not support");
  return NULL;
}

/* ---- classification, without opening anything ------------------------------------- */

static const unsigned char OID_SM2[] = {0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d};

/* An EC key's curve, from the AlgorithmIdentifier's parameters or the
 * ECPrivateKey's [0]: 0 when it is SM2 (a key type of its own to OpenSSL). */
static int ec_curve_ok(const unsigned char *params, size_t params_len) {
  struct der d = {params, params + params_len};
  const unsigned char *oid;
  size_t oidl;
  if (der_peek(&d) == TAG_OID && der_expect(&d, TAG_OID, &oid, &oidl)) {
    return !OID_IS(oid, oidl, OID_SM2);
  }
  return 1; /* explicit parameters: an EC key all the same */
}

/* ECPrivateKey { 1, OCTET STRING, [0] curve OPTIONAL, ... }. */
static int ec_type(const unsigned char *der, size_t len, const unsigned char *alg_params,
                   size_t alg_params_len) {
  struct der outer = {der, der + len}, d;
  const unsigned char *v, *priv, *params;
  size_t vl, privl, params_len;
  if (!der_enter(&outer, TAG_SEQ, &d)) {
    return 0;
  }
  if (!der_expect(&d, TAG_INT, &v, &vl) || vl != 1 || v[0] != 1 ||
      !der_expect(&d, TAG_OCTSTR, &priv, &privl)) {
    return 0;
  }
  if (alg_params != NULL && !ec_curve_ok(alg_params, alg_params_len)) {
    return 0;
  }
  if (der_peek(&d) == TAG_CTX0 && der_expect(&d, TAG_CTX0, &params, &params_len) &&
      !ec_curve_ok(params, params_len)) {
    return 0;
  }
  return 1;
}

/* RSAPrivateKey { version 0 or 1, n, e, d, ... }: at least nine INTEGERs
 * (an RSAPublicKey starts with n instead). Multi-prime keys count as RSA
 * here so that loading them fails with a clear error later. */
static int rsa_type(const unsigned char *der, size_t len) {
  struct der outer = {der, der + len}, d;
  const unsigned char *v;
  size_t vl;
  if (!der_enter(&outer, TAG_SEQ, &d)) {
    return 0;
  }
  if (!der_expect(&d, TAG_INT, &v, &vl) || vl != 1 || v[0] > 1) {
    return 0;
  }
  for (int i = 0; i < 8; i++) {
    if (!der_expect(&d, TAG_INT, &v, &vl)) {
      return 0;
    }
  }
  return 1;
}

int smprov_der_type(const unsigned char *der, size_t len, enum smprov_der_kind kind,
                    enum smprov_type *type) {
  if (kind == SMPROV_DER_RSA) {
    *type = SMPROV_RSA;
    return rsa_type(der, len);
  }
  if (kind == SMPROV_DER_EC) {
    *type = SMPROV_EC;
    return ec_type(der, len, NULL, 0);
  }
  struct der outer = {der, der + len}, d, a;
  const unsigned char *v, *oid, *key;
  size_t vl, oidl, keyl;
  if (!der_enter(&outer, TAG_SEQ, &d) || outer.p != outer.end) {
    return 0;
  }
  if (!der_expect(&d, TAG_INT, &v, &vl) || vl != 1 || v[0] > 1 || !der_enter(&d, TAG_SEQ, &a) ||
      !der_expect(&d, TAG_OCTSTR, &key, &keyl)) {
    return 0;
  }
  if (!der_expect(&a, TAG_OID, &oid, &oidl)) {
    return 0;
  }
  static const struct {
    const unsigned char *oid;
    size_t len;
    enum smprov_type type;
  } algs[] = {{OID_RSA, sizeof(OID_RSA), SMPROV_RSA},
              {OID_RSA_PSS, sizeof(OID_RSA_PSS), SMPROV_RSA_PSS},
              {OID_EC, sizeof(OID_EC), SMPROV_EC},
              {OID_ED25519, sizeof(OID_ED25519), SMPROV_ED25519},
              {OID_X25519, sizeof(OID_X25519), SMPROV_X25519},
              {OID_ED448, sizeof(OID_ED448), SMPROV_ED448},
              {OID_X448, sizeof(OID_X448), SMPROV_X448}};
  for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
    if (oidl == algs[i].len && memcmp(oid, algs[i].oid, oidl) == 0) {
      *type = algs[i].type;
      return algs[i].type != SMPROV_EC ||
             ec_type(key, keyl, a.p, (size_t)(a.end - a.p));
    }
  }
  return 0;
}

struct smprov_key *smprov_der_to_key(struct smprov_ctx *prov, const unsigned char *der, size_t len,
                                     enum smprov_der_kind kind) {
  static const unsigned char rsa_alg[] = {TAG_SEQ, 13, TAG_OID, 9, 0x2a, 0x86, 0x48, 0x86,
                                          0xf7,    0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
  struct smprov_key *k = NULL;
  unsigned long mark_err = ERR_peek_last_error();
  switch (kind) {
  case SMPROV_DER_PKCS8:
    k = pkcs8_key(prov, der, len);
    break;
  case SMPROV_DER_RSA:
    k = rsa_key(prov, der, len, rsa_alg, sizeof(rsa_alg), "RSA");
    break;
  case SMPROV_DER_EC:
    k = ec_key(prov, der, len, NULL, 0);
    break;
  case SMPROV_DER_ANY:
    k = pkcs8_key(prov, der, len);
    if (k == NULL) {
      k = rsa_key(prov, der, len, rsa_alg, sizeof(rsa_alg), "RSA");
    }
    if (k == NULL) {
      k = ec_key(prov, der, len, NULL, 0);
    }
    break;
  }
  if (k == NULL && ERR_peek_last_error() == mark_err) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "the private key is not valid DER of a supported structure");
  }
  return k;
}
