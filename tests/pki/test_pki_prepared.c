/*
 * The prepared verifier (tc_pki_verifier) against tc_pki_verify: on every
 * chain below both give the same verdict and the same reason, and the
 * reason is the one RFC 5280 path validation (OpenSSL's text) or the
 * profile gives. Also what the verifier refuses when it is built (a batch
 * CA of another root, a CRL its CA did not sign, a duplicate batch) and
 * concurrent verifications on one verifier.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <trustchain/pki.h>

#include "harness.h"
#include "pki/pki_int.h"

#define DAY    INT64_C(86400)
#define MFR    "Acme Devices"
#define BATCH  "B-2026-11-A"
#define BATCH2 "B-2026-11-B"
#define PREFIX "890490321234"

struct ca {
    struct tc_signer key;
    EVP_PKEY *pkey; /* batch CAs only */
    struct tc_buf cert;
    struct tc_pki_issuer *iss;
};

/* Built once for all cases. */
static struct {
    bool ok;
    int64_t t0, prod;
    struct ca root, a, b, old, froot, fa;
    struct tc_buf root_crl, root_crl_rev_a, a_crl, a_crl_rev, b_crl, old_crl, fa_crl;
    struct tc_buf good, revoked, in_old, foreign, outside_nc, outside_o, bad_eid, outside_prefix,
        tampered, good_b;
} F;

static struct tc_buf new_buf(void)
{
    struct tc_buf b;
    tc_buf_init_heap(&b, 1u << 16);
    return b;
}

static bool root_new(struct ca *r, const char *cn)
{
    struct tc_pki_root_params rp = {
        .common_name = cn, .organization = MFR, .not_before = F.t0, .not_after = F.t0 + 7300 * DAY};
    r->cert = new_buf();
    return tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &r->key) == TC_OK &&
           tc_pki_root_create(&r->key, &rp, &r->cert) == TC_OK &&
           tc_pki_issuer_new(&r->key, r->cert.data, r->cert.len, &r->iss) == TC_OK;
}

static bool batch_new(struct ca *b, struct ca *root, const char *id, const char *prefix,
                      int64_t not_after)
{
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    struct tc_pki_batch_params bp = {.batch_id = id,
                                     .eid_prefix = prefix,
                                     .manufacturer = MFR,
                                     .not_before = F.t0,
                                     .not_after = not_after};
    b->cert = new_buf();
    b->pkey = EVP_EC_gen("P-256"); /* kept to forge CRLs */
    return b->pkey != NULL && tc_signer_soft_new(b->pkey, &b->key) == TC_OK &&
           b->key.public_key(b->key.ctx, spki, sizeof spki, &sl) == TC_OK &&
           tc_pki_batch_ca_create(root->iss, spki, sl, &bp, &b->cert) == TC_OK &&
           tc_pki_issuer_new(&b->key, b->cert.data, b->cert.len, &b->iss) == TC_OK;
}

static void ca_free(struct ca *c)
{
    tc_pki_issuer_free(c->iss);
    tc_signer_soft_free(&c->key);
    EVP_PKEY_free(c->pkey);
    tc_buf_free(&c->cert);
}

/* The serial of a certificate (DER) as a CRL entry. */
static bool entry_of(const struct tc_buf *cert, struct tc_pki_revoked *e)
{
    const uint8_t *p = cert->data;
    X509 *x = d2i_X509(NULL, &p, (long)cert->len);
    if (x == NULL)
        return false;
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    bool ok = ASN1_STRING_length(sn) > 0 && (size_t)ASN1_STRING_length(sn) <= sizeof e->serial;
    if (ok) {
        e->serial_len = (size_t)ASN1_STRING_length(sn);
        memcpy(e->serial, ASN1_STRING_get0_data(sn), e->serial_len);
        e->revoked_at = F.prod;
        e->reason = 1; /* keyCompromise */
    }
    X509_free(x);
    return ok;
}

static bool crl_new(struct ca *iss, const struct tc_buf *revoked, struct tc_buf *crl)
{
    struct tc_pki_revoked e;
    *crl = new_buf();
    if (revoked != NULL && !entry_of(revoked, &e))
        return false;
    /* nextUpdate 400 days after the fixture's start. */
    return tc_pki_crl_create(iss->iss, 1, F.t0 + DAY, F.t0 + 400 * DAY, revoked ? &e : NULL,
                             revoked ? 1 : 0, crl) == TC_OK;
}

/* A device certificate built with the given subject fields (the internal
 * builder: it makes certificates the issuer refuses to make). */
static bool dev_build(struct ca *b, const char *eid, const char *ou, const char *o,
                      struct tc_buf *der)
{
    struct tc_signer k;
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    struct tc_pki_device_fields fl = {.eid = eid,
                                      .ou = ou,
                                      .o = o,
                                      .batch_id = ou,
                                      .station_id = "station-07",
                                      .production_time = F.prod};
    *der = new_buf();
    if (tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &k) != TC_OK)
        return false;
    bool ok = k.public_key(k.ctx, spki, sizeof spki, &sl) == TC_OK &&
              tc_pki_device_build(b->iss, &fl, spki, sl, der, NULL) == TC_OK;
    tc_signer_soft_free(&k);
    return ok;
}

static bool eid(const char *first30, char out[33])
{
    return tc_pki_eid_complete(first30, out) == TC_OK;
}

static bool fixture(void)
{
    static bool tried;
    if (tried)
        return F.ok;
    tried = true;
    F.t0 = ((int64_t)time(NULL) / DAY - 30) * DAY;
    F.prod = F.t0 + 10 * DAY;
    char e1[33], e2[33], e3[33], e_bad[33], e_out[33], e_b[33];
    bool ok =
        root_new(&F.root, "Acme Device Root CA") &&
        batch_new(&F.a, &F.root, BATCH, PREFIX, F.t0 + 3650 * DAY) &&
        batch_new(&F.b, &F.root, BATCH2, "8904903299", F.t0 + 3650 * DAY) &&
        /* A batch CA that expires 100 days in. */
        batch_new(&F.old, &F.root, "B-2026-01-OLD", PREFIX, F.t0 + 100 * DAY) &&
        /* A foreign root with a batch of the same ID, prefix and name. */
        root_new(&F.froot, "Acme Device Root CA") &&
        batch_new(&F.fa, &F.froot, BATCH, PREFIX, F.t0 + 3650 * DAY) &&
        eid("890490321234000000000000000001", e1) && eid("890490321234000000000000000002", e2) &&
        eid("890490321234000000000000000003", e3) && eid("890860302022000000220000230229", e_out) &&
        eid("890490329900000000000000000001", e_b);
    if (ok) {
        memcpy(e_bad, e3, sizeof e_bad);
        e_bad[31] = e_bad[31] == '0' ? '1' : '0'; /* SGP.29 check digits broken */
    }
    ok = ok && dev_build(&F.a, e1, BATCH, MFR, &F.good) &&
         dev_build(&F.a, e2, BATCH, MFR, &F.revoked) &&
         dev_build(&F.old, e3, "B-2026-01-OLD", MFR, &F.in_old) &&
         dev_build(&F.fa, e1, BATCH, MFR, &F.foreign) &&
         dev_build(&F.a, e3, BATCH2, MFR, &F.outside_nc) &&
         dev_build(&F.a, e3, BATCH, "Other Corp", &F.outside_o) &&
         dev_build(&F.a, e_bad, BATCH, MFR, &F.bad_eid) &&
         dev_build(&F.a, e_out, BATCH, MFR, &F.outside_prefix) &&
         dev_build(&F.b, e_b, BATCH2, MFR, &F.good_b);
    ok = ok && crl_new(&F.root, NULL, &F.root_crl) &&
         crl_new(&F.root, &F.a.cert, &F.root_crl_rev_a) && crl_new(&F.a, NULL, &F.a_crl) &&
         crl_new(&F.a, &F.revoked, &F.a_crl_rev) && crl_new(&F.b, NULL, &F.b_crl) &&
         crl_new(&F.old, NULL, &F.old_crl) && crl_new(&F.fa, NULL, &F.fa_crl);
    if (ok) {
        F.tampered = new_buf();
        tc_buf_put(&F.tampered, F.good.data, F.good.len);
        F.tampered.data[F.tampered.len - 1] ^= 0x01; /* inside the ECDSA s value */
    }
    EXPECT(ok);
    F.ok = ok;
    return ok;
}

static struct tc_pki_verifier *verifier(const struct tc_buf *root_crl, const struct tc_buf *a_crl)
{
    struct tc_pki_verifier *v = NULL;
    EXPECT_OK(
        tc_pki_verifier_new(F.root.cert.data, F.root.cert.len, root_crl->data, root_crl->len, &v));
    if (v == NULL)
        return NULL;
    struct tc_pki_batch_info bi;
    EXPECT_OK(
        tc_pki_verifier_add_batch(v, F.a.cert.data, F.a.cert.len, a_crl->data, a_crl->len, &bi));
    EXPECT_STR(bi.batch_id, BATCH);
    EXPECT_OK(
        tc_pki_verifier_add_batch(v, F.b.cert.data, F.b.cert.len, F.b_crl.data, F.b_crl.len, NULL));
    EXPECT_OK(tc_pki_verifier_add_batch(v, F.old.cert.data, F.old.cert.len, F.old_crl.data,
                                        F.old_crl.len, NULL));
    EXPECT_EQ_U(tc_pki_verifier_batches(v), 3);
    return v;
}

/*
 * tc_pki_verify on (root, batch, dev, root_crl, batch_crl, at) and the
 * verifier on dev at `at`: both give `want`; on refusal both give
 * want_reason (NULL: the same text, starting "device certificate: ") and
 * the verifier names want_refusal.
 */
static void same_verdict(const struct tc_pki_verifier *v, const struct tc_buf *dev,
                         const struct tc_buf *batch, const struct tc_buf *root_crl,
                         const struct tc_buf *batch_crl, int64_t at, tc_err want,
                         const char *want_reason, enum tc_pki_refusal want_refusal)
{
    char ref[256], got[256];
    struct tc_pki_chain c = {.root = F.root.cert.data,
                             .root_len = F.root.cert.len,
                             .batch = batch->data,
                             .batch_len = batch->len,
                             .device = dev->data,
                             .device_len = dev->len,
                             .root_crl = root_crl->data,
                             .root_crl_len = root_crl->len,
                             .batch_crl = batch_crl->data,
                             .batch_crl_len = batch_crl->len,
                             .at = at};
    struct tc_pki_device_info di;
    enum tc_pki_refusal refusal = TC_PKI_REFUSED_CHAIN;
    memset(&di, 0, sizeof di);
    tc_err r1 = tc_pki_verify(&c, ref, sizeof ref);
    tc_err r2 = tc_pki_verifier_verify(v, dev->data, dev->len, at, &di, &refusal, got, sizeof got);
    EXPECT_EQ_U(r1, want);
    EXPECT_EQ_U(r2, want);
    EXPECT_STR(got, ref);
    EXPECT_EQ_U(refusal, want_refusal);
    if (want == TC_OK) {
        EXPECT_STR(got, "");
        EXPECT_EQ_U(strlen(di.eid), TC_PKI_EID_DIGITS);
        EXPECT(strncmp(di.eid, PREFIX, strlen(PREFIX)) == 0);
    } else if (want_reason != NULL) {
        EXPECT_STR(got, want_reason);
    } else {
        EXPECT(strncmp(got, "device certificate: ", 20) == 0 && strlen(got) > 20);
    }
}

static void test_good(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl);
    same_verdict(v, &F.good, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY, TC_OK, NULL,
                 TC_PKI_REFUSED_NONE);
    /* at = 0 is now (the fixture's CRLs are valid now). */
    same_verdict(v, &F.good, &F.a.cert, &F.root_crl, &F.a_crl, 0, TC_OK, NULL, TC_PKI_REFUSED_NONE);
    tc_pki_verifier_free(v);
}

static void test_revoked_device(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl_rev);
    same_verdict(v, &F.revoked, &F.a.cert, &F.root_crl, &F.a_crl_rev, F.prod + DAY, TC_ERR_VERIFY,
                 "device certificate: certificate revoked", TC_PKI_REFUSED_CHAIN);
    same_verdict(v, &F.good, &F.a.cert, &F.root_crl, &F.a_crl_rev, F.prod + DAY, TC_OK, NULL,
                 TC_PKI_REFUSED_NONE);
    tc_pki_verifier_free(v);
}

static void test_revoked_batch(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl_rev_a, &F.a_crl);
    same_verdict(v, &F.good, &F.a.cert, &F.root_crl_rev_a, &F.a_crl, F.prod + DAY, TC_ERR_VERIFY,
                 "batch CA certificate: certificate revoked", TC_PKI_REFUSED_CHAIN);
    tc_pki_verifier_free(v);
}

static void test_times(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl);
    /* The batch CA expired (notAfter t0 + 100 days), CRLs still current. */
    same_verdict(v, &F.in_old, &F.old.cert, &F.root_crl, &F.old_crl, F.t0 + 200 * DAY,
                 TC_ERR_VERIFY, "batch CA certificate: certificate has expired",
                 TC_PKI_REFUSED_CHAIN);
    /* The same device while its batch CA was valid. */
    same_verdict(v, &F.in_old, &F.old.cert, &F.root_crl, &F.old_crl, F.t0 + 50 * DAY, TC_OK, NULL,
                 TC_PKI_REFUSED_NONE);
    /* A device's notAfter is 99991231235959Z (the profile), so a device
     * never expires; before its notBefore (production) it is not valid. */
    same_verdict(v, &F.good, &F.a.cert, &F.root_crl, &F.a_crl, F.prod - DAY, TC_ERR_VERIFY,
                 "device certificate: certificate is not yet valid", TC_PKI_REFUSED_CHAIN);
    /* Past the CRLs' nextUpdate: the CRL went stale while the verifier
     * lived, so it is refused at verification time, not when built. */
    same_verdict(v, &F.good, &F.a.cert, &F.root_crl, &F.a_crl, F.t0 + 401 * DAY, TC_ERR_VERIFY,
                 "device certificate: CRL has expired", TC_PKI_REFUSED_CHAIN);
    /* Before the CRLs' thisUpdate (t0 + 1 day): OpenSSL checks revocation
     * before certificate times, so the CRL is named. */
    same_verdict(v, &F.good, &F.a.cert, &F.root_crl, &F.a_crl, F.t0 + DAY / 2, TC_ERR_VERIFY,
                 "device certificate: CRL is not yet valid", TC_PKI_REFUSED_CHAIN);
    tc_pki_verifier_free(v);
}

static void test_foreign_root(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl);
    /* Same batch ID, prefix and batch CA name, another key. */
    same_verdict(v, &F.foreign, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY, TC_ERR_VERIFY,
                 "device certificate: unable to get local issuer certificate",
                 TC_PKI_REFUSED_CHAIN);
    tc_pki_verifier_free(v);
    /* Its batch CA is refused when added to a verifier of our root. */
    v = NULL;
    EXPECT_OK(tc_pki_verifier_new(F.root.cert.data, F.root.cert.len, F.root_crl.data,
                                  F.root_crl.len, &v));
    EXPECT_ERR(tc_pki_verifier_add_batch(v, F.fa.cert.data, F.fa.cert.len, F.fa_crl.data,
                                         F.fa_crl.len, NULL),
               TC_ERR_VERIFY);
    EXPECT_STR(tc_error_last()->msg, "batch CA certificate " BATCH " is not issued by the root");
    EXPECT_EQ_U(tc_pki_verifier_batches(v), 0);
    tc_pki_verifier_free(v);
}

static void test_ca_as_device(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl);
    same_verdict(v, &F.a.cert, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY, TC_ERR_VERIFY, NULL,
                 TC_PKI_REFUSED_PROFILE);
    tc_pki_verifier_free(v);
}

static void test_name_constraints_and_fence(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl);
    /* Issued by batch A with batch B's OU: the verifier has batch B too and
     * must still judge it under its issuer, batch A. */
    same_verdict(v, &F.outside_nc, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY, TC_ERR_VERIFY,
                 "device certificate: permitted subtree violation", TC_PKI_REFUSED_CHAIN);
    same_verdict(v, &F.outside_o, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY, TC_ERR_VERIFY,
                 "device certificate: permitted subtree violation", TC_PKI_REFUSED_CHAIN);
    same_verdict(v, &F.outside_prefix, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY,
                 TC_ERR_VERIFY,
                 "device certificate: EID 89086030202200000022000023022943 is outside batch "
                 "B-2026-11-A (EID prefix 890490321234)",
                 TC_PKI_REFUSED_FENCE);
    tc_pki_verifier_free(v);
}

static void test_tampered_and_profile(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl);
    same_verdict(v, &F.tampered, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY, TC_ERR_VERIFY,
                 "device certificate: certificate signature failure", TC_PKI_REFUSED_CHAIN);
    /* Wrong profile: SGP.29 check digits broken in the subject EID. */
    same_verdict(v, &F.bad_eid, &F.a.cert, &F.root_crl, &F.a_crl, F.prod + DAY, TC_ERR_VERIFY, NULL,
                 TC_PKI_REFUSED_PROFILE);
    tc_pki_verifier_free(v);
}

static void test_unknown_batch(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = NULL;
    char why[256];
    enum tc_pki_refusal r = TC_PKI_REFUSED_NONE;
    EXPECT_OK(tc_pki_verifier_new(F.root.cert.data, F.root.cert.len, F.root_crl.data,
                                  F.root_crl.len, &v));
    EXPECT_ERR(
        tc_pki_verifier_verify(v, F.good.data, F.good.len, F.prod + DAY, NULL, &r, why, sizeof why),
        TC_ERR_VERIFY);
    EXPECT_EQ_U(r, TC_PKI_REFUSED_BATCH);
    EXPECT_STR(why, "unknown batch " BATCH ": no trusted batch CA issued the device certificate");
    tc_pki_verifier_free(v);
}

static void test_build_refusals(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = NULL;
    /* A batch CA is not a root. */
    EXPECT_ERR(
        tc_pki_verifier_new(F.a.cert.data, F.a.cert.len, F.root_crl.data, F.root_crl.len, &v),
        TC_ERR_VERIFY);
    EXPECT(v == NULL);
    /* A root CRL signed by someone else (batch A's CRL), or tampered. */
    EXPECT_ERR(
        tc_pki_verifier_new(F.root.cert.data, F.root.cert.len, F.a_crl.data, F.a_crl.len, &v),
        TC_ERR_VERIFY);
    struct tc_buf bad = new_buf();
    tc_buf_put(&bad, F.root_crl.data, F.root_crl.len);
    bad.data[bad.len - 1] ^= 0x01;
    EXPECT_ERR(tc_pki_verifier_new(F.root.cert.data, F.root.cert.len, bad.data, bad.len, &v),
               TC_ERR_VERIFY);
    EXPECT_STR(tc_error_last()->msg, "root CRL: CRL signature failure");
    EXPECT_ERR(tc_pki_verifier_new(F.root.cert.data, F.root.cert.len, bad.data, 0, &v),
               TC_ERR_FORMAT);
    EXPECT(v == NULL);
    EXPECT_OK(tc_pki_verifier_new(F.root.cert.data, F.root.cert.len, F.root_crl.data,
                                  F.root_crl.len, &v));
    /* Batch A with batch B's CRL, with a tampered CRL, without one. */
    EXPECT_ERR(
        tc_pki_verifier_add_batch(v, F.a.cert.data, F.a.cert.len, F.b_crl.data, F.b_crl.len, NULL),
        TC_ERR_VERIFY);
    EXPECT_STR(tc_error_last()->msg, "batch CRL is not issued by its CA");
    tc_buf_free(&bad);
    bad = new_buf();
    tc_buf_put(&bad, F.a_crl.data, F.a_crl.len);
    bad.data[bad.len - 1] ^= 0x01;
    EXPECT_ERR(tc_pki_verifier_add_batch(v, F.a.cert.data, F.a.cert.len, bad.data, bad.len, NULL),
               TC_ERR_VERIFY);
    EXPECT_ERR(tc_pki_verifier_add_batch(v, F.a.cert.data, F.a.cert.len, NULL, 0, NULL),
               TC_ERR_FORMAT);
    /* A delta CRL (RFC 5280 §5.2.4), correctly signed by batch A. */
    tc_buf_free(&bad);
    bad = new_buf();
    const uint8_t *q = F.a_crl.data;
    X509_CRL *delta = d2i_X509_CRL(NULL, &q, (long)F.a_crl.len);
    ASN1_INTEGER *base = ASN1_INTEGER_new();
    uint8_t *enc = NULL;
    int el = -1;
    if (delta != NULL && base != NULL && ASN1_INTEGER_set(base, 1) == 1 &&
        X509_CRL_add1_ext_i2d(delta, NID_delta_crl, base, 1, 0) == 1 &&
        X509_CRL_sign(delta, F.a.pkey, EVP_sha256()) > 0)
        el = i2d_X509_CRL(delta, &enc);
    EXPECT(el > 0);
    if (el > 0) {
        tc_buf_put(&bad, enc, (size_t)el);
        EXPECT_ERR(
            tc_pki_verifier_add_batch(v, F.a.cert.data, F.a.cert.len, bad.data, bad.len, NULL),
            TC_ERR_VERIFY);
        EXPECT_STR(tc_error_last()->msg, "batch CRL is a partial or delta CRL");
    }
    OPENSSL_free(enc);
    ASN1_INTEGER_free(base);
    X509_CRL_free(delta);
    /* A device certificate is not a batch CA. */
    EXPECT(tc_pki_verifier_add_batch(v, F.good.data, F.good.len, F.a_crl.data, F.a_crl.len, NULL) !=
           TC_OK);
    EXPECT_EQ_U(tc_pki_verifier_batches(v), 0);
    EXPECT_OK(
        tc_pki_verifier_add_batch(v, F.a.cert.data, F.a.cert.len, F.a_crl.data, F.a_crl.len, NULL));
    EXPECT_ERR(
        tc_pki_verifier_add_batch(v, F.a.cert.data, F.a.cert.len, F.a_crl.data, F.a_crl.len, NULL),
        TC_ERR_STATE);
    EXPECT_EQ_U(tc_pki_verifier_batches(v), 1);
    tc_buf_free(&bad);
    tc_pki_verifier_free(v);
}

/*
 * The window of a TC_OK verdict: exactly the times at which the same
 * certificate verifies, at both ends (OpenSSL's comparison: a time equal to
 * notAfter or nextUpdate is past it, one equal to notBefore or thisUpdate is
 * not before it).
 */
static void window_case(const struct tc_pki_verifier *v, const struct tc_buf *dev, int64_t at,
                        int64_t want_from, int64_t want_until, const char *before,
                        const char *after)
{
    struct tc_pki_window w = {0, 0}, wx = {0, 0};
    char why[256];
    const uint8_t *q = dev->data;
    X509 *x = d2i_X509(NULL, &q, (long)dev->len);
    EXPECT(x != NULL);
    EXPECT_OK(
        tc_pki_verifier_verify_window(v, dev->data, dev->len, at, NULL, &w, NULL, why, sizeof why));
    EXPECT_EQ_U(w.from, want_from);
    EXPECT_EQ_U(w.until, want_until);
    if (x != NULL) {
        EXPECT_OK(tc_pki_verifier_verify_x509_window(v, x, at, NULL, &wx, NULL, why, sizeof why));
        EXPECT(wx.from == w.from && wx.until == w.until);
    }
    X509_free(x);
    EXPECT_OK(tc_pki_verifier_verify(v, dev->data, dev->len, w.from, NULL, NULL, why, sizeof why));
    EXPECT_OK(
        tc_pki_verifier_verify(v, dev->data, dev->len, w.until - 1, NULL, NULL, why, sizeof why));
    EXPECT_ERR(tc_pki_verifier_verify_window(v, dev->data, dev->len, w.from - 1, NULL, &w, NULL,
                                             why, sizeof why),
               TC_ERR_VERIFY);
    EXPECT_STR(why, before);
    EXPECT(w.from > w.until); /* empty on a refusal */
    EXPECT_ERR(
        tc_pki_verifier_verify(v, dev->data, dev->len, want_until, NULL, NULL, why, sizeof why),
        TC_ERR_VERIFY);
    EXPECT_STR(why, after);
}

static void test_window(void)
{
    if (!fixture())
        return;
    struct tc_pki_verifier *v = verifier(&F.root_crl, &F.a_crl_rev);
    /* Root t0..t0+7300d, batch A t0..t0+3650d, CRLs t0+1d..t0+400d, the
     * device from its production time (F.prod = t0+10d) on: the device's
     * notBefore and the CRLs' nextUpdate bound it. */
    window_case(v, &F.good, F.prod + DAY, F.prod, F.t0 + 400 * DAY,
                "device certificate: certificate is not yet valid",
                "device certificate: CRL has expired");
    /* The old batch's CA expires at t0+100d, before the CRLs. */
    window_case(v, &F.in_old, F.prod + DAY, F.prod, F.t0 + 100 * DAY,
                "device certificate: certificate is not yet valid",
                "batch CA certificate: certificate has expired");
    tc_pki_verifier_free(v);
}

/*
 * Many threads on one verifier, from its first verification on (the
 * objects' lazily filled caches are filled when the batches are added, not
 * by whichever thread comes first): every verdict and reason exact, every
 * time.
 */
struct vcase {
    const struct tc_buf *dev;
    int64_t at;
    const char *reason; /* NULL: TC_OK */
    enum tc_pki_refusal refusal;
    bool second; /* on the verifier whose root CRL revokes batch A */
};

struct worker {
    const struct tc_pki_verifier *v[2];
    const struct vcase *cases;
    size_t ncases, start;
    int rounds, bad, done;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char why[256];
    struct tc_pki_device_info di;
    for (int r = 0; r < w->rounds; r++) {
        for (size_t k = 0; k < w->ncases; k++) {
            const struct vcase *c = &w->cases[(w->start + k) % w->ncases];
            enum tc_pki_refusal refusal = TC_PKI_REFUSED_CHAIN;
            tc_err rc = tc_pki_verifier_verify(w->v[c->second ? 1 : 0], c->dev->data, c->dev->len,
                                               c->at, &di, &refusal, why, sizeof why);
            bool ok = c->reason == NULL ? rc == TC_OK && refusal == TC_PKI_REFUSED_NONE &&
                                              why[0] == '\0' && strlen(di.eid) == TC_PKI_EID_DIGITS
                                        : rc == TC_ERR_VERIFY && refusal == c->refusal &&
                                              strcmp(why, c->reason) == 0;
            if (!ok && w->bad++ == 0)
                (void)fprintf(stderr, "  case %zu: %s\n", (w->start + k) % w->ncases, why);
            w->done++;
        }
    }
    return NULL;
}

static void test_threads(void)
{
    if (!fixture())
        return;
    const int64_t at = F.prod + DAY;
    const struct vcase cases[] = {
        {&F.good, at, NULL, TC_PKI_REFUSED_NONE, false},
        {&F.good_b, at, NULL, TC_PKI_REFUSED_NONE, false},
        {&F.revoked, at, "device certificate: certificate revoked", TC_PKI_REFUSED_CHAIN, false},
        {&F.good, at, "batch CA certificate: certificate revoked", TC_PKI_REFUSED_CHAIN, true},
        {&F.good_b, at, NULL, TC_PKI_REFUSED_NONE, true},
        {&F.in_old, F.t0 + 200 * DAY, "batch CA certificate: certificate has expired",
         TC_PKI_REFUSED_CHAIN, false},
        {&F.foreign, at, "device certificate: unable to get local issuer certificate",
         TC_PKI_REFUSED_CHAIN, false},
        {&F.outside_prefix, at,
         "device certificate: EID 89086030202200000022000023022943 is outside batch " BATCH
         " (EID prefix " PREFIX ")",
         TC_PKI_REFUSED_FENCE, false},
    };
    /* Fewer rounds under valgrind (it runs the threads one at a time). */
    int rounds = getenv("TC_UNDER_VALGRIND") != NULL ? 3 : 60;
    for (int pass = 0; pass < 2; pass++) {
        struct tc_pki_verifier *v0 = verifier(&F.root_crl, &F.a_crl_rev);
        struct tc_pki_verifier *v1 = verifier(&F.root_crl_rev_a, &F.a_crl);
        struct worker w[6];
        pthread_t th[6];
        for (size_t i = 0; i < 6; i++) {
            w[i] = (struct worker){.v = {v0, v1},
                                   .cases = cases,
                                   .ncases = TC_ARRAY_LEN(cases),
                                   .start = i,
                                   .rounds = rounds};
            EXPECT(pthread_create(&th[i], NULL, work, &w[i]) == 0);
        }
        for (size_t i = 0; i < 6; i++) {
            EXPECT(pthread_join(th[i], NULL) == 0);
            EXPECT_EQ_U(w[i].bad, 0);
            EXPECT_EQ_U(w[i].done, (size_t)rounds * TC_ARRAY_LEN(cases));
        }
        tc_pki_verifier_free(v0);
        tc_pki_verifier_free(v1);
    }
}

static void fixture_free(void)
{
    ca_free(&F.root);
    ca_free(&F.a);
    ca_free(&F.b);
    ca_free(&F.old);
    ca_free(&F.froot);
    ca_free(&F.fa);
    struct tc_buf *bufs[] = {
        &F.root_crl,  &F.root_crl_rev_a, &F.a_crl,          &F.a_crl_rev, &F.b_crl,   &F.old_crl,
        &F.fa_crl,    &F.good,           &F.revoked,        &F.in_old,    &F.foreign, &F.outside_nc,
        &F.outside_o, &F.bad_eid,        &F.outside_prefix, &F.tampered,  &F.good_b};
    for (size_t i = 0; i < TC_ARRAY_LEN(bufs); i++)
        tc_buf_free(bufs[i]);
}

static void test_last_free(void)
{
    fixture_free();
}

static const struct tc_test_case cases[] = {
    {"good device: same verdict as tc_pki_verify", test_good},
    {"revoked device", test_revoked_device},
    {"revoked batch", test_revoked_batch},
    {"expired batch CA, not yet valid device, CRLs stale or not yet valid", test_times},
    {"foreign root with the same batch ID", test_foreign_root},
    {"CA certificate presented as a device", test_ca_as_device},
    {"name constraints and the EID prefix fence", test_name_constraints_and_fence},
    {"tampered signature and wrong profile", test_tampered_and_profile},
    {"device of a batch the verifier lacks", test_unknown_batch},
    {"refused when built", test_build_refusals},
    {"window of a verdict: exact, at both ends", test_window},
    {"concurrent verifications from the first on, every verdict exact", test_threads},
    {"fixture freed", test_last_free},
};

TC_TEST_MAIN("pki_prepared", cases)
