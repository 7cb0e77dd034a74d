/*
 * bench_station: devices provisioned per second end to end — emulated cards
 * (in memory), SoftHSM2 (derivation, wrapping, KCVs, SCP03 session keys,
 * the batch CA signature), SQLite registry with a durable audit log (every
 * step an fsynced event) — beside the crypto floor per device done directly
 * with OpenSSL in the same run: the card's P-256 key generation, the PoP
 * signature and its verification, the certificate signature, and the AES-CMAC
 * work of the SCP03 handshakes (three per device, host and card side).
 *
 * The registry lives in a directory under the current one (a real disk, not
 * tmpfs); TC_BENCH_DIR overrides. TC_BENCH_DEVICES sets the batch size.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <trustchain/hsm.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/se.h>
#include <trustchain/station.h>

#include "bench.h"

#define BATCH  "BENCH-1"
#define PREFIX "89049032"
#define PIN    "bench-user-pin"

struct line {
    char dir[512];
    struct tc_hsm_workspace hw;
    struct tc_hsm *hsm;
    struct tc_signer batch, root;
    uint8_t ca[TC_PKI_CERT_MAX];
    size_t ca_len;
    uint8_t tk[16];
    struct tc_registry *reg;
    struct tc_station *st;
    size_t next;
};

static void die(const char *what)
{
    char msg[400];
    tc_error_format(msg, sizeof msg);
    (void)fprintf(stderr, "bench_station: %s: %s\n", what, msg);
    exit(1);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(struct line *l)
{
    const char *base = getenv("TC_BENCH_DIR") != NULL ? getenv("TC_BENCH_DIR") : ".";
    (void)snprintf(l->dir, sizeof l->dir, "%s/bench-station-XXXXXX", base);
    if (mkdtemp(l->dir) == NULL)
        die("mkdtemp");
    char ws[600], reg[600];
    (void)snprintf(ws, sizeof ws, "%s/ws", l->dir);
    (void)snprintf(reg, sizeof reg, "%s/registry.db", l->dir);
    if (tc_hsm_workspace_create(ws, NULL, "bench", &l->hw) != TC_OK ||
        tc_hsm_init_token(l->hw.module_path, l->hw.softhsm_conf, "bench", "bench-so-pin", 12, PIN,
                          strlen(PIN)) != TC_OK)
        die("token");
    struct tc_hsm_config c = {.module_path = l->hw.module_path,
                              .softhsm_conf = l->hw.softhsm_conf,
                              .token_label = "bench",
                              .pin = PIN,
                              .pin_len = strlen(PIN),
                              .pool_size = 24};
    tc_hsm_obj o, p;
    struct tc_hsm_keyset ks;
    if (tc_hsm_open(&c, &l->hsm) != TC_OK ||
        tc_hsm_master_generate(l->hsm, "line", 16, &o) != TC_OK ||
        tc_random(l->tk, sizeof l->tk) != TC_OK ||
        tc_hsm_transport_import(l->hsm, BATCH, TC_STATION_TRANSPORT_KVN, l->tk, l->tk, l->tk, 16,
                                &ks) != TC_OK ||
        tc_hsm_keypair_generate(l->hsm, TC_SIG_ECDSA_P256_SHA256, TC_HSM_LABEL_BATCH_CA BATCH, &o,
                                &p) != TC_OK ||
        tc_hsm_signer(l->hsm, TC_HSM_LABEL_BATCH_CA BATCH, &l->batch) != TC_OK ||
        tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &l->root) != TC_OK)
        die("HSM keys");
    int64_t now = (int64_t)time(NULL);
    struct tc_pki_root_params rp = {.common_name = "Bench Root",
                                    .organization = "Bench",
                                    .not_before = now - 60,
                                    .not_after = now + 86400 * 365};
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    struct tc_pki_issuer *root = NULL;
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    struct tc_pki_batch_params bp = {.batch_id = BATCH,
                                     .eid_prefix = PREFIX,
                                     .manufacturer = "Bench",
                                     .not_before = now - 60,
                                     .not_after = now + 86400 * 365};
    if (tc_pki_root_create(&l->root, &rp, &der) != TC_OK ||
        tc_pki_issuer_new(&l->root, der.data, der.len, &root) != TC_OK ||
        l->batch.public_key(l->batch.ctx, spki, sizeof spki, &sl) != TC_OK)
        die("root");
    tc_buf_reset(&der);
    if (tc_pki_batch_ca_create(root, spki, sl, &bp, &der) != TC_OK || der.len > sizeof l->ca)
        die("batch CA");
    memcpy(l->ca, der.data, der.len);
    l->ca_len = der.len;
    tc_pki_issuer_free(root);
    tc_buf_free(&der);
    if (tc_registry_open(reg, NULL, &l->reg) != TC_OK)
        die("registry");
    struct tc_station_config sc = {.batch_id = BATCH,
                                   .station_id = "BENCH",
                                   .actor = "bench",
                                   .hsm = l->hsm,
                                   .master_name = "line",
                                   .batch_signer = &l->batch,
                                   .batch_ca = l->ca,
                                   .batch_ca_len = l->ca_len,
                                   .registry = l->reg};
    if (tc_station_new(&sc, &l->st) != TC_OK)
        die("station");
}

static void teardown(struct line *l)
{
    tc_station_free(l->st);
    tc_registry_close(l->reg);
    tc_hsm_signer_free(&l->batch);
    tc_hsm_close(l->hsm);
    tc_signer_soft_free(&l->root);
    (void)nftw(l->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh in-memory card as the vendor ships it; index picks the EID. */
static tc_err mem_card(struct line *l, size_t index, struct tc_se_card **card)
{
    struct tc_se_params p;
    char eid[33];
    tc_se_params_default(&p);
    TC_GUARD(tc_station_emulated_eid(PREFIX, index, eid));
    TC_GUARD(tc_pki_eid_to_bcd(eid, p.eid));
    memcpy(p.kdd, p.eid + 6, TC_SE_KDD_LEN);
    p.kvn = TC_STATION_TRANSPORT_KVN;
    p.key_len = 16;
    memcpy(p.key_enc, l->tk, 16);
    memcpy(p.key_mac, l->tk, 16);
    memcpy(p.key_dek, l->tk, 16);
    tc_err rc = tc_se_open_mem(&p, card);
    tc_se_params_wipe(&p);
    return rc;
}

static int one_device(void *arg)
{
    struct line *l = arg;
    struct tc_se_card *card = NULL;
    struct tc_transport t;
    struct tc_station_result r;
    if (mem_card(l, l->next++, &card) != TC_OK || tc_se_transport(card, &t) != TC_OK)
        return 1;
    tc_err rc = tc_station_provision(l->st, &t, &r);
    tc_transport_close(&t);
    tc_se_close(card);
    return rc != TC_OK || r.outcome != TC_STATION_PROVISIONED;
}

/* The batch runner over in-memory cards. */
struct mem_cards {
    struct line *l;
    size_t base;
};
struct mem_link {
    struct tc_se_card *card;
    struct tc_transport inner;
};
static tc_err mem_transmit(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t size,
                           size_t *rlen)
{
    struct mem_link *m = ctx;
    return m->inner.transmit(m->inner.ctx, cmd, len, resp, size, rlen);
}
static void mem_close(void *ctx)
{
    struct mem_link *m = ctx;
    tc_transport_close(&m->inner);
    tc_se_close(m->card);
    free(m);
}
static tc_err mem_open(void *arg, size_t index, struct tc_transport *t)
{
    struct mem_cards *mc = arg;
    struct mem_link *m = calloc(1, sizeof *m);
    TC_ENSURE(m != NULL, TC_ERR_NOMEM);
    tc_err rc = mem_card(mc->l, mc->base + index, &m->card);
    if (rc == TC_OK)
        rc = tc_se_transport(m->card, &m->inner);
    if (rc != TC_OK) {
        tc_se_close(m->card);
        free(m);
        return rc;
    }
    *t = (struct tc_transport){
        .ctx = m, .name = "memory card", .transmit = mem_transmit, .close = mem_close};
    return TC_OK;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sort3(double *x, unsigned n)
{
    for (unsigned a = 0; a < n; a++)
        for (unsigned b = a + 1; b < n; b++)
            if (x[b] < x[a]) {
                double t = x[a];
                x[a] = x[b];
                x[b] = t;
            }
}

/* ------------------------------------------------------------------ the floor */

struct floor {
    EVP_PKEY *ca;
    EVP_MAC *mac;
    EVP_MAC_CTX *cmac;
    uint8_t key[16];
};

static int sign(EVP_PKEY *k, const uint8_t *m, size_t n, uint8_t *sig, size_t *sl)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestSign(c, sig, sl, m, n) == 1;
    EVP_MD_CTX_free(c);
    return ok ? 0 : 1;
}

/* SCP03 handshake, both ends (Amendment D §6.2): three session keys and two
 * cryptograms, each one CMAC over the 32-byte derivation data. */
static int cmac_work(struct floor *f, unsigned n)
{
    uint8_t data[32] = {0}, out[16];
    size_t ol = 0;
    for (unsigned i = 0; i < n; i++) {
        data[11] = (uint8_t)i;
        if (EVP_MAC_init(f->cmac, f->key, sizeof f->key, NULL) != 1 ||
            EVP_MAC_update(f->cmac, data, sizeof data) != 1 ||
            EVP_MAC_final(f->cmac, out, &ol, sizeof out) != 1)
            return 1;
    }
    bench_consume(out, sizeof out);
    return 0;
}

static int floor_device(void *arg)
{
    struct floor *f = arg;
    EVP_PKEY *dev = EVP_EC_gen("P-256");
    uint8_t msg[97] = {0}, sig[80], csig[80], tbs[400] = {0};
    size_t sl = sizeof sig, cl = sizeof csig;
    int rc = dev == NULL || sign(dev, msg, sizeof msg, sig, &sl) != 0;
    EVP_MD_CTX *v = EVP_MD_CTX_new();
    rc = rc || v == NULL || EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, dev) != 1 ||
         EVP_DigestVerify(v, sig, sl, msg, sizeof msg) != 1;
    EVP_MD_CTX_free(v);
    rc = rc || sign(f->ca, tbs, sizeof tbs, csig, &cl) != 0;
    /* the three handshakes the station completes (transport; the gate's,
     * which step 5 continues in; ISD), each 5 CMACs on the host and 5 on
     * the card. The probe of the transport keyset after PUT KEY ends at
     * INITIALIZE UPDATE (6A88) with no cryptography. */
    rc = rc || cmac_work(f, 3 * 10);
    EVP_PKEY_free(dev);
    return rc;
}

int main(void)
{
    bench_init("bench_station");
    struct line l = {0};
    setup(&l);
    struct floor f = {0};
    f.ca = EVP_EC_gen("P-256");
    f.mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    f.cmac = f.mac != NULL ? EVP_MAC_CTX_new(f.mac) : NULL;
    static char cipher[] = "AES-128-CBC";
    OSSL_PARAM prm[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                        OSSL_PARAM_construct_end()};
    if (f.ca == NULL || f.cmac == NULL || EVP_MAC_CTX_set_params(f.cmac, prm) != 1)
        die("OpenSSL floor setup");
    l.next = 0;
    double one = 0, floor1 = 0;
    bench_compare("device provisioned, 1 thread", one_device, &l,
                  "crypto floor per device (OpenSSL)", floor_device, &f);
    one = bench_run(one_device, &l);
    floor1 = bench_run(floor_device, &f);

    size_t n = 1000; /* a batch as `trustchain demo` runs it */
    const char *nd = getenv("TC_BENCH_DEVICES");
    uint64_t v = 0;
    if (nd != NULL && tc_parse_uint(nd, 1000000, &v) == TC_OK && v > 0)
        n = (size_t)v;
    unsigned jobs[3] = {2, 8, 32};
    size_t njobs = TC_ARRAY_LEN(jobs);
    /* TC_BENCH_JOBS=J: only batches with J jobs (profiling). */
    const char *nj = getenv("TC_BENCH_JOBS");
    if (nj != NULL && tc_parse_uint(nj, TC_STATION_MAX_JOBS, &v) == TC_OK && v > 0) {
        jobs[0] = (unsigned)v;
        njobs = 1;
    }
    for (size_t i = 0; i < njobs; i++) {
        double best[3] = {0}, cpu[3] = {0};
        unsigned runs = bench_samples() < 3 ? bench_samples() : 3;
        for (unsigned s = 0; s < runs; s++) {
            struct mem_cards m = {.l = &l, .base = 100000 + l.next};
            l.next += n;
            struct tc_station_cards cards = {.open = mem_open, .arg = &m, .count = n};
            struct tc_station_run_opts o = {.jobs = jobs[i]};
            struct tc_station_stats st;
            double c0 = cpu_seconds();
            if (tc_station_run(l.st, &cards, &o, &st) != TC_OK || st.provisioned != n)
                die("batch run");
            cpu[s] = (cpu_seconds() - c0) / (double)n;
            best[s] = (double)n / st.seconds;
        }
        /* median of the runs */
        for (unsigned a = 0; a < runs; a++)
            for (unsigned b = a + 1; b < runs; b++)
                if (best[b] < best[a]) {
                    double t = best[a];
                    best[a] = best[b];
                    best[b] = t;
                }
        sort3(cpu, runs);
        char name[96];
        (void)snprintf(name, sizeof name, "batch of %zu, %u jobs (devices/s)", n, jobs[i]);
        bench_report(name, best[runs / 2], "crypto floor x 2 cores", 2 * floor1);
        /* CPU time of the whole process per device: what bounds the rate on
         * 2 cores when the line is not waiting on disk. */
        (void)printf("  process CPU per device %.2f ms (bounds 2 cores at %.0f devices/s)\n",
                     cpu[runs / 2] * 1e3, cpu[runs / 2] > 0 ? 2.0 / cpu[runs / 2] : 0);
    }
    (void)printf("single-thread device/s %.1f, floor %.1f/s, device cost = %.1f x floor\n", one,
                 floor1, one > 0 ? floor1 / one : 0);
    EVP_MAC_CTX_free(f.cmac);
    EVP_MAC_free(f.mac);
    EVP_PKEY_free(f.ca);
    teardown(&l);
    return 0;
}
