#!/usr/bin/env bash
# fuzz/seeds.sh DIR - a seed corpus for fuzz_keyfile: one small key of each
# type the provider seals, in each file form it reads (PKCS#8 PEM and DER,
# encrypted PKCS#8, traditional, legacy PEM encryption), plus a public key
# and a certificate. Passphrase: hunter2 (the harness's).
set -euo pipefail
out=$1
mkdir -p "$out"
cd "$out"
gen() { openssl genpkey -quiet "$@" 2>/dev/null || openssl genpkey "$@"; }
gen -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa.pem
gen -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:1024 -out rsapss.pem
gen -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.pem
gen -algorithm ED25519 -out ed25519.pem
gen -algorithm X25519 -out x25519.pem
gen -algorithm ED448 -out ed448.pem
gen -algorithm X448 -out x448.pem
for k in rsa rsapss p256 ed25519 x25519 ed448 x448; do
  openssl pkey -in "$k.pem" -outform DER -out "$k.der"
  openssl pkcs8 -topk8 -in "$k.pem" -v2 aes-128-cbc -passout pass:hunter2 -out "$k.p8e.pem"
  openssl pkcs8 -topk8 -in "$k.pem" -v2 aes-128-cbc -passout pass:hunter2 -outform DER \
    -out "$k.p8e.der"
done
openssl pkey -in rsa.pem -traditional -out rsa.trad.pem
openssl rsa -in rsa.pem -outform DER -out rsa.trad.der 2>/dev/null
openssl pkey -in rsa.pem -traditional -aes128 -passout pass:hunter2 -out rsa.legacy.pem
openssl ec -in p256.pem -out p256.trad.pem 2>/dev/null
openssl ec -in p256.pem -outform DER -out p256.trad.der 2>/dev/null
openssl ec -in p256.pem -aes128 -passout pass:hunter2 -out p256.legacy.pem 2>/dev/null
openssl pkey -in p256.pem -pubout -out p256.pub.pem
openssl req -x509 -key p256.pem -subj /CN=seed -days 1 -out p256.crt 2>/dev/null
cat p256.crt p256.pem > p256.combined.pem
