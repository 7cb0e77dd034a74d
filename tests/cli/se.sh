# trustchain se new / show: creating card images and printing what is safe.
# KCVs were computed independently with `openssl enc -aes-*-ecb -nopad` over
# 16 bytes 01 (the AES key check value of GP Card Specification 2.3).
. "$(dirname "$0")/lib.sh"

img="$scratch/card.img"
gp_key=404142434445464748494A4B4C4D4E4F
k256=000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F

expect_ok "se --help lists the commands" "$TC" se --help
expect_contains "help names new" "$out" "new"
expect_contains "help names show" "$out" "show"
expect_contains "help names serve" "$out" "serve"
expect_ok "se new --help" "$TC" se new --help
expect_contains "new help names --key-file" "$out" "--key-file"

expect_ok "se new with the defaults" "$TC" se new --state "$img"
expect_contains "new reports the EID" "$out" "EID 89049032123451234512345678901235"
expect_contains "new reports the factory keyset" "$out" "KVN 30 AES-128 (KCV ENC 504A77)"
mode=$(stat -c %a "$img")
if [ "$mode" = 600 ]; then pass "image is mode 600"; else fail "image is mode 600" "mode $mode"; fi
expect_fail 1 "se new refuses to overwrite" "$TC" se new --state "$img"
expect_contains "the refusal names --force" "$err" "--force"
expect_ok "se new --force overwrites" "$TC" se new --state "$img" --force

expect_ok "se show" "$TC" se show --state "$img"
expect_contains "show: EID" "$out" "EID               89049032123451234512345678901235"
expect_contains "show: ISD AID" "$out" "ISD AID           A000000151000000"
expect_contains "show: life cycle" "$out" "life cycle        OP_READY (01)"
expect_contains "show: keyset" "$out" "KVN 30 AES-128 KCV ENC 504A77 MAC 504A77 DEK 504A77"
expect_contains "show: i-parameter" "$out" "70 (S8, pseudo-random challenge, R-MAC, R-ENC)"
expect_contains "show: KDD (last 10 bytes of the EID)" "$out" "KDD               51234512345678901235"
expect_contains "show: applet" "$out" "identity applet   F0747275737463680101 SELECTABLE (07)"
expect_contains "show: no key pair yet" "$out" "public key        none"
expect_contains "show: sequence counter" "$out" "sequence counter  0"
case "$out" in *4041424344454647*) fail "show never prints a key" "key bytes in output" ;; *) pass "show never prints a key" ;; esac
expect_ok "se show --json" "$TC" se show --state "$img" --json
expect_contains "json: keyset" "$out" '"kvn":48,"type":"AES","length":16,"kcv_enc":"504A77"'
expect_contains "json: life cycle" "$out" '"life_cycle":"OP_READY"'
expect_contains "json: applet" "$out" '"state":"SELECTABLE","public_key":null,"pending_public_key":null,"certificate":null'
case "$out" in *4041424344454647*) fail "json never prints a key" "key bytes in output" ;; *) pass "json never prints a key" ;; esac
expect_contains "json: no pending key" "$out" '"pending_public_key":null'
expect_contains "show: no pending key" "$("$TC" se show --state "$img")" "pending key       none"

# A renewal key pair (identity applet GENERATE KEY P1 02, docs/identity-applet.md)
# is shown by its public key only: the key pair is made through the secure
# channel (random card challenge, i = 60, so the applet can be selected first).
pimg="$scratch/pending.img"
expect_ok "se new for a renewal" "$TC" se new --state "$pimg" --i-param 60
applet=F0747275737463680101
expect_ok "GENERATE KEY (active)" "$TC" gp apdu 80400000100102030405060708090A0B0C0D0E0F1000 \
  --se "$pimg" --aid $applet --mode enc
active=$(printf '%s' "$out" | head -n 1 | cut -c5-134)
expect_ok "GENERATE KEY P1 02 (pending)" "$TC" gp apdu 80400200101112131415161718191A1B1C1D1E1F2000 \
  --se "$pimg" --aid $applet --mode enc
pending=$(printf '%s' "$out" | head -n 1 | cut -c5-134)
if [ ${#pending} = 130 ] && [ "$pending" != "$active" ]; then pass "two distinct public keys"; else
  fail "two distinct public keys" "active '$active' pending '$pending'"; fi
expect_ok "se show with a pending key" "$TC" se show --state "$pimg"
expect_contains "show: active key unchanged" "$out" "public key        $active"
expect_contains "show: pending key" "$out" "pending key       $pending"
expect_ok "se show --json with a pending key" "$TC" se show --state "$pimg" --json
expect_contains "json: pending key" "$out" "\"pending_public_key\":\"$pending\""
expect_contains "json: active key" "$out" "\"public_key\":\"$active\""

img2="$scratch/card2.img"
expect_ok "se new with every option" "$TC" se new --state "$img2" --eid 89049032000000000000000000000042 \
  --isd-aid A0000001515350 --kvn 0x31 --key "$k256" --i-param 71 --kdd 00112233445566778899 --seq 0x10
expect_ok "show the custom card" "$TC" se show --state "$img2"
expect_contains "custom EID" "$out" "89049032000000000000000000000042"
expect_contains "custom ISD AID" "$out" "ISD AID           A0000001515350"
expect_contains "custom keyset" "$out" "KVN 31 AES-256 KCV ENC 75E208"
expect_contains "custom i" "$out" "71 (S16, pseudo-random challenge, R-MAC, R-ENC)"
expect_contains "custom KDD" "$out" "KDD               00112233445566778899"
expect_contains "custom sequence counter" "$out" "sequence counter  16"
case "$out" in *000102030405060708090A0B*) fail "custom key not printed" "key bytes in output" ;; *) pass "custom key not printed" ;; esac

img3="$scratch/card3.img"
expect_ok "se new with three keys" "$TC" se new --state "$img3" --key-enc "$gp_key" \
  --key-mac 000102030405060708090A0B0C0D0E0F --key-dek 000102030405060708090A0B0C0D0E0F
expect_ok "show three keys" "$TC" se show --state "$img3"
expect_contains "three KCVs" "$out" "KCV ENC 504A77 MAC"
kf="$scratch/keys.txt"
printf '# factory keys\nenc = %s\nmac = %s\ndek = %s\n' "$k256" "$k256" "$k256" >"$kf"
expect_ok "se new --key-file with named keys" "$TC" se new --state "$img3" --force --key-file "$kf"
expect_ok "show key-file card" "$TC" se show --state "$img3"
expect_contains "key-file keys" "$out" "KVN 30 AES-256 KCV ENC 75E208 MAC 75E208 DEK 75E208"
printf '%s\n' "$gp_key" >"$kf"
expect_ok "se new --key-file with one key" "$TC" se new --state "$img3" --force --key-file "$kf"

# Rejections: one line on stderr, exit 2 for bad input.
n="$scratch/x.img"
expect_fail 2 "new without --state" "$TC" se new
expect_fail 2 "new with an unknown option" "$TC" se new --state "$n" --bogus 1
expect_fail 2 "new with a missing value" "$TC" se new --state
expect_fail 2 "new with a non-hex EID" "$TC" se new --state "$n" --eid 8904903212345123451234567890123Z
expect_fail 2 "new with a short EID" "$TC" se new --state "$n" --eid 8904
expect_fail 2 "new with a 4-byte ISD AID" "$TC" se new --state "$n" --isd-aid A0000001
expect_fail 2 "new with KVN 0" "$TC" se new --state "$n" --kvn 0
expect_fail 2 "new with KVN 200" "$TC" se new --state "$n" --kvn 200
expect_fail 2 "new with a 15-byte key" "$TC" se new --state "$n" --key 404142434445464748494A4B4C4D4E
expect_fail 2 "new with --key and --key-enc" "$TC" se new --state "$n" --key "$gp_key" --key-enc "$gp_key"
expect_fail 2 "new with --key-enc alone" "$TC" se new --state "$n" --key-enc "$gp_key"
expect_fail 2 "new with keys of two lengths" "$TC" se new --state "$n" --key-enc "$gp_key" \
  --key-mac "$gp_key" --key-dek "$k256"
expect_fail 2 "new with an RFU i-parameter bit" "$TC" se new --state "$n" --i-param 72
expect_fail 2 "new with R-ENC but no R-MAC" "$TC" se new --state "$n" --i-param 40
expect_fail 2 "new with a 2-byte i-parameter" "$TC" se new --state "$n" --i-param 7070
expect_fail 2 "new with a short KDD" "$TC" se new --state "$n" --kdd 0011
expect_fail 2 "new with a sequence counter past 24 bits" "$TC" se new --state "$n" --seq 0x1000000
expect_fail 2 "new with a missing key file" "$TC" se new --state "$n" --key-file "$scratch/none"
printf 'enc = %s\nmac = %s\n' "$gp_key" "$gp_key" >"$kf"
expect_fail 2 "new with an incomplete key file" "$TC" se new --state "$n" --key-file "$kf"
printf 'foo = %s\n' "$gp_key" >"$kf"
expect_fail 2 "new with an unknown key name" "$TC" se new --state "$n" --key-file "$kf"
if [ -e "$n" ]; then fail "rejected new leaves no file" "$n exists"; else pass "rejected new leaves no file"; fi
expect_fail 2 "show without --state" "$TC" se show
expect_fail 2 "show with an unknown option" "$TC" se show --state "$img" --bogus
expect_fail 1 "show of a missing file" "$TC" se show --state "$scratch/none.img"
head -c 100 "$img" >"$scratch/short.img"
expect_fail 2 "show of a truncated image" "$TC" se show --state "$scratch/short.img"
expect_contains "truncated image is named" "$err" "no intact copy"
expect_fail 2 "unknown se command" "$TC" se frobnicate
finish
