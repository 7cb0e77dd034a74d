/*
 * The card's P-256 (src/se/ec.c) on its own: generated key pairs are valid
 * and consistent (OpenSSL's full key check), differ between calls, and sign
 * digests that OpenSSL verifies with the public key (EVP_DigestVerify over
 * the message); a wrong message, a wrong key or a changed signature is
 * rejected; RFC 6979 A.2.5's key pair signs through the card; several
 * threads generate and sign at once; a thread's contexts can be freed and
 * rebuilt.
 */
#include "se_util.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

/* An EVP_PKEY from the card's form: the public point, and the 32-byte
 * big-endian scalar when priv is not NULL. */
static EVP_PKEY *to_pkey(const uint8_t *priv, const uint8_t pub[TC_SE_EC_PUB_LEN])
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    BIGNUM *d = priv != NULL ? BN_bin2bn(priv, 32, NULL) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    if (ctx == NULL || bld == NULL || (priv != NULL && d == NULL))
        goto out;
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, TC_SE_EC_PUB_LEN) !=
            1 ||
        (d != NULL && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    if (params == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, d != NULL ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) !=
            1)
        key = NULL;
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* OpenSSL's full check (domain parameters, public point on the curve and of
 * order n, 1 <= d < n, Q == dG): 1 when the pair passes. */
static int pair_check(const uint8_t priv[32], const uint8_t pub[TC_SE_EC_PUB_LEN])
{
    EVP_PKEY *key = to_pkey(priv, pub);
    if (key == NULL)
        return -1;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int ok = ctx != NULL ? EVP_PKEY_check(ctx) : -1;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key);
    return ok;
}

/* 1 when sig verifies over msg (ECDSA with SHA-256) with the public key. */
static int verify(const uint8_t pub[TC_SE_EC_PUB_LEN], const uint8_t *msg, size_t msg_len,
                  const uint8_t *sig, size_t sig_len)
{
    EVP_PKEY *key = to_pkey(NULL, pub);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = -1;
    if (key != NULL && md != NULL &&
        EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) == 1)
        ok = EVP_DigestVerify(md, sig, sig_len, msg, msg_len);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    return ok;
}

static void sha256(const uint8_t *msg, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(msg, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        tc_test_fail_at(__FILE__, __LINE__, "SHA-256 failed");
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static void test_generate_valid_and_distinct(void)
{
    uint8_t priv[4][32], pub[4][TC_SE_EC_PUB_LEN];
    for (size_t i = 0; i < 4; i++) {
        EXPECT_OK(se_ec_generate(priv[i], pub[i]));
        EXPECT_EQ_U(pub[i][0], 0x04);
        EXPECT(!all_zero(priv[i], 32));
        EXPECT_EQ_U(pair_check(priv[i], pub[i]), 1);
    }
    for (size_t i = 0; i < 4; i++)
        for (size_t j = i + 1; j < 4; j++) {
            EXPECT(memcmp(priv[i], priv[j], 32) != 0);
            EXPECT(memcmp(pub[i], pub[j], TC_SE_EC_PUB_LEN) != 0);
        }
    /* The check can fail: another key's public point does not match. */
    EXPECT(pair_check(priv[0], pub[1]) != 1);
    tc_memzero(priv, sizeof priv);
}

static void test_sign_verifies(void)
{
    uint8_t priv[32], pub[TC_SE_EC_PUB_LEN], other_priv[32], other_pub[TC_SE_EC_PUB_LEN];
    EXPECT_OK(se_ec_generate(priv, pub));
    EXPECT_OK(se_ec_generate(other_priv, other_pub));
    static const uint8_t msg[] = "TLS 1.3, client CertificateVerify";
    static const uint8_t msg2[] = "TLS 1.3, client CertificateVerifx";
    uint8_t digest[32];
    sha256(msg, sizeof msg, digest);
    uint8_t sig[80];
    size_t sig_len = 0;
    EXPECT_OK(se_ec_sign_digest(priv, pub, digest, sig, sizeof sig, &sig_len));
    EXPECT(sig_len >= 8 && sig_len <= 72);
    EXPECT_EQ_U(sig[0], 0x30); /* DER ECDSA-Sig-Value */
    EXPECT_EQ_U(verify(pub, msg, sizeof msg, sig, sig_len), 1);
    /* Rejected: another message, another key, a changed signature. */
    EXPECT(verify(pub, msg2, sizeof msg2, sig, sig_len) != 1);
    EXPECT(verify(other_pub, msg, sizeof msg, sig, sig_len) != 1);
    sig[sig_len - 1] ^= 0x01;
    EXPECT(verify(pub, msg, sizeof msg, sig, sig_len) != 1);
    /* Signed with the other key: verifies with it only. */
    EXPECT_OK(se_ec_sign_digest(other_priv, other_pub, digest, sig, sizeof sig, &sig_len));
    EXPECT_EQ_U(verify(other_pub, msg, sizeof msg, sig, sig_len), 1);
    EXPECT(verify(pub, msg, sizeof msg, sig, sig_len) != 1);
    tc_memzero(priv, sizeof priv);
    tc_memzero(other_priv, sizeof other_priv);
}

static void test_sign_rejects(void)
{
    uint8_t priv[32], pub[TC_SE_EC_PUB_LEN], digest[32] = {0x5A}, sig[80];
    size_t sig_len = 0;
    EXPECT_OK(se_ec_generate(priv, pub));
    /* A buffer too small for a DER signature. */
    EXPECT(se_ec_sign_digest(priv, pub, digest, sig, 16, &sig_len) != TC_OK);
    /* A public point off the curve, and an encoding that is no point form
     * (SEC 1 v2 §2.3.4 knows 00, 02/03 and 04; ANSI X9.62 adds 06/07). */
    uint8_t bad[TC_SE_EC_PUB_LEN];
    memcpy(bad, pub, sizeof bad);
    bad[64] ^= 0x01;
    EXPECT(se_ec_sign_digest(priv, bad, digest, sig, sizeof sig, &sig_len) != TC_OK);
    memcpy(bad, pub, sizeof bad);
    bad[0] = 0x05;
    EXPECT(se_ec_sign_digest(priv, bad, digest, sig, sizeof sig, &sig_len) != TC_OK);
    /* The thread's contexts still work after the failures. */
    EXPECT_OK(se_ec_sign_digest(priv, pub, digest, sig, sizeof sig, &sig_len));
    tc_memzero(priv, sizeof priv);
}

static void test_rfc6979_key(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "se/ecdsa_p256.txt"))
        return;
    int records = 0;
    while (tc_vec_next(&v)) {
        size_t pl = 0, xl = 0, yl = 0, ml = 0, rl = 0, sl = 0;
        uint8_t *priv = tc_vec_hex(&v, "PRIV", &pl);
        uint8_t *ux = tc_vec_hex(&v, "UX", &xl);
        uint8_t *uy = tc_vec_hex(&v, "UY", &yl);
        uint8_t *msg = tc_vec_hex(&v, "MSG", &ml);
        uint8_t *r = tc_vec_hex(&v, "R", &rl);
        uint8_t *s = tc_vec_hex(&v, "S", &sl);
        if (priv != NULL && ux != NULL && uy != NULL && msg != NULL && r != NULL && s != NULL &&
            pl == 32 && xl == 32 && yl == 32 && rl == 32 && sl == 32) {
            uint8_t pub[TC_SE_EC_PUB_LEN];
            pub[0] = 0x04;
            memcpy(pub + 1, ux, 32);
            memcpy(pub + 33, uy, 32);
            EXPECT_EQ_U(pair_check(priv, pub), 1);
            /* The published signature verifies with the published key (the
             * verifier works), and not over another message. */
            ECDSA_SIG *es = ECDSA_SIG_new();
            BIGNUM *br = BN_bin2bn(r, 32, NULL), *bs = BN_bin2bn(s, 32, NULL);
            unsigned char *der = NULL;
            int der_len = -1;
            if (es != NULL && br != NULL && bs != NULL && ECDSA_SIG_set0(es, br, bs) == 1) {
                br = bs = NULL;
                der_len = i2d_ECDSA_SIG(es, &der);
            }
            EXPECT(der_len > 0);
            if (der_len > 0) {
                EXPECT_EQ_U(verify(pub, msg, ml, der, (size_t)der_len), 1);
                EXPECT(verify(pub, msg, ml > 0 ? ml - 1 : 0, der, (size_t)der_len) != 1);
            }
            OPENSSL_free(der);
            BN_free(br);
            BN_free(bs);
            ECDSA_SIG_free(es);
            /* The card signs with the published key; OpenSSL verifies. */
            uint8_t digest[32], sig[80];
            size_t sig_len = 0;
            sha256(msg, ml, digest);
            for (int i = 0; i < 8; i++) {
                EXPECT_OK(se_ec_sign_digest(priv, pub, digest, sig, sizeof sig, &sig_len));
                EXPECT_EQ_U(verify(pub, msg, ml, sig, sig_len), 1);
            }
            records++;
        }
        free(priv);
        free(ux);
        free(uy);
        free(msg);
        free(r);
        free(s);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(records, 1);
}

/* The kept signing key: reused for the same key pair, rebuilt for another,
 * wiped on failure and when forgotten. */
static void test_sign_kept(void)
{
    struct se_ec_key k;
    memset(&k, 0, sizeof k);
    uint8_t priv[32], pub[TC_SE_EC_PUB_LEN], priv2[32], pub2[TC_SE_EC_PUB_LEN];
    EXPECT_OK(se_ec_generate(priv, pub));
    EXPECT_OK(se_ec_generate(priv2, pub2));
    static const uint8_t msg[] = "TLS 1.3, client CertificateVerify";
    uint8_t digest[32], sig[80];
    size_t sig_len = 0;
    sha256(msg, sizeof msg, digest);
    EXPECT_OK(se_ec_sign_digest_kept(&k, priv, pub, digest, sig, sizeof sig, &sig_len));
    EXPECT_EQ_U(verify(pub, msg, sizeof msg, sig, sig_len), 1);
    struct evp_pkey_st *first = k.pkey;
    EXPECT(first != NULL && k.sctx != NULL);
    EXPECT_MEM(k.pub, sizeof k.pub, pub, sizeof pub);
    /* Same key pair: the same objects sign again, a fresh signature. */
    uint8_t sig2[80];
    size_t sig2_len = 0;
    EXPECT_OK(se_ec_sign_digest_kept(&k, priv, pub, digest, sig2, sizeof sig2, &sig2_len));
    EXPECT(k.pkey == first);
    EXPECT_EQ_U(verify(pub, msg, sizeof msg, sig2, sig2_len), 1);
    EXPECT(sig2_len != sig_len || memcmp(sig, sig2, sig_len) != 0);
    /* Another key pair: signed by it and not by the kept one. */
    EXPECT_OK(se_ec_sign_digest_kept(&k, priv2, pub2, digest, sig, sizeof sig, &sig_len));
    EXPECT_EQ_U(verify(pub2, msg, sizeof msg, sig, sig_len), 1);
    EXPECT(verify(pub, msg, sizeof msg, sig, sig_len) != 1);
    EXPECT_MEM(k.priv, sizeof k.priv, priv2, sizeof priv2);
    /* The same public point with another scalar is another key pair too:
     * the scalar is compared, not only the point. */
    EXPECT_OK(se_ec_sign_digest_kept(&k, priv, pub, digest, sig, sizeof sig, &sig_len));
    EXPECT_EQ_U(verify(pub, msg, sizeof msg, sig, sig_len), 1);
    EXPECT_MEM(k.priv, sizeof k.priv, priv, sizeof priv);
    /* A failure forgets everything: no objects, no copy of the scalar. */
    uint8_t bad[TC_SE_EC_PUB_LEN];
    memcpy(bad, pub, sizeof bad);
    bad[64] ^= 0x01;
    EXPECT(se_ec_sign_digest_kept(&k, priv, bad, digest, sig, sizeof sig, &sig_len) != TC_OK);
    EXPECT(k.pkey == NULL && k.sctx == NULL && all_zero(k.priv, sizeof k.priv) &&
           all_zero(k.pub, sizeof k.pub));
    EXPECT_OK(se_ec_sign_digest_kept(&k, priv, pub, digest, sig, sizeof sig, &sig_len));
    EXPECT(se_ec_sign_digest_kept(&k, priv, pub, digest, sig, 16, &sig_len) != TC_OK);
    EXPECT(k.pkey == NULL && all_zero(k.priv, sizeof k.priv));
    EXPECT(se_ec_sign_digest_kept(NULL, priv, pub, digest, sig, sizeof sig, &sig_len) != TC_OK);
    tc_error_clear();
    /* Forgetting frees and wipes; twice is harmless. */
    EXPECT_OK(se_ec_sign_digest_kept(&k, priv, pub, digest, sig, sizeof sig, &sig_len));
    se_ec_key_forget(&k);
    EXPECT(k.pkey == NULL && k.sctx == NULL && all_zero(k.priv, sizeof k.priv));
    se_ec_key_forget(&k);
    se_ec_key_forget(NULL);
    tc_memzero(priv, sizeof priv);
    tc_memzero(priv2, sizeof priv2);
}

/* ------------------------------------------------------------------ threads */

#define THREADS 4
#define ROUNDS  24

struct worker {
    unsigned id;
    uint8_t pubs[ROUNDS][TC_SE_EC_PUB_LEN];
    unsigned bad;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < ROUNDS; i++) {
        uint8_t priv[32], digest[32], sig[80];
        uint8_t msg[8] = {(uint8_t)w->id, (uint8_t)i, 'm', 's', 'g'};
        size_t sig_len = 0;
        sha256(msg, sizeof msg, digest);
        if (se_ec_generate(priv, w->pubs[i]) != TC_OK ||
            se_ec_sign_digest(priv, w->pubs[i], digest, sig, sizeof sig, &sig_len) != TC_OK ||
            verify(w->pubs[i], msg, sizeof msg, sig, sig_len) != 1 ||
            pair_check(priv, w->pubs[i]) != 1)
            w->bad++;
        /* One thread drops its contexts midway; they are rebuilt. */
        if (w->id == 0 && i == ROUNDS / 2)
            se_ec_thread_cleanup();
        tc_memzero(priv, sizeof priv);
    }
    return NULL;
}

static void test_threads(void)
{
    static struct worker w[THREADS];
    pthread_t th[THREADS];
    bool started[THREADS] = {false};
    for (unsigned i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        started[i] = pthread_create(&th[i], NULL, work, &w[i]) == 0;
        EXPECT(started[i]);
    }
    for (unsigned i = 0; i < THREADS; i++)
        if (started[i])
            EXPECT_EQ_U(pthread_join(th[i], NULL), 0);
    for (unsigned i = 0; i < THREADS; i++)
        EXPECT_EQ_U(w[i].bad, 0);
    /* Every public key of every thread is different. */
    unsigned same = 0;
    for (unsigned a = 0; a < THREADS * ROUNDS; a++)
        for (unsigned b = a + 1; b < THREADS * ROUNDS; b++)
            same += memcmp(w[a / ROUNDS].pubs[a % ROUNDS], w[b / ROUNDS].pubs[b % ROUNDS],
                           TC_SE_EC_PUB_LEN) == 0;
    EXPECT_EQ_U(same, 0);
}

static void test_cleanup_and_rebuild(void)
{
    uint8_t priv[32], pub[TC_SE_EC_PUB_LEN], digest[32] = {1}, sig[80];
    size_t sig_len = 0;
    se_ec_thread_cleanup();
    se_ec_thread_cleanup(); /* twice is harmless */
    EXPECT_OK(se_ec_generate(priv, pub));
    EXPECT_OK(se_ec_sign_digest(priv, pub, digest, sig, sizeof sig, &sig_len));
    tc_memzero(priv, sizeof priv);
    se_ec_thread_cleanup();
}

static const struct tc_test_case cases[] = {
    {"generate_valid_and_distinct", test_generate_valid_and_distinct},
    {"sign_verifies", test_sign_verifies},
    {"sign_rejects", test_sign_rejects},
    {"sign_kept", test_sign_kept},
    {"rfc6979_key", test_rfc6979_key},
    {"threads", test_threads},
    {"cleanup_and_rebuild", test_cleanup_and_rebuild},
};

TC_TEST_MAIN("se_ec", cases)
