/*
 * The class byte (ISO/IEC 7816-4 §5.4.1, GlobalPlatform Card Specification
 * 2.3 §11.1.4): logical channel, command chaining and secure messaging.
 *
 * Must never: decode a CLA whose layout neither standard defines as if it
 * had one (RFU and unstructured proprietary values are refused).
 */
#include <trustchain/codec.h>

#define CLA_PROPRIETARY 0x80u
#define CLA_FURTHER     0x40u
#define CLA_CHAIN       0x10u

tc_err tc_cla_decode(uint8_t cla, struct tc_cla_info *out)
{
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    struct tc_cla_info i = {0};
    if (cla == 0xFFu)
        return TC_FAIL(TC_ERR_FORMAT, "CLA FF is invalid (ISO/IEC 7816-4 §5.4.1)");
    i.proprietary = (cla & CLA_PROPRIETARY) != 0;
    if (!i.proprietary && (cla & 0xE0u) == 0x20u)
        return TC_FAIL(TC_ERR_UNSUPPORTED,
                       "CLA %02X is reserved for future use (ISO/IEC 7816-4 §5.4.1: 001x xxxx)",
                       cla);
    if (i.proprietary && (cla & 0x60u) == 0x20u)
        return TC_FAIL(TC_ERR_UNSUPPORTED,
                       "CLA %02X is proprietary without the GlobalPlatform layout (GP Card "
                       "Specification 2.3 §11.1.4 defines 80-9F and C0-FE)",
                       cla);
    i.chained = (cla & CLA_CHAIN) != 0;
    if ((cla & CLA_FURTHER) != 0) {
        /* Further interindustry (x1xx xxxx): b6 SM, b5 chaining, b4-b1 the
         * channel number minus 4. */
        i.further = true;
        i.sm = (uint8_t)((cla >> 5) & 1u);
        i.channel = (uint8_t)((cla & 0x0Fu) + 4u);
    } else {
        /* First interindustry (x00x xxxx): b5 chaining, b4-b3 SM, b2-b1
         * the channel number 0-3. */
        i.sm = (uint8_t)((cla >> 2) & 3u);
        i.channel = (uint8_t)(cla & 0x03u);
    }
    i.secure = i.sm != 0;
    *out = i;
    return TC_OK;
}

tc_err tc_cla_encode(bool proprietary, uint8_t channel, bool secure, bool chained, uint8_t *cla)
{
    TC_ENSURE(cla != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(channel <= 19, TC_ERR_RANGE,
                  "logical channel %u is outside 0..19 (ISO/IEC 7816-4 §5.4.1)", channel);
    unsigned v = proprietary ? CLA_PROPRIETARY : 0u;
    if (chained)
        v |= CLA_CHAIN;
    if (channel <= 3) {
        v |= channel;
        if (secure)
            v |= 0x04u; /* b4-b3 = 01: GlobalPlatform secure messaging */
    } else {
        v |= CLA_FURTHER | (unsigned)(channel - 4u);
        if (secure)
            v |= 0x20u; /* b6 */
    }
    TC_ENSURE_MSG(v != 0xFFu, TC_ERR_RANGE,
                  "proprietary, secure, chained on channel 19 would be CLA FF, which is invalid");
    *cla = (uint8_t)v;
    return TC_OK;
}
