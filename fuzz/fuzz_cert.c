/*
 * libFuzzer target for the pki parsers and profile checker. The first byte
 * picks one:
 *   0: a certificate through tc_pki_kind_of and the root, batch and device
 *      profile checks; a device certificate that passes must carry an EID
 *      with valid check digits in its BCD form too
 *   1: the HardwareModuleName subjectAltName value
 *   2: the manufacturing info extension value (re-encodes identically)
 *   3: the batch info extension value
 *   4: PEM or DER input to tc_pki_der_from_pem
 *   5: 16 bytes as a BCD EID
 *   6: a DER signature for tc_pki_p256_verify over a fixed key and message;
 *      the verdict must equal OpenSSL's EVP_DigestVerify (which also demands
 *      strict DER and r, s in [1, n-1])
 *   7: a (32 bytes) and m (32 bytes, made odd) for tc_pki_inv_mod, checked
 *      against BN_mod_inverse
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <trustchain/pki.h>

#include "pki/pki_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A P-256 key made for this target (fuzz/corpus/cert/pop-sig signs kMsg
 * with it), as its SubjectPublicKeyInfo: RFC 5480 id-ecPublicKey +
 * prime256v1 + the uncompressed point. */
static const uint8_t kSpki[91] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x33, 0xa3, 0x1c, 0x91, 0xd8,
    0x0d, 0xde, 0x27, 0xb6, 0xb5, 0xa9, 0x40, 0x80, 0xc3, 0x70, 0x4d, 0xf8, 0x47, 0x79, 0x72, 0x8b,
    0x0b, 0x0d, 0x55, 0xe3, 0x90, 0x4c, 0xe7, 0x59, 0x58, 0x02, 0x58, 0x29, 0x74, 0x95, 0x9c, 0xe3,
    0x24, 0x98, 0x28, 0xfb, 0x4e, 0x34, 0x24, 0xef, 0x8b, 0xc6, 0x68, 0x24, 0xa0, 0xed, 0xb1, 0xa8,
    0x79, 0x65, 0xea, 0xfa, 0x73, 0x2f, 0xa3, 0x15, 0x72, 0x6b, 0xab};
static const char kMsg[] = "trustchain fuzz pop message";

static void pop_verify(const uint8_t *sig, size_t n)
{
    static EVP_PKEY *key;
    if (key == NULL) {
        const unsigned char *p = kSpki;
        key = d2i_PUBKEY(NULL, &p, (long)sizeof kSpki);
        if (key == NULL)
            abort();
    }
    bool ours =
        tc_pki_p256_verify(kSpki + 26, (const uint8_t *)kMsg, sizeof kMsg - 1, sig, n) == TC_OK;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1)
        abort();
    bool theirs = EVP_DigestVerify(md, sig, n, (const unsigned char *)kMsg, sizeof kMsg - 1) == 1;
    EVP_MD_CTX_free(md);
    if (ours != theirs)
        abort();
}

static void inv_mod(const uint8_t *in, size_t n)
{
    if (n != 64)
        return;
    uint8_t a[32], m[32], out[32], want[32];
    memcpy(a, in, 32);
    memcpy(m, in + 32, 32);
    m[31] |= 1u;
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *ba = BN_bin2bn(a, 32, NULL), *bm = BN_bin2bn(m, 32, NULL), *r = BN_new();
    if (ctx == NULL || ba == NULL || bm == NULL || r == NULL)
        abort();
    bool in_range = !BN_is_zero(ba) && BN_cmp(ba, bm) < 0;
    bool theirs = in_range && BN_mod_inverse(r, ba, bm, ctx) != NULL;
    bool ours = tc_pki_inv_mod(a, m, out) == TC_OK;
    if (ours != theirs || (ours && (BN_bn2binpad(r, want, 32) != 32 || memcmp(out, want, 32) != 0)))
        abort();
    BN_free(ba);
    BN_free(bm);
    BN_free(r);
    BN_CTX_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    switch (data[0] % 8) {
    case 0: {
        enum tc_pki_kind kind;
        struct tc_pki_batch_info bi;
        struct tc_pki_device_info di;
        if (n == 0 || tc_pki_kind_of(in, n, &kind) != TC_OK)
            break;
        (void)tc_pki_check_root(in, n);
        (void)tc_pki_check_batch(in, n, &bi);
        if (tc_pki_check_device(in, n, &di) == TC_OK) {
            uint8_t bcd[TC_PKI_EID_BCD_LEN];
            if (tc_pki_eid_check(di.eid) != TC_OK || tc_pki_eid_to_bcd(di.eid, bcd) != TC_OK ||
                di.serial_len == 0 || di.serial_len > TC_PKI_SERIAL_MAX)
                abort();
        }
        break;
    }
    case 1: {
        uint8_t bcd[TC_PKI_EID_BCD_LEN], again[128];
        if (tc_pki_parse_hmn(in, n, bcd) == TC_OK) {
            /* What parses re-encodes to the same bytes. */
            struct tc_buf b;
            tc_buf_init_fixed(&b, again, sizeof again);
            if (tc_pki_ext_hmn(bcd, &b) != TC_OK || b.len != n || memcmp(b.data, in, n) != 0)
                abort();
        }
        break;
    }
    case 2: {
        char bid[TC_PKI_ID_MAX + 1], sid[TC_PKI_ID_MAX + 1];
        int64_t t;
        if (tc_pki_parse_mfg(in, n, bid, sid, &t) == TC_OK) {
            uint8_t again[256];
            struct tc_buf b;
            tc_buf_init_fixed(&b, again, sizeof again);
            /* Times before 1970 parse but are never issued. */
            if (tc_pki_ext_mfg(bid, sid, t, &b) == TC_OK &&
                (b.len != n || memcmp(b.data, in, n) != 0))
                abort();
        }
        break;
    }
    case 3: {
        char bid[TC_PKI_ID_MAX + 1], pfx[TC_PKI_EID_DIGITS + 1];
        (void)tc_pki_parse_batch(in, n, bid, pfx);
        break;
    }
    case 4: {
        struct tc_buf b;
        tc_buf_init_heap(&b, 1u << 20);
        (void)tc_pki_der_from_pem(in, n, &b);
        tc_buf_free(&b);
        break;
    }
    case 5: {
        char eid[33];
        if (n == TC_PKI_EID_BCD_LEN && tc_pki_eid_from_bcd(in, eid) == TC_OK &&
            tc_pki_eid_check(eid) != TC_OK)
            abort();
        break;
    }
    case 6:
        pop_verify(in, n);
        break;
    case 7:
        inv_mod(in, n);
        break;
    default:
        break;
    }
    tc_error_clear();
    return 0;
}
