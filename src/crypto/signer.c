/*
 * The software signer: ECDSA P-256/SHA-256 and P-384/SHA-384 (FIPS 186-4,
 * X9.62 DER signatures, RFC 5480 SPKI) and Ed25519 (RFC 8032 PureEdDSA,
 * RFC 8410 SPKI) over an OpenSSL EVP_PKEY; and signature verification
 * against a DER SubjectPublicKeyInfo.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <trustchain/crypto.h>

/* Ed25519 signatures are exactly 64 bytes (RFC 8032 §5.1.6). */
#define TC_ED25519_SIG_LEN 64u

struct tc_soft_signer {
    EVP_PKEY *key;
};

/* The digest name for EVP_DigestSignInit_ex: none for PureEdDSA, which
 * signs the message itself (RFC 8032 §5.1.6). */
static const char *alg_digest(enum tc_sig_alg alg)
{
    switch (alg) {
    case TC_SIG_ECDSA_P256_SHA256:
        return "SHA256";
    case TC_SIG_ECDSA_P384_SHA384:
        return "SHA384";
    case TC_SIG_ED25519:
        return NULL;
    default:
        return NULL;
    }
}

static bool alg_valid(enum tc_sig_alg alg)
{
    return alg == TC_SIG_ECDSA_P256_SHA256 || alg == TC_SIG_ECDSA_P384_SHA384 ||
           alg == TC_SIG_ED25519;
}

/* Which of our algorithms a key belongs to; false if none. */
static bool key_alg(EVP_PKEY *key, enum tc_sig_alg *alg)
{
    if (EVP_PKEY_is_a(key, "ED25519")) {
        *alg = TC_SIG_ED25519;
        return true;
    }
    if (!EVP_PKEY_is_a(key, "EC"))
        return false;
    char group[64];
    size_t glen = 0;
    if (EVP_PKEY_get_group_name(key, group, sizeof group, &glen) != 1) {
        ERR_clear_error();
        return false;
    }
    int nid = OBJ_txt2nid(group);
    if (nid == NID_X9_62_prime256v1) {
        *alg = TC_SIG_ECDSA_P256_SHA256;
        return true;
    }
    if (nid == NID_secp384r1) {
        *alg = TC_SIG_ECDSA_P384_SHA384;
        return true;
    }
    return false;
}

static tc_err soft_sign(void *vctx, const uint8_t *msg, size_t len, uint8_t *sig, size_t sig_size,
                        size_t *sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_soft_signer *s = vctx;
    EVP_MD_CTX *md = NULL;
    uint8_t tmp[TC_SIG_MAX];
    size_t tmp_len = sizeof tmp;
    TC_ENSURE(s != NULL && s->key != NULL && sig != NULL && sig_len != NULL, TC_ERR_ARG);
    TC_ENSURE(msg != NULL || len == 0, TC_ERR_ARG);
    enum tc_sig_alg alg;
    TC_ENSURE(key_alg(s->key, &alg), TC_ERR_INTERNAL);
    md = EVP_MD_CTX_new();
    TC_CHECK_MSG(md != NULL, TC_ERR_NOMEM, "EVP_MD_CTX_new failed");
    TC_TRY_OSSL(EVP_DigestSignInit_ex(md, NULL, alg_digest(alg), NULL, NULL, s->key, NULL));
    static const uint8_t empty[1];
    TC_TRY_OSSL(EVP_DigestSign(md, tmp, &tmp_len, len > 0 ? msg : empty, len));
    TC_CHECK_MSG(tmp_len <= sig_size, TC_ERR_SPACE,
                 "signature of %zu bytes does not fit in %zu bytes", tmp_len, sig_size);
    memcpy(sig, tmp, tmp_len);
    *sig_len = tmp_len;
    ret = TC_OK;
out:
    EVP_MD_CTX_free(md);
    return ret;
}

static tc_err soft_public_key(void *vctx, uint8_t *out, size_t out_size, size_t *out_len)
{
    struct tc_soft_signer *s = vctx;
    TC_ENSURE(s != NULL && s->key != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    /* RFC 5280 §4.1.2.7 SubjectPublicKeyInfo, DER. */
    int n = i2d_PUBKEY(s->key, NULL);
    if (n <= 0)
        return tc_fail_ossl(__FILE__, __LINE__, "i2d_PUBKEY");
    TC_ENSURE_MSG((size_t)n <= out_size, TC_ERR_SPACE,
                  "public key of %d bytes does not fit in %zu bytes", n, out_size);
    uint8_t *p = out;
    if (i2d_PUBKEY(s->key, &p) != n)
        return tc_fail_ossl(__FILE__, __LINE__, "i2d_PUBKEY");
    *out_len = (size_t)n;
    return TC_OK;
}

tc_err tc_signer_soft_new(EVP_PKEY *key, struct tc_signer *out)
{
    TC_ENSURE(key != NULL && out != NULL, TC_ERR_ARG);
    enum tc_sig_alg alg;
    TC_ENSURE_MSG(key_alg(key, &alg), TC_ERR_UNSUPPORTED,
                  "signer key must be ECDSA P-256, P-384 or Ed25519");
    struct tc_soft_signer *s = calloc(1, sizeof *s);
    TC_ENSURE_MSG(s != NULL, TC_ERR_NOMEM, "no memory for a signer");
    if (EVP_PKEY_up_ref(key) != 1) {
        free(s);
        return tc_fail_ossl(__FILE__, __LINE__, "EVP_PKEY_up_ref");
    }
    s->key = key;
    out->alg = alg;
    out->ctx = s;
    out->sign = soft_sign;
    out->public_key = soft_public_key;
    return TC_OK;
}

tc_err tc_signer_soft_generate(enum tc_sig_alg alg, struct tc_signer *out)
{
    TC_ENSURE(out != NULL && alg_valid(alg), TC_ERR_ARG);
    EVP_PKEY *key = NULL;
    switch (alg) {
    case TC_SIG_ECDSA_P256_SHA256:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case TC_SIG_ECDSA_P384_SHA384:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        break;
    case TC_SIG_ED25519:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        break;
    default:
        break;
    }
    if (key == NULL)
        return tc_fail_ossl(__FILE__, __LINE__, "EVP_PKEY_Q_keygen");
    tc_err rc = tc_signer_soft_new(key, out);
    EVP_PKEY_free(key);
    return rc;
}

void tc_signer_soft_free(struct tc_signer *s)
{
    if (s == NULL)
        return;
    struct tc_soft_signer *ss = s->ctx;
    if (ss != NULL) {
        EVP_PKEY_free(ss->key); /* clears the private key */
        free(ss);
    }
    memset(s, 0, sizeof *s);
}

/* X9.62 Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } in strict DER:
 * it must parse, be consumed exactly and re-encode to the same bytes. */
static tc_err ecdsa_sig_well_formed(const uint8_t *sig, size_t sig_len)
{
    tc_err ret = TC_ERR_FORMAT;
    ECDSA_SIG *es = NULL;
    uint8_t *der = NULL;
    const uint8_t *p = sig;
    TC_ENSURE_MSG(sig_len > 0 && sig_len <= TC_SIG_MAX, TC_ERR_FORMAT,
                  "ECDSA signature length %zu is out of range", sig_len);
    es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
    TC_CHECK_MSG(es != NULL && p == sig + sig_len, TC_ERR_FORMAT,
                 "ECDSA signature is not one DER Ecdsa-Sig-Value");
    int n = i2d_ECDSA_SIG(es, &der);
    TC_CHECK_MSG(n > 0 && (size_t)n == sig_len && tc_ct_equal(der, sig, sig_len), TC_ERR_FORMAT,
                 "ECDSA signature is not in canonical DER");
    ret = TC_OK;
out:
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    if (ret != TC_OK)
        ERR_clear_error();
    return ret;
}

tc_err tc_sig_verify(enum tc_sig_alg alg, const uint8_t *spki, size_t spki_len, const uint8_t *msg,
                     size_t len, const uint8_t *sig, size_t sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *md = NULL;
    TC_ENSURE(alg_valid(alg), TC_ERR_ARG);
    TC_ENSURE(spki != NULL && sig != NULL && (msg != NULL || len == 0), TC_ERR_ARG);
    TC_ENSURE_MSG(spki_len > 0 && spki_len <= TC_SPKI_MAX, TC_ERR_FORMAT,
                  "SPKI length %zu is out of range", spki_len);

    /* RFC 5280 §4.1.2.7: one DER SubjectPublicKeyInfo, nothing after it. */
    const uint8_t *p = spki;
    key = d2i_PUBKEY(NULL, &p, (long)spki_len);
    if (key == NULL || p != spki + spki_len) {
        ERR_clear_error();
        ret = TC_FAIL(TC_ERR_FORMAT, "public key is not one DER SubjectPublicKeyInfo");
        goto out;
    }
    enum tc_sig_alg key_is;
    TC_CHECK_MSG(key_alg(key, &key_is) && key_is == alg, TC_ERR_VERIFY,
                 "public key does not belong to the signature algorithm");
    if (alg == TC_SIG_ED25519)
        TC_CHECK_MSG(sig_len == TC_ED25519_SIG_LEN, TC_ERR_FORMAT,
                     "Ed25519 signature must be 64 bytes (got %zu)", sig_len);
    else
        TC_TRY(ecdsa_sig_well_formed(sig, sig_len));

    md = EVP_MD_CTX_new();
    TC_CHECK_MSG(md != NULL, TC_ERR_NOMEM, "EVP_MD_CTX_new failed");
    TC_TRY_OSSL(EVP_DigestVerifyInit_ex(md, NULL, alg_digest(alg), NULL, NULL, key, NULL));
    static const uint8_t empty[1];
    int rc = EVP_DigestVerify(md, sig, sig_len, len > 0 ? msg : empty, len);
    if (rc != 1) {
        ERR_clear_error();
        ret = TC_FAIL(TC_ERR_VERIFY, "signature does not verify");
        goto out;
    }
    ret = TC_OK;
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    return ret;
}
