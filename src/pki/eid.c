/*
 * EID helpers: the eUICC identifier of GSMA SGP.29 (32 decimal digits, the
 * last two check digits per ISO/IEC 7064 MOD 97-10) and its packed BCD form.
 */
#include <string.h>

#include <trustchain/pki.h>

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* The 32-digit number mod 97, digit by digit (it does not fit 64 bits). */
static unsigned mod97(const char *s, size_t n)
{
    unsigned r = 0;
    for (size_t i = 0; i < n; i++)
        r = (r * 10u + (unsigned)(s[i] - '0')) % 97u;
    return r;
}

tc_err tc_pki_eid_check(const char *eid)
{
    TC_ENSURE(eid != NULL, TC_ERR_ARG);
    size_t n = strnlen(eid, TC_PKI_EID_DIGITS + 1);
    TC_ENSURE_MSG(n == TC_PKI_EID_DIGITS && all_digits(eid, n), TC_ERR_FORMAT,
                  "EID must be exactly 32 decimal digits");
    /* SGP.29 §10: "Using the 32 digits as a decimal integer, compute the
     * remainder of that number on division by 97. If the remainder of the
     * division is 1, the verification is successful." */
    TC_ENSURE_MSG(mod97(eid, n) == 1u, TC_ERR_VERIFY, "EID %s has bad check digits", eid);
    return TC_OK;
}

tc_err tc_pki_eid_complete(const char *eid, char out[static 33])
{
    TC_ENSURE(eid != NULL, TC_ERR_ARG);
    size_t n = strnlen(eid, TC_PKI_EID_DIGITS + 1);
    TC_ENSURE_MSG((n == 30 || n == 32) && all_digits(eid, n), TC_ERR_FORMAT,
                  "EID must be 30 or 32 decimal digits");
    /* SGP.29 §10: set the check digits to 00, take the remainder mod 97 and
     * use 98 - remainder, left-padded with 0, as the two check digits. */
    memcpy(out, eid, 30);
    out[30] = '0';
    out[31] = '0';
    unsigned c = 98u - mod97(out, 32);
    out[30] = (char)('0' + c / 10u);
    out[31] = (char)('0' + c % 10u);
    out[32] = '\0';
    return TC_OK;
}

tc_err tc_pki_eid_to_bcd(const char *eid, uint8_t out[static TC_PKI_EID_BCD_LEN])
{
    TC_GUARD(tc_pki_eid_check(eid));
    for (size_t i = 0; i < TC_PKI_EID_BCD_LEN; i++)
        out[i] = (uint8_t)(((unsigned)(eid[2 * i] - '0') << 4) | (unsigned)(eid[2 * i + 1] - '0'));
    return TC_OK;
}

tc_err tc_pki_eid_from_bcd(const uint8_t bcd[static TC_PKI_EID_BCD_LEN], char out[static 33])
{
    for (size_t i = 0; i < TC_PKI_EID_BCD_LEN; i++) {
        unsigned hi = bcd[i] >> 4, lo = bcd[i] & 0x0Fu;
        TC_ENSURE_MSG(hi <= 9 && lo <= 9, TC_ERR_FORMAT, "EID BCD byte %zu (0x%02X) is not BCD", i,
                      bcd[i]);
        out[2 * i] = (char)('0' + hi);
        out[2 * i + 1] = (char)('0' + lo);
    }
    out[32] = '\0';
    return tc_pki_eid_check(out);
}

tc_err tc_pki_eid_prefix_check(const char *prefix)
{
    TC_ENSURE(prefix != NULL, TC_ERR_ARG);
    size_t n = strnlen(prefix, 31);
    TC_ENSURE_MSG(n >= 1 && n <= 30 && all_digits(prefix, n), TC_ERR_FORMAT,
                  "EID prefix must be 1 to 30 decimal digits");
    return TC_OK;
}
