# trustchain audit: append canonical events, checkpoints signed by the
# workspace HSM's Ed25519 key, the verifier key, inclusion proofs checked
# here by an independent RFC 9162 §2.1.3.2 verifier (openssl dgst), verify,
# rebuild, tiles — and tampering straight in the database (sqlite3), each
# case detected by `audit verify`.
. "$(dirname "$0")/lib.sh"

ws="$scratch/ws"
unset TRUSTCHAIN_WORKSPACE TRUSTCHAIN_AUDIT_VKEY
export TRUSTCHAIN_HSM_SO_PIN="so-pin-audit-5d1e"
export TRUSTCHAIN_HSM_PIN="user-pin-audit-8c2f"

lower() { tr 'A-F' 'a-f'; }
T0=1764201600000
# The whole line for EID $1 in batch $2 from time $3 (8 events).
provision() {
  local e=$1 b=$2 t=$3 kcv=a1b2c3d4e5f6071829
  ev 1 $t "$(line $e $b)$(fld 0x10 01)$(fld 0x30 07)"
  ev 2 $((t + 1)) "$(line $e $b)$(fld 0x10 30)$(fld 0x11 $kcv)"
  ev 3 $((t + 2)) "$(line $e $b)$(fld 0x10 30)$(fld 0x11 $kcv)$(fld 0x12 01)"
  ev 4 $((t + 3)) "$(line $e $b)$(fld 0x10 30)$(fld 0x11 $kcv)"
  ev 5 $((t + 4)) "$(line $e $b)$(fld 0x20 $(printf '5a%.0s' {1..32}))"
  ev 6 $((t + 5)) "$(line $e $b)$(fld 0x20 $(printf '5a%.0s' {1..32}))$(fld 0x21 0102)$(fld 0x22 $(printf '77%.0s' {1..32}))"
  ev 7 $((t + 6)) "$(line $e $b)$(fld 0x21 0102)$(fld 0x22 $(printf '77%.0s' {1..32}))"
  ev 8 $((t + 7)) "$(line $e $b)$(fld 0x30 0f)$(fld 0x31 07)"
}
eid1=89049032123451234512345678901235
eid2=89049032123400000000000000000011
W=(--workspace "$ws")

# RFC 9162 §2.1.3.2 inclusion verification, independent of the C code.
verify_inclusion() { # index size leafhex roothex proof...
  local fn=$1 sn=$(($2 - 1)) r=$3 root=$4 p
  shift 4
  for p in "$@"; do
    [ "$sn" -eq 0 ] && return 1
    if [ $((fn & 1)) -eq 1 ] || [ "$fn" -eq "$sn" ]; then
      r=$(printf '01%s%s' "$p" "$r" | sha)
      while [ $((fn & 1)) -eq 0 ] && [ "$fn" -ne 0 ]; do fn=$((fn >> 1)); sn=$((sn >> 1)); done
    else
      r=$(printf '01%s%s' "$r" "$p" | sha)
    fi
    fn=$((fn >> 1)); sn=$((sn >> 1))
  done
  [ "$sn" -eq 0 ] && [ "$r" = "$root" ]
}

# --- usage
expect_ok "help" "$TC" audit --help
expect_contains "help lists verify" "$out" "verify"
expect_fail 2 "no command" "$TC" audit
expect_fail 2 "unknown command" "$TC" audit frobnicate
expect_fail 2 "unknown option" "$TC" audit verify --frob "${W[@]}"
expect_fail 2 "PIN on the command line" "$TC" audit checkpoint --pin 1234 "${W[@]}"
expect_fail 1 "verify without a registry" "$TC" audit verify "${W[@]}"
expect_contains "no registry says why" "$err" "has no registry"

expect_ok "hsm init" "$TC" hsm init "${W[@]}"

# --- append
expect_fail 2 "append: bad hex" "$TC" audit append zz "${W[@]}"
expect_fail 2 "append: non-canonical event (fields out of order)" "$TC" audit append \
  "$(ev 2 $T0 "$(fld 2 "$(hx B)")$(fld 1 "$eid1")$(fld 3 "$(hx s)")$(fld 4 "$(hx a)")$(fld 0x10 30)$(fld 0x11 a1b2c3d4e5f6071829)")" "${W[@]}"
expect_fail 2 "append: unknown version" "$TC" audit append "02$(ev 1 $T0 "$(line $eid1 B1)$(fld 0x30 07)" | cut -c3-)" "${W[@]}"
expect_fail 2 "append: nothing" "$TC" audit append "${W[@]}" </dev/null
expect_ok "append two devices (stdin)" bash -c "{ $(declare -f ev fld line hx tohex provision); provision $eid1 B1 $T0; provision $eid2 B1 $((T0 + 100)); } | \"$TC\" audit append --workspace \"$ws\""
[ "$(printf '%s\n' "$out" | wc -l)" -eq 16 ] && [ "$(printf '%s\n' "$out" | tail -1)" = 15 ] && pass "indices 0..15" || fail "indices 0..15" "$out"

# --- checkpoint and verifier key
expect_fail 2 "checkpoint needs the PIN" env -u TRUSTCHAIN_HSM_PIN "$TC" audit checkpoint "${W[@]}"
expect_contains "PIN refusal says how" "$err" "needs the token PIN"
mkdir -p "$ws/secrets" && printf '%s\n' "$TRUSTCHAIN_HSM_PIN" >"$ws/secrets/user.pin" && chmod 600 "$ws/secrets/user.pin"
expect_ok "verifier key with the PIN from secrets/user.pin" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verifier-key "${W[@]}"
rm -r "$ws/secrets"
expect_ok "checkpoint" "$TC" audit checkpoint "${W[@]}"
cp1=$out
expect_contains "checkpoint origin and size" "$cp1" "trustchain/audit
16
"
expect_contains "checkpoint signature line" "$cp1" "— trustchain/audit "
expect_ok "checkpoint again: the stored one" "$TC" audit checkpoint --no-sign "${W[@]}"
[ "$out" = "$cp1" ] && pass "same note" || fail "same note" "$out"
expect_ok "verifier key" "$TC" audit verifier-key "${W[@]}"
vkey=$out
case "$vkey" in trustchain/audit+[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]+A*) pass "verifier key format" ;; *) fail "verifier key format" "$vkey" ;; esac
# key ID = SHA-256(name || 0x0A || 0x01 || pub)[:4] (c2sp.org/signed-note)
pubhex=$(printf '%s' "$vkey" | cut -d+ -f3- | openssl base64 -d -A | tohex)
kid=$( { printf 'trustchain/audit\n'; printf '%s' "$pubhex" | unhex; } | openssl dgst -sha256 -binary | tohex | cut -c1-8)
expect_contains "key ID recomputed" "$vkey" "+$kid+"
# the note's signature, checked with openssl over the note text
sigb64=$(printf '%s\n' "$cp1" | tail -1 | awk '{print $3}')
printf '%s' "$sigb64" | openssl base64 -d -A | tail -c 64 >"$scratch/sig"
printf '%s\n' "$cp1" | head -3 >"$scratch/text"
printf '302a300506032b6570032100%s' "$(printf '%s' "$pubhex" | cut -c3-)" | unhex >"$scratch/pub.der"
openssl pkey -pubin -inform DER -in "$scratch/pub.der" -out "$scratch/pub.pem" 2>/dev/null
if openssl pkeyutl -verify -pubin -inkey "$scratch/pub.pem" -rawin -in "$scratch/text" -sigfile "$scratch/sig" >/dev/null 2>&1; then
  pass "checkpoint signature verifies with openssl"
else fail "checkpoint signature verifies with openssl" "openssl pkeyutl refused"; fi

# --- prove, checked independently
expect_fail 2 "prove: no index" "$TC" audit prove "${W[@]}"
expect_fail 2 "prove: bad index" "$TC" audit prove x1 "${W[@]}"
expect_fail 2 "prove: negative index" "$TC" audit prove -1 "${W[@]}"
expect_fail 2 "prove: index beyond the log" "$TC" audit prove 16 "${W[@]}"
expect_contains "beyond says why" "$err" "no event 16 (the log holds 16)"
for i in 0 5 15; do
  expect_ok "prove $i" "$TC" audit prove $i "${W[@]}" --json
  leaf=$(printf '%s' "$out" | sed 's/.*"leaf_hash":"\([0-9A-F]*\)".*/\1/' | lower)
  event=$(printf '%s' "$out" | sed 's/.*"event":"\([0-9A-F]*\)".*/\1/' | lower)
  root=$(printf '%s' "$out" | sed 's/.*"root":"\([0-9A-F]*\)".*/\1/' | lower)
  proof=$(printf '%s' "$out" | sed 's/.*"proof":\[\([^]]*\)\].*/\1/' | tr -d '"' | tr ',' ' ' | lower)
  [ "$(printf '00%s' "$event" | sha)" = "$leaf" ] && pass "leaf hash $i = SHA-256(0x00 || event)" || fail "leaf hash $i" "$leaf"
  # shellcheck disable=SC2086
  verify_inclusion $i 16 "$leaf" "$root" $proof && pass "proof $i verifies independently" || fail "proof $i verifies independently" "$out"
  cproot=$(printf '%s\n' "$cp1" | sed -n 3p | openssl base64 -d -A | tohex)
  [ "$root" = "$cproot" ] && pass "proof $i is against the checkpoint root" || fail "proof $i root" "$root"
  # shellcheck disable=SC2086
  verify_inclusion $((i ^ 1)) 16 "$leaf" "$root" $proof && fail "proof $i for another index" "accepted" || pass "proof $i refused for another index"
done

# --- verify
expect_ok "verify" "$TC" audit verify "${W[@]}"
expect_contains "verify says so" "$out" "16 events, tree recomputed"
expect_contains "verify checks the projection" "$out" "registry projection equals its rebuild"
expect_ok "verify with --vkey, no PIN" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verify --vkey "$vkey" "${W[@]}" --json
expect_contains "verify json" "$out" '"ok":true'
expect_fail 2 "verify: malformed --vkey" "$TC" audit verify --vkey "trustchain/audit+00000000+AAAA" "${W[@]}"
expect_fail 1 "verify: another log's key" "$TC" audit verify --vkey "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW" "${W[@]}"
expect_fail 2 "verify without PIN or --vkey" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verify "${W[@]}"

# --- more events: the stored checkpoint no longer covers the log
expect_ok "append a rejection" "$TC" audit append "$(ev 9 $((T0 + 500)) "$(line 89049032123400000000000000000022 B2)$(fld 0x40 0102)$(fld 0x41 03)")" "${W[@]}"
expect_fail 1 "verify: last checkpoint does not cover the log" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verify --vkey "$vkey" "${W[@]}"
expect_fail 1 "checkpoint --no-sign: none covers the log" "$TC" audit checkpoint --no-sign "${W[@]}"
expect_ok "checkpoint at 17" "$TC" audit checkpoint "${W[@]}"
expect_contains "size 17" "$out" "
17
"
expect_ok "verify two checkpoints" "$TC" audit verify "${W[@]}"
expect_contains "two checkpoints" "$out" "2 checkpoints"

# --- rebuild
expect_ok "rebuild" "$TC" audit rebuild "${W[@]}"
expect_contains "rebuild: unchanged" "$out" "unchanged"
sqlite3 "$ws/registry.db" "UPDATE reg_devices SET state = 12" || fail "sqlite3" "update"
expect_fail 1 "verify: projection rewritten" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verify --vkey "$vkey" "${W[@]}"
expect_contains "projection says why" "$err" "projection differs"
expect_ok "rebuild repairs it" "$TC" audit rebuild "${W[@]}" --json
expect_contains "rebuild: replaced" "$out" '"unchanged":false'
expect_ok "verify after rebuild" "$TC" audit verify "${W[@]}"

# --- export tiles
expect_fail 2 "export-tiles: no DIR" "$TC" audit export-tiles "${W[@]}"
expect_ok "export-tiles" "$TC" audit export-tiles "$scratch/tiles" "${W[@]}"
expect_ok "latest checkpoint" "$TC" audit checkpoint "${W[@]}"
[ "$(cat "$scratch/tiles/checkpoint")" = "$out" ] && pass "tiles checkpoint is the latest" || fail "tiles checkpoint" "differs"
# c2sp.org/tlog-tiles: a partial level-0 tile of 17 hashes, a partial entry bundle of 17
[ "$(wc -c <"$scratch/tiles/tile/0/000.p/17")" -eq $((17 * 32)) ] && pass "level-0 tile: 17 hashes" || fail "level-0 tile" "$(ls -R "$scratch/tiles")"
[ -f "$scratch/tiles/tile/entries/000.p/17" ] && pass "entry bundle" || fail "entry bundle" "missing"
first=$(head -c 32 "$scratch/tiles/tile/0/000.p/17" | tohex)
expect_ok "prove 0 after export" "$TC" audit prove 0 "${W[@]}" --json
expect_contains "tile hash 0 is leaf 0" "$(printf '%s' "$out" | lower)" "\"leaf_hash\":\"$first\""

# --- tampering straight in the database: each detected by verify
cp "$ws/registry.db" "$scratch/good.db"
db="$ws/registry.db"
tamper() { # name SQL
  cp "$scratch/good.db" "$db"; rm -f "$db-wal" "$db-shm"
  sqlite3 "$db" "$2" || { fail "$1" "sqlite3 refused the change"; return; }
  expect_fail 1 "tamper: $1" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verify --vkey "$vkey" "${W[@]}"
}
tamper "modify an event" "UPDATE audit_events SET event = substr(event, 1, 9) || X'EE' || substr(event, 11) WHERE idx = 3"
tamper "modify an event and its leaf hash" "UPDATE audit_events SET event = substr(event, 1, 9) || X'EE' || substr(event, 11), leaf_hash = X'$(printf '00' ; printf '00%.0s' {1..31})' WHERE idx = 3"
tamper "delete an event" "DELETE FROM audit_events WHERE idx = 7"
tamper "reorder two events" "UPDATE audit_events SET idx = -idx WHERE idx IN (4, 5); UPDATE audit_events SET idx = CASE idx WHEN -4 THEN 5 ELSE 4 END WHERE idx < 0"
tamper "insert an event" "INSERT INTO audit_events(idx, leaf_hash, event) SELECT 17, leaf_hash, event FROM audit_events WHERE idx = 2"
tamper "drop a checkpoint" "DELETE FROM audit_checkpoints WHERE size = 17"
tamper "forge a checkpoint" "UPDATE audit_checkpoints SET note = replace(note, '17', '16') WHERE size = 17"
tamper "projection row" "UPDATE reg_devices SET kvn = 0x31 WHERE batch = 'B2'"
# Rewrite the whole suffix after the first checkpoint and re-hash it: an
# attacker builds the log they want elsewhere (same first 16 events, a
# different 17th, correct leaf hashes and tree head), copies it over, and
# rebuilds the projection. Only the signed checkpoint at 17 betrays it.
ws2="$scratch/ws2"
bash -c "{ $(declare -f ev fld line hx tohex provision); provision $eid1 B1 $T0; provision $eid2 B1 $((T0 + 100)); } | \"$TC\" audit append --workspace \"$ws2\"" >/dev/null
"$TC" audit append --workspace "$ws2" "$(ev 9 $((T0 + 500)) "$(line 89049032123400000000000000000022 B2)$(fld 0x40 0999)$(fld 0x41 03)")" >/dev/null
cp "$scratch/good.db" "$db"; rm -f "$db-wal" "$db-shm"
sqlite3 "$db" "ATTACH '$ws2/registry.db' AS forged; DELETE FROM audit_events WHERE idx >= 16;
  INSERT INTO audit_events SELECT * FROM forged.audit_events WHERE idx >= 16;
  UPDATE audit_tree SET size = (SELECT size FROM forged.audit_tree), root = (SELECT root FROM forged.audit_tree);" || fail "forge" "sqlite3"
expect_ok "forged log opens (tree head consistent)" "$TC" audit rebuild "${W[@]}"
expect_fail 1 "tamper: suffix rewritten and re-hashed" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verify --vkey "$vkey" "${W[@]}"
expect_contains "detected through the checkpoint" "$err" "checkpoint"
cp "$scratch/good.db" "$db"; rm -f "$db-wal" "$db-shm"
expect_ok "untouched copy verifies" env -u TRUSTCHAIN_HSM_PIN "$TC" audit verify --vkey "$vkey" "${W[@]}"
finish
