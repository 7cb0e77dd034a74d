/* Random bytes from OpenSSL's DRBGs (public and private instances). */
#include <limits.h>

#include <openssl/rand.h>

#include <trustchain/crypto.h>

typedef int (*tc_rand_fn)(unsigned char *buf, int num);

static tc_err rand_fill(tc_rand_fn fn, const char *what, uint8_t *out, size_t n)
{
    TC_ENSURE(out != NULL || n == 0, TC_ERR_ARG);
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done < (size_t)INT_MAX ? n - done : (size_t)INT_MAX;
        if (fn(out + done, (int)chunk) != 1) {
            tc_memzero(out, n);
            return tc_fail_ossl(__FILE__, __LINE__, what);
        }
        done += chunk;
    }
    return TC_OK;
}

tc_err tc_random(uint8_t *out, size_t n)
{
    return rand_fill(RAND_bytes, "RAND_bytes", out, n);
}

tc_err tc_random_secret(uint8_t *out, size_t n)
{
    return rand_fill(RAND_priv_bytes, "RAND_priv_bytes", out, n);
}
