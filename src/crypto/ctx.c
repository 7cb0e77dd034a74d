/*
 * Algorithm objects fetched once per process (pthread_once) and contexts
 * created once per thread, freed by a pthread key destructor at thread exit.
 * After a thread's first call nothing here fetches or allocates.
 */
#include <pthread.h>
#include <stdlib.h>

#include <openssl/err.h>

#include "crypto/internal.h"

static pthread_once_t tc_crypto_once = PTHREAD_ONCE_INIT;
static pthread_key_t tc_crypto_key;
static bool tc_crypto_ready;
static EVP_CIPHER *tc_crypto_ciphers[TC_AES_MODE_COUNT][TC_AES_KEY_SIZES];
static EVP_MD *tc_crypto_sha256_alg;
static _Thread_local struct tc_crypto_thread *tc_crypto_this_thread;

static const char *const tc_cipher_names[TC_AES_MODE_COUNT][TC_AES_KEY_SIZES] = {
    [TC_AES_ECB] = {"AES-128-ECB", "AES-192-ECB", "AES-256-ECB"},
    [TC_AES_CBC] = {"AES-128-CBC", "AES-192-CBC", "AES-256-CBC"},
};

static const uint8_t tc_zero_key[TC_AES_MAX_KEY];
static const uint8_t tc_zero_iv[TC_AES_BLOCK];

size_t tc_crypto_key_index(size_t key_len)
{
    return key_len == 16 ? 0u : key_len == 24 ? 1u : 2u;
}

bool tc_aes_key_len_ok(size_t key_len)
{
    return key_len == 16 || key_len == 24 || key_len == 32;
}

static void thread_free(void *p)
{
    struct tc_crypto_thread *t = p;
    if (t == NULL)
        return;
    /* The EVP free functions cleanse the key schedules they hold. */
    for (size_t m = 0; m < TC_AES_MODE_COUNT; m++)
        for (size_t k = 0; k < TC_AES_KEY_SIZES; k++)
            EVP_CIPHER_CTX_free(t->cipher[m][k]);
    for (size_t k = 0; k < TC_AES_KEY_SIZES; k++)
        EVP_CIPHER_CTX_free(t->cmac[k]);
    EVP_MD_CTX_free(t->sha256);
    free(t);
}

static void fetch_once(void)
{
    for (size_t m = 0; m < TC_AES_MODE_COUNT; m++)
        for (size_t k = 0; k < TC_AES_KEY_SIZES; k++) {
            tc_crypto_ciphers[m][k] = EVP_CIPHER_fetch(NULL, tc_cipher_names[m][k], NULL);
            if (tc_crypto_ciphers[m][k] == NULL)
                return;
        }
    tc_crypto_sha256_alg = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (tc_crypto_sha256_alg == NULL)
        return;
    if (pthread_key_create(&tc_crypto_key, thread_free) != 0)
        return;
    tc_crypto_ready = true;
}

static tc_err thread_new(struct tc_crypto_thread **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_crypto_thread *t = calloc(1, sizeof *t);
    TC_CHECK_MSG(t != NULL, TC_ERR_NOMEM, "no memory for the thread's crypto contexts");
    for (size_t m = 0; m < TC_AES_MODE_COUNT; m++)
        for (size_t k = 0; k < TC_AES_KEY_SIZES; k++) {
            EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
            TC_CHECK_MSG(c != NULL, TC_ERR_NOMEM, "EVP_CIPHER_CTX_new failed");
            t->cipher[m][k] = c;
            /* Bind the algorithm now; calls pass cipher NULL and only re-key. */
            TC_TRY_OSSL(EVP_CipherInit_ex2(c, tc_crypto_ciphers[m][k], tc_zero_key,
                                           m == TC_AES_CBC ? tc_zero_iv : NULL, 1, NULL));
            TC_TRY_OSSL(EVP_CIPHER_CTX_set_padding(c, 0));
        }
    for (size_t k = 0; k < TC_AES_KEY_SIZES; k++) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        TC_CHECK_MSG(c != NULL, TC_ERR_NOMEM, "EVP_CIPHER_CTX_new failed");
        t->cmac[k] = c;
        TC_TRY_OSSL(EVP_CipherInit_ex2(c, tc_crypto_ciphers[TC_AES_CBC][k], tc_zero_key, tc_zero_iv,
                                       1, NULL));
        TC_TRY_OSSL(EVP_CIPHER_CTX_set_padding(c, 0));
    }
    t->sha256 = EVP_MD_CTX_new();
    TC_CHECK_MSG(t->sha256 != NULL, TC_ERR_NOMEM, "EVP_MD_CTX_new failed");
    TC_TRY_OSSL(EVP_DigestInit_ex2(t->sha256, tc_crypto_sha256_alg, NULL));
    TC_CHECK_MSG(pthread_setspecific(tc_crypto_key, t) == 0, TC_ERR_INTERNAL,
                 "pthread_setspecific failed");
    *out = t;
    t = NULL;
    ret = TC_OK;
out:
    thread_free(t);
    return ret;
}

tc_err tc_crypto_thread_get(struct tc_crypto_thread **out)
{
    if (tc_crypto_this_thread != NULL) {
        *out = tc_crypto_this_thread;
        return TC_OK;
    }
    TC_ENSURE_MSG(pthread_once(&tc_crypto_once, fetch_once) == 0, TC_ERR_INTERNAL,
                  "pthread_once failed");
    if (!tc_crypto_ready) {
        ERR_clear_error();
        return TC_FAIL(TC_ERR_CRYPTO, "OpenSSL lacks AES-ECB/CBC (provider not loaded?)");
    }
    TC_GUARD(thread_new(&tc_crypto_this_thread));
    *out = tc_crypto_this_thread;
    return TC_OK;
}

void tc_crypto_thread_cleanup(void)
{
    struct tc_crypto_thread *t = tc_crypto_this_thread;
    if (t == NULL)
        return;
    tc_crypto_this_thread = NULL;
    (void)pthread_setspecific(tc_crypto_key, NULL);
    thread_free(t);
}

void tc_crypto_scrub_cipher(EVP_CIPHER_CTX *ctx)
{
    if (EVP_CipherInit_ex2(ctx, NULL, tc_zero_key, tc_zero_iv, 1, NULL) != 1)
        ERR_clear_error();
}

void tc_crypto_scrub_cmac(EVP_CIPHER_CTX *ctx)
{
    if (EVP_CipherInit_ex2(ctx, NULL, tc_zero_key, NULL, 1, NULL) != 1)
        ERR_clear_error();
}

/* FIPS 180-4 SHA-256 over the concatenation of the parts, on the thread's
 * digest context (no fetch, no allocation after the thread's first call). */
tc_err tc_sha256_iov(const struct tc_iov *parts, size_t n, uint8_t out[static TC_SHA256_LEN])
{
    TC_ENSURE(parts != NULL || n == 0, TC_ERR_ARG);
    struct tc_crypto_thread *t = NULL;
    TC_GUARD(tc_crypto_thread_get(&t));
    unsigned int len = 0;
    TC_GUARD_OSSL(EVP_DigestInit_ex2(t->sha256, NULL, NULL));
    for (size_t i = 0; i < n; i++) {
        TC_ENSURE(parts[i].p != NULL || parts[i].len == 0, TC_ERR_ARG);
        if (parts[i].len > 0)
            TC_GUARD_OSSL(EVP_DigestUpdate(t->sha256, parts[i].p, parts[i].len));
    }
    TC_GUARD_OSSL(EVP_DigestFinal_ex(t->sha256, out, &len));
    TC_ENSURE(len == TC_SHA256_LEN, TC_ERR_INTERNAL);
    return TC_OK;
}
