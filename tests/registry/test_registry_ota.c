/*
 * The OTA operation queue kept as a registry device snapshot: after every
 * event of a scripted device history (operations queued with parameters,
 * steps, done with a key rotation to a named master, failed, cancelled,
 * life cycle changes, more operations than the queue keeps), the current
 * queue (tc_ota_queue_load, UINT64_MAX: the snapshot and the events after
 * it) equals the fold of the whole history and the query at the last
 * event's time (which still folds the history); tc_registry_check (which
 * refolds the snapshots) and a rebuild agree.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#include <sqlite3.h>

#include <trustchain/ota_ops.h>
#include <trustchain/registry.h>

#define T0 1764201600000ull

static const uint8_t eid[16] = {0x89, 0x04, 0x90, 0x32, 0x00, 0x11, 0x22, 0x33,
                                0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00, 0x07};

static void ev_new(struct tc_audit_event *ev, enum tc_audit_event_type type, uint64_t t)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->time_ms = T0 + t;
    ev->fields = TC_AUDIT_HAS_EID;
    memcpy(ev->eid, eid, sizeof eid);
    ev->eid_len = sizeof eid;
}

/* Two queues alike in everything the fold defines. */
static void expect_same(const struct tc_ota_queue *a, const struct tc_ota_queue *b, uint64_t t)
{
    EXPECT_EQ_U(a->n, b->n);
    EXPECT_EQ_U(a->pending, b->pending);
    EXPECT_EQ_U(a->kvn, b->kvn);
    EXPECT_STR(a->master, b->master);
    EXPECT_EQ_U(a->lifecycle, b->lifecycle);
    EXPECT(a->overflow == b->overflow);
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        const struct tc_ota_op *x = &a->ops[i], *y = &b->ops[i];
        if (x->id != y->id || x->code != y->code || x->status != y->status ||
            x->queued_ms != y->queued_ms || strcmp(x->actor, y->actor) != 0 || x->kvn != y->kvn ||
            strcmp(x->master, y->master) != 0 || x->has_data != y->has_data ||
            memcmp(x->data_sha256, y->data_sha256, TC_AUDIT_HASH_LEN) != 0 || x->step != y->step ||
            x->reason != y->reason)
            tc_test_fail_at(__FILE__, __LINE__, "operation %zu differs after t=%llu", i,
                            (unsigned long long)t);
    }
}

static tc_err fold_hist(void *arg, uint64_t index, const struct tc_audit_event *ev,
                        const uint8_t *event, size_t len)
{
    (void)event;
    (void)len;
    return tc_ota_queue_fold(arg, index, ev);
}

struct script {
    struct tc_registry *r;
    uint64_t t;
    uint64_t ids[200];
    size_t nids;
    struct tc_ota_queue *now, *fold, *at;
};

static uint64_t add(struct script *s, struct tc_audit_event *ev)
{
    uint64_t idx = UINT64_MAX;
    EXPECT_OK(tc_registry_append(s->r, ev, &idx));
    /* The queue now, three ways. */
    EXPECT_OK(tc_ota_queue_load(s->r, eid, sizeof eid, UINT64_MAX, s->now));
    tc_ota_queue_init(s->fold);
    EXPECT_OK(tc_registry_device_history(s->r, eid, sizeof eid, fold_hist, s->fold));
    EXPECT_OK(tc_ota_queue_load(s->r, eid, sizeof eid, T0 + s->t, s->at));
    expect_same(s->now, s->fold, s->t);
    expect_same(s->at, s->fold, s->t);
    s->t++;
    return idx;
}

static uint64_t queue_op(struct script *s, uint8_t code, uint8_t kvn, const char *master, bool data)
{
    struct tc_audit_event ev;
    ev_new(&ev, TC_AUDIT_OP_QUEUED, s->t);
    ev.fields |= TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_OP_KIND;
    (void)snprintf(ev.actor, sizeof ev.actor, "op:%llu", (unsigned long long)s->t);
    ev.op_kind = code;
    if (kvn != 0) {
        ev.fields |= TC_AUDIT_HAS_KVN;
        ev.kvn = kvn;
    }
    if (master != NULL) {
        ev.fields |= TC_AUDIT_HAS_MASTER;
        (void)snprintf(ev.master, sizeof ev.master, "%s", master);
    }
    if (data) {
        ev.fields |= TC_AUDIT_HAS_DATA_SHA256;
        memset(ev.data_sha256, (int)(s->t & 0xFF), TC_AUDIT_HASH_LEN);
    }
    uint64_t id = add(s, &ev);
    if (s->nids < TC_ARRAY_LEN(s->ids))
        s->ids[s->nids++] = id;
    return id;
}

static void op_rec(struct script *s, enum tc_audit_event_type type, uint64_t id, uint8_t step)
{
    struct tc_audit_event ev;
    ev_new(&ev, type, s->t);
    ev.fields |= TC_AUDIT_HAS_OP_ID;
    ev.op_id = id;
    if (type == TC_AUDIT_OP_STEP) {
        ev.fields |= TC_AUDIT_HAS_STEP;
        ev.step = step;
    } else if (type == TC_AUDIT_OP_FAILED) {
        ev.fields |= TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_STEP;
        ev.reason = 0x6982;
        ev.step = step;
    } else if (type == TC_AUDIT_OP_CANCELLED) {
        ev.fields |= TC_AUDIT_HAS_ACTOR;
        (void)snprintf(ev.actor, sizeof ev.actor, "op:cancel");
    }
    (void)add(s, &ev);
}

static void device_ev(struct script *s, enum tc_audit_event_type type, uint64_t op, uint8_t v)
{
    struct tc_audit_event ev;
    ev_new(&ev, type, s->t);
    ev.fields |= TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR;
    (void)snprintf(ev.batch, sizeof ev.batch, "B-ota");
    (void)snprintf(ev.actor, sizeof ev.actor, "ota");
    if (op != 0) {
        ev.fields |= TC_AUDIT_HAS_OP_ID;
        ev.op_id = op;
    }
    if (type == TC_AUDIT_CARD_RECEIVED) {
        ev.fields |= TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_KVN;
        (void)snprintf(ev.station, sizeof ev.station, "line1");
        ev.lifecycle = 0x0F;
        ev.kvn = v;
    } else if (type == TC_AUDIT_KEYS_ROTATED) {
        ev.fields |= TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV | TC_AUDIT_HAS_PREV_KVN;
        ev.kvn = v;
        ev.prev_kvn = (uint8_t)(v - 1);
        memset(ev.kcv, v, sizeof ev.kcv);
    } else {
        ev.fields |= TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
        (void)snprintf(ev.station, sizeof ev.station, "ota");
        ev.lifecycle = v;
        ev.prev_lifecycle = v == 0x7F ? 0x0F : 0x7F;
    }
    (void)add(s, &ev);
}

/* The registry's files, then its directory. */
static void remove_ws(const char *dir, const char *db)
{
    static const char *const ext[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < TC_ARRAY_LEN(ext); i++) {
        char p[128];
        (void)snprintf(p, sizeof p, "%s%s", db, ext[i]);
        (void)unlink(p);
    }
    (void)rmdir(dir);
}

static void test_queue_snapshot(void)
{
    char dir[] = "/tmp/tc-regota-XXXXXX", db[64];
    if (mkdtemp(dir) == NULL) {
        tc_test_fail_at(__FILE__, __LINE__, "mkdtemp");
        return;
    }
    (void)snprintf(db, sizeof db, "%s/registry.db", dir);
    struct script s = {0};
    s.now = calloc(1, sizeof *s.now);
    s.fold = calloc(1, sizeof *s.fold);
    s.at = calloc(1, sizeof *s.at);
    EXPECT(s.now != NULL && s.fold != NULL && s.at != NULL);
    EXPECT_OK(tc_registry_open(db, "trustchain.test/regota", &s.r));
    if (s.r == NULL || s.now == NULL || s.fold == NULL || s.at == NULL)
        goto out;
    /* Before any event: an empty queue. */
    EXPECT_OK(tc_ota_queue_load(s.r, eid, sizeof eid, UINT64_MAX, s.now));
    EXPECT_EQ_U(s.now->n, 0);

    device_ev(&s, TC_AUDIT_CARD_RECEIVED, 0, 0x30);
    uint8_t kvn = 0x30;
    for (unsigned round = 0; round < 30; round++) {
        uint64_t rot = queue_op(&s, TC_OTA_OP_ROTATE_KEYS, (uint8_t)(kvn + 1),
                                round % 3 == 0 ? "master-b" : NULL, false);
        uint64_t cfg = queue_op(&s, TC_OTA_OP_STORE_DATA, 0, NULL, true);
        uint64_t lock = queue_op(&s, TC_OTA_OP_LOCK, 0, NULL, false);
        op_rec(&s, TC_AUDIT_OP_STEP, rot, 1);
        op_rec(&s, TC_AUDIT_OP_STEP, rot, 2);
        device_ev(&s, TC_AUDIT_KEYS_ROTATED, rot, ++kvn);
        op_rec(&s, TC_AUDIT_OP_DONE, rot, 0);
        if (round % 2 == 0) {
            op_rec(&s, TC_AUDIT_OP_STEP, cfg, 1);
            op_rec(&s, TC_AUDIT_OP_FAILED, cfg, 1);
        } else {
            op_rec(&s, TC_AUDIT_OP_CANCELLED, cfg, 0);
        }
        op_rec(&s, TC_AUDIT_OP_STEP, lock, 1);
        device_ev(&s, TC_AUDIT_LIFECYCLE_CHANGED, lock, 0x7F);
        op_rec(&s, TC_AUDIT_OP_DONE, lock, 0);
        uint64_t unlock = queue_op(&s, TC_OTA_OP_UNLOCK, 0, NULL, false);
        device_ev(&s, TC_AUDIT_LIFECYCLE_CHANGED, unlock, 0x0F);
        op_rec(&s, TC_AUDIT_OP_DONE, unlock, 0);
    }
    /* More pending operations than the queue keeps: overflow. */
    for (unsigned i = 0; i < TC_OTA_QUEUE_MAX + 2; i++)
        (void)queue_op(&s, TC_OTA_OP_LOCK, 0, NULL, false);
    EXPECT(s.now->overflow);
    EXPECT_EQ_U(s.now->pending, TC_OTA_QUEUE_MAX);
    EXPECT_EQ_U(s.now->kvn, kvn);
    /* The queue was read from a snapshot no more than TC_REGISTRY_SNAP_EVERY
     * events old. */
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    EXPECT(sqlite3_open(db, &h) == SQLITE_OK);
    EXPECT(sqlite3_prepare_v2(h, "SELECT count(*), max(idx) FROM reg_device_snaps", -1, &st,
                              NULL) == SQLITE_OK);
    EXPECT(sqlite3_step(st) == SQLITE_ROW);
    EXPECT_EQ_U(sqlite3_column_int64(st, 0), 1);
    EXPECT(sqlite3_column_int64(st, 1) + (sqlite3_int64)TC_REGISTRY_SNAP_EVERY >
           (sqlite3_int64)s.ids[s.nids - 1]);
    sqlite3_finalize(st);
    sqlite3_close(h);
    EXPECT_OK(tc_registry_check(s.r, NULL, NULL));
    EXPECT_OK(tc_registry_rebuild(s.r));
    EXPECT_OK(tc_registry_check(s.r, NULL, NULL));
    EXPECT_OK(tc_ota_queue_load(s.r, eid, sizeof eid, UINT64_MAX, s.now));
    expect_same(s.now, s.fold, s.t);
out:
    tc_registry_close(s.r);
    free(s.now);
    free(s.fold);
    free(s.at);
    remove_ws(dir, db);
}

static const struct tc_test_case cases[] = {
    {"OTA queue snapshot equals the fold after every event", test_queue_snapshot},
};

TC_TEST_MAIN("registry_ota", cases)
