# trustchain line run: a batch end to end on emulated cards and SoftHSM2,
# faults that reject a card while the batch goes on, a run killed with
# SIGKILL and resumed, and the audit log verified afterwards.
. "$(dirname "$0")/lib.sh"
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

ws=$scratch/ws
cards=$scratch/cards
B=LINE-T1
pin="$ws/secrets/user.pin"
# The vendor's transport keys (random), imported once.
keys=$scratch/vendor.keys
line_workspace "$ws" $B "$keys" "Line Test"

expect_ok "line run provisions 6 cards" "$TC" line run --workspace "$ws" --batch $B --count 6 \
  --emulate "$cards" --vendor-keys "$keys" --jobs 3 --pin-file "$pin"
expect_contains "summary: provisioned" "$out" "provisioned          6"
expect_contains "summary: rejected" "$out" "rejected             0"
expect_contains "summary: rate" "$out" "cards/s"
expect_ok "card 0 is SECURED" "$TC" se show --state "$cards/card-000000.img"
expect_contains "card 0 life cycle" "$out" "SECURED"

expect_ok "second run does nothing twice" "$TC" line run --workspace "$ws" --batch $B --count 6 \
  --emulate "$cards" --pin-file "$pin" --json
expect_contains "json: already provisioned" "$out" '"already_provisioned":6'
expect_contains "json: none provisioned again" "$out" '"provisioned":0'

# Card 6 comes from another vendor lot (other transport keys), card 7 is fresh.
other=$scratch/other.keys
vendor_keys "$other"
mkdir -p "$scratch/lot2"
expect_ok "other lot card" "$TC" line run --workspace "$ws" --batch $B --count 7 \
  --emulate "$scratch/lot2" --vendor-keys "$other" --pin-file "$pin" --json
expect_contains "wrong transport keys: rejected" "$out" '"transport-keys":1'
expect_contains "json lists the rejection step" "$out" '"step":"transport"'
cp "$scratch/lot2/card-000006.img" "$cards/card-000006.img"
expect_ok "batch goes on past a rejected card" "$TC" line run --workspace "$ws" --batch $B \
  --count 8 --emulate "$cards" --vendor-keys "$keys" --pin-file "$pin" --json
expect_contains "card 7 provisioned" "$out" '"provisioned":1'
expect_contains "card 6 (same EID as the rejected one) not retried" "$out" '"already_rejected":1'

# Wrong PIN: the HSM does not open, new cards are rejected at step 2.
printf 'not-the-pin\n' >"$scratch/bad.pin"
expect_ok "wrong PIN: batch still runs" "$TC" line run --workspace "$ws" --batch $B --count 9 \
  --emulate "$cards" --vendor-keys "$keys" --pin-file "$scratch/bad.pin" --json
expect_contains "wrong PIN: rejected for the HSM" "$out" '"hsm":1'
expect_contains "wrong PIN: the reason names the PIN" "$out" "PIN"

# Killed (fault-injection hook) after card 9's certificate reached the card but
# before it was recorded as stored: the resumed run revokes that certificate
# (superseded), issues a new one, and republishes the batch CRL.
rc=0
TRUSTCHAIN_FAULT_KILL_AT=stored-card "$TC" line run --workspace "$ws" --batch $B --count 10 \
  --emulate "$cards" --vendor-keys "$keys" --pin-file "$pin" --quiet >/dev/null 2>&1 || rc=$?
if [ "$rc" -eq 137 ]; then pass "killed at stored-card"; else fail "killed at stored-card" "exit $rc"; fi
crl_before=$(cat "$ws/pki/batches/$B/crl.number")
expect_ok "resume after the kill" "$TC" line run --workspace "$ws" --batch $B --count 10 \
  --emulate "$cards" --pin-file "$pin" --json
expect_contains "resumed card provisioned" "$out" '"provisioned":1,'
expect_contains "interrupted run's certificate revoked" "$out" '"certificates_revoked":1'
if [ "$(cat "$ws/pki/batches/$B/crl.number")" -gt "$crl_before" ]; then pass "batch CRL republished"
else fail "batch CRL republished" "number $(cat "$ws/pki/batches/$B/crl.number")"; fi
expect_contains "revoked.txt: superseded (4)" "$(cat "$ws/pki/batches/$B/revoked.txt")" " 4 89049032"
expect_ok "the new certificate verifies with the new CRL" "$TC" device cert 89049032000000000000000000000939 \
  --workspace "$ws" --pin-file "$pin" --verify
rc=0
TRUSTCHAIN_FAULT_KILL_AT=nowhere "$TC" line run --workspace "$ws" --batch $B --count 1 \
  --emulate "$cards" --pin-file "$pin" >/dev/null 2>&1 || rc=$?
if [ "$rc" -eq 2 ]; then pass "unknown kill point is a usage error"; else fail "unknown kill point" "exit $rc"; fi

# Killed mid-batch with SIGKILL, then run again: every card provisioned once.
"$TC" line run --workspace "$ws" --batch $B --count 60 --emulate "$cards" --vendor-keys "$keys" \
  --pin-file "$pin" --jobs 4 --quiet >/dev/null 2>&1 &
pid=$!
sleep 1.5
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
# The kill may land while images are still being made: the resume is given
# the vendor keys so it makes the missing ones (existing images are kept).
expect_ok "resume after SIGKILL" "$TC" line run --workspace "$ws" --batch $B --count 60 \
  --emulate "$cards" --vendor-keys "$keys" --pin-file "$pin" --jobs 4 --json
sum=$(printf '%s' "$out" | sed -n 's/.*"provisioned":\([0-9]*\),"rejected":[0-9]*,"already_provisioned":\([0-9]*\).*/\1 \2/p')
set -- $sum
if [ $(( ${1:-0} + ${2:-0} )) -eq 58 ]; then pass "all 58 good cards provisioned after resume"
else fail "all 58 good cards provisioned after resume" "$sum"; fi
expect_ok "no device provisioned twice" "$TC" device list --workspace "$ws" --batch $B --state provisioned
n=$(printf '%s\n' "$out" | grep -c 8904903)
if [ "$n" -eq 58 ]; then pass "58 provisioned devices in the registry"; else fail "58 provisioned" "$n"; fi
expect_ok "sign a checkpoint" "$TC" audit checkpoint --workspace "$ws" --pin-file "$pin"
expect_ok "audit verify after the crash" "$TC" audit verify --workspace "$ws" --pin-file "$pin"
expect_contains "audit verified" "$out" "verified"

# revoked.txt is written after the log; if it loses lines (a run killed in
# between), the next run restores them from the log and republishes the CRL.
rev="$ws/pki/batches/$B/revoked.txt"
before=$(cut -d' ' -f1 "$rev" 2>/dev/null | sort)
k=$(printf '%s' "$before" | grep -c . || true)
echo "     $k revocations in the log so far"
rm -f "$rev"
expect_ok "a run restores revoked.txt from the log" "$TC" line run --workspace "$ws" --batch $B \
  --count 1 --emulate "$cards" --pin-file "$pin"
after=$(cut -d' ' -f1 "$rev" 2>/dev/null | sort)
if [ "$before" = "$after" ]; then pass "revoked.txt restored ($k serials)"; else
  fail "revoked.txt restored" "before: $before after: $after"; fi

expect_fail 2 "--batch required" "$TC" line run --workspace "$ws" --count 1
expect_fail 2 "--count required" "$TC" line run --workspace "$ws" --batch $B
expect_fail 2 "PIN on the command line" "$TC" line run --workspace "$ws" --batch $B --count 1 --pin x
expect_fail 2 "--emulate with --reader" "$TC" line run --batch $B --count 1 --emulate d --reader r
expect_fail 2 "bad batch ID" "$TC" line run --batch "a/b" --count 1
expect_fail 2 "zero count" "$TC" line run --batch $B --count 0
expect_fail 1 "batch without a CA" "$TC" line run --workspace "$ws" --batch NOPE --count 1 --emulate "$cards"
expect_fail 1 "workspace without init" "$TC" line run --workspace "$scratch/none" --batch $B --count 1
expect_ok "line run --help" "$TC" line run --help
finish
