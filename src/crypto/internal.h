/*
 * Internals of the crypto module: the per-process algorithm objects and the
 * per-thread contexts built on them. Never included outside src/crypto.
 */
#ifndef TC_CRYPTO_INTERNAL_H
#define TC_CRYPTO_INTERNAL_H

#include <openssl/evp.h>

#include <trustchain/crypto.h>

enum tc_aes_mode { TC_AES_ECB = 0, TC_AES_CBC = 1, TC_AES_MODE_COUNT };

/* Index of a key length among 16, 24, 32 (caller checked tc_aes_key_len_ok). */
#define TC_AES_KEY_SIZES 3u

/*
 * One thread's contexts: a cipher context per (mode, key length), each bound
 * to its algorithm once at creation so a call only re-keys
 * (EVP_CipherInit_ex2 with cipher NULL) and never fetches or allocates.
 */
struct tc_crypto_thread {
    EVP_CIPHER_CTX *cipher[TC_AES_MODE_COUNT][TC_AES_KEY_SIZES];
    /* AES-CBC contexts used only by CMAC. Their IV is set to zero once at
     * creation and never again, so every re-key (IV argument NULL) also
     * resets the chaining value to zero: no IV handling per call. */
    EVP_CIPHER_CTX *cmac[TC_AES_KEY_SIZES];
    /* SHA-256, bound to the algorithm at creation. */
    EVP_MD_CTX *sha256;
};

/* A CMAC computation keyed on a thread's AES-CBC context: the subkeys and
 * the context's current CBC chaining value. Wiped by tc_crypto_cmac_end. */
struct tc_cmac {
    EVP_CIPHER_CTX *ctx;
    uint8_t k1[TC_AES_BLOCK];
    uint8_t k2[TC_AES_BLOCK];
    uint8_t chain[TC_AES_BLOCK];
};

/* Keys ctx and derives the subkeys (SP 800-38B §6.1). */
TC_MUST_CHECK tc_err tc_crypto_cmac_setup(struct tc_cmac *m, EVP_CIPHER_CTX *ctx,
                                          const uint8_t *key, size_t key_len);
/* One MAC over the parts; may be repeated on one setup (same key). */
TC_MUST_CHECK tc_err tc_crypto_cmac_run(struct tc_cmac *m, const struct tc_iov *parts, size_t n,
                                        uint8_t mac[static TC_CMAC_LEN]);
/* Scrubs the context's key schedule and wipes *m. Safe on a zeroed *m. */
void tc_crypto_cmac_end(struct tc_cmac *m);

size_t tc_crypto_key_index(size_t key_len);
/* The calling thread's contexts, created on its first call. */
TC_MUST_CHECK tc_err tc_crypto_thread_get(struct tc_crypto_thread **out);
/* Overwrite the key schedule a context holds with that of the all-zero key,
 * so no key material outlives the call that used it. */
void tc_crypto_scrub_cipher(EVP_CIPHER_CTX *ctx);
/* The same for a CMAC context; also resets its chaining value to zero. */
void tc_crypto_scrub_cmac(EVP_CIPHER_CTX *ctx);

#endif
