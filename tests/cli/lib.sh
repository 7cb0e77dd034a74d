# Shared helpers for command-line tests. $TC is the trustchain program.
# expect_ok NAME CMD...         exit 0; stdout kept in $out
# expect_fail CODE NAME CMD...  exit CODE, exactly one line on stderr, nothing
#                               on stdout; stderr kept in $err
# expect_contains NAME HAYSTACK NEEDLE
set -u
: "${TC:?TC must point at the trustchain program}"
passed=0
failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Bytes as hex and back, with coreutils only; SHA-256 of hex, as hex.
unhex() { local h; h=$(cat); printf "$(printf '%s' "$h" | sed 's/../\\x&/g')"; }
tohex() { od -An -tx1 -v | tr -d ' \n'; }
sha() { unhex | openssl dgst -sha256 -binary | tohex; }
# EID check digits (GSMA SGP.29 §10) in shell arithmetic, independently of
# the C code: the 32-digit number with check digits 00, mod 97, digit by digit.
complete() {
  local b=${1:0:30} r=0 i n
  n="${b}00"
  for ((i = 0; i < 32; i++)); do r=$(((r * 10 + ${n:i:1}) % 97)); done
  printf '%s%02d' "$b" $((98 - r))
}
# Canonical audit events (docs/audit-format.md), built byte by byte: a field
# (tag, length, hex value), the line's fields for EID $1 in batch $2, an
# event of type $1 at time $2 with fields $3.
hx() { printf '%s' "$1" | tohex; }
fld() { printf '%02x%02x%s' "$1" $((${#2} / 2)) "$2"; }
line() { printf '%s%s%s%s' "$(fld 1 "$1")" "$(fld 2 "$(hx "$2")")" "$(fld 3 "$(hx st-1)")" "$(fld 4 "$(hx op:t)")"; }
ev() { printf '01%02x%016x%s\n' "$1" "$2" "$3"; }

# A vendor key file (ENC, MAC, DEK: random AES-128 keys) at $1.
vendor_keys() {
  local r=()
  for _ in 1 2 3; do r+=("$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"); done
  printf 'ENC = %s\nMAC = %s\nDEK = %s\n' "${r[@]}" >"$1"
}
# A line's workspace $1: init, root ceremony, batch CA for batch $2 (EID
# prefix 89049032, organisation $4), vendor transport keys written to $3 and
# imported as KVN 30. Test names start with $5. PINs: $1/secrets/*.pin.
line_workspace() {
  local w=$1 b=$2 k=$3 org=$4 p=${5:-}
  expect_ok "${p}init" "$TC" init --workspace "$w"
  expect_ok "${p}root ceremony" "$TC" pki root-ceremony --workspace "$w" --cn "$org Root" \
    --org "$org" --root-pin-file "$w/secrets/root.pin" --so-pin-file "$w/secrets/so.pin"
  expect_ok "${p}batch CA" "$TC" pki batch-ca --workspace "$w" --batch "$b" --eid-prefix 89049032 \
    --manufacturer "$org" --pin-file "$w/secrets/user.pin" --root-pin-file "$w/secrets/root.pin"
  vendor_keys "$k"
  expect_ok "${p}transport keys" "$TC" hsm import-transport --workspace "$w" --batch "$b" \
    --kvn 0x30 --key-file "$k" --pin-file "$w/secrets/user.pin"
}

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

expect_ok() {
  local name=$1; shift
  if out=$("$@" 2>"$scratch/err"); then pass "$name"
  else fail "$name" "exit $? ($(head -c 300 "$scratch/err"))"; fi
}

expect_fail() {
  local code=$1 name=$2; shift 2
  local rc=0
  "$@" >"$scratch/out" 2>"$scratch/err" || rc=$?
  err=$(cat "$scratch/err")
  local lines
  lines=$(wc -l <"$scratch/err")
  if [ "$rc" -ne "$code" ]; then fail "$name" "exit $rc, expected $code ($err)"
  elif [ "$lines" -ne 1 ]; then fail "$name" "stderr has $lines lines, expected 1: $err"
  elif [ -s "$scratch/out" ]; then fail "$name" "stdout not empty: $(head -c 200 "$scratch/out")"
  else pass "$name"; fi
}

expect_contains() {
  case "$2" in
    *"$3"*) pass "$1" ;;
    *) fail "$1" "'$3' not found in: $(printf '%s' "$2" | head -c 400)" ;;
  esac
}

finish() {
  echo "$(basename "$0" .sh): $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}
