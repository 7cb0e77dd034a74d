/*
 * After a thread's first call, the symmetric primitives neither fetch nor
 * allocate: every OpenSSL allocation is counted through
 * CRYPTO_set_mem_functions, which must be installed before OpenSSL
 * allocates anything (hence this test's own main).
 */
#include "harness.h"

#include <stdlib.h>

#include <openssl/crypto.h>

#include <trustchain/crypto.h>

static size_t ossl_allocs;

static void *count_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    ossl_allocs++;
    return malloc(n);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    ossl_allocs++;
    return realloc(p, n);
}

static void count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static void exercise(const uint8_t *key, size_t klen, uint8_t *buf)
{
    static const uint8_t iv[16] = {1};
    uint8_t mac[TC_CMAC_LEN], kcv[TC_KCV_LEN], out[48];
    const struct tc_iov parts[2] = {{buf, 7}, {buf + 7, 50}};
    EXPECT_OK(tc_aes_cmac(key, klen, buf, 64, mac));
    EXPECT_OK(tc_aes_cmac_iov(key, klen, parts, 2, mac));
    EXPECT_OK(tc_aes_cbc_encrypt(key, klen, iv, buf, 64, buf));
    EXPECT_OK(tc_aes_cbc_decrypt(key, klen, iv, buf, 64, buf));
    EXPECT_OK(tc_aes_ecb_encrypt(key, klen, buf, 64, buf));
    EXPECT_OK(tc_aes_ecb_decrypt(key, klen, buf, 64, buf));
    EXPECT_OK(tc_kcv_aes(key, klen, kcv));
    EXPECT_OK(tc_scp03_kdf(key, klen, TC_SCP03_DC_S_ENC, buf, 16, out, 32));
    EXPECT_OK(tc_kbkdf_cmac_ctr(key, klen, buf, 10, 2, buf, 5, out, 48));
}

static void test_no_allocation_after_first_call(void)
{
    uint8_t key[32] = {0x40, 0x41, 0x42}, buf[64] = {0};
    for (size_t k = 0; k < 3; k++)
        exercise(key, 16 + 8 * k, buf); /* first calls: contexts created */
    size_t before = ossl_allocs;
    for (int round = 0; round < 100; round++)
        for (size_t k = 0; k < 3; k++)
            exercise(key, 16 + 8 * k, buf);
    EXPECT_EQ_U(ossl_allocs - before, 0);
    EXPECT(before > 0); /* the counter does see OpenSSL's allocations */
}

static const struct tc_test_case cases[] = {
    {"no_allocation_after_first_call", test_no_allocation_after_first_call},
};

int main(int argc, char **argv)
{
    if (CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) != 1) {
        fprintf(stderr, "CRYPTO_set_mem_functions refused: OpenSSL allocated already\n");
        return 1;
    }
    int rc = tc_test_run("crypto_alloc", cases, TC_ARRAY_LEN(cases), argc, argv);
    tc_crypto_thread_cleanup();
    return rc;
}
