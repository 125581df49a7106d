/*
 * test_provider.c - the secmem provider's operations, cross-checked against
 * OpenSSL's default provider both ways: key management (import, compare,
 * dup, check, public export, private export refused) for RSA, RSA-PSS,
 * P-256/384/521, Ed25519, Ed448, X25519, X448; signatures (RSA PKCS#1, PSS,
 * raw, no padding; ECDSA; EdDSA); RSA decryption (PKCS#1 v1.5, OAEP, none,
 * TLS premaster); key exchange (ECDH, X25519, X448); keys generated sealed;
 * configuration from openssl.cnf; the provider's status parameters; threads
 * and fork.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/bn.h>

#include "harness.h"

static OSSL_LIB_CTX *libctx;

/* ---- keys ----------------------------------------------------------------------- */

/* One key type under test: a reference key and another key of the same type
 * (both default provider, generated once), and the reference imported into
 * secmem. */
struct kt {
  const char *name;
  const char *alg; /* key type for fromdata */
  const char *arg; /* curve for EC */
  bool signs;
  EVP_PKEY *ref, *other, *sm;
};

static struct kt kts[] = {
    {"RSA-2048", "RSA", NULL, true, NULL, NULL, NULL},
    {"RSA-PSS", "RSA-PSS", NULL, true, NULL, NULL, NULL},
    {"P-256", "EC", "P-256", true, NULL, NULL, NULL},
    {"P-384", "EC", "P-384", true, NULL, NULL, NULL},
    {"P-521", "EC", "P-521", true, NULL, NULL, NULL},
    {"Ed25519", "ED25519", NULL, true, NULL, NULL, NULL},
    {"Ed448", "ED448", NULL, true, NULL, NULL, NULL},
    {"X25519", "X25519", NULL, false, NULL, NULL, NULL},
    {"X448", "X448", NULL, false, NULL, NULL, NULL},
};
#define NKT (sizeof(kts) / sizeof(kts[0]))

static const char *prov_name(const EVP_PKEY *k) {
  const OSSL_PROVIDER *p = k != NULL ? EVP_PKEY_get0_provider(k) : NULL;
  return p != NULL ? OSSL_PROVIDER_get0_name(p) : "(none)";
}

static bool is_secmem(const EVP_PKEY *k) {
  return strcmp(prov_name(k), "secmem") == 0;
}

/* The reason string of the last error in the queue ("" if none); the queue
 * is emptied. The data of that error goes to data if given. */
static const char *last_reason(char *data, size_t datalen) {
  static char reason[256];
  reason[0] = '\0';
  if (data != NULL && datalen > 0) {
    data[0] = '\0';
  }
  unsigned long e;
  const char *d = NULL;
  int flags = 0;
  while ((e = ERR_get_error_all(NULL, NULL, NULL, &d, &flags)) != 0) {
    const char *r = ERR_reason_error_string(e);
    snprintf(reason, sizeof(reason), "%s", r != NULL ? r : "?");
    if (data != NULL && datalen > 0) {
      snprintf(data, datalen, "%s", (flags & ERR_TXT_STRING) && d != NULL ? d : "");
    }
  }
  return reason;
}

static EVP_PKEY *gen_default(const struct kt *t) {
  if (strcmp(t->alg, "RSA") == 0) {
    return EVP_PKEY_Q_keygen(libctx, "provider=default", "RSA", (size_t)2048);
  }
  if (strcmp(t->alg, "RSA-PSS") == 0) {
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(libctx, "RSA-PSS", "provider=default");
    EVP_PKEY *k = NULL;
    if (c == NULL || EVP_PKEY_keygen_init(c) != 1 || EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_keygen_md_name(c, "SHA256", NULL) != 1 ||
        EVP_PKEY_keygen(c, &k) != 1) {
      k = NULL;
    }
    EVP_PKEY_CTX_free(c);
    return k;
  }
  if (t->arg != NULL) {
    return EVP_PKEY_Q_keygen(libctx, "provider=default", t->alg, t->arg);
  }
  return EVP_PKEY_Q_keygen(libctx, "provider=default", t->alg);
}

/* Copy a key (selection) from one provider into another (propq). */
static EVP_PKEY *import_as(EVP_PKEY *from, const char *alg, const char *propq, int selection) {
  OSSL_PARAM *params = NULL;
  EVP_PKEY *k = NULL;
  EVP_PKEY_CTX *c = NULL;
  if (EVP_PKEY_todata(from, selection, &params) != 1) {
    return NULL;
  }
  c = EVP_PKEY_CTX_new_from_name(libctx, alg, propq);
  if (c == NULL || EVP_PKEY_fromdata_init(c) != 1 ||
      EVP_PKEY_fromdata(c, &k, selection, params) != 1) {
    k = NULL;
  }
  EVP_PKEY_CTX_free(c);
  OSSL_PARAM_free(params);
  return k;
}

static EVP_PKEY *to_secmem(EVP_PKEY *ref, const char *alg) {
  return import_as(ref, alg, "provider=secmem", EVP_PKEY_KEYPAIR);
}

/* The key type by name, its keys made on first use. */
static struct kt *kt(const char *name) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = &kts[i];
    if (strcmp(t->name, name) != 0) {
      continue;
    }
    if (t->ref == NULL) {
      t->ref = gen_default(t);
      t->other = gen_default(t);
      t->sm = t->ref != NULL ? to_secmem(t->ref, t->alg) : NULL;
      if (t->ref == NULL || t->other == NULL || t->sm == NULL) {
        fprintf(stderr, "cannot make the %s keys\n", name);
        ERR_print_errors_fp(stderr);
      }
    }
    return t;
  }
  return NULL;
}

/* ---- signing helpers -------------------------------------------------------------- */

struct sigopt {
  const char *md;   /* NULL: none (EdDSA) */
  const char *pad;  /* "pkcs1", "pss", "none" or NULL */
  const char *salt; /* PSS salt length or NULL */
  const char *mgf1; /* or NULL */
};

static const struct sigopt NOOPT = {NULL, NULL, NULL, NULL};

static void fill_params(OSSL_PARAM *p, const struct sigopt *o) {
  size_t n = 0;
  if (o->pad != NULL) {
    p[n++] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, (char *)o->pad, 0);
  }
  if (o->salt != NULL) {
    p[n++] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, (char *)o->salt, 0);
  }
  if (o->mgf1 != NULL) {
    p[n++] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, (char *)o->mgf1, 0);
  }
  p[n] = OSSL_PARAM_construct_end();
}

/* DigestSign msg with k; chunks > 1 streams it in that many updates. */
static bool dsign(EVP_PKEY *k, const struct sigopt *o, const unsigned char *msg, size_t len,
                  unsigned char *sig, size_t *siglen, int chunks) {
  OSSL_PARAM p[5];
  fill_params(p, o);
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  size_t cap = *siglen;
  bool ok = m != NULL && EVP_DigestSignInit_ex(m, NULL, o->md, libctx, NULL, k, p) == 1;
  if (ok && chunks > 1) {
    size_t step = len / (size_t)chunks;
    for (int i = 0; i < chunks && ok; i++) {
      size_t off = (size_t)i * step;
      size_t n = i == chunks - 1 ? len - off : step;
      ok = EVP_DigestSignUpdate(m, msg + off, n) == 1;
    }
    ok = ok && EVP_DigestSignFinal(m, sig, siglen) == 1;
  } else if (ok) {
    ok = EVP_DigestSign(m, sig, siglen, msg, len) == 1;
  }
  EVP_MD_CTX_free(m);
  return ok && *siglen <= cap;
}

/* 1 valid, 0 invalid, <0 error. */
static int dverify(EVP_PKEY *k, const struct sigopt *o, const unsigned char *msg, size_t len,
                   const unsigned char *sig, size_t siglen) {
  OSSL_PARAM p[5];
  fill_params(p, o);
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  int r = -2;
  if (m != NULL && EVP_DigestVerifyInit_ex(m, NULL, o->md, libctx, NULL, k, p) == 1) {
    r = EVP_DigestVerify(m, sig, siglen, msg, len);
  }
  EVP_MD_CTX_free(m);
  ERR_clear_error();
  return r;
}

static const unsigned char MSG[] =
    "The quick brown fox jumps over the lazy dog, and then signs the result with a sealed key.";

/* signer signs, verifier verifies; then the same with one bit of the
 * signature flipped, which must not verify. */
static bool sign_cross(EVP_PKEY *signer, EVP_PKEY *verifier, const struct sigopt *o, int chunks) {
  unsigned char sig[1024];
  size_t siglen = sizeof(sig);
  if (!dsign(signer, o, MSG, sizeof(MSG), sig, &siglen, chunks)) {
    fprintf(stderr, "  sign failed (%s, md %s pad %s salt %s mgf1 %s): %s\n", prov_name(signer),
            o->md ? o->md : "-", o->pad ? o->pad : "-", o->salt ? o->salt : "-",
            o->mgf1 ? o->mgf1 : "-", last_reason(NULL, 0));
    return false;
  }
  int good = dverify(verifier, o, MSG, sizeof(MSG), sig, siglen);
  sig[siglen / 2] ^= 0x10;
  int bad = dverify(verifier, o, MSG, sizeof(MSG), sig, siglen);
  if (good != 1 || bad == 1) {
    fprintf(stderr, "  verify (%s -> %s, md %s pad %s salt %s): good %d, flipped %d\n",
            prov_name(signer), prov_name(verifier), o->md ? o->md : "-", o->pad ? o->pad : "-",
            o->salt ? o->salt : "-", good, bad);
  }
  return good == 1 && bad != 1;
}

static struct sigopt default_opt(const struct kt *t) {
  struct sigopt o = NOOPT;
  if (strncmp(t->alg, "ED", 2) != 0) {
    o.md = strcmp(t->name, "P-384") == 0 ? "SHA384" : strcmp(t->name, "P-521") == 0 ? "SHA512" : "SHA256";
  }
  return o;
}

/* ---- 1. key management ------------------------------------------------------------ */

static void test_keymgmt_import(void) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = kt(kts[i].name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    CU_ASSERT_STRING_EQUAL(prov_name(t->sm), "secmem");
    CU_ASSERT_TRUE(EVP_PKEY_is_a(t->sm, t->alg));
    CU_ASSERT_EQUAL(EVP_PKEY_eq(t->sm, t->ref), 1);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(t->ref, t->sm), 1);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(t->sm, t->other), 0);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(t->other, t->sm), 0);
    CU_ASSERT_EQUAL(EVP_PKEY_get_bits(t->sm), EVP_PKEY_get_bits(t->ref));
    CU_ASSERT_EQUAL(EVP_PKEY_get_security_bits(t->sm), EVP_PKEY_get_security_bits(t->ref));
    CU_ASSERT_EQUAL(EVP_PKEY_get_size(t->sm), EVP_PKEY_get_size(t->ref));
    if (EVP_PKEY_get_bits(t->sm) != EVP_PKEY_get_bits(t->ref) ||
        EVP_PKEY_get_security_bits(t->sm) != EVP_PKEY_get_security_bits(t->ref) ||
        EVP_PKEY_get_size(t->sm) != EVP_PKEY_get_size(t->ref)) {
      fprintf(stderr, "  %s: bits %d/%d security %d/%d size %d/%d\n", t->name,
              EVP_PKEY_get_bits(t->sm), EVP_PKEY_get_bits(t->ref),
              EVP_PKEY_get_security_bits(t->sm), EVP_PKEY_get_security_bits(t->ref),
              EVP_PKEY_get_size(t->sm), EVP_PKEY_get_size(t->ref));
    }
    ERR_clear_error();
  }
}

static void test_keymgmt_dup(void) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = kt(kts[i].name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    EVP_PKEY *d = EVP_PKEY_dup(t->sm);
    CU_ASSERT_PTR_NOT_NULL(d);
    if (d == NULL) {
      fprintf(stderr, "  %s: dup failed: %s\n", t->name, last_reason(NULL, 0));
      continue;
    }
    CU_ASSERT_TRUE(is_secmem(d));
    CU_ASSERT_EQUAL(EVP_PKEY_eq(d, t->ref), 1);
    if (t->signs) {
      struct sigopt o = default_opt(t);
      CU_ASSERT_TRUE(sign_cross(d, t->ref, &o, 1));
    }
    EVP_PKEY_free(d);
    /* The original is untouched by the dup's end. */
    if (t->signs) {
      struct sigopt o = default_opt(t);
      CU_ASSERT_TRUE(sign_cross(t->sm, t->ref, &o, 1));
    }
  }
}

static void test_keymgmt_checks(void) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = kt(kts[i].name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, t->sm, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    int check = EVP_PKEY_check(c);
    int pair = EVP_PKEY_pairwise_check(c);
    int pub = EVP_PKEY_public_check(c);
    CU_ASSERT_EQUAL(check, 1);
    CU_ASSERT_EQUAL(pair, 1);
    CU_ASSERT_EQUAL(pub, 1);
    if (check != 1 || pair != 1 || pub != 1) {
      fprintf(stderr, "  %s: check %d pairwise %d public %d: %s\n", t->name, check, pair, pub,
              last_reason(NULL, 0));
    }
    EVP_PKEY_CTX_free(c);
    ERR_clear_error();
  }
}

static void test_keymgmt_public_export(void) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = kt(kts[i].name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    EVP_PKEY *pub = import_as(t->sm, t->alg, "provider=default", EVP_PKEY_PUBLIC_KEY);
    CU_ASSERT_PTR_NOT_NULL(pub);
    if (pub == NULL) {
      fprintf(stderr, "  %s: public export failed: %s\n", t->name, last_reason(NULL, 0));
      continue;
    }
    CU_ASSERT_STRING_EQUAL(prov_name(pub), "default");
    CU_ASSERT_EQUAL(EVP_PKEY_eq(pub, t->ref), 1);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(pub, t->other), 0);
    if (t->signs) {
      struct sigopt o = default_opt(t);
      CU_ASSERT_TRUE(sign_cross(t->sm, pub, &o, 1));
    }
    EVP_PKEY_free(pub);
  }
}

static void test_keymgmt_private_export_refused(void) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = kt(kts[i].name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    ERR_clear_error();
    OSSL_PARAM *params = NULL;
    CU_ASSERT_NOT_EQUAL(EVP_PKEY_todata(t->sm, EVP_PKEY_KEYPAIR, &params), 1);
    CU_ASSERT_PTR_NULL(params);
    OSSL_PARAM_free(params);
    const char *r = last_reason(NULL, 0);
    CU_ASSERT_STRING_EQUAL(r, "key is sealed and export_private is off");
    if (strcmp(r, "key is sealed and export_private is off") != 0) {
      fprintf(stderr, "  %s: private export: last reason \"%s\"\n", t->name, r);
    }
    /* And no private key reaches the default provider by import either. */
    EVP_PKEY *k = import_as(t->sm, t->alg, "provider=default", EVP_PKEY_KEYPAIR);
    CU_ASSERT_PTR_NULL(k);
    EVP_PKEY_free(k);
    ERR_clear_error();
  }
}


/* ---- 2. signatures ----------------------------------------------------------------- */

/* secmem signs / default verifies, and default signs / secmem verifies. */
static bool sign_both_ways(struct kt *t, const struct sigopt *o, int chunks) {
  bool a = sign_cross(t->sm, t->ref, o, chunks);
  bool b = sign_cross(t->ref, t->sm, o, chunks);
  return a && b;
}

static void test_sig_rsa_pkcs1(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  static const char *const mds[] = {"SHA1", "SHA256", "SHA384", "SHA512", "SHA3-256"};
  for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
    struct sigopt o = {mds[i], "pkcs1", NULL, NULL};
    CU_ASSERT_TRUE(sign_both_ways(t, &o, 1));
    CU_ASSERT_TRUE(sign_both_ways(t, &o, 3));
    /* PKCS#1 v1.5 is deterministic: the same bytes as the default provider. */
    unsigned char s1[512], s2[512];
    size_t l1 = sizeof(s1), l2 = sizeof(s2);
    CU_ASSERT_TRUE(dsign(t->sm, &o, MSG, sizeof(MSG), s1, &l1, 1));
    CU_ASSERT_TRUE(dsign(t->ref, &o, MSG, sizeof(MSG), s2, &l2, 1));
    CU_ASSERT_EQUAL(l1, 256);
    CU_ASSERT_TRUE(l1 == l2 && memcmp(s1, s2, l1) == 0);
    /* The digest is part of the signature: another digest does not verify. */
    struct sigopt other = {strcmp(mds[i], "SHA256") == 0 ? "SHA384" : "SHA256", "pkcs1", NULL, NULL};
    CU_ASSERT_EQUAL(dverify(t->ref, &other, MSG, sizeof(MSG), s1, l1), 0);
    CU_ASSERT_NOT_EQUAL(dverify(t->sm, &other, MSG, sizeof(MSG), s2, l2), 1);
  }
  /* Without any parameter, RSA signs PKCS#1 v1.5 like the default provider. */
  struct sigopt plain = {"SHA256", NULL, NULL, NULL};
  CU_ASSERT_TRUE(sign_both_ways(t, &plain, 1));
}

static void test_sig_rsa_pss(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  static const char *const salts[] = {"digest", "max", "auto", "0", "32"};
  static const char *const mgfs[] = {"SHA256", "SHA384"};
  for (size_t i = 0; i < sizeof(salts) / sizeof(salts[0]); i++) {
    for (size_t j = 0; j < 2; j++) {
      struct sigopt o = {"SHA256", "pss", salts[i], mgfs[j]};
      CU_ASSERT_TRUE(sign_both_ways(t, &o, 1));
    }
  }
  /* The salt really is what was asked: the default provider verifies with
   * the explicit length (2048-bit key, SHA-256: max is 256 - 32 - 2). */
  static const struct {
    const char *sign, *len;
  } exact[] = {{"digest", "32"}, {"max", "222"}, {"auto", "222"}, {"0", "0"}, {"32", "32"}};
  for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
    struct sigopt o = {"SHA256", "pss", exact[i].sign, "SHA256"};
    struct sigopt v = {"SHA256", "pss", exact[i].len, "SHA256"};
    unsigned char sig[512];
    size_t len = sizeof(sig);
    CU_ASSERT_TRUE(dsign(t->sm, &o, MSG, sizeof(MSG), sig, &len, 1));
    CU_ASSERT_EQUAL(dverify(t->ref, &v, MSG, sizeof(MSG), sig, len), 1);
    /* And the MGF1 digest is honoured: with another one it does not verify. */
    struct sigopt w = {"SHA256", "pss", "auto", "SHA384"};
    CU_ASSERT_NOT_EQUAL(dverify(t->ref, &w, MSG, sizeof(MSG), sig, len), 1);
  }
  /* PSS signatures are randomised (with a salt). */
  struct sigopt o = {"SHA256", "pss", "32", NULL};
  unsigned char s1[512], s2[512];
  size_t l1 = sizeof(s1), l2 = sizeof(s2);
  CU_ASSERT_TRUE(dsign(t->sm, &o, MSG, sizeof(MSG), s1, &l1, 1));
  CU_ASSERT_TRUE(dsign(t->sm, &o, MSG, sizeof(MSG), s2, &l2, 1));
  CU_ASSERT_TRUE(l1 == l2 && memcmp(s1, s2, l1) != 0);
}

/* The same PSS settings through the EVP_PKEY_CTX setters on the DigestSign
 * context, rather than parameters. */
static bool sign_pss_ctrl(EVP_PKEY *k, int salt, const char *mgf1, unsigned char *sig,
                          size_t *len) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pc = NULL;
  bool ok = m != NULL &&
            EVP_DigestSignInit_ex(m, &pc, "SHA256", libctx, NULL, k, NULL) == 1 &&
            EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, salt) == 1 &&
            (mgf1 == NULL || EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, mgf1, NULL) == 1) &&
            EVP_DigestSign(m, sig, len, MSG, sizeof(MSG)) == 1;
  EVP_MD_CTX_free(m);
  return ok;
}

static void test_sig_rsa_pss_ctrl(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  static const struct {
    int salt;
    const char *len;
  } cases[] = {{RSA_PSS_SALTLEN_DIGEST, "32"}, {RSA_PSS_SALTLEN_MAX, "222"},
               {RSA_PSS_SALTLEN_AUTO, "222"}, {0, "0"}, {32, "32"}};
  static const char *const mgfs[] = {"SHA256", "SHA384"};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    for (size_t j = 0; j < 2; j++) {
      unsigned char sig[512];
      size_t len = sizeof(sig);
      bool ok = sign_pss_ctrl(t->sm, cases[i].salt, mgfs[j], sig, &len);
      CU_ASSERT_TRUE(ok);
      if (!ok) {
        fprintf(stderr, "  ctrl salt %d mgf1 %s: %s\n", cases[i].salt, mgfs[j], last_reason(NULL, 0));
        continue;
      }
      struct sigopt v = {"SHA256", "pss", cases[i].len, mgfs[j]};
      CU_ASSERT_EQUAL(dverify(t->ref, &v, MSG, sizeof(MSG), sig, len), 1);
      /* and the other way: default signs through the setters, secmem verifies */
      len = sizeof(sig);
      CU_ASSERT_TRUE(sign_pss_ctrl(t->ref, cases[i].salt, mgfs[j], sig, &len));
      CU_ASSERT_EQUAL(dverify(t->sm, &v, MSG, sizeof(MSG), sig, len), 1);
    }
  }
}

static void test_sig_rsa_pss_restricted(void) {
  struct kt *t = kt("RSA-PSS");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  /* No parameters at all: the key's restrictions decide. */
  CU_ASSERT_TRUE(sign_both_ways(t, &NOOPT, 1));
  struct sigopt sha = {"SHA256", NULL, NULL, NULL};
  CU_ASSERT_TRUE(sign_both_ways(t, &sha, 1));
  struct sigopt pss32 = {"SHA256", "pss", "32", NULL};
  CU_ASSERT_TRUE(sign_both_ways(t, &pss32, 3));
  /* Which minimum salt does the key carry? (The default provider's view.) */
  int min = -1;
  CU_ASSERT_EQUAL(EVP_PKEY_get_int_param(t->ref, OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, &min), 1);
  int smmin = -2;
  CU_ASSERT_EQUAL(EVP_PKEY_get_int_param(t->sm, OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, &smmin), 1);
  CU_ASSERT_EQUAL(min, smmin);
  CU_ASSERT_TRUE_FATAL(min > 0);
  char below[16];
  snprintf(below, sizeof(below), "%d", min - 1);
  /* A salt below the restriction: refused when it is set, by both. */
  for (int which = 0; which < 2; which++) {
    EVP_PKEY *k = which == 0 ? t->sm : t->ref;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    CU_ASSERT_EQUAL_FATAL(EVP_DigestSignInit_ex(m, &pc, "SHA256", libctx, NULL, k, NULL), 1);
    ERR_clear_error();
    CU_ASSERT_TRUE(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, min - 1) <= 0);
    CU_ASSERT_NOT_EQUAL(ERR_peek_last_error(), 0);
    ERR_clear_error();
    /* the restriction itself is fine */
    CU_ASSERT_EQUAL(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, min), 1);
    EVP_MD_CTX_free(m);
    /* and through parameters at init */
    struct sigopt low = {"SHA256", "pss", below, NULL};
    unsigned char sig[512];
    size_t len = sizeof(sig);
    CU_ASSERT_FALSE(dsign(k, &low, MSG, sizeof(MSG), sig, &len, 1));
    ERR_clear_error();
  }
  /* PKCS#1 v1.5 with a PSS key: refused. */
  struct sigopt pkcs1 = {"SHA256", "pkcs1", NULL, NULL};
  unsigned char sig[512];
  size_t len = sizeof(sig);
  CU_ASSERT_FALSE(dsign(t->sm, &pkcs1, MSG, sizeof(MSG), sig, &len, 1));
  ERR_clear_error();
  /* A digest other than the restricted one: refused, as by default. */
  struct sigopt sha512 = {"SHA512", "pss", NULL, NULL};
  len = sizeof(sig);
  bool def = dsign(t->ref, &sha512, MSG, sizeof(MSG), sig, &len, 1);
  len = sizeof(sig);
  bool sm = dsign(t->sm, &sha512, MSG, sizeof(MSG), sig, &len, 1);
  CU_ASSERT_FALSE(def);
  /* The key is restricted to SHA-256: both refuse SHA-512. */
  CU_ASSERT_EQUAL(sm, def);
  if (sm) {
    fprintf(stderr, "  RSA-PSS key restricted to SHA256 signed with SHA512 by secmem; default: %s\n",
            def ? "signs too" : "refuses");
  }
  ERR_clear_error();
  /* An MGF1 digest other than the restricted one (SHA-256 when only the
   * digest is restricted: RSA-PSS keygen sets both): as by default. */
  char mgf[64] = "";
  EVP_PKEY_get_utf8_string_param(t->ref, OSSL_PKEY_PARAM_RSA_MGF1_DIGEST, mgf, sizeof(mgf), NULL);
  struct sigopt mgf384 = {"SHA256", "pss", NULL, "SHA384"};
  len = sizeof(sig);
  def = dsign(t->ref, &mgf384, MSG, sizeof(MSG), sig, &len, 1);
  ERR_clear_error();
  len = sizeof(sig);
  sm = dsign(t->sm, &mgf384, MSG, sizeof(MSG), sig, &len, 1);
  ERR_clear_error();
  CU_ASSERT_FALSE(def);
  CU_ASSERT_EQUAL(sm, def);
  if (sm != def) {
    fprintf(stderr, "  RSA-PSS key (mgf1 \"%s\") with MGF1 SHA384: default %s, secmem %s\n", mgf,
            def ? "signs" : "refuses", sm ? "signs" : "refuses");
  }
}

/* EVP_PKEY_sign / EVP_PKEY_verify with explicit settings. */
static bool pkey_sign(EVP_PKEY *k, int pad, const char *md, const unsigned char *tbs, size_t tbslen,
                      unsigned char *sig, size_t *siglen) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, k, NULL);
  bool ok = c != NULL && EVP_PKEY_sign_init(c) == 1 &&
            (pad == 0 || EVP_PKEY_CTX_set_rsa_padding(c, pad) == 1) &&
            (md == NULL || EVP_PKEY_CTX_set_signature_md(c, EVP_get_digestbyname(md)) == 1) &&
            EVP_PKEY_sign(c, sig, siglen, tbs, tbslen) == 1;
  EVP_PKEY_CTX_free(c);
  return ok;
}

static int pkey_verify(EVP_PKEY *k, int pad, const char *md, const unsigned char *tbs,
                       size_t tbslen, const unsigned char *sig, size_t siglen) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, k, NULL);
  int r = -2;
  if (c != NULL && EVP_PKEY_verify_init(c) == 1 &&
      (pad == 0 || EVP_PKEY_CTX_set_rsa_padding(c, pad) == 1) &&
      (md == NULL || EVP_PKEY_CTX_set_signature_md(c, EVP_get_digestbyname(md)) == 1)) {
    r = EVP_PKEY_verify(c, sig, siglen, tbs, tbslen);
  }
  EVP_PKEY_CTX_free(c);
  ERR_clear_error();
  return r;
}

static void test_sig_rsa_raw_pkcs1(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  unsigned char blob[36];
  RAND_bytes(blob, sizeof(blob)); /* an MD5+SHA1 sized blob, as TLS 1.0 signs */
  unsigned char s1[512], s2[512];
  size_t l1 = sizeof(s1), l2 = sizeof(s2);
  CU_ASSERT_TRUE_FATAL(pkey_sign(t->sm, RSA_PKCS1_PADDING, NULL, blob, sizeof(blob), s1, &l1));
  CU_ASSERT_EQUAL(l1, 256);
  CU_ASSERT_EQUAL(pkey_verify(t->ref, RSA_PKCS1_PADDING, NULL, blob, sizeof(blob), s1, l1), 1);
  CU_ASSERT_EQUAL(pkey_verify(t->sm, RSA_PKCS1_PADDING, NULL, blob, sizeof(blob), s1, l1), 1);
  CU_ASSERT_TRUE_FATAL(pkey_sign(t->ref, RSA_PKCS1_PADDING, NULL, blob, sizeof(blob), s2, &l2));
  CU_ASSERT_TRUE(l1 == l2 && memcmp(s1, s2, l1) == 0);
  CU_ASSERT_EQUAL(pkey_verify(t->sm, RSA_PKCS1_PADDING, NULL, blob, sizeof(blob), s2, l2), 1);
  s1[7] ^= 1;
  CU_ASSERT_NOT_EQUAL(pkey_verify(t->ref, RSA_PKCS1_PADDING, NULL, blob, sizeof(blob), s1, l1), 1);
  CU_ASSERT_NOT_EQUAL(pkey_verify(t->sm, RSA_PKCS1_PADDING, NULL, blob, sizeof(blob), s1, l1), 1);
  /* With a digest set, EVP_PKEY_sign takes a digest: SHA-256 of MSG. */
  unsigned char d[32];
  unsigned int dl = 0;
  EVP_Digest(MSG, sizeof(MSG), d, &dl, EVP_sha256(), NULL);
  l1 = sizeof(s1);
  CU_ASSERT_TRUE(pkey_sign(t->sm, RSA_PKCS1_PADDING, "SHA256", d, dl, s1, &l1));
  CU_ASSERT_EQUAL(pkey_verify(t->ref, RSA_PKCS1_PADDING, "SHA256", d, dl, s1, l1), 1);
  struct sigopt o = {"SHA256", "pkcs1", NULL, NULL};
  CU_ASSERT_EQUAL(dverify(t->ref, &o, MSG, sizeof(MSG), s1, l1), 1);
  /* A digest of the wrong size is refused. */
  l1 = sizeof(s1);
  CU_ASSERT_FALSE(pkey_sign(t->sm, RSA_PKCS1_PADDING, "SHA256", d, 20, s1, &l1));
  ERR_clear_error();
}

static void test_sig_rsa_no_padding(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  unsigned char block[256];
  RAND_bytes(block, sizeof(block));
  block[0] = 0;
  unsigned char s1[512], s2[512];
  size_t l1 = sizeof(s1), l2 = sizeof(s2);
  CU_ASSERT_TRUE_FATAL(pkey_sign(t->sm, RSA_NO_PADDING, NULL, block, sizeof(block), s1, &l1));
  CU_ASSERT_TRUE_FATAL(pkey_sign(t->ref, RSA_NO_PADDING, NULL, block, sizeof(block), s2, &l2));
  CU_ASSERT_EQUAL(l1, 256);
  CU_ASSERT_TRUE(l1 == l2 && memcmp(s1, s2, l1) == 0);
  CU_ASSERT_EQUAL(pkey_verify(t->ref, RSA_NO_PADDING, NULL, block, sizeof(block), s1, l1), 1);
  CU_ASSERT_EQUAL(pkey_verify(t->sm, RSA_NO_PADDING, NULL, block, sizeof(block), s2, l2), 1);
  /* Recovering with the public key gives the block back. */
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, t->ref, NULL);
  unsigned char rec[512];
  size_t rl = sizeof(rec);
  CU_ASSERT_EQUAL(EVP_PKEY_verify_recover_init(c), 1);
  CU_ASSERT_EQUAL(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING), 1);
  CU_ASSERT_EQUAL(EVP_PKEY_verify_recover(c, rec, &rl, s1, l1), 1);
  CU_ASSERT_TRUE(rl == sizeof(block) && memcmp(rec, block, rl) == 0);
  EVP_PKEY_CTX_free(c);
  /* A short block is refused. */
  l1 = sizeof(s1);
  CU_ASSERT_FALSE(pkey_sign(t->sm, RSA_NO_PADDING, NULL, block, 255, s1, &l1));
  ERR_clear_error();
}

static void test_sig_ecdsa(void) {
  static const char *const names[] = {"P-256", "P-384", "P-521"};
  static const char *const mds[] = {"SHA256", "SHA384", "SHA512"};
  for (size_t i = 0; i < 3; i++) {
    struct kt *t = kt(names[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    for (size_t j = 0; j < 3; j++) {
      struct sigopt o = {mds[j], NULL, NULL, NULL};
      CU_ASSERT_TRUE(sign_both_ways(t, &o, 3));
      CU_ASSERT_TRUE(sign_both_ways(t, &o, 1));
      /* EVP_PKEY_sign of a digest */
      const EVP_MD *md = EVP_get_digestbyname(mds[j]);
      unsigned char d[64], sig[256];
      unsigned int dl = 0;
      size_t sl = sizeof(sig);
      EVP_Digest(MSG, sizeof(MSG), d, &dl, md, NULL);
      CU_ASSERT_TRUE(pkey_sign(t->sm, 0, mds[j], d, dl, sig, &sl));
      CU_ASSERT_TRUE(sl <= (size_t)EVP_PKEY_get_size(t->ref));
      CU_ASSERT_EQUAL(pkey_verify(t->ref, 0, mds[j], d, dl, sig, sl), 1);
      CU_ASSERT_EQUAL(pkey_verify(t->sm, 0, mds[j], d, dl, sig, sl), 1);
      CU_ASSERT_EQUAL(dverify(t->ref, &o, MSG, sizeof(MSG), sig, sl), 1);
      d[0] ^= 1;
      CU_ASSERT_NOT_EQUAL(pkey_verify(t->ref, 0, mds[j], d, dl, sig, sl), 1);
      CU_ASSERT_NOT_EQUAL(pkey_verify(t->sm, 0, mds[j], d, dl, sig, sl), 1);
      /* and default's signature of a digest verifies with secmem */
      d[0] ^= 1;
      sl = sizeof(sig);
      CU_ASSERT_TRUE(pkey_sign(t->ref, 0, mds[j], d, dl, sig, &sl));
      CU_ASSERT_EQUAL(pkey_verify(t->sm, 0, mds[j], d, dl, sig, sl), 1);
    }
  }
}

static void test_sig_eddsa(void) {
  static const char *const names[] = {"Ed25519", "Ed448"};
  for (size_t i = 0; i < 2; i++) {
    struct kt *t = kt(names[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    CU_ASSERT_TRUE(sign_both_ways(t, &NOOPT, 1));
    /* EdDSA is deterministic: the same bytes as the default provider. */
    unsigned char s1[256], s2[256];
    size_t l1 = sizeof(s1), l2 = sizeof(s2);
    CU_ASSERT_TRUE(dsign(t->sm, &NOOPT, MSG, sizeof(MSG), s1, &l1, 1));
    CU_ASSERT_TRUE(dsign(t->ref, &NOOPT, MSG, sizeof(MSG), s2, &l2, 1));
    CU_ASSERT_EQUAL(l1, (size_t)EVP_PKEY_get_size(t->ref));
    CU_ASSERT_TRUE(l1 == l2 && memcmp(s1, s2, l1) == 0);
    /* An empty message, too */
    l1 = sizeof(s1);
    CU_ASSERT_TRUE(dsign(t->sm, &NOOPT, (const unsigned char *)"", 0, s1, &l1, 1));
    CU_ASSERT_EQUAL(dverify(t->ref, &NOOPT, (const unsigned char *)"", 0, s1, l1), 1);
    /* EdDSA takes no digest */
    struct sigopt sha = {"SHA256", NULL, NULL, NULL};
    l1 = sizeof(s1);
    CU_ASSERT_FALSE(dsign(t->sm, &sha, MSG, sizeof(MSG), s1, &l1, 1));
    ERR_clear_error();
  }
}

/* A DigestSign context copied mid-stream: both finish with valid
 * signatures, each over its own continuation. */
static void copy_midstream(struct kt *t, const struct sigopt *o) {
  OSSL_PARAM p[5];
  fill_params(p, o);
  EVP_MD_CTX *a = EVP_MD_CTX_new(), *b = EVP_MD_CTX_new();
  CU_ASSERT_EQUAL_FATAL(EVP_DigestSignInit_ex(a, NULL, o->md, libctx, NULL, t->sm, p), 1);
  static const unsigned char head[] = "common head, ", tail_a[] = "tail A", tail_b[] = "tail B!";
  CU_ASSERT_EQUAL(EVP_DigestSignUpdate(a, head, sizeof(head) - 1), 1);
  int copied = EVP_MD_CTX_copy_ex(b, a);
  CU_ASSERT_EQUAL(copied, 1);
  if (copied != 1) {
    fprintf(stderr, "  %s: EVP_MD_CTX_copy_ex: %s\n", t->name, last_reason(NULL, 0));
    EVP_MD_CTX_free(a);
    EVP_MD_CTX_free(b);
    return;
  }
  CU_ASSERT_EQUAL(EVP_DigestSignUpdate(a, tail_a, sizeof(tail_a) - 1), 1);
  CU_ASSERT_EQUAL(EVP_DigestSignUpdate(b, tail_b, sizeof(tail_b) - 1), 1);
  unsigned char sa[512], sb[512];
  size_t la = sizeof(sa), lb = sizeof(sb);
  CU_ASSERT_EQUAL(EVP_DigestSignFinal(b, sb, &lb), 1);
  CU_ASSERT_EQUAL(EVP_DigestSignFinal(a, sa, &la), 1);
  unsigned char ma[64], mb[64];
  memcpy(ma, head, sizeof(head) - 1);
  memcpy(ma + sizeof(head) - 1, tail_a, sizeof(tail_a) - 1);
  memcpy(mb, head, sizeof(head) - 1);
  memcpy(mb + sizeof(head) - 1, tail_b, sizeof(tail_b) - 1);
  size_t mla = sizeof(head) - 1 + sizeof(tail_a) - 1, mlb = sizeof(head) - 1 + sizeof(tail_b) - 1;
  CU_ASSERT_EQUAL(dverify(t->ref, o, ma, mla, sa, la), 1);
  CU_ASSERT_EQUAL(dverify(t->ref, o, mb, mlb, sb, lb), 1);
  CU_ASSERT_NOT_EQUAL(dverify(t->ref, o, ma, mla, sb, lb), 1);
  EVP_MD_CTX_free(a);
  EVP_MD_CTX_free(b);
}

static void test_sig_copy_midstream(void) {
  struct sigopt pkcs1 = {"SHA256", "pkcs1", NULL, NULL};
  struct sigopt pss = {"SHA384", "pss", "digest", "SHA256"};
  struct sigopt ec = {"SHA256", NULL, NULL, NULL};
  copy_midstream(kt("RSA-2048"), &pkcs1);
  copy_midstream(kt("RSA-2048"), &pss);
  copy_midstream(kt("P-256"), &ec);
  copy_midstream(kt("P-521"), &ec);
}


/* ---- 3. RSA encryption ---------------------------------------------------------------- */

struct encopt {
  int pad;
  const char *oaep_md; /* or NULL */
  const char *mgf1;    /* or NULL */
  const char *label;   /* or NULL */
  unsigned tls;        /* client version, or 0 */
};

static EVP_PKEY_CTX *cipher_ctx(EVP_PKEY *k, const struct encopt *o, bool decrypt) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, k, NULL);
  bool ok = c != NULL && (decrypt ? EVP_PKEY_decrypt_init(c) : EVP_PKEY_encrypt_init(c)) == 1 &&
            EVP_PKEY_CTX_set_rsa_padding(c, o->pad) == 1;
  if (ok && o->oaep_md != NULL) {
    ok = EVP_PKEY_CTX_set_rsa_oaep_md_name(c, o->oaep_md, NULL) == 1;
  }
  if (ok && o->mgf1 != NULL) {
    ok = EVP_PKEY_CTX_set_rsa_mgf1_md_name(c, o->mgf1, NULL) == 1;
  }
  if (ok && o->label != NULL) {
    void *l = OPENSSL_strdup(o->label);
    ok = EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, (int)strlen(o->label)) == 1;
    if (!ok) {
      OPENSSL_free(l);
    }
  }
  if (ok && o->tls != 0) {
    unsigned v = o->tls;
    OSSL_PARAM p[] = {OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, &v),
                      OSSL_PARAM_construct_end()};
    ok = EVP_PKEY_CTX_set_params(c, p) == 1;
  }
  if (!ok) {
    char data[256];
    const char *r = last_reason(data, sizeof(data));
    fprintf(stderr, "  cipher ctx (%s, pad %d): %s (%s)\n", prov_name(k), o->pad, r, data);
    EVP_PKEY_CTX_free(c);
    return NULL;
  }
  return c;
}

static bool encrypt_with(EVP_PKEY *k, const struct encopt *o, const unsigned char *in, size_t inlen,
                         unsigned char *out, size_t *outlen) {
  EVP_PKEY_CTX *c = cipher_ctx(k, o, false);
  size_t need = 0;
  bool ok = c != NULL && EVP_PKEY_encrypt(c, NULL, &need, in, inlen) == 1 && need <= *outlen &&
            EVP_PKEY_encrypt(c, out, outlen, in, inlen) == 1;
  EVP_PKEY_CTX_free(c);
  return ok;
}

/* The EVP_PKEY_decrypt result (1 good); errors stay in the queue. */
static int decrypt_with(EVP_PKEY *k, const struct encopt *o, const unsigned char *in, size_t inlen,
                        unsigned char *out, size_t *outlen) {
  EVP_PKEY_CTX *c = cipher_ctx(k, o, true);
  size_t need = 0;
  int r = -2;
  if (c != NULL && EVP_PKEY_decrypt(c, NULL, &need, in, inlen) == 1 && need <= *outlen) {
    r = EVP_PKEY_decrypt(c, out, outlen, in, inlen);
  }
  EVP_PKEY_CTX_free(c);
  return r;
}

static const struct encopt PKCS1 = {RSA_PKCS1_PADDING, NULL, NULL, NULL, 0};
static const struct encopt OAEP = {RSA_PKCS1_OAEP_PADDING, NULL, NULL, NULL, 0};
static const struct encopt OAEP256 = {RSA_PKCS1_OAEP_PADDING, "SHA256", "SHA256", "a label", 0};
static const struct encopt NOPAD = {RSA_NO_PADDING, NULL, NULL, NULL, 0};

/* from encrypts, to decrypts: the plaintext comes back. */
static bool enc_cross(EVP_PKEY *from, EVP_PKEY *to, const struct encopt *o, const unsigned char *pt,
                      size_t ptlen) {
  unsigned char ct[512], out[512];
  size_t ctlen = sizeof(ct), outlen = sizeof(out);
  if (!encrypt_with(from, o, pt, ptlen, ct, &ctlen)) {
    fprintf(stderr, "  encrypt (%s, pad %d) failed: %s\n", prov_name(from), o->pad, last_reason(NULL, 0));
    return false;
  }
  int r = decrypt_with(to, o, ct, ctlen, out, &outlen);
  if (r != 1 || outlen != ptlen || memcmp(out, pt, ptlen) != 0) {
    fprintf(stderr, "  decrypt (%s -> %s, pad %d): r %d, %zu bytes: %s\n", prov_name(from),
            prov_name(to), o->pad, r, outlen, last_reason(NULL, 0));
    return false;
  }
  return true;
}

static void test_rsa_decrypt(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  unsigned char pt[64];
  RAND_bytes(pt, sizeof(pt));
  const struct encopt *modes[] = {&PKCS1, &OAEP, &OAEP256};
  for (size_t i = 0; i < 3; i++) {
    CU_ASSERT_TRUE(enc_cross(t->ref, t->sm, modes[i], pt, sizeof(pt)));
    CU_ASSERT_TRUE(enc_cross(t->ref, t->sm, modes[i], pt, 1));
  }
  /* The OAEP settings matter: SHA256/label ciphertext does not decrypt
   * with another label, nor with SHA-1. */
  unsigned char ct[512], out[512];
  size_t ctlen = sizeof(ct), outlen = sizeof(out);
  CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, &OAEP256, pt, sizeof(pt), ct, &ctlen));
  struct encopt other_label = OAEP256;
  other_label.label = "another label";
  CU_ASSERT_NOT_EQUAL(decrypt_with(t->sm, &other_label, ct, ctlen, out, &outlen), 1);
  ERR_clear_error();
  outlen = sizeof(out);
  CU_ASSERT_NOT_EQUAL(decrypt_with(t->sm, &OAEP, ct, ctlen, out, &outlen), 1);
  ERR_clear_error();
  /* Without padding: a 256-byte block starting 00 comes back as is. */
  unsigned char block[256];
  RAND_bytes(block, sizeof(block));
  block[0] = 0;
  CU_ASSERT_TRUE(enc_cross(t->ref, t->sm, &NOPAD, block, sizeof(block)));
}

static void test_rsa_decrypt_corrupted(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  unsigned char pt[32];
  RAND_bytes(pt, sizeof(pt));
  const struct encopt *modes[] = {&PKCS1, &OAEP, &OAEP256};
  for (size_t i = 0; i < 3; i++) {
    for (size_t pos = 0; pos < 256; pos += 85) {
      unsigned char ct[512], out[512];
      size_t ctlen = sizeof(ct), outlen = sizeof(out);
      CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, modes[i], pt, sizeof(pt), ct, &ctlen));
      ct[pos] ^= 0x40;
      ERR_clear_error();
      int r = decrypt_with(t->sm, modes[i], ct, ctlen, out, &outlen);
      CU_ASSERT_NOT_EQUAL(r, 1);
      CU_ASSERT_NOT_EQUAL(ERR_peek_last_error(), 0);
      ERR_clear_error();
      /* the default provider agrees */
      outlen = sizeof(out);
      CU_ASSERT_NOT_EQUAL(decrypt_with(t->ref, modes[i], ct, ctlen, out, &outlen), 1);
      ERR_clear_error();
    }
  }
  /* A ciphertext of the wrong length; and one not below the modulus. */
  unsigned char ct[512], out[512];
  size_t outlen = sizeof(out);
  memset(ct, 0xff, sizeof(ct));
  CU_ASSERT_NOT_EQUAL(decrypt_with(t->sm, &PKCS1, ct, 255, out, &outlen), 1);
  CU_ASSERT_NOT_EQUAL(ERR_peek_last_error(), 0);
  ERR_clear_error();
  outlen = sizeof(out);
  CU_ASSERT_NOT_EQUAL(decrypt_with(t->sm, &NOPAD, ct, 256, out, &outlen), 1);
  CU_ASSERT_NOT_EQUAL(ERR_peek_last_error(), 0);
  ERR_clear_error();
  /* and the key still works after all that */
  CU_ASSERT_TRUE(enc_cross(t->ref, t->sm, &OAEP, pt, sizeof(pt)));
}

static void test_rsa_encrypt(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  unsigned char pt[64];
  RAND_bytes(pt, sizeof(pt));
  const struct encopt *modes[] = {&PKCS1, &OAEP, &OAEP256};
  for (size_t i = 0; i < 3; i++) {
    CU_ASSERT_TRUE(enc_cross(t->sm, t->ref, modes[i], pt, sizeof(pt)));
    CU_ASSERT_TRUE(enc_cross(t->sm, t->sm, modes[i], pt, sizeof(pt)));
  }
  unsigned char block[256];
  RAND_bytes(block, sizeof(block));
  block[0] = 0;
  CU_ASSERT_TRUE(enc_cross(t->sm, t->ref, &NOPAD, block, sizeof(block)));
}

/* TLS premaster decryption. The default provider does the RFC 5246 check
 * only with RSA_PKCS1_WITH_TLS_PADDING (which libssl sets, with the client
 * version); with RSA_PKCS1_PADDING it decrypts plainly. secmem does the check
 * with RSA_PKCS1_PADDING plus a client version; libssl's way is tried too. */
static void tls_premaster_with(struct kt *t, int smpad) {
  struct encopt tls = PKCS1;
  tls.tls = 0x0303;
  struct encopt smtls = tls, deftls = tls;
  smtls.pad = smpad;
  deftls.pad = RSA_PKCS1_WITH_TLS_PADDING;
  /* A proper premaster: the same 48 bytes from both. */
  unsigned char pm[48], ct[512], a[512], b[512];
  RAND_bytes(pm, sizeof(pm));
  pm[0] = 0x03;
  pm[1] = 0x03;
  size_t ctlen = sizeof(ct), la = sizeof(a), lb = sizeof(b);
  CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, &PKCS1, pm, sizeof(pm), ct, &ctlen));
  int ra = decrypt_with(t->sm, &smtls, ct, ctlen, a, &la);
  CU_ASSERT_EQUAL(ra, 1);
  if (ra != 1) {
    fprintf(stderr, "  TLS premaster with pad %d refused by secmem: %s\n", smpad, last_reason(NULL, 0));
    return;
  }
  CU_ASSERT_EQUAL(decrypt_with(t->ref, &deftls, ct, ctlen, b, &lb), 1);
  CU_ASSERT_EQUAL(la, 48);
  CU_ASSERT_EQUAL(lb, 48);
  CU_ASSERT_TRUE(la == 48 && memcmp(a, pm, 48) == 0);
  CU_ASSERT_TRUE(lb == 48 && memcmp(b, pm, 48) == 0);
  /* Bad padding: 48 random bytes, return 1, no error, on both (RFC 5246
   * 7.4.7.1: R is 48 random bytes). */
  unsigned char block[256];
  RAND_bytes(block, sizeof(block));
  block[0] = 0x00;
  block[1] = 0x55; /* not 02 */
  ctlen = sizeof(ct);
  CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, &NOPAD, block, sizeof(block), ct, &ctlen));
  ERR_clear_error();
  la = sizeof(a);
  lb = sizeof(b);
  ra = decrypt_with(t->sm, &smtls, ct, ctlen, a, &la);
  int rb = decrypt_with(t->ref, &deftls, ct, ctlen, b, &lb);
  CU_ASSERT_EQUAL(ra, 1);
  CU_ASSERT_EQUAL(rb, 1);
  CU_ASSERT_EQUAL(la, 48);
  CU_ASSERT_EQUAL(lb, 48);
  unsigned char b2[512];
  size_t lb2 = sizeof(b2);
  CU_ASSERT_EQUAL(decrypt_with(t->ref, &deftls, ct, ctlen, b2, &lb2), 1);
  CU_ASSERT_TRUE(lb2 == 48 && memcmp(b, b2, 48) != 0);
  unsigned char a2[512];
  size_t la2 = sizeof(a2);
  CU_ASSERT_EQUAL(decrypt_with(t->sm, &smtls, ct, ctlen, a2, &la2), 1);
  CU_ASSERT_EQUAL(la2, 48);
  CU_ASSERT_TRUE(memcmp(a, a2, 48) != 0);
  CU_ASSERT_EQUAL(ERR_peek_error(), 0);
  ERR_clear_error();
  /* A proper PKCS#1 block with the wrong version inside: random as well. */
  pm[1] = 0x01;
  ctlen = sizeof(ct);
  CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, &PKCS1, pm, sizeof(pm), ct, &ctlen));
  la = sizeof(a);
  lb = sizeof(b);
  CU_ASSERT_EQUAL(decrypt_with(t->sm, &smtls, ct, ctlen, a, &la), 1);
  CU_ASSERT_EQUAL(decrypt_with(t->ref, &deftls, ct, ctlen, b, &lb), 1);
  CU_ASSERT_TRUE(la == 48 && memcmp(a + 2, pm + 2, 46) != 0);
  CU_ASSERT_TRUE(lb == 48 && memcmp(b + 2, pm + 2, 46) != 0);
  /* A proper PKCS#1 block of the wrong length (47 bytes): random as well. */
  pm[1] = 0x03;
  ctlen = sizeof(ct);
  CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, &PKCS1, pm, 47, ct, &ctlen));
  la = sizeof(a);
  lb = sizeof(b);
  CU_ASSERT_EQUAL(decrypt_with(t->sm, &smtls, ct, ctlen, a, &la), 1);
  CU_ASSERT_EQUAL(decrypt_with(t->ref, &deftls, ct, ctlen, b, &lb), 1);
  CU_ASSERT_TRUE(la == 48 && memcmp(a + 2, pm + 2, 45) != 0);
  CU_ASSERT_TRUE(lb == 48 && memcmp(b + 2, pm + 2, 45) != 0);
  ERR_clear_error();
}

/* Plain PKCS#1 padding with a TLS client version set: as OpenSSL 3.0's
 * default provider, a proper block decrypts and bad padding is an error
 * (only RSA_PKCS1_WITH_TLS_PADDING substitutes random bytes). */
static void test_rsa_tls_premaster(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  struct encopt tls = PKCS1;
  tls.tls = 0x0303;
  unsigned char pm[48], ct[512], a[512], b[512], block[256];
  RAND_bytes(pm, sizeof(pm));
  pm[0] = 0x03;
  pm[1] = 0x03;
  size_t ctlen = sizeof(ct), la = sizeof(a), lb = sizeof(b);
  CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, &PKCS1, pm, sizeof(pm), ct, &ctlen));
  CU_ASSERT_EQUAL(decrypt_with(t->sm, &tls, ct, ctlen, a, &la), 1);
  CU_ASSERT_EQUAL(decrypt_with(t->ref, &tls, ct, ctlen, b, &lb), 1);
  CU_ASSERT_TRUE(la == 48 && lb == 48 && memcmp(a, pm, 48) == 0 && memcmp(b, pm, 48) == 0);
  RAND_bytes(block, sizeof(block));
  block[0] = 0x00;
  block[1] = 0x55;
  ctlen = sizeof(ct);
  CU_ASSERT_TRUE_FATAL(encrypt_with(t->ref, &NOPAD, block, sizeof(block), ct, &ctlen));
  la = sizeof(a);
  lb = sizeof(b);
  CU_ASSERT_NOT_EQUAL(decrypt_with(t->sm, &tls, ct, ctlen, a, &la), 1);
  CU_ASSERT_NOT_EQUAL(decrypt_with(t->ref, &tls, ct, ctlen, b, &lb), 1);
  ERR_clear_error();
}

static void test_rsa_tls_padding_mode(void) {
  struct kt *t = kt("RSA-2048");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  tls_premaster_with(t, RSA_PKCS1_WITH_TLS_PADDING);
}


/* ---- 4. key exchange -------------------------------------------------------------------- */

/* priv with peer: the shared secret (its length in *len), or false. */
static bool derive(EVP_PKEY *priv, EVP_PKEY *peer, int cofactor, unsigned char *out, size_t *len) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, priv, NULL);
  size_t need = 0;
  bool ok = c != NULL && EVP_PKEY_derive_init(c) == 1;
  if (ok && cofactor >= 0) {
    ok = EVP_PKEY_CTX_set_ecdh_cofactor_mode(c, cofactor) == 1;
  }
  ok = ok && EVP_PKEY_derive_set_peer(c, peer) == 1 && EVP_PKEY_derive(c, NULL, &need) == 1 &&
       need <= *len && EVP_PKEY_derive(c, out, len) == 1;
  if (!ok) {
    char data[256];
    const char *r = last_reason(data, sizeof(data));
    fprintf(stderr, "  derive (%s with %s peer): %s (%s)\n", prov_name(priv), prov_name(peer), r, data);
  }
  EVP_PKEY_CTX_free(c);
  return ok;
}

static void exchange_both_ways(const char *name, int cofactor) {
  struct kt *t = kt(name);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  unsigned char s1[128], s2[128], s3[128];
  size_t l1 = sizeof(s1), l2 = sizeof(s2), l3 = sizeof(s3);
  /* secmem private + default peer == default private of the peer + the
   * secmem key as its peer == the same with the reference. */
  CU_ASSERT_TRUE_FATAL(derive(t->sm, t->other, cofactor, s1, &l1));
  CU_ASSERT_TRUE_FATAL(derive(t->other, t->ref, cofactor, s3, &l3));
  CU_ASSERT_TRUE(l1 == l3 && memcmp(s1, s3, l1) == 0);
  /* A real peer is public only (as from d2i_PUBKEY): the same secret.
   * (Regression: such a peer, imported with every selection bit set, was
   * once taken for a private key.) */
  EVP_PKEY *pub_peer = import_as(t->other, t->alg, "provider=default", EVP_PKEY_PUBLIC_KEY);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pub_peer);
  unsigned char s5[128];
  size_t l5 = sizeof(s5);
  CU_ASSERT_TRUE(derive(t->sm, pub_peer, cofactor, s5, &l5));
  CU_ASSERT_TRUE(l5 == l1 && memcmp(s5, s1, l1) == 0);
  EVP_PKEY_free(pub_peer);
  /* A documented limit: a secmem key cannot be the peer of another
   * provider's exchange. OpenSSL 3.0's EVP_PKEY_derive_set_peer exports the
   * peer with the selection that EVP_PKEY_KEYPAIR also uses, and a sealed
   * key refuses to export its private part; set_peer fails cleanly, with
   * the provider's reason on the queue. Its public export works (below). */
  ERR_clear_error();
  bool direct = derive(t->other, t->sm, cofactor, s2, &l2);
  CU_ASSERT_FALSE(direct); /* derive() printed the reason from the queue */
  ERR_clear_error();
  /* The same through the secmem key's public export. */
  EVP_PKEY *pub = import_as(t->sm, t->alg, "provider=default", EVP_PKEY_PUBLIC_KEY);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
  l2 = sizeof(s2);
  CU_ASSERT_TRUE(derive(t->other, pub, cofactor, s2, &l2));
  CU_ASSERT_TRUE(l1 > 0 && l1 == l2 && memcmp(s1, s2, l1) == 0);
  EVP_PKEY_free(pub);
  size_t want = strcmp(name, "P-256") == 0 ? 32 : strcmp(name, "P-384") == 0 ? 48
                : strcmp(name, "X25519") == 0 ? 32 : 56;
  CU_ASSERT_EQUAL(l1, want);
  /* A secmem key with a secmem peer: the same. */
  EVP_PKEY *peer = to_secmem(t->other, t->alg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(peer);
  unsigned char s4[128];
  size_t l4 = sizeof(s4);
  CU_ASSERT_TRUE(derive(t->sm, peer, cofactor, s4, &l4));
  CU_ASSERT_TRUE(l4 == l1 && memcmp(s4, s1, l1) == 0);
  EVP_PKEY_free(peer);
}

static void test_ecdh(void) {
  exchange_both_ways("P-256", -1);
  exchange_both_ways("P-384", -1);
}

static void test_ecdh_cofactor(void) {
  exchange_both_ways("P-256", 1);
  exchange_both_ways("P-384", 1);
  exchange_both_ways("P-256", 0);
  /* The mode reads back. */
  struct kt *t = kt("P-256");
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, t->sm, NULL);
  CU_ASSERT_EQUAL(EVP_PKEY_derive_init(c), 1);
  int mode = 1;
  OSSL_PARAM set[] = {OSSL_PARAM_construct_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, &mode),
                      OSSL_PARAM_construct_end()};
  CU_ASSERT_EQUAL(EVP_PKEY_CTX_set_params(c, set), 1);
  CU_ASSERT_EQUAL(EVP_PKEY_CTX_get_ecdh_cofactor_mode(c), 1);
  mode = 2;
  CU_ASSERT_NOT_EQUAL(EVP_PKEY_CTX_set_params(c, set), 1);
  ERR_clear_error();
  EVP_PKEY_CTX_free(c);
}

static void test_xdh(void) {
  exchange_both_ways("X25519", -1);
  exchange_both_ways("X448", -1);
}

static bool peer_refused(EVP_PKEY *priv, EVP_PKEY *peer) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, priv, NULL);
  unsigned char out[128];
  size_t len = sizeof(out);
  ERR_clear_error();
  bool ok = c != NULL && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, peer) == 1 &&
            EVP_PKEY_derive(c, out, &len) == 1;
  bool err = ERR_peek_error() != 0;
  ERR_clear_error();
  EVP_PKEY_CTX_free(c);
  return !ok && err;
}

static void test_exchange_wrong_peer(void) {
  struct kt *p256 = kt("P-256"), *p384 = kt("P-384"), *x25519 = kt("X25519"), *x448 = kt("X448");
  CU_ASSERT_TRUE(peer_refused(p256->sm, p384->ref));
  CU_ASSERT_TRUE(peer_refused(p256->sm, p384->sm));
  CU_ASSERT_TRUE(peer_refused(p384->sm, p256->ref));
  CU_ASSERT_TRUE(peer_refused(p256->ref, p384->sm)); /* default refuses too */
  CU_ASSERT_TRUE(peer_refused(x25519->sm, x448->ref));
  CU_ASSERT_TRUE(peer_refused(x448->sm, x25519->sm));
  CU_ASSERT_TRUE(peer_refused(p256->sm, x25519->ref));
  /* Signing-only and exchange-only keys are refused for the other job. */
  struct kt *ed = kt("Ed25519");
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, ed->sm, NULL);
  CU_ASSERT_NOT_EQUAL(EVP_PKEY_derive_init(c), 1);
  EVP_PKEY_CTX_free(c);
  c = EVP_PKEY_CTX_new_from_pkey(libctx, x25519->sm, NULL);
  CU_ASSERT_NOT_EQUAL(EVP_PKEY_sign_init(c), 1);
  EVP_PKEY_CTX_free(c);
  ERR_clear_error();
}


/* ---- 5. keys generated sealed ------------------------------------------------------------- */

static EVP_PKEY *gen_secmem(const char *alg) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(libctx, alg, "provider=secmem");
  EVP_PKEY *k = NULL;
  bool ok = c != NULL && EVP_PKEY_keygen_init(c) == 1;
  if (ok && strcmp(alg, "EC") == 0) {
    ok = EVP_PKEY_CTX_set_group_name(c, "P-384") == 1;
  } else if (ok && strcmp(alg, "RSA") == 0) {
    ok = EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048) == 1;
  }
  if (!ok || EVP_PKEY_keygen(c, &k) != 1) {
    char data[256];
    const char *r = last_reason(data, sizeof(data));
    fprintf(stderr, "  secmem keygen %s: %s (%s)\n", alg, r, data);
    k = NULL;
  }
  EVP_PKEY_CTX_free(c);
  return k;
}

static void test_generate_sealed(void) {
  static const struct {
    const char *alg, *md;
    int bits;
  } cases[] = {{"ED25519", NULL, 256}, {"EC", "SHA384", 384}, {"RSA", "SHA256", 2048}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    EVP_PKEY *k = gen_secmem(cases[i].alg);
    CU_ASSERT_PTR_NOT_NULL(k);
    if (k == NULL) {
      continue;
    }
    CU_ASSERT_STRING_EQUAL(prov_name(k), "secmem");
    CU_ASSERT_EQUAL(EVP_PKEY_get_bits(k), cases[i].bits);
    /* the private part never leaves */
    OSSL_PARAM *params = NULL;
    ERR_clear_error();
    CU_ASSERT_NOT_EQUAL(EVP_PKEY_todata(k, EVP_PKEY_KEYPAIR, &params), 1);
    OSSL_PARAM_free(params);
    CU_ASSERT_STRING_EQUAL(last_reason(NULL, 0), "key is sealed and export_private is off");
    /* its public part does, and verifies its signatures */
    EVP_PKEY *pub = import_as(k, cases[i].alg, "provider=default", EVP_PKEY_PUBLIC_KEY);
    CU_ASSERT_PTR_NOT_NULL(pub);
    struct sigopt o = {cases[i].md, NULL, NULL, NULL};
    if (pub != NULL) {
      CU_ASSERT_STRING_EQUAL(prov_name(pub), "default");
      CU_ASSERT_EQUAL(EVP_PKEY_eq(pub, k), 1);
      CU_ASSERT_TRUE(sign_cross(k, pub, &o, 1));
      CU_ASSERT_TRUE(sign_cross(k, k, &o, 1));
    }
    /* a sound key pair */
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, k, NULL);
    CU_ASSERT_EQUAL(EVP_PKEY_pairwise_check(c), 1);
    EVP_PKEY_CTX_free(c);
    /* and not the same key twice */
    if (strcmp(cases[i].alg, "RSA") != 0) {
      EVP_PKEY *k2 = gen_secmem(cases[i].alg);
      CU_ASSERT_PTR_NOT_NULL(k2);
      CU_ASSERT_EQUAL(EVP_PKEY_eq(k, k2), 0);
      EVP_PKEY_free(k2);
    }
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k);
    ERR_clear_error();
  }
}


/* ---- 6. configuration ---------------------------------------------------------------------- */

/* Each configuration runs in a forked child: the provider's settings
 * (mlock policy, backing, rekey interval) are process-wide. */
static const char *cfg_lines; /* the secmem section's extra lines, for the child */
static const char *cfg_key, *cfg_value; /* the bad entry the error must name */

/* A fresh library context configured by an openssl.cnf with default and
 * secmem (plus extra lines in secmem's section). *loaded: load_config's
 * result. The file is removed again. */
static OSSL_LIB_CTX *configured_as(const char *extra, bool activate, int *loaded) {
  char path[] = "/tmp/secmem-cnf-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    return NULL;
  }
  FILE *f = fdopen(fd, "w");
  if (f == NULL) {
    close(fd);
    unlink(path);
    return NULL;
  }
  fprintf(f,
          "openssl_conf = openssl_init\n"
          "[openssl_init]\n"
          "providers = provider_sect\n"
          "[provider_sect]\n"
          "default = default_sect\n"
          "secmem = secmem_sect\n"
          "[default_sect]\n"
          "activate = 1\n"
          "[secmem_sect]\n"
          "module = %s/secmem.so\n"
          "%s\n"
          "%s\n",
          SECMEM_PROVIDER_DIR, extra, activate ? "activate = 1" : "");
  fclose(f);
  OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
  *loaded = ctx != NULL ? OSSL_LIB_CTX_load_config(ctx, path) : 0;
  unlink(path);
  return ctx;
}

static OSSL_LIB_CTX *configured(const char *extra, int *loaded) {
  return configured_as(extra, true, loaded);
}

/* In ctx: import ref into secmem, sign with it, verify with ref. */
static bool works_in(OSSL_LIB_CTX *ctx, struct kt *t, EVP_PKEY **out) {
  OSSL_PARAM *params = NULL;
  EVP_PKEY *k = NULL;
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(ctx, t->alg, "provider=secmem");
  bool ok = EVP_PKEY_todata(t->ref, EVP_PKEY_KEYPAIR, &params) == 1 && c != NULL &&
            EVP_PKEY_fromdata_init(c) == 1 && EVP_PKEY_fromdata(c, &k, EVP_PKEY_KEYPAIR, params) == 1 &&
            is_secmem(k);
  OSSL_PARAM_free(params);
  EVP_PKEY_CTX_free(c);
  if (ok && t->signs) {
    struct sigopt o = default_opt(t);
    unsigned char sig[1024];
    size_t len = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    ok = EVP_DigestSignInit_ex(m, NULL, o.md, ctx, NULL, k, NULL) == 1 &&
         EVP_DigestSign(m, sig, &len, MSG, sizeof(MSG)) == 1 &&
         dverify(t->ref, &o, MSG, sizeof(MSG), sig, len) == 1;
    EVP_MD_CTX_free(m);
  }
  if (!ok) {
    fprintf(stderr, "%s does not work in the configured context: %s\n", t->name, last_reason(NULL, 0));
  }
  if (out != NULL && ok) {
    *out = k;
  } else {
    EVP_PKEY_free(k);
  }
  return ok;
}

static const char *const cfg_types[] = {"RSA-2048", "P-256", "Ed25519", "X25519", "Ed448"};

static void child_export_private_yes(void) {
  int loaded = 0;
  OSSL_LIB_CTX *ctx = configured("export_private = yes", &loaded);
  if (ctx == NULL || loaded != 1 || !OSSL_PROVIDER_available(ctx, "secmem")) {
    ERR_print_errors_fp(stderr);
    _exit(10);
  }
  for (size_t i = 0; i < sizeof(cfg_types) / sizeof(cfg_types[0]); i++) {
    struct kt *t = kt(cfg_types[i]);
    EVP_PKEY *k = NULL;
    if (!works_in(ctx, t, &k)) {
      _exit(11);
    }
    OSSL_PARAM *params = NULL;
    if (EVP_PKEY_todata(k, EVP_PKEY_KEYPAIR, &params) != 1) {
      fprintf(stderr, "%s: private export refused with export_private = yes: %s\n", t->name,
              last_reason(NULL, 0));
      _exit(12);
    }
    OSSL_PARAM_free(params);
    /* and into the default provider (of the configured context) */
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(ctx, t->alg, "provider=default");
    EVP_PKEY *back = NULL;
    params = NULL;
    bool ok = EVP_PKEY_todata(k, EVP_PKEY_KEYPAIR, &params) == 1 && EVP_PKEY_fromdata_init(c) == 1 &&
              EVP_PKEY_fromdata(c, &back, EVP_PKEY_KEYPAIR, params) == 1;
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(c);
    if (!ok || strcmp(prov_name(back), "default") != 0 || EVP_PKEY_eq(back, t->ref) != 1) {
      fprintf(stderr, "%s: exported private key does not match\n", t->name);
      _exit(13);
    }
    /* It is the private key: it signs what the reference verifies. */
    if (t->signs) {
      struct sigopt o = default_opt(t);
      unsigned char sig[1024];
      size_t len = sizeof(sig);
      EVP_MD_CTX *m = EVP_MD_CTX_new();
      ok = EVP_DigestSignInit_ex(m, NULL, o.md, ctx, NULL, back, NULL) == 1 &&
           EVP_DigestSign(m, sig, &len, MSG, sizeof(MSG)) == 1 &&
           dverify(t->ref, &o, MSG, sizeof(MSG), sig, len) == 1;
      EVP_MD_CTX_free(m);
      if (!ok) {
        fprintf(stderr, "%s: exported private key does not sign\n", t->name);
        _exit(14);
      }
    }
    EVP_PKEY_free(back);
    EVP_PKEY_free(k);
  }
  /* The main context's provider still refuses: old keys and new ones. */
  struct kt *t = kt("P-256");
  OSSL_PARAM *params = NULL;
  if (EVP_PKEY_todata(t->sm, EVP_PKEY_KEYPAIR, &params) == 1) {
    fprintf(stderr, "main context's key exported after another context allowed it\n");
    _exit(15);
  }
  ERR_clear_error();
  EVP_PKEY *fresh = to_secmem(t->ref, t->alg);
  if (fresh == NULL || EVP_PKEY_todata(fresh, EVP_PKEY_KEYPAIR, &params) == 1) {
    fprintf(stderr, "main context's new key exported after another context allowed it\n");
    _exit(16);
  }
  EVP_PKEY_free(fresh);
  ERR_clear_error();
  OSSL_LIB_CTX_free(ctx);
  _exit(0);
}

static void expect_child_ok(void (*fn)(void), const char *what) {
  struct death_result r;
  death_run(fn, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
  if (r.signalled || r.status != 0) {
    fprintf(stderr, "\n  %s: child %s %d; stderr:\n%s\n", what, r.signalled ? "signal" : "status",
            r.signalled ? r.sig : r.status, r.stderr);
  }
}

static void prepare_cfg_keys(void) {
  for (size_t i = 0; i < sizeof(cfg_types) / sizeof(cfg_types[0]); i++) {
    CU_ASSERT_PTR_NOT_NULL(kt(cfg_types[i])->sm);
  }
}

static void test_config_export_private(void) {
  prepare_cfg_keys();
  expect_child_ok(child_export_private_yes, "export_private = yes");
}

/* The provider's error naming cfg_key and cfg_value: in the queue? The
 * queue is emptied; what it held goes to stderr if not. */
static bool queue_names_bad_value(void) {
  unsigned long e;
  const char *data = NULL, *func = NULL;
  int flags = 0;
  bool named = false;
  char all[1024] = "";
  while ((e = ERR_get_error_all(NULL, NULL, &func, &data, &flags)) != 0) {
    const char *d = (flags & ERR_TXT_STRING) && data != NULL ? data : "";
    const char *rs = ERR_reason_error_string(e);
    size_t n = strlen(all);
    snprintf(all + n, sizeof(all) - n, "  [%s] %s: %s\n", func != NULL ? func : "?",
             rs != NULL ? rs : "(no reason string)", d);
    if (strstr(d, cfg_key) != NULL && strstr(d, cfg_value) != NULL) {
      named = true;
    }
  }
  if (!named) {
    fprintf(stderr, "\"%s\": no error names %s and %s; the queue:\n%s", cfg_lines, cfg_key,
            cfg_value, all);
  }
  return named;
}

static void child_bad_value(void) {
  /* activate = 1: secmem does not come up. (OpenSSL 3.0.19's config
   * loader treats a failed activation as non-fatal: load_config returns 1
   * and CONF_modules_load pops the errors, so the queue is not checked
   * here.) */
  int loaded = 0;
  ERR_clear_error();
  OSSL_LIB_CTX *ctx = configured(cfg_lines, &loaded);
  if (ctx == NULL) {
    _exit(10);
  }
  if (loaded == 1 && OSSL_PROVIDER_available(ctx, "secmem")) {
    fprintf(stderr, "\"%s\": secmem is available\n", cfg_lines);
    _exit(11);
  }
  OSSL_LIB_CTX_free(ctx);
  ERR_clear_error();
  /* Configured without activate, then loaded: the load fails, and the
   * queue holds the provider's error naming the key and the value. */
  ctx = configured_as(cfg_lines, false, &loaded);
  if (ctx == NULL || loaded != 1) {
    ERR_print_errors_fp(stderr);
    _exit(12);
  }
  ERR_clear_error();
  OSSL_PROVIDER *p = OSSL_PROVIDER_load(ctx, "secmem");
  if (p != NULL) {
    fprintf(stderr, "\"%s\": OSSL_PROVIDER_load succeeded\n", cfg_lines);
    _exit(13);
  }
  if (!queue_names_bad_value()) {
    _exit(14);
  }
  /* The main context's secmem is unaffected. */
  struct kt *t = kt("P-256");
  struct sigopt o = default_opt(t);
  if (!sign_cross(t->sm, t->ref, &o, 1)) {
    _exit(15);
  }
  OSSL_LIB_CTX_free(ctx);
  _exit(0);
}

static void test_config_bad_values(void) {
  static const struct {
    const char *line, *key, *value;
  } bad[] = {
      {"rekey_interval_ms = soon", "rekey_interval_ms", "soon"},
      {"mlock = sometimes", "mlock", "sometimes"},
      {"memfd_secret = maybe", "memfd_secret", "maybe"},
      {"export_private = perhaps", "export_private", "perhaps"},
      {"core_dumps = never", "core_dumps", "never"},
      {"rekey_interval_ms = -5", "rekey_interval_ms", "-5"},
      {"rekey_interval_ms = 86400001", "rekey_interval_ms", "86400001"},
      {"rekey_interval_ms = 10ms", "rekey_interval_ms", "10ms"},
      {"mlock = Required", "mlock", "Required"},
      {"transparent = maybe", "transparent", "maybe"},
  };
  prepare_cfg_keys();
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cfg_lines = bad[i].line;
    cfg_key = bad[i].key;
    cfg_value = bad[i].value;
    expect_child_ok(child_bad_value, bad[i].line);
  }
}

static void child_good_value(void) {
  int loaded = 0;
  OSSL_LIB_CTX *ctx = configured_as(cfg_lines, false, &loaded);
  OSSL_PROVIDER *p = ctx != NULL && loaded == 1 ? OSSL_PROVIDER_load(ctx, "secmem") : NULL;
  if (p == NULL) {
    fprintf(stderr, "\"%s\": explicit load failed\n", cfg_lines);
    ERR_print_errors_fp(stderr);
    _exit(9);
  }
  OSSL_PROVIDER_unload(p);
  OSSL_LIB_CTX_free(ctx);
  ctx = configured(cfg_lines, &loaded);
  if (ctx == NULL || loaded != 1 || !OSSL_PROVIDER_available(ctx, "secmem")) {
    fprintf(stderr, "\"%s\": load %d available %d\n", cfg_lines, loaded,
            ctx != NULL ? OSSL_PROVIDER_available(ctx, "secmem") : -1);
    ERR_print_errors_fp(stderr);
    _exit(10);
  }
  for (size_t i = 0; i < sizeof(cfg_types) / sizeof(cfg_types[0]); i++) {
    EVP_PKEY *k = NULL;
    struct kt *t = kt(cfg_types[i]);
    if (!works_in(ctx, t, &k)) {
      _exit(11);
    }
    /* export_private is off by default */
    OSSL_PARAM *params = NULL;
    if (EVP_PKEY_todata(k, EVP_PKEY_KEYPAIR, &params) == 1) {
      fprintf(stderr, "\"%s\": private export allowed\n", cfg_lines);
      _exit(12);
    }
    ERR_clear_error();
    EVP_PKEY_free(k);
  }
  OSSL_LIB_CTX_free(ctx);
  _exit(0);
}

static void test_config_good_values(void) {
  static const char *const good[] = {
      "mlock = best-effort",
      "memfd_secret = off",
      "rekey_interval_ms = 0",
      "core_dumps = keep",
      "export_private = no",
      "transparent = no",
      "transparent = yes",
      "rekey_interval_ms = 86400000",
      "mlock = best-effort\nmemfd_secret = off\nrekey_interval_ms = 0\ncore_dumps = keep",
      "",
  };
  prepare_cfg_keys();
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    cfg_lines = good[i];
    expect_child_ok(child_good_value, good[i]);
  }
}

/* The library code of the error a refused private export of k raises. */
static int export_error_lib(EVP_PKEY *k, char *reason, size_t len) {
  OSSL_PARAM *params = NULL;
  ERR_clear_error();
  if (EVP_PKEY_todata(k, EVP_PKEY_KEYPAIR, &params) == 1) {
    OSSL_PARAM_free(params);
    return -1;
  }
  unsigned long e = ERR_peek_last_error();
  const char *r = ERR_reason_error_string(e);
  snprintf(reason, len, "%s", r != NULL ? r : "?");
  ERR_clear_error();
  return ERR_GET_LIB(e);
}

/* A second instance of the module (another library context) comes and
 * goes: the first instance's keys and operations are unaffected, and its
 * errors keep their reason strings throughout, never going through a
 * freed instance's handle. (While two instances live, an error may carry
 * either instance's library code: both register the same strings.) */
static void child_second_instance(void) {
  struct kt *t = kt("P-256");
  char r0[128], r1[128], r2[128];
  int lib0 = export_error_lib(t->sm, r0, sizeof(r0));
  int loaded = 0;
  OSSL_LIB_CTX *ctx = configured("", &loaded);
  if (ctx == NULL || loaded != 1 || !OSSL_PROVIDER_available(ctx, "secmem")) {
    _exit(10);
  }
  if (!works_in(ctx, t, NULL)) {
    _exit(11);
  }
  int lib1 = export_error_lib(t->sm, r1, sizeof(r1));
  OSSL_LIB_CTX_free(ctx);
  int lib2 = export_error_lib(t->sm, r2, sizeof(r2));
  fprintf(stderr, "first instance's error: lib %d \"%s\"; with a second instance: lib %d \"%s\"; "
          "after it is freed: lib %d \"%s\"\n", lib0, r0, lib1, r1, lib2, r2);
  struct sigopt o = default_opt(t);
  if (!sign_cross(t->sm, t->ref, &o, 1)) {
    _exit(12);
  }
  EVP_PKEY *fresh = to_secmem(t->ref, t->alg);
  if (fresh == NULL || !sign_cross(fresh, t->ref, &o, 1)) {
    _exit(13);
  }
  EVP_PKEY_free(fresh);
  (void)lib1;
  if (lib2 != lib0 || strcmp(r0, "key is sealed and export_private is off") != 0 ||
      strcmp(r1, r0) != 0 || strcmp(r2, r0) != 0) {
    _exit(14);
  }
  _exit(0);
}

static void test_config_second_instance(void) {
  prepare_cfg_keys();
  expect_child_ok(child_second_instance, "second instance");
}



/* The provider loaded and unloaded again and again (each time in a fresh
 * library context, so OpenSSL dlcloses the module): nothing accumulates.
 * This runs in a fresh process (this program re-executed with
 * --load-unload), where no other context keeps the module mapped. (The
 * module's destructor calls secmem_shutdown, which unmaps everything.) */
static int load_unload_main(void) {
  long first = -1, last = -1;
  for (int i = 0; i < 5; i++) {
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *d = NULL, *sp = NULL;
    if (ctx == NULL || OSSL_PROVIDER_set_default_search_path(ctx, SECMEM_PROVIDER_DIR) != 1 ||
        (d = OSSL_PROVIDER_load(ctx, "default")) == NULL ||
        (sp = OSSL_PROVIDER_load(ctx, "secmem")) == NULL) {
      return 10;
    }
    /* a key imported, used and freed */
    EVP_PKEY *ref = EVP_PKEY_Q_keygen(ctx, "provider=default", "EC", "P-256");
    OSSL_PARAM *params = NULL;
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(ctx, "EC", "provider=secmem");
    unsigned char sig[128];
    size_t len = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    bool ok = ref != NULL && EVP_PKEY_todata(ref, EVP_PKEY_KEYPAIR, &params) == 1 &&
              EVP_PKEY_fromdata_init(c) == 1 && EVP_PKEY_fromdata(c, &k, EVP_PKEY_KEYPAIR, params) == 1 &&
              EVP_DigestSignInit_ex(m, NULL, "SHA256", ctx, NULL, k, NULL) == 1 &&
              EVP_DigestSign(m, sig, &len, MSG, sizeof(MSG)) == 1;
    EVP_MD_CTX_free(m);
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params);
    EVP_PKEY_free(k);
    EVP_PKEY_free(ref);
    OSSL_PROVIDER_unload(sp);
    OSSL_PROVIDER_unload(d);
    OSSL_LIB_CTX_free(ctx);
    if (!ok) {
      return 11;
    }
    last = status_vmlck_kb();
    if (i == 0) {
      first = last;
    }
  }
  if (last != first) {
    fprintf(stderr, "VmLck after the first load/unload cycle %ld kB, after the fifth %ld kB\n",
            first, last);
    return 12;
  }
  return 0;
}

static void test_load_unload(void) {
  int fds[2];
  CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    alarm(30);
    execl("/proc/self/exe", "test_provider", "--load-unload", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char out[2048];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof(out) - 1 && (r = read(fds[0], out + got, sizeof(out) - 1 - got)) > 0) {
    got += (size_t)r;
  }
  out[got] = '\0';
  close(fds[0]);
  int st = 0;
  CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
  CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "\n  load/unload: %s %d; stderr:\n%s", WIFEXITED(st) ? "exit" : "signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
  }
}

/* ---- 7. the provider's parameters ---------------------------------------------------------- */

static OSSL_PROVIDER *secmem_prov;

struct status {
  size_t keys, locked;
  uint64_t opens, integrity;
  bool got_keys, got_locked, got_opens, got_integrity;
};

static struct status status_now(void) {
  struct status st = {0};
  OSSL_PARAM p[] = {OSSL_PARAM_construct_size_t("secmem-keys", &st.keys),
                    OSSL_PARAM_construct_size_t("secmem-bytes-locked", &st.locked),
                    OSSL_PARAM_construct_uint64("secmem-opens", &st.opens),
                    OSSL_PARAM_construct_uint64("secmem-integrity-failures", &st.integrity),
                    OSSL_PARAM_construct_end()};
  CU_ASSERT_EQUAL(OSSL_PROVIDER_get_params(secmem_prov, p), 1);
  st.got_keys = OSSL_PARAM_modified(&p[0]);
  st.got_locked = OSSL_PARAM_modified(&p[1]);
  st.got_opens = OSSL_PARAM_modified(&p[2]);
  st.got_integrity = OSSL_PARAM_modified(&p[3]);
  return st;
}

static void test_params_identity(void) {
  const char *name = NULL, *version = NULL, *buildinfo = NULL;
  int status = -1;
  OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_NAME, (char **)&name, 0),
                    OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_VERSION, (char **)&version, 0),
                    OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, (char **)&buildinfo, 0),
                    OSSL_PARAM_construct_int(OSSL_PROV_PARAM_STATUS, &status),
                    OSSL_PARAM_construct_end()};
  CU_ASSERT_EQUAL_FATAL(OSSL_PROVIDER_get_params(secmem_prov, p), 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(name);
  CU_ASSERT_PTR_NOT_NULL_FATAL(version);
  CU_ASSERT_PTR_NOT_NULL_FATAL(buildinfo);
  CU_ASSERT_STRING_EQUAL(name, "secmem provider: private keys sealed at rest");
  unsigned a, b, c;
  CU_ASSERT_EQUAL(sscanf(version, "%u.%u.%u", &a, &b, &c), 3);
  CU_ASSERT_PTR_NOT_NULL(strstr(buildinfo, version));
  CU_ASSERT_PTR_NOT_NULL(strstr(buildinfo, "OpenSSL 3."));
  CU_ASSERT_EQUAL(status, 1);
  CU_ASSERT_EQUAL(OSSL_PROVIDER_self_test(secmem_prov), 1);
  /* Every status parameter is listed as gettable. */
  const OSSL_PARAM *g = OSSL_PROVIDER_gettable_params(secmem_prov);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  static const char *const names[] = {"secmem-keys", "secmem-bytes-locked", "secmem-opens",
                                      "secmem-integrity-failures", OSSL_PROV_PARAM_STATUS};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    CU_ASSERT_PTR_NOT_NULL(OSSL_PARAM_locate_const(g, names[i]));
  }
}

static void test_params_counters(void) {
  struct kt *t = kt("P-256");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
  struct status s0 = status_now();
  CU_ASSERT_TRUE(s0.got_keys && s0.got_locked && s0.got_opens && s0.got_integrity);
  CU_ASSERT_TRUE(s0.keys >= NKT); /* the references imported so far */
  CU_ASSERT_TRUE(s0.locked > 0);
  CU_ASSERT_EQUAL(s0.integrity, 0);
  /* Each import adds one key; each free takes it away. */
  EVP_PKEY *k[3];
  for (size_t i = 0; i < 3; i++) {
    k[i] = to_secmem(t->ref, t->alg);
    CU_ASSERT_PTR_NOT_NULL(k[i]);
    CU_ASSERT_EQUAL(status_now().keys, s0.keys + i + 1);
  }
  /* Signatures open the sealed key. */
  struct status s1 = status_now();
  struct sigopt o = default_opt(t);
  for (int i = 0; i < 5; i++) {
    CU_ASSERT_TRUE(sign_cross(k[0], t->ref, &o, 1));
  }
  struct status s2 = status_now();
  CU_ASSERT_TRUE(s2.opens >= s1.opens + 5);
  CU_ASSERT_EQUAL(s2.keys, s1.keys);
  /* A key in use by an operation outlives EVP_PKEY_free until the
   * operation ends. */
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  CU_ASSERT_EQUAL(EVP_DigestSignInit_ex(m, NULL, "SHA256", libctx, NULL, k[2], NULL), 1);
  for (size_t i = 0; i < 3; i++) {
    EVP_PKEY_free(k[i]);
  }
  CU_ASSERT_TRUE(status_now().keys <= s0.keys + 1);
  unsigned char sig[256];
  size_t len = sizeof(sig);
  CU_ASSERT_EQUAL(EVP_DigestSign(m, sig, &len, MSG, sizeof(MSG)), 1);
  CU_ASSERT_EQUAL(dverify(t->ref, &o, MSG, sizeof(MSG), sig, len), 1);
  EVP_MD_CTX_free(m);
  CU_ASSERT_EQUAL(status_now().keys, s0.keys);
  /* Other key types count alike; a dup is a key of its own. */
  struct kt *r = kt("RSA-2048");
  EVP_PKEY *rk = to_secmem(r->ref, r->alg);
  CU_ASSERT_EQUAL(status_now().keys, s0.keys + 1);
  EVP_PKEY *d = EVP_PKEY_dup(rk);
  size_t with_dup = status_now().keys;
  CU_ASSERT_TRUE(with_dup == s0.keys + 2 || with_dup == s0.keys + 1);
  EVP_PKEY_free(d);
  EVP_PKEY_free(rk);
  CU_ASSERT_EQUAL(status_now().keys, s0.keys);
  /* Failed imports leave no key behind. */
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(libctx, "EC", "provider=secmem");
  EVP_PKEY *bad = NULL;
  OSSL_PARAM junk[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
                       OSSL_PARAM_construct_end()};
  CU_ASSERT_EQUAL(EVP_PKEY_fromdata_init(c), 1);
  CU_ASSERT_NOT_EQUAL(EVP_PKEY_fromdata(c, &bad, EVP_PKEY_KEYPAIR, junk), 1);
  EVP_PKEY_free(bad);
  EVP_PKEY_CTX_free(c);
  ERR_clear_error();
  CU_ASSERT_EQUAL(status_now().keys, s0.keys);
  CU_ASSERT_EQUAL(status_now().integrity, 0);
}

/* ---- 8. threads and fork --------------------------------------------------------------------- */

#define NTHREADS 8

static _Atomic unsigned long thread_ops, thread_failures;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *signer(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  struct kt *ec = &kts[2], *rsa = &kts[0]; /* P-256 and RSA-2048, made before */
  double end = now_s() + 1.0;
  unsigned char msg[64];
  for (unsigned n = 0; now_s() < end; n++) {
    snprintf((char *)msg, sizeof(msg), "thread %u message %u", id, n);
    struct kt *t = (n + id) % 3 == 0 ? rsa : ec;
    struct sigopt o = t == rsa ? (struct sigopt){"SHA256", n % 2 ? "pss" : "pkcs1", NULL, NULL}
                               : (struct sigopt){"SHA256", NULL, NULL, NULL};
    unsigned char sig[512];
    size_t len = sizeof(sig);
    bool ok = dsign(t->sm, &o, msg, sizeof(msg), sig, &len, n % 2 ? 3 : 1) &&
              dverify(t->ref, &o, msg, sizeof(msg), sig, len) == 1;
    thread_ops++;
    if (!ok) {
      thread_failures++;
    }
  }
  ERR_clear_error();
  return NULL;
}

static void test_threads(void) {
  CU_ASSERT_PTR_NOT_NULL_FATAL(kt("P-256")->sm);
  CU_ASSERT_PTR_NOT_NULL_FATAL(kt("RSA-2048")->sm);
  pthread_t th[NTHREADS];
  for (unsigned i = 0; i < NTHREADS; i++) {
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, signer, (void *)(uintptr_t)i), 0);
  }
  for (unsigned i = 0; i < NTHREADS; i++) {
    pthread_join(th[i], NULL);
  }
  fprintf(stderr, "  [%lu signatures, %lu failures] ", (unsigned long)thread_ops,
          (unsigned long)thread_failures);
  CU_ASSERT_TRUE(thread_ops >= NTHREADS * 10);
  CU_ASSERT_EQUAL(thread_failures, 0);
  CU_ASSERT_EQUAL(status_now().integrity, 0);
}

/* Everything a key can do, checked against the default provider. */
static bool every_key_works(void) {
  bool ok = true;
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = &kts[i];
    if (t->signs) {
      struct sigopt o = default_opt(t);
      ok = sign_cross(t->sm, t->ref, &o, 1) && ok;
    } else {
      unsigned char a[64], b[64];
      size_t la = sizeof(a), lb = sizeof(b);
      ok = derive(t->sm, t->other, -1, a, &la) && derive(t->other, t->ref, -1, b, &lb) &&
           la == lb && memcmp(a, b, la) == 0 && ok;
    }
  }
  unsigned char pt[32];
  RAND_bytes(pt, sizeof(pt));
  ok = enc_cross(kts[0].ref, kts[0].sm, &OAEP, pt, sizeof(pt)) && ok;
  return ok;
}

static void test_fork(void) {
  for (size_t i = 0; i < NKT; i++) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(kt(kts[i].name)->sm);
  }
  fflush(NULL);
  pid_t kids[3];
  for (int i = 0; i < 3; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      alarm(20);
      _exit(every_key_works() && every_key_works() ? 0 : 1);
    }
    CU_ASSERT_TRUE(kids[i] > 0);
  }
  /* The parent works while the children do. */
  CU_ASSERT_TRUE(every_key_works());
  for (int i = 0; i < 3; i++) {
    int st = 0;
    if (kids[i] <= 0) {
      continue;
    }
    CU_ASSERT_EQUAL(waitpid(kids[i], &st, 0), kids[i]);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "  child %d: %s %d\n", i, WIFEXITED(st) ? "exit" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
  }
  /* and after they are gone */
  CU_ASSERT_TRUE(every_key_works());
  /* A key imported after the fork, too. */
  EVP_PKEY *k = to_secmem(kts[2].ref, kts[2].alg);
  struct sigopt o = default_opt(&kts[2]);
  CU_ASSERT_TRUE(sign_cross(k, kts[2].ref, &o, 1));
  EVP_PKEY_free(k);
}


/* ---- 9. more: key parameters, public-only keys, buffers, certificates ------------------------ */

static void test_key_params(void) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = kt(kts[i].name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sm);
    if (strncmp(t->alg, "RSA", 3) == 0) {
      static const char *const bns[] = {OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E};
      for (size_t j = 0; j < 2; j++) {
        BIGNUM *a = NULL, *b = NULL;
        CU_ASSERT_EQUAL(EVP_PKEY_get_bn_param(t->sm, bns[j], &a), 1);
        CU_ASSERT_EQUAL(EVP_PKEY_get_bn_param(t->ref, bns[j], &b), 1);
        CU_ASSERT_TRUE(a != NULL && b != NULL && BN_cmp(a, b) == 0);
        BN_free(a);
        BN_free(b);
      }
      /* No private component is readable. */
      BIGNUM *d = NULL;
      CU_ASSERT_NOT_EQUAL(EVP_PKEY_get_bn_param(t->sm, OSSL_PKEY_PARAM_RSA_D, &d), 1);
      BN_free(d);
    } else {
      unsigned char a[200], b[200];
      size_t la = 0, lb = 0;
      CU_ASSERT_EQUAL(EVP_PKEY_get_octet_string_param(t->sm, OSSL_PKEY_PARAM_PUB_KEY, a, sizeof(a), &la), 1);
      CU_ASSERT_EQUAL(EVP_PKEY_get_octet_string_param(t->ref, OSSL_PKEY_PARAM_PUB_KEY, b, sizeof(b), &lb), 1);
      CU_ASSERT_TRUE(la > 0 && la == lb && memcmp(a, b, la) == 0);
      /* the encoded public key, as TLS sends it */
      unsigned char *ea = NULL, *eb = NULL;
      size_t ela = EVP_PKEY_get1_encoded_public_key(t->sm, &ea);
      size_t elb = EVP_PKEY_get1_encoded_public_key(t->ref, &eb);
      /* (EdDSA keys have no encoded public key in 3.0's default provider.) */
      bool has = strncmp(t->alg, "ED", 2) != 0;
      CU_ASSERT_TRUE(ela == elb && (!has || ela > 0) && (ela == 0 || memcmp(ea, eb, ela) == 0));
      if ((has && ela == 0) || ela != elb || (ela > 0 && memcmp(ea, eb, ela) != 0)) {
        fprintf(stderr, "  %s: encoded public key of %zu bytes (secmem) vs %zu: %s\n", t->name, ela,
                elb, last_reason(NULL, 0));
      }
      OPENSSL_free(ea);
      OPENSSL_free(eb);
      if (strcmp(t->alg, "EC") != 0) {
        la = sizeof(a);
        CU_ASSERT_EQUAL(EVP_PKEY_get_raw_public_key(t->sm, a, &la), 1);
        la = sizeof(a);
        CU_ASSERT_NOT_EQUAL(EVP_PKEY_get_raw_private_key(t->sm, a, &la), 1);
      } else {
        char g1[64] = "", g2[64] = "";
        CU_ASSERT_EQUAL(EVP_PKEY_get_group_name(t->sm, g1, sizeof(g1), NULL), 1);
        CU_ASSERT_EQUAL(EVP_PKEY_get_group_name(t->ref, g2, sizeof(g2), NULL), 1);
        CU_ASSERT_STRING_EQUAL(g1, g2);
        BIGNUM *priv = NULL;
        CU_ASSERT_NOT_EQUAL(EVP_PKEY_get_bn_param(t->sm, OSSL_PKEY_PARAM_PRIV_KEY, &priv), 1);
        BN_free(priv);
      }
    }
    char d1[64] = "", d2[64] = "";
    int r1 = EVP_PKEY_get_default_digest_name(t->sm, d1, sizeof(d1));
    int r2 = EVP_PKEY_get_default_digest_name(t->ref, d2, sizeof(d2));
    CU_ASSERT_EQUAL(r1 > 0, r2 > 0);
    CU_ASSERT_STRING_EQUAL(d1, d2);
    if (strcmp(d1, d2) != 0) {
      fprintf(stderr, "  %s: default digest \"%s\" (secmem) vs \"%s\"\n", t->name, d1, d2);
    }
    ERR_clear_error();
  }
}

static void test_public_only_key(void) {
  for (size_t i = 0; i < NKT; i++) {
    struct kt *t = kt(kts[i].name);
    EVP_PKEY *pub = import_as(t->ref, t->alg, "provider=secmem", EVP_PKEY_PUBLIC_KEY);
    CU_ASSERT_PTR_NOT_NULL(pub);
    if (pub == NULL) {
      fprintf(stderr, "  %s: public import into secmem: %s\n", t->name, last_reason(NULL, 0));
      continue;
    }
    CU_ASSERT_TRUE(is_secmem(pub));
    CU_ASSERT_EQUAL(EVP_PKEY_eq(pub, t->ref), 1);
    /* no private part: no signing, no derivation; verification works */
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, pub, NULL);
    ERR_clear_error();
    if (t->signs) {
      CU_ASSERT_NOT_EQUAL(EVP_PKEY_sign_init(c), 1);
    } else {
      CU_ASSERT_NOT_EQUAL(EVP_PKEY_derive_init(c), 1);
    }
    CU_ASSERT_NOT_EQUAL(ERR_peek_error(), 0);
    ERR_clear_error();
    if (t->signs) {
      struct sigopt o = default_opt(t);
      CU_ASSERT_TRUE(sign_cross(t->ref, pub, &o, 1));
    }
    /* its public export works */
    EVP_PKEY *back = import_as(pub, t->alg, "provider=default", EVP_PKEY_PUBLIC_KEY);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(back, t->ref), 1);
    EVP_PKEY_free(back);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pub);
  }
  struct kt *r = kt("RSA-2048");
  EVP_PKEY *pub = import_as(r->ref, r->alg, "provider=secmem", EVP_PKEY_PUBLIC_KEY);
  CU_ASSERT_TRUE(enc_cross(pub, r->ref, &OAEP, MSG, 20));
  unsigned char ct[512], out[512];
  size_t ctlen = sizeof(ct), outlen = sizeof(out);
  CU_ASSERT_TRUE(encrypt_with(r->ref, &OAEP, MSG, 20, ct, &ctlen));
  CU_ASSERT_NOT_EQUAL(decrypt_with(pub, &OAEP, ct, ctlen, out, &outlen), 1);
  ERR_clear_error();
  EVP_PKEY_free(pub);
}

static void test_small_buffers(void) {
  /* Too small an output buffer is refused, not overrun (ASan watches). */
  static const char *const names[] = {"RSA-2048", "P-256", "Ed25519"};
  for (size_t i = 0; i < 3; i++) {
    struct kt *t = kt(names[i]);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, t->sm, NULL);
    unsigned char d[32] = {1, 2, 3};
    size_t need = 0;
    if (strcmp(names[i], "Ed25519") == 0) {
      /* EdDSA has no EVP_PKEY_sign in 3.0's default either: DigestSign. */
      EVP_PKEY_CTX_free(c);
      EVP_MD_CTX *m = EVP_MD_CTX_new();
      CU_ASSERT_EQUAL(EVP_DigestSignInit_ex(m, NULL, NULL, libctx, NULL, t->sm, NULL), 1);
      CU_ASSERT_EQUAL(EVP_DigestSign(m, NULL, &need, MSG, sizeof(MSG)), 1);
      CU_ASSERT_EQUAL(need, 64);
      unsigned char *small = malloc(need - 1);
      size_t len = need - 1;
      CU_ASSERT_NOT_EQUAL(EVP_DigestSign(m, small, &len, MSG, sizeof(MSG)), 1);
      free(small);
      EVP_MD_CTX_free(m);
      ERR_clear_error();
      continue;
    }
    CU_ASSERT_EQUAL(EVP_PKEY_sign_init(c), 1);
    CU_ASSERT_EQUAL(EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()), 1);
    CU_ASSERT_EQUAL(EVP_PKEY_sign(c, NULL, &need, d, sizeof(d)), 1);
    CU_ASSERT_EQUAL(need, (size_t)EVP_PKEY_get_size(t->ref));
    unsigned char *small = malloc(need - 1);
    size_t len = need - 1;
    CU_ASSERT_NOT_EQUAL(EVP_PKEY_sign(c, small, &len, d, sizeof(d)), 1);
    free(small);
    EVP_PKEY_CTX_free(c);
    ERR_clear_error();
  }
  /* Decryption into a buffer too small for the plaintext. */
  struct kt *t = kt("RSA-2048");
  unsigned char ct[512];
  size_t ctlen = sizeof(ct);
  CU_ASSERT_TRUE(encrypt_with(t->ref, &OAEP, MSG, 64, ct, &ctlen));
  EVP_PKEY_CTX *c = cipher_ctx(t->sm, &OAEP, true);
  unsigned char *small = malloc(32);
  size_t len = 32;
  CU_ASSERT_NOT_EQUAL(EVP_PKEY_decrypt(c, small, &len, ct, ctlen), 1);
  free(small);
  EVP_PKEY_CTX_free(c);
  ERR_clear_error();
}

/* The AlgorithmIdentifier a DigestSign context reports (X.509 signing). */
static size_t algorithm_id_of(EVP_PKEY *k, const struct sigopt *o, unsigned char *aid, size_t cap) {
  OSSL_PARAM p[5];
  fill_params(p, o);
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pc = NULL;
  size_t n = 0;
  if (EVP_DigestSignInit_ex(m, &pc, o->md, libctx, NULL, k, p) == 1) {
    OSSL_PARAM g[] = {OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid, cap),
                      OSSL_PARAM_construct_end()};
    if (EVP_PKEY_CTX_get_params(pc, g) == 1 && OSSL_PARAM_modified(g)) {
      n = g[0].return_size;
    }
  }
  EVP_MD_CTX_free(m);
  ERR_clear_error();
  return n;
}

static void test_algorithm_id(void) {
  static const struct {
    const char *key;
    struct sigopt o;
  } cases[] = {
      {"RSA-2048", {"SHA256", "pkcs1", NULL, NULL}}, {"RSA-2048", {"SHA384", "pkcs1", NULL, NULL}},
      {"RSA-2048", {"SHA1", NULL, NULL, NULL}},      {"P-256", {"SHA256", NULL, NULL, NULL}},
      {"P-384", {"SHA384", NULL, NULL, NULL}},       {"P-521", {"SHA512", NULL, NULL, NULL}},
      {"Ed25519", {NULL, NULL, NULL, NULL}},         {"Ed448", {NULL, NULL, NULL, NULL}},
      {"RSA-2048", {"SHA256", "pss", "digest", NULL}}, {"RSA-PSS", {"SHA256", NULL, NULL, NULL}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct kt *t = kt(cases[i].key);
    unsigned char a[256], b[256];
    size_t la = algorithm_id_of(t->sm, &cases[i].o, a, sizeof(a));
    size_t lb = algorithm_id_of(t->ref, &cases[i].o, b, sizeof(b));
    CU_ASSERT_TRUE(lb > 0);
    CU_ASSERT_TRUE(la == lb && memcmp(a, b, la) == 0);
    if (la != lb || memcmp(a, b, la) != 0) {
      fprintf(stderr, "  %s %s: AlgorithmIdentifier of %zu bytes (secmem) vs %zu\n  ", t->name,
              cases[i].o.md ? cases[i].o.md : "-", la, lb);
      for (size_t j = 0; j < la; j++) {
        fprintf(stderr, "%02x", a[j]);
      }
      fprintf(stderr, "\n  ");
      for (size_t j = 0; j < lb; j++) {
        fprintf(stderr, "%02x", b[j]);
      }
      fprintf(stderr, "\n");
    }
  }
}

/* A self-signed certificate, signed by the secmem key, verified with the
 * default provider's key. */
static bool cert_signed_with(struct kt *t, EVP_PKEY *signer, const struct sigopt *o) {
  X509 *x = X509_new_ex(libctx, NULL);
  EVP_PKEY *pub = import_as(t->sm, t->alg, "provider=default", EVP_PKEY_PUBLIC_KEY);
  X509_NAME *n = X509_NAME_new();
  OSSL_PARAM p[5];
  fill_params(p, o);
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  bool ok = x != NULL && pub != NULL && n != NULL && m != NULL && X509_set_version(x, X509_VERSION_3) &&
            ASN1_INTEGER_set(X509_get_serialNumber(x), 7) &&
            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"secmem", -1, -1, 0) &&
            X509_set_subject_name(x, n) && X509_set_issuer_name(x, n) &&
            X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
            X509_gmtime_adj(X509_getm_notAfter(x), 3600) != NULL && X509_set_pubkey(x, pub) &&
            EVP_DigestSignInit_ex(m, NULL, o->md, libctx, NULL, signer, p) == 1 &&
            X509_sign_ctx(x, m) > 0;
  if (!ok) {
    char data[256];
    const char *r = last_reason(data, sizeof(data));
    fprintf(stderr, "  %s: certificate signing by %s (pad %s) failed: %s (%s)\n", t->name,
            prov_name(signer), o->pad ? o->pad : "-", r, data);
  }
  ok = ok && X509_verify(x, t->ref) == 1;
  ERR_clear_error();
  EVP_MD_CTX_free(m);
  X509_NAME_free(n);
  EVP_PKEY_free(pub);
  X509_free(x);
  return ok;
}

static bool cert_signed_by(struct kt *t, const struct sigopt *o) {
  bool def = cert_signed_with(t, t->ref, o);
  CU_ASSERT_TRUE(def);
  return cert_signed_with(t, t->sm, o);
}


/* The DigestSign context's settings read back through the EVP_PKEY_CTX
 * getters (as X509_sign_ctx does for RSA-PSS), as the default provider
 * reports them. */
static bool read_back(EVP_PKEY *k, const struct sigopt *o, int *pad, int *salt, char *md,
                      char *mgf1) {
  OSSL_PARAM p[5];
  fill_params(p, o);
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pc = NULL;
  const EVP_MD *smd = NULL, *mmd = NULL;
  bool ok = EVP_DigestSignInit_ex(m, &pc, o->md, libctx, NULL, k, p) == 1;
  /* (the getters answer > 0 on success) */
  int rp = ok ? EVP_PKEY_CTX_get_rsa_padding(pc, pad) > 0 : -9;
  int rs = ok ? EVP_PKEY_CTX_get_rsa_pss_saltlen(pc, salt) > 0 : -9;
  int rm = ok ? EVP_PKEY_CTX_get_signature_md(pc, &smd) > 0 : -9;
  int rg = ok ? EVP_PKEY_CTX_get_rsa_mgf1_md(pc, &mmd) > 0 : -9;
  snprintf(md, 64, "%s", smd != NULL ? EVP_MD_get0_name(smd) : "-");
  snprintf(mgf1, 64, "%s", mmd != NULL ? EVP_MD_get0_name(mmd) : "-");
  if (rp != 1 || rs != 1 || rm != 1 || rg != 1) {
    fprintf(stderr, "  %s: get padding %d, saltlen %d, md %d, mgf1 %d: %s\n", prov_name(k), rp, rs,
            rm, rg, last_reason(NULL, 0));
  }
  EVP_MD_CTX_free(m);
  ERR_clear_error();
  return ok && rp == 1 && rs == 1 && rm == 1 && rg == 1;
}

static void test_sig_settings_read_back(void) {
  static const struct {
    const char *key;
    struct sigopt o;
  } cases[] = {
      {"RSA-2048", {"SHA256", "pss", "digest", NULL}},
      {"RSA-2048", {"SHA256", "pss", "20", "SHA384"}},
      {"RSA-2048", {"SHA384", "pkcs1", NULL, NULL}},
      {"RSA-PSS", {"SHA256", NULL, NULL, NULL}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct kt *t = kt(cases[i].key);
    int pa = -100, pb = -100, sa = -100, sb = -100;
    char ma[64], mb[64], ga[64], gb[64];
    bool def = read_back(t->ref, &cases[i].o, &pb, &sb, mb, gb);
    /* The getters ask for strings ("pss", "digest"): both answer. */
    bool sm = read_back(t->sm, &cases[i].o, &pa, &sa, ma, ga);
    CU_ASSERT_TRUE(def);
    CU_ASSERT_TRUE(sm);
    CU_ASSERT_EQUAL(pa, pb);
    if (pb == RSA_PKCS1_PSS_PADDING) {
      CU_ASSERT_EQUAL(sa, sb);
      CU_ASSERT_STRING_EQUAL(ga, gb);
    }
    CU_ASSERT_STRING_EQUAL(ma, mb);
    if (pa != pb || sa != sb || strcmp(ma, mb) != 0) {
      fprintf(stderr, "  %s: secmem pad %d salt %d md %s mgf1 %s; default pad %d salt %d md %s mgf1 %s\n",
              t->name, pa, sa, ma, ga, pb, sb, mb, gb);
    }
  }
}

/* Certificates signed by secmem keys (X509_sign_ctx), PKCS#1 and PSS,
 * verify with the public key. */
static void test_certificates(void) {
  struct sigopt pkcs1 = {"SHA256", NULL, NULL, NULL};
  struct sigopt pss = {"SHA256", "pss", "digest", NULL};
  struct sigopt ec = {"SHA384", NULL, NULL, NULL};
  CU_ASSERT_TRUE(cert_signed_by(kt("RSA-2048"), &pkcs1));
  CU_ASSERT_TRUE(cert_signed_by(kt("RSA-2048"), &pss));
  CU_ASSERT_TRUE(cert_signed_by(kt("RSA-PSS"), &pkcs1));
  CU_ASSERT_TRUE(cert_signed_by(kt("P-384"), &ec));
  CU_ASSERT_TRUE(cert_signed_by(kt("Ed25519"), &NOOPT));
  CU_ASSERT_TRUE(cert_signed_by(kt("Ed448"), &NOOPT));
}

/* ---- main -------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--load-unload") == 0) {
    return load_unload_main();
  }
  OSSL_PROVIDER *default_prov = NULL;
  libctx = OSSL_LIB_CTX_new();
  if (libctx == NULL || OSSL_PROVIDER_set_default_search_path(libctx, SECMEM_PROVIDER_DIR) != 1 ||
      (default_prov = OSSL_PROVIDER_load(libctx, "default")) == NULL ||
      (secmem_prov = OSSL_PROVIDER_load(libctx, "secmem")) == NULL) {
    ERR_print_errors_fp(stderr);
    return 2;
  }
  static const struct harness_test tests[] = {
      {"keymgmt: import, provider, eq, bits, size", test_keymgmt_import},
      {"keymgmt: dup (and the dup signs)", test_keymgmt_dup},
      {"keymgmt: check, pairwise, public check", test_keymgmt_checks},
      {"keymgmt: public export re-imported into default", test_keymgmt_public_export},
      {"keymgmt: private export refused", test_keymgmt_private_export_refused},
      {"sign: RSA PKCS#1 v1.5, five digests", test_sig_rsa_pkcs1},
      {"sign: RSA PSS salt lengths and MGF1 (params)", test_sig_rsa_pss},
      {"sign: RSA PSS through the EVP_PKEY_CTX setters", test_sig_rsa_pss_ctrl},
      {"sign: RSA-PSS restricted key", test_sig_rsa_pss_restricted},
      {"sign: raw PKCS#1 of a 36-byte blob, and of a digest", test_sig_rsa_raw_pkcs1},
      {"sign: RSA without padding", test_sig_rsa_no_padding},
      {"sign: ECDSA P-256/384/521, streamed and of a digest", test_sig_ecdsa},
      {"sign: Ed25519 and Ed448", test_sig_eddsa},
      {"sign: DigestSign context copied mid-stream", test_sig_copy_midstream},
      {"RSA: default encrypts, secmem decrypts", test_rsa_decrypt},
      {"RSA: corrupted ciphertext fails cleanly", test_rsa_decrypt_corrupted},
      {"RSA: secmem encrypts, default decrypts", test_rsa_encrypt},
      {"RSA: TLS premaster decryption", test_rsa_tls_premaster},
      {"RSA: TLS premaster with RSA_PKCS1_WITH_TLS_PADDING", test_rsa_tls_padding_mode},
      {"exchange: ECDH P-256 and P-384", test_ecdh},
      {"exchange: ECDH cofactor mode", test_ecdh_cofactor},
      {"exchange: X25519 and X448", test_xdh},
      {"exchange: a peer of another curve or type is refused", test_exchange_wrong_peer},
      {"keygen: Ed25519, P-384, RSA-2048 born sealed", test_generate_sealed},
      {"config: export_private = yes", test_config_export_private},
      {"config: bad values make secmem unavailable", test_config_bad_values},
      {"config: valid values activate", test_config_good_values},
      {"config: a second instance comes and goes", test_config_second_instance},
      {"config: load and unload five times", test_load_unload},
      {"params: name, version, status", test_params_identity},
      {"params: keys, opens, bytes locked, integrity failures", test_params_counters},
      {"keys: public parameters as default reports them", test_key_params},
      {"keys: public-only secmem keys", test_public_only_key},
      {"buffers: too small is refused", test_small_buffers},
      {"sign: AlgorithmIdentifier as default reports it", test_algorithm_id},
      {"sign: settings read back through EVP_PKEY_CTX getters", test_sig_settings_read_back},
      {"sign: certificates signed by secmem keys", test_certificates},
      {"threads: 8 threads share a P-256 and an RSA key", test_threads},
      {"fork: children and the parent sign with every key", test_fork},
  };
  int rc = harness_main("provider", tests, sizeof(tests) / sizeof(tests[0]));
  for (size_t i = 0; i < NKT; i++) {
    EVP_PKEY_free(kts[i].ref);
    EVP_PKEY_free(kts[i].other);
    EVP_PKEY_free(kts[i].sm);
  }
  OSSL_PROVIDER_unload(secmem_prov);
  OSSL_PROVIDER_unload(default_prov);
  OSSL_LIB_CTX_free(libctx);
  return rc;
}
