/*
 * keymgmt_ec.c - owns key management for EC keys on the prime curves
 * (P-256, P-384, P-521 for TLS; any named curve the default provider has).
 * EC keys serve two operations under other names: ECDSA and ECDH.
 */
#include <openssl/core_dispatch.h>

#include "keymgmt_family.h"

SMPROV_KEYMGMT_TYPE(ec, SMPROV_EC)

static OSSL_FUNC_keymgmt_query_operation_name_fn ec_query_operation_name;

static const char *ec_query_operation_name(int operation_id) {
  switch (operation_id) {
  case OSSL_OP_KEYEXCH:
    return "ECDH";
  case OSSL_OP_SIGNATURE:
    return "ECDSA";
  default:
    return NULL;
  }
}

const OSSL_DISPATCH smprov_keymgmt_ec[] = {
    SMPROV_KEYMGMT_ENTRIES(ec),
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))ec_query_operation_name},
    {0, NULL}};
