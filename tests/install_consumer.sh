#!/bin/sh
# install_consumer.sh - owns the end-to-end install test: it installs a built
# libsecmem into a temporary prefix and proves that a program outside the
# tree can use it, (a) through pkg-config and (b) through the CMake package
# (shared secmem::secmem and static secmem::secmem_static).
#
# Usage: install_consumer.sh <cmake build dir> <consumer source dir>
# The consumer dir holds consumer.c and the CMakeLists.txt that calls
# find_package(secmem REQUIRED). Set SECMEM_KEEP_TMP=1 to keep the temporary
# directory for inspection. Exit 0 on success, 1 on any failure.
set -eu

say() { echo "install_consumer: $*"; }
die() {
  echo "install_consumer: FAIL: $*" >&2
  exit 1
}
# run CMD...: print the command, then run it; a failure ends the script.
run() {
  echo "+ $*"
  "$@" || die "command failed (exit $?): $*"
}

if [ "$#" -ne 2 ]; then
  echo "usage: $0 <cmake build dir> <consumer source dir>" >&2
  exit 1
fi
builddir=$(cd "$1" && pwd) || die "no build directory '$1'"
srcdir=$(cd "$2" && pwd) || die "no consumer directory '$2'"
[ -f "$builddir/CMakeCache.txt" ] || die "$builddir is not a CMake build directory"
[ -f "$srcdir/consumer.c" ] || die "$srcdir/consumer.c is missing"
[ -f "$srcdir/CMakeLists.txt" ] || die "$srcdir/CMakeLists.txt is missing"
for tool in cmake pkg-config "${CC:-cc}" readelf; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found in PATH"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/secmem-install.XXXXXX")
cleanup() {
  if [ "${SECMEM_KEEP_TMP:-0}" = 1 ]; then
    say "keeping $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
prefix=$tmp/prefix

# ---- install ------------------------------------------------------------------
say "installing $builddir into $prefix"
run cmake --install "$builddir" --prefix "$prefix"
[ -f "$prefix/include/secmem.h" ] || die "secmem.h was not installed into $prefix/include"

pcdir=
for d in "$prefix"/lib/pkgconfig "$prefix"/lib64/pkgconfig "$prefix"/lib/*/pkgconfig; do
  if [ -f "$d/secmem.pc" ]; then
    pcdir=$d
    break
  fi
done
[ -n "$pcdir" ] || die "no secmem.pc under $prefix/lib/pkgconfig, lib64/pkgconfig or lib/*/pkgconfig"
libdir=$(dirname "$pcdir")
[ -e "$libdir/libsecmem.so" ] || die "libsecmem.so is not in $libdir next to pkgconfig/"
[ -f "$libdir/libsecmem.a" ] || die "libsecmem.a is not in $libdir next to pkgconfig/"
say "pkg-config dir: $pcdir"
say "library dir:    $libdir"

header_version=$(sed -n 's/^#define SECMEM_VERSION_STRING "\(.*\)"$/\1/p' "$prefix/include/secmem.h")
[ -n "$header_version" ] || die "no SECMEM_VERSION_STRING in the installed secmem.h"

# ---- (a) pkg-config -------------------------------------------------------------
say "(a) pkg-config"
PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
echo "+ PKG_CONFIG_PATH=$PKG_CONFIG_PATH"
found_pc=$(pkg-config --variable=pcfiledir secmem) || die "pkg-config cannot find secmem"
[ "$found_pc" = "$pcdir" ] || die "pkg-config found secmem.pc in $found_pc, not in $pcdir"
pc_version=$(pkg-config --modversion secmem) || die "pkg-config --modversion secmem failed"
[ "$pc_version" = "$header_version" ] ||
  die "secmem.pc says version $pc_version but secmem.h says $header_version"
flags=$(pkg-config --cflags --libs secmem) || die "pkg-config --cflags --libs secmem failed"
echo "+ pkg-config --cflags --libs secmem -> $flags"
# $flags is split into words on purpose, as in `cc $(pkg-config ...)`.
# shellcheck disable=SC2086
run "${CC:-cc}" -Wall -Wextra -Werror -o "$tmp/consumer-pc" "$srcdir/consumer.c" $flags

check_runs() { # check_runs LABEL PROGRAM: run it, demand exit 0 and "consumer ok"
  echo "+ $2"
  if ! out=$("$2" 2>&1); then
    printf '%s\n' "$out"
    die "$1: $2 exited non-zero"
  fi
  printf '%s\n' "$out"
  case $out in
  *"consumer ok"*) ;;
  *) die "$1: $2 did not print 'consumer ok'" ;;
  esac
}
# resolved_lib PROGRAM: print where the loader finds libsecmem.so for PROGRAM.
resolved_lib() {
  ldd "$1" 2>/dev/null | awk '$1 ~ /^libsecmem\.so/ { print $3 }'
}

LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
echo "+ LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
where=$(resolved_lib "$tmp/consumer-pc")
case $where in
"$libdir"/*) say "consumer-pc loads $where" ;;
*) die "consumer-pc does not load libsecmem from $libdir (ldd says '$where')" ;;
esac
check_runs "(a) pkg-config" "$tmp/consumer-pc"
unset LD_LIBRARY_PATH

# ---- (b) CMake package ----------------------------------------------------------
say "(b) CMake package: find_package(secmem) with CMAKE_PREFIX_PATH=$prefix"
run cmake -S "$srcdir" -B "$tmp/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release
found_dir=$(sed -n 's/^secmem_DIR:[A-Z]*=//p' "$tmp/consumer-build/CMakeCache.txt")
case $found_dir in
"$prefix"/*) say "find_package used $found_dir" ;;
*) die "find_package(secmem) found '$found_dir', not the package installed under $prefix" ;;
esac
run cmake --build "$tmp/consumer-build"

shared=$tmp/consumer-build/consumer
static=$tmp/consumer-build/consumer_static
where=$(resolved_lib "$shared")
case $where in
"$libdir"/*) say "consumer (secmem::secmem) loads $where" ;;
*) die "consumer (secmem::secmem) does not load libsecmem from $libdir (ldd says '$where')" ;;
esac
if readelf -d "$static" | grep -q 'NEEDED.*libsecmem'; then
  die "consumer_static (secmem::secmem_static) depends on libsecmem.so; it should be static"
fi
say "consumer_static (secmem::secmem_static) has no libsecmem.so dependency"
check_runs "(b) secmem::secmem" "$shared"
check_runs "(b) secmem::secmem_static" "$static"

# (c) the provider module and the scan tool.
module=$libdir/ossl-modules/secmem.so
[ -f "$module" ] || die "secmem.so is not installed in $libdir/ossl-modules"
exports=$(nm -D --defined-only "$module" | awk '{print $3}' | sort -u | tr '\n' ' ')
[ "$exports" = "OSSL_provider_init " ] || die "secmem.so exports more than OSSL_provider_init: $exports"
say "secmem.so exports only OSSL_provider_init"
listing=$(openssl list -providers -provider-path "$libdir/ossl-modules" -provider secmem 2>&1) ||
  die "openssl cannot load the installed secmem.so: $listing"
printf "%s" "$listing" | grep -q "status: active" || die "the installed provider is not active: $listing"
say "openssl list -providers shows the installed secmem provider active"
[ -x "$prefix/bin/secmem-scan" ] || die "secmem-scan is not installed in $prefix/bin"

say "OK: pkg-config and CMake package consumers build and run against $prefix; the provider loads"

