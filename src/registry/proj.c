/*
 * The projection tables and their writer. The same statements, prepared
 * over schema "main" on the log's connection, run inside every append
 * transaction (batch hook); prepared over "temp" they rebuild a scratch copy
 * from the log for comparison (tc_registry_check).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "registry/internal.h"

tc_err reg_db_fail(sqlite3 *db, const char *what)
{
    return TC_FAIL(TC_ERR_DB, "%s: %s", what, db ? sqlite3_errmsg(db) : "no database");
}

tc_err reg_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        tc_err rc = TC_FAIL(TC_ERR_DB, "%.80s: %s", sql, err ? err : "?");
        sqlite3_free(err);
        return rc;
    }
    return TC_OK;
}

tc_err reg_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return reg_db_fail(db, sql);
    return TC_OK;
}

tc_err reg_sha256(const uint8_t *p, size_t n, uint8_t out[static TC_AUDIT_HASH_LEN])
{
    unsigned len = 0;
    TC_ENSURE_MSG(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == TC_AUDIT_HASH_LEN,
                  TC_ERR_CRYPTO, "SHA-256 failed");
    return TC_OK;
}

static bool schema_ok(const char *schema)
{
    return strcmp(schema, "main") == 0 || strcmp(schema, "temp") == 0;
}

tc_err reg_schema_create(sqlite3 *db, const char *schema)
{
    TC_ENSURE(db != NULL && schema != NULL && schema_ok(schema), TC_ERR_ARG);
    char sql[2048];
    const char *s = schema;
    int n = snprintf(
        sql, sizeof sql,
        "CREATE TABLE IF NOT EXISTS %s.reg_devices("
        " eid BLOB PRIMARY KEY, batch TEXT NOT NULL, station TEXT NOT NULL,"
        " state INTEGER NOT NULL, kvn INTEGER NOT NULL, kcv BLOB, pubkey_sha256 BLOB,"
        " cert_serial BLOB, cert_sha256 BLOB, cert_stored INTEGER NOT NULL,"
        " lifecycle INTEGER NOT NULL, reason INTEGER NOT NULL, step INTEGER NOT NULL,"
        " first_idx INTEGER NOT NULL, last_idx INTEGER NOT NULL, last_time INTEGER NOT NULL,"
        " events INTEGER NOT NULL, cert_revoked INTEGER NOT NULL, cert_pubkey_sha256 BLOB,"
        " prev_certs BLOB) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS %s.reg_device_events("
        " eid BLOB NOT NULL, idx INTEGER NOT NULL, time_ms INTEGER NOT NULL,"
        " PRIMARY KEY (eid, idx)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS %s.reg_batches("
        " id TEXT PRIMARY KEY, revoked INTEGER NOT NULL, reason INTEGER NOT NULL,"
        " revoked_idx INTEGER, first_idx INTEGER NOT NULL, last_idx INTEGER NOT NULL,"
        " events INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS %s.reg_stations("
        " id TEXT PRIMARY KEY, first_idx INTEGER NOT NULL, last_idx INTEGER NOT NULL,"
        " last_time INTEGER NOT NULL, events INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS %s.reg_devices_by_batch ON reg_devices(batch, state);"
        "CREATE INDEX IF NOT EXISTS %s.reg_devices_by_state ON reg_devices(state);",
        s, s, s, s, s, s);
    TC_ENSURE(n > 0 && (size_t)n < sizeof sql, TC_ERR_INTERNAL);
    return reg_exec(db, sql);
}

bool reg_schema_current(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    bool ok = sqlite3_prepare_v2(db, "SELECT " REG_DEVICE_COLS " FROM main.reg_devices", -1, &st,
                                 NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    return ok;
}

tc_err reg_schema_drop(sqlite3 *db)
{
    TC_ENSURE(db != NULL, TC_ERR_ARG);
    return reg_exec(db, "DROP TABLE IF EXISTS main.reg_devices;"
                        "DROP TABLE IF EXISTS main.reg_device_events;"
                        "DROP TABLE IF EXISTS main.reg_batches;"
                        "DROP TABLE IF EXISTS main.reg_stations;");
}

tc_err reg_proj_clear(sqlite3 *db, const char *schema)
{
    TC_ENSURE(db != NULL && schema != NULL && schema_ok(schema), TC_ERR_ARG);
    char sql[512];
    const char *s = schema;
    int n = snprintf(sql, sizeof sql,
                     "DELETE FROM %s.reg_devices; DELETE FROM %s.reg_device_events;"
                     "DELETE FROM %s.reg_batches; DELETE FROM %s.reg_stations;",
                     s, s, s, s);
    TC_ENSURE(n > 0 && (size_t)n < sizeof sql, TC_ERR_INTERNAL);
    return reg_exec(db, sql);
}

/* sql with every "%s" replaced by the schema name. */
static tc_err prep_s(sqlite3 *db, const char *tmpl, const char *schema, sqlite3_stmt **st)
{
    char sql[1024];
    size_t o = 0, sl = strlen(schema);
    for (const char *p = tmpl; *p != '\0'; p++) {
        if (p[0] == '%' && p[1] == 's') {
            TC_ENSURE(o + sl < sizeof sql, TC_ERR_INTERNAL);
            memcpy(sql + o, schema, sl);
            o += sl;
            p++;
        } else {
            TC_ENSURE(o + 1 < sizeof sql, TC_ERR_INTERNAL);
            sql[o++] = *p;
        }
    }
    sql[o] = '\0';
    return reg_prep(db, sql, st);
}

void reg_proj_free(struct reg_proj *p)
{
    if (p == NULL)
        return;
    sqlite3_finalize(p->get_dev);
    sqlite3_finalize(p->put_dev);
    sqlite3_finalize(p->put_dev_counts);
    sqlite3_finalize(p->put_dev_ev);
    sqlite3_finalize(p->up_batch);
    sqlite3_finalize(p->revoke_batch);
    sqlite3_finalize(p->up_station);
    free(p->work);
    free(p->tab);
    memset(p, 0, sizeof *p);
}

tc_err reg_proj_init(struct reg_proj *p, sqlite3 *db, const char *schema)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(p != NULL && db != NULL && schema != NULL && schema_ok(schema), TC_ERR_ARG);
    memset(p, 0, sizeof *p);
    atomic_init(&p->stats.device_rows, 0);
    atomic_init(&p->stats.device_counts, 0);
    atomic_init(&p->stats.device_events, 0);
    atomic_init(&p->stats.batch_rows, 0);
    atomic_init(&p->stats.station_rows, 0);
    p->db = db;
    TC_TRY(prep_s(db, "SELECT " REG_DEVICE_COLS " FROM %s.reg_devices WHERE eid = ?1", schema,
                  &p->get_dev));
    TC_TRY(prep_s(db,
                  "INSERT OR REPLACE INTO %s.reg_devices(" REG_DEVICE_COLS ") VALUES(?1, ?2, ?3,"
                  " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,"
                  " ?20)",
                  schema, &p->put_dev));
    TC_TRY(prep_s(db,
                  "UPDATE %s.reg_devices SET last_idx = ?2, last_time = ?3, events = ?4"
                  " WHERE eid = ?1",
                  schema, &p->put_dev_counts));
    TC_TRY(prep_s(db, "INSERT INTO %s.reg_device_events(eid, idx, time_ms) VALUES(?1, ?2, ?3)",
                  schema, &p->put_dev_ev));
    TC_TRY(prep_s(db,
                  "INSERT INTO %s.reg_batches(id, revoked, reason, revoked_idx, first_idx,"
                  " last_idx, events) VALUES(?1, 0, 0, NULL, ?2, ?3, ?4) ON CONFLICT(id) DO"
                  " UPDATE SET last_idx = excluded.last_idx, events = events + excluded.events",
                  schema, &p->up_batch));
    TC_TRY(prep_s(db,
                  "UPDATE %s.reg_batches SET revoked = 1, reason = ?2, revoked_idx = ?3"
                  " WHERE id = ?1 AND revoked = 0",
                  schema, &p->revoke_batch));
    TC_TRY(prep_s(db,
                  "INSERT INTO %s.reg_stations(id, first_idx, last_idx, last_time, events)"
                  " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET"
                  " last_idx = excluded.last_idx, last_time = excluded.last_time,"
                  " events = events + excluded.events",
                  schema, &p->up_station));
    ret = TC_OK;
out:
    if (ret != TC_OK)
        reg_proj_free(p);
    return ret;
}

static tc_err done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(db, what);
    return TC_OK;
}

static tc_err blob_col(sqlite3_stmt *st, int col, uint8_t *out, size_t min, size_t max, size_t *len,
                       bool *present)
{
    *present = sqlite3_column_type(st, col) != SQLITE_NULL;
    *len = 0;
    if (!*present)
        return TC_OK;
    int n = sqlite3_column_bytes(st, col);
    const void *p = sqlite3_column_blob(st, col);
    TC_ENSURE_MSG(n >= 0 && (size_t)n >= min && (size_t)n <= max && (n == 0 || p != NULL),
                  TC_ERR_FORMAT, "stored registry value of %d bytes in column %d", n, col);
    if (n > 0)
        memcpy(out, p, (size_t)n);
    *len = (size_t)n;
    return TC_OK;
}

static tc_err text_col(sqlite3_stmt *st, int col, char *out, size_t out_size)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    TC_ENSURE_MSG(t != NULL && n >= 0 && (size_t)n < out_size, TC_ERR_FORMAT,
                  "stored registry text in column %d", col);
    memcpy(out, t, (size_t)n);
    out[n] = '\0';
    return TC_OK;
}

static tc_err uint_col(sqlite3_stmt *st, int col, uint64_t max, uint64_t *v)
{
    sqlite3_int64 x = sqlite3_column_int64(st, col);
    TC_ENSURE_MSG(sqlite3_column_type(st, col) == SQLITE_INTEGER && x >= 0 && (uint64_t)x <= max,
                  TC_ERR_FORMAT, "stored registry integer in column %d", col);
    *v = (uint64_t)x;
    return TC_OK;
}

/*
 * prev_certs: the remembered certificates, oldest first, each as
 * serial length (1 byte, 1..20), serial, certificate SHA-256 (32),
 * public-key SHA-256 (32), stored (1 byte, 0 or 1); NULL when there are
 * none.
 */
#define PREV_CERT_MAX (1 + TC_AUDIT_SERIAL_MAX + 2 * TC_AUDIT_HASH_LEN + 1)

static size_t prev_encode(const struct tc_registry_device *d,
                          uint8_t out[static TC_REGISTRY_PREV_CERTS * PREV_CERT_MAX])
{
    size_t o = 0;
    for (size_t i = 0; i < d->n_prev; i++) {
        const struct tc_registry_cert_ref *c = &d->prev[i];
        out[o++] = (uint8_t)c->serial_len;
        memcpy(out + o, c->serial, c->serial_len);
        o += c->serial_len;
        memcpy(out + o, c->sha256, TC_AUDIT_HASH_LEN);
        o += TC_AUDIT_HASH_LEN;
        memcpy(out + o, c->pubkey_sha256, TC_AUDIT_HASH_LEN);
        o += TC_AUDIT_HASH_LEN;
        out[o++] = c->stored ? 1 : 0;
    }
    return o;
}

static tc_err prev_decode(const uint8_t *p, size_t n, struct tc_registry_device *d)
{
    struct tc_cursor c;
    tc_cursor_init(&c, p, n);
    while (tc_cursor_remaining(&c) > 0) {
        TC_ENSURE_MSG(d->n_prev < TC_REGISTRY_PREV_CERTS, TC_ERR_FORMAT,
                      "stored device remembers more than %u certificates", TC_REGISTRY_PREV_CERTS);
        struct tc_registry_cert_ref *r = &d->prev[d->n_prev];
        uint8_t len = 0, stored = 0;
        TC_GUARD(tc_cursor_u8(&c, &len));
        TC_ENSURE_MSG(len >= 1 && len <= TC_AUDIT_SERIAL_MAX, TC_ERR_FORMAT,
                      "stored certificate serial of %u bytes", len);
        TC_GUARD(tc_cursor_copy(&c, r->serial, len));
        r->serial_len = len;
        TC_GUARD(tc_cursor_copy(&c, r->sha256, TC_AUDIT_HASH_LEN));
        TC_GUARD(tc_cursor_copy(&c, r->pubkey_sha256, TC_AUDIT_HASH_LEN));
        TC_GUARD(tc_cursor_u8(&c, &stored));
        TC_ENSURE_MSG(stored <= 1, TC_ERR_FORMAT, "stored certificate flag %u", stored);
        r->stored = stored != 0;
        d->n_prev++;
    }
    TC_ENSURE_MSG(d->n_prev > 0, TC_ERR_FORMAT, "stored empty certificate list");
    return TC_OK;
}

tc_err reg_device_read(sqlite3_stmt *st, int c, struct tc_registry_device *d)
{
    memset(d, 0, sizeof *d);
    size_t len;
    bool has;
    uint64_t v;
    TC_GUARD(blob_col(st, c + 0, d->eid, 1, TC_AUDIT_EID_MAX, &d->eid_len, &has));
    TC_ENSURE_MSG(has, TC_ERR_FORMAT, "stored device without EID");
    TC_GUARD(text_col(st, c + 1, d->batch, sizeof d->batch));
    TC_GUARD(text_col(st, c + 2, d->station, sizeof d->station));
    TC_GUARD(uint_col(st, c + 3, TC_REG_STATE_MAX_, &v));
    TC_ENSURE_MSG(v >= 1, TC_ERR_FORMAT, "stored device state 0");
    d->state = (enum tc_registry_state)v;
    TC_GUARD(uint_col(st, c + 4, 0x7F, &v));
    d->kvn = (uint8_t)v;
    TC_GUARD(blob_col(st, c + 5, &d->kcv[0][0], sizeof d->kcv, sizeof d->kcv, &len, &d->has_kcv));
    TC_GUARD(blob_col(st, c + 6, d->pubkey_sha256, TC_AUDIT_HASH_LEN, TC_AUDIT_HASH_LEN, &len,
                      &d->has_pubkey));
    TC_GUARD(blob_col(st, c + 7, d->cert_serial, 1, TC_AUDIT_SERIAL_MAX, &d->cert_serial_len,
                      &d->has_cert));
    TC_GUARD(blob_col(st, c + 8, d->cert_sha256, TC_AUDIT_HASH_LEN, TC_AUDIT_HASH_LEN, &len, &has));
    TC_ENSURE_MSG(has == d->has_cert, TC_ERR_FORMAT, "stored certificate serial without hash");
    TC_GUARD(uint_col(st, c + 9, 1, &v));
    d->cert_stored = v != 0;
    TC_GUARD(uint_col(st, c + 10, 0xFF, &v));
    d->lifecycle = (uint8_t)v;
    TC_GUARD(uint_col(st, c + 11, 0xFFFF, &v));
    d->reason = (uint16_t)v;
    TC_GUARD(uint_col(st, c + 12, 0xFF, &v));
    d->step = (uint8_t)v;
    TC_GUARD(uint_col(st, c + 13, INT64_MAX, &d->first_index));
    TC_GUARD(uint_col(st, c + 14, INT64_MAX, &d->last_index));
    TC_GUARD(uint_col(st, c + 15, INT64_MAX, &d->last_time_ms));
    TC_GUARD(uint_col(st, c + 16, INT64_MAX, &d->events));
    TC_GUARD(uint_col(st, c + 17, 1, &v));
    d->cert_revoked = v != 0;
    TC_ENSURE_MSG(d->has_cert || !d->cert_revoked, TC_ERR_FORMAT,
                  "stored revoked certificate without serial");
    /* NULL when it is the device's public-key hash (the usual case): a
     * 32-byte copy per row saved. */
    TC_GUARD(blob_col(st, c + 18, d->cert_pubkey_sha256, TC_AUDIT_HASH_LEN, TC_AUDIT_HASH_LEN, &len,
                      &has));
    TC_ENSURE_MSG(d->has_cert || !has, TC_ERR_FORMAT, "stored certificate key without serial");
    if (d->has_cert && !has) {
        TC_ENSURE_MSG(d->has_pubkey, TC_ERR_FORMAT, "stored certificate without key");
        memcpy(d->cert_pubkey_sha256, d->pubkey_sha256, TC_AUDIT_HASH_LEN);
    }
    if (sqlite3_column_type(st, c + 19) != SQLITE_NULL) {
        int n = sqlite3_column_bytes(st, c + 19);
        const uint8_t *p = sqlite3_column_blob(st, c + 19);
        TC_ENSURE_MSG(n > 0 && p != NULL && d->has_cert && !d->cert_revoked, TC_ERR_FORMAT,
                      "stored certificate list in column %d", c + 19);
        TC_GUARD(prev_decode(p, (size_t)n, d));
    }
    return TC_OK;
}

static void bind_blob_opt(sqlite3_stmt *st, int i, bool present, const void *p, size_t n)
{
    if (present)
        sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static tc_err put_device(struct reg_proj *p, const struct tc_registry_device *d)
{
    sqlite3_stmt *st = p->put_dev;
    uint8_t prev[TC_REGISTRY_PREV_CERTS * PREV_CERT_MAX];
    size_t prev_len = prev_encode(d, prev);
    sqlite3_bind_blob(st, 1, d->eid, (int)d->eid_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, d->batch, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, d->station, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int)d->state);
    sqlite3_bind_int(st, 5, d->kvn);
    bind_blob_opt(st, 6, d->has_kcv, d->kcv, sizeof d->kcv);
    bind_blob_opt(st, 7, d->has_pubkey, d->pubkey_sha256, TC_AUDIT_HASH_LEN);
    bind_blob_opt(st, 8, d->has_cert, d->cert_serial, d->cert_serial_len);
    bind_blob_opt(st, 9, d->has_cert, d->cert_sha256, TC_AUDIT_HASH_LEN);
    sqlite3_bind_int(st, 10, d->cert_stored ? 1 : 0);
    sqlite3_bind_int(st, 11, d->lifecycle);
    sqlite3_bind_int(st, 12, d->reason);
    sqlite3_bind_int(st, 13, d->step);
    sqlite3_bind_int64(st, 14, reg_i64(d->first_index));
    sqlite3_bind_int64(st, 15, reg_i64(d->last_index));
    sqlite3_bind_int64(st, 16, reg_i64(d->last_time_ms));
    sqlite3_bind_int64(st, 17, reg_i64(d->events));
    sqlite3_bind_int(st, 18, d->cert_revoked ? 1 : 0);
    bool own_key =
        d->has_pubkey && memcmp(d->cert_pubkey_sha256, d->pubkey_sha256, TC_AUDIT_HASH_LEN) == 0;
    bind_blob_opt(st, 19, d->has_cert && !own_key, d->cert_pubkey_sha256, TC_AUDIT_HASH_LEN);
    bind_blob_opt(st, 20, prev_len > 0, prev, prev_len);
    atomic_fetch_add_explicit(&p->stats.device_rows, 1, memory_order_relaxed);
    return done(p->db, st, "store device");
}

/* A device row whose other columns are unchanged: only its event counters. */
static tc_err put_device_counts(struct reg_proj *p, const struct tc_registry_device *d)
{
    sqlite3_stmt *st = p->put_dev_counts;
    sqlite3_bind_blob(st, 1, d->eid, (int)d->eid_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, reg_i64(d->last_index));
    sqlite3_bind_int64(st, 3, reg_i64(d->last_time_ms));
    sqlite3_bind_int64(st, 4, reg_i64(d->events));
    atomic_fetch_add_explicit(&p->stats.device_counts, 1, memory_order_relaxed);
    TC_GUARD(done(p->db, st, "store device counters"));
    /* The row was there (remembered or read in this transaction). */
    TC_ENSURE_MSG(sqlite3_changes(p->db) == 1, TC_ERR_INTERNAL, "device row to update is missing");
    return TC_OK;
}

static tc_err get_device(struct reg_proj *p, const uint8_t *eid, size_t eid_len,
                         struct tc_registry_device *d, bool *found)
{
    tc_err ret = TC_ERR_INTERNAL;
    sqlite3_stmt *st = p->get_dev;
    sqlite3_bind_blob(st, 1, eid, (int)eid_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW)
        TC_TRY(reg_device_read(st, 0, d));
    else
        TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "read device: %s", sqlite3_errmsg(p->db));
    ret = TC_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

/* The batch's counters: count events, the first at first, the last at last. */
static tc_err up_batch(struct reg_proj *p, const char *id, sqlite3_int64 first, sqlite3_int64 last,
                       uint64_t count)
{
    sqlite3_bind_text(p->up_batch, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p->up_batch, 2, first);
    sqlite3_bind_int64(p->up_batch, 3, last);
    sqlite3_bind_int64(p->up_batch, 4, reg_i64(count));
    atomic_fetch_add_explicit(&p->stats.batch_rows, 1, memory_order_relaxed);
    return done(p->db, p->up_batch, "store batch");
}

static tc_err revoke_batch(struct reg_proj *p, const struct tc_audit_event *ev, sqlite3_int64 idx)
{
    sqlite3_bind_text(p->revoke_batch, 1, ev->batch, -1, SQLITE_STATIC);
    sqlite3_bind_int(p->revoke_batch, 2, ev->reason);
    sqlite3_bind_int64(p->revoke_batch, 3, idx);
    return done(p->db, p->revoke_batch, "revoke batch");
}

static tc_err up_station(struct reg_proj *p, const char *id, sqlite3_int64 first,
                         sqlite3_int64 last, uint64_t last_time, uint64_t count)
{
    sqlite3_bind_text(p->up_station, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p->up_station, 2, first);
    sqlite3_bind_int64(p->up_station, 3, last);
    sqlite3_bind_int64(p->up_station, 4, reg_i64(last_time));
    sqlite3_bind_int64(p->up_station, 5, reg_i64(count));
    atomic_fetch_add_explicit(&p->stats.station_rows, 1, memory_order_relaxed);
    return done(p->db, p->up_station, "store station");
}

static tc_err put_dev_ev(struct reg_proj *p, const struct tc_audit_event *ev, sqlite3_int64 idx)
{
    sqlite3_bind_blob(p->put_dev_ev, 1, ev->eid, (int)ev->eid_len, SQLITE_STATIC);
    sqlite3_bind_int64(p->put_dev_ev, 2, idx);
    sqlite3_bind_int64(p->put_dev_ev, 3, reg_i64(ev->time_ms));
    atomic_fetch_add_explicit(&p->stats.device_events, 1, memory_order_relaxed);
    return done(p->db, p->put_dev_ev, "store device event");
}

tc_err reg_proj_apply(struct reg_proj *p, uint64_t index, const uint8_t *event, size_t len)
{
    struct tc_audit_event ev;
    TC_ENSURE(p != NULL && index <= INT64_MAX, TC_ERR_ARG);
    tc_err rc = tc_audit_event_decode(event, len, &ev);
    if (rc != TC_OK)
        return TC_FAIL(rc, "event %llu: %s", (unsigned long long)index, tc_error_last()->msg);
    sqlite3_int64 idx = (sqlite3_int64)index;

    if (ev.fields & TC_AUDIT_HAS_BATCH)
        TC_GUARD(up_batch(p, ev.batch, idx, idx, 1));
    if (ev.type == TC_AUDIT_BATCH_REVOKED)
        TC_GUARD(revoke_batch(p, &ev, idx));
    if (ev.fields & TC_AUDIT_HAS_STATION)
        TC_GUARD(up_station(p, ev.station, idx, idx, ev.time_ms, 1));
    if ((ev.fields & TC_AUDIT_HAS_EID) == 0)
        return TC_OK;

    struct tc_registry_device d;
    bool found = false;
    TC_GUARD(get_device(p, ev.eid, ev.eid_len, &d, &found));
    if (!found)
        memset(&d, 0, sizeof d);
    TC_GUARD(tc_registry_fold(&d, index, &ev));
    TC_GUARD(put_device(p, &d));
    return put_dev_ev(p, &ev, idx);
}

/* ------------------------------------------------------------ batches */

enum { W_DEV, W_BATCH, W_STATION };

/* One device, batch or station a batch of events names. */
struct reg_work {
    unsigned kind;
    const void *key;
    size_t key_len;
    uint64_t first, last, time_ms, count; /* batches and stations */
    struct tc_registry_device d;          /* devices */
    bool folded;                          /* d has folded an event of this batch */
    bool stored;                          /* before is the device's stored row */
    struct tc_registry_device before;     /* as loaded, when stored */
};

static uint32_t key_hash(unsigned kind, const void *key, size_t len)
{
    /* FNV-1a: the keys are the batch's own identifiers, not adversarial
     * beyond what the log accepted; collisions only cost probes. */
    uint32_t h = 2166136261u ^ kind;
    const uint8_t *b = key;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static struct reg_work *work_find(struct reg_proj *p, size_t *nw, unsigned kind, const void *key,
                                  size_t len, bool *added)
{
    size_t mask = p->tab_cap - 1;
    for (size_t i = key_hash(kind, key, len) & mask;; i = (i + 1) & mask) {
        if (p->tab[i] == 0) {
            struct reg_work *w = &p->work[*nw];
            memset(w, 0, sizeof *w);
            w->kind = kind;
            w->key = key;
            w->key_len = len;
            p->tab[i] = (uint32_t)++ * nw;
            *added = true;
            return w;
        }
        struct reg_work *w = &p->work[p->tab[i] - 1];
        if (w->kind == kind && w->key_len == len && memcmp(w->key, key, len) == 0) {
            *added = false;
            return w;
        }
    }
}

static tc_err work_reserve(struct reg_proj *p, size_t n)
{
    /* At most three keys per event (device, batch, station); the table is
     * kept at most half full. */
    TC_ENSURE(n <= UINT32_MAX / 8, TC_ERR_RANGE);
    size_t want = 3 * n, tab = 16;
    while (tab < 2 * want)
        tab *= 2;
    if (want > p->work_cap) {
        struct reg_work *w = realloc(p->work, want * sizeof *w);
        TC_ENSURE(w != NULL, TC_ERR_NOMEM);
        p->work = w;
        p->work_cap = want;
    }
    if (tab > p->tab_cap) {
        uint32_t *t = realloc(p->tab, tab * sizeof *t);
        TC_ENSURE(t != NULL, TC_ERR_NOMEM);
        p->tab = t;
        p->tab_cap = tab;
    }
    memset(p->tab, 0, p->tab_cap * sizeof *p->tab);
    return TC_OK;
}

/* A device row as writing and reading it back gives it (reg_device_read):
 * values the row does not hold are zero, integers clamped as stored. */
static void normalize(struct tc_registry_device *d)
{
    if (!d->has_kcv)
        memset(d->kcv, 0, sizeof d->kcv);
    if (!d->has_pubkey)
        memset(d->pubkey_sha256, 0, sizeof d->pubkey_sha256);
    if (!d->has_cert) {
        memset(d->cert_serial, 0, sizeof d->cert_serial);
        memset(d->cert_sha256, 0, sizeof d->cert_sha256);
        memset(d->cert_pubkey_sha256, 0, sizeof d->cert_pubkey_sha256);
        d->cert_serial_len = 0;
    } else {
        memset(d->cert_serial + d->cert_serial_len, 0, sizeof d->cert_serial - d->cert_serial_len);
    }
    d->first_index = (uint64_t)reg_i64(d->first_index);
    d->last_index = (uint64_t)reg_i64(d->last_index);
    d->last_time_ms = (uint64_t)reg_i64(d->last_time_ms);
    d->events = (uint64_t)reg_i64(d->events);
}

/* reg_device_read refuses a stored row of state 0 (a device whose events
 * never set one), so folding onto it fails as reading it back would. */
static bool state_ok(const struct tc_registry_device *d)
{
    return d->state >= 1 && (unsigned)d->state <= TC_REG_STATE_MAX_;
}

static tc_err readable(const struct tc_registry_device *d)
{
    TC_ENSURE_MSG(state_ok(d), TC_ERR_FORMAT, "stored device state %u", (unsigned)d->state);
    return TC_OK;
}

static size_t cache_slot(const uint8_t *eid, size_t len)
{
    return key_hash(W_DEV, eid, len) & (REG_CACHE_SLOTS - 1);
}

static tc_err load_device(struct reg_proj *p, const struct reg_dev_cache *cache, bool use_cache,
                          const struct tc_audit_event *ev, struct reg_work *w)
{
    struct tc_registry_device *d = &w->d;
    w->stored = false;
    if (use_cache) {
        size_t s = cache_slot(ev->eid, ev->eid_len);
        if (cache->slot[s].used && cache->slot[s].d.eid_len == ev->eid_len &&
            memcmp(cache->slot[s].d.eid, ev->eid, ev->eid_len) == 0) {
            memcpy(d, &cache->slot[s].d, sizeof *d);
            w->stored = true;
        }
    }
    if (!w->stored)
        TC_GUARD(get_device(p, ev->eid, ev->eid_len, d, &w->stored));
    if (w->stored)
        memcpy(&w->before, d, sizeof *d);
    else
        memset(d, 0, sizeof *d);
    return TC_OK;
}

/*
 * Whether the fold changed nothing of the stored row but its event counters
 * (last_idx, last_time, events): OTA operation records without a batch or
 * station (op-step, op-done, ...). Both rows are normalized (what reading the
 * row back gives); any other difference, even in bytes no column holds, takes
 * the full row write.
 */
static bool counts_only(const struct reg_work *w)
{
    struct tc_registry_device t;
    memcpy(&t, &w->d, sizeof t);
    t.last_index = w->before.last_index;
    t.last_time_ms = w->before.last_time_ms;
    t.events = w->before.events;
    return w->stored && state_ok(&w->before) && memcmp(&t, &w->before, sizeof t) == 0;
}

tc_err reg_proj_apply_batch(struct reg_proj *p, struct reg_dev_cache *cache, unsigned gen,
                            const struct tc_audit_batch_event *evs, size_t n,
                            struct tc_audit_event *dec)
{
    TC_ENSURE(p != NULL && (evs != NULL || n == 0) && (dec != NULL || n == 0), TC_ERR_ARG);
    if (n == 0)
        return TC_OK;
    TC_ENSURE(evs[0].index <= INT64_MAX && n <= INT64_MAX - evs[0].index, TC_ERR_ARG);
    TC_GUARD(work_reserve(p, n));
    bool use_cache = cache != NULL && cache->gen == gen && cache->valid_at == evs[0].index;
    if (cache != NULL && !use_cache)
        for (size_t s = 0; s < REG_CACHE_SLOTS; s++)
            cache->slot[s].used = false;

    /* Read and fold: the same order of events as one reg_proj_apply each. */
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        TC_ENSURE(evs[i].index == evs[0].index + i, TC_ERR_ARG);
        uint64_t index = evs[i].index;
        struct tc_audit_event *ev = &dec[i];
        tc_err rc = tc_audit_event_decode(evs[i].event, evs[i].len, ev);
        if (rc != TC_OK)
            return TC_FAIL(rc, "event %llu: %s", (unsigned long long)index, tc_error_last()->msg);
        bool added = false;
        struct reg_work *w;
        if (ev->fields & TC_AUDIT_HAS_BATCH) {
            w = work_find(p, &nw, W_BATCH, ev->batch, strlen(ev->batch), &added);
            if (added)
                w->first = index;
            w->last = index;
            w->count++;
        }
        if (ev->fields & TC_AUDIT_HAS_STATION) {
            w = work_find(p, &nw, W_STATION, ev->station, strlen(ev->station), &added);
            if (added)
                w->first = index;
            w->last = index;
            w->time_ms = ev->time_ms;
            w->count++;
        }
        if ((ev->fields & TC_AUDIT_HAS_EID) == 0)
            continue;
        w = work_find(p, &nw, W_DEV, ev->eid, ev->eid_len, &added);
        if (added)
            TC_GUARD(load_device(p, cache, use_cache, ev, w));
        else if (w->folded)
            TC_GUARD(readable(&w->d));
        TC_GUARD(tc_registry_fold(&w->d, index, ev));
        normalize(&w->d);
        w->folded = true;
        TC_GUARD(put_dev_ev(p, ev, (sqlite3_int64)index));
    }

    /* Write: each batch's counters once, then the revocations in log order
     * (they touch only the revocation columns, which the counters do not),
     * each station once, each device once (only its event counters when
     * nothing else of its row changed). */
    for (size_t k = 0; k < nw; k++)
        if (p->work[k].kind == W_BATCH)
            TC_GUARD(up_batch(p, p->work[k].key, (sqlite3_int64)p->work[k].first,
                              (sqlite3_int64)p->work[k].last, p->work[k].count));
    for (size_t i = 0; i < n; i++)
        if (dec[i].type == TC_AUDIT_BATCH_REVOKED)
            TC_GUARD(revoke_batch(p, &dec[i], (sqlite3_int64)evs[i].index));
    for (size_t k = 0; k < nw; k++)
        if (p->work[k].kind == W_STATION)
            TC_GUARD(up_station(p, p->work[k].key, (sqlite3_int64)p->work[k].first,
                                (sqlite3_int64)p->work[k].last, p->work[k].time_ms,
                                p->work[k].count));
    for (size_t k = 0; k < nw; k++)
        if (p->work[k].kind == W_DEV && counts_only(&p->work[k]))
            TC_GUARD(put_device_counts(p, &p->work[k].d));
        else if (p->work[k].kind == W_DEV)
            TC_GUARD(put_device(p, &p->work[k].d));

    for (size_t k = 0; p->snap != NULL && k < nw; k++) {
        const struct reg_work *w = &p->work[k];
        uint64_t before = w->stored ? w->before.events : 0;
        if (w->kind == W_DEV &&
            before / TC_REGISTRY_SNAP_EVERY != w->d.events / TC_REGISTRY_SNAP_EVERY)
            TC_GUARD(p->snap(p->snap_arg, w->d.eid, w->d.eid_len));
    }

    if (cache != NULL) {
        for (size_t k = 0; k < nw; k++) {
            const struct tc_registry_device *d = &p->work[k].d;
            if (p->work[k].kind != W_DEV || !state_ok(d))
                continue;
            size_t s = cache_slot(d->eid, d->eid_len);
            cache->slot[s].used = true;
            cache->slot[s].d = *d;
        }
        cache->valid_at = evs[n - 1].index + 1;
        cache->gen = gen;
    }
    return TC_OK;
}

tc_err reg_proj_replay(struct reg_proj *p, sqlite3 *db)
{
    tc_err ret = TC_ERR_INTERNAL;
    sqlite3_stmt *st = NULL;
    TC_TRY(reg_prep(db, "SELECT idx, event FROM main.audit_events ORDER BY idx", &st));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 idx = sqlite3_column_int64(st, 0);
        int n = sqlite3_column_bytes(st, 1);
        const uint8_t *e = sqlite3_column_blob(st, 1);
        TC_CHECK_MSG(idx >= 0 && n >= 0, TC_ERR_FORMAT, "stored event %lld", (long long)idx);
        TC_TRY(reg_proj_apply(p, (uint64_t)idx, e, (size_t)n));
    }
    TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "scan events: %s", sqlite3_errmsg(db));
    ret = TC_OK;
out:
    sqlite3_finalize(st);
    return ret;
}

/* ------------------------------------------------------------ dump */

/*
 * Canonical dump: for each table in a fixed order, a table byte (1..4), then
 * for each row in primary-key order a row byte 0x52 ('R') and each column as
 * its SQLite type byte (1 integer, 3 text, 4 blob, 5 null) followed by an
 * 8-byte big-endian value (integer) or a 4-byte big-endian length and the
 * bytes (text, blob). Floats never occur (refused).
 */
tc_err reg_dump(sqlite3 *db, const char *schema,
                tc_err (*sink)(void *arg, const uint8_t *p, size_t n), void *arg)
{
    static const char *const queries[] = {
        "SELECT " REG_DEVICE_COLS " FROM %s.reg_devices ORDER BY eid",
        "SELECT eid, idx, time_ms FROM %s.reg_device_events ORDER BY eid, idx",
        ("SELECT id, revoked, reason, revoked_idx, first_idx, last_idx, events "
         "FROM %s.reg_batches ORDER BY id"),
        "SELECT id, first_idx, last_idx, last_time, events FROM %s.reg_stations ORDER BY id",
    };
    tc_err ret = TC_ERR_INTERNAL;
    sqlite3_stmt *st = NULL;
    TC_ENSURE(db != NULL && schema != NULL && schema_ok(schema) && sink != NULL, TC_ERR_ARG);
    for (size_t t = 0; t < TC_ARRAY_LEN(queries); t++) {
        uint8_t tb = (uint8_t)(t + 1);
        TC_TRY(sink(arg, &tb, 1));
        TC_TRY(prep_s(db, queries[t], schema, &st));
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            uint8_t r = 0x52;
            TC_TRY(sink(arg, &r, 1));
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                int type = sqlite3_column_type(st, c);
                uint8_t hdr[9];
                hdr[0] = (uint8_t)type;
                if (type == SQLITE_INTEGER) {
                    uint64_t v = (uint64_t)sqlite3_column_int64(st, c);
                    for (int k = 0; k < 8; k++)
                        hdr[1 + k] = (uint8_t)(v >> (56 - 8 * k));
                    TC_TRY(sink(arg, hdr, 9));
                } else if (type == SQLITE_TEXT || type == SQLITE_BLOB) {
                    const uint8_t *p = type == SQLITE_TEXT ? sqlite3_column_text(st, c)
                                                           : sqlite3_column_blob(st, c);
                    int n = sqlite3_column_bytes(st, c);
                    TC_CHECK(n >= 0, TC_ERR_DB);
                    for (int k = 0; k < 4; k++)
                        hdr[1 + k] = (uint8_t)((uint32_t)n >> (24 - 8 * k));
                    TC_TRY(sink(arg, hdr, 5));
                    if (n > 0)
                        TC_TRY(sink(arg, p, (size_t)n));
                } else if (type == SQLITE_NULL) {
                    TC_TRY(sink(arg, hdr, 1));
                } else {
                    ret = TC_FAIL(TC_ERR_FORMAT, "a floating-point value in the registry");
                    goto out;
                }
            }
        }
        TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "dump: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        st = NULL;
    }
    ret = TC_OK;
out:
    sqlite3_finalize(st);
    return ret;
}
