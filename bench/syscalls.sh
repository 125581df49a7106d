#!/bin/sh
# syscalls.sh - owns the system-call count of one allocation cycle: it runs
# bench_alloc's 32-byte new + destroy loop of libsecmem and of libsodium
# (sodium_malloc + sodium_free) under `strace -f -c`, once with N cycles and
# once with 0 (the baseline: start-up and one warm-up cycle), and prints
# (calls(N) - calls(0)) / N in total and per system call.
#
# Usage: bench/syscalls.sh <cmake build dir> [N]     (N defaults to 10000)
set -eu

die() {
  echo "syscalls: $*" >&2
  exit 1
}

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  die "usage: $0 <cmake build dir> [cycles]"
fi
bench=$1/bench/bench_alloc
n=${2:-10000}
case $n in
'' | *[!0-9]* | 0) die "cycle count must be a positive integer, not '$n'" ;;
esac
[ -x "$bench" ] || die "$bench not found; build it: cmake --build $1 --target bench_alloc"
command -v strace >/dev/null 2>&1 || die "strace not found (apt-get install -y strace)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/secmem-syscalls.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# count LIB CYCLES: run the loop under strace and leave "<syscall> <calls>"
# lines, plus "total <calls>", in $tmp/LIB.CYCLES.
count() {
  echo "+ strace -f -c -o $tmp/$1.$2.raw $bench --syscalls-$1 $2"
  strace -f -c -o "$tmp/$1.$2.raw" "$bench" "--syscalls-$1" "$2" ||
    die "$bench --syscalls-$1 $2 failed under strace (is ptrace allowed here?)"
  # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall.
  awk '$1 ~ /^[0-9.]+$/ && NF >= 5 { print $NF, $4 }' "$tmp/$1.$2.raw" | LC_ALL=C sort >"$tmp/$1.$2"
  grep -q '^total ' "$tmp/$1.$2" || die "no totals in strace's output for $1 ($tmp/$1.$2.raw)"
}

# report LIB LABEL: print the per-cycle difference between N and 0 cycles.
report() {
  awk -v n="$n" -v label="$2" '
    FNR == NR { base[$1] = $2; next }
    { run[$1] = $2; order[++k] = $1 }
    END {
      for (s in base) if (!(s in run)) { run[s] = 0; order[++k] = s }
      for (i = 1; i <= k; i++) {
        s = order[i]
        d = (run[s] - base[s]) / n
        if (s != "total" && (d >= 0.005 || d <= -0.005)) detail = detail sprintf(", %s %.2f", s, d)
      }
      printf "%-10s %6.2f system calls per cycle%s\n", label ":", (run["total"] - base["total"]) / n,
             detail == "" ? "" : " (" substr(detail, 3) ")"
    }' "$tmp/$1.0" "$tmp/$1.$n"
}

for lib in secmem sodium; do
  count "$lib" 0
  count "$lib" "$n"
done
echo
echo "32-byte new + destroy, $n cycles, minus a 0-cycle baseline:"
report secmem "secmem"
report sodium "libsodium"
