/*
 * pem.c - owns private-key PEM and encrypted private keys in locked memory,
 * for the secmem: store and the transparent decoders alike: finding PEM
 * blocks, decoding their base64 (libsodium's constant-time decoder, into
 * locked memory), asking for a passphrase (into locked memory), and
 * decrypting encrypted PKCS#8 and legacy PEM encryption (Proc-Type /
 * DEK-Info) without the plaintext ever leaving locked memory uncleansed.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "smprov.h"

#define MAX_PASS 1024

/* ---- finding blocks ------------------------------------------------------------------- */

static const unsigned char *find(const unsigned char *hay, size_t hay_len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= hay_len && i <= hay_len - n; i++) {
    if (memcmp(hay + i, needle, n) == 0) {
      return hay + i;
    }
  }
  return NULL;
}

int smprov_pem_next(const unsigned char *text, size_t len, size_t *pos, struct smprov_pem_block *b) {
  const unsigned char *begin = find(text + *pos, len - *pos, "-----BEGIN ");
  if (begin == NULL) {
    return 0;
  }
  const unsigned char *lab = begin + 11, *end = text + len;
  const unsigned char *dash = find(lab, (size_t)(end - lab), "-----");
  if (dash == NULL || (size_t)(dash - lab) >= sizeof(b->label)) {
    return -1;
  }
  memcpy(b->label, lab, (size_t)(dash - lab));
  b->label[dash - lab] = '\0';
  const unsigned char *p = dash + 5;
  while (p < end && (*p == '\r' || *p == '\n')) {
    p++;
  }
  char end_marker[80];
  snprintf(end_marker, sizeof(end_marker), "-----END %s-----", b->label);
  const unsigned char *stop = find(p, (size_t)(end - p), end_marker);
  if (stop == NULL) {
    return -1; /* truncated */
  }
  /* Optional RFC 1421 headers, ended by an empty line. */
  b->headers = NULL;
  b->headers_len = 0;
  const unsigned char *eol = memchr(p, '\n', (size_t)(stop - p));
  if (eol != NULL && memchr(p, ':', (size_t)(eol - p)) != NULL) {
    const unsigned char *blank = find(p, (size_t)(stop - p), "\n\n");
    const unsigned char *blank_crlf = find(p, (size_t)(stop - p), "\r\n\r\n");
    if (blank_crlf != NULL && (blank == NULL || blank_crlf < blank)) {
      b->headers = p;
      b->headers_len = (size_t)(blank_crlf - p) + 2;
      p = blank_crlf + 4;
    } else if (blank != NULL) {
      b->headers = p;
      b->headers_len = (size_t)(blank - p) + 1;
      p = blank + 2;
    } else {
      return -1;
    }
  }
  b->body = p;
  b->body_len = (size_t)(stop - p);
  *pos = (size_t)(stop - text) + strlen(end_marker);
  return 1;
}

enum smprov_pem_label smprov_pem_label(const char *label) {
  static const struct {
    const char *label;
    enum smprov_pem_label kind;
  } known[] = {{"PRIVATE KEY", SMPROV_PEM_PKCS8},
               {"ENCRYPTED PRIVATE KEY", SMPROV_PEM_ENCRYPTED_PKCS8},
               {"RSA PRIVATE KEY", SMPROV_PEM_RSA},
               {"EC PRIVATE KEY", SMPROV_PEM_EC},
               {"CERTIFICATE", SMPROV_PEM_CERT},
               {"TRUSTED CERTIFICATE", SMPROV_PEM_CERT}};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    if (strcmp(label, known[i].label) == 0) {
      return known[i].kind;
    }
  }
  return strstr(label, "PRIVATE KEY") != NULL ? SMPROV_PEM_OTHER_PRIVATE : SMPROV_PEM_OTHER;
}

unsigned char *smprov_pem_body(const struct smprov_pem_block *b, const char *what, size_t *len) {
  size_t cap = b->body_len / 4 * 3 + 3;
  unsigned char *out = secmem_malloc(cap);
  if (out == NULL) {
    SMPROV_ERR_SECMEM("memory for a decoded key");
    return NULL;
  }
  const char *endp = NULL;
  if (sodium_base642bin(out, cap, (const char *)b->body, b->body_len, " \t\r\n", len, &endp,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      endp != (const char *)b->body + b->body_len) {
    secmem_free(out);
    SMPROV_ERR(SMPROV_R_KEY_FILE, "%s: the %s block is not valid base64", what, b->label);
    return NULL;
  }
  return out;
}

/* ---- passphrases and decryption ---------------------------------------------------------- */

/* Ask for the passphrase, into locked memory. */
static char *get_pass(const struct smprov_pass *pw, size_t *len) {
  char *pass = secmem_malloc(MAX_PASS);
  if (pass == NULL) {
    SMPROV_ERR_SECMEM("memory for a passphrase");
    return NULL;
  }
  OSSL_PARAM info[] = {OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO,
                                                        (char *)pw->what, 0),
                       OSSL_PARAM_construct_end()};
  if (pw->cb == NULL || !pw->cb(pass, MAX_PASS - 1, len, info, pw->cbarg)) {
    secmem_free(pass);
    SMPROV_ERR(SMPROV_R_BAD_PASSPHRASE, "%s is encrypted and no passphrase was given", pw->what);
    return NULL;
  }
  return pass;
}

unsigned char *smprov_decrypt_pkcs8(struct smprov_ctx *prov, const unsigned char *der, size_t len,
                                    const struct smprov_pass *pw, size_t *out_len) {
  const unsigned char *r = der;
  X509_SIG *sig = d2i_X509_SIG(NULL, &r, (long)len);
  if (sig == NULL) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "%s: corrupt encrypted private key", pw->what);
    return NULL;
  }
  size_t plen = 0;
  char *pass = get_pass(pw, &plen);
  /* PKCS8_decrypt_ex cleanses its intermediate plaintext; the result's key
   * octets are cleansed when it is freed. */
  PKCS8_PRIV_KEY_INFO *p8 =
      pass != NULL ? PKCS8_decrypt_ex(sig, pass, (int)plen, prov->priv, NULL) : NULL;
  secmem_free(pass);
  X509_SIG_free(sig);
  if (p8 == NULL) {
    if (pass != NULL) {
      ERR_clear_error();
      SMPROV_ERR(SMPROV_R_BAD_PASSPHRASE, "%s: wrong passphrase or corrupt encrypted key",
                 pw->what);
    }
    return NULL;
  }
  int n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
  unsigned char *out = n > 0 ? secmem_malloc((size_t)n) : NULL;
  unsigned char *w = out;
  if (out == NULL || i2d_PKCS8_PRIV_KEY_INFO(p8, &w) != n) {
    SMPROV_ERR_SECMEM("memory for a decrypted key");
    secmem_free(out);
    out = NULL;
  }
  PKCS8_PRIV_KEY_INFO_free(p8);
  *out_len = (size_t)n;
  return out;
}

/* OpenSSL's PEM password callback, fed from our locked passphrase. */
struct pem_pass {
  const char *pass;
  size_t len;
};

static int pem_pass_cb(char *buf, int size, int rwflag, void *u) {
  const struct pem_pass *p = u;
  (void)rwflag;
  if (p->len > (size_t)size) {
    return -1;
  }
  memcpy(buf, p->pass, p->len);
  return (int)p->len;
}

/* Legacy PEM encryption (Proc-Type: 4,ENCRYPTED), decrypted in place. */
static int decrypt_legacy(const struct smprov_pem_block *b, unsigned char *der, size_t *len,
                          const struct smprov_pass *pw) {
  char headers[512];
  if (b->headers_len >= sizeof(headers)) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "%s: PEM headers too long", pw->what);
    return 0;
  }
  memcpy(headers, b->headers, b->headers_len);
  headers[b->headers_len] = '\0';
  EVP_CIPHER_INFO cipher;
  if (PEM_get_EVP_CIPHER_INFO(headers, &cipher) != 1) {
    ERR_clear_error();
    SMPROV_ERR(SMPROV_R_KEY_FILE, "%s: unknown PEM encryption", pw->what);
    return 0;
  }
  size_t plen = 0;
  char *pass = get_pass(pw, &plen);
  if (pass == NULL) {
    return 0;
  }
  struct pem_pass pp = {pass, plen};
  long dlen = (long)*len;
  int ok = PEM_do_header(&cipher, der, &dlen, pem_pass_cb, &pp);
  secmem_free(pass);
  if (ok != 1) {
    ERR_clear_error();
    SMPROV_ERR(SMPROV_R_BAD_PASSPHRASE, "%s: wrong passphrase or corrupt encrypted key", pw->what);
    return 0;
  }
  *len = (size_t)dlen;
  return 1;
}

unsigned char *smprov_pem_private_der(struct smprov_ctx *prov, const struct smprov_pem_block *b,
                                      const struct smprov_pass *pw, enum smprov_der_kind *kind,
                                      size_t *len) {
  enum smprov_pem_label label = smprov_pem_label(b->label);
  size_t n = 0;
  unsigned char *der = smprov_pem_body(b, pw->what, &n);
  if (der == NULL) {
    return NULL;
  }
  switch (label) {
  case SMPROV_PEM_PKCS8:
    *kind = SMPROV_DER_PKCS8;
    break;
  case SMPROV_PEM_ENCRYPTED_PKCS8: {
    unsigned char *plain = smprov_decrypt_pkcs8(prov, der, n, pw, &n);
    secmem_free(der);
    der = plain;
    *kind = SMPROV_DER_PKCS8;
    break;
  }
  case SMPROV_PEM_RSA:
  case SMPROV_PEM_EC:
    *kind = label == SMPROV_PEM_RSA ? SMPROV_DER_RSA : SMPROV_DER_EC;
    if (b->headers != NULL && find(b->headers, b->headers_len, "ENCRYPTED") != NULL) {
      enum smprov_type t;
      bool ok = decrypt_legacy(b, der, &n, pw);
      /* A wrong passphrase passes the padding check once in 256 tries: what
       * it gives is no key. */
      if (ok && !smprov_der_type(der, n, *kind, &t)) {
        SMPROV_ERR(SMPROV_R_BAD_PASSPHRASE, "%s: wrong passphrase or corrupt encrypted key",
                   pw->what);
        ok = false;
      }
      if (!ok) {
        secmem_free(der);
        der = NULL;
      }
    }
    break;
  default:
    secmem_free(der);
    SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, "%s: %s blocks are not private keys secmem reads",
               pw->what, b->label);
    return NULL;
  }
  *len = n;
  return der;
}
