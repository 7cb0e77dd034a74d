/*
 * rotate-keys: replace the device's SCP03 keyset with one derived from a
 * named master (docs/ota.md, "Rotate the SCP03 keyset").
 *
 *   1. session with the current keyset
 *   2. intent 1, PUT KEY of the new KVN (GP CS 2.3 §11.8; key blocks
 *      wrapped in the HSM under the current Key-DEK, Amendment D §7.2),
 *      the KCVs the card answers must be the HSM's
 *   3. a new session with the new keyset (the card proves it holds them)
 *   4. intent 2, DELETE KEY of the old KVN (GP CS 2.3 §11.2.2.3, 'D2')
 *   5. keys-rotated + op-done
 * Resume: once intent 1 is on the log the new keyset is tried first; if it
 * opens a session the rotation rolls forward to DELETE KEY (6A88, already
 * gone, counts as done), else PUT KEY is redone under the old keys.
 */
#include <stdio.h>
#include <string.h>

#include <trustchain/ota_ops.h>

enum {
    PC_START = 0,
    PC_CUR_AUTH, /* AUTH with the current keyset sent */
    PC_PUT_KEY,  /* PUT KEY sent */
    PC_NEW_AUTH, /* AUTH with the new keyset after PUT KEY */
    PC_TRY_NEW,  /* resume: AUTH with the new keyset first */
    PC_DELETE,   /* DELETE KEY sent */
};

#define STEP_PUT_KEY 1u
#define STEP_DELETE  2u

struct rot_state {
    uint8_t kcvs[TC_SCP03_KCVS_LEN];
    bool have_kcvs;
};

static void auth(struct tc_ota_act *a, uint8_t kvn, const char *master)
{
    a->kind = TC_OTA_ACT_AUTH;
    a->kvn = kvn;
    (void)snprintf(a->master, sizeof a->master, "%s", master != NULL ? master : "");
}

static void fail(struct tc_ota_act *a, uint16_t reason)
{
    a->kind = TC_OTA_ACT_FAIL;
    a->reason = reason;
}

static tc_err put_key(struct tc_ota_op_run *run, struct rot_state *st, struct tc_ota_act *a)
{
    const struct tc_scp03_key_provider *p = NULL;
    tc_err ret = TC_ERR_INTERNAL;
    /* Both keysets in the device's HSM provider: the new one derived from
     * its master, wrapped under the current keyset's DEK. */
    TC_GUARD(tc_ota_run_keys(run, run->op->kvn, run->op->master, &p));
    TC_GUARD(tc_ota_run_keys(run, 0, NULL, &p));
    struct tc_buf b;
    tc_buf_init_fixed(&b, a->data, sizeof a->data);
    TC_TRY(tc_scp03_put_key_data(p, run->kvn, p, run->op->kvn, &b, st->kcvs));
    st->have_kcvs = true;
    /* GP CS 2.3 §11.8.2: P1 00 = a new key version, P2 81 = several keys
     * (b8) starting with key identifier 1. */
    a->kind = TC_OTA_ACT_SEND;
    a->cmd = (struct tc_apdu){.cla = 0x80,
                              .ins = TC_SCP03_INS_PUT_KEY,
                              .p1 = 0x00,
                              .p2 = 0x81,
                              .lc = b.len,
                              .has_le = true,
                              .le = 256};
    a->intent = STEP_PUT_KEY;
    run->pc = PC_PUT_KEY;
    ret = TC_OK;
out:
    if (ret != TC_OK)
        tc_memzero(a->data, sizeof a->data);
    return ret;
}

static void delete_key(struct tc_ota_op_run *run, struct tc_ota_act *a)
{
    /* GP CS 2.3 §11.2.2.3: DELETE [key], 'D2' key version number. */
    a->kind = TC_OTA_ACT_SEND;
    a->data[0] = 0xD2;
    a->data[1] = 0x01;
    a->data[2] = run->kvn;
    a->cmd = (struct tc_apdu){.cla = 0x80,
                              .ins = TC_SCP03_INS_DELETE,
                              .p1 = 0x00,
                              .p2 = 0x00,
                              .lc = 3,
                              .has_le = true,
                              .le = 256};
    a->intent = run->op->step < STEP_DELETE ? STEP_DELETE : 0;
    run->pc = PC_DELETE;
}

static tc_err done(struct tc_ota_op_run *run, struct rot_state *st, struct tc_ota_act *a)
{
    if (!st->have_kcvs) {
        /* Resumed after PUT KEY: the HSM's KCVs, which the re-authentication
         * just proved the card holds. */
        const struct tc_scp03_key_provider *p = NULL;
        TC_GUARD(tc_ota_run_keys(run, run->op->kvn, run->op->master, &p));
        for (unsigned i = 0; i < TC_SCP03_KEYS_PER_SET; i++)
            TC_GUARD(p->kcv(p->ctx, run->op->kvn, (enum tc_scp03_key_id)(i + 1),
                            st->kcvs + i * TC_KCV_LEN));
    }
    struct tc_audit_event *ev = &a->events[0];
    memset(ev, 0, sizeof *ev);
    ev->type = TC_AUDIT_KEYS_ROTATED;
    ev->fields = TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV | TC_AUDIT_HAS_PREV_KVN;
    ev->kvn = run->op->kvn;
    ev->prev_kvn = run->kvn;
    memcpy(ev->kcv, st->kcvs, sizeof ev->kcv);
    a->nevents = 1;
    a->kind = TC_OTA_ACT_DONE;
    return TC_OK;
}

static tc_err rotate_next(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                          struct tc_ota_act *a)
{
    struct rot_state *st = (struct rot_state *)(void *)run->scratch;
    const struct tc_ota_op *op = run->op;
    switch (run->pc) {
    case PC_START:
        memset(st, 0, sizeof *st);
        if (op->kvn == 0 || op->master[0] == '\0') {
            fail(a, TC_OTA_FAIL_PARAMS);
            return TC_OK;
        }
        if (op->step >= STEP_PUT_KEY) {
            auth(a, op->kvn, op->master);
            run->pc = PC_TRY_NEW;
            return TC_OK;
        }
        if (op->kvn == run->kvn) {
            fail(a, TC_OTA_FAIL_STATE); /* the device already uses this KVN */
            return TC_OK;
        }
        {
            /* The new master must exist before anything reaches the card. */
            const struct tc_scp03_key_provider *p = NULL;
            tc_err rc = tc_ota_run_keys(run, op->kvn, op->master, &p);
            if (rc == TC_ERR_NOT_FOUND) {
                tc_error_clear();
                fail(a, TC_OTA_FAIL_PARAMS);
                return TC_OK;
            }
            TC_GUARD(rc);
        }
        auth(a, 0, NULL);
        run->pc = PC_CUR_AUTH;
        return TC_OK;
    case PC_TRY_NEW:
        if (res->rc == TC_OK) {
            delete_key(run, a); /* PUT KEY happened: roll forward */
            return TC_OK;
        }
        /* The new keys do not open a session: PUT KEY never reached the card. */
        auth(a, 0, NULL);
        run->pc = PC_CUR_AUTH;
        return TC_OK;
    case PC_CUR_AUTH:
        if (res->rc != TC_OK) {
            fail(a, TC_OTA_FAIL_AUTH);
            return TC_OK;
        }
        return put_key(run, st, a);
    case PC_PUT_KEY:
        if (res->sw != 0x9000) {
            fail(a, TC_OTA_FAIL_CARD);
            return TC_OK;
        }
        if (tc_scp03_put_key_check(res->data, res->len, op->kvn, st->kcvs) != TC_OK) {
            tc_error_clear();
            fail(a, TC_OTA_FAIL_KCV);
            return TC_OK;
        }
        auth(a, op->kvn, op->master);
        run->pc = PC_NEW_AUTH;
        return TC_OK;
    case PC_NEW_AUTH:
        if (res->rc != TC_OK) {
            fail(a, TC_OTA_FAIL_AUTH);
            return TC_OK;
        }
        delete_key(run, a);
        return TC_OK;
    case PC_DELETE:
        /* 9000: deleted; 6A88: already gone (an earlier run's DELETE whose
         * answer was lost). */
        if (res->sw != 0x9000 && res->sw != 0x6A88) {
            fail(a, TC_OTA_FAIL_CARD);
            return TC_OK;
        }
        return done(run, st, a);
    default:
        return TC_FAIL(TC_ERR_STATE, "rotate-keys: bad state %d", run->pc);
    }
}

const struct tc_ota_op_kind tc_ota_op_rotate_keys = {
    .name = "rotate-keys",
    .code = TC_OTA_OP_ROTATE_KEYS,
    .params = TC_OTA_PARAM_KVN | TC_OTA_PARAM_MASTER,
    .summary = "PUT KEY a keyset derived from --master as --kvn, re-authenticate, DELETE KEY the "
               "old one",
    .next = rotate_next,
};
