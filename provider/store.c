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
#include <openssl/store.h>
#include <openssl/x509.h>

#include "smprov.h"

#define MAX_FILE (1024 * 1024) /* key files (with their chains) are far smaller */

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
  k->from_file = true;
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

static bool wants(const struct loader *l, int type) { return l->expect == 0 || l->expect == type; }

/* What the messages call the file, and where its passphrase comes from. */
static struct smprov_pass pass_for(const struct loader *l, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                                   void *pw_cbarg, char *what, size_t what_len) {
  snprintf(what, what_len, "key file %s", l->path);
  return (struct smprov_pass){pw_cb, pw_cbarg, what};
}

static int load_pem(struct loader *l, OSSL_CALLBACK *cb, void *cbarg,
                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg) {
  char what[4200];
  struct smprov_pass pw = pass_for(l, pw_cb, pw_cbarg, what, sizeof(what));
  for (;;) {
    struct smprov_pem_block b;
    int found = smprov_pem_next(secmem_buf_data(l->file), secmem_buf_len(l->file), &l->pos, &b);
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
    enum smprov_pem_label label = smprov_pem_label(b.label);
    bool is_cert = label == SMPROV_PEM_CERT;
    bool is_key = label == SMPROV_PEM_PKCS8 || label == SMPROV_PEM_ENCRYPTED_PKCS8 ||
                  label == SMPROV_PEM_RSA || label == SMPROV_PEM_EC;
    if (label == SMPROV_PEM_OTHER_PRIVATE) {
      SMPROV_ERR(SMPROV_R_UNSUPPORTED_KEY, "key file %s: %s keys are not supported", l->path,
                 b.label);
      return 0;
    }
    if (!(is_key && wants(l, OSSL_STORE_INFO_PKEY)) && !(is_cert && wants(l, OSSL_STORE_INFO_CERT))) {
      continue; /* parameters, public keys, CRLs, or not what was asked for */
    }
    if (is_cert) {
      size_t len = 0;
      unsigned char *der = smprov_pem_body(&b, what, &len);
      if (der == NULL) {
        return 0;
      }
      int ok = deliver_cert(l, der, len, cb, cbarg);
      secmem_free(der);
      return ok;
    }
    size_t len = 0;
    enum smprov_der_kind kind;
    unsigned char *der = smprov_pem_private_der(l->prov, &b, &pw, &kind, &len);
    if (der == NULL) {
      return 0;
    }
    struct smprov_key *k = smprov_der_to_key(l->prov, der, len, kind);
    secmem_free(der); /* wiped */
    return k != NULL && deliver_key(l, k, cb, cbarg);
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
    char what[4200];
    struct smprov_pass pw = pass_for(l, pw_cb, pw_cbarg, what, sizeof(what));
    size_t plen = 0;
    unsigned char *plain = smprov_decrypt_pkcs8(l->prov, d, len, &pw, &plen);
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

const OSSL_DISPATCH smprov_store[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))store_settable_ctx_params},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_ctx_params},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close},
    {OSSL_FUNC_STORE_EXPORT_OBJECT, (void (*)(void))smprov_km_export_reference},
    {0, NULL}};
