/*
 * keymgmt.c - owns what every key family's key management shares: import
 * (private parts sealed at once), export (public always, private only with
 * export_private = yes), has, match, validate, get/set params, dup, load by
 * reference, and generation through the default provider of the private
 * library context. The per-family files (keymgmt_rsa.c, keymgmt_ec.c,
 * keymgmt_ecx.c) bind these into their dispatch tables.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>

#include "smprov.h"

struct smprov_key *smprov_km_new(void *provctx, enum smprov_type type) {
  return smprov_key_new(provctx, type);
}

void smprov_km_free(void *keydata) { smprov_key_free(keydata); }

void *smprov_km_load(const void *reference, size_t reference_sz) {
  return smprov_key_from_reference(reference, reference_sz);
}

int smprov_km_has(const void *keydata, int selection) {
  const struct smprov_key *k = keydata;
  if (k == NULL) {
    return 0;
  }
  int ok = 1;
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    ok = ok && k->priv != NULL;
  }
  if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0) {
    ok = ok && k->pub != NULL;
  }
  return ok;
}

int smprov_km_match(const void *a, const void *b, int selection) {
  const struct smprov_key *ka = a, *kb = b;
  (void)selection;
  if (ka->pub == NULL || kb->pub == NULL) {
    return 0;
  }
  /* A private key determines its public key: equal public parts (and
   * domain parameters) mean the same key, whatever the selection. */
  return EVP_PKEY_eq(ka->pub, kb->pub) == 1;
}

int smprov_km_validate(const void *keydata, int selection, int checktype) {
  const struct smprov_key *k = keydata;
  (void)checktype;
  if (k == NULL || k->pub == NULL) {
    return 0;
  }
  int ok = 1;
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(k->prov->priv, k->pub, NULL);
    ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
  }
  if (ok && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    ok = smprov_unseal_check_private(k);
  }
  return ok;
}

/* Whether params carry a private key at all: OpenSSL hands a foreign peer's
 * public key over with every selection bit set. */
static bool has_private_param(const OSSL_PARAM params[]) {
  return OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY) != NULL ||
         OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_D) != NULL;
}

static bool has_public_param(const OSSL_PARAM params[]) {
  return OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY) != NULL ||
         OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_N) != NULL ||
         OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY) != NULL;
}

int smprov_km_import(void *keydata, int selection, const OSSL_PARAM params[]) {
  struct smprov_key *k = keydata;
  bool private = (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && has_private_param(params);
  if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0 && !private && !has_public_param(params)) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "no %s key in the parameters to import", smprov_type_name(k->type));
    return 0;
  }
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(k->prov->priv, smprov_type_name(k->type), NULL);
  EVP_PKEY *full = NULL;
  int sel = private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY;
  if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &full, sel, (OSSL_PARAM *)params) != 1) {
    EVP_PKEY_CTX_free(ctx);
    SMPROV_ERR(SMPROV_R_BAD_KEY, "cannot import the %s key", smprov_type_name(k->type));
    return 0;
  }
  EVP_PKEY_CTX_free(ctx);
  int ok = private ? smprov_seal_from_pkey(k, full) : smprov_set_public_from_pkey(k, full);
  EVP_PKEY_free(full); /* the default provider clears its private copy */
  return ok;
}

int smprov_km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg) {
  struct smprov_key *k = keydata;
  if (k == NULL || k->pub == NULL) {
    return 0;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    return smprov_unseal_export_private(k, cb, cbarg);
  }
  OSSL_PARAM *params = NULL;
  if (EVP_PKEY_todata(k->pub, EVP_PKEY_PUBLIC_KEY, &params) != 1) {
    SMPROV_ERR(SMPROV_R_BAD_KEY, "cannot export the public %s key", smprov_type_name(k->type));
    return 0;
  }
  int ok = cb(params, cbarg);
  OSSL_PARAM_free(params);
  return ok;
}

int smprov_km_get_params(void *keydata, OSSL_PARAM params[]) {
  struct smprov_key *k = keydata;
  if (k == NULL || k->pub == NULL) {
    return 0;
  }
  return EVP_PKEY_get_params(k->pub, params);
}

int smprov_km_set_params(void *keydata, const OSSL_PARAM params[]) {
  struct smprov_key *k = keydata;
  if (k == NULL || k->pub == NULL) {
    return 0;
  }
  if (k->priv != NULL && OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY) != NULL) {
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "the public part of a sealed private key cannot be replaced");
    return 0;
  }
  return EVP_PKEY_set_params(k->pub, (OSSL_PARAM *)params);
}

/* Another provider's key management asks for a key we handed out by
 * reference (OSSL_STORE tries that before our own load(); a decoder's
 * caller may too): the public part, never the private one unless
 * export_private allows it. The loader's or decoder's context is not
 * needed. */
int smprov_km_export_reference(void *ctx, const void *reference, size_t reference_sz,
                               OSSL_CALLBACK *export_cb, void *export_cbarg) {
  (void)ctx;
  struct smprov_key *k = smprov_key_from_reference(reference, reference_sz);
  if (k == NULL) {
    return 0;
  }
  int ok = smprov_km_export(k, OSSL_KEYMGMT_SELECT_ALL, export_cb, export_cbarg);
  smprov_key_free(k);
  return ok;
}

void *smprov_km_dup(const void *keydata, int selection) {
  const struct smprov_key *src = keydata;
  struct smprov_key *k = smprov_key_new(src->prov, src->type);
  if (k == NULL) {
    return NULL;
  }
  if (src->pub != NULL && (k->pub = EVP_PKEY_dup(src->pub)) == NULL) {
    smprov_key_free(k);
    return NULL;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && src->priv != NULL &&
      !smprov_unseal_dup_private(src, k)) {
    smprov_key_free(k);
    return NULL;
  }
  k->from_file = src->from_file;
  return k;
}

/* ---- the default provider's parameter tables ---------------------------------- */

const OSSL_PARAM *smprov_km_types(void *provctx, enum smprov_type type, int which, int selection) {
  struct smprov_ctx *prov = provctx;
  EVP_KEYMGMT *km = EVP_KEYMGMT_fetch(prov->priv, smprov_type_name(type), NULL);
  const OSSL_PARAM *p = NULL;
  if (km != NULL) {
    switch (which) {
    case SMPROV_KM_IMPORT:
    case SMPROV_KM_EXPORT: {
      EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(prov->priv, smprov_type_name(type), NULL);
      if (ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1) {
        p = EVP_PKEY_fromdata_settable(ctx, selection);
      }
      EVP_PKEY_CTX_free(ctx);
      break;
    }
    case SMPROV_KM_GETTABLE:
      p = EVP_KEYMGMT_gettable_params(km);
      break;
    case SMPROV_KM_SETTABLE:
      p = EVP_KEYMGMT_settable_params(km);
      break;
    case SMPROV_KM_GEN_SETTABLE:
      p = EVP_KEYMGMT_gen_settable_params(km);
      break;
    default:
      break;
    }
  }
  /* The tables are the default provider's static ones: they outlive km,
   * which the private library context keeps cached. */
  EVP_KEYMGMT_free(km);
  return p;
}

/* ---- generation ---------------------------------------------------------------- */

void *smprov_km_gen_init(void *provctx, enum smprov_type type, int selection,
                         const OSSL_PARAM params[]) {
  struct smprov_ctx *prov = provctx;
  struct smprov_gen *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    return NULL;
  }
  g->prov = prov;
  g->type = type;
  g->selection = selection;
  g->ctx = EVP_PKEY_CTX_new_from_name(prov->priv, smprov_type_name(type), NULL);
  if (g->ctx == NULL || EVP_PKEY_keygen_init(g->ctx) != 1 ||
      !smprov_km_gen_set_params(g, params)) {
    smprov_km_gen_cleanup(g);
    SMPROV_ERR(SMPROV_R_BAD_PARAMETER, "cannot start generating a %s key", smprov_type_name(type));
    return NULL;
  }
  return g;
}

int smprov_km_gen_set_params(void *genctx, const OSSL_PARAM params[]) {
  struct smprov_gen *g = genctx;
  if (params == NULL || params[0].key == NULL) {
    return 1;
  }
  return EVP_PKEY_CTX_set_params(g->ctx, params) == 1;
}

int smprov_km_gen_set_template(void *genctx, void *templ) {
  struct smprov_gen *g = genctx;
  const struct smprov_key *t = templ;
  if (t == NULL || t->pub == NULL) {
    return 0;
  }
  /* The template's domain parameters (an EC group): copy them as params. */
  OSSL_PARAM *params = NULL;
  if (EVP_PKEY_todata(t->pub, EVP_PKEY_KEY_PARAMETERS, &params) != 1) {
    return 0;
  }
  int ok = EVP_PKEY_CTX_set_params(g->ctx, params) == 1;
  OSSL_PARAM_free(params);
  return ok;
}

void *smprov_km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg) {
  struct smprov_gen *g = genctx;
  (void)cb;
  (void)cbarg;
  EVP_PKEY *full = NULL;
  if (EVP_PKEY_generate(g->ctx, &full) != 1) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED, "generating a %s key failed", smprov_type_name(g->type));
    return NULL;
  }
  struct smprov_key *k = smprov_key_new(g->prov, g->type);
  bool keypair = (g->selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
  if (k == NULL || !(keypair ? smprov_seal_from_pkey(k, full) : smprov_set_public_from_pkey(k, full))) {
    smprov_key_free(k);
    k = NULL;
  }
  EVP_PKEY_free(full); /* born sealed: the generated private key is cleared now */
  return k;
}

void smprov_km_gen_cleanup(void *genctx) {
  struct smprov_gen *g = genctx;
  if (g != NULL) {
    EVP_PKEY_CTX_free(g->ctx);
    free(g);
  }
}
