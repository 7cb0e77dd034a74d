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
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <trustchain/crypto.h>
#include <trustchain/hsm.h>
#include <trustchain/ota.h>
#include <trustchain/ota_ops.h>
#include <trustchain/ota_renew.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "harness.h"

#define TOKEN    "tc-ota-renew-test"
#define SO_PIN   "so-pin-renew-1234"
#define USER_PIN "user-pin-renew-5678"
#define EID1     "89049032123451234512345678901235"
#define BATCH    "B-2026-11-E"
#define PREFIX   "890490321234"
#define MFR      "Acme Devices"
#define DAY      86400

static const uint8_t M_LINE[16] = {0x1F, 0x2E, 0x3D, 0x4C, 0x5B, 0x6A, 0x79, 0x88,
                                   0x97, 0xA6, 0xB5, 0xC4, 0xD3, 0xE2, 0xF1, 0x00};
static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t APPLET[] = {TC_SE_IDENTITY_AID};

static char tmpdir[256];
static struct tc_hsm *H;
static struct tc_hsm_workspace ws;
static unsigned db_seq;

/* ------------------------------------------------------------------ HSM and keys */

static struct tc_hsm *hsm(void)
{
    if (H != NULL)
        return H;
    (void)snprintf(tmpdir, sizeof tmpdir, "/tmp/tc-ota-renew-e-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        EXPECT(false);
        return NULL;
    }
    char wsdir[300];
    (void)snprintf(wsdir, sizeof wsdir, "%s/ws", tmpdir);
    EXPECT_OK(tc_hsm_workspace_create(wsdir, NULL, TOKEN, &ws));
    EXPECT_OK(tc_hsm_init_token(ws.module_path, ws.softhsm_conf, TOKEN, SO_PIN, strlen(SO_PIN),
                                USER_PIN, strlen(USER_PIN)));
    struct tc_hsm_config c = {.module_path = ws.module_path,
                              .softhsm_conf = ws.softhsm_conf,
                              .token_label = TOKEN,
                              .pin = USER_PIN,
                              .pin_len = strlen(USER_PIN),
                              .pool_size = 2};
    EXPECT_OK(tc_hsm_open(&c, &H));
    tc_hsm_obj o = 0;
    EXPECT_OK(tc_hsm_master_import(H, "line", M_LINE, sizeof M_LINE, &o));
    return H;
}

/* docs/hsm.md: key t = AES-ECB(master, D(t, 1)); KCV = AES(key, 16 x 01). */
static bool ref_keys(uint8_t k[3][16], uint8_t kcv[3][3])
{
    uint8_t bcd[TC_PKI_EID_BCD_LEN], d[16], ones[16], out[16];
    memset(ones, 0x01, sizeof ones);
    if (tc_pki_eid_to_bcd(EID1, bcd) != TC_OK)
        return false;
    for (uint8_t t = 1; t <= 3; t++)
        if (tc_hsm_diversify_block(bcd, t, 16, 1, d) != TC_OK ||
            tc_aes_ecb_encrypt(M_LINE, 16, d, 16, k[t - 1]) != TC_OK ||
            tc_aes_ecb_encrypt(k[t - 1], 16, ones, 16, out) != TC_OK)
            return false;
        else
            memcpy(kcv[t - 1], out, 3);
    return true;
}

/* ------------------------------------------------------------------ PKI and services */

#define CERTS_MAX 16u

static struct {
    struct tc_signer root_key, batch_key;
    struct tc_buf root, batch;
    struct tc_pki_issuer *root_iss, *batch_iss;
    int64_t t0;
    uint8_t issued[CERTS_MAX][TC_SE_MAX_CERT];
    size_t issued_len[CERTS_MAX];
    size_t nissued;
    uint8_t revoked[CERTS_MAX][TC_PKI_SERIAL_LEN];
    size_t nrevoked;
} P;

static bool pki_setup(void)
{
    P.t0 = ((int64_t)time(NULL) / DAY - 30) * DAY;
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    tc_buf_init_heap(&P.root, 1u << 16);
    tc_buf_init_heap(&P.batch, 1u << 16);
    struct tc_pki_root_params rp = {.common_name = "Acme Device Root CA",
                                    .organization = MFR,
                                    .not_before = P.t0,
                                    .not_after = P.t0 + 7300 * DAY};
    struct tc_pki_batch_params bp = {.batch_id = BATCH,
                                     .eid_prefix = PREFIX,
                                     .manufacturer = MFR,
                                     .not_before = P.t0,
                                     .not_after = P.t0 + 3650 * DAY};
    bool ok = tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &P.root_key) == TC_OK &&
              tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &P.batch_key) == TC_OK &&
              tc_pki_root_create(&P.root_key, &rp, &P.root) == TC_OK &&
              tc_pki_issuer_new(&P.root_key, P.root.data, P.root.len, &P.root_iss) == TC_OK &&
              P.batch_key.public_key(P.batch_key.ctx, spki, sizeof spki, &sl) == TC_OK &&
              tc_pki_batch_ca_create(P.root_iss, spki, sl, &bp, &P.batch) == TC_OK &&
              tc_pki_issuer_new(&P.batch_key, P.batch.data, P.batch.len, &P.batch_iss) == TC_OK;
    EXPECT(ok);
    return ok;
}

static tc_err issue_one(const struct tc_pki_device_req *r, struct tc_buf *der)
{
    uint8_t serial[TC_PKI_SERIAL_LEN];
    TC_GUARD(tc_pki_device_issue(P.batch_iss, r, der, serial));
    TC_ENSURE(P.nissued < CERTS_MAX && der->len <= TC_SE_MAX_CERT, TC_ERR_RANGE);
    memcpy(P.issued[P.nissued], der->data, der->len);
    P.issued_len[P.nissued++] = der->len;
    return TC_OK;
}

static tc_err svc_issue(void *arg, const struct tc_ota_cert_request *rq, struct tc_buf *der)
{
    (void)arg;
    struct tc_pki_device_req r = {.eid = rq->eid,
                                  .spki = rq->spki,
                                  .spki_len = rq->spki_len,
                                  .nonce = rq->nonce,
                                  .pop = rq->pop,
                                  .pop_len = rq->pop_len,
                                  .station_id = "ota-server",
                                  .production_time = P.t0};
    return issue_one(&r, der);
}

static bool is_revoked(const uint8_t *serial)
{
    for (size_t i = 0; i < P.nrevoked; i++)
        if (memcmp(P.revoked[i], serial, TC_PKI_SERIAL_LEN) == 0)
            return true;
    return false;
}

static tc_err svc_revoke(void *arg, const char *batch, const uint8_t *serial, size_t len,
                         uint16_t reason)
{
    (void)arg;
    (void)reason;
    TC_ENSURE(strcmp(batch, BATCH) == 0 && len == TC_PKI_SERIAL_LEN, TC_ERR_ARG);
    if (is_revoked(serial))
        return TC_OK;
    TC_ENSURE(P.nrevoked < CERTS_MAX, TC_ERR_RANGE);
    memcpy(P.revoked[P.nrevoked++], serial, len);
    return TC_OK;
}

/* How many of the device's certificates pass RFC 5280 validation with the
 * batch CRL of the revoked serials, and whether `der` is one of them. */
static size_t valid_certs(const uint8_t *der, size_t der_len, bool *der_valid)
{
    struct tc_pki_revoked list[CERTS_MAX];
    memset(list, 0, sizeof list);
    for (size_t i = 0; i < P.nrevoked; i++) {
        memcpy(list[i].serial, P.revoked[i], TC_PKI_SERIAL_LEN);
        list[i].serial_len = TC_PKI_SERIAL_LEN;
        list[i].revoked_at = P.t0 + DAY;
        list[i].reason = 4;
    }
    struct tc_buf rcrl, bcrl;
    tc_buf_init_heap(&rcrl, 1u << 16);
    tc_buf_init_heap(&bcrl, 1u << 16);
    EXPECT_OK(tc_pki_crl_create(P.root_iss, 1, P.t0 + DAY, P.t0 + 400 * DAY, NULL, 0, &rcrl));
    EXPECT_OK(
        tc_pki_crl_create(P.batch_iss, 1, P.t0 + DAY, P.t0 + 400 * DAY, list, P.nrevoked, &bcrl));
    size_t valid = 0;
    *der_valid = false;
    for (size_t i = 0; i < P.nissued; i++) {
        struct tc_pki_chain c = {.root = P.root.data,
                                 .root_len = P.root.len,
                                 .batch = P.batch.data,
                                 .batch_len = P.batch.len,
                                 .device = P.issued[i],
                                 .device_len = P.issued_len[i],
                                 .root_crl = rcrl.data,
                                 .root_crl_len = rcrl.len,
                                 .batch_crl = bcrl.data,
                                 .batch_crl_len = bcrl.len};
        char reason[160];
        if (tc_pki_verify(&c, reason, sizeof reason) == TC_OK) {
            valid++;
            if (der_len == P.issued_len[i] && memcmp(der, P.issued[i], der_len) == 0)
                *der_valid = true;
        }
        tc_error_clear();
    }
    tc_buf_free(&rcrl);
    tc_buf_free(&bcrl);
    return valid;
}

/* ------------------------------------------------------------------ the fixture */

struct fx {
    struct tc_registry *reg;
    struct tc_se_card *card;
    struct tc_transport t;
    struct tc_ota_ops *e;
    struct tc_ota_app app;
    struct tc_ota_cert_services svc;
    uint8_t eid[16];
    char wsdir[300];
    uint8_t old_serial[TC_PKI_SERIAL_LEN];
    uint8_t old_pub[TC_SE_EC_PUB_LEN];
};

static uint8_t RESP[TC_SE_MAX_RESPONSE];
static size_t RESP_LEN;

static uint16_t plain(struct fx *f, const uint8_t *cmd, size_t n)
{
    size_t rl = 0;
    if (f->t.transmit(f->t.ctx, cmd, n, RESP, sizeof RESP, &rl) != TC_OK || rl < 2) {
        tc_error_clear();
        return 0;
    }
    RESP_LEN = rl - 2;
    return (uint16_t)(RESP[rl - 2] << 8 | RESP[rl - 1]);
}

static uint16_t sm(struct tc_scp03_host *h, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *d,
                   size_t lc)
{
    struct tc_apdu a = {.cla = 0x80,
                        .ins = ins,
                        .p1 = p1,
                        .p2 = p2,
                        .data = d,
                        .lc = lc,
                        .has_le = true,
                        .le = 256};
    size_t n = 0;
    uint16_t sw = 0;
    if (tc_scp03_host_transmit(h, &a, RESP, sizeof RESP, &n, &sw) != TC_OK) {
        tc_error_clear();
        return 0;
    }
    RESP_LEN = n;
    return sw;
}

static void spki_of(const uint8_t pub[65], uint8_t out[91])
{
    static const uint8_t prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    memcpy(out, prefix, sizeof prefix);
    memcpy(out + sizeof prefix, pub, 65);
}

static void sha(const uint8_t *p, size_t n, uint8_t out[32])
{
    struct tc_iov iov = {.p = p, .len = n};
    EXPECT_OK(tc_sha256_iov(&iov, 1, out));
}

static void seed(struct fx *f, struct tc_audit_event *ev)
{
    ev->time_ms = 1700000000000ull;
    ev->fields |= TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR;
    memcpy(ev->eid, f->eid, 16);
    ev->eid_len = 16;
    (void)snprintf(ev->batch, sizeof ev->batch, "%s", BATCH);
    (void)snprintf(ev->station, sizeof ev->station, "%s", "line-1");
    (void)snprintf(ev->actor, sizeof ev->actor, "%s", "op");
    EXPECT_OK(tc_registry_append(f->reg, ev, NULL));
}

/* A device as the line leaves it: keyset 01 from master "line", a key pair
 * and certificate by the batch CA, SECURED; the registry says the same. */
static bool setup(struct fx *f)
{
    memset(f, 0, sizeof *f);
    P.nissued = P.nrevoked = 0;
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return false;
    (void)snprintf(f->wsdir, sizeof f->wsdir, "%s/ws", tmpdir);
    char path[400];
    (void)snprintf(path, sizeof path, "%s/reg-%u.db", tmpdir, ++db_seq);
    EXPECT_OK(tc_registry_open(path, NULL, &f->reg));
    if (f->reg == NULL)
        return false;
    uint8_t k[3][16], kcv[3][3];
    EXPECT(ref_keys(k, kcv));
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
    struct tc_scp03_host host;
    tc_scp03_mem_provider_init(&m, &kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x01, k[0], k[1], k[2], 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&m, &ks));
    /* The identity: GENERATE KEY, certificate, STORE CERTIFICATE. */
    uint8_t sel[6 + sizeof APPLET] = {0x00, 0xA4, 0x04, 0x00, sizeof APPLET};
    memcpy(sel + 5, APPLET, sizeof APPLET);
    EXPECT_EQ_U(plain(f, sel, sizeof sel), 0x9000);
    struct tc_scp03_host_config c = {
        .kvn = 0x01, .level = 0x33, .aid = ISD, .aid_len = sizeof ISD, .select = false};
    EXPECT_OK(tc_scp03_host_open(&host, &f->t, &kp, &c));
    uint8_t nonce[TC_PKI_NONCE_LEN] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    EXPECT_EQ_U(sm(&host, TC_SE_ID_INS_GENERATE, 0, 0, nonce, sizeof nonce), 0x9000);
    memcpy(f->old_pub, RESP + 2, 65);
    uint8_t spki[91], pop[80];
    size_t pop_len = RESP[68];
    memcpy(pop, RESP + 69, pop_len < sizeof pop ? pop_len : sizeof pop);
    spki_of(f->old_pub, spki);
    struct tc_pki_device_req r = {.eid = EID1,
                                  .spki = spki,
                                  .spki_len = sizeof spki,
                                  .nonce = nonce,
                                  .pop = pop,
                                  .pop_len = pop_len,
                                  .station_id = "line-1",
                                  .production_time = P.t0};
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    EXPECT_OK(issue_one(&r, &der));
    struct tc_pki_device_info info;
    EXPECT_OK(tc_pki_check_device(der.data, der.len, &info));
    memcpy(f->old_serial, info.serial, sizeof f->old_serial);
    struct tc_apdu st = {
        .cla = 0x80, .ins = TC_SE_ID_INS_STORE_CERT, .p1 = 0x80, .data = der.data, .lc = der.len};
    size_t n = 0;
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_host_transmit(&host, &st, RESP, sizeof RESP, &n, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    tc_scp03_host_close(&host);
    /* OP_READY -> INITIALIZED -> SECURED. */
    c.select = true;
    EXPECT_OK(tc_scp03_host_open(&host, &f->t, &kp, &c));
    EXPECT_EQ_U(sm(&host, 0xF0, 0x80, 0x07, NULL, 0), 0x9000);
    EXPECT_EQ_U(sm(&host, 0xF0, 0x80, 0x0F, NULL, 0), 0x9000);
    tc_scp03_host_close(&host);
    tc_scp03_mem_provider_wipe(&m);
    tc_scp03_keyset_wipe(&ks);
    tc_se_params_wipe(&p);

    uint8_t cert_sha[32], pub_sha[32], back[32];
    sha(der.data, der.len, cert_sha);
    sha(spki, sizeof spki, pub_sha);
    EXPECT_OK(tc_registry_cert_put(f->reg, der.data, der.len, back));
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_INJECTION_CONFIRMED;
    ev.fields = TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV;
    ev.kvn = 0x01;
    memcpy(ev.kcv, kcv, sizeof ev.kcv);
    seed(f, &ev);
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_CERT_ISSUED;
    ev.fields = TC_AUDIT_HAS_PUBKEY_SHA256 | TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
    memcpy(ev.pubkey_sha256, pub_sha, 32);
    memcpy(ev.cert_serial, f->old_serial, sizeof f->old_serial);
    ev.cert_serial_len = sizeof f->old_serial;
    memcpy(ev.cert_sha256, cert_sha, 32);
    seed(f, &ev);
    ev.type = TC_AUDIT_CERT_STORED;
    ev.fields = TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
    seed(f, &ev);
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_LIFECYCLE_CHANGED;
    ev.fields = TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
    ev.lifecycle = 0x0F;
    ev.prev_lifecycle = 0x07;
    seed(f, &ev);
    tc_buf_free(&der);
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
    struct tc_ota_ops_config cfg = {
        .reg = f->reg, .hsm = H, .workspace = f->wsdir, .default_master = "line", .fault = fault};
    EXPECT_OK(tc_ota_ops_new(&cfg, &f->e, &f->app));
    if (f->e == NULL)
        return false;
    f->svc = (struct tc_ota_cert_services){
        .arg = NULL, .reg = f->reg, .issue = svc_issue, .revoke = svc_revoke};
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
    struct tc_ota_queue_request rq = {
        .eid = EID1, .code = TC_OTA_OP_RENEW_CERT, .actor = "operator", .workspace = f->wsdir};
    uint64_t id = 0;
    EXPECT_OK(tc_ota_queue_add(f->reg, &rq, &id));
}

enum dialog_end { D_DONE = 1, D_DROPPED, D_ABORTED };

/* One Amendment B dialog (the test is server loop and agent): drop_after >
 * 0 drops the connection after that many scripts ran on the card; tamper >
 * 0 flips a byte of the response to that script. */
static enum dialog_end dialog(struct fx *f, unsigned drop_after, unsigned tamper, unsigned *scripts)
{
    struct tc_buf script, resp;
    tc_buf_init_heap(&script, 1u << 16);
    tc_buf_init_heap(&resp, 1u << 16);
    enum dialog_end end = D_ABORTED;
    unsigned n = 0;
    struct tc_ota_admin_in in = {.eid = EID1, .step = 0, .status = TC_OTA_STATUS_NONE};
    for (;;) {
        tc_buf_reset(&script);
        tc_err rc = f->app.next(f->app.ctx, &in, &script);
        if (rc != TC_OK) {
            tc_error_clear();
            f->app.end(f->app.ctx, EID1, false);
            end = D_ABORTED;
            break;
        }
        if (script.len == 0) {
            f->app.end(f->app.ctx, EID1, true);
            end = D_DONE;
            break;
        }
        tc_buf_reset(&resp);
        EXPECT_OK(tc_ota_agent_run_script(&f->t, script.data, script.len, &resp));
        n++;
        if (drop_after != 0 && n == drop_after) {
            f->app.end(f->app.ctx, EID1, false);
            end = D_DROPPED;
            break;
        }
        if (tamper != 0 && n == tamper && resp.len > 4)
            resp.data[resp.len - 3] ^= 0x01;
        in.step++;
        in.status = TC_OTA_STATUS_OK;
        in.response = resp.data;
        in.response_len = resp.len;
    }
    if (scripts != NULL)
        *scripts = n;
    tc_buf_free(&script);
    tc_buf_free(&resp);
    return end;
}

/* ------------------------------------------------------------------ checks */

struct counts {
    unsigned by_type[0x30];
};

static tc_err count_one(void *arg, uint64_t index, const struct tc_audit_event *ev,
                        const uint8_t *event, size_t len)
{
    struct counts *c = arg;
    (void)index;
    (void)event;
    (void)len;
    if ((unsigned)ev->type < 0x30)
        c->by_type[ev->type]++;
    return TC_OK;
}

static struct counts count(struct fx *f)
{
    struct counts c;
    memset(&c, 0, sizeof c);
    EXPECT_OK(tc_registry_device_history(f->reg, f->eid, 16, count_one, &c));
    return c;
}

static void check_renewed(struct fx *f, const char *what)
{
    struct tc_se_info info;
    EXPECT_OK(tc_se_card_describe(f->card, &info));
    EXPECT(info.has_key && info.has_cert && !info.has_pending);
    EXPECT(memcmp(info.public_key, f->old_pub, 65) != 0);
    EXPECT_EQ_U(info.life_cycle, TC_SE_LC_SECURED);
    uint8_t sel[6 + sizeof APPLET] = {0x00, 0xA4, 0x04, 0x00, sizeof APPLET};
    memcpy(sel + 5, APPLET, sizeof APPLET);
    EXPECT_EQ_U(plain(f, sel, sizeof sel), 0x9000);
    const uint8_t get_cert[] = {0x80, 0x46, 0x00, 0x00, 0x00, 0x00, 0x00};
    EXPECT_EQ_U(plain(f, get_cert, sizeof get_cert), 0x6282);
    bool card_valid = false;
    size_t valid = valid_certs(RESP, RESP_LEN, &card_valid);
    if (valid != 1 || !card_valid)
        tc_test_fail_at(__FILE__, __LINE__, "%s: %zu valid certificates, the card's %s", what,
                        valid, card_valid ? "valid" : "NOT valid");
    EXPECT(is_revoked(f->old_serial));
    struct tc_ota_queue q;
    EXPECT_OK(tc_ota_queue_load(f->reg, f->eid, 16, UINT64_MAX, &q));
    EXPECT_EQ_U(q.pending, 0);
    struct counts c = count(f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 0);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CERT_STORED], 2); /* the line's, the renewal's */
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CERT_REVOKED], 1);
    struct tc_registry_device d;
    EXPECT_OK(tc_registry_device_get(f->reg, f->eid, 16, &d));
    EXPECT_MEM(d.cert_sha256, 32, info.cert_sha256, 32);
    EXPECT(d.cert_stored);
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
    struct counts c = count(&f);
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
    EXPECT(pki_setup());
}

static void cleanup(void)
{
    tc_pki_issuer_free(P.root_iss);
    tc_pki_issuer_free(P.batch_iss);
    tc_signer_soft_free(&P.root_key);
    tc_signer_soft_free(&P.batch_key);
    tc_buf_free(&P.root);
    tc_buf_free(&P.batch);
    tc_hsm_close(H);
    H = NULL;
    if (tmpdir[0] != '\0') {
        char cmd[300];
        (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            EXPECT(false);
    }
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
