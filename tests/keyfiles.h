/*
 * keyfiles.h - what the provider's key-file suites (test_store,
 * test_decoder) share: the two ways an application hands over a passphrase,
 * and reading a key file with a given library context.
 */
#ifndef SECMEM_TEST_KEYFILES_H
#define SECMEM_TEST_KEYFILES_H
#include <openssl/evp.h>
#include <openssl/ui.h>

/* A PEM password callback answering with the string u (refuses when NULL). */
int keyfile_pem_cb(char *buf, int size, int rwflag, void *u);
/* A UI reader answering every prompt with the UI's user data. */
int keyfile_ui_reader(UI *ui, UI_STRING *uis);
/* The private key in path (PEM, else DER) read in libctx, passphrase pass;
 * NULL if it cannot be read. Leaves the error queue empty. */
EVP_PKEY *keyfile_read(const char *path, const char *pass, OSSL_LIB_CTX *libctx);
#endif
