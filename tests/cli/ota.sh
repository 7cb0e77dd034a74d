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
# EID check digits (GSMA SGP.29 §10) in shell arithmetic
complete() {
  local b=${1:0:30} r=0 i n
  n="${b}00"
  for ((i = 0; i < 32; i++)); do r=$(((r * 10 + ${n:i:1}) % 97)); done
  printf '%s%02d' "$b" $((98 - r))
}
eid2=$(complete 890490321234000000000000000000)
nonce=000102030405060708090a0b0c0d0e0f
unhex() { local h; h=$(cat); printf "$(printf '%s' "$h" | sed 's/../\\x&/g')"; }
tohex() { od -An -tx1 -v | tr -d ' \n'; }
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
expect_fail 1 "serve without a PKI" "$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws"
expect_contains "says what is missing" "$err" "root.pem"

# --- a workspace PKI
"$TC" hsm init --workspace "$ws" >/dev/null 2>&1
"$TC" pki root-ceremony --workspace "$ws" --cn "Acme Device Root CA" --org "Acme Devices" >/dev/null 2>&1
"$TC" pki batch-ca --workspace "$ws" --batch B1 --eid-prefix $prefix --manufacturer "Acme Devices" >/dev/null 2>&1
device d1 "$eid1"
device d2 "$eid2"
[ -s "$scratch/d1.pem" ] && [ -s "$scratch/d2.pem" ] && pass "devices issued" || fail "devices issued" "no certificates"

# --- serve
"$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --timeout-ms 2000 --stop-after 120 \
  >"$scratch/serve.out" 2>"$scratch/serve.err" &
pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$scratch/serve.out")
  [ -n "$port" ] && break
  sleep 0.1
done
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

# --- with --master: every device gets an SCP03 session, keys derived in the HSM
expect_fail 2 "PIN on the command line" "$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --pin 1234
expect_fail 1 "unknown master key" "$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --master nope
"$TC" hsm generate --workspace "$ws" --master fleet >/dev/null 2>&1
"$TC" ota serve --listen 127.0.0.1:0 --workspace "$ws" --master fleet --stop-after 60 \
  >"$scratch/serve2.out" 2>"$scratch/serve2.err" &
pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$scratch/serve2.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] && pass "server with --master listening" || fail "server with --master listening" "$(cat "$scratch/serve2.err")"
code=$(curl -sS --max-time 5 --tlsv1.3 --cacert "$ws/ota/server.pem" --cert "$scratch/d2.pem" --key "$scratch/d2.key" \
  -D "$scratch/h2" -o "$scratch/b2" -w '%{http_code}' -X POST -H "X-Admin-Protocol: globalplatform-remote-admin/1.0" \
  -H "X-Admin-From: //se-id/eid/$eid2" "https://127.0.0.1:$port/ota/v1/admin")
[ "$code" = 200 ] && pass "first script served" || fail "first script served" "$code $(cat "$scratch/serve2.err")"
expect_contains "script media type" "$(cat "$scratch/h2")" "Content-Type: application/vnd.globalplatform.card-content-mgt;version=1.0"
expect_contains "next URI" "$(cat "$scratch/h2")" "X-Admin-Next-URI: /ota/v1/admin/"
body=$(tohex <"$scratch/b2")
# AE80 | 22 0E SELECT A000000151000000 Le | 22 0E INITIALIZE UPDATE KVN 30, 8-byte host challenge, Le | 0000
case "$body" in
  ae80220e00a4040008a00000015100000000220e8050300008????????????????000000) pass "SELECT + INITIALIZE UPDATE (KVN 30)" ;;
  *) fail "SELECT + INITIALIZE UPDATE (KVN 30)" "$body" ;;
esac
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ $rc -eq 0 ] && pass "server with --master stops cleanly" || fail "server with --master stops cleanly" "exit $rc"
finish
