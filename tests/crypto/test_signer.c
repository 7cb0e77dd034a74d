/* Tests of the software signer and signature verification. */
#include "harness.h"

#include <stdlib.h>

#include <openssl/evp.h>

#include <trustchain/crypto.h>

static const uint8_t msg[] = "device 0042 certificate TBS";

static void round_trip(enum tc_sig_alg alg, size_t spki_len_expected)
{
    struct tc_signer s;
    EXPECT_OK(tc_signer_soft_generate(alg, &s));
    EXPECT_EQ_U(s.alg, alg);
    uint8_t spki[TC_SPKI_MAX], sig[TC_SIG_MAX];
    size_t spki_len = 0, sig_len = 0;
    EXPECT_OK(s.public_key(s.ctx, spki, sizeof spki, &spki_len));
    EXPECT_EQ_U(spki_len, spki_len_expected);
    EXPECT_OK(s.sign(s.ctx, msg, sizeof msg, sig, sizeof sig, &sig_len));
    EXPECT(sig_len > 0 && sig_len <= TC_SIG_MAX);
    if (alg == TC_SIG_ED25519)
        EXPECT_EQ_U(sig_len, 64);
    else
        EXPECT_EQ_U(sig[0], 0x30); /* DER SEQUENCE */
    EXPECT_OK(tc_sig_verify(alg, spki, spki_len, msg, sizeof msg, sig, sig_len));

    /* Tampered message, tampered signature. */
    uint8_t m2[sizeof msg];
    memcpy(m2, msg, sizeof msg);
    m2[3] ^= 0x01;
    EXPECT_ERR(tc_sig_verify(alg, spki, spki_len, m2, sizeof m2, sig, sig_len), TC_ERR_VERIFY);
    uint8_t s2[TC_SIG_MAX];
    memcpy(s2, sig, sig_len);
    s2[sig_len - 1] ^= 0x01;
    EXPECT_ERR(tc_sig_verify(alg, spki, spki_len, msg, sizeof msg, s2, sig_len), TC_ERR_VERIFY);

    /* Malformed signature: truncated, or (ECDSA) extra byte after the DER. */
    EXPECT_ERR(tc_sig_verify(alg, spki, spki_len, msg, sizeof msg, sig, sig_len - 1),
               TC_ERR_FORMAT);
    memcpy(s2, sig, sig_len);
    s2[sig_len] = 0x00;
    if (sig_len < TC_SIG_MAX)
        EXPECT_ERR(tc_sig_verify(alg, spki, spki_len, msg, sizeof msg, s2, sig_len + 1),
                   TC_ERR_FORMAT);

    /* Malformed SPKI: truncated, trailing garbage, garbage. */
    EXPECT_ERR(tc_sig_verify(alg, spki, spki_len - 1, msg, sizeof msg, sig, sig_len),
               TC_ERR_FORMAT);
    uint8_t spki2[TC_SPKI_MAX + 1];
    memcpy(spki2, spki, spki_len);
    spki2[spki_len] = 0x00;
    EXPECT_ERR(tc_sig_verify(alg, spki2, spki_len + 1, msg, sizeof msg, sig, sig_len),
               TC_ERR_FORMAT);
    memset(spki2, 0x41, sizeof spki2);
    EXPECT_ERR(tc_sig_verify(alg, spki2, spki_len, msg, sizeof msg, sig, sig_len), TC_ERR_FORMAT);

    /* Output space. */
    EXPECT_ERR(s.public_key(s.ctx, spki, spki_len - 1, &spki_len), TC_ERR_SPACE);
    EXPECT_ERR(s.sign(s.ctx, msg, sizeof msg, sig, 8, &sig_len), TC_ERR_SPACE);
    tc_signer_soft_free(&s);
    EXPECT(s.ctx == NULL);
}

static void test_round_trip_p256(void)
{
    round_trip(TC_SIG_ECDSA_P256_SHA256, 91);
}

static void test_round_trip_p384(void)
{
    round_trip(TC_SIG_ECDSA_P384_SHA384, 120);
}

static void test_round_trip_ed25519(void)
{
    round_trip(TC_SIG_ED25519, 44);
}

/* A key of one algorithm never verifies as another. */
static void test_wrong_alg_spki(void)
{
    const enum tc_sig_alg algs[3] = {TC_SIG_ECDSA_P256_SHA256, TC_SIG_ECDSA_P384_SHA384,
                                     TC_SIG_ED25519};
    for (size_t i = 0; i < 3; i++) {
        struct tc_signer s;
        EXPECT_OK(tc_signer_soft_generate(algs[i], &s));
        uint8_t spki[TC_SPKI_MAX], sig[TC_SIG_MAX];
        size_t spki_len = 0, sig_len = 0;
        EXPECT_OK(s.public_key(s.ctx, spki, sizeof spki, &spki_len));
        EXPECT_OK(s.sign(s.ctx, msg, sizeof msg, sig, sizeof sig, &sig_len));
        for (size_t j = 0; j < 3; j++)
            if (j != i)
                EXPECT_ERR(tc_sig_verify(algs[j], spki, spki_len, msg, sizeof msg, sig, sig_len),
                           TC_ERR_VERIFY);
        tc_signer_soft_free(&s);
    }
    uint8_t junk[4] = {0};
    EXPECT_ERR(tc_sig_verify((enum tc_sig_alg)9, junk, 4, msg, 1, junk, 4), TC_ERR_ARG);
    EXPECT_ERR(tc_signer_soft_generate((enum tc_sig_alg)0, NULL), TC_ERR_ARG);
}

/* Keys on curves other than P-256/P-384 are refused. */
static void test_unsupported_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    EXPECT(k != NULL);
    struct tc_signer s;
    if (k != NULL)
        EXPECT_ERR(tc_signer_soft_new(k, &s), TC_ERR_UNSUPPORTED);
    EVP_PKEY_free(k);
    EXPECT_ERR(tc_signer_soft_new(NULL, &s), TC_ERR_ARG);
    tc_signer_soft_free(NULL);
}

/* RFC 8032 §7.1: the secret key gives exactly the published signature, and
 * the SPKI carries exactly the published public key (RFC 8410 §4). */
static void test_ed25519_rfc8032(void)
{
    static const uint8_t spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                            0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/ed25519.txt"))
        return;
    size_t n = 0;
    while (tc_vec_next(&v)) {
        size_t sklen = 0, pklen = 0, mlen = 0, siglen = 0;
        uint8_t *sk = tc_vec_hex(&v, "SECRET_KEY", &sklen);
        uint8_t *pk = tc_vec_hex(&v, "PUBLIC_KEY", &pklen);
        uint8_t *m = tc_vec_hex(&v, "MESSAGE", &mlen);
        uint8_t *expect = tc_vec_hex(&v, "SIGNATURE", &siglen);
        EVP_PKEY *key = sk ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, sklen) : NULL;
        EXPECT(key != NULL);
        if (key && pk && m && expect) {
            struct tc_signer s;
            EXPECT_OK(tc_signer_soft_new(key, &s));
            EXPECT_EQ_U(s.alg, TC_SIG_ED25519);
            uint8_t sig[TC_SIG_MAX], spki[TC_SPKI_MAX];
            size_t sig_len = 0, spki_len = 0;
            EXPECT_OK(s.sign(s.ctx, m, mlen, sig, sizeof sig, &sig_len));
            EXPECT_MEM(sig, sig_len, expect, siglen);
            EXPECT_OK(s.public_key(s.ctx, spki, sizeof spki, &spki_len));
            EXPECT_EQ_U(spki_len, sizeof spki_prefix + pklen);
            EXPECT_MEM(spki, sizeof spki_prefix, spki_prefix, sizeof spki_prefix);
            EXPECT_MEM(spki + sizeof spki_prefix, spki_len - sizeof spki_prefix, pk, pklen);
            EXPECT_OK(tc_sig_verify(TC_SIG_ED25519, spki, spki_len, m, mlen, expect, siglen));
            expect[0] ^= 0x80;
            EXPECT_ERR(tc_sig_verify(TC_SIG_ED25519, spki, spki_len, m, mlen, expect, siglen),
                       TC_ERR_VERIFY);
            tc_signer_soft_free(&s);
            n++;
        }
        EVP_PKEY_free(key); /* the signer held its own reference */
        free(sk);
        free(pk);
        free(m);
        free(expect);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 3);
}

static const struct tc_test_case cases[] = {
    {"round_trip_p256", test_round_trip_p256},       {"round_trip_p384", test_round_trip_p384},
    {"round_trip_ed25519", test_round_trip_ed25519}, {"wrong_alg_spki", test_wrong_alg_spki},
    {"unsupported_key", test_unsupported_key},       {"ed25519_rfc8032", test_ed25519_rfc8032},
};

TC_TEST_MAIN("signer", cases)
