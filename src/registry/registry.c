/*
 * The registry: an audit log whose batch hook keeps the projection tables
 * in the same SQLite transaction, plus a separate read connection (WAL
 * readers see committed data only) for queries, the certificate side table,
 * rebuild and checks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "registry/internal.h"

/* The certificate a certificate-issued event names, if an append in flight
 * carries it: stored on the log's connection, inside the batch transaction. */
static tc_err store_pending_cert(struct tc_registry *r, const struct tc_audit_event *ev)
{
    if (ev->type != TC_AUDIT_CERT_ISSUED || (ev->fields & TC_AUDIT_HAS_CERT_SHA256) == 0)
        return TC_OK;
    tc_err ret = TC_OK;
    pthread_mutex_lock(&r->pending_mu);
    for (const struct reg_pending_cert *p = r->pending; p != NULL; p = p->next) {
        if (memcmp(p->sha256, ev->cert_sha256, sizeof p->sha256) != 0)
            continue;
        sqlite3_stmt *st = r->live_cert_put;
        sqlite3_bind_blob(st, 1, p->sha256, sizeof p->sha256, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, p->der, (int)p->len, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE)
            ret = reg_db_fail(r->live.db, "store certificate");
        break;
    }
    pthread_mutex_unlock(&r->pending_mu);
    return ret;
}

/* A device crossed a snapshot boundary in the batch being projected. */
static tc_err hook_snap(void *arg, const uint8_t *eid, size_t eid_len)
{
    struct tc_registry *r = arg;
    const struct tc_registry_snap_kind *k = atomic_load(&r->snap_kind);
    if (k == NULL)
        return TC_OK;
    return reg_snap_refresh(r->live.db, &r->live_snap, k, eid, eid_len);
}

/* Runs inside each group-commit transaction, on the committing thread. */
static tc_err hook(void *arg, struct tc_audit_store *store,
                   const struct tc_audit_batch_event *events, size_t n)
{
    struct tc_registry *r = arg;
    (void)store;
    if (n > r->dec_cap) {
        size_t want = n < 64 ? 64 : n;
        TC_ENSURE(want <= SIZE_MAX / sizeof *r->dec, TC_ERR_NOMEM);
        struct tc_audit_event *d = realloc(r->dec, want * sizeof *d);
        TC_ENSURE(d != NULL, TC_ERR_NOMEM);
        r->dec = d;
        r->dec_cap = want;
    }
    TC_GUARD(reg_proj_apply_batch(&r->live, r->cache, atomic_load(&r->gen), events, n, r->dec));
    pthread_mutex_lock(&r->pending_mu);
    bool pending = r->pending != NULL;
    pthread_mutex_unlock(&r->pending_mu);
    for (size_t i = 0; pending && i < n; i++)
        TC_GUARD(store_pending_cert(r, &r->dec[i]));
    return TC_OK;
}

static tc_err reader_prepare(struct tc_registry *r)
{
    TC_GUARD(reg_prep(r->rdb, "SELECT " REG_DEVICE_COLS " FROM main.reg_devices WHERE eid = ?1",
                      &r->q_get));
    TC_GUARD(reg_prep(r->rdb,
                      "SELECT d.idx, e.event FROM main.reg_device_events d"
                      " JOIN main.audit_events e ON e.idx = d.idx"
                      " WHERE d.eid = ?1 AND d.time_ms <= ?2 ORDER BY d.idx",
                      &r->q_at));
    TC_GUARD(reg_prep(r->rdb,
                      "SELECT " REG_DEVICE_COLS " FROM main.reg_devices"
                      " WHERE (?1 IS NULL OR batch = ?1) AND (?2 = 0 OR state = ?2) ORDER BY eid",
                      &r->q_list));
    TC_GUARD(reg_prep(r->rdb,
                      "SELECT id, revoked, reason, revoked_idx, first_idx, last_idx, events"
                      " FROM main.reg_batches WHERE id = ?1",
                      &r->q_batch));
    TC_GUARD(reg_prep(r->rdb, "SELECT der FROM main.reg_certs WHERE sha256 = ?1", &r->q_cert_get));
    TC_GUARD(reg_prep(r->rdb, "INSERT OR IGNORE INTO main.reg_certs(sha256, der) VALUES(?1, ?2)",
                      &r->q_cert_put));
    return TC_OK;
}

static tc_err reader_open(struct tc_registry *r, bool create)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(r->path, &r->rdb, flags, NULL);
    TC_ENSURE_MSG(rc == SQLITE_OK, rc == SQLITE_CANTOPEN ? TC_ERR_NOT_FOUND : TC_ERR_DB,
                  "open %s: %s", r->path, r->rdb ? sqlite3_errmsg(r->rdb) : "out of memory");
    sqlite3_busy_timeout(r->rdb, 10000);
    /* The temp scratch tables of tc_registry_check stay in memory. */
    TC_GUARD(reg_exec(r->rdb, "PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=ON;"));
    return TC_OK;
}

static tc_err registry_alloc(const char *path, struct tc_registry **out)
{
    TC_ENSURE(path != NULL && out != NULL, TC_ERR_ARG);
    struct tc_registry *r = calloc(1, sizeof *r);
    TC_ENSURE(r != NULL, TC_ERR_NOMEM);
    int n = snprintf(r->path, sizeof r->path, "%s", path);
    if (n <= 0 || (size_t)n >= sizeof r->path) {
        free(r);
        return TC_FAIL(TC_ERR_ARG, "registry path too long");
    }
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return TC_FAIL(TC_ERR_NOMEM, "mutex");
    }
    if (pthread_mutex_init(&r->pending_mu, NULL) != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return TC_FAIL(TC_ERR_NOMEM, "mutex");
    }
    *out = r;
    return TC_OK;
}

void tc_registry_close(struct tc_registry *r)
{
    if (r == NULL)
        return;
    /* The log's connection goes with the log: finalize its statements first. */
    reg_proj_free(&r->live);
    reg_snap_free(&r->live_snap);
    sqlite3_finalize(r->live_cert_put);
    tc_audit_log_close(r->log);
    reg_snap_free(&r->rd_snap);
    sqlite3_stmt *all[] = {r->q_get, r->q_at, r->q_list, r->q_batch, r->q_cert_get, r->q_cert_put};
    for (size_t i = 0; i < TC_ARRAY_LEN(all); i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(r->rdb);
    free(r->dec);
    free(r->cache);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->pending_mu);
    free(r);
}

/* The origin stored at creation; a different one asked for is refused. */
static tc_err settle_origin(struct tc_registry *r, sqlite3 *db, const char *origin, bool *fresh)
{
    tc_err ret = TC_ERR_INTERNAL;
    sqlite3_stmt *st = NULL;
    TC_TRY(reg_prep(db, "SELECT value FROM main.reg_meta WHERE key = 'origin'", &st));
    int rc = sqlite3_step(st);
    *fresh = rc == SQLITE_DONE;
    if (rc == SQLITE_ROW) {
        const char *stored = (const char *)sqlite3_column_text(st, 0);
        TC_CHECK_MSG(stored != NULL && strlen(stored) <= TC_CHECKPOINT_ORIGIN_MAX, TC_ERR_FORMAT,
                     "stored origin is invalid");
        TC_CHECK_MSG(origin == NULL || strcmp(origin, stored) == 0, TC_ERR_STATE,
                     "the log's origin is '%s', not '%s'", stored, origin);
        (void)snprintf(r->origin, sizeof r->origin, "%s", stored);
    } else {
        TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "read origin: %s", sqlite3_errmsg(db));
        const char *o = origin != NULL ? origin : TC_REGISTRY_ORIGIN_DEFAULT;
        /* The origin is also the checkpoint key name: no spaces or '+'
         * (c2sp.org/signed-note). */
        size_t n = strlen(o);
        TC_CHECK_MSG(n > 0 && n <= TC_CHECKPOINT_ORIGIN_MAX && strpbrk(o, " +\n\t") == NULL,
                     TC_ERR_ARG, "origin '%s' is not a valid key name", o);
        (void)snprintf(r->origin, sizeof r->origin, "%s", o);
        sqlite3_finalize(st);
        st = NULL;
        TC_TRY(reg_prep(db, "INSERT INTO main.reg_meta(key, value) VALUES('origin', ?1)", &st));
        sqlite3_bind_text(st, 1, r->origin, -1, SQLITE_STATIC);
        TC_CHECK_MSG(sqlite3_step(st) == SQLITE_DONE, TC_ERR_DB, "store origin: %s",
                     sqlite3_errmsg(db));
    }
    ret = TC_OK;
out:
    sqlite3_finalize(st);
    return ret;
}

tc_err tc_registry_open(const char *path, const char *origin, struct tc_registry **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_registry *r = NULL;
    struct tc_audit_store store = {0};
    sqlite3 *db = NULL;
    bool fresh = false;
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    *out = NULL;
    TC_GUARD(registry_alloc(path, &r));
    TC_TRY(tc_audit_store_sqlite_open(path, &store));
    TC_TRY(tc_audit_store_sqlite_handle(&store, &db));
    /* No log is open over the store yet: its connection is ours for now. */
    TC_TRY(reg_exec(db, "BEGIN IMMEDIATE"));
    TC_TRY(reg_exec(db,
                    "CREATE TABLE IF NOT EXISTS main.reg_meta("
                    " key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
                    "CREATE TABLE IF NOT EXISTS main.reg_certs("
                    " sha256 BLOB PRIMARY KEY, der BLOB NOT NULL) WITHOUT ROWID;" REG_SNAPS_TABLE));
    TC_TRY(reg_schema_create(db, "main"));
    /* A projection written before the device row had all its columns is
     * dropped and rebuilt from the log below. */
    bool stale = !reg_schema_current(db);
    if (stale) {
        TC_TRY(reg_schema_drop(db));
        TC_TRY(reg_schema_create(db, "main"));
    }
    TC_TRY(settle_origin(r, db, origin, &fresh));
    if (fresh || stale) {
        /* A log written before it had a registry (or this projection):
         * project what it holds. */
        TC_TRY(reg_proj_clear(db, "main"));
        TC_TRY(reg_proj_init(&r->live, db, "main"));
        tc_err rc = reg_proj_replay(&r->live, db);
        reg_proj_free(&r->live);
        TC_TRY(rc);
    }
    TC_TRY(reg_exec(db, "COMMIT"));
    ret = tc_audit_log_open(store, r->origin, &r->log);
    store.ops = NULL; /* the log owns it now, even on failure */
    if (ret != TC_OK)
        goto out;
    ret = TC_ERR_INTERNAL;
    /* Nothing appends before the hook is set, so the connection is still ours. */
    TC_TRY(reg_proj_init(&r->live, db, "main"));
    TC_TRY(reg_snap_prepare(db, &r->live_snap));
    r->live.snap = hook_snap;
    r->live.snap_arg = r;
    TC_TRY(reg_prep(db, "INSERT OR IGNORE INTO main.reg_certs(sha256, der) VALUES(?1, ?2)",
                    &r->live_cert_put));
    r->cache = calloc(1, sizeof *r->cache);
    TC_CHECK(r->cache != NULL, TC_ERR_NOMEM);
    r->cache->valid_at = UINT64_MAX;
    tc_audit_log_set_batch_hook(r->log, hook, r);
    TC_TRY(reader_open(r, false));
    TC_TRY(reader_prepare(r));
    *out = r;
    r = NULL;
    ret = TC_OK;
out:
    if (db != NULL && store.ops != NULL && !sqlite3_get_autocommit(db))
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (store.ops != NULL)
        tc_audit_store_close(&store);
    tc_registry_close(r);
    return ret;
}

tc_err tc_registry_open_reader(const char *path, struct tc_registry **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_registry *r = NULL;
    sqlite3_stmt *st = NULL;
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    TC_GUARD(registry_alloc(path, &r));
    TC_TRY(reader_open(r, false));
    if (reg_prep(r->rdb, "SELECT value FROM main.reg_meta WHERE key = 'origin'", &st) != TC_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        ret = TC_FAIL(TC_ERR_NOT_FOUND, "%s holds no registry", path);
        goto out;
    }
    const char *o = (const char *)sqlite3_column_text(st, 0);
    TC_CHECK_MSG(o != NULL && strlen(o) <= TC_CHECKPOINT_ORIGIN_MAX, TC_ERR_FORMAT,
                 "stored origin is invalid");
    (void)snprintf(r->origin, sizeof r->origin, "%s", o);
    TC_TRY(reader_prepare(r));
    *out = r;
    r = NULL;
    ret = TC_OK;
out:
    sqlite3_finalize(st);
    tc_registry_close(r);
    return ret;
}

tc_err tc_registry_open_workspace(const char *workspace, struct tc_registry **out)
{
    TC_ENSURE(workspace != NULL && workspace[0] != '\0', TC_ERR_ARG);
    if (mkdir(workspace, 0700) != 0 && errno != EEXIST)
        return TC_FAIL(TC_ERR_IO, "cannot create %s: %s", workspace, strerror(errno));
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", workspace, TC_REGISTRY_DB_NAME);
    TC_ENSURE_MSG(n > 0 && (size_t)n < sizeof path, TC_ERR_ARG, "workspace path too long");
    return tc_registry_open(path, NULL, out);
}

struct tc_audit_log *tc_registry_log(struct tc_registry *r)
{
    return r != NULL ? r->log : NULL;
}

const char *tc_registry_origin(const struct tc_registry *r)
{
    return r != NULL ? r->origin : NULL;
}

const char *tc_registry_path(const struct tc_registry *r)
{
    return r != NULL ? r->path : NULL;
}

tc_err tc_registry_append(struct tc_registry *r, const struct tc_audit_event *ev, uint64_t *index)
{
    TC_ENSURE(r != NULL && ev != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(r->log != NULL, TC_ERR_STATE, "registry opened for reading only");
    return tc_audit_log_append_event(r->log, ev, index);
}

tc_err tc_registry_append_encoded(struct tc_registry *r, const uint8_t *const *events,
                                  const size_t *lens, size_t n, uint64_t *first_index)
{
    TC_ENSURE(r != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(r->log != NULL, TC_ERR_STATE, "registry opened for reading only");
    return tc_audit_log_append(r->log, events, lens, n, first_index);
}

/* Each certificate must be the one a certificate-issued event of the
 * append names: the side table only ever holds bytes the log vouches for. */
static tc_err certs_named(const uint8_t *const *events, const size_t *lens, size_t n,
                          const struct reg_pending_cert *p)
{
    for (size_t i = 0; i < n; i++) {
        struct tc_audit_event ev;
        TC_GUARD(tc_audit_event_decode(events[i], lens[i], &ev));
        if (ev.type == TC_AUDIT_CERT_ISSUED && (ev.fields & TC_AUDIT_HAS_CERT_SHA256) != 0 &&
            memcmp(ev.cert_sha256, p->sha256, sizeof p->sha256) == 0)
            return TC_OK;
    }
    return TC_FAIL(TC_ERR_ARG, "a certificate no certificate-issued event of the append names");
}

tc_err tc_registry_append_certs(struct tc_registry *r, const uint8_t *const *events,
                                const size_t *lens, size_t n, const struct tc_registry_cert *certs,
                                size_t ncerts, uint64_t *first_index)
{
    enum { MAX = 8 };
    struct reg_pending_cert node[MAX];
    TC_ENSURE(r != NULL && events != NULL && lens != NULL && (ncerts == 0 || certs != NULL),
              TC_ERR_ARG);
    TC_ENSURE_MSG(r->log != NULL, TC_ERR_STATE, "registry opened for reading only");
    TC_ENSURE_MSG(ncerts <= MAX, TC_ERR_RANGE, "at most %d certificates in one append", MAX);
    for (size_t i = 0; i < ncerts; i++) {
        TC_ENSURE(certs[i].der != NULL && certs[i].len > 0, TC_ERR_ARG);
        TC_ENSURE_MSG(certs[i].len <= TC_REGISTRY_CERT_MAX, TC_ERR_RANGE,
                      "certificate of %zu bytes", certs[i].len);
        TC_GUARD(reg_sha256(certs[i].der, certs[i].len, node[i].sha256));
        node[i].der = certs[i].der;
        node[i].len = certs[i].len;
        TC_GUARD(certs_named(events, lens, n, &node[i]));
    }
    if (ncerts > 0) {
        pthread_mutex_lock(&r->pending_mu);
        for (size_t i = 0; i < ncerts; i++) {
            node[i].next = r->pending;
            r->pending = &node[i];
        }
        pthread_mutex_unlock(&r->pending_mu);
    }
    tc_err rc = tc_audit_log_append(r->log, events, lens, n, first_index);
    if (ncerts > 0) {
        pthread_mutex_lock(&r->pending_mu);
        for (size_t i = 0; i < ncerts; i++)
            for (struct reg_pending_cert **pp = &r->pending; *pp != NULL; pp = &(*pp)->next)
                if (*pp == &node[i]) {
                    *pp = node[i].next;
                    break;
                }
        pthread_mutex_unlock(&r->pending_mu);
    }
    return rc;
}

tc_err tc_registry_checkpoint(struct tc_registry *r, const struct tc_signer *signer, uint8_t *note,
                              size_t note_size, size_t *note_len)
{
    TC_ENSURE(r != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(r->log != NULL, TC_ERR_STATE, "registry opened for reading only");
    return tc_audit_log_checkpoint(r->log, signer, note, note_size, note_len);
}

/* ------------------------------------------------------------ certificates */

tc_err tc_registry_cert_put(struct tc_registry *r, const uint8_t *der, size_t len,
                            uint8_t sha256[static TC_AUDIT_HASH_LEN])
{
    TC_ENSURE(r != NULL && der != NULL && len > 0, TC_ERR_ARG);
    TC_ENSURE_MSG(len <= TC_REGISTRY_CERT_MAX, TC_ERR_RANGE, "certificate of %zu bytes", len);
    uint8_t h[TC_AUDIT_HASH_LEN];
    TC_GUARD(reg_sha256(der, len, h));
    pthread_mutex_lock(&r->mu);
    sqlite3_bind_blob(r->q_cert_put, 1, h, sizeof h, SQLITE_STATIC);
    sqlite3_bind_blob(r->q_cert_put, 2, der, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(r->q_cert_put);
    sqlite3_reset(r->q_cert_put);
    sqlite3_clear_bindings(r->q_cert_put);
    tc_err ret = rc == SQLITE_DONE ? TC_OK : reg_db_fail(r->rdb, "store certificate");
    pthread_mutex_unlock(&r->mu);
    if (ret == TC_OK)
        memcpy(sha256, h, sizeof h);
    return ret;
}

tc_err tc_registry_cert_get(struct tc_registry *r, const uint8_t sha256[static TC_AUDIT_HASH_LEN],
                            uint8_t *der, size_t der_size, size_t *der_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(r != NULL && der != NULL && der_len != NULL, TC_ERR_ARG);
    pthread_mutex_lock(&r->mu);
    sqlite3_stmt *st = r->q_cert_get;
    sqlite3_bind_blob(st, 1, sha256, TC_AUDIT_HASH_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ret = TC_FAIL(TC_ERR_NOT_FOUND, "no certificate with that SHA-256 in the registry");
        goto out;
    }
    TC_CHECK_MSG(rc == SQLITE_ROW, TC_ERR_DB, "read certificate: %s", sqlite3_errmsg(r->rdb));
    int n = sqlite3_column_bytes(st, 0);
    const void *p = sqlite3_column_blob(st, 0);
    TC_CHECK(n > 0 && p != NULL, TC_ERR_FORMAT);
    TC_CHECK_MSG((size_t)n <= der_size, TC_ERR_SPACE, "certificate of %d bytes", n);
    uint8_t h[TC_AUDIT_HASH_LEN];
    TC_TRY(reg_sha256(p, (size_t)n, h));
    /* The side table is untrusted: only bytes that hash to what the log
     * says leave it. */
    TC_CHECK_MSG(memcmp(h, sha256, sizeof h) == 0, TC_ERR_VERIFY,
                 "stored certificate does not match its SHA-256");
    memcpy(der, p, (size_t)n);
    *der_len = (size_t)n;
    ret = TC_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&r->mu);
    return ret;
}

/* ------------------------------------------------------------ queries */

tc_err tc_registry_device_get(struct tc_registry *r, const uint8_t *eid, size_t eid_len,
                              struct tc_registry_device *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(r != NULL && eid != NULL && out != NULL, TC_ERR_ARG);
    TC_ENSURE(eid_len > 0 && eid_len <= TC_AUDIT_EID_MAX, TC_ERR_ARG);
    pthread_mutex_lock(&r->mu);
    sqlite3_bind_blob(r->q_get, 1, eid, (int)eid_len, SQLITE_STATIC);
    int rc = sqlite3_step(r->q_get);
    if (rc == SQLITE_DONE) {
        ret = TC_FAIL(TC_ERR_NOT_FOUND, "no device with that EID in the registry");
        goto out;
    }
    TC_CHECK_MSG(rc == SQLITE_ROW, TC_ERR_DB, "read device: %s", sqlite3_errmsg(r->rdb));
    TC_TRY(reg_device_read(r->q_get, 0, out));
    ret = TC_OK;
out:
    sqlite3_reset(r->q_get);
    sqlite3_clear_bindings(r->q_get);
    pthread_mutex_unlock(&r->mu);
    return ret;
}

/* Walks the device's events with time <= time_ms (log order), decoded. */
static tc_err walk(struct tc_registry *r, const uint8_t *eid, size_t eid_len, uint64_t time_ms,
                   tc_err (*fn)(void *arg, uint64_t index, const struct tc_audit_event *ev,
                                const uint8_t *event, size_t len),
                   void *arg, size_t *count)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(r != NULL && eid != NULL && fn != NULL, TC_ERR_ARG);
    TC_ENSURE(eid_len > 0 && eid_len <= TC_AUDIT_EID_MAX, TC_ERR_ARG);
    *count = 0;
    pthread_mutex_lock(&r->mu);
    sqlite3_stmt *st = r->q_at;
    sqlite3_bind_blob(st, 1, eid, (int)eid_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, reg_i64(time_ms));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t idx = 0;
        struct tc_audit_event ev;
        const uint8_t *e = NULL;
        size_t n = 0;
        TC_TRY(reg_row_event(st, eid, eid_len, &idx, &ev, &e, &n));
        TC_CHECK_MSG(ev.time_ms <= time_ms, TC_ERR_VERIFY,
                     "registry index names event %llu, which is after the time asked for",
                     (unsigned long long)idx);
        TC_TRY(fn(arg, idx, &ev, e, n));
        (*count)++;
    }
    TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "read device events: %s", sqlite3_errmsg(r->rdb));
    ret = TC_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&r->mu);
    return ret;
}

struct fold_ctx {
    struct tc_registry_device *d;
    uint64_t *indices;
    size_t max, n;
};

static tc_err fold_one(void *arg, uint64_t index, const struct tc_audit_event *ev,
                       const uint8_t *event, size_t len)
{
    struct fold_ctx *f = arg;
    (void)event;
    (void)len;
    TC_GUARD(tc_registry_fold(f->d, index, ev));
    if (f->indices != NULL && f->n < f->max)
        f->indices[f->n] = index;
    f->n++;
    return TC_OK;
}

tc_err tc_registry_device_at(struct tc_registry *r, const uint8_t *eid, size_t eid_len,
                             uint64_t time_ms, struct tc_registry_device *out, uint64_t *indices,
                             size_t max_indices, size_t *n_indices)
{
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    memset(out, 0, sizeof *out);
    struct fold_ctx f = {.d = out, .indices = indices, .max = max_indices};
    size_t count = 0;
    TC_GUARD(walk(r, eid, eid_len, time_ms, fold_one, &f, &count));
    if (n_indices != NULL)
        *n_indices = f.n;
    TC_ENSURE_MSG(count > 0, TC_ERR_NOT_FOUND, "no event for that EID %s",
                  time_ms == UINT64_MAX ? "in the log" : "at or before that time");
    return TC_OK;
}

tc_err tc_registry_device_history(struct tc_registry *r, const uint8_t *eid, size_t eid_len,
                                  tc_err (*fn)(void *arg, uint64_t index,
                                               const struct tc_audit_event *ev,
                                               const uint8_t *event, size_t len),
                                  void *arg)
{
    size_t count = 0;
    TC_GUARD(walk(r, eid, eid_len, UINT64_MAX, fn, arg, &count));
    TC_ENSURE_MSG(count > 0, TC_ERR_NOT_FOUND, "no device with that EID in the registry");
    return TC_OK;
}

tc_err tc_registry_device_list(struct tc_registry *r, const char *batch,
                               enum tc_registry_state state,
                               tc_err (*fn)(void *arg, const struct tc_registry_device *d),
                               void *arg)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(r != NULL && fn != NULL, TC_ERR_ARG);
    TC_ENSURE((unsigned)state <= TC_REG_STATE_MAX_, TC_ERR_ARG);
    pthread_mutex_lock(&r->mu);
    sqlite3_stmt *st = r->q_list;
    if (batch != NULL)
        sqlite3_bind_text(st, 1, batch, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int(st, 2, (int)state);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct tc_registry_device d;
        TC_TRY(reg_device_read(st, 0, &d));
        TC_TRY(fn(arg, &d));
    }
    TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "list devices: %s", sqlite3_errmsg(r->rdb));
    ret = TC_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&r->mu);
    return ret;
}

tc_err tc_registry_batch_get(struct tc_registry *r, const char *id, struct tc_registry_batch *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(r != NULL && id != NULL && out != NULL, TC_ERR_ARG);
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->mu);
    sqlite3_stmt *st = r->q_batch;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ret = TC_FAIL(TC_ERR_NOT_FOUND, "no batch '%s' in the registry", id);
        goto out;
    }
    TC_CHECK_MSG(rc == SQLITE_ROW, TC_ERR_DB, "read batch: %s", sqlite3_errmsg(r->rdb));
    (void)snprintf(out->id, sizeof out->id, "%s", (const char *)sqlite3_column_text(st, 0));
    out->revoked = sqlite3_column_int(st, 1) != 0;
    out->reason = (uint16_t)sqlite3_column_int(st, 2);
    out->revoked_index = (uint64_t)sqlite3_column_int64(st, 3);
    out->first_index = (uint64_t)sqlite3_column_int64(st, 4);
    out->last_index = (uint64_t)sqlite3_column_int64(st, 5);
    out->events = (uint64_t)sqlite3_column_int64(st, 6);
    ret = TC_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&r->mu);
    return ret;
}

/* ------------------------------------------------------------ dump, check, rebuild */

static tc_err sink_hash(void *arg, const uint8_t *p, size_t n)
{
    TC_ENSURE_MSG(EVP_DigestUpdate(arg, p, n) == 1, TC_ERR_CRYPTO, "SHA-256 failed");
    return TC_OK;
}

static tc_err sink_file(void *arg, const uint8_t *p, size_t n)
{
    TC_ENSURE_MSG(fwrite(p, 1, n, arg) == n, TC_ERR_IO, "cannot write the dump");
    return TC_OK;
}

static tc_err dump_hash(sqlite3 *db, const char *schema, uint8_t out[TC_AUDIT_HASH_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned len = 0;
    TC_CHECK(md != NULL, TC_ERR_NOMEM);
    TC_CHECK_MSG(EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1, TC_ERR_CRYPTO, "SHA-256 init");
    TC_TRY(reg_dump(db, schema, sink_hash, md));
    TC_CHECK_MSG(EVP_DigestFinal_ex(md, out, &len) == 1 && len == TC_AUDIT_HASH_LEN, TC_ERR_CRYPTO,
                 "SHA-256 final");
    ret = TC_OK;
out:
    EVP_MD_CTX_free(md);
    return ret;
}

tc_err tc_registry_dump_hash(struct tc_registry *r, uint8_t out[static TC_AUDIT_HASH_LEN])
{
    TC_ENSURE(r != NULL, TC_ERR_ARG);
    pthread_mutex_lock(&r->mu);
    tc_err rc = dump_hash(r->rdb, "main", out);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

tc_err tc_registry_dump(struct tc_registry *r, FILE *f)
{
    TC_ENSURE(r != NULL && f != NULL, TC_ERR_ARG);
    pthread_mutex_lock(&r->mu);
    tc_err rc = reg_dump(r->rdb, "main", sink_file, f);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* The read connection's snapshot statements (under mu). */
static tc_err rd_snap_ready(struct tc_registry *r)
{
    if (r->rd_snap.events != NULL)
        return TC_OK;
    tc_err rc = reg_snap_prepare(r->rdb, &r->rd_snap);
    if (rc != TC_OK)
        reg_snap_free(&r->rd_snap);
    return rc;
}

static void drop_temp(sqlite3 *db)
{
    (void)sqlite3_exec(db,
                       "DROP TABLE IF EXISTS temp.reg_devices;"
                       "DROP TABLE IF EXISTS temp.reg_device_events;"
                       "DROP TABLE IF EXISTS temp.reg_batches;"
                       "DROP TABLE IF EXISTS temp.reg_stations;",
                       NULL, NULL, NULL);
}

tc_err tc_registry_check(struct tc_registry *r, uint8_t stored[TC_AUDIT_HASH_LEN],
                         uint8_t rebuilt[TC_AUDIT_HASH_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    struct reg_proj scratch = {0};
    uint8_t hs[TC_AUDIT_HASH_LEN], hr[TC_AUDIT_HASH_LEN];
    bool open = false;
    TC_ENSURE(r != NULL, TC_ERR_ARG);
    pthread_mutex_lock(&r->mu);
    sqlite3 *db = r->rdb;
    drop_temp(db);
    TC_TRY(reg_schema_create(db, "temp"));
    /* One read snapshot for the log and the stored projection. */
    TC_TRY(reg_exec(db, "BEGIN; SELECT count(*) FROM main.reg_devices;"));
    open = true;
    TC_TRY(reg_proj_init(&scratch, db, "temp"));
    TC_TRY(reg_proj_replay(&scratch, db));
    TC_TRY(dump_hash(db, "main", hs));
    TC_TRY(dump_hash(db, "temp", hr));
    if (stored != NULL)
        memcpy(stored, hs, sizeof hs);
    if (rebuilt != NULL)
        memcpy(rebuilt, hr, sizeof hr);
    TC_CHECK_MSG(memcmp(hs, hr, sizeof hs) == 0, TC_ERR_VERIFY,
                 "the registry projection differs from the one rebuilt from the log");
    const struct tc_registry_snap_kind *k = atomic_load(&r->snap_kind);
    if (k != NULL) {
        TC_TRY(rd_snap_ready(r));
        TC_TRY(reg_snap_check(db, &r->rd_snap, k));
    }
    ret = TC_OK;
out:
    reg_proj_free(&scratch);
    if (open)
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    drop_temp(db);
    pthread_mutex_unlock(&r->mu);
    return ret;
}

tc_err tc_registry_rebuild(struct tc_registry *r)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct reg_proj p = {0};
    bool open = false;
    TC_ENSURE(r != NULL, TC_ERR_ARG);
    pthread_mutex_lock(&r->mu);
    sqlite3 *db = r->rdb;
    /* The rows the batch hook remembers are not read again after this
     * (before and after: a hook that ran in between read the old rows). */
    atomic_fetch_add(&r->gen, 1u);
    /* Holds the write lock: no append commits until the rebuild has. */
    TC_TRY(reg_exec(db, "BEGIN IMMEDIATE"));
    open = true;
    TC_TRY(reg_proj_clear(db, "main"));
    /* Snapshots are refolded from the log as their devices get events. */
    TC_TRY(reg_exec(db, REG_SNAPS_TABLE "DELETE FROM main.reg_device_snaps;"));
    TC_TRY(reg_proj_init(&p, db, "main"));
    TC_TRY(reg_proj_replay(&p, db));
    reg_proj_free(&p);
    TC_TRY(reg_exec(db, "COMMIT"));
    open = false;
    atomic_fetch_add(&r->gen, 1u);
    ret = TC_OK;
out:
    reg_proj_free(&p);
    if (open)
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&r->mu);
    return ret;
}

void tc_registry_stats(struct tc_registry *r, struct tc_registry_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (r == NULL)
        return;
    const struct reg_proj_stats *s = &r->live.stats;
    out->device_rows = atomic_load_explicit(&s->device_rows, memory_order_relaxed);
    out->device_counts = atomic_load_explicit(&s->device_counts, memory_order_relaxed);
    out->device_events = atomic_load_explicit(&s->device_events, memory_order_relaxed);
    out->batch_rows = atomic_load_explicit(&s->batch_rows, memory_order_relaxed);
    out->station_rows = atomic_load_explicit(&s->station_rows, memory_order_relaxed);
}

tc_err tc_registry_set_snap_kind(struct tc_registry *r, const struct tc_registry_snap_kind *k)
{
    TC_ENSURE(r != NULL && k != NULL && k->state_size > 0 && k->init != NULL && k->decode != NULL &&
                  k->fold != NULL && k->encode != NULL,
              TC_ERR_ARG);
    const struct tc_registry_snap_kind *none = NULL;
    if (atomic_compare_exchange_strong(&r->snap_kind, &none, k) || none == k)
        return TC_OK;
    return TC_FAIL(TC_ERR_STATE, "the registry keeps another kind of device snapshot");
}

tc_err tc_registry_device_snap(struct tc_registry *r, const struct tc_registry_snap_kind *k,
                               const uint8_t *eid, size_t eid_len, void *state, size_t *folded)
{
    TC_ENSURE(r != NULL && k != NULL && k->init != NULL && k->decode != NULL && k->fold != NULL &&
                  eid != NULL && state != NULL,
              TC_ERR_ARG);
    TC_ENSURE(eid_len > 0 && eid_len <= TC_AUDIT_EID_MAX, TC_ERR_ARG);
    size_t n = 0;
    uint64_t last = 0;
    pthread_mutex_lock(&r->mu);
    tc_err rc = rd_snap_ready(r);
    if (rc == TC_OK)
        rc = reg_snap_state(r->rdb, &r->rd_snap, k, eid, eid_len, state, &last, &n);
    pthread_mutex_unlock(&r->mu);
    if (folded != NULL)
        *folded = n;
    return rc;
}

tc_err tc_registry_verify(struct tc_registry *r, const struct tc_note_verifier *verifier,
                          struct tc_audit_verify_report *report)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_audit_store store = {0};
    TC_ENSURE(r != NULL && verifier != NULL && report != NULL, TC_ERR_ARG);
    TC_TRY(tc_audit_store_sqlite_open(r->path, &store));
    TC_TRY(tc_audit_verify_store(&store, r->origin, verifier, true, report));
    TC_TRY(tc_registry_check(r, NULL, NULL));
    ret = TC_OK;
out:
    tc_audit_store_close(&store);
    return ret;
}
