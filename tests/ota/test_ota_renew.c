/*
 * renew-cert (src/ota/op_renew.c) against an emulated card, a real registry
 * (SQLite audit log) and a real batch CA (pki module, software keys). The
 * test plays the operations engine: it asks the kind for actions, appends
 * each intent (op-step + the kind's events) durably before the command goes
 * to the card, runs SCP03 to the identity applet (level 33) and feeds the
 * results back, exactly as the engine's step contract (ota_ops.h) says.
 *
 * The renewal runs to completion and is checked on the card (active key,
 * no pending key, certificate, SIGN by the new key), in the log (events
 * with the op id) and in the PKI (after the CRL: exactly one valid
 * certificate for the device, the one on the card). It is then
 * interrupted at every action, once after the intent was appended (the
 * server died before the command left) and once after the card ran the
 * command (its answer was lost), and resumed by a fresh run: the same end
 * state, no certificate left valid beside the device's own. Rejections:
 * no services, no certificate to renew, a bad proof of possession, a card
 * that refuses, a card whose pending key changed under an issued
 * certificate (the certificate is revoked), a read-back that differs (once:
 * stored again; always: the new certificate kept, as the card proves its
 * key active; with another active key: the new certificate revoked), a
 * STORE CERTIFICATE refused before the promotion (the new certificate
 * revoked) and after it (stored again; or kept valid when it never is).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <trustchain/crypto.h>
#include <trustchain/ota_ops.h>
#include <trustchain/ota_renew.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "harness.h"
#include "ota_fixture.h"

#define EID    "89049032123451234512345678901235"
#define BATCH  "B-2026-11-R"
#define PREFIX "890490321234"

static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t APPLET[] = {TC_SE_IDENTITY_AID};
static const uint8_t GP_KEY[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                   0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};

/* ------------------------------------------------------------------ PKI */

static struct ota_fx_pki P;

/* ------------------------------------------------------------------ card link */

struct link {
    struct tc_se_card *card;
    struct tc_transport t;
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_host h;
    bool open;
};

static uint16_t plain(struct link *l, const uint8_t *cmd, size_t n)
{
    return ota_fx_plain(&l->t, cmd, n);
}

static uint16_t select_aid(struct link *l, const uint8_t *aid, size_t aid_len)
{
    return ota_fx_select(&l->t, aid, aid_len);
}

static void link_close(struct link *l)
{
    if (l->open)
        tc_scp03_host_wipe(&l->h);
    l->open = false;
}

/* SELECT `aid`, then an SCP03 session (level 33) with the factory keyset;
 * the card challenge is computed over the ISD AID. */
static tc_err link_auth(struct link *l, const uint8_t *aid, size_t aid_len)
{
    link_close(l);
    uint16_t sw = select_aid(l, aid, aid_len);
    if (sw != 0x9000 && sw != 0x6283)
        return TC_FAIL(TC_ERR_CARD, "SELECT answered %04X", sw);
    struct tc_scp03_host_config c = {
        .kvn = 0x30, .level = 0x33, .aid = ISD, .aid_len = sizeof ISD, .select = false};
    TC_GUARD(tc_scp03_host_open(&l->h, &l->t, &l->kp, &c));
    l->open = true;
    return TC_OK;
}

static uint16_t link_send(struct link *l, const struct tc_apdu *a)
{
    size_t n = 0;
    uint16_t sw = 0;
    if (tc_scp03_host_transmit(&l->h, a, ota_fx_resp, sizeof ota_fx_resp, &n, &sw) != TC_OK) {
        tc_error_clear();
        return 0;
    }
    ota_fx_resp_len = n;
    return sw;
}

static uint16_t link_sendx(struct link *l, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *d,
                           size_t lc)
{
    return ota_fx_sm(&l->h, ins, p1, p2, d, lc);
}

static bool link_open(struct link *l)
{
    memset(l, 0, sizeof *l);
    struct tc_se_params p;
    tc_se_params_default(&p);
    struct tc_scp03_keyset ks;
    tc_scp03_mem_provider_init(&l->mp, &l->kp);
    bool ok = tc_se_open_mem(&p, &l->card) == TC_OK && tc_se_transport(l->card, &l->t) == TC_OK &&
              tc_scp03_keyset_set(&ks, 0x30, GP_KEY, GP_KEY, GP_KEY, 16) == TC_OK &&
              tc_scp03_mem_provider_add(&l->mp, &ks) == TC_OK;
    tc_scp03_keyset_wipe(&ks);
    tc_se_params_wipe(&p);
    EXPECT(ok);
    return ok;
}

static void link_free(struct link *l)
{
    link_close(l);
    tc_scp03_mem_provider_wipe(&l->mp);
    tc_transport_close(&l->t);
    tc_se_close(l->card);
    memset(l, 0, sizeof *l);
}

/* A new connection: the card's RAM (sessions, selection) is gone. */
static void link_reconnect(struct link *l)
{
    uint8_t atr[TC_SE_ATR_MAX];
    size_t n = 0;
    link_close(l);
    EXPECT_OK(tc_se_reset(l->card, atr, sizeof atr, &n));
}

/* ------------------------------------------------------------------ the device */

struct dev {
    struct link l;
    struct tc_registry *reg;
    char dir[64];
    uint8_t eid[TC_SE_EID_LEN];
    uint8_t cert[TC_SE_MAX_CERT];
    size_t cert_len;
    uint8_t pub[TC_SE_EC_PUB_LEN];
    uint8_t serial[TC_PKI_SERIAL_LEN];
    struct tc_ota_op op;
};

/* Complete an event as the engine does (device, op id, batch, actor,
 * station where the type requires one) and append the batch durably. */
static void log_events(struct dev *d, struct tc_audit_event *evs, size_t n, uint64_t *first)
{
    uint8_t buf[4][TC_AUDIT_EVENT_MAX];
    const uint8_t *ptrs[4];
    size_t lens[4];
    EXPECT(n <= 4);
    for (size_t i = 0; i < n && i < 4; i++) {
        struct tc_audit_event *ev = &evs[i];
        uint32_t req = 0, allowed = 0;
        EXPECT_OK(tc_audit_event_schema(ev->type, &req, &allowed));
        ev->time_ms = (uint64_t)time(NULL) * 1000u;
        memcpy(ev->eid, d->eid, sizeof d->eid);
        ev->eid_len = sizeof d->eid;
        ev->fields |= TC_AUDIT_HAS_EID;
        if ((allowed & TC_AUDIT_HAS_OP_ID) && d->op.id != 0) {
            ev->op_id = d->op.id;
            ev->fields |= TC_AUDIT_HAS_OP_ID;
        }
        if (allowed & TC_AUDIT_HAS_BATCH) {
            (void)snprintf(ev->batch, sizeof ev->batch, "%s", BATCH);
            ev->fields |= TC_AUDIT_HAS_BATCH;
        }
        if (allowed & TC_AUDIT_HAS_ACTOR) {
            (void)snprintf(ev->actor, sizeof ev->actor, "%s", "ota-server");
            ev->fields |= TC_AUDIT_HAS_ACTOR;
        }
        if (req & TC_AUDIT_HAS_STATION) {
            (void)snprintf(ev->station, sizeof ev->station, "%s", "line-1");
            ev->fields |= TC_AUDIT_HAS_STATION;
        }
        EXPECT_OK(tc_audit_event_encode(ev, buf[i], sizeof buf[i], &lens[i]));
        ptrs[i] = buf[i];
    }
    uint64_t f = 0;
    EXPECT_OK(tc_registry_append_encoded(d->reg, ptrs, lens, n, &f));
    if (first != NULL)
        *first = f;
}

/* The line's work: key pair, certificate, SECURED; then renew-cert queued. */
static bool device_new(struct dev *d, const char *name)
{
    memset(d, 0, sizeof *d);
    (void)snprintf(d->dir, sizeof d->dir, "/tmp/tc-ota-renew-XXXXXX");
    if (mkdtemp(d->dir) == NULL || !link_open(&d->l))
        return false;
    char path[128];
    (void)snprintf(path, sizeof path, "%s/%s.db", d->dir, name);
    EXPECT_OK(tc_registry_open(path, NULL, &d->reg));
    size_t el = 0;
    EXPECT_OK(tc_hex_decode(EID, 32, 0, d->eid, sizeof d->eid, &el));
    uint8_t atr[TC_SE_ATR_MAX];
    size_t n = 0;
    EXPECT_OK(tc_se_power_on(d->l.card, atr, sizeof atr, &n));
    struct ota_fx_identity line;
    if (!ota_fx_card_identity(&d->l.t, &d->l.kp, 0x30, &P, EID, &line))
        return false;
    memcpy(d->cert, line.cert, line.cert_len);
    d->cert_len = line.cert_len;
    memcpy(d->pub, line.pub, sizeof d->pub);
    memcpy(d->serial, line.serial, sizeof d->serial);
    link_reconnect(&d->l);
    /* The log of the line, then the queued renewal. */
    ota_fx_log_line(d->reg, EID, BATCH, &line, 0, NULL);
    struct tc_audit_event q;
    memset(&q, 0, sizeof q);
    q.type = TC_AUDIT_OP_QUEUED;
    q.fields = TC_AUDIT_HAS_OP_KIND;
    q.op_kind = TC_OTA_OP_RENEW_CERT;
    uint64_t id = 0;
    log_events(d, &q, 1, &id);
    d->op.id = id;
    d->op.code = TC_OTA_OP_RENEW_CERT;
    d->op.status = TC_OTA_OP_PENDING;
    return true;
}

static void device_free(struct dev *d)
{
    tc_registry_close(d->reg);
    link_free(&d->l);
    char cmd[128];
    (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
    if (d->dir[0] != '\0' && system(cmd) != 0)
        EXPECT(false);
}

/* ------------------------------------------------------------------ the engine's part */

/* A stand-in for the engine: renew-cert uses it only as a key for its
 * services. */
static const struct tc_ota_ops *const FAKE_ENGINE = (const struct tc_ota_ops *)(const void *)&P;

enum outcome { OUT_DONE = 1, OUT_FAILED, OUT_CUT, OUT_ERROR };

struct plan {
    long cut_appended;     /* action index: the server dies after its intent is on the log */
    long cut_answered;     /* action index: the card ran it, the answer is lost */
    bool tamper_pop;       /* the GENERATE KEY answer's signature is damaged */
    unsigned tamper_read;  /* this many GET CERTIFICATE answers are damaged */
    bool tamper_pub;       /* GET PUBLIC KEY P1 00 answers another key */
    bool cut_pub;          /* GET PUBLIC KEY P1 00 answers a truncated key */
    unsigned tamper_store; /* bit n: round n of STORE CERTIFICATE carries a broken DER length */
    unsigned store_round;  /* rounds started (first blocks sent) */
    uint16_t reason;       /* op-failed reason */
    long actions;          /* actions asked for */
};

static enum outcome run_op(struct dev *d, struct plan *pl)
{
    struct tc_registry_device rd;
    EXPECT_OK(tc_registry_device_get(d->reg, d->eid, sizeof d->eid, &rd));
    struct tc_ota_op_run run;
    memset(&run, 0, sizeof run);
    run.op = &d->op;
    run.dev = &rd;
    run.eid = EID;
    run.kvn = 0x30;
    run.master = "";
    run.engine = (struct tc_ota_ops *)(uintptr_t)FAKE_ENGINE;
    struct tc_ota_result res;
    struct tc_ota_act a;
    bool have = false;
    for (int guard = 0; guard < 200; guard++) {
        memset(&a, 0, sizeof a);
        if (tc_ota_op_renew_cert.next(&run, have ? &res : NULL, &a) != TC_OK) {
            tc_error_clear();
            return OUT_ERROR;
        }
        if (a.kind == TC_OTA_ACT_DONE || a.kind == TC_OTA_ACT_FAIL) {
            struct tc_audit_event evs[TC_OTA_ACT_EVENTS + 1];
            memcpy(evs, a.events, a.nevents * sizeof evs[0]);
            struct tc_audit_event *lead = &evs[a.nevents];
            memset(lead, 0, sizeof *lead);
            lead->type = a.kind == TC_OTA_ACT_DONE ? TC_AUDIT_OP_DONE : TC_AUDIT_OP_FAILED;
            if (a.kind == TC_OTA_ACT_FAIL) {
                lead->fields = TC_AUDIT_HAS_REASON;
                lead->reason = a.reason;
                pl->reason = a.reason;
            }
            log_events(d, evs, a.nevents + 1, NULL);
            d->op.status = a.kind == TC_OTA_ACT_DONE ? TC_OTA_OP_DONE : TC_OTA_OP_FAILED;
            return a.kind == TC_OTA_ACT_DONE ? OUT_DONE : OUT_FAILED;
        }
        EXPECT(a.kind == TC_OTA_ACT_AUTH || a.kind == TC_OTA_ACT_SEND);
        /* ota_ops.h: the intent (and its events) is durable before the
         * command reaches the card. */
        if (a.intent != 0 || a.nevents > 0) {
            struct tc_audit_event evs[TC_OTA_ACT_EVENTS + 1];
            size_t n = a.nevents;
            memcpy(evs, a.events, n * sizeof evs[0]);
            if (a.intent != 0) {
                memset(&evs[n], 0, sizeof evs[n]);
                evs[n].type = TC_AUDIT_OP_STEP;
                evs[n].fields = TC_AUDIT_HAS_STEP;
                evs[n].step = a.intent;
                n++;
            }
            log_events(d, evs, n, NULL);
            if (a.intent > d->op.step)
                d->op.step = a.intent;
        }
        long idx = pl->actions++;
        if (idx == pl->cut_appended)
            return OUT_CUT;
        memset(&res, 0, sizeof res);
        res.kind = a.kind;
        if (a.kind == TC_OTA_ACT_AUTH) {
            EXPECT(a.kvn == 0 && a.aid_len == sizeof APPLET &&
                   memcmp(a.aid, APPLET, sizeof APPLET) == 0);
            res.rc = link_auth(&d->l, a.aid, a.aid_len);
            tc_error_clear();
        } else {
            struct tc_apdu c = a.cmd;
            c.data = c.lc > 0 ? a.data : NULL;
            if (a.cmd.ins == TC_SE_ID_INS_STORE_CERT && a.cmd.p2 == 0 &&
                (pl->tamper_store >> pl->store_round++ & 1u) && c.lc > 4)
                a.data[3] ^= 0x01; /* the certificate SEQUENCE's length: the card refuses it */
            EXPECT(c.lc <= TC_OTA_CMD_DATA_MAX);
            res.sw = link_send(&d->l, &c);
            res.rc = TC_OK;
            EXPECT(ota_fx_resp_len <= sizeof res.data);
            res.len = ota_fx_resp_len <= sizeof res.data ? ota_fx_resp_len : 0;
            memcpy(res.data, ota_fx_resp, res.len);
            if (pl->tamper_pop && a.cmd.ins == TC_SE_ID_INS_GENERATE && res.len > 0)
                res.data[res.len - 1] ^= 0x01;
            if (pl->tamper_read > 0 && a.cmd.ins == TC_SE_ID_INS_GET_CERT && res.len > 0) {
                res.data[res.len / 2] ^= 0x80;
                pl->tamper_read--;
            }
            if (pl->tamper_pub && a.cmd.ins == TC_SE_ID_INS_GET_PUBLIC && a.cmd.p1 == 0x00 &&
                res.len == 67)
                res.data[40] ^= 0x01;
            if (pl->cut_pub && a.cmd.ins == TC_SE_ID_INS_GET_PUBLIC && a.cmd.p1 == 0x00)
                res.len = res.len > 10 ? 10 : res.len;
        }
        if (idx == pl->cut_answered)
            return OUT_CUT;
        have = true;
    }
    EXPECT(false);
    return OUT_ERROR;
}

static struct plan plan_none(void)
{
    struct plan p = {.cut_appended = -1, .cut_answered = -1};
    return p;
}

/* ------------------------------------------------------------------ checks */

struct seen {
    uint64_t op_id;
    unsigned keypair, issued, stored, revoked, done, failed, steps;
    uint8_t stored_serial[TC_AUDIT_SERIAL_MAX];
    uint8_t revoked_serial[TC_AUDIT_SERIAL_MAX];
};

static tc_err seen_fn(void *arg, uint64_t index, const struct tc_audit_event *ev,
                      const uint8_t *event, size_t len)
{
    struct seen *s = arg;
    (void)event;
    (void)len;
    if (index < s->op_id || !(ev->fields & TC_AUDIT_HAS_OP_ID) || ev->op_id != s->op_id)
        return TC_OK;
    switch (ev->type) {
    case TC_AUDIT_KEYPAIR_GENERATED:
        s->keypair++;
        break;
    case TC_AUDIT_CERT_ISSUED:
        s->issued++;
        break;
    case TC_AUDIT_CERT_STORED:
        s->stored++;
        memcpy(s->stored_serial, ev->cert_serial, ev->cert_serial_len);
        break;
    case TC_AUDIT_CERT_REVOKED:
        s->revoked++;
        memcpy(s->revoked_serial, ev->cert_serial, ev->cert_serial_len);
        break;
    case TC_AUDIT_OP_DONE:
        s->done++;
        break;
    case TC_AUDIT_OP_FAILED:
        s->failed++;
        break;
    case TC_AUDIT_OP_STEP:
        s->steps++;
        break;
    default:
        break;
    }
    return TC_OK;
}

static struct seen seen_of(struct dev *d)
{
    struct seen s;
    memset(&s, 0, sizeof s);
    s.op_id = d->op.id;
    EXPECT_OK(tc_registry_device_history(d->reg, d->eid, sizeof d->eid, seen_fn, &s));
    return s;
}

/* The card holds a new identity: active key = the stored certificate's, no
 * pending key, SIGN by that key; the log and the PKI agree. */
static void check_renewed(struct dev *d)
{
    struct link *l = &d->l;
    link_reconnect(l);
    EXPECT_EQ_U(select_aid(l, APPLET, sizeof APPLET), 0x9000);
    const uint8_t get_pub[] = {0x80, 0x42, 0x00, 0x00, 0x00};
    EXPECT_EQ_U(plain(l, get_pub, sizeof get_pub), 0x9000);
    uint8_t pub[65];
    memcpy(pub, ota_fx_resp + 2, 65);
    EXPECT(memcmp(pub, d->pub, 65) != 0);
    const uint8_t get_pending[] = {0x80, 0x42, 0x01, 0x00, 0x00};
    EXPECT_EQ_U(plain(l, get_pending, sizeof get_pending), 0x6A88);
    const uint8_t get_cert[] = {0x80, 0x46, 0x00, 0x00, 0x00, 0x00, 0x00};
    EXPECT_EQ_U(plain(l, get_cert, sizeof get_cert), 0x6282);
    uint8_t cert[TC_SE_MAX_CERT];
    size_t cert_len = ota_fx_resp_len;
    memcpy(cert, ota_fx_resp, cert_len);
    struct tc_pki_device_info info;
    EXPECT_OK(tc_pki_check_device(cert, cert_len, &info));
    /* SIGN (the agent's TLS signature) by the new key. */
    uint8_t digest[32], spki[91];
    const uint8_t msg[] = "CertificateVerify";
    ota_fx_sha256(msg, sizeof msg, digest);
    uint8_t sign[5 + 32 + 1] = {0x80, 0x2A, 0x9E, 0x9A, 0x20};
    memcpy(sign + 5, digest, 32);
    EXPECT_EQ_U(plain(l, sign, sizeof sign), 0x9000);
    ota_fx_spki_of(pub, spki);
    EXPECT_OK(tc_sig_verify(TC_SIG_ECDSA_P256_SHA256, spki, sizeof spki, msg, sizeof msg,
                            ota_fx_resp, ota_fx_resp_len));
    /* Exactly one valid certificate for the device: the card's. */
    bool card_valid = false;
    EXPECT_EQ_U(ota_fx_pki_valid(&P, cert, cert_len, &card_valid), 1);
    EXPECT(card_valid);
    EXPECT(ota_fx_pki_is_revoked(&P, d->serial, sizeof d->serial));
    /* The log: one cert-stored of the card's certificate, the old one
     * revoked, op-done; the registry's current certificate is the card's. */
    struct seen s = seen_of(d);
    EXPECT(s.keypair >= 1 && s.issued >= 1);
    EXPECT_EQ_U(s.stored, 1);
    EXPECT_EQ_U(s.done, 1);
    EXPECT_EQ_U(s.failed, 0);
    EXPECT_MEM(s.stored_serial, TC_PKI_SERIAL_LEN, info.serial, info.serial_len);
    EXPECT_MEM(s.revoked_serial, TC_PKI_SERIAL_LEN, d->serial, sizeof d->serial);
    struct tc_registry_device rd;
    EXPECT_OK(tc_registry_device_get(d->reg, d->eid, sizeof d->eid, &rd));
    EXPECT_MEM(rd.cert_serial, rd.cert_serial_len, info.serial, info.serial_len);
    EXPECT(rd.cert_stored);
    uint8_t h[32];
    ota_fx_sha256(cert, cert_len, h);
    EXPECT_MEM(rd.cert_sha256, 32, h, 32);
    link_close(l);
}

/* ------------------------------------------------------------------ cases */

static struct tc_ota_cert_services SVC;

static void attach(struct dev *d)
{
    SVC = (struct tc_ota_cert_services){
        .arg = &P, .reg = d->reg, .issue = ota_fx_svc_issue, .revoke = ota_fx_svc_revoke};
    EXPECT_OK(tc_ota_renew_attach(FAKE_ENGINE, &SVC));
}

static void reset_pki_lists(void)
{
    ota_fx_pki_reset(&P);
}

static void test_renew(void)
{
    struct dev d;
    reset_pki_lists();
    if (!device_new(&d, "renew"))
        return;
    attach(&d);
    struct plan pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_DONE);
    check_renewed(&d);
    struct seen s = seen_of(&d);
    EXPECT_EQ_U(s.steps, 2); /* intent 1 (GENERATE KEY), intent 2 (STORE) */
    EXPECT_EQ_U(s.issued, 1);
    EXPECT_EQ_U(s.revoked, 1);
    EXPECT_EQ_U(P.nissued, 2);
    EXPECT_EQ_U(P.revoke_calls, 1);
    printf("# renewal: %ld actions\n", pl.actions);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);
}

/* Every action, both ways of being cut off, then resumed. */
static void test_interrupted(void)
{
    struct dev d;
    reset_pki_lists();
    if (!device_new(&d, "ref"))
        return;
    attach(&d);
    struct plan ref = plan_none();
    EXPECT_EQ_U(run_op(&d, &ref), OUT_DONE);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);
    long n = ref.actions;
    EXPECT(n >= 6);
    unsigned resumed = 0;
    for (long k = 0; k < n; k++) {
        for (int mode = 0; mode < 2; mode++) {
            reset_pki_lists();
            if (!device_new(&d, "cut"))
                return;
            attach(&d);
            struct plan pl = plan_none();
            if (mode == 0)
                pl.cut_appended = k;
            else
                pl.cut_answered = k;
            EXPECT_EQ_U(run_op(&d, &pl), OUT_CUT);
            /* While cut off: the device keeps a valid certificate for the
             * key it signs with, and at most one more (in flight). */
            link_reconnect(&d.l);
            EXPECT_EQ_U(select_aid(&d.l, APPLET, sizeof APPLET), 0x9000);
            const uint8_t get_cert[] = {0x80, 0x46, 0x00, 0x00, 0x00, 0x00, 0x00};
            EXPECT_EQ_U(plain(&d.l, get_cert, sizeof get_cert), 0x6282);
            uint8_t on_card[TC_SE_MAX_CERT];
            size_t on_card_len = ota_fx_resp_len;
            memcpy(on_card, ota_fx_resp, on_card_len);
            bool card_valid = false;
            size_t valid = ota_fx_pki_valid(&P, on_card, on_card_len, &card_valid);
            if (!card_valid || valid < 1 || valid > 2)
                tc_test_fail_at(__FILE__, __LINE__,
                                "cut at action %ld (%s): card certificate %s, %zu valid", k,
                                mode == 0 ? "after the append" : "answer lost",
                                card_valid ? "valid" : "NOT valid", valid);
            link_reconnect(&d.l);
            struct plan again = plan_none();
            enum outcome o = run_op(&d, &again);
            if (o != OUT_DONE)
                tc_test_fail_at(__FILE__, __LINE__, "cut at action %ld (%s): outcome %d", k,
                                mode == 0 ? "after the append" : "answer lost", (int)o);
            check_renewed(&d);
            resumed++;
            tc_ota_renew_detach(FAKE_ENGINE);
            device_free(&d);
        }
    }
    printf("# %u interrupted renewals resumed\n", resumed);
}

/* Cut twice in a row (after the STORE intent, then after the first
 * block), then resumed. */
static void test_interrupted_twice(void)
{
    struct dev d;
    reset_pki_lists();
    if (!device_new(&d, "twice"))
        return;
    attach(&d);
    struct plan pl = plan_none();
    pl.cut_appended = 2; /* the first STORE block: intent 2 logged */
    EXPECT_EQ_U(run_op(&d, &pl), OUT_CUT);
    link_reconnect(&d.l);
    struct plan p2 = plan_none();
    p2.cut_answered = 3; /* AUTH, GET PUBLIC x2, first block ran */
    EXPECT_EQ_U(run_op(&d, &p2), OUT_CUT);
    link_reconnect(&d.l);
    struct plan p3 = plan_none();
    EXPECT_EQ_U(run_op(&d, &p3), OUT_DONE);
    check_renewed(&d);
    EXPECT_EQ_U(P.nissued, 2); /* the issued certificate was reused */
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);
}

/* The registry after a renewal that ended without confirming its
 * certificate: the device is not revoked; its current-certificate fields
 * name the renewal's certificate (cert-issued made it current), not
 * confirmed by the card (docs/ota.md "Not yet": the projection keeps no previous
 * certificate); the certificates the log shows issued and not revoked
 * (what a decommission or device revocation revokes) are exactly `valid`. */
/*
 * After a renewal that did not complete, the registry's current certificate
 * is the one valid certificate (docs/registry.md, "Current certificate"):
 * the old one again, as the card returned it and with its key, when the
 * card kept its old key (the renewal's certificate revoked); the new one,
 * never returned by the card, when the new key is the card's (the old one
 * revoked). The device stays provisioned; the row is the fold of the log
 * and the rebuilt projection equals it.
 */
static void check_registry_after(struct dev *d, bool keeps_new)
{
    struct tc_registry_device rd, fold;
    EXPECT_OK(tc_registry_device_get(d->reg, d->eid, sizeof d->eid, &rd));
    EXPECT_EQ_U(rd.state, TC_REG_PROVISIONED);
    EXPECT_EQ_U(P.nissued, 2);
    struct tc_pki_device_info renewal;
    EXPECT_OK(tc_pki_check_device(P.issued[1], P.issued_len[1], &renewal));
    uint8_t cert_sha[32], pub_sha[32];
    if (keeps_new) {
        EXPECT_MEM(rd.cert_serial, rd.cert_serial_len, renewal.serial, renewal.serial_len);
        ota_fx_sha256(P.issued[1], P.issued_len[1], cert_sha);
        EXPECT_MEM(rd.cert_sha256, 32, cert_sha, 32);
        EXPECT(!rd.cert_stored);
    } else {
        EXPECT_MEM(rd.cert_serial, rd.cert_serial_len, d->serial, sizeof d->serial);
        ota_fx_sha256(d->cert, d->cert_len, cert_sha);
        EXPECT_MEM(rd.cert_sha256, 32, cert_sha, 32);
        uint8_t spki[91];
        ota_fx_spki_of(d->pub, spki);
        ota_fx_sha256(spki, sizeof spki, pub_sha);
        EXPECT_MEM(rd.pubkey_sha256, 32, pub_sha, 32);
        EXPECT_MEM(rd.cert_pubkey_sha256, 32, pub_sha, 32);
        EXPECT(rd.cert_stored);
    }
    EXPECT(!rd.cert_revoked);
    EXPECT_EQ_U(rd.n_prev, 0);
    EXPECT_OK(
        tc_registry_device_at(d->reg, d->eid, sizeof d->eid, UINT64_MAX, &fold, NULL, 0, NULL));
    EXPECT_MEM(&fold, sizeof fold, &rd, sizeof rd);
    EXPECT_OK(tc_registry_check(d->reg, NULL, NULL));
    /* The log's only valid certificate is that one. */
    struct tc_ota_cert_ref refs[TC_OTA_CERTS_MAX];
    size_t n = 0;
    EXPECT_OK(tc_ota_unrevoked_certs(d->reg, d->eid, sizeof d->eid, refs, TC_OTA_CERTS_MAX, &n));
    EXPECT_EQ_U(n, 1);
    EXPECT_MEM(refs[0].serial, refs[0].serial_len, rd.cert_serial, rd.cert_serial_len);
    EXPECT_MEM(refs[0].sha256, 32, rd.cert_sha256, 32);
}

/* After a renewal the card did not take, the old certificate is current and
 * stored again, so a new renew-cert is accepted and completes: the log then
 * leaves exactly its certificate valid, and the registry says so. */
static void renew_again(struct dev *d)
{
    struct tc_audit_event q;
    memset(&q, 0, sizeof q);
    q.type = TC_AUDIT_OP_QUEUED;
    q.fields = TC_AUDIT_HAS_OP_KIND;
    q.op_kind = TC_OTA_OP_RENEW_CERT;
    uint64_t id = 0;
    memset(&d->op, 0, sizeof d->op);
    log_events(d, &q, 1, &id);
    d->op.id = id;
    d->op.code = TC_OTA_OP_RENEW_CERT;
    d->op.status = TC_OTA_OP_PENDING;
    link_reconnect(&d->l);
    struct plan pl = plan_none();
    EXPECT_EQ_U(run_op(d, &pl), OUT_DONE);
    EXPECT_EQ_U(P.nissued, 3);
    struct tc_pki_device_info third;
    EXPECT_OK(tc_pki_check_device(P.issued[2], P.issued_len[2], &third));
    bool valid = false;
    EXPECT_EQ_U(ota_fx_pki_valid(&P, P.issued[2], P.issued_len[2], &valid), 1);
    EXPECT(valid);
    EXPECT(ota_fx_pki_is_revoked(&P, d->serial, sizeof d->serial));
    struct tc_registry_device rd;
    EXPECT_OK(tc_registry_device_get(d->reg, d->eid, sizeof d->eid, &rd));
    EXPECT_EQ_U(rd.state, TC_REG_PROVISIONED);
    EXPECT_MEM(rd.cert_serial, rd.cert_serial_len, third.serial, third.serial_len);
    EXPECT(rd.cert_stored && !rd.cert_revoked && rd.n_prev == 0);
    struct tc_ota_cert_ref refs[TC_OTA_CERTS_MAX];
    size_t n = 0;
    EXPECT_OK(tc_ota_unrevoked_certs(d->reg, d->eid, sizeof d->eid, refs, TC_OTA_CERTS_MAX, &n));
    EXPECT_EQ_U(n, 1);
    EXPECT_MEM(refs[0].serial, refs[0].serial_len, third.serial, third.serial_len);
    EXPECT_OK(tc_registry_check(d->reg, NULL, NULL));
}

static void test_rejections(void)
{
    struct dev d;
    struct plan pl;
    /* No services: fails before it touches the card. */
    reset_pki_lists();
    if (!device_new(&d, "nosvc"))
        return;
    pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_FAILED);
    EXPECT_EQ_U(pl.reason, TC_OTA_FAIL_UNSUPPORTED);
    EXPECT_EQ_U(pl.actions, 0);
    struct seen s = seen_of(&d);
    EXPECT_EQ_U(s.failed, 1);
    EXPECT_EQ_U(s.steps, 0);
    device_free(&d);

    /* A bad proof of possession: nothing is issued. */
    reset_pki_lists();
    if (!device_new(&d, "pop"))
        return;
    attach(&d);
    pl = plan_none();
    pl.tamper_pop = true;
    EXPECT_EQ_U(run_op(&d, &pl), OUT_FAILED);
    EXPECT_EQ_U(pl.reason, TC_OTA_FAIL_CARD);
    EXPECT_EQ_U(P.nissued, 1); /* the line's only */
    EXPECT_EQ_U(P.nrevoked, 0);
    s = seen_of(&d);
    EXPECT_EQ_U(s.issued, 0);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);

    /* The issue service fails: the operation stays pending (the dialog is
     * aborted) and the next connection completes it. */
    reset_pki_lists();
    if (!device_new(&d, "hsm"))
        return;
    attach(&d);
    P.fail_issue = true;
    pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_ERROR);
    EXPECT_EQ_U(d.op.status, TC_OTA_OP_PENDING);
    link_reconnect(&d.l);
    pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_DONE);
    check_renewed(&d);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);

    /* The card's pending key changed under an issued certificate (another
     * GENERATE KEY P1 02 after the STORE intent): the certificate can never
     * be stored, so it is revoked and the operation fails; the device keeps
     * its old identity. */
    reset_pki_lists();
    if (!device_new(&d, "orphan"))
        return;
    attach(&d);
    pl = plan_none();
    pl.cut_appended = 2;
    EXPECT_EQ_U(run_op(&d, &pl), OUT_CUT);
    EXPECT_EQ_U(d.op.step, 2);
    link_reconnect(&d.l);
    EXPECT_OK(link_auth(&d.l, APPLET, sizeof APPLET));
    const uint8_t nonce[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    EXPECT_EQ_U(link_sendx(&d.l, TC_SE_ID_INS_GENERATE, 0x02, 0, nonce, sizeof nonce), 0x9000);
    link_reconnect(&d.l);
    pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_FAILED);
    EXPECT_EQ_U(pl.reason, TC_OTA_FAIL_STATE);
    bool old_valid = false;
    EXPECT_EQ_U(ota_fx_pki_valid(&P, d.cert, d.cert_len, &old_valid), 1);
    EXPECT(old_valid);
    s = seen_of(&d);
    EXPECT_EQ_U(s.revoked, 1);
    EXPECT_EQ_U(s.stored, 0);
    /* The log does not call the device revoked: its own certificate is not. */
    struct tc_registry_device rd;
    EXPECT_OK(tc_registry_device_get(d.reg, d.eid, sizeof d.eid, &rd));
    EXPECT(rd.state != TC_REG_REVOKED);
    check_registry_after(&d, false);
    renew_again(&d);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);

    /* A card that refuses: the applet is LOCKED (SELECT fails), so the
     * session cannot open. */
    reset_pki_lists();
    if (!device_new(&d, "locked"))
        return;
    attach(&d);
    EXPECT_OK(link_auth(&d.l, ISD, sizeof ISD));
    EXPECT_EQ_U(link_sendx(&d.l, 0xF0, 0x40, 0x80, APPLET, sizeof APPLET), 0x9000);
    link_reconnect(&d.l);
    pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_FAILED);
    EXPECT_EQ_U(pl.reason, TC_OTA_FAIL_AUTH);
    EXPECT_EQ_U(P.nissued, 1);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);
}

/* ------------------------------------------------------------------ read-back and STORE */

/* Whose identity the device holds after the renewal. */
enum keeps {
    KEEPS_RENEWED = 1, /* the renewal completed (check_renewed) */
    KEEPS_OLD,         /* the old key is active: the new certificate is revoked */
    KEEPS_NEW,         /* the new key is active: the new certificate stays valid, the old
                        * one is revoked as superseded */
};

enum { CHECK_READS = 1, CHECK_ROUNDS = 2, CHECK_ISSUED = 4, CHECK_REVOKED = 8 };

/* A renewal whose read-back differs or whose STORE CERTIFICATE is refused:
 * the damage done to the card's answers (struct plan), how the first run
 * ends and the checks that apply to it. */
struct scenario {
    const char *name;
    unsigned tamper_read, tamper_store;
    bool tamper_pub, cut_pub;
    /* OUT_ERROR: the dialog is aborted with the operation pending, nothing
     * revoked; the next connection resumes it from the log. */
    enum outcome first;
    uint16_t reason; /* OUT_FAILED: op-failed's reason */
    enum keeps keeps;
    unsigned checks;        /* which of the four counts below are checked (CHECK_*) */
    unsigned reads_left;    /* damaged GET CERTIFICATE answers left over */
    unsigned store_rounds;  /* STORE CERTIFICATE rounds started */
    unsigned long nissued;  /* certificates the batch CA issued (the line's included) */
    unsigned long nrevoked; /* serials it revoked */
    bool valid_by_old;      /* KEEPS_OLD/NEW: count the valid ones with the old certificate */
    bool log_revoked;       /* the log: one cert-revoked, no cert-stored */
    bool reg_state;         /* the registry does not call the device revoked */
    /* The card's active key is the new one (GET PUBLIC KEY), the log's
     * op-failed and revoked serial, and the registry's current certificate
     * (serial, key, not confirmed by the card) is the new one. */
    bool new_in_detail;
};

static void run_scenario_checks(const struct scenario *c);

/* A failed check names the scenario it belongs to. */
static void run_scenario(const struct scenario *c)
{
    int before = tc_test_failures_in_case;
    run_scenario_checks(c);
    if (tc_test_failures_in_case != before)
        printf("# scenario %s failed\n", c->name);
}

static void run_scenario_checks(const struct scenario *c)
{
    struct dev d;
    reset_pki_lists();
    if (!device_new(&d, c->name))
        return;
    attach(&d);
    struct plan pl = plan_none();
    pl.tamper_read = c->tamper_read;
    pl.tamper_store = c->tamper_store;
    pl.tamper_pub = c->tamper_pub;
    pl.cut_pub = c->cut_pub;
    EXPECT_EQ_U(run_op(&d, &pl), c->first);
    if (c->first == OUT_FAILED)
        EXPECT_EQ_U(pl.reason, c->reason);
    if (c->checks & CHECK_READS)
        EXPECT_EQ_U(pl.tamper_read, c->reads_left);
    if (c->checks & CHECK_ROUNDS)
        EXPECT_EQ_U(pl.store_round, c->store_rounds);
    if (c->checks & CHECK_REVOKED)
        EXPECT_EQ_U(P.nrevoked, c->nrevoked);
    if (c->first == OUT_ERROR) {
        EXPECT_EQ_U(d.op.status, TC_OTA_OP_PENDING);
        link_reconnect(&d.l);
        pl = plan_none();
        EXPECT_EQ_U(run_op(&d, &pl), OUT_DONE);
    }
    if (c->keeps == KEEPS_RENEWED)
        check_renewed(&d);
    if (c->checks & CHECK_ISSUED)
        EXPECT_EQ_U(P.nissued, c->nissued);
    if (c->keeps == KEEPS_RENEWED) {
        tc_ota_renew_detach(FAKE_ENGINE);
        device_free(&d);
        return;
    }
    bool keeps_new = c->keeps == KEEPS_NEW;
    EXPECT(ota_fx_pki_is_revoked(&P, d.serial, sizeof d.serial) == keeps_new);
    /* Exactly one valid certificate: the kept one. */
    const uint8_t *der = c->valid_by_old ? d.cert : P.issued[1];
    size_t der_len = c->valid_by_old ? d.cert_len : P.issued_len[1];
    bool der_valid = false;
    EXPECT_EQ_U(ota_fx_pki_valid(&P, der, der_len, &der_valid), 1);
    EXPECT(der_valid == (c->valid_by_old != keeps_new));
    struct tc_pki_device_info info;
    memset(&info, 0, sizeof info);
    if (keeps_new)
        EXPECT_OK(tc_pki_check_device(P.issued[1], P.issued_len[1], &info));
    uint8_t h[32];
    if (c->new_in_detail) {
        link_reconnect(&d.l);
        EXPECT_EQ_U(select_aid(&d.l, APPLET, sizeof APPLET), 0x9000);
        const uint8_t get_pub[] = {0x80, 0x42, 0x00, 0x00, 0x00};
        EXPECT_EQ_U(plain(&d.l, get_pub, sizeof get_pub), 0x9000);
        EXPECT(memcmp(ota_fx_resp + 2, d.pub, 65) != 0);
        uint8_t spki[91];
        ota_fx_spki_of(ota_fx_resp + 2, spki);
        ota_fx_sha256(spki, sizeof spki, h);
    }
    if (c->log_revoked) {
        struct seen s = seen_of(&d);
        EXPECT_EQ_U(s.revoked, 1);
        EXPECT_EQ_U(s.stored, 0);
        if (c->new_in_detail) {
            EXPECT_MEM(s.revoked_serial, TC_PKI_SERIAL_LEN, d.serial, sizeof d.serial);
            EXPECT_EQ_U(s.failed, 1);
        }
    }
    if (c->reg_state) {
        struct tc_registry_device rd;
        EXPECT_OK(tc_registry_device_get(d.reg, d.eid, sizeof d.eid, &rd));
        if (c->new_in_detail) {
            EXPECT_MEM(rd.cert_serial, rd.cert_serial_len, info.serial, info.serial_len);
            EXPECT_MEM(rd.pubkey_sha256, 32, h, 32);
            EXPECT(!rd.cert_stored);
        }
        EXPECT(rd.state != TC_REG_REVOKED);
    }
    check_registry_after(&d, keeps_new);
    if (!keeps_new)
        renew_again(&d);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);
}

/* The card's active key after a read-back that differs (GET PUBLIC KEY in
 * the same R-MAC'd session) decides what happens to the new certificate. */
static const struct scenario READBACK[] = {
    /* Differs once; the card proves the new key active: the same certificate is stored again
     * (not re-issued), read back, and the renewal completes. */
    {.name = "read-once",
     .tamper_read = 1,
     .first = OUT_DONE,
     .checks = CHECK_READS | CHECK_ISSUED,
     .keeps = KEEPS_RENEWED,
     .reads_left = 0,
     .nissued = 2},
    /* Differs every time; the new key is active, so the old private key is gone: the
     * operation fails with the NEW certificate valid (and the card's key), the old one
     * revoked as superseded, after three stores (the first and two retries). */
    {.name = "read-always",
     .tamper_read = 1000,
     .first = OUT_FAILED,
     .reason = TC_OTA_FAIL_READBACK,
     .checks = CHECK_READS | CHECK_ISSUED | CHECK_REVOKED,
     .keeps = KEEPS_NEW,
     .reads_left = 1000 - 3,
     .nissued = 2,
     .nrevoked = 1,
     .log_revoked = true,
     .reg_state = true,
     .new_in_detail = true},
    /* Differs, and the answer proves nothing (a truncated key): no decision, the dialog is
     * aborted with the operation pending; the next run resumes from the log (intent 2), finds
     * the new key active, reads the certificate back and completes. */
    {.name = "read-unproved",
     .tamper_read = 1,
     .cut_pub = true,
     .first = OUT_ERROR,
     .checks = CHECK_ISSUED | CHECK_REVOKED,
     .keeps = KEEPS_RENEWED,
     .nissued = 2,
     .nrevoked = 0},
    /* Differs, and the card answers another active key: the new certificate is not the
     * card's, so it is revoked and the old one is not. */
    {.name = "read-other",
     .tamper_read = 1,
     .tamper_pub = true,
     .first = OUT_FAILED,
     .reason = TC_OTA_FAIL_READBACK,
     .checks = CHECK_ISSUED | CHECK_REVOKED,
     .keeps = KEEPS_OLD,
     .nissued = 2,
     .nrevoked = 1,
     .log_revoked = true,
     .reg_state = true},
};

/* A STORE CERTIFICATE the card refuses is decided the same way. */
static const struct scenario STORE_REFUSED[] = {
    /* Refused before the promotion: the old key is still active, so the new certificate is
     * revoked and the device keeps its old one. */
    {.name = "store-refused",
     .tamper_store = 1,
     .first = OUT_FAILED,
     .reason = TC_OTA_FAIL_CARD,
     .checks = CHECK_ROUNDS,
     .keeps = KEEPS_OLD,
     .store_rounds = 1,
     .valid_by_old = true,
     .log_revoked = true},
    /* After the promotion (a read-back that differed) the first re-store is refused, the
     * second succeeds: the renewal completes. */
    {.name = "restore-once",
     .tamper_read = 1,
     .tamper_store = 2,
     .first = OUT_DONE,
     .checks = CHECK_ROUNDS,
     .keeps = KEEPS_RENEWED,
     .store_rounds = 3},
    /* After the promotion every re-store is refused: the new certificate is kept valid, the
     * old one revoked, the operation failed. */
    {.name = "restore-never",
     .tamper_read = 1,
     .tamper_store = 6,
     .first = OUT_FAILED,
     .reason = TC_OTA_FAIL_READBACK,
     .checks = CHECK_ROUNDS,
     .keeps = KEEPS_NEW,
     .store_rounds = 3},
};

static void test_readback(void)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(READBACK); i++)
        run_scenario(&READBACK[i]);
}

static void test_store_refused(void)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(STORE_REFUSED); i++)
        run_scenario(&STORE_REFUSED[i]);
}

/* A revoked device (its certificate on the batch CRL before the renewal
 * was queued) is not renewed; nothing reaches the card. */
static void test_revoked_device(void)
{
    struct dev d;
    reset_pki_lists();
    if (!device_new(&d, "revoked"))
        return;
    struct tc_audit_event ev[2];
    memset(ev, 0, sizeof ev);
    ev[0].type = TC_AUDIT_CERT_REVOKED;
    ev[0].fields = TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON;
    memcpy(ev[0].cert_serial, d.serial, sizeof d.serial);
    ev[0].cert_serial_len = sizeof d.serial;
    ev[0].reason = 1; /* keyCompromise */
    uint64_t first = 0;
    uint64_t queued = d.op.id;
    d.op.id = 0; /* the revocation belongs to no operation */
    log_events(&d, ev, 1, &first);
    ev[1].type = TC_AUDIT_OP_QUEUED;
    ev[1].fields = TC_AUDIT_HAS_OP_KIND;
    ev[1].op_kind = TC_OTA_OP_RENEW_CERT;
    log_events(&d, &ev[1], 1, &first);
    EXPECT(first > queued);
    d.op.id = first;
    attach(&d);
    struct plan pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_FAILED);
    EXPECT_EQ_U(pl.reason, TC_OTA_FAIL_STATE);
    EXPECT_EQ_U(pl.actions, 0);
    EXPECT_EQ_U(P.nissued, 1);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);
}

/* A device with no certificate on the log has nothing to renew. */
static void test_nothing_to_renew(void)
{
    struct dev d;
    reset_pki_lists();
    memset(&d, 0, sizeof d);
    (void)snprintf(d.dir, sizeof d.dir, "/tmp/tc-ota-renew-XXXXXX");
    if (mkdtemp(d.dir) == NULL || !link_open(&d.l))
        return;
    char path[128];
    (void)snprintf(path, sizeof path, "%s/none.db", d.dir);
    EXPECT_OK(tc_registry_open(path, NULL, &d.reg));
    size_t el = 0;
    EXPECT_OK(tc_hex_decode(EID, 32, 0, d.eid, sizeof d.eid, &el));
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_CARD_RECEIVED;
    ev.fields = TC_AUDIT_HAS_LIFECYCLE;
    ev.lifecycle = TC_SE_LC_OP_READY;
    log_events(&d, &ev, 1, NULL);
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_OP_QUEUED;
    ev.fields = TC_AUDIT_HAS_OP_KIND;
    ev.op_kind = TC_OTA_OP_RENEW_CERT;
    uint64_t id = 0;
    log_events(&d, &ev, 1, &id);
    d.op.id = id;
    d.op.status = TC_OTA_OP_PENDING;
    attach(&d);
    struct plan pl = plan_none();
    EXPECT_EQ_U(run_op(&d, &pl), OUT_FAILED);
    EXPECT_EQ_U(pl.reason, TC_OTA_FAIL_STATE);
    EXPECT_EQ_U(pl.actions, 0);
    tc_ota_renew_detach(FAKE_ENGINE);
    device_free(&d);
}

static void test_attach(void)
{
    struct tc_ota_cert_services bad = {
        .reg = NULL, .issue = ota_fx_svc_issue, .revoke = ota_fx_svc_revoke};
    EXPECT_ERR(tc_ota_renew_attach(FAKE_ENGINE, &bad), TC_ERR_ARG);
    EXPECT_ERR(tc_ota_renew_attach(NULL, &SVC), TC_ERR_ARG);
    tc_error_clear();
}

static void setup(void)
{
    EXPECT(ota_fx_pki_setup(&P, BATCH, PREFIX));
}

static void teardown(void)
{
    ota_fx_pki_free(&P);
}

static const struct tc_test_case cases[] = {
    {"setup", setup},
    {"renew", test_renew},
    {"interrupted", test_interrupted},
    {"interrupted_twice", test_interrupted_twice},
    {"rejections", test_rejections},
    {"readback", test_readback},
    {"store_refused", test_store_refused},
    {"nothing_to_renew", test_nothing_to_renew},
    {"revoked_device", test_revoked_device},
    {"attach", test_attach},
    {"teardown", teardown},
};

TC_TEST_MAIN("ota_renew", cases)
