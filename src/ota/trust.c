/*
 * The server's trust store: the fleet root and its CRL, each batch CA with
 * its CRL. It is a prepared pki verifier (tc_pki_verifier): root, batch CAs
 * and CRLs are parsed, profile-checked and signature-checked once, when the
 * trust is built; each handshake only checks the device certificate (its
 * profile, RFC 5280 path validation with both CRLs, the batch fence).
 *
 * In front of the verifier sits a bounded cache of verified certificates,
 * so that a device that reconnects does not pay the signature and the path
 * again. Key: SHA-256 of the certificate's whole DER (a certificate
 * differing in any byte, its signature included, misses). Only a TC_OK
 * verdict is kept, with the device's info and the window of times the
 * verdict holds for (tc_pki_window: every validity period and CRL window
 * the verification checked); a hit is used only when the time asked for
 * lies in that window, otherwise the full verification runs. Nothing else
 * can change the verdict: the trust is immutable once shared (new CRLs
 * make a new trust, tc_ota_server_set_trust, whose cache starts empty, so a
 * revocation takes effect with the trust that carries it).
 *
 * The cache is set-associative (CACHE_WAYS entries per set, the least
 * recently used one replaced), allocated once with the trust; a set is
 * guarded by one of CACHE_STRIPES mutexes, held for a lookup or an insert
 * only (no allocation, no crypto under it), so many threads may verify on
 * one trust at once.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/x509.h>

#include <trustchain/crypto.h>
#include <trustchain/ota.h>

#define CACHE_WAYS    4u
#define CACHE_STRIPES 64u

struct cache_entry {
    uint8_t key[TC_SHA256_LEN];
    bool used;
    uint64_t stamp;      /* the set's clock at the last use */
    int64_t from, until; /* the verdict holds for from <= at < until */
    struct tc_pki_device_info info;
};

struct cache_stripe {
    _Alignas(64) pthread_mutex_t lock;
    uint64_t clock;
    struct tc_ota_trust_cache_stats st; /* this stripe's counters */
};

struct tc_ota_trust {
    struct tc_pki_verifier *v;
    struct cache_entry *entries; /* nsets * CACHE_WAYS; NULL: no cache */
    size_t nsets;                /* a power of two */
    struct cache_stripe *stripes;
};

static void cache_drop(struct tc_ota_trust *t)
{
    if (t->stripes != NULL)
        for (size_t i = 0; i < CACHE_STRIPES; i++)
            (void)pthread_mutex_destroy(&t->stripes[i].lock);
    free(t->stripes);
    free(t->entries);
    t->stripes = NULL;
    t->entries = NULL;
    t->nsets = 0;
}

tc_err tc_ota_trust_set_cache(struct tc_ota_trust *t, size_t entries)
{
    TC_ENSURE(t != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(entries <= TC_OTA_TRUST_CACHE_MAX, TC_ERR_RANGE,
                  "verify cache: more than %u entries", TC_OTA_TRUST_CACHE_MAX);
    cache_drop(t);
    if (entries == 0)
        return TC_OK;
    size_t nsets = 1;
    while (nsets * CACHE_WAYS < entries)
        nsets *= 2;
    t->entries = calloc(nsets * CACHE_WAYS, sizeof *t->entries);
    t->stripes = aligned_alloc(_Alignof(struct cache_stripe), CACHE_STRIPES * sizeof *t->stripes);
    if (t->entries == NULL || t->stripes == NULL) {
        free(t->stripes);
        t->stripes = NULL;
        cache_drop(t);
        return TC_FAIL(TC_ERR_NOMEM, "verify cache");
    }
    memset(t->stripes, 0, CACHE_STRIPES * sizeof *t->stripes);
    for (size_t i = 0; i < CACHE_STRIPES; i++) {
        if (pthread_mutex_init(&t->stripes[i].lock, NULL) != 0) {
            for (size_t j = 0; j < i; j++)
                (void)pthread_mutex_destroy(&t->stripes[j].lock);
            free(t->stripes);
            t->stripes = NULL;
            cache_drop(t);
            return TC_FAIL(TC_ERR_INTERNAL, "verify cache: mutex");
        }
    }
    t->nsets = nsets;
    return TC_OK;
}

void tc_ota_trust_cache_stats(const struct tc_ota_trust *t, struct tc_ota_trust_cache_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (t == NULL || t->entries == NULL)
        return;
    out->capacity = t->nsets * CACHE_WAYS;
    for (size_t i = 0; i < CACHE_STRIPES; i++) {
        struct cache_stripe *sp = &t->stripes[i];
        (void)pthread_mutex_lock(&sp->lock);
        out->hits += sp->st.hits;
        out->misses += sp->st.misses;
        out->stale += sp->st.stale;
        out->inserts += sp->st.inserts;
        out->evictions += sp->st.evictions;
        for (size_t set = i; set < t->nsets; set += CACHE_STRIPES)
            for (size_t w = 0; w < CACHE_WAYS; w++)
                out->entries += t->entries[set * CACHE_WAYS + w].used ? 1u : 0u;
        (void)pthread_mutex_unlock(&sp->lock);
    }
}

/* The set of a key (SHA-256 output: any 8 bytes are uniform) and its stripe. */
static size_t set_of(const struct tc_ota_trust *t, const uint8_t key[TC_SHA256_LEN])
{
    uint64_t h = 0;
    for (size_t i = 0; i < 8; i++)
        h = h << 8 | key[i];
    return (size_t)(h & (uint64_t)(t->nsets - 1));
}

static struct cache_stripe *stripe_of(const struct tc_ota_trust *t, size_t set)
{
    return &t->stripes[set % CACHE_STRIPES];
}

/* A kept verdict for key whose window holds `now`: its info to *info. */
static bool cache_get(const struct tc_ota_trust *t, const uint8_t key[TC_SHA256_LEN], int64_t now,
                      struct tc_pki_device_info *info)
{
    size_t set = set_of(t, key);
    struct cache_stripe *sp = stripe_of(t, set);
    struct cache_entry *e = &t->entries[set * CACHE_WAYS];
    bool hit = false;
    (void)pthread_mutex_lock(&sp->lock);
    for (size_t w = 0; w < CACHE_WAYS; w++, e++) {
        if (!e->used || memcmp(e->key, key, TC_SHA256_LEN) != 0)
            continue;
        if (now >= e->from && now < e->until) {
            e->stamp = ++sp->clock;
            if (info != NULL)
                *info = e->info;
            hit = true;
        } else {
            sp->st.stale++; /* outside its window: the full check decides */
        }
        break;
    }
    if (hit)
        sp->st.hits++;
    else
        sp->st.misses++;
    (void)pthread_mutex_unlock(&sp->lock);
    return hit;
}

/* Keep a TC_OK verdict: the key's own entry, else a free one, else the
 * set's least recently used. */
static void cache_put(const struct tc_ota_trust *t, const uint8_t key[TC_SHA256_LEN],
                      const struct tc_pki_window *win, const struct tc_pki_device_info *info)
{
    size_t set = set_of(t, key);
    struct cache_stripe *sp = stripe_of(t, set);
    struct cache_entry *ways = &t->entries[set * CACHE_WAYS], *e = NULL;
    (void)pthread_mutex_lock(&sp->lock);
    for (size_t w = 0; w < CACHE_WAYS && e == NULL; w++)
        if (ways[w].used && memcmp(ways[w].key, key, TC_SHA256_LEN) == 0)
            e = &ways[w];
    for (size_t w = 0; w < CACHE_WAYS && e == NULL; w++)
        if (!ways[w].used)
            e = &ways[w];
    if (e == NULL) {
        e = &ways[0];
        for (size_t w = 1; w < CACHE_WAYS; w++)
            if (ways[w].stamp < e->stamp)
                e = &ways[w];
        sp->st.evictions++;
    }
    memcpy(e->key, key, TC_SHA256_LEN);
    e->used = true;
    e->stamp = ++sp->clock;
    e->from = win->from;
    e->until = win->until;
    e->info = *info;
    sp->st.inserts++;
    (void)pthread_mutex_unlock(&sp->lock);
}

tc_err tc_ota_trust_new(const uint8_t *root, size_t root_len, const uint8_t *root_crl,
                        size_t root_crl_len, struct tc_ota_trust **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    *out = NULL;
    struct tc_ota_trust *t = calloc(1, sizeof *t);
    TC_ENSURE(t != NULL, TC_ERR_NOMEM);
    TC_TRY(tc_pki_verifier_new(root, root_len, root_crl, root_crl_len, &t->v));
    TC_TRY(tc_ota_trust_set_cache(t, TC_OTA_TRUST_CACHE_DEFAULT));
    *out = t;
    t = NULL;
    ret = TC_OK;
out:
    tc_ota_trust_free(t);
    return ret;
}

tc_err tc_ota_trust_add_batch(struct tc_ota_trust *t, const uint8_t *ca, size_t ca_len,
                              const uint8_t *crl, size_t crl_len)
{
    TC_ENSURE(t != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(tc_pki_verifier_batches(t->v) < TC_OTA_BATCHES_MAX, TC_ERR_NOMEM,
                  "more than %u batches", TC_OTA_BATCHES_MAX);
    /* The trust is still being built (not shared): verdicts kept so far
     * were given without this batch, so they go. */
    if (t->entries != NULL)
        memset(t->entries, 0, t->nsets * CACHE_WAYS * sizeof *t->entries);
    return tc_pki_verifier_add_batch(t->v, ca, ca_len, crl, crl_len, NULL);
}

void tc_ota_trust_free(struct tc_ota_trust *t)
{
    if (t == NULL)
        return;
    cache_drop(t);
    tc_pki_verifier_free(t->v);
    free(t);
}

/* The verifier's verdict as the server logs it. */
static tc_err verdict(tc_err rc, enum tc_pki_refusal refusal, const char *why, char *reason,
                      size_t reason_size)
{
    if (rc == TC_OK)
        return TC_OK;
    if (rc != TC_ERR_VERIFY)
        return rc;
    /* The verifier says "device certificate: <rule>" for a profile failure;
     * the server's log says what the peer presented. */
    (void)snprintf(reason, reason_size, "%s%s", refusal == TC_PKI_REFUSED_PROFILE ? "not a " : "",
                   why);
    return TC_FAIL(TC_ERR_VERIFY, "%s", reason);
}

/* The time a call verifies at (0: now), as the verifier takes it. */
static int64_t time_of(int64_t at)
{
    return at != 0 ? at : (int64_t)time(NULL);
}

/* The cache key of a DER certificate; false: not cached (no cache, longer
 * than any certificate the profile takes, or the digest failed: the full
 * check then runs and decides). */
static bool key_of(const struct tc_ota_trust *t, const uint8_t *der, size_t len,
                   uint8_t key[TC_SHA256_LEN])
{
    struct tc_iov part = {der, len};
    return t->entries != NULL && len <= TC_PKI_CERT_MAX && tc_sha256_iov(&part, 1, key) == TC_OK;
}

tc_err tc_ota_trust_verify(const struct tc_ota_trust *t, const uint8_t *device, size_t device_len,
                           int64_t at, struct tc_pki_device_info *info, char *reason,
                           size_t reason_size)
{
    char why[TC_OTA_REASON_MAX];
    enum tc_pki_refusal refusal = TC_PKI_REFUSED_NONE;
    uint8_t key[TC_SHA256_LEN];
    struct tc_pki_device_info di;
    struct tc_pki_window win;
    TC_ENSURE(t != NULL && device != NULL && reason != NULL && reason_size > 0, TC_ERR_ARG);
    reason[0] = '\0';
    bool keyed = key_of(t, device, device_len, key);
    if (keyed && cache_get(t, key, time_of(at), info))
        return TC_OK;
    tc_err rc = tc_pki_verifier_verify_window(t->v, device, device_len, at, &di, &win, &refusal,
                                              why, sizeof why);
    if (rc == TC_OK) {
        int64_t now = time_of(at);
        if (keyed && now >= win.from && now < win.until)
            cache_put(t, key, &win, &di);
        if (info != NULL)
            *info = di;
    }
    return verdict(rc, refusal, why, reason, reason_size);
}

tc_err tc_ota_trust_verify_x509(const struct tc_ota_trust *t, struct x509_st *device, int64_t at,
                                struct tc_pki_device_info *info, char *reason, size_t reason_size)
{
    char why[TC_OTA_REASON_MAX];
    enum tc_pki_refusal refusal = TC_PKI_REFUSED_NONE;
    uint8_t key[TC_SHA256_LEN], der[TC_PKI_CERT_MAX];
    struct tc_pki_device_info di;
    struct tc_pki_window win;
    bool keyed = false;
    TC_ENSURE(t != NULL && device != NULL && reason != NULL && reason_size > 0, TC_ERR_ARG);
    reason[0] = '\0';
    if (t->entries != NULL) {
        /* The certificate's DER as OpenSSL encodes it (i2d_X509: the
         * received TBS, signature algorithm and signature), into a buffer
         * on the stack: a hit allocates nothing. Longer than any device
         * certificate: the full check refuses it. */
        int n = i2d_X509(device, NULL);
        uint8_t *p = der;
        keyed = n > 0 && (size_t)n <= sizeof der && i2d_X509(device, &p) == n &&
                key_of(t, der, (size_t)n, key);
        if (keyed && cache_get(t, key, time_of(at), info))
            return TC_OK;
    }
    tc_err rc =
        tc_pki_verifier_verify_x509_window(t->v, device, at, &di, &win, &refusal, why, sizeof why);
    if (rc == TC_OK) {
        int64_t now = time_of(at);
        if (keyed && now >= win.from && now < win.until)
            cache_put(t, key, &win, &di);
        if (info != NULL)
            *info = di;
    }
    return verdict(rc, refusal, why, reason, reason_size);
}

/* ------------------------------------------------------------------ load */

static tc_err read_der(const char *path, size_t max, struct tc_buf *der)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_buf raw;
    tc_buf_init_heap(&raw, max * 2 + 4096);
    FILE *f = fopen(path, "rb");
    TC_CHECK_MSG(f != NULL, TC_ERR_IO, "cannot open %s", path);
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        tc_buf_put(&raw, chunk, n);
    TC_CHECK_MSG(!ferror(f), TC_ERR_IO, "cannot read %s", path);
    TC_TRY(tc_buf_status(&raw));
    tc_buf_init_heap(der, max);
    TC_TRY(tc_pki_der_from_pem(raw.data, raw.len, der));
    ret = TC_OK;
out:
    if (f != NULL)
        (void)fclose(f);
    tc_buf_free(&raw);
    return ret;
}

static bool path_of(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);
    return n > 0 && (size_t)n < size;
}

tc_err tc_ota_trust_load(const char *ws, struct tc_ota_trust **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    char path[1024], dirp[1024];
    struct tc_buf a = {0}, b = {0};
    struct tc_ota_trust *t = NULL;
    DIR *d = NULL;
    TC_ENSURE(ws != NULL && out != NULL, TC_ERR_ARG);
    *out = NULL;
    TC_CHECK(path_of(path, sizeof path, ws, "pki/root.pem"), TC_ERR_RANGE);
    TC_TRY(read_der(path, TC_PKI_CERT_MAX, &a));
    TC_CHECK(path_of(path, sizeof path, ws, "pki/root-crl.pem"), TC_ERR_RANGE);
    TC_TRY(read_der(path, TC_PKI_CRL_MAX, &b));
    TC_TRY(tc_ota_trust_new(a.data, a.len, b.data, b.len, &t));
    tc_buf_free(&a);
    tc_buf_free(&b);
    TC_CHECK(path_of(dirp, sizeof dirp, ws, "pki/batches"), TC_ERR_RANGE);
    d = opendir(dirp);
    if (d != NULL) {
        const struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            struct stat st;
            char sub[512];
            TC_CHECK(path_of(sub, sizeof sub, e->d_name, "ca.pem") &&
                         path_of(path, sizeof path, dirp, sub),
                     TC_ERR_RANGE);
            if (stat(path, &st) != 0)
                continue; /* a batch whose CA was never written */
            TC_TRY(read_der(path, TC_PKI_CERT_MAX, &a));
            TC_CHECK(path_of(sub, sizeof sub, e->d_name, "crl.pem") &&
                         path_of(path, sizeof path, dirp, sub),
                     TC_ERR_RANGE);
            TC_TRY(read_der(path, TC_PKI_CRL_MAX, &b));
            TC_TRY(tc_ota_trust_add_batch(t, a.data, a.len, b.data, b.len));
            tc_buf_free(&a);
            tc_buf_free(&b);
        }
    }
    *out = t;
    t = NULL;
    ret = TC_OK;
out:
    if (d != NULL)
        (void)closedir(d);
    tc_buf_free(&a);
    tc_buf_free(&b);
    tc_ota_trust_free(t);
    return ret;
}
