#!/usr/bin/env bash
# The line over PC/SC: emulated cards plugged into a private pcscd through
# vsmartcard's vpcd (`trustchain se serve --vpcd`, the pcscd of
# tests/integration/pcscd.sh) are provisioned by `trustchain line run
# --reader`: one card, a second run that finds it provisioned, then a batch
# of two cards swapped in the reader by the test as an operator would (the
# line waits for the first to be taken out and the next put in), and a
# reader left without a next card (the line stops waiting after
# --card-wait). A missing component fails the test (install-deps installs
# them).
set -u
: "${TC:?TC must point at the trustchain program}"
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
# A missing component is a failure: scripts/install-deps installs them all.
skip() { echo "FAIL: $1" >&2; exit 1; }
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

source "$(dirname "${BASH_SOURCE[0]}")/../integration/pcscd.sh"

work=$(mktemp -d)
serve_pid=""
line_pid=""
cleanup() {
  stop_pid "$line_pid"
  stop_pid "$serve_pid"
  stop_pid "$pcscd_pid"
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pcscd_start "trustchain line $$"

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

# Cards as the vendor ships them: EIDs 89049032 0000 ... 0042, 0043, 0044
# (SGP.29 check digits: the 32 digits mod 97 = 1).
EIDS=(89049032000000000000000000004237 89049032000000000000000000004334
  89049032000000000000000000004431)
for i in 0 1 2; do
  "$TC" se new --state "$work/card$i.img" --eid "${EIDS[$i]}" --kvn 0x30 \
    --key-enc "$enc" --key-mac "$mac" --key-dek "$dek" >/dev/null ||
    { fail "se new" "cannot create card $i"; exit 1; }
done
card=$work/card0.img

# Put card i in the reader (serve its image) and wait until pcscd sees it.
insert() {
  timeout -k 5 300 "$TC" se serve --vpcd "127.0.0.1:$port" --state "$work/card$1.img" \
    >>"$work/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 80); do
    if o=$(timeout 10 "$TC" gp readers 2>&1) && [[ $o == *"$reader (card present)"* ]]; then
      return 0
    fi
    sleep 0.25
  done
  return 1
}
# Take the card out (the server stops; vpcd reports the card removed) and
# wait until pcscd has seen it go, so that the next insertion is not
# mistaken for the card still there.
remove() {
  stop_pid "$serve_pid"
  serve_pid=""
  for _ in $(seq 80); do
    if o=$(timeout 10 "$TC" gp readers 2>&1) && [[ $o == *"$reader"* ]] &&
      [[ $o != *"$reader (card present)"* ]]; then
      return 0
    fi
    sleep 0.25
  done
  fail "card removed" "pcscd still reports a card: $o"
}

insert 0 && pass "card present in the vpcd reader" || { fail "card present" "$o"; exit 1; }

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
remove
out=$("$TC" se show --state "$card" 2>&1)
[[ $out == *"SECURED"* ]] && pass "card SECURED" || fail "card SECURED" "$(printf '%s' "$out" | head -c 300)"

# Card swaps: a batch of two in one reader. The line takes card 1, then
# waits for it to be taken out and card 2 put in.
provisioned() {
  local o
  o=$(timeout 30 "$TC" device show "$1" --workspace "$ws" --pin-file "$pin" 2>/dev/null) &&
    [[ $o == *"provisioned"* ]]
}
insert 1 || { fail "card 1 present" "$o"; exit 1; }
timeout 200 "$TC" line run --workspace "$ws" --batch $B --count 2 --reader "$reader" \
  --pin-file "$pin" --card-wait 120 --json >"$work/swap.json" 2>"$work/swap.err" &
line_pid=$!
done1=false
for _ in $(seq 240); do
  if provisioned "${EIDS[1]}"; then done1=true; break; fi
  sleep 0.25
done
$done1 && pass "swap: card 1 provisioned" || fail "swap: card 1 provisioned" "$(cat "$work/swap.err")"
# The line must now be waiting, not working on card 1 again.
sleep 1
kill -0 "$line_pid" 2>/dev/null && pass "swap: the line waits for the next card" ||
  fail "swap: the line waits for the next card" "it ended: $(cat "$work/swap.json")"
remove
insert 2 || fail "card 2 present" "$o"
rc=0
wait "$line_pid" || rc=$?
line_pid=""
out=$(cat "$work/swap.json")
[ "$rc" -eq 0 ] && [[ $out == *'"provisioned":2'* ]] && [[ $out == *'"no_card":0'* ]] &&
  pass "swap: both cards provisioned in one run" ||
  fail "swap: both cards provisioned in one run" "exit $rc: $out $(cat "$work/swap.err")"
provisioned "${EIDS[2]}" && pass "swap: card 2 provisioned" || fail "swap: card 2 provisioned" "-"

# No next card: the reader stops waiting after --card-wait, the run ends
# with the card counted as missing (exit 1), the one present skipped.
start=$(date +%s)
rc=0
out=$(timeout 120 "$TC" line run --workspace "$ws" --batch $B --count 2 --reader "$reader" \
  --pin-file "$pin" --card-wait 2 --json 2>&1) || rc=$?
took=$(($(date +%s) - start))
[ "$rc" -eq 1 ] && [[ $out == *'"already_provisioned":1'* ]] && [[ $out == *'"no_card":1'* ]] &&
  [ "$took" -lt 60 ] && pass "no next card: the wait ends (${took} s)" ||
  fail "no next card: the wait ends" "exit $rc after ${took} s: $out"
rc=0
out=$(timeout 20 "$TC" line run --workspace "$ws" --batch $B --count 1 --reader "$reader" \
  --card-wait 0 2>&1) || rc=$?
[ "$rc" -eq 2 ] && pass "--card-wait 0 refused" || fail "--card-wait 0 refused" "exit $rc: $out"
rc=0
out=$(timeout 20 "$TC" line run --workspace "$ws" --batch $B --count 1 --card-wait 5 2>&1) || rc=$?
[ "$rc" -eq 2 ] && pass "--card-wait without --reader refused" ||
  fail "--card-wait without --reader refused" "exit $rc: $out"
remove
echo "line_pcsc: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
