/*
 * keyfiles.c - owns what the provider's key-file suites share: passphrase
 * callbacks and reading a key file with a given library context.
 */
#include "keyfiles.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

int keyfile_pem_cb(char *buf, int size, int rwflag, void *u) {
  (void)rwflag;
  const char *pass = u;
  if (pass == NULL || (int)strlen(pass) > size) {
    return -1;
  }
  memcpy(buf, pass, strlen(pass));
  return (int)strlen(pass);
}

int keyfile_ui_reader(UI *ui, UI_STRING *uis) {
  const char *pass = UI_get0_user_data(ui);
  if (UI_get_string_type(uis) == UIT_PROMPT || UI_get_string_type(uis) == UIT_VERIFY) {
    return pass != NULL && UI_set_result(ui, uis, pass) == 0;
  }
  return 1;
}

EVP_PKEY *keyfile_read(const char *path, const char *pass, OSSL_LIB_CTX *libctx) {
  FILE *f = fopen(path, "rb");
  EVP_PKEY *k = NULL;
  if (f != NULL) {
    k = PEM_read_PrivateKey_ex(f, NULL, keyfile_pem_cb, (void *)pass, libctx, NULL);
    if (k == NULL) {
      rewind(f);
      k = d2i_PrivateKey_ex_fp(f, NULL, libctx, NULL);
    }
    fclose(f);
  }
  ERR_clear_error();
  return k;
}
