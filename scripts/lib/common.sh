# scripts/lib/common.sh - shared by scripts/*: locate the project and install
# missing Debian packages (apt-get) before anything is built.

SECMEM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export SECMEM_ROOT

# Packages every build needs.
SECMEM_BUILD_PACKAGES=(build-essential cmake pkg-config libsodium-dev libssl-dev libcunit1-dev openssl)
# What the end-to-end tests and the demo run: real servers from Debian and a client.
SECMEM_SERVER_PACKAGES=(nginx haproxy apache2 curl)

# need_packages PKG... installs the packages that are not installed yet.
need_packages() {
  local missing=()
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Installing a server must not start it (on port 80, with Debian's default
  # site, which can fail and fail the install): the tests and the demo start
  # their own on loopback. policy-rc.d is Debian's switch for that; one we
  # put there is removed again.
  local policy=/usr/sbin/policy-rc.d made_policy="" rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" &&
      made_policy=yes
  fi
  { $sudo apt-get update -qq &&
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  if [ -n "$made_policy" ]; then
    $sudo rm -f "$policy"
  fi
  return "$rc"
}

# configure_and_build DIR [cmake args...]
configure_and_build() {
  local dir="$1"
  shift
  cmake -S "$SECMEM_ROOT" -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}
