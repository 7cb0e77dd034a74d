# trustchain pki: root ceremony in its own SoftHSM2 token, a batch CA in the
# workspace token, device issuance with a proof of possession made by
# OpenSSL, revocation of a device and of a batch, CRLs, and verification by
# trustchain, `openssl verify -x509_strict -policy_check -crl_check_all`
# and GnuTLS certtool.
. "$(dirname "$0")/lib.sh"

ws="$scratch/ws"
unset TRUSTCHAIN_WORKSPACE
export TRUSTCHAIN_HSM_SO_PIN="so-pin-pki-93c1"
export TRUSTCHAIN_HSM_PIN="user-pin-pki-4be0"
export TRUSTCHAIN_ROOT_PIN="root-pin-pki-77aa"
prefix=890490321234
eid1=89049032123451234512345678901235
eid_other=89086030202200000022000023022943

eid2=$(complete 890490321234000000000000000000)

# A device: P-256 key, its point, and the PoP over EID || point || nonce.
device() { # $1 name, $2 EID, $3 nonce hex
  local d="$scratch/$1"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d.key" 2>/dev/null
  openssl ec -in "$d.key" -pubout -outform DER 2>/dev/null | tail -c 65 | tohex >"$d.point"
  { printf '%s' "$2" | unhex; unhex <"$d.point"; printf '%s' "$3" | unhex; } >"$d.msg"
  openssl dgst -sha256 -sign "$d.key" "$d.msg" | tohex >"$d.pop"
}
nonce=000102030405060708090a0b0c0d0e0f

expect_ok "hsm init" "$TC" hsm init --workspace "$ws"

# --- refusals before anything exists
expect_fail 2 "PIN on the command line" "$TC" pki root-ceremony --workspace "$ws" --root-pin 1 --cn R --org O
expect_contains "PIN refusal says why" "$err" "PINs are not accepted on the command line"
expect_fail 2 "ceremony needs --cn" "$TC" pki root-ceremony --workspace "$ws" --org O
expect_fail 2 "ceremony without root PIN" env -u TRUSTCHAIN_ROOT_PIN "$TC" pki root-ceremony --workspace "$ws" --cn R --org O
expect_fail 2 "batch CA before the root" "$TC" pki batch-ca --workspace "$ws" --batch B1 --eid-prefix $prefix --manufacturer "Acme Devices"
expect_contains "batch CA before root says why" "$err" "no root in this workspace"

# --- root ceremony: its own token
expect_ok "root ceremony" "$TC" pki root-ceremony --workspace "$ws" --cn "Acme Device Root CA" --org "Acme Devices" --country DE
expect_contains "ceremony names the key" "$out" "root key tc:root-ca:root generated in token 'trustchain-root'"
case "$out" in *"$TRUSTCHAIN_ROOT_PIN"* | *"$TRUSTCHAIN_HSM_SO_PIN"*) fail "no PIN printed" "PIN in output" ;; *) pass "no PIN printed" ;; esac
[ -f "$ws/pki/root.pem" ] && [ -f "$ws/pki/root-crl.pem" ] && pass "root files written" || fail "root files written" "missing"
expect_fail 2 "ceremony twice" "$TC" pki root-ceremony --workspace "$ws" --cn R --org O
# an interrupted ceremony (no root.pem yet) resumes with the key in the token
key1=$(openssl x509 -in "$ws/pki/root.pem" -noout -pubkey)
rm "$ws/pki/root.pem" "$ws/pki/root-crl.pem" "$ws/pki/root-crl.number"
expect_ok "interrupted ceremony resumes" "$TC" pki root-ceremony --workspace "$ws" --cn "Acme Device Root CA" --org "Acme Devices" --country DE
[ "$(openssl x509 -in "$ws/pki/root.pem" -noout -pubkey)" = "$key1" ] && pass "resumed with the same root key" || fail "resumed with the same root key" "key differs"
expect_ok "root key is not in the workspace token" "$TC" hsm keys --workspace "$ws"
case "$out" in *"tc:root-ca"*) fail "root key only in the root token" "$out" ;; *) pass "root key only in the root token" ;; esac
expect_ok "root key in the root token" env TRUSTCHAIN_HSM_PIN="$TRUSTCHAIN_ROOT_PIN" "$TC" hsm keys --workspace "$ws" --label trustchain-root
expect_contains "root key attributes" "$out" "tc:root-ca:root"

# --- batch CA
expect_fail 2 "bad EID prefix" "$TC" pki batch-ca --workspace "$ws" --batch B1 --eid-prefix 89x --manufacturer "Acme Devices"
expect_fail 2 "bad batch ID" "$TC" pki batch-ca --workspace "$ws" --batch ../x --eid-prefix $prefix --manufacturer "Acme Devices"
expect_fail 1 "batch CA with the wrong root PIN" env TRUSTCHAIN_ROOT_PIN=wrong "$TC" pki batch-ca --workspace "$ws" --batch B0 --eid-prefix $prefix --manufacturer "Acme Devices"
expect_ok "batch CA" "$TC" pki batch-ca --workspace "$ws" --batch B1 --eid-prefix $prefix --manufacturer "Acme Devices" --crl-url http://pki.example.com/root.crl --json
expect_contains "batch CA json" "$out" '"batch":"B1","eid_prefix":"890490321234"'
expect_ok "batch CA 2" "$TC" pki batch-ca --workspace "$ws" --batch B2 --eid-prefix 8904903299 --manufacturer "Acme Devices"
expect_fail 2 "batch CA twice" "$TC" pki batch-ca --workspace "$ws" --batch B1 --eid-prefix $prefix --manufacturer "Acme Devices"
expect_ok "verify batch CA" "$TC" pki verify --workspace "$ws" "$ws/pki/batches/B1/ca.pem"
expect_contains "batch CA OK" "$out" "OK: batch CA B1"

# --- issue
device d1 "$eid1" "$nonce"
device d2 "$eid2" "$nonce"
issue() { "$TC" pki issue --workspace "$ws" --batch B1 --station st-01 --nonce "$nonce" "$@"; }
expect_ok "issue" issue --eid "$eid1" --pubkey "$(cat "$scratch/d1.point")" --pop "$(cat "$scratch/d1.pop")" --out "$scratch/d1.pem"
expect_contains "issue names the EID" "$out" "for EID $eid1 in batch B1"
expect_ok "issue 2 (json)" issue --eid "$eid2" --pubkey "$(cat "$scratch/d2.point")" --pop "$(cat "$scratch/d2.pop")" --out "$scratch/d2.pem" --json
expect_contains "issue json" "$out" "\"eid\":\"$eid2\""
expect_fail 1 "bad PoP refused" issue --eid "$eid1" --pubkey "$(cat "$scratch/d1.point")" --pop "$(cat "$scratch/d2.pop")"
expect_contains "bad PoP says why" "$err" "proof of possession does not verify"
expect_fail 1 "PoP under another nonce refused" "$TC" pki issue --workspace "$ws" --batch B1 --station st-01 --nonce 0f0e0d0c0b0a09080706050403020100 --eid "$eid1" --pubkey "$(cat "$scratch/d1.point")" --pop "$(cat "$scratch/d1.pop")"
expect_fail 1 "bad EID check digits refused" issue --eid 89049032123451234512345678901234 --pubkey "$(cat "$scratch/d1.point")" --pop "$(cat "$scratch/d1.pop")"
expect_contains "bad EID says why" "$err" "bad check digits"
expect_fail 1 "EID outside the batch refused" issue --eid "$eid_other" --pubkey "$(cat "$scratch/d1.point")" --pop "$(cat "$scratch/d1.pop")"
expect_contains "outside batch says why" "$err" "is outside batch B1 (EID prefix 890490321234)"
expect_fail 2 "short nonce" "$TC" pki issue --workspace "$ws" --batch B1 --station s --nonce 0001 --eid "$eid1" --pubkey 04 --pop 30
expect_fail 1 "unknown batch" "$TC" pki issue --workspace "$ws" --batch B9 --station s --nonce "$nonce" --eid "$eid1" --pubkey "$(cat "$scratch/d1.point")" --pop "$(cat "$scratch/d1.pop")"
expect_contains "unknown batch says why" "$err" "batch B9 has no CA"

# --- verify: trustchain, openssl, certtool
expect_ok "verify device" "$TC" pki verify --workspace "$ws" "$scratch/d1.pem"
expect_contains "verify OK" "$out" "OK: device EID $eid1, batch B1"
expect_ok "verify --json" "$TC" pki verify --workspace "$ws" "$scratch/d1.pem" --json
expect_contains "verify json" "$out" "\"valid\":true,\"kind\":\"device\",\"batch\":\"B1\""
p="$ws/pki"
ossl() { openssl verify -x509_strict -policy_check -crl_check_all -CAfile "$p/root.pem" -untrusted "$p/batches/B1/ca.pem" -CRLfile "$p/root-crl.pem" -CRLfile "$p/batches/B1/crl.pem" "$1"; }
expect_ok "openssl verify device" ossl "$scratch/d1.pem"
cat "$scratch/d1.pem" "$p/batches/B1/ca.pem" "$p/root.pem" >"$scratch/chain.pem"
expect_ok "certtool verify-chain" certtool --verify-chain --infile "$scratch/chain.pem"
cat "$p/root-crl.pem" "$p/batches/B1/crl.pem" >"$scratch/crls.pem"
cat "$scratch/d1.pem" "$p/batches/B1/ca.pem" >"$scratch/leaf.pem"
expect_ok "certtool verify with CRLs" certtool --verify --load-ca-certificate "$p/root.pem" --load-crl "$scratch/crls.pem" --infile "$scratch/leaf.pem"
# a tampered certificate (one byte of the signature)
openssl x509 -in "$scratch/d1.pem" -outform DER >"$scratch/d1.der"
last=$(tail -c 1 "$scratch/d1.der" | tohex)
{ head -c -1 "$scratch/d1.der"; printf '%02x' $((0x$last ^ 1)) | unhex; } >"$scratch/bad.der"
expect_fail 1 "tampered signature fails" "$TC" pki verify --workspace "$ws" "$scratch/bad.der"
expect_contains "tampered says why" "$err" "device certificate: certificate signature failure"

# --- revoke a device
expect_fail 2 "revoke needs serial or EID" "$TC" pki revoke --workspace "$ws" --batch B1
expect_fail 1 "revoke an unknown EID" "$TC" pki revoke --workspace "$ws" --batch B1 --eid "$eid_other"
expect_ok "revoke device" "$TC" pki revoke --workspace "$ws" --batch B1 --eid "$eid1" --reason keyCompromise
expect_contains "revoke publishes CRL 2" "$out" "(number 2)"
expect_fail 1 "revoke twice" "$TC" pki revoke --workspace "$ws" --batch B1 --eid "$eid1"
expect_fail 1 "revoked device fails" "$TC" pki verify --workspace "$ws" "$scratch/d1.pem"
expect_contains "revoked device says why" "$err" "device certificate: certificate revoked"
rc=0; out=$("$TC" pki verify --workspace "$ws" "$scratch/d1.pem" --json 2>/dev/null) || rc=$?
[ $rc -eq 1 ] && pass "revoked device fails (json)" || fail "revoked device fails (json)" "exit $rc"
expect_contains "json reason" "$out" '"valid":false,"kind":"device","batch":"B1"'
expect_contains "json reason text" "$out" '"reason":"device certificate: certificate revoked"'
rc=0; ossl "$scratch/d1.pem" >/dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] && pass "openssl rejects the revoked device" || fail "openssl rejects the revoked device" "exit 0"
cat "$p/root-crl.pem" "$p/batches/B1/crl.pem" >"$scratch/crls.pem"
rc=0; certtool --verify --load-ca-certificate "$p/root.pem" --load-crl "$scratch/crls.pem" --infile "$scratch/leaf.pem" >/dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] && pass "certtool rejects the revoked device" || fail "certtool rejects the revoked device" "exit 0"
expect_ok "other device still valid" "$TC" pki verify --workspace "$ws" "$scratch/d2.pem"
expect_ok "openssl: other device still valid" ossl "$scratch/d2.pem"

# --- CRLs
expect_ok "batch CRL" "$TC" pki crl --workspace "$ws" --batch B1 --json
expect_contains "batch CRL number 3" "$out" '"crl_number":3'
expect_ok "root CRL" "$TC" pki crl --workspace "$ws" --root
expect_contains "root CRL number 2" "$out" "(number 2)"
expect_fail 2 "crl needs one of --batch/--root" "$TC" pki crl --workspace "$ws"
crl_text=$(openssl crl -in "$p/batches/B1/crl.pem" -noout -text)
expect_contains "CRL lists the device with its reason" "$crl_text" "Key Compromise"
expect_contains "CRL has a CRL number" "$crl_text" "X509v3 CRL Number"

# --- revoke a batch
expect_ok "revoke batch" "$TC" pki revoke-batch --workspace "$ws" --batch B1 --reason cACompromise
expect_fail 1 "device of a revoked batch fails" "$TC" pki verify --workspace "$ws" "$scratch/d2.pem"
expect_contains "revoked batch says why" "$err" "batch CA certificate: certificate revoked"
rc=0; ossl "$scratch/d2.pem" >/dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] && pass "openssl rejects the revoked batch" || fail "openssl rejects the revoked batch" "exit 0"
expect_fail 1 "revoke batch twice" "$TC" pki revoke-batch --workspace "$ws" --batch B1
expect_ok "the other batch is unaffected" "$TC" pki verify --workspace "$ws" "$ws/pki/batches/B2/ca.pem"
# --- a certificate the line issued: in the registry, not in issued.txt
wsl="$scratch/wsl"
L=LINE-P1
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN # init writes PIN files
line_workspace "$wsl" $L "$scratch/vendor.keys" "Line Test" "line: "
lpin="$wsl/secrets/user.pin"
expect_ok "line: provision 2 cards" "$TC" line run --workspace "$wsl" --batch $L --count 2 \
  --emulate "$scratch/cards" --vendor-keys "$scratch/vendor.keys" --pin-file "$lpin"
expect_ok "line: device list" "$TC" device list --workspace "$wsl" --batch $L --json
leids=$(printf '%s' "$out" | grep -o '"eid":"[0-9]*"' | sed 's/"eid":"\([0-9]*\)"/\1/')
leid=$(printf '%s\n' "$leids" | sed -n 1p)
leid2=$(printf '%s\n' "$leids" | sed -n 2p)
[ ${#leid} -eq 32 ] && [ ${#leid2} -eq 32 ] && pass "line: two EIDs" || fail "line: two EIDs" "'$leids'"
rc=0; grep -q "$leid" "$wsl/pki/batches/$L/issued.txt" 2>/dev/null || rc=1
[ $rc -eq 1 ] && pass "line: issued.txt does not list it" || fail "line: issued.txt does not list it" "listed"
expect_ok "line: device cert" "$TC" device cert "$leid" --workspace "$wsl"
printf '%s\n' "$out" >"$scratch/line1.pem"
expect_ok "line: cert 2" "$TC" device cert "$leid2" --workspace "$wsl"
printf '%s\n' "$out" >"$scratch/line2.pem"
expect_ok "line: verifies before" "$TC" pki verify --workspace "$wsl" "$scratch/line1.pem"
expect_fail 1 "line: EID of another batch" "$TC" pki revoke --workspace "$wsl" --batch B9 --eid "$leid" \
  --pin-file "$lpin"
expect_fail 1 "line: unknown EID" "$TC" pki revoke --workspace "$wsl" --batch $L \
  --eid 89049032000000000000000000000000 --pin-file "$lpin"
expect_contains "line: unknown EID says why" "$err" "was not issued a certificate by this batch"
expect_ok "line: pki revoke --eid" "$TC" pki revoke --workspace "$wsl" --batch $L --eid "$leid" \
  --reason keyCompromise --pin-file "$lpin"
expect_contains "line: revoked serial" "$out" "revoked device "
expect_fail 1 "line: revoked per pki verify" "$TC" pki verify --workspace "$wsl" "$scratch/line1.pem"
expect_contains "line: revoked says why" "$err" "device certificate: certificate revoked"
expect_fail 1 "line: revoke twice" "$TC" pki revoke --workspace "$wsl" --batch $L --eid "$leid" \
  --pin-file "$lpin"
expect_contains "line: twice says why" "$err" "already revoked"
# By serial (the form `device revoke` uses).
lser=$(openssl x509 -in "$scratch/line2.pem" -noout -serial | sed 's/serial=//')
expect_fail 1 "line: unknown serial" "$TC" pki revoke --workspace "$wsl" --batch $L --serial 7F0102 \
  --pin-file "$lpin"
expect_ok "line: pki revoke --serial" "$TC" pki revoke --workspace "$wsl" --batch $L --serial "$lser" \
  --pin-file "$lpin"
expect_fail 1 "line: 2 revoked per pki verify" "$TC" pki verify --workspace "$wsl" "$scratch/line2.pem"
expect_contains "line: 2 revoked says why" "$err" "device certificate: certificate revoked"
finish
