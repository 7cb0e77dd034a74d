/*
 * libFuzzer target: the SCP03 host side taking what a card answers, both
 * the INITIALIZE UPDATE response (mode 0) and responses inside an
 * authenticated session (mode 1: R-MAC / R-ENC unwrapping), plus the PUT KEY
 * response check.
 *
 * Input: one configuration byte, then the data.
 *   config b2-b0: security level (00 01 03 11 13 33 by index, 6/7 = 33)
 *   config b3:    S16 mode
 *   config b4:    mode (0 = INITIALIZE UPDATE response, 1 = session)
 *   config b5:    mode 1: prefix each response with a genuine card answer
 *                 to a command carrying the record as data (so R-MAC
 *                 verification succeeds and R-ENC decryption is reached)
 * Mode 1 data: records of [len_hi len_lo bytes], each a response.
 */
#include <stdint.h>
#include <string.h>

#include <trustchain/scp03.h>

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
static const uint8_t levels[8] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33, 0x33, 0x33};
static const uint8_t aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tc_scp03_card card;
    static struct tc_scp03_card_config cfg;
    static struct tc_scp03_mem_provider mem;
    static struct tc_scp03_key_provider kp;
    static struct tc_scp03_host host;
    static uint8_t out[70000], plain[70000], resp[70000];
    static const uint8_t hc[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
    if (size < 1)
        return 0;
    const uint8_t conf = data[0];
    const bool s16 = (conf & 0x08u) != 0;
    const uint8_t level = levels[conf & 7u];
    uint8_t k[16];
    for (size_t i = 0; i < sizeof k; i++)
        k[i] = (uint8_t)(0x40u + i);
    if (tc_scp03_keyset_set(&g_keys, 0x30, k, k, k, sizeof k) != TC_OK)
        return 0;
    g_seq = 0;
    tc_scp03_mem_provider_init(&mem, &kp);
    if (tc_scp03_mem_provider_add(&mem, &g_keys) != TC_OK)
        return 0;
    const struct tc_scp03_host_config hcfg = {.kvn = 0x30,
                                              .level = level,
                                              .s16 = s16,
                                              .aid = aid,
                                              .aid_len = sizeof aid,
                                              .host_challenge = hc,
                                              .extended = true};
    if (tc_scp03_host_init(&host, &kp, &hcfg) != TC_OK)
        return 0;
    uint8_t cmd[64], iu[64];
    size_t iulen = 0;
    uint16_t sw = 0;
    struct tc_buf b;
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    if (tc_scp03_host_initialize_update(&host, &b) != TC_OK)
        return 0;

    if ((conf & 0x10u) == 0) {
        /* The card's INITIALIZE UPDATE answer, as the fuzzer makes it. */
        struct tc_buf ea;
        uint8_t eab[64];
        tc_buf_init_fixed(&ea, eab, sizeof eab);
        tc_err rc = tc_scp03_host_external_authenticate(&host, data + 1, size - 1, &ea);
        (void)rc;
        if (size >= 1 + TC_SCP03_KCVS_LEN) {
            rc = tc_scp03_put_key_check(data + 1, size - 1, 0x31, data + 1);
            (void)rc;
        }
        goto done;
    }

    memset(&cfg, 0, sizeof cfg);
    cfg.i_param = (uint8_t)(0x70u | (s16 ? 1u : 0u));
    memcpy(cfg.aid, aid, sizeof aid);
    cfg.aid_len = sizeof aid;
    tc_scp03_card_init(&card, &cfg, &g_store);
    if (tc_scp03_card_initialize_update(&card, cmd, b.len, iu, sizeof iu, &iulen, &sw) != TC_OK)
        __builtin_trap();
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    if (tc_scp03_host_external_authenticate(&host, iu, iulen, &b) != TC_OK ||
        tc_scp03_card_external_authenticate(&card, cmd, b.len, &sw) != TC_OK ||
        tc_scp03_host_authenticated(&host, sw) != TC_OK)
        __builtin_trap();

    size_t pos = 1;
    while (pos + 2 <= size) {
        size_t n = ((size_t)data[pos] << 8) | data[pos + 1];
        pos += 2;
        if (n > size - pos)
            n = size - pos;
        if (n > 4096)
            n = 4096;
        const uint8_t *rec = data + pos;
        pos += n;
        struct tc_apdu a = {.cla = 0x80, .ins = 0xEE, .data = n > 0 ? rec : NULL, .lc = n};
        uint8_t wrapped[4200];
        tc_buf_init_fixed(&b, wrapped, sizeof wrapped);
        if (tc_scp03_host_wrap(&host, &a, &b) != TC_OK)
            break;
        size_t olen = 0, rlen = 0;
        if ((conf & 0x20u) != 0) {
            /* A genuine card answer carrying the record, then the fuzzer's
             * record appended as a trailer the host must not accept. */
            struct tc_scp03_card_cmd c;
            size_t plen = 0;
            if (tc_scp03_card_unwrap(&card, wrapped, b.len, plain, sizeof plain, &plen, &c, &sw) !=
                TC_OK)
                __builtin_trap();
            uint16_t rsw = n >= 2 ? (uint16_t)((rec[0] << 8) | rec[1]) : 0x9000u;
            tc_err rc =
                tc_scp03_card_wrap(&card, c.apdu.data, c.apdu.lc, rsw, resp, sizeof resp, &rlen);
            (void)rc;
        } else {
            if (n < 2)
                continue;
            memcpy(resp, rec, n);
            rlen = n;
        }
        tc_err rc = tc_scp03_host_unwrap(&host, resp, rlen, out, sizeof out, &olen, &sw);
        (void)rc;
    }
    tc_scp03_card_reset(&card);
done:
    tc_scp03_host_wipe(&host);
    tc_scp03_mem_provider_wipe(&mem);
    tc_error_clear();
    return 0;
}
