# trustchain ota agent end to end: a workspace (init, root, batch CA,
# transport keys), two cards provisioned by `line run --emulate`, `ota serve
# --master` on a free port, and the agent on a card image completing the
# Amendment B dialog with its card-held key; then the refusals, each with
# its exit status and one line on stderr: a revoked device, a revoked batch,
# a wrong server pin, no card, a card without identity, an unreachable
# server, bad URLs and arguments.
. "$(dirname "$0")/lib.sh"
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

ws=$scratch/ws
cards=$scratch/cards
B=AGENT-T1
pin="$ws/secrets/user.pin"
expect_ok "init" "$TC" init --workspace "$ws"
expect_ok "root ceremony" "$TC" pki root-ceremony --workspace "$ws" --cn "Agent Test Root" \
  --org "Agent Test" --root-pin-file "$ws/secrets/root.pin" --so-pin-file "$ws/secrets/so.pin"
expect_ok "batch CA" "$TC" pki batch-ca --workspace "$ws" --batch $B --eid-prefix 89049032 \
  --manufacturer "Agent Test" --pin-file "$pin" --root-pin-file "$ws/secrets/root.pin"
keys=$scratch/vendor.keys
hex() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
printf 'ENC = %s\nMAC = %s\nDEK = %s\n' "$(hex)" "$(hex)" "$(hex)" >"$keys"
expect_ok "import transport keys" "$TC" hsm import-transport --workspace "$ws" --batch $B \
  --kvn 0x30 --key-file "$keys" --pin-file "$pin"
expect_ok "line provisions 2 cards" "$TC" line run --workspace "$ws" --batch $B --count 2 \
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
