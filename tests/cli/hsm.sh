# trustchain hsm: init/info/keys/generate/import-transport against SoftHSM2
# running with the workspace's own config and token directory. PINs only
# from the environment or files; none is ever printed.
. "$(dirname "$0")/lib.sh"

ws="$scratch/ws"
so_pin="so-pin-7f3a9c"
user_pin="user-pin-51e2d8"
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_WORKSPACE

# --- init refuses PINs on the command line and needs both PINs
expect_fail 2 "init refuses --pin" "$TC" hsm init --workspace "$ws" --pin 1234
expect_contains "--pin rejection says why" "$err" "PINs are not accepted on the command line"
expect_fail 2 "init without PINs" "$TC" hsm init --workspace "$ws"
expect_contains "missing PIN names the variable" "$err" "TRUSTCHAIN_HSM_SO_PIN"
[ ! -e "$ws" ] && pass "nothing created without PINs" || fail "nothing created without PINs" "$ws exists"

# --- init: SO PIN from a file, user PIN from the environment
printf '%s\n' "$so_pin" >"$scratch/so.pin"
export TRUSTCHAIN_HSM_PIN="$user_pin"
expect_ok "init" "$TC" hsm init --workspace "$ws" --so-pin-file "$scratch/so.pin"
expect_contains "init names the config" "$out" "created $(cd "$ws" && pwd)/hsm/softhsm2.conf"
expect_contains "init names the token dir" "$out" "/hsm/tokens/"
expect_contains "init names the token" "$out" "initialised token 'trustchain'"
case "$out" in *"$so_pin"* | *"$user_pin"*) fail "init never prints a PIN" "PIN in output" ;;
  *) pass "init never prints a PIN" ;; esac
conf=$(cat "$ws/hsm/softhsm2.conf")
expect_contains "config has its own token dir" "$conf" "directories.tokendir = $(cd "$ws" && pwd)/hsm/tokens"
case "$conf" in *"/var/lib/softhsm"* | *"/etc/softhsm"*) fail "no system paths" "$conf" ;;
  *) pass "no system paths" ;; esac
[ -n "$(ls "$ws/hsm/tokens")" ] && pass "token stored in the workspace" || fail "token stored in the workspace" "empty"
expect_fail 1 "init twice" "$TC" hsm init --workspace "$ws" --so-pin-file "$scratch/so.pin"
expect_contains "init twice says why" "$err" "a token labelled 'trustchain' already exists"
expect_ok "init --json" env TRUSTCHAIN_HSM_SO_PIN=$so_pin "$TC" hsm init --workspace "$scratch/ws3" --label line-2 --json
expect_contains "init json label" "$out" '"token_label":"line-2"'
expect_contains "init json config" "$out" '"softhsm_conf":"'"$(cd "$scratch/ws3" && pwd)"'/hsm/softhsm2.conf"'
case "$out" in *"$so_pin"* | *"$user_pin"*) fail "init --json never prints a PIN" "PIN in output" ;;
  *) pass "init --json never prints a PIN" ;; esac
expect_fail 2 "bad token label" env TRUSTCHAIN_HSM_SO_PIN=$so_pin "$TC" hsm init --workspace "$scratch/ws2" --label "this-label-is-far-too-long-for-pkcs11"

# --- info: no PIN needed; the mechanisms trustchain uses
expect_ok "info" env -u TRUSTCHAIN_HSM_PIN "$TC" hsm info --workspace "$ws"
expect_contains "info module" "$out" "module:        /usr/lib/softhsm/libsofthsm2.so"
expect_contains "info token" "$out" "token:         'trustchain' (model SoftHSM v2"
expect_contains "info slots" "$out" "slots:         2"
expect_contains "info slot with our token" "$out" "token 'trustchain'"
expect_contains "info free slot" "$out" "uninitialised token"
expect_contains "info CMAC" "$out" "CKM_AES_CMAC                 supported"
expect_contains "info derive" "$out" "CKM_AES_ECB_ENCRYPT_DATA     supported"
expect_contains "info EdDSA" "$out" "CKM_EDDSA                    supported"
expect_ok "info --json" "$TC" hsm info --workspace "$ws" --json
expect_contains "info json token" "$out" '"token_label":"trustchain"'
expect_contains "info json mechanism" "$out" '{"name":"CKM_AES_CBC","purpose":"PUT KEY key blocks","supported":true}'
export TRUSTCHAIN_WORKSPACE="$ws"
expect_ok "workspace from the environment" "$TC" hsm info
unset TRUSTCHAIN_WORKSPACE

# --- the clear errors
expect_fail 1 "module missing" "$TC" hsm info --workspace "$ws" --module /nonexistent/pkcs11.so
expect_contains "module missing says so" "$err" "cannot load PKCS#11 module '/nonexistent/pkcs11.so'"
expect_fail 1 "token missing" "$TC" hsm info --workspace "$ws" --label other-token
expect_contains "token missing says so" "$err" "no initialised token labelled 'other-token'"
expect_fail 1 "wrong PIN" env TRUSTCHAIN_HSM_PIN=wrong-pin "$TC" hsm keys --workspace "$ws"
expect_contains "wrong PIN says so" "$err" "wrong user PIN for token 'trustchain' (CKR_PIN_INCORRECT)"
expect_fail 1 "workspace without HSM" "$TC" hsm info --workspace "$scratch"
expect_contains "workspace without HSM says so" "$err" "has no HSM (run 'trustchain hsm init')"
expect_fail 2 "keys without a PIN" env -u TRUSTCHAIN_HSM_PIN "$TC" hsm keys --workspace "$ws"
expect_fail 2 "unknown option" "$TC" hsm info --workspace "$ws" --bogus
expect_fail 2 "unknown subcommand" "$TC" hsm nothing
expect_fail 2 "no subcommand" "$TC" hsm
expect_ok "help" "$TC" hsm --help
expect_contains "help says PINs stay off argv" "$out" "PINs are never accepted on the command line"

# --- keys: empty, then generated and imported keys (attributes, never values)
printf '%s\n' "$user_pin" >"$scratch/user.pin"
expect_ok "keys on an empty token" env -u TRUSTCHAIN_HSM_PIN "$TC" hsm keys --workspace "$ws" --pin-file "$scratch/user.pin"
expect_contains "empty token" "$out" "no trustchain keys in token 'trustchain'"
expect_ok "generate master" "$TC" hsm generate --workspace "$ws" --master line1 --bits 256
expect_contains "master label" "$out" "generated tc:master:line1"
expect_fail 1 "generate master twice" "$TC" hsm generate --workspace "$ws" --master line1
expect_contains "duplicate label" "$err" "an HSM key labelled 'tc:master:line1' already exists"
expect_ok "generate batch CA" "$TC" hsm generate --workspace "$ws" --keypair tc:batch-ca:B7 --alg p256 --json
expect_contains "batch CA SPKI" "$out" '"spki":"3059301306072A8648CE3D020106082A8648CE3D03010703420004'
expect_ok "generate checkpoint key" "$TC" hsm generate --workspace "$ws" --keypair tc:audit:checkpoint --alg ed25519
expect_contains "Ed25519 SPKI" "$out" "public key (SPKI DER): 302A300506032B6570032100"
expect_fail 2 "keypair needs --alg" "$TC" hsm generate --workspace "$ws" --keypair tc:x:y
expect_fail 2 "unknown alg" "$TC" hsm generate --workspace "$ws" --keypair tc:x:y --alg rsa
expect_fail 2 "bits 192" "$TC" hsm generate --workspace "$ws" --master m2 --bits 192
printf 'ENC = 404142434445464748494A4B4C4D4E4F\nMAC = 404142434445464748494A4B4C4D4E4F\nDEK = 404142434445464748494A4B4C4D4E4F\n' >"$scratch/transport.keys"
expect_ok "import transport keyset" "$TC" hsm import-transport --workspace "$ws" --batch B7 --kvn 0x30 --key-file "$scratch/transport.keys"
# GP default AES key 40..4F has KCV 504A77 (GlobalPlatformPro, Amendment D §7.2 KCV).
expect_contains "transport KCV" "$out" "imported tc:transport:B7:30:dek (KCV 504A77)"
printf 'ENC = 4041\n' >"$scratch/bad.keys"
expect_fail 2 "bad key file" "$TC" hsm import-transport --workspace "$ws" --batch B8 --kvn 1 --key-file "$scratch/bad.keys"
expect_contains "bad key file names the line" "$err" "bad.keys: key file line 1: ENC must be 16 or 32 bytes of hex"
expect_fail 2 "kvn range" "$TC" hsm import-transport --workspace "$ws" --batch B8 --kvn 200 --key-file "$scratch/transport.keys"
expect_ok "keys" "$TC" hsm keys --workspace "$ws"
expect_contains "keys master" "$out" "tc:master:line1 "
expect_contains "keys master type" "$out" "secret  AES        256 bits  id "
expect_contains "master policy" "$out" "token,sensitive,never-extractable,derive"
expect_contains "keys CA private" "$out" "private EC         P-256     id "
expect_contains "keys checkpoint" "$out" "public  EC_EDWARDS Ed25519   id "
expect_contains "keys checkpoint private" "$out" "private EC_EDWARDS Ed25519   id "
expect_contains "keys transport dek" "$out" "tc:transport:B7:30:dek"
case "$out" in *404142434445*) fail "keys never prints a value" "key bytes in output" ;;
  *) pass "keys never prints a value" ;; esac
expect_ok "keys --json" "$TC" hsm keys --workspace "$ws" --json
expect_contains "keys json" "$out" '{"label":"tc:master:line1","id":"'
expect_contains "keys json attributes" "$out" '"class":"private","key_type":"EC","curve":"P-256","attributes":"token,sensitive,never-extractable,sign"}'
finish
