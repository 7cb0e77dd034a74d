/*
 * SCP03 host side without I/O (Amendment D §6-§7 from the off-card entity's
 * point of view): building INITIALIZE UPDATE, checking the card's answer
 * (i-parameter, pseudo-random challenge, card cryptogram), building EXTERNAL
 * AUTHENTICATE, wrapping commands and unwrapping responses.
 *
 * Must never: open a channel whose card cryptogram or pseudo-random
 * challenge did not verify, accept a protected response without its R-MAC,
 * or touch a static key (only the key provider does).
 */
#include <string.h>

#include "scp03/internal.h"

const char *tc_scp03_host_outcome_name(enum tc_scp03_host_outcome o)
{
    static const char *const n[] = {"ok",        "link",      "card-status",  "no-keyset",
                                    "card-auth", "host-auth", "kcv-mismatch", "response",
                                    "keys",      "other"};
    return (unsigned)o < TC_ARRAY_LEN(n) ? n[o] : "unknown";
}

enum tc_scp03_host_outcome tc_scp03_host_outcome(const struct tc_scp03_host *h)
{
    return h != NULL ? h->outcome : TC_SCP03_HOST_OTHER;
}

uint16_t tc_scp03_host_last_sw(const struct tc_scp03_host *h)
{
    return h != NULL ? h->last_sw : 0;
}

static bool provider_ok(const struct tc_scp03_key_provider *k)
{
    return k != NULL && k->key_len != NULL && k->session_keys != NULL &&
           k->card_challenge != NULL && k->wrap_key != NULL && k->kcv != NULL;
}

tc_err tc_scp03_host_init(struct tc_scp03_host *h, const struct tc_scp03_key_provider *keys,
                          const struct tc_scp03_host_config *cfg)
{
    TC_ENSURE(h != NULL && cfg != NULL, TC_ERR_ARG);
    memset(h, 0, sizeof *h);
    TC_ENSURE_MSG(provider_ok(keys), TC_ERR_ARG, "the key provider lacks an operation");
    TC_ENSURE_MSG(tc_scp03_level_valid(cfg->level), TC_ERR_ARG,
                  "security level %02X is not one of 00 01 03 11 13 33", cfg->level);
    TC_ENSURE_MSG(cfg->channel <= 19, TC_ERR_ARG, "logical channel %u is outside 0..19",
                  cfg->channel);
    TC_ENSURE_MSG(cfg->aid == NULL ||
                      (cfg->aid_len >= TC_SCP03_AID_MIN && cfg->aid_len <= TC_SCP03_AID_MAX),
                  TC_ERR_ARG, "SD AID must be 5 to 16 bytes (got %zu)", cfg->aid_len);
    TC_ENSURE_MSG(!cfg->select || cfg->aid != NULL, TC_ERR_ARG, "SELECT needs the SD AID");
    h->keys = keys;
    h->cfg = *cfg;
    h->s.state = TC_SCP03_STATE_IDLE;
    return TC_OK;
}

void tc_scp03_host_wipe(struct tc_scp03_host *h)
{
    if (h == NULL)
        return;
    tc_scp03_session_wipe(&h->s);
    h->seq = 0;
    h->have_seq = false;
    tc_memzero(h->div_data, sizeof h->div_data);
}

tc_err tc_scp03_host_initialize_update(struct tc_scp03_host *h, struct tc_buf *out)
{
    uint8_t cla = 0;
    TC_ENSURE(h != NULL && out != NULL && h->keys != NULL, TC_ERR_ARG);
    tc_scp03_host_wipe(h);
    struct tc_scp03_session *s = &h->s;
    s->s_len = h->cfg.s16 ? TC_SCP03_S16 : TC_SCP03_S8;
    s->channel = h->cfg.channel;
    /* Amendment D §7.1.1: host challenge, 8 bytes in S8 mode, 16 in S16. */
    if (h->cfg.host_challenge != NULL)
        memcpy(s->host_challenge, h->cfg.host_challenge, s->s_len);
    else
        TC_GUARD(tc_random(s->host_challenge, s->s_len));
    TC_GUARD(tc_cla_encode(true, s->channel, false, false, &cla));
    /* Amendment D §7.1.1: CLA 80-83 / C0-CF, INS 50, P1 = KVN (00: the
     * default keyset), P2 = 00, Le = 00. */
    const struct tc_apdu a = {
        .cla = cla,
        .ins = TC_SCP03_INS_INITIALIZE_UPDATE,
        .p1 = h->cfg.kvn,
        .p2 = 0x00,
        .data = s->host_challenge,
        .lc = s->s_len,
        .le = 256,
        .has_le = true,
    };
    TC_GUARD(tc_apdu_encode(&a, out));
    s->state = TC_SCP03_STATE_INITIALIZED;
    return TC_OK;
}

/* Build the EXTERNAL AUTHENTICATE command: host cryptogram and C-MAC with a
 * zero chaining value (Amendment D §7.1.2). */
static tc_err build_external_authenticate(struct tc_scp03_host *h, struct tc_buf *out)
{
    struct tc_scp03_session *s = &h->s;
    uint8_t cla = 0, mac_cla = 0;
    uint8_t mac[TC_AES_BLOCK];
    uint8_t data[2 * TC_SCP03_MAC_MAX];
    TC_GUARD(tc_cla_encode(true, s->channel, true, false, &cla));
    TC_GUARD(tc_scp03_cla_for_mac(cla, &mac_cla));
    memset(s->mac_chain, 0, sizeof s->mac_chain);
    TC_GUARD(tc_scp03_cmac(s, mac_cla, TC_SCP03_INS_EXTERNAL_AUTHENTICATE, h->cfg.level, 0x00,
                           false, s->host_cryptogram, s->s_len, mac));
    memcpy(data, s->host_cryptogram, s->s_len);
    memcpy(data + s->s_len, mac, s->s_len);
    const struct tc_apdu a = {
        .cla = cla,
        .ins = TC_SCP03_INS_EXTERNAL_AUTHENTICATE,
        .p1 = h->cfg.level,
        .p2 = 0x00,
        .data = data,
        .lc = 2u * s->s_len,
    };
    tc_err ret = tc_apdu_encode(&a, out);
    if (ret == TC_OK)
        memcpy(s->mac_chain, mac, TC_AES_BLOCK);
    tc_memzero(mac, sizeof mac);
    return ret;
}

tc_err tc_scp03_host_external_authenticate(struct tc_scp03_host *h, const uint8_t *resp,
                                           size_t resp_len, struct tc_buf *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_cursor c;
    uint8_t scp = 0, kvn = 0, i_param = 0;
    uint8_t seq[TC_SCP03_SEQ_LEN];
    uint8_t expect[TC_SCP03_CHALLENGE_MAX];
    uint8_t cryptogram[TC_SCP03_CHALLENGE_MAX];
    uint8_t ctx[2 * TC_SCP03_CHALLENGE_MAX];
    size_t key_len = 0;
    /* What a failure means, set before each check (docs/scp03.md). */
    enum tc_scp03_host_outcome oc = TC_SCP03_HOST_OTHER;
    TC_CHECK(h != NULL && out != NULL && (resp != NULL || resp_len == 0), TC_ERR_ARG);
    struct tc_scp03_session *s = &h->s;
    TC_CHECK_MSG(s->state == TC_SCP03_STATE_INITIALIZED, TC_ERR_STATE,
                 "no INITIALIZE UPDATE is outstanding");
    oc = TC_SCP03_HOST_RESPONSE;
    const size_t n = s->s_len;
    tc_cursor_init(&c, resp, resp_len);
    /* Amendment D §7.1.1.6 table 7-3. */
    TC_TRY(tc_cursor_copy(&c, h->div_data, TC_SCP03_DIV_DATA_LEN));
    TC_TRY(tc_cursor_u8(&c, &kvn));
    TC_TRY(tc_cursor_u8(&c, &scp));
    TC_CHECK_MSG(scp == TC_SCP03_ID, TC_ERR_UNSUPPORTED, "the card answered for SCP%02X, not SCP03",
                 scp);
    TC_TRY(tc_cursor_u8(&c, &i_param));
    TC_CHECK_MSG((i_param & ~TC_SCP03_I_KNOWN) == 0, TC_ERR_FORMAT,
                 "i-parameter %02X sets bits that Amendment D §5.1 reserves", i_param);
    TC_CHECK_MSG(((i_param & TC_SCP03_I_S16) != 0) == h->cfg.s16, TC_ERR_UNSUPPORTED,
                 "the card is in S%u mode (i=%02X) but S%u was asked for",
                 (i_param & TC_SCP03_I_S16) != 0 ? 16u : 8u, i_param, h->cfg.s16 ? 16u : 8u);
    TC_CHECK_MSG(h->cfg.kvn == 0 || kvn == h->cfg.kvn, TC_ERR_VERIFY,
                 "the card answered with keyset %02X, %02X was asked for", kvn, h->cfg.kvn);
    /* The host refuses a level the card does not support (Amendment D §5.1). */
    TC_TRY(tc_scp03_level_check(h->cfg.level, i_param));
    TC_TRY(tc_cursor_copy(&c, s->card_challenge, n));
    TC_TRY(tc_cursor_copy(&c, cryptogram, n));
    if ((i_param & TC_SCP03_I_PSEUDO_RANDOM) != 0) {
        uint32_t v = 0;
        TC_TRY(tc_cursor_u24be(&c, &v));
        h->seq = v;
        h->have_seq = true;
        seq[0] = (uint8_t)(v >> 16);
        seq[1] = (uint8_t)(v >> 8);
        seq[2] = (uint8_t)v;
    }
    if (tc_cursor_expect_end(&c) != TC_OK) {
        ret = TC_FAIL(TC_ERR_FORMAT, "INITIALIZE UPDATE response of %zu bytes; i=%02X means %zu",
                      resp_len, i_param,
                      TC_SCP03_DIV_DATA_LEN + 3u + 2u * n +
                          ((i_param & TC_SCP03_I_PSEUDO_RANDOM) != 0 ? 3u : 0u));
        goto out;
    }
    s->kvn = kvn;
    s->i_param = i_param;

    if ((i_param & TC_SCP03_I_PSEUDO_RANDOM) != 0) {
        /* Amendment D §6.2.2.1: the host checks a pseudo-random challenge;
         * a mismatch is an error. */
        oc = TC_SCP03_HOST_OTHER;
        TC_CHECK_MSG(h->cfg.aid != NULL, TC_ERR_ARG,
                     "the card uses a pseudo-random challenge; the SD AID is needed to check it");
        oc = TC_SCP03_HOST_KEYS;
        TC_TRY(
            h->keys->card_challenge(h->keys->ctx, kvn, seq, h->cfg.aid, h->cfg.aid_len, expect, n));
        oc = TC_SCP03_HOST_CARD_AUTH;
        TC_CHECK_MSG(tc_ct_equal(expect, s->card_challenge, n), TC_ERR_VERIFY,
                     "the card challenge is not the pseudo-random one for sequence counter %06X",
                     (unsigned)h->seq);
    }
    oc = TC_SCP03_HOST_KEYS;
    TC_TRY(h->keys->key_len(h->keys->ctx, kvn, &key_len));
    memcpy(ctx, s->host_challenge, n);
    memcpy(ctx + n, s->card_challenge, n);
    TC_TRY(h->keys->session_keys(h->keys->ctx, kvn, ctx, 2 * n, &s->keys));
    oc = TC_SCP03_HOST_OTHER;
    TC_CHECK(tc_aes_key_len_ok(s->keys.key_len) && s->keys.key_len == key_len, TC_ERR_INTERNAL);
    TC_TRY(tc_scp03_cryptograms(s));
    /* Amendment D §6.2.2.2: the card authenticates itself. */
    oc = TC_SCP03_HOST_CARD_AUTH;
    TC_CHECK_MSG(tc_ct_equal(cryptogram, s->card_cryptogram, n), TC_ERR_VERIFY,
                 "card cryptogram did not verify (wrong keys for keyset %02X?)", kvn);
    oc = TC_SCP03_HOST_OTHER;
    TC_TRY(build_external_authenticate(h, out));
    ret = TC_OK;
out:
    tc_memzero(expect, sizeof expect);
    tc_memzero(ctx, sizeof ctx);
    if (h != NULL)
        h->outcome = ret == TC_OK ? TC_SCP03_HOST_OK : oc;
    if (ret != TC_OK && h != NULL)
        tc_scp03_host_wipe(h);
    return ret;
}

tc_err tc_scp03_host_authenticated(struct tc_scp03_host *h, uint16_t sw)
{
    TC_ENSURE(h != NULL, TC_ERR_ARG);
    if (h->s.state != TC_SCP03_STATE_INITIALIZED || sw != TC_SCP03_SW_OK) {
        bool was_init = h->s.state == TC_SCP03_STATE_INITIALIZED;
        tc_scp03_host_wipe(h);
        if (!was_init) {
            h->outcome = TC_SCP03_HOST_OTHER;
            return TC_FAIL(TC_ERR_STATE, "no EXTERNAL AUTHENTICATE is outstanding");
        }
        h->last_sw = sw;
        /* Amendment D §7.1.2: 6300, the host cryptogram did not verify. */
        h->outcome = sw == 0x6300u ? TC_SCP03_HOST_HOST_AUTH : TC_SCP03_HOST_CARD_STATUS;
        char d[80];
        tc_sw_describe(sw, d, sizeof d);
        return TC_FAIL(TC_ERR_AUTH, "EXTERNAL AUTHENTICATE refused: %s", d);
    }
    h->last_sw = sw;
    h->outcome = TC_SCP03_HOST_OK;
    h->s.level = h->cfg.level;
    h->s.auth_level = h->cfg.level;
    h->s.enc_counter = 0;
    h->s.cmd_pending = false;
    h->s.state = TC_SCP03_STATE_AUTHENTICATED;
    return TC_OK;
}

/* ------------------------------------------------------------------ wrap */

tc_err tc_scp03_host_wrap(struct tc_scp03_host *h, const struct tc_apdu *cmd, struct tc_buf *out)
{
    struct tc_cla_info ci;
    uint8_t sm_cla = 0, mac_cla = 0;
    uint8_t mac[TC_AES_BLOCK];
    TC_ENSURE(h != NULL && cmd != NULL && out != NULL, TC_ERR_ARG);
    struct tc_scp03_session *s = &h->s;
    TC_ENSURE_MSG(s->state == TC_SCP03_STATE_AUTHENTICATED, TC_ERR_STATE, "no open secure channel");
    TC_GUARD(tc_cla_decode(cmd->cla, &ci));
    TC_ENSURE_MSG(!ci.secure && !ci.chained, TC_ERR_ARG,
                  "CLA %02X already indicates secure messaging or chaining", cmd->cla);
    TC_ENSURE_MSG(ci.channel == s->channel, TC_ERR_ARG,
                  "command for channel %u on the channel %u session", ci.channel, s->channel);
    TC_ENSURE_MSG(cmd->lc <= TC_SCP03_MAX_PLAIN_DATA, TC_ERR_RANGE,
                  "command data of %zu bytes cannot be wrapped (max %u)", cmd->lc,
                  TC_SCP03_MAX_PLAIN_DATA);
    TC_ENSURE(cmd->lc == 0 || cmd->data != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(s->enc_counter < UINT32_MAX, TC_ERR_RANGE, "encryption counter exhausted");
    /* Amendment D §6.2.6: the counter advances for every command. */
    s->enc_counter++;
    s->cmd_pending = true;
    if ((s->level & TC_SCP03_SL_CMAC) == 0)
        return tc_apdu_encode(cmd, out);

    const bool cdec = (s->level & TC_SCP03_SL_CDEC) != 0 && cmd->lc > 0;
    const size_t dlen = cdec ? (cmd->lc / TC_AES_BLOCK + 1u) * TC_AES_BLOCK : cmd->lc;
    const size_t lc2 = dlen + s->s_len;
    const bool ext = cmd->extended || tc_scp03_need_extended(lc2, cmd->has_le, cmd->le);
    TC_GUARD(tc_scp03_cla_secure(cmd->cla, &sm_cla));
    TC_GUARD(tc_scp03_cla_for_mac(cmd->cla, &mac_cla));

    tc_buf_put_u8(out, sm_cla);
    tc_buf_put_u8(out, cmd->ins);
    tc_buf_put_u8(out, cmd->p1);
    tc_buf_put_u8(out, cmd->p2);
    if (ext) {
        tc_buf_put_u8(out, 0);
        tc_buf_put_u16be(out, (uint16_t)lc2);
    } else {
        tc_buf_put_u8(out, (uint8_t)lc2);
    }
    uint8_t *d = NULL;
    if (dlen > 0)
        d = tc_buf_reserve(out, dlen);
    TC_GUARD(tc_buf_status(out));
    if (cmd->lc > 0)
        memcpy(d, cmd->data, cmd->lc);
    if (cdec) {
        size_t elen = 0;
        /* Amendment D §6.2.6: pad always, encrypt with ICV from the counter. */
        TC_GUARD(tc_scp03_encrypt(s, false, d, cmd->lc, dlen, &elen));
        TC_ENSURE(elen == dlen, TC_ERR_INTERNAL);
    }
    /* Amendment D §6.2.4: C-MAC over chaining value || CLA' || INS P1 P2 ||
     * Lc' || data'; the full MAC is the next chaining value, the first
     * s_len bytes go into the command. */
    TC_GUARD(tc_scp03_cmac(s, mac_cla, cmd->ins, cmd->p1, cmd->p2, ext, d, dlen, mac));
    memcpy(s->mac_chain, mac, TC_AES_BLOCK);
    tc_buf_put(out, mac, s->s_len);
    tc_memzero(mac, sizeof mac);
    if (cmd->has_le) {
        if (ext)
            tc_buf_put_u16be(out, (uint16_t)(cmd->le == 65536u ? 0u : cmd->le));
        else
            tc_buf_put_u8(out, (uint8_t)(cmd->le == 256u ? 0u : cmd->le));
    }
    return tc_buf_status(out);
}

/* ------------------------------------------------------------------ unwrap */

static tc_err host_unwrap(struct tc_scp03_host *h, const uint8_t *resp, size_t resp_len,
                          uint8_t *out, size_t out_size, size_t *out_len, uint16_t *sw)
{
    uint8_t mac[TC_AES_BLOCK];
    TC_ENSURE(h != NULL && out_len != NULL && sw != NULL && (resp != NULL || resp_len == 0),
              TC_ERR_ARG);
    TC_ENSURE(out != NULL || out_size == 0, TC_ERR_ARG);
    struct tc_scp03_session *s = &h->s;
    *out_len = 0;
    TC_ENSURE_MSG(resp_len >= 2, TC_ERR_TRUNCATED, "a response has at least SW1 SW2");
    const size_t blen = resp_len - 2;
    *sw = (uint16_t)((resp[blen] << 8) | resp[blen + 1]);
    TC_ENSURE_MSG(s->state == TC_SCP03_STATE_AUTHENTICATED, TC_ERR_STATE, "no open secure channel");
    TC_ENSURE_MSG(s->cmd_pending, TC_ERR_STATE, "no wrapped command awaits this response");
    s->cmd_pending = false;

    if ((s->level & TC_SCP03_SL_RMAC) == 0 || (!tc_scp03_sw_protected(*sw) && blen == 0)) {
        /* No R-MAC expected, or an error SW, which Amendment D §6.2.5 sends
         * bare. */
        TC_ENSURE_MSG(out_size >= blen, TC_ERR_SPACE, "response buffer too small");
        if (blen > 0)
            memcpy(out, resp, blen);
        *out_len = blen;
        return TC_OK;
    }
    TC_ENSURE_MSG(tc_scp03_sw_protected(*sw), TC_ERR_VERIFY,
                  "response with status %04X carries data that no R-MAC protects", *sw);
    /* Amendment D §6.2.5: a 9000 / 62xx / 63xx response carries its R-MAC. */
    TC_ENSURE_MSG(blen >= s->s_len, TC_ERR_VERIFY, "response with status %04X lacks its R-MAC",
                  *sw);
    const size_t dlen = blen - s->s_len;
    TC_GUARD(tc_scp03_rmac(s, resp, dlen, *sw, mac));
    bool ok = tc_ct_equal(mac, resp + dlen, s->s_len);
    tc_memzero(mac, sizeof mac);
    TC_ENSURE_MSG(ok, TC_ERR_VERIFY, "R-MAC did not verify");
    if ((s->level & TC_SCP03_SL_RENC) != 0 && dlen > 0) {
        /* Amendment D §6.2.7: decrypt with the response ICV, strip padding. */
        TC_ENSURE_MSG(out_size >= dlen, TC_ERR_SPACE, "response buffer too small");
        TC_GUARD(tc_scp03_decrypt(s, true, resp, dlen, out, out_len));
        return TC_OK;
    }
    TC_ENSURE_MSG(out_size >= dlen, TC_ERR_SPACE, "response buffer too small");
    if (dlen > 0)
        memcpy(out, resp, dlen);
    *out_len = dlen;
    return TC_OK;
}

tc_err tc_scp03_host_unwrap(struct tc_scp03_host *h, const uint8_t *resp, size_t resp_len,
                            uint8_t *out, size_t out_size, size_t *out_len, uint16_t *sw)
{
    tc_err rc = host_unwrap(h, resp, resp_len, out, out_size, out_len, sw);
    if (rc == TC_ERR_VERIFY || rc == TC_ERR_FORMAT) {
        /* A response that does not verify means the channel cannot be
         * trusted any more: the session ends here as it does on the card. */
        tc_scp03_host_wipe(h);
        if (out != NULL && out_size > 0)
            tc_memzero(out, out_size < resp_len ? out_size : resp_len);
        *out_len = 0;
    }
    return rc;
}
