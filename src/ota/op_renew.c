/*
 * renew-cert: a new identity key pair and certificate for a deployed device
 * (docs/ota.md, "Renew the device certificate"; the card side is the
 * identity applet's renewal key pair, docs/identity-applet.md "Renewal").
 *
 *   1. SCP03 session to the identity applet with the device's keyset
 *   2. intent 1, GENERATE KEY P1 02 with a fresh 16-byte server nonce: the
 *      card keeps the new key pair pending (the old one keeps signing TLS)
 *      and answers the public key and its proof of possession, verified
 *      here (docs/pki.md) before anything is issued
 *   3. the batch CA issues the certificate (the server's issue service,
 *      the line's profile); its DER goes to the registry's side table
 *   4. intent 2 with keypair-generated + cert-issued (durable before the
 *      certificate reaches the card), STORE CERTIFICATE in blocks: the last
 *      block promotes the pending key on the card in one NVM commit
 *   5. GET CERTIFICATE reads it back; it must be the issued DER byte for
 *      byte (so its SHA-256 is the logged one)
 *   5a. a STORE refused or a read-back that differs is decided by what the
 *      card proves, GET PUBLIC KEY P1 00 in the same R-MAC'd session: the
 *      active key is not the new one → the new certificate is revoked
 *      (cessationOfOperation), the device keeps its old identity; the
 *      active key IS the new one (the old private key is gone) → the same
 *      certificate is stored again and read back, up to STORE_RETRIES
 *      times; if it still cannot be stored the operation fails with the
 *      NEW certificate left valid (the only one whose key the card holds)
 *      and the old one revoked (superseded: its key no longer exists)
 *   6. only then the old certificate is revoked (superseded), and op-done
 *      goes out with cert-stored + cert-revoked
 *
 * Resume (the log says how far an earlier run got):
 *   - intent 1 only: nothing was issued; redo from GENERATE KEY (a new
 *     pending key pair replaces the earlier one on the card)
 *   - intent 2: the certificate was issued and logged. GET PUBLIC KEY: the
 *     active key is the certificate's → it was stored, roll forward to the
 *     read-back and the revocation; the pending key is the certificate's →
 *     store it again (reused, not re-issued); neither → it can never be
 *     stored: it is revoked (cessationOfOperation) and the operation fails,
 *     so no issued certificate is left valid beside the device's own.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <trustchain/crypto.h>
#include <trustchain/ota_renew.h>
#include <trustchain/registry.h>
#include <trustchain/se.h>

enum {
    PC_START = 0,
    PC_AUTH,        /* AUTH to the applet sent */
    PC_GENERATE,    /* GENERATE KEY P1 02 sent */
    PC_STORE,       /* a STORE CERTIFICATE block sent */
    PC_READ,        /* a GET CERTIFICATE sent */
    PC_PUB_ACTIVE,  /* resume: GET PUBLIC KEY P1 00 sent */
    PC_PUB_PENDING, /* resume: GET PUBLIC KEY P1 01 sent */
    PC_CHECK,       /* GET PUBLIC KEY P1 00 after a refused STORE / differing read-back */
};

#define STEP_GENERATE 1u
#define STEP_STORE    2u
#define BLOCK         200u /* STORE CERTIFICATE block / GET CERTIFICATE Ne */
#define STORE_RETRIES 2u   /* stores of the same certificate after the key was promoted */

static const uint8_t applet_aid[] = {TC_SE_IDENTITY_AID};

struct renew_state {
    const struct tc_ota_cert_services *svc;
    bool resumed;  /* intent 2 on the log: the certificate exists */
    bool have_new; /* new_* describe this operation's certificate */
    uint8_t nonce[TC_PKI_NONCE_LEN];
    uint8_t new_pub_sha[TC_AUDIT_HASH_LEN];
    uint8_t new_cert_sha[TC_AUDIT_HASH_LEN];
    uint8_t new_serial[TC_AUDIT_SERIAL_MAX];
    size_t new_serial_len;
    bool have_old;
    bool renewable; /* when queued: certificate stored, not locked, revoked, ... */
    uint8_t old_serial[TC_AUDIT_SERIAL_MAX];
    size_t old_serial_len;
    uint8_t old_cert_sha[TC_AUDIT_HASH_LEN];
    size_t cert_len;
    size_t off;
    uint8_t block;
    uint8_t retries;    /* re-stores after the card proved the new key active */
    bool store_refused; /* PC_CHECK after a refused STORE (else a differing read-back) */
};

_Static_assert(sizeof(struct renew_state) <= TC_OTA_SCRATCH, "renew state fits the scratch");

/* ------------------------------------------------------------------ services per engine */

#define ENGINES_MAX 16u

static struct {
    const struct tc_ota_ops *engine;
    const struct tc_ota_cert_services *svc;
} attached[ENGINES_MAX];
static pthread_mutex_t attached_lock = PTHREAD_MUTEX_INITIALIZER;

tc_err tc_ota_renew_attach(const struct tc_ota_ops *engine, const struct tc_ota_cert_services *svc)
{
    TC_ENSURE(engine != NULL && svc != NULL && svc->reg != NULL && svc->issue != NULL &&
                  svc->revoke != NULL,
              TC_ERR_ARG);
    tc_err ret = TC_FAIL(TC_ERR_NOMEM, "renew-cert: %u engines attached", ENGINES_MAX);
    pthread_mutex_lock(&attached_lock);
    for (size_t i = 0; i < ENGINES_MAX; i++) {
        if (attached[i].engine == engine || attached[i].engine == NULL) {
            attached[i].engine = engine;
            attached[i].svc = svc;
            tc_error_clear();
            ret = TC_OK;
            break;
        }
    }
    pthread_mutex_unlock(&attached_lock);
    return ret;
}

void tc_ota_renew_detach(const struct tc_ota_ops *engine)
{
    pthread_mutex_lock(&attached_lock);
    for (size_t i = 0; i < ENGINES_MAX; i++)
        if (attached[i].engine == engine && engine != NULL)
            attached[i].engine = NULL, attached[i].svc = NULL;
    pthread_mutex_unlock(&attached_lock);
}

static const struct tc_ota_cert_services *services_of(const struct tc_ota_ops *engine)
{
    const struct tc_ota_cert_services *svc = NULL;
    pthread_mutex_lock(&attached_lock);
    for (size_t i = 0; i < ENGINES_MAX && svc == NULL; i++)
        if (attached[i].engine == engine && engine != NULL)
            svc = attached[i].svc;
    pthread_mutex_unlock(&attached_lock);
    return svc;
}

/* ------------------------------------------------------------------ helpers */

/* RFC 5480 §2: SubjectPublicKeyInfo of an uncompressed P-256 point. */
static void spki_of(const uint8_t pub[static TC_SE_EC_PUB_LEN], uint8_t out[static 91])
{
    static const uint8_t prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    memcpy(out, prefix, sizeof prefix);
    memcpy(out + sizeof prefix, pub, TC_SE_EC_PUB_LEN);
}

static tc_err sha256(const uint8_t *p, size_t n, uint8_t out[static TC_SHA256_LEN])
{
    struct tc_iov iov = {.p = p, .len = n};
    return tc_sha256_iov(&iov, 1, out);
}

static void auth(struct tc_ota_op_run *run, struct tc_ota_act *a)
{
    a->kind = TC_OTA_ACT_AUTH;
    a->kvn = 0; /* the device's current keyset */
    memcpy(a->aid, applet_aid, sizeof applet_aid);
    a->aid_len = sizeof applet_aid;
    run->pc = PC_AUTH;
}

static void send(struct tc_ota_act *a, uint8_t ins, uint8_t p1, uint8_t p2, size_t lc, size_t le)
{
    a->kind = TC_OTA_ACT_SEND;
    a->cmd = (struct tc_apdu){.cla = TC_SE_ID_CLA,
                              .ins = ins,
                              .p1 = p1,
                              .p2 = p2,
                              .lc = lc,
                              .has_le = le > 0,
                              .le = (uint32_t)le};
}

static void fail(struct tc_ota_act *a, uint16_t reason)
{
    a->kind = TC_OTA_ACT_FAIL;
    a->reason = reason;
}

static struct tc_audit_event *add_event(struct tc_ota_act *a, enum tc_audit_event_type type,
                                        uint32_t fields)
{
    struct tc_audit_event *ev = &a->events[a->nevents++];
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->fields = fields;
    return ev;
}

static void revoked_event(struct tc_ota_act *a, const uint8_t *serial, size_t serial_len,
                          const uint8_t sha[TC_AUDIT_HASH_LEN], uint16_t reason)
{
    struct tc_audit_event *ev =
        add_event(a, TC_AUDIT_CERT_REVOKED,
                  TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_CERT_SHA256);
    memcpy(ev->cert_serial, serial, serial_len);
    ev->cert_serial_len = serial_len;
    memcpy(ev->cert_sha256, sha, TC_AUDIT_HASH_LEN);
    ev->reason = reason;
}

/* The issued certificate's DER, from the registry's side table (checked
 * against its hash there). */
static tc_err new_cert(const struct renew_state *st, uint8_t *der, size_t der_size, size_t *len)
{
    TC_GUARD(tc_registry_cert_get(st->svc->reg, st->new_cert_sha, der, der_size, len));
    TC_ENSURE_MSG(*len <= TC_SE_MAX_CERT, TC_ERR_RANGE, "renew-cert: certificate of %zu bytes",
                  *len);
    return TC_OK;
}

/* ------------------------------------------------------------------ what the log says */

struct history {
    uint64_t op_id;
    struct tc_registry_device before; /* the device when the operation was queued */
    struct renew_state *st;
};

static tc_err history_fn(void *arg, uint64_t index, const struct tc_audit_event *ev,
                         const uint8_t *event, size_t len)
{
    struct history *h = arg;
    (void)event;
    (void)len;
    if (index < h->op_id)
        return tc_registry_fold(&h->before, index, ev);
    if (ev->type == TC_AUDIT_CERT_ISSUED && (ev->fields & TC_AUDIT_HAS_OP_ID) &&
        ev->op_id == h->op_id) {
        struct renew_state *st = h->st;
        memcpy(st->new_pub_sha, ev->pubkey_sha256, TC_AUDIT_HASH_LEN);
        memcpy(st->new_cert_sha, ev->cert_sha256, TC_AUDIT_HASH_LEN);
        memcpy(st->new_serial, ev->cert_serial, ev->cert_serial_len);
        st->new_serial_len = ev->cert_serial_len;
        st->have_new = true;
    }
    return TC_OK;
}

/* The old certificate (the device's when the operation was queued) and,
 * once intent 2 is on the log, this operation's own. */
static tc_err load_history(struct tc_ota_op_run *run, struct renew_state *st)
{
    struct history h;
    memset(&h, 0, sizeof h);
    h.op_id = run->op->id;
    h.st = st;
    const struct tc_registry_device *d = run->dev;
    TC_GUARD(tc_registry_device_history(st->svc->reg, d->eid, d->eid_len, history_fn, &h));
    enum tc_registry_state s = h.before.state;
    st->renewable = h.before.has_cert && h.before.cert_stored &&
                    (s == TC_REG_PROVISIONED || s == TC_REG_CERT_STORED);
    if (h.before.has_cert) {
        memcpy(st->old_serial, h.before.cert_serial, h.before.cert_serial_len);
        st->old_serial_len = h.before.cert_serial_len;
        memcpy(st->old_cert_sha, h.before.cert_sha256, TC_AUDIT_HASH_LEN);
        st->have_old = true;
    }
    return TC_OK;
}

/* ------------------------------------------------------------------ steps */

static tc_err generate(struct tc_ota_op_run *run, struct renew_state *st, struct tc_ota_act *a)
{
    /* A fresh nonce per attempt: the PoP cannot be replayed from an earlier
     * GENERATE KEY. */
    TC_GUARD(tc_random(st->nonce, sizeof st->nonce));
    memcpy(a->data, st->nonce, sizeof st->nonce);
    send(a, TC_SE_ID_INS_GENERATE, TC_SE_ID_GEN_PENDING, 0x00, sizeof st->nonce, 256);
    a->intent = run->op->step < STEP_GENERATE ? STEP_GENERATE : 0;
    run->pc = PC_GENERATE;
    return TC_OK;
}

/* The next STORE CERTIFICATE block (P1 b8 last, P2 block number). */
static tc_err store_block(struct tc_ota_op_run *run, struct renew_state *st, struct tc_ota_act *a)
{
    uint8_t der[TC_SE_MAX_CERT];
    size_t len = 0;
    tc_err ret = TC_ERR_INTERNAL;
    TC_TRY(new_cert(st, der, sizeof der, &len));
    TC_CHECK(st->off < len, TC_ERR_STATE);
    size_t n = len - st->off < BLOCK ? len - st->off : BLOCK;
    memcpy(a->data, der + st->off, n);
    bool last = st->off + n == len;
    send(a, TC_SE_ID_INS_STORE_CERT, last ? 0x80 : 0x00, st->block, n, 0);
    st->cert_len = len;
    run->pc = PC_STORE;
    ret = TC_OK;
out:
    return ret;
}

static void read_block(struct tc_ota_op_run *run, struct renew_state *st, struct tc_ota_act *a)
{
    /* P1 P2 = offset, as READ BINARY (docs/identity-applet.md). */
    send(a, TC_SE_ID_INS_GET_CERT, (uint8_t)(st->off >> 8), (uint8_t)st->off, 0, BLOCK);
    run->pc = PC_READ;
}

/* GENERATE KEY answered: check the PoP, have the certificate issued, log
 * it, send its first block. */
static tc_err generated(struct tc_ota_op_run *run, struct renew_state *st,
                        const struct tc_ota_result *res, struct tc_ota_act *a)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t spki[91], der_mem[TC_PKI_CERT_MAX];
    struct tc_buf der;
    tc_buf_init_fixed(&der, der_mem, sizeof der_mem);
    struct tc_cursor c;
    struct tc_tlv pub, sig;
    tc_cursor_init(&c, res->data, res->len);
    /* 86 41 04‖X‖Y, 9E LL signature, nothing else. */
    if (tc_tlv_next(&c, &pub) != TC_OK || pub.tag != TC_SE_ID_TAG_PUBLIC ||
        pub.len != TC_SE_EC_PUB_LEN || pub.value[0] != 0x04 || tc_tlv_next(&c, &sig) != TC_OK ||
        sig.tag != TC_SE_ID_TAG_SIGNATURE || tc_cursor_expect_end(&c) != TC_OK) {
        tc_error_clear();
        fail(a, TC_OTA_FAIL_CARD);
        ret = TC_OK;
        goto out;
    }
    spki_of(pub.value, spki);
    /* docs/pki.md: the PoP covers EID ‖ point ‖ this run's nonce. */
    if (tc_pki_pop_verify(run->eid, spki, sizeof spki, st->nonce, sig.value, sig.len) != TC_OK) {
        tc_error_clear();
        fail(a, TC_OTA_FAIL_CARD);
        ret = TC_OK;
        goto out;
    }
    struct tc_ota_cert_request rq = {.eid = run->eid,
                                     .batch = run->dev->batch,
                                     .spki = spki,
                                     .spki_len = sizeof spki,
                                     .nonce = st->nonce,
                                     .pop = sig.value,
                                     .pop_len = sig.len};
    /* A failure here is the server's: the operation stays pending and the
     * next connection starts again from GENERATE KEY. */
    TC_TRY(st->svc->issue(st->svc->arg, &rq, &der));
    struct tc_pki_device_info info;
    TC_TRY(tc_pki_check_device(der.data, der.len, &info));
    TC_CHECK_MSG(der.len <= TC_SE_MAX_CERT, TC_ERR_RANGE, "renew-cert: certificate of %zu bytes",
                 der.len);
    TC_CHECK(info.serial_len <= TC_AUDIT_SERIAL_MAX, TC_ERR_RANGE);
    TC_TRY(sha256(spki, sizeof spki, st->new_pub_sha));
    TC_TRY(tc_registry_cert_put(st->svc->reg, der.data, der.len, st->new_cert_sha));
    memcpy(st->new_serial, info.serial, info.serial_len);
    st->new_serial_len = info.serial_len;
    st->have_new = true;
    st->off = 0;
    st->block = 0;
    TC_TRY(store_block(run, st, a));
    /* Durable before the certificate leaves the server. */
    a->intent = STEP_STORE;
    struct tc_audit_event *ev =
        add_event(a, TC_AUDIT_KEYPAIR_GENERATED, TC_AUDIT_HAS_PUBKEY_SHA256);
    memcpy(ev->pubkey_sha256, st->new_pub_sha, TC_AUDIT_HASH_LEN);
    ev =
        add_event(a, TC_AUDIT_CERT_ISSUED,
                  TC_AUDIT_HAS_PUBKEY_SHA256 | TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256);
    memcpy(ev->pubkey_sha256, st->new_pub_sha, TC_AUDIT_HASH_LEN);
    memcpy(ev->cert_serial, st->new_serial, st->new_serial_len);
    ev->cert_serial_len = st->new_serial_len;
    memcpy(ev->cert_sha256, st->new_cert_sha, TC_AUDIT_HASH_LEN);
    ret = TC_OK;
out:
    tc_memzero(der_mem, sizeof der_mem);
    return ret;
}

/* The old certificate is revoked (superseded) and logged so: the card has
 * proved its active key is the new one. */
static tc_err revoke_old(struct tc_ota_op_run *run, struct renew_state *st, struct tc_ota_act *a)
{
    if (!st->have_old)
        return TC_OK;
    if (!(st->old_serial_len == st->new_serial_len &&
          memcmp(st->old_serial, st->new_serial, st->old_serial_len) == 0))
        TC_GUARD(st->svc->revoke(st->svc->arg, run->dev->batch, st->old_serial, st->old_serial_len,
                                 TC_OTA_CRL_SUPERSEDED));
    revoked_event(a, st->old_serial, st->old_serial_len, st->old_cert_sha, TC_OTA_CRL_SUPERSEDED);
    return TC_OK;
}

/* The read-back matched: revoke the old certificate, then op-done. */
static tc_err confirmed(struct tc_ota_op_run *run, struct renew_state *st, struct tc_ota_act *a)
{
    struct tc_audit_event *ev =
        add_event(a, TC_AUDIT_CERT_STORED, TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256);
    memcpy(ev->cert_serial, st->new_serial, st->new_serial_len);
    ev->cert_serial_len = st->new_serial_len;
    memcpy(ev->cert_sha256, st->new_cert_sha, TC_AUDIT_HASH_LEN);
    TC_GUARD(revoke_old(run, st, a));
    a->kind = TC_OTA_ACT_DONE;
    return TC_OK;
}

/* The issued certificate will never be stored: revoke it, then fail. */
static tc_err abandon(struct tc_ota_op_run *run, struct renew_state *st, struct tc_ota_act *a,
                      uint16_t reason)
{
    if (st->have_new) {
        TC_GUARD(st->svc->revoke(st->svc->arg, run->dev->batch, st->new_serial, st->new_serial_len,
                                 TC_OTA_CRL_CESSATION));
        revoked_event(a, st->new_serial, st->new_serial_len, st->new_cert_sha,
                      TC_OTA_CRL_CESSATION);
    }
    fail(a, reason);
    return TC_OK;
}

/* The new key is active on the card but its certificate could not be
 * stored: the new certificate stays valid (the only one whose key the card
 * holds), the old one is revoked (superseded: its private key is gone), and
 * the operation fails for an operator to look at. */
static tc_err kept(struct tc_ota_op_run *run, struct renew_state *st, struct tc_ota_act *a)
{
    TC_GUARD(revoke_old(run, st, a));
    fail(a, TC_OTA_FAIL_READBACK);
    return TC_OK;
}

/* The public key in a GET PUBLIC KEY answer is the issued certificate's. */
static bool is_new_key(const struct renew_state *st, const struct tc_ota_result *res)
{
    uint8_t spki[91], h[TC_SHA256_LEN];
    if (res->sw != 0x9000 || res->len != 2 + TC_SE_EC_PUB_LEN ||
        res->data[0] != TC_SE_ID_TAG_PUBLIC || res->data[1] != TC_SE_EC_PUB_LEN)
        return false;
    spki_of(res->data + 2, spki);
    if (sha256(spki, sizeof spki, h) != TC_OK) {
        tc_error_clear();
        return false;
    }
    return tc_ct_equal(h, st->new_pub_sha, sizeof h);
}

static tc_err renew_step(struct tc_ota_op_run *run, struct renew_state *st,
                         const struct tc_ota_result *res, struct tc_ota_act *a)
{
    switch (run->pc) {
    case PC_START:
        memset(st, 0, sizeof *st);
        st->svc = services_of(run->engine);
        if (st->svc == NULL) {
            fail(a, TC_OTA_FAIL_UNSUPPORTED);
            return TC_OK;
        }
        TC_GUARD(load_history(run, st));
        if (!st->have_old || !st->renewable) {
            /* Nothing to renew (the line issues first), or a device that is
             * locked, rejected, revoked or decommissioned. */
            fail(a, TC_OTA_FAIL_STATE);
            return TC_OK;
        }
        st->resumed = run->op->step >= STEP_STORE;
        if (st->resumed && !st->have_new)
            return TC_FAIL(TC_ERR_STATE, "renew-cert: intent %u without its certificate",
                           (unsigned)run->op->step);
        auth(run, a);
        return TC_OK;
    case PC_AUTH:
        if (res->rc != TC_OK) {
            fail(a, TC_OTA_FAIL_AUTH);
            return TC_OK;
        }
        if (st->resumed) {
            send(a, TC_SE_ID_INS_GET_PUBLIC, 0x00, 0x00, 0, 256);
            run->pc = PC_PUB_ACTIVE;
            return TC_OK;
        }
        return generate(run, st, a);
    case PC_GENERATE:
        if (res->sw != 0x9000) {
            fail(a, TC_OTA_FAIL_CARD);
            return TC_OK;
        }
        return generated(run, st, res, a);
    case PC_PUB_ACTIVE:
        if (is_new_key(st, res)) {
            /* Stored by an earlier run (its answer was lost): read back. */
            uint8_t der[TC_SE_MAX_CERT];
            size_t len = 0;
            TC_GUARD(new_cert(st, der, sizeof der, &len));
            st->cert_len = len;
            st->off = 0;
            read_block(run, st, a);
            return TC_OK;
        }
        send(a, TC_SE_ID_INS_GET_PUBLIC, TC_SE_ID_PUB_PENDING, 0x00, 0, 256);
        run->pc = PC_PUB_PENDING;
        return TC_OK;
    case PC_PUB_PENDING:
        if (is_new_key(st, res)) {
            /* The issued certificate still fits the pending key: reuse it. */
            st->off = 0;
            st->block = 0;
            return store_block(run, st, a);
        }
        return abandon(run, st, a, TC_OTA_FAIL_STATE);
    case PC_STORE:
        if (res->sw != 0x9000) {
            /* Refused: which key the card now holds decides (PC_CHECK). */
            send(a, TC_SE_ID_INS_GET_PUBLIC, 0x00, 0x00, 0, 256);
            run->pc = PC_CHECK;
            st->store_refused = true;
            return TC_OK;
        }
        st->off += st->cert_len - st->off < BLOCK ? st->cert_len - st->off : BLOCK;
        st->block++;
        if (st->off < st->cert_len)
            return store_block(run, st, a);
        st->off = 0;
        read_block(run, st, a);
        return TC_OK;
    case PC_READ: {
        uint8_t der[TC_SE_MAX_CERT];
        size_t len = 0;
        TC_GUARD(new_cert(st, der, sizeof der, &len));
        size_t want = len - st->off < BLOCK ? len - st->off : BLOCK;
        /* ISO/IEC 7816-4: 9000 with Ne bytes, 6282 when the end came
         * first. The stored certificate is one DER TLV, so matching every
         * byte of the issued one means it is exactly that certificate. */
        uint16_t expect = want < BLOCK ? 0x6282 : 0x9000;
        if (res->sw != expect || res->len != want || !tc_ct_equal(res->data, der + st->off, want)) {
            /* The card does not return what was issued: not confirmed.
             * Which key the card now holds decides (PC_CHECK). */
            send(a, TC_SE_ID_INS_GET_PUBLIC, 0x00, 0x00, 0, 256);
            run->pc = PC_CHECK;
            st->store_refused = false;
            return TC_OK;
        }
        st->off += want;
        if (st->off < len) {
            read_block(run, st, a);
            return TC_OK;
        }
        return confirmed(run, st, a);
    }
    case PC_CHECK:
        if (is_new_key(st, res)) {
            /* The card proved (R-MAC) that the new key is its active one:
             * the old private key is gone, so the new certificate must not
             * be revoked. Store it again and read it back. */
            if (st->retries < STORE_RETRIES) {
                st->retries++;
                st->off = 0;
                st->block = 0;
                return store_block(run, st, a);
            }
            return kept(run, st, a);
        }
        if (res->sw != 0x9000 || res->len != 2 + TC_SE_EC_PUB_LEN ||
            res->data[0] != TC_SE_ID_TAG_PUBLIC || res->data[1] != TC_SE_EC_PUB_LEN)
            /* No proof either way: the dialog ends, the operation stays
             * pending and the next run starts from the log (intent 2). */
            return TC_FAIL(TC_ERR_CARD, "renew-cert: GET PUBLIC KEY answered %04X",
                           (unsigned)res->sw);
        /* Another key is active: the issued certificate will never be the
         * card's. */
        return abandon(run, st, a, st->store_refused ? TC_OTA_FAIL_CARD : TC_OTA_FAIL_READBACK);
    default:
        return TC_FAIL(TC_ERR_STATE, "renew-cert: bad state %d", run->pc);
    }
}

/* The state lives in run->scratch, which is only byte-aligned: copied in
 * and out. */
static tc_err renew_next(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                         struct tc_ota_act *a)
{
    struct renew_state st;
    memcpy(&st, run->scratch, sizeof st);
    tc_err rc = renew_step(run, &st, res, a);
    memcpy(run->scratch, &st, sizeof st);
    tc_memzero(&st, sizeof st);
    return rc;
}

const struct tc_ota_op_kind tc_ota_op_renew_cert = {
    .name = "renew-cert",
    .code = TC_OTA_OP_RENEW_CERT,
    .params = 0,
    .summary = "new key pair on the card (PoP), certificate by the batch CA, stored and read "
               "back, then the old certificate revoked",
    .next = renew_next,
};
