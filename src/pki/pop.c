/*
 * Proof of possession for device keys: the device signs EID (BCD) || its
 * uncompressed P-256 point || the host's nonce, ECDSA-SHA256 (docs/pki.md).
 */
#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki_int.h"

/* SubjectPublicKeyInfo of a P-256 key, RFC 5480 §2: id-ecPublicKey with the
 * namedCurve secp256r1, then BIT STRING (0 unused bits) holding the
 * uncompressed point 04 || X || Y (§2.2). */
static const uint8_t p256_spki_prefix[27] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                             0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                             0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};

tc_err tc_pki_p256_spki(const uint8_t *spki, size_t spki_len, EVP_PKEY **key,
                        uint8_t point[TC_PKI_P256_POINT])
{
    TC_ENSURE(spki != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(spki_len == sizeof p256_spki_prefix + TC_PKI_P256_POINT - 1, TC_ERR_FORMAT,
                  "public key is not a named-curve P-256 key with an uncompressed point");
    TC_ENSURE_MSG(memcmp(spki, p256_spki_prefix, sizeof p256_spki_prefix) == 0, TC_ERR_FORMAT,
                  "public key is not a named-curve P-256 key with an uncompressed point");
    if (key != NULL) {
        /* d2i_PUBKEY decodes the point and rejects one off the curve. */
        const uint8_t *p = spki;
        EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)spki_len);
        if (k == NULL || p != spki + spki_len) {
            EVP_PKEY_free(k);
            return tc_fail_ossl(__FILE__, __LINE__, "device public key (not a valid P-256 point)");
        }
        *key = k;
    }
    if (point != NULL)
        memcpy(point, spki + sizeof p256_spki_prefix - 1, TC_PKI_P256_POINT);
    return TC_OK;
}

tc_err tc_pki_pop_message(const char *eid, const uint8_t *spki, size_t spki_len,
                          const uint8_t nonce[static TC_PKI_NONCE_LEN],
                          uint8_t out[static TC_PKI_POP_MSG_LEN])
{
    TC_GUARD(tc_pki_eid_to_bcd(eid, out));
    TC_GUARD(tc_pki_p256_spki(spki, spki_len, NULL, out + TC_PKI_EID_BCD_LEN));
    memcpy(out + TC_PKI_EID_BCD_LEN + TC_PKI_P256_POINT, nonce, TC_PKI_NONCE_LEN);
    return TC_OK;
}

/* P-256 and its order, set up once per process: OpenSSL 3.0 rebuilds the
 * curve (Montgomery constants, generator) every time a key is made from a
 * group name, which costs a fifth of a verification. The group is only
 * read afterwards, so threads share it. */
static EC_GROUP *p256_group;
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;

static void p256_init(void)
{
    p256_group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
}

/* One INTEGER of an Ecdsa-Sig-Value: positive, minimal (X.690 §8.3.2),
 * at most 256 bits plus a leading zero octet. */
static bool sig_int(struct tc_cursor *c, BIGNUM *out)
{
    struct tc_cursor v;
    const uint8_t *p;
    if (tc_pki_der_get(c, DER_INTEGER, &v) != TC_OK)
        return false;
    size_t n = tc_cursor_remaining(&v);
    if (n == 0 || n > 33 || tc_cursor_view(&v, n, &p) != TC_OK)
        return false;
    if ((p[0] & 0x80u) != 0)
        return false; /* negative */
    if (n > 1 && p[0] == 0 && (p[1] & 0x80u) == 0)
        return false; /* not minimal */
    return BN_bin2bn(p, (int)n, out) != NULL;
}

/* X9.62 Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } in DER,
 * consumed exactly. */
static bool sig_parse(const uint8_t *sig, size_t len, BIGNUM *r, BIGNUM *s)
{
    struct tc_cursor c, seq;
    if (len == 0 || len > TC_SIG_MAX)
        return false;
    tc_cursor_init(&c, sig, len);
    return tc_pki_der_get(&c, DER_SEQUENCE, &seq) == TC_OK && tc_cursor_expect_end(&c) == TC_OK &&
           sig_int(&seq, r) && sig_int(&seq, s) && tc_cursor_expect_end(&seq) == TC_OK;
}

/* ------------------------------------------------ inversion modulo n */

/* 256-bit values as five little-endian 64-bit limbs: the fifth holds the
 * carry of x + m below, so nothing overflows. */
#define NL 5

static void limbs_from_be(uint64_t out[NL], const uint8_t be[32])
{
    for (size_t i = 0; i < 4; i++) {
        uint64_t v = 0;
        for (size_t k = 0; k < 8; k++)
            v = v << 8 | be[32 - 8 * (i + 1) + k];
        out[i] = v;
    }
    out[4] = 0;
}

static void limbs_to_be(uint8_t be[32], const uint64_t in[NL])
{
    for (size_t i = 0; i < 4; i++)
        for (size_t k = 0; k < 8; k++)
            be[32 - 8 * (i + 1) + k] = (uint8_t)(in[i] >> (56 - 8 * k));
}

static bool limbs_is_one(const uint64_t a[NL])
{
    return a[0] == 1 && (a[1] | a[2] | a[3] | a[4]) == 0;
}

static bool limbs_is_zero(const uint64_t a[NL])
{
    return (a[0] | a[1] | a[2] | a[3] | a[4]) == 0;
}

static void limbs_shr1(uint64_t a[NL])
{
    for (size_t i = 0; i + 1 < NL; i++)
        a[i] = a[i] >> 1 | a[i + 1] << 63;
    a[NL - 1] >>= 1;
}

static void limbs_add(uint64_t r[NL], const uint64_t a[NL], const uint64_t b[NL])
{
    uint64_t c = 0;
    for (size_t i = 0; i < NL; i++) {
        uint64_t t = a[i] + c;
        c = t < c;
        r[i] = t + b[i];
        c += r[i] < t;
    }
}

/* r = a - b; returns the borrow. */
static uint64_t limbs_sub(uint64_t r[NL], const uint64_t a[NL], const uint64_t b[NL])
{
    uint64_t c = 0;
    for (size_t i = 0; i < NL; i++) {
        uint64_t t = a[i] - b[i];
        uint64_t c1 = t > a[i];
        r[i] = t - c;
        c = c1 | (r[i] > t);
    }
    return c;
}

static bool limbs_ge(const uint64_t a[NL], const uint64_t b[NL])
{
    for (size_t i = NL; i-- > 0;)
        if (a[i] != b[i])
            return a[i] > b[i];
    return true;
}

/* x / 2 mod m for x < m, m odd. */
static void limbs_half(uint64_t x[NL], const uint64_t m[NL])
{
    if (x[0] & 1u)
        limbs_add(x, x, m);
    limbs_shr1(x);
}

tc_err tc_pki_inv_mod(const uint8_t a[static 32], const uint8_t m[static 32],
                      uint8_t out[static 32])
{
    /* Binary extended Euclid (Menezes et al., Handbook of Applied
     * Cryptography, Algorithm 14.61 in its modular-inverse form) for an
     * odd modulus; variable time, so for public values only (ECDSA
     * verification). OpenSSL's BN_mod_inverse took a fifth of the
     * verification. */
    uint64_t u[NL], v[NL], x1[NL] = {1}, x2[NL] = {0}, n[NL];
    limbs_from_be(u, a);
    limbs_from_be(n, m);
    TC_ENSURE((n[0] & 1u) != 0 && !limbs_is_one(n), TC_ERR_ARG);
    TC_ENSURE(!limbs_is_zero(u) && !limbs_ge(u, n), TC_ERR_ARG);
    memcpy(v, n, sizeof v);
    while (!limbs_is_one(u) && !limbs_is_one(v)) {
        TC_ENSURE(!limbs_is_zero(u) && !limbs_is_zero(v), TC_ERR_ARG); /* gcd(a, m) > 1 */
        while ((u[0] & 1u) == 0) {
            limbs_shr1(u);
            limbs_half(x1, n);
        }
        while ((v[0] & 1u) == 0) {
            limbs_shr1(v);
            limbs_half(x2, n);
        }
        if (limbs_ge(u, v)) {
            (void)limbs_sub(u, u, v);
            if (limbs_sub(x1, x1, x2) != 0)
                limbs_add(x1, x1, n);
        } else {
            (void)limbs_sub(v, v, u);
            if (limbs_sub(x2, x2, x1) != 0)
                limbs_add(x2, x2, n);
        }
    }
    limbs_to_be(out, limbs_is_one(u) ? x1 : x2);
    return TC_OK;
}

/* ECDSA verification, FIPS 186-4 §6.4.2 (ANS X9.62 §7.4.1), on OpenSSL's
 * P-256 arithmetic with the shared group: the PoP key is new for every
 * device, and building it as an EVP_PKEY (group by name, provider key,
 * digest-verify context) cost as much again as the curve work. Every value
 * here is public. */
tc_err tc_pki_p256_verify(const uint8_t point[TC_PKI_P256_POINT], const uint8_t *msg,
                          size_t msg_len, const uint8_t *sig, size_t sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    EC_POINT *q = NULL, *rp = NULL;
    BN_CTX *bn = NULL;
    uint8_t digest[TC_SHA256_LEN];
    unsigned int dl = 0;
    TC_CHECK(point != NULL && (msg != NULL || msg_len == 0) && (sig != NULL || sig_len == 0),
             TC_ERR_ARG);
    (void)pthread_once(&p256_once, p256_init);
    TC_CHECK_MSG(p256_group != NULL, TC_ERR_CRYPTO, "P-256 unavailable");
    const EC_GROUP *g = p256_group;
    const BIGNUM *n = EC_GROUP_get0_order(g);
    bn = BN_CTX_new();
    q = EC_POINT_new(g);
    rp = EC_POINT_new(g);
    TC_CHECK_MSG(bn != NULL && q != NULL && rp != NULL && n != NULL, TC_ERR_NOMEM, "EC point");
    BN_CTX_start(bn);
    BIGNUM *r = BN_CTX_get(bn), *s = BN_CTX_get(bn), *e = BN_CTX_get(bn);
    BIGNUM *w = BN_CTX_get(bn), *u1 = BN_CTX_get(bn), *u2 = BN_CTX_get(bn);
    BIGNUM *x = BN_CTX_get(bn);
    TC_CHECK_MSG(x != NULL, TC_ERR_NOMEM, "BN_CTX");
    /* The public key: an uncompressed point on the curve (SEC 1 §2.3.4;
     * the point at infinity has no 65-byte form, and P-256's cofactor is 1,
     * so a point on the curve is in the group). */
    if (EC_POINT_oct2point(g, q, point, TC_PKI_P256_POINT, bn) != 1 ||
        EC_POINT_is_on_curve(g, q, bn) != 1) {
        ret = tc_fail_ossl(__FILE__, __LINE__, "device public key (not a valid P-256 point)");
        goto out;
    }
    ERR_clear_error();
    TC_CHECK_MSG(sig_parse(sig, sig_len, r, s), TC_ERR_VERIFY, "not a DER ECDSA signature");
    /* §6.4.2 step 1: r and s in [1, n-1]. */
    TC_CHECK_MSG(!BN_is_zero(r) && !BN_is_zero(s) && BN_cmp(r, n) < 0 && BN_cmp(s, n) < 0,
                 TC_ERR_VERIFY, "ECDSA signature: r or s outside [1, n-1]");
    /* Steps 2-3: e is the whole SHA-256 (the order has 256 bits). */
    const EVP_MD *sha256 = tc_pki_md(true);
    TC_CHECK_MSG(sha256 != NULL, TC_ERR_CRYPTO, "SHA-256 unavailable");
    TC_TRY_OSSL(EVP_Digest(msg, msg_len, digest, &dl, sha256, NULL));
    TC_CHECK_MSG(dl == sizeof digest, TC_ERR_CRYPTO, "SHA-256 length");
    TC_CHECK_MSG(BN_bin2bn(digest, TC_SHA256_LEN, e) != NULL, TC_ERR_NOMEM, "BN");
    /* Steps 4-5: w = s^-1, u1 = e w, u2 = r w (mod n). */
    uint8_t sb[32], nb[32], wb[32];
    TC_CHECK_MSG(BN_bn2binpad(s, sb, 32) == 32 && BN_bn2binpad(n, nb, 32) == 32, TC_ERR_CRYPTO,
                 "s, n");
    TC_TRY(tc_pki_inv_mod(sb, nb, wb));
    TC_CHECK_MSG(BN_bin2bn(wb, 32, w) != NULL, TC_ERR_NOMEM, "BN");
    TC_TRY_OSSL(BN_mod_mul(u1, e, w, n, bn));
    TC_TRY_OSSL(BN_mod_mul(u2, r, w, n, bn));
    /* Step 6: R = u1 G + u2 Q; the point at infinity rejects. */
    TC_TRY_OSSL(EC_POINT_mul(g, rp, u1, q, u2, bn));
    TC_CHECK_MSG(EC_POINT_is_at_infinity(g, rp) != 1, TC_ERR_VERIFY,
                 "ECDSA signature does not verify");
    /* Steps 7-8: v = x(R) mod n must equal r. */
    TC_TRY_OSSL(EC_POINT_get_affine_coordinates(g, rp, x, NULL, bn));
    TC_TRY_OSSL(BN_nnmod(x, x, n, bn));
    TC_CHECK_MSG(BN_cmp(x, r) == 0, TC_ERR_VERIFY, "ECDSA signature does not verify");
    ret = TC_OK;
out:
    ERR_clear_error();
    if (bn != NULL)
        BN_CTX_end(bn);
    BN_CTX_free(bn);
    EC_POINT_free(rp);
    EC_POINT_free(q);
    return ret;
}

tc_err tc_pki_pop_verify(const char *eid, const uint8_t *spki, size_t spki_len,
                         const uint8_t nonce[static TC_PKI_NONCE_LEN], const uint8_t *sig,
                         size_t sig_len)
{
    uint8_t msg[TC_PKI_POP_MSG_LEN];
    TC_ENSURE(sig != NULL || sig_len == 0, TC_ERR_ARG);
    TC_GUARD(tc_pki_pop_message(eid, spki, spki_len, nonce, msg));
    /* ECDSA-SHA256 (FIPS 186-4 §6.4) over the 97 bytes; DER signature. */
    tc_err rc = tc_pki_p256_verify(msg + TC_PKI_EID_BCD_LEN, msg, sizeof msg, sig, sig_len);
    TC_ENSURE_MSG(rc != TC_ERR_VERIFY, TC_ERR_VERIFY,
                  "proof of possession does not verify for EID %s", eid);
    return rc;
}
