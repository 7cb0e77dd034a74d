/*
 * The card's ECDSA P-256 and SHA-256, on OpenSSL 3. The private scalar lives
 * in the card's NVM; an EVP_PKEY is built from it for one operation and freed
 * (OpenSSL clears its private BIGNUM on free). OpenSSL allocates internally
 * here; the card OS code itself does not.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "se_internal.h"

/* The card's SHA-256 is the crypto module's (its per-thread digest context
 * is freed when the thread ends). */
tc_err se_sha256(const uint8_t *const *parts, const size_t *lens, size_t n, uint8_t out[static 32])
{
    struct tc_iov iov[SE_SHA256_MAX_PARTS];
    TC_ENSURE_MSG(n <= SE_SHA256_MAX_PARTS, TC_ERR_ARG, "SHA-256 over %zu parts", n);
    for (size_t i = 0; i < n; i++) {
        iov[i].p = parts[i];
        iov[i].len = lens[i];
    }
    return tc_sha256_iov(iov, n, out);
}

tc_err se_ec_generate(uint8_t priv[static 32], uint8_t pub[static TC_SE_EC_PUB_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_PKEY *key = NULL;
    BIGNUM *d = NULL;
    size_t pub_len = 0;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    TC_CHECK_MSG(key != NULL, TC_ERR_CRYPTO, "P-256 key generation failed");
    TC_TRY_OSSL(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d));
    TC_CHECK_MSG(BN_bn2binpad(d, priv, 32) == 32, TC_ERR_CRYPTO, "private key too long");
    TC_TRY_OSSL(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, TC_SE_EC_PUB_LEN,
                                                &pub_len));
    TC_CHECK_MSG(pub_len == TC_SE_EC_PUB_LEN && pub[0] == 0x04, TC_ERR_CRYPTO,
                 "public key is not an uncompressed P-256 point");
    ret = TC_OK;
out:
    BN_clear_free(d);
    EVP_PKEY_free(key);
    if (ret != TC_OK)
        tc_memzero(priv, 32);
    return ret;
}

static bool little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

tc_err se_ec_sign_digest(const uint8_t priv[static 32], const uint8_t pub[static TC_SE_EC_PUB_LEN],
                         const uint8_t digest[static 32], uint8_t *sig, size_t sig_size,
                         size_t *sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_PKEY_CTX *kctx = NULL, *sctx = NULL;
    EVP_PKEY *key = NULL;
    /* OSSL_PARAM_construct_BN takes the number in native byte order. */
    uint8_t d_native[32];
    for (size_t i = 0; i < 32; i++)
        d_native[i] = little_endian() ? priv[31 - i] : priv[i];
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, d_native, sizeof d_native),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)pub,
                                          TC_SE_EC_PUB_LEN),
        OSSL_PARAM_construct_end(),
    };
    kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    TC_CHECK_MSG(kctx != NULL, TC_ERR_CRYPTO, "EC is not available");
    TC_TRY_OSSL(EVP_PKEY_fromdata_init(kctx));
    TC_TRY_OSSL(EVP_PKEY_fromdata(kctx, &key, EVP_PKEY_KEYPAIR, params));
    sctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    TC_CHECK_MSG(sctx != NULL, TC_ERR_CRYPTO, "cannot create a signing context");
    TC_TRY_OSSL(EVP_PKEY_sign_init(sctx));
    size_t len = sig_size;
    TC_TRY_OSSL(EVP_PKEY_sign(sctx, sig, &len, digest, 32));
    *sig_len = len;
    ret = TC_OK;
out:
    tc_memzero(d_native, sizeof d_native);
    EVP_PKEY_CTX_free(sctx);
    EVP_PKEY_CTX_free(kctx);
    EVP_PKEY_free(key);
    return ret;
}
