/*
 * The device agent's card side: the relay (command script in, card,
 * response script out; the agent sees only wrapped APDUs, SCP03 is between
 * server and card) and the identity read from the identity applet (EID,
 * certificate, the card-held key).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <trustchain/crypto.h>
#include <trustchain/ota.h>
#include <trustchain/ota_agent.h>
#include <trustchain/pki.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "card_int.h"

#define RAPDU_MAX (65536u + 2u)

static bool is_error(uint8_t sw1)
{
    /* ISO/IEC 7816-4 §5.6: 90 and 61 normal processing, 62/63 warnings. */
    return sw1 != 0x90 && sw1 != 0x61 && sw1 != 0x62 && sw1 != 0x63;
}

tc_err tc_ota_agent_run_script(struct tc_transport *t, const uint8_t *script, size_t script_len,
                               struct tc_buf *response)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_ota_bytes cmds[TC_OTA_SCRIPT_MAX], rsp[TC_OTA_SCRIPT_MAX];
    size_t n = 0, done = 0, off[TC_OTA_SCRIPT_MAX], wipe = 0;
    /* On the stack: a 64 KiB block malloc'd and freed per script made
     * glibc consolidate its fast bins on every free. */
    uint8_t r[RAPDU_MAX];
    struct tc_buf answers;
    tc_buf_init_heap(&answers, 0);
    TC_ENSURE(t != NULL && t->transmit != NULL && response != NULL, TC_ERR_ARG);
    TC_GUARD(tc_ota_script_decode(script, script_len, cmds, &n));
    /* Each R-APDU (short or extended) lands in the scratch buffer r and is
     * kept at its own length; both are wiped below (they may carry card
     * secrets under R-ENC). */
    tc_buf_init_heap(&answers, n * RAPDU_MAX);
    for (size_t i = 0; i < n; i++) {
        size_t rl = 0;
        TC_TRY(t->transmit(t->ctx, cmds[i].p, cmds[i].len, r, RAPDU_MAX, &rl));
        TC_CHECK_MSG(rl >= 2 && rl <= RAPDU_MAX, TC_ERR_FORMAT, "card answered %zu bytes", rl);
        wipe = rl > wipe ? rl : wipe;
        off[i] = answers.len;
        tc_buf_put(&answers, r, rl);
        TC_TRY(tc_buf_status(&answers));
        rsp[i].len = rl;
        done++;
        if (is_error(r[rl - 2]))
            break;
    }
    for (size_t i = 0; i < done; i++)
        rsp[i].p = answers.data + off[i];
    TC_TRY(tc_ota_response_encode(rsp, done, response));
    ret = TC_OK;
out:
    /* A transmit that failed may have written anywhere in r. */
    tc_memzero(r, ret == TC_OK ? wipe : sizeof r);
    tc_buf_free(&answers);
    return ret;
}

/* ------------------------------------------------------------------ identity */

tc_err tc_ota_card_cmd(struct tc_transport *t, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                       size_t *data_len, uint16_t *sw)
{
    size_t rl = 0;
    TC_GUARD(t->transmit(t->ctx, cmd, cmd_len, resp, TC_TRANSPORT_MAX_RESPONSE, &rl));
    TC_ENSURE_MSG(rl >= 2 && rl <= TC_TRANSPORT_MAX_RESPONSE, TC_ERR_FORMAT,
                  "card answered %zu bytes", rl);
    *sw = (uint16_t)((unsigned)resp[rl - 2] << 8 | resp[rl - 1]);
    *data_len = rl - 2;
    return TC_OK;
}

static tc_err select_aid(struct tc_transport *t, const uint8_t *aid, size_t aid_len, uint8_t *resp,
                         uint16_t *sw)
{
    /* ISO/IEC 7816-4 §11.1.1 SELECT by DF name, first occurrence, no
     * response data (P2 0C). */
    uint8_t cmd[5 + 16];
    size_t dl = 0;
    cmd[0] = 0x00;
    cmd[1] = 0xA4;
    cmd[2] = 0x04;
    cmd[3] = 0x0C;
    cmd[4] = (uint8_t)aid_len;
    memcpy(cmd + 5, aid, aid_len);
    return tc_ota_card_cmd(t, cmd, 5 + aid_len, resp, &dl, sw);
}

tc_err tc_ota_card_select_identity(struct tc_transport *t, uint8_t *resp, bool allow_locked,
                                   bool *locked)
{
    static const uint8_t aid[] = {TC_SE_IDENTITY_AID};
    static const uint8_t isd[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    uint16_t sw = 0;
    *locked = false;
    TC_GUARD(select_aid(t, aid, sizeof aid, resp, &sw));
    if (sw == 0x9000)
        return TC_OK;
    TC_ENSURE_MSG(sw == 0x6A82 && allow_locked, TC_ERR_CARD,
                  "identity applet not selectable (SW %04X): card locked, terminated or not "
                  "provisioned",
                  sw);
    /* GP CS 2.3 §5.1.1.4: in CARD_LOCKED only the ISD is selectable. */
    TC_GUARD(select_aid(t, isd, sizeof isd, resp, &sw));
    TC_ENSURE_MSG(sw == 0x6283, TC_ERR_CARD,
                  "identity applet not selectable and the card is not CARD_LOCKED (ISD SW %04X)",
                  sw);
    *locked = true;
    return TC_OK;
}

/* GET EID, GET PUBLIC KEY, GET CERTIFICATE from the selected applet. */
static tc_err read_identity(struct tc_transport *t, uint8_t *resp, struct tc_ota_card *card,
                            uint8_t point[65])
{
    size_t dl = 0;
    uint16_t sw = 0;
    /* GET EID: 5A 10 EID (docs/identity-applet.md). */
    const uint8_t get_eid[] = {TC_SE_ID_CLA, TC_SE_ID_INS_GET_EID, 0x00, 0x00, 0x00};
    TC_GUARD(tc_ota_card_cmd(t, get_eid, sizeof get_eid, resp, &dl, &sw));
    TC_ENSURE_MSG(sw == 0x9000, TC_ERR_CARD, "GET EID: SW %04X", sw);
    TC_ENSURE_MSG(dl == 2 + TC_SE_EID_LEN && resp[0] == 0x5A && resp[1] == TC_SE_EID_LEN,
                  TC_ERR_FORMAT, "GET EID: malformed answer");
    TC_GUARD(tc_pki_eid_from_bcd(resp + 2, card->eid));
    /* GET PUBLIC KEY: 86 41 04||X||Y. */
    const uint8_t get_pub[] = {TC_SE_ID_CLA, TC_SE_ID_INS_GET_PUBLIC, 0x00, 0x00, 0x00};
    TC_GUARD(tc_ota_card_cmd(t, get_pub, sizeof get_pub, resp, &dl, &sw));
    TC_ENSURE_MSG(sw == 0x9000, TC_ERR_CARD, "GET PUBLIC KEY: SW %04X (no key pair)", sw);
    TC_ENSURE_MSG(dl == 2 + 65 && resp[0] == TC_SE_ID_TAG_PUBLIC && resp[1] == 65 &&
                      resp[2] == 0x04,
                  TC_ERR_FORMAT, "GET PUBLIC KEY: malformed answer");
    memcpy(point, resp + 2, 65);
    /* GET CERTIFICATE: P1 P2 = offset, 9000 while full blocks come, 6282
     * at the end of data (ISO/IEC 7816-4 §5.6), 6B00 past the end. */
    for (;;) {
        TC_ENSURE_MSG(card->cert_len < TC_OTA_CARD_CERT_MAX, TC_ERR_FORMAT,
                      "certificate larger than %u bytes", TC_OTA_CARD_CERT_MAX);
        const uint8_t get_cert[] = {TC_SE_ID_CLA, TC_SE_ID_INS_GET_CERT,
                                    (uint8_t)(card->cert_len >> 8), (uint8_t)card->cert_len, 0x00};
        TC_GUARD(tc_ota_card_cmd(t, get_cert, sizeof get_cert, resp, &dl, &sw));
        if (sw == 0x6B00 && card->cert_len > 0 && dl == 0)
            break;
        TC_ENSURE_MSG(sw == 0x9000 || sw == 0x6282, TC_ERR_CARD, "GET CERTIFICATE: SW %04X%s", sw,
                      sw == 0x6A88 ? " (no certificate stored)" : "");
        TC_ENSURE_MSG(dl <= TC_OTA_CARD_CERT_MAX - card->cert_len && (dl > 0 || sw == 0x6282),
                      TC_ERR_FORMAT, "GET CERTIFICATE: %zu bytes at offset %zu", dl,
                      card->cert_len);
        memcpy(card->cert_der + card->cert_len, resp, dl);
        card->cert_len += dl;
        if (sw == 0x6282)
            return TC_OK;
    }
    return TC_OK;
}

/* The certificate as an X509 of the agent's library context, and its
 * public point. */
static tc_err parse_cert(struct tc_ota_card *card, uint8_t point[65])
{
    OSSL_LIB_CTX *l = NULL;
    uint8_t cpt[80];
    size_t cl = 0;
    TC_GUARD(tc_ota_provider_libctx(&l));
    card->cert = X509_new_ex(l, NULL);
    TC_ENSURE(card->cert != NULL, TC_ERR_NOMEM);
    const unsigned char *p = card->cert_der;
    TC_ENSURE_MSG(d2i_X509(&card->cert, &p, (long)card->cert_len) != NULL &&
                      p == card->cert_der + card->cert_len,
                  TC_ERR_FORMAT, "certificate does not parse");
    EVP_PKEY *cpk = X509_get0_pubkey(card->cert);
    TC_ENSURE_MSG(cpk != NULL &&
                      EVP_PKEY_get_octet_string_param(cpk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, cpt,
                                                      sizeof cpt, &cl) == 1 &&
                      cl == 65,
                  TC_ERR_FORMAT, "certificate key is not a P-256 point");
    memcpy(point, cpt, 65);
    return TC_OK;
}

/* A CARD_LOCKED card: the device's copy of its certificate, and a SIGN
 * the ISD answers that verifies under it. */
static tc_err locked_identity(struct tc_transport *t, const uint8_t *cached, size_t cached_len,
                              struct tc_ota_card *card, uint8_t point[65])
{
    struct tc_pki_device_info info;
    uint8_t dg[32], sig[TC_OTA_CARD_SIG_MAX];
    size_t sl = 0;
    TC_ENSURE_MSG(cached_len > 0 && cached_len <= TC_OTA_CARD_CERT_MAX, TC_ERR_FORMAT,
                  "cached certificate of %zu bytes", cached_len);
    memcpy(card->cert_der, cached, cached_len);
    card->cert_len = cached_len;
    TC_GUARD(tc_pki_check_device(card->cert_der, card->cert_len, &info));
    memcpy(card->eid, info.eid, sizeof card->eid);
    TC_GUARD(parse_cert(card, point));
    TC_GUARD(tc_random(dg, sizeof dg));
    TC_GUARD(tc_ota_card_sign(t, dg, sig, sizeof sig, &sl));
    EVP_PKEY_CTX *v = EVP_PKEY_CTX_new_from_pkey(NULL, X509_get0_pubkey(card->cert), NULL);
    int ok = v != NULL && EVP_PKEY_verify_init(v) == 1 &&
             EVP_PKEY_verify(v, sig, sl, dg, sizeof dg) == 1;
    EVP_PKEY_CTX_free(v);
    ERR_clear_error();
    TC_ENSURE_MSG(ok, TC_ERR_VERIFY, "the card does not hold the key of the cached certificate");
    card->locked = true;
    return TC_OK;
}

tc_err tc_ota_card_open(struct tc_transport *t, struct tc_ota_card *card)
{
    return tc_ota_card_open_ex(t, NULL, 0, card);
}

tc_err tc_ota_card_open_ex(struct tc_transport *t, const uint8_t *cached, size_t cached_len,
                           struct tc_ota_card *card)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t point[65];
    uint8_t *resp = NULL;
    TC_ENSURE(t != NULL && t->transmit != NULL && card != NULL, TC_ERR_ARG);
    memset(card, 0, sizeof *card);
    card->t = t;
    resp = malloc(TC_TRANSPORT_MAX_RESPONSE);
    TC_CHECK(resp != NULL, TC_ERR_NOMEM);
    bool locked = false;
    TC_TRY(tc_ota_card_select_identity(t, resp, cached != NULL, &locked));
    if (locked) {
        TC_TRY(locked_identity(t, cached, cached_len, card, point));
    } else {
        TC_TRY(read_identity(t, resp, card, point));
        /* The certificate must be a device certificate of this EID
         * (profile docs/cert-profile.md) for the card's key. */
        struct tc_pki_device_info info;
        uint8_t cpt[65];
        TC_TRY(tc_pki_check_device(card->cert_der, card->cert_len, &info));
        TC_CHECK_MSG(strcmp(info.eid, card->eid) == 0, TC_ERR_FORMAT,
                     "stored certificate names EID %s, the card is %s", info.eid, card->eid);
        TC_TRY(parse_cert(card, cpt));
        TC_CHECK_MSG(memcmp(cpt, point, sizeof point) == 0, TC_ERR_FORMAT,
                     "stored certificate is for another key than the card's");
    }
    TC_TRY(tc_ota_card_key_new(t, point, &card->key));
    ret = TC_OK;
out:
    if (resp != NULL) {
        tc_memzero(resp, TC_TRANSPORT_MAX_RESPONSE);
        free(resp);
    }
    if (ret != TC_OK)
        tc_ota_card_close(card);
    return ret;
}

void tc_ota_card_close(struct tc_ota_card *card)
{
    if (card == NULL)
        return;
    X509_free(card->cert);
    EVP_PKEY_free(card->key);
    card->cert = NULL;
    card->key = NULL;
    card->cert_len = 0;
}
