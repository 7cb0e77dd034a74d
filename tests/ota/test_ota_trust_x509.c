/*
 * tc_ota_trust_verify_x509 (the server's handshake check on libssl's parsed
 * peer certificate) against tc_ota_trust_verify on the DER: the same
 * verdict, the same reason and the same device info for a good device, a
 * revoked device, a revoked batch, a device of an unknown batch, a device
 * certificate whose signature does not verify, a CA certificate presented
 * as a device and a certificate outside the profile; and the profile check
 * on a parsed certificate (tc_pki_check_device_x509) takes only that
 * certificate's canonical DER.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <trustchain/crypto.h>
#include <trustchain/ota.h>
#include <trustchain/pki.h>

#include "harness.h"
#include "ota_fixture.h"
#include "pki/pki_int.h"

#define DAY    INT64_C(86400)
#define PREFIX "8904903277"

static struct ota_fx_pki P, Q; /* Q: a second root and batch, not trusted */

/* A device certificate of `p` for EID number i. */
static bool issue(struct ota_fx_pki *p, unsigned i, struct tc_buf *der, uint8_t serial[16])
{
    return ota_fx_device_cert(p->batch_iss, p->t0 + DAY, PREFIX, i, der, serial);
}

/* The trust: P's root with root_crl, P's batch with a CRL of `revoked`; no
 * cache. */
static struct tc_ota_trust *trust(const uint8_t *revoked, bool batch_revoked)
{
    struct tc_ota_trust *t = NULL;
    struct tc_buf rcrl, bcrl;
    struct tc_pki_revoked rr = {.revoked_at = P.t0 + DAY, .reason = -1};
    struct tc_pki_revoked br = {.revoked_at = P.t0 + DAY, .reason = -1};
    int64_t now = (int64_t)time(NULL);
    tc_buf_init_heap(&rcrl, 1u << 16);
    tc_buf_init_heap(&bcrl, 1u << 16);
    /* The batch CA's serial, as its certificate carries it. */
    if (batch_revoked)
        EXPECT(ota_fx_crl_entry(P.batch.data, P.batch.len, P.t0 + DAY, &rr));
    if (revoked != NULL) {
        memcpy(br.serial, revoked, TC_PKI_SERIAL_LEN);
        br.serial_len = TC_PKI_SERIAL_LEN;
    }
    EXPECT_OK(tc_pki_crl_create(P.root_iss, 1, now - DAY, now + 30 * DAY,
                                batch_revoked ? &rr : NULL, batch_revoked ? 1 : 0, &rcrl));
    EXPECT_OK(tc_pki_crl_create(P.batch_iss, 1, now - DAY, now + 30 * DAY,
                                revoked != NULL ? &br : NULL, revoked != NULL ? 1 : 0, &bcrl));
    EXPECT_OK(tc_ota_trust_new(P.root.data, P.root.len, rcrl.data, rcrl.len, &t));
    if (t != NULL) {
        EXPECT_OK(tc_ota_trust_add_batch(t, P.batch.data, P.batch.len, bcrl.data, bcrl.len));
        /* Both entry points run the full check here (the cache has its own
         * test, test_ota_trust_cache). */
        EXPECT_OK(tc_ota_trust_set_cache(t, 0));
    }
    tc_buf_free(&rcrl);
    tc_buf_free(&bcrl);
    return t;
}

/* Both entry points on der: the same verdict, reason and info; `want`
 * and (on refusal) a reason containing want_reason. */
static void same(const struct tc_ota_trust *t, const struct tc_buf *der, tc_err want,
                 const char *want_reason)
{
    char r1[TC_OTA_REASON_MAX], r2[TC_OTA_REASON_MAX];
    struct tc_pki_device_info i1, i2;
    memset(&i1, 0, sizeof i1);
    memset(&i2, 0, sizeof i2);
    const uint8_t *q = der->data;
    X509 *x = d2i_X509(NULL, &q, (long)der->len);
    EXPECT(x != NULL);
    if (x == NULL)
        return;
    tc_err a = tc_ota_trust_verify(t, der->data, der->len, 0, &i1, r1, sizeof r1);
    tc_err b = tc_ota_trust_verify_x509(t, x, 0, &i2, r2, sizeof r2);
    EXPECT_EQ_U(a, want);
    EXPECT_EQ_U(b, want);
    EXPECT_STR(r2, r1);
    if (want == TC_OK) {
        EXPECT_STR(r2, "");
        EXPECT_EQ_U(strlen(i2.eid), TC_PKI_EID_DIGITS);
        EXPECT(memcmp(&i1, &i2, sizeof i1) == 0);
    } else {
        EXPECT(strstr(r2, want_reason) != NULL);
    }
    X509_free(x);
}

static bool fixture(void)
{
    static int state;
    if (state == 0)
        state = ota_fx_pki_setup(&P, "B-X509-P", PREFIX) && ota_fx_pki_setup(&Q, "B-X509-Q", PREFIX)
                    ? 1
                    : 2;
    EXPECT(state == 1);
    return state == 1;
}

static void test_good_revoked_unknown(void)
{
    struct tc_buf good, bad, foreign;
    uint8_t sg[16], sb[16], sf[16];
    if (!fixture())
        return;
    EXPECT(issue(&P, 1, &good, sg));
    EXPECT(issue(&P, 2, &bad, sb));
    EXPECT(issue(&Q, 3, &foreign, sf));
    struct tc_ota_trust *t = trust(sb, false);
    if (t != NULL) {
        same(t, &good, TC_OK, NULL);
        same(t, &bad, TC_ERR_VERIFY, "revoked");
        same(t, &foreign, TC_ERR_VERIFY, "unknown batch");
        /* The device's signature is checked at every verification: the
         * last byte of its ECDSA s flipped (still DER) is refused. */
        good.data[good.len - 1] ^= 0x01;
        same(t, &good, TC_ERR_VERIFY, "device certificate: certificate signature failure");
        good.data[good.len - 1] ^= 0x01;
        same(t, &good, TC_OK, NULL);
        /* A CA certificate is not a device certificate. */
        same(t, &P.batch, TC_ERR_VERIFY, "not a device certificate");
    }
    tc_ota_trust_free(t);
    /* The whole batch revoked in the root CRL. */
    t = trust(NULL, true);
    if (t != NULL)
        same(t, &good, TC_ERR_VERIFY, "revoked");
    tc_ota_trust_free(t);
    tc_buf_free(&good);
    tc_buf_free(&bad);
    tc_buf_free(&foreign);
}

/* Outside the profile: a self-signed certificate without extensions. */
static void test_not_a_device(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    uint8_t *der = NULL;
    if (!fixture() || k == NULL || x == NULL)
        goto out;
    X509_NAME *n = X509_get_subject_name(x);
    EXPECT(X509_set_version(x, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(x), 5) == 1 &&
           X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"someone", -1,
                                      -1, 0) == 1 &&
           X509_set_issuer_name(x, n) == 1 && X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
           X509_gmtime_adj(X509_getm_notAfter(x), DAY) && X509_set_pubkey(x, k) == 1 &&
           X509_sign(x, k, EVP_sha256()) > 0);
    int len = i2d_X509(x, &der);
    EXPECT(len > 0);
    struct tc_buf b;
    tc_buf_init_fixed(&b, der, (size_t)len);
    b.len = (size_t)len;
    struct tc_ota_trust *t = trust(NULL, false);
    if (t != NULL)
        same(t, &b, TC_ERR_VERIFY, "not a device certificate");
    tc_ota_trust_free(t);
out:
    OPENSSL_free(der);
    X509_free(x);
    EVP_PKEY_free(k);
}

static X509 *x509_of(const uint8_t *der, size_t len)
{
    const uint8_t *q = der;
    return d2i_X509(NULL, &q, (long)len);
}

/* The profile check on a parsed certificate takes only x's own canonical
 * DER: the same DER with a non-minimal outer length (which OpenSSL's
 * decoder accepts) or another certificate's DER is refused. */
static void test_check_device_x509(void)
{
    struct tc_buf a, b;
    uint8_t sa[16], sb[16];
    struct tc_pki_device_info i1, i2;
    if (!fixture())
        return;
    EXPECT(issue(&P, 4, &a, sa));
    EXPECT(issue(&P, 5, &b, sb));
    X509 *xa = x509_of(a.data, a.len);
    EXPECT(xa != NULL && a.len > 4 && a.len < 0x10000 && a.data[1] == 0x82);
    if (xa == NULL || a.data[1] != 0x82)
        goto out;
    memset(&i1, 0, sizeof i1);
    memset(&i2, 0, sizeof i2);
    EXPECT_OK(tc_pki_check_device(a.data, a.len, &i1));
    EXPECT_OK(tc_pki_check_device_x509(xa, a.data, a.len, &i2));
    EXPECT(memcmp(&i1, &i2, sizeof i1) == 0);
    /* 30 82 LL LL -> 30 83 00 LL LL: BER, not DER (X.690 §10.1). */
    uint8_t nc[TC_PKI_CERT_MAX > 4096 ? 4096 : TC_PKI_CERT_MAX];
    EXPECT(a.len + 1 <= sizeof nc);
    if (a.len + 1 > sizeof nc)
        goto out;
    nc[0] = 0x30;
    nc[1] = 0x83;
    nc[2] = 0x00;
    memcpy(nc + 3, a.data + 2, a.len - 2);
    X509 *xn = x509_of(nc, a.len + 1);
    EXPECT(xn != NULL);
    if (xn != NULL) {
        EXPECT_EQ_U(tc_pki_check_device_x509(xn, nc, a.len + 1, NULL), TC_ERR_FORMAT);
        EXPECT_STR(tc_error_last()->msg, "certificate is not in canonical DER");
        EXPECT_EQ_U(tc_pki_check_device(nc, a.len + 1, NULL), TC_ERR_FORMAT);
        EXPECT_STR(tc_error_last()->msg, "certificate is not in canonical DER");
    }
    X509_free(xn);
    /* Another device's DER with this X509. */
    EXPECT_EQ_U(tc_pki_check_device_x509(xa, b.data, b.len, NULL), TC_ERR_FORMAT);
    EXPECT_EQ_U(tc_pki_check_device_x509(xa, a.data, a.len - 1, NULL), TC_ERR_FORMAT);
out:
    X509_free(xa);
    tc_buf_free(&a);
    tc_buf_free(&b);
}

static void test_zz_cleanup(void)
{
    ota_fx_pki_free(&P);
    ota_fx_pki_free(&Q);
}

static const struct tc_test_case cases[] = {
    {"good_revoked_unknown", test_good_revoked_unknown},
    {"not_a_device", test_not_a_device},
    {"check_device_x509", test_check_device_x509},
    {"zz_cleanup", test_zz_cleanup},
};

TC_TEST_MAIN("ota_trust_x509", cases)
