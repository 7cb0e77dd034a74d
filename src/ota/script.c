/*
 * GP Amendment B script bodies: the expanded remote command and response
 * formats of ETSI TS 102 226 §5.2.2 in their indefinite-length templates
 * ('AE' command scripting, 'AF' response scripting, ended by '00 00').
 */
#include <trustchain/codec.h>
#include <trustchain/ota.h>

#define TAG_CMD_TEMPLATE 0xAEu /* Command Scripting template, indefinite length */
#define TAG_RSP_TEMPLATE 0xAFu /* Response Scripting template, indefinite length */
#define TAG_CAPDU        0x22u
#define TAG_RAPDU        0x23u
#define TAG_EXECUTED     0x80u /* Number of executed C-APDUs */
#define LEN_INDEFINITE   0x80u

/* X.690 §10.1 (DER): the length in the fewest octets; a script has exactly
 * one encoding, so a replayed script cannot be disguised by re-encoding. */
static tc_err check_minimal(const struct tc_tlv *t)
{
    size_t want = 1 + (t->len < 0x80 ? 1 : t->len <= 0xFF ? 2 : t->len <= 0xFFFF ? 3 : 4);
    TC_ENSURE_MSG(t->tag_len == 1 && t->header_len == want, TC_ERR_FORMAT,
                  "TLV %02X does not use the minimal length form", (unsigned)t->tag);
    return TC_OK;
}

static tc_err put_all(uint8_t outer, uint8_t inner, const struct tc_ota_bytes *v, size_t n,
                      bool executed, struct tc_buf *out)
{
    TC_ENSURE(n <= TC_OTA_SCRIPT_MAX && (n == 0 || v != NULL), TC_ERR_ARG);
    tc_buf_put_u8(out, outer);
    tc_buf_put_u8(out, LEN_INDEFINITE);
    if (executed) {
        uint8_t cnt = (uint8_t)n;
        tc_tlv_put(out, TAG_EXECUTED, &cnt, 1);
    }
    for (size_t i = 0; i < n; i++)
        tc_tlv_put(out, inner, v[i].p, v[i].len);
    /* X.690 §8.1.5: end-of-contents octets close the indefinite form. */
    tc_buf_put_u8(out, 0x00);
    tc_buf_put_u8(out, 0x00);
    return tc_buf_status(out);
}

tc_err tc_ota_script_encode(const struct tc_ota_bytes *capdus, size_t n, struct tc_buf *out)
{
    struct tc_apdu a;
    for (size_t i = 0; i < n; i++)
        TC_GUARD(tc_apdu_decode(capdus[i].p, capdus[i].len, &a));
    return put_all(TAG_CMD_TEMPLATE, TAG_CAPDU, capdus, n, false, out);
}

tc_err tc_ota_response_encode(const struct tc_ota_bytes *rapdus, size_t n, struct tc_buf *out)
{
    for (size_t i = 0; i < n; i++)
        TC_ENSURE_MSG(rapdus[i].len >= 2, TC_ERR_ARG, "R-APDU %zu has no status word", i);
    return put_all(TAG_RSP_TEMPLATE, TAG_RAPDU, rapdus, n, true, out);
}

/* Opens the template and returns a cursor over its contents (without the
 * end-of-contents octets). */
static tc_err open_template(const uint8_t *in, size_t len, uint8_t tag, struct tc_cursor *body)
{
    struct tc_cursor c;
    uint8_t t = 0, l = 0;
    TC_ENSURE(in != NULL, TC_ERR_ARG);
    tc_cursor_init(&c, in, len);
    TC_GUARD(tc_cursor_u8(&c, &t));
    TC_ENSURE_MSG(t == tag, TC_ERR_FORMAT, "script template tag %02X, expected %02X", t, tag);
    TC_GUARD(tc_cursor_u8(&c, &l));
    TC_ENSURE_MSG(l == LEN_INDEFINITE, TC_ERR_FORMAT,
                  "script template length %02X: only the indefinite form (80) is accepted", l);
    size_t rest = tc_cursor_remaining(&c);
    TC_ENSURE_MSG(rest >= 2, TC_ERR_TRUNCATED, "script without end-of-contents octets");
    TC_GUARD(tc_cursor_sub(&c, rest - 2, body));
    uint16_t eoc = 0xFFFF;
    TC_GUARD(tc_cursor_u16be(&c, &eoc));
    TC_ENSURE_MSG(eoc == 0x0000, TC_ERR_FORMAT, "script does not end with 00 00");
    return tc_cursor_expect_end(&c);
}

tc_err tc_ota_script_decode(const uint8_t *in, size_t len,
                            struct tc_ota_bytes capdus[TC_OTA_SCRIPT_MAX], size_t *n)
{
    struct tc_cursor body;
    struct tc_tlv t;
    struct tc_apdu a;
    TC_ENSURE(capdus != NULL && n != NULL, TC_ERR_ARG);
    *n = 0;
    TC_GUARD(open_template(in, len, TAG_CMD_TEMPLATE, &body));
    size_t k = 0;
    while (tc_cursor_remaining(&body) > 0) {
        TC_GUARD(tc_tlv_next(&body, &t));
        TC_GUARD(check_minimal(&t));
        TC_ENSURE_MSG(t.tag == TAG_CAPDU, TC_ERR_UNSUPPORTED,
                      "command script TLV %02X: only C-APDU (22) is supported", (unsigned)t.tag);
        TC_ENSURE_MSG(k < TC_OTA_SCRIPT_MAX, TC_ERR_RANGE, "more than %u C-APDUs",
                      TC_OTA_SCRIPT_MAX);
        TC_GUARD(tc_apdu_decode(t.value, t.len, &a));
        capdus[k].p = t.value;
        capdus[k].len = t.len;
        k++;
    }
    TC_ENSURE_MSG(k > 0, TC_ERR_FORMAT, "empty command script");
    *n = k;
    return TC_OK;
}

tc_err tc_ota_response_decode(const uint8_t *in, size_t len,
                              struct tc_ota_bytes rapdus[TC_OTA_SCRIPT_MAX], size_t *n,
                              size_t *executed)
{
    struct tc_cursor body;
    struct tc_tlv t;
    bool have_count = false;
    size_t count = 0, k = 0;
    TC_ENSURE(rapdus != NULL && n != NULL && executed != NULL, TC_ERR_ARG);
    *n = 0;
    TC_GUARD(open_template(in, len, TAG_RSP_TEMPLATE, &body));
    while (tc_cursor_remaining(&body) > 0) {
        TC_GUARD(tc_tlv_next(&body, &t));
        TC_GUARD(check_minimal(&t));
        switch (t.tag) {
        case TAG_EXECUTED:
            TC_ENSURE_MSG(!have_count, TC_ERR_FORMAT, "two executed-count TLVs");
            TC_ENSURE_MSG(t.len == 1, TC_ERR_FORMAT, "executed-count length %zu", t.len);
            count = t.value[0];
            have_count = true;
            break;
        case TAG_RAPDU:
            TC_ENSURE_MSG(k < TC_OTA_SCRIPT_MAX, TC_ERR_RANGE, "more than %u R-APDUs",
                          TC_OTA_SCRIPT_MAX);
            TC_ENSURE_MSG(t.len >= 2, TC_ERR_FORMAT, "R-APDU %zu without a status word", k);
            rapdus[k].p = t.value;
            rapdus[k].len = t.len;
            k++;
            break;
        default:
            return TC_FAIL(TC_ERR_UNSUPPORTED, "response script TLV %02X is not supported",
                           (unsigned)t.tag);
        }
    }
    TC_ENSURE_MSG(!have_count || count == k, TC_ERR_FORMAT, "executed count %zu but %zu R-APDUs",
                  count, k);
    *n = k;
    *executed = have_count ? count : k;
    return TC_OK;
}
