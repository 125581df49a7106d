/*
 * keymgmt_family.h - the per-type entry points every key family needs.
 * OpenSSL's keymgmt interface gives some functions no type (new has only the
 * provider context, import_types only a selection), so each key type needs
 * its own small functions around keymgmt.c's shared ones. This macro writes
 * them, each declared with its OSSL_FUNC_*_fn type so the compiler checks
 * what the dispatch casts hide; SMPROV_KEYMGMT_ENTRIES lists them.
 */
#ifndef SMPROV_KEYMGMT_FAMILY_H
#define SMPROV_KEYMGMT_FAMILY_H

#include "smprov.h"

/* The provider context the type tables are fetched through (set at init). */
extern struct smprov_ctx *smprov_global_ctx;

#define SMPROV_KEYMGMT_TYPE(name, TYPE)                                                           \
  static OSSL_FUNC_keymgmt_new_fn name##_new;                                                     \
  static OSSL_FUNC_keymgmt_gen_init_fn name##_gen_init;                                           \
  static OSSL_FUNC_keymgmt_import_types_fn name##_import_types;                                   \
  static OSSL_FUNC_keymgmt_export_types_fn name##_export_types;                                   \
  static OSSL_FUNC_keymgmt_gettable_params_fn name##_gettable;                                    \
  static OSSL_FUNC_keymgmt_settable_params_fn name##_settable;                                    \
  static OSSL_FUNC_keymgmt_gen_settable_params_fn name##_gen_settable;                            \
  static void *name##_new(void *provctx) { return smprov_km_new(provctx, TYPE); }                 \
  static void *name##_gen_init(void *provctx, int selection, const OSSL_PARAM params[]) {         \
    return smprov_km_gen_init(provctx, TYPE, selection, params);                                  \
  }                                                                                               \
  static const OSSL_PARAM *name##_import_types(int selection) {                                   \
    return smprov_km_types(smprov_global_ctx, TYPE, SMPROV_KM_IMPORT, selection);                 \
  }                                                                                               \
  static const OSSL_PARAM *name##_export_types(int selection) {                                   \
    return smprov_km_types(smprov_global_ctx, TYPE, SMPROV_KM_EXPORT, selection);                 \
  }                                                                                               \
  static const OSSL_PARAM *name##_gettable(void *provctx) {                                       \
    return smprov_km_types(provctx, TYPE, SMPROV_KM_GETTABLE, 0);                                 \
  }                                                                                               \
  static const OSSL_PARAM *name##_settable(void *provctx) {                                       \
    return smprov_km_types(provctx, TYPE, SMPROV_KM_SETTABLE, 0);                                 \
  }                                                                                               \
  static const OSSL_PARAM *name##_gen_settable(void *genctx, void *provctx) {                     \
    (void)genctx;                                                                                 \
    return smprov_km_types(provctx, TYPE, SMPROV_KM_GEN_SETTABLE, 0);                             \
  }

/* The dispatch entries every type has (a table adds its own and {0, NULL}). */
#define SMPROV_KEYMGMT_ENTRIES(name)                                                              \
  {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))name##_new},                                            \
      {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))smprov_km_free},                                   \
      {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))smprov_km_load},                                   \
      {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))smprov_km_has},                                     \
      {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))smprov_km_match},                                 \
      {OSSL_FUNC_KEYMGMT_VALIDATE, (void (*)(void))smprov_km_validate},                           \
      {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))smprov_km_import},                               \
      {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))name##_import_types},                      \
      {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))smprov_km_export},                               \
      {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))name##_export_types},                      \
      {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))smprov_km_get_params},                       \
      {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))name##_gettable},                       \
      {OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void))smprov_km_set_params},                       \
      {OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, (void (*)(void))name##_settable},                       \
      {OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))smprov_km_dup},                                     \
      {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))name##_gen_init},                              \
      {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))smprov_km_gen_set_params},               \
      {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))name##_gen_settable},               \
      {OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, (void (*)(void))smprov_km_gen_set_template},           \
      {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))smprov_km_gen},                                     \
      {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))smprov_km_gen_cleanup}

#endif
