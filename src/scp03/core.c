/*
 * The SCP03 session core shared by host and card: key and cryptogram
 * derivation, the C-MAC / R-MAC computations with the MAC chaining value,
 * the C-DEC / R-ENC counter and ICV, the class byte rules, security levels.
 *
 * Must never: advance a chaining value or counter itself (the callers do it
 * only after a verification succeeded), or leave key material on the stack.
 */
#include <string.h>

#include "scp03/internal.h"

void tc_scp03_session_wipe(struct tc_scp03_session *s)
{
    if (s == NULL)
        return;
    tc_memzero(s, sizeof *s);
    s->state = TC_SCP03_STATE_IDLE;
}

void tc_scp03_keyset_wipe(struct tc_scp03_keyset *ks)
{
    if (ks != NULL)
        tc_memzero(ks, sizeof *ks);
}

tc_err tc_scp03_keyset_set(struct tc_scp03_keyset *ks, uint8_t kvn, const uint8_t *enc,
                           const uint8_t *mac, const uint8_t *dek, size_t key_len)
{
    TC_ENSURE(ks != NULL && enc != NULL && mac != NULL && dek != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(tc_aes_key_len_ok(key_len), TC_ERR_ARG,
                  "SCP03 keys are AES-128, -192 or -256 (got %zu bytes)", key_len);
    tc_memzero(ks, sizeof *ks);
    ks->kvn = kvn;
    ks->key_len = (uint8_t)key_len;
    memcpy(ks->enc, enc, key_len);
    memcpy(ks->mac, mac, key_len);
    memcpy(ks->dek, dek, key_len);
    return TC_OK;
}

tc_err tc_scp03_derive_session_keys(const struct tc_scp03_keyset *ks, const uint8_t *context,
                                    size_t context_len, struct tc_scp03_session_keys *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(ks != NULL && out != NULL && context != NULL, TC_ERR_ARG);
    TC_ENSURE(tc_aes_key_len_ok(ks->key_len), TC_ERR_ARG);
    size_t kl = ks->key_len;
    out->key_len = ks->key_len;
    /* Amendment D §6.2.1: S-ENC from Key-ENC (04), S-MAC (06) and S-RMAC (07)
     * from Key-MAC, each as long as the static key (L = key length in bits). */
    TC_TRY(tc_scp03_kdf(ks->enc, kl, TC_SCP03_DC_S_ENC, context, context_len, out->s_enc, kl));
    TC_TRY(tc_scp03_kdf(ks->mac, kl, TC_SCP03_DC_S_MAC, context, context_len, out->s_mac, kl));
    TC_TRY(tc_scp03_kdf(ks->mac, kl, TC_SCP03_DC_S_RMAC, context, context_len, out->s_rmac, kl));
    ret = TC_OK;
out:
    if (ret != TC_OK)
        tc_memzero(out, sizeof *out);
    return ret;
}

tc_err tc_scp03_cryptograms(struct tc_scp03_session *s)
{
    uint8_t ctx[2 * TC_SCP03_CHALLENGE_MAX];
    TC_ENSURE(s != NULL && (s->s_len == TC_SCP03_S8 || s->s_len == TC_SCP03_S16), TC_ERR_ARG);
    memcpy(ctx, s->host_challenge, s->s_len);
    memcpy(ctx + s->s_len, s->card_challenge, s->s_len);
    size_t clen = 2u * s->s_len;
    /* Amendment D §6.2.2.2 card cryptogram (constant 00) and §6.2.2.3 host
     * cryptogram (01): KDF(S-MAC, context = host || card challenge), L = 64
     * in S8 mode, 128 in S16 mode. */
    tc_err ret = tc_scp03_kdf(s->keys.s_mac, s->keys.key_len, TC_SCP03_DC_CARD_CRYPTOGRAM, ctx,
                              clen, s->card_cryptogram, s->s_len);
    if (ret == TC_OK)
        ret = tc_scp03_kdf(s->keys.s_mac, s->keys.key_len, TC_SCP03_DC_HOST_CRYPTOGRAM, ctx, clen,
                           s->host_cryptogram, s->s_len);
    return ret;
}

/* ------------------------------------------------------------------ class byte */

tc_err tc_scp03_cla_for_mac(uint8_t cla, uint8_t *mac_cla)
{
    struct tc_cla_info ci;
    TC_GUARD(tc_cla_decode(cla, &ci));
    (void)ci;
    /* Amendment D §6.2.4: "The class byte shall be modified for the
     * generation or verification of the C-MAC: the logical channel number
     * shall be set to zero, bit 4 shall be set to 0 and bit 3 shall be set to
     * 1 to indicate GlobalPlatform proprietary secure messaging." Channel
     * zero exists only in the first interindustry coding, so a command on
     * channels 4-19 is MACed with the same class byte as one on channel 0
     * (84 for GlobalPlatform commands). Command chaining is not part of it:
     * the MAC covers the whole logical command (ISO/IEC 7816-4 §5.3.3). */
    *mac_cla = (uint8_t)((cla & 0x80u) | 0x04u);
    return TC_OK;
}

tc_err tc_scp03_cla_secure(uint8_t cla, uint8_t *sm_cla)
{
    struct tc_cla_info ci;
    TC_GUARD(tc_cla_decode(cla, &ci));
    if (ci.further)
        *sm_cla = (uint8_t)(cla | 0x20u);
    else
        *sm_cla = (uint8_t)((cla & ~0x0Cu) | 0x04u);
    return TC_OK;
}

uint8_t tc_scp03_cla_plain(uint8_t cla)
{
    if ((cla & 0x40u) != 0)
        return (uint8_t)(cla & ~0x20u);
    return (uint8_t)(cla & ~0x0Cu);
}

/* ------------------------------------------------------------------ MACs */

bool tc_scp03_need_extended(size_t lc, bool has_le, uint32_t le)
{
    return lc > TC_APDU_MAX_SHORT_LC || (has_le && le > TC_APDU_MAX_SHORT_LE);
}

tc_err tc_scp03_cmac(const struct tc_scp03_session *s, uint8_t mac_cla, uint8_t ins, uint8_t p1,
                     uint8_t p2, bool extended, const uint8_t *data, size_t data_len,
                     uint8_t mac[TC_AES_BLOCK])
{
    TC_ENSURE(s != NULL && mac != NULL && (data != NULL || data_len == 0), TC_ERR_ARG);
    size_t lc = data_len + s->s_len;
    TC_ENSURE_MSG(lc <= TC_APDU_MAX_EXT_LC, TC_ERR_RANGE,
                  "wrapped data of %zu bytes exceeds an extended APDU", lc);
    TC_ENSURE_MSG(extended || lc <= TC_APDU_MAX_SHORT_LC, TC_ERR_ARG,
                  "Lc' of %zu needs the extended form", lc);
    /* Amendment D §6.2.4: the C-MAC covers the MAC chaining value, the
     * modified class byte, INS P1 P2, Lc' (data + padding + C-MAC) and the
     * data field; Le is not covered. */
    uint8_t hdr[4 + 3];
    size_t hlen = 0;
    hdr[hlen++] = mac_cla;
    hdr[hlen++] = ins;
    hdr[hlen++] = p1;
    hdr[hlen++] = p2;
    if (extended) {
        hdr[hlen++] = 0;
        hdr[hlen++] = (uint8_t)(lc >> 8);
        hdr[hlen++] = (uint8_t)lc;
    } else {
        hdr[hlen++] = (uint8_t)lc;
    }
    const struct tc_iov parts[3] = {
        {s->mac_chain, TC_AES_BLOCK},
        {hdr, hlen},
        {data, data_len},
    };
    return tc_aes_cmac_iov(s->keys.s_mac, s->keys.key_len, parts, 3, mac);
}

tc_err tc_scp03_rmac(const struct tc_scp03_session *s, const uint8_t *data, size_t len, uint16_t sw,
                     uint8_t mac[TC_AES_BLOCK])
{
    TC_ENSURE(s != NULL && mac != NULL && (data != NULL || len == 0), TC_ERR_ARG);
    const uint8_t swb[2] = {(uint8_t)(sw >> 8), (uint8_t)sw};
    /* Amendment D §6.2.5: R-MAC over the MAC chaining value (that of the
     * command this responds to), the response data field and SW1 SW2, with
     * S-RMAC; the chaining value is not updated by a response. */
    const struct tc_iov parts[3] = {
        {s->mac_chain, TC_AES_BLOCK},
        {data, len},
        {swb, 2},
    };
    return tc_aes_cmac_iov(s->keys.s_rmac, s->keys.key_len, parts, 3, mac);
}

bool tc_scp03_sw_protected(uint16_t sw)
{
    /* Amendment D §6.2.5: "No R-MAC shall be generated and no protection
     * shall be applied to a response that includes an error status word";
     * all SWs other than 9000 and the warnings 62xx and 63xx are errors. */
    return sw == 0x9000u || (sw >> 8) == 0x62u || (sw >> 8) == 0x63u;
}

/* ------------------------------------------------------------------ encryption */

tc_err tc_scp03_icv(struct tc_scp03_session *s, bool response, uint8_t icv[TC_AES_BLOCK])
{
    if (!s->icv_valid || s->icv_counter != s->enc_counter) {
        uint8_t blocks[2 * TC_AES_BLOCK] = {0};
        /* Amendment D §6.2.6: the encryption counter as a 16-byte block,
         * left-padded with zeros, encrypted with S-ENC gives the ICV for
         * C-DEC. §6.2.7: for R-ENC the most significant byte of that block
         * is 80. */
        for (size_t b = 0; b < 2; b++) {
            uint8_t *blk = blocks + b * TC_AES_BLOCK;
            blk[12] = (uint8_t)(s->enc_counter >> 24);
            blk[13] = (uint8_t)(s->enc_counter >> 16);
            blk[14] = (uint8_t)(s->enc_counter >> 8);
            blk[15] = (uint8_t)s->enc_counter;
        }
        blocks[TC_AES_BLOCK] = 0x80u;
        s->icv_valid = false;
        TC_GUARD(tc_aes_ecb_encrypt(s->keys.s_enc, s->keys.key_len, blocks, sizeof blocks,
                                    s->icv_cache));
        s->icv_counter = s->enc_counter;
        s->icv_valid = true;
    }
    memcpy(icv, s->icv_cache + (response ? TC_AES_BLOCK : 0u), TC_AES_BLOCK);
    return TC_OK;
}

tc_err tc_scp03_encrypt(struct tc_scp03_session *s, bool response, uint8_t *buf, size_t len,
                        size_t cap, size_t *out_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t icv[TC_AES_BLOCK];
    size_t plen = 0;
    /* Amendment D §6.2.6: padding per GP CS §B.2.3 (ISO/IEC 9797-1 method 2)
     * is always added, even to data that already fills whole blocks. */
    TC_TRY(tc_pad_m2(buf, len, cap, &plen));
    TC_TRY(tc_scp03_icv(s, response, icv));
    TC_TRY(tc_aes_cbc_encrypt(s->keys.s_enc, s->keys.key_len, icv, buf, plen, buf));
    *out_len = plen;
    ret = TC_OK;
out:
    tc_memzero(icv, sizeof icv);
    return ret;
}

tc_err tc_scp03_decrypt(struct tc_scp03_session *s, bool response, const uint8_t *in, size_t len,
                        uint8_t *out, size_t *out_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t icv[TC_AES_BLOCK];
    TC_CHECK_MSG(len > 0 && len % TC_AES_BLOCK == 0, TC_ERR_FORMAT,
                 "encrypted data of %zu bytes is not a whole number of AES blocks", len);
    TC_TRY(tc_scp03_icv(s, response, icv));
    TC_TRY(tc_aes_cbc_decrypt(s->keys.s_enc, s->keys.key_len, icv, in, len, out));
    TC_TRY(tc_unpad_m2(out, len, out_len));
    ret = TC_OK;
out:
    tc_memzero(icv, sizeof icv);
    return ret;
}

/* ------------------------------------------------------------------ levels */

bool tc_scp03_level_valid(uint8_t level)
{
    /* Amendment D §7.1.2 table 7-4: EXTERNAL AUTHENTICATE P1. */
    switch (level) {
    case TC_SCP03_LEVEL_CLEAR:
    case TC_SCP03_LEVEL_MAC:
    case TC_SCP03_LEVEL_ENC:
    case TC_SCP03_LEVEL_RMAC:
    case TC_SCP03_LEVEL_ENC_RMAC:
    case TC_SCP03_LEVEL_RENC:
        return true;
    default:
        return false;
    }
}

tc_err tc_scp03_level_check(uint8_t level, uint8_t i_param)
{
    TC_ENSURE_MSG(tc_scp03_level_valid(level), TC_ERR_RANGE,
                  "security level %02X is not one of 00 01 03 11 13 33 (Amendment D §7.1.2)",
                  level);
    /* Amendment D §5.1 table 5-1: R-MAC and R-ENC only when i says the card
     * supports them. */
    TC_ENSURE_MSG((level & TC_SCP03_SL_RMAC) == 0 || (i_param & TC_SCP03_I_RMAC) != 0,
                  TC_ERR_UNSUPPORTED,
                  "security level %02X needs R-MAC, which i=%02X does not offer", level, i_param);
    TC_ENSURE_MSG((level & TC_SCP03_SL_RENC) == 0 || (i_param & TC_SCP03_I_RENC) != 0,
                  TC_ERR_UNSUPPORTED,
                  "security level %02X needs R-ENC, which i=%02X does not offer", level, i_param);
    return TC_OK;
}

const char *tc_scp03_level_name(uint8_t level)
{
    switch (level) {
    case 0x00:
        return "no secure messaging";
    case 0x01:
        return "C-MAC";
    case 0x03:
        return "C-DEC+C-MAC";
    case 0x11:
        return "C-MAC+R-MAC";
    case 0x13:
        return "C-DEC+C-MAC+R-MAC";
    case 0x31:
        return "C-MAC+R-MAC+R-ENC";
    case 0x33:
        return "C-DEC+C-MAC+R-MAC+R-ENC";
    default:
        return "invalid security level";
    }
}

tc_err tc_scp03_level_parse(const char *mode, uint8_t *level)
{
    static const struct {
        const char *name;
        uint8_t level;
    } modes[] = {
        {"clr", TC_SCP03_LEVEL_CLEAR},         {"mac", TC_SCP03_LEVEL_MAC},
        {"enc", TC_SCP03_LEVEL_ENC},           {"rmac", TC_SCP03_LEVEL_RMAC},
        {"enc-rmac", TC_SCP03_LEVEL_ENC_RMAC}, {"renc", TC_SCP03_LEVEL_RENC},
    };
    TC_ENSURE(mode != NULL && level != NULL, TC_ERR_ARG);
    for (size_t i = 0; i < TC_ARRAY_LEN(modes); i++) {
        if (strcmp(mode, modes[i].name) == 0) {
            *level = modes[i].level;
            return TC_OK;
        }
    }
    uint64_t v = 0;
    if (tc_parse_uint(mode, 0xFF, &v) == TC_OK && tc_scp03_level_valid((uint8_t)v)) {
        *level = (uint8_t)v;
        return TC_OK;
    }
    tc_error_clear();
    return TC_FAIL(TC_ERR_ARG,
                   "mode '%s' is not clr, mac, enc, rmac, enc-rmac, renc or one of "
                   "the levels 00 01 03 11 13 33",
                   mode);
}
