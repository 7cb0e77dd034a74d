/*
 * HSM figures through SoftHSM2 (own config and token in a temporary
 * directory), each beside its floor, the raw PKCS#11 calls the operation
 * cannot avoid, measured in the same run:
 *
 *   - diversified keysets/s: tc_hsm_diversify (3 x C_DeriveKey with our
 *     template and labels) + destroy, vs 3 x C_DeriveKey + 3 x C_DestroyObject
 *     on one session with a minimal template;
 *   - PUT KEY blocks/s: tc_hsm_wrap_keyset_key (a derived key's own object
 *     is not extractable, so the block is made from a copy derived for it:
 *     pool + C_DeriveKey + C_WrapKey CBC + C_DestroyObject) vs those three
 *     calls on one session with a minimal template, and, to show what the
 *     policy costs, vs C_WrapKey alone of an extractable key; and whole PUT
 *     KEY data fields (3 blocks + 3 KCVs, through the SCP03 key provider
 *     and tc_scp03_put_key_data) vs 3 x (C_DeriveKey + C_WrapKey +
 *     C_DestroyObject + C_Encrypt);
 *   - ECDSA P-256 signatures/s through the tc_signer (SHA-256 + pool +
 *     C_Sign + DER), one thread and two threads sharing a pool of 2, vs
 *     C_Sign(CKM_ECDSA) on a private session per thread; and, for scale,
 *     the same signature with a session and login per operation (no pool).
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <trustchain/hsm.h>
#include <trustchain/scp03.h>

#include "bench.h"
#include "hsm/hsm_int.h"

#define PIN "bench-pin-1234"

static char tmpdir[256];
static struct tc_hsm *H;
static tc_hsm_obj master;
static struct tc_hsm_keyset transport, device;
static CK_OBJECT_HANDLE extractable_key; /* for the C_WrapKey-only reference */
static uint8_t eid[16] = {0x89, 0x04, 0x90, 0x32, 0x12, 0x34, 0x51, 0x23,
                          0x45, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x35};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void die(const char *what)
{
    char msg[400];
    tc_error_format(msg, sizeof msg);
    (void)fprintf(stderr, "bench_hsm: %s: %s\n", what, msg);
    tc_hsm_close(H);
    if (tmpdir[0] != '\0')
        (void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    exit(1);
}

/* ------------------------------------------------------------ diversify */

static int op_diversify(void *arg)
{
    (void)arg;
    struct tc_hsm_keyset ks;
    eid[15] = (uint8_t)(eid[15] == 0x99 ? 0x00 : eid[15] + 1);
    if ((eid[15] & 0x0F) > 9)
        eid[15] = (uint8_t)((eid[15] & 0xF0) + 0x10);
    if (tc_hsm_diversify(H, master, eid, 16, &ks) != TC_OK)
        return 1;
    tc_hsm_keyset_destroy(H, &ks);
    return 0;
}

static int floor_diversify(void *arg)
{
    (void)arg;
    static CK_BBOOL f = CK_FALSE, t = CK_TRUE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 16;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &f, sizeof f},
        {CKA_PRIVATE, &f, sizeof f},       {CKA_SENSITIVE, &t, sizeof t},
    };
    uint8_t data[16] = {1};
    CK_KEY_DERIVATION_STRING_DATA p = {data, sizeof data};
    CK_MECHANISM m = {CKM_AES_ECB_ENCRYPT_DATA, &p, sizeof p};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(H);
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
        data[0] = (uint8_t)(i + 1);
        if (H->f->C_DeriveKey(s, &m, tc_hsm_work_obj(H, master), tmpl, TC_ARRAY_LEN(tmpl), &o) !=
                CKR_OK ||
            H->f->C_DestroyObject(s, o) != CKR_OK)
            rc = 1;
    }
    tc_hsm_session_release(H, s);
    return rc;
}

/* ------------------------------------------------------------ wrap */

static int op_wrap(void *arg)
{
    (void)arg;
    uint8_t out[32];
    size_t n = 0;
    if (tc_hsm_wrap_keyset_key(H, transport.dek, &device, TC_HSM_KEY_ENC, out, sizeof out, &n) !=
        TC_OK)
        return 1;
    bench_consume(out, n);
    return 0;
}

/* C_DeriveKey (extractable session copy) + C_WrapKey + C_DestroyObject. */
static CK_RV raw_block(CK_SESSION_HANDLE s, uint8_t type, uint8_t out[32], CK_ULONG *n)
{
    static CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 16;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &f, sizeof f},
        {CKA_PRIVATE, &f, sizeof f},       {CKA_SENSITIVE, &t, sizeof t},
        {CKA_EXTRACTABLE, &t, sizeof t},
    };
    uint8_t data[16] = {type};
    CK_KEY_DERIVATION_STRING_DATA p = {data, sizeof data};
    CK_MECHANISM dm = {CKM_AES_ECB_ENCRYPT_DATA, &p, sizeof p};
    uint8_t iv[16] = {0};
    CK_MECHANISM wm = {CKM_AES_CBC, iv, sizeof iv};
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    CK_RV rv = H->f->C_DeriveKey(s, &dm, tc_hsm_work_obj(H, master), tmpl, TC_ARRAY_LEN(tmpl), &o);
    if (rv != CKR_OK)
        return rv;
    rv = H->f->C_WrapKey(s, &wm, tc_hsm_work_obj(H, transport.dek), o, out, n);
    CK_RV dv = H->f->C_DestroyObject(s, o);
    return rv != CKR_OK ? rv : dv;
}

static int floor_wrap(void *arg)
{
    (void)arg;
    uint8_t out[32];
    CK_ULONG n = sizeof out;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(H);
    CK_RV rv = raw_block(s, 1, out, &n);
    tc_hsm_session_release(H, s);
    bench_consume(out, n);
    return rv == CKR_OK ? 0 : 1;
}

static int floor_wrap_only(void *arg)
{
    (void)arg;
    uint8_t iv[16] = {0};
    uint8_t out[32];
    CK_ULONG n = sizeof out;
    CK_MECHANISM m = {CKM_AES_CBC, iv, sizeof iv};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(H);
    CK_RV rv = H->f->C_WrapKey(s, &m, tc_hsm_work_obj(H, transport.dek), extractable_key, out, &n);
    tc_hsm_session_release(H, s);
    bench_consume(out, n);
    return rv == CKR_OK ? 0 : 1;
}

struct put_key_case {
    struct tc_scp03_key_provider cur, next;
    struct tc_hsm_scp03_provider cur_m, next_m;
};

static int op_put_key(void *arg)
{
    struct put_key_case *c = arg;
    uint8_t buf[TC_SCP03_PUT_KEY_DATA_MAX];
    uint8_t kcv[TC_SCP03_KCVS_LEN];
    struct tc_buf b;
    tc_buf_init_fixed(&b, buf, sizeof buf);
    if (tc_scp03_put_key_data(&c->cur, 0x30, &c->next, 0x01, &b, kcv) != TC_OK)
        return 1;
    bench_consume(buf, b.len);
    return 0;
}

static int floor_put_key(void *arg)
{
    (void)arg;
    uint8_t iv[16] = {0};
    uint8_t ones[16], out[32];
    memset(ones, 1, sizeof ones);
    (void)iv;
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    const CK_OBJECT_HANDLE keys[3] = {device.enc, device.mac, device.dek};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(H);
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        CK_ULONG n = sizeof out;
        if (raw_block(s, (uint8_t)(i + 1), out, &n) != CKR_OK)
            rc = 1;
        n = sizeof out;
        if (H->f->C_EncryptInit(s, &ecb, keys[i]) != CKR_OK ||
            H->f->C_Encrypt(s, ones, sizeof ones, out, &n) != CKR_OK)
            rc = 1;
    }
    tc_hsm_session_release(H, s);
    bench_consume(out, sizeof out);
    return rc;
}

/* ------------------------------------------------------------ sign */

static struct tc_signer signer;
static tc_hsm_obj sign_priv;
static const uint8_t tbs[300] = {0x30, 0x82, 0x01, 0x28};

static int op_sign(void *arg)
{
    (void)arg;
    uint8_t sig[TC_SIG_MAX];
    size_t n = 0;
    if (signer.sign(signer.ctx, tbs, sizeof tbs, sig, sizeof sig, &n) != TC_OK)
        return 1;
    bench_consume(sig, n);
    return 0;
}

/* The raw PKCS#11 signature of a 32-byte digest on a session of its own. */
static int raw_sign(CK_SESSION_HANDLE s)
{
    uint8_t md[32] = {0x5a};
    uint8_t sig[64];
    CK_ULONG n = sizeof sig;
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    if (H->f->C_SignInit(s, &m, tc_hsm_work_obj(H, sign_priv)) != CKR_OK ||
        H->f->C_Sign(s, md, sizeof md, sig, &n) != CKR_OK)
        return 1;
    bench_consume(sig, n);
    return 0;
}

static CK_SESSION_HANDLE floor_sessions[2];

static int floor_sign(void *arg)
{
    (void)arg;
    return raw_sign(floor_sessions[0]);
}

/* Two threads for a fixed time; ops/s over both. */
struct thr {
    bool floor;
    int idx;
    double until;
    unsigned long ops;
    int err;
};

static void *thr_run(void *arg)
{
    struct thr *t = arg;
    while (bench_now() < t->until) {
        for (int i = 0; i < 8; i++) {
            int rc = t->floor ? raw_sign(floor_sessions[t->idx]) : op_sign(NULL);
            if (rc != 0) {
                t->err = 1;
                return NULL;
            }
            t->ops++;
        }
    }
    return NULL;
}

static double two_threads(bool floor)
{
    pthread_t th[2];
    struct thr t[2];
    double start = bench_now();
    double until = start + bench_min_seconds();
    for (int i = 0; i < 2; i++) {
        t[i] = (struct thr){.floor = floor, .idx = i, .until = until};
        if (pthread_create(&th[i], NULL, thr_run, &t[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < 2; i++)
        (void)pthread_join(th[i], NULL);
    double el = bench_now() - start;
    if (t[0].err || t[1].err)
        die("2-thread signing");
    return (double)(t[0].ops + t[1].ops) / el;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void compare_two_threads(void)
{
    unsigned n = bench_samples();
    double *ours = calloc(n, sizeof *ours);
    double *floors = calloc(n, sizeof *floors);
    if (ours == NULL || floors == NULL)
        die("calloc");
    (void)two_threads(false); /* warm up */
    for (unsigned i = 0; i < n; i++) {
        ours[i] = two_threads(false);
        floors[i] = two_threads(true);
    }
    qsort(ours, n, sizeof *ours, cmp_double);
    qsort(floors, n, sizeof *floors, cmp_double);
    bench_report("ECDSA P-256 sign, 2 threads, pool", ours[n / 2],
                 "C_Sign, 2 threads, own sessions", floors[n / 2]);
    free(ours);
    free(floors);
}

/* ------------------------------------------------------------ no pool */

/* What the pool avoids: a session opened and a login made for every
 * signature (on a second token, so that the pool's login does not cover
 * it), the key looked up by label each time. */
static CK_SLOT_ID nopool_slot;

static int op_sign_nopool(void *arg)
{
    (void)arg;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    char label[] = "tc:batch-ca:nopool";
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, label, sizeof label - 1}};
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    CK_ULONG found = 0;
    uint8_t md[32] = {0x5a}, sig[64];
    CK_ULONG n = sizeof sig;
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    int rc = 1;
    if (H->f->C_OpenSession(nopool_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) !=
        CKR_OK)
        return 1;
    if (H->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)(uintptr_t)PIN, (CK_ULONG)strlen(PIN)) !=
        CKR_OK)
        goto out;
    if (H->f->C_FindObjectsInit(s, t, 2) != CKR_OK)
        goto out;
    CK_RV rv = H->f->C_FindObjects(s, &key, 1, &found);
    (void)H->f->C_FindObjectsFinal(s);
    if (rv != CKR_OK || found != 1)
        goto out;
    if (H->f->C_SignInit(s, &m, key) == CKR_OK && H->f->C_Sign(s, md, sizeof md, sig, &n) == CKR_OK)
        rc = 0;
    bench_consume(sig, n);
out:
    (void)H->f->C_Logout(s);
    (void)H->f->C_CloseSession(s);
    return rc;
}

/* ------------------------------------------------------------ main */

int main(void)
{
    bench_init("bench_hsm");
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    (void)snprintf(tmpdir, sizeof tmpdir, "%s/tc-bench-hsm-XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        (void)fprintf(stderr, "bench_hsm: mkdtemp failed\n");
        return 1;
    }
    char wsdir[300];
    (void)snprintf(wsdir, sizeof wsdir, "%s/ws", tmpdir);
    struct tc_hsm_workspace ws;
    if (tc_hsm_workspace_create(wsdir, NULL, "bench", &ws) != TC_OK)
        die("workspace");
    if (tc_hsm_init_token(ws.module_path, ws.softhsm_conf, "bench", "bench-so-1234", 13, PIN,
                          strlen(PIN)) != TC_OK)
        die("init token");
    if (tc_hsm_init_token(ws.module_path, ws.softhsm_conf, "nopool", "bench-so-1234", 13, PIN,
                          strlen(PIN)) != TC_OK)
        die("init second token");
    struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                .softhsm_conf = ws.softhsm_conf,
                                .token_label = "bench",
                                .pin = PIN,
                                .pin_len = strlen(PIN),
                                .pool_size = 2};
    if (tc_hsm_open(&cfg, &H) != TC_OK)
        die("open");
    uint8_t k[16];
    memset(k, 0x40, sizeof k);
    /* Found by label, as the line finds them: the keys get their working
     * copies (docs/hsm.md), which the floors below compute with too. */
    if (tc_hsm_master_generate(H, "bench", 16, &master) != TC_OK ||
        tc_hsm_transport_import(H, "bench", 0x30, k, k, k, 16, &transport) != TC_OK ||
        tc_hsm_find(H, TC_HSM_KIND_SECRET, TC_HSM_LABEL_MASTER "bench", &master) != TC_OK ||
        tc_hsm_transport_find(H, "bench", 0x30, &transport) != TC_OK ||
        tc_hsm_diversify(H, master, eid, 16, &device) != TC_OK)
        die("keys");
    tc_hsm_obj pub = 0;
    if (tc_hsm_keypair_generate(H, TC_SIG_ECDSA_P256_SHA256, "tc:batch-ca:bench", &sign_priv,
                                &pub) != TC_OK ||
        tc_hsm_signer(H, "tc:batch-ca:bench", &signer) != TC_OK)
        die("signing key");
    /* Floor sessions of their own (not from the pool); the login of the
     * pool covers them (PKCS#11 2.40 §5.6: login is per application). */
    for (int i = 0; i < 2; i++)
        if (H->f->C_OpenSession(H->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                &floor_sessions[i]) != CKR_OK)
            die("C_OpenSession");

    bench_compare("diversified keyset (3 x derive)", op_diversify, NULL,
                  "3 x C_DeriveKey + C_DestroyObject", floor_diversify, NULL);
    {
        CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
        CK_SESSION_HANDLE s = tc_hsm_session_acquire(H);
        /* An extractable copy kept for the C_WrapKey-only reference. */
        static CK_BBOOL t = CK_TRUE, f = CK_FALSE;
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_ULONG len = 16;
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &kt, sizeof kt},
            {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &f, sizeof f},
            {CKA_SENSITIVE, &t, sizeof t},     {CKA_EXTRACTABLE, &t, sizeof t},
        };
        uint8_t data[16] = {9};
        CK_KEY_DERIVATION_STRING_DATA p = {data, sizeof data};
        CK_MECHANISM dm = {CKM_AES_ECB_ENCRYPT_DATA, &p, sizeof p};
        if (H->f->C_DeriveKey(s, &dm, tc_hsm_work_obj(H, master), tmpl, TC_ARRAY_LEN(tmpl), &o) !=
            CKR_OK)
            die("extractable reference key");
        extractable_key = o;
        tc_hsm_session_release(H, s);
    }
    bench_compare("PUT KEY block (tc_hsm_wrap_keyset_key)", op_wrap, NULL,
                  "C_DeriveKey + C_WrapKey + C_DestroyObject", floor_wrap, NULL);
    bench_compare("PUT KEY block (tc_hsm_wrap_keyset_key)", op_wrap, NULL,
                  "C_WrapKey alone, extractable key", floor_wrap_only, NULL);
    struct put_key_case pk;
    tc_hsm_scp03_provider_init(&pk.cur_m, H, &pk.cur);
    tc_hsm_scp03_provider_init(&pk.next_m, H, &pk.next);
    if (tc_hsm_scp03_provider_add(&pk.cur_m, 0x30, &transport) != TC_OK ||
        tc_hsm_scp03_provider_add(&pk.next_m, 0x01, &device) != TC_OK)
        die("providers");
    bench_compare("PUT KEY data, keyset (3 blocks + 3 KCV)", op_put_key, &pk,
                  "3 x (derive + wrap + destroy + C_Encrypt)", floor_put_key, NULL);
    bench_compare("ECDSA P-256 sign, 1 thread, tc_signer", op_sign, NULL,
                  "C_Sign CKM_ECDSA, own session", floor_sign, NULL);
    compare_two_threads();

    /* The same signature without the pool. The key pair is made through a
     * short-lived handle on the second token, closed before measuring. */
    {
        struct tc_hsm *h2 = NULL;
        struct tc_hsm_config c2 = cfg;
        c2.token_label = "nopool";
        c2.pool_size = 1;
        tc_hsm_obj p2 = 0, q2 = 0;
        if (tc_hsm_open(&c2, &h2) != TC_OK ||
            tc_hsm_keypair_generate(h2, TC_SIG_ECDSA_P256_SHA256, "tc:batch-ca:nopool", &p2, &q2) !=
                TC_OK)
            die("second token");
        nopool_slot = h2->slot;
        tc_hsm_close(h2);
        double pooled = bench_run(op_sign, NULL);
        double nopool = bench_run(op_sign_nopool, NULL);
        bench_report("ECDSA P-256 sign, pool (reference)", pooled, NULL, 0);
        bench_report("  without pool: open+login+find+sign+logout+close", nopool, NULL, 0);
        (void)printf("  the pool is %.1fx faster than a session and login per signature\n",
                     pooled / nopool);
    }

    for (int i = 0; i < 2; i++)
        (void)H->f->C_CloseSession(floor_sessions[i]);
    tc_hsm_signer_free(&signer);
    tc_hsm_keyset_destroy(H, &device);
    tc_hsm_close(H);
    (void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
