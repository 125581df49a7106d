/*
 * test_provider_rest.c - the provider's "sealed at rest" proof, in process,
 * plus in-process TLS over memory BIOs. Each key (RSA-2048, P-256, P-384,
 * Ed25519, X25519, Ed448, X448) is generated in a child process and handed
 * over through a pipe into hidden memory, so this process never holds it
 * anywhere the scan reads. It is imported into secmem and used 200 times
 * (signatures, decryptions, derivations, TLS 1.3 handshakes for RSA and
 * P-256); then the process's memory is scanned for windows (start, middle,
 * end; big- and little-endian) of every private component: zero hits. The
 * same keys imported into the default provider and used the same way are
 * found (the control that proves the scan works).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "harness.h"

#define OPS 200
#define WINDOW 16

static OSSL_LIB_CTX *libctx;

/* A key's components as the child sent them: name, native-endian bytes for
 * BN params (big-endian for octet-string params), in hidden memory. */
struct comp {
  char name[32];
  bool bn;
  bool utf8;
  unsigned char *data;
  size_t len;
};

struct keyspec {
  const char *alg;  /* key type for fromdata */
  const char *what; /* label */
  struct comp comps[12];
  size_t ncomps;
  struct comp secrets[6]; /* the private ones, big-endian, for the needles */
  size_t nsecrets;
};

/* ---- the child that generates keys ------------------------------------------- */

static void put(int fd, const void *p, size_t n) {
  const unsigned char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w <= 0) {
      _exit(3);
    }
    c += w;
    n -= (size_t)w;
  }
}

static void send_comp(int fd, const char *name, bool bn, bool utf8, const unsigned char *data,
                      size_t len) {
  unsigned char hdr[34] = {0};
  snprintf((char *)hdr, 32, "%s", name);
  hdr[32] = bn;
  hdr[33] = utf8;
  put(fd, hdr, sizeof(hdr));
  uint32_t l = (uint32_t)len;
  put(fd, &l, sizeof(l));
  put(fd, data, len);
}

/* In the child: generate, write every parameter of the key pair. */
static void child_generate(int fd, const char *alg, const char *arg) {
  EVP_PKEY *pk = strcmp(alg, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                 : arg != NULL           ? EVP_PKEY_Q_keygen(NULL, NULL, alg, arg)
                                         : EVP_PKEY_Q_keygen(NULL, NULL, alg);
  OSSL_PARAM *params = NULL;
  if (pk == NULL || EVP_PKEY_todata(pk, EVP_PKEY_KEYPAIR, &params) != 1) {
    _exit(2);
  }
  for (OSSL_PARAM *p = params; p->key != NULL; p++) {
    if (p->data_type == OSSL_PARAM_UNSIGNED_INTEGER) {
      send_comp(fd, p->key, true, false, p->data, p->data_size);
    } else if (p->data_type == OSSL_PARAM_OCTET_STRING) {
      send_comp(fd, p->key, false, false, p->data, p->data_size);
    } else if (p->data_type == OSSL_PARAM_UTF8_STRING) {
      send_comp(fd, p->key, false, true, p->data, strlen(p->data) + 1);
    }
  }
  _exit(0);
}

static bool get(int fd, void *p, size_t n) {
  unsigned char *c = p;
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r <= 0) {
      return false;
    }
    c += r;
    n -= (size_t)r;
  }
  return true;
}

static bool is_private(const char *name) {
  static const char *const priv[] = {OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
                                     OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
                                     OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
                                     OSSL_PKEY_PARAM_PRIV_KEY};
  for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++) {
    if (strcmp(name, priv[i]) == 0) {
      return true;
    }
  }
  return false;
}

static bool receive_key(struct keyspec *ks, const char *alg, const char *arg) {
  int fds[2];
  if (pipe(fds) != 0) {
    return false;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    child_generate(fds[1], alg, arg);
  }
  close(fds[1]);
  ks->alg = alg;
  unsigned char hdr[34];
  uint32_t len;
  while (get(fds[0], hdr, sizeof(hdr)) && get(fds[0], &len, sizeof(len)) && ks->ncomps < 12) {
    struct comp *c = &ks->comps[ks->ncomps++];
    memcpy(c->name, hdr, 32);
    c->name[31] = '\0';
    c->bn = hdr[32] != 0;
    c->utf8 = hdr[33] != 0;
    c->len = len;
    c->data = harness_hidden_alloc(len + 1);
    if (!get(fds[0], c->data, len)) {
      break;
    }
    if (is_private(c->name) && ks->nsecrets < 6) {
      /* Big-endian copy for the needles. */
      struct comp *s = &ks->secrets[ks->nsecrets++];
      *s = *c;
      s->data = harness_hidden_alloc(len);
      for (size_t i = 0; i < len; i++) {
        s->data[i] = c->bn ? c->data[len - 1 - i] : c->data[i];
      }
    }
  }
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 && ks->ncomps > 0;
}

/* ---- using the keys ------------------------------------------------------------------ */

static EVP_PKEY *import(const struct keyspec *ks, const char *propq) {
  OSSL_PARAM params[13];
  for (size_t i = 0; i < ks->ncomps; i++) {
    const struct comp *c = &ks->comps[i];
    params[i] = c->bn     ? OSSL_PARAM_construct_BN(c->name, c->data, c->len)
                : c->utf8 ? OSSL_PARAM_construct_utf8_string(c->name, (char *)c->data, 0)
                          : OSSL_PARAM_construct_octet_string(c->name, c->data, c->len);
  }
  params[ks->ncomps] = OSSL_PARAM_construct_end();
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, ks->alg, propq);
  EVP_PKEY *pk = NULL;
  if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params) != 1) {
    pk = NULL;
  }
  EVP_PKEY_CTX_free(ctx);
  return pk;
}

/* OPS private operations of the key's kind; returns how many succeeded. */
static int use_key(EVP_PKEY *pk, const char *propq) {
  int done = 0;
  unsigned char out[1024];
  const unsigned char msg[32] = "a message that gets signed 200x";
  if (EVP_PKEY_is_a(pk, "X25519") || EVP_PKEY_is_a(pk, "X448")) {
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(libctx, "provider=default", EVP_PKEY_get0_type_name(pk));
    for (int i = 0; i < OPS; i++) {
      EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, pk, propq);
      size_t len = sizeof(out);
      done += c != NULL && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, peer) == 1 &&
              EVP_PKEY_derive(c, out, &len) == 1;
      EVP_PKEY_CTX_free(c);
    }
    EVP_PKEY_free(peer);
    return done;
  }
  bool eddsa = EVP_PKEY_is_a(pk, "ED25519") || EVP_PKEY_is_a(pk, "ED448");
  for (int i = 0; i < OPS; i++) {
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    size_t len = sizeof(out);
    done += m != NULL &&
            EVP_DigestSignInit_ex(m, NULL, eddsa ? NULL : "SHA256", libctx, propq, pk, NULL) == 1 &&
            EVP_DigestSign(m, out, &len, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(m);
  }
  if (EVP_PKEY_is_a(pk, "RSA")) {
    /* Decryptions too. */
    unsigned char ct[512];
    size_t ctlen = sizeof(ct);
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new_from_pkey(libctx, pk, "provider=default");
    if (e != NULL && EVP_PKEY_encrypt_init(e) == 1 && EVP_PKEY_encrypt(e, ct, &ctlen, msg, 16) == 1) {
      for (int i = 0; i < OPS / 4; i++) {
        EVP_PKEY_CTX *d = EVP_PKEY_CTX_new_from_pkey(libctx, pk, propq);
        size_t len = sizeof(out);
        done += d != NULL && EVP_PKEY_decrypt_init(d) == 1 &&
                EVP_PKEY_decrypt(d, out, &len, ct, ctlen) == 1 && len == 16;
        EVP_PKEY_CTX_free(d);
      }
    }
    EVP_PKEY_CTX_free(e);
  }
  return done;
}

/* ---- in-process TLS over memory BIOs ------------------------------------------------- */

static X509 *self_signed(EVP_PKEY *pk) {
  X509 *x = X509_new_ex(libctx, NULL);
  X509_NAME *n = X509_NAME_new();
  if (x == NULL || n == NULL) {
    return NULL;
  }
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_subject_name(x, n);
  X509_set_issuer_name(x, n);
  X509_NAME_free(n);
  if (X509_set_pubkey(x, pk) != 1 || X509_sign(x, pk, EVP_sha256()) <= 0) {
    X509_free(x);
    return NULL;
  }
  return x;
}

/* Pump two SSL objects over a BIO pair until both finish the handshake. */
static bool handshake(SSL_CTX *sctx, SSL_CTX *cctx, int version) {
  SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
  BIO *sb = NULL, *cb = NULL;
  bool ok = s != NULL && c != NULL && BIO_new_bio_pair(&sb, 0, &cb, 0) == 1;
  if (ok) {
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_min_proto_version(c, version);
    SSL_set_max_proto_version(c, version);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    int sdone = 0, cdone = 0;
    for (int i = 0; i < 100 && (sdone != 1 || cdone != 1); i++) {
      if (cdone != 1) {
        cdone = SSL_do_handshake(c);
      }
      if (sdone != 1) {
        sdone = SSL_do_handshake(s);
      }
    }
    ok = sdone == 1 && cdone == 1 && SSL_version(c) == version;
  }
  SSL_free(s);
  SSL_free(c);
  return ok;
}

static int tls_handshakes(EVP_PKEY *pk, int count, int version) {
  X509 *cert = self_signed(pk);
  SSL_CTX *sctx = SSL_CTX_new_ex(libctx, NULL, TLS_server_method());
  SSL_CTX *cctx = SSL_CTX_new_ex(libctx, NULL, TLS_client_method());
  int done = 0;
  if (cert != NULL && sctx != NULL && cctx != NULL && SSL_CTX_use_certificate(sctx, cert) == 1 &&
      SSL_CTX_use_PrivateKey(sctx, pk) == 1 && SSL_CTX_check_private_key(sctx) == 1) {
    SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(sctx, 0);
    for (int i = 0; i < count; i++) {
      done += handshake(sctx, cctx, version);
    }
  }
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  X509_free(cert);
  return done;
}

/* ---- the scan ---------------------------------------------------------------------- */

/* Hits of windows of every private component, both byte orders. */
static size_t hits(const struct keyspec *ks) {
  size_t total = 0;
  unsigned char *needle = harness_hidden_alloc(WINDOW);
  for (size_t i = 0; i < ks->nsecrets; i++) {
    const struct comp *s = &ks->secrets[i];
    size_t w = s->len < WINDOW ? s->len : WINDOW;
    size_t offs[3] = {0, (s->len - w) / 2, s->len - w};
    for (int order = 0; order < 2; order++) {
      for (int o = 0; o < 3; o++) {
        for (size_t j = 0; j < w; j++) {
          needle[j] = order == 0 ? s->data[offs[o] + j] : s->data[s->len - 1 - offs[o] - j];
        }
        total += scan_self_for_bytes(needle, w);
      }
    }
  }
  return total;
}

static struct keyspec keys[7];
static const char *const algs[7][2] = {{"RSA", NULL},  {"EC", "P-256"}, {"EC", "P-384"},
                                       {"ED25519", NULL}, {"X25519", NULL}, {"ED448", NULL},
                                       {"X448", NULL}};

static void test_tls_in_process(void) {
  EVP_PKEY *rsa = import(&keys[0], "provider=secmem");
  EVP_PKEY *ec = import(&keys[1], "provider=secmem");
  CU_ASSERT_PTR_NOT_NULL_FATAL(rsa);
  CU_ASSERT_PTR_NOT_NULL_FATAL(ec);
  CU_ASSERT_EQUAL(tls_handshakes(rsa, 5, TLS1_3_VERSION), 5);
  CU_ASSERT_EQUAL(tls_handshakes(rsa, 5, TLS1_2_VERSION), 5);
  CU_ASSERT_EQUAL(tls_handshakes(ec, 5, TLS1_3_VERSION), 5);
  CU_ASSERT_EQUAL(tls_handshakes(ec, 5, TLS1_2_VERSION), 5);
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
}

static void test_sealed_at_rest(void) {
  EVP_PKEY *held[7];
  for (int i = 0; i < 7; i++) {
    held[i] = import(&keys[i], "provider=secmem");
    CU_ASSERT_PTR_NOT_NULL_FATAL(held[i]);
    CU_ASSERT_STRING_EQUAL(OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(held[i])), "secmem");
    int ops = use_key(held[i], "provider=secmem");
    CU_ASSERT_TRUE(ops >= OPS);
  }
  CU_ASSERT_EQUAL(tls_handshakes(held[0], OPS / 4, TLS1_3_VERSION), OPS / 4);
  CU_ASSERT_EQUAL(tls_handshakes(held[1], OPS / 4, TLS1_3_VERSION), OPS / 4);
  /* The keys are alive and have just been used 200 times: not one window of
   * any private component is anywhere in this process's memory. */
  for (int i = 0; i < 7; i++) {
    size_t h = hits(&keys[i]);
    if (h != 0) {
      fprintf(stderr, "\n  %s %s: %zu hits\n", algs[i][0], algs[i][1] != NULL ? algs[i][1] : "", h);
    }
    CU_ASSERT_EQUAL(h, 0);
  }
  for (int i = 0; i < 7; i++) {
    EVP_PKEY_free(held[i]);
  }
}

static void test_control_default_provider(void) {
  /* The same scan, the same program, the default provider: found. */
  for (int i = 0; i < 7; i++) {
    EVP_PKEY *pk = import(&keys[i], "provider=default");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pk);
    CU_ASSERT_TRUE(use_key(pk, "provider=default") >= OPS);
    size_t h = hits(&keys[i]);
    if (h == 0) {
      fprintf(stderr, "\n  control %s: no hits\n", algs[i][0]);
    }
    CU_ASSERT_TRUE(h > 0);
    EVP_PKEY_free(pk);
  }
}

/* --anon: configure the provider with memfd_secret = off, so the scan can
 * read its guarded memory too (scratch, heap, key halves), not only the
 * rest of the process. */
static int load_providers(bool anon) {
  libctx = OSSL_LIB_CTX_new();
  if (libctx == NULL) {
    return 0;
  }
  if (!anon) {
    return OSSL_PROVIDER_set_default_search_path(libctx, SECMEM_PROVIDER_DIR) == 1 &&
           OSSL_PROVIDER_load(libctx, "default") != NULL &&
           OSSL_PROVIDER_load(libctx, "secmem") != NULL;
  }
  char path[] = "/tmp/secmem-rest-XXXXXX";
  int fd = mkstemp(path);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (f == NULL) {
    return 0;
  }
  fprintf(f,
          "openssl_conf = conf\n[conf]\nproviders = provs\n[provs]\ndefault = dflt\n"
          "secmem = sm\n[dflt]\nactivate = 1\n[sm]\nmodule = %s/secmem.so\n"
          "memfd_secret = off\nactivate = 1\n",
          SECMEM_PROVIDER_DIR);
  fclose(f);
  int ok = OSSL_LIB_CTX_load_config(libctx, path) == 1 &&
           OSSL_PROVIDER_available(libctx, "secmem") == 1;
  unlink(path);
  return ok;
}

int main(int argc, char **argv) {
  bool anon = argc > 1 && strcmp(argv[1], "--anon") == 0;
  if (!load_providers(anon)) {
    ERR_print_errors_fp(stderr);
    return 2;
  }
  printf("secmem provider backing: %s\n", anon ? "anonymous pages (memfd_secret = off)"
                                                 : "default (memfd_secret where offered)");
  for (int i = 0; i < 7; i++) {
    if (!receive_key(&keys[i], algs[i][0], algs[i][1])) {
      fprintf(stderr, "cannot generate a %s key in a child\n", algs[i][0]);
      return 2;
    }
  }
  static const struct harness_test tests[] = {
      {"TLS 1.3 and 1.2 over memory BIOs with secmem keys", test_tls_in_process},
      {"sealed at rest after 200 operations per key", test_sealed_at_rest},
      {"control: the default provider's keys are found", test_control_default_provider},
  };
  return harness_main("provider_rest", tests, sizeof(tests) / sizeof(tests[0]));
}
