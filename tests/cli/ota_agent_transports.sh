# trustchain ota agent over its card links other than an image file, each
# started and stopped by this test on free loopback ports: --tcp to a card
# served by `trustchain se serve --tcp`, and --reader through a private
# pcscd with vsmartcard's vpcd driver (tests/integration/pcscd.sh) and the
# card put in by `trustchain se serve --vpcd`. Over each link a key rotation
# and a store-data queued with `device queue` are applied end to end by
# `ota serve --master` (the rotated keyset then carries the next operation),
# then the refusals, each with its exit status and one line on stderr: a
# closed port, a malformed --tcp, a card that does not answer, a reader that
# is not there, a reader without a card, an ambiguous reader name, pcscd
# gone. A missing pcscd or vpcd fails the test (install-deps installs them).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../integration/pcscd.sh"
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

work=$scratch
# Every daemon this test starts, stopped on the way out.
daemons=()
cleanup() {
  for p in "${daemons[@]}"; do stop_pid "$p"; done
  wait 2>/dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
skip() { fail "PC/SC set-up" "$1"; finish; exit 1; }

ws=$scratch/ws
cards=$scratch/cards
B=AGENT-TR1
pin="$ws/secrets/user.pin"
expect_ok "init" "$TC" init --workspace "$ws"
expect_ok "root ceremony" "$TC" pki root-ceremony --workspace "$ws" --cn "Agent Link Root" \
  --org "Agent Link Test" --root-pin-file "$ws/secrets/root.pin" --so-pin-file "$ws/secrets/so.pin"
expect_ok "batch CA" "$TC" pki batch-ca --workspace "$ws" --batch $B --eid-prefix 89049032 \
  --manufacturer "Agent Link Test" --pin-file "$pin" --root-pin-file "$ws/secrets/root.pin"
hex() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
printf 'ENC = %s\nMAC = %s\nDEK = %s\n' "$(hex)" "$(hex)" "$(hex)" >"$scratch/vendor.keys"
expect_ok "import transport keys" "$TC" hsm import-transport --workspace "$ws" --batch $B \
  --kvn 0x30 --key-file "$scratch/vendor.keys" --pin-file "$pin"
expect_ok "line provisions 2 cards" "$TC" line run --workspace "$ws" --batch $B --count 2 \
  --emulate "$cards" --vendor-keys "$scratch/vendor.keys" --pin-file "$pin"
expect_ok "the rotation's master" "$TC" hsm generate --workspace "$ws" --master fleet-2 \
  --pin-file "$pin"
ceid() { "$TC" se show --state "$1" --json | sed -n 's/.*"eid":"\([0-9]*\)".*/\1/p'; }
card0=$cards/card-000000.img
card1=$cards/card-000001.img
e0=$(ceid "$card0")
e1=$(ceid "$card1")

# The first line of FILE's form "listening on ..." holding the port (sed
# expression), waited for.
port_of() {
  local file=$1 expr=$2 p=
  for _ in $(seq 100); do
    p=$(sed -n "$expr" "$file" 2>/dev/null)
    [ -n "$p" ] && break
    sleep 0.1
  done
  printf '%s' "$p"
}

"$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --master line --kvn 1 --pin-file "$pin" \
  --timeout-ms 5000 --stop-after 300 >"$scratch/serve.out" 2>"$scratch/serve.err" &
daemons+=($!)
port=$(port_of "$scratch/serve.out" 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p')
[ -n "$port" ] && pass "server listening" || fail "server listening" "$(cat "$scratch/serve.err")"
url=https://127.0.0.1:$port

# An operation queued while the server runs (it reopens the registry).
queue() { "$TC" device queue "$@" --workspace "$ws" >/dev/null && sleep 1.5; }
# After `ota agent --verbose`: N scripts in the summary, N lines on stderr.
scripts_relayed() {
  local n lines
  n=$(printf '%s' "$out" | sed -n 's/^dialog complete: \([0-9]*\) script.*/\1/p')
  lines=$(grep -c ": script [0-9]*: .* response APDU(s), last SW 9000$" "$scratch/err")
  [ -n "$n" ] && [ "$n" -gt 0 ] && [ "$n" = "$lines" ] && pass "$1 ($n scripts)" ||
    fail "$1" "dialog says '$n', stderr has $lines: $(cat "$scratch/err")"
}

# ------------------------------------------------------------------ --tcp
"$TC" se serve --tcp 127.0.0.1:0 --state "$card0" >"$scratch/card0.out" 2>&1 &
cpid=$!
daemons+=($cpid)
cport=$(port_of "$scratch/card0.out" 's/^listening on 127\.0\.0\.1 port \([0-9]*\)$/\1/p')
[ -n "$cport" ] && pass "tcp: card served" || fail "tcp: card served" "$(cat "$scratch/card0.out")"

expect_ok "tcp: agent completes the dialog" "$TC" ota agent --server "$url" \
  --tcp "127.0.0.1:$cport" --workspace "$ws"
expect_contains "tcp: names the card and its link" "$out" \
  "card: EID $e0 (TCP card 127.0.0.1:$cport)"
printf '\x50\x05tcp-1' >"$scratch/cfg1.bin"
queue "$e0" rotate-keys --master fleet-2 --kvn 0x31
queue "$e0" store-data --file "$scratch/cfg1.bin"
expect_ok "tcp: rotation and store-data relayed" "$TC" ota agent --server "$url" \
  --tcp "127.0.0.1:$cport" --workspace "$ws" --verbose
scripts_relayed "tcp: one stderr line per script"
expect_ok "tcp: operations listed" "$TC" device ops "$e0" --all --workspace "$ws" --json
expect_contains "tcp: rotation done" "$out" '"op":"rotate-keys","status":"done"'
expect_contains "tcp: store-data done" "$out" '"op":"store-data","status":"done"'
expect_contains "tcp: keyset now fleet-2 KVN 31" "$out" '"keyset":{"kvn":49,"master":"fleet-2"}'
# The next operation is authenticated with the rotated keyset.
printf '\x50\x05tcp-2\x5f\x20\x02ok' >"$scratch/cfg2.bin"
queue "$e0" store-data --file "$scratch/cfg2.bin"
expect_ok "tcp: store-data under the new keyset" "$TC" ota agent --server "$url" \
  --tcp "127.0.0.1:$cport" --workspace "$ws" --json
expect_contains "tcp: json outcome" "$out" '"outcome":"done"'
expect_ok "tcp: operations listed again" "$TC" device ops "$e0" --all --workspace "$ws" --json
expect_contains "tcp: nothing pending" "$out" '"pending":0'

# A card that takes the connection and never answers (stopped).
kill -STOP "$cpid"
expect_fail 3 "tcp: card not answering" "$TC" ota agent --server "$url" \
  --tcp "127.0.0.1:$cport" --workspace "$ws" --timeout-ms 1000
expect_contains "tcp: says no reply" "$err" "no reply in time"
expect_contains "tcp: names the link once" "$err" \
  "card (TCP card 127.0.0.1:$cport): no reply in time"
kill -CONT "$cpid"
stop_pid "$cpid"
wait "$cpid" 2>/dev/null
expect_ok "tcp: the image holds the rotated keyset" "$TC" se show --state "$card0"
expect_contains "tcp: KVN 31 on the card" "$out" "KVN 31"
expect_contains "tcp: the last data stored (12 bytes)" "$out" "profile data      12 bytes"

# The card server is gone: its port is closed.
expect_fail 3 "tcp: closed port" "$TC" ota agent --server "$url" --tcp "127.0.0.1:$cport" \
  --workspace "$ws"
expect_contains "tcp: says refused" "$err" "Connection refused"
expect_fail 2 "tcp: not HOST:PORT" "$TC" ota agent --server "$url" --tcp nocolon \
  --workspace "$ws"
expect_contains "tcp: says the form" "$err" "ota agent: --tcp: 'nocolon': expected HOST:PORT"
expect_fail 2 "tcp: port out of range" "$TC" ota agent --server "$url" --tcp 127.0.0.1:65536 \
  --workspace "$ws"
expect_contains "tcp: says the range" "$err" "port must be 1..65535"

# ------------------------------------------------------------------ --reader
pcscd_start "trustchain agent $$"
daemons+=("$pcscd_pid")
pass "pcscd started on its own socket"
"$TC" se serve --vpcd "127.0.0.1:$port" --state "$card1" >"$scratch/card1.out" 2>&1 &
vpid=$!
daemons+=($vpid)
present=
for _ in $(seq 80); do
  o=$("$TC" gp readers 2>&1) && [[ $o == *"$reader (card present)"* ]] && { present=1; break; }
  sleep 0.25
done
[ -n "$present" ] && pass "pcsc: card in the reader" || fail "pcsc: card in the reader" "$o"

expect_ok "pcsc: agent completes the dialog" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws"
expect_contains "pcsc: names the card and its reader" "$out" "card: EID $e1 ($reader)"
printf '\x50\x06pcsc-1' >"$scratch/cfg3.bin"
queue "$e1" rotate-keys --master fleet-2 --kvn 0x32
queue "$e1" store-data --file "$scratch/cfg3.bin"
expect_ok "pcsc: rotation and store-data relayed" "$TC" ota agent --server "$url" \
  --reader "$reader" --workspace "$ws" --verbose
scripts_relayed "pcsc: one stderr line per script"
expect_ok "pcsc: operations listed" "$TC" device ops "$e1" --all --workspace "$ws" --json
expect_contains "pcsc: rotation done" "$out" '"op":"rotate-keys","status":"done"'
expect_contains "pcsc: store-data done" "$out" '"op":"store-data","status":"done"'
expect_contains "pcsc: keyset now fleet-2 KVN 32" "$out" '"keyset":{"kvn":50,"master":"fleet-2"}'
queue "$e1" lock
expect_ok "pcsc: lock under the new keyset" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws" --card-cert "$scratch/card1.pem"
expect_ok "pcsc: operations listed again" "$TC" device ops "$e1" --all --workspace "$ws" --json
expect_contains "pcsc: nothing pending" "$out" '"pending":0'
# CARD_LOCKED through the reader: the applet is out of reach, the ISD signs.
expect_fail 3 "pcsc: locked card without its certificate copy" "$TC" ota agent --server "$url" \
  --reader "$reader" --workspace "$ws"
expect_contains "pcsc: says the applet is out of reach" "$err" "not selectable"
expect_ok "pcsc: locked card connects with its copy" "$TC" ota agent --server "$url" \
  --reader "$reader" --workspace "$ws" --card-cert "$scratch/card1.pem"

expect_fail 3 "pcsc: reader not there" "$TC" ota agent --server "$url" --reader "no such reader" \
  --workspace "$ws"
expect_contains "pcsc: says no reader matches" "$err" "no reader matches 'no such reader'"
expect_fail 3 "pcsc: reader without a card" "$TC" ota agent --server "$url" \
  --reader "$empty_reader" --workspace "$ws"
expect_contains "pcsc: says no card" "$err" "no card in reader"
expect_fail 2 "pcsc: ambiguous reader name" "$TC" ota agent --server "$url" \
  --reader "trustchain agent $$" --workspace "$ws"
expect_contains "pcsc: says to give more" "$err" "give more of the name"

# The card taken out, then pcscd gone.
stop_pid "$vpid"
wait "$vpid" 2>/dev/null
gone=
for _ in $(seq 80); do
  o=$("$TC" gp readers 2>&1) && [[ $o == *"$reader"* ]] && [[ $o != *"(card present)"* ]] &&
    { gone=1; break; }
  sleep 0.25
done
[ -n "$gone" ] && pass "pcsc: card taken out" || fail "pcsc: card taken out" "$o"
expect_fail 3 "pcsc: card taken out refused" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws"
expect_contains "pcsc: says no card (taken out)" "$err" "no card in reader"
expect_ok "the locked card's image" "$TC" se show --state "$card1"
expect_contains "pcsc: KVN 32 on the card" "$out" "KVN 32"
expect_contains "pcsc: the card is locked" "$out" "CARD_LOCKED"
stop_pid "$pcscd_pid"
wait "$pcscd_pid" 2>/dev/null
expect_fail 3 "pcsc: no pcscd" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws"
expect_contains "pcsc: says PC/SC" "$err" "PC/SC"
finish
