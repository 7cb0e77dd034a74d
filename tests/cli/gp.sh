# trustchain gp: every subcommand and its rejections, against card images
# made with `trustchain se new` (in process, --se), plus the TCP card server
# (`trustchain se serve --tcp`). The PC/SC path is tests/integration.
. "$(dirname "$0")/lib.sh"

testkey=404142434445464748494A4B4C4D4E4F
newkey=000102030405060708090A0B0C0D0E0F
newkey24=00112233445566778899AABBCCDDEEFF0011223344556677
card="$scratch/card.img"
"$TC" se new --state "$card" >/dev/null || { fail "se new" "cannot create a card"; finish; exit 1; }
fresh() { "$TC" se new --state "$1" "${@:2}" >/dev/null || fail "se new $1" "failed"; }

# ---------------------------------------------------------------- help and usage
expect_ok "gp --help" "$TC" gp --help
expect_contains "help lists put-keys" "$out" "put-keys"
expect_contains "help lists targets" "$out" "--reader NAME"
expect_fail 2 "no gp command" "$TC" gp
expect_fail 2 "unknown gp command" "$TC" gp frobnicate --se "$card"
expect_contains "unknown command named" "$err" "'frobnicate' is not a gp command"
expect_fail 2 "unknown option" "$TC" gp info --se "$card" --bogus
expect_fail 2 "option without value" "$TC" gp info --se
expect_fail 2 "no target" "$TC" gp info
expect_contains "no target says which" "$err" "exactly one target"
expect_fail 2 "two targets" "$TC" gp info --se "$card" --tcp 127.0.0.1:1
expect_fail 2 "--kvn out of range" "$TC" gp info --se "$card" --kvn 256
expect_fail 2 "--kvn not a number" "$TC" gp info --se "$card" --kvn thirty
expect_fail 2 "--mode unknown" "$TC" gp info --se "$card" --mode max
expect_fail 2 "--key bad hex" "$TC" gp info --se "$card" --key 40414243444546474849ZZ
expect_fail 2 "--key wrong length" "$TC" gp info --se "$card" --key 4041424344454647
expect_fail 2 "--key and --key-enc" "$TC" gp info --se "$card" --key $testkey --key-enc $testkey
expect_fail 2 "--key-enc without mac/dek" "$TC" gp info --se "$card" --key-enc $testkey
expect_fail 2 "keys of different lengths" "$TC" gp info --se "$card" --key-enc $testkey \
  --key-mac $testkey --key-dek $newkey24
expect_fail 2 "--key-file missing" "$TC" gp info --se "$card" --key-file "$scratch/none"
printf 'enc = %s\nenc = %s\n' $testkey $testkey >"$scratch/k-twice"
expect_fail 2 "--key-file key twice" "$TC" gp info --se "$card" --key-file "$scratch/k-twice"
printf 'enc = %s\nmac = %s\n' $testkey $testkey >"$scratch/k-short"
expect_fail 2 "--key-file without dek" "$TC" gp info --se "$card" --key-file "$scratch/k-short"
printf 'foo = %s\n' $testkey >"$scratch/k-name"
expect_fail 2 "--key-file unknown name" "$TC" gp info --se "$card" --key-file "$scratch/k-name"
printf '%s00\n' $testkey >"$scratch/k-len"
expect_fail 2 "--key-file bad key length" "$TC" gp info --se "$card" --key-file "$scratch/k-len"
expect_fail 2 "--aid too short" "$TC" gp info --se "$card" --aid A00000
expect_fail 2 "--aid bad hex" "$TC" gp info --se "$card" --aid A0000001510000XX
expect_fail 2 "info takes no arguments" "$TC" gp info extra --se "$card"
expect_fail 2 "list takes no arguments" "$TC" gp list extra --se "$card"
expect_fail 2 "--tcp without port" "$TC" gp info --tcp 127.0.0.1
expect_fail 2 "delete-key without KVN" "$TC" gp delete-key --se "$card"
expect_fail 2 "delete-key KVN 0" "$TC" gp delete-key 0 --se "$card"
expect_fail 2 "delete-key KVN 128" "$TC" gp delete-key 0x80 --se "$card"
expect_fail 2 "delete-key bad key id" "$TC" gp delete-key 0x30 0 --se "$card"
expect_fail 2 "delete-key too many arguments" "$TC" gp delete-key 0x30 1 2 --se "$card"
expect_fail 2 "set-status without target" "$TC" gp set-status --se "$card"
expect_fail 2 "set-status card bad state" "$TC" gp set-status card sleeping --se "$card"
expect_fail 2 "set-status app bad action" "$TC" gp set-status app F0747275737463680101 nap \
  --se "$card"
expect_fail 2 "set-status app bad AID" "$TC" gp set-status app F074 lock --se "$card"
expect_fail 2 "put-keys without --new-kvn" "$TC" gp put-keys --se "$card" --new-key $newkey
expect_fail 2 "put-keys --new-kvn 0" "$TC" gp put-keys --se "$card" --new-kvn 0 --new-key $newkey
expect_fail 2 "put-keys without new keys" "$TC" gp put-keys --se "$card" --new-kvn 0x31
expect_fail 2 "put-keys bad new key" "$TC" gp put-keys --se "$card" --new-kvn 0x31 --new-key 00
expect_fail 2 "put-keys at --mode mac" "$TC" gp put-keys --se "$card" --new-kvn 0x31 \
  --new-key $newkey --mode mac
expect_contains "put-keys needs C-DEC" "$err" "C-DECRYPTION"
expect_fail 2 "put-keys takes no arguments" "$TC" gp put-keys x --se "$card" --new-kvn 0x31 \
  --new-key $newkey
expect_fail 2 "apdu without HEX" "$TC" gp apdu --se "$card"
expect_fail 2 "apdu bad hex" "$TC" gp apdu 80CA00XX --se "$card"
expect_fail 2 "apdu Lc past the end" "$TC" gp apdu 80CA000005AABB --se "$card"
expect_contains "apdu error names the APDU and the cause" "$err" \
  "APDU 1 ('80CA000005AABB') is not a command APDU: byte 5: Lc of 5"
expect_fail 2 "apdu too short" "$TC" gp apdu 80CA00 --se "$card"
expect_fail 2 "readers takes no arguments" "$TC" gp readers extra

# ---------------------------------------------------------------- failures (exit 1)
expect_fail 1 "image missing" "$TC" gp info --se "$scratch/none.img"
expect_fail 1 "wrong keys" "$TC" gp info --se "$card" --key $newkey
expect_contains "wrong keys: cryptogram" "$err" "secure channel"
expect_fail 1 "S16 on an S8 card" "$TC" gp info --se "$card" --s16
expect_fail 1 "unknown KVN" "$TC" gp info --se "$card" --kvn 0x55
expect_fail 1 "GET STATUS needs C-MAC" "$TC" gp list --se "$card" --mode clr
expect_contains "card's refusal named" "$err" "6982"
expect_fail 1 "SELECT of an absent AID" "$TC" gp info --se "$card" --aid A0000001510000FF
expect_fail 1 "delete-key of an absent keyset" "$TC" gp delete-key 0x55 --se "$card"
expect_fail 1 "set-status OP_READY to SECURED skips a state" "$TC" gp set-status card secured \
  --se "$card"
expect_contains "set-status refusal" "$err" "6985"
expect_fail 1 "--tcp nobody listening" "$TC" gp info --tcp 127.0.0.1:1
PCSCLITE_CSOCK_NAME="$scratch/no-pcscd.comm" expect_fail 1 "readers without pcscd" \
  "$TC" gp readers
expect_contains "no pcscd named" "$err" "pcscd"
PCSCLITE_CSOCK_NAME="$scratch/no-pcscd.comm" expect_fail 1 "--reader without pcscd" \
  "$TC" gp info --reader anything

# ---------------------------------------------------------------- info, list, apdu
expect_ok "info" "$TC" gp info --se "$card"
expect_contains "info: ISD" "$out" "ISD: A000000151000000"
expect_contains "info: ATR" "$out" "ATR: 3B"
expect_contains "info: CPLC" "$out" "ic_fabricator"
expect_contains "info: keys" "$out" "KVN 30 id 01 type 88 (AES) length 16"
expect_contains "info: life cycle" "$out" "Life cycle: OP_READY (01)"
expect_contains "info: sequence counter" "$out" "Sequence counter: "
expect_contains "info: card data" "$out" "Card data: 73"
expect_ok "info --json" "$TC" gp info --se "$card" --json
expect_contains "info --json ISD" "$out" '"isd_aid":"A000000151000000"'
expect_contains "info --json keys" "$out" '{"kvn":48,"id":1,"type":136,"length":16}'
expect_contains "info --json life cycle" "$out" '"life_cycle":{"value":1,"name":"OP_READY"}'
expect_ok "list" "$TC" gp list --se "$card"
expect_contains "list: ISD" "$out" "ISD      A000000151000000 (OP_READY)"
expect_contains "list: applet" "$out" "APP      F0747275737463680101 (SELECTABLE)"
expect_contains "list: load file" "$out" "PKG      F07472757374636801 (LOADED)"
expect_contains "list: module" "$out" "module F0747275737463680101"
expect_ok "list --json" "$TC" gp list --se "$card" --json
expect_contains "list --json" "$out" '"applications":[{"aid":"F0747275737463680101","state":7'
for mode in clr mac enc rmac renc; do
  expect_ok "apdu --mode $mode" "$TC" gp apdu 80CA00C100 80CA004200 --se "$card" --mode $mode
  expect_contains "apdu --mode $mode: GET DATA C1" "$out" "C103"
  expect_contains "apdu --mode $mode: IIN" "$out" "42"
done
expect_ok "apdu --json" "$TC" gp apdu 80CA004500 --se "$card" --json
expect_contains "apdu --json" "$out" '"command":"80CA004500","data":"4510'
expect_ok "apdu with spaces in the hex" "$TC" gp apdu "80 CA 00 45 00" --se "$card"
expect_ok "apdu: a card error SW is output, not failure" "$TC" gp apdu 80CA00FF00 --se "$card"
expect_contains "apdu 6A88" "$out" "6A88"
expect_ok "--kvn 0x30 and --aid" "$TC" gp apdu 80CA00C100 --se "$card" --kvn 0x30 \
  --aid A000000151000000
expect_ok "--kvn 48 (decimal)" "$TC" gp apdu 80CA00C100 --se "$card" --kvn 48
expect_ok "--extended" "$TC" gp apdu 80CA00C100 --se "$card" --extended --mode renc
expect_ok "--key-enc/--key-mac/--key-dek" "$TC" gp apdu 80CA00C100 --se "$card" \
  --key-enc $testkey --key-mac $testkey --key-dek $testkey
printf '# the GP test keys\n%s\n' $testkey >"$scratch/k-one"
expect_ok "--key-file with one key" "$TC" gp apdu 80CA00C100 --se "$card" --key-file "$scratch/k-one"
printf 'enc = %s\nmac=%s  # comment\n\ndek =%s\n' $testkey $testkey $testkey >"$scratch/k-three"
expect_ok "--key-file with three keys" "$TC" gp apdu 80CA00C100 --se "$card" \
  --key-file "$scratch/k-three"

# --trace: each APDU before and after wrapping and each response; no key.
if "$TC" gp apdu 80CA00C100 --se "$card" --mode renc --trace >"$scratch/out" 2>"$scratch/trace"; then
  pass "--trace runs"
else
  fail "--trace runs" "$(cat "$scratch/trace")"
fi
trace=$(cat "$scratch/trace")
expect_contains "trace: plain command" "$trace" "> plain   80CA00C100"
expect_contains "trace: wrapped command" "$trace" "> wrapped 84CA00C1"
expect_contains "trace: raw response" "$trace" "< raw     "
expect_contains "trace: plain response" "$trace" "< plain   C103"
case "$trace" in
  *"$testkey"*) fail "trace shows no key" "the static key appears" ;;
  *) pass "trace shows no key" ;;
esac

# ---------------------------------------------------------------- put-keys, delete-key
k2="$scratch/keys.img"
fresh "$k2"
expect_ok "put-keys adds a keyset" "$TC" gp put-keys --se "$k2" --new-kvn 0x31 --new-key $newkey
expect_contains "put-keys: KCVs" "$out" "Keyset 31 added; the card's KCVs match"
expect_contains "put-keys: KCV value" "$out" "enc C35280"
expect_ok "new keyset opens a channel" "$TC" gp apdu 80CA00E000 --se "$k2" --kvn 0x31 --key $newkey
expect_contains "key info lists both" "$out" "C00401318810"
"$TC" gp put-keys --se "$k2" --kvn 0x31 --key $newkey --new-kvn 0x32 --new-key $newkey24 \
  --replace 0x31 --mode renc --trace --json >"$scratch/out" 2>"$scratch/trace" &&
  pass "put-keys replaces with AES-192 at renc" || fail "put-keys replaces" "$(cat "$scratch/trace")"
expect_contains "put-keys --json" "$(cat "$scratch/out")" '"kvn":50,"replaced":49,"kcv":{"enc":'
case "$(cat "$scratch/trace")" in
  *"$newkey24"* | *"$newkey"*) fail "put-keys trace shows no key" "a key appears" ;;
  *) pass "put-keys trace shows no key" ;;
esac
expect_fail 1 "replaced keyset is gone" "$TC" gp info --se "$k2" --kvn 0x31 --key $newkey
expect_ok "AES-192 keyset works" "$TC" gp apdu 80CA00C100 --se "$k2" --kvn 0x32 --key $newkey24
expect_ok "delete-key" "$TC" gp delete-key 0x30 --se "$k2" --kvn 0x32 --key $newkey24
expect_contains "delete-key output" "$out" "Keyset 30 deleted"
expect_fail 1 "deleted keyset refused" "$TC" gp info --se "$k2" --kvn 0x30
expect_fail 1 "delete-key of the session's own keyset" "$TC" gp delete-key 0x32 --se "$k2" \
  --kvn 0x32 --key $newkey24
expect_ok "put-keys a third keyset" "$TC" gp put-keys --se "$k2" --kvn 0x32 --key $newkey24 \
  --new-kvn 0x33 --new-key $newkey
expect_ok "delete-key --json" "$TC" gp delete-key 0x33 --se "$k2" --kvn 0x32 --key $newkey24 --json
expect_contains "delete-key --json" "$out" '{"deleted_kvn":51,"key_id":null}'
expect_fail 1 "deleted keyset 33 refused" "$TC" gp info --se "$k2" --kvn 0x33 --key $newkey

# ---------------------------------------------------------------- set-status
k3="$scratch/status.img"
fresh "$k3"
expect_ok "set-status card initialized" "$TC" gp set-status card initialized --se "$k3"
expect_contains "set-status output" "$out" "INITIALIZED (07)"
expect_ok "set-status card secured (0x0F, --json)" "$TC" gp set-status card 0x0F --se "$k3" --json
expect_contains "set-status --json" "$out" '{"target":"card","state":15,"name":"SECURED"}'
expect_ok "set-status app lock" "$TC" gp set-status app F0747275737463680101 lock --se "$k3"
expect_ok "list shows the lock" "$TC" gp list --se "$k3"
expect_contains "app LOCKED" "$out" "F0747275737463680101 (LOCKED)"
expect_fail 1 "lock twice" "$TC" gp set-status app F0747275737463680101 lock --se "$k3"
expect_ok "set-status app unlock" "$TC" gp set-status app F0747275737463680101 unlock --se "$k3"
expect_fail 1 "set-status of an absent app" "$TC" gp set-status app A0000000000001 lock --se "$k3"
expect_ok "set-status card locked" "$TC" gp set-status card locked --se "$k3"
# GP CS 2.3 §11.9.3: SELECT of the ISD of a CARD_LOCKED card answers 6283.
expect_ok "locked card: SELECT by AID still opens a channel" "$TC" gp info --aid A000000151000000 --se "$k3"
expect_ok "set-status card secured again" "$TC" gp set-status card secured --se "$k3"
expect_ok "set-status card terminated" "$TC" gp set-status card terminated --se "$k3"
expect_fail 1 "terminated card: no secure channel" "$TC" gp info --se "$k3"

# ---------------------------------------------------------------- S16 card
k4="$scratch/s16.img"
fresh "$k4" --i-param 71
expect_ok "S16 at renc" "$TC" gp apdu 80CA00C100 --se "$k4" --s16 --mode renc
expect_fail 1 "S8 host on an S16 card" "$TC" gp info --se "$k4"

# ---------------------------------------------------------------- a T=0-style card
# SELECT answered 6C12, then the FCI behind 61xx: followed before the channel.
timeout -k 5 60 python3 "$(dirname "$0")/../transport/t0_card.py" "$scratch/t0.log" >"$scratch/t0.port" &
t0_pid=$!
t0_port=""
for _ in $(seq 50); do
  t0_port=$(head -n1 "$scratch/t0.port")
  [ -n "$t0_port" ] && break
  sleep 0.1
done
expect_fail 1 "SELECT through 6Cxx and 61xx, then INITIALIZE UPDATE" \
  timeout 30 "$TC" gp info --tcp "127.0.0.1:$t0_port"
expect_contains "the card's INITIALIZE UPDATE answer is reached" "$err" \
  "INITIALIZE UPDATE: card answered 6A88"
wait "$t0_pid" 2>/dev/null
expect_contains "SELECT resent with Le 12, two GET RESPONSEs" "$(tr '\n' ' ' <"$scratch/t0.log")" \
  "02 00A4040000 00A4040012 00C0000008 00C000000A 80500000"

# ---------------------------------------------------------------- se serve --tcp
expect_fail 2 "se serve without --state" "$TC" se serve --tcp 0
expect_fail 2 "se serve with both links" "$TC" se serve --state "$card" --tcp 0 --vpcd 1
expect_fail 2 "se serve without a link" "$TC" se serve --state "$card"
expect_fail 2 "se serve unknown argument" "$TC" se serve --state "$card" --tcp 0 --x
expect_fail 2 "se serve bad port" "$TC" se serve --state "$card" --tcp 127.0.0.1:99999
expect_fail 1 "se serve missing image" "$TC" se serve --state "$scratch/none.img" --tcp 0
k5="$scratch/tcp.img"
fresh "$k5"
timeout -k 5 120 "$TC" se serve --state "$k5" --tcp 127.0.0.1:0 >"$scratch/serve" 2>&1 &
serve_pid=$!
port=""
for _ in $(seq 50); do
  port=$(sed -n 's/^listening on 127.0.0.1 port \([0-9]*\)$/\1/p' "$scratch/serve")
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -n "$port" ]; then
  pass "se serve --tcp listens"
  expect_ok "gp info --tcp" timeout 30 "$TC" gp info --tcp "127.0.0.1:$port"
  expect_contains "gp info --tcp names the link" "$out" "Card: TCP card 127.0.0.1:$port"
  expect_ok "gp put-keys --tcp" timeout 30 "$TC" gp put-keys --tcp "127.0.0.1:$port" \
    --new-kvn 0x31 --new-key $newkey
  expect_ok "gp apdu --tcp at renc" timeout 30 "$TC" gp apdu 80CA00C100 \
    --tcp "127.0.0.1:$port" --mode renc --kvn 0x31 --key $newkey
else
  fail "se serve --tcp listens" "$(cat "$scratch/serve")"
fi
kill -TERM "$serve_pid" 2>/dev/null
rc=0
wait "$serve_pid" || rc=$?
[ "$rc" -eq 0 ] && pass "se serve stops on SIGTERM" || fail "se serve stops on SIGTERM" "exit $rc"
expect_contains "se serve says stopped" "$(cat "$scratch/serve")" "stopped"
expect_ok "state committed by the TCP card" "$TC" gp apdu 80CA00C100 --se "$k5" --kvn 0x31 \
  --key $newkey
# SIGINT (Ctrl-C) is a clean stop too.
timeout -k 5 120 "$TC" se serve --state "$k5" --tcp 0 >"$scratch/serve2" 2>&1 &
serve_pid=$!
for _ in $(seq 50); do grep -q "^listening on 127.0.0.1 port" "$scratch/serve2" && break; sleep 0.1; done
kill -INT "$serve_pid" 2>/dev/null
rc=0
wait "$serve_pid" || rc=$?
[ "$rc" -eq 0 ] && pass "se serve stops on SIGINT" || fail "se serve stops on SIGINT" "exit $rc"
expect_contains "se serve stopped after SIGINT" "$(cat "$scratch/serve2")" "stopped"
finish
