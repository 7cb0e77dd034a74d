/*
 * trustchain codec: ISO/IEC 7816-4 command and response APDUs, the class byte,
 * status words, and BER-TLV as ISO 7816-4 and GlobalPlatform use it.
 *
 * Decoders read through the bounded cursor and never allocate; decoded
 * structures point into the caller's input. Every malformed input gives a
 * precise error naming the byte and what was expected.
 */
#ifndef TRUSTCHAIN_CODEC_H
#define TRUSTCHAIN_CODEC_H

#include <trustchain/core.h>

/* ------------------------------------------------------------------ APDU */

#define TC_APDU_MAX_SHORT_LC 255u
#define TC_APDU_MAX_SHORT_LE 256u
#define TC_APDU_MAX_EXT_LC   65535u
#define TC_APDU_MAX_EXT_LE   65536u
/* Largest encoded command: 4 header + 3 Lc + 65535 data + 2 Le. */
#define TC_APDU_MAX_ENCODED (4u + 3u + 65535u + 2u)

/* ISO/IEC 7816-4 §5.1: the seven cases of a command APDU. */
enum tc_apdu_case {
    TC_APDU_CASE_1 = 1,
    TC_APDU_CASE_2S,
    TC_APDU_CASE_3S,
    TC_APDU_CASE_4S,
    TC_APDU_CASE_2E,
    TC_APDU_CASE_3E,
    TC_APDU_CASE_4E
};

struct tc_apdu {
    uint8_t cla, ins, p1, p2;
    const uint8_t *data; /* NULL when lc == 0 */
    size_t lc;           /* Nc: 0..65535 */
    uint32_t le;         /* Ne: meaningful when has_le; 1..65536 */
    bool has_le;
    /* Decode: the form found. Encode: force the extended form even when the
     * sizes would fit the short one. */
    bool extended;
};

/* Decode exactly `len` bytes; short Le 00 = 256, extended Le 0000 = 65536,
 * an Lc of zero is rejected, trailing bytes are rejected. */
TC_MUST_CHECK tc_err tc_apdu_decode(const uint8_t *in, size_t len, struct tc_apdu *out);
/* Append the encoding; the short form unless a->extended or sizes need the
 * extended one (lc > 255 or le > 256). */
TC_MUST_CHECK tc_err tc_apdu_encode(const struct tc_apdu *a, struct tc_buf *out);
enum tc_apdu_case tc_apdu_case_of(const struct tc_apdu *a);
const char *tc_apdu_case_name(enum tc_apdu_case c); /* "4E" etc. */
/* The name of an ISO/IEC 7816-4 or GlobalPlatform instruction ("SELECT",
 * "INITIALIZE UPDATE"); the GlobalPlatform name when b8 of CLA is set
 * (E2 is STORE DATA under CLA 80, APPEND RECORD under CLA 00). NULL when
 * neither standard names the INS. A label for traces only. */
const char *tc_apdu_ins_name(uint8_t cla, uint8_t ins);

/* ------------------------------------------------------------------ CLA */

/* ISO/IEC 7816-4 §5.4.1 class byte: first interindustry (b8-b6 000, channels
 * 0-3, SM in b4-b3, chaining b5), further interindustry (b8-b7 01, channels
 * 4-19 as b4-b1 + 4, SM b6, chaining b5). GlobalPlatform commands set b8
 * (proprietary) with the same layout (GP Card Specification 2.3 §11.1.4). */
struct tc_cla_info {
    bool proprietary; /* b8 set (GlobalPlatform commands) */
    bool further;     /* channel 4-19 encoding */
    uint8_t channel;  /* 0..19 */
    bool chained;     /* command chaining: not the last command */
    uint8_t sm;       /* first interindustry: b4-b3 (0..3); further: b6 (0/1) */
    bool secure;      /* any secure messaging indicated */
};

/* 0xFF is invalid (ISO 7816-4); TC_ERR_FORMAT. */
TC_MUST_CHECK tc_err tc_cla_decode(uint8_t cla, struct tc_cla_info *out);
/* Build a CLA for a channel; `secure` sets b3 (first interindustry, i.e.
 * 0x04 as GlobalPlatform uses it) or b6 (further). */
TC_MUST_CHECK tc_err tc_cla_encode(bool proprietary, uint8_t channel, bool secure, bool chained,
                                   uint8_t *cla);

/* ------------------------------------------------------------------ R-APDU */

struct tc_rapdu {
    const uint8_t *data; /* NULL when len == 0 */
    size_t len;
    uint16_t sw;
};

/* At least two bytes: data then SW1 SW2. */
TC_MUST_CHECK tc_err tc_rapdu_decode(const uint8_t *in, size_t len, struct tc_rapdu *out);
/* A short sentence for an ISO 7816-4 or GlobalPlatform status word, e.g.
 * "6982: security status not satisfied"; writes into out. Never fails. */
void tc_sw_describe(uint16_t sw, char *out, size_t out_size);
/* Without the "XXXX: " prefix; NULL-free. */
const char *tc_sw_text(uint16_t sw);

/* ------------------------------------------------------------------ BER-TLV */

/* ISO/IEC 7816-4 §5.2.2 / X.690 §8.1: tags of up to 4 octets, definite lengths
 * in short form or long form with up to 4 length octets. */
#define TC_TLV_MAX_TAG_BYTES 4u
#define TC_TLV_MAX_LEN_BYTES 4u
#define TC_TLV_MAX_DEPTH     16u

struct tc_tlv {
    uint32_t tag;     /* tag octets big-endian: 0x9F7F, 0xBF0C, 0x6F */
    uint8_t tag_len;  /* 1..4 */
    bool constructed; /* b6 of the first tag octet */
    const uint8_t *value;
    size_t len;
    size_t header_len; /* tag + length octets */
};

/* Parse one TLV; on failure the cursor does not move. Indefinite length
 * (0x80), more than 4 length octets, and lengths past the input are errors. */
TC_MUST_CHECK tc_err tc_tlv_next(struct tc_cursor *c, struct tc_tlv *out);
/* Check a whole buffer: every TLV well formed, constructed ones recursively
 * (to TC_TLV_MAX_DEPTH), everything consumed exactly. */
TC_MUST_CHECK tc_err tc_tlv_validate(const uint8_t *p, size_t len);
/* First TLV with `tag` at the top level of p; TC_ERR_NOT_FOUND if absent. */
TC_MUST_CHECK tc_err tc_tlv_find(const uint8_t *p, size_t len, uint32_t tag, struct tc_tlv *out);
/* Follow a path of tags through constructed TLVs (e.g. {0x6F, 0xA5, 0x73}). */
TC_MUST_CHECK tc_err tc_tlv_find_path(const uint8_t *p, size_t len, const uint32_t *path,
                                      size_t depth, struct tc_tlv *out);

/* Encoding: tag octets as stored in tc_tlv.tag; minimal length form. */
void tc_tlv_put_tag(struct tc_buf *b, uint32_t tag);
void tc_tlv_put_len(struct tc_buf *b, size_t len);
void tc_tlv_put(struct tc_buf *b, uint32_t tag, const void *value, size_t len);
/* Nested constructed TLVs with the length computed at the end:
 *   size_t m = tc_tlv_begin(b, 0x6F); ...puts...; tc_tlv_end(b, m);
 * The length field is patched (content moved if it needs more octets). */
size_t tc_tlv_begin(struct tc_buf *b, uint32_t tag);
void tc_tlv_end(struct tc_buf *b, size_t mark);

#endif
