# trustchain tlv decode: BER-TLV trees (ISO/IEC 7816-4 §5.2.2, X.690 §8.1),
# exact output lines and every rejection.
. "$(dirname "$0")/lib.sh"

expect_output() {
  if [ "$out" = "$2" ]; then pass "$1"
  else fail "$1" "got:
$out
expected:
$2"; fi
}

# --- ISD FCI (fidesmo/fdsm FidesmoCardTest.java)
expect_ok "FCI" "$TC" tlv decode 6F108408A000000151000000A5049F6501FF
expect_output "FCI tree" "6F constructed, 16 bytes
  84 primitive, 8 bytes: A000000151000000
  A5 constructed, 4 bytes
    9F65 primitive, 1 byte: FF"

# --- GET STATUS entry (GlobalPlatformPro TestParseTags.java), pasted with spaces
expect_ok "GET STATUS entry" "$TC" tlv decode "E3 14 4F 07 A0 00 00 01 51 00 00 9F 70 01 07 C5 01 80 EA 02 80 00"
expect_output "GET STATUS tree" "E3 constructed, 20 bytes
  4F primitive, 7 bytes: A0000001510000
  9F70 primitive, 1 byte: 07
  C5 primitive, 1 byte: 80
  EA constructed, 2 bytes
    80 primitive, 0 bytes"

# --- key information template with a long-form length (TestGPKeyInfo.java)
expect_ok "key information template" "$TC" tlv decode E012C00401018010C00402018010C00403018010
expect_output "key information tree" "E0 constructed, 18 bytes
  C0 primitive, 4 bytes: 01018010
  C0 primitive, 4 bytes: 02018010
  C0 primitive, 4 bytes: 03018010"
expect_ok "non-minimal length accepted" "$TC" tlv decode 848105 48656C6C6F
expect_output "printable value shown as ASCII" '84 primitive, 5 bytes: 48656C6C6F "Hello"'

# --- several top-level objects, split over arguments
expect_ok "two objects" "$TC" tlv decode 42030000 8C 4306023967FE8B41
expect_output "two objects tree" "42 primitive, 3 bytes: 00008C
43 primitive, 6 bytes: 023967FE8B41"

# --- JSON
expect_ok "json FCI" "$TC" tlv decode --json 6F108408A000000151000000A5049F6501FF
expect_output "json FCI array" '[{"depth":0,"offset":0,"path":"6F","tag":"6F","constructed":true,"length":16},{"depth":1,"offset":2,"path":"6F/84","tag":"84","constructed":false,"length":8,"value":"A000000151000000"},{"depth":1,"offset":12,"path":"6F/A5","tag":"A5","constructed":true,"length":4},{"depth":2,"offset":14,"path":"6F/A5/9F65","tag":"9F65","constructed":false,"length":1,"value":"FF"}]'
expect_ok "json ascii" "$TC" tlv decode --json 5003414243
expect_output "json ascii value" '[{"depth":0,"offset":0,"path":"50","tag":"50","constructed":false,"length":3,"value":"414243","ascii":"ABC"}]'

# --- 16 levels deep is the limit
expect_ok "16 levels" "$TC" tlv decode A11EA11CA11AA118A116A114A112A110A10EA10CA10AA108A106A104A1028000
expect_contains "16th level indented" "$out" "                              80 primitive, 0 bytes"

# --- help
expect_ok "decode --help" "$TC" tlv decode --help
expect_contains "decode help usage" "$out" "usage: trustchain tlv decode [--json] HEX..."
expect_ok "tlv --help" "$TC" tlv --help
expect_contains "tlv help lists decode" "$out" "decode"

# --- rejections
expect_fail 2 "00 first tag byte" "$TC" tlv decode 6F00 00
expect_contains "00 message" "$err" "trustchain: tlv decode: byte 3: 00 is not a valid first tag byte (padding between data objects is not accepted)"
expect_fail 2 "first subsequent tag byte 80" "$TC" tlv decode 9F800100
expect_contains "80 message" "$err" "byte 2: first subsequent tag byte is 80 (X.690 §8.1.2.4.2 c)"
expect_fail 2 "tag of 5 bytes" "$TC" tlv decode 1F8182830100
expect_contains "5-byte tag message" "$err" "byte 5: tag starting at byte 1 is longer than 4 bytes"
expect_fail 2 "tag cut short" "$TC" tlv decode 9F
expect_contains "tag cut short message" "$err" "byte 2: input ends inside the tag starting at byte 1"
expect_fail 2 "no length" "$TC" tlv decode 84
expect_contains "no length message" "$err" "byte 2: input ends before the length of tag 84"
expect_fail 2 "indefinite length" "$TC" tlv decode 6F80 8401AA 0000
expect_contains "indefinite length message" "$err" "trustchain: tlv decode: byte 2: indefinite length (80) of tag 6F is not allowed (ISO/IEC 7816-4 §5.2.2.2)"
expect_fail 2 "5 length bytes" "$TC" tlv decode 84850000000001AA
expect_contains "5 length bytes message" "$err" "byte 2: length field 85 of tag 84 announces 5 length bytes, at most 4 are allowed"
expect_fail 2 "length field cut short" "$TC" tlv decode 848201
expect_contains "length field cut short message" "$err" "byte 2: length field 82 of tag 84 needs 2 more byte(s) but only 1 remain"
expect_fail 2 "value past the end" "$TC" tlv decode 8405AABB
expect_contains "value past the end message" "$err" "byte 3: tag 84 has a value of 5 byte(s) but only 2 remain"
expect_fail 2 "value past the enclosing object" "$TC" tlv decode 6F108408A000000151000000A5049F6502FF
expect_contains "enclosing object message" "$err" "byte 18: tag 9F65 has a value of 2 byte(s) but only 1 remain inside A5"
expect_fail 2 "17 levels" "$TC" tlv decode A120A11EA11CA11AA118A116A114A112A110A10EA10CA10AA108A106A104A1028000
expect_contains "17 levels message" "$err" "byte 31: tag A1 at level 16 holds data objects nested deeper than 16 levels"
expect_fail 2 "not hex" "$TC" tlv decode 6F0X
expect_contains "not hex message" "$err" "trustchain: tlv decode: hex: character 4 ('X') is not a hex digit"
expect_fail 2 "no hex" "$TC" tlv decode
expect_contains "no hex message" "$err" "trustchain: tlv decode: no hex bytes given"
expect_fail 2 "unknown option" "$TC" tlv decode --tree 6F00
expect_contains "unknown option message" "$err" "unknown option '--tree'"
finish
