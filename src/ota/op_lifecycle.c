/*
 * lock, unlock, decommission: the card life cycle by SET STATUS (GP Card
 * Specification 2.3 §11.10, P1 '80' = the card, P2 = the target state;
 * §5.1.1: SECURED <-> CARD_LOCKED, any state -> TERMINATED).
 *
 * lock / unlock: session, GET DATA '9F70' (the card life cycle) under
 * R-MAC; already in the target state (an earlier run whose answer was lost)
 * rolls forward to done; otherwise the source state is required, intent 1,
 * SET STATUS, and GET DATA '9F70' again must show the target state.
 *
 * decommission: session, intent 1, SET STATUS TERMINATED; the card's
 * R-MAC'd 9000 is the proof (a TERMINATED card destroys its keysets, so
 * nothing can be read back under SCP03 afterwards); then the certificate is
 * revoked through the engine's hook and cert-revoked is logged with
 * lifecycle-changed. If the answer to SET STATUS is lost the device can
 * never connect again (its keys and identity key are gone): the operator
 * rolls forward with `trustchain device revoke` (docs/ota.md).
 */
#include <stdio.h>
#include <string.h>

#include <trustchain/ota_ops.h>

#include "ota/ops_internal.h"

/* RFC 5280 §5.3.1 CRLReason cessationOfOperation. */
#define CRL_CESSATION 5u

enum { PC_START = 0, PC_AUTH, PC_READ, PC_SET, PC_CHECK };

struct lc_state {
    uint8_t from, to;
    uint8_t prev; /* what the card said before SET STATUS */
};

static void get_lifecycle(struct tc_ota_act *a)
{
    /* GP CS 2.3 §11.3: GET DATA '9F70', the card life cycle state. */
    a->kind = TC_OTA_ACT_SEND;
    a->cmd = (struct tc_apdu){
        .cla = 0x80, .ins = 0xCA, .p1 = 0x9F, .p2 = 0x70, .has_le = true, .le = 256};
}

static void set_status(struct tc_ota_act *a, uint8_t to)
{
    a->kind = TC_OTA_ACT_SEND;
    a->cmd = (struct tc_apdu){.cla = 0x80, .ins = 0xF0, .p1 = 0x80, .p2 = to};
    a->intent = 1;
}

static void fail(struct tc_ota_act *a, uint16_t reason)
{
    a->kind = TC_OTA_ACT_FAIL;
    a->reason = reason;
}

/* A session with the device's current keyset to the ISD. */
static tc_err session(struct tc_ota_op_run *run, struct tc_ota_act *a)
{
    a->kind = TC_OTA_ACT_AUTH;
    run->pc = PC_AUTH;
    return TC_OK;
}

/* The session did not open: the operation fails (reason auth). */
static bool refused(const struct tc_ota_result *res, struct tc_ota_act *a)
{
    if (res->rc == TC_OK)
        return false;
    fail(a, TC_OTA_FAIL_AUTH);
    return true;
}

/* '9F70' 01 LC from a GET DATA answer. */
static bool lc_of(const struct tc_ota_result *r, uint8_t *lc)
{
    if (r->sw != 0x9000 || r->len != 4 || r->data[0] != 0x9F || r->data[1] != 0x70 ||
        r->data[2] != 0x01)
        return false;
    *lc = r->data[3];
    return true;
}

static void lc_event(struct tc_ota_act *a, uint8_t lc, uint8_t prev)
{
    struct tc_audit_event *ev = &a->events[a->nevents++];
    memset(ev, 0, sizeof *ev);
    ev->type = TC_AUDIT_LIFECYCLE_CHANGED;
    ev->fields = TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
    ev->lifecycle = lc;
    ev->prev_lifecycle = prev;
}

static tc_err toggle_next(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                          struct tc_ota_act *a, uint8_t from, uint8_t to)
{
    struct lc_state *st = (struct lc_state *)(void *)run->scratch;
    uint8_t lc = 0;
    switch (run->pc) {
    case PC_START:
        st->from = from;
        st->to = to;
        return session(run, a);
    case PC_AUTH:
        if (refused(res, a))
            return TC_OK;
        get_lifecycle(a);
        run->pc = PC_READ;
        return TC_OK;
    case PC_READ:
        if (!lc_of(res, &lc)) {
            fail(a, TC_OTA_FAIL_CARD);
            return TC_OK;
        }
        if (lc == to) {
            /* Already there: an earlier SET STATUS whose answer was lost.
             * Only a run that recorded its intent may claim it. */
            if (run->op->step == 0) {
                fail(a, TC_OTA_FAIL_STATE);
                return TC_OK;
            }
            lc_event(a, to, from);
            a->kind = TC_OTA_ACT_DONE;
            return TC_OK;
        }
        if (lc != from) {
            fail(a, TC_OTA_FAIL_STATE);
            return TC_OK;
        }
        st->prev = lc;
        set_status(a, to);
        run->pc = PC_SET;
        return TC_OK;
    case PC_SET:
        if (res->sw != 0x9000) {
            fail(a, TC_OTA_FAIL_CARD);
            return TC_OK;
        }
        get_lifecycle(a);
        run->pc = PC_CHECK;
        return TC_OK;
    case PC_CHECK:
        if (!lc_of(res, &lc) || lc != to) {
            fail(a, TC_OTA_FAIL_READBACK);
            return TC_OK;
        }
        lc_event(a, to, st->prev);
        a->kind = TC_OTA_ACT_DONE;
        return TC_OK;
    default:
        return TC_FAIL(TC_ERR_STATE, "life cycle operation: bad state %d", run->pc);
    }
}

static tc_err lock_next(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                        struct tc_ota_act *a)
{
    return toggle_next(run, res, a, OTA_LC_SECURED, OTA_LC_CARD_LOCKED);
}

static tc_err unlock_next(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                          struct tc_ota_act *a)
{
    return toggle_next(run, res, a, OTA_LC_CARD_LOCKED, OTA_LC_SECURED);
}

static tc_err decommission_next(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                                struct tc_ota_act *a)
{
    switch (run->pc) {
    case PC_START:
        if (!tc_ota_run_can_revoke(run)) {
            fail(a, TC_OTA_FAIL_UNSUPPORTED);
            return TC_OK;
        }
        return session(run, a);
    case PC_AUTH:
        if (refused(res, a))
            return TC_OK;
        set_status(a, OTA_LC_TERMINATED);
        if (run->op->step != 0)
            a->intent = 0; /* recorded by the earlier run */
        run->pc = PC_SET;
        return TC_OK;
    case PC_SET: {
        if (res->sw != 0x9000) {
            fail(a, TC_OTA_FAIL_CARD);
            return TC_OK;
        }
        /* The card is TERMINATED (its R-MAC'd 9000 says so): revoke every
         * certificate the log shows issued to it and not revoked (not only
         * the registry's current one: while a renewal is in flight both the
         * old and the new one are valid). */
        const struct tc_registry_device *d = run->dev;
        struct tc_ota_cert_ref certs[TC_OTA_ACT_EVENTS - 1];
        size_t n = 0;
        TC_GUARD(tc_ota_unrevoked_certs(tc_ota_run_registry(run), d->eid, d->eid_len, certs,
                                        TC_ARRAY_LEN(certs), &n));
        lc_event(a, OTA_LC_TERMINATED, d->lifecycle != 0 ? d->lifecycle : OTA_LC_SECURED);
        for (size_t i = 0; i < n; i++) {
            TC_GUARD(tc_ota_run_revoke(run, certs[i].serial, certs[i].serial_len, CRL_CESSATION));
            struct tc_audit_event *ev = &a->events[a->nevents++];
            memset(ev, 0, sizeof *ev);
            ev->type = TC_AUDIT_CERT_REVOKED;
            ev->fields = TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_CERT_SHA256;
            memcpy(ev->cert_serial, certs[i].serial, certs[i].serial_len);
            ev->cert_serial_len = certs[i].serial_len;
            memcpy(ev->cert_sha256, certs[i].sha256, TC_AUDIT_HASH_LEN);
            ev->reason = CRL_CESSATION;
        }
        a->kind = TC_OTA_ACT_DONE;
        return TC_OK;
    }
    default:
        return TC_FAIL(TC_ERR_STATE, "decommission: bad state %d", run->pc);
    }
}

/* No parameters: the target state is the kind. */
const struct tc_ota_op_kind tc_ota_op_lock = {
    "lock", TC_OTA_OP_LOCK, 0, "SET STATUS SECURED -> CARD_LOCKED, read back", lock_next};
const struct tc_ota_op_kind tc_ota_op_unlock = {
    "unlock", TC_OTA_OP_UNLOCK, 0, "SET STATUS CARD_LOCKED -> SECURED, read back", unlock_next};
const struct tc_ota_op_kind tc_ota_op_decommission = {
    "decommission", TC_OTA_OP_DECOMMISSION, 0, "SET STATUS TERMINATED, then revoke the certificate",
    decommission_next};
