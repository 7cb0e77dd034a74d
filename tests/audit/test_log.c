#include "audit_testutil.h"

#include <pthread.h>

#include <sqlite3.h>

#define H TC_AUDIT_HASH_LEN

static struct tc_signer signer;
static struct tc_note_verifier verifier;

static void append_n(struct tc_audit_log *log, unsigned a, unsigned from, unsigned n)
{
    for (unsigned i = from; i < from + n; i++) {
        uint8_t ev[TC_AUDIT_EVENT_MAX];
        size_t len = test_event(ev, a, i, i);
        const uint8_t *p[1] = {ev};
        uint64_t idx = 0;
        EXPECT_OK(tc_audit_log_append(log, p, &len, 1, &idx));
    }
}

static void test_append_prove_reopen(void)
{
    char dir[64], db[128];
    if (!test_tmpdir(dir))
        return;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    struct tc_audit_log *log = test_open_log(db);
    if (!log)
        return;
    EXPECT_EQ_U(tc_audit_log_size(log), 0);
    uint8_t root[H], empty[H];
    EXPECT_OK(tc_audit_log_root(log, 0, root));
    /* RFC 9162: the empty tree's hash is SHA-256 of "". */
    size_t el = 0;
    EXPECT_OK(tc_hex_decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 64,
                            0, empty, sizeof empty, &el));
    EXPECT_MEM(root, H, empty, H);

    /* 100 events in batches of 1..13, mirrored in a reference tree. */
    struct tc_merkle_tree ref;
    tc_merkle_init(&ref);
    static uint8_t evs[100][TC_AUDIT_EVENT_MAX];
    size_t lens[100];
    const uint8_t *ptrs[100];
    for (unsigned i = 0; i < 100; i++) {
        lens[i] = test_event(evs[i], 1, i, i);
        ptrs[i] = evs[i];
        uint8_t lh[H];
        EXPECT_OK(tc_merkle_leaf_hash(evs[i], lens[i], lh));
        EXPECT_OK(tc_merkle_append(&ref, lh));
    }
    for (unsigned i = 0, step = 1; i < 100; i += step, step = step % 13 + 1) {
        unsigned n = i + step > 100 ? 100 - i : step;
        uint64_t first = 0;
        EXPECT_OK(tc_audit_log_append(log, ptrs + i, lens + i, n, &first));
        EXPECT_EQ_U(first, i);
    }
    EXPECT_EQ_U(tc_audit_log_size(log), 100);
    uint8_t want[H];
    EXPECT_OK(tc_merkle_root(&ref, 100, want));
    EXPECT_OK(tc_audit_log_root(log, 100, root));
    EXPECT_MEM(root, H, want, H);

    /* Events read back; inclusion and consistency proofs verify. */
    uint8_t buf[TC_AUDIT_EVENT_MAX];
    size_t n = 0;
    EXPECT_OK(tc_audit_log_event(log, 42, buf, sizeof buf, &n));
    EXPECT_MEM(buf, n, evs[42], lens[42]);
    EXPECT_ERR(tc_audit_log_event(log, 100, buf, sizeof buf, &n), TC_ERR_NOT_FOUND);
    uint8_t proof[TC_MERKLE_PROOF_MAX][H];
    size_t np = 0;
    for (uint64_t i = 0; i < 100; i += 9) {
        uint8_t lh[H];
        EXPECT_OK(tc_merkle_leaf_hash(evs[i], lens[i], lh));
        EXPECT_OK(tc_audit_log_prove_inclusion(log, i, 100, proof, TC_MERKLE_PROOF_MAX, &np));
        EXPECT_OK(tc_merkle_verify_inclusion(lh, i, 100, (const uint8_t(*)[H])proof, np, root));
    }
    uint8_t old[H];
    EXPECT_OK(tc_audit_log_root(log, 37, old));
    EXPECT_OK(tc_audit_log_prove_consistency(log, 37, 100, proof, TC_MERKLE_PROOF_MAX, &np));
    EXPECT_OK(tc_merkle_verify_consistency(37, 100, old, root, (const uint8_t(*)[H])proof, np));

    /* Only canonical events get in, and a refused batch leaves no trace. */
    uint8_t bad[TC_AUDIT_EVENT_MAX];
    size_t bl = test_event(bad, 1, 1, 1);
    bad[0] = 2; /* unknown version */
    const uint8_t *bp[2] = {evs[0], bad};
    size_t bls[2] = {lens[0], bl};
    EXPECT_ERR(tc_audit_log_append(log, bp, bls, 2, NULL), TC_ERR_UNSUPPORTED);
    EXPECT_EQ_U(tc_audit_log_size(log), 100);
    EXPECT_ERR(tc_audit_log_append(log, bp, bls, 0, NULL), TC_ERR_ARG);

    /* No checkpoint yet. */
    uint8_t note[TC_NOTE_MAX];
    size_t nl = 0;
    EXPECT_ERR(tc_audit_log_latest_checkpoint(log, note, sizeof note, &nl), TC_ERR_NOT_FOUND);
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    size_t tl = 0, verified = 0;
    EXPECT_OK(tc_note_open(note, nl, &verifier, 1, &tl, &verified));
    struct tc_checkpoint cp;
    EXPECT_OK(tc_checkpoint_parse(note, tl, &cp));
    EXPECT_STR(cp.origin, TEST_ORIGIN);
    EXPECT_EQ_U(cp.size, 100);
    EXPECT_MEM(cp.root, H, root, H);
    tc_audit_log_close(log);

    /* Reopen: same tree, same checkpoint; the log verifies in full. */
    log = test_open_log(db);
    if (log) {
        EXPECT_EQ_U(tc_audit_log_size(log), 100);
        EXPECT_OK(tc_audit_log_root(log, 100, old));
        EXPECT_MEM(old, H, root, H);
        uint8_t latest[TC_NOTE_MAX];
        size_t ll = 0;
        EXPECT_OK(tc_audit_log_latest_checkpoint(log, latest, sizeof latest, &ll));
        EXPECT_MEM(latest, ll, note, nl);
        append_n(log, 2, 0, 5);
        EXPECT_EQ_U(tc_audit_log_size(log), 105);
        tc_audit_log_close(log);
    }
    struct tc_audit_store s;
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    struct tc_audit_verify_report rep;
    EXPECT_OK(tc_audit_verify_store(&s, TEST_ORIGIN, &verifier, false, &rep));
    EXPECT_EQ_U(rep.size, 105);
    EXPECT_EQ_U(rep.checkpoints, 1);
    /* The last 5 events are not under any checkpoint yet. */
    EXPECT_ERR(tc_audit_verify_store(&s, TEST_ORIGIN, &verifier, true, &rep), TC_ERR_VERIFY);
    /* A checkpoint for another origin or by another key is refused. */
    EXPECT_ERR(tc_audit_verify_store(&s, "other.example/log", &verifier, false, &rep),
               TC_ERR_VERIFY);
    tc_audit_store_close(&s);
    uint64_t bytes = 0;
    EXPECT_OK(tc_audit_store_sqlite_disk_bytes(db, &bytes));
    EXPECT(bytes > 105 * 100);
    tc_merkle_free(&ref);
    test_rmtree(dir);
}

/* ------------------------------------------------------- group commit */

struct worker {
    struct tc_audit_log *log;
    unsigned id;
    uint64_t idx[200];
    tc_err rc;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    w->rc = TC_OK;
    for (unsigned i = 0; i < TC_ARRAY_LEN(w->idx) && w->rc == TC_OK; i++) {
        uint8_t ev[TC_AUDIT_EVENT_MAX];
        size_t len = test_event(ev, w->id, i, i);
        const uint8_t *p[1] = {ev};
        w->rc = tc_audit_log_append(w->log, p, &len, 1, &w->idx[i]);
    }
    return NULL;
}

static unsigned commits;
static void count_commits(void *arg, enum tc_audit_step step)
{
    (void)arg;
    if (step == TC_AUDIT_STEP_COMMIT)
        __atomic_add_fetch(&commits, 1, __ATOMIC_RELAXED);
}

static void test_group_commit(void)
{
    char dir[64], db[128];
    if (!test_tmpdir(dir))
        return;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    struct tc_audit_log *log = test_open_log(db);
    if (!log)
        return;
    tc_audit_log_set_fault_hook(log, count_commits, NULL);
    enum { T = 8 };
    static struct worker w[T];
    pthread_t th[T];
    for (unsigned i = 0; i < T; i++) {
        w[i].log = log;
        w[i].id = i;
        EXPECT(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (unsigned i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    static bool seen[T * 200];
    memset(seen, 0, sizeof seen);
    for (unsigned i = 0; i < T; i++) {
        EXPECT_OK(w[i].rc);
        for (unsigned j = 0; j < 200; j++) {
            EXPECT(w[i].idx[j] < T * 200);
            if (w[i].idx[j] < T * 200) {
                EXPECT(!seen[w[i].idx[j]]);
                seen[w[i].idx[j]] = true;
                /* The event at the returned index is the one appended. */
                uint8_t buf[TC_AUDIT_EVENT_MAX], ev[TC_AUDIT_EVENT_MAX];
                size_t n = 0, len = test_event(ev, i, j, j);
                EXPECT_OK(tc_audit_log_event(log, w[i].idx[j], buf, sizeof buf, &n));
                EXPECT_MEM(buf, n, ev, len);
            }
        }
    }
    EXPECT_EQ_U(tc_audit_log_size(log), T * 200);
    /* Concurrent appenders shared transactions. */
    EXPECT(commits < T * 200);
    printf("     %u appends in %u transactions\n", T * 200, commits);
    uint8_t note[TC_NOTE_MAX];
    size_t nl = 0;
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    tc_audit_log_close(log);
    struct tc_audit_store s;
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    struct tc_audit_verify_report rep;
    EXPECT_OK(tc_audit_verify_store(&s, TEST_ORIGIN, &verifier, true, &rep));
    EXPECT_EQ_U(rep.size, T * 200);
    tc_audit_store_close(&s);
    test_rmtree(dir);
}

/* ------------------------------------------------------------ tamper */

/* A log of 20 events with signed checkpoints at 10 and 20. */
static bool make_log(const char *db)
{
    struct tc_audit_log *log = test_open_log(db);
    if (!log)
        return false;
    uint8_t note[TC_NOTE_MAX];
    size_t nl = 0;
    append_n(log, 7, 0, 10);
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    append_n(log, 7, 10, 10);
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    tc_audit_log_close(log);
    return true;
}

static void sql(sqlite3 *db, const char *q)
{
    char *err = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
        tc_test_fail_at(__FILE__, __LINE__, "%s: %s", q, err ? err : "?");
    sqlite3_free(err);
}

/* Recompute every stored leaf hash and the tree head from the (tampered)
 * events, as an attacker with write access to the database would. */
static void rehash_all(sqlite3 *db)
{
    struct tc_merkle_tree t;
    tc_merkle_init(&t);
    sqlite3_stmt *st = NULL, *up = NULL;
    sqlite3_prepare_v2(db, "SELECT idx, event FROM audit_events ORDER BY idx", -1, &st, NULL);
    sqlite3_prepare_v2(db, "UPDATE audit_events SET leaf_hash = ?1 WHERE idx = ?2", -1, &up, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint8_t lh[H];
        EXPECT_OK(tc_merkle_leaf_hash(sqlite3_column_blob(st, 1),
                                      (size_t)sqlite3_column_bytes(st, 1), lh));
        EXPECT_OK(tc_merkle_append(&t, lh));
        sqlite3_bind_blob(up, 1, lh, H, SQLITE_TRANSIENT);
        sqlite3_bind_int64(up, 2, sqlite3_column_int64(st, 0));
        EXPECT(sqlite3_step(up) == SQLITE_DONE);
        sqlite3_reset(up);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    uint8_t root[H];
    EXPECT_OK(tc_merkle_root(&t, t.size, root));
    sqlite3_prepare_v2(db, "UPDATE audit_tree SET size = ?1, root = ?2", -1, &up, NULL);
    sqlite3_bind_int64(up, 1, (sqlite3_int64)t.size);
    sqlite3_bind_blob(up, 2, root, H, SQLITE_TRANSIENT);
    EXPECT(sqlite3_step(up) == SQLITE_DONE);
    sqlite3_finalize(up);
    tc_merkle_free(&t);
}

static void set_event(sqlite3 *db, sqlite3_int64 idx, const uint8_t *ev, size_t len)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "UPDATE audit_events SET event = ?1 WHERE idx = ?2", -1, &st, NULL);
    sqlite3_bind_blob(st, 1, ev, (int)len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, idx);
    EXPECT(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
}

static void insert_event(sqlite3 *db, sqlite3_int64 idx, const uint8_t *ev, size_t len)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO audit_events(idx, leaf_hash, event) VALUES(?1, x'00', ?2)",
                       -1, &st, NULL);
    sqlite3_bind_int64(st, 1, idx);
    sqlite3_bind_blob(st, 2, ev, (int)len, SQLITE_TRANSIENT);
    EXPECT(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
}

enum tamper {
    MODIFY,
    MODIFY_REHASH,
    DELETE_MIDDLE,
    DELETE_LAST_REHASH,
    REORDER,
    REORDER_REHASH,
    INSERT_MIDDLE_REHASH,
    APPEND_FORGED_REHASH,
    REWRITE_SUFFIX_REHASH,
    NONCANONICAL_REHASH,
    FORGED_CHECKPOINT,
    DROP_CHECKPOINTS_REWRITE,
    TAMPER_COUNT
};

static const char *const tamper_name[TAMPER_COUNT] = {
    "modify an event",
    "modify an event and re-hash",
    "delete an event",
    "delete the last event and re-hash",
    "swap two events",
    "swap two events and re-hash",
    "insert an event in the middle and re-hash",
    "append a forged event and re-hash",
    "rewrite a suffix and re-hash",
    "non-canonical event bytes, re-hashed",
    "replace a checkpoint with one signed by another key",
    "rewrite everything and delete the checkpoints",
};

static void tamper(sqlite3 *db, enum tamper t)
{
    uint8_t ev[TC_AUDIT_EVENT_MAX];
    size_t len = 0;
    switch (t) {
    case MODIFY:
        len = test_event(ev, 66, 5, 5);
        set_event(db, 5, ev, len);
        break;
    case MODIFY_REHASH:
        len = test_event(ev, 66, 5, 5);
        set_event(db, 5, ev, len);
        rehash_all(db);
        break;
    case DELETE_MIDDLE:
        sql(db, "DELETE FROM audit_events WHERE idx = 7");
        break;
    case DELETE_LAST_REHASH:
        sql(db, "DELETE FROM audit_events WHERE idx = 19");
        rehash_all(db);
        break;
    case REORDER:
    case REORDER_REHASH:
        sql(db, "UPDATE audit_events SET idx = -1 WHERE idx = 3;"
                "UPDATE audit_events SET idx = 3 WHERE idx = 4;"
                "UPDATE audit_events SET idx = 4 WHERE idx = -1;");
        if (t == REORDER_REHASH)
            rehash_all(db);
        break;
    case INSERT_MIDDLE_REHASH:
        sql(db, "UPDATE audit_events SET idx = -idx - 100 WHERE idx >= 12;"
                "UPDATE audit_events SET idx = -idx - 99 WHERE idx < 0;");
        len = test_event(ev, 66, 12, 12);
        insert_event(db, 12, ev, len);
        rehash_all(db);
        break;
    case APPEND_FORGED_REHASH:
        len = test_event(ev, 66, 20, 20);
        insert_event(db, 20, ev, len);
        rehash_all(db);
        break;
    case REWRITE_SUFFIX_REHASH:
        for (unsigned i = 15; i < 20; i++) {
            len = test_event(ev, 66, i, i);
            set_event(db, i, ev, len);
        }
        rehash_all(db);
        break;
    case NONCANONICAL_REHASH:
        len = test_event(ev, 7, 5, 5);
        ev[len++] = 0x7F; /* an unknown trailing field */
        ev[len++] = 0x00;
        set_event(db, 5, ev, len);
        rehash_all(db);
        break;
    case FORGED_CHECKPOINT: {
        struct tc_signer other;
        EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &other));
        uint8_t text[256], note[TC_NOTE_MAX], root[H];
        size_t tl = 0, nl = 0;
        memset(root, 0x55, sizeof root);
        EXPECT_OK(tc_checkpoint_format(TEST_ORIGIN, 20, root, text, sizeof text, &tl));
        EXPECT_OK(tc_note_sign(text, tl, &other, TEST_ORIGIN, note, sizeof note, &nl));
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "UPDATE audit_checkpoints SET note = ?1 WHERE size = 20", -1, &st,
                           NULL);
        sqlite3_bind_blob(st, 1, note, (int)nl, SQLITE_TRANSIENT);
        EXPECT(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_finalize(st);
        tc_signer_soft_free(&other);
        break;
    }
    case DROP_CHECKPOINTS_REWRITE:
        for (unsigned i = 0; i < 20; i++) {
            len = test_event(ev, 66, i, i);
            set_event(db, i, ev, len);
        }
        rehash_all(db);
        sql(db, "DELETE FROM audit_checkpoints");
        break;
    case TAMPER_COUNT:
    default:
        break;
    }
}

static void test_tampering_detected(void)
{
    for (int t = 0; t < TAMPER_COUNT; t++) {
        char dir[64], db[128];
        if (!test_tmpdir(dir))
            return;
        (void)snprintf(db, sizeof db, "%s/log.db", dir);
        if (!make_log(db))
            return;
        struct tc_audit_store s;
        struct tc_audit_verify_report rep;
        EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
        EXPECT_OK(tc_audit_verify_store(&s, TEST_ORIGIN, &verifier, true, &rep));
        EXPECT_EQ_U(rep.checkpoints, 2);
        tc_audit_store_close(&s);

        sqlite3 *h = NULL;
        EXPECT(sqlite3_open(db, &h) == SQLITE_OK);
        tamper(h, (enum tamper)t);
        sqlite3_close(h);

        EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
        tc_err rc = tc_audit_verify_store(&s, TEST_ORIGIN, &verifier, true, &rep);
        if (rc != TC_ERR_VERIFY)
            tc_test_fail_at(__FILE__, __LINE__, "\"%s\" not detected (%s)", tamper_name[t],
                            tc_err_name(rc));
        else
            printf("     %-48s -> %s\n", tamper_name[t], tc_error_last()->msg);
        tc_audit_store_close(&s);
        test_rmtree(dir);
    }
}

/* Opening a log whose stored tree head disagrees with its leaves fails. */
static void test_open_checks_tree_head(void)
{
    char dir[64], db[128];
    if (!test_tmpdir(dir))
        return;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    if (!make_log(db))
        return;
    sqlite3 *h = NULL;
    EXPECT(sqlite3_open(db, &h) == SQLITE_OK);
    sql(h, "UPDATE audit_tree SET size = 19");
    sqlite3_close(h);
    struct tc_audit_store s;
    struct tc_audit_log *log = NULL;
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    EXPECT_ERR(tc_audit_log_open(s, TEST_ORIGIN, &log), TC_ERR_VERIFY);
    EXPECT(sqlite3_open(db, &h) == SQLITE_OK);
    sql(h, "UPDATE audit_tree SET size = 20, root = zeroblob(32)");
    sqlite3_close(h);
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    EXPECT_ERR(tc_audit_log_open(s, TEST_ORIGIN, &log), TC_ERR_VERIFY);
    EXPECT(sqlite3_open(db, &h) == SQLITE_OK);
    sql(h, "DELETE FROM audit_events WHERE idx = 3");
    sqlite3_close(h);
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    EXPECT_ERR(tc_audit_log_open(s, TEST_ORIGIN, &log), TC_ERR_VERIFY);
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    EXPECT_ERR(tc_audit_log_open(s, "", &log), TC_ERR_ARG);
    test_rmtree(dir);
}

/* A second writer on the same database: its transaction fails on the
 * index it thought was free, is rolled back, and nothing of it remains. */
static void test_second_writer_fails_cleanly(void)
{
    char dir[64], db[128];
    if (!test_tmpdir(dir))
        return;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    struct tc_audit_log *a = test_open_log(db);
    if (!a)
        return;
    append_n(a, 1, 0, 5);
    struct tc_audit_log *b = test_open_log(db);
    if (b) {
        append_n(a, 1, 5, 1);
        uint8_t ev[TC_AUDIT_EVENT_MAX];
        size_t len = test_event(ev, 2, 0, 0);
        const uint8_t *p[1] = {ev};
        EXPECT_ERR(tc_audit_log_append(b, p, &len, 1, NULL), TC_ERR_DB);
        EXPECT_EQ_U(tc_audit_log_size(b), 5);
        tc_audit_log_close(b);
    }
    append_n(a, 1, 6, 1);
    EXPECT_EQ_U(tc_audit_log_size(a), 7);
    uint8_t note[TC_NOTE_MAX];
    size_t nl = 0;
    EXPECT_OK(tc_audit_log_checkpoint(a, &signer, note, sizeof note, &nl));
    tc_audit_log_close(a);
    struct tc_audit_store s;
    struct tc_audit_verify_report rep;
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    EXPECT_OK(tc_audit_verify_store(&s, TEST_ORIGIN, &verifier, true, &rep));
    EXPECT_EQ_U(rep.size, 7);
    tc_audit_store_close(&s);
    test_rmtree(dir);
}

/* A projection written by the batch hook commits with the events, or not
 * at all. */
struct projection {
    unsigned calls, fail_at;
};

static tc_err project(void *arg, struct tc_audit_store *store,
                      const struct tc_audit_batch_event *evs, size_t n)
{
    struct projection *pr = arg;
    if (++pr->calls == pr->fail_at)
        return TC_FAIL(TC_ERR_STATE, "projection refuses batch %u", pr->calls);
    sqlite3 *db = NULL;
    TC_GUARD(tc_audit_store_sqlite_handle(store, &db));
    sqlite3_stmt *st = NULL;
    TC_ENSURE(sqlite3_prepare_v2(db, "INSERT INTO proj(idx, actor) VALUES(?1, ?2)", -1, &st,
                                 NULL) == SQLITE_OK,
              TC_ERR_DB);
    tc_err rc = TC_OK;
    for (size_t i = 0; i < n && rc == TC_OK; i++) {
        struct tc_audit_event ev;
        rc = tc_audit_event_decode(evs[i].event, evs[i].len, &ev);
        if (rc != TC_OK)
            break;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)evs[i].index);
        sqlite3_bind_text(st, 2, ev.actor, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = TC_FAIL(TC_ERR_DB, "projection insert");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

static long long count_rows(sqlite3 *db, const char *q)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_projection_in_same_transaction(void)
{
    char dir[64], db[128];
    if (!test_tmpdir(dir))
        return;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    struct tc_audit_store s;
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    sqlite3 *h = NULL;
    EXPECT_OK(tc_audit_store_sqlite_handle(&s, &h));
    sql(h, "CREATE TABLE proj(idx INTEGER PRIMARY KEY, actor TEXT NOT NULL)");
    struct tc_audit_log *log = NULL;
    EXPECT_OK(tc_audit_log_open(s, TEST_ORIGIN, &log));
    if (!log)
        return;
    struct projection pr = {0, 3};
    tc_audit_log_set_batch_hook(log, project, &pr);
    append_n(log, 4, 0, 2); /* batches 1, 2 */
    uint8_t ev[TC_AUDIT_EVENT_MAX];
    size_t len = test_event(ev, 4, 2, 2);
    const uint8_t *p[1] = {ev};
    EXPECT_ERR(tc_audit_log_append(log, p, &len, 1, NULL), TC_ERR_STATE); /* batch 3 */
    EXPECT_EQ_U(tc_audit_log_size(log), 2);
    append_n(log, 4, 3, 2); /* batches 4, 5 */
    EXPECT_EQ_U(tc_audit_log_size(log), 4);
    tc_audit_log_close(log);

    EXPECT(sqlite3_open(db, &h) == SQLITE_OK);
    EXPECT_EQ_U(count_rows(h, "SELECT count(*) FROM proj"), 4);
    EXPECT_EQ_U(count_rows(h, "SELECT count(*) FROM audit_events"), 4);
    EXPECT_EQ_U(count_rows(h, "SELECT count(*) FROM proj JOIN audit_events USING (idx)"), 4);
    EXPECT_EQ_U(count_rows(h, "SELECT count(*) FROM proj WHERE actor = 't4-s2'"), 0);
    sqlite3_close(h);

    struct tc_audit_store other = {NULL, NULL};
    EXPECT_ERR(tc_audit_store_sqlite_handle(&other, &h), TC_ERR_ARG);
    test_rmtree(dir);
}

static void test_log_rejections(void)
{
    char dir[64], db[128];
    if (!test_tmpdir(dir))
        return;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    struct tc_audit_log *log = test_open_log(db);
    if (!log)
        return;
    append_n(log, 5, 0, 3);
    uint8_t note[TC_NOTE_MAX], buf[8];
    size_t nl = 0, n = 0;
    /* Checkpoints are Ed25519 only; a failed checkpoint stores nothing. */
    struct tc_signer ec;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &ec));
    EXPECT_ERR(tc_audit_log_checkpoint(log, &ec, note, sizeof note, &nl), TC_ERR_UNSUPPORTED);
    tc_signer_soft_free(&ec);
    EXPECT_ERR(tc_audit_log_checkpoint(log, &signer, note, 50, &nl), TC_ERR_SPACE);
    EXPECT_ERR(tc_audit_log_latest_checkpoint(log, note, sizeof note, &nl), TC_ERR_NOT_FOUND);
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    EXPECT_ERR(tc_audit_log_latest_checkpoint(log, note, 10, &nl), TC_ERR_SPACE);
    EXPECT_ERR(tc_audit_log_event(log, 0, buf, sizeof buf, &n), TC_ERR_SPACE);
    uint8_t proof[TC_MERKLE_PROOF_MAX][H], root[H];
    EXPECT_ERR(tc_audit_log_prove_inclusion(log, 3, 3, proof, TC_MERKLE_PROOF_MAX, &n),
               TC_ERR_RANGE);
    EXPECT_ERR(tc_audit_log_prove_consistency(log, 2, 4, proof, TC_MERKLE_PROOF_MAX, &n),
               TC_ERR_RANGE);
    EXPECT_ERR(tc_audit_log_root(log, 4, root), TC_ERR_RANGE);
    /* Export into a place that cannot be written. */
    EXPECT_ERR(tc_audit_export_tiles(log, "/proc/no-such-dir/tiles"), TC_ERR_IO);
    tc_audit_log_close(log);
    struct tc_audit_store s;
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    EXPECT_ERR(tc_audit_log_open(s, NULL, &log), TC_ERR_ARG);
    EXPECT_ERR(tc_audit_store_sqlite_open("/proc/no-such-dir/log.db", &s), TC_ERR_DB);
    test_rmtree(dir);
}

static void setup(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    if (tc_signer_soft_generate(TC_SIG_ED25519, &signer) != TC_OK)
        tc_test_fail_at(__FILE__, __LINE__, "signer");
    test_verifier(&signer, &verifier);
}

static void test_setup(void)
{
    setup();
}

static void test_teardown(void)
{
    tc_signer_soft_free(&signer);
}

static const struct tc_test_case cases[] = {
    {"setup", test_setup},
    {"append, prove, checkpoint, reopen", test_append_prove_reopen},
    {"group commit", test_group_commit},
    {"tampering in the database is detected", test_tampering_detected},
    {"open checks the tree head", test_open_checks_tree_head},
    {"a second writer fails cleanly", test_second_writer_fails_cleanly},
    {"projection in the same transaction", test_projection_in_same_transaction},
    {"log rejections", test_log_rejections},
    {"teardown", test_teardown},
};

TC_TEST_MAIN("audit-log", cases)
