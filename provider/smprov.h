/*
 * smprov.h - what the secmem provider's files share: the provider context,
 * the error channel, the sealed key object, and the unseal interface (the
 * one place a private key is ever opened). The provider uses libsecmem only
 * through include/secmem.h.
 */
#ifndef SMPROV_H
#define SMPROV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "secmem.h"

#define SMPROV_NAME "secmem"
#define SMPROV_PROPS "provider=secmem"

/* The algorithm names of the key types, as the default provider has them. */
#define SMPROV_NAMES_RSA "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define SMPROV_NAMES_RSA_PSS "RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10"
#define SMPROV_NAMES_EC "EC:id-ecPublicKey:1.2.840.10045.2.1"
#define SMPROV_NAMES_ED25519 "ED25519:1.3.101.112"
#define SMPROV_NAMES_X25519 "X25519:1.3.101.110"
#define SMPROV_NAMES_ED448 "ED448:1.3.101.113"
#define SMPROV_NAMES_X448 "X448:1.3.101.111"

/* ---- prov.c: the provider context, configuration and errors -------------- */

struct smprov_ctx {
  const OSSL_CORE_HANDLE *handle;
  OSSL_LIB_CTX *priv;   /* provider-private, with only the default provider: the
                           short-lived keys and public-key work live here */
  OSSL_PROVIDER *priv_default;
  bool export_private;
  bool transparent; /* offer the decoders (transparent loading) */
};

/* Reason codes for the error queue (strings in prov.c). */
enum smprov_reason {
  SMPROV_R_EXPORT_REFUSED = 1,
  SMPROV_R_ENCLAVE_AUTH,
  SMPROV_R_BAD_CONFIG,
  SMPROV_R_SECURE_MEMORY,
  SMPROV_R_BAD_KEY,
  SMPROV_R_BAD_REFERENCE,
  SMPROV_R_OPERATION_FAILED,
  SMPROV_R_BAD_PARAMETER,
  SMPROV_R_NO_PRIVATE_KEY,
  SMPROV_R_DECRYPT_FAILED,
  SMPROV_R_BUFFER_TOO_SMALL,
  SMPROV_R_KEY_FILE,
  SMPROV_R_UNSUPPORTED_KEY,
  SMPROV_R_BAD_PASSPHRASE,
  SMPROV_R_KEYS_DIFFER
};

/* Put an error with reason on OpenSSL's queue, through the core. */
void smprov_err_at(const char *file, int line, const char *func, int reason, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
#define SMPROV_ERR(reason, ...) smprov_err_at(__FILE__, __LINE__, __func__, (reason), __VA_ARGS__)

/* The one mapping from a libsecmem failure (errno + secmem_last_error) to
 * a reason on the queue. what says what we were doing. */
void smprov_err_secmem_at(const char *file, int line, const char *func, const char *what);
#define SMPROV_ERR_SECMEM(what) smprov_err_secmem_at(__FILE__, __LINE__, __func__, (what))

/* The core's BIO functions, for decoders (0 / -1 when the core lacks one). */
int smprov_bio_read_ex(OSSL_CORE_BIO *bio, void *data, size_t len, size_t *got);
int smprov_bio_gets(OSSL_CORE_BIO *bio, char *buf, int size);
int smprov_bio_ctrl(OSSL_CORE_BIO *bio, int cmd, long num, void *ptr);
int smprov_bio_write_ex(OSSL_CORE_BIO *bio, const void *data, size_t len, size_t *written);

/* Counters for the gettable status parameters. */
extern _Atomic size_t smprov_keys_held;
extern _Atomic uint64_t smprov_private_ops;

/* ---- key.c: the sealed key object --------------------------------------- */

enum smprov_type {
  SMPROV_RSA,
  SMPROV_RSA_PSS,
  SMPROV_EC,
  SMPROV_ED25519,
  SMPROV_X25519,
  SMPROV_ED448,
  SMPROV_X448
};

struct smprov_precomp; /* unseal.c's per-key, non-secret precomputation */

/*
 * A key: the public part in clear as an EVP_PKEY of the private library
 * context (the default provider's object, public only), the private part
 * only as an enclave. Shared by reference count across threads; fields other
 * than refs and the precomputation are set once, before the key is shared.
 */
struct smprov_key {
  uint64_t magic;
  _Atomic int refs;
  struct smprov_ctx *prov;
  enum smprov_type type;
  EVP_PKEY *pub;           /* public part; NULL while the key is empty */
  secmem_enclave *priv;    /* private part; NULL for public-only keys */
  bool from_file;          /* loaded from a key file (a decoder, the store) */
  pthread_mutex_t pre_lock;
  struct smprov_precomp *pre;
};

#define SMPROV_KEY_MAGIC 0x534d4b45595f7631ull /* "SMKEY_v1" */

const char *smprov_type_name(enum smprov_type t); /* "RSA", "EC", "ED25519", ... */
struct smprov_key *smprov_key_new(struct smprov_ctx *prov, enum smprov_type type);
void smprov_key_free(struct smprov_key *k);
struct smprov_key *smprov_key_ref(struct smprov_key *k);
/* True when k is a live key object of ours (checked against the registry
 * before anything is dereferenced): for pointers from outside. */
bool smprov_key_is_live(const void *k);
/* The check for keydata the core hands an operation, which OpenSSL
 * guarantees came from our own key management: its magic. O(1). */
static inline bool smprov_key_ok(const struct smprov_key *k) {
  return k != NULL && k->magic == SMPROV_KEY_MAGIC;
}
/* Free the registry itself (the module is being unloaded). */
void smprov_key_registry_free(void);

/* A reference handed through OpenSSL (OSSL_OBJECT_PARAM_REFERENCE): a
 * distinctive size and a magic, checked against the registry in load(). */
struct smprov_key_reference {
  uint64_t magic;
  uint64_t serial;
  struct smprov_key *key;
};
#define SMPROV_REF_MAGIC 0x534d5245465f7631ull /* "SMREF_v1" */
void smprov_key_make_reference(struct smprov_key *k, struct smprov_key_reference *out);
/* The key a reference names, with a new reference count, or NULL (error
 * queued) for anything foreign or stale. */
struct smprov_key *smprov_key_from_reference(const void *ref, size_t ref_sz);

/* ---- unseal.c: the one place a private key is ever opened ---------------- */

/* Seal the private part of full (a key of the private library context) into
 * k, and keep its public part. full is not changed. 1 or 0 (error queued). */
int smprov_seal_from_pkey(struct smprov_key *k, EVP_PKEY *full);
/* Set k's public part from full (public only). 1 or 0. */
int smprov_set_public_from_pkey(struct smprov_key *k, EVP_PKEY *full);
/* The uncompressed public point of an EC private key whose file left it out:
 * scalar (big-endian, len bytes, in locked memory) times the generator of
 * the named curve nid. Its length in out, or 0 (error queued). */
size_t smprov_ec_public_from_scalar(struct smprov_ctx *prov, int nid, const unsigned char *scalar,
                                    size_t len, unsigned char *out, size_t out_len);
/* Hand the private parameters to cb (only with export_private = yes). */
int smprov_unseal_export_private(const struct smprov_key *k, OSSL_CALLBACK *cb, void *cbarg);
/* EdDSA: sign msg (Ed25519 on libsodium, Ed448 on OpenSSL). */
int smprov_unseal_eddsa_sign(const struct smprov_key *k, unsigned char *sig, size_t *siglen,
                             const unsigned char *msg, size_t msglen);
/* X25519 (libsodium) / X448 (OpenSSL): derive with the peer's public key. */
int smprov_unseal_ecx_derive(const struct smprov_key *k, const unsigned char *peer,
                             size_t peer_len, unsigned char *out, size_t *outlen);
/* ECDSA over a digest; DER signature. */
int smprov_unseal_ecdsa_sign(const struct smprov_key *k, unsigned char *sig, size_t *siglen,
                             size_t sigsize, const unsigned char *dgst, size_t dlen);
/* ECDH with the peer's EC key; plain x coordinate (cofactor when asked). */
int smprov_unseal_ecdh(const struct smprov_key *k, EVP_PKEY *peer, int cofactor,
                       unsigned char *out, size_t *outlen, size_t outsize);
/* RSA: x^d mod n for len = modulus bytes, blinded, in constant time. */
int smprov_unseal_rsa_private(const struct smprov_key *k, unsigned char *out,
                              const unsigned char *in, size_t len);
void smprov_precomp_free(struct smprov_precomp *pre);
/* EMSA-PSS encoding for k's modulus (public work on the cached public
 * key). 1 or 0. */
int smprov_rsa_pss_encode(const struct smprov_key *k, unsigned char *em, const unsigned char *mhash,
                          const EVP_MD *md, const EVP_MD *mgf1, int saltlen);
/* Give dst an independent sealed copy of src's private part. 1 or 0. */
int smprov_unseal_dup_private(const struct smprov_key *src, struct smprov_key *dst);
/* Check the private part (and that it matches the public part). 1 or 0. */
int smprov_unseal_check_private(const struct smprov_key *k);
/* Whether k's private part opens (is authentic) at all. 1 or 0, no error queued. */
int smprov_unseal_opens(const struct smprov_key *k);

/* ---- der.c: private-key DER in locked memory to a sealed key -------------- */

enum smprov_der_kind { SMPROV_DER_PKCS8, SMPROV_DER_RSA, SMPROV_DER_EC, SMPROV_DER_ANY };
/* A new sealed key from der (which should sit in locked memory), or NULL
 * with an error queued. The DER is not changed; the caller wipes it. */
struct smprov_key *smprov_der_to_key(struct smprov_ctx *prov, const unsigned char *der, size_t len,
                                     enum smprov_der_kind kind);

/* What a private-key DER holds, without opening anything: 1 with *type
 * for a structure and algorithm secmem seals, 0 for anything else
 * (another algorithm, an SM2 curve, not a private key). No error queued. */
int smprov_der_type(const unsigned char *der, size_t len, enum smprov_der_kind kind,
                    enum smprov_type *type);

/* ---- pem.c: private-key PEM and encrypted keys, in locked memory ---------- */

struct smprov_pem_block {
  char label[64];
  const unsigned char *headers; /* RFC 1421 headers ("Proc-Type: ..."), or NULL */
  size_t headers_len;
  const unsigned char *body; /* base64 */
  size_t body_len;
};
/* The next block of text[0..len) from *pos (moved past it): 1 found, 0
 * none left, -1 truncated or corrupt. */
int smprov_pem_next(const unsigned char *text, size_t len, size_t *pos,
                    struct smprov_pem_block *b);

enum smprov_pem_label {
  SMPROV_PEM_OTHER,            /* public keys, parameters, CRLs, ... */
  SMPROV_PEM_CERT,
  SMPROV_PEM_PKCS8,            /* PRIVATE KEY */
  SMPROV_PEM_ENCRYPTED_PKCS8,  /* ENCRYPTED PRIVATE KEY */
  SMPROV_PEM_RSA,              /* RSA PRIVATE KEY */
  SMPROV_PEM_EC,               /* EC PRIVATE KEY */
  SMPROV_PEM_OTHER_PRIVATE     /* DSA PRIVATE KEY and the like */
};
enum smprov_pem_label smprov_pem_label(const char *label);

/* Where a passphrase comes from, and what messages call the key. */
struct smprov_pass {
  OSSL_PASSPHRASE_CALLBACK *cb;
  void *cbarg;
  const char *what; /* "key file /etc/key.pem", "the private key" */
};

/* A block's base64 to bytes in locked memory (secmem_malloc'd; the caller
 * secmem_free()s it), or NULL with an error queued. */
unsigned char *smprov_pem_body(const struct smprov_pem_block *b, const char *what, size_t *len);
/* A private-key block (PKCS#8, encrypted PKCS#8, traditional RSA/EC, also
 * with legacy PEM encryption) to plaintext DER in locked memory, and which
 * structure it is. NULL with an error queued. */
unsigned char *smprov_pem_private_der(struct smprov_ctx *prov, const struct smprov_pem_block *b,
                                      const struct smprov_pass *pw, enum smprov_der_kind *kind,
                                      size_t *len);
/* EncryptedPrivateKeyInfo to PrivateKeyInfo DER in locked memory. */
unsigned char *smprov_decrypt_pkcs8(struct smprov_ctx *prov, const unsigned char *der, size_t len,
                                    const struct smprov_pass *pw, size_t *out_len);

/* ---- handle.c: the sealed-key handle (i2d_PrivateKey of a loaded key) ------ */

/* Whether der is a sealed-key handle (by its object identifier). */
int smprov_handle_is(const unsigned char *der, size_t len);
/* The key a handle holds, or NULL with an error queued (corrupt, or made
 * by another process or before a purge). */
struct smprov_key *smprov_handle_to_key(struct smprov_ctx *prov, const unsigned char *der,
                                        size_t len);

/* ---- keymgmt.c: what every key family shares ------------------------------- */

/* The per-family files supply new/gen_init/the type tables and use these. */
struct smprov_key *smprov_km_new(void *provctx, enum smprov_type type);
void smprov_km_free(void *keydata);
void *smprov_km_load(const void *reference, size_t reference_sz);
int smprov_km_has(const void *keydata, int selection);
int smprov_km_match(const void *a, const void *b, int selection);
int smprov_km_validate(const void *keydata, int selection, int checktype);
int smprov_km_import(void *keydata, int selection, const OSSL_PARAM params[]);
int smprov_km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg);
int smprov_km_get_params(void *keydata, OSSL_PARAM params[]);
int smprov_km_set_params(void *keydata, const OSSL_PARAM params[]);
void *smprov_km_dup(const void *keydata, int selection);
/* export_object of the store and the decoders: the key a reference names. */
int smprov_km_export_reference(void *ctx, const void *reference, size_t reference_sz,
                               OSSL_CALLBACK *export_cb, void *export_cbarg);
/* The default provider's tables for a type (import/export types, gettable,
 * settable and gen-settable parameters), fetched once. */
const OSSL_PARAM *smprov_km_types(void *provctx, enum smprov_type type, int which, int selection);
enum { SMPROV_KM_IMPORT, SMPROV_KM_EXPORT, SMPROV_KM_GETTABLE, SMPROV_KM_SETTABLE,
       SMPROV_KM_GEN_SETTABLE };

/* Key generation, done by the default provider in the private library
 * context; the result is sealed at once. */
struct smprov_gen {
  struct smprov_ctx *prov;
  enum smprov_type type;
  int selection;
  EVP_PKEY_CTX *ctx;
};
void *smprov_km_gen_init(void *provctx, enum smprov_type type, int selection,
                         const OSSL_PARAM params[]);
int smprov_km_gen_set_params(void *genctx, const OSSL_PARAM params[]);
int smprov_km_gen_set_template(void *genctx, void *templ);
void *smprov_km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg);
void smprov_km_gen_cleanup(void *genctx);

/* ---- the algorithm tables of each operation file ------------------------- */

extern const OSSL_DISPATCH smprov_keymgmt_ecx_ed25519[], smprov_keymgmt_ecx_x25519[],
    smprov_keymgmt_ecx_ed448[], smprov_keymgmt_ecx_x448[];
extern const OSSL_DISPATCH smprov_keymgmt_ec[];
extern const OSSL_DISPATCH smprov_keymgmt_rsa[], smprov_keymgmt_rsa_pss[];
extern const OSSL_DISPATCH smprov_signature_eddsa[];
extern const OSSL_DISPATCH smprov_signature_ecdsa[];
extern const OSSL_DISPATCH smprov_signature_rsa[];
extern const OSSL_DISPATCH smprov_keyexch_ecx[];
extern const OSSL_DISPATCH smprov_keyexch_ecdh[];
extern const OSSL_DISPATCH smprov_asym_cipher_rsa[];
extern const OSSL_DISPATCH smprov_store[];
extern const OSSL_ALGORITHM smprov_decoders[];
extern const OSSL_ALGORITHM smprov_encoders[];

#endif
