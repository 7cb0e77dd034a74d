/*
 * The PoP layout end to end: the emulated secure element's identity applet
 * generates its key inside an SCP03 session (C-MAC + C-DEC, as GENERATE KEY
 * requires) and signs EID || point || nonce; the batch CA issues on exactly
 * what the card returned, and refuses it under another nonce or EID.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <trustchain/codec.h>
#include <trustchain/pki.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>

#include "harness.h"

static const uint8_t gp_test_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                        0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t isd_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t applet_aid[] = {TC_SE_IDENTITY_AID};

static const uint8_t p256_prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                        0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                        0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

static void test_applet_pop_issues(void)
{
    struct tc_se_params p;
    struct tc_se_card *card = NULL;
    struct tc_transport t = {0};
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_host h;
    struct tc_signer root_key = {0}, batch_key = {0};
    struct tc_pki_issuer *root = NULL, *batch = NULL;
    struct tc_buf rder, bder, dder;
    tc_buf_init_heap(&rder, TC_PKI_CERT_MAX);
    tc_buf_init_heap(&bder, TC_PKI_CERT_MAX);
    tc_buf_init_heap(&dder, TC_PKI_CERT_MAX);
    memset(&h, 0, sizeof h);
    tc_scp03_mem_provider_init(&mp, &kp);

    tc_se_params_default(&p);
    char eid[33];
    EXPECT_OK(tc_pki_eid_from_bcd(p.eid, eid));
    EXPECT_STR(eid, "89049032123451234512345678901235");
    EXPECT_OK(tc_se_open_mem(&p, &card));
    EXPECT_OK(tc_se_transport(card, &t));
    if (card == NULL || t.transmit == NULL)
        goto out;

    /* SELECT the identity applet, then the secure channel (delegated to
     * the ISD; the card challenge is computed over the ISD AID). */
    uint8_t cmd[64], resp[TC_SE_MAX_RESPONSE];
    size_t rl = 0;
    cmd[0] = 0x00;
    cmd[1] = 0xA4;
    cmd[2] = 0x04;
    cmd[3] = 0x0C;
    cmd[4] = (uint8_t)sizeof applet_aid;
    memcpy(cmd + 5, applet_aid, sizeof applet_aid);
    EXPECT_OK(t.transmit(t.ctx, cmd, 5 + sizeof applet_aid, resp, sizeof resp, &rl));
    EXPECT(rl == 2 && resp[0] == 0x90 && resp[1] == 0x00);
    struct tc_scp03_keyset ks;
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x30, gp_test_key, gp_test_key, gp_test_key, 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&mp, &ks));
    tc_scp03_keyset_wipe(&ks);
    struct tc_scp03_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kvn = 0x30;
    cfg.level = 0x33;
    cfg.aid = isd_aid;
    cfg.aid_len = sizeof isd_aid;
    tc_err rc = tc_scp03_host_open(&h, &t, &kp, &cfg);
    EXPECT_OK(rc);
    if (rc != TC_OK)
        goto out;

    /* GENERATE KEY with a 16-byte host nonce. */
    uint8_t nonce[TC_PKI_NONCE_LEN];
    EXPECT_OK(tc_random(nonce, sizeof nonce));
    struct tc_apdu gen = {.cla = 0x80,
                          .ins = TC_SE_ID_INS_GENERATE,
                          .p1 = 0x00,
                          .p2 = 0x00,
                          .data = nonce,
                          .lc = sizeof nonce,
                          .le = 256,
                          .has_le = true};
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_host_transmit(&h, &gen, resp, sizeof resp, &rl, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    /* 86 41 04||X||Y  9E LL signature */
    if (!(rl > 69 && resp[0] == TC_SE_ID_TAG_PUBLIC && resp[1] == 0x41 &&
          resp[67] == TC_SE_ID_TAG_SIGNATURE && rl == 69u + resp[68])) {
        EXPECT(false);
        goto out;
    }
    uint8_t spki[sizeof p256_prefix + TC_PKI_P256_POINT];
    memcpy(spki, p256_prefix, sizeof p256_prefix);
    memcpy(spki + sizeof p256_prefix, resp + 2, TC_PKI_P256_POINT);
    const uint8_t *pop = resp + 69;
    size_t pop_len = resp[68];
    EXPECT_OK(tc_pki_pop_verify(eid, spki, sizeof spki, nonce, pop, pop_len));

    /* Root and batch CA, then the device certificate. */
    int64_t now = (int64_t)time(NULL);
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ECDSA_P384_SHA384, &root_key));
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &batch_key));
    struct tc_pki_root_params rp = {.common_name = "Root",
                                    .organization = "Acme Devices",
                                    .not_before = now - 3600,
                                    .not_after = now + 86400 * 365};
    EXPECT_OK(tc_pki_root_create(&root_key, &rp, &rder));
    EXPECT_OK(tc_pki_issuer_new(&root_key, rder.data, rder.len, &root));
    uint8_t bspki[TC_SPKI_MAX];
    size_t bsl = 0;
    EXPECT_OK(batch_key.public_key(batch_key.ctx, bspki, sizeof bspki, &bsl));
    struct tc_pki_batch_params bp = {.batch_id = "B1",
                                     .eid_prefix = "890490321234",
                                     .manufacturer = "Acme Devices",
                                     .not_before = now - 3600,
                                     .not_after = now + 86400 * 365};
    if (root == NULL)
        goto out;
    EXPECT_OK(tc_pki_batch_ca_create(root, bspki, bsl, &bp, &bder));
    EXPECT_OK(tc_pki_issuer_new(&batch_key, bder.data, bder.len, &batch));
    if (batch == NULL)
        goto out;
    struct tc_pki_device_req r = {.eid = eid,
                                  .spki = spki,
                                  .spki_len = sizeof spki,
                                  .nonce = nonce,
                                  .pop = pop,
                                  .pop_len = pop_len,
                                  .station_id = "line-1",
                                  .production_time = now};
    EXPECT_OK(tc_pki_device_issue(batch, &r, &dder, NULL));
    struct tc_pki_device_info di;
    EXPECT_OK(tc_pki_check_device(dder.data, dder.len, &di));
    EXPECT_STR(di.eid, eid);

    /* The same PoP under another nonce or for another EID is refused. */
    nonce[0] ^= 0x01;
    tc_buf_reset(&dder);
    EXPECT_ERR(tc_pki_device_issue(batch, &r, &dder, NULL), TC_ERR_VERIFY);
    nonce[0] ^= 0x01;
    char other[33];
    EXPECT_OK(tc_pki_eid_complete("890490321234000000000000000000", other));
    r.eid = other;
    EXPECT_ERR(tc_pki_device_issue(batch, &r, &dder, NULL), TC_ERR_VERIFY);
    EXPECT(dder.len == 0);
out:
    tc_pki_issuer_free(root);
    tc_pki_issuer_free(batch);
    tc_signer_soft_free(&root_key);
    tc_signer_soft_free(&batch_key);
    tc_buf_free(&rder);
    tc_buf_free(&bder);
    tc_buf_free(&dder);
    tc_scp03_host_wipe(&h);
    tc_scp03_mem_provider_wipe(&mp);
    tc_transport_close(&t);
    tc_se_close(card);
    tc_se_params_wipe(&p);
}

static const struct tc_test_case cases[] = {
    {"identity applet PoP issues a certificate", test_applet_pop_issues},
};

TC_TEST_MAIN("pki_se", cases)
