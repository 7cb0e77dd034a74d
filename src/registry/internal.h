/* Registry internals shared by its files (and the benchmark). */
#ifndef TC_REGISTRY_INTERNAL_H
#define TC_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <sqlite3.h>

#include <trustchain/registry.h>

/* The current row of a (idx, event) query over one device's events: the
 * event decoded strictly and checked to name the device (the index table is
 * projection, the event is the log: TC_ERR_VERIFY if they disagree). */
TC_MUST_CHECK tc_err reg_row_event(sqlite3_stmt *st, const uint8_t *eid, size_t eid_len,
                                   uint64_t *index, struct tc_audit_event *ev,
                                   const uint8_t **event, size_t *len);

/* Device snapshots (not part of the projection's dump: a cache keyed by
 * the index of the last event folded). */
#define REG_SNAPS_TABLE                                                                            \
    "CREATE TABLE IF NOT EXISTS main.reg_device_snaps(eid BLOB PRIMARY KEY,"                       \
    " version INTEGER NOT NULL, idx INTEGER NOT NULL, state BLOB NOT NULL) WITHOUT ROWID;"

/* Statements over main.reg_device_snaps on one connection (snap.c). */
struct reg_snap_stmts {
    sqlite3_stmt *get, *events, *put;
};
TC_MUST_CHECK tc_err reg_snap_prepare(sqlite3 *db, struct reg_snap_stmts *s);
void reg_snap_free(struct reg_snap_stmts *s);
/* The device's state: its snapshot of k's version (if any) and every event
 * after it folded into state (*last: index of the last event in it;
 * *folded: events folded after the snapshot). TC_ERR_NOT_FOUND if the
 * device has neither. */
TC_MUST_CHECK tc_err reg_snap_state(sqlite3 *db, const struct reg_snap_stmts *s,
                                    const struct tc_registry_snap_kind *k, const uint8_t *eid,
                                    size_t eid_len, void *state, uint64_t *last, size_t *folded);
/* Brings the device's snapshot up to its last event (inside the append's
 * transaction). */
TC_MUST_CHECK tc_err reg_snap_refresh(sqlite3 *db, const struct reg_snap_stmts *s,
                                      const struct tc_registry_snap_kind *k, const uint8_t *eid,
                                      size_t eid_len);
/* Every snapshot of k's version equal to the fold of its device's events up
 * to its index (TC_ERR_VERIFY otherwise). */
TC_MUST_CHECK tc_err reg_snap_check(sqlite3 *db, const struct reg_snap_stmts *s,
                                    const struct tc_registry_snap_kind *k);

/* Row writes counted by a projection writer (tc_registry_stats). */
struct reg_proj_stats {
    atomic_uint_fast64_t device_rows, device_counts, device_events, batch_rows, station_rows;
};

/* The projection's writer for one schema ("main" or "temp") on one
 * connection: prepared statements over that schema's reg_* tables. */
struct reg_proj {
    sqlite3 *db;
    sqlite3_stmt *get_dev, *put_dev, *put_dev_counts, *put_dev_ev, *up_batch, *revoke_batch,
        *up_station;
    struct reg_proj_stats stats; /* statements run (tc_registry_stats) */
    /* Called (live projection only) for each device whose event count
     * crossed a multiple of TC_REGISTRY_SNAP_EVERY in the batch. */
    tc_err (*snap)(void *arg, const uint8_t *eid, size_t eid_len);
    void *snap_arg;
    /* reg_proj_apply_batch's working memory, grown as needed. */
    struct reg_work *work; /* devices, batches, stations of the batch */
    size_t work_cap;
    uint32_t *tab; /* open-addressing index into work */
    size_t tab_cap;
};

/*
 * Device rows the live projection wrote, kept so the next batch need not
 * read them back (direct-mapped on the EID). The entries are what the
 * database holds only while nothing else changed it: they are used only if
 * the next batch starts at `valid_at`, the log size after the batch that
 * wrote them (a batch rolled back after its hook leaves the log shorter, so
 * the next one starts earlier), and only in the same projection generation
 * (tc_registry_rebuild starts a new one).
 */
#define REG_CACHE_SLOTS 1024u
struct reg_dev_cache {
    uint64_t valid_at;
    unsigned gen;
    struct {
        bool used;
        struct tc_registry_device d;
    } slot[REG_CACHE_SLOTS];
};

/* Creates the projection tables in schema (IF NOT EXISTS). */
TC_MUST_CHECK tc_err reg_schema_create(sqlite3 *db, const char *schema);
TC_MUST_CHECK tc_err reg_proj_init(struct reg_proj *p, sqlite3 *db, const char *schema);
void reg_proj_free(struct reg_proj *p);
/* Projects one stored event (decoded strictly here). */
TC_MUST_CHECK tc_err reg_proj_apply(struct reg_proj *p, uint64_t index, const uint8_t *event,
                                    size_t len);
/*
 * Projects a batch of stored events with consecutive indices, with the same
 * result as reg_proj_apply on each in order: each device named is read once
 * (from the cache when it is valid), folded in memory and written once;
 * batch and station counters get one upsert per identifier carrying the
 * batch's count. dec (n entries) receives the decoded events. cache may be
 * NULL; gen is the caller's projection generation.
 */
TC_MUST_CHECK tc_err reg_proj_apply_batch(struct reg_proj *p, struct reg_dev_cache *cache,
                                          unsigned gen, const struct tc_audit_batch_event *evs,
                                          size_t n, struct tc_audit_event *dec);
/* Empties the schema's projection tables. */
TC_MUST_CHECK tc_err reg_proj_clear(sqlite3 *db, const char *schema);
/* Replays every event of main.audit_events into p. */
TC_MUST_CHECK tc_err reg_proj_replay(struct reg_proj *p, sqlite3 *db);
/* Canonical dump of the schema's projection: each byte range goes to sink. */
TC_MUST_CHECK tc_err reg_dump(sqlite3 *db, const char *schema,
                              tc_err (*sink)(void *arg, const uint8_t *p, size_t n), void *arg);

/* A device row (columns from col, in the order of REG_DEVICE_COLS). */
#define REG_DEVICE_COLS                                                                            \
    "eid, batch, station, state, kvn, kcv, pubkey_sha256, cert_serial, cert_sha256, "              \
    "cert_stored, lifecycle, reason, step, first_idx, last_idx, last_time, events, "               \
    "cert_revoked, cert_pubkey_sha256, prev_certs"
TC_MUST_CHECK tc_err reg_device_read(sqlite3_stmt *st, int col, struct tc_registry_device *d);
/* Whether the database's reg_devices has every column of REG_DEVICE_COLS
 * (false for a projection written before one was added). */
bool reg_schema_current(sqlite3 *db);
/* Drops the projection tables (rebuilt from the log by the caller). */
TC_MUST_CHECK tc_err reg_schema_drop(sqlite3 *db);

TC_MUST_CHECK tc_err reg_exec(sqlite3 *db, const char *sql);
TC_MUST_CHECK tc_err reg_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st);
TC_MUST_CHECK tc_err reg_db_fail(sqlite3 *db, const char *what);
TC_MUST_CHECK tc_err reg_sha256(const uint8_t *p, size_t n, uint8_t out[static TC_AUDIT_HASH_LEN]);
/* SQLite holds signed 64-bit integers: larger values are clamped. */
static inline sqlite3_int64 reg_i64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

/* A certificate waiting for the append that names it (see
 * tc_registry_append_certs): the batch hook stores it in the same
 * transaction as the certificate-issued event. */
struct reg_pending_cert {
    uint8_t sha256[TC_AUDIT_HASH_LEN];
    const uint8_t *der;
    size_t len;
    struct reg_pending_cert *next;
};

struct tc_registry {
    char path[4096];
    char origin[TC_CHECKPOINT_ORIGIN_MAX + 1];
    struct tc_audit_log *log; /* NULL when opened for reading only */
    struct reg_proj live;     /* on the log's connection, from the batch hook */
    pthread_mutex_t mu;       /* the read connection and its statements */
    sqlite3 *rdb;
    sqlite3_stmt *q_get, *q_at, *q_list, *q_batch, *q_cert_get, *q_cert_put;
    /* Certificates of appends in flight, and their insert on the log's
     * connection (used only from the batch hook). */
    pthread_mutex_t pending_mu;
    struct reg_pending_cert *pending;
    sqlite3_stmt *live_cert_put;
    /* The batch hook's state (the committing thread only): decoded events
     * and the device rows it last wrote; gen counts rebuilds. */
    struct tc_audit_event *dec;
    size_t dec_cap;
    struct reg_dev_cache *cache;
    atomic_uint gen;
    /* Device snapshots: the registered kind, the hook's statements (log's
     * connection, prepared at open) and the reader's (under mu). */
    _Atomic(const struct tc_registry_snap_kind *) snap_kind;
    struct reg_snap_stmts live_snap, rd_snap;
};

#endif
