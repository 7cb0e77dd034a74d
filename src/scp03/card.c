/*
 * SCP03 card side (Amendment D §6-§7 from the card's point of view): the
 * INITIALIZE UPDATE / EXTERNAL AUTHENTICATE handshake, command unwrapping,
 * response wrapping, BEGIN / END R-MAC SESSION and PUT KEY decoding.
 *
 * Must never: allocate (everything lives in the caller's struct tc_scp03_card
 * and buffers), act on a command whose C-MAC did not verify, keep session
 * keys after a failure (any failure inside a session aborts it), or compare
 * a MAC, cryptogram or KCV other than with tc_ct_equal.
 */
#include <string.h>

#include "scp03/internal.h"

#define CLA_CHAIN 0x10u

static void set_sw(uint16_t *sw, uint16_t v)
{
    if (sw != NULL)
        *sw = v;
}

void tc_scp03_card_init(struct tc_scp03_card *c, const struct tc_scp03_card_config *cfg,
                        const struct tc_scp03_card_store *store)
{
    if (c == NULL)
        return;
    tc_memzero(c, sizeof *c);
    c->cfg = cfg;
    c->store = store;
    c->s.state = TC_SCP03_STATE_IDLE;
}

static void card_wipe(struct tc_scp03_card *c, enum tc_scp03_state next)
{
    tc_scp03_session_wipe(&c->s);
    tc_memzero(c->dek, sizeof c->dek);
    c->seq = 0;
    c->rmac_stop = false;
    c->s.state = next;
}

void tc_scp03_card_reset(struct tc_scp03_card *c)
{
    if (c != NULL)
        card_wipe(c, TC_SCP03_STATE_IDLE);
}

/* Amendment D §6.2.4 / §6.2.6: a verification failure ends the session;
 * "the Security Level shall be reset" and the command is answered 6982.
 * Later commands are refused until a new INITIALIZE UPDATE. */
static tc_err card_abort(struct tc_scp03_card *c, uint16_t *sw, uint16_t code, tc_err err,
                         const char *why)
{
    card_wipe(c, TC_SCP03_STATE_ABORTED);
    set_sw(sw, code);
    return TC_FAIL(err, "secure channel aborted: %s", why);
}

uint8_t tc_scp03_card_level(const struct tc_scp03_card *c)
{
    if (c == NULL || c->s.state != TC_SCP03_STATE_AUTHENTICATED)
        return 0;
    return c->s.level;
}

bool tc_scp03_card_authenticated(const struct tc_scp03_card *c)
{
    return c != NULL && c->s.state == TC_SCP03_STATE_AUTHENTICATED;
}

static void put_seq(uint8_t out[TC_SCP03_SEQ_LEN], uint32_t seq)
{
    out[0] = (uint8_t)(seq >> 16);
    out[1] = (uint8_t)(seq >> 8);
    out[2] = (uint8_t)seq;
}

/* ------------------------------------------------------------------ INITIALIZE UPDATE */

tc_err tc_scp03_card_initialize_update(struct tc_scp03_card *c, const uint8_t *apdu, size_t len,
                                       uint8_t *resp, size_t resp_size, size_t *resp_len,
                                       uint16_t *sw)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_scp03_keyset ks;
    struct tc_apdu a;
    struct tc_cla_info ci;
    uint8_t context[TC_SCP03_SEQ_LEN + TC_SCP03_AID_MAX];
    uint8_t kdf_ctx[2 * TC_SCP03_CHALLENGE_MAX];
    tc_memzero(&ks, sizeof ks);
    set_sw(sw, TC_SCP03_SW_INTERNAL);
    TC_ENSURE(c != NULL && c->cfg != NULL && c->store != NULL && resp != NULL && resp_len != NULL &&
                  sw != NULL,
              TC_ERR_ARG);
    const struct tc_scp03_card_config *cfg = c->cfg;
    *resp_len = 0;
    /* Amendment D §7.1.1: a new INITIALIZE UPDATE ends whatever session this
     * channel had. */
    card_wipe(c, TC_SCP03_STATE_IDLE);

    if (tc_apdu_decode(apdu, len, &a) != TC_OK) {
        *sw = TC_SCP03_SW_WRONG_LENGTH;
        return TC_FAIL(TC_ERR_FORMAT, "INITIALIZE UPDATE is not a well-formed APDU");
    }
    if (tc_cla_decode(a.cla, &ci) != TC_OK || !ci.proprietary || ci.secure || ci.chained) {
        *sw = TC_SCP03_SW_CLA_NOT_SUPPORTED;
        return TC_FAIL(TC_ERR_FORMAT,
                       "INITIALIZE UPDATE with CLA %02X (Amendment D §7.1.1: "
                       "GlobalPlatform class without secure messaging)",
                       a.cla);
    }
    if (a.ins != TC_SCP03_INS_INITIALIZE_UPDATE) {
        *sw = TC_SCP03_SW_INS_NOT_SUPPORTED;
        return TC_FAIL(TC_ERR_ARG, "INS %02X is not INITIALIZE UPDATE", a.ins);
    }
    if (a.p2 != 0x00u) {
        *sw = TC_SCP03_SW_WRONG_P1P2;
        return TC_FAIL(TC_ERR_FORMAT, "INITIALIZE UPDATE P2 %02X (Amendment D §7.1.1: 00)", a.p2);
    }
    const uint8_t i_param = cfg->i_param;
    const size_t s_len = (i_param & TC_SCP03_I_S16) != 0 ? TC_SCP03_S16 : TC_SCP03_S8;
    /* Amendment D §7.1.1: host challenge of 8 bytes (S8) or 16 (S16). */
    if (a.lc != s_len) {
        *sw = TC_SCP03_SW_WRONG_LENGTH;
        return TC_FAIL(TC_ERR_FORMAT, "host challenge of %zu bytes; this card is in S%zu mode",
                       a.lc, s_len);
    }
    if ((i_param & TC_SCP03_I_PSEUDO_RANDOM) != 0 &&
        (cfg->aid_len < TC_SCP03_AID_MIN || cfg->aid_len > TC_SCP03_AID_MAX)) {
        *sw = TC_SCP03_SW_INTERNAL;
        return TC_FAIL(TC_ERR_ARG, "pseudo-random challenge needs the SD AID (5..16 bytes)");
    }

    /* Amendment D §7.1.1: P1 is the key version number, 00 = the default. */
    ret = c->store->load_keyset(c->store->ctx, a.p1, &ks);
    if (ret == TC_ERR_NOT_FOUND) {
        *sw = TC_SCP03_SW_NOT_FOUND;
        goto out;
    }
    if (ret != TC_OK)
        goto out;
    TC_CHECK_MSG(tc_aes_key_len_ok(ks.key_len), TC_ERR_INTERNAL, "stored keyset %02X is not AES",
                 ks.kvn);
    if (cfg->max_auth_failures != 0) {
        uint32_t failures = 0;
        TC_TRY(c->store->auth_failures(c->store->ctx, ks.kvn, &failures));
        if (failures >= cfg->max_auth_failures) {
            *sw = TC_SCP03_SW_BLOCKED;
            ret = TC_FAIL(TC_ERR_AUTH, "keyset %02X blocked after %u failed authentications",
                          ks.kvn, (unsigned)failures);
            goto out;
        }
    }
    /* Amendment D §6.2.2.1: the sequence counter is incremented for each
     * INITIALIZE UPDATE; once it reached its maximum the card refuses. */
    uint32_t seq = 0;
    ret = c->store->next_sequence(c->store->ctx, ks.kvn, &seq);
    if (ret == TC_ERR_RANGE) {
        *sw = TC_SCP03_SW_CONDITIONS;
        ret = TC_FAIL(TC_ERR_STATE, "sequence counter of keyset %02X is exhausted", ks.kvn);
        goto out;
    }
    if (ret != TC_OK)
        goto out;
    TC_CHECK(seq <= TC_SCP03_SEQ_MAX, TC_ERR_INTERNAL);

    struct tc_scp03_session *s = &c->s;
    s->s_len = (uint8_t)s_len;
    s->i_param = i_param;
    s->kvn = ks.kvn;
    s->channel = ci.channel;
    memcpy(s->host_challenge, a.data, s_len);
    if ((i_param & TC_SCP03_I_PSEUDO_RANDOM) != 0) {
        /* Amendment D §6.2.2.1: card challenge = KDF(Key-ENC, 02, sequence
         * counter || SD AID), L = 64 (S8) or 128 (S16). */
        put_seq(context, seq);
        memcpy(context + TC_SCP03_SEQ_LEN, cfg->aid, cfg->aid_len);
        TC_TRY(tc_scp03_kdf(ks.enc, ks.key_len, TC_SCP03_DC_CARD_CHALLENGE, context,
                            TC_SCP03_SEQ_LEN + cfg->aid_len, s->card_challenge, s_len));
    } else if (cfg->random != NULL) {
        TC_TRY(cfg->random(cfg->random_ctx, s->card_challenge, s_len));
    } else {
        TC_TRY(tc_random(s->card_challenge, s_len));
    }
    memcpy(kdf_ctx, s->host_challenge, s_len);
    memcpy(kdf_ctx + s_len, s->card_challenge, s_len);
    TC_TRY(tc_scp03_derive_session_keys(&ks, kdf_ctx, 2 * s_len, &s->keys));
    TC_TRY(tc_scp03_cryptograms(s));

    /* Amendment D §7.1.1.6 table 7-3: key diversification data (10), key
     * information (KVN, SCP identifier 03, i), card challenge, card
     * cryptogram, and the sequence counter when the challenge is
     * pseudo-random. */
    struct tc_buf b;
    tc_buf_init_fixed(&b, resp, resp_size);
    tc_buf_put(&b, cfg->div_data, TC_SCP03_DIV_DATA_LEN);
    tc_buf_put_u8(&b, ks.kvn);
    tc_buf_put_u8(&b, TC_SCP03_ID);
    tc_buf_put_u8(&b, i_param);
    tc_buf_put(&b, s->card_challenge, s_len);
    tc_buf_put(&b, s->card_cryptogram, s_len);
    if ((i_param & TC_SCP03_I_PSEUDO_RANDOM) != 0) {
        uint8_t seqb[TC_SCP03_SEQ_LEN];
        put_seq(seqb, seq);
        tc_buf_put(&b, seqb, sizeof seqb);
    }
    TC_TRY(tc_buf_status(&b));
    memcpy(c->dek, ks.dek, ks.key_len);
    c->seq = seq;
    s->state = TC_SCP03_STATE_INITIALIZED;
    *resp_len = b.len;
    *sw = TC_SCP03_SW_OK;
    ret = TC_OK;
out:
    tc_scp03_keyset_wipe(&ks);
    tc_memzero(context, sizeof context);
    if (ret != TC_OK) {
        card_wipe(c, TC_SCP03_STATE_IDLE);
        *resp_len = 0;
    }
    return ret;
}

/* ------------------------------------------------------------------ EXTERNAL AUTHENTICATE */

tc_err tc_scp03_card_external_authenticate(struct tc_scp03_card *c, const uint8_t *apdu, size_t len,
                                           uint16_t *sw)
{
    struct tc_apdu a;
    struct tc_cla_info ci;
    uint8_t mac[TC_AES_BLOCK];
    uint8_t mac_cla = 0;
    set_sw(sw, TC_SCP03_SW_INTERNAL);
    TC_ENSURE(c != NULL && sw != NULL, TC_ERR_ARG);
    struct tc_scp03_session *s = &c->s;
    if (s->state != TC_SCP03_STATE_INITIALIZED) {
        /* Amendment D §7.1.2: only directly after INITIALIZE UPDATE. */
        if (s->state == TC_SCP03_STATE_AUTHENTICATED)
            return card_abort(c, sw, TC_SCP03_SW_CONDITIONS, TC_ERR_STATE,
                              "EXTERNAL AUTHENTICATE inside an open session");
        *sw = TC_SCP03_SW_CONDITIONS;
        return TC_FAIL(TC_ERR_STATE, "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE");
    }
    if (tc_apdu_decode(apdu, len, &a) != TC_OK)
        return card_abort(c, sw, TC_SCP03_SW_WRONG_LENGTH, TC_ERR_FORMAT,
                          "EXTERNAL AUTHENTICATE is not a well-formed APDU");
    if (tc_cla_decode(a.cla, &ci) != TC_OK || !ci.proprietary || ci.chained ||
        ci.channel != s->channel)
        return card_abort(c, sw, TC_SCP03_SW_CLA_NOT_SUPPORTED, TC_ERR_FORMAT,
                          "EXTERNAL AUTHENTICATE with a wrong class byte");
    if (a.ins != TC_SCP03_INS_EXTERNAL_AUTHENTICATE)
        return card_abort(c, sw, TC_SCP03_SW_INS_NOT_SUPPORTED, TC_ERR_ARG,
                          "not EXTERNAL AUTHENTICATE");
    if (!ci.secure)
        return card_abort(c, sw, TC_SCP03_SW_SECURITY, TC_ERR_VERIFY,
                          "EXTERNAL AUTHENTICATE without C-MAC (Amendment D §7.1.2)");
    /* Amendment D §7.1.2: P1 is the security level, P2 is 00; the card
     * refuses a level its i-parameter does not support. */
    if (a.p2 != 0x00u || tc_scp03_level_check(a.p1, s->i_param) != TC_OK)
        return card_abort(c, sw, TC_SCP03_SW_WRONG_P1P2, TC_ERR_UNSUPPORTED,
                          "EXTERNAL AUTHENTICATE asks for a level this card does not allow");
    /* Amendment D §7.1.2: host cryptogram and C-MAC, s_len bytes each. */
    if (a.lc != 2u * s->s_len)
        return card_abort(c, sw, TC_SCP03_SW_WRONG_LENGTH, TC_ERR_FORMAT,
                          "EXTERNAL AUTHENTICATE data is not host cryptogram + C-MAC");
    if (tc_scp03_cla_for_mac(a.cla, &mac_cla) != TC_OK ||
        tc_scp03_cmac(s, mac_cla, a.ins, a.p1, a.p2, a.extended, a.data, s->s_len, mac) != TC_OK)
        return card_abort(c, sw, TC_SCP03_SW_INTERNAL, TC_ERR_CRYPTO, "C-MAC computation failed");
    /* Both checks run whatever the first one says (no early exit). */
    bool mac_ok = tc_ct_equal(mac, a.data + s->s_len, s->s_len);
    bool crypt_ok = tc_ct_equal(a.data, s->host_cryptogram, s->s_len);
    if (!(mac_ok && crypt_ok)) {
        uint8_t kvn = s->kvn;
        tc_memzero(mac, sizeof mac);
        card_abort(c, sw, crypt_ok ? TC_SCP03_SW_SECURITY : TC_SCP03_SW_AUTH_FAILED, TC_ERR_AUTH,
                   "");
        /* Counted: at cfg->max_auth_failures the keyset is blocked (6983). */
        (void)c->store->auth_record(c->store->ctx, kvn, false);
        return TC_FAIL(TC_ERR_AUTH, crypt_ok ? "EXTERNAL AUTHENTICATE C-MAC did not verify"
                                             : "host cryptogram did not verify");
    }
    if (c->store->auth_record(c->store->ctx, s->kvn, true) != TC_OK) {
        tc_memzero(mac, sizeof mac);
        return card_abort(c, sw, TC_SCP03_SW_INTERNAL, TC_ERR_INTERNAL,
                          "could not record the authentication");
    }
    /* Amendment D §6.2.4: the EXTERNAL AUTHENTICATE C-MAC is the first
     * chaining value; §6.2.6: the encryption counter restarts (the first
     * command after this one uses 1). */
    memcpy(s->mac_chain, mac, TC_AES_BLOCK);
    tc_memzero(mac, sizeof mac);
    s->enc_counter = 0;
    s->level = a.p1;
    s->auth_level = a.p1;
    s->cmd_pending = false;
    s->state = TC_SCP03_STATE_AUTHENTICATED;
    *sw = TC_SCP03_SW_OK;
    return TC_OK;
}

/* ------------------------------------------------------------------ unwrap */

/* Lay out the plain command in `plain`: its data already sits at offset 7;
 * move it behind a short or extended header and append Le. */
static tc_err emit_plain(uint8_t *plain, size_t plain_size, const struct tc_apdu *a, uint8_t cla,
                         size_t dlen, bool ext, size_t *plain_len)
{
    size_t pos = 4;
    plain[0] = cla;
    plain[1] = a->ins;
    plain[2] = a->p1;
    plain[3] = a->p2;
    if (dlen > 0) {
        if (ext) {
            plain[4] = 0;
            plain[5] = (uint8_t)(dlen >> 8);
            plain[6] = (uint8_t)dlen;
            pos = 7 + dlen;
        } else {
            TC_ENSURE(dlen <= TC_APDU_MAX_SHORT_LC, TC_ERR_INTERNAL);
            plain[4] = (uint8_t)dlen;
            memmove(plain + 5, plain + 7, dlen);
            pos = 5 + dlen;
        }
    }
    if (a->has_le) {
        TC_ENSURE_MSG(pos + 3 <= plain_size, TC_ERR_SPACE, "plain command buffer too small");
        if (ext) {
            if (dlen == 0)
                plain[pos++] = 0;
            uint32_t le = a->le == 65536u ? 0u : a->le;
            plain[pos++] = (uint8_t)(le >> 8);
            plain[pos++] = (uint8_t)le;
        } else {
            plain[pos++] = (uint8_t)(a->le == 256u ? 0u : a->le);
        }
    }
    *plain_len = pos;
    return TC_OK;
}

tc_err tc_scp03_card_unwrap(struct tc_scp03_card *c, const uint8_t *apdu, size_t len,
                            uint8_t *plain, size_t plain_size, size_t *plain_len,
                            struct tc_scp03_card_cmd *cmd, uint16_t *sw)
{
    struct tc_apdu a;
    struct tc_cla_info ci;
    uint8_t mac[TC_AES_BLOCK];
    uint8_t mac_cla = 0;
    set_sw(sw, TC_SCP03_SW_INTERNAL);
    TC_ENSURE(c != NULL && plain != NULL && plain_len != NULL && cmd != NULL && sw != NULL &&
                  (apdu != NULL || len == 0),
              TC_ERR_ARG);
    struct tc_scp03_session *s = &c->s;
    *plain_len = 0;
    memset(cmd, 0, sizeof *cmd);
    s->cmd_pending = false;

    if (s->state == TC_SCP03_STATE_ABORTED) {
        *sw = TC_SCP03_SW_SECURITY;
        return TC_FAIL(TC_ERR_STATE, "secure channel was aborted; INITIALIZE UPDATE first");
    }
    /* Amendment D §7.1.2: anything but EXTERNAL AUTHENTICATE after
     * INITIALIZE UPDATE abandons the pending authentication. */
    if (s->state == TC_SCP03_STATE_INITIALIZED)
        card_wipe(c, TC_SCP03_STATE_IDLE);
    const bool protected_in =
        s->state == TC_SCP03_STATE_AUTHENTICATED && (s->level & TC_SCP03_SL_CMAC) != 0;

    if (tc_apdu_decode(apdu, len, &a) != TC_OK) {
        if (protected_in)
            return card_abort(c, sw, TC_SCP03_SW_WRONG_LENGTH, TC_ERR_FORMAT,
                              "malformed or truncated command");
        *sw = TC_SCP03_SW_WRONG_LENGTH;
        return TC_FAIL(TC_ERR_FORMAT, "malformed command APDU");
    }
    if (tc_cla_decode(a.cla, &ci) != TC_OK) {
        if (protected_in)
            return card_abort(c, sw, TC_SCP03_SW_CLA_NOT_SUPPORTED, TC_ERR_FORMAT, "invalid CLA");
        *sw = TC_SCP03_SW_CLA_NOT_SUPPORTED;
        return TC_FAIL(TC_ERR_FORMAT, "invalid CLA %02X", a.cla);
    }
    if (ci.chained) {
        /* Chained segments are reassembled before unwrapping. */
        *sw = TC_SCP03_SW_CHAINING;
        return TC_FAIL(TC_ERR_ARG, "a chained segment reached unwrap; reassemble first");
    }

    if (!protected_in) {
        /* No session, or level 00: the command passes as it is; secure
         * messaging without a session to verify it is refused. */
        if (ci.secure) {
            if (s->state == TC_SCP03_STATE_AUTHENTICATED)
                return card_abort(c, sw, TC_SCP03_SW_SECURITY, TC_ERR_STATE,
                                  "secure messaging at security level 00");
            *sw = TC_SCP03_SW_SECURITY;
            return TC_FAIL(TC_ERR_STATE, "secure messaging without a secure channel");
        }
        TC_ENSURE_MSG(plain_size >= len, TC_ERR_SPACE, "plain command buffer too small");
        memcpy(plain, apdu, len);
        *plain_len = len;
        TC_GUARD(tc_apdu_decode(plain, len, &cmd->apdu));
        *sw = TC_SCP03_SW_OK;
        return TC_OK;
    }

    /* Inside a session with C-MAC (Amendment D §6.2.4). */
    if (ci.channel != s->channel) {
        *sw = TC_SCP03_SW_CLA_NOT_SUPPORTED;
        return TC_FAIL(TC_ERR_ARG, "command for channel %u reached the session of channel %u",
                       ci.channel, s->channel);
    }
    if (!ci.secure)
        return card_abort(c, sw, TC_SCP03_SW_SECURITY, TC_ERR_VERIFY,
                          "command without C-MAC at a level that requires it");
    if (a.lc < s->s_len)
        return card_abort(c, sw, TC_SCP03_SW_SECURITY, TC_ERR_VERIFY, "C-MAC missing");
    const size_t dlen = a.lc - s->s_len;
    TC_ENSURE_MSG(plain_size >= 7u + dlen + 2u, TC_ERR_SPACE, "plain command buffer too small");
    if (tc_scp03_cla_for_mac(a.cla, &mac_cla) != TC_OK ||
        tc_scp03_cmac(s, mac_cla, a.ins, a.p1, a.p2, a.extended, a.data, dlen, mac) != TC_OK)
        return card_abort(c, sw, TC_SCP03_SW_INTERNAL, TC_ERR_CRYPTO, "C-MAC computation failed");
    if (!tc_ct_equal(mac, a.data + dlen, s->s_len)) {
        tc_memzero(mac, sizeof mac);
        return card_abort(c, sw, TC_SCP03_SW_SECURITY, TC_ERR_VERIFY, "C-MAC did not verify");
    }
    if (s->enc_counter == UINT32_MAX)
        return card_abort(c, sw, TC_SCP03_SW_SECURITY, TC_ERR_RANGE,
                          "encryption counter exhausted");
    /* Verified: the C-MAC becomes the chaining value, and the encryption
     * counter advances for every command, with or without data
     * (Amendment D §6.2.6). */
    memcpy(s->mac_chain, mac, TC_AES_BLOCK);
    tc_memzero(mac, sizeof mac);
    s->enc_counter++;

    size_t pdlen = dlen;
    if ((s->level & TC_SCP03_SL_CDEC) != 0 && dlen > 0) {
        /* Amendment D §6.2.6: decrypt with ICV = AES(S-ENC, counter), then
         * remove the mandatory padding. */
        if (tc_scp03_decrypt(s, false, a.data, dlen, plain + 7, &pdlen) != TC_OK || pdlen == 0) {
            tc_memzero(plain, plain_size);
            return card_abort(c, sw, TC_SCP03_SW_SECURITY, TC_ERR_VERIFY,
                              "command data did not decrypt to padded plaintext");
        }
    } else if (dlen > 0) {
        memcpy(plain + 7, a.data, dlen);
    }
    tc_err rc =
        emit_plain(plain, plain_size, &a, tc_scp03_cla_plain(a.cla), pdlen, a.extended, plain_len);
    if (rc == TC_OK)
        rc = tc_apdu_decode(plain, *plain_len, &cmd->apdu);
    if (rc != TC_OK) {
        tc_memzero(plain, plain_size);
        return card_abort(c, sw, TC_SCP03_SW_INTERNAL, rc, "could not rebuild the command");
    }
    cmd->was_secured = true;
    s->cmd_pending = true;
    *sw = TC_SCP03_SW_OK;
    return TC_OK;
}

/* ------------------------------------------------------------------ wrap */

tc_err tc_scp03_card_wrap(struct tc_scp03_card *c, const uint8_t *data, size_t len, uint16_t sw,
                          uint8_t *out, size_t out_size, size_t *out_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t mac[TC_AES_BLOCK];
    TC_ENSURE(c != NULL && out != NULL && out_len != NULL && (data != NULL || len == 0),
              TC_ERR_ARG);
    struct tc_scp03_session *s = &c->s;
    *out_len = 0;
    const bool pending = s->cmd_pending;
    s->cmd_pending = false;
    const bool rmac =
        s->state == TC_SCP03_STATE_AUTHENTICATED && pending && (s->level & TC_SCP03_SL_RMAC) != 0;
    size_t dlen = len;
    if (rmac && !tc_scp03_sw_protected(sw)) {
        /* Amendment D §6.2.5: an error status word goes out alone. */
        dlen = 0;
    } else if (rmac) {
        TC_CHECK_MSG(out_size >= len + TC_SCP03_RESP_OVERHEAD + 2u, TC_ERR_SPACE,
                     "response buffer too small for %zu bytes plus R-MAC", len);
        if (len > 0)
            memmove(out, data, len);
        if ((s->level & TC_SCP03_SL_RENC) != 0 && len > 0) {
            /* Amendment D §6.2.7: R-ENC only on a non-empty data field, ICV
             * from the command's counter with its first byte 80. */
            TC_TRY(tc_scp03_encrypt(s, true, out, len, out_size - 2u - s->s_len, &dlen));
        }
        TC_TRY(tc_scp03_rmac(s, out, dlen, sw, mac));
        memcpy(out + dlen, mac, s->s_len);
        dlen += s->s_len;
    } else {
        TC_CHECK_MSG(out_size >= len + 2u, TC_ERR_SPACE, "response buffer too small");
        if (len > 0)
            memmove(out, data, len);
    }
    out[dlen] = (uint8_t)(sw >> 8);
    out[dlen + 1] = (uint8_t)sw;
    *out_len = dlen + 2;
    ret = TC_OK;
out:
    tc_memzero(mac, sizeof mac);
    if (c->rmac_stop) {
        s->level = (uint8_t)(s->level & ~(TC_SCP03_SL_RMAC | TC_SCP03_SL_RENC));
        c->rmac_stop = false;
    }
    return ret;
}

/* ------------------------------------------------------------------ R-MAC session */

static tc_err need_secured(struct tc_scp03_card *c, const struct tc_scp03_card_cmd *cmd,
                           uint8_t ins, uint16_t *sw)
{
    TC_ENSURE(c != NULL && cmd != NULL && sw != NULL, TC_ERR_ARG);
    if (cmd->apdu.ins != ins) {
        *sw = TC_SCP03_SW_INS_NOT_SUPPORTED;
        return TC_FAIL(TC_ERR_ARG, "INS %02X is not %02X", cmd->apdu.ins, ins);
    }
    if (c->s.state != TC_SCP03_STATE_AUTHENTICATED || !cmd->was_secured) {
        *sw = TC_SCP03_SW_SECURITY;
        return TC_FAIL(TC_ERR_STATE, "INS %02X needs an authenticated secure channel", ins);
    }
    return TC_OK;
}

tc_err tc_scp03_card_begin_rmac(struct tc_scp03_card *c, const struct tc_scp03_card_cmd *cmd,
                                uint16_t *sw)
{
    set_sw(sw, TC_SCP03_SW_INTERNAL);
    TC_GUARD(need_secured(c, cmd, TC_SCP03_INS_BEGIN_RMAC_SESSION, sw));
    struct tc_scp03_session *s = &c->s;
    const struct tc_apdu *a = &cmd->apdu;
    /* GP CS 2.3 BEGIN R-MAC SESSION: P1 b6-b5 = 01 R-MAC, 11 R-MAC and
     * R-ENC; P2 = 01 (begin). */
    if ((a->p1 != TC_SCP03_SL_RMAC && a->p1 != (TC_SCP03_SL_RMAC | TC_SCP03_SL_RENC)) ||
        a->p2 != 0x01u || tc_scp03_level_check((uint8_t)(a->p1 | 0x03u), s->i_param) != TC_OK) {
        *sw = TC_SCP03_SW_WRONG_P1P2;
        return TC_FAIL(TC_ERR_UNSUPPORTED, "BEGIN R-MAC SESSION P1 %02X P2 %02X not allowed", a->p1,
                       a->p2);
    }
    if ((s->level & TC_SCP03_SL_RMAC) != 0 ||
        ((a->p1 & TC_SCP03_SL_RENC) != 0 && (s->level & TC_SCP03_SL_CDEC) == 0)) {
        *sw = TC_SCP03_SW_CONDITIONS;
        return TC_FAIL(TC_ERR_STATE, "BEGIN R-MAC SESSION at level %02X", s->level);
    }
    /* The data field is empty or one length-prefixed field (GP CS 2.3). */
    if (a->lc > 0) {
        struct tc_cursor cur;
        uint8_t l = 0;
        tc_cursor_init(&cur, a->data, a->lc);
        if (tc_cursor_u8(&cur, &l) != TC_OK || tc_cursor_skip(&cur, l) != TC_OK ||
            tc_cursor_expect_end(&cur) != TC_OK) {
            *sw = TC_SCP03_SW_WRONG_DATA;
            return TC_FAIL(TC_ERR_FORMAT, "BEGIN R-MAC SESSION data is malformed");
        }
    }
    s->level = (uint8_t)(s->level | a->p1);
    *sw = TC_SCP03_SW_OK;
    return TC_OK;
}

tc_err tc_scp03_card_end_rmac(struct tc_scp03_card *c, const struct tc_scp03_card_cmd *cmd,
                              uint16_t *sw)
{
    set_sw(sw, TC_SCP03_SW_INTERNAL);
    TC_GUARD(need_secured(c, cmd, TC_SCP03_INS_END_RMAC_SESSION, sw));
    const struct tc_apdu *a = &cmd->apdu;
    if (a->p1 != 0x00u || a->p2 != 0x03u) {
        *sw = TC_SCP03_SW_WRONG_P1P2;
        return TC_FAIL(TC_ERR_FORMAT, "END R-MAC SESSION P1 %02X P2 %02X (expected 00 03)", a->p1,
                       a->p2);
    }
    if (a->lc != 0) {
        *sw = TC_SCP03_SW_WRONG_DATA;
        return TC_FAIL(TC_ERR_FORMAT, "END R-MAC SESSION carries no data");
    }
    /* Only an R-MAC session begun by BEGIN R-MAC SESSION can end. */
    if ((c->s.level & TC_SCP03_SL_RMAC) == 0 || (c->s.auth_level & TC_SCP03_SL_RMAC) != 0) {
        *sw = TC_SCP03_SW_CONDITIONS;
        return TC_FAIL(TC_ERR_STATE, "no R-MAC session to end");
    }
    c->rmac_stop = true;
    *sw = TC_SCP03_SW_OK;
    return TC_OK;
}

/* ------------------------------------------------------------------ PUT KEY */

static tc_err put_key_block(struct tc_cursor *cur, size_t *key_len, const uint8_t **enc,
                            size_t *enc_len, const uint8_t **kcv)
{
    uint8_t type = 0, ll = 0, kcv_len = 0;
    struct tc_cursor blk;
    TC_GUARD(tc_cursor_u8(cur, &type));
    /* Amendment D table 7-10: key type 88 = AES. */
    TC_ENSURE_MSG(type == 0x88u, TC_ERR_FORMAT, "key type %02X is not AES (88)", type);
    TC_GUARD(tc_cursor_u8(cur, &ll));
    TC_GUARD(tc_cursor_sub(cur, ll, &blk));
    if (ll == 0x11u || ll == 0x21u) {
        /* With the key length byte: KL then the encrypted key, padded to
         * whole blocks (24-byte keys take 32). */
        uint8_t kl = 0;
        TC_GUARD(tc_cursor_u8(&blk, &kl));
        size_t padded = ((size_t)kl + 15u) / 16u * 16u;
        TC_ENSURE_MSG(tc_aes_key_len_ok(kl) && padded == (size_t)ll - 1u, TC_ERR_FORMAT,
                      "key length %u does not fit a key data block of %u bytes", kl, ll);
        *key_len = kl;
        *enc_len = padded;
    } else if (ll == 0x10u || ll == 0x20u) {
        /* Without the key length byte (GPShell, yubikit): the encrypted key
         * alone, 16 or 32 bytes. */
        *key_len = ll;
        *enc_len = ll;
    } else {
        return TC_FAIL(TC_ERR_FORMAT, "key data length %02X is not 10, 11, 20 or 21", ll);
    }
    TC_GUARD(tc_cursor_view(&blk, *enc_len, enc));
    TC_GUARD(tc_cursor_expect_end(&blk));
    TC_GUARD(tc_cursor_u8(cur, &kcv_len));
    TC_ENSURE_MSG(kcv_len == TC_KCV_LEN, TC_ERR_FORMAT, "KCV length %u is not 3", kcv_len);
    TC_GUARD(tc_cursor_view(cur, TC_KCV_LEN, kcv));
    return TC_OK;
}

tc_err tc_scp03_card_put_key(struct tc_scp03_card *c, const struct tc_scp03_card_cmd *cmd,
                             struct tc_scp03_put_key *out, uint16_t *sw)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_scp03_keyset probe;
    uint8_t block[TC_SCP03_KEY_MAX];
    uint8_t kcv[TC_KCV_LEN];
    static const uint8_t zero_iv[TC_AES_BLOCK] = {0};
    tc_memzero(&probe, sizeof probe);
    set_sw(sw, TC_SCP03_SW_INTERNAL);
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    tc_memzero(out, sizeof *out);
    TC_GUARD(need_secured(c, cmd, TC_SCP03_INS_PUT_KEY, sw));
    const struct tc_apdu *a = &cmd->apdu;
    /* GP CS 2.3 §11.8.2: P1 b8 = 0 (no further PUT KEY), b7-b1 the KVN to
     * replace or 00 for a new keyset; P2 b8 = 1 several keys, b7-b1 the
     * first key identifier (1). */
    if ((a->p1 & 0x80u) != 0 || a->p2 != 0x81u) {
        *sw = TC_SCP03_SW_WRONG_P1P2;
        return TC_FAIL(TC_ERR_UNSUPPORTED,
                       "PUT KEY P1 %02X P2 %02X: only a whole keyset in one "
                       "command (P1 b8 = 0, P2 = 81) is supported",
                       a->p1, a->p2);
    }
    out->old_kvn = a->p1;
    out->first_id = (uint8_t)(a->p2 & 0x7Fu);

    struct tc_cursor cur;
    uint8_t new_kvn = 0;
    const uint8_t *enc[TC_SCP03_KEYS_PER_SET] = {NULL, NULL, NULL};
    const uint8_t *rx_kcv[TC_SCP03_KEYS_PER_SET] = {NULL, NULL, NULL};
    size_t key_len[TC_SCP03_KEYS_PER_SET] = {0, 0, 0};
    size_t enc_len[TC_SCP03_KEYS_PER_SET] = {0, 0, 0};
    tc_cursor_init(&cur, a->data, a->lc);
    *sw = TC_SCP03_SW_WRONG_DATA;
    TC_TRY(tc_cursor_u8(&cur, &new_kvn));
    TC_CHECK_MSG(new_kvn >= 0x01u && new_kvn <= 0x7Fu, TC_ERR_FORMAT,
                 "new key version number %02X is outside 01..7F", new_kvn);
    for (size_t i = 0; i < TC_SCP03_KEYS_PER_SET; i++)
        TC_TRY(put_key_block(&cur, &key_len[i], &enc[i], &enc_len[i], &rx_kcv[i]));
    TC_TRY(tc_cursor_expect_end(&cur));
    TC_CHECK_MSG(key_len[0] == key_len[1] && key_len[1] == key_len[2], TC_ERR_FORMAT,
                 "the keys of one keyset must have one length");

    /* Amendment D §7.2: AES-CBC decryption with the static Key-DEK of the
     * keyset that opened this session, zero ICV; each KCV is recomputed
     * (AES(key, 16 x 01), first 3 bytes) and must match. */
    uint8_t *dst[TC_SCP03_KEYS_PER_SET] = {out->keys.enc, out->keys.mac, out->keys.dek};
    bool kcv_ok = true;
    for (size_t i = 0; i < TC_SCP03_KEYS_PER_SET; i++) {
        *sw = TC_SCP03_SW_INTERNAL;
        TC_TRY(tc_aes_cbc_decrypt(c->dek, c->s.keys.key_len, zero_iv, enc[i], enc_len[i], block));
        memcpy(dst[i], block, key_len[i]);
        TC_TRY(tc_kcv_aes(dst[i], key_len[i], kcv));
        kcv_ok &= tc_ct_equal(kcv, rx_kcv[i], TC_KCV_LEN);
        memcpy(out->kcv + i * TC_KCV_LEN, kcv, TC_KCV_LEN);
    }
    if (!kcv_ok) {
        *sw = TC_SCP03_SW_WRONG_DATA;
        ret = TC_FAIL(TC_ERR_VERIFY, "a key check value does not match its decrypted key");
        goto out;
    }
    out->keys.kvn = new_kvn;
    out->keys.key_len = (uint8_t)key_len[0];

    /* Replace an existing keyset (6A88 when there is none) or add a new one
     * (6A80 when the KVN is taken). */
    if (out->old_kvn != 0) {
        ret = c->store->load_keyset(c->store->ctx, out->old_kvn, &probe);
        if (ret == TC_ERR_NOT_FOUND)
            *sw = TC_SCP03_SW_NOT_FOUND;
        if (ret != TC_OK)
            goto out;
    } else {
        ret = c->store->load_keyset(c->store->ctx, new_kvn, &probe);
        if (ret == TC_OK) {
            *sw = TC_SCP03_SW_WRONG_DATA;
            ret = TC_FAIL(TC_ERR_FORMAT, "a keyset with KVN %02X already exists", new_kvn);
            goto out;
        }
        if (ret != TC_ERR_NOT_FOUND)
            goto out;
        tc_error_clear();
    }
    *sw = TC_SCP03_SW_OK;
    ret = TC_OK;
out:
    tc_scp03_keyset_wipe(&probe);
    tc_memzero(block, sizeof block);
    tc_memzero(kcv, sizeof kcv);
    if (ret != TC_OK)
        tc_memzero(out, sizeof *out);
    return ret;
}

tc_err tc_scp03_put_key_response(const struct tc_scp03_put_key *pk, uint8_t *out, size_t out_size,
                                 size_t *out_len)
{
    TC_ENSURE(pk != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    TC_ENSURE(out_size >= 1u + TC_SCP03_KCVS_LEN, TC_ERR_SPACE);
    /* GP CS 2.3 §11.8.3: key version number, then the KCVs. */
    out[0] = pk->keys.kvn;
    memcpy(out + 1, pk->kcv, TC_SCP03_KCVS_LEN);
    *out_len = 1u + TC_SCP03_KCVS_LEN;
    return TC_OK;
}
