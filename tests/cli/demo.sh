# trustchain demo, small: the line for 8 devices, then over the air every
# device's keys rotated by an in-process server and agents, one certificate
# renewed, one device revoked and then the batch, each refused at TLS.
. "$(dirname "$0")/lib.sh"
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

ws=$scratch/demo
expect_ok "demo runs" "$TC" demo --workspace "$ws" --count 8 --jobs 4
expect_contains "OTA queue" "$out" "9 operations queued"
expect_contains "every device's dialog" "$out" "8 of 8 devices completed their dialog"
expect_contains "renewal shown" "$out" "renew-cert done"
expect_contains "rotation shown" "$out" "rotate-keys done"
expect_contains "keyset from fleet-2" "$out" "KVN 0x31 from master fleet-2"
expect_contains "revoked device refused" "$out" ": refused ("
n=$(printf '%s\n' "$out" | grep -c ": refused (")
[ "$n" -eq 2 ] && pass "device and batch refused" || fail "device and batch refused" "$n"
# every card now holds only the new keyset
for c in "$ws"/cards/card-*.img; do
  "$TC" se show --state "$c" --json >"$scratch/card.json" 2>&1 || fail "se show $c" "$(cat "$scratch/card.json")"
done
grep -q '"kvn":49' "$scratch/card.json" && pass "last card holds KVN 31" || fail "last card holds KVN 31" "$(cat "$scratch/card.json")"
expect_ok "history of the renewed device" "$TC" device history \
  "$(printf '%s\n' "$out" | sed -n 's/^Try: trustchain device history \([0-9]*\) .*/\1/p')" --workspace "$ws"
expect_contains "intent before the certificate went out" "$out" "op-step"
expect_contains "keys rotated" "$out" "keys-rotated"
expect_contains "certificate stored" "$out" "cert-stored"
expect_ok "checkpoint after the OTA steps" "$TC" audit checkpoint --workspace "$ws" --pin-file "$ws/secrets/user.pin"
expect_ok "audit verify after the OTA steps" "$TC" audit verify --workspace "$ws" --pin-file "$ws/secrets/user.pin"
finish
