#!/usr/bin/env python3
"""A scripted card behind the TCP card protocol (docs/transports.md) that
answers SELECT the way T=0 cards do: 6Cxx (wrong Le), then the FCI in pieces
behind 61xx (GET RESPONSE, ISO/IEC 7816-4 §5.3.4, §7.6.1). INITIALIZE UPDATE
gets 6A88. Writes its port to stdout and each command it got, in hex, to the
log file given as argv[1]. Serves one connection, then exits."""
import socket
import struct
import sys

ATR = bytes.fromhex("3B80800101")
FCI = bytes.fromhex("6F108408A000000151000000A5049F6501FF")


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def answer(cmd):
    if len(cmd) == 1:
        return b"" if cmd[0] == 0 else ATR
    ins = cmd[1]
    if ins == 0xA4 and len(cmd) == 5 and cmd[4] == 0x00:
        return bytes([0x6C, len(FCI)])
    if ins == 0xA4 and len(cmd) == 5 and cmd[4] == len(FCI):
        return bytes([0x61, 8])
    if ins == 0xC0 and cmd[4] == 8:
        return FCI[:8] + bytes([0x61, len(FCI) - 8])
    if ins == 0xC0 and cmd[4] == len(FCI) - 8:
        return FCI[8:] + b"\x90\x00"
    if ins == 0x50:
        return b"\x6A\x88"
    return b"\x6D\x00"


def main():
    log = open(sys.argv[1], "w")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(30)
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    conn.settimeout(30)
    while True:
        hdr = read_exact(conn, 2)
        if hdr is None:
            break
        (n,) = struct.unpack(">H", hdr)
        cmd = read_exact(conn, n)
        if cmd is None:
            break
        log.write(cmd.hex().upper() + "\n")
        log.flush()
        reply = answer(cmd)
        conn.sendall(struct.pack(">H", len(reply)) + reply)
    conn.close()


main()
