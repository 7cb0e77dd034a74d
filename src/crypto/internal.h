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
 * One thread's contexts: a cipher context per (mode, key length) and a CMAC
 * context per key length, each bound to its algorithm once at creation so a
 * call only re-keys (EVP_CipherInit_ex2 / EVP_MAC_init with a key) and never
 * fetches or allocates.
 */
struct tc_crypto_thread {
    EVP_CIPHER_CTX *cipher[TC_AES_MODE_COUNT][TC_AES_KEY_SIZES];
    EVP_MAC_CTX *cmac[TC_AES_KEY_SIZES];
};

size_t tc_crypto_key_index(size_t key_len);
/* The calling thread's contexts, created on its first call. */
TC_MUST_CHECK tc_err tc_crypto_thread_get(struct tc_crypto_thread **out);
/* Overwrite the key schedule a context holds with that of the all-zero key,
 * so no key material outlives the call that used it. */
void tc_crypto_scrub_cipher(EVP_CIPHER_CTX *ctx);
void tc_crypto_scrub_cmac(EVP_MAC_CTX *ctx, size_t key_len);

#endif
