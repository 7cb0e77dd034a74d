/*
 * trustchain crypto: the symmetric primitives SCP03 and key management need,
 * on OpenSSL 3 EVP. Algorithm objects are fetched once per process and the
 * cipher/MAC contexts are created once per thread and reused, so no call
 * fetches or allocates after the first on its thread.
 *
 * Must never: keep key material after a call returns (contexts are reset and
 * stack copies wiped), or compare secrets with anything but tc_ct_equal.
 */
#ifndef TRUSTCHAIN_CRYPTO_H
#define TRUSTCHAIN_CRYPTO_H

#include <trustchain/core.h>

#define TC_AES_BLOCK   16u
#define TC_AES_MAX_KEY 32u
#define TC_CMAC_LEN    16u
#define TC_KCV_LEN     3u

/* Key lengths accepted everywhere: 16, 24 or 32 bytes. */
bool tc_aes_key_len_ok(size_t key_len);

/* One piece of a message given as several parts (no copying to join them). */
struct tc_iov {
    const void *p;
    size_t len;
};

/* AES-CMAC (NIST SP 800-38B, RFC 4493) over msg. */
TC_MUST_CHECK tc_err tc_aes_cmac(const uint8_t *key, size_t key_len, const uint8_t *msg,
                                 size_t msg_len, uint8_t mac[static TC_CMAC_LEN]);
/* AES-CMAC over the concatenation of n parts. */
TC_MUST_CHECK tc_err tc_aes_cmac_iov(const uint8_t *key, size_t key_len, const struct tc_iov *parts,
                                     size_t n, uint8_t mac[static TC_CMAC_LEN]);

#define TC_SHA256_LEN 32u

/* SHA-256 (FIPS 180-4) over the concatenation of n parts. */
TC_MUST_CHECK tc_err tc_sha256_iov(const struct tc_iov *parts, size_t n,
                                   uint8_t out[static TC_SHA256_LEN]);

/* AES-CBC / AES-ECB without padding: len must be a multiple of 16.
 * in and out may be the same buffer. */
TC_MUST_CHECK tc_err tc_aes_cbc_encrypt(const uint8_t *key, size_t key_len,
                                        const uint8_t iv[static TC_AES_BLOCK], const uint8_t *in,
                                        size_t len, uint8_t *out);
TC_MUST_CHECK tc_err tc_aes_cbc_decrypt(const uint8_t *key, size_t key_len,
                                        const uint8_t iv[static TC_AES_BLOCK], const uint8_t *in,
                                        size_t len, uint8_t *out);
TC_MUST_CHECK tc_err tc_aes_ecb_encrypt(const uint8_t *key, size_t key_len, const uint8_t *in,
                                        size_t len, uint8_t *out);
TC_MUST_CHECK tc_err tc_aes_ecb_decrypt(const uint8_t *key, size_t key_len, const uint8_t *in,
                                        size_t len, uint8_t *out);

/* ISO/IEC 9797-1 padding method 2: append 0x80 then zeros up to a multiple
 * of 16 (always at least one byte added). *out_len = padded length. */
TC_MUST_CHECK tc_err tc_pad_m2(uint8_t *buf, size_t len, size_t cap, size_t *out_len);
/* Strict removal: len a non-zero multiple of 16; the last non-zero byte,
 * within the last block, must be 0x80. TC_ERR_FORMAT otherwise. */
TC_MUST_CHECK tc_err tc_unpad_m2(const uint8_t *buf, size_t len, size_t *out_len);

/* NIST SP 800-108 KDF in counter mode with AES-CMAC as PRF, counter of
 * `counter_len` bytes (1..4) placed between fixed_before and fixed_after
 * (CAVP "MIDDLE_FIXED"; fixed_before empty = "BEFORE_FIXED"). out_len bytes. */
TC_MUST_CHECK tc_err tc_kbkdf_cmac_ctr(const uint8_t *key, size_t key_len,
                                       const uint8_t *fixed_before, size_t before_len,
                                       size_t counter_len, const uint8_t *fixed_after,
                                       size_t after_len, uint8_t *out, size_t out_len);

/* GP Amendment D §6.2.2 data derivation: label = 11 zero bytes || constant,
 * separator 0x00, L (bits, 2 bytes), counter i (1 byte), context; iterated
 * for outputs longer than one block. out_len = L/8 bytes. */
TC_MUST_CHECK tc_err tc_scp03_kdf(const uint8_t *key, size_t key_len, uint8_t constant,
                                  const uint8_t *context, size_t context_len, uint8_t *out,
                                  size_t out_len);

/* GP Amendment D §6.2.2.1 derivation constants. */
#define TC_SCP03_DC_CARD_CRYPTOGRAM 0x00u
#define TC_SCP03_DC_HOST_CRYPTOGRAM 0x01u
#define TC_SCP03_DC_CARD_CHALLENGE  0x02u
#define TC_SCP03_DC_S_ENC           0x04u
#define TC_SCP03_DC_S_MAC           0x06u
#define TC_SCP03_DC_S_RMAC          0x07u

/* Key check value (GP Card Specification 2.3 / Amendment D §7.x): first
 * 3 bytes of AES-ECB(key, 16 x 0x01). */
TC_MUST_CHECK tc_err tc_kcv_aes(const uint8_t *key, size_t key_len, uint8_t kcv[static TC_KCV_LEN]);

/* Random bytes from OpenSSL's DRBG; tc_random_secret uses the private one
 * for key material. */
TC_MUST_CHECK tc_err tc_random(uint8_t *out, size_t n);
TC_MUST_CHECK tc_err tc_random_secret(uint8_t *out, size_t n);

/* Frees the calling thread's cipher and MAC contexts now instead of at
 * thread exit (the main thread never runs pthread key destructors). The next
 * call on the thread creates them again. */
void tc_crypto_thread_cleanup(void);

/* ------------------------------------------------------------------ signer */

/*
 * A signature key wherever it lives: in software (tests, verification) or as
 * an HSM object (hsm module). PKI issuance and audit checkpoints sign only
 * through this interface, so they never see private key material.
 */
enum tc_sig_alg { TC_SIG_ECDSA_P256_SHA256 = 1, TC_SIG_ECDSA_P384_SHA384 = 2, TC_SIG_ED25519 = 3 };

#define TC_SIG_MAX  144u /* DER ECDSA P-384 is at most 104; Ed25519 64 */
#define TC_SPKI_MAX 160u /* SubjectPublicKeyInfo DER, P-384 is 120 */

struct tc_signer {
    enum tc_sig_alg alg;
    void *ctx;
    /* Sign the whole message (ECDSA hashes it with the algorithm's hash);
     * ECDSA output is DER (X9.62 Ecdsa-Sig-Value), Ed25519 is 64 bytes. */
    tc_err (*sign)(void *ctx, const uint8_t *msg, size_t len, uint8_t *sig, size_t sig_size,
                   size_t *sig_len);
    /* The public key as SubjectPublicKeyInfo DER. */
    tc_err (*public_key)(void *ctx, uint8_t *out, size_t out_size, size_t *out_len);
};

typedef struct evp_pkey_st EVP_PKEY;

/* A software signer over an OpenSSL key (the signer takes a reference). */
TC_MUST_CHECK tc_err tc_signer_soft_new(EVP_PKEY *key, struct tc_signer *out);
/* Generates a fresh software key for tests and tools. */
TC_MUST_CHECK tc_err tc_signer_soft_generate(enum tc_sig_alg alg, struct tc_signer *out);
void tc_signer_soft_free(struct tc_signer *s);
/* Verify a signature against an SPKI (DER). TC_ERR_VERIFY on mismatch. */
TC_MUST_CHECK tc_err tc_sig_verify(enum tc_sig_alg alg, const uint8_t *spki, size_t spki_len,
                                   const uint8_t *msg, size_t len, const uint8_t *sig,
                                   size_t sig_len);

#endif
