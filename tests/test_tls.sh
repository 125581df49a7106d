#!/usr/bin/env bash
# test_tls.sh - owns the TLS end-to-end test of the provider with the real
# openssl s_server and s_client: for RSA (PSS and PKCS#1 v1.5 signatures),
# ECDSA P-256 and P-384, and Ed25519 server keys loaded as secmem: URIs,
# TLS 1.3 and TLS 1.2 handshakes complete, and the server's memory holds no
# window of the private key and no line of its PEM (secmem-scan); the same
# server with the plain key file (the control) does.
#
# Usage: test_tls.sh MODULE_DIR SECMEM_SCAN
set -euo pipefail
module_dir=$(cd "$1" && pwd)
scan=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
work=$(mktemp -d "${TMPDIR:-/tmp}/secmem-tls.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}

echo "# keys and certificates"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
for k in rsa p256 p384 ed25519; do
  openssl req -x509 -key "$k.pem" -out "$k.crt" -subj /CN=localhost -days 2 2>/dev/null
done

# A loopback port below the kernel's ephemeral range (32768-60999) that
# nothing listens on yet.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 12000))
while port_busy "$port"; do port=$((port + 1)); done
secmem_args=(-provider-path "$module_dir" -provider default -provider secmem)

start_server() { # start_server KEY CERT [openssl args...]
  local key=$1 cert=$2
  shift 2
  openssl s_server "$@" -key "$key" -cert "$cert" -accept "127.0.0.1:$port" -www \
    >"server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 50); do
    kill -0 "$server_pid" 2>/dev/null || break # it exited: say why below
    if port_busy "$port"; then return 0; fi
    sleep 0.1
  done
  echo "server did not start:"; cat server.log
  return 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  port=$((port + 1))
  while port_busy "$port"; do port=$((port + 1)); done
}

handshake() { # handshake VERSION EXPECTED_SIGTYPE [s_client args...]
  local version=$1 sigtype=$2
  shift 2
  local out
  out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$port" "$version" "$@" 2>&1) || true
  grep -q "Cipher is " <<<"$out" && ! grep -q "Cipher is (NONE)" <<<"$out" &&
    grep -q "Peer signature type: $sigtype" <<<"$out"
}

many_handshakes() { # at least 200 full handshakes (s_time -new), in rounds of 2 s
  local total=0 n
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    n=$(timeout 10 openssl s_time -connect "127.0.0.1:$port" -new -time 2 2>/dev/null |
      awk '/connections in/ {print $1; exit}')
    total=$((total + ${n:-0}))
    if [ "$total" -ge 200 ]; then
      echo "  ($total handshakes)"
      return 0
    fi
  done
  echo "  only $total handshakes"
  return 1
}

clean() { # clean KEYFILE NAME: secmem-scan finds nothing in the server
  "$scan" "$server_pid" "$1" >"scan-$2.log"
}

run() { # run NAME KEYFILE SIGTYPE13 SIGTYPE12 [TLS1.2 s_client args...]
  local name=$1 key=$2 sig13=$3 sig12=$4
  shift 4
  start_server "secmem:$work/$key" "${key%.pem}.crt" "${secmem_args[@]}"
  check "$name: TLS 1.3 handshake with a secmem: key" handshake -tls1_3 "$sig13"
  check "$name: TLS 1.2 handshake with a secmem: key" handshake -tls1_2 "$sig12" "$@"
  if [ "$name" = rsa-pss ] || [ "$name" = p256 ]; then
    check "$name: 200 more full handshakes before the scan" many_handshakes
  fi
  check "$name: the server holds no window of the key (secmem-scan)" clean "$key" "$name"
  stop_server
}

echo "# secmem: keys in s_server"
run rsa-pss rsa.pem RSA-PSS RSA-PSS -sigalgs rsa_pss_rsae_sha256
run rsa-pkcs1 rsa.pem RSA-PSS RSA -sigalgs RSA+SHA256
run p256 p256.pem ECDSA ECDSA
run p384 p384.pem ECDSA ECDSA
run ed25519 ed25519.pem ed25519 ed25519

echo "# the control: the same server with the plain key file"
start_server rsa.pem rsa.crt
check "control: TLS 1.3 handshake" handshake -tls1_3 RSA-PSS
set +e
"$scan" "$server_pid" rsa.pem >scan-control.log
status=$?
set -e
check "control: the scan finds the plain key in the server" test "$status" -eq 1
stop_server
start_server p256.pem p256.crt
check "control: TLS 1.3 handshake (P-256)" handshake -tls1_3 ECDSA
set +e
"$scan" "$server_pid" p256.pem >scan-control-ec.log
status=$?
set -e
check "control: the scan finds the plain P-256 key in the server" test "$status" -eq 1
stop_server

exit "$fail"
