/*
 * The default log store: one SQLite database in WAL mode with
 * synchronous=FULL, so a COMMIT returns only after the WAL is fsync'ed.
 * Events, the tree head and checkpoints are plain tables, so a registry
 * projection can live in the same database and change in the same
 * transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include <trustchain/audit.h>

struct sq {
    sqlite3 *db;
    sqlite3_stmt *put_event, *put_tree, *put_cp, *get_tree, *get_event, *scan, *next_cp, *last_cp;
    /* Prepared once: every append transaction would otherwise parse them. */
    sqlite3_stmt *begin, *commit, *rollback;
};

static tc_err db_fail(sqlite3 *db, const char *what)
{
    return TC_FAIL(TC_ERR_DB, "%s: %s", what, db ? sqlite3_errmsg(db) : "no database");
}

static tc_err exec(struct sq *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        tc_err rc = TC_FAIL(TC_ERR_DB, "%s: %s", sql, err ? err : "?");
        sqlite3_free(err);
        return rc;
    }
    return TC_OK;
}

static tc_err prep(struct sq *s, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return db_fail(s->db, sql);
    return TC_OK;
}

static tc_err step_done(struct sq *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return db_fail(s->db, what);
    return TC_OK;
}

static tc_err sq_begin(void *ctx)
{
    struct sq *s = ctx;
    return step_done(s, s->begin, "BEGIN IMMEDIATE");
}

static tc_err sq_commit(void *ctx)
{
    /* synchronous=FULL in WAL mode: the WAL is synced before COMMIT returns. */
    struct sq *s = ctx;
    return step_done(s, s->commit, "COMMIT");
}

static void sq_rollback(void *ctx)
{
    struct sq *s = ctx;
    if (!sqlite3_get_autocommit(s->db)) {
        (void)sqlite3_step(s->rollback);
        sqlite3_reset(s->rollback);
    }
}

static tc_err sq_put_event(void *ctx, uint64_t index, const uint8_t *event, size_t len,
                           const uint8_t leaf_hash[TC_AUDIT_HASH_LEN])
{
    struct sq *s = ctx;
    TC_ENSURE(index <= INT64_MAX && len <= INT32_MAX, TC_ERR_RANGE);
    sqlite3_bind_int64(s->put_event, 1, (sqlite3_int64)index);
    sqlite3_bind_blob(s->put_event, 2, leaf_hash, TC_AUDIT_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(s->put_event, 3, event, (int)len, SQLITE_STATIC);
    return step_done(s, s->put_event, "insert event");
}

static tc_err sq_put_tree(void *ctx, uint64_t size, const uint8_t root[TC_AUDIT_HASH_LEN])
{
    struct sq *s = ctx;
    TC_ENSURE(size <= INT64_MAX, TC_ERR_RANGE);
    sqlite3_bind_int64(s->put_tree, 1, (sqlite3_int64)size);
    sqlite3_bind_blob(s->put_tree, 2, root, TC_AUDIT_HASH_LEN, SQLITE_STATIC);
    return step_done(s, s->put_tree, "store tree head");
}

static tc_err sq_put_cp(void *ctx, uint64_t size, const uint8_t *note, size_t len)
{
    struct sq *s = ctx;
    TC_ENSURE(size <= INT64_MAX && len <= INT32_MAX, TC_ERR_RANGE);
    sqlite3_bind_int64(s->put_cp, 1, (sqlite3_int64)size);
    sqlite3_bind_blob(s->put_cp, 2, note, (int)len, SQLITE_STATIC);
    return step_done(s, s->put_cp, "store checkpoint");
}

static tc_err copy_blob(sqlite3_stmt *st, int col, uint8_t *out, size_t out_size, size_t *out_len)
{
    int n = sqlite3_column_bytes(st, col);
    const void *p = sqlite3_column_blob(st, col);
    TC_ENSURE(n >= 0, TC_ERR_DB);
    TC_ENSURE_MSG((size_t)n <= out_size, TC_ERR_SPACE, "stored value of %d bytes", n);
    if (n > 0)
        memcpy(out, p, (size_t)n);
    *out_len = (size_t)n;
    return TC_OK;
}

static tc_err sq_get_tree(void *ctx, uint64_t *size, uint8_t root[TC_AUDIT_HASH_LEN])
{
    struct sq *s = ctx;
    tc_err ret = TC_ERR_INTERNAL;
    int rc = sqlite3_step(s->get_tree);
    if (rc == SQLITE_DONE) {
        ret = TC_FAIL(TC_ERR_NOT_FOUND, "no tree head stored");
        goto out;
    }
    TC_CHECK_MSG(rc == SQLITE_ROW, TC_ERR_DB, "read tree head: %s", sqlite3_errmsg(s->db));
    sqlite3_int64 n = sqlite3_column_int64(s->get_tree, 0);
    TC_CHECK_MSG(n >= 0, TC_ERR_FORMAT, "stored tree size is negative");
    size_t len = 0;
    TC_TRY(copy_blob(s->get_tree, 1, root, TC_AUDIT_HASH_LEN, &len));
    TC_CHECK_MSG(len == TC_AUDIT_HASH_LEN, TC_ERR_FORMAT, "stored root is %zu bytes", len);
    *size = (uint64_t)n;
    ret = TC_OK;
out:
    sqlite3_reset(s->get_tree);
    return ret;
}

static tc_err sq_get_event(void *ctx, uint64_t index, uint8_t *out, size_t out_size,
                           size_t *out_len, uint8_t leaf_hash[TC_AUDIT_HASH_LEN])
{
    struct sq *s = ctx;
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(index <= INT64_MAX, TC_ERR_RANGE);
    sqlite3_bind_int64(s->get_event, 1, (sqlite3_int64)index);
    int rc = sqlite3_step(s->get_event);
    if (rc == SQLITE_DONE) {
        ret = TC_FAIL(TC_ERR_NOT_FOUND, "no event %llu", (unsigned long long)index);
        goto out;
    }
    TC_CHECK_MSG(rc == SQLITE_ROW, TC_ERR_DB, "read event: %s", sqlite3_errmsg(s->db));
    size_t hl = 0;
    uint8_t h[TC_AUDIT_HASH_LEN];
    TC_TRY(copy_blob(s->get_event, 0, h, sizeof h, &hl));
    TC_CHECK_MSG(hl == TC_AUDIT_HASH_LEN, TC_ERR_FORMAT, "stored leaf hash is %zu bytes", hl);
    if (leaf_hash)
        memcpy(leaf_hash, h, sizeof h);
    TC_TRY(copy_blob(s->get_event, 1, out, out_size, out_len));
    ret = TC_OK;
out:
    sqlite3_reset(s->get_event);
    sqlite3_clear_bindings(s->get_event);
    return ret;
}

static tc_err sq_scan(void *ctx,
                      tc_err (*fn)(void *arg, uint64_t index, const uint8_t *event, size_t len,
                                   const uint8_t *leaf_hash, size_t hash_len),
                      void *arg)
{
    struct sq *s = ctx;
    tc_err ret = TC_ERR_INTERNAL;
    int rc;
    while ((rc = sqlite3_step(s->scan)) == SQLITE_ROW) {
        sqlite3_int64 idx = sqlite3_column_int64(s->scan, 0);
        TC_CHECK_MSG(idx >= 0, TC_ERR_FORMAT, "negative event index");
        int hl = sqlite3_column_bytes(s->scan, 1);
        const uint8_t *h = sqlite3_column_blob(s->scan, 1);
        int el = sqlite3_column_bytes(s->scan, 2);
        const uint8_t *e = sqlite3_column_blob(s->scan, 2);
        TC_CHECK(hl >= 0 && el >= 0, TC_ERR_DB);
        TC_TRY(fn(arg, (uint64_t)idx, e, (size_t)el, h, (size_t)hl));
    }
    TC_CHECK_MSG(rc == SQLITE_DONE, TC_ERR_DB, "scan events: %s", sqlite3_errmsg(s->db));
    ret = TC_OK;
out:
    sqlite3_reset(s->scan);
    return ret;
}

static tc_err read_cp(struct sq *s, sqlite3_stmt *st, uint64_t *size, uint8_t *note,
                      size_t note_size, size_t *note_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ret = TC_FAIL(TC_ERR_NOT_FOUND, "no checkpoint");
        goto out;
    }
    TC_CHECK_MSG(rc == SQLITE_ROW, TC_ERR_DB, "read checkpoint: %s", sqlite3_errmsg(s->db));
    sqlite3_int64 n = sqlite3_column_int64(st, 0);
    TC_CHECK_MSG(n >= 0, TC_ERR_FORMAT, "negative checkpoint size");
    TC_TRY(copy_blob(st, 1, note, note_size, note_len));
    *size = (uint64_t)n;
    ret = TC_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static tc_err sq_next_cp(void *ctx, uint64_t after, uint64_t *size, uint8_t *note, size_t note_size,
                         size_t *note_len)
{
    struct sq *s = ctx;
    TC_ENSURE(after <= INT64_MAX, TC_ERR_RANGE);
    sqlite3_bind_int64(s->next_cp, 1, (sqlite3_int64)after);
    return read_cp(s, s->next_cp, size, note, note_size, note_len);
}

static tc_err sq_last_cp(void *ctx, uint64_t *size, uint8_t *note, size_t note_size,
                         size_t *note_len)
{
    struct sq *s = ctx;
    return read_cp(s, s->last_cp, size, note, note_size, note_len);
}

static void sq_close(void *ctx)
{
    struct sq *s = ctx;
    if (s == NULL)
        return;
    sqlite3_stmt *all[] = {s->put_event, s->put_tree, s->put_cp, s->get_tree, s->get_event, s->scan,
                           s->next_cp,   s->last_cp,  s->begin,  s->commit,   s->rollback};
    for (size_t i = 0; i < TC_ARRAY_LEN(all); i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(s->db);
    free(s);
}

static const struct tc_audit_store_ops sq_ops = {
    .begin = sq_begin,
    .put_event = sq_put_event,
    .put_tree = sq_put_tree,
    .put_checkpoint = sq_put_cp,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .get_tree = sq_get_tree,
    .get_event = sq_get_event,
    .scan_events = sq_scan,
    .last_checkpoint = sq_last_cp,
    .next_checkpoint = sq_next_cp,
    .close = sq_close,
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS audit_events("
    " idx INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL, event BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_tree("
    " id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, root BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_checkpoints("
    " size INTEGER PRIMARY KEY, note BLOB NOT NULL);";

tc_err tc_audit_store_sqlite_open(const char *path, struct tc_audit_store *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(path != NULL && out != NULL, TC_ERR_ARG);
    struct sq *s = calloc(1, sizeof *s);
    TC_ENSURE(s != NULL, TC_ERR_NOMEM);
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    TC_CHECK_MSG(rc == SQLITE_OK, TC_ERR_DB, "open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
    sqlite3_busy_timeout(s->db, 5000);
    TC_TRY(exec(s, schema));
    /* WAL must really be on: durability and concurrent readers rely on it. */
    {
        sqlite3_stmt *st = NULL;
        TC_TRY(prep(s, "PRAGMA journal_mode", &st));
        bool wal = sqlite3_step(st) == SQLITE_ROW &&
                   strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
        sqlite3_finalize(st);
        TC_CHECK_MSG(wal, TC_ERR_DB, "%s: WAL journal mode not available", path);
    }
    TC_TRY(prep(s, "BEGIN IMMEDIATE", &s->begin));
    TC_TRY(prep(s, "COMMIT", &s->commit));
    TC_TRY(prep(s, "ROLLBACK", &s->rollback));
    TC_TRY(prep(s, "INSERT INTO audit_events(idx, leaf_hash, event) VALUES(?1, ?2, ?3)",
                &s->put_event));
    TC_TRY(prep(s,
                "INSERT INTO audit_tree(id, size, root) VALUES(1, ?1, ?2)"
                " ON CONFLICT(id) DO UPDATE SET size = excluded.size, root = excluded.root",
                &s->put_tree));
    TC_TRY(prep(s,
                "INSERT INTO audit_checkpoints(size, note) VALUES(?1, ?2)"
                " ON CONFLICT(size) DO NOTHING",
                &s->put_cp));
    TC_TRY(prep(s, "SELECT size, root FROM audit_tree WHERE id = 1", &s->get_tree));
    TC_TRY(prep(s, "SELECT leaf_hash, event FROM audit_events WHERE idx = ?1", &s->get_event));
    TC_TRY(prep(s, "SELECT idx, leaf_hash, event FROM audit_events ORDER BY idx", &s->scan));
    TC_TRY(prep(s, "SELECT size, note FROM audit_checkpoints WHERE size > ?1 ORDER BY size LIMIT 1",
                &s->next_cp));
    TC_TRY(prep(s, "SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
                &s->last_cp));
    out->ops = &sq_ops;
    out->ctx = s;
    s = NULL;
    ret = TC_OK;
out:
    sq_close(s);
    return ret;
}

tc_err tc_audit_store_sqlite_handle(struct tc_audit_store *s, struct sqlite3 **db)
{
    TC_ENSURE(s != NULL && db != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(s->ops == &sq_ops && s->ctx != NULL, TC_ERR_ARG, "not an SQLite audit store");
    *db = ((struct sq *)s->ctx)->db;
    return TC_OK;
}

tc_err tc_audit_store_sqlite_disk_bytes(const char *path, uint64_t *bytes)
{
    TC_ENSURE(path != NULL && bytes != NULL, TC_ERR_ARG);
    struct stat st;
    TC_ENSURE_MSG(stat(path, &st) == 0, TC_ERR_IO, "stat %s failed", path);
    *bytes = (uint64_t)st.st_size;
    char wal[4096];
    int n = snprintf(wal, sizeof wal, "%s-wal", path);
    TC_ENSURE(n > 0 && (size_t)n < sizeof wal, TC_ERR_ARG);
    if (stat(wal, &st) == 0)
        *bytes += (uint64_t)st.st_size;
    return TC_OK;
}

void tc_audit_store_close(struct tc_audit_store *s)
{
    if (s == NULL || s->ops == NULL)
        return;
    s->ops->close(s->ctx);
    s->ops = NULL;
    s->ctx = NULL;
}
