/*
 * store.c - owns the secmem: store loader. "secmem:/path/key.pem" (or a
 * relative path) reads a private key file -- PEM or DER; PKCS#8, encrypted
 * PKCS#8, traditional RSA/EC (also with legacy PEM encryption) -- and hands
 * OpenSSL a sealed key by reference, plus any certificates in the file.
 *
 * The file is read with read(2) straight into a locked buffer (no stdio
 * buffers), base64 is decoded with libsodium's constant-time decoder into
 * locked memory, encrypted keys are decrypted there, and der.c turns the
 * private-key DER into a sealed key; every plaintext byte is wiped before
 * load returns. Certificates are public and take the ordinary path.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "smprov.h"

#define MAX_FILE (1024 * 1024) /* key files (with their chains) are far smaller */
#define MAX_PASS 1024

struct loader {
  struct smprov_ctx *prov;
  char path[4096];
  int expect;       /* 0 for anything, else an OSSL_STORE_INFO_* type */
  secmem_buf *file; /* the whole file, locked */
  size_t pos;       /* where the next PEM block is looked for */
  bool pem;
  bool eof;
  unsigned delivered;
};

static OSSL_FUNC_store_open_fn store_open;
static OSSL_FUNC_store_settable_ctx_params_fn store_settable_ctx_params;
static OSSL_FUNC_store_set_ctx_params_fn store_set_ctx_params;
static OSSL_FUNC_store_load_fn store_load;
static OSSL_FUNC_store_eof_fn store_eof;
static OSSL_FUNC_store_close_fn store_close;
static OSSL_FUNC_store_export_object_fn store_export_object;

/* ---- opening: the file into locked memory -------------------------------------- */

static int read_file(struct loader *l) {
  int fd = open(l->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "cannot open key file %s: %s", l->path, strerror(errno));
    return 0;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s is not a regular file", l->path);
    close(fd);
    return 0;
  }
  if (st.st_size == 0) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s is empty", l->path);
    close(fd);
    return 0;
  }
  if (st.st_size > MAX_FILE) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s is %lld bytes; secmem reads key files of at most %d",
               l->path, (long long)st.st_size, MAX_FILE);
    close(fd);
    return 0;
  }
  l->file = secmem_buf_new((size_t)st.st_size);
  if (l->file == NULL) {
    SMPROV_ERR_SECMEM("memory for the key file");
    close(fd);
    return 0;
  }
  unsigned char *d = secmem_buf_data(l->file);
  size_t want = (size_t)st.st_size, got = 0;
  while (got < want) {
    ssize_t n = read(fd, d + got, want - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      SMPROV_ERR(SMPROV_R_KEY_FILE, "cannot read key file %s: %s", l->path,
                 n < 0 ? strerror(errno) : "it shrank while being read");
      close(fd);
      return 0;
    }
    got += (size_t)n;
  }
  close(fd);
  size_t i = 0;
  while (i < want && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) {
    i++;
  }
  l->pem = want - i >= 11 && memcmp(d + i, "-----BEGIN ", 11) == 0;
  return 1;
}

static void *store_open(void *provctx, const char *uri) {
  const char *path = uri;
  if (strncmp(path, "secmem:", 7) == 0) {
    path += 7;
  }
  if (strncmp(path, "//", 2) == 0) {
    path += 2; /* secmem:///abs/path: an empty authority */
    if (path[0] != '/') {
      SMPROV_ERR(SMPROV_R_KEY_FILE, "%s: only local files can be loaded (secmem:/path)", uri);
      return NULL;
    }
  }
  if (path[0] == '\0' || strlen(path) >= sizeof(((struct loader *)0)->path)) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "%s names no key file", uri);
    return NULL;
  }
  struct loader *l = calloc(1, sizeof(*l));
  if (l == NULL) {
    return NULL;
  }
  l->prov = provctx;
  memcpy(l->path, path, strlen(path) + 1);
  if (!read_file(l)) {
    store_close(l);
    return NULL;
  }
  return l;
}

static const OSSL_PARAM *store_settable_ctx_params(void *provctx) {
  static const OSSL_PARAM settable[] = {OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
                                        OSSL_PARAM_END};
  (void)provctx;
  return settable;
}

static int store_set_ctx_params(void *vctx, const OSSL_PARAM params[]) {
  struct loader *l = vctx;
  const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
  return p == NULL || OSSL_PARAM_get_int(p, &l->expect);
}

/* ---- delivering objects ----------------------------------------------------------- */

static int deliver_key(struct loader *l, struct smprov_key *k, OSSL_CALLBACK *cb, void *cbarg) {
  struct smprov_key_reference ref;
  smprov_key_make_reference(k, &ref);
  int type = OSSL_OBJECT_PKEY;
  const char *name = smprov_type_name(k->type);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
                         OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, (char *)name, 0),
                         OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref)),
                         OSSL_PARAM_construct_end()};
  int ok = cb(params, cbarg); /* the core takes its own reference in load() */
  smprov_key_free(k);
  l->delivered++;
  return ok;
}

static int deliver_cert(struct loader *l, const unsigned char *der, size_t len, OSSL_CALLBACK *cb,
                        void *cbarg) {
  int type = OSSL_OBJECT_CERT;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
                         OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, (void *)der, len),
                         OSSL_PARAM_construct_end()};
  l->delivered++;
  return cb(params, cbarg);
}

/* Ask the caller for the passphrase, into locked memory. */
static char *get_pass(struct loader *l, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                      size_t *len) {
  char *pass = secmem_malloc(MAX_PASS);
  if (pass == NULL) {
    SMPROV_ERR_SECMEM("memory for a passphrase");
    return NULL;
  }
  OSSL_PARAM info[] = {OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, l->path, 0),
                       OSSL_PARAM_construct_end()};
  if (pw_cb == NULL || !pw_cb(pass, MAX_PASS - 1, len, info, pw_cbarg)) {
    secmem_free(pass);
    SMPROV_ERR(SMPROV_R_BAD_PASSPHRASE, "key file %s is encrypted and no passphrase was given",
               l->path);
    return NULL;
  }
  return pass;
}

/* EncryptedPrivateKeyInfo (ciphertext at der) to PrivateKeyInfo DER in
 * locked memory: *out (secmem_malloc'd), or NULL with an error. */
static unsigned char *decrypt_pkcs8(struct loader *l, const unsigned char *der, size_t len,
                                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                                    size_t *out_len) {
  const unsigned char *r = der;
  X509_SIG *sig = d2i_X509_SIG(NULL, &r, (long)len);
  if (sig == NULL) {
    SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s: corrupt encrypted private key", l->path);
    return NULL;
  }
  size_t plen = 0;
  char *pass = get_pass(l, pw_cb, pw_cbarg, &plen);
  PKCS8_PRIV_KEY_INFO *p8 =
      pass != NULL ? PKCS8_decrypt_ex(sig, pass, (int)plen, l->prov->priv, NULL) : NULL;
  secmem_free(pass);
  X509_SIG_free(sig);
  if (p8 == NULL) {
    if (pass != NULL) {
      ERR_clear_error();
      SMPROV_ERR(SMPROV_R_BAD_PASSPHRASE, "key file %s: wrong passphrase or corrupt encrypted key",
                 l->path);
    }
    return NULL;
  }
  int n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
  unsigned char *out = n > 0 ? secmem_malloc((size_t)n) : NULL;
  unsigned char *w = out;
  if (out == NULL || i2d_PKCS8_PRIV_KEY_INFO(p8, &w) != n) {
    secmem_free(out);
    out = NULL;
  }
  PKCS8_PRIV_KEY_INFO_free(p8); /* cleanses the key it held */
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

/* ---- PEM ---------------------------------------------------------------------------- */

static const unsigned char *find(const unsigned char *hay, size_t hay_len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= hay_len && i <= hay_len - n; i++) {
    if (memcmp(hay + i, needle, n) == 0) {
      return hay + i;
    }
  }
  return NULL;
}

struct pem_block {
  char label[64];
  const unsigned char *headers; /* "Proc-Type: ..." lines, or NULL */
  size_t headers_len;
  const unsigned char *body; /* base64 */
  size_t body_len;
};

/* Find the next block from l->pos. 1 found, 0 none left, -1 corrupt. */
static int next_block(struct loader *l, struct pem_block *b) {
  const unsigned char *d = secmem_buf_data(l->file);
  size_t len = secmem_buf_len(l->file);
  const unsigned char *begin = find(d + l->pos, len - l->pos, "-----BEGIN ");
  if (begin == NULL) {
    return 0;
  }
  const unsigned char *lab = begin + 11, *end = d + len;
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
  l->pos = (size_t)(stop - d) + strlen(end_marker);
  return 1;
}

/* Decode a block's base64 into locked memory (secmem_malloc'd). */
static unsigned char *decode_body(struct loader *l, const struct pem_block *b, size_t *out_len) {
  size_t cap = b->body_len / 4 * 3 + 3;
  unsigned char *out = secmem_malloc(cap);
  if (out == NULL) {
    SMPROV_ERR_SECMEM("memory for a decoded key");
    return NULL;
  }
  const char *endp = NULL;
  if (sodium_base642bin(out, cap, (const char *)b->body, b->body_len, " \t\r\n", out_len, &endp,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      endp != (const char *)b->body + b->body_len) {
    secmem_free(out);
    SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s: the %s block is not valid base64", l->path,
               b->label);
    return NULL;
  }
  return out;
}

static bool wants(const struct loader *l, int type) { return l->expect == 0 || l->expect == type; }

/* A traditional ("RSA PRIVATE KEY", "EC PRIVATE KEY") block, maybe with
 * legacy PEM encryption, to a key. */
static struct smprov_key *traditional_key(struct loader *l, const struct pem_block *b,
                                          unsigned char *der, size_t len,
                                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  enum smprov_der_kind kind = strcmp(b->label, "RSA PRIVATE KEY") == 0 ? SMPROV_DER_RSA
                                                                        : SMPROV_DER_EC;
  if (b->headers != NULL && find(b->headers, b->headers_len, "ENCRYPTED") != NULL) {
    char headers[512];
    if (b->headers_len >= sizeof(headers)) {
      SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s: PEM headers too long", l->path);
      return NULL;
    }
    memcpy(headers, b->headers, b->headers_len);
    headers[b->headers_len] = '\0';
    EVP_CIPHER_INFO cipher;
    size_t plen = 0;
    if (PEM_get_EVP_CIPHER_INFO(headers, &cipher) != 1) {
      SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s: unknown PEM encryption", l->path);
      return NULL;
    }
    char *pass = get_pass(l, pw_cb, pw_cbarg, &plen);
    if (pass == NULL) {
      return NULL;
    }
    struct pem_pass pp = {pass, plen};
    long dlen = (long)len;
    int ok = PEM_do_header(&cipher, der, &dlen, pem_pass_cb, &pp); /* in place, locked */
    secmem_free(pass);
    if (ok != 1) {
      ERR_clear_error();
      SMPROV_ERR(SMPROV_R_BAD_PASSPHRASE, "key file %s: wrong passphrase or corrupt encrypted key",
                 l->path);
      return NULL;
    }
    len = (size_t)dlen;
  }
  return smprov_der_to_key(l->prov, der, len, kind);
}

static int load_pem(struct loader *l, OSSL_CALLBACK *cb, void *cbarg,
                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  for (;;) {
    struct pem_block b;
    int found = next_block(l, &b);
    if (found < 0) {
      SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s: truncated or corrupt PEM", l->path);
      return 0;
    }
    if (found == 0) {
      l->eof = true;
      if (l->delivered == 0) {
        SMPROV_ERR(SMPROV_R_KEY_FILE, "key file %s holds no private key or certificate", l->path);
        return 0;
      }
      return 1;
    }
    bool is_key = strcmp(b.label, "PRIVATE KEY") == 0 || strcmp(b.label, "RSA PRIVATE KEY") == 0 ||
                  strcmp(b.label, "EC PRIVATE KEY") == 0 ||
                  strcmp(b.label, "ENCRYPTED PRIVATE KEY") == 0;
    bool is_cert = strcmp(b.label, "CERTIFICATE") == 0 || strcmp(b.label, "TRUSTED CERTIFICATE") == 0;
    if ((is_key && !wants(l, OSSL_STORE_INFO_PKEY)) || (is_cert && !wants(l, OSSL_STORE_INFO_CERT))) {
      continue;
    }
    if (!is_key && !is_cert) {
      if (strstr(b.label, "PRIVATE KEY") != NULL) {
        SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, "key file %s: %s keys are not supported", l->path,
                   b.label);
        return 0;
      }
      continue; /* parameters, public keys, CRLs: not ours to load */
    }
    size_t len = 0;
    unsigned char *der = decode_body(l, &b, &len);
    if (der == NULL) {
      return 0;
    }
    if (is_cert) {
      int ok = deliver_cert(l, der, len, cb, cbarg);
      secmem_free(der);
      return ok;
    }
    struct smprov_key *k = NULL;
    if (strcmp(b.label, "PRIVATE KEY") == 0) {
      k = smprov_der_to_key(l->prov, der, len, SMPROV_DER_PKCS8);
    } else if (strcmp(b.label, "ENCRYPTED PRIVATE KEY") == 0) {
      size_t plen = 0;
      unsigned char *plain = decrypt_pkcs8(l, der, len, pw_cb, pw_cbarg, &plen);
      if (plain != NULL) {
        k = smprov_der_to_key(l->prov, plain, plen, SMPROV_DER_PKCS8);
        secmem_free(plain);
      }
    } else {
      k = traditional_key(l, &b, der, len, pw_cb, pw_cbarg);
    }
    secmem_free(der); /* wiped */
    if (k == NULL) {
      return 0;
    }
    return deliver_key(l, k, cb, cbarg);
  }
}

/* A DER file: a private key (PKCS#8 or traditional), an encrypted PKCS#8,
 * or a certificate. */
static int load_der(struct loader *l, OSSL_CALLBACK *cb, void *cbarg,
                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  const unsigned char *d = secmem_buf_data(l->file);
  size_t len = secmem_buf_len(l->file);
  l->eof = true;
  if (wants(l, OSSL_STORE_INFO_CERT)) {
    const unsigned char *r = d;
    X509 *x = d2i_X509(NULL, &r, (long)len);
    if (x != NULL) {
      X509_free(x);
      return deliver_cert(l, d, len, cb, cbarg);
    }
    ERR_clear_error();
  }
  if (!wants(l, OSSL_STORE_INFO_PKEY)) {
    return 1;
  }
  const unsigned char *r = d;
  X509_SIG *sig = d2i_X509_SIG(NULL, &r, (long)len);
  struct smprov_key *k;
  if (sig != NULL && r == d + len) {
    X509_SIG_free(sig);
    size_t plen = 0;
    unsigned char *plain = decrypt_pkcs8(l, d, len, pw_cb, pw_cbarg, &plen);
    if (plain == NULL) {
      return 0;
    }
    k = smprov_der_to_key(l->prov, plain, plen, SMPROV_DER_PKCS8);
    secmem_free(plain);
  } else {
    X509_SIG_free(sig);
    ERR_clear_error();
    k = smprov_der_to_key(l->prov, d, len, SMPROV_DER_ANY);
  }
  return k != NULL && deliver_key(l, k, cb, cbarg);
}

static int store_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  struct loader *l = vctx;
  if (l->eof) {
    return 0;
  }
  int ok = l->pem ? load_pem(l, object_cb, object_cbarg, pw_cb, pw_cbarg)
                  : load_der(l, object_cb, object_cbarg, pw_cb, pw_cbarg);
  if (!ok) {
    l->eof = true; /* an error ends the listing */
  }
  return ok;
}

static int store_eof(void *vctx) {
  struct loader *l = vctx;
  return l->eof;
}

static int store_close(void *vctx) {
  struct loader *l = vctx;
  if (l != NULL) {
    secmem_buf_destroy(l->file); /* wipes the file's bytes */
    free(l);
  }
  return 1;
}

/* Another provider's key management asks for the object (store_result.c
 * tries that before our own): the public part, never the private one
 * unless export_private allows it. */
static int store_export_object(void *vctx, const void *reference, size_t reference_sz,
                               OSSL_CALLBACK *export_cb, void *export_cbarg) {
  (void)vctx;
  struct smprov_key *k = smprov_key_from_reference(reference, reference_sz);
  if (k == NULL) {
    return 0;
  }
  int ok = smprov_km_export(k, OSSL_KEYMGMT_SELECT_ALL, export_cb, export_cbarg);
  smprov_key_free(k);
  return ok;
}

const OSSL_DISPATCH smprov_store[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))store_settable_ctx_params},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_ctx_params},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close},
    {OSSL_FUNC_STORE_EXPORT_OBJECT, (void (*)(void))store_export_object},
    {0, NULL}};
