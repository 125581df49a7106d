/*
 * test_decoder.c - transparent loading: ordinary key files, read through
 * OpenSSL's unmodified entry points (PEM_read_bio_PrivateKey,
 * SSL_CTX_use_PrivateKey_file, d2i_AutoPrivateKey, OSSL_STORE file:), give
 * keys owned by secmem for RSA, RSA-PSS, EC, Ed25519, X25519, Ed448 and
 * X448, in PKCS#8, encrypted PKCS#8, traditional and legacy-encrypted PEM
 * and in DER; each key is the file's key (same public key, its signatures
 * verify), and a scan of the loading process (secmem-scan) finds no window
 * of it and no line of its PEM. Certificates, public keys, parameters and
 * key types secmem does not seal keep flowing through OpenSSL's decoders;
 * a private key the caller did not ask for is skipped without being
 * decoded; bad input gets a clear error; the configuration can turn it off.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509.h>

#include "harness.h"
#include "keyfiles.h"

#define PASS "correct horse"

static OSSL_LIB_CTX *libctx;     /* default + secmem */
static OSSL_LIB_CTX *ref_libctx; /* the default provider alone: the reference keys */
static char dir[] = "/tmp/secmem-decoder-XXXXXX";

static char *path_of(const char *name) {
  static char p[4][512];
  static int i;
  i = (i + 1) % 4;
  snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
  return p[i];
}

static void run(const char *cmd) {
  char full[8192];
  snprintf(full, sizeof(full), "cd %s && { %s; } >/dev/null 2>&1", dir, cmd);
  if (system(full) != 0) {
    fprintf(stderr, "setup failed: %s\n", cmd);
    exit(2);
  }
}

static const char *provider_of(const EVP_PKEY *k) {
  if (k == NULL) {
    return "(none)";
  }
  const OSSL_PROVIDER *p = EVP_PKEY_get0_provider(k);
  return p != NULL ? OSSL_PROVIDER_get0_name(p) : "(legacy)"; /* OpenSSL's legacy key path */
}

/* Every error on the queue (reason and data), emptying it. */
static void last_error(char *out, size_t len) {
  const char *data = NULL;
  int flags = 0;
  unsigned long e;
  size_t used = 0;
  out[0] = '\0';
  while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
    const char *reason = ERR_reason_error_string(e);
    int n = snprintf(out + used, len - used, "%s%s: %s", used > 0 ? " / " : "",
                     reason != NULL ? reason : "?",
                     (flags & ERR_TXT_STRING) && data != NULL ? data : "");
    if (n < 0 || (size_t)n >= len - used) {
      break;
    }
    used += (size_t)n;
  }
}

/* ---- the ways an application loads a key ------------------------------------------ */

enum via { VIA_PEM_BIO, VIA_SSL_CTX_PEM, VIA_SSL_CTX_ASN1, VIA_D2I, VIA_STORE };
static const char *const via_name[] = {"PEM_read_bio_PrivateKey", "SSL_CTX_use_PrivateKey_file(PEM)",
                                       "SSL_CTX_use_PrivateKey_file(ASN1)", "d2i_AutoPrivateKey",
                                       "OSSL_STORE file:"};

/* Load file the way via does; the key, or NULL. *ctx_out keeps an SSL_CTX
 * alive when the key lives in one. */
static EVP_PKEY *load_via(enum via via, const char *file, const char *pass, SSL_CTX **ctx_out) {
  EVP_PKEY *k = NULL;
  *ctx_out = NULL;
  switch (via) {
  case VIA_PEM_BIO: {
    BIO *b = BIO_new_file(file, "r");
    k = PEM_read_bio_PrivateKey_ex(b, NULL, keyfile_pem_cb, (void *)pass, libctx, NULL);
    BIO_free(b);
    break;
  }
  case VIA_SSL_CTX_PEM:
  case VIA_SSL_CTX_ASN1: {
    SSL_CTX *c = SSL_CTX_new_ex(libctx, NULL, TLS_server_method());
    SSL_CTX_set_default_passwd_cb(c, keyfile_pem_cb);
    SSL_CTX_set_default_passwd_cb_userdata(c, (void *)pass);
    if (SSL_CTX_use_PrivateKey_file(c, file,
                                    via == VIA_SSL_CTX_PEM ? SSL_FILETYPE_PEM : SSL_FILETYPE_ASN1) ==
        1) {
      k = SSL_CTX_get0_privatekey(c);
      EVP_PKEY_up_ref(k);
    }
    *ctx_out = c;
    break;
  }
  case VIA_D2I: {
    /* The application's own copy of the file: wiped once decoded, as a
     * careful application would. */
    unsigned char buf[8192];
    int fd = open(file, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
    if (fd >= 0) {
      close(fd);
    }
    if (n > 0) {
      const unsigned char *p = buf;
      k = d2i_AutoPrivateKey_ex(NULL, &p, (long)n, libctx, NULL);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    break;
  }
  case VIA_STORE: {
    char uri[600];
    snprintf(uri, sizeof(uri), "file:%s", file);
    UI_METHOD *ui = UI_create_method("secmem test");
    UI_method_set_reader(ui, keyfile_ui_reader);
    OSSL_STORE_CTX *s = OSSL_STORE_open_ex(uri, libctx, NULL, ui, (void *)pass, NULL, NULL, NULL);
    while (s != NULL && k == NULL && !OSSL_STORE_eof(s)) {
      OSSL_STORE_INFO *info = OSSL_STORE_load(s);
      if (info == NULL) {
        break;
      }
      if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
        k = OSSL_STORE_INFO_get1_PKEY(info);
      }
      OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(s);
    UI_destroy_method(ui);
    break;
  }
  }
  return k;
}

/* secmem-scan of this process: 0 no hits, 1 hits, 2 error. */
static int scan_me(const char *keyfile, const char *pass) {
  char pid[32];
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  pid_t c = fork();
  if (c == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    if (pass != NULL) {
      execl(SECMEM_SCAN, SECMEM_SCAN, "--pass", pass, pid, keyfile, (char *)NULL);
    } else {
      execl(SECMEM_SCAN, SECMEM_SCAN, pid, keyfile, (char *)NULL);
    }
    _exit(2);
  }
  int st = 0;
  if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st)) {
    return 2;
  }
  return WEXITSTATUS(st);
}

/* The child's findings, written for the parent. */
struct outcome {
  char provider[32];
  unsigned char pub[2048];
  int pub_len;
  unsigned char sig[1024];
  size_t sig_len;
  int scan; /* -1 not scanned */
  char error[600];
};

static bool is_x(const EVP_PKEY *k) { return EVP_PKEY_is_a(k, "X25519") || EVP_PKEY_is_a(k, "X448"); }
static bool is_ed(const EVP_PKEY *k) {
  return EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448");
}

static const unsigned char MSG[] = "transparent loading";

/* In a forked child: load, sign, scan; the outcome through a pipe. */
static struct outcome load_in_child(enum via via, const char *name, const char *pass, bool scan) {
  struct outcome o = {.scan = -1};
  int fds[2];
  if (pipe(fds) != 0) {
    snprintf(o.error, sizeof(o.error), "pipe: %s", strerror(errno));
    return o;
  }
  pid_t c = fork();
  if (c == 0) {
    close(fds[0]);
    struct outcome r = {.scan = -1};
    SSL_CTX *sctx = NULL;
    ERR_clear_error();
    EVP_PKEY *k = load_via(via, path_of(name), pass, &sctx);
    if (k == NULL) {
      last_error(r.error, sizeof(r.error));
    } else {
      snprintf(r.provider, sizeof(r.provider), "%s", provider_of(k));
      /* At rest straight after loading (what the loader left behind), and
       * again after a signature (what the operation left behind). */
      if (scan) {
        r.scan = scan_me(path_of(name), pass);
      }
      unsigned char *w = r.pub;
      r.pub_len = i2d_PUBKEY(k, NULL) <= (int)sizeof(r.pub) ? i2d_PUBKEY(k, &w) : -1;
      if (!is_x(k)) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        r.sig_len = sizeof(r.sig);
        if (EVP_DigestSignInit_ex(m, NULL, is_ed(k) ? NULL : "SHA256", libctx, NULL, k, NULL) != 1 ||
            EVP_DigestSign(m, r.sig, &r.sig_len, MSG, sizeof(MSG)) != 1) {
          r.sig_len = 0;
          last_error(r.error, sizeof(r.error));
        }
        EVP_MD_CTX_free(m);
      }
      if (scan && r.scan == 0) {
        r.scan = scan_me(path_of(name), pass);
      }
    }
    if (write(fds[1], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
      _exit(3);
    }
    _exit(0);
  }
  close(fds[1]);
  ssize_t n = read(fds[0], &o, sizeof(o));
  close(fds[0]);
  int st = 0;
  waitpid(c, &st, 0);
  if (n != (ssize_t)sizeof(o)) {
    snprintf(o.error, sizeof(o.error), "child died (status %d)", st);
  }
  return o;
}

/* The file's key, read by the default provider alone. */
static EVP_PKEY *reference_key(const char *name, const char *pass) {
  if (strcmp(name, "rsa.handle") == 0) {
    name = "rsa.pem"; /* a sealed handle: the file it was loaded from */
  }
  if (strcmp(name, "rsa_enc.der") == 0) {
    name = "rsa.pem"; /* encrypted DER: its plain twin is the reference */
    pass = NULL;
  }
  return keyfile_read(path_of(name), pass, ref_libctx);
}

/* Whether the outcome is the file's key: the same public key, and a
 * signature that verifies with the file's key. Run in a child, so that
 * the reference key read in the clear never sits in the memory that later
 * children inherit and scan. 0 yes, 1 other public key, 2 bad signature,
 * 3 no reference. */
static int verify_in_child(const char *name, const char *pass, const struct outcome *o) {
  pid_t c = fork();
  if (c == 0) {
    EVP_PKEY *ref = reference_key(name, pass);
    if (ref == NULL) {
      _exit(3);
    }
    unsigned char ref_pub[2048], *w = ref_pub;
    int ref_len = i2d_PUBKEY(ref, &w);
    if (ref_len != o->pub_len || memcmp(ref_pub, o->pub, (size_t)ref_len) != 0) {
      _exit(1);
    }
    if (!is_x(ref)) {
      EVP_MD_CTX *v = EVP_MD_CTX_new();
      if (o->sig_len == 0 ||
          EVP_DigestVerifyInit_ex(v, NULL, is_ed(ref) ? NULL : "SHA256", ref_libctx, NULL, ref,
                                  NULL) != 1 ||
          EVP_DigestVerify(v, o->sig, o->sig_len, MSG, sizeof(MSG)) != 1) {
        _exit(2);
      }
    }
    _exit(0);
  }
  int st = 0;
  return c > 0 && waitpid(c, &st, 0) == c && WIFEXITED(st) ? WEXITSTATUS(st) : 4;
}

/* Load name via via in a child and check it all. */
static void check_load(enum via via, const char *name, const char *pass, bool scan) {
  struct outcome o = load_in_child(via, name, pass, scan);
  bool owned = strcmp(o.provider, "secmem") == 0;
  if (!owned) {
    fprintf(stderr, "\n  %s via %s: provider %s %s\n", name, via_name[via],
            o.provider[0] ? o.provider : "(not loaded)", o.error);
  }
  CU_ASSERT_TRUE(owned);
  if (!owned) {
    return;
  }
  int v = verify_in_child(name, pass, &o);
  if (v != 0) {
    fprintf(stderr, "\n  %s via %s: not the file's key (%d: 1 public key, 2 signature) %s\n", name,
            via_name[via], v, o.error);
  }
  CU_ASSERT_EQUAL(v, 0);
  if (scan) {
    if (o.scan != 0) {
      fprintf(stderr, "\n  %s via %s: secmem-scan says %d (1: the key is in memory)\n", name,
              via_name[via], o.scan);
    }
    CU_ASSERT_EQUAL(o.scan, 0);
  }
}

/* ---- the formats ------------------------------------------------------------------- */

static const char *const pkcs8_pem[] = {"rsa.pem",     "pss.pem",    "p256.pem",
                                        "p384.pem",    "p521.pem",   "ed25519.pem",
                                        "x25519.pem",  "ed448.pem",  "x448.pem"};

static void test_pkcs8_pem(void) {
  for (size_t i = 0; i < sizeof(pkcs8_pem) / sizeof(pkcs8_pem[0]); i++) {
    const char *f = pkcs8_pem[i];
    check_load(VIA_PEM_BIO, f, NULL, true);
    check_load(VIA_STORE, f, NULL, true);
    if (strncmp(f, "x", 1) != 0) { /* X25519/X448 are no TLS server keys */
      check_load(VIA_SSL_CTX_PEM, f, NULL, true);
    }
  }
}

static void test_traditional_pem(void) {
  /* ec_nopub*: saved without the public key (RFC 5915 allows it), which
   * secmem computes from the private scalar. */
  static const char *const files[] = {"rsa_trad.pem", "ec_trad.pem", "ec_nopub.pem",
                                      "ec_nopub_pkcs8.pem"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    check_load(VIA_PEM_BIO, files[i], NULL, true);
    check_load(VIA_SSL_CTX_PEM, files[i], NULL, true);
    check_load(VIA_STORE, files[i], NULL, true);
  }
}

static void test_encrypted_pem(void) {
  static const char *const files[] = {"rsa_enc.pem", "p256_enc.pem", "ed25519_enc.pem",
                                      "rsa_legacy.pem", "ec_legacy.pem"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    check_load(VIA_PEM_BIO, files[i], PASS, true);
    check_load(VIA_SSL_CTX_PEM, files[i], PASS, true);
    check_load(VIA_STORE, files[i], PASS, true);
  }
}

static void test_der(void) {
  static const char *const files[] = {"rsa.der", "rsa_trad.der", "ec_trad.der", "p384.der",
                                      "ed25519.der", "x448.der"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    check_load(VIA_D2I, files[i], NULL, true);
    check_load(VIA_STORE, files[i], NULL, true);
    if (strncmp(files[i], "x", 1) != 0) {
      /* Owned by secmem; not scanned: SSL_CTX_use_PrivateKey_file reads a
       * DER file through the application's stdio buffer before any decoder
       * sees it (README, "Limits"). */
      check_load(VIA_SSL_CTX_ASN1, files[i], NULL, false);
    }
  }
  check_load(VIA_STORE, "rsa_enc.der", PASS, true); /* encrypted PKCS#8 in DER */
}

/* ---- what keeps flowing through OpenSSL ----------------------------------------------- */

static void test_other_objects_untouched(void) {
  BIO *b = BIO_new_file(path_of("rsa.crt"), "r");
  X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  BIO_free(b);
  CU_ASSERT_PTR_NOT_NULL(x);
  X509_free(x);
  b = BIO_new_file(path_of("rsa.pub"), "r");
  EVP_PKEY *pub = PEM_read_bio_PUBKEY_ex(b, NULL, NULL, NULL, libctx, NULL);
  BIO_free(b);
  CU_ASSERT_STRING_EQUAL(provider_of(pub), "default");
  EVP_PKEY_free(pub);
  b = BIO_new_file(path_of("dh.pem"), "r");
  EVP_PKEY *dh = PEM_read_bio_Parameters_ex(b, NULL, libctx, NULL);
  BIO_free(b);
  CU_ASSERT_TRUE(dh != NULL && EVP_PKEY_is_a(dh, "DH"));
  EVP_PKEY_free(dh);
  /* Key types secmem does not seal load as before, from the default
   * provider: DSA (PKCS#8 and traditional), an SM2 key. */
  static const char *const foreign[] = {"dsa.pem", "dsa_trad.pem", "sm2.pem", "dsa_enc.pem"};
  for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
    SSL_CTX *c = NULL;
    EVP_PKEY *k = load_via(VIA_PEM_BIO, path_of(foreign[i]), PASS, &c);
    if (k == NULL || strcmp(provider_of(k), "default") != 0) {
      fprintf(stderr, "\n  %s: provider %s\n", foreign[i], provider_of(k));
    }
    CU_ASSERT_STRING_EQUAL(provider_of(k), "default");
    EVP_PKEY_free(k);
  }
}

/* One BIO, a key and a certificate: reading goes on exactly after the key
 * (the stdio buffer was given back and wiped, not lost). Both orders, and
 * two keys in one file. */
static void test_key_and_certificate_in_one_bio(void) {
  BIO *b = BIO_new_file(path_of("key_then_cert.pem"), "r");
  EVP_PKEY *k = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL);
  X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  BIO_free(b);
  CU_ASSERT_STRING_EQUAL(provider_of(k), "secmem");
  CU_ASSERT_PTR_NOT_NULL(x);
  CU_ASSERT_TRUE(x != NULL && k != NULL && X509_check_private_key(x, k) == 1);
  EVP_PKEY_free(k);
  X509_free(x);

  b = BIO_new_file(path_of("cert_then_key.pem"), "r");
  x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  k = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL);
  BIO_free(b);
  CU_ASSERT_STRING_EQUAL(provider_of(k), "secmem");
  CU_ASSERT_TRUE(x != NULL && k != NULL && X509_check_private_key(x, k) == 1);
  EVP_PKEY_free(k);
  X509_free(x);

  b = BIO_new_file(path_of("two_keys.pem"), "r");
  EVP_PKEY *k1 = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL);
  EVP_PKEY *k2 = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL);
  EVP_PKEY *k3 = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL);
  BIO_free(b);
  ERR_clear_error();
  CU_ASSERT_STRING_EQUAL(provider_of(k1), "secmem");
  CU_ASSERT_STRING_EQUAL(provider_of(k2), "secmem");
  CU_ASSERT_TRUE(k1 != NULL && EVP_PKEY_is_a(k1, "RSA"));
  CU_ASSERT_TRUE(k2 != NULL && EVP_PKEY_is_a(k2, "EC"));
  CU_ASSERT_PTR_NULL(k3); /* the end of the file */
  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
}

/* HAProxy looks for DH parameters through the whole certificate file with
 * a decoder that wants parameters only: the private key on the way is
 * skipped, never decoded (by us or by OpenSSL), and the parameters found. */
static void dh_scan_child(void) {
  EVP_PKEY *dh = NULL;
  OSSL_DECODER_CTX *d = OSSL_DECODER_CTX_new_for_pkey(
      &dh, "PEM", NULL, "DH", OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS, libctx, NULL);
  BIO *b = BIO_new_file(path_of("cert_key_dh.pem"), "r");
  while (!BIO_eof(b) && dh == NULL) {
    OSSL_DECODER_from_bio(d, b);
  }
  BIO_free(b);
  OSSL_DECODER_CTX_free(d);
  ERR_clear_error();
  if (dh == NULL || !EVP_PKEY_is_a(dh, "DH")) {
    _exit(10);
  }
  EVP_PKEY_free(dh);
  _exit(scan_me(path_of("cert_key_dh.pem"), NULL) == 0 ? 0 : 11);
}

static void test_parameters_search_skips_the_key(void) {
  struct death_result r;
  death_run(dh_scan_child, &r);
  if (r.signalled || r.status != 0) {
    fprintf(stderr, "\n  DH search: status %d (10: no DH found, 11: key in memory)\n%s", r.status,
            r.stderr);
  }
  CU_ASSERT_TRUE(!r.signalled && r.status == 0);
}

/* ---- bad input --------------------------------------------------------------------- */

struct refusal {
  const char *file;
  const char *pass;
  const char *words; /* in the last error */
};

static void test_bad_input(void) {
  static const struct refusal cases[] = {
      {"truncated.pem", NULL, "truncated (no END line)"},
      {"bad_base64.pem", NULL, "not valid base64"},
      {"rsa_enc.pem", "wrong", "wrong passphrase or corrupt encrypted key"},
      {"rsa_legacy.pem", "wrong", "wrong passphrase or corrupt encrypted key"},
      {"rsa_enc.pem", NULL, "no passphrase was given"},
      {"huge_block.pem", NULL, "larger than secmem reads"},
      {"garbage_der.pem", NULL, ""},
      {"empty.pem", NULL, ""},
  };
  /* A key held before the bad input keeps working after it. */
  BIO *b = BIO_new_file(path_of("p256.pem"), "r");
  EVP_PKEY *held = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, libctx, NULL);
  BIO_free(b);
  CU_ASSERT_STRING_EQUAL(provider_of(held), "secmem");
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    for (enum via via = VIA_PEM_BIO; via <= VIA_SSL_CTX_PEM; via++) {
      SSL_CTX *c = NULL;
      ERR_clear_error();
      EVP_PKEY *k = load_via(via, path_of(cases[i].file), cases[i].pass, &c);
      char err[512];
      last_error(err, sizeof(err));
      if (k != NULL || strstr(err, cases[i].words) == NULL) {
        fprintf(stderr, "\n  %s via %s: key %s, error \"%s\", expected \"%s\"\n", cases[i].file,
                via_name[via], provider_of(k), err, cases[i].words);
      }
      CU_ASSERT_PTR_NULL(k);
      CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].words));
      EVP_PKEY_free(k);
      SSL_CTX_free(c);
    }
  }
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  unsigned char sig[256];
  size_t sl = sizeof(sig);
  CU_ASSERT_EQUAL(EVP_DigestSignInit_ex(m, NULL, "SHA256", libctx, NULL, held, NULL), 1);
  CU_ASSERT_EQUAL(EVP_DigestSign(m, sig, &sl, MSG, sizeof(MSG)), 1);
  EVP_MD_CTX_free(m);
  EVP_PKEY_free(held);
}

/* A multi-prime RSA key, or an EC key on explicit curve parameters, cannot
 * be sealed; OpenSSL 3.0's PEM reader then falls back to its legacy path and
 * loads it unprotected. secmem says so on stderr. */
static const char *unsealable_file;

static void unsealable_child(void) {
  SSL_CTX *c = NULL;
  EVP_PKEY *k = load_via(VIA_PEM_BIO, path_of(unsealable_file), NULL, &c);
  int rc = k != NULL && strcmp(provider_of(k), "secmem") != 0 ? 0 : 10;
  EVP_PKEY_free(k);
  _exit(rc);
}

static void test_unsealable_key_is_announced(void) {
  static const struct {
    const char *file, *why;
  } cases[] = {{"rsa3.pem", "multi-prime RSA keys are not supported"},
               {"ec_explicit.pem", "EC keys with explicit or unknown curve parameters"}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct death_result r;
    unsealable_file = cases[i].file;
    death_run(unsealable_child, &r);
    CU_ASSERT_TRUE(!r.signalled && r.status == 0);
    CU_ASSERT_TRUE(stderr_has(&r, "secmem: a private key could not be sealed"));
    CU_ASSERT_TRUE(stderr_has(&r, cases[i].why));
  }
}

/* An EC key saved without its public key whose scalar is not below the
 * group order is no key: secmem refuses to compute a public point for it
 * (OpenSSL's own reader would reduce it and accept it). */
static void test_ec_without_public_bad_scalar(void) {
  SSL_CTX *c = NULL;
  ERR_clear_error();
  EVP_PKEY *k = load_via(VIA_STORE, path_of("ec_nopub_badscalar.pem"), NULL, &c);
  char err[512];
  last_error(err, sizeof(err));
  CU_ASSERT_PTR_NULL(k);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "public key of an EC private key saved without it could "
                                     "not be computed"));
  EVP_PKEY_free(k);
  SSL_CTX_free(c);
}

/* ---- sealed handles ------------------------------------------------------------------ */

/* i2d_PrivateKey of a key loaded from a file gives a sealed handle (what
 * Apache's mod_ssl caches); d2i_AutoPrivateKey gives the key back. */
static unsigned char *handle_of(const char *file, int *len) {
  SSL_CTX *c = NULL;
  EVP_PKEY *k = load_via(VIA_PEM_BIO, path_of(file), NULL, &c);
  *len = k != NULL ? i2d_PrivateKey(k, NULL) : -1;
  unsigned char *der = *len > 0 ? malloc((size_t)*len) : NULL, *w = der;
  if (der != NULL && i2d_PrivateKey(k, &w) != *len) {
    free(der);
    der = NULL;
  }
  EVP_PKEY_free(k);
  return der;
}

static void handles_child(void) {
  static const char *const files[] = {"rsa.pem", "pss.pem", "p256.pem", "ed25519.pem",
                                      "x25519.pem", "ed448.pem", "x448.pem"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    int len;
    unsigned char *h = handle_of(files[i], &len);
    if (h == NULL || h[0] != 0x30) {
      fprintf(stderr, "%s: no handle\n", files[i]);
      _exit(10);
    }
    const unsigned char *p = h;
    EVP_PKEY *k = d2i_AutoPrivateKey_ex(NULL, &p, len, libctx, NULL);
    if (k == NULL || strcmp(provider_of(k), "secmem") != 0 || p != h + len) {
      fprintf(stderr, "%s: handle does not load\n", files[i]);
      _exit(11);
    }
    EVP_PKEY_free(k);
    free(h);
  }
  /* Loaded, re-encoded, decoded: nothing of the key anywhere. */
  _exit(scan_me(path_of("rsa.pem"), NULL) == 0 ? 0 : 12);
}

static void test_sealed_handles(void) {
  struct death_result r;
  death_run(handles_child, &r);
  if (r.signalled || r.status != 0) {
    fprintf(stderr, "\n  handles: status %d\n%s", r.status, r.stderr);
  }
  CU_ASSERT_TRUE(!r.signalled && r.status == 0);
  /* The handle's key signs like the file's key (checked in a child, with
   * the reference key, as every load is). */
  check_load(VIA_D2I, "rsa.handle", NULL, false);

  /* A key born in secmem is never encoded. */
  EVP_PKEY *gen = EVP_PKEY_Q_keygen(libctx, "provider=secmem", "EC", "P-256");
  CU_ASSERT_PTR_NOT_NULL_FATAL(gen);
  ERR_clear_error();
  CU_ASSERT_TRUE(i2d_PrivateKey(gen, NULL) <= 0);
  char err[2048];
  last_error(err, sizeof(err));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "made inside secmem"));
  EVP_PKEY_free(gen);

  /* A handle made by another process: refused, saying so. */
  unsigned char buf[4096];
  int fd = open(path_of("foreign.handle"), O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
  if (fd >= 0) {
    close(fd);
  }
  CU_ASSERT_TRUE_FATAL(n > 0);
  const unsigned char *p = buf;
  ERR_clear_error();
  CU_ASSERT_PTR_NULL(d2i_AutoPrivateKey_ex(NULL, &p, (long)n, libctx, NULL));
  last_error(err, sizeof(err));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "made by another process"));

  /* Tampered: a byte of the sealed part, or another key's public part. */
  int len;
  unsigned char *h = handle_of("p256.pem", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  h[len - 5] ^= 1;
  p = h;
  ERR_clear_error();
  CU_ASSERT_PTR_NULL(d2i_AutoPrivateKey_ex(NULL, &p, len, libctx, NULL));
  h[len - 5] ^= 1;
  int olen;
  unsigned char *other = handle_of("p256b.pem", &olen); /* another key, the same layout */
  CU_ASSERT_PTR_NOT_NULL_FATAL(other);
  CU_ASSERT_EQUAL_FATAL(olen, len);
  /* SEQUENCE(3) OID(22) UTF8 "EC"(4) OCTET STRING header(2): the
   * SubjectPublicKeyInfo (91 bytes) starts at 31. */
  CU_ASSERT_EQUAL(memcmp(h + 31, other + 31, 26), 0); /* the same curve... */
  CU_ASSERT_NOT_EQUAL(memcmp(h + 31, other + 31, 91), 0); /* ...another point */
  memcpy(h + 31, other + 31, 91);
  p = h;
  ERR_clear_error();
  EVP_PKEY *mixed = d2i_AutoPrivateKey_ex(NULL, &p, len, libctx, NULL);
  last_error(err, sizeof(err));
  CU_ASSERT_PTR_NULL(mixed);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not match its public key"));
  EVP_PKEY_free(mixed);
  free(other);
  free(h);
}

/* ---- configuration ----------------------------------------------------------------- */

/* A library context configured by an openssl.cnf. */
static OSSL_LIB_CTX *configured(const char *name, const char *first, const char *second,
                                const char *extra) {
  char *conf = path_of(name);
  FILE *f = fopen(conf, "w");
  if (f == NULL) {
    return NULL;
  }
  fprintf(f,
          "openssl_conf = init\n[init]\nproviders = provs\n[provs]\n%s = %s_sect\n%s = %s_sect\n"
          "[default_sect]\nactivate = 1\n[secmem_sect]\nmodule = %s/secmem.so\n%s\nactivate = 1\n",
          first, first, second, second, SECMEM_PROVIDER_DIR, extra);
  fclose(f);
  OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
  if (ctx != NULL && OSSL_LIB_CTX_load_config(ctx, conf) != 1) {
    OSSL_LIB_CTX_free(ctx); /* the errors stay on the queue */
    return NULL;
  }
  return ctx;
}

static const char *provider_in(OSSL_LIB_CTX *ctx, const char *file) {
  BIO *b = BIO_new_file(path_of(file), "r");
  EVP_PKEY *k = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, ctx, NULL);
  BIO_free(b);
  static char name[32];
  snprintf(name, sizeof(name), "%s", provider_of(k));
  EVP_PKEY_free(k);
  return name;
}

/* The keys these load in the clear stay in children. */
static void secmem_first_child(void) {
  OSSL_LIB_CTX *b = configured("secmem-first.cnf", "secmem", "default", "");
  _exit(b != NULL && strcmp(provider_in(b, "rsa.pem"), "default") == 0 ? 0 : 10);
}

static void transparent_off_child(void) {
  OSSL_LIB_CTX *off = configured("off.cnf", "default", "secmem", "transparent = no");
  _exit(off != NULL && strcmp(provider_in(off, "rsa.pem"), "default") == 0 ? 0 : 10);
}

static void test_configuration(void) {
  /* default listed before secmem (as in conf/openssl-secmem.cnf): secmem's
   * decoders come first. */
  OSSL_LIB_CTX *a = configured("default-first.cnf", "default", "secmem", "");
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_STRING_EQUAL(provider_in(a, "rsa.pem"), "secmem");
  CU_ASSERT_STRING_EQUAL(provider_in(a, "ec_trad.pem"), "secmem");
  OSSL_LIB_CTX_free(a);
  /* secmem listed first: OpenSSL's decoders come first and the key loads
   * unprotected -- and secmem says so. */
  struct death_result r;
  death_run(secmem_first_child, &r);
  CU_ASSERT_TRUE(!r.signalled && r.status == 0);
  CU_ASSERT_TRUE(stderr_has(&r, "list default before secmem in openssl.cnf"));
  /* transparent = no: the decoders are off. */
  death_run(transparent_off_child, &r);
  CU_ASSERT_TRUE(!r.signalled && r.status == 0);
  CU_ASSERT_PTR_NULL(strstr(r.stderr, "list default before secmem"));
}

/* ---- setup ------------------------------------------------------------------------- */

static void setup_files(void) {
  run("export OPENSSL_CONF=/dev/null; "
      "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem && "
      "openssl genpkey -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 -out pss.pem && "
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.pem && "
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pem && "
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256b.pem && "
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out p521.pem && "
      "for t in ed25519 x25519 ed448 x448; do openssl genpkey -algorithm $t -out $t.pem; done && "
      "openssl rsa -in rsa.pem -traditional -out rsa_trad.pem && "
      "openssl ec -in p256.pem -out ec_trad.pem && "
      "openssl ec -in p256.pem -no_public -out ec_nopub.pem && "
      "openssl pkcs8 -topk8 -nocrypt -in ec_nopub.pem -out ec_nopub_pkcs8.pem && "
      "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
      "-pkeyopt rsa_keygen_primes:3 -out rsa3.pem && "
      "openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout -out ec_explicit.pem && "
      "openssl pkcs8 -topk8 -in rsa.pem -v2 aes-256-cbc -passout 'pass:" PASS "' -out rsa_enc.pem && "
      "openssl pkcs8 -topk8 -in p256.pem -v2 aes-128-cbc -passout 'pass:" PASS "' -out p256_enc.pem && "
      "openssl pkcs8 -topk8 -in ed25519.pem -v2 aes-256-cbc -passout 'pass:" PASS "' -out ed25519_enc.pem && "
      "openssl rsa -in rsa.pem -traditional -aes128 -passout 'pass:" PASS "' -out rsa_legacy.pem && "
      "openssl ec -in p256.pem -aes256 -passout 'pass:" PASS "' -out ec_legacy.pem && "
      "openssl pkey -in rsa.pem -outform DER -out rsa.der && "
      "openssl rsa -in rsa.pem -traditional -outform DER -out rsa_trad.der && "
      "openssl ec -in p256.pem -outform DER -out ec_trad.der && "
      "openssl pkey -in p384.pem -outform DER -out p384.der && "
      "openssl pkey -in ed25519.pem -outform DER -out ed25519.der && "
      "openssl pkey -in x448.pem -outform DER -out x448.der && "
      "openssl pkcs8 -topk8 -in rsa.pem -outform DER -v2 aes-256-cbc -passout 'pass:" PASS
      "' -out rsa_enc.der && "
      "openssl pkey -in rsa.pem -pubout -out rsa.pub && "
      "openssl req -x509 -key rsa.pem -out rsa.crt -subj /CN=localhost -days 2 && "
      "openssl genpkey -genparam -algorithm DH -pkeyopt dh_param:ffdhe2048 -out dh.pem && "
      "openssl genpkey -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -out dsa.pem 2>/dev/null || "
      "{ openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -out dsap.pem && "
      "openssl genpkey -paramfile dsap.pem -out dsa.pem; }; "
      "openssl dsa -in dsa.pem -out dsa_trad.pem && "
      "openssl pkcs8 -topk8 -in dsa.pem -v2 aes-256-cbc -passout 'pass:" PASS "' -out dsa_enc.pem && "
      "openssl genpkey -algorithm SM2 -out sm2.pem && "
      "cat rsa.pem rsa.crt > key_then_cert.pem && cat rsa.crt rsa.pem > cert_then_key.pem && "
      "cat rsa.pem ec_trad.pem > two_keys.pem && cat rsa.crt rsa.pem dh.pem > cert_key_dh.pem && "
      "head -c 600 rsa.pem > truncated.pem && "
      "printf '%s\\n' '-----BEGIN EC PRIVATE KEY-----' "
      "'MDECAQEEIP//////////////////////////////////////////oAoGCCqGSM49AwEH' "
      "'-----END EC PRIVATE KEY-----' > ec_nopub_badscalar.pem && "
      "{ echo '-----BEGIN PRIVATE KEY-----'; echo 'MIIB!!notbase64!!'; "
      "echo '-----END PRIVATE KEY-----'; } > bad_base64.pem && "
      "{ echo '-----BEGIN PRIVATE KEY-----'; head -c 300 /dev/urandom | base64; "
      "echo '-----END PRIVATE KEY-----'; } > garbage_der.pem && "
      "{ echo '-----BEGIN PRIVATE KEY-----'; head -c 80000 /dev/zero | base64; "
      "echo '-----END PRIVATE KEY-----'; } > huge_block.pem && "
      ": > empty.pem");
}

/* key (PEM) -> its sealed handle in out. 0 or -1. */
static int make_handle(const char *key, const char *out) {
  SSL_CTX *c = NULL;
  EVP_PKEY *k = load_via(VIA_PEM_BIO, key, NULL, &c);
  int len = k != NULL ? i2d_PrivateKey(k, NULL) : -1;
  unsigned char *der = len > 0 ? malloc((size_t)len) : NULL, *w = der;
  FILE *f = der != NULL && i2d_PrivateKey(k, &w) == len ? fopen(out, "wb") : NULL;
  int rc = f != NULL && fwrite(der, 1, (size_t)len, f) == (size_t)len ? 0 : -1;
  if (f != NULL && fclose(f) != 0) {
    rc = -1;
  }
  free(der);
  EVP_PKEY_free(k);
  return rc;
}

static OSSL_PROVIDER *providers[3]; /* default and secmem in libctx, default in ref_libctx */

static int load_providers(void) {
  libctx = OSSL_LIB_CTX_new();
  return libctx != NULL && OSSL_PROVIDER_set_default_search_path(libctx, SECMEM_PROVIDER_DIR) == 1 &&
                 (providers[0] = OSSL_PROVIDER_load(libctx, "default")) != NULL &&
                 (providers[1] = OSSL_PROVIDER_load(libctx, "secmem")) != NULL
             ? 0
             : -1;
}

static void unload_providers(void) {
  for (int i = 2; i >= 0; i--) {
    OSSL_PROVIDER_unload(providers[i]);
  }
  OSSL_LIB_CTX_free(libctx);
  OSSL_LIB_CTX_free(ref_libctx);
}

int main(int argc, char **argv) {
  const char *self = argv[0];
  if (argc == 4 && strcmp(argv[1], "--make-handle") == 0) {
    int rc = load_providers() == 0 && make_handle(argv[2], argv[3]) == 0 ? 0 : 2;
    unload_providers();
    return rc;
  }
  if (mkdtemp(dir) == NULL) {
    return 2;
  }
  setup_files();
  ref_libctx = OSSL_LIB_CTX_new();
  if (load_providers() != 0 || ref_libctx == NULL ||
      (providers[2] = OSSL_PROVIDER_load(ref_libctx, "default")) == NULL) {
    ERR_print_errors_fp(stderr);
    return 2;
  }
  /* A handle made here (the key sealed, never in clear in this process),
   * and one made by another process: this program, run again. */
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "'%s' --make-handle '%s' '%s'", self, path_of("rsa.pem"),
           path_of("foreign.handle"));
  if (make_handle(path_of("rsa.pem"), path_of("rsa.handle")) != 0 || system(cmd) != 0) {
    fprintf(stderr, "cannot make the sealed handles\n");
    return 2;
  }
  static const struct harness_test tests[] = {
      {"PKCS#8 PEM of every key type, three ways, nothing in memory", test_pkcs8_pem},
      {"traditional RSA and EC PEM", test_traditional_pem},
      {"encrypted PKCS#8 and legacy PEM encryption", test_encrypted_pem},
      {"DER: d2i_AutoPrivateKey, OSSL_STORE, SSL_CTX (ASN1)", test_der},
      {"certificates, public keys, parameters, DSA and SM2 keys untouched",
       test_other_objects_untouched},
      {"a key and a certificate read from one BIO", test_key_and_certificate_in_one_bio},
      {"a parameters search skips the private key", test_parameters_search_skips_the_key},
      {"bad input is refused with a clear error", test_bad_input},
      {"a key that cannot be sealed is announced", test_unsealable_key_is_announced},
      {"an EC key without its public key and a bad scalar is refused",
       test_ec_without_public_bad_scalar},
      {"configuration: provider order, transparent = no", test_configuration},
      {"sealed handles: i2d_PrivateKey and back", test_sealed_handles},
  };
  int rc = harness_main("decoder", tests, sizeof(tests) / sizeof(tests[0]));
  char rm[600];
  snprintf(rm, sizeof(rm), "rm -rf %s", dir);
  if (system(rm) != 0) {
    rc = rc != 0 ? rc : 1;
  }
  unload_providers();
  return rc;
}
