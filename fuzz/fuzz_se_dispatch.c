/*
 * libFuzzer target: the secure element's APDU dispatcher, unauthenticated
 * and inside an SCP03 session.
 *
 * Input: one configuration byte, then records of [kind len_hi len_lo bytes].
 *   config b0:    open an SCP03 session first (deterministic: GP test keys,
 *                 fixed host challenge, pseudo-random card challenge)
 *   config b3-b1: its security level (00 01 03 11 13 33 by index, 6/7 = 33)
 *   config b4:    select the identity applet first (the session is then the
 *                 applet's, as GP delegates it to the ISD)
 *   config b5:    S16 card and session
 *   kind b0:      send the record through the host session (wrapped, so MACs
 *                 verify and the command handlers are reached); otherwise
 *                 the record goes to the card as raw bytes
 *   kind b1:      warm reset before the record
 * Each input starts from a fresh in-memory card (tc_se_open_mem).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <trustchain/scp03.h>
#include <trustchain/se.h>

static const uint8_t test_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                     0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t isd_aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t applet_select[] = {0x00, 0xA4, 0x04, 0x0C, 0x0A, TC_SE_IDENTITY_AID};
static const uint8_t host_challenge[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t levels[8] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33, 0x33, 0x33};
    static uint8_t resp[TC_SE_MAX_RESPONSE];
    static uint8_t plain[TC_SE_MAX_RESPONSE];
    if (size < 1)
        return 0;
    uint8_t cfg_byte = data[0];
    struct tc_se_params p;
    tc_se_params_default(&p);
    p.i_param = (uint8_t)(0x70u | ((cfg_byte >> 5) & 1u));
    struct tc_se_card *card = NULL;
    if (tc_se_open_mem(&p, &card) != TC_OK)
        return 0;
    struct tc_transport t;
    memset(&t, 0, sizeof t);
    if (tc_se_transport(card, &t) != TC_OK) {
        tc_se_close(card);
        return 0;
    }
    size_t n = 0;
    if (cfg_byte & 0x10u)
        (void)tc_se_process(card, applet_select, sizeof applet_select, resp, sizeof resp, &n);

    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_host h;
    bool session = false;
    tc_scp03_mem_provider_init(&mp, &kp);
    if (cfg_byte & 0x01u) {
        struct tc_scp03_keyset ks;
        if (tc_scp03_keyset_set(&ks, 0x30, test_key, test_key, test_key, 16) == TC_OK &&
            tc_scp03_mem_provider_add(&mp, &ks) == TC_OK) {
            struct tc_scp03_host_config cfg;
            memset(&cfg, 0, sizeof cfg);
            cfg.kvn = 0x30;
            cfg.level = levels[(cfg_byte >> 1) & 7u];
            cfg.s16 = (cfg_byte & 0x20u) != 0;
            cfg.aid = isd_aid;
            cfg.aid_len = sizeof isd_aid;
            cfg.host_challenge = host_challenge;
            session = tc_scp03_host_open(&h, &t, &kp, &cfg) == TC_OK;
        }
        tc_scp03_keyset_wipe(&ks);
    }

    size_t pos = 1;
    while (pos + 3 <= size) {
        uint8_t kind = data[pos];
        size_t len = (size_t)data[pos + 1] << 8 | data[pos + 2];
        pos += 3;
        if (len > size - pos)
            len = size - pos;
        const uint8_t *rec = data + pos;
        pos += len;
        if (kind & 0x02u) {
            uint8_t atr[TC_SE_ATR_MAX];
            if (tc_se_reset(card, atr, sizeof atr, &n) != TC_OK)
                break;
        }
        struct tc_apdu a;
        /* Extended-form commands go raw: the host's segmenting of them is
         * the scp03 module's own fuzz target's business. */
        if ((kind & 0x01u) && session && tc_apdu_decode(rec, len, &a) == TC_OK && !a.extended) {
            uint16_t sw = 0;
            if (tc_scp03_host_transmit(&h, &a, plain, sizeof plain, &n, &sw) != TC_OK &&
                !tc_se_powered(card))
                break;
        } else if (tc_se_process(card, rec, len, resp, sizeof resp, &n) != TC_OK) {
            break; /* memory cards never lose power; nothing else fails */
        }
        tc_error_clear();
    }
    if (session)
        tc_scp03_host_close(&h);
    tc_scp03_mem_provider_wipe(&mp);
    tc_transport_close(&t);
    tc_se_close(card);
    tc_error_clear();
    return 0;
}
