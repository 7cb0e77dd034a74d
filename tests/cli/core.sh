# The program's own conventions: help, version, unknown commands.
. "$(dirname "$0")/lib.sh"

expect_ok "version prints the version" "$TC" version
expect_contains "version text" "$out" "trustchain 0."
expect_ok "--version" "$TC" --version
expect_ok "--help lists commands" "$TC" --help
expect_contains "--help mentions version" "$out" "version"
expect_fail 2 "unknown command is a usage error" "$TC" no-such-command
expect_contains "unknown command names it" "$err" "'no-such-command' is not a command"
expect_fail 2 "version takes no arguments" "$TC" version extra
expect_fail 2 "no command is a usage error" "$TC"
# Every command group: no command is one line on stderr and exit 2; --help is 0.
for g in apdu tlv se hsm pki; do
  expect_fail 2 "$g without a command is a usage error" "$TC" "$g"
  expect_contains "$g names its help" "$err" "see 'trustchain $g --help'"
  expect_ok "$g --help" "$TC" "$g" --help
done
finish
