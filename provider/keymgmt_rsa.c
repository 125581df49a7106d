/*
 * keymgmt_rsa.c - owns key management for RSA and RSA-PSS keys (two-prime,
 * with CRT parameters). RSA-PSS keys carry their restrictions (digest,
 * MGF1 digest, minimum salt length) in their public part and sign with the
 * RSA signature.
 */
#include <openssl/core_dispatch.h>

#include "keymgmt_family.h"

SMPROV_KEYMGMT_TYPE(rsa, SMPROV_RSA)
SMPROV_KEYMGMT_TYPE(rsa_pss, SMPROV_RSA_PSS)

static OSSL_FUNC_keymgmt_query_operation_name_fn rsa_query_operation_name;

static const char *rsa_query_operation_name(int operation_id) {
  (void)operation_id;
  return "RSA";
}

const OSSL_DISPATCH smprov_keymgmt_rsa[] = {SMPROV_KEYMGMT_ENTRIES(rsa), {0, NULL}};

const OSSL_DISPATCH smprov_keymgmt_rsa_pss[] = {
    SMPROV_KEYMGMT_ENTRIES(rsa_pss),
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))rsa_query_operation_name},
    {0, NULL}};
