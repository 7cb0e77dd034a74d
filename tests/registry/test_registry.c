/*
 * Registry tests: the projection rules through a whole line, state at any
 * time, lists, certificates, rebuild byte for byte, and tampering straight
 * in the database detected by tc_registry_verify.
 */
#include "harness.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <trustchain/registry.h>

#define ORIGIN "trustchain.test/registry"
#define T0     1764201600000ull /* 2025-11-27T00:00:00Z */

static struct tc_signer signer;
static struct tc_note_verifier verifier;

static void rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[1024];
            (void)snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            (void)unlink(p);
        }
        closedir(d);
    }
    (void)rmdir(dir);
}

struct ws {
    char dir[64];
    char db[128];
};

static bool ws_new(struct ws *w)
{
    memcpy(w->dir, "/tmp/tc-registry-XXXXXX", 24);
    if (mkdtemp(w->dir) == NULL) {
        tc_test_fail_at(__FILE__, __LINE__, "mkdtemp");
        return false;
    }
    (void)snprintf(w->db, sizeof w->db, "%s/registry.db", w->dir);
    return true;
}

static struct tc_registry *reg_open(const char *db)
{
    struct tc_registry *r = NULL;
    tc_err rc = tc_registry_open(db, ORIGIN, &r);
    if (rc != TC_OK) {
        char msg[400];
        tc_error_format(msg, sizeof msg);
        tc_test_fail_at(__FILE__, __LINE__, "open %s: %s", db, msg);
    }
    return r;
}

static void eid_of(unsigned n, uint8_t eid[16])
{
    for (unsigned i = 0; i < 16; i++)
        eid[i] = (uint8_t)(0x89 + i * 7 + n * 13);
    eid[15] = (uint8_t)n;
    eid[14] = (uint8_t)(n >> 8);
}

/* A line event for device n. */
static void line_event(struct tc_audit_event *ev, enum tc_audit_event_type type, unsigned n,
                       const char *batch, uint64_t t)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->time_ms = T0 + t;
    ev->fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR;
    if (type != TC_AUDIT_KEYS_ROTATED && type != TC_AUDIT_CERT_REVOKED) {
        ev->fields |= TC_AUDIT_HAS_STATION;
        (void)snprintf(ev->station, sizeof ev->station, "line1-st%u", n % 3);
    }
    eid_of(n, ev->eid);
    ev->eid_len = 16;
    (void)snprintf(ev->batch, sizeof ev->batch, "%s", batch);
    (void)snprintf(ev->actor, sizeof ev->actor, "op:test");
}

static void keys(struct tc_audit_event *ev, uint8_t kvn, uint8_t seed)
{
    ev->fields |= TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV;
    ev->kvn = kvn;
    for (unsigned i = 0; i < 9; i++)
        ev->kcv[i / 3][i % 3] = (uint8_t)(seed + i);
}

static void cert(struct tc_audit_event *ev, uint8_t serial, const uint8_t sha[32])
{
    ev->fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
    ev->cert_serial[0] = serial;
    ev->cert_serial_len = 1;
    memcpy(ev->cert_sha256, sha, 32);
}

static void lifecycle_event(struct tc_audit_event *ev, unsigned n, const char *batch, uint64_t t,
                            uint8_t lc, uint8_t prev)
{
    line_event(ev, TC_AUDIT_LIFECYCLE_CHANGED, n, batch, t);
    ev->fields |= TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
    ev->lifecycle = lc;
    ev->prev_lifecycle = prev;
}

static void rotated_event(struct tc_audit_event *ev, unsigned n, const char *batch, uint64_t t,
                          uint8_t kvn, uint8_t seed, uint8_t prev_kvn)
{
    line_event(ev, TC_AUDIT_KEYS_ROTATED, n, batch, t);
    keys(ev, kvn, seed);
    ev->fields |= TC_AUDIT_HAS_PREV_KVN;
    ev->prev_kvn = prev_kvn;
}

static void rejected_event(struct tc_audit_event *ev, unsigned n, const char *batch, uint64_t t,
                           uint16_t reason, uint8_t step)
{
    line_event(ev, TC_AUDIT_DEVICE_REJECTED, n, batch, t);
    ev->fields |= TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_STEP;
    ev->reason = reason;
    ev->step = step;
}

static void batch_revoked_event(struct tc_audit_event *ev, const char *batch, uint64_t t,
                                uint16_t reason)
{
    memset(ev, 0, sizeof *ev);
    ev->type = TC_AUDIT_BATCH_REVOKED;
    ev->time_ms = T0 + t;
    ev->fields = TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_REASON;
    (void)snprintf(ev->batch, sizeof ev->batch, "%s", batch);
    (void)snprintf(ev->actor, sizeof ev->actor, "op:ca");
    ev->reason = reason;
}

static uint64_t append(struct tc_registry *r, const struct tc_audit_event *ev)
{
    uint64_t idx = UINT64_MAX;
    tc_err rc = tc_registry_append(r, ev, &idx);
    if (rc != TC_OK) {
        char msg[400];
        tc_error_format(msg, sizeof msg);
        tc_test_fail_at(__FILE__, __LINE__, "append: %s", msg);
    }
    return idx;
}

static const uint8_t cert_der[] = {0x30, 0x03, 0x02, 0x01, 0x07}; /* stands for a DER cert */

/* The whole line for device n from time t: 8 events, ending provisioned. */
static void line_events(unsigned n, const char *batch, uint64_t t, const uint8_t cert_sha[32],
                        struct tc_audit_event ev[8])
{
    line_event(&ev[0], TC_AUDIT_CARD_RECEIVED, n, batch, t + 0);
    ev[0].fields |= TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_KVN;
    ev[0].lifecycle = 0x07;
    ev[0].kvn = 0x01;
    line_event(&ev[1], TC_AUDIT_KEYS_DERIVED, n, batch, t + 10);
    keys(&ev[1], 0x30, 0xA0);
    line_event(&ev[2], TC_AUDIT_KEYS_INJECTED, n, batch, t + 20);
    keys(&ev[2], 0x30, 0xA0);
    ev[2].fields |= TC_AUDIT_HAS_PREV_KVN;
    ev[2].prev_kvn = 0x01;
    line_event(&ev[3], TC_AUDIT_INJECTION_CONFIRMED, n, batch, t + 30);
    keys(&ev[3], 0x30, 0xA0);
    line_event(&ev[4], TC_AUDIT_KEYPAIR_GENERATED, n, batch, t + 40);
    ev[4].fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
    memset(ev[4].pubkey_sha256, 0x5A, 32);
    line_event(&ev[5], TC_AUDIT_CERT_ISSUED, n, batch, t + 50);
    ev[5].fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
    memset(ev[5].pubkey_sha256, 0x5A, 32);
    cert(&ev[5], (uint8_t)(n % 100 + 1), cert_sha);
    line_event(&ev[6], TC_AUDIT_CERT_STORED, n, batch, t + 60);
    cert(&ev[6], (uint8_t)(n % 100 + 1), cert_sha);
    lifecycle_event(&ev[7], n, batch, t + 70, 0x0F, 0x07);
}

static void provision(struct tc_registry *r, unsigned n, const char *batch, uint64_t t,
                      const uint8_t cert_sha[32])
{
    struct tc_audit_event ev[8];
    line_events(n, batch, t, cert_sha, ev);
    for (unsigned i = 0; i < 8; i++)
        (void)append(r, &ev[i]);
}

static void checkpoint(struct tc_registry *r)
{
    uint8_t note[TC_NOTE_MAX];
    size_t len = 0;
    EXPECT_OK(tc_registry_checkpoint(r, &signer, note, sizeof note, &len));
}

/* ------------------------------------------------------------ time */

static void test_time_vectors(void)
{
    struct tc_vec v;
    unsigned n = 0;
    if (!tc_vec_open(&v, "registry/time.txt"))
        return;
    while (tc_vec_next(&v)) {
        const char *in = tc_vec_get(&v, "IN"), *ms = tc_vec_get(&v, "MS");
        const char *outs = tc_vec_get(&v, "OUT");
        uint64_t want = 0, got = 0;
        EXPECT(in != NULL && ms != NULL && outs != NULL);
        if (in == NULL || ms == NULL || outs == NULL)
            break;
        EXPECT_OK(tc_parse_uint(ms, UINT64_MAX, &want));
        EXPECT_OK(tc_registry_time_parse(in, &got));
        EXPECT_EQ_U(got, want);
        char text[32];
        EXPECT_OK(tc_registry_time_format(got, text, sizeof text));
        EXPECT_STR(text, outs);
        n++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 8);
    char small[24];
    EXPECT_ERR(tc_registry_time_format(0, small, sizeof small), TC_ERR_SPACE);
    char text[32];
    EXPECT_ERR(tc_registry_time_format(253402300800000ull, text, sizeof text), TC_ERR_RANGE);
}

static void test_time_rejections(void)
{
    struct tc_vec v;
    unsigned n = 0;
    if (!tc_vec_open(&v, "registry/time-bad.txt"))
        return;
    while (tc_vec_next(&v)) {
        const char *in = tc_vec_get(&v, "IN");
        uint64_t t = 0;
        EXPECT(in != NULL);
        if (in == NULL)
            break;
        if (tc_registry_time_parse(in, &t) != TC_ERR_FORMAT)
            tc_test_fail_at(__FILE__, __LINE__, "'%s' was not refused", in);
        n++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 21);
}

static void test_state_names(void)
{
    for (unsigned s = 1; s <= TC_REG_STATE_MAX_; s++) {
        enum tc_registry_state back = 0;
        const char *name = tc_registry_state_name((enum tc_registry_state)s);
        EXPECT(name != NULL);
        EXPECT_OK(tc_registry_state_parse(name, &back));
        EXPECT_EQ_U(back, s);
    }
    enum tc_registry_state st;
    EXPECT(tc_registry_state_name((enum tc_registry_state)0) == NULL);
    EXPECT(tc_registry_state_name((enum tc_registry_state)13) == NULL);
    EXPECT_ERR(tc_registry_state_parse("Provisioned", &st), TC_ERR_ARG);
    EXPECT_ERR(tc_registry_state_parse("", &st), TC_ERR_ARG);
}

/* ------------------------------------------------------------ the line */

static void test_line_and_state_at(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = reg_open(w.db);
    if (r == NULL)
        return;
    uint8_t sha[32];
    EXPECT_OK(tc_registry_cert_put(r, cert_der, sizeof cert_der, sha));
    provision(r, 1, "B2026-001", 0, sha);
    provision(r, 2, "B2026-001", 5, sha);

    uint8_t eid[16];
    eid_of(1, eid);
    struct tc_registry_device d;
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
    EXPECT_EQ_U(d.state, TC_REG_PROVISIONED);
    EXPECT_EQ_U(d.kvn, 0x30);
    EXPECT(d.has_kcv && d.kcv[0][0] == 0xA0 && d.kcv[2][2] == 0xA8);
    EXPECT(d.has_cert && d.cert_stored && d.cert_serial_len == 1 && d.cert_serial[0] == 2);
    EXPECT_MEM(d.cert_sha256, 32, sha, 32);
    EXPECT_EQ_U(d.lifecycle, 0x0F);
    EXPECT_STR(d.batch, "B2026-001");
    EXPECT_STR(d.station, "line1-st1");
    EXPECT_EQ_U(d.events, 8);
    EXPECT_EQ_U(d.first_index, 0);
    EXPECT_EQ_U(d.last_index, 7); /* device 2's events follow at 8..15 */
    EXPECT_EQ_U(d.last_time_ms, T0 + 70);

    /* State at each moment is the fold of the events up to it. */
    static const struct {
        uint64_t t;
        enum tc_registry_state s;
        size_t n;
        uint8_t kvn;
    } at[] = {{0, TC_REG_RECEIVED, 1, 0x01},         {9, TC_REG_RECEIVED, 1, 0x01},
              {10, TC_REG_KEYS_DERIVED, 2, 0x01},    {20, TC_REG_KEYS_INJECTED, 3, 0x30},
              {35, TC_REG_CONFIRMED, 4, 0x30},       {40, TC_REG_KEYPAIR, 5, 0x30},
              {50, TC_REG_CERT_ISSUED, 6, 0x30},     {60, TC_REG_CERT_STORED, 7, 0x30},
              {69, TC_REG_CERT_STORED, 7, 0x30},     {70, TC_REG_PROVISIONED, 8, 0x30},
              {1000000, TC_REG_PROVISIONED, 8, 0x30}};
    for (size_t i = 0; i < TC_ARRAY_LEN(at); i++) {
        struct tc_registry_device s;
        uint64_t idx[16];
        size_t n = 0;
        EXPECT_OK(tc_registry_device_at(r, eid, 16, T0 + at[i].t, &s, idx, 16, &n));
        EXPECT_EQ_U(s.state, at[i].s);
        EXPECT_EQ_U(n, at[i].n);
        EXPECT_EQ_U(s.kvn, at[i].kvn);
        EXPECT_EQ_U(idx[n - 1], n - 1);
    }
    /* Folding everything gives exactly the projected row. */
    struct tc_registry_device all;
    EXPECT_OK(tc_registry_device_at(r, eid, 16, UINT64_MAX, &all, NULL, 0, NULL));
    EXPECT_MEM(&all, sizeof all, &d, sizeof d);
    /* Before its first event, and an unknown device: not found. */
    EXPECT_ERR(tc_registry_device_at(r, eid, 16, T0 - 1, &all, NULL, 0, NULL), TC_ERR_NOT_FOUND);
    uint8_t nobody[16];
    eid_of(77, nobody);
    EXPECT_ERR(tc_registry_device_get(r, nobody, 16, &all), TC_ERR_NOT_FOUND);
    EXPECT_ERR(tc_registry_device_at(r, nobody, 16, UINT64_MAX, &all, NULL, 0, NULL),
               TC_ERR_NOT_FOUND);
    EXPECT_ERR(tc_registry_device_get(r, eid, 0, &all), TC_ERR_ARG);
    EXPECT_ERR(tc_registry_device_get(r, eid, 33, &all), TC_ERR_ARG);

    struct tc_registry_batch b;
    EXPECT_OK(tc_registry_batch_get(r, "B2026-001", &b));
    EXPECT(!b.revoked);
    EXPECT_EQ_U(b.events, 16);
    EXPECT_ERR(tc_registry_batch_get(r, "B2026-404", &b), TC_ERR_NOT_FOUND);

    /* The certificate side table gives back only bytes matching the hash. */
    uint8_t der[64];
    size_t der_len = 0;
    EXPECT_OK(tc_registry_cert_get(r, d.cert_sha256, der, sizeof der, &der_len));
    EXPECT_MEM(der, der_len, cert_der, sizeof cert_der);
    EXPECT_ERR(tc_registry_cert_get(r, d.cert_sha256, der, 2, &der_len), TC_ERR_SPACE);
    uint8_t other[32] = {0};
    EXPECT_ERR(tc_registry_cert_get(r, other, der, sizeof der, &der_len), TC_ERR_NOT_FOUND);
    {
        sqlite3 *db = NULL;
        EXPECT(sqlite3_open(w.db, &db) == SQLITE_OK);
        EXPECT(sqlite3_exec(db, "UPDATE reg_certs SET der = X'3003020108'", NULL, NULL, NULL) ==
               SQLITE_OK);
        sqlite3_close(db);
    }
    EXPECT_ERR(tc_registry_cert_get(r, d.cert_sha256, der, sizeof der, &der_len), TC_ERR_VERIFY);

    tc_registry_close(r);
    rmtree(w.dir);
}

static tc_err count_dev(void *arg, const struct tc_registry_device *d)
{
    (void)d;
    (*(unsigned *)arg)++;
    return TC_OK;
}

struct hist {
    unsigned n;
    uint64_t last;
};

static tc_err count_hist(void *arg, uint64_t index, const struct tc_audit_event *ev,
                         const uint8_t *event, size_t len)
{
    struct hist *h = arg;
    struct tc_audit_event back;
    if (tc_audit_event_decode(event, len, &back) != TC_OK || back.type != ev->type ||
        (h->n > 0 && index <= h->last))
        return TC_FAIL(TC_ERR_INTERNAL, "history out of order or not canonical");
    h->last = index;
    h->n++;
    return TC_OK;
}

static void test_reject_revoke_lock_list(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = reg_open(w.db);
    if (r == NULL)
        return;
    uint8_t sha[32];
    EXPECT_OK(tc_registry_cert_put(r, cert_der, sizeof cert_der, sha));
    for (unsigned n = 0; n < 6; n++)
        provision(r, n, n < 4 ? "B1" : "B2", n * 1000, sha);
    struct tc_audit_event ev;
    /* 0: rejected at step 3. */
    rejected_event(&ev, 0, "B1", 10000, 0x0102, 3);
    (void)append(r, &ev);
    /* 1: a revocation of some other serial changes nothing; of its own, revokes. */
    line_event(&ev, TC_AUDIT_CERT_REVOKED, 1, "B1", 10001);
    ev.fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON;
    ev.cert_serial[0] = 99;
    ev.cert_serial_len = 1;
    ev.reason = 1;
    (void)append(r, &ev);
    uint8_t eid[16];
    struct tc_registry_device d;
    eid_of(1, eid);
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
    EXPECT_EQ_U(d.state, TC_REG_PROVISIONED);
    ev.cert_serial[0] = 2;
    ev.time_ms++;
    (void)append(r, &ev);
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
    EXPECT_EQ_U(d.state, TC_REG_REVOKED);
    EXPECT_EQ_U(d.reason, 1);
    /* 2: locked, unlocked (SECURED again: provisioned), locked. 3: terminated. */
    uint8_t lcs[] = {0x7F, 0x0F, 0x7F};
    for (size_t i = 0; i < sizeof lcs; i++) {
        lifecycle_event(&ev, 2, "B1", 10010 + i, lcs[i], i == 0 ? 0x0F : lcs[i - 1]);
        (void)append(r, &ev);
    }
    eid_of(2, eid);
    struct tc_registry_device s;
    EXPECT_OK(tc_registry_device_at(r, eid, 16, T0 + 10010, &s, NULL, 0, NULL));
    EXPECT_EQ_U(s.state, TC_REG_LOCKED);
    EXPECT_OK(tc_registry_device_at(r, eid, 16, T0 + 10011, &s, NULL, 0, NULL));
    EXPECT_EQ_U(s.state, TC_REG_PROVISIONED);
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
    EXPECT_EQ_U(d.state, TC_REG_LOCKED);
    lifecycle_event(&ev, 3, "B1", 10020, 0xFF, 0x0F);
    (void)append(r, &ev);
    /* 4: keys rotated keep the state, change the KVN. */
    rotated_event(&ev, 4, "B2", 10030, 0x31, 0x10, 0x30);
    (void)append(r, &ev);
    eid_of(4, eid);
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
    EXPECT_EQ_U(d.state, TC_REG_PROVISIONED);
    EXPECT_EQ_U(d.kvn, 0x31);
    EXPECT_EQ_U(d.kcv[0][0], 0x10);
    /* Batch B2 revoked: the batch says so, devices keep their own state. */
    batch_revoked_event(&ev, "B2", 10040, 2);
    uint64_t ridx = append(r, &ev);
    struct tc_registry_batch b;
    EXPECT_OK(tc_registry_batch_get(r, "B2", &b));
    EXPECT(b.revoked);
    EXPECT_EQ_U(b.reason, 2);
    EXPECT_EQ_U(b.revoked_index, ridx);
    EXPECT_OK(tc_registry_batch_get(r, "B1", &b));
    EXPECT(!b.revoked);

    static const struct {
        const char *batch;
        enum tc_registry_state s;
        unsigned n;
    } lists[] = {{NULL, 0, 6},
                 {"B1", 0, 4},
                 {"B2", 0, 2},
                 {"B3", 0, 0},
                 {NULL, TC_REG_PROVISIONED, 2},
                 {"B1", TC_REG_REJECTED, 1},
                 {"B2", TC_REG_REJECTED, 0},
                 {NULL, TC_REG_REVOKED, 1},
                 {NULL, TC_REG_LOCKED, 1},
                 {NULL, TC_REG_DECOMMISSIONED, 1}};
    for (size_t i = 0; i < TC_ARRAY_LEN(lists); i++) {
        unsigned n = 0;
        EXPECT_OK(tc_registry_device_list(r, lists[i].batch, lists[i].s, count_dev, &n));
        EXPECT_EQ_U(n, lists[i].n);
    }
    EXPECT_ERR(tc_registry_device_list(r, NULL, (enum tc_registry_state)13, count_dev, NULL),
               TC_ERR_ARG);

    struct hist h = {0};
    eid_of(2, eid);
    EXPECT_OK(tc_registry_device_history(r, eid, 16, count_hist, &h));
    EXPECT_EQ_U(h.n, 11);
    uint8_t nobody[16];
    eid_of(500, nobody);
    h.n = 0;
    EXPECT_ERR(tc_registry_device_history(r, nobody, 16, count_hist, &h), TC_ERR_NOT_FOUND);

    /* The projection equals its rebuild from the log. */
    uint8_t hs[32], hr[32];
    EXPECT_OK(tc_registry_check(r, hs, hr));
    EXPECT_MEM(hs, 32, hr, 32);
    tc_registry_close(r);
    rmtree(w.dir);
}

/* ------------------------------------------------------------ rebuild */

static uint8_t *dump_bytes(struct tc_registry *r, size_t *len)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    if (f == NULL)
        return NULL;
    tc_err rc = tc_registry_dump(r, f);
    (void)fclose(f);
    if (rc != TC_OK) {
        free(p);
        return NULL;
    }
    *len = n;
    return (uint8_t *)p;
}

static void test_rebuild_byte_for_byte(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = reg_open(w.db);
    if (r == NULL)
        return;
    uint8_t sha[32];
    EXPECT_OK(tc_registry_cert_put(r, cert_der, sizeof cert_der, sha));
    for (unsigned n = 0; n < 20; n++)
        provision(r, n, n % 2 ? "B-odd" : "B-even", n * 7, sha);
    size_t l1 = 0, l2 = 0;
    uint8_t *d1 = dump_bytes(r, &l1);
    uint8_t h1[32], h2[32];
    EXPECT_OK(tc_registry_dump_hash(r, h1));
    EXPECT(d1 != NULL && l1 > 20 * 8 * 20);

    /* Damage the stored projection: check sees it, rebuild repairs it. */
    sqlite3 *db = NULL;
    EXPECT(sqlite3_open(w.db, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db,
                        "UPDATE reg_devices SET state = 9 WHERE rowid IN (SELECT rowid FROM"
                        " reg_devices LIMIT 1)",
                        NULL, NULL, NULL) != SQLITE_OK); /* WITHOUT ROWID: no rowid */
    EXPECT(sqlite3_exec(db,
                        "UPDATE reg_devices SET state = 9 WHERE eid = (SELECT min(eid) FROM"
                        " reg_devices); DELETE FROM reg_device_events WHERE idx = 5;"
                        "UPDATE reg_stations SET events = events + 1;",
                        NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    uint8_t hs[32], hr[32];
    EXPECT_ERR(tc_registry_check(r, hs, hr), TC_ERR_VERIFY);
    EXPECT(memcmp(hs, hr, 32) != 0);
    EXPECT_MEM(hr, 32, h1, 32);
    EXPECT_OK(tc_registry_rebuild(r));
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    uint8_t *d2 = dump_bytes(r, &l2);
    EXPECT_OK(tc_registry_dump_hash(r, h2));
    EXPECT(d2 != NULL);
    if (d1 != NULL && d2 != NULL)
        EXPECT_MEM(d2, l2, d1, l1);
    EXPECT_MEM(h2, 32, h1, 32);
    free(d1);
    free(d2);

    /* A projection table emptied behind the registry's back: rebuilt too. */
    EXPECT(sqlite3_open(w.db, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "DELETE FROM reg_devices", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    EXPECT_ERR(tc_registry_check(r, NULL, NULL), TC_ERR_VERIFY);
    EXPECT_OK(tc_registry_rebuild(r));
    EXPECT_OK(tc_registry_dump_hash(r, h2));
    EXPECT_MEM(h2, 32, h1, 32);
    tc_registry_close(r);

    /* A log written without a registry is projected when a registry first opens it. */
    EXPECT(sqlite3_open(w.db, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "DROP TABLE reg_meta; DROP TABLE reg_devices;", NULL, NULL, NULL) ==
           SQLITE_OK);
    sqlite3_close(db);
    r = reg_open(w.db);
    if (r != NULL) {
        EXPECT_OK(tc_registry_dump_hash(r, h2));
        EXPECT_MEM(h2, 32, h1, 32);
        tc_registry_close(r);
    }
    /* The origin is the log's for good. */
    EXPECT_ERR(tc_registry_open(w.db, "other/origin", &r), TC_ERR_STATE);
    rmtree(w.dir);
}

/* ------------------------------------------------------------ concurrency */

struct worker {
    struct tc_registry *r;
    unsigned base;
    const uint8_t *sha;
};

static void *work(void *arg)
{
    struct worker *wk = arg;
    for (unsigned n = 0; n < 25; n++)
        provision(wk->r, wk->base + n, "B-par", n, wk->sha);
    return NULL;
}

static void test_concurrent_appends(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = reg_open(w.db);
    if (r == NULL)
        return;
    uint8_t sha[32];
    EXPECT_OK(tc_registry_cert_put(r, cert_der, sizeof cert_der, sha));
    pthread_t th[4];
    struct worker wk[4];
    for (unsigned i = 0; i < 4; i++) {
        wk[i] = (struct worker){r, i * 1000, sha};
        EXPECT(pthread_create(&th[i], NULL, work, &wk[i]) == 0);
    }
    for (unsigned i = 0; i < 4; i++)
        (void)pthread_join(th[i], NULL);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(r)), 4 * 25 * 8);
    unsigned n = 0;
    EXPECT_OK(tc_registry_device_list(r, "B-par", TC_REG_PROVISIONED, count_dev, &n));
    EXPECT_EQ_U(n, 100);
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    checkpoint(r);
    struct tc_audit_verify_report rep;
    EXPECT_OK(tc_registry_verify(r, &verifier, &rep));
    EXPECT_EQ_U(rep.size, 800);
    tc_registry_close(r);
    rmtree(w.dir);
}

/* ------------------------------------------------------------ batched projection */

enum { BP_DEVS = 12, BP_MAX = BP_DEVS * 8 + 8 };

/* A log with several devices, batches and stations interleaved (so one
 * append carries several events of several devices), a batch revocation
 * in the middle, a revocation, a rotation, a lock and a rejection. */
static size_t batch_log(uint8_t (*enc)[TC_AUDIT_EVENT_MAX], size_t *lens)
{
    static struct tc_audit_event line[BP_DEVS][8];
    uint8_t sha[32];
    memset(sha, 0xC5, sizeof sha);
    for (unsigned d = 0; d < BP_DEVS; d++)
        line_events(d, d % 3 == 0 ? "BP-1" : "BP-2", 1000 * d, sha, line[d]);
    size_t n = 0;
    for (unsigned step = 0; step < 8; step++) {
        for (unsigned d = 0; d < BP_DEVS; d++) {
            struct tc_audit_event ev = line[d][step];
            if (d == 5 && step == 7) { /* rejected at the last step */
                rejected_event(&ev, d, "BP-2", 1000 * d + 75, 7, 7);
            }
            EXPECT_OK(tc_audit_event_encode(&ev, enc[n], TC_AUDIT_EVENT_MAX, &lens[n]));
            n++;
        }
        if (step == 4) {
            struct tc_audit_event ev;
            batch_revoked_event(&ev, "BP-1", 50000, 2);
            EXPECT_OK(tc_audit_event_encode(&ev, enc[n], TC_AUDIT_EVENT_MAX, &lens[n]));
            n++;
        }
    }
    struct tc_audit_event ev;
    rotated_event(&ev, 1, "BP-2", 90000, 0x31, 0x10, 0x30);
    EXPECT_OK(tc_audit_event_encode(&ev, enc[n], TC_AUDIT_EVENT_MAX, &lens[n]));
    n++;
    line_event(&ev, TC_AUDIT_CERT_REVOKED, 2, "BP-2", 90010);
    cert(&ev, 3, sha);
    ev.fields |= TC_AUDIT_HAS_REASON;
    ev.fields &= ~(uint32_t)TC_AUDIT_HAS_CERT_SHA256;
    ev.reason = 1;
    EXPECT_OK(tc_audit_event_encode(&ev, enc[n], TC_AUDIT_EVENT_MAX, &lens[n]));
    n++;
    lifecycle_event(&ev, 4, "BP-2", 90020, 0x7F, 0x0F);
    EXPECT_OK(tc_audit_event_encode(&ev, enc[n], TC_AUDIT_EVENT_MAX, &lens[n]));
    n++;
    EXPECT(n <= BP_MAX);
    return n;
}

/* Each append is projected as one batch (devices folded in memory and
 * written once, counters once per batch and station): the result equals
 * one event per append and the per-event replay of tc_registry_check, for
 * appends of every size from 1 to the whole log. */
static void test_batched_projection(void)
{
    static uint8_t enc[BP_MAX][TC_AUDIT_EVENT_MAX];
    size_t lens[BP_MAX];
    const uint8_t *ptr[BP_MAX];
    size_t n = batch_log(enc, lens);
    for (size_t i = 0; i < n; i++)
        ptr[i] = enc[i];
    uint8_t want[32], got[32];
    static const size_t chunks[] = {1, 2, 3, 5, 7, 13, 40, BP_MAX};
    for (size_t c = 0; c < TC_ARRAY_LEN(chunks); c++) {
        struct ws w;
        if (!ws_new(&w))
            return;
        struct tc_registry *r = reg_open(w.db);
        if (r == NULL)
            return;
        for (size_t i = 0; i < n; i += chunks[c]) {
            size_t k = n - i < chunks[c] ? n - i : chunks[c];
            uint64_t first = UINT64_MAX;
            EXPECT_OK(tc_registry_append_encoded(r, ptr + i, lens + i, k, &first));
            EXPECT_EQ_U(first, i);
        }
        EXPECT_OK(tc_registry_check(r, NULL, NULL));
        EXPECT_OK(tc_registry_dump_hash(r, got));
        if (c == 0)
            memcpy(want, got, sizeof want);
        else
            EXPECT_MEM(got, sizeof got, want, sizeof want);
        struct tc_registry_device d;
        uint8_t eid[16];
        eid_of(5, eid);
        EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
        EXPECT_EQ_U(d.state, TC_REG_REJECTED);
        eid_of(4, eid);
        EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
        EXPECT_EQ_U(d.state, TC_REG_LOCKED);
        struct tc_registry_batch b;
        EXPECT_OK(tc_registry_batch_get(r, "BP-1", &b));
        EXPECT(b.revoked);
        EXPECT_EQ_U(b.events, 4 * 8 + 1);
        tc_registry_close(r);
        rmtree(w.dir);
    }
}

/* A batch whose projection ran but whose transaction then failed (the tree
 * head refused by a trigger) leaves nothing behind: the device rows the
 * hook wrote for it are not used by the next batch, which starts at the
 * same index. */
static void test_batch_rolled_back_after_projection(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = reg_open(w.db);
    if (r == NULL)
        return;
    uint8_t sha[32];
    memset(sha, 0x11, sizeof sha);
    provision(r, 3, "B-rb", 0, sha);
    sqlite3 *db = NULL;
    EXPECT(sqlite3_open(w.db, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db,
                        "CREATE TRIGGER refuse BEFORE UPDATE ON audit_tree WHEN new.size = 9"
                        " BEGIN SELECT RAISE(ABORT, 'refused'); END",
                        NULL, NULL, NULL) == SQLITE_OK);
    struct tc_audit_event ev;
    /* Terminated: would decommission the device. */
    lifecycle_event(&ev, 3, "B-rb", 500, 0xFF, 0x0F);
    uint64_t idx = 0;
    EXPECT_ERR(tc_registry_append(r, &ev, &idx), TC_ERR_DB);
    EXPECT(sqlite3_exec(db, "DROP TRIGGER refuse", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(r)), 8);
    rotated_event(&ev, 3, "B-rb", 600, 0x31, 0x40, 0x30);
    EXPECT_EQ_U(append(r, &ev), 8);
    struct tc_registry_device d;
    uint8_t eid[16];
    eid_of(3, eid);
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &d));
    EXPECT_EQ_U(d.state, TC_REG_PROVISIONED);
    EXPECT_EQ_U(d.lifecycle, 0x0F);
    EXPECT_EQ_U(d.kvn, 0x31);
    EXPECT_EQ_U(d.events, 9);
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    tc_registry_close(r);
    rmtree(w.dir);
}

/* ------------------------------------------------------------ certificates in the append */

/* Encodes a certificate-issued event for device n naming SHA-256(der). */
static size_t issued_event(unsigned n, const uint8_t *der, size_t der_len, uint8_t *out,
                           size_t out_size)
{
    struct tc_audit_event ev;
    uint8_t sha[32];
    struct tc_iov part = {der, der_len};
    EXPECT_OK(tc_sha256_iov(&part, 1, sha));
    line_event(&ev, TC_AUDIT_CERT_ISSUED, n, "B-certs", 50);
    ev.fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
    memset(ev.pubkey_sha256, 0x5A, 32);
    cert(&ev, (uint8_t)(n % 100 + 1), sha);
    size_t len = 0;
    EXPECT_OK(tc_audit_event_encode(&ev, out, out_size, &len));
    return len;
}

static void expect_cert(struct tc_registry *r, const uint8_t *der, size_t len)
{
    uint8_t sha[32], back[64];
    size_t bl = 0;
    struct tc_iov part = {der, len};
    EXPECT_OK(tc_sha256_iov(&part, 1, sha));
    EXPECT_OK(tc_registry_cert_get(r, sha, back, sizeof back, &bl));
    EXPECT_MEM(back, bl, der, len);
}

struct cert_worker {
    struct tc_registry *r;
    unsigned base;
    uint8_t der[25][8];
};

static void *cert_work(void *arg)
{
    struct cert_worker *cw = arg;
    for (unsigned i = 0; i < 25; i++) {
        uint8_t enc[TC_AUDIT_EVENT_MAX];
        uint8_t *der = cw->der[i];
        der[0] = 0x30;
        der[1] = 0x06;
        der[2] = 0x02;
        der[3] = 0x04;
        der[4] = (uint8_t)(cw->base >> 8);
        der[5] = (uint8_t)cw->base;
        der[6] = (uint8_t)i;
        der[7] = 0x5C;
        size_t len = issued_event(cw->base + i, der, 8, enc, sizeof enc);
        const uint8_t *ev = enc;
        struct tc_registry_cert c = {der, 8};
        uint64_t first = 0;
        EXPECT_OK(tc_registry_append_certs(cw->r, &ev, &len, 1, &c, 1, &first));
    }
    return NULL;
}

static void test_append_certs(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = reg_open(w.db);
    if (r == NULL)
        return;
    static const uint8_t der1[] = {0x30, 0x04, 0x02, 0x02, 0x01, 0x01};
    static const uint8_t der2[] = {0x30, 0x04, 0x02, 0x02, 0x02, 0x02};
    uint8_t enc[2][TC_AUDIT_EVENT_MAX];
    const uint8_t *evs[2] = {enc[0], enc[1]};
    size_t lens[2];
    uint64_t first = UINT64_MAX;

    /* A key-pair event and the issuance naming der1: both events and der1
     * in one append. */
    struct tc_audit_event kp;
    line_event(&kp, TC_AUDIT_KEYPAIR_GENERATED, 1, "B-certs", 40);
    kp.fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
    memset(kp.pubkey_sha256, 0x5A, 32);
    EXPECT_OK(tc_audit_event_encode(&kp, enc[0], sizeof enc[0], &lens[0]));
    lens[1] = issued_event(1, der1, sizeof der1, enc[1], sizeof enc[1]);
    struct tc_registry_cert c1 = {der1, sizeof der1}, c2 = {der2, sizeof der2};
    EXPECT_OK(tc_registry_append_certs(r, evs, lens, 2, &c1, 1, &first));
    EXPECT_EQ_U(first, 0);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(r)), 2);
    expect_cert(r, der1, sizeof der1);

    /* A certificate no event of the append names is refused, and nothing
     * is appended or stored. */
    uint8_t sha2[32], buf[64];
    size_t bl = 0;
    struct tc_iov part = {der2, sizeof der2};
    EXPECT_OK(tc_sha256_iov(&part, 1, sha2));
    EXPECT_ERR(tc_registry_append_certs(r, evs, lens, 2, &c2, 1, &first), TC_ERR_ARG);
    EXPECT_ERR(tc_registry_append_certs(r, evs, lens, 1, &c1, 1, &first), TC_ERR_ARG);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(r)), 2);
    EXPECT_ERR(tc_registry_cert_get(r, sha2, buf, sizeof buf, &bl), TC_ERR_NOT_FOUND);
    /* Caps and arguments. */
    static uint8_t big[TC_REGISTRY_CERT_MAX + 1];
    struct tc_registry_cert cb = {big, sizeof big}, cn = {NULL, 4};
    EXPECT_ERR(tc_registry_append_certs(r, evs, lens, 2, &cb, 1, &first), TC_ERR_RANGE);
    EXPECT_ERR(tc_registry_append_certs(r, evs, lens, 2, &cn, 1, &first), TC_ERR_ARG);
    EXPECT_ERR(tc_registry_append_certs(r, evs, lens, 2, NULL, 1, &first), TC_ERR_ARG);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(r)), 2);
    /* No certificate: a plain append. */
    EXPECT_OK(tc_registry_append_certs(r, evs, lens, 1, NULL, 0, &first));
    EXPECT_EQ_U(first, 2);

    /* Concurrent appends, each with its own certificate, share group
     * commits: every certificate lands with its event. */
    pthread_t th[4];
    static struct cert_worker cw[4];
    for (unsigned i = 0; i < 4; i++) {
        cw[i].r = r;
        cw[i].base = 100 + i * 100;
        EXPECT(pthread_create(&th[i], NULL, cert_work, &cw[i]) == 0);
    }
    for (unsigned i = 0; i < 4; i++)
        (void)pthread_join(th[i], NULL);
    EXPECT_EQ_U(tc_audit_log_size(tc_registry_log(r)), 3 + 100);
    for (unsigned i = 0; i < 4; i++)
        for (unsigned k = 0; k < 25; k++)
            expect_cert(r, cw[i].der[k], 8);
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    tc_registry_close(r);

    /* Durable with the events: a fresh open finds them; a reader refuses. */
    r = reg_open(w.db);
    if (r != NULL) {
        expect_cert(r, der1, sizeof der1);
        expect_cert(r, cw[3].der[24], 8);
    }
    tc_registry_close(r);
    EXPECT_OK(tc_registry_open_reader(w.db, &r));
    if (r != NULL)
        EXPECT_ERR(tc_registry_append_certs(r, evs, lens, 2, &c1, 1, &first), TC_ERR_STATE);
    tc_registry_close(r);
    rmtree(w.dir);
}

/* ------------------------------------------------------------ tampering */

/* A fresh registry of 12 devices (96 events) with checkpoints at 48 and 96. */
static bool tamper_setup(struct ws *w)
{
    if (!ws_new(w))
        return false;
    struct tc_registry *r = reg_open(w->db);
    if (r == NULL)
        return false;
    uint8_t sha[32];
    EXPECT_OK(tc_registry_cert_put(r, cert_der, sizeof cert_der, sha));
    for (unsigned n = 0; n < 12; n++) {
        provision(r, n, "B-t", n * 100, sha);
        if (n == 5 || n == 11)
            checkpoint(r);
    }
    struct tc_audit_verify_report rep;
    EXPECT_OK(tc_registry_verify(r, &verifier, &rep));
    EXPECT_EQ_U(rep.size, 96);
    EXPECT_EQ_U(rep.checkpoints, 2);
    tc_registry_close(r);
    return true;
}

/* Verification through a read-only registry (a damaged log may not open). */
static tc_err verify_path(const char *db)
{
    struct tc_registry *r = NULL;
    struct tc_audit_verify_report rep;
    TC_GUARD(tc_registry_open_reader(db, &r));
    tc_err rc = tc_registry_verify(r, &verifier, &rep);
    tc_registry_close(r);
    return rc;
}

static void sql(const char *db, const char *q)
{
    sqlite3 *h = NULL;
    char *err = NULL;
    if (sqlite3_open(db, &h) != SQLITE_OK || sqlite3_exec(h, q, NULL, NULL, &err) != SQLITE_OK)
        tc_test_fail_at(__FILE__, __LINE__, "%s: %s", q, err ? err : "open");
    sqlite3_free(err);
    sqlite3_close(h);
}

/* Recompute every leaf hash and the tree head from the stored events, as
 * an attacker with database access would after rewriting events. */
static void rehash(const char *db)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL, *up = NULL;
    struct tc_merkle_tree t;
    tc_merkle_init(&t);
    EXPECT(sqlite3_open(db, &h) == SQLITE_OK);
    EXPECT(sqlite3_prepare_v2(h, "SELECT idx, event FROM audit_events ORDER BY idx", -1, &st,
                              NULL) == SQLITE_OK);
    EXPECT(sqlite3_prepare_v2(h, "UPDATE audit_events SET leaf_hash = ?2 WHERE idx = ?1", -1, &up,
                              NULL) == SQLITE_OK);
    EXPECT(sqlite3_exec(h, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint8_t lh[32];
        EXPECT_OK(tc_merkle_leaf_hash(sqlite3_column_blob(st, 1),
                                      (size_t)sqlite3_column_bytes(st, 1), lh));
        EXPECT_OK(tc_merkle_append(&t, lh));
        sqlite3_bind_int64(up, 1, sqlite3_column_int64(st, 0));
        sqlite3_bind_blob(up, 2, lh, 32, SQLITE_TRANSIENT);
        EXPECT(sqlite3_step(up) == SQLITE_DONE);
        sqlite3_reset(up);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    uint8_t root[32];
    EXPECT_OK(tc_merkle_root(&t, t.size, root));
    EXPECT(sqlite3_prepare_v2(h, "UPDATE audit_tree SET size = ?1, root = ?2", -1, &up, NULL) ==
           SQLITE_OK);
    sqlite3_bind_int64(up, 1, (sqlite3_int64)t.size);
    sqlite3_bind_blob(up, 2, root, 32, SQLITE_TRANSIENT);
    EXPECT(sqlite3_step(up) == SQLITE_DONE);
    sqlite3_finalize(up);
    EXPECT(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(h);
    tc_merkle_free(&t);
}

/* Rebuild the projection so only the log itself can betray the change. */
static void reproject(const char *db)
{
    struct tc_registry *r = NULL;
    EXPECT_OK(tc_registry_open_reader(db, &r));
    if (r != NULL)
        EXPECT_OK(tc_registry_rebuild(r));
    tc_registry_close(r);
}

static void test_tampering(void)
{
    static const struct {
        const char *name;
        const char *sql;
        bool rehash;
        const char *why; /* the recorded reason must say this */
    } cases[] = {
        /* modify: one byte of an event's time */
        {"modify event",
         "UPDATE audit_events SET event = substr(event, 1, 9) || X'FF' ||"
         " substr(event, 11) WHERE idx = 20",
         false, "stored leaf hash of event 20 does not match"},
        {"modify event and its leaf hash",
         "UPDATE audit_events SET event = substr(event, 1, 9) || X'FF' || substr(event, 11)"
         " WHERE idx = 20",
         true, "signed checkpoint at 48 does not match"},
        {"delete event", "DELETE FROM audit_events WHERE idx = 30", false,
         "event index 31 where 30 was expected"},
        {"delete last event and shrink the head", "DELETE FROM audit_events WHERE idx = 95", true,
         "checkpoint at 96 is beyond the log's 95 events"},
        {"reorder events",
         "UPDATE audit_events SET idx = -idx WHERE idx IN (40, 41);"
         "UPDATE audit_events SET idx = CASE idx WHEN -40 THEN 41 ELSE 40 END WHERE idx < 0",
         false, "stored tree head does not match"},
        {"reorder events and rehash",
         "UPDATE audit_events SET idx = -idx WHERE idx IN (40, 41);"
         "UPDATE audit_events SET idx = CASE idx WHEN -40 THEN 41 ELSE 40 END WHERE idx < 0",
         true, "signed checkpoint at 48 does not match"},
        {"insert event",
         "INSERT INTO audit_events(idx, leaf_hash, event) SELECT 96, leaf_hash,"
         " event FROM audit_events WHERE idx = 3",
         false, "tree head says 96 events, the log holds 97"},
        {"insert event and rehash",
         "INSERT INTO audit_events(idx, leaf_hash, event) SELECT 96, leaf_hash, event FROM"
         " audit_events WHERE idx = 3",
         true, "no signed checkpoint covers the whole log"},
        /* rewrite the whole suffix after the first checkpoint: the device
         * reasons and times change, every hash and the head are recomputed */
        {"rewrite suffix and rehash",
         "UPDATE audit_events SET event = substr(event, 1, 9) || X'01' || substr(event, 11)"
         " WHERE idx >= 48",
         true, "signed checkpoint at 96 does not match"},
        {"drop a checkpoint signature",
         "UPDATE audit_checkpoints SET note = substr(note, 1, length(note) - 10) ||"
         " X'41414141410A' WHERE size = 48",
         false, "invalid signature"},
        {"projection row changed",
         "UPDATE reg_devices SET kvn = 0x31 WHERE events = 8 AND"
         " eid = (SELECT max(eid) FROM reg_devices)",
         false, "projection differs"},
        {"projection index row deleted", "DELETE FROM reg_device_events WHERE idx = 7", false,
         "projection differs"},
        {"batch counts changed", "UPDATE reg_batches SET events = 1", false, "projection differs"},
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(cases); i++) {
        struct ws w;
        if (!tamper_setup(&w))
            return;
        sql(w.db, cases[i].sql);
        if (cases[i].rehash) {
            rehash(w.db);
            reproject(w.db);
        }
        tc_err rc = verify_path(w.db);
        if (getenv("TC_TEST_VERBOSE") != NULL) {
            char msg[400];
            tc_error_format(msg, sizeof msg);
            printf("  %s: %s\n", cases[i].name, msg);
        }
        if (rc == TC_ERR_VERIFY && strstr(tc_error_last()->msg, cases[i].why) == NULL)
            tc_test_fail_at(__FILE__, __LINE__, "%s: detected, but as '%s'", cases[i].name,
                            tc_error_last()->msg);
        if (rc != TC_ERR_VERIFY) {
            char msg[400];
            tc_error_format(msg, sizeof msg);
            tc_test_fail_at(__FILE__, __LINE__, "%s: verify returned %s (%s)", cases[i].name,
                            tc_err_name(rc), msg);
        }
        rmtree(w.dir);
    }
    /* Untouched: verifies. */
    struct ws w;
    if (tamper_setup(&w)) {
        EXPECT_OK(verify_path(w.db));
        /* A verifier with another key refuses every checkpoint. */
        struct tc_signer other;
        struct tc_note_verifier keep = verifier;
        char vk[TC_NOTE_VKEY_MAX + 1];
        EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &other));
        EXPECT_OK(tc_note_verifier_key(&other, ORIGIN, vk, sizeof vk));
        EXPECT_OK(tc_note_verifier_parse(vk, &verifier));
        EXPECT_ERR(verify_path(w.db), TC_ERR_VERIFY);
        verifier = keep;
        tc_signer_soft_free(&other);
        rmtree(w.dir);
    }
}

static void test_reader_refuses_appends(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = NULL;
    EXPECT_ERR(tc_registry_open_reader(w.db, &r), TC_ERR_NOT_FOUND);
    r = reg_open(w.db);
    tc_registry_close(r);
    EXPECT_OK(tc_registry_open_reader(w.db, &r));
    if (r != NULL) {
        struct tc_audit_event ev;
        line_event(&ev, TC_AUDIT_KEYS_DERIVED, 1, "B", 0);
        keys(&ev, 0x30, 1);
        uint64_t idx;
        EXPECT_ERR(tc_registry_append(r, &ev, &idx), TC_ERR_STATE);
        EXPECT(tc_registry_log(r) == NULL);
        EXPECT_STR(tc_registry_origin(r), ORIGIN);
    }
    tc_registry_close(r);
    /* Bad origins are refused on creation. */
    struct ws w2;
    if (ws_new(&w2)) {
        EXPECT_ERR(tc_registry_open(w2.db, "has space", &r), TC_ERR_ARG);
        EXPECT_ERR(tc_registry_open(w2.db, "a+b", &r), TC_ERR_ARG);
        rmtree(w2.dir);
    }
    rmtree(w.dir);
}

/* ------------------------------------------------------------ current certificate */

/*
 * A device's certificate story after the line: each step is an operation
 * letter and a certificate letter. k keypair-generated, i cert-issued,
 * s cert-stored, r cert-revoked (these four carry an OTA operation id, as
 * a renewal logs them), R cert-revoked with no operation (`device
 * revoke`). Certificate A is the line's; B.. are renewals'.
 */
#define CC_DEV0   40u
#define CC_STEPS  16u
#define CC_OP_ID  5000u /* any index: the fold only asks whether there is one */
#define CC_LINE_T 0u

static uint8_t cc_line_sha[32];

static uint8_t cc_serial(unsigned n, char c)
{
    return c == 'A' ? (uint8_t)(n % 100 + 1) : (uint8_t)(0x70 + (c - 'B'));
}

static void cc_sha(char c, uint8_t out[32])
{
    if (c == 'A')
        memcpy(out, cc_line_sha, 32);
    else
        memset(out, (uint8_t)(c ^ 0xFF), 32);
}

static void cc_pub(char c, uint8_t out[32])
{
    memset(out, c == 'A' ? 0x5A : (uint8_t)c, 32);
}

static void cc_event(struct tc_audit_event *ev, unsigned n, char op, char c, uint64_t t)
{
    enum tc_audit_event_type type = op == 'k'   ? TC_AUDIT_KEYPAIR_GENERATED
                                    : op == 'i' ? TC_AUDIT_CERT_ISSUED
                                    : op == 's' ? TC_AUDIT_CERT_STORED
                                                : TC_AUDIT_CERT_REVOKED;
    line_event(ev, type, n, "CC-1", t);
    if (op != 'R') {
        ev->fields |= TC_AUDIT_HAS_OP_ID;
        ev->op_id = CC_OP_ID;
    }
    if (type == TC_AUDIT_KEYPAIR_GENERATED || type == TC_AUDIT_CERT_ISSUED) {
        ev->fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
        cc_pub(c, ev->pubkey_sha256);
    }
    if (type != TC_AUDIT_KEYPAIR_GENERATED) {
        uint8_t sha[32];
        cc_sha(c, sha);
        cert(ev, cc_serial(n, c), sha);
    }
    if (type == TC_AUDIT_CERT_REVOKED) {
        ev->fields |= TC_AUDIT_HAS_REASON;
        ev->reason = op == 'R' ? 1 : 4; /* keyCompromise, superseded */
    }
}

struct cc_story {
    const char *name;
    const char *steps;
    char cur;             /* the current certificate */
    bool stored, revoked; /* cert_stored, cert_revoked */
    enum tc_registry_state state;
    const char *prev; /* the other unrevoked certificates remembered, oldest first */
};

static const struct cc_story cc_stories[] = {
    {"provisioned", "", 'A', true, false, TC_REG_PROVISIONED, ""},
    /* The card kept its old key: the renewal's certificate is revoked. */
    {"abandoned renewal", "kBiBrB", 'A', true, false, TC_REG_PROVISIONED, ""},
    {"renewed", "kBiBsBrA", 'B', true, false, TC_REG_PROVISIONED, ""},
    /* Read-back failed with the new key the card's: the new certificate stays valid. */
    {"read-back failed, new key active", "kBiBrA", 'B', false, false, TC_REG_PROVISIONED, ""},
    {"renewal in flight", "kBiB", 'B', false, false, TC_REG_PROVISIONED, "A"},
    {"device revoke", "RA", 'A', true, true, TC_REG_REVOKED, ""},
    {"device revoke during a renewal", "kBiBRARB", 'B', false, true, TC_REG_REVOKED, ""},
    {"device revoke, newest first", "kBiBRBRA", 'A', true, true, TC_REG_REVOKED, ""},
    {"device revoke after a failed read-back", "kBiBrARB", 'B', false, true, TC_REG_REVOKED, ""},
    {"two abandoned, then renewed", "kBiBrBkCiCrCkDiDsDrA", 'D', true, false, TC_REG_PROVISIONED,
     ""},
    {"two in flight, the newest abandoned", "iBiCrC", 'B', false, false, TC_REG_PROVISIONED, "A"},
    {"an old one revoked while another is in flight", "iBiCrA", 'C', false, false,
     TC_REG_PROVISIONED, "B"},
    /* Five certificates valid at once: the oldest (A) is forgotten, so once
     * the other four are revoked the device is revoked although A is not. */
    {"more than remembered", "iBiCiDiEiFrFrErDrCrB", 'B', false, true, TC_REG_REVOKED, ""},
    {"more than remembered, newest kept", "iBiCiDiEiF", 'F', false, false, TC_REG_PROVISIONED,
     "BCDE"},
};

static void cc_expect(const struct cc_story *s, unsigned n, const struct tc_registry_device *d)
{
    uint8_t sha[32], pub[32];
    cc_sha(s->cur, sha);
    cc_pub(s->cur, pub);
    if (!d->has_cert || d->cert_serial_len != 1 || d->cert_serial[0] != cc_serial(n, s->cur))
        tc_test_fail_at(__FILE__, __LINE__, "%s: current certificate %02X, expected %c", s->name,
                        d->cert_serial[0], s->cur);
    EXPECT_MEM(d->cert_sha256, 32, sha, 32);
    EXPECT_MEM(d->cert_pubkey_sha256, 32, pub, 32);
    if (!s->revoked)
        EXPECT_MEM(d->pubkey_sha256, 32, pub, 32);
    if (d->cert_stored != s->stored || d->cert_revoked != s->revoked || d->state != s->state)
        tc_test_fail_at(__FILE__, __LINE__, "%s: stored %d revoked %d state %s", s->name,
                        d->cert_stored, d->cert_revoked, tc_registry_state_name(d->state));
    size_t np = strlen(s->prev);
    EXPECT_EQ_U(d->n_prev, np);
    for (size_t i = 0; i < np && i < d->n_prev; i++) {
        const struct tc_registry_cert_ref *c = &d->prev[i];
        cc_sha(s->prev[i], sha);
        cc_pub(s->prev[i], pub);
        EXPECT(c->serial_len == 1 && c->serial[0] == cc_serial(n, s->prev[i]));
        EXPECT_MEM(c->sha256, 32, sha, 32);
        EXPECT_MEM(c->pubkey_sha256, 32, pub, 32);
        EXPECT(c->stored == (s->prev[i] == 'A'));
    }
}

/* The projected row (however it was written), the fold of the device's
 * events and the rebuilt projection agree, and say what the story says. */
static void cc_check(struct tc_registry *r, const struct cc_story *s, unsigned n)
{
    uint8_t eid[16];
    eid_of(n, eid);
    struct tc_registry_device got, fold;
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &got));
    cc_expect(s, n, &got);
    EXPECT_OK(tc_registry_device_at(r, eid, 16, UINT64_MAX, &fold, NULL, 0, NULL));
    EXPECT_MEM(&fold, sizeof fold, &got, sizeof got);
}

static void test_current_certificate(void)
{
    struct ws w;
    if (!ws_new(&w))
        return;
    struct tc_registry *r = reg_open(w.db);
    if (r == NULL)
        return;
    EXPECT_OK(tc_registry_cert_put(r, cert_der, sizeof cert_der, cc_line_sha));
    size_t ns = TC_ARRAY_LEN(cc_stories);
    /* Three devices per story: one append per event; the whole story in
     * one append (one batch projection); half, then the registry reopened
     * (rows read back from the database, not remembered), then the rest. */
    for (size_t k = 0; k < ns; k++)
        for (unsigned v = 0; v < 3; v++)
            provision(r, CC_DEV0 + 3 * (unsigned)k + v, "CC-1", CC_LINE_T, cc_line_sha);
    for (size_t k = 0; k < ns; k++) {
        const struct cc_story *s = &cc_stories[k];
        size_t len = strlen(s->steps) / 2;
        EXPECT(len <= CC_STEPS);
        static uint8_t enc[CC_STEPS][TC_AUDIT_EVENT_MAX];
        const uint8_t *ptr[CC_STEPS];
        size_t lens[CC_STEPS];
        unsigned n0 = CC_DEV0 + 3 * (unsigned)k;
        for (size_t i = 0; i < len; i++) {
            struct tc_audit_event ev;
            cc_event(&ev, n0, s->steps[2 * i], s->steps[2 * i + 1], 1000 + 10 * i);
            (void)append(r, &ev);
            cc_event(&ev, n0 + 1, s->steps[2 * i], s->steps[2 * i + 1], 1000 + 10 * i);
            EXPECT_OK(tc_audit_event_encode(&ev, enc[i], TC_AUDIT_EVENT_MAX, &lens[i]));
            ptr[i] = enc[i];
        }
        uint64_t first = 0;
        if (len > 0)
            EXPECT_OK(tc_registry_append_encoded(r, ptr, lens, len, &first));
        for (size_t i = 0; i < len; i++) {
            if (i == len / 2) {
                tc_registry_close(r);
                r = reg_open(w.db);
                if (r == NULL)
                    return;
            }
            struct tc_audit_event ev;
            cc_event(&ev, n0 + 2, s->steps[2 * i], s->steps[2 * i + 1], 1000 + 10 * i);
            (void)append(r, &ev);
        }
        for (unsigned v = 0; v < 3; v++)
            cc_check(r, s, n0 + v);
    }
    uint8_t hs[32], hr[32];
    EXPECT_OK(tc_registry_check(r, hs, hr));
    EXPECT_MEM(hs, 32, hr, 32);

    /* At an earlier time the fold gives the certificate current then: the
     * abandoned renewal's (not stored) until its revocation. */
    uint8_t eid[16];
    eid_of(CC_DEV0 + 3, eid);
    struct tc_registry_device d;
    EXPECT_OK(tc_registry_device_at(r, eid, 16, T0 + 1010, &d, NULL, 0, NULL));
    EXPECT(d.cert_serial[0] == 0x70 && !d.cert_stored && d.n_prev == 1 && d.prev[0].stored);
    EXPECT_EQ_U(d.state, TC_REG_PROVISIONED);
    EXPECT_OK(tc_registry_device_at(r, eid, 16, T0 + 1020, &d, NULL, 0, NULL));
    EXPECT(d.cert_serial[0] == cc_serial(CC_DEV0 + 3, 'A') && d.cert_stored && d.n_prev == 0);

    /* Rebuilt from the log: the same rows. */
    EXPECT_OK(tc_registry_rebuild(r));
    for (size_t k = 0; k < ns; k++)
        cc_check(r, &cc_stories[k], CC_DEV0 + 3 * (unsigned)k);
    tc_registry_close(r);

    /* A projection written before the device row had these columns is
     * rebuilt from the log when the registry opens. */
    sql(w.db, "ALTER TABLE reg_devices DROP COLUMN prev_certs;"
              "ALTER TABLE reg_devices DROP COLUMN cert_pubkey_sha256;"
              "ALTER TABLE reg_devices DROP COLUMN cert_revoked;"
              "DELETE FROM reg_device_events;");
    /* A reader does not rebuild: it refuses the stale projection. */
    EXPECT_ERR(tc_registry_open_reader(w.db, &r), TC_ERR_DB);
    r = reg_open(w.db);
    if (r == NULL)
        return;
    for (size_t k = 0; k < ns; k++)
        cc_check(r, &cc_stories[k], CC_DEV0 + 3 * (unsigned)k + 2);
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    tc_registry_close(r);

    /* A stored certificate list that does not parse is refused; one that
     * parses but is not the log's is found by the check. */
    static const struct {
        const char *sql;
        tc_err get, check;
    } bad[] = {
        {"UPDATE reg_devices SET prev_certs = X'01B0'", TC_ERR_TRUNCATED, TC_ERR_VERIFY},
        {"UPDATE reg_devices SET prev_certs = X'00'", TC_ERR_FORMAT, TC_ERR_VERIFY},
        {"UPDATE reg_devices SET prev_certs = X''", TC_ERR_FORMAT, TC_ERR_VERIFY},
        {"UPDATE reg_devices SET prev_certs = substr(prev_certs, 1, 66) || X'02'", TC_ERR_FORMAT,
         TC_ERR_VERIFY},
        {"UPDATE reg_devices SET prev_certs = prev_certs || prev_certs || prev_certs ||"
         " prev_certs || prev_certs",
         TC_ERR_FORMAT, TC_ERR_VERIFY},
        {"UPDATE reg_devices SET prev_certs = substr(prev_certs, 1, 66) || X'00'", TC_OK,
         TC_ERR_VERIFY},
        {"UPDATE reg_devices SET cert_revoked = 1", TC_ERR_FORMAT, TC_ERR_VERIFY},
        {"UPDATE reg_devices SET cert_pubkey_sha256 = X'00'", TC_ERR_FORMAT, TC_ERR_VERIFY},
        /* The device's own key hash is stored as NULL: a copy reads back as
         * the same row, but is not the canonical one. */
        {"UPDATE reg_devices SET cert_pubkey_sha256 = pubkey_sha256", TC_OK, TC_ERR_VERIFY},
        {"UPDATE reg_devices SET pubkey_sha256 = NULL", TC_ERR_FORMAT, TC_ERR_VERIFY},
    };
    /* Device of "renewal in flight" (remembers A), one append per event. */
    unsigned inflight = CC_DEV0 + 3 * 4;
    EXPECT(strcmp(cc_stories[4].steps, "kBiB") == 0);
    eid_of(inflight, eid);
    char hex[40];
    for (unsigned i = 0; i < 16; i++)
        (void)snprintf(hex + 2 * i, 3, "%02X", eid[i]);
    for (size_t i = 0; i < TC_ARRAY_LEN(bad); i++) {
        char q[512];
        (void)snprintf(q, sizeof q, "%s WHERE eid = X'%s'", bad[i].sql, hex);
        sql(w.db, q);
        r = reg_open(w.db);
        if (r == NULL)
            return;
        tc_err rc = tc_registry_device_get(r, eid, 16, &d);
        if (rc != bad[i].get)
            tc_test_fail_at(__FILE__, __LINE__, "%s: device_get returned %s", bad[i].sql,
                            tc_err_name(rc));
        EXPECT_ERR(tc_registry_check(r, NULL, NULL), bad[i].check);
        EXPECT_OK(tc_registry_rebuild(r));
        EXPECT_OK(tc_registry_check(r, NULL, NULL));
        cc_check(r, &cc_stories[4], inflight);
        tc_registry_close(r);
    }
    rmtree(w.dir);
}

/* ------------------------------------------------------------ row writes */

/* An OTA operation record of device n (op-queued, op-step, op-done). */
static void op_event(struct tc_audit_event *ev, enum tc_audit_event_type type, unsigned n,
                     uint64_t t, uint64_t op_id)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->time_ms = T0 + t;
    ev->fields = TC_AUDIT_HAS_EID;
    eid_of(n, ev->eid);
    ev->eid_len = 16;
    if (type == TC_AUDIT_OP_QUEUED) {
        ev->fields |= TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_OP_KIND;
        (void)snprintf(ev->actor, sizeof ev->actor, "op:test");
        ev->op_kind = 1;
        return;
    }
    ev->fields |= TC_AUDIT_HAS_OP_ID;
    ev->op_id = op_id;
    if (type == TC_AUDIT_OP_STEP) {
        ev->fields |= TC_AUDIT_HAS_STEP;
        ev->step = 1;
    }
}

static void stats_delta(struct tc_registry *r, struct tc_registry_stats *last,
                        struct tc_registry_stats *d)
{
    struct tc_registry_stats now;
    tc_registry_stats(r, &now);
    d->device_rows = now.device_rows - last->device_rows;
    d->device_counts = now.device_counts - last->device_counts;
    d->device_events = now.device_events - last->device_events;
    d->batch_rows = now.batch_rows - last->batch_rows;
    d->station_rows = now.station_rows - last->station_rows;
    *last = now;
}

/* The stored row is the fold of the device's events in the log. */
static void expect_row_is_fold(struct tc_registry *r, unsigned n, uint64_t events)
{
    uint8_t eid[16];
    eid_of(n, eid);
    struct tc_registry_device got, fold;
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &got));
    EXPECT_OK(tc_registry_device_at(r, eid, 16, UINT64_MAX, &fold, NULL, 0, NULL));
    EXPECT_MEM(&fold, sizeof fold, &got, sizeof got);
    EXPECT_EQ_U(got.events, events);
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
}

/*
 * A commit whose events change nothing of a device row but its event
 * counters (op-step, op-done, op-queued) writes those three columns, never
 * the whole row; the row is still the fold, with the row remembered from
 * the previous commit and with it read back from the database (after a
 * rebuild), and a commit that changes the row writes it whole.
 */
static void test_counter_only_rows(void)
{
    struct ws w;
    struct tc_registry *r = ws_new(&w) ? reg_open(w.db) : NULL;
    if (r == NULL)
        return;
    static const uint8_t sha[32] = {0x21, 0x22, 0x23};
    provision(r, 7, "B-ops", 0, sha);
    struct tc_registry_stats last, d;
    tc_registry_stats(r, &last);
    EXPECT_EQ_U(last.device_rows, 8);
    EXPECT_EQ_U(last.device_counts, 0);
    EXPECT_EQ_U(last.device_events, 8);
    EXPECT_EQ_U(last.batch_rows, 8);
    EXPECT_EQ_U(last.station_rows, 8);

    struct tc_audit_event ev;
    op_event(&ev, TC_AUDIT_OP_QUEUED, 7, 1000, 0);
    uint64_t op = append(r, &ev);
    stats_delta(r, &last, &d);
    EXPECT_EQ_U(d.device_rows, 0);
    EXPECT_EQ_U(d.device_counts, 1);
    EXPECT_EQ_U(d.device_events, 1);
    expect_row_is_fold(r, 7, 9);

    /* An op-step-only commit, the row remembered from the last commit. */
    op_event(&ev, TC_AUDIT_OP_STEP, 7, 1010, op);
    (void)append(r, &ev);
    stats_delta(r, &last, &d);
    EXPECT_EQ_U(d.device_rows, 0);
    EXPECT_EQ_U(d.device_counts, 1);
    EXPECT_EQ_U(d.device_events, 1);
    EXPECT_EQ_U(d.batch_rows, 0);
    EXPECT_EQ_U(d.station_rows, 0);
    expect_row_is_fold(r, 7, 10);

    /* After a rebuild the remembered rows are not used: read back, the
     * row still takes the counters-only write. */
    EXPECT_OK(tc_registry_rebuild(r));
    op_event(&ev, TC_AUDIT_OP_STEP, 7, 1020, op);
    ev.step = 2;
    (void)append(r, &ev);
    stats_delta(r, &last, &d);
    EXPECT_EQ_U(d.device_rows, 0);
    EXPECT_EQ_U(d.device_counts, 1);
    expect_row_is_fold(r, 7, 11);

    /* keys rotated and op done in one commit: the row changes (KVN, KCVs),
     * written whole once. */
    uint8_t enc[2][TC_AUDIT_EVENT_MAX];
    size_t lens[2];
    const uint8_t *ptr[2] = {enc[0], enc[1]};
    struct tc_audit_event two[2];
    rotated_event(&two[0], 7, "B-ops", 1030, 0x31, 0xB0, 0x30);
    two[0].fields |= TC_AUDIT_HAS_OP_ID;
    two[0].op_id = op;
    op_event(&two[1], TC_AUDIT_OP_DONE, 7, 1030, op);
    for (size_t i = 0; i < 2; i++)
        EXPECT_OK(tc_audit_event_encode(&two[i], enc[i], sizeof enc[i], &lens[i]));
    uint64_t first = 0;
    EXPECT_OK(tc_registry_append_encoded(r, ptr, lens, 2, &first));
    stats_delta(r, &last, &d);
    EXPECT_EQ_U(d.device_rows, 1);
    EXPECT_EQ_U(d.device_counts, 0);
    EXPECT_EQ_U(d.device_events, 2);
    EXPECT_EQ_U(d.batch_rows, 1);
    expect_row_is_fold(r, 7, 13);
    uint8_t eid[16];
    eid_of(7, eid);
    struct tc_registry_device dev;
    EXPECT_OK(tc_registry_device_get(r, eid, 16, &dev));
    EXPECT_EQ_U(dev.kvn, 0x31);
    EXPECT_EQ_U(dev.state, TC_REG_PROVISIONED);

    /* An operation record naming the device's batch: the batch counters
     * are upserted, the device row only has its counters written. */
    op_event(&ev, TC_AUDIT_OP_STEP, 7, 1040, op);
    ev.fields |= TC_AUDIT_HAS_BATCH;
    (void)snprintf(ev.batch, sizeof ev.batch, "B-ops");
    (void)append(r, &ev);
    stats_delta(r, &last, &d);
    EXPECT_EQ_U(d.device_rows, 0);
    EXPECT_EQ_U(d.device_counts, 1);
    EXPECT_EQ_U(d.batch_rows, 1);
    expect_row_is_fold(r, 7, 14);

    /* A remembered row deleted behind the registry's back: the counters-only
     * write finds no row and the append fails (nothing committed), rather
     * than projecting onto a row that is not there. */
    sql(w.db, "DELETE FROM reg_devices");
    struct tc_registry_stats before;
    tc_registry_stats(r, &before);
    op_event(&ev, TC_AUDIT_OP_STEP, 7, 1050, op);
    uint64_t idx = 0;
    EXPECT_ERR(tc_registry_append(r, &ev, &idx), TC_ERR_INTERNAL);
    EXPECT_ERR(tc_registry_check(r, NULL, NULL), TC_ERR_VERIFY);
    EXPECT_OK(tc_registry_rebuild(r));
    expect_row_is_fold(r, 7, 14);
    /* Read back after the failure, the row takes the counters-only write again. */
    tc_registry_stats(r, &last);
    (void)append(r, &ev);
    stats_delta(r, &last, &d);
    EXPECT_EQ_U(d.device_rows, 0);
    EXPECT_EQ_U(d.device_counts, 1);
    expect_row_is_fold(r, 7, 15);
    tc_registry_close(r);
    rmtree(w.dir);
}

/* ------------------------------------------------------------ snapshots */

/* A fold that every event changes: count, sum of indices, a running hash of
 * types and times. */
struct toy {
    uint64_t n, sum, hash;
};

static void toy_init(void *state)
{
    memset(state, 0, sizeof(struct toy));
}

static tc_err toy_fold(void *state, uint64_t index, const struct tc_audit_event *ev)
{
    struct toy *t = state;
    t->n++;
    t->sum += index;
    t->hash = t->hash * 1099511628211ull + (uint64_t)ev->type * 65537u + ev->time_ms;
    return TC_OK;
}

static tc_err toy_encode(const void *state, uint8_t *out, size_t out_size, size_t *out_len)
{
    TC_ENSURE(out_size >= sizeof(struct toy), TC_ERR_SPACE);
    memcpy(out, state, sizeof(struct toy));
    *out_len = sizeof(struct toy);
    return TC_OK;
}

static tc_err toy_decode(const uint8_t *in, size_t len, void *state)
{
    TC_ENSURE(len == sizeof(struct toy), TC_ERR_FORMAT);
    memcpy(state, in, len);
    return TC_OK;
}

static const struct tc_registry_snap_kind toy_kind = {
    1, sizeof(struct toy), toy_init, toy_decode, toy_fold, toy_encode,
};
static const struct tc_registry_snap_kind toy_kind2 = {
    2, sizeof(struct toy), toy_init, toy_decode, toy_fold, toy_encode,
};

static tc_err toy_hist(void *arg, uint64_t index, const struct tc_audit_event *ev,
                       const uint8_t *event, size_t len)
{
    (void)event;
    (void)len;
    return toy_fold(arg, index, ev);
}

/* The snapshot state equals the fold of the device's whole history; returns
 * how many events the snapshot read had to fold. */
static size_t expect_snap(struct tc_registry *r, const struct tc_registry_snap_kind *k, unsigned n)
{
    uint8_t eid[16];
    eid_of(n, eid);
    struct toy got, want;
    size_t folded = SIZE_MAX;
    toy_init(&want);
    EXPECT_OK(tc_registry_device_history(r, eid, 16, toy_hist, &want));
    EXPECT_OK(tc_registry_device_snap(r, k, eid, 16, &got, &folded));
    EXPECT_MEM(&got, sizeof got, &want, sizeof want);
    return folded;
}

/*
 * A registered fold is kept as a per-device snapshot: after every append of
 * a scripted history (one event per append, then 40 in one) the snapshot
 * plus the events after it equals the fold of the whole history, with at
 * most TC_REGISTRY_SNAP_EVERY events folded past it; appends by a registry
 * without the kind leave it behind but never wrong; check refolds it (a
 * damaged one is refused), rebuild drops it, another version ignores it.
 */
static void test_device_snapshots(void)
{
    struct ws w;
    struct tc_registry *r = ws_new(&w) ? reg_open(w.db) : NULL;
    if (r == NULL)
        return;
    uint8_t eid[16];
    eid_of(9, eid);
    struct toy st;
    EXPECT_ERR(tc_registry_device_snap(r, &toy_kind, eid, 16, &st, NULL), TC_ERR_NOT_FOUND);
    EXPECT_OK(tc_registry_set_snap_kind(r, &toy_kind));
    EXPECT_OK(tc_registry_set_snap_kind(r, &toy_kind));
    EXPECT_ERR(tc_registry_set_snap_kind(r, &toy_kind2), TC_ERR_STATE);

    static const uint8_t sha[32] = {0x31};
    struct tc_audit_event line[8], ev;
    line_events(9, "B-snap", 0, sha, line);
    uint64_t events = 0;
    for (unsigned i = 0; i < 8; i++) {
        (void)append(r, &line[i]);
        events++;
        EXPECT_EQ_U(expect_snap(r, &toy_kind, 9), events);
    }
    uint64_t op = 0;
    for (unsigned i = 0; i < 40; i++) {
        op_event(&ev, i % 4 == 0 ? TC_AUDIT_OP_QUEUED : TC_AUDIT_OP_STEP, 9, 100 + i, op);
        uint64_t idx = append(r, &ev);
        if (i % 4 == 0)
            op = idx;
        events++;
        size_t folded = expect_snap(r, &toy_kind, 9);
        EXPECT(folded == events % TC_REGISTRY_SNAP_EVERY);
        /* Another device's events do not touch this one's snapshot. */
        if (i % 5 == 0)
            provision(r, 10 + i, "B-snap", 200 + i, sha);
    }
    EXPECT_OK(tc_registry_check(r, NULL, NULL));

    /* 40 events in one append: refreshed once, at its end. */
    static uint8_t enc[40][TC_AUDIT_EVENT_MAX];
    size_t lens[40];
    const uint8_t *ptr[40];
    for (unsigned i = 0; i < 40; i++) {
        op_event(&ev, TC_AUDIT_OP_STEP, 9, 1000 + i, op);
        EXPECT_OK(tc_audit_event_encode(&ev, enc[i], sizeof enc[i], &lens[i]));
        ptr[i] = enc[i];
    }
    EXPECT_OK(tc_registry_append_encoded(r, ptr, lens, 40, NULL));
    events += 40;
    EXPECT_EQ_U(expect_snap(r, &toy_kind, 9), 0);
    EXPECT_OK(tc_registry_check(r, NULL, NULL));

    /* Another version of the kind does not use the stored snapshot. */
    EXPECT_EQ_U(expect_snap(r, &toy_kind2, 9), events);

    /* A registry without the kind appends 20 events: the snapshot stays
     * where it was, the read folds the 20. */
    tc_registry_close(r);
    r = reg_open(w.db);
    if (r == NULL)
        return;
    for (unsigned i = 0; i < 20; i++) {
        op_event(&ev, TC_AUDIT_OP_STEP, 9, 2000 + i, op);
        (void)append(r, &ev);
        events++;
    }
    EXPECT_EQ_U(expect_snap(r, &toy_kind, 9), 20);
    EXPECT_OK(tc_registry_set_snap_kind(r, &toy_kind));
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    /* The next crossing folds the gap into it. */
    while (events % TC_REGISTRY_SNAP_EVERY != 0) {
        op_event(&ev, TC_AUDIT_OP_STEP, 9, 3000 + events, op);
        (void)append(r, &ev);
        events++;
    }
    EXPECT_EQ_U(expect_snap(r, &toy_kind, 9), 0);

    /* A damaged snapshot is found by the check; a rebuild drops it. */
    tc_registry_close(r);
    sql(w.db, "UPDATE reg_device_snaps SET state = zeroblob(24)");
    r = reg_open(w.db);
    if (r == NULL)
        return;
    EXPECT_OK(tc_registry_check(r, NULL, NULL)); /* not registered: not checked */
    EXPECT_OK(tc_registry_set_snap_kind(r, &toy_kind));
    EXPECT_ERR(tc_registry_check(r, NULL, NULL), TC_ERR_VERIFY);
    /* One that does not decode is not used: the read folds every event. */
    sql(w.db, "UPDATE reg_device_snaps SET state = X'00'");
    EXPECT_EQ_U(expect_snap(r, &toy_kind, 9), events);
    EXPECT_ERR(tc_registry_check(r, NULL, NULL), TC_ERR_VERIFY);
    EXPECT_OK(tc_registry_rebuild(r));
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    EXPECT_EQ_U(expect_snap(r, &toy_kind, 9), events);
    tc_registry_close(r);

    /* A database without the snapshot table (written before it existed),
     * opened for reading only: folded from the first event; the check has
     * no snapshot to refold. */
    sql(w.db, "DROP TABLE reg_device_snaps");
    r = NULL;
    EXPECT_OK(tc_registry_open_reader(w.db, &r));
    if (r == NULL)
        return;
    EXPECT_OK(tc_registry_set_snap_kind(r, &toy_kind));
    EXPECT_EQ_U(expect_snap(r, &toy_kind, 9), events);
    EXPECT_OK(tc_registry_check(r, NULL, NULL));
    tc_registry_close(r);
    rmtree(w.dir);
}

static void test_setup(void)
{
    char vk[TC_NOTE_VKEY_MAX + 1];
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &signer));
    EXPECT_OK(tc_note_verifier_key(&signer, ORIGIN, vk, sizeof vk));
    EXPECT_OK(tc_note_verifier_parse(vk, &verifier));
}

static void test_teardown(void)
{
    tc_signer_soft_free(&signer);
}

static const struct tc_test_case cases[] = {
    {"setup", test_setup},
    {"time: RFC 3339 vectors", test_time_vectors},
    {"time: rejections", test_time_rejections},
    {"state names", test_state_names},
    {"the line, and state at any time", test_line_and_state_at},
    {"reject, revoke, lock, rotate, batch revoke, lists", test_reject_revoke_lock_list},
    {"rebuild byte for byte", test_rebuild_byte_for_byte},
    {"concurrent appends", test_concurrent_appends},
    {"each append projected as one batch", test_batched_projection},
    {"a batch rolled back after its projection", test_batch_rolled_back_after_projection},
    {"certificates stored by the append that names them", test_append_certs},
    {"tampering in the database is detected", test_tampering},
    {"reader refuses appends; bad origins", test_reader_refuses_appends},
    {"current certificate after every renewal outcome", test_current_certificate},
    {"a commit that changes only a row's counters writes only them", test_counter_only_rows},
    {"device snapshots equal the fold after every append", test_device_snapshots},
    {"teardown", test_teardown},
};

TC_TEST_MAIN("registry", cases)
