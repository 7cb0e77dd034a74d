/*
 * NIST SP 800-108 key derivation in counter mode with AES-CMAC as the PRF,
 * and the GlobalPlatform SCP03 data derivation built on it.
 */
#include <string.h>

#include "crypto/internal.h"

tc_err tc_kbkdf_cmac_ctr(const uint8_t *key, size_t key_len, const uint8_t *fixed_before,
                         size_t before_len, size_t counter_len, const uint8_t *fixed_after,
                         size_t after_len, uint8_t *out, size_t out_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_cmac m = {0};
    uint8_t block[TC_CMAC_LEN];
    uint8_t counter[4];
    TC_ENSURE_MSG(key != NULL && tc_aes_key_len_ok(key_len), TC_ERR_ARG,
                  "AES key must be 16, 24 or 32 bytes (got %zu)", key_len);
    TC_ENSURE_MSG(counter_len >= 1 && counter_len <= 4, TC_ERR_ARG,
                  "KDF counter must be 1 to 4 bytes (got %zu)", counter_len);
    TC_ENSURE(fixed_before != NULL || before_len == 0, TC_ERR_ARG);
    TC_ENSURE(fixed_after != NULL || after_len == 0, TC_ERR_ARG);
    TC_ENSURE(out != NULL && out_len > 0, TC_ERR_ARG);
    /* SP 800-108 §5.1: n = ceil(L/h) must not exceed 2^r - 1. */
    uint64_t blocks = ((uint64_t)out_len + TC_CMAC_LEN - 1) / TC_CMAC_LEN;
    uint64_t max_blocks = (UINT64_C(1) << (8 * counter_len)) - 1;
    TC_ENSURE_MSG(blocks <= max_blocks, TC_ERR_ARG,
                  "KDF output of %zu bytes needs %llu blocks, a %zu-byte counter allows %llu",
                  out_len, (unsigned long long)blocks, counter_len, (unsigned long long)max_blocks);

    struct tc_crypto_thread *t = NULL;
    TC_GUARD(tc_crypto_thread_get(&t));
    /* One key setup for all blocks; each block is a fresh CMAC under it. */
    TC_TRY(tc_crypto_cmac_setup(&m, t->cmac[tc_crypto_key_index(key_len)], key, key_len));
    size_t done = 0;
    for (uint64_t i = 1; i <= blocks; i++) {
        /* SP 800-108 §5.1 step 4: K(i) = PRF(KI, [i]_2 || fixed input), here
         * with the counter between the two parts of the fixed input. */
        for (size_t b = 0; b < counter_len; b++)
            counter[b] = (uint8_t)(i >> (8 * (counter_len - 1 - b)));
        const struct tc_iov parts[3] = {
            {fixed_before, before_len}, {counter, counter_len}, {fixed_after, after_len}};
        TC_TRY(tc_crypto_cmac_run(&m, parts, 3, block));
        /* §5.1 step 5: the leftmost L bits of K(1) || ... || K(n). */
        size_t take = out_len - done < TC_CMAC_LEN ? out_len - done : TC_CMAC_LEN;
        memcpy(out + done, block, take);
        done += take;
    }
    ret = TC_OK;
out:
    tc_crypto_cmac_end(&m);
    tc_memzero(block, sizeof block);
    if (ret != TC_OK)
        tc_memzero(out, out_len);
    return ret;
}

/* GP Amendment D §6.2.2: the 12-byte label, the separator, L and the counter
 * precede the context; 11 + 1 + 1 + 2 bytes come before the counter. */
#define TC_SCP03_KDF_BEFORE 15u
/* One counter byte: at most 255 blocks of 16 bytes. */
#define TC_SCP03_KDF_MAX_OUT (255u * TC_CMAC_LEN)

tc_err tc_scp03_kdf(const uint8_t *key, size_t key_len, uint8_t constant, const uint8_t *context,
                    size_t context_len, uint8_t *out, size_t out_len)
{
    TC_ENSURE_MSG(out != NULL && out_len > 0 && out_len <= TC_SCP03_KDF_MAX_OUT, TC_ERR_ARG,
                  "SCP03 KDF output must be 1 to %u bytes (got %zu)", TC_SCP03_KDF_MAX_OUT,
                  out_len);
    TC_ENSURE(context != NULL || context_len == 0, TC_ERR_ARG);
    /* GP Amendment D §6.2.2 (NIST SP 800-108 counter mode, CMAC PRF):
     *   label     = 11 bytes of 0x00 || derivation constant (1 byte)
     *   separator = 0x00
     *   L         = output length in bits, 2 bytes big-endian
     *   i         = counter, 1 byte, from 0x01
     *   context   = caller's context (e.g. host challenge || card challenge) */
    const size_t bits = out_len * 8u;
    const uint8_t before[TC_SCP03_KDF_BEFORE] = {
        [11] = constant,
        [12] = 0x00,
        [13] = (uint8_t)(bits >> 8),
        [14] = (uint8_t)bits,
    };
    return tc_kbkdf_cmac_ctr(key, key_len, before, sizeof before, 1, context, context_len, out,
                             out_len);
}
