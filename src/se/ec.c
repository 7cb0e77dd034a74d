/*
 * The card's ECDSA P-256 and SHA-256, on OpenSSL 3. The private scalar lives
 * in the card's NVM. For a one-off operation (key generation, the proof of
 * possession) an EVP_PKEY is built from it and freed (OpenSSL clears its
 * private BIGNUM on free). The identity SIGN keeps its EVP_PKEY and signing
 * context in the card's RAM (struct se_ec_key in struct se_ram): built on
 * the first SIGN, reused while the NVM holds the same key pair, freed and
 * wiped when the key pair changes, on power off, reset and close. OpenSSL
 * allocates internally here; the card OS code itself does not.
 *
 * What is kept per thread holds no key: a P-256 key generation context
 * (its EC group is built once, on the first generation) and an "EC" import
 * context, both freed by a pthread key destructor when the thread ends
 * (se_ec_thread_cleanup() for a thread that wants them gone sooner). They
 * live in thread-local storage, so the card code still allocates nothing
 * itself.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "se_internal.h"

/* The card's SHA-256 is the crypto module's (its per-thread digest context
 * is freed when the thread ends). */
tc_err se_sha256(const uint8_t *const *parts, const size_t *lens, size_t n, uint8_t out[static 32])
{
    struct tc_iov iov[SE_SHA256_MAX_PARTS];
    TC_ENSURE_MSG(n <= SE_SHA256_MAX_PARTS, TC_ERR_ARG, "SHA-256 over %zu parts", n);
    for (size_t i = 0; i < n; i++) {
        iov[i].p = parts[i];
        iov[i].len = lens[i];
    }
    return tc_sha256_iov(iov, n, out);
}

/* ------------------------------------------------------------------ per-thread contexts */

struct se_ec_thread {
    EVP_PKEY_CTX *gen; /* EVP_PKEY_keygen_init'ed, group P-256 */
    EVP_PKEY_CTX *imp; /* EVP_PKEY_fromdata_init'ed, "EC" */
};

static pthread_once_t se_ec_once = PTHREAD_ONCE_INIT;
static pthread_key_t se_ec_key;
static bool se_ec_key_ready;
static _Thread_local struct se_ec_thread se_ec_this_thread;

static void ec_thread_free(void *p)
{
    struct se_ec_thread *t = p;
    if (t == NULL)
        return;
    EVP_PKEY_CTX_free(t->gen);
    EVP_PKEY_CTX_free(t->imp);
    t->gen = NULL;
    t->imp = NULL;
}

static void ec_key_once(void)
{
    se_ec_key_ready = pthread_key_create(&se_ec_key, ec_thread_free) == 0;
}

static tc_err ec_thread_get(struct se_ec_thread **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct se_ec_thread *t = &se_ec_this_thread;
    if (t->gen != NULL) {
        *out = t;
        return TC_OK;
    }
    TC_ENSURE_MSG(pthread_once(&se_ec_once, ec_key_once) == 0 && se_ec_key_ready, TC_ERR_INTERNAL,
                  "pthread_key_create failed");
    /* SEC 2 §2.4.2 secp256r1 (prime256v1, P-256). */
    char group[] = "P-256";
    const OSSL_PARAM gen_params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *gen = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY_CTX *imp = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    TC_CHECK_MSG(gen != NULL && imp != NULL, TC_ERR_CRYPTO, "EC is not available");
    TC_TRY_OSSL(EVP_PKEY_keygen_init(gen));
    TC_TRY_OSSL(EVP_PKEY_CTX_set_params(gen, gen_params));
    TC_TRY_OSSL(EVP_PKEY_fromdata_init(imp));
    TC_CHECK_MSG(pthread_setspecific(se_ec_key, t) == 0, TC_ERR_INTERNAL,
                 "pthread_setspecific failed");
    t->gen = gen;
    t->imp = imp;
    gen = imp = NULL;
    *out = t;
    ret = TC_OK;
out:
    EVP_PKEY_CTX_free(gen);
    EVP_PKEY_CTX_free(imp);
    return ret;
}

void se_ec_thread_cleanup(void)
{
    if (se_ec_this_thread.gen == NULL)
        return;
    (void)pthread_setspecific(se_ec_key, NULL);
    ec_thread_free(&se_ec_this_thread);
}

/* ------------------------------------------------------------------ P-256 */

static bool little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Big-endian <-> the native byte order OSSL_PARAM BNs use (an involution). */
static void native_order(const uint8_t in[static 32], uint8_t out[static 32])
{
    for (size_t i = 0; i < 32; i++)
        out[i] = little_endian() ? in[31 - i] : in[i];
}

tc_err se_ec_generate(uint8_t priv[static 32], uint8_t pub[static TC_SE_EC_PUB_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    struct se_ec_thread *t = NULL;
    EVP_PKEY *key = NULL;
    uint8_t d_native[32];
    TC_TRY(ec_thread_get(&t));
    /* SEC 1 v2 §3.2.1: d in [1, n-1] from OpenSSL's private DRBG, Q = dG.
     * The context keeps only the group, never a key. */
    TC_TRY_OSSL(EVP_PKEY_generate(t->gen, &key));
    /* Both halves in one export; the scalar padded to 32 bytes. */
    OSSL_PARAM out_params[] = {
        OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, d_native, sizeof d_native),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, TC_SE_EC_PUB_LEN),
        OSSL_PARAM_construct_end(),
    };
    TC_TRY_OSSL(EVP_PKEY_get_params(key, out_params));
    TC_CHECK_MSG(OSSL_PARAM_modified(&out_params[0]) && out_params[0].return_size == 32,
                 TC_ERR_CRYPTO, "private key is not a 32-byte scalar");
    TC_CHECK_MSG(OSSL_PARAM_modified(&out_params[1]) &&
                     out_params[1].return_size == TC_SE_EC_PUB_LEN && pub[0] == 0x04,
                 TC_ERR_CRYPTO, "public key is not an uncompressed P-256 point");
    native_order(d_native, priv);
    ret = TC_OK;
out:
    tc_memzero(d_native, sizeof d_native);
    EVP_PKEY_free(key);
    if (ret != TC_OK)
        tc_memzero(priv, 32);
    return ret;
}

/* An EVP_PKEY for the key pair: SEC 1 §3.2.1 private scalar d and its
 * public point Q, which OpenSSL checks is on the curve. */
static tc_err ec_import(const uint8_t priv[static 32], const uint8_t pub[static TC_SE_EC_PUB_LEN],
                        EVP_PKEY **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct se_ec_thread *t = NULL;
    /* OSSL_PARAM_construct_BN takes the number in native byte order. */
    uint8_t d_native[32];
    native_order(priv, d_native);
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, d_native, sizeof d_native),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)pub,
                                          TC_SE_EC_PUB_LEN),
        OSSL_PARAM_construct_end(),
    };
    *out = NULL;
    TC_TRY(ec_thread_get(&t));
    TC_TRY_OSSL(EVP_PKEY_fromdata(t->imp, out, EVP_PKEY_KEYPAIR, params));
    ret = TC_OK;
out:
    tc_memzero(d_native, sizeof d_native);
    return ret;
}

/* FIPS 186-4 §6.4 ECDSA over a SHA-256 digest; the per-message k is
 * OpenSSL's. */
static tc_err ec_sign(EVP_PKEY_CTX *sctx, const uint8_t digest[static 32], uint8_t *sig,
                      size_t sig_size, size_t *sig_len)
{
    size_t len = sig_size;
    TC_GUARD_OSSL(EVP_PKEY_sign_init(sctx));
    TC_GUARD_OSSL(EVP_PKEY_sign(sctx, sig, &len, digest, 32));
    *sig_len = len;
    return TC_OK;
}

tc_err se_ec_sign_digest(const uint8_t priv[static 32], const uint8_t pub[static TC_SE_EC_PUB_LEN],
                         const uint8_t digest[static 32], uint8_t *sig, size_t sig_size,
                         size_t *sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_PKEY_CTX *sctx = NULL;
    EVP_PKEY *key = NULL;
    TC_TRY(ec_import(priv, pub, &key));
    sctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    TC_CHECK_MSG(sctx != NULL, TC_ERR_CRYPTO, "cannot create a signing context");
    TC_TRY(ec_sign(sctx, digest, sig, sig_size, sig_len));
    ret = TC_OK;
out:
    EVP_PKEY_CTX_free(sctx);
    EVP_PKEY_free(key);
    return ret;
}

/* ------------------------------------------------------------------ kept signing key */

void se_ec_key_forget(struct se_ec_key *k)
{
    if (k == NULL)
        return;
    /* EVP_PKEY_free clears the private BIGNUM (BN_clear_free); the
     * context holds a reference to the same key. */
    EVP_PKEY_CTX_free(k->sctx);
    EVP_PKEY_free(k->pkey);
    tc_memzero(k, sizeof *k);
}

tc_err se_ec_sign_digest_kept(struct se_ec_key *k, const uint8_t priv[static 32],
                              const uint8_t pub[static TC_SE_EC_PUB_LEN],
                              const uint8_t digest[static 32], uint8_t *sig, size_t sig_size,
                              size_t *sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(k != NULL, TC_ERR_ARG);
    /* The kept key serves only the exact key pair it was built from: any
     * change of the NVM's key (renewal, replacement, a reloaded image)
     * builds a new one and the old one is freed first. */
    if (k->pkey == NULL || !tc_ct_equal(k->priv, priv, sizeof k->priv) ||
        !tc_ct_equal(k->pub, pub, sizeof k->pub)) {
        se_ec_key_forget(k);
        TC_TRY(ec_import(priv, pub, &k->pkey));
        k->sctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
        TC_CHECK_MSG(k->sctx != NULL, TC_ERR_CRYPTO, "cannot create a signing context");
        memcpy(k->priv, priv, sizeof k->priv);
        memcpy(k->pub, pub, sizeof k->pub);
    }
    TC_TRY(ec_sign(k->sctx, digest, sig, sig_size, sig_len));
    ret = TC_OK;
out:
    if (ret != TC_OK)
        se_ec_key_forget(k);
    return ret;
}
