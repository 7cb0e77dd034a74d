/*
 * ota with the HSM: the device's SCP03 keyset is re-derived in SoftHSM2
 * from the master and the EID (tc_ota_device_keys) and drives a remote SCP03
 * session, relayed script by script, to an emulated card personalised with
 * the keys a software reference computes from the same master (the
 * docs/hsm.md derivation). Another EID's keys fail the card cryptogram.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <trustchain/crypto.h>
#include <trustchain/hsm.h>
#include <trustchain/ota.h>
#include <trustchain/se.h>

#include "harness.h"
#include "ota_fixture.h"

#define TOKEN "tc-ota-test"
#define EID1  "89049032123451234512345678901235"
#define EID2  "89049032123451234512345678901332"

static const uint8_t MASTER[16] = {0x1F, 0x2E, 0x3D, 0x4C, 0x5B, 0x6A, 0x79, 0x88,
                                   0x97, 0xA6, 0xB5, 0xC4, 0xD3, 0xE2, 0xF1, 0x00};
static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

/* The fixture's workspace with master "ota" imported. */
static struct tc_hsm *hsm(void)
{
    struct tc_hsm *h = ota_fx_hsm("tc-ota-hsm", TOKEN);
    if (h != NULL)
        ota_fx_master("ota", MASTER);
    return h;
}

/* The software reference of the derivation (docs/hsm.md) for the card. */
static bool reference_keys(const char *eid, struct tc_se_params *p)
{
    uint8_t k[3][16];
    if (!ota_fx_ref_keys(MASTER, eid, k) || tc_pki_eid_to_bcd(eid, p->eid) != TC_OK)
        return false;
    memcpy(p->key_enc, k[0], 16);
    memcpy(p->key_mac, k[1], 16);
    memcpy(p->key_dek, k[2], 16);
    tc_memzero(k, sizeof k);
    p->kvn = 0x30;
    p->key_len = 16;
    return true;
}

/* Runs SELECT/IU, EA and a wrapped GET DATA 9F70 through an in-process
 * relay to the card. */
static tc_err session(const struct tc_scp03_key_provider *kp, struct tc_se_card *card,
                      struct tc_ota_remote *r)
{
    static const struct tc_apdu cmds[] = {
        {.cla = 0x80, .ins = 0xCA, .p1 = 0x9F, .p2 = 0x70, .has_le = true, .le = 256}};
    static uint8_t out[TC_OTA_SCRIPT_MAX][TC_SE_MAX_RESPONSE];
    struct tc_scp03_host_config cfg = {
        .kvn = 0x30, .level = TC_SCP03_LEVEL_RENC, .aid = ISD, .aid_len = sizeof ISD};
    struct tc_buf script, resp;
    tc_buf_init_heap(&script, 1u << 16);
    tc_buf_init_heap(&resp, 1u << 16);
    bool done = false;
    tc_err rc = tc_ota_remote_init(r, kp, &cfg, cmds, 1);
    const uint8_t *in = NULL;
    size_t in_len = 0;
    for (int step = 0; rc == TC_OK && !done && step < 8; step++) {
        tc_buf_reset(&script);
        rc = tc_ota_remote_step(r, in, in_len, &script, &done);
        if (rc != TC_OK || done)
            break;
        struct tc_ota_bytes a[TC_OTA_SCRIPT_MAX], rr[TC_OTA_SCRIPT_MAX];
        size_t n = 0;
        rc = tc_ota_script_decode(script.data, script.len, a, &n);
        for (size_t i = 0; rc == TC_OK && i < n; i++) {
            size_t ol = 0;
            rc = tc_se_process(card, a[i].p, a[i].len, out[i], sizeof out[i], &ol);
            rr[i] = (struct tc_ota_bytes){out[i], ol};
        }
        tc_buf_reset(&resp);
        if (rc == TC_OK)
            rc = tc_ota_response_encode(rr, n, &resp);
        in = resp.data;
        in_len = resp.len;
    }
    tc_buf_free(&script);
    tc_buf_free(&resp);
    return rc;
}

static void run(const char *card_eid, const char *server_eid, tc_err want)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    tc_hsm_obj master = 0;
    EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, TC_HSM_LABEL_MASTER "ota", &master));
    struct tc_se_params p;
    struct tc_se_card *card = NULL;
    uint8_t atr[64];
    size_t al = 0;
    tc_se_params_default(&p);
    EXPECT(reference_keys(card_eid, &p));
    EXPECT_OK(tc_se_open_mem(&p, &card));
    tc_se_params_wipe(&p);
    EXPECT_OK(tc_se_power_on(card, atr, sizeof atr, &al));

    struct tc_hsm_scp03_provider m;
    struct tc_scp03_key_provider kp;
    struct tc_hsm_keyset ks;
    tc_hsm_scp03_provider_init(&m, h, &kp);
    EXPECT_OK(tc_ota_device_keys(h, master, server_eid, 0x30, 16, &m, &ks));
    EXPECT(ks.session); /* session objects: gone with the session */
    struct tc_ota_remote *r = calloc(1, sizeof *r);
    tc_err rc = session(&kp, card, r);
    if (rc != want) {
        (void)fprintf(stderr, "  got '%s'\n", tc_err_name(rc));
        EXPECT(false);
    }
    if (want == TC_OK) {
        EXPECT_EQ_U(r->sw[0], 0x9000);
        EXPECT(r->data_len[0] == 4 && r->data[0][0] == 0x9F && r->data[0][1] == 0x70);
    }
    tc_ota_remote_wipe(r);
    free(r);
    tc_hsm_keyset_destroy(h, &ks);
    tc_se_close(card);
}

static void test_hsm_session(void)
{
    run(EID1, EID1, TC_OK);
}

static void test_hsm_wrong_device(void)
{
    /* The server derives for another EID: the card cryptogram fails. */
    run(EID1, EID2, TC_ERR_VERIFY);
}

static void test_device_keys_rejects(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    struct tc_hsm_scp03_provider m;
    struct tc_scp03_key_provider kp;
    struct tc_hsm_keyset ks;
    tc_hsm_scp03_provider_init(&m, h, &kp);
    tc_hsm_obj master = 0;
    EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, TC_HSM_LABEL_MASTER "ota", &master));
    /* Bad check digits, not an EID. */
    EXPECT_ERR(tc_ota_device_keys(h, master, "89049032123451234512345678901234", 0x30, 16, &m, &ks),
               TC_ERR_VERIFY);
    EXPECT_ERR(tc_ota_device_keys(h, master, "8904", 0x30, 16, &m, &ks), TC_ERR_FORMAT);
    EXPECT_EQ_U(m.n, 0);
}

static void test_zz_teardown(void)
{
    ota_fx_hsm_cleanup();
}

static const struct tc_test_case cases[] = {
    {"hsm_session", test_hsm_session},
    {"hsm_wrong_device", test_hsm_wrong_device},
    {"device_keys_rejects", test_device_keys_rejects},
    {"zz_teardown", test_zz_teardown},
};

TC_TEST_MAIN("ota_hsm", cases)
