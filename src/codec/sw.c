/*
 * Response APDUs and status words: ISO/IEC 7816-4 §5.6 and the status words GlobalPlatform Card
 * Specification 2.3 §11 gives its commands. Where GlobalPlatform gives a command-specific meaning
 * to an ISO value, the text carries both.
 */
#include <stdio.h>

#include <trustchain/codec.h>

tc_err tc_rapdu_decode(const uint8_t *in, size_t len, struct tc_rapdu *out)
{
    TC_ENSURE(out != NULL && (in != NULL || len == 0), TC_ERR_ARG);
    struct tc_rapdu r = {0};
    struct tc_cursor c;
    tc_cursor_init(&c, in, len);
    if (len < 2)
        return TC_FAIL(
            TC_ERR_TRUNCATED,
            "byte %zu: a response APDU ends with SW1 SW2 and has at least 2 bytes, got %zu",
            len + 1, len);
    if (len - 2 > TC_APDU_MAX_EXT_LE)
        return TC_FAIL(
            TC_ERR_FORMAT,
            "byte %zu: a response carries at most 65536 data bytes before SW1 SW2, got %zu",
            (size_t)TC_APDU_MAX_EXT_LE + 1, len - 2);
    r.len = len - 2;
    if (r.len > 0)
        TC_GUARD(tc_cursor_view(&c, r.len, &r.data));
    uint16_t sw = 0;
    TC_GUARD(tc_cursor_u16be(&c, &sw));
    TC_GUARD(tc_cursor_expect_end(&c));
    /* ISO/IEC 7816-4 §5.6: SW1 is 6X (except 60) or 9X. */
    uint8_t sw1 = (uint8_t)(sw >> 8);
    if (!(((sw1 & 0xF0u) == 0x60u && sw1 != 0x60u) || (sw1 & 0xF0u) == 0x90u))
        return TC_FAIL(
            TC_ERR_FORMAT,
            "byte %zu: SW1 %02X is not a status byte (ISO/IEC 7816-4 §5.6: 61-6F or 90-9F)",
            len - 1, sw1);
    r.sw = sw;
    *out = r;
    return TC_OK;
}

struct sw_text {
    uint16_t sw;
    const char *text;
};

/* Exact status words. */
static const struct sw_text sw_exact[] = {
    {0x9000, "normal processing, no further qualification"},
    /* 62xx: warning, non-volatile memory unchanged */
    {0x6200, "warning: no information given (non-volatile memory unchanged)"},
    {0x6281, "warning: part of the returned data may be corrupted"},
    {0x6282, "warning: end of file or record reached before reading Ne bytes, or unsuccessful "
             "search"},
    {0x6283, "warning: selected file deactivated (GlobalPlatform SELECT: card life cycle state "
             "is CARD_LOCKED, or the selected application is locked)"},
    {0x6284, "warning: file control information not formatted according to ISO/IEC 7816-4"},
    {0x6285, "warning: selected file in termination state"},
    {0x6286, "warning: no input data available from a sensor on the card"},
    {0x6287, "warning: at least one of the referenced records is deactivated"},
    /* 63xx: warning, non-volatile memory changed */
    {0x6300, "warning: no information given (non-volatile memory changed; GlobalPlatform "
             "EXTERNAL AUTHENTICATE: host cryptogram verification failed)"},
    {0x6310, "more data available (GlobalPlatform GET STATUS, GET DATA)"},
    {0x6381, "warning: file filled up by the last write"},
    /* 64xx, 65xx, 66xx: execution errors */
    {0x6400, "execution error: no specific diagnosis (non-volatile memory unchanged)"},
    {0x6401, "execution error: immediate response required by the card"},
    {0x6500, "execution error: no information given (non-volatile memory changed)"},
    {0x6581, "execution error: memory failure"},
    {0x6600, "security-related issue: no information given"},
    /* 67xx .. 6Fxx: checking errors */
    {0x6700, "wrong length (Lc or Le)"},
    {0x6800, "function in CLA not supported: no information given"},
    {0x6881, "logical channel not supported or not active"},
    {0x6882, "secure messaging not supported"},
    {0x6883, "last command of the chain expected"},
    {0x6884, "command chaining not supported"},
    {0x6900, "command not allowed: no information given"},
    {0x6981, "command incompatible with file structure"},
    {0x6982, "security status not satisfied"},
    {0x6983, "authentication method blocked"},
    {0x6984, "reference data not usable"},
    {0x6985, "conditions of use not satisfied"},
    {0x6986, "command not allowed (no current EF)"},
    {0x6987, "expected secure messaging data objects missing"},
    {0x6988, "incorrect secure messaging data objects"},
    {0x6A00, "wrong parameters P1-P2: no information given"},
    {0x6A80, "incorrect parameters in the command data field"},
    {0x6A81, "function not supported (GlobalPlatform SELECT: card life cycle state is "
             "CARD_LOCKED)"},
    {0x6A82, "file or application not found"},
    {0x6A83, "record not found"},
    {0x6A84, "not enough memory space"},
    {0x6A85, "Nc inconsistent with TLV structure"},
    {0x6A86, "incorrect parameters P1-P2"},
    {0x6A87, "Nc inconsistent with parameters P1-P2"},
    {0x6A88, "referenced data or reference data not found"},
    {0x6A89, "file already exists"},
    {0x6A8A, "DF name already exists"},
    {0x6B00, "wrong parameters P1-P2"},
    {0x6D00, "instruction code not supported or invalid"},
    {0x6E00, "class not supported"},
    {0x6F00, "no precise diagnosis"},
    /* GlobalPlatform PUT KEY (GP Card Specification 2.3 §11.8) */
    {0x9484, "algorithm not supported (GlobalPlatform PUT KEY)"},
    {0x9485, "invalid key check value (GlobalPlatform PUT KEY)"},
};

/* Whole SW1 ranges whose SW2 carries a number or is not individually
 * defined; looked up after the exact table. */
static const char *sw_by_sw1(uint16_t sw)
{
    uint8_t sw1 = (uint8_t)(sw >> 8);
    uint8_t sw2 = (uint8_t)sw;
    switch (sw1) {
    case 0x61:
        return "normal processing: SW2 encodes the number of data bytes still available "
               "(GET RESPONSE)";
    case 0x62:
        if (sw2 >= 0x02 && sw2 <= 0x80)
            return "warning: triggering by the card (non-volatile memory unchanged)";
        return "warning: non-volatile memory unchanged (SW2 not defined)";
    case 0x63:
        if ((sw2 & 0xF0u) == 0xC0u)
            return "warning: counter from 0 to 15 encoded in the low nibble of SW2 (meaning "
                   "depends on the command, e.g. retries left)";
        return "warning: non-volatile memory changed (SW2 not defined)";
    case 0x64:
        if (sw2 >= 0x02 && sw2 <= 0x80)
            return "execution error: triggering by the card (non-volatile memory unchanged)";
        return "execution error: non-volatile memory unchanged (SW2 not defined)";
    case 0x65:
        return "execution error: non-volatile memory changed (SW2 not defined)";
    case 0x66:
        return "security-related issue (SW2 not defined)";
    case 0x67:
        return "wrong length (SW2 not defined)";
    case 0x68:
        return "function in CLA not supported (SW2 not defined)";
    case 0x69:
        return "command not allowed (SW2 not defined)";
    case 0x6A:
        return "wrong parameters P1-P2 (SW2 not defined)";
    case 0x6C:
        return "wrong Le field: SW2 encodes the exact number of available data bytes";
    case 0x6B:
    case 0x6D:
    case 0x6E:
    case 0x6F:
        return "checking error (SW2 not defined)";
    default:
        break;
    }
    if ((sw1 & 0xF0u) == 0x90u)
        return "application-specific status (ISO/IEC 7816-4 §5.6: 9XXX other than 9000 is "
               "proprietary)";
    return "not an ISO/IEC 7816-4 status word";
}

const char *tc_sw_text(uint16_t sw)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(sw_exact); i++)
        if (sw_exact[i].sw == sw)
            return sw_exact[i].text;
    return sw_by_sw1(sw);
}

void tc_sw_describe(uint16_t sw, char *out, size_t out_size)
{
    if (out == NULL || out_size == 0)
        return;
    uint8_t sw1 = (uint8_t)(sw >> 8);
    unsigned sw2 = (uint8_t)sw;
    int n;
    bool exact = false;
    for (size_t i = 0; i < TC_ARRAY_LEN(sw_exact); i++)
        exact = exact || sw_exact[i].sw == sw;
    if (!exact && sw1 == 0x61)
        /* SW2 00 counts as 256, as Le 00 does. */
        n = snprintf(out, out_size, "%04X: %u more data byte(s) available (GET RESPONSE)",
                     (unsigned)sw, sw2 == 0 ? 256u : sw2);
    else if (!exact && sw1 == 0x6C)
        n = snprintf(out, out_size, "%04X: wrong Le field; %u data byte(s) available", (unsigned)sw,
                     sw2 == 0 ? 256u : sw2);
    else if (!exact && sw1 == 0x63 && (sw2 & 0xF0u) == 0xC0u)
        n = snprintf(out, out_size,
                     "%04X: warning: counter is %u (meaning depends on the command, e.g. retries "
                     "left)",
                     (unsigned)sw, sw2 & 0x0Fu);
    else
        n = snprintf(out, out_size, "%04X: %s", (unsigned)sw, tc_sw_text(sw));
    if (n < 0)
        out[0] = '\0';
}
