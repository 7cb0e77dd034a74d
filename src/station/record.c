/*
 * The station's only contact with the registry: events out, device state and
 * certificates in. An append returns once the event is durable and projected
 * (tc_registry_append), so a step the station acts on after recording it is
 * never lost by a crash.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void st_event_init(const struct tc_station *st, const struct st_dev_id *id,
                   enum tc_audit_event_type type, struct tc_audit_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->time_ms = now_ms();
    /* docs/audit-format.md: "line" = EID, batch, station, actor. */
    ev->fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR;
    memcpy(ev->eid, id->eid, TC_PKI_EID_BCD_LEN);
    ev->eid_len = TC_PKI_EID_BCD_LEN;
    (void)snprintf(ev->batch, sizeof ev->batch, "%s", st->batch_id);
    (void)snprintf(ev->station, sizeof ev->station, "%s", st->station_id);
    (void)snprintf(ev->actor, sizeof ev->actor, "%s", st->actor);
}

tc_err st_record(struct tc_station *st, struct tc_audit_event *ev, struct tc_station_result *res)
{
    uint64_t index = 0;
    tc_err rc = tc_registry_append(st->cfg.registry, ev, &index);
    if (rc != TC_OK)
        return TC_FAIL(rc, "recording the %s event failed: %s", tc_audit_event_type_name(ev->type),
                       tc_error_last()->msg);
    res->events++;
    return TC_OK;
}

tc_err st_record_n(struct tc_station *st, const struct tc_audit_event *evs, size_t n,
                   const uint8_t *cert, size_t cert_len, struct tc_station_result *res)
{
    enum { MAX = 8 };
    uint8_t enc[MAX][TC_AUDIT_EVENT_MAX];
    const uint8_t *ptrs[MAX];
    size_t lens[MAX];
    TC_ENSURE(n <= MAX, TC_ERR_INTERNAL);
    if (n == 0)
        return TC_OK;
    for (size_t i = 0; i < n; i++) {
        TC_GUARD(tc_audit_event_encode(&evs[i], enc[i], sizeof enc[i], &lens[i]));
        ptrs[i] = enc[i];
    }
    uint64_t first = 0;
    /* The certificate rides in the events' transaction: no separate durable
     * commit per device, and never an issued certificate the side table
     * lacks. */
    struct tc_registry_cert c = {.der = cert, .len = cert_len};
    tc_err rc =
        tc_registry_append_certs(st->cfg.registry, ptrs, lens, n, &c, cert != NULL ? 1 : 0, &first);
    if (rc != TC_OK)
        return TC_FAIL(rc, "recording %zu events (from %s) failed: %s", n,
                       tc_audit_event_type_name(evs[0].type), tc_error_last()->msg);
    res->events += n;
    return TC_OK;
}

tc_err st_prior(struct tc_station *st, const struct st_dev_id *id, struct tc_registry_device *d,
                bool *found)
{
    *found = false;
    tc_err rc = tc_registry_device_get(st->cfg.registry, id->eid, TC_PKI_EID_BCD_LEN, d);
    if (rc == TC_ERR_NOT_FOUND) {
        tc_error_clear();
        return TC_OK;
    }
    TC_GUARD(rc);
    *found = true;
    return TC_OK;
}
