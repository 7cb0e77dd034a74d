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

/* DER INTEGER for an unsigned big-endian value: minimal, with a leading 00
 * when the top bit is set (X.690 §8.3). */
static size_t der_int(uint8_t *out, const uint8_t *v, size_t n)
{
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    size_t pad = (v[0] & 0x80) ? 1 : 0;
    out[0] = 0x02;
    out[1] = (uint8_t)(n + pad);
    out[2] = 0x00;
    memcpy(out + 2 + pad, v, n);
    return 2 + pad + n;
}

/* RFC 6979 §A.2.5/§A.2.6 signatures verify under the published keys; a
 * changed message, swapped r/s and non-minimal DER do not. */
static void test_ecdsa_rfc6979_verify(void)
{
    static const uint8_t p256_prefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                          0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                          0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    static const uint8_t p384_prefix[] = {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
                                          0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                                          0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00};
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/ecdsa.txt"))
        return;
    size_t n = 0;
    while (tc_vec_next(&v)) {
        const char *alg_name = tc_vec_get(&v, "ALG");
        bool p384 = alg_name != NULL && strcmp(alg_name, "P-384") == 0;
        enum tc_sig_alg alg = p384 ? TC_SIG_ECDSA_P384_SHA384 : TC_SIG_ECDSA_P256_SHA256;
        size_t xl = 0, yl = 0, ml = 0, rl = 0, sl = 0;
        uint8_t *ux = tc_vec_hex(&v, "UX", &xl), *uy = tc_vec_hex(&v, "UY", &yl);
        uint8_t *m = tc_vec_hex(&v, "MSG", &ml);
        uint8_t *r = tc_vec_hex(&v, "R", &rl), *sv = tc_vec_hex(&v, "S", &sl);
        size_t field = p384 ? 48 : 32;
        if (ux && uy && m && r && sv && xl == field && yl == field && rl == field && sl == field) {
            uint8_t spki[TC_SPKI_MAX], sig[TC_SIG_MAX], body[TC_SIG_MAX];
            const uint8_t *prefix = p384 ? p384_prefix : p256_prefix;
            size_t plen = p384 ? sizeof p384_prefix : sizeof p256_prefix;
            memcpy(spki, prefix, plen);
            spki[plen] = 0x04;
            memcpy(spki + plen + 1, ux, field);
            memcpy(spki + plen + 1 + field, uy, field);
            size_t spki_len = plen + 1 + 2 * field;

            size_t bl = der_int(body, r, rl);
            bl += der_int(body + bl, sv, sl);
            sig[0] = 0x30;
            sig[1] = (uint8_t)bl;
            memcpy(sig + 2, body, bl);
            size_t sig_len = 2 + bl;
            EXPECT_OK(tc_sig_verify(alg, spki, spki_len, m, ml, sig, sig_len));

            /* The other curve's algorithm, a changed message. */
            enum tc_sig_alg other = p384 ? TC_SIG_ECDSA_P256_SHA256 : TC_SIG_ECDSA_P384_SHA384;
            EXPECT_ERR(tc_sig_verify(other, spki, spki_len, m, ml, sig, sig_len), TC_ERR_VERIFY);
            m[0] ^= 0x20;
            EXPECT_ERR(tc_sig_verify(alg, spki, spki_len, m, ml, sig, sig_len), TC_ERR_VERIFY);
            m[0] ^= 0x20;

            /* r and s swapped: well-formed, wrong. */
            bl = der_int(body, sv, sl);
            bl += der_int(body + bl, r, rl);
            memcpy(sig + 2, body, bl);
            EXPECT_ERR(tc_sig_verify(alg, spki, spki_len, m, ml, sig, 2 + bl), TC_ERR_VERIFY);

            /* r with one more leading 00 than minimal (BER, not DER). */
            uint8_t rmin[64];
            size_t rml = der_int(rmin, r, rl);
            body[0] = 0x02;
            body[1] = (uint8_t)(rml - 2 + 1);
            body[2] = 0x00;
            memcpy(body + 3, rmin + 2, rml - 2);
            bl = 3 + rml - 2;
            bl += der_int(body + bl, sv, sl);
            sig[1] = (uint8_t)bl;
            memcpy(sig + 2, body, bl);
            EXPECT_ERR(tc_sig_verify(alg, spki, spki_len, m, ml, sig, 2 + bl), TC_ERR_FORMAT);
            n++;
        } else {
            tc_test_fail_at(v.path, v.record_line, "incomplete ECDSA record");
        }
        free(ux);
        free(uy);
        free(m);
        free(r);
        free(sv);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 4);
}

static const struct tc_test_case cases[] = {
    {"round_trip_p256", test_round_trip_p256},           {"round_trip_p384", test_round_trip_p384},
    {"round_trip_ed25519", test_round_trip_ed25519},     {"wrong_alg_spki", test_wrong_alg_spki},
    {"unsupported_key", test_unsupported_key},           {"ed25519_rfc8032", test_ed25519_rfc8032},
    {"ecdsa_rfc6979_verify", test_ecdsa_rfc6979_verify},
};

TC_TEST_MAIN("signer", cases)
