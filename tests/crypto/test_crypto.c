/* Tests of the crypto module against published vectors kept as data files. */
#include "harness.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include <trustchain/crypto.h>

#include "crypto/internal.h"

static const uint8_t k16[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};

/* ------------------------------------------------------------------ CMAC */

static void test_cmac_vectors(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/cmac.txt"))
        return;
    size_t n = 0;
    size_t per_len[3] = {0};
    while (tc_vec_next(&v)) {
        size_t klen = 0, mlen = 0, tlen = 0;
        uint8_t *key = tc_vec_hex(&v, "KEY", &klen);
        uint8_t *msg = tc_vec_hex(&v, "MSG", &mlen);
        uint8_t *mac = tc_vec_hex(&v, "MAC", &tlen);
        uint64_t declared = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "MLEN"), 1024, &declared));
        EXPECT_EQ_U(mlen, declared);
        if (key && msg && mac) {
            uint8_t got[TC_CMAC_LEN];
            EXPECT_OK(tc_aes_cmac(key, klen, msg, mlen, got));
            EXPECT_MEM(got, sizeof got, mac, tlen);
            /* The same message split at every position gives the same MAC. */
            for (size_t cut = 0; cut <= mlen; cut++) {
                const struct tc_iov parts[3] = {{msg, cut}, {NULL, 0}, {msg + cut, mlen - cut}};
                uint8_t got2[TC_CMAC_LEN];
                EXPECT_OK(tc_aes_cmac_iov(key, klen, parts, 3, got2));
                EXPECT_MEM(got2, sizeof got2, mac, tlen);
            }
            if (tc_aes_key_len_ok(klen))
                per_len[(klen - 16) / 8]++;
            n++;
        }
        free(key);
        free(msg);
        free(mac);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 12);
    EXPECT_EQ_U(per_len[0], 4);
    EXPECT_EQ_U(per_len[1], 4);
    EXPECT_EQ_U(per_len[2], 4);
}

static void test_cmac_rejects(void)
{
    uint8_t mac[TC_CMAC_LEN];
    uint8_t key[33] = {0};
    const uint8_t msg[4] = {1, 2, 3, 4};
    const size_t bad_lens[] = {0, 8, 15, 17, 23, 25, 31, 33};
    for (size_t i = 0; i < TC_ARRAY_LEN(bad_lens); i++)
        EXPECT_ERR(tc_aes_cmac(key, bad_lens[i], msg, sizeof msg, mac), TC_ERR_ARG);
    EXPECT_ERR(tc_aes_cmac(NULL, 16, msg, sizeof msg, mac), TC_ERR_ARG);
    EXPECT_ERR(tc_aes_cmac(key, 16, NULL, 4, mac), TC_ERR_ARG);
    EXPECT_ERR(tc_aes_cmac_iov(key, 16, NULL, 1, mac), TC_ERR_ARG);
    const struct tc_iov bad_part[2] = {{msg, 4}, {NULL, 3}};
    EXPECT_ERR(tc_aes_cmac_iov(key, 16, bad_part, 2, mac), TC_ERR_ARG);
    /* NULL with zero length is the empty message. */
    uint8_t a[TC_CMAC_LEN], b[TC_CMAC_LEN];
    EXPECT_OK(tc_aes_cmac(k16, 16, NULL, 0, a));
    EXPECT_OK(tc_aes_cmac_iov(k16, 16, NULL, 0, b));
    EXPECT_MEM(a, sizeof a, b, sizeof b);
}

/* Key lengths interleaved on one thread must not disturb each other's
 * reused contexts. */
static void test_cmac_interleaved_keys(void)
{
    const uint8_t msg[16] = {0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96,
                             0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a};
    uint8_t key32[32], first[3][TC_CMAC_LEN], again[TC_CMAC_LEN];
    for (size_t i = 0; i < sizeof key32; i++)
        key32[i] = (uint8_t)(i * 7 + 1);
    for (size_t k = 0; k < 3; k++)
        EXPECT_OK(tc_aes_cmac(key32, 16 + 8 * k, msg, sizeof msg, first[k]));
    EXPECT(memcmp(first[0], first[1], TC_CMAC_LEN) != 0);
    EXPECT(memcmp(first[1], first[2], TC_CMAC_LEN) != 0);
    for (size_t round = 0; round < 3; round++)
        for (size_t k = 3; k-- > 0;) {
            EXPECT_OK(tc_aes_cmac(key32, 16 + 8 * k, msg, sizeof msg, again));
            EXPECT_MEM(again, sizeof again, first[k], TC_CMAC_LEN);
        }
}

/* ------------------------------------------------------------------ AES */

static void test_aes_vectors(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/aes.txt"))
        return;
    size_t n = 0;
    while (tc_vec_next(&v)) {
        const char *mode = tc_vec_get(&v, "MODE");
        bool cbc = mode != NULL && strcmp(mode, "CBC") == 0;
        size_t klen = 0, plen = 0, clen = 0, ivlen = 0;
        uint8_t *key = tc_vec_hex(&v, "KEY", &klen);
        uint8_t *pt = tc_vec_hex(&v, "PLAINTEXT", &plen);
        uint8_t *ct = tc_vec_hex(&v, "CIPHERTEXT", &clen);
        uint8_t *iv = cbc ? tc_vec_hex(&v, "IV", &ivlen) : NULL;
        if (key && pt && ct && (!cbc || (iv && ivlen == 16)) && plen == clen && plen == 64) {
            uint8_t buf[64];
            /* Separate output, then in place, both directions. */
            if (cbc)
                EXPECT_OK(tc_aes_cbc_encrypt(key, klen, iv, pt, plen, buf));
            else
                EXPECT_OK(tc_aes_ecb_encrypt(key, klen, pt, plen, buf));
            EXPECT_MEM(buf, plen, ct, clen);
            if (cbc)
                EXPECT_OK(tc_aes_cbc_decrypt(key, klen, iv, buf, plen, buf));
            else
                EXPECT_OK(tc_aes_ecb_decrypt(key, klen, buf, plen, buf));
            EXPECT_MEM(buf, plen, pt, plen);
            memcpy(buf, pt, plen);
            if (cbc)
                EXPECT_OK(tc_aes_cbc_encrypt(key, klen, iv, buf, plen, buf));
            else
                EXPECT_OK(tc_aes_ecb_encrypt(key, klen, buf, plen, buf));
            EXPECT_MEM(buf, plen, ct, clen);
            uint8_t back[64];
            if (cbc)
                EXPECT_OK(tc_aes_cbc_decrypt(key, klen, iv, ct, clen, back));
            else
                EXPECT_OK(tc_aes_ecb_decrypt(key, klen, ct, clen, back));
            EXPECT_MEM(back, clen, pt, plen);
            /* Block-by-block with chaining carried by the caller (CBC) gives
             * the same ciphertext: no state leaks between calls. */
            uint8_t chain[16];
            if (cbc)
                memcpy(chain, iv, 16);
            for (size_t off = 0; off < plen; off += 16) {
                if (cbc) {
                    EXPECT_OK(tc_aes_cbc_encrypt(key, klen, chain, pt + off, 16, buf + off));
                    memcpy(chain, buf + off, 16);
                } else {
                    EXPECT_OK(tc_aes_ecb_encrypt(key, klen, pt + off, 16, buf + off));
                }
            }
            EXPECT_MEM(buf, plen, ct, clen);
            n++;
        } else {
            tc_test_fail_at(v.path, v.record_line, "incomplete AES record");
        }
        free(key);
        free(pt);
        free(ct);
        free(iv);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 6);
}

static void test_aes_rejects(void)
{
    uint8_t key[32] = {0}, iv[16] = {0}, buf[48] = {0};
    EXPECT_ERR(tc_aes_ecb_encrypt(key, 20, buf, 16, buf), TC_ERR_ARG);
    EXPECT_ERR(tc_aes_ecb_decrypt(key, 0, buf, 16, buf), TC_ERR_ARG);
    EXPECT_ERR(tc_aes_cbc_encrypt(key, 31, iv, buf, 16, buf), TC_ERR_ARG);
    EXPECT_ERR(tc_aes_cbc_decrypt(NULL, 16, iv, buf, 16, buf), TC_ERR_ARG);
    const size_t bad[] = {1, 15, 17, 33, 47};
    for (size_t i = 0; i < TC_ARRAY_LEN(bad); i++) {
        EXPECT_ERR(tc_aes_ecb_encrypt(key, 16, buf, bad[i], buf), TC_ERR_ARG);
        EXPECT_ERR(tc_aes_ecb_decrypt(key, 24, buf, bad[i], buf), TC_ERR_ARG);
        EXPECT_ERR(tc_aes_cbc_encrypt(key, 32, iv, buf, bad[i], buf), TC_ERR_ARG);
        EXPECT_ERR(tc_aes_cbc_decrypt(key, 16, iv, buf, bad[i], buf), TC_ERR_ARG);
    }
    EXPECT_ERR(tc_aes_ecb_encrypt(key, 16, NULL, 16, buf), TC_ERR_ARG);
    EXPECT_ERR(tc_aes_ecb_encrypt(key, 16, buf, 16, NULL), TC_ERR_ARG);
    /* Zero length is a no-op. */
    EXPECT_OK(tc_aes_cbc_encrypt(key, 16, iv, buf, 0, buf));
}

/* ------------------------------------------------------------------ KBKDF */

static void test_kbkdf_vectors(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/kbkdf.txt"))
        return;
    size_t n = 0, middle = 0, before = 0;
    while (tc_vec_next(&v)) {
        const char *prf = tc_vec_get(&v, "PRF");
        const char *loc = tc_vec_get(&v, "CTRLOCATION");
        const char *rlen = tc_vec_get(&v, "RLEN");
        uint64_t lbits = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "L"), 1u << 16, &lbits));
        size_t expect_klen = 0;
        if (prf && strcmp(prf, "CMAC_AES128") == 0)
            expect_klen = 16;
        else if (prf && strcmp(prf, "CMAC_AES192") == 0)
            expect_klen = 24;
        else if (prf && strcmp(prf, "CMAC_AES256") == 0)
            expect_klen = 32;
        size_t ctr = 0;
        if (rlen && strcmp(rlen, "8_BITS") == 0)
            ctr = 1;
        else if (rlen && strcmp(rlen, "16_BITS") == 0)
            ctr = 2;
        else if (rlen && strcmp(rlen, "24_BITS") == 0)
            ctr = 3;
        else if (rlen && strcmp(rlen, "32_BITS") == 0)
            ctr = 4;
        bool is_middle = loc && strcmp(loc, "MIDDLE_FIXED") == 0;
        bool is_before = loc && strcmp(loc, "BEFORE_FIXED") == 0;
        EXPECT(expect_klen != 0 && ctr != 0 && (is_middle || is_before) && lbits % 8 == 0);
        size_t klen = 0, blen = 0, alen = 0, olen = 0;
        uint8_t *ki = tc_vec_hex(&v, "KI", &klen);
        uint8_t *ko = tc_vec_hex(&v, "KO", &olen);
        uint8_t *bd = NULL, *ad = NULL;
        if (is_middle) {
            bd = tc_vec_hex(&v, "DataBeforeCtrData", &blen);
            ad = tc_vec_hex(&v, "DataAfterCtrData", &alen);
        } else {
            ad = tc_vec_hex(&v, "FixedInputData", &alen);
        }
        EXPECT_EQ_U(klen, expect_klen);
        EXPECT_EQ_U(olen * 8, lbits);
        if (ki && ko && ad && (bd || !is_middle) && ctr != 0) {
            uint8_t *got = malloc(olen);
            EXPECT_OK(tc_kbkdf_cmac_ctr(ki, klen, bd, blen, ctr, ad, alen, got, olen));
            EXPECT_MEM(got, olen, ko, olen);
            free(got);
            n++;
            if (is_middle)
                middle++;
            else
                before++;
        }
        free(ki);
        free(ko);
        free(bd);
        free(ad);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 31);
    EXPECT_EQ_U(middle, 24);
    EXPECT_EQ_U(before, 7);
}

static void test_kbkdf_rejects(void)
{
    uint8_t key[16] = {0}, out[64];
    const uint8_t fixed[4] = {1, 2, 3, 4};
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 0, NULL, 0, out, 16), TC_ERR_ARG);
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 5, NULL, 0, out, 16), TC_ERR_ARG);
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 12, fixed, 4, 1, NULL, 0, out, 16), TC_ERR_ARG);
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 16, NULL, 4, 1, NULL, 0, out, 16), TC_ERR_ARG);
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 1, NULL, 2, out, 16), TC_ERR_ARG);
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 1, NULL, 0, out, 0), TC_ERR_ARG);
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 1, NULL, 0, NULL, 16), TC_ERR_ARG);
    /* An 8-bit counter allows 255 blocks: 4080 bytes, not 4081. */
    uint8_t *big = malloc(4081);
    EXPECT_OK(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 1, NULL, 0, big, 4080));
    EXPECT_ERR(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 1, NULL, 0, big, 4081), TC_ERR_ARG);
    EXPECT_OK(tc_kbkdf_cmac_ctr(key, 16, fixed, 4, 2, NULL, 0, big, 4081));
    free(big);
}

/* ------------------------------------------------------------------ padding */

static void test_pad_vectors(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/pad.txt"))
        return;
    size_t good = 0, bad = 0;
    while (tc_vec_next(&v)) {
        if (tc_vec_get(&v, "BAD") != NULL) {
            size_t blen = 0, out_len = 12345;
            uint8_t *b = tc_vec_hex(&v, "BAD", &blen);
            if (b) {
                tc_err rc = tc_unpad_m2(b, blen, &out_len);
                if (rc != TC_ERR_FORMAT)
                    tc_test_fail_at(v.path, v.record_line, "'%s' not rejected: %s",
                                    tc_vec_get(&v, "REASON"), tc_err_name(rc));
                EXPECT_EQ_U(out_len, 12345);
                bad++;
            }
            free(b);
            continue;
        }
        size_t ilen = 0, olen = 0;
        uint8_t *in = tc_vec_hex(&v, "IN", &ilen);
        uint8_t *exp = tc_vec_hex(&v, "OUT", &olen);
        if (in && exp) {
            uint8_t buf[64];
            memset(buf, 0xEE, sizeof buf);
            memcpy(buf, in, ilen);
            size_t plen = 0;
            EXPECT_OK(tc_pad_m2(buf, ilen, sizeof buf, &plen));
            EXPECT_MEM(buf, plen, exp, olen);
            /* Exactly enough room succeeds; one byte less is a space error. */
            memcpy(buf, in, ilen);
            EXPECT_OK(tc_pad_m2(buf, ilen, olen, &plen));
            EXPECT_ERR(tc_pad_m2(buf, ilen, olen - 1, &plen),
                       ilen <= olen - 1 ? TC_ERR_SPACE : TC_ERR_ARG);
            size_t ulen = 0;
            EXPECT_OK(tc_unpad_m2(exp, olen, &ulen));
            EXPECT_EQ_U(ulen, ilen);
            good++;
        }
        free(in);
        free(exp);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(good, 5);
    EXPECT_EQ_U(bad, 9);
}

static void test_pad_rejects(void)
{
    uint8_t buf[32] = {0};
    size_t n = 0;
    EXPECT_ERR(tc_pad_m2(buf, 17, 16, &n), TC_ERR_ARG);
    EXPECT_ERR(tc_pad_m2(NULL, 0, 16, &n), TC_ERR_ARG);
    EXPECT_ERR(tc_pad_m2(buf, 16, 16, &n), TC_ERR_SPACE);
    EXPECT_ERR(tc_pad_m2(buf, 0, 0, &n), TC_ERR_SPACE);
    EXPECT_ERR(tc_unpad_m2(buf, 16, NULL), TC_ERR_ARG);
}

/* ------------------------------------------------------------------ misc */

static void test_random(void)
{
    uint8_t a[64] = {0}, b[64] = {0}, zero[64] = {0};
    EXPECT_OK(tc_random(a, sizeof a));
    EXPECT_OK(tc_random_secret(b, sizeof b));
    EXPECT(memcmp(a, zero, sizeof a) != 0);
    EXPECT(memcmp(b, zero, sizeof b) != 0);
    EXPECT(memcmp(a, b, sizeof a) != 0);
    EXPECT_OK(tc_random(NULL, 0));
    EXPECT_ERR(tc_random(NULL, 4), TC_ERR_ARG);
    EXPECT_ERR(tc_random_secret(NULL, 4), TC_ERR_ARG);
}

static void test_key_len_ok(void)
{
    for (size_t n = 0; n < 64; n++)
        EXPECT(tc_aes_key_len_ok(n) == (n == 16 || n == 24 || n == 32));
}

/* Contexts are per thread: threads computing at once agree with the main
 * thread, and each thread frees its contexts at exit. */
static void *thread_body(void *arg)
{
    uint8_t *mac = arg;
    const uint8_t msg[3] = {'a', 'b', 'c'};
    for (int i = 0; i < 200; i++)
        if (tc_aes_cmac(k16, sizeof k16, msg, sizeof msg, mac) != TC_OK)
            memset(mac, 0, TC_CMAC_LEN);
    return NULL;
}

static void test_threads(void)
{
    const uint8_t msg[3] = {'a', 'b', 'c'};
    uint8_t expect[TC_CMAC_LEN];
    EXPECT_OK(tc_aes_cmac(k16, sizeof k16, msg, sizeof msg, expect));
    pthread_t th[4];
    uint8_t got[4][TC_CMAC_LEN];
    for (size_t i = 0; i < 4; i++)
        EXPECT(pthread_create(&th[i], NULL, thread_body, got[i]) == 0);
    for (size_t i = 0; i < 4; i++) {
        EXPECT(pthread_join(th[i], NULL) == 0);
        EXPECT_MEM(got[i], TC_CMAC_LEN, expect, sizeof expect);
    }
    /* Explicit cleanup, then use again: contexts are recreated. */
    tc_crypto_thread_cleanup();
    uint8_t again[TC_CMAC_LEN];
    EXPECT_OK(tc_aes_cmac(k16, sizeof k16, msg, sizeof msg, again));
    EXPECT_MEM(again, sizeof again, expect, sizeof expect);
}

/* ------------------------------------------------------------- cross-checks */

/* Deterministic filler so failures reproduce. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* The module's CMAC equals OpenSSL's EVP_MAC CMAC for every length from 0
 * to 300 bytes, each key size, whole and split into three parts. */
static void test_cmac_matches_evp_mac(void)
{
    static const char *const ciphers[3] = {"AES-128-CBC", "AES-192-CBC", "AES-256-CBC"};
    uint8_t key[32], msg[300], a[TC_CMAC_LEN], b[TC_CMAC_LEN];
    size_t mismatches = 0, checked = 0;
    for (size_t k = 0; k < 3; k++) {
        size_t klen = 16 + 8 * k;
        for (size_t len = 0; len <= sizeof msg; len++) {
            fill(key, klen, (uint32_t)(len * 3 + k));
            fill(msg, len, (uint32_t)(len + 1000 * k));
            size_t outl = 0;
            if (EVP_Q_mac(NULL, "CMAC", NULL, ciphers[k], NULL, key, klen, msg, len, b, sizeof b,
                          &outl) == NULL ||
                outl != TC_CMAC_LEN) {
                tc_test_fail_at(__FILE__, __LINE__, "EVP_Q_mac failed");
                return;
            }
            EXPECT_OK(tc_aes_cmac(key, klen, msg, len, a));
            mismatches += memcmp(a, b, sizeof a) != 0;
            size_t c1 = len / 3, c2 = len - len / 5;
            const struct tc_iov parts[3] = {{msg, c1}, {msg + c1, c2 - c1}, {msg + c2, len - c2}};
            EXPECT_OK(tc_aes_cmac_iov(key, klen, parts, 3, a));
            mismatches += memcmp(a, b, sizeof a) != 0;
            checked++;
        }
    }
    EXPECT_EQ_U(mismatches, 0);
    EXPECT_EQ_U(checked, 3 * 301);
}

/* After a call, the thread's contexts hold the all-zero key and (CBC/CMAC)
 * a zero chaining value: encrypting a zero block on them gives AES(0^k, 0). */
static void test_contexts_scrubbed(void)
{
    static const uint8_t zero[32];
    uint8_t key[32], buf[64], mac[TC_CMAC_LEN], iv[16];
    fill(key, sizeof key, 7);
    fill(iv, sizeof iv, 8);
    fill(buf, sizeof buf, 9);
    struct tc_crypto_thread *t = NULL;
    for (size_t k = 0; k < 3; k++) {
        size_t klen = 16 + 8 * k;
        uint8_t expect[16], got[16];
        EXPECT_OK(tc_aes_ecb_encrypt(zero, klen, zero, 16, expect));

        EXPECT_OK(tc_aes_cmac(key, klen, buf, sizeof buf, mac));
        EXPECT_OK(tc_kbkdf_cmac_ctr(key, klen, buf, 8, 1, buf, 8, buf + 32, 32));
        EXPECT_OK(tc_crypto_thread_get(&t));
        EXPECT(EVP_Cipher(t->cmac[k], got, zero, 16) == 16);
        EXPECT_MEM(got, 16, expect, 16);
        tc_crypto_scrub_cmac(t->cmac[k]);

        EXPECT_OK(tc_aes_cbc_encrypt(key, klen, iv, buf, sizeof buf, buf));
        EXPECT_OK(tc_aes_cbc_decrypt(key, klen, iv, buf, sizeof buf, buf));
        EXPECT(EVP_Cipher(t->cipher[TC_AES_CBC][k], got, zero, 16) == 16);
        EXPECT_MEM(got, 16, expect, 16);
        tc_crypto_scrub_cipher(t->cipher[TC_AES_CBC][k]);

        EXPECT_OK(tc_aes_ecb_decrypt(key, klen, buf, 16, buf));
        EXPECT(EVP_Cipher(t->cipher[TC_AES_ECB][k], got, zero, 16) == 16);
        EXPECT_MEM(got, 16, expect, 16);
    }
}

/* ------------------------------------------------------------- SCP03 KDF */

static void test_scp03_kdf_traces(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/scp03_kdf.txt"))
        return;
    size_t n = 0, per_len[3] = {0};
    while (tc_vec_next(&v)) {
        size_t klen = 0, iulen = 0, rlen = 0, ealen = 0;
        uint8_t *kmac = tc_vec_hex(&v, "K_MAC", &klen);
        uint8_t *iu = tc_vec_hex(&v, "INIT_UPDATE_CMD", &iulen);
        uint8_t *rsp = tc_vec_hex(&v, "INIT_UPDATE_RSP", &rlen);
        uint8_t *ea = tc_vec_hex(&v, "EXT_AUTH_CMD", &ealen);
        /* INITIALIZE UPDATE: 80 50 KVN 00 08 host-challenge(8) Le. Response:
         * key div data(10) KVN(1) SCP(1) i(1) card challenge(8) card
         * cryptogram(8) sequence counter(3). EXTERNAL AUTHENTICATE: 84 82
         * level 00 10 host cryptogram(8) C-MAC(8). */
        if (kmac && iu && rsp && ea && iulen == 14 && rlen == 32 && ealen == 21 &&
            tc_aes_key_len_ok(klen) && rsp[11] == 0x03) {
            uint8_t ctx[16], smac[32], cc[8], hc[8], cmac[TC_CMAC_LEN];
            memcpy(ctx, iu + 5, 8);
            memcpy(ctx + 8, rsp + 13, 8);
            EXPECT_OK(tc_scp03_kdf(kmac, klen, TC_SCP03_DC_S_MAC, ctx, 16, smac, klen));
            EXPECT_OK(tc_scp03_kdf(smac, klen, TC_SCP03_DC_CARD_CRYPTOGRAM, ctx, 16, cc, 8));
            EXPECT_MEM(cc, 8, rsp + 21, 8);
            EXPECT_OK(tc_scp03_kdf(smac, klen, TC_SCP03_DC_HOST_CRYPTOGRAM, ctx, 16, hc, 8));
            EXPECT_MEM(hc, 8, ea + 5, 8);
            /* GP Amendment D §6.2.4: C-MAC over the MAC chaining value (zero
             * for the first command) and the command with its Lc. */
            static const uint8_t chain0[16];
            const struct tc_iov parts[2] = {{chain0, 16}, {ea, 13}};
            EXPECT_OK(tc_aes_cmac_iov(smac, klen, parts, 2, cmac));
            EXPECT_MEM(cmac, 8, ea + 13, 8);
            per_len[(klen - 16) / 8]++;
            n++;
        } else {
            tc_test_fail_at(v.path, v.record_line, "malformed SCP03 trace record");
        }
        free(kmac);
        free(iu);
        free(rsp);
        free(ea);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 9);
    EXPECT_EQ_U(per_len[0], 3);
    EXPECT_EQ_U(per_len[1], 3);
    EXPECT_EQ_U(per_len[2], 3);
}

/* tc_scp03_kdf equals the CAVP-checked generic KDF with the GP Amendment D
 * §6.2.2 layout assembled here byte by byte, for L = 64, 128, 192, 256 and
 * the longest output a one-byte counter allows. */
static void test_scp03_kdf_layout(void)
{
    static const size_t lens[] = {8, 16, 24, 32, 33, 4080};
    uint8_t key[32], context[24];
    uint8_t *a = malloc(4080), *b = malloc(4080);
    fill(key, sizeof key, 42);
    fill(context, sizeof context, 43);
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < TC_ARRAY_LEN(lens); i++) {
            size_t klen = 16 + 8 * k, out_len = lens[i];
            uint8_t label[15] = {0};
            label[11] = TC_SCP03_DC_S_ENC;
            label[12] = 0x00;
            label[13] = (uint8_t)((out_len * 8) >> 8);
            label[14] = (uint8_t)(out_len * 8);
            EXPECT_OK(
                tc_scp03_kdf(key, klen, TC_SCP03_DC_S_ENC, context, sizeof context, a, out_len));
            EXPECT_OK(tc_kbkdf_cmac_ctr(key, klen, label, sizeof label, 1, context, sizeof context,
                                        b, out_len));
            EXPECT_MEM(a, out_len, b, out_len);
            /* A single block is one CMAC over label || counter 01 || context. */
            if (out_len <= 16) {
                uint8_t one = 0x01, mac[TC_CMAC_LEN];
                const struct tc_iov parts[3] = {
                    {label, sizeof label}, {&one, 1}, {context, sizeof context}};
                EXPECT_OK(tc_aes_cmac_iov(key, klen, parts, 3, mac));
                EXPECT_MEM(a, out_len, mac, out_len);
            }
        }
    /* The derivation constant and L are part of the input. */
    EXPECT_OK(tc_scp03_kdf(key, 16, TC_SCP03_DC_S_ENC, context, 16, a, 16));
    EXPECT_OK(tc_scp03_kdf(key, 16, TC_SCP03_DC_S_MAC, context, 16, b, 16));
    EXPECT(memcmp(a, b, 16) != 0);
    EXPECT_OK(tc_scp03_kdf(key, 16, TC_SCP03_DC_S_ENC, context, 16, b, 8));
    EXPECT(memcmp(a, b, 8) != 0);
    /* Rejections. */
    EXPECT_ERR(tc_scp03_kdf(key, 16, 0x04, context, 16, a, 0), TC_ERR_ARG);
    EXPECT_ERR(tc_scp03_kdf(key, 16, 0x04, context, 16, a, 4081), TC_ERR_ARG);
    EXPECT_ERR(tc_scp03_kdf(key, 16, 0x04, NULL, 16, a, 16), TC_ERR_ARG);
    EXPECT_ERR(tc_scp03_kdf(key, 20, 0x04, context, 16, a, 16), TC_ERR_ARG);
    EXPECT_ERR(tc_scp03_kdf(key, 16, 0x04, context, 16, NULL, 16), TC_ERR_ARG);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------ KCV */

static void test_kcv_vectors(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "crypto/kcv.txt"))
        return;
    size_t n = 0, derived = 0;
    while (tc_vec_next(&v)) {
        size_t klen = 0, elen = 0, clen = 0, dlen = 0;
        uint8_t *key = tc_vec_hex(&v, "KEY", &klen);
        uint8_t *expect = tc_vec_hex(&v, "KCV", &elen);
        uint8_t *constant = NULL, *context = NULL;
        uint8_t k2[32], kcv[TC_KCV_LEN];
        const uint8_t *target = key;
        if (tc_vec_get(&v, "CONSTANT") != NULL) {
            constant = tc_vec_hex(&v, "CONSTANT", &clen);
            context = tc_vec_hex(&v, "CONTEXT", &dlen);
            if (key && constant && context && clen == 1 && klen <= sizeof k2) {
                EXPECT_OK(tc_scp03_kdf(key, klen, constant[0], context, dlen, k2, klen));
                target = k2;
                derived++;
            }
        }
        if (target && expect) {
            EXPECT_OK(tc_kcv_aes(target, klen, kcv));
            EXPECT_MEM(kcv, sizeof kcv, expect, elen);
            n++;
        }
        free(key);
        free(expect);
        free(constant);
        free(context);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 4);
    EXPECT_EQ_U(derived, 3);
    uint8_t kcv[TC_KCV_LEN];
    EXPECT_ERR(tc_kcv_aes(k16, 8, kcv), TC_ERR_ARG);
    EXPECT_ERR(tc_kcv_aes(NULL, 16, kcv), TC_ERR_ARG);
}

/* SHA-256 whole and split at every offset into two parts and an empty
 * middle part; a NULL part with a length is refused. */
static void test_sha256_vectors(void)
{
    struct tc_vec v;
    int records = 0;
    if (!tc_vec_open(&v, "crypto/sha256.txt"))
        return;
    while (tc_vec_next(&v)) {
        size_t mlen = 0, dlen = 0;
        uint8_t *msg = tc_vec_hex(&v, "MSG", &mlen);
        uint8_t *md = tc_vec_hex(&v, "MD", &dlen);
        if (msg != NULL && md != NULL) {
            for (size_t cut = 0; cut <= mlen; cut++) {
                const struct tc_iov parts[] = {{msg, cut}, {NULL, 0}, {msg + cut, mlen - cut}};
                uint8_t out[TC_SHA256_LEN];
                EXPECT_OK(tc_sha256_iov(parts, TC_ARRAY_LEN(parts), out));
                EXPECT_MEM(out, sizeof out, md, dlen);
            }
            records++;
        }
        free(msg);
        free(md);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(records, 3);
    const struct tc_iov bad[] = {{NULL, 1}};
    uint8_t out[TC_SHA256_LEN];
    EXPECT_ERR(tc_sha256_iov(bad, 1, out), TC_ERR_ARG);
    EXPECT_ERR(tc_sha256_iov(NULL, 1, out), TC_ERR_ARG);
}

static const struct tc_test_case cases[] = {
    {"sha256_vectors", test_sha256_vectors},
    {"cmac_vectors", test_cmac_vectors},
    {"cmac_rejects", test_cmac_rejects},
    {"cmac_interleaved_keys", test_cmac_interleaved_keys},
    {"aes_vectors", test_aes_vectors},
    {"aes_rejects", test_aes_rejects},
    {"kbkdf_vectors", test_kbkdf_vectors},
    {"kbkdf_rejects", test_kbkdf_rejects},
    {"pad_vectors", test_pad_vectors},
    {"pad_rejects", test_pad_rejects},
    {"random", test_random},
    {"key_len_ok", test_key_len_ok},
    {"threads", test_threads},
    {"cmac_matches_evp_mac", test_cmac_matches_evp_mac},
    {"contexts_scrubbed", test_contexts_scrubbed},
    {"scp03_kdf_traces", test_scp03_kdf_traces},
    {"scp03_kdf_layout", test_scp03_kdf_layout},
    {"kcv_vectors", test_kcv_vectors},
};

int main(int argc, char **argv)
{
    int rc = tc_test_run("crypto", cases, TC_ARRAY_LEN(cases), argc, argv);
    tc_crypto_thread_cleanup();
    return rc;
}
