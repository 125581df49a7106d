#!/bin/sh
# check_exports.sh - owns the export check of libsecmem's shared library:
# every dynamic symbol the .so defines starts with "secmem_", and every
# function (or object) the public header declares SECMEM_API is exported.
#
# Usage: check_exports.sh <path to libsecmem.so> <path to include/secmem.h>
# Exit 0 when both hold; 1 (listing the offenders) when either fails; 2 on a
# usage or tool error.
set -eu

if [ "$#" -ne 2 ]; then
  echo "usage: $0 <libsecmem.so> <secmem.h>" >&2
  exit 2
fi
lib=$1
header=$2
[ -r "$lib" ] || { echo "check_exports: cannot read library '$lib'" >&2; exit 2; }
[ -r "$header" ] || { echo "check_exports: cannot read header '$header'" >&2; exit 2; }
command -v nm >/dev/null 2>&1 || { echo "check_exports: nm not found (binutils)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/check_exports.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 2' HUP INT TERM

# ---- what the library exports ---------------------------------------------
# "nm -D --defined-only" prints "<addr> <type> <name>[@[@]<version>]". Type A
# entries are version nodes, not code or data; every other defined type
# (T text, D/B/R/G/S data, W/V weak, i ifunc, u unique) is an export.
if ! nm -D --defined-only "$lib" >"$work/nm.out" 2>"$work/nm.err"; then
  echo "check_exports: nm -D failed on $lib:" >&2
  cat "$work/nm.err" >&2
  exit 2
fi
awk 'NF >= 3 && $2 != "A" { name = $3; sub(/@.*/, "", name); print name }' "$work/nm.out" |
  LC_ALL=C sort -u >"$work/exported"

# ---- what the header declares SECMEM_API -----------------------------------
# Strip comments and preprocessor lines (with their continuations), cut the
# rest into declarations at ; { and }, keep those carrying the SECMEM_API
# word and take the declared name: the first identifier followed by "(" that
# is not a keyword or attribute (so "void (*f(int))(void)" yields f), or, for
# an object, the last identifier before any "=" or "[".
awk '
  BEGIN { in_comment = 0; continued = 0 }
  {
    line = $0
    if (continued) { continued = (line ~ /\\$/); next }
    out = ""
    while (length(line) > 0) {
      if (in_comment) {
        end = index(line, "*/")
        if (end == 0) { line = ""; break }
        line = substr(line, end + 2); in_comment = 0; out = out " "
      } else {
        start = index(line, "/*"); slash = index(line, "//")
        if (slash > 0 && (start == 0 || slash < start)) { out = out substr(line, 1, slash - 1); line = ""; break }
        if (start == 0) { out = out line; line = ""; break }
        out = out substr(line, 1, start - 1) " "; line = substr(line, start + 2); in_comment = 1
      }
    }
    if (out ~ /^[ \t]*#/) { continued = (out ~ /\\$/); next }
    printf "%s ", out
  }
' "$header" | tr ';{}' '\n' | awk '
  BEGIN {
    split("void char short int long float double signed unsigned const volatile struct union " \
          "enum extern static inline restrict _Bool _Noreturn __attribute__ __declspec " \
          "__restrict __inline__ __extension__ sizeof", kw, " ")
    for (i in kw) skip[kw[i]] = 1
  }
  {
    s = " " $0 " "
    pos = match(s, /[^A-Za-z0-9_]SECMEM_API[^A-Za-z0-9_]/)
    if (pos == 0) next
    s = substr(s, pos + RLENGTH - 1)
    rest = s; name = ""
    while (match(rest, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
      id = substr(rest, RSTART, RLENGTH); sub(/[ \t]*\($/, "", id)
      rest = substr(rest, RSTART + RLENGTH)
      if (!(id in skip) && id !~ /^SECMEM_/) { name = id; break }
    }
    if (name == "") {
      obj = s; sub(/[=\[].*/, "", obj)
      n = split(obj, words, /[^A-Za-z0-9_]+/)
      for (i = n; i >= 1; i--) if (words[i] != "") { name = words[i]; break }
    }
    if (name != "") print name
  }
' | LC_ALL=C sort -u >"$work/declared"

n_exported=$(wc -l <"$work/exported" | tr -d ' ')
n_declared=$(wc -l <"$work/declared" | tr -d ' ')
echo "check_exports: $lib exports $n_exported symbols; $header declares $n_declared SECMEM_API names"

if [ "$n_declared" -eq 0 ]; then
  echo "check_exports: FAIL: found no SECMEM_API declaration in $header (parser or header broken)" >&2
  exit 1
fi

status=0

grep -v '^secmem_' "$work/exported" >"$work/foreign" || true
if [ -s "$work/foreign" ]; then
  echo "check_exports: FAIL: exported symbols outside the secmem_ namespace" \
       "(give them static, hidden visibility or a secmem_i_ name):" >&2
  sed 's/^/  /' "$work/foreign" >&2
  status=1
fi

LC_ALL=C comm -23 "$work/declared" "$work/exported" >"$work/missing"
if [ -s "$work/missing" ]; then
  echo "check_exports: FAIL: declared SECMEM_API in $header but not exported by $lib:" >&2
  sed 's/^/  /' "$work/missing" >&2
  status=1
fi

# Exported secmem_ symbols the header does not declare are not an error (the
# rule is the namespace), but they are worth seeing.
LC_ALL=C comm -13 "$work/declared" "$work/exported" | grep '^secmem_' >"$work/undeclared" || true
if [ -s "$work/undeclared" ]; then
  echo "check_exports: note: exported but not declared SECMEM_API in the header:"
  sed 's/^/  /' "$work/undeclared"
fi

if [ "$status" -eq 0 ]; then
  echo "check_exports: OK"
fi
exit "$status"
