/*
 * provider.c - owns bench_provider, the secmem provider benchmark: what a
 * sealed key costs next to the same key in OpenSSL's default provider.
 *
 * Every key is generated once by the default provider and imported into
 * secmem (EVP_PKEY_fromdata, property query "provider=secmem"), so both
 * sides work with the same key. Each measured operation is what an
 * application does per use, on both sides alike:
 *
 *   sign     EVP_MD_CTX_new + EVP_DigestSignInit_ex + EVP_DigestSign of a
 *            48-byte message (the digest counts) + free
 *   decrypt  EVP_PKEY_CTX_new_from_pkey + EVP_PKEY_decrypt_init_ex +
 *            EVP_PKEY_decrypt of a 32-byte secret + free
 *   derive   EVP_PKEY_CTX_new_from_pkey + EVP_PKEY_derive_init +
 *            EVP_PKEY_derive_set_peer (a public-only default key, as a
 *            TLS key share) + EVP_PKEY_derive + free
 *   TLS      one full TLS 1.3 handshake over a BIO pair: new client and
 *            server SSL objects every time, no tickets, no session cache.
 *            Server SSL_CTX: the key from one side and a self-signed
 *            certificate that key signed at startup; client SSL_CTX:
 *            "provider=default", no verification.
 *
 * Operations fetch with no property query (as libssl does), so OpenSSL picks
 * the implementation for the key. That the secmem side runs in secmem is
 * checked, not assumed: every operation compares EVP_PKEY_CTX_get0_provider
 * with the side's provider, the server SSL_CTX's key is checked once, and
 * around every measurement the provider's "secmem-opens" counter must have
 * grown by at least the number of secmem operations (and not at all during
 * a default-side measurement: the TLS server's ephemeral key shares, for
 * one, must stay in the default provider).
 *
 * Method (as bench/alloc.c and bench/seal.c): every case runs in a
 * time-bounded loop (0.5 s, or 0.05 s with --quick) timed with
 * CLOCK_MONOTONIC; three rounds alternate which side goes first and the
 * median round is reported. With 2 threads, two workers share one key (and
 * one SSL_CTX) and the rates of both add up. The worker threads live for the
 * whole run, so no measurement pays for a thread's first use of OpenSSL or
 * of secmem's per-thread scratch. The machine may be shared: each
 * measurement waits for a quiet moment, one during which other processes
 * took more than a tenth of a CPU (/proc/stat) is repeated, and the count of
 * those is printed.
 *
 * Last, the memory line: 10,000 distinct P-256 keys (1,000 with --quick,
 * scaled) imported into secmem and held at once: locked memory (VmLck of
 * /proc/self/status), the provider's "secmem-bytes-locked", and the heap
 * per key (mallinfo2 uordblks), and ECDSA with the newest of them (1 and 2
 * threads) while they are all held.
 *
 * This program deliberately links no libsecmem of its own (only common.c,
 * which needs none, not common_secmem.c): the only libsecmem in the process
 * is the one inside secmem.so, so VmLck and the heap measure the provider
 * alone, and nothing reported can come from a second, idle copy.
 */
#define _POSIX_C_SOURCE 200809L

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common.h"

#ifndef SECMEM_PROVIDER_DIR
#error "SECMEM_PROVIDER_DIR must name the directory of secmem.so (bench/CMakeLists.txt sets it)"
#endif

#define MAX_THREADS 2
#define MSG_LEN 48      /* the signed message */
#define SECRET_LEN 32   /* the RSA-encrypted secret */
#define KEYS_HELD 10000 /* the memory line's keys (1,000 with --quick, scaled) */

/* Print "bench_provider: <what> failed", OpenSSL's error queue, and exit 1. */
static void die_ossl(const char *what) {
  fprintf(stderr, "bench_provider: %s failed\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

/* ---- the library context and the two providers ---------------------------- */

enum side { SIDE_SECMEM, SIDE_DEFAULT, NSIDES };
static const char *const side_name[NSIDES] = {"secmem", "default"};

static OSSL_LIB_CTX *g_lc;
static OSSL_PROVIDER *g_prov[NSIDES];

static void check_provider(const OSSL_PROVIDER *got, enum side s, const char *what) {
  if (got != g_prov[s]) {
    fprintf(stderr, "bench_provider: the %s side's %s ran in provider \"%s\", not \"%s\"\n",
            side_name[s], what, got != NULL ? OSSL_PROVIDER_get0_name(got) : "(none)",
            side_name[s]);
    exit(1);
  }
}

/* The secmem provider's counters ("secmem-opens" is a uint64, the others
 * size_t). */
static uint64_t secmem_opens(void) {
  uint64_t v = 0;
  OSSL_PARAM p[] = {OSSL_PARAM_uint64("secmem-opens", &v), OSSL_PARAM_END};
  if (OSSL_PROVIDER_get_params(g_prov[SIDE_SECMEM], p) != 1 || !OSSL_PARAM_modified(p)) {
    die_ossl("getting the secmem provider's \"secmem-opens\"");
  }
  return v;
}

static size_t secmem_size_param(const char *name) {
  size_t v = 0;
  OSSL_PARAM p[] = {OSSL_PARAM_size_t(name, &v), OSSL_PARAM_END};
  if (OSSL_PROVIDER_get_params(g_prov[SIDE_SECMEM], p) != 1 || !OSSL_PARAM_modified(p)) {
    die_ossl("getting a secmem provider parameter");
  }
  return v;
}

static void load_providers(void) {
  g_lc = OSSL_LIB_CTX_new();
  if (g_lc == NULL ||
      OSSL_PROVIDER_set_default_search_path(g_lc, SECMEM_PROVIDER_DIR) != 1) {
    die_ossl("creating the library context");
  }
  /* The default provider first: with no property query, OpenSSL prefers
   * it, so only keys of secmem run there (checked below and at run time). */
  g_prov[SIDE_DEFAULT] = OSSL_PROVIDER_load(g_lc, "default");
  g_prov[SIDE_SECMEM] = OSSL_PROVIDER_load(g_lc, "secmem");
  if (g_prov[SIDE_DEFAULT] == NULL || g_prov[SIDE_SECMEM] == NULL) {
    die_ossl("loading the default and secmem (" SECMEM_PROVIDER_DIR ") providers");
  }
  if (strcmp(OSSL_PROVIDER_get0_name(g_prov[SIDE_SECMEM]), "secmem") != 0) {
    die_ossl("naming the secmem provider");
  }
}

/* ---- keys -------------------------------------------------------------------- */

enum key_id { KEY_RSA, KEY_EC, KEY_ED25519, KEY_X25519, NKEYS };
static const char *const key_type[NKEYS] = {"RSA", "EC", "ED25519", "X25519"};

static EVP_PKEY *generate(enum key_id id) {
  EVP_PKEY *k = NULL;
  switch (id) {
  case KEY_RSA:
    k = EVP_PKEY_Q_keygen(g_lc, "provider=default", "RSA", (size_t)2048);
    break;
  case KEY_EC:
    k = EVP_PKEY_Q_keygen(g_lc, "provider=default", "EC", "P-256");
    break;
  default:
    k = EVP_PKEY_Q_keygen(g_lc, "provider=default", key_type[id]);
    break;
  }
  if (k == NULL) {
    die_ossl("generating a key with the default provider");
  }
  check_provider(EVP_PKEY_get0_provider(k), SIDE_DEFAULT, "generated key");
  return k;
}

/* 3.0 has no OSSL_PARAM_clear_free: clear what the params point at, then free. */
static void params_clear_free(OSSL_PARAM *params) {
  if (params == NULL) {
    return;
  }
  for (OSSL_PARAM *p = params; p->key != NULL; p++) {
    if (p->data != NULL) {
      OPENSSL_cleanse(p->data, p->data_size);
    }
  }
  OSSL_PARAM_free(params);
}

/* The same key (selection: EVP_PKEY_KEYPAIR or EVP_PKEY_PUBLIC_KEY) as a new
 * key of the provider propq names. */
static EVP_PKEY *copy_key(EVP_PKEY *ref, enum key_id id, int selection, const char *propq) {
  OSSL_PARAM *params = NULL;
  EVP_PKEY *k = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(g_lc, key_type[id], propq);
  if (EVP_PKEY_todata(ref, selection, &params) != 1 || ctx == NULL ||
      EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &k, selection, params) != 1) {
    die_ossl(propq);
  }
  params_clear_free(params);
  EVP_PKEY_CTX_free(ctx);
  return k;
}

static EVP_PKEY *import_into_secmem(EVP_PKEY *ref, enum key_id id) {
  EVP_PKEY *k = copy_key(ref, id, EVP_PKEY_KEYPAIR, "provider=secmem");
  check_provider(EVP_PKEY_get0_provider(k), SIDE_SECMEM, "imported key");
  return k;
}

/* ---- the operations ---------------------------------------------------------- */

enum op_kind { OP_SIGN, OP_DECRYPT, OP_DERIVE, OP_TLS };

struct op {
  const char *label;
  enum op_kind kind;
  enum key_id key;
  const char *md; /* the signature digest; the OAEP and MGF1 digest */
  int pad;        /* RSA padding */
  double target;  /* the least secmem / default ratio, 0 for none */
};

static const struct op g_ops[] = {
    {"RSA-2048 sign, PKCS#1 v1.5, SHA-256", OP_SIGN, KEY_RSA, "SHA256", RSA_PKCS1_PADDING, 0.90},
    {"RSA-2048 sign, PSS, SHA-256, salt = digest", OP_SIGN, KEY_RSA, "SHA256",
     RSA_PKCS1_PSS_PADDING, 0.90},
    {"ECDSA P-256 sign, SHA-256", OP_SIGN, KEY_EC, "SHA256", 0, 0.85},
    {"Ed25519 sign", OP_SIGN, KEY_ED25519, NULL, 0, 1.5},
    {"RSA-2048 decrypt, PKCS#1 v1.5", OP_DECRYPT, KEY_RSA, NULL, RSA_PKCS1_PADDING, 0.90},
    {"RSA-2048 decrypt, OAEP, SHA-256", OP_DECRYPT, KEY_RSA, "SHA256", RSA_PKCS1_OAEP_PADDING,
     0.90},
    {"X25519 derive", OP_DERIVE, KEY_X25519, NULL, 0, 1.0},
    {"ECDH P-256 derive", OP_DERIVE, KEY_EC, NULL, 0, 0},
    {"TLS 1.3 handshake, RSA-2048 server key", OP_TLS, KEY_RSA, NULL, 0, 0.90},
    {"TLS 1.3 handshake, P-256 server key", OP_TLS, KEY_EC, NULL, 0, 0.90},
};
#define NOPS (sizeof(g_ops) / sizeof(g_ops[0]))

/* What one operation works on, for both sides; read-only once set up. */
struct op_data {
  const struct op *op;
  EVP_PKEY *key[NSIDES];
  EVP_PKEY *peer;                    /* derive: a public-only default key */
  unsigned char expect[64];          /* derive: the shared secret; decrypt: the plaintext */
  size_t expect_len;
  unsigned char ct[512];             /* decrypt: the ciphertext */
  size_t ct_len;
  SSL_CTX *server[NSIDES];           /* TLS */
};

static unsigned char g_msg[MSG_LEN];
static SSL_CTX *g_client;

/* The parameters of a signature or decryption: padding and digests. */
static void op_params(const struct op *op, OSSL_PARAM out[4]) {
  static char pss[] = OSSL_PKEY_RSA_PAD_MODE_PSS, digest[] = OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST;
  static char oaep[] = OSSL_PKEY_RSA_PAD_MODE_OAEP, pkcs1[] = OSSL_PKEY_RSA_PAD_MODE_PKCSV15;
  static char sha256[] = "SHA256";
  size_t n = 0;
  if (op->kind == OP_SIGN && op->pad == RSA_PKCS1_PSS_PADDING) {
    out[n++] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, pss, 0);
    out[n++] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, digest, 0);
  } else if (op->kind == OP_DECRYPT && op->pad == RSA_PKCS1_OAEP_PADDING) {
    out[n++] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, oaep, 0);
    out[n++] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, sha256, 0);
    out[n++] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, sha256, 0);
  } else if (op->kind == OP_DECRYPT) {
    out[n++] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, pkcs1, 0);
  }
  out[n] = OSSL_PARAM_construct_end();
}

/* One signature into sig (*siglen: its room, then its length). */
static void do_sign(const struct op_data *d, enum side s, unsigned char *sig, size_t *siglen) {
  OSSL_PARAM params[4];
  op_params(d->op, params);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  if (md == NULL ||
      EVP_DigestSignInit_ex(md, &pctx, d->op->md, g_lc, NULL, d->key[s], params) != 1) {
    die_ossl("EVP_DigestSignInit_ex");
  }
  check_provider(EVP_PKEY_CTX_get0_provider(pctx), s, "signature");
  if (EVP_DigestSign(md, sig, siglen, g_msg, sizeof(g_msg)) != 1 || *siglen == 0) {
    die_ossl("EVP_DigestSign");
  }
  EVP_MD_CTX_free(md);
}

static void do_decrypt(const struct op_data *d, enum side s) {
  OSSL_PARAM params[4];
  op_params(d->op, params);
  unsigned char out[512];
  size_t outlen = sizeof(out);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(g_lc, d->key[s], NULL);
  if (ctx == NULL || EVP_PKEY_decrypt_init_ex(ctx, params) != 1) {
    die_ossl("EVP_PKEY_decrypt_init_ex");
  }
  check_provider(EVP_PKEY_CTX_get0_provider(ctx), s, "decryption");
  if (EVP_PKEY_decrypt(ctx, out, &outlen, d->ct, d->ct_len) != 1 || outlen != d->expect_len ||
      memcmp(out, d->expect, outlen) != 0) {
    die_ossl("EVP_PKEY_decrypt (or its plaintext)");
  }
  OPENSSL_cleanse(out, sizeof(out));
  EVP_PKEY_CTX_free(ctx);
}

/* One derivation into out (64 bytes); returns its length. */
static size_t do_derive(const struct op_data *d, enum side s, unsigned char out[64]) {
  size_t len = 64;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(g_lc, d->key[s], NULL);
  if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1) {
    die_ossl("EVP_PKEY_derive_init");
  }
  check_provider(EVP_PKEY_CTX_get0_provider(ctx), s, "key exchange");
  if (EVP_PKEY_derive_set_peer(ctx, d->peer) != 1 || EVP_PKEY_derive(ctx, out, &len) != 1) {
    die_ossl("EVP_PKEY_derive");
  }
  EVP_PKEY_CTX_free(ctx);
  return len;
}

/* One handshake step of ssl; true once its handshake is complete. */
static bool handshake_step(SSL *ssl) {
  int r = SSL_do_handshake(ssl);
  if (r == 1) {
    return true;
  }
  int e = SSL_get_error(ssl, r);
  if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
    die_ossl(SSL_is_server(ssl) ? "the server's handshake" : "the client's handshake");
  }
  return false;
}

/* One full handshake; the client SSL is returned for inspection when
 * keep_client (and freed otherwise). */
static SSL *do_handshake(const struct op_data *d, enum side s, bool keep_client) {
  SSL *c = SSL_new(g_client), *sv = SSL_new(d->server[s]);
  BIO *bc = NULL, *bs = NULL;
  if (c == NULL || sv == NULL || BIO_new_bio_pair(&bc, 0, &bs, 0) != 1) {
    die_ossl("SSL_new / BIO_new_bio_pair");
  }
  SSL_set_bio(c, bc, bc);
  SSL_set_bio(sv, bs, bs);
  SSL_set_connect_state(c);
  SSL_set_accept_state(sv);
  bool cdone = false, sdone = false;
  for (int i = 0; i < 32 && !(cdone && sdone); i++) {
    cdone = cdone || handshake_step(c);
    sdone = sdone || handshake_step(sv);
  }
  if (!cdone || !sdone || SSL_version(sv) != TLS1_3_VERSION || SSL_session_reused(sv)) {
    die_ossl("a full TLS 1.3 handshake");
  }
  SSL_free(sv);
  if (keep_client) {
    return c;
  }
  SSL_free(c);
  return NULL;
}

static void run_op(const struct op_data *d, enum side s) {
  switch (d->op->kind) {
  case OP_SIGN: {
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    do_sign(d, s, sig, &siglen);
    break;
  }
  case OP_DECRYPT:
    do_decrypt(d, s);
    break;
  case OP_DERIVE: {
    unsigned char out[64];
    size_t len = do_derive(d, s, out);
    if (len != d->expect_len || memcmp(out, d->expect, len) != 0) {
      die_ossl("derive (the shared secrets differ)");
    }
    OPENSSL_cleanse(out, sizeof(out));
    break;
  }
  case OP_TLS:
    do_handshake(d, s, false);
    break;
  }
}

/* ---- setup: keys, expected results, certificates, SSL_CTXs ------------------- */

static X509 *self_signed(EVP_PKEY *pub, EVP_PKEY *signer) {
  X509 *x = X509_new_ex(g_lc, NULL);
  X509_NAME *name = x != NULL ? X509_get_subject_name(x) : NULL;
  if (name == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
      ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
      X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL || X509_set_pubkey(x, pub) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"bench_provider",
                                 -1, -1, 0) != 1 ||
      X509_set_issuer_name(x, name) != 1 || X509_sign(x, signer, EVP_sha256()) <= 0) {
    die_ossl("making a self-signed certificate");
  }
  return x;
}

static SSL_CTX *server_ctx(EVP_PKEY *key, EVP_PKEY *pub, enum side s) {
  SSL_CTX *ctx = SSL_CTX_new_ex(g_lc, NULL, TLS_server_method());
  X509 *cert = self_signed(pub, key);
  if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    die_ossl("setting up a server SSL_CTX");
  }
  X509_free(cert);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  check_provider(EVP_PKEY_get0_provider(SSL_CTX_get0_privatekey(ctx)), s, "TLS server key");
  return ctx;
}

static void setup_client(void) {
  g_client = SSL_CTX_new_ex(g_lc, "provider=default", TLS_client_method());
  if (g_client == NULL || SSL_CTX_set_min_proto_version(g_client, TLS1_3_VERSION) != 1) {
    die_ossl("setting up the client SSL_CTX");
  }
  SSL_CTX_set_verify(g_client, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(g_client, SSL_SESS_CACHE_OFF);
}

/* The secmem-opens counter must move by at least want (secmem side) or not
 * at all (default side) around something that did want private operations. */
static void check_opens(enum side s, uint64_t before, uint64_t want, const char *what) {
  uint64_t got = secmem_opens() - before;
  if ((s == SIDE_SECMEM && got < want) || (s == SIDE_DEFAULT && got != 0)) {
    fprintf(stderr,
            "bench_provider: %s, %s side: %llu secmem key opens for %llu operations\n", what,
            side_name[s], (unsigned long long)got, (unsigned long long)want);
    exit(1);
  }
}

/* Set up d for op and check both sides once: signatures verify with the
 * default public key, decryptions and derivations give the expected bytes,
 * handshakes are TLS 1.3 with the expected signature and run in secmem. */
static void setup_op(struct op_data *d, const struct op *op, EVP_PKEY *keys[NSIDES][NKEYS]) {
  memset(d, 0, sizeof(*d));
  d->op = op;
  for (int s = 0; s < NSIDES; s++) {
    d->key[s] = keys[s][op->key];
  }
  EVP_PKEY *def = d->key[SIDE_DEFAULT];
  for (int s = 0; s < NSIDES; s++) {
    uint64_t before = secmem_opens();
    switch (op->kind) {
    case OP_SIGN: {
      unsigned char sig[512];
      size_t siglen = sizeof(sig);
      do_sign(d, (enum side)s, sig, &siglen);
      OSSL_PARAM params[4];
      op_params(op, params);
      EVP_MD_CTX *md = EVP_MD_CTX_new();
      if (md == NULL ||
          EVP_DigestVerifyInit_ex(md, NULL, op->md, g_lc, "provider=default", def, params) != 1 ||
          EVP_DigestVerify(md, sig, siglen, g_msg, sizeof(g_msg)) != 1) {
        die_ossl("verifying a signature with the default provider");
      }
      EVP_MD_CTX_free(md);
      break;
    }
    case OP_DECRYPT:
      if (s == SIDE_SECMEM) { /* the first side: set up once */
        OSSL_PARAM params[4];
        op_params(op, params);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(g_lc, def, "provider=default");
        d->expect_len = SECRET_LEN;
        d->ct_len = sizeof(d->ct);
        if (RAND_bytes(d->expect, SECRET_LEN) != 1 || ctx == NULL ||
            EVP_PKEY_encrypt_init_ex(ctx, params) != 1 ||
            EVP_PKEY_encrypt(ctx, d->ct, &d->ct_len, d->expect, SECRET_LEN) != 1) {
          die_ossl("encrypting the test secret");
        }
        EVP_PKEY_CTX_free(ctx);
      }
      do_decrypt(d, (enum side)s);
      break;
    case OP_DERIVE:
      if (s == SIDE_SECMEM) { /* the first side: set up once */
        /* A public-only default key as the peer, as a TLS key share is. */
        EVP_PKEY *full = generate(op->key);
        d->peer = copy_key(full, op->key, EVP_PKEY_PUBLIC_KEY, "provider=default");
        EVP_PKEY_free(full);
        struct op_data ref = *d;
        d->expect_len = do_derive(&ref, SIDE_DEFAULT, d->expect);
      }
      run_op(d, (enum side)s);
      break;
    case OP_TLS: {
      d->server[s] = server_ctx(d->key[s], def, (enum side)s);
      SSL *c = do_handshake(d, (enum side)s, true);
      int nid = 0;
      int want = op->key == KEY_RSA ? EVP_PKEY_RSA_PSS : EVP_PKEY_EC;
      if (SSL_get_peer_signature_type_nid(c, &nid) != 1 || nid != want) {
        die_ossl("the server's TLS 1.3 signature type");
      }
      SSL_free(c);
      break;
    }
    }
    check_opens((enum side)s, before, 1, op->label);
  }
}

/* ---- the worker threads --------------------------------------------------------- */

struct job {
  const struct op_data *d;
  enum side side;
  int threads;
  double seconds;
};

static struct {
  pthread_mutex_t lock;
  pthread_cond_t go, done;
  unsigned long gen;
  bool quit;
  struct job job;
  int finished;
  double rate[MAX_THREADS];
  unsigned long count[MAX_THREADS];
} g_pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
            .done = PTHREAD_COND_INITIALIZER};

static pthread_t g_workers[MAX_THREADS];

static void *worker_main(void *arg) {
  int id = (int)(intptr_t)arg;
  unsigned long seen = 0;
  pthread_mutex_lock(&g_pool.lock);
  for (;;) {
    while (g_pool.gen == seen && !g_pool.quit) {
      pthread_cond_wait(&g_pool.go, &g_pool.lock);
    }
    if (g_pool.quit) {
      break;
    }
    seen = g_pool.gen;
    if (id >= g_pool.job.threads) {
      continue;
    }
    struct job job = g_pool.job;
    pthread_mutex_unlock(&g_pool.lock);
    /* The clock is read after every operation: the cheapest one here
     * takes some 20 us, a clock read some 20 ns. */
    unsigned long count = 0;
    double start = now_seconds(), elapsed;
    do {
      run_op(job.d, job.side);
      count++;
      elapsed = now_seconds() - start;
    } while (elapsed < job.seconds);
    pthread_mutex_lock(&g_pool.lock);
    g_pool.count[id] = count;
    g_pool.rate[id] = (double)count / elapsed;
    g_pool.finished++;
    pthread_cond_signal(&g_pool.done);
  }
  pthread_mutex_unlock(&g_pool.lock);
  return NULL;
}

static void start_workers(void) {
  for (int i = 0; i < MAX_THREADS; i++) {
    if (pthread_create(&g_workers[i], NULL, worker_main, (void *)(intptr_t)i) != 0) {
      die_ossl("pthread_create");
    }
  }
}

static void stop_workers(void) {
  pthread_mutex_lock(&g_pool.lock);
  g_pool.quit = true;
  pthread_cond_broadcast(&g_pool.go);
  pthread_mutex_unlock(&g_pool.lock);
  for (int i = 0; i < MAX_THREADS; i++) {
    pthread_join(g_workers[i], NULL);
  }
}

/* ---- other processes' load ---------------------------------------------------- */

/* CPU seconds the whole machine has spent busy (/proc/stat) minus what this
 * process has used: what other processes took. */
static double foreign_cpu_seconds(void) {
  FILE *f = fopen("/proc/stat", "r");
  unsigned long long v[8] = {0};
  if (f == NULL || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                          &v[3], &v[4], &v[5], &v[6], &v[7]) != 8) {
    die_ossl("reading /proc/stat");
  }
  fclose(f);
  /* user nice system idle iowait irq softirq steal: all but idle and iowait */
  double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) {
    die_ossl("clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
  }
  return busy - ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
}

/* A measurement is repeated (up to MAX_TRIES times) while other processes
 * took more than FOREIGN_LIMIT of a CPU during it: on a shared machine a
 * busy neighbour would otherwise decide the ratio. /proc/stat counts in
 * clock ticks, so this is only judged for measurements of 0.2 s or more. */
#define FOREIGN_LIMIT 0.10
#define MAX_TRIES 8
static unsigned long g_repeated, g_accepted_busy;
static double g_worst_foreign;

/* Run d on side with threads workers for about seconds; the total rate.
 * The secmem-opens counter proves where the private operations ran. */
static double measure_once(const struct op_data *d, enum side side, int threads, double seconds) {
  uint64_t before = secmem_opens();
  pthread_mutex_lock(&g_pool.lock);
  g_pool.job = (struct job){d, side, threads, seconds};
  g_pool.finished = 0;
  g_pool.gen++;
  pthread_cond_broadcast(&g_pool.go);
  while (g_pool.finished < threads) {
    pthread_cond_wait(&g_pool.done, &g_pool.lock);
  }
  double rate = 0;
  unsigned long ops = 0;
  for (int i = 0; i < threads; i++) {
    rate += g_pool.rate[i];
    ops += g_pool.count[i];
  }
  pthread_mutex_unlock(&g_pool.lock);
  check_opens(side, before, ops, d->op->label);
  return rate;
}

/* Wait (up to QUIET_WAIT seconds) for a 0.1 s window in which other
 * processes took at most FOREIGN_LIMIT of a CPU. */
#define QUIET_WAIT 60
static void wait_for_quiet(void) {
  double give_up = now_seconds() + QUIET_WAIT;
  while (now_seconds() < give_up) {
    double f0 = foreign_cpu_seconds(), t0 = now_seconds();
    struct timespec window = {0, 100 * 1000 * 1000};
    nanosleep(&window, NULL);
    if ((foreign_cpu_seconds() - f0) / (now_seconds() - t0) <= FOREIGN_LIMIT) {
      return;
    }
  }
}

static double measure(const struct op_data *d, enum side side, int threads, double seconds) {
  for (int tries = 1;; tries++) {
    if (seconds >= 0.2) {
      wait_for_quiet();
    }
    double f0 = foreign_cpu_seconds(), t0 = now_seconds();
    double rate = measure_once(d, side, threads, seconds);
    double foreign = (foreign_cpu_seconds() - f0) / (now_seconds() - t0);
    if (seconds < 0.2 || foreign <= FOREIGN_LIMIT) {
      return rate;
    }
    if (tries == MAX_TRIES) {
      g_accepted_busy++;
      g_worst_foreign = foreign > g_worst_foreign ? foreign : g_worst_foreign;
      return rate;
    }
    g_repeated++;
  }
}

/* ---- the cases ------------------------------------------------------------------- */

struct bench_case {
  const struct op_data *d;
  int threads;
  double ops[NSIDES][ROUNDS];
};

/* Warm up once, then ROUNDS rounds; odd rounds run the default side first. */
static void run_cases(struct bench_case *cases, size_t n, double seconds, bool progress) {
  for (size_t i = 0; i < n; i++) {
    for (int s = 0; s < NSIDES; s++) {
      (void)measure(cases[i].d, (enum side)s, cases[i].threads, seconds / 10);
    }
  }
  for (int round = 0; round < ROUNDS; round++) {
    if (progress) {
      fprintf(stderr, "bench_provider: round %d of %d\n", round + 1, ROUNDS);
    }
    for (size_t i = 0; i < n; i++) {
      for (int k = 0; k < NSIDES; k++) {
        int s = (round + k) % NSIDES;
        cases[i].ops[s][round] = measure(cases[i].d, (enum side)s, cases[i].threads, seconds);
      }
    }
  }
}

static void print_row(const struct bench_case *c, const char *label, double target) {
  double sm = median3(c->ops[SIDE_SECMEM]), df = median3(c->ops[SIDE_DEFAULT]);
  char a[32], b[32], t[48] = "—";
  format_count(a, sizeof(a), sm);
  format_count(b, sizeof(b), df);
  if (target > 0) {
    snprintf(t, sizeof(t), ">= %.2f: %s", target, sm / df >= target ? "met" : "NOT met");
  }
  printf("| %s | %d | %s | %s | %.2f | %s |\n", label, c->threads, a, b, sm / df, t);
}

/* ---- memory: many sealed keys held at once ----------------------------------- */

/* VmLck of /proc/self/status, in KiB. */
static long vmlck_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "VmLck: %ld kB", &kib) == 1) {
      break;
    }
  }
  if (f != NULL) {
    fclose(f);
  }
  if (kib < 0) {
    die_ossl("reading VmLck from /proc/self/status");
  }
  return kib;
}

struct mem_snapshot {
  long vmlck_kib;
  size_t heap;          /* mallinfo2().uordblks */
  size_t bytes_locked;  /* "secmem-bytes-locked" */
  size_t keys;          /* "secmem-keys" */
};

static struct mem_snapshot snapshot(void) {
  struct mallinfo2 mi = mallinfo2();
  return (struct mem_snapshot){vmlck_kib(), mi.uordblks, secmem_size_param("secmem-bytes-locked"),
                               secmem_size_param("secmem-keys")};
}

/* bytes as "+1,234 KiB" (sign when asked), rounded to whole KiB. */
static void print_kib(char *out, size_t len, double bytes, bool sign) {
  char n[32];
  format_count(n, sizeof(n), (bytes < 0 ? -bytes : bytes) / 1024);
  snprintf(out, len, "%s%s KiB", bytes < 0 ? "-" : sign ? "+" : "", n);
}

/* Import n distinct P-256 keys into secmem and hold them; print the memory
 * line (scaled to KEYS_HELD when n is smaller), and measure ECDSA with the
 * newest of them while they are all held. */
static void memory_line(size_t n, double seconds) {
  EVP_PKEY **def = calloc(n, sizeof(*def)), **sm = calloc(n, sizeof(*sm));
  if (def == NULL || sm == NULL) {
    die_ossl("calloc");
  }
  struct mem_snapshot m0 = snapshot();
  double t0 = now_seconds();
  for (size_t i = 0; i < n; i++) {
    def[i] = generate(KEY_EC);
  }
  double t1 = now_seconds();
  struct mem_snapshot m1 = snapshot();
  for (size_t i = 0; i < n; i++) {
    sm[i] = import_into_secmem(def[i], KEY_EC);
  }
  double t2 = now_seconds();
  struct mem_snapshot m2 = snapshot();
  if (m2.keys - m1.keys != n) {
    die_ossl("holding every imported key (secmem-keys)");
  }

  /* ECDSA with the newest key, while all are held. */
  static const struct op ecdsa_newest = {"ECDSA P-256 sign, SHA-256", OP_SIGN, KEY_EC, "SHA256",
                                         0, 0.85};
  struct op_data d;
  memset(&d, 0, sizeof(d));
  d.op = &ecdsa_newest;
  d.key[SIDE_SECMEM] = sm[n - 1];
  d.key[SIDE_DEFAULT] = def[n - 1];
  struct bench_case c[MAX_THREADS];
  for (int t = 1; t <= MAX_THREADS; t++) {
    c[t - 1] = (struct bench_case){&d, t, {{0}}};
  }
  run_cases(c, MAX_THREADS, seconds, false);

  /* Totals scale to KEYS_HELD keys (--quick holds a tenth); per-key costs do not. */
  double scale = (double)KEYS_HELD / (double)n;
  char held[32], scaled[64] = "", lck[48], lck0[48], bl[48], bl0[48], per[32], perdef[32],
       imp[32];
  format_count(held, sizeof(held), (double)n);
  if (n != KEYS_HELD) {
    snprintf(scaled, sizeof(scaled), " (totals scaled to 10,000 keys)");
  }
  print_kib(lck0, sizeof(lck0), (double)m1.vmlck_kib * 1024, false);
  print_kib(lck, sizeof(lck), (double)(m2.vmlck_kib - m1.vmlck_kib) * 1024 * scale, true);
  print_kib(bl0, sizeof(bl0), (double)m1.bytes_locked, false);
  print_kib(bl, sizeof(bl), ((double)m2.bytes_locked - (double)m1.bytes_locked) * scale, true);
  format_count(per, sizeof(per), ((double)m2.heap - (double)m1.heap) / (double)n);
  format_count(perdef, sizeof(perdef), ((double)m1.heap - (double)m0.heap) / (double)n);
  format_count(imp, sizeof(imp), (double)n / (t2 - t1));
  printf("\nMemory, %s distinct P-256 keys sealed in secmem and held at once%s: locked memory "
         "(VmLck) %s (%s before); secmem-bytes-locked %s (%s before); heap (mallinfo2 "
         "uordblks) %s B per sealed key (a default-provider P-256 key: %s B). Generating the "
         "keys took %.2f s, importing them %.2f s (%s keys/s).\n",
         held, scaled, lck, lck0, bl, bl0, per, perdef, t1 - t0, t2 - t1, imp);
  printf("\nWhile they are held, with the newest of them:\n\n");
  printf("| operation | threads | secmem ops/s | default ops/s | ratio | target |\n");
  printf("|---|---:|---:|---:|---:|---|\n");
  char label[96];
  snprintf(label, sizeof(label), "ECDSA P-256 sign, SHA-256, %s keys held", held);
  for (int t = 0; t < MAX_THREADS; t++) {
    print_row(&c[t], label, 0.85);
  }

  for (size_t i = 0; i < n; i++) {
    EVP_PKEY_free(sm[i]);
    EVP_PKEY_free(def[i]);
  }
  free(sm);
  free(def);
  if (secmem_size_param("secmem-keys") != m1.keys) {
    die_ossl("releasing every imported key (secmem-keys)");
  }
}

/* ---- main -------------------------------------------------------------------------- */

static int usage(const char *argv0, int status) {
  fprintf(status == 0 ? stdout : stderr,
          "usage: %s [--quick]\n"
          "  (no option)  benchmark, 0.5 s per case, side and round; 10,000 keys held\n"
          "  --quick      0.05 s per case, side and round; 1,000 keys held (scaled)\n",
          argv0);
  return status;
}

static void print_provider_header(double seconds) {
  struct run_stamp st;
  run_stamp(&st);
  const char *version = "?";
  OSSL_PARAM p[] = {OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, (char **)&version, 0),
                    OSSL_PARAM_END};
  if (OSSL_PROVIDER_get_params(g_prov[SIDE_SECMEM], p) != 1) {
    die_ossl("getting the secmem provider's version");
  }
  printf("bench_provider %s: %s, secmem provider %s (%s), %s, %ld CPUs, median of %d rounds x "
         "%.2f s per case\n\n",
         st.date, OpenSSL_version(OPENSSL_VERSION), version, SECMEM_PROVIDER_DIR "/secmem.so",
         st.kernel, sysconf(_SC_NPROCESSORS_ONLN), ROUNDS, seconds);
}

/* ---- loading a key file ---------------------------------------------------------- */

/* What a server does at startup: PEM_read_bio_PrivateKey on an ordinary key
 * file (BIO_new_file, as nginx and Apache do). The secmem side is the same
 * library context as everywhere above, where secmem's decoders read the
 * file and seal the key; the default side is a context with the default
 * provider alone. */
struct load_ctx {
  OSSL_LIB_CTX *lc;
  const char *path;
  enum side side;
};

static void load_cycle(void *v) {
  struct load_ctx *c = v;
  BIO *b = BIO_new_file(c->path, "r");
  EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, c->lc, NULL) : NULL;
  if (k == NULL) {
    die_ossl("PEM_read_bio_PrivateKey");
  }
  const OSSL_PROVIDER *p = EVP_PKEY_get0_provider(k);
  if (p == NULL || strcmp(OSSL_PROVIDER_get0_name(p), side_name[c->side]) != 0) {
    die_ossl("loading the key file into the expected provider");
  }
  EVP_PKEY_free(k);
  BIO_free(b);
}

static void load_lines(EVP_PKEY *keys[NSIDES][NKEYS], double seconds) {
  OSSL_LIB_CTX *plain = OSSL_LIB_CTX_new();
  OSSL_PROVIDER *plain_default = plain != NULL ? OSSL_PROVIDER_load(plain, "default") : NULL;
  if (plain_default == NULL) {
    die_ossl("a library context with the default provider alone");
  }
  static const struct {
    enum key_id key;
    const char *label;
  } rows[] = {{KEY_RSA, "RSA-2048 key file (PKCS#8 PEM)"}, {KEY_EC, "P-256 key file (PKCS#8 PEM)"}};
  printf("\nLoading an ordinary key file, PEM_read_bio_PrivateKey on a file BIO (what a server "
         "does at startup; secmem: transparent loading, the key sealed as it is read):\n\n");
  printf("| key file | secmem loads/s | default loads/s | ratio |\n|---|---:|---:|---:|\n");
  for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
    char path[] = "/tmp/bench-provider-key-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL || PEM_write_PrivateKey(f, keys[SIDE_DEFAULT][rows[r].key], NULL, NULL, 0, NULL,
                                          NULL) != 1) {
      die_ossl("writing a key file");
    }
    fclose(f);
    struct load_ctx ctx[NSIDES] = {[SIDE_SECMEM] = {g_lc, path, SIDE_SECMEM},
                                   [SIDE_DEFAULT] = {plain, path, SIDE_DEFAULT}};
    double rate[NSIDES][ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
      for (int i = 0; i < NSIDES; i++) {
        int s = (round + i) % NSIDES; /* alternate which side goes first */
        rate[s][round] = timed_loop(load_cycle, &ctx[s], seconds);
      }
    }
    unlink(path);
    double sm = median3(rate[SIDE_SECMEM]), def = median3(rate[SIDE_DEFAULT]);
    char a[32], b[32];
    format_count(a, sizeof(a), sm);
    format_count(b, sizeof(b), def);
    printf("| %s | %s | %s | %.2f |\n", rows[r].label, a, b, sm / def);
  }
  OSSL_PROVIDER_unload(plain_default);
  OSSL_LIB_CTX_free(plain);
}

int main(int argc, char **argv) {
  double seconds = 0.5;
  size_t held = KEYS_HELD;
  if (argc == 2 && strcmp(argv[1], "--quick") == 0) {
    seconds = 0.05;
    held = KEYS_HELD / 10;
  } else if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    return usage(argv[0], 0);
  } else if (argc != 1) {
    return usage(argv[0], 2);
  }
  load_providers();
  if (RAND_bytes(g_msg, sizeof(g_msg)) != 1) {
    die_ossl("RAND_bytes");
  }

  EVP_PKEY *keys[NSIDES][NKEYS];
  for (int k = 0; k < NKEYS; k++) {
    keys[SIDE_DEFAULT][k] = generate((enum key_id)k);
    keys[SIDE_SECMEM][k] = import_into_secmem(keys[SIDE_DEFAULT][k], (enum key_id)k);
  }
  setup_client();
  struct op_data data[NOPS];
  for (size_t i = 0; i < NOPS; i++) {
    setup_op(&data[i], &g_ops[i], keys);
  }

  start_workers();
  struct bench_case cases[NOPS * MAX_THREADS];
  size_t n = 0;
  for (size_t i = 0; i < NOPS; i++) {
    for (int t = 1; t <= MAX_THREADS; t++) {
      cases[n++] = (struct bench_case){&data[i], t, {{0}}};
    }
  }
  run_cases(cases, n, seconds, true);

  print_provider_header(seconds);
  printf("Ratio = secmem ops/s / default ops/s, the same keys; 2 threads share one key (and one "
         "SSL_CTX) and their ops/s add up.\n\n");
  printf("| operation | threads | secmem ops/s | default ops/s | ratio | target |\n");
  printf("|---|---:|---:|---:|---:|---|\n");
  for (size_t i = 0; i < n; i++) {
    print_row(&cases[i], cases[i].d->op->label, cases[i].d->op->target);
  }
  fflush(stdout);

  memory_line(held, seconds);
  load_lines(keys, seconds);
  if (seconds >= 0.2) {
    printf("\nMeasurements repeated because other processes took more than %.0f%% of a CPU: "
           "%lu; accepted after %d tries while still busy: %lu",
           FOREIGN_LIMIT * 100, g_repeated, MAX_TRIES, g_accepted_busy);
    if (g_accepted_busy > 0) {
      printf(" (up to %.2f CPUs taken by others)", g_worst_foreign);
    }
    printf(".\n");
  }
  stop_workers();

  for (size_t i = 0; i < NOPS; i++) {
    SSL_CTX_free(data[i].server[SIDE_SECMEM]);
    SSL_CTX_free(data[i].server[SIDE_DEFAULT]);
    EVP_PKEY_free(data[i].peer);
  }
  SSL_CTX_free(g_client);
  for (int s = 0; s < NSIDES; s++) {
    for (int k = 0; k < NKEYS; k++) {
      EVP_PKEY_free(keys[s][k]);
    }
  }
  if (secmem_size_param("secmem-keys") != 0) {
    die_ossl("releasing every key (secmem-keys is not 0 at the end)");
  }
  OSSL_PROVIDER_unload(g_prov[SIDE_SECMEM]);
  OSSL_PROVIDER_unload(g_prov[SIDE_DEFAULT]);
  OSSL_LIB_CTX_free(g_lc);
  return 0;
}
