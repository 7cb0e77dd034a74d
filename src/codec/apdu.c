/*
 * ISO/IEC 7816-4 command APDUs: the seven cases, short and extended length
 * fields. Decoding reads through the cursor, consumes the input exactly and
 * names the offending byte (1-based, as a trace is read) in every error.
 *
 * Must never: accept an Lc of zero, mix short and extended length fields, or
 * leave bytes unconsumed.
 */
#include <trustchain/codec.h>

/* ISO/IEC 7816-4 (instruction byte): INS values 6X and 9X are invalid;
 * over T=0 they are procedure bytes and status bytes (ISO/IEC 7816-3). */
static bool ins_invalid(uint8_t ins)
{
    return (ins & 0xF0u) == 0x60u || (ins & 0xF0u) == 0x90u;
}

static tc_err check_header(uint8_t cla, uint8_t ins)
{
    /* ISO/IEC 7816-4 §5.4.1: the value FF of CLA is invalid (reserved for
     * PPS, ISO/IEC 7816-3 §9). */
    if (cla == 0xFFu)
        return TC_FAIL(TC_ERR_FORMAT, "byte 1: CLA FF is invalid (ISO/IEC 7816-4 §5.4.1)");
    if (ins_invalid(ins))
        return TC_FAIL(TC_ERR_FORMAT,
                       "byte 2: INS %02X is invalid (ISO/IEC 7816-4: 6X and 9X "
                       "are not instructions)",
                       ins);
    return TC_OK;
}

/* Short Le: 00 means 256. Extended Le: 0000 means 65536 (ISO/IEC 7816-4 §5.1). */
static uint32_t short_le(uint8_t b)
{
    return b == 0 ? 256u : b;
}

static uint32_t ext_le(uint16_t v)
{
    return v == 0 ? 65536u : v;
}

static tc_err decode_short(struct tc_cursor *c, uint8_t b1, struct tc_apdu *out)
{
    /* Body of length L after the header, B1 != 00 (ISO/IEC 7816-4 §5.1):
     * L = 1 + B1 is case 3S, L = 2 + B1 is case 4S. */
    size_t body = tc_cursor_remaining(c) + 1; /* b1 already read */
    size_t lc = b1;
    if (body < 1 + lc)
        return TC_FAIL(TC_ERR_TRUNCATED,
                       "byte 5: Lc of %zu announces %zu data byte(s) but only %zu follow", lc, lc,
                       body - 1);
    const uint8_t *data = NULL;
    TC_GUARD(tc_cursor_view(c, lc, &data));
    out->lc = lc;
    out->data = data;
    if (body == 1 + lc)
        return TC_OK; /* case 3S */
    if (body == 3 + lc)
        return TC_FAIL(TC_ERR_FORMAT,
                       "byte %zu: a 2-byte Le after a short Lc: short and extended length fields "
                       "cannot be mixed (ISO/IEC 7816-4 §5.1)",
                       6 + lc);
    if (body > 2 + lc)
        return TC_FAIL(
            TC_ERR_FORMAT,
            "byte %zu: %zu unexpected byte(s) after Le (a case 4S command with Lc %zu is "
            "%zu bytes long)",
            7 + lc, body - 2 - lc, lc, 6 + lc);
    uint8_t le = 0;
    TC_GUARD(tc_cursor_u8(c, &le));
    out->has_le = true;
    out->le = short_le(le);
    return TC_OK; /* case 4S */
}

static tc_err decode_extended(struct tc_cursor *c, struct tc_apdu *out)
{
    /* B1 = 00 and L > 1: extended length fields (ISO/IEC 7816-4 §5.1). */
    size_t body = tc_cursor_remaining(c) + 1;
    if (body == 2)
        return TC_FAIL(TC_ERR_FORMAT, "byte 5: Lc of 0 is not allowed, and an extended length "
                                      "field 00 needs 2 more bytes but only 1 follows");
    out->extended = true;
    uint16_t v = 0;
    TC_GUARD(tc_cursor_u16be(c, &v));
    if (body == 3) { /* case 2E: 00 Le1 Le2 */
        out->has_le = true;
        out->le = ext_le(v);
        return TC_OK;
    }
    size_t lc = v;
    if (lc == 0)
        return TC_FAIL(TC_ERR_FORMAT, "bytes 6-7: extended Lc of 0 is not allowed (a 7-byte "
                                      "command 00 Le1 Le2 is case 2E)");
    if (body < 3 + lc)
        return TC_FAIL(TC_ERR_TRUNCATED,
                       "bytes 6-7: extended Lc of %zu announces %zu data byte(s) but only %zu "
                       "follow",
                       lc, lc, body - 3);
    const uint8_t *data = NULL;
    TC_GUARD(tc_cursor_view(c, lc, &data));
    out->lc = lc;
    out->data = data;
    if (body == 3 + lc)
        return TC_OK; /* case 3E */
    if (body == 4 + lc)
        return TC_FAIL(TC_ERR_FORMAT,
                       "byte %zu: a 1-byte Le after an extended Lc: short and extended length "
                       "fields cannot be mixed (ISO/IEC 7816-4 §5.1)",
                       8 + lc);
    if (body > 5 + lc)
        return TC_FAIL(
            TC_ERR_FORMAT,
            "byte %zu: %zu unexpected byte(s) after Le (a case 4E command with Lc %zu is "
            "%zu bytes long)",
            10 + lc, body - 5 - lc, lc, 9 + lc);
    TC_GUARD(tc_cursor_u16be(c, &v));
    out->has_le = true;
    out->le = ext_le(v); /* case 4E: Le1 Le2 without a leading 00 */
    return TC_OK;
}

tc_err tc_apdu_decode(const uint8_t *in, size_t len, struct tc_apdu *out)
{
    TC_ENSURE(out != NULL && (in != NULL || len == 0), TC_ERR_ARG);
    struct tc_apdu a = {0};
    struct tc_cursor c;
    tc_cursor_init(&c, in, len);
    if (len < 4)
        return TC_FAIL(TC_ERR_TRUNCATED,
                       "byte %zu: a command APDU has at least 4 bytes (CLA INS P1 P2), got %zu",
                       len + 1, len);
    TC_GUARD(tc_cursor_u8(&c, &a.cla));
    TC_GUARD(tc_cursor_u8(&c, &a.ins));
    TC_GUARD(tc_cursor_u8(&c, &a.p1));
    TC_GUARD(tc_cursor_u8(&c, &a.p2));
    TC_GUARD(check_header(a.cla, a.ins));

    if (tc_cursor_remaining(&c) > 0) {
        uint8_t b1 = 0;
        TC_GUARD(tc_cursor_u8(&c, &b1));
        if (tc_cursor_remaining(&c) == 0) { /* case 2S: L = 1, Le = B1 */
            a.has_le = true;
            a.le = short_le(b1);
        } else if (b1 != 0) {
            TC_GUARD(decode_short(&c, b1, &a));
        } else {
            TC_GUARD(decode_extended(&c, &a));
        }
    }
    TC_GUARD(tc_cursor_expect_end(&c));
    *out = a;
    return TC_OK;
}

static bool needs_extended(const struct tc_apdu *a)
{
    return a->extended || a->lc > TC_APDU_MAX_SHORT_LC ||
           (a->has_le && a->le > TC_APDU_MAX_SHORT_LE);
}

enum tc_apdu_case tc_apdu_case_of(const struct tc_apdu *a)
{
    bool ext = needs_extended(a);
    if (a->lc == 0 && !a->has_le)
        return TC_APDU_CASE_1;
    if (a->lc == 0)
        return ext ? TC_APDU_CASE_2E : TC_APDU_CASE_2S;
    if (!a->has_le)
        return ext ? TC_APDU_CASE_3E : TC_APDU_CASE_3S;
    return ext ? TC_APDU_CASE_4E : TC_APDU_CASE_4S;
}

const char *tc_apdu_case_name(enum tc_apdu_case c)
{
    switch (c) {
    case TC_APDU_CASE_1:
        return "1";
    case TC_APDU_CASE_2S:
        return "2S";
    case TC_APDU_CASE_3S:
        return "3S";
    case TC_APDU_CASE_4S:
        return "4S";
    case TC_APDU_CASE_2E:
        return "2E";
    case TC_APDU_CASE_3E:
        return "3E";
    case TC_APDU_CASE_4E:
        return "4E";
    default:
        return "?";
    }
}

tc_err tc_apdu_encode(const struct tc_apdu *a, struct tc_buf *out)
{
    TC_ENSURE(a != NULL && out != NULL, TC_ERR_ARG);
    TC_GUARD(check_header(a->cla, a->ins));
    TC_ENSURE_MSG(a->lc <= TC_APDU_MAX_EXT_LC, TC_ERR_RANGE,
                  "Lc of %zu is more than the extended maximum of 65535", a->lc);
    TC_ENSURE_MSG(a->lc == 0 || a->data != NULL, TC_ERR_ARG, "Lc of %zu without data", a->lc);
    TC_ENSURE_MSG(!a->has_le || (a->le >= 1 && a->le <= TC_APDU_MAX_EXT_LE), TC_ERR_RANGE,
                  "Le of %lu is outside 1..65536", (unsigned long)a->le);

    bool ext = needs_extended(a);
    tc_buf_put_u8(out, a->cla);
    tc_buf_put_u8(out, a->ins);
    tc_buf_put_u8(out, a->p1);
    tc_buf_put_u8(out, a->p2);
    if (!ext) {
        /* Short fields: Le 256 is encoded 00 (ISO/IEC 7816-4 §5.1). */
        if (a->lc > 0) {
            tc_buf_put_u8(out, (uint8_t)a->lc);
            tc_buf_put(out, a->data, a->lc);
        }
        if (a->has_le)
            tc_buf_put_u8(out, (uint8_t)(a->le == 256u ? 0u : a->le));
    } else if (a->lc > 0 || a->has_le) {
        /* Extended fields: one leading 00, then Lc1 Lc2 and/or Le1 Le2; Le
         * 65536 is encoded 0000. Case 1 has no length field to extend. */
        tc_buf_put_u8(out, 0);
        if (a->lc > 0) {
            tc_buf_put_u16be(out, (uint16_t)a->lc);
            tc_buf_put(out, a->data, a->lc);
        }
        if (a->has_le)
            tc_buf_put_u16be(out, (uint16_t)(a->le == 65536u ? 0u : a->le));
    }
    return tc_buf_status(out);
}
