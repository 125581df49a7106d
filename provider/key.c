/*
 * key.c - owns the sealed key object: creation, reference counting, the
 * registry of live keys, and the tamper-evident references handed through
 * OpenSSL. A reference is only ever dereferenced after the registry has
 * confirmed that it names a live key of ours.
 */
#include <stdlib.h>
#include <string.h>

#include "smprov.h"

/* The registry: every live key, with the serial its references carry. */
static pthread_mutex_t g_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  struct smprov_key *key;
  uint64_t serial;
} *g_reg;
static size_t g_reg_len, g_reg_cap;
static uint64_t g_next_serial = 1;

const char *smprov_type_name(enum smprov_type t) {
  switch (t) {
  case SMPROV_RSA:
    return "RSA";
  case SMPROV_RSA_PSS:
    return "RSA-PSS";
  case SMPROV_EC:
    return "EC";
  case SMPROV_ED25519:
    return "ED25519";
  case SMPROV_X25519:
    return "X25519";
  case SMPROV_ED448:
    return "ED448";
  case SMPROV_X448:
    return "X448";
  }
  return "?";
}

struct smprov_key *smprov_key_new(struct smprov_ctx *prov, enum smprov_type type) {
  struct smprov_key *k = calloc(1, sizeof(*k));
  if (k == NULL) {
    SMPROV_ERR(SMPROV_R_SECURE_MEMORY, "out of memory for a key");
    return NULL;
  }
  pthread_mutex_lock(&g_reg_lock);
  if (g_reg_len == g_reg_cap) {
    size_t cap = g_reg_cap != 0 ? 2 * g_reg_cap : 64;
    void *n = realloc(g_reg, cap * sizeof(*g_reg));
    if (n == NULL) {
      pthread_mutex_unlock(&g_reg_lock);
      free(k);
      SMPROV_ERR(SMPROV_R_SECURE_MEMORY, "out of memory for the key registry");
      return NULL;
    }
    g_reg = n;
    g_reg_cap = cap;
  }
  g_reg[g_reg_len].key = k;
  g_reg[g_reg_len].serial = g_next_serial++;
  g_reg_len++;
  pthread_mutex_unlock(&g_reg_lock);
  k->magic = SMPROV_KEY_MAGIC;
  atomic_store(&k->refs, 1);
  k->prov = prov;
  k->type = type;
  pthread_mutex_init(&k->pre_lock, NULL);
  atomic_fetch_add(&smprov_keys_held, 1);
  return k;
}

struct smprov_key *smprov_key_ref(struct smprov_key *k) {
  atomic_fetch_add(&k->refs, 1);
  return k;
}

void smprov_key_free(struct smprov_key *k) {
  if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1) {
    return;
  }
  pthread_mutex_lock(&g_reg_lock);
  for (size_t i = 0; i < g_reg_len; i++) {
    if (g_reg[i].key == k) {
      g_reg[i] = g_reg[--g_reg_len];
      break;
    }
  }
  pthread_mutex_unlock(&g_reg_lock);
  k->magic = 0;
  secmem_enclave_free(k->priv);
  EVP_PKEY_free(k->pub);
  smprov_precomp_free(k->pre);
  pthread_mutex_destroy(&k->pre_lock);
  free(k);
  atomic_fetch_sub(&smprov_keys_held, 1);
}

/* The serial of a live key, 0 if k is not one (registry lock held). */
static uint64_t live_serial(const void *k) {
  for (size_t i = 0; i < g_reg_len; i++) {
    if (g_reg[i].key == k) {
      return g_reg[i].serial;
    }
  }
  return 0;
}

bool smprov_key_is_live(const void *k) {
  pthread_mutex_lock(&g_reg_lock);
  bool live = live_serial(k) != 0;
  pthread_mutex_unlock(&g_reg_lock);
  return live;
}

void smprov_key_make_reference(struct smprov_key *k, struct smprov_key_reference *out) {
  pthread_mutex_lock(&g_reg_lock);
  out->magic = SMPROV_REF_MAGIC;
  out->serial = live_serial(k);
  out->key = k;
  pthread_mutex_unlock(&g_reg_lock);
}

struct smprov_key *smprov_key_from_reference(const void *ref, size_t ref_sz) {
  if (ref == NULL || ref_sz != sizeof(struct smprov_key_reference)) {
    SMPROV_ERR(SMPROV_R_BAD_REFERENCE, "key reference of %zu bytes is not one of ours", ref_sz);
    return NULL;
  }
  struct smprov_key_reference r;
  memcpy(&r, ref, sizeof(r));
  struct smprov_key *k = NULL;
  pthread_mutex_lock(&g_reg_lock);
  if (r.magic == SMPROV_REF_MAGIC && r.serial != 0 && live_serial(r.key) == r.serial) {
    k = smprov_key_ref(r.key); /* confirmed live: now it may be touched */
  }
  pthread_mutex_unlock(&g_reg_lock);
  if (k == NULL) {
    SMPROV_ERR(SMPROV_R_BAD_REFERENCE, "key reference is foreign or names a freed key");
  }
  return k;
}

void smprov_key_registry_free(void) {
  pthread_mutex_lock(&g_reg_lock);
  free(g_reg);
  g_reg = NULL;
  g_reg_len = g_reg_cap = 0;
  pthread_mutex_unlock(&g_reg_lock);
}
