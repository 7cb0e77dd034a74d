/* Secret hygiene: non-elidable wipes and constant-time comparison. */
#include <openssl/crypto.h>

#include <trustchain/core.h>

void tc_memzero(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

bool tc_ct_equal(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return true;
    return CRYPTO_memcmp(a, b, n) == 0;
}
