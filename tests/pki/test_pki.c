/*
 * pki tests: EID vectors (SGP.29), extension encodings byte-exact against
 * independently produced DER, the proof-of-possession layout and a PoP made
 * by OpenSSL, and full chains root -> batch CA -> device checked by our
 * verifier AND by `openssl verify -x509_strict -policy_check -crl_check_all`
 * and GnuTLS `certtool`, including every rejection the profile promises.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "harness.h"
#include "pki/pki_int.h"

/* ------------------------------------------------------------ EID */

static void test_eid_vectors(void)
{
    struct tc_vec v;
    int n = 0;
    if (!tc_vec_open(&v, "pki/eid.txt"))
        return;
    while (tc_vec_next(&v)) {
        const char *eid = tc_vec_get(&v, "EID");
        const char *res = tc_vec_get(&v, "RESULT");
        if (eid == NULL || res == NULL) {
            EXPECT(false);
            continue;
        }
        n++;
        tc_err want = strcmp(res, "ok") == 0       ? TC_OK
                      : strcmp(res, "verify") == 0 ? TC_ERR_VERIFY
                                                   : TC_ERR_FORMAT;
        EXPECT_ERR(tc_pki_eid_check(eid), want);
        uint8_t bcd[TC_PKI_EID_BCD_LEN];
        EXPECT_ERR(tc_pki_eid_to_bcd(eid, bcd), want);
        if (want == TC_OK) {
            size_t bl = 0;
            uint8_t *exp = tc_vec_hex(&v, "BCD", &bl);
            EXPECT_MEM(bcd, sizeof bcd, exp, bl);
            free(exp);
            char back[33];
            EXPECT_OK(tc_pki_eid_from_bcd(bcd, back));
            EXPECT_STR(back, eid);
        }
    }
    tc_vec_close(&v);
    EXPECT(n == 10);
}

static void test_eid_complete(void)
{
    struct tc_vec v;
    int n = 0;
    if (!tc_vec_open(&v, "pki/eid_complete.txt"))
        return;
    while (tc_vec_next(&v)) {
        char out[33];
        EXPECT_OK(tc_pki_eid_complete(tc_vec_get(&v, "IN"), out));
        EXPECT_STR(out, tc_vec_get(&v, "OUT"));
        n++;
    }
    tc_vec_close(&v);
    EXPECT(n == 4);
    char out[33];
    EXPECT_ERR(tc_pki_eid_complete("8904903212345123451234567890", out), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_eid_complete("89049032123451234512345678901X", out), TC_ERR_FORMAT);
}

static void test_eid_bcd_and_prefix(void)
{
    uint8_t bcd[16];
    char out[33];
    memset(bcd, 0x89, sizeof bcd);
    bcd[5] = 0x8A; /* not BCD */
    EXPECT_ERR(tc_pki_eid_from_bcd(bcd, out), TC_ERR_FORMAT);
    memset(bcd, 0x11, sizeof bcd); /* BCD, bad check digits */
    EXPECT_ERR(tc_pki_eid_from_bcd(bcd, out), TC_ERR_VERIFY);
    EXPECT_OK(tc_pki_eid_prefix_check("8904903212"));
    EXPECT_ERR(tc_pki_eid_prefix_check(""), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_eid_prefix_check("89A"), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_eid_prefix_check("8904903212345123451234567890123"), TC_ERR_FORMAT);
}

/* ------------------------------------------------------------ DER */

static void test_ext_vectors(void)
{
    struct tc_vec v;
    int n = 0;
    if (!tc_vec_open(&v, "pki/ext.txt"))
        return;
    while (tc_vec_next(&v)) {
        const char *kind = tc_vec_get(&v, "KIND");
        uint8_t m[512];
        struct tc_buf b;
        tc_buf_init_fixed(&b, m, sizeof m);
        size_t el = 0;
        uint8_t *exp = tc_vec_hex(&v, "DER", &el);
        n++;
        if (strcmp(kind, "hmn") == 0) {
            uint8_t bcd[16], back[16];
            EXPECT_OK(tc_pki_eid_to_bcd(tc_vec_get(&v, "EID"), bcd));
            EXPECT_OK(tc_pki_ext_hmn(bcd, &b));
            EXPECT_OK(tc_pki_parse_hmn(exp, el, back));
            EXPECT_MEM(back, 16, bcd, 16);
        } else if (strcmp(kind, "mfg") == 0) {
            uint64_t t = 0;
            EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "TIME"), UINT32_MAX, &t));
            EXPECT_OK(
                tc_pki_ext_mfg(tc_vec_get(&v, "BATCH"), tc_vec_get(&v, "STATION"), (int64_t)t, &b));
            char bid[65], sid[65];
            int64_t pt = 0;
            EXPECT_OK(tc_pki_parse_mfg(exp, el, bid, sid, &pt));
            EXPECT_STR(bid, tc_vec_get(&v, "BATCH"));
            EXPECT_STR(sid, tc_vec_get(&v, "STATION"));
            EXPECT_EQ_U(pt, t);
        } else if (strcmp(kind, "batch") == 0) {
            EXPECT_OK(tc_pki_ext_batch(tc_vec_get(&v, "BATCH"), tc_vec_get(&v, "PREFIX"), &b));
            char bid[65], pfx[33];
            EXPECT_OK(tc_pki_parse_batch(exp, el, bid, pfx));
            EXPECT_STR(pfx, tc_vec_get(&v, "PREFIX"));
        } else if (strcmp(kind, "policy") == 0) {
            EXPECT_OK(tc_pki_ext_policy(&b));
        } else if (strcmp(kind, "cdp") == 0) {
            EXPECT_OK(tc_pki_ext_cdp(tc_vec_get(&v, "URL"), &b));
        } else if (strcmp(kind, "nc") == 0) {
            EXPECT_OK(tc_pki_ext_nc(tc_vec_get(&v, "O"), tc_vec_get(&v, "OU"), &b));
        } else {
            EXPECT(false);
        }
        EXPECT_MEM(b.data, b.len, exp, el);
        free(exp);
    }
    tc_vec_close(&v);
    EXPECT(n == 6);
}

static void test_der_parsers_reject(void)
{
    uint8_t bcd[16];
    char a[65], s[65], p[33];
    int64_t t;
    /* Truncated, trailing byte, non-minimal length, wrong tag, BER length. */
    static const uint8_t trunc[] = {0x30, 0x05, 0x0C, 0x01, 0x41};
    static const uint8_t trail[] = {0x30, 0x00, 0x00};
    static const uint8_t nonmin[] = {0x30, 0x81, 0x03, 0x0C, 0x01, 0x41};
    static const uint8_t indef[] = {0x30, 0x80, 0x00, 0x00};
    static const uint8_t wrongtag[] = {0x31, 0x00};
    EXPECT_ERR(tc_pki_parse_batch(trunc, sizeof trunc, a, p), TC_ERR_TRUNCATED);
    EXPECT_ERR(tc_pki_parse_batch(trail, sizeof trail, a, p), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_parse_batch(nonmin, sizeof nonmin, a, p), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_parse_batch(indef, sizeof indef, a, p), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_parse_mfg(wrongtag, sizeof wrongtag, a, s, &t), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_parse_hmn(wrongtag, sizeof wrongtag, bcd), TC_ERR_FORMAT);
    /* Time: fractional seconds, a 30th of February, hour 24. */
    EXPECT_ERR(tc_pki_gentime_parse((const uint8_t *)"20260230000000Z", 15, &t), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_gentime_parse((const uint8_t *)"20260101240000Z", 15, &t), TC_ERR_FORMAT);
    EXPECT_ERR(tc_pki_gentime_parse((const uint8_t *)"20260101000000.5Z", 17, &t), TC_ERR_FORMAT);
    EXPECT_OK(tc_pki_gentime_parse((const uint8_t *)"20240229235959Z", 15, &t));
    EXPECT_EQ_U(t, 1709251199);
    EXPECT_OK(tc_pki_gentime_parse((const uint8_t *)TC_PKI_NOT_AFTER_MAX, 15, &t));
    EXPECT_EQ_U(t, 253402300799);
}

/* ------------------------------------------------------------ PoP */

static void test_pop_vector(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "pki/pop.txt"))
        return;
    EXPECT(tc_vec_next(&v));
    size_t sl = 0, nl = 0, ml = 0, gl = 0;
    uint8_t *spki = tc_vec_hex(&v, "SPKI", &sl);
    uint8_t *nonce = tc_vec_hex(&v, "NONCE", &nl);
    uint8_t *msg = tc_vec_hex(&v, "MSG", &ml);
    uint8_t *sig = tc_vec_hex(&v, "SIG", &gl);
    const char *eid = tc_vec_get(&v, "EID");
    uint8_t out[TC_PKI_POP_MSG_LEN];
    EXPECT(nl == TC_PKI_NONCE_LEN);
    EXPECT_OK(tc_pki_pop_message(eid, spki, sl, nonce, out));
    EXPECT_MEM(out, sizeof out, msg, ml);
    EXPECT_OK(tc_pki_pop_verify(eid, spki, sl, nonce, sig, gl));
    /* Another nonce, another EID, a damaged signature: all refused. */
    nonce[0] ^= 1;
    EXPECT_ERR(tc_pki_pop_verify(eid, spki, sl, nonce, sig, gl), TC_ERR_VERIFY);
    nonce[0] ^= 1;
    EXPECT_ERR(tc_pki_pop_verify("89086030202200000022000023022943", spki, sl, nonce, sig, gl),
               TC_ERR_VERIFY);
    sig[gl - 1] ^= 0x01;
    EXPECT_ERR(tc_pki_pop_verify(eid, spki, sl, nonce, sig, gl), TC_ERR_VERIFY);
    sig[gl - 1] ^= 0x01;
    EXPECT_ERR(tc_pki_pop_verify(eid, spki, sl, nonce, sig, gl - 1), TC_ERR_VERIFY);
    /* Bad EID, wrong key encodings. */
    EXPECT_ERR(tc_pki_pop_verify("89049032123451234512345678901234", spki, sl, nonce, sig, gl),
               TC_ERR_VERIFY);
    EXPECT_ERR(tc_pki_pop_verify(eid, spki, sl - 1, nonce, sig, gl), TC_ERR_FORMAT);
    spki[26] = 0x02; /* compressed point tag */
    EXPECT_ERR(tc_pki_pop_message(eid, spki, sl, nonce, out), TC_ERR_FORMAT);
    spki[26] = 0x04;
    spki[sl - 1] ^= 0x01; /* point no longer on the curve */
    EVP_PKEY *k = NULL;
    EXPECT_ERR(tc_pki_p256_spki(spki, sl, &k, NULL), TC_ERR_CRYPTO);
    EXPECT(k == NULL);
    free(spki);
    free(nonce);
    free(msg);
    free(sig);
    tc_vec_close(&v);
}

/* ------------------------------------------------------------ fixture */

/* The fixture's clock: 30 days ago, so GnuTLS certtool (which has no
 * option to verify at another time) sees everything valid now. */
static int64_t T0;
#define DAY      INT64_C(86400)
#define PROD     (T0 + 10 * DAY)
#define EID_OK   "89049032123451234512345678901235"
#define PREFIX   "890490321234"
#define MFR      "Acme Devices"
#define BATCH    "B-2026-11-A"
#define ROOT_URL "http://pki.example.com/root.crl"

struct fx {
    struct tc_signer root_key, batch_key, batch2_key;
    EVP_PKEY *batch_pkey; /* B1's key, kept to forge certificates and CRLs */
    struct tc_buf root, batch, batch2, root_crl, batch_crl;
    struct tc_pki_issuer *root_iss, *batch_iss, *batch2_iss;
    char dir[64];
    bool ok;
};

static struct tc_buf new_buf(void)
{
    struct tc_buf b;
    tc_buf_init_heap(&b, 1u << 20);
    return b;
}

static bool make_batch(struct fx *f, struct tc_signer *key, const char *batch, const char *prefix,
                       struct tc_buf *der, struct tc_pki_issuer **iss, EVP_PKEY **pkey)
{
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (k == NULL || tc_signer_soft_new(k, key) != TC_OK ||
        key->public_key(key->ctx, spki, sizeof spki, &sl) != TC_OK) {
        EVP_PKEY_free(k);
        return false;
    }
    if (pkey != NULL)
        *pkey = k;
    else
        EVP_PKEY_free(k);
    struct tc_pki_batch_params bp = {.batch_id = batch,
                                     .eid_prefix = prefix,
                                     .manufacturer = MFR,
                                     .crl_url = ROOT_URL,
                                     .not_before = T0,
                                     .not_after = T0 + 3650 * DAY};
    *der = new_buf();
    tc_err rc = tc_pki_batch_ca_create(f->root_iss, spki, sl, &bp, der);
    EXPECT_OK(rc);
    if (rc != TC_OK)
        return false;
    rc = tc_pki_issuer_new(key, der->data, der->len, iss);
    EXPECT_OK(rc);
    return rc == TC_OK;
}

static bool write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[160];
    (void)snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL)
        return false;
    bool ok = fwrite(p, 1, n, fp) == n;
    return fclose(fp) == 0 && ok;
}

static bool write_pem(const char *dir, const char *name, const char *label, const uint8_t *der,
                      size_t len)
{
    struct tc_buf pem = new_buf();
    bool ok = tc_pki_pem_encode(label, der, len, &pem) == TC_OK &&
              write_file(dir, name, pem.data, pem.len);
    tc_buf_free(&pem);
    return ok;
}

/* Concatenate files (PEM bundles) in the fixture directory. */
static int run(const char *fmt, ...) TC_PRINTF(1, 2);

static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof cmd)
        return -1;
    bool verbose = getenv("TC_PKI_VERBOSE") != NULL;
    char full[2100];
    /* A group, so the command's own redirections keep working. */
    (void)snprintf(full, sizeof full, verbose ? "{ %s ; }" : "{ %s ; } >/dev/null 2>&1", cmd);
    if (verbose)
        (void)fprintf(stderr, "+ %s\n", cmd);
    int st = system(full);
    int rc = (st == -1 || !WIFEXITED(st)) ? -1 : WEXITSTATUS(st);
    if (verbose)
        (void)fprintf(stderr, "+ exit %d (status 0x%x)\n", rc, (unsigned)st);
    return rc;
}

static bool crl_make(struct tc_pki_issuer *iss, const struct tc_pki_revoked *list, size_t n,
                     struct tc_buf *der)
{
    *der = new_buf();
    tc_err rc = tc_pki_crl_create(iss, 1, T0 + DAY, T0 + 400 * DAY, list, n, der);
    EXPECT_OK(rc);
    return rc == TC_OK;
}

static bool fx_setup(struct fx *f)
{
    memset(f, 0, sizeof *f);
    T0 = ((int64_t)time(NULL) / DAY - 30) * DAY;
    (void)snprintf(f->dir, sizeof f->dir, "/tmp/tc-pki-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        EXPECT(false);
        return false;
    }
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ECDSA_P384_SHA384, &f->root_key));
    struct tc_pki_root_params rp = {.common_name = "Acme Device Root CA",
                                    .organization = MFR,
                                    .country = "DE",
                                    .not_before = T0,
                                    .not_after = T0 + 7300 * DAY};
    f->root = new_buf();
    tc_err rc = tc_pki_root_create(&f->root_key, &rp, &f->root);
    EXPECT_OK(rc);
    if (rc != TC_OK)
        return false;
    rc = tc_pki_issuer_new(&f->root_key, f->root.data, f->root.len, &f->root_iss);
    EXPECT_OK(rc);
    if (rc != TC_OK)
        return false;
    if (!make_batch(f, &f->batch_key, BATCH, PREFIX, &f->batch, &f->batch_iss, &f->batch_pkey) ||
        !make_batch(f, &f->batch2_key, "B-2026-11-B", "8904903299", &f->batch2, &f->batch2_iss,
                    NULL))
        return false;
    if (!crl_make(f->root_iss, NULL, 0, &f->root_crl) ||
        !crl_make(f->batch_iss, NULL, 0, &f->batch_crl))
        return false;
    f->ok = write_pem(f->dir, "root.pem", "CERTIFICATE", f->root.data, f->root.len) &&
            write_pem(f->dir, "batch.pem", "CERTIFICATE", f->batch.data, f->batch.len) &&
            write_pem(f->dir, "batch2.pem", "CERTIFICATE", f->batch2.data, f->batch2.len) &&
            write_pem(f->dir, "root.crl", "X509 CRL", f->root_crl.data, f->root_crl.len) &&
            write_pem(f->dir, "batch.crl", "X509 CRL", f->batch_crl.data, f->batch_crl.len);
    EXPECT(f->ok);
    return f->ok;
}

static void fx_free(struct fx *f)
{
    tc_pki_issuer_free(f->root_iss);
    tc_pki_issuer_free(f->batch_iss);
    tc_pki_issuer_free(f->batch2_iss);
    tc_signer_soft_free(&f->root_key);
    tc_signer_soft_free(&f->batch_key);
    tc_signer_soft_free(&f->batch2_key);
    EVP_PKEY_free(f->batch_pkey);
    tc_buf_free(&f->root);
    tc_buf_free(&f->batch);
    tc_buf_free(&f->batch2);
    tc_buf_free(&f->root_crl);
    tc_buf_free(&f->batch_crl);
    if (f->dir[0] != '\0' && getenv("TC_PKI_KEEP") == NULL)
        (void)run("rm -rf '%s'", f->dir);
}

/* A device key and its PoP over (eid, key, nonce). */
struct dev {
    struct tc_signer key;
    uint8_t spki[TC_SPKI_MAX];
    size_t spki_len;
    uint8_t nonce[TC_PKI_NONCE_LEN];
    uint8_t pop[TC_SIG_MAX];
    size_t pop_len;
};

static bool dev_new(struct dev *d, const char *eid)
{
    uint8_t msg[TC_PKI_POP_MSG_LEN];
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < sizeof d->nonce; i++)
        d->nonce[i] = (uint8_t)(0xA0 + i);
    bool ok = tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &d->key) == TC_OK &&
              d->key.public_key(d->key.ctx, d->spki, sizeof d->spki, &d->spki_len) == TC_OK &&
              tc_pki_pop_message(eid, d->spki, d->spki_len, d->nonce, msg) == TC_OK &&
              d->key.sign(d->key.ctx, msg, sizeof msg, d->pop, sizeof d->pop, &d->pop_len) == TC_OK;
    EXPECT(ok);
    return ok;
}

static tc_err issue(struct fx *f, struct tc_pki_issuer *iss, struct dev *d, const char *eid,
                    struct tc_buf *der, uint8_t serial[TC_PKI_SERIAL_LEN])
{
    struct tc_pki_device_req r = {.eid = eid,
                                  .spki = d->spki,
                                  .spki_len = d->spki_len,
                                  .nonce = d->nonce,
                                  .pop = d->pop,
                                  .pop_len = d->pop_len,
                                  .station_id = "station-07",
                                  .production_time = PROD};
    (void)f;
    *der = new_buf();
    return tc_pki_device_issue(iss, &r, der, serial);
}

static tc_err verify(struct fx *f, const struct tc_buf *dev, const struct tc_buf *batch,
                     const struct tc_buf *root_crl, const struct tc_buf *batch_crl, char *why,
                     size_t why_size)
{
    struct tc_pki_chain c = {.root = f->root.data,
                             .root_len = f->root.len,
                             .batch = batch->data,
                             .batch_len = batch->len,
                             .device = dev ? dev->data : NULL,
                             .device_len = dev ? dev->len : 0,
                             .root_crl = root_crl->data,
                             .root_crl_len = root_crl->len,
                             .batch_crl = batch_crl ? batch_crl->data : NULL,
                             .batch_crl_len = batch_crl ? batch_crl->len : 0,
                             .at = PROD + DAY};
    return tc_pki_verify(&c, why, why_size);
}

/* openssl verify with the strict flags; CRL files given by name. */
static int ossl_verify(struct fx *f, const char *leaf, const char *untrusted, const char *rcrl,
                       const char *bcrl)
{
    char crls[256] = "";
    if (bcrl != NULL)
        (void)snprintf(crls, sizeof crls, "-CRLfile '%s/%s' -CRLfile '%s/%s'", f->dir, rcrl, f->dir,
                       bcrl);
    else
        (void)snprintf(crls, sizeof crls, "-CRLfile '%s/%s'", f->dir, rcrl);
    char unt[160] = "";
    if (untrusted != NULL)
        (void)snprintf(unt, sizeof unt, "-untrusted '%s/%s'", f->dir, untrusted);
    return run("openssl verify -x509_strict -policy_check -crl_check_all -attime %lld "
               "-CAfile '%s/root.pem' %s %s '%s/%s'",
               (long long)(PROD + DAY), f->dir, unt, crls, f->dir, leaf);
}

/* GnuTLS: the chain alone (--verify-chain), then against the root with the
 * CRLs loaded (--verify). */
static int gnutls_chain(struct fx *f, const char *chain)
{
    return run("certtool --verify-chain --infile '%s/%s'", f->dir, chain);
}

static int gnutls_crl(struct fx *f, const char *chain, const char *crls)
{
    return run("certtool --verify --load-ca-certificate '%s/root.pem' "
               "--load-crl '%s/%s' --infile '%s/%s'",
               f->dir, f->dir, crls, f->dir, chain);
}

static bool bundle(struct fx *f, const char *out, const char *a, const char *b, const char *c)
{
    if (c == NULL)
        return run("cat '%s/%s' '%s/%s' > '%s/%s'", f->dir, a, f->dir, b, f->dir, out) == 0;
    return run("cat '%s/%s' '%s/%s' '%s/%s' > '%s/%s'", f->dir, a, f->dir, b, f->dir, c, f->dir,
               out) == 0;
}

/* ------------------------------------------------------------ chains */

/* OpenSSL's own DER encoding of the parsed TBSCertificate (i2d_re_X509_tbs
 * re-encodes from the decoded fields) equals the bytes issued: the
 * certificate is what OpenSSL itself would have encoded. */
static bool tbs_reencodes(const uint8_t *der, size_t len)
{
    const uint8_t *p = der;
    uint8_t *re = NULL;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    bool ok = x != NULL && p == der + len;
    struct tc_cursor c, cert, tbs;
    tc_cursor_init(&c, der, len);
    ok = ok && tc_pki_der_get(&c, DER_SEQUENCE, &cert) == TC_OK;
    size_t start = cert.pos;
    ok = ok && tc_pki_der_get(&cert, DER_SEQUENCE, &tbs) == TC_OK;
    int n = ok ? i2d_re_X509_tbs(x, &re) : 0;
    ok = ok && n > 0 && (size_t)n == cert.pos - start &&
         memcmp(re, cert.data + start, (size_t)n) == 0;
    OPENSSL_free(re);
    X509_free(x);
    return ok;
}

static void test_chain_ok(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    uint8_t serial[TC_PKI_SERIAL_LEN];
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_OK(issue(&f, f.batch_iss, &d, EID_OK, &dev, serial));
    EXPECT(serial[0] >= 0x40 && serial[0] <= 0x7F);
    EXPECT(tbs_reencodes(dev.data, dev.len));

    /* Our verifier: device chain and the batch CA alone. */
    EXPECT_OK(verify(&f, &dev, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why));
    EXPECT_STR(why, "");
    EXPECT_OK(verify(&f, NULL, &f.batch, &f.root_crl, NULL, why, sizeof why));

    struct tc_pki_device_info di;
    EXPECT_OK(tc_pki_check_device(dev.data, dev.len, &di));
    EXPECT_STR(di.eid, EID_OK);
    EXPECT_STR(di.manufacturer, MFR);
    EXPECT_STR(di.batch_id, BATCH);
    EXPECT_STR(di.station_id, "station-07");
    EXPECT_EQ_U(di.production_time, PROD);
    EXPECT_MEM(di.serial, di.serial_len, serial, sizeof serial);
    struct tc_pki_batch_info bi;
    EXPECT_OK(tc_pki_check_batch(f.batch.data, f.batch.len, &bi));
    EXPECT_STR(bi.eid_prefix, PREFIX);
    EXPECT_OK(tc_pki_check_root(f.root.data, f.root.len));
    enum tc_pki_kind k;
    EXPECT_OK(tc_pki_kind_of(f.root.data, f.root.len, &k));
    EXPECT(k == TC_PKI_KIND_ROOT);
    EXPECT_OK(tc_pki_kind_of(f.batch.data, f.batch.len, &k));
    EXPECT(k == TC_PKI_KIND_BATCH);
    EXPECT_OK(tc_pki_kind_of(dev.data, dev.len, &k));
    EXPECT(k == TC_PKI_KIND_DEVICE);
    /* Each profile refuses the others' certificates. */
    EXPECT_ERR(tc_pki_check_device(f.batch.data, f.batch.len, NULL), TC_ERR_VERIFY);
    EXPECT_ERR(tc_pki_check_batch(dev.data, dev.len, NULL), TC_ERR_VERIFY);
    EXPECT_ERR(tc_pki_check_root(f.batch.data, f.batch.len), TC_ERR_VERIFY);
    EXPECT_ERR(tc_pki_check_batch(f.root.data, f.root.len, NULL), TC_ERR_VERIFY);

    /* The external verifiers. */
    EXPECT(write_pem(f.dir, "dev.pem", "CERTIFICATE", dev.data, dev.len));
    EXPECT(ossl_verify(&f, "dev.pem", "batch.pem", "root.crl", "batch.crl") == 0);
    EXPECT(ossl_verify(&f, "batch.pem", NULL, "root.crl", NULL) == 0);
    EXPECT(ossl_verify(&f, "root.pem", NULL, "root.crl", NULL) == 0);
    EXPECT(bundle(&f, "chain.pem", "dev.pem", "batch.pem", "root.pem"));
    EXPECT(bundle(&f, "leaf2.pem", "dev.pem", "batch.pem", NULL));
    EXPECT(bundle(&f, "crls.pem", "root.crl", "batch.crl", NULL));
    EXPECT(gnutls_chain(&f, "chain.pem") == 0);
    EXPECT(gnutls_crl(&f, "leaf2.pem", "crls.pem") == 0);
    /* CRLs themselves verify under their issuers (openssl crl -verify). */
    EXPECT(run("openssl crl -noout -CAfile '%s/root.pem' -in '%s/root.crl'", f.dir, f.dir) == 0);
    EXPECT(run("openssl crl -noout -CAfile '%s/batch.pem' -in '%s/batch.crl'", f.dir, f.dir) == 0);
    EXPECT(run("openssl crl -noout -CAfile '%s/batch.pem' -in '%s/root.crl'", f.dir, f.dir) != 0);
    /* certtool --verify-crl checks the CRL signatures with the issuer. */
    EXPECT(run("certtool --verify-crl --load-ca-certificate '%s/root.pem' --infile '%s/root.crl'",
               f.dir, f.dir) == 0);
    EXPECT(run("certtool --verify-crl --load-ca-certificate '%s/batch.pem' --infile "
               "'%s/batch.crl'",
               f.dir, f.dir) == 0);
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static void test_revoked_device(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf(), crl = new_buf();
    struct tc_pki_revoked r = {.serial_len = TC_PKI_SERIAL_LEN, .revoked_at = PROD, .reason = 1};
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_OK(issue(&f, f.batch_iss, &d, EID_OK, &dev, r.serial));
    tc_buf_free(&crl);
    if (!crl_make(f.batch_iss, &r, 1, &crl))
        goto out;
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &crl, why, sizeof why), TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: certificate revoked");
    EXPECT(write_pem(f.dir, "dev.pem", "CERTIFICATE", dev.data, dev.len));
    EXPECT(write_pem(f.dir, "rev.crl", "X509 CRL", crl.data, crl.len));
    EXPECT(ossl_verify(&f, "dev.pem", "batch.pem", "root.crl", "rev.crl") == 2);
    EXPECT(bundle(&f, "leaf2.pem", "dev.pem", "batch.pem", NULL));
    EXPECT(bundle(&f, "crls.pem", "root.crl", "rev.crl", NULL));
    EXPECT(gnutls_crl(&f, "leaf2.pem", "crls.pem") != 0);
    /* Without any CRL for the batch the path is refused too (crl_check_all). */
    char w2[256];
    struct tc_buf none = new_buf();
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &none, w2, sizeof w2), TC_ERR_FORMAT);
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &f.root_crl, w2, sizeof w2), TC_ERR_VERIFY);
    EXPECT_STR(w2, "device certificate: unable to get certificate CRL");
    tc_buf_free(&none);
    /* CRL fields: v2, number, AKI, nextUpdate, the entry with its reason. */
    const uint8_t *p = crl.data;
    X509_CRL *x = d2i_X509_CRL(NULL, &p, (long)crl.len);
    EXPECT(x != NULL);
    if (x != NULL) {
        EXPECT(X509_CRL_get_version(x) == X509_CRL_VERSION_2);
        EXPECT(X509_CRL_get0_nextUpdate(x) != NULL);
        ASN1_INTEGER *num = X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL);
        EXPECT(num != NULL && ASN1_INTEGER_get(num) == 1);
        ASN1_INTEGER_free(num);
        EXPECT(X509_CRL_get_ext_by_NID(x, NID_authority_key_identifier, -1) >= 0);
        STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(x);
        EXPECT(sk_X509_REVOKED_num(revs) == 1);
        ASN1_ENUMERATED *why_code =
            X509_REVOKED_get_ext_d2i(sk_X509_REVOKED_value(revs, 0), NID_crl_reason, NULL, NULL);
        EXPECT(why_code != NULL && ASN1_ENUMERATED_get(why_code) == 1);
        ASN1_ENUMERATED_free(why_code);
        X509_CRL_free(x);
    }
    /* CRL arguments. */
    struct tc_buf b = new_buf();
    EXPECT_ERR(tc_pki_crl_create(f.batch_iss, 2, T0 + DAY, T0 + DAY, NULL, 0, &b), TC_ERR_ARG);
    r.reason = 7;
    EXPECT_ERR(tc_pki_crl_create(f.batch_iss, 2, T0, T0 + DAY, &r, 1, &b), TC_ERR_ARG);
    r.reason = -1;
    r.serial_len = 0;
    EXPECT_ERR(tc_pki_crl_create(f.batch_iss, 2, T0, T0 + DAY, &r, 1, &b), TC_ERR_ARG);
    tc_buf_free(&b);
out:
    tc_buf_free(&dev);
    tc_buf_free(&crl);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static void test_revoked_batch(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf(), crl = new_buf();
    struct tc_pki_revoked r = {.revoked_at = PROD, .reason = 2 /* cACompromise */};
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_OK(issue(&f, f.batch_iss, &d, EID_OK, &dev, NULL));
    const uint8_t *p = f.batch.data;
    X509 *b = d2i_X509(NULL, &p, (long)f.batch.len);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(b);
    r.serial_len = (size_t)ASN1_STRING_length(sn);
    memcpy(r.serial, ASN1_STRING_get0_data(sn), r.serial_len);
    X509_free(b);
    tc_buf_free(&crl);
    if (!crl_make(f.root_iss, &r, 1, &crl))
        goto out;
    EXPECT_ERR(verify(&f, &dev, &f.batch, &crl, &f.batch_crl, why, sizeof why), TC_ERR_VERIFY);
    EXPECT_STR(why, "batch CA certificate: certificate revoked");
    EXPECT_ERR(verify(&f, NULL, &f.batch, &crl, NULL, why, sizeof why), TC_ERR_VERIFY);
    EXPECT_STR(why, "batch CA certificate: certificate revoked");
    /* The other batch is untouched by this revocation. */
    struct dev d2;
    struct tc_buf dev2 = new_buf(), crl2 = new_buf();
    char eid2[33];
    EXPECT_OK(tc_pki_eid_complete("89049032990000000000000000000000", eid2));
    if (dev_new(&d2, eid2)) {
        tc_buf_free(&dev2);
        EXPECT_OK(issue(&f, f.batch2_iss, &d2, eid2, &dev2, NULL));
        tc_buf_free(&crl2);
        EXPECT(crl_make(f.batch2_iss, NULL, 0, &crl2));
        EXPECT_OK(verify(&f, &dev2, &f.batch2, &crl, &crl2, why, sizeof why));
    }
    tc_buf_free(&dev2);
    tc_buf_free(&crl2);
    tc_signer_soft_free(&d2.key);
    EXPECT(write_pem(f.dir, "dev.pem", "CERTIFICATE", dev.data, dev.len));
    EXPECT(write_pem(f.dir, "rootrev.crl", "X509 CRL", crl.data, crl.len));
    EXPECT(ossl_verify(&f, "dev.pem", "batch.pem", "rootrev.crl", "batch.crl") == 2);
    EXPECT(ossl_verify(&f, "batch.pem", NULL, "rootrev.crl", NULL) == 2);
    EXPECT(bundle(&f, "leaf2.pem", "dev.pem", "batch.pem", NULL));
    EXPECT(bundle(&f, "crls.pem", "rootrev.crl", "batch.crl", NULL));
    EXPECT(gnutls_crl(&f, "leaf2.pem", "crls.pem") != 0);
out:
    tc_buf_free(&dev);
    tc_buf_free(&crl);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

/* A leaf outside its batch's name constraints: the issuer refuses to make
 * one, so build it with the internal builder (wrong OU). */
static void test_outside_name_constraints(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    struct tc_pki_device_fields fl = {.eid = EID_OK,
                                      .ou = "B-2026-11-B",
                                      .o = MFR,
                                      .batch_id = "B-2026-11-B",
                                      .station_id = "station-07",
                                      .production_time = PROD};
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: permitted subtree violation");
    EXPECT(write_pem(f.dir, "dev.pem", "CERTIFICATE", dev.data, dev.len));
    EXPECT(ossl_verify(&f, "dev.pem", "batch.pem", "root.crl", "batch.crl") == 2);
    /* Another manufacturer in O: same. */
    tc_buf_free(&dev);
    dev = new_buf();
    fl.ou = BATCH;
    fl.batch_id = BATCH;
    fl.o = "Other Corp";
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: permitted subtree violation");
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

/* The EID prefix fence X.509 cannot express: openssl accepts such a leaf,
 * our issuer refuses to make it and our verifier rejects it. */
static void test_eid_outside_prefix(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    const char *eid = "89086030202200000022000023022943";
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, eid))
        goto out;
    tc_buf_free(&dev);
    EXPECT_ERR(issue(&f, f.batch_iss, &d, eid, &dev, NULL), TC_ERR_VERIFY);
    EXPECT(dev.len == 0);
    struct tc_pki_device_fields fl = {.eid = eid,
                                      .ou = BATCH,
                                      .o = MFR,
                                      .batch_id = BATCH,
                                      .station_id = "station-07",
                                      .production_time = PROD};
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: EID 89086030202200000022000023022943 is outside batch "
                    "B-2026-11-A (EID prefix 890490321234)");
    EXPECT(write_pem(f.dir, "dev.pem", "CERTIFICATE", dev.data, dev.len));
    EXPECT(ossl_verify(&f, "dev.pem", "batch.pem", "root.crl", "batch.crl") == 0);
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static uint8_t *find(uint8_t *p, size_t n, const char *s)
{
    size_t sl = strlen(s);
    for (size_t i = 0; i + sl <= n; i++) {
        if (memcmp(p + i, s, sl) == 0)
            return p + i;
    }
    return NULL;
}

static void test_tampered_signature(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_OK(issue(&f, f.batch_iss, &d, EID_OK, &dev, NULL));
    /* The last byte is inside the ECDSA s value. */
    dev.data[dev.len - 1] ^= 0x01;
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: certificate signature failure");
    EXPECT(write_pem(f.dir, "dev.pem", "CERTIFICATE", dev.data, dev.len));
    EXPECT(ossl_verify(&f, "dev.pem", "batch.pem", "root.crl", "batch.crl") == 2);
    EXPECT(bundle(&f, "chain.pem", "dev.pem", "batch.pem", "root.pem"));
    EXPECT(gnutls_chain(&f, "chain.pem") != 0);
    /* A tampered TBS (one byte of the subject) fails the same way. */
    dev.data[dev.len - 1] ^= 0x01;
    uint8_t *hit = find(dev.data, dev.len, "station-07");
    EXPECT(hit != NULL);
    if (hit != NULL) {
        hit[0] = 'S';
        EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why),
                   TC_ERR_VERIFY);
        EXPECT_STR(why, "device certificate: certificate signature failure");
    }
    /* A CRL with a broken signature is refused. */
    struct tc_buf crl = new_buf();
    tc_buf_put(&crl, f.batch_crl.data, f.batch_crl.len);
    crl.data[crl.len - 1] ^= 0x01;
    if (hit != NULL)
        hit[0] = 's';
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &crl, why, sizeof why), TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: CRL signature failure");
    tc_buf_free(&crl);
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static void test_bad_eid_check_digit(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    const char *bad = "89049032123451234512345678901234";
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_ERR(issue(&f, f.batch_iss, &d, bad, &dev, NULL), TC_ERR_VERIFY);
    EXPECT(dev.len == 0);
    struct tc_pki_device_fields fl = {.eid = bad,
                                      .ou = BATCH,
                                      .o = MFR,
                                      .batch_id = BATCH,
                                      .station_id = "station-07",
                                      .production_time = PROD};
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: device subject serialNumber: EID "
                    "89049032123451234512345678901234 has bad check digits");
    EXPECT_ERR(tc_pki_check_device(dev.data, dev.len, NULL), TC_ERR_VERIFY);
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static void test_bad_pop(void)
{
    struct fx f;
    struct dev d, other;
    struct tc_buf dev = new_buf();
    if (!fx_setup(&f) || !dev_new(&d, EID_OK) || !dev_new(&other, EID_OK))
        goto out;
    tc_buf_free(&dev);
    /* The PoP of another key. */
    uint8_t save[TC_SIG_MAX];
    size_t save_len = d.pop_len;
    memcpy(save, d.pop, d.pop_len);
    memcpy(d.pop, other.pop, other.pop_len);
    d.pop_len = other.pop_len;
    EXPECT_ERR(issue(&f, f.batch_iss, &d, EID_OK, &dev, NULL), TC_ERR_VERIFY);
    EXPECT(dev.len == 0);
    memcpy(d.pop, save, save_len);
    d.pop_len = save_len;
    /* A replayed PoP under a fresh nonce. */
    d.nonce[3] ^= 0x55;
    EXPECT_ERR(issue(&f, f.batch_iss, &d, EID_OK, &dev, NULL), TC_ERR_VERIFY);
    d.nonce[3] ^= 0x55;
    /* No PoP at all, an empty one. */
    struct tc_pki_device_req r = {.eid = EID_OK,
                                  .spki = d.spki,
                                  .spki_len = d.spki_len,
                                  .nonce = d.nonce,
                                  .pop = NULL,
                                  .station_id = "s",
                                  .production_time = PROD};
    EXPECT_ERR(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL), TC_ERR_ARG);
    r.pop = d.pop;
    r.pop_len = 0;
    EXPECT_ERR(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL), TC_ERR_VERIFY);
    /* A P-384 device key is not in the profile. */
    struct tc_signer k384;
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ECDSA_P384_SHA384, &k384));
    EXPECT_OK(k384.public_key(k384.ctx, spki, sizeof spki, &sl));
    r.spki = spki;
    r.spki_len = sl;
    r.pop_len = d.pop_len;
    EXPECT_ERR(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL), TC_ERR_FORMAT);
    tc_signer_soft_free(&k384);
    /* Station ID, production time outside the batch CA, root as device issuer. */
    r.spki = d.spki;
    r.spki_len = d.spki_len;
    r.station_id = "";
    EXPECT_ERR(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL), TC_ERR_ARG);
    r.station_id = "s";
    r.production_time = T0 - DAY;
    EXPECT_ERR(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL), TC_ERR_RANGE);
    r.production_time = T0 - 1;
    EXPECT_ERR(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL), TC_ERR_RANGE);
    r.production_time = T0 + 3650 * DAY + 1;
    EXPECT_ERR(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL), TC_ERR_RANGE);
    /* The batch CA's notBefore and notAfter themselves are inside. */
    r.production_time = T0;
    tc_buf_reset(&dev);
    EXPECT_OK(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL));
    r.production_time = T0 + 3650 * DAY;
    tc_buf_reset(&dev);
    EXPECT_OK(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL));
    tc_buf_reset(&dev);
    r.production_time = PROD;
    EXPECT_ERR(tc_pki_device_issue(f.root_iss, &r, &dev, NULL), TC_ERR_ARG);
    EXPECT_OK(tc_pki_device_issue(f.batch_iss, &r, &dev, NULL));
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    tc_signer_soft_free(&other.key);
    fx_free(&f);
}

static void test_issuer_rules(void)
{
    struct fx f;
    struct tc_pki_issuer *iss = NULL;
    struct tc_buf b = new_buf();
    if (!fx_setup(&f))
        goto out;
    /* The signer must hold the CA certificate's key. */
    EXPECT_ERR(tc_pki_issuer_new(&f.batch_key, f.root.data, f.root.len, &iss), TC_ERR_ARG);
    EXPECT(iss == NULL);
    /* A batch CA does not issue batch CAs; trailing bytes are refused. */
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    EXPECT_OK(f.batch_key.public_key(f.batch_key.ctx, spki, sizeof spki, &sl));
    struct tc_pki_batch_params bp = {.batch_id = "X",
                                     .eid_prefix = "89",
                                     .manufacturer = MFR,
                                     .not_before = T0,
                                     .not_after = T0 + DAY};
    EXPECT_ERR(tc_pki_batch_ca_create(f.batch_iss, spki, sl, &bp, &b), TC_ERR_ARG);
    bp.eid_prefix = "8x";
    EXPECT_ERR(tc_pki_batch_ca_create(f.root_iss, spki, sl, &bp, &b), TC_ERR_FORMAT);
    bp.eid_prefix = "89";
    bp.batch_id = "";
    EXPECT_ERR(tc_pki_batch_ca_create(f.root_iss, spki, sl, &bp, &b), TC_ERR_ARG);
    bp.batch_id = "X";
    bp.not_after = T0;
    EXPECT_ERR(tc_pki_batch_ca_create(f.root_iss, spki, sl, &bp, &b), TC_ERR_ARG);
    struct tc_buf big = new_buf();
    tc_buf_put(&big, f.root.data, f.root.len);
    tc_buf_put_u8(&big, 0);
    EXPECT_ERR(tc_pki_issuer_new(&f.root_key, big.data, big.len, &iss), TC_ERR_FORMAT);
    tc_buf_free(&big);
    /* Ed25519 is not a root key algorithm here. */
    struct tc_signer ed;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &ed));
    struct tc_pki_root_params rp = {
        .common_name = "R", .organization = "O", .not_before = T0, .not_after = T0 + DAY};
    EXPECT_ERR(tc_pki_root_create(&ed, &rp, &b), TC_ERR_UNSUPPORTED);
    tc_signer_soft_free(&ed);
    rp.country = "DEU";
    EXPECT_ERR(tc_pki_root_create(&f.root_key, &rp, &b), TC_ERR_ARG);
    /* A P-256 root works as well and passes both external verifiers. */
    struct tc_signer k256;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &k256));
    rp.country = NULL;
    rp.not_after = T0 + 3650 * DAY;
    EXPECT_OK(tc_pki_root_create(&k256, &rp, &b));
    EXPECT_OK(tc_pki_check_root(b.data, b.len));
    EXPECT(write_pem(f.dir, "r256.pem", "CERTIFICATE", b.data, b.len));
    EXPECT(run("openssl verify -x509_strict -policy_check -attime %lld -CAfile '%s/r256.pem' "
               "'%s/r256.pem'",
               (long long)(T0 + 1), f.dir, f.dir) == 0);
    EXPECT(run("certtool --verify-chain --infile '%s/r256.pem'", f.dir) == 0);
    tc_signer_soft_free(&k256);
out:
    tc_buf_free(&b);
    fx_free(&f);
}

/* Profile rules on certificates the issuer would not make. */
static void test_profile_rejects(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    struct tc_pki_device_fields fl = {.eid = EID_OK,
                                      .ou = BATCH,
                                      .o = MFR,
                                      .batch_id = "B-OTHER",
                                      .station_id = "station-07",
                                      .production_time = PROD};
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT_ERR(tc_pki_check_device(dev.data, dev.len, NULL), TC_ERR_VERIFY);
    EXPECT(strstr(tc_error_last()->msg, "batch ID B-OTHER differs") != NULL);
    /* Not DER, truncated, trailing garbage. */
    tc_buf_free(&dev);
    dev = new_buf();
    fl.batch_id = BATCH;
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT_OK(tc_pki_check_device(dev.data, dev.len, NULL));
    EXPECT_ERR(tc_pki_check_device(dev.data, dev.len - 1, NULL), TC_ERR_FORMAT);
    tc_buf_put_u8(&dev, 0);
    EXPECT_ERR(tc_pki_check_device(dev.data, dev.len, NULL), TC_ERR_FORMAT);
    /* An extra extension OpenSSL adds to a copy: not in the profile. */
    const uint8_t *p = dev.data;
    X509 *x = d2i_X509(NULL, &p, (long)dev.len - 1);
    EXPECT(x != NULL);
    if (x != NULL) {
        static const uint8_t eku[] = {0x30, 0x0A, 0x06, 0x08, 0x2B, 0x06,
                                      0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
        struct tc_buf m = new_buf();
        EXPECT_OK(tc_pki_x509_add_ext(x, NID_ext_key_usage, NULL, false, eku, sizeof eku));
        EXPECT_OK(tc_pki_sign_cert(&x, &f.batch_key, &m));
        EXPECT_ERR(tc_pki_check_device(m.data, m.len, NULL), TC_ERR_VERIFY);
        EXPECT_STR(tc_error_last()->msg,
                   "extension extendedKeyUsage is not allowed in this profile");
        tc_buf_free(&m);
        X509_free(x);
    }
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

/* Certificates and CRLs signed properly by the batch key but breaking one
 * profile rule each: OpenSSL's own signing path (X509_sign) with the key. */
enum mut {
    M_EMPTY_SKI,
    M_KU_NONCRIT,
    M_UTC_NOTAFTER,
    M_NO_SAN,
    M_OTHER_POLICY,
    M_CA_TRUE,
    M_ZERO_SERIAL,
    M_SAN_OTHER_EID,
    M_COUNT
};

static const char *const mut_reason[M_COUNT] = {
    "subjectKeyIdentifier is empty",
    "extension keyUsage must be critical",
    "device notAfter must be GeneralizedTime 99991231235959Z",
    "extension subjectAltName is missing",
    "extension certificatePolicies must be exactly the one trustchain device identity policy",
    "device: must not be a CA",
    "serial number must be positive",
    "HardwareModuleName hwSerialNum differs from the subject EID",
};

static void replace_ext(X509 *x, int nid, bool crit, const uint8_t *v, size_t n)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    if (i >= 0)
        X509_EXTENSION_free(X509_delete_ext(x, i));
    if (v != NULL)
        EXPECT_OK(tc_pki_x509_add_ext(x, nid, NULL, crit, v, n));
}

static bool mutate(struct fx *f, const struct tc_buf *good, enum mut m, struct tc_buf *out)
{
    const uint8_t *p = good->data;
    X509 *x = d2i_X509(NULL, &p, (long)good->len);
    if (x == NULL)
        return false;
    static const uint8_t empty_ski[] = {0x04, 0x00};
    static const uint8_t ku[] = {0x03, 0x02, 0x07, 0x80};
    static const uint8_t ca[] = {0x30, 0x03, 0x01, 0x01, 0xFF};
    static const uint8_t pol[] = {0x30, 0x0D, 0x30, 0x0B, 0x06, 0x09, 0x2B, 0x06,
                                  0x01, 0x04, 0x01, 0x81, 0xFD, 0x59, 0x09};
    uint8_t m2[128], bcd[16];
    struct tc_buf b;
    switch (m) {
    case M_EMPTY_SKI:
        replace_ext(x, NID_subject_key_identifier, false, empty_ski, sizeof empty_ski);
        break;
    case M_KU_NONCRIT:
        replace_ext(x, NID_key_usage, false, ku, sizeof ku);
        break;
    case M_UTC_NOTAFTER: {
        ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)(T0 + 3000 * DAY));
        EXPECT(t != NULL && X509_set1_notAfter(x, t) == 1);
        ASN1_TIME_free(t);
        break;
    }
    case M_NO_SAN:
        replace_ext(x, NID_subject_alt_name, false, NULL, 0);
        break;
    case M_OTHER_POLICY:
        replace_ext(x, NID_certificate_policies, false, pol, sizeof pol);
        break;
    case M_CA_TRUE:
        replace_ext(x, NID_basic_constraints, true, ca, sizeof ca);
        break;
    case M_ZERO_SERIAL:
        EXPECT(ASN1_INTEGER_set(X509_get_serialNumber(x), 0) == 1);
        break;
    case M_SAN_OTHER_EID:
        tc_buf_init_fixed(&b, m2, sizeof m2);
        EXPECT_OK(tc_pki_eid_to_bcd("89086030202200000022000023022943", bcd));
        EXPECT_OK(tc_pki_ext_hmn(bcd, &b));
        replace_ext(x, NID_subject_alt_name, false, b.data, b.len);
        break;
    case M_COUNT:
    default:
        break;
    }
    bool ok = X509_sign(x, f->batch_pkey, EVP_sha256()) > 0;
    uint8_t *der = NULL;
    int n = ok ? i2d_X509(x, &der) : -1;
    *out = new_buf();
    if (n > 0)
        tc_buf_put(out, der, (size_t)n);
    OPENSSL_free(der);
    X509_free(x);
    return n > 0;
}

static void test_profile_rules_forged(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_OK(issue(&f, f.batch_iss, &d, EID_OK, &dev, NULL));
    for (int m = 0; m < M_COUNT; m++) {
        struct tc_buf bad;
        if (!mutate(&f, &dev, (enum mut)m, &bad)) {
            EXPECT(false);
            continue;
        }
        tc_err rc = tc_pki_check_device(bad.data, bad.len, NULL);
        if (rc != TC_ERR_VERIFY || strstr(tc_error_last()->msg, mut_reason[m]) == NULL)
            tc_test_fail_at(__FILE__, __LINE__, "mutation %d: %s: '%s', expected '%s'", m,
                            tc_err_name(rc), tc_error_last()->msg, mut_reason[m]);
        /* The whole verifier gives the same reason, after OpenSSL passed
         * the path (or OpenSSL's own reason where it objects first). */
        EXPECT_ERR(verify(&f, &bad, &f.batch, &f.root_crl, &f.batch_crl, why, sizeof why),
                   TC_ERR_VERIFY);
        EXPECT(strncmp(why, "device certificate: ", 20) == 0);
        tc_buf_free(&bad);
    }
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static bool forge_crl(struct fx *f, bool number, bool next, bool aki, struct tc_buf *out)
{
    X509_CRL *c = X509_CRL_new();
    const uint8_t *p = f->batch.data;
    X509 *b = d2i_X509(NULL, &p, (long)f->batch.len);
    ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)(T0 + DAY));
    bool ok = c && b && t && X509_CRL_set_version(c, X509_CRL_VERSION_2) == 1 &&
              X509_CRL_set_issuer_name(c, X509_get_subject_name(b)) == 1 &&
              X509_CRL_set1_lastUpdate(c, t) == 1;
    if (ok && next) {
        ASN1_TIME_free(t);
        t = ASN1_TIME_set(NULL, (time_t)(T0 + 400 * DAY));
        ok = X509_CRL_set1_nextUpdate(c, t) == 1;
    }
    if (ok && number) {
        ASN1_INTEGER *n = ASN1_INTEGER_new();
        ok = n && ASN1_INTEGER_set(n, 5) == 1 && X509_CRL_add1_ext_i2d(c, NID_crl_number, n, 0, 0);
        ASN1_INTEGER_free(n);
    }
    if (ok && aki) {
        AUTHORITY_KEYID *k = X509_get_ext_d2i(b, NID_authority_key_identifier, NULL, NULL);
        ASN1_OCTET_STRING *ski = X509_get_ext_d2i(b, NID_subject_key_identifier, NULL, NULL);
        if (k != NULL && ski != NULL) {
            ASN1_OCTET_STRING_free(k->keyid);
            k->keyid = ski;
            ski = NULL;
            ok = X509_CRL_add1_ext_i2d(c, NID_authority_key_identifier, k, 0, 0) == 1;
        } else {
            ok = false;
        }
        AUTHORITY_KEYID_free(k);
        ASN1_OCTET_STRING_free(ski);
    }
    ok = ok && X509_CRL_sign(c, f->batch_pkey, EVP_sha256()) > 0;
    uint8_t *der = NULL;
    int n = ok ? i2d_X509_CRL(c, &der) : -1;
    *out = new_buf();
    if (n > 0)
        tc_buf_put(out, der, (size_t)n);
    OPENSSL_free(der);
    ASN1_TIME_free(t);
    X509_free(b);
    X509_CRL_free(c);
    return n > 0;
}

static void test_crl_profile(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf(), crl;
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_OK(issue(&f, f.batch_iss, &d, EID_OK, &dev, NULL));
    /* A complete CRL made by OpenSSL passes: the check is not ours only. */
    if (forge_crl(&f, true, true, true, &crl)) {
        EXPECT_OK(verify(&f, &dev, &f.batch, &f.root_crl, &crl, why, sizeof why));
        tc_buf_free(&crl);
    }
    if (forge_crl(&f, false, true, true, &crl)) {
        EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &crl, why, sizeof why), TC_ERR_VERIFY);
        EXPECT_STR(why, "batch CRL has no CRL number");
        tc_buf_free(&crl);
    }
    if (forge_crl(&f, true, true, false, &crl)) {
        EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &crl, why, sizeof why), TC_ERR_VERIFY);
        EXPECT_STR(why, "batch CRL has no authorityKeyIdentifier");
        tc_buf_free(&crl);
    }
    if (forge_crl(&f, true, false, true, &crl)) {
        EXPECT_ERR(verify(&f, &dev, &f.batch, &f.root_crl, &crl, why, sizeof why), TC_ERR_VERIFY);
        EXPECT_STR(why, "batch CRL has no nextUpdate");
        tc_buf_free(&crl);
    }
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static void test_crl_expired_and_time(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    char why[256];
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    tc_buf_free(&dev);
    EXPECT_OK(issue(&f, f.batch_iss, &d, EID_OK, &dev, NULL));
    struct tc_pki_chain c = {.root = f.root.data,
                             .root_len = f.root.len,
                             .batch = f.batch.data,
                             .batch_len = f.batch.len,
                             .device = dev.data,
                             .device_len = dev.len,
                             .root_crl = f.root_crl.data,
                             .root_crl_len = f.root_crl.len,
                             .batch_crl = f.batch_crl.data,
                             .batch_crl_len = f.batch_crl.len,
                             .at = T0 + 500 * DAY};
    EXPECT_ERR(tc_pki_verify(&c, why, sizeof why), TC_ERR_VERIFY);
    EXPECT(strstr(why, "CRL has expired") != NULL);
    c.at = T0 - DAY;
    EXPECT_ERR(tc_pki_verify(&c, why, sizeof why), TC_ERR_VERIFY);
    EXPECT(strstr(why, "not yet valid") != NULL);
    /* A device used before its production time. */
    c.at = T0 + 2 * DAY;
    EXPECT_ERR(tc_pki_verify(&c, why, sizeof why), TC_ERR_VERIFY);
    EXPECT_STR(why, "device certificate: certificate is not yet valid");
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static void test_pem(void)
{
    static const uint8_t der[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    struct tc_buf pem = new_buf(), back = new_buf();
    EXPECT_OK(tc_pki_pem_encode("CERTIFICATE", der, sizeof der, &pem));
    EXPECT(pem.len > 50 && memcmp(pem.data, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    EXPECT_OK(tc_pki_der_from_pem(pem.data, pem.len, &back));
    EXPECT_MEM(back.data, back.len, der, sizeof der);
    tc_buf_reset(&back);
    EXPECT_ERR(tc_pki_der_from_pem((const uint8_t *)"hello", 5, &back), TC_ERR_FORMAT);
    tc_buf_free(&pem);
    pem = new_buf();
    EXPECT_OK(tc_pki_pem_encode("PRIVATE KEY", der, sizeof der, &pem));
    EXPECT_ERR(tc_pki_der_from_pem(pem.data, pem.len, &back), TC_ERR_FORMAT);
    tc_buf_free(&pem);
    tc_buf_free(&back);
}

/* The inversion the verifier uses against OpenSSL's BN_mod_inverse, modulo
 * the P-256 order n and prime p, on random and edge values. */
static void test_inv_mod(void)
{
    static const char *const mods[] = {
        "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551",
        "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF"};
    BN_CTX *bn = BN_CTX_new();
    BIGNUM *m = NULL, *a = BN_new(), *w = BN_new();
    EXPECT(bn != NULL && a != NULL && w != NULL);
    for (size_t k = 0; k < 2 && bn != NULL; k++) {
        uint8_t mb[32], ab[32], got[32], want[32];
        EXPECT(BN_hex2bn(&m, mods[k]) == 64 && BN_bn2binpad(m, mb, 32) == 32);
        for (unsigned i = 0; i < 300; i++) {
            if (i == 0)
                EXPECT(BN_one(a));
            else if (i == 1)
                EXPECT(BN_sub(a, m, BN_value_one()));
            else if (i == 2)
                EXPECT(BN_set_word(a, 2));
            else
                do {
                    EXPECT(BN_rand_range(a, m));
                } while (BN_is_zero(a));
            EXPECT(BN_bn2binpad(a, ab, 32) == 32);
            EXPECT(BN_mod_inverse(w, a, m, bn) != NULL && BN_bn2binpad(w, want, 32) == 32);
            EXPECT_OK(tc_pki_inv_mod(ab, mb, got));
            EXPECT_MEM(got, 32, want, 32);
        }
        /* 0 and m itself have no inverse; an even modulus is refused. */
        memset(ab, 0, sizeof ab);
        EXPECT_ERR(tc_pki_inv_mod(ab, mb, got), TC_ERR_ARG);
        EXPECT_ERR(tc_pki_inv_mod(mb, mb, got), TC_ERR_ARG);
        memcpy(ab, mb, 32);
        ab[31] ^= 1;
        EXPECT_ERR(tc_pki_inv_mod(mb, ab, got), TC_ERR_ARG);
    }
    /* gcd(6, 9) = 3: no inverse. */
    uint8_t six[32] = {0}, nine[32] = {0}, out[32];
    six[31] = 6;
    nine[31] = 9;
    EXPECT_ERR(tc_pki_inv_mod(six, nine, out), TC_ERR_ARG);
    BN_free(m);
    BN_free(a);
    BN_free(w);
    BN_CTX_free(bn);
}

/* ECDSA P-256 verification on Wycheproof vectors (strict DER). */
static void test_ecdsa_vectors(void)
{
    struct tc_vec v;
    unsigned n = 0, valid = 0;
    if (!tc_vec_open(&v, "pki/ecdsa_p256_wycheproof.txt"))
        return;
    while (tc_vec_next(&v)) {
        size_t pl = 0, ml = 0, sl = 0;
        uint8_t *pt = tc_vec_hex(&v, "POINT", &pl);
        uint8_t *msg = tc_vec_hex(&v, "MSG", &ml);
        uint8_t *sig = tc_vec_hex(&v, "SIG", &sl);
        const char *res = tc_vec_get(&v, "RESULT");
        EXPECT(pl == TC_PKI_P256_POINT && res != NULL);
        if (pt != NULL && msg != NULL && sig != NULL && res != NULL && pl == TC_PKI_P256_POINT) {
            bool want = strcmp(res, "valid") == 0;
            tc_err rc = tc_pki_p256_verify(pt, msg, ml, sig, sl);
            if (want) {
                EXPECT_OK(rc);
                valid++;
            } else {
                EXPECT_ERR(rc, TC_ERR_VERIFY);
            }
            n++;
        }
        free(pt);
        free(msg);
        free(sig);
    }
    tc_vec_close(&v);
    EXPECT(n == 29 && valid == 2);
}

/* The verifier agrees with OpenSSL's EVP_DigestVerify on fresh keys,
 * messages and signatures, valid and damaged. */
static void test_ecdsa_vs_openssl(void)
{
    for (unsigned i = 0; i < 64; i++) {
        struct tc_signer k;
        uint8_t spki[TC_SPKI_MAX], msg[97], sig[TC_SIG_MAX];
        size_t sl = 0, gl = 0;
        EXPECT_OK(tc_random(msg, sizeof msg));
        if (tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &k) != TC_OK) {
            EXPECT(false);
            return;
        }
        EXPECT_OK(k.public_key(k.ctx, spki, sizeof spki, &sl));
        EXPECT_OK(k.sign(k.ctx, msg, sizeof msg, sig, sizeof sig, &gl));
        EXPECT(sl == 91);
        const uint8_t *point = spki + 26;
        EXPECT_OK(tc_pki_p256_verify(point, msg, sizeof msg, sig, gl));
        /* One bit of the message, of r or of s flipped. */
        size_t bit = (size_t)i % (sizeof msg * 8);
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        EXPECT_ERR(tc_pki_p256_verify(point, msg, sizeof msg, sig, gl), TC_ERR_VERIFY);
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        size_t at = gl - 1 - (size_t)i % 8;
        sig[at] ^= 0x01;
        EXPECT_ERR(tc_pki_p256_verify(point, msg, sizeof msg, sig, gl), TC_ERR_VERIFY);
        const uint8_t *p = spki;
        EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)sl);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EXPECT(pk != NULL && md != NULL &&
               EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
               EVP_DigestVerify(md, sig, gl, msg, sizeof msg) != 1);
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pk);
        sig[at] ^= 0x01;
        /* A point off the curve is a key error, not a failed signature. */
        uint8_t bad[TC_PKI_P256_POINT];
        memcpy(bad, point, sizeof bad);
        bad[64] ^= 0x01;
        EXPECT_ERR(tc_pki_p256_verify(bad, msg, sizeof msg, sig, gl), TC_ERR_CRYPTO);
        tc_signer_soft_free(&k);
    }
}

static bool contains(const uint8_t *h, size_t hl, const uint8_t *n, size_t nl)
{
    for (size_t i = 0; i + nl <= hl; i++)
        if (memcmp(h + i, n, nl) == 0)
            return true;
    return false;
}

/* Encodings the device builder must get right beyond the common case:
 * a UTF-8 organization, notBefore from 2050 on as GeneralizedTime, and
 * names it must refuse. */
static void test_device_encoding(void)
{
    struct fx f;
    struct dev d;
    struct tc_buf dev = new_buf();
    if (!fx_setup(&f) || !dev_new(&d, EID_OK))
        goto out;
    struct tc_pki_device_fields fl = {.eid = EID_OK,
                                      .ou = BATCH,
                                      .o = "M\xC3\xBCller Ger\xC3\xA4te \xE2\x82\xAC GmbH",
                                      .batch_id = BATCH,
                                      .station_id = "station-07",
                                      .production_time = 2524608010}; /* 2050-01-01T00:00:10Z */
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT(tbs_reencodes(dev.data, dev.len));
    static const uint8_t gt[] = "\x18\x0F"
                                "20500101000010Z";
    EXPECT(contains(dev.data, dev.len, gt, sizeof gt - 1));
    fl.production_time = 2524607999; /* 2049-12-31T23:59:59Z: still UTCTime */
    tc_buf_reset(&dev);
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL));
    EXPECT(tbs_reencodes(dev.data, dev.len));
    static const uint8_t ut[] = "\x17\x0D"
                                "491231235959Z";
    EXPECT(contains(dev.data, dev.len, ut, sizeof ut - 1));
    /* Ill-formed UTF-8 (a lone continuation, an overlong '/', a surrogate,
     * a truncated sequence), an empty and a 65-octet name. */
    static const char *const bad[] = {
        "Acme \x80",
        "Acme \xC0\xAF",
        "Acme \xED\xA0\x80",
        "Acme \xE2\x82",
        "",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fl.o = bad[i];
        tc_buf_reset(&dev);
        EXPECT_ERR(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL),
                   TC_ERR_ARG);
    }
    fl.o = MFR;
    fl.ou = bad[0];
    EXPECT_ERR(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, NULL), TC_ERR_ARG);
    /* Serials across several refills of the issuer's random pool: all
     * distinct, 16 octets, positive with the second bit set. */
    fl.ou = BATCH;
    static uint8_t sn[80][TC_PKI_SERIAL_LEN];
    for (size_t i = 0; i < 80; i++) {
        tc_buf_reset(&dev);
        EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, sn[i]));
        EXPECT((sn[i][0] & 0xC0u) == 0x40u);
        for (size_t j = 0; j < i; j++)
            EXPECT(memcmp(sn[i], sn[j], TC_PKI_SERIAL_LEN) != 0);
    }
    /* After a fork the child draws fresh random octets: its next serial
     * is not the parent's next one. */
    int pfd[2];
    uint8_t child_sn[TC_PKI_SERIAL_LEN] = {0}, parent_sn[TC_PKI_SERIAL_LEN];
    EXPECT(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t c[TC_PKI_SERIAL_LEN] = {0};
        tc_buf_reset(&dev);
        if (tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, c) != TC_OK)
            _exit(1);
        _exit(write(pfd[1], c, sizeof c) == (ssize_t)sizeof c ? 0 : 1);
    }
    EXPECT(pid > 0);
    close(pfd[1]);
    tc_buf_reset(&dev);
    EXPECT_OK(tc_pki_device_build(f.batch_iss, &fl, d.spki, d.spki_len, &dev, parent_sn));
    EXPECT(read(pfd[0], child_sn, sizeof child_sn) == (ssize_t)sizeof child_sn);
    close(pfd[0]);
    int st = 0;
    EXPECT(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT((child_sn[0] & 0xC0u) == 0x40u);
    EXPECT(memcmp(child_sn, parent_sn, sizeof child_sn) != 0);
out:
    tc_buf_free(&dev);
    tc_signer_soft_free(&d.key);
    fx_free(&f);
}

static const struct tc_test_case cases[] = {
    {"eid vectors (SGP.29)", test_eid_vectors},
    {"eid check digit computation", test_eid_complete},
    {"eid bcd and prefix", test_eid_bcd_and_prefix},
    {"extension encodings byte-exact", test_ext_vectors},
    {"DER parsers reject malformed input", test_der_parsers_reject},
    {"proof of possession vector", test_pop_vector},
    {"inversion modulo n and p agrees with OpenSSL", test_inv_mod},
    {"ECDSA P-256 verification (Wycheproof)", test_ecdsa_vectors},
    {"ECDSA P-256 verification agrees with OpenSSL", test_ecdsa_vs_openssl},
    {"device certificate encodings", test_device_encoding},
    {"chain verifies (ours, openssl, certtool)", test_chain_ok},
    {"revoked device fails", test_revoked_device},
    {"revoked batch fails", test_revoked_batch},
    {"leaf outside name constraints fails", test_outside_name_constraints},
    {"EID outside batch prefix fails", test_eid_outside_prefix},
    {"tampered signature fails", test_tampered_signature},
    {"bad EID check digit fails", test_bad_eid_check_digit},
    {"bad proof of possession refused", test_bad_pop},
    {"issuer rules", test_issuer_rules},
    {"profile rejects", test_profile_rejects},
    {"profile rules on forged certificates", test_profile_rules_forged},
    {"CRL profile", test_crl_profile},
    {"CRL expiry and validity times", test_crl_expired_and_time},
    {"PEM helpers", test_pem},
};

TC_TEST_MAIN("pki", cases)
