/*
 * A revoked device's pending operations end with the revocation
 * (docs/ota.md, "Revocation"): once its certificates or its batch are
 * revoked every handshake of the device is refused, so nothing queued for
 * it can reach the card any more. Among them, a decommission whose
 * TERMINATE answer was lost (the card may be terminated and never connect
 * again) is closed by the operator's `device revoke`.
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/ota_ops.h>

#include "ota/ops_internal.h"

tc_err tc_ota_queue_close_revoked(struct tc_registry *r, const uint8_t *eid, size_t eid_len,
                                  const char *actor, size_t *closed)
{
    TC_ENSURE(r != NULL && eid != NULL && eid_len > 0 && eid_len <= TC_AUDIT_EID_MAX &&
                  actor != NULL,
              TC_ERR_ARG);
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_ota_queue *q = calloc(1, sizeof *q);
    uint8_t(*enc)[TC_AUDIT_EVENT_MAX] = calloc(TC_OTA_QUEUE_MAX, sizeof *enc);
    const uint8_t *ptrs[TC_OTA_QUEUE_MAX];
    size_t lens[TC_OTA_QUEUE_MAX], n = 0;
    if (closed != NULL)
        *closed = 0;
    TC_CHECK(q != NULL && enc != NULL, TC_ERR_NOMEM);
    TC_TRY(tc_ota_queue_load(r, eid, eid_len, UINT64_MAX, q));
    uint64_t now = ota_now_ms();
    for (size_t i = 0; i < q->n; i++) {
        const struct tc_ota_op *op = &q->ops[i];
        if (op->status != TC_OTA_OP_PENDING)
            continue;
        struct tc_audit_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = TC_AUDIT_OP_FAILED;
        ev.time_ms = now;
        ev.fields =
            TC_AUDIT_HAS_EID | TC_AUDIT_HAS_OP_ID | TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_ACTOR;
        memcpy(ev.eid, eid, eid_len);
        ev.eid_len = eid_len;
        ev.op_id = op->id;
        ev.reason = TC_OTA_FAIL_REVOKED;
        (void)snprintf(ev.actor, sizeof ev.actor, "%s", actor);
        if (op->step != 0) { /* how far an interrupted run got stays on record */
            ev.fields |= TC_AUDIT_HAS_STEP;
            ev.step = op->step;
        }
        TC_TRY(tc_audit_event_encode(&ev, enc[n], sizeof enc[n], &lens[n]));
        ptrs[n] = enc[n];
        n++;
    }
    if (n > 0)
        TC_TRY(tc_registry_append_encoded(r, ptrs, lens, n, NULL));
    if (closed != NULL)
        *closed = n;
    ret = TC_OK;
out:
    free(enc);
    free(q);
    return ret;
}
