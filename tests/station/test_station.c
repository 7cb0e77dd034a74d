/*
 * The station pipeline on emulated cards, SoftHSM2 and a real registry:
 * every gate, every fault the line meets (card removed at every APDU, a card
 * error answered at every APDU, wrong transport keys, an HSM that is not
 * there or refuses the PIN, a key missing in the HSM, a certificate that
 * reads back different, a personalised card, an EID outside the batch), and
 * the batch runner going on past each.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include <trustchain/scp03.h>

#include "fixture.h"
#include "harness.h"

static struct fx F;
static bool ready;

static struct fx *fx(void)
{
    if (!ready)
        ready = fx_setup(&F);
    return ready ? &F : NULL;
}

/* A link over an in-memory card that can be told to fail: after `remove_at`
 * APDUs the card is gone (TC_ERR_IO); APDU number `error_at` is answered
 * with 6F00 instead of reaching the card. */
struct faulty {
    struct tc_se_card *card;
    struct tc_transport inner;
    size_t n, remove_at, error_at;
    /* Gate tests: after PUT KEY, INITIALIZE UPDATE naming `fake_kvn` is
     * answered (with EXTERNAL AUTHENTICATE) by a card-side SCP03 session over
     * the transport keys, as a card that kept them would; or with `fake_sw`. */
    uint8_t fake_kvn;
    uint16_t fake_sw;
    bool fake_kcv;  /* answer the transport session and PUT KEY with a wrong KCV */
    uint16_t ea_sw; /* answer the first EXTERNAL AUTHENTICATE with this */
    bool put_key_seen, faking;
    struct tc_scp03_card_config ccfg;
    struct tc_scp03_card_store store;
    struct tc_scp03_card sc;
    struct tc_scp03_keyset ks;
    uint32_t seq;
};

static tc_err fake_load(void *ctx, uint8_t kvn, struct tc_scp03_keyset *out)
{
    struct faulty *f = ctx;
    (void)kvn;
    *out = f->ks;
    return TC_OK;
}
static tc_err fake_seq(void *ctx, uint8_t kvn, uint32_t *seq)
{
    struct faulty *f = ctx;
    (void)kvn;
    *seq = ++f->seq;
    return TC_OK;
}
static tc_err fake_failures(void *ctx, uint8_t kvn, uint32_t *count)
{
    (void)ctx;
    (void)kvn;
    *count = 0;
    return TC_OK;
}
static tc_err fake_record(void *ctx, uint8_t kvn, bool ok)
{
    (void)ctx;
    (void)kvn;
    (void)ok;
    return TC_OK;
}

/* A card whose PUT KEY answer (valid R-MAC) carries a KCV other than the
 * key it was sent: the answer a card gives when it stored something else. */
static tc_err fake_put_key(struct faulty *f, const uint8_t *cmd, size_t len, uint8_t *resp,
                           size_t size, size_t *rlen)
{
    uint8_t plain[512], out[16];
    size_t plen = 0, olen = 0;
    struct tc_scp03_card_cmd cc;
    struct tc_scp03_put_key pk;
    uint16_t sw = 0;
    TC_GUARD(tc_scp03_card_unwrap(&f->sc, cmd, len, plain, sizeof plain, &plen, &cc, &sw));
    TC_ENSURE(sw == 0x9000 || sw == 0, TC_ERR_INTERNAL);
    TC_GUARD(tc_scp03_card_put_key(&f->sc, &cc, &pk, &sw));
    TC_ENSURE(sw == 0x9000 || sw == 0, TC_ERR_INTERNAL);
    tc_err rc = tc_scp03_put_key_response(&pk, out, sizeof out, &olen);
    tc_memzero(&pk, sizeof pk);
    TC_GUARD(rc);
    out[1] ^= 0x01; /* first byte of the K-ENC check value */
    f->faking = false;
    return tc_scp03_card_wrap(&f->sc, out, olen, 0x9000, resp, size, rlen);
}

/* Answers the probe as a card still holding the transport keyset. */
static tc_err fake_answer(struct faulty *f, const uint8_t *cmd, size_t len, uint8_t *resp,
                          size_t size, size_t *rlen)
{
    uint16_t sw = 0;
    size_t n = 0;
    if (cmd[1] == 0x50) {
        if (f->fake_sw != 0) {
            sw = f->fake_sw;
        } else {
            tc_scp03_card_init(&f->sc, &f->ccfg, &f->store);
            TC_GUARD(tc_scp03_card_initialize_update(&f->sc, cmd, len, resp, size - 2, &n, &sw));
        }
    } else {
        TC_GUARD(tc_scp03_card_external_authenticate(&f->sc, cmd, len, &sw));
        f->faking = f->fake_kcv; /* the KCV case goes on to PUT KEY */
    }
    resp[n] = (uint8_t)(sw >> 8);
    resp[n + 1] = (uint8_t)sw;
    *rlen = n + 2;
    return TC_OK;
}

static tc_err faulty_transmit(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t size,
                              size_t *rlen)
{
    struct faulty *f = ctx;
    f->n++;
    if (f->remove_at != 0 && f->n >= f->remove_at)
        return TC_FAIL(TC_ERR_IO, "card removed");
    if (len >= 4 && cmd[1] == 0xD8)
        f->put_key_seen = true;
    if (f->ea_sw != 0 && len >= 4 && cmd[1] == 0x82) {
        resp[0] = (uint8_t)(f->ea_sw >> 8);
        resp[1] = (uint8_t)f->ea_sw;
        *rlen = 2;
        f->ea_sw = 0;
        return TC_OK;
    }
    if (f->fake_kvn != 0 && f->put_key_seen && len >= 4 && cmd[1] == 0x50 &&
        cmd[2] == f->fake_kvn) {
        f->faking = f->fake_sw == 0;
        f->fake_kvn = f->fake_sw == 0 ? f->fake_kvn : 0;
        return fake_answer(f, cmd, len, resp, size, rlen);
    }
    if (f->faking && len >= 4 && cmd[1] == 0x82)
        return fake_answer(f, cmd, len, resp, size, rlen);
    if (f->fake_kcv && len >= 4 && cmd[1] == 0x50 && cmd[2] == TC_STATION_TRANSPORT_KVN) {
        f->faking = true;
        return fake_answer(f, cmd, len, resp, size, rlen);
    }
    if (f->fake_kcv && f->faking && len >= 4 && cmd[1] == 0xD8)
        return fake_put_key(f, cmd, len, resp, size, rlen);
    if (f->error_at != 0 && f->n == f->error_at) {
        resp[0] = 0x6F;
        resp[1] = 0x00;
        *rlen = 2;
        return TC_OK;
    }
    return f->inner.transmit(f->inner.ctx, cmd, len, resp, size, rlen);
}

static void faulty_close(void *ctx)
{
    (void)ctx;
}

static bool faulty_open(struct faulty *fl, size_t index, bool wrong_keys, struct tc_transport *t)
{
    struct tc_se_params p;
    memset(fl, 0, sizeof *fl);
    if (!fx_card_params(&F, index, wrong_keys, &p) || tc_se_open_mem(&p, &fl->card) != TC_OK ||
        tc_se_transport(fl->card, &fl->inner) != TC_OK) {
        tc_se_params_wipe(&p);
        tc_test_fail_at(__FILE__, __LINE__, "card %zu", index);
        return false;
    }
    tc_se_params_wipe(&p);
    *t = (struct tc_transport){
        .ctx = fl, .name = "faulty", .transmit = faulty_transmit, .close = faulty_close};
    return true;
}

static void faulty_free(struct faulty *fl)
{
    tc_transport_close(&fl->inner);
    tc_se_close(fl->card);
    fl->card = NULL;
}

static size_t next_card = 100; /* each test uses fresh EIDs */

/* Provision one in-memory card; returns the APDUs it took. */
static size_t provision_mem(size_t index, bool wrong_keys, size_t remove_at, size_t error_at,
                            struct tc_station_result *res, struct tc_se_info *info)
{
    struct faulty fl;
    struct tc_transport t;
    if (!faulty_open(&fl, index, wrong_keys, &t))
        return 0;
    fl.remove_at = remove_at;
    fl.error_at = error_at;
    EXPECT_OK(tc_station_provision(F.st, &t, res));
    if (info != NULL)
        EXPECT_OK(tc_se_card_describe(fl.card, info));
    size_t n = fl.n;
    faulty_free(&fl);
    return n;
}

static void expect_clean_reject(const struct tc_station_result *r, unsigned step, unsigned reason)
{
    EXPECT_EQ_U(r->outcome, TC_STATION_REJECTED);
    EXPECT_EQ_U(r->step, step);
    EXPECT_EQ_U(r->reason, reason);
    if (r->eid[0] != '\0') {
        EXPECT_EQ_U(fx_count(&F, r->eid, TC_AUDIT_DEVICE_REJECTED), 1);
        EXPECT_EQ_U(fx_unrevoked(&F, r->eid), 0);
        uint8_t bcd[16];
        struct tc_registry_device d;
        EXPECT_OK(tc_pki_eid_to_bcd(r->eid, bcd));
        EXPECT_OK(tc_registry_device_get(F.reg, bcd, 16, &d));
        EXPECT_EQ_U(d.state, TC_REG_REJECTED);
        EXPECT_EQ_U(d.reason, reason);
        EXPECT_EQ_U(d.step, step);
    }
}

/* ------------------------------------------------------------------ cases */

static void test_names(void)
{
    EXPECT_STR(tc_station_step_name(TC_STATION_STEP_CONFIRM), "confirm");
    EXPECT_STR(tc_station_step_name(99), "unknown");
    EXPECT_STR(tc_station_reason_name(TC_STATION_R_CERT_MISMATCH), "cert-mismatch");
    EXPECT_STR(tc_station_reason_name(TC_STATION_R_MAX_ + 1), "unknown");
    EXPECT_STR(tc_station_point_name(TC_STATION_PT_DONE), "done");
    char eid[33];
    EXPECT_OK(tc_station_emulated_eid("89049032", 7, eid));
    EXPECT_OK(tc_pki_eid_check(eid));
    EXPECT(strncmp(eid, "890490320000000000000000000007", 30) == 0);
    EXPECT_ERR(tc_station_emulated_eid("8904903212345678901234567890", 1000, eid), TC_ERR_RANGE);
    EXPECT_ERR(tc_station_emulated_eid("89x", 1, eid), TC_ERR_FORMAT);
}

static void test_provision(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct tc_station_result r;
    struct tc_se_info info;
    size_t index = next_card++;
    provision_mem(index, false, 0, 0, &r, &info);
    EXPECT_EQ_U(r.outcome, TC_STATION_PROVISIONED);
    EXPECT_EQ_U(r.events, 8);
    EXPECT(!r.resumed && r.cert_issued && !r.cert_revoked);
    /* The card: SECURED, only the device keyset, with the HSM's KCVs. */
    EXPECT_EQ_U(info.life_cycle, TC_SE_LC_SECURED);
    EXPECT_EQ_U(info.nkeysets, 1);
    EXPECT_EQ_U(info.keysets[0].kvn, TC_STATION_DEVICE_KVN);
    EXPECT(info.has_key && info.has_cert);
    EXPECT(memcmp(info.cert_sha256, r.cert_sha256, 32) == 0);
    /* The registry: provisioned, current certificate = the card's. */
    uint8_t bcd[16];
    struct tc_registry_device d;
    EXPECT_OK(tc_pki_eid_to_bcd(r.eid, bcd));
    EXPECT_OK(tc_registry_device_get(F.reg, bcd, 16, &d));
    EXPECT_EQ_U(d.state, TC_REG_PROVISIONED);
    EXPECT(d.cert_stored && memcmp(d.cert_sha256, info.cert_sha256, 32) == 0);
    EXPECT_EQ_U(d.kvn, TC_STATION_DEVICE_KVN);
    EXPECT(memcmp(d.kcv[0], info.keysets[0].kcv[0], 3) == 0);
    EXPECT(memcmp(d.kcv[2], info.keysets[0].kcv[2], 3) == 0);
    EXPECT_EQ_U(d.lifecycle, TC_SE_LC_SECURED);
    /* The KCVs are those of keys derived from the master by the HSM. */
    tc_hsm_obj master;
    struct tc_hsm_keyset ks;
    uint8_t kcv[3];
    EXPECT_OK(tc_hsm_find(F.hsm, TC_HSM_KIND_SECRET, TC_HSM_LABEL_MASTER FX_MASTER, &master));
    EXPECT_OK(tc_hsm_diversify(F.hsm, master, bcd, 16, &ks));
    EXPECT_OK(tc_hsm_kcv(F.hsm, ks.mac, kcv));
    EXPECT(memcmp(kcv, info.keysets[0].kcv[1], 3) == 0);
    tc_hsm_keyset_destroy(F.hsm, &ks);
    /* The certificate in the registry's side table is a device certificate
     * of this batch for this EID. */
    uint8_t der[TC_PKI_CERT_MAX];
    size_t dl = 0;
    EXPECT_OK(tc_registry_cert_get(F.reg, d.cert_sha256, der, sizeof der, &dl));
    struct tc_pki_device_info di;
    EXPECT_OK(tc_pki_check_device(der, dl, &di));
    EXPECT_STR(di.eid, r.eid);
    EXPECT_STR(di.batch_id, FX_BATCH);
    EXPECT_STR(di.station_id, "ST-01");
    EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_LIFECYCLE_CHANGED), 1);
    fx_station_close(&F);
}

/* A card that went through the line (or any personalised card) is refused
 * at step 1 by a station that has no record of it; nothing is issued. */
static void test_personalised_card_refused(void)
{
    if (fx() == NULL)
        return;
    struct tc_se_params p;
    struct tc_se_card *card = NULL;
    size_t index = next_card++;
    EXPECT(fx_card_params(&F, index, false, &p));
    EXPECT_OK(tc_se_open_mem(&p, &card));
    tc_se_params_wipe(&p);
    if (card == NULL || !fx_station(&F, NULL))
        return;
    struct tc_transport t;
    struct tc_station_result r;
    EXPECT_OK(tc_se_transport(card, &t));
    EXPECT_OK(tc_station_provision(F.st, &t, &r));
    EXPECT_EQ_U(r.outcome, TC_STATION_PROVISIONED);
    /* Same station, same card again: nothing happens. */
    uint64_t size = tc_audit_log_size(tc_registry_log(F.reg));
    EXPECT_OK(tc_station_provision(F.st, &t, &r));
    EXPECT_EQ_U(r.outcome, TC_STATION_ALREADY_DONE);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(F.reg)), size);
    /* Revoked in the field afterwards: still nothing for the line to do. */
    struct tc_audit_event ev = {.type = TC_AUDIT_CERT_REVOKED,
                                .time_ms = 1764201600000ull,
                                .fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH |
                                          TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_CERT_SERIAL |
                                          TC_AUDIT_HAS_REASON,
                                .eid_len = 16,
                                .reason = 1};
    EXPECT_OK(tc_pki_eid_to_bcd(r.eid, ev.eid));
    (void)snprintf(ev.batch, sizeof ev.batch, "%s", FX_BATCH);
    (void)snprintf(ev.actor, sizeof ev.actor, "op:test");
    uint8_t bcd[16];
    struct tc_registry_device dev;
    EXPECT_OK(tc_pki_eid_to_bcd(r.eid, bcd));
    EXPECT_OK(tc_registry_device_get(F.reg, bcd, 16, &dev));
    memcpy(ev.cert_serial, dev.cert_serial, dev.cert_serial_len);
    ev.cert_serial_len = dev.cert_serial_len;
    uint64_t idx = 0;
    EXPECT_OK(tc_registry_append(F.reg, &ev, &idx));
    EXPECT_OK(tc_registry_device_get(F.reg, bcd, 16, &dev));
    EXPECT_EQ_U(dev.state, TC_REG_REVOKED);
    size = tc_audit_log_size(tc_registry_log(F.reg));
    EXPECT_OK(tc_station_provision(F.st, &t, &r));
    EXPECT_EQ_U(r.outcome, TC_STATION_ALREADY_DONE);
    EXPECT(strstr(r.detail, "revoked") != NULL);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(F.reg)), size);
    fx_station_close(&F);
    /* Another line (another registry) never re-personalises it. */
    char saved[260];
    memcpy(saved, F.reg_path, sizeof saved);
    (void)snprintf(F.reg_path, sizeof F.reg_path, "%s/other.db", F.dir);
    if (fx_station(&F, NULL)) {
        EXPECT_OK(tc_station_provision(F.st, &t, &r));
        expect_clean_reject(&r, TC_STATION_STEP_CARD, TC_STATION_R_CARD_STATE);
        EXPECT(strstr(r.detail, "SECURED") != NULL);
        EXPECT(!r.cert_issued);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_CERT_ISSUED), 0);
    }
    fx_station_close(&F);
    memcpy(F.reg_path, saved, sizeof saved);
    tc_transport_close(&t);
    tc_se_close(card);
}

static void test_wrong_transport_keys(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct tc_station_result r;
    struct tc_se_info info;
    provision_mem(next_card++, true, 0, 0, &r, &info);
    expect_clean_reject(&r, TC_STATION_STEP_TRANSPORT, TC_STATION_R_TRANSPORT_KEYS);
    EXPECT(!r.cert_issued);
    /* The card is untouched: its vendor keyset, OP_READY. */
    EXPECT_EQ_U(info.life_cycle, TC_SE_LC_OP_READY);
    EXPECT_EQ_U(info.keysets[0].kvn, TC_STATION_TRANSPORT_KVN);
    fx_station_close(&F);
}

static void test_eid_outside_batch(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct tc_se_params p;
    struct tc_se_card *card = NULL;
    EXPECT(fx_card_params(&F, 5, false, &p));
    char eid[33];
    EXPECT_OK(tc_station_emulated_eid("89049099", 5, eid));
    EXPECT_OK(tc_pki_eid_to_bcd(eid, p.eid));
    EXPECT_OK(tc_se_open_mem(&p, &card));
    tc_se_params_wipe(&p);
    struct tc_transport t;
    struct tc_station_result r;
    EXPECT_OK(tc_se_transport(card, &t));
    EXPECT_OK(tc_station_provision(F.st, &t, &r));
    expect_clean_reject(&r, TC_STATION_STEP_CARD, TC_STATION_R_EID);
    tc_transport_close(&t);
    tc_se_close(card);
    fx_station_close(&F);
}

/* The card disappears before APDU k, for every k of a full run: the device
 * is rejected (or, before its EID was read, nothing can be recorded), a
 * certificate issued in the run is revoked, nothing is provisioned. */
static void test_card_removed_everywhere(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct tc_station_result r;
    size_t total = provision_mem(next_card++, false, 0, 0, &r, NULL);
    EXPECT_EQ_U(r.outcome, TC_STATION_PROVISIONED);
    EXPECT(total > 20);
    (void)printf("     %zu APDUs per device\n", total);
    size_t revoked = 0;
    for (size_t k = 1; k <= total; k++) {
        provision_mem(next_card++, false, k, 0, &r, NULL);
        EXPECT_EQ_U(r.outcome, TC_STATION_REJECTED);
        EXPECT_EQ_U(r.reason, TC_STATION_R_CARD_REMOVED);
        if (r.outcome != TC_STATION_REJECTED)
            tc_test_fail_at(__FILE__, __LINE__, "removed before APDU %zu: %s", k, r.detail);
        if (r.eid[0] != '\0')
            expect_clean_reject(&r, r.step, TC_STATION_R_CARD_REMOVED);
        revoked += r.cert_revoked ? 1u : 0u;
    }
    EXPECT(revoked > 0);
    fx_station_close(&F);
}

/* The card answers 6F00 to APDU k, for every k: rejected, never
 * provisioned, no certificate left valid. */
static void test_card_error_everywhere(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct tc_station_result r;
    size_t total = provision_mem(next_card++, false, 0, 0, &r, NULL);
    EXPECT_EQ_U(r.outcome, TC_STATION_PROVISIONED);
    for (size_t k = 1; k <= total; k++) {
        provision_mem(next_card++, false, 0, k, &r, NULL);
        if (r.outcome != TC_STATION_REJECTED) {
            tc_test_fail_at(__FILE__, __LINE__, "error at APDU %zu: outcome %s", k,
                            tc_station_outcome_name(r.outcome));
            continue;
        }
        if (!(r.reason == TC_STATION_R_CARD_ERROR || r.reason == TC_STATION_R_TRANSPORT_KEYS ||
              r.reason == TC_STATION_R_GATE)) {
            tc_test_fail_at(__FILE__, __LINE__, "error at APDU %zu: reason %s: %s", k,
                            tc_station_reason_name(r.reason), r.detail);
            continue;
        }
        EXPECT(r.reason == TC_STATION_R_CARD_ERROR || r.reason == TC_STATION_R_TRANSPORT_KEYS ||
               r.reason == TC_STATION_R_GATE);
        EXPECT(strstr(r.detail, "6F00") != NULL);
        if (r.eid[0] != '\0')
            expect_clean_reject(&r, r.step, r.reason);
    }
    fx_station_close(&F);
}

/* The injection confirmation gate: a card that still answers to the
 * transport keyset after PUT KEY, and one that refuses the new keyset. */
static void test_gate(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct faulty fl;
    struct tc_transport t;
    struct tc_station_result r;
    struct tc_se_params p;
    size_t index = next_card++;
    /* 1: the transport keyset still opens a session. */
    if (faulty_open(&fl, index, false, &t) && fx_card_params(&F, index, false, &p)) {
        fl.fake_kvn = TC_STATION_TRANSPORT_KVN;
        fl.ccfg.i_param = p.i_param;
        memcpy(fl.ccfg.aid, p.isd_aid, p.isd_aid_len);
        fl.ccfg.aid_len = (uint8_t)p.isd_aid_len;
        memcpy(fl.ccfg.div_data, p.kdd, sizeof fl.ccfg.div_data);
        fl.store = (struct tc_scp03_card_store){.ctx = &fl,
                                                .load_keyset = fake_load,
                                                .next_sequence = fake_seq,
                                                .auth_failures = fake_failures,
                                                .auth_record = fake_record};
        EXPECT_OK(tc_scp03_keyset_set(&fl.ks, p.kvn, p.key_enc, p.key_mac, p.key_dek, p.key_len));
        fl.seq = 100;
        tc_se_params_wipe(&p);
        EXPECT_OK(tc_station_provision(F.st, &t, &r));
        expect_clean_reject(&r, TC_STATION_STEP_CONFIRM, TC_STATION_R_GATE);
        EXPECT(strstr(r.detail, "still opens a session") != NULL);
        EXPECT(!r.cert_issued);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_INJECTION_CONFIRMED), 0);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_KEYS_INJECTED), 1);
        tc_scp03_keyset_wipe(&fl.ks);
        faulty_free(&fl);
    }
    /* 3: PUT KEY answered with a KCV other than the HSM's. */
    index = next_card++;
    if (faulty_open(&fl, index, false, &t) && fx_card_params(&F, index, false, &p)) {
        fl.fake_kcv = true;
        fl.ccfg.i_param = p.i_param;
        memcpy(fl.ccfg.aid, p.isd_aid, p.isd_aid_len);
        fl.ccfg.aid_len = (uint8_t)p.isd_aid_len;
        memcpy(fl.ccfg.div_data, p.kdd, sizeof fl.ccfg.div_data);
        fl.store = (struct tc_scp03_card_store){.ctx = &fl,
                                                .load_keyset = fake_load,
                                                .next_sequence = fake_seq,
                                                .auth_failures = fake_failures,
                                                .auth_record = fake_record};
        EXPECT_OK(tc_scp03_keyset_set(&fl.ks, p.kvn, p.key_enc, p.key_mac, p.key_dek, p.key_len));
        tc_se_params_wipe(&p);
        EXPECT_OK(tc_station_provision(F.st, &t, &r));
        expect_clean_reject(&r, TC_STATION_STEP_INJECT, TC_STATION_R_KCV);
        if (r.reason != TC_STATION_R_KCV)
            tc_test_fail_at(__FILE__, __LINE__, "detail: %s", r.detail);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_KEYS_INJECTED), 0);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_KEYS_DERIVED), 1);
        tc_scp03_keyset_wipe(&fl.ks);
        faulty_free(&fl);
    }
    /* 2: the new keyset is refused (6A88 to its INITIALIZE UPDATE). */
    index = next_card++;
    if (faulty_open(&fl, index, false, &t)) {
        fl.fake_kvn = TC_STATION_DEVICE_KVN;
        fl.fake_sw = 0x6A88;
        EXPECT_OK(tc_station_provision(F.st, &t, &r));
        expect_clean_reject(&r, TC_STATION_STEP_CONFIRM, TC_STATION_R_GATE);
        EXPECT(strstr(r.detail, "does not open a session") != NULL);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_INJECTION_CONFIRMED), 0);
        faulty_free(&fl);
    }
    fx_station_close(&F);
}

/* Rejections classified by the SCP03 host's outcome, not its message: the
 * card refusing the host cryptogram (6300) is other transport keys, any
 * other refusal a card error; a probe answered with anything but 6A88 or a
 * cryptogram that fails proves nothing (card error, not a passed gate). */
static void test_scp03_outcomes(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct faulty fl;
    struct tc_transport t;
    struct tc_station_result r;
    static const struct {
        uint16_t ea_sw;
        unsigned reason;
    } ea[] = {{0x6300, TC_STATION_R_TRANSPORT_KEYS}, {0x6982, TC_STATION_R_CARD_ERROR}};
    for (size_t i = 0; i < TC_ARRAY_LEN(ea); i++) {
        if (!faulty_open(&fl, next_card++, false, &t))
            continue;
        fl.ea_sw = ea[i].ea_sw;
        EXPECT_OK(tc_station_provision(F.st, &t, &r));
        expect_clean_reject(&r, TC_STATION_STEP_TRANSPORT, ea[i].reason);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_KEYS_DERIVED), 0);
        faulty_free(&fl);
    }
    /* The probe of the transport keyset after PUT KEY answered 6985. */
    if (faulty_open(&fl, next_card++, false, &t)) {
        fl.fake_kvn = TC_STATION_TRANSPORT_KVN;
        fl.fake_sw = 0x6985;
        EXPECT_OK(tc_station_provision(F.st, &t, &r));
        expect_clean_reject(&r, TC_STATION_STEP_CONFIRM, TC_STATION_R_CARD_ERROR);
        EXPECT(strstr(r.detail, "6985") != NULL);
        EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_INJECTION_CONFIRMED), 0);
        faulty_free(&fl);
    }
    fx_station_close(&F);
}

static unsigned revoked_calls;
static void on_revoked(void *arg, const char *eid, const uint8_t *serial, size_t len, int reason)
{
    (void)arg;
    (void)eid;
    (void)serial;
    revoked_calls += len > 0 && reason == 5 ? 1u : 0u;
}

static void flip_signature(void *arg, uint8_t *der, size_t len)
{
    (void)arg;
    der[len - 1] ^= 0x01; /* last byte of the signature value */
}

static void test_cert_mismatch(void)
{
    struct tc_station_hooks h = {.corrupt_cert = flip_signature, .revoked = on_revoked};
    if (fx() == NULL || !fx_station(&F, &h))
        return;
    struct tc_station_result r;
    struct tc_se_info info;
    revoked_calls = 0;
    provision_mem(next_card++, false, 0, 0, &r, &info);
    expect_clean_reject(&r, TC_STATION_STEP_IDENTITY, TC_STATION_R_CERT_MISMATCH);
    EXPECT(r.cert_issued && r.cert_revoked);
    EXPECT_EQ_U(revoked_calls, 1);
    EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_CERT_REVOKED), 1);
    EXPECT_EQ_U(fx_count(&F, r.eid, TC_AUDIT_CERT_STORED), 0);
    EXPECT(info.life_cycle != TC_SE_LC_SECURED);
    fx_station_close(&F);
}

static void test_hsm_unavailable(void)
{
    if (fx() == NULL)
        return;
    /* Wrong PIN: the HSM refuses to open. */
    fx_hsm_close(&F);
    struct tc_hsm *h = NULL;
    struct tc_hsm_config c = {.module_path = F.hw.module_path,
                              .softhsm_conf = F.hw.softhsm_conf,
                              .token_label = F.hw.token_label,
                              .pin = "not-the-pin",
                              .pin_len = 11};
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_AUTH);
    F.hsm = NULL;
    bool sig = F.have_signer;
    F.have_signer = false;
    if (fx_station(&F, NULL)) {
        struct tc_station_result r;
        provision_mem(next_card++, false, 0, 0, &r, NULL);
        expect_clean_reject(&r, TC_STATION_STEP_TRANSPORT, TC_STATION_R_HSM);
        EXPECT(strstr(r.detail, "PIN") != NULL);
    }
    fx_station_close(&F);
    (void)sig;
    EXPECT_OK(fx_hsm_open(&F, NULL));
    /* A key missing from the HSM (no such master) is the same verdict. */
    struct tc_station_config cfg;
    if (!fx_station(&F, NULL))
        return;
    cfg = F.cfg;
    tc_station_free(F.st);
    F.st = NULL;
    cfg.master_name = "absent";
    EXPECT_OK(tc_station_new(&cfg, &F.st));
    if (F.st != NULL) {
        struct tc_station_result r;
        provision_mem(next_card++, false, 0, 0, &r, NULL);
        expect_clean_reject(&r, TC_STATION_STEP_TRANSPORT, TC_STATION_R_HSM);
        EXPECT(strstr(r.detail, "tc:master:absent") != NULL);
    }
    fx_station_close(&F);
}

static void test_config_refused(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    struct tc_station_config cfg = F.cfg;
    struct tc_station *st = NULL;
    cfg.batch_id = "OTHER";
    EXPECT_ERR(tc_station_new(&cfg, &st), TC_ERR_ARG);
    cfg = F.cfg;
    cfg.station_id = "has space";
    EXPECT_ERR(tc_station_new(&cfg, &st), TC_ERR_ARG);
    cfg = F.cfg;
    cfg.device_kvn = TC_STATION_TRANSPORT_KVN;
    EXPECT_ERR(tc_station_new(&cfg, &st), TC_ERR_ARG);
    cfg = F.cfg;
    cfg.batch_ca = F.root; /* the root is not a batch CA */
    cfg.batch_ca_len = F.root_len;
    EXPECT(tc_station_new(&cfg, &st) != TC_OK);
    EXPECT(st == NULL);
    fx_station_close(&F);
}

/* The runner: concurrent cards on images, a bad card in the middle does not
 * stop the batch, a second run does nothing twice. */
static struct tc_station_cards inner_cards;
static tc_err mixed_open(void *arg, size_t index, struct tc_transport *t)
{
    (void)arg;
    if (index == 3)
        return TC_FAIL(TC_ERR_IO, "no card in slot 3");
    return inner_cards.open(inner_cards.arg, index, t);
}

static void test_runner(void)
{
    if (fx() == NULL || !fx_station(&F, NULL))
        return;
    const size_t n = 12;
    EXPECT_OK(tc_station_emulate_prepare(F.cards, n, FX_PREFIX, TC_STATION_TRANSPORT_KVN, F.tk[0],
                                         F.tk[1], F.tk[2], F.tk_len));
    /* Card 5 comes from another vendor lot: other transport keys. */
    struct tc_se_params p;
    char path[400];
    (void)snprintf(path, sizeof path, "%s/card-000005.img", F.cards);
    EXPECT(fx_card_params(&F, 5, true, &p));
    EXPECT_OK(tc_se_create(path, &p, TC_SE_CREATE_FORCE));
    tc_se_params_wipe(&p);
    EXPECT_OK(tc_station_emulate_cards(F.cards, n, &inner_cards));
    struct tc_station_cards cards = {.open = mixed_open, .count = n};
    struct tc_station_run_opts o = {.jobs = 4};
    struct tc_station_stats s;
    EXPECT_OK(tc_station_run(F.st, &cards, &o, &s));
    EXPECT_EQ_U(s.done, n);
    EXPECT_EQ_U(s.provisioned, n - 2);
    EXPECT_EQ_U(s.rejected, 1);
    EXPECT_EQ_U(s.by_reason[TC_STATION_R_TRANSPORT_KEYS], 1);
    EXPECT_EQ_U(s.no_card, 1);
    uint64_t size = tc_audit_log_size(tc_registry_log(F.reg));
    EXPECT_OK(tc_station_run(F.st, &cards, &o, &s));
    EXPECT_EQ_U(s.provisioned, 0);
    EXPECT_EQ_U(s.already_done, n - 2);
    EXPECT_EQ_U(s.already_rejected, 1);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(F.reg)), size);
    for (size_t i = 0; i < n; i++) {
        struct tc_se_info info;
        (void)snprintf(path, sizeof path, "%s/card-%06zu.img", F.cards, i);
        EXPECT_OK(tc_se_describe(path, &info));
        EXPECT_EQ_U(info.life_cycle, i == 5 || i == 3 ? TC_SE_LC_OP_READY : TC_SE_LC_SECURED);
    }
    tc_station_emulate_cards_free(&inner_cards);
    fx_station_close(&F);
}

static void test_teardown(void)
{
    if (ready)
        fx_free(&F);
    ready = false;
}

static const struct tc_test_case cases[] = {
    {"names and emulated EIDs", test_names},
    {"provision: every gate, card, registry and HSM agree", test_provision},
    {"a personalised card is never re-personalised", test_personalised_card_refused},
    {"wrong transport keys: rejected at step 2, card untouched", test_wrong_transport_keys},
    {"EID outside the batch prefix: rejected at step 1", test_eid_outside_batch},
    {"card removed before every APDU", test_card_removed_everywhere},
    {"card error answered to every APDU", test_card_error_everywhere},
    {"injection gates: old keys still work, new keys refused, wrong KCVs", test_gate},
    {"rejections classified by the SCP03 host outcome", test_scp03_outcomes},
    {"certificate mismatch on read-back: rejected and revoked", test_cert_mismatch},
    {"HSM unavailable (wrong PIN) or key missing: rejected at step 2", test_hsm_unavailable},
    {"configuration refused", test_config_refused},
    {"batch runner: concurrent, goes on past faults, never twice", test_runner},
    {"teardown", test_teardown},
};

TC_TEST_MAIN("station", cases)
