/*
 * fuzz_keyfile.c - libFuzzer harness for everything that reads a private
 * key file in the secmem provider: the transparent decoders (PEM and DER,
 * PKCS#8, encrypted PKCS#8, traditional, legacy PEM encryption, sealed-key
 * handles), the PEM and DER parsers under them, and the secmem: store.
 *
 * The input is a key file. It goes through the entry points a program uses:
 * PEM_read_bio_PrivateKey, d2i_AutoPrivateKey, OSSL_STORE "file:" (the
 * decoder chain that hands our references back to a second chain) and
 * OSSL_STORE "secmem:". The provider is registered as a built-in of a
 * library context with the default provider loaded first, as openssl.cnf
 * would have it, so its code is the instrumented code in this executable.
 *
 * Besides the sanitizers' checks: a key that comes back must be whole (it
 * has a size), and the error queue is emptied after every input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509.h>

static OSSL_LIB_CTX *libctx;
static UI_METHOD *ui;
static char path[64];
static char uri_file[96], uri_secmem[96];
static int fd = -1;

/* The passphrase of the encrypted seeds (fuzz/seeds.sh). */
static int pass_cb(char *buf, int size, int rwflag, void *u) {
  (void)rwflag;
  (void)u;
  static const char pass[] = "hunter2";
  if (size < (int)sizeof(pass)) {
    return -1;
  }
  memcpy(buf, pass, sizeof(pass));
  return (int)sizeof(pass) - 1;
}

/* A key that comes back must be whole. (It may come from no provider at
 * all: OpenSSL's legacy fallback for a key secmem declined, as documented.) */
static void check_key(EVP_PKEY *pkey) {
  if (pkey == NULL) {
    return;
  }
  if (EVP_PKEY_get_bits(pkey) <= 0) {
    const OSSL_PROVIDER *prov = EVP_PKEY_get0_provider(pkey);
    fprintf(stderr, "fuzz_keyfile: a %s key from %s came back with no size\n",
            EVP_PKEY_get0_type_name(pkey), prov != NULL ? OSSL_PROVIDER_get0_name(prov) : "no provider");
    abort();
  }
  EVP_PKEY_free(pkey);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  libctx = OSSL_LIB_CTX_new();
  if (libctx == NULL || OSSL_PROVIDER_add_builtin(libctx, "secmem", OSSL_provider_init) != 1 ||
      OSSL_PROVIDER_load(libctx, "default") == NULL ||
      OSSL_PROVIDER_load(libctx, "secmem") == NULL) {
    ERR_print_errors_fp(stderr);
    fprintf(stderr, "fuzz_keyfile: cannot load the default and secmem providers\n");
    exit(1);
  }
  ui = UI_UTIL_wrap_read_pem_callback(pass_cb, 0);
  snprintf(path, sizeof(path), "/tmp/fuzz_keyfile.%ld.XXXXXX", (long)getpid());
  fd = mkstemp(path);
  if (ui == NULL || fd < 0) {
    fprintf(stderr, "fuzz_keyfile: set-up failed\n");
    exit(1);
  }
  snprintf(uri_file, sizeof(uri_file), "file:%s", path);
  snprintf(uri_secmem, sizeof(uri_secmem), "secmem:%s", path);
  return 0;
}

static void through_store(const char *uri) {
  OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, libctx, NULL, ui, NULL, NULL, NULL, NULL);
  if (st == NULL) {
    return;
  }
  for (int i = 0; i < 16 && !OSSL_STORE_eof(st); i++) {
    OSSL_STORE_INFO *info = OSSL_STORE_load(st);
    if (info == NULL) {
      if (OSSL_STORE_error(st)) {
        break;
      }
      continue;
    }
    if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
      check_key(OSSL_STORE_INFO_get1_PKEY(info));
    }
    OSSL_STORE_INFO_free(info);
  }
  OSSL_STORE_close(st);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len) {
  if (len > 256 * 1024) {
    return 0;
  }
  BIO *bio = BIO_new_mem_buf(data, (int)len);
  if (bio != NULL) {
    check_key(PEM_read_bio_PrivateKey_ex(bio, NULL, pass_cb, NULL, libctx, NULL));
    BIO_free(bio);
  }
  const unsigned char *p = data;
  check_key(d2i_AutoPrivateKey_ex(NULL, &p, (long)len, libctx, NULL));

  if (ftruncate(fd, 0) == 0 && pwrite(fd, data, len, 0) == (ssize_t)len) {
    through_store(uri_file);
    through_store(uri_secmem);
  }
  ERR_clear_error();
  return 0;
}
