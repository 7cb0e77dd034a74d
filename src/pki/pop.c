/*
 * Proof of possession for device keys: the device signs EID (BCD) || its
 * uncompressed P-256 point || the host's nonce, ECDSA-SHA256 (docs/pki.md).
 */
#include <string.h>

#include <openssl/core_names.h>
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

/* The device key as a provider key built from its point (EVP_PKEY_fromdata
 * validates the point): OpenSSL 3.0's d2i_PUBKEY goes through the generic
 * decoder machinery and costs several ECDSA verifications, which would
 * dominate issuance. */
static tc_err p256_key(const uint8_t point[TC_PKI_P256_POINT], EVP_PKEY **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    static char group[] = "P-256";
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)point,
                                                  TC_PKI_P256_POINT);
    params[2] = OSSL_PARAM_construct_end();
    *out = NULL;
    TC_CHECK_MSG(pc != NULL, TC_ERR_CRYPTO, "EC key context");
    TC_TRY_OSSL(EVP_PKEY_fromdata_init(pc));
    if (EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1 || *out == NULL) {
        ret = tc_fail_ossl(__FILE__, __LINE__, "device public key (not a valid P-256 point)");
        goto out;
    }
    ret = TC_OK;
out:
    EVP_PKEY_CTX_free(pc);
    return ret;
}

/* X9.62 Ecdsa-Sig-Value in canonical DER, consumed exactly. */
static bool ecdsa_der_ok(const uint8_t *sig, size_t len)
{
    const uint8_t *p = sig;
    uint8_t *re = NULL;
    if (len == 0 || len > TC_SIG_MAX)
        return false;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    bool ok = es != NULL && p == sig + len;
    if (ok) {
        int n = i2d_ECDSA_SIG(es, &re);
        ok = n > 0 && (size_t)n == len && memcmp(re, sig, len) == 0;
    }
    OPENSSL_free(re);
    ECDSA_SIG_free(es);
    return ok;
}

tc_err tc_pki_pop_verify(const char *eid, const uint8_t *spki, size_t spki_len,
                         const uint8_t nonce[static TC_PKI_NONCE_LEN], const uint8_t *sig,
                         size_t sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t msg[TC_PKI_POP_MSG_LEN];
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *md = NULL;
    TC_CHECK(sig != NULL || sig_len == 0, TC_ERR_ARG);
    TC_TRY(tc_pki_pop_message(eid, spki, spki_len, nonce, msg));
    TC_TRY(p256_key(msg + TC_PKI_EID_BCD_LEN, &key));
    /* ECDSA-SHA256 (FIPS 186-4 §6.4) over the 97 bytes; DER signature. */
    TC_CHECK_MSG(ecdsa_der_ok(sig, sig_len), TC_ERR_VERIFY,
                 "proof of possession for EID %s is not a DER ECDSA signature", eid);
    md = EVP_MD_CTX_new();
    TC_CHECK_MSG(md != NULL, TC_ERR_NOMEM, "EVP_MD_CTX");
    const EVP_MD *sha256 = tc_pki_md(true);
    TC_CHECK_MSG(sha256 != NULL, TC_ERR_CRYPTO, "SHA-256 unavailable");
    TC_TRY_OSSL(EVP_DigestVerifyInit(md, NULL, sha256, NULL, key));
    TC_CHECK_MSG(EVP_DigestVerify(md, sig, sig_len, msg, sizeof msg) == 1, TC_ERR_VERIFY,
                 "proof of possession does not verify for EID %s", eid);
    ret = TC_OK;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    return ret;
}
