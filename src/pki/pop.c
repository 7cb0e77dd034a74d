/*
 * Proof of possession for device keys: the device signs EID (BCD) || its
 * uncompressed P-256 point || the host's nonce, ECDSA-SHA256 (docs/pki.md).
 */
#include <string.h>

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

tc_err tc_pki_pop_verify(const char *eid, const uint8_t *spki, size_t spki_len,
                         const uint8_t nonce[static TC_PKI_NONCE_LEN], const uint8_t *sig,
                         size_t sig_len)
{
    uint8_t msg[TC_PKI_POP_MSG_LEN];
    TC_ENSURE(sig != NULL || sig_len == 0, TC_ERR_ARG);
    TC_GUARD(tc_pki_pop_message(eid, spki, spki_len, nonce, msg));
    tc_err rc =
        tc_sig_verify(TC_SIG_ECDSA_P256_SHA256, spki, spki_len, msg, sizeof msg, sig, sig_len);
    if (rc == TC_ERR_VERIFY || rc == TC_ERR_FORMAT)
        return TC_FAIL(TC_ERR_VERIFY, "proof of possession does not verify for EID %s", eid);
    return rc;
}
