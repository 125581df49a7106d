/*
 * secmem-scan.c - owns the memory scan that checks a running process for
 * a private key: `secmem-scan [--pass P] [--window N] [--windows] PID KEYFILE...`.
 *
 * For each key file it takes every private component (RSA d, p, q, dp, dq,
 * qinv; the EC scalar; the Ed25519/X25519/Ed448/X448 private bytes) and
 * the base64 lines of the key's PEM, and counts, in the readable memory of
 * PID (/proc/PID/maps + /proc/PID/mem), windows of N bytes (default 16) of
 * each component at its start, middle and end, in big- and little-endian
 * order, and each PEM line. One line per component (with --windows, one
 * per window) and the total; exit status 0 when
 * nothing was found, 1 when something was, 2 on error. It runs as a user
 * allowed to ptrace PID (root, or the same user with ptrace allowed).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define MAX_NEEDLES 512
#define MAX_COMPONENTS 64

/* A component: one private number of one key file, or its PEM lines. */
struct component {
  char file[16];
  char name[16];
  size_t hits;
};

struct needle {
  char label[48];
  unsigned char bytes[128];
  size_t len;
  size_t hits;
  size_t component;
};

static struct component components[MAX_COMPONENTS];
static size_t ncomponents;
static struct needle needles[MAX_NEEDLES];
static size_t nneedles;
static size_t window = 16;

static size_t new_component(const char *file, const char *name) {
  if (ncomponents == MAX_COMPONENTS) {
    return MAX_COMPONENTS - 1;
  }
  struct component *c = &components[ncomponents];
  snprintf(c->file, sizeof(c->file), "%.15s", file);
  snprintf(c->name, sizeof(c->name), "%s", name);
  return ncomponents++;
}

static void add_needle(size_t component, const char *label, const unsigned char *b, size_t len) {
  if (nneedles == MAX_NEEDLES || len < 8 || len > sizeof(needles[0].bytes)) {
    return;
  }
  struct needle *n = &needles[nneedles++];
  snprintf(n->label, sizeof(n->label), "%s", label);
  memcpy(n->bytes, b, len);
  n->len = len;
  n->component = component;
}

/* Windows of a component at its start, middle and end, both byte orders. */
static void add_component(const char *file, const char *name, const unsigned char *be, size_t len) {
  unsigned char *le = malloc(len);
  if (le == NULL) {
    return;
  }
  for (size_t i = 0; i < len; i++) {
    le[i] = be[len - 1 - i];
  }
  size_t w = len < window ? len : window;
  size_t offs[3] = {0, (len - w) / 2, len - w};
  size_t c = new_component(file, name);
  for (int order = 0; order < 2; order++) {
    for (int o = 0; o < 3; o++) {
      if (o > 0 && offs[o] == offs[o - 1]) {
        continue;
      }
      char label[48];
      snprintf(label, sizeof(label), "%.12s %s %s@%zu", file, name, order == 0 ? "be" : "le", offs[o]);
      add_needle(c, label, (order == 0 ? be : le) + offs[o], w);
    }
  }
  OPENSSL_cleanse(le, len);
  free(le);
}

static void add_bn(const char *file, EVP_PKEY *pk, const char *param, const char *name) {
  BIGNUM *b = NULL;
  if (EVP_PKEY_get_bn_param(pk, param, &b) != 1) {
    return;
  }
  unsigned char buf[1024];
  int n = BN_bn2bin(b, buf);
  if (n > 0) {
    add_component(file, name, buf, (size_t)n);
  }
  BN_clear_free(b);
  OPENSSL_cleanse(buf, sizeof(buf));
}

static int pass_cb(char *buf, int size, int rwflag, void *u) {
  (void)rwflag;
  const char *p = u;
  if (p == NULL) {
    return -1;
  }
  int n = (int)strlen(p);
  if (n > size) {
    return -1;
  }
  memcpy(buf, p, (size_t)n);
  return n;
}

/* The PEM body lines of the private key block(s) of the file. */
static void add_pem_lines(const char *path, const char *short_name) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return;
  }
  char line[256];
  bool in_key = false;
  int k = 0;
  size_t c = new_component(short_name, "PEM lines");
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "-----BEGIN ", 11) == 0) {
      in_key = strstr(line, "PRIVATE KEY") != NULL;
      continue;
    }
    if (strncmp(line, "-----END ", 9) == 0) {
      in_key = false;
      continue;
    }
    size_t n = strcspn(line, "\r\n");
    if (in_key && n >= 32 && strchr(line, ':') == NULL) {
      char label[48];
      snprintf(label, sizeof(label), "%.12s pem line %d", short_name, ++k);
      add_needle(c, label, (unsigned char *)line, n);
    }
  }
  OPENSSL_cleanse(line, sizeof(line));
  fclose(f);
}

static int add_key_file(const char *path, const char *pass) {
  const char *slash = strrchr(path, '/');
  const char *short_name = slash != NULL ? slash + 1 : path;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "secmem-scan: %s: %s\n", path, strerror(errno));
    return -1;
  }
  EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, pass_cb, (void *)pass);
  if (pk == NULL) {
    rewind(f);
    pk = d2i_PKCS8PrivateKey_fp(f, NULL, pass_cb, (void *)pass); /* encrypted PKCS#8 DER */
  }
  if (pk == NULL) {
    rewind(f);
    pk = d2i_PrivateKey_fp(f, NULL);
  }
  fclose(f);
  if (pk == NULL) {
    fprintf(stderr, "secmem-scan: %s: not a private key this tool can read\n", path);
    return -1;
  }
  if (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS")) {
    add_bn(short_name, pk, OSSL_PKEY_PARAM_RSA_D, "d");
    add_bn(short_name, pk, OSSL_PKEY_PARAM_RSA_FACTOR1, "p");
    add_bn(short_name, pk, OSSL_PKEY_PARAM_RSA_FACTOR2, "q");
    add_bn(short_name, pk, OSSL_PKEY_PARAM_RSA_EXPONENT1, "dp");
    add_bn(short_name, pk, OSSL_PKEY_PARAM_RSA_EXPONENT2, "dq");
    add_bn(short_name, pk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, "qinv");
  } else if (EVP_PKEY_is_a(pk, "EC")) {
    add_bn(short_name, pk, OSSL_PKEY_PARAM_PRIV_KEY, "scalar");
  } else {
    unsigned char raw[64];
    size_t len = sizeof(raw);
    if (EVP_PKEY_get_raw_private_key(pk, raw, &len) == 1) {
      add_component(short_name, "private", raw, len);
    }
    OPENSSL_cleanse(raw, sizeof(raw));
  }
  EVP_PKEY_free(pk);
  add_pem_lines(path, short_name);
  return 0;
}

/*
 * One pass over memory for every needle at once: a table keyed by each
 * needle's first 8 bytes (needles are 8 bytes or longer), probed at every
 * offset, and a full comparison only on a match.
 */
#define TABLE_BITS 12
static int32_t table[1 << TABLE_BITS]; /* first needle of a bucket, -1 none */
static int32_t chain[MAX_NEEDLES];     /* next needle in the same bucket */

static uint64_t load8(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static size_t bucket(uint64_t v) { return (size_t)((v * 0x9e3779b97f4a7c15ull) >> (64 - TABLE_BITS)); }

static void build_table(void) {
  memset(table, 0xff, sizeof(table));
  for (size_t n = 0; n < nneedles; n++) {
    size_t b = bucket(load8(needles[n].bytes));
    chain[n] = table[b];
    table[b] = (int32_t)n;
  }
}

/* Count needles starting in buf[0..limit) (buf holds len bytes). */
static void search(const unsigned char *buf, size_t limit, size_t len) {
  for (size_t i = 0; i < limit && i + 8 <= len; i++) {
    uint64_t v = load8(buf + i);
    for (int32_t n = table[bucket(v)]; n >= 0; n = chain[n]) {
      struct needle *nd = &needles[n];
      if (i + nd->len <= len && load8(nd->bytes) == v && memcmp(buf + i, nd->bytes, nd->len) == 0) {
        nd->hits++;
      }
    }
  }
}

static int scan(int pid, size_t *bytes_read) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/maps", pid);
  FILE *maps = fopen(path, "r");
  snprintf(path, sizeof(path), "/proc/%d/mem", pid);
  int mem = open(path, O_RDONLY);
  if (maps == NULL || mem < 0) {
    fprintf(stderr, "secmem-scan: cannot read the memory of %d: %s\n", pid, strerror(errno));
    if (maps != NULL) {
      fclose(maps);
    }
    if (mem >= 0) {
      close(mem);
    }
    return -1;
  }
  build_table();
  const size_t chunk = 4 << 20, overlap = 128;
  unsigned char *buf = mmap(NULL, chunk + overlap, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char line[512];
  while (buf != MAP_FAILED && fgets(line, sizeof(line), maps) != NULL) {
    unsigned long lo, hi;
    char perms[5] = "";
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3 || strstr(line, "[vvar") != NULL ||
        strstr(line, "[vsyscall]") != NULL || hi - lo > (4ul << 30) ||
        (strncmp(perms, "---", 3) == 0 && hi - lo > (256ul << 20))) {
      continue;
    }
    for (unsigned long off = lo; off < hi; off += chunk) {
      size_t want = hi - off < chunk + overlap ? hi - off : chunk + overlap;
      ssize_t got = pread(mem, buf, want, (off_t)off);
      if (got <= 0) {
        continue; /* unreadable: secret memory, a guard page, gone */
      }
      size_t limit = (size_t)got > chunk ? chunk : (size_t)got;
      search(buf, limit, (size_t)got);
      *bytes_read += limit;
    }
  }
  if (buf != MAP_FAILED) {
    OPENSSL_cleanse(buf, chunk + overlap);
    munmap(buf, chunk + overlap);
  }
  fclose(maps);
  close(mem);
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: secmem-scan [--pass PASSPHRASE] [--window BYTES] [--windows] PID KEYFILE...\n");
}

int main(int argc, char **argv) {
  /* Never openssl.cnf: with the secmem provider configured there, the key
   * files would load sealed and their components could not be read. */
  OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
  const char *pass = NULL;
  bool detail = false;
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strcmp(argv[i], "--pass") == 0 && i + 1 < argc) {
      pass = argv[++i];
    } else if (strcmp(argv[i], "--windows") == 0) {
      detail = true;
    } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
      window = (size_t)atoi(argv[++i]);
      if (window < 8 || window > 64) {
        fprintf(stderr, "secmem-scan: --window takes 8 to 64 bytes\n");
        return 2;
      }
    } else {
      usage();
      return 2;
    }
  }
  if (argc - i < 2 || !isdigit((unsigned char)argv[i][0])) {
    usage();
    return 2;
  }
  int pid = atoi(argv[i++]);
  for (; i < argc; i++) {
    if (add_key_file(argv[i], pass) != 0) {
      return 2;
    }
  }
  size_t bytes = 0;
  if (scan(pid, &bytes) != 0) {
    return 2;
  }
  size_t total = 0;
  for (size_t n = 0; n < nneedles; n++) {
    if (detail) {
      printf("%-40s %zu\n", needles[n].label, needles[n].hits);
    }
    components[needles[n].component].hits += needles[n].hits;
    total += needles[n].hits;
  }
  printf("process %d: %zu MiB of readable memory, %zu windows of %zu key component(s)\n", pid,
         bytes >> 20, nneedles, ncomponents);
  for (size_t c = 0; c < ncomponents; c++) {
    printf("  %-16s %-10s %zu\n", components[c].file, components[c].name, components[c].hits);
  }
  printf("total hits in process %d: %zu\n", pid, total);
  OPENSSL_cleanse(needles, sizeof(needles));
  return total == 0 ? 0 : 1;
}
