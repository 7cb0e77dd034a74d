/*
 * ota tests: the trust store (chain + root CRL + batch CRL through
 * tc_pki_verify, workspace loading) and the TLS 1.3 channel against real
 * OpenSSL clients on 127.0.0.1: a good device, then every bad client the
 * server must refuse with bounded time (no certificate, TLS 1.2, plaintext
 * garbage, a silent peer, a slow sender, oversized headers and bodies, a
 * revoked device, a revoked batch, an expired batch CA, a foreign root) and
 * the connection cap. Each rejection is checked in the server's counters.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <trustchain/crypto.h>
#include <trustchain/ota.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "harness.h"
#include "ota_fixture.h"

#define DAY    INT64_C(86400)
#define MFR    "Acme Devices"
#define BATCH  "B-OTA-A"
#define PREFIX "890490321234"
#define EID1   "89049032123451234512345678901235"

/* test_ota_threads builds this file with the connections on loop threads. */
#ifndef OTA_TEST_THREADS
#define OTA_TEST_THREADS 0
#endif

static int64_t T0;

struct ca {
    struct tc_signer key;
    struct tc_buf cert, crl;
    struct tc_pki_issuer *iss;
};

struct device {
    EVP_PKEY *pkey;
    X509 *x509;
    struct tc_buf der;
    uint8_t serial[TC_PKI_SERIAL_LEN];
};

static struct fixture {
    bool ready;
    struct ca root, batch, batch_b, batch_old, froot, fbatch;
    struct device good, revoked, in_b, old, foreign, good_b2;
    struct tc_buf root_crl_b; /* the root CRL once batch B is revoked */
    EVP_PKEY *srv_key;
    X509 *srv_cert;
} F;

static struct tc_buf new_buf(void)
{
    struct tc_buf b;
    tc_buf_init_heap(&b, 1u << 20);
    return b;
}

static bool root_new(struct ca *r, const char *cn)
{
    struct tc_pki_root_params rp = {
        .common_name = cn, .organization = MFR, .not_before = T0, .not_after = T0 + 7300 * DAY};
    r->cert = new_buf();
    return tc_signer_soft_generate(TC_SIG_ECDSA_P384_SHA384, &r->key) == TC_OK &&
           tc_pki_root_create(&r->key, &rp, &r->cert) == TC_OK &&
           tc_pki_issuer_new(&r->key, r->cert.data, r->cert.len, &r->iss) == TC_OK;
}

static bool crl_new(struct tc_pki_issuer *iss, const struct tc_pki_revoked *list, size_t n,
                    struct tc_buf *out)
{
    *out = new_buf();
    return tc_pki_crl_create(iss, 1, T0 + DAY, T0 + 400 * DAY, list, n, out) == TC_OK;
}

static bool batch_new(struct ca *root, struct ca *b, const char *id, const char *prefix, int64_t nb,
                      int64_t na)
{
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    struct tc_pki_batch_params bp = {.batch_id = id,
                                     .eid_prefix = prefix,
                                     .manufacturer = MFR,
                                     .not_before = nb,
                                     .not_after = na};
    b->cert = new_buf();
    bool ok = tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &b->key) == TC_OK &&
              b->key.public_key(b->key.ctx, spki, sizeof spki, &sl) == TC_OK &&
              tc_pki_batch_ca_create(root->iss, spki, sl, &bp, &b->cert) == TC_OK &&
              tc_pki_issuer_new(&b->key, b->cert.data, b->cert.len, &b->iss) == TC_OK;
    if (!ok) {
        char m[300];
        tc_error_format(m, sizeof m);
        (void)fprintf(stderr, "batch %s: %s\n", id, m);
    }
    return ok && crl_new(b->iss, NULL, 0, &b->crl);
}

static bool device_new(struct ca *b, const char *eid30, int64_t prod, struct device *d)
{
    char eid[33];
    if (tc_pki_eid_complete(eid30, eid) != TC_OK)
        return false;
    struct tc_signer s;
    uint8_t spki[TC_SPKI_MAX], nonce[TC_PKI_NONCE_LEN], msg[TC_PKI_POP_MSG_LEN], pop[TC_SIG_MAX];
    size_t sl = 0, pl = 0;
    memset(nonce, 0x5A, sizeof nonce);
    d->pkey = EVP_EC_gen("P-256");
    if (d->pkey == NULL || tc_signer_soft_new(d->pkey, &s) != TC_OK)
        return false;
    d->der = new_buf();
    bool ok = s.public_key(s.ctx, spki, sizeof spki, &sl) == TC_OK &&
              tc_pki_pop_message(eid, spki, sl, nonce, msg) == TC_OK &&
              s.sign(s.ctx, msg, sizeof msg, pop, sizeof pop, &pl) == TC_OK;
    struct tc_pki_device_req r = {.eid = eid,
                                  .spki = spki,
                                  .spki_len = sl,
                                  .nonce = nonce,
                                  .pop = pop,
                                  .pop_len = pl,
                                  .station_id = "station-ota",
                                  .production_time = prod};
    ok = ok && tc_pki_device_issue(b->iss, &r, &d->der, d->serial) == TC_OK;
    tc_signer_soft_free(&s);
    if (!ok) {
        char m[300];
        tc_error_format(m, sizeof m);
        (void)fprintf(stderr, "device %s: %s\n", eid, m);
        return false;
    }
    const unsigned char *p = d->der.data;
    d->x509 = d2i_X509(NULL, &p, (long)d->der.len);
    return d->x509 != NULL;
}

static bool server_cert_new(void)
{
    F.srv_key = EVP_EC_gen("P-256");
    F.srv_cert = X509_new();
    X509_NAME *n = X509_get_subject_name(F.srv_cert);
    return F.srv_key != NULL && F.srv_cert != NULL && X509_set_version(F.srv_cert, 2) == 1 &&
           ASN1_INTEGER_set(X509_get_serialNumber(F.srv_cert), 1) == 1 &&
           X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                                      -1, 0) == 1 &&
           X509_set_issuer_name(F.srv_cert, n) == 1 &&
           X509_gmtime_adj(X509_getm_notBefore(F.srv_cert), -3600) != NULL &&
           X509_gmtime_adj(X509_getm_notAfter(F.srv_cert), 3600) != NULL &&
           X509_set_pubkey(F.srv_cert, F.srv_key) == 1 &&
           X509_sign(F.srv_cert, F.srv_key, EVP_sha256()) > 0;
}

static bool fixture(void)
{
    if (F.ready)
        return true;
    T0 = ((int64_t)time(NULL) / DAY - 30) * DAY;
    int64_t prod = T0 + 2 * DAY;
    bool ok = root_new(&F.root, "Acme OTA Root") &&
              batch_new(&F.root, &F.batch, BATCH, PREFIX, T0, T0 + 3650 * DAY) &&
              batch_new(&F.root, &F.batch_b, "B-OTA-B", "8904903299", T0, T0 + 3650 * DAY) &&
              batch_new(&F.root, &F.batch_old, "B-OTA-OLD", "8904903288", T0, T0 + 10 * DAY) &&
              device_new(&F.batch, EID1, prod, &F.good) &&
              device_new(&F.batch, "890490321234512345123456789013", prod, &F.revoked) &&
              device_new(&F.batch_b, "890490329900000000000000000000", prod, &F.in_b) &&
              device_new(&F.batch_old, "890490328800000000000000000000", T0 + DAY, &F.old) &&
              root_new(&F.froot, "Acme OTA Root") &&
              batch_new(&F.froot, &F.fbatch, BATCH, PREFIX, T0, T0 + 3650 * DAY) &&
              device_new(&F.fbatch, EID1, prod, &F.foreign) && server_cert_new();
    EXPECT(ok);
    if (!ok)
        return false;
    /* The batch CRL revokes one device; the root CRL (B) revokes batch B. */
    struct tc_pki_revoked rv = {
        .serial_len = TC_PKI_SERIAL_LEN, .revoked_at = T0 + 5 * DAY, .reason = 1};
    memcpy(rv.serial, F.revoked.serial, TC_PKI_SERIAL_LEN);
    tc_buf_free(&F.batch.crl);
    ok = crl_new(F.batch.iss, &rv, 1, &F.batch.crl);
    X509 *bx = NULL;
    const unsigned char *p = F.batch_b.cert.data;
    bx = d2i_X509(NULL, &p, (long)F.batch_b.cert.len);
    const ASN1_INTEGER *sn = bx != NULL ? X509_get0_serialNumber(bx) : NULL;
    struct tc_pki_revoked rb = {.revoked_at = T0 + 5 * DAY, .reason = 2};
    if (sn != NULL && (size_t)sn->length <= sizeof rb.serial) {
        memcpy(rb.serial, sn->data, (size_t)sn->length);
        rb.serial_len = (size_t)sn->length;
    }
    X509_free(bx);
    ok = ok && rb.serial_len > 0 && crl_new(F.root.iss, NULL, 0, &F.root.crl) &&
         crl_new(F.root.iss, &rb, 1, &F.root_crl_b);
    EXPECT(ok);
    F.ready = ok;
    return ok;
}

static struct tc_ota_trust *trust_new(const struct tc_buf *root_crl)
{
    struct tc_ota_trust *t = NULL;
    EXPECT_OK(
        tc_ota_trust_new(F.root.cert.data, F.root.cert.len, root_crl->data, root_crl->len, &t));
    if (t == NULL)
        return NULL;
    EXPECT_OK(tc_ota_trust_add_batch(t, F.batch.cert.data, F.batch.cert.len, F.batch.crl.data,
                                     F.batch.crl.len));
    EXPECT_OK(tc_ota_trust_add_batch(t, F.batch_b.cert.data, F.batch_b.cert.len, F.batch_b.crl.data,
                                     F.batch_b.crl.len));
    EXPECT_OK(tc_ota_trust_add_batch(t, F.batch_old.cert.data, F.batch_old.cert.len,
                                     F.batch_old.crl.data, F.batch_old.crl.len));
    return t;
}

/* ------------------------------------------------------------ scripts */

static tc_err err_of(const char *name)
{
    static const struct {
        const char *n;
        tc_err e;
    } m[] = {{"OK", TC_OK},
             {"FORMAT", TC_ERR_FORMAT},
             {"TRUNCATED", TC_ERR_TRUNCATED},
             {"UNSUPPORTED", TC_ERR_UNSUPPORTED},
             {"RANGE", TC_ERR_RANGE}};
    for (size_t i = 0; name != NULL && i < TC_ARRAY_LEN(m); i++)
        if (strcmp(name, m[i].n) == 0)
            return m[i].e;
    return TC_ERR_COUNT_;
}

static void test_script_vectors(void)
{
    struct tc_vec v;
    size_t records = 0;
    if (!tc_vec_open(&v, "ota/script.txt"))
        return;
    while (tc_vec_next(&v)) {
        size_t sl = 0, n = 0, executed = 0;
        uint8_t *script = tc_vec_hex(&v, "SCRIPT", &sl);
        const char *kind = tc_vec_get(&v, "KIND");
        const char *want = tc_vec_get(&v, "RESULT");
        const char *name = tc_vec_get(&v, "NAME");
        bool cmd = kind != NULL && strcmp(kind, "command") == 0;
        struct tc_ota_bytes a[TC_OTA_SCRIPT_MAX];
        tc_err rc = cmd ? tc_ota_script_decode(script, sl, a, &n)
                        : tc_ota_response_decode(script, sl, a, &n, &executed);
        if (rc != err_of(want)) {
            (void)fprintf(stderr, "  %s: got '%s', expected %s\n", name ? name : "?",
                          tc_err_name(rc), want ? want : "?");
            EXPECT(false);
        }
        if (rc == TC_OK) {
            uint64_t wn = 0;
            EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "N"), 64, &wn));
            EXPECT_EQ_U(n, wn);
            if (!cmd) {
                uint64_t we = 0;
                EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "EXECUTED"), 64, &we));
                EXPECT_EQ_U(executed, we);
            }
            for (size_t i = 0; i < n && i < wn; i++) {
                char key[16];
                size_t el = 0;
                (void)snprintf(key, sizeof key, "APDU%zu", i + 1);
                uint8_t *e = tc_vec_hex(&v, key, &el);
                EXPECT_MEM(a[i].p, a[i].len, e, el);
                free(e);
            }
            /* Re-encoding gives the same bytes, except that the encoder
             * always writes the executed count. */
            struct tc_buf b = new_buf();
            if (cmd) {
                EXPECT_OK(tc_ota_script_encode(a, n, &b));
                EXPECT_MEM(b.data, b.len, script, sl);
            } else {
                EXPECT_OK(tc_ota_response_encode(a, n, &b));
                size_t n2 = 0, e2 = 0;
                struct tc_ota_bytes a2[TC_OTA_SCRIPT_MAX];
                EXPECT_OK(tc_ota_response_decode(b.data, b.len, a2, &n2, &e2));
                EXPECT_EQ_U(n2, n);
                EXPECT_EQ_U(e2, n);
                EXPECT(b.len >= 5 && b.data[2] == 0x80 && b.data[3] == 0x01);
            }
            tc_buf_free(&b);
        }
        free(script);
        records++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(records, 17);
}

static void test_script_encode_rejects(void)
{
    struct tc_buf b = new_buf();
    static const uint8_t bad[] = {0x80, 0xCA, 0xFF};
    static const uint8_t sw1[] = {0x90};
    struct tc_ota_bytes a = {bad, sizeof bad}, r = {sw1, sizeof sw1};
    EXPECT(tc_ota_script_encode(&a, 1, &b) != TC_OK); /* not a C-APDU */
    EXPECT_ERR(tc_ota_response_encode(&r, 1, &b), TC_ERR_ARG);
    struct tc_ota_bytes many[TC_OTA_SCRIPT_MAX + 1];
    static const uint8_t ok[] = {0x80, 0xCA, 0x00, 0x66, 0x00};
    for (size_t i = 0; i < TC_ARRAY_LEN(many); i++)
        many[i] = (struct tc_ota_bytes){ok, sizeof ok};
    EXPECT_ERR(tc_ota_script_encode(many, TC_ARRAY_LEN(many), &b), TC_ERR_ARG);
    tc_buf_free(&b);
    /* A 33-command script is refused by the decoder. */
    struct tc_buf big = new_buf();
    tc_buf_put_u8(&big, 0xAE);
    tc_buf_put_u8(&big, 0x80);
    for (size_t i = 0; i < TC_OTA_SCRIPT_MAX + 1; i++) {
        tc_buf_put_u8(&big, 0x22);
        tc_buf_put_u8(&big, sizeof ok);
        tc_buf_put(&big, ok, sizeof ok);
    }
    tc_buf_put_u16be(&big, 0);
    struct tc_ota_bytes out[TC_OTA_SCRIPT_MAX];
    size_t n = 99;
    EXPECT_ERR(tc_ota_script_decode(big.data, big.len, out, &n), TC_ERR_RANGE);
    EXPECT_EQ_U(n, 0);
    tc_buf_free(&big);
}

/* ------------------------------------------------------------ trust store */

static void test_trust_verify(void)
{
    if (!fixture())
        return;
    struct tc_ota_trust *t = trust_new(&F.root.crl);
    char why[TC_OTA_REASON_MAX];
    struct tc_pki_device_info info;
    EXPECT_OK(tc_ota_trust_verify(t, F.good.der.data, F.good.der.len, 0, &info, why, sizeof why));
    EXPECT_STR(info.eid, EID1);
    EXPECT_STR(info.batch_id, BATCH);
    EXPECT_ERR(
        tc_ota_trust_verify(t, F.revoked.der.data, F.revoked.der.len, 0, NULL, why, sizeof why),
        TC_ERR_VERIFY);
    EXPECT(strstr(why, "revoked") != NULL);
    EXPECT_ERR(tc_ota_trust_verify(t, F.old.der.data, F.old.der.len, 0, NULL, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT(strstr(why, "expired") != NULL);
    EXPECT_ERR(
        tc_ota_trust_verify(t, F.foreign.der.data, F.foreign.der.len, 0, NULL, why, sizeof why),
        TC_ERR_VERIFY);
    /* A CA certificate is not a device certificate. */
    EXPECT_ERR(
        tc_ota_trust_verify(t, F.batch.cert.data, F.batch.cert.len, 0, NULL, why, sizeof why),
        TC_ERR_VERIFY);
    EXPECT(strstr(why, "not a device certificate") != NULL);
    /* The same batch twice is refused. */
    EXPECT_ERR(tc_ota_trust_add_batch(t, F.batch.cert.data, F.batch.cert.len, F.batch.crl.data,
                                      F.batch.crl.len),
               TC_ERR_STATE);
    tc_ota_trust_free(t);

    /* The root CRL that revokes batch B refuses its devices. */
    t = trust_new(&F.root_crl_b);
    EXPECT_ERR(tc_ota_trust_verify(t, F.in_b.der.data, F.in_b.der.len, 0, NULL, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT(strstr(why, "revoked") != NULL);
    EXPECT_OK(tc_ota_trust_verify(t, F.good.der.data, F.good.der.len, 0, NULL, why, sizeof why));
    tc_ota_trust_free(t);

    /* A batch nobody trusts. */
    EXPECT_OK(
        tc_ota_trust_new(F.root.cert.data, F.root.cert.len, F.root.crl.data, F.root.crl.len, &t));
    EXPECT_ERR(tc_ota_trust_verify(t, F.good.der.data, F.good.der.len, 0, NULL, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT(strstr(why, "unknown batch") != NULL);
    tc_ota_trust_free(t);
    /* A root that is not a root. */
    EXPECT(tc_ota_trust_new(F.batch.cert.data, F.batch.cert.len, F.root.crl.data, F.root.crl.len,
                            &t) != TC_OK);
    EXPECT(t == NULL);
}

static bool put_pem(const char *dir, const char *name, const char *label, const struct tc_buf *d)
{
    char path[256];
    struct tc_buf pem = new_buf();
    (void)snprintf(path, sizeof path, "%s/%s", dir, name);
    bool ok = tc_pki_pem_encode(label, d->data, d->len, &pem) == TC_OK;
    FILE *f = fopen(path, "wb");
    ok = ok && f != NULL && fwrite(pem.data, 1, pem.len, f) == pem.len;
    if (f != NULL)
        ok = fclose(f) == 0 && ok;
    tc_buf_free(&pem);
    return ok;
}

static void test_trust_load(void)
{
    if (!fixture())
        return;
    char ws[64] = "/tmp/tc-ota-XXXXXX", d[128], cmd[160];
    EXPECT(mkdtemp(ws) != NULL);
    struct tc_ota_trust *t = NULL;
    EXPECT_ERR(tc_ota_trust_load(ws, &t), TC_ERR_IO); /* no root yet */
    (void)snprintf(d, sizeof d, "%s/pki", ws);
    EXPECT(mkdir(d, 0700) == 0);
    EXPECT(put_pem(d, "root.pem", "CERTIFICATE", &F.root.cert));
    EXPECT(put_pem(d, "root-crl.pem", "X509 CRL", &F.root.crl));
    (void)snprintf(d, sizeof d, "%s/pki/batches", ws);
    EXPECT(mkdir(d, 0700) == 0);
    (void)snprintf(d, sizeof d, "%s/pki/batches/%s", ws, BATCH);
    EXPECT(mkdir(d, 0700) == 0);
    EXPECT(put_pem(d, "ca.pem", "CERTIFICATE", &F.batch.cert));
    EXPECT(put_pem(d, "crl.pem", "X509 CRL", &F.batch.crl));
    char why[TC_OTA_REASON_MAX];
    EXPECT_OK(tc_ota_trust_load(ws, &t));
    EXPECT_OK(tc_ota_trust_verify(t, F.good.der.data, F.good.der.len, 0, NULL, why, sizeof why));
    EXPECT_ERR(
        tc_ota_trust_verify(t, F.revoked.der.data, F.revoked.der.len, 0, NULL, why, sizeof why),
        TC_ERR_VERIFY);
    tc_ota_trust_free(t);
    t = NULL;
    /* A batch directory with a CA but a missing CRL fails the load. */
    (void)snprintf(d, sizeof d, "%s/pki/batches/B-OTA-B", ws);
    EXPECT(mkdir(d, 0700) == 0);
    EXPECT(put_pem(d, "ca.pem", "CERTIFICATE", &F.batch_b.cert));
    EXPECT_ERR(tc_ota_trust_load(ws, &t), TC_ERR_IO);
    EXPECT(t == NULL);
    (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", ws);
    EXPECT(system(cmd) == 0);
}

/* ------------------------------------------------------------ the server */

struct srv {
    struct ota_fx_server fx;
    struct tc_ota_trust *t;
};

static bool srv_start_app(struct srv *v, const struct tc_buf *root_crl, unsigned timeout_ms,
                          unsigned max_conns, const struct tc_ota_app *app)
{
    memset(v, 0, sizeof *v);
    if (!fixture())
        return false;
    EXPECT(evthread_use_pthreads() == 0);
    (void)signal(SIGPIPE, SIG_IGN); /* peers close; writes must fail, not kill */
    v->t = trust_new(root_crl);
    struct tc_ota_server_config cfg = {.host = "127.0.0.1",
                                       .cert = F.srv_cert,
                                       .key = F.srv_key,
                                       .trust = v->t,
                                       .max_headers = 2048,
                                       .max_body = 4096,
                                       .timeout_ms = timeout_ms,
                                       .max_connections = max_conns,
                                       .app = app,
                                       .threads = OTA_TEST_THREADS};
    return ota_fx_server_start(&v->fx, &cfg);
}

static bool srv_start(struct srv *v, const struct tc_buf *root_crl, unsigned timeout_ms,
                      unsigned max_conns)
{
    return srv_start_app(v, root_crl, timeout_ms, max_conns, NULL);
}

static void srv_stop(struct srv *v)
{
    ota_fx_server_stop(&v->fx);
    tc_ota_trust_free(v->t);
}

/* Waits (bounded) until the server's counters satisfy `want`. */
static struct tc_ota_stats stats_wait(struct srv *v, bool (*want)(const struct tc_ota_stats *))
{
    struct tc_ota_stats st;
    for (int i = 0; i < 300; i++) {
        tc_ota_server_stats(v->fx.s, &st);
        if (want(&st))
            return st;
        (void)usleep(10000);
    }
    return st;
}

static int tcp_connect(uint16_t port, int timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = timeout_s};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        (void)close(fd);
        return -1;
    }
    return fd;
}

struct cli {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
};

/* A TLS client pinned to the test server certificate; dev may be NULL (no
 * client certificate). Returns false if the handshake fails. */
static bool cli_open(struct cli *c, uint16_t port, const struct device *dev, int max_version,
                     int timeout_s)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return false;
    (void)SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    (void)SSL_CTX_set_max_proto_version(c->ctx, max_version);
    (void)X509_STORE_add_cert(SSL_CTX_get_cert_store(c->ctx), F.srv_cert);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (dev != NULL && (SSL_CTX_use_certificate(c->ctx, dev->x509) != 1 ||
                        SSL_CTX_use_PrivateKey(c->ctx, dev->pkey) != 1))
        return false;
    c->fd = tcp_connect(port, timeout_s);
    if (c->fd < 0)
        return false;
    c->ssl = SSL_new(c->ctx);
    return c->ssl != NULL && SSL_set_fd(c->ssl, c->fd) == 1 && SSL_connect(c->ssl) == 1;
}

static void cli_close(struct cli *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        (void)close(c->fd);
    memset(c, 0, sizeof *c);
}

/* Sends req (if any) and reads until the peer closes, the response is
 * complete enough (max bytes) or the timeout. Returns the bytes read. */
static size_t cli_exchange(struct cli *c, const char *req, size_t req_len, char *out,
                           size_t out_size)
{
    size_t got = 0;
    if (req_len > 0 && SSL_write(c->ssl, req, (int)req_len) != (int)req_len)
        return 0;
    while (got + 1 < out_size) {
        int n = SSL_read(c->ssl, out + got, (int)(out_size - 1 - got));
        if (n <= 0)
            break;
        got += (size_t)n;
        if (strstr(out, "\r\n\r\n") != NULL && got > 0) {
            out[got] = '\0';
            const char *cl = strstr(out, "Content-Length: ");
            const char *body = strstr(out, "\r\n\r\n") + 4;
            if (strncmp(out, "HTTP/1.1 204 ", 13) == 0)
                break;
            if (cl != NULL && (size_t)(out + got - body) >= (size_t)strtoul(cl + 16, NULL, 10))
                break;
        }
    }
    out[got] = '\0';
    return got;
}

static const char GET_ID[] = "GET /ota/v1/identity HTTP/1.1\r\nHost: localhost\r\n\r\n";

static bool one_request(const struct tc_ota_stats *s)
{
    return s->requests >= 1 && s->open == 0;
}

static void test_good_device(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 2000, 0))
        goto out;
    struct cli c;
    char resp[1024];
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(SSL_version(c.ssl) == TLS1_3_VERSION);
    EXPECT(cli_exchange(&c, GET_ID, sizeof GET_ID - 1, resp, sizeof resp) > 0);
    EXPECT(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
    EXPECT(strstr(resp, "\r\n\r\n" EID1 "\n") != NULL);
    /* An unknown resource on the same verified connection. */
    static const char other[] = "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n";
    EXPECT(cli_exchange(&c, other, sizeof other - 1, resp, sizeof resp) > 0);
    EXPECT(strncmp(resp, "HTTP/1.1 404 ", 13) == 0);
    cli_close(&c);
    struct tc_ota_stats st = stats_wait(&v, one_request);
    EXPECT_EQ_U(st.handshakes, 1);
    EXPECT_EQ_U(st.requests, 2);
    EXPECT_EQ_U(st.cert_rejected, 0);
    EXPECT_EQ_U(st.open, 0);
out:
    srv_stop(&v);
}

static bool one_rejected(const struct tc_ota_stats *s)
{
    return s->cert_rejected >= 1 && s->open == 0;
}

/* A client whose certificate the server must refuse during the handshake:
 * no HTTP response ever comes back and the server counts a rejection. */
static void refused(const struct tc_buf *root_crl, const struct device *dev)
{
    struct srv v;
    if (!srv_start(&v, root_crl, 2000, 0))
        goto out;
    struct cli c;
    char resp[1024];
    /* In TLS 1.3 the client finishes first; the refusal arrives as an alert
     * on its first read. */
    (void)cli_open(&c, v.fx.port, dev, TLS1_3_VERSION, 5);
    EXPECT(c.ssl == NULL || cli_exchange(&c, GET_ID, sizeof GET_ID - 1, resp, sizeof resp) == 0);
    cli_close(&c);
    struct tc_ota_stats st = stats_wait(&v, one_rejected);
    EXPECT_EQ_U(st.cert_rejected, 1);
    EXPECT_EQ_U(st.handshakes, 0);
    EXPECT_EQ_U(st.requests, 0);
out:
    srv_stop(&v);
}

static void test_revoked_device(void)
{
    refused(&F.root.crl, &F.revoked);
}

static bool rejected_20(const struct tc_ota_stats *s)
{
    return s->cert_rejected >= 20 && s->open == 0;
}

/* A TLS 1.3 client sends its request right after its Finished, before the
 * server's verdict: the certificate_revoked alert must still reach it every
 * time (the server drains instead of closing on unread bytes, which would
 * make the kernel answer RST). */
static void test_refusal_alert_arrives(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 2000, 0))
        goto out;
    for (int i = 0; i < 20; i++) {
        struct cli c;
        char resp[256];
        ERR_clear_error();
        EXPECT(cli_open(&c, v.fx.port, &F.revoked, TLS1_3_VERSION, 5));
        /* Half the time the request leaves after the server's verdict. */
        if (i % 2 == 1)
            (void)usleep(50 * 1000);
        EXPECT(c.ssl != NULL &&
               cli_exchange(&c, GET_ID, sizeof GET_ID - 1, resp, sizeof resp) == 0);
        EXPECT_EQ_U(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED);
        cli_close(&c);
    }
    struct tc_ota_stats st = stats_wait(&v, rejected_20);
    EXPECT_EQ_U(st.cert_rejected, 20);
    EXPECT_EQ_U(st.requests, 0);
out:
    srv_stop(&v);
}

static void test_revoked_batch(void)
{
    if (!fixture())
        return;
    refused(&F.root_crl_b, &F.in_b);
}

static void test_expired_batch(void)
{
    refused(&F.root.crl, &F.old);
}

static void test_foreign_root(void)
{
    refused(&F.root.crl, &F.foreign);
}

static bool one_failed(const struct tc_ota_stats *s)
{
    return s->handshake_failed >= 1 && s->open == 0;
}

static void failed_handshake_common(struct srv *v)
{
    struct tc_ota_stats st = stats_wait(v, one_failed);
    EXPECT_EQ_U(st.handshake_failed, 1);
    EXPECT_EQ_U(st.handshakes, 0);
    EXPECT_EQ_U(st.requests, 0);
    EXPECT_EQ_U(st.open, 0);
}

static void test_no_client_cert(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 2000, 0))
        goto out;
    struct cli c;
    char resp[256];
    (void)cli_open(&c, v.fx.port, NULL, TLS1_3_VERSION, 5);
    EXPECT(c.ssl == NULL || cli_exchange(&c, GET_ID, sizeof GET_ID - 1, resp, sizeof resp) == 0);
    cli_close(&c);
    failed_handshake_common(&v);
out:
    srv_stop(&v);
}

static void test_tls12_refused(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 2000, 0))
        goto out;
    struct cli c;
    EXPECT(!cli_open(&c, v.fx.port, &F.good, TLS1_2_VERSION, 5));
    cli_close(&c);
    failed_handshake_common(&v);
out:
    srv_stop(&v);
}

static double now_s(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads a raw socket until EOF or timeout; returns bytes read, -1 on timeout. */
static long raw_drain(int fd)
{
    char b[512];
    long total = 0;
    for (;;) {
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0)
            return total;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : total;
        total += n;
    }
}

static void test_garbage(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 2000, 0))
        goto out;
    int fd = tcp_connect(v.fx.port, 5);
    EXPECT(fd >= 0);
    static const char junk[] =
        "GET /ota/v1/identity HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01garbage";
    EXPECT(send(fd, junk, sizeof junk - 1, 0) == (ssize_t)(sizeof junk - 1));
    /* Closed by the server with at most a TLS alert, never an HTTP reply. */
    char b[64] = {0};
    ssize_t n = recv(fd, b, sizeof b, 0);
    EXPECT(n <= 0 || strncmp(b, "HTTP", 4) != 0);
    (void)close(fd);
    failed_handshake_common(&v);
out:
    srv_stop(&v);
}

static void test_silent_peer_times_out(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 700, 0))
        goto out;
    int fd = tcp_connect(v.fx.port, 5);
    EXPECT(fd >= 0);
    double t = now_s();
    EXPECT(raw_drain(fd) == 0); /* closed by the server, not our 5 s timeout */
    double dt = now_s() - t;
    EXPECT(dt >= 0.5 && dt < 3.0);
    (void)close(fd);
    failed_handshake_common(&v);
out:
    srv_stop(&v);
}

static bool one_idle(const struct tc_ota_stats *s)
{
    return s->closed_no_request >= 1 && s->open == 0;
}

static void test_slow_sender(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 700, 0))
        goto out;
    struct cli c;
    char resp[256];
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    static const char part[] = "POST /ota/v1/admin HTTP/1.1\r\nHost: local";
    double t = now_s();
    EXPECT(cli_exchange(&c, part, sizeof part - 1, resp, sizeof resp) == 0);
    double dt = now_s() - t;
    EXPECT(dt >= 0.5 && dt < 3.0);
    cli_close(&c);
    struct tc_ota_stats st = stats_wait(&v, one_idle);
    EXPECT_EQ_U(st.closed_no_request, 1);
    EXPECT_EQ_U(st.requests, 0);
out:
    srv_stop(&v);
}

static void oversized(const char *req, size_t len, const char *status)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 2000, 0))
        goto out;
    struct cli c;
    char resp[512];
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    (void)cli_exchange(&c, req, len, resp, sizeof resp);
    if (strncmp(resp, status, strlen(status)) != 0) {
        (void)fprintf(stderr, "  response: %.60s\n", resp);
        EXPECT(false);
    }
    cli_close(&c);
    struct tc_ota_stats st = stats_wait(&v, one_idle);
    EXPECT_EQ_U(st.requests, 0);
    EXPECT_EQ_U(st.open, 0);
out:
    srv_stop(&v);
}

static void test_oversized_body(void)
{
    static const char req[] = "POST /ota/v1/admin HTTP/1.1\r\nHost: localhost\r\n"
                              "Content-Length: 100000\r\n\r\nxxxx";
    oversized(req, sizeof req - 1, "HTTP/1.1 413 ");
}

static void test_oversized_headers(void)
{
    char req[4096];
    size_t n = 0;
    n += (size_t)snprintf(req, sizeof req, "GET /ota/v1/identity HTTP/1.1\r\nX-Pad: ");
    memset(req + n, 'a', 3000);
    n += 3000;
    memcpy(req + n, "\r\n\r\n", 4);
    n += 4;
    oversized(req, n, "HTTP/1.1 4");
}

static bool paused(const struct tc_ota_stats *s)
{
    return s->paused >= 1 && s->handshakes >= 2;
}

static void test_connection_cap(void)
{
    struct srv v;
    if (!srv_start(&v, &F.root.crl, 5000, 2))
        goto out;
    struct cli a, b, c, d;
    char resp[512];
    EXPECT(cli_open(&a, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(cli_open(&b, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    struct tc_ota_stats st = stats_wait(&v, paused);
    /* One loop pauses at the cap; on loop threads each pauses at its share
     * (here one connection each). */
    EXPECT_EQ_U(st.paused, OTA_TEST_THREADS == 0 ? 1 : 2);
    EXPECT_EQ_U(st.open, 2);
    /* The third waits in the backlog: its handshake gets no answer. */
    EXPECT(!cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 1));
    cli_close(&c);
    st = stats_wait(&v, paused);
    EXPECT_EQ_U(st.accepted, 2);
    /* One leaves; accepting resumes. */
    cli_close(&a);
    EXPECT(cli_open(&d, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(cli_exchange(&d, GET_ID, sizeof GET_ID - 1, resp, sizeof resp) > 0);
    EXPECT(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
    cli_close(&d);
    cli_close(&b);
out:
    srv_stop(&v);
}

/* ------------------------------------------------------------ Amendment B */

static const uint8_t CMD0[] = {0x80, 0xCA, 0x00, 0x66, 0x00};
static const uint8_t CMD1[] = {0x80, 0xCA, 0xFF, 0x21, 0x00};

static struct app_rec {
    int calls, ends, completed;
    uint32_t step[8];
    enum tc_ota_script_status status[8];
    size_t resp_len[8];
    bool resume[8];
} REC;

static tc_err app_next(void *ctx, const struct tc_ota_admin_in *in, struct tc_buf *script)
{
    (void)ctx;
    if (REC.calls < 8) {
        REC.step[REC.calls] = in->step;
        REC.status[REC.calls] = in->status;
        REC.resp_len[REC.calls] = in->response_len;
        REC.resume[REC.calls] = in->resume;
    }
    REC.calls++;
    if (strcmp(in->eid, EID1) != 0)
        return TC_FAIL(TC_ERR_STATE, "wrong EID");
    if (in->step >= 2)
        return TC_OK; /* done: empty script */
    struct tc_ota_bytes a = {in->step == 0 ? CMD0 : CMD1, sizeof CMD0};
    return tc_ota_script_encode(&a, 1, script);
}

static void app_end(void *ctx, const char *eid, bool completed)
{
    (void)ctx;
    (void)eid;
    REC.ends++;
    REC.completed += completed ? 1 : 0;
}

static const struct tc_ota_app APP = {.next = app_next, .end = app_end};

static bool admin_start(struct srv *v)
{
    memset(&REC, 0, sizeof REC);
    return srv_start_app(v, &F.root.crl, 3000, 0, &APP);
}

#define STD_HEADERS                                                                                \
    "X-Admin-Protocol: " TC_OTA_ADMIN_PROTOCOL "\r\nX-Admin-From: //se-id/eid/" EID1 "\r\n"

struct reply {
    int code;
    char next[128];
    char ctype[128];
    const uint8_t *body;
    size_t body_len;
    char raw[2048];
};

static void header_value(const char *raw, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    const char *h = strstr(raw, name);
    const char *end = strstr(raw, "\r\n\r\n");
    if (h == NULL || end == NULL || h > end)
        return;
    h += strlen(name);
    const char *e = strstr(h, "\r\n");
    size_t n = (size_t)(e - h);
    if (n >= size)
        n = size - 1;
    memcpy(out, h, n);
    out[n] = '\0';
}

static bool admin_post(struct cli *c, const char *path, const char *headers, const uint8_t *body,
                       size_t blen, struct reply *r)
{
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %zu\r\n\r\n", path,
                     headers, blen);
    if (n <= 0 || (size_t)n + blen > sizeof req)
        return false;
    if (blen > 0)
        memcpy(req + n, body, blen);
    memset(r, 0, sizeof *r);
    size_t got = cli_exchange(c, req, (size_t)n + blen, r->raw, sizeof r->raw);
    if (got < 12 || strncmp(r->raw, "HTTP/1.1 ", 9) != 0)
        return false;
    r->code = (int)strtol(r->raw + 9, NULL, 10);
    header_value(r->raw, "X-Admin-Next-URI: ", r->next, sizeof r->next);
    header_value(r->raw, "Content-Type: ", r->ctype, sizeof r->ctype);
    const char *b = strstr(r->raw, "\r\n\r\n");
    if (b != NULL) {
        r->body = (const uint8_t *)b + 4;
        r->body_len = got - (size_t)(b + 4 - r->raw);
    }
    return true;
}

/* The card's answer to a script: one R-APDU per command, SW 9000. */
static size_t card_answer(const struct reply *r, uint8_t *out, size_t size)
{
    struct tc_ota_bytes a[TC_OTA_SCRIPT_MAX], rr[TC_OTA_SCRIPT_MAX];
    size_t n = 0;
    static const uint8_t ok[] = {0x01, 0x02, 0x90, 0x00};
    struct tc_buf b;
    tc_buf_init_fixed(&b, out, size);
    if (tc_ota_script_decode(r->body, r->body_len, a, &n) != TC_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        rr[i] = (struct tc_ota_bytes){ok, sizeof ok};
    return tc_ota_response_encode(rr, n, &b) == TC_OK ? b.len : 0;
}

#define RESP_HEADERS                                                                               \
    STD_HEADERS "Content-Type: " TC_OTA_CT_RESPONSE "\r\nX-Admin-Script-Status: ok\r\n"

static void test_admin_session(void)
{
    struct srv v;
    struct cli c;
    struct reply r;
    uint8_t ans[64];
    if (!admin_start(&v))
        goto out;
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(admin_post(&c, TC_OTA_ADMIN_PATH, STD_HEADERS, NULL, 0, &r));
    EXPECT_EQ_U(r.code, 200);
    EXPECT_STR(r.ctype, TC_OTA_CT_SCRIPT);
    /* The script carries CMD0, byte for byte. */
    static const uint8_t want0[] = {0xAE, 0x80, 0x22, 0x05, 0x80, 0xCA,
                                    0x00, 0x66, 0x00, 0x00, 0x00};
    EXPECT_MEM(r.body, r.body_len, want0, sizeof want0);
    EXPECT(strlen(r.next) == strlen(TC_OTA_ADMIN_PATH) + 1 + 32 + 2);
    EXPECT(strncmp(r.next, TC_OTA_ADMIN_PATH "/", sizeof TC_OTA_ADMIN_PATH) == 0);
    EXPECT(strcmp(r.next + strlen(r.next) - 2, "/1") == 0);
    char next1[128];
    memcpy(next1, r.next, sizeof next1);
    size_t al = card_answer(&r, ans, sizeof ans);
    EXPECT(al > 0);
    EXPECT(admin_post(&c, next1, RESP_HEADERS, ans, al, &r));
    EXPECT_EQ_U(r.code, 200);
    EXPECT(strcmp(r.next + strlen(r.next) - 2, "/2") == 0);
    EXPECT(strncmp(r.next, next1, strlen(next1) - 1) == 0); /* same session token */
    char next2[128];
    memcpy(next2, r.next, sizeof next2);
    al = card_answer(&r, ans, sizeof ans);
    EXPECT(admin_post(&c, next2, RESP_HEADERS, ans, al, &r));
    EXPECT_EQ_U(r.code, 204);
    EXPECT_STR(r.next, ""); /* no Next URI: the session is over */
    cli_close(&c);
out:
    srv_stop(&v);
    EXPECT_EQ_U(REC.calls, 3);
    EXPECT_EQ_U(REC.step[0], 0);
    EXPECT_EQ_U(REC.status[0], TC_OTA_STATUS_NONE);
    EXPECT_EQ_U(REC.step[1], 1);
    EXPECT_EQ_U(REC.status[1], TC_OTA_STATUS_OK);
    EXPECT_EQ_U(REC.resp_len[1], 13); /* AF80 800101 2304 01029000 0000 */
    EXPECT_EQ_U(REC.step[2], 2);
    EXPECT_EQ_U(REC.ends, 1);
    EXPECT_EQ_U(REC.completed, 1);
}

/* An application that answers later, from a timer on the server's loop,
 * as the operations engine does while its records reach the disk; or
 * holds the request until the test fires the timer. */
static struct async_rec {
    struct event_base *base;
    struct event *timer;
    void (*reply)(void *arg, tc_err rc, const uint8_t *script, size_t len);
    void *arg;
    uint32_t step;
    bool hold;         /* keep the request until the test fires the timer */
    bool reply_in_end; /* the session's end answers a held request (the engine does) */
    _Atomic int calls, ends, completed;
} AR;

static void async_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (AR.reply == NULL)
        return;
    void (*reply)(void *, tc_err, const uint8_t *, size_t) = AR.reply;
    AR.reply = NULL;
    uint8_t mem[64];
    struct tc_buf b;
    tc_buf_init_fixed(&b, mem, sizeof mem);
    if (AR.step < 2) {
        struct tc_ota_bytes a = {AR.step == 0 ? CMD0 : CMD1, sizeof CMD0};
        EXPECT_OK(tc_ota_script_encode(&a, 1, &b));
    }
    reply(AR.arg, TC_OK, b.data, b.len);
}

static tc_err async_next(void *ctx, const struct tc_ota_admin_in *in,
                         void (*reply)(void *arg, tc_err rc, const uint8_t *script, size_t len),
                         void *arg)
{
    (void)ctx;
    EXPECT_STR(in->eid, EID1);
    EXPECT(AR.reply == NULL);
    AR.calls++;
    AR.step = in->step;
    AR.reply = reply;
    AR.arg = arg;
    if (AR.timer == NULL)
        AR.timer = evtimer_new(AR.base, async_fire, NULL);
    EXPECT(AR.timer != NULL);
    if (!AR.hold && AR.timer != NULL) {
        struct timeval tv = {.tv_usec = 20000};
        EXPECT(evtimer_add(AR.timer, &tv) == 0);
    }
    return TC_OK;
}

static void async_end(void *ctx, const char *eid, bool completed)
{
    (void)ctx;
    EXPECT_STR(eid, EID1);
    AR.ends++;
    AR.completed += completed ? 1 : 0;
    if (AR.reply_in_end && AR.reply != NULL) {
        void (*reply)(void *, tc_err, const uint8_t *, size_t) = AR.reply;
        AR.reply = NULL;
        reply(AR.arg, TC_FAIL(TC_ERR_STATE, "dialog ended"), NULL, 0);
    }
}

static const struct tc_ota_app ASYNC_APP = {.next_async = async_next, .end = async_end};

static bool async_start(struct srv *v, bool hold, bool reply_in_end)
{
    if (AR.timer != NULL)
        event_free(AR.timer);
    memset(&AR, 0, sizeof AR);
    AR.hold = hold;
    AR.reply_in_end = reply_in_end;
    if (!srv_start_app(v, &F.root.crl, 3000, 0, &ASYNC_APP))
        return false;
    AR.base = v->fx.base; /* before any device connects */
    return true;
}

/* Frees the timer, before srv_stop frees the base it is on. */
static void async_done(void)
{
    if (AR.timer != NULL)
        event_free(AR.timer);
    AR.timer = NULL;
}

static bool async_waits(int want)
{
    for (int i = 0; i < 300 && AR.calls < want; i++)
        (void)usleep(10000);
    return AR.calls == want;
}

/* Opens a session whose first request the application holds. */
static bool post_held(struct cli *c)
{
    static const char req[] =
        "POST " TC_OTA_ADMIN_PATH " HTTP/1.1\r\nHost: localhost\r\n" STD_HEADERS
        "Content-Length: 0\r\n\r\n";
    return SSL_write(c->ssl, req, (int)sizeof req - 1) == (int)sizeof req - 1 && async_waits(1);
}

/* Stops the server; then the application has seen `calls` requests and
 * `ends` session ends, `completed` of them with 204. */
static void async_stop(struct srv *v, int calls, int ends, int completed)
{
    async_done();
    srv_stop(v);
    EXPECT_EQ_U(AR.calls, calls);
    EXPECT_EQ_U(AR.ends, ends);
    EXPECT_EQ_U(AR.completed, completed);
}

static void test_admin_async_session(void)
{
    struct srv v;
    struct cli c;
    struct reply r;
    uint8_t ans[64];
    if (!async_start(&v, false, true))
        goto out;
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(admin_post(&c, TC_OTA_ADMIN_PATH, STD_HEADERS, NULL, 0, &r));
    EXPECT_EQ_U(r.code, 200);
    static const uint8_t want0[] = {0xAE, 0x80, 0x22, 0x05, 0x80, 0xCA,
                                    0x00, 0x66, 0x00, 0x00, 0x00};
    EXPECT_MEM(r.body, r.body_len, want0, sizeof want0);
    char next[128];
    memcpy(next, r.next, sizeof next);
    size_t al = card_answer(&r, ans, sizeof ans);
    EXPECT(admin_post(&c, next, RESP_HEADERS, ans, al, &r));
    EXPECT_EQ_U(r.code, 200);
    static const uint8_t want1[] = {0xAE, 0x80, 0x22, 0x05, 0x80, 0xCA,
                                    0xFF, 0x21, 0x00, 0x00, 0x00};
    EXPECT_MEM(r.body, r.body_len, want1, sizeof want1);
    memcpy(next, r.next, sizeof next);
    al = card_answer(&r, ans, sizeof ans);
    EXPECT(admin_post(&c, next, RESP_HEADERS, ans, al, &r));
    EXPECT_EQ_U(r.code, 204);
    cli_close(&c);
out:
    async_stop(&v, 3, 1, 1);
}

static bool none_open(const struct tc_ota_stats *s)
{
    return s->open == 0;
}

/* The device goes away while the application holds its request (evhttp
 * reads nothing more from a connection until its request is answered):
 * the late answer cannot be written, the connection closes, the session's
 * end reaches the application and nothing leaks (valgrind, ASan). */
static void test_admin_async_peer_gone(void)
{
    struct srv v;
    struct cli c;
    struct reply r;
    if (!async_start(&v, true, false))
        goto out;
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(post_held(&c));
    cli_close(&c);
    /* The late answer, on the server's loop. */
    event_active(AR.timer, EV_TIMEOUT, 0);
    struct tc_ota_stats st = stats_wait(&v, none_open);
    EXPECT_EQ_U(st.open, 0);
    for (int i = 0; i < 300 && AR.ends < 1; i++)
        (void)usleep(10000);
    EXPECT(AR.reply == NULL);
    EXPECT_EQ_U(AR.ends, 1);
    EXPECT_EQ_U(AR.completed, 0);
    /* The server carries on. */
    AR.hold = false;
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(admin_post(&c, TC_OTA_ADMIN_PATH, STD_HEADERS, NULL, 0, &r));
    EXPECT_EQ_U(r.code, 200);
    cli_close(&c);
out:
    async_stop(&v, 2, 2, 0);
}

/* The server stops while the application holds a request: the session
 * ends (the application may answer then, as the engine does), or the
 * application answers after the server is gone; both are dropped. */
static void async_server_stops(bool reply_in_end)
{
    struct srv v;
    struct cli c;
    bool opened = false;
    if (!async_start(&v, true, reply_in_end))
        goto out;
    EXPECT(opened = cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(post_held(&c));
out:
    async_stop(&v, 1, 1, 0);
    EXPECT(reply_in_end == (AR.reply == NULL));
    if (AR.reply != NULL) /* the server and its loops are gone */
        AR.reply(AR.arg, TC_OK, NULL, 0);
    AR.reply = NULL;
    if (opened)
        cli_close(&c);
}

static void test_admin_async_server_stops(void)
{
    async_server_stops(true);
    async_server_stops(false);
}

/* A reply is one TLS record: a single SSL_read returns the status line,
 * the headers and the whole script. */
static void test_admin_reply_one_record(void)
{
    struct srv v;
    struct cli c;
    if (!admin_start(&v))
        goto out;
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    static const char req[] =
        "POST " TC_OTA_ADMIN_PATH " HTTP/1.1\r\nHost: localhost\r\n" STD_HEADERS
        "Content-Length: 0\r\n\r\n";
    EXPECT(SSL_write(c.ssl, req, (int)sizeof req - 1) == (int)sizeof req - 1);
    char buf[2048];
    int n = SSL_read(c.ssl, buf, (int)sizeof buf - 1);
    EXPECT(n > 0);
    buf[n > 0 ? n : 0] = '\0';
    EXPECT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    const char *body = strstr(buf, "\r\n\r\n");
    EXPECT(body != NULL);
    static const uint8_t want0[] = {0xAE, 0x80, 0x22, 0x05, 0x80, 0xCA,
                                    0x00, 0x66, 0x00, 0x00, 0x00};
    if (body != NULL)
        EXPECT_MEM(body + 4, (size_t)(buf + n - body - 4), want0, sizeof want0);
    cli_close(&c);
out:
    srv_stop(&v);
}

static void test_admin_replay(void)
{
    struct srv v;
    struct cli c;
    struct reply r;
    uint8_t ans[64];
    if (!admin_start(&v))
        goto out;
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(admin_post(&c, TC_OTA_ADMIN_PATH, STD_HEADERS, NULL, 0, &r));
    char next1[128];
    memcpy(next1, r.next, sizeof next1);
    size_t al = card_answer(&r, ans, sizeof ans);
    EXPECT(admin_post(&c, next1, RESP_HEADERS, ans, al, &r));
    EXPECT_EQ_U(r.code, 200);
    /* The same step again: a replay. */
    EXPECT(admin_post(&c, next1, RESP_HEADERS, ans, al, &r));
    EXPECT_EQ_U(r.code, 409);
    cli_close(&c);
    /* A step of that session on a new connection is not accepted either. */
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(admin_post(&c, next1, RESP_HEADERS, ans, al, &r));
    EXPECT_EQ_U(r.code, 409);
    cli_close(&c);
    struct tc_ota_stats st;
    tc_ota_server_stats(v.fx.s, &st);
    EXPECT_EQ_U(st.admin_refused, 2);
    EXPECT_EQ_U(st.sessions_done, 0);
out:
    srv_stop(&v);
    EXPECT_EQ_U(REC.calls, 2); /* the replay never reached the application */
    EXPECT_EQ_U(REC.ends, 1);
    EXPECT_EQ_U(REC.completed, 0);
}

/* One bad request on a fresh connection: the expected status, the
 * connection closed, nothing passed to the application. */
static void admin_bad(struct srv *v, const char *method_path, const char *headers,
                      const uint8_t *body, size_t blen, int code)
{
    struct cli c;
    struct reply r;
    int calls = REC.calls;
    EXPECT(cli_open(&c, v->fx.port, &F.good, TLS1_3_VERSION, 5));
    bool ok = admin_post(&c, method_path, headers, body, blen, &r);
    EXPECT(ok);
    if (r.code != code) {
        (void)fprintf(stderr, "  %s: got %d, expected %d\n", method_path, r.code, code);
        EXPECT(false);
    }
    EXPECT_EQ_U(REC.calls, calls);
    /* The server closes after the refusal. */
    char more[64];
    EXPECT(SSL_read(c.ssl, more, sizeof more) <= 0);
    cli_close(&c);
}

static void test_admin_refusals(void)
{
    struct srv v;
    uint8_t good[16];
    if (!admin_start(&v))
        goto out;
    static const uint8_t rsp[] = {0xAF, 0x80, 0x23, 0x02, 0x90, 0x00, 0x00, 0x00};
    static const uint8_t junk[] = {0xAF, 0x80, 0x23, 0x05, 0x90, 0x00, 0x00, 0x00};
    memcpy(good, rsp, sizeof rsp);
    admin_bad(&v, TC_OTA_ADMIN_PATH, "X-Admin-From: //se-id/eid/" EID1 "\r\n", NULL, 0, 400);
    admin_bad(&v, TC_OTA_ADMIN_PATH,
              "X-Admin-Protocol: globalplatform-remote-admin/2.0\r\nX-Admin-From: //se-id/eid/" EID1
              "\r\n",
              NULL, 0, 400);
    admin_bad(&v, TC_OTA_ADMIN_PATH, "X-Admin-Protocol: " TC_OTA_ADMIN_PROTOCOL "\r\n", NULL, 0,
              403);
    admin_bad(&v, TC_OTA_ADMIN_PATH,
              "X-Admin-Protocol: " TC_OTA_ADMIN_PROTOCOL
              "\r\nX-Admin-From: //se-id/eid/89049032123451234512345678901319\r\n",
              NULL, 0, 403);
    admin_bad(&v, TC_OTA_ADMIN_PATH,
              "X-Admin-Protocol: " TC_OTA_ADMIN_PROTOCOL "\r\nX-Admin-From: //se-id/eid/" EID1
              "0\r\n",
              NULL, 0, 403);
    /* The first POST carries no response script. */
    admin_bad(&v, TC_OTA_ADMIN_PATH, RESP_HEADERS, good, sizeof rsp, 409);
    /* Response scripts: wrong media type, no status, unknown status, garbage. */
    admin_bad(&v, TC_OTA_ADMIN_PATH "/00112233445566778899aabbccddeeff/1",
              STD_HEADERS "Content-Type: application/octet-stream\r\nX-Admin-Script-Status: ok\r\n",
              good, sizeof rsp, 415);
    admin_bad(&v, TC_OTA_ADMIN_PATH "/00112233445566778899aabbccddeeff/1",
              STD_HEADERS "Content-Type: " TC_OTA_CT_RESPONSE "\r\n", good, sizeof rsp, 400);
    admin_bad(&v, TC_OTA_ADMIN_PATH "/00112233445566778899aabbccddeeff/1",
              STD_HEADERS "Content-Type: " TC_OTA_CT_RESPONSE "\r\nX-Admin-Script-Status: fine\r\n",
              good, sizeof rsp, 400);
    admin_bad(&v, TC_OTA_ADMIN_PATH "/00112233445566778899aabbccddeeff/1", RESP_HEADERS, junk,
              sizeof junk, 400);
    /* A well-formed response to a session that does not exist. */
    admin_bad(&v, TC_OTA_ADMIN_PATH "/00112233445566778899aabbccddeeff/1", RESP_HEADERS, good,
              sizeof rsp, 409);
    struct tc_ota_stats st;
    tc_ota_server_stats(v.fx.s, &st);
    EXPECT_EQ_U(st.admin_refused, 11);
    /* GET on the administration resource. */
    struct cli c;
    char resp[512];
    static const char get[] = "GET " TC_OTA_ADMIN_PATH " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(cli_exchange(&c, get, sizeof get - 1, resp, sizeof resp) > 0);
    EXPECT(strncmp(resp, "HTTP/1.1 405 ", 13) == 0);
    cli_close(&c);
out:
    srv_stop(&v);
    EXPECT_EQ_U(REC.calls, 0);
}

/* ------------------------------------------------------------ remote SCP03 */

/* The agent's relay in-process: every C-APDU of the script to the emulated
 * card, the R-APDUs back as a response script. tamper_cmd / tamper_rsp flip
 * the last byte of the C-APDU / the first byte of the R-APDU in the given
 * step (a hostile agent). */
struct relay {
    struct tc_se_card *card;
    int tamper_cmd, tamper_rsp, steps;
};

static bool relay_script(struct relay *rl, const struct tc_buf *script, struct tc_buf *resp)
{
    struct tc_ota_bytes a[TC_OTA_SCRIPT_MAX], r[TC_OTA_SCRIPT_MAX];
    static uint8_t out[TC_OTA_SCRIPT_MAX][TC_SE_MAX_RESPONSE];
    uint8_t cmd[600];
    size_t n = 0;
    rl->steps++;
    if (tc_ota_script_decode(script->data, script->len, a, &n) != TC_OK)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t ol = 0;
        if (a[i].len > sizeof cmd)
            return false;
        memcpy(cmd, a[i].p, a[i].len);
        if (rl->tamper_cmd == rl->steps) /* the last MAC byte (before a 1-byte Le) */
            cmd[a[i].len - (a[i].p[4] + 5u < a[i].len ? 2u : 1u)] ^= 0x01;
        if (tc_se_process(rl->card, cmd, a[i].len, out[i], sizeof out[i], &ol) != TC_OK)
            return false;
        if (rl->tamper_rsp == rl->steps && ol > 2) /* the byte before SW1 SW2 */
            out[i][ol - 3] ^= 0x01;
        r[i] = (struct tc_ota_bytes){out[i], ol};
    }
    tc_buf_reset(resp);
    return tc_ota_response_encode(r, n, resp) == TC_OK;
}

static const uint8_t GP_KEY[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                   0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

/* Runs a remote session of GET DATA 9F70 (card life cycle) through the
 * relay; returns the code of the first failing step. */
static tc_err remote_run(struct relay *rl, struct tc_ota_remote *r, bool *done)
{
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_keyset ks;
    struct tc_se_params p;
    uint8_t atr[64];
    size_t al = 0;
    static const struct tc_apdu cmds[] = {
        {.cla = 0x80, .ins = 0xCA, .p1 = 0x9F, .p2 = 0x70, .has_le = true, .le = 256}};
    struct tc_buf script = new_buf(), resp = new_buf();
    tc_se_params_default(&p);
    tc_scp03_mem_provider_init(&mp, &kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x30, GP_KEY, GP_KEY, GP_KEY, 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&mp, &ks));
    tc_scp03_keyset_wipe(&ks);
    EXPECT_OK(tc_se_open_mem(&p, &rl->card));
    EXPECT_OK(tc_se_power_on(rl->card, atr, sizeof atr, &al));
    struct tc_scp03_host_config cfg = {
        .kvn = 0x30, .level = TC_SCP03_LEVEL_RENC, .aid = ISD, .aid_len = sizeof ISD};
    tc_err rc = tc_ota_remote_init(r, &kp, &cfg, cmds, 1);
    *done = false;
    const uint8_t *in = NULL;
    size_t in_len = 0;
    for (int i = 0; rc == TC_OK && !*done && i < 10; i++) {
        tc_buf_reset(&script);
        rc = tc_ota_remote_step(r, in, in_len, &script, done);
        if (rc != TC_OK || *done)
            break;
        if (!relay_script(rl, &script, &resp)) {
            rc = TC_ERR_IO;
            break;
        }
        in = resp.data;
        in_len = resp.len;
    }
    tc_buf_free(&script);
    tc_buf_free(&resp);
    tc_scp03_mem_provider_wipe(&mp);
    tc_se_params_wipe(&p);
    return rc;
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static void test_remote_scp03(void)
{
    struct relay rl = {0};
    struct tc_ota_remote *r = calloc(1, sizeof *r);
    bool done = false;
    EXPECT_OK(remote_run(&rl, r, &done));
    EXPECT(done);
    EXPECT_EQ_U(rl.steps, 3); /* SELECT+IU, EA, the wrapped GET DATA */
    EXPECT_EQ_U(r->sw[0], 0x9000);
    /* 9F70 01 <life cycle>: the card answered inside the channel. */
    EXPECT(r->data_len[0] == 4 && r->data[0][0] == 0x9F && r->data[0][1] == 0x70);
    /* A further step is refused. */
    struct tc_buf b = new_buf();
    EXPECT_ERR(tc_ota_remote_step(r, NULL, 0, &b, &done), TC_ERR_STATE);
    EXPECT(all_zero(&r->host.s, sizeof r->host.s)); /* session keys wiped */
    tc_buf_free(&b);
    tc_ota_remote_wipe(r);
    EXPECT(all_zero(r, sizeof *r));
    tc_se_close(rl.card);
    free(r);
}

/* The library relay (tc_ota_agent_run_script) through the card transport:
 * a whole remote SCP03 session, then the stop at the first error. */
static void test_agent_relay(void)
{
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_keyset ks;
    struct tc_se_params p;
    struct tc_se_card *card = NULL;
    struct tc_transport t;
    static const struct tc_apdu cmds[] = {
        {.cla = 0x80, .ins = 0xCA, .p1 = 0x9F, .p2 = 0x70, .has_le = true, .le = 256}};
    struct tc_scp03_host_config cfg = {
        .kvn = 0x30, .level = TC_SCP03_LEVEL_RENC, .aid = ISD, .aid_len = sizeof ISD};
    struct tc_ota_remote *r = calloc(1, sizeof *r);
    struct tc_buf script = new_buf(), resp = new_buf();
    tc_se_params_default(&p);
    EXPECT_OK(tc_se_open_mem(&p, &card));
    tc_se_params_wipe(&p);
    EXPECT_OK(tc_se_transport(card, &t));
    tc_scp03_mem_provider_init(&mp, &kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x30, GP_KEY, GP_KEY, GP_KEY, 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&mp, &ks));
    tc_scp03_keyset_wipe(&ks);
    EXPECT_OK(tc_ota_remote_init(r, &kp, &cfg, cmds, 1));
    bool done = false;
    const uint8_t *in = NULL;
    size_t in_len = 0;
    int steps = 0;
    while (!done && steps < 8) {
        tc_buf_reset(&script);
        tc_err rc = tc_ota_remote_step(r, in, in_len, &script, &done);
        EXPECT_OK(rc);
        if (rc != TC_OK || done)
            break;
        tc_buf_reset(&resp);
        EXPECT_OK(tc_ota_agent_run_script(&t, script.data, script.len, &resp));
        in = resp.data;
        in_len = resp.len;
        steps++;
    }
    EXPECT(done);
    EXPECT_EQ_U(steps, 3);
    EXPECT_EQ_U(r->sw[0], 0x9000);

    /* SELECT of an absent AID (6A82) stops the script: GET DATA is not sent. */
    static const uint8_t bad_select[] = {0xAE, 0x80, 0x22, 0x0A, 0x00, 0xA4, 0x04, 0x00,
                                         0x05, 0xD2, 0x76, 0x00, 0x00, 0x01, 0x22, 0x05,
                                         0x80, 0xCA, 0x9F, 0x70, 0x00, 0x00, 0x00};
    struct tc_ota_bytes rr[TC_OTA_SCRIPT_MAX];
    size_t n = 0, executed = 0;
    tc_buf_reset(&resp);
    EXPECT_OK(tc_ota_agent_run_script(&t, bad_select, sizeof bad_select, &resp));
    EXPECT_OK(tc_ota_response_decode(resp.data, resp.len, rr, &n, &executed));
    EXPECT_EQ_U(n, 1);
    EXPECT_EQ_U(executed, 1);
    EXPECT(rr[0].len == 2 && rr[0].p[0] == 0x6A && rr[0].p[1] == 0x82);
    /* A malformed script is refused before anything is sent. */
    static const uint8_t junk[] = {0xAE, 0x80, 0x22, 0x09, 0x80, 0xCA, 0x00, 0x00};
    tc_buf_reset(&resp);
    EXPECT(tc_ota_agent_run_script(&t, junk, sizeof junk, &resp) != TC_OK);
    EXPECT_EQ_U(resp.len, 0);

    tc_buf_free(&script);
    tc_buf_free(&resp);
    tc_ota_remote_wipe(r);
    free(r);
    tc_scp03_mem_provider_wipe(&mp);
    tc_transport_close(&t);
    tc_se_close(card);
}

/* A hostile agent changes bytes: the card (C-MAC) or the server (card
 * cryptogram, R-MAC) detects it, and the session keys are gone. */
static void test_remote_tampering_agent(void)
{
    static const struct {
        int cmd, rsp;
        tc_err want;
    } cases[] = {
        {0, 1, TC_ERR_VERIFY}, /* IU response altered: card challenge/cryptogram check */
        {0, 3, TC_ERR_VERIFY}, /* R-MAC of the GET DATA response does not verify */
        {2, 0, TC_ERR_AUTH},   /* EA's C-MAC altered: the card refuses EXTERNAL AUTHENTICATE */
        {3, 0, TC_ERR_AUTH},   /* GET DATA's C-MAC altered: the card answers 6982, session over */
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(cases); i++) {
        struct relay rl = {.tamper_cmd = cases[i].cmd, .tamper_rsp = cases[i].rsp};
        struct tc_ota_remote *r = calloc(1, sizeof *r);
        bool done = false;
        tc_err rc = remote_run(&rl, r, &done);
        if (rc != cases[i].want) {
            (void)fprintf(stderr, "  case %zu: got '%s' (sw %04X)\n", i, tc_err_name(rc),
                          (unsigned)r->sw[0]);
            EXPECT(false);
        }
        EXPECT(!done);
        EXPECT(all_zero(&r->host.s, sizeof r->host.s));
        tc_ota_remote_wipe(r);
        tc_se_close(rl.card);
        free(r);
    }
}

/* ------------------------------------------------------------ end to end */

/* The server's SCP03 application over HTTPS; the test is the agent,
 * relaying each script to the emulated card. */
static struct e2e {
    struct tc_scp03_mem_provider mp;
    int keys, releases, done;
    tc_err rc;
    uint16_t sw;
    uint8_t data[8];
    size_t data_len;
} E;

static tc_err e2e_keys(void *ctx, const char *eid, struct tc_scp03_key_provider *p, void **token)
{
    struct tc_scp03_keyset ks;
    (void)ctx;
    E.keys++;
    if (strcmp(eid, EID1) != 0)
        return TC_FAIL(TC_ERR_NOT_FOUND, "no keys for %s", eid);
    tc_scp03_mem_provider_init(&E.mp, p);
    tc_err rc = tc_scp03_keyset_set(&ks, 0x30, GP_KEY, GP_KEY, GP_KEY, 16);
    if (rc == TC_OK)
        rc = tc_scp03_mem_provider_add(&E.mp, &ks);
    tc_scp03_keyset_wipe(&ks);
    *token = &E.mp;
    return rc;
}

static void e2e_release(void *ctx, void *token)
{
    (void)ctx;
    E.releases++;
    tc_scp03_mem_provider_wipe(token);
}

static void e2e_done(void *ctx, const char *eid, const struct tc_ota_remote *r, tc_err rc)
{
    (void)ctx;
    (void)eid;
    E.done++;
    E.rc = rc;
    if (rc == TC_OK) {
        E.sw = r->sw[0];
        E.data_len = r->data_len[0] < sizeof E.data ? r->data_len[0] : 0;
        memcpy(E.data, r->data[0], E.data_len);
    }
}

static void e2e_run(int tamper_cmd, int expect_final)
{
    static const struct tc_apdu cmds[] = {
        {.cla = 0x80, .ins = 0xCA, .p1 = 0x9F, .p2 = 0x70, .has_le = true, .le = 256}};
    struct tc_ota_scp03_app_config ac = {
        .keys = e2e_keys,
        .release = e2e_release,
        .done = e2e_done,
        .host = {.kvn = 0x30, .level = TC_SCP03_LEVEL_RENC, .aid = ISD, .aid_len = sizeof ISD},
        .cmds = cmds,
        .ncmds = 1,
        .max_sessions = 4};
    struct tc_ota_scp03_app *a = NULL;
    struct tc_ota_app app;
    struct srv v;
    struct relay rl = {.tamper_cmd = tamper_cmd};
    struct tc_se_params p;
    uint8_t atr[64];
    size_t al = 0;
    memset(&E, 0, sizeof E);
    EXPECT_OK(tc_ota_scp03_app_new(&ac, &a, &app));
    tc_se_params_default(&p);
    EXPECT_OK(tc_se_open_mem(&p, &rl.card));
    tc_se_params_wipe(&p);
    EXPECT_OK(tc_se_power_on(rl.card, atr, sizeof atr, &al));
    if (a == NULL || !srv_start_app(&v, &F.root.crl, 3000, 0, &app))
        goto out;
    struct cli c;
    struct reply r;
    struct tc_buf script = new_buf(), resp = new_buf();
    EXPECT(cli_open(&c, v.fx.port, &F.good, TLS1_3_VERSION, 5));
    EXPECT(admin_post(&c, TC_OTA_ADMIN_PATH, STD_HEADERS, NULL, 0, &r));
    int posts = 1;
    while (r.code == 200 && posts < 10) {
        char next[128];
        memcpy(next, r.next, sizeof next);
        tc_buf_reset(&script);
        tc_buf_put(&script, r.body, r.body_len);
        EXPECT(relay_script(&rl, &script, &resp));
        EXPECT(admin_post(&c, next, RESP_HEADERS, resp.data, resp.len, &r));
        posts++;
    }
    EXPECT_EQ_U(r.code, expect_final);
    cli_close(&c);
    tc_buf_free(&script);
    tc_buf_free(&resp);
    struct tc_ota_stats st = stats_wait(&v, one_request);
    (void)st;
out:
    srv_stop(&v);
    tc_ota_scp03_app_free(a);
    tc_se_close(rl.card);
    EXPECT_EQ_U(E.keys, 1);
    EXPECT_EQ_U(E.releases, 1); /* keys released, session state wiped */
    EXPECT_EQ_U(E.done, 1);
}

static void test_e2e_scp03_over_https(void)
{
    e2e_run(0, 204);
    EXPECT_ERR(E.rc, TC_OK);
    EXPECT_EQ_U(E.sw, 0x9000);
    EXPECT(E.data_len == 4 && E.data[0] == 0x9F && E.data[1] == 0x70);
}

static void test_e2e_tampering_agent(void)
{
    /* The agent alters the wrapped GET DATA (step 3): the card refuses it
     * and the server ends the session (500, keys released). */
    e2e_run(3, 500);
    EXPECT_ERR(E.rc, TC_ERR_AUTH);
}

static void fixture_free(void)
{
    struct ca *cas[] = {&F.root, &F.batch, &F.batch_b, &F.batch_old, &F.froot, &F.fbatch};
    for (size_t i = 0; i < TC_ARRAY_LEN(cas); i++) {
        tc_pki_issuer_free(cas[i]->iss);
        tc_signer_soft_free(&cas[i]->key);
        tc_buf_free(&cas[i]->cert);
        tc_buf_free(&cas[i]->crl);
    }
    struct device *ds[] = {&F.good, &F.revoked, &F.in_b, &F.old, &F.foreign};
    for (size_t i = 0; i < TC_ARRAY_LEN(ds); i++) {
        EVP_PKEY_free(ds[i]->pkey);
        X509_free(ds[i]->x509);
        tc_buf_free(&ds[i]->der);
    }
    tc_buf_free(&F.root_crl_b);
    EVP_PKEY_free(F.srv_key);
    X509_free(F.srv_cert);
    libevent_global_shutdown();
}

static void test_zz_cleanup(void)
{
    fixture_free();
}

static const struct tc_test_case cases[] = {
    {"script_vectors", test_script_vectors},
    {"script_encode_rejects", test_script_encode_rejects},
    {"trust_verify", test_trust_verify},
    {"trust_load", test_trust_load},
    {"good_device", test_good_device},
    {"revoked_device", test_revoked_device},
    {"revoked_batch", test_revoked_batch},
    {"refusal_alert_arrives", test_refusal_alert_arrives},
    {"expired_batch", test_expired_batch},
    {"foreign_root", test_foreign_root},
    {"no_client_cert", test_no_client_cert},
    {"tls12_refused", test_tls12_refused},
    {"garbage", test_garbage},
    {"silent_peer_times_out", test_silent_peer_times_out},
    {"slow_sender", test_slow_sender},
    {"oversized_body", test_oversized_body},
    {"oversized_headers", test_oversized_headers},
    {"connection_cap", test_connection_cap},
    {"admin_session", test_admin_session},
    {"admin_async_session", test_admin_async_session},
    {"admin_async_peer_gone", test_admin_async_peer_gone},
    {"admin_async_server_stops", test_admin_async_server_stops},
    {"admin_reply_one_record", test_admin_reply_one_record},
    {"admin_replay", test_admin_replay},
    {"admin_refusals", test_admin_refusals},
    {"remote_scp03", test_remote_scp03},
    {"remote_tampering_agent", test_remote_tampering_agent},
    {"agent_relay", test_agent_relay},
    {"e2e_scp03_over_https", test_e2e_scp03_over_https},
    {"e2e_tampering_agent", test_e2e_tampering_agent},
    {"zz_cleanup", test_zz_cleanup},
};

TC_TEST_MAIN("ota", cases)
