/*
 * SCP03 figures, host and card in one process:
 *   - full handshakes per second (INITIALIZE UPDATE built, answered and
 *     checked, EXTERNAL AUTHENTICATE built and verified), AES-128, S8,
 *     pseudo-random card challenge, beside the 14 CMACs they cannot avoid
 *     done directly with OpenSSL: per side the card challenge, S-ENC, S-MAC,
 *     S-RMAC, card and host cryptogram, and the EXTERNAL AUTHENTICATE C-MAC;
 *   - one command with 255 bytes of data at level 33 wrapped by the host,
 *     unwrapped by the card, its 255-byte response wrapped by the card and
 *     unwrapped by the host, beside the raw work: 4 ICVs (one AES block),
 *     4 AES-CBC passes over 256 bytes and 4 CMACs over the MAC inputs.
 * The floor uses pre-fetched EVP objects and one reused context each, with
 * the key set per operation as any SCP03 implementation must.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <trustchain/scp03.h>

#include "bench.h"

static struct tc_scp03_keyset g_keys;
static uint32_t g_seq;

static tc_err st_load(void *ctx, uint8_t kvn, struct tc_scp03_keyset *out)
{
    (void)ctx;
    (void)kvn;
    *out = g_keys;
    return TC_OK;
}

static tc_err st_next(void *ctx, uint8_t kvn, uint32_t *seq)
{
    (void)ctx;
    (void)kvn;
    if (g_seq >= 0xFFFF00u)
        g_seq = 0;
    *seq = ++g_seq;
    return TC_OK;
}

static tc_err st_failures(void *ctx, uint8_t kvn, uint32_t *count)
{
    (void)ctx;
    (void)kvn;
    *count = 0;
    return TC_OK;
}

static tc_err st_record(void *ctx, uint8_t kvn, bool ok)
{
    (void)ctx;
    (void)kvn;
    (void)ok;
    return TC_OK;
}

static const struct tc_scp03_card_store g_store = {NULL, st_load, st_next, st_failures, st_record};
static const uint8_t g_aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t g_hc[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};

struct pair {
    struct tc_scp03_card card;
    struct tc_scp03_card_config cfg;
    struct tc_scp03_mem_provider mem;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_host host;
    struct tc_scp03_host_config hcfg;
};

static int handshake(struct pair *p)
{
    uint8_t cmd[64], resp[64];
    size_t rlen = 0;
    uint16_t sw = 0;
    struct tc_buf b;
    if (tc_scp03_host_init(&p->host, &p->kp, &p->hcfg) != TC_OK)
        return 1;
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    if (tc_scp03_host_initialize_update(&p->host, &b) != TC_OK ||
        tc_scp03_card_initialize_update(&p->card, cmd, b.len, resp, sizeof resp, &rlen, &sw) !=
            TC_OK)
        return 1;
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    if (tc_scp03_host_external_authenticate(&p->host, resp, rlen, &b) != TC_OK ||
        tc_scp03_card_external_authenticate(&p->card, cmd, b.len, &sw) != TC_OK ||
        tc_scp03_host_authenticated(&p->host, sw) != TC_OK)
        return 1;
    return 0;
}

static int handshake_op(void *arg)
{
    return handshake(arg);
}

/* ------------------------------------------------------------------ APDU */

struct apdu_case {
    struct pair *p;
    uint8_t data[255];
    uint8_t wrapped[400], plain[400], resp[400], out[400];
};

static int apdu_op(void *arg)
{
    struct apdu_case *a = arg;
    struct tc_scp03_card_cmd c;
    struct tc_buf b;
    size_t plen = 0, rlen = 0, olen = 0;
    uint16_t sw = 0;
    const struct tc_apdu cmd = {
        .cla = 0x80, .ins = 0xEE, .data = a->data, .lc = sizeof a->data, .le = 256, .has_le = true};
    tc_buf_init_fixed(&b, a->wrapped, sizeof a->wrapped);
    if (tc_scp03_host_wrap(&a->p->host, &cmd, &b) != TC_OK)
        return 1;
    if (tc_scp03_card_unwrap(&a->p->card, a->wrapped, b.len, a->plain, sizeof a->plain, &plen, &c,
                             &sw) != TC_OK)
        return 1;
    if (tc_scp03_card_wrap(&a->p->card, c.apdu.data, c.apdu.lc, 0x9000, a->resp, sizeof a->resp,
                           &rlen) != TC_OK)
        return 1;
    if (tc_scp03_host_unwrap(&a->p->host, a->resp, rlen, a->out, sizeof a->out, &olen, &sw) !=
            TC_OK ||
        olen != sizeof a->data)
        return 1;
    return 0;
}

/* ------------------------------------------------------------------ floors */

struct floor {
    EVP_MAC_CTX *mac;
    EVP_CIPHER_CTX *cbc, *ecb;
    const EVP_CIPHER *cbc_cipher, *ecb_cipher;
    uint8_t key[16], key2[16], key3[16];
    uint8_t buf[400], out[400];
};

static int cmac(struct floor *f, const uint8_t *key, const uint8_t *msg, size_t len, uint8_t *mac)
{
    size_t outl = 0;
    return EVP_MAC_init(f->mac, key, 16, NULL) == 1 && EVP_MAC_update(f->mac, msg, len) == 1 &&
                   EVP_MAC_final(f->mac, mac, &outl, 16) == 1
               ? 0
               : 1;
}

static int floor_handshake(void *arg)
{
    struct floor *f = arg;
    uint8_t data[48] = {0}, mac[16];
    int rc = 0;
    /* Per side: card challenge (16 + 3 + 8 bytes), three session keys and two
     * cryptograms (16 + 16 bytes each), the EXTERNAL AUTHENTICATE C-MAC
     * (16 + 5 + 8 bytes); keys differ between steps. */
    for (int side = 0; side < 2; side++) {
        rc |= cmac(f, f->key, data, 27, mac);
        rc |= cmac(f, f->key, data, 32, mac);
        rc |= cmac(f, f->key2, data, 32, mac);
        rc |= cmac(f, f->key2, data, 32, mac);
        rc |= cmac(f, f->key3, data, 32, mac);
        rc |= cmac(f, f->key3, data, 32, mac);
        rc |= cmac(f, f->key3, data, 29, mac);
        data[0] = mac[0];
    }
    bench_consume(mac, sizeof mac);
    return rc;
}

static int cipher(EVP_CIPHER_CTX *ctx, const uint8_t *key, const uint8_t *iv, int enc,
                  const uint8_t *in, size_t len, uint8_t *out)
{
    int outl = 0;
    return EVP_CipherInit_ex2(ctx, NULL, key, iv, enc, NULL) == 1 &&
                   EVP_CipherUpdate(ctx, out, &outl, in, (int)len) == 1 && (size_t)outl == len
               ? 0
               : 1;
}

static int floor_apdu(void *arg)
{
    struct floor *f = arg;
    uint8_t icv[16], block[16] = {0}, mac[16];
    int rc = 0;
    /* Host wrap, card unwrap, card wrap, host unwrap: each one ICV, one
     * CBC pass over 256 bytes, one CMAC over chaining value || header ||
     * data (or data || SW). */
    for (int step = 0; step < 4; step++) {
        block[15] = (uint8_t)step;
        rc |= cipher(f->ecb, f->key, NULL, 1, block, 16, icv);
        rc |= cipher(f->cbc, f->key, icv, step & 1, f->buf, 256, f->out);
        rc |= cmac(f, f->key2, f->buf, step < 2 ? 16 + 7 + 256 : 16 + 256 + 2, mac);
    }
    bench_consume(mac, sizeof mac);
    bench_consume(f->out, 16);
    return rc;
}

int main(void)
{
    static struct pair p;
    static struct apdu_case ac;
    static struct floor f;
    uint8_t k[16];
    for (size_t i = 0; i < sizeof k; i++)
        k[i] = (uint8_t)(0x40 + i);
    if (tc_scp03_keyset_set(&g_keys, 0x30, k, k, k, sizeof k) != TC_OK)
        return 1;
    memset(&p.cfg, 0, sizeof p.cfg);
    p.cfg.i_param = 0x70;
    memcpy(p.cfg.aid, g_aid, sizeof g_aid);
    p.cfg.aid_len = sizeof g_aid;
    tc_scp03_card_init(&p.card, &p.cfg, &g_store);
    tc_scp03_mem_provider_init(&p.mem, &p.kp);
    if (tc_scp03_mem_provider_add(&p.mem, &g_keys) != TC_OK)
        return 1;
    p.hcfg = (struct tc_scp03_host_config){.kvn = 0x30,
                                           .level = TC_SCP03_LEVEL_RENC,
                                           .aid = g_aid,
                                           .aid_len = sizeof g_aid,
                                           .host_challenge = g_hc,
                                           .extended = true};

    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_CMAC, NULL);
    EVP_CIPHER *cbc = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
    EVP_CIPHER *ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
    f.mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
    f.cbc = EVP_CIPHER_CTX_new();
    f.ecb = EVP_CIPHER_CTX_new();
    char cname[] = "AES-128-CBC";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cname, 0),
                           OSSL_PARAM_construct_end()};
    if (f.mac == NULL || cbc == NULL || ecb == NULL || f.cbc == NULL || f.ecb == NULL ||
        EVP_MAC_CTX_set_params(f.mac, params) != 1 ||
        EVP_CipherInit_ex2(f.cbc, cbc, k, k, 1, NULL) != 1 ||
        EVP_CipherInit_ex2(f.ecb, ecb, k, NULL, 1, NULL) != 1 ||
        EVP_CIPHER_CTX_set_padding(f.cbc, 0) != 1 || EVP_CIPHER_CTX_set_padding(f.ecb, 0) != 1) {
        fprintf(stderr, "bench_scp03: OpenSSL AES/CMAC unavailable\n");
        return 1;
    }
    memcpy(f.key, k, 16);
    for (size_t i = 0; i < 16; i++) {
        f.key2[i] = (uint8_t)(k[i] ^ 0x5A);
        f.key3[i] = (uint8_t)(k[i] ^ 0xA5);
    }

    bench_init("bench_scp03");
    if (handshake(&p) != 0) {
        fprintf(stderr, "bench_scp03: handshake failed\n");
        return 1;
    }
    bench_compare("SCP03 handshake AES-128 S8 (host+card)", handshake_op, &p,
                  "14 x EVP_MAC CMAC ~32 B", floor_handshake, &f);

    if (handshake(&p) != 0)
        return 1;
    ac.p = &p;
    for (size_t i = 0; i < sizeof ac.data; i++)
        ac.data[i] = (uint8_t)i;
    if (apdu_op(&ac) != 0) {
        fprintf(stderr, "bench_scp03: APDU round trip failed\n");
        return 1;
    }
    bench_compare("255 B APDU level 33 wrap+unwrap, both ways", apdu_op, &ac,
                  "4 x (ECB block + CBC 256 B + CMAC)", floor_apdu, &f);

    tc_scp03_card_reset(&p.card);
    tc_scp03_host_close(&p.host);
    tc_scp03_mem_provider_wipe(&p.mem);
    EVP_MAC_CTX_free(f.mac);
    EVP_CIPHER_CTX_free(f.cbc);
    EVP_CIPHER_CTX_free(f.ecb);
    EVP_MAC_free(mac);
    EVP_CIPHER_free(cbc);
    EVP_CIPHER_free(ecb);
    return 0;
}
