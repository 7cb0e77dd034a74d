/*
 * AES-CMAC (NIST SP 800-38B §6, RFC 4493 §2) computed as CBC-MAC with the
 * final-block subkeys on the thread's AES-CBC context.
 *
 * Why not EVP_MAC: OpenSSL's CMAC context keeps the key schedule and both
 * subkeys after EVP_MAC_final and offers no way to clear them short of a
 * second full key setup (which doubles the cost of a short MAC) or freeing
 * the context (an allocation per call). On the CBC context the subkeys live
 * on our stack and the key schedule is overwritten by one key expansion.
 * EVP_MAC's CMAC is the independent cross-check in the tests and the floor
 * in bench/bench_crypto.c.
 */
#include <string.h>

#include "crypto/internal.h"

/* Staging for message blocks, CBC-encrypted in place. */
#define TC_CMAC_STAGE 256u

/* SP 800-38B §6.1 step 2-3: K1 = L << 1, xor R128 (0x87) if msb(L) = 1;
 * K2 likewise from K1. */
static void cmac_dbl(uint8_t out[TC_AES_BLOCK], const uint8_t in[TC_AES_BLOCK])
{
    unsigned carry = (unsigned)in[0] >> 7;
    for (size_t i = 0; i < TC_AES_BLOCK - 1; i++)
        out[i] = (uint8_t)(((unsigned)in[i] << 1) | ((unsigned)in[i + 1] >> 7));
    /* Constant time: 0x87 masked by the carried-out bit. */
    out[TC_AES_BLOCK - 1] =
        (uint8_t)(((unsigned)in[TC_AES_BLOCK - 1] << 1) ^ (0x87u & (0u - carry)));
}

static void xor_block(uint8_t *dst, const uint8_t *src)
{
    for (size_t i = 0; i < TC_AES_BLOCK; i++)
        dst[i] ^= src[i];
}

tc_err tc_crypto_cmac_setup(struct tc_cmac *m, EVP_CIPHER_CTX *ctx, const uint8_t *key,
                            size_t key_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    static const uint8_t zero[TC_AES_BLOCK];
    uint8_t l[TC_AES_BLOCK];
    int outl = 0;
    /* The caller picked ctx by key_len (tc_crypto_key_index); checking it
     * again through EVP_CIPHER_CTX_get_key_length costs as much as the key
     * setup itself in OpenSSL 3.0. */
    (void)key_len;
    m->ctx = ctx;
    /* SP 800-38B §6.1 step 1: L = CIPH_K(0^128). Re-keying a CMAC context
     * resets its chaining value to its zero IV, so CBC on one zero block is
     * exactly that, and leaves L as the chaining value. */
    TC_TRY_OSSL(EVP_CipherInit_ex2(ctx, NULL, key, NULL, 1, NULL));
    /* EVP_Cipher is the one-call path (no buffering); it returns the bytes
     * written for a provider block cipher. */
    outl = EVP_Cipher(ctx, l, zero, TC_AES_BLOCK);
    TC_CHECK_MSG(outl == (int)TC_AES_BLOCK, TC_ERR_CRYPTO, "AES block encryption failed");
    cmac_dbl(m->k1, l);
    cmac_dbl(m->k2, m->k1);
    memcpy(m->chain, l, TC_AES_BLOCK);
    ret = TC_OK;
out:
    tc_memzero(l, sizeof l);
    return ret;
}

/* CBC-encrypt `len` staged bytes (a multiple of 16) in place. The context's
 * chaining value is m->chain, not zero, so the first block is pre-xored with
 * it to compute CBC-MAC from a zero IV without an IV reset. */
static tc_err cmac_blocks(struct tc_cmac *m, uint8_t *stage, size_t len, bool *first)
{
    if (*first) {
        xor_block(stage, m->chain);
        *first = false;
    }
    int outl = EVP_Cipher(m->ctx, stage, stage, (unsigned int)len);
    TC_ENSURE_MSG(outl >= 0 && (size_t)outl == len, TC_ERR_CRYPTO, "AES-CBC failed");
    return TC_OK;
}

tc_err tc_crypto_cmac_run(struct tc_cmac *m, const struct tc_iov *parts, size_t n,
                          uint8_t mac[static TC_CMAC_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    /* Body blocks staged up to TC_CMAC_STAGE bytes, plus room for the last
     * block so a short message is one CBC call. */
    uint8_t stage[TC_CMAC_STAGE + TC_AES_BLOCK];
    uint8_t last[TC_AES_BLOCK];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        TC_ENSURE_MSG(total + parts[i].len >= total, TC_ERR_ARG, "CMAC message length overflows");
        total += parts[i].len;
    }
    /* SP 800-38B §6.2 steps 2-4: every block but the last goes through
     * CBC-MAC as is; the last (M_n*) is completed with K1 or padded and
     * completed with K2. The empty message is one padded block. */
    const size_t last_off = total == 0 ? 0 : ((total - 1) / TC_AES_BLOCK) * TC_AES_BLOCK;
    const size_t last_len = total - last_off;
    size_t pos = 0, have = 0;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = parts[i].p;
        size_t len = parts[i].len;
        while (len > 0) {
            size_t take;
            if (pos < last_off) {
                if (have == TC_CMAC_STAGE) {
                    /* Full, and more body follows: run what is staged. */
                    TC_TRY(cmac_blocks(m, stage, have, &first));
                    have = 0;
                }
                size_t room = TC_CMAC_STAGE - have;
                size_t to_last = last_off - pos;
                take = len < room ? len : room;
                take = take < to_last ? take : to_last;
                memcpy(stage + have, p, take);
                have += take;
            } else {
                take = len;
                memcpy(last + (pos - last_off), p, take);
            }
            p += take;
            len -= take;
            pos += take;
        }
    }
    if (last_len == TC_AES_BLOCK) {
        xor_block(last, m->k1);
    } else {
        /* §6.2 step 3: M_n* || 10^j, then xor K2. */
        last[last_len] = 0x80;
        memset(last + last_len + 1, 0, TC_AES_BLOCK - last_len - 1);
        xor_block(last, m->k2);
    }
    memcpy(stage + have, last, TC_AES_BLOCK);
    have += TC_AES_BLOCK;
    TC_TRY(cmac_blocks(m, stage, have, &first));
    /* §6.2 steps 6-7: T = MSB_Tlen(C_n), all 16 bytes here. The CBC chaining
     * value is now T, which the next run on this setup pre-xors. */
    memcpy(mac, stage + have - TC_AES_BLOCK, TC_CMAC_LEN);
    memcpy(m->chain, stage + have - TC_AES_BLOCK, TC_AES_BLOCK);
    ret = TC_OK;
out:
    tc_memzero(stage, sizeof stage);
    tc_memzero(last, sizeof last);
    return ret;
}

void tc_crypto_cmac_end(struct tc_cmac *m)
{
    if (m->ctx != NULL)
        tc_crypto_scrub_cmac(m->ctx);
    tc_memzero(m, sizeof *m);
}

tc_err tc_aes_cmac_iov(const uint8_t *key, size_t key_len, const struct tc_iov *parts, size_t n,
                       uint8_t mac[static TC_CMAC_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_cmac m = {0};
    TC_ENSURE_MSG(key != NULL && tc_aes_key_len_ok(key_len), TC_ERR_ARG,
                  "AES key must be 16, 24 or 32 bytes (got %zu)", key_len);
    TC_ENSURE(mac != NULL && (parts != NULL || n == 0), TC_ERR_ARG);
    for (size_t i = 0; i < n; i++)
        TC_ENSURE_MSG(parts[i].p != NULL || parts[i].len == 0, TC_ERR_ARG,
                      "CMAC part %zu has a length but no data", i);

    struct tc_crypto_thread *t = NULL;
    TC_GUARD(tc_crypto_thread_get(&t));
    TC_TRY(tc_crypto_cmac_setup(&m, t->cmac[tc_crypto_key_index(key_len)], key, key_len));
    TC_TRY(tc_crypto_cmac_run(&m, parts, n, mac));
    ret = TC_OK;
out:
    tc_crypto_cmac_end(&m);
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
