# trustchain apdu decode: command and response APDUs (ISO/IEC 7816-4 §5.1,
# §5.4.1, §5.6), exact output lines and every rejection.
. "$(dirname "$0")/lib.sh"

# expect_output NAME WANT: the last expect_ok's stdout is exactly WANT.
expect_output() {
  if [ "$out" = "$2" ]; then pass "$1"
  else fail "$1" "got:
$out
expected:
$2"; fi
}

# --- INITIALIZE UPDATE (GP Amendment D §7), pasted with spaces
expect_ok "initialize update" "$TC" apdu decode 80 50 00 00 08 11 22 33 44 55 66 77 88 00
expect_output "initialize update fields" "case:    4S (short length fields)
cla:     80
class:   proprietary, GlobalPlatform coding for channels 0-3
channel: 0
sm:      none
chained: no
ins:     50 INITIALIZE UPDATE
p1:      00
p2:      00
lc:      8
data:    1122334455667788
le:      256"

# --- SELECT ISD, colons and one argument
expect_ok "select with colons" "$TC" apdu decode "00:A4:04:00:08:A0:00:00:01:51:00:00:00:00"
expect_contains "select names the instruction" "$out" "ins:     A4 SELECT"
expect_contains "select data" "$out" "data:    A000000151000000"

# --- EXTERNAL AUTHENTICATE with GP secure messaging (CLA 84)
expect_ok "external authenticate" "$TC" apdu decode 8482330010 00112233445566778899AABBCCDDEEFF
expect_output "external authenticate fields" "case:    3S (short length fields)
cla:     84
class:   proprietary, GlobalPlatform coding for channels 0-3
channel: 0
sm:      GlobalPlatform secure messaging (b3)
chained: no
ins:     82 EXTERNAL AUTHENTICATE
p1:      33
p2:      00
lc:      16
data:    00112233445566778899AABBCCDDEEFF"

# --- case 1, further interindustry channel with chaining
expect_ok "case 1 on channel 9" "$TC" apdu decode 75E20000
expect_output "case 1 fields" "case:    1 (no length fields)
cla:     75
class:   interindustry, further interindustry values (channels 4-19)
channel: 9
sm:      ISO/IEC 7816-4 §10, command header not authenticated
chained: yes (more commands of the chain follow)
ins:     E2 APPEND RECORD
p1:      00
p2:      00"

# --- GP channel 5 (CLA C1), case 2S
expect_ok "get data on channel 5" "$TC" apdu decode C1CA00E000
expect_contains "channel 5" "$out" "channel: 5"
expect_contains "le 256" "$out" "le:      256"

# --- extended cases
expect_ok "case 2E" "$TC" apdu decode 00B00000 000000
expect_contains "2E case line" "$out" "case:    2E (extended length fields)"
expect_contains "2E le 65536" "$out" "le:      65536"
expect_ok "7-byte 00 A4 04 00 00 01 02 is 2E" "$TC" apdu decode 00A40400000102
expect_contains "2E le 258" "$out" "le:      258"
expect_ok "case 3E" "$TC" apdu decode 00D60000 000003 AABBCC
expect_contains "3E case line" "$out" "case:    3E (extended length fields)"
expect_contains "3E lc" "$out" "lc:      3"
expect_ok "case 4E" "$TC" apdu decode 00D60000 000003 AABBCC 0100
expect_contains "4E case line" "$out" "case:    4E (extended length fields)"
expect_contains "4E le" "$out" "le:      256"

# --- a CLA neither standard structures still decodes as an APDU
expect_ok "GSM class A0" "$TC" apdu decode A0A40000023F00
expect_contains "A0 class explained" "$out" "class:   CLA A0 is proprietary without the GlobalPlatform layout"

# --- JSON
expect_ok "json get status" "$TC" apdu decode --json 84F2400002 4F00 00
expect_output "json get status object" '{"case":"4S","extended":false,"cla":"84","class":{"proprietary":true,"further":false,"channel":0,"chained":false,"sm":1,"secure":true,"secure_messaging":"GlobalPlatform secure messaging (b3)"},"ins":"F2","ins_name":"GET STATUS","p1":"40","p2":"00","lc":2,"data":"4F00","le":256}'
expect_ok "json case 1, unknown INS, options after hex" "$TC" apdu decode 20020000 --json
expect_output "json reserved class" '{"case":"1","extended":false,"cla":"20","class":null,"class_note":"CLA 20 is reserved for future use (ISO/IEC 7816-4 §5.4.1: 001x xxxx)","ins":"02","ins_name":null,"p1":"00","p2":"00","lc":0,"data":"","le":null}'

# --- responses
expect_ok "response with FCI" "$TC" apdu decode --response 6F108408A000000151000000A5049F6501FF9000
expect_output "response fields" "data:    6F108408A000000151000000A5049F6501FF
length:  18
sw:      9000
status:  normal processing, no further qualification"
expect_ok "response 6982" "$TC" apdu decode --response 69 82
expect_output "6982 text" "length:  0
sw:      6982
status:  security status not satisfied"
expect_ok "response 63C2" "$TC" apdu decode --response 63C2
expect_contains "63C2 counter" "$out" "status:  warning: counter is 2 (meaning depends on the command, e.g. retries left)"
expect_ok "response 6110" "$TC" apdu decode --response 6110
expect_contains "6110 count" "$out" "status:  16 more data byte(s) available (GET RESPONSE)"
expect_ok "response 9485" "$TC" apdu decode --response 9485
expect_contains "9485 text" "$out" "status:  invalid key check value (GlobalPlatform PUT KEY)"
expect_ok "response json" "$TC" apdu decode --json --response 6A82
expect_output "response json object" '{"data":"","length":0,"sw":"6A82","status":"file or application not found"}'

# --- help
expect_ok "decode --help" "$TC" apdu decode --help
expect_contains "decode help usage" "$out" "usage: trustchain apdu decode [--json] [--response] HEX..."
expect_ok "apdu --help" "$TC" apdu --help
expect_contains "apdu help lists decode" "$out" "decode"

# --- rejections: one line on stderr, exit 2, nothing on stdout
expect_fail 2 "Lc of 0" "$TC" apdu decode 00A40400 00 01
expect_contains "Lc of 0 message" "$err" "trustchain: apdu decode: byte 5: Lc of 0 is not allowed"
expect_fail 2 "extended Lc of 0" "$TC" apdu decode 00A40400 000000 01
expect_contains "extended Lc of 0 message" "$err" "trustchain: apdu decode: bytes 6-7: extended Lc of 0 is not allowed"
expect_fail 2 "short Lc past the end" "$TC" apdu decode 00A40400 08 A0000001
expect_contains "short Lc past the end message" "$err" "trustchain: apdu decode: byte 5: Lc of 8 announces 8 data byte(s) but only 4 follow"
expect_fail 2 "extended Lc past the end" "$TC" apdu decode 00010203 000005 AABB
expect_contains "extended Lc past the end message" "$err" "bytes 6-7: extended Lc of 5 announces 5 data byte(s) but only 2 follow"
expect_fail 2 "short Lc with 2-byte Le" "$TC" apdu decode 80500000 08 1122334455667788 0000
expect_contains "mixed short/extended message" "$err" "byte 14: a 2-byte Le after a short Lc: short and extended length fields cannot be mixed"
expect_fail 2 "extended Lc with 1-byte Le" "$TC" apdu decode 00010203 000002 AABB 00
expect_contains "mixed extended/short message" "$err" "byte 10: a 1-byte Le after an extended Lc"
expect_fail 2 "bytes after 4S" "$TC" apdu decode 80500000 08 1122334455667788 00 0001
expect_contains "trailing 4S message" "$err" "byte 15: 2 unexpected byte(s) after Le (a case 4S command with Lc 8 is 14 bytes long)"
expect_fail 2 "bytes after 4E" "$TC" apdu decode 00010203 000002 AABB 000000
expect_contains "trailing 4E message" "$err" "byte 12: 1 unexpected byte(s) after Le (a case 4E command with Lc 2 is 11 bytes long)"
expect_fail 2 "CLA FF" "$TC" apdu decode FFA40400
expect_contains "CLA FF message" "$err" "trustchain: apdu decode: byte 1: CLA FF is invalid (ISO/IEC 7816-4 §5.4.1)"
expect_fail 2 "INS 6X" "$TC" apdu decode 00610000
expect_contains "INS 6X message" "$err" "byte 2: INS 61 is invalid"
expect_fail 2 "INS 9X" "$TC" apdu decode 80900000
expect_contains "INS 9X message" "$err" "byte 2: INS 90 is invalid"
expect_fail 2 "3 bytes" "$TC" apdu decode 00A404
expect_contains "3 bytes message" "$err" "byte 4: a command APDU has at least 4 bytes (CLA INS P1 P2), got 3"
expect_fail 2 "not hex" "$TC" apdu decode 00A4040G
expect_contains "not hex message" "$err" "trustchain: apdu decode: hex: character 8 ('G') is not a hex digit"
expect_fail 2 "odd digits" "$TC" apdu decode 00A4040
expect_contains "odd digits message" "$err" "odd number of digits"
expect_fail 2 "separator inside a byte" "$TC" apdu decode "00 A 4"
expect_contains "separator inside a byte message" "$err" "separators only between whole bytes"
expect_fail 2 "no hex" "$TC" apdu decode
expect_contains "no hex message" "$err" "trustchain: apdu decode: no hex bytes given"
expect_fail 2 "only separators" "$TC" apdu decode " : "
expect_fail 2 "unknown option" "$TC" apdu decode --bogus 00A40400
expect_contains "unknown option message" "$err" "unknown option '--bogus'"
expect_fail 2 "unknown subcommand" "$TC" apdu encode 00A40400
expect_fail 2 "response of 1 byte" "$TC" apdu decode --response 90
expect_contains "response of 1 byte message" "$err" "byte 2: a response APDU ends with SW1 SW2 and has at least 2 bytes, got 1"
expect_fail 2 "response SW1 not a status byte" "$TC" apdu decode --response AABB1234
expect_contains "response SW1 message" "$err" "byte 3: SW1 12 is not a status byte (ISO/IEC 7816-4 §5.6: 61-6F or 90-9F)"
big=$(head -c 65545 /dev/zero | od -An -v -tx1 | tr -d ' \n' | fold -w 2000)
expect_fail 2 "larger than any APDU" "$TC" apdu decode $big
expect_contains "larger than any APDU message" "$err" "65545 bytes is more than the largest accepted (65544 bytes)"
finish
