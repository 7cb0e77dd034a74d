# trustchain init: one command makes a working workspace; PINs never printed.
. "$(dirname "$0")/lib.sh"
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

ws=$scratch/ws
expect_ok "init creates a workspace" "$TC" init --workspace "$ws"
expect_contains "init names the registry" "$out" "registry.db"
expect_contains "init says PINs are in files" "$out" "mode 0600"
for f in trustchain.conf registry.db hsm/softhsm2.conf hsm/hsm.conf secrets/user.pin \
  secrets/so.pin secrets/root.pin; do
  if [ -s "$ws/$f" ]; then pass "init wrote $f"; else fail "init wrote $f" "missing"; fi
done
for f in user so root; do
  mode=$(stat -c %a "$ws/secrets/$f.pin")
  if [ "$mode" = 600 ]; then pass "$f.pin is mode 0600"; else fail "$f.pin mode" "$mode"; fi
  pin=$(head -n1 "$ws/secrets/$f.pin")
  case "$out" in *"$pin"*) fail "$f PIN not printed" "found in output" ;; *) pass "$f PIN not printed" ;; esac
done
if [ "$(head -n1 "$ws/secrets/user.pin")" != "$(head -n1 "$ws/secrets/so.pin")" ]; then
  pass "user and SO PINs differ"; else fail "user and SO PINs differ" "same"; fi
expect_contains "config names the station" "$(cat "$ws/trustchain.conf")" "station = ST-01"

# The token holds the master and audit keys, usable with the generated PIN.
expect_ok "hsm keys with the generated PIN" "$TC" hsm keys --workspace "$ws" \
  --pin-file "$ws/secrets/user.pin"
expect_contains "master key in the token" "$out" "tc:master:line"
expect_contains "audit key in the token" "$out" "tc:audit:checkpoint"

# Running it again keeps everything (same PIN files, same token).
before=$(cat "$ws/secrets/user.pin")
expect_ok "init again" "$TC" init --workspace "$ws"
expect_contains "init again keeps the token" "$out" "(kept)"
if [ "$before" = "$(cat "$ws/secrets/user.pin")" ]; then pass "PIN file kept"; else fail "PIN file kept" "changed"; fi

expect_ok "init --json" "$TC" init --workspace "$ws" --json
expect_contains "json: registry" "$out" '"registry":'
expect_contains "json: nothing generated the second time" "$out" '"generated_pin_files":[]'

# PINs from the environment: no PIN files are made.
ws2=$scratch/ws2
expect_ok "init with PINs from the environment" env TRUSTCHAIN_HSM_PIN=user-pin-1234 \
  TRUSTCHAIN_HSM_SO_PIN=so-pin-12345 TRUSTCHAIN_ROOT_PIN=root-pin-1234 \
  "$TC" init --workspace "$ws2" --station LINE-7 --master m2
if [ ! -e "$ws2/secrets/user.pin" ]; then pass "no user.pin with an env PIN"; else fail "no user.pin" "exists"; fi
expect_contains "station from the option" "$(cat "$ws2/trustchain.conf")" "station = LINE-7"
expect_ok "env PIN opens the token" env TRUSTCHAIN_HSM_PIN=user-pin-1234 "$TC" hsm keys --workspace "$ws2"
expect_contains "master named by --master" "$out" "tc:master:m2"

expect_fail 2 "a PIN on the command line is refused" "$TC" init --workspace "$ws" --pin 1234
expect_fail 2 "unknown option" "$TC" init --bogus
expect_fail 2 "station with a space" "$TC" init --workspace "$ws" --station "a b"
expect_fail 2 "option without value" "$TC" init --workspace
expect_ok "init --help" "$TC" init --help
expect_contains "help mentions secrets" "$out" "secrets/"
finish
