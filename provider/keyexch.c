/*
 * keyexch.c - owns key exchange: ECDH on the prime curves (with the
 * cofactor-mode parameter) and X25519 / X448. The private step is a call
 * into unseal.c. The peer is a public key of our own key management
 * (OpenSSL imports a foreign peer's public part into it first).
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "smprov.h"

struct exchctx {
  struct smprov_ctx *prov;
  bool ecdh;
  struct smprov_key *key;
  struct smprov_key *peer;
  int cofactor; /* -1: the key's default, 0 off, 1 on */
};

static OSSL_FUNC_keyexch_newctx_fn ecdh_newctx, ecx_newctx;
static OSSL_FUNC_keyexch_init_fn exch_init;
static OSSL_FUNC_keyexch_set_peer_fn exch_set_peer;
static OSSL_FUNC_keyexch_derive_fn exch_derive;
static OSSL_FUNC_keyexch_freectx_fn exch_freectx;
static OSSL_FUNC_keyexch_dupctx_fn exch_dupctx;
static OSSL_FUNC_keyexch_set_ctx_params_fn exch_set_ctx_params;
static OSSL_FUNC_keyexch_settable_ctx_params_fn exch_settable_ctx_params;
static OSSL_FUNC_keyexch_get_ctx_params_fn exch_get_ctx_params;
static OSSL_FUNC_keyexch_gettable_ctx_params_fn exch_gettable_ctx_params;

static struct exchctx *newctx(void *provctx, bool ecdh) {
  struct exchctx *c = calloc(1, sizeof(*c));
  if (c != NULL) {
    c->prov = provctx;
    c->ecdh = ecdh;
    c->cofactor = -1;
  }
  return c;
}

static void *ecdh_newctx(void *provctx) { return newctx(provctx, true); }
static void *ecx_newctx(void *provctx) { return newctx(provctx, false); }

static void exch_freectx(void *vctx) {
  struct exchctx *c = vctx;
  if (c != NULL) {
    smprov_key_free(c->key);
    smprov_key_free(c->peer);
    free(c);
  }
}

static void *exch_dupctx(void *vctx) {
  const struct exchctx *src = vctx;
  struct exchctx *c = malloc(sizeof(*c));
  if (c == NULL) {
    return NULL;
  }
  *c = *src;
  if (c->key != NULL) {
    smprov_key_ref(c->key);
  }
  if (c->peer != NULL) {
    smprov_key_ref(c->peer);
  }
  return c;
}

static bool fits(const struct exchctx *c, const struct smprov_key *k) {
  return c->ecdh ? k->type == SMPROV_EC : (k->type == SMPROV_X25519 || k->type == SMPROV_X448);
}

static int exch_init(void *vctx, void *provkey, const OSSL_PARAM params[]) {
  struct exchctx *c = vctx;
  struct smprov_key *k = provkey;
  if (!smprov_key_ok(k) || !fits(c, k) || k->pub == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "this key cannot be used for this key exchange");
    return 0;
  }
  if (k->priv == NULL) {
    SMPROV_ERR(SMPROV_R_NO_PRIVATE_KEY, "key exchange needs a private key");
    return 0;
  }
  smprov_key_free(c->key);
  c->key = smprov_key_ref(k);
  return exch_set_ctx_params(c, params);
}

static int exch_set_peer(void *vctx, void *provkey) {
  struct exchctx *c = vctx;
  struct smprov_key *p = provkey;
  if (!smprov_key_ok(p) || p->pub == NULL || c->key == NULL ||
      p->type != c->key->type) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the peer key is not of this key's type");
    return 0;
  }
  if (c->ecdh && EVP_PKEY_parameters_eq(p->pub, c->key->pub) != 1) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the peer key is on another curve");
    return 0;
  }
  smprov_key_free(c->peer);
  c->peer = smprov_key_ref(p);
  return 1;
}

static int exch_derive(void *vctx, unsigned char *secret, size_t *secretlen, size_t outlen) {
  struct exchctx *c = vctx;
  if (c->key == NULL || c->peer == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "key exchange needs a key and a peer");
    return 0;
  }
  if (c->ecdh) {
    size_t field = (size_t)(EVP_PKEY_get_bits(c->key->pub) + 7) / 8;
    if (secret == NULL) {
      *secretlen = field;
      return 1;
    }
    return smprov_unseal_ecdh(c->key, c->peer->pub, c->cofactor == 1, secret, secretlen, outlen);
  }
  size_t len = c->key->type == SMPROV_X25519 ? 32 : 56;
  if (secret == NULL) {
    *secretlen = len;
    return 1;
  }
  if (outlen < len) {
    SMPROV_ERR(SMPROV_R_BUFFER_TOO_SMALL, "the shared secret needs %zu bytes", len);
    return 0;
  }
  unsigned char peer[56];
  size_t plen = sizeof(peer);
  if (EVP_PKEY_get_raw_public_key(c->peer->pub, peer, &plen) != 1) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "the peer key has no public key");
    return 0;
  }
  return smprov_unseal_ecx_derive(c->key, peer, plen, secret, secretlen);
}

static int exch_set_ctx_params(void *vctx, const OSSL_PARAM params[]) {
  struct exchctx *c = vctx;
  const OSSL_PARAM *p;
  if (params == NULL) {
    return 1;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE)) != NULL) {
    int mode = 0;
    if (!c->ecdh || !OSSL_PARAM_get_int(p, &mode) || mode < -1 || mode > 1) {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "invalid ECDH cofactor mode");
      return 0;
    }
    c->cofactor = mode;
  }
  if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE)) != NULL) {
    const char *v = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &v) || v[0] != '\0') {
      SMPROV_ERR(SMPROV_R_BAD_PARAMETER,
                 "the secmem provider derives plain shared secrets only (no KDF)");
      return 0;
    }
  }
  return 1;
}

static const OSSL_PARAM *exch_settable_ctx_params(void *vctx, void *provctx) {
  static const OSSL_PARAM settable[] = {
      OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
      OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0), OSSL_PARAM_END};
  (void)vctx;
  (void)provctx;
  return settable;
}

static int exch_get_ctx_params(void *vctx, OSSL_PARAM params[]) {
  struct exchctx *c = vctx;
  OSSL_PARAM *p;
  if ((p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE)) != NULL &&
      !OSSL_PARAM_set_int(p, c->cofactor == 1 ? 1 : 0)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_TYPE)) != NULL &&
      !OSSL_PARAM_set_utf8_string(p, "")) {
    return 0;
  }
  return 1;
}

static const OSSL_PARAM *exch_gettable_ctx_params(void *vctx, void *provctx) {
  static const OSSL_PARAM gettable[] = {
      OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
      OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0), OSSL_PARAM_END};
  (void)vctx;
  (void)provctx;
  return gettable;
}

#define EXCH_ENTRIES                                                                                \
  {OSSL_FUNC_KEYEXCH_INIT, (void (*)(void))exch_init},                                              \
      {OSSL_FUNC_KEYEXCH_SET_PEER, (void (*)(void))exch_set_peer},                                  \
      {OSSL_FUNC_KEYEXCH_DERIVE, (void (*)(void))exch_derive},                                      \
      {OSSL_FUNC_KEYEXCH_FREECTX, (void (*)(void))exch_freectx},                                    \
      {OSSL_FUNC_KEYEXCH_DUPCTX, (void (*)(void))exch_dupctx},                                      \
      {OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, (void (*)(void))exch_set_ctx_params},                      \
      {OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, (void (*)(void))exch_settable_ctx_params},            \
      {OSSL_FUNC_KEYEXCH_GET_CTX_PARAMS, (void (*)(void))exch_get_ctx_params},                      \
      {OSSL_FUNC_KEYEXCH_GETTABLE_CTX_PARAMS, (void (*)(void))exch_gettable_ctx_params}

const OSSL_DISPATCH smprov_keyexch_ecdh[] = {
    {OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))ecdh_newctx}, EXCH_ENTRIES, {0, NULL}};

const OSSL_DISPATCH smprov_keyexch_ecx[] = {
    {OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))ecx_newctx}, EXCH_ENTRIES, {0, NULL}};
