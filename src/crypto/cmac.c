/*
 * AES-CMAC (NIST SP 800-38B §6.2, RFC 4493 §2.4) on the thread's EVP_MAC
 * context for the key's length.
 */
#include <string.h>

#include "crypto/internal.h"

tc_err tc_aes_cmac_iov(const uint8_t *key, size_t key_len, const struct tc_iov *parts, size_t n,
                       uint8_t mac[static TC_CMAC_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_MAC_CTX *ctx = NULL;
    TC_ENSURE_MSG(key != NULL && tc_aes_key_len_ok(key_len), TC_ERR_ARG,
                  "AES key must be 16, 24 or 32 bytes (got %zu)", key_len);
    TC_ENSURE(mac != NULL && (parts != NULL || n == 0), TC_ERR_ARG);
    for (size_t i = 0; i < n; i++)
        TC_ENSURE_MSG(parts[i].p != NULL || parts[i].len == 0, TC_ERR_ARG,
                      "CMAC part %zu has a length but no data", i);

    struct tc_crypto_thread *t = NULL;
    TC_GUARD(tc_crypto_thread_get(&t));
    ctx = t->cmac[tc_crypto_key_index(key_len)];
    TC_TRY_OSSL(EVP_MAC_init(ctx, key, key_len, NULL));
    for (size_t i = 0; i < n; i++)
        if (parts[i].len > 0)
            TC_TRY_OSSL(EVP_MAC_update(ctx, parts[i].p, parts[i].len));
    size_t outl = 0;
    TC_TRY_OSSL(EVP_MAC_final(ctx, mac, &outl, TC_CMAC_LEN));
    TC_CHECK(outl == TC_CMAC_LEN, TC_ERR_INTERNAL);
    ret = TC_OK;
out:
    if (ctx != NULL)
        tc_crypto_scrub_cmac(ctx, key_len);
    if (ret != TC_OK)
        tc_memzero(mac, TC_CMAC_LEN);
    return ret;
}

tc_err tc_aes_cmac(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                   uint8_t mac[static TC_CMAC_LEN])
{
    const struct tc_iov part = {msg, msg_len};
    return tc_aes_cmac_iov(key, key_len, &part, 1, mac);
}
