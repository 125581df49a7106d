/*
 * prov.c - owns the secmem provider module: OSSL_provider_init, the
 * operation tables, configuration from the provider's openssl.cnf section,
 * the provider's status parameters, its reason strings and its error
 * channel (the core's error upcalls, nothing else).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "keymgmt_family.h"

/* The core's functions, set once at init. */
static OSSL_FUNC_core_get_params_fn *c_get_params;
static OSSL_FUNC_core_new_error_fn *c_new_error;
static OSSL_FUNC_core_set_error_debug_fn *c_set_error_debug;
static OSSL_FUNC_core_vset_error_fn *c_vset_error;
static OSSL_FUNC_core_get_libctx_fn *c_get_libctx;
static OSSL_FUNC_BIO_read_ex_fn *c_bio_read_ex;
static OSSL_FUNC_BIO_gets_fn *c_bio_gets;
static OSSL_FUNC_BIO_write_ex_fn *c_bio_write_ex;
static OSSL_FUNC_BIO_ctrl_fn *c_bio_ctrl;
/* Errors go through the handle of a live instance: several library
 * contexts may each load the module, and a torn-down instance's handle must
 * never be used again. */
static pthread_mutex_t g_handle_lock = PTHREAD_MUTEX_INITIALIZER;
static const OSSL_CORE_HANDLE *g_handles[32];
static size_t g_nhandles;
static const OSSL_CORE_HANDLE *g_handle;

struct smprov_ctx *smprov_global_ctx;
_Atomic size_t smprov_keys_held;
_Atomic uint64_t smprov_private_ops;

/* ---- errors ----------------------------------------------------------------- */

static const OSSL_ITEM reason_strings[] = {
    {SMPROV_R_EXPORT_REFUSED, "key is sealed and export_private is off"},
    {SMPROV_R_ENCLAVE_AUTH, "enclave authentication failed"},
    {SMPROV_R_BAD_CONFIG, "bad value in the secmem provider configuration"},
    {SMPROV_R_SECURE_MEMORY, "secure memory could not be obtained"},
    {SMPROV_R_BAD_KEY, "invalid key"},
    {SMPROV_R_BAD_REFERENCE, "foreign or stale key reference"},
    {SMPROV_R_OPERATION_FAILED, "private key operation failed"},
    {SMPROV_R_BAD_PARAMETER, "invalid parameter"},
    {SMPROV_R_NO_PRIVATE_KEY, "key has no private part"},
    {SMPROV_R_DECRYPT_FAILED, "decryption failed"},
    {SMPROV_R_BUFFER_TOO_SMALL, "output buffer too small"},
    {SMPROV_R_KEY_FILE, "cannot read key file"},
    {SMPROV_R_UNSUPPORTED_KEY, "unsupported key type"},
    {SMPROV_R_BAD_PASSPHRASE, "wrong passphrase or corrupt encrypted key"},
    {SMPROV_R_KEYS_DIFFER, "keys do not match"},
    {0, NULL}};

void smprov_err_at(const char *file, int line, const char *func, int reason, const char *fmt,
                   ...) {
  if (c_new_error == NULL || c_vset_error == NULL) {
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&g_handle_lock);
  const OSSL_CORE_HANDLE *h = g_handle;
  if (h != NULL) {
    c_new_error(h);
    if (c_set_error_debug != NULL) {
      c_set_error_debug(h, file, line, func);
    }
    c_vset_error(h, (uint32_t)reason, fmt, ap);
  }
  pthread_mutex_unlock(&g_handle_lock);
  va_end(ap);
}

void smprov_err_secmem_at(const char *file, int line, const char *func, const char *what) {
  int err = errno;
  int reason = err == EBADMSG ? SMPROV_R_ENCLAVE_AUTH : SMPROV_R_SECURE_MEMORY;
  smprov_err_at(file, line, func, reason, "%s: %s", what, secmem_last_error());
}

/* ---- the core's BIOs (what decoders read) ----------------------------------- */

int smprov_bio_read_ex(OSSL_CORE_BIO *bio, void *data, size_t len, size_t *got) {
  *got = 0;
  return c_bio_read_ex != NULL && c_bio_read_ex(bio, data, len, got);
}

int smprov_bio_write_ex(OSSL_CORE_BIO *bio, const void *data, size_t len, size_t *written) {
  *written = 0;
  return c_bio_write_ex != NULL && c_bio_write_ex(bio, data, len, written);
}

int smprov_bio_gets(OSSL_CORE_BIO *bio, char *buf, int size) {
  return c_bio_gets != NULL ? c_bio_gets(bio, buf, size) : -1;
}

int smprov_bio_ctrl(OSSL_CORE_BIO *bio, int cmd, long num, void *ptr) {
  return c_bio_ctrl != NULL ? c_bio_ctrl(bio, cmd, num, ptr) : -1;
}

/* ---- configuration ------------------------------------------------------------ */

/* One openssl.cnf entry: its allowed values, checked before anything runs. */
static bool one_of(const char *v, const char *const *allowed) {
  for (; *allowed != NULL; allowed++) {
    if (strcmp(v, *allowed) == 0) {
      return true;
    }
  }
  return false;
}

static int bad_value(const char *key, const char *value, const char *expected) {
  SMPROV_ERR(SMPROV_R_BAD_CONFIG, "secmem provider: %s = \"%s\" is not valid (expected %s)", key,
             value, expected);
  return 0;
}

/* Read and apply the configuration. 1, or 0 with an error naming the key
 * and the value: no half-configured provider ever runs. */
static int configure(struct smprov_ctx *ctx) {
  char *rekey = NULL, *mlock = NULL, *memfd = NULL, *exportp = NULL, *dumps = NULL,
       *transparent = NULL;
  OSSL_PARAM req[] = {OSSL_PARAM_utf8_ptr("rekey_interval_ms", &rekey, 0),
                      OSSL_PARAM_utf8_ptr("mlock", &mlock, 0),
                      OSSL_PARAM_utf8_ptr("memfd_secret", &memfd, 0),
                      OSSL_PARAM_utf8_ptr("export_private", &exportp, 0),
                      OSSL_PARAM_utf8_ptr("core_dumps", &dumps, 0),
                      OSSL_PARAM_utf8_ptr("transparent", &transparent, 0), OSSL_PARAM_END};
  if (c_get_params != NULL && !c_get_params(g_handle, req)) {
    SMPROV_ERR(SMPROV_R_BAD_CONFIG, "secmem provider: cannot read its configuration");
    return 0;
  }
  static const char *const mlock_values[] = {"required", "best-effort", NULL};
  static const char *const memfd_values[] = {"auto", "on", "off", NULL};
  static const char *const yes_no[] = {"no", "yes", NULL};
  static const char *const dump_values[] = {"keep", "disable", NULL};
  unsigned long long interval = SECMEM_REKEY_INTERVAL_DEFAULT_MS;
  if (rekey != NULL) {
    char *end = NULL;
    errno = 0;
    interval = strtoull(rekey, &end, 10);
    if (rekey[0] < '0' || rekey[0] > '9' || *end != '\0' || errno != 0 || interval > 86400000ull) {
      return bad_value("rekey_interval_ms", rekey, "a number of milliseconds from 0 to 86400000");
    }
  }
  if (mlock != NULL && !one_of(mlock, mlock_values)) {
    return bad_value("mlock", mlock, "required or best-effort");
  }
  if (memfd != NULL && !one_of(memfd, memfd_values)) {
    return bad_value("memfd_secret", memfd, "auto, on or off");
  }
  if (exportp != NULL && !one_of(exportp, yes_no)) {
    return bad_value("export_private", exportp, "no or yes");
  }
  if (dumps != NULL && !one_of(dumps, dump_values)) {
    return bad_value("core_dumps", dumps, "keep or disable");
  }
  if (transparent != NULL && !one_of(transparent, yes_no)) {
    return bad_value("transparent", transparent, "yes or no");
  }
  /* Every value is valid: apply them. */
  secmem_set_rekey_interval(interval);
  if (secmem_set_mlock_policy(mlock != NULL && strcmp(mlock, "best-effort") == 0
                                  ? SECMEM_MLOCK_BEST_EFFORT
                                  : SECMEM_MLOCK_REQUIRED) != 0) {
    SMPROV_ERR_SECMEM("mlock");
    return 0;
  }
  secmem_backing backing = SECMEM_BACKING_AUTO;
  if (memfd != NULL && strcmp(memfd, "on") == 0) {
    backing = SECMEM_BACKING_SECRET;
  } else if (memfd != NULL && strcmp(memfd, "off") == 0) {
    backing = SECMEM_BACKING_ANON;
  }
  if (secmem_set_backing(backing) != 0) {
    SMPROV_ERR(SMPROV_R_BAD_CONFIG, "secmem provider: memfd_secret = on: %s",
               secmem_last_error());
    return 0;
  }
  ctx->export_private = exportp != NULL && strcmp(exportp, "yes") == 0;
  ctx->transparent = transparent == NULL || strcmp(transparent, "yes") == 0;
  if (dumps != NULL && strcmp(dumps, "disable") == 0 && secmem_disable_core_dumps() != 0) {
    SMPROV_ERR(SMPROV_R_BAD_CONFIG, "secmem provider: core_dumps = disable: %s",
               secmem_last_error());
    return 0;
  }
  return 1;
}

/* ---- the provider's own parameters -------------------------------------------- */

#define SMPROV_PARAM_KEYS "secmem-keys"
#define SMPROV_PARAM_BYTES_LOCKED "secmem-bytes-locked"
#define SMPROV_PARAM_OPENS "secmem-opens"
#define SMPROV_PARAM_INTEGRITY "secmem-integrity-failures"

static const OSSL_PARAM gettable[] = {
    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, NULL, 0),
    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, NULL, 0),
    OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
    OSSL_PARAM_size_t(SMPROV_PARAM_KEYS, NULL),
    OSSL_PARAM_size_t(SMPROV_PARAM_BYTES_LOCKED, NULL),
    OSSL_PARAM_uint64(SMPROV_PARAM_OPENS, NULL),
    OSSL_PARAM_uint64(SMPROV_PARAM_INTEGRITY, NULL),
    OSSL_PARAM_END};

static const OSSL_PARAM *prov_gettable_params(void *provctx) {
  (void)provctx;
  return gettable;
}

static int prov_get_params(void *provctx, OSSL_PARAM params[]) {
  (void)provctx;
  secmem_stats st;
  secmem_heap_stats hs;
  if (secmem_get_stats(&st) != 0 || secmem_heap_get_stats(&hs) != 0) {
    SMPROV_ERR_SECMEM("statistics");
    return 0;
  }
  OSSL_PARAM *p;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
      !OSSL_PARAM_set_utf8_ptr(p, "secmem provider: private keys sealed at rest")) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
      !OSSL_PARAM_set_utf8_ptr(p, SECMEM_VERSION_STRING)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
      !OSSL_PARAM_set_utf8_ptr(p, "secmem " SECMEM_VERSION_STRING " for " OPENSSL_VERSION_TEXT)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
      !OSSL_PARAM_set_int(p, 1)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, SMPROV_PARAM_KEYS)) != NULL &&
      !OSSL_PARAM_set_size_t(p, atomic_load(&smprov_keys_held))) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, SMPROV_PARAM_BYTES_LOCKED)) != NULL &&
      !OSSL_PARAM_set_size_t(p, st.bytes_locked)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, SMPROV_PARAM_OPENS)) != NULL &&
      !OSSL_PARAM_set_uint64(p, st.opens)) {
    return 0;
  }
  if ((p = OSSL_PARAM_locate(params, SMPROV_PARAM_INTEGRITY)) != NULL &&
      !OSSL_PARAM_set_uint64(p, st.open_failures)) {
    return 0;
  }
  return 1;
}

/* ---- the operations ------------------------------------------------------------ */

#define ALG(names, impl) {names, SMPROV_PROPS, impl, NULL}

static const OSSL_ALGORITHM keymgmts[] = {
    ALG(SMPROV_NAMES_RSA, smprov_keymgmt_rsa),
    ALG(SMPROV_NAMES_RSA_PSS, smprov_keymgmt_rsa_pss),
    ALG(SMPROV_NAMES_EC, smprov_keymgmt_ec),
    ALG(SMPROV_NAMES_ED25519, smprov_keymgmt_ecx_ed25519),
    ALG(SMPROV_NAMES_X25519, smprov_keymgmt_ecx_x25519),
    ALG(SMPROV_NAMES_ED448, smprov_keymgmt_ecx_ed448),
    ALG(SMPROV_NAMES_X448, smprov_keymgmt_ecx_x448),
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM signatures[] = {
    ALG(SMPROV_NAMES_RSA, smprov_signature_rsa),
    ALG("ECDSA", smprov_signature_ecdsa),
    ALG(SMPROV_NAMES_ED25519, smprov_signature_eddsa),
    ALG(SMPROV_NAMES_ED448, smprov_signature_eddsa),
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM keyexchs[] = {
    ALG("ECDH", smprov_keyexch_ecdh),
    ALG(SMPROV_NAMES_X25519, smprov_keyexch_ecx),
    ALG(SMPROV_NAMES_X448, smprov_keyexch_ecx),
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM asym_ciphers[] = {
    ALG(SMPROV_NAMES_RSA, smprov_asym_cipher_rsa),
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM stores[] = {ALG("secmem", smprov_store), {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM *prov_query(void *provctx, int operation_id, int *no_cache) {
  const struct smprov_ctx *ctx = provctx;
  *no_cache = 0;
  switch (operation_id) {
  case OSSL_OP_KEYMGMT:
    return keymgmts;
  case OSSL_OP_SIGNATURE:
    return signatures;
  case OSSL_OP_KEYEXCH:
    return keyexchs;
  case OSSL_OP_ASYM_CIPHER:
    return asym_ciphers;
  case OSSL_OP_STORE:
    return stores;
  case OSSL_OP_DECODER:
    return ctx->transparent ? smprov_decoders : NULL;
  case OSSL_OP_ENCODER:
    /* Sealed handles stand in for an encoding refused; when private
     * export is allowed, the default provider's encoders do the real one. */
    return ctx->export_private ? NULL : smprov_encoders;
  default:
    return NULL;
  }
}

static const OSSL_ITEM *prov_reasons(void *provctx) {
  (void)provctx;
  return reason_strings;
}

static void forget_handle(const OSSL_CORE_HANDLE *h) {
  pthread_mutex_lock(&g_handle_lock);
  for (size_t i = 0; i < g_nhandles; i++) {
    if (g_handles[i] == h) {
      g_handles[i] = g_handles[--g_nhandles];
      break;
    }
  }
  if (g_handle == h) {
    g_handle = g_nhandles > 0 ? g_handles[g_nhandles - 1] : NULL;
  }
  pthread_mutex_unlock(&g_handle_lock);
}

static void prov_teardown(void *provctx) {
  struct smprov_ctx *ctx = provctx;
  if (ctx == NULL) {
    return;
  }
  forget_handle(ctx->handle);
  if (smprov_global_ctx == ctx) {
    smprov_global_ctx = NULL;
  }
  OSSL_PROVIDER_unload(ctx->priv_default);
  OSSL_LIB_CTX_free(ctx->priv);
  free(ctx);
}

/*
 * OpenSSL 3.0 tries decoders of the same name in the order the providers
 * were added to the library context (OPENSSL3-NOTES.md): secmem's decoders
 * come first only when the provider that brings OpenSSL's own decoders
 * (default, or base) was loaded before secmem. Otherwise ordinary key files
 * would load unprotected without a word: say so once, on stderr, where an
 * operator sees it. (The core context a provider is handed is its library
 * context.)
 */
static void check_decoder_order(const struct smprov_ctx *ctx, const OSSL_CORE_HANDLE *handle) {
  if (!ctx->transparent || c_get_libctx == NULL) {
    return;
  }
  OSSL_LIB_CTX *libctx = (OSSL_LIB_CTX *)c_get_libctx(handle);
  ERR_set_mark();
  bool before = OSSL_PROVIDER_available(libctx, "default") ||
                OSSL_PROVIDER_available(libctx, "base");
  ERR_pop_to_mark();
  if (!before) {
    fprintf(stderr, "secmem: the secmem provider was loaded before the default provider: "
                    "OpenSSL will try its own decoders first and private key files will not be "
                    "sealed; list default before secmem in openssl.cnf\n");
  }
}

static const OSSL_DISPATCH prov_dispatch[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))prov_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))prov_reasons},
    {0, NULL}};

/* Only this symbol is exported from the module. */
__attribute__((visibility("default"))) OSSL_provider_init_fn OSSL_provider_init;

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx) {
  for (; in->function_id != 0; in++) {
    switch (in->function_id) {
    case OSSL_FUNC_CORE_GET_PARAMS:
      c_get_params = OSSL_FUNC_core_get_params(in);
      break;
    case OSSL_FUNC_CORE_NEW_ERROR:
      c_new_error = OSSL_FUNC_core_new_error(in);
      break;
    case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
      c_set_error_debug = OSSL_FUNC_core_set_error_debug(in);
      break;
    case OSSL_FUNC_CORE_VSET_ERROR:
      c_vset_error = OSSL_FUNC_core_vset_error(in);
      break;
    case OSSL_FUNC_CORE_GET_LIBCTX:
      c_get_libctx = OSSL_FUNC_core_get_libctx(in);
      break;
    case OSSL_FUNC_BIO_READ_EX:
      c_bio_read_ex = OSSL_FUNC_BIO_read_ex(in);
      break;
    case OSSL_FUNC_BIO_WRITE_EX:
      c_bio_write_ex = OSSL_FUNC_BIO_write_ex(in);
      break;
    case OSSL_FUNC_BIO_GETS:
      c_bio_gets = OSSL_FUNC_BIO_gets(in);
      break;
    case OSSL_FUNC_BIO_CTRL:
      c_bio_ctrl = OSSL_FUNC_BIO_ctrl(in);
      break;
    default:
      break;
    }
  }
  pthread_mutex_lock(&g_handle_lock);
  if (g_nhandles == sizeof(g_handles) / sizeof(g_handles[0])) {
    pthread_mutex_unlock(&g_handle_lock);
    return 0; /* 32 live instances of this module in one process */
  }
  g_handles[g_nhandles++] = handle;
  g_handle = handle;
  pthread_mutex_unlock(&g_handle_lock);
  if (secmem_init() != 0) {
    SMPROV_ERR_SECMEM("secmem_init");
    forget_handle(handle);
    return 0;
  }
  struct smprov_ctx *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    SMPROV_ERR(SMPROV_R_SECURE_MEMORY, "out of memory");
    forget_handle(handle);
    return 0;
  }
  ctx->handle = handle;
  if (!configure(ctx)) {
    free(ctx);
    forget_handle(handle);
    return 0;
  }
  ctx->priv = OSSL_LIB_CTX_new();
  ctx->priv_default = ctx->priv != NULL ? OSSL_PROVIDER_load(ctx->priv, "default") : NULL;
  if (ctx->priv_default == NULL) {
    SMPROV_ERR(SMPROV_R_OPERATION_FAILED,
               "cannot load the default provider into secmem's private library context");
    prov_teardown(ctx);
    return 0;
  }
  check_decoder_order(ctx, handle);
  smprov_global_ctx = ctx;
  *provctx = ctx;
  *out = prov_dispatch;
  return 1;
}

/* When the module itself is unloaded (the last dlclose, or process exit):
 * no thread-exit hook or timer of libsecmem may outlive its code, and no
 * page it mapped may stay behind. */
__attribute__((destructor)) static void smprov_unload(void) {
  smprov_key_registry_free();
  secmem_shutdown();
}
