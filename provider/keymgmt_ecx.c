/*
 * keymgmt_ecx.c - owns key management for the RFC 7748 / 8032 curves:
 * Ed25519, X25519, Ed448 and X448 (Ed25519 and X25519 then run on
 * libsodium, Ed448 and X448 on OpenSSL, all through unseal.c).
 */
#include "keymgmt_family.h"

SMPROV_KEYMGMT_TYPE(ed25519, SMPROV_ED25519)
SMPROV_KEYMGMT_TYPE(x25519, SMPROV_X25519)
SMPROV_KEYMGMT_TYPE(ed448, SMPROV_ED448)
SMPROV_KEYMGMT_TYPE(x448, SMPROV_X448)

const OSSL_DISPATCH smprov_keymgmt_ecx_ed25519[] = {SMPROV_KEYMGMT_ENTRIES(ed25519), {0, NULL}};
const OSSL_DISPATCH smprov_keymgmt_ecx_x25519[] = {SMPROV_KEYMGMT_ENTRIES(x25519), {0, NULL}};
const OSSL_DISPATCH smprov_keymgmt_ecx_ed448[] = {SMPROV_KEYMGMT_ENTRIES(ed448), {0, NULL}};
const OSSL_DISPATCH smprov_keymgmt_ecx_x448[] = {SMPROV_KEYMGMT_ENTRIES(x448), {0, NULL}};
