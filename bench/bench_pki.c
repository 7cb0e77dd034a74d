/*
 * Device certificates issued per second: proof-of-possession check, TBS
 * encoded, signature by the batch CA's signer, certificate assembled. The
 * floor is the raw sign rate of the same batch key in the same run, with
 * the same number of threads (the one signature an issuance cannot
 * avoid): for the software key, the OpenSSL signature through the soft
 * signer; for the key in SoftHSM2, bare C_SignInit + C_Sign(CKM_ECDSA) of
 * a 32-byte digest on a session of the thread's own, outside trustchain's
 * pool and signer, with the key's working copy (the object trustchain signs
 * with, docs/hsm.md); with two threads also on the token object itself. Measured single-threaded
 * through bench_compare, per second of CPU time (which other load distorts less), and with two
 * threads sharing the signer.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#include <trustchain/hsm.h>
#include <trustchain/pki.h>

#include "hsm/hsm_int.h"

#define NDEV    256u
#define THREADS 2u

struct device {
    char eid[33];
    uint8_t spki[TC_SPKI_MAX];
    size_t spki_len;
    uint8_t nonce[TC_PKI_NONCE_LEN];
    uint8_t pop[TC_SIG_MAX];
    size_t pop_len;
};

struct state {
    struct tc_pki_issuer *iss;
    const struct tc_signer *signer;
    struct device *devs;
    size_t next;
    struct tc_buf der;
    uint8_t tbs[420]; /* about the size of a device TBSCertificate */
    int64_t prod;
    /* Raw PKCS#11 floor: the token, the batch private key, a session of
     * this state's own (0 for the software key). */
    struct tc_hsm *h;
    tc_hsm_obj raw_key;
    tc_hsm_obj token_key; /* the same key as the token stores it */
    CK_SESSION_HANDLE raw_session;
};

static void die(const char *what)
{
    char msg[400];
    tc_error_format(msg, sizeof msg);
    (void)fprintf(stderr, "bench_pki: %s: %s\n", what, msg);
    exit(1);
}

static int issue_one(void *arg)
{
    struct state *s = arg;
    struct device *d = &s->devs[s->next++ % NDEV];
    struct tc_pki_device_req r = {.eid = d->eid,
                                  .spki = d->spki,
                                  .spki_len = d->spki_len,
                                  .nonce = d->nonce,
                                  .pop = d->pop,
                                  .pop_len = d->pop_len,
                                  .station_id = "bench-station",
                                  .production_time = s->prod};
    tc_buf_reset(&s->der);
    if (tc_pki_device_issue(s->iss, &r, &s->der, NULL) != TC_OK)
        return 1;
    bench_consume(s->der.data, s->der.len);
    return 0;
}

static int sign_one(void *arg)
{
    struct state *s = arg;
    uint8_t sig[TC_SIG_MAX];
    size_t sl = 0;
    s->tbs[0]++;
    if (s->signer->sign(s->signer->ctx, s->tbs, sizeof s->tbs, sig, sizeof sig, &sl) != TC_OK)
        return 1;
    bench_consume(sig, sl);
    return 0;
}

/* The bare PKCS#11 signature of a digest with the batch key object `key`. */
static int raw_sign_with(struct state *s, tc_hsm_obj key)
{
    uint8_t md[32] = {0}, sig[72];
    CK_ULONG n = sizeof sig;
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    md[0] = s->tbs[0]++;
    if (s->h->f->C_SignInit(s->raw_session, &m, key) != CKR_OK ||
        s->h->f->C_Sign(s->raw_session, md, sizeof md, sig, &n) != CKR_OK)
        return 1;
    bench_consume(sig, n);
    return 0;
}

/* With the working copy trustchain signs with. */
static int raw_sign_one(void *arg)
{
    struct state *s = arg;
    return raw_sign_with(s, s->raw_key);
}

/* With the token object itself: what an application gets from the key as
 * stored, without trustchain's working copy. */
static int raw_sign_token(void *arg)
{
    struct state *s = arg;
    return raw_sign_with(s, s->token_key);
}

static double median(double *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

static double cpu_now(void)
{
    struct timespec t;
    (void)clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One sample: operations per second of this thread's CPU time. */
static double cpu_sample(bench_fn fn, void *arg)
{
    struct timespec a, z;
    unsigned long ops = 0;
    double wall0 = bench_now();
    (void)clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    do {
        for (int i = 0; i < 50; i++, ops++)
            if (fn(arg) != 0)
                die("operation failed");
    } while (bench_now() - wall0 < bench_min_seconds());
    (void)clock_gettime(CLOCK_THREAD_CPUTIME_ID, &z);
    double cpu = (double)(z.tv_sec - a.tv_sec) + (double)(z.tv_nsec - a.tv_nsec) * 1e-9;
    return cpu > 0 ? (double)ops / cpu : 0.0;
}

/* Operations per second of this thread's CPU time, for fn and its floor
 * with samples interleaved (fn, floor, fn, ...) so drift on the machine
 * affects both alike: on a machine shared with other work, wall-clock
 * rates fall with the load while these mostly do not. Medians. */
static void cpu_rates(bench_fn fn, bench_fn floor_fn, void *arg, double *op, double *floor)
{
    unsigned n = bench_samples();
    double a[101], b[101];
    for (unsigned k = 0; k < n; k++) {
        a[k] = cpu_sample(fn, arg);
        b[k] = cpu_sample(floor_fn, arg);
    }
    *op = median(a, n);
    *floor = median(b, n);
}

/* ------------------------------------------------------------ threads */

struct worker {
    struct state st;
    bench_fn fn;
    volatile const int *stop;
    unsigned long ops;
    int rc;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    while (!*w->stop) {
        if (w->fn(&w->st) != 0) {
            w->rc = 1;
            break;
        }
        w->ops++;
    }
    return NULL;
}

/* ops/s of `fn` run by THREADS threads for the sample time, median of the
 * configured samples. Each thread has its own state (issuer) over the same
 * signer. */
/* *per_cpu: operations per second of the process's CPU time over the run
 * (if it stays at the one-thread figure, the threads do not contend and
 * N free cores give N times the one-core rate). */
static double run_threads(struct worker *w, bench_fn fn, double *per_cpu)
{
    unsigned n = bench_samples();
    double rates[101], cpu_rates[101];
    for (unsigned k = 0; k < n; k++) {
        volatile int stop = 0;
        pthread_t th[THREADS];
        for (unsigned i = 0; i < THREADS; i++) {
            w[i].fn = fn;
            w[i].stop = &stop;
            w[i].ops = 0;
            w[i].rc = 0;
        }
        double t0 = bench_now(), c0 = cpu_now();
        for (unsigned i = 0; i < THREADS; i++)
            if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
                die("pthread_create");
        struct timespec ts = {
            .tv_sec = (time_t)bench_min_seconds(),
            .tv_nsec = (long)((bench_min_seconds() - (double)(time_t)bench_min_seconds()) * 1e9)};
        (void)nanosleep(&ts, NULL);
        stop = 1;
        unsigned long total = 0;
        for (unsigned i = 0; i < THREADS; i++) {
            (void)pthread_join(th[i], NULL);
            if (w[i].rc != 0)
                die("threaded operation failed");
            total += w[i].ops;
        }
        rates[k] = (double)total / (bench_now() - t0);
        double cpu = cpu_now() - c0;
        cpu_rates[k] = cpu > 0 ? (double)total / cpu : 0.0;
    }
    *per_cpu = median(cpu_rates, n);
    return median(rates, n);
}

/* ------------------------------------------------------------ setup */

static void make_devices(struct device *devs)
{
    for (unsigned i = 0; i < NDEV; i++) {
        struct device *d = &devs[i];
        char base[33];
        struct tc_signer k;
        uint8_t msg[TC_PKI_POP_MSG_LEN];
        (void)snprintf(base, sizeof base, "890490321234%018u", i);
        if (tc_pki_eid_complete(base, d->eid) != TC_OK ||
            tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &k) != TC_OK ||
            k.public_key(k.ctx, d->spki, sizeof d->spki, &d->spki_len) != TC_OK ||
            tc_random(d->nonce, sizeof d->nonce) != TC_OK ||
            tc_pki_pop_message(d->eid, d->spki, d->spki_len, d->nonce, msg) != TC_OK ||
            k.sign(k.ctx, msg, sizeof msg, d->pop, sizeof d->pop, &d->pop_len) != TC_OK)
            die("device setup");
        tc_signer_soft_free(&k);
    }
}

static void run_with(const char *label, struct tc_pki_issuer *root, const struct tc_signer *batch,
                     struct tc_hsm *h, tc_hsm_obj raw_key, struct device *devs, int64_t now)
{
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    struct tc_buf bder;
    tc_buf_init_heap(&bder, TC_PKI_CERT_MAX);
    if (batch->public_key(batch->ctx, spki, sizeof spki, &sl) != TC_OK)
        die("batch public key");
    struct tc_pki_batch_params bp = {.batch_id = "BENCH",
                                     .eid_prefix = "890490321234",
                                     .manufacturer = "Bench Devices",
                                     .not_before = now - 86400,
                                     .not_after = now + 86400 * 365};
    if (tc_pki_batch_ca_create(root, spki, sl, &bp, &bder) != TC_OK)
        die("batch CA");

    struct worker w[THREADS];
    memset(w, 0, sizeof w);
    for (unsigned i = 0; i < THREADS; i++) {
        struct state *s = &w[i].st;
        if (tc_pki_issuer_new(batch, bder.data, bder.len, &s->iss) != TC_OK)
            die("issuer");
        s->signer = batch;
        s->devs = devs;
        s->next = i * 7u;
        s->prod = now;
        tc_buf_init_heap(&s->der, TC_PKI_CERT_MAX);
        memset(s->tbs, 0x5A, sizeof s->tbs);
        s->h = h;
        /* The object the signer computes with: the key's session working
         * copy (hsm_int.h), made when tc_hsm_signer found it. */
        s->raw_key = h != NULL ? tc_hsm_work_obj(h, raw_key) : raw_key;
        s->token_key = raw_key;
        if (h != NULL && h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                                             NULL, &s->raw_session) != CKR_OK)
            die("C_OpenSession for the raw floor");
    }
    bench_fn floor_fn = h != NULL ? raw_sign_one : sign_one;
    char name[96], floor_name[96];
    (void)snprintf(name, sizeof name, "device cert + PoP (%s, 1 thread)", label);
    (void)snprintf(floor_name, sizeof floor_name, "%s, same key",
                   h != NULL ? "raw C_Sign" : "raw sign");
    double ratio = bench_compare(name, issue_one, &w[0].st, floor_name, floor_fn, &w[0].st);
    (void)printf("  -> issuance runs at %.2f of the raw sign rate (target >= 0.60)\n",
                 ratio > 0 ? 1.0 / ratio : 0.0);
    double cc = 0, cs = 0;
    cpu_rates(issue_one, floor_fn, &w[0].st, &cc, &cs);
    (void)snprintf(name, sizeof name, "device cert + PoP (%s, per CPU-second)", label);
    (void)snprintf(floor_name, sizeof floor_name, "%s per CPU-second",
                   h != NULL ? "raw C_Sign" : "raw sign");
    bench_report(name, cc, floor_name, cs);
    (void)printf("  -> %.2f of the raw sign rate; %.0f certs/s per core of CPU time\n",
                 cs > 0 ? cc / cs : 0.0, cc);
    double certs_cpu = 0, signs_cpu = 0;
    double certs = run_threads(w, issue_one, &certs_cpu);
    double signs = run_threads(w, floor_fn, &signs_cpu);
    (void)snprintf(name, sizeof name, "device cert + PoP (%s, %u threads)", label, THREADS);
    (void)snprintf(floor_name, sizeof floor_name, "%s, %u threads",
                   h != NULL ? "raw C_Sign" : "raw sign", THREADS);
    bench_report(name, certs, floor_name, signs);
    (void)printf("  -> %.0f certs/s on %u threads (target >= 5000), %.2f of the raw sign rate\n",
                 certs, THREADS, signs > 0 ? certs / signs : 0.0);
    (void)printf("  -> %u threads: %.0f certs and %.0f raw signs per CPU-second\n", THREADS,
                 certs_cpu, signs_cpu);
    if (h != NULL) {
        /* The floor above signs with the working copy (docs/hsm.md), the
         * fastest this token signs with the key; beside it, the key as the
         * token stores it. */
        double tok_cpu = 0;
        double tok = run_threads(w, raw_sign_token, &tok_cpu);
        (void)snprintf(floor_name, sizeof floor_name, "raw C_Sign on the token object, %u threads",
                       THREADS);
        bench_report(name, certs, floor_name, tok);
        (void)printf("  -> %.2f of the token object's raw sign rate\n",
                     tok > 0 ? certs / tok : 0.0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        tc_pki_issuer_free(w[i].st.iss);
        tc_buf_free(&w[i].st.der);
        if (h != NULL)
            (void)h->f->C_CloseSession(w[i].st.raw_session);
    }
    tc_buf_free(&bder);
}

/* SoftHSM2 with its own token in a scratch directory. */
static void run_softhsm(struct tc_pki_issuer *root, struct device *devs, int64_t now)
{
    if (access(TC_HSM_DEFAULT_MODULE, R_OK) != 0) {
        (void)printf("SoftHSM2 not installed (%s): HSM figures skipped\n", TC_HSM_DEFAULT_MODULE);
        return;
    }
    char dir[] = "/tmp/tc-bench-pki-XXXXXX";
    if (mkdtemp(dir) == NULL)
        die("mkdtemp");
    struct tc_hsm_workspace ws;
    struct tc_hsm *h = NULL;
    struct tc_signer s;
    static const char pin[] = "1234", so_pin[] = "12345678";
    tc_hsm_obj priv, pub;
    if (tc_hsm_workspace_create(dir, NULL, "bench", &ws) != TC_OK)
        die("hsm workspace");
    if (tc_hsm_init_token(ws.module_path, ws.softhsm_conf, "bench", so_pin, strlen(so_pin), pin,
                          strlen(pin)) != TC_OK)
        die("hsm init token");
    struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                .softhsm_conf = ws.softhsm_conf,
                                .token_label = "bench",
                                .pin = pin,
                                .pin_len = strlen(pin),
                                .pool_size = THREADS * 2};
    if (tc_hsm_open(&cfg, &h) != TC_OK)
        die("hsm open");
    if (tc_hsm_keypair_generate(h, TC_SIG_ECDSA_P256_SHA256, TC_HSM_LABEL_BATCH_CA "BENCH", &priv,
                                &pub) != TC_OK ||
        tc_hsm_signer(h, TC_HSM_LABEL_BATCH_CA "BENCH", &s) != TC_OK)
        die("hsm batch key");
    run_with("SoftHSM2", root, &s, h, priv, devs, now);
    tc_hsm_signer_free(&s);
    tc_hsm_close(h);
    char cmd[128];
    (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        (void)fprintf(stderr, "bench_pki: could not remove %s\n", dir);
}

int main(void)
{
    bench_init("bench_pki");
    int64_t now = (int64_t)time(NULL);
    struct device *devs = calloc(NDEV, sizeof *devs);
    if (devs == NULL)
        die("calloc");
    make_devices(devs);

    struct tc_signer root_key, batch_key;
    struct tc_buf rder;
    struct tc_pki_issuer *root = NULL;
    tc_buf_init_heap(&rder, TC_PKI_CERT_MAX);
    if (tc_signer_soft_generate(TC_SIG_ECDSA_P384_SHA384, &root_key) != TC_OK ||
        tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &batch_key) != TC_OK)
        die("keys");
    struct tc_pki_root_params rp = {.common_name = "Bench Root",
                                    .organization = "Bench Devices",
                                    .not_before = now - 86400,
                                    .not_after = now + 86400 * 3650};
    if (tc_pki_root_create(&root_key, &rp, &rder) != TC_OK ||
        tc_pki_issuer_new(&root_key, rder.data, rder.len, &root) != TC_OK)
        die("root");

    run_with("software key", root, &batch_key, NULL, 0, devs, now);
    run_softhsm(root, devs, now);

    tc_pki_issuer_free(root);
    tc_buf_free(&rder);
    tc_signer_soft_free(&root_key);
    tc_signer_soft_free(&batch_key);
    free(devs);
    return 0;
}
