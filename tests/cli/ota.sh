# trustchain ota serve: a workspace PKI made by `trustchain pki`, the server
# on 127.0.0.1 with an ephemeral port, curl as the device (TLS 1.3 client
# certificate), refusals (no certificate, TLS 1.2, a device revoked while the
# server runs: the CRL is reloaded), and a clean stop by SIGTERM.
. "$(dirname "$0")/lib.sh"

ws="$scratch/ws"
unset TRUSTCHAIN_WORKSPACE
export TRUSTCHAIN_HSM_SO_PIN="so-pin-ota-5d1e"
export TRUSTCHAIN_HSM_PIN="user-pin-ota-0c4b"
export TRUSTCHAIN_ROOT_PIN="root-pin-ota-a93f"
prefix=890490321234
eid1=89049032123451234512345678901235
eid2=$(complete 890490321234000000000000000000)
nonce=000102030405060708090a0b0c0d0e0f
device() { # $1 name, $2 EID: key, PoP, certificate from the workspace's batch CA
  local d="$scratch/$1"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d.key" 2>/dev/null
  openssl ec -in "$d.key" -pubout -outform DER 2>/dev/null | tail -c 65 | tohex >"$d.point"
  { printf '%s' "$2" | unhex; unhex <"$d.point"; printf '%s' "$nonce" | unhex; } >"$d.msg"
  openssl dgst -sha256 -sign "$d.key" "$d.msg" | tohex >"$d.pop"
  "$TC" pki issue --workspace "$ws" --batch B1 --station st-01 --nonce "$nonce" --eid "$2" \
    --pubkey "$(cat "$d.point")" --pop "$(cat "$d.pop")" --out "$d.pem" >/dev/null
}

# --- usage
expect_fail 2 "serve needs --listen" "$TC" ota serve --workspace "$ws"
expect_fail 2 "bad --listen" "$TC" ota serve --listen 127.0.0.1 --workspace "$ws"
expect_fail 2 "bad port" "$TC" ota serve --listen 127.0.0.1:70000 --workspace "$ws"
expect_fail 2 "unknown option" "$TC" ota serve --listen 127.0.0.1:0 --bogus 1
expect_fail 2 "too many loop threads" "$TC" ota serve --listen 127.0.0.1:0 --threads 65
expect_contains "says the range" "$err" "bad --threads 65 (0 to 64)"
expect_fail 2 "loop threads not a number" "$TC" ota serve --listen 127.0.0.1:0 --threads two
expect_fail 1 "serve without a PKI" "$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws"
expect_contains "says what is missing" "$err" "root.pem"

# --- a workspace PKI
"$TC" hsm init --workspace "$ws" >/dev/null 2>&1
"$TC" pki root-ceremony --workspace "$ws" --cn "Acme Device Root CA" --org "Acme Devices" >/dev/null 2>&1
"$TC" pki batch-ca --workspace "$ws" --batch B1 --eid-prefix $prefix --manufacturer "Acme Devices" >/dev/null 2>&1
device d1 "$eid1"
device d2 "$eid2"
[ -s "$scratch/d1.pem" ] && [ -s "$scratch/d2.pem" ] && pass "devices issued" || fail "devices issued" "no certificates"

# The port a server prints ("listening on 127.0.0.1:PORT"), waiting up to 10 s.
listening_port() {
  local p=
  for _ in $(seq 1 100); do
    p=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$1")
    [ -n "$p" ] && break
    sleep 0.1
  done
  printf '%s' "$p"
}

# --- serve
"$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --timeout-ms 2000 --stop-after 120 \
  >"$scratch/serve.out" 2>"$scratch/serve.err" &
pid=$!
port=$(listening_port "$scratch/serve.out")
[ -n "$port" ] && pass "server listening" || fail "server listening" "$(cat "$scratch/serve.err")"
url="https://127.0.0.1:$port/ota/v1/identity"
[ "$(stat -c %a "$ws/ota/server-key.pem")" = 600 ] && pass "server key is private" || fail "server key is private" "mode"
as() { curl -sS --max-time 5 --tlsv1.3 --cacert "$ws/ota/server.pem" --cert "$scratch/$1.pem" --key "$scratch/$1.key" "$url"; }

expect_ok "device 1 over TLS 1.3 with its certificate" as d1
[ "$out" = "$eid1" ] && pass "server sees device 1's EID" || fail "server sees device 1's EID" "$out"
expect_ok "device 2" as d2
[ "$out" = "$eid2" ] && pass "server sees device 2's EID" || fail "server sees device 2's EID" "$out"
curl -sS --max-time 5 --cacert "$ws/ota/server.pem" "$url" >/dev/null 2>&1 &&
  fail "no client certificate refused" "served" || pass "no client certificate refused"
curl -sS --max-time 5 --tls-max 1.2 --cacert "$ws/ota/server.pem" --cert "$scratch/d1.pem" \
  --key "$scratch/d1.key" "$url" >/dev/null 2>&1 &&
  fail "TLS 1.2 refused" "served" || pass "TLS 1.2 refused"

# --- GP Amendment B: with nothing queued the session ends at once (204)
admin() { curl -sS --max-time 5 --tlsv1.3 --cacert "$ws/ota/server.pem" --cert "$scratch/$1.pem" --key "$scratch/$1.key" \
  -o /dev/null -w '%{http_code}' -X POST -H "X-Admin-Protocol: globalplatform-remote-admin/1.0" \
  -H "X-Admin-From: //se-id/eid/$2" "https://127.0.0.1:$port/ota/v1/admin"; }
expect_ok "admin session opens" admin d1 "$eid1"
[ "$out" = 204 ] && pass "nothing queued: 204 No Content" || fail "nothing queued: 204" "$out"
expect_ok "admin as another EID" admin d1 "$eid2"
[ "$out" = 403 ] && pass "X-Admin-From must match the certificate" || fail "X-Admin-From must match" "$out"

# --- revoke device 1 while the server runs: refused at the handshake
"$TC" pki revoke --workspace "$ws" --batch B1 --eid "$eid1" --reason keyCompromise >/dev/null 2>&1
refused=no
for _ in $(seq 1 50); do
  if ! as d1 >/dev/null 2>&1; then refused=yes; break; fi
  sleep 0.1
done
[ $refused = yes ] && pass "revoked device refused after the CRL reload" || fail "revoked device refused" "still served"
expect_contains "refusal logged with the reason" "$(cat "$scratch/serve.err")" "client certificate refused: device certificate: certificate revoked"
expect_ok "device 2 still served" as d2

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ $rc -eq 0 ] && pass "server stops cleanly on SIGTERM" || fail "server stops cleanly" "exit $rc"

# --- with --master: the operations engine over the workspace registry
expect_fail 2 "PIN on the command line" "$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --pin 1234
expect_fail 1 "unknown master key" "$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --master nope
expect_fail 2 "bad --kvn" "$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --master nope --kvn 0x80
"$TC" hsm generate --workspace "$ws" --master fleet >/dev/null 2>&1
# (On the main loop alone, --threads 0: the first server used loop threads.)
"$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --master fleet --stop-after 60 --threads 0 \
  >"$scratch/serve2.out" 2>"$scratch/serve2.err" &
pid=$!
port=$(listening_port "$scratch/serve2.out")
[ -n "$port" ] && pass "server with --master listening" || fail "server with --master listening" "$(cat "$scratch/serve2.err")"
# A device with nothing queued (this one is not even in the registry): 204 at once.
code=$(curl -sS --max-time 5 --tlsv1.3 --cacert "$ws/ota/server.pem" --cert "$scratch/d2.pem" --key "$scratch/d2.key" \
  -D "$scratch/h2" -o "$scratch/b2" -w '%{http_code}' -X POST -H "X-Admin-Protocol: globalplatform-remote-admin/1.0" \
  -H "X-Admin-From: //se-id/eid/$eid2" "https://127.0.0.1:$port/ota/v1/admin")
[ "$code" = 204 ] && pass "nothing queued: 204" || fail "nothing queued: 204" "$code $(cat "$scratch/serve2.err")"
[ ! -s "$scratch/b2" ] && pass "no script" || fail "no script" "$(tohex <"$scratch/b2")"
if grep -qi "X-Admin-Next-URI" "$scratch/h2"; then fail "no next URI" "$(cat "$scratch/h2")"; else pass "no next URI"; fi
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ $rc -eq 0 ] && pass "server with --master stops cleanly" || fail "server with --master stops cleanly" "exit $rc"

# --- operations end to end: a batch provisioned by the line, operations
# queued with `device queue`, applied by `ota serve --master` when each card
# connects through `ota agent`, every step in the registry.
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE
ws3=$scratch/ws3
cards=$scratch/cards
B3=OPS-T1
pin3=$ws3/secrets/user.pin
keys3=$scratch/vendor3.keys
line_workspace "$ws3" $B3 "$keys3" "Ops Test" "ops: "
expect_ok "ops: line provisions 3 cards" "$TC" line run --workspace "$ws3" --batch $B3 --count 3 \
  --emulate "$cards" --vendor-keys "$keys3" --pin-file "$pin3"
card0=$cards/card-000000.img
card1=$cards/card-000001.img
card2=$cards/card-000002.img
ceid() { "$TC" se show --state "$1" --json | sed -n 's/.*"eid":"\([0-9]*\)".*/\1/p'; }
e0=$(ceid "$card0")
e1=$(ceid "$card1")
[ ${#e0} -eq 32 ] && [ ${#e1} -eq 32 ] && pass "ops: card EIDs" || fail "ops: card EIDs" "$e0 $e1"
expect_ok "ops: new master" "$TC" hsm generate --workspace "$ws3" --master fleet-2 --pin-file "$pin3"

# queue refusals (usage: 2; the registry refuses: 1)
expect_fail 2 "queue: unknown operation" "$TC" device queue "$e0" reboot --workspace "$ws3"
expect_fail 2 "queue: rotate needs --master" "$TC" device queue "$e0" rotate-keys --kvn 0x31 --workspace "$ws3"
expect_fail 2 "queue: rotate needs --kvn" "$TC" device queue "$e0" rotate-keys --master fleet-2 --workspace "$ws3"
expect_fail 2 "queue: lock takes no --kvn" "$TC" device queue "$e0" lock --kvn 1 --workspace "$ws3"
expect_fail 1 "queue: unknown device" "$TC" device queue 89049032123451234512345678901235 lock --workspace "$ws3"
expect_contains "queue: says why" "$err" "not in the registry"

t_before=$(date +%s%3N)
sleep 0.01
expect_ok "queue: rotate-keys" "$TC" device queue "$e0" rotate-keys --master fleet-2 --kvn 0x31 --workspace "$ws3"
expect_contains "queue: prints the id" "$out" "operation "
printf '\x50\x03abc\x5f\x20\x02ok' >"$scratch/cfg.bin"
expect_ok "queue: store-data" "$TC" device queue "$e0" store-data --file "$scratch/cfg.bin" --workspace "$ws3" --json
expect_contains "queue: json" "$out" '"op":"store-data"'
expect_ok "queue: decommission card 1" "$TC" device queue "$e1" decommission --workspace "$ws3"
cid=$(printf '%s' "$out" | sed -n 's/.*operation \([0-9]*\)$/\1/p')
expect_ok "cancel it" "$TC" device cancel "$e1" "$cid" --workspace "$ws3"
expect_fail 1 "cancel twice" "$TC" device cancel "$e1" "$cid" --workspace "$ws3"
expect_ok "queue: renew-cert card 1" "$TC" device queue "$e1" renew-cert --workspace "$ws3"
"$TC" device show "$e1" --workspace "$ws3" --pin-file "$pin3" --json >"$scratch/e1.before" 2>&1
old1=$(sed -n 's/.*"serial":"\([0-9A-Fa-f]*\)".*/\1/p' "$scratch/e1.before")
[ -n "$old1" ] && pass "card 1 serial before renewal" || fail "card 1 serial before renewal" "$(cat "$scratch/e1.before")"
expect_ok "ops: two pending" "$TC" device ops "$e0" --workspace "$ws3" --json
expect_contains "ops: pending count" "$out" '"pending":2'
expect_contains "ops: rotate listed" "$out" '"op":"rotate-keys","status":"pending"'

sleep 0.01
t_queued=$(date +%s%3N)
"$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws3" --master line --kvn 1 --pin-file "$pin3" \
  --timeout-ms 5000 --stop-after 300 >"$scratch/serve3.out" 2>"$scratch/serve3.err" &
pid3=$!
port=$(listening_port "$scratch/serve3.out")
[ -n "$port" ] && pass "ops: server listening" || fail "ops: server listening" "$(cat "$scratch/serve3.err")"
url=https://127.0.0.1:$port
expect_ok "ops: card 0 connects" "$TC" ota agent --server "$url" --se "$card0" --workspace "$ws3"
expect_ok "ops: both done" "$TC" device ops "$e0" --all --workspace "$ws3" --json
expect_contains "ops: none pending" "$out" '"pending":0'
expect_contains "ops: rotate done" "$out" '"op":"rotate-keys","status":"done"'
expect_contains "ops: store done" "$out" '"op":"store-data","status":"done"'
expect_contains "ops: keyset from fleet-2" "$out" '"keyset":{"kvn":49,"master":"fleet-2"}'
expect_ok "ops: card 0 keysets" "$TC" se show --state "$card0"
expect_contains "ops: card holds KVN 31" "$out" "31"
# The queue at earlier times: the fold of the events until then.
expect_ok "ops --at before queueing" "$TC" device ops "$e0" --at "$t_before" --all --workspace "$ws3" --json
expect_contains "ops --at: nothing yet" "$out" '"operations":[],"pending":0'
expect_ok "ops --at once queued" "$TC" device ops "$e0" --at "$t_queued" --workspace "$ws3" --json
expect_contains "ops --at: two pending then" "$out" '"pending":2'
expect_contains "ops --at: old keyset then" "$out" '"keyset":{"kvn":1,"master":null}'
expect_ok "ops: history" "$TC" device history "$e0" --workspace "$ws3"
expect_contains "ops: keys-rotated logged" "$out" "keys-rotated"
expect_contains "ops: config-stored logged" "$out" "config-stored"
expect_contains "ops: intent logged" "$out" "op-step"
# Queued while the server runs: the server reopens the registry.
expect_ok "ops: lock card 0 while serving" "$TC" device queue "$e0" lock --workspace "$ws3"
sleep 1.5
expect_ok "ops: card 0 connects again" "$TC" ota agent --server "$url" --se "$card0" --workspace "$ws3"
expect_ok "ops: locked" "$TC" device show "$e0" --workspace "$ws3" --pin-file "$pin3"
expect_contains "ops: registry says locked" "$out" "locked"
expect_ok "ops: audit rebuild" "$TC" audit rebuild --workspace "$ws3"

# revoke a device, then its batch: both refused at the TLS step
expect_ok "ops: card 1 renews its certificate" "$TC" ota agent --server "$url" --se "$card1" --workspace "$ws3"
expect_ok "renew: done" "$TC" device ops "$e1" --all --workspace "$ws3" --json
expect_contains "renew: status" "$out" '"op":"renew-cert","status":"done"'
expect_ok "renew: registry" "$TC" device show "$e1" --workspace "$ws3" --pin-file "$pin3" --json
new1=$(printf '%s' "$out" | sed -n 's/.*"serial":"\([0-9A-Fa-f]*\)".*/\1/p')
[ -n "$new1" ] && [ "$new1" != "$old1" ] && pass "renew: new serial" || fail "renew: new serial" "$old1 -> $new1"
expect_contains "renew: still provisioned" "$out" '"state":"provisioned"'
grep -qi "^$old1 " "$ws3/pki/batches/$B3/revoked.txt" && pass "renew: old certificate revoked" ||
  fail "renew: old certificate revoked" "$(cat "$ws3/pki/batches/$B3/revoked.txt" 2>&1)"
expect_ok "ops: card 1 served with the new certificate" "$TC" ota agent --server "$url" --se "$card1" --workspace "$ws3"
expect_ok "ops: card 2 served" "$TC" ota agent --server "$url" --se "$card2" --workspace "$ws3"
# An operation queued for a device that is then revoked can never reach its card:
# the revocation ends it (op-failed, reason 8 = revoked).
expect_ok "queue: lock card 1 before its revocation" "$TC" device queue "$e1" lock --workspace "$ws3"
expect_ok "revoke device 1" "$TC" device revoke "$e1" --reason keyCompromise --workspace "$ws3" --pin-file "$pin3"
expect_contains "revoke: logged" "$out" "logged cert-revoked"
expect_contains "revoke: the pending lock ends" "$out" "logged op-failed (revoked) for 1 pending operation of $e1"
expect_ok "revoke: ops" "$TC" device ops "$e1" --all --workspace "$ws3" --json
expect_contains "revoke: lock failed, reason revoked" "$out" '"op":"lock","status":"failed"'
expect_contains "revoke: reason 8" "$out" '"reason":8'
expect_ok "revoke: nothing pending" "$TC" device ops "$e1" --workspace "$ws3" --json
case "$out" in *'"status":"pending"'*) fail "revoke: nothing pending" "$out" ;; *) pass "revoke: nothing pending" ;; esac
expect_ok "revoke: registry" "$TC" device show "$e1" --workspace "$ws3" --pin-file "$pin3"
expect_contains "revoke: state" "$out" "revoked"
sleep 2.2
expect_fail 6 "revoked device refused at TLS" "$TC" ota agent --server "$url" --se "$card1" --workspace "$ws3"
e2=$(ceid "$card2")
expect_ok "queue: unlock card 2 before its batch's revocation" "$TC" device queue "$e2" unlock --workspace "$ws3"
expect_ok "revoke the batch" "$TC" device revoke-batch $B3 --workspace "$ws3" \
  --root-pin-file "$ws3/secrets/root.pin"
expect_contains "revoke-batch: logged" "$out" "logged batch-revoked"
expect_contains "revoke-batch: card 2's pending unlock ends" "$out" "logged op-failed (revoked) for 1 pending operation of $e2"
expect_ok "revoke-batch: ops" "$TC" device ops "$e2" --all --workspace "$ws3" --json
expect_contains "revoke-batch: unlock failed, reason revoked" "$out" '"op":"unlock","status":"failed"'
expect_ok "revoke-batch: audit rebuild" "$TC" audit rebuild --workspace "$ws3"
sleep 2.2
expect_fail 6 "device of the revoked batch refused at TLS" "$TC" ota agent --server "$url" --se "$card2" --workspace "$ws3"
kill -TERM $pid3
rc=0
wait $pid3 || rc=$?
[ $rc -eq 0 ] && pass "ops: server stops cleanly" || fail "ops: server stops cleanly" "exit $rc"
finish
