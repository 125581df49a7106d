/*
 * unseal.c - owns the one place a private key is ever in the clear: sealing
 * it on import or generation, and opening it for the instant of a sign,
 * decrypt or derive. Every path runs the same way:
 *
 *   enclave --open_into--> this thread's guarded scratch (secmem_scratch)
 *           --> libsodium call, or a short-lived OpenSSL key of the private
 *               library context (built without anything slow)
 *           --> result --> free the OpenSSL key (it clears itself), wipe the
 *               scratch, scrub the stack and vector registers
 *
 * and every error path does the same wipes. The signature, asym_cipher and
 * keyexch files never touch plaintext key material: they call in here.
 *
 * Sealed formats: Ed25519 libsodium's 64-byte secret key (seed || public);
 * X25519 / Ed448 / X448 the raw private key; EC the private scalar, big-
 * endian, as long as the group order; RSA d, p, q, dp, dq, qinv, each as a
 * 4-byte big-endian length and its big-endian bytes.
 *
 * Per-key precomputation kept between operations holds nothing secret: the
 * EC group and public point, and for RSA the modulus's Montgomery context
 * and the blinding pair (A = r^e, Ai = r^-1 mod n), squared after every
 * use and drawn afresh every 32 uses, as OpenSSL does. A fresh OpenSSL RSA
 * key would set up its own blinding (a constant-time inversion) on every
 * operation and halve throughput; ours runs with RSA_FLAG_NO_BLINDING and
 * is blinded here instead, never less.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* EC_KEY and RSA: the fast short-lived keys */

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <sodium.h>

#include "smprov.h"

#define BLINDING_REFRESH 32

struct smprov_precomp {
  /* EC */
  EC_GROUP *group;
  EC_POINT *pub_point;
  size_t scalar_len;
  /* RSA */
  BIGNUM *n, *e;
  BN_MONT_CTX *mont_n;
  BIGNUM *blind_a, *blind_ai;
  unsigned uses;
  RSA *pub_rsa; /* public only: what PSS encoding needs */
};

void smprov_precomp_free(struct smprov_precomp *pre) {
  if (pre == NULL) {
    return;
  }
  EC_POINT_free(pre->pub_point);
  EC_GROUP_free(pre->group);
  BN_free(pre->n);
  BN_free(pre->e);
  BN_MONT_CTX_free(pre->mont_n);
  BN_clear_free(pre->blind_a);
  BN_clear_free(pre->blind_ai);
  RSA_free(pre->pub_rsa);
  free(pre);
}

/* ---- helpers --------------------------------------------------------------- */

static size_t ecx_priv_len(enum smprov_type t) {
  switch (t) {
  case SMPROV_X25519:
    return 32;
  case SMPROV_ED25519:
    return 64; /* libsodium's secret key: seed || public key */
  case SMPROV_ED448:
    return 57;
  case SMPROV_X448:
    return 56;
  default:
    return 0;
  }
}

/* Open k's private part into this thread's scratch. The caller wipes it
 * (secmem_scratch_wipe) on every path. NULL with an error queued. */
static unsigned char *open_private(const struct smprov_key *k, size_t *len) {
  if (k->priv == NULL) {
    SMPROV_ERR(SMPROV_R_NO_PRIVATE_KEY, "the %s key has no private part", smprov_type_name(k->type));
    return NULL;
  }
  size_t n = secmem_enclave_len(k->priv);
  unsigned char *s = secmem_scratch(n + 4096); /* room for working copies after it */
  if (s == NULL) {
    SMPROV_ERR_SECMEM("scratch for a private key");
    return NULL;
  }
  if (secmem_enclave_open_into(k->priv, s, n) != 0) {
    SMPROV_ERR_SECMEM("opening the sealed private key");
    return NULL;
  }
  atomic_fetch_add(&smprov_private_ops, 1);
  *len = n;
  return s;
}

/* Every exit of an operation that opened the key. */
static void close_private(void) {
  secmem_scratch_wipe();
  secmem_scrub();
}

static int seal_into(struct smprov_key *k, unsigned char *plain, size_t len) {
  secmem_enclave *e = secmem_enclave_new(plain, len); /* wipes plain */
  if (e == NULL) {
    SMPROV_ERR_SECMEM("sealing a private key");
    secmem_wipe(plain, len);
    return 0;
  }
  secmem_enclave_free(k->priv);
  k->priv = e;
  return 1;
}

int smprov_set_public_from_pkey(struct smprov_key *k, EVP_PKEY *full) {
  OSSL_PARAM *params = NULL;
  EVP_PKEY *pub = NULL;
  EVP_PKEY_CTX *ctx = NULL;
  int ok = EVP_PKEY_todata(full, EVP_PKEY_PUBLIC_KEY, &params) == 1 &&
           (ctx = EVP_PKEY_CTX_new_from_name(k->prov->priv, smprov_type_name(k->type), NULL)) !=
               NULL &&
           EVP_PKEY_fromdata_init(ctx) == 1 &&
           EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params) == 1;
  OSSL_PARAM_free(params);
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "cannot take the public part of the %s key",
               smprov_type_name(k->type));
    EVP_PKEY_free(pub);
    return 0;
  }
  EVP_PKEY_free(k->pub);
  k->pub = pub;
  return 1;
}

/* Append BIGNUM b to *w as a 4-byte big-endian length and its bytes. */
static unsigned char *put_bn(unsigned char *w, const BIGNUM *b) {
  size_t n = (size_t)BN_num_bytes(b);
  w[0] = (unsigned char)(n >> 24);
  w[1] = (unsigned char)(n >> 16);
  w[2] = (unsigned char)(n >> 8);
  w[3] = (unsigned char)n;
  BN_bn2bin(b, w + 4);
  return w + 4 + n;
}

/* Read the next length-prefixed number of the RSA format (bounds-checked). */
static BIGNUM *get_bn(const unsigned char **r, const unsigned char *end) {
  if (end - *r < 4) {
    return NULL;
  }
  size_t n = ((size_t)(*r)[0] << 24) | ((size_t)(*r)[1] << 16) | ((size_t)(*r)[2] << 8) | (*r)[3];
  *r += 4;
  if ((size_t)(end - *r) < n) {
    return NULL;
  }
  BIGNUM *b = BN_secure_new();
  if (b == NULL || BN_bin2bn(*r, (int)n, b) == NULL) {
    BN_clear_free(b);
    return NULL;
  }
  BN_set_flags(b, BN_FLG_CONSTTIME);
  *r += n;
  return b;
}

static const char *const rsa_priv_names[6] = {
    OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,  OSSL_PKEY_PARAM_RSA_FACTOR2,
    OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};

/* ---- sealing -------------------------------------------------------------- */

static int seal_rsa(struct smprov_key *k, EVP_PKEY *full) {
  BIGNUM *b[6] = {NULL};
  BIGNUM *extra = NULL;
  int ok = 0;
  if (EVP_PKEY_get_bn_param(full, OSSL_PKEY_PARAM_RSA_FACTOR3, &extra) == 1) {
    SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, "multi-prime RSA keys are not supported");
    goto done;
  }
  size_t total = 0;
  for (int i = 0; i < 6; i++) {
    if (EVP_PKEY_get_bn_param(full, rsa_priv_names[i], &b[i]) != 1) {
      SMPROV_ERR(SMPROV_R_BAD_KEY, "the RSA key lacks %s (only full CRT keys are supported)",
                 rsa_priv_names[i]);
      goto done;
    }
    total += 4 + (size_t)BN_num_bytes(b[i]);
  }
  unsigned char *s = secmem_scratch(total);
  if (s == NULL) {
    SMPROV_ERR_SECMEM("scratch for sealing");
    goto done;
  }
  unsigned char *w = s;
  for (int i = 0; i < 6; i++) {
    w = put_bn(w, b[i]);
  }
  ok = seal_into(k, s, total);
done:
  for (int i = 0; i < 6; i++) {
    BN_clear_free(b[i]);
  }
  BN_clear_free(extra);
  return ok;
}

static int seal_ec(struct smprov_key *k, EVP_PKEY *full) {
  BIGNUM *priv = NULL;
  int bits = EVP_PKEY_get_bits(full);
  size_t len = (size_t)(bits + 7) / 8;
  if (EVP_PKEY_get_bn_param(full, OSSL_PKEY_PARAM_PRIV_KEY, &priv) != 1 || bits <= 0) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the EC key has no private scalar");
    return 0;
  }
  unsigned char *s = secmem_scratch(len);
  int ok = s != NULL && BN_bn2binpad(priv, s, (int)len) == (int)len;
  BN_clear_free(priv);
  if (!ok) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the EC private scalar does not fit its group");
    secmem_scratch_wipe();
    return 0;
  }
  return seal_into(k, s, len);
}

static int seal_ecx(struct smprov_key *k, EVP_PKEY *full) {
  size_t want = k->type == SMPROV_ED25519 ? 32 : ecx_priv_len(k->type);
  unsigned char *s = secmem_scratch(256);
  size_t len = 0;
  /* Not EVP_PKEY_get_raw_private_key: in OpenSSL 3.0 that exports the whole
   * key into a parameter block it frees uncleansed. get_params writes the
   * key straight into our scratch. */
  if (s == NULL ||
      EVP_PKEY_get_octet_string_param(full, OSSL_PKEY_PARAM_PRIV_KEY, s, 64, &len) != 1 ||
      len != want) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the %s key has no %zu-byte private key",
               smprov_type_name(k->type), want);
    secmem_scratch_wipe();
    return 0;
  }
  if (k->type == SMPROV_ED25519) {
    /* libsodium signs with seed || public key; derive it from the seed and
     * check it against OpenSSL's public key. */
    unsigned char pk[32], opk[32];
    size_t plen = sizeof(opk);
    crypto_sign_seed_keypair(pk, s + 64, s);
    secmem_scrub();
    if (EVP_PKEY_get_raw_public_key(full, opk, &plen) != 1 || plen != 32 ||
        sodium_memcmp(pk, opk, 32) != 0) {
      SMPROV_ERR(SMPROV_R_BAD_KEY, "the Ed25519 private and public keys do not match");
      secmem_scratch_wipe();
      return 0;
    }
    memcpy(s, s + 64, 64);
    secmem_wipe(s + 64, 64);
    len = 64;
  }
  return seal_into(k, s, len);
}

int smprov_seal_from_pkey(struct smprov_key *k, EVP_PKEY *full) {
  int ok;
  switch (k->type) {
  case SMPROV_RSA:
  case SMPROV_RSA_PSS:
    ok = seal_rsa(k, full);
    break;
  case SMPROV_EC:
    ok = seal_ec(k, full);
    break;
  default:
    ok = seal_ecx(k, full);
    break;
  }
  secmem_scratch_wipe();
  secmem_scrub();
  return ok && smprov_set_public_from_pkey(k, full);
}

size_t smprov_ec_public_from_scalar(struct smprov_ctx *prov, int nid, const unsigned char *scalar,
                                    size_t len, unsigned char *out, size_t out_len) {
  ERR_set_mark();
  EC_GROUP *group = EC_GROUP_new_by_curve_name_ex(prov->priv, NULL, nid);
  BN_CTX *bctx = BN_CTX_secure_new();
  BIGNUM *d = BN_secure_new();
  EC_POINT *pub = group != NULL ? EC_POINT_new(group) : NULL;
  size_t n = 0;
  /* A scalar outside [1, order) is no key: refuse it rather than multiply. */
  if (pub != NULL && bctx != NULL && d != NULL && BN_bin2bn(scalar, (int)len, d) != NULL &&
      !BN_is_zero(d) && BN_cmp(d, EC_GROUP_get0_order(group)) < 0) {
    BN_set_flags(d, BN_FLG_CONSTTIME);
    if (EC_POINT_mul(group, pub, d, NULL, NULL, bctx) == 1) {
      n = EC_POINT_point2oct(group, pub, POINT_CONVERSION_UNCOMPRESSED, out, out_len, bctx);
    }
  }
  BN_clear_free(d);
  BN_CTX_free(bctx); /* clears its numbers */
  EC_POINT_free(pub);
  EC_GROUP_free(group);
  secmem_scrub();
  ERR_pop_to_mark(); /* OpenSSL's own reasons: ours says it better */
  if (n == 0) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the public key of an EC private key saved without it could "
                                 "not be computed (the private key is not a valid scalar of its curve)");
  }
  return n;
}

/* ---- a full OpenSSL key, for the few operations that need one ------------ */

/* Build a full key of the private library context from the opened private
 * part (in scratch at s, len bytes) and k's public part. Parameters point
 * into scratch; the key frees (and clears) its copies. */
static EVP_PKEY *full_pkey(const struct smprov_key *k, unsigned char *s, size_t len) {
  OSSL_PARAM *pub = NULL;
  if (EVP_PKEY_todata(k->pub, EVP_PKEY_PUBLIC_KEY, &pub) != 1) {
    return NULL;
  }
  size_t npub = 0;
  while (pub[npub].key != NULL) {
    npub++;
  }
  OSSL_PARAM all[40];
  if (npub + 8 > sizeof(all) / sizeof(all[0])) {
    OSSL_PARAM_free(pub);
    return NULL;
  }
  memcpy(all, pub, npub * sizeof(OSSL_PARAM));
  size_t n = npub;
  unsigned char *work = s + len; /* scratch room after the sealed form */
  BIGNUM *bn = NULL;
  bool ok = true;
  if (k->type == SMPROV_RSA || k->type == SMPROV_RSA_PSS) {
    const unsigned char *r = s, *end = s + len;
    for (int i = 0; i < 6 && ok; i++) {
      bn = get_bn(&r, end);
      int blen = bn != NULL ? BN_num_bytes(bn) : 0;
      ok = bn != NULL && BN_bn2nativepad(bn, work, blen) == blen;
      all[n++] = OSSL_PARAM_construct_BN(rsa_priv_names[i], work, (size_t)blen);
      work += blen;
      BN_clear_free(bn);
    }
  } else if (k->type == SMPROV_EC) {
    bn = BN_secure_new();
    ok = bn != NULL && BN_bin2bn(s, (int)len, bn) != NULL &&
         BN_bn2nativepad(bn, work, (int)len) == (int)len;
    all[n++] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, work, len);
    BN_clear_free(bn);
  } else {
    size_t plen = k->type == SMPROV_ED25519 ? 32 : len;
    all[n++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, s, plen);
  }
  all[n] = OSSL_PARAM_construct_end();
  EVP_PKEY *full = NULL;
  EVP_PKEY_CTX *ctx =
      ok ? EVP_PKEY_CTX_new_from_name(k->prov->priv, smprov_type_name(k->type), NULL) : NULL;
  if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &full, EVP_PKEY_KEYPAIR, all) != 1) {
    full = NULL;
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(pub);
  return full;
}

int smprov_unseal_export_private(const struct smprov_key *k, OSSL_CALLBACK *cb, void *cbarg) {
  if (!k->prov->export_private) {
    SMPROV_ERR(SMPROV_R_EXPORT_REFUSED,
               "the %s key is sealed and export_private is off in the secmem provider's "
               "configuration",
               smprov_type_name(k->type));
    return 0;
  }
  size_t len;
  unsigned char *s = open_private(k, &len);
  if (s == NULL) {
    return 0;
  }
  EVP_PKEY *full = full_pkey(k, s, len);
  OSSL_PARAM *params = NULL;
  int ok = full != NULL && EVP_PKEY_todata(full, EVP_PKEY_KEYPAIR, &params) == 1 && cb(params, cbarg);
  if (params != NULL) {
    /* 3.0 has no OSSL_PARAM_clear_free: clear what it points at, then free. */
    for (OSSL_PARAM *p = params; p->key != NULL; p++) {
      if (p->data != NULL) {
        OPENSSL_cleanse(p->data, p->data_size);
      }
    }
    OSSL_PARAM_free(params);
  }
  EVP_PKEY_free(full);
  close_private();
  if (!ok) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "exporting the %s key failed", smprov_type_name(k->type));
  }
  return ok;
}

/* ---- EdDSA and X25519/X448 --------------------------------------------------- */

int smprov_unseal_eddsa_sign(const struct smprov_key *k, unsigned char *sig, size_t *siglen,
                             const unsigned char *msg, size_t msglen) {
  size_t len;
  unsigned char *s = open_private(k, &len);
  if (s == NULL) {
    return 0;
  }
  int ok = 0;
  if (k->type == SMPROV_ED25519 && len == 64) {
    unsigned long long sl = 0;
    ok = crypto_sign_detached(sig, &sl, msg, msglen, s) == 0;
    *siglen = (size_t)sl;
  } else if (k->type == SMPROV_ED448 && len == 57) {
    EVP_PKEY *full = full_pkey(k, s, len);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t sl = 114;
    ok = full != NULL && md != NULL &&
         EVP_DigestSignInit_ex(md, NULL, NULL, k->prov->priv, NULL, full, NULL) == 1 &&
         EVP_DigestSign(md, sig, &sl, msg, msglen) == 1;
    *siglen = sl;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(full);
  }
  close_private();
  if (!ok) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "%s signing failed", smprov_type_name(k->type));
  }
  return ok;
}

int smprov_unseal_ecx_derive(const struct smprov_key *k, const unsigned char *peer,
                             size_t peer_len, unsigned char *out, size_t *outlen) {
  size_t want = ecx_priv_len(k->type);
  if (peer_len != want) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the peer's %s public key has %zu bytes, not %zu",
               smprov_type_name(k->type), peer_len, want);
    return 0;
  }
  size_t len;
  unsigned char *s = open_private(k, &len);
  if (s == NULL) {
    return 0;
  }
  int ok = 0;
  if (k->type == SMPROV_X25519) {
    /* libsodium refuses an all-zero result (a small-order peer), as OpenSSL does. */
    ok = crypto_scalarmult(out, s, peer) == 0;
    *outlen = 32;
  } else {
    EVP_PKEY *full = full_pkey(k, s, len);
    EVP_PKEY *pp = EVP_PKEY_new_raw_public_key_ex(k->prov->priv, "X448", NULL, peer, peer_len);
    EVP_PKEY_CTX *ctx = full != NULL ? EVP_PKEY_CTX_new_from_pkey(k->prov->priv, full, NULL) : NULL;
    size_t ol = 56;
    ok = ctx != NULL && pp != NULL && EVP_PKEY_derive_init(ctx) == 1 &&
         EVP_PKEY_derive_set_peer(ctx, pp) == 1 && EVP_PKEY_derive(ctx, out, &ol) == 1;
    *outlen = ol;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pp);
    EVP_PKEY_free(full);
  }
  close_private();
  if (!ok) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "%s key exchange failed", smprov_type_name(k->type));
  }
  return ok;
}

/* ---- EC ------------------------------------------------------------------------ */

/* The group and public point, computed once per key (under pre_lock). */
static struct smprov_precomp *ec_precomp(struct smprov_key *k) {
  pthread_mutex_lock(&k->pre_lock);
  if (k->pre == NULL) {
    struct smprov_precomp *pre = calloc(1, sizeof(*pre));
    char gname[64];
    unsigned char pub[256];
    size_t glen = 0, plen = 0;
    int nid;
    if (pre != NULL &&
        EVP_PKEY_get_utf8_string_param(k->pub, OSSL_PKEY_PARAM_GROUP_NAME, gname, sizeof(gname),
                                       &glen) == 1 &&
        (nid = OBJ_sn2nid(gname)) != NID_undef &&
        (pre->group = EC_GROUP_new_by_curve_name_ex(k->prov->priv, NULL, nid)) != NULL &&
        EVP_PKEY_get_octet_string_param(k->pub, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &plen) ==
            1 &&
        (pre->pub_point = EC_POINT_new(pre->group)) != NULL &&
        EC_POINT_oct2point(pre->group, pre->pub_point, pub, plen, NULL) == 1) {
      pre->scalar_len = (size_t)(EC_GROUP_order_bits(pre->group) + 7) / 8;
      k->pre = pre;
    } else {
      smprov_precomp_free(pre);
    }
  }
  struct smprov_precomp *pre = k->pre;
  pthread_mutex_unlock(&k->pre_lock);
  if (pre == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the EC key's group or public point is not usable");
  }
  return pre;
}

/* A short-lived EC_KEY on the cached group holding the opened scalar. */
static EC_KEY *ec_key_from(const struct smprov_key *k, const struct smprov_precomp *pre,
                           const unsigned char *s, size_t len) {
  EC_KEY *ek = EC_KEY_new_ex(k->prov->priv, NULL);
  BIGNUM *d = BN_secure_new();
  bool ok = ek != NULL && d != NULL && len == pre->scalar_len && EC_KEY_set_group(ek, pre->group) == 1 &&
            BN_bin2bn(s, (int)len, d) != NULL && EC_KEY_set_private_key(ek, d) == 1 &&
            EC_KEY_set_public_key(ek, pre->pub_point) == 1;
  BN_clear_free(d);
  if (!ok) {
    EC_KEY_free(ek);
    return NULL;
  }
  return ek;
}

int smprov_unseal_ecdsa_sign(const struct smprov_key *k, unsigned char *sig, size_t *siglen,
                             size_t sigsize, const unsigned char *dgst, size_t dlen) {
  struct smprov_precomp *pre = ec_precomp((struct smprov_key *)k);
  if (pre == NULL) {
    return 0;
  }
  size_t len;
  unsigned char *s = open_private(k, &len);
  if (s == NULL) {
    return 0;
  }
  EC_KEY *ek = ec_key_from(k, pre, s, len);
  unsigned int sl = 0;
  int ok = ek != NULL && (size_t)ECDSA_size(ek) <= sigsize &&
           ECDSA_sign(0, dgst, (int)dlen, sig, &sl, ek) == 1;
  *siglen = sl;
  EC_KEY_free(ek); /* clears the scalar */
  close_private();
  if (!ok) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "ECDSA signing failed");
  }
  return ok;
}

int smprov_unseal_ecdh(const struct smprov_key *k, EVP_PKEY *peer, int cofactor,
                       unsigned char *out, size_t *outlen, size_t outsize) {
  struct smprov_precomp *pre = ec_precomp((struct smprov_key *)k);
  if (pre == NULL) {
    return 0;
  }
  unsigned char pub[256];
  size_t plen = 0;
  EC_POINT *pp = EC_POINT_new(pre->group);
  if (pp == NULL ||
      EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, sizeof(pub),
                                      &plen) != 1 ||
      EC_POINT_oct2point(pre->group, pp, pub, plen, NULL) != 1) {
    EC_POINT_free(pp);
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the peer's public key is not a point of this key's group");
    return 0;
  }
  size_t field = (size_t)(EC_GROUP_get_degree(pre->group) + 7) / 8;
  if (outsize < field) {
    EC_POINT_free(pp);
    SMPROV_ERR(SMPROV_R_BUFFER_TOO_SMALL, "ECDH needs %zu bytes of output", field);
    return 0;
  }
  size_t len;
  unsigned char *s = open_private(k, &len);
  if (s == NULL) {
    EC_POINT_free(pp);
    return 0;
  }
  EC_KEY *ek = ec_key_from(k, pre, s, len);
  if (ek != NULL && cofactor) {
    EC_KEY_set_flags(ek, EC_FLAG_COFACTOR_ECDH);
  }
  int n = ek != NULL ? ECDH_compute_key(out, field, pp, ek, NULL) : -1;
  *outlen = n > 0 ? (size_t)n : 0;
  EC_KEY_free(ek);
  EC_POINT_free(pp);
  close_private();
  if (n <= 0) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "ECDH failed");
    return 0;
  }
  return 1;
}

/* ---- RSA ----------------------------------------------------------------------- */

/* Draw a fresh blinding pair (pre_lock held): r random in [1, n), A = r^e,
 * Ai = r^-1 mod n, the inversion in constant time. */
static int blinding_refresh(struct smprov_precomp *pre, BN_CTX *bctx) {
  BIGNUM *r = BN_secure_new();
  BIGNUM *a = BN_secure_new(), *ai = BN_secure_new();
  int ok = r != NULL && a != NULL && ai != NULL;
  for (int tries = 0; ok && tries < 32; tries++) {
    ok = BN_priv_rand_range_ex(r, pre->n, 0, bctx) == 1;
    if (ok && !BN_is_zero(r)) {
      BN_set_flags(r, BN_FLG_CONSTTIME);
      if (BN_mod_inverse(ai, r, pre->n, bctx) != NULL) {
        break;
      }
      ERR_clear_error(); /* r shares a factor with n: astronomically unlikely; draw again */
    }
  }
  /* Kept in Montgomery form: squaring stays in it, and a Montgomery product
   * with a number in normal form gives a normal-form result (x * A mod n). */
  ok = ok && BN_mod_exp_mont(a, r, pre->e, pre->n, bctx, pre->mont_n) == 1 && !BN_is_zero(ai) &&
       BN_to_montgomery(a, a, pre->mont_n, bctx) == 1 &&
       BN_to_montgomery(ai, ai, pre->mont_n, bctx) == 1;
  BN_clear_free(r);
  if (!ok) {
    BN_clear_free(a);
    BN_clear_free(ai);
    return 0;
  }
  BN_clear_free(pre->blind_a);
  BN_clear_free(pre->blind_ai);
  pre->blind_a = a;
  pre->blind_ai = ai;
  pre->uses = 0;
  return 1;
}

static struct smprov_precomp *rsa_precomp(struct smprov_key *k, BN_CTX *bctx) {
  pthread_mutex_lock(&k->pre_lock);
  if (k->pre == NULL) {
    struct smprov_precomp *pre = calloc(1, sizeof(*pre));
    if (pre != NULL && EVP_PKEY_get_bn_param(k->pub, OSSL_PKEY_PARAM_RSA_N, &pre->n) == 1 &&
        EVP_PKEY_get_bn_param(k->pub, OSSL_PKEY_PARAM_RSA_E, &pre->e) == 1 &&
        (pre->mont_n = BN_MONT_CTX_new()) != NULL &&
        BN_MONT_CTX_set(pre->mont_n, pre->n, bctx) == 1 && (pre->pub_rsa = RSA_new()) != NULL) {
      BIGNUM *n = BN_dup(pre->n), *e = BN_dup(pre->e);
      if (n == NULL || e == NULL || RSA_set0_key(pre->pub_rsa, n, e, NULL) != 1) {
        BN_free(n);
        BN_free(e);
        smprov_precomp_free(pre);
        pre = NULL;
      }
    }
    if (pre != NULL && pre->pub_rsa != NULL && RSA_get0_n(pre->pub_rsa) != NULL) {
      k->pre = pre;
    } else {
      smprov_precomp_free(pre);
    }
  }
  struct smprov_precomp *pre = k->pre;
  pthread_mutex_unlock(&k->pre_lock);
  if (pre == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the RSA key's modulus is not usable");
  }
  return pre;
}

/* Take this operation's blinding pair and advance the key's (squaring, or
 * a fresh draw every BLINDING_REFRESH uses). */
static int blinding_take(struct smprov_key *k, struct smprov_precomp *pre, BN_CTX *bctx,
                         BIGNUM *a, BIGNUM *ai) {
  pthread_mutex_lock(&k->pre_lock);
  int ok = 1;
  if (pre->blind_a == NULL || pre->uses >= BLINDING_REFRESH) {
    ok = blinding_refresh(pre, bctx);
  }
  ok = ok && BN_copy(a, pre->blind_a) != NULL && BN_copy(ai, pre->blind_ai) != NULL &&
       BN_mod_mul_montgomery(pre->blind_a, pre->blind_a, pre->blind_a, pre->mont_n, bctx) == 1 &&
       BN_mod_mul_montgomery(pre->blind_ai, pre->blind_ai, pre->blind_ai, pre->mont_n, bctx) == 1;
  pre->uses++;
  pthread_mutex_unlock(&k->pre_lock);
  return ok;
}

int smprov_unseal_rsa_private(const struct smprov_key *ck, unsigned char *out,
                              const unsigned char *in, size_t len) {
  struct smprov_key *k = (struct smprov_key *)ck;
  BN_CTX *bctx = BN_CTX_secure_new_ex(k->prov->priv);
  struct smprov_precomp *pre = bctx != NULL ? rsa_precomp(k, bctx) : NULL;
  if (pre == NULL) {
    BN_CTX_free(bctx);
    return 0;
  }
  if (len != (size_t)BN_num_bytes(pre->n)) {
    BN_CTX_free(bctx);
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "RSA input of %zu bytes for a %d-byte modulus", len,
               BN_num_bytes(pre->n));
    return 0;
  }
  BIGNUM *x = BN_new(), *a = BN_secure_new(), *ai = BN_secure_new();
  RSA *rsa = NULL;
  BIGNUM *parts[6] = {NULL};
  size_t slen = 0;
  unsigned char *s = NULL;
  int ok = x != NULL && a != NULL && ai != NULL && BN_bin2bn(in, (int)len, x) != NULL &&
           BN_cmp(x, pre->n) < 0 && blinding_take(k, pre, bctx, a, ai) == 1;
  /* Blind: x' = x * A mod n (A in Montgomery form, x in normal form). */
  ok = ok && BN_mod_mul_montgomery(x, x, a, pre->mont_n, bctx) == 1;
  unsigned char *blinded = NULL;
  if (ok) {
    s = open_private(k, &slen);
    ok = s != NULL;
  }
  if (ok) {
    blinded = s + slen; /* working room after the sealed form */
    const unsigned char *r = s, *end = s + slen;
    for (int i = 0; i < 6 && ok; i++) {
      ok = (parts[i] = get_bn(&r, end)) != NULL;
    }
    ok = ok && BN_bn2binpad(x, blinded, (int)len) == (int)len;
  }
  if (ok) {
    rsa = RSA_new();
    BIGNUM *n = BN_dup(pre->n), *e = BN_dup(pre->e);
    ok = rsa != NULL && n != NULL && e != NULL && RSA_set0_key(rsa, n, e, parts[0]) == 1;
    if (!ok) {
      BN_free(n);
      BN_free(e);
    } else {
      parts[0] = NULL;
      ok = RSA_set0_factors(rsa, parts[1], parts[2]) == 1;
      if (ok) {
        parts[1] = parts[2] = NULL;
        ok = RSA_set0_crt_params(rsa, parts[3], parts[4], parts[5]) == 1;
        if (ok) {
          parts[3] = parts[4] = parts[5] = NULL;
        }
      }
    }
  }
  if (ok) {
    /* Blinded here; OpenSSL would pay a fresh constant-time inversion per key. */
    RSA_set_flags(rsa, RSA_FLAG_NO_BLINDING);
    ok = RSA_private_encrypt((int)len, blinded, blinded, rsa, RSA_NO_PADDING) == (int)len;
  }
  /* Unblind: y = y' * Ai mod n. */
  ok = ok && BN_bin2bn(blinded, (int)len, x) != NULL &&
       BN_mod_mul_montgomery(x, x, ai, pre->mont_n, bctx) == 1 &&
       BN_bn2binpad(x, out, (int)len) == (int)len;
  RSA_free(rsa); /* clears d, p, q and the CRT values */
  for (int i = 0; i < 6; i++) {
    BN_clear_free(parts[i]);
  }
  BN_clear_free(x);
  BN_clear_free(a);
  BN_clear_free(ai);
  BN_CTX_free(bctx);
  if (s != NULL) {
    close_private();
  }
  if (!ok) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "RSA private key operation failed");
  }
  return ok;
}

/* ---- copies and checks ------------------------------------------------------------ */

int smprov_unseal_dup_private(const struct smprov_key *src, struct smprov_key *dst) {
  size_t len;
  unsigned char *s = open_private(src, &len);
  if (s == NULL) {
    return 0;
  }
  int ok = seal_into(dst, s, len); /* seals a copy, wipes s */
  close_private();
  return ok;
}

/*
 * Whether the private part works with the public part: one private
 * operation through the same paths every operation takes, checked with the
 * public key alone. (OpenSSL 3.0's own pairwise check, on a rebuilt key,
 * leaves RSA CRT limbs behind in freed memory.)
 */
static int check_rsa(const struct smprov_key *k) {
  BIGNUM *n = NULL, *e = NULL, *s = NULL, *r = NULL;
  BN_CTX *bctx = BN_CTX_new_ex(k->prov->priv);
  size_t len = (size_t)EVP_PKEY_get_size(k->pub);
  unsigned char *m = malloc(len), *sig = malloc(len), *back = malloc(len);
  int ok = bctx != NULL && m != NULL && sig != NULL && back != NULL && len > 1 &&
           EVP_PKEY_get_bn_param(k->pub, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
           EVP_PKEY_get_bn_param(k->pub, OSSL_PKEY_PARAM_RSA_E, &e) == 1;
  if (ok) {
    m[0] = 0; /* below the modulus */
    for (size_t i = 1; i < len; i++) {
      m[i] = (unsigned char)(i * 37 + 11);
    }
    ok = smprov_unseal_rsa_private(k, sig, m, len) && (s = BN_bin2bn(sig, (int)len, NULL)) != NULL &&
         (r = BN_new()) != NULL && BN_mod_exp(r, s, e, n, bctx) == 1 &&
         BN_bn2binpad(r, back, (int)len) == (int)len && memcmp(back, m, len) == 0;
  }
  BN_free(n);
  BN_free(e);
  BN_free(s);
  BN_free(r);
  BN_CTX_free(bctx);
  free(m);
  free(sig);
  free(back);
  return ok;
}

static int check_signature(const struct smprov_key *k, const unsigned char *sig, size_t siglen,
                           const unsigned char *msg, size_t msglen, bool digest) {
  int ok;
  if (digest) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(k->prov->priv, k->pub, NULL);
    ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
         EVP_PKEY_verify(ctx, sig, siglen, msg, msglen) == 1;
    EVP_PKEY_CTX_free(ctx);
  } else {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ok = md != NULL &&
         EVP_DigestVerifyInit_ex(md, NULL, NULL, k->prov->priv, NULL, k->pub, NULL) == 1 &&
         EVP_DigestVerify(md, sig, siglen, msg, msglen) == 1;
    EVP_MD_CTX_free(md);
  }
  return ok;
}

int smprov_unseal_check_private(const struct smprov_key *k) {
  static const unsigned char msg[32] = "secmem: private matches public.";
  unsigned char sig[256], out[64], pub[64];
  size_t siglen = sizeof(sig), outlen = sizeof(out), publen = sizeof(pub);
  int ok = 0;
  unsigned long mark = ERR_peek_last_error();
  switch (k->type) {
  case SMPROV_RSA:
  case SMPROV_RSA_PSS:
    ok = check_rsa(k);
    break;
  case SMPROV_EC:
    ok = smprov_unseal_ecdsa_sign(k, sig, &siglen, sizeof(sig), msg, sizeof(msg)) &&
         check_signature(k, sig, siglen, msg, sizeof(msg), true);
    break;
  case SMPROV_ED25519:
  case SMPROV_ED448:
    ok = smprov_unseal_eddsa_sign(k, sig, &siglen, msg, sizeof(msg)) &&
         check_signature(k, sig, siglen, msg, sizeof(msg), false);
    break;
  case SMPROV_X25519:
  case SMPROV_X448: {
    /* The base point's u-coordinate: the result is the public key. */
    unsigned char base[56] = {k->type == SMPROV_X25519 ? 9 : 5};
    size_t blen = ecx_priv_len(k->type);
    ok = smprov_unseal_ecx_derive(k, base, blen, out, &outlen) &&
         EVP_PKEY_get_raw_public_key(k->pub, pub, &publen) == 1 && publen == outlen &&
         sodium_memcmp(pub, out, outlen) == 0;
    break;
  }
  }
  secmem_wipe(out, sizeof(out));
  if (!ok) {
    if (ERR_peek_last_error() == mark) {
      SMPROV_ERR(SMPROV_R_BAD_KEY,
                 "the %s private key is invalid or does not match its public key",
                 smprov_type_name(k->type));
    }
  }
  return ok;
}

int smprov_unseal_opens(const struct smprov_key *k) {
  if (k->priv == NULL) {
    return 0;
  }
  size_t n = secmem_enclave_len(k->priv);
  unsigned char *s = secmem_scratch(n);
  int ok = s != NULL && secmem_enclave_open_into(k->priv, s, n) == 0;
  close_private();
  return ok;
}

int smprov_rsa_pss_encode(const struct smprov_key *ck, unsigned char *em, const unsigned char *mhash,
                          const EVP_MD *md, const EVP_MD *mgf1, int saltlen) {
  struct smprov_key *k = (struct smprov_key *)ck;
  BN_CTX *bctx = BN_CTX_new_ex(k->prov->priv);
  struct smprov_precomp *pre = bctx != NULL ? rsa_precomp(k, bctx) : NULL;
  BN_CTX_free(bctx);
  /* Public data only: the modulus fixes the encoding's length. */
  return pre != NULL && RSA_padding_add_PKCS1_PSS_mgf1(pre->pub_rsa, em, mhash, md, mgf1, saltlen) == 1;
}
