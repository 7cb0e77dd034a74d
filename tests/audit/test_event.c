#include "harness.h"

#include <stdlib.h>

#include <trustchain/audit.h>

static tc_err err_by_name(const char *name)
{
    if (strcmp(name, "format") == 0)
        return TC_ERR_FORMAT;
    if (strcmp(name, "truncated") == 0)
        return TC_ERR_TRUNCATED;
    if (strcmp(name, "unsupported") == 0)
        return TC_ERR_UNSUPPORTED;
    return TC_ERR_COUNT_;
}

/* Every published encoding decodes and re-encodes to the same bytes. */
static void test_vectors_round_trip(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/events.txt"))
        return;
    int n = 0;
    while (tc_vec_next(&v)) {
        size_t len = 0;
        uint8_t *in = tc_vec_hex(&v, "EVENT", &len);
        struct tc_audit_event ev;
        EXPECT_OK(tc_audit_event_decode(in, len, &ev));
        uint8_t out[TC_AUDIT_EVENT_MAX];
        size_t out_len = 0;
        EXPECT_OK(tc_audit_event_encode(&ev, out, sizeof out, &out_len));
        EXPECT_MEM(out, out_len, in, len);
        free(in);
        n++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 6);
}

static void test_vectors_rejected(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/events-bad.txt"))
        return;
    int n = 0;
    while (tc_vec_next(&v)) {
        size_t len = 0;
        uint8_t *in = tc_vec_hex(&v, "EVENT", &len);
        tc_err want = err_by_name(tc_vec_get(&v, "ERROR"));
        EXPECT(want != TC_ERR_COUNT_);
        struct tc_audit_event ev;
        tc_err rc = tc_audit_event_decode(in, len, &ev);
        if (rc != want)
            tc_test_fail_at(__FILE__, __LINE__, "record at line %d: got '%s', expected '%s'",
                            v.record_line, tc_err_name(rc), tc_err_name(want));
        free(in);
        n++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 32);
}

static void fill_injected(struct tc_audit_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = TC_AUDIT_KEYS_INJECTED;
    ev->time_ms = 1764201600000ull;
    ev->fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR |
                 TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV | TC_AUDIT_HAS_PREV_KVN;
    for (uint8_t i = 0; i < 16; i++)
        ev->eid[i] = (uint8_t)(i + 1);
    ev->eid_len = 16;
    memcpy(ev->batch, "B2026-001", 10);
    memcpy(ev->station, "line1-st3", 10);
    memcpy(ev->actor, "op:alice", 9);
    ev->kvn = 0x30;
    ev->prev_kvn = 0x01;
    const uint8_t kcv[9] = {0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29};
    memcpy(ev->kcv, kcv, 9);
}

/* The encoder produces the documented bytes from a struct (first vector). */
static void test_encode_exact(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/events.txt"))
        return;
    EXPECT(tc_vec_next(&v));
    size_t len = 0;
    uint8_t *want = tc_vec_hex(&v, "EVENT", &len);
    struct tc_audit_event ev;
    fill_injected(&ev);
    uint8_t out[TC_AUDIT_EVENT_MAX];
    size_t out_len = 0;
    EXPECT_OK(tc_audit_event_encode(&ev, out, sizeof out, &out_len));
    EXPECT_MEM(out, out_len, want, len);
    struct tc_audit_event back;
    EXPECT_OK(tc_audit_event_decode(out, out_len, &back));
    EXPECT_EQ_U(back.fields, ev.fields);
    EXPECT_EQ_U(back.time_ms, ev.time_ms);
    EXPECT_STR(back.actor, "op:alice");
    EXPECT_EQ_U(back.kvn, 0x30);
    EXPECT_EQ_U(back.prev_kvn, 0x01);
    EXPECT_MEM(back.kcv, 9, ev.kcv, 9);
    EXPECT_MEM(back.eid, back.eid_len, ev.eid, ev.eid_len);
    free(want);
    tc_vec_close(&v);
}

static void test_encode_rejects_invalid(void)
{
    struct tc_audit_event ev;
    uint8_t out[TC_AUDIT_EVENT_MAX];
    size_t n = 0;

    fill_injected(&ev);
    ev.fields &= ~TC_AUDIT_HAS_KCV;
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    ev.fields |= TC_AUDIT_HAS_LIFECYCLE; /* not allowed in keys-injected */
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    ev.kvn = 0x80;
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    ev.prev_kvn = 0;
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    memcpy(ev.actor, "op alice", 9);
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    ev.batch[0] = '\0';
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    memset(ev.station, 'x', sizeof ev.station); /* 65 characters, no NUL */
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    ev.eid_len = 0;
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    ev.type = (enum tc_audit_event_type)13;
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);

    fill_injected(&ev);
    EXPECT_ERR(tc_audit_event_encode(&ev, out, 20, &n), TC_ERR_SPACE);

    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_CERT_REVOKED;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR |
                TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON;
    ev.eid_len = 1;
    memcpy(ev.batch, "b", 2);
    memcpy(ev.actor, "a", 2);
    ev.cert_serial_len = 2;
    ev.cert_serial[0] = 0x00;
    ev.cert_serial[1] = 0x01; /* redundant leading zero */
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);
    ev.cert_serial[1] = 0x81; /* needed leading zero */
    EXPECT_OK(tc_audit_event_encode(&ev, out, sizeof out, &n));
}

/* Every event type has a schema, and a minimal event of each round-trips. */
static void test_every_type(void)
{
    for (int t = 1; t <= TC_AUDIT_EVENT_TYPE_MAX_; t++) {
        uint32_t req = 0, allowed = 0;
        EXPECT_OK(tc_audit_event_schema((enum tc_audit_event_type)t, &req, &allowed));
        EXPECT((req & ~allowed) == 0);
        EXPECT(strcmp(tc_audit_event_type_name((enum tc_audit_event_type)t), "unknown") != 0);
        struct tc_audit_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = (enum tc_audit_event_type)t;
        ev.time_ms = (uint64_t)t << 40;
        ev.fields = allowed;
        ev.eid_len = TC_AUDIT_EID_MAX;
        memset(ev.eid, 0xEE, sizeof ev.eid);
        memcpy(ev.batch, "batch", 6);
        memcpy(ev.station, "station", 8);
        memcpy(ev.actor, "actor", 6);
        ev.kvn = 0x7F;
        ev.prev_kvn = 0x01;
        ev.cert_serial_len = 20;
        memset(ev.cert_serial, 0x7F, 20);
        ev.reason = 0xFFFF;
        uint8_t out[TC_AUDIT_EVENT_MAX], again[TC_AUDIT_EVENT_MAX];
        size_t n = 0, m = 0;
        EXPECT_OK(tc_audit_event_encode(&ev, out, sizeof out, &n));
        struct tc_audit_event back;
        EXPECT_OK(tc_audit_event_decode(out, n, &back));
        EXPECT_EQ_U(back.fields, allowed);
        EXPECT_OK(tc_audit_event_encode(&back, again, sizeof again, &m));
        EXPECT_MEM(again, m, out, n);
        /* Dropping any required field breaks the encoding. */
        for (uint32_t bit = 1; bit != 0 && bit <= TC_AUDIT_HAS_STEP; bit <<= 1) {
            if (!(req & bit))
                continue;
            ev.fields = allowed & ~bit;
            EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &n), TC_ERR_ARG);
        }
    }
    uint32_t r = 0, a = 0;
    EXPECT_ERR(tc_audit_event_schema((enum tc_audit_event_type)0, &r, &a), TC_ERR_ARG);
    EXPECT_STR(tc_audit_event_type_name((enum tc_audit_event_type)99), "unknown");
}

/* Every single-byte truncation of a valid event is rejected. */
static void test_every_prefix_rejected(void)
{
    struct tc_audit_event ev;
    fill_injected(&ev);
    ev.fields &= ~TC_AUDIT_HAS_PREV_KVN; /* the last field is then required */
    uint8_t out[TC_AUDIT_EVENT_MAX];
    size_t n = 0;
    EXPECT_OK(tc_audit_event_encode(&ev, out, sizeof out, &n));
    for (size_t len = 0; len < n; len++) {
        struct tc_audit_event back;
        EXPECT(tc_audit_event_decode(out, len, &back) != TC_OK);
    }
}

static const struct tc_test_case cases[] = {
    {"vectors round trip", test_vectors_round_trip},
    {"malformed vectors rejected", test_vectors_rejected},
    {"encoder gives the documented bytes", test_encode_exact},
    {"encoder refuses invalid events", test_encode_rejects_invalid},
    {"every event type", test_every_type},
    {"every truncation rejected", test_every_prefix_rejected},
};

TC_TEST_MAIN("audit-event", cases)
