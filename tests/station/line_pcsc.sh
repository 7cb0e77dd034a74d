#!/usr/bin/env bash
# The line over PC/SC: an emulated card plugged into a private pcscd through
# vsmartcard's vpcd (`trustchain se serve --vpcd`) is provisioned by
# `trustchain line run --reader`, then a second run finds it provisioned.
# The pcscd set-up is the one of tests/integration/pcscd_vpcd.sh: its own
# reader.conf on a free port pair, a private client socket, a private
# /run/pcscd. A missing component fails the test (install-deps installs them).
set -u
: "${TC:?TC must point at the trustchain program}"
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
# A missing component is a failure: scripts/install-deps installs them all.
skip() { echo "FAIL: $1" >&2; exit 1; }
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

VPCD_LIB=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
PCSCD=$(command -v pcscd || echo /usr/sbin/pcscd)
[ -x "$PCSCD" ] || skip "pcscd not installed"
[ -e "$VPCD_LIB" ] || skip "vsmartcard-vpcd not installed ($VPCD_LIB)"
command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate missing"

work=$(mktemp -d)
pcscd_pid=""
serve_pid=""
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
}
cleanup() {
  stop_pid "$serve_pid"
  stop_pid "$pcscd_pid"
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

port_free() { ! ss -Htln 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$1\$"; }
port=""
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if port_free "$p" && port_free $((p + 1)); then port=$p; break; fi
done
[ -n "$port" ] || skip "no free port pair"
reader_base="trustchain line $$"
cat >"$work/reader.conf" <<EOC
FRIENDLYNAME "$reader_base"
DEVICENAME   /dev/null:$(printf '0x%X' "$port")
LIBPATH      $VPCD_LIB
CHANNELID    $(printf '0x%X' "$port")
EOC
export PCSCLITE_CSOCK_NAME="$work/pcscd.comm"
reader="$reader_base 00 00"
if unshare -m --propagation private true 2>/dev/null; then
  mkdir -p /run/pcscd 2>/dev/null
  timeout -k 5 300 unshare -m --propagation private sh -c '
    mount -t tmpfs -o size=1m tmpfs /run/pcscd || exit 1
    exec systemd-socket-activate -l "$0" "$1" --foreground -c "$2"
  ' "$PCSCLITE_CSOCK_NAME" "$PCSCD" "$work/reader.conf" >"$work/pcscd.log" 2>&1 &
  pcscd_pid=$!
else
  skip "no private mount namespace for pcscd"
fi
for _ in $(seq 50); do [ -S "$PCSCLITE_CSOCK_NAME" ] && break; sleep 0.1; done
[ -S "$PCSCLITE_CSOCK_NAME" ] || skip "pcscd socket did not appear"

# The line's workspace, PKI and the vendor's transport keys.
ws=$work/ws
B=PCSC-1
"$TC" init --workspace "$ws" >/dev/null || { fail "init" "failed"; exit 1; }
pin=$ws/secrets/user.pin
"$TC" pki root-ceremony --workspace "$ws" --cn "PC/SC Root" --org "PCSC Test" \
  --root-pin-file "$ws/secrets/root.pin" --so-pin-file "$ws/secrets/so.pin" >/dev/null &&
  "$TC" pki batch-ca --workspace "$ws" --batch $B --eid-prefix 89049032 --manufacturer "PCSC Test" \
    --pin-file "$pin" --root-pin-file "$ws/secrets/root.pin" >/dev/null ||
  { fail "PKI set-up" "failed"; exit 1; }
hex() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
enc=$(hex) mac=$(hex) dek=$(hex)
printf 'ENC = %s\nMAC = %s\nDEK = %s\n' "$enc" "$mac" "$dek" >"$work/vendor.keys"
"$TC" hsm import-transport --workspace "$ws" --batch $B --kvn 0x30 --key-file "$work/vendor.keys" \
  --pin-file "$pin" >/dev/null || { fail "import transport" "failed"; exit 1; }

# The card as the vendor ships it: EID 89049032 0000 ... 0042 (check digits
# 37: 890490320000000000000000000042 37 mod 97 = 1).
card=$work/card.img
"$TC" se new --state "$card" --eid 89049032000000000000000000004237 --kvn 0x30 \
  --key-enc "$enc" --key-mac "$mac" --key-dek "$dek" >/dev/null ||
  { fail "se new" "cannot create the card"; exit 1; }
timeout -k 5 300 "$TC" se serve --vpcd "127.0.0.1:$port" --state "$card" >"$work/serve.log" 2>&1 &
serve_pid=$!
present=false
for _ in $(seq 80); do
  if o=$(timeout 10 "$TC" gp readers 2>&1) && [[ $o == *"$reader (card present)"* ]]; then
    present=true
    break
  fi
  sleep 0.25
done
$present && pass "card present in the vpcd reader" || { fail "card present" "$o"; exit 1; }

rc=0
out=$(timeout 120 "$TC" line run --workspace "$ws" --batch $B --count 1 --reader "$reader" \
  --pin-file "$pin" --json 2>&1) || rc=$?
[ "$rc" -eq 0 ] && [[ $out == *'"provisioned":1'* ]] && pass "line run --reader provisions the card" ||
  fail "line run --reader provisions the card" "exit $rc: $out"
rc=0
out=$(timeout 120 "$TC" line run --workspace "$ws" --batch $B --count 1 --reader "$reader" \
  --pin-file "$pin" --json 2>&1) || rc=$?
[ "$rc" -eq 0 ] && [[ $out == *'"already_provisioned":1'* ]] && pass "second run: already provisioned" ||
  fail "second run: already provisioned" "exit $rc: $out"
rc=0
out=$(timeout 30 "$TC" device show 89049032000000000000000000004237 --workspace "$ws" \
  --pin-file "$pin" 2>&1) || rc=$?
[ "$rc" -eq 0 ] && [[ $out == *"provisioned"* ]] && pass "registry: provisioned" ||
  fail "registry: provisioned" "exit $rc: $(printf '%s' "$out" | head -c 300)"
stop_pid "$serve_pid"
serve_pid=""
out=$("$TC" se show --state "$card" 2>&1)
[[ $out == *"SECURED"* ]] && pass "card SECURED" || fail "card SECURED" "$(printf '%s' "$out" | head -c 300)"
echo "line_pcsc: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
