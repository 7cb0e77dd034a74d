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
finish
