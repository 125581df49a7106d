/*
 * test_provider_refs.c - unit suite for the provider's key registry and the
 * references it hands through OpenSSL: a reference is honoured only when it
 * has the right size and magic and names a live key with the right serial;
 * anything foreign, forged or stale is refused without being dereferenced.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "smprov.h"

static struct smprov_ctx prov; /* the registry needs no live provider */

static void test_live_reference(void) {
  struct smprov_key *k = smprov_key_new(&prov, SMPROV_EC);
  CU_ASSERT_PTR_NOT_NULL_FATAL(k);
  struct smprov_key_reference ref;
  smprov_key_make_reference(k, &ref);
  CU_ASSERT_EQUAL(ref.magic, SMPROV_REF_MAGIC);
  struct smprov_key *got = smprov_key_from_reference(&ref, sizeof(ref));
  CU_ASSERT_PTR_EQUAL(got, k);
  CU_ASSERT_EQUAL(atomic_load(&k->refs), 2); /* a counted reference */
  CU_ASSERT_TRUE(smprov_key_is_live(k));
  smprov_key_free(got);
  smprov_key_free(k);
}

static void test_forged_and_foreign(void) {
  struct smprov_key *k = smprov_key_new(&prov, SMPROV_RSA);
  CU_ASSERT_PTR_NOT_NULL_FATAL(k);
  struct smprov_key_reference ref, bad;
  smprov_key_make_reference(k, &ref);
  bad = ref;
  bad.magic ^= 1;
  CU_ASSERT_PTR_NULL(smprov_key_from_reference(&bad, sizeof(bad)));
  bad = ref;
  bad.serial += 1;
  CU_ASSERT_PTR_NULL(smprov_key_from_reference(&bad, sizeof(bad)));
  CU_ASSERT_PTR_NULL(smprov_key_from_reference(&ref, sizeof(ref) - 1)); /* another size */
  CU_ASSERT_PTR_NULL(smprov_key_from_reference(&ref, sizeof(void *)));
  CU_ASSERT_PTR_NULL(smprov_key_from_reference(NULL, sizeof(ref)));
  /* A pointer that is not a key of ours, with a valid-looking envelope: the
   * registry refuses it before anything reads through it. */
  bad = ref;
  bad.key = (struct smprov_key *)(uintptr_t)0x10; /* would fault if touched */
  CU_ASSERT_PTR_NULL(smprov_key_from_reference(&bad, sizeof(bad)));
  CU_ASSERT_FALSE(smprov_key_is_live((void *)0x10));
  CU_ASSERT_EQUAL(atomic_load(&k->refs), 1); /* nothing was taken */
  smprov_key_free(k);
}

static void test_stale_reference(void) {
  struct smprov_key *k = smprov_key_new(&prov, SMPROV_ED25519);
  CU_ASSERT_PTR_NOT_NULL_FATAL(k);
  struct smprov_key_reference ref;
  smprov_key_make_reference(k, &ref);
  smprov_key_free(k);
  CU_ASSERT_PTR_NULL(smprov_key_from_reference(&ref, sizeof(ref)));
  /* Even when the same address is handed to a new key, the old reference's
   * serial no longer matches. */
  struct smprov_key *again = NULL;
  for (int i = 0; i < 64 && again != ref.key; i++) {
    struct smprov_key *n = smprov_key_new(&prov, SMPROV_ED25519);
    if (n == ref.key) {
      again = n;
    } else {
      smprov_key_free(n);
    }
  }
  if (again != NULL) {
    CU_ASSERT_PTR_NULL(smprov_key_from_reference(&ref, sizeof(ref)));
    smprov_key_free(again);
  }
}

static void test_type_names(void) {
  CU_ASSERT_STRING_EQUAL(smprov_type_name(SMPROV_RSA), "RSA");
  CU_ASSERT_STRING_EQUAL(smprov_type_name(SMPROV_RSA_PSS), "RSA-PSS");
  CU_ASSERT_STRING_EQUAL(smprov_type_name(SMPROV_EC), "EC");
  CU_ASSERT_STRING_EQUAL(smprov_type_name(SMPROV_X448), "X448");
}

int main(void) {
  static const struct harness_test tests[] = {
      {"a live reference gives a counted key", test_live_reference},
      {"forged, resized and foreign references are refused", test_forged_and_foreign},
      {"stale references are refused, even at a reused address", test_stale_reference},
      {"type names", test_type_names},
  };
  return harness_main("provider_refs", tests, sizeof(tests) / sizeof(tests[0]));
}
