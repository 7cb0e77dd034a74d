# trustchain ota agent end to end: a workspace (init, root, batch CA,
# transport keys), four cards provisioned by `line run --emulate`, `ota serve
# --master` on a free port, and the agent on a card image completing the
# Amendment B dialog with its card-held key; the two other card links, each
# started and stopped by this test on free loopback ports: --tcp to a card
# served by `trustchain se serve --tcp`, and --reader through a private
# pcscd with vsmartcard's vpcd driver (tests/integration/pcscd.sh) and the
# card put in by `se serve --vpcd`, each carrying a key rotation and a
# store-data end to end; then the refusals, each with its exit status and
# one line on stderr: a revoked device, a revoked batch, a wrong server pin,
# no card, a card without identity, an unreachable server, bad URLs and
# arguments, a closed card port, a malformed --tcp, a card that does not
# answer, a reader that is not there, a reader without a card, an ambiguous
# reader name, pcscd gone. A missing pcscd or vpcd fails the test
# (install-deps installs them).
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
B=AGENT-T1
pin="$ws/secrets/user.pin"
keys=$scratch/vendor.keys
line_workspace "$ws" $B "$keys" "Agent Test"
expect_ok "line provisions 4 cards" "$TC" line run --workspace "$ws" --batch $B --count 4 \
  --emulate "$cards" --vendor-keys "$keys" --pin-file "$pin"
card0=$cards/card-000000.img
card1=$cards/card-000001.img

# --- arguments (nothing is contacted)
expect_fail 2 "needs --server" "$TC" ota agent --se "$card0" --workspace "$ws"
expect_fail 2 "needs a card" "$TC" ota agent --server https://127.0.0.1:1 --workspace "$ws"
expect_fail 2 "one card only" "$TC" ota agent --server https://127.0.0.1:1 --se "$card0" \
  --tcp 127.0.0.1:1 --workspace "$ws"
expect_fail 2 "unknown option" "$TC" ota agent --server https://127.0.0.1:1 --se "$card0" --bogus 1
expect_fail 2 "bad --max-steps" "$TC" ota agent --server https://127.0.0.1:1 --se "$card0" \
  --max-steps 0
expect_fail 2 "plain http refused" "$TC" ota agent --server http://127.0.0.1:1 --se "$card0" \
  --workspace "$ws"
expect_contains "says why" "$err" "https"
expect_fail 2 "--card-cert that is no certificate" "$TC" ota agent --server https://127.0.0.1:1 \
  --se "$card0" --card-cert "$keys"
expect_fail 2 "URL with a path refused" "$TC" ota agent --server https://127.0.0.1:1/x \
  --se "$card0" --workspace "$ws"

# --- the server (device keyset KVN 01 as the line injects it)
"$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --master line --kvn 1 --pin-file "$pin" \
  --timeout-ms 3000 --stop-after 300 >"$scratch/serve.out" 2>"$scratch/serve.err" &
spid=$!
daemons+=($spid)
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$scratch/serve.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] && pass "server listening" || fail "server listening" "$(cat "$scratch/serve.err")"
url=https://127.0.0.1:$port

expect_fail 2 "missing server certificate" "$TC" ota agent --server "$url" --se "$card0" \
  --server-cert "$scratch/none.pem"

# --- a complete dialog, the key on the card
expect_ok "agent completes the dialog" "$TC" ota agent --server "$url" --se "$card0" \
  --workspace "$ws"
expect_contains "dialog complete" "$out" "dialog complete"
expect_contains "names the card" "$out" "card: EID 89049032"
expect_ok "agent --verbose" "$TC" ota agent --server "$url" --se "$card0" --workspace "$ws" \
  --verbose
n=$(printf '%s' "$out" | sed -n 's/^dialog complete: \([0-9]*\) script.*/\1/p')
lines=$(grep -c ": script [0-9]*: .* response APDU(s), last SW [0-9A-F]\{4\}$" "$scratch/err")
[ -n "$n" ] && [ "$n" = "$lines" ] && pass "one line per script ($n)" ||
  fail "one line per script" "dialog says '$n', stderr has $lines: $(cat "$scratch/err")"
expect_ok "agent --json" "$TC" ota agent --server "$url" --se "$card1" --workspace "$ws" --json
expect_contains "json outcome" "$out" '"outcome":"done"'
expect_contains "json status" "$out" '"http_status":204'
eid1=$(printf '%s' "$out" | sed -n 's/.*"eid":"\([0-9]*\)".*/\1/p')
serial1=$(printf '%s' "$out" | sed -n 's/.*"serial":"\([0-9a-fA-F]*\)".*/\1/p')
[ ${#eid1} -eq 32 ] && pass "card 1 EID read" || fail "card 1 EID read" "$out"
[ -n "$serial1" ] && pass "card 1 serial read" || fail "card 1 serial read" "$out"
expect_ok "explicit --server-cert and a host name" "$TC" ota agent \
  --server "https://localhost:$port/" --se "$card0" --server-cert "$ws/ota/server.pem"

# --- operations relayed: store-data, then lock (CARD_LOCKED) and unlock
eid0=$("$TC" se show --state "$card0" --json | sed -n 's/.*"eid":"\([0-9]*\)".*/\1/p')
printf '\x50\x05agent' >"$scratch/cfg.bin" # one BER-TLV object (docs/ota.md)
expect_ok "queue store-data" "$TC" device queue "$eid0" store-data --file "$scratch/cfg.bin" \
  --workspace "$ws"
sleep 1.5 # the server reopens the registry
expect_ok "agent relays the operation" "$TC" ota agent --server "$url" --se "$card0" \
  --workspace "$ws" --verbose --card-cert "$scratch/card0.pem"
n=$(printf '%s' "$out" | sed -n 's/^dialog complete: \([0-9]*\) script.*/\1/p')
lines=$(grep -c ": script [0-9]*: .* response APDU(s), last SW [0-9A-F]\{4\}$" "$scratch/err")
[ -n "$n" ] && [ "$n" -gt 0 ] && [ "$n" = "$lines" ] && pass "scripts relayed ($n)" ||
  fail "scripts relayed" "dialog says '$n', stderr has $lines: $(cat "$scratch/err")"
grep -q "BEGIN CERTIFICATE" "$scratch/card0.pem" && pass "device copy of the certificate" ||
  fail "device copy of the certificate" "not written"
expect_ok "store-data done" "$TC" device ops "$eid0" --all --workspace "$ws" --json
expect_contains "store-data done says so" "$out" "\"status\":\"done\""
expect_ok "queue lock" "$TC" device queue "$eid0" lock --workspace "$ws"
sleep 1.5
expect_ok "agent applies the lock" "$TC" ota agent --server "$url" --se "$card0" \
  --workspace "$ws" --card-cert "$scratch/card0.pem"
expect_fail 3 "locked card without its certificate copy" "$TC" ota agent --server "$url" \
  --se "$card0" --workspace "$ws"
expect_contains "says the applet is out of reach" "$err" "not selectable"
expect_ok "locked card connects with its copy (ISD signs)" "$TC" ota agent --server "$url" \
  --se "$card0" --workspace "$ws" --card-cert "$scratch/card0.pem"
expect_ok "queue unlock" "$TC" device queue "$eid0" unlock --workspace "$ws"
sleep 1.5
expect_ok "agent applies the unlock" "$TC" ota agent --server "$url" --se "$card0" \
  --workspace "$ws" --card-cert "$scratch/card0.pem" --verbose
expect_ok "unlocked: the applet answers again" "$TC" ota agent --server "$url" --se "$card0" \
  --workspace "$ws"

# --- the other card links: --tcp (card 2) and --reader (card 3)
expect_ok "the rotation's master" "$TC" hsm generate --workspace "$ws" --master fleet-2 \
  --pin-file "$pin"
ceid() { "$TC" se show --state "$1" --json | sed -n 's/.*"eid":"\([0-9]*\)".*/\1/p'; }
card2=$cards/card-000002.img
card3=$cards/card-000003.img
e2=$(ceid "$card2")
e3=$(ceid "$card3")
# An operation queued while the server runs (it reopens the registry).
queue() { "$TC" device queue "$@" --workspace "$ws" >/dev/null && sleep 1.5; }
# rotate_and_store LINK EID KVN DATA AGENT-ARGS...: a key rotation to
# fleet-2 KVN and a store-data of DATA queued, then relayed in one dialog
# (one --verbose line per script the summary counts), both done and the
# registry's keyset the new one.
rotate_and_store() {
  local link=$1 eid=$2 kvn=$3 n lines
  printf '%b' "$4" >"$scratch/$link.bin"
  shift 4
  queue "$eid" rotate-keys --master fleet-2 --kvn "$kvn"
  queue "$eid" store-data --file "$scratch/$link.bin"
  expect_ok "$link: rotation and store-data relayed" "$TC" ota agent --server "$url" "$@" \
    --workspace "$ws" --verbose
  n=$(printf '%s' "$out" | sed -n 's/^dialog complete: \([0-9]*\) script.*/\1/p')
  lines=$(grep -c ": script [0-9]*: .* response APDU(s), last SW 9000$" "$scratch/err")
  [ -n "$n" ] && [ "$n" -gt 0 ] && [ "$n" = "$lines" ] && pass "$link: scripts relayed ($n)" ||
    fail "$link: scripts relayed" "dialog says '$n', stderr has $lines: $(cat "$scratch/err")"
  expect_ok "$link: operations listed" "$TC" device ops "$eid" --all --workspace "$ws" --json
  expect_contains "$link: rotation done" "$out" '"op":"rotate-keys","status":"done"'
  expect_contains "$link: store-data done" "$out" '"op":"store-data","status":"done"'
  expect_contains "$link: keyset now fleet-2 KVN $kvn" "$out" \
    "\"keyset\":{\"kvn\":$((kvn)),\"master\":\"fleet-2\"}"
}

# --tcp: card 2 served by `se serve --tcp` on a free port.
"$TC" se serve --tcp 127.0.0.1:0 --state "$card2" >"$scratch/tcpcard.out" 2>&1 &
cpid=$!
daemons+=($cpid)
cport=
for _ in $(seq 100); do
  cport=$(sed -n 's/^listening on 127\.0\.0\.1 port \([0-9]*\)$/\1/p' "$scratch/tcpcard.out")
  [ -n "$cport" ] && break
  sleep 0.1
done
[ -n "$cport" ] && pass "tcp: card served" || fail "tcp: card served" "$(cat "$scratch/tcpcard.out")"
expect_ok "tcp: agent completes the dialog" "$TC" ota agent --server "$url" \
  --tcp "127.0.0.1:$cport" --workspace "$ws"
expect_contains "tcp: names the card and its link" "$out" \
  "card: EID $e2 (TCP card 127.0.0.1:$cport)"
rotate_and_store tcp "$e2" 0x31 '\x50\x05tcp-1' --tcp "127.0.0.1:$cport"
# The next operation is authenticated with the rotated keyset.
printf '\x50\x05tcp-2\x5f\x20\x02ok' >"$scratch/tcp2.bin"
queue "$e2" store-data --file "$scratch/tcp2.bin"
expect_ok "tcp: store-data under the new keyset" "$TC" ota agent --server "$url" \
  --tcp "127.0.0.1:$cport" --workspace "$ws" --json
expect_contains "tcp: json outcome" "$out" '"outcome":"done"'
expect_ok "tcp: operations listed again" "$TC" device ops "$e2" --all --workspace "$ws" --json
expect_contains "tcp: nothing pending" "$out" '"pending":0'
# A card that takes the connection and never answers (stopped).
kill -STOP "$cpid"
expect_fail 3 "tcp: card not answering" "$TC" ota agent --server "$url" \
  --tcp "127.0.0.1:$cport" --workspace "$ws" --timeout-ms 1000
expect_contains "tcp: names the link once" "$err" \
  "card (TCP card 127.0.0.1:$cport): no reply in time"
kill -CONT "$cpid"
stop_pid "$cpid"
wait "$cpid" 2>/dev/null
expect_ok "tcp: the image afterwards" "$TC" se show --state "$card2"
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

# --reader: a private pcscd (own reader.conf, socket, mount namespace) with
# vpcd on a free port pair; card 3 put in by `se serve --vpcd`.
pcscd_start "trustchain agent $$"
daemons+=("$pcscd_pid")
pass "pcsc: pcscd started on its own socket"
"$TC" se serve --vpcd "127.0.0.1:$port" --state "$card3" >"$scratch/vpcdcard.out" 2>&1 &
vpid=$!
daemons+=($vpid)
# in_reader yes|no: waits until pcscd reports the card present or gone.
in_reader() {
  local o
  for _ in $(seq 80); do
    o=$("$TC" gp readers 2>&1)
    case "$1:$o" in
      "yes:"*"$reader (card present)"*) return 0 ;;
      "no:"*"(card present)"*) ;;
      "no:"*"$reader"*) return 0 ;;
    esac
    sleep 0.25
  done
  echo "$o"
  return 1
}
o=$(in_reader yes) && pass "pcsc: card in the reader" || fail "pcsc: card in the reader" "$o"
expect_ok "pcsc: agent completes the dialog" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws"
expect_contains "pcsc: names the card and its reader" "$out" "card: EID $e3 ($reader)"
rotate_and_store pcsc "$e3" 0x32 '\x50\x06pcsc-1' --reader "$reader"
queue "$e3" lock
expect_ok "pcsc: lock under the new keyset" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws" --card-cert "$scratch/card3.pem"
expect_ok "pcsc: operations listed again" "$TC" device ops "$e3" --all --workspace "$ws" --json
expect_contains "pcsc: nothing pending" "$out" '"pending":0'
# CARD_LOCKED through the reader: the applet is out of reach, the ISD signs.
expect_fail 3 "pcsc: locked card without its certificate copy" "$TC" ota agent --server "$url" \
  --reader "$reader" --workspace "$ws"
expect_contains "pcsc: says the applet is out of reach" "$err" "not selectable"
expect_ok "pcsc: locked card connects with its copy" "$TC" ota agent --server "$url" \
  --reader "$reader" --workspace "$ws" --card-cert "$scratch/card3.pem"
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
o=$(in_reader no) && pass "pcsc: card taken out" || fail "pcsc: card taken out" "$o"
expect_fail 3 "pcsc: card taken out refused" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws"
expect_contains "pcsc: says no card (taken out)" "$err" "no card in reader"
expect_ok "pcsc: the image afterwards" "$TC" se show --state "$card3"
expect_contains "pcsc: KVN 32 on the card" "$out" "KVN 32"
expect_contains "pcsc: the card is locked" "$out" "CARD_LOCKED"
stop_pid "$pcscd_pid"
wait "$pcscd_pid" 2>/dev/null
expect_fail 3 "pcsc: no pcscd" "$TC" ota agent --server "$url" --reader "$reader" \
  --workspace "$ws"
expect_contains "pcsc: says pcscd is not running" "$err" "pcscd) is not running"

# --- refusals
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout "$scratch/other.key" \
  -out "$scratch/other.pem" >/dev/null 2>&1
expect_fail 5 "wrong server pin" "$TC" ota agent --server "$url" --se "$card0" \
  --server-cert "$scratch/other.pem"
expect_contains "says the server is not trusted" "$err" "server certificate not trusted"
expect_fail 3 "no card" "$TC" ota agent --server "$url" --se "$scratch/absent.img" \
  --workspace "$ws"
expect_ok "a card as shipped" "$TC" se new --state "$scratch/blank.img"
expect_fail 3 "card without identity" "$TC" ota agent --server "$url" --se "$scratch/blank.img" \
  --workspace "$ws"
expect_contains "says what the card lacks" "$err" "6A88"

expect_ok "revoke device 1" "$TC" device revoke "$eid1" --reason keyCompromise \
  --workspace "$ws" --pin-file "$pin"
sleep 2.2 # the server checks the CRLs every second
expect_fail 6 "revoked device refused" "$TC" ota agent --server "$url" --se "$card1" \
  --workspace "$ws"
expect_contains "refusal named" "$err" "refused"
grep -q "certificate revoked" "$scratch/serve.err" && pass "server logged the revocation" ||
  fail "server logged the revocation" "$(tail -3 "$scratch/serve.err")"
expect_ok "device 0 still served" "$TC" ota agent --server "$url" --se "$card0" --workspace "$ws"

expect_ok "revoke the batch" "$TC" pki revoke-batch --workspace "$ws" --batch $B \
  --root-pin-file "$ws/secrets/root.pin"
sleep 2.2
expect_fail 6 "device of a revoked batch refused" "$TC" ota agent --server "$url" --se "$card0" \
  --workspace "$ws"

kill -TERM $spid 2>/dev/null
wait $spid 2>/dev/null
expect_fail 4 "server unreachable" "$TC" ota agent --server "$url" --se "$card0" \
  --workspace "$ws" --timeout-ms 2000
expect_contains "says unreachable" "$err" "unreachable"
finish
