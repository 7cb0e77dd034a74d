/*
 * Shared fixture of the OTA tests: see ota_fixture.h.
 */
#include "ota_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/thread.h>

#include <trustchain/crypto.h>

#include "harness.h"
#include "pki/pki_int.h"

#define SO_PIN   "so-pin-ota-fx-1234"
#define USER_PIN "user-pin-ota-fx-5678"

static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t APPLET[] = {TC_SE_IDENTITY_AID};

/* ------------------------------------------------------------------ SoftHSM2 */

static char fx_dir[256];
static char fx_wsdir[300];
static struct tc_hsm *fx_hsm;
static struct tc_hsm_workspace fx_ws;

struct tc_hsm *ota_fx_hsm(const char *prefix, const char *token)
{
    if (fx_hsm != NULL)
        return fx_hsm;
    (void)snprintf(fx_dir, sizeof fx_dir, "/tmp/%s-XXXXXX", prefix);
    if (mkdtemp(fx_dir) == NULL) {
        fx_dir[0] = '\0';
        EXPECT(false);
        return NULL;
    }
    (void)snprintf(fx_wsdir, sizeof fx_wsdir, "%s/ws", fx_dir);
    EXPECT_OK(tc_hsm_workspace_create(fx_wsdir, NULL, token, &fx_ws));
    EXPECT_OK(tc_hsm_init_token(fx_ws.module_path, fx_ws.softhsm_conf, token, SO_PIN,
                                strlen(SO_PIN), USER_PIN, strlen(USER_PIN)));
    struct tc_hsm_config c = {.module_path = fx_ws.module_path,
                              .softhsm_conf = fx_ws.softhsm_conf,
                              .token_label = token,
                              .pin = USER_PIN,
                              .pin_len = strlen(USER_PIN),
                              .pool_size = 2};
    EXPECT_OK(tc_hsm_open(&c, &fx_hsm));
    return fx_hsm;
}

const char *ota_fx_dir(void)
{
    return fx_dir;
}

const char *ota_fx_wsdir(void)
{
    return fx_wsdir;
}

void ota_fx_master(const char *name, const uint8_t master[16])
{
    char label[96];
    tc_hsm_obj o = 0;
    if (fx_hsm == NULL) {
        EXPECT(false);
        return;
    }
    (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_MASTER, name);
    if (tc_hsm_find(fx_hsm, TC_HSM_KIND_SECRET, label, &o) == TC_OK)
        return;
    tc_error_clear();
    EXPECT_OK(tc_hsm_master_import(fx_hsm, name, master, 16, &o));
}

void ota_fx_hsm_cleanup(void)
{
    tc_hsm_close(fx_hsm);
    fx_hsm = NULL;
    if (fx_dir[0] != '\0') {
        char cmd[300];
        (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx_dir);
        EXPECT(system(cmd) == 0);
        fx_dir[0] = '\0';
    }
}

bool ota_fx_ref_keys(const uint8_t master[16], const char *eid, uint8_t k[3][16])
{
    uint8_t bcd[TC_PKI_EID_BCD_LEN], d[16];
    if (tc_pki_eid_to_bcd(eid, bcd) != TC_OK)
        return false;
    for (uint8_t t = 1; t <= 3; t++)
        if (tc_hsm_diversify_block(bcd, t, 16, 1, d) != TC_OK ||
            tc_aes_ecb_encrypt(master, 16, d, 16, k[t - 1]) != TC_OK)
            return false;
    return true;
}

bool ota_fx_ref_kcvs(const uint8_t master[16], const char *eid, uint8_t kcv[3][3])
{
    uint8_t k[3][16], ones[16], out[16];
    memset(ones, 0x01, sizeof ones);
    if (!ota_fx_ref_keys(master, eid, k))
        return false;
    for (int i = 0; i < 3; i++) {
        if (tc_aes_ecb_encrypt(k[i], 16, ones, 16, out) != TC_OK)
            return false;
        memcpy(kcv[i], out, 3);
    }
    return true;
}

/* ------------------------------------------------------------------ PKI */

bool ota_fx_pki_setup(struct ota_fx_pki *p, const char *batch, const char *prefix)
{
    memset(p, 0, sizeof *p);
    (void)snprintf(p->batch_id, sizeof p->batch_id, "%s", batch);
    p->t0 = ((int64_t)time(NULL) / OTA_FX_DAY - 30) * OTA_FX_DAY;
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    tc_buf_init_heap(&p->root, 1u << 16);
    tc_buf_init_heap(&p->batch, 1u << 16);
    struct tc_pki_root_params rp = {.common_name = "Acme Device Root CA",
                                    .organization = "Acme Devices",
                                    .not_before = p->t0,
                                    .not_after = p->t0 + 7300 * OTA_FX_DAY};
    struct tc_pki_batch_params bp = {.batch_id = p->batch_id,
                                     .eid_prefix = prefix,
                                     .manufacturer = "Acme Devices",
                                     .not_before = p->t0,
                                     .not_after = p->t0 + 3650 * OTA_FX_DAY};
    bool ok = tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &p->root_key) == TC_OK &&
              tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &p->batch_key) == TC_OK &&
              tc_pki_root_create(&p->root_key, &rp, &p->root) == TC_OK &&
              tc_pki_issuer_new(&p->root_key, p->root.data, p->root.len, &p->root_iss) == TC_OK &&
              p->batch_key.public_key(p->batch_key.ctx, spki, sizeof spki, &sl) == TC_OK &&
              tc_pki_batch_ca_create(p->root_iss, spki, sl, &bp, &p->batch) == TC_OK &&
              tc_pki_issuer_new(&p->batch_key, p->batch.data, p->batch.len, &p->batch_iss) == TC_OK;
    EXPECT(ok);
    return ok;
}

void ota_fx_pki_free(struct ota_fx_pki *p)
{
    tc_pki_issuer_free(p->root_iss);
    tc_pki_issuer_free(p->batch_iss);
    tc_signer_soft_free(&p->root_key);
    tc_signer_soft_free(&p->batch_key);
    tc_buf_free(&p->root);
    tc_buf_free(&p->batch);
    p->root_iss = p->batch_iss = NULL;
}

void ota_fx_pki_reset(struct ota_fx_pki *p)
{
    p->nissued = 0;
    p->nrevoked = 0;
    p->revoke_calls = 0;
    p->fail_issue = false;
}

tc_err ota_fx_pki_issue(struct ota_fx_pki *p, const struct tc_pki_device_req *r, struct tc_buf *der)
{
    uint8_t serial[TC_PKI_SERIAL_LEN];
    TC_GUARD(tc_pki_device_issue(p->batch_iss, r, der, serial));
    TC_ENSURE(p->nissued < OTA_FX_CERTS_MAX && der->len <= TC_SE_MAX_CERT, TC_ERR_RANGE);
    memcpy(p->issued[p->nissued], der->data, der->len);
    p->issued_len[p->nissued++] = der->len;
    return TC_OK;
}

bool ota_fx_pki_is_revoked(const struct ota_fx_pki *p, const uint8_t *serial, size_t len)
{
    for (size_t i = 0; i < p->nrevoked; i++)
        if (len == TC_PKI_SERIAL_LEN && memcmp(p->revoked[i], serial, len) == 0)
            return true;
    return false;
}

size_t ota_fx_pki_valid(struct ota_fx_pki *p, const uint8_t *der, size_t der_len, bool *der_valid)
{
    static struct tc_pki_revoked list[OTA_FX_CERTS_MAX];
    memset(list, 0, sizeof list);
    for (size_t i = 0; i < p->nrevoked; i++) {
        memcpy(list[i].serial, p->revoked[i], TC_PKI_SERIAL_LEN);
        list[i].serial_len = TC_PKI_SERIAL_LEN;
        list[i].revoked_at = p->t0 + OTA_FX_DAY;
        list[i].reason = 4;
    }
    struct tc_buf rcrl, bcrl;
    tc_buf_init_heap(&rcrl, 1u << 16);
    tc_buf_init_heap(&bcrl, 1u << 20);
    EXPECT_OK(tc_pki_crl_create(p->root_iss, 1, p->t0 + OTA_FX_DAY, p->t0 + 400 * OTA_FX_DAY, NULL,
                                0, &rcrl));
    EXPECT_OK(tc_pki_crl_create(p->batch_iss, 1, p->t0 + OTA_FX_DAY, p->t0 + 400 * OTA_FX_DAY, list,
                                p->nrevoked, &bcrl));
    size_t valid = 0;
    *der_valid = false;
    for (size_t i = 0; i < p->nissued; i++) {
        struct tc_pki_chain c = {.root = p->root.data,
                                 .root_len = p->root.len,
                                 .batch = p->batch.data,
                                 .batch_len = p->batch.len,
                                 .device = p->issued[i],
                                 .device_len = p->issued_len[i],
                                 .root_crl = rcrl.data,
                                 .root_crl_len = rcrl.len,
                                 .batch_crl = bcrl.data,
                                 .batch_crl_len = bcrl.len};
        char reason[160];
        if (tc_pki_verify(&c, reason, sizeof reason) == TC_OK) {
            valid++;
            if (der_len == p->issued_len[i] && memcmp(der, p->issued[i], der_len) == 0)
                *der_valid = true;
        }
        tc_error_clear();
    }
    tc_buf_free(&rcrl);
    tc_buf_free(&bcrl);
    return valid;
}

tc_err ota_fx_svc_issue(void *arg, const struct tc_ota_cert_request *rq, struct tc_buf *der)
{
    struct ota_fx_pki *p = arg;
    if (p->fail_issue) {
        p->fail_issue = false;
        return TC_FAIL(TC_ERR_IO, "test: the HSM is gone");
    }
    EXPECT_STR(rq->batch, p->batch_id);
    struct tc_pki_device_req r = {.eid = rq->eid,
                                  .spki = rq->spki,
                                  .spki_len = rq->spki_len,
                                  .nonce = rq->nonce,
                                  .pop = rq->pop,
                                  .pop_len = rq->pop_len,
                                  .station_id = "ota-server",
                                  .production_time = p->t0};
    return ota_fx_pki_issue(p, &r, der);
}

tc_err ota_fx_svc_revoke(void *arg, const char *batch, const uint8_t *serial, size_t len,
                         uint16_t reason)
{
    struct ota_fx_pki *p = arg;
    (void)reason;
    p->revoke_calls++;
    TC_ENSURE(strcmp(batch, p->batch_id) == 0 && len == TC_PKI_SERIAL_LEN, TC_ERR_ARG);
    if (ota_fx_pki_is_revoked(p, serial, len))
        return TC_OK; /* idempotent, as the service must be */
    TC_ENSURE(p->nrevoked < OTA_FX_CERTS_MAX, TC_ERR_RANGE);
    memcpy(p->revoked[p->nrevoked++], serial, len);
    return TC_OK;
}

bool ota_fx_device_cert(struct tc_pki_issuer *iss, int64_t production_time, const char *prefix,
                        unsigned number, struct tc_buf *der, uint8_t serial[TC_PKI_SERIAL_LEN])
{
    char eid[TC_PKI_EID_DIGITS + 1], digits[31];
    uint8_t nonce[TC_PKI_NONCE_LEN], spki[TC_SPKI_MAX], msg[TC_PKI_POP_MSG_LEN], pop[TC_SIG_MAX];
    uint8_t sn[TC_PKI_SERIAL_LEN];
    struct tc_pki_device_req r = {.eid = eid,
                                  .nonce = nonce,
                                  .station_id = "test-station",
                                  .production_time = production_time};
    struct tc_signer k;
    tc_buf_init_heap(der, TC_PKI_CERT_MAX);
    if (snprintf(digits, sizeof digits, "%s%0*u", prefix, (int)(30 - strlen(prefix)), number) !=
            30 ||
        tc_pki_eid_complete(digits, eid) != TC_OK || tc_random(nonce, sizeof nonce) != TC_OK ||
        tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &k) != TC_OK)
        return false;
    /* The PoP: the device key's signature over the EID, its SPKI and the
     * nonce (docs/pki.md). */
    r.spki = spki;
    r.pop = pop;
    bool ok = k.public_key(k.ctx, spki, sizeof spki, &r.spki_len) == TC_OK &&
              tc_pki_pop_message(eid, spki, r.spki_len, nonce, msg) == TC_OK &&
              k.sign(k.ctx, msg, sizeof msg, pop, sizeof pop, &r.pop_len) == TC_OK &&
              tc_pki_device_issue(iss, &r, der, serial != NULL ? serial : sn) == TC_OK;
    tc_signer_soft_free(&k);
    return ok;
}

bool ota_fx_crl_entry(const uint8_t *der, size_t len, int64_t at, struct tc_pki_revoked *e)
{
    /* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version,
     * serialNumber INTEGER, ... } ... } (RFC 5280 §4.1) */
    struct tc_cursor c, cert, tbs, version, serial;
    tc_cursor_init(&c, der, len);
    if (tc_pki_der_get(&c, DER_SEQUENCE, &cert) != TC_OK ||
        tc_pki_der_get(&cert, DER_SEQUENCE, &tbs) != TC_OK ||
        tc_pki_der_get(&tbs, DER_CTX0_C, &version) != TC_OK ||
        tc_pki_der_get(&tbs, DER_INTEGER, &serial) != TC_OK)
        return false;
    size_t n = tc_cursor_remaining(&serial);
    if (n == 0 || n > sizeof e->serial)
        return false;
    memset(e, 0, sizeof *e);
    memcpy(e->serial, serial.data + serial.pos, n);
    e->serial_len = n;
    e->revoked_at = at;
    e->reason = -1;
    return true;
}

/* ------------------------------------------------------------------ card */

uint8_t ota_fx_resp[TC_SE_MAX_RESPONSE];
size_t ota_fx_resp_len;

void ota_fx_spki_of(const uint8_t pub[TC_SE_EC_PUB_LEN], uint8_t out[91])
{
    static const uint8_t prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    memcpy(out, prefix, sizeof prefix);
    memcpy(out + sizeof prefix, pub, TC_SE_EC_PUB_LEN);
}

void ota_fx_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    struct tc_iov iov = {.p = p, .len = n};
    EXPECT_OK(tc_sha256_iov(&iov, 1, out));
}

uint16_t ota_fx_plain(struct tc_transport *t, const uint8_t *cmd, size_t n)
{
    size_t rl = 0;
    if (t->transmit(t->ctx, cmd, n, ota_fx_resp, sizeof ota_fx_resp, &rl) != TC_OK || rl < 2) {
        tc_error_clear();
        return 0;
    }
    ota_fx_resp_len = rl - 2;
    return (uint16_t)(ota_fx_resp[rl - 2] << 8 | ota_fx_resp[rl - 1]);
}

uint16_t ota_fx_select(struct tc_transport *t, const uint8_t *aid, size_t aid_len)
{
    uint8_t cmd[6 + 16] = {0x00, 0xA4, 0x04, 0x00, (uint8_t)aid_len};
    if (aid_len > 16)
        return 0;
    memcpy(cmd + 5, aid, aid_len);
    cmd[5 + aid_len] = 0x00;
    return ota_fx_plain(t, cmd, 6 + aid_len);
}

uint16_t ota_fx_sm(struct tc_scp03_host *h, uint8_t ins, uint8_t p1, uint8_t p2,
                   const uint8_t *data, size_t lc)
{
    struct tc_apdu a = {.cla = 0x80,
                        .ins = ins,
                        .p1 = p1,
                        .p2 = p2,
                        .data = data,
                        .lc = lc,
                        .has_le = true,
                        .le = 256};
    size_t n = 0;
    uint16_t sw = 0;
    if (tc_scp03_host_transmit(h, &a, ota_fx_resp, sizeof ota_fx_resp, &n, &sw) != TC_OK) {
        tc_error_clear();
        return 0;
    }
    ota_fx_resp_len = n;
    return sw;
}

bool ota_fx_card_identity(struct tc_transport *t, const struct tc_scp03_key_provider *kp,
                          uint8_t kvn, struct ota_fx_pki *p, const char *eid,
                          struct ota_fx_identity *id)
{
    memset(id, 0, sizeof *id);
    struct tc_scp03_host host;
    struct tc_scp03_host_config c = {
        .kvn = kvn, .level = 0x33, .aid = ISD, .aid_len = sizeof ISD, .select = false};
    /* The session's card challenge is computed over the ISD AID. */
    EXPECT_EQ_U(ota_fx_select(t, APPLET, sizeof APPLET), 0x9000);
    if (tc_scp03_host_open(&host, t, kp, &c) != TC_OK) {
        EXPECT(false);
        return false;
    }
    uint8_t nonce[TC_PKI_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    EXPECT_EQ_U(ota_fx_sm(&host, TC_SE_ID_INS_GENERATE, 0, 0, nonce, sizeof nonce), 0x9000);
    memcpy(id->pub, ota_fx_resp + 2, TC_SE_EC_PUB_LEN);
    uint8_t spki[91], pop[80];
    size_t pop_len = ota_fx_resp[68];
    memcpy(pop, ota_fx_resp + 69, pop_len < sizeof pop ? pop_len : sizeof pop);
    ota_fx_spki_of(id->pub, spki);
    struct tc_pki_device_req r = {.eid = eid,
                                  .spki = spki,
                                  .spki_len = sizeof spki,
                                  .nonce = nonce,
                                  .pop = pop,
                                  .pop_len = pop_len,
                                  .station_id = "line-1",
                                  .production_time = p->t0};
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    EXPECT_OK(ota_fx_pki_issue(p, &r, &der));
    bool ok = der.len > 0 && der.len <= sizeof id->cert;
    EXPECT(ok);
    if (ok) {
        memcpy(id->cert, der.data, der.len);
        id->cert_len = der.len;
    }
    tc_buf_free(&der);
    struct tc_pki_device_info info;
    EXPECT_OK(tc_pki_check_device(id->cert, id->cert_len, &info));
    memcpy(id->serial, info.serial, sizeof id->serial);
    ota_fx_sha256(id->cert, id->cert_len, id->cert_sha);
    ota_fx_sha256(spki, sizeof spki, id->pub_sha);
    struct tc_apdu st = {.cla = 0x80,
                         .ins = TC_SE_ID_INS_STORE_CERT,
                         .p1 = 0x80,
                         .data = id->cert,
                         .lc = id->cert_len};
    size_t n = 0;
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_host_transmit(&host, &st, ota_fx_resp, sizeof ota_fx_resp, &n, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    tc_scp03_host_close(&host);
    /* GP Card Spec 2.3 §11.10 SET STATUS: OP_READY -> INITIALIZED -> SECURED. */
    c.select = true;
    if (tc_scp03_host_open(&host, t, kp, &c) != TC_OK) {
        EXPECT(false);
        return false;
    }
    EXPECT_EQ_U(ota_fx_sm(&host, 0xF0, 0x80, 0x07, NULL, 0), 0x9000);
    EXPECT_EQ_U(ota_fx_sm(&host, 0xF0, 0x80, 0x0F, NULL, 0), 0x9000);
    tc_scp03_host_close(&host);
    return ok;
}

static void cert_fields(struct tc_audit_event *ev, const struct ota_fx_identity *id)
{
    ev->fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
    memcpy(ev->cert_serial, id->serial, sizeof id->serial);
    ev->cert_serial_len = sizeof id->serial;
    memcpy(ev->cert_sha256, id->cert_sha, 32);
}

void ota_fx_log_line(struct tc_registry *reg, const char *eid, const char *batch,
                     const struct ota_fx_identity *id, uint8_t kvn, const uint8_t (*kcv)[3])
{
    uint8_t back[32];
    EXPECT_OK(tc_registry_cert_put(reg, id->cert, id->cert_len, back));
    struct tc_audit_event ev[5];
    size_t n = 0;
    memset(ev, 0, sizeof ev);
    if (kcv != NULL) {
        ev[n].type = TC_AUDIT_INJECTION_CONFIRMED;
        ev[n].fields = TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV;
        ev[n].kvn = kvn;
        memcpy(ev[n].kcv, kcv, sizeof ev[n].kcv);
        n++;
    }
    ev[n].type = TC_AUDIT_KEYPAIR_GENERATED;
    ev[n].fields = TC_AUDIT_HAS_PUBKEY_SHA256;
    memcpy(ev[n].pubkey_sha256, id->pub_sha, 32);
    n++;
    ev[n].type = TC_AUDIT_CERT_ISSUED;
    ev[n].fields = TC_AUDIT_HAS_PUBKEY_SHA256;
    memcpy(ev[n].pubkey_sha256, id->pub_sha, 32);
    cert_fields(&ev[n++], id);
    ev[n].type = TC_AUDIT_CERT_STORED;
    cert_fields(&ev[n++], id);
    ev[n].type = TC_AUDIT_LIFECYCLE_CHANGED;
    ev[n].fields = TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
    ev[n].lifecycle = TC_SE_LC_SECURED;
    ev[n].prev_lifecycle = TC_SE_LC_INITIALIZED;
    n++;
    size_t el = 0;
    uint8_t bin[16];
    EXPECT_OK(tc_hex_decode(eid, strlen(eid), 0, bin, sizeof bin, &el));
    for (size_t i = 0; i < n; i++) {
        ev[i].time_ms = 1700000000000ull + i;
        ev[i].fields |=
            TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR;
        memcpy(ev[i].eid, bin, el);
        ev[i].eid_len = el;
        (void)snprintf(ev[i].batch, sizeof ev[i].batch, "%s", batch);
        (void)snprintf(ev[i].station, sizeof ev[i].station, "%s", "line-1");
        (void)snprintf(ev[i].actor, sizeof ev[i].actor, "%s", "op");
        EXPECT_OK(tc_registry_append(reg, &ev[i], NULL));
    }
}

/* ------------------------------------------------------------------ log */

static tc_err count_one(void *arg, uint64_t index, const struct tc_audit_event *ev,
                        const uint8_t *event, size_t len)
{
    struct ota_fx_counts *c = arg;
    (void)index;
    (void)event;
    (void)len;
    if ((unsigned)ev->type < 0x30)
        c->by_type[ev->type]++;
    return TC_OK;
}

struct ota_fx_counts ota_fx_count(struct tc_registry *reg, const uint8_t *eid, size_t eid_len)
{
    struct ota_fx_counts c;
    memset(&c, 0, sizeof c);
    EXPECT_OK(tc_registry_device_history(reg, eid, eid_len, count_one, &c));
    return c;
}

/* ------------------------------------------------------------------ dialog */

enum ota_fx_end ota_fx_dialog(const struct ota_fx_dialog *d, unsigned *scripts)
{
    struct tc_buf script, resp;
    tc_buf_init_heap(&script, 1u << 16);
    tc_buf_init_heap(&resp, 1u << 16);
    enum ota_fx_end end = OTA_FX_ABORTED;
    unsigned n = 0;
    struct tc_ota_admin_in in = {.eid = d->eid, .step = 0, .status = TC_OTA_STATUS_NONE};
    for (;;) {
        tc_buf_reset(&script);
        tc_err rc = d->step != NULL ? d->step(d->step_arg, &in, &script)
                                    : d->app->next(d->app->ctx, &in, &script);
        if (rc != TC_OK) {
            tc_error_clear();
            d->app->end(d->app->ctx, d->eid, false); /* 500: the server closes */
            end = OTA_FX_ABORTED;
            break;
        }
        if (script.len == 0) {
            d->app->end(d->app->ctx, d->eid, true); /* 204 */
            end = OTA_FX_DONE;
            break;
        }
        tc_buf_reset(&resp);
        EXPECT_OK(tc_ota_agent_run_script(d->t, script.data, script.len, &resp));
        n++;
        if (d->drop_after != 0 && n == d->drop_after) {
            d->app->end(d->app->ctx, d->eid, false);
            end = OTA_FX_DROPPED;
            break;
        }
        if (d->tamper != 0 && n == d->tamper && resp.len > 4)
            resp.data[resp.len - 3] ^= 0x01; /* inside the last R-APDU, before 00 00 */
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

/* ------------------------------------------------------------------ server */

static void fx_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)event_base_loopbreak(arg);
}

static void *fx_loop(void *arg)
{
    struct ota_fx_server *v = arg;
    (void)event_base_dispatch(v->base);
    return NULL;
}

bool ota_fx_server_start(struct ota_fx_server *v, const struct tc_ota_server_config *cfg)
{
    memset(v, 0, sizeof *v);
    /* Before the base exists: only then does event_active from the test's
     * thread wake the loop (libevent locking and notification). */
    EXPECT(evthread_use_pthreads() == 0);
    v->base = event_base_new();
    EXPECT(v->base != NULL);
    if (v->base == NULL)
        return false;
    EXPECT_OK(tc_ota_server_new(v->base, cfg, &v->s));
    if (v->s == NULL)
        return false;
    v->port = tc_ota_server_port(v->s);
    EXPECT(v->port != 0);
    /* Stopping activates this event: unlike a loopbreak issued before the
     * loop has started, an active event is not lost. */
    v->stop = event_new(v->base, -1, 0, fx_stop_cb, v->base);
    EXPECT(v->stop != NULL);
    if (v->stop == NULL)
        return false;
    if (pthread_create(&v->th, NULL, fx_loop, v) != 0) {
        EXPECT(false);
        event_free(v->stop);
        v->stop = NULL;
        return false;
    }
    return true;
}

void ota_fx_server_stop(struct ota_fx_server *v)
{
    if (v->stop != NULL) {
        event_active(v->stop, 0, 0);
        EXPECT(pthread_join(v->th, NULL) == 0);
        event_free(v->stop);
        v->stop = NULL;
    }
    tc_ota_server_free(v->s);
    v->s = NULL;
    if (v->base != NULL)
        event_base_free(v->base);
    v->base = NULL;
}
