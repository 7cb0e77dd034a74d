# trustchain device: state at any time folded from the log with verified
# inclusion proofs, history, lists, and the certificate chain of a device
# issued by `trustchain pki issue` whose SHA-256 the log carries.
. "$(dirname "$0")/lib.sh"

ws="$scratch/ws"
unset TRUSTCHAIN_WORKSPACE TRUSTCHAIN_AUDIT_VKEY
export TRUSTCHAIN_HSM_SO_PIN="so-pin-device-1f0a"
export TRUSTCHAIN_HSM_PIN="user-pin-device-6b3c"
export TRUSTCHAIN_ROOT_PIN="root-pin-device-2e7d"
W=(--workspace "$ws")

upper() { tr 'a-f' 'A-F'; }
T0=1764201600000 # 2025-11-27T00:00:00Z
eid1=89049032123451234512345678901235
eid2=89049032123400000000000000000011
nonce=000102030405060708090a0b0c0d0e0f

# --- a PKI and a device certificate (docs/pki.md)
expect_ok "hsm init" "$TC" hsm init "${W[@]}"
expect_ok "root ceremony" "$TC" pki root-ceremony "${W[@]}" --cn "Acme Root" --org Acme --country DE
expect_ok "batch CA" "$TC" pki batch-ca "${W[@]}" --batch B1 --eid-prefix 890490321234 --manufacturer Acme
d="$scratch/d1"
openssl ecparam -name prime256v1 -genkey -noout -out "$d.key" 2>/dev/null
openssl ec -in "$d.key" -pubout -outform DER 2>/dev/null >"$d.spki"
tail -c 65 "$d.spki" | tohex >"$d.point"
{ printf '%s' "$eid1" | unhex; unhex <"$d.point"; printf '%s' "$nonce" | unhex; } >"$d.msg"
openssl dgst -sha256 -sign "$d.key" "$d.msg" | tohex >"$d.pop"
expect_ok "issue" "$TC" pki issue "${W[@]}" --batch B1 --station st-1 --nonce "$nonce" --eid "$eid1" --pubkey "$(cat "$d.point")" --pop "$(cat "$d.pop")" --json
serial=$(printf '%s' "$out" | sed 's/.*"serial":"\([0-9A-F]*\)".*/\1/')
der=$(printf '%s' "$out" | sed 's/.*"der":"\([0-9A-F]*\)".*/\1/')
certsha=$(printf '%s' "$der" | sha)
pksha=$(tohex <"$d.spki" | sha)

# --- the line's events for eid1 (provisioned) and eid2 (rejected at step 3)
kcv=a1b2c3d4e5f6071829
{
  ev 1 $T0 "$(line $eid1 B1)$(fld 0x10 01)$(fld 0x30 07)"
  ev 2 $((T0 + 1000)) "$(line $eid1 B1)$(fld 0x10 30)$(fld 0x11 $kcv)"
  ev 3 $((T0 + 2000)) "$(line $eid1 B1)$(fld 0x10 30)$(fld 0x11 $kcv)$(fld 0x12 01)"
  ev 4 $((T0 + 3000)) "$(line $eid1 B1)$(fld 0x10 30)$(fld 0x11 $kcv)"
  ev 1 $((T0 + 3500)) "$(line $eid2 B1)$(fld 0x30 07)"
  ev 5 $((T0 + 4000)) "$(line $eid1 B1)$(fld 0x20 "$pksha")"
  ev 6 $((T0 + 5000)) "$(line $eid1 B1)$(fld 0x20 "$pksha")$(fld 0x21 "$serial")$(fld 0x22 "$certsha")"
  ev 9 $((T0 + 5500)) "$(line $eid2 B1)$(fld 0x40 0102)$(fld 0x41 03)"
  ev 7 $((T0 + 6000)) "$(line $eid1 B1)$(fld 0x21 "$serial")$(fld 0x22 "$certsha")"
  ev 8 $((T0 + 7000)) "$(line $eid1 B1)$(fld 0x30 0f)$(fld 0x31 07)"
} >"$scratch/events"
expect_ok "append" "$TC" audit append "${W[@]}" <"$scratch/events"

# --- usage and rejections
expect_ok "help" "$TC" device --help
expect_fail 2 "no command" "$TC" device
expect_fail 2 "unknown command" "$TC" device frob
expect_fail 2 "show: no EID" "$TC" device show "${W[@]}"
expect_fail 2 "show: EID not hex" "$TC" device show 89x4 "${W[@]}"
expect_fail 2 "show: EID odd length" "$TC" device show 890 "${W[@]}"
expect_fail 2 "show: EID too long" "$TC" device show "$eid1$eid1$eid1" "${W[@]}"
expect_fail 2 "show: bad time" "$TC" device show $eid1 --at yesterday "${W[@]}"
expect_fail 2 "show: time with an offset" "$TC" device show $eid1 --at 2025-11-27T01:00:00+01:00 "${W[@]}"
expect_fail 2 "show: no such day" "$TC" device show $eid1 --at 2025-02-29T00:00:00Z "${W[@]}"
expect_fail 2 "show: --at without value" "$TC" device show $eid1 "${W[@]}" --at
expect_fail 2 "show: --batch is list's" "$TC" device show $eid1 --batch B1 "${W[@]}"
expect_fail 1 "show: unknown EID" "$TC" device show 89049032123400000000000000000099 "${W[@]}"
expect_fail 1 "show: before the first event" "$TC" device show $eid1 --at 2025-11-26T23:59:59.999Z "${W[@]}"
expect_fail 1 "history: unknown EID" "$TC" device history 0102 "${W[@]}"
expect_fail 2 "list: unknown state" "$TC" device list --state bogus "${W[@]}"
expect_fail 2 "list: stray argument" "$TC" device list B1 "${W[@]}"
expect_fail 1 "list: no registry" "$TC" device list --workspace "$scratch/none"
expect_fail 1 "cert: device without certificate" "$TC" device cert $eid2 "${W[@]}"
expect_contains "no certificate says why" "$err" "records no certificate"

# --- show: now and at moments in between
expect_ok "show" "$TC" device show $eid1 "${W[@]}"
expect_contains "show: provisioned" "$out" "state        provisioned"
expect_contains "show: keyset" "$out" "KVN 0x30, KCV ENC A1B2C3 MAC D4E5F6 DEK 071829"
expect_contains "show: certificate" "$out" "certificate  serial $serial, SHA-256 $(printf '%s' "$certsha" | upper)"
expect_contains "show: checkpoint signed and verified" "$out" "size 10, root"
expect_contains "show: proofs" "$out" "inclusion proofs (RFC 9162 §2.1.3), each verified:"
[ "$(printf '%s\n' "$out" | grep -c '^  event ')" -eq 8 ] && pass "show: 8 events proved" || fail "show: 8 events proved" "$out"
expect_ok "show --json" "$TC" device show $eid1 --json "${W[@]}"
expect_contains "json state" "$out" '"state":"provisioned"'
expect_contains "json pubkey" "$out" "\"pubkey_sha256\":\"$(printf '%s' "$pksha" | upper)\""
expect_contains "json verified proofs" "$out" '"verified":true'
[ "$(printf '%s' "$out" | grep -o '"index":' | wc -l)" -eq 8 ] && pass "json: 8 proofs" || fail "json: 8 proofs" "$out"
for at in "2025-11-27T00:00:00Z received 1" "2025-11-27T00:00:01.500Z keys-derived 2" \
  "2025-11-27T00:00:03Z confirmed 4" "1764201605000 cert-issued 6" \
  "2025-11-27T00:00:06.999Z cert-stored 7" "2025-11-27T00:00:07Z provisioned 8"; do
  set -- $at
  expect_ok "show --at $1" "$TC" device show $eid1 --at "$1" --json "${W[@]}"
  expect_contains "at $1: $2" "$out" "\"state\":\"$2\""
  expect_contains "at $1: $3 events" "$out" "\"events\":$3,"
done
expect_ok "show rejected device" "$TC" device show $eid2 "${W[@]}"
expect_contains "rejected with reason and step" "$out" "rejected (reason 0x0102 at step 3)"
# proofs need a checkpoint: without the PIN but with the verifier key, the stored one serves
expect_ok "verifier key" "$TC" audit verifier-key "${W[@]}"
vkey=$out
expect_ok "show with --vkey and no PIN" env -u TRUSTCHAIN_HSM_PIN "$TC" device show $eid1 --vkey "$vkey" "${W[@]}"
expect_fail 1 "show with a foreign verifier key" "$TC" device show $eid1 --vkey "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW" "${W[@]}"

# --- history and list
expect_ok "history" "$TC" device history $eid1 "${W[@]}"
[ "$(printf '%s\n' "$out" | wc -l)" -eq 8 ] && pass "history: 8 events" || fail "history: 8 events" "$out"
expect_contains "history: first" "$out" "0 2025-11-27T00:00:00.000Z card-received station=st-1 actor=op:t kvn=0x01 lifecycle=0x07"
expect_contains "history: issued" "$out" "6 2025-11-27T00:00:05.000Z cert-issued"
expect_ok "history --json" "$TC" device history $eid2 --json "${W[@]}"
expect_contains "history json" "$out" '"type":"device-rejected"'
expect_ok "list" "$TC" device list "${W[@]}"
[ "$(printf '%s\n' "$out" | wc -l)" -eq 2 ] && pass "list: 2 devices" || fail "list: 2 devices" "$out"
expect_ok "list --state provisioned" "$TC" device list --state provisioned --json "${W[@]}"
expect_contains "list provisioned" "$out" "\"eid\":\"$eid1\""
case "$out" in *"$eid2"*) fail "list filters by state" "$out" ;; *) pass "list filters by state" ;; esac
expect_ok "list --batch B2" "$TC" device list --batch B2 "${W[@]}"
[ -z "$out" ] && pass "no devices in B2" || fail "no devices in B2" "$out"
expect_ok "list --batch B1 --state rejected" "$TC" device list --batch B1 --state rejected "${W[@]}"
expect_contains "rejected listed" "$out" "$eid2 rejected"

# --- cert: the chain, the log's hash, openssl agrees
expect_ok "cert" "$TC" device cert $eid1 "${W[@]}"
printf '%s\n' "$out" >"$scratch/chain.pem"
[ "$(grep -c 'BEGIN CERTIFICATE' "$scratch/chain.pem")" -eq 3 ] && pass "cert: device, batch CA, root" || fail "cert: 3 PEM blocks" "$out"
got=$(openssl x509 -in "$scratch/chain.pem" -outform DER | tohex | upper)
[ "$got" = "$der" ] && pass "cert: the issued certificate" || fail "cert: the issued certificate" "differs"
awk '/BEGIN/{n++} n==2' "$scratch/chain.pem" >"$scratch/ca.pem"
awk '/BEGIN/{n++} n==3' "$scratch/chain.pem" >"$scratch/root.pem"
if openssl verify -x509_strict -CAfile "$scratch/root.pem" -untrusted "$scratch/ca.pem" "$scratch/chain.pem" >/dev/null 2>&1; then
  pass "openssl verifies the printed chain"
else fail "openssl verifies the printed chain" "refused"; fi
expect_ok "cert --verify" "$TC" device cert $eid1 --verify "${W[@]}"
expect_ok "cert --json" "$TC" device cert $eid1 --json "${W[@]}"
expect_contains "cert json hash" "$out" "\"sha256\":\"$(printf '%s' "$certsha" | upper)\""
# the DER is now in the registry's side table; bytes that do not hash to the log's value are refused
sqlite3 "$ws/registry.db" "UPDATE reg_certs SET der = substr(der, 1, 100) || X'00' || substr(der, 102)"
expect_fail 1 "cert: side table altered" "$TC" device cert $eid1 "${W[@]}"
expect_contains "altered says why" "$err" "does not match its SHA-256"
sqlite3 "$ws/registry.db" "DELETE FROM reg_certs"
cp "$ws/pki/batches/B1/devices/$serial.pem" "$scratch/keep.pem"
sed -i '3s/./A/' "$ws/pki/batches/B1/devices/$serial.pem"
expect_fail 1 "cert: PKI file altered" "$TC" device cert $eid1 "${W[@]}"
cp "$scratch/keep.pem" "$ws/pki/batches/B1/devices/$serial.pem"
sqlite3 "$ws/registry.db" "DELETE FROM reg_certs"
expect_ok "cert from the PKI directory again" "$TC" device cert $eid1 "${W[@]}"

# --- revocation: the PKI revokes, the log records it, both show it
expect_ok "pki revoke" "$TC" pki revoke "${W[@]}" --batch B1 --eid $eid1 --reason keyCompromise
expect_fail 1 "cert --verify: revoked" "$TC" device cert $eid1 --verify "${W[@]}"
expect_ok "log the revocation" "$TC" audit append "${W[@]}" "$(ev 11 $((T0 + 9000)) "$(fld 1 $eid1)$(fld 2 "$(hx B1)")$(fld 4 "$(hx op:ca)")$(fld 0x21 "$serial")$(fld 0x40 0001)")"
expect_ok "show: revoked" "$TC" device show $eid1 "${W[@]}"
expect_contains "revoked state" "$out" "state        revoked (CRLReason 1)"
expect_ok "show --at before revocation" "$TC" device show $eid1 --at 2025-11-27T00:00:08Z "${W[@]}"
expect_contains "still provisioned then" "$out" "state        provisioned"
expect_ok "audit verify" "$TC" audit verify "${W[@]}"

# --- a renewal as the registry shows it (docs/registry.md, "Current certificate"):
# eid3 provisioned with certificate A; B issued by an OTA operation (op-id: a renewal in
# flight, the device stays provisioned); B revoked (abandoned); then A revoked.
eid3=89049032123400000000000000000029
sA=0A01; hA=$(printf 'cert A' | sha); sB=0B02; hB=$(printf 'cert B' | sha); pk=$(printf 'key' | sha)
{
  ev 6 $((T0 + 20000)) "$(line $eid3 B1)$(fld 0x20 "$pk")$(fld 0x21 $sA)$(fld 0x22 "$hA")"
  ev 7 $((T0 + 21000)) "$(line $eid3 B1)$(fld 0x21 $sA)$(fld 0x22 "$hA")"
  ev 8 $((T0 + 22000)) "$(line $eid3 B1)$(fld 0x30 0f)$(fld 0x31 07)"
  ev 6 $((T0 + 23000)) "$(line $eid3 B1)$(fld 0x20 "$pk")$(fld 0x21 $sB)$(fld 0x22 "$hB")$(fld 0x50 0000000000000063)"
} >"$scratch/events3"
expect_ok "append a renewal" "$TC" audit append "${W[@]}" <"$scratch/events3"
HA=$(printf '%s' "$hA" | upper); HB=$(printf '%s' "$hB" | upper)
expect_ok "show: renewal in flight" "$TC" device show $eid3 "${W[@]}"
expect_contains "the new certificate is current" "$out" "certificate  serial $sB, SHA-256 $HB (not read back from the card)"
expect_contains "the old one is still valid" "$out" "also valid   serial $sA, SHA-256 $HA"
expect_ok "show --json: renewal in flight" "$TC" device show $eid3 --json "${W[@]}"
expect_contains "json: current not stored, not revoked" "$out" "\"certificate\":{\"serial\":\"$sB\",\"sha256\":\"$HB\",\"stored\":false,\"revoked\":false}"
expect_contains "json: the other valid one" "$out" "\"other_certificates\":[{\"serial\":\"$sA\",\"sha256\":\"$HA\",\"stored\":true}]"
expect_ok "log B revoked (abandoned renewal)" "$TC" audit append "${W[@]}" "$(ev 11 $((T0 + 24000)) "$(fld 1 $eid3)$(fld 2 "$(hx B1)")$(fld 4 "$(hx op:ca)")$(fld 0x21 $sB)$(fld 0x40 0004)")"
expect_ok "show: renewal abandoned" "$TC" device show $eid3 --json "${W[@]}"
expect_contains "A is current again, stored" "$out" "\"certificate\":{\"serial\":\"$sA\",\"sha256\":\"$HA\",\"stored\":true,\"revoked\":false}"
expect_contains "no other valid certificate" "$out" '"other_certificates":[]'
expect_contains "still provisioned" "$out" '"state":"provisioned"'
expect_ok "log A revoked" "$TC" audit append "${W[@]}" "$(ev 11 $((T0 + 25000)) "$(fld 1 $eid3)$(fld 2 "$(hx B1)")$(fld 4 "$(hx op:ca)")$(fld 0x21 $sA)$(fld 0x40 0001)")"
expect_ok "show: all revoked" "$TC" device show $eid3 "${W[@]}"
expect_contains "revoked device" "$out" "state        revoked (CRLReason 1)"
expect_contains "its certificate marked revoked" "$out" "certificate  serial $sA, SHA-256 $HA (revoked)"
expect_ok "show --at during the renewal" "$TC" device show $eid3 --at 2025-11-27T00:00:23.500Z --json "${W[@]}"
expect_contains "then B current and A valid" "$out" "\"other_certificates\":[{\"serial\":\"$sA\""
expect_ok "audit verify after" "$TC" audit verify "${W[@]}"

# --- the registry keeps each device's OTA queue snapshot (docs/registry.md, "Device snapshots")
# for appends made by the command line too: eid3's 16th event writes one.
for i in $(seq 1 10); do
  ev 8 $((T0 + 30000 + i)) "$(line $eid3 B1)$(fld 0x30 0f)$(fld 0x31 07)"
done >"$scratch/events4"
expect_ok "ten more events of eid3" "$TC" audit append "${W[@]}" <"$scratch/events4"
snaps=$(sqlite3 "$ws/registry.db" "SELECT count(*) FROM reg_device_snaps WHERE hex(eid) = '$eid3'")
[ "$snaps" = 1 ] && pass "a snapshot of eid3's queue" || fail "a snapshot of eid3's queue" "$snaps"
expect_ok "ops from the snapshot" "$TC" device ops $eid3 --all --json "${W[@]}"
expect_ok "audit rebuild checks it" "$TC" audit rebuild "${W[@]}"
finish
