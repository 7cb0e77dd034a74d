/*
 * AES-ECB and AES-CBC without padding (NIST SP 800-38A §6.1, §6.2) and the
 * GlobalPlatform key check value.
 */
#include <limits.h>
#include <string.h>

#include "crypto/internal.h"

/* Largest piece handed to one EVP_CipherUpdate call (its length is an int). */
#define TC_AES_CHUNK ((size_t)1 << 30)

static tc_err aes_run(enum tc_aes_mode mode, int enc, const uint8_t *key, size_t key_len,
                      const uint8_t *iv, const uint8_t *in, size_t len, uint8_t *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_CIPHER_CTX *ctx = NULL;
    TC_ENSURE_MSG(key != NULL && tc_aes_key_len_ok(key_len), TC_ERR_ARG,
                  "AES key must be 16, 24 or 32 bytes (got %zu)", key_len);
    TC_ENSURE_MSG(len % TC_AES_BLOCK == 0, TC_ERR_ARG,
                  "AES-%s without padding needs a multiple of 16 bytes (got %zu)",
                  mode == TC_AES_CBC ? "CBC" : "ECB", len);
    TC_ENSURE((in != NULL && out != NULL) || len == 0, TC_ERR_ARG);
    TC_ENSURE(mode != TC_AES_CBC || iv != NULL, TC_ERR_ARG);
    if (len == 0)
        return TC_OK;

    struct tc_crypto_thread *t = NULL;
    TC_GUARD(tc_crypto_thread_get(&t));
    ctx = t->cipher[mode][tc_crypto_key_index(key_len)];
    TC_TRY_OSSL(EVP_CipherInit_ex2(ctx, NULL, key, iv, enc, NULL));
    for (size_t done = 0; done < len;) {
        size_t n = len - done < TC_AES_CHUNK ? len - done : TC_AES_CHUNK;
        int outl = 0;
        TC_TRY_OSSL(EVP_CipherUpdate(ctx, out + done, &outl, in + done, (int)n));
        TC_CHECK((size_t)outl == n, TC_ERR_INTERNAL);
        done += n;
    }
    ret = TC_OK;
out:
    if (ctx != NULL)
        tc_crypto_scrub_cipher(ctx);
    /* A failed call leaves no partial result, in place or not. */
    if (ret != TC_OK)
        tc_memzero(out, len);
    return ret;
}

tc_err tc_aes_cbc_encrypt(const uint8_t *key, size_t key_len, const uint8_t iv[static TC_AES_BLOCK],
                          const uint8_t *in, size_t len, uint8_t *out)
{
    return aes_run(TC_AES_CBC, 1, key, key_len, iv, in, len, out);
}

tc_err tc_aes_cbc_decrypt(const uint8_t *key, size_t key_len, const uint8_t iv[static TC_AES_BLOCK],
                          const uint8_t *in, size_t len, uint8_t *out)
{
    return aes_run(TC_AES_CBC, 0, key, key_len, iv, in, len, out);
}

tc_err tc_aes_ecb_encrypt(const uint8_t *key, size_t key_len, const uint8_t *in, size_t len,
                          uint8_t *out)
{
    return aes_run(TC_AES_ECB, 1, key, key_len, NULL, in, len, out);
}

tc_err tc_aes_ecb_decrypt(const uint8_t *key, size_t key_len, const uint8_t *in, size_t len,
                          uint8_t *out)
{
    return aes_run(TC_AES_ECB, 0, key, key_len, NULL, in, len, out);
}

tc_err tc_kcv_aes(const uint8_t *key, size_t key_len, uint8_t kcv[static TC_KCV_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    /* GP Card Specification 2.3 §B.6 / Amendment D §4.3 (AES keys): the check
     * value is the leftmost 3 bytes of the key encrypting a block of 16 bytes
     * of 0x01 in ECB mode. */
    uint8_t block[TC_AES_BLOCK];
    memset(block, 0x01, sizeof block);
    TC_ENSURE(kcv != NULL, TC_ERR_ARG);
    TC_TRY(tc_aes_ecb_encrypt(key, key_len, block, sizeof block, block));
    memcpy(kcv, block, TC_KCV_LEN);
    ret = TC_OK;
out:
    tc_memzero(block, sizeof block);
    return ret;
}
