# Sourced by the integration tests that need a private pcscd with
# vsmartcard's vpcd driver (tests/integration/pcscd_vpcd.sh,
# tests/station/line_pcsc.sh).
#
# Nothing touches the system pcscd: pcscd runs in the foreground with its own
# reader.conf (vpcd on a free loopback port pair), its client socket is a
# private one handed over by systemd-socket-activate (pcscd 1.9.9 takes the
# socket from systemd activation; PCSCLITE_CSOCK_NAME points the clients at
# it), and its /run/pcscd pid file lives on a private tmpfs in its own mount
# namespace (unshare). A missing component fails the test (install-deps
# installs them).
#
# The caller defines skip() (prints and exits 1) and $work (a private
# directory), then calls
#   pcscd_start "<reader base name>"
# which sets and exports:
#   port          vpcd's port for slot 0 (slot 1 is port + 1)
#   reader        "<base> 00 00" (slot 0), empty_reader "<base> 00 01"
#   PCSCLITE_CSOCK_NAME, pcscd_pid
# stop_pid PID stops a process (TERM, then KILL after 5 s).

VPCD_LIB=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
PCSCD=$(command -v pcscd || echo /usr/sbin/pcscd)
pcscd_pid=""

stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
}

pcscd_port_free() { ! ss -Htln 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$1\$"; }

pcscd_start() {
  local base=$1
  [ -x "$PCSCD" ] || skip "pcscd not installed"
  [ -e "$VPCD_LIB" ] || skip "vsmartcard-vpcd not installed ($VPCD_LIB)"
  command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate missing"
  # A free port pair: vpcd listens on CHANNELID for slot 0 and the next port
  # for slot 1.
  port=""
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if pcscd_port_free "$p" && pcscd_port_free $((p + 1)); then port=$p; break; fi
  done
  [ -n "$port" ] || skip "no free port pair"
  cat >"$work/reader.conf" <<EOC
FRIENDLYNAME "$base"
DEVICENAME   /dev/null:$(printf '0x%X' "$port")
LIBPATH      $VPCD_LIB
CHANNELID    $(printf '0x%X' "$port")
EOC
  export PCSCLITE_CSOCK_NAME="$work/pcscd.comm"
  reader="$base 00 00"
  empty_reader="$base 00 01"
  # pcscd writes /run/pcscd/pcscd.pid and removes /run/pcscd's files on
  # exit: give it a private /run/pcscd where the kernel lets us.
  if unshare -m --propagation private true 2>/dev/null; then
    mkdir -p /run/pcscd 2>/dev/null
    timeout -k 5 600 unshare -m --propagation private sh -c '
      mount -t tmpfs -o size=1m tmpfs /run/pcscd || exit 1
      exec systemd-socket-activate -l "$0" "$1" --foreground -c "$2"
    ' "$PCSCLITE_CSOCK_NAME" "$PCSCD" "$work/reader.conf" >"$work/pcscd.log" 2>&1 &
    pcscd_pid=$!
  else
    [ -e /run/pcscd/pcscd.comm ] && skip "a system pcscd runs and no private mount namespace"
    # pcscd writes its pid file there; without it, it does not start.
    [ -w /run/pcscd ] || { [ ! -e /run/pcscd ] && [ -w /run ]; } ||
      skip "pcscd cannot write /run/pcscd (not root, no private mount namespace)"
    timeout -k 5 600 systemd-socket-activate -l "$PCSCLITE_CSOCK_NAME" "$PCSCD" --foreground \
      -c "$work/reader.conf" >"$work/pcscd.log" 2>&1 &
    pcscd_pid=$!
  fi
  for _ in $(seq 50); do [ -S "$PCSCLITE_CSOCK_NAME" ] && break; sleep 0.1; done
  [ -S "$PCSCLITE_CSOCK_NAME" ] || { cat "$work/pcscd.log"; skip "pcscd socket did not appear"; }
}
