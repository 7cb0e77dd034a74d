/* Registry internals shared by its files (and the benchmark). */
#ifndef TC_REGISTRY_INTERNAL_H
#define TC_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <sqlite3.h>

#include <trustchain/registry.h>

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
};

#endif
