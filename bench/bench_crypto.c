/*
 * Crypto module figures: AES-CMAC on 16 and 255 bytes and the SCP03 KDF per
 * derived 16-byte key, each beside its floor: the same CMAC computed directly
 * with OpenSSL (a pre-fetched EVP_MAC, one reused context, EVP_MAC_init with
 * the key + update + final per operation).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <trustchain/crypto.h>

#include "bench.h"

struct cmac_case {
    uint8_t key[16];
    uint8_t msg[255];
    size_t len;
    uint8_t mac[TC_CMAC_LEN];
    EVP_MAC_CTX *floor_ctx;
};

static int tc_cmac_op(void *arg)
{
    struct cmac_case *c = arg;
    return tc_aes_cmac(c->key, sizeof c->key, c->msg, c->len, c->mac) == TC_OK ? 0 : 1;
}

static int floor_cmac(EVP_MAC_CTX *ctx, const uint8_t *key, const uint8_t *msg, size_t len,
                      uint8_t *mac)
{
    size_t outl = 0;
    if (EVP_MAC_init(ctx, key, 16, NULL) != 1 || EVP_MAC_update(ctx, msg, len) != 1 ||
        EVP_MAC_final(ctx, mac, &outl, TC_CMAC_LEN) != 1 || outl != TC_CMAC_LEN)
        return 1;
    return 0;
}

static int floor_cmac_op(void *arg)
{
    struct cmac_case *c = arg;
    return floor_cmac(c->floor_ctx, c->key, c->msg, c->len, c->mac);
}

struct kdf_case {
    uint8_t key[16];
    uint8_t context[16]; /* host challenge || card challenge */
    uint8_t out[16];
    EVP_MAC_CTX *floor_ctx;
};

static int tc_kdf_op(void *arg)
{
    struct kdf_case *k = arg;
    return tc_scp03_kdf(k->key, sizeof k->key, TC_SCP03_DC_S_MAC, k->context, sizeof k->context,
                        k->out, sizeof k->out) == TC_OK
               ? 0
               : 1;
}

/* The floor assembles the same 32-byte derivation data (GP Amendment D
 * §6.2.2) and computes one CMAC over it. */
static int floor_kdf_op(void *arg)
{
    struct kdf_case *k = arg;
    uint8_t data[32] = {0};
    data[11] = TC_SCP03_DC_S_MAC;
    data[13] = 0x00;
    data[14] = 0x80;
    data[15] = 0x01;
    memcpy(data + 16, k->context, sizeof k->context);
    return floor_cmac(k->floor_ctx, k->key, data, sizeof data, k->out);
}

int main(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_CMAC, NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char cipher[] = "AES-128-CBC";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                           OSSL_PARAM_construct_end()};
    if (ctx == NULL || EVP_MAC_CTX_set_params(ctx, params) != 1) {
        fprintf(stderr, "bench_crypto: OpenSSL CMAC unavailable\n");
        return 1;
    }

    bench_init("bench_crypto");
    struct cmac_case c;
    memset(&c, 0, sizeof c);
    for (size_t i = 0; i < sizeof c.key; i++)
        c.key[i] = (uint8_t)(0x40 + i);
    for (size_t i = 0; i < sizeof c.msg; i++)
        c.msg[i] = (uint8_t)i;
    c.floor_ctx = ctx;

    /* Both paths must agree before they are timed. */
    uint8_t a[TC_CMAC_LEN], b[TC_CMAC_LEN];
    c.len = sizeof c.msg;
    if (tc_cmac_op(&c) != 0)
        return 1;
    memcpy(a, c.mac, sizeof a);
    if (floor_cmac_op(&c) != 0)
        return 1;
    memcpy(b, c.mac, sizeof b);
    if (memcmp(a, b, sizeof a) != 0) {
        fprintf(stderr, "bench_crypto: tc_aes_cmac and EVP_MAC disagree\n");
        return 1;
    }

    c.len = 16;
    bench_compare("tc_aes_cmac 16 B", tc_cmac_op, &c, "EVP_MAC CMAC 16 B", floor_cmac_op, &c);
    c.len = 255;
    bench_compare("tc_aes_cmac 255 B", tc_cmac_op, &c, "EVP_MAC CMAC 255 B", floor_cmac_op, &c);

    struct kdf_case k;
    memset(&k, 0, sizeof k);
    memcpy(k.key, c.key, sizeof k.key);
    for (size_t i = 0; i < sizeof k.context; i++)
        k.context[i] = (uint8_t)(0xA0 + i);
    k.floor_ctx = ctx;
    if (tc_kdf_op(&k) != 0)
        return 1;
    memcpy(a, k.out, sizeof a);
    if (floor_kdf_op(&k) != 0 || memcmp(a, k.out, sizeof a) != 0) {
        fprintf(stderr, "bench_crypto: tc_scp03_kdf and the floor disagree\n");
        return 1;
    }
    bench_compare("tc_scp03_kdf 16 B key", tc_kdf_op, &k, "EVP_MAC CMAC 32 B", floor_kdf_op, &k);

    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    tc_crypto_thread_cleanup();
    return 0;
}
