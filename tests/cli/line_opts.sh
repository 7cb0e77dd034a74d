# trustchain line run: the command line alone (nothing is opened before the
# options are checked): every refusal with its exit status and its exact
# message, the --reader repeat bound (16 accepted, the 17th refused), and
# empty values reaching the command's own checks.
. "$(dirname "$0")/lib.sh"
unset TRUSTCHAIN_HSM_PIN TRUSTCHAIN_HSM_SO_PIN TRUSTCHAIN_ROOT_PIN TRUSTCHAIN_WORKSPACE

# expect_msg NAME CODE MESSAGE CMD...: exit CODE and stderr exactly
# "trustchain: MESSAGE" (one line, nothing on stdout).
expect_msg() {
  local name=$1 code=$2 msg=$3; shift 3
  expect_fail "$code" "$name" "$@"
  [ "$err" = "trustchain: $msg" ] && pass "$name: message" ||
    fail "$name: message" "got '$err', expected 'trustchain: $msg'"
}

none=$scratch/none
R=()
for i in $(seq 1 16); do R+=(--reader "r$i"); done

expect_msg "unknown option" 2 \
  "line run: unknown option '--bogus' (see 'trustchain line run --help')" \
  "$TC" line run --batch B --count 1 --bogus
expect_msg "a word is no option" 2 \
  "line run: unknown option 'extra' (see 'trustchain line run --help')" \
  "$TC" line run --batch B --count 1 extra
expect_msg "a lone dash" 2 "line run: unknown option '-' (see 'trustchain line run --help')" \
  "$TC" line run --batch B - --count 1
expect_msg "value missing" 2 "line run: --count needs a value" "$TC" line run --batch B --count
expect_msg "--reader value missing" 2 "line run: --reader needs a value" \
  "$TC" line run --batch B --count 1 --reader
expect_msg "PIN on the command line" 2 \
  "line run: PINs are not accepted on the command line; use \$TRUSTCHAIN_HSM_PIN or --pin-file" \
  "$TC" line run --batch B --count 1 --pin 1234
expect_msg "--batch required" 2 "line run: --batch is required" "$TC" line run --count 1
expect_msg "--count required" 2 "line run: --count is required" "$TC" line run --batch B
expect_msg "zero count" 2 "line run: --count must be a number from 1 to 10000000" \
  "$TC" line run --batch B --count 0
expect_msg "jobs bound" 2 "line run: --jobs must be a number from 1 to 64" \
  "$TC" line run --batch B --count 1 --jobs 65
expect_msg "card-wait bound" 2 "line run: --card-wait must be a number from 1 to 86400" \
  "$TC" line run --batch B --count 1 --reader r --card-wait 86401
expect_msg "--card-wait without --reader" 2 "line run: --card-wait is for --reader" \
  "$TC" line run --batch B --count 1 --card-wait 5
expect_msg "--emulate with --reader" 2 "line run: --emulate and --reader exclude each other" \
  "$TC" line run --batch B --count 1 --emulate d --reader r
expect_msg "--vendor-keys with --reader" 2 "line run: --vendor-keys is for emulated cards" \
  "$TC" line run --batch B --count 1 --reader r --vendor-keys k
expect_msg "bad batch ID" 2 "line run: batch ID must be letters, digits, '.', '_' or '-'" \
  "$TC" line run --batch "a/b" --count 1
# Empty values are the command's to judge, as before the option table.
expect_msg "empty batch ID" 2 "line run: batch ID must be 1-64 characters, not starting with '.'" \
  "$TC" line run --batch "" --count 1
expect_msg "empty count" 2 "line run: --count must be a number from 1 to 10000000" \
  "$TC" line run --batch B --count ""

# --reader repeats: 16 are taken (the run then stops at the missing
# workspace, exit 1), a 17th is refused before anything is opened, even
# without its value.
expect_fail 1 "16 readers accepted" "$TC" line run --workspace "$none" --batch B --count 1 "${R[@]}"
expect_contains "16 readers: stopped at the workspace" "$err" "trustchain init --workspace"
expect_msg "17th reader refused" 2 "line run: at most 16 readers" \
  "$TC" line run --workspace "$none" --batch B --count 1 "${R[@]}" --reader r17
expect_msg "17th reader refused without its value" 2 "line run: at most 16 readers" \
  "$TC" line run --batch B --count 1 "${R[@]}" --reader
expect_msg "17th reader refused before later options" 2 "line run: at most 16 readers" \
  "$TC" line run "${R[@]}" --reader r17 --bogus

expect_ok "line run --help" "$TC" line run --help
expect_contains "help names --reader" "$out" "--reader NAME"
finish
