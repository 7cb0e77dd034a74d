/*
 * libFuzzer target for command and response APDUs: a command that decodes
 * must encode back to exactly the same bytes; the class byte, case and
 * status word helpers must accept anything the decoders return.
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/codec.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t encoded[TC_APDU_MAX_ENCODED];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tc_apdu a;
    if (tc_apdu_decode(data, size, &a) == TC_OK) {
        struct tc_buf b;
        tc_buf_init_fixed(&b, encoded, sizeof encoded);
        if (tc_apdu_encode(&a, &b) != TC_OK || b.len != size || memcmp(b.data, data, size) != 0)
            abort();
        if (a.lc > TC_APDU_MAX_EXT_LC || (a.lc == 0) != (a.data == NULL))
            abort();
        if (a.has_le && (a.le < 1 || a.le > TC_APDU_MAX_EXT_LE))
            abort();
        enum tc_apdu_case k = tc_apdu_case_of(&a);
        if (strcmp(tc_apdu_case_name(k), "?") == 0)
            abort();
        (void)tc_apdu_ins_name(a.cla, a.ins);
        struct tc_cla_info ci;
        if (tc_cla_decode(a.cla, &ci) == TC_OK) {
            if (ci.channel > 19)
                abort();
            uint8_t back = 0;
            if (ci.sm <= 1 &&
                (tc_cla_encode(ci.proprietary, ci.channel, ci.secure, ci.chained, &back) != TC_OK ||
                 back != a.cla))
                abort();
        }
    }
    struct tc_rapdu r;
    if (tc_rapdu_decode(data, size, &r) == TC_OK) {
        if (r.len + 2 != size || (r.len == 0) != (r.data == NULL))
            abort();
        char text[160];
        tc_sw_describe(r.sw, text, sizeof text);
        if (strlen(text) < 6 || tc_sw_text(r.sw) == NULL)
            abort();
    }
    return 0;
}
