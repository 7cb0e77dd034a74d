/*
 * renew-cert through the real operations engine (tc_ota_ops): queued with
 * tc_ota_queue_add, applied in an Amendment B dialog whose scripts the
 * library relay (tc_ota_agent_run_script) runs on an emulated card, with the
 * device's SCP03 keyset re-derived in SoftHSM2 and a software batch CA
 * behind the issue and revoke services. The dialog is dropped after every
 * script, the server is killed after every durable append (the engine's
 * fault hook) and a response is tampered with; each time a fresh dialog
 * completes the renewal: the card holds the new key and certificate, the
 * old certificate is revoked, exactly one certificate of the device is
 * valid, and the registry projection still rebuilds byte for byte.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "ota_fixture.h"

#define TOKEN  "tc-ota-renew-test"
#define EID1   "89049032123451234512345678901235"
#define BATCH  "B-2026-11-E"
#define PREFIX "890490321234"

static const uint8_t M_LINE[16] = {0x1F, 0x2E, 0x3D, 0x4C, 0x5B, 0x6A, 0x79, 0x88,
                                   0x97, 0xA6, 0xB5, 0xC4, 0xD3, 0xE2, 0xF1, 0x00};
static const uint8_t APPLET[] = {TC_SE_IDENTITY_AID};

static struct ota_fx_pki P;
static unsigned db_seq;

/* ------------------------------------------------------------------ the fixture */

struct fx {
    struct tc_registry *reg;
    struct tc_se_card *card;
    struct tc_transport t;
    struct tc_ota_ops *e;
    struct tc_ota_app app;
    struct tc_ota_cert_services svc;
    uint8_t eid[16];
    struct ota_fx_identity id; /* the line's */
};

/* A device as the line leaves it: keyset 01 from master "line", a key pair
 * and certificate by the batch CA, SECURED; the registry says the same. */
static bool setup(struct fx *f)
{
    memset(f, 0, sizeof *f);
    ota_fx_pki_reset(&P);
    struct tc_hsm *h = ota_fx_hsm("tc-ota-renew-e", TOKEN);
    if (h == NULL)
        return false;
    ota_fx_master("line", M_LINE);
    char path[400];
    (void)snprintf(path, sizeof path, "%s/reg-%u.db", ota_fx_dir(), ++db_seq);
    EXPECT_OK(tc_registry_open(path, NULL, &f->reg));
    if (f->reg == NULL)
        return false;
    uint8_t k[3][16], kcv[3][3];
    EXPECT(ota_fx_ref_keys(M_LINE, EID1, k));
    EXPECT(ota_fx_ref_kcvs(M_LINE, EID1, kcv));
    struct tc_se_params p;
    tc_se_params_default(&p);
    EXPECT_OK(tc_pki_eid_to_bcd(EID1, p.eid));
    memcpy(f->eid, p.eid, 16);
    p.kvn = 0x01;
    p.key_len = 16;
    memcpy(p.key_enc, k[0], 16);
    memcpy(p.key_mac, k[1], 16);
    memcpy(p.key_dek, k[2], 16);
    EXPECT_OK(tc_se_open_mem(&p, &f->card));
    uint8_t atr[64];
    size_t al = 0;
    EXPECT_OK(tc_se_power_on(f->card, atr, sizeof atr, &al));
    EXPECT_OK(tc_se_transport(f->card, &f->t));

    struct tc_scp03_mem_provider m;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_keyset ks;
    tc_scp03_mem_provider_init(&m, &kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x01, k[0], k[1], k[2], 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&m, &ks));
    bool ok = ota_fx_card_identity(&f->t, &kp, 0x01, &P, EID1, &f->id);
    tc_scp03_mem_provider_wipe(&m);
    tc_scp03_keyset_wipe(&ks);
    tc_se_params_wipe(&p);
    if (!ok)
        return false;
    ota_fx_log_line(f->reg, EID1, BATCH, &f->id, 0x01, (const uint8_t(*)[3])kcv);
    return true;
}

/* Fault injection: kill the server at the n-th durable append (0: never). */
static unsigned fault_n, fault_seen;

static bool fault(void *arg, enum tc_ota_fault_point at, const char *eid)
{
    (void)arg;
    (void)eid;
    if (fault_n == 0 || at != TC_OTA_FAULT_APPENDED)
        return false;
    return ++fault_seen == fault_n;
}

static bool engine_new(struct fx *f)
{
    struct tc_ota_ops_config cfg = {.reg = f->reg,
                                    .hsm = ota_fx_hsm("tc-ota-renew-e", TOKEN),
                                    .workspace = ota_fx_wsdir(),
                                    .default_master = "line",
                                    .fault = fault};
    EXPECT_OK(tc_ota_ops_new(&cfg, &f->e, &f->app));
    if (f->e == NULL)
        return false;
    f->svc = (struct tc_ota_cert_services){
        .arg = &P, .reg = f->reg, .issue = ota_fx_svc_issue, .revoke = ota_fx_svc_revoke};
    EXPECT_OK(tc_ota_renew_attach(f->e, &f->svc));
    return true;
}

static void engine_free(struct fx *f)
{
    tc_ota_renew_detach(f->e);
    tc_ota_ops_free(f->e);
    f->e = NULL;
}

static void teardown(struct fx *f)
{
    engine_free(f);
    tc_transport_close(&f->t);
    tc_se_close(f->card);
    tc_registry_close(f->reg);
}

static void queue_renew(struct fx *f)
{
    struct tc_ota_queue_request rq = {.eid = EID1,
                                      .code = TC_OTA_OP_RENEW_CERT,
                                      .actor = "operator",
                                      .workspace = ota_fx_wsdir()};
    uint64_t id = 0;
    EXPECT_OK(tc_ota_queue_add(f->reg, &rq, &id));
}

enum dialog_end { D_DONE = OTA_FX_DONE, D_DROPPED = OTA_FX_DROPPED, D_ABORTED = OTA_FX_ABORTED };

/* One Amendment B dialog (ota_fx_dialog): drop_after > 0 drops the
 * connection after that many scripts ran on the card; tamper > 0 flips a
 * byte of the response to that script. */
static enum dialog_end dialog(struct fx *f, unsigned drop_after, unsigned tamper, unsigned *scripts)
{
    struct ota_fx_dialog d = {
        .app = &f->app, .t = &f->t, .eid = EID1, .drop_after = drop_after, .tamper = tamper};
    return (enum dialog_end)ota_fx_dialog(&d, scripts);
}

/* ------------------------------------------------------------------ checks */

static struct ota_fx_counts count(struct fx *f)
{
    return ota_fx_count(f->reg, f->eid, sizeof f->eid);
}

static void check_renewed(struct fx *f, const char *what)
{
    struct tc_se_info info;
    EXPECT_OK(tc_se_card_describe(f->card, &info));
    EXPECT(info.has_key && info.has_cert && !info.has_pending);
    EXPECT(memcmp(info.public_key, f->id.pub, 65) != 0);
    EXPECT_EQ_U(info.life_cycle, TC_SE_LC_SECURED);
    EXPECT_EQ_U(ota_fx_select(&f->t, APPLET, sizeof APPLET), 0x9000);
    const uint8_t get_cert[] = {0x80, 0x46, 0x00, 0x00, 0x00, 0x00, 0x00};
    EXPECT_EQ_U(ota_fx_plain(&f->t, get_cert, sizeof get_cert), 0x6282);
    bool card_valid = false;
    size_t valid = ota_fx_pki_valid(&P, ota_fx_resp, ota_fx_resp_len, &card_valid);
    if (valid != 1 || !card_valid)
        tc_test_fail_at(__FILE__, __LINE__, "%s: %zu valid certificates, the card's %s", what,
                        valid, card_valid ? "valid" : "NOT valid");
    EXPECT(ota_fx_pki_is_revoked(&P, f->id.serial, sizeof f->id.serial));
    struct tc_ota_queue q;
    EXPECT_OK(tc_ota_queue_load(f->reg, f->eid, 16, UINT64_MAX, &q));
    EXPECT_EQ_U(q.pending, 0);
    struct ota_fx_counts c = count(f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 0);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CERT_STORED], 2); /* the line's, the renewal's */
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CERT_REVOKED], 1);
    struct tc_registry_device d;
    EXPECT_OK(tc_registry_device_get(f->reg, f->eid, 16, &d));
    EXPECT_MEM(d.cert_sha256, 32, info.cert_sha256, 32);
    EXPECT(d.cert_stored);
    /* The old certificate revoked: the new one is the only one the row
     * remembers, with the card's key; the row is the fold of the log. */
    EXPECT(!d.cert_revoked);
    EXPECT_EQ_U(d.n_prev, 0);
    uint8_t spki[91], pub_sha[32];
    ota_fx_spki_of(info.public_key, spki);
    ota_fx_sha256(spki, sizeof spki, pub_sha);
    EXPECT_MEM(d.pubkey_sha256, 32, pub_sha, 32);
    EXPECT_MEM(d.cert_pubkey_sha256, 32, pub_sha, 32);
    struct tc_registry_device fold;
    EXPECT_OK(tc_registry_device_at(f->reg, f->eid, 16, UINT64_MAX, &fold, NULL, 0, NULL));
    EXPECT_MEM(&fold, sizeof fold, &d, sizeof d);
    EXPECT_OK(tc_registry_check(f->reg, NULL, NULL));
}

/* ------------------------------------------------------------------ cases */

static unsigned ref_scripts, ref_appends;

static void test_engine_renew(void)
{
    struct fx f;
    if (!setup(&f) || !engine_new(&f))
        return;
    queue_renew(&f);
    unsigned n = 0;
    /* Count the durable appends of a whole renewal with a hook that
     * never fires. */
    fault_n = 1000;
    fault_seen = 0;
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    ref_appends = fault_seen;
    fault_n = 0;
    ref_scripts = n;
    check_renewed(&f, "renewal");
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_STEP], 2);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CERT_ISSUED], 2);
    EXPECT_EQ_U(P.nissued, 2);
    printf("# renewal through the engine: %u scripts, %u durable appends\n", n, ref_appends);
    /* Nothing left: the next dialog ends at once. */
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 0);
    teardown(&f);
}

static void test_engine_dropped(void)
{
    EXPECT(ref_scripts >= 6);
    for (unsigned k = 1; k < ref_scripts; k++) {
        struct fx f;
        if (!setup(&f) || !engine_new(&f))
            return;
        queue_renew(&f);
        EXPECT_EQ_U(dialog(&f, k, 0, NULL), D_DROPPED);
        char what[64];
        (void)snprintf(what, sizeof what, "dropped after script %u", k);
        EXPECT_EQ_U(dialog(&f, 0, 0, NULL), D_DONE);
        check_renewed(&f, what);
        teardown(&f);
    }
}

static void test_engine_killed(void)
{
    EXPECT(ref_appends >= 3);
    for (unsigned k = 1; k <= ref_appends; k++) {
        struct fx f;
        if (!setup(&f) || !engine_new(&f))
            return;
        queue_renew(&f);
        fault_n = k;
        fault_seen = 0;
        EXPECT_EQ_U(dialog(&f, 0, 0, NULL), D_ABORTED);
        fault_n = 0;
        /* The server restarts: a new engine over the same log. */
        engine_free(&f);
        if (!engine_new(&f))
            return;
        char what[64];
        (void)snprintf(what, sizeof what, "killed at append %u", k);
        enum dialog_end e = dialog(&f, 0, 0, NULL);
        if (e != D_DONE)
            tc_test_fail_at(__FILE__, __LINE__, "%s: the next dialog ended %d", what, (int)e);
        check_renewed(&f, what);
        teardown(&f);
    }
}

static void test_engine_tampered(void)
{
    for (unsigned k = 3; k < ref_scripts; k += 2) {
        struct fx f;
        if (!setup(&f) || !engine_new(&f))
            return;
        queue_renew(&f);
        /* A changed byte in a protected response: the R-MAC fails and the
         * dialog is aborted; the renewal stays pending and completes. */
        EXPECT_EQ_U(dialog(&f, 0, k, NULL), D_ABORTED);
        EXPECT_EQ_U(dialog(&f, 0, 0, NULL), D_DONE);
        check_renewed(&f, "tampered");
        teardown(&f);
    }
}

static void setup_all(void)
{
    EXPECT(ota_fx_pki_setup(&P, BATCH, PREFIX));
}

static void cleanup(void)
{
    ota_fx_pki_free(&P);
    ota_fx_hsm_cleanup();
}

static const struct tc_test_case cases[] = {
    {"setup", setup_all},
    {"engine_renew", test_engine_renew},
    {"engine_dropped", test_engine_dropped},
    {"engine_killed", test_engine_killed},
    {"engine_tampered", test_engine_tampered},
    {"cleanup", cleanup},
};

TC_TEST_MAIN("ota_renew_engine", cases)
