#!/usr/bin/env bash
# test_servers.sh - owns the end-to-end test of transparent loading with
# real, unmodified servers from Debian: openssl s_server, nginx, HAProxy and
# Apache (mod_ssl), configured only through OPENSSL_CONF (the shipped
# conf/openssl-secmem.cnf, its module path filled in), each serving an
# ordinary RSA-2048 key and, separately, a P-256 key from plain PEM files.
#
# For each server and key: TLS 1.3 and TLS 1.2 handshakes with curl
# succeed; every process of the server (master and workers) is scanned with
# secmem-scan and holds no window of the key and no line of its PEM; the
# same server without secmem (the control, in the same run) does. Ownership:
# secmem refuses private export (export_private = no), so a zero scan with
# working handshakes means the key exists only sealed in secmem.
#
# The openssl command line (pkey, pkeyutl; PEM and DER) gets keys owned by
# secmem: the private key cannot be printed, the public key and signatures
# are the file's.
#
# Then: nginx with a passphrase-protected key (ssl_password_file, the wrong
# passphrase first) under the hardened configuration; nginx -s reload and a
# HAProxy master-worker reload with a changed key; bad input -- a corrupt
# key, a truncated key, a key that does not match its certificate -- makes
# every server refuse to start with OpenSSL's error naming the problem, and
# nothing crashes. Loopback only; every wait is bounded.
#
# Usage: test_servers.sh MODULE_DIR SECMEM_SCAN SOURCE_DIR
set -euo pipefail
module_dir=$(cd "$1" && pwd)
scan=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
src=$(cd "$3" && pwd)
# Under /tmp whatever TMPDIR says: the servers' unprivileged workers
# (www-data, nobody) must be able to reach the files they serve.
work=$(mktemp -d /tmp/secmem-servers.XXXXXX)
chmod 755 "$work"
fail=0
running=() # "kind:pidfile-or-pid" of servers to stop on exit

stop_all() {
  local s
  for s in "${running[@]:-}"; do
    [ -n "$s" ] || continue
    stop_server "$s" || true
  done
  running=()
}
cleanup() {
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}

for tool in nginx haproxy apache2 curl openssl; do
  if ! command -v "$tool" >/dev/null && ! [ -x "/usr/sbin/$tool" ]; then
    echo "FAIL $tool is not installed (scripts/test installs it)"
    exit 1
  fi
done
export PATH="$PATH:/usr/sbin"
as_root=$([ "$(id -u)" -eq 0 ] && echo yes || echo no)

# ---- keys, certificates, configurations ---------------------------------------------
export OPENSSL_CONF=/dev/null # the setup itself never loads secmem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other.key 2>/dev/null
for k in rsa p256; do
  openssl req -x509 -key "$k.key" -out "$k.crt" -subj /CN=localhost -days 2 2>/dev/null
done
openssl pkcs8 -topk8 -in rsa.key -v2 aes-256-cbc -passout pass:hunter2 -out rsa_enc.key
printf 'not-this-one\nhunter2\n' > passwords.txt
head -c 700 rsa.key > truncated.key
sed '3s/.*/!!!! this line is not base64 !!!!/' rsa.key > corrupt.key
chmod 644 ./*.key ./*.crt passwords.txt
unset OPENSSL_CONF

# The shipped configurations, pointed at the module under test.
with_module() { # with_module SRC DST
  sed "s|^\[secmem_sect\]|[secmem_sect]\nmodule = $module_dir/secmem.so|" "$1" > "$2"
}
with_module "$src/conf/openssl-secmem.cnf" secmem.cnf
with_module "$src/conf/openssl-secmem-hardened.cnf" hardened.cnf
printf 'openssl_conf = init\n[init]\nproviders = p\n[p]\ndefault = d\n[d]\nactivate = 1\n' > plain.cnf

# A loopback port below the kernel's ephemeral range (32768-60999) that
# nothing listens on yet.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 12000))
while port_busy "$port"; do port=$((port + 1)); done
next_port() {
  port=$((port + 1))
  while port_busy "$port"; do port=$((port + 1)); done
}

wait_port() { # wait_port PORT [PID]: up to 10 s, less if PID dies
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

wait_file() { # wait_file FILE: up to 10 s for it to have content
  local i
  for i in $(seq 1 100); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  return 1
}

wait_gone() { # wait_gone PID: up to 10 s
  local i
  for i in $(seq 1 100); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# Every process of a server: the tree under its main process.
tree() { # tree PID
  local p c
  for p in "$@"; do
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do tree "$c"; done
  done
}

# Total hits of KEYFILE in every process of the server rooted at PID.
hits() { # hits PID KEYFILE [PASS]
  local total=0 p n args=()
  [ -n "${3:-}" ] && args=(--pass "$3")
  for p in $(tree "$1"); do
    n=$("$scan" "${args[@]}" "$p" "$2" 2>/dev/null | awk '/^total hits/ {print $NF}') || true
    [ -n "$n" ] || { echo "scan of $p failed" >&2; echo -1; return; }
    total=$((total + n))
  done
  echo "$total"
}

# curl_ok PORT CAFILE VERSION(1.2|1.3): a request over exactly that version.
curl_ok() {
  local v=(--tlsv1.3)
  [ "$3" = 1.2 ] && v=(--tlsv1.2 --tls-max 1.2)
  local code
  code=$(curl -s --noproxy "*" -o /dev/null -w '%{http_code}' --max-time 5 "${v[@]}" --cacert "$2" \
    --resolve "localhost:$1:127.0.0.1" "https://localhost:$1/" 2>/dev/null) || true
  [ "$code" = 200 ]
}

# ---- the servers ------------------------------------------------------------------------
# start_<kind> CONF KEY CERT [extra]: starts the server; pid is its main
# process, or empty when it did not start (its output then on stderr).

start_s_server() {
  OPENSSL_CONF="$1" openssl s_server -key "$2" -cert "$3" -accept "127.0.0.1:$port" -www \
    -quiet >"s_server.$port.log" 2>&1 &
  pid=$!
  if wait_port "$port" "$pid"; then
    running+=("pid:$pid")
  else
    wait "$pid" 2>/dev/null || echo "s_server exit status $?" >>"s_server.$port.log"
    cat "s_server.$port.log" >&2
    pid=""
  fi
}

nginx_conf() { # nginx_conf KEY CERT [extra directives]
  mkdir -p "nginx.$port"
  cat >"nginx.$port/nginx.conf" <<EOF
daemon on;
worker_processes 2;
pid $work/nginx.$port/nginx.pid;
error_log $work/nginx.$port/error.log notice;
$([ "$as_root" = yes ] && echo "user nobody nogroup;")
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx.$port; proxy_temp_path $work/nginx.$port;
  fastcgi_temp_path $work/nginx.$port; uwsgi_temp_path $work/nginx.$port;
  scgi_temp_path $work/nginx.$port;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $work/$2;
    ssl_certificate_key $work/$1;
    ${3:-}
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "hello\n"; }
  }
}
EOF
}

start_nginx() {
  nginx_conf "$2" "$3" "${4:-}"
  pid=""
  if OPENSSL_CONF="$1" timeout 20 nginx -c "$work/nginx.$port/nginx.conf" \
    -e "$work/nginx.$port/error.log" >"nginx.$port/start.log" 2>&1 && wait_port "$port"; then
    running+=("nginx:$work/nginx.$port/nginx.pid")
    wait_file "nginx.$port/nginx.pid" || true
    pid=$(cat "nginx.$port/nginx.pid" 2>/dev/null || true)
  else
    echo "nginx exit status $?" >>"nginx.$port/start.log"
    cat "nginx.$port/start.log" "nginx.$port/error.log" >&2 2>/dev/null || true
  fi
}

start_haproxy() {
  mkdir -p "haproxy.$port"
  cp "$3" "haproxy.$port/site.pem"     # the certificate file...
  cp "$2" "haproxy.$port/site.pem.key" # ...and its key in a file of its own
  cat >"haproxy.$port/haproxy.cfg" <<EOF
global
    pidfile $work/haproxy.$port/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:$port ssl crt $work/haproxy.$port/site.pem ssl-min-ver TLSv1.2
    http-request return status 200 content-type text/plain string "hello"
EOF
  pid=""
  if OPENSSL_CONF="$1" timeout 20 haproxy -W -D -f "$work/haproxy.$port/haproxy.cfg" \
    >"haproxy.$port/start.log" 2>&1 && wait_port "$port"; then
    running+=("haproxy:$work/haproxy.$port/haproxy.pid")
    wait_file "haproxy.$port/haproxy.pid" || true
    pid=$(head -1 "haproxy.$port/haproxy.pid" 2>/dev/null || true)
  else
    echo "haproxy exit status $?" >>"haproxy.$port/start.log"
    cat "haproxy.$port/start.log" >&2
  fi
}

start_apache() {
  local d="$work/apache.$port"
  mkdir -p "$d/www"
  echo hello >"$d/www/index.html"
  chmod -R a+rX "$d"
  cat >"$d/httpd.conf" <<EOF
ServerRoot $d
ServerName localhost
PidFile $d/httpd.pid
ErrorLog $d/error.log
LogLevel warn
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
$([ "$as_root" = yes ] && printf 'User www-data\nGroup www-data')
StartServers 2
Listen 127.0.0.1:$port
DocumentRoot $d/www
DirectoryIndex index.html
<Directory $d/www>
  Require all granted
</Directory>
SSLSessionCache none
${4:-}
<VirtualHost 127.0.0.1:$port>
  SSLEngine on
  SSLCertificateFile $work/$3
  SSLCertificateKeyFile $work/$2
  SSLProtocol -all +TLSv1.2 +TLSv1.3
</VirtualHost>
EOF
  pid=""
  if OPENSSL_CONF="$1" timeout 20 apache2 -f "$d/httpd.conf" -k start >"$d/start.log" 2>&1 &&
    wait_port "$port"; then
    running+=("apache:$d")
    wait_file "$d/httpd.pid" || true
    pid=$(cat "$d/httpd.pid" 2>/dev/null || true)
  else
    echo "apache2 exit status $?" >>"$d/start.log"
    cat "$d/start.log" "$d/error.log" >&2 2>/dev/null || true
  fi
}

stop_server() { # stop_server KIND:WHAT
  local kind=${1%%:*} what=${1#*:} pid
  case $kind in
  pid) pid=$what ;;
  nginx | haproxy) pid=$(head -1 "$what" 2>/dev/null) || return 0 ;;
  apache)
    pid=$(cat "$what/httpd.pid" 2>/dev/null) || return 0
    apache2 -f "$what/httpd.conf" -k stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    wait_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
    return 0
    ;;
  esac
  kill "$pid" 2>/dev/null || true
  wait_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
}

stop_last() {
  local n=${#running[@]}
  [ "$n" -gt 0 ] || return 0
  stop_server "${running[$((n - 1))]}"
  unset "running[$((n - 1))]"
  running=("${running[@]}")
  next_port
}

# ---- the openssl command line: pkey and pkeyutl ------------------------------------------

echo "# openssl pkey / pkeyutl with ordinary key files"
cli_refuses_private() { # the private key cannot be printed: secmem owns it
  ! OPENSSL_CONF="$work/secmem.cnf" openssl pkey -in "$1" "${@:2}" >cli.out 2>&1 &&
    grep -q "key is sealed and export_private is off" cli.out
}
verifies() { # verifies PUB SIG: with the default provider alone
  OPENSSL_CONF="$work/plain.cnf" openssl pkeyutl -verify -rawin -digest sha256 -pubin \
    -inkey "$1" -in msg.bin -sigfile "$2" >/dev/null 2>&1
}
for key in rsa p256; do
  check "openssl pkey -in $key.key: the private key is not printed (owned by secmem)" \
    cli_refuses_private "$key.key"
  check "openssl pkey -in $key.key -text: refused as well" cli_refuses_private "$key.key" -text -noout
  OPENSSL_CONF="$work/secmem.cnf" openssl pkey -in "$key.key" -pubout -out "$key.pub.sm"
  OPENSSL_CONF="$work/plain.cnf" openssl pkey -in "$key.key" -pubout -out "$key.pub"
  check "openssl pkey -in $key.key -pubout: the file's public key" cmp -s "$key.pub.sm" "$key.pub"
  printf 'sign me' >msg.bin
  OPENSSL_CONF="$work/secmem.cnf" openssl pkeyutl -sign -rawin -digest sha256 -inkey "$key.key" \
    -in msg.bin -out "msg.$key.sig"
  check "openssl pkeyutl -sign -inkey $key.key: verifies with the public key (default provider)" \
    verifies "$key.pub" "msg.$key.sig"
done
OPENSSL_CONF=/dev/null openssl pkey -in rsa.key -outform DER -out rsa.der
OPENSSL_CONF="$work/secmem.cnf" openssl pkeyutl -sign -rawin -digest sha256 -keyform DER \
  -inkey rsa.der -in msg.bin -out msg.der.sig
check "openssl pkeyutl -keyform DER -inkey rsa.der: signs, verifies" verifies rsa.pub msg.der.sig
check "openssl pkey -in rsa.der: refused to print as well" cli_refuses_private rsa.der

# ---- each server, each key: handshakes, ownership, scans, control -------------------------

for server in s_server nginx haproxy apache; do
  for key in rsa p256; do
    echo "# $server, $key key"
    start_"$server" "$work/secmem.cnf" "$key.key" "$key.crt"
    check "$server/$key: starts with the key loaded through secmem" test -n "$pid"
    if [ -n "$pid" ]; then
      check "$server/$key: TLS 1.3 handshake (curl)" curl_ok "$port" "$key.crt" 1.3
      check "$server/$key: TLS 1.2 handshake (curl)" curl_ok "$port" "$key.crt" 1.2
      n=$(hits "$pid" "$key.key")
      echo "     $(tree "$pid" | wc -l) process(es), $n hits"
      check "$server/$key: no process holds the key (secmem-scan: 0 hits)" test "$n" -eq 0
    fi
    stop_last
    start_"$server" "$work/plain.cnf" "$key.key" "$key.crt"
    if [ -n "$pid" ]; then
      curl_ok "$port" "$key.crt" 1.3 || true
      n=$(hits "$pid" "$key.key")
      check "$server/$key: control without secmem: the scan finds the key ($n hits)" test "$n" -gt 0
    else
      check "$server/$key: control server starts" false
    fi
    stop_last
  done
done

# ---- nginx: a passphrase-protected key, the hardened configuration ------------------------

echo "# nginx, passphrase-protected key (ssl_password_file), hardened configuration"
start_nginx "$work/hardened.cnf" rsa_enc.key rsa.crt "ssl_password_file $work/passwords.txt;"
check "nginx/passphrase: starts (wrong passphrase first, then the right one)" test -n "$pid"
if [ -n "$pid" ]; then
  check "nginx/passphrase: TLS 1.3 handshake" curl_ok "$port" rsa.crt 1.3
  check "nginx/passphrase: TLS 1.2 handshake" curl_ok "$port" rsa.crt 1.2
  n=$(hits "$pid" rsa_enc.key hunter2)
  check "nginx/passphrase: no process holds the key ($n hits)" test "$n" -eq 0
  check "nginx/passphrase: hardened: RLIMIT_CORE is 0" \
    awk '/^Max core file size/ { exit !($5 == 0) }' "/proc/$pid/limits"
fi
stop_last

# ---- Apache: a passphrase-protected key --------------------------------------------------

# mod_ssl caches a passphrase-protected key by re-encoding it (i2d_PrivateKey)
# and decodes that again at every (re)start: secmem gives it a sealed handle.
echo "# apache, passphrase-protected key (SSLPassPhraseDialog), graceful restart"
printf '#!/bin/sh\necho asked >> %s/passphrase.asked\necho hunter2\n' "$work" > passphrase.sh
chmod 755 passphrase.sh
start_apache "$work/secmem.cnf" rsa_enc.key rsa.crt "SSLPassPhraseDialog exec:$work/passphrase.sh"
check "apache/passphrase: starts" test -n "$pid"
if [ -n "$pid" ]; then
  d="$work/apache.$port"
  check "apache/passphrase: TLS 1.3 handshake" curl_ok "$port" rsa.crt 1.3
  check "apache/passphrase: TLS 1.2 handshake" curl_ok "$port" rsa.crt 1.2
  n=$(hits "$pid" rsa_enc.key hunter2)
  check "apache/passphrase: no process holds the key, nor its cached copy ($n hits)" test "$n" -eq 0
  old_children=$(pgrep -P "$pid" | tr '\n' ' ')
  asked=$(wc -l <passphrase.asked)
  OPENSSL_CONF="$work/secmem.cnf" apache2 -f "$d/httpd.conf" -k graceful
  for c in $old_children; do wait_gone "$c" || true; done
  for _ in $(seq 1 50); do curl_ok "$port" rsa.crt 1.3 && break; sleep 0.1; done
  check "apache/passphrase: serves after a graceful restart (the sealed handle decoded)" \
    curl_ok "$port" rsa.crt 1.3
  check "apache/passphrase: ...without asking for the passphrase again" \
    test "$(wc -l <passphrase.asked)" -eq "$asked"
  n=$(hits "$pid" rsa_enc.key hunter2)
  check "apache/passphrase: no process holds the key after the restart ($n hits)" test "$n" -eq 0
fi
stop_last

# ---- reloads with a changed key -----------------------------------------------------------

echo "# nginx -s reload with a changed key"
cp rsa.key live.key && cp rsa.crt live.crt
start_nginx "$work/secmem.cnf" live.key live.crt
if [ -n "$pid" ]; then
  check "nginx/reload: serves the first key" curl_ok "$port" rsa.crt 1.3
  old_workers=$(pgrep -P "$pid" | tr '\n' ' ')
  cp p256.key live.key && cp p256.crt live.crt
  nginx -c "$work/nginx.$port/nginx.conf" -e "$work/nginx.$port/error.log" -s reload
  for w in $old_workers; do wait_gone "$w" || true; done
  for _ in $(seq 1 50); do curl_ok "$port" p256.crt 1.3 && break; sleep 0.1; done
  check "nginx/reload: serves the new key" curl_ok "$port" p256.crt 1.3
  check "nginx/reload: the old key is no longer served" bash -c "! curl -s --noproxy '*' --max-time 5 \
    --cacert rsa.crt --resolve localhost:$port:127.0.0.1 https://localhost:$port/ >/dev/null"
  n=$(hits "$pid" p256.key)
  m=$(hits "$pid" rsa.key)
  check "nginx/reload: neither key is in any process (new $n, old $m hits)" test "$((n + m))" -eq 0
else
  check "nginx/reload: starts" false
fi
stop_last

echo "# HAProxy master-worker reload (SIGUSR2) with a changed key"
start_haproxy "$work/secmem.cnf" rsa.key rsa.crt
if [ -n "$pid" ]; then
  check "haproxy/reload: serves the first key" curl_ok "$port" rsa.crt 1.3
  old_workers=$(pgrep -P "$pid" | tr '\n' ' ')
  cp p256.crt "haproxy.$port/site.pem" && cp p256.key "haproxy.$port/site.pem.key"
  kill -USR2 "$pid"
  for w in $old_workers; do wait_gone "$w" || true; done
  for _ in $(seq 1 50); do curl_ok "$port" p256.crt 1.3 && break; sleep 0.1; done
  check "haproxy/reload: serves the new key" curl_ok "$port" p256.crt 1.3
  n=$(hits "$pid" "haproxy.$port/site.pem.key")
  m=$(hits "$pid" rsa.key)
  check "haproxy/reload: neither key is in any process (new $n, old $m hits)" test "$((n + m))" -eq 0
else
  check "haproxy/reload: starts" false
fi
stop_last

# ---- bad input through the servers ----------------------------------------------------------

# refuses SERVER KEY CERT WORDS...: the server does not start, says why (one
# of WORDS in its output), and nothing died of a signal.
refuses() {
  local server=$1 key=$2 cert=$3
  shift 3
  local out
  start_"$server" "$work/secmem.cnf" "$key" "$cert" 2>"refusal.$port.log"
  out=$(cat "refusal.$port.log" "$work/apache.$port/error.log" "$work/nginx.$port/error.log" \
    "$work/s_server.$port.log" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    echo "     $server started with $key" >&2
    stop_last
    return 1
  fi
  next_port
  if grep -qiE "segmentation|core dumped|assertion|aborted|exit status 1[2-9][0-9]" <<<"$out"; then
    echo "     $server crashed: $out" >&2
    return 1
  fi
  local w
  for w in "$@"; do
    if grep -qiF "$w" <<<"$out"; then return 0; fi
  done
  echo "     $server: none of [$*] in: $out" >&2
  return 1
}

# OpenSSL's error queue as the server prints it: s_server, nginx and Apache
# print secmem's reason; HAProxy prints only its own summary of the failure.
for server in s_server nginx haproxy apache; do
  echo "# $server: bad input"
  if [ "$server" = haproxy ]; then
    corrupt=("unable to load private key") truncated=("unable to load private key")
    mismatch=("inconsistencies between private key and certificate")
  else
    corrupt=("the PRIVATE KEY block is not valid base64")
    truncated=("the PRIVATE KEY block is truncated")
    mismatch=("key values mismatch" "do not match")
  fi
  check "$server refuses a corrupt key, naming the problem" \
    refuses "$server" corrupt.key rsa.crt "${corrupt[@]}"
  check "$server refuses a truncated key, naming the problem" \
    refuses "$server" truncated.key rsa.crt "${truncated[@]}"
  check "$server refuses a key that does not match its certificate" \
    refuses "$server" other.key rsa.crt "${mismatch[@]}"
done

stop_all
if [ "$fail" -ne 0 ]; then
  echo "test_servers: FAILED"
  exit 1
fi
echo "test_servers: all passed"
