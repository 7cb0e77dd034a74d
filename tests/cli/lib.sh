# Shared helpers for command-line tests. $TC is the trustchain program.
# expect_ok NAME CMD...         exit 0; stdout kept in $out
# expect_fail CODE NAME CMD...  exit CODE, exactly one line on stderr, nothing
#                               on stdout; stderr kept in $err
# expect_contains NAME HAYSTACK NEEDLE
set -u
: "${TC:?TC must point at the trustchain program}"
passed=0
failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

expect_ok() {
  local name=$1; shift
  if out=$("$@" 2>"$scratch/err"); then pass "$name"
  else fail "$name" "exit $? ($(head -c 300 "$scratch/err"))"; fi
}

expect_fail() {
  local code=$1 name=$2; shift 2
  local rc=0
  "$@" >"$scratch/out" 2>"$scratch/err" || rc=$?
  err=$(cat "$scratch/err")
  local lines
  lines=$(wc -l <"$scratch/err")
  if [ "$rc" -ne "$code" ]; then fail "$name" "exit $rc, expected $code ($err)"
  elif [ "$lines" -ne 1 ]; then fail "$name" "stderr has $lines lines, expected 1: $err"
  elif [ -s "$scratch/out" ]; then fail "$name" "stdout not empty: $(head -c 200 "$scratch/out")"
  else pass "$name"; fi
}

expect_contains() {
  case "$2" in
    *"$3"*) pass "$1" ;;
    *) fail "$1" "'$3' not found in: $(printf '%s' "$2" | head -c 400)" ;;
  esac
}

finish() {
  echo "$(basename "$0" .sh): $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}
