/*
 * The trust's cache of verified certificates (src/ota/trust.c) and many
 * threads verifying on one trust.
 *
 * Cache: a hit gives the full check's TC_OK and device info; a certificate
 * revoked in a new trust is refused there although the old trust kept it;
 * a hit at a time outside the verdict's window (past the batch CA's
 * notAfter, past the CRLs' nextUpdate, before thisUpdate) is refused with
 * the full check's reason; another DER (same subject, or the same TBS with
 * another signature) misses; the bound holds with more certificates than
 * entries. Threads: 4 threads verify good, revoked-device, revoked-batch,
 * unknown-batch and expired certificates concurrently on one trust with
 * the cache and on one without, each thread parsing its own X509 (as
 * libssl does per connection), every verdict and reason checked each time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <trustchain/crypto.h>
#include <trustchain/ota.h>
#include <trustchain/pki.h>

#include "harness.h"
#include "ota_fixture.h"

#define DAY      INT64_C(86400)
#define PREFIX   "8904903277"
#define PREFIX_B "8904903288"

/* P: root and batch A; B: a second batch under P's root; Q: another root
 * and batch (same EID prefix), never trusted. */
static struct ota_fx_pki P, Q;
static struct {
    struct tc_signer key;
    struct tc_buf cert;
    struct tc_pki_issuer *iss;
} B;
static int64_t now0; /* when the fixture was built */

/* A device certificate for EID number i by `iss`. */
static bool issue(struct tc_pki_issuer *iss, int64_t prod, const char *prefix, unsigned i,
                  struct tc_buf *der)
{
    bool ok = ota_fx_device_cert(iss, prod, prefix, i, der, NULL);
    EXPECT(ok);
    return ok;
}

static bool fixture(void);

/* The fixture and batch A's device number i (produced a day after t0). */
static bool device_a(unsigned i, struct tc_buf *der)
{
    return fixture() && issue(P.batch_iss, P.t0 + DAY, PREFIX, i, der);
}

static bool fixture(void)
{
    static int state;
    if (state != 0)
        return state == 1;
    now0 = (int64_t)time(NULL);
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    bool ok = ota_fx_pki_setup(&P, "B-C-A", PREFIX) && ota_fx_pki_setup(&Q, "B-C-Q", PREFIX);
    struct tc_pki_batch_params bp = {.batch_id = "B-C-B",
                                     .eid_prefix = PREFIX_B,
                                     .manufacturer = "Acme Devices",
                                     .not_before = P.t0,
                                     .not_after = P.t0 + 3650 * DAY};
    tc_buf_init_heap(&B.cert, 1u << 16);
    ok = ok && tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &B.key) == TC_OK &&
         B.key.public_key(B.key.ctx, spki, sizeof spki, &sl) == TC_OK &&
         tc_pki_batch_ca_create(P.root_iss, spki, sl, &bp, &B.cert) == TC_OK &&
         tc_pki_issuer_new(&B.key, B.cert.data, B.cert.len, &B.iss) == TC_OK;
    state = ok ? 1 : 2;
    EXPECT(ok);
    return ok;
}

/* Batch A's CA expires here (ota_fx_pki_setup: t0 + 3650 days). */
static int64_t a_expiry(void)
{
    return P.t0 + 3650 * DAY;
}

struct trust_opts {
    const struct tc_buf *revoked; /* in batch A's CRL, or NULL */
    bool revoke_b;                /* batch B's CA in the root CRL */
    int64_t next_update;          /* both CRLs; 0: now + 30 days */
    size_t cache;                 /* entries; 0: no cache */
};

/* A trust of P's root with batches A and B; CRLs from now - 1 day. */
static struct tc_ota_trust *trust(const struct trust_opts *o)
{
    struct tc_ota_trust *t = NULL;
    struct tc_buf rcrl, acrl, bcrl;
    struct tc_pki_revoked ra, rb;
    int64_t next = o->next_update != 0 ? o->next_update : now0 + 30 * DAY;
    tc_buf_init_heap(&rcrl, 1u << 16);
    tc_buf_init_heap(&acrl, 1u << 16);
    tc_buf_init_heap(&bcrl, 1u << 16);
    bool ok = (o->revoked == NULL ||
               ota_fx_crl_entry(o->revoked->data, o->revoked->len, P.t0 + DAY, &ra)) &&
              (!o->revoke_b || ota_fx_crl_entry(B.cert.data, B.cert.len, P.t0 + DAY, &rb));
    EXPECT(ok);
    EXPECT_OK(tc_pki_crl_create(P.root_iss, 1, now0 - DAY, next, o->revoke_b ? &rb : NULL,
                                o->revoke_b ? 1 : 0, &rcrl));
    EXPECT_OK(tc_pki_crl_create(P.batch_iss, 1, now0 - DAY, next, o->revoked ? &ra : NULL,
                                o->revoked ? 1 : 0, &acrl));
    EXPECT_OK(tc_pki_crl_create(B.iss, 1, now0 - DAY, next, NULL, 0, &bcrl));
    EXPECT_OK(tc_ota_trust_new(P.root.data, P.root.len, rcrl.data, rcrl.len, &t));
    if (t != NULL) {
        EXPECT_OK(tc_ota_trust_add_batch(t, P.batch.data, P.batch.len, acrl.data, acrl.len));
        EXPECT_OK(tc_ota_trust_add_batch(t, B.cert.data, B.cert.len, bcrl.data, bcrl.len));
        if (o->cache != TC_OTA_TRUST_CACHE_DEFAULT)
            EXPECT_OK(tc_ota_trust_set_cache(t, o->cache));
    }
    tc_buf_free(&rcrl);
    tc_buf_free(&acrl);
    tc_buf_free(&bcrl);
    return t;
}

static X509 *x509_of(const struct tc_buf *der)
{
    const uint8_t *q = der->data;
    X509 *x = d2i_X509(NULL, &q, (long)der->len);
    EXPECT(x != NULL);
    return x;
}

static struct tc_ota_trust_cache_stats stats(const struct tc_ota_trust *t)
{
    struct tc_ota_trust_cache_stats st;
    tc_ota_trust_cache_stats(t, &st);
    return st;
}

/* verify_x509 on a fresh parse of der: rc, reason and info. */
static tc_err check(const struct tc_ota_trust *t, const struct tc_buf *der, int64_t at,
                    struct tc_pki_device_info *info, char reason[TC_OTA_REASON_MAX])
{
    X509 *x = x509_of(der);
    if (x == NULL)
        return TC_ERR_INTERNAL;
    memset(info, 0, sizeof *info);
    reason[0] = 'x';
    reason[1] = '\0';
    tc_err rc = tc_ota_trust_verify_x509(t, x, at, info, reason, TC_OTA_REASON_MAX);
    X509_free(x);
    return rc;
}

static void test_hit_same_info(void)
{
    struct tc_buf a1;
    char r[TC_OTA_REASON_MAX];
    struct tc_pki_device_info full, got;
    if (!device_a(1, &a1))
        return;
    struct tc_ota_trust *t = trust(&(struct trust_opts){.cache = TC_OTA_TRUST_CACHE_DEFAULT});
    struct tc_ota_trust *nc = trust(&(struct trust_opts){.cache = 0});
    if (t == NULL || nc == NULL)
        goto out;
    EXPECT_EQ_U(stats(t).capacity, TC_OTA_TRUST_CACHE_DEFAULT);
    EXPECT_EQ_U(stats(nc).capacity, 0);
    EXPECT_OK(check(nc, &a1, 0, &full, r));
    EXPECT_STR(r, "");
    EXPECT_EQ_U(strlen(full.eid), TC_PKI_EID_DIGITS);
    /* First: the full check, kept. */
    EXPECT_OK(check(t, &a1, 0, &got, r));
    EXPECT_STR(r, "");
    EXPECT(memcmp(&got, &full, sizeof got) == 0);
    struct tc_ota_trust_cache_stats st = stats(t);
    EXPECT(st.hits == 0 && st.misses == 1 && st.inserts == 1 && st.entries == 1);
    /* Again, on another parse of the same certificate: a hit, the same
     * info and an empty reason. */
    EXPECT_OK(check(t, &a1, 0, &got, r));
    EXPECT_STR(r, "");
    EXPECT(memcmp(&got, &full, sizeof got) == 0);
    /* The DER entry point shares the key (SHA-256 of the same DER). */
    memset(&got, 0, sizeof got);
    EXPECT_OK(tc_ota_trust_verify(t, a1.data, a1.len, 0, &got, r, sizeof r));
    EXPECT(memcmp(&got, &full, sizeof got) == 0);
    /* info is optional on a hit too. */
    EXPECT_OK(tc_ota_trust_verify(t, a1.data, a1.len, 0, NULL, r, sizeof r));
    st = stats(t);
    EXPECT(st.hits == 3 && st.misses == 1 && st.inserts == 1 && st.entries == 1 && st.stale == 0);
    /* The trust without a cache counts nothing. */
    st = stats(nc);
    EXPECT(st.hits == 0 && st.misses == 0 && st.inserts == 0 && st.entries == 0);
out:
    tc_ota_trust_free(t);
    tc_ota_trust_free(nc);
    tc_buf_free(&a1);
}

static void test_new_trust_revokes(void)
{
    struct tc_buf a2;
    char r[TC_OTA_REASON_MAX];
    struct tc_pki_device_info got;
    if (!device_a(2, &a2))
        return;
    struct tc_ota_trust *old = trust(&(struct trust_opts){.cache = TC_OTA_TRUST_CACHE_DEFAULT});
    struct tc_ota_trust *cur =
        trust(&(struct trust_opts){.revoked = &a2, .cache = TC_OTA_TRUST_CACHE_DEFAULT});
    if (old == NULL || cur == NULL)
        goto out;
    EXPECT_OK(check(old, &a2, 0, &got, r));
    EXPECT_OK(check(old, &a2, 0, &got, r));
    EXPECT_EQ_U(stats(old).hits, 1);
    /* The CRL that revokes it came with a new trust: refused there, every
     * time (refusals are not kept). */
    for (int i = 0; i < 2; i++) {
        EXPECT_ERR(check(cur, &a2, 0, &got, r), TC_ERR_VERIFY);
        EXPECT_STR(r, "device certificate: certificate revoked");
    }
    struct tc_ota_trust_cache_stats st = stats(cur);
    EXPECT(st.hits == 0 && st.misses == 2 && st.inserts == 0 && st.entries == 0);
out:
    tc_ota_trust_free(old);
    tc_ota_trust_free(cur);
    tc_buf_free(&a2);
}

/* The cached trust t and the uncached nc at `at`: both refuse with the
 * same reason, want; t counts one more stale lookup. */
static void refused_at(const struct tc_ota_trust *t, const struct tc_ota_trust *nc,
                       const struct tc_buf *der, int64_t at, const char *want)
{
    char r1[TC_OTA_REASON_MAX], r2[TC_OTA_REASON_MAX];
    struct tc_pki_device_info i1, i2;
    uint64_t stale = stats(t).stale;
    EXPECT_ERR(check(nc, der, at, &i1, r1), TC_ERR_VERIFY);
    EXPECT_ERR(check(t, der, at, &i2, r2), TC_ERR_VERIFY);
    EXPECT_STR(r1, want);
    EXPECT_STR(r2, r1);
    EXPECT_EQ_U(stats(t).stale, stale + 1);
}

static void test_time_on_hit(void)
{
    struct tc_buf a3;
    if (!device_a(3, &a3))
        return;
    /* CRLs valid past batch A's CA: its notAfter ends the window. */
    int64_t far = a_expiry() + 365 * DAY;
    char r[TC_OTA_REASON_MAX];
    struct tc_pki_device_info got;
    struct tc_ota_trust *t =
        trust(&(struct trust_opts){.next_update = far, .cache = TC_OTA_TRUST_CACHE_DEFAULT});
    struct tc_ota_trust *nc = trust(&(struct trust_opts){.next_update = far, .cache = 0});
    struct tc_ota_trust *t30 = trust(&(struct trust_opts){.cache = TC_OTA_TRUST_CACHE_DEFAULT});
    struct tc_ota_trust *nc30 = trust(&(struct trust_opts){.cache = 0});
    if (t == NULL || nc == NULL || t30 == NULL || nc30 == NULL)
        goto out;
    EXPECT_OK(check(t, &a3, 0, &got, r));
    EXPECT_OK(check(t, &a3, a_expiry() - 1, &got, r));
    EXPECT_EQ_U(stats(t).hits, 1);
    /* At the batch CA's notAfter and past it: the full check's refusal. */
    refused_at(t, nc, &a3, a_expiry(), "batch CA certificate: certificate has expired");
    refused_at(t, nc, &a3, a_expiry() + DAY, "batch CA certificate: certificate has expired");
    /* Before the CRLs' thisUpdate (OpenSSL checks revocation first). */
    refused_at(t, nc, &a3, now0 - 2 * DAY, "device certificate: CRL is not yet valid");
    /* The entry stays for the times it holds. */
    EXPECT_OK(check(t, &a3, now0 + DAY, &got, r));
    EXPECT_EQ_U(stats(t).hits, 2);
    /* CRLs with nextUpdate in 30 days: a hit 31 days on is refused as the
     * full check refuses it, by the CRL's age. */
    EXPECT_OK(check(t30, &a3, 0, &got, r));
    EXPECT_OK(check(t30, &a3, now0 + 29 * DAY, &got, r));
    EXPECT_EQ_U(stats(t30).hits, 1);
    refused_at(t30, nc30, &a3, now0 + 31 * DAY, "device certificate: CRL has expired");
    refused_at(t30, nc30, &a3, now0 + 30 * DAY, "device certificate: CRL has expired");
out:
    tc_ota_trust_free(t);
    tc_ota_trust_free(nc);
    tc_ota_trust_free(t30);
    tc_ota_trust_free(nc30);
    tc_buf_free(&a3);
}

static void test_other_der_misses(void)
{
    struct tc_buf a, b;
    char r[TC_OTA_REASON_MAX];
    struct tc_pki_device_info ia, ib;
    if (!fixture())
        return;
    /* Two certificates of the same device (same EID, same subject), two
     * keys. */
    bool ok = issue(P.batch_iss, P.t0 + DAY, PREFIX, 4, &a);
    ok = issue(P.batch_iss, P.t0 + DAY, PREFIX, 4, &b) && ok;
    struct tc_ota_trust *t = trust(&(struct trust_opts){.cache = TC_OTA_TRUST_CACHE_DEFAULT});
    if (!ok || t == NULL)
        goto out;
    EXPECT_OK(check(t, &a, 0, &ia, r));
    EXPECT_OK(check(t, &b, 0, &ib, r));
    struct tc_ota_trust_cache_stats st = stats(t);
    EXPECT(st.hits == 0 && st.misses == 2 && st.entries == 2);
    EXPECT_STR(ia.eid, ib.eid);
    EXPECT(memcmp(ia.serial, ib.serial, sizeof ia.serial) != 0);
    EXPECT_OK(check(t, &a, 0, &ib, r));
    EXPECT(memcmp(&ia, &ib, sizeof ia) == 0);
    EXPECT_EQ_U(stats(t).hits, 1);
    /* The same TBS with another signature (the last byte of s flipped):
     * another DER, so no hit; the full check refuses it. */
    a.data[a.len - 1] ^= 0x01;
    EXPECT_ERR(check(t, &a, 0, &ib, r), TC_ERR_VERIFY);
    EXPECT_STR(r, "device certificate: certificate signature failure");
    EXPECT_ERR(tc_ota_trust_verify(t, a.data, a.len, 0, &ib, r, sizeof r), TC_ERR_VERIFY);
    EXPECT_STR(r, "device certificate: certificate signature failure");
    st = stats(t);
    EXPECT(st.hits == 1 && st.misses == 4 && st.entries == 2 && st.stale == 0);
out:
    tc_ota_trust_free(t);
    tc_buf_free(&a);
    tc_buf_free(&b);
}

static void test_bound(void)
{
    enum { N = 40 };
    struct tc_buf d[N], rev;
    char r[TC_OTA_REASON_MAX];
    struct tc_pki_device_info got, want;
    size_t made = 0;
    bool ok = fixture();
    for (; ok && made < N; made++)
        ok = issue(P.batch_iss, P.t0 + DAY, PREFIX, 100 + (unsigned)made, &d[made]);
    ok = ok && issue(P.batch_iss, P.t0 + DAY, PREFIX, 99, &rev);
    struct tc_ota_trust *t = ok ? trust(&(struct trust_opts){.revoked = &rev, .cache = 8}) : NULL;
    if (t == NULL)
        goto out;
    EXPECT_EQ_U(stats(t).capacity, 8);
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < N; i++) {
            char digits[31];
            (void)snprintf(digits, sizeof digits, "%s%020u", PREFIX, 100 + (unsigned)i);
            EXPECT_OK(check(t, &d[i], 0, &got, r));
            EXPECT(strncmp(got.eid, digits, 30) == 0);
            if (pass == 0) {
                /* Right after its insert: a hit with the same info. */
                want = got;
                EXPECT_OK(check(t, &d[i], 0, &got, r));
                EXPECT(memcmp(&got, &want, sizeof got) == 0);
            }
            if (i % 8 == 0) {
                EXPECT_ERR(check(t, &rev, 0, &got, r), TC_ERR_VERIFY);
                EXPECT_STR(r, "device certificate: certificate revoked");
            }
        }
    }
    struct tc_ota_trust_cache_stats st = stats(t);
    EXPECT_EQ_U(st.entries, 8);
    EXPECT_EQ_U(st.capacity, 8);
    /* 40 keys in 2 sets of 4, asked for in a cycle: the least recently
     * used one is always the next asked for, so only the checks right after
     * an insert hit, and every other check inserts (both sets fill unless
     * SHA-256 puts 36 of 40 keys in one set). */
    EXPECT_EQ_U(st.hits, N);
    EXPECT_EQ_U(st.inserts, 3 * N);
    EXPECT_EQ_U(st.evictions, 3 * N - 8);
    EXPECT_EQ_U(st.hits + st.misses, 4 * N + 3 * (N / 8));
    /* Sizes: rounded up (a power of two, at least one set of 4), the
     * maximum enforced, 0 = off. */
    EXPECT_OK(tc_ota_trust_set_cache(t, 1));
    EXPECT_EQ_U(stats(t).capacity, 4);
    EXPECT_OK(tc_ota_trust_set_cache(t, 9));
    EXPECT_EQ_U(stats(t).capacity, 16);
    EXPECT_ERR(tc_ota_trust_set_cache(t, (size_t)TC_OTA_TRUST_CACHE_MAX + 1), TC_ERR_RANGE);
    EXPECT_ERR(tc_ota_trust_set_cache(NULL, 8), TC_ERR_ARG);
    EXPECT_OK(tc_ota_trust_set_cache(t, 0));
    EXPECT_OK(check(t, &d[0], 0, &got, r));
    EXPECT_OK(check(t, &d[0], 0, &got, r));
    st = stats(t);
    EXPECT(st.capacity == 0 && st.hits == 0 && st.misses == 0 && st.entries == 0);
    tc_ota_trust_cache_stats(t, NULL);
out:
    tc_ota_trust_free(t);
    for (size_t i = 0; i < made; i++)
        tc_buf_free(&d[i]);
    if (ok)
        tc_buf_free(&rev);
}

/* ------------------------------------------------------------ threads */

struct tcase {
    const struct tc_buf *der;
    int64_t at;
    const char *reason; /* NULL: TC_OK */
};

struct worker {
    const struct tc_ota_trust *t;
    const struct tcase *cases;
    size_t ncases, start;
    int rounds;
    size_t bad, done;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char r[TC_OTA_REASON_MAX];
    struct tc_pki_device_info info;
    X509 *x[16] = {NULL};
    for (size_t k = 0; k < w->ncases && k < TC_ARRAY_LEN(x); k++) {
        const uint8_t *q = w->cases[k].der->data;
        x[k] = d2i_X509(NULL, &q, (long)w->cases[k].der->len); /* this thread's parse */
    }
    for (int round = 0; round < w->rounds; round++) {
        for (size_t j = 0; j < w->ncases; j++) {
            size_t k = (w->start + j) % w->ncases;
            const struct tcase *c = &w->cases[k];
            tc_err rc;
            if (x[k] == NULL)
                rc = TC_ERR_INTERNAL;
            else if ((round + (int)j) % 4 == 3) /* now and then the DER entry point */
                rc =
                    tc_ota_trust_verify(w->t, c->der->data, c->der->len, c->at, &info, r, sizeof r);
            else
                rc = tc_ota_trust_verify_x509(w->t, x[k], c->at, &info, r, sizeof r);
            bool ok = c->reason == NULL
                          ? rc == TC_OK && r[0] == '\0' && strlen(info.eid) == TC_PKI_EID_DIGITS
                          : rc == TC_ERR_VERIFY && strcmp(r, c->reason) == 0;
            if (!ok && w->bad++ == 0)
                (void)fprintf(stderr, "  case %zu at %lld: %u %s\n", k, (long long)c->at, rc, r);
            w->done++;
        }
    }
    for (size_t k = 0; k < TC_ARRAY_LEN(x); k++)
        X509_free(x[k]);
    return NULL;
}

static void test_threads(void)
{
    enum { THREADS = 4 };
    struct tc_buf g1, g2, g3, rv, bd, qd;
    if (!fixture())
        return;
    bool ok = issue(P.batch_iss, P.t0 + DAY, PREFIX, 11, &g1);
    ok = issue(P.batch_iss, P.t0 + DAY, PREFIX, 12, &g2) && ok;
    ok = issue(P.batch_iss, P.t0 + DAY, PREFIX, 13, &g3) && ok;
    ok = issue(P.batch_iss, P.t0 + DAY, PREFIX, 14, &rv) && ok;
    ok = issue(B.iss, P.t0 + DAY, PREFIX_B, 15, &bd) && ok;
    ok = issue(Q.batch_iss, Q.t0 + DAY, PREFIX, 16, &qd) && ok;
    int64_t far = a_expiry() + 365 * DAY;
    const struct tcase cases[] = {
        {&g1, 0, NULL},
        {&g2, 0, NULL},
        {&g3, now0 + DAY, NULL},
        {&rv, 0, "device certificate: certificate revoked"},
        {&bd, 0, "batch CA certificate: certificate revoked"},
        {&qd, 0, "unknown batch B-C-Q: no trusted batch CA issued the device certificate"},
        {&g1, a_expiry(), "batch CA certificate: certificate has expired"},
        {&g2, a_expiry() - 1, NULL},
    };
    /* Fewer rounds under valgrind (it runs one thread at a time). */
    int rounds = getenv("TC_UNDER_VALGRIND") != NULL ? 2 : 40;
    for (int cached = 0; ok && cached < 2; cached++) {
        /* A fresh trust: its first verifications are concurrent too. */
        struct tc_ota_trust *t =
            trust(&(struct trust_opts){.revoked = &rv,
                                       .revoke_b = true,
                                       .next_update = far,
                                       .cache = cached ? TC_OTA_TRUST_CACHE_DEFAULT : 0});
        if (t == NULL)
            break;
        struct worker w[THREADS];
        pthread_t th[THREADS];
        for (size_t i = 0; i < THREADS; i++) {
            w[i] = (struct worker){.t = t,
                                   .cases = cases,
                                   .ncases = TC_ARRAY_LEN(cases),
                                   .start = i * 3,
                                   .rounds = rounds};
            EXPECT(pthread_create(&th[i], NULL, work, &w[i]) == 0);
        }
        size_t done = 0;
        for (size_t i = 0; i < THREADS; i++) {
            EXPECT(pthread_join(th[i], NULL) == 0);
            EXPECT_EQ_U(w[i].bad, 0);
            done += w[i].done;
        }
        EXPECT_EQ_U(done, (size_t)THREADS * (size_t)rounds * TC_ARRAY_LEN(cases));
        struct tc_ota_trust_cache_stats st = stats(t);
        if (cached) {
            /* Every call looked up; g1, g2, g3 kept once each; refusals
             * never; g1 past its window found stale at least once. */
            EXPECT_EQ_U(st.hits + st.misses, done);
            EXPECT_EQ_U(st.entries, 3);
            EXPECT(st.hits + 3 * THREADS >= done / 2); /* g1, g2, g3: 4 of 8 cases */
            EXPECT(st.stale > 0);
            EXPECT_EQ_U(st.evictions, 0);
        } else {
            EXPECT(st.capacity == 0 && st.hits == 0 && st.misses == 0);
        }
        tc_ota_trust_free(t);
    }
    struct tc_buf *all[] = {&g1, &g2, &g3, &rv, &bd, &qd};
    for (size_t i = 0; i < TC_ARRAY_LEN(all); i++)
        tc_buf_free(all[i]);
}

static void test_zz_cleanup(void)
{
    ota_fx_pki_free(&P);
    ota_fx_pki_free(&Q);
    tc_pki_issuer_free(B.iss);
    tc_signer_soft_free(&B.key);
    tc_buf_free(&B.cert);
}

static const struct tc_test_case cases[] = {
    {"hit: the full check's verdict and info", test_hit_same_info},
    {"revoked in a new trust although the old one kept it", test_new_trust_revokes},
    {"a hit outside its window: the full check's refusal", test_time_on_hit},
    {"another DER misses (same subject; same TBS)", test_other_der_misses},
    {"bounded: more certificates than entries", test_bound},
    {"threads: one trust, every verdict exact, with and without the cache", test_threads},
    {"zz_cleanup", test_zz_cleanup},
};

TC_TEST_MAIN("ota_trust_cache", cases)
