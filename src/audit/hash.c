/*
 * SHA-256 for the tree: the algorithm is fetched once per process and each
 * thread reuses one digest context, so hashing a node costs two compression
 * calls and no allocation.
 */
#include <pthread.h>

#include <openssl/evp.h>

#include "audit/internal.h"

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t sha256_key; /* the thread's EVP_MD_CTX, freed at thread exit */
static bool sha256_key_ok;

static void free_ctx(void *p)
{
    EVP_MD_CTX_free(p);
}

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha256_key_ok = pthread_key_create(&sha256_key, free_ctx) == 0;
}

tc_err tc_audit_sha256(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                       size_t clen, uint8_t out[static TC_AUDIT_HASH_LEN])
{
    pthread_once(&sha256_once, fetch_sha256);
    TC_ENSURE_MSG(sha256_md != NULL && sha256_key_ok, TC_ERR_CRYPTO, "SHA-256 is not available");
    EVP_MD_CTX *sha256_ctx = pthread_getspecific(sha256_key);
    if (sha256_ctx == NULL) {
        sha256_ctx = EVP_MD_CTX_new();
        TC_ENSURE(sha256_ctx != NULL, TC_ERR_NOMEM);
        if (pthread_setspecific(sha256_key, sha256_ctx) != 0) {
            EVP_MD_CTX_free(sha256_ctx);
            return TC_FAIL(TC_ERR_NOMEM, "pthread_setspecific failed");
        }
    }
    unsigned int n = 0;
    TC_GUARD_OSSL(EVP_DigestInit_ex2(sha256_ctx, sha256_md, NULL));
    if (alen > 0)
        TC_GUARD_OSSL(EVP_DigestUpdate(sha256_ctx, a, alen));
    if (blen > 0)
        TC_GUARD_OSSL(EVP_DigestUpdate(sha256_ctx, b, blen));
    if (clen > 0)
        TC_GUARD_OSSL(EVP_DigestUpdate(sha256_ctx, c, clen));
    TC_GUARD_OSSL(EVP_DigestFinal_ex(sha256_ctx, out, &n));
    TC_ENSURE(n == TC_AUDIT_HASH_LEN, TC_ERR_INTERNAL);
    return TC_OK;
}

/* RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)). */
tc_err tc_merkle_leaf_hash(const uint8_t *leaf, size_t len, uint8_t out[static TC_AUDIT_HASH_LEN])
{
    static const uint8_t prefix = 0x00;
    TC_ENSURE(leaf != NULL || len == 0, TC_ERR_ARG);
    return tc_audit_sha256(&prefix, 1, leaf, len, NULL, 0, out);
}

/* RFC 9162 §2.1.1: MTH(D_n) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])). */
tc_err tc_merkle_node_hash(const uint8_t left[static TC_AUDIT_HASH_LEN],
                           const uint8_t right[static TC_AUDIT_HASH_LEN],
                           uint8_t out[static TC_AUDIT_HASH_LEN])
{
    static const uint8_t prefix = 0x01;
    return tc_audit_sha256(&prefix, 1, left, TC_AUDIT_HASH_LEN, right, TC_AUDIT_HASH_LEN, out);
}
