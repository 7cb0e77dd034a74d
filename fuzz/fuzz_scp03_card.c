/*
 * libFuzzer target: the SCP03 card side taking commands, both without a
 * session and in the middle of an authenticated one.
 *
 * Input: one configuration byte, then records of [len_hi len_lo bytes].
 *   config b2-b0: security level (00 01 03 11 13 33 by index, 6/7 = 33)
 *   config b3:    S16 mode
 *   config b5-b4: 0 = no session, records are raw APDUs
 *                 1 = authenticated session, records are raw APDUs
 *                 2 = authenticated session, records are plain APDUs that
 *                     the host wraps first (so MACs verify and decryption,
 *                     padding, PUT KEY and R-MAC session code are reached);
 *                     the record's first byte, when odd, flips one bit of
 *                     the wrapped command at a position from the second byte
 *   config b7-b6: key length 16 / 24 / 32 / 16
 * The session is set up deterministically (fixed keys, challenges).
 */
#include <stdint.h>
#include <string.h>

#include <trustchain/scp03.h>

#define MAX_APDU 4200u

static struct tc_scp03_keyset g_keys;
static uint32_t g_seq;
static uint32_t g_failures;

static tc_err st_load(void *ctx, uint8_t kvn, struct tc_scp03_keyset *out)
{
    (void)ctx;
    if (kvn != 0 && kvn != g_keys.kvn)
        return TC_FAIL(TC_ERR_NOT_FOUND, "no keyset");
    *out = g_keys;
    return TC_OK;
}

static tc_err st_next(void *ctx, uint8_t kvn, uint32_t *seq)
{
    (void)ctx;
    (void)kvn;
    if (g_seq >= TC_SCP03_SEQ_MAX)
        return TC_FAIL(TC_ERR_RANGE, "exhausted");
    *seq = ++g_seq;
    return TC_OK;
}

static tc_err st_failures(void *ctx, uint8_t kvn, uint32_t *count)
{
    (void)ctx;
    (void)kvn;
    *count = g_failures;
    return TC_OK;
}

static tc_err st_record(void *ctx, uint8_t kvn, bool ok)
{
    (void)ctx;
    (void)kvn;
    g_failures = ok ? 0 : g_failures + 1;
    return TC_OK;
}

static tc_err fixed_random(void *ctx, uint8_t *out, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(0xC3u ^ i);
    return TC_OK;
}

static const struct tc_scp03_card_store g_store = {NULL, st_load, st_next, st_failures, st_record};

static struct tc_scp03_card g_card;
static struct tc_scp03_card_config g_cfg;
static struct tc_scp03_chain g_chain;
static uint8_t g_chain_buf[MAX_APDU + 16];
static uint8_t g_plain[MAX_APDU + 16];
static uint8_t g_out[MAX_APDU + 64];

/* What a card OS does with one APDU for the security domain. */
static void card_process(const uint8_t *apdu, size_t len)
{
    uint16_t sw = 0;
    size_t rlen = 0;
    tc_err rc;
    if (len >= 2 && apdu[1] == TC_SCP03_INS_INITIALIZE_UPDATE) {
        rc = tc_scp03_card_initialize_update(&g_card, apdu, len, g_out, sizeof g_out, &rlen, &sw);
        (void)rc;
        return;
    }
    if (len >= 2 && apdu[1] == TC_SCP03_INS_EXTERNAL_AUTHENTICATE) {
        rc = tc_scp03_card_external_authenticate(&g_card, apdu, len, &sw);
        (void)rc;
        return;
    }
    bool complete = false;
    const uint8_t *whole = apdu;
    size_t whole_len = len;
    if (tc_scp03_chain_feed(&g_chain, apdu, len, &complete, &whole, &whole_len) == TC_OK &&
        !complete)
        return;
    if (!complete) {
        whole = apdu;
        whole_len = len;
    }
    struct tc_scp03_card_cmd cmd;
    size_t plen = 0;
    if (tc_scp03_card_unwrap(&g_card, whole, whole_len, g_plain, sizeof g_plain, &plen, &cmd,
                             &sw) != TC_OK)
        return;
    uint8_t data[64];
    size_t dlen = 0;
    switch (cmd.apdu.ins) {
    case TC_SCP03_INS_BEGIN_RMAC_SESSION:
        rc = tc_scp03_card_begin_rmac(&g_card, &cmd, &sw);
        break;
    case TC_SCP03_INS_END_RMAC_SESSION:
        rc = tc_scp03_card_end_rmac(&g_card, &cmd, &sw);
        break;
    case TC_SCP03_INS_PUT_KEY: {
        struct tc_scp03_put_key pk;
        rc = tc_scp03_card_put_key(&g_card, &cmd, &pk, &sw);
        if (rc == TC_OK)
            rc = tc_scp03_put_key_response(&pk, data, sizeof data, &dlen);
        tc_memzero(&pk, sizeof pk);
        break;
    }
    default:
        /* Echo a little data back so R-MAC / R-ENC run on something. */
        dlen = cmd.apdu.lc < sizeof data ? cmd.apdu.lc : sizeof data;
        if (dlen > 0)
            memcpy(data, cmd.apdu.data, dlen);
        sw = (uint16_t)(0x9000u ^ (cmd.apdu.p1 == 0x63 ? 0xF300u : 0u));
        rc = TC_OK;
        break;
    }
    (void)rc;
    rc = tc_scp03_card_wrap(&g_card, data, dlen, sw, g_out, sizeof g_out, &rlen);
    (void)rc;
}

static const uint8_t levels[8] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33, 0x33, 0x33};
static const uint8_t aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

static struct tc_scp03_mem_provider g_mem;
static struct tc_scp03_key_provider g_kp;
static struct tc_scp03_host g_host;

static bool open_session(uint8_t level, bool s16)
{
    static const uint8_t hc[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    uint8_t cmd[64], resp[64];
    size_t rlen = 0;
    uint16_t sw = 0;
    struct tc_buf b;
    tc_scp03_mem_provider_init(&g_mem, &g_kp);
    if (tc_scp03_mem_provider_add(&g_mem, &g_keys) != TC_OK)
        return false;
    const struct tc_scp03_host_config hc_cfg = {.kvn = g_keys.kvn,
                                                .level = level,
                                                .s16 = s16,
                                                .aid = aid,
                                                .aid_len = sizeof aid,
                                                .host_challenge = hc,
                                                .extended = true};
    if (tc_scp03_host_init(&g_host, &g_kp, &hc_cfg) != TC_OK)
        return false;
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    if (tc_scp03_host_initialize_update(&g_host, &b) != TC_OK)
        return false;
    if (tc_scp03_card_initialize_update(&g_card, cmd, b.len, resp, sizeof resp, &rlen, &sw) !=
        TC_OK)
        return false;
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    if (tc_scp03_host_external_authenticate(&g_host, resp, rlen, &b) != TC_OK)
        return false;
    if (tc_scp03_card_external_authenticate(&g_card, cmd, b.len, &sw) != TC_OK)
        return false;
    return tc_scp03_host_authenticated(&g_host, sw) == TC_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t wrapped[MAX_APDU + 64];
    if (size < 1)
        return 0;
    const uint8_t conf = data[0];
    const size_t key_len = (conf >> 6) == 1 ? 24u : (conf >> 6) == 2 ? 32u : 16u;
    const bool s16 = (conf & 0x08u) != 0;
    const unsigned mode = (conf >> 4) & 3u;
    uint8_t k[32];
    for (size_t i = 0; i < sizeof k; i++)
        k[i] = (uint8_t)(0x40u + i);
    if (tc_scp03_keyset_set(&g_keys, 0x30, k, k, k, key_len) != TC_OK)
        return 0;
    g_seq = 0;
    g_failures = 0;
    memset(&g_cfg, 0, sizeof g_cfg);
    g_cfg.i_param = (uint8_t)(0x70u | (s16 ? 1u : 0u));
    memcpy(g_cfg.aid, aid, sizeof aid);
    g_cfg.aid_len = sizeof aid;
    g_cfg.max_auth_failures = 3;
    g_cfg.random = fixed_random;
    tc_scp03_card_init(&g_card, &g_cfg, &g_store);
    tc_scp03_chain_init(&g_chain, g_chain_buf, sizeof g_chain_buf);
    if (mode != 0 && !open_session(levels[conf & 7u], s16))
        __builtin_trap(); /* the deterministic handshake must always work */

    size_t pos = 1;
    while (pos + 2 <= size) {
        size_t n = ((size_t)data[pos] << 8) | data[pos + 1];
        pos += 2;
        if (n > size - pos)
            n = size - pos;
        if (n > MAX_APDU)
            n = MAX_APDU;
        const uint8_t *rec = data + pos;
        pos += n;
        if (mode != 2 || n < 2) {
            card_process(rec, n);
            continue;
        }
        struct tc_apdu a;
        if (tc_apdu_decode(rec + 2, n - 2, &a) != TC_OK) {
            card_process(rec + 2, n - 2);
            continue;
        }
        struct tc_buf b;
        tc_buf_init_fixed(&b, wrapped, sizeof wrapped);
        if (tc_scp03_host_wrap(&g_host, &a, &b) != TC_OK)
            continue;
        if ((rec[0] & 1u) != 0 && b.len > 0)
            wrapped[rec[1] % b.len] ^= (uint8_t)(1u << (rec[0] >> 5));
        card_process(wrapped, b.len);
        /* Keep the host in step: a response is owed. */
        uint8_t resp[8];
        size_t olen = 0;
        uint16_t sw = 0;
        const uint8_t bare[2] = {0x6A, 0x80};
        tc_err rc = tc_scp03_host_unwrap(&g_host, bare, 2, resp, sizeof resp, &olen, &sw);
        (void)rc;
    }
    tc_scp03_card_reset(&g_card);
    tc_scp03_host_wipe(&g_host);
    tc_scp03_mem_provider_wipe(&g_mem);
    tc_error_clear();
    return 0;
}
