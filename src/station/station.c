/*
 * The per-device pipeline (docs/station.md): card checks, transport session,
 * key injection through the HSM, the injection confirmation gate, identity,
 * SECURED, with an audit event at every step and a rejection record (after
 * revoking any certificate issued in the run) when a gate fails.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include <trustchain/codec.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>

#include "internal.h"

#define ST_RESP_MAX TC_TRANSPORT_MAX_RESPONSE
#define ST_CMD_MAX  (TC_SE_MAX_CERT + 16u)

/* RFC 5480 §2.1.1: SubjectPublicKeyInfo of an id-ecPublicKey on secp256r1
 * with an uncompressed point; the 26 bytes before the 65-byte point. */
static const uint8_t p256_spki_prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                             0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                             0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
static const uint8_t default_isd[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t identity_aid[TC_SE_IDENTITY_AID_LEN] = {TC_SE_IDENTITY_AID};

/* RFC 5280 §5.3.1 CRLReason values the station uses. */
#define CRL_SUPERSEDED             4
#define CRL_CESSATION_OF_OPERATION 5

/* ------------------------------------------------------------------ names */

const char *tc_station_step_name(unsigned step)
{
    static const char *const n[] = {"unknown", "card",     "transport", "inject",
                                    "confirm", "identity", "secure",    "record"};
    return step < TC_ARRAY_LEN(n) ? n[step] : "unknown";
}

const char *tc_station_reason_name(unsigned reason)
{
    static const char *const n[] = {
        "ok",      "card-removed", "card-error", "card-state", "eid",           "transport-keys",
        "hsm",     "kcv-mismatch", "gate",       "pop",        "cert-mismatch", "lifecycle",
        "internal"};
    return reason < TC_ARRAY_LEN(n) ? n[reason] : "unknown";
}

const char *tc_station_point_name(unsigned point)
{
    static const char *const n[] = {"none",      "card-read",   "received", "transport-open",
                                    "derived",   "put-key",     "injected", "confirmed",
                                    "generated", "keypair",     "issued",   "stored-card",
                                    "stored",    "initialized", "secured",  "done"};
    return point < TC_ARRAY_LEN(n) ? n[point] : "unknown";
}

const char *tc_station_outcome_name(enum tc_station_outcome o)
{
    switch (o) {
    case TC_STATION_PROVISIONED:
        return "provisioned";
    case TC_STATION_REJECTED:
        return "rejected";
    case TC_STATION_ALREADY_DONE:
        return "already-provisioned";
    case TC_STATION_ALREADY_REJECTED:
        return "already-rejected";
    case TC_STATION_NO_CARD:
        return "no-card";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------------ station */

static bool id_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > TC_AUDIT_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E)
            return false;
    return true;
}

tc_err tc_station_new(const struct tc_station_config *cfg, struct tc_station **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(cfg != NULL && out != NULL && cfg->registry != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(id_ok(cfg->batch_id) && id_ok(cfg->station_id) && id_ok(cfg->actor), TC_ERR_ARG,
                  "batch, station and actor must be 1-64 printable characters without spaces");
    struct tc_station *st = calloc(1, sizeof *st);
    TC_ENSURE(st != NULL, TC_ERR_NOMEM);
    if (pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st);
        return TC_FAIL(TC_ERR_INTERNAL, "mutex");
    }
    st->cfg = *cfg;
    (void)snprintf(st->batch_id, sizeof st->batch_id, "%s", cfg->batch_id);
    (void)snprintf(st->station_id, sizeof st->station_id, "%s", cfg->station_id);
    (void)snprintf(st->actor, sizeof st->actor, "%s", cfg->actor);
    st->cfg.batch_id = st->batch_id;
    st->cfg.station_id = st->station_id;
    st->cfg.actor = st->actor;
    st->transport_kvn = cfg->transport_kvn != 0 ? cfg->transport_kvn : TC_STATION_TRANSPORT_KVN;
    st->device_kvn = cfg->device_kvn != 0 ? cfg->device_kvn : TC_STATION_DEVICE_KVN;
    TC_CHECK_MSG(st->transport_kvn != st->device_kvn && st->transport_kvn <= 0x7F &&
                     st->device_kvn <= 0x7F,
                 TC_ERR_ARG, "transport and device KVNs must differ and lie in 01..7F");
    if (cfg->isd_aid != NULL) {
        TC_CHECK(cfg->isd_aid_len >= TC_SCP03_AID_MIN && cfg->isd_aid_len <= TC_SCP03_AID_MAX,
                 TC_ERR_ARG);
        memcpy(st->isd_aid, cfg->isd_aid, cfg->isd_aid_len);
        st->isd_aid_len = cfg->isd_aid_len;
    } else {
        memcpy(st->isd_aid, default_isd, sizeof default_isd);
        st->isd_aid_len = sizeof default_isd;
    }
    st->cfg.isd_aid = st->isd_aid;
    (void)snprintf(st->hsm_error, sizeof st->hsm_error, "%s",
                   cfg->hsm_error != NULL ? cfg->hsm_error : "no HSM configured");
    st->cfg.hsm_error = st->hsm_error;

    /* The batch CA must be a batch CA of this batch: its EID prefix is the
     * fence checked at step 1 (tc_pki_device_issue checks it again). */
    TC_CHECK_MSG(cfg->batch_ca != NULL && cfg->batch_ca_len > 0, TC_ERR_ARG,
                 "no batch CA certificate");
    struct tc_pki_batch_info bi;
    TC_TRY(tc_pki_check_batch(cfg->batch_ca, cfg->batch_ca_len, &bi));
    TC_CHECK_MSG(strcmp(bi.batch_id, cfg->batch_id) == 0, TC_ERR_ARG,
                 "the batch CA is for batch %s, not %s", bi.batch_id, cfg->batch_id);
    (void)snprintf(st->eid_prefix, sizeof st->eid_prefix, "%s", bi.eid_prefix);
    st->ca = malloc(cfg->batch_ca_len);
    TC_CHECK(st->ca != NULL, TC_ERR_NOMEM);
    memcpy(st->ca, cfg->batch_ca, cfg->batch_ca_len);
    st->ca_len = cfg->batch_ca_len;
    st->cfg.batch_ca = st->ca;

    if (cfg->hsm != NULL) {
        TC_CHECK_MSG(cfg->master_name != NULL && cfg->batch_signer != NULL, TC_ERR_ARG,
                     "an HSM needs the master key name and the batch CA signer");
        char label[TC_HSM_LABEL_MAX + 1];
        (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_MASTER, cfg->master_name);
        tc_err rc = tc_hsm_find(cfg->hsm, TC_HSM_KIND_SECRET, label, &st->master);
        if (rc == TC_OK)
            rc = tc_hsm_transport_find(cfg->hsm, cfg->batch_id, st->transport_kvn, &st->transport);
        if (rc != TC_OK) {
            /* A key missing from the HSM: every device is rejected at step 2
             * with this reason, as with an HSM that is not there. */
            (void)snprintf(st->hsm_error, sizeof st->hsm_error, "%s", tc_error_last()->msg);
        } else {
            st->hsm_ok = true;
        }
        st->key_len = cfg->key_len != 0 ? cfg->key_len : st->transport.key_len;
        TC_CHECK_MSG(!st->hsm_ok || st->key_len == 16 || st->key_len == 32, TC_ERR_ARG,
                     "device keys must be 16 or 32 bytes");
    }
    *out = st;
    st = NULL;
    ret = TC_OK;
out:
    tc_station_free(st);
    return ret;
}

void tc_station_free(struct tc_station *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->n_issuers; i++)
        tc_pki_issuer_free(st->issuers[i]);
    free(st->ca);
    (void)pthread_mutex_destroy(&st->lock);
    free(st);
}

static tc_err issuer_take(struct tc_station *st, struct tc_pki_issuer **iss)
{
    *iss = NULL;
    (void)pthread_mutex_lock(&st->lock);
    if (st->n_issuers > 0)
        *iss = st->issuers[--st->n_issuers];
    (void)pthread_mutex_unlock(&st->lock);
    if (*iss != NULL)
        return TC_OK;
    return tc_pki_issuer_new(st->cfg.batch_signer, st->ca, st->ca_len, iss);
}

static void issuer_give(struct tc_station *st, struct tc_pki_issuer *iss)
{
    if (iss == NULL)
        return;
    (void)pthread_mutex_lock(&st->lock);
    if (st->n_issuers < ST_ISSUERS_MAX) {
        st->issuers[st->n_issuers++] = iss;
        iss = NULL;
    }
    (void)pthread_mutex_unlock(&st->lock);
    tc_pki_issuer_free(iss);
}

/* ------------------------------------------------------------------ one device */

struct dev {
    struct tc_station *st;
    struct tc_transport *t;
    struct tc_station_result *res;
    struct st_dev_id id;
    uint8_t *buf; /* responses, ST_RESP_MAX */
    size_t blen;
    /* What step 1 found. */
    uint8_t lc;
    bool has_transport, has_device, applet_key;
    struct tc_registry_device prior;
    bool has_prior;
    /* HSM side. */
    struct tc_hsm_keyset devks;
    bool devks_ok;
    struct tc_hsm_scp03_provider tm, dm;
    struct tc_scp03_key_provider tprov, dprov;
    uint8_t kcv[3][TC_KCV_LEN];
    struct tc_scp03_host host;
    bool host_open;
    /* Identity. */
    uint8_t spki[sizeof p256_spki_prefix + TC_PKI_P256_POINT];
    uint8_t pub_sha[32];
    uint8_t cert_sha[32];
    uint8_t serial[TC_PKI_SERIAL_LEN];
    bool issued_open; /* a certificate of this run not yet revoked */
    struct tc_buf cert;
    uint8_t cmd[ST_CMD_MAX];
    /* Events of steps whose outcome nothing has acted on yet: appended
     * together (one durable commit) before the station acts on them. */
    struct tc_audit_event pend[4];
    size_t npend;
    const uint8_t *pend_cert; /* issued certificate for the registry's side table */
    size_t pend_cert_len;
};

static tc_err queue(struct dev *d, const struct tc_audit_event *ev)
{
    TC_ENSURE(d->npend < TC_ARRAY_LEN(d->pend), TC_ERR_INTERNAL);
    d->pend[d->npend++] = *ev;
    return TC_OK;
}

static tc_err flush(struct dev *d)
{
    tc_err rc = st_record_n(d->st, d->pend, d->npend, d->pend_cert, d->pend_cert_len, d->res);
    if (rc == TC_OK) {
        d->npend = 0;
        d->pend_cert = NULL;
        d->pend_cert_len = 0;
    }
    return rc;
}

static void point(struct dev *d, enum tc_station_point p)
{
    if (d->st->cfg.hooks.point != NULL)
        d->st->cfg.hooks.point(d->st->cfg.hooks.arg, p);
}

/* Records the verdict in res; the caller returns TC_ERR_VERIFY to unwind. */
static tc_err reject(struct dev *d, enum tc_station_step step, enum tc_station_reason reason,
                     const char *fmt, ...) TC_PRINTF(4, 5);
static tc_err reject(struct dev *d, enum tc_station_step step, enum tc_station_reason reason,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(d->res->detail, sizeof d->res->detail, fmt, ap);
    va_end(ap);
    d->res->outcome = TC_STATION_REJECTED;
    d->res->step = (uint8_t)step;
    d->res->reason = (uint16_t)reason;
    return TC_ERR_VERIFY;
}

/* The reason a failed card operation maps to. */
static enum tc_station_reason card_reason(tc_err rc)
{
    switch (rc) {
    case TC_ERR_IO:
        return TC_STATION_R_CARD_REMOVED;
    case TC_ERR_HSM:
        return TC_STATION_R_HSM;
    case TC_ERR_AUTH: /* the card refused EXTERNAL AUTHENTICATE */
    case TC_ERR_CARD:
    case TC_ERR_VERIFY:
    case TC_ERR_FORMAT:
    case TC_ERR_TRUNCATED:
        return TC_STATION_R_CARD_ERROR;
    default:
        return TC_STATION_R_INTERNAL;
    }
}

static tc_err fail_card(struct dev *d, enum tc_station_step step, tc_err rc, const char *what)
{
    return reject(d, step, card_reason(rc), "%s: %s", what, tc_error_last()->msg);
}

/* A failed SCP03 host operation, by the outcome the host reports
 * (docs/scp03.md "Host outcomes"), never by its message. */
static enum tc_station_reason host_reason(const struct tc_scp03_host *h, tc_err rc)
{
    switch (tc_scp03_host_outcome(h)) {
    case TC_SCP03_HOST_LINK:
        return TC_STATION_R_CARD_REMOVED;
    case TC_SCP03_HOST_CARD_STATUS:
    case TC_SCP03_HOST_NO_KEYSET:
    case TC_SCP03_HOST_RESPONSE:
    case TC_SCP03_HOST_CARD_AUTH:
    case TC_SCP03_HOST_HOST_AUTH:
        return TC_STATION_R_CARD_ERROR;
    case TC_SCP03_HOST_KCV_MISMATCH:
        return TC_STATION_R_KCV;
    case TC_SCP03_HOST_KEYS:
        return TC_STATION_R_HSM;
    case TC_SCP03_HOST_OK:
    case TC_SCP03_HOST_OTHER:
    default:
        return card_reason(rc);
    }
}

static tc_err fail_host(struct dev *d, enum tc_station_step step, tc_err rc, const char *what)
{
    return reject(d, step, host_reason(&d->host, rc), "%s: %s", what, tc_error_last()->msg);
}

/* One plain command (ISO/IEC 7816-4), following 61xx with GET RESPONSE. */
static tc_err plain(struct dev *d, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                    const uint8_t *data, size_t lc, bool le, uint16_t *sw)
{
    struct tc_apdu a = {.cla = cla,
                        .ins = ins,
                        .p1 = p1,
                        .p2 = p2,
                        .data = lc ? data : NULL,
                        .lc = lc,
                        .le = 256,
                        .has_le = le};
    struct tc_buf b;
    tc_buf_init_fixed(&b, d->cmd, sizeof d->cmd);
    TC_GUARD(tc_apdu_encode(&a, &b));
    size_t n = 0;
    TC_GUARD(d->t->transmit(d->t->ctx, b.data, b.len, d->buf, ST_RESP_MAX, &n));
    TC_ENSURE_MSG(n >= 2, TC_ERR_FORMAT, "response shorter than a status word");
    d->blen = n - 2;
    *sw = (uint16_t)(d->buf[n - 2] << 8 | d->buf[n - 1]);
    /* ISO/IEC 7816-4 §5.3.4: 61xx, more data with GET RESPONSE. */
    for (int guard = 0; (*sw >> 8) == 0x61 && guard < 64; guard++) {
        uint8_t gr[5] = {(uint8_t)(cla & 0x03), 0xC0, 0x00, 0x00, (uint8_t)(*sw & 0xFF)};
        TC_ENSURE_MSG(d->blen + 258 <= ST_RESP_MAX, TC_ERR_SPACE, "response too long");
        size_t m = 0;
        TC_GUARD(
            d->t->transmit(d->t->ctx, gr, sizeof gr, d->buf + d->blen, ST_RESP_MAX - d->blen, &m));
        TC_ENSURE_MSG(m >= 2, TC_ERR_FORMAT, "response shorter than a status word");
        *sw = (uint16_t)(d->buf[d->blen + m - 2] << 8 | d->buf[d->blen + m - 1]);
        d->blen += m - 2;
    }
    return TC_OK;
}

static tc_err secure(struct dev *d, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
                     size_t lc, bool le, uint16_t *sw)
{
    struct tc_apdu a = {.cla = 0x80,
                        .ins = ins,
                        .p1 = p1,
                        .p2 = p2,
                        .data = lc ? data : NULL,
                        .lc = lc,
                        .le = 256,
                        .has_le = le};
    return tc_scp03_host_transmit(&d->host, &a, d->buf, ST_RESP_MAX, &d->blen, sw);
}

static tc_err sw_ok(uint16_t sw, const char *what)
{
    if (sw == 0x9000)
        return TC_OK;
    return TC_FAIL(TC_ERR_CARD, "%s answered %04X (%s)", what, (unsigned)sw, tc_sw_text(sw));
}

/* GET DATA (GP CS 2.3 §11.3) of a tag the card answers in the clear; the
 * value of the returned TLV, which must be the tag asked for. */
static tc_err get_data(struct dev *d, uint16_t tag, const uint8_t **val, size_t *len)
{
    uint16_t sw = 0;
    TC_GUARD(plain(d, 0x80, 0xCA, (uint8_t)(tag >> 8), (uint8_t)tag, NULL, 0, true, &sw));
    char what[32];
    (void)snprintf(what, sizeof what, "GET DATA %04X", (unsigned)tag);
    TC_GUARD(sw_ok(sw, what));
    struct tc_cursor c;
    tc_cursor_init(&c, d->buf, d->blen);
    struct tc_tlv tlv;
    TC_GUARD(tc_tlv_next(&c, &tlv));
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_ENSURE_MSG(tlv.tag == tag, TC_ERR_FORMAT, "%s answered tag %X", what, (unsigned)tlv.tag);
    *val = tlv.value;
    *len = tlv.len;
    return TC_OK;
}

static tc_err select_aid(struct dev *d, const uint8_t *aid, size_t len, const char *what)
{
    uint16_t sw = 0;
    /* ISO/IEC 7816-4 §11.2.2 SELECT by DF name, first occurrence. */
    TC_GUARD(plain(d, 0x00, 0xA4, 0x04, 0x00, aid, len, true, &sw));
    return sw_ok(sw, what);
}

/* GP CS 2.3 §11.3.3.1 Key Information Template: E0 { C0 { id, KVN, type,
 * length }... }; which of the two KVNs the card holds. */
static tc_err parse_keyinfo(struct dev *d, const uint8_t *v, size_t len)
{
    struct tc_cursor c;
    tc_cursor_init(&c, v, len);
    while (tc_cursor_remaining(&c) > 0) {
        struct tc_tlv t;
        TC_GUARD(tc_tlv_next(&c, &t));
        TC_ENSURE_MSG(t.tag == 0xC0 && t.len >= 2, TC_ERR_FORMAT, "key information malformed");
        uint8_t kvn = t.value[1];
        if (kvn == d->st->transport_kvn)
            d->has_transport = true;
        if (kvn == d->st->device_kvn)
            d->has_device = true;
    }
    return TC_OK;
}

/* The identity applet's certificate, read from offset 0 in blocks of 256
 * (identity-applet.md GET CERTIFICATE: 9000 full block, 6282 end of data),
 * through the session when one is open, hashed. */
static tc_err read_cert(struct dev *d, bool in_session, uint8_t sha[32], bool *present)
{
    uint8_t cert[TC_SE_MAX_CERT];
    size_t off = 0;
    *present = false;
    for (;;) {
        uint16_t sw = 0;
        TC_ENSURE_MSG(off <= 0x7FFF, TC_ERR_FORMAT, "certificate too long");
        uint8_t p1 = (uint8_t)(off >> 8), p2 = (uint8_t)off;
        if (in_session)
            TC_GUARD(secure(d, TC_SE_ID_INS_GET_CERT, p1, p2, NULL, 0, true, &sw));
        else
            TC_GUARD(plain(d, 0x80, TC_SE_ID_INS_GET_CERT, p1, p2, NULL, 0, true, &sw));
        if (sw == 0x6A88 && off == 0)
            return TC_OK; /* no certificate */
        TC_ENSURE_MSG(sw == 0x9000 || sw == 0x6282, TC_ERR_CARD,
                      "GET CERTIFICATE answered %04X (%s)", (unsigned)sw, tc_sw_text(sw));
        TC_ENSURE_MSG(off + d->blen <= TC_SE_MAX_CERT, TC_ERR_FORMAT, "certificate too long");
        memcpy(cert + off, d->buf, d->blen);
        off += d->blen;
        if (sw == 0x6282 || d->blen < 256)
            break;
    }
    SHA256(cert, off, sha);
    *present = true;
    return TC_OK;
}

/* Step 1: what card is this, and may the line work on it? */
static tc_err step_card(struct dev *d)
{
    const enum tc_station_step S = TC_STATION_STEP_CARD;
    const uint8_t *v;
    size_t n;
    tc_err rc;
    uint16_t sw = 0;
    /* The applet first: a fresh card's identity applet holds no key pair
     * (GET PUBLIC KEY answers 6A88 outside a session). */
    if ((rc = select_aid(d, identity_aid, sizeof identity_aid, "SELECT identity applet")) != TC_OK)
        return fail_card(d, S, rc, "identity applet");
    if ((rc = plain(d, 0x80, TC_SE_ID_INS_GET_PUBLIC, 0, 0, NULL, 0, true, &sw)) != TC_OK)
        return fail_card(d, S, rc, "GET PUBLIC KEY");
    if (sw != 0x9000 && sw != 0x6A88)
        return reject(d, S, TC_STATION_R_CARD_ERROR, "GET PUBLIC KEY answered %04X (%s)",
                      (unsigned)sw, tc_sw_text(sw));
    d->applet_key = sw == 0x9000;
    /* GP CS 2.3 §11.9: SELECT the ISD. */
    if ((rc = select_aid(d, d->st->isd_aid, d->st->isd_aid_len, "SELECT ISD")) != TC_OK)
        return fail_card(d, S, rc, "ISD");
    if ((rc = get_data(d, TC_SE_TAG_EID, &v, &n)) != TC_OK)
        return fail_card(d, S, rc, "reading the EID");
    if (n != TC_PKI_EID_BCD_LEN)
        return reject(d, S, TC_STATION_R_EID, "the EID is %zu bytes, not 16", n);
    memcpy(d->id.eid, v, n);
    if (tc_pki_eid_from_bcd(d->id.eid, d->id.eid_text) != TC_OK ||
        tc_pki_eid_check(d->id.eid_text) != TC_OK)
        return reject(d, S, TC_STATION_R_EID, "EID is not 32 digits with valid check digits");
    (void)snprintf(d->res->eid, sizeof d->res->eid, "%s", d->id.eid_text);
    /* ISO/IEC 7816-6 CIN and GP CS 2.3 Annex H CPLC: read to identify the
     * card (the registry keys devices by EID). */
    if ((rc = get_data(d, 0x0045, &v, &n)) != TC_OK)
        return fail_card(d, S, rc, "reading the CIN");
    if ((rc = get_data(d, 0x9F7F, &v, &n)) != TC_OK)
        return fail_card(d, S, rc, "reading the CPLC");
    if (n != TC_SE_CPLC_LEN)
        return reject(d, S, TC_STATION_R_CARD_ERROR, "CPLC is %zu bytes, not 42", n);
    if ((rc = get_data(d, 0x00E0, &v, &n)) != TC_OK)
        return fail_card(d, S, rc, "reading the key information");
    if ((rc = parse_keyinfo(d, v, n)) != TC_OK)
        return fail_card(d, S, rc, "key information");
    if ((rc = get_data(d, TC_SE_TAG_LIFE_CYCLE, &v, &n)) != TC_OK)
        return fail_card(d, S, rc, "reading the life cycle");
    if (n != 1)
        return reject(d, S, TC_STATION_R_CARD_ERROR, "life cycle is %zu bytes", n);
    d->lc = v[0];
    point(d, TC_STATION_PT_CARD_READ);
    return TC_OK;
}

/* Decide from the registry and the card whether to work on it. */
static tc_err gate_fresh(struct dev *d)
{
    const enum tc_station_step S = TC_STATION_STEP_CARD;
    struct tc_station *st = d->st;
    if (strncmp(d->id.eid_text, st->eid_prefix, strlen(st->eid_prefix)) != 0)
        return reject(d, S, TC_STATION_R_EID, "EID %s is outside batch %s (prefix %s)",
                      d->id.eid_text, st->batch_id, st->eid_prefix);
    tc_err rc = st_prior(st, &d->id, &d->prior, &d->has_prior);
    if (rc != TC_OK)
        return rc; /* registry failure: not a verdict */
    if (d->has_prior && strcmp(d->prior.batch, st->batch_id) != 0)
        return reject(d, S, TC_STATION_R_CARD_STATE, "the registry has this EID in batch %s",
                      d->prior.batch);
    if (d->has_prior && d->prior.state == TC_REG_PROVISIONED) {
        d->res->outcome = TC_STATION_ALREADY_DONE;
        (void)snprintf(d->res->detail, sizeof d->res->detail,
                       "provisioned earlier (log index %llu)",
                       (unsigned long long)d->prior.last_index);
        return TC_ERR_STATE;
    }
    /* Past the line (locked, decommissioned, or revoked after it was
     * SECURED): the line has nothing to do with it any more. */
    if (d->has_prior &&
        (d->prior.state == TC_REG_LOCKED || d->prior.state == TC_REG_DECOMMISSIONED ||
         (d->prior.state == TC_REG_REVOKED && d->prior.lifecycle == TC_SE_LC_SECURED))) {
        d->res->outcome = TC_STATION_ALREADY_DONE;
        (void)snprintf(d->res->detail, sizeof d->res->detail, "past the line: %s",
                       tc_registry_state_name(d->prior.state));
        return TC_ERR_STATE;
    }
    if (d->has_prior && d->prior.state == TC_REG_REJECTED) {
        d->res->outcome = TC_STATION_ALREADY_REJECTED;
        (void)snprintf(d->res->detail, sizeof d->res->detail, "rejected earlier at step %s: %s",
                       tc_station_step_name(d->prior.step),
                       tc_station_reason_name(d->prior.reason));
        return TC_ERR_STATE;
    }
    bool resumable = d->has_prior;
    d->res->resumed = resumable;
    if (!resumable) {
        /* A fresh card: OP_READY, the transport keyset, no device keyset, no
         * identity. Anything else is personalised: never touched again. */
        if (d->lc != TC_SE_LC_OP_READY)
            return reject(d, S, TC_STATION_R_CARD_STATE,
                          "card life cycle is %s, not OP_READY (already personalised?)",
                          tc_se_life_cycle_name(d->lc));
        if (d->applet_key)
            return reject(d, S, TC_STATION_R_CARD_STATE,
                          "the identity applet already holds a key pair");
        if (d->has_device)
            return reject(d, S, TC_STATION_R_CARD_STATE,
                          "the card already holds a keyset with KVN %02X", st->device_kvn);
        if (!d->has_transport)
            return reject(d, S, TC_STATION_R_CARD_STATE,
                          "the card holds no transport keyset with KVN %02X", st->transport_kvn);
        return TC_OK;
    }
    /* Resuming an interrupted run of this batch. */
    if (d->lc != TC_SE_LC_OP_READY && d->lc != TC_SE_LC_INITIALIZED && d->lc != TC_SE_LC_SECURED)
        return reject(d, S, TC_STATION_R_CARD_STATE, "card life cycle is %s",
                      tc_se_life_cycle_name(d->lc));
    if (!d->has_transport && !d->has_device)
        return reject(d, S, TC_STATION_R_CARD_STATE,
                      "the card holds neither the transport nor the device keyset");
    return TC_OK;
}

static void ev_kcv(struct dev *d, struct tc_audit_event *ev, uint8_t kvn)
{
    ev->fields |= TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV;
    ev->kvn = kvn;
    memcpy(ev->kcv, d->kcv, sizeof ev->kcv);
}

static tc_err open_session(struct dev *d, const struct tc_scp03_key_provider *p, uint8_t kvn,
                           bool select)
{
    struct tc_scp03_host_config hc = {.kvn = kvn,
                                      .level = TC_SCP03_LEVEL_RENC,
                                      .aid = d->st->isd_aid,
                                      .aid_len = d->st->isd_aid_len,
                                      .select = select};
    tc_err rc = tc_scp03_host_open(&d->host, d->t, p, &hc);
    d->host_open = rc == TC_OK;
    return rc;
}

static void close_session(struct dev *d)
{
    if (d->host_open)
        tc_scp03_host_close(&d->host);
    d->host_open = false;
}

/* Steps 2 and 3: transport session, derivation, PUT KEY, KCVs. */
static tc_err step_inject(struct dev *d)
{
    struct tc_station *st = d->st;
    tc_err rc;
    struct tc_audit_event ev;
    if (!st->hsm_ok)
        return reject(d, TC_STATION_STEP_TRANSPORT, TC_STATION_R_HSM, "HSM unavailable: %s",
                      st->hsm_error);
    struct tc_hsm *h = st->cfg.hsm;
    tc_hsm_scp03_provider_init(&d->tm, h, &d->tprov);
    TC_GUARD(tc_hsm_scp03_provider_add(&d->tm, st->transport_kvn, &st->transport));
    if (d->has_transport) {
        rc = open_session(d, &d->tprov, st->transport_kvn, true);
        /* Amendment D §6.2.2.2 / §7.1.2: a card cryptogram (or pseudo-random
         * challenge) that does not verify, or the card refusing the host
         * cryptogram (6300), means other keys. */
        enum tc_scp03_host_outcome oc = tc_scp03_host_outcome(&d->host);
        if (rc != TC_OK && (oc == TC_SCP03_HOST_CARD_AUTH || oc == TC_SCP03_HOST_HOST_AUTH))
            return reject(d, TC_STATION_STEP_TRANSPORT, TC_STATION_R_TRANSPORT_KEYS,
                          "transport keyset %02X refused: %s", st->transport_kvn,
                          tc_error_last()->msg);
        if (rc != TC_OK)
            return fail_host(d, TC_STATION_STEP_TRANSPORT, rc, "transport session");
        point(d, TC_STATION_PT_TRANSPORT_OPEN);
    }
    /* Step 3: derived in the HSM from master + EID (docs/hsm.md). */
    rc = tc_hsm_diversify(h, st->master, d->id.eid, st->key_len, &d->devks);
    if (rc == TC_OK) {
        d->devks_ok = true;
        tc_hsm_scp03_provider_init(&d->dm, h, &d->dprov);
        rc = tc_hsm_scp03_provider_add(&d->dm, st->device_kvn, &d->devks);
    }
    /* The provider keeps the KCVs: PUT KEY compares the card's with these
     * same values without asking the HSM again. */
    for (unsigned k = 0; k < 3 && rc == TC_OK; k++)
        rc = d->dprov.kcv(d->dprov.ctx, st->device_kvn, (enum tc_scp03_key_id)(k + 1), d->kcv[k]);
    if (rc != TC_OK)
        return reject(d, TC_STATION_STEP_INJECT, TC_STATION_R_HSM, "deriving the device keys: %s",
                      tc_error_last()->msg);
    st_event_init(st, &d->id, TC_AUDIT_KEYS_DERIVED, &ev);
    ev_kcv(d, &ev, st->device_kvn);
    TC_GUARD(queue(d, &ev));
    /* Durable before the card changes: card received + keys derived. */
    TC_GUARD(flush(d));
    point(d, TC_STATION_PT_DERIVED);
    if (d->has_transport) {
        /* GP CS 2.3 §11.8 / Amendment D §7.2: PUT KEY replacing the transport
         * keyset; blocks wrapped by the HSM under the transport DEK; the
         * card's KCVs must equal the HSM's. */
        rc = tc_scp03_host_put_keys(&d->host, &d->dprov, st->device_kvn, st->transport_kvn);
        if (rc != TC_OK && tc_scp03_host_outcome(&d->host) == TC_SCP03_HOST_KCV_MISMATCH)
            return reject(d, TC_STATION_STEP_INJECT, TC_STATION_R_KCV, "PUT KEY: %s",
                          tc_error_last()->msg);
        if (rc != TC_OK)
            return fail_host(d, TC_STATION_STEP_INJECT, rc, "PUT KEY");
        point(d, TC_STATION_PT_PUT_KEY);
        close_session(d);
    }
    if (d->has_transport || !d->has_prior || d->prior.state < TC_REG_KEYS_INJECTED ||
        d->prior.kvn != st->device_kvn) {
        st_event_init(st, &d->id, TC_AUDIT_KEYS_INJECTED, &ev);
        ev_kcv(d, &ev, st->device_kvn);
        if (d->has_transport) {
            ev.fields |= TC_AUDIT_HAS_PREV_KVN;
            ev.prev_kvn = st->transport_kvn;
        }
        TC_GUARD(queue(d, &ev));
    }
    point(d, TC_STATION_PT_INJECTED);
    return TC_OK;
}

/* Step 4: the injection confirmation gate. */
static tc_err step_confirm(struct dev *d)
{
    const enum tc_station_step S = TC_STATION_STEP_CONFIRM;
    struct tc_station *st = d->st;
    /* The transport keyset must be gone: INITIALIZE UPDATE naming it is
     * refused (6A88: referenced data not found) or does not authenticate. */
    tc_err rc = open_session(d, &d->tprov, st->transport_kvn, true);
    if (rc == TC_OK) {
        close_session(d);
        return reject(d, S, TC_STATION_R_GATE, "the transport keyset %02X still opens a session",
                      st->transport_kvn);
    }
    /* Proof is the card refusing the keyset: 6A88 (no keyset with that KVN)
     * or a card that no longer authenticates with it. Any other answer
     * proves nothing. */
    switch (tc_scp03_host_outcome(&d->host)) {
    case TC_SCP03_HOST_NO_KEYSET:
    case TC_SCP03_HOST_CARD_AUTH:
        break;
    case TC_SCP03_HOST_LINK:
    case TC_SCP03_HOST_CARD_STATUS:
    case TC_SCP03_HOST_KEYS:
        return fail_host(d, S, rc, "transport keyset probe");
    case TC_SCP03_HOST_OK:
    case TC_SCP03_HOST_HOST_AUTH:
    case TC_SCP03_HOST_KCV_MISMATCH:
    case TC_SCP03_HOST_RESPONSE:
    case TC_SCP03_HOST_OTHER:
    default:
        return reject(d, S, TC_STATION_R_GATE, "transport keyset probe (%s): %s",
                      tc_scp03_host_outcome_name(tc_scp03_host_outcome(&d->host)),
                      tc_error_last()->msg);
    }
    tc_error_clear();
    /* A fresh session with the device keyset must open. It is the identity
     * applet's: the applet's secure channel is the ISD's, with the ISD's
     * keyset (identity-applet.md), so it proves the injected keys as well
     * and step 5 goes on in it (one handshake less per device). */
    if ((rc = select_aid(d, identity_aid, sizeof identity_aid, "SELECT identity applet")) != TC_OK)
        return fail_card(d, S, rc, "identity applet");
    rc = open_session(d, &d->dprov, st->device_kvn, false);
    enum tc_scp03_host_outcome oc = tc_scp03_host_outcome(&d->host);
    if (rc != TC_OK && (oc == TC_SCP03_HOST_LINK || oc == TC_SCP03_HOST_KEYS))
        return fail_host(d, S, rc, "device keyset session");
    if (rc != TC_OK)
        return reject(d, S, TC_STATION_R_GATE, "the device keyset %02X does not open a session: %s",
                      st->device_kvn, tc_error_last()->msg);
    struct tc_audit_event ev;
    st_event_init(st, &d->id, TC_AUDIT_INJECTION_CONFIRMED, &ev);
    ev_kcv(d, &ev, st->device_kvn);
    /* keys injected + injection confirmed: queued, made durable with the
     * issuance (step 5) or the rejection. Nothing is lost to a crash before
     * then: the keys-derived record went to disk before PUT KEY, and a
     * resumed run reads the card (which keyset opens, whether the applet
     * holds a key pair) and confirms the injection again. */
    TC_GUARD(queue(d, &ev));
    point(d, TC_STATION_PT_CONFIRMED);
    return TC_OK;
}

static tc_err revoke(struct dev *d, const uint8_t *serial, size_t serial_len, const uint8_t *sha,
                     int crl_reason)
{
    struct tc_audit_event ev;
    st_event_init(d->st, &d->id, TC_AUDIT_CERT_REVOKED, &ev);
    ev.fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON;
    TC_ENSURE(serial_len > 0 && serial_len <= TC_AUDIT_SERIAL_MAX, TC_ERR_INTERNAL);
    memcpy(ev.cert_serial, serial, serial_len);
    ev.cert_serial_len = serial_len;
    ev.reason = (uint16_t)crl_reason;
    if (sha != NULL) {
        ev.fields |= TC_AUDIT_HAS_CERT_SHA256;
        memcpy(ev.cert_sha256, sha, 32);
    }
    TC_GUARD(queue(d, &ev));
    TC_GUARD(flush(d));
    const struct tc_station_hooks *hk = &d->st->cfg.hooks;
    if (hk->revoked != NULL)
        hk->revoked(hk->arg, d->id.eid_text, serial, serial_len, crl_reason);
    return TC_OK;
}

/* Step 5: identity. */
static tc_err step_identity(struct dev *d)
{
    const enum tc_station_step S = TC_STATION_STEP_IDENTITY;
    struct tc_station *st = d->st;
    struct tc_audit_event ev;
    tc_err rc;
    uint16_t sw = 0;
    /* A certificate of an interrupted run is revoked before another one is
     * issued: never two valid certificates for one device. */
    if (d->has_prior && d->prior.has_cert && d->prior.state != TC_REG_REVOKED) {
        TC_GUARD(revoke(d, d->prior.cert_serial, d->prior.cert_serial_len, d->prior.cert_sha256,
                        CRL_SUPERSEDED));
        d->res->revoked_earlier++;
    }
    /* The gate's session to the identity applet (step 4) is still open;
     * should it not be, SELECT the applet and open one (its secure channel
     * is the ISD's, identity-applet.md). */
    if (!d->host_open) {
        if ((rc = select_aid(d, identity_aid, sizeof identity_aid, "SELECT identity applet")) !=
            TC_OK)
            return fail_card(d, S, rc, "identity applet");
        if ((rc = open_session(d, &d->dprov, st->device_kvn, false)) != TC_OK)
            return fail_host(d, S, rc, "identity applet session");
    }
    uint8_t nonce[TC_STATION_NONCE_LEN];
    TC_GUARD(tc_random(nonce, sizeof nonce));
    /* GENERATE KEY: P1 01 (replace) only when resuming a run that left a key
     * pair; a fresh card has none (checked at step 1). */
    uint8_t p1 = d->applet_key ? TC_SE_ID_GEN_REPLACE : 0x00;
    if ((rc = secure(d, TC_SE_ID_INS_GENERATE, p1, 0x00, nonce, sizeof nonce, true, &sw)) != TC_OK)
        return fail_host(d, S, rc, "GENERATE KEY");
    if (sw != 0x9000)
        return reject(d, S, sw == 0x6985 ? TC_STATION_R_CARD_STATE : TC_STATION_R_CARD_ERROR,
                      "GENERATE KEY answered %04X (%s)", (unsigned)sw, tc_sw_text(sw));
    /* Response: 86 41 04||X||Y, 9E LL signature. */
    struct tc_cursor c;
    struct tc_tlv pub, sig;
    tc_cursor_init(&c, d->buf, d->blen);
    if (tc_tlv_next(&c, &pub) != TC_OK || tc_tlv_next(&c, &sig) != TC_OK ||
        tc_cursor_expect_end(&c) != TC_OK || pub.tag != TC_SE_ID_TAG_PUBLIC ||
        pub.len != TC_PKI_P256_POINT || sig.tag != TC_SE_ID_TAG_SIGNATURE || sig.len == 0 ||
        sig.len > 80)
        return reject(d, S, TC_STATION_R_CARD_ERROR, "GENERATE KEY response malformed");
    uint8_t popsig[80];
    size_t poplen = sig.len;
    memcpy(popsig, sig.value, poplen);
    memcpy(d->spki, p256_spki_prefix, sizeof p256_spki_prefix);
    memcpy(d->spki + sizeof p256_spki_prefix, pub.value, TC_PKI_P256_POINT);
    SHA256(d->spki, sizeof d->spki, d->pub_sha);
    point(d, TC_STATION_PT_GENERATED);
    st_event_init(st, &d->id, TC_AUDIT_KEYPAIR_GENERATED, &ev);
    ev.fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
    memcpy(ev.pubkey_sha256, d->pub_sha, 32);
    TC_GUARD(queue(d, &ev));
    point(d, TC_STATION_PT_KEYPAIR);

    /* The batch CA verifies the PoP (EID || point || nonce) and every other
     * issuance gate before it signs (docs/pki.md). */
    struct tc_pki_issuer *iss = NULL;
    rc = issuer_take(st, &iss);
    if (rc != TC_OK)
        return reject(d, S, TC_STATION_R_HSM, "batch CA: %s", tc_error_last()->msg);
    struct tc_pki_device_req req = {.eid = d->id.eid_text,
                                    .spki = d->spki,
                                    .spki_len = sizeof d->spki,
                                    .nonce = nonce,
                                    .pop = popsig,
                                    .pop_len = poplen,
                                    .station_id = st->station_id,
                                    .production_time = (int64_t)time(NULL)};
    tc_buf_reset(&d->cert);
    rc = tc_pki_device_issue(iss, &req, &d->cert, d->serial);
    issuer_give(st, iss);
    if (rc == TC_ERR_HSM || rc == TC_ERR_AUTH)
        return reject(d, S, TC_STATION_R_HSM, "signing the certificate: %s", tc_error_last()->msg);
    if (rc != TC_OK)
        return reject(d, S, TC_STATION_R_POP, "issuance refused: %s", tc_error_last()->msg);
    SHA256(d->cert.data, d->cert.len, d->cert_sha);
    d->pend_cert = d->cert.data;
    d->pend_cert_len = d->cert.len;
    st_event_init(st, &d->id, TC_AUDIT_CERT_ISSUED, &ev);
    ev.fields |= TC_AUDIT_HAS_PUBKEY_SHA256 | TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
    memcpy(ev.pubkey_sha256, d->pub_sha, 32);
    /* DER INTEGER contents: issued serials are 16 octets, positive, minimal. */
    size_t skip = 0;
    while (skip + 1 < TC_PKI_SERIAL_LEN && d->serial[skip] == 0 && d->serial[skip + 1] < 0x80)
        skip++;
    memcpy(ev.cert_serial, d->serial + skip, TC_PKI_SERIAL_LEN - skip);
    ev.cert_serial_len = TC_PKI_SERIAL_LEN - skip;
    memcpy(ev.cert_sha256, d->cert_sha, 32);
    TC_GUARD(queue(d, &ev));
    /* key pair generated + certificate issued: durable before the
     * certificate goes to the card, so a crash never loses an issuance. */
    TC_GUARD(flush(d));
    d->issued_open = true;
    d->res->cert_issued = true;
    memcpy(d->res->serial, ev.cert_serial, ev.cert_serial_len);
    d->res->serial_len = ev.cert_serial_len;
    memcpy(d->res->cert_sha256, d->cert_sha, 32);
    point(d, TC_STATION_PT_ISSUED);

    /* STORE CERTIFICATE as one last block (P1 80, P2 00); the host chains
     * the APDU (ISO/IEC 7816-4 §5.3.3) and the card reassembles. */
    uint8_t *send = d->cmd;
    TC_ENSURE(d->cert.len <= sizeof d->cmd, TC_ERR_INTERNAL);
    memcpy(send, d->cert.data, d->cert.len);
    if (st->cfg.hooks.corrupt_cert != NULL)
        st->cfg.hooks.corrupt_cert(st->cfg.hooks.arg, send, d->cert.len);
    uint8_t certcopy[TC_SE_MAX_CERT];
    TC_ENSURE(d->cert.len <= sizeof certcopy, TC_ERR_INTERNAL);
    memcpy(certcopy, send, d->cert.len);
    if ((rc = secure(d, TC_SE_ID_INS_STORE_CERT, 0x80, 0x00, certcopy, d->cert.len, false, &sw)) !=
        TC_OK)
        return fail_host(d, S, rc, "STORE CERTIFICATE");
    if (sw != 0x9000)
        return reject(d, S, TC_STATION_R_CARD_ERROR, "STORE CERTIFICATE answered %04X (%s)",
                      (unsigned)sw, tc_sw_text(sw));
    point(d, TC_STATION_PT_STORED_CARD);
    uint8_t back[32];
    bool present = false;
    if ((rc = read_cert(d, true, back, &present)) != TC_OK)
        return fail_card(d, S, rc, "reading the certificate back");
    if (!present || !tc_ct_equal(back, d->cert_sha, 32))
        return reject(d, S, TC_STATION_R_CERT_MISMATCH,
                      "the certificate read back differs from the one issued");
    close_session(d);
    st_event_init(st, &d->id, TC_AUDIT_CERT_STORED, &ev);
    ev.fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
    memcpy(ev.cert_serial, d->res->serial, d->res->serial_len);
    ev.cert_serial_len = d->res->serial_len;
    memcpy(ev.cert_sha256, back, 32);
    TC_GUARD(queue(d, &ev));
    point(d, TC_STATION_PT_STORED);
    return TC_OK;
}

/* Step 6: SECURED, read back; then the provisioned record. */
static tc_err step_secure(struct dev *d)
{
    const enum tc_station_step S = TC_STATION_STEP_SECURE;
    struct tc_station *st = d->st;
    tc_err rc;
    uint16_t sw = 0;
    if ((rc = open_session(d, &d->dprov, st->device_kvn, true)) != TC_OK)
        return fail_host(d, S, rc, "ISD session");
    /* GP CS 2.3 §11.10 SET STATUS P1 80: OP_READY -> INITIALIZED -> SECURED,
     * one transition at a time (§5.1.1). */
    if (d->lc == TC_SE_LC_OP_READY) {
        if ((rc = secure(d, 0xF0, 0x80, TC_SE_LC_INITIALIZED, NULL, 0, false, &sw)) != TC_OK ||
            (rc = sw_ok(sw, "SET STATUS INITIALIZED")) != TC_OK)
            return fail_card(d, S, rc, "SET STATUS");
        point(d, TC_STATION_PT_INITIALIZED);
    }
    if ((rc = secure(d, 0xF0, 0x80, TC_SE_LC_SECURED, NULL, 0, false, &sw)) != TC_OK ||
        (rc = sw_ok(sw, "SET STATUS SECURED")) != TC_OK)
        return fail_card(d, S, rc, "SET STATUS");
    point(d, TC_STATION_PT_SECURED);
    if ((rc = secure(d, 0xCA, 0x9F, 0x70, NULL, 0, true, &sw)) != TC_OK ||
        (rc = sw_ok(sw, "GET DATA 9F70")) != TC_OK)
        return fail_card(d, S, rc, "reading the life cycle back");
    close_session(d);
    if (d->blen != 4 || d->buf[0] != 0x9F || d->buf[1] != 0x70 || d->buf[2] != 1 ||
        d->buf[3] != TC_SE_LC_SECURED)
        return reject(d, S, TC_STATION_R_LIFECYCLE, "the card is not SECURED after SET STATUS");
    return TC_OK;
}

static tc_err record_provisioned(struct dev *d, uint8_t prev)
{
    struct tc_audit_event ev;
    st_event_init(d->st, &d->id, TC_AUDIT_LIFECYCLE_CHANGED, &ev);
    ev.fields |= TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
    ev.lifecycle = TC_SE_LC_SECURED;
    ev.prev_lifecycle = prev;
    TC_GUARD(queue(d, &ev));
    /* certificate stored + life cycle changed (provisioned) */
    TC_GUARD(flush(d));
    d->issued_open = false;
    d->res->outcome = TC_STATION_PROVISIONED;
    point(d, TC_STATION_PT_DONE);
    return TC_OK;
}

/* A run interrupted after SET STATUS SECURED: the card is complete if it
 * holds exactly the certificate the log says was stored. */
static tc_err finish_secured(struct dev *d)
{
    uint8_t sha[32];
    bool present = false;
    tc_err rc = select_aid(d, identity_aid, sizeof identity_aid, "SELECT identity applet");
    if (rc == TC_OK)
        rc = read_cert(d, false, sha, &present);
    if (rc != TC_OK)
        return fail_card(d, TC_STATION_STEP_SECURE, rc, "reading the certificate");
    /* The log ends with the certificate stored, or issued (the run died
     * between SET STATUS and the commit of "stored" + "SECURED"): either way
     * the card must hold exactly that certificate. */
    bool stored = d->prior.state == TC_REG_CERT_STORED && d->prior.cert_stored;
    bool issued = d->prior.state == TC_REG_CERT_ISSUED && d->prior.has_cert;
    if ((!stored && !issued) || !present || !tc_ct_equal(sha, d->prior.cert_sha256, 32))
        return reject(d, TC_STATION_STEP_CARD, TC_STATION_R_CARD_STATE,
                      "card is SECURED but the log has no certificate matching it");
    if (issued) {
        struct tc_audit_event ev;
        st_event_init(d->st, &d->id, TC_AUDIT_CERT_STORED, &ev);
        ev.fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
        memcpy(ev.cert_serial, d->prior.cert_serial, d->prior.cert_serial_len);
        ev.cert_serial_len = d->prior.cert_serial_len;
        memcpy(ev.cert_sha256, sha, 32);
        TC_GUARD(queue(d, &ev));
    }
    memcpy(d->res->serial, d->prior.cert_serial, d->prior.cert_serial_len);
    d->res->serial_len = d->prior.cert_serial_len;
    memcpy(d->res->cert_sha256, sha, 32);
    return record_provisioned(d,
                              d->prior.lifecycle != 0 ? d->prior.lifecycle : TC_SE_LC_INITIALIZED);
}

static tc_err pipeline(struct dev *d)
{
    TC_GUARD(step_card(d));
    TC_GUARD(gate_fresh(d));
    if (d->lc == TC_SE_LC_SECURED)
        return finish_secured(d);
    struct tc_audit_event ev;
    st_event_init(d->st, &d->id, TC_AUDIT_CARD_RECEIVED, &ev);
    ev.fields |= TC_AUDIT_HAS_LIFECYCLE;
    ev.lifecycle = d->lc;
    if (d->has_transport) {
        ev.fields |= TC_AUDIT_HAS_KVN;
        ev.kvn = d->st->transport_kvn;
    }
    TC_GUARD(queue(d, &ev));
    point(d, TC_STATION_PT_RECEIVED);
    TC_GUARD(step_inject(d));
    TC_GUARD(step_confirm(d));
    TC_GUARD(step_identity(d));
    uint8_t prev = d->lc;
    TC_GUARD(step_secure(d));
    return record_provisioned(d, prev);
}

tc_err tc_station_provision(struct tc_station *st, struct tc_transport *t,
                            struct tc_station_result *res)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(st != NULL && t != NULL && res != NULL, TC_ERR_ARG);
    memset(res, 0, sizeof *res);
    struct dev *d = calloc(1, sizeof *d);
    TC_ENSURE(d != NULL, TC_ERR_NOMEM);
    d->st = st;
    d->t = t;
    d->res = res;
    tc_buf_init_heap(&d->cert, TC_PKI_CERT_MAX);
    d->buf = malloc(ST_RESP_MAX);
    TC_CHECK(d->buf != NULL, TC_ERR_NOMEM);

    tc_err rc = pipeline(d);
    close_session(d);
    if (rc == TC_OK || (rc == TC_ERR_STATE && (res->outcome == TC_STATION_ALREADY_DONE ||
                                               res->outcome == TC_STATION_ALREADY_REJECTED))) {
        tc_error_clear();
        ret = TC_OK;
        goto out;
    }
    if (res->outcome != TC_STATION_REJECTED) {
        /* Not a verdict: the registry failed (or a bug). Nothing more is
         * recorded; the runner stops. */
        ret = rc;
        goto out;
    }
    /* A gate failed. No certificate of this run stays valid, then the
     * rejection is recorded (it needs the EID: without one the card could
     * not even be identified and there is no device to record). */
    if (res->eid[0] == '\0') {
        ret = TC_OK;
        goto out;
    }
    if (d->issued_open) {
        TC_TRY(
            revoke(d, res->serial, res->serial_len, res->cert_sha256, CRL_CESSATION_OF_OPERATION));
        d->issued_open = false;
        res->cert_revoked = true;
    }
    struct tc_audit_event ev;
    st_event_init(st, &d->id, TC_AUDIT_DEVICE_REJECTED, &ev);
    ev.fields |= TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_STEP;
    ev.reason = res->reason;
    ev.step = res->step;
    TC_TRY(queue(d, &ev));
    TC_TRY(flush(d));
    tc_error_clear();
    ret = TC_OK;
out:
    if (d->devks_ok)
        tc_hsm_keyset_destroy(st->cfg.hsm, &d->devks);
    tc_scp03_host_wipe(&d->host);
    tc_buf_free(&d->cert);
    if (d->buf != NULL)
        tc_memzero(d->buf, ST_RESP_MAX);
    free(d->buf);
    tc_memzero(d, sizeof *d);
    free(d);
    return ret;
}
