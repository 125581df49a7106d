/*
 * test_store.c - the secmem: store loader through OSSL_STORE: every key
 * file format (PEM and DER; PKCS#8, encrypted PKCS#8, traditional RSA/EC,
 * legacy PEM encryption; RSA, RSA-PSS, EC, Ed25519, X25519, Ed448, X448),
 * passphrases through a UI method and through a passphrase callback,
 * certificates in the same file, absolute and relative paths; and every bad
 * input (missing, unreadable, empty, huge, truncated, garbage, wrong
 * passphrase, unsupported type) refused with a clear error and no crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509.h>

#include "harness.h"
#include "keyfiles.h"

static OSSL_LIB_CTX *libctx;
static OSSL_LIB_CTX *ref_libctx; /* the default provider alone: reads the reference keys */
static char dir[] = "/tmp/secmem-store-XXXXXX";

struct loaded {
  EVP_PKEY *key;
  int certs;
  unsigned long err; /* last error, if loading failed */
  char reason[256];
};

/* Load everything from uri, the passphrase through a UI method that answers
 * the prompt (use_ui) or a PEM password callback wrapped into a UI method,
 * as OpenSSL's own PEM readers do. */
static struct loaded load(const char *uri, const char *pass, bool use_ui) {
  struct loaded r = {0};
  ERR_clear_error();
  UI_METHOD *ui = NULL;
  if (use_ui) {
    ui = UI_create_method("secmem test");
    UI_method_set_reader(ui, keyfile_ui_reader);
  } else {
    ui = UI_UTIL_wrap_read_pem_callback(keyfile_pem_cb, 0);
  }
  OSSL_STORE_CTX *s = OSSL_STORE_open_ex(uri, libctx, NULL, ui, (void *)pass, NULL, NULL, NULL);
  while (s != NULL && !OSSL_STORE_eof(s)) {
    OSSL_STORE_INFO *info = OSSL_STORE_load(s);
    if (info == NULL) {
      break;
    }
    if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY && r.key == NULL) {
      r.key = OSSL_STORE_INFO_get1_PKEY(info);
    } else if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_CERT) {
      r.certs++;
    }
    OSSL_STORE_INFO_free(info);
  }
  OSSL_STORE_close(s);
  UI_destroy_method(ui);
  const char *data = NULL;
  int flags = 0;
  unsigned long e;
  while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
    r.err = e;
    snprintf(r.reason, sizeof(r.reason), "%s | %s",
             ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) : "?",
             (flags & ERR_TXT_STRING) && data != NULL ? data : "");
  }
  return r;
}

static char *path_of(const char *name) {
  static char p[512];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  return p;
}

static char *uri_of(const char *name) {
  static char u[600];
  snprintf(u, sizeof(u), "secmem:%s/%s", dir, name);
  return u;
}

static bool is_secmem(EVP_PKEY *k) {
  return k != NULL && strcmp(OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(k)), "secmem") == 0;
}

/* Signs with k, verifies with the file's key loaded by the default provider. */
static bool signs_like_file(EVP_PKEY *k, const char *file, const char *pass) {
  /* Encrypted DER has no reader here: its plain twin is the reference. */
  if (strcmp(file, "p256_enc.der") == 0) {
    file = "p256.pem";
    pass = NULL;
  }
  EVP_PKEY *ref = keyfile_read(path_of(file), pass, ref_libctx);
  if (ref == NULL) {
    return false;
  }
  bool ok;
  if (EVP_PKEY_is_a(k, "X25519") || EVP_PKEY_is_a(k, "X448")) {
    ok = EVP_PKEY_eq(k, ref) == 1;
  } else {
    bool ed = EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448");
    unsigned char sig[1024];
    size_t sl = sizeof(sig);
    const unsigned char msg[] = "store";
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    ok = EVP_DigestSignInit_ex(m, NULL, ed ? NULL : "SHA256", libctx, NULL, k, NULL) == 1 &&
         EVP_DigestSign(m, sig, &sl, msg, 5) == 1 &&
         EVP_DigestVerifyInit_ex(v, NULL, ed ? NULL : "SHA256", ref_libctx, NULL, ref,
                                 NULL) == 1 &&
         EVP_DigestVerify(v, sig, sl, msg, 5) == 1;
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(v);
  }
  EVP_PKEY_free(ref);
  return ok;
}

static void run(const char *cmd) {
  char full[2048];
  snprintf(full, sizeof(full), "cd %s && { %s; } >/dev/null 2>&1", dir, cmd);
  if (system(full) != 0) {
    fprintf(stderr, "setup failed: %s\n", cmd);
    exit(2);
  }
}

/* ---- formats ----------------------------------------------------------------- */

static void check_file(const char *file, const char *pass, int certs) {
  struct loaded r = load(uri_of(file), pass, true);
  if (r.key == NULL) {
    fprintf(stderr, "\n  %s: %s\n", file, r.reason);
  }
  CU_ASSERT_TRUE(is_secmem(r.key));
  bool same = r.key != NULL && signs_like_file(r.key, file, pass);
  if (!same) {
    fprintf(stderr, "\n  %s: does not sign like the file's key\n", file);
  }
  CU_ASSERT_TRUE(same);
  CU_ASSERT_EQUAL(r.certs, certs);
  /* Private export is refused: the key is sealed. */
  OSSL_PARAM *p = NULL;
  CU_ASSERT_TRUE(r.key != NULL && EVP_PKEY_todata(r.key, EVP_PKEY_KEYPAIR, &p) != 1);
  ERR_clear_error();
  EVP_PKEY_free(r.key);
}

static void test_pkcs8_pem_every_type(void) {
  static const char *const files[] = {"rsa.pem", "pss.pem", "p256.pem", "p384.pem", "p521.pem",
                                      "ed25519.pem", "x25519.pem", "ed448.pem", "x448.pem"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    check_file(files[i], NULL, 0);
  }
}

static void test_traditional_and_der(void) {
  check_file("rsa_trad.pem", NULL, 0);
  check_file("ec_trad.pem", NULL, 0);
  check_file("rsa.der", NULL, 0);
  check_file("p256.der", NULL, 0);
  check_file("rsa_trad.der", NULL, 0);
  check_file("ed25519.der", NULL, 0);
}

static void test_encrypted(void) {
  check_file("rsa_enc.pem", "secret", 0);    /* encrypted PKCS#8, AES-256 */
  check_file("p256_enc.der", "secret", 0);   /* encrypted PKCS#8 in DER */
  check_file("rsa_legacy.pem", "secret", 0); /* Proc-Type: 4,ENCRYPTED */
  check_file("ec_legacy.pem", "secret", 0);
}

static void test_passphrase_callback(void) {
  /* The same files through a PEM password callback instead of a UI. */
  static const char *const files[] = {"rsa_enc.pem", "p256_enc.der", "rsa_legacy.pem"};
  for (size_t i = 0; i < 3; i++) {
    struct loaded r = load(uri_of(files[i]), "secret", false);
    CU_ASSERT_TRUE(is_secmem(r.key));
    CU_ASSERT_TRUE(r.key != NULL && signs_like_file(r.key, files[i], "secret"));
    EVP_PKEY_free(r.key);
    r = load(uri_of(files[i]), "wrong", false);
    CU_ASSERT_PTR_NULL(r.key);
    CU_ASSERT_TRUE(strstr(r.reason, "wrong passphrase") != NULL);
  }
  /* No passphrase at all: a clear error, not a hang. */
  struct loaded r = load(uri_of("rsa_enc.pem"), NULL, false);
  CU_ASSERT_PTR_NULL(r.key);
}

static void test_key_and_certificate_in_one_file(void) {
  check_file("bundle.pem", NULL, 1);
  struct loaded r = load(uri_of("bundle.pem"), NULL, true);
  CU_ASSERT_EQUAL(r.certs, 1);
  EVP_PKEY_free(r.key);
}

static void test_relative_path(void) {
  char cwd[512];
  CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof(cwd)));
  CU_ASSERT_EQUAL_FATAL(chdir(dir), 0);
  struct loaded r = load("secmem:p256.pem", NULL, true);
  CU_ASSERT_TRUE(is_secmem(r.key));
  EVP_PKEY_free(r.key);
  r = load("secmem:./rsa.pem", NULL, true);
  CU_ASSERT_TRUE(is_secmem(r.key));
  EVP_PKEY_free(r.key);
  CU_ASSERT_EQUAL(chdir(cwd), 0);
  char uri[600];
  snprintf(uri, sizeof(uri), "secmem://%s/p256.pem", dir); /* secmem:///abs */
  r = load(uri, NULL, true);
  CU_ASSERT_TRUE(is_secmem(r.key));
  EVP_PKEY_free(r.key);
}

/* ---- bad input ------------------------------------------------------------------- */

static void expect_refused(const char *uri, const char *pass, const char *words) {
  struct loaded r = load(uri, pass, true);
  CU_ASSERT_PTR_NULL(r.key);
  if (strstr(r.reason, words) == NULL) {
    fprintf(stderr, "\n  %s: expected \"%s\" in the error, got \"%s\"\n", uri, words, r.reason);
    CU_FAIL("error does not say what went wrong");
  }
  EVP_PKEY_free(r.key);
}

static void test_bad_input(void) {
  expect_refused(uri_of("no-such-file.pem"), NULL, "No such file or directory");
  expect_refused(uri_of("empty.pem"), NULL, "is empty");
  expect_refused(uri_of("huge.pem"), NULL, "secmem reads key files of at most");
  expect_refused(uri_of("truncated.pem"), NULL, "truncated or corrupt PEM");
  expect_refused(uri_of("garbage.pem"), NULL, "not valid base64");
  expect_refused(uri_of("garbage.der"), NULL, "not valid DER");
  expect_refused(uri_of("bitflip.pem"), NULL, "");
  expect_refused(uri_of("rsa_enc.pem"), "wrong", "wrong passphrase or corrupt encrypted key");
  expect_refused(uri_of("rsa_legacy.pem"), "wrong", "wrong passphrase or corrupt encrypted key");
  expect_refused(uri_of("dsa.pem"), NULL, "secmem does not support");
  expect_refused(uri_of("dsa_trad.pem"), NULL, "are not supported");
  expect_refused(uri_of("cert-only-no-key.txt"), NULL, "not valid DER");
  expect_refused(uri_of("params-only.pem"), NULL, "holds no private key or certificate");
  expect_refused("secmem:", NULL, "names no key file");
  expect_refused(uri_of(""), NULL, "not a regular file"); /* the directory itself */
  expect_refused("secmem://otherhost/etc/key.pem", NULL, "only local files");
}

static void child_unreadable(void) {
  /* As nobody, a root-only file cannot be opened. */
  if (drop_privileges() != 0) {
    _exit(10);
  }
  struct loaded r = load(uri_of("root-only.pem"), NULL, true);
  _exit(r.key == NULL && strstr(r.reason, "Permission denied") != NULL ? 0 : 11);
}

static void test_unreadable(void) {
  struct death_result r;
  death_run(child_unreadable, &r);
  CU_ASSERT_FALSE(r.signalled);
  CU_ASSERT_EQUAL(r.status, 0);
}

static void test_nothing_lost_after_errors(void) {
  /* A key loaded before a run of bad inputs still works after them. */
  struct loaded good = load(uri_of("p256.pem"), NULL, true);
  CU_ASSERT_TRUE(is_secmem(good.key));
  for (int i = 0; i < 20; i++) {
    struct loaded bad = load(uri_of(i % 2 ? "garbage.pem" : "huge.pem"), NULL, true);
    CU_ASSERT_PTR_NULL(bad.key);
  }
  CU_ASSERT_TRUE(signs_like_file(good.key, "p256.pem", NULL));
  EVP_PKEY_free(good.key);
}

static void setup_files(void) {
  run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem");
  run("openssl genpkey -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 -pkeyopt "
      "rsa_pss_keygen_md:sha256 -out pss.pem");
  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.pem");
  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pem");
  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out p521.pem");
  run("openssl genpkey -algorithm ED25519 -out ed25519.pem");
  run("openssl genpkey -algorithm X25519 -out x25519.pem");
  run("openssl genpkey -algorithm ED448 -out ed448.pem");
  run("openssl genpkey -algorithm X448 -out x448.pem");
  run("openssl pkey -in rsa.pem -traditional -out rsa_trad.pem");
  run("openssl ec -in p256.pem -out ec_trad.pem");
  run("openssl pkey -in rsa.pem -outform DER -out rsa.der");
  run("openssl pkey -in p256.pem -outform DER -out p256.der");
  run("openssl rsa -in rsa.pem -traditional -outform DER -out rsa_trad.der");
  run("openssl pkey -in ed25519.pem -outform DER -out ed25519.der");
  run("openssl pkcs8 -topk8 -in rsa.pem -v2 aes-256-cbc -passout pass:secret -out rsa_enc.pem");
  run("openssl pkcs8 -topk8 -in p256.pem -v2 aes-128-cbc -passout pass:secret -outform DER "
      "-out p256_enc.der");
  run("openssl rsa -in rsa.pem -traditional -aes256 -passout pass:secret -out rsa_legacy.pem");
  run("openssl ec -in p256.pem -aes128 -passout pass:secret -out ec_legacy.pem");
  run("openssl req -x509 -key p256.pem -subj /CN=x -days 1 -out p256.crt && cat p256.pem p256.crt "
      "> bundle.pem");
  run("openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:1024 -out dsap.pem && "
      "openssl genpkey -paramfile dsap.pem -out dsa.pem && "
      "openssl dsa -in dsa.pem -out dsa_trad.pem");
  run(": > empty.pem");
  run("head -c 104857600 /dev/zero > huge.pem");
  run("head -n 5 rsa.pem > truncated.pem");
  run("printf -- '-----BEGIN PRIVATE KEY-----\\n!!!not base64!!!\\n-----END PRIVATE KEY-----\\n' "
      "> garbage.pem");
  run("head -c 300 /dev/urandom > garbage.der");
  run("sed '5s/A/B/;5s/a/b/;6s/Q/R/' p256.pem > bitflip.pem");
  run("echo 'just some text' > cert-only-no-key.txt");
  run("cp dsap.pem params-only.pem");
  run("cp p256.pem root-only.pem && chmod 600 root-only.pem && chmod 755 .");
}

int main(void) {
  if (mkdtemp(dir) == NULL) {
    return 2;
  }
  setup_files();
  libctx = OSSL_LIB_CTX_new();
  if (libctx == NULL || OSSL_PROVIDER_set_default_search_path(libctx, SECMEM_PROVIDER_DIR) != 1 ||
      OSSL_PROVIDER_load(libctx, "default") == NULL || OSSL_PROVIDER_load(libctx, "secmem") == NULL) {
    ERR_print_errors_fp(stderr);
    return 2;
  }
  ref_libctx = OSSL_LIB_CTX_new();
  if (ref_libctx == NULL || OSSL_PROVIDER_load(ref_libctx, "default") == NULL) {
    ERR_print_errors_fp(stderr);
    return 2;
  }
  static const struct harness_test tests[] = {
      {"PKCS#8 PEM of every key type", test_pkcs8_pem_every_type},
      {"traditional PEM and DER", test_traditional_and_der},
      {"encrypted keys: PKCS#8 (PEM, DER) and legacy PEM", test_encrypted},
      {"passphrases through a PEM callback", test_passphrase_callback},
      {"a key and its certificate in one file", test_key_and_certificate_in_one_file},
      {"relative and secmem:/// paths", test_relative_path},
      {"bad input is refused with a clear error", test_bad_input},
      {"an unreadable file", test_unreadable},
      {"nothing held is lost after bad input", test_nothing_lost_after_errors},
  };
  int rc = harness_main("store", tests, sizeof(tests) / sizeof(tests[0]));
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) {
    rc = rc != 0 ? rc : 1;
  }
  return rc;
}
