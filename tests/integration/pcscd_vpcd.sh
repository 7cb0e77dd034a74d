#!/usr/bin/env bash
# Integration: the emulated card inside a real pcscd through vsmartcard's vpcd
# driver, driven through PC/SC by `trustchain gp` at every security level and
# by OpenSC's opensc-tool.
#
# The private pcscd comes from tests/integration/pcscd.sh. Every step has a
# timeout; the trap stops everything. A missing component fails the test
# (install-deps installs them).
set -u
: "${TC:?TC must point at the trustchain program}"
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
# A missing component is a failure: scripts/install-deps installs them all.
skip() { echo "FAIL: $1" >&2; exit 1; }

source "$(dirname "${BASH_SOURCE[0]}")/pcscd.sh"
command -v opensc-tool >/dev/null || skip "opensc-tool missing"

work=$(mktemp -d)
serve_pid=""
cleanup() {
  stop_pid "$serve_pid"
  stop_pid "$pcscd_pid"
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pcscd_start "trustchain test $$"

# The first client starts pcscd (socket activation); wait for both readers.
readers_ok=false
for _ in $(seq 50); do
  if out=$(timeout 10 "$TC" gp readers 2>&1) && [[ $out == *"$reader"* ]]; then
    readers_ok=true
    break
  fi
  sleep 0.2
done
if $readers_ok; then pass "pcscd lists the vpcd readers"
else fail "pcscd lists the vpcd readers" "$out"; cat "$work/pcscd.log"; exit 1; fi
expect_line() { [[ $2 == *"$3"* ]] && pass "$1" || fail "$1" "'$3' not in: $(printf '%s' "$2" | head -c 300)"; }
expect_line "no card in the reader before the card server starts" "$out" "$reader"
[[ $out == *"$reader (card present)"* ]] && fail "reader empty at start" "$out" || pass "reader empty at start"

# Error before insertion: a clear line, exit 1.
rc=0
err=$(timeout 20 "$TC" gp info --reader "$reader" 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] && [[ $err == *"no card in reader"* ]] && pass "no card: clear error" ||
  fail "no card: clear error" "exit $rc: $err"

card="$work/card.img"
timeout 20 "$TC" se new --state "$card" >/dev/null || { fail "se new" "cannot create a card"; exit 1; }

start_card() {
  timeout -k 5 300 "$TC" se serve --vpcd "127.0.0.1:$port" --state "$card" \
    >>"$work/serve.log" 2>&1 &
  serve_pid=$!
  local present=false
  for _ in $(seq 60); do
    if o=$(timeout 10 "$TC" gp readers 2>&1) && [[ $o == *"$reader (card present)"* ]]; then
      present=true
      break
    fi
    sleep 0.25
  done
  $present
}

if start_card; then pass "card inserted through vpcd"
else fail "card inserted through vpcd" "$(cat "$work/serve.log")"; exit 1; fi

# Every security level, through PC/SC.
for mode in clr mac enc rmac renc; do
  rc=0
  out=$(timeout 30 "$TC" gp apdu 80CA00C100 80CA006600 --reader "$reader" --mode "$mode" 2>&1) ||
    rc=$?
  if [ "$rc" -eq 0 ] && [[ $out == *"C103"*" 9000"* ]] && [[ $out == *"66"*"9000" ]]; then
    pass "gp apdu at --mode $mode"
  else
    fail "gp apdu at --mode $mode" "exit $rc: $out"
  fi
done

rc=0
out=$(timeout 30 "$TC" gp info --reader "$reader" --json 2>&1) || rc=$?
[ "$rc" -eq 0 ] && expect_line "gp info over PC/SC" "$out" '"isd_aid":"A000000151000000"' ||
  fail "gp info over PC/SC" "exit $rc: $out"
expect_line "gp info: ATR through pcscd" "$out" '"atr":"3B'
expect_line "gp info: life cycle" "$out" '"life_cycle":{"value":1,"name":"OP_READY"}'

rc=0
out=$(timeout 30 "$TC" gp list --reader "$reader" --mode rmac 2>&1) || rc=$?
[ "$rc" -eq 0 ] && expect_line "gp list over PC/SC" "$out" "ISD      A000000151000000" ||
  fail "gp list over PC/SC" "exit $rc: $out"

# A 305-byte command through pcscd: STORE DATA of a BER-TLV object (GP CS
# 2.3 §11.11, P1 90 = last block, BER-TLV), wrapped once and then sent in
# ISO 7816-4 chained segments, or as one extended-length APDU; read back.
obj="DF2082012C$(printf 'AB%.0s' $(seq 300))"
for how in chained extended; do
  flag=""
  [ "$how" = extended ] && flag=--extended
  rc=0
  out=$(timeout 30 "$TC" gp apdu "80E2900000$(printf '%04X' $((${#obj} / 2)))$obj" \
    --reader "$reader" --mode renc $flag 2>&1) || rc=$?
  [ "$rc" -eq 0 ] && [ "$out" = "9000" ] && pass "STORE DATA of 305 bytes, $how" ||
    fail "STORE DATA of 305 bytes, $how" "exit $rc: $out"
done
rc=0
out=$(timeout 30 "$TC" gp apdu 80CADF2000 --reader "$reader" --mode renc 2>&1) || rc=$?
[ "$rc" -eq 0 ] && [ "$out" = "$obj 9000" ] && pass "GET DATA reads the 305 bytes back" ||
  fail "GET DATA reads the 305 bytes back" "exit $rc: $(printf '%s' "$out" | head -c 200)"

# A unique part of the reader name is enough; an ambiguous one is refused.
rc=0
out=$(timeout 30 "$TC" gp apdu 80CA00C100 --reader "test $$ 00 00" 2>&1) || rc=$?
[ "$rc" -eq 0 ] && pass "reader by unique substring" || fail "reader by unique substring" "$out"
rc=0
err=$(timeout 30 "$TC" gp info --reader "test $$" 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 2 ] && [[ $err == *"2 readers match"* ]] && pass "ambiguous reader refused" ||
  fail "ambiguous reader refused" "exit $rc: $err"
rc=0
err=$(timeout 30 "$TC" gp info --reader "no such reader" 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] && [[ $err == *"no reader matches"* ]] && pass "unknown reader refused" ||
  fail "unknown reader refused" "exit $rc: $err"
rc=0
err=$(timeout 30 "$TC" gp info --reader "$empty_reader" 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] && [[ $err == *"no card in reader"* ]] && pass "empty slot: no card" ||
  fail "empty slot: no card" "exit $rc: $err"

# New keys through PC/SC (C-DEC + R-MAC + R-ENC), then only they open a channel.
newkey=000102030405060708090A0B0C0D0E0F
rc=0
out=$(timeout 30 "$TC" gp put-keys --reader "$reader" --mode renc --new-kvn 0x31 \
  --new-key "$newkey" --replace 0x30 2>&1) || rc=$?
[ "$rc" -eq 0 ] && expect_line "put-keys over PC/SC" "$out" "replaced by keyset 31" ||
  fail "put-keys over PC/SC" "exit $rc: $out"
rc=0
out=$(timeout 30 "$TC" gp apdu 80CA00E000 --reader "$reader" --kvn 0x31 --key "$newkey" \
  --mode enc 2>&1) || rc=$?
[ "$rc" -eq 0 ] && expect_line "the new keys open a channel" "$out" "C00401318810" ||
  fail "the new keys open a channel" "exit $rc: $out"
rc=0
err=$(timeout 30 "$TC" gp apdu 80CA00E000 --reader "$reader" 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] && pass "the replaced keys are refused" ||
  fail "the replaced keys are refused" "exit $rc: $err"

# OpenSC through the same pcscd: SELECT the ISD, read the ATR.
rc=0
out=$(timeout 30 opensc-tool -r 0 -s 00A4040000 2>&1) || rc=$?
if [ "$rc" -eq 0 ] && [[ $out == *"SW1=0x90, SW2=0x00"* ]] && [[ $out == *"A0 00 00 01 51"* ]]; then
  pass "opensc-tool -s 00A4040000"
else
  fail "opensc-tool -s 00A4040000" "exit $rc: $out"
fi
rc=0
out=$(timeout 30 opensc-tool -r 0 -a 2>&1) || rc=$?
[ "$rc" -eq 0 ] && expect_line "opensc-tool -a (ATR)" "$out" "3b:f8:13:00:00:81:31:fe" ||
  fail "opensc-tool -a (ATR)" "exit $rc: $out"

# --reader "": the only reader with a card in it.
rc=0
out=$(timeout 30 "$TC" gp apdu 80CA00C100 --reader "" --kvn 0x31 --key "$newkey" 2>&1) || rc=$?
[ "$rc" -eq 0 ] && pass "--reader \"\" picks the reader with the card" ||
  fail "--reader \"\" picks the reader with the card" "exit $rc: $out"

# Removal in the middle of a session: the link error is one clear line.
many=$(for _ in $(seq 3000); do printf '80CA00C100 '; done)
# shellcheck disable=SC2086
timeout 60 "$TC" gp apdu $many --reader "$reader" --kvn 0x31 --key "$newkey" --mode renc \
  >"$work/many.out" 2>"$work/many.err" &
many_pid=$!
for _ in $(seq 100); do [ -s "$work/many.out" ] && break; sleep 0.05; done
sleep 0.2
stop_pid "$serve_pid"
serve_pid=""
rc=0
wait "$many_pid" || rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$work/many.err")" -eq 1 ] &&
  grep -qE "transmit: .*(removed|not answering|does not respond|no card)" "$work/many.err"; then
  pass "card pulled mid-session: one clear error"
else
  fail "card pulled mid-session: one clear error" "exit $rc: $(head -c 300 "$work/many.err")"
fi
for _ in $(seq 40); do
  o=$(timeout 10 "$TC" gp readers 2>&1)
  [[ $o != *"$reader (card present)"* ]] && break
  sleep 0.25
done
if start_card; then pass "card reinserted after the pull"
else fail "card reinserted after the pull" "$(tail -5 "$work/serve.log")"; fi

# Removal: SIGTERM stops the card server cleanly; pcscd sees no card.
kill -TERM "$serve_pid"
rc=0
for _ in $(seq 50); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
wait "$serve_pid" || rc=$?
serve_pid=""
[ "$rc" -eq 0 ] && expect_line "se serve stops on SIGTERM" "$(cat "$work/serve.log")" "stopped" ||
  fail "se serve stops on SIGTERM" "exit $rc: $(cat "$work/serve.log")"
gone=false
for _ in $(seq 40); do
  o=$(timeout 10 "$TC" gp readers 2>&1)
  [[ $o != *"$reader (card present)"* ]] && { gone=true; break; }
  sleep 0.25
done
$gone && pass "card removed when the server stops" || fail "card removed" "$o"
rc=0
err=$(timeout 30 "$TC" gp info --reader "$reader" 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] && [[ $err == *"no card"* || $err == *"removed"* ]] &&
  pass "after removal: clear error" || fail "after removal: clear error" "exit $rc: $err"

# The state was committed: the image, opened in process, has the new keys.
rc=0
out=$(timeout 30 "$TC" gp apdu 80CA00E000 --se "$card" --kvn 0x31 --key "$newkey" 2>&1) || rc=$?
[ "$rc" -eq 0 ] && pass "state committed across the server's stop" ||
  fail "state committed across the server's stop" "exit $rc: $out"

# Reinsertion: a new connection to vpcd is a new card.
if start_card; then pass "card reinserted"; else fail "card reinserted" "$(cat "$work/serve.log")"; fi
rc=0
out=$(timeout 30 "$TC" gp apdu 80CA00C100 --reader "$reader" --kvn 0x31 --key "$newkey" \
  --mode renc --s16 2>&1) || rc=$?
# The card is S8 (i = 70): it refuses the 16-byte host challenge of S16.
[ "$rc" -ne 0 ] && pass "S16 refused by an S8 card" || fail "S16 refused by an S8 card" "$out"
rc=0
out=$(timeout 30 "$TC" gp apdu 80CA00C100 --reader "$reader" --kvn 0x31 --key "$newkey" \
  --mode renc 2>&1) || rc=$?
[ "$rc" -eq 0 ] && pass "after reinsertion" || fail "after reinsertion" "exit $rc: $out"

echo "$(basename "$0" .sh): $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
