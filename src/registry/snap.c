/*
 * Device snapshots: another module's fold over a device's events (the OTA
 * operation queue), kept encoded beside the projection so that a device's
 * current state costs its snapshot and the few events after it, however
 * long its history (docs/registry.md, "Device snapshots"). A snapshot is a
 * cache keyed by the log index of the last event it folded: it adds no
 * fact, a rebuild drops it and tc_registry_check refolds it from the log.
 */
#include <stdlib.h>
#include <string.h>

#include "registry/internal.h"

tc_err reg_row_event(sqlite3_stmt *st, const uint8_t *eid, size_t eid_len, uint64_t *index,
                     struct tc_audit_event *ev, const uint8_t **event, size_t *len)
{
    sqlite3_int64 idx = sqlite3_column_int64(st, 0);
    int n = sqlite3_column_bytes(st, 1);
    const uint8_t *e = sqlite3_column_blob(st, 1);
    TC_ENSURE(idx >= 0 && n >= 0, TC_ERR_FORMAT);
    tc_err rc = tc_audit_event_decode(e, (size_t)n, ev);
    if (rc != TC_OK)
        return TC_FAIL(rc, "event %lld: %s", (long long)idx, tc_error_last()->msg);
    TC_ENSURE_MSG((ev->fields & TC_AUDIT_HAS_EID) && ev->eid_len == eid_len &&
                      memcmp(ev->eid, eid, eid_len) == 0,
                  TC_ERR_VERIFY, "registry index names event %lld, which is not the device's",
                  (long long)idx);
    *index = (uint64_t)idx;
    *event = e;
    *len = (size_t)n;
    return TC_OK;
}

tc_err reg_snap_prepare(sqlite3 *db, struct reg_snap_stmts *s)
{
    TC_GUARD(reg_prep(db,
                      "SELECT d.idx, e.event FROM main.reg_device_events d"
                      " JOIN main.audit_events e ON e.idx = d.idx"
                      " WHERE d.eid = ?1 AND d.idx > ?2 AND d.idx <= ?3 ORDER BY d.idx",
                      &s->events));
    /* A database last written before snapshots existed, opened for reading
     * only, has no snapshot table: its devices are folded from their first
     * event. */
    if (sqlite3_prepare_v3(db,
                           "SELECT version, idx, state FROM main.reg_device_snaps WHERE eid = ?1",
                           -1, SQLITE_PREPARE_PERSISTENT, &s->get, NULL) != SQLITE_OK) {
        s->get = NULL;
        return TC_OK;
    }
    TC_GUARD(reg_prep(db,
                      "INSERT OR REPLACE INTO main.reg_device_snaps(eid, version, idx, state)"
                      " VALUES(?1, ?2, ?3, ?4)",
                      &s->put));
    return TC_OK;
}

void reg_snap_free(struct reg_snap_stmts *s)
{
    sqlite3_finalize(s->get);
    sqlite3_finalize(s->events);
    sqlite3_finalize(s->put);
    memset(s, 0, sizeof *s);
}

/* Folds the device's events with after < index <= upto into state (after
 * -1: from the first). */
static tc_err fold_range(sqlite3 *db, sqlite3_stmt *st, const struct tc_registry_snap_kind *k,
                         const uint8_t *eid, size_t eid_len, sqlite3_int64 after, uint64_t upto,
                         void *state, uint64_t *last, size_t *folded)
{
    tc_err ret = TC_ERR_INTERNAL;
    sqlite3_bind_blob(st, 1, eid, (int)eid_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, reg_i64(upto));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t idx = 0;
        struct tc_audit_event ev;
        const uint8_t *e = NULL;
        size_t n = 0;
        TC_TRY(reg_row_event(st, eid, eid_len, &idx, &ev, &e, &n));
        TC_TRY(k->fold(state, idx, &ev));
        *last = idx;
        (*folded)++;
    }
    TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "read device events: %s", sqlite3_errmsg(db));
    ret = TC_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

tc_err reg_snap_state(sqlite3 *db, const struct reg_snap_stmts *s,
                      const struct tc_registry_snap_kind *k, const uint8_t *eid, size_t eid_len,
                      void *state, uint64_t *last, size_t *folded)
{
    tc_err ret = TC_ERR_INTERNAL;
    bool have = false;
    *folded = 0;
    *last = 0;
    k->init(state);
    if (s->get != NULL) {
        sqlite3_stmt *st = s->get;
        sqlite3_bind_blob(st, 1, eid, (int)eid_len, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_int64(st, 0) == (sqlite3_int64)k->version) {
            sqlite3_int64 idx = sqlite3_column_int64(st, 1);
            int n = sqlite3_column_bytes(st, 2);
            const uint8_t *p = sqlite3_column_blob(st, 2);
            /* A snapshot that does not decode is not used (the check
             * reports it): the device is folded from its first event. */
            have = idx >= 0 && n > 0 && p != NULL && k->decode(p, (size_t)n, state) == TC_OK;
            if (have)
                *last = (uint64_t)idx;
            else
                k->init(state);
        } else {
            TC_CHECK_MSG(rc == SQLITE_ROW || rc == SQLITE_DONE, TC_ERR_DB, "read snapshot: %s",
                         sqlite3_errmsg(db));
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    /* Without a snapshot, every event from the device's first. */
    TC_TRY(fold_range(db, s->events, k, eid, eid_len, have ? (sqlite3_int64)*last : -1, INT64_MAX,
                      state, last, folded));
    if (!have && *folded == 0)
        TC_CHECK(false, TC_ERR_NOT_FOUND);
    ret = TC_OK;
out:
    if (s->get != NULL) {
        sqlite3_reset(s->get);
        sqlite3_clear_bindings(s->get);
    }
    return ret;
}

tc_err reg_snap_refresh(sqlite3 *db, const struct reg_snap_stmts *s,
                        const struct tc_registry_snap_kind *k, const uint8_t *eid, size_t eid_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(s->put != NULL, TC_ERR_STATE);
    void *state = malloc(k->state_size);
    uint8_t *enc = malloc(TC_REGISTRY_SNAP_MAX);
    size_t folded = 0, len = 0;
    uint64_t last = 0;
    TC_CHECK(state != NULL && enc != NULL, TC_ERR_NOMEM);
    TC_TRY(reg_snap_state(db, s, k, eid, eid_len, state, &last, &folded));
    if (folded > 0) {
        TC_TRY(k->encode(state, enc, TC_REGISTRY_SNAP_MAX, &len));
        TC_CHECK(len > 0 && len <= TC_REGISTRY_SNAP_MAX, TC_ERR_INTERNAL);
        sqlite3_bind_blob(s->put, 1, eid, (int)eid_len, SQLITE_STATIC);
        sqlite3_bind_int64(s->put, 2, (sqlite3_int64)k->version);
        sqlite3_bind_int64(s->put, 3, reg_i64(last));
        sqlite3_bind_blob(s->put, 4, enc, (int)len, SQLITE_STATIC);
        int rc = sqlite3_step(s->put);
        sqlite3_reset(s->put);
        sqlite3_clear_bindings(s->put);
        TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "store snapshot: %s", sqlite3_errmsg(db));
    }
    ret = TC_OK;
out:
    free(state);
    free(enc);
    return ret;
}

tc_err reg_snap_check(sqlite3 *db, const struct reg_snap_stmts *s,
                      const struct tc_registry_snap_kind *k)
{
    tc_err ret = TC_ERR_INTERNAL;
    sqlite3_stmt *all = NULL;
    if (s->get == NULL)
        return TC_OK; /* no snapshot table */
    void *state = malloc(k->state_size);
    uint8_t *enc = malloc(TC_REGISTRY_SNAP_MAX);
    TC_CHECK(state != NULL && enc != NULL, TC_ERR_NOMEM);
    TC_TRY(
        reg_prep(db, "SELECT eid, idx, state FROM main.reg_device_snaps WHERE version = ?1", &all));
    sqlite3_bind_int64(all, 1, (sqlite3_int64)k->version);
    int rc;
    while ((rc = sqlite3_step(all)) == SQLITE_ROW) {
        const uint8_t *eid = sqlite3_column_blob(all, 0);
        int eid_len = sqlite3_column_bytes(all, 0);
        sqlite3_int64 idx = sqlite3_column_int64(all, 1);
        const uint8_t *p = sqlite3_column_blob(all, 2);
        int n = sqlite3_column_bytes(all, 2);
        TC_CHECK_MSG(eid != NULL && eid_len > 0 && (size_t)eid_len <= TC_AUDIT_EID_MAX &&
                         idx >= 0 && p != NULL && n > 0,
                     TC_ERR_VERIFY, "a malformed device snapshot");
        uint64_t last = 0;
        size_t folded = 0, len = 0;
        k->init(state);
        TC_TRY(fold_range(db, s->events, k, eid, (size_t)eid_len, -1, (uint64_t)idx, state, &last,
                          &folded));
        TC_TRY(k->encode(state, enc, TC_REGISTRY_SNAP_MAX, &len));
        TC_CHECK_MSG(folded > 0 && last == (uint64_t)idx && len == (size_t)n &&
                         memcmp(enc, p, len) == 0,
                     TC_ERR_VERIFY, "a device snapshot differs from the fold of its events");
    }
    TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "read snapshots: %s", sqlite3_errmsg(db));
    ret = TC_OK;
out:
    sqlite3_finalize(all);
    free(state);
    free(enc);
    return ret;
}
